//! Write → read equality: frames built from the input, written by our writer, read back frame
//! for frame (bytes and timestamps, no error) in auto and multipart modes, whatever the chunking.
//!
//! Input: a chunk-size byte, then frames, each a flag byte (with a timestamp or not), a length
//! byte and that many payload bytes (wrapped in SOI ... EOI).
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use mjpegd::mjpeg::read::{Limits, Mode, Reader};
use mjpegd::mjpeg::write;

fuzz_target!(|input: &[u8]| {
    let Some((chunk, mut rest)) = input.split_first() else {
        return;
    };
    let mut frames = Vec::new();
    let mut stream = write::STREAM_PREAMBLE.to_vec();
    while let [flags, len, tail @ ..] = rest {
        let flags = *flags;
        // Stretch some payloads so frames also span many chunks.
        let len = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let repeat = if flags & 1 == 1 { 50 } else { 1 };
        let mut jpeg = vec![0xFF, 0xD8];
        for _ in 0..repeat {
            jpeg.extend_from_slice(payload);
        }
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        let t = UNIX_EPOCH + Duration::from_micros(u64::from(flags) * 1_000_003_007);
        stream.extend_from_slice(&write::part(&jpeg, t).0);
        frames.push((jpeg, t));
    }
    let chunk = usize::from(*chunk) + 1;
    for mode in [
        Mode::Auto,
        Mode::Multipart {
            boundary: "frame".into(),
        },
    ] {
        let mut reader = Reader::new(mode, Limits::default());
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            reader.feed(piece).unwrap();
            while let Some(f) = reader.next_frame().unwrap() {
                got.push((f.jpeg.to_vec(), f.timestamp.unwrap()));
            }
        }
        assert_eq!(reader.finish().unwrap(), None);
        assert_eq!(got, frames);
        assert_eq!(reader.stats().errors, 0);
        assert_eq!(reader.stats().bytes_skipped, 0);
    }
});
