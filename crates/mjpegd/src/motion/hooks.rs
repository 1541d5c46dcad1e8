//! `on_event_start` / `on_event_end`: a command run (exec, no shell) when a camera's motion
//! event starts or ends, off the detector's path.
//!
//! Each run is a tokio task: the child gets its own process group, stdin/stdout from
//! `/dev/null` and its stderr kept (the last bytes go to the log on failure). Past the
//! timeout the whole group is killed. At most [`MAX_RUNNING`] hooks run at once per camera;
//! past that a hook is skipped, and logged.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::Semaphore;

use super::config::Hooks;
use crate::source::exec::KilledOnDrop;

/// Most hooks of one camera running at once.
pub const MAX_RUNNING: usize = 4;
/// Bytes of a failed hook's stderr quoted in the log.
const STDERR_TAIL: usize = 512;

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `on_event_start`.
    Start,
    /// `on_event_end`.
    End,
}

impl Which {
    fn key(self) -> &'static str {
        match self {
            Which::Start => "on_event_start",
            Which::End => "on_event_end",
        }
    }
}

/// One camera's hooks and the bound on those running.
pub struct HookRunner {
    camera: String,
    hooks: Hooks,
    running: Arc<Semaphore>,
}

impl HookRunner {
    /// The runner of `camera`'s hooks, or `None` when it has none.
    pub fn new(camera: &str, hooks: &Hooks) -> Option<HookRunner> {
        if hooks.on_start.is_none() && hooks.on_end.is_none() {
            return None;
        }
        Some(HookRunner {
            camera: camera.to_owned(),
            hooks: hooks.clone(),
            running: Arc::new(Semaphore::new(MAX_RUNNING)),
        })
    }

    /// Starts hook `which` for event `id` (with the event's duration in seconds for the end
    /// hook); returns at once, whether it started (false: none configured, or skipped at
    /// [`MAX_RUNNING`]). Needs the tokio runtime.
    pub fn fire(&self, which: Which, id: u64, seconds: Option<f64>) -> bool {
        let argv = match which {
            Which::Start => &self.hooks.on_start,
            Which::End => &self.hooks.on_end,
        };
        let Some(argv) = argv else { return false };
        let Ok(permit) = Arc::clone(&self.running).try_acquire_owned() else {
            tracing::warn!(
                camera = %self.camera, event = id, hook = which.key(), command = %argv[0],
                "motion hook skipped: {MAX_RUNNING} hooks of this camera are still running"
            );
            return false;
        };
        let mut args: Vec<String> = argv.clone();
        args.push(self.camera.clone());
        args.push(id.to_string());
        if let Some(s) = seconds {
            args.push(format!("{s:.3}"));
        }
        let camera = self.camera.clone();
        let timeout = self.hooks.timeout;
        tokio::spawn(async move {
            run(&camera, which, id, &args, timeout).await;
            drop(permit);
        });
        true
    }
}

async fn run(camera: &str, which: Which, id: u64, args: &[String], timeout: Duration) {
    let mut command = Command::new(&args[0]);
    command
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let fail = |reason: &str| {
        tracing::warn!(
            camera = %camera, event = id, hook = which.key(), command = %args[0],
            "motion hook failed: {reason}"
        );
    };
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot start it: {e}")),
    };
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    // Until the hook is reaped its group dies with this task (dropped at shutdown) and with
    // mjpegd's abrupt exits (exec::kill_all).
    let tracked = pgid.map(KilledOnDrop::new);
    let mut stderr = child.stderr.take();
    let read_tail = async move {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            // Read all (the pipe must not fill), keep the tail.
            let mut chunk = [0u8; 4096];
            while let Ok(n) = s.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > STDERR_TAIL * 2 {
                    buf.drain(..buf.len() - STDERR_TAIL);
                }
            }
        }
        buf
    };
    let waited = tokio::time::timeout(timeout, async {
        let (status, tail) = tokio::join!(child.wait(), read_tail);
        (status, tail)
    })
    .await;
    if let (Ok((Ok(_), _)), Some(t)) = (&waited, tracked) {
        t.reaped();
    }
    match waited {
        Ok((Ok(status), tail)) if !status.success() => {
            let tail = String::from_utf8_lossy(&tail[tail.len().saturating_sub(STDERR_TAIL)..])
                .trim()
                .to_owned();
            if tail.is_empty() {
                fail(&format!("{status}"));
            } else {
                fail(&format!("{status}; stderr: {tail}"));
            }
        }
        Ok((Ok(_), _)) => {
            tracing::debug!(camera = %camera, event = id, hook = which.key(), "motion hook done");
        }
        Ok((Err(e), _)) => fail(&format!("cannot wait for it: {e}")),
        Err(_) => {
            if let Some(pgid) = pgid {
                // The whole group: the hook may have started children of its own.
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            let _ = child.kill().await;
            fail(&format!(
                "still running after the hook_timeout of {} s; its process group is killed",
                timeout.as_secs_f64()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_max_running_hooks_run_and_the_timeout_frees_them() {
        let hooks = Hooks {
            // `sh -c SCRIPT sh CAMERA ID`: the appended arguments become $1 and $2.
            on_start: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "sleep 100".into(),
                "sh".into(),
            ]),
            on_end: None,
            timeout: Duration::from_secs(1),
        };
        let r = HookRunner::new("cam", &hooks).expect("has hooks");
        let started: Vec<bool> = (1..=MAX_RUNNING as u64 + 1)
            .map(|id| r.fire(Which::Start, id, None))
            .collect();
        assert_eq!(started.iter().filter(|s| **s).count(), MAX_RUNNING);
        assert!(!started[MAX_RUNNING], "the one past the limit is skipped");
        assert!(!r.fire(Which::End, 9, Some(1.0)), "no end hook configured");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while r.running.available_permits() < MAX_RUNNING {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not killed at the timeout"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(r.fire(Which::Start, 10, None), "room again after the kills");
        assert!(HookRunner::new("cam", &Hooks::default()).is_none());
    }
}
