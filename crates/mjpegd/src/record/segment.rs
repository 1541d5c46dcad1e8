//! The segment file: a self-describing, append-only log of the JPEGs of one camera.
//!
//! ```text
//! file   = header record*
//! header = "MJPEGDS1" (8 bytes) | start time, µs since the epoch (i64 LE)           16 bytes
//! record = "MJRF" | jpeg len (u32) | capture time µs (i64) | seq (u64)
//!          | width (u16) | height (u16) | crc32 (u32, of the 28 bytes before it + the JPEG)
//!          | the JPEG exactly as published                                         32 + len bytes
//! ```
//!
//! All integers are little-endian. The file is the truth: a closed segment's index file
//! (`index.rs`) and its summary in the catalogue are checked against its length and rebuilt
//! from these record headers when missing, stale or damaged; the open segment is scanned at
//! startup, and a torn tail left by `kill -9` or a power cut (a partial record, or a CRC
//! mismatch in the last file) is cut at the last good record.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::time::Micros;

/// Permissions of segment files: owner read-write, group read, others nothing (recordings are
/// private video; issue 18 item 7). The umask can only narrow it.
pub const FILE_MODE: u32 = 0o640;

/// First bytes of every segment file (format version 1).
pub const FILE_MAGIC: &[u8; 8] = b"MJPEGDS1";
/// Length of the file header.
pub const FILE_HEADER_LEN: u64 = 16;
/// First bytes of every record.
pub const RECORD_MAGIC: &[u8; 4] = b"MJRF";
/// Length of a record header.
pub const RECORD_HEADER_LEN: u64 = 32;
/// Largest JPEG a record may hold: larger lengths in a header mean a damaged file (a 4K
/// frame at high quality is ~5 MB).
pub const MAX_JPEG_LEN: u32 = 64 * 1024 * 1024;
/// A segment is closed once it reaches this size, whatever its age, so every offset in it
/// fits the index's `u32`.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// How often written data is forced to disk: bounds what a power cut loses (a `kill -9` loses
/// nothing already written; the page cache survives the process).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// File name extension of segments.
pub const EXTENSION: &str = "seg";

/// Opens an existing segment file for reading (or, with `write`, for cutting its tail) without
/// following a symbolic link: a link planted in a recording directory could otherwise make the
/// startup repair truncate, or an export serve, a file anywhere the server may write or read.
pub fn open_segment(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// One frame in a segment: when it was captured and where its JPEG is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Capture time.
    pub t: Micros,
    /// Offset of the JPEG (not of its record header) in the file.
    pub off: u32,
    /// Length of the JPEG.
    pub len: u32,
}

fn header_bytes(t: Micros, seq: u64, width: u16, height: u16, jpeg: &[u8]) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0..4].copy_from_slice(RECORD_MAGIC);
    h[4..8].copy_from_slice(&(jpeg.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&t.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[24..26].copy_from_slice(&width.to_le_bytes());
    h[26..28].copy_from_slice(&height.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[0..28]);
    crc.update(jpeg);
    h[28..32].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

/// A segment being written.
pub struct SegmentWriter {
    file: File,
    path: PathBuf,
    start: Micros,
    len: u64,
    width: u16,
    height: u16,
    last_t: Micros,
    last_sync: Instant,
    dirty: bool,
}

impl SegmentWriter {
    /// Creates `DIR/STAMP.seg` for frames from `start` on and makes its name durable.
    pub fn create(dir: &Path, start: Micros, width: u16, height: u16) -> io::Result<SegmentWriter> {
        let mut path = dir.join(format!("{}.{EXTENSION}", super::time::stamp_micros(start)));
        let mut n = 1;
        let mut file = loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
            {
                Ok(f) => break f,
                // Same microsecond as an existing segment (clock stepped back): take a suffix.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => {
                    path = dir.join(format!(
                        "{}-{n}.{EXTENSION}",
                        super::time::stamp_micros(start)
                    ));
                    n += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let mut head = [0u8; 16];
        head[0..8].copy_from_slice(FILE_MAGIC);
        head[8..16].copy_from_slice(&start.to_le_bytes());
        let written = file.write_all(&head).and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        // The new name must survive a crash too, or the records in it would be lost with it.
        File::open(dir).and_then(|d| d.sync_all())?;
        Ok(SegmentWriter {
            file,
            path,
            start,
            len: FILE_HEADER_LEN,
            width,
            height,
            last_t: start - 1,
            last_sync: Instant::now(),
            dirty: false,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Start time given at creation.
    pub fn start(&self) -> Micros {
        self.start
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no record was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == FILE_HEADER_LEN
    }

    /// Frame size of this segment (a new size starts a new segment).
    pub fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }

    /// Capture time of the last record.
    pub fn last_t(&self) -> Micros {
        self.last_t
    }

    /// Whether a record of `jpeg_len` bytes captured at `t` belongs in this segment.
    pub fn fits(
        &self,
        t: Micros,
        jpeg_len: usize,
        width: u16,
        height: u16,
        max_age: Micros,
    ) -> bool {
        t > self.last_t
            && t - self.start < max_age
            && self.len + RECORD_HEADER_LEN + jpeg_len as u64 <= MAX_SEGMENT_BYTES
            && (width, height) == (self.width, self.height)
    }

    /// Appends one record. On failure the file is cut back to its last whole record, so a
    /// failed write (disk full) never leaves a torn record behind a good one.
    pub fn append(&mut self, t: Micros, seq: u64, jpeg: &[u8]) -> io::Result<Entry> {
        if jpeg.len() > MAX_JPEG_LEN as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {}-byte frame is over the {MAX_JPEG_LEN}-byte record limit",
                    jpeg.len()
                ),
            ));
        }
        let head = header_bytes(t, seq, self.width, self.height, jpeg);
        let result = write_all_vectored(&mut self.file, &head, jpeg);
        if let Err(e) = result {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        let entry = Entry {
            t,
            off: (self.len + RECORD_HEADER_LEN) as u32,
            len: jpeg.len() as u32,
        };
        self.len += RECORD_HEADER_LEN + jpeg.len() as u64;
        self.last_t = t;
        self.dirty = true;
        Ok(entry)
    }

    /// Forces written records to disk if the last sync is older than [`SYNC_INTERVAL`].
    pub fn sync_if_due(&mut self) -> io::Result<()> {
        if self.dirty && self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.file.sync_data()?;
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Syncs and closes the segment.
    pub fn finish(self) -> io::Result<()> {
        self.file.sync_all()
    }
}

fn write_all_vectored(file: &mut File, head: &[u8], body: &[u8]) -> io::Result<()> {
    let total = head.len() + body.len();
    let mut done = 0;
    while done < total {
        let n = if done < head.len() {
            file.write_vectored(&[IoSlice::new(&head[done..]), IoSlice::new(body)])?
        } else {
            file.write(&body[done - head.len()..])?
        };
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
        }
        done += n;
    }
    Ok(())
}

/// What a scan of a segment file found.
#[derive(Debug)]
pub struct Scan {
    /// Start time from the file header.
    pub start: Micros,
    /// Every whole record, in file order.
    pub entries: Vec<Entry>,
    /// Frame size of the records (0×0 when there are none).
    pub size: (u16, u16),
    /// Bytes up to the end of the last good record.
    pub good_len: u64,
    /// Length of the file as found; more than `good_len` when the tail is torn.
    pub file_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub torn: Option<String>,
}

/// Reads a segment's record headers. With `verify`, also reads every JPEG and checks its CRC
/// (done for the newest segment of a camera, the only one a crash can have left torn);
/// without it, only the headers are read and the JPEGs skipped.
pub fn scan(path: &Path, verify: bool) -> io::Result<Scan> {
    let file = open_segment(path, false)?;
    let file_len = file.metadata()?.len();
    let mut head = [0u8; 16];
    if file_len < FILE_HEADER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "shorter than a segment header",
        ));
    }
    file.read_exact_at(&mut head, 0)?;
    if &head[0..8] != FILE_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an mjpegd segment (bad magic)",
        ));
    }
    let start = i64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
    let mut entries = Vec::new();
    let mut size = (0, 0);
    let mut pos = FILE_HEADER_LEN;
    let mut last_t = i64::MIN;
    let mut jpeg = Vec::new();
    let torn = loop {
        if pos == file_len {
            break None;
        }
        if file_len - pos < RECORD_HEADER_LEN {
            break Some(format!("partial record header at byte {pos}"));
        }
        let mut h = [0u8; 32];
        file.read_exact_at(&mut h, pos)?;
        if &h[0..4] != RECORD_MAGIC {
            break Some(format!("no record magic at byte {pos}"));
        }
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let t = i64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
        let w = u16::from_le_bytes([h[24], h[25]]);
        let hh = u16::from_le_bytes([h[26], h[27]]);
        if len > MAX_JPEG_LEN || u64::from(len) > file_len - pos - RECORD_HEADER_LEN {
            break Some(format!(
                "record at byte {pos} runs past the end of the file"
            ));
        }
        if t <= last_t || (!entries.is_empty() && (w, hh) != size) {
            break Some(format!("record at byte {pos} is out of order"));
        }
        if verify {
            jpeg.resize(len as usize, 0);
            file.read_exact_at(&mut jpeg, pos + RECORD_HEADER_LEN)?;
            let mut crc = crc32fast::Hasher::new();
            crc.update(&h[0..28]);
            crc.update(&jpeg);
            if crc.finalize().to_le_bytes() != h[28..32] {
                break Some(format!("CRC mismatch in the record at byte {pos}"));
            }
        }
        size = (w, hh);
        last_t = t;
        entries.push(Entry {
            t,
            off: (pos + RECORD_HEADER_LEN) as u32,
            len,
        });
        pos += RECORD_HEADER_LEN + u64::from(len);
    };
    Ok(Scan {
        start,
        entries,
        size,
        good_len: pos,
        file_len,
        torn,
    })
}

/// Checks the record whose JPEG is `jpeg`, read at `off`: its header (just before it) must
/// name this length and its CRC match. `InvalidData` otherwise: the frame is damaged on disk
/// (a flipped bit, a bad sector) and must not be served.
pub fn verify_record(file: &File, off: u32, jpeg: &[u8]) -> io::Result<()> {
    let len = u32::try_from(jpeg.len()).map_err(|_| damaged(off, "longer than any record"))?;
    let (mut crc, want) = record_crc_start(file, off, len)?;
    crc.update(jpeg);
    record_crc_end(off, crc, want)
}

/// [`verify_record`] for a JPEG of `len` bytes not in memory: it is read through `buf` (any
/// length), so a frame split across export chunks or cut by a `Range` is checked whole in
/// bounded memory.
pub fn verify_record_at(file: &File, off: u32, len: u32, buf: &mut [u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Err(io::Error::other("verify_record_at needs a buffer"));
    }
    let (mut crc, want) = record_crc_start(file, off, len)?;
    let mut done = 0u64;
    while done < u64::from(len) {
        let n = (u64::from(len) - done).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], u64::from(off) + done)?;
        crc.update(&buf[..n]);
        done += n as u64;
    }
    record_crc_end(off, crc, want)
}

fn damaged(off: u32, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "damaged record at byte {}: {why}",
            u64::from(off).saturating_sub(RECORD_HEADER_LEN)
        ),
    )
}

/// Reads and checks the header of the record whose JPEG (`len` bytes) is at `off`: the CRC
/// state after the header's fields, and the CRC the header gives.
fn record_crc_start(file: &File, off: u32, len: u32) -> io::Result<(crc32fast::Hasher, [u8; 4])> {
    let at = u64::from(off)
        .checked_sub(RECORD_HEADER_LEN)
        .ok_or_else(|| damaged(off, "offset inside the file header"))?;
    let mut h = [0u8; 32];
    file.read_exact_at(&mut h, at)?;
    if &h[0..4] != RECORD_MAGIC {
        return Err(damaged(off, "no record magic"));
    }
    if u32::from_le_bytes([h[4], h[5], h[6], h[7]]) != len {
        return Err(damaged(off, "the header gives another length"));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[0..28]);
    Ok((crc, [h[28], h[29], h[30], h[31]]))
}

fn record_crc_end(off: u32, crc: crc32fast::Hasher, want: [u8; 4]) -> io::Result<()> {
    if crc.finalize().to_le_bytes() != want {
        return Err(damaged(off, "CRC mismatch"));
    }
    Ok(())
}

/// One damaged stretch of a segment, found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// First byte of the stretch.
    pub from: u64,
    /// End of the stretch (exclusive).
    pub to: u64,
    /// Capture time of the damaged record, when its header was readable.
    pub t: Option<Micros>,
    /// What is wrong.
    pub why: String,
}

/// Reads a whole segment and checks every record's CRC, carrying on past damage (finding the
/// next record magic), for `mjpegd --check-recordings`. The records that check are counted.
pub fn check(path: &Path) -> io::Result<(u64, Vec<Damage>)> {
    let file = open_segment(path, false)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; 16];
    if len < FILE_HEADER_LEN {
        return Ok((
            0,
            vec![Damage {
                from: 0,
                to: len,
                t: None,
                why: "shorter than a segment header".into(),
            }],
        ));
    }
    file.read_exact_at(&mut head, 0)?;
    if &head[0..8] != FILE_MAGIC {
        return Ok((
            0,
            vec![Damage {
                from: 0,
                to: len,
                t: None,
                why: "not an mjpegd segment (bad magic)".into(),
            }],
        ));
    }
    let mut good = 0;
    let mut damage: Vec<Damage> = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    let mut buf = Vec::new();
    while pos < len {
        let mut h = [0u8; 32];
        let whole = len - pos >= RECORD_HEADER_LEN && file.read_exact_at(&mut h, pos).is_ok();
        let jpeg_len = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
        let fits = whole
            && &h[0..4] == RECORD_MAGIC
            && jpeg_len <= u64::from(MAX_JPEG_LEN)
            && jpeg_len <= len - pos - RECORD_HEADER_LEN;
        if fits {
            buf.resize(jpeg_len as usize, 0);
            file.read_exact_at(&mut buf, pos + RECORD_HEADER_LEN)?;
            let mut crc = crc32fast::Hasher::new();
            crc.update(&h[0..28]);
            crc.update(&buf);
            let end = pos + RECORD_HEADER_LEN + jpeg_len;
            if crc.finalize().to_le_bytes() == h[28..32] {
                good += 1;
            } else {
                damage.push(Damage {
                    from: pos,
                    to: end,
                    t: Some(i64::from_le_bytes(h[8..16].try_into().unwrap_or_default())),
                    why: "CRC mismatch".into(),
                });
            }
            pos = end;
            continue;
        }
        // A damaged header: the next record starts at the next magic, if any.
        let next = next_magic(&file, pos + 1, len)?.unwrap_or(len);
        damage.push(Damage {
            from: pos,
            to: next,
            t: None,
            why: "damaged record header".into(),
        });
        pos = next;
    }
    Ok((good, damage))
}

/// The offset of the next [`RECORD_MAGIC`] at or after `from`, reading in 64 KiB steps.
fn next_magic(file: &File, from: u64, len: u64) -> io::Result<Option<u64>> {
    let mut at = from;
    let mut buf = vec![0u8; 64 * 1024];
    while at < len {
        let n = buf.len().min((len - at) as usize);
        file.read_exact_at(&mut buf[..n], at)?;
        if let Some(i) = memchr::memmem::find(&buf[..n], RECORD_MAGIC) {
            return Ok(Some(at + i as u64));
        }
        // Keep the last 3 bytes: a magic may straddle two reads.
        if n < 4 {
            break;
        }
        at += n as u64 - 3;
    }
    Ok(None)
}

/// Cuts a torn tail off and syncs, so the file again ends at a whole record.
pub fn truncate(path: &Path, len: u64) -> io::Result<()> {
    let f = open_segment(path, true)?;
    f.set_len(len)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(n: u8, len: usize) -> Vec<u8> {
        let mut v = vec![n; len];
        v[0] = 0xFF;
        v[1] = 0xD8;
        v
    }

    #[test]
    fn written_records_scan_back_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SegmentWriter::create(dir.path(), 1000, 320, 240).expect("create");
        let mut want = Vec::new();
        for i in 0..10u8 {
            want.push(
                w.append(
                    1000 + i64::from(i) * 33_333,
                    u64::from(i),
                    &jpeg(i, 500 + usize::from(i)),
                )
                .expect("append"),
            );
        }
        let path = w.path().to_owned();
        let full_len = w.len();
        w.finish().expect("finish");
        for verify in [false, true] {
            let s = scan(&path, verify).expect("scan");
            assert_eq!(s.entries, want);
            assert_eq!(
                (s.start, s.size, s.good_len, s.torn.is_none()),
                (1000, (320, 240), full_len, true)
            );
        }
        // A crash in the middle of the last record: the header scan notices it runs past the end.
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(full_len - 100).expect("cut");
        let s = scan(&path, false).expect("scan");
        assert_eq!(s.entries, want[..9]);
        assert!(s.torn.is_some());
        // A flipped byte inside a JPEG is caught by the verifying scan only.
        f.set_len(full_len).expect("restore length");
        f.write_all_at(&[0x42], u64::from(want[9].off) + 10)
            .expect("corrupt");
        assert_eq!(scan(&path, false).expect("scan").entries.len(), 10);
        let s = scan(&path, true).expect("scan");
        assert_eq!(s.entries, want[..9]);
        assert!(
            s.torn.as_deref().is_some_and(|t| t.contains("CRC")),
            "{:?}",
            s.torn
        );
        truncate(&path, s.good_len).expect("truncate");
        let s = scan(&path, true).expect("scan");
        assert_eq!((s.entries.len(), s.torn), (9, None));
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.seg");
        std::fs::write(&p, b"hello, this is not a segment").expect("write");
        assert!(scan(&p, false).is_err());
    }
}
