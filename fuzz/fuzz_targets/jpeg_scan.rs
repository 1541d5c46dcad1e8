//! The JPEG end scanner and the other JPEG helpers on arbitrary bytes: no panic, the same
//! result whatever the chunking, and a `Complete` length that really ends with EOI.
//!
//! Input: one byte giving the chunk size, then the bytes.
//!
//! The check itself is `mjpegd::fuzzing::jpeg_scan`, shared with the stable corpus replay
//! (`crates/mjpegd/tests/fuzz_corpus.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd::fuzzing::jpeg_scan(data));
