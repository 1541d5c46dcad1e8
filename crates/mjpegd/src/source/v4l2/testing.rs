//! Test frames shared by the format, gather and encoder tests: colour bars written in a
//! format, and the check that a frame encodes to them.

use super::format::PixelFormat;
use super::gather::RawLayout;
use super::sys;

/// Decodes a JPEG: its pixels, width and height.
pub(super) fn decode(jpeg: &[u8]) -> (Vec<u8>, usize, usize) {
    let mut d = zune_jpeg::JpegDecoder::new(jpeg);
    let px = d.decode().expect("decodes");
    let info = d.info().expect("info");
    (px, usize::from(info.width), usize::from(info.height))
}

/// BT.601 studio-range YCbCr of an RGB colour, as a camera would send it.
pub(super) fn studio_yuv(rgb: [u8; 3]) -> [u8; 3] {
    let [r, g, b] = rgb.map(f64::from);
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    [y, cb, cr].map(|v| v.round() as u8)
}

/// The colours of the test frames' four vertical bars, left to right.
pub(super) const COLOURS: [[u8; 3]; 4] =
    [[200, 30, 40], [20, 180, 60], [30, 60, 210], [240, 240, 240]];

/// A frame of four vertical bars of `COLOURS`, in `format`, with `pad` bytes per row.
pub(super) fn bars(format: PixelFormat, w: usize, h: usize, pad: usize) -> (RawLayout, Vec<u8>) {
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

/// `data` in `layout`, encoded and decoded, shows the four bars of `COLOURS` (their luma
/// when `grey`) at the top, middle and bottom.
pub(super) fn assert_bar_colours(what: &str, layout: &RawLayout, data: &[u8], grey: bool) {
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
