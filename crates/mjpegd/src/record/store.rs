//! The catalogue of one camera: which segments exist, and where each frame is in them.
//!
//! Built at startup ([`Store::open`]) from each closed segment's index summary (`index.rs`: a
//! few dozen bytes per segment, whatever its length), so startup time and memory grow with the
//! number of segments, not of frames. Frame lists are loaded when a query needs them, from the
//! index (or rebuilt from the segment), and kept in a [`FrameCache`] bounded to
//! [`MAX_CACHED_FRAMES`]; only the open segment's list lives in the catalogue. Deleted
//! segments go to a garbage list and their files are removed only once no export or replay
//! still reads them (the moonfire-nvr model, with the segment's `Arc` count as the reader count).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::index::{self, Summary};
use super::segment::{self, Entry};
use super::time::Micros;

/// A segment file, shared by the catalogue and every reader; its file is deleted only when
/// the catalogue has dropped it and no reader holds it.
#[derive(Debug)]
pub struct SegFile {
    /// Unique per camera for the life of the process (ETags use it).
    pub id: u64,
    /// The camera's directory, shared by all its segments (an archive has 10^5 of them).
    dir: Arc<PathBuf>,
    /// The file's name in it.
    name: Box<std::ffi::OsStr>,
}

impl SegFile {
    /// A segment at `path`, sharing `dir` when it is the path's directory.
    fn new(id: u64, path: &Path, dir: &Arc<PathBuf>) -> SegFile {
        let parent = path.parent().unwrap_or(Path::new(""));
        let dir = if parent == dir.as_path() {
            Arc::clone(dir)
        } else {
            Arc::new(parent.to_path_buf())
        };
        SegFile {
            id,
            dir,
            name: path.file_name().unwrap_or_default().into(),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&*self.name)
    }
}

#[derive(Debug, Clone)]
struct Seg {
    file: Arc<SegFile>,
    size: (u16, u16),
    /// Closed segments: the index summary. The open one: `None` (its frames are in `live`).
    summary: Option<Arc<Summary>>,
    /// The open segment's frames, appended by the writer.
    live: Option<Arc<Vec<Entry>>>,
    /// File length (headers included).
    bytes: u64,
    open: bool,
}

impl Seg {
    fn first(&self) -> Option<Micros> {
        match (&self.live, &self.summary) {
            (Some(l), _) => l.first().map(|e| e.t),
            (None, Some(s)) => s.first(),
            (None, None) => None,
        }
    }
    fn last(&self) -> Option<Micros> {
        match (&self.live, &self.summary) {
            (Some(l), _) => l.last().map(|e| e.t),
            (None, Some(s)) => s.last(),
            (None, None) => None,
        }
    }
    fn frames(&self) -> usize {
        match (&self.live, &self.summary) {
            (Some(l), _) => l.len(),
            (None, Some(s)) => s.frames as usize,
            (None, None) => 0,
        }
    }
}

/// Most frame entries kept loaded per camera (16 bytes each: 8 MiB), for the segments queries
/// read most recently; the open segment's frames come on top.
pub const MAX_CACHED_FRAMES: usize = 512 * 1024;

/// The frame lists of closed segments that queries loaded, least recently used dropped first
/// once [`MAX_CACHED_FRAMES`] is passed. Shared by a store and its snapshots.
#[derive(Debug)]
pub struct FrameCache {
    inner: std::sync::Mutex<CacheInner>,
    /// Most frames kept: [`MAX_CACHED_FRAMES`] (smaller in tests).
    cap: usize,
}

impl Default for FrameCache {
    fn default() -> FrameCache {
        FrameCache {
            inner: std::sync::Mutex::default(),
            cap: MAX_CACHED_FRAMES,
        }
    }
}

#[derive(Debug, Default)]
struct CacheInner {
    lists: std::collections::HashMap<u64, (Arc<Vec<Entry>>, u64)>,
    frames: usize,
    clock: u64,
    loads: u64,
}

impl FrameCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, id: u64) -> Option<Arc<Vec<Entry>>> {
        let mut c = self.lock();
        c.clock += 1;
        let now = c.clock;
        let (list, used) = c.lists.get_mut(&id)?;
        *used = now;
        Some(Arc::clone(list))
    }

    fn put(&self, id: u64, list: Arc<Vec<Entry>>) {
        let mut c = self.lock();
        c.clock += 1;
        let now = c.clock;
        c.frames += list.len();
        if let Some((old, _)) = c.lists.insert(id, (list, now)) {
            c.frames -= old.len();
        }
        while c.frames > self.cap && c.lists.len() > 1 {
            let Some(oldest) = c
                .lists
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((gone, _)) = c.lists.remove(&oldest) {
                c.frames -= gone.len();
            }
        }
    }

    fn forget(&self, id: u64) {
        let mut c = self.lock();
        if let Some((gone, _)) = c.lists.remove(&id) {
            c.frames -= gone.len();
        }
    }

    /// Frames loaded now, and frame lists loaded from disk since startup.
    pub fn usage(&self) -> (usize, u64) {
        let c = self.lock();
        (c.frames, c.loads)
    }

    /// The frames of closed segment `seg`: cached, else from its index, else rebuilt from the
    /// segment (and its index rewritten). Blocking on a miss.
    fn load(&self, seg: &Seg) -> Arc<Vec<Entry>> {
        if let Some(live) = &seg.live {
            return Arc::clone(live);
        }
        if let Some(list) = self.get(seg.file.id) {
            return list;
        }
        let path = &seg.file.path();
        let entries = match index::read(path, seg.bytes) {
            Some((_, entries)) => entries,
            None => match index::rebuild(path) {
                Ok((summary, entries)) if summary.seg_len == seg.bytes => entries,
                Ok((summary, entries)) => {
                    tracing::warn!(
                        segment = %path.display(),
                        "segment is {} bytes, catalogued as {}; using its frames up to the catalogued length",
                        summary.seg_len, seg.bytes
                    );
                    entries
                        .into_iter()
                        .filter(|e| u64::from(e.off) + u64::from(e.len) <= seg.bytes)
                        .collect()
                }
                Err(e) => {
                    tracing::warn!(segment = %path.display(), "cannot read the segment's frames: {e}");
                    Vec::new()
                }
            },
        };
        let list = Arc::new(entries);
        self.lock().loads += 1;
        self.put(seg.file.id, Arc::clone(&list));
        list
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
    /// Segments whose index was missing, stale or damaged and was rebuilt from the segment
    /// (and the newest, always verified and indexed).
    pub indexed: usize,
    /// Segments known from the catalogue file (neither their index nor they were read).
    pub catalogued: usize,
    /// Time the scan took.
    pub took: std::time::Duration,
}

/// The catalogue.
#[derive(Debug, Default)]
pub struct Store {
    /// The camera's directory.
    dir: Arc<PathBuf>,
    segs: Vec<Seg>,
    next_id: u64,
    garbage: Vec<Arc<SegFile>>,
    cache: Arc<FrameCache>,
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
        // File names only, moved into the catalogue afterwards: a month is 10^5 names, and full
        // paths collected and dropped here would stay in the allocator as resident memory.
        let mut names: Vec<(Box<std::ffi::OsStr>, Option<std::fs::FileType>)> = Vec::new();
        let mut indexes = false;
        for e in std::fs::read_dir(dir)?.filter_map(Result::ok) {
            let name = e.file_name();
            match Path::new(&name).extension() {
                // The type from the directory entry itself (no stat on Linux file systems).
                Some(x) if x == segment::EXTENSION => {
                    names.push((name.into_boxed_os_str(), e.file_type().ok()));
                }
                Some(x) if x == index::INDEX_EXTENSION => indexes = true,
                _ => {}
            }
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut store = Store {
            dir: Arc::new(dir.to_path_buf()),
            ..Store::default()
        };
        let mut report = ScanReport::default();
        // Indexes whose segment is gone (deleted while the server was down, or by hand): a
        // second listing, so that no list of index names is kept.
        if indexes {
            for e in std::fs::read_dir(dir)?.filter_map(Result::ok) {
                let name = e.file_name();
                let p = Path::new(&name);
                if p.extension().is_some_and(|x| x == index::INDEX_EXTENSION) {
                    let seg = p.with_extension(segment::EXTENSION);
                    if names
                        .binary_search_by(|n| (*n.0).cmp(seg.as_os_str()))
                        .is_err()
                    {
                        let _ = std::fs::remove_file(dir.join(&name));
                    }
                }
            }
        }
        // Never followed (nor cut, nor deleted as empty): a link may point anywhere. Left out
        // before the newest is chosen, so the newest real segment is the one verified.
        names.retain(|(name, kind)| {
            let path = dir.join(&**name);
            let kind = match kind {
                Some(k) => Ok(*k),
                None => std::fs::symlink_metadata(&path).map(|m| m.file_type()),
            };
            let why = match kind {
                Ok(k) if k.is_file() => return true,
                Ok(k) if k.is_symlink() => "a symbolic link, not followed".to_owned(),
                Ok(_) => "not a regular file".to_owned(),
                Err(e) => e.to_string(),
            };
            report.skipped.push(format!("{}: {why}", path.display()));
            false
        });
        // The catalogue's summaries, matched to the segments found (by binary search, without
        // a map of names: the summaries move into the catalogue as they are).
        let mut known: Vec<Option<Arc<Summary>>> = vec![None; names.len()];
        let (records, torn) = index::read_catalogue(dir, |name, summary| {
            if let Ok(i) = names.binary_search_by(|n| (*n.0).cmp(name)) {
                known[i] = Some(Arc::new(summary));
            }
        });
        let mut rewrite = torn;
        let newest = names.len().saturating_sub(1);
        store.segs.reserve_exact(names.len());
        for (i, ((name, _), known)) in names.into_iter().zip(known).enumerate() {
            let path = &dir.join(&*name);
            let shown = path.display();
            // Closed segments are known by the catalogue, else by their index; the newest is
            // verified, as a crash can only have torn the segment that was being written
            // (every older one was synced when it was closed).
            let indexed = match known {
                Some(summary) if i != newest => {
                    report.catalogued += 1;
                    Some(summary)
                }
                None if i == newest => {
                    // Not catalogued yet (the server was killed while it was open).
                    rewrite = true;
                    None
                }
                Some(_) => None,
                _ => {
                    rewrite = true;
                    std::fs::symlink_metadata(path)
                        .ok()
                        .and_then(|m| index::read_summary(path, m.len()))
                        .map(Arc::new)
                }
            };
            let (summary, entries) = match indexed {
                Some(summary) => (summary, None),
                None => {
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
                    let summary = Arc::new(Summary::of(&scan.entries, scan.size, scan.good_len));
                    if !scan.entries.is_empty() {
                        if let Err(e) = index::write(path, &summary, &scan.entries) {
                            report
                                .skipped
                                .push(format!("{shown}: index not written: {e}"));
                        }
                        report.indexed += 1;
                    }
                    (summary, Some(scan.entries))
                }
            };
            if summary.frames == 0 {
                // A segment created just before a crash, or emptied by a cut: nothing to keep.
                let _ = std::fs::remove_file(path);
                let _ = std::fs::remove_file(index::path_of(path));
                continue;
            }
            report.segments += 1;
            report.frames += summary.frames as usize;
            report.bytes += summary.seg_len;
            let id = store.next_id;
            store.next_id += 1;
            if let Some(entries) = entries {
                store.cache.put(id, Arc::new(entries));
            }
            store.segs.push(Seg {
                file: Arc::new(SegFile {
                    id,
                    dir: Arc::clone(&store.dir),
                    name,
                }),
                size: summary.size,
                bytes: summary.seg_len,
                summary: Some(summary),
                live: None,
                open: false,
            });
        }
        store.sort();
        // Rewritten (compacted) when it missed segments, held deleted ones, or was damaged.
        // (The newest segment's record is read past: that segment is always verified.)
        if rewrite || records > report.catalogued + 1 {
            let written = index::write_catalogue(
                dir,
                store
                    .segs
                    .iter()
                    .filter_map(|s| Some((&*s.file.name, s.summary.as_deref()?))),
            );
            if let Err(e) = written {
                report
                    .skipped
                    .push(format!("{}: {e}", dir.join(index::CATALOGUE).display()));
            }
        }
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
            file: Arc::new(SegFile::new(id, &path, &self.dir)),
            size,
            summary: None,
            live: Some(Arc::new(Vec::new())),
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
            let Some(live) = seg.live.as_mut() else {
                return;
            };
            let first = live.is_empty();
            Arc::make_mut(live).push(entry);
            seg.bytes = bytes;
            first
        };
        if resort {
            self.sort();
        }
    }

    /// Marks segment `id` closed: its frames go to the cache and its summary stays. An empty
    /// one is dropped from the catalogue. Returns the segment's path, summary and frames, for
    /// the caller to write its index outside the lock.
    pub fn seal(&mut self, id: u64) -> Option<(PathBuf, Summary, Arc<Vec<Entry>>)> {
        let i = self.segs.iter().rposition(|s| s.file.id == id)?;
        let seg = &mut self.segs[i];
        seg.open = false;
        let live = seg.live.take().unwrap_or_default();
        if live.is_empty() {
            let seg = self.segs.remove(i);
            self.garbage.push(seg.file);
            return None;
        }
        let summary = Summary::of(&live, seg.size, seg.bytes);
        seg.summary = Some(Arc::new(summary.clone()));
        let path = seg.file.path();
        self.cache.put(id, Arc::clone(&live));
        Some((path, summary, live))
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
        self.segs.iter().map(Seg::frames).sum()
    }

    /// The cache of loaded frame lists (for the state page and tests).
    pub fn cache(&self) -> &Arc<FrameCache> {
        &self.cache
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
        while let Some(i) = self.oldest_closed_at() {
            let too_big = self.bytes() > max_bytes;
            let too_old =
                max_age.is_some_and(|age| self.segs[i].last().is_some_and(|l| l < now - age));
            if !too_big && !too_old {
                break;
            }
            self.drop_at(i);
            dropped += 1;
        }
        if dropped > 0 {
            self.generation += 1;
        }
        dropped
    }

    /// Where the oldest closed segment is in `segs`.
    fn oldest_closed_at(&self) -> Option<usize> {
        self.segs
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.open)
            .min_by_key(|(_, s)| s.first().unwrap_or(Micros::MIN))
            .map(|(i, _)| i)
    }

    /// Drops segment `i` from the catalogue; its file goes once no reader holds it.
    fn drop_at(&mut self, i: usize) {
        let seg = self.segs.remove(i);
        self.cache.forget(seg.file.id);
        self.garbage.push(seg.file);
    }

    /// First frame time of the oldest closed segment (what a shared limit deletes first).
    pub fn oldest_closed(&self) -> Option<Micros> {
        self.segs
            .iter()
            .filter(|s| !s.open)
            .filter_map(Seg::first)
            .min()
    }

    /// Drops the oldest closed segment (its file goes once no reader holds it); false when
    /// there is none.
    pub fn drop_oldest(&mut self) -> bool {
        let Some(i) = self.oldest_closed_at() else {
            return false;
        };
        self.drop_at(i);
        self.generation += 1;
        true
    }

    /// Deletes the files of dropped segments that no reader holds any more; returns errors.
    pub fn collect_garbage(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        self.garbage.retain(|f| {
            if Arc::strong_count(f) > 1 {
                return true;
            }
            // The index first: an index without its segment is cleaned up at startup anyway,
            // a segment without its index is re-indexed.
            let path = f.path();
            let _ = std::fs::remove_file(index::path_of(&path));
            match std::fs::remove_file(&path) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    errors.push(format!("cannot delete {}: {e}", path.display()));
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
            cache: Arc::clone(&self.cache),
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

    /// [`Snapshot::batch`] of the whole catalogue (tests; servers use a snapshot, off the lock).
    pub fn batch(&self, from: Micros, to: Micros, max: usize) -> Selection {
        self.snapshot(from, to).batch(from, to, max)
    }

    /// [`Snapshot::nearest`] of the whole catalogue.
    pub fn nearest(&self, at: Micros, limit: Micros) -> Option<(Arc<SegFile>, Entry)> {
        self.snapshot(at - limit, at + limit).nearest(at, limit)
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
    cache: Arc<FrameCache>,
}

/// Adds a stretch of frames (`first..=last`, no gap longer than `gap` inside) to `spans`:
/// extends the last span when it follows within `gap`, ignores frames at or before its end
/// (segments overlap after the clock stepped back), starts a span otherwise. `Err` when that
/// would be more than `max` spans.
fn add_to_spans(
    spans: &mut Vec<Span>,
    (first, last, frames, bytes): (Micros, Micros, u64, u64),
    gap: Micros,
    max: usize,
) -> Result<(), ()> {
    match spans.last_mut() {
        Some(s) if first > s.end_us && first - s.end_us <= gap => {
            s.end_us = last;
            s.frames += frames;
            s.bytes += bytes;
        }
        Some(s) if first <= s.end_us => {}
        _ => {
            if spans.len() == max {
                return Err(());
            }
            spans.push(Span {
                start: String::new(),
                end: String::new(),
                start_us: first,
                end_us: last,
                frames,
                bytes,
            });
        }
    }
    Ok(())
}

impl Snapshot {
    /// Segments with frames in `from..=to`, oldest first.
    fn overlapping(&self, from: Micros, to: Micros) -> impl Iterator<Item = &Seg> {
        self.segs.iter().filter(move |s| overlaps(s, from, to))
    }

    /// The recorded stretches in `from..=to`: a gap longer than `gap` (at least
    /// [`index::RUN_GAP`]) between two frames starts a new span. At most `max` spans. Segments
    /// wholly inside the range are counted from their summaries' runs; only the (at most two)
    /// segments cut by the range's ends have their frames loaded.
    pub fn spans(&self, from: Micros, to: Micros, gap: Micros, max: usize) -> (Vec<Span>, bool) {
        let gap = gap.max(index::RUN_GAP);
        let mut out: Vec<Span> = Vec::new();
        let mut truncated = false;
        'segs: for seg in self.overlapping(from, to) {
            let inside =
                seg.first().is_some_and(|f| f >= from) && seg.last().is_some_and(|l| l <= to);
            let runs = seg
                .summary
                .as_ref()
                .filter(|s| s.exact && inside && !seg.open)
                .map(|s| s.runs())
                .filter(|runs| {
                    runs.first()
                        .is_some_and(|r| out.last().is_none_or(|s| r.first > s.end_us))
                });
            if let Some(runs) = runs {
                for r in runs {
                    let piece = (r.first, r.last, u64::from(r.frames), r.bytes);
                    if add_to_spans(&mut out, piece, gap, max).is_err() {
                        truncated = true;
                        break 'segs;
                    }
                }
                continue;
            }
            let entries = self.cache.load(seg);
            let lo = entries.partition_point(|e| e.t < from);
            for e in entries[lo..].iter().take_while(|e| e.t <= to) {
                if add_to_spans(&mut out, (e.t, e.t, 1, u64::from(e.len)), gap, max).is_err() {
                    truncated = true;
                    break 'segs;
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
        self.pick(from, to, every, max, false)
    }

    /// The first `max` frames in `from..=to` (a replay's next batch).
    pub fn batch(&self, from: Micros, to: Micros, max: usize) -> Selection {
        self.pick(from, to, None, max, true).unwrap_or_default()
    }

    fn pick(
        &self,
        from: Micros,
        to: Micros,
        every: Option<Micros>,
        max: usize,
        first_only: bool,
    ) -> Result<Selection, usize> {
        let mut sel = Selection::default();
        let mut next_keep = from;
        let mut last_t = Micros::MIN;
        for seg in self.overlapping(from, to) {
            let entries = self.cache.load(seg);
            let mut i = entries.partition_point(|e| e.t < from);
            let mut file_index = None;
            while let Some(e) = entries.get(i).filter(|e| e.t <= to) {
                i += 1;
                // Segments may overlap after the clock stepped back: keep time increasing.
                if e.t <= last_t {
                    continue;
                }
                if let Some(every) = every.filter(|&s| s > 0) {
                    if e.t < next_keep {
                        // Jump to the next kept time instead of stepping frame by frame.
                        i += entries[i..].partition_point(|x| x.t < next_keep);
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

    /// The frame nearest `at`, if one is within `limit` (two binary searches per segment).
    pub fn nearest(&self, at: Micros, limit: Micros) -> Option<(Arc<SegFile>, Entry)> {
        let mut best: Option<(Micros, &Seg, Entry)> = None;
        for seg in self.overlapping(at - limit, at + limit) {
            let entries = self.cache.load(seg);
            let i = entries.partition_point(|e| e.t < at);
            for e in [i.checked_sub(1), Some(i)]
                .into_iter()
                .flatten()
                .filter_map(|j| entries.get(j))
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

    /// Everything a query can ask of a catalogue, for comparing two of them.
    fn answers(store: &Store) -> String {
        let all = store
            .select(0, i64::MAX / 2, None, 100_000)
            .expect("select");
        let frames: Vec<(Micros, u32, u32)> =
            all.frames.iter().map(|f| (f.t, f.off, f.len)).collect();
        let spans: Vec<(Micros, Micros, u64, u64)> = store
            .spans(0, i64::MAX / 2, 2_000_000, 100)
            .0
            .iter()
            .map(|s| (s.start_us, s.end_us, s.frames, s.bytes))
            .collect();
        let part = store.spans(2_000_000, 5_000_000, 2_000_000, 100).0;
        let near = store.nearest(3_960_000, 1_000_000).map(|(_, e)| e);
        let batch = store.batch(4_050_000, i64::MAX / 2, 3).frames.len();
        format!(
            "{frames:?} {spans:?} {:?} {near:?} {batch} {} {}",
            part.iter()
                .map(|s| (s.start_us, s.end_us, s.frames))
                .collect::<Vec<_>>(),
            store.frames(),
            store.bytes()
        )
    }

    #[test]
    fn indexes_missing_stale_or_corrupt_give_the_same_catalogue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalogue = dir.path().join(index::CATALOGUE);
        let (a, _) = record(dir.path(), 1_000_000, 30, 100_000);
        let (b, b_len) = record(dir.path(), 4_000_000, 30, 100_000);
        record(dir.path(), 107_000_000, 10, 100_000);
        // No index yet (segments written by hand): the first start builds them all.
        let (store, report) = Store::open(dir.path()).expect("open");
        assert_eq!((report.indexed, report.catalogued), (3, 0));
        let truth = answers(&store);
        assert!(truth.contains("(1000000, 6900000, 60"), "{truth}");
        drop(store);
        // Catalogued: no index is read, only the newest segment.
        let (store, report) = Store::open(dir.path()).expect("open");
        assert_eq!((report.indexed, report.catalogued), (1, 2));
        assert_eq!(
            store.cache().usage().0,
            10,
            "only the newest segment's frames are loaded"
        );
        assert_eq!(answers(&store), truth);
        drop(store);
        // The catalogue missing, or damaged: the indexes are read, and it is written again.
        std::fs::remove_file(&catalogue).expect("rm");
        let (store, report) = Store::open(dir.path()).expect("open");
        assert_eq!((report.indexed, report.catalogued), (1, 0));
        assert_eq!(answers(&store), truth);
        drop(store);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&catalogue)
            .expect("rewritten")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o137,
            0,
            "catalogue mode {mode:o}: as private as the segments"
        );
        let mut bytes = std::fs::read(&catalogue).expect("rewritten");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x20;
        std::fs::write(&catalogue, &bytes).expect("write");
        let (store, report) = Store::open(dir.path()).expect("open");
        assert!(report.catalogued < 2, "a damaged record was used");
        assert_eq!(answers(&store), truth);
        drop(store);
        assert_eq!(
            Store::open(dir.path()).expect("open").1.catalogued,
            2,
            "repaired"
        );
        // Without the catalogue, indexes missing, stale (made for another length) or corrupt
        // (a flipped bit in its frames, found when they are loaded).
        std::fs::remove_file(&catalogue).expect("rm");
        std::fs::remove_file(index::path_of(&a)).expect("rm");
        let (summary, entries) = index::read(&b, b_len).expect("b's index");
        let mut stale = summary.clone();
        stale.seg_len = b_len - 1;
        index::write(&b, &stale, &entries).expect("stale index");
        let (store, report) = Store::open(dir.path()).expect("open");
        assert_eq!(report.indexed, 3, "missing, stale and newest");
        assert_eq!(answers(&store), truth);
        drop(store);
        let mut bytes = std::fs::read(index::path_of(&b)).expect("read");
        let n = bytes.len();
        bytes[n - 10] ^= 0x04;
        std::fs::write(index::path_of(&b), &bytes).expect("write");
        let (store, report) = Store::open(dir.path()).expect("open");
        assert_eq!(
            report.indexed, 1,
            "the summary is known; the frames are checked on load"
        );
        assert_eq!(answers(&store), truth);
        assert_eq!(
            index::read(&b, b_len),
            Some((summary, entries)),
            "rebuilt on load"
        );
        // An index whose segment is gone is removed at startup, and the catalogue forgets it.
        drop(store);
        std::fs::remove_file(&a).expect("rm");
        let (store, _) = Store::open(dir.path()).expect("open");
        assert!(!index::path_of(&a).exists());
        assert_eq!(store.segments(), 2);
        drop(store);
        assert_eq!(Store::open(dir.path()).expect("open").1.catalogued, 1);
    }

    #[test]
    fn loaded_frame_lists_stay_within_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..20 {
            record(dir.path(), 1_000_000 + i * 10_000_000, 50, 100_000);
        }
        let (mut store, _) = Store::open(dir.path()).expect("open");
        store.cache = Arc::new(FrameCache {
            cap: 120,
            ..FrameCache::default()
        });
        // Eight readers of different stretches at once, as eight exports would.
        std::thread::scope(|s| {
            for r in 0..8 {
                let snap = store.snapshot(0, i64::MAX / 2);
                s.spawn(move || {
                    for k in 0..20 {
                        let from = 1_000_000 + ((r * 7 + k) % 20) * 10_000_000;
                        let sel = snap
                            .select(from, from + 4_900_000, None, 100)
                            .expect("select");
                        assert_eq!(sel.frames.len(), 50);
                        assert!(snap.cache.usage().0 <= 120, "{:?}", snap.cache.usage());
                    }
                });
            }
        });
        let (frames, loads) = store.cache().usage();
        assert!(
            frames <= 120 && loads >= 20,
            "{frames} frames cached, {loads} loads"
        );
    }

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
        assert!(file.path().to_string_lossy().contains("19700101T000004"));
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
            held.files[0].path().exists(),
            "deleted while a reader held it"
        );
        drop((held, sel, lapse));
        store.collect_garbage();
        let names = |ext: &str| {
            std::fs::read_dir(dir.path())
                .expect("ls")
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == ext))
                })
                .count()
        };
        assert_eq!(
            (names("seg"), names("idx")),
            (2, 2),
            "a segment and its index go together"
        );
        // Retention by age.
        assert_eq!(store.retain(u64::MAX, Some(10_000_000), 108_000_000), 1);
        store.collect_garbage();
        assert_eq!(store.range(), Some((107_000_000, 107_900_000)));
        assert!(third.exists());
    }
}
