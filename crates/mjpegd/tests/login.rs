//! The login form and its session cookie, through a real socket and a real HTTP client: a
//! browser's page request is sent to the form, a right password gets a cookie that opens the
//! pages and the streams (a real JPEG decoded), a wrong one counts towards the failure brake,
//! the return path never leaves the server, cross-site posts are refused, a tampered cookie
//! opens nothing, logout ends the session, and programs still get 401 for Basic.

#![cfg(feature = "auth")]

mod common;

use common::*;
use mjpegd::auth::SESSION_COOKIE;
use mjpegd::http::HttpConfig;
use mjpegd::server::ServerConfig;
use reqwest::header;

/// What Chromium sends for a page navigation.
const NAVIGATION: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

async fn server(login_form: bool) -> TestServer {
    TestServer::start(
        vec![
            camera("garage", Scripted::new(Script::default())),
            camera("porch", Scripted::new(Script::default())),
        ],
        HttpConfig {
            auth: alice_and_bob(false),
            login_form,
            ..HttpConfig::default()
        },
        ServerConfig::default(),
    )
    .await
}

/// A client that shows redirects instead of following them, as the tests look at each step.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn navigate(srv: &TestServer, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .get(srv.url(path))
        .header(header::ACCEPT, NAVIGATION);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    req.send().await.expect("request")
}

async fn post_login(srv: &TestServer, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(srv.url("/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(form))
        .send()
        .await
        .expect("request")
}

/// A form body, as a browser encodes it.
fn encode(form: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

/// The `name=value` of a response's session cookie, and the rest of its attributes.
fn session_cookie(resp: &reqwest::Response) -> (String, String) {
    let set = resp
        .headers()
        .get(header::SET_COOKIE)
        .unwrap_or_else(|| panic!("no Set-Cookie in {:?}", resp.headers()))
        .to_str()
        .expect("ascii")
        .to_owned();
    let (pair, attributes) = set.split_once(';').unwrap_or((&set, ""));
    assert!(pair.starts_with(&format!("{SESSION_COOKIE}=")), "{set}");
    (pair.to_owned(), attributes.to_owned())
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(header::LOCATION)
        .unwrap_or_else(|| panic!("no Location in {:?}", resp.headers()))
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Reads a multipart stream until its first complete JPEG and decodes it.
async fn first_frame(mut resp: reqwest::Response) -> (usize, usize) {
    let mut buf = Vec::new();
    while buf.len() < 1 << 20 {
        let chunk = tokio::time::timeout(WAIT, resp.chunk())
            .await
            .expect("a stream chunk in time")
            .expect("stream body")
            .expect("stream still open");
        buf.extend_from_slice(&chunk);
        let Some(start) = buf.windows(2).position(|w| w == [0xff, 0xd8]) else {
            continue;
        };
        if let Some(end) = buf[start..].windows(2).position(|w| w == [0xff, 0xd9]) {
            let jpeg = &buf[start..start + end + 2];
            let mut d = zune_jpeg::JpegDecoder::new(jpeg);
            d.decode().expect("the frame decodes");
            return d.dimensions().expect("dimensions");
        }
    }
    panic!("no complete JPEG in the first MiB of the stream");
}

#[tokio::test]
async fn a_browser_logs_in_through_the_form_and_watches() {
    let srv = server(true).await;

    // A page opened without credentials goes to the form, which will return to it.
    let resp = navigate(&srv, "/cameras/porch?x=1", None).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/login?next=%2Fcameras%2Fporch%3Fx%3D1");
    let form = navigate(&srv, "/login?next=%2Fcameras%2Fporch%3Fx%3D1", None).await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.expect("form");
    assert!(
        html.contains("<form method=\"post\" action=\"/login\">"),
        "{html}"
    );
    assert!(
        html.contains("name=\"next\" value=\"/cameras/porch?x=1\""),
        "{html}"
    );

    // The right password: a cookie, and back to the page asked for.
    let resp = post_login(
        &srv,
        &[
            ("user", "bob"),
            ("password", "correct horse"),
            ("next", "/cameras/porch?x=1"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/cameras/porch?x=1");
    let (cookie, attributes) = session_cookie(&resp);
    for a in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=604800"] {
        assert!(attributes.contains(a), "{a} in {attributes}");
    }
    assert!(!attributes.contains("Secure"), "plain HTTP: {attributes}");

    // The cookie opens bob's page, his camera's stream (a real frame) and state...
    let page = navigate(&srv, "/cameras/porch", Some(&cookie)).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("camera page");
    assert!(
        page.contains("action=\"/logout\""),
        "a logout button: {page}"
    );
    let stream = client()
        .get(srv.url("/cameras/porch/stream"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("multipart/x-mixed-replace"),
        "{:?}",
        stream.headers()
    );
    let (w, h) = first_frame(stream).await;
    assert!(w > 0 && h > 0);
    let grid = navigate(&srv, "/", Some(&format!("theme=dark; {cookie}"))).await;
    assert_eq!(
        grid.status(),
        200,
        "the session is found among other cookies"
    );
    let grid = grid.text().await.expect("grid");
    assert!(
        grid.contains("action=\"/logout\""),
        "a logout button: {grid}"
    );
    assert!(
        !grid.contains("/cameras/garage"),
        "only bob's cameras: {grid}"
    );
    // ...and no more than bob may: not another camera.
    let garage = client()
        .get(srv.url("/cameras/garage/snapshot.jpg"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("snapshot");
    assert_eq!(
        garage.status(),
        404,
        "a camera bob may not watch does not exist for him"
    );

    // A cookie changed by hand opens nothing: the page goes to the form again.
    let tampered = cookie.replacen(".", ".9", 1);
    let resp = navigate(&srv, "/cameras/porch", Some(&tampered)).await;
    assert_eq!(resp.status(), 303, "tampered cookie");

    // Logout clears the cookie.
    let resp = client()
        .post(srv.url("/logout"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/login");
    let (cleared, attributes) = session_cookie(&resp);
    assert_eq!(cleared, format!("{SESSION_COOKIE}="));
    assert!(attributes.contains("Max-Age=0"), "{attributes}");
}

#[tokio::test]
async fn wrong_passwords_count_and_programs_still_get_basic() {
    let srv = server(true).await;
    for i in 0..mjpegd::auth::MAX_FAILURES {
        let resp = post_login(&srv, &[("user", "alice"), ("password", "wrong")]).await;
        assert_eq!(resp.status(), 401, "attempt {i}");
        assert!(resp.headers().get(header::SET_COOKIE).is_none());
        let html = resp.text().await.expect("form");
        assert!(html.contains("Wrong user or password."), "{html}");
    }
    // The brake is the one Basic logins share: now even the right password waits.
    let resp = post_login(&srv, &[("user", "alice"), ("password", "correct horse")]).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key(header::RETRY_AFTER));
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
    let basic = client()
        .get(srv.url("/snapshot.jpg"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .expect("snapshot");
    assert_eq!(basic.status(), 429, "one brake for both ways in");

    // Programs (no HTML in Accept) get 401 with the Basic challenge, as before the form.
    let other = client_from([127, 0, 0, 2]);
    for path in ["/", "/stream", "/snapshot.jpg", "/api/state"] {
        let resp = other.get(srv.url(path)).send().await.expect("request");
        assert_eq!(resp.status(), 401, "{path}");
        assert!(
            resp.headers().contains_key(header::WWW_AUTHENTICATE),
            "{path}"
        );
    }
    // And Basic credentials still open everything from another address.
    let resp = other
        .get(srv.url("/snapshot.jpg"))
        .basic_auth("alice", Some("correct horse"))
        .send()
        .await
        .expect("snapshot");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_form_never_sends_anyone_elsewhere() {
    let srv = server(true).await;
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "evil",
    ] {
        let resp = post_login(
            &srv,
            &[
                ("user", "alice"),
                ("password", "correct horse"),
                ("next", next),
            ],
        )
        .await;
        assert_eq!(resp.status(), 303, "{next}");
        assert_eq!(location(&resp), "/", "{next}");
    }
    // A form on another site cannot log the browser in (or out).
    let resp = client()
        .post(srv.url("/login"))
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(&[("user", "alice"), ("password", "correct horse")]))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get(header::SET_COOKIE).is_none());
    let resp = client()
        .post(srv.url("/logout"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 403);
    // From an https:// page the cookie is Secure.
    let origin = format!("https://{}", srv.addr);
    let resp = client()
        .post(srv.url("/login"))
        .header(header::ORIGIN, &origin)
        .header(header::HOST, srv.addr.to_string())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(&[("user", "alice"), ("password", "correct horse")]))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 303);
    let (_, attributes) = session_cookie(&resp);
    assert!(attributes.contains("Secure"), "{attributes}");
    // A body past the limit is refused, not buffered.
    let resp = client()
        .post(srv.url("/login"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("user=alice&password={}", "x".repeat(8192)))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn with_login_basic_browsers_get_their_own_prompt() {
    let srv = server(false).await;
    let resp = navigate(&srv, "/", None).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
    // The form itself still works for whoever opens it.
    let resp = post_login(&srv, &[("user", "alice"), ("password", "correct horse")]).await;
    assert_eq!(resp.status(), 303);
}
