//! Arbitrary bytes fed to the MJPEG reader in arbitrary chunkings, in every mode, with default
//! and tiny limits: no panic, never more buffered than the limits allow, every frame a whole
//! JPEG within the size limit, and the same frames, counters and fatal error whatever the
//! chunking.
//!
//! Input: one byte choosing the limits, one byte `k`, `k % 16` chunk-size bytes, then the stream.
//!
//! The check itself is `mjpegd::fuzzing::mjpeg_read`, shared with the stable corpus replay
//! (`crates/mjpegd/tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd::fuzzing::mjpeg_read(data));
