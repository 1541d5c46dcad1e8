//! The NATS bus is not in this build (feature `bus` off): a `[bus]` section, `--publish`,
//! `--cameras-from` and `nats://` sources are refused when the configuration is checked, with
//! how to get the feature. The settings type is uninhabited, so no code path can pretend to
//! publish or discover.

/// What configuring the bus says in a build without it.
pub const NOT_BUILT: &str = "this mjpegd was built without the `bus` feature; rebuild with \
    `cargo build --release --features bus` (on by default)";

/// The checked `[bus]` settings; no value exists in a build without the bus.
#[derive(Debug, Clone)]
pub enum BusSettings {}
