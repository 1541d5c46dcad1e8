//! Times on the recording URLs (`at=`, `from=`, `to=`) from hostile clients: parsing never
//! panics (issue 18 item 4: a non-ASCII zone was sliced inside a character), and an accepted time
//! formats back to itself.
//!
//! The check itself is `mjpegd::fuzzing::record_time`, shared with the stable corpus replay
//! (`crates/mjpegd/tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd::fuzzing::record_time(data));
