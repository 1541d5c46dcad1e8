//! The kernel ABI of the few V4L2 ioctls we use, transcribed from `linux/videodev2.h`.
//!
//! Only data: `#[repr(C)]` structs, constants and typed ioctl requests. Sizes are checked at
//! compile time against the C header's (measured with gcc on x86_64), so a transcription
//! mistake fails the build instead of corrupting memory. The one place that calls `ioctl(2)`
//! with these is `device.rs`.

use std::marker::PhantomData;
use std::mem::size_of;

use libc::c_int;

/// `V4L2_BUF_TYPE_VIDEO_CAPTURE`: single-planar video capture.
pub(super) const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
/// `V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE`: video capture through the multi-planar API.
pub(super) const BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;
/// `VIDEO_MAX_PLANES`: the most planes a multi-planar format or buffer has.
pub(super) const VIDEO_MAX_PLANES: usize = 8;
/// `V4L2_MEMORY_MMAP`: driver-allocated buffers mapped into our address space.
pub(super) const MEMORY_MMAP: u32 = 1;
/// `V4L2_FIELD_ANY`: let the driver choose (progressive for webcams).
pub(super) const FIELD_ANY: u32 = 0;

/// `V4L2_CAP_VIDEO_CAPTURE`.
pub(super) const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
/// `V4L2_CAP_VIDEO_OUTPUT`.
pub(super) const CAP_VIDEO_OUTPUT: u32 = 0x0000_0002;
/// `V4L2_CAP_VIDEO_CAPTURE_MPLANE`.
pub(super) const CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
/// `V4L2_CAP_VIDEO_M2M_MPLANE`.
pub(super) const CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
/// `V4L2_CAP_VIDEO_M2M`.
pub(super) const CAP_VIDEO_M2M: u32 = 0x0000_8000;
/// `V4L2_CAP_META_CAPTURE`: UVC cameras' second node carries only metadata.
pub(super) const CAP_META_CAPTURE: u32 = 0x0080_0000;
/// `V4L2_CAP_META_OUTPUT`.
pub(super) const CAP_META_OUTPUT: u32 = 0x0800_0000;
/// `V4L2_CAP_STREAMING`: supports the streaming (mmap) I/O we use.
pub(super) const CAP_STREAMING: u32 = 0x0400_0000;
/// `V4L2_CAP_DEVICE_CAPS`: `device_caps` describes this node (else use `capabilities`).
pub(super) const CAP_DEVICE_CAPS: u32 = 0x8000_0000;

/// `V4L2_CAP_TIMEPERFRAME` in `v4l2_captureparm.capability`: the frame rate can be set.
pub(super) const CAP_TIMEPERFRAME: u32 = 0x1000;

/// `V4L2_BUF_FLAG_ERROR`: the buffer was filled, but its data may be corrupt.
pub(super) const BUF_FLAG_ERROR: u32 = 0x0000_0040;

/// `V4L2_FMT_FLAG_COMPRESSED`.
pub(super) const FMT_FLAG_COMPRESSED: u32 = 0x0001;

/// `V4L2_QUANTIZATION_FULL_RANGE`: YCbCr values use 0-255 (else 16-235/240 for YUV formats).
pub(super) const QUANTIZATION_FULL_RANGE: u32 = 1;
/// `V4L2_QUANTIZATION_LIM_RANGE`: studio range, 16-235 luma and 16-240 chroma.
pub(super) const QUANTIZATION_LIM_RANGE: u32 = 2;

/// `V4L2_FRMSIZE_TYPE_DISCRETE` (also `V4L2_FRMIVAL_TYPE_DISCRETE`).
pub(super) const FRM_TYPE_DISCRETE: u32 = 1;
/// `V4L2_FRMSIZE_TYPE_CONTINUOUS` (also `V4L2_FRMIVAL_TYPE_CONTINUOUS`).
pub(super) const FRM_TYPE_CONTINUOUS: u32 = 2;

/// `struct v4l2_capability`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct Capability {
    pub(super) driver: [u8; 16],
    pub(super) card: [u8; 32],
    pub(super) bus_info: [u8; 32],
    pub(super) version: u32,
    pub(super) capabilities: u32,
    pub(super) device_caps: u32,
    pub(super) reserved: [u32; 3],
}

/// `struct v4l2_fmtdesc`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct FmtDesc {
    pub(super) index: u32,
    pub(super) type_: u32,
    pub(super) flags: u32,
    pub(super) description: [u8; 32],
    pub(super) pixelformat: u32,
    pub(super) mbus_code: u32,
    pub(super) reserved: [u32; 3],
}

/// `struct v4l2_pix_format` (the single-planar member of `v4l2_format.fmt`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct PixFormat {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) pixelformat: u32,
    pub(super) field: u32,
    pub(super) bytesperline: u32,
    pub(super) sizeimage: u32,
    pub(super) colorspace: u32,
    pub(super) priv_: u32,
    pub(super) flags: u32,
    /// A union of `ycbcr_enc` and `hsv_enc`, both `__u32`.
    pub(super) ycbcr_enc: u32,
    pub(super) quantization: u32,
    pub(super) xfer_func: u32,
}

/// `struct v4l2_plane_pix_format`: one memory plane of a multi-planar format.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct PlanePixFormat {
    pub(super) sizeimage: u32,
    pub(super) bytesperline: u32,
    pub(super) reserved: [u16; 6],
}

/// `struct v4l2_pix_format_mplane` (the multi-planar member of `v4l2_format.fmt`). Packed in C,
/// but every field already sits at its natural alignment, so `repr(C)` lays it out the same.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct PixFormatMplane {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) pixelformat: u32,
    pub(super) field: u32,
    pub(super) colorspace: u32,
    pub(super) plane_fmt: [PlanePixFormat; VIDEO_MAX_PLANES],
    pub(super) num_planes: u8,
    pub(super) flags: u8,
    /// A union of `ycbcr_enc` and `hsv_enc`, both `__u8`.
    pub(super) ycbcr_enc: u8,
    pub(super) quantization: u8,
    pub(super) xfer_func: u8,
    pub(super) reserved: [u8; 7],
}

/// The `fmt` union of `struct v4l2_format`: 200 bytes, aligned like a pointer because the
/// `v4l2_window` member holds pointers (hence the padding after `type` on 64-bit targets).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union FormatUnion {
    pub(super) pix: PixFormat,
    pub(super) pix_mp: PixFormatMplane,
    pub(super) raw_data: [u8; 200],
    _align: [usize; 0],
}

/// `struct v4l2_format`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Format {
    pub(super) type_: u32,
    pub(super) fmt: FormatUnion,
}

impl Default for Format {
    fn default() -> Format {
        Format {
            type_: 0,
            fmt: FormatUnion { raw_data: [0; 200] },
        }
    }
}

/// `struct v4l2_fract`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(super) struct Fract {
    pub(super) numerator: u32,
    pub(super) denominator: u32,
}

/// `struct v4l2_captureparm`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct CaptureParm {
    pub(super) capability: u32,
    pub(super) capturemode: u32,
    pub(super) timeperframe: Fract,
    pub(super) extendedmode: u32,
    pub(super) readbuffers: u32,
    pub(super) reserved: [u32; 4],
}

/// The `parm` union of `struct v4l2_streamparm` (no pointers: 4-byte aligned).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union StreamParmUnion {
    pub(super) capture: CaptureParm,
    pub(super) raw_data: [u8; 200],
}

/// `struct v4l2_streamparm`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct StreamParm {
    pub(super) type_: u32,
    pub(super) parm: StreamParmUnion,
}

impl Default for StreamParm {
    fn default() -> StreamParm {
        StreamParm {
            type_: 0,
            parm: StreamParmUnion { raw_data: [0; 200] },
        }
    }
}

/// `struct v4l2_requestbuffers`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct RequestBuffers {
    pub(super) count: u32,
    pub(super) type_: u32,
    pub(super) memory: u32,
    pub(super) capabilities: u32,
    pub(super) flags: u8,
    pub(super) reserved: [u8; 3],
}

/// `struct v4l2_timecode`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct Timecode {
    pub(super) type_: u32,
    pub(super) flags: u32,
    pub(super) frames: u8,
    pub(super) seconds: u8,
    pub(super) minutes: u8,
    pub(super) hours: u8,
    pub(super) userbits: [u8; 4],
}

/// The `m` union of `struct v4l2_buffer`: `__u32 offset`, `unsigned long userptr`,
/// `struct v4l2_plane *planes`, `__s32 fd` — as large and aligned as a pointer.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union BufferM {
    pub(super) offset: u32,
    pub(super) userptr: libc::c_ulong,
    pub(super) fd: i32,
}

/// `struct v4l2_buffer`. The timestamp is the C library's `struct timeval` (`libc::timeval`
/// follows the target's `time_t`, as the kernel's ioctl number does through its size).
///
/// Not [`Pod`]: for the multi-planar API `m` holds a pointer to the caller's planes, which the
/// kernel follows, so it is passed only by `Device::buffer`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Buffer {
    pub(super) index: u32,
    pub(super) type_: u32,
    pub(super) bytesused: u32,
    pub(super) flags: u32,
    pub(super) field: u32,
    pub(super) timestamp: libc::timeval,
    pub(super) timecode: Timecode,
    pub(super) sequence: u32,
    pub(super) memory: u32,
    pub(super) m: BufferM,
    pub(super) length: u32,
    pub(super) reserved2: u32,
    /// A union of `__s32 request_fd` and `__u32 reserved`.
    pub(super) request_fd: i32,
}

impl Default for Buffer {
    fn default() -> Buffer {
        Buffer {
            index: 0,
            type_: 0,
            bytesused: 0,
            flags: 0,
            field: 0,
            timestamp: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            timecode: Timecode::default(),
            sequence: 0,
            memory: 0,
            m: BufferM { userptr: 0 },
            length: 0,
            reserved2: 0,
            request_fd: 0,
        }
    }
}

/// The `m` union of `struct v4l2_plane`: `__u32 mem_offset`, `unsigned long userptr`,
/// `__s32 fd`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union PlaneM {
    pub(super) mem_offset: u32,
    pub(super) userptr: libc::c_ulong,
    pub(super) fd: i32,
}

/// `struct v4l2_plane`: one memory plane of a multi-planar buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Plane {
    pub(super) bytesused: u32,
    pub(super) length: u32,
    pub(super) m: PlaneM,
    /// Where the data starts in the plane; `bytesused` counts these bytes too.
    pub(super) data_offset: u32,
    pub(super) reserved: [u32; 11],
}

impl Default for Plane {
    fn default() -> Plane {
        Plane {
            bytesused: 0,
            length: 0,
            m: PlaneM { userptr: 0 },
            data_offset: 0,
            reserved: [0; 11],
        }
    }
}

/// `struct v4l2_frmsize_stepwise` (`discrete` is its first two fields).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct FrmSizeStepwise {
    pub(super) min_width: u32,
    pub(super) max_width: u32,
    pub(super) step_width: u32,
    pub(super) min_height: u32,
    pub(super) max_height: u32,
    pub(super) step_height: u32,
}

/// `struct v4l2_frmsizeenum`. The union of `discrete` (`width`, `height`) and `stepwise` is
/// represented by the larger `stepwise`; read `discrete` as `(min_width, max_width)`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct FrmSizeEnum {
    pub(super) index: u32,
    pub(super) pixel_format: u32,
    pub(super) type_: u32,
    pub(super) stepwise: FrmSizeStepwise,
    pub(super) reserved: [u32; 2],
}

/// `struct v4l2_frmival_stepwise` (`discrete` is its first member, `min`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct FrmIvalStepwise {
    pub(super) min: Fract,
    pub(super) max: Fract,
    pub(super) step: Fract,
}

/// `struct v4l2_frmivalenum`. The union of `discrete` and `stepwise` is represented by the
/// larger `stepwise`; `discrete` is `stepwise.min`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct FrmIvalEnum {
    pub(super) index: u32,
    pub(super) pixel_format: u32,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) type_: u32,
    pub(super) stepwise: FrmIvalStepwise,
    pub(super) reserved: [u32; 2],
}

/// `V4L2_CTRL_FLAG_*`: the bits of `v4l2_query_ext_ctrl.flags` we report.
pub(super) const CTRL_FLAG_DISABLED: u32 = 0x0001;
/// The control is in use by another file handle (a streaming one, for some drivers).
pub(super) const CTRL_FLAG_GRABBED: u32 = 0x0002;
/// `V4L2_CTRL_FLAG_READ_ONLY`.
pub(super) const CTRL_FLAG_READ_ONLY: u32 = 0x0004;
/// `V4L2_CTRL_FLAG_INACTIVE`: has no effect now (a manual value while its auto mode is on).
pub(super) const CTRL_FLAG_INACTIVE: u32 = 0x0010;
/// `V4L2_CTRL_FLAG_WRITE_ONLY`: buttons and the like; there is no value to read.
pub(super) const CTRL_FLAG_WRITE_ONLY: u32 = 0x0040;
/// `V4L2_CTRL_FLAG_VOLATILE`: the driver changes the value by itself (gain under auto gain).
pub(super) const CTRL_FLAG_VOLATILE: u32 = 0x0080;
/// `V4L2_CTRL_FLAG_NEXT_CTRL`: ask `QUERY_EXT_CTRL` for the control after `id`.
pub(super) const CTRL_FLAG_NEXT_CTRL: u32 = 0x8000_0000;

/// `V4L2_CTRL_TYPE_*` of the controls a camera offers.
pub(super) const CTRL_TYPE_INTEGER: u32 = 1;
/// `V4L2_CTRL_TYPE_BOOLEAN`.
pub(super) const CTRL_TYPE_BOOLEAN: u32 = 2;
/// `V4L2_CTRL_TYPE_MENU`.
pub(super) const CTRL_TYPE_MENU: u32 = 3;
/// `V4L2_CTRL_TYPE_BUTTON`.
pub(super) const CTRL_TYPE_BUTTON: u32 = 4;
/// `V4L2_CTRL_TYPE_INTEGER64`.
pub(super) const CTRL_TYPE_INTEGER64: u32 = 5;
/// `V4L2_CTRL_TYPE_CTRL_CLASS`: a heading ("User Controls"), not a control.
pub(super) const CTRL_TYPE_CTRL_CLASS: u32 = 6;
/// `V4L2_CTRL_TYPE_STRING`.
pub(super) const CTRL_TYPE_STRING: u32 = 7;
/// `V4L2_CTRL_TYPE_BITMASK`.
pub(super) const CTRL_TYPE_BITMASK: u32 = 8;
/// `V4L2_CTRL_TYPE_INTEGER_MENU`.
pub(super) const CTRL_TYPE_INTEGER_MENU: u32 = 9;

/// `V4L2_CTRL_WHICH_CUR_VAL`: get or set current values.
pub(super) const CTRL_WHICH_CUR_VAL: u32 = 0;

/// `struct v4l2_query_ext_ctrl`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct QueryExtCtrl {
    pub(super) id: u32,
    pub(super) type_: u32,
    pub(super) name: [u8; 32],
    pub(super) minimum: i64,
    pub(super) maximum: i64,
    pub(super) step: u64,
    pub(super) default_value: i64,
    pub(super) flags: u32,
    pub(super) elem_size: u32,
    pub(super) elems: u32,
    pub(super) nr_of_dims: u32,
    pub(super) dims: [u32; 4],
    pub(super) reserved: [u32; 32],
}

/// `struct v4l2_querymenu`, packed as in C. The union of `name[32]` and `__s64 value` is kept
/// as bytes: `value` is their first eight, in native order (integer menus).
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(super) struct QueryMenu {
    pub(super) id: u32,
    pub(super) index: u32,
    pub(super) name: [u8; 32],
    pub(super) reserved: u32,
}

impl QueryMenu {
    /// The `value` member of the union, for integer menus.
    pub(super) fn value(&self) -> i64 {
        let name = self.name;
        let mut v = [0u8; 8];
        v.copy_from_slice(&name[..8]);
        i64::from_ne_bytes(v)
    }
}

/// `struct v4l2_ext_control`, packed as in C. The value union (`__s32 value`, `__s64
/// value64`, payload pointers) is kept as eight bytes: we only use the two integer members,
/// which both start at its first byte, so `value` is right on big-endian targets too.
#[repr(C, packed)]
#[derive(Clone, Copy, Default)]
pub(super) struct ExtControl {
    pub(super) id: u32,
    pub(super) size: u32,
    pub(super) reserved2: u32,
    pub(super) value: [u8; 8],
}

impl ExtControl {
    /// A control `id` with value `v`, stored as the union member its type uses.
    pub(super) fn new(id: u32, is_64: bool, v: i64) -> ExtControl {
        let mut value = [0u8; 8];
        if is_64 {
            value = v.to_ne_bytes();
        } else {
            // Callers check the range first; a value outside i32 cannot reach here.
            let v = i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX });
            value[..4].copy_from_slice(&v.to_ne_bytes());
        }
        ExtControl {
            id,
            size: 0,
            reserved2: 0,
            value,
        }
    }

    /// The value, read as the union member its type uses.
    pub(super) fn get(&self, is_64: bool) -> i64 {
        let value = self.value;
        if is_64 {
            i64::from_ne_bytes(value)
        } else {
            let mut v = [0u8; 4];
            v.copy_from_slice(&value[..4]);
            i64::from(i32::from_ne_bytes(v))
        }
    }
}

/// `struct v4l2_ext_controls`. Not [`Pod`]: it holds a pointer to the caller's controls, so it
/// is passed only by `Device::ext_controls`, which builds it from a borrowed slice.
#[repr(C)]
pub(super) struct ExtControls {
    pub(super) which: u32,
    pub(super) count: u32,
    pub(super) error_idx: u32,
    pub(super) request_fd: i32,
    pub(super) reserved: u32,
    pub(super) controls: *mut ExtControl,
}

// Sizes from `sizeof` in C (gcc, x86_64, linux/videodev2.h of Linux 6.1). Those without
// pointers or `long` are the same on every Linux target.
const _: () = assert!(size_of::<Capability>() == 104);
const _: () = assert!(size_of::<FmtDesc>() == 64);
const _: () = assert!(size_of::<PixFormat>() == 48);
const _: () = assert!(size_of::<PlanePixFormat>() == 20);
const _: () = {
    assert!(size_of::<PixFormatMplane>() == 192);
    assert!(std::mem::offset_of!(PixFormatMplane, plane_fmt) == 20);
    assert!(std::mem::offset_of!(PixFormatMplane, num_planes) == 180);
    assert!(std::mem::offset_of!(PixFormatMplane, quantization) == 183);
};
const _: () = assert!(size_of::<CaptureParm>() == 40);
const _: () = assert!(size_of::<StreamParm>() == 204);
const _: () = assert!(size_of::<RequestBuffers>() == 20);
const _: () = assert!(size_of::<Timecode>() == 16);
const _: () = assert!(size_of::<FrmSizeEnum>() == 44);
const _: () = assert!(size_of::<FrmIvalEnum>() == 52);
const _: () = assert!(size_of::<QueryExtCtrl>() == 232);
const _: () = assert!(size_of::<QueryMenu>() == 44);
const _: () = assert!(size_of::<ExtControl>() == 20);
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<Format>() == 208);
    assert!(std::mem::offset_of!(Format, fmt) == 8);
    assert!(size_of::<Buffer>() == 88);
    assert!(std::mem::offset_of!(Buffer, timestamp) == 24);
    assert!(std::mem::offset_of!(Buffer, timecode) == 40);
    assert!(std::mem::offset_of!(Buffer, m) == 64);
    assert!(std::mem::offset_of!(Buffer, length) == 72);
    assert!(std::mem::offset_of!(Buffer, request_fd) == 80);
    assert!(size_of::<ExtControls>() == 32);
    assert!(std::mem::offset_of!(ExtControls, controls) == 24);
    assert!(size_of::<Plane>() == 64);
    assert!(std::mem::offset_of!(Plane, data_offset) == 16);
};
#[cfg(target_pointer_width = "32")]
const _: () = {
    assert!(size_of::<Format>() == 204);
    assert!(size_of::<Plane>() == 60);
};

/// Plain data the kernel may read and write through an ioctl: `#[repr(C)]`, no pointers we
/// rely on, every bit pattern valid. Sealed: implemented only here.
pub(super) trait Pod: Copy + private::Sealed {}

mod private {
    pub(in crate::source::v4l2) trait Sealed {}
}

macro_rules! pod {
    ($($t:ty),*) => {$(
        impl private::Sealed for $t {}
        impl Pod for $t {}
    )*};
}
pod!(
    Capability,
    FmtDesc,
    Format,
    StreamParm,
    RequestBuffers,
    FrmSizeEnum,
    FrmIvalEnum,
    QueryExtCtrl,
    QueryMenu,
    c_int
);

// The _IOC encoding of asm-generic/ioctl.h; powerpc, mips and sparc use 13 size bits and
// different direction values.
#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
))]
mod ioc {
    pub(super) const WRITE: u32 = 4;
    pub(super) const READ: u32 = 2;
    pub(super) const SIZE_BITS: u32 = 13;
}
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips32r6",
    target_arch = "mips64",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
)))]
mod ioc {
    pub(super) const WRITE: u32 = 1;
    pub(super) const READ: u32 = 2;
    pub(super) const SIZE_BITS: u32 = 14;
}

/// `_IOC(dir, 'V', nr, size)`.
const fn ioc_number(dir: u32, nr: u8, size: usize) -> u32 {
    assert!(size < (1 << ioc::SIZE_BITS));
    (dir << (16 + ioc::SIZE_BITS)) | ((size as u32) << 16) | ((b'V' as u32) << 8) | nr as u32
}

/// An ioctl request number that takes a `T`: the pairing is fixed here, where the number is
/// computed from `size_of::<T>()`, so a call cannot pass the wrong type.
pub(super) struct Request<T: Pod> {
    pub(super) number: u32,
    _arg: PhantomData<fn(T) -> T>,
}

impl<T: Pod> Clone for Request<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Pod> Copy for Request<T> {}

impl<T: Pod> Request<T> {
    /// `_IOC(dir, 'V', nr, sizeof(T))`.
    const fn new(dir: u32, nr: u8) -> Request<T> {
        Request {
            number: ioc_number(dir, nr, size_of::<T>()),
            _arg: PhantomData,
        }
    }
    /// `_IOR('V', nr, T)`: the kernel fills the argument.
    const fn read(nr: u8) -> Request<T> {
        Request::new(ioc::READ, nr)
    }
    /// `_IOW('V', nr, T)`: the kernel reads the argument.
    const fn write(nr: u8) -> Request<T> {
        Request::new(ioc::WRITE, nr)
    }
    /// `_IOWR('V', nr, T)`: both.
    const fn read_write(nr: u8) -> Request<T> {
        Request::new(ioc::READ | ioc::WRITE, nr)
    }
}

pub(super) const VIDIOC_QUERYCAP: Request<Capability> = Request::read(0);
pub(super) const VIDIOC_ENUM_FMT: Request<FmtDesc> = Request::read_write(2);
pub(super) const VIDIOC_S_FMT: Request<Format> = Request::read_write(5);
pub(super) const VIDIOC_REQBUFS: Request<RequestBuffers> = Request::read_write(8);
/// `VIDIOC_QUERYBUF`, `VIDIOC_QBUF` and `VIDIOC_DQBUF` take a [`Buffer`], which may point at
/// planes, so they are plain numbers, used only by `Device::buffer`.
pub(super) const VIDIOC_QUERYBUF: u32 = ioc_number(ioc::READ | ioc::WRITE, 9, size_of::<Buffer>());
/// See [`VIDIOC_QUERYBUF`].
pub(super) const VIDIOC_QBUF: u32 = ioc_number(ioc::READ | ioc::WRITE, 15, size_of::<Buffer>());
/// See [`VIDIOC_QUERYBUF`].
pub(super) const VIDIOC_DQBUF: u32 = ioc_number(ioc::READ | ioc::WRITE, 17, size_of::<Buffer>());
pub(super) const VIDIOC_STREAMON: Request<c_int> = Request::write(18);
pub(super) const VIDIOC_STREAMOFF: Request<c_int> = Request::write(19);
pub(super) const VIDIOC_G_PARM: Request<StreamParm> = Request::read_write(21);
pub(super) const VIDIOC_S_PARM: Request<StreamParm> = Request::read_write(22);
pub(super) const VIDIOC_ENUM_FRAMESIZES: Request<FrmSizeEnum> = Request::read_write(74);
pub(super) const VIDIOC_ENUM_FRAMEINTERVALS: Request<FrmIvalEnum> = Request::read_write(75);
pub(super) const VIDIOC_QUERYMENU: Request<QueryMenu> = Request::read_write(37);
pub(super) const VIDIOC_QUERY_EXT_CTRL: Request<QueryExtCtrl> = Request::read_write(103);

/// `VIDIOC_G_EXT_CTRLS` and `VIDIOC_S_EXT_CTRLS`: they take an
/// [`ExtControls`], which points at the controls, so they are numbers of their own instead of
/// [`Request`]s (which only carry [`Pod`] arguments).
pub(super) const VIDIOC_G_EXT_CTRLS: u32 =
    ioc_number(ioc::READ | ioc::WRITE, 71, size_of::<ExtControls>());
/// See [`VIDIOC_G_EXT_CTRLS`].
pub(super) const VIDIOC_S_EXT_CTRLS: u32 =
    ioc_number(ioc::READ | ioc::WRITE, 72, size_of::<ExtControls>());

/// A NUL-padded C string field as text.
pub(super) fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values printed by a C program using the real header on x86_64.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn ioctl_numbers_match_the_c_header() {
        assert_eq!(VIDIOC_QUERYCAP.number, 0x8068_5600);
        assert_eq!(VIDIOC_ENUM_FMT.number, 0xc040_5602);
        assert_eq!(VIDIOC_S_FMT.number, 0xc0d0_5605);
        assert_eq!(VIDIOC_REQBUFS.number, 0xc014_5608);
        assert_eq!(VIDIOC_QUERYBUF, 0xc058_5609);
        assert_eq!(VIDIOC_QBUF, 0xc058_560f);
        assert_eq!(VIDIOC_DQBUF, 0xc058_5611);
        assert_eq!(VIDIOC_STREAMON.number, 0x4004_5612);
        assert_eq!(VIDIOC_STREAMOFF.number, 0x4004_5613);
        assert_eq!(VIDIOC_G_PARM.number, 0xc0cc_5615);
        assert_eq!(VIDIOC_S_PARM.number, 0xc0cc_5616);
        assert_eq!(VIDIOC_ENUM_FRAMESIZES.number, 0xc02c_564a);
        assert_eq!(VIDIOC_ENUM_FRAMEINTERVALS.number, 0xc034_564b);
        assert_eq!(VIDIOC_QUERYMENU.number, 0xc02c_5625);
        assert_eq!(VIDIOC_QUERY_EXT_CTRL.number, 0xc0e8_5667);
        assert_eq!(VIDIOC_G_EXT_CTRLS, 0xc020_5647);
        assert_eq!(VIDIOC_S_EXT_CTRLS, 0xc020_5648);
    }

    /// Field offsets of the control structs, as `offsetof` gives them with the C header.
    #[test]
    fn control_struct_layouts_match_the_c_header() {
        use std::mem::offset_of;
        assert_eq!(offset_of!(QueryExtCtrl, name), 8);
        assert_eq!(offset_of!(QueryExtCtrl, minimum), 40);
        assert_eq!(offset_of!(QueryExtCtrl, step), 56);
        assert_eq!(offset_of!(QueryExtCtrl, default_value), 64);
        assert_eq!(offset_of!(QueryExtCtrl, flags), 72);
        assert_eq!(offset_of!(QueryExtCtrl, dims), 88);
        assert_eq!(offset_of!(QueryExtCtrl, reserved), 104);
        assert_eq!(offset_of!(QueryMenu, name), 8);
        assert_eq!(offset_of!(QueryMenu, reserved), 40);
        assert_eq!(offset_of!(ExtControl, value), 12);
        assert_eq!(offset_of!(ExtControls, count), 4);
        assert_eq!(offset_of!(ExtControls, error_idx), 8);
    }

    #[test]
    fn control_values_use_the_member_of_their_type() {
        let c = ExtControl::new(0x0098_0900, false, -5);
        assert_eq!(c.get(false), -5);
        let raw = c.value;
        assert_eq!(&raw[..4], &(-5i32).to_ne_bytes());
        let c = ExtControl::new(0x0098_0900, true, 1 << 40);
        assert_eq!(c.get(true), 1 << 40);
        let mut m = QueryMenu::default();
        m.name[..8].copy_from_slice(&(-7i64).to_ne_bytes());
        assert_eq!(m.value(), -7);
    }

    #[test]
    fn c_strings_stop_at_nul() {
        assert_eq!(c_str(b"uvcvideo\0\0\0garbage"), "uvcvideo");
        assert_eq!(c_str(b"full"), "full");
    }
}
