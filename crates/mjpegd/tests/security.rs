//! Safe to expose: authentication, per-camera access, URL tokens, TLS (with reload), unix
//! sockets, connection limits and CORS, all through real sockets and real clients.

// Some tests need a feature; in a build without it their imports and helpers go unused.
#![cfg_attr(
    not(all(feature = "auth", feature = "tls")),
    allow(unused_imports, dead_code)
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
#[cfg(feature = "auth")]
use mjpegd::auth::{Auth, User};
use mjpegd::http::HttpConfig;
use mjpegd::server::{Server, ServerConfig};

#[cfg(feature = "auth")]
fn users() -> Arc<Auth> {
    alice_and_bob(true)
}

#[cfg(feature = "auth")]
async fn secured(http: HttpConfig) -> TestServer {
    TestServer::start(
        vec![
            camera("garage", Scripted::new(Script::default())),
            camera("porch", Scripted::new(Script::default())),
        ],
        HttpConfig {
            auth: users(),
            ..http
        },
        ServerConfig::default(),
    )
    .await
}

#[cfg(feature = "auth")]
async fn get(url: &str, user: Option<(&str, &str)>) -> reqwest::Response {
    let c = reqwest::Client::new();
    let mut req = c.get(url);
    if let Some((u, p)) = user {
        req = req.basic_auth(u, Some(p));
    }
    req.send().await.expect("request")
}

const ALICE: Option<(&str, &str)> = Some(("alice", "correct horse"));
const BOB: Option<(&str, &str)> = Some(("bob", "correct horse"));

#[cfg(feature = "auth")]
#[tokio::test]
async fn every_url_needs_a_login_and_users_see_only_their_cameras() {
    let srv = secured(HttpConfig::default()).await;
    for path in [
        "/",
        "/stream",
        "/video_feed",
        "/snapshot.jpg",
        "/?action=stream",
        "/?action=snapshot",
        "/cameras/porch",
        "/cameras/porch/stream",
        "/cameras/nosuch/stream",
        "/api/state",
        "/metrics",
        "/api/token?camera=porch",
    ] {
        let resp = get(&srv.url(path), None).await;
        assert_eq!(resp.status(), 401, "{path} without a login");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
    }
    assert_eq!(
        srv.camera().demand().watchers,
        0,
        "nothing started for anonymous requests"
    );

    for path in [
        "/",
        "/api/state",
        "/metrics",
        "/snapshot.jpg",
        "/cameras/porch/snapshot.jpg",
    ] {
        assert_eq!(
            get(&srv.url(path), ALICE).await.status(),
            200,
            "alice: {path}"
        );
    }
    // Bob may watch the porch only; the first camera (the classic URLs) is the garage. Cameras
    // he may not watch are answered as absent (404), not 403 (issue 18 item 7).
    assert_eq!(
        get(&srv.url("/cameras/porch/snapshot.jpg"), BOB)
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&srv.url("/cameras/garage/snapshot.jpg"), BOB)
            .await
            .status(),
        404
    );
    assert_eq!(get(&srv.url("/snapshot.jpg"), BOB).await.status(), 404);
    assert_eq!(
        get(&srv.url("/?action=snapshot_1"), BOB).await.status(),
        200
    );
    let state: serde_json::Value = get(&srv.url("/api/state"), BOB)
        .await
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = state["cameras"]
        .as_array()
        .expect("cameras")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["porch"]);
    let page = get(&srv.url("/"), BOB).await.text().await.expect("page");
    assert!(
        page.contains("/cameras/porch/stream") && !page.contains("garage"),
        "{page}"
    );
    let err = get(&srv.url("/cameras/nosuch/stream"), BOB)
        .await
        .text()
        .await
        .expect("body");
    assert!(
        err.contains("porch") && !err.contains("garage"),
        "404 lists only bob's cameras: {err}"
    );

    let mut c = MjpegClient::from_response(
        reqwest::Client::new()
            .get(srv.url("/cameras/porch/stream"))
            .basic_auth("bob", Some("correct horse"))
            .send()
            .await
            .expect("stream"),
    );
    c.part().await.decode();
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn repeated_failures_from_one_address_are_refused_for_a_while() {
    let srv = secured(HttpConfig::default()).await;
    for i in 0..mjpegd::auth::MAX_FAILURES {
        let resp = get(&srv.url("/snapshot.jpg"), Some(("alice", "wrong"))).await;
        assert_eq!(resp.status(), 401, "attempt {i}");
    }
    // Now even the right password waits: brute force gets 5 guesses a minute per address.
    let resp = get(&srv.url("/snapshot.jpg"), ALICE).await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&wait), "{wait}");
    // Another address is not affected.
    let other = client_from([127, 0, 0, 2]);
    let resp = other
        .get(srv.url("/snapshot.jpg"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn url_tokens_open_one_camera_without_a_password() {
    let srv = secured(HttpConfig::default()).await;
    let issued: serde_json::Value = get(&srv.url("/api/token?camera=porch&ttl=60"), BOB)
        .await
        .json()
        .await
        .expect("json");
    let stream = issued["stream"].as_str().expect("stream url").to_owned();
    let token = issued["token"].as_str().expect("token").to_owned();
    assert!(!stream.contains("correct"), "never the password in the URL");
    let mut c = MjpegClient::connect(&srv.url(&stream)).await;
    c.part().await.decode();
    let snap = get(
        &srv.url(&format!("/cameras/porch/snapshot.jpg?token={token}")),
        None,
    )
    .await;
    assert_eq!(snap.status(), 200);
    // Scoped: not another camera, not the pages or state.
    let other = get(
        &srv.url(&format!("/cameras/garage/stream?token={token}")),
        None,
    )
    .await;
    assert_eq!(other.status(), 404);
    assert_eq!(
        get(&srv.url(&format!("/api/state?token={token}")), None)
            .await
            .status(),
        403
    );
    // Tampered or foreign tokens are refused.
    let forged = token.replacen("porch", "garage", 1);
    let resp = get(
        &srv.url(&format!("/cameras/garage/stream?token={forged}")),
        None,
    )
    .await;
    assert_eq!(resp.status(), 401);
    // Bob cannot get a token for a camera he may not watch.
    assert_eq!(
        get(&srv.url("/api/token?camera=garage"), BOB)
            .await
            .status(),
        404
    );
    assert_eq!(
        get(&srv.url("/api/token?camera=porch&ttl=0"), BOB)
            .await
            .status(),
        400
    );
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn metrics_and_state_can_be_opened_explicitly() {
    let srv = secured(HttpConfig {
        public_metrics: true,
        ..HttpConfig::default()
    })
    .await;
    assert_eq!(get(&srv.url("/metrics"), None).await.status(), 200);
    assert_eq!(get(&srv.url("/api/state"), None).await.status(), 401);
    assert_eq!(get(&srv.url("/stream"), None).await.status(), 401);
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_serves_streams_and_reloads_its_certificate_without_dropping_viewers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let write_cert = || write_self_signed(&cert, &key);
    let first = write_cert();
    let tls = mjpegd::tls::TlsConfig::load(&cert, &key).expect("load");
    let server = TestServer::start_tls(
        vec![camera("cam", Scripted::new(Script::default()))],
        tls.clone(),
    )
    .await;
    let addr = server.addr;
    let client_for = |pem: &str| tls_client(pem, addr);
    let url = format!("https://localhost:{}/stream", addr.port());
    let resp = client_for(&first)
        .get(&url)
        .send()
        .await
        .expect("TLS request");
    // The client offers h2 and ALPN picks it (tests/http2.rs covers HTTP/1.1 over TLS too).
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let mut viewer = MjpegClient::from_response(resp);
    viewer.part().await.decode();

    let second = write_cert();
    tls.reload().expect("reload");
    // The open stream keeps going on its old session...
    for _ in 0..5 {
        viewer.part().await.decode();
    }
    // ...and new connections get the new certificate.
    assert!(
        client_for(&first).get(&url).send().await.is_err(),
        "old certificate still served"
    );
    let resp = client_for(&second)
        .get(&url)
        .send()
        .await
        .expect("new certificate");
    assert_eq!(resp.status(), 200);
    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::get(format!("http://{addr}/snapshot.jpg")).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    server.stop().await;
}

#[tokio::test]
async fn unix_socket_listener_with_file_mode() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mjpegd.sock");
    let specs = vec![mjpegd::config::ListenSpec::Unix(path.clone())];
    let listeners = mjpegd::server::bind(&specs, 0o600).await.expect("bind");
    let mode = std::fs::metadata(&path)
        .expect("socket file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = Server::new(
        vec![camera("cam", Scripted::new(Script::default()))],
        HttpConfig::default(),
        ServerConfig::default(),
        shutdown.clone(),
    );
    tokio::spawn(server.run_all(listeners));
    let mut s = tokio::net::UnixStream::connect(&path)
        .await
        .expect("connect");
    s.write_all(b"GET /snapshot.jpg HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut resp = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut resp))
        .await
        .expect("in time")
        .expect("read");
    let head_end = memchr::memmem::find(&resp, b"\r\n\r\n").expect("head");
    assert!(resp.starts_with(b"HTTP/1.1 200 OK"));
    let body = bytes::Bytes::copy_from_slice(&resp[head_end + 4..]);
    Part {
        headers: vec![],
        jpeg: body,
        received: std::time::SystemTime::now(),
    }
    .decode();
    shutdown.cancel();
}

#[tokio::test]
async fn connection_viewer_and_snapshot_limits_answer_cleanly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let http = HttpConfig {
        max_viewers_per_camera: 1,
        snapshot_rate: 2,
        ..HttpConfig::default()
    };
    let server = ServerConfig {
        max_connections_per_ip: 3,
        ..ServerConfig::default()
    };
    let srv = TestServer::start(
        vec![camera("cam", Scripted::new(Script::default()))],
        http,
        server,
    )
    .await;

    // Per camera: a second viewer of the same camera is refused with 503.
    let mut v = MjpegClient::connect(&srv.url("/stream")).await;
    v.part().await;
    let second = reqwest::get(srv.url("/stream")).await.expect("request");
    assert_eq!(second.status(), 503);
    drop(second);

    // Snapshots: the third within a second is refused with 429 and Retry-After.
    let other = client_from([127, 0, 0, 3]);
    let mut codes = vec![];
    for _ in 0..3 {
        codes.push(
            other
                .get(srv.url("/snapshot.jpg"))
                .send()
                .await
                .expect("snapshot")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, [200, 200, 429]);

    // Per address: the viewer holds one connection; two idle ones fill the limit of 3.
    let _a = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    let _b = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    let mut c = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    let _ = c
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut resp = Vec::new();
    tokio::time::timeout(WAIT, c.read_to_end(&mut resp))
        .await
        .expect("closed in time")
        .ok();
    assert!(
        resp.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // Another address still gets in.
    let ok = client_from([127, 0, 0, 4])
        .get(srv.url("/"))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn cors_is_off_by_default_and_on_when_configured() {
    let srv = TestServer::with_source(Scripted::new(Script::default())).await;
    let resp = reqwest::get(srv.url("/api/state")).await.expect("request");
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    let open = TestServer::start(
        vec![camera("cam", Scripted::new(Script::default()))],
        HttpConfig {
            allow_origin: Some("https://dash.example".into()),
            ..HttpConfig::default()
        },
        ServerConfig::default(),
    )
    .await;
    let resp = reqwest::get(open.url("/api/state")).await.expect("request");
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://dash.example"
    );
}

#[cfg(feature = "auth")]
#[test]
fn hash_password_subcommand_prints_a_usable_hash() {
    use std::io::Write;
    let mut child = mjpegd_command()
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret!\n")
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let auth = Auth::new(
        vec![User {
            name: "u".into(),
            password_hash: hash,
            cameras: None,
            control: true,
        }],
        None,
    );
    assert!(auth.verify_password("u", "s3cret!").is_some());
    assert!(auth.verify_password("u", "s3cret").is_none());
    let _ = Duration::ZERO;
}
