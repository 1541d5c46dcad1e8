//! Arbitrary bytes fed to the MJPEG reader in arbitrary chunkings, in every mode, with default
//! and tiny limits: no panic, never more buffered than the limits allow, every frame a whole
//! JPEG within the size limit, and the same frames, counters and fatal error whatever the
//! chunking.
//!
//! Input: one byte choosing the limits, one byte `k`, `k % 16` chunk-size bytes, then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mjpegd::jpeg;
use mjpegd::mjpeg::read::{Limits, Mode, ReadFrame, ReadStats, Reader};

struct Outcome {
    frames: Vec<ReadFrame>,
    stats: ReadStats,
    fatal_at: Option<u64>,
}

fn run(mode: &Mode, limits: Limits, data: &[u8], sizes: &[u8]) -> Outcome {
    let mut reader = Reader::new(mode.clone(), limits);
    let mut frames = Vec::new();
    let mut rest = data;
    let mut i = 0;
    let fatal_at = loop {
        let mut fatal = None;
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.jpeg.len() <= limits.max_frame_len);
                    assert_eq!(jpeg::complete_len(&f.jpeg), Some(f.jpeg.len()));
                    frames.push(f);
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(e.is_fatal(), "{e}");
                    assert_eq!(reader.next_frame(), Err(e.clone()), "fatal errors stick");
                    fatal = Some(e.offset);
                    break;
                }
            }
        }
        while let Some(e) = reader.take_recovered() {
            assert!(!e.is_fatal(), "{e}");
            let _ = e.to_string();
        }
        if fatal.is_some() {
            break fatal;
        }
        // The bound callers rely on: a drained reader always takes `max_feed` more bytes.
        assert!(reader.buffer_space() >= limits.max_feed, "{reader:?}");
        if rest.is_empty() {
            match reader.finish() {
                Ok(f) => frames.extend(f),
                Err(e) => break Some(e.offset),
            }
            break None;
        }
        let n = match sizes.get(i % sizes.len().max(1)) {
            None => rest.len(),
            // Mostly small chunks, sometimes large ones.
            Some(&b) if b & 0x80 != 0 => usize::from(b & 0x7F) * 64 + 1,
            Some(&b) => usize::from(b) + 1,
        };
        i += 1;
        let n = n.min(rest.len()).min(limits.max_feed);
        reader
            .feed(&rest[..n])
            .expect("a drained reader takes max_feed bytes");
        rest = &rest[n..];
    };
    Outcome {
        frames,
        stats: reader.stats(),
        fatal_at,
    }
}

fuzz_target!(|input: &[u8]| {
    let [config, k, rest @ ..] = input else {
        return;
    };
    let k = usize::from(*k % 16).min(rest.len());
    let (sizes, data) = rest.split_at(k);
    let limits = if config & 1 == 0 {
        Limits::default()
    } else {
        // Tiny limits reach every limit path with small inputs; zero limits must still make
        // progress.
        let c = usize::from(*config);
        Limits {
            max_frame_len: (c >> 1 & 7) * 300,
            max_header_line: (c >> 4 & 3) * 40,
            max_headers: c >> 6,
            max_resync: (c >> 3 & 3) * 500,
            max_feed: 1 + (c & 0x30),
        }
    };
    let modes = [
        Mode::Auto,
        Mode::Jpeg,
        Mode::Multipart {
            boundary: "frame".into(),
        },
        Mode::Multipart {
            boundary: "ffmpeg".into(),
        },
    ];
    for mode in &modes {
        let whole = run(mode, limits, data, &[]);
        let chunked = run(mode, limits, data, sizes);
        assert_eq!(
            whole.frames, chunked.frames,
            "{mode:?}: chunking changed the frames"
        );
        assert_eq!(
            whole.fatal_at, chunked.fatal_at,
            "{mode:?}: chunking changed the fatal error"
        );
        if whole.fatal_at.is_none() {
            assert_eq!(
                whole.stats, chunked.stats,
                "{mode:?}: chunking changed the counters"
            );
            assert_eq!(whole.stats.bytes_read, data.len() as u64);
        } else {
            // A fatal error stops the reading wherever the input had got to.
            assert_eq!(whole.stats.errors, chunked.stats.errors, "{mode:?}");
        }
    }
});
