//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/`) and every crash ever found
//! (`fuzz/regressions/TARGET/`) through the same checks the cargo-fuzz targets run
//! (`mjpegd::fuzzing`), on stable, in every `cargo test`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use mjpegd::fuzzing::{LEFT_OUT, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; an absent directory is `None`.
fn files(dir: &Path) -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Some(files)
}

/// Runs `check` on every file, collecting the names of those that panicked.
fn replay(check: mjpegd::fuzzing::Check, files: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for path in files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    failed
}

#[test]
fn every_target_has_a_corpus_and_passes_it() {
    let mut failed = Vec::new();
    for &(name, check) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        let corpus = files(&dir).unwrap_or_else(|| {
            panic!(
                "{}: missing; the corpus is committed (restore it from git, see fuzz/README.md)",
                dir.display()
            )
        });
        assert!(
            corpus.len() >= 10,
            "{}: only {} files; the corpus must be committed",
            dir.display(),
            corpus.len()
        );
        failed.extend(replay(check, &corpus));
        eprintln!("fuzz corpus {name}: {} inputs replayed", corpus.len());
    }
    assert!(
        failed.is_empty(),
        "inputs that fail their check: {failed:#?}"
    );
}

#[test]
fn every_crash_ever_found_stays_fixed() {
    let mut failed = Vec::new();
    let root = fuzz_dir().join("regressions");
    for &(name, check) in TARGETS {
        // A target that never crashed has no directory.
        if let Some(crashes) = files(&root.join(name)) {
            failed.extend(replay(check, &crashes));
        }
    }
    let known: Vec<_> = std::fs::read_dir(&root)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    for dir in &known {
        assert!(
            TARGETS.iter().any(|(name, _)| name == dir) || LEFT_OUT.contains(&dir.as_str()),
            "fuzz/regressions/{dir} matches no fuzz target"
        );
    }
    assert!(failed.is_empty(), "regressions: {failed:#?}");
}

/// The replay itself can fail: a panicking check is reported, a passing one is not.
#[test]
fn replay_reports_a_failing_input() {
    fn always_fails(_: &[u8]) {
        panic!("deliberate");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x");
    std::fs::write(&file, b"x").expect("write");
    assert_eq!(replay(always_fails, std::slice::from_ref(&file)).len(), 1);
    assert!(replay(mjpegd::fuzzing::query, &[file]).is_empty());
}
