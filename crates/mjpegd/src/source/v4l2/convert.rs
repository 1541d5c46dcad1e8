//! Raw frames to JPEG, and painted overlays.
//!
//! A raw frame has been copied out of the driver's buffers into one of the few layouts the
//! encoder reads, [`Encoded`] (`gather.rs`: planes gathered, chroma interleaved, U and V put in
//! their place). It is handed to `jpeg-encoder` row by row through its `ImageBuffer` trait (or,
//! with the `turbojpeg` feature, to libjpeg-turbo as planes), as YCbCr where the camera delivers
//! YCbCr: no intermediate RGB image, no colour conversion, only the studio-range (16-235) to
//! full-range (0-255) expansion JPEG expects. Pure code over
//! byte slices, unit-tested without a device.

use bytes::Bytes;
#[cfg(not(feature = "turbojpeg"))]
use jpeg_encoder::{ColorType, Encoder, ImageBuffer, JpegColorType, rgb_to_ycbcr};

use super::format::Encoded;
use super::gather::RawLayout;
use crate::overlay::{Surface, shade_sample};

impl RawLayout {
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
mod tests {
    use super::*;
    use crate::source::v4l2::format::PixelFormat;
    use crate::source::v4l2::sys;
    use crate::source::v4l2::testing::{assert_bar_colours, bars};

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
}
