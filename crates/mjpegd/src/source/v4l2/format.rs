//! The V4L2 pixel formats mjpegd captures: their codes, where each keeps its samples, and the
//! few layouts the encoder reads, which every raw format is copied into (`gather.rs`).

use super::sys;

/// A V4L2 pixel format we can capture, by preference (the declaration order is [`SPECS`]'s):
/// camera JPEG first (no CPU spent, and USB cameras reach their full rate only in MJPEG), then
/// the raw formats the encoder reads as they are, then those the copy out of the driver's
/// buffer rearranges (`gather.rs`), then RGB, 4:4:4 and luma only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PixelFormat {
    /// `MJPG`: Motion-JPEG, passed through (after adding missing Huffman tables).
    Mjpg,
    /// `JPEG`: the same, as some drivers name it.
    Jpeg,
    /// `YUYV`: packed 4:2:2 (Y0 U Y1 V), the format every UVC camera offers.
    Yuyv,
    /// `UYVY`: packed 4:2:2 (U Y0 V Y1).
    Uyvy,
    /// `NV12`: 4:2:0, a Y plane then an interleaved UV plane.
    Nv12,
    /// `YVYU`: packed 4:2:2 (Y0 V Y1 U).
    Yvyu,
    /// `VYUY`: packed 4:2:2 (V Y0 U Y1).
    Vyuy,
    /// `NV21`: NV12 with V before U.
    Nv21,
    /// `YU12` (I420): 4:2:0, Y, U and V planes.
    Yuv420,
    /// `YV12`: 4:2:0, Y, V and U planes.
    Yvu420,
    /// `NV16`: 4:2:2, a Y plane then an interleaved UV plane of full height.
    Nv16,
    /// `NV61`: NV16 with V before U.
    Nv61,
    /// `422P`: 4:2:2, Y, U and V planes.
    Yuv422P,
    /// `NM12` (NV12M): NV12 with its Y and UV planes in two buffers.
    Nv12M,
    /// `NM21` (NV21M): NV21 in two buffers.
    Nv21M,
    /// `NM16` (NV16M): NV16 in two buffers.
    Nv16M,
    /// `NM61` (NV61M): NV61 in two buffers.
    Nv61M,
    /// `YM12` (YUV420M): YU12 in three buffers.
    Yuv420M,
    /// `YM21` (YVU420M): YV12 in three buffers.
    Yvu420M,
    /// `YM16` (YUV422M): 422P in three buffers.
    Yuv422M,
    /// `YM61` (YVU422M): 422P with V before U, in three buffers.
    Yvu422M,
    /// `RGB3`: 24-bit RGB.
    Rgb24,
    /// `BGR3`: 24-bit BGR.
    Bgr24,
    /// `XR24` (XBGR32): 32-bit B, G, R, padding (capture cards, the DRM XRGB8888 layout).
    Xbgr32,
    /// `AR24` (ABGR32): B, G, R, alpha.
    Abgr32,
    /// `BGR4` (BGR32): B, G, R, padding or alpha.
    Bgr32,
    /// `XB24` (RGBX32): R, G, B, padding.
    Rgbx32,
    /// `AB24` (RGBA32): R, G, B, alpha.
    Rgba32,
    /// `BX24` (XRGB32): padding, R, G, B.
    Xrgb32,
    /// `BA24` (ARGB32): alpha, R, G, B.
    Argb32,
    /// `RGB4` (RGB32): padding or alpha, R, G, B.
    Rgb32,
    /// `RX24` (BGRX32): padding, B, G, R.
    Bgrx32,
    /// `RA24` (BGRA32): alpha, B, G, R.
    Bgra32,
    /// `RGBP` (RGB565): 16-bit little-endian words, 5 bits red, 6 green, 5 blue (small
    /// sensors, thermal camera boards).
    Rgb565,
    /// `RGBR` (RGB565X): the same words big-endian.
    Rgb565X,
    /// `NV24`: 4:4:4, a Y plane then an interleaved UV plane of full size (HDMI receivers).
    Nv24,
    /// `NV42`: NV24 with V before U.
    Nv42,
    /// `YM24` (YUV444M): 4:4:4, Y, U and V in three buffers.
    Yuv444M,
    /// `YM42` (YVU444M): the same with V before U.
    Yvu444M,
    /// `GREY`: 8-bit luma. After colour: a colour camera that offers it offers colour too.
    Grey,
    /// `Y10 `: 10-bit luma in little-endian 16-bit words (monochrome industrial sensors).
    Y10,
    /// `Y12 `: 12-bit luma, the same way.
    Y12,
    /// `Y16 `: 16-bit luma, little-endian.
    Y16,
    /// `Y16 ` with the big-endian flag: 16-bit luma, big-endian.
    Y16Be,
}

/// The layouts the JPEG encoder reads, which every raw format is copied into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoded {
    /// Packed 4:2:2, Y0 U Y1 V.
    Yuyv,
    /// Packed 4:2:2, U Y0 V Y1.
    Uyvy,
    /// 4:2:0, a Y plane then interleaved UV rows at the same stride.
    Nv12,
    /// 24-bit RGB.
    Rgb24,
    /// 24-bit BGR.
    Bgr24,
    /// 8-bit luma.
    Grey,
}

impl Encoded {
    /// The smallest row a frame of `width` pixels can have (of the luma plane for NV12,
    /// whose chroma rows share it).
    pub(super) fn min_stride(self, width: usize) -> usize {
        match self {
            // Pixels come in pairs sharing one U and one V.
            Encoded::Yuyv | Encoded::Uyvy => width.div_ceil(2) * 4,
            Encoded::Nv12 => width.div_ceil(2) * 2,
            Encoded::Rgb24 | Encoded::Bgr24 => width * 3,
            Encoded::Grey => width,
        }
    }
}

/// Where a driver format keeps its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Samples {
    /// Compressed by the camera: passed through, never encoded.
    Jpeg,
    /// One packed plane of an encoder layout, with U and V trading places when `swapped`
    /// (YVYU is YUYV so, VYUY is UYVY).
    Packed {
        /// The encoder layout it is, or becomes once swapped.
        encoded: Encoded,
        /// U and V are in each other's place.
        swapped: bool,
    },
    /// 32-bit RGB with alpha or padding: R, G and B at these byte offsets of each pixel.
    Rgb32 {
        /// Byte offsets of red, green and blue.
        rgb: [usize; 3],
    },
    /// 16-bit RGB 5-6-5, in little-endian words unless `be`.
    Rgb565 {
        /// Big-endian words.
        be: bool,
    },
    /// Luma in 16-bit words with `bits` significant bits, little-endian unless `be`.
    Grey16 {
        /// Significant bits: 10, 12 or 16.
        bits: u32,
        /// Big-endian words.
        be: bool,
    },
    /// A luma plane, then chroma subsampled `h_sub` times across and `v_sub` times down,
    /// as interleaved pairs or as two planes, V first when `vu`.
    Split {
        /// Chroma in one plane of (U, V) pairs rather than a U and a V plane.
        pairs: bool,
        /// V before U.
        vu: bool,
        /// Horizontal chroma subsampling: 1 or 2.
        h_sub: usize,
        /// Vertical chroma subsampling: 1 or 2.
        v_sub: usize,
    },
}

/// One supported format: its code, where its samples are, and in how many buffers.
struct Spec {
    format: PixelFormat,
    code: [u8; 4],
    samples: Samples,
    buffers: usize,
}

const fn packed(format: PixelFormat, code: &[u8; 4], encoded: Encoded, swapped: bool) -> Spec {
    Spec {
        format,
        code: *code,
        samples: Samples::Packed { encoded, swapped },
        buffers: 1,
    }
}

const fn jpeg(format: PixelFormat, code: &[u8; 4]) -> Spec {
    Spec {
        format,
        code: *code,
        samples: Samples::Jpeg,
        buffers: 1,
    }
}

const fn rgb32(format: PixelFormat, code: &[u8; 4], rgb: [usize; 3]) -> Spec {
    Spec {
        format,
        code: *code,
        samples: Samples::Rgb32 { rgb },
        buffers: 1,
    }
}

const fn grey16(format: PixelFormat, code: [u8; 4], bits: u32, be: bool) -> Spec {
    Spec {
        format,
        code,
        samples: Samples::Grey16 { bits, be },
        buffers: 1,
    }
}

const fn split(
    format: PixelFormat,
    code: &[u8; 4],
    (pairs, vu): (bool, bool),
    (h_sub, v_sub): (usize, usize),
    buffers: usize,
) -> Spec {
    Spec {
        format,
        code: *code,
        samples: Samples::Split {
            pairs,
            vu,
            h_sub,
            v_sub,
        },
        buffers,
    }
}

/// Chroma as (U, V) or (V, U) pairs, or as U then V or V then U planes.
const UV_PAIRS: (bool, bool) = (true, false);
const VU_PAIRS: (bool, bool) = (true, true);
const UV_PLANES: (bool, bool) = (false, false);
const VU_PLANES: (bool, bool) = (false, true);
/// Chroma subsampling, across and down.
const S420: (usize, usize) = (2, 2);
const S422: (usize, usize) = (2, 1);
const S444: (usize, usize) = (1, 1);

/// Every supported format, in [`PixelFormat`]'s order (checked where [`PixelFormat::ALL`]
/// is built).
const SPECS: [Spec; 44] = {
    use PixelFormat as F;
    [
        jpeg(F::Mjpg, b"MJPG"),
        jpeg(F::Jpeg, b"JPEG"),
        packed(F::Yuyv, b"YUYV", Encoded::Yuyv, false),
        packed(F::Uyvy, b"UYVY", Encoded::Uyvy, false),
        split(F::Nv12, b"NV12", UV_PAIRS, S420, 1),
        packed(F::Yvyu, b"YVYU", Encoded::Yuyv, true),
        packed(F::Vyuy, b"VYUY", Encoded::Uyvy, true),
        split(F::Nv21, b"NV21", VU_PAIRS, S420, 1),
        split(F::Yuv420, b"YU12", UV_PLANES, S420, 1),
        split(F::Yvu420, b"YV12", VU_PLANES, S420, 1),
        split(F::Nv16, b"NV16", UV_PAIRS, S422, 1),
        split(F::Nv61, b"NV61", VU_PAIRS, S422, 1),
        split(F::Yuv422P, b"422P", UV_PLANES, S422, 1),
        split(F::Nv12M, b"NM12", UV_PAIRS, S420, 2),
        split(F::Nv21M, b"NM21", VU_PAIRS, S420, 2),
        split(F::Nv16M, b"NM16", UV_PAIRS, S422, 2),
        split(F::Nv61M, b"NM61", VU_PAIRS, S422, 2),
        split(F::Yuv420M, b"YM12", UV_PLANES, S420, 3),
        split(F::Yvu420M, b"YM21", VU_PLANES, S420, 3),
        split(F::Yuv422M, b"YM16", UV_PLANES, S422, 3),
        split(F::Yvu422M, b"YM61", VU_PLANES, S422, 3),
        packed(F::Rgb24, b"RGB3", Encoded::Rgb24, false),
        packed(F::Bgr24, b"BGR3", Encoded::Bgr24, false),
        rgb32(F::Xbgr32, b"XR24", [2, 1, 0]),
        rgb32(F::Abgr32, b"AR24", [2, 1, 0]),
        rgb32(F::Bgr32, b"BGR4", [2, 1, 0]),
        rgb32(F::Rgbx32, b"XB24", [0, 1, 2]),
        rgb32(F::Rgba32, b"AB24", [0, 1, 2]),
        rgb32(F::Xrgb32, b"BX24", [1, 2, 3]),
        rgb32(F::Argb32, b"BA24", [1, 2, 3]),
        rgb32(F::Rgb32, b"RGB4", [1, 2, 3]),
        rgb32(F::Bgrx32, b"RX24", [3, 2, 1]),
        rgb32(F::Bgra32, b"RA24", [3, 2, 1]),
        Spec {
            format: F::Rgb565,
            code: *b"RGBP",
            samples: Samples::Rgb565 { be: false },
            buffers: 1,
        },
        Spec {
            format: F::Rgb565X,
            code: *b"RGBR",
            samples: Samples::Rgb565 { be: true },
            buffers: 1,
        },
        split(F::Nv24, b"NV24", UV_PAIRS, S444, 1),
        split(F::Nv42, b"NV42", VU_PAIRS, S444, 1),
        split(F::Yuv444M, b"YM24", UV_PLANES, S444, 3),
        split(F::Yvu444M, b"YM42", VU_PLANES, S444, 3),
        packed(F::Grey, b"GREY", Encoded::Grey, false),
        grey16(F::Y10, *b"Y10 ", 10, false),
        grey16(F::Y12, *b"Y12 ", 12, false),
        grey16(F::Y16, *b"Y16 ", 16, false),
        // `v4l2_fourcc_be`: the same code with the top bit set.
        grey16(F::Y16Be, [b'Y', b'1', b'6', b' ' | 0x80], 16, true),
    ]
};

impl PixelFormat {
    /// Every supported format, most preferred first.
    pub(super) const ALL: [PixelFormat; SPECS.len()] = {
        let mut all = [PixelFormat::Mjpg; SPECS.len()];
        let mut i = 0;
        while i < SPECS.len() {
            // `spec` indexes SPECS by the variant's number.
            assert!(
                SPECS[i].format as usize == i,
                "SPECS is in declaration order"
            );
            all[i] = SPECS[i].format;
            i += 1;
        }
        all
    };

    fn spec(self) -> &'static Spec {
        &SPECS[self as usize]
    }

    /// The four-character code as V4L2 spells it.
    pub(super) fn code(self) -> [u8; 4] {
        self.spec().code
    }

    /// The code as the little-endian `u32` of the kernel ABI (`v4l2_fourcc`).
    pub(super) fn fourcc(self) -> u32 {
        u32::from_le_bytes(self.code())
    }

    /// The supported format with this kernel fourcc.
    pub(super) fn from_fourcc(fourcc: u32) -> Option<PixelFormat> {
        PixelFormat::ALL.into_iter().find(|f| f.fourcc() == fourcc)
    }

    /// Parses a user's format name: the fourcc (`YUYV`, `MJPG`, `Y16`, any case) or a common
    /// alias.
    pub(super) fn parse(name: &str) -> Option<PixelFormat> {
        let upper = name.trim().to_ascii_uppercase();
        // The one code that is not text: the big-endian flag is its top bit.
        if matches!(upper.as_str(), "Y16_BE" | "Y16BE") {
            return Some(PixelFormat::Y16Be);
        }
        let alias = match upper.as_str() {
            "XBGR32" => "XR24",
            "ABGR32" => "AR24",
            "BGR32" => "BGR4",
            "RGBX32" => "XB24",
            "RGBA32" => "AB24",
            "XRGB32" => "BX24",
            "ARGB32" => "BA24",
            "RGB32" => "RGB4",
            "BGRX32" => "RX24",
            "BGRA32" => "RA24",
            "RGB565" => "RGBP",
            "RGB565X" => "RGBR",
            "MJPEG" => "MJPG",
            "YUY2" => "YUYV",
            "RGB" | "RGB24" => "RGB3",
            "BGR" | "BGR24" => "BGR3",
            "GRAY" | "Y8" => "GREY",
            "I420" | "IYUV" | "YUV420" => "YU12",
            "YVU420" => "YV12",
            "YUV422P" => "422P",
            "NV12M" => "NM12",
            "NV21M" => "NM21",
            "NV16M" => "NM16",
            "NV61M" => "NM61",
            "YUV420M" => "YM12",
            "YVU420M" => "YM21",
            "YUV422M" => "YM16",
            "YVU422M" => "YM61",
            "YUV444M" => "YM24",
            "YVU444M" => "YM42",
            other => other,
        };
        PixelFormat::ALL
            .into_iter()
            .find(|f| f.code().trim_ascii_end() == alias.as_bytes())
    }

    /// Where the format keeps its samples.
    pub(super) fn samples(self) -> Samples {
        self.spec().samples
    }

    /// True for formats the camera compresses itself (passed through, not encoded).
    pub(super) fn is_jpeg(self) -> bool {
        self.samples() == Samples::Jpeg
    }

    /// Memory planes (driver buffers) a frame of this format comes in.
    pub(super) fn planes(self) -> usize {
        self.spec().buffers
    }

    /// The encoder layout a frame is copied into.
    pub(super) fn encoded(self) -> Encoded {
        match self.samples() {
            Samples::Packed { encoded, .. } => encoded,
            Samples::Rgb32 { .. } | Samples::Rgb565 { .. } => Encoded::Rgb24,
            Samples::Grey16 { .. } => Encoded::Grey,
            // JPEG is passed through, never encoded: any answer would do.
            Samples::Split { v_sub: 2, .. } | Samples::Jpeg => Encoded::Nv12,
            Samples::Split { .. } => Encoded::Yuyv,
        }
    }

    /// True when the driver's buffer is already the encoder's layout: copied as it is.
    pub(super) fn is_direct(self) -> bool {
        match self.samples() {
            Samples::Packed { swapped, .. } => !swapped,
            Samples::Split { .. } => self == PixelFormat::Nv12,
            Samples::Jpeg
            | Samples::Rgb32 { .. }
            | Samples::Rgb565 { .. }
            | Samples::Grey16 { .. } => false,
        }
    }

    /// Whether samples use the full 0-255 range, given the driver's `quantization`.
    ///
    /// RGB is always full range. For YCbCr the driver's default is studio range (16-235),
    /// as the V4L2 colorspace rules say; luma-only `GREY` from drivers (vivid, IR and
    /// monochrome sensors) is full range in practice, so it defaults to that.
    pub(super) fn is_full_range(self, quantization: u32) -> bool {
        match self.samples() {
            Samples::Jpeg
            | Samples::Rgb32 { .. }
            | Samples::Rgb565 { .. }
            | Samples::Packed {
                encoded: Encoded::Rgb24 | Encoded::Bgr24,
                ..
            } => true,
            _ => match quantization {
                sys::QUANTIZATION_FULL_RANGE => true,
                sys::QUANTIZATION_LIM_RANGE => false,
                _ => self.encoded() == Encoded::Grey,
            },
        }
    }
}

/// The fourcc as text, with non-printable bytes shown as `.`.
pub(super) fn fourcc_str(fourcc: u32) -> String {
    fourcc
        .to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_follows_the_driver_with_sensible_defaults() {
        let full = |f: PixelFormat, q| f.is_full_range(q);
        let (default, full_q, lim) = (0, sys::QUANTIZATION_FULL_RANGE, sys::QUANTIZATION_LIM_RANGE);
        assert!(!full(PixelFormat::Yuyv, default));
        assert!(full(PixelFormat::Yuyv, full_q));
        assert!(!full(PixelFormat::Nv12, lim));
        assert!(full(PixelFormat::Grey, default));
        assert!(!full(PixelFormat::Grey, lim));
        assert!(full(PixelFormat::Rgb24, lim));
    }

    #[test]
    fn format_names() {
        assert_eq!(PixelFormat::parse("yuyv"), Some(PixelFormat::Yuyv));
        assert_eq!(PixelFormat::parse("MJPEG"), Some(PixelFormat::Mjpg));
        assert_eq!(PixelFormat::parse("rgb24"), Some(PixelFormat::Rgb24));
        assert_eq!(PixelFormat::parse("H264"), None);
        assert_eq!(
            PixelFormat::from_fourcc(0x5659_5559),
            Some(PixelFormat::Yuyv)
        );
        assert_eq!(fourcc_str(PixelFormat::Nv12.fourcc()), "NV12");
        assert_eq!(fourcc_str(u32::from_le_bytes(*b"Y8  ")), "Y8");
        assert_eq!(fourcc_str(0x0000_01ff), "....");
    }
}
