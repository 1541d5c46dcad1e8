//! Config files: parsing and checking arbitrary text never panics, and every error names a key
//! path or a line.
//!
//! The check itself is `mjpegd::fuzzing::config`, shared with the stable corpus replay
//! (`crates/mjpegd/tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd::fuzzing::config(data));
