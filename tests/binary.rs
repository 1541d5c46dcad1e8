//! The `mjpegd` binary: startup errors, the images source, and prompt exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mjpegd::render::Canvas;

/// Starts the binary on a free port and returns it with its base URL, read from its log.
fn spawn(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mjpegd");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("streaming at http://") {
                let url = line[at + "streaming at ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                let _ = tx.send(url.trim_end_matches('/').to_owned());
            }
        }
    });
    let url = rx.recv_timeout(WAIT).expect("mjpegd did not log its URL");
    (child, url)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn sigterm_with_open_streams_exits_promptly_and_ends_streams_cleanly() {
    let (mut child, url) = spawn(&["--size", "320x240"]);
    let mut viewers = vec![];
    for _ in 0..3 {
        let mut c = MjpegClient::connect(&format!("{url}/stream")).await;
        c.part().await.decode();
        viewers.push(c);
    }
    let pid = i32::try_from(child.id()).expect("pid");
    let sent = Instant::now();
    assert_eq!(send_sigterm(pid), 0, "kill");
    let status = wait_exit(&mut child, Duration::from_secs(2));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("mjpegd still running {took:?} after SIGTERM");
    });
    assert!(status.success(), "exit status {status:?}");
    for mut c in viewers {
        // Every stream ends: with a clean end of the chunked body, after any remaining parts.
        let end =
            tokio::time::timeout(WAIT, async { while c.next_part().await.is_some() {} }).await;
        assert!(end.is_ok(), "stream did not end");
    }
}

/// SIGTERM through the `kill` command, keeping the tests free of `unsafe`.
fn send_sigterm(pid: i32) -> i32 {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| if s.success() { 0 } else { 1 })
        .unwrap_or(1)
}

#[tokio::test]
async fn images_source_cycles_the_files_of_a_directory_in_name_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = vec![];
    for (i, name) in ["b.jpg", "a.JPEG", "c.jpg"].iter().enumerate() {
        let mut canvas = Canvas::new(64, 48, [i as u8 * 80, 0, 0]);
        canvas.text(1, 1, 1, [255, 255, 255], name);
        let jpeg = canvas.encode(80).expect("encode");
        std::fs::write(dir.path().join(name), &jpeg).expect("write");
        files.push((name.to_string(), jpeg));
    }
    std::fs::write(dir.path().join("notes.txt"), "not an image").expect("write");
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let spec = format!("images:{}", dir.path().display());
    let (mut child, url) = spawn(&["--source", &spec, "--fps", "20"]);
    let mut c = MjpegClient::connect(&format!("{url}/stream")).await;
    let first = c.part().await;
    let start = files
        .iter()
        .position(|(_, j)| *j == first.jpeg)
        .expect("a file of the folder");
    for k in 1..7 {
        let p = c.part().await;
        assert_eq!(p.decode(), (64, 48));
        let expected = &files[(start + k) % files.len()];
        assert_eq!(p.jpeg, expected.1, "frame {k} should be {}", expected.0);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_directory_without_jpegs_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("readme.txt"), "x").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--listen", "127.0.0.1:0", "--source"])
        .arg(format!("images:{}", dir.path().display()))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no .jpg or .jpeg files in"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn invalid_flags_are_rejected_naming_the_flag_and_range() {
    for (args, expect) in [
        (&["--quality", "101"][..], "1..=100"),
        (&["--fps", "0"][..], "from 0.01 to 240"),
        (&["--size", "1280"][..], "WIDTHxHEIGHT"),
        (&["--source", "webcam"][..], "unknown source"),
        (&["--max-viewers", "0"][..], "--max-viewers"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .args(args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(args[0]) && err.contains(expect),
            "{args:?}: {err}"
        );
    }
    // Environment variables are checked the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .env("MJPEGD_QUALITY", "0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--quality"));
}

#[test]
fn listening_on_a_busy_port_says_what_to_do() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--listen", &addr])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("--listen"),
        "{err}"
    );
}
