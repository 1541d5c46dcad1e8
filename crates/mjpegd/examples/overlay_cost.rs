//! Measures what an overlay costs per frame on the benchmark frames: painting alone (frames
//! mjpegd encodes anyway: the test pattern, raw V4L2), and decode + paint + encode (camera JPEG).
//!
//! `cargo run --release --example overlay_cost -- ../shared/frames/720p`
//! `cargo run --release --features turbojpeg --example overlay_cost -- ../shared/frames/720p`
//! Prints the mean CPU time per frame and the share of one core at 30 fps.

#[path = "common/cpu.rs"]
mod cpu;

use std::time::{Duration, SystemTime};

use cpu::{load_frames, thread_cpu};
use mjpegd::frame::Image;
use mjpegd::overlay::{Overlay, Position, RgbSurface, Text};
use mjpegd::transform::Transform;

fn main() -> Result<(), String> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/frames/720p".into());
    let frames = load_frames(&dir)?;
    let (w, h) = mjpegd::jpeg::dimensions(&frames[0]).map_err(|e| e.to_string())?;
    let overlay = Overlay::new(vec![
        Text::new("{camera}  %Y-%m-%d %H:%M:%S", Position::BottomLeft, None)
            .map_err(|e| e.to_string())?,
        Text::new("{fps} fps", Position::TopRight, None).map_err(|e| e.to_string())?,
    ])
    .map_err(|e| e.to_string())?;
    let rounds = 3;
    let n = (frames.len() * rounds) as f64;
    println!(
        "encoder: {}; | step | ms CPU per {w}x{h} frame (mean of {n}) | % of one core at 30 fps |",
        mjpegd::codec::ENCODER
    );
    println!("|---|---:|---:|");
    let row = |name: &str, cpu: Duration| {
        let ms = cpu.as_secs_f64() * 1000.0 / n;
        println!("| {name} | {ms:.3} | {:.1} |", ms * 30.0 / 10.0);
    };

    let mut rgb = vec![128u8; w as usize * h as usize * 3];
    let t = thread_cpu();
    for _ in 0..rounds {
        for _ in &frames {
            let p = overlay.painter("porch", 29.97, SystemTime::now());
            p.paint(&mut RgbSurface::new(&mut rgb, w, h));
        }
    }
    row(
        "format + paint (into pixels being encoded)",
        thread_cpu() - t,
    );

    let t_none = Transform {
        quality: 80,
        ..Transform::default()
    };
    let images: Vec<Image> = frames
        .iter()
        .map(|f| Image {
            jpeg: f.clone(),
            width: w,
            height: h,
        })
        .collect();
    let t = thread_cpu();
    for _ in 0..rounds {
        for image in &images {
            let p = overlay.painter("porch", 29.97, SystemTime::now());
            t_none
                .apply_painted(image, Some(&p))
                .map_err(|e| e.to_string())?;
        }
    }
    row("decode + paint + encode (camera JPEG)", thread_cpu() - t);
    Ok(())
}
