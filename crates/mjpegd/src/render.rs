//! A small RGB canvas with an 8x8 bitmap font, encoded to JPEG in-process.
//!
//! Used by the built-in test pattern, the built-in "1 2 3" images and the "no signal" frame.
//! Everything here is CPU work: call it from a blocking thread, not from an async task.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::EncodeError;
use bytes::Bytes;
use font8x8::{BASIC_FONTS, UnicodeFonts};

/// An RGB color.
pub type Rgb = [u8; 3];

/// Largest width or height we render; JPEG itself stops at 65535, memory stops us sooner.
pub const MAX_DIMENSION: u32 = 8192;

/// An RGB8 image being drawn.
pub struct Canvas {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Canvas {
    /// A canvas of the given size filled with `color`; sizes are clamped to `1..=MAX_DIMENSION`.
    pub fn new(width: u32, height: u32, color: Rgb) -> Canvas {
        let width = width.clamp(1, MAX_DIMENSION);
        let height = height.clamp(1, MAX_DIMENSION);
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for _ in 0..width as usize * height as usize {
            rgb.extend_from_slice(&color);
        }
        Canvas { width, height, rgb }
    }

    /// A canvas over existing RGB8 pixels; `None` if the buffer does not match the size.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Option<Canvas> {
        let ok = (1..=MAX_DIMENSION).contains(&width)
            && (1..=MAX_DIMENSION).contains(&height)
            && rgb.len() == width as usize * height as usize * 3;
        ok.then_some(Canvas { width, height, rgb })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Mutable access to one row of RGB bytes.
    pub fn row_mut(&mut self, y: u32) -> &mut [u8] {
        let stride = self.width as usize * 3;
        let start = y.min(self.height - 1) as usize * stride;
        &mut self.rgb[start..start + stride]
    }

    /// Fills a rectangle, clipped to the canvas.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: u32, h: u32, color: Rgb) {
        let x0 = x.clamp(0, i64::from(self.width)) as usize;
        let x1 = (x + i64::from(w)).clamp(0, i64::from(self.width)) as usize;
        let y0 = y.clamp(0, i64::from(self.height)) as u32;
        let y1 = (y + i64::from(h)).clamp(0, i64::from(self.height)) as u32;
        if x0 >= x1 {
            return;
        }
        for yy in y0..y1 {
            let row = self.row_mut(yy);
            for px in row[x0 * 3..x1 * 3].chunks_exact_mut(3) {
                px.copy_from_slice(&color);
            }
        }
    }

    /// Draws text with the 8x8 font magnified `scale` times; characters outside the font
    /// are drawn as `?`. Returns the width drawn in pixels.
    pub fn text(&mut self, x: i64, y: i64, scale: u32, color: Rgb, text: &str) -> u32 {
        let scale = scale.max(1);
        let mut cx = x;
        for ch in text.chars() {
            let glyph = BASIC_FONTS
                .get(ch)
                .or_else(|| BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits & (1 << gx) != 0 {
                        self.fill_rect(
                            cx + i64::from(gx * scale),
                            y + gy as i64 * i64::from(scale),
                            scale,
                            scale,
                            color,
                        );
                    }
                }
            }
            cx += i64::from(8 * scale);
        }
        (cx - x) as u32
    }

    /// Draws text centred horizontally at row `y`.
    pub fn text_centered(&mut self, y: i64, scale: u32, color: Rgb, text: &str) {
        let w = i64::from(text_width(text, scale));
        self.text((i64::from(self.width) - w) / 2, y, scale, color, text);
    }

    /// The pixels, packed RGB8 rows.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// The pixels to paint on, packed RGB8 rows.
    pub fn rgb_mut(&mut self) -> &mut [u8] {
        &mut self.rgb
    }

    /// Encodes the canvas as a baseline JPEG at `quality` (1-100), with this build's encoder.
    pub fn encode(&self, quality: u8) -> Result<Bytes, EncodeError> {
        crate::codec::encode_rgb(&self.rgb, self.width, self.height, quality)
    }
}

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 8 * scale.max(1)
}

/// Largest scale at which `text` fits in `width` pixels, capped at `max`.
pub fn fit_scale(text: &str, width: u32, max: u32) -> u32 {
    let per_scale = text_width(text, 1).max(1);
    (width / per_scale).clamp(1, max.max(1))
}

/// Formats a wall-clock time as `YYYY-MM-DD HH:MM:SS.mmm UTC` without a date library.
pub fn format_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = crate::civil::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Renders the "no signal" frame viewers see while a camera's source is not delivering.
pub fn no_signal(
    width: u32,
    height: u32,
    camera: &str,
    reason: &str,
    now: SystemTime,
    quality: u8,
) -> Result<Bytes, EncodeError> {
    let mut c = Canvas::new(width, height, [24, 24, 32]);
    let w = c.width();
    let h = i64::from(c.height());
    let big = fit_scale("NO SIGNAL", w * 3 / 4, 12);
    c.text_centered(h / 2 - i64::from(big * 8), big, [230, 60, 60], "NO SIGNAL");
    let small = fit_scale(&"x".repeat(40), w, 3);
    let line = i64::from(small * 12);
    c.text_centered(
        h / 2 + line,
        small,
        [230, 230, 230],
        &format!("camera \"{camera}\""),
    );
    // Long reasons (an ffmpeg error line) are cut to what fits on one line.
    let max_chars = (w / (8 * small)).saturating_sub(2) as usize;
    let reason: String = reason.chars().take(max_chars).collect();
    c.text_centered(h / 2 + 2 * line, small, [200, 200, 120], &reason);
    c.text_centered(h / 2 + 3 * line, small, [160, 160, 160], &format_utc(now));
    c.encode(quality)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_dates() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        assert_eq!(format_utc(t), "2025-11-24 16:00:00.123 UTC");
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01 00:00:00.000 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&format_utc(leap)[..10], "2000-02-29");
    }

    #[test]
    fn text_clips_at_edges() {
        let mut c = Canvas::new(20, 10, [0, 0, 0]);
        c.text(-5, -3, 2, [255, 255, 255], "W\u{1F600}");
        c.fill_rect(15, 5, 100, 100, [1, 2, 3]);
        assert_eq!(&c.row_mut(9)[19 * 3..], &[1, 2, 3]);
    }

    #[test]
    fn encodes_decodable_jpeg() {
        let jpeg = no_signal(
            320,
            240,
            "porch",
            "connection refused",
            SystemTime::now(),
            80,
        )
        .expect("encode");
        assert_eq!(crate::jpeg::dimensions(&jpeg), Ok((320, 240)));
        assert!(crate::jpeg::looks_complete(&jpeg));
    }
}
