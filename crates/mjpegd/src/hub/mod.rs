//! Cameras and the fan-out of their frames.
//!
//! The hub owns every [`Camera`]. A camera runs one capture task while anyone watches (plus an
//! idle grace period), publishes each frame once into a latest-value channel, and every viewer
//! reads the newest frame from it: a slow viewer skips frames, it never queues them. The hub
//! knows sources only through the [`crate::source::Opener`] trait and knows nothing of HTTP.

mod camera;
mod capture;
mod config;
pub mod meter;
mod same;
mod sizes;
mod stats;
#[cfg(test)]
mod tests;

pub use camera::{Camera, Subscription, ViewerHandle, ViewerInfo, ViewerWire};
pub use capture::Context;
pub use config::{
    CameraConfig, DEFAULT_FPS, DEFAULT_IDLE_TIMEOUT, DEFAULT_QUALITY, DEFAULT_SIZE,
    DEFAULT_SOURCE_TIMEOUT, FPS_RANGE, MAX_CAMERAS, MIN_DIMENSION, peer_params,
};
pub use sizes::{
    Bounds, MAX_SIZES_PER_CAMERA, RequestedSize, SizeInfo, SizedSubscription, TooManySizes,
};
pub use stats::{CameraStats, Demand};

use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

/// A camera could not be added: the name is taken (by a configured camera, or one added before).
#[derive(Debug, thiserror::Error)]
#[error("a camera named {0:?} already exists")]
pub struct NameTaken(pub String);

/// All cameras of a server: the configured ones in configuration order, then any added at run
/// time (cameras discovered on a bus) in the order they came.
pub struct Hub {
    cameras: RwLock<Vec<Arc<Camera>>>,
    /// Cameras made for others (mosaics), not listed: only woken with the rest at shutdown.
    detached: std::sync::Mutex<Vec<std::sync::Weak<Camera>>>,
    context: Arc<Context>,
    shutdown: CancellationToken,
}

impl Hub {
    /// Builds the cameras, capturing on the caller's runtime and encoding inline (no capture
    /// thread, no encoder pool: see [`Hub::with_context`]); capture starts only when someone
    /// watches. `shutdown` stops every capture task.
    pub fn new(configs: Vec<CameraConfig>, shutdown: CancellationToken) -> Hub {
        Hub::with_context(configs, Context::default(), shutdown)
    }

    /// As [`Hub::new`], capturing and encoding where `context` says.
    pub fn with_context(
        configs: Vec<CameraConfig>,
        context: Context,
        shutdown: CancellationToken,
    ) -> Hub {
        let context = Arc::new(context);
        Hub {
            cameras: RwLock::new(
                configs
                    .into_iter()
                    .map(|c| Arc::new(Camera::new(c, Arc::clone(&context), shutdown.child_token())))
                    .collect(),
            ),
            detached: std::sync::Mutex::default(),
            context,
            shutdown,
        }
    }

    /// Where capture and encoding run.
    pub fn context(&self) -> &Context {
        &self.context
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Camera>>> {
        // A panic elsewhere while holding the lock leaves the list itself intact.
        self.cameras.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The camera with this name.
    pub fn get(&self, name: &str) -> Option<Arc<Camera>> {
        self.read().iter().find(|c| c.name() == name).cloned()
    }

    /// The first camera: the one served at the classic URLs.
    pub fn first(&self) -> Option<Arc<Camera>> {
        self.read().first().cloned()
    }

    /// All cameras now, in order (a snapshot: cameras may be added or removed meanwhile).
    pub fn cameras(&self) -> Vec<Arc<Camera>> {
        self.read().clone()
    }

    /// Wakes every viewer of every camera without a new frame (shutdown: they check why).
    pub fn wake_viewers(&self) {
        for cam in self.read().iter() {
            cam.wake_viewers();
        }
        // Poison recovered: the list only ever gains or loses whole entries.
        let detached = self.detached.lock().unwrap_or_else(|e| e.into_inner());
        for cam in detached.iter().filter_map(std::sync::Weak::upgrade) {
            cam.wake_viewers();
        }
    }

    /// A camera that captures and encodes like the others but is not listed (not in
    /// [`Hub::cameras`], the grid or the state page): a mosaic of listed ones. It lives while
    /// its owner holds it.
    pub fn detached(&self, config: CameraConfig) -> Arc<Camera> {
        let cam = Arc::new(Camera::new(
            config,
            Arc::clone(&self.context),
            self.shutdown.child_token(),
        ));
        // Poison recovered: the list only ever gains or loses whole entries.
        let mut detached = self.detached.lock().unwrap_or_else(|e| e.into_inner());
        detached.retain(|w| w.strong_count() > 0);
        detached.push(Arc::downgrade(&cam));
        cam
    }

    /// Adds a camera at run time; refused when the name is taken.
    pub fn add(&self, config: CameraConfig) -> Result<Arc<Camera>, NameTaken> {
        let mut cams = self.cameras.write().unwrap_or_else(|e| e.into_inner());
        if cams.iter().any(|c| c.name() == config.name) {
            return Err(NameTaken(config.name));
        }
        let cam = Arc::new(Camera::new(
            config,
            Arc::clone(&self.context),
            self.shutdown.child_token(),
        ));
        cams.push(Arc::clone(&cam));
        Ok(cam)
    }

    /// Removes the camera `name` if nobody watches it and its capture has stopped, and returns
    /// it; a watched camera stays (its viewers see no-signal rather than being cut).
    pub fn remove_if_idle(&self, name: &str) -> Option<Arc<Camera>> {
        let mut cams = self.cameras.write().unwrap_or_else(|e| e.into_inner());
        let i = cams.iter().position(|c| c.name() == name)?;
        if cams[i].demand() != Demand::default() {
            return None;
        }
        let cam = cams.remove(i);
        // A viewer that looked the camera up just before must not restart its capture.
        cam.retire();
        Some(cam)
    }
}

/// The run-time camera list (cameras added and removed by the bus).
#[cfg(test)]
mod registry_tests {
    use super::*;
    use crate::source::{BoxFuture, Opener, Source, SourceError};
    use std::time::Duration;

    struct Never;
    impl Opener for Never {
        fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
            Box::pin(async { Err(SourceError::new("never opens")) })
        }
        fn describe(&self) -> String {
            "never".into()
        }
    }

    fn config(name: &str) -> CameraConfig {
        CameraConfig {
            name: name.into(),
            opener: Arc::new(Never),
            width: 64,
            height: 48,
            quality: 50,
            idle_timeout: Duration::from_millis(10),
            source_timeout: Duration::from_secs(1),
            transform: crate::transform::Transform::default(),
            fps: 1.0,
            stream_size: None,
            drop_same_frames: false,
            overlay: None,
            controls: Default::default(),
        }
    }

    #[tokio::test]
    async fn cameras_are_added_and_removed_at_run_time() {
        let hub = Hub::new(vec![config("a")], CancellationToken::new());
        assert!(hub.add(config("a")).is_err(), "names stay unique");
        let b = hub.add(config("b")).expect("added");
        let names: Vec<String> = hub.cameras().iter().map(|c| c.name().to_owned()).collect();
        assert_eq!(names, ["a", "b"], "configured first, then added");
        assert_eq!(
            hub.first().map(|c| c.name().to_owned()).as_deref(),
            Some("a")
        );

        // Watched: kept.
        let sub = b.subscribe();
        assert!(hub.remove_if_idle("b").is_none());
        drop(sub);
        let mut demand = b.watch_demand();
        tokio::time::timeout(Duration::from_secs(10), demand.wait_for(|d| !d.running))
            .await
            .expect("capture stops when idle")
            .expect("camera alive");
        let gone = hub.remove_if_idle("b").expect("removed when idle");
        assert!(hub.get("b").is_none());
        // A late subscriber of the removed camera does not restart its capture.
        let _late = gone.subscribe();
        assert!(!gone.demand().running);
    }
}
