//! The composition root: builds the hub and router, runs the accept loop, and drains on shutdown.
//!
//! Connections are served by hyper directly (not `axum::serve`) so each socket gets a write
//! timeout: hyper has none, and a viewer whose socket stops draining must be cut rather than
//! kept forever.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::{self, AppState, HttpConfig};
use crate::hub::{CameraConfig, Hub};

/// Connection-level settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// A connection whose socket accepts no bytes for this long while we have data to send is closed.
    pub send_timeout: Duration,
    /// Longest time a client may take to send a request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// How long open connections get to finish after shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            send_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_millis(1500),
        }
    }
}

/// Largest request head and per-connection write queue. Also caps hyper's user-space write
/// buffer, so a slow viewer holds at most about one frame beyond the socket buffer.
const MAX_BUF_SIZE: usize = 64 * 1024;
/// Most request headers accepted.
const MAX_HEADERS: usize = 64;

/// A server ready to run: the hub and the HTTP state over it.
pub struct Server {
    state: AppState,
    config: ServerConfig,
    shutdown: CancellationToken,
}

impl Server {
    /// Builds cameras and the HTTP state. `shutdown` stops capture, streams and the accept loop.
    pub fn new(
        cameras: Vec<CameraConfig>,
        http_config: HttpConfig,
        config: ServerConfig,
        shutdown: CancellationToken,
    ) -> Server {
        let hub = Arc::new(Hub::new(cameras, shutdown.clone()));
        Server {
            state: AppState::new(hub, http_config, shutdown.clone()),
            config,
            shutdown,
        }
    }

    /// The HTTP state (and through it the hub), for tests and status.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves connections from `listener` until shutdown, then drains them within the grace period.
    pub async fn run(self, listener: TcpListener) -> io::Result<()> {
        let router = http::router(self.state.clone());
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let conn = serve_connection(
                stream,
                peer,
                router.clone(),
                self.config.clone(),
                self.shutdown.clone(),
            );
            tracker.spawn(conn);
        }
        drop(listener);
        tracker.close();
        if tokio::time::timeout(self.config.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = tracker.len(),
                "connections still open after the shutdown grace period; closing them"
            );
        }
        Ok(())
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    config: ServerConfig,
    shutdown: CancellationToken,
) {
    let io = TokioIo::new(WriteTimeout::new(stream, config.send_timeout));
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_BUF_SIZE)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// A socket that fails a write which has made no progress for `timeout`.
///
/// hyper polls a response body only once its previous writes have drained, so a stalled viewer
/// never gets more frames queued; this makes sure it also does not keep its connection forever.
struct WriteTimeout {
    inner: TcpStream,
    timeout: Duration,
    stall: Pin<Box<Sleep>>,
    armed: bool,
}

impl WriteTimeout {
    fn new(inner: TcpStream, timeout: Duration) -> WriteTimeout {
        WriteTimeout {
            inner,
            timeout,
            stall: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.armed {
                    self.armed = true;
                    let deadline = tokio::time::Instant::now() + self.timeout;
                    self.stall.as_mut().reset(deadline);
                }
                match self.stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("client accepted no data for {:?}", self.timeout),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, polled)
    }
}
