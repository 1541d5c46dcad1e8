//! Overlays through the real binary, checked with a real JPEG decoder: the text's box and
//! glyphs are in the configured corner of snapshots, live stream frames and per-request sizes,
//! for a camera-compressed source (images: decode, paint, encode) and for frames mjpegd encodes
//! itself (the test pattern: painted before its encode), and in recorded frames; a camera
//! without an overlay still serves its source's bytes unchanged. Also the startup errors of bad `[cameras.overlay]`.

mod common;

use std::path::Path;

use common::*;
use mjpegd::render::Canvas;

/// The grey of the source image.
const GREY: u8 = 128;

/// A decoded RGB frame.
struct Decoded {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Decoded {
    fn of(jpeg: &[u8]) -> Decoded {
        let mut d = zune_jpeg::JpegDecoder::new(jpeg);
        let rgb = d.decode().expect("a decodable JPEG");
        let (width, height) = d.dimensions().expect("dimensions");
        Decoded { width, height, rgb }
    }

    fn at(&self, x: usize, y: usize) -> u8 {
        self.rgb[(y * self.width + x) * 3]
    }

    /// The brightest sample of any channel in the rectangle.
    fn brightest(&self, x: usize, y: usize, w: usize, h: usize) -> u8 {
        let mut hi = 0;
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                let p = (yy * self.width + xx) * 3;
                hi = hi.max(self.rgb[p..p + 3].iter().copied().max().unwrap_or(0));
            }
        }
        hi
    }

    /// (darkest, brightest) red sample in the rectangle.
    fn range(&self, x: usize, y: usize, w: usize, h: usize) -> (u8, u8) {
        let mut lo = 255;
        let mut hi = 0;
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                lo = lo.min(self.at(xx, yy));
                hi = hi.max(self.at(xx, yy));
            }
        }
        (lo, hi)
    }
}

/// A text box and glyphs: dark box pixels and bright glyph pixels where the scene is flat grey.
fn assert_text_in(d: &Decoded, x: usize, y: usize, w: usize, h: usize, what: &str) {
    let (lo, hi) = d.range(x, y, w, h);
    assert!(
        lo < 80 && hi > 220,
        "{what}: expected a shaded box (< 80) with white glyphs (> 220) in {w}x{h} at ({x},{y}), \
         found samples {lo}..={hi}"
    );
}

/// The flat grey scene, untouched.
fn assert_grey_in(d: &Decoded, x: usize, y: usize, w: usize, h: usize, what: &str) {
    let (lo, hi) = d.range(x, y, w, h);
    assert!(
        lo >= GREY - 12 && hi <= GREY + 12,
        "{what}: expected the grey scene in {w}x{h} at ({x},{y}), found samples {lo}..={hi}"
    );
}

fn write_grey_jpeg(dir: &Path) {
    let jpeg = Canvas::new(320, 240, [GREY; 3]).encode(90).expect("encode");
    std::fs::write(dir.join("grey.jpg"), &jpeg).expect("write image");
}

async fn get(url: &str) -> bytes::Bytes {
    let resp = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 200, "{url}");
    resp.bytes().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlays_appear_in_snapshots_streams_and_sizes_and_only_where_configured() {
    install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    write_grey_jpeg(&images);
    let source = format!("images:{}", images.display());
    let rec = dir.path().join("rec").display().to_string();
    // '#' fills most of its 8x8 cell: at size 32 (scale 4) every glyph has white 4x4 blocks.
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n\
         [[cameras]]\nname = \"plain\"\nsource = \"{source}\"\nfps = 5\n\n\
         [[cameras]]\nname = \"stamped\"\nsource = \"{source}\"\nfps = 5\n\
         [cameras.overlay]\ntext = \"####\"\nposition = \"bottom-right\"\nsize = 32\n\
         [cameras.record]\ndir = \"{rec}\"\n\n\
         [[cameras]]\nname = \"pattern\"\nsource = \"testpattern\"\nsize = \"320x240\"\nfps = 5\n\
         [[cameras.overlay]]\ntext = \"{{camera}} %H:%M:%S\"\nsize = 16\n\
         [[cameras.overlay]]\ntext = \"##\"\nposition = \"top-right\"\nsize = 16\n\n\
         [[cameras]]\nname = \"pattern_plain\"\nsource = \"testpattern\"\nsize = \"320x240\"\nfps = 5\n"
    );
    let path = dir.path().join("mjpegd.toml");
    std::fs::write(&path, config).expect("write config");
    let server = MjpegdProcess::start(&[std::ffi::OsStr::new("--config"), path.as_os_str()])
        .unwrap_or_else(|e| panic!("{e}"));
    let url = |p: &str| format!("{}{p}", server.url);

    // No overlay: the source's own bytes, not re-encoded.
    let plain = get(&url("/cameras/plain/snapshot.jpg")).await;
    let original = std::fs::read(images.join("grey.jpg")).expect("read image");
    assert_eq!(
        &plain[..],
        &original[..],
        "a camera without an overlay serves its source's bytes"
    );

    // Bottom right, scale 4: box 4*32+16 = 144 wide, 48 high, 16 px from the corner.
    let (bx, by, bw, bh) = (320 - 16 - 144, 240 - 16 - 48, 144, 48);
    let snapshot = Decoded::of(&get(&url("/cameras/stamped/snapshot.jpg")).await);
    assert_eq!((snapshot.width, snapshot.height), (320, 240));
    assert_text_in(&snapshot, bx, by, bw, bh, "stamped snapshot");
    assert_grey_in(&snapshot, 8, 8, 140, 100, "stamped snapshot, top left");

    let mut stream = MjpegClient::connect(&url("/cameras/stamped/stream")).await;
    let live = Decoded::of(&stream.part().await.jpeg);
    assert_text_in(&live, bx, by, bw, bh, "stamped stream frame");
    assert_grey_in(&live, 8, 8, 140, 100, "stamped stream frame, top left");

    // A per-request size is made from the painted frame: the box scaled by half.
    let half = Decoded::of(&get(&url("/cameras/stamped/snapshot.jpg?width=160")).await);
    assert_eq!((half.width, half.height), (160, 120));
    assert_text_in(
        &half,
        bx / 2,
        by / 2,
        bw / 2,
        bh / 2,
        "stamped at width 160",
    );
    assert_grey_in(&half, 4, 4, 70, 50, "stamped at width 160, top left");

    // Recordings store the painted frames.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let state: serde_json::Value =
            serde_json::from_slice(&get(&url("/api/state")).await).expect("state JSON");
        let stamped = state["cameras"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "stamped"))
            .expect("the stamped camera in /api/state");
        if stamped["recording"]["frames_written"].as_u64() >= Some(2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing recorded: {stamped}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let recorded =
        Decoded::of(&get(&url(&format!("/cameras/stamped/frame.jpg?at={now:.3}"))).await);
    assert_text_in(&recorded, bx, by, bw, bh, "recorded frame");
    assert_grey_in(&recorded, 8, 8, 140, 100, "recorded frame, top left");

    // The test pattern is painted before its own encode. Its top rows are the first colour
    // bar (light grey, 235): the shaded box makes them dark where the overlay is.
    let pattern = Decoded::of(&get(&url("/cameras/pattern/snapshot.jpg")).await);
    let bare = Decoded::of(&get(&url("/cameras/pattern_plain/snapshot.jpg")).await);
    // Scale 2: margin 8, padding 4; the first text's box starts at (8, 8) and is 16 glyphs
    // (264 px) wide: rows 9-11 are its padding above the glyphs, across several bars.
    for (name, d, shaded) in [("pattern", &pattern, true), ("pattern_plain", &bare, false)] {
        let brightest = d.brightest(9, 9, 250, 3);
        // Halfway between the bar (235) and the shaded box (about 110; JPEG ringing from the
        // glyphs below has lifted a sample to 122): the decision, not the exact shade.
        assert_eq!(
            brightest < 170,
            shaded,
            "{name}: brightest sample above the text {brightest} (shaded with an overlay, \
             colour bars at 235 without)"
        );
    }
    // The second text, top right: 2 glyphs of 16 px, box 40 wide.
    let brightest = pattern.brightest(320 - 8 - 40 + 1, 9, 38, 3);
    assert!(
        brightest < 170,
        "pattern: the top-right box is shaded ({brightest})"
    );
}

#[test]
fn bad_overlays_are_startup_errors_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "text = \"%Q\"",
            "cameras[0].overlay.text",
            "unknown time field %Q",
        ),
        (
            "text = \"{cam}\"",
            "cameras[0].overlay.text",
            "unknown field {cam}",
        ),
        (
            "text = \"x\"\nposition = \"middle\"",
            "cameras[0].overlay.position",
            "not one of",
        ),
        (
            "text = \"x\"\nsize = 300",
            "cameras[0].overlay.size",
            "outside 8..=128",
        ),
        ("text = \"x\"\ncolour = \"red\"", "colour", "unknown field"),
    ];
    for (section, key, message) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            format!(
                "[[cameras]]\nname = \"cam\"\nsource = \"testpattern\"\n[cameras.overlay]\n{section}\n"
            ),
        )
        .expect("write config");
        let out = mjpegd_command()
            .args([std::ffi::OsStr::new("--check-config"), path.as_os_str()])
            .output()
            .expect("run mjpegd");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{section}: accepted");
        assert!(
            err.contains(key) && err.contains(message),
            "{section}: expected {key:?} and {message:?} in:\n{err}"
        );
    }
}
