//! Pure JPEG inspection over byte slices: markers, dimensions, sanity checks. No I/O, no decoding.
//! [`dht`] inserts the standard Huffman tables into frames that lack them.

pub mod dht;

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
/// data, `FF 00` stuffing and `RSTn` markers are stepped over. A call resumes where the last
/// one stopped, so feeding a frame in any chunking scans it about once; segment payloads are
/// not looked at at all. The result does not depend on the chunking.
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
                    let (Some(&hi), Some(&lo)) = (data.get(self.pos + 2), data.get(self.pos + 3))
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

/// Structurally valid JPEGs for other modules' tests (not decodable images).
#[cfg(test)]
pub(crate) mod testdata {
    /// A JPEG with `entropy_len` bytes of pseudo-random entropy-coded data (with `FF 00`
    /// stuffing and `RSTn` markers) and marker-like bytes inside its segments; with `thumbnail`,
    /// an APP1 segment holding a whole small JPEG, as EXIF thumbnails do.
    pub(crate) fn synthetic(entropy_len: usize, seed: u64, thumbnail: bool) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend_from_slice(b"\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00");
        if thumbnail {
            let thumb = b"\xFF\xD8\xFF\xDB\x00\x04\xFF\xD9\xFF\xDA\x00\x02\x12\xFF\x00\xFF\xD9";
            let len = 2 + 6 + thumb.len();
            v.extend_from_slice(&[0xFF, 0xE1, (len >> 8) as u8, len as u8]);
            v.extend_from_slice(b"Exif\x00\x00");
            v.extend_from_slice(thumb);
        }
        // A comment whose payload looks like EOI, SOI and the start of a delimiter.
        v.extend_from_slice(b"\xFF\xFE\x00\x10\xFF\xD9\xFF\xD8\r\n--frameX");
        // SOF0: 8-bit, 16x16, one component.
        v.extend_from_slice(b"\xFF\xC0\x00\x0B\x08\x00\x10\x00\x10\x01\x01\x11\x00");
        v.extend_from_slice(b"\xFF\xDA\x00\x08\x01\x01\x00\x00\x3F\x00");
        let mut x = seed | 1;
        let mut rst = 0u8;
        for i in 0..entropy_len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = (x >> 24) as u8;
            v.push(b);
            if b == 0xFF {
                v.push(0x00);
            }
            if i % 97 == 96 {
                v.extend_from_slice(&[0xFF, 0xD0 + rst]);
                rst = (rst + 1) % 8;
            }
        }
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
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
        v.extend_from_slice(&[
            0xFF, 0xC0, 0x00, 0x0B, 8, 0x01, 0x02, 0x03, 0x04, 1, 1, 0x11, 0,
        ]);
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

    fn scan_in_chunks(data: &[u8], chunk: usize) -> Scan {
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

    #[test]
    fn scanner_finds_the_end_whatever_the_chunking() {
        for thumbnail in [false, true] {
            let j = testdata::synthetic(3000, 7, thumbnail);
            let mut stream = j.clone();
            stream.extend_from_slice(&testdata::synthetic(10, 8, false));
            for chunk in [1, 2, 3, 7, 64, 1000, stream.len()] {
                assert_eq!(
                    scan_in_chunks(&stream, chunk),
                    Scan::Complete(j.len()),
                    "chunk {chunk}"
                );
            }
            assert_eq!(complete_len(&j), Some(j.len()));
        }
    }

    #[test]
    fn scanner_skips_marker_like_bytes_inside_segments() {
        // The thumbnail's EOI comes first in the bytes but belongs to the APP1 segment.
        let j = testdata::synthetic(0, 1, true);
        let inner_eoi = j.windows(2).position(|w| w == [0xFF, 0xD9]).unwrap();
        assert!(inner_eoi + 2 < j.len());
        assert_eq!(scan_in_chunks(&j, j.len()), Scan::Complete(j.len()));
    }

    #[test]
    fn scanner_reports_where_a_frame_breaks() {
        let j = testdata::synthetic(500, 3, false);
        // Truncated in entropy data, then a new frame: the new SOI is the problem.
        let cut = j.len() - 100;
        let mut stream = j[..cut].to_vec();
        stream.extend_from_slice(&j);
        for chunk in [1, 5, stream.len()] {
            assert!(matches!(
                scan_in_chunks(&stream, chunk),
                Scan::Invalid { pos, .. } if pos == cut
            ));
        }
        assert!(matches!(
            scan_in_chunks(b"GIF89a", 1),
            Scan::Invalid { pos: 0, .. }
        ));
        assert!(matches!(
            scan_in_chunks(b"\xFF\xD8\xFF\xE0\x00\x01", 1),
            Scan::Invalid { pos: 2, .. }
        ));
        assert!(matches!(
            scan_in_chunks(b"\xFF\xD8\x00", 1),
            Scan::Invalid { pos: 2, .. }
        ));
        assert_eq!(scan_in_chunks(&j[..j.len() - 1], 3), Scan::Incomplete);
    }

    #[test]
    fn scanner_accepts_fill_bytes_and_standalone_markers() {
        let j = b"\xFF\xD8\xFF\xFF\xFF\x01\xFF\xD0\xFF\xFF\xD9";
        assert_eq!(scan_in_chunks(j, 1), Scan::Complete(j.len()));
    }

    #[test]
    fn complete_len_ignores_bounded_padding() {
        assert_eq!(complete_len(b"\xFF\xD8\xFF\xD9\r\n\0\0"), Some(4));
        assert_eq!(complete_len(b"\xFF\xD8\xFF\xD9x"), None);
        assert_eq!(complete_len(b"\xFF\xD8"), None);
        assert_eq!(complete_len(b"\xFF\xD9\xFF\xD9"), None);
        let mut padded = b"\xFF\xD8\xFF\xD9".to_vec();
        padded.resize(4 + MAX_TRAILING_PADDING, 0);
        assert_eq!(complete_len(&padded), Some(4));
        padded.push(0);
        assert_eq!(complete_len(&padded), None);
    }
}
