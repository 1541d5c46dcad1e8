//! The shared multipart grammar table (`mjpegd::mjpeg::cases`) through the server's reader, in
//! several chunkings. `crates/mjpegd-load/tests/grammar_cases.rs` runs the same table through
//! the load client's parser.

use std::time::UNIX_EPOCH;

use mjpegd::mjpeg::cases::{Case, cases};
use mjpegd::mjpeg::read::{Limits, Mode, Reader, boundary_from_content_type};

/// Frames as (JPEG, `X-Timestamp` in µs).
type Frames = Vec<(Vec<u8>, Option<u64>)>;

/// The frames (JPEG, timestamp in µs) and the count of errors the reader finds in `case`,
/// fed `chunk` bytes at a time.
fn read(case: &Case, chunk: usize) -> (Frames, u64) {
    let boundary = boundary_from_content_type(case.content_type)
        .unwrap_or_else(|| panic!("{}: no boundary in {:?}", case.name, case.content_type));
    let mut reader = Reader::new(Mode::Multipart { boundary }, Limits::default());
    let mut frames = Vec::new();
    let mut push = |f: mjpegd::mjpeg::read::ReadFrame| {
        let us = f.timestamp.map(|t| {
            t.duration_since(UNIX_EPOCH)
                .expect("after the epoch")
                .as_micros() as u64
        });
        frames.push((f.jpeg.to_vec(), us));
    };
    for piece in case.body.chunks(chunk) {
        reader.feed(piece).expect("feed");
        while let Some(f) = reader.next_frame().expect("no fatal error") {
            push(f);
        }
    }
    while let Some(f) = reader.finish().expect("no fatal error") {
        push(f);
    }
    (frames, reader.stats().errors)
}

/// What is wrong with the reader's outcome for `case`, if anything.
fn check(case: &Case) -> Option<String> {
    let want: Frames = case
        .frames
        .iter()
        .map(|f| (f.jpeg.clone(), f.timestamp_us))
        .collect();
    let lens =
        |v: &[(Vec<u8>, Option<u64>)]| v.iter().map(|(j, t)| (j.len(), *t)).collect::<Vec<_>>();
    for chunk in [usize::MAX, 1, 7, 64 << 10] {
        let (got, errors) = read(case, chunk);
        let how = format!("{} (chunks of {chunk})", case.name);
        if got != want {
            return Some(format!(
                "{how}: frames (length, timestamp) {:?}, expected {:?}",
                lens(&got),
                lens(&want)
            ));
        }
        if (errors > 0) != case.damaged {
            return Some(format!("{how}: {errors} errors, damaged {}", case.damaged));
        }
    }
    None
}

#[test]
fn every_case_through_the_reader() {
    let cases = cases();
    assert!(cases.len() >= 20);
    let failures: Vec<String> = cases.iter().filter_map(check).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
