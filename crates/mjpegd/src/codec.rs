//! The JPEG encoder behind every frame mjpegd encodes itself (the test pattern, no-signal
//! frames, rotate/flip/resize, per-request sizes): jpeg-encoder, pure Rust, by default; with
//! the `turbojpeg` feature, libjpeg-turbo.
//!
//! libjpeg-turbo encoded the benchmark frames 3–3.5× faster here (BENCHMARKS.md, "Codecs
//! against libjpeg-turbo") and has NEON code for ARM boards, where jpeg-encoder runs scalar.
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
        let err = |e: turbojpeg::Error| EncodeError(format!("libjpeg-turbo: {e}"));
        let (w, h) = (usize::from(w), usize::from(h));
        let image = turbojpeg::Image {
            pixels: rgb,
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        let subsamp = if quality < FULL_CHROMA_FROM {
            turbojpeg::Subsamp::Sub2x2
        } else {
            turbojpeg::Subsamp::None
        };
        COMPRESSOR.with_borrow_mut(|slot| {
            let compressor = match slot {
                Some(c) => c,
                None => slot.insert(turbojpeg::Compressor::new().map_err(err)?),
            };
            compressor.set_quality(i32::from(quality)).map_err(err)?;
            compressor.set_subsamp(subsamp).map_err(err)?;
            compressor
                .compress_to_vec(image)
                .map(Bytes::from)
                .map_err(err)
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
}
