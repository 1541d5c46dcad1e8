//! Camera controls through a real mjpegd server in this process, against the real driver:
//! listing, setting (JSON and mjpg-streamer's command URL), errors, and the values coming back
//! after a device reopen, a server restart and with config values. Each value is read back
//! with `v4l2-ctl --get-ctrl`, a program that is not mjpegd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mjpegd::hub::CameraConfig;
use mjpegd::source::v4l2::V4l2Opener;
use mjpegd::source::{Opener, Params};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest wait for one HTTP answer (a snapshot opens the device in an emulated machine).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A server serving one camera, `cam`, from the device.
struct Running {
    addr: std::net::SocketAddr,
    shutdown: mjpegd::shutdown::CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(
        device: &str,
        state: &Path,
        config: BTreeMap<String, i64>,
    ) -> Result<Running, String> {
        Running::start_on(device, state, config, "127.0.0.1:0").await
    }

    async fn start_on(
        device: &str,
        state: &Path,
        config: BTreeMap<String, i64>,
        listen: &str,
    ) -> Result<Running, String> {
        let params = Params {
            width: 640,
            height: 480,
            fps: 30.0,
            quality: 85,
        };
        let opener: Arc<dyn Opener> =
            Arc::new(V4l2Opener::new(device, None, params).map_err(|e| e.to_string())?);
        let mut camera = CameraConfig::new("cam", opener, params);
        // Capture stops soon after a snapshot, so the next snapshot opens the device again.
        camera.idle_timeout = Duration::from_millis(200);
        camera.controls = config;
        let shutdown = mjpegd::shutdown::CancellationToken::new();
        let server = mjpegd::server::Server::new(
            vec![camera],
            mjpegd::http::HttpConfig::default(),
            mjpegd::server::ServerConfig::default(),
            shutdown.clone(),
        )
        .with_state_dir(Some(state));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("bind {listen}: {e} (is the interface up?)"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let task = tokio::spawn(server.run(listener));
        Ok(Running {
            addr,
            shutdown,
            task,
        })
    }

    /// Stops the server, then waits until its capture thread has closed the device (that
    /// thread may still be finishing a frame when the server has stopped serving), so the next
    /// server's capture opens the device instead of finding it busy.
    async fn stop(self, device: &str) -> Result<(), String> {
        self.shutdown.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("server failed: {e}")),
            Err(e) => return Err(format!("server task: {e}")),
        }
        let params = Params {
            width: 640,
            height: 480,
            fps: 30.0,
            quality: 85,
        };
        let opener = V4l2Opener::new(device, None, params).map_err(|e| e.to_string())?;
        let deadline = std::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            match opener.open().await {
                Ok(source) => {
                    drop(source);
                    return Ok(());
                }
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(format!(
                        "{device} still not free after the server stopped: {e}"
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// One request on its own connection; the status, the headers (lowercase names) and body.
    async fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> Result<(u16, String, Vec<u8>), String> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if let Some(body) = json {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(self.addr).await?;
            s.write_all(req.as_bytes()).await?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        let raw = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{method} {path}: no answer within {ANSWER_TIMEOUT:?}"))?
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{method} {path}: no end of head"))?;
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {path}: bad status line"))?;
        let mut body = raw[split + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        Ok((status, head, body))
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let (status, _, raw) = self.request(method, path, body).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// A snapshot: starts capture, which opens the device (and restores the controls).
    async fn snapshot(&self) -> Result<(), String> {
        let (status, _, body) = self
            .request("GET", "/cameras/cam/snapshot.jpg", None)
            .await?;
        if status != 200 || !body.starts_with(&[0xff, 0xd8]) {
            return Err(format!("snapshot: status {status}, {} bytes", body.len()));
        }
        Ok(())
    }
}

/// Undoes chunked transfer encoding (hyper chunks bodies of unknown length).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// `v4l2-ctl --get-ctrl NAME`: the driver's value, read by another program.
fn v4l2_ctl_get(device: &str, name: &str) -> Result<i64, String> {
    let out = std::process::Command::new("v4l2-ctl")
        .args(["-d", device, "--get-ctrl", name])
        .output()
        .map_err(|e| format!("cannot run v4l2-ctl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // `brightness: 128`, or for menus `menu: 4 (Menu Item 4)`.
    text.split_once(':')
        .and_then(|(_, v)| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            format!(
                "v4l2-ctl --get-ctrl {name}: {text:?} {:?}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// `v4l2-ctl --set-ctrl NAME=V`: a change behind mjpegd's back.
fn v4l2_ctl_set(device: &str, name: &str, value: i64) -> Result<(), String> {
    let status = std::process::Command::new("v4l2-ctl")
        .args(["-d", device, "--set-ctrl", &format!("{name}={value}")])
        .status()
        .map_err(|e| format!("cannot run v4l2-ctl: {e}"))?;
    if !status.success() {
        return Err(format!("v4l2-ctl --set-ctrl {name}={value} failed"));
    }
    Ok(())
}

fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn control<'a>(list: &'a Value, key: &str) -> Result<&'a Value, String> {
    list["controls"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["key"] == key))
        .ok_or_else(|| format!("no control {key:?} listed"))
}

fn has_flag(c: &Value, flag: &str) -> bool {
    c["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

/// Runs every check; a one-line summary on success.
pub(crate) async fn check(device: &str) -> Result<String, String> {
    let state = PathBuf::from("/tmp/mjpegd-state");
    let _ = std::fs::remove_dir_all(&state);
    let memory = state.join("controls/cam.json");

    let server = Running::start(device, &state, BTreeMap::new()).await?;
    let (status, list) = server.json("GET", "/cameras/cam/controls", None).await?;
    expect(status == 200, || format!("GET controls: {status} {list}"))?;
    let all = list["controls"].as_array().cloned().unwrap_or_default();
    println!("controls: {} listed", all.len());
    for c in &all {
        println!(
            "  {} {} {} {}..{} default {} value {} flags {}",
            c["key"], c["id"], c["type"], c["min"], c["max"], c["default"], c["value"], c["flags"]
        );
    }
    let brightness = control(&list, "brightness")?;
    expect(
        brightness["id"] == 0x0098_0900
            && brightness["type"] == "integer"
            && brightness["min"] == 0
            && brightness["max"] == 255
            && brightness["value"] == v4l2_ctl_get(device, "brightness")?,
        || format!("brightness as listed: {brightness}"),
    )?;
    let menu = all
        .iter()
        .find(|c| c["type"] == "menu" && c["menu"].as_array().is_some_and(|m| m.len() >= 2))
        .ok_or("no menu control with items listed")?;
    expect(all.iter().any(|c| c["type"] == "button"), || {
        "no button listed".into()
    })?;
    let read_only = all
        .iter()
        .find(|c| has_flag(c, "read-only"))
        .ok_or("no read-only control listed")?;

    // Set two at once; the answer and another program agree on the values.
    let (status, answer) = server
        .json(
            "POST",
            "/cameras/cam/controls",
            Some(r#"{"brightness": 200, "contrast": 100}"#),
        )
        .await?;
    expect(status == 200 && answer["set"]["brightness"] == 200, || {
        format!("POST brightness 200: {status} {}", answer["set"])
    })?;
    expect(v4l2_ctl_get(device, "brightness")? == 200, || {
        "brightness not 200 in the driver".into()
    })?;
    expect(v4l2_ctl_get(device, "contrast")? == 100, || {
        "contrast not 100 in the driver".into()
    })?;

    // A menu by its id, to its last item.
    let last_item = menu["menu"]
        .as_array()
        .and_then(|m| m.last())
        .map(|i| i["index"].clone());
    let body = format!(
        "{{\"{}\": {}}}",
        menu["id"],
        last_item.clone().unwrap_or(Value::Null)
    );
    let (status, answer) = server
        .json("POST", "/cameras/cam/controls", Some(&body))
        .await?;
    let menu_key = menu["key"].as_str().unwrap_or("");
    expect(
        status == 200 && Some(&answer["set"][menu_key]) == last_item.as_ref(),
        || format!("POST {body}: {status} {answer}"),
    )?;
    expect(
        Some(Value::from(v4l2_ctl_get(device, menu_key)?)) == last_item,
        || format!("{menu_key} in the driver is not {last_item:?}"),
    )?;

    // Refusals name the control and what it takes; the driver keeps its value.
    for (body, says) in [
        (r#"{"brightness": 256}"#.to_owned(), "0..=255"),
        (r#"{"brightness": -1}"#.to_owned(), "out of range"),
        (r#"{"no_such_control": 1}"#.to_owned(), "brightness"),
        (
            format!("{{\"{}\": 1}}", read_only["key"].as_str().unwrap_or("")),
            "read-only",
        ),
        (format!("{{\"{menu_key}\": 99}}"), "one of"),
    ] {
        let (status, answer) = server
            .json("POST", "/cameras/cam/controls", Some(&body))
            .await?;
        let text = answer.as_str().unwrap_or("").to_owned();
        expect(status == 400 && text.contains(says), || {
            format!("POST {body}: expected 400 saying {says:?}, got {status} {text:?}")
        })?;
    }
    expect(v4l2_ctl_get(device, "brightness")? == 200, || {
        "a refused request changed brightness".into()
    })?;

    // The body limit, at the limit and one past it.
    let limit = mjpegd::http::MAX_CONTROLS_BODY;
    let json = r#"{"brightness": 201}"#;
    let at_limit = format!("{json}{}", " ".repeat(limit - json.len()));
    let (status, answer) = server
        .json("POST", "/cameras/cam/controls", Some(&at_limit))
        .await?;
    expect(status == 200 && answer["set"]["brightness"] == 201, || {
        format!("a body of exactly {limit} bytes: {status} {answer}")
    })?;
    let past = format!("{at_limit} ");
    let (status, answer) = server
        .json("POST", "/cameras/cam/controls", Some(&past))
        .await?;
    expect(
        status == 400 && answer.as_str().is_some_and(|t| t.contains("larger than")),
        || format!("a body of {} bytes: {status} {answer}", limit + 1),
    )?;

    // A control made inactive by its automatic mode (vivid: gain under autogain).
    let mut inactive_checked = "no auto/manual pair";
    if all
        .iter()
        .any(|c| c["key"] == "gain_automatic" || c["key"] == "auto_gain")
    {
        let auto = if all.iter().any(|c| c["key"] == "gain_automatic") {
            "gain_automatic"
        } else {
            "auto_gain"
        };
        v4l2_ctl_set(device, auto, 1)?;
        let (status, answer) = server
            .json("POST", "/cameras/cam/controls", Some(r#"{"gain": 10}"#))
            .await?;
        let text = answer.as_str().unwrap_or("").to_owned();
        expect(status == 400 && text.contains("inactive"), || {
            format!("gain under {auto}: expected 400 inactive, got {status} {text:?}")
        })?;
        // In one request: the mode off first, then the value.
        let body = format!("{{\"gain\": 10, \"{auto}\": false}}");
        let (status, answer) = server
            .json("POST", "/cameras/cam/controls", Some(&body))
            .await?;
        expect(status == 200 && answer["set"]["gain"] == 10, || {
            format!("POST {body}: {status} {answer}")
        })?;
        expect(v4l2_ctl_get(device, "gain")? == 10, || {
            "gain not 10 in the driver".into()
        })?;
        inactive_checked = "inactive refused, then set with its mode";
    }

    // mjpg-streamer's command URL (Octolapse) and its listing.
    let (status, head, body) = server
        .request(
            "GET",
            "/?action=command&dest=0&plugin=0&id=9963776&group=1&value=64",
            None,
        )
        .await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    expect(
        status == 200 && body == "9963776: 0" && head.contains("server: mjpg-streamer"),
        || format!("command URL: {status} {body:?} {head}"),
    )?;
    expect(v4l2_ctl_get(device, "brightness")? == 64, || {
        "the command URL did not set brightness".into()
    })?;
    let (_, _, body) = server
        .request(
            "GET",
            "/?action=command&dest=0&plugin=0&id=9963776&group=1&value=999",
            None,
        )
        .await?;
    expect(String::from_utf8_lossy(&body) == "9963776: -1", || {
        format!("out-of-range command: {:?}", String::from_utf8_lossy(&body))
    })?;
    let (status, input) = server.json("GET", "/input.json", None).await?;
    let listed = input["controls"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == "9963776"))
        .cloned()
        .unwrap_or_default();
    expect(
        status == 200 && listed["value"] == "64" && listed["type"] == "1",
        || format!("input.json brightness: {status} {listed}"),
    )?;

    // Remembered: restored when the device opens again after a change behind mjpegd's back.
    let (status, _) = server
        .json(
            "POST",
            "/cameras/cam/controls",
            Some(r#"{"brightness": 77}"#),
        )
        .await?;
    expect(status == 200, || format!("POST brightness 77: {status}"))?;
    let saved =
        std::fs::read_to_string(&memory).map_err(|e| format!("{}: {e}", memory.display()))?;
    let saved: Value = serde_json::from_str(&saved).map_err(|e| format!("memory file: {e}"))?;
    expect(
        saved["brightness"] == 77 && saved["contrast"] == 100,
        || format!("memory file: {saved}"),
    )?;
    v4l2_ctl_set(device, "brightness", 10)?;
    server.snapshot().await?;
    expect(v4l2_ctl_get(device, "brightness")? == 77, || {
        "brightness not restored when capture opened the device".into()
    })?;

    // ... and after a restart.
    server.stop(device).await?;
    v4l2_ctl_set(device, "brightness", 10)?;
    let server = Running::start(device, &state, BTreeMap::new()).await?;
    server.snapshot().await?;
    expect(v4l2_ctl_get(device, "brightness")? == 77, || {
        "brightness not restored after a restart".into()
    })?;
    server.stop(device).await?;

    // Config values win over remembered ones at startup.
    let config = BTreeMap::from([("brightness".to_owned(), 50)]);
    let server = Running::start(device, &state, config).await?;
    server.snapshot().await?;
    expect(v4l2_ctl_get(device, "brightness")? == 50, || {
        "the config value did not win".into()
    })?;

    // Reset: defaults in the driver, nothing remembered.
    let (status, answer) = server
        .json("POST", "/cameras/cam/controls/reset", None)
        .await?;
    expect(status == 200, || format!("reset: {status} {answer}"))?;
    expect(v4l2_ctl_get(device, "brightness")? == 128, || {
        "reset did not restore brightness 128".into()
    })?;
    let saved = std::fs::read_to_string(&memory).unwrap_or_default();
    expect(!saved.contains("brightness"), || {
        format!("memory after reset: {saved}")
    })?;
    server.stop(device).await?;

    Ok(format!(
        "controls: {} listed, set/read back, refusals, {inactive_checked}, command URL, restored on reopen, restart and from config, reset",
        all.len()
    ))
}

/// What the host sends on the done port when its browser test has ended, and the answer.
const PAGE_DONE: &[u8] = b"done\n";
const PAGE_BYE: &[u8] = b"bye\n";

/// Serves the camera page on `listen` for a browser on the host (the VM's port is forwarded),
/// says so with `V4L2_PAGE_READY`, and keeps serving until the host sends `done` on `done`
/// (a second forwarded port), which scripts/test-v4l2-vivid.sh does once the browser test
/// process has exited. The host says when it is finished, rather than the VM guessing from a
/// control value, so no request of the test can meet a server that is already stopping.
pub(crate) async fn serve_page(
    device: &str,
    listen: &str,
    done: &str,
    wait: Duration,
) -> Result<String, String> {
    let state = PathBuf::from("/tmp/mjpegd-page-state");
    let _ = std::fs::remove_dir_all(&state);
    let done_listener = tokio::net::TcpListener::bind(done)
        .await
        .map_err(|e| format!("cannot listen for the host's done on {done}: {e}"))?;
    let server = Running::start_on(device, &state, BTreeMap::new(), listen).await?;
    println!("V4L2_PAGE_READY on {listen} (done on {done})");
    let ended = tokio::time::timeout(wait, wait_for_done(&done_listener)).await;
    server.stop(device).await?;
    match ended {
        Ok(()) => Ok("page served to the host's browser test".into()),
        Err(_) => Err(format!(
            "the host did not say done on {done} within {wait:?} (did the browser test hang?)"
        )),
    }
}

/// Accepts connections on `listener` until one sends [`PAGE_DONE`], and answers it
/// [`PAGE_BYE`] so the host knows the VM heard it. Anything else (a port scan, qemu's probe)
/// is dropped; each connection gets a few seconds and a few bytes.
async fn wait_for_done(listener: &tokio::net::TcpListener) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            continue;
        };
        let mut line = [0u8; 16];
        let mut got = 0;
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            while got < PAGE_DONE.len() {
                match tcp.read(&mut line[got..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        if read.is_ok() && line[..got] == *PAGE_DONE {
            let _ = tcp.write_all(PAGE_BYE).await;
            let _ = tcp.shutdown().await;
            return;
        }
    }
}
