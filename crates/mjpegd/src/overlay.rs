//! Text drawn into a camera's frames: a clock, the camera's name, its measured rate.
//!
//! An overlay is parsed once from the config ([`Overlay::new`]); for each frame the capture
//! loop formats its text ([`Overlay::painter`], on the capture task: a few string pushes) and
//! the encoder pool paints it into the pixels before they are encoded ([`Painter::paint`]).
//! Painting works on any pixel layout through [`Surface`]: RGB canvases, the transform's
//! pixels, and raw V4L2 frames (YUYV, NV12, ...) before their encode, so a frame mjpegd encodes
//! anyway costs nothing more; a camera-compressed JPEG costs a decode and an encode.
//!
//! Times are the frame's capture time in the server's local time zone (`TZ`, else
//! `/etc/localtime`), as every camera's own overlay shows it.

use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use font8x8::{BASIC_FONTS, LATIN_FONTS, UnicodeFonts};

/// Most texts one camera draws.
pub const MAX_TEXTS: usize = 4;
/// Longest template, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 256;
/// Most lines in one text (`\n` separates them).
pub const MAX_LINES: usize = 4;
/// Accepted text heights in pixels (the 8x8 font magnified 1 to 16 times).
pub const SIZE_RANGE: (u32, u32) = (8, 128);
/// The strftime conversions a template may use.
pub const STRFTIME: &str = "%Y %y %m %d %e %H %I %M %S %p %j %a %A %b %B %z %Z %s %F %T %D %R %%";

/// Where a text sits in the frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Position {
    /// The top left corner.
    #[default]
    TopLeft,
    /// The top edge, centred.
    Top,
    /// The top right corner.
    TopRight,
    /// The bottom left corner.
    BottomLeft,
    /// The bottom edge, centred.
    Bottom,
    /// The bottom right corner.
    BottomRight,
}

impl Position {
    /// Every position with its config name.
    pub const NAMES: [(&'static str, Position); 6] = [
        ("top-left", Position::TopLeft),
        ("top", Position::Top),
        ("top-right", Position::TopRight),
        ("bottom-left", Position::BottomLeft),
        ("bottom", Position::Bottom),
        ("bottom-right", Position::BottomRight),
    ];
}

impl std::str::FromStr for Position {
    type Err = OverlayError;
    fn from_str(s: &str) -> Result<Position, OverlayError> {
        Position::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|&(_, p)| p)
            .ok_or_else(|| OverlayError::Position(s.to_owned()))
    }
}

/// Why an overlay setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayError {
    /// A `%` conversion we do not format.
    #[error("unknown time field %{0} (use one of: {STRFTIME})")]
    Strftime(char),
    /// The template ends in a lone `%`.
    #[error("the text ends with a lone % (write %% for a percent sign)")]
    TrailingPercent,
    /// A `{field}` we do not know.
    #[error("unknown field {{{0}}} (use {{camera}} or {{fps}}; write {{{{ for a brace)")]
    Field(String),
    /// A `{` without its `}`.
    #[error("a {{ is not closed (write {{{{ for a brace)")]
    Unclosed,
    /// A lone `}`.
    #[error("a lone }} (write }}}} for a brace)")]
    LoneBrace,
    /// Too long, too many lines, or empty.
    #[error("{0}")]
    Shape(String),
    /// Not one of [`Position::NAMES`].
    #[error(
        "position {0:?} is not one of top-left, top, top-right, bottom-left, bottom, bottom-right"
    )]
    Position(String),
    /// Outside [`SIZE_RANGE`].
    #[error("size {0} is outside {lo}..={hi} pixels", lo = SIZE_RANGE.0, hi = SIZE_RANGE.1)]
    Size(u32),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    /// A strftime conversion character (validated against [`STRFTIME`]).
    Time(char),
    Camera,
    Fps,
}

/// One text: what it says, where, how large.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pieces: Vec<Piece>,
    /// Where it is drawn.
    pub position: Position,
    /// Height of a line in pixels; `None`: about 1/36 of the frame's height.
    pub size: Option<u32>,
    template: String,
}

impl Text {
    /// Parses `template` (strftime `%` fields, `{camera}`, `{fps}`, `\n` between lines).
    pub fn new(
        template: &str,
        position: Position,
        size: Option<u32>,
    ) -> Result<Text, OverlayError> {
        let chars = template.chars().count();
        if chars == 0 || chars > MAX_TEMPLATE_CHARS {
            return Err(OverlayError::Shape(format!(
                "text must be 1 to {MAX_TEMPLATE_CHARS} characters (got {chars})"
            )));
        }
        let lines = template.split('\n').count();
        if lines > MAX_LINES {
            return Err(OverlayError::Shape(format!(
                "text has {lines} lines; at most {MAX_LINES}"
            )));
        }
        if let Some(s) = size
            && !(SIZE_RANGE.0..=SIZE_RANGE.1).contains(&s)
        {
            return Err(OverlayError::Size(s));
        }
        Ok(Text {
            pieces: parse(template)?,
            position,
            size,
            template: template.to_owned(),
        })
    }

    /// The template as configured.
    pub fn template(&self) -> &str {
        &self.template
    }
}

fn parse(template: &str) -> Result<Vec<Piece>, OverlayError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = template.chars().peekable();
    let flush = |literal: &mut String, pieces: &mut Vec<Piece>| {
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(literal)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%') => literal.push('%'),
                Some(f) if STRFTIME.contains(&format!("%{f}")) => {
                    flush(&mut literal, &mut pieces);
                    pieces.push(Piece::Time(f));
                }
                Some(f) => return Err(OverlayError::Strftime(f)),
                None => return Err(OverlayError::TrailingPercent),
            },
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '}' => return Err(OverlayError::LoneBrace),
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) if name.len() < 32 => name.push(c),
                        _ => return Err(OverlayError::Unclosed),
                    }
                }
                flush(&mut literal, &mut pieces);
                pieces.push(match name.as_str() {
                    "camera" => Piece::Camera,
                    "fps" => Piece::Fps,
                    _ => return Err(OverlayError::Field(name)),
                });
            }
            c => literal.push(c),
        }
    }
    flush(&mut literal, &mut pieces);
    Ok(pieces)
}

/// A camera's texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    texts: Vec<Text>,
}

impl Overlay {
    /// An overlay of 1 to [`MAX_TEXTS`] texts.
    pub fn new(texts: Vec<Text>) -> Result<Overlay, OverlayError> {
        if texts.is_empty() || texts.len() > MAX_TEXTS {
            return Err(OverlayError::Shape(format!(
                "an overlay has 1 to {MAX_TEXTS} texts (got {})",
                texts.len()
            )));
        }
        Ok(Overlay { texts })
    }

    /// The texts, in drawing order.
    pub fn texts(&self) -> &[Text] {
        &self.texts
    }

    /// This frame's texts, formatted: `camera` is the camera's name, `fps` its measured rate,
    /// `time` the frame's capture time.
    pub fn painter(&self, camera: &str, fps: f64, time: SystemTime) -> Painter {
        let local = LocalTime::of(time);
        let texts = self
            .texts
            .iter()
            .map(|t| {
                let mut s = String::new();
                for p in &t.pieces {
                    match p {
                        Piece::Literal(l) => s.push_str(l),
                        Piece::Time(f) => local.format(*f, &mut s),
                        Piece::Camera => s.push_str(camera),
                        Piece::Fps => {
                            let _ = write!(s, "{fps:.1}");
                        }
                    }
                }
                (s, t.position, t.size)
            })
            .collect();
        Painter { texts }
    }
}

impl fmt::Display for Overlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.texts.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{:?}", t.template)?;
        }
        Ok(())
    }
}

/// Pixels text can be painted on. Rectangles passed in are inside the surface.
pub trait Surface {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Darkens a rectangle (the box behind a text, so it reads on any scene).
    fn shade(&mut self, x: u32, y: u32, w: u32, h: u32);
    /// Paints a rectangle white (the glyphs).
    fn ink(&mut self, x: u32, y: u32, w: u32, h: u32);
}

/// One frame's formatted texts, ready to paint on any [`Surface`].
#[derive(Debug, Clone)]
pub struct Painter {
    texts: Vec<(String, Position, Option<u32>)>,
}

impl Painter {
    /// The formatted texts (for tests and the state page).
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.texts.iter().map(|(s, _, _)| s.as_str())
    }

    /// The rectangles the texts' boxes cover on a `width`x`height` frame, clipped to it.
    pub fn boxes(&self, width: u32, height: u32) -> Vec<(u32, u32, u32, u32)> {
        self.texts
            .iter()
            .filter_map(|(text, pos, size)| {
                layout(text, *pos, *size, width, height).map(|l| l.bbox)
            })
            .collect()
    }

    /// Paints every text: a darkened box, then the glyphs.
    pub fn paint(&self, surface: &mut dyn Surface) {
        let (width, height) = surface.size();
        for (text, pos, size) in &self.texts {
            let Some(l) = layout(text, *pos, *size, width, height) else {
                continue;
            };
            let (bx, by, bw, bh) = l.bbox;
            surface.shade(bx, by, bw, bh);
            for (i, line) in text.split('\n').enumerate() {
                let y0 = l.text_y + i as i64 * l.line_h;
                let line_w = i64::from(glyphs_width(line, l.scale));
                let x0 = match pos {
                    Position::TopLeft | Position::BottomLeft => l.text_x,
                    Position::Top | Position::Bottom => l.text_x + (l.text_w - line_w) / 2,
                    Position::TopRight | Position::BottomRight => l.text_x + l.text_w - line_w,
                };
                for (ci, ch) in line.chars().enumerate() {
                    let glyph = glyph(ch);
                    let cx = x0 + ci as i64 * 8 * i64::from(l.scale);
                    for (gy, bits) in glyph.iter().enumerate() {
                        for gx in 0..8u32 {
                            if bits & (1 << gx) != 0 {
                                let px = cx + i64::from(gx * l.scale);
                                let py = y0 + gy as i64 * i64::from(l.scale);
                                if let Some((x, y, w, h)) =
                                    clip(px, py, l.scale, l.scale, width, height)
                                {
                                    surface.ink(x, y, w, h);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn glyph(ch: char) -> [u8; 8] {
    BASIC_FONTS
        .get(ch)
        .or_else(|| LATIN_FONTS.get(ch))
        .or_else(|| BASIC_FONTS.get('?'))
        .unwrap_or([0; 8])
}

fn glyphs_width(line: &str, scale: u32) -> u32 {
    (line.chars().count() as u32).saturating_mul(8 * scale)
}

struct Layout {
    /// The box, clipped to the frame.
    bbox: (u32, u32, u32, u32),
    text_x: i64,
    text_y: i64,
    text_w: i64,
    line_h: i64,
    scale: u32,
}

/// Places `text` on a `width`x`height` frame; `None` when nothing of it is visible.
fn layout(text: &str, pos: Position, size: Option<u32>, width: u32, height: u32) -> Option<Layout> {
    let scale = match size {
        Some(s) => (s / 8).max(1),
        None => (height / 288).max(1),
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let text_w = lines
        .iter()
        .map(|l| glyphs_width(l, scale))
        .max()
        .unwrap_or(0);
    let gap = scale * 2;
    let line_h = 8 * scale + gap;
    let text_h = line_h * lines.len() as u32 - gap;
    let pad = scale * 2;
    let margin = scale * 4;
    let (bw, bh) = (text_w + 2 * pad, text_h + 2 * pad);
    let (w, h) = (i64::from(width), i64::from(height));
    let (bw64, bh64, m) = (i64::from(bw), i64::from(bh), i64::from(margin));
    let bx = match pos {
        Position::TopLeft | Position::BottomLeft => m,
        Position::Top | Position::Bottom => (w - bw64) / 2,
        Position::TopRight | Position::BottomRight => w - m - bw64,
    };
    let by = match pos {
        Position::TopLeft | Position::Top | Position::TopRight => m,
        _ => h - m - bh64,
    };
    let bbox = clip(bx, by, bw, bh, width, height)?;
    Some(Layout {
        bbox,
        text_x: bx + i64::from(pad),
        text_y: by + i64::from(pad),
        text_w: i64::from(text_w),
        line_h: i64::from(line_h),
        scale,
    })
}

/// The part of a rectangle inside a `width`x`height` frame.
fn clip(x: i64, y: i64, w: u32, h: u32, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    let x0 = x.clamp(0, i64::from(width));
    let y0 = y.clamp(0, i64::from(height));
    let x1 = (x + i64::from(w)).clamp(0, i64::from(width));
    let y1 = (y + i64::from(h)).clamp(0, i64::from(height));
    (x1 > x0 && y1 > y0).then(|| (x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32))
}

/// Darkens an 8-bit sample (RGB or luma) to about a third, the box behind a text.
pub fn shade_sample(v: u8) -> u8 {
    (u16::from(v) * 3 / 8) as u8
}

/// Pulls an 8-bit chroma sample most of the way to neutral, so the box is grey, not tinted.
pub fn shade_chroma(v: u8) -> u8 {
    (128 + (i16::from(v) - 128) / 4) as u8
}

/// Packed RGB8 rows as a [`Surface`].
pub struct RgbSurface<'a> {
    rgb: &'a mut [u8],
    width: u32,
    height: u32,
}

impl<'a> RgbSurface<'a> {
    /// `rgb` holds `width * height` pixels (a shorter buffer is painted where it reaches).
    pub fn new(rgb: &'a mut [u8], width: u32, height: u32) -> RgbSurface<'a> {
        RgbSurface { rgb, width, height }
    }

    fn each(&mut self, x: u32, y: u32, w: u32, h: u32, f: impl Fn(u8) -> u8) {
        let stride = self.width as usize * 3;
        for yy in y as usize..(y + h) as usize {
            let start = yy * stride + x as usize * 3;
            let end = (start + w as usize * 3).min(self.rgb.len());
            if let Some(samples) = self.rgb.get_mut(start..end) {
                samples.iter_mut().for_each(|v| *v = f(*v));
            }
        }
    }
}

impl Surface for RgbSurface<'_> {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn shade(&mut self, x: u32, y: u32, w: u32, h: u32) {
        self.each(x, y, w, h, shade_sample);
    }
    fn ink(&mut self, x: u32, y: u32, w: u32, h: u32) {
        self.each(x, y, w, h, |_| 255);
    }
}

impl Surface for crate::render::Canvas {
    fn size(&self) -> (u32, u32) {
        (self.width(), self.height())
    }
    fn shade(&mut self, x: u32, y: u32, w: u32, h: u32) {
        let (width, height) = (self.width(), self.height());
        RgbSurface::new(self.rgb_mut(), width, height).shade(x, y, w, h);
    }
    fn ink(&mut self, x: u32, y: u32, w: u32, h: u32) {
        let (width, height) = (self.width(), self.height());
        RgbSurface::new(self.rgb_mut(), width, height).ink(x, y, w, h);
    }
}

/// A wall-clock time broken down in the local time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LocalTime {
    unix: i64,
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Sunday.
    weekday: u32,
    /// 0-based day of the year.
    yearday: u32,
    /// Seconds east of UTC.
    offset: i64,
    /// The zone's abbreviation (`CET`, `UTC`), at most 15 bytes.
    zone: [u8; 16],
    zone_len: usize,
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl LocalTime {
    /// `t` in the local zone; UTC when the C library cannot convert it.
    fn of(t: SystemTime) -> LocalTime {
        let unix = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(0),
        };
        localtime(unix).unwrap_or_else(|| LocalTime::utc(unix))
    }

    fn utc(unix: i64) -> LocalTime {
        let (days, rem) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
        let (year, month, day) = crate::civil::civil_from_days(days);
        let jan1 = crate::civil::days_from_civil(year, 1, 1);
        let mut zone = [0; 16];
        zone[..3].copy_from_slice(b"UTC");
        LocalTime {
            unix,
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            weekday: (days + 4).rem_euclid(7) as u32,
            yearday: (days - jan1) as u32,
            offset: 0,
            zone,
            zone_len: 3,
        }
    }

    /// Appends conversion `f` (one of [`STRFTIME`]) to `out`.
    fn format(&self, f: char, out: &mut String) {
        let hour12 = match self.hour % 12 {
            0 => 12,
            h => h,
        };
        let _ = match f {
            'Y' => write!(out, "{:04}", self.year),
            'y' => write!(out, "{:02}", self.year.rem_euclid(100)),
            'm' => write!(out, "{:02}", self.month),
            'd' => write!(out, "{:02}", self.day),
            'e' => write!(out, "{:2}", self.day),
            'H' => write!(out, "{:02}", self.hour),
            'I' => write!(out, "{hour12:02}"),
            'M' => write!(out, "{:02}", self.minute),
            'S' => write!(out, "{:02}", self.second),
            'p' => write!(out, "{}", if self.hour < 12 { "AM" } else { "PM" }),
            'j' => write!(out, "{:03}", self.yearday + 1),
            'a' => write!(out, "{}", &WEEKDAYS[self.weekday as usize % 7][..3]),
            'A' => write!(out, "{}", WEEKDAYS[self.weekday as usize % 7]),
            'b' => write!(out, "{}", &MONTHS[(self.month as usize + 11) % 12][..3]),
            'B' => write!(out, "{}", MONTHS[(self.month as usize + 11) % 12]),
            'z' => {
                let sign = if self.offset < 0 { '-' } else { '+' };
                let o = self.offset.unsigned_abs();
                write!(out, "{sign}{:02}{:02}", o / 3600, o / 60 % 60)
            }
            'Z' => write!(
                out,
                "{}",
                std::str::from_utf8(&self.zone[..self.zone_len]).unwrap_or("")
            ),
            's' => write!(out, "{}", self.unix),
            'F' => write!(out, "{:04}-{:02}-{:02}", self.year, self.month, self.day),
            'T' => write!(
                out,
                "{:02}:{:02}:{:02}",
                self.hour, self.minute, self.second
            ),
            'R' => write!(out, "{:02}:{:02}", self.hour, self.minute),
            'D' => write!(
                out,
                "{:02}/{:02}/{:02}",
                self.month,
                self.day,
                self.year.rem_euclid(100)
            ),
            _ => Ok(()),
        };
    }
}

/// The C library's `localtime_r`: std has no local time, and the zone rules (TZ,
/// /etc/localtime, daylight saving) are the system's to know.
#[allow(unsafe_code)]
fn localtime(unix: i64) -> Option<LocalTime> {
    let t: libc::time_t = unix;
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for the
    // call. glibc's localtime_r reads the zone once (tzset) and is thread-safe after that.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return None;
    }
    let mut zone = [0u8; 16];
    let mut zone_len = 0;
    if !tm.tm_zone.is_null() {
        // SAFETY: tm_zone points at a NUL-terminated abbreviation in the C library's static
        // zone data, which lives as long as the process.
        let abbr = unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }.to_bytes();
        zone_len = abbr.len().min(15);
        zone[..zone_len].copy_from_slice(&abbr[..zone_len]);
    }
    let field = |v: libc::c_int| u32::try_from(v).ok();
    Some(LocalTime {
        unix,
        year: i64::from(tm.tm_year) + 1900,
        month: field(tm.tm_mon)? + 1,
        day: field(tm.tm_mday)?,
        hour: field(tm.tm_hour)?,
        minute: field(tm.tm_min)?,
        second: field(tm.tm_sec)?.min(59),
        weekday: field(tm.tm_wday)?,
        yearday: field(tm.tm_yday)?,
        offset: tm.tm_gmtoff,
        zone,
        zone_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Canvas;
    use std::time::Duration;

    fn text(t: &str) -> Text {
        Text::new(t, Position::TopLeft, None).expect("a valid template")
    }

    #[test]
    fn templates_name_what_is_wrong() {
        let e = |t: &str| {
            Text::new(t, Position::TopLeft, None)
                .unwrap_err()
                .to_string()
        };
        assert!(e("%Q").contains("unknown time field %Q"), "{}", e("%Q"));
        assert!(e("50%").contains("lone %"));
        assert!(e("{cam}").contains("unknown field {cam}"), "{}", e("{cam}"));
        assert!(e("{camera").contains("not closed"));
        assert!(e("a } b").contains("lone }"));
        assert!(e("").contains("1 to 256"));
        assert!(e(&"x".repeat(257)).contains("got 257"));
        assert!(e("a\nb\nc\nd\ne").contains("5 lines"));
        assert_eq!(
            Text::new("x", Position::TopLeft, Some(4)).unwrap_err(),
            OverlayError::Size(4)
        );
        assert!("middle".parse::<Position>().is_err());
        assert_eq!("bottom-right".parse(), Ok(Position::BottomRight));
        assert!(Overlay::new(vec![]).is_err());
        assert!(Overlay::new(vec![text("a"); MAX_TEXTS + 1]).is_err());
    }

    #[test]
    fn fields_are_formatted() {
        // 2025-03-04 05:06:07 UTC, a Tuesday, day 63.
        let t = UNIX_EPOCH + Duration::from_secs(1_741_064_767);
        let u = LocalTime::utc(1_741_064_767);
        let mut s = String::new();
        for f in "YymdeHIMSpjaAbBzZsFTRD".chars() {
            u.format(f, &mut s);
            s.push('|');
        }
        assert_eq!(
            s,
            "2025|25|03|04| 4|05|05|06|07|AM|063|Tue|Tuesday|Mar|March|+0000|UTC|1741064767|\
             2025-03-04|05:06:07|05:06|03/04/25|"
        );
        let o = Overlay::new(vec![text("{camera} {fps} fps 100%% {{x}}")]).unwrap();
        let p = o.painter("porch", 29.97, t);
        assert_eq!(p.lines().collect::<Vec<_>>(), ["porch 30.0 fps 100% {x}"]);
        // The local zone (whatever this machine's is) gives the same instant back.
        let local = LocalTime::of(t);
        let back = crate::civil::days_from_civil(local.year, local.month, local.day) * 86_400
            + i64::from(local.hour * 3600 + local.minute * 60 + local.second)
            - local.offset;
        assert_eq!(back, 1_741_064_767);
    }

    #[test]
    fn texts_land_in_their_corner_on_a_shaded_box() {
        let o = Overlay::new(vec![
            Text::new("##", Position::BottomRight, Some(16)).unwrap(),
        ])
        .unwrap();
        let p = o.painter("cam", 0.0, SystemTime::now());
        let mut c = Canvas::new(320, 240, [128, 128, 128]);
        p.paint(&mut c);
        let boxes = p.boxes(320, 240);
        assert_eq!(boxes.len(), 1);
        let (bx, by, bw, bh) = boxes[0];
        // Scale 2: two 16 px glyphs, 4 px padding, 8 px margin from the bottom right corner.
        assert_eq!((bx, by, bw, bh), (320 - 8 - 40, 240 - 8 - 24, 40, 24));
        let rgb = c.rgb();
        let at = |x: u32, y: u32| rgb[(y as usize * 320 + x as usize) * 3];
        assert_eq!(at(bx, by), shade_sample(128), "the box is shaded");
        assert_eq!(at(10, 10), 128, "outside the box is untouched");
        let inked = (by..by + bh)
            .flat_map(|y| (bx..bx + bw).map(move |x| (x, y)))
            .filter(|&(x, y)| at(x, y) == 255)
            .count();
        // '#' is 8 pixels set in each of rows 2-3 of the 8x8 glyph and more below: at scale 2
        // each set bit is 4 pixels.
        assert!(inked > 100, "glyph pixels painted: {inked}");
    }

    #[test]
    fn a_text_wider_than_the_frame_is_clipped() {
        let o = Overlay::new(vec![text(&"W".repeat(200))]).unwrap();
        let p = o.painter("cam", 0.0, SystemTime::now());
        let mut c = Canvas::new(64, 32, [0, 0, 0]);
        p.paint(&mut c);
        assert_eq!(p.boxes(64, 32), vec![(4, 4, 60, 12)]);
        // A frame smaller than the margin shows nothing and paints nothing.
        let mut tiny = Canvas::new(3, 3, [7, 7, 7]);
        p.paint(&mut tiny);
        assert!(tiny.rgb().iter().all(|&v| v == 7));
    }
}
