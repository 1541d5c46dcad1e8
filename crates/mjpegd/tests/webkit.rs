//! The web page in a second engine: WebKitGTK (the engine of Safari and GNOME Web), driven
//! over the W3C WebDriver protocol by Debian's `WebKitWebDriver`, in MiniBrowser on a private
//! Xvfb display the test starts itself. The same checks as Chromium's in tests/browser.rs (the
//! page model and the pixel checks live in tests/common/page.rs): every tile's `<img>` decodes
//! at its camera's size, the state line is filled in, and the pixels of every tile change
//! between two screenshots. Screenshots are kept under `target/tmp/webkit/`.
//!
//! Needs `webkit2gtk-driver` and `xvfb` (scripts/install-test-deps.sh installs both). Without
//! them the tests skip loudly, or fail when MJPEGD_REQUIRE_TOOLS is set (as in CI).

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use common::page::{Mjpegd, Page, TWO_CAMERAS, assert_pages_live, http_request, wait_until};
use common::paint::{
    assert_paints_at_once, assert_paints_one_frame_late_on_the_content_length_wire,
    measure_paint_lag_in,
};
use common::{WAIT, find_tool, free_port, joined, stop_group, watch_log};

/// The browser window's outer size. MiniBrowser's toolbar takes some of its height, so the
/// viewport (what screenshots show) is read back from the page rather than assumed.
const WINDOW: (u32, u32) = (1280, 800);

/// WebKit tests run one at a time, as Chromium's do: two browsers at once on a 2-core machine
/// make frame timing, and so the tests, flaky.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One test's browser: a WebKit session on an X display of its own, the test's turn held.
/// Fields drop in order: the browser, then its display, then the turn.
struct Fixture {
    webkit: WebKit,
    _x: Xvfb,
    _serial: MutexGuard<'static, ()>,
}

/// Waits for the test's turn and starts Xvfb and WebKit; `None` when a tool is missing (see
/// [`tools`]).
fn fixture() -> Option<Fixture> {
    let serial = serial();
    let (driver, xvfb) = tools()?;
    let x = Xvfb::start(&xvfb);
    Some(Fixture {
        webkit: WebKit::launch(&driver, &x.display),
        _x: x,
        _serial: serial,
    })
}

/// `WebKitWebDriver` and `Xvfb`, or `None` after a loud skip notice; with MJPEGD_REQUIRE_TOOLS
/// set a missing one fails the test.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let driver = find_tool(
        "WebKitWebDriver (Debian webkit2gtk-driver)",
        &["WebKitWebDriver"],
        Some("MJPEGD_WEBKIT_DRIVER"),
    )?;
    let xvfb = find_tool("Xvfb (Debian xvfb)", &["Xvfb"], None)?;
    Some((driver, xvfb))
}

/// A child process in its own process group (so the browser and helpers it starts end with
/// it), with its output kept for failure messages; stopped when dropped.
struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

/// An X server of its own for the browser: `-displayfd` has Xvfb pick a free display and say
/// which, so tests never collide with another display on the machine, and `cargo test` alone
/// is enough (no `xvfb-run` wrapper).
struct Xvfb {
    _daemon: Daemon,
    /// `:N`, for `DISPLAY`.
    display: String,
}

impl Xvfb {
    /// Starts Xvfb on the first free display and waits until it names it.
    fn start(exe: &Path) -> Xvfb {
        let mut child = Command::new(exe)
            .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
            .arg(format!("{}x{}x24", WINDOW.0, WINDOW.1 + 200))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn Xvfb");
        let (_, log) = watch_log(child.stderr.take().expect("stderr"), |_| None);
        let (numbers, _) = watch_log(child.stdout.take().expect("stdout"), |line| {
            Some(line.trim().to_owned())
        });
        let daemon = Daemon { child, log };
        let number = numbers.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "Xvfb named no display within {WAIT:?}; its log:\n{}",
                joined(&daemon.log)
            )
        });
        Xvfb {
            display: format!(":{number}"),
            _daemon: daemon,
        }
    }
}

/// `WebKitWebDriver` on a free port, with one session: a MiniBrowser window on `display`.
/// The session is deleted (closing the browser) and the driver stopped when dropped.
struct WebKit {
    /// `127.0.0.1:PORT` of the driver.
    addr: String,
    session: String,
    /// Read back from the page once the window has its size.
    viewport: (u32, u32),
    daemon: Daemon,
}

impl WebKit {
    /// Starts the driver, opens a session and sizes its window.
    fn launch(driver: &Path, display: &str) -> WebKit {
        let (addr, daemon) = Self::start_driver(driver, display);
        let mut webkit = WebKit {
            addr,
            session: String::new(),
            viewport: (0, 0),
            daemon,
        };
        let caps = json!({ "capabilities": { "alwaysMatch": {
            // The driver's default browser (MiniBrowser) in automation mode; documented in
            // WebKit's Source/WebDriver/gtk/WebDriverServiceGtk.cpp.
            "webkitgtk:browserOptions": { "args": ["--automation"] },
            // A navigation is done at DOMContentLoaded: the page's live <img>s never finish
            // loading, and the tests wait for what they need themselves.
            "pageLoadStrategy": "none",
            "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64 },
        } } });
        let session = webkit.command("POST", "/session", Some(&caps));
        webkit.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {session}"))
            .to_owned();
        webkit.session_command(
            "POST",
            "/window/rect",
            json!({ "x": 0, "y": 0, "width": WINDOW.0, "height": WINDOW.1 }),
        );
        // The driver answers before the window has its new size: on a slow machine the page
        // still reported the default 1024-pixel window while screenshots were already 1280
        // wide. The width has no toolbar, so it says when the resize has reached the page.
        let (w, h, scale): (u32, u32, f64) = wait_until(
            "the WebKit window to take its size",
            WAIT,
            || webkit.eval("[innerWidth, innerHeight, devicePixelRatio]"),
            |&(w, h, _)| w == WINDOW.0 && h > 0 && h <= WINDOW.1,
        );
        assert_eq!(
            scale, 1.0,
            "at a device scale of 1 DOM rectangles index screenshots"
        );
        webkit.viewport = (w, h);
        webkit
    }

    /// Starts the driver and waits until it is ready. The port is free a moment before the
    /// driver binds it; another process may take it in between, so a driver that exits at once
    /// is started again on another port, a few times.
    fn start_driver(driver: &Path, display: &str) -> (String, Daemon) {
        for _ in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut child = Command::new(driver)
                .arg(format!("--port={}", addr.rsplit(':').next().unwrap_or("")))
                .env("DISPLAY", display)
                // X11 only (Xvfb); no accessibility bus to look for on a test machine.
                .env("GDK_BACKEND", "x11")
                .env("NO_AT_BRIDGE", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn()
                .expect("spawn WebKitWebDriver");
            let (_, log) = watch_log(child.stderr.take().expect("stderr"), |_| None);
            let mut daemon = Daemon { child, log };
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if daemon.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(&addr).is_ok() {
                    let (status, body) = http_request(&addr, "GET", "/status", None, WAIT);
                    let ready: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if status == 200 && ready["value"]["ready"] == json!(true) {
                        return (addr, daemon);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "WebKitWebDriver on {addr} did not get ready; its log:\n{}",
                joined(&daemon.log)
            );
            stop_group(&mut daemon.child);
        }
        panic!("WebKitWebDriver did not start (three tries)");
    }

    /// One WebDriver command: the answer's `value`, or the error object the driver returned.
    fn try_command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Value> {
        // A script or navigation may take up to its own timeout (WAIT) before the driver answers.
        let (status, raw) = http_request(&self.addr, method, path, body, WAIT + WAIT);
        let answer: Value = serde_json::from_slice(&raw).unwrap_or_else(|e| {
            panic!(
                "WebDriver {method} {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&raw)
            )
        });
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if status == 200 { Ok(value) } else { Err(value) }
    }

    /// As [`WebKit::try_command`], failing the test (with the driver's log) on an error.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.try_command(method, path, body).unwrap_or_else(|err| {
            panic!(
                "WebDriver {method} {path} failed: {err}\ndriver log:\n{}",
                joined(&self.daemon.log)
            )
        })
    }

    /// A command on the session (`path` below `/session/ID`).
    fn session_command(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = (method == "POST").then_some(body);
        self.command(method, &path, body.as_ref())
    }
}

impl Page for WebKit {
    const ARTIFACTS: &'static str = "webkit";

    fn start_navigation(&mut self, url: &str) {
        self.session_command("POST", "/url", json!({ "url": url }));
    }

    fn try_eval_json(&mut self, expr: &str) -> Result<Value, Value> {
        // The W3C "execute script" awaits a promise the script returns.
        let path = format!("/session/{}/execute/sync", self.session);
        let body = json!({ "script": format!("return ({expr});"), "args": [] });
        self.try_command("POST", &path, Some(&body))
    }

    fn screenshot_png(&mut self) -> Vec<u8> {
        let data = self.session_command("GET", "/screenshot", Value::Null);
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("screenshot data"))
            .expect("screenshot is base64")
    }

    fn viewport(&mut self) -> (u32, u32) {
        self.viewport
    }
}

impl Drop for WebKit {
    fn drop(&mut self) {
        // Closes the browser the polite way; the driver's process group is stopped after.
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.try_command("DELETE", &path, None)
            }));
        }
    }
}

/// WebKit logs in through the form and watches (tests/common/page.rs).
#[cfg(feature = "auth")]
#[test]
fn logs_in_through_the_form_and_the_grid_is_live_in_webkit() {
    let Some(mut f) = fixture() else { return };
    let config = common::page::two_cameras_with_a_user();
    let server = Mjpegd::start(&config, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    common::page::assert_logs_in_through_the_form(&mut f.webkit, &server);
}

#[test]
fn grid_and_camera_pages_show_live_video_in_webkit() {
    let Some(mut f) = fixture() else { return };
    let server = Mjpegd::start(TWO_CAMERAS, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    // The same checks as Chromium's (tests/common/page.rs): the grid, then a camera's page.
    assert_pages_live(&mut f.webkit, &server);
}

/// WebKit paints the frame being served (tests/common/paint.rs): its own Accept (Safari's)
/// picks the advance-headers wire as Chromium's does.
#[test]
fn webkit_paints_the_frame_being_served_at_once() {
    let Some(mut f) = fixture() else { return };
    assert_paints_at_once(&mut f.webkit);
}

/// WebKit, like Chromium, paints a multipart part only once the next part's headers arrive:
/// on the old wire (`?advance_headers=0`) it shows every frame one frame late. So the
/// advance-headers wire is needed for WebKit too; if this ever stops, the test above no longer
/// proves anything.
#[test]
fn on_the_content_length_wire_webkit_paints_one_frame_late() {
    let Some(mut f) = fixture() else { return };
    assert_paints_one_frame_late_on_the_content_length_wire(&mut f.webkit);
}

/// Paint lag in WebKit at 1 and 30 fps, on both wires and on the one WebKit's Accept picks. A
/// measurement, not a check: run with `cargo test -p mjpegd --test webkit -- --ignored
/// --nocapture measure_paint_lag`.
#[test]
#[ignore = "a measurement; prints, asserts nothing"]
fn measure_paint_lag_in_webkit() {
    let _serial = serial();
    let Some((driver, xvfb)) = tools() else {
        return;
    };
    let x = Xvfb::start(&xvfb);
    measure_paint_lag_in("webkit", || WebKit::launch(&driver, &x.display));
}
