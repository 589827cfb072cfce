//! `include/uapi/linux/videodev2.h`: the subset unibuf uses to query formats, set controls and
//! stream into imported dma-bufs (`V4L2_MEMORY_DMABUF`).
//!
//! Layouts are those of 64-bit userspace (x86_64, aarch64); the size tests pin them.

use super::retry_eintr;
use rustix::fd::BorrowedFd;
use rustix::io::{Errno, Result};
use rustix::ioctl::{ioctl, opcode, Getter, Opcode, Setter, Updater};
use std::ffi::c_ulong;

/// `V4L2_BUF_TYPE_VIDEO_CAPTURE`.
pub const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
/// `V4L2_BUF_TYPE_VIDEO_OUTPUT`.
pub const V4L2_BUF_TYPE_VIDEO_OUTPUT: u32 = 2;
/// `V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE`.
pub const V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;
/// `V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE`.
pub const V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE: u32 = 10;

/// `V4L2_MEMORY_MMAP`.
pub const V4L2_MEMORY_MMAP: u32 = 1;
/// `V4L2_MEMORY_USERPTR`: the device would DMA into a process address; [`qbuf`] refuses it.
pub const V4L2_MEMORY_USERPTR: u32 = 2;
/// `V4L2_MEMORY_DMABUF`.
pub const V4L2_MEMORY_DMABUF: u32 = 4;

/// `V4L2_FIELD_ANY`.
pub const V4L2_FIELD_ANY: u32 = 0;
/// `V4L2_FIELD_NONE` (progressive).
pub const V4L2_FIELD_NONE: u32 = 1;

/// `V4L2_CAP_VIDEO_CAPTURE`.
pub const V4L2_CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
/// `V4L2_CAP_VIDEO_OUTPUT`.
pub const V4L2_CAP_VIDEO_OUTPUT: u32 = 0x0000_0002;
/// `V4L2_CAP_VIDEO_CAPTURE_MPLANE`.
pub const V4L2_CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
/// `V4L2_CAP_VIDEO_OUTPUT_MPLANE`.
pub const V4L2_CAP_VIDEO_OUTPUT_MPLANE: u32 = 0x0000_2000;
/// `V4L2_CAP_STREAMING`.
pub const V4L2_CAP_STREAMING: u32 = 0x0400_0000;
/// `V4L2_CAP_DEVICE_CAPS`: `device_caps` is valid.
pub const V4L2_CAP_DEVICE_CAPS: u32 = 0x8000_0000;

/// `V4L2_BUF_FLAG_QUEUED`.
pub const V4L2_BUF_FLAG_QUEUED: u32 = 0x0000_0002;
/// `V4L2_BUF_FLAG_DONE`.
pub const V4L2_BUF_FLAG_DONE: u32 = 0x0000_0004;
/// `V4L2_BUF_FLAG_ERROR`.
pub const V4L2_BUF_FLAG_ERROR: u32 = 0x0000_0040;

/// `V4L2_CTRL_FLAG_DISABLED`.
pub const V4L2_CTRL_FLAG_DISABLED: u32 = 0x0001;
/// `V4L2_CTRL_FLAG_NEXT_CTRL`: enumerate controls with `VIDIOC_QUERYCTRL`.
pub const V4L2_CTRL_FLAG_NEXT_CTRL: u32 = 0x8000_0000;
/// `V4L2_CTRL_TYPE_MENU`.
pub const V4L2_CTRL_TYPE_MENU: u32 = 3;

/// `VIDEO_MAX_PLANES`.
pub const VIDEO_MAX_PLANES: usize = 8;

/// `struct v4l2_capability`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2Capability {
    /// Driver name.
    pub driver: [u8; 16],
    /// Card name.
    pub card: [u8; 32],
    /// Bus info.
    pub bus_info: [u8; 32],
    /// Kernel version.
    pub version: u32,
    /// Capabilities of the whole physical device.
    pub capabilities: u32,
    /// Capabilities of this node.
    pub device_caps: u32,
    /// Reserved.
    pub reserved: [u32; 3],
}

/// `struct v4l2_pix_format` (single-planar).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2PixFormat {
    /// Width in pixels.
    pub width: u32,
    /// Height in lines.
    pub height: u32,
    /// Fourcc.
    pub pixelformat: u32,
    /// `V4L2_FIELD_*`.
    pub field: u32,
    /// Bytes per line.
    pub bytesperline: u32,
    /// Bytes per image.
    pub sizeimage: u32,
    /// Colorspace.
    pub colorspace: u32,
    /// Private (`V4L2_PIX_FMT_PRIV_MAGIC` enables the fields below).
    pub priv_: u32,
    /// Flags.
    pub flags: u32,
    /// Y'CbCr encoding.
    pub ycbcr_enc: u32,
    /// Quantization.
    pub quantization: u32,
    /// Transfer function.
    pub xfer_func: u32,
}

/// `struct v4l2_plane_pix_format` (packed).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2PlanePixFormat {
    /// Bytes of this plane.
    pub sizeimage: u32,
    /// Bytes per line of this plane.
    pub bytesperline: u32,
    /// Reserved.
    pub reserved: [u16; 6],
}

/// `struct v4l2_pix_format_mplane` (packed).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2PixFormatMplane {
    /// Width in pixels.
    pub width: u32,
    /// Height in lines.
    pub height: u32,
    /// Fourcc.
    pub pixelformat: u32,
    /// `V4L2_FIELD_*`.
    pub field: u32,
    /// Colorspace.
    pub colorspace: u32,
    /// Per-plane formats.
    pub plane_fmt: [V4l2PlanePixFormat; VIDEO_MAX_PLANES],
    /// Number of planes (memory planes).
    pub num_planes: u8,
    /// Flags.
    pub flags: u8,
    /// Y'CbCr encoding.
    pub ycbcr_enc: u8,
    /// Quantization.
    pub quantization: u8,
    /// Transfer function.
    pub xfer_func: u8,
    /// Reserved.
    pub reserved: [u8; 7],
}

/// The `fmt` union of `struct v4l2_format`: 200 bytes, 8-aligned (it holds pointers in
/// `struct v4l2_window`).
#[repr(C)]
#[derive(Clone, Copy)]
pub union V4l2FormatUnion {
    /// Single-planar pixel format.
    pub pix: V4l2PixFormat,
    /// Multi-planar pixel format.
    pub pix_mp: V4l2PixFormatMplane,
    /// Raw bytes.
    pub raw_data: [u8; 200],
    /// Alignment of the kernel union.
    align: [u64; 25],
}

/// `struct v4l2_format`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct V4l2Format {
    /// `V4L2_BUF_TYPE_*`.
    pub type_: u32,
    /// Format, by buffer type.
    pub fmt: V4l2FormatUnion,
}

impl V4l2Format {
    /// A zeroed format of `buf_type`.
    pub fn new(buf_type: u32) -> Self {
        V4l2Format {
            type_: buf_type,
            fmt: V4l2FormatUnion { align: [0; 25] },
        }
    }

    /// The single-planar view.
    pub fn pix(&self) -> V4l2PixFormat {
        // SAFETY: every field of the union is plain integers; any bit pattern is valid.
        unsafe { self.fmt.pix }
    }

    /// The multi-planar view.
    pub fn pix_mp(&self) -> V4l2PixFormatMplane {
        // SAFETY: every field of the union is plain integers; any bit pattern is valid.
        unsafe { self.fmt.pix_mp }
    }
}

impl std::fmt::Debug for V4l2Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Format")
            .field("type_", &self.type_)
            .field("pix", &self.pix())
            .finish()
    }
}

/// `struct v4l2_requestbuffers`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2RequestBuffers {
    /// Number of buffers (in: wanted, out: allocated).
    pub count: u32,
    /// `V4L2_BUF_TYPE_*`.
    pub type_: u32,
    /// `V4L2_MEMORY_*`.
    pub memory: u32,
    /// Returned `V4L2_BUF_CAP_*`.
    pub capabilities: u32,
    /// Flags.
    pub flags: u8,
    /// Reserved.
    pub reserved: [u8; 3],
}

/// `struct timeval` of 64-bit userspace.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Timeval {
    /// Seconds.
    pub tv_sec: i64,
    /// Microseconds.
    pub tv_usec: i64,
}

/// `struct v4l2_timecode`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2Timecode {
    /// Type.
    pub type_: u32,
    /// Flags.
    pub flags: u32,
    /// Frames.
    pub frames: u8,
    /// Seconds.
    pub seconds: u8,
    /// Minutes.
    pub minutes: u8,
    /// Hours.
    pub hours: u8,
    /// User bits.
    pub userbits: [u8; 4],
}

/// The `m` union of `struct v4l2_plane`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union V4l2PlaneM {
    /// `V4L2_MEMORY_MMAP` offset.
    pub mem_offset: u32,
    /// `V4L2_MEMORY_USERPTR` pointer.
    pub userptr: c_ulong,
    /// `V4L2_MEMORY_DMABUF` fd.
    pub fd: i32,
}

/// `struct v4l2_plane`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct V4l2Plane {
    /// Bytes of data in the plane.
    pub bytesused: u32,
    /// Size of the plane's memory.
    pub length: u32,
    /// Memory handle.
    pub m: V4l2PlaneM,
    /// Offset of the data from the start of the memory.
    pub data_offset: u32,
    /// Reserved.
    pub reserved: [u32; 11],
}

impl V4l2Plane {
    /// The `m.fd` member: the dma-buf fd of a `V4L2_MEMORY_DMABUF` plane.
    pub fn dmabuf_fd(&self) -> i32 {
        // SAFETY: every member of the union is a plain integer; any bits are a valid i32.
        unsafe { self.m.fd }
    }
}

impl Default for V4l2Plane {
    fn default() -> Self {
        V4l2Plane {
            bytesused: 0,
            length: 0,
            m: V4l2PlaneM { userptr: 0 },
            data_offset: 0,
            reserved: [0; 11],
        }
    }
}

/// The `m` union of `struct v4l2_buffer`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union V4l2BufferM {
    /// `V4L2_MEMORY_MMAP` offset.
    pub offset: u32,
    /// `V4L2_MEMORY_USERPTR` pointer.
    pub userptr: c_ulong,
    /// Multi-planar: pointer to `length` planes.
    pub planes: *mut V4l2Plane,
    /// `V4L2_MEMORY_DMABUF` fd.
    pub fd: i32,
}

/// `struct v4l2_buffer`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct V4l2Buffer {
    /// Buffer index.
    pub index: u32,
    /// `V4L2_BUF_TYPE_*`.
    pub type_: u32,
    /// Bytes of data (single-planar).
    pub bytesused: u32,
    /// `V4L2_BUF_FLAG_*`.
    pub flags: u32,
    /// Field.
    pub field: u32,
    /// Capture time.
    pub timestamp: Timeval,
    /// Timecode.
    pub timecode: V4l2Timecode,
    /// Frame sequence number.
    pub sequence: u32,
    /// `V4L2_MEMORY_*`.
    pub memory: u32,
    /// Memory handle (or the planes array for multi-planar types).
    pub m: V4l2BufferM,
    /// Buffer size (single-planar) or number of planes (multi-planar).
    pub length: u32,
    /// Reserved.
    pub reserved2: u32,
    /// Request fd (or reserved).
    pub request_fd: i32,
}

impl V4l2Buffer {
    /// The `m.fd` member: the dma-buf fd of a single-planar `V4L2_MEMORY_DMABUF` buffer.
    pub fn dmabuf_fd(&self) -> i32 {
        // SAFETY: the union holds integers or a pointer, each at least 4 bytes; reading its first
        // 4 bytes as an i32 is valid for any of them.
        unsafe { self.m.fd }
    }

    /// A zeroed buffer descriptor.
    pub fn new(buf_type: u32, memory: u32, index: u32) -> Self {
        V4l2Buffer {
            index,
            type_: buf_type,
            bytesused: 0,
            flags: 0,
            field: 0,
            timestamp: Timeval::default(),
            timecode: V4l2Timecode::default(),
            sequence: 0,
            memory,
            m: V4l2BufferM { userptr: 0 },
            length: 0,
            reserved2: 0,
            request_fd: 0,
        }
    }
}

/// `struct v4l2_fmtdesc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2FmtDesc {
    /// Index to enumerate.
    pub index: u32,
    /// `V4L2_BUF_TYPE_*`.
    pub type_: u32,
    /// Flags.
    pub flags: u32,
    /// Description.
    pub description: [u8; 32],
    /// Fourcc.
    pub pixelformat: u32,
    /// Media bus code filter.
    pub mbus_code: u32,
    /// Reserved.
    pub reserved: [u32; 3],
}

/// `struct v4l2_control`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2Control {
    /// Control id.
    pub id: u32,
    /// Value.
    pub value: i32,
}

/// `struct v4l2_queryctrl`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2QueryCtrl {
    /// Control id (or'ed with `V4L2_CTRL_FLAG_NEXT_CTRL` to enumerate).
    pub id: u32,
    /// `V4L2_CTRL_TYPE_*`.
    pub type_: u32,
    /// Name.
    pub name: [u8; 32],
    /// Minimum.
    pub minimum: i32,
    /// Maximum.
    pub maximum: i32,
    /// Step.
    pub step: i32,
    /// Default.
    pub default_value: i32,
    /// `V4L2_CTRL_FLAG_*`.
    pub flags: u32,
    /// Reserved.
    pub reserved: [u32; 2],
}

/// `struct v4l2_querymenu` (packed; the name/value union is read as the name).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct V4l2QueryMenu {
    /// Control id.
    pub id: u32,
    /// Menu index.
    pub index: u32,
    /// Item name (or, for integer menus, an `i64` value in the first 8 bytes).
    pub name: [u8; 32],
    /// Reserved.
    pub reserved: u32,
}

/// `VIDIOC_QUERYCAP`: `_IOR('V', 0, struct v4l2_capability)`.
pub const VIDIOC_QUERYCAP: Opcode = opcode::read::<V4l2Capability>(b'V', 0);
/// `VIDIOC_ENUM_FMT`: `_IOWR('V', 2, struct v4l2_fmtdesc)`.
pub const VIDIOC_ENUM_FMT: Opcode = opcode::read_write::<V4l2FmtDesc>(b'V', 2);
/// `VIDIOC_G_FMT`: `_IOWR('V', 4, struct v4l2_format)`.
pub const VIDIOC_G_FMT: Opcode = opcode::read_write::<V4l2Format>(b'V', 4);
/// `VIDIOC_S_FMT`: `_IOWR('V', 5, struct v4l2_format)`.
pub const VIDIOC_S_FMT: Opcode = opcode::read_write::<V4l2Format>(b'V', 5);
/// `VIDIOC_REQBUFS`: `_IOWR('V', 8, struct v4l2_requestbuffers)`.
pub const VIDIOC_REQBUFS: Opcode = opcode::read_write::<V4l2RequestBuffers>(b'V', 8);
/// `VIDIOC_QUERYBUF`: `_IOWR('V', 9, struct v4l2_buffer)`.
pub const VIDIOC_QUERYBUF: Opcode = opcode::read_write::<V4l2Buffer>(b'V', 9);
/// `VIDIOC_QBUF`: `_IOWR('V', 15, struct v4l2_buffer)`.
pub const VIDIOC_QBUF: Opcode = opcode::read_write::<V4l2Buffer>(b'V', 15);
/// `VIDIOC_DQBUF`: `_IOWR('V', 17, struct v4l2_buffer)`.
pub const VIDIOC_DQBUF: Opcode = opcode::read_write::<V4l2Buffer>(b'V', 17);
/// `VIDIOC_STREAMON`: `_IOW('V', 18, int)`.
pub const VIDIOC_STREAMON: Opcode = opcode::write::<i32>(b'V', 18);
/// `VIDIOC_STREAMOFF`: `_IOW('V', 19, int)`.
pub const VIDIOC_STREAMOFF: Opcode = opcode::write::<i32>(b'V', 19);
/// `VIDIOC_G_CTRL`: `_IOWR('V', 27, struct v4l2_control)`.
pub const VIDIOC_G_CTRL: Opcode = opcode::read_write::<V4l2Control>(b'V', 27);
/// `VIDIOC_S_CTRL`: `_IOWR('V', 28, struct v4l2_control)`.
pub const VIDIOC_S_CTRL: Opcode = opcode::read_write::<V4l2Control>(b'V', 28);
/// `VIDIOC_QUERYCTRL`: `_IOWR('V', 36, struct v4l2_queryctrl)`.
pub const VIDIOC_QUERYCTRL: Opcode = opcode::read_write::<V4l2QueryCtrl>(b'V', 36);
/// `VIDIOC_QUERYMENU`: `_IOWR('V', 37, struct v4l2_querymenu)`.
pub const VIDIOC_QUERYMENU: Opcode = opcode::read_write::<V4l2QueryMenu>(b'V', 37);
/// `VIDIOC_TRY_FMT`: `_IOWR('V', 64, struct v4l2_format)`.
pub const VIDIOC_TRY_FMT: Opcode = opcode::read_write::<V4l2Format>(b'V', 64);

// ---- calls ----------------------------------------------------------------------------------

/// Whether buffers of `buf_type` use the multi-planar layout (`V4L2_TYPE_IS_MULTIPLANAR`): their
/// `m.planes` points to `length` `struct v4l2_plane`s.
pub fn is_multiplanar(buf_type: u32) -> bool {
    matches!(
        buf_type,
        V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE | V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE
    )
}

/// The format calls accept the video capture/output types only: their `fmt` is plain integers.
/// Other types (`VIDEO_OVERLAY`'s `struct v4l2_window`) carry user pointers the kernel follows.
fn check_format_type(buf_type: u32) -> Result<()> {
    match buf_type {
        V4L2_BUF_TYPE_VIDEO_CAPTURE
        | V4L2_BUF_TYPE_VIDEO_OUTPUT
        | V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE
        | V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE => Ok(()),
        _ => Err(Errno::INVAL),
    }
}

/// `VIDIOC_QUERYCAP`.
pub fn querycap(fd: BorrowedFd<'_>) -> Result<V4l2Capability> {
    retry_eintr(|| {
        // SAFETY: VIDIOC_QUERYCAP fills a whole `struct v4l2_capability` (the ioctl layer copies
        // `_IOC_SIZE` bytes out), which `V4l2Capability` mirrors; any bits are valid in it.
        unsafe { ioctl(fd, Getter::<VIDIOC_QUERYCAP, V4l2Capability>::new()) }
    })
}

/// `VIDIOC_ENUM_FMT`: fills `desc` for `desc.index` of `desc.type_`; `EINVAL` past the last.
pub fn enum_fmt(fd: BorrowedFd<'_>, desc: &mut V4l2FmtDesc) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: VIDIOC_ENUM_FMT reads and writes a `struct v4l2_fmtdesc` (plain integers),
        // which `V4l2FmtDesc` mirrors.
        unsafe { ioctl(fd, Updater::<VIDIOC_ENUM_FMT, _>::new(desc)) }
    })
}

/// `VIDIOC_G_FMT` of `f.type_` (a video capture/output type, else `EINVAL`).
pub fn g_fmt(fd: BorrowedFd<'_>, f: &mut V4l2Format) -> Result<()> {
    check_format_type(f.type_)?;
    retry_eintr(|| {
        // SAFETY: VIDIOC_G_FMT reads and writes a `struct v4l2_format`, which `V4l2Format`
        // mirrors; for the video types checked above its union holds no pointer.
        unsafe { ioctl(fd, Updater::<VIDIOC_G_FMT, _>::new(f)) }
    })
}

/// `VIDIOC_S_FMT` of `f.type_` (a video capture/output type, else `EINVAL`); the driver writes
/// back what it set.
pub fn s_fmt(fd: BorrowedFd<'_>, f: &mut V4l2Format) -> Result<()> {
    check_format_type(f.type_)?;
    retry_eintr(|| {
        // SAFETY: as for `g_fmt`, with VIDIOC_S_FMT.
        unsafe { ioctl(fd, Updater::<VIDIOC_S_FMT, _>::new(f)) }
    })
}

/// `VIDIOC_TRY_FMT` of `f.type_` (a video capture/output type, else `EINVAL`); nothing changes
/// on the device, the driver writes back what it would set.
pub fn try_fmt(fd: BorrowedFd<'_>, f: &mut V4l2Format) -> Result<()> {
    check_format_type(f.type_)?;
    retry_eintr(|| {
        // SAFETY: as for `g_fmt`, with VIDIOC_TRY_FMT.
        unsafe { ioctl(fd, Updater::<VIDIOC_TRY_FMT, _>::new(f)) }
    })
}

/// `VIDIOC_REQBUFS`: asks for `rb.count` buffer slots (0 frees them); the driver writes back
/// how many it made.
pub fn reqbufs(fd: BorrowedFd<'_>, rb: &mut V4l2RequestBuffers) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: VIDIOC_REQBUFS reads and writes a `struct v4l2_requestbuffers` (plain
        // integers), which `V4l2RequestBuffers` mirrors.
        unsafe { ioctl(fd, Updater::<VIDIOC_REQBUFS, _>::new(rb)) }
    })
}

/// Points a multi-planar `buf` at `planes` (the kernel follows `m.planes` for `length` entries);
/// a single-planar one must come with no planes.
fn attach_planes(buf: &mut V4l2Buffer, planes: &mut [V4l2Plane]) -> Result<()> {
    if is_multiplanar(buf.type_) {
        if planes.is_empty() || planes.len() > VIDEO_MAX_PLANES {
            return Err(Errno::INVAL);
        }
        buf.m.planes = planes.as_mut_ptr();
        buf.length = planes.len() as u32;
    } else if !planes.is_empty() {
        return Err(Errno::INVAL);
    }
    Ok(())
}

/// `VIDIOC_QBUF`. For a multi-planar type, `planes` holds the per-plane memory (fds, lengths):
/// `buf.m.planes` and `buf.length` are set to it here; single-planar types take no planes.
/// `V4L2_MEMORY_USERPTR` is refused (`EINVAL`): the device would DMA into whatever process
/// address the buffer names, which no safe caller can vouch for.
pub fn qbuf(fd: BorrowedFd<'_>, buf: &mut V4l2Buffer, planes: &mut [V4l2Plane]) -> Result<()> {
    if buf.memory == V4L2_MEMORY_USERPTR {
        return Err(Errno::INVAL);
    }
    attach_planes(buf, planes)?;
    retry_eintr(|| {
        // SAFETY: VIDIOC_QBUF reads and writes a `struct v4l2_buffer`, which `V4l2Buffer`
        // mirrors; for multi-planar types `m.planes` points to `length` live, writable
        // `struct v4l2_plane`s (`planes`, borrowed for the call). No memory the kernel would
        // reach through a user pointer is named (USERPTR refused above).
        unsafe { ioctl(fd, Updater::<VIDIOC_QBUF, _>::new(&mut *buf)) }
    })
}

/// `VIDIOC_DQBUF`: takes a filled buffer of `buf.type_`/`buf.memory` off the queue. For a
/// multi-planar type the kernel writes the planes into `planes` (as many as it has, at most
/// `planes.len()`). On a non-blocking node `EAGAIN` means no buffer is done yet: it is returned,
/// not retried (the caller polls, with its own deadline).
pub fn dqbuf(fd: BorrowedFd<'_>, buf: &mut V4l2Buffer, planes: &mut [V4l2Plane]) -> Result<()> {
    attach_planes(buf, planes)?;
    retry_eintr(|| {
        // SAFETY: VIDIOC_DQBUF reads and writes a `struct v4l2_buffer`, which `V4l2Buffer`
        // mirrors; for multi-planar types `m.planes` points to `length` live, writable
        // `struct v4l2_plane`s (`planes`, borrowed for the call). DQBUF writes no other memory.
        unsafe { ioctl(fd, Updater::<VIDIOC_DQBUF, _>::new(&mut *buf)) }
    })
}

/// `VIDIOC_STREAMON` of `buf_type`.
pub fn streamon(fd: BorrowedFd<'_>, buf_type: u32) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: VIDIOC_STREAMON reads an `int`, the buffer type.
        unsafe { ioctl(fd, Setter::<VIDIOC_STREAMON, i32>::new(buf_type as i32)) }
    })
}

/// `VIDIOC_STREAMOFF` of `buf_type`: every queued buffer returns to user space.
pub fn streamoff(fd: BorrowedFd<'_>, buf_type: u32) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: VIDIOC_STREAMOFF reads an `int`, the buffer type.
        unsafe { ioctl(fd, Setter::<VIDIOC_STREAMOFF, i32>::new(buf_type as i32)) }
    })
}

/// `VIDIOC_QUERYCTRL`: describes control `q.id` (or, with `V4L2_CTRL_FLAG_NEXT_CTRL`, the next
/// one); `EINVAL` past the last.
pub fn queryctrl(fd: BorrowedFd<'_>, q: &mut V4l2QueryCtrl) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: VIDIOC_QUERYCTRL reads and writes a `struct v4l2_queryctrl` (plain integers),
        // which `V4l2QueryCtrl` mirrors.
        unsafe { ioctl(fd, Updater::<VIDIOC_QUERYCTRL, _>::new(q)) }
    })
}

/// `VIDIOC_QUERYMENU`: item `m.index` of menu control `m.id`; `EINVAL` for a hole.
pub fn querymenu(fd: BorrowedFd<'_>, m: &mut V4l2QueryMenu) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: VIDIOC_QUERYMENU reads and writes a `struct v4l2_querymenu` (plain integers),
        // which `V4l2QueryMenu` mirrors.
        unsafe { ioctl(fd, Updater::<VIDIOC_QUERYMENU, _>::new(m)) }
    })
}

/// `VIDIOC_S_CTRL`: sets control `id` to `value`; returns the value the driver kept.
pub fn s_ctrl(fd: BorrowedFd<'_>, id: u32, value: i32) -> Result<i32> {
    let mut c = V4l2Control { id, value };
    retry_eintr(|| {
        // SAFETY: VIDIOC_S_CTRL reads and writes a `struct v4l2_control` (two integers), which
        // `V4l2Control` mirrors.
        unsafe { ioctl(fd, Updater::<VIDIOC_S_CTRL, _>::new(&mut c)) }
    })?;
    Ok(c.value)
}

/// Builds a V4L2 fourcc code from four ASCII bytes.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    (code[0] as u32) | (code[1] as u32) << 8 | (code[2] as u32) << 16 | (code[3] as u32) << 24
}

/// `V4L2_PIX_FMT_XBGR32` (`'XR24'`): B, G, R, X bytes in memory — DRM's `XRGB8888`.
pub const V4L2_PIX_FMT_XBGR32: u32 = fourcc(b"XR24");
/// `V4L2_PIX_FMT_ABGR32` (`'AR24'`): DRM's `ARGB8888`.
pub const V4L2_PIX_FMT_ABGR32: u32 = fourcc(b"AR24");
/// `V4L2_PIX_FMT_RGB565` (`'RGBP'`): DRM's `RGB565`.
pub const V4L2_PIX_FMT_RGB565: u32 = fourcc(b"RGBP");
/// `V4L2_PIX_FMT_YUYV`: DRM's `YUYV`.
pub const V4L2_PIX_FMT_YUYV: u32 = fourcc(b"YUYV");
/// `V4L2_PIX_FMT_NV12` (one memory plane).
pub const V4L2_PIX_FMT_NV12: u32 = fourcc(b"NV12");
/// `V4L2_PIX_FMT_NV12M` (two memory planes).
pub const V4L2_PIX_FMT_NV12M: u32 = fourcc(b"NM12");

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn struct_sizes_match_kernel_headers() {
        assert_eq!(size_of::<V4l2Capability>(), 104);
        assert_eq!(size_of::<V4l2PixFormat>(), 48);
        assert_eq!(size_of::<V4l2PlanePixFormat>(), 20);
        assert_eq!(size_of::<V4l2PixFormatMplane>(), 192);
        assert_eq!(size_of::<V4l2Format>(), 208);
        assert_eq!(size_of::<V4l2RequestBuffers>(), 20);
        assert_eq!(size_of::<V4l2Plane>(), 64);
        assert_eq!(size_of::<V4l2Buffer>(), 88);
        assert_eq!(size_of::<V4l2FmtDesc>(), 64);
        assert_eq!(size_of::<V4l2Control>(), 8);
        assert_eq!(size_of::<V4l2QueryCtrl>(), 68);
        assert_eq!(size_of::<V4l2QueryMenu>(), 44);
        assert_eq!(std::mem::offset_of!(V4l2Buffer, timestamp), 24);
        assert_eq!(std::mem::offset_of!(V4l2Buffer, m), 64);
        assert_eq!(std::mem::offset_of!(V4l2Buffer, length), 72);
        assert_eq!(std::mem::offset_of!(V4l2Format, fmt), 8);
        assert_eq!(std::mem::offset_of!(V4l2PixFormatMplane, plane_fmt), 20);
        assert_eq!(std::mem::offset_of!(V4l2PixFormatMplane, num_planes), 180);
        assert_eq!(std::mem::offset_of!(V4l2PlanePixFormat, bytesperline), 4);
        assert_eq!(std::mem::offset_of!(V4l2Plane, m), 8);
        assert_eq!(std::mem::offset_of!(V4l2Plane, data_offset), 16);
        assert_eq!(std::mem::offset_of!(V4l2RequestBuffers, flags), 16);
    }

    #[test]
    fn opcodes_match_kernel_headers() {
        assert_eq!(VIDIOC_QUERYCAP as u64, 0x8068_5600);
        assert_eq!(VIDIOC_ENUM_FMT as u64, 0xc040_5602);
        assert_eq!(VIDIOC_G_FMT as u64, 0xc0d0_5604);
        assert_eq!(VIDIOC_S_FMT as u64, 0xc0d0_5605);
        assert_eq!(VIDIOC_REQBUFS as u64, 0xc014_5608);
        assert_eq!(VIDIOC_QUERYBUF as u64, 0xc058_5609);
        assert_eq!(VIDIOC_QBUF as u64, 0xc058_560f);
        assert_eq!(VIDIOC_DQBUF as u64, 0xc058_5611);
        assert_eq!(VIDIOC_STREAMON as u64, 0x4004_5612);
        assert_eq!(VIDIOC_STREAMOFF as u64, 0x4004_5613);
        assert_eq!(VIDIOC_G_CTRL as u64, 0xc008_561b);
        assert_eq!(VIDIOC_S_CTRL as u64, 0xc008_561c);
        assert_eq!(VIDIOC_QUERYCTRL as u64, 0xc044_5624);
        assert_eq!(VIDIOC_QUERYMENU as u64, 0xc02c_5625);
        assert_eq!(VIDIOC_TRY_FMT as u64, 0xc0d0_5640);
    }

    #[test]
    fn planes_are_attached_only_to_multiplanar_buffers() {
        let mut planes = [V4l2Plane::default(); 2];
        let mut b = V4l2Buffer::new(V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE, V4L2_MEMORY_DMABUF, 0);
        attach_planes(&mut b, &mut planes).unwrap();
        // SAFETY: the union's `planes` member is the one just written.
        assert_eq!(unsafe { b.m.planes }, planes.as_mut_ptr());
        assert_eq!(b.length, 2);
        assert_eq!(attach_planes(&mut b, &mut []), Err(Errno::INVAL));
        let mut nine = [V4l2Plane::default(); VIDEO_MAX_PLANES + 1];
        assert_eq!(attach_planes(&mut b, &mut nine), Err(Errno::INVAL));
        let mut s = V4l2Buffer::new(V4L2_BUF_TYPE_VIDEO_CAPTURE, V4L2_MEMORY_DMABUF, 0);
        assert_eq!(attach_planes(&mut s, &mut planes), Err(Errno::INVAL));
        attach_planes(&mut s, &mut []).unwrap();
    }

    #[test]
    fn unsafe_arguments_are_refused_before_the_kernel() {
        // A memfd is no V4L2 node: anything that reached the kernel would answer ENOTTY.
        use rustix::fd::AsFd;
        let m = rustix::fs::memfd_create("not-v4l2", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let fd = m.as_fd();
        let mut b = V4l2Buffer::new(V4L2_BUF_TYPE_VIDEO_CAPTURE, V4L2_MEMORY_USERPTR, 0);
        assert_eq!(qbuf(fd, &mut b, &mut []), Err(Errno::INVAL));
        let mut overlay = V4l2Format::new(3); // V4L2_BUF_TYPE_VIDEO_OVERLAY: window with pointers
        assert_eq!(g_fmt(fd, &mut overlay), Err(Errno::INVAL));
        assert_eq!(s_fmt(fd, &mut overlay), Err(Errno::INVAL));
        assert_eq!(try_fmt(fd, &mut overlay), Err(Errno::INVAL));
        let mut f = V4l2Format::new(V4L2_BUF_TYPE_VIDEO_CAPTURE);
        assert_eq!(g_fmt(fd, &mut f), Err(Errno::NOTTY));
        assert_eq!(querycap(fd).err(), Some(Errno::NOTTY));
        assert_eq!(streamon(fd, V4L2_BUF_TYPE_VIDEO_CAPTURE), Err(Errno::NOTTY));
        let mut d = V4l2Buffer::new(V4L2_BUF_TYPE_VIDEO_CAPTURE, V4L2_MEMORY_DMABUF, 0);
        assert_eq!(dqbuf(fd, &mut d, &mut []), Err(Errno::NOTTY));
    }

    #[test]
    fn fourcc_codes() {
        assert_eq!(V4L2_PIX_FMT_XBGR32, 0x3432_5258);
        assert_eq!(V4L2_PIX_FMT_NV12, 0x3231_564e);
    }
}
