//! Incremental reader for incoming MJPEG streams (placeholder: being written).
