//! Measures the CPU cost of motion analysis per frame on the benchmark frames, for each way of
//! getting the small luma image and for the whole detector step.
//!
//! `cargo run --release --example motion_cost -- ../shared/frames/720p`
//! Prints the mean CPU time per frame and the share of one core at 5 analysed frames/s.

// Only for the thread's CPU clock (libc::clock_gettime).
#![allow(unsafe_code)]

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use mjpegd::motion::{Detector, LumaPath, MotionConfig, small_luma_with};

/// CPU time of this thread: wall time would count the other engineers' builds.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() -> Result<(), String> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/frames/720p".into());
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: cannot list the frames: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    entries.sort();
    let mut frames = Vec::new();
    for p in &entries {
        let jpeg = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        frames.push(Bytes::from(jpeg));
    }
    let Some(first) = frames.first() else {
        return Err(format!("no .jpg frames in {dir}"));
    };
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
