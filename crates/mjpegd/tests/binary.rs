//! The `mjpegd` binary: startup errors, the images source, and prompt exit on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mjpegd::render::Canvas;

/// Starts the binary on a free port with `args`; its base URL is read from its log.
fn spawn(args: &[&str]) -> MjpegdProcess {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    MjpegdProcess::start(&all).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn sigterm_with_open_streams_exits_promptly_and_ends_streams_cleanly() {
    let mut server = spawn(&["--size", "320x240"]);
    let mut viewers = vec![];
    for _ in 0..3 {
        let mut c = MjpegClient::connect(&format!("{}/stream", server.url)).await;
        c.part().await.decode();
        viewers.push(c);
    }
    let sent = Instant::now();
    signal(server.pid(), Signal::SIGTERM);
    let status = wait_exit(&mut server.child, Duration::from_secs(2));
    let took = sent.elapsed();
    // Dropping the server kills it if it is still running.
    let status = status.unwrap_or_else(|| panic!("mjpegd still running {took:?} after SIGTERM"));
    assert!(status.success(), "exit status {status:?}");
    for mut c in viewers {
        // Every stream ends: with a clean end of the chunked body, after any remaining parts.
        let end =
            tokio::time::timeout(WAIT, async { while c.next_part().await.is_some() {} }).await;
        assert!(end.is_ok(), "stream did not end");
    }
}

#[tokio::test]
async fn images_source_cycles_the_files_of_a_directory_in_name_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = vec![];
    for (i, name) in ["b.jpg", "a.JPEG", "c.jpg"].iter().enumerate() {
        let mut canvas = Canvas::new(64, 48, [i as u8 * 80, 0, 0]);
        canvas.text(1, 1, 1, [255, 255, 255], name);
        let jpeg = canvas.encode(80).expect("encode");
        std::fs::write(dir.path().join(name), &jpeg).expect("write");
        files.push((name.to_string(), jpeg));
    }
    std::fs::write(dir.path().join("notes.txt"), "not an image").expect("write");
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let spec = format!("images:{}", dir.path().display());
    let server = spawn(&["--source", &spec, "--fps", "20"]);
    let mut c = MjpegClient::connect(&format!("{}/stream", server.url)).await;
    let first = c.part().await;
    let start = files
        .iter()
        .position(|(_, j)| *j == first.jpeg)
        .expect("a file of the folder");
    for k in 1..7 {
        let p = c.part().await;
        assert_eq!(p.decode(), (64, 48));
        let expected = &files[(start + k) % files.len()];
        assert_eq!(p.jpeg, expected.1, "frame {k} should be {}", expected.0);
    }
}

#[test]
fn a_directory_without_jpegs_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("readme.txt"), "x").expect("write");
    let out = mjpegd_command()
        .args(["--listen", "127.0.0.1:0", "--source"])
        .arg(format!("images:{}", dir.path().display()))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no .jpg or .jpeg files in"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

/// A build without the bus refuses every way of configuring it, when the configuration is
/// checked (`--check-config` as at startup), naming the key and how to get the feature; a
/// `nats://` source's credentials stay out of the message.
#[cfg(not(feature = "bus"))]
#[test]
fn bus_settings_are_refused_by_a_build_without_the_bus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let camera = "[[cameras]]\nname = \"porch\"\nsource = \"testpattern\"\n";
    for (case, body, key) in [
        (
            "publish",
            format!("{camera}[bus]\nurl = \"nats://127.0.0.1:4222\"\npublish = true\n"),
            "bus.url",
        ),
        (
            "edge",
            "[bus]\ncameras_from = \"nats://127.0.0.1:4222\"\n".to_owned(),
            "bus.cameras_from",
        ),
        (
            "idle_timeout",
            format!("{camera}[bus]\nidle_timeout = 5\n"),
            "bus.idle_timeout",
        ),
        (
            "nats source",
            "[[cameras]]\nname = \"porch\"\nsource = \"nats://u:hunter2@127.0.0.1:4222/porch\"\n"
                .to_owned(),
            "cameras[0].source",
        ),
    ] {
        let config = dir.path().join(format!("{}.toml", case.replace(' ', "-")));
        std::fs::write(&config, body).expect("write config");
        let checked = mjpegd_command()
            .arg("--check-config")
            .arg(&config)
            .output()
            .expect("run mjpegd --check-config");
        assert!(
            !checked.status.success(),
            "{case}: --check-config accepted it"
        );
        for stderr in [
            String::from_utf8_lossy(&checked.stderr).into_owned(),
            startup_error(&config, case),
        ] {
            assert!(
                stderr.contains("this mjpegd was built without the `bus` feature")
                    && stderr.contains("--features bus"),
                "{case}: {stderr}"
            );
            assert!(stderr.contains(key), "{case}: no {key} in {stderr}");
            assert!(
                !stderr.contains("hunter2"),
                "{case}: credentials in {stderr}"
            );
        }
    }
}

#[test]
fn invalid_flags_are_rejected_naming_the_flag_and_range() {
    for (args, expect) in [
        (&["--quality", "101"][..], "1..=100"),
        (&["--fps", "0"][..], "from 0.01 to 240"),
        (&["--size", "1280"][..], "WIDTHxHEIGHT"),
        (&["--source", "webcam"][..], "unknown source"),
        (&["--max-viewers", "0"][..], "--max-viewers"),
    ] {
        let out = mjpegd_command().args(args).output().expect("run");
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(args[0]) && err.contains(expect),
            "{args:?}: {err}"
        );
    }
    // Environment variables are checked the same way.
    let out = mjpegd_command()
        .env("MJPEGD_QUALITY", "0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--quality"));
}

#[test]
fn listening_on_a_busy_port_says_what_to_do() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = mjpegd_command()
        .args(["--listen", &addr])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("--listen"),
        "{err}"
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn sighup_reloads_the_tls_certificate_without_dropping_viewers() {
    common::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let write_cert = || write_self_signed(&cert, &key);
    let first = write_cert();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let mut server = spawn(&[
        "--size",
        "160x120",
        "--tls-cert",
        &cert_s,
        "--tls-key",
        &key_s,
    ]);
    let url = server.url.clone();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let addr: std::net::SocketAddr = url.trim_start_matches("https://").parse().expect("addr");
    let client_for = |pem: &str| tls_client(pem, addr);
    let base = format!("https://localhost:{}", addr.port());
    let resp = client_for(&first)
        .get(format!("{base}/stream"))
        .send()
        .await
        .expect("TLS");
    let mut viewer = MjpegClient::from_response(resp);
    viewer.part().await.decode();

    let second = write_cert();
    signal(server.pid(), Signal::SIGHUP);
    let reloaded = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(r) = client_for(&second)
                .get(format!("{base}/snapshot.jpg"))
                .send()
                .await
            {
                break r.status();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the new certificate was never served");
    assert_eq!(reloaded, 200);
    // The viewer that connected before the reload is still streaming.
    for _ in 0..5 {
        viewer.part().await.decode();
    }
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "SIGHUP must not stop the server"
    );
}

#[tokio::test]
async fn systemd_socket_activation_serves_the_passed_socket() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_socket_activated(port, dir.path(), &["--size", "160x120"]);
    let url = format!("http://127.0.0.1:{port}/snapshot.jpg");
    let status = first_activated_answer(&url).await;
    assert_eq!(status.status(), 200);
    let jpeg = status.bytes().await.expect("body");
    Part {
        headers: vec![],
        jpeg,
        received: std::time::SystemTime::now(),
    }
    .decode();
    stop_group(&mut child);
}
