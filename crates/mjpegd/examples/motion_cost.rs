//! Measures the CPU cost of motion analysis per frame on the benchmark frames, for each way of
//! getting the small luma image and for the whole detector step.
//!
//! `cargo run --release --example motion_cost -- ../shared/frames/720p`
//! Prints the mean CPU time per frame and the share of one core at 5 analysed frames/s.

#[path = "common/cpu.rs"]
mod cpu;

use std::time::{Duration, Instant, SystemTime};

use cpu::{load_frames, thread_cpu};
use mjpegd::motion::{Detector, LumaPath, MotionConfig, small_luma_with};

fn main() -> Result<(), String> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/frames/720p".into());
    let frames = load_frames(&dir)?;
    let first = &frames[0];
    let (w, h) = mjpegd::jpeg::dimensions(first).map_err(|e| e.to_string())?;
    let rounds = 3;
    let n = (frames.len() * rounds) as f64;
    println!("| step | ms CPU per {w}x{h} frame (mean of {n}) | % of one core at 5 fps |");
    println!("|---|---:|---:|");
    let row = |name: &str, cpu: Duration| {
        let ms = cpu.as_secs_f64() * 1000.0 / n;
        println!("| {name} | {ms:.2} | {:.1} |", ms * 5.0 / 10.0);
    };
    for (name, path) in [
        ("RGB decode + luma + 1/8 box", LumaPath::RgbDecode),
        ("luma decode + 1/8 box", LumaPath::LumaDecode),
    ] {
        let t = thread_cpu();
        for _ in 0..rounds {
            for f in &frames {
                small_luma_with(f, path).map_err(|e| e.to_string())?;
            }
        }
        row(name, thread_cpu() - t);
    }
    let mut d = Detector::new(MotionConfig::default());
    let (t0, w0) = (Instant::now(), SystemTime::now());
    let t = thread_cpu();
    let mut k = 0u64;
    for _ in 0..rounds {
        for f in &frames {
            k += 1;
            let at = Duration::from_millis(200 * k);
            d.analyse(f, t0 + at, w0 + at).map_err(|e| e.to_string())?;
        }
    }
    row(
        "detector step (luma decode + difference + events)",
        thread_cpu() - t,
    );
    Ok(())
}
