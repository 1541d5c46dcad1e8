//! The small luma image the detector compares: each pixel is the mean of one 8x8 block of the
//! frame's luma, the resolution of a JPEG's DC coefficients.

use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use super::MotionError;
use crate::render::MAX_DIMENSION;

/// Frame pixels per small-image pixel, in each direction.
pub const SCALE: u32 = 8;

/// A downscaled luma image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Luma {
    /// Width in small pixels (frame width / 8, rounded up).
    pub width: u32,
    /// Height in small pixels (frame height / 8, rounded up).
    pub height: u32,
    /// Width of the frame it came from.
    pub frame_width: u32,
    /// Height of the frame it came from.
    pub frame_height: u32,
    /// Row-major luma, `width * height` bytes.
    pub pixels: Vec<u8>,
}

/// How the luma is obtained; both are measured by `examples/motion_cost.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LumaPath {
    /// Decode luma only (zune-jpeg skips chroma IDCT, upsampling and colour conversion),
    /// then box-downscale. The default: cheaper, same result.
    LumaDecode,
    /// Decode RGB, convert to luma (BT.601), then box-downscale: the reference for comparison.
    RgbDecode,
}

/// The small luma image of `jpeg`, by the default path.
pub fn small_luma(jpeg: &[u8]) -> Result<Luma, MotionError> {
    small_luma_with(jpeg, LumaPath::LumaDecode)
}

/// The small luma image of `jpeg`, by `path`.
pub fn small_luma_with(jpeg: &[u8], path: LumaPath) -> Result<Luma, MotionError> {
    let space = match path {
        LumaPath::LumaDecode => ColorSpace::Luma,
        LumaPath::RgbDecode => ColorSpace::RGB,
    };
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(space)
        .set_max_width(MAX_DIMENSION as usize)
        .set_max_height(MAX_DIMENSION as usize);
    let mut d = JpegDecoder::new_with_options(jpeg, options);
    let decoded = d
        .decode()
        .map_err(|e| MotionError::Decode(format!("{e:?}")))?;
    let (w, h) = d
        .dimensions()
        .ok_or_else(|| MotionError::Decode("the decoder gave no dimensions".into()))?;
    let luma = match path {
        LumaPath::LumaDecode => decoded,
        LumaPath::RgbDecode => {
            if decoded.len() != w * h * 3 {
                return Err(MotionError::Decode(format!(
                    "{} bytes is not {w}x{h} RGB",
                    decoded.len()
                )));
            }
            decoded
                .chunks_exact(3)
                .map(|p| {
                    let y = 77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]);
                    (y >> 8) as u8
                })
                .collect()
        }
    };
    // A grey JPEG decoded to luma, or a colour one: either way one byte per pixel by now.
    if luma.len() != w * h || w == 0 || h == 0 {
        return Err(MotionError::Decode(format!(
            "{} luma bytes is not a {w}x{h} image",
            luma.len()
        )));
    }
    Ok(downscale(&luma, w, h))
}

/// Box-averages `SCALE`x`SCALE` blocks; edge blocks average the pixels they have.
fn downscale(luma: &[u8], w: usize, h: usize) -> Luma {
    let s = SCALE as usize;
    let (sw, sh) = (w.div_ceil(s), h.div_ceil(s));
    let mut sums = vec![0u32; sw];
    let mut pixels = Vec::with_capacity(sw * sh);
    for by in 0..sh {
        sums.iter_mut().for_each(|v| *v = 0);
        let rows = (by * s..((by + 1) * s).min(h)).len();
        for row in luma[by * s * w..(by * s + rows) * w].chunks_exact(w) {
            for (sum, block) in sums.iter_mut().zip(row.chunks(s)) {
                *sum += block.iter().map(|&p| u32::from(p)).sum::<u32>();
            }
        }
        for (bx, sum) in sums.iter().enumerate() {
            let cols = (bx * s..((bx + 1) * s).min(w)).len();
            let n = (cols * rows) as u32;
            pixels.push(((sum + n / 2) / n) as u8);
        }
    }
    Luma {
        width: sw as u32,
        height: sh as u32,
        frame_width: w as u32,
        frame_height: h as u32,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Canvas;

    #[test]
    fn both_paths_give_the_block_means_of_a_real_jpeg() {
        // 100x50: the last column and row of blocks are partial (4 and 2 pixels).
        let mut c = Canvas::new(100, 50, [0, 0, 0]);
        c.fill_rect(0, 0, 48, 48, [255, 255, 255]);
        let jpeg = c.encode(95).expect("encodes");
        for path in [LumaPath::LumaDecode, LumaPath::RgbDecode] {
            let l = small_luma_with(&jpeg, path).expect("decodes");
            assert_eq!((l.width, l.height), (13, 7), "{path:?}");
            assert_eq!((l.frame_width, l.frame_height), (100, 50));
            let at = |x: usize, y: usize| l.pixels[y * 13 + x];
            assert!(at(0, 0) > 240 && at(5, 5) > 240, "{path:?}: white block");
            assert!(at(7, 0) < 15 && at(12, 6) < 15, "{path:?}: black block");
        }
    }

    #[test]
    fn the_two_paths_agree_on_a_colour_frame() {
        let mut c = Canvas::new(320, 240, [30, 90, 160]);
        c.fill_rect(40, 40, 100, 60, [200, 40, 40]);
        c.fill_rect(200, 120, 80, 80, [20, 220, 60]);
        let jpeg = c.encode(85).expect("encodes");
        let a = small_luma_with(&jpeg, LumaPath::LumaDecode).expect("luma");
        let b = small_luma_with(&jpeg, LumaPath::RgbDecode).expect("rgb");
        let worst = a
            .pixels
            .iter()
            .zip(&b.pixels)
            .map(|(x, y)| x.abs_diff(*y))
            .max();
        assert!(worst.is_some_and(|w| w <= 4), "paths differ by {worst:?}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(small_luma(b"not a jpeg").is_err());
        let mut c = Canvas::new(64, 64, [1, 2, 3])
            .encode(80)
            .expect("encodes")
            .to_vec();
        c.truncate(c.len() / 3);
        // zune-jpeg may fill a truncated scan with grey; it must not panic either way.
        let _ = small_luma(&c);
    }
}
