//! Pure JPEG inspection over byte slices: markers, dimensions, sanity checks. No I/O, no decoding.

use thiserror::Error;

/// Why a buffer is not a usable JPEG.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JpegError {
    /// The buffer does not start with the SOI marker `FF D8`.
    #[error("not a JPEG: does not start with FF D8 (SOI)")]
    NoSoi,
    /// A marker segment runs past the end of the buffer.
    #[error("truncated JPEG: segment at byte {0} runs past the end")]
    Truncated(usize),
    /// No start-of-frame segment was found before the scan data.
    #[error("JPEG has no start-of-frame (SOF) segment before its image data")]
    NoSof,
    /// The image declares a zero width or height.
    #[error("JPEG declares an empty image ({0}x{1})")]
    EmptyImage(u32, u32),
}

/// Width and height of a JPEG, read from its first SOFn segment.
pub fn dimensions(data: &[u8]) -> Result<(u32, u32), JpegError> {
    if data.len() < 2 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err(JpegError::NoSoi);
    }
    let mut pos = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while pos < data.len() && data[pos] == 0xFF && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if pos + 4 > data.len() {
            return Err(JpegError::Truncated(pos));
        }
        if data[pos] != 0xFF {
            return Err(JpegError::NoSof);
        }
        let marker = data[pos + 1];
        // Standalone markers carry no length.
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            pos += 2;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return Err(JpegError::NoSof);
        }
        let len = usize::from(u16::from_be_bytes([data[pos + 2], data[pos + 3]]));
        if len < 2 || pos + 2 + len > data.len() {
            return Err(JpegError::Truncated(pos));
        }
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            if len < 7 {
                return Err(JpegError::Truncated(pos));
            }
            let h = u32::from(u16::from_be_bytes([data[pos + 5], data[pos + 6]]));
            let w = u32::from(u16::from_be_bytes([data[pos + 7], data[pos + 8]]));
            if w == 0 || h == 0 {
                return Err(JpegError::EmptyImage(w, h));
            }
            return Ok((w, h));
        }
        pos += 2 + len;
    }
}

/// True when the buffer starts with SOI and ends with EOI (`FF D9`), ignoring trailing padding
/// that some cameras add after EOI.
pub fn looks_complete(data: &[u8]) -> bool {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return false;
    }
    let trimmed = data.len() - data.iter().rev().take(16).take_while(|&&b| b == 0).count();
    trimmed >= 4 && data[trimmed - 2] == 0xFF && data[trimmed - 1] == 0xD9
}

/// How many padding bytes after EOI [`complete_len`] tolerates: some cameras pad a frame with
/// NULs and some servers count the part's trailing CRLF in its `Content-Length`.
pub const MAX_TRAILING_PADDING: usize = 64;

/// The length of the JPEG in `data` up to and including its EOI, ignoring up to
/// [`MAX_TRAILING_PADDING`] trailing NUL, CR, LF, space or tab bytes; `None` unless `data` starts
/// with SOI and ends (after that padding) with EOI.
///
/// A cheap completeness check for a JPEG whose extent is already known (a multipart part): it
/// looks at both ends only, never at the bytes between.
pub fn complete_len(data: &[u8]) -> Option<usize> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let padding = data
        .iter()
        .rev()
        .take(MAX_TRAILING_PADDING)
        .take_while(|&&b| matches!(b, 0 | b'\r' | b'\n' | b' ' | b'\t'))
        .count();
    let end = data.len() - padding;
    (end >= 4 && data.get(end - 2..end) == Some(&[0xFF, 0xD9][..])).then_some(end)
}

/// What [`EndScanner::scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The JPEG ends (EOI included) this many bytes into the buffer.
    Complete(usize),
    /// No end yet: call again once more bytes have been appended.
    Incomplete,
    /// The bytes cannot be one JPEG: the problem is at `pos`.
    Invalid {
        /// Offset in the buffer of the offending byte or marker.
        pos: usize,
        /// What is wrong there.
        reason: &'static str,
    },
}

/// Finds the end of a JPEG that starts a growing buffer by walking its marker segments.
///
/// Length-prefixed segments are skipped whole by their length, so marker-like bytes inside them
/// (an EXIF thumbnail in APP1 carries its own SOI and EOI) never end the frame; in entropy-coded
/// data, `FF 00` stuffing and `RSTn` markers are stepped over. Each byte is examined at most
/// once across calls, whatever the chunking, and segment payloads not at all.
#[derive(Debug, Clone, Default)]
pub struct EndScanner {
    /// Offset of the next byte to parse; may lie past the buffer while a segment is skipped.
    pos: usize,
    /// Whether `pos` is inside entropy-coded data (after SOS) rather than at a marker.
    in_entropy: bool,
}

impl EndScanner {
    /// A scanner for a buffer that should start with SOI.
    pub fn new() -> EndScanner {
        EndScanner::default()
    }

    /// How far the scan has got: the end of the JPEG is at or after this offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Continues the scan over `data`, which must be the buffer given before, possibly extended.
    pub fn scan(&mut self, data: &[u8]) -> Scan {
        if self.pos == 0 {
            match data.get(..2) {
                None if data.first().is_none_or(|&b| b == 0xFF) => return Scan::Incomplete,
                Some([0xFF, 0xD8]) => self.pos = 2,
                _ => {
                    return Scan::Invalid {
                        pos: 0,
                        reason: "does not start with SOI (FF D8)",
                    };
                }
            }
        }
        loop {
            if self.in_entropy {
                let Some(rest) = data.get(self.pos..) else {
                    return Scan::Incomplete;
                };
                let Some(ff) = memchr::memchr(0xFF, rest) else {
                    self.pos = data.len();
                    return Scan::Incomplete;
                };
                let at = self.pos + ff;
                match data.get(at + 1) {
                    None => {
                        self.pos = at;
                        return Scan::Incomplete;
                    }
                    // Byte stuffing and restart markers belong to the entropy-coded data;
                    // an FF run is fill before a marker.
                    Some(0x00 | 0xD0..=0xD7) => self.pos = at + 2,
                    Some(0xFF) => self.pos = at + 1,
                    Some(_) => {
                        self.pos = at;
                        self.in_entropy = false;
                    }
                }
                continue;
            }
            let (Some(&first), Some(&marker)) = (data.get(self.pos), data.get(self.pos + 1)) else {
                if data.get(self.pos).is_some_and(|&b| b != 0xFF) {
                    return self.invalid("expected a marker (FF)");
                }
                return Scan::Incomplete;
            };
            if first != 0xFF {
                return self.invalid("expected a marker (FF)");
            }
            match marker {
                // Fill bytes may precede any marker.
                0xFF => self.pos += 1,
                0xD9 => return Scan::Complete(self.pos + 2),
                0xD8 => return self.invalid("a new image (SOI) starts before this one ended"),
                0x00 => return self.invalid("stuffed zero (FF 00) outside entropy-coded data"),
                0x01 | 0xD0..=0xD7 => self.pos += 2,
                _ => {
                    let (Some(&hi), Some(&lo)) =
                        (data.get(self.pos + 2), data.get(self.pos + 3))
                    else {
                        return Scan::Incomplete;
                    };
                    let len = usize::from(u16::from_be_bytes([hi, lo]));
                    if len < 2 {
                        return self.invalid("marker segment length below 2");
                    }
                    self.pos += 2 + len;
                    // Scan data follows the SOS header.
                    self.in_entropy = marker == 0xDA;
                }
            }
        }
    }

    fn invalid(&self, reason: &'static str) -> Scan {
        Scan::Invalid {
            pos: self.pos,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        // APP0 of length 4 with two payload bytes.
        v.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00]);
        // SOF0: len 11, precision 8, height 0x0102, width 0x0304, 1 component.
        v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8, 0x01, 0x02, 0x03, 0x04, 1, 1, 0x11, 0]);
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
    }

    #[test]
    fn reads_dimensions_from_sof() {
        assert_eq!(dimensions(&tiny()), Ok((0x0304, 0x0102)));
        assert!(looks_complete(&tiny()));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(dimensions(b""), Err(JpegError::NoSoi));
        assert_eq!(dimensions(b"GIF89a"), Err(JpegError::NoSoi));
        let t = tiny();
        for cut in 0..t.len() - 2 {
            assert!(dimensions(&t[..cut]).is_err(), "cut at {cut}");
        }
        assert!(!looks_complete(&t[..t.len() - 1]));
    }
}
