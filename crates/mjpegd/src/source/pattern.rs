//! The built-in test pattern: the default camera, so `cargo run` shows live video anywhere.
//!
//! Scrolling colour bars, a bouncing box, the frame counter and the wall-clock time; every frame
//! differs. Rendering and encoding are a job for the encoder pool (about 5 ms for 720p with
//! SIMD), so that several frames are made at once on a machine with cores to spare.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::time::{Interval, MissedTickBehavior};

use super::{BoxFuture, Captured, Opener, Params, Source, SourceError, blocking, interval_of};
use crate::frame::Image;
use crate::overlay::Painter;
use crate::render::{Canvas, fit_scale, format_utc};

/// Opens the test pattern.
#[derive(Debug)]
pub struct PatternOpener {
    params: Params,
}

impl PatternOpener {
    /// A test pattern of the given size, rate and quality.
    pub fn new(params: Params) -> PatternOpener {
        PatternOpener { params }
    }
}

impl Opener for PatternOpener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        let params = self.params;
        Box::pin(async move {
            let mut ticks = tokio::time::interval(interval_of(params.fps));
            // A late frame is skipped, not caught up with a burst.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let source: Box<dyn Source> = Box::new(Pattern {
                params,
                ticks,
                counter: 0,
                canvases: Arc::default(),
            });
            Ok(source)
        })
    }

    fn describe(&self) -> String {
        let p = &self.params;
        format!("testpattern {}x{}@{}", p.width, p.height, p.fps)
    }
}

struct Pattern {
    params: Params,
    ticks: Interval,
    counter: u64,
    /// Canvases to draw on, reused between frames to avoid a 2.7 MB allocation per 720p
    /// frame; one per frame being made at once.
    canvases: Arc<Mutex<Vec<Canvas>>>,
}

/// Most canvases kept for reuse: more than frames the encoder pool ever has in flight for one
/// camera on the machines mjpegd runs on; past it a canvas is freed after use.
const MAX_SPARE_CANVASES: usize = 8;

impl Pattern {
    /// Waits for the next tick; returns the job that renders and encodes that frame.
    async fn next_job(
        &mut self,
    ) -> impl FnOnce(Option<&Painter>) -> Result<Image, SourceError> + Send + 'static {
        self.ticks.tick().await;
        self.counter += 1;
        let (n, p, now) = (self.counter, self.params, SystemTime::now());
        let canvases = Arc::clone(&self.canvases);
        move |painter: Option<&Painter>| {
            // Poison recovered: the list only ever gains or loses whole canvases.
            let spare = canvases
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut canvas = spare.unwrap_or_else(|| Canvas::new(p.width, p.height, [0, 0, 0]));
            draw(&mut canvas, n, now);
            if let Some(p) = painter {
                p.paint(&mut canvas);
            }
            let jpeg = canvas.encode(p.quality);
            let (width, height) = (canvas.width(), canvas.height());
            let mut spares = canvases.lock().unwrap_or_else(PoisonError::into_inner);
            if spares.len() < MAX_SPARE_CANVASES {
                spares.push(canvas);
            }
            let jpeg = jpeg.map_err(|e| SourceError::new(format!("test pattern: {e}")))?;
            Ok(Image {
                jpeg,
                width,
                height,
            })
        }
    }
}

impl Source for Pattern {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            let job = self.next_job().await;
            blocking("test pattern render", move || job(None)).await?
        })
    }

    fn next_capture(&mut self) -> BoxFuture<'_, Result<Captured, SourceError>> {
        Box::pin(async move { Ok(Captured::Encode(Box::new(self.next_job().await))) })
    }
}

const BARS: [[u8; 3]; 8] = [
    [235, 235, 235],
    [235, 235, 16],
    [16, 235, 235],
    [16, 235, 16],
    [235, 16, 235],
    [235, 16, 16],
    [16, 16, 235],
    [16, 16, 16],
];

/// Draws frame `n` of the pattern.
pub fn draw(c: &mut Canvas, n: u64, now: SystemTime) {
    let (w, h) = (c.width(), c.height());
    // One row of bars, twice as wide as the frame, so each scrolled row is one copy.
    let bar_w = (w / 8).max(1);
    let wide: Vec<u8> = (0..2 * w)
        .flat_map(|x| BARS[(x / bar_w) as usize % BARS.len()])
        .collect();
    let shift = ((n * 4) % u64::from(8 * bar_w)) as usize % w as usize;
    let bars_h = h * 2 / 3;
    for y in 0..bars_h {
        let row = c.row_mut(y);
        let len = row.len();
        row.copy_from_slice(&wide[shift * 3..shift * 3 + len]);
    }
    // A grey ramp moving the other way below the bars.
    for y in bars_h..h {
        let row = c.row_mut(y);
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let v = ((x as u64 + n * 2) * 255 / u64::from(w) % 256) as u8;
            px.copy_from_slice(&[v, v, v]);
        }
    }
    // A bouncing box makes motion obvious at any size.
    let side = (h / 6).max(2);
    let span_x = u64::from(w.saturating_sub(side).max(1));
    let span_y = u64::from(h.saturating_sub(side).max(1));
    let bx = bounce(n * 7, span_x);
    let by = bounce(n * 5, span_y);
    c.fill_rect(bx as i64, by as i64, side, side, [255, 128, 0]);

    let lines = [
        "mjpegd test pattern".to_string(),
        format!("frame {n:08}"),
        format_utc(now),
    ];
    let scale = fit_scale("2026-01-01 00:00:00.000 UTC__", w, 4);
    let line_h = 10 * scale;
    let box_h = line_h * lines.len() as u32 + 2 * scale;
    c.fill_rect(0, i64::from(h - box_h.min(h)), w, box_h, [0, 0, 0]);
    for (i, line) in lines.iter().enumerate() {
        let y = i64::from(h - box_h.min(h)) + i64::from(scale + i as u32 * line_h);
        c.text(i64::from(scale * 2), y, scale, [255, 255, 255], line);
    }
}

fn bounce(t: u64, span: u64) -> u64 {
    let m = t % (2 * span);
    if m < span { m } else { 2 * span - m }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_differ_and_have_the_requested_size() {
        let opener = PatternOpener::new(Params {
            width: 320,
            height: 240,
            fps: 200.0,
            quality: 70,
        });
        let mut src = opener.open().await.expect("open");
        let a = src.next_frame().await.expect("frame");
        let b = src.next_frame().await.expect("frame");
        assert_ne!(a.jpeg, b.jpeg);
        assert_eq!((a.width, a.height), (320, 240));
        assert_eq!(crate::jpeg::dimensions(&b.jpeg), Ok((320, 240)));
    }

    #[test]
    fn draws_tiny_sizes_without_panicking() {
        for (w, h) in [(1, 1), (2, 3), (17, 9), (64, 48)] {
            let mut c = Canvas::new(w, h, [0, 0, 0]);
            draw(&mut c, 12345, SystemTime::now());
            assert!(c.encode(50).is_ok());
        }
    }
}
