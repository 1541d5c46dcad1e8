//! URL tokens from hostile clients: verification never panics and never accepts a token this
//! server did not sign; a token it signed for one camera verifies for that camera only.
//!
//! The check itself is `mjpegd::fuzzing::token`, shared with the stable corpus replay
//! (`crates/mjpegd/tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd::fuzzing::token(data));
