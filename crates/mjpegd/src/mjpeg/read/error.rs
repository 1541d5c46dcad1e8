//! The reader's error types: what went wrong, at which byte, with the offending bytes quoted.

use std::fmt;

use thiserror::Error;

use super::MAX_BOUNDARY_LEN;

/// How many bytes an error message quotes at most.
const QUOTE_LEN: usize = 16;

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
    /// Fatal (a caller bug): fed after [`Reader::finish`](super::Reader::finish).
    #[error("fed {fed} bytes after the end of the stream")]
    Finished {
        /// Bytes offered.
        fed: usize,
    },
    /// Fatal (a caller bug): fed more than [`Reader::buffer_space`](super::Reader::buffer_space).
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
