//! Camera controls over HTTP, for what needs no camera: cameras without controls say why, the
//! mjpg-streamer URLs answer as mjpg-streamer does, the same-origin and watch-only rules, and
//! `[cameras.controls]` checked at startup. All over the real binary. The controls of a real
//! driver (listing, setting, errors, persistence, the page) are tested against vivid in qemu:
//! scripts/test-v4l2-vivid.sh and crates/v4l2-check/src/controls.rs.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn client() -> reqwest::Client {
    mjpegd::crypto::install_crypto_provider();
    reqwest::Client::new()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mjpegd.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn start(config: &Path) -> MjpegdProcess {
    let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
    MjpegdProcess::start(&args).unwrap_or_else(|e| panic!("{e}"))
}

const PATTERN: &str = "[server]\nlisten = \"127.0.0.1:0\"\n\n[[cameras]]\nname = \"cam\"\n\
                       source = \"testpattern\"\nsize = \"160x120\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_without_controls_says_why_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = start(&write_config(dir.path(), PATTERN));
    let get = |path: &str| client().get(format!("{}{path}", srv.url)).send();

    let r = get("/cameras/cam/controls").await.expect("get");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["controls"], Value::Array(Vec::new()));
    let reason = v["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("only V4L2 cameras") && reason.contains("cam"),
        "{v}"
    );

    let r = client()
        .post(format!("{}/cameras/cam/controls", srv.url))
        .header("content-type", "application/json")
        .body(r#"{"brightness": 1}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("body").contains("only V4L2 cameras"));

    let r = get("/cameras/nope/controls").await.expect("get");
    assert_eq!(r.status(), 404);

    // mjpg-streamer's command URL: 200 with `ID: -1` (nothing was set), and the Server header
    // Octolapse looks for; a camera number that does not exist is a 404.
    let r = get("/?action=command&dest=0&plugin=0&id=9963776&group=1&value=5")
        .await
        .expect("command");
    assert_eq!(r.status(), 200);
    let server = r
        .headers()
        .get("server")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(server.starts_with("MJPG-Streamer"), "{server}");
    assert_eq!(r.text().await.expect("body"), "9963776: -1");
    let r = get("/?action=command&id=-1").await.expect("probe");
    assert_eq!(r.status(), 200, "Octolapse's probe");
    assert_eq!(r.text().await.expect("body"), ": -1");
    let r = get("/?action=command&plugin=3&id=9963776&value=1")
        .await
        .expect("command");
    assert_eq!(r.status(), 404);

    // Its listing: the same shape, no controls.
    let r = get("/input.json").await.expect("input.json");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get("server")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|s| s.starts_with("MJPG-Streamer"))
    );
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v,
        serde_json::json!({ "controls": [], "formats": [] }),
        "{v}"
    );
    assert_eq!(get("/input_0.json").await.expect("get").status(), 200);
    assert_eq!(get("/input_1.json").await.expect("get").status(), 404);
}

/// Controls change the camera: a foreign page may not, through the user's browser, and neither
/// may a user whose entry says `control = false` (they may still read the list).
#[cfg(feature = "auth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_and_watch_only_requests_cannot_set_controls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = mjpegd::auth::hash_password("pw").expect("hash");
    let config = format!(
        "{PATTERN}\n[auth]\n[[auth.users]]\nname = \"owner\"\npassword_hash = \"{hash}\"\n\
         [[auth.users]]\nname = \"watcher\"\npassword_hash = \"{hash}\"\ncontrol = false\n"
    );
    let srv = start(&write_config(dir.path(), &config));
    let post = |path: &str, user: &str| {
        client()
            .post(format!("{}{path}", srv.url))
            .basic_auth(user, Some("pw"))
            .header("content-type", "application/json")
            .body(r#"{"brightness": 1}"#)
    };
    for (header, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        for path in ["/cameras/cam/controls", "/cameras/cam/controls/reset"] {
            let r = post(path, "owner")
                .header(header, value)
                .send()
                .await
                .expect("post");
            assert_eq!(r.status(), 403, "{path} {header}: {value}");
        }
        let r = client()
            .get(format!(
                "{}/?action=command&plugin=0&id=9963776&value=1",
                srv.url
            ))
            .basic_auth("owner", Some("pw"))
            .header(header, value)
            .send()
            .await
            .expect("command");
        assert_eq!(r.status(), 403, "command URL {header}: {value}");
    }
    let r = post("/cameras/cam/controls", "watcher")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("body").contains("control = false"));
    let r = client()
        .get(format!("{}/cameras/cam/controls", srv.url))
        .basic_auth("watcher", Some("pw"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200, "a watcher may read the controls");
    let r = client()
        .get(format!("{}/cameras/cam/controls", srv.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "anonymous");
    // The owner passes every check up to the camera, which has no controls.
    let r = post("/cameras/cam/controls", "owner")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
}

#[test]
fn controls_on_a_camera_without_any_are_refused_at_startup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{PATTERN}\n[cameras.controls]\nbrightness = 1\n");
    let err = startup_error(
        &write_config(dir.path(), &text),
        "controls on a test pattern",
    );
    assert!(
        err.contains("cameras[0].controls: source testpattern has no controls"),
        "{err}"
    );
}

/// V4L2 cameras' `[cameras.controls]` (the device need not exist: it is opened at runtime).
#[cfg(all(target_os = "linux", feature = "v4l2"))]
#[test]
fn controls_in_the_config_are_checked_at_startup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "a text value",
            "[[cameras]]\nname = \"cam\"\nsource = \"v4l2:/dev/video-mjpegd-none\"\n\
             [cameras.controls]\nbrightness = \"loud\"\n"
                .to_owned(),
            "cameras[0].controls.brightness: expected an integer or true/false",
        ),
        (
            "too many",
            format!(
                "[[cameras]]\nname = \"cam\"\nsource = \"v4l2:/dev/video-mjpegd-none\"\n\
                 [cameras.controls]\n{}",
                (0..=256).map(|i| format!("c{i} = 1\n")).collect::<String>()
            ),
            "257 controls; at most 256",
        ),
    ];
    for (case, text, says) in cases {
        let err = startup_error(&write_config(dir.path(), &text), case);
        assert!(err.contains(says), "{case}: {err}");
    }
    // At the limit, and with booleans and ids: accepted.
    let text = format!(
        "[[cameras]]\nname = \"cam\"\nsource = \"v4l2:/dev/video-mjpegd-none\"\n\
         [cameras.controls]\nwhite_balance_automatic = false\n\"9963776\" = 140\n{}",
        (0..254).map(|i| format!("c{i} = 1\n")).collect::<String>()
    );
    let path = write_config(dir.path(), &text);
    let out = mjpegd_command()
        .arg("--check-config")
        .arg(&path)
        .output()
        .expect("run mjpegd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
