//! The calling thread's CPU clock, for the cost examples: wall time would count whatever else
//! the machine runs.

use std::time::Duration;

/// CPU time this thread has used.
#[allow(unsafe_code)]
pub(crate) fn thread_cpu() -> Duration {
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

/// The `.jpg` files of `dir`, in name order.
pub(crate) fn load_frames(dir: &str) -> Result<Vec<bytes::Bytes>, String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{dir}: cannot list the frames: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    entries.sort();
    let mut frames = Vec::new();
    for p in &entries {
        let jpeg = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
        frames.push(bytes::Bytes::from(jpeg));
    }
    if frames.is_empty() {
        return Err(format!("no .jpg frames in {dir}"));
    }
    Ok(frames)
}
