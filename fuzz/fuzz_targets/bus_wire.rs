//! Frames from the NATS bus as a hostile peer sends them (issue 18 item 6): decoding arbitrary
//! headers and payloads never panics, and an accepted frame is whole and re-encodes to itself.
//!
//! The check itself is `mjpegd::fuzzing::bus_wire`, shared with the stable corpus replay
//! (`crates/mjpegd/tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd::fuzzing::bus_wire(data));
