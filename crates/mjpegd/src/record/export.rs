//! Exports computed, not stored: a file laid out from the catalogue before its first byte.
//!
//! An export is a header (generated) followed by one *item* per frame: a generated prefix
//! (Matroska cluster and block headers, or multipart part headers), the JPEG as it is in its
//! segment file, and a generated suffix. The layout pass measures every item once and keeps a
//! byte offset every [`CHECKPOINT`] items, so the total length (`Content-Length`) is known up
//! front and any byte range is found by a binary search plus a short walk. Bytes are then
//! produced in chunks of at most [`CHUNK`] read straight from the segment files: memory per
//! export is the frame list (24 bytes a frame) whatever the length of the file.
//!
//! Matroska rather than AVI: it has no 1-2 GB limits (AVI needs OpenDML indexes past them),
//! its header depends only on the frame sizes (known from the catalogue), and every player
//! reads `V_MJPEG`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::store::Selection;
use super::time::{self, Micros};
use crate::mjpeg::write::{STREAM_PREAMBLE, part_header};

/// Largest chunk of an export produced at once.
pub const CHUNK: usize = 256 * 1024;
/// An item offset is remembered every this many frames.
pub const CHECKPOINT: usize = 64;
/// Frame rate of timelapse exports (`every=`), the OctoPrint convention.
pub const TIMELAPSE_FPS: u64 = 30;
/// A Matroska cluster holds at most this many frames...
const CLUSTER_FRAMES: usize = 256;
/// ...and spans at most this many milliseconds (block times are 16-bit offsets from it).
const CLUSTER_MS: u64 = 30_000;
/// Cluster header: ID (4), size (8), Timestamp element (1 + 1 + 8).
const CLUSTER_HEAD: u64 = 22;
/// SimpleBlock header: ID (1), size (8), track (1), time (2), flags (1).
const BLOCK_HEAD: u64 = 13;
/// What ends the last part of a multipart export: the closing delimiter.
const MJPEG_END: &[u8] = b"\r\n--frame--\r\n";
/// What follows every other part.
const MJPEG_NEXT: &[u8] = crate::mjpeg::write::PART_TRAILER;

/// The container of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Matroska with a `V_MJPEG` track (`.mkv`).
    Mkv,
    /// Raw `multipart/x-mixed-replace`, the live wire (`.mjpeg`).
    Mjpeg,
}

impl Format {
    /// File name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Mkv => "mkv",
            Format::Mjpeg => "mjpeg",
        }
    }

    /// `Content-Type` of the download.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Mkv => "video/x-matroska",
            Format::Mjpeg => crate::mjpeg::STREAM_CONTENT_TYPE,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Cluster {
    first: usize,
    ms: u64,
}

/// A laid-out export.
#[derive(Debug)]
pub struct Export {
    format: Format,
    sel: Selection,
    timelapse: bool,
    /// Each frame's presentation time in ms, strictly increasing (see [`Export::new`]).
    times: Vec<u64>,
    head: Vec<u8>,
    clusters: Vec<Cluster>,
    checkpoints: Vec<u64>,
    total: u64,
    etag: String,
}

/// Byte range of `len` bytes.
#[derive(Debug, Clone, Copy)]
enum Region {
    Generated,
    Jpeg,
    Suffix,
}

impl Export {
    /// Lays out `sel` (non-empty) as `format`. `timelapse` plays the frames at
    /// [`TIMELAPSE_FPS`] instead of at their recorded times.
    pub fn new(format: Format, sel: Selection, timelapse: bool) -> Export {
        // Matroska times are whole milliseconds; two recorded frames less than 1 ms apart (a
        // source delivering a burst after a stall) would share one, and players and ffmpeg
        // refuse a timestamp that does not increase. Each frame gets at least 1 ms after the
        // one before it.
        let mut times = Vec::with_capacity(sel.frames.len());
        let t0 = sel.frames.first().map_or(0, |f| f.t);
        for (i, f) in sel.frames.iter().enumerate() {
            let raw = if timelapse {
                (i as u64 * 1000 + TIMELAPSE_FPS / 2) / TIMELAPSE_FPS
            } else {
                ((f.t - t0).max(0) / 1000) as u64
            };
            let prev: Option<&u64> = times.last();
            times.push(prev.map_or(raw, |&p| raw.max(p + 1)));
        }
        let mut e = Export {
            format,
            sel,
            timelapse,
            times,
            head: Vec::new(),
            clusters: Vec::new(),
            checkpoints: Vec::new(),
            total: 0,
            etag: String::new(),
        };
        if format == Format::Mkv {
            e.plan_clusters();
        }
        let n = e.sel.frames.len();
        // Item sizes first (the Matroska header needs the segment size), then the header.
        let mut body = 0u64;
        let mut offsets = Vec::with_capacity(n.div_ceil(CHECKPOINT));
        // Where each cluster starts in the body, for the Cues.
        let mut cluster_at = Vec::with_capacity(e.clusters.len());
        let mut next_cluster = 0;
        for i in 0..n {
            if i % CHECKPOINT == 0 {
                offsets.push(body);
            }
            if e.clusters.get(next_cluster).is_some_and(|c| c.first == i) {
                cluster_at.push(body);
                next_cluster += 1;
            }
            body += e.item_len(i);
        }
        e.head = match format {
            Format::Mkv => e.mkv_head(body, &cluster_at),
            Format::Mjpeg => Vec::new(),
        };
        let head = e.head.len() as u64;
        e.checkpoints = offsets.into_iter().map(|o| o + head).collect();
        e.total = head + body;
        e.etag = e.compute_etag();
        e
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether the export is empty (never: selections are checked before).
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Frames in the export.
    pub fn frames(&self) -> usize {
        self.sel.frames.len()
    }

    /// Strong ETag, quoted: a hash of the format and of every frame's place on disk, so it
    /// changes when retention removes frames and stays the same across restarts.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Playing time.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.duration_ms())
    }

    /// First and last frame capture times.
    pub fn time_range(&self) -> (Micros, Micros) {
        let f = &self.sel.frames;
        (f.first().map_or(0, |x| x.t), f.last().map_or(0, |x| x.t))
    }

    fn compute_etag(&self) -> String {
        let mut h = Sha256::new();
        h.update([self.format as u8, u8::from(self.timelapse)]);
        for f in &self.sel.files {
            h.update(f.path().as_os_str().as_encoded_bytes());
            h.update([0]);
        }
        for f in &self.sel.frames {
            h.update(f.t.to_le_bytes());
            h.update(f.off.to_le_bytes());
            h.update(f.len.to_le_bytes());
            h.update(f.file.to_le_bytes());
        }
        let d = h.finalize();
        let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    }

    /// Presentation time of frame `i` in milliseconds from the start.
    fn ms(&self, i: usize) -> u64 {
        self.times[i]
    }

    fn duration_ms(&self) -> u64 {
        let n = self.sel.frames.len();
        if n == 0 {
            return 0;
        }
        // The last frame shows for one frame interval (that of the frames before it).
        let step = if self.timelapse || n < 2 {
            1000 / TIMELAPSE_FPS
        } else {
            (self.ms(n - 1) / (n as u64 - 1)).max(1)
        };
        self.ms(n - 1) + step
    }

    fn plan_clusters(&mut self) {
        let n = self.sel.frames.len();
        let mut i = 0;
        while i < n {
            let ms = self.ms(i);
            self.clusters.push(Cluster { first: i, ms });
            let mut j = i + 1;
            while j < n && j - i < CLUSTER_FRAMES && self.ms(j) - ms <= CLUSTER_MS {
                j += 1;
            }
            i = j;
        }
    }

    /// Index of the cluster holding frame `i`.
    fn cluster_of(&self, i: usize) -> usize {
        self.clusters.partition_point(|c| c.first <= i) - 1
    }

    fn cluster_end(&self, c: usize) -> usize {
        self.clusters
            .get(c + 1)
            .map_or(self.sel.frames.len(), |n| n.first)
    }

    fn mjpeg_header(&self, i: usize) -> String {
        let f = &self.sel.frames[i];
        let t = UNIX_EPOCH + Duration::from_micros(f.t.max(0) as u64);
        part_header(f.len as usize, t)
    }

    fn prefix(&self, i: usize) -> Vec<u8> {
        match self.format {
            Format::Mjpeg => {
                let mut v = Vec::with_capacity(100);
                if i == 0 {
                    v.extend_from_slice(STREAM_PREAMBLE);
                }
                v.extend_from_slice(self.mjpeg_header(i).as_bytes());
                v
            }
            Format::Mkv => {
                let mut v = Vec::with_capacity((CLUSTER_HEAD + BLOCK_HEAD) as usize);
                let c = self.cluster_of(i);
                let cluster = self.clusters[c];
                if cluster.first == i {
                    let payload: u64 = 10
                        + (i..self.cluster_end(c))
                            .map(|j| BLOCK_HEAD + u64::from(self.sel.frames[j].len))
                            .sum::<u64>();
                    v.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75]);
                    v.extend_from_slice(&vint8(payload));
                    v.extend_from_slice(&[0xE7, 0x88]);
                    v.extend_from_slice(&cluster.ms.to_be_bytes());
                }
                let rel = (self.ms(i) - cluster.ms) as i16;
                v.push(0xA3);
                v.extend_from_slice(&vint8(4 + u64::from(self.sel.frames[i].len)));
                v.push(0x81);
                v.extend_from_slice(&rel.to_be_bytes());
                // Keyframe: every MJPEG frame is one.
                v.push(0x80);
                v
            }
        }
    }

    fn prefix_len(&self, i: usize) -> u64 {
        match self.format {
            Format::Mjpeg => self.prefix(i).len() as u64,
            Format::Mkv => {
                BLOCK_HEAD
                    + if self.clusters[self.cluster_of(i)].first == i {
                        CLUSTER_HEAD
                    } else {
                        0
                    }
            }
        }
    }

    fn suffix(&self, i: usize) -> &'static [u8] {
        match self.format {
            Format::Mkv => b"",
            Format::Mjpeg if i + 1 == self.sel.frames.len() => MJPEG_END,
            Format::Mjpeg => MJPEG_NEXT,
        }
    }

    fn item_len(&self, i: usize) -> u64 {
        self.prefix_len(i) + u64::from(self.sel.frames[i].len) + self.suffix(i).len() as u64
    }

    /// The Matroska header: EBML, the Segment's head, Info, Tracks and Cues. The Cues come
    /// before the clusters (players seek at once, without scanning the file), which works
    /// because every position in them is written as 8 bytes: their size depends only on the
    /// number of clusters, so the positions can be computed before they are written.
    fn mkv_head(&self, body: u64, cluster_at: &[u64]) -> Vec<u8> {
        let mut ebml = Vec::new();
        uint_el(&mut ebml, &[0x42, 0x86], 1); // EBMLVersion
        uint_el(&mut ebml, &[0x42, 0xF7], 1); // EBMLReadVersion
        uint_el(&mut ebml, &[0x42, 0xF2], 4); // EBMLMaxIDLength
        uint_el(&mut ebml, &[0x42, 0xF3], 8); // EBMLMaxSizeLength
        el(&mut ebml, &[0x42, 0x82], b"matroska"); // DocType
        uint_el(&mut ebml, &[0x42, 0x87], 4); // DocTypeVersion
        uint_el(&mut ebml, &[0x42, 0x85], 2); // DocTypeReadVersion
        let mut info = Vec::new();
        uint_el(&mut info, &[0x2A, 0xD7, 0xB1], 1_000_000); // TimestampScale: 1 ms
        el(&mut info, &[0x4D, 0x80], b"mjpegd"); // MuxingApp
        el(
            &mut info,
            &[0x57, 0x41],
            concat!("mjpegd ", env!("CARGO_PKG_VERSION")).as_bytes(),
        ); // WritingApp
        el(
            &mut info,
            &[0x44, 0x89],
            &(self.duration_ms() as f64).to_be_bytes(),
        ); // Duration
        // DateUTC: the first frame's capture time, ns since 2001-01-01.
        let date_ns = (self.time_range().0 - 978_307_200_000_000).saturating_mul(1000);
        el(&mut info, &[0x44, 0x61], &date_ns.to_be_bytes());
        let title = format!("recorded {}", time::rfc3339(self.time_range().0));
        el(&mut info, &[0x7B, 0xA9], title.as_bytes()); // Title
        let mut video = Vec::new();
        uint_el(&mut video, &[0xB0], u64::from(self.sel.size.0.max(1))); // PixelWidth
        uint_el(&mut video, &[0xBA], u64::from(self.sel.size.1.max(1))); // PixelHeight
        let mut track = Vec::new();
        uint_el(&mut track, &[0xD7], 1); // TrackNumber
        uint_el(&mut track, &[0x73, 0xC5], 1); // TrackUID
        uint_el(&mut track, &[0x83], 1); // TrackType: video
        uint_el(&mut track, &[0x9C], 0); // FlagLacing
        el(&mut track, &[0x86], b"V_MJPEG"); // CodecID
        if self.timelapse {
            uint_el(
                &mut track,
                &[0x23, 0xE3, 0x83],
                1_000_000_000 / TIMELAPSE_FPS,
            ); // DefaultDuration
        }
        el(&mut track, &[0xE0], &video);
        let mut tracks = Vec::new();
        el(&mut tracks, &[0xAE], &track);
        let mut segment = Vec::new();
        el(&mut segment, &[0x15, 0x49, 0xA9, 0x66], &info);
        el(&mut segment, &[0x16, 0x54, 0xAE, 0x6B], &tracks);
        // Cue points, one per cluster: its time, and its position from the Segment's data.
        let cues_len = |positions: &[u64]| {
            let mut v = Vec::new();
            cues(&mut v, &self.clusters, positions);
            v.len() as u64
        };
        let before_clusters = segment.len() as u64 + cues_len(cluster_at);
        let positions: Vec<u64> = cluster_at.iter().map(|b| before_clusters + b).collect();
        cues(&mut segment, &self.clusters, &positions);
        let mut out = Vec::new();
        el(&mut out, &[0x1A, 0x45, 0xDF, 0xA3], &ebml);
        out.extend_from_slice(&[0x18, 0x53, 0x80, 0x67]);
        out.extend_from_slice(&vint8(segment.len() as u64 + body));
        out.extend_from_slice(&segment);
        out
    }

    /// The first item at or after byte `pos` of the body, and where it starts.
    fn locate(&self, pos: u64) -> (usize, u64) {
        let k = self
            .checkpoints
            .partition_point(|&c| c <= pos)
            .saturating_sub(1);
        let mut item = k * CHECKPOINT;
        let mut start = self
            .checkpoints
            .get(k)
            .copied()
            .unwrap_or(self.head.len() as u64);
        while item < self.sel.frames.len() {
            let len = self.item_len(item);
            if start + len > pos {
                break;
            }
            start += len;
            item += 1;
        }
        (item, start)
    }

    /// Produces bytes `pos..pos+want` (clipped to the end and to [`CHUNK`]), reading JPEGs from
    /// their segment files through `files` (one open file kept between calls). Blocking.
    pub fn read(&self, pos: u64, want: u64, files: &mut OpenFile) -> std::io::Result<Vec<u8>> {
        let end = (pos + want.min(CHUNK as u64)).min(self.total);
        let mut out = Vec::with_capacity(end.saturating_sub(pos) as usize);
        let mut cur = pos;
        let head = self.head.len() as u64;
        if cur < head {
            let stop = end.min(head);
            out.extend_from_slice(&self.head[cur as usize..stop as usize]);
            cur = stop;
        }
        if cur >= end {
            return Ok(out);
        }
        let (mut item, mut start) = self.locate(cur);
        while cur < end && item < self.sel.frames.len() {
            let f = self.sel.frames[item];
            let prefix = self.prefix(item);
            let suffix = self.suffix(item);
            let mut region_start = start;
            for (region, len) in [
                (Region::Generated, prefix.len() as u64),
                (Region::Jpeg, u64::from(f.len)),
                (Region::Suffix, suffix.len() as u64),
            ] {
                let region_end = region_start + len;
                if cur < region_end && cur < end && cur >= region_start {
                    let a = cur - region_start;
                    let b = end.min(region_end) - region_start;
                    match region {
                        Region::Generated => {
                            out.extend_from_slice(&prefix[a as usize..b as usize]);
                        }
                        Region::Suffix => out.extend_from_slice(&suffix[a as usize..b as usize]),
                        Region::Jpeg => {
                            let file = files.get(&self.sel, f.file)?;
                            let at = out.len();
                            out.resize(at + (b - a) as usize, 0);
                            file.read_exact_at(&mut out[at..], u64::from(f.off) + a)?;
                            // A whole frame in this chunk is checked against its record's
                            // CRC: a damaged one ends the export rather than being served.
                            // (A frame split across chunks, by a Range or the chunk size, is not.)
                            if a == 0 && b == u64::from(f.len) {
                                super::segment::verify_record(file, f.off, &out[at..])?;
                            }
                        }
                    }
                    cur = region_start + b;
                }
                region_start = region_end;
            }
            start = region_start;
            item += 1;
        }
        Ok(out)
    }
}

/// The segment file an export is reading, kept open between chunks.
#[derive(Debug, Default)]
pub struct OpenFile(Option<(u32, File)>);

impl OpenFile {
    fn get(&mut self, sel: &Selection, index: u32) -> std::io::Result<&File> {
        if self.0.as_ref().is_none_or(|(i, _)| *i != index) {
            let seg = sel.files.get(index as usize).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "segment index out of range")
            })?;
            let path = seg.path();
            let f = super::segment::open_segment(&path, false)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            self.0 = Some((index, f));
        }
        match &self.0 {
            Some((_, f)) => Ok(f),
            None => Err(std::io::Error::other("no file")),
        }
    }
}

/// An 8-byte EBML size (`0x01` marker + 56 bits): every size can be written before its
/// content is, which keeps the layout a pure function of the frame list.
fn vint8(v: u64) -> [u8; 8] {
    let mut b = v.to_be_bytes();
    b[0] = 0x01;
    b
}

fn el(out: &mut Vec<u8>, id: &[u8], body: &[u8]) {
    out.extend_from_slice(id);
    if body.len() < 127 {
        out.push(0x80 | body.len() as u8);
    } else {
        out.extend_from_slice(&vint8(body.len() as u64));
    }
    out.extend_from_slice(body);
}

/// Appends the Cues element: for cluster `i`, a CuePoint of its time and `positions[i]`. Every
/// number is 8 bytes, so the length does not depend on the values.
fn cues(out: &mut Vec<u8>, clusters: &[Cluster], positions: &[u64]) {
    let mut body = Vec::with_capacity(clusters.len() * 27);
    for (c, pos) in clusters.iter().zip(positions) {
        let mut track_pos = Vec::with_capacity(13);
        uint_el(&mut track_pos, &[0xF7], 1); // CueTrack
        el(&mut track_pos, &[0xF1], &pos.to_be_bytes()); // CueClusterPosition
        let mut point = Vec::with_capacity(25);
        el(&mut point, &[0xB3], &c.ms.to_be_bytes()); // CueTime
        el(&mut point, &[0xB7], &track_pos); // CueTrackPositions
        el(&mut body, &[0xBB], &point); // CuePoint
    }
    el(out, &[0x1C, 0x53, 0xBB, 0x6B], &body);
}

fn uint_el(out: &mut Vec<u8>, id: &[u8], v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    el(out, id, &bytes[skip..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::segment::SegmentWriter;
    use crate::record::store::Store;

    fn export(format: Format, timelapse: bool) -> (tempfile::TempDir, Export, Vec<u8>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SegmentWriter::create(dir.path(), 1_000_000, 64, 48).expect("create");
        for i in 0..300u32 {
            let mut jpeg = vec![(i % 251) as u8; 100 + (i as usize * 7) % 900];
            jpeg[0] = 0xFF;
            jpeg[1] = 0xD8;
            w.append(1_000_000 + i64::from(i) * 150_000, u64::from(i), &jpeg)
                .expect("append");
        }
        w.finish().expect("finish");
        let (store, _) = Store::open(dir.path()).expect("open");
        let sel = store.select(0, i64::MAX / 2, None, 10_000).expect("select");
        let e = Export::new(format, sel, timelapse);
        let mut files = OpenFile::default();
        let mut whole = Vec::new();
        while (whole.len() as u64) < e.len() {
            let chunk = e
                .read(whole.len() as u64, 1 << 20, &mut files)
                .expect("read");
            assert!(!chunk.is_empty());
            whole.extend_from_slice(&chunk);
        }
        (dir, e, whole)
    }

    /// Frames recorded less than a millisecond apart still get increasing Matroska times
    /// (ffmpeg refused such an export: "non monotonically increasing dts").
    #[test]
    fn frames_within_one_millisecond_get_increasing_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SegmentWriter::create(dir.path(), 1_000_000, 64, 48).expect("create");
        for (i, t) in [0i64, 300, 600, 900, 40_000].into_iter().enumerate() {
            let jpeg = [0xFF, 0xD8, i as u8, 0xFF, 0xD9];
            w.append(1_000_000 + t, i as u64, &jpeg).expect("append");
        }
        w.finish().expect("finish");
        let (store, _) = Store::open(dir.path()).expect("open");
        let sel = store.select(0, i64::MAX / 2, None, 10).expect("select");
        let e = Export::new(Format::Mkv, sel, false);
        let times: Vec<u64> = (0..5).map(|i| e.ms(i)).collect();
        assert_eq!(times, [0, 1, 2, 3, 40]);
    }

    #[test]
    fn any_range_reads_the_same_bytes_as_the_whole() {
        for format in [Format::Mkv, Format::Mjpeg] {
            let (_dir, e, whole) = export(format, false);
            assert_eq!(whole.len() as u64, e.len());
            let mut files = OpenFile::default();
            let mut pos = 0u64;
            let mut step = 1u64;
            while pos < e.len() {
                let got = e.read(pos, step, &mut files).expect("read");
                let end = (pos + step).min(e.len()) as usize;
                assert_eq!(got, whole[pos as usize..end], "{format:?} at {pos}+{step}");
                pos += step;
                step = step * 3 % 7919 + 1;
            }
        }
    }

    #[test]
    fn mjpeg_export_is_the_live_wire_with_a_closing_boundary() {
        let (_dir, e, whole) = export(Format::Mjpeg, false);
        assert!(whole.starts_with(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 100\r\nX-Timestamp: 1.000000\r\n\r\n\xff\xd8"));
        assert!(whole.ends_with(b"\r\n--frame--\r\n"));
        assert_eq!(e.frames(), 300);
        let parts = whole.windows(9).filter(|w| w == b"--frame\r\n").count();
        assert_eq!(parts, 300);
    }

    #[test]
    fn matroska_sizes_are_consistent() {
        let (_dir, e, whole) = export(Format::Mkv, false);
        assert_eq!(&whole[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
        // The Segment's declared size runs exactly to the end of the file.
        let seg = whole
            .windows(4)
            .position(|w| w == [0x18, 0x53, 0x80, 0x67])
            .expect("segment");
        let size =
            u64::from_be_bytes(whole[seg + 4..seg + 12].try_into().expect("8")) & ((1 << 56) - 1);
        assert_eq!(seg as u64 + 12 + size, e.len());
        // 300 frames at 150 ms: clusters every 30 s (201 frames) → 2 clusters.
        let clusters = whole
            .windows(4)
            .filter(|w| w == &[0x1F, 0x43, 0xB6, 0x75])
            .count();
        assert!(clusters >= 2, "{clusters}");
        assert_eq!(e.duration(), Duration::from_millis(299 * 150 + 150));
        let (_d, lapse, _) = export(Format::Mkv, true);
        assert_eq!(lapse.duration(), Duration::from_millis(10_000));
        assert_ne!(lapse.etag(), e.etag());
    }

    /// The Cues, before the clusters: one CuePoint per cluster whose position, counted from the
    /// Segment's data, lands on that cluster's ID, and whose time is that cluster's timestamp.
    #[test]
    fn matroska_cues_point_at_every_cluster() {
        let (_dir, e, whole) = export(Format::Mkv, false);
        let find = |id: &[u8]| whole.windows(id.len()).position(|w| w == id);
        let seg = find(&[0x18, 0x53, 0x80, 0x67]).expect("segment") + 12;
        let cues = find(&[0x1C, 0x53, 0xBB, 0x6B]).expect("cues");
        let first_cluster = find(&[0x1F, 0x43, 0xB6, 0x75]).expect("a cluster");
        assert!(cues < first_cluster, "Cues after the clusters");
        let mut points = 0;
        let mut at = cues;
        while let Some(p) = whole[at..first_cluster]
            .windows(2)
            .position(|w| w == [0xBB, 0x99])
        {
            let point = &whole[at + p + 2..at + p + 2 + 25];
            // CueTime (B3 88 + 8 bytes), CueTrackPositions (B7 8D: F7 81 01, F1 88 + 8 bytes).
            assert_eq!(&point[..2], &[0xB3, 0x88]);
            let time = u64::from_be_bytes(point[2..10].try_into().expect("8"));
            assert_eq!(&point[10..17], &[0xB7, 0x8D, 0xF7, 0x81, 0x01, 0xF1, 0x88]);
            let pos = u64::from_be_bytes(point[17..25].try_into().expect("8")) as usize;
            let cluster = &whole[seg + pos..seg + pos + 22];
            assert_eq!(
                &cluster[..4],
                &[0x1F, 0x43, 0xB6, 0x75],
                "cue {points} misses its cluster"
            );
            // The cluster's Timestamp element (E7 88 + 8 bytes) after its 8-byte size.
            assert_eq!(&cluster[12..14], &[0xE7, 0x88]);
            assert_eq!(
                u64::from_be_bytes(cluster[14..22].try_into().expect("8")),
                time
            );
            points += 1;
            at += p + 27;
        }
        assert_eq!(points, e.clusters.len());
        assert!(points >= 2);
    }
}
