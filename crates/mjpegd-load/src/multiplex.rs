//! HTTP/2 viewers (`--http2`): several viewers as streams of one connection, the way a
//! dashboard page shows every camera over one HTTP/2 connection.
//!
//! A connection is TLS with ALPN `h2` for `https://`, or h2c by prior knowledge for `http://`.
//! Each stream's body goes through the same part parser and per-viewer accounting as an HTTP/1.1
//! viewer's ([`super::client`]): only the response head comes from the h2 layer instead of the
//! byte stream. Flow-control window is given back as soon as a DATA frame is parsed (the parser
//! keeps no bytes), so the server is never held back by the client's window.

use std::rc::Rc;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout_at};

use super::client::{CONNECT_TIMEOUT, End, Shared, Viewer, ViewerResult, connect_tcp, io_context};
use super::parse::{Framing, StreamParser, multipart_boundary};
use super::tls::ALPN_H2;

/// Receive window of each stream, as Chrome sets it (6 MiB): a client that reads at full speed,
/// like a browser, never makes the server wait for a WINDOW_UPDATE.
pub const STREAM_WINDOW: u32 = 6 * 1024 * 1024;

/// Receive window of the whole connection, as Chrome sets it (15 MiB).
pub const CONNECTION_WINDOW: u32 = 15 * 1024 * 1024;

/// One connection carrying `streams` viewers from `start_at` to `deadline`; one result per
/// stream, in order.
pub(crate) async fn connection(
    shared: Rc<Shared>,
    streams: u32,
    start_at: Instant,
    deadline: Instant,
) -> Vec<ViewerResult> {
    let failed = |end: End| {
        (0..streams)
            .map(|_| ViewerResult::failed(end.clone()))
            .collect()
    };
    tokio::time::sleep_until(start_at).await;
    let Ok(Ok(permit)) = timeout_at(deadline, shared.connects.acquire()).await else {
        return failed(End::Connect(
            "run ended before a connection slot was free".to_owned(),
        ));
    };
    let t0 = Instant::now();
    let opened = timeout_at(deadline.min(t0 + CONNECT_TIMEOUT), open(&shared)).await;
    drop(permit);
    let (send, driver) = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(end)) => return failed(end),
        Err(_) => return failed(End::Connect("connect timed out".to_owned())),
    };
    let handles: Vec<_> = (0..streams)
        .map(|_| tokio::task::spawn_local(stream(shared.clone(), send.clone(), t0, deadline)))
        .collect();
    drop(send);
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        results.push(h.await.unwrap_or_else(|e| {
            ViewerResult::failed(End::Protocol(format!("stream task failed: {e}")))
        }));
    }
    // Every stream has ended (and was reset if still open): the connection goes with them.
    driver.abort();
    results
}

/// Connects, makes the TLS handshake if any, and the HTTP/2 handshake; the connection's
/// driver runs as its own task.
async fn open(shared: &Shared) -> Result<(SendRequest<Bytes>, tokio::task::JoinHandle<()>), End> {
    let tcp = connect_tcp(shared, None)
        .await
        .map_err(|e| End::Connect(io_context("connect", &e)))?;
    // Window updates are small writes that must not wait behind the server's delayed ACKs.
    tcp.set_nodelay(true)
        .map_err(|e| End::Connect(io_context("TCP_NODELAY", &e)))?;
    let frame = shared.h2_max_frame_size;
    match &shared.tls {
        None => handshake(tcp, frame).await,
        Some(tls) => {
            let s = tls
                .connect(tcp)
                .await
                .map_err(|e| End::Connect(io_context("TLS handshake", &e)))?;
            if s.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                return Err(End::Protocol(
                    "the server did not choose h2 by ALPN (does it serve HTTP/2?)".to_owned(),
                ));
            }
            handshake(s, frame).await
        }
    }
}

async fn handshake<T>(
    io: T,
    max_frame_size: Option<u32>,
) -> Result<(SendRequest<Bytes>, tokio::task::JoinHandle<()>), End>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false);
    if let Some(n) = max_frame_size {
        builder.max_frame_size(n);
    }
    let (send, conn) = builder
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| End::Connect(format!("HTTP/2 handshake: {e}")))?;
    // Its errors reach every stream as the error of its next read.
    let driver = tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok((send, driver))
}

/// The request of every stream: a GET of the run's URL.
fn request(shared: &Shared) -> Result<http::Request<()>, End> {
    let t = &shared.target;
    let scheme = if t.tls { "https" } else { "http" };
    http::Request::get(format!("{scheme}://{}{}", t.authority, t.path))
        .header(http::header::USER_AGENT, "mjpegd-load")
        .header(http::header::ACCEPT, "*/*")
        .body(())
        .map_err(|e| End::Protocol(format!("building the request: {e}")))
}

/// How a stream's body is delimited: by its `Content-Length` if it has one, else by the end
/// of the stream (HTTP/2 has no chunked coding).
fn framing(headers: &http::HeaderMap) -> Result<Framing, End> {
    match headers.get(http::header::CONTENT_LENGTH) {
        None => Ok(Framing::Close),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Framing::Length)
            .ok_or_else(|| End::Protocol("response Content-Length is not a number".to_owned())),
    }
}

/// A response's part parser, or why it is not a stream.
fn body_parser(head: &http::response::Parts) -> Result<StreamParser, End> {
    if head.status != http::StatusCode::OK {
        return Err(End::Status(head.status.as_u16()));
    }
    let boundary = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(multipart_boundary)
        .ok_or_else(|| End::Protocol("response is not multipart".to_owned()))?;
    Ok(StreamParser::new(framing(&head.headers)?, &boundary))
}

/// One viewer as one stream: request, response head, then every DATA frame through the part
/// parser until the deadline.
async fn stream(
    shared: Rc<Shared>,
    send: SendRequest<Bytes>,
    connected_at: Instant,
    deadline: Instant,
) -> ViewerResult {
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    let response = async {
        let req = request(&shared)?;
        // Waits for a free stream slot if the server allows fewer concurrent streams.
        let mut send = send
            .ready()
            .await
            .map_err(|e| End::Disconnected(format!("HTTP/2 connection: {e}")))?;
        let (response, _) = send
            .send_request(req, true)
            .map_err(|e| End::Disconnected(format!("sending the request: {e}")))?;
        let response = response
            .await
            .map_err(|e| End::Disconnected(format!("waiting for the response: {e}")))?;
        let (head, body) = response.into_parts();
        Ok::<_, End>((body_parser(&head)?, body))
    };
    let (parser, mut body) = tokio::select! {
        biased;
        () = &mut sleep => return ViewerResult::failed(End::Deadline),
        r = response => match r {
            Ok(r) => r,
            Err(end) => return ViewerResult::failed(end),
        },
    };
    let mut v = Viewer::body(parser, connected_at);
    let end = loop {
        let data = tokio::select! {
            biased;
            () = &mut sleep => break End::Deadline,
            d = body.data() => d,
        };
        match data {
            None => break End::Disconnected("the server ended the stream".to_owned()),
            Some(Err(e)) => break End::Disconnected(e.to_string()),
            Some(Ok(chunk)) => {
                // The parser keeps nothing of it: the window can be given back at once. An
                // error here means the stream is gone, which the next read reports.
                let _ = body.flow_control().release_capacity(chunk.len());
                if let Err(end) = v.on_data(&chunk, &shared.latency) {
                    break end;
                }
            }
        }
    };
    ViewerResult::finish(&v, end, deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("response").into_parts().0
    }

    #[test]
    fn a_stream_response_is_judged_like_an_http1_one() {
        let ok = head(
            200,
            &[("content-type", "multipart/x-mixed-replace; boundary=frame")],
        );
        assert!(body_parser(&ok).is_ok());
        assert!(matches!(
            body_parser(&head(503, &[])),
            Err(End::Status(503))
        ));
        assert!(matches!(
            body_parser(&head(200, &[("content-type", "image/jpeg")])),
            Err(End::Protocol(_))
        ));
        assert!(matches!(
            body_parser(&head(
                200,
                &[
                    ("content-type", "multipart/x-mixed-replace;boundary=b"),
                    ("content-length", "x")
                ]
            )),
            Err(End::Protocol(_))
        ));
    }

    #[test]
    fn content_length_delimits_the_body_else_the_stream_end() {
        let h = head(200, &[("content-length", " 42 ")]);
        assert_eq!(framing(&h.headers).ok(), Some(Framing::Length(42)));
        assert_eq!(framing(&head(200, &[]).headers).ok(), Some(Framing::Close));
    }
}
