//! The JPEG encoder behind every frame mjpegd encodes itself (the test pattern, no-signal
//! frames, rotate/flip/resize, per-request sizes): jpeg-encoder, pure Rust, by default; with
//! the `turbojpeg` feature, libjpeg-turbo.
//!
//! libjpeg-turbo encoded the benchmark frames 3–3.5× faster here (BENCHMARKS.md, "Codecs
//! against libjpeg-turbo") and has NEON code for ARM boards, where jpeg-encoder runs scalar.
//! Raw V4L2 frames go through it as well: with libjpeg-turbo as planar YCbCr at the camera's
//! own chroma resolution (`encode_ycbcr_planes`), packed RGB, BGR or luma as they are.
//! Decoding stays with zune-jpeg either way: it was within 1.1–1.5× of libjpeg-turbo, and the
//! frames it decodes come from cameras and relays, so a memory-safe decoder is worth more there.

use bytes::Bytes;

/// An image the encoder refused (bad dimensions, or the encoder's own error).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode JPEG: {0}")]
pub struct EncodeError(String);

/// The encoder this build uses, for `/api/state` and the startup log.
pub const ENCODER: &str = if cfg!(feature = "turbojpeg") {
    "libjpeg-turbo"
} else {
    "jpeg-encoder"
};

/// Encodes packed RGB8 pixels (`width * height * 3` bytes) as a baseline JPEG at `quality`
/// (1–100).
pub fn encode_rgb(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Bytes, EncodeError> {
    let quality = quality.clamp(1, 100);
    let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err(EncodeError(format!("bad size {width}x{height}"))),
    };
    if rgb.len() != usize::from(w) * usize::from(h) * 3 {
        return Err(EncodeError(format!(
            "{} bytes is not {width}x{height} RGB",
            rgb.len()
        )));
    }
    imp::encode_rgb(rgb, w, h, quality)
}

/// Packed pixel layouts libjpeg-turbo takes as they are.
#[cfg(feature = "turbojpeg")]
// Only the V4L2 source encodes packed and planar frames.
#[cfg_attr(not(all(target_os = "linux", feature = "v4l2")), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packed {
    /// 24-bit R, G, B.
    Rgb,
    /// 24-bit B, G, R.
    Bgr,
    /// 8-bit full-range luma.
    Grey,
}

/// Encodes packed pixels, rows `pitch` bytes apart, with libjpeg-turbo.
#[cfg(feature = "turbojpeg")]
#[cfg_attr(not(all(target_os = "linux", feature = "v4l2")), allow(dead_code))]
pub(crate) fn encode_packed(
    data: &[u8],
    width: u16,
    height: u16,
    pitch: usize,
    packed: Packed,
    quality: u8,
) -> Result<Bytes, EncodeError> {
    let (w, h) = (usize::from(width), usize::from(height));
    let (format, bytes) = match packed {
        Packed::Rgb => (turbojpeg::PixelFormat::RGB, 3),
        Packed::Bgr => (turbojpeg::PixelFormat::BGR, 3),
        Packed::Grey => (turbojpeg::PixelFormat::GRAY, 1),
    };
    // libjpeg-turbo's wrapper panics on a short buffer: refuse it here instead.
    if w == 0 || h == 0 || pitch < w * bytes || data.len() < pitch * (h - 1) + w * bytes {
        return Err(EncodeError(format!(
            "{} bytes with {pitch} per row is not a {w}x{h} {packed:?} image",
            data.len()
        )));
    }
    let image = turbojpeg::Image {
        pixels: data,
        width: w,
        pitch,
        height: h,
        format,
    };
    let subsamp = match packed {
        Packed::Grey => turbojpeg::Subsamp::Gray,
        _ => imp::color_subsamp(quality.clamp(1, 100)),
    };
    imp::with_compressor(quality, subsamp, |c| c.compress_to_vec(image))
}

/// Encodes full-range planar YCbCr with libjpeg-turbo: `cb` and `cr` are half as wide as the
/// image (rounded up), and half as high too when `half_height` (4:2:0; else 4:2:2). libjpeg-turbo
/// reads whole chroma blocks, so `y` covers them too: its rows are `2 * cb width` bytes, and for
/// 4:2:0 it has an even number of them (a last odd column or row repeated). The JPEG keeps the
/// chroma resolution it was given.
#[cfg(feature = "turbojpeg")]
#[cfg_attr(not(all(target_os = "linux", feature = "v4l2")), allow(dead_code))]
pub(crate) fn encode_ycbcr_planes(
    planes: [&[u8]; 3],
    width: u16,
    height: u16,
    half_height: bool,
    quality: u8,
) -> Result<Bytes, EncodeError> {
    let (w, h) = (usize::from(width), usize::from(height));
    let cw = w.div_ceil(2);
    // Rows of whole blocks: luma is 2 rows per chroma row in 4:2:0.
    let (yh, ch) = if half_height {
        (2 * h.div_ceil(2), h.div_ceil(2))
    } else {
        (h, h)
    };
    let subsamp = if half_height {
        turbojpeg::Subsamp::Sub2x2
    } else {
        turbojpeg::Subsamp::Sub2x1
    };
    let [y, cb, cr] = planes;
    // libjpeg-turbo's wrapper panics on a short plane: refuse it here instead.
    let short =
        w == 0 || h == 0 || y.len() < 2 * cw * yh || cb.len() < cw * ch || cr.len() < cw * ch;
    if short {
        return Err(EncodeError(format!(
            "planes of {}, {} and {} bytes are too short for a {w}x{h} image",
            y.len(),
            cb.len(),
            cr.len()
        )));
    }
    let image = turbojpeg::YuvPlanesImage {
        y_plane: y,
        u_plane: cb,
        v_plane: cr,
        width: w,
        height: h,
        y_stride: 2 * cw,
        u_stride: cw,
        v_stride: cw,
        subsamp,
    };
    imp::with_compressor(quality, subsamp, |c| c.compress_yuv_planes_to_vec(&image))
}

#[cfg(not(feature = "turbojpeg"))]
mod imp {
    use super::{Bytes, EncodeError};
    use jpeg_encoder::{ColorType, Encoder};

    pub(super) fn encode_rgb(
        rgb: &[u8],
        w: u16,
        h: u16,
        quality: u8,
    ) -> Result<Bytes, EncodeError> {
        let mut out = Vec::with_capacity(rgb.len() / 8);
        Encoder::new(&mut out, quality)
            .encode(rgb, w, h, ColorType::Rgb)
            .map_err(|e| EncodeError(e.to_string()))?;
        Ok(Bytes::from(out))
    }
}

#[cfg(feature = "turbojpeg")]
mod imp {
    use std::cell::RefCell;

    use super::{Bytes, EncodeError};

    /// Chroma at half resolution both ways below this quality, full above: jpeg-encoder's own
    /// rule, followed here so that the feature does not change what a quality setting means.
    const FULL_CHROMA_FROM: u8 = 90;

    thread_local! {
        // One compressor per thread (the encoder pool's, tokio's blocking threads): making one
        // allocates libjpeg's state, reusing it costs nothing.
        static COMPRESSOR: RefCell<Option<turbojpeg::Compressor>> = const { RefCell::new(None) };
    }

    pub(super) fn encode_rgb(
        rgb: &[u8],
        w: u16,
        h: u16,
        quality: u8,
    ) -> Result<Bytes, EncodeError> {
        let (w, h) = (usize::from(w), usize::from(h));
        let image = turbojpeg::Image {
            pixels: rgb,
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        with_compressor(quality, color_subsamp(quality), |c| {
            c.compress_to_vec(image)
        })
    }

    /// The chroma subsampling for colour images at `quality`.
    pub(super) fn color_subsamp(quality: u8) -> turbojpeg::Subsamp {
        if quality < FULL_CHROMA_FROM {
            turbojpeg::Subsamp::Sub2x2
        } else {
            turbojpeg::Subsamp::None
        }
    }

    /// Runs `f` with this thread's compressor set to `quality` and `subsamp`.
    pub(super) fn with_compressor(
        quality: u8,
        subsamp: turbojpeg::Subsamp,
        f: impl FnOnce(&mut turbojpeg::Compressor) -> turbojpeg::Result<Vec<u8>>,
    ) -> Result<Bytes, EncodeError> {
        let err = |e: turbojpeg::Error| EncodeError(format!("libjpeg-turbo: {e}"));
        COMPRESSOR.with_borrow_mut(|slot| {
            let compressor = match slot {
                Some(c) => c,
                None => slot.insert(turbojpeg::Compressor::new().map_err(err)?),
            };
            compressor
                .set_quality(i32::from(quality.clamp(1, 100)))
                .map_err(err)?;
            compressor.set_subsamp(subsamp).map_err(err)?;
            f(compressor).map(Bytes::from).map_err(err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through the real encoder of this build and a real decoder: the pixels come back.
    #[test]
    fn encodes_what_a_decoder_reads_back() {
        let (w, h) = (64u32, 48u32);
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                // Left half red, right half blue, a vertical gradient in green.
                let left = x < w / 2;
                rgb.extend_from_slice(&[
                    if left { 220 } else { 20 },
                    (y * 4) as u8,
                    if left { 20 } else { 220 },
                ]);
            }
        }
        for quality in [50, 80, 95] {
            let jpeg = encode_rgb(&rgb, w, h, quality).expect("encode");
            let mut d = zune_jpeg::JpegDecoder::new(&jpeg[..]);
            let px = d.decode().expect("decode");
            assert_eq!(d.dimensions(), Some((w as usize, h as usize)));
            let at = |x: u32, y: u32| {
                let i = ((y * w + x) * 3) as usize;
                [px[i], px[i + 1], px[i + 2]]
            };
            let (l, r) = (at(8, 24), at(56, 24));
            assert!(l[0] > 180 && l[2] < 60, "{ENCODER} q{quality}: left {l:?}");
            assert!(r[2] > 180 && r[0] < 60, "{ENCODER} q{quality}: right {r:?}");
            assert!(
                at(8, 2)[1] < 40 && at(8, 45)[1] > 150,
                "{ENCODER}: gradient"
            );
        }
    }

    #[test]
    fn refuses_bad_sizes() {
        assert!(encode_rgb(&[0; 12], 2, 2, 80).is_ok());
        assert!(encode_rgb(&[0; 11], 2, 2, 80).is_err());
        assert!(encode_rgb(&[], 0, 0, 80).is_err());
        assert!(encode_rgb(&[0; 3], 70_000, 1, 80).is_err());
    }

    /// libjpeg-turbo's wrapper panics on a plane too short for its blocks: those are refused
    /// with an error first, at the exact limit.
    #[cfg(feature = "turbojpeg")]
    #[test]
    fn planes_one_byte_short_are_refused_not_a_panic() {
        // 3x3 at 4:2:0: luma 4x4 (whole blocks), chroma 2x2.
        let (y, c) = (vec![128u8; 16], vec![128u8; 4]);
        assert!(encode_ycbcr_planes([&y, &c, &c], 3, 3, true, 80).is_ok());
        assert!(encode_ycbcr_planes([&y[..15], &c, &c], 3, 3, true, 80).is_err());
        assert!(encode_ycbcr_planes([&y, &c[..3], &c], 3, 3, true, 80).is_err());
        // 3x3 at 4:2:2: luma 4x3, chroma 2x3.
        let (y, c) = (vec![128u8; 12], vec![128u8; 6]);
        assert!(encode_ycbcr_planes([&y, &c, &c], 3, 3, false, 80).is_ok());
        assert!(encode_ycbcr_planes([&y, &c, &c[..5]], 3, 3, false, 80).is_err());
        // Packed rows 11 bytes apart; the last row needs only its 9.
        let rgb = vec![128u8; 11 * 2 + 9];
        assert!(encode_packed(&rgb, 3, 3, 11, Packed::Rgb, 80).is_ok());
        assert!(encode_packed(&rgb[..30], 3, 3, 11, Packed::Rgb, 80).is_err());
    }
}
