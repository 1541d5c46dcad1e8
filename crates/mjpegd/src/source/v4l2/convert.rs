//! Pixel formats we capture, and raw frames to JPEG.
//!
//! A raw frame is first copied out of the driver's buffers into one of the few layouts the
//! encoder reads, [`Encoded`] (`gather.rs`: planes gathered, chroma interleaved, U and V put
//! in their place). It is then handed to `jpeg-encoder` row by row through its `ImageBuffer` trait (or, with
//! the `turbojpeg` feature, to libjpeg-turbo as planes), as YCbCr where the camera delivers
//! YCbCr: no intermediate RGB image, no colour conversion, only the studio-range (16-235) to
//! full-range (0-255) expansion JPEG expects. Pure code over
//! byte slices, unit-tested without a device.

use bytes::Bytes;
#[cfg(not(feature = "turbojpeg"))]
use jpeg_encoder::{ColorType, Encoder, ImageBuffer, JpegColorType, rgb_to_ycbcr};

use super::gather::DriverFrame;
use super::sys;
use crate::overlay::{Surface, shade_sample};

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
    fn is_full_range(self, quantization: u32) -> bool {
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

/// A raw frame as the encoder reads it, and where the driver puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RawLayout {
    /// The layout of the frame handed to the encoder.
    pub(super) format: Encoded,
    /// Width in pixels.
    pub(super) width: u16,
    /// Height in pixels.
    pub(super) height: u16,
    /// Bytes from one row to the next of the encoder's frame (of the luma plane for NV12).
    pub(super) stride: usize,
    /// YCbCr samples use the full 0-255 range rather than studio range.
    pub(super) full_range: bool,
    /// The driver's format and planes, which the copy out of its buffers reads.
    pub(super) driver: DriverFrame,
}

impl RawLayout {
    /// Checks the driver's numbers (`strides` are the `bytesperline` of each memory plane,
    /// `quantization` is `v4l2_pix_format.quantization`); the error says what is wrong.
    pub(super) fn new(
        format: PixelFormat,
        width: u32,
        height: u32,
        strides: &[u32],
        quantization: u32,
    ) -> Result<RawLayout, String> {
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
            return Err(format!(
                "{width}x{height} is larger than JPEG allows (65535)"
            ));
        };
        if w == 0 || h == 0 {
            return Err(format!("driver negotiated an empty {width}x{height} image"));
        }
        let driver = DriverFrame::new(format, w.into(), h.into(), strides)?;
        let encoded = format.encoded();
        Ok(RawLayout {
            format: encoded,
            width: w,
            height: h,
            // Packed rows and one-buffer NV12 are copied row for row, padding and all; the
            // rest is rearranged into rows without padding.
            stride: if driver.keeps_stride() {
                driver.planes()[0].stride
            } else {
                encoded.min_stride(w.into())
            },
            full_range: format.is_full_range(quantization),
            driver,
        })
    }

    /// Bytes a complete frame occupies.
    pub(super) fn frame_len(&self) -> usize {
        let (h, stride) = (usize::from(self.height), self.stride);
        let last_row = self.format.min_stride(self.width.into());
        match self.format {
            // The last row need not be padded to the full stride.
            Encoded::Nv12 => stride * h + stride * (h.div_ceil(2) - 1) + last_row,
            _ => stride * (h - 1) + last_row,
        }
    }

    /// Encodes one frame as a baseline JPEG at `quality`; `None` when `data` is too short.
    pub(super) fn encode(&self, data: &[u8], quality: u8) -> Option<Result<Bytes, String>> {
        if data.len() < self.frame_len() {
            return None;
        }
        #[cfg(feature = "turbojpeg")]
        let result = self.encode_turbo(data, quality);
        #[cfg(not(feature = "turbojpeg"))]
        let result = self.encode_rust(data, quality);
        Some(result.map_err(|e| format!("JPEG encoding failed: {e}")))
    }

    /// With jpeg-encoder: row by row through [`Raw`], or its own paths for plain RGB and luma.
    #[cfg(not(feature = "turbojpeg"))]
    fn encode_rust(&self, data: &[u8], quality: u8) -> Result<Bytes, String> {
        let mut out = Vec::with_capacity(data.len() / 8);
        let encoder = Encoder::new(&mut out, quality.clamp(1, 100));
        let result = match self.format {
            // Contiguous full-range RGB/BGR/grey: the encoder's own (SIMD) paths.
            Encoded::Rgb24 | Encoded::Bgr24 | Encoded::Grey
                if self.full_range && self.stride == self.format.min_stride(self.width.into()) =>
            {
                let color = match self.format {
                    Encoded::Rgb24 => ColorType::Rgb,
                    Encoded::Bgr24 => ColorType::Bgr,
                    _ => ColorType::Luma,
                };
                encoder.encode(data, self.width, self.height, color)
            }
            _ => encoder.encode_image(Raw { layout: self, data }),
        };
        result.map(|()| Bytes::from(out)).map_err(|e| e.to_string())
    }

    /// With libjpeg-turbo: RGB and BGR as they are; YCbCr split into full-range planes at the
    /// camera's chroma resolution (4:2:2 for YUYV and UYVY, 4:2:0 for NV12), luma likewise.
    #[cfg(feature = "turbojpeg")]
    fn encode_turbo(&self, data: &[u8], quality: u8) -> Result<Bytes, String> {
        use crate::codec::{Packed, encode_packed, encode_ycbcr_planes};
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        let (yt, ct) = if self.full_range {
            (&IDENTITY, &IDENTITY)
        } else {
            (&Y_STUDIO_TO_FULL, &C_STUDIO_TO_FULL)
        };
        let row = |y: usize| {
            let start = y * self.stride;
            &data[start..start + self.format.min_stride(w)]
        };
        let result = match self.format {
            Encoded::Rgb24 | Encoded::Bgr24 => {
                let packed = if self.format == Encoded::Rgb24 {
                    Packed::Rgb
                } else {
                    Packed::Bgr
                };
                encode_packed(data, self.width, self.height, self.stride, packed, quality)
            }
            Encoded::Grey if self.full_range => encode_packed(
                data,
                self.width,
                self.height,
                self.stride,
                Packed::Grey,
                quality,
            ),
            Encoded::Grey => {
                let luma: Vec<u8> = (0..h)
                    .flat_map(|y| row(y).iter().map(|&s| yt[usize::from(s)]))
                    .collect();
                encode_packed(&luma, self.width, self.height, w, Packed::Grey, quality)
            }
            Encoded::Yuyv | Encoded::Uyvy => {
                let (luma, u, v) = if self.format == Encoded::Yuyv {
                    (0, 1, 3)
                } else {
                    (1, 0, 2)
                };
                let cw = w.div_ceil(2);
                let (mut py, mut pb, mut pr) = (
                    Vec::with_capacity(cw * 2 * h),
                    Vec::with_capacity(cw * h),
                    Vec::with_capacity(cw * h),
                );
                // With an odd width the last pair holds one pixel; its second luma sample is
                // kept as the padding column libjpeg-turbo reads.
                for y in 0..h {
                    for p in row(y).chunks_exact(4) {
                        py.extend_from_slice(&[
                            yt[usize::from(p[luma])],
                            yt[usize::from(p[luma + 2])],
                        ]);
                        pb.push(ct[usize::from(p[u])]);
                        pr.push(ct[usize::from(p[v])]);
                    }
                }
                encode_ycbcr_planes([&py, &pb, &pr], self.width, self.height, false, quality)
            }
            Encoded::Nv12 => {
                let cw = w.div_ceil(2);
                // Luma padded to whole 2x2 blocks (libjpeg-turbo reads them): a last odd
                // column and row repeated.
                let mut py = Vec::with_capacity(2 * cw * 2 * h.div_ceil(2));
                for y in 0..h {
                    let start = py.len();
                    py.extend(row(y)[..w].iter().map(|&s| yt[usize::from(s)]));
                    if w % 2 == 1 {
                        py.push(py[start + w - 1]);
                    }
                }
                if h % 2 == 1 {
                    py.extend_from_within(py.len() - 2 * cw..);
                }
                let (mut pb, mut pr) = (
                    Vec::with_capacity(cw * h.div_ceil(2)),
                    Vec::with_capacity(cw * h.div_ceil(2)),
                );
                for cy in 0..h.div_ceil(2) {
                    let start = self.stride * (h + cy);
                    for p in data[start..start + cw * 2].chunks_exact(2) {
                        pb.push(ct[usize::from(p[0])]);
                        pr.push(ct[usize::from(p[1])]);
                    }
                }
                encode_ycbcr_planes([&py, &pb, &pr], self.width, self.height, true, quality)
            }
        };
        result.map_err(|e| e.to_string())
    }
}

/// Studio-range luma (16-235) to full range, rounded and clamped.
const Y_STUDIO_TO_FULL: [u8; 256] = range_table(16, 219, 0);
/// Studio-range chroma (16-240, centred on 128) to full range.
const C_STUDIO_TO_FULL: [u8; 256] = range_table(128, 224, 128);
/// Full range: unchanged.
const IDENTITY: [u8; 256] = range_table(0, 255, 0);

/// `out = (v - offset) * 255 / span + base`, rounded to nearest and clamped to 0-255.
const fn range_table(offset: i32, span: i32, base: i32) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut v = 0;
    while v < 256 {
        let num = (v - offset) * 255;
        // Round half away from zero.
        let q = if num >= 0 {
            (num + span / 2) / span
        } else {
            (num - span / 2) / span
        };
        let out = q + base;
        t[v as usize] = if out < 0 {
            0
        } else if out > 255 {
            255
        } else {
            out as u8
        };
        v += 1;
    }
    t
}

/// A raw frame as `jpeg-encoder` reads it: one row of Y, Cb, Cr (or luma) at a time.
#[cfg(not(feature = "turbojpeg"))]
struct Raw<'a> {
    layout: &'a RawLayout,
    data: &'a [u8],
}

#[cfg(not(feature = "turbojpeg"))]
impl Raw<'_> {
    fn row(&self, y: usize) -> &[u8] {
        let start = y * self.layout.stride;
        let len = self.layout.format.min_stride(self.layout.width.into());
        &self.data[start..start + len]
    }
}

#[cfg(not(feature = "turbojpeg"))]
impl ImageBuffer for Raw<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        if self.layout.format == Encoded::Grey {
            JpegColorType::Luma
        } else {
            JpegColorType::Ycbcr
        }
    }

    fn width(&self) -> u16 {
        self.layout.width
    }

    fn height(&self) -> u16 {
        self.layout.height
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let l = self.layout;
        let (yt, ct) = if l.full_range {
            (&IDENTITY, &IDENTITY)
        } else {
            (&Y_STUDIO_TO_FULL, &C_STUDIO_TO_FULL)
        };
        let w = usize::from(l.width);
        let y = usize::from(y);
        let [by, bcb, bcr, _] = buffers;
        match l.format {
            Encoded::Yuyv | Encoded::Uyvy => {
                // Offsets of Y in each 2-byte pixel, and of U and V in each 4-byte pair.
                let (luma, u, v) = if l.format == Encoded::Yuyv {
                    (0, 1, 3)
                } else {
                    (1, 0, 2)
                };
                let row = self.row(y);
                let start = by.len();
                by.extend(row.chunks_exact(2).map(|p| yt[usize::from(p[luma])]));
                for p in row.chunks_exact(4) {
                    let (cb, cr) = (ct[usize::from(p[u])], ct[usize::from(p[v])]);
                    bcb.extend_from_slice(&[cb, cb]);
                    bcr.extend_from_slice(&[cr, cr]);
                }
                // With an odd width the last pair holds one pixel.
                for b in [by, bcb, bcr] {
                    b.truncate(start + w);
                }
            }
            Encoded::Nv12 => {
                // A row's width is the chroma row's (pairs), one sample more than the luma
                // row's at an odd width.
                let luma = &self.row(y)[..w];
                let uv_start = l.stride * (usize::from(l.height) + y / 2);
                let uv = &self.data[uv_start..uv_start + w.div_ceil(2) * 2];
                let start = by.len();
                by.extend(luma.iter().map(|&s| yt[usize::from(s)]));
                for p in uv.chunks_exact(2) {
                    let (cb, cr) = (ct[usize::from(p[0])], ct[usize::from(p[1])]);
                    bcb.extend_from_slice(&[cb, cb]);
                    bcr.extend_from_slice(&[cr, cr]);
                }
                // With an odd width the last pair covers one pixel.
                for b in [bcb, bcr] {
                    b.truncate(start + w);
                }
            }
            Encoded::Rgb24 | Encoded::Bgr24 => {
                let (r, b) = if l.format == Encoded::Rgb24 {
                    (0, 2)
                } else {
                    (2, 0)
                };
                for p in self.row(y).chunks_exact(3) {
                    let (yy, cb, cr) = rgb_to_ycbcr(p[r], p[1], p[b]);
                    by.push(yy);
                    bcb.push(cb);
                    bcr.push(cr);
                }
            }
            Encoded::Grey => by.extend(self.row(y).iter().map(|&s| yt[usize::from(s)])),
        }
    }
}

/// A raw frame as a surface for overlay text, painted in the camera's own pixel format before
/// the encode it gets anyway (no decode, no second encode).
pub(super) struct RawSurface<'a> {
    layout: &'a RawLayout,
    data: &'a mut [u8],
}

impl<'a> RawSurface<'a> {
    /// `data` is a whole frame of `layout` (shorter data is painted where it reaches).
    pub(super) fn new(layout: &'a RawLayout, data: &'a mut [u8]) -> RawSurface<'a> {
        RawSurface { layout, data }
    }

    /// Applies `luma` to every sample of the rectangle and sets its chroma to neutral, so the
    /// box and the glyphs are grey and white whatever colour the scene has under them.
    fn each(&mut self, x: u32, y: u32, w: u32, h: u32, luma: impl Fn(u8) -> u8) {
        let (stride, height) = (self.layout.stride, usize::from(self.layout.height));
        for yy in y as usize..(y + h) as usize {
            for xx in x as usize..(x + w) as usize {
                let row = yy * stride;
                let (samples, chroma): (&[usize], [Option<usize>; 2]) = match self.layout.format {
                    Encoded::Yuyv => (
                        &[row + xx * 2],
                        [Some(row + xx / 2 * 4 + 1), Some(row + xx / 2 * 4 + 3)],
                    ),
                    Encoded::Uyvy => (
                        &[row + xx * 2 + 1],
                        [Some(row + xx / 2 * 4), Some(row + xx / 2 * 4 + 2)],
                    ),
                    Encoded::Nv12 => {
                        let uv = stride * height + yy / 2 * stride + xx / 2 * 2;
                        (&[row + xx], [Some(uv), Some(uv + 1)])
                    }
                    Encoded::Rgb24 | Encoded::Bgr24 => {
                        let p = row + xx * 3;
                        for i in p..p + 3 {
                            if let Some(v) = self.data.get_mut(i) {
                                *v = luma(*v);
                            }
                        }
                        continue;
                    }
                    _ => (&[row + xx], [None, None]),
                };
                for &i in samples {
                    if let Some(v) = self.data.get_mut(i) {
                        *v = luma(*v);
                    }
                }
                for i in chroma.into_iter().flatten() {
                    if let Some(v) = self.data.get_mut(i) {
                        *v = 128;
                    }
                }
            }
        }
    }
}

impl Surface for RawSurface<'_> {
    fn size(&self) -> (u32, u32) {
        (u32::from(self.layout.width), u32::from(self.layout.height))
    }

    fn shade(&mut self, x: u32, y: u32, w: u32, h: u32) {
        // Studio-range luma keeps its black at 16 (RGB formats are always full range).
        let studio = !self.layout.full_range;
        self.each(x, y, w, h, |v| {
            if studio {
                16 + shade_sample(v.saturating_sub(16))
            } else {
                shade_sample(v)
            }
        });
    }

    fn ink(&mut self, x: u32, y: u32, w: u32, h: u32) {
        let white = if self.layout.full_range { 255 } else { 235 };
        self.each(x, y, w, h, |_| white);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn overlay_paints_a_yuyv_frame_in_place() {
        use crate::overlay::{Overlay, Position, Text};
        let layout = RawLayout::new(PixelFormat::Yuyv, 64, 32, &[0], sys::QUANTIZATION_LIM_RANGE)
            .expect("layout");
        // A mid-grey, tinted frame: Y 128, U 90, V 170.
        let mut data: Vec<u8> = [128, 90, 128, 170].repeat(64 * 32 / 2);
        let text = Text::new("#", Position::TopLeft, Some(8)).expect("text");
        let painter = Overlay::new(vec![text]).expect("overlay").painter(
            "c",
            0.0,
            std::time::SystemTime::now(),
        );
        painter.paint(&mut RawSurface::new(&layout, &mut data));
        let (bx, by, bw, bh) = painter.boxes(64, 32)[0];
        let y_at = |x: u32, y: u32| data[y as usize * 128 + x as usize * 2];
        let u_at = |x: u32, y: u32| data[y as usize * 128 + (x as usize / 2) * 4 + 1];
        assert_eq!(
            y_at(bx, by),
            16 + shade_sample(112),
            "box luma shaded, studio black kept"
        );
        assert_eq!(u_at(bx, by), 128, "box chroma neutral");
        let white = (by..by + bh)
            .flat_map(|y| (bx..bx + bw).map(move |x| (x, y)))
            .filter(|&(x, y)| y_at(x, y) == 235)
            .count();
        assert!(white >= 20, "glyph pixels at studio white: {white}");
        assert_eq!(
            (y_at(63, 31), u_at(63, 31)),
            (128, 90),
            "outside the box untouched"
        );
    }

    fn decode(jpeg: &[u8]) -> (Vec<u8>, usize, usize) {
        let mut d = zune_jpeg::JpegDecoder::new(jpeg);
        let px = d.decode().expect("decodes");
        let info = d.info().expect("info");
        (px, usize::from(info.width), usize::from(info.height))
    }

    /// BT.601 studio-range YCbCr of an RGB colour, as a camera would send it.
    pub(in super::super) fn studio_yuv(rgb: [u8; 3]) -> [u8; 3] {
        let [r, g, b] = rgb.map(f64::from);
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        [y, cb, cr].map(|v| v.round() as u8)
    }

    /// The colours of the test frames' four vertical bars, left to right.
    pub(in super::super) const COLOURS: [[u8; 3]; 4] =
        [[200, 30, 40], [20, 180, 60], [30, 60, 210], [240, 240, 240]];

    /// A frame of four vertical bars of `COLOURS`, in `format`, with `pad` bytes per row.
    pub(in super::super) fn bars(
        format: PixelFormat,
        w: usize,
        h: usize,
        pad: usize,
    ) -> (RawLayout, Vec<u8>) {
        let stride = format.encoded().min_stride(w) + pad;
        let colour = |x: usize| COLOURS[x * 4 / w];
        let mut data = Vec::new();
        for _ in 0..h {
            let mut row = Vec::new();
            match format {
                PixelFormat::Yuyv | PixelFormat::Uyvy => {
                    for x in (0..w).step_by(2) {
                        let [y0, u, v] = studio_yuv(colour(x));
                        let y1 = studio_yuv(colour((x + 1).min(w - 1)))[0];
                        if format == PixelFormat::Yuyv {
                            row.extend_from_slice(&[y0, u, y1, v]);
                        } else {
                            row.extend_from_slice(&[u, y0, v, y1]);
                        }
                    }
                }
                PixelFormat::Nv12 | PixelFormat::Grey => {
                    row.extend((0..w).map(|x| studio_yuv(colour(x))[0]));
                }
                PixelFormat::Rgb24 => row.extend((0..w).flat_map(colour)),
                PixelFormat::Bgr24 => row.extend((0..w).flat_map(|x| {
                    let [r, g, b] = colour(x);
                    [b, g, r]
                })),
                _ => unreachable!("not an encoder layout: {format:?}"),
            }
            row.resize(stride, 0xAA);
            data.extend_from_slice(&row);
        }
        if format == PixelFormat::Nv12 {
            for _ in 0..h.div_ceil(2) {
                let mut row = Vec::new();
                for x in (0..w).step_by(2) {
                    let [_, u, v] = studio_yuv(colour(x));
                    row.extend_from_slice(&[u, v]);
                }
                row.resize(stride, 0xAA);
                data.extend_from_slice(&row);
            }
        }
        let layout = RawLayout::new(
            format,
            w as u32,
            h as u32,
            &[stride as u32],
            sys::QUANTIZATION_LIM_RANGE,
        )
        .expect("ok");
        (layout, data)
    }

    #[test]
    fn every_raw_format_encodes_to_the_right_colours() {
        // The formats the encoder reads as they are; the rest reach it rearranged into these
        // (tested with the rearranging, in gather.rs).
        let raw = PixelFormat::ALL.into_iter().filter(|&f| f.is_direct());
        for format in raw {
            for (w, h, pad) in [(64, 32, 0), (64, 32, 16), (62, 17, 6), (61, 17, 6)] {
                let (layout, data) = bars(format, w, h, pad);
                let what = format!("{format:?} {w}x{h}+{pad}");
                assert_bar_colours(&what, &layout, &data, format == PixelFormat::Grey);
            }
        }
    }

    /// `data` in `layout`, encoded and decoded, shows the four bars of `COLOURS` (their luma
    /// when `grey`) at the top, middle and bottom.
    pub(in super::super) fn assert_bar_colours(
        what: &str,
        layout: &RawLayout,
        data: &[u8],
        grey: bool,
    ) {
        let (w, h) = (usize::from(layout.width), usize::from(layout.height));
        let jpeg = layout
            .encode(data, 95)
            .expect("long enough")
            .expect("encodes");
        assert_eq!(crate::jpeg::dimensions(&jpeg), Ok((w as u32, h as u32)));
        let (px, dw, dh) = decode(&jpeg);
        assert_eq!((dw, dh), (w, h));
        let channels = px.len() / (dw * dh);
        // Top, middle and bottom: rows that drift (a sample too many per row) show
        // as bars shifted further down the image.
        for row in [1, h / 2, h - 2] {
            for (bar, want) in COLOURS.iter().enumerate() {
                // Sample the middle of each bar, away from edges blurred by subsampling.
                let x = (2 * bar + 1) * w / 8;
                let at = (row * w + x) * channels;
                let got = &px[at..at + channels];
                let want: Vec<u8> = if grey {
                    let [r, g, b] = want.map(f64::from);
                    vec![(0.299 * r + 0.587 * g + 0.114 * b).round() as u8]
                } else {
                    want.to_vec()
                };
                for (g, e) in got.iter().zip(&want) {
                    assert!(
                        g.abs_diff(*e) <= 8,
                        "{what}: row {row}, bar {bar}: got {got:?}, want {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn short_frames_are_refused_not_read_past() {
        let (layout, data) = bars(PixelFormat::Nv12, 64, 32, 0);
        assert!(layout.encode(&data[..data.len() - 1], 80).is_none());
        let (layout, data) = bars(PixelFormat::Yuyv, 64, 32, 8);
        // The last row's padding is not needed.
        assert!(layout.encode(&data[..data.len() - 8], 80).is_some());
        assert!(layout.encode(&data[..data.len() - 9], 80).is_none());
    }

    #[test]
    fn layouts_check_the_driver_numbers() {
        assert!(RawLayout::new(PixelFormat::Yuyv, 640, 480, &[1280], 0).is_ok());
        assert!(RawLayout::new(PixelFormat::Yuyv, 640, 480, &[0], 0).is_ok());
        let e = RawLayout::new(PixelFormat::Yuyv, 640, 480, &[1000], 0).unwrap_err();
        assert!(e.contains("1280"), "{e}");
        assert!(RawLayout::new(PixelFormat::Yuyv, 0, 480, &[1280], 0).is_err());
        assert!(RawLayout::new(PixelFormat::Yuyv, 70_000, 480, &[140_000], 0).is_err());
    }

    #[test]
    fn quantization_follows_the_driver_with_sensible_defaults() {
        let full = |f: PixelFormat, q| RawLayout::new(f, 64, 32, &[0], q).expect("ok").full_range;
        let (default, full_q, lim) = (0, sys::QUANTIZATION_FULL_RANGE, sys::QUANTIZATION_LIM_RANGE);
        assert!(!full(PixelFormat::Yuyv, default));
        assert!(full(PixelFormat::Yuyv, full_q));
        assert!(!full(PixelFormat::Nv12, lim));
        assert!(full(PixelFormat::Grey, default));
        assert!(!full(PixelFormat::Grey, lim));
        assert!(full(PixelFormat::Rgb24, lim));
    }

    #[test]
    fn range_tables_expand_studio_range() {
        assert_eq!(Y_STUDIO_TO_FULL[16], 0);
        assert_eq!(Y_STUDIO_TO_FULL[235], 255);
        assert_eq!(Y_STUDIO_TO_FULL[0], 0);
        assert_eq!(Y_STUDIO_TO_FULL[255], 255);
        assert_eq!(C_STUDIO_TO_FULL[128], 128);
        assert_eq!(C_STUDIO_TO_FULL[16], 0);
        assert_eq!(C_STUDIO_TO_FULL[240], 255);
        assert!((0..256).all(|i| IDENTITY[i] == i as u8));
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
