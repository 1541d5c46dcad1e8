//! A small safe API over a V4L2 device node: typed ioctls, mmapped buffers, streaming.
//!
//! Every `unsafe` block of the v4l2 source is in this file. The invariants are kept by
//! ownership: a [`Device`] owns its file descriptor (closed by `File`'s drop), a [`Stream`] owns
//! the device, its mappings (unmapped on drop) and the streaming state (`STREAMOFF` on drop),
//! and buffer memory is only ever seen as a slice while the buffer is dequeued, inside
//! [`Stream::with_newest_frame`], when the driver does not write to it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use super::sys::{self, Pod, Request};

/// An open V4L2 device node.
#[derive(Debug)]
pub(super) struct Device {
    file: File,
    /// The buffer type every format, rate and streaming ioctl names: single-planar capture,
    /// or multi-planar for a node that only speaks that API (see [`Device::capabilities`]).
    buf_type: u32,
}

impl Device {
    /// Opens `path` read-write and non-blocking (so `DQBUF` never blocks: we `poll` first).
    pub(super) fn open(path: &Path) -> io::Result<Device> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        Ok(Device {
            file,
            buf_type: sys::BUF_TYPE_VIDEO_CAPTURE,
        })
    }

    /// The node uses the multi-planar API (after [`Device::capabilities`]).
    pub(super) fn is_mplane(&self) -> bool {
        self.buf_type == sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE
    }

    /// Runs ioctl `req` on `arg`, retrying when interrupted by a signal.
    pub(super) fn ioctl<T: Pod>(&self, req: Request<T>, arg: &mut T) -> io::Result<()> {
        retry_interrupted(|| {
            // SAFETY: `req` was built for exactly `T` (its number encodes `size_of::<T>()`, see
            // `sys::Request`), `T` is plain `#[repr(C)]` data for which any bytes the kernel
            // writes are valid (`sys::Pod`), and `arg` is an exclusive reference that lives for
            // the call. The descriptor is open for as long as `self` lives.
            unsafe {
                libc::ioctl(
                    self.file.as_raw_fd(),
                    req.number as libc::Ioctl,
                    std::ptr::from_mut(&mut *arg),
                )
            }
        })
    }

    /// What the node is: driver, card, bus and the capabilities of this node. Also picks the
    /// API the later ioctls use: single-planar capture when the node offers it, else
    /// multi-planar (SoC capture pipelines and HDMI receivers such as the RK3588's offer only
    /// that, and most of their formats still fit one memory plane).
    pub(super) fn capabilities(&mut self) -> io::Result<Capabilities> {
        let mut cap = sys::Capability::default();
        self.ioctl(sys::VIDIOC_QUERYCAP, &mut cap)?;
        let caps = if cap.capabilities & sys::CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        let caps = Capabilities {
            driver: sys::c_str(&cap.driver),
            card: sys::c_str(&cap.card),
            bus: sys::c_str(&cap.bus_info),
            caps,
        };
        self.buf_type = if caps.is_mplane_capture() {
            sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE
        } else {
            sys::BUF_TYPE_VIDEO_CAPTURE
        };
        Ok(caps)
    }

    /// The capture formats the device offers, in its order (at most [`MAX_ENUM`]).
    pub(super) fn formats(&self) -> io::Result<Vec<FormatDesc>> {
        let mut out = Vec::new();
        for index in 0..MAX_ENUM {
            let mut d = sys::FmtDesc {
                index,
                type_: self.buf_type,
                ..Default::default()
            };
            match self.ioctl(sys::VIDIOC_ENUM_FMT, &mut d) {
                Ok(()) => out.push(FormatDesc {
                    fourcc: d.pixelformat,
                    description: sys::c_str(&d.description),
                    compressed: d.flags & sys::FMT_FLAG_COMPRESSED != 0,
                }),
                // EINVAL marks the end of the list.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The frame sizes offered for `fourcc` (empty when the driver does not say).
    pub(super) fn frame_sizes(&self, fourcc: u32) -> Vec<FrameSizes> {
        let mut out = Vec::new();
        for index in 0..MAX_ENUM {
            let mut s = sys::FrmSizeEnum {
                index,
                pixel_format: fourcc,
                ..Default::default()
            };
            if self.ioctl(sys::VIDIOC_ENUM_FRAMESIZES, &mut s).is_err() {
                break;
            }
            let w = s.stepwise;
            if s.type_ == sys::FRM_TYPE_DISCRETE {
                // The `discrete` member overlays `min_width` and `max_width`.
                out.push(FrameSizes::Discrete(w.min_width, w.max_width));
            } else {
                out.push(FrameSizes::Range {
                    min: (w.min_width, w.min_height),
                    max: (w.max_width, w.max_height),
                    step: (w.step_width, w.step_height),
                    continuous: s.type_ == sys::FRM_TYPE_CONTINUOUS,
                });
                // Stepwise and continuous come alone.
                break;
            }
        }
        out
    }

    /// The frame rates offered for `fourcc` at `width`x`height` (empty when unknown).
    pub(super) fn frame_rates(&self, fourcc: u32, width: u32, height: u32) -> FrameRates {
        let mut discrete = Vec::new();
        for index in 0..MAX_ENUM {
            let mut i = sys::FrmIvalEnum {
                index,
                pixel_format: fourcc,
                width,
                height,
                ..Default::default()
            };
            if self.ioctl(sys::VIDIOC_ENUM_FRAMEINTERVALS, &mut i).is_err() {
                break;
            }
            if i.type_ != sys::FRM_TYPE_DISCRETE {
                // Shortest interval = highest rate.
                return FrameRates::Range {
                    min_fps: fps_of(i.stepwise.max),
                    max_fps: fps_of(i.stepwise.min),
                };
            }
            // The `discrete` member overlays `stepwise.min`.
            discrete.push(fps_of(i.stepwise.min));
        }
        FrameRates::Discrete(discrete)
    }

    /// `VIDIOC_S_FMT`: asks for `pix`, returns what the driver chose and the line length of
    /// each of its memory planes (one on the single-planar API). For the multi-planar API the
    /// answer is told as a single-planar one, with the first plane's line length and size.
    pub(super) fn set_format(&self, pix: sys::PixFormat) -> io::Result<(sys::PixFormat, Vec<u32>)> {
        let mut f = sys::Format {
            type_: self.buf_type,
            ..Default::default()
        };
        if !self.is_mplane() {
            f.fmt.pix = pix;
            self.ioctl(sys::VIDIOC_S_FMT, &mut f)?;
            // SAFETY: for V4L2_BUF_TYPE_VIDEO_CAPTURE the kernel fills the `pix` member; every
            // bit pattern is a valid `PixFormat` (plain u32s).
            let pix = unsafe { f.fmt.pix };
            return Ok((pix, vec![pix.bytesperline]));
        }
        f.fmt.pix_mp = sys::PixFormatMplane {
            width: pix.width,
            height: pix.height,
            pixelformat: pix.pixelformat,
            field: pix.field,
            ..Default::default()
        };
        self.ioctl(sys::VIDIOC_S_FMT, &mut f)?;
        // SAFETY: for V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE the kernel fills the `pix_mp` member;
        // every bit pattern is a valid `PixFormatMplane` (plain integers).
        let mp = unsafe { f.fmt.pix_mp };
        let plane = mp.plane_fmt[0];
        let pix = sys::PixFormat {
            width: mp.width,
            height: mp.height,
            pixelformat: mp.pixelformat,
            field: mp.field,
            bytesperline: plane.bytesperline,
            sizeimage: plane.sizeimage,
            colorspace: mp.colorspace,
            flags: u32::from(mp.flags),
            ycbcr_enc: u32::from(mp.ycbcr_enc),
            quantization: u32::from(mp.quantization),
            xfer_func: u32::from(mp.xfer_func),
            ..Default::default()
        };
        let strides = mp.plane_fmt[..usize::from(mp.num_planes).min(sys::VIDEO_MAX_PLANES)]
            .iter()
            .map(|p| p.bytesperline)
            .collect();
        Ok((pix, strides))
    }

    /// `VIDIOC_G_PARM` for capture: the current frame interval and whether it can be set.
    pub(super) fn capture_parm(&self) -> io::Result<sys::CaptureParm> {
        let mut p = sys::StreamParm {
            type_: self.buf_type,
            ..Default::default()
        };
        self.ioctl(sys::VIDIOC_G_PARM, &mut p)?;
        // SAFETY: for capture buffer types the kernel fills the `capture` member; any bit
        // pattern is a valid `CaptureParm` (plain u32s).
        Ok(unsafe { p.parm.capture })
    }

    /// `VIDIOC_S_PARM` for capture: asks for a frame interval, returns the one the driver chose.
    pub(super) fn set_frame_interval(&self, interval: sys::Fract) -> io::Result<sys::Fract> {
        let mut p = sys::StreamParm {
            type_: self.buf_type,
            ..Default::default()
        };
        p.parm.capture = sys::CaptureParm {
            timeperframe: interval,
            ..Default::default()
        };
        self.ioctl(sys::VIDIOC_S_PARM, &mut p)?;
        // SAFETY: as in `capture_parm`.
        Ok(unsafe { p.parm.capture.timeperframe })
    }

    /// `VIDIOC_QUERY_EXT_CTRL` with `V4L2_CTRL_FLAG_NEXT_CTRL`: the control after `id` (0 for
    /// the first), or `None` at the end of the list. Compound controls (arrays, codec state)
    /// are not asked for: a camera's settings are plain values.
    pub(super) fn next_control(&self, id: u32) -> io::Result<Option<sys::QueryExtCtrl>> {
        let mut q = sys::QueryExtCtrl {
            id: id | sys::CTRL_FLAG_NEXT_CTRL,
            ..Default::default()
        };
        match self.ioctl(sys::VIDIOC_QUERY_EXT_CTRL, &mut q) {
            Ok(()) => Ok(Some(q)),
            // EINVAL marks the end of the list.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `VIDIOC_QUERYMENU`: item `index` of menu control `id`; `None` for the gaps drivers
    /// leave in their menus (EINVAL).
    pub(super) fn menu_item(&self, id: u32, index: u32) -> io::Result<Option<sys::QueryMenu>> {
        let mut m = sys::QueryMenu {
            id,
            index,
            ..Default::default()
        };
        match self.ioctl(sys::VIDIOC_QUERYMENU, &mut m) {
            Ok(()) => Ok(Some(m)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `VIDIOC_G_EXT_CTRLS` (`set` false) or `VIDIOC_S_EXT_CTRLS` (`set` true) on current
    /// values. On failure, the index of the control the driver refused, when it names one.
    pub(super) fn ext_controls(
        &self,
        set: bool,
        controls: &mut [sys::ExtControl],
    ) -> Result<(), (io::Error, Option<usize>)> {
        let count = u32::try_from(controls.len())
            .map_err(|_| (io::Error::from(io::ErrorKind::InvalidInput), None))?;
        let mut arg = sys::ExtControls {
            which: sys::CTRL_WHICH_CUR_VAL,
            count,
            error_idx: 0,
            request_fd: 0,
            reserved: 0,
            controls: controls.as_mut_ptr(),
        };
        let number = if set {
            sys::VIDIOC_S_EXT_CTRLS
        } else {
            sys::VIDIOC_G_EXT_CTRLS
        };
        let fd = self.file.as_raw_fd();
        retry_interrupted(|| {
            // SAFETY: `number` is the ioctl for `struct v4l2_ext_controls`, whose layout
            // `sys::ExtControls` reproduces (sizes checked at compile time). Its `controls`
            // pointer and `count` describe `controls`, an exclusively borrowed slice of packed
            // plain-data structs that outlives the call; the kernel reads and writes at most
            // `count` of them. We never ask for payload (pointer) controls, so the kernel
            // follows no other pointer.
            unsafe { libc::ioctl(fd, number as libc::Ioctl, std::ptr::from_mut(&mut arg)) }
        })
        .map_err(|e| {
            // error_idx == count: the request failed before any control was tried.
            let idx = usize::try_from(arg.error_idx)
                .ok()
                .filter(|&i| i < controls.len());
            (e, idx)
        })
    }

    /// `VIDIOC_QUERYBUF`, `VIDIOC_QBUF` or `VIDIOC_DQBUF` (`number`) on mmap buffer `index`
    /// (ignored by `DQBUF`, which names the buffer it returns). On the multi-planar API the
    /// kernel reads and writes the planes through a pointer.
    fn buffer(&self, number: u32, index: u32) -> io::Result<BufferState> {
        let mut planes = [sys::Plane::default(); sys::VIDEO_MAX_PLANES];
        let mut buf = sys::Buffer {
            index,
            type_: self.buf_type,
            memory: sys::MEMORY_MMAP,
            ..Default::default()
        };
        if self.is_mplane() {
            // The kernel accepts any array length from the buffer's plane count up to
            // VIDEO_MAX_PLANES, so the whole array is offered.
            buf.m.userptr = planes.as_mut_ptr() as libc::c_ulong;
            buf.length = sys::VIDEO_MAX_PLANES as u32;
        }
        let fd = self.file.as_raw_fd();
        retry_interrupted(|| {
            // SAFETY: `number` is one of the three buffer ioctls, whose argument is `struct
            // v4l2_buffer`, reproduced by `sys::Buffer` (size and offsets checked at compile
            // time). On the single-planar API the kernel follows no pointer in it. On the
            // multi-planar API `m.planes` points at `planes`, an exclusively borrowed array of
            // `buf.length` plain-data `v4l2_plane`s that lives until after the call; the kernel
            // reads and writes at most that many.
            unsafe { libc::ioctl(fd, number as libc::Ioctl, std::ptr::from_mut(&mut buf)) }
        })?;
        // Filled in place, not collected: this runs twice per frame (DQBUF and QBUF).
        let mut state = BufferState {
            index: buf.index,
            sequence: buf.sequence,
            flags: buf.flags,
            planes: [PlaneState::default(); sys::VIDEO_MAX_PLANES],
            count: 1,
        };
        if self.is_mplane() {
            // The driver sets `length` to the number of planes it filled in.
            state.count = (buf.length as usize).min(sys::VIDEO_MAX_PLANES);
            for (to, p) in state.planes.iter_mut().zip(&planes[..state.count]) {
                *to = PlaneState {
                    // SAFETY: for MEMORY_MMAP planes the kernel sets `mem_offset`; any u32 is
                    // valid.
                    offset: unsafe { p.m.mem_offset },
                    length: p.length,
                    data: (p.data_offset, p.bytesused),
                };
            }
        } else {
            state.planes[0] = PlaneState {
                // SAFETY: for MEMORY_MMAP buffers the kernel sets the `offset` member of the
                // union (and zeroes the rest of it); any u32 is valid.
                offset: unsafe { buf.m.offset },
                length: buf.length,
                data: (0, buf.bytesused),
            };
        }
        Ok(state)
    }

    /// Waits until a buffer can be dequeued, at most `timeout`; false on timeout.
    fn poll_readable(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            let mut pfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `pfd` is one valid, exclusively borrowed pollfd and we pass a count of 1.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            match r {
                -1 => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
                0 if left.is_zero() => return Ok(false),
                0 => {}
                // POLLERR: the device went away or stopped streaming; DQBUF says which.
                _ => return Ok(true),
            }
        }
    }
}

/// Calls `ioctl` (one `ioctl(2)`, returning its result) again while a signal interrupts it.
fn retry_interrupted(mut ioctl: impl FnMut() -> libc::c_int) -> io::Result<()> {
    loop {
        if ioctl() != -1 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Most entries read from one enumeration ioctl: a guard against a driver that never ends
/// its list.
pub(super) const MAX_ENUM: u32 = 128;

/// What `VIDIOC_QUERYCAP` says about a node.
#[derive(Debug, Clone)]
pub(super) struct Capabilities {
    /// Kernel driver name (`uvcvideo`, `vivid`).
    pub(super) driver: String,
    /// Device name (`HD Pro Webcam C920`).
    pub(super) card: String,
    /// Where it is attached (`usb-0000:00:14.0-1`).
    pub(super) bus: String,
    /// `V4L2_CAP_*` bits of this node.
    pub(super) caps: u32,
}

impl Capabilities {
    /// Video capture, through the single- or the multi-planar API.
    pub(super) fn is_capture(&self) -> bool {
        self.caps & (sys::CAP_VIDEO_CAPTURE | sys::CAP_VIDEO_CAPTURE_MPLANE) != 0
    }

    /// Supports streaming (mmap) I/O.
    pub(super) fn can_stream(&self) -> bool {
        self.caps & sys::CAP_STREAMING != 0
    }

    /// Multi-planar capture only (SoC camera pipelines, HDMI receivers).
    pub(super) fn is_mplane_capture(&self) -> bool {
        self.caps & sys::CAP_VIDEO_CAPTURE == 0 && self.caps & sys::CAP_VIDEO_CAPTURE_MPLANE != 0
    }

    /// A short description of what the node does, for listings and errors.
    pub(super) fn kind(&self) -> String {
        let c = self.caps;
        let mut kinds = Vec::new();
        if c & (sys::CAP_VIDEO_M2M | sys::CAP_VIDEO_M2M_MPLANE) != 0 {
            kinds.push("memory-to-memory codec/converter");
        } else {
            if c & sys::CAP_VIDEO_CAPTURE != 0 {
                kinds.push("video capture");
            }
            if c & sys::CAP_VIDEO_CAPTURE_MPLANE != 0 {
                kinds.push("multi-planar video capture");
            }
            if c & sys::CAP_VIDEO_OUTPUT != 0 {
                kinds.push("video output");
            }
            if c & sys::CAP_META_CAPTURE != 0 {
                kinds.push("metadata capture");
            }
            if c & sys::CAP_META_OUTPUT != 0 {
                kinds.push("metadata output");
            }
        }
        if kinds.is_empty() {
            kinds.push("other (no video capture)");
        }
        kinds.join(", ")
    }
}

/// One entry of `VIDIOC_ENUM_FMT`.
#[derive(Debug, Clone)]
pub(super) struct FormatDesc {
    /// Pixel format code.
    pub(super) fourcc: u32,
    /// The driver's description (`Motion-JPEG`).
    pub(super) description: String,
    /// The driver marks it compressed.
    pub(super) compressed: bool,
}

/// One answer of `VIDIOC_ENUM_FRAMESIZES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrameSizes {
    /// One size, width by height.
    Discrete(u32, u32),
    /// Any size in a range (with steps, or continuous).
    Range {
        /// Smallest width and height.
        min: (u32, u32),
        /// Largest width and height.
        max: (u32, u32),
        /// Step of width and height.
        step: (u32, u32),
        /// Any size in the range (step 1).
        continuous: bool,
    },
}

/// The answer of `VIDIOC_ENUM_FRAMEINTERVALS` as frames per second.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum FrameRates {
    /// These rates (possibly none: the driver does not enumerate them).
    Discrete(Vec<f64>),
    /// Any rate in a range.
    Range {
        /// Lowest rate.
        min_fps: f64,
        /// Highest rate.
        max_fps: f64,
    },
}

/// Frames per second of a frame interval (0 for a zero numerator).
pub(super) fn fps_of(interval: sys::Fract) -> f64 {
    if interval.numerator == 0 {
        0.0
    } else {
        f64::from(interval.denominator) / f64::from(interval.numerator)
    }
}

/// One driver buffer mapped into our address space (read-only).
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is an exclusively owned region of shared memory with no thread affinity;
// moving it to another thread (the capture runs on tokio's blocking threads) is like moving a
// `Vec`. It is never shared between threads (no `Sync` impl).
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of the device at `offset` (as returned by `VIDIOC_QUERYBUF`).
    fn new(device: &Device, offset: u32, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "driver reported a zero-length buffer",
            ));
        }
        // `off_t` is 32 bits on some 32-bit targets, where this can fail.
        #[allow(clippy::unnecessary_fallible_conversions)]
        let offset = libc::off_t::try_from(offset).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "buffer offset out of range")
        })?;
        // SAFETY: a fresh shared read-only mapping at an address the kernel chooses; the
        // descriptor is valid during the call, and the mapping stays valid after it is closed.
        // Nothing else in the process aliases it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                device.file.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null pointer"))?;
        Ok(Mapping { ptr, len })
    }

    /// The bytes of `range` (clamped to the mapping; empty when it starts past its end).
    ///
    /// Only called for a dequeued buffer, which the driver does not write to until we queue it
    /// again; the returned borrow ends before that (see [`Stream::with_newest_frame`]).
    fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        // SAFETY: `ptr` points to `self.len` readable bytes for as long as `self` lives (the
        // mapping is only removed in `drop`), and `start <= end <= self.len`. The buffer is
        // dequeued (see above), so no one writes to these bytes while the slice exists.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), end - start) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, unmapped once, and no slice of
        // it outlives `self` (slices borrow `self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// What a buffer ioctl said about one buffer, whichever API the node uses.
#[derive(Debug, Clone, Copy)]
struct BufferState {
    index: u32,
    sequence: u32,
    flags: u32,
    /// Its memory planes, the first `count` used: one on the single-planar API and for most
    /// formats.
    planes: [PlaneState; sys::VIDEO_MAX_PLANES],
    count: usize,
}

impl BufferState {
    /// The planes the driver described.
    fn planes(&self) -> &[PlaneState] {
        &self.planes[..self.count]
    }
}

/// One memory plane of a buffer.
#[derive(Debug, Clone, Copy, Default)]
struct PlaneState {
    /// Where to map it.
    offset: u32,
    /// Its size.
    length: u32,
    /// Where the frame's bytes are in it after `DQBUF`: start and end.
    data: (u32, u32),
}

/// What the driver said about a dequeued buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameInfo {
    /// The driver's frame counter; gaps mean frames dropped by the driver or by us.
    pub(super) sequence: u32,
    /// `V4L2_BUF_FLAG_*` bits.
    pub(super) flags: u32,
}

/// A device streaming into mmapped buffers. Dropping it stops the stream and frees everything.
pub(super) struct Stream {
    // Field order is drop order: unmap the buffers, then close the device.
    /// Each buffer's planes, mapped.
    buffers: Vec<Vec<Mapping>>,
    device: Device,
    /// Frames dequeued and requeued unused because a newer one was ready (latest wins).
    skipped: u64,
}

impl Stream {
    /// Requests `count` mmap buffers, maps and queues them all, and starts streaming.
    pub(super) fn start(device: Device, count: u32) -> io::Result<Stream> {
        let mut req = sys::RequestBuffers {
            count,
            type_: device.buf_type,
            memory: sys::MEMORY_MMAP,
            ..Default::default()
        };
        device.ioctl(sys::VIDIOC_REQBUFS, &mut req)?;
        // The driver may grant more or fewer; with one buffer we could never read while the
        // camera fills the next one. Bounded so a buggy driver cannot make us map thousands.
        if !(2..=32).contains(&req.count) {
            return Err(io::Error::other(format!(
                "driver granted {} capture buffers (need 2 to 32)",
                req.count
            )));
        }
        let mut stream = Stream {
            buffers: Vec::with_capacity(req.count as usize),
            device,
            skipped: 0,
        };
        for index in 0..req.count {
            let buf = stream.device.buffer(sys::VIDIOC_QUERYBUF, index)?;
            if buf.planes().is_empty() {
                return Err(io::Error::other(format!(
                    "driver describes capture buffer {index} with no memory plane"
                )));
            }
            let planes = buf
                .planes()
                .iter()
                .map(|p| Mapping::new(&stream.device, p.offset, p.length as usize))
                .collect::<io::Result<Vec<Mapping>>>()?;
            stream.buffers.push(planes);
        }
        for index in 0..req.count {
            stream.queue(index)?;
        }
        let mut kind = stream.device.buf_type as libc::c_int;
        stream.device.ioctl(sys::VIDIOC_STREAMON, &mut kind)?;
        Ok(stream)
    }

    /// Frames dropped so far because a newer one was already waiting.
    pub(super) fn skipped(&self) -> u64 {
        self.skipped
    }

    fn queue(&self, index: u32) -> io::Result<()> {
        self.device.buffer(sys::VIDIOC_QBUF, index).map(drop)
    }

    /// Dequeues one filled buffer; `None` when none is ready.
    fn dequeue(&self) -> io::Result<Option<BufferState>> {
        match self.device.buffer(sys::VIDIOC_DQBUF, 0) {
            Ok(buf) => Ok(Some(buf)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits (at most `timeout`) for a frame, takes the newest one ready, lends its bytes to
    /// `f` (one slice per memory plane, usually one), and queues the buffer again. Older ready
    /// frames are requeued unread: latency stays at one frame however slow `f` is.
    /// `Ok(None)` on timeout.
    pub(super) fn with_newest_frame<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&[&[u8]], FrameInfo) -> R,
    ) -> io::Result<Option<R>> {
        let deadline = Instant::now() + timeout;
        let newest = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.device.poll_readable(left)? {
                return Ok(None);
            }
            let mut newest: Option<BufferState> = None;
            while let Some(buf) = self.dequeue()? {
                if let Some(old) = newest.replace(buf) {
                    self.skipped += 1;
                    self.queue(old.index)?;
                }
            }
            if let Some(buf) = newest {
                break buf;
            }
            if left.is_zero() {
                return Ok(None);
            }
            // A spurious wakeup, or POLLERR that DQBUF did not turn into an error: wait again,
            // without spinning should the device keep reporting ready.
            std::thread::sleep(Duration::from_millis(5));
        };
        let Some(mappings) = self.buffers.get(newest.index as usize) else {
            return Err(io::Error::other(format!(
                "driver returned buffer index {} of {}",
                newest.index,
                self.buffers.len()
            )));
        };
        let info = FrameInfo {
            sequence: newest.sequence,
            flags: newest.flags,
        };
        let mut slices: [&[u8]; sys::VIDEO_MAX_PLANES] = [&[]; sys::VIDEO_MAX_PLANES];
        // A plane the driver did not describe this time lends nothing (and so makes a short
        // frame) rather than stale bytes.
        let n = mappings.len().min(sys::VIDEO_MAX_PLANES);
        for (slot, (mapping, plane)) in slices.iter_mut().zip(mappings.iter().zip(newest.planes()))
        {
            *slot = mapping.bytes(plane.data.0 as usize..plane.data.1 as usize);
        }
        let result = f(&slices[..n], info);
        self.queue(newest.index)?;
        Ok(Some(result))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut kind = self.device.buf_type as libc::c_int;
        // Errors are moot here: closing the device stops the stream and frees the buffers too;
        // doing it explicitly first releases the camera at once.
        let _ = self.device.ioctl(sys::VIDIOC_STREAMOFF, &mut kind);
    }
}
