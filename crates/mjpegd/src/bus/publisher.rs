//! The camera node's side: one task per published camera, a hub consumer that counts as demand
//! only while edges want the camera.
//!
//! The task listens for heartbeats on the camera's demand subject. On the first one it
//! subscribes to the camera (starting capture, as a viewer would) and publishes every new frame;
//! [`crate::link::DEMAND_HOLD`] after the last heartbeat it drops the subscription, and the camera then
//! idles after its own idle timeout as it does when its last local viewer leaves. It reads the
//! camera's latest frame like any viewer: if the bus is slower than the camera, frames are
//! skipped here, never queued, and the camera and its local viewers are not slowed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::frame::Frame;
use crate::hub::{Camera, Subscription};
use crate::link::{
    CameraBusStats, DEFAULT_MAX_PAYLOAD, Link, demand_subject, frames_subject, wire,
};

/// Starts publishing `camera` on the bus of `link` until `shutdown`.
pub fn spawn(link: Arc<Link>, camera: Arc<Camera>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            () = run(&link, &camera) => {}
        }
    });
}

async fn run(link: &Link, camera: &Arc<Camera>) {
    let name = camera.name().to_owned();
    let client = match link.client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(camera = %name, "{e}; the camera is not published");
            return;
        }
    };
    let stats = link.stats().camera(&name);
    let subject = frames_subject(&name);
    loop {
        let mut demand = match client.subscribe(demand_subject(&name)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(camera = %name, error = %e, "bus: cannot listen for demand; retrying");
                sleep(crate::link::DEMAND_INTERVAL).await;
                continue;
            }
        };
        tracing::info!(camera = %name, subject = %subject, servers = %link.describe(), "bus: publishing on demand");
        let mut held: Option<Subscription> = None;
        let mut deadline = Instant::now();
        let mut oversize_logged = false;
        let mut last_seq = 0;
        loop {
            tokio::select! {
                m = demand.next() => {
                    if m.is_none() {
                        // The client closed the subscription: listen again.
                        break;
                    }
                    deadline = Instant::now() + crate::link::DEMAND_HOLD;
                    if held.is_none() {
                        held = Some(camera.subscribe());
                        stats.demand.store(true, Ordering::Relaxed);
                        tracing::info!(camera = %name, "bus: an edge watches; capturing for the bus");
                    }
                }
                () = sleep_until(deadline), if held.is_some() => {
                    held = None;
                    stats.demand.store(false, Ordering::Relaxed);
                    tracing::info!(camera = %name, "bus: no edge watches any more");
                }
                frame = next_frame(&mut held, &mut last_seq) => {
                    if let Some(frame) = frame {
                        publish(&client, &subject, &frame, &stats, &name, &mut oversize_logged).await;
                    }
                }
            }
        }
        stats.demand.store(false, Ordering::Relaxed);
    }
}

/// The next new frame of the held subscription; pending while none is held.
async fn next_frame(held: &mut Option<Subscription>, last_seq: &mut u64) -> Option<Frame> {
    let Some(sub) = held.as_mut() else {
        return std::future::pending().await;
    };
    let frames = sub.frames();
    loop {
        if frames.changed().await.is_err() {
            return std::future::pending().await;
        }
        // A wake without a new frame (`Camera::wake_viewers`) is not one to publish.
        let frame = frames.borrow_and_update().clone();
        if let Some(f) = &frame {
            if f.seq() <= *last_seq {
                continue;
            }
            *last_seq = f.seq();
        }
        return frame;
    }
}

async fn publish(
    client: &async_nats::Client,
    subject: &str,
    frame: &Frame,
    stats: &CameraBusStats,
    name: &str,
    oversize_logged: &mut bool,
) {
    if client.connection_state() != async_nats::connection::State::Connected {
        // Queued frames would reach edges late and stale: skip until the server is back.
        stats.publish_skipped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let (headers, header_len) = wire::headers(frame);
    let max = match client.server_info().max_payload {
        0 => DEFAULT_MAX_PAYLOAD,
        m => m,
    };
    let size = frame.jpeg_len() + header_len;
    if size > max {
        stats.oversize.fetch_add(1, Ordering::Relaxed);
        let msg = oversize_message(name, frame.jpeg_len(), header_len, max);
        if !*oversize_logged {
            *oversize_logged = true;
            tracing::error!(camera = %name, "{msg}");
        }
        stats.set_error(msg);
        return;
    }
    if *oversize_logged {
        *oversize_logged = false;
        tracing::info!(camera = %name, "bus: frames fit the server's max_payload again");
    }
    match client
        .publish_with_headers(subject.to_owned(), headers, frame.jpeg())
        .await
    {
        Ok(()) => {
            stats.published.fetch_add(1, Ordering::Relaxed);
            stats
                .published_bytes
                .fetch_add(frame.jpeg_len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            stats.publish_skipped.fetch_add(1, Ordering::Relaxed);
            stats.set_error(format!("bus: publish failed: {e}"));
        }
    }
}

/// The error for a frame the server would refuse: both sizes, and how to raise the limit.
pub fn oversize_message(camera: &str, jpeg: usize, headers: usize, max: usize) -> String {
    format!(
        "bus: camera {camera}: a frame of {} bytes (JPEG {jpeg} + headers {headers}) exceeds the \
         NATS server's max_payload of {max} bytes, so its frames are not published; raise \
         max_payload in the nats-server config (e.g. `max_payload: 8MB`, at most 64MB) or lower \
         the camera's size or quality",
        jpeg + headers
    )
}
