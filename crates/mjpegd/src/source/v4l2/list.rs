//! `mjpegd --list-devices`: every /dev/video* node with what it can capture.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::device::{Device, FrameRates, FrameSizes};
use super::format::{PixelFormat, fourcc_str};
use super::{format_fps, open_error, os_text};

/// Most frame sizes listed per format; cameras offer a dozen or two.
const MAX_SIZES_SHOWN: usize = 40;

/// A human-readable list of the V4L2 devices (`/dev/video*`): driver and card name, whether
/// each node captures video, and its formats with their sizes and frame rates.
pub fn list_devices() -> String {
    list_devices_in(Path::new("/dev"))
}

/// [`list_devices`] for the `video*` nodes of `dir`.
fn list_devices_in(dir: &Path) -> String {
    let mut out = String::new();
    let nodes = match video_nodes(dir) {
        Ok(nodes) => nodes,
        Err(e) => return format!("cannot read {}: {}\n", dir.display(), os_text(&e)),
    };
    if nodes.is_empty() {
        return format!(
            "No V4L2 devices ({}/video* does not exist). Is the camera plugged in and its driver \
             loaded? (lsusb, dmesg)\n",
            dir.display()
        );
    }
    let mut first_capture = None;
    for path in &nodes {
        if describe(path, &mut out) && first_capture.is_none() {
            first_capture = Some(path);
        }
    }
    match first_capture {
        Some(path) => {
            let _ = writeln!(
                out,
                "\nUse a capture node: mjpegd --source v4l2:{} --size 1280x720 --fps 30",
                path.display()
            );
        }
        None => out.push_str("\nNone of these nodes captures video in a format mjpegd can use.\n"),
    }
    out
}

/// The `video<N>` entries of `dir`, by number.
fn video_nodes(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut nodes: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix("video"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        nodes.push((n, entry.path()));
    }
    nodes.sort();
    Ok(nodes.into_iter().map(|(_, p)| p).collect())
}

/// Appends one node's description; true when it is a capture node with a usable format.
fn describe(path: &Path, out: &mut String) -> bool {
    let p = path.display();
    let mut device = match Device::open(path) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "{p}: {}", open_error(path, &e));
            return false;
        }
    };
    let caps = match device.capabilities() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "{p}: not a V4L2 device ({})", os_text(&e));
            return false;
        }
    };
    let _ = writeln!(out, "{p}: {} ({}, {})", caps.card, caps.driver, caps.bus);
    if !caps.is_capture() {
        let _ = writeln!(out, "  {}: not a capture device", caps.kind());
        return false;
    }
    let streaming = if caps.can_stream() {
        ""
    } else {
        " (no streaming I/O: not usable)"
    };
    let _ = writeln!(out, "  {}{streaming}", caps.kind());
    let formats = match device.formats() {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(out, "  cannot list formats: {}", os_text(&e));
            return false;
        }
    };
    let mut usable = false;
    for f in &formats {
        let how = match PixelFormat::from_fourcc(f.fourcc) {
            Some(pf) if pf.is_jpeg() => "passed through",
            Some(_) => "encoded by mjpegd",
            None if f.compressed => "compressed, not supported",
            None => "not supported",
        };
        let supported = PixelFormat::from_fourcc(f.fourcc).is_some();
        usable |= supported;
        let _ = writeln!(
            out,
            "  {:<4}  {:<28} [{how}]",
            fourcc_str(f.fourcc),
            f.description
        );
        if !supported {
            continue;
        }
        let sizes = device.frame_sizes(f.fourcc);
        for size in sizes.iter().take(MAX_SIZES_SHOWN) {
            match *size {
                FrameSizes::Discrete(w, h) => {
                    let rates = rates_text(&device.frame_rates(f.fourcc, w, h));
                    let _ = writeln!(out, "        {:<11} {rates}", format!("{w}x{h}"));
                }
                FrameSizes::Range {
                    min,
                    max,
                    step,
                    continuous,
                } => {
                    let step = if continuous {
                        String::new()
                    } else {
                        format!(" in steps of {}x{}", step.0, step.1)
                    };
                    let rates = rates_text(&device.frame_rates(f.fourcc, max.0, max.1));
                    let _ = writeln!(
                        out,
                        "        {}x{} to {}x{}{step}; at {}x{}: {rates}",
                        min.0, min.1, max.0, max.1, max.0, max.1
                    );
                }
            }
        }
        if sizes.len() > MAX_SIZES_SHOWN {
            let _ = writeln!(
                out,
                "        ... {} more sizes",
                sizes.len() - MAX_SIZES_SHOWN
            );
        }
    }
    if formats.is_empty() {
        out.push_str("  no capture formats listed\n");
    }
    for line in super::controls::describe(&device, path) {
        let _ = writeln!(out, "{line}");
    }
    usable && caps.can_stream()
}

/// `30, 15, 7.5 fps`, `1-30 fps`, or `rates not listed`.
fn rates_text(rates: &FrameRates) -> String {
    match rates {
        FrameRates::Discrete(r) if r.is_empty() => "rates not listed".into(),
        FrameRates::Discrete(r) => {
            let list: Vec<String> = r.iter().map(|&f| format_fps(f)).collect();
            format!("{} fps", list.join(", "))
        }
        FrameRates::Range { min_fps, max_fps } => {
            format!("{}-{} fps", format_fps(*min_fps), format_fps(*max_fps))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_dev_says_what_to_check() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = list_devices_in(dir.path());
        assert!(text.starts_with("No V4L2 devices"), "{text}");
    }

    #[test]
    fn nodes_are_sorted_by_number_and_non_devices_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["video10", "video2", "video0", "videoX", "vbi0"] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        let nodes = video_nodes(dir.path()).expect("list");
        let names: Vec<_> = nodes
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["video0", "video2", "video10"]);
        let text = list_devices_in(dir.path());
        assert!(text.contains("video0: not a V4L2 device"), "{text}");
        assert!(text.contains("None of these nodes"), "{text}");
    }

    #[test]
    fn rates() {
        assert_eq!(
            rates_text(&FrameRates::Discrete(vec![30.0, 15.0, 7.5])),
            "30, 15, 7.5 fps"
        );
        assert_eq!(
            rates_text(&FrameRates::Discrete(vec![])),
            "rates not listed"
        );
        assert_eq!(
            rates_text(&FrameRates::Range {
                min_fps: 1.0,
                max_fps: 60.0
            }),
            "1-60 fps"
        );
    }

    #[test]
    fn lists_this_machine_without_panicking() {
        // No camera on CI: this only checks the real /dev is walked safely.
        let text = list_devices();
        assert!(!text.is_empty());
    }
}
