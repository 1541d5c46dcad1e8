//! Small state files that must survive a restart (camera controls, the recording switch),
//! written so that a crash or a power cut leaves the old contents or the new, never a mix.

use std::io::{self, Read, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, renamed over it,
/// and the directory synced so the rename itself is durable. Creates the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with_mode(path, bytes, 0o644)
}

/// [`write_atomic`] with the file created with `mode` (the umask can only narrow it).
pub fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = dir {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads a state file of at most `max` bytes as text; `Ok(None)` when there is none.
pub fn read_small(path: &Path, max: u64) -> Result<Option<String>, String> {
    let shown = path.display();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if text.len() as u64 > max {
        return Err(format!("{shown} is larger than {max} bytes; ignored"));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back_and_oversized_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/state.json");
        assert_eq!(read_small(&path, 10), Ok(None));
        write_atomic(&path, b"{}").expect("write");
        write_atomic(&path, b"[1]").expect("overwrite");
        assert_eq!(read_small(&path, 10), Ok(Some("[1]".into())));
        let e = read_small(&path, 2).expect_err("too big");
        assert!(e.contains("larger than 2 bytes"), "{e}");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, ["state.json"], "no temporary file left");
    }
}
