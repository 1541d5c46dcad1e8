//! The Motion JPEG wire format: `multipart/x-mixed-replace` parts carrying `image/jpeg`.
//!
//! [`write`](mod@write) builds the bytes we send; [`read`] parses streams we receive (relay and exec
//! sources). Both are pure and synchronous over byte buffers so they can be unit-tested and
//! fuzzed without a runtime. Nothing here does I/O. The load client (`mjpegd-load`) has its own
//! zero-copy parser, several times cheaper than [`read`]; `cases` is the table of inputs and
//! expected frames that both parsers are tested against, so they keep one grammar.

#[doc(hidden)]
pub mod cases;
pub mod read;
pub mod write;

/// The multipart boundary token we send: a plain token, unquoted, without a leading `--`
/// (strict clients such as ffmpeg's mpjpeg demuxer compare it literally).
pub const BOUNDARY: &str = "frame";

/// The `Content-Type` of a stream response.
pub const STREAM_CONTENT_TYPE: &str = "multipart/x-mixed-replace;boundary=frame";

/// The `Content-Type` of each part and of snapshots; ffmpeg rejects parts with anything else.
pub const JPEG_CONTENT_TYPE: &str = "image/jpeg";
