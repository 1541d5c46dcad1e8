//! Huffman tables for camera JPEGs that leave them out.
//!
//! Applied to every frame when it is published ([`crate::frame::Frame::new`]), whatever the
//! source: V4L2, `exec:` (`ffmpeg -c copy` of a camera's MJPEG), HTTP relays and image folders.
//! Safari and iOS paint nothing for a JPEG without tables; Chromium and Firefox guess them.
//!
//! Motion-JPEG as USB (UVC) cameras send it often has no DHT segment: the format assumes the
//! "typical" tables of the JPEG standard (ITU-T T.81 Annex K.3), as AVI MJPEG did. Decoders
//! in browsers do not, and show nothing. Inserting those tables before the scan makes the
//! frame a complete JPEG without touching the image data.

use std::borrow::Cow;

/// One DHT segment (marker, length, then four tables) holding the Annex K.3 tables:
/// luminance DC (class 0, id 0), luminance AC (1, 0), chrominance DC (0, 1), chrominance AC
/// (1, 1). The same bytes mjpg-streamer, ffmpeg and µStreamer insert.
const STANDARD_DHT: [u8; 420] = {
    const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
    const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
    const AC_LUMA_VALUES: [u8; 162] = [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
        0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6,
        0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3,
        0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8,
        0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ];
    const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
    const AC_CHROMA_VALUES: [u8; 162] = [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
        0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18,
        0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4,
        0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca,
        0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    ];

    let mut out = [0u8; 420];
    // Marker and segment length (everything after the marker): 2 + 4 * 17 + 12 + 162 + 12 + 162.
    out[0] = 0xFF;
    out[1] = 0xC4;
    out[2] = 0x01;
    out[3] = 0xA2;
    let mut pos = 4;
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &DC_LUMA_BITS, &DC_VALUES),
        (0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES),
        (0x01, &DC_CHROMA_BITS, &DC_VALUES),
        (0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES),
    ];
    let mut t = 0;
    while t < tables.len() {
        let (class_id, bits, values) = tables[t];
        out[pos] = class_id;
        pos += 1;
        let mut i = 0;
        while i < 16 {
            out[pos] = bits[i];
            pos += 1;
            i += 1;
        }
        let mut i = 0;
        while i < values.len() {
            out[pos] = values[i];
            pos += 1;
            i += 1;
        }
        t += 1;
    }
    assert!(pos == out.len());
    out
};

/// Returns `jpeg` with the standard Huffman tables (JPEG Annex K.3) inserted before its scan
/// when it has none, as many USB cameras' MJPEG frames do; otherwise returns it unchanged.
///
/// Only the header segments are walked (by their lengths), never the image data. Input that is
/// not a well-formed Huffman-coded JPEG up to its first scan is returned unchanged.
pub fn ensure_huffman_tables(jpeg: &[u8]) -> Cow<'_, [u8]> {
    match sos_needing_tables(jpeg) {
        Some(sos) => {
            let mut out = Vec::with_capacity(jpeg.len() + STANDARD_DHT.len());
            out.extend_from_slice(&jpeg[..sos]);
            out.extend_from_slice(&STANDARD_DHT);
            out.extend_from_slice(&jpeg[sos..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(jpeg),
    }
}

/// The offset of the first SOS marker when the header before it has a Huffman-coded SOF and
/// no DHT; `None` when tables are present, not needed, or the header is malformed.
fn sos_needing_tables(data: &[u8]) -> Option<usize> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut pos = 2;
    let mut huffman_sof = false;
    loop {
        // Fill bytes (FF FF ...) may precede a marker.
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if *data.get(pos)? != 0xFF {
            return None;
        }
        let marker = *data.get(pos + 1)?;
        match marker {
            0xC4 => return None,
            0xDA => return huffman_sof.then_some(pos),
            // EOI, SOI, TEM, RSTn before any scan: not something to repair.
            0xD8 | 0xD9 | 0x01 | 0xD0..=0xD7 => return None,
            _ => {}
        }
        // Huffman-coded frames: SOF0-3 and SOF5-7 (SOF9+ are arithmetic-coded).
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7) {
            huffman_sof = true;
        }
        let len = usize::from(u16::from_be_bytes([
            *data.get(pos + 2)?,
            *data.get(pos + 3)?,
        ]));
        if len < 2 {
            return None;
        }
        pos += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Canvas;

    /// Removes every DHT segment before the first scan, as UVC cameras send frames.
    fn strip_dht(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut pos = 2;
        loop {
            let marker = jpeg[pos + 1];
            if marker == 0xDA {
                out.extend_from_slice(&jpeg[pos..]);
                return out;
            }
            let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
            if marker != 0xC4 {
                out.extend_from_slice(&jpeg[pos..pos + 2 + len]);
            }
            pos += 2 + len;
        }
    }

    fn has_dht(jpeg: &[u8]) -> bool {
        sos_needing_tables(jpeg).is_none() && jpeg.windows(2).any(|w| w == [0xFF, 0xC4])
    }

    fn sample_jpeg() -> Vec<u8> {
        let mut c = Canvas::new(96, 64, [20, 40, 60]);
        c.fill_rect(10, 10, 40, 30, [250, 200, 0]);
        c.text(4, 44, 1, [255, 255, 255], "DHT test");
        c.encode(85).expect("encode").to_vec()
    }

    fn decode(jpeg: &[u8]) -> Result<Vec<u8>, String> {
        zune_jpeg::JpegDecoder::new(jpeg)
            .decode()
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn encoder_output_without_dht_decodes_again_after_insertion() {
        let original = sample_jpeg();
        assert!(has_dht(&original));
        let stripped = strip_dht(&original);
        assert!(stripped.len() < original.len());
        assert!(!stripped.windows(2).any(|w| w == [0xFF, 0xC4]));
        assert!(
            decode(&stripped).is_err(),
            "a decoder should refuse a frame with no tables"
        );

        let fixed = ensure_huffman_tables(&stripped);
        assert!(matches!(fixed, Cow::Owned(_)));
        assert_eq!(fixed.len(), stripped.len() + STANDARD_DHT.len());
        assert_eq!(
            decode(&fixed).expect("decodes after insertion"),
            decode(&original).expect("original decodes"),
            "same pixels as the encoder's own output"
        );
        assert_eq!(crate::jpeg::dimensions(&fixed), Ok((96, 64)));
        assert!(crate::jpeg::looks_complete(&fixed));
    }

    #[test]
    fn frames_with_tables_are_borrowed_unchanged() {
        let original = sample_jpeg();
        assert!(matches!(ensure_huffman_tables(&original), Cow::Borrowed(b) if b == &original[..]));
        // Inserting twice is a no-op the second time.
        let fixed = ensure_huffman_tables(&strip_dht(&original)).into_owned();
        assert!(matches!(ensure_huffman_tables(&fixed), Cow::Borrowed(_)));
    }

    #[test]
    fn malformed_input_is_left_alone() {
        let original = strip_dht(&sample_jpeg());
        for bad in [
            &b""[..],
            &b"\xFF"[..],
            &b"\xFF\xD8"[..],
            &b"\xFF\xD8\xFF"[..],
            &b"\xFF\xD8\xFF\xE0\x00"[..],
            &b"\xFF\xD8\xFF\xE0\x00\x01\xFF\xDA"[..],
            &b"\x00\xD8\xFF\xDA\x00\x02"[..],
            // A scan with no frame header before it.
            &b"\xFF\xD8\xFF\xDA\x00\x02\x00\xFF\xD9"[..],
            // An arithmetic-coded frame (SOF9) needs no Huffman tables.
            &b"\xFF\xD8\xFF\xC9\x00\x02\xFF\xDA\x00\x02\xFF\xD9"[..],
        ] {
            assert!(
                matches!(ensure_huffman_tables(bad), Cow::Borrowed(_)),
                "{bad:02x?}"
            );
        }
        // Every truncation of a valid table-less frame: never panics; once the SOS marker
        // is in, it is repaired.
        for end in 0..original.len() {
            let _ = ensure_huffman_tables(&original[..end]);
        }
    }

    #[test]
    fn fill_bytes_before_markers_are_skipped() {
        let stripped = strip_dht(&sample_jpeg());
        let mut filled = stripped[..2].to_vec();
        filled.extend_from_slice(&[0xFF, 0xFF]);
        filled.extend_from_slice(&stripped[2..]);
        let fixed = ensure_huffman_tables(&filled);
        assert!(matches!(fixed, Cow::Owned(_)));
        assert!(decode(&fixed).is_ok());
    }

    #[test]
    fn the_table_segment_is_well_formed() {
        assert_eq!(&STANDARD_DHT[..4], &[0xFF, 0xC4, 0x01, 0xA2]);
        assert_eq!(
            usize::from(u16::from_be_bytes([0x01, 0xA2])) + 2,
            STANDARD_DHT.len()
        );
        // Each table's value count is the sum of its code-length counts.
        let mut pos = 4;
        for class_id in [0x00, 0x10, 0x01, 0x11] {
            assert_eq!(STANDARD_DHT[pos], class_id);
            let n: usize = STANDARD_DHT[pos + 1..pos + 17]
                .iter()
                .map(|&b| usize::from(b))
                .sum();
            pos += 17 + n;
        }
        assert_eq!(pos, STANDARD_DHT.len());
    }
}
