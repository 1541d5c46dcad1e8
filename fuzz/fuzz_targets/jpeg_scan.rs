//! The JPEG end scanner and the other JPEG helpers on arbitrary bytes: no panic, the same
//! result whatever the chunking, and a `Complete` length that really ends with EOI.
//!
//! Input: one byte giving the chunk size, then the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mjpegd::jpeg::{self, EndScanner, Scan};

fn scan(data: &[u8], chunk: usize) -> Scan {
    let mut scanner = EndScanner::new();
    let mut end = 0;
    loop {
        end = (end + chunk).min(data.len());
        let r = scanner.scan(&data[..end]);
        if r != Scan::Incomplete || end == data.len() {
            return r;
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [chunk, data @ ..] = input else {
        return;
    };
    let whole = scan(data, data.len().max(1));
    assert_eq!(scan(data, usize::from(*chunk) + 1), whole);
    match whole {
        Scan::Complete(n) => {
            assert!(n >= 4 && n <= data.len());
            assert!(data.starts_with(&[0xFF, 0xD8]));
            assert_eq!(&data[n - 2..n], &[0xFF, 0xD9]);
            assert_eq!(scan(&data[..n], 1), whole);
        }
        Scan::Invalid { pos, .. } => assert!(pos < data.len()),
        Scan::Incomplete => {}
    }
    if let Some(n) = jpeg::complete_len(data) {
        assert!(n <= data.len());
    }
    let _ = jpeg::dimensions(data);
    let _ = jpeg::looks_complete(data);
});
