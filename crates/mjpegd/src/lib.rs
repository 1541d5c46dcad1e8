//! mjpegd: a Motion JPEG (`multipart/x-mixed-replace`) live video streaming server.
//!
//! # Layout
//!
//! A frame flows `source` → `hub` (one capture task per camera, latest frame shared) → `http`
//! (the stream hand-off) → `server` (which writes it to the socket). Modules use only the layers
//! below theirs (`docs/architecture.md` draws them, with the frame's path and the threads each
//! piece runs on; `scripts/layers.py` checks the rule in CI):
//!
//! - layer 0, pure leaves:
//!   - [`frame`]: an immutable published frame: JPEG bytes plus the ready-to-send multipart part.
//!   - [`jpeg`]: pure JPEG inspection (markers, dimensions); no I/O.
//!   - [`mjpeg`]: the wire format: writing parts ([`mjpeg::write`]) and reading streams ([`mjpeg::read`]).
//!   - [`render`], [`codec`]: a small RGB canvas with a bitmap font, and the JPEG encoder.
//!   - [`transform`]: rotate, flip and downscale, once per frame in the capture path.
//!   - [`overlay`]: text (clock, camera name, rate) painted into frames before they are encoded.
//!   - [`civil`]: calendar day numbers for times shown and parsed.
//!   - [`pool`]: the encoder threads and the ordered, bounded pipeline over them.
//!   - [`name`], [`url`]: the camera name rule; credential redaction of URLs.
//!   - [`principal`], [`shutdown`], [`crypto`]: who is asking, the shutdown flag, the rustls provider.
//!   - [`persist`]: small state files written atomically (camera controls, the recording switch).
//! - layer 1, `link`: the NATS connection, subjects and the frame wire format (feature `bus`).
//! - layer 2, [`source`]: the [`source::Source`] trait and its backends (test pattern, images,
//!   exec, relay, V4L2, a bus subject with feature `bus`).
//! - layer 3, [`hub`]: cameras: capture lifecycle (start on first viewer, stop when idle),
//!   latest-frame fan-out, per-request sizes, the one [`hub::CameraConfig`] constructor.
//! - layer 4, [`bus`] (camera nodes publish, edges discover; feature `bus`, without it a
//!   `[bus]` section, --publish, --cameras-from and `nats://` sources are errors) and
//!   [`record`] (segment files, catalogue, retention, replay and computed exports) and
//!   [`motion`] (detection on a small luma image, on the encoder pool; the event state
//!   machine): hub consumers.
//! - layer 5, [`http`] (routes, pages, the stream hand-off, snapshots, mjpg-streamer
//!   compatibility) and [`auth`] (Basic users with argon2 hashes, signed URL tokens; feature
//!   `auth`, without it every request is open and configuring users is an error).
//! - layer 6, [`server`] (the composition root: accept loop, per-connection limits, the direct
//!   send path, the whole lifecycle up to the final sync) and [`tls`] (rustls certificates,
//!   reloadable on SIGHUP; feature `tls`).
//! - layer 7, [`config`] (the TOML file: data plus validation with key paths in errors, one file
//!   per section) and [`cli`] (flags and `MJPEGD_*` variables into checked settings).

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(not(feature = "auth"))]
#[path = "auth_off.rs"]
pub mod auth;
#[cfg(feature = "bus")]
pub mod bus;
#[cfg(not(feature = "bus"))]
#[path = "bus_off.rs"]
pub mod bus;
pub mod civil;
pub mod cli;
pub mod codec;
pub mod config;
pub mod crypto;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod jpeg;
#[cfg(feature = "bus")]
pub mod link;
pub mod mjpeg;
pub mod mosaic;
pub mod motion;
pub mod name;
pub mod overlay;
pub mod persist;
pub mod pool;
pub mod principal;
pub mod record;
pub mod render;
pub mod server;
pub mod shutdown;
pub mod source;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(not(feature = "tls"))]
#[path = "tls_off.rs"]
pub mod tls;
pub mod transform;
pub mod url;
