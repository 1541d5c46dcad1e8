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

use crate::jpeg::{self, EndScanner, Scan};

mod error;

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

pub use error::{ErrorKind, Quote, ReadError};

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
mod tests;
