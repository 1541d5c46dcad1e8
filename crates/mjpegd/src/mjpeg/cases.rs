//! The multipart grammar as a table of cases, shared by the two parsers that read it: the
//! server's copying [`read::Reader`](super::read::Reader) (relay and exec sources) and the load
//! client's zero-copy parser (`mjpegd-load`'s `parse` module, kept separate because it is
//! several times cheaper; see BENCHMARKS.md). A test in each crate runs every case through its
//! parser and compares the outcome with the case's expectation, so a rule changed in one parser
//! and not the other fails a test.
//!
//! Both parsers split the stream into the same frames. They differ on purpose in one thing: the
//! reader *ingests* (it keeps every frame it can find), the load client *validates* (a frame that
//! a strict client such as ffmpeg would reject is counted invalid). [`Frame::conforms`] says which
//! frames the validator must accept.
//!
//! Not in the table because the parsers differ by design:
//! - a first boundary line other than the declared one (`boundary=--b` sent as `----b`, or a
//!   different token): the reader adopts the one sent, as ffmpeg does; the load client keeps the
//!   declared one, as Chromium does, and finds no frames;
//! - a `Content-Length` longer than the body: the reader searches its buffer back for the real
//!   delimiter and keeps the frame; the load client, which never holds a body, loses it and the
//!   part after it;
//! - bodies over [`read::MAX_FRAME_LEN`](super::read::MAX_FRAME_LEN): the reader drops them
//!   (it would have to buffer them), the load client skips them by length and judges them.

use super::read::MAX_HEADER_LINE;

/// One frame a case's stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The JPEG, SOI to EOI.
    pub jpeg: Vec<u8>,
    /// Its `X-Timestamp` in microseconds since the Unix epoch, if it has a valid one.
    pub timestamp_us: Option<u64>,
    /// Whether the part follows the wire strict clients need (`Content-Type: image/jpeg`, a right
    /// `Content-Length`, preceded by a boundary line): the load client accepts exactly these.
    pub conforms: bool,
}

/// One input and what both parsers must make of it.
#[derive(Debug, Clone)]
pub struct Case {
    /// A short name for failure messages.
    pub name: &'static str,
    /// The response's `Content-Type`, from which the boundary is taken.
    pub content_type: &'static str,
    /// The multipart body.
    pub body: Vec<u8>,
    /// The frames, in order, that the reader returns.
    pub frames: Vec<Frame>,
    /// Whether the stream has damage both parsers must count (the reader as recovered errors,
    /// the load client as invalid parts beyond the non-conforming frames).
    pub damaged: bool,
}

/// A small JPEG-shaped body (SOI, a comment segment carrying `filler`, EOI): the parsers look
/// only at its ends and length, never decode it.
pub fn jpeg(seed: u8, filler: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xFE];
    let len = u16::try_from(filler.len() + 3).unwrap_or(u16::MAX);
    v.extend_from_slice(&len.to_be_bytes());
    v.push(seed);
    v.extend_from_slice(filler);
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

/// The content type mjpegd sends.
const CT: &str = "multipart/x-mixed-replace;boundary=frame";

fn ts(i: usize) -> u64 {
    1_764_000_000_000_000 + i as u64 * 33_333
}

fn ts_value(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// A part as mjpegd writes it, without the boundary line before it and with the given end of
/// line; the next boundary line is left to the caller.
fn part(j: &[u8], us: u64, eol: &str) -> Vec<u8> {
    let mut v = format!(
        "Content-Type: image/jpeg{eol}Content-Length: {}{eol}X-Timestamp: {}{eol}{eol}",
        j.len(),
        ts_value(us)
    )
    .into_bytes();
    v.extend_from_slice(j);
    v
}

fn good(j: &[u8], us: u64) -> Frame {
    Frame {
        jpeg: j.to_vec(),
        timestamp_us: Some(us),
        conforms: true,
    }
}

fn flawed(j: &[u8], us: Option<u64>) -> Frame {
    Frame {
        jpeg: j.to_vec(),
        timestamp_us: us,
        conforms: false,
    }
}

/// Three conforming parts separated by `--b` lines with `eol`, the body opening with `open`.
fn three(boundary: &str, eol: &str, open: &str) -> (Vec<u8>, Vec<Frame>) {
    // Delimiter-like bytes inside the JPEGs: only Content-Length framing gets these right.
    three_with(
        boundary,
        eol,
        open,
        &format!("x{eol}--{boundary}{eol}{eol}--"),
    )
}

fn three_with(boundary: &str, eol: &str, open: &str, filler: &str) -> (Vec<u8>, Vec<Frame>) {
    let mut body = format!("{open}--{boundary}{eol}").into_bytes();
    let mut frames = Vec::new();
    for i in 0..3u8 {
        let j = jpeg(i, filler.as_bytes());
        body.extend(part(&j, ts(i.into()), eol));
        body.extend_from_slice(format!("{eol}--{boundary}{eol}").as_bytes());
        frames.push(good(&j, ts(i.into())));
    }
    (body, frames)
}

/// A body of conforming parts around one `middle` part (its bytes from just after a boundary
/// line up to the CR LF before the next), with the expectation for the middle part.
fn around(middle: &[u8], expect: Option<Frame>) -> (Vec<u8>, Vec<Frame>) {
    let (a, b) = (jpeg(10, b"first"), jpeg(11, b"last"));
    let mut body = b"--frame\r\n".to_vec();
    body.extend(part(&a, ts(0), "\r\n"));
    body.extend_from_slice(b"\r\n--frame\r\n");
    body.extend_from_slice(middle);
    body.extend_from_slice(b"\r\n--frame\r\n");
    body.extend(part(&b, ts(2), "\r\n"));
    body.extend_from_slice(b"\r\n--frame\r\n");
    let mut frames = vec![good(&a, ts(0))];
    frames.extend(expect);
    frames.push(good(&b, ts(2)));
    (body, frames)
}

fn case(
    name: &'static str,
    content_type: &'static str,
    (body, frames): (Vec<u8>, Vec<Frame>),
    damaged: bool,
) -> Case {
    Case {
        name,
        content_type,
        body,
        frames,
        damaged,
    }
}

/// `data` with every `from` replaced by `to`.
fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(p) = rest.windows(from.len()).position(|w| w == from) {
        v.extend_from_slice(&rest[..p]);
        v.extend_from_slice(to);
        rest = &rest[p + from.len()..];
    }
    v.extend_from_slice(rest);
    v
}

/// A header block whose one extra line is `len` bytes long (CR LF excluded).
fn long_header_part(j: &[u8], len: usize) -> Vec<u8> {
    let mut v = format!("X-Long: {}\r\n", "a".repeat(len - "X-Long: ".len())).into_bytes();
    v.extend(part(j, ts(1), "\r\n"));
    v
}

/// A header block with `n` header lines in all.
fn many_headers_part(j: &[u8], n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n - 3 {
        v.extend_from_slice(format!("X-Pad-{i}: {i}\r\n").as_bytes());
    }
    v.extend(part(j, ts(1), "\r\n"));
    v
}

/// Every case.
pub fn cases() -> Vec<Case> {
    let m = jpeg(1, b"middle");
    let mut cases = vec![
        case("mjpegd's wire", CT, three("frame", "\r\n", ""), false),
        case(
            "quoted boundary parameter",
            "multipart/x-mixed-replace; boundary=\"frame\"",
            three("frame", "\r\n", ""),
            false,
        ),
        case(
            "quoted boundary with an escaped quote and a semicolon",
            "multipart/x-mixed-replace; boundary=\"a\\\"b;c\"; charset=x",
            three("a\"b;c", "\r\n", ""),
            false,
        ),
        case(
            "boundary parameter with a leading --",
            "multipart/x-mixed-replace; boundary=--myboundary",
            three("myboundary", "\r\n", ""),
            false,
        ),
        case(
            "parameter name case, spacing, other parameters",
            "multipart/x-mixed-replace;charset=utf-8;Boundary = frame ;x=y",
            three("frame", "\r\n", ""),
            false,
        ),
        case("LF-only lines", CT, three("frame", "\n", ""), false),
        case(
            "blank lines before the first boundary",
            CT,
            three("frame", "\r\n", "\r\n\r\n"),
            false,
        ),
    ];

    // Header names in any case, odd spacing, a timestamp with fewer digits.
    let mut middle = format!(
        "content-type:image/jpeg\r\ncontent-LENGTH:   {}\r\nx-timestamp: 12.5\r\n\r\n",
        m.len()
    )
    .into_bytes();
    middle.extend_from_slice(&m);
    cases.push(case(
        "header name case and spacing",
        CT,
        around(
            &middle,
            Some(Frame {
                jpeg: m.clone(),
                timestamp_us: Some(12_500_000),
                conforms: true,
            }),
        ),
        false,
    ));

    // Blank lines and lone `--` lines between a body and the next boundary.
    let mut middle = part(&m, ts(1), "\r\n");
    middle.extend_from_slice(b"\r\n\r\n--\r\n");
    cases.push(case(
        "blank and lone -- lines before a boundary",
        CT,
        around(&middle, Some(good(&m, ts(1)))),
        false,
    ));

    // White space after the boundary token.
    let (body, frames) = three("frame", "\r\n", "");
    let body = replace_all(
        &body,
        b"\r\n--frame\r\nContent-Type",
        b"\r\n--frame \t\r\nContent-Type",
    );
    cases.push(case(
        "white space after a boundary",
        CT,
        (body, frames),
        false,
    ));

    // The close delimiter ends the stream.
    let (mut body, frames) = three("frame", "\r\n", "");
    body.truncate(body.len() - 2);
    body.extend_from_slice(b"--\r\n");
    cases.push(case("close delimiter", CT, (body, frames), false));

    // Garbage before the first boundary line.
    let (body, frames) = three("frame", "\r\n", "HTTP/1.0 200 OK\r\nnoise\r\n");
    cases.push(case("preamble garbage", CT, (body, frames), true));

    // A stream that opens with a part's headers instead of a boundary line (the first JPEG
    // can then only be found by searching the delimiter after it: none inside it).
    let (body, mut frames) = three_with("frame", "\r\n", "", "plain");
    let body = body[b"--frame\r\n".len()..].to_vec();
    frames[0].conforms = false;
    cases.push(case(
        "no boundary line before the first part",
        CT,
        (body, frames),
        false,
    ));

    // Parts a strict client rejects but whose JPEG is intact.
    let plain = jpeg(2, b"no delimiter inside");
    let mut middle = b"Content-Type: image/jpeg\r\n\r\n".to_vec();
    middle.extend_from_slice(&plain);
    cases.push(case(
        "no Content-Length",
        CT,
        around(&middle, Some(flawed(&plain, None))),
        false,
    ));
    let mut middle = format!(
        "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        m.len()
    )
    .into_bytes();
    middle.extend_from_slice(&m);
    cases.push(case(
        "wrong Content-Type",
        CT,
        around(&middle, Some(flawed(&m, None))),
        false,
    ));
    let mut middle = format!("Content-Length: {}\r\n\r\n", m.len()).into_bytes();
    middle.extend_from_slice(&m);
    cases.push(case(
        "no Content-Type",
        CT,
        around(&middle, Some(flawed(&m, None))),
        false,
    ));
    let mut middle = format!(
        "Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        plain.len() - 5
    )
    .into_bytes();
    middle.extend_from_slice(&plain);
    cases.push(case(
        "Content-Length too short",
        CT,
        around(&middle, Some(flawed(&plain, None))),
        true,
    ));

    // Parts that carry no frame.
    let cut = &m[..m.len() - 4];
    cases.push(case(
        "truncated JPEG",
        CT,
        around(&part(cut, ts(1), "\r\n"), None),
        true,
    ));
    cases.push(case(
        "not a JPEG",
        CT,
        around(&part(b"plain text", ts(1), "\r\n"), None),
        true,
    ));
    cases.push(case(
        "malformed header line",
        CT,
        around(b"Content-Type image/jpeg\r\n\r\nxx", None),
        true,
    ));

    // Limits.
    cases.push(case(
        "header line at the limit",
        CT,
        around(
            &long_header_part(&m, MAX_HEADER_LINE),
            Some(good(&m, ts(1))),
        ),
        false,
    ));
    cases.push(case(
        "header line over the limit",
        CT,
        around(&long_header_part(&m, MAX_HEADER_LINE + 1), None),
        true,
    ));
    cases.push(case(
        "header count at the limit",
        CT,
        around(
            &many_headers_part(&m, super::read::MAX_HEADERS),
            Some(good(&m, ts(1))),
        ),
        false,
    ));
    cases.push(case(
        "header count over the limit",
        CT,
        around(&many_headers_part(&m, super::read::MAX_HEADERS + 1), None),
        true,
    ));
    cases
}
