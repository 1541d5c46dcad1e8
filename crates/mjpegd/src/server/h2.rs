//! HTTP/2: negotiated by ALPN over TLS, or by prior knowledge (h2c) on plain sockets.
//!
//! A browser opens at most six HTTP/1.1 connections per host, and every live `<img>` holds one
//! for ever; over HTTP/2 one connection carries every camera of a page. Streams are then
//! response bodies (see `http::stream`): hyper asks a stream's body for its next chunk only once
//! the previous one has left that stream's send buffer, so the live-stream rules hold per h2
//! stream — the newest frame when the viewer is ready, at most one frame held by a stalled
//! stream, and the connection's write timeout for a peer that stops reading altogether.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tower::ServiceExt;

use super::{MAX_BUF_SIZE, Shared};
use crate::http;

/// What an HTTP/2 client sends first (RFC 9113 §3.4); no HTTP/1 request starts with it.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most concurrent streams on one connection: a dashboard of every camera live, its state polls
/// and a few snapshots, with room; each stream still takes a viewer place of its camera.
pub(super) const MAX_STREAMS: u32 = 128;

/// How often an HTTP/2 connection is pinged when it carries nothing, and how long the answer
/// may take: a peer that vanished without a word is closed instead of kept.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A socket whose first bytes were read to tell HTTP/2 from HTTP/1: they are read again first.
pub(super) struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> Prefixed<S> {
    /// Reads until the bytes are either HTTP/2's preface or cannot become it; `Ok(None)` when
    /// the peer closed before sending anything. The caller bounds the wait.
    pub(super) async fn sniff(mut inner: S) -> io::Result<Option<(Prefixed<S>, bool)>> {
        let mut prefix = vec![0u8; PREFACE.len()];
        let mut len = 0;
        while len < PREFACE.len() {
            let n = inner.read(&mut prefix[len..]).await?;
            if n == 0 {
                if len == 0 {
                    return Ok(None);
                }
                break;
            }
            len += n;
            if prefix[..len] != PREFACE[..len] {
                break;
            }
        }
        prefix.truncate(len);
        let h2 = prefix.as_slice() == PREFACE;
        Ok(Some((
            Prefixed {
                prefix,
                at: 0,
                inner,
            },
            h2,
        )))
    }
}

impl<S> Prefixed<S> {
    /// The socket, once every sniffed byte has been read again (a socket written to around
    /// this wrapper, by sendfile, must not leave unread bytes in it).
    pub(super) fn drained(&self) -> Option<&S> {
        (self.at >= self.prefix.len()).then_some(&self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if me.at < me.prefix.len() {
            let n = buf.remaining().min(me.prefix.len() - me.at);
            buf.put_slice(&me.prefix[me.at..me.at + n]);
            me.at += n;
            if me.at == me.prefix.len() {
                me.prefix = Vec::new();
                me.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Most bytes [`Gather`] holds before it writes them out whatever h2 says.
const GATHER_MAX: usize = 64 * 1024;

/// Gathers the frames h2 writes during one turn of the connection into one write.
///
/// h2 holds a single DATA frame at a time and flushes the socket before it encodes the next, so
/// with the 16 KiB frames browsers allow, every frame cost its own `writev` (and over TLS its own
/// record flush): 1.7x HTTP/1.1's CPU per GB (BENCHMARKS.md). Here a flush of less than
/// [`GATHER_MAX`] is put off to the end of the turn: h2 reads the socket after every round of
/// writes, so the gathered bytes go out before the read, and a task woken by the put-off flush
/// makes sure a turn that ends without reading still writes them.
struct Gather<S> {
    inner: S,
    buf: Vec<u8>,
    /// How much of `buf` the socket has taken.
    sent: usize,
}

impl<S: AsyncWrite + Unpin> Gather<S> {
    fn new(inner: S) -> Gather<S> {
        Gather {
            inner,
            buf: Vec::new(),
            sent: 0,
        }
    }

    /// Writes out everything gathered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes out everything gathered and flushes the socket.
    fn poll_flush_now(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Makes room for a write of `len` bytes: `Ready(true)` when it is to be gathered,
    /// `Ready(false)` when it is large enough to go to the socket as it is, uncopied.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if !self.buf.is_empty() && self.buf.len() + len > GATHER_MAX {
            ready!(self.poll_drain(cx))?;
        }
        if self.buf.is_empty() && len >= GATHER_MAX {
            return Poll::Ready(Ok(false));
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(GATHER_MAX);
        }
        Poll::Ready(Ok(true))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Gather<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if !me.buf.is_empty() {
            // The end of a turn of writes. A socket that takes nothing now has the task's
            // waker, and the next turn comes back here.
            if let Poll::Ready(r) = me.poll_flush_now(cx) {
                r?;
                // An idle connection keeps no buffer.
                me.buf = Vec::new();
            }
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gather<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        if !ready!(me.poll_room(cx, buf.len()))? {
            return Pin::new(&mut me.inner).poll_write(cx, buf);
        }
        me.buf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        let me = &mut *self;
        if !ready!(me.poll_room(cx, len))? {
            return Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            me.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.len() < GATHER_MAX {
            // Put off: the rest of this turn may add more. Woken, the task comes back for it
            // even if this turn ends without reading.
            if !self.buf.is_empty() {
                cx.waker().wake_by_ref();
            }
            return Poll::Ready(Ok(()));
        }
        self.poll_flush_now(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush_now(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one HTTP/2 connection until it ends, its client reads too slowly for a response's
/// minimum rate, or the server shuts down (then GOAWAY, and open streams end).
pub(super) async fn serve<S>(io: S, pace: http::Pace, peer: Option<SocketAddr>, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = shared.router.clone();
    let watched = pace.clone();
    // A connection that sends no request within the head's time limit is closed, as over
    // HTTP/1: the preface alone must not hold a connection slot until the ping times out.
    let asked = Arc::new(AtomicBool::new(false));
    let first = Arc::clone(&asked);
    let limit = shared.config.header_read_timeout;
    let silent = async move {
        tokio::time::sleep(limit).await;
        if first.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        asked.store(true, Ordering::Relaxed);
        if let Some(p) = peer {
            req.extensions_mut().insert(ConnectInfo(p));
        }
        // No stream slot: over HTTP/2 a stream is its response body (see `http::stream`).
        req.extensions_mut().insert(http::StreamSlot::as_body());
        req.extensions_mut().insert(pace.clone());
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_BUF_SIZE as u32)
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(Gather::new(io)), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = silent => {
            tracing::debug!(?peer, "HTTP/2 connection sent no request within the time limit; closed");
            return;
        }
        why = watched.breached() => {
            tracing::info!(?peer, "closed an HTTP/2 connection whose client reads too slowly: {why}");
            return;
        }
        () = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(?peer, error = %e, "HTTP/2 connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sniffed(input: &[u8]) -> Option<(Vec<u8>, bool)> {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, input)
            .await
            .expect("write");
        drop(client);
        let (mut p, h2) = Prefixed::sniff(server).await.expect("sniff")?;
        let mut all = Vec::new();
        p.read_to_end(&mut all).await.expect("read back");
        Some((all, h2))
    }

    /// A socket that records the size of each write it takes, and reads end of input.
    #[derive(Default)]
    struct Writes(Vec<usize>, usize);

    impl AsyncRead for Writes {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(buf.len());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.1 += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A turn of frames, each written and flushed as h2 does, reaches the socket as one write
    /// when the turn reads; the put-off flush wakes the task; a full buffer and a shutdown
    /// write at once.
    #[test]
    fn gather_writes_a_turn_of_frames_at_once() {
        let waker = std::sync::Arc::new(Woken::default());
        let w = std::task::Waker::from(std::sync::Arc::clone(&waker));
        let mut cx = Context::from_waker(&w);
        let mut g = Gather::new(Writes::default());
        let frame = [7u8; 16 * 1024 + 9];
        for _ in 0..3 {
            let slices = [io::IoSlice::new(&frame[..9]), io::IoSlice::new(&frame[9..])];
            let n = Pin::new(&mut g).poll_write_vectored(&mut cx, &slices);
            assert!(matches!(n, Poll::Ready(Ok(n)) if n == frame.len()));
            assert!(Pin::new(&mut g).poll_flush(&mut cx).is_ready());
        }
        assert!(g.inner.0.is_empty(), "written before the turn ended");
        assert!(
            waker.0.load(Ordering::SeqCst) >= 1,
            "a put-off flush wakes the task"
        );
        let mut space = [0u8; 16];
        let mut rb = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut g).poll_read(&mut cx, &mut rb).is_ready());
        assert_eq!(g.inner.0, [3 * frame.len()]);
        assert_eq!(g.inner.1, 1, "the socket is flushed with it");
        // More than the buffer holds goes out as the buffer fills, without waiting for a read.
        for _ in 0..5 {
            assert!(Pin::new(&mut g).poll_write(&mut cx, &frame).is_ready());
        }
        assert_eq!(g.inner.0, [3 * frame.len(), 3 * frame.len()]);
        assert!(Pin::new(&mut g).poll_shutdown(&mut cx).is_ready());
        assert_eq!(
            g.inner.0[2],
            2 * frame.len(),
            "shutdown writes what is left"
        );
        // A frame as large as the buffer (a client allowing big DATA frames) goes out as it is.
        let big = vec![1u8; GATHER_MAX + 1];
        let n = Pin::new(&mut g).poll_write(&mut cx, &big);
        assert!(matches!(n, Poll::Ready(Ok(n)) if n == big.len()));
        assert_eq!(g.inner.0[3..], [big.len()]);
        assert!(g.buf.is_empty(), "and is not copied");
    }

    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_preface_means_http2_and_every_byte_is_read_again() {
        let mut h2 = PREFACE.to_vec();
        h2.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        assert_eq!(sniffed(&h2).await, Some((h2.clone(), true)));
        for h1 in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST /cameras/a/controls HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/1.1\r\n\r\n",
            b"P",
        ] {
            assert_eq!(sniffed(h1).await, Some((h1.to_vec(), false)), "{h1:?}");
        }
        assert_eq!(sniffed(b"").await, None);
    }
}
