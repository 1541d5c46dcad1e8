//! The web page in a third engine: Firefox (Gecko), the browser of many Home Assistant and
//! OctoPrint users, driven over its own Marionette protocol (Debian packages `firefox-esr` but
//! not `geckodriver`, and Marionette is what geckodriver itself speaks to Firefox). Headless, so
//! no X display is needed. The same checks as Chromium's and WebKit's (tests/common/page.rs and
//! tests/common/paint.rs): every tile's `<img>` decodes at its camera's size, the pixels of
//! every tile change between two screenshots, and the frame being served is the one painted,
//! on both wires (Firefox, unlike the other two, ends a part at its `Content-Length`).
//! Screenshots are kept under `target/tmp/firefox/`.
//!
//! Needs `firefox-esr` (scripts/install-test-deps.sh installs it). Without it the tests skip
//! loudly, or fail when MJPEGD_REQUIRE_TOOLS is set (as in CI).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use common::page::{Mjpegd, Page, TWO_CAMERAS, assert_pages_live, wait_until};
use common::paint::{
    assert_paints_at_once, assert_paints_at_once_on_the_content_length_wire, measure_paint_lag_in,
};
use common::{WAIT, find_tool, joined, stop_group, watch_log};

/// The browser window's outer size; the viewport is read back from the page.
const WINDOW: (u32, u32) = (1280, 800);

/// Largest Marionette message accepted from the browser: a screenshot of the window is a few
/// hundred kilobytes of base64; anything far larger is a broken connection, not an answer.
const MAX_MESSAGE: usize = 64 << 20;

/// Firefox tests run one at a time, as the other browsers' do (two at once on a 2-core machine
/// make frame timing, and so the tests, flaky).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `firefox-esr` (or `firefox`), or `None` after a loud skip notice; with MJPEGD_REQUIRE_TOOLS
/// set a missing one fails the test.
fn tool() -> Option<PathBuf> {
    find_tool(
        "Firefox (Debian firefox-esr)",
        &["firefox-esr", "firefox"],
        Some("MJPEGD_FIREFOX"),
    )
}

/// One test's browser, with the test's turn held. Fields drop in order: the browser first.
struct Fixture {
    firefox: Firefox,
    _serial: MutexGuard<'static, ()>,
}

fn fixture() -> Option<Fixture> {
    let serial = serial();
    let exe = tool()?;
    Some(Fixture {
        firefox: Firefox::launch(&exe),
        _serial: serial,
    })
}

/// Preferences of the test profile: Marionette on a port Firefox picks (and writes to
/// `MarionetteActivePort` in the profile), and none of the first-run pages, update checks and
/// telemetry that would load other pages or reach the network during a test.
const PREFS: &str = r#"
user_pref("marionette.port", 0);
user_pref("app.update.disabledForTesting", true);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.startup.page", 0);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("browser.safebrowsing.update.enabled", false);
user_pref("extensions.update.enabled", false);
"#;

/// A headless Firefox with a fresh profile and one Marionette session, its process group
/// stopped when dropped.
struct Firefox {
    connection: Marionette,
    viewport: (u32, u32),
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Firefox {
    /// Starts Firefox, connects to Marionette, opens a session and sizes the window.
    fn launch(exe: &Path) -> Firefox {
        let profile = tempfile::tempdir().expect("profile directory");
        std::fs::write(profile.path().join("user.js"), PREFS).expect("write user.js");
        let mut child = Command::new(exe)
            .args(["--headless", "--marionette", "--no-remote", "--profile"])
            .arg(profile.path())
            .arg("about:blank")
            .env("MOZ_HEADLESS", "1")
            // No crash reporter dialog, no accessibility bus to look for on a test machine.
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .env("NO_AT_BRIDGE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        let (_, log) = watch_log(child.stderr.take().expect("stderr"), |_| None);
        let port_file = profile.path().join("MarionetteActivePort");
        // A first start with a fresh profile on a busy 2-core machine takes seconds.
        let start_limit = WAIT * 3;
        let deadline = Instant::now() + start_limit;
        let port = loop {
            // Firefox writes the file once Marionette listens; a partial write reads as junk.
            let port = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok());
            if let Some(port) = port {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "Firefox exited ({status}) before Marionette listened; its log:\n{}",
                    joined(&log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "Firefox's Marionette did not listen within {start_limit:?}; its log:\n{}",
                joined(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let connection = Marionette::connect(port).unwrap_or_else(|e| {
            panic!(
                "Marionette on port {port}: {e}; Firefox's log:\n{}",
                joined(&log)
            )
        });
        let mut firefox = Firefox {
            connection,
            viewport: (0, 0),
            child,
            log,
            _profile: profile,
        };
        // Marionette takes the capabilities themselves (no W3C `alwaysMatch` wrapper).
        firefox.command(
            "WebDriver:NewSession",
            json!({
                // A navigation is done at once: the page's live <img>s never finish loading,
                // and the tests wait for what they need themselves.
                "pageLoadStrategy": "none",
                "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64 },
            }),
        );
        firefox.command(
            "WebDriver:SetWindowRect",
            json!({ "x": 0, "y": 0, "width": WINDOW.0, "height": WINDOW.1 }),
        );
        // As in WebKit, the page may learn its new size after the driver answers.
        let (w, h, scale): (u32, u32, f64) = wait_until(
            "the Firefox window to take its size",
            WAIT,
            || firefox.eval("[innerWidth, innerHeight, devicePixelRatio]"),
            // Headless, the window has no borders: the width is the window's.
            |&(w, h, _)| w == WINDOW.0 && h > 0 && h <= WINDOW.1,
        );
        assert_eq!(
            scale, 1.0,
            "at a device scale of 1 DOM rectangles index screenshots"
        );
        firefox.viewport = (w, h);
        firefox
    }

    /// A Marionette command, failing the test (with Firefox's log) on an error.
    fn command(&mut self, name: &str, params: Value) -> Value {
        match self.connection.command(name, params) {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => panic!(
                "Marionette {name} failed: {error}\nFirefox's log:\n{}",
                joined(&self.log)
            ),
            Err(e) => panic!(
                "Marionette {name}: {e}\nFirefox's log:\n{}",
                joined(&self.log)
            ),
        }
    }
}

impl Page for Firefox {
    const ARTIFACTS: &'static str = "firefox";

    fn start_navigation(&mut self, url: &str) {
        self.command("WebDriver:Navigate", json!({ "url": url }));
    }

    fn try_eval_json(&mut self, expr: &str) -> Result<Value, Value> {
        // As W3C "execute script", Marionette awaits a promise the script returns.
        let params = json!({ "script": format!("return ({expr});"), "args": [] });
        match self.connection.command("WebDriver:ExecuteScript", params) {
            Ok(Ok(answer)) => Ok(answer.get("value").cloned().unwrap_or(Value::Null)),
            Ok(Err(error)) => Err(error),
            Err(e) => panic!(
                "Marionette ExecuteScript: {e}\nFirefox's log:\n{}",
                joined(&self.log)
            ),
        }
    }

    fn screenshot_png(&mut self) -> Vec<u8> {
        let answer = self.command(
            "WebDriver:TakeScreenshot",
            json!({ "full": false, "hash": false }),
        );
        base64::engine::general_purpose::STANDARD
            .decode(answer["value"].as_str().expect("screenshot data"))
            .expect("screenshot is base64")
    }

    fn viewport(&mut self) -> (u32, u32) {
        self.viewport
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        // Ends the session (Firefox stays up without one); the process group is stopped after.
        let _ = self
            .connection
            .command("WebDriver:DeleteSession", json!({}));
        stop_group(&mut self.child);
    }
}

/// A Marionette connection: messages are `LENGTH:JSON`, a command `[0, id, name, params]`, its
/// answer `[1, id, error, result]`.
struct Marionette {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    next_id: u64,
}

impl Marionette {
    /// Connects and reads the greeting (`{"applicationType": "gecko", ...}`).
    fn connect(port: u16) -> Result<Marionette, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        // A command answers within its own timeout (WAIT); past twice that the browser hangs.
        stream
            .set_read_timeout(Some(WAIT + WAIT + WAIT))
            .map_err(|e| e.to_string())?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut m = Marionette {
            reader,
            stream,
            next_id: 0,
        };
        let hello = m.read()?;
        if hello["applicationType"] != json!("gecko") {
            return Err(format!("not a Marionette greeting: {hello}"));
        }
        Ok(m)
    }

    /// Sends a command; `Ok(Err(error))` is the browser's error object.
    fn command(&mut self, name: &str, params: Value) -> Result<Result<Value, Value>, String> {
        self.next_id += 1;
        let id = self.next_id;
        let body = json!([0, id, name, params]).to_string();
        self.stream
            .write_all(format!("{}:{body}", body.len()).as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        loop {
            let answer = self.read()?;
            // Only answers to this command are expected; an older one (a command that timed
            // out on our side) is skipped.
            if answer[0] != json!(1) || answer[1] != json!(id) {
                continue;
            }
            return Ok(if answer[2].is_null() {
                Ok(answer[3].clone())
            } else {
                Err(answer[2].clone())
            });
        }
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut length = Vec::new();
        self.reader
            .by_ref()
            .take(20)
            .read_until(b':', &mut length)
            .map_err(|e| format!("read: {e}"))?;
        let digits = length
            .strip_suffix(b":")
            .ok_or_else(|| format!("no message length: {:?}", String::from_utf8_lossy(&length)))?;
        let n: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .filter(|&n| n <= MAX_MESSAGE)
            .ok_or_else(|| format!("bad message length {:?}", String::from_utf8_lossy(digits)))?;
        let mut body = vec![0; n];
        self.reader
            .read_exact(&mut body)
            .map_err(|e| format!("read {n} bytes: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("not JSON ({e})"))
    }
}

/// Firefox logs in through the form and watches (tests/common/page.rs).
#[cfg(feature = "auth")]
#[test]
fn logs_in_through_the_form_and_the_grid_is_live_in_firefox() {
    let Some(mut f) = fixture() else { return };
    let config = common::page::two_cameras_with_a_user();
    let server = Mjpegd::start(&config, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    common::page::assert_logs_in_through_the_form(&mut f.firefox, &server);
}

#[test]
fn grid_and_camera_pages_show_live_video_in_firefox() {
    let Some(mut f) = fixture() else { return };
    let server = Mjpegd::start(TWO_CAMERAS, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    // The same checks as Chromium's and WebKit's: the grid, then a camera's page.
    assert_pages_live(&mut f.firefox, &server);
}

/// Firefox paints the frame being served (tests/common/paint.rs): its own `Accept` picks the
/// advance-headers wire, as Chromium's and Safari's do.
#[test]
fn firefox_paints_the_frame_being_served_at_once() {
    let Some(mut f) = fixture() else { return };
    assert_paints_at_once(&mut f.firefox);
}

/// Unlike Chromium and WebKit, Firefox ends a multipart part at its `Content-Length`: on the
/// old wire (`?advance_headers=0`) it paints the frame being served too. So Firefox does not
/// need the advance-headers wire, and the test above shows that the wire does it no harm.
#[test]
fn on_the_content_length_wire_firefox_paints_at_once_too() {
    let Some(mut f) = fixture() else { return };
    assert_paints_at_once_on_the_content_length_wire(&mut f.firefox);
}

/// Paint lag in Firefox at 1 and 30 fps, on both wires and on the one Firefox's `Accept` picks.
/// A measurement, not a check: `cargo test -p mjpegd --test firefox -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; prints, asserts nothing"]
fn measure_paint_lag_in_firefox() {
    let _serial = serial();
    let Some(exe) = tool() else { return };
    measure_paint_lag_in("firefox", || Firefox::launch(&exe));
}
