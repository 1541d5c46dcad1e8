//! Query strings as clients send them: parsing never panics, and the parameters the server reads
//! (`action`, `fps`, `width`) either parse within their documented ranges or are refused.
//!
//! The check itself is `mjpegd::fuzzing::query`, shared with the stable corpus replay
//! (`crates/mjpegd/tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd::fuzzing::query(data));
