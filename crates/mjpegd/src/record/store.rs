//! The catalogue of one camera: which segments exist and where each frame is in them.
//!
//! Rebuilt from the segment files at startup ([`Store::open`]), then kept in memory and
//! updated by the writer. Deleted segments go to a garbage list and their files are removed
//! only once no export or replay still reads them (the moonfire-nvr model, with the segment's
//! `Arc` count as the reader count).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::segment::{self, Entry};
use super::time::Micros;

/// A segment file, shared by the catalogue and every reader; its file is deleted only when
/// the catalogue has dropped it and no reader holds it.
#[derive(Debug)]
pub struct SegFile {
    /// Unique per camera for the life of the process (ETags use it).
    pub id: u64,
    /// Where the file is.
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
struct Seg {
    file: Arc<SegFile>,
    size: (u16, u16),
    entries: Arc<Vec<Entry>>,
    /// File length (headers included).
    bytes: u64,
    open: bool,
}

impl Seg {
    fn first(&self) -> Option<Micros> {
        self.entries.first().map(|e| e.t)
    }
    fn last(&self) -> Option<Micros> {
        self.entries.last().map(|e| e.t)
    }
}

/// One frame chosen for an export or replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    /// Capture time.
    pub t: Micros,
    /// Offset of the JPEG in its file.
    pub off: u32,
    /// Length of the JPEG.
    pub len: u32,
    /// Index into [`Selection::files`].
    pub file: u32,
}

/// Frames picked from the catalogue, with the files that hold them (kept from deletion while
/// the selection lives).
#[derive(Debug, Default)]
pub struct Selection {
    /// The files referenced by `frames`.
    pub files: Vec<Arc<SegFile>>,
    /// The frames, in time order.
    pub frames: Vec<FrameRef>,
    /// Frame size of the first frame.
    pub size: (u16, u16),
}

/// A stretch of recording without gaps.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Span {
    /// First frame (RFC 3339).
    pub start: String,
    /// Last frame (RFC 3339).
    pub end: String,
    /// First frame, µs since the epoch.
    pub start_us: Micros,
    /// Last frame, µs since the epoch.
    pub end_us: Micros,
    /// Frames in the span.
    pub frames: u64,
    /// JPEG bytes in the span.
    pub bytes: u64,
}

/// What the startup scan found, for the log and the benchmark.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Segments kept.
    pub segments: usize,
    /// Frames in them.
    pub frames: usize,
    /// Bytes in them.
    pub bytes: u64,
    /// Torn tails cut (with where).
    pub repaired: Vec<String>,
    /// Files skipped (not segments, or unreadable).
    pub skipped: Vec<String>,
    /// Time the scan took.
    pub took: std::time::Duration,
}

/// The catalogue.
#[derive(Debug, Default)]
pub struct Store {
    segs: Vec<Seg>,
    next_id: u64,
    garbage: Vec<Arc<SegFile>>,
    /// Bumped whenever segments are deleted.
    pub generation: u64,
}

/// Permissions of directories the recorder creates: recordings are video of people's homes,
/// so other local users get no access (issue 18 item 7). The umask can only narrow it.
pub const DIR_MODE: u32 = 0o750;

/// Creates `dir` and any missing parents with [`DIR_MODE`]. A camera directory that is a
/// symbolic link is refused, not followed: segments would be created, cut and deleted wherever
/// it points (the base directory, from the configuration, may be a link).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link, which the recorder does not follow; replace it with a real directory",
                dir.display()
            ),
        ));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

impl Store {
    /// Scans `dir` (created if missing). Only the newest segment's JPEGs are read and checked
    /// against their CRCs: a crash can only have torn the segment that was being written, as
    /// every older one was synced when it was closed.
    pub fn open(dir: &Path) -> std::io::Result<(Store, ScanReport)> {
        let started = Instant::now();
        create_dir(dir)?;
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == segment::EXTENSION))
            .collect();
        names.sort();
        let mut store = Store::default();
        let mut report = ScanReport::default();
        // Never followed (nor cut, nor deleted as empty): a link may point anywhere. Left out
        // before the newest is chosen, so the newest real segment is the one verified.
        names.retain(|path| {
            let why = match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_file() => return true,
                Ok(m) if m.file_type().is_symlink() => "a symbolic link, not followed".to_owned(),
                Ok(_) => "not a regular file".to_owned(),
                Err(e) => e.to_string(),
            };
            report.skipped.push(format!("{}: {why}", path.display()));
            false
        });
        let newest = names.len().saturating_sub(1);
        for (i, path) in names.iter().enumerate() {
            let shown = path.display();
            let scan = match segment::scan(path, i == newest) {
                Ok(s) => s,
                Err(e) => {
                    report.skipped.push(format!("{shown}: {e}"));
                    continue;
                }
            };
            if let Some(why) = &scan.torn {
                segment::truncate(path, scan.good_len)?;
                report.repaired.push(format!(
                    "{shown}: {why}; cut from {} to {} bytes",
                    scan.file_len, scan.good_len
                ));
            }
            if scan.entries.is_empty() {
                // A segment created just before a crash, or emptied by a cut: nothing to keep.
                let _ = std::fs::remove_file(path);
                continue;
            }
            report.segments += 1;
            report.frames += scan.entries.len();
            report.bytes += scan.good_len;
            let id = store.next_id;
            store.next_id += 1;
            store.segs.push(Seg {
                file: Arc::new(SegFile {
                    id,
                    path: path.clone(),
                }),
                size: scan.size,
                entries: Arc::new(scan.entries),
                bytes: scan.good_len,
                open: false,
            });
        }
        store.sort();
        report.took = started.elapsed();
        Ok((store, report))
    }

    fn sort(&mut self) {
        self.segs.sort_by_key(|s| s.first().unwrap_or(Micros::MAX));
    }

    /// Registers the segment the writer just created; returns its id.
    pub fn add_open(&mut self, path: PathBuf, size: (u16, u16), bytes: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.segs.push(Seg {
            file: Arc::new(SegFile { id, path }),
            size,
            entries: Arc::new(Vec::new()),
            bytes,
            open: true,
        });
        id
    }

    fn seg_mut(&mut self, id: u64) -> Option<&mut Seg> {
        self.segs.iter_mut().rev().find(|s| s.file.id == id)
    }

    /// Adds a frame just written to segment `id`, whose file is now `bytes` long.
    pub fn push(&mut self, id: u64, entry: Entry, bytes: u64) {
        let resort = {
            let Some(seg) = self.seg_mut(id) else { return };
            let first = seg.entries.is_empty();
            Arc::make_mut(&mut seg.entries).push(entry);
            seg.bytes = bytes;
            first
        };
        if resort {
            self.sort();
        }
    }

    /// Marks segment `id` closed; an empty one is dropped from the catalogue.
    pub fn seal(&mut self, id: u64) {
        if let Some(seg) = self.seg_mut(id) {
            seg.open = false;
        }
        if let Some(i) = self
            .segs
            .iter()
            .position(|s| s.file.id == id && s.entries.is_empty())
        {
            let seg = self.segs.remove(i);
            self.garbage.push(seg.file);
        }
    }

    /// Total bytes of segment files.
    pub fn bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.bytes).sum()
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.segs.len()
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.segs.iter().map(|s| s.entries.len()).sum()
    }

    /// First and last frame times.
    pub fn range(&self) -> Option<(Micros, Micros)> {
        let first = self.segs.iter().filter_map(Seg::first).min()?;
        let last = self.segs.iter().filter_map(Seg::last).max()?;
        Some((first, last))
    }

    /// Drops the oldest closed segments until the catalogue is within `max_bytes` and no
    /// segment ends before `now - max_age`; returns how many were dropped.
    pub fn retain(&mut self, max_bytes: u64, max_age: Option<Micros>, now: Micros) -> usize {
        let mut dropped = 0;
        while let Some(i) = self
            .segs
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.open)
            .min_by_key(|(_, s)| s.first().unwrap_or(Micros::MIN))
            .map(|(i, _)| i)
        {
            let too_big = self.bytes() > max_bytes;
            let too_old =
                max_age.is_some_and(|age| self.segs[i].last().is_some_and(|l| l < now - age));
            if !too_big && !too_old {
                break;
            }
            let seg = self.segs.remove(i);
            self.garbage.push(seg.file);
            dropped += 1;
        }
        if dropped > 0 {
            self.generation += 1;
        }
        dropped
    }

    /// Deletes the files of dropped segments that no reader holds any more; returns errors.
    pub fn collect_garbage(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        self.garbage.retain(|f| {
            if Arc::strong_count(f) > 1 {
                return true;
            }
            match std::fs::remove_file(&f.path) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    errors.push(format!("cannot delete {}: {e}", f.path.display()));
                    false
                }
            }
        });
        errors
    }

    /// Copies out the segments with frames in `from..=to` (reference counts, no frame data),
    /// so that walking them needs no lock: the writer takes this one once per frame.
    pub fn snapshot(&self, from: Micros, to: Micros) -> Snapshot {
        Snapshot {
            segs: self
                .segs
                .iter()
                .filter(|s| overlaps(s, from, to))
                .cloned()
                .collect(),
        }
    }

    /// [`Snapshot::spans`] of the whole catalogue (tests; servers use a snapshot, off the lock).
    pub fn spans(&self, from: Micros, to: Micros, gap: Micros, max: usize) -> (Vec<Span>, bool) {
        self.snapshot(from, to).spans(from, to, gap, max)
    }

    /// [`Snapshot::select`] of the whole catalogue.
    pub fn select(
        &self,
        from: Micros,
        to: Micros,
        every: Option<Micros>,
        max: usize,
    ) -> Result<Selection, usize> {
        self.snapshot(from, to).select(from, to, every, max)
    }

    /// The first `max` frames in `from..=to` (a replay's next batch). Bounded work (`max`
    /// frames, one binary search per segment), so it may run under the lock.
    pub fn batch(&self, from: Micros, to: Micros, max: usize) -> Selection {
        Snapshot::pick(self.overlapping(from, to), from, to, None, max, true).unwrap_or_default()
    }

    /// The frame nearest `at`, if one is within `limit` (two binary searches per segment).
    pub fn nearest(&self, at: Micros, limit: Micros) -> Option<(Arc<SegFile>, Entry)> {
        Snapshot::nearest_in(self.overlapping(at - limit, at + limit), at, limit)
    }

    fn overlapping(&self, from: Micros, to: Micros) -> impl Iterator<Item = &Seg> {
        self.segs.iter().filter(move |s| overlaps(s, from, to))
    }
}

fn overlaps(s: &Seg, from: Micros, to: Micros) -> bool {
    matches!((s.first(), s.last()), (Some(a), Some(b)) if a <= to && b >= from)
}

/// Segments copied out of the catalogue for one query: walked without its lock (and off the
/// async runtime, as a range may hold millions of frames). Holding it keeps its files from
/// deletion, like a [`Selection`].
#[derive(Debug, Default)]
pub struct Snapshot {
    segs: Vec<Seg>,
}

impl Snapshot {
    /// Segments with frames in `from..=to`, oldest first.
    fn overlapping(&self, from: Micros, to: Micros) -> impl Iterator<Item = &Seg> {
        self.segs.iter().filter(move |s| overlaps(s, from, to))
    }

    /// The recorded stretches in `from..=to`: a gap longer than `gap` between two frames
    /// starts a new span. At most `max` spans.
    pub fn spans(&self, from: Micros, to: Micros, gap: Micros, max: usize) -> (Vec<Span>, bool) {
        let mut out: Vec<Span> = Vec::new();
        let mut truncated = false;
        for seg in self.overlapping(from, to) {
            let lo = seg.entries.partition_point(|e| e.t < from);
            for e in seg.entries[lo..].iter().take_while(|e| e.t <= to) {
                match out.last_mut() {
                    Some(s) if e.t > s.end_us && e.t - s.end_us <= gap => {
                        s.end_us = e.t;
                        s.frames += 1;
                        s.bytes += u64::from(e.len);
                    }
                    Some(s) if e.t <= s.end_us => {}
                    _ => {
                        if out.len() == max {
                            truncated = true;
                            break;
                        }
                        out.push(Span {
                            start: String::new(),
                            end: String::new(),
                            start_us: e.t,
                            end_us: e.t,
                            frames: 1,
                            bytes: u64::from(e.len),
                        });
                    }
                }
            }
        }
        for s in &mut out {
            s.start = super::time::rfc3339(s.start_us);
            s.end = super::time::rfc3339(s.end_us);
        }
        (out, truncated)
    }

    /// The frames in `from..=to` in time order, with `every` keeping one frame per that many
    /// µs (timelapse), at most `max` of them (`Err(max)` as soon as there are more: counting
    /// further would only walk more of a range that is refused anyway).
    pub fn select(
        &self,
        from: Micros,
        to: Micros,
        every: Option<Micros>,
        max: usize,
    ) -> Result<Selection, usize> {
        Self::pick(self.overlapping(from, to), from, to, every, max, false)
    }

    fn pick<'a>(
        segs: impl Iterator<Item = &'a Seg>,
        from: Micros,
        to: Micros,
        every: Option<Micros>,
        max: usize,
        first_only: bool,
    ) -> Result<Selection, usize> {
        let mut sel = Selection::default();
        let mut next_keep = from;
        let mut last_t = Micros::MIN;
        for seg in segs {
            let mut i = seg.entries.partition_point(|e| e.t < from);
            let mut file_index = None;
            while let Some(e) = seg.entries.get(i).filter(|e| e.t <= to) {
                i += 1;
                // Segments may overlap after the clock stepped back: keep time increasing.
                if e.t <= last_t {
                    continue;
                }
                if let Some(every) = every.filter(|&s| s > 0) {
                    if e.t < next_keep {
                        // Jump to the next kept time instead of stepping frame by frame.
                        i += seg.entries[i..].partition_point(|x| x.t < next_keep);
                        continue;
                    }
                    // The first step past this frame, computed: stepping one `every` at a
                    // time from 1970 with `every=0.01` is 10^11 iterations.
                    let steps = (e.t - next_keep) / every + 1;
                    next_keep = next_keep.saturating_add(steps.saturating_mul(every));
                }
                last_t = e.t;
                if sel.frames.len() == max {
                    if first_only {
                        return Ok(sel);
                    }
                    return Err(max);
                }
                let file = *file_index.get_or_insert_with(|| {
                    sel.files.push(Arc::clone(&seg.file));
                    (sel.files.len() - 1) as u32
                });
                if sel.frames.is_empty() {
                    sel.size = seg.size;
                }
                sel.frames.push(FrameRef {
                    t: e.t,
                    off: e.off,
                    len: e.len,
                    file,
                });
            }
        }
        Ok(sel)
    }

    fn nearest_in<'a>(
        segs: impl Iterator<Item = &'a Seg>,
        at: Micros,
        limit: Micros,
    ) -> Option<(Arc<SegFile>, Entry)> {
        let mut best: Option<(Micros, &Seg, Entry)> = None;
        for seg in segs {
            let i = seg.entries.partition_point(|e| e.t < at);
            for e in [i.checked_sub(1), Some(i)]
                .into_iter()
                .flatten()
                .filter_map(|j| seg.entries.get(j))
            {
                let d = (e.t - at).abs();
                if d <= limit && best.is_none_or(|(bd, _, _)| d < bd) {
                    best = Some((d, seg, *e));
                }
            }
        }
        best.map(|(_, seg, e)| (Arc::clone(&seg.file), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::segment::SegmentWriter;

    fn record(dir: &Path, start: Micros, n: usize, step: Micros) -> (PathBuf, u64) {
        let mut w = SegmentWriter::create(dir, start, 64, 48).expect("create");
        for i in 0..n {
            w.append(
                start + i as Micros * step,
                i as u64,
                &[0xFF, 0xD8, i as u8, 0xFF, 0xD9],
            )
            .expect("append");
        }
        let out = (w.path().to_owned(), w.len());
        w.finish().expect("finish");
        out
    }

    #[test]
    fn spans_selection_timelapse_and_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Two segments back to back, then a 100 s gap, then a third.
        record(dir.path(), 1_000_000, 30, 100_000);
        record(dir.path(), 4_000_000, 30, 100_000);
        let (third, _) = record(dir.path(), 107_000_000, 10, 100_000);
        let (mut store, report) = Store::open(dir.path()).expect("open");
        assert_eq!((report.segments, report.frames), (3, 70));
        let (spans, truncated) = store.spans(0, i64::MAX / 2, 2_000_000, 100);
        assert!(!truncated);
        let shape: Vec<(Micros, Micros, u64)> = spans
            .iter()
            .map(|s| (s.start_us, s.end_us, s.frames))
            .collect();
        assert_eq!(
            shape,
            [(1_000_000, 6_900_000, 60), (107_000_000, 107_900_000, 10)]
        );

        let sel = store
            .select(2_000_000, 5_000_000, None, 1000)
            .expect("select");
        assert_eq!(sel.frames.len(), 31);
        assert_eq!(sel.files.len(), 2);
        assert_eq!(store.select(2_000_000, 5_000_000, None, 30).err(), Some(30));
        let lapse = store
            .select(0, i64::MAX / 2, Some(1_000_000), 1000)
            .expect("select");
        let times: Vec<Micros> = lapse.frames.iter().map(|f| f.t / 100_000).collect();
        assert_eq!(times, [10, 20, 30, 40, 50, 60, 1070]);

        let (file, e) = store.nearest(3_960_000, 1_000_000).expect("near");
        assert_eq!(e.t, 4_000_000);
        assert!(file.path.to_string_lossy().contains("19700101T000004"));
        assert!(store.nearest(50_000_000, 1_000_000).is_none());

        // Retention by size: the oldest segment goes first, its file once nobody reads it.
        let held = store
            .select(1_000_000, 1_000_000, None, 10)
            .expect("select");
        let total = store.bytes();
        assert_eq!(store.retain(total - 1, None, 0), 1);
        assert_eq!(store.segments(), 2);
        assert!(store.collect_garbage().is_empty());
        assert!(
            held.files[0].path.exists(),
            "deleted while a reader held it"
        );
        drop((held, sel, lapse));
        store.collect_garbage();
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 2);
        // Retention by age.
        assert_eq!(store.retain(u64::MAX, Some(10_000_000), 108_000_000), 1);
        store.collect_garbage();
        assert_eq!(store.range(), Some((107_000_000, 107_900_000)));
        assert!(third.exists());
    }
}
