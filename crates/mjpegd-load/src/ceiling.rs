//! The "ceiling": a reference MJPEG server that does the least work possible, to tell how much
//! of a measurement is the machine (kernel, loopback, the load client) and how much is mjpegd.
//!
//! One prebuilt JPEG, one part head refreshed per tick (for a live `X-Timestamp`) and shared by
//! every connection, one `writev` per frame per connection with the JPEG passed by reference, on
//! one thread. Any request gets the stream as an HTTP/1.0-style response (no chunking,
//! `Connection: close`), so clients must handle identity bodies.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::Error;
use mjpegd::mjpeg::STREAM_CONTENT_TYPE;
use mjpegd::mjpeg::write::{PART_TRAILER, STREAM_PREAMBLE, timestamp_value, write_all_vectored};

/// Longest request head accepted.
const MAX_REQUEST: usize = 8 * 1024;

/// Longest wait for the request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the ceiling serves.
#[derive(Debug, Clone)]
pub struct CeilingConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The JPEG file served as every frame.
    pub frame: PathBuf,
    /// Frames per second.
    pub fps: f64,
}

fn part_head(len: usize) -> Bytes {
    format!(
        "Content-Type: image/jpeg\r\nContent-Length: {len}\r\nX-Timestamp: {}\r\n\r\n",
        timestamp_value(SystemTime::now())
    )
    .into()
}

fn response_head() -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: {STREAM_CONTENT_TYPE}\r\n\
         Cache-Control: no-store, no-cache, must-revalidate, max-age=0\r\n\
         Pragma: no-cache\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(STREAM_PREAMBLE);
    head
}

/// Serves until the process is stopped. Must run inside a [`tokio::task::LocalSet`].
pub async fn serve(cfg: CeilingConfig) -> Result<(), Error> {
    if !(cfg.fps >= 0.01 && cfg.fps <= 1000.0) {
        return Err(Error::Usage(format!(
            "--fps must be in [0.01, 1000], not {}",
            cfg.fps
        )));
    }
    let jpeg = Bytes::from(
        std::fs::read(&cfg.frame)
            .map_err(|e| Error::io(format!("reading {}", cfg.frame.display()), e))?,
    );
    if !(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9])) {
        return Err(Error::Usage(format!(
            "{} is not a JPEG (must start FF D8 and end FF D9)",
            cfg.frame.display()
        )));
    }
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::io(format!("listening on {}", cfg.listen), e))?;
    eprintln!(
        "mjpegd-load ceiling: serving {} ({} bytes) at {} fps on http://{}/",
        cfg.frame.display(),
        jpeg.len(),
        cfg.fps,
        cfg.listen
    );
    serve_on(listener, jpeg, cfg.fps).await;
    Ok(())
}

/// Serves `jpeg` at `fps` on an already bound listener, forever. Must run inside a
/// [`tokio::task::LocalSet`].
pub async fn serve_on(listener: TcpListener, jpeg: Bytes, fps: f64) {
    let len = jpeg.len();
    let (tx, rx) = watch::channel(part_head(len));
    let period = Duration::from_secs_f64(1.0 / fps);
    // The ticker ends with the server: a detached task would outlive a test's server.
    let ticker = async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            tx.send_replace(part_head(len));
        }
    };
    let response: Bytes = response_head().into();
    let acceptor = async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors, typically: back off instead of spinning on accept.
                    eprintln!("mjpegd-load ceiling: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (rx, jpeg, response) = (rx.clone(), jpeg.clone(), response.clone());
            tokio::task::spawn_local(async move {
                // A viewer that leaves is the normal end of a connection: nothing to report.
                let _ = connection(stream, rx, jpeg, response).await;
            });
        }
    };
    tokio::join!(ticker, acceptor);
}

async fn read_request(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if memchr::memmem::find(&buf, b"\r\n\r\n").is_some()
            || memchr::memmem::find(&buf, b"\n\n").is_some()
        {
            return Ok(());
        }
        if buf.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    mut rx: watch::Receiver<Bytes>,
    jpeg: Bytes,
    response: Bytes,
) -> io::Result<()> {
    tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    // Each frame is one large write: Nagle would only hold back its last segment.
    stream.set_nodelay(true)?;
    stream.write_all(&response).await?;
    loop {
        // Latest-part semantics like mjpegd: a slow connection skips ticks, never queues them.
        let head = rx.borrow_and_update().clone();
        write_all_vectored(&mut stream, [&head, &jpeg, PART_TRAILER]).await?;
        if rx.changed().await.is_err() {
            return Ok(());
        }
    }
}
