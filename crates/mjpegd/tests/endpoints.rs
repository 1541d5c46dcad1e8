//! Pages, snapshots, HEAD, errors and mjpg-streamer compatible URLs over a real socket.

mod common;

use std::time::Duration;

use common::*;
use mjpegd::http::HttpConfig;
use mjpegd::server::ServerConfig;

#[tokio::test]
async fn index_page_embeds_the_stream_in_an_img() {
    let srv = TestServer::with_source(Scripted::new(Script::default())).await;
    let resp = reqwest::get(srv.url("/")).await.expect("request");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let html = resp.text().await.expect("body");
    assert!(
        html.contains(r#"<img id="video" src="/video_feed""#),
        "{html}"
    );
    assert!(html.contains("/snapshot.jpg"));
    assert!(html.contains("<title>"));
    // Cache-busters on the index page are ignored too.
    let again = reqwest::get(srv.url("/?1700000000"))
        .await
        .expect("request");
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn snapshot_urls_return_one_decodable_jpeg() {
    let srv = TestServer::with_source(Scripted::new(Script::default())).await;
    for path in [
        "/snapshot.jpg",
        "/snapshot",
        "/?action=snapshot",
        "/?action=snapshot&1700000000",
    ] {
        let resp = reqwest::get(srv.url(path)).await.expect("request");
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], "image/jpeg", "{path}");
        assert_eq!(h["x-mjpegd-online"], "true");
        assert!(
            h["cache-control"]
                .to_str()
                .expect("ascii")
                .contains("no-store")
        );
        let body = resp.bytes().await.expect("body");
        assert_eq!(
            h["content-length"].to_str().expect("ascii"),
            body.len().to_string()
        );
        let part = Part {
            headers: vec![],
            jpeg: body,
            received: std::time::SystemTime::now(),
        };
        assert_eq!(part.decode(), (160, 120), "{path}");
    }
}

#[tokio::test]
async fn snapshot_of_an_idle_camera_waits_for_a_fresh_frame() {
    let src = Scripted::new(Script {
        open_delay: Duration::from_millis(400),
        ..Script::default()
    });
    let srv = TestServer::with_source(src.clone()).await;
    assert!(
        !srv.camera().demand().running,
        "capture must not run before anyone asks"
    );
    let resp = reqwest::get(srv.url("/snapshot.jpg"))
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let jpeg = resp.bytes().await.expect("body");
    assert_eq!(seq_of(&jpeg), Some(1), "the first frame of the new capture");
    assert_eq!(src.opens(), 1);
}

#[tokio::test]
async fn snapshot_gives_up_with_503_when_no_frame_comes() {
    let src = Scripted::new(Script {
        open_delay: Duration::from_secs(3600),
        ..Script::default()
    });
    let http = HttpConfig {
        snapshot_wait: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let srv = TestServer::start(vec![camera("porch", src)], http, ServerConfig::default()).await;
    let resp = reqwest::get(srv.url("/snapshot.jpg"))
        .await
        .expect("request");
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let text = resp.text().await.expect("body");
    assert!(
        text.contains("\"porch\"") && text.contains("no frame"),
        "{text}"
    );
}

#[tokio::test]
async fn head_answers_every_endpoint_without_starting_capture_for_streams() {
    let src = Scripted::new(Script::default());
    let srv = TestServer::with_source(src.clone()).await;
    let client = reqwest::Client::new();
    for (path, ctype) in [
        ("/", "text/html; charset=utf-8"),
        ("/stream", "multipart/x-mixed-replace;boundary=frame"),
        ("/video_feed", "multipart/x-mixed-replace;boundary=frame"),
        (
            "/?action=stream",
            "multipart/x-mixed-replace;boundary=frame",
        ),
    ] {
        let resp = client.head(srv.url(path)).send().await.expect("HEAD");
        assert_eq!(resp.status(), 200, "HEAD {path}");
        assert_eq!(resp.headers()["content-type"], ctype, "HEAD {path}");
    }
    assert_eq!(src.opens(), 0, "HEAD on a stream must not start capture");
    for path in ["/snapshot.jpg", "/snapshot", "/?action=snapshot"] {
        let resp = client.head(srv.url(path)).send().await.expect("HEAD");
        assert_eq!(resp.status(), 200, "HEAD {path}");
        assert_eq!(resp.headers()["content-type"], "image/jpeg");
        assert!(resp.bytes().await.expect("body").is_empty());
    }
}

#[tokio::test]
async fn errors_are_clear() {
    let srv = TestServer::with_source(Scripted::new(Script::default())).await;
    let client = reqwest::Client::new();
    let cases = [
        ("/nope", 404, "no such page"),
        ("/stream/../etc/passwd", 404, "no such page"),
        ("/?action=bogus", 404, "unknown action"),
        ("/stream?fps=abc", 400, "fps must be a number"),
        ("/stream?fps=0", 400, "fps must be a number"),
        ("/video_feed?fps=1000", 400, "fps must be a number"),
        ("/?action=stream&fps=-3", 400, "fps must be a number"),
    ];
    for (path, status, text) in cases {
        let resp = client.get(srv.url(path)).send().await.expect("request");
        assert_eq!(resp.status(), status, "{path}");
        let body = resp.text().await.expect("body");
        assert!(body.contains(text), "{path}: {body}");
    }
    let post = client
        .post(srv.url("/stream"))
        .send()
        .await
        .expect("request");
    assert_eq!(post.status(), 405);
    assert_eq!(
        srv.state.viewers(),
        0,
        "rejected requests hold no viewer slot"
    );
}
