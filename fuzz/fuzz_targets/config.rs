//! Config files: parsing and checking arbitrary text never panics, and every error names a key
//! path or a line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mjpegd::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match config::parse(text) {
        Ok(file) => {
            let _ = config::check_server(&file.server, "server.");
            // Checking cameras builds openers; keep to specs that touch no files or processes.
            let safe = file.cameras.iter().all(|c| {
                c.source == "testpattern" || c.source == "images" || c.source.starts_with("http")
            });
            if safe {
                if let Ok(cams) = config::check_cameras(&file.cameras) {
                    let names: Vec<String> = cams.iter().map(|c| c.name.clone()).collect();
                    let _ = config::check_auth(&file.auth, &names);
                }
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
