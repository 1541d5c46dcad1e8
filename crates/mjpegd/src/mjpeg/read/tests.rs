//! Unit tests of the reader: every way of cutting a stream into feeds, limits, recovery.

use super::*;
use crate::jpeg::testdata::synthetic;
use crate::mjpeg::write;

/// Deterministic pseudo-random numbers (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// How a test cuts the stream into `feed` calls.
#[derive(Debug, Clone, Copy)]
enum Chunks {
    Whole,
    Fixed(usize),
    Random(u64, usize),
}

const CHUNKINGS: [Chunks; 6] = [
    Chunks::Whole,
    Chunks::Fixed(1),
    Chunks::Fixed(7),
    Chunks::Random(1, 40),
    Chunks::Random(2, 3000),
    Chunks::Random(3, 70_000),
];

struct Outcome {
    frames: Vec<ReadFrame>,
    stats: ReadStats,
    fatal: Option<ReadError>,
    errors: Vec<ReadError>,
}

fn read(mode: &Mode, limits: Limits, data: &[u8], chunks: Chunks) -> Outcome {
    let mut reader = Reader::new(mode.clone(), limits);
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    let mut rng = Rng(match chunks {
        Chunks::Random(seed, _) => seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        _ => 1,
    });
    let mut rest = data;
    let mut fatal = None;
    'feed: loop {
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    fatal = Some(e);
                    break 'feed;
                }
            }
            errors.extend(reader.take_recovered());
        }
        errors.extend(reader.take_recovered());
        // The bound the callers rely on.
        assert!(
            reader.buffer_space() >= limits.max_feed,
            "drained reader holds {} bytes",
            reader.buffered()
        );
        if rest.is_empty() {
            match reader.finish() {
                Ok(f) => frames.extend(f),
                Err(e) => fatal = Some(e),
            }
            errors.extend(reader.take_recovered());
            break;
        }
        let n = match chunks {
            Chunks::Whole => rest.len(),
            Chunks::Fixed(n) => n,
            Chunks::Random(_, max) => 1 + rng.below(max),
        }
        .min(rest.len())
        .min(limits.max_feed);
        reader.feed(&rest[..n]).unwrap();
        rest = &rest[n..];
    }
    Outcome {
        frames,
        stats: reader.stats(),
        fatal,
        errors,
    }
}

/// Reads `data` in every chunking and checks they all agree; returns one outcome.
fn read_every_way(mode: &Mode, limits: Limits, data: &[u8]) -> Outcome {
    let first = read(mode, limits, data, Chunks::Whole);
    for chunks in CHUNKINGS {
        let o = read(mode, limits, data, chunks);
        assert_eq!(o.frames, first.frames, "{chunks:?}");
        assert_eq!(o.fatal, first.fatal, "{chunks:?}");
        if o.fatal.is_none() {
            assert_eq!(o.stats, first.stats, "{chunks:?}: {:?}", o.errors);
        } else {
            // A fatal error stops the reading wherever the input had got to.
            assert_eq!(o.stats.errors, first.stats.errors, "{chunks:?}");
        }
        let offsets = |o: &Outcome| o.errors.iter().map(|e| e.offset).collect::<Vec<_>>();
        assert_eq!(offsets(&o), offsets(&first), "{chunks:?}");
    }
    first
}

fn jpegs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| synthetic(50 + i * 37 % 900, i as u64 + 1, i % 3 == 1))
        .collect()
}

fn multipart_stream(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut s = write::STREAM_PREAMBLE.to_vec();
    for (i, j) in frames.iter().enumerate() {
        let t = UNIX_EPOCH + Duration::from_micros(1_764_000_000_000_000 + i as u64 * 33_333);
        s.extend_from_slice(&write::part(j, t).0);
    }
    s
}

/// Parts as some cameras send them: boundary first, optional Content-Length.
fn part(j: &[u8], content_length: bool, eol: &str) -> Vec<u8> {
    let mut s = format!("--frame{eol}Content-Type: image/jpeg{eol}").into_bytes();
    if content_length {
        s.extend_from_slice(format!("Content-Length: {}{eol}", j.len()).as_bytes());
    }
    s.extend_from_slice(eol.as_bytes());
    s.extend_from_slice(j);
    s.extend_from_slice(eol.as_bytes());
    s
}

fn small_limits() -> Limits {
    Limits {
        max_frame_len: 2000,
        max_header_line: 64,
        max_headers: 4,
        max_resync: 3000,
        max_feed: 500,
    }
}

fn multipart() -> Mode {
    Mode::Multipart {
        boundary: "frame".into(),
    }
}

fn assert_frames(o: &Outcome, expected: &[&Vec<u8>]) {
    let got: Vec<&[u8]> = o.frames.iter().map(|f| &f.jpeg[..]).collect();
    let want: Vec<&[u8]> = expected.iter().map(|j| &j[..]).collect();
    if got != want {
        let lens = |v: &[&[u8]]| v.iter().map(|j| j.len()).collect::<Vec<_>>();
        let errors: Vec<String> = o.errors.iter().map(ToString::to_string).collect();
        panic!(
            "frames of {:?} bytes, expected {:?}; errors: {errors:#?}",
            lens(&got),
            lens(&want)
        );
    }
}

#[test]
fn boundary_from_content_type_accepts_what_cameras_send() {
    let cases = [
        ("multipart/x-mixed-replace;boundary=frame", Some("frame")),
        (
            "multipart/x-mixed-replace; boundary=--myboundary",
            Some("myboundary"),
        ),
        (
            "multipart/x-mixed-replace; BOUNDARY=\"my boundary\"",
            Some("my boundary"),
        ),
        (
            "multipart/x-mixed-replace; boundary=\"--a;b\"; charset=x",
            Some("a;b"),
        ),
        (
            "multipart/x-mixed-replace;charset=utf-8;Boundary = ffmpeg ;x=y",
            Some("ffmpeg"),
        ),
        (
            "multipart/x-mixed-replace;x=\"boundary=no\";boundary=yes",
            Some("yes"),
        ),
        (
            "multipart/x-mixed-replace; boundary=\"a\\\"b\"",
            Some("a\"b"),
        ),
        ("multipart/x-mixed-replace", None),
        ("multipart/x-mixed-replace; boundary=", None),
        ("multipart/x-mixed-replace; boundary=--", None),
        ("multipart/x-mixed-replace; boundary=\"", None),
        ("multipart/x-mixed-replace; boundaryx=frame", None),
        ("boundary=frame", None),
        ("", None),
    ];
    for (value, want) in cases {
        assert_eq!(
            boundary_from_content_type(value).as_deref(),
            want,
            "{value}"
        );
    }
}

#[test]
fn boundary_length_at_the_limit_and_past_it() {
    let at = "b".repeat(MAX_BOUNDARY_LEN);
    let past = "b".repeat(MAX_BOUNDARY_LEN + 1);
    assert_eq!(
        boundary_from_content_type(&format!("multipart/x-mixed-replace;boundary={at}")),
        Some(at.clone())
    );
    assert_eq!(
        boundary_from_content_type(&format!("multipart/x-mixed-replace;boundary={past}")),
        None
    );
    let j = synthetic(100, 1, false);
    let stream = [
        format!("--{at}\r\n\r\n").as_bytes(),
        &j,
        format!("\r\n--{at}\r\n").as_bytes(),
    ]
    .concat();
    let o = read_every_way(
        &Mode::Multipart { boundary: at },
        Limits::default(),
        &stream,
    );
    assert_frames(&o, &[&j]);
    let mut reader = Reader::new(Mode::Multipart { boundary: past }, Limits::default());
    let e = reader.next_frame().unwrap_err();
    assert!(
        e.is_fatal() && matches!(e.kind, ErrorKind::BadBoundary { .. }),
        "{e}"
    );
    // Learned from the stream: a too-long first boundary line is not a boundary.
    let long = format!("--{}\r\n", "b".repeat(MAX_BOUNDARY_LEN + 1));
    let o = read(
        &Mode::Auto,
        Limits::default(),
        long.as_bytes(),
        Chunks::Whole,
    );
    assert_eq!(o.stats.errors, 1);
}

#[test]
fn round_trip_through_our_writer_whatever_the_chunking() {
    let frames = jpegs(40);
    let stream = multipart_stream(&frames);
    for mode in [Mode::Auto, multipart()] {
        let o = read_every_way(&mode, Limits::default(), &stream);
        assert_frames(&o, &frames.iter().collect::<Vec<_>>());
        assert_eq!(o.stats.errors, 0, "{:?}", o.errors);
        assert_eq!(o.stats.bytes_skipped, 0);
        for (i, f) in o.frames.iter().enumerate() {
            let t = UNIX_EPOCH + Duration::from_micros(1_764_000_000_000_000 + i as u64 * 33_333);
            assert_eq!(f.timestamp, Some(t));
            let at = usize::try_from(f.offset).unwrap();
            assert_eq!(&stream[at..at + f.jpeg.len()], &f.jpeg[..]);
        }
    }
}

#[test]
fn frames_by_content_length_come_out_before_the_next_delimiter() {
    // Latency: a frame must not wait for the next part to begin.
    let j = synthetic(100, 1, false);
    let (p, _) = write::part(&j, SystemTime::now());
    let mut reader = Reader::new(Mode::Auto, Limits::default());
    reader.feed(write::STREAM_PREAMBLE).unwrap();
    reader
        .feed(&p[..p.len() - write::PART_TRAILER.len()])
        .unwrap();
    assert_eq!(reader.next_frame().unwrap().unwrap().jpeg, j);
    assert_eq!(reader.format(), Format::Multipart);
    assert_eq!(reader.boundary(), Some(&b"frame"[..]));
}

#[test]
fn bare_jpegs_are_split_by_markers() {
    let frames = jpegs(30);
    let mut stream = frames.concat();
    // Padding between frames is tolerated.
    stream.splice(frames[0].len()..frames[0].len(), [0u8, 0, b'\r', b'\n']);
    for mode in [Mode::Auto, Mode::Jpeg] {
        let o = read_every_way(&mode, Limits::default(), &stream);
        assert_frames(&o, &frames.iter().collect::<Vec<_>>());
        assert_eq!(o.stats.errors, 0, "{:?}", o.errors);
        assert_eq!(o.frames[0].timestamp, None);
    }
    let mut reader = Reader::new(Mode::Auto, Limits::default());
    reader.feed(&stream[..10]).unwrap();
    assert!(reader.next_frame().unwrap().is_none());
    assert_eq!(reader.format(), Format::Jpeg);
}

#[test]
fn parts_without_content_length_end_at_the_delimiter() {
    let frames = jpegs(10);
    for eol in ["\r\n", "\n"] {
        let mut stream: Vec<u8> = frames.iter().flat_map(|j| part(j, false, eol)).collect();
        stream.extend_from_slice(format!("--frame{eol}").as_bytes());
        for mode in [Mode::Auto, multipart()] {
            let o = read_every_way(&mode, Limits::default(), &stream);
            assert_frames(&o, &frames.iter().collect::<Vec<_>>());
            assert_eq!(o.stats.errors, 0, "{:?}", o.errors);
        }
    }
}

#[test]
fn last_part_without_delimiter_is_read_at_the_end() {
    let j = synthetic(100, 1, false);
    let stream = [&b"--frame\r\n\r\n"[..], &j].concat();
    let o = read_every_way(&Mode::Auto, Limits::default(), &stream);
    assert_frames(&o, &[&j]);
    assert_eq!(o.stats.errors, 0);
    // A truncated one is counted.
    let o = read_every_way(&Mode::Auto, Limits::default(), &stream[..stream.len() - 1]);
    assert!(o.frames.is_empty());
    assert_eq!(o.stats.errors, 1);
    assert!(matches!(o.errors[0].kind, ErrorKind::UnexpectedEnd { .. }));
}

#[test]
fn tolerates_what_ip_cameras_add() {
    let frames = jpegs(4);
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend(part(&frames[0], true, "\r\n"));
    stream.extend_from_slice(b"\r\n\r\n--\r\n\r\n");
    // Lowercase names, odd spacing, the close delimiter, trailing white space.
    stream.extend_from_slice(b"--frame--  \r\ncontent-type:image/jpeg\r\ncontent-LENGTH:   ");
    stream
        .extend_from_slice(format!("{}\r\nx-timestamp: 12.5\r\n\r\n", frames[1].len()).as_bytes());
    stream.extend_from_slice(&frames[1]);
    stream.extend(part(&frames[2], false, "\r\n"));
    // Content-Length counting the trailing CR LF and NUL padding.
    stream.extend_from_slice(
        format!("--frame\r\nContent-Length: {}\r\n\r\n", frames[3].len() + 4).as_bytes(),
    );
    stream.extend_from_slice(&frames[3]);
    stream.extend_from_slice(b"\0\0\r\n--frame\r\n");
    for mode in [Mode::Auto, multipart()] {
        let o = read_every_way(&mode, Limits::default(), &stream);
        assert_frames(&o, &frames.iter().collect::<Vec<_>>());
        assert_eq!(o.stats.errors, 0, "{:?}", o.errors);
        assert_eq!(
            o.frames[1].timestamp,
            Some(UNIX_EPOCH + Duration::from_millis(12_500))
        );
    }
}

#[test]
fn declared_boundary_gives_way_to_the_one_sent() {
    let j = synthetic(100, 1, false);
    for sent in ["--frame", "other"] {
        let stream = [
            format!("--{sent}\r\n\r\n").as_bytes(),
            &j,
            format!("\r\n--{sent}\r\n").as_bytes(),
        ]
        .concat();
        let o = read_every_way(&multipart(), Limits::default(), &stream);
        assert_frames(&o, &[&j]);
        assert_eq!(o.stats.errors, 0);
    }
}

#[test]
fn stream_starting_with_part_headers() {
    let frames = jpegs(3);
    let mut stream = Vec::new();
    for j in &frames {
        stream.extend_from_slice(
            format!(
                "Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                j.len()
            )
            .as_bytes(),
        );
        stream.extend_from_slice(j);
        stream.extend_from_slice(b"\r\n--frame\r\n");
    }
    let o = read_every_way(&multipart(), Limits::default(), &stream);
    assert_frames(&o, &frames.iter().collect::<Vec<_>>());
    assert_eq!(o.stats.errors, 0);
    // Auto mode finds the first JPEG by its SOI, then the boundary after it.
    let o = read_every_way(&Mode::Auto, Limits::default(), &stream);
    assert_frames(&o, &frames.iter().collect::<Vec<_>>());
    assert_eq!(o.stats.errors, 1);
    assert!(matches!(o.errors[0].kind, ErrorKind::UnknownFormat { .. }));
}

#[test]
fn garbage_is_skipped_and_counted() {
    let frames = jpegs(4);
    let mut stream = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
    stream.extend(part(&frames[0], true, "\r\n"));
    stream.extend_from_slice(b"garbage\xFF\xD8 between parts\r\n");
    stream.extend(part(&frames[1], true, "\r\n"));
    stream.extend(part(&frames[2], false, "\r\n"));
    // After a boundary line, where headers should be.
    stream.extend_from_slice(b"--frame\r\n\x00\x01\x02\r\n");
    stream.extend(part(&frames[3], false, "\r\n"));
    stream.extend_from_slice(b"--frame\r\n");
    for mode in [Mode::Auto, multipart()] {
        let o = read_every_way(&mode, Limits::default(), &stream);
        assert_frames(
            &o,
            &frames[..3].iter().chain(&frames[3..]).collect::<Vec<_>>(),
        );
        assert_eq!(o.stats.errors, 3, "{:?}", o.errors);
        assert!(o.stats.bytes_skipped > 0);
    }
    // Bare JPEGs with garbage between them and a frame cut short.
    let mut stream = frames[0].clone();
    stream.extend_from_slice(b"junk");
    stream.extend_from_slice(&frames[1][..frames[1].len() / 2]);
    stream.extend_from_slice(&frames[2]);
    let o = read_every_way(&Mode::Jpeg, Limits::default(), &stream);
    assert_frames(&o, &[&frames[0], &frames[2]]);
    assert_eq!(o.stats.errors, 2, "{:?}", o.errors);
}

#[test]
fn wrong_content_length_is_counted_and_the_frame_kept() {
    let frames = jpegs(3);
    for delta in [-10i64, 25] {
        let mut stream = Vec::new();
        for (i, j) in frames.iter().enumerate() {
            let len = if i == 1 {
                j.len() as i64 + delta
            } else {
                j.len() as i64
            };
            stream
                .extend_from_slice(format!("--frame\r\nContent-Length: {len}\r\n\r\n").as_bytes());
            stream.extend_from_slice(j);
            stream.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(b"--frame\r\n");
        let o = read_every_way(&multipart(), Limits::default(), &stream);
        assert_frames(&o, &frames.iter().collect::<Vec<_>>());
        assert_eq!(o.stats.errors, 1, "{:?}", o.errors);
        assert!(matches!(
            o.errors[0].kind,
            ErrorKind::ContentLengthMismatch { .. }
        ));
    }
}

#[test]
fn broken_parts_are_dropped() {
    let frames = jpegs(3);
    let truncated = &frames[1][..frames[1].len() - 30];
    for content_length in [true, false] {
        let mut stream = part(&frames[0], content_length, "\r\n");
        stream.extend(part(truncated, content_length, "\r\n"));
        stream.extend(part(b"not a jpeg", content_length, "\r\n"));
        stream.extend(part(&frames[2], content_length, "\r\n"));
        stream.extend_from_slice(b"--frame\r\n");
        let o = read_every_way(&multipart(), Limits::default(), &stream);
        assert_frames(&o, &[&frames[0], &frames[2]]);
        assert_eq!(o.stats.errors, 2, "{:?}", o.errors);
        assert!(
            matches!(o.errors[0].kind, ErrorKind::TruncatedJpeg { .. }),
            "{}",
            o.errors[0]
        );
        assert!(
            matches!(o.errors[1].kind, ErrorKind::NotJpeg { .. }),
            "{}",
            o.errors[1]
        );
    }
}

/// A stream whose second part has a header line of `len` bytes.
fn with_header_line(len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let frames = jpegs(3);
    let mut stream = part(&frames[0], true, "\r\n");
    let mut p = part(&frames[1], true, "\r\n");
    let line = format!("X-Long: {}\r\n", "a".repeat(len - 8));
    p.splice(9..9, line.into_bytes());
    stream.extend(p);
    stream.extend(part(&frames[2], true, "\r\n"));
    (stream, frames)
}

#[test]
fn header_line_at_the_limit_and_past_it() {
    let limits = small_limits();
    let (stream, frames) = with_header_line(limits.max_header_line);
    let o = read_every_way(&multipart(), limits, &stream);
    assert_frames(&o, &frames.iter().collect::<Vec<_>>());
    assert_eq!(o.stats.errors, 0);
    let (stream, frames) = with_header_line(limits.max_header_line + 1);
    let o = read_every_way(&multipart(), limits, &stream);
    assert_frames(&o, &[&frames[0], &frames[2]]);
    assert_eq!(o.stats.errors, 1);
    assert!(matches!(
        o.errors[0].kind,
        ErrorKind::LineTooLong { limit: 64, .. }
    ));
    // The default, and the message.
    let (stream, _) = with_header_line(MAX_HEADER_LINE + 1);
    let o = read(&multipart(), Limits::default(), &stream, Chunks::Whole);
    let at = stream.windows(6).position(|w| w == b"X-Long").unwrap();
    assert!(
        o.errors[0].to_string().starts_with(&format!(
            "invalid MJPEG at byte {at} while reading part headers: line longer than 1024 bytes: 58 2d 4c"
        )),
        "{}",
        o.errors[0]
    );
}

fn with_headers(count: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let frames = jpegs(3);
    let mut stream = part(&frames[0], true, "\r\n");
    let mut p = part(&frames[1], true, "\r\n");
    // `part` writes two headers.
    let extra: String = (2..count).map(|i| format!("X-{i}: {i}\r\n")).collect();
    p.splice(9..9, extra.into_bytes());
    stream.extend(p);
    stream.extend(part(&frames[2], true, "\r\n"));
    (stream, frames)
}

#[test]
fn header_count_at_the_limit_and_past_it() {
    for limits in [small_limits(), Limits::default()] {
        let (stream, frames) = with_headers(limits.max_headers);
        let o = read_every_way(&multipart(), limits, &stream);
        assert_frames(&o, &frames.iter().collect::<Vec<_>>());
        assert_eq!(o.stats.errors, 0);
        let (stream, frames) = with_headers(limits.max_headers + 1);
        let o = read_every_way(&multipart(), limits, &stream);
        assert_frames(&o, &[&frames[0], &frames[2]]);
        assert_eq!(o.stats.errors, 1);
        assert!(matches!(o.errors[0].kind, ErrorKind::TooManyHeaders { .. }));
    }
}

/// A synthetic JPEG of exactly `len` bytes.
fn jpeg_of_len(len: usize) -> Vec<u8> {
    let base = synthetic(0, 1, false);
    let mut j = base[..base.len() - 2].to_vec();
    // Entropy bytes without FF keep the length exact.
    j.resize(len - 2, 0x55);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

#[test]
fn frame_size_at_the_limit_and_past_it() {
    let limits = small_limits();
    let ok = jpeg_of_len(limits.max_frame_len);
    let big = jpeg_of_len(limits.max_frame_len + 1);
    let after = synthetic(10, 2, false);
    for content_length in [true, false] {
        let mut stream = part(&ok, content_length, "\r\n");
        stream.extend(part(&big, content_length, "\r\n"));
        stream.extend(part(&after, content_length, "\r\n"));
        stream.extend_from_slice(b"--frame\r\n");
        let o = read_every_way(&multipart(), limits, &stream);
        assert_frames(&o, &[&ok, &after]);
        assert_eq!(o.stats.errors, 1, "{:?}", o.errors);
        assert!(matches!(
            o.errors[0].kind,
            ErrorKind::FrameTooLarge { limit: 2000 }
        ));
    }
    let stream = [&ok[..], &big, &after].concat();
    let o = read_every_way(&Mode::Jpeg, limits, &stream);
    assert_frames(&o, &[&ok, &after]);
    assert_eq!(o.stats.errors, 1, "{:?}", o.errors);
    assert!(matches!(o.errors[0].kind, ErrorKind::FrameTooLarge { .. }));
}

#[test]
fn resync_at_the_limit_and_past_it() {
    let limits = small_limits();
    let j = synthetic(10, 2, false);
    for (mode, frame) in [
        (Mode::Jpeg, j.clone()),
        (multipart(), part(&j, true, "\r\n")),
    ] {
        // What is skipped before the frame: garbage plus, for multipart, the delimiter's LF.
        let garbage_len = match mode {
            Mode::Jpeg => limits.max_resync,
            _ => limits.max_resync - 1,
        };
        let mut stream = vec![b'x'; garbage_len];
        if !matches!(mode, Mode::Jpeg) {
            stream.push(b'\n');
        }
        stream.extend_from_slice(&frame);
        let o = read_every_way(&mode, limits, &stream);
        assert_frames(&o, &[&j]);
        assert_eq!(o.stats.errors, 1);
        assert!(o.fatal.is_none());
        stream.insert(0, b'x');
        let o = read_every_way(&mode, limits, &stream);
        assert!(o.frames.is_empty());
        let fatal = o.fatal.expect("fatal");
        assert!(fatal.is_fatal());
        assert_eq!(fatal.kind, ErrorKind::ResyncLimit { limit: 3000 });
        assert_eq!(fatal.offset, limits.max_resync as u64, "{fatal}");
    }
}

#[test]
fn feed_refuses_more_than_buffer_space() {
    let limits = small_limits();
    let mut reader = Reader::new(Mode::Jpeg, limits);
    assert_eq!(reader.buffer_space(), limits.buffer_limit());
    // A frame that never ends fills the buffer up to the frame limit, then is dropped.
    let j = jpeg_of_len(limits.max_frame_len + 100);
    let mut fed = 0;
    while fed < j.len() {
        let n = limits.max_feed.min(j.len() - fed);
        reader.feed(&j[fed..fed + n]).unwrap();
        fed += n;
        assert!(reader.next_frame().unwrap().is_none());
        assert!(reader.buffer_space() >= limits.max_feed);
    }
    assert_eq!(reader.stats().errors, 1);
    let space = reader.buffer_space();
    reader.feed(&vec![0; space]).unwrap();
    let e = reader.feed(b"x").unwrap_err();
    assert!(
        e.is_fatal() && matches!(e.kind, ErrorKind::BufferFull { fed: 1, space: 0 }),
        "{e}"
    );
    // Refused input is not taken and the reader is not poisoned.
    assert_eq!(reader.buffered(), limits.buffer_limit());
    assert!(reader.next_frame().is_ok());
}

#[test]
fn feed_all_takes_chunks_of_any_size() {
    let frames = jpegs(20);
    let stream = multipart_stream(&frames);
    let limits = Limits {
        max_feed: 100,
        ..Limits::default()
    };
    let mut reader = Reader::new(Mode::Auto, limits);
    let mut got = Vec::new();
    reader.feed_all(&stream, |f| got.push(f.jpeg)).unwrap();
    assert_eq!(got, frames);
}

#[test]
fn fatal_errors_stick() {
    let limits = small_limits();
    let mut reader = Reader::new(Mode::Jpeg, limits);
    reader.feed(&vec![b'x'; limits.max_feed]).unwrap();
    let mut result = reader.next_frame();
    for _ in 0..10 {
        if result.is_err() {
            break;
        }
        reader.feed(&vec![b'x'; limits.max_feed]).unwrap();
        result = reader.next_frame();
    }
    let e = result.unwrap_err();
    assert_eq!(reader.next_frame().unwrap_err(), e);
    assert_eq!(reader.feed(b"\xFF\xD8").unwrap_err(), e);
    assert_eq!(reader.stats().errors, 2);
}

#[test]
fn feeding_after_finish_is_refused() {
    let mut reader = Reader::new(Mode::Auto, Limits::default());
    assert_eq!(reader.finish(), Ok(None));
    let e = reader.feed(b"x").unwrap_err();
    assert!(e.is_fatal() && matches!(e.kind, ErrorKind::Finished { fed: 1 }));
    assert_eq!(reader.finish(), Ok(None));
}

#[test]
fn quotes_are_capped() {
    let q = Quote::new(b"--ffmpeg\r\nContent-Type: image/jpeg");
    assert_eq!(
        q.to_string(),
        "2d 2d 66 66 6d 70 65 67 0d 0a 43 6f 6e 74 65 6e \"--ffmpeg\\r\\nConten\" (of 34 bytes)"
    );
    assert_eq!(Quote::tail(b"\xFF\xD9").to_string(), "ff d9 \"\\xff\\xd9\"");
    assert_eq!(Quote::new(b"").to_string(), "nothing");
}

#[test]
fn timestamps_parse_like_we_write_them() {
    let t = UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456);
    assert_eq!(
        parse_timestamp(write::timestamp_value(t).as_bytes()),
        Some(t)
    );
    assert_eq!(
        parse_timestamp(b"12"),
        Some(UNIX_EPOCH + Duration::from_secs(12))
    );
    for bad in [
        &b""[..],
        b".5",
        b"1.",
        b"1.2.3",
        b"-1",
        b"1.0000000001",
        b"x",
        b"99999999999999999999",
    ] {
        let parsed = parse_timestamp(bad);
        assert!(parsed.is_none() || bad == b"1.", "{:?}", bad.escape_ascii());
    }
}

#[test]
fn random_input_never_breaks_the_bounds() {
    let limits = small_limits();
    let j = synthetic(300, 9, true);
    let mut rng = Rng(0xDEAD_BEEF);
    for round in 0..2000 {
        // Mutated valid streams reach deeper than pure noise.
        let mut stream = multipart_stream(&[j.clone(), j.clone()]);
        if round % 2 == 1 {
            stream = [&j[..], &j].concat();
        }
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(stream.len());
            match rng.below(3) {
                0 => stream[at] = rng.below(256) as u8,
                1 => {
                    stream.remove(at);
                }
                _ => stream.insert(at, [b'\r', b'\n', b'-', 0xFF, 0xD8, 0xD9][rng.below(6)]),
            }
        }
        for mode in [Mode::Auto, multipart(), Mode::Jpeg] {
            let whole = read(&mode, limits, &stream, Chunks::Whole);
            for f in &whole.frames {
                assert!(f.jpeg.len() <= limits.max_frame_len);
                assert!(jpeg::complete_len(&f.jpeg) == Some(f.jpeg.len()));
            }
            let chunked = read(&mode, limits, &stream, Chunks::Random(round, 50));
            assert_eq!(chunked.frames, whole.frames, "round {round} {mode:?}");
            assert_eq!(chunked.stats, whole.stats, "round {round} {mode:?}");
        }
    }
}
