//! The `mjpegd-load` client (placeholder: being written).
