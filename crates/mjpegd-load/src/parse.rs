//! Incremental, zero-copy parsing of a received MJPEG stream: the HTTP response head, the body's
//! framing (chunked or identity) and the multipart parts inside it.
//!
//! Bytes are fed in whatever pieces the socket returns. Nothing is buffered except a part's
//! header block (bounded by [`MAX_PART_HEAD`]): JPEG bodies are skipped by their
//! `Content-Length`, looking only at their first and last two bytes, so the cost of ingesting a
//! stream does not grow with the frame size. Malformed input is counted, never a panic.
//!
//! This is not [`mjpegd::mjpeg::read`]: that reader copies every body into its buffer so that
//! it can hand frames out and recover from any damage, which costs about ten times more CPU per
//! byte (BENCHMARKS.md, "Multipart parsing cost"); at the ~3 GB/s of 1000 viewers that is a
//! large share of the one core the client runs on. The grammar is the same: the boundary
//! parameter is read by [`mjpegd::mjpeg::read::boundary_from_content_type`], and both parsers
//! pass the shared table of cases in `mjpegd::mjpeg::cases` (tests/grammar_cases.rs in each
//! crate). They differ where a validator must: a part that strict clients reject (no
//! `Content-Type: image/jpeg`, no or a wrong `Content-Length`, no boundary line before it) is
//! counted [`Invalid`] here where the reader keeps its frame; the module docs of
//! `mjpegd::mjpeg::cases` list the differences.

use mjpegd::mjpeg::read::{MAX_HEADER_LINE, boundary_from_content_type};

/// Largest part header block accepted, in bytes: [`MAX_HEADERS`] lines of at most
/// [`MAX_HEADER_LINE`] bytes, the reader's limits, plus the blank line.
pub const MAX_PART_HEAD: usize = (MAX_HEADERS + 1) * (MAX_HEADER_LINE + 2);

/// How many bytes of a part head are collected per step.
const HEAD_STEP: usize = 512;

/// Largest response head accepted, in bytes.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// More headers than this in a response or part head is treated as malformed (the reader's
/// limit for part heads).
pub const MAX_HEADERS: usize = mjpegd::mjpeg::read::MAX_HEADERS;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: N`.
    Length(u64),
    /// Neither: the body runs until the server closes the connection.
    Close,
}

/// What the load client needs from a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The HTTP status code.
    pub status: u16,
    /// The multipart boundary without its leading `--`; `None` if the response is not multipart.
    pub boundary: Option<String>,
    /// How the body is delimited.
    pub framing: Framing,
}

/// A response head that cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// httparse rejected it.
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    /// No end of head within [`MAX_RESPONSE_HEAD`] bytes.
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    TooLarge,
    /// `Content-Length` is not a number.
    #[error("response Content-Length is not a number")]
    BadLength,
}

/// Parses a response head at the start of `buf`: `Ok(None)` while it is incomplete, else the
/// head and the number of bytes it took (the body starts right after).
pub fn parse_response_head(buf: &[u8]) -> Result<Option<(usize, ResponseHead)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    let mut boundary = None;
    let mut chunked = false;
    let mut length = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-type") {
            boundary = std::str::from_utf8(h.value)
                .ok()
                .and_then(multipart_boundary);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides the framing (RFC 9112 §6.3).
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(HeadError::BadLength)?;
            length = Some(n);
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Close,
    };
    let head = ResponseHead {
        // httparse always sets the code on a complete response.
        status: resp.code.unwrap_or(0),
        boundary,
        framing,
    };
    Ok(Some((len, head)))
}

/// The `boundary` parameter of a `multipart/*` content type, by the reader's rules (quoted or
/// not, escapes, a leading `--` dropped, bounded length); `None` for other media types.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    let media = content_type.split(';').next()?.trim();
    if !media.get(..10)?.eq_ignore_ascii_case("multipart/") {
        return None;
    }
    boundary_from_content_type(content_type)
}

/// Why a part was counted invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invalid {
    /// The body did not start with the boundary line.
    Preamble,
    /// The rest of a boundary line was neither white space and a line end nor `--`.
    BadDelimiter,
    /// The part head could not be parsed.
    BadHead,
    /// The part head was larger than [`MAX_PART_HEAD`] or had a line over [`MAX_HEADER_LINE`].
    HeadTooLarge,
    /// `Content-Type` missing or not `image/jpeg`.
    ContentType,
    /// `Content-Length` missing or not a number (the body was found by searching the boundary).
    ContentLength,
    /// The body does not start with FF D8 or end with FF D9.
    NotJpeg,
    /// The boundary line did not follow the body at once: `Content-Length` was wrong.
    NoBoundary,
}

impl Invalid {
    /// Every reason, in a fixed order (for counting into arrays).
    pub const ALL: [Invalid; 8] = [
        Invalid::Preamble,
        Invalid::BadDelimiter,
        Invalid::BadHead,
        Invalid::HeadTooLarge,
        Invalid::ContentType,
        Invalid::ContentLength,
        Invalid::NotJpeg,
        Invalid::NoBoundary,
    ];

    /// A short stable name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Invalid::Preamble => "preamble",
            Invalid::BadDelimiter => "bad_delimiter",
            Invalid::BadHead => "bad_head",
            Invalid::HeadTooLarge => "head_too_large",
            Invalid::ContentType => "content_type",
            Invalid::ContentLength => "content_length",
            Invalid::NotJpeg => "not_jpeg",
            Invalid::NoBoundary => "no_boundary",
        }
    }

    /// The position of this reason in [`Invalid::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One part as judged by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// `Ok` for a well-formed JPEG part followed by a boundary, else the first problem found.
    pub verdict: Result<(), Invalid>,
    /// The body length from `Content-Length` (0 when unknown).
    pub body_len: u64,
    /// The part's `X-Timestamp` in microseconds since the Unix epoch, if present and parsable.
    pub timestamp_us: Option<u64>,
}

impl Part {
    fn invalid(reason: Invalid) -> Part {
        Part {
            verdict: Err(reason),
            body_len: 0,
            timestamp_us: None,
        }
    }
}

/// A part whose body has been (or is being) skipped, waiting for its boundary to be confirmed.
#[derive(Debug, Clone, Copy)]
struct Pending {
    verdict: Result<(), Invalid>,
    body_len: u64,
    timestamp_us: Option<u64>,
    first: [u8; 2],
    first_len: u8,
    last: [u8; 2],
}

impl Pending {
    fn observe_body(&mut self, s: &[u8]) {
        if self.first_len < 2 {
            for &b in s.iter().take(2 - usize::from(self.first_len)) {
                self.first[usize::from(self.first_len)] = b;
                self.first_len += 1;
            }
        }
        match s {
            [] => {}
            [b] => self.last = [self.last[1], *b],
            [.., a, b] => self.last = [*a, *b],
        }
    }

    fn finish_body(&mut self) {
        let jpeg = self.body_len >= 4 && self.first == [0xFF, 0xD8] && self.last == [0xFF, 0xD9];
        if self.verdict.is_ok() && !jpeg {
            self.verdict = Err(Invalid::NotJpeg);
        }
    }

    fn into_part(self) -> Part {
        Part {
            verdict: self.verdict,
            body_len: self.body_len,
            timestamp_us: self.timestamp_us,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Where a boundary line must come: blank lines (CR, LF, white space) and lone `--` lines
    /// are skipped, as the reader does; anything else but `-` is a missing boundary.
    Gap,
    /// Matching `\n--boundary`, `matched` bytes of it seen. Strict: it must come right here
    /// (a mismatch makes the pending part invalid); otherwise we are searching for it.
    Boundary { matched: usize, strict: bool },
    /// After a boundary: white space, then a line end opens a part and `--` closes the stream.
    AfterBoundary { tail: Tail },
    /// Collecting a part's header block into `head`.
    Head,
    /// Skipping the rest of a part body.
    Body { remaining: u64 },
    /// The close delimiter was seen; the epilogue is ignored.
    Closed,
}

/// Where [`State::AfterBoundary`] is in the rest of the boundary line.
#[derive(Debug, Clone, Copy)]
enum Tail {
    /// Right after the token, or after `spaces` bytes of white space.
    Start { spaces: usize },
    /// After a CR.
    Cr,
    /// After one `-`.
    Dash,
}

/// Incremental multipart parser over the decoded body bytes.
#[derive(Debug)]
pub struct Multipart {
    /// `\n--` + boundary: what ends every body (the CR before the LF is optional).
    pattern: Box<[u8]>,
    /// KMP failure function of `pattern`, to resynchronise after garbage in one pass.
    fail: Box<[usize]>,
    state: State,
    /// The header block being collected, seeded with the LF that ended the boundary line so
    /// that an empty block is found by the same blank-line search.
    head: Vec<u8>,
    pending: Option<Pending>,
}

impl Multipart {
    /// A parser for a body whose parts are separated by `--boundary`.
    pub fn new(boundary: &str) -> Self {
        let pattern: Box<[u8]> = [b"\n--", boundary.as_bytes()].concat().into();
        let fail = kmp_failure(&pattern);
        Multipart {
            pattern,
            fail,
            // The body starts with `--boundary`, perhaps after blank lines.
            state: State::Gap,
            head: Vec::new(),
            pending: None,
        }
    }

    /// Whether the close delimiter (`--boundary--`) has been seen.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Consumes `data`, calling `on_part` for each part as soon as it is judged.
    pub fn feed(&mut self, mut data: &[u8], on_part: &mut impl FnMut(Part)) {
        while !data.is_empty() {
            let used = match self.state {
                State::Gap => self.gap(data[0], on_part),
                State::Boundary { matched, strict } => {
                    self.boundary(data, matched, strict, on_part)
                }
                State::AfterBoundary { tail } => self.after_boundary(data[0], tail, on_part),
                State::Head => self.head(data, on_part),
                State::Body { remaining } => self.body(data, remaining),
                State::Closed => data.len(),
            };
            data = &data[used..];
        }
    }

    fn boundary(
        &mut self,
        data: &[u8],
        matched: usize,
        strict: bool,
        on_part: &mut impl FnMut(Part),
    ) -> usize {
        let pat = &self.pattern;
        if strict {
            let want = &pat[matched..];
            let n = want.len().min(data.len());
            match want[..n].iter().zip(data).position(|(a, b)| a != b) {
                None if matched + n == pat.len() => {
                    if let Some(p) = self.pending.take() {
                        on_part(p.into_part());
                    }
                    self.state = State::AfterBoundary {
                        tail: Tail::Start { spaces: 0 },
                    };
                    n
                }
                None => {
                    self.state = State::Boundary {
                        matched: matched + n,
                        strict,
                    };
                    n
                }
                // `\n--` then a line end or white space: a lone `--` line, skipped.
                Some(i) if matched + i == 3 && matches!(data[i], b'\r' | b'\n' | b' ' | b'\t') => {
                    self.state = State::Gap;
                    i
                }
                Some(i) => {
                    self.missing_boundary(on_part);
                    // The bytes matched so far are a prefix of the pattern: the KMP search
                    // continues from there, re-examining the mismatching byte.
                    self.state = State::Boundary {
                        matched: matched + i,
                        strict: false,
                    };
                    i
                }
            }
        } else {
            let mut m = matched;
            let mut i = 0;
            while i < data.len() {
                if m == 0 {
                    // Garbage is skipped at memchr speed until a possible pattern start.
                    match memchr::memchr(pat[0], &data[i..]) {
                        Some(off) => i += off,
                        None => {
                            i = data.len();
                            break;
                        }
                    }
                }
                let b = data[i];
                while m > 0 && b != pat[m] {
                    m = self.fail[m - 1];
                }
                if b == pat[m] {
                    m += 1;
                }
                i += 1;
                if m == pat.len() {
                    self.state = State::AfterBoundary {
                        tail: Tail::Start { spaces: 0 },
                    };
                    return i;
                }
            }
            self.state = State::Boundary {
                matched: m,
                strict: false,
            };
            i
        }
    }

    /// The part before a boundary that did not come where it should is invalid, or if there
    /// is none, the body did not open with a boundary.
    fn missing_boundary(&mut self, on_part: &mut impl FnMut(Part)) {
        match self.pending.take() {
            Some(mut p) => {
                if p.verdict.is_ok() {
                    p.verdict = Err(Invalid::NoBoundary);
                }
                on_part(p.into_part());
            }
            None => on_part(Part::invalid(Invalid::Preamble)),
        }
    }

    fn gap(&mut self, b: u8, on_part: &mut impl FnMut(Part)) -> usize {
        match b {
            b'\r' | b'\n' | b' ' | b'\t' => 1,
            b'-' => {
                // The LF of `\n--boundary` may have been skipped already (or never sent).
                self.state = State::Boundary {
                    matched: 1,
                    strict: true,
                };
                0
            }
            _ => {
                self.missing_boundary(on_part);
                self.state = self.search();
                0
            }
        }
    }

    fn after_boundary(&mut self, b: u8, tail: Tail, on_part: &mut impl FnMut(Part)) -> usize {
        self.state = match (tail, b) {
            (Tail::Start { spaces }, b' ' | b'\t') if spaces < MAX_HEADER_LINE => {
                State::AfterBoundary {
                    tail: Tail::Start { spaces: spaces + 1 },
                }
            }
            (Tail::Start { .. }, b'\r') => State::AfterBoundary { tail: Tail::Cr },
            (Tail::Start { .. } | Tail::Cr, b'\n') => {
                self.head.clear();
                self.head.push(b'\n');
                State::Head
            }
            (Tail::Start { spaces: 0 }, b'-') => State::AfterBoundary { tail: Tail::Dash },
            (Tail::Dash, b'-') => State::Closed,
            _ => {
                on_part(Part::invalid(Invalid::BadDelimiter));
                self.search()
            }
        };
        1
    }

    fn search(&self) -> State {
        State::Boundary {
            matched: 0,
            strict: false,
        }
    }

    fn head(&mut self, data: &[u8], on_part: &mut impl FnMut(Part)) -> usize {
        let old = self.head.len();
        // Copied a step at a time: a real header block fits in one step, and the body bytes
        // copied with it before the blank line is found stay few.
        let room = (MAX_PART_HEAD + 1 - old).min(HEAD_STEP);
        let take = room.min(data.len());
        self.head.extend_from_slice(&data[..take]);
        let Some(end) = blank_line_end(&self.head, old.saturating_sub(2)) else {
            if self.head.len() > MAX_PART_HEAD {
                on_part(Part::invalid(Invalid::HeadTooLarge));
                self.state = self.search();
            }
            return take;
        };
        self.head.truncate(end);
        self.start_body(on_part);
        end - old
    }

    /// Judges the complete header block in `head` and moves on to its body.
    fn start_body(&mut self, on_part: &mut impl FnMut(Part)) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let block = &self.head[1..];
        let long_line = block.split(|&b| b == b'\n').any(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line.len() > MAX_HEADER_LINE
        });
        if long_line {
            on_part(Part::invalid(Invalid::HeadTooLarge));
            self.state = self.search();
            return;
        }
        let headers = match httparse::parse_headers(block, &mut headers) {
            Ok(httparse::Status::Complete((_, h))) => h,
            _ => {
                on_part(Part::invalid(Invalid::BadHead));
                self.state = self.search();
                return;
            }
        };
        let mut content_type_ok = false;
        let mut length = None;
        let mut timestamp_us = None;
        for h in headers.iter() {
            if h.name.eq_ignore_ascii_case("content-type") {
                content_type_ok = h.value.trim_ascii().eq_ignore_ascii_case(b"image/jpeg");
            } else if h.name.eq_ignore_ascii_case("content-length") {
                length = parse_length(h.value);
            } else if h.name.eq_ignore_ascii_case("x-timestamp") {
                timestamp_us = parse_timestamp_us(h.value);
            }
        }
        let Some(body_len) = length else {
            on_part(Part::invalid(Invalid::ContentLength));
            self.state = self.search();
            return;
        };
        let mut pending = Pending {
            verdict: if content_type_ok {
                Ok(())
            } else {
                Err(Invalid::ContentType)
            },
            body_len,
            timestamp_us,
            first: [0; 2],
            first_len: 0,
            last: [0; 2],
        };
        if body_len == 0 {
            pending.finish_body();
            self.state = State::Gap;
        } else {
            self.state = State::Body {
                remaining: body_len,
            };
        }
        self.pending = Some(pending);
    }

    fn body(&mut self, data: &[u8], remaining: u64) -> usize {
        let n = usize::try_from(remaining).map_or(data.len(), |r| r.min(data.len()));
        let left = remaining - n as u64;
        if let Some(p) = self.pending.as_mut() {
            p.observe_body(&data[..n]);
            if left == 0 {
                p.finish_body();
            }
        }
        self.state = if left == 0 {
            State::Gap
        } else {
            State::Body { remaining: left }
        };
        n
    }
}

/// The end of the first blank line (`\n\n` or `\n\r\n`) at or after `from`.
fn blank_line_end(head: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(p) = memchr::memchr(b'\n', head.get(at..)?) {
        let lf = at + p;
        match head.get(lf + 1..lf + 3) {
            Some([b'\n', _]) => return Some(lf + 2),
            Some([b'\r', b'\n']) => return Some(lf + 3),
            None if head.get(lf + 1) == Some(&b'\n') => return Some(lf + 2),
            _ => at = lf + 1,
        }
    }
    None
}

/// A decimal `Content-Length`, digits only as the reader takes it.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The KMP failure function: `fail[i]` is the length of the longest proper prefix of
/// `pat[..=i]` that is also its suffix.
fn kmp_failure(pat: &[u8]) -> Box<[usize]> {
    let mut fail = vec![0; pat.len()];
    let mut k = 0;
    for i in 1..pat.len() {
        while k > 0 && pat[i] != pat[k] {
            k = fail[k - 1];
        }
        if pat[i] == pat[k] {
            k += 1;
        }
        fail[i] = k;
    }
    fail.into()
}

/// Parses an `X-Timestamp` value (`seconds.micros` since the epoch) into microseconds.
pub fn parse_timestamp_us(v: &[u8]) -> Option<u64> {
    let v = std::str::from_utf8(v).ok()?.trim();
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: u64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut micros = 0u64;
    for i in 0..6 {
        micros = micros * 10 + frac.as_bytes().get(i).map_or(0, |d| u64::from(d - b'0'));
    }
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// A malformed chunked body.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk size line is not hex digits (plus extensions) ended by CRLF.
    #[error("bad chunk size line")]
    BadSize,
    /// The chunk size does not fit in 60 bits.
    #[error("chunk size too large")]
    TooLarge,
    /// Chunk data was not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
}

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    Size { value: u64, digits: u8 },
    Ext { value: u64 },
    SizeLf { value: u64 },
    Data { remaining: u64 },
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    Done,
}

/// Incremental decoder of `Transfer-Encoding: chunked` that hands out payload as sub-slices of
/// its input (no copy).
#[derive(Debug)]
pub struct Chunked {
    state: ChunkState,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    /// A decoder at the start of a chunked body.
    pub fn new() -> Self {
        Chunked {
            state: ChunkState::Size {
                value: 0,
                digits: 0,
            },
        }
    }

    /// Decodes `data`, passing every piece of payload to `out`. Returns `true` once the last
    /// chunk and its trailers have been read (any bytes after that are ignored).
    pub fn feed(&mut self, data: &[u8], out: &mut impl FnMut(&[u8])) -> Result<bool, ChunkError> {
        let mut i = 0;
        while i < data.len() {
            if let ChunkState::Data { remaining } = self.state {
                let n =
                    usize::try_from(remaining).map_or(data.len() - i, |r| r.min(data.len() - i));
                out(&data[i..i + n]);
                i += n;
                let left = remaining - n as u64;
                self.state = if left == 0 {
                    ChunkState::DataCr
                } else {
                    ChunkState::Data { remaining: left }
                };
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match self.state {
                ChunkState::Size { value, digits } => match hex_digit(b) {
                    Some(_) if digits >= 15 => return Err(ChunkError::TooLarge),
                    Some(d) => ChunkState::Size {
                        value: value << 4 | u64::from(d),
                        digits: digits + 1,
                    },
                    None if digits == 0 => return Err(ChunkError::BadSize),
                    None => match b {
                        b'\r' => ChunkState::SizeLf { value },
                        b';' | b' ' | b'\t' => ChunkState::Ext { value },
                        _ => return Err(ChunkError::BadSize),
                    },
                },
                ChunkState::Ext { value } => match b {
                    b'\r' => ChunkState::SizeLf { value },
                    b'\n' => return Err(ChunkError::BadSize),
                    _ => ChunkState::Ext { value },
                },
                ChunkState::SizeLf { value } => match (b, value) {
                    (b'\n', 0) => ChunkState::TrailerStart,
                    (b'\n', n) => ChunkState::Data { remaining: n },
                    _ => return Err(ChunkError::BadSize),
                },
                ChunkState::DataCr if b == b'\r' => ChunkState::DataLf,
                ChunkState::DataLf if b == b'\n' => ChunkState::Size {
                    value: 0,
                    digits: 0,
                },
                ChunkState::DataCr | ChunkState::DataLf => return Err(ChunkError::MissingCrlf),
                ChunkState::TrailerStart if b == b'\r' => ChunkState::TrailerLf,
                ChunkState::TrailerStart | ChunkState::TrailerLine if b == b'\n' => {
                    ChunkState::TrailerStart
                }
                ChunkState::TrailerStart | ChunkState::TrailerLine => ChunkState::TrailerLine,
                ChunkState::TrailerLf if b == b'\n' => ChunkState::Done,
                ChunkState::TrailerLf => return Err(ChunkError::BadSize),
                ChunkState::Data { .. } => unreachable!("handled above"),
                ChunkState::Done => return Ok(true),
            };
        }
        Ok(matches!(self.state, ChunkState::Done))
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[derive(Debug)]
enum BodyDecoder {
    Chunked(Chunked),
    Length { remaining: u64 },
    Close,
}

/// The whole body parser: framing (chunked, length or until close) feeding [`Multipart`].
#[derive(Debug)]
pub struct StreamParser {
    body: BodyDecoder,
    parts: Multipart,
}

impl StreamParser {
    /// A parser for a body with the given framing and multipart boundary.
    pub fn new(framing: Framing, boundary: &str) -> Self {
        let body = match framing {
            Framing::Chunked => BodyDecoder::Chunked(Chunked::new()),
            Framing::Length(n) => BodyDecoder::Length { remaining: n },
            Framing::Close => BodyDecoder::Close,
        };
        StreamParser {
            body,
            parts: Multipart::new(boundary),
        }
    }

    /// Whether the multipart close delimiter has been seen.
    pub fn is_closed(&self) -> bool {
        self.parts.is_closed()
    }

    /// Consumes received body bytes, calling `on_part` for each judged part. Returns `true`
    /// once the body has ended by its framing (last chunk, or declared length reached).
    pub fn feed(
        &mut self,
        data: &[u8],
        on_part: &mut impl FnMut(Part),
    ) -> Result<bool, ChunkError> {
        let parts = &mut self.parts;
        match &mut self.body {
            BodyDecoder::Chunked(c) => c.feed(data, &mut |piece| parts.feed(piece, on_part)),
            BodyDecoder::Length { remaining } => {
                let n = usize::try_from(*remaining).map_or(data.len(), |r| r.min(data.len()));
                parts.feed(&data[..n], on_part);
                *remaining -= n as u64;
                Ok(*remaining == 0)
            }
            BodyDecoder::Close => {
                parts.feed(data, on_part);
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(n: usize) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend((0..n.saturating_sub(4)).map(|i| (i % 251) as u8));
        v.extend([0xFF, 0xD9]);
        v
    }

    fn part(body: &[u8], ts: &str) -> Vec<u8> {
        let mut v = format!(
            "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {ts}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v.extend_from_slice(b"\r\n--frame\r\n");
        v
    }

    /// A well-formed stream body of `n` parts, with awkward bodies (containing CRLF, `--`, the
    /// boundary itself) that only Content-Length framing gets right.
    fn stream(n: usize) -> Vec<u8> {
        let mut v = b"--frame\r\n".to_vec();
        for i in 0..n {
            let mut body = jpeg(20 + i * 7);
            body.splice(3..3, b"\r\n--frame\r\n\r\n--".iter().copied());
            v.extend(part(&body, &format!("1764000000.{:06}", i * 1000)));
        }
        v
    }

    fn chunk(data: &[u8], pieces: usize) -> Vec<u8> {
        let mut v = Vec::new();
        let step = data.len().div_ceil(pieces.max(1)).max(1);
        for (i, c) in data.chunks(step).enumerate() {
            if i % 2 == 0 {
                v.extend(format!("{:x}\r\n", c.len()).bytes());
            } else {
                v.extend(format!("{:X};ext=1\r\n", c.len()).bytes());
            }
            v.extend_from_slice(c);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
        v
    }

    #[derive(Default, Debug, PartialEq)]
    struct Tally {
        valid: usize,
        invalid: Vec<Invalid>,
        timestamps: Vec<Option<u64>>,
        ended: bool,
    }

    fn run(framing: Framing, wire: &[u8], splits: &[usize]) -> Tally {
        let mut p = StreamParser::new(framing, "frame");
        let mut t = Tally::default();
        let mut prev = 0;
        for &s in splits.iter().chain(std::iter::once(&wire.len())) {
            let ended = p
                .feed(&wire[prev..s], &mut |part| match part.verdict {
                    Ok(()) => {
                        t.valid += 1;
                        t.timestamps.push(part.timestamp_us);
                    }
                    Err(e) => t.invalid.push(e),
                })
                .expect("valid chunking");
            t.ended |= ended;
            prev = s;
        }
        t
    }

    #[test]
    fn identity_stream_split_at_every_byte() {
        let wire = stream(3);
        let whole = run(Framing::Close, &wire, &[]);
        assert_eq!(whole.valid, 3);
        assert!(whole.invalid.is_empty());
        assert_eq!(whole.timestamps[1], Some(1_764_000_000_001_000));
        for s in 0..=wire.len() {
            assert_eq!(run(Framing::Close, &wire, &[s]), whole, "split at {s}");
        }
        let every: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(run(Framing::Close, &wire, &every), whole);
    }

    #[test]
    fn chunked_stream_split_at_every_byte() {
        let body = stream(3);
        for pieces in [1, 3, 7] {
            let wire = chunk(&body, pieces);
            let whole = run(Framing::Chunked, &wire, &[]);
            assert_eq!(whole.valid, 3);
            assert!(whole.invalid.is_empty());
            assert!(whole.ended);
            for s in 0..=wire.len() {
                assert_eq!(run(Framing::Chunked, &wire, &[s]), whole, "split at {s}");
            }
            let every: Vec<usize> = (1..wire.len()).collect();
            assert_eq!(run(Framing::Chunked, &wire, &every), whole);
        }
    }

    #[test]
    fn length_framing_stops_at_declared_end() {
        let wire = stream(2);
        let mut framed = wire.clone();
        framed.extend_from_slice(b"garbage after the body");
        let t = run(Framing::Length(wire.len() as u64), &framed, &[5]);
        assert_eq!(t.valid, 2);
        assert!(t.ended);
    }

    #[test]
    fn invalid_parts_are_counted_and_parsing_recovers() {
        let good = part(&jpeg(30), "1.5");
        let mut wire = b"--frame\r\n".to_vec();
        // Wrong content type, but Content-Length lets the parser carry on.
        wire.extend(good.clone());
        wire.extend(
            b"Content-Type: text/plain\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xd9\r\n--frame\r\n",
        );
        // Not a JPEG.
        wire.extend(b"Content-Type: image/jpeg\r\nContent-Length: 4\r\n\r\nabcd\r\n--frame\r\n");
        // Content-Length one short: the body looks fine but the boundary is not where expected.
        wire.extend(
            b"Content-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xd9\xd9\r\n--frame\r\n",
        );
        // No Content-Length: found by searching the boundary, which is then followed by garbage.
        wire.extend(
            b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xd9\r\n--frame!!\r\n--frame\r\n",
        );
        // Malformed header line.
        wire.extend(b"Content-Type image/jpeg\r\n\r\nxx\r\n--frame\r\n");
        wire.extend(good.clone());
        wire.extend(good);
        let whole = run(Framing::Close, &wire, &[]);
        let expected = vec![
            Invalid::ContentType,
            Invalid::NotJpeg,
            Invalid::NoBoundary,
            Invalid::ContentLength,
            Invalid::BadDelimiter,
            Invalid::BadHead,
        ];
        assert_eq!(whole.invalid, expected);
        assert_eq!(whole.valid, 3);
        assert_eq!(whole.timestamps[0], Some(1_500_000));
        for s in 0..=wire.len() {
            assert_eq!(run(Framing::Close, &wire, &[s]), whole, "split at {s}");
        }
        let every: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(run(Framing::Close, &wire, &every), whole);
    }

    #[test]
    fn missing_leading_boundary_is_a_preamble() {
        let mut wire = b"hello\r\n".to_vec();
        wire.extend(stream(2));
        let t = run(Framing::Close, &wire, &[]);
        assert_eq!(t.invalid, vec![Invalid::Preamble]);
        assert_eq!(t.valid, 2);
    }

    #[test]
    fn oversized_head_is_invalid() {
        let mut wire = b"--frame\r\n".to_vec();
        wire.extend(std::iter::repeat_n(b'a', MAX_PART_HEAD + 10));
        wire.extend(b"\r\n--frame\r\n");
        wire.extend(part(&jpeg(10), "2"));
        let t = run(Framing::Close, &wire, &[100]);
        assert_eq!(t.invalid, vec![Invalid::HeadTooLarge]);
        assert_eq!(t.valid, 1);
    }

    #[test]
    fn close_delimiter_ends_the_stream() {
        let mut p = Multipart::new("frame");
        let mut n = 0;
        p.feed(b"--frame\r\n", &mut |_| n += 1);
        let body = part(&jpeg(8), "3");
        let body = &body[..body.len() - 2];
        p.feed(body, &mut |_| n += 1);
        p.feed(b"--\r\nepilogue\r\n--frame\r\n", &mut |_| n += 1);
        assert_eq!(n, 1);
        assert!(p.is_closed());
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: random bytes biased towards the syntax's characters.
        let alphabet = b"\r\n-frame:0123456789abcdefContent-Length;\xff\xd8\xd9 ";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..300 {
            let len = 1 + round * 3;
            let wire: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let mut p = StreamParser::new(Framing::Close, "frame");
            let _ = p.feed(&wire, &mut |_| {});
            let mut c = StreamParser::new(Framing::Chunked, "frame");
            let _ = c.feed(&wire, &mut |_| {});
        }
    }

    #[test]
    fn chunk_errors() {
        let mut c = Chunked::new();
        assert_eq!(c.feed(b"zz\r\n", &mut |_| {}), Err(ChunkError::BadSize));
        let mut c = Chunked::new();
        assert_eq!(
            c.feed(b"2\r\nabX", &mut |_| {}),
            Err(ChunkError::MissingCrlf)
        );
        let mut c = Chunked::new();
        assert_eq!(
            c.feed(b"1234567890abcdef0\r\n", &mut |_| {}),
            Err(ChunkError::TooLarge)
        );
    }

    #[test]
    fn response_heads() {
        let h = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\nTransfer-Encoding: chunked\r\n\r\n--frame";
        let (n, head) = parse_response_head(h).expect("ok").expect("complete");
        assert_eq!(&h[n..], b"--frame");
        assert_eq!(head.status, 200);
        assert_eq!(head.boundary.as_deref(), Some("frame"));
        assert_eq!(head.framing, Framing::Chunked);
        let h =
            b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=\"b 1\"\r\n\r\n";
        let (_, head) = parse_response_head(h).expect("ok").expect("complete");
        assert_eq!(head.boundary.as_deref(), Some("b 1"));
        assert_eq!(head.framing, Framing::Close);
        assert_eq!(parse_response_head(b"HTTP/1.1 503 Busy\r\n"), Ok(None));
        let h = b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\n";
        let (_, head) = parse_response_head(h).expect("ok").expect("complete");
        assert_eq!(
            (head.status, head.boundary, head.framing),
            (503, None, Framing::Length(4))
        );
        assert!(parse_response_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_timestamp_us(b"1764000000.123456"),
            Some(1_764_000_000_123_456)
        );
        assert_eq!(parse_timestamp_us(b" 12.5 "), Some(12_500_000));
        assert_eq!(parse_timestamp_us(b"12"), Some(12_000_000));
        assert_eq!(parse_timestamp_us(b"12.1234567"), Some(12_123_456));
        assert_eq!(parse_timestamp_us(b"x.1"), None);
        assert_eq!(parse_timestamp_us(b"1.-1"), None);
    }
}
