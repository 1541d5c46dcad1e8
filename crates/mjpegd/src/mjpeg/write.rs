//! Encoding of outgoing multipart parts.
//!
//! A stream body is `--frame\r\n` followed by one [`part`] per frame. Each part ends with the
//! *next* boundary line, sent at once after the JPEG: Firefox shows a part only when the next
//! delimiter arrives, so a boundary sent only before the following frame would show every frame
//! one frame late.

use std::fmt::Write as _;
use std::io::{self, IoSlice};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// What a stream body starts with: strict clients refuse a body that does not open with a boundary.
pub const STREAM_PREAMBLE: &[u8] = b"--frame\r\n";

/// What follows every JPEG: the end of the part and the next boundary line.
pub const PART_TRAILER: &[u8] = b"\r\n--frame\r\n";

/// What an advance-headers stream body starts with: the boundary and the first part's header
/// block, sent before the first frame is known.
///
/// Blink shows part N of a multipart image only once it has parsed part N+1's headers through
/// their blank line (crbug 527446), so browsers get each part's headers ahead of its frame. The
/// frame's length is not known when they are sent: these parts carry no `Content-Length` (the
/// reader finds the end of a part by the next boundary) and no `X-Timestamp`.
pub const ADVANCE_PREAMBLE: &[u8] = b"--frame\r\nContent-Type: image/jpeg\r\n\r\n";

/// What follows every JPEG in advance-headers mode: the end of the part, the next boundary and
/// the next part's whole header block, so the browser completes the part the moment it arrives.
pub const ADVANCE_TRAILER: &[u8] = b"\r\n--frame\r\nContent-Type: image/jpeg\r\n\r\n";

/// Formats a wall-clock time as the `X-Timestamp` value: seconds since the Unix epoch with
/// microseconds, the de-facto format clients use to measure latency.
pub fn timestamp_value(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// The header block of a part carrying a JPEG of `jpeg_len` bytes, blank line included.
pub fn part_header(jpeg_len: usize, captured: SystemTime) -> String {
    let mut head = String::with_capacity(96);
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "Content-Type: image/jpeg\r\nContent-Length: {jpeg_len}\r\nX-Timestamp: {}\r\n\r\n",
        timestamp_value(captured)
    );
    head
}

/// Builds one complete part: headers, the JPEG, and the trailing boundary.
///
/// Returns the bytes and the offset at which the JPEG starts inside them, so the JPEG can be
/// handed out later as a zero-copy slice. The part is built once per frame and shared by every
/// viewer: this one copy of the JPEG is the only copy the server ever makes of it.
pub fn part(jpeg: &[u8], captured: SystemTime) -> (Bytes, usize) {
    let head = part_header(jpeg.len(), captured);
    let mut buf = BytesMut::with_capacity(head.len() + jpeg.len() + PART_TRAILER.len());
    buf.put_slice(head.as_bytes());
    buf.put_slice(jpeg);
    buf.put_slice(PART_TRAILER);
    (buf.freeze(), head.len())
}

/// Writes `bufs` in order, one `writev` for all of them when the socket takes them: a part's
/// pieces (headers, the shared JPEG, a trailer) go out without being copied together.
pub async fn write_all_vectored<W: AsyncWrite + Unpin, const N: usize>(
    io: &mut W,
    bufs: [&[u8]; N],
) -> io::Result<()> {
    let mut slices = bufs.map(IoSlice::new);
    let mut rest: &mut [IoSlice<'_>] = &mut slices;
    while !rest.is_empty() {
        let n = io.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn part_layout_matches_the_wire_format() {
        let t = UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456);
        let (bytes, start) = part(b"\xff\xd8abc\xff\xd9", t);
        let expected: &[u8] = b"Content-Type: image/jpeg\r\nContent-Length: 7\r\nX-Timestamp: 1764000000.123456\r\n\r\n\xff\xd8abc\xff\xd9\r\n--frame\r\n";
        assert_eq!(&bytes[..], expected);
        assert_eq!(&bytes[start..start + 7], b"\xff\xd8abc\xff\xd9");
    }

    #[test]
    fn advance_headers_trailer_is_the_boundary_and_a_complete_header_block() {
        assert!(ADVANCE_TRAILER.starts_with(PART_TRAILER));
        assert!(ADVANCE_TRAILER.ends_with(b"\r\n\r\n"));
        assert_eq!(&ADVANCE_TRAILER[2..], ADVANCE_PREAMBLE);
        assert!(ADVANCE_PREAMBLE.starts_with(STREAM_PREAMBLE));
    }

    #[test]
    fn timestamp_pads_microseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(5_000_042);
        assert_eq!(timestamp_value(t), "5.000042");
    }
}
