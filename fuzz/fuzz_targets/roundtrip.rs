//! Write → read equality: frames built from the input, written by our writer, read back frame
//! for frame (bytes and timestamps, no error) in auto and multipart modes, whatever the chunking.
//!
//! Input: a chunk-size byte, then frames, each a flag byte (with a timestamp or not), a length
//! byte and that many payload bytes (wrapped in SOI ... EOI).
//!
//! The check itself is `mjpegd::fuzzing::roundtrip`, shared with the stable corpus replay
//! (`crates/mjpegd/tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd::fuzzing::roundtrip(data));
