//! A raw frame copied out of the driver's buffers into the layout the encoder reads.
//!
//! Every raw frame is copied anyway, so that the driver gets its buffer back before the frame
//! is encoded on the pool. That one pass also brings the many ways drivers store YCbCr (V
//! before U, chroma in two planes, planes in separate buffers, 4:2:2 and 4:4:4 chroma) to the
//! few layouts the encoder reads ([`Encoded`]), so nothing after it knows they exist: 4:2:0
//! becomes NV12, 4:2:2 and 4:4:4 become YUYV (4:4:4 chroma averaged in pairs of pixels, which
//! the JPEG's own subsampling would drop anyway). Pure code over byte slices.

use super::format::{Encoded, PixelFormat, Samples, fourcc_str};

/// One plane of a driver's frame: which buffer it is in, where it starts, and its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Plane {
    /// The memory plane (driver buffer) holding it.
    pub(super) buffer: usize,
    /// Where it starts in that buffer.
    pub(super) offset: usize,
    /// Bytes from one row to the next.
    pub(super) stride: usize,
    /// Bytes of samples in a row.
    pub(super) row: usize,
    /// Rows.
    pub(super) rows: usize,
}

impl Plane {
    /// Where its last sample ends in its buffer (the last row needs no padding).
    fn end(&self) -> usize {
        self.offset + self.stride * (self.rows - 1) + self.row
    }

    /// Row `r` of the plane, in `data` (its buffer, checked long enough).
    fn row_in<'a>(&self, data: &'a [u8], r: usize) -> &'a [u8] {
        let start = self.offset + r * self.stride;
        &data[start..start + self.row]
    }
}

/// How the driver lays a frame out: its format, and its planes in memory order (luma first,
/// then chroma: one plane of pairs, or two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DriverFrame {
    /// The driver's pixel format.
    pub(super) format: PixelFormat,
    planes: [Plane; 3],
    count: usize,
}

impl DriverFrame {
    /// The planes of a `width` x `height` frame of `format`, from the driver's `bytesperline`
    /// of each memory plane (`strides`); the error says what does not fit.
    pub(super) fn new(
        format: PixelFormat,
        width: usize,
        height: usize,
        strides: &[u32],
    ) -> Result<DriverFrame, String> {
        let fourcc = fourcc_str(format.fourcc());
        if strides.len() != format.planes() {
            return Err(format!(
                "the driver stores {fourcc} in {} memory planes; mjpegd reads it in {}",
                strides.len(),
                format.planes()
            ));
        }
        // Some drivers leave bytesperline at 0: rows are then contiguous.
        let stride_or = |i: usize, min: usize| match strides[i] {
            0 => min,
            s => s as usize,
        };
        let mut planes = [Plane::default(); 3];
        let count = match format.samples() {
            Samples::Jpeg => return Err(format!("{fourcc} is passed through, not encoded")),
            Samples::Packed { .. }
            | Samples::Rgb32 { .. }
            | Samples::Rgb565 { .. }
            | Samples::Grey16 { .. } => {
                let row = match format.samples() {
                    Samples::Rgb32 { .. } => width * 4,
                    Samples::Rgb565 { .. } | Samples::Grey16 { .. } => width * 2,
                    _ => format.encoded().min_stride(width),
                };
                planes[0] = Plane {
                    buffer: 0,
                    offset: 0,
                    stride: stride_or(0, row),
                    row,
                    rows: height,
                };
                1
            }
            Samples::Split {
                pairs,
                h_sub,
                v_sub,
                ..
            } => {
                let (cw, ch) = (width.div_ceil(h_sub), height.div_ceil(v_sub));
                let (crow, chroma_planes) = if pairs { (cw * 2, 1) } else { (cw, 2) };
                if format.planes() == 1 {
                    // One buffer: the chroma planes follow the luma, their stride derived from
                    // its (V4L2's rule: the same bytes per sample, `h_sub` times fewer
                    // samples). The smallest luma stride is the one whose chroma rows fit.
                    let luma = stride_or(0, cw * h_sub);
                    let chroma = if pairs {
                        luma.saturating_mul(2) / h_sub
                    } else {
                        luma / h_sub
                    };
                    planes[0] = Plane {
                        buffer: 0,
                        offset: 0,
                        stride: luma,
                        row: width,
                        rows: height,
                    };
                    for i in 0..chroma_planes {
                        planes[1 + i] = Plane {
                            buffer: 0,
                            // Saturating: absurd numbers are refused below.
                            offset: luma
                                .saturating_mul(height)
                                .saturating_add(i.saturating_mul(chroma).saturating_mul(ch)),
                            stride: chroma,
                            row: crow,
                            rows: ch,
                        };
                    }
                } else {
                    planes[0] = Plane {
                        buffer: 0,
                        offset: 0,
                        stride: stride_or(0, width),
                        row: width,
                        rows: height,
                    };
                    for i in 0..chroma_planes {
                        planes[1 + i] = Plane {
                            buffer: 1 + i,
                            offset: 0,
                            stride: stride_or(1 + i, crow),
                            row: crow,
                            rows: ch,
                        };
                    }
                }
                1 + chroma_planes
            }
        };
        for (i, p) in planes[..count].iter().enumerate() {
            // A 32-bit machine cannot even address what absurd driver numbers describe.
            let fits = p
                .stride
                .checked_mul(p.rows)
                .and_then(|n| n.checked_add(p.offset))
                .is_some_and(|n| n <= isize::MAX as usize);
            if !fits {
                return Err(format!(
                    "driver reports {} bytes per row for {height} rows of {fourcc}, more than                      this machine can address",
                    p.stride
                ));
            }
            if p.stride < p.row {
                let which = if i == 0 { "" } else { " of chroma" };
                return Err(format!(
                    "driver reports {} bytes per row{which}, but {fourcc} needs {} at width \
                     {width}",
                    p.stride, p.row
                ));
            }
        }
        Ok(DriverFrame {
            format,
            planes,
            count,
        })
    }

    /// The planes, luma first.
    pub(super) fn planes(&self) -> &[Plane] {
        &self.planes[..self.count]
    }

    /// True when the copy keeps the driver's rows as they are (packed formats, and NV12 in
    /// one buffer): the encoder's frame then has the driver's stride.
    pub(super) fn keeps_stride(&self) -> bool {
        matches!(self.format.samples(), Samples::Packed { .. }) || self.format.is_direct()
    }
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
}

impl RawLayout {
    /// The frame in the driver's `buffers` (one per memory plane), copied into the layout the
    /// encoder reads. Too few bytes in any buffer is a short frame.
    pub(super) fn copy_out(&self, buffers: &[&[u8]]) -> Result<Vec<u8>, String> {
        let d = &self.driver;
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        let fourcc = fourcc_str(d.format.fourcc());
        if buffers.len() != d.format.planes() {
            return Err(format!(
                "the driver gave {} memory planes for a {fourcc} frame",
                buffers.len()
            ));
        }
        let need = |i: usize| {
            d.planes()
                .iter()
                .filter(|p| p.buffer == i)
                .map(Plane::end)
                .max()
                .unwrap_or(0)
        };
        for (i, data) in buffers.iter().enumerate() {
            let need = need(i);
            if data.len() < need {
                let plane = if buffers.len() > 1 {
                    format!(" in memory plane {i}")
                } else {
                    String::new()
                };
                return Err(format!(
                    "short frame: {} bytes{plane}, a {w}x{h} {fourcc} frame needs {need}",
                    data.len()
                ));
            }
        }
        if d.format.is_direct() {
            return Ok(buffers[0][..need(0)].to_vec());
        }
        let planes = d.planes();
        let luma = planes[0];
        match d.format.samples() {
            Samples::Packed { swapped: true, .. } => {
                let mut out = buffers[0][..luma.end()].to_vec();
                // U and V swap places within each 4-byte pair of pixels.
                let (a, b) = if self.format == Encoded::Yuyv {
                    (1, 3)
                } else {
                    (0, 2)
                };
                for r in 0..h {
                    let start = r * luma.stride;
                    for pair in out[start..start + luma.row].chunks_exact_mut(4) {
                        pair.swap(a, b);
                    }
                }
                Ok(out)
            }
            Samples::Split {
                pairs,
                vu,
                h_sub,
                v_sub,
            } => {
                // Chroma row `r` as its U and V samples: every `step`-th byte from the start.
                let chroma_row = |r: usize| -> (&[u8], &[u8], usize) {
                    let c1 = planes[1].row_in(buffers[planes[1].buffer], r);
                    let (first, second, step) = if pairs {
                        (c1, &c1[1..], 2)
                    } else {
                        (c1, planes[2].row_in(buffers[planes[2].buffer], r), 1)
                    };
                    if vu {
                        (second, first, step)
                    } else {
                        (first, second, step)
                    }
                };
                let luma_row = |r: usize| luma.row_in(buffers[luma.buffer], r);
                let stride = self.stride;
                let mut out = vec![0u8; self.frame_len()];
                if v_sub == 2 {
                    // NV12: the luma rows, then rows of (U, V) pairs, at one stride.
                    let cw = w.div_ceil(2);
                    for (r, row) in out.chunks_mut(stride).take(h).enumerate() {
                        row[..w].copy_from_slice(luma_row(r));
                        if w < row.len() {
                            row[w] = row[w - 1];
                        }
                    }
                    for cr in 0..h.div_ceil(2) {
                        let start = stride * (h + cr);
                        let row = &mut out[start..start + cw * 2];
                        let (u, v, step) = chroma_row(cr);
                        if pairs && !vu {
                            row.copy_from_slice(&u[..cw * 2]);
                        } else {
                            let samples = u.iter().step_by(step).zip(v.iter().step_by(step));
                            for (uv, (&u, &v)) in row.chunks_exact_mut(2).zip(samples) {
                                uv.copy_from_slice(&[u, v]);
                            }
                        }
                    }
                } else {
                    // YUYV: each pair of pixels with its chroma; 4:4:4 chroma is the mean of
                    // the pair's two samples.
                    let row_len = self.format.min_stride(w);
                    for (r, row) in out.chunks_mut(stride).take(h).enumerate() {
                        let y = luma_row(r);
                        let (u, v, step) = chroma_row(r);
                        for (k, px) in row[..row_len].chunks_exact_mut(4).enumerate() {
                            let (x0, x1) = (2 * k, (2 * k + 1).min(w - 1));
                            let (u, v) = if h_sub == 2 {
                                (u[k * step], v[k * step])
                            } else {
                                (
                                    mean(u[x0 * step], u[x1 * step]),
                                    mean(v[x0 * step], v[x1 * step]),
                                )
                            };
                            px.copy_from_slice(&[y[x0], u, y[x1], v]);
                        }
                    }
                }
                Ok(out)
            }
            Samples::Rgb32 { rgb } => Ok(self.each_pixel(&luma, buffers[0], 4, |p, out| {
                out.copy_from_slice(&[p[rgb[0]], p[rgb[1]], p[rgb[2]]]);
            })),
            Samples::Rgb565 { be } => Ok(self.each_pixel(&luma, buffers[0], 2, |p, out| {
                let v = if be {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    u16::from_le_bytes([p[0], p[1]])
                };
                // 5 and 6 bits to 8, the top bits repeated below so white stays 255.
                let (r, g, b) = ((v >> 11) as u8, (v >> 5 & 0x3f) as u8, (v & 0x1f) as u8);
                out.copy_from_slice(&[r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2]);
            })),
            Samples::Grey16 { bits, be } => {
                let shift = bits - 8;
                let half = (1u32 << shift) >> 1;
                Ok(self.each_pixel(&luma, buffers[0], 2, |p, out| {
                    let v = if be {
                        u16::from_be_bytes([p[0], p[1]])
                    } else {
                        u16::from_le_bytes([p[0], p[1]])
                    };
                    // Rounded to 8 bits; values past the stated bits (a driver's noise) clamp.
                    out[0] = ((u32::from(v) + half) >> shift).min(255) as u8;
                }))
            }
            // Packed and unswapped is direct (above); JPEG has no `RawLayout`.
            Samples::Packed { .. } | Samples::Jpeg => Err(format!("{fourcc} needs no rearranging")),
        }
    }
}

impl RawLayout {
    /// A frame of `plane`'s pixels (`size` bytes each, in `data`), each turned by `pixel` into
    /// the encoder's pixel (RGB or luma), in rows without padding.
    fn each_pixel(
        &self,
        plane: &Plane,
        data: &[u8],
        size: usize,
        pixel: impl Fn(&[u8], &mut [u8]),
    ) -> Vec<u8> {
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        let out_px = self.format.min_stride(1);
        let mut out = vec![0u8; self.frame_len()];
        for (r, row) in out.chunks_mut(self.stride).take(h).enumerate() {
            let src = plane.row_in(data, r);
            for (px, o) in src
                .chunks_exact(size)
                .zip(row[..w * out_px].chunks_exact_mut(out_px))
            {
                pixel(px, o);
            }
        }
        out
    }
}

/// The mean of two samples, rounded half up.
fn mean(a: u8, b: u8) -> u8 {
    ((u16::from(a) + u16::from(b)).div_ceil(2)) as u8
}

#[cfg(test)]
mod tests {
    use super::super::sys;
    use super::super::testing::{COLOURS, assert_bar_colours, bars, studio_yuv};
    use super::*;

    /// A `w` x `h` frame of `format` showing `COLOURS`' bars, written by the V4L2
    /// specification's layout rules (not by the code under test): the driver's buffers and
    /// each one's `bytesperline`. Rows carry `pad` bytes of 0xAA (scaled for one-buffer
    /// planar formats, whose chroma stride is derived), and each extra buffer a little more.
    fn driver_frame(
        format: PixelFormat,
        w: usize,
        h: usize,
        pad: usize,
    ) -> (Vec<Vec<u8>>, Vec<u32>) {
        let colour = |x: usize| studio_yuv(COLOURS[x.min(w - 1) * 4 / w]);
        let code = format.code();
        match format.samples() {
            Samples::Packed { .. } => {
                let (layout, data) = bars(direct_of(format), w, h, pad);
                let mut data = data;
                // YVYU and VYUY: YUYV and UYVY with U and V in each other's place.
                let swap = match &code {
                    b"YVYU" => Some((1, 3)),
                    b"VYUY" => Some((0, 2)),
                    _ => None,
                };
                if let Some((a, b)) = swap {
                    for r in 0..h {
                        let start = r * layout.stride;
                        for p in data[start..start + (w.div_ceil(2)) * 4].chunks_exact_mut(4) {
                            p.swap(a, b);
                        }
                    }
                }
                (vec![data], vec![layout.stride as u32])
            }
            Samples::Split {
                pairs,
                vu,
                h_sub,
                v_sub,
            } => {
                let (cw, ch) = (w.div_ceil(h_sub), h.div_ceil(v_sub));
                let plane = |stride: usize, rows: usize, row: &dyn Fn(usize) -> Vec<u8>| {
                    let mut p = Vec::new();
                    for r in 0..rows {
                        let mut bytes = row(r);
                        bytes.resize(stride, 0xAA);
                        p.extend_from_slice(&bytes);
                    }
                    p
                };
                let luma_row = |_: usize| (0..w).map(|x| colour(x)[0]).collect::<Vec<u8>>();
                // Chroma sample j is the colour of the first pixel it covers.
                let (first, second) = if vu { (2, 1) } else { (1, 2) };
                let pair_row = |_: usize| {
                    (0..cw)
                        .flat_map(|j| {
                            let c = colour(j * h_sub);
                            [c[first], c[second]]
                        })
                        .collect::<Vec<u8>>()
                };
                let one_row = |k: usize| {
                    move |_: usize| (0..cw).map(|j| colour(j * h_sub)[k]).collect::<Vec<u8>>()
                };
                if format.planes() == 1 {
                    let luma = cw * h_sub + pad * h_sub;
                    let chroma = if pairs {
                        luma * 2 / h_sub
                    } else {
                        luma / h_sub
                    };
                    let mut data = plane(luma, h, &luma_row);
                    if pairs {
                        data.extend(plane(chroma, ch, &pair_row));
                    } else {
                        data.extend(plane(chroma, ch, &one_row(first)));
                        data.extend(plane(chroma, ch, &one_row(second)));
                    }
                    (vec![data], vec![luma as u32])
                } else {
                    let strides = [w + pad, cw * 2 + pad + 2, cw + pad + 4];
                    let mut buffers = vec![plane(strides[0], h, &luma_row)];
                    if pairs {
                        buffers.push(plane(strides[1], ch, &pair_row));
                    } else {
                        buffers.push(plane(strides[2], ch, &one_row(first)));
                        buffers.push(plane(strides[2], ch, &one_row(second)));
                    }
                    let strides = match buffers.len() {
                        2 => vec![strides[0], strides[1]],
                        _ => vec![strides[0], strides[2], strides[2]],
                    };
                    (buffers, strides.into_iter().map(|s| s as u32).collect())
                }
            }
            Samples::Rgb32 { .. } | Samples::Rgb565 { .. } | Samples::Grey16 { .. } => {
                let rgb = |x: usize| COLOURS[x * 4 / w];
                let pixel = |x: usize| -> Vec<u8> {
                    let [r, g, b] = rgb(x);
                    match format.samples() {
                        Samples::Rgb32 { rgb: at } => {
                            let mut p = vec![0x55; 4];
                            (p[at[0]], p[at[1]], p[at[2]]) = (r, g, b);
                            p
                        }
                        Samples::Rgb565 { be } => {
                            let v = u16::from(r >> 3) << 11
                                | u16::from(g >> 2) << 5
                                | u16::from(b >> 3);
                            if be { v.to_be_bytes() } else { v.to_le_bytes() }.to_vec()
                        }
                        Samples::Grey16 { bits, be } => {
                            let v = u16::from(colour(x)[0]) << (bits - 8);
                            if be { v.to_be_bytes() } else { v.to_le_bytes() }.to_vec()
                        }
                        _ => unreachable!(),
                    }
                };
                let row_len = pixel(0).len() * w;
                let stride = row_len + pad;
                let mut data = Vec::new();
                for _ in 0..h {
                    let mut row: Vec<u8> = (0..w).flat_map(pixel).collect();
                    row.resize(stride, 0xAA);
                    data.extend_from_slice(&row);
                }
                (vec![data], vec![stride as u32])
            }
            Samples::Jpeg => unreachable!("JPEG is not raw"),
        }
    }

    /// The driver format that is `format`'s encoder layout as it is.
    fn direct_of(format: PixelFormat) -> PixelFormat {
        match format.encoded() {
            Encoded::Yuyv => PixelFormat::Yuyv,
            Encoded::Uyvy => PixelFormat::Uyvy,
            Encoded::Nv12 => PixelFormat::Nv12,
            Encoded::Rgb24 => PixelFormat::Rgb24,
            Encoded::Bgr24 => PixelFormat::Bgr24,
            Encoded::Grey => PixelFormat::Grey,
        }
    }

    fn raw_formats() -> impl Iterator<Item = PixelFormat> {
        PixelFormat::ALL.into_iter().filter(|f| !f.is_jpeg())
    }

    /// The rows of samples of an encoder frame (its padding left out).
    fn sample_rows(layout: &RawLayout, data: &[u8]) -> Vec<Vec<u8>> {
        let (w, h, s) = (
            usize::from(layout.width),
            usize::from(layout.height),
            layout.stride,
        );
        let row = layout.format.min_stride(w);
        match layout.format {
            Encoded::Nv12 => (0..h)
                .map(|r| data[r * s..r * s + w].to_vec())
                .chain((0..h.div_ceil(2)).map(|r| data[s * (h + r)..s * (h + r) + row].to_vec()))
                .collect(),
            _ => (0..h).map(|r| data[r * s..r * s + row].to_vec()).collect(),
        }
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

    /// Every raw format, at even and odd sizes and with padded rows, copied out of its
    /// driver buffers, encodes to the bars' colours; and except for 4:4:4 (whose chroma is
    /// averaged in pairs), its samples are exactly those of the same picture written
    /// directly in the encoder's layout.
    #[test]
    fn every_raw_format_is_copied_into_the_encoder_layout() {
        for format in raw_formats() {
            for (w, h, pad) in [(64, 32, 0), (64, 32, 16), (62, 18, 6), (61, 17, 6)] {
                let what = format!("{} {w}x{h}+{pad}", fourcc_str(format.fourcc()));
                let (buffers, strides) = driver_frame(format, w, h, pad);
                let layout = RawLayout::new(
                    format,
                    w as u32,
                    h as u32,
                    &strides,
                    sys::QUANTIZATION_LIM_RANGE,
                )
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(layout.format, format.encoded(), "{what}");
                let views: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
                let data = layout
                    .copy_out(&views)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(data.len(), layout.frame_len(), "{what}");
                let grey = format.encoded() == Encoded::Grey;
                assert_bar_colours(&what, &layout, &data, grey);
                // 4:4:4 chroma is averaged in pairs, RGB 5-6-5 widened: not the same bytes.
                let lossy = matches!(
                    format.samples(),
                    Samples::Split { h_sub: 1, .. } | Samples::Rgb565 { .. }
                );
                if !lossy {
                    let (direct, reference) = bars(direct_of(format), w, h, 0);
                    assert_eq!(
                        sample_rows(&layout, &data),
                        sample_rows(&direct, &reference),
                        "{what}: samples differ from {:?}'s",
                        direct_of(format)
                    );
                }
            }
        }
    }

    /// Too few bytes in any buffer, or the wrong number of buffers, is an unusable frame,
    /// never a read past the end.
    #[test]
    fn short_or_missing_planes_are_refused() {
        for format in raw_formats() {
            let (w, h) = (64, 32);
            let (buffers, strides) = driver_frame(format, w, h, 4);
            let layout = RawLayout::new(format, w as u32, h as u32, &strides, 0).expect("layout");
            for i in 0..buffers.len() {
                let mut views: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
                // The last row's padding is not needed; one sample less is.
                let need = layout
                    .driver
                    .planes()
                    .iter()
                    .filter(|p| p.buffer == i)
                    .map(Plane::end)
                    .max()
                    .expect("every buffer holds a plane");
                views[i] = &buffers[i][..need];
                assert!(layout.copy_out(&views).is_ok(), "{format:?} plane {i}");
                views[i] = &buffers[i][..need - 1];
                let e = layout.copy_out(&views).unwrap_err();
                assert!(e.contains("short frame"), "{format:?}: {e}");
                assert!(e.contains(&format!("needs {need}")), "{format:?}: {e}");
            }
            let views: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
            let e = layout.copy_out(&views[..views.len() - 1]).unwrap_err();
            assert!(e.contains("memory planes"), "{format:?}: {e}");
        }
    }

    /// The driver's numbers are checked: the plane count, and rows too short for the width,
    /// luma or chroma.
    #[test]
    fn driver_planes_are_checked() {
        let e = DriverFrame::new(PixelFormat::Nv12M, 64, 32, &[64]).unwrap_err();
        assert!(
            e.contains("in 1 memory planes; mjpegd reads it in 2"),
            "{e}"
        );
        let e = DriverFrame::new(PixelFormat::Yuv420M, 64, 32, &[64, 31, 32]).unwrap_err();
        assert!(e.contains("31 bytes per row of chroma"), "{e}");
        assert!(e.contains("needs 32"), "{e}");
        let e = DriverFrame::new(PixelFormat::Nv21, 64, 32, &[60]).unwrap_err();
        assert!(e.contains("60 bytes per row, but NV21 needs 64"), "{e}");
        // One-buffer YU12 at an odd width: the derived chroma stride must hold a chroma row.
        let e = DriverFrame::new(PixelFormat::Yuv420, 61, 32, &[61]).unwrap_err();
        assert!(e.contains("of chroma"), "{e}");
        assert!(DriverFrame::new(PixelFormat::Yuv420, 61, 32, &[62]).is_ok());
        // Zero means contiguous rows.
        let f = DriverFrame::new(PixelFormat::Yuv420M, 64, 32, &[0, 0, 0]).expect("ok");
        assert_eq!(
            f.planes().iter().map(|p| p.stride).collect::<Vec<_>>(),
            [64, 32, 32]
        );
        // One-buffer planes follow each other.
        let f = DriverFrame::new(PixelFormat::Yvu420, 64, 32, &[80]).expect("ok");
        assert_eq!(
            f.planes()
                .iter()
                .map(|p| (p.offset, p.stride))
                .collect::<Vec<_>>(),
            [(0, 80), (80 * 32, 40), (80 * 32 + 40 * 16, 40)]
        );
        let f = DriverFrame::new(PixelFormat::Nv24, 64, 32, &[64]).expect("ok");
        assert_eq!(
            f.planes()[1].stride,
            128,
            "4:4:4 pairs: twice the luma stride"
        );
    }

    /// Every format has its own code, parses by it, and has its planes and layout.
    #[test]
    fn format_table() {
        let mut codes: Vec<[u8; 4]> = PixelFormat::ALL.iter().map(|f| f.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), PixelFormat::ALL.len(), "codes are unique");
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
            if f == PixelFormat::Y16Be {
                continue;
            }
            let code = String::from_utf8_lossy(&f.code()).trim().to_lowercase();
            assert_eq!(PixelFormat::parse(&code), Some(f), "{code}");
        }
        assert_eq!(PixelFormat::parse("Y16_BE"), Some(PixelFormat::Y16Be));
        assert_eq!(fourcc_str(PixelFormat::Y16Be.fourcc()), "Y16.");
        assert_eq!(PixelFormat::parse("xbgr32"), Some(PixelFormat::Xbgr32));
        assert_eq!(PixelFormat::Xbgr32.encoded(), Encoded::Rgb24);
        assert_eq!(PixelFormat::Y12.encoded(), Encoded::Grey);
        assert_eq!(PixelFormat::parse("I420"), Some(PixelFormat::Yuv420));
        assert_eq!(PixelFormat::parse("nv21m"), Some(PixelFormat::Nv21M));
        assert_eq!(PixelFormat::parse("yuv420m"), Some(PixelFormat::Yuv420M));
        assert_eq!(PixelFormat::Yuv420M.planes(), 3);
        assert_eq!(PixelFormat::Nv61M.planes(), 2);
        assert_eq!(PixelFormat::Nv24.encoded(), Encoded::Yuyv);
        assert_eq!(PixelFormat::Yvu420.encoded(), Encoded::Nv12);
        assert_eq!(PixelFormat::Vyuy.encoded(), Encoded::Uyvy);
        assert!(
            PixelFormat::ALL
                .iter()
                .skip_while(|&&f| f != PixelFormat::Grey)
                .all(|f| f.encoded() == Encoded::Grey),
            "luma only after every colour format"
        );
    }
}

/// What the copy out of the driver's buffer costs per format, next to the encode it precedes.
/// A measurement for BENCHMARKS.md, not a check:
/// `cargo test --release -p mjpegd --lib -- --ignored --nocapture measure_copy_out`.
#[cfg(test)]
mod measure {
    use std::time::Instant;

    use super::super::format::PixelFormat;
    use super::RawLayout;

    #[test]
    #[ignore = "a measurement: prints milliseconds per 720p frame for BENCHMARKS.md"]
    fn measure_copy_out() {
        let (w, h) = (1280usize, 720usize);
        let formats = [
            "YUYV", "NV12", "YVYU", "NV21", "YU12", "NV16", "422P", "NV24", "NM12", "YM12", "YM24",
            "RGB3", "XR24", "RGBP", "GREY", "Y16",
        ];
        println!("| format | copy out ms | encode ms (q80) |");
        println!("| --- | ---: | ---: |");
        for name in formats {
            let format = PixelFormat::parse(name).expect("a format");
            let buffers: Vec<u32> = vec![0; format.planes()];
            let layout = RawLayout::new(format, w as u32, h as u32, &buffers, 0).expect("layout");
            // A picture with detail (a gradient in every plane), each plane in its buffer.
            let data: Vec<Vec<u8>> = (0..format.planes())
                .map(|i| {
                    let need = layout
                        .driver
                        .planes()
                        .iter()
                        .filter(|p| p.buffer == i)
                        .map(|p| p.offset + p.stride * p.rows)
                        .max()
                        .unwrap_or(0);
                    (0..need).map(|j| (j * 7 + j / 1280) as u8).collect()
                })
                .collect();
            let views: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let best = |f: &mut dyn FnMut()| {
                (0..3)
                    .map(|_| {
                        let t = Instant::now();
                        for _ in 0..50 {
                            f();
                        }
                        t.elapsed().as_secs_f64() * 1000.0 / 50.0
                    })
                    .fold(f64::MAX, f64::min)
            };
            let copy = best(&mut || {
                std::hint::black_box(layout.copy_out(&views).expect("copies"));
            });
            let frame = layout.copy_out(&views).expect("copies");
            let encode = best(&mut || {
                std::hint::black_box(layout.encode(&frame, 80));
            });
            println!("| {name} | {copy:.2} | {encode:.2} |");
        }
    }
}
