//! The MJPEG reader against real-world captures and broken streams (`tests/fixtures/`, made by
//! `tests/fixtures/make-fixtures.sh`): every chunking gives the same frames and error counts,
//! and every frame returned decodes.

use std::time::{Duration, UNIX_EPOCH};

use mjpegd::mjpeg::read::{Limits, Mode, ReadFrame, ReadStats, Reader, boundary_from_content_type};

struct Fixture {
    name: &'static str,
    data: &'static [u8],
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            data: include_bytes!(concat!("fixtures/", $name)),
        }
    };
}

/// ffmpeg's boundary, as its `Content-Type` declares it.
fn ffmpeg_multipart() -> Mode {
    Mode::Multipart {
        boundary: boundary_from_content_type("multipart/x-mixed-replace;boundary=ffmpeg").unwrap(),
    }
}

/// How the stream is cut into `feed` calls: a fixed size, or pseudo-random sizes up to a bound.
#[derive(Debug, Clone, Copy)]
enum Chunks {
    Fixed(usize),
    Random(u64, usize),
}

const CHUNKINGS: [Chunks; 7] = [
    Chunks::Fixed(usize::MAX),
    Chunks::Fixed(1),
    Chunks::Fixed(2),
    Chunks::Fixed(1460),
    Chunks::Random(1, 16),
    Chunks::Random(2, 5000),
    Chunks::Random(3, 65536),
];

fn read(mode: &Mode, data: &[u8], chunks: Chunks) -> (Vec<ReadFrame>, ReadStats) {
    let limits = Limits::default();
    let mut reader = Reader::new(mode.clone(), limits);
    let mut frames = Vec::new();
    let mut seed = match chunks {
        Chunks::Random(seed, _) => seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        Chunks::Fixed(_) => 0,
    };
    let mut rest = data;
    loop {
        while let Some(frame) = reader.next_frame().expect("no fatal error") {
            frames.push(frame);
        }
        assert!(reader.buffer_space() >= limits.max_feed);
        if rest.is_empty() {
            frames.extend(reader.finish().expect("no fatal error"));
            return (frames, reader.stats());
        }
        let n = match chunks {
            Chunks::Fixed(n) => n,
            Chunks::Random(_, max) => {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                1 + (seed % max as u64) as usize
            }
        }
        .min(rest.len());
        reader.feed(&rest[..n]).expect("fits");
        rest = &rest[n..];
    }
}

fn decode(jpeg: &[u8]) -> (usize, usize) {
    let mut decoder = zune_jpeg::JpegDecoder::new(jpeg);
    let pixels = decoder.decode().expect("frame decodes");
    let info = decoder.info().expect("decoded headers");
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    assert_eq!(pixels.len(), w * h * 3);
    (w, h)
}

/// Reads the fixture in every chunking; checks counts, agreement and that each frame decodes.
fn check(f: &Fixture, mode: &Mode, frames: usize, errors: u64) -> Vec<ReadFrame> {
    let (first, stats) = read(mode, f.data, CHUNKINGS[0]);
    for chunks in CHUNKINGS {
        let (got, s) = read(mode, f.data, chunks);
        let ctx = format!("{} in {mode:?} fed {chunks:?}", f.name);
        assert_eq!(got.len(), frames, "{ctx}: frames");
        assert_eq!(s.errors, errors, "{ctx}: errors");
        assert_eq!(s.frames, frames as u64, "{ctx}");
        assert_eq!(s.bytes_read, f.data.len() as u64, "{ctx}");
        assert_eq!(s, stats, "{ctx}: same stats whatever the chunking");
        assert_eq!(got, first, "{ctx}: same frames whatever the chunking");
    }
    for frame in &first {
        assert_eq!(decode(&frame.jpeg), (160, 120), "{}", f.name);
        let at = usize::try_from(frame.offset).unwrap();
        assert_eq!(&f.data[at..at + frame.jpeg.len()], &frame.jpeg[..]);
    }
    first
}

#[test]
fn ffmpeg_mpjpeg() {
    let f = fixture!("ffmpeg-mpjpeg.mjpeg");
    for mode in [Mode::Auto, ffmpeg_multipart()] {
        let frames = check(&f, &mode, 10, 0);
        assert!(frames.iter().all(|fr| fr.timestamp.is_none()));
    }
    let mut reader = Reader::new(Mode::Auto, Limits::default());
    reader.feed(&f.data[..100]).unwrap();
    assert!(reader.next_frame().unwrap().is_none());
    assert_eq!(reader.boundary(), Some(&b"ffmpeg"[..]));
}

#[test]
fn ffmpeg_bare_mjpeg() {
    let f = fixture!("ffmpeg-mjpeg.mjpeg");
    for mode in [Mode::Auto, Mode::Jpeg] {
        check(&f, &mode, 10, 0);
    }
}

#[test]
fn ffmpeg_frames_are_the_same_in_both_containers() {
    let (multipart, _) = read(
        &Mode::Auto,
        include_bytes!("fixtures/ffmpeg-mpjpeg.mjpeg"),
        CHUNKINGS[0],
    );
    let (bare, _) = read(
        &Mode::Auto,
        include_bytes!("fixtures/ffmpeg-mjpeg.mjpeg"),
        CHUNKINGS[0],
    );
    let jpegs = |v: &[ReadFrame]| v.iter().map(|f| f.jpeg.clone()).collect::<Vec<_>>();
    assert_eq!(jpegs(&multipart), jpegs(&bare));
}

#[test]
fn truncated_part_is_dropped() {
    let f = fixture!("broken-truncated-part.mjpeg");
    for mode in [Mode::Auto, ffmpeg_multipart()] {
        check(&f, &mode, 4, 1);
    }
}

#[test]
fn wrong_content_length_still_yields_the_frame() {
    let f = fixture!("broken-wrong-content-length.mjpeg");
    for mode in [Mode::Auto, ffmpeg_multipart()] {
        check(&f, &mode, 5, 2);
    }
}

#[test]
fn no_boundary_before_the_first_part() {
    let f = fixture!("broken-no-leading-boundary.mjpeg");
    // Knowing the boundary, the leading headers are read as a part.
    check(&f, &ffmpeg_multipart(), 5, 0);
    // Guessing, the first headers are garbage until the first JPEG's SOI.
    check(&f, &Mode::Auto, 5, 1);
}

#[test]
fn garbage_between_parts_is_skipped() {
    let f = fixture!("broken-garbage-between-parts.mjpeg");
    for mode in [Mode::Auto, ffmpeg_multipart()] {
        check(&f, &mode, 5, 3);
    }
}

#[test]
fn garbage_and_truncation_between_bare_jpegs() {
    let f = fixture!("broken-garbage-between-jpegs.mjpeg");
    for mode in [Mode::Auto, Mode::Jpeg] {
        check(&f, &mode, 3, 2);
    }
}

#[test]
fn extra_blank_and_dash_lines() {
    let f = fixture!("quirk-extra-lines.mjpeg");
    for mode in [Mode::Auto, ffmpeg_multipart()] {
        check(&f, &mode, 5, 0);
    }
}

#[test]
fn lowercase_headers() {
    let f = fixture!("quirk-lowercase-headers.mjpeg");
    for mode in [Mode::Auto, ffmpeg_multipart()] {
        let frames = check(&f, &mode, 5, 0);
        for (i, frame) in frames.iter().enumerate() {
            let t = UNIX_EPOCH + Duration::from_millis((1_700_000_000 + i as u64) * 1000 + 100);
            assert_eq!(frame.timestamp, Some(t));
        }
    }
}

#[test]
fn lf_only_line_endings() {
    let f = fixture!("quirk-lf-only.mjpeg");
    for mode in [Mode::Auto, ffmpeg_multipart()] {
        check(&f, &mode, 5, 0);
    }
}

#[test]
fn exif_thumbnails_do_not_split_frames() {
    let f = fixture!("quirk-exif-thumbnail.mjpeg");
    for mode in [Mode::Auto, Mode::Jpeg] {
        let frames = check(&f, &mode, 5, 0);
        // The thumbnail's own EOI comes long before the frame's.
        let first = &frames[0].jpeg;
        let inner_eoi = first.windows(2).position(|w| w == [0xFF, 0xD9]).unwrap();
        assert!(inner_eoi + 2 < first.len());
    }
}

#[test]
fn a_relay_loop_reads_every_fixture_without_fatal_errors() {
    // The loop a relay runs, over every fixture concatenated after the multipart ones: a
    // change of format mid-stream is garbage to resynchronise over, never a crash.
    let all: Vec<u8> = [
        &include_bytes!("fixtures/ffmpeg-mpjpeg.mjpeg")[..],
        include_bytes!("fixtures/broken-garbage-between-parts.mjpeg"),
        include_bytes!("fixtures/ffmpeg-mjpeg.mjpeg"),
        include_bytes!("fixtures/broken-truncated-part.mjpeg"),
    ]
    .concat();
    let mut reader = Reader::new(Mode::Auto, Limits::default());
    let mut frames = 0;
    for chunk in all.chunks(4096) {
        reader.feed(chunk).unwrap();
        while let Some(frame) = reader.next_frame().unwrap() {
            assert_eq!(decode(&frame.jpeg), (160, 120));
            frames += 1;
        }
    }
    frames += reader.finish().unwrap().into_iter().count();
    assert!(frames >= 15, "{frames} frames, {:?}", reader.stats());
}
