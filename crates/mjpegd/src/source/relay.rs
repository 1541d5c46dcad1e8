//! `http://…` / `https://…`: relays another MJPEG HTTP camera (an IP camera, another mjpegd,
//! mjpg-streamer, µStreamer).
//!
//! A multipart response is parsed by [`crate::mjpeg::read`] with the boundary from its
//! `Content-Type`; a response that is a single `image/jpeg` (many cameras only offer snapshots)
//! switches to polling that URL at the camera's rate. Credentials may be given in the URL
//! (`http://user:pass@camera/video`); they are sent as Basic auth and never shown in logs or state.
//! Connect and read timeouts and a redirect limit bound every wait; reconnecting with backoff
//! is the hub's job.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Interval, MissedTickBehavior};

use super::{BoxFuture, ErrorKind, Opener, Params, Source, SourceError, interval_of};
use crate::frame::Image;
use crate::jpeg;
use crate::mjpeg::read::{Limits, Mode, Reader, boundary_from_content_type};
use crate::url::redact_url as redact;

/// Longest wait to connect to the camera.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for any bytes once connected (the hub's source timeout usually fires first).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Most redirects followed.
pub const MAX_REDIRECTS: usize = 5;
/// Largest single-JPEG response accepted in snapshot-polling mode.
pub const MAX_SNAPSHOT_BYTES: usize = 16 << 20;

/// Opens an HTTP relay.
#[derive(Debug)]
pub struct RelayOpener {
    url: reqwest::Url,
    params: Params,
}

/// The shared HTTP client: rustls with the ring provider (no C TLS library).
pub fn http_client() -> Result<reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::crypto::install_crypto_provider();
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
                .user_agent(concat!("mjpegd/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        })
        .clone()
}

impl RelayOpener {
    /// A relay of `url`; fails on a URL that is not http(s).
    pub fn new(url: &str, params: Params) -> Result<RelayOpener, SourceError> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| SourceError::permanent(format!("http: bad URL {:?}: {e}", redact(url))))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(SourceError::permanent(format!(
                "http: {:?} is not an http:// or https:// URL with a host",
                redact(url.as_str())
            )));
        }
        Ok(RelayOpener { url, params })
    }
}

impl Opener for RelayOpener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        Box::pin(async move {
            let client = http_client().map_err(SourceError::new)?;
            let shown = redact(self.url.as_str());
            let resp =
                client.get(self.url.clone()).send().await.map_err(|e| {
                    SourceError::new(format!("http: {shown}: {}", describe_error(&e)))
                })?;
            let status = resp.status();
            if !status.is_success() {
                let hint = match status.as_u16() {
                    401 | 403 => " — check the user and password in the URL",
                    404 => " — check the path of the stream URL",
                    _ => "",
                };
                return Err(SourceError::with_kind(
                    status_kind(status),
                    format!("http: {shown} answered {status}{hint}"),
                ));
            }
            let ctype = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let source: Box<dyn Source> = if ctype.starts_with("image/jpeg")
                || ctype.starts_with("image/jpg")
            {
                tracing::info!(url = %shown, "http: single JPEG answer; polling it as snapshots");
                let mut ticks = tokio::time::interval(interval_of(self.params.fps));
                ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
                Box::new(Poll {
                    client,
                    url: self.url.clone(),
                    shown,
                    first: Some(resp),
                    ticks,
                })
            } else {
                let mode = match boundary_from_content_type(&ctype) {
                    Some(boundary) if ctype.starts_with("multipart/") => {
                        Mode::Multipart { boundary }
                    }
                    _ => Mode::Auto,
                };
                Box::new(Stream {
                    resp,
                    reader: Reader::new(mode, Limits::default()),
                    pending: None,
                    shown,
                })
            };
            Ok(source)
        })
    }

    fn describe(&self) -> String {
        redact(self.url.as_str())
    }
}

/// A refusal (4xx: wrong path, credentials, method) needs a corrected URL; a server error
/// (5xx), a timeout (408) or a rate limit (429) can pass by itself.
fn status_kind(status: reqwest::StatusCode) -> ErrorKind {
    match status.as_u16() {
        408 | 429 => ErrorKind::Transient,
        400..=499 => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    }
}

fn describe_error(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        msg.push_str(" (timed out)");
    }
    msg
}

fn image_of(jpeg: Bytes) -> Result<Image, jpeg::JpegError> {
    let (width, height) = jpeg::dimensions(&jpeg)?;
    Ok(Image {
        jpeg,
        width,
        height,
    })
}

/// A multipart (or bare JPEG) stream.
struct Stream {
    resp: reqwest::Response,
    reader: Reader,
    /// Bytes received but not yet accepted by the reader.
    pending: Option<Bytes>,
    shown: String,
}

impl Source for Stream {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            loop {
                match self.reader.next_frame() {
                    Ok(Some(frame)) => match image_of(frame.jpeg) {
                        Ok(image) => return Ok(image),
                        Err(e) => {
                            tracing::debug!(url = %self.shown, error = %e, "http: skipping an unreadable frame");
                            continue;
                        }
                    },
                    Ok(None) => {}
                    Err(e) => {
                        // The URL serves something that is not MJPEG: a web page, another format.
                        return Err(SourceError::permanent(format!(
                            "http: {}: {e} — is this the camera's MJPEG stream URL?",
                            self.shown
                        )));
                    }
                }
                if let Some(e) = self.reader.take_recovered() {
                    tracing::debug!(url = %self.shown, error = %e, "http: recovered from bad input");
                }
                let mut chunk = match self.pending.take() {
                    Some(c) => c,
                    None => match self.resp.chunk().await {
                        Ok(Some(c)) => c,
                        Ok(None) => {
                            return Err(SourceError::new(format!(
                                "http: {}: the camera closed the stream",
                                self.shown
                            )));
                        }
                        Err(e) => {
                            return Err(SourceError::new(format!(
                                "http: {}: {}",
                                self.shown,
                                describe_error(&e)
                            )));
                        }
                    },
                };
                // Feed what fits; the rest waits until frames have been taken out.
                let n = chunk.len().min(self.reader.buffer_space().max(1));
                let rest = chunk.split_off(n);
                if !rest.is_empty() {
                    self.pending = Some(rest);
                }
                if let Err(e) = self.reader.feed(&chunk) {
                    return Err(SourceError::new(format!("http: {}: {e}", self.shown)));
                }
            }
        })
    }
}

/// A camera that only serves single JPEGs: fetch one per tick.
struct Poll {
    client: reqwest::Client,
    url: reqwest::Url,
    shown: String,
    first: Option<reqwest::Response>,
    ticks: Interval,
}

impl Poll {
    async fn fetch(&mut self) -> Result<Image, SourceError> {
        let resp = match self.first.take() {
            Some(r) => r,
            None => self
                .client
                .get(self.url.clone())
                .send()
                .await
                .map_err(|e| {
                    SourceError::new(format!("http: {}: {}", self.shown, describe_error(&e)))
                })?,
        };
        if !resp.status().is_success() {
            return Err(SourceError::with_kind(
                status_kind(resp.status()),
                format!("http: {} answered {}", self.shown, resp.status()),
            ));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_SNAPSHOT_BYTES as u64)
        {
            return Err(SourceError::permanent(format!(
                "http: {}: snapshot larger than {MAX_SNAPSHOT_BYTES} bytes",
                self.shown
            )));
        }
        let mut resp = resp;
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            SourceError::new(format!("http: {}: {}", self.shown, describe_error(&e)))
        })? {
            if body.len() + chunk.len() > MAX_SNAPSHOT_BYTES {
                return Err(SourceError::permanent(format!(
                    "http: {}: snapshot larger than {MAX_SNAPSHOT_BYTES} bytes",
                    self.shown
                )));
            }
            body.extend_from_slice(&chunk);
        }
        image_of(body.freeze())
            .map_err(|e| SourceError::permanent(format!("http: {}: not a JPEG: {e}", self.shown)))
    }
}

impl Source for Poll {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            self.ticks.tick().await;
            self.fetch().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_http_urls() {
        let p = Params {
            width: 1,
            height: 1,
            fps: 1.0,
            quality: 80,
        };
        assert!(RelayOpener::new("ftp://x/y", p).is_err());
        assert!(RelayOpener::new("http://", p).is_err());
        assert!(RelayOpener::new("https://cam.local/stream", p).is_ok());
    }
}
