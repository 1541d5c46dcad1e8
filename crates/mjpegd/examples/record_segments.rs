//! Writes a recording catalogue in mjpegd's real segment format, for benchmarks: JPEG files from
//! a directory, cycled, stamped at a fixed frame rate, cut into segments like the recorder does,
//! each closed segment with its index (set `NO_INDEX=1` to leave them out, as an archive
//! written before indexes existed).
//!
//! ```text
//! cargo run --release --example record_segments -- OUT_DIR JPEG_DIR SECONDS [FPS] [SEGMENT_SECONDS]
//! ```
//! `OUT_DIR` is a camera's segment directory (`RECORD_DIR/CAMERA`). The recording ends now.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use mjpegd::record::index::{self, Summary};
use mjpegd::record::segment::{Entry, SegmentWriter};

/// Syncs and closes a segment and writes its index, as the recorder does.
fn close(w: SegmentWriter, entries: &mut Vec<Entry>, with_index: bool) -> Result<(), String> {
    let (path, size, len) = (w.path().to_owned(), w.size(), w.len());
    w.finish().map_err(|e| e.to_string())?;
    if with_index {
        index::write(&path, &Summary::of(entries, size, len), entries)
            .map_err(|e| e.to_string())?;
    }
    entries.clear();
    Ok(())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: record_segments OUT_DIR JPEG_DIR SECONDS [FPS] [SEGMENT_SECONDS]";
    let (out, frames, seconds) = match &args[..] {
        [o, f, s, ..] => (
            PathBuf::from(o),
            PathBuf::from(f),
            s.parse::<f64>().map_err(|_| usage.to_owned())?,
        ),
        _ => return Err(usage.into()),
    };
    let fps: f64 = args
        .get(3)
        .map_or(Ok(30.0), |s| s.parse())
        .map_err(|_| usage)?;
    let seg_secs: f64 = args
        .get(4)
        .map_or(Ok(60.0), |s| s.parse())
        .map_err(|_| usage)?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&frames)
        .map_err(|e| format!("{}: {e}", frames.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    names.sort();
    let jpegs: Vec<(Vec<u8>, u16, u16)> = names
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let (w, h) = mjpegd::jpeg::dimensions(&bytes)
                .map_err(|e| format!("{}: not a JPEG: {e}", p.display()))?;
            Ok((bytes, w as u16, h as u16))
        })
        .collect::<Result<_, String>>()?;
    if jpegs.is_empty() {
        return Err(format!("no .jpg files in {}", frames.display()));
    }
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let n = (seconds * fps) as u64;
    let step = (1e6 / fps) as i64;
    let now = mjpegd::record::time::of(SystemTime::now());
    let start = now - n as i64 * step;
    let seg_us = (seg_secs * 1e6) as i64;
    let started = Instant::now();
    let mut writer: Option<SegmentWriter> = None;
    let mut entries = Vec::new();
    let with_index = std::env::var_os("NO_INDEX").is_none();
    let mut bytes = 0u64;
    for i in 0..n {
        let t = start + i as i64 * step;
        let (jpeg, w, h) = &jpegs[i as usize % jpegs.len()];
        if writer.as_ref().is_some_and(|wr| t - wr.start() >= seg_us) {
            if let Some(wr) = writer.take() {
                close(wr, &mut entries, with_index)?;
            }
        }
        if writer.is_none() {
            writer = Some(SegmentWriter::create(&out, t, *w, *h).map_err(|e| e.to_string())?);
        }
        if let Some(wr) = writer.as_mut() {
            entries.push(wr.append(t, i + 1, jpeg).map_err(|e| e.to_string())?);
        }
        bytes += 32 + jpeg.len() as u64;
    }
    if let Some(wr) = writer.take() {
        close(wr, &mut entries, with_index)?;
    }
    println!(
        "{n} frames, {bytes} bytes in {:.1}s into {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}
