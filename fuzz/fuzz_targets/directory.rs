//! Camera announcements on `mjpegd.directory` from a hostile peer (issue 18 item 6): parsing
//! never panics, and what is accepted stays within the size and camera-count limits.
//!
//! The check itself is `mjpegd::fuzzing::directory`, shared with the stable corpus replay
//! (`crates/mjpegd/tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd::fuzzing::directory(data));
