//! What the browser tests share, whichever browser drives the page: the `mjpegd` binary
//! under test with a configuration, the page model the probe script reads from the DOM, the
//! decoded screenshots and the pixel checks that say a tile shows live video. Each browser's
//! driver (CDP for Chromium in tests/browser.rs, WebDriver for WebKit in tests/webkit.rs)
//! implements [`Page`]; the checks are written once against it.

use std::io::{Cursor, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{MjpegdProcess, Signal, WAIT, signal_group};

/// A tile is live when at least this share of its pixels changed between two screenshots. The
/// test pattern scrolls its colour bars and ramp every frame, so live tiles change far more
/// (typically over half their pixels); a frozen one changes none.
pub const MIN_CHANGED: f64 = 0.02;

/// A tile shows a picture (not an empty or black box) when at least this share of its pixels
/// is lit. The pattern's bars cover two thirds of every frame.
pub const MIN_LIT: f64 = 0.2;

/// Two test-pattern cameras of different sizes and rates: what a grid of live tiles shows.
pub const TWO_CAMERAS: &str = r#"
[[cameras]]
name = "alpha"
source = "testpattern"
size = "320x240"
fps = 15

[[cameras]]
name = "beta"
source = "testpattern"
size = "256x144"
fps = 12
"#;

/// (name, decoded width, height, configured fps) of the cameras in [`TWO_CAMERAS`].
pub const TWO_EXPECTED: [(&str, u32, u32, f64); 2] =
    [("alpha", 320, 240, 15.0), ("beta", 256, 144, 12.0)];

/// Where a browser's screenshots go (`target/tmp/NAME`): kept after the run so a person (or
/// CI) can look at them.
pub fn artifacts(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A browser tab under a test's control: the two things every driver can do, and the checks
/// built on them.
pub trait Page {
    /// Where this browser's screenshots are kept (`target/tmp/NAME`).
    const ARTIFACTS: &'static str;

    /// Runs a JavaScript expression in the page, awaiting it if it is a promise: its value as
    /// JSON, or the browser's error (an exception, or a script run while the page navigates).
    fn try_eval_json(&mut self, expr: &str) -> Result<Value, Value>;

    /// A PNG screenshot of the viewport.
    fn screenshot_png(&mut self) -> Vec<u8>;

    /// A PNG screenshot holding at least the viewport's top-left `w`×`h` pixels, at their
    /// place: just those where the driver can clip (cheaper, so a sample takes less time),
    /// else the whole viewport.
    fn screenshot_png_top_left(&mut self, w: u32, h: u32) -> Vec<u8> {
        let _ = (w, h);
        self.screenshot_png()
    }

    /// Asks the browser to load `url`; [`Page::navigate`] waits for the page.
    fn start_navigation(&mut self, url: &str);

    /// Longest wait for a page (longer for pages served from an emulated machine).
    fn answer_wait(&self) -> Duration {
        WAIT
    }

    /// Loads `url` and waits until its document has run its scripts. A driver may answer the
    /// navigation before the old document is gone, so until then scripts may run in the old
    /// one, or fail with its context destroyed.
    fn navigate(&mut self, url: &str) {
        // The old document is marked first: when `url` is the page already shown, its
        // location alone cannot tell the new document from the old one, which is about to go.
        let _ = self.try_eval_json("(window.mjpegdOldDocument = true, null)");
        self.start_navigation(url);
        let at =
            "window.mjpegdOldDocument || document.readyState === 'loading' ? null : location.href";
        let limit = self.answer_wait();
        let _ = wait_until(
            &format!("the page at {url}"),
            limit,
            || self.try_eval::<Option<String>>(at),
            |href| href.as_ref().ok().and_then(Option::as_deref) == Some(url),
        );
    }

    /// The viewport in CSS pixels. At a device scale factor of 1 a screenshot has exactly these
    /// pixels, so element rectangles from the DOM index screenshots directly.
    fn viewport(&mut self) -> (u32, u32);

    /// As [`Page::eval`], but an error is returned rather than failing the test.
    fn try_eval<T: DeserializeOwned>(&mut self, expr: &str) -> Result<T, Value> {
        let value = self.try_eval_json(expr)?;
        serde_json::from_value(value.clone())
            .map_err(|e| json!(format!("page script returned {value}: {e}")))
    }

    /// Evaluates a JavaScript expression in the page (awaiting a promise) and returns its value.
    fn eval<T: DeserializeOwned>(&mut self, expr: &str) -> T {
        self.try_eval(expr)
            .unwrap_or_else(|err| panic!("page script failed: {err}\n{expr}"))
    }

    /// Every camera tile of the page, as [`PROBE`] reads it.
    fn probe(&mut self) -> PageView {
        self.eval(PROBE)
    }

    /// A screenshot of the viewport, saved as `target/tmp/ARTIFACTS/NAME` and decoded.
    fn screenshot(&mut self, name: &str) -> Shot {
        let png = self.screenshot_png();
        std::fs::write(artifacts(Self::ARTIFACTS).join(name), &png).expect("save screenshot");
        let viewport = self.viewport();
        Shot::decode(&png, name, Some(viewport))
    }
}

/// The real `mjpegd` binary with a configuration file, stopped when dropped.
pub struct Mjpegd {
    /// The running binary.
    pub process: MjpegdProcess,
    /// `http://127.0.0.1:PORT`, from the server's own log line.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Mjpegd {
    /// Starts the server on `listen` (`127.0.0.1:0` for any free port). `Err` carries the log of
    /// a server that exited without serving (a port still taken, say).
    pub fn start(config: &str, listen: &str) -> Result<Mjpegd, String> {
        Mjpegd::start_with(config, listen, |_| Vec::new())
    }

    /// As [`Mjpegd::start`], with more arguments made from the server's temporary directory
    /// (a certificate written there, say).
    pub fn start_with(
        config: &str,
        listen: &str,
        args: impl FnOnce(&Path) -> Vec<String>,
    ) -> Result<Mjpegd, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("mjpegd.toml");
        std::fs::write(&file, config).expect("write config");
        let mut all: Vec<std::ffi::OsString> = vec![
            "--config".into(),
            file.into(),
            "--listen".into(),
            listen.into(),
        ];
        all.extend(args(dir.path()).into_iter().map(Into::into));
        let process = MjpegdProcess::start(&all)?;
        Ok(Mjpegd {
            url: process.url.clone(),
            process,
            _dir: dir,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        self.url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// `GET /api/state`, straight over TCP: the test's view of the server, independent of the
    /// browser's.
    pub fn state(&self) -> Value {
        serde_json::from_slice(&http_get(self.addr(), "/api/state", WAIT))
            .expect("/api/state is JSON")
    }

    /// Each camera's stream viewer count, by name.
    pub fn viewers(&self) -> Vec<(String, u64)> {
        let state = self.state();
        state["cameras"]
            .as_array()
            .expect("cameras")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_owned(),
                    c["viewers"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Ends the server with `signal` and waits for it to exit.
    pub fn kill(&mut self, signal: Signal) {
        signal_group(self.process.pid(), signal);
        wait_until(
            "mjpegd to exit",
            WAIT,
            || self.process.child.try_wait().ok().flatten(),
            Option::is_some,
        );
    }
}

/// Reads every camera tile of the page (the grid's, or the camera page's single one): what
/// the browser decoded and what app.js wrote from `/api/state`.
pub const PROBE: &str = r#"(() => {
  const text = (root, sel) => { const e = root.querySelector(sel); return e ? e.textContent : null; };
  return {
    state_ok: document.body ? (document.body.dataset.stateOk || null) : null,
    tiles: [...document.querySelectorAll(".tile")].map(t => {
      const img = t.querySelector("img");
      const b = img.getBoundingClientRect();
      const link = t.querySelector("a");
      return {
        camera: t.dataset.camera,
        name: text(t, ".name"),
        state: t.dataset.state || null,
        fps: t.dataset.fps === undefined ? null : Number(t.dataset.fps),
        viewers: t.dataset.viewers === undefined ? null : Number(t.dataset.viewers),
        state_text: text(t, ".state"),
        state_class: t.querySelector(".state").className,
        fps_text: text(t, ".fps"),
        viewers_text: text(t, ".viewers"),
        mode: img.dataset.mode,
        src: img.currentSrc || img.src,
        complete: img.complete,
        width: img.naturalWidth,
        height: img.naturalHeight,
        rect: { x: b.x, y: b.y, w: b.width, h: b.height },
        link: link && link.contains(img) ? link.getAttribute("href") : null,
      };
    }),
  };
})()"#;

/// What [`PROBE`] reads: whether app.js's last state poll worked, and every tile.
#[derive(Debug, Deserialize)]
pub struct PageView {
    /// `body[data-state-ok]`: "1" after a good state poll, "0" after a failed one.
    pub state_ok: Option<String>,
    /// Every `.tile`, in page order.
    pub tiles: Vec<TileView>,
}

/// One camera tile as the page shows it.
#[derive(Debug, Deserialize)]
pub struct TileView {
    /// `data-camera`.
    pub camera: String,
    /// The `.name` text.
    pub name: Option<String>,
    /// `data-state` from the last poll (`online`, ...).
    pub state: Option<String>,
    /// `data-fps` from the last poll: the measured rate.
    pub fps: Option<f64>,
    /// `data-viewers` from the last poll.
    pub viewers: Option<u64>,
    /// The `.state` text shown.
    pub state_text: Option<String>,
    /// The `.state` element's classes.
    pub state_class: String,
    /// The `.fps` text shown.
    pub fps_text: Option<String>,
    /// The `.viewers` text shown.
    pub viewers_text: Option<String>,
    /// The `<img>`'s `data-mode`: `stream` or `snapshot`.
    pub mode: String,
    /// The `<img>`'s current source URL.
    pub src: String,
    /// The `<img>`'s `complete`.
    pub complete: bool,
    /// The `<img>`'s `naturalWidth`: the decoded picture's width.
    pub width: u32,
    /// The `<img>`'s `naturalHeight`.
    pub height: u32,
    /// Where the `<img>` is on the page.
    pub rect: Rect,
    /// The `href` of the link around the `<img>`, if any.
    pub link: Option<String>,
}

/// An element's rectangle in CSS pixels, from `getBoundingClientRect()`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl PageView {
    /// The tile of `camera`; fails when there is none.
    pub fn tile(&self, camera: &str) -> &TileView {
        self.tiles
            .iter()
            .find(|t| t.camera == camera)
            .unwrap_or_else(|| panic!("no tile for camera {camera}: {self:#?}"))
    }

    /// Every expected camera has a tile whose image decoded at the camera's size and whose
    /// state app.js filled in: online, at least half the configured rate, `min_viewers`.
    pub fn live(&self, expected: &[(&str, u32, u32, f64)], min_viewers: u64) -> bool {
        self.state_ok.as_deref() == Some("1")
            && self.tiles.len() == expected.len()
            && expected.iter().all(|&(name, w, h, fps)| {
                self.tiles.iter().any(|t| {
                    t.camera == name
                        && (t.width, t.height) == (w, h)
                        && t.state.as_deref() == Some("online")
                        && t.fps.is_some_and(|f| f >= fps / 2.0)
                        && t.viewers.is_some_and(|v| v >= min_viewers)
                })
            })
    }
}

impl TileView {
    /// The visible state line matches the data attributes app.js set from the same poll.
    pub fn assert_meta(&self) {
        let cam = &self.camera;
        assert_eq!(
            self.name.as_deref(),
            Some(cam.as_str()),
            "{cam}: name shown"
        );
        assert_eq!(
            self.state_text.as_deref(),
            Some("online"),
            "{cam}: state shown"
        );
        assert!(
            self.state_class.contains("state-online"),
            "{cam}: state styled {:?}",
            self.state_class
        );
        let fps = self.fps.expect("data-fps");
        let shown: f64 = self
            .fps_text
            .as_deref()
            .and_then(|t| t.strip_suffix(" fps"))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{cam}: fps shown as {:?}", self.fps_text));
        assert!(
            (shown - fps).abs() < 0.051,
            "{cam}: {shown} fps shown for {fps}"
        );
        let viewers = self.viewers.expect("data-viewers");
        let unit = if viewers == 1 { "viewer" } else { "viewers" };
        assert_eq!(
            self.viewers_text.as_deref(),
            Some(format!("{viewers} {unit}").as_str()),
            "{cam}"
        );
    }
}

/// Waits, bounded, until `probe` returns a value `ok` accepts; fails naming `what` and the
/// last value seen.
pub fn wait_until<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let v = probe();
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}; last seen: {v:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A decoded screenshot.
pub struct Shot {
    name: String,
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for Shot {
    // The pixels would fill a failure message and say nothing: name and size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shot({} {}x{})", self.name, self.width, self.height)
    }
}

impl Shot {
    /// Decodes a PNG screenshot named `name` (for messages); with `viewport`, checks that it has
    /// exactly the viewport's pixels, for DOM rectangles to index it.
    pub fn decode(png_bytes: &[u8], name: &str, viewport: Option<(u32, u32)>) -> Shot {
        let mut decoder = png::Decoder::new(Cursor::new(png_bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().expect("screenshot PNG header");
        let mut data = vec![0; reader.output_buffer_size().expect("PNG buffer size")];
        let info = reader.next_frame(&mut data).expect("screenshot PNG data");
        data.truncate(info.buffer_size());
        let channels = info.color_type.samples();
        assert!(
            channels >= 3,
            "{name}: colour screenshot expected, got {:?}",
            info.color_type
        );
        let shot = Shot {
            name: name.to_owned(),
            width: info.width as usize,
            height: info.height as usize,
            channels,
            data,
        };
        if let Some((w, h)) = viewport {
            assert_eq!(
                (shot.width, shot.height),
                (w as usize, h as usize),
                "{name}: screenshot size must match the viewport for DOM rectangles to index it"
            );
        }
        shot
    }

    /// Width and height in pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The colour at pixel (`x`, `y`).
    pub fn rgb(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * self.channels;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// The pixel coordinates inside `rect`, 2 px in from its edges (anti-aliasing).
    fn pixels(&self, rect: Rect) -> impl Iterator<Item = (usize, usize)> + use<> {
        let clamp = |v: f64, max: usize| (v.max(0.0) as usize).min(max);
        let (x0, y0) = (
            clamp(rect.x.ceil() + 2.0, self.width),
            clamp(rect.y.ceil() + 2.0, self.height),
        );
        let (x1, y1) = (
            clamp((rect.x + rect.w).floor() - 2.0, self.width),
            clamp((rect.y + rect.h).floor() - 2.0, self.height),
        );
        assert!(
            x1 > x0 + 16 && y1 > y0 + 16,
            "{}: tile {rect:?} is not on screen",
            self.name
        );
        (y0..y1).flat_map(move |y| (x0..x1).map(move |x| (x, y)))
    }

    /// The share of `rect`'s pixels that are not dark.
    pub fn lit(&self, rect: Rect) -> f64 {
        let (mut lit, mut all) = (0usize, 0usize);
        for (x, y) in self.pixels(rect) {
            all += 1;
            lit += usize::from(self.rgb(x, y).iter().any(|&c| c > 64));
        }
        lit as f64 / all as f64
    }

    /// The share of `rect`'s pixels that differ clearly between this shot and `other`.
    fn changed(&self, other: &Shot, rect: Rect) -> f64 {
        let (mut changed, mut all) = (0usize, 0usize);
        for (x, y) in self.pixels(rect) {
            all += 1;
            let (a, b) = (self.rgb(x, y), other.rgb(x, y));
            changed += usize::from(a.iter().zip(b).any(|(&p, q)| p.abs_diff(q) > 24));
        }
        changed as f64 / all as f64
    }
}

/// Asserts that every tile of `view` shows a picture in both shots and changed between them.
pub fn assert_tiles_changed(view: &PageView, first: &Shot, second: &Shot) {
    for t in &view.tiles {
        for shot in [first, second] {
            let lit = shot.lit(t.rect);
            assert!(
                lit >= MIN_LIT,
                "{}: tile {} shows no picture ({lit:.3} lit)",
                shot.name,
                t.camera
            );
        }
        let changed = first.changed(second, t.rect);
        eprintln!(
            "{} -> {}: tile {} changed {changed:.3}",
            first.name, second.name, t.camera
        );
        assert!(
            changed >= MIN_CHANGED,
            "tile {} did not change between {} and {} ({changed:.4} of its pixels): not live",
            t.camera,
            first.name,
            second.name
        );
    }
}

/// Two screenshots a second apart (long enough for a dozen frames at the test's rates), and
/// the check that every tile of the grid changed between them. The layout must not move
/// between the shots, or the comparison would compare different things.
///
/// The first shot is retaken until every tile shows a picture: the DOM can be ahead of what is
/// on screen. WebKit, right after a navigation, has decoded the frames and run app.js (the probe
/// sees both) for some time before a screenshot shows any of it.
pub fn assert_live_between_screenshots(page: &mut impl Page, prefix: &str) {
    let before = page.probe();
    let name = format!("{prefix}-1.png");
    let first = wait_until(
        &format!("{name}: every tile painted"),
        WAIT,
        || page.screenshot(&name),
        |shot| before.tiles.iter().all(|t| shot.lit(t.rect) >= MIN_LIT),
    );
    // Not a wait for something to happen: the interval over which live video must have moved.
    std::thread::sleep(Duration::from_secs(1));
    let second = page.screenshot(&format!("{prefix}-2.png"));
    let after = page.probe();
    let rects = |v: &PageView| v.tiles.iter().map(|t| t.rect).collect::<Vec<_>>();
    assert_eq!(
        rects(&before),
        rects(&after),
        "{prefix}: the layout moved between screenshots"
    );
    assert_tiles_changed(&after, &first, &second);
}

/// One HTTP/1.1 request to `addr` straight over TCP (`Connection: close`, so the body ends
/// with the connection), with `body` as JSON when given, waiting at most `wait`: the status
/// and the body. No client library: the tests need nothing more, and it serves both the
/// server under test and a browser's WebDriver.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    wait: Duration,
) -> (u16, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    tcp.set_read_timeout(Some(wait)).expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap_or_else(|e| panic!("{method} {path} to {addr}: {e}"));
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp)
        .unwrap_or_else(|e| panic!("{method} {path} from {addr}: no answer within {wait:?}: {e}"));
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP response"));
    let head = String::from_utf8_lossy(&resp[..at]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line in {head:?}"));
    let mut body = resp.split_off(at + 4);
    if head
        .to_ascii_lowercase()
        .contains("\r\ntransfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

/// The payload of a chunked body (extensions and trailers ignored).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            panic!("a chunked body cut short");
        };
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
            .expect("a chunk size");
        raw = &raw[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// `GET path` from `addr` over TCP, waiting at most `wait`: the body of a 200 answer.
pub fn http_get(addr: &str, path: &str, wait: Duration) -> Vec<u8> {
    let (status, body) = http_request(addr, "GET", path, None, wait);
    assert_eq!(
        status,
        200,
        "GET {path} from {addr}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// The grid of [`TWO_CAMERAS`] on `server`, loaded in `page`: every tile live (decoded at its
/// camera's size, state line filled in from `/api/state`) and streaming, one stream per tile as
/// the server counts them (the page opens no duplicates), each on the advance-headers wire (the
/// browser's own `Accept` picks it), and every tile's pixels changing. Returns the page's view.
pub fn assert_grid_live(page: &mut impl Page, server: &Mjpegd) -> PageView {
    page.navigate(&format!("{}/", server.url));
    let view = wait_until(
        "every grid tile live",
        WAIT,
        || page.probe(),
        |v| v.live(&TWO_EXPECTED, 1),
    );
    for t in &view.tiles {
        t.assert_meta();
        assert_eq!(
            t.mode, "stream",
            "{}: with two cameras every tile streams",
            t.camera
        );
    }
    let state = wait_until(
        "one stream viewer per camera",
        WAIT,
        || server.state(),
        |s| {
            s["cameras"].as_array().is_some_and(|c| {
                c.len() == TWO_EXPECTED.len()
                    && c.iter()
                        .all(|c| c["viewer_list"].as_array().map(Vec::len) == Some(1))
            })
        },
    );
    for c in state["cameras"].as_array().expect("cameras") {
        assert_eq!(
            c["viewer_list"][0]["advance_headers"],
            json!(true),
            "{}: the browser's <img> stream is not on the advance-headers wire: {c}",
            c["name"]
        );
    }
    assert_live_between_screenshots(page, "grid");
    view
}

/// The password of `alice` in [`two_cameras_with_a_user`].
#[cfg(feature = "auth")]
pub const PASSWORD: &str = "correct horse battery";

/// [`TWO_CAMERAS`] with one user, `alice` ([`PASSWORD`]): every page and stream needs a
/// login; `/api/state` stays open for the test's own checks ([`Mjpegd::state`]).
#[cfg(feature = "auth")]
pub fn two_cameras_with_a_user() -> String {
    let hash = mjpegd::auth::hash_password(PASSWORD).expect("hash");
    format!(
        "{TWO_CAMERAS}\n[server]\npublic_state = true\n\n\
         [auth]\n[[auth.users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n"
    )
}

/// A browser logs in through the form, as a person does: the grid (of a server started with
/// [`two_cameras_with_a_user`]) sends it to `/login`, the form is filled in and sent, the
/// browser returns to the grid with its session cookie, and the grid is live.
#[cfg(feature = "auth")]
pub fn assert_logs_in_through_the_form(page: &mut impl Page, server: &Mjpegd) {
    let grid = format!("{}/", server.url);
    page.start_navigation(&grid);
    let at = "document.readyState === 'loading' ? null : location.pathname + location.search";
    let _ = wait_until(
        "the grid to send the browser to the login form",
        page.answer_wait(),
        || page.try_eval::<Option<String>>(at),
        |href| href.as_ref().ok().and_then(Option::as_deref) == Some("/login?next=%2F"),
    );
    // Submitted after the script returns, so the navigation cannot cut the driver's answer.
    let _: Value = page.eval(&format!(
        "(() => {{ const f = document.querySelector('form[action=\"/login\"]'); \
         f.user.value = 'alice'; f.password.value = {PASSWORD:?}; \
         setTimeout(() => f.requestSubmit(), 0); return null; }})()"
    ));
    let _ = wait_until(
        "the login to return to the grid",
        page.answer_wait(),
        || {
            page.try_eval::<Option<String>>(
                "document.readyState === 'loading' ? null : location.href",
            )
        },
        |href| href.as_ref().ok().and_then(Option::as_deref) == Some(grid.as_str()),
    );
    let logout: bool = page.eval("!!document.querySelector('form[action=\"/logout\"]')");
    assert!(logout, "a logged-in grid offers to log out");
    // The session cookie opens the grid's streams too: every tile live.
    assert_grid_live(page, server);
}

/// The grid and `alpha`'s camera page live in `page` ([`assert_grid_live`],
/// [`assert_camera_page_live`]), the camera's `<img>` decoded at its width, and a promise a
/// script returns awaited by the driver ([`Page::eval`]'s contract).
pub fn assert_pages_live(page: &mut impl Page, server: &Mjpegd) {
    assert_grid_live(page, server);
    assert_camera_page_live(page, server);
    let natural: u32 = page.eval("document.querySelector('img').naturalWidth");
    assert_eq!(natural, 320, "the camera page's <img> decoded the stream");
    let status: u16 = page.eval("fetch('/api/state').then(r => r.status)");
    assert_eq!(status, 200);
}

/// The camera page of `alpha` (of [`TWO_CAMERAS`]) loaded in `page`: its one tile live and
/// large, its `<img>` on the camera's stream, its pixels changing. Returns the page's view.
pub fn assert_camera_page_live(page: &mut impl Page, server: &Mjpegd) -> PageView {
    page.navigate(&format!("{}/cameras/alpha", server.url));
    let view = wait_until(
        "the camera page live",
        WAIT,
        || page.probe(),
        |v| v.live(&TWO_EXPECTED[..1], 1),
    );
    let tile = view.tile("alpha");
    tile.assert_meta();
    assert!(tile.src.ends_with("/cameras/alpha/stream"), "{}", tile.src);
    assert!(
        tile.rect.w > 640.0,
        "the camera page's view is large: {:?}",
        tile.rect
    );
    assert_live_between_screenshots(page, "camera");
    view
}
