//! The checks behind the cargo-fuzz targets in `fuzz/`, kept here so that the fuzzers and a
//! stable `cargo test` (`tests/fuzz_corpus.rs` replays the committed corpus and every crash ever
//! found) run exactly the same code.
//!
//! Each function takes one fuzz input and panics when it finds a bug: that is its contract, so
//! the `assert!`s and `expect`s here are the point, not handling of untrusted input. Not part of
//! the server's API.

#[cfg(feature = "auth")]
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

#[cfg(feature = "bus")]
use async_nats::HeaderMap;
#[cfg(feature = "bus")]
use bytes::Bytes;

#[cfg(feature = "auth")]
use crate::auth::Auth;
#[cfg(feature = "bus")]
use crate::bus::directory::{self as dir, MAX_ANNOUNCED, MAX_ANNOUNCEMENT_BYTES};
use crate::config;
#[cfg(feature = "bus")]
use crate::frame::Frame;
use crate::http::query::{FPS_RANGE, Query};
use crate::jpeg::{self, EndScanner, Scan};
#[cfg(feature = "bus")]
use crate::link::wire;
use crate::mjpeg::read::{Limits, Mode, ReadFrame, ReadStats, Reader};
use crate::mjpeg::write;

/// A fuzz check: panics when the input shows a bug.
pub type Check = fn(&[u8]);

/// Every check by fuzz target name (also the name of its `fuzz/corpus/` directory); `token`
/// needs the `auth` feature, `bus_wire` and `directory` the `bus` feature.
pub const TARGETS: &[(&str, Check)] = &[
    #[cfg(feature = "bus")]
    ("bus_wire", bus_wire),
    ("config", config),
    #[cfg(feature = "bus")]
    ("directory", directory),
    ("jpeg_scan", jpeg_scan),
    ("mjpeg_read", mjpeg_read),
    ("query", query),
    ("record_time", record_time),
    ("roundtrip", roundtrip),
    #[cfg(feature = "auth")]
    ("token", token),
];

/// The targets of `fuzz/` this build leaves out (their feature is off): their corpus and
/// regressions are known, not replayed.
pub const LEFT_OUT: &[&str] = &[
    #[cfg(not(feature = "bus"))]
    "bus_wire",
    #[cfg(not(feature = "bus"))]
    "directory",
    #[cfg(not(feature = "auth"))]
    "token",
];

/// Frames from the bus (issue 18 item 6: anyone who may publish on a subject is a peer):
/// decoding arbitrary headers and payloads never panics, an accepted frame is a whole JPEG of
/// the size its headers state, and it encodes back to headers that decode to the same frame.
///
/// Input: header lines `Name: value` (newline-separated), a NUL byte, then the payload; without
/// a NUL the whole input is the headers. Empty headers stand for a message without any.
#[cfg(feature = "bus")]
pub fn bus_wire(input: &[u8]) {
    let (head, payload) = match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim(), value.trim());
        }
    }
    let given = (!head.is_empty()).then_some(&headers);
    match wire::decode(given, Bytes::copy_from_slice(payload)) {
        Ok(r) => {
            let image = &r.image;
            assert!(image.jpeg.len() <= payload.len());
            assert_eq!(jpeg::complete_len(&image.jpeg), Some(image.jpeg.len()));
            assert_eq!(
                jpeg::dimensions(&image.jpeg).ok(),
                Some((image.width, image.height))
            );
            let frame = Frame::new(r.seq, image, r.stamp.captured, r.stamp.online);
            let back = wire::decode(Some(&wire::headers(&frame).0), frame.jpeg())
                .expect("a frame we encoded decodes");
            assert_eq!(back.seq, r.seq);
            // A frame gains the standard Huffman tables when it has none (Frame::new), so the
            // round trip keeps the frame's bytes, which are the received ones only if it had them.
            assert_eq!(back.image.jpeg, frame.jpeg());
            assert_eq!(
                &back.image.jpeg[..],
                &jpeg::dht::ensure_huffman_tables(&image.jpeg)[..]
            );
            assert_eq!(back.stamp.captured, r.stamp.captured);
            assert_eq!(back.stamp.online, r.stamp.online);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Camera announcements from the bus (`mjpegd.directory`): parsing arbitrary bytes never
/// panics, an accepted one is within the size and camera-count limits, and the settings an edge
/// derives from each announced camera stay in their ranges.
#[cfg(feature = "bus")]
pub fn directory(data: &[u8]) {
    match dir::parse(data) {
        Ok(a) => {
            assert!(data.len() <= MAX_ANNOUNCEMENT_BYTES);
            assert!(a.cameras.len() <= MAX_ANNOUNCED);
            for c in &a.cameras {
                let _ = crate::name::valid_name(&c.name);
                let p = crate::hub::peer_params(c.width, c.height, c.fps, 80);
                assert!(p.width > 0 && p.height > 0, "{c:?}");
                let (lo, hi) = crate::hub::FPS_RANGE;
                assert!(p.fps >= lo && p.fps <= hi, "{c:?}: fps {}", p.fps);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Config files: parsing and checking arbitrary text never panics, and every error names a key
/// path or a line.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text) {
        Ok(file) => {
            let _ = config::check_server(&file.server, "server.");
            // Checking cameras builds openers; keep to specs that touch no files or processes.
            let safe = file.cameras.iter().all(|c| {
                c.source == "testpattern" || c.source == "images" || c.source.starts_with("http")
            });
            if safe {
                if let Ok(cams) = config::check_cameras(&file.cameras) {
                    let names: Vec<String> = cams.iter().map(|c| c.name.clone()).collect();
                    let _ = config::check_auth(&file.auth, &names);
                }
            }
        }
        Err(e) => assert!(!e.0.is_empty()),
    }
}

fn scan_chunked(data: &[u8], chunk: usize) -> Scan {
    let mut scanner = EndScanner::new();
    let mut end = 0;
    loop {
        end = (end + chunk).min(data.len());
        let r = scanner.scan(&data[..end]);
        if r != Scan::Incomplete || end == data.len() {
            return r;
        }
    }
}

/// The JPEG end scanner and the other JPEG helpers on arbitrary bytes: no panic, the same
/// result whatever the chunking, and a `Complete` length that really ends with EOI.
///
/// Input: one byte giving the chunk size, then the bytes.
pub fn jpeg_scan(input: &[u8]) {
    let [chunk, data @ ..] = input else {
        return;
    };
    let whole = scan_chunked(data, data.len().max(1));
    assert_eq!(scan_chunked(data, usize::from(*chunk) + 1), whole);
    match whole {
        Scan::Complete(n) => {
            assert!(n >= 4 && n <= data.len());
            assert!(data.starts_with(&[0xFF, 0xD8]));
            assert_eq!(&data[n - 2..n], &[0xFF, 0xD9]);
            assert_eq!(scan_chunked(&data[..n], 1), whole);
        }
        Scan::Invalid { pos, .. } => assert!(pos < data.len()),
        Scan::Incomplete => {}
    }
    if let Some(n) = jpeg::complete_len(data) {
        assert!(n <= data.len());
    }
    let _ = jpeg::dimensions(data);
    let _ = jpeg::looks_complete(data);
}

struct ReadOutcome {
    frames: Vec<ReadFrame>,
    stats: ReadStats,
    fatal_at: Option<u64>,
}

fn read_all(mode: &Mode, limits: Limits, data: &[u8], sizes: &[u8]) -> ReadOutcome {
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
    ReadOutcome {
        frames,
        stats: reader.stats(),
        fatal_at,
    }
}

/// Arbitrary bytes fed to the MJPEG reader in arbitrary chunkings, in every mode, with default
/// and tiny limits: no panic, never more buffered than the limits allow, every frame a whole
/// JPEG within the size limit, and the same frames, counters and fatal error whatever the
/// chunking.
///
/// Input: one byte choosing the limits, one byte `k`, `k % 16` chunk-size bytes, then the stream.
pub fn mjpeg_read(input: &[u8]) {
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
        let whole = read_all(mode, limits, data, &[]);
        let chunked = read_all(mode, limits, data, sizes);
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
}

/// Query strings as clients send them: parsing never panics, and the parameters the server reads
/// (`action`, `fps`, `width`) either parse within their documented ranges or are refused.
pub fn query(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let q = Query::parse(Some(raw));
    let _ = q.get("action");
    if let Ok(Some(interval)) = q.min_interval() {
        let fps = 1.0 / interval.as_secs_f64();
        assert!(
            fps >= FPS_RANGE.0 * 0.999 && fps <= FPS_RANGE.1 * 1.001,
            "fps {fps}"
        );
    }
    if let Ok(Some(w)) = q.thumbnail_width() {
        assert!((16..=8192).contains(&w));
    }
}

/// Times on the recording URLs (`at`, `from`, `to`): parsing arbitrary text never panics, an
/// accepted time is within 1970..=9999, and it formats back to text that parses to itself.
pub fn record_time(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(us) = crate::record::time::parse(text) {
        assert!(us >= 0, "{text:?} parsed to {us}");
        let shown = crate::record::time::rfc3339(us);
        assert_eq!(
            crate::record::time::parse(&shown),
            Ok(us),
            "{text:?} -> {shown}"
        );
    }
}

/// Write → read equality: frames built from the input, written by our writer, read back frame
/// for frame (bytes and timestamps, no error) in auto and multipart modes, whatever the chunking.
///
/// Input: a chunk-size byte, then frames, each a flag byte (with a timestamp or not), a length
/// byte and that many payload bytes (wrapped in SOI ... EOI).
pub fn roundtrip(input: &[u8]) {
    let Some((chunk, mut rest)) = input.split_first() else {
        return;
    };
    let mut frames = Vec::new();
    let mut stream = write::STREAM_PREAMBLE.to_vec();
    while let [flags, len, tail @ ..] = rest {
        let flags = *flags;
        let len = usize::from(*len).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        // Stretch some payloads so frames also span many chunks.
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
            reader.feed(piece).expect("feed");
            while let Some(f) = reader.next_frame().expect("a frame we wrote") {
                got.push((f.jpeg.to_vec(), f.timestamp.expect("our timestamp")));
            }
        }
        assert_eq!(reader.finish().expect("a clean end"), None);
        assert_eq!(got, frames);
        assert_eq!(reader.stats().errors, 0);
        assert_eq!(reader.stats().bytes_skipped, 0);
    }
}

#[cfg(feature = "auth")]
fn fuzz_auth() -> &'static Auth {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    AUTH.get_or_init(|| Auth::new(Vec::new(), Some("fuzzing secret, long enough")))
}

#[cfg(feature = "auth")]
/// URL tokens from hostile clients: verification never panics and never accepts a token this
/// server did not sign; a token it signed for one camera verifies for that camera only.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Arbitrary text is never a valid token (forging HMAC-SHA256 is not a fuzzer's job).
    assert!(fuzz_auth().verify_token(text).is_err() || text.contains('.'));
    // Round trip: a token issued for a camera name verifies as that camera.
    let camera: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    if !camera.is_empty() {
        let (token, _) = fuzz_auth()
            .issue_token(&camera, Duration::from_secs(60))
            .expect("issue");
        assert_eq!(
            fuzz_auth().verify_token(&token).as_deref(),
            Ok(camera.as_str())
        );
    }
}
