//! What ingesting a stream costs each multipart parser: the load client's zero-copy
//! [`mjpegd_load::parse::StreamParser`] and the server's copying [`mjpegd::mjpeg::read::Reader`],
//! on the same in-memory stream as mjpegd sends it, fed in fixed-size reads.
//!
//! `cargo run --release -p mjpegd-load --example parse_cost -- [FRAMES_DIR] [MIB] [READ_KIB]`
//! (defaults: `/work/shared/frames/720p`, 4096 MiB per parser, 64 KiB reads). Prints MB/s from
//! wall time and from the thread's own CPU time (`/proc/thread-self/schedstat`), which a busy
//! machine inflates much less.

use std::time::{Duration, Instant, SystemTime};

use mjpegd::mjpeg::read::{Limits, Mode, Reader};
use mjpegd::mjpeg::{BOUNDARY, write};
use mjpegd_load::parse::{Framing, StreamParser};

/// CPU time this thread has run, from the scheduler's accounting.
fn cpu_time() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// One pass over the frames as mjpegd's wire: the preamble, then one part per frame.
fn wire(dir: &str) -> (Vec<u8>, usize) {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .jpg in {dir}");
    let mut v = write::STREAM_PREAMBLE.to_vec();
    for p in &paths {
        let jpeg = std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        v.extend_from_slice(&write::part(&jpeg, SystemTime::now()).0);
    }
    (v, paths.len())
}

struct Run {
    name: &'static str,
    bytes: u64,
    frames: u64,
    wall: Duration,
    cpu: Duration,
}

impl Run {
    fn print(&self) {
        let mb = self.bytes as f64 / 1e6;
        println!(
            "{:<28} {:>8.0} MB  {:>7} frames  wall {:>6.2} s {:>7.0} MB/s  cpu {:>6.2} s {:>7.0} MB/s",
            self.name,
            mb,
            self.frames,
            self.wall.as_secs_f64(),
            mb / self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            mb / self.cpu.as_secs_f64(),
        );
    }
}

fn measure(
    name: &'static str,
    pass: &[u8],
    passes: usize,
    mut run: impl FnMut(&[u8]) -> u64,
) -> Run {
    let (wall0, cpu0) = (Instant::now(), cpu_time());
    let mut frames = 0;
    for _ in 0..passes {
        frames += run(pass);
    }
    Run {
        name,
        bytes: (pass.len() * passes) as u64,
        frames,
        wall: wall0.elapsed(),
        cpu: cpu_time() - cpu0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .map_or("/work/shared/frames/720p", String::as_str);
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let read_kib: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let (body, n) = wire(dir);
    let passes = (mib << 20).div_ceil(body.len()).max(1);
    let read = read_kib << 10;
    println!(
        "{n} frames, {} bytes per pass (mean part {} bytes), {passes} passes, {read_kib} KiB reads",
        body.len(),
        body.len() / n
    );
    // The preamble opens the stream once; later passes continue it (every part ends with the
    // next boundary line), so the stream parsed is one long valid stream.
    let rest = &body[write::STREAM_PREAMBLE.len()..];

    for round in 0..2 {
        let mut load = StreamParser::new(Framing::Close, BOUNDARY);
        let mut invalid = 0u64;
        let _ = load.feed(write::STREAM_PREAMBLE, &mut |_| {});
        let a = measure("load client StreamParser", rest, passes, |pass| {
            let mut frames = 0;
            for c in pass.chunks(read) {
                let _ = load.feed(c, &mut |p| match p.verdict {
                    Ok(()) => frames += 1,
                    Err(_) => invalid += 1,
                });
            }
            frames
        });
        assert_eq!(invalid, 0, "load client found invalid parts");

        let mut reader = Reader::new(
            Mode::Multipart {
                boundary: BOUNDARY.to_owned(),
            },
            Limits::default(),
        );
        let _ = reader.feed(write::STREAM_PREAMBLE);
        let b = measure("mjpeg::read::Reader", rest, passes, |pass| {
            let mut frames = 0;
            for c in pass.chunks(read) {
                reader.feed(c).expect("feed");
                while let Some(f) = reader.next_frame().expect("next_frame") {
                    std::hint::black_box(&f.jpeg);
                    frames += 1;
                }
            }
            frames
        });
        assert_eq!(reader.stats().errors, 0, "reader found errors");
        assert_eq!(a.frames, b.frames, "parsers disagree on the frame count");
        println!("round {round}:");
        a.print();
        b.print();
        println!(
            "  load client / reader: {:.1}x by cpu time, {:.1}x by wall time",
            b.cpu.as_secs_f64() / a.cpu.as_secs_f64(),
            b.wall.as_secs_f64() / a.wall.as_secs_f64()
        );
    }
}
