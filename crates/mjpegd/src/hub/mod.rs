//! Cameras and the fan-out of their frames.
//!
//! The hub owns every [`Camera`]. A camera runs one capture task while anyone watches (plus an
//! idle grace period), publishes each frame once into a latest-value channel, and every viewer
//! reads the newest frame from it: a slow viewer skips frames, it never queues them. The hub
//! knows sources only through the [`crate::source::Opener`] trait and knows nothing of HTTP.

mod camera;
mod capture;
pub mod meter;
mod same;
mod sizes;
#[cfg(test)]
mod tests;

pub use camera::{
    Camera, CameraConfig, CameraStats, Demand, Subscription, ViewerHandle, ViewerInfo, ViewerWire,
};
pub use sizes::{
    Bounds, MAX_SIZES_PER_CAMERA, RequestedSize, SizeInfo, SizedSubscription, TooManySizes,
};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// All cameras of a server, in configuration order.
pub struct Hub {
    cameras: Vec<Arc<Camera>>,
}

impl Hub {
    /// Builds the cameras; capture starts only when someone watches. `shutdown` stops every
    /// capture task.
    pub fn new(configs: Vec<CameraConfig>, shutdown: CancellationToken) -> Hub {
        Hub {
            cameras: configs
                .into_iter()
                .map(|c| Arc::new(Camera::new(c, shutdown.child_token())))
                .collect(),
        }
    }

    /// The camera with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Camera>> {
        self.cameras.iter().find(|c| c.name() == name)
    }

    /// The first camera: the one served at the classic URLs.
    pub fn first(&self) -> Option<&Arc<Camera>> {
        self.cameras.first()
    }

    /// All cameras in configuration order.
    pub fn cameras(&self) -> &[Arc<Camera>] {
        &self.cameras
    }
}
