//! `exec:COMMAND`: any command that writes MJPEG to its stdout (ffmpeg, rpicam-vid, gstreamer).
//!
//! The command runs through `sh -c` in its own process group, started when capture starts and
//! killed — the whole group, so ffmpeg's children go too — when the source is dropped. Its stdout
//! is parsed by [`crate::mjpeg::read`] (bare concatenated JPEGs or multipart, detected); the
//! last lines of its stderr are kept and quoted in errors, because "ffmpeg exited with status 1"
//! alone helps nobody. Restarts with backoff are the hub's job.
//!
//! Children die with the server: each gets `PR_SET_PDEATHSIG` (SIGKILL when mjpegd dies, even
//! by `kill -9`), and exits that skip the sources' cleanup (the second SIGINT, the end of
//! `main`) call [`kill_all`] to kill every process group still running.

use std::collections::{BTreeSet, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::{BoxFuture, ErrorKind, Opener, Source, SourceError};
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
    /// Process groups of this opener's children still running, for [`Opener::stop_now`].
    groups: Groups,
}

impl ExecOpener {
    /// A source running `command` through `sh -c`.
    pub fn new(command: String) -> ExecOpener {
        ExecOpener {
            command,
            groups: Groups::default(),
        }
    }
}

type Groups = Arc<Mutex<BTreeSet<i32>>>;

fn kill_groups(groups: &Mutex<BTreeSet<i32>>) {
    // Poison recovered: a set of integers is consistent after any panic.
    let groups = groups.lock().unwrap_or_else(PoisonError::into_inner);
    for &pgid in groups.iter() {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

type Tail = Arc<Mutex<VecDeque<String>>>;

fn tail_text(tail: &Tail) -> String {
    // Poison recovered: the tail is a queue of whole lines, consistent after any panic.
    let t = tail.lock().unwrap_or_else(PoisonError::into_inner);
    if t.is_empty() {
        return String::new();
    }
    let last: Vec<&str> = t.iter().rev().take(3).rev().map(String::as_str).collect();
    format!(": {}", last.join(" | "))
}

/// Process groups of the exec children still running (their leaders not yet reaped).
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Kills (SIGKILL) the process group of every exec child still running. For exits that skip
/// the sources' own cleanup: the second SIGINT's `process::exit`, and the end of `main` while
/// a child that ignores SIGTERM is still within its grace period.
pub fn kill_all() {
    kill_groups(&GROUPS);
}

/// A process group mjpegd started outside the exec sources (motion hooks), listed for
/// [`kill_all`] and killed (SIGKILL) when dropped unless [`KilledOnDrop::reaped`] was called:
/// a hook's task dropped at shutdown takes the hook's children with it.
pub struct KilledOnDrop {
    registered: Option<Registered>,
}

impl KilledOnDrop {
    /// Tracks the group `pgid` (a child spawned with `process_group(0)`).
    pub fn new(pgid: i32) -> KilledOnDrop {
        KilledOnDrop {
            registered: Some(Registered::new(pgid, &Groups::default())),
        }
    }

    /// The leader was reaped: the id may be reused from now on, so it is no longer killed.
    pub fn reaped(mut self) {
        self.registered = None;
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        if let Some(r) = &self.registered {
            let _ = killpg(Pid::from_raw(r.0), Signal::SIGKILL);
        }
    }
}

/// Keeps a child's process group listed for [`kill_all`] (and its opener's
/// [`Opener::stop_now`]) until dropped, which happens once its leader is reaped: from then on
/// the id may be reused by an unrelated process.
struct Registered(i32, Groups);

impl Registered {
    fn new(pgid: i32, own: &Groups) -> Registered {
        // Poison recovered: a set of integers is consistent after any panic.
        for set in [&GROUPS, &**own] {
            set.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(pgid);
        }
        Registered(pgid, Arc::clone(own))
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Poison recovered: a set of integers is consistent after any panic.
        for set in [&GROUPS, &*self.1] {
            set.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.0);
        }
    }
}

/// Makes the child die with mjpegd (SIGKILL), even when mjpegd is killed with SIGKILL.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process.
/// `open` runs in a capture task, on the capture runtime's worker thread (or, without it, the
/// main runtime's workers): those threads live until the process exits, so the signal comes
/// only with mjpegd's death. Spawning from a `spawn_blocking` thread would be wrong: idle
/// blocking threads exit after 10 s, and the child with them.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // mjpegd died between fork and prctl: the signal will never come, so do not start.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

impl Opener for ExecOpener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        Box::pin(async move {
            let mut command = Command::new("/bin/sh");
            command
                .arg("-c")
                .arg(&self.command)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true);
            die_with_parent(&mut command);
            let mut child = command.spawn().map_err(|e| {
                let kind = match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                        ErrorKind::Permanent
                    }
                    _ => ErrorKind::Transient,
                };
                SourceError::with_kind(kind, format!("exec: cannot start {:?}: {e}", self.command))
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
                        // Poison recovered: a queue of whole lines, consistent after any panic.
                        let mut t = tail.lock().unwrap_or_else(PoisonError::into_inner);
                        if t.len() == STDERR_LINES {
                            t.pop_front();
                        }
                        t.push_back(line);
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
                group: pgid.map(|p| Registered::new(p.as_raw(), &self.groups)),
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

    fn stop_now(&self) {
        kill_groups(&self.groups);
    }
}

struct Exec {
    child: Option<Child>,
    /// Listed for [`kill_all`] until the child is reaped.
    group: Option<Registered>,
    pgid: Option<Pid>,
    stdout: ChildStdout,
    reader: Reader,
    buf: Vec<u8>,
    tail: Tail,
}

impl Exec {
    async fn exit_error(&mut self, what: &str) -> SourceError {
        let status = match self.child.as_mut() {
            Some(c) => tokio::time::timeout(Duration::from_millis(500), c.wait())
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        if status.is_some() {
            // Reaped: the group id may be reused from now on.
            self.group = None;
        }
        let shown = match (&self.child, status) {
            (_, Some(s)) => s.to_string(),
            (Some(_), None) => "still running".into(),
            (None, None) => "unknown".into(),
        };
        // `sh -c` exits 127 for a command it cannot find and 126 for one it cannot run.
        let (kind, hint) = match status.and_then(|s| s.code()) {
            Some(127) => (
                ErrorKind::Permanent,
                " — command not found: check its name and that it is on mjpegd's PATH",
            ),
            Some(126) => (
                ErrorKind::Permanent,
                " — the command cannot be run: check its permissions",
            ),
            _ => (ErrorKind::Transient, ""),
        };
        // Give the stderr task a moment to read the command's last words.
        tokio::time::sleep(Duration::from_millis(50)).await;
        SourceError::with_kind(
            kind,
            format!("exec: {what} ({shown}){hint}{}", tail_text(&self.tail)),
        )
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
                        // The command writes something else: only a corrected command helps.
                        return Err(SourceError::permanent(format!(
                            "exec: output is not MJPEG: {e}{} — make the command write MJPEG \
                             to stdout (ffmpeg: -f mjpeg -)",
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
        let group = self.group.take();
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
                    // Reaped: unlist the group (a fast exit meanwhile killed it through the list).
                    drop(group);
                });
            } else {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
    }
}
