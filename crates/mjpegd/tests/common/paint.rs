//! Paint lag: does a browser's `<img>` show the frame being served, or the one before? A camera
//! plays solid colours; screenshots of the page are classified by colour and compared with the
//! frame the server serves just before and after each one. Shared by tests/browser.rs
//! (Chromium) and tests/webkit.rs (WebKit).

use std::time::Duration;

use serde_json::Value;

use super::WAIT;
use super::page::{Mjpegd, Page, Shot, http_get, wait_until};

/// The colours of the paint tests' frames: three levels per channel, far enough apart that JPEG
/// error and the browser's colour handling cannot turn one into another.
fn palette(i: usize) -> [u8; 3] {
    const LEVELS: [u8; 3] = [0, 128, 255];
    [LEVELS[i % 3], LEVELS[(i / 3) % 3], LEVELS[(i / 9) % 3]]
}

/// The palette index nearest to `rgb` among the first `n`, if it is clearly that colour.
fn palette_index(rgb: [u8; 3], n: usize) -> Option<usize> {
    (0..n)
        .map(|i| {
            let p = palette(i);
            let d = p
                .iter()
                .zip(rgb)
                .map(|(&a, b)| a.abs_diff(b))
                .max()
                .unwrap_or(255);
            (d, i)
        })
        .min()
        .filter(|(d, _)| *d < 40)
        .map(|(_, i)| i)
}

/// Writes `n` solid-colour JPEGs (palette colours 0..n, played in that order) for an
/// `images:DIR` camera; returns the directory. `n` stays below 26: colour 26 is white, the
/// page's background.
fn colour_frames(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..n {
        let jpeg = mjpegd::render::Canvas::new(PAINT_SIZE.0, PAINT_SIZE.1, palette(i))
            .encode(90)
            .expect("encode a colour frame");
        std::fs::write(dir.path().join(format!("f{i:03}.jpg")), &jpeg).expect("write frame");
    }
    dir
}

/// Size of the paint tests' frames and of the `<img>` showing them.
pub const PAINT_SIZE: (u32, u32) = (160, 120);

/// A small xorshift generator: random sampling moments without a dependency. The seed is
/// printed so a failing run can be repeated.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

impl Mjpegd {
    /// The palette index of the frame the camera serves now (its snapshot's centre pixel).
    pub fn serving(&self, n: usize) -> Option<usize> {
        let jpeg = http_get(self.addr(), "/snapshot.jpg", WAIT);
        let mut d = zune_jpeg::JpegDecoder::new(&jpeg);
        let rgb = d.decode().expect("the snapshot decodes");
        let (w, h) = d.dimensions().expect("dimensions");
        let i = ((h / 2) * w + w / 2) * 3;
        palette_index([rgb[i], rgb[i + 1], rgb[i + 2]], n)
    }
}

/// The palette index `page` paints at the centre of the `<img>` now: a screenshot of the
/// composited page, i.e. what a person sees.
pub fn painted(page: &mut impl Page, n: usize) -> Option<usize> {
    let png = page.screenshot_png_top_left(PAINT_SIZE.0, PAINT_SIZE.1);
    let shot = Shot::decode(&png, "painted", None);
    let (w, h) = shot.size();
    let (x, y) = (PAINT_SIZE.0 as usize / 2, PAINT_SIZE.1 as usize / 2);
    assert!(
        x < w && y < h,
        "a {w}x{h} screenshot does not hold the <img>"
    );
    palette_index(shot.rgb(x, y), n)
}

/// One sample of a paint-lag run: the frame served just before and just after the screenshot,
/// and the one painted, as palette indices.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Served just before the screenshot.
    pub before: usize,
    /// Served just after it.
    pub after: usize,
    /// Painted in it.
    pub painted: usize,
}

impl Sample {
    /// Frames the painted one is behind `served` (negative: ahead), for a loop of `n` frames.
    pub fn behind(served: usize, painted: usize, n: usize) -> i64 {
        let d = ((served + n - painted) % n) as i64;
        if d > n as i64 / 2 { d - n as i64 } else { d }
    }
}

/// One paint-lag run: a camera of `n` solid colours at `fps`, an `<img>` of `/stream` + `query`
/// in `page` (a blank one), sampled at `samples` random moments. Returns the samples and whether the stream
/// used advance headers according to /api/state.
pub fn paint_lag(
    page: &mut impl Page,
    fps: f64,
    n: usize,
    query: &str,
    samples: usize,
) -> (Vec<Sample>, bool) {
    assert!(n < 26, "palette colour 26 is the page's white background");
    let frames = colour_frames(n);
    // Each sample takes two snapshots; with a fast screenshot (Firefox's) a 30 fps run asks for
    // more than the default 20 a second from one address.
    let config = format!(
        "[server]\nsnapshot_rate = 1000\nsnapshot_rate_per_ip = 1000\n\n\
         [[cameras]]\nname = \"colours\"\nsource = \"images:{}\"\nsize = \"{}x{}\"\nfps = {fps}\n",
        frames.path().display(),
        PAINT_SIZE.0,
        PAINT_SIZE.1
    );
    let server = Mjpegd::start(&config, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let html = format!(
        "<img id=v src='{}/stream{query}' style='position:fixed;left:0;top:0;width:{}px;height:{}px'>",
        server.url, PAINT_SIZE.0, PAINT_SIZE.1
    );
    let _: Value = page.eval(&format!(
        "(() => {{ document.body.style.margin = '0'; document.body.innerHTML = {html:?}; return null; }})()"
    ));
    let state = wait_until(
        "the <img>'s stream on /api/state",
        WAIT,
        || server.state(),
        |s| s["cameras"][0]["viewer_list"][0].is_object(),
    );
    let advance = state["cameras"][0]["viewer_list"][0]["advance_headers"]
        .as_bool()
        .expect("advance_headers in /api/state");
    wait_until(
        "the <img> to paint a frame",
        WAIT,
        || painted(page, n),
        Option::is_some,
    );

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("paint_lag fps={fps} query={query:?}: seed {seed}");
    let mut rng = Xorshift(seed);
    let period_ms = (1000.0 / fps) as u64;
    let mut lags = Vec::new();
    let mut ambiguous = 0;
    while lags.len() < samples {
        std::thread::sleep(Duration::from_millis(rng.below(period_ms.max(50) * 2)));
        let before = server.serving(n);
        let painted = painted(page, n);
        let after = server.serving(n);
        // At 1 fps, a frame change during the screenshot leaves the moment undefined: take
        // another. At high rates no moment is free of changes; the served frame is then the one
        // seen just before the screenshot.
        if fps <= 5.0 && before != after {
            ambiguous += 1;
            assert!(
                ambiguous <= 3 * samples,
                "the frame changed during every sample"
            );
            continue;
        }
        let (Some(before), Some(after), Some(painted)) = (before, after, painted) else {
            panic!("unclassifiable colour: served {before:?}/{after:?}, painted {painted:?}");
        };
        lags.push(Sample {
            before,
            after,
            painted,
        });
    }
    eprintln!("paint_lag fps={fps} query={query:?} advance={advance}: lags {lags:?}");
    (lags, advance)
}

/// At 1 fps, on the wire the browser's own `Accept` picks, `page` paints the frame being served:
/// in at least 9 of 10 random moments. The stream must be on the advance-headers wire.
pub fn assert_paints_at_once(page: &mut impl Page) {
    let (samples, advance) = paint_lag(page, 1.0, 3, "", 10);
    assert!(
        advance,
        "/api/state must show the browser's stream in advance-headers mode"
    );
    let (matched, lags) = matched(&samples);
    assert!(
        matched >= 9,
        "the painted frame matched the served one {matched}/10 times (lags {lags:?})"
    );
}

/// The same measurement on the old wire (`?advance_headers=0`, what non-browser clients still
/// get): the browser paints a part only once the next part's headers arrive, so at 1 fps it
/// shows the previous frame, and matches the served one at most 5 times in 10. This is the
/// failure the advance-headers wire fixes; while it holds, [`assert_paints_at_once`] proves
/// something.
pub fn assert_paints_one_frame_late_on_the_content_length_wire(page: &mut impl Page) {
    let (matched, lags) = on_the_content_length_wire(page);
    assert!(
        matched <= 5,
        "on the old wire the painted frame matched {matched}/10 times (lags {lags:?}); expected it to lag"
    );
}

/// As [`assert_paints_at_once`], on the old wire (`?advance_headers=0`): for a browser that
/// ends a part at its `Content-Length` (Firefox) instead of waiting for the next part's
/// headers, so it needs no advance headers.
pub fn assert_paints_at_once_on_the_content_length_wire(page: &mut impl Page) {
    let (matched, lags) = on_the_content_length_wire(page);
    assert!(
        matched >= 9,
        "on the old wire the painted frame matched the served one {matched}/10 times (lags {lags:?})"
    );
}

/// Ten 1-fps samples on the old wire (`?advance_headers=0`): how many painted the frame being
/// served, and every lag.
fn on_the_content_length_wire(page: &mut impl Page) -> (usize, Vec<i64>) {
    let (samples, advance) = paint_lag(page, 1.0, 3, "?advance_headers=0", 10);
    assert!(
        !advance,
        "/api/state must show the forced Content-Length wire"
    );
    matched(&samples)
}

/// How many of 1-fps `samples` (of 3 colours) painted the frame being served, and every lag.
fn matched(samples: &[Sample]) -> (usize, Vec<i64>) {
    let lags: Vec<i64> = samples
        .iter()
        .map(|s| Sample::behind(s.before, s.painted, 3))
        .collect();
    (lags.iter().filter(|&&l| l == 0).count(), lags)
}

/// Paint lag in a fresh page from `launch` per run, at 1 and 30 fps, on both wires and on the
/// one the browser's own `Accept` picks, printed under `browser`'s name: a measurement for
/// BENCHMARKS.md, no check.
pub fn measure_paint_lag_in<P: Page>(browser: &str, mut launch: impl FnMut() -> P) {
    for (fps, n) in [(1.0, 3), (30.0, 25)] {
        for query in ["?advance_headers=0", "?advance_headers=1", ""] {
            let mut page = launch();
            let (samples, advance) = paint_lag(&mut page, fps, n, query, 30);
            print_paint_lag(
                &format!("{browser} fps={fps} {query:?} advance={advance}"),
                &samples,
                n,
            );
        }
    }
}

/// Prints a paint-lag run's lags in frames (mean, median, range) against the frame served
/// before the screenshot and the one served after: the true lag lies between the two (equal
/// at 1 fps). `label` names the run (browser, fps, wire).
pub fn print_paint_lag(label: &str, samples: &[Sample], n: usize) {
    for (which, pick) in [("before", true), ("after", false)] {
        let mut lags: Vec<i64> = samples
            .iter()
            .map(|s| Sample::behind(if pick { s.before } else { s.after }, s.painted, n))
            .collect();
        lags.sort_unstable();
        let mean = lags.iter().sum::<i64>() as f64 / lags.len() as f64;
        println!(
            "PAINT LAG {label} vs served {which}: mean {mean:.2} frames, median {}, min {}, max {} (n={})",
            lags[lags.len() / 2],
            lags[0],
            lags[lags.len() - 1],
            lags.len()
        );
    }
}
