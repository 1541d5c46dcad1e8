//! Measures the per-frame cost of camera transforms on the benchmark frames.
//!
//! `cargo run --release --example transform_cost -- ../shared/frames/720p`
//! Prints the mean time per frame of each transform (decode + pixel work + encode).

use std::time::Instant;

use mjpegd::frame::Image;
use mjpegd::transform::{Flip, Rotate, Transform, thumbnail};

fn main() -> Result<(), String> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/frames/720p".into());
    let mut frames = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    entries.sort();
    for p in entries.iter().take(30) {
        let jpeg = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let (width, height) = mjpegd::jpeg::dimensions(&jpeg).map_err(|e| e.to_string())?;
        frames.push(Image {
            jpeg: jpeg.into(),
            width,
            height,
        });
    }
    if frames.is_empty() {
        return Err(format!("no .jpg frames in {dir}"));
    }
    let cases: Vec<(&str, Transform)> = vec![
        (
            "none (pass-through)",
            Transform {
                quality: 80,
                ..Transform::default()
            },
        ),
        (
            "rotate 180",
            Transform {
                rotate: Rotate::R180,
                quality: 80,
                ..Transform::default()
            },
        ),
        (
            "rotate 90",
            Transform {
                rotate: Rotate::R90,
                quality: 80,
                ..Transform::default()
            },
        ),
        (
            "flip horizontal",
            Transform {
                flip: Some(Flip::Horizontal),
                quality: 80,
                ..Transform::default()
            },
        ),
        (
            "fit 640x360",
            Transform {
                fit: Some((640, 360)),
                quality: 80,
                ..Transform::default()
            },
        ),
    ];
    println!(
        "| transform | ms per 1280x720 frame (mean of {}) |",
        frames.len() * 3
    );
    println!("|---|---:|");
    for (name, t) in cases {
        let start = Instant::now();
        for _ in 0..3 {
            for f in &frames {
                t.apply(f).map_err(|e| e.to_string())?;
            }
        }
        let ms = start.elapsed().as_secs_f64() * 1000.0 / (frames.len() * 3) as f64;
        println!("| {name} | {ms:.2} |");
    }
    let start = Instant::now();
    for f in &frames {
        thumbnail(f, 480, 80).map_err(|e| e.to_string())?;
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / frames.len() as f64;
    println!("| snapshot thumbnail ?width=480 | {ms:.2} |");
    Ok(())
}
