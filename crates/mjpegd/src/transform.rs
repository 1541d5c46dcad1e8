//! Per-camera pixel transforms: rotate, flip, downscale. Pure CPU work over one JPEG.
//!
//! Applied once per frame in the capture path (never per viewer) and only when configured, so
//! a camera that delivers JPEG and needs no transform passes its bytes through untouched.
//! Decoding is zune-jpeg, the pixel work is ours (plain loops, area-average downscaling), and
//! encoding is jpeg-encoder; all pure Rust.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

use crate::frame::Image;
use crate::overlay::{Painter, RgbSurface};
use crate::render::{Canvas, MAX_DIMENSION};

/// Clockwise rotation in degrees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum Rotate {
    /// No rotation.
    #[default]
    R0,
    /// 90° clockwise.
    R90,
    /// 180°.
    R180,
    /// 270° clockwise (90° counter-clockwise).
    R270,
}

/// A rotation or flip setting that is not one of the allowed values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// `rotate` is not a multiple of 90 in 0..=270.
    #[error("rotate must be 0, 90, 180 or 270 (got {0})")]
    Rotate(u32),
    /// `flip` is neither `horizontal` nor `vertical`.
    #[error("flip must be \"horizontal\" or \"vertical\" (got {0:?})")]
    Flip(String),
}

// The config parser collects messages as strings; this keeps it a plain `map_err` away.
impl From<SettingError> for String {
    fn from(e: SettingError) -> String {
        e.to_string()
    }
}

impl TryFrom<u32> for Rotate {
    type Error = SettingError;
    fn try_from(v: u32) -> Result<Rotate, SettingError> {
        match v {
            0 => Ok(Rotate::R0),
            90 => Ok(Rotate::R90),
            180 => Ok(Rotate::R180),
            270 => Ok(Rotate::R270),
            _ => Err(SettingError::Rotate(v)),
        }
    }
}

impl From<Rotate> for u32 {
    fn from(r: Rotate) -> u32 {
        match r {
            Rotate::R0 => 0,
            Rotate::R90 => 90,
            Rotate::R180 => 180,
            Rotate::R270 => 270,
        }
    }
}

/// Mirroring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flip {
    /// Mirror left-right.
    Horizontal,
    /// Mirror top-bottom.
    Vertical,
}

impl FromStr for Flip {
    type Err = SettingError;
    fn from_str(s: &str) -> Result<Flip, SettingError> {
        match s {
            "horizontal" => Ok(Flip::Horizontal),
            "vertical" => Ok(Flip::Vertical),
            _ => Err(SettingError::Flip(s.to_owned())),
        }
    }
}

/// The transforms of one camera, applied in the order flip, rotate, downscale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transform {
    /// Rotation.
    pub rotate: Rotate,
    /// Mirroring.
    pub flip: Option<Flip>,
    /// Fit within this size (keeping the aspect ratio); never upscales.
    pub fit: Option<(u32, u32)>,
    /// JPEG quality of re-encoded frames.
    pub quality: u8,
}

impl Transform {
    /// True when frames must be decoded and re-encoded.
    pub fn is_identity_for(&self, width: u32, height: u32) -> bool {
        self.rotate == Rotate::R0
            && self.flip.is_none()
            && self.fit.is_none_or(|(w, h)| width <= w && height <= h)
    }

    /// True when no setting moves or scales pixels, whatever the frame's size.
    pub fn is_none(&self) -> bool {
        self.rotate == Rotate::R0 && self.flip.is_none() && self.fit.is_none()
    }

    /// Applies the transform; returns the image unchanged (not even decoded) when there is nothing to do.
    pub fn apply(&self, image: &Image) -> Result<Image, TransformError> {
        self.apply_painted(image, None)
    }

    /// Applies the transform, then paints `painter`'s texts over the result (after rotating, so
    /// text reads upright); unchanged and not decoded when there is neither.
    pub fn apply_painted(
        &self,
        image: &Image,
        painter: Option<&Painter>,
    ) -> Result<Image, TransformError> {
        if painter.is_none() && self.is_identity_for(image.width, image.height) {
            return Ok(image.clone());
        }
        let mut px = decode(&image.jpeg)?;
        if let Some(f) = self.flip {
            px = px.flip(f);
        }
        px = px.rotate(self.rotate);
        if let Some((w, h)) = self.fit {
            let (tw, th) = fit_within(px.width, px.height, w, h);
            px = px.downscale(tw, th);
        }
        if let Some(p) = painter {
            p.paint(&mut RgbSurface::new(&mut px.rgb, px.width, px.height));
        }
        px.encode(self.quality)
    }
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rotate {}", u32::from(self.rotate))?;
        if let Some(fl) = self.flip {
            write!(f, ", flip {fl:?}")?;
        }
        if let Some((w, h)) = self.fit {
            write!(f, ", fit {w}x{h}")?;
        }
        Ok(())
    }
}

/// Why a frame could not be transformed.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The JPEG could not be decoded.
    #[error("cannot decode JPEG: {0}")]
    Decode(String),
    /// The JPEG could not be encoded.
    #[error("cannot encode JPEG: {0}")]
    Encode(String),
}

/// The largest size with the aspect ratio of `w`x`h` that fits in `max_w`x`max_h` (at least 1x1).
pub fn fit_within(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w, h);
    }
    let scale = f64::min(
        f64::from(max_w) / f64::from(w),
        f64::from(max_h) / f64::from(h),
    );
    let tw = (f64::from(w) * scale).round().max(1.0) as u32;
    let th = (f64::from(h) * scale).round().max(1.0) as u32;
    (tw.min(max_w).max(1), th.min(max_h).max(1))
}

/// A JPEG scaled down to at most `width` pixels wide (snapshot thumbnails).
pub fn thumbnail(image: &Image, width: u32, quality: u8) -> Result<Image, TransformError> {
    if width >= image.width {
        return Ok(image.clone());
    }
    let t = Transform {
        fit: Some((width, u32::MAX)),
        quality,
        ..Transform::default()
    };
    t.apply(image)
}

/// `jpeg` decoded to RGB8 and scaled, up or down, to the largest size with its aspect ratio
/// that fits in `max_w`x`max_h`: its width, height and pixels (mosaic tiles).
pub fn decode_to_fit(
    jpeg: &[u8],
    max_w: u32,
    max_h: u32,
) -> Result<(u32, u32, Vec<u8>), TransformError> {
    let px = decode(jpeg)?;
    let scale = f64::min(
        f64::from(max_w) / f64::from(px.width),
        f64::from(max_h) / f64::from(px.height),
    );
    let tw = ((f64::from(px.width) * scale).round() as u32).clamp(1, max_w.max(1));
    let th = ((f64::from(px.height) * scale).round() as u32).clamp(1, max_h.max(1));
    let px = if (tw, th) == (px.width, px.height) {
        px
    } else {
        px.resize(tw, th)
    };
    Ok((px.width, px.height, px.rgb))
}

/// Decoded RGB8 pixels.
struct Pixels {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

fn decode(jpeg: &[u8]) -> Result<Pixels, TransformError> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_DIMENSION as usize)
        .set_max_height(MAX_DIMENSION as usize);
    let mut d = JpegDecoder::new_with_options(jpeg, options);
    let rgb = d
        .decode()
        .map_err(|e| TransformError::Decode(format!("{e:?}")))?;
    let (w, h) = d
        .dimensions()
        .ok_or_else(|| TransformError::Decode("no dimensions".into()))?;
    if rgb.len() != w * h * 3 {
        return Err(TransformError::Decode(format!(
            "decoder returned {} bytes for {w}x{h} RGB",
            rgb.len()
        )));
    }
    Ok(Pixels {
        width: w as u32,
        height: h as u32,
        rgb,
    })
}

impl Pixels {
    fn at(&self, x: u32, y: u32) -> usize {
        (y as usize * self.width as usize + x as usize) * 3
    }

    fn flip(mut self, f: Flip) -> Pixels {
        let stride = self.width as usize * 3;
        match f {
            Flip::Horizontal => {
                for row in self.rgb.chunks_exact_mut(stride) {
                    let n = row.len() / 3;
                    for i in 0..n / 2 {
                        let (a, b) = (i * 3, (n - 1 - i) * 3);
                        for k in 0..3 {
                            row.swap(a + k, b + k);
                        }
                    }
                }
            }
            Flip::Vertical => {
                let h = self.height as usize;
                for y in 0..h / 2 {
                    let (top, bottom) = self.rgb.split_at_mut((h - 1 - y) * stride);
                    top[y * stride..(y + 1) * stride].swap_with_slice(&mut bottom[..stride]);
                }
            }
        }
        self
    }

    fn rotate(self, r: Rotate) -> Pixels {
        let (w, h) = (self.width, self.height);
        let (nw, nh) = match r {
            Rotate::R0 => return self,
            Rotate::R180 => (w, h),
            Rotate::R90 | Rotate::R270 => (h, w),
        };
        let mut out = vec![0u8; self.rgb.len()];
        for y in 0..h {
            for x in 0..w {
                let (nx, ny) = match r {
                    Rotate::R90 => (h - 1 - y, x),
                    Rotate::R180 => (w - 1 - x, h - 1 - y),
                    _ => (y, w - 1 - x),
                };
                let src = self.at(x, y);
                let dst = (ny as usize * nw as usize + nx as usize) * 3;
                out[dst..dst + 3].copy_from_slice(&self.rgb[src..src + 3]);
            }
        }
        Pixels {
            width: nw,
            height: nh,
            rgb: out,
        }
    }

    /// Area-average downscale: each output pixel averages the source pixels it covers.
    fn downscale(self, tw: u32, th: u32) -> Pixels {
        if tw >= self.width && th >= self.height {
            return self;
        }
        self.resize(tw, th)
    }

    /// Box-filtered to `tw`x`th`; scaling up, each pixel is its nearest source pixel.
    fn resize(self, tw: u32, th: u32) -> Pixels {
        let (w, h) = (self.width as usize, self.height as usize);
        let (tw, th) = (tw.max(1) as usize, th.max(1) as usize);
        let mut out = Vec::with_capacity(tw * th * 3);
        for ty in 0..th {
            let y0 = ty * h / th;
            let y1 = ((ty + 1) * h / th).max(y0 + 1).min(h);
            for tx in 0..tw {
                let x0 = tx * w / tw;
                let x1 = ((tx + 1) * w / tw).max(x0 + 1).min(w);
                let mut sum = [0u32; 3];
                for y in y0..y1 {
                    let row = &self.rgb[(y * w + x0) * 3..(y * w + x1) * 3];
                    for px in row.chunks_exact(3) {
                        sum[0] += u32::from(px[0]);
                        sum[1] += u32::from(px[1]);
                        sum[2] += u32::from(px[2]);
                    }
                }
                let n = ((y1 - y0) * (x1 - x0)) as u32;
                out.extend(sum.iter().map(|s| ((s + n / 2) / n) as u8));
            }
        }
        Pixels {
            width: tw as u32,
            height: th as u32,
            rgb: out,
        }
    }

    fn encode(self, quality: u8) -> Result<Image, TransformError> {
        let (width, height) = (self.width, self.height);
        let canvas = Canvas::from_rgb(width, height, self.rgb)
            .ok_or_else(|| TransformError::Encode(format!("bad size {width}x{height}")))?;
        let jpeg: Bytes = canvas
            .encode(quality)
            .map_err(|e| TransformError::Encode(e.to_string()))?;
        Ok(Image {
            jpeg,
            width,
            height,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4x2 image whose left half is red and right half blue.
    fn sample() -> Image {
        let mut c = Canvas::new(64, 32, [255, 0, 0]);
        c.fill_rect(32, 0, 32, 32, [0, 0, 255]);
        let jpeg = c.encode(95).expect("encode");
        Image {
            jpeg,
            width: 64,
            height: 32,
        }
    }

    fn pixel(img: &Image, x: u32, y: u32) -> [u8; 3] {
        let px = decode(&img.jpeg).expect("decode");
        let i = px.at(x, y);
        [px.rgb[i], px.rgb[i + 1], px.rgb[i + 2]]
    }

    fn is_red(p: [u8; 3]) -> bool {
        p[0] > 200 && p[2] < 60
    }

    #[test]
    fn identity_passes_bytes_through_untouched() {
        let img = sample();
        let t = Transform {
            quality: 80,
            fit: Some((1280, 720)),
            ..Transform::default()
        };
        assert!(t.is_identity_for(64, 32));
        assert_eq!(t.apply(&img).expect("apply").jpeg, img.jpeg);
    }

    #[test]
    fn rotate_flip_and_fit() {
        let img = sample();
        let r90 = Transform {
            rotate: Rotate::R90,
            quality: 95,
            ..Transform::default()
        }
        .apply(&img)
        .expect("rotate");
        assert_eq!((r90.width, r90.height), (32, 64));
        assert_eq!(crate::jpeg::dimensions(&r90.jpeg), Ok((32, 64)));
        // Red (left) goes to the top after a clockwise quarter turn.
        assert!(is_red(pixel(&r90, 16, 8)));
        assert!(!is_red(pixel(&r90, 16, 56)));

        let flipped = Transform {
            flip: Some(Flip::Horizontal),
            quality: 95,
            ..Transform::default()
        }
        .apply(&img)
        .expect("flip");
        assert!(!is_red(pixel(&flipped, 8, 16)));
        assert!(is_red(pixel(&flipped, 56, 16)));

        let small = thumbnail(&img, 16, 90).expect("thumbnail");
        assert_eq!((small.width, small.height), (16, 8));
        assert!(is_red(pixel(&small, 2, 4)));
    }

    #[test]
    fn fit_keeps_aspect_ratio_and_never_upscales() {
        assert_eq!(fit_within(1280, 720, 640, 640), (640, 360));
        assert_eq!(fit_within(100, 50, 640, 480), (100, 50));
        assert_eq!(fit_within(4000, 1, 10, 10), (10, 1));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let img = Image {
            jpeg: Bytes::from_static(b"\xff\xd8garbage"),
            width: 100,
            height: 100,
        };
        let t = Transform {
            rotate: Rotate::R180,
            quality: 80,
            ..Transform::default()
        };
        assert!(t.apply(&img).is_err());
    }
}
