//! mjpegd: a Motion JPEG (`multipart/x-mixed-replace`) live video streaming server.
//!
//! # Layout
//!
//! A frame flows `source` → `hub` (one capture task per camera, latest frame shared) → `http`
//! (one paced stream per viewer) → the socket. Sources and HTTP never import each other; both
//! meet at [`frame`] and the hub's API.
//!
//! - [`frame`]: an immutable published frame: JPEG bytes plus the ready-to-send multipart part.
//! - [`jpeg`]: pure JPEG inspection (markers, dimensions); no I/O.
//! - [`mjpeg`]: the wire format: writing parts ([`mjpeg::write`]) and reading streams ([`mjpeg::read`]).
//! - [`render`]: a small RGB canvas with a bitmap font and a JPEG encoder (test pattern, no-signal).
//! - [`source`]: the [`source::Source`] trait and its backends (test pattern, image files, ...).
//! - [`hub`]: cameras: capture lifecycle (start on first viewer, stop when idle), latest-frame fan-out.
//! - [`http`]: routes, pages, the stream body, snapshots, mjpg-streamer compatibility.
//! - [`tls`]: rustls (ring) server certificates, reloadable on SIGHUP (feature `tls`; without it
//!   `--tls-cert` is refused at startup).
//! - [`crypto`]: the process-wide rustls provider (ring) shared by TLS, the relay and the bus.
//! - [`bus`]: scale-out over NATS: camera nodes publish frames, edges discover cameras and send demand.
//! - [`motion`]: motion detection on a small luma image; the event state machine.
//! - [`record`]: recording to segment files; catalogue, retention, replay and computed exports.
//! - [`server`]: the composition root: accept loop, per-connection limits, graceful shutdown.
//! - [`transform`]: rotate, flip and downscale, once per frame in the capture path.
//! - [`config`]: the TOML config file: data plus validation with key paths in errors.
//! - [`auth`]: Basic users with argon2 hashes, signed URL tokens (feature `auth`; without it
//!   every request is open and configuring users is an error).
//! - [`principal`]: who is asking and which cameras they may watch, checked by every handler.
//! - [`cli`]: command-line flags (and `MJPEGD_*` environment variables) into checked settings.

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(not(feature = "auth"))]
#[path = "auth_off.rs"]
pub mod auth;
pub mod bus;
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
pub mod mjpeg;
pub mod motion;
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
