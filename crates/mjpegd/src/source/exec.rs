//! `exec:COMMAND`: any command that writes MJPEG to its stdout (ffmpeg, rpicam-vid, gstreamer).
//!
//! The command runs through `sh -c` in its own process group, started when capture starts and
//! killed — the whole group, so ffmpeg's children go too — when the source is dropped. Its stdout
//! is parsed by [`crate::mjpeg::read`] (bare concatenated JPEGs or multipart, detected); the
//! last lines of its stderr are kept and quoted in errors, because "ffmpeg exited with status 1"
//! alone helps nobody. Restarts with backoff are the hub's job.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::{BoxFuture, Opener, Source, SourceError};
use crate::frame::Image;
use crate::jpeg;
use crate::mjpeg::read::{Limits, Mode, Reader};

/// Lines of the command's stderr kept for error messages.
pub const STDERR_LINES: usize = 20;
/// Longest stderr line kept; ffmpeg progress lines can be long.
const STDERR_LINE_MAX: usize = 300;
/// Bytes read from stdout at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Grace between SIGTERM and SIGKILL when stopping the command.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Opens an `exec:` source.
#[derive(Debug)]
pub struct ExecOpener {
    command: String,
}

impl ExecOpener {
    /// A source running `command` through `sh -c`.
    pub fn new(command: String) -> ExecOpener {
        ExecOpener { command }
    }
}

type Tail = Arc<Mutex<VecDeque<String>>>;

fn tail_text(tail: &Tail) -> String {
    let lines = tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>());
    match lines {
        Ok(l) if !l.is_empty() => {
            let last: Vec<String> = l.iter().rev().take(3).rev().cloned().collect();
            format!(": {}", last.join(" | "))
        }
        _ => String::new(),
    }
}

impl Opener for ExecOpener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        Box::pin(async move {
            let mut child = Command::new("/bin/sh")
                .arg("-c")
                .arg(&self.command)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    SourceError::new(format!("exec: cannot start {:?}: {e}", self.command))
                })?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| SourceError::new("exec: no stdout pipe"))?;
            let tail: Tail = Arc::default();
            if let Some(stderr) = child.stderr.take() {
                let tail = Arc::clone(&tail);
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let line: String = line.chars().take(STDERR_LINE_MAX).collect();
                        tracing::debug!(target: "mjpegd::source::exec::stderr", "{line}");
                        if let Ok(mut t) = tail.lock() {
                            if t.len() == STDERR_LINES {
                                t.pop_front();
                            }
                            t.push_back(line);
                        }
                    }
                });
            }
            let pgid = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw);
            tracing::debug!(command = %self.command, pid = ?pgid, "exec: started");
            let source: Box<dyn Source> = Box::new(Exec {
                child: Some(child),
                pgid,
                stdout,
                reader: Reader::new(Mode::Auto, Limits::default()),
                buf: vec![0; READ_CHUNK],
                tail,
            });
            Ok(source)
        })
    }

    fn describe(&self) -> String {
        format!("exec:{}", self.command)
    }
}

struct Exec {
    child: Option<Child>,
    pgid: Option<Pid>,
    stdout: ChildStdout,
    reader: Reader,
    buf: Vec<u8>,
    tail: Tail,
}

impl Exec {
    async fn exit_error(&mut self, what: &str) -> SourceError {
        let status = match self.child.as_mut() {
            Some(c) => match tokio::time::timeout(Duration::from_millis(500), c.wait()).await {
                Ok(Ok(s)) => s.to_string(),
                _ => "still running".into(),
            },
            None => "unknown".into(),
        };
        // Give the stderr task a moment to read the command's last words.
        tokio::time::sleep(Duration::from_millis(50)).await;
        SourceError::new(format!("exec: {what} ({status}){}", tail_text(&self.tail)))
    }
}

impl Source for Exec {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            loop {
                match self.reader.next_frame() {
                    Ok(Some(frame)) => match jpeg::dimensions(&frame.jpeg) {
                        Ok((width, height)) => {
                            return Ok(Image {
                                jpeg: frame.jpeg,
                                width,
                                height,
                            });
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "exec: skipping an unreadable frame");
                            continue;
                        }
                    },
                    Ok(None) => {}
                    Err(e) => {
                        return Err(SourceError::new(format!(
                            "exec: output is not MJPEG: {e}{}",
                            tail_text(&self.tail)
                        )));
                    }
                }
                if let Some(e) = self.reader.take_recovered() {
                    tracing::debug!(error = %e, "exec: recovered from bad input");
                }
                let want = self.buf.len().min(self.reader.buffer_space().max(1));
                let n = match self.stdout.read(&mut self.buf[..want]).await {
                    Ok(0) => return Err(self.exit_error("command exited").await),
                    Ok(n) => n,
                    Err(e) => return Err(self.exit_error(&format!("read error {e}")).await),
                };
                if let Err(e) = self.reader.feed(&self.buf[..n]) {
                    return Err(SourceError::new(format!("exec: {e}")));
                }
            }
        })
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else { return };
        // The whole group: `sh -c` may have forked the real command.
        let _ = killpg(pgid, Signal::SIGTERM);
        if let Some(mut child) = self.child.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if tokio::time::timeout(KILL_GRACE, child.wait())
                        .await
                        .is_err()
                    {
                        let _ = killpg(pgid, Signal::SIGKILL);
                        let _ = child.wait().await;
                    }
                });
            } else {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
    }
}
