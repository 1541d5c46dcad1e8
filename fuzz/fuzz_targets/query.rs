//! Query strings as clients send them: parsing never panics, and the parameters the server reads
//! (`action`, `fps`, `width`) either parse within their documented ranges or are refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mjpegd::http::query::{FPS_RANGE, Query};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let q = Query::parse(Some(raw));
    let _ = q.get("action");
    if let Ok(Some(interval)) = q.min_interval() {
        let fps = 1.0 / interval.as_secs_f64();
        assert!(fps >= FPS_RANGE.0 * 0.999 && fps <= FPS_RANGE.1 * 1.001, "fps {fps}");
    }
    if let Ok(Some(w)) = q.thumbnail_width() {
        assert!((16..=8192).contains(&w));
    }
});
