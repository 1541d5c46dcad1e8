//! Mosaics: several cameras composed into one picture, served as a camera of its own.
//!
//! A TV, a picture frame or VLC takes one URL; `/mosaic?cameras=a,b,c&width=1280` gives them
//! every camera in a grid. A mosaic is a camera that is not listed with the others: its source
//! watches its input cameras (so they capture while the mosaic is watched, and stop when it is
//! not) and composes their latest frames on the encoder pool at the mosaic's rate. Everything a
//! camera has comes with it: one composition shared by all its viewers, the latest-frame rule,
//! HTTP/2, per-request sizes, snapshots, and capture stopped when nobody watches. An input
//! that is offline shows its own no-signal frame in its tile.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::frame::{Frame, Image};
use crate::hub::{Camera, CameraConfig, Hub, Subscription};
use crate::overlay::Painter;
use crate::render::Canvas;
use crate::source::{BoxFuture, Captured, Opener, Source, SourceError};

/// Most distinct mosaics (camera list, width, rate) kept at once; past it, one nobody watches
/// is dropped, and when all are watched a new one is refused.
pub const MAX_MOSAICS: usize = 16;
/// Most cameras in one mosaic.
pub const MAX_TILES: usize = crate::hub::MAX_CAMERAS;
/// The mosaic's width when the request names none.
pub const DEFAULT_WIDTH: u32 = 1280;
/// Widths a request may ask for.
pub const WIDTH_RANGE: std::ops::RangeInclusive<u32> = 160..=3840;
/// Frames per second composed when the request names no rate: enough for a wall of cameras,
/// and each composed frame decodes every input that changed.
pub const DEFAULT_FPS: f64 = 10.0;
/// Rates a request may ask for.
pub const FPS_RANGE: std::ops::RangeInclusive<f64> = 0.2..=30.0;
/// JPEG quality of the composed frames.
const QUALITY: u8 = 80;
/// A frame is composed at least this often even when no input changed: viewers and the
/// capture's source timeout both expect a live source.
const REFRESH: Duration = Duration::from_secs(1);
/// Tile background, and the name plates' colours.
const BACKGROUND: [u8; 3] = [16, 16, 20];
const PLATE: [u8; 3] = [0, 0, 0];
const PLATE_TEXT: [u8; 3] = [255, 255, 255];

/// A mosaic request that cannot be served; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MosaicError {
    /// No camera to show.
    #[error("a mosaic needs at least one camera: give ?cameras=NAME,NAME")]
    Empty,
    /// Too many cameras.
    #[error("a mosaic shows at most {MAX_TILES} cameras, {0} were asked for")]
    TooManyTiles(usize),
    /// A width outside [`WIDTH_RANGE`].
    #[error("width {0} is outside {lo}..={hi} pixels", lo = WIDTH_RANGE.start(), hi = WIDTH_RANGE.end())]
    Width(u32),
    /// A rate outside [`FPS_RANGE`].
    #[error("fps {0} is outside {lo}..={hi}", lo = FPS_RANGE.start(), hi = FPS_RANGE.end())]
    Fps(f64),
    /// Every mosaic slot is taken by a watched mosaic.
    #[error(
        "{MAX_MOSAICS} different mosaics are being watched already; watch one of them (same cameras, width and fps) or try later"
    )]
    Full,
}

/// Where the tiles go: `cols` x `rows` tiles of `tile` pixels, in a `width` x `height` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Tiles per row.
    pub cols: u32,
    /// Rows of tiles.
    pub rows: u32,
    /// One tile's size.
    pub tile: (u32, u32),
    /// The composed frame's width.
    pub width: u32,
    /// The composed frame's height.
    pub height: u32,
}

impl Layout {
    /// The squarest grid of 16:9 tiles for `n` cameras in a frame `width` wide.
    pub fn new(n: usize, width: u32) -> Layout {
        let n = n.max(1) as u32;
        let cols = (1..=n).find(|c| c * c >= n).unwrap_or(n);
        let rows = n.div_ceil(cols);
        // Even sizes: JPEG's chroma subsampling works on pairs of pixels.
        let tw = (width / cols) & !1;
        let th = (tw * 9 / 16) & !1;
        let (tw, th) = (tw.max(2), th.max(2));
        Layout {
            cols,
            rows,
            tile: (tw, th),
            width: tw * cols,
            height: th * rows,
        }
    }

    /// The top-left corner of tile `i`.
    pub fn origin(&self, i: usize) -> (u32, u32) {
        let i = i as u32;
        ((i % self.cols) * self.tile.0, (i / self.cols) * self.tile.1)
    }
}

/// What makes two mosaics the same one.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    cameras: Vec<String>,
    width: u32,
    fps: f64,
}

/// A mosaic made so far ([`Mosaics::list`]).
pub struct MosaicInfo {
    /// Its input cameras, in tile order.
    pub cameras: Vec<String>,
    /// The composed width asked for.
    pub width: u32,
    /// The composed rate asked for.
    pub fps: f64,
    /// The unlisted camera that composes it.
    pub camera: Arc<Camera>,
}

/// The mosaics of a server, made on first request and shared by everyone asking the same.
pub struct Mosaics {
    hub: Arc<Hub>,
    made: Mutex<Vec<(Spec, Arc<Camera>)>>,
}

impl Mosaics {
    /// No mosaic yet; they are made from `hub`'s cameras when asked for.
    pub fn new(hub: Arc<Hub>) -> Mosaics {
        Mosaics {
            hub,
            made: Mutex::new(Vec::new()),
        }
    }

    /// The mosaic of `cameras` (in that order) `width` pixels wide at `fps`, made if needed.
    pub fn get(
        &self,
        cameras: Vec<Arc<Camera>>,
        width: u32,
        fps: f64,
    ) -> Result<Arc<Camera>, MosaicError> {
        if cameras.is_empty() {
            return Err(MosaicError::Empty);
        }
        if cameras.len() > MAX_TILES {
            return Err(MosaicError::TooManyTiles(cameras.len()));
        }
        if !WIDTH_RANGE.contains(&width) {
            return Err(MosaicError::Width(width));
        }
        if !FPS_RANGE.contains(&fps) {
            return Err(MosaicError::Fps(fps));
        }
        let spec = Spec {
            cameras: cameras.iter().map(|c| c.name().to_owned()).collect(),
            width,
            fps,
        };
        // Poison recovered: the list only ever gains or loses whole entries.
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, cam)) = made.iter().find(|(s, _)| *s == spec) {
            return Ok(Arc::clone(cam));
        }
        if made.len() >= MAX_MOSAICS {
            let idle = made
                .iter()
                .position(|(_, c)| c.demand() == crate::hub::Demand::default())
                .ok_or(MosaicError::Full)?;
            made.remove(idle);
        }
        let layout = Layout::new(cameras.len(), width);
        let first = cameras[0].config();
        let config = CameraConfig {
            name: format!("mosaic of {}", spec.cameras.join(", ")),
            opener: Arc::new(MosaicOpener {
                inputs: cameras.clone(),
                layout,
                fps,
            }),
            width: layout.width,
            height: layout.height,
            quality: QUALITY,
            idle_timeout: first.idle_timeout,
            source_timeout: first.source_timeout.max(REFRESH * 3),
            transform: crate::transform::Transform {
                quality: QUALITY,
                ..Default::default()
            },
            fps,
            stream_size: None,
            drop_same_frames: false,
            overlay: None,
            controls: Default::default(),
        };
        let cam = self.hub.detached(config);
        made.push((spec, Arc::clone(&cam)));
        Ok(cam)
    }

    /// The mosaics made so far, for `/api/state`.
    pub fn list(&self) -> Vec<MosaicInfo> {
        // Poison recovered: the list only ever gains or loses whole entries.
        let made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        made.iter()
            .map(|(spec, c)| MosaicInfo {
                cameras: spec.cameras.clone(),
                width: spec.width,
                fps: spec.fps,
                camera: Arc::clone(c),
            })
            .collect()
    }
}

/// Opens a mosaic's source: a watch on each input camera.
struct MosaicOpener {
    inputs: Vec<Arc<Camera>>,
    layout: Layout,
    fps: f64,
}

impl Opener for MosaicOpener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        Box::pin(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / self.fps));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let feeds = self.inputs.iter().map(Camera::subscribe).collect();
            let tiles = (0..self.inputs.len()).map(|_| Mutex::default()).collect();
            let source: Box<dyn Source> = Box::new(MosaicSource {
                feeds,
                names: self.inputs.iter().map(|c| c.name().to_owned()).collect(),
                layout: self.layout,
                ticks,
                last: Vec::new(),
                composed: None,
                tiles: Arc::new(tiles),
            });
            Ok(source)
        })
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.inputs.iter().map(|c| c.name()).collect();
        format!(
            "mosaic of {} ({}x{})",
            names.join(", "),
            self.layout.width,
            self.layout.height
        )
    }
}

/// One tile's picture, decoded and scaled to fit, kept while its frame is the newest.
struct Tile {
    seq: u64,
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

/// A mosaic's open source: the inputs' feeds and the tiles decoded from them.
struct MosaicSource {
    feeds: Vec<Subscription>,
    names: Arc<[String]>,
    layout: Layout,
    ticks: tokio::time::Interval,
    /// The input frames of the last composition, by sequence number.
    last: Vec<Option<u64>>,
    composed: Option<Instant>,
    /// Each input's last decoded tile: an input that did not change is not decoded again.
    tiles: Arc<Vec<Mutex<Option<Arc<Tile>>>>>,
}

impl MosaicSource {
    /// Waits for the next tick at which an input changed (or [`REFRESH`] passed); returns the
    /// job that composes that frame.
    async fn next_job(
        &mut self,
    ) -> impl FnOnce(Option<&Painter>) -> Result<Image, SourceError> + Send + 'static {
        let frames = loop {
            self.ticks.tick().await;
            let frames: Vec<Option<Frame>> = self
                .feeds
                .iter_mut()
                .map(|f| f.frames().borrow_and_update().clone())
                .collect();
            let seqs: Vec<Option<u64>> =
                frames.iter().map(|f| f.as_ref().map(Frame::seq)).collect();
            let stale = self.composed.is_some_and(|at| at.elapsed() < REFRESH);
            if seqs != self.last || !stale {
                self.last = seqs;
                self.composed = Some(Instant::now());
                break frames;
            }
        };
        let (layout, names, tiles) = (
            self.layout,
            Arc::clone(&self.names),
            Arc::clone(&self.tiles),
        );
        move |_painter: Option<&Painter>| compose(layout, &names, &frames, &tiles)
    }
}

impl Source for MosaicSource {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            let job = self.next_job().await;
            crate::source::blocking("mosaic composition", move || job(None)).await?
        })
    }

    fn next_capture(&mut self) -> BoxFuture<'_, Result<Captured, SourceError>> {
        Box::pin(async move { Ok(Captured::Encode(Box::new(self.next_job().await))) })
    }
}

/// Composes one mosaic frame: each input's newest frame scaled into its tile (decoded only if
/// it changed), its name on a plate, then one encode.
fn compose(
    layout: Layout,
    names: &[String],
    frames: &[Option<Frame>],
    tiles: &[Mutex<Option<Arc<Tile>>>],
) -> Result<Image, SourceError> {
    let mut canvas = Canvas::new(layout.width, layout.height, BACKGROUND);
    let (tw, th) = layout.tile;
    let scale = crate::render::fit_scale("MMMMMMMMMMMMMMMMMMMM", tw, 2).max(1);
    for (i, (name, frame)) in names.iter().zip(frames).enumerate() {
        let (x0, y0) = layout.origin(i);
        let tile = frame.as_ref().and_then(|f| tile_of(f, (tw, th), &tiles[i]));
        match tile {
            Some(t) => {
                // Centred in the tile: letterboxed when the camera is not 16:9.
                let (ox, oy) = (x0 + (tw - t.width) / 2, y0 + (th - t.height) / 2);
                let stride = t.width as usize * 3;
                for (row, src) in t.rgb.chunks_exact(stride).enumerate() {
                    let dst = canvas.row_mut(oy + row as u32);
                    let at = ox as usize * 3;
                    dst[at..at + stride].copy_from_slice(src);
                }
            }
            None => {
                let msg = if frame.is_some() {
                    "cannot decode"
                } else {
                    "connecting"
                };
                canvas.text(
                    i64::from(x0 + 4 * scale),
                    i64::from(y0 + th / 2),
                    scale,
                    [200, 200, 200],
                    msg,
                );
            }
        }
        let plate_w = (crate::render::text_width(name, scale) + 4 * scale).min(tw);
        canvas.fill_rect(i64::from(x0), i64::from(y0), plate_w, 10 * scale, PLATE);
        canvas.text(
            i64::from(x0 + 2 * scale),
            i64::from(y0 + scale),
            scale,
            PLATE_TEXT,
            name,
        );
    }
    let jpeg = canvas
        .encode(QUALITY)
        .map_err(|e| SourceError::new(format!("mosaic: {e}")))?;
    Ok(Image {
        jpeg,
        width: layout.width,
        height: layout.height,
    })
}

/// `frame` scaled to fit `tile`, from the cache when it is the frame decoded last time.
fn tile_of(frame: &Frame, tile: (u32, u32), cache: &Mutex<Option<Arc<Tile>>>) -> Option<Arc<Tile>> {
    // Poison recovered: the slot only ever holds a whole tile.
    if let Some(t) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        if t.seq == frame.seq() {
            return Some(Arc::clone(t));
        }
    }
    let (width, height, rgb) =
        crate::transform::decode_to_fit(&frame.jpeg(), tile.0, tile.1).ok()?;
    let t = Arc::new(Tile {
        seq: frame.seq(),
        width,
        height,
        rgb,
    });
    *cache.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&t));
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_the_squarest_grid_of_even_sixteen_by_nine_tiles() {
        let l = Layout::new(1, 1280);
        assert_eq!(
            (l.cols, l.rows, l.tile, l.width, l.height),
            (1, 1, (1280, 720), 1280, 720)
        );
        let l = Layout::new(4, 1280);
        assert_eq!((l.cols, l.rows, l.tile), (2, 2, (640, 360)));
        let l = Layout::new(5, 1280);
        assert_eq!((l.cols, l.rows, l.tile), (3, 2, (426, 238)));
        assert_eq!(l.origin(4), (426, 238));
        let l = Layout::new(12, 1920);
        assert_eq!((l.cols, l.rows), (4, 3));
        for n in 1..=MAX_TILES {
            for w in [*WIDTH_RANGE.start(), 1000, *WIDTH_RANGE.end()] {
                let l = Layout::new(n, w);
                assert!(
                    l.width <= w && l.width > 0 && l.height > 0,
                    "{n} at {w}: {l:?}"
                );
                assert!(l.cols * l.rows >= n as u32);
                assert_eq!(l.tile.0 % 2 + l.tile.1 % 2, 0);
            }
        }
    }
}
