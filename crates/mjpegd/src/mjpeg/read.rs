//! Incremental reader for incoming MJPEG streams: `multipart/x-mixed-replace` bodies or bare
//! concatenated JPEGs (what `ffmpeg -f mjpeg` and `rpicam-vid --codec mjpeg` write), split into
//! frames.
//!
//! The [`Reader`] is pure and synchronous: the caller feeds it bytes as they arrive and pulls
//! frames out; it does no I/O and knows nothing of sockets, processes or time. The relay and exec
//! sources wrap it. The load client does not: it has its own zero-copy parser (`mjpegd-load`'s
//! `parse` module), which skips JPEG bodies by `Content-Length` instead of buffering them; both
//! are tested against the same table of cases (`mjpeg::cases`), so they follow the same grammar.
//! What does not belong here: HTTP response handling (the
//! caller extracts the boundary from the response's `Content-Type` with
//! [`boundary_from_content_type`]), timeouts, retries.
//!
//! Typical use:
//!
//! ```
//! use mjpegd::mjpeg::read::{Limits, Mode, Reader};
//!
//! let mut reader = Reader::new(Mode::Auto, Limits::default());
//! # let chunk: &[u8] = b"--frame\r\nContent-Length: 4\r\n\r\n\xff\xd8\xff\xd9\r\n--frame\r\n";
//! reader.feed(chunk)?;
//! while let Some(frame) = reader.next_frame()? {
//!     assert_eq!(&frame.jpeg[..], b"\xff\xd8\xff\xd9");
//! }
//! # Ok::<(), mjpegd::mjpeg::read::ReadError>(())
//! ```
//!
//! Garbage is not fatal: the reader counts an error ([`ReadStats::errors`], details in
//! [`Reader::take_recovered`]), skips to the next boundary or SOI and goes on. Only a few errors
//! are fatal ([`ReadError::is_fatal`]): skipping more than [`Limits::max_resync`] bytes without
//! finding a frame, an invalid configured boundary, and feeding more than [`Reader::buffer_space`].
//! Every size a peer controls is bounded by [`Limits`], so memory never grows without bound.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;
use thiserror::Error;

use crate::jpeg::{self, EndScanner, Scan};

/// Default largest frame (a part body or a bare JPEG): a 4K JPEG at high quality is 2–4 MiB,
/// so 16 MiB admits any real camera while bounding the buffer a peer can make us hold.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// Default longest header or boundary line, CR LF excluded: real part headers are under 100
/// bytes; 1 KiB leaves room for verbose vendor headers.
pub const MAX_HEADER_LINE: usize = 1024;

/// Default most header lines in one part: cameras send 2 to 5; 32 bounds the work per part.
pub const MAX_HEADERS: usize = 32;

/// Default most bytes skipped while looking for the next frame start before giving up: a few
/// frames' worth of garbage is worth resynchronising over; 4 MiB without a boundary or SOI
/// means the stream is not MJPEG (or uses another boundary) and the connection should be dropped.
pub const MAX_RESYNC: usize = 4 << 20;

/// Default largest chunk [`Reader::feed`] accepts once the reader has been drained: above what
/// one socket or pipe read returns (hyper reads at most ~400 KiB, a pipe holds 64 KiB).
pub const MAX_FEED: usize = 1 << 20;

/// Longest multipart boundary accepted: RFC 2046 caps boundaries at 70 characters; we allow some
/// slack for non-conforming servers while keeping the delimiter look-ahead small.
pub const MAX_BOUNDARY_LEN: usize = 128;

/// CR and LF bytes tolerated between a part's body and the next delimiter (some servers send
/// blank lines there).
const MAX_GAP_CRLF: usize = 8;

/// Buffer room beyond the largest frame for framing bytes still held after a part: the
/// delimiter look-ahead (CR/LF gap, `--`, terminator) or a partial header line.
const FRAMING_SLACK: usize = MAX_GAP_CRLF + 8;

/// How many bytes an error message quotes at most.
const QUOTE_LEN: usize = 16;

/// How many recovered errors are kept for [`Reader::take_recovered`]; older ones are only
/// counted, so a caller that never asks costs nothing.
pub const MAX_PENDING_ERRORS: usize = 8;

/// The upper bounds on everything a peer controls; see each `MAX_*` constant for why its
/// default is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest JPEG, in bytes; bigger frames are skipped and counted as errors.
    pub max_frame_len: usize,
    /// Longest boundary or header line, CR LF excluded.
    pub max_header_line: usize,
    /// Most header lines in one part.
    pub max_headers: usize,
    /// Most bytes skipped while looking for a frame start; past it the reader fails for good.
    pub max_resync: usize,
    /// Largest chunk that [`Reader::feed`] always accepts once the reader has been drained.
    pub max_feed: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_len: MAX_FRAME_LEN,
            max_header_line: MAX_HEADER_LINE,
            max_headers: MAX_HEADERS,
            max_resync: MAX_RESYNC,
            max_feed: MAX_FEED,
        }
    }
}

impl Limits {
    /// The most bytes a reader with these limits ever buffers.
    pub fn buffer_limit(&self) -> usize {
        self.max_frame_len
            .saturating_add(self.max_header_line)
            .saturating_add(MAX_BOUNDARY_LEN)
            .saturating_add(FRAMING_SLACK)
            .saturating_add(self.max_feed)
    }
}

/// What kind of stream to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Decide from the first bytes: `FF D8` is bare JPEG, `--` (after blank lines) is multipart
    /// with the boundary taken from that line.
    Auto,
    /// A multipart body whose boundary (without the leading `--`) is known from the HTTP
    /// `Content-Type`. The stream may also start with part headers instead of a boundary line;
    /// a different boundary on the first boundary line replaces the declared one. Bare JPEGs
    /// under a multipart `Content-Type` are not recognised: use [`Mode::Auto`] when unsure.
    Multipart {
        /// The boundary parameter, e.g. from [`boundary_from_content_type`].
        boundary: String,
    },
    /// Bare concatenated JPEGs, split by their markers.
    Jpeg,
}

/// What the reader has found the stream to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Not decided yet (auto mode before the first recognisable bytes).
    Unknown,
    /// A multipart body.
    Multipart,
    /// Bare concatenated JPEGs.
    Jpeg,
}

/// One JPEG read from the stream.
#[derive(Clone, PartialEq, Eq)]
pub struct ReadFrame {
    /// The JPEG, SOI to EOI; shares the reader's buffer (no copy).
    pub jpeg: Bytes,
    /// The part's `X-Timestamp` header (capture wall time at the sender), if it had a valid one.
    pub timestamp: Option<SystemTime>,
    /// Stream offset of the JPEG's first byte.
    pub offset: u64,
}

impl fmt::Debug for ReadFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadFrame")
            .field("bytes", &self.jpeg.len())
            .field("timestamp", &self.timestamp)
            .field("offset", &self.offset)
            .finish()
    }
}

/// Counters since the reader was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Frames returned.
    pub frames: u64,
    /// Errors met, recovered and fatal.
    pub errors: u64,
    /// Bytes thrown away: garbage skipped while resynchronising and dropped parts or frames.
    pub bytes_skipped: u64,
    /// Bytes fed.
    pub bytes_read: u64,
}

/// Why the stream could not be read at some point, and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid MJPEG at byte {offset} while {context}: {kind}")]
pub struct ReadError {
    /// Stream offset (counted from the first byte fed) where the problem was found.
    pub offset: u64,
    /// What the reader was parsing, e.g. "reading part headers".
    pub context: &'static str,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ReadError {
    /// True when the reader cannot go on: the caller should drop the connection.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ResyncLimit { .. }
                | ErrorKind::BadBoundary { .. }
                | ErrorKind::BufferFull { .. }
                | ErrorKind::Finished { .. }
        )
    }
}

/// What is wrong with the stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The stream starts with neither a boundary line nor a JPEG.
    #[error("stream starts with neither a boundary (--) nor a JPEG (FF D8): {found}")]
    UnknownFormat {
        /// The first bytes.
        found: Quote,
    },
    /// A line did not end within the limit.
    #[error("line longer than {limit} bytes: {found}")]
    LineTooLong {
        /// The configured limit.
        limit: usize,
        /// The start of the line.
        found: Quote,
    },
    /// A part has more header lines than the limit.
    #[error("more than {limit} header lines")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A header line is not `Name: value`.
    #[error("malformed header line {found}")]
    MalformedHeader {
        /// The line.
        found: Quote,
    },
    /// A `Content-Length` value is not a number.
    #[error("Content-Length is not a number: {found}")]
    BadContentLength {
        /// The value.
        found: Quote,
    },
    /// A frame is larger than the limit; it is skipped.
    #[error("frame larger than {limit} bytes")]
    FrameTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A line where a boundary was expected is something else.
    #[error("expected a boundary line, found {found}")]
    ExpectedBoundary {
        /// The line.
        found: Quote,
    },
    /// No delimiter follows a part at its declared `Content-Length`.
    #[error("no boundary after the {declared} bytes its Content-Length declares, found {found}")]
    ContentLengthMismatch {
        /// The declared length.
        declared: usize,
        /// What follows the declared body.
        found: Quote,
    },
    /// A part's body is not a JPEG.
    #[error("part is not a JPEG (FF D8): starts with {found}")]
    NotJpeg {
        /// The start of the body.
        found: Quote,
    },
    /// A part's body lacks its EOI marker.
    #[error("JPEG has no end (EOI, FF D9): ends with {found}")]
    TruncatedJpeg {
        /// The end of the body.
        found: Quote,
    },
    /// Between bare JPEGs, something other than the next SOI.
    #[error("expected a JPEG (FF D8), found {found}")]
    ExpectedJpeg {
        /// The bytes found.
        found: Quote,
    },
    /// A bare JPEG's marker structure is broken.
    #[error("{reason}: {found}")]
    BadJpeg {
        /// What is wrong.
        reason: &'static str,
        /// The bytes at the problem.
        found: Quote,
    },
    /// The stream ended inside a part or frame.
    #[error("stream ended inside a frame ({len} bytes pending)")]
    UnexpectedEnd {
        /// Bytes left unparsed.
        len: usize,
    },
    /// Fatal: too many bytes skipped without finding a frame start.
    #[error("no frame start found in {limit} bytes")]
    ResyncLimit {
        /// The configured limit.
        limit: usize,
    },
    /// Fatal: the configured boundary is empty, too long or contains line breaks.
    #[error("boundary of {len} bytes is empty, longer than {max} or has line breaks", max = MAX_BOUNDARY_LEN)]
    BadBoundary {
        /// Its length.
        len: usize,
    },
    /// Fatal (a caller bug): fed after [`Reader::finish`].
    #[error("fed {fed} bytes after the end of the stream")]
    Finished {
        /// Bytes offered.
        fed: usize,
    },
    /// Fatal (a caller bug): fed more than [`Reader::buffer_space`].
    #[error(
        "fed {fed} bytes with {space} bytes of buffer space: call next_frame until it returns None before feeding"
    )]
    BufferFull {
        /// Bytes offered.
        fed: usize,
        /// Room left.
        space: usize,
    },
}

/// Bytes quoted in an error message: the first few, shown as hex and as escaped text.
#[derive(Clone, PartialEq, Eq)]
pub struct Quote {
    bytes: Box<[u8]>,
    total: usize,
}

impl Quote {
    /// Quotes the start of `data`.
    pub fn new(data: &[u8]) -> Quote {
        Quote {
            bytes: data.get(..QUOTE_LEN).unwrap_or(data).into(),
            total: data.len(),
        }
    }

    /// Quotes the end of `data`.
    pub fn tail(data: &[u8]) -> Quote {
        Quote {
            bytes: data
                .get(data.len().saturating_sub(QUOTE_LEN)..)
                .unwrap_or(data)
                .into(),
            total: data.len(),
        }
    }
}

impl fmt::Display for Quote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bytes.is_empty() {
            return f.write_str("nothing");
        }
        for (i, b) in self.bytes.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{b:02x}")?;
        }
        write!(f, " \"{}\"", self.bytes.escape_ascii())?;
        if self.total > self.bytes.len() {
            write!(f, " (of {} bytes)", self.total)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Quote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quote({self})")
    }
}

/// The boundary parameter of a `Content-Type` header value, without a leading `--`.
///
/// Accepts what cameras send: quoted or not, with a leading `--` or not, any case of the
/// parameter name, other parameters around it. `None` when there is no usable boundary (missing,
/// empty, longer than [`MAX_BOUNDARY_LEN`]).
pub fn boundary_from_content_type(value: &str) -> Option<String> {
    // Parameters start after the media type.
    let mut rest = &value[value.find(';')? + 1..];
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return None;
        }
        let name_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let name = rest[..name_end].trim();
        rest = &rest[name_end..];
        let mut param = String::new();
        if let Some(after_eq) = rest.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            if let Some(quoted) = after_eq.strip_prefix('"') {
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                param.push(escaped);
                            }
                        }
                        c => param.push(c),
                    }
                }
                rest = &quoted[end.min(quoted.len())..];
            } else {
                let end = after_eq.find(';').unwrap_or(after_eq.len());
                param.push_str(after_eq[..end].trim());
                rest = &after_eq[end..];
            }
        }
        if name.eq_ignore_ascii_case("boundary") {
            // Cameras often declare the delimiter line itself (`boundary=--myboundary`) and then
            // send `--myboundary` lines, so the dashes are not part of the boundary.
            let b = param.strip_prefix("--").unwrap_or(&param);
            return valid_boundary(b.as_bytes()).then(|| b.to_owned());
        }
    }
}

fn valid_boundary(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= MAX_BOUNDARY_LEN && !b.iter().any(|&c| c == b'\r' || c == b'\n')
}

/// Where the reader is in the stream.
#[derive(Debug)]
enum State {
    /// Auto mode, nothing recognised yet.
    Detect,
    /// Expecting a boundary line, after any blank lines and lone `--` lines.
    Boundary,
    /// Reading a part's header lines.
    Headers {
        count: usize,
        content_length: Option<usize>,
        timestamp: Option<SystemTime>,
    },
    /// Reading a body of declared length.
    SizedBody {
        len: usize,
        timestamp: Option<SystemTime>,
    },
    /// A body of declared length is not a complete JPEG: is its length right (a delimiter
    /// follows it) or wrong?
    CheckDelimiter {
        len: usize,
        timestamp: Option<SystemTime>,
    },
    /// Reading a body that ends at the next delimiter.
    DelimitedBody {
        /// Offset from which the delimiter search resumes: earlier offsets cannot start one.
        searched: usize,
        timestamp: Option<SystemTime>,
        /// The part's `Content-Length` was wrong (already counted as an error).
        bad_length: bool,
    },
    /// Bare JPEG mode, between frames.
    JpegGap,
    /// Bare JPEG mode, inside a frame.
    JpegFrame(EndScanner),
    /// Skipping garbage to the next frame start.
    Resync(Target),
    /// The stream has ended ([`Reader::finish`]).
    Finished,
}

/// What a resynchronisation looks for.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The next multipart delimiter line.
    Delimiter,
    /// The next SOI.
    Soi,
    /// Whichever comes first of a line starting with `--` and an SOI (format not known yet).
    Either,
}

/// What one parsing step produced.
enum Step {
    Frame(ReadFrame),
    NeedMore,
    Continue,
}

/// A line at the start of the buffer.
enum Line {
    /// Complete: the content ends at `end` (CR, LF excluded); the next line starts at `next`.
    Complete {
        end: usize,
        next: usize,
    },
    Incomplete,
    TooLong,
}

/// Where a delimiter search stopped.
enum Delimiter {
    /// A delimiter's LF is at this offset.
    Found(usize),
    /// A delimiter may start at this offset; more bytes are needed to tell.
    Partial(usize),
    /// None: the next one cannot start before this offset.
    NotFound(usize),
}

/// The incremental MJPEG reader; see the module documentation.
pub struct Reader {
    /// Unparsed bytes; frames are split off its front without copying.
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    consumed: u64,
    state: State,
    limits: Limits,
    /// The multipart boundary, without `--`, once known.
    boundary: Option<Vec<u8>>,
    /// Finds `\n--boundary`.
    delimiter: Option<memmem::Finder<'static>>,
    /// A boundary line has been seen; before that, the first one may replace a declared boundary
    /// (servers that declare one boundary and send another, or declare `--b` and send `----b`).
    boundary_seen: bool,
    /// Auto mode: a bare JPEG stream may turn out to be multipart.
    auto: bool,
    /// Bytes skipped since the last frame start was found.
    skip_run: usize,
    stats: ReadStats,
    recovered: VecDeque<ReadError>,
    fatal: Option<ReadError>,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("buffered", &self.buf.len())
            .field("offset", &self.consumed)
            .field("state", &self.state)
            .field(
                "boundary",
                &self.boundary.as_deref().map(<[u8]>::escape_ascii),
            )
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader for a stream of the given kind.
    pub fn new(mode: Mode, limits: Limits) -> Reader {
        let mut reader = Reader {
            buf: BytesMut::new(),
            consumed: 0,
            state: State::Detect,
            limits,
            boundary: None,
            delimiter: None,
            boundary_seen: false,
            auto: false,
            skip_run: 0,
            stats: ReadStats::default(),
            recovered: VecDeque::new(),
            fatal: None,
        };
        match mode {
            Mode::Auto => reader.auto = true,
            Mode::Jpeg => reader.state = State::JpegGap,
            Mode::Multipart { boundary } => {
                if valid_boundary(boundary.as_bytes()) {
                    reader.set_boundary(boundary.as_bytes());
                    reader.state = State::Boundary;
                } else {
                    reader.fatal = Some(ReadError {
                        offset: 0,
                        context: "configuring the reader",
                        kind: ErrorKind::BadBoundary {
                            len: boundary.len(),
                        },
                    });
                }
            }
        }
        reader
    }

    /// Appends bytes from the stream.
    ///
    /// Accepts up to [`Reader::buffer_space`] bytes, which is at least [`Limits::max_feed`]
    /// whenever [`Reader::next_frame`] has returned `Ok(None)` since the last feed; more is
    /// refused with a fatal [`ErrorKind::BufferFull`] and nothing is appended.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ReadError> {
        if let Some(e) = &self.fatal {
            return Err(e.clone());
        }
        if matches!(self.state, State::Finished) {
            return Err(self.error(
                self.buf.len(),
                "buffering input",
                ErrorKind::Finished { fed: data.len() },
            ));
        }
        let space = self.buffer_space();
        if data.len() > space {
            return Err(self.error(
                self.buf.len(),
                "buffering input",
                ErrorKind::BufferFull {
                    fed: data.len(),
                    space,
                },
            ));
        }
        self.buf.extend_from_slice(data);
        self.stats.bytes_read += data.len() as u64;
        Ok(())
    }

    /// Feeds all of `data` in pieces that fit and hands every frame found to `on_frame`.
    ///
    /// The convenience loop for callers that receive chunks of any size.
    pub fn feed_all(
        &mut self,
        mut data: &[u8],
        mut on_frame: impl FnMut(ReadFrame),
    ) -> Result<(), ReadError> {
        loop {
            while let Some(frame) = self.next_frame()? {
                on_frame(frame);
            }
            if data.is_empty() {
                return Ok(());
            }
            let n = data.len().min(self.buffer_space().max(1));
            let (now, later) = data.split_at(n);
            self.feed(now)?;
            data = later;
        }
    }

    /// The next frame, `Ok(None)` when more bytes are needed, or a fatal error.
    ///
    /// Recovered errors do not show here: they are counted in [`ReadStats::errors`] and the
    /// latest few are kept for [`Reader::take_recovered`]. After a fatal error every call
    /// returns it.
    pub fn next_frame(&mut self) -> Result<Option<ReadFrame>, ReadError> {
        if let Some(e) = &self.fatal {
            return Err(e.clone());
        }
        loop {
            match self.step() {
                Ok(Step::Frame(frame)) => return Ok(Some(frame)),
                Ok(Step::NeedMore) => return Ok(None),
                Ok(Step::Continue) => {}
                Err(e) => {
                    self.stats.errors += 1;
                    self.fatal = Some(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// Ends the stream once the input has: like [`Reader::next_frame`], returns the frames
    /// still to come one per call until `Ok(None)`, including a last part that no delimiter
    /// closed (not every writer closes the last part), and counts an error if the stream ended
    /// inside a frame. The reader accepts no input afterwards.
    pub fn finish(&mut self) -> Result<Option<ReadFrame>, ReadError> {
        let frame = self.next_frame()?;
        if frame.is_some() {
            return Ok(frame);
        }
        let state = std::mem::replace(&mut self.state, State::Finished);
        let mut result = None;
        if let State::DelimitedBody {
            timestamp,
            bad_length,
            ..
        } = state
        {
            if let Some(end) = jpeg_in_part(&self.buf) {
                result = Some(self.take_frame(end, timestamp));
            } else if !bad_length {
                let e = self.error(
                    0,
                    "reading a part body",
                    ErrorKind::UnexpectedEnd {
                        len: self.buf.len(),
                    },
                );
                self.recover(e);
            }
        } else if self
            .buf
            .iter()
            .any(|b| !matches!(b, 0 | b'\r' | b'\n' | b' ' | b'\t'))
            && !matches!(state, State::Resync(_))
        {
            let e = self.error(
                0,
                context(&state),
                ErrorKind::UnexpectedEnd {
                    len: self.buf.len(),
                },
            );
            self.recover(e);
        }
        let rest = self.buf.len();
        if self
            .buf
            .iter()
            .all(|b| matches!(b, 0 | b'\r' | b'\n' | b' ' | b'\t'))
        {
            self.discard(rest);
        } else {
            self.drop_bytes(rest);
        }
        Ok(result)
    }

    /// How many more bytes [`Reader::feed`] accepts now.
    pub fn buffer_space(&self) -> usize {
        self.limits.buffer_limit().saturating_sub(self.buf.len())
    }

    /// How many bytes are buffered and not yet returned or discarded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Counters since the reader was created.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The oldest recovered error not yet taken, for logging. The last
    /// [`MAX_PENDING_ERRORS`] are kept; all are counted in [`ReadStats::errors`].
    pub fn take_recovered(&mut self) -> Option<ReadError> {
        self.recovered.pop_front()
    }

    /// What the stream has turned out to be so far.
    pub fn format(&self) -> Format {
        match self.state {
            State::Detect => Format::Unknown,
            State::Resync(Target::Either) => Format::Unknown,
            State::JpegGap | State::JpegFrame(_) | State::Resync(Target::Soi) => Format::Jpeg,
            _ if self.boundary.is_some() => Format::Multipart,
            _ => Format::Unknown,
        }
    }

    /// The multipart boundary in use (without `--`), once known.
    pub fn boundary(&self) -> Option<&[u8]> {
        self.boundary.as_deref()
    }

    fn set_boundary(&mut self, b: &[u8]) {
        let mut needle = b"\n--".to_vec();
        needle.extend_from_slice(b);
        self.delimiter = Some(memmem::Finder::new(&needle).into_owned());
        self.boundary = Some(b.to_vec());
    }

    fn error(&self, at: usize, context: &'static str, kind: ErrorKind) -> ReadError {
        ReadError {
            offset: self.consumed + at as u64,
            context,
            kind,
        }
    }

    fn recover(&mut self, e: ReadError) {
        self.stats.errors += 1;
        if self.recovered.len() == MAX_PENDING_ERRORS {
            self.recovered.pop_front();
        }
        self.recovered.push_back(e);
    }

    fn discard(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.advance(n);
        self.consumed += n as u64;
    }

    /// Discards bytes of a dropped part or frame.
    fn drop_bytes(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.stats.bytes_skipped += n as u64;
        self.discard(n);
    }

    /// Discards bytes passed over while looking for a frame start; fails past the limit.
    fn skip(&mut self, n: usize, garbage: bool) -> Result<(), ReadError> {
        let n = n.min(self.buf.len());
        self.skip_run = self.skip_run.saturating_add(n);
        if self.skip_run > self.limits.max_resync {
            // Point at the first byte past the limit.
            let at = n - (self.skip_run - self.limits.max_resync);
            let e = self.error(
                at,
                "resynchronising",
                ErrorKind::ResyncLimit {
                    limit: self.limits.max_resync,
                },
            );
            return Err(e);
        }
        if garbage {
            self.stats.bytes_skipped += n as u64;
        }
        self.discard(n);
        Ok(())
    }

    fn take_frame(&mut self, len: usize, timestamp: Option<SystemTime>) -> ReadFrame {
        let offset = self.consumed;
        let len = len.min(self.buf.len());
        let jpeg = self.buf.split_to(len).freeze();
        self.consumed += len as u64;
        self.stats.frames += 1;
        ReadFrame {
            jpeg,
            timestamp,
            offset,
        }
    }

    fn line(&self) -> Line {
        let window = self.limits.max_header_line.saturating_add(2);
        let scan = self.buf.get(..window).unwrap_or(&self.buf);
        match memchr::memchr(b'\n', scan) {
            Some(nl) => {
                let end = if nl > 0 && self.buf.get(nl - 1) == Some(&b'\r') {
                    nl - 1
                } else {
                    nl
                };
                if end > self.limits.max_header_line {
                    Line::TooLong
                } else {
                    Line::Complete { end, next: nl + 1 }
                }
            }
            None if self.buf.len() >= window => Line::TooLong,
            None => Line::Incomplete,
        }
    }

    fn line_too_long(&mut self, context: &'static str) -> Step {
        let e = self.error(
            0,
            context,
            ErrorKind::LineTooLong {
                limit: self.limits.max_header_line,
                found: Quote::new(&self.buf),
            },
        );
        self.recover(e);
        self.state = State::Resync(self.multipart_target());
        Step::Continue
    }

    fn multipart_target(&self) -> Target {
        if self.delimiter.is_some() {
            Target::Delimiter
        } else {
            Target::Either
        }
    }

    /// Searches for `\n--boundary` followed by a line end, white space or `-`, from `from`.
    fn find_delimiter(&self, mut from: usize) -> Delimiter {
        let Some(finder) = &self.delimiter else {
            return Delimiter::NotFound(from);
        };
        let n = finder.needle().len();
        loop {
            let Some(p) = self.buf.get(from..).and_then(|rest| finder.find(rest)) else {
                return Delimiter::NotFound(self.buf.len().saturating_sub(n - 1).max(from));
            };
            let p = from + p;
            match self.buf.get(p + n) {
                None => return Delimiter::Partial(p),
                Some(b'\r' | b'\n' | b' ' | b'\t' | b'-') => return Delimiter::Found(p),
                // The boundary is only a prefix of something else.
                Some(_) => from = p + 1,
            }
        }
    }

    fn step(&mut self) -> Result<Step, ReadError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        match state {
            State::Detect => self.detect(),
            State::Boundary => self.boundary_line(),
            State::Headers {
                count,
                content_length,
                timestamp,
            } => Ok(self.header_line(count, content_length, timestamp)),
            State::SizedBody { len, timestamp } => Ok(self.sized_body(len, timestamp)),
            State::CheckDelimiter { len, timestamp } => Ok(self.check_delimiter(len, timestamp)),
            State::DelimitedBody {
                searched,
                timestamp,
                bad_length,
            } => Ok(self.delimited_body(searched, timestamp, bad_length)),
            State::JpegGap => self.jpeg_gap(),
            State::JpegFrame(scanner) => Ok(self.jpeg_frame(scanner)),
            State::Resync(target) => self.resync(target),
            State::Finished => Ok(Step::NeedMore),
        }
    }

    fn detect(&mut self) -> Result<Step, ReadError> {
        let ws = self
            .buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
            .count();
        self.skip(ws, false)?;
        match self.buf.get(..2) {
            None => {
                self.state = State::Detect;
                Ok(Step::NeedMore)
            }
            Some([0xFF, 0xD8]) => {
                self.skip_run = 0;
                self.state = State::JpegFrame(EndScanner::new());
                Ok(Step::Continue)
            }
            Some(b"--") => {
                self.state = State::Boundary;
                Ok(Step::Continue)
            }
            Some(_) => {
                let e = self.error(
                    0,
                    "detecting the stream format",
                    ErrorKind::UnknownFormat {
                        found: Quote::new(&self.buf),
                    },
                );
                self.recover(e);
                self.state = State::Resync(Target::Either);
                Ok(Step::Continue)
            }
        }
    }

    fn boundary_line(&mut self) -> Result<Step, ReadError> {
        const CONTEXT: &str = "reading a boundary line";
        let (end, next) = match self.line() {
            Line::Incomplete => {
                self.state = State::Boundary;
                return Ok(Step::NeedMore);
            }
            Line::TooLong => return Ok(self.line_too_long(CONTEXT)),
            Line::Complete { end, next } => (end, next),
        };
        let raw = self.buf.get(..end).unwrap_or_default();
        let line = raw.trim_ascii_end();
        // Some cameras send extra blank lines and lone `--` lines between parts.
        if line.is_empty() || line == b"--" {
            self.skip(next, false)?;
            self.state = State::Boundary;
            return Ok(Step::Continue);
        }
        if let Some(rest) = line.strip_prefix(b"--") {
            let matches = self.boundary.as_deref().is_some_and(|b| {
                rest == b
                    || (rest.len() == b.len() + 2 && rest.starts_with(b) && rest.ends_with(b"--"))
            });
            let adopt = if matches || self.boundary_seen {
                None
            } else {
                let b = rest.strip_suffix(b"--").unwrap_or(rest);
                valid_boundary(b).then(|| b.to_vec())
            };
            if matches || adopt.is_some() {
                if let Some(b) = adopt {
                    self.set_boundary(&b);
                }
                self.boundary_seen = true;
                self.discard(next);
                self.skip_run = 0;
                self.state = State::Headers {
                    count: 0,
                    content_length: None,
                    timestamp: None,
                };
                return Ok(Step::Continue);
            }
        } else if !self.boundary_seen && self.boundary.is_some() && looks_like_header(line) {
            // Some servers put the boundary only after each part, so the stream starts with
            // the first part's headers.
            self.skip_run = 0;
            self.state = State::Headers {
                count: 0,
                content_length: None,
                timestamp: None,
            };
            return Ok(Step::Continue);
        }
        let e = self.error(
            0,
            CONTEXT,
            ErrorKind::ExpectedBoundary {
                found: Quote::new(raw),
            },
        );
        self.recover(e);
        self.state = State::Resync(self.multipart_target());
        Ok(Step::Continue)
    }

    fn header_line(
        &mut self,
        count: usize,
        mut content_length: Option<usize>,
        mut timestamp: Option<SystemTime>,
    ) -> Step {
        const CONTEXT: &str = "reading part headers";
        let (end, next) = match self.line() {
            Line::Incomplete => {
                self.state = State::Headers {
                    count,
                    content_length,
                    timestamp,
                };
                return Step::NeedMore;
            }
            Line::TooLong => return self.line_too_long(CONTEXT),
            Line::Complete { end, next } => (end, next),
        };
        let raw = self.buf.get(..end).unwrap_or_default();
        let line = raw.trim_ascii_end();
        if line.is_empty() {
            self.discard(next);
            self.state = match content_length {
                Some(len) => State::SizedBody { len, timestamp },
                None => State::DelimitedBody {
                    searched: 0,
                    timestamp,
                    bad_length: false,
                },
            };
            return Step::Continue;
        }
        let count = count + 1;
        let kind = if count > self.limits.max_headers {
            Some(ErrorKind::TooManyHeaders {
                limit: self.limits.max_headers,
            })
        } else if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            // An obsolete folded continuation line: nothing we read is folded.
            None
        } else {
            match parse_header(line) {
                None => Some(ErrorKind::MalformedHeader {
                    found: Quote::new(raw),
                }),
                Some((name, value)) if name.eq_ignore_ascii_case(b"content-length") => {
                    match parse_length(value) {
                        Some(len) if len <= self.limits.max_frame_len => {
                            content_length = Some(len);
                            None
                        }
                        Some(_) => Some(ErrorKind::FrameTooLarge {
                            limit: self.limits.max_frame_len,
                        }),
                        None => Some(ErrorKind::BadContentLength {
                            found: Quote::new(value),
                        }),
                    }
                }
                Some((name, value)) => {
                    if name.eq_ignore_ascii_case(b"x-timestamp") {
                        timestamp = parse_timestamp(value);
                    }
                    None
                }
            }
        };
        if let Some(kind) = kind {
            let e = self.error(0, CONTEXT, kind);
            self.recover(e);
            self.state = State::Resync(self.multipart_target());
            return Step::Continue;
        }
        self.discard(next);
        self.state = State::Headers {
            count,
            content_length,
            timestamp,
        };
        Step::Continue
    }

    fn sized_body(&mut self, len: usize, timestamp: Option<SystemTime>) -> Step {
        let Some(body) = self.buf.get(..len) else {
            self.state = State::SizedBody { len, timestamp };
            return Step::NeedMore;
        };
        match jpeg_in_part(body) {
            // Trust the length and hand the frame out now rather than after the next delimiter
            // arrives: servers that send the boundary only before the next frame would otherwise
            // show every frame one frame late. The boundary state then checks the delimiter.
            Some(end) => {
                let frame = self.take_frame(end, timestamp);
                self.discard(len - end);
                self.state = State::Boundary;
                Step::Frame(frame)
            }
            None => {
                self.state = State::CheckDelimiter { len, timestamp };
                Step::Continue
            }
        }
    }

    fn check_delimiter(&mut self, len: usize, timestamp: Option<SystemTime>) -> Step {
        const CONTEXT: &str = "reading a part body";
        let after = self.buf.get(len..).unwrap_or_default();
        let gap = after
            .iter()
            .take(MAX_GAP_CRLF)
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        let rest = after.get(gap..).unwrap_or_default();
        let b = self.boundary.as_deref().unwrap_or_default();
        let expected_len = 2 + b.len();
        let prefix_ok = rest.iter().zip(b"--".iter().chain(b)).all(|(x, y)| x == y);
        if prefix_ok && rest.len() <= expected_len {
            // Not enough bytes yet to tell.
            self.state = State::CheckDelimiter { len, timestamp };
            return Step::NeedMore;
        }
        let delimited = prefix_ok
            && rest
                .get(expected_len)
                .is_some_and(|c| matches!(c, b'\r' | b'\n' | b' ' | b'\t' | b'-'));
        if delimited {
            // The length is right: the body itself is broken.
            let body = self.buf.get(..len).unwrap_or_default();
            let kind = if body.starts_with(&[0xFF, 0xD8]) {
                ErrorKind::TruncatedJpeg {
                    found: Quote::tail(body),
                }
            } else {
                ErrorKind::NotJpeg {
                    found: Quote::new(body),
                }
            };
            let e = self.error(0, CONTEXT, kind);
            self.recover(e);
            self.drop_bytes(len);
            self.state = State::Boundary;
            return Step::Continue;
        }
        let e = self.error(
            len,
            CONTEXT,
            ErrorKind::ContentLengthMismatch {
                declared: len,
                found: Quote::new(after),
            },
        );
        self.recover(e);
        // The real end may lie before or after the declared one: search from the start.
        self.state = State::DelimitedBody {
            searched: 0,
            timestamp,
            bad_length: true,
        };
        Step::Continue
    }

    fn delimited_body(
        &mut self,
        searched: usize,
        timestamp: Option<SystemTime>,
        bad_length: bool,
    ) -> Step {
        const CONTEXT: &str = "reading a part body";
        let max = self.limits.max_frame_len;
        let too_large = |reader: &mut Reader| {
            let e = reader.error(0, CONTEXT, ErrorKind::FrameTooLarge { limit: max });
            reader.recover(e);
        };
        let lf = match self.find_delimiter(searched) {
            Delimiter::Found(lf) if lf <= max.saturating_add(1) => lf,
            Delimiter::Found(from) | Delimiter::Partial(from) | Delimiter::NotFound(from) => {
                // A body that would end past the limit (one CR before the LF) is too large.
                if from > max.saturating_add(1) {
                    too_large(self);
                    // Drop a fixed amount rather than all that happens to be buffered, so that
                    // what follows (and the resync budget) does not depend on the chunking.
                    self.drop_bytes(max.saturating_add(2));
                    self.state = State::Resync(Target::Delimiter);
                    return Step::Continue;
                }
                self.state = State::DelimitedBody {
                    searched: from,
                    timestamp,
                    bad_length,
                };
                return Step::NeedMore;
            }
        };
        let end = if lf > 0 && self.buf.get(lf - 1) == Some(&b'\r') {
            lf - 1
        } else {
            lf
        };
        // What follows (CR LF --boundary) is left for the boundary state.
        self.state = State::Boundary;
        if end > max {
            too_large(self);
            self.drop_bytes(end);
            return Step::Continue;
        }
        let body = self.buf.get(..end).unwrap_or_default();
        if let Some(jpeg_end) = jpeg_in_part(body) {
            let frame = self.take_frame(jpeg_end, timestamp);
            self.discard(end - jpeg_end);
            return Step::Frame(frame);
        }
        if !bad_length {
            let kind = if body.starts_with(&[0xFF, 0xD8]) {
                ErrorKind::TruncatedJpeg {
                    found: Quote::tail(body),
                }
            } else {
                ErrorKind::NotJpeg {
                    found: Quote::new(body),
                }
            };
            let e = self.error(0, CONTEXT, kind);
            self.recover(e);
        }
        self.drop_bytes(end);
        Step::Continue
    }

    fn jpeg_gap(&mut self) -> Result<Step, ReadError> {
        // Writers may pad between frames.
        let ws = self
            .buf
            .iter()
            .take_while(|b| matches!(b, 0 | b'\r' | b'\n' | b' ' | b'\t'))
            .count();
        self.skip(ws, false)?;
        match self.buf.get(..2) {
            None => {
                self.state = State::JpegGap;
                Ok(Step::NeedMore)
            }
            Some([0xFF, 0xD8]) => {
                self.skip_run = 0;
                self.state = State::JpegFrame(EndScanner::new());
                Ok(Step::Continue)
            }
            // In auto mode a stream that started with part headers (no boundary line first)
            // was taken for bare JPEG; its first delimiter reveals the boundary.
            Some(b"--") if self.auto => {
                self.state = State::Boundary;
                Ok(Step::Continue)
            }
            Some(_) => {
                let e = self.error(
                    0,
                    "looking for the next JPEG",
                    ErrorKind::ExpectedJpeg {
                        found: Quote::new(&self.buf),
                    },
                );
                self.recover(e);
                self.state = State::Resync(Target::Soi);
                Ok(Step::Continue)
            }
        }
    }

    fn jpeg_frame(&mut self, mut scanner: EndScanner) -> Step {
        const CONTEXT: &str = "reading a JPEG";
        let max = self.limits.max_frame_len;
        // The scanner sees at most a frame's worth, so that where a too-large frame is cut (and
        // so what follows) does not depend on how much happened to be buffered.
        let view = self.buf.get(..max).unwrap_or(&self.buf);
        let full = view.len() == max;
        match scanner.scan(view) {
            Scan::Complete(len) => {
                let frame = self.take_frame(len, None);
                self.state = State::JpegGap;
                Step::Frame(frame)
            }
            Scan::Incomplete if full => {
                let e = self.error(0, CONTEXT, ErrorKind::FrameTooLarge { limit: max });
                self.recover(e);
                self.drop_bytes(scanner.position().min(max).max(1));
                self.state = State::Resync(Target::Soi);
                Step::Continue
            }
            Scan::Incomplete => {
                self.state = State::JpegFrame(scanner);
                Step::NeedMore
            }
            Scan::Invalid { pos, reason } => {
                let found = Quote::new(self.buf.get(pos..).unwrap_or_default());
                let e = self.error(pos, CONTEXT, ErrorKind::BadJpeg { reason, found });
                self.recover(e);
                // The problem may be the next frame's SOI after a truncated one: look from there.
                self.drop_bytes(pos.max(1));
                self.state = State::Resync(Target::Soi);
                Step::Continue
            }
        }
    }

    fn resync(&mut self, target: Target) -> Result<Step, ReadError> {
        const SOI: &[u8] = b"\xFF\xD8\xFF";
        let found = match target {
            Target::Delimiter => match self.find_delimiter(0) {
                Delimiter::Found(lf) => Some((lf + 1, State::Boundary)),
                Delimiter::Partial(from) | Delimiter::NotFound(from) => {
                    self.skip(from, true)?;
                    None
                }
            },
            Target::Soi => match memmem::find(&self.buf, SOI) {
                Some(p) => Some((p, State::JpegGap)),
                None => {
                    self.skip(self.buf.len().saturating_sub(SOI.len() - 1), true)?;
                    None
                }
            },
            Target::Either => {
                let soi = memmem::find(&self.buf, SOI);
                let dashes = memmem::find(&self.buf, b"\n--").map(|p| p + 1);
                match (soi, dashes) {
                    (Some(p), Some(q)) => Some((p.min(q), State::Detect)),
                    (Some(p), None) | (None, Some(p)) => Some((p, State::Detect)),
                    (None, None) => {
                        self.skip(self.buf.len().saturating_sub(2), true)?;
                        None
                    }
                }
            }
        };
        match found {
            Some((at, next)) => {
                self.skip(at, true)?;
                self.state = next;
                Ok(Step::Continue)
            }
            None => {
                self.state = State::Resync(target);
                Ok(Step::NeedMore)
            }
        }
    }
}

/// What the reader is doing in a state, for error messages.
fn context(state: &State) -> &'static str {
    match state {
        State::Detect => "detecting the stream format",
        State::Boundary => "reading a boundary line",
        State::Headers { .. } => "reading part headers",
        State::SizedBody { .. } | State::CheckDelimiter { .. } | State::DelimitedBody { .. } => {
            "reading a part body"
        }
        State::JpegGap => "looking for the next JPEG",
        State::JpegFrame(_) => "reading a JPEG",
        State::Resync(_) => "resynchronising",
        State::Finished => "finishing",
    }
}

/// The length of the JPEG in a part body, `None` unless the body is one whole JPEG. Besides the
/// padding [`jpeg::complete_len`] allows, a body delimited by the next boundary may end with
/// the blank and lone `--` lines some cameras send between parts.
fn jpeg_in_part(body: &[u8]) -> Option<usize> {
    let extra = body
        .iter()
        .rev()
        .take(jpeg::MAX_TRAILING_PADDING)
        .take_while(|&&b| matches!(b, 0 | b'\r' | b'\n' | b' ' | b'\t' | b'-'))
        .count();
    jpeg::complete_len(body.get(..body.len() - extra)?)
}

/// `Name: value` with a token name; `None` when the line is not a header.
fn parse_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    let name = line.get(..colon)?.trim_ascii();
    let value = line.get(colon + 1..)?.trim_ascii();
    let token = !name.is_empty()
        && name
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
    token.then_some((name, value))
}

fn looks_like_header(line: &[u8]) -> bool {
    parse_header(line).is_some()
}

/// A decimal length; `None` if not all digits. Saturates so that absurd values read as too
/// large rather than as malformed.
fn parse_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    }))
}

/// `seconds[.fraction]` since the Unix epoch, as [`crate::mjpeg::write::timestamp_value`]
/// writes it.
fn parse_timestamp(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: u32 = frac.parse().ok()?;
        digits * 10u32.pow(9 - u32::try_from(frac.len()).ok()?)
    };
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
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
                let t =
                    UNIX_EPOCH + Duration::from_micros(1_764_000_000_000_000 + i as u64 * 33_333);
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
        stream.extend_from_slice(
            format!("{}\r\nx-timestamp: 12.5\r\n\r\n", frames[1].len()).as_bytes(),
        );
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
                stream.extend_from_slice(
                    format!("--frame\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
                );
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
}
