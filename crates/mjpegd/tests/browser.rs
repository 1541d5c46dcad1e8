//! The web page in a real browser: headless Chromium, driven over the Chrome DevTools Protocol
//! (CDP), loads the pages of a running `mjpegd` binary and the tests assert what a person would
//! see. Every tile's image decodes at its camera's size, the state line is filled in from
//! `/api/state`, and the pixels of every tile change between two screenshots (live video).
//! The screenshots are kept under `target/tmp/browser/` as artifacts. The checks that hold in
//! every browser are in tests/common/page.rs and paint.rs; tests/webkit.rs runs them in WebKit.
//!
//! Needs Debian's `chromium` (scripts/install-test-deps.sh installs it). Without it the tests
//! skip loudly, or fail when MJPEGD_REQUIRE_TOOLS is set (as in CI).

mod common;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

use common::page::{
    Mjpegd, Page, Rect, TWO_CAMERAS, TWO_EXPECTED, assert_camera_page_live, assert_grid_live,
    assert_live_between_screenshots, assert_tiles_changed, http_get, wait_until,
};
use common::paint::{
    assert_paints_at_once, assert_paints_one_frame_late_on_the_content_length_wire, paint_lag,
    print_paint_lag,
};
use common::{Signal, WAIT, find_tool, joined, stop_group, watch_log};

/// The browser window, in CSS pixels; with a device scale factor of 1 a screenshot has exactly
/// these pixels, so element rectangles from the DOM index screenshots directly.
const VIEWPORT: (u32, u32) = (1280, 800);

/// How long a page may take to get live again after the server came back: the page retries
/// every 2 s, and the new server starts its capture on the first request.
const RECONNECT_WAIT: Duration = Duration::from_secs(20);

/// Browser tests run one at a time: two Chromiums at once on a 2-core machine make frame
/// timing, and so the tests, flaky.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Chromium executable (`$MJPEGD_CHROMIUM`, else the first browser on PATH), or `None`
/// after a loud skip notice; with MJPEGD_REQUIRE_TOOLS set a missing browser fails the test.
fn chromium() -> Option<PathBuf> {
    find_tool(
        "chromium",
        &["chromium", "chromium-browser", "google-chrome"],
        Some("MJPEGD_CHROMIUM"),
    )
}

/// Longest wait for one Chromium start (it takes well under a second when it works).
const BROWSER_START: Duration = Duration::from_secs(20);

/// Headless Chromium with a fresh profile, stopped (with its helper processes) when dropped.
struct Chromium {
    child: Child,
    ws_url: String,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn launch(exe: &Path) -> Chromium {
        Chromium::launch_with(exe, &[])
    }

    /// As [`Chromium::launch`], with more command-line flags. A start that hangs (seen now
    /// and then in full suite runs on a loaded machine: no output at all after the wrapper's)
    /// is ended and tried again, twice, with a fresh profile.
    fn launch_with(exe: &Path, flags: &[&str]) -> Chromium {
        let mut failures = Vec::new();
        for attempt in 1..=3 {
            match Chromium::try_launch(exe, flags) {
                Ok(browser) => return browser,
                Err(log) => {
                    eprintln!("chromium start {attempt} of 3 hung; its log:\n{log}");
                    failures.push(log);
                }
            }
        }
        panic!(
            "chromium printed no DevTools URL within {BROWSER_START:?}, three times; its logs:\n{}",
            failures.join("\n--\n")
        )
    }

    fn try_launch(exe: &Path, flags: &[&str]) -> Result<Chromium, String> {
        let profile = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(exe)
            // The flags this machine needs: root (no sandbox), no GPU, and nothing that reaches
            // for the network: the closed network refuses it, and noisily.
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--mute-audio",
                "--hide-scrollbars",
                // A page must keep its timers and painting at full speed, as in a visible tab.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--remote-debugging-port=0",
            ])
            .args(flags)
            .arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so the renderer and helper processes can be ended with it.
            .process_group(0)
            .spawn()
            .expect("spawn chromium");
        let (urls, log) = watch_log(child.stderr.take().expect("stderr"), |line| {
            let at = line.find("DevTools listening on ")?;
            Some(
                line[at + "DevTools listening on ".len()..]
                    .trim()
                    .to_owned(),
            )
        });
        let mut browser = Chromium {
            child,
            ws_url: String::new(),
            _profile: profile,
        };
        match urls.recv_timeout(BROWSER_START) {
            Ok(url) => {
                browser.ws_url = url;
                Ok(browser)
            }
            // Dropping the browser ends its process group.
            Err(_) => Err(joined(&log)),
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

/// A minimal CDP client over the browser's WebSocket: one request at a time, answered by id;
/// events are ignored (none is enabled).
struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// The attached page's session; page-level commands go to it.
    session: Option<String>,
    /// Longest wait for an answer (longer for pages served from an emulated machine).
    answer_wait: Duration,
}

impl Cdp {
    fn connect(ws_url: &str) -> Cdp {
        let host = ws_url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("unexpected DevTools URL {ws_url}"));
        let tcp = TcpStream::connect(host).expect("connect to DevTools");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let (ws, _) = tungstenite::client(ws_url, tcp).expect("DevTools WebSocket handshake");
        // Short reads from now on: every call polls against its own deadline.
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Cdp {
            ws,
            next_id: 0,
            session: None,
            answer_wait: WAIT,
        }
    }

    /// Sends one command (to the page session when `page`) and waits for its answer.
    fn send(&mut self, page: bool, method: &str, params: Value) -> Value {
        self.try_send(page, method, params)
            .unwrap_or_else(|err| panic!("CDP {method} failed: {err}"))
    }

    /// As [`Cdp::send`], but an error answer (say, a script run while the page navigates) is
    /// returned rather than failing the test.
    fn try_send(&mut self, page: bool, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if page {
            msg["sessionId"] = json!(self.session.as_deref().expect("an attached page"));
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .unwrap_or_else(|e| panic!("CDP {method}: {e}"));
        let deadline = Instant::now() + self.answer_wait;
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let reply: Value = serde_json::from_str(&text).expect("CDP message is JSON");
                    if reply["id"] != json!(id) {
                        continue;
                    }
                    if let Some(err) = reply.get("error") {
                        return Err(err.clone());
                    }
                    return Ok(reply["result"].clone());
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    assert!(
                        Instant::now() < deadline,
                        "CDP {method}: no answer within {:?}",
                        self.answer_wait
                    );
                }
                Err(e) => panic!("CDP {method}: {e}"),
            }
        }
    }

    fn browser(&mut self, method: &str, params: Value) -> Value {
        self.send(false, method, params)
    }

    fn page(&mut self, method: &str, params: Value) -> Value {
        self.send(true, method, params)
    }

    /// Opens a new tab of the viewport's size and attaches to it.
    fn open_page(&mut self) {
        let target = self.browser("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self.browser(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        self.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_owned(),
        );
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": VIEWPORT.0, "height": VIEWPORT.1, "deviceScaleFactor": 1, "mobile": false }),
        );
    }

    /// A real (trusted) left click at the centre of the element `selector` matches: what a
    /// person does, and what the Fullscreen API requires.
    fn click(&mut self, selector: &str) {
        let rect: Option<Rect> = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector:?}); if (!e) return null; \
             const b = e.getBoundingClientRect(); return {{ x: b.x, y: b.y, w: b.width, h: b.height }}; }})()"
        ));
        let rect = rect.unwrap_or_else(|| panic!("no element {selector}"));
        let (x, y) = (rect.x + rect.w / 2.0, rect.y + rect.h / 2.0);
        for kind in ["mousePressed", "mouseReleased"] {
            self.page(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }
}

impl Page for Cdp {
    const ARTIFACTS: &'static str = "browser";

    fn start_navigation(&mut self, url: &str) {
        let r = self.page("Page.navigate", json!({ "url": url }));
        if let Some(err) = r.get("errorText") {
            panic!("navigating to {url}: {err}");
        }
    }

    fn answer_wait(&self) -> Duration {
        self.answer_wait
    }

    fn try_eval_json(&mut self, expr: &str) -> Result<Value, Value> {
        let r = self.try_send(
            true,
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(ex.clone());
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    fn screenshot_png(&mut self) -> Vec<u8> {
        let r = self.page("Page.captureScreenshot", json!({ "format": "png" }));
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64")
    }

    fn viewport(&mut self) -> (u32, u32) {
        VIEWPORT
    }

    fn screenshot_png_top_left(&mut self, w: u32, h: u32) -> Vec<u8> {
        let (w, h) = (f64::from(w), f64::from(h));
        let r = self.page(
            "Page.captureScreenshot",
            json!({ "format": "png", "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 } }),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64")
    }
}

/// Launches a browser with one attached tab.
fn browser_with_page(exe: &Path) -> (Chromium, Cdp) {
    let browser = Chromium::launch(exe);
    let mut cdp = Cdp::connect(&browser.ws_url);
    cdp.open_page();
    (browser, cdp)
}

#[test]
fn grid_and_camera_pages_show_live_video() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    let server = Mjpegd::start(TWO_CAMERAS, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let (_browser, mut cdp) = browser_with_page(&exe);

    // The grid and a camera's page live, as in every browser (tests/common/page.rs); then
    // what the tiles link to, and the camera page's buttons.
    let view = assert_grid_live(&mut cdp, &server);
    for t in &view.tiles {
        assert_eq!(
            t.link.as_deref(),
            Some(format!("/cameras/{}", t.camera).as_str()),
            "tile links to its page"
        );
    }
    // The first camera keeps the classic URL (works without JavaScript), the others their own.
    assert!(
        view.tile("alpha").src.ends_with("/video_feed"),
        "{}",
        view.tile("alpha").src
    );
    assert!(
        view.tile("beta").src.ends_with("/cameras/beta/stream"),
        "{}",
        view.tile("beta").src
    );

    // A camera's page: larger live view, snapshot and fullscreen buttons.
    assert_camera_page_live(&mut cdp, &server);
    let buttons: Value = cdp.eval(
        r#"(() => {
          const b = [...document.querySelectorAll("button")];
          const snap = b.find(e => e.textContent.trim() === "Snapshot");
          const link = snap && snap.closest("a");
          return {
            snapshot_href: link ? link.getAttribute("href") : null,
            snapshot_download: link ? link.getAttribute("download") : null,
            fullscreen: b.some(e => e.id === "fullscreen" && e.textContent.trim() === "Fullscreen"),
          };
        })()"#,
    );
    assert_eq!(
        buttons,
        json!({ "snapshot_href": "/cameras/alpha/snapshot.jpg", "snapshot_download": "alpha.jpg", "fullscreen": true })
    );

    // Snapshot: a click downloads a JPEG of the camera's size.
    let downloads = tempfile::tempdir().expect("tempdir");
    cdp.browser(
        "Browser.setDownloadBehavior",
        json!({ "behavior": "allow", "downloadPath": downloads.path().to_str().expect("utf-8 path") }),
    );
    cdp.click("header a[download] button");
    let file = downloads.path().join("alpha.jpg");
    let jpeg = wait_until(
        "the snapshot download",
        WAIT,
        || std::fs::read(&file).ok(),
        |j| j.as_ref().is_some_and(|j| j.ends_with(b"\xff\xd9")),
    )
    .expect("downloaded");
    let mut decoder = zune_jpeg::JpegDecoder::new(&jpeg[..]);
    decoder.decode().expect("the snapshot is a valid JPEG");
    assert_eq!(decoder.dimensions(), Some((320, 240)), "snapshot size");

    // Fullscreen: the live view fills the screen.
    cdp.click("#fullscreen");
    wait_until(
        "the live view fullscreen",
        WAIT,
        || cdp.eval::<bool>("document.fullscreenElement === document.querySelector('.single img')"),
        |&fs| fs,
    );
    cdp.screenshot("camera-fullscreen.png");
}

#[test]
fn many_cameras_grid_shows_refreshed_snapshots_within_the_connection_limit() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    // Six cameras: more than a browser's ~6 connections per host could stream at once (with
    // the state poll besides), so the grid must show snapshots. The first camera is larger
    // than the grid's 480-pixel thumbnails, to check that they are scaled down.
    let mut config = String::from(
        "[[cameras]]\nname = \"c1\"\nsource = \"testpattern\"\nsize = \"640x360\"\nfps = 5\n",
    );
    for i in 2..=6 {
        config += &format!(
            "[[cameras]]\nname = \"c{i}\"\nsource = \"testpattern\"\nsize = \"320x180\"\nfps = 5\n"
        );
    }
    let mut expected = vec![("c1".to_owned(), 480, 270, 5.0)];
    expected.extend((2..=6).map(|i| (format!("c{i}"), 320, 180, 5.0)));
    let expected: Vec<(&str, u32, u32, f64)> = expected
        .iter()
        .map(|(n, w, h, f)| (n.as_str(), *w, *h, *f))
        .collect();
    let server = Mjpegd::start(&config, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let (_browser, mut cdp) = browser_with_page(&exe);

    cdp.navigate(&format!("{}/", server.url));
    // Snapshots hold no stream, so no tile has viewers: the state still shows each online,
    // as each snapshot keeps its camera's capture running.
    let view = wait_until(
        "every grid tile showing a snapshot",
        WAIT,
        || cdp.probe(),
        |v| v.live(&expected, 0),
    );
    for t in &view.tiles {
        t.assert_meta();
        assert_eq!(
            t.mode, "snapshot",
            "{}: past 4 cameras tiles show snapshots",
            t.camera
        );
        let path = format!("/cameras/{}/snapshot.jpg?width=480&t=", t.camera);
        assert!(t.src.contains(&path), "{}: src {}", t.camera, t.src);
    }
    let viewers = server.viewers();
    assert!(
        viewers.iter().all(|(_, n)| *n == 0),
        "the grid opened streams: {viewers:?}"
    );

    // Refreshed: each tile loads a newer snapshot about every second. Shoot, wait until every
    // tile has loaded a new one, shoot again; every tile must have changed.
    let before = cdp.probe();
    let first = cdp.screenshot("snapshots-1.png");
    let refreshed = wait_until(
        "every snapshot tile refreshed",
        WAIT,
        || cdp.probe(),
        |v| {
            v.tiles.len() == before.tiles.len()
                && v.tiles.iter().zip(&before.tiles).all(|(now, then)| {
                    now.src != then.src && now.complete && now.width > 0 && now.rect == then.rect
                })
        },
    );
    let second = cdp.screenshot("snapshots-2.png");
    assert_tiles_changed(&refreshed, &first, &second);
}

/// Issue 22: over HTTPS the browser speaks HTTP/2, one connection carries every stream, and
/// the grid shows all twelve cameras live instead of snapshots.
#[cfg(feature = "tls")]
#[test]
fn over_https_the_grid_streams_twelve_cameras_on_one_http2_connection() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    let mut config = String::new();
    for i in 1..=12 {
        config += &format!(
            "[[cameras]]\nname = \"c{i:02}\"\nsource = \"testpattern\"\nsize = \"320x180\"\nfps = 5\n"
        );
    }
    let names: Vec<String> = (1..=12).map(|i| format!("c{i:02}")).collect();
    let expected: Vec<(&str, u32, u32, f64)> =
        names.iter().map(|n| (n.as_str(), 320, 180, 5.0)).collect();
    let server = Mjpegd::start_with(&config, "127.0.0.1:0", |dir| {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        common::write_self_signed(&cert, &key);
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
        vec![
            "--tls-cert".into(),
            path(&cert),
            "--tls-key".into(),
            path(&key),
        ]
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(server.url.starts_with("https://"), "{}", server.url);
    // The certificate is self-signed: trusting it is not what this test is about.
    let browser = Chromium::launch_with(&exe, &["--ignore-certificate-errors"]);
    let mut cdp = Cdp::connect(&browser.ws_url);
    cdp.open_page();

    cdp.navigate(&format!("{}/", server.url));
    let view = wait_until(
        "all twelve tiles live",
        RECONNECT_WAIT,
        || cdp.probe(),
        |v| v.live(&expected, 1),
    );
    for t in &view.tiles {
        assert_eq!(
            t.mode, "stream",
            "{}: over HTTP/2 every tile streams",
            t.camera
        );
    }
    let protocols: Value = cdp.eval(
        r#"(() => {
          const nav = performance.getEntriesByType("navigation")[0];
          const imgs = performance.getEntriesByType("resource").filter(e => e.initiatorType === "img");
          return { page: nav.nextHopProtocol, streams: [...new Set(imgs.map(e => e.nextHopProtocol))] };
        })()"#,
    );
    assert_eq!(protocols["page"], "h2", "{protocols}");
    // Four columns, so all twelve tiles are on screen for the screenshots (the page's own
    // layout scrolls them at this width; the pixels of off-screen tiles are not captured).
    cdp.eval::<Value>(
        "document.querySelector('main.grid').style.gridTemplateColumns = 'repeat(4, 1fr)'; null",
    );
    assert_live_between_screenshots(&mut cdp, "h2-grid");
}

#[test]
fn the_page_reconnects_by_itself_after_a_server_restart_or_a_broken_stream() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    let mut server = Mjpegd::start(TWO_CAMERAS, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let listen = server.addr().to_owned();
    let (_browser, mut cdp) = browser_with_page(&exe);
    cdp.navigate(&format!("{}/", server.url));
    wait_until(
        "every grid tile live",
        WAIT,
        || cdp.probe(),
        |v| v.live(&TWO_EXPECTED, 1),
    );

    // SIGTERM is a restart as a service manager does it: every stream ends cleanly, and the
    // <img> keeps its last frame. SIGKILL breaks every connection, as a crash or a network
    // failure does. The page must recover from both without a reload.
    for (signal, name) in [(Signal::SIGTERM, "restarted"), (Signal::SIGKILL, "killed")] {
        server.kill(signal);
        wait_until(
            "the page to notice the server is gone",
            WAIT,
            || cdp.probe().state_ok,
            |ok| ok.as_deref() == Some("0"),
        );
        // The same address again: the page knows no other. Retry, bounded, in case the old
        // server's socket lingers.
        let deadline = Instant::now() + WAIT;
        server = loop {
            match Mjpegd::start(TWO_CAMERAS, &listen) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => eprintln!("retrying: {e}"),
                Err(e) => panic!("{e}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        // The new server counts the page's streams: they came back by themselves.
        wait_until(
            &format!("the page's streams back after {signal}"),
            RECONNECT_WAIT,
            || server.viewers(),
            |v| v.len() == 2 && v.iter().all(|(_, n)| *n >= 1),
        );
        wait_until(
            "every grid tile live again",
            RECONNECT_WAIT,
            || cdp.probe(),
            |v| v.live(&TWO_EXPECTED, 1),
        );
        assert_live_between_screenshots(&mut cdp, name);
    }
}

/// Chromium logs in through the form and watches (tests/common/page.rs).
#[cfg(feature = "auth")]
#[test]
fn a_browser_logs_in_through_the_form_and_the_grid_is_live() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    let config = common::page::two_cameras_with_a_user();
    let server = Mjpegd::start(&config, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let (_browser, mut cdp) = browser_with_page(&exe);
    common::page::assert_logs_in_through_the_form(&mut cdp, &server);
}

/// Chromium paints the frame being served (tests/common/paint.rs); its own Accept picks the
/// advance-headers wire, no parameter needed.
#[test]
fn a_browser_paints_the_frame_being_served_at_once() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    let (_browser, mut cdp) = browser_with_page(&exe);
    assert_paints_at_once(&mut cdp);
}

/// On the old wire Chromium paints a part only once the next part's headers arrive (crbug
/// 527446): if this ever stops, the test above no longer proves anything.
#[test]
fn on_the_content_length_wire_chromium_paints_one_frame_late() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    let (_browser, mut cdp) = browser_with_page(&exe);
    assert_paints_one_frame_late_on_the_content_length_wire(&mut cdp);
}

/// Paint lag in frames at 1 and 30 fps, both wires: the numbers in BENCHMARKS.md. A
/// measurement, not a check: run with `cargo test -p mjpegd --test browser -- --ignored
/// --nocapture measure_paint_lag`.
#[test]
#[ignore = "a measurement for BENCHMARKS.md; prints, asserts nothing"]
fn measure_paint_lag() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    for (fps, n) in [(1.0, 3), (30.0, 25)] {
        for query in ["?advance_headers=0", "?advance_headers=1"] {
            let (_browser, mut cdp) = browser_with_page(&exe);
            let (samples, _) = paint_lag(&mut cdp, fps, n, query, 30);
            print_paint_lag(&format!("fps={fps} {query}"), &samples, n);
        }
    }
}

/// Where an element is on the page, if it exists, scrolled into view first (mouse events
/// only reach what is on screen).
fn rect_of(cdp: &mut Cdp, selector: &str) -> Option<Rect> {
    cdp.eval(&format!(
        "(() => {{ const e = document.querySelector({selector:?}); if (!e) return null; \
         e.scrollIntoView({{ block: 'center' }}); \
         const b = e.getBoundingClientRect(); return {{ x: b.x, y: b.y, w: b.width, h: b.height }}; }})()"
    ))
}

fn mouse(cdp: &mut Cdp, kind: &str, x: f64, y: f64) {
    cdp.page(
        "Input.dispatchMouseEvent",
        json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1 }),
    );
}

#[test]
fn camera_page_timeline_replays_a_clicked_moment_and_exports_a_dragged_range() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    let rec_dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[[cameras]]\nname = \"rec\"\nsource = \"testpattern\"\nsize = \"320x240\"\nfps = 15\n\
         [cameras.record]\ndir = \"{}\"\nsegment_seconds = 1\n",
        rec_dir.path().display()
    );
    let server = Mjpegd::start(&config, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    // Record a few seconds before looking.
    wait_until(
        "3 s recorded",
        3 * WAIT,
        || server.state()["cameras"][0]["recording"]["frames_written"].as_u64(),
        |n| n.is_some_and(|n| n >= 45),
    );
    let (_browser, mut cdp) = browser_with_page(&exe);
    cdp.navigate(&format!("{}/cameras/rec", server.url));
    let span = wait_until(
        "a recorded span on the timeline",
        WAIT,
        || rect_of(&mut cdp, "#timeline .span"),
        |r| r.as_ref().is_some_and(|r| r.w >= 2.0),
    )
    .expect("span");
    cdp.screenshot("timeline.png");
    let spans: Value =
        cdp.eval("fetch('/cameras/rec/recordings').then(r => r.json()).then(j => j.spans[0])");
    let (start, end) = (
        spans["start_us"].as_f64().expect("start") / 1e6,
        spans["end_us"].as_f64().expect("end") / 1e6,
    );

    // A click in the span replays from that moment in the page's view.
    let (x, y) = (span.x + span.w * 0.5, span.y + span.h / 2.0);
    mouse(&mut cdp, "mousePressed", x, y);
    mouse(&mut cdp, "mouseReleased", x, y);
    let from: f64 = wait_until(
        "the replay to start",
        WAIT,
        || {
            cdp.eval::<Option<String>>(
                "document.getElementById('recordings').dataset.replayFrom || null",
            )
        },
        Option::is_some,
    )
    .and_then(|s| s.parse().ok())
    .expect("replay time");
    // The timeline may extend past the span (it runs to now); the moment clicked is inside.
    assert!(
        from >= start - 1.0 && from <= end + 1.0,
        "clicked {from}, span {start}..{end}"
    );
    let shown = wait_until(
        "the replay painted in the view",
        WAIT,
        || {
            cdp.eval::<(String, u32)>("(() => { const i = document.querySelector('.single img'); return [i.currentSrc, i.naturalWidth]; })()")
        },
        |(src, w)| src.contains("/cameras/rec/replay?from=") && *w == 320,
    );
    assert!(shown.0.contains(&format!("from={from:.3}")), "{}", shown.0);
    cdp.screenshot("timeline-replay.png");
    // The page's live-stream watchdog leaves the replay alone (it is not a live viewer).
    std::thread::sleep(Duration::from_millis(6500));
    let src: String = cdp.eval("document.querySelector('.single img').currentSrc");
    assert!(src.contains("/replay?"), "the replay was replaced by {src}");

    // A drag over the span selects a range; Export downloads it as Matroska.
    let downloads = tempfile::tempdir().expect("tempdir");
    cdp.browser(
        "Browser.setDownloadBehavior",
        json!({ "behavior": "allow", "downloadPath": downloads.path().to_str().expect("utf-8 path") }),
    );
    let span = rect_of(&mut cdp, "#timeline .span").expect("span");
    let (x0, x1) = (span.x + span.w * 0.1, span.x + span.w * 0.9);
    mouse(&mut cdp, "mousePressed", x0, y);
    for i in 1..=5 {
        mouse(
            &mut cdp,
            "mouseMoved",
            x0 + (x1 - x0) * f64::from(i) / 5.0,
            y,
        );
    }
    mouse(&mut cdp, "mouseReleased", x1, y);
    let sel = rect_of(&mut cdp, "#timeline .sel").expect("selection");
    assert!(sel.w > span.w * 0.5, "selection {sel:?} over span {span:?}");
    cdp.click("#rec-export");
    let href: String = cdp.eval("document.getElementById('recordings').dataset.exportHref || ''");
    assert!(href.starts_with("/cameras/rec/export.mkv?from="), "{href}");
    let file = wait_until(
        "the export download",
        2 * WAIT,
        || {
            std::fs::read_dir(downloads.path())
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "mkv"))
        },
        Option::is_some,
    )
    .expect("downloaded");
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    assert!(name.starts_with("rec_"), "download named {name}");
    let bytes = std::fs::read(&file).expect("read export");
    assert_eq!(&bytes[..4], &[0x1A, 0x45, 0xDF, 0xA3], "a Matroska file");
    if common::require_tool("ffprobe") {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-show_entries",
                "stream=codec_name,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(&file)
            .output()
            .expect("ffprobe");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (codec, n) = text.split_once(',').expect("codec,frames");
        assert_eq!(codec, "mjpeg");
        assert!(n.parse::<u64>().is_ok_and(|n| n > 5), "{text}");
    }

    // Live goes back to the camera's stream.
    cdp.click("#rec-live");
    wait_until(
        "the live stream back",
        WAIT,
        || cdp.eval::<String>("document.querySelector('.single img').currentSrc"),
        |s| s.contains("/cameras/rec/stream"),
    );
}

/// A motion event is a mark on the camera page's timeline; a click on it replays the event from
/// its start and selects its range, which Export then takes.
#[test]
fn camera_page_timeline_marks_motion_events_and_exports_one() {
    let _serial = serial();
    let Some(exe) = chromium() else { return };
    if !common::require_tool("ffmpeg") {
        return;
    }
    let rec_dir = tempfile::tempdir().expect("tempdir");
    // A grey scene; a white square crosses it from t = 2 s to 4 s, then it is still.
    let source = "exec:ffmpeg -hide_banner -loglevel error -re -f lavfi -i \
        \\\"color=c=gray:s=320x240:r=10[bg];color=c=white:s=40x40:r=10[sq];\
        [bg][sq]overlay=x='if(between(t,2,4),20+(t-2)*120,if(lt(t,2),20,260))':y=100:shortest=1[out0]\\\" \
        -f mjpeg -q:v 5 -";
    let config = format!(
        "[[cameras]]\nname = \"mot\"\nsource = \"{source}\"\nsize = \"320x240\"\n\
         [cameras.record]\ndir = \"{}\"\nsegment_seconds = 1\n\
         [cameras.motion]\nmin_frames = 2\nevent_gap = 1\n",
        rec_dir.path().display()
    );
    let server = Mjpegd::start(&config, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let (_browser, mut cdp) = browser_with_page(&exe);
    cdp.navigate(&format!("{}/cameras/mot", server.url));
    let event: Value = wait_until(
        "an ended motion event",
        3 * WAIT,
        || {
            cdp.eval::<Value>(
                "fetch('/cameras/mot/events').then(r => r.json()).then(j => j.events.find(e => e.end) || null)",
            )
        },
        |e| !e.is_null(),
    );
    let (start, end) = (
        event["start_us"].as_f64().expect("start") / 1e6,
        event["end_us"].as_f64().expect("end") / 1e6,
    );
    // The page polls every 5 s; the ended event's mark appears on a later refresh (an event
    // still going on is drawn up to now).
    let mark = wait_until(
        "the ended event's mark on the timeline",
        2 * WAIT,
        || rect_of(&mut cdp, "#timeline .event[data-ended]"),
        |r| r.as_ref().is_some_and(|r| r.w >= 4.0),
    )
    .expect("mark");
    cdp.screenshot("timeline-event.png");
    let (x, y) = (mark.x + mark.w / 2.0, mark.y + mark.h / 2.0);
    mouse(&mut cdp, "mousePressed", x, y);
    mouse(&mut cdp, "mouseReleased", x, y);
    let from: f64 = wait_until(
        "the event's replay to start",
        WAIT,
        || {
            cdp.eval::<Option<String>>(
                "document.getElementById('recordings').dataset.replayFrom || null",
            )
        },
        Option::is_some,
    )
    .and_then(|s| s.parse().ok())
    .expect("replay time");
    assert!(
        (from - start).abs() < 0.002,
        "replay from {from}, event start {start}"
    );
    cdp.click("#rec-export");
    let href: String = cdp.eval("document.getElementById('recordings').dataset.exportHref || ''");
    assert_eq!(
        href,
        format!("/cameras/mot/export.mkv?from={start:.3}&to={end:.3}"),
        "Export takes the event's range"
    );
}

/// The controls panel of a camera page against a real V4L2 driver: `vivid` in the VM of
/// scripts/test-v4l2-vivid.sh, which serves its camera at `$MJPEGD_VIVID_URL` (a forwarded
/// port) until the script, once this test has exited, tells it that it is done. A slider, a checkbox, a menu and the
/// reset buttons are used as a person would (real clicks and value changes), and every result
/// is read back from the server, which reads the driver.
#[test]
#[ignore = "needs the vivid VM: scripts/test-v4l2-vivid.sh runs it with MJPEGD_VIVID_URL"]
fn controls_panel_sets_a_real_camera_control() {
    let _serial = serial();
    let base = std::env::var("MJPEGD_VIVID_URL")
        .expect("MJPEGD_VIVID_URL: the camera server of scripts/test-v4l2-vivid.sh");
    let Some(exe) = chromium() else { return };
    let (_browser, mut cdp) = browser_with_page(&exe);
    // The page comes from qemu without KVM: every request is slower than from a local server.
    let wait = 6 * WAIT;
    cdp.answer_wait = wait;
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // The controls as the server reads them from the driver now.
    let driver = |key: &str| -> Value {
        let body: Value = serde_json::from_slice(&http_get(&addr, "/cameras/cam/controls", wait))
            .expect("controls JSON");
        body["controls"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["key"] == key))
            .map(|c| c["value"].clone())
            .unwrap_or(Value::Null)
    };
    cdp.navigate(&format!("{base}/cameras/cam"));
    let rows: Vec<String> = wait_until(
        "the controls panel",
        wait,
        || {
            cdp.eval::<Vec<String>>(
                "[...document.querySelectorAll('#controls[data-loaded] .ctl')].map(r => r.dataset.key)",
            )
        },
        |rows| rows.len() > 10,
    );
    for key in ["brightness", "gain_automatic", "gain", "menu", "button"] {
        assert!(rows.iter().any(|r| r == key), "no row for {key}: {rows:?}");
    }
    cdp.eval::<Value>(
        "(() => { document.getElementById('controls').scrollIntoView(); return null; })()",
    );
    cdp.screenshot("controls-panel.png");
    let row = |key: &str, sel: &str| format!("#controls .ctl[data-key={key:?}] {sel}");
    // The panel is below the video: scroll what is clicked into view, as a person would.
    let click = |cdp: &mut Cdp, sel: &str| {
        cdp.eval::<Value>(&format!(
            "(() => {{ document.querySelector({sel:?}).scrollIntoView({{ block: 'center' }}); return null; }})()"
        ));
        cdp.click(sel);
    };

    // The slider, moved and released: the driver has the value.
    cdp.eval::<Value>(&format!(
        "(() => {{ const s = document.querySelector({:?}); s.value = 33; \
         s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); return null; }})()",
        row("brightness", "input[type=range]")
    ));
    wait_until(
        "brightness 33 in the driver",
        wait,
        || driver("brightness"),
        |v| *v == 33,
    );
    let shown: String = wait_until(
        "the redrawn slider",
        wait,
        || {
            cdp.eval::<String>(&format!(
                "document.querySelector({:?}).textContent",
                row("brightness", "output")
            ))
        },
        |t| t == "33",
    );
    assert_eq!(shown, "33");

    // Gain is inactive under automatic gain: its slider is disabled until the checkbox is off.
    let disabled = |cdp: &mut Cdp| -> bool {
        cdp.eval(&format!(
            "document.querySelector({:?}).disabled",
            row("gain", "input")
        ))
    };
    assert_eq!(
        driver("gain_automatic"),
        1,
        "vivid starts with automatic gain"
    );
    assert!(
        disabled(&mut cdp),
        "gain's slider is enabled under automatic gain"
    );
    click(&mut cdp, &row("gain_automatic", "input[type=checkbox]"));
    wait_until(
        "automatic gain off in the driver",
        wait,
        || driver("gain_automatic"),
        |v| *v == 0,
    );
    wait_until("gain's slider enabled", wait, || disabled(&mut cdp), |d| !d);

    // A menu: the last item chosen.
    let last: i64 = cdp.eval(&format!(
        "(() => {{ const m = document.querySelector({:?}); const v = m.options[m.options.length - 1].value; \
         m.value = v; m.dispatchEvent(new Event('change')); return Number(v); }})()",
        row("menu", "select")
    ));
    wait_until(
        "the menu item in the driver",
        wait,
        || driver("menu"),
        |v| *v == last,
    );

    // An out-of-range value typed into the page's request is refused with the reason shown.
    cdp.eval::<Value>(&format!(
        "(() => {{ const s = document.querySelector({:?}); s.max = 1000; s.value = 999; \
         s.dispatchEvent(new Event('change')); return null; }})()",
        row("brightness", "input[type=range]")
    ));
    let error: String = wait_until(
        "the refusal shown",
        wait,
        || cdp.eval::<String>("document.querySelector('#controls .ctl-error').textContent"),
        |t| !t.is_empty(),
    );
    assert!(
        error.contains("brightness") && error.contains("0..=255"),
        "{error}"
    );
    assert_eq!(
        driver("brightness"),
        33,
        "a refused value changed the driver"
    );

    // One control back to its default, then all.
    click(&mut cdp, &row("brightness", ".ctl-default"));
    wait_until(
        "brightness at its default",
        wait,
        || driver("brightness"),
        |v| *v == 128,
    );
    click(&mut cdp, "#ctl-reset");
    wait_until(
        "automatic gain back on (its default)",
        wait,
        || driver("gain_automatic"),
        |v| *v == 1,
    );
}
