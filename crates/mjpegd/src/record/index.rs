//! The index of a closed segment: `STAMP.idx` beside `STAMP.seg`, written when the segment is
//! closed, so that startup reads a small summary per segment instead of every record header,
//! and a frame list is loaded only when a replay, an export or `frame.jpg` needs it.
//!
//! ```text
//! index   = head runs frames crc
//! head    = "MJPEGDX1" | segment length covered (u64) | frames (u32) | width (u16)
//!           | height (u16) | JPEG bytes (u64) | runs (u16)                       34 bytes
//! run     = first time (i64) | last time (i64) | frames (u32) | JPEG bytes (u64)  28 bytes
//! frames  = per frame: zigzag varint of (time - previous time), varint JPEG length
//! crc     = crc32 of everything before it (u32)
//! ```
//!
//! Offsets are not stored: records follow each other, so the next JPEG starts at the previous
//! one's end plus a record header. A frame costs 3-5 bytes (moonfire-nvr's `video_index` is of
//! the same kind). Runs split the segment where two frames are at least [`RUN_GAP`] apart, so
//! `/recordings` can list spans from the summaries alone. The segment stays the truth: an index
//! whose length does not match its segment, or whose checksum fails, is rebuilt from the
//! segment's record headers.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::segment::{self, Entry, FILE_HEADER_LEN, RECORD_HEADER_LEN};
use super::time::Micros;

/// First bytes of an index file (format version 1).
pub const INDEX_MAGIC: &[u8; 8] = b"MJPEGDX1";
/// File name extension of indexes.
pub const INDEX_EXTENSION: &str = "idx";
/// Two frames this far apart start a new run; the shortest gap `/recordings` splits spans at
/// (the span gap is at least 2 s, see `Recordings::start`).
pub const RUN_GAP: Micros = 2_000_000;
/// Most runs kept in a summary; a segment with more gaps keeps its last runs merged into one
/// (spans over it are then computed from its frames).
pub const MAX_RUNS: usize = 64;
/// Bytes of the head.
const HEAD_LEN: usize = 34;
/// Bytes of a run.
const RUN_LEN: usize = 28;
/// Most bytes read to get a summary (head and [`MAX_RUNS`] runs).
pub const SUMMARY_READ: usize = HEAD_LEN + MAX_RUNS * RUN_LEN;

/// An unbroken stretch of a segment's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First frame's time.
    pub first: Micros,
    /// Last frame's time.
    pub last: Micros,
    /// Frames in it.
    pub frames: u32,
    /// JPEG bytes in it.
    pub bytes: u64,
}

/// What the catalogue keeps of a closed segment: a few dozen bytes, whatever its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Segment file length the index covers.
    pub seg_len: u64,
    /// Frame size.
    pub size: (u16, u16),
    /// Frames.
    pub frames: u32,
    /// JPEG bytes.
    pub bytes: u64,
    /// The runs, oldest first (see [`Summary::runs`]).
    runs: Runs,
    /// False when the segment had more than [`MAX_RUNS`] runs and the last were merged.
    pub exact: bool,
}

/// A summary's runs: most segments have one, kept inline (an archive holds 10^5 summaries,
/// and a heap allocation each would be a good part of its memory).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Runs {
    One(Run),
    Many(Box<[Run]>),
}

impl Runs {
    fn of(mut runs: Vec<Run>) -> Runs {
        if runs.len() == 1 {
            if let Some(r) = runs.pop() {
                return Runs::One(r);
            }
        }
        Runs::Many(runs.into_boxed_slice())
    }
}

impl Summary {
    /// The runs, oldest first; [`Summary::exact`] says whether gaps inside them are known.
    pub fn runs(&self) -> &[Run] {
        match &self.runs {
            Runs::One(r) => std::slice::from_ref(r),
            Runs::Many(rs) => rs,
        }
    }
    /// First frame's time.
    pub fn first(&self) -> Option<Micros> {
        self.runs().first().map(|r| r.first)
    }
    /// Last frame's time.
    pub fn last(&self) -> Option<Micros> {
        self.runs().last().map(|r| r.last)
    }

    /// The summary of `entries` in a segment `seg_len` long.
    pub fn of(entries: &[Entry], size: (u16, u16), seg_len: u64) -> Summary {
        let mut runs: Vec<Run> = Vec::new();
        let mut exact = true;
        let mut prev: Option<Micros> = None;
        for e in entries {
            let split = prev.is_none_or(|p| e.t - p >= RUN_GAP);
            let full = runs.len() == MAX_RUNS;
            match runs.last_mut() {
                Some(r) if !split || full => {
                    if split {
                        exact = false;
                    }
                    r.last = e.t;
                    r.frames += 1;
                    r.bytes += u64::from(e.len);
                }
                _ => runs.push(Run {
                    first: e.t,
                    last: e.t,
                    frames: 1,
                    bytes: u64::from(e.len),
                }),
            }
            prev = Some(e.t);
        }
        Summary {
            seg_len,
            size,
            frames: entries.len() as u32,
            bytes: entries.iter().map(|e| u64::from(e.len)).sum(),
            runs: Runs::of(runs),
            exact,
        }
    }
}

/// The index file of segment `seg`.
pub fn path_of(seg: &Path) -> PathBuf {
    seg.with_extension(INDEX_EXTENSION)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The bytes of an index of `entries`.
pub fn encode(summary: &Summary, entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD_LEN + summary.runs().len() * RUN_LEN + entries.len() * 4);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&summary.seg_len.to_le_bytes());
    out.extend_from_slice(&summary.frames.to_le_bytes());
    out.extend_from_slice(&summary.size.0.to_le_bytes());
    out.extend_from_slice(&summary.size.1.to_le_bytes());
    out.extend_from_slice(&summary.bytes.to_le_bytes());
    // Merged runs are flagged by the top bit of the count.
    let count = summary.runs().len() as u16 | if summary.exact { 0 } else { 0x8000 };
    out.extend_from_slice(&count.to_le_bytes());
    for r in summary.runs() {
        out.extend_from_slice(&r.first.to_le_bytes());
        out.extend_from_slice(&r.last.to_le_bytes());
        out.extend_from_slice(&r.frames.to_le_bytes());
        out.extend_from_slice(&r.bytes.to_le_bytes());
    }
    let mut prev = summary.first().unwrap_or(0);
    for e in entries {
        put_varint(&mut out, zigzag(e.t - prev));
        put_varint(&mut out, u64::from(e.len));
        prev = e.t;
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn le<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// Reads a summary from the first bytes of an index (no checksum: that covers the frames too
/// and is checked when they are loaded). `None`: not an index, or cut short.
pub fn decode_summary(b: &[u8]) -> Option<Summary> {
    if b.get(0..8)? != INDEX_MAGIC {
        return None;
    }
    let seg_len = u64::from_le_bytes(le(b, 8)?);
    let frames = u32::from_le_bytes(le(b, 16)?);
    let size = (
        u16::from_le_bytes(le(b, 20)?),
        u16::from_le_bytes(le(b, 22)?),
    );
    let bytes = u64::from_le_bytes(le(b, 24)?);
    let count = u16::from_le_bytes(le(b, 32)?);
    let exact = count & 0x8000 == 0;
    let n = usize::from(count & 0x7fff);
    if n > MAX_RUNS || (frames > 0) != (n > 0) {
        return None;
    }
    let mut runs = Vec::with_capacity(n);
    for i in 0..n {
        let at = HEAD_LEN + i * RUN_LEN;
        runs.push(Run {
            first: i64::from_le_bytes(le(b, at)?),
            last: i64::from_le_bytes(le(b, at + 8)?),
            frames: u32::from_le_bytes(le(b, at + 16)?),
            bytes: u64::from_le_bytes(le(b, at + 20)?),
        });
    }
    Some(Summary {
        seg_len,
        size,
        frames,
        bytes,
        runs: Runs::of(runs),
        exact,
    })
}

/// Decodes a whole index: its summary and frames, checked against its checksum and against
/// itself (frame count, times increasing, offsets within the segment).
pub fn decode(b: &[u8]) -> Option<(Summary, Vec<Entry>)> {
    let body = b.len().checked_sub(4)?;
    let crc = u32::from_le_bytes(le(b, body)?);
    if crc32fast::hash(&b[..body]) != crc {
        return None;
    }
    let summary = decode_summary(b)?;
    let mut pos = HEAD_LEN + summary.runs().len() * RUN_LEN;
    let mut entries = Vec::with_capacity(summary.frames as usize);
    let mut t = summary.first().unwrap_or(0);
    let mut off = FILE_HEADER_LEN + RECORD_HEADER_LEN;
    for i in 0..summary.frames {
        let dt = unzigzag(get_varint(&b[..body], &mut pos)?);
        let len = u32::try_from(get_varint(&b[..body], &mut pos)?).ok()?;
        if i > 0 && dt <= 0 {
            return None;
        }
        t = t.checked_add(dt)?;
        let end = off + u64::from(len);
        if end > summary.seg_len {
            return None;
        }
        entries.push(Entry {
            t,
            off: u32::try_from(off).ok()?,
            len,
        });
        off = end + RECORD_HEADER_LEN;
    }
    if pos != body || off - RECORD_HEADER_LEN != summary.seg_len {
        return None;
    }
    Some((summary, entries))
}

/// Writes the index of a closed segment: a temporary file renamed over the old index, so a
/// crash leaves a whole index or none (never synced: an index lost in a power cut is rebuilt).
pub fn write(seg: &Path, summary: &Summary, entries: &[Entry]) -> io::Result<()> {
    let path = path_of(seg);
    let tmp = path.with_extension("idx.tmp");
    let bytes = encode(summary, entries);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(segment::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path)
}

/// Reads an index's summary (the first [`SUMMARY_READ`] bytes), if there is a usable one for a
/// segment `seg_len` long.
pub fn read_summary(seg: &Path, seg_len: u64) -> Option<Summary> {
    use std::io::Read;
    let f = segment::open_segment(&path_of(seg), false).ok()?;
    let mut buf = Vec::with_capacity(SUMMARY_READ);
    f.take(SUMMARY_READ as u64).read_to_end(&mut buf).ok()?;
    decode_summary(&buf).filter(|s| s.seg_len == seg_len)
}

/// Reads and checks a whole index for a segment `seg_len` long.
pub fn read(seg: &Path, seg_len: u64) -> Option<(Summary, Vec<Entry>)> {
    use std::io::Read;
    let f = segment::open_segment(&path_of(seg), false).ok()?;
    // A segment of at most 1 GiB has at most 2^25 records; 12 bytes each is a generous bound.
    let limit = SUMMARY_READ as u64 + 4 + seg_len / RECORD_HEADER_LEN * 12;
    let mut buf = Vec::new();
    f.take(limit).read_to_end(&mut buf).ok()?;
    decode(&buf).filter(|(s, _)| s.seg_len == seg_len)
}

/// Rebuilds a segment's frame list from its record headers and writes its index; the frames.
pub fn rebuild(seg: &Path) -> io::Result<(Summary, Vec<Entry>)> {
    let scan = segment::scan(seg, false)?;
    let summary = Summary::of(&scan.entries, scan.size, scan.good_len);
    if let Err(e) = write(seg, &summary, &scan.entries) {
        tracing::warn!(segment = %seg.display(), "cannot write the segment's index: {e}");
    }
    Ok((summary, scan.entries))
}

/// The catalogue file of a camera's directory: every closed segment's summary, one record
/// appended at each close, so startup reads one file instead of one index per segment.
pub const CATALOGUE: &str = "catalogue.mjc";
/// First bytes of a catalogue file.
const CATALOGUE_MAGIC: &[u8; 8] = b"MJPEGDC1";
/// Largest catalogue read (a million segments of about 100 bytes).
pub const MAX_CATALOGUE: u64 = 256 << 20;

/// One catalogue record: `u32 length | u16 name length | name | summary head and runs | crc32`.
fn catalogue_record(name: &std::ffi::OsStr, summary: &Summary) -> Vec<u8> {
    let name = name.as_encoded_bytes();
    let head = encode(summary, &[]);
    // The summary's head and runs, without its (empty) frames' checksum.
    let summary_bytes = &head[..head.len() - 4];
    let len = 2 + name.len() + summary_bytes.len() + 4;
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(summary_bytes);
    let crc = crc32fast::hash(&out[4..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Appends one closed segment's summary to the catalogue of `dir` (created when missing). Not
/// synced: the catalogue is a cache of the indexes, and a lost or torn tail is read past.
pub fn append_catalogue(dir: &Path, name: &std::ffi::OsStr, summary: &Summary) -> io::Result<()> {
    let path = dir.join(CATALOGUE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(segment::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    let mut out = Vec::new();
    if f.metadata()?.len() == 0 {
        out.extend_from_slice(CATALOGUE_MAGIC);
    }
    out.extend_from_slice(&catalogue_record(name, summary));
    // One write: with O_APPEND a record is never interleaved with another.
    f.write_all(&out)
}

/// Writes a whole catalogue of `records` atomically (a compaction, at startup).
pub fn write_catalogue<'a>(
    dir: &Path,
    records: impl Iterator<Item = (&'a std::ffi::OsStr, &'a Summary)>,
) -> io::Result<()> {
    let mut out = CATALOGUE_MAGIC.to_vec();
    for (name, summary) in records {
        out.extend_from_slice(&catalogue_record(name, summary));
    }
    // As private as the segments it describes.
    crate::persist::write_atomic_with_mode(&dir.join(CATALOGUE), &out, segment::FILE_MODE)
}

/// Reads the catalogue of `dir`, calling `each` with every record's segment name and summary
/// in file order; returns how many records were read and whether the file ended in a damaged
/// or torn record (the records before it are used). Streamed through a small buffer: a month's
/// catalogue is megabytes, and a buffer that size, freed at once, would stay resident.
pub fn read_catalogue(
    dir: &Path,
    mut each: impl FnMut(&std::ffi::OsStr, Summary),
) -> (usize, bool) {
    use std::io::{BufReader, Read};
    let Ok(f) = segment::open_segment(&dir.join(CATALOGUE), false) else {
        return (0, false);
    };
    let mut r = BufReader::with_capacity(64 * 1024, f.take(MAX_CATALOGUE));
    let mut magic = [0u8; 8];
    match r.read_exact(&mut magic) {
        Ok(()) if &magic == CATALOGUE_MAGIC => {}
        Ok(()) => return (0, true),
        // Empty, or shorter than its magic: nothing to use, and worth rewriting.
        Err(_) => return (0, true),
    }
    let mut records = 0;
    let mut rec = Vec::with_capacity(256);
    loop {
        use std::io::BufRead;
        match r.fill_buf() {
            // The end, between two records.
            Ok([]) => return (records, false),
            Ok(_) => {}
            Err(_) => return (records, true),
        }
        let mut len = [0u8; 4];
        if r.read_exact(&mut len).is_err() {
            return (records, true);
        }
        let len = u32::from_le_bytes(len) as usize;
        // A record is a name and a summary: never more than a few kilobytes.
        if !(6..=64 * 1024).contains(&len) {
            return (records, true);
        }
        rec.resize(len, 0);
        if r.read_exact(&mut rec).is_err() {
            return (records, true);
        }
        let (body, crc) = rec.split_at(len - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return (records, true);
        }
        let name_len = usize::from(u16::from_le_bytes([body[0], body[1]]));
        let (Some(name), Some(summary)) = (
            body.get(2..2 + name_len),
            body.get(2 + name_len..).and_then(decode_summary),
        ) else {
            return (records, true);
        };
        // Segment names are ASCII stamps: a name that is not UTF-8 matches no segment, which
        // is then read from its own index.
        if let Ok(name) = std::str::from_utf8(name) {
            each(std::ffi::OsStr::new(name), summary);
        }
        records += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::segment::SegmentWriter;

    fn record(dir: &Path, times: &[Micros]) -> (PathBuf, Vec<Entry>, u64) {
        let mut w = SegmentWriter::create(dir, times[0], 64, 48).expect("create");
        let entries: Vec<Entry> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                w.append(t, i as u64, &vec![0xAB; 100 + i * 7])
                    .expect("append")
            })
            .collect();
        let out = (w.path().to_owned(), entries, w.len());
        w.finish().expect("finish");
        out
    }

    #[test]
    fn an_index_round_trips_and_is_small() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 30 fps with jitter, then a 5 s gap: two runs.
        let mut times: Vec<Micros> = (0..300).map(|i| 1_000_000 + i * 33_333 + i % 3).collect();
        times.extend((0..10).map(|i| 20_000_000 + i * 33_333));
        let (seg, entries, len) = record(dir.path(), &times);
        let summary = Summary::of(&entries, (64, 48), len);
        assert_eq!(summary.runs().len(), 2);
        assert_eq!(summary.runs()[1].frames, 10);
        write(&seg, &summary, &entries).expect("write");
        let size = std::fs::metadata(path_of(&seg)).expect("stat").len();
        // 33 ms steps and lengths over 127 take 3 + 2 bytes a frame.
        assert!(size <= 310 * 5 + 100, "{size} bytes for 310 frames");
        assert_eq!(read(&seg, len), Some((summary.clone(), entries.clone())));
        assert_eq!(read_summary(&seg, len), Some(summary.clone()));
        // Stale (the segment grew) and corrupt indexes are not used.
        assert_eq!(read(&seg, len + 1), None);
        let mut bytes = std::fs::read(path_of(&seg)).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(path_of(&seg), &bytes).expect("write");
        assert_eq!(read(&seg, len), None);
        let (rebuilt, again) = rebuild(&seg).expect("rebuild");
        assert_eq!((rebuilt, again), (summary, entries));
        assert!(read(&seg, len).is_some(), "the rebuild rewrote the index");
    }

    #[test]
    fn a_segment_with_many_gaps_keeps_a_bounded_summary() {
        let times: Vec<Micros> = (0..200).map(|i| i * 3_000_000).collect();
        let entries: Vec<Entry> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry {
                t,
                off: (48 + i * 132) as u32,
                len: 100,
            })
            .collect();
        let s = Summary::of(&entries, (1, 1), 16 + 200 * 132);
        assert_eq!(s.runs().len(), MAX_RUNS);
        assert!(!s.exact);
        assert_eq!(s.runs().iter().map(|r| r.frames).sum::<u32>(), 200);
        let bytes = encode(&s, &entries);
        assert_eq!(decode(&bytes), Some((s, entries)));
    }

    #[test]
    fn hostile_bytes_decode_to_nothing() {
        for junk in [
            &b""[..],
            b"MJPEGDX1",
            b"MJPEGDX1\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            assert_eq!(decode(junk), None);
            assert_eq!(decode_summary(junk), None);
        }
        let s = Summary::of(&[], (0, 0), 16);
        let mut b = encode(&s, &[]);
        assert_eq!(decode(&b).map(|(s, e)| (s.frames, e.len())), Some((0, 0)));
        // A claimed frame count the payload does not hold.
        b[16] = 5;
        let body = b.len() - 4;
        let crc = crc32fast::hash(&b[..body]).to_le_bytes();
        b[body..].copy_from_slice(&crc);
        assert_eq!(decode(&b), None);
    }
}
