//! The bus's node layer: camera nodes publish their cameras' frames, edge nodes discover and
//! serve them.
//!
//! Above the hub: the [`publisher`] is a hub consumer (it holds a subscription, like a viewer,
//! while edges send demand), and [`directory`] announces a node's cameras and adds the cameras
//! other nodes announce to an edge's hub. Both run on a [`crate::link::Link`], the low layer that
//! also carries `source::nats` (a bus subject as a camera source); `server` wires them.
//!
//! - `mjpegd.demand.CAMERA`: heartbeats from every edge whose copy of the camera is capturing
//!   (it has viewers, or is in its idle grace). The camera node's publisher holds its
//!   subscription while heartbeats arrive, so with no edge watching the camera idles exactly as
//!   with no local viewer.
//! - `mjpegd.directory`: camera nodes announce their published cameras every
//!   [`crate::link::ANNOUNCE_INTERVAL`]; edges add a camera on its first announcement and forget
//!   it after [`crate::link::FORGET_AFTER`] without one. An edge asks on
//!   `mjpegd.directory.query` at start so it need not wait for the next round.

pub mod directory;
pub mod publisher;

use crate::link::ConnectConfig;

/// Which cameras a camera node publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// None (an edge, or a node that only serves locally).
    None,
    /// Every configured camera.
    All,
    /// These cameras.
    Only(Vec<String>),
}

/// The checked `[bus]` settings.
#[derive(Debug, Clone)]
pub struct BusSettings {
    /// How to reach the bus.
    pub connect: ConnectConfig,
    /// Which cameras to publish.
    pub publish: Publish,
    /// Serve the cameras announced on the bus.
    pub discover: bool,
    /// Settings of discovered cameras.
    pub edge: directory::EdgeDefaults,
}
