//! V4L2: a constraint provider for a video node and capture into imported dma-bufs.
//!
//! - [`VideoNode::open`] opens a node and picks its capture API (single- or multi-planar).
//! - [`VideoNode::try_format`] asks the driver (`VIDIOC_TRY_FMT`) what a fourcc at a size needs:
//!   per-plane `bytesperline` and `sizeimage` become pitch and size constraints
//!   ([`V4l2Constraints`]); it also finds out whether the driver accepts a padded pitch.
//! - [`VideoNode::set_format`] sets the format with unibuf's reconciled pitches and checks the
//!   driver kept them.
//! - [`DmabufCapture`] streams into unibuf buffers with `V4L2_MEMORY_DMABUF`: `REQBUFS`, `QBUF`
//!   with our fds, `STREAMON`, `DQBUF`, and checks that every dequeued buffer is one of ours.

use crate::attr::{AccessorKind, AttrList, BufferType, Permission};
use crate::error::{Error, Result};
use crate::sys::v4l2 as v;
use rustix::event::PollFlags;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A fourcc code printed as four characters.
pub fn fourcc_str(code: u32) -> String {
    code.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// One plane's needs as the driver states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneConstraint {
    /// `bytesperline`: the minimum (and, unless the driver accepts padding, exact) pitch.
    pub pitch: u32,
    /// `sizeimage`: bytes the plane needs.
    pub size: u32,
}

/// What a V4L2 node needs of a buffer for one format: the constraint provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4l2Constraints {
    /// Always [`AccessorKind::Camera`].
    pub accessor: AccessorKind,
    /// The node.
    pub device: String,
    /// The V4L2 fourcc the driver settled on (may differ from the one asked).
    pub fourcc: u32,
    /// Width the driver settled on.
    pub width: u32,
    /// Height the driver settled on.
    pub height: u32,
    /// Multi-planar API (one buffer per memory plane).
    pub mplane: bool,
    /// Per memory plane.
    pub planes: Vec<PlaneConstraint>,
    /// The driver accepted a padded `bytesperline` (a pitch aligned up to 256 bytes), so any pitch
    /// at least `planes[i].pitch` is fine; when false, the pitch must equal it.
    pub pitch_flexible: bool,
}

impl V4l2Constraints {
    /// The DRM fourcc for this V4L2 fourcc, where the two name the same memory layout.
    pub fn drm_fourcc(&self) -> Option<u32> {
        v4l2_to_drm_fourcc(self.fourcc)
    }

    /// Total bytes over all planes.
    pub fn total_size(&self) -> u64 {
        self.planes.iter().map(|p| p.size as u64).sum()
    }

    /// The camera's attribute list: an image of the driver's format and size, `bytesperline` as
    /// the minimum pitch, `sizeimage` as the minimum size, accessor kind `Camera` (it writes the
    /// buffer: read-write), the modifier set `{LINEAR}` (V4L2 has no modifiers: its
    /// `bytesperline` layouts are linear) with usage `video`. One unibuf buffer holds all planes, so a format with several
    /// memory planes (`NV12M`) is refused: use its single-memory-plane twin (`NV12`).
    pub fn attr_list(&self) -> Result<AttrList> {
        if self.planes.len() != 1 {
            return Err(Error::InvalidArgument(format!(
                "{}: {} has {} memory planes; unibuf puts all planes in one buffer, use a single-memory-plane format",
                self.device,
                fourcc_str(self.fourcc),
                self.planes.len()
            )));
        }
        let mut l = AttrList::with_types(&[BufferType::Image])?;
        l.set_image_v4l2_fourcc(self.fourcc)?
            .set_image_size(self.width, self.height)?
            .set_image_modifiers(vec![crate::layout::modifier::LINEAR])?
            .set_image_modifier_usage(crate::attr::ModifierUsage::Video)?
            .set_accessor_kind(AccessorKind::Camera)?
            .set_accessor_name(&format!("v4l2:{}", self.device))?
            .set_required_perm(Permission::ReadWrite)?
            .set_min_pitch(self.planes[0].pitch as u64)?
            .set_min_size(self.planes[0].size as u64)?;
        Ok(l)
    }
}

impl V4l2Constraints {
    /// One attribute list per memory plane, for formats whose planes live in separate buffers
    /// (multi-planar API, `NV12M`): plane `i` is a raw buffer of at least `planes[i].size` bytes
    /// (`sizeimage`) that the camera writes (accessor kind `Camera`, read-write); its pitch is the
    /// driver's `planes[i].pitch`, passed back to [`VideoNode::set_format`]. Each list is
    /// reconciled and allocated on its own, and buffer `n` of the capture is made of the `n`-th
    /// object of every plane. A format with one memory plane gets [`Self::attr_list`]'s image list.
    pub fn plane_attr_lists(&self) -> Result<Vec<AttrList>> {
        if self.planes.len() == 1 {
            return Ok(vec![self.attr_list()?]);
        }
        self.planes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if p.size == 0 || p.pitch == 0 {
                    return Err(Error::Device {
                        device: self.device.clone(),
                        what: format!(
                            "{} plane {i}: bytesperline {} sizeimage {}",
                            fourcc_str(self.fourcc),
                            p.pitch,
                            p.size
                        ),
                    });
                }
                let mut l = AttrList::raw(p.size as u64)?;
                l.set_accessor_kind(AccessorKind::Camera)?
                    .set_accessor_name(&format!("v4l2:{}:plane{i}", self.device))?
                    .set_required_perm(Permission::ReadWrite)?;
                Ok(l)
            })
            .collect()
    }
}

/// Maps the V4L2 fourccs whose layout has a DRM twin.
pub fn v4l2_to_drm_fourcc(code: u32) -> Option<u32> {
    use drm_fourcc::DrmFourcc as D;
    Some(match code {
        v::V4L2_PIX_FMT_XBGR32 => D::Xrgb8888 as u32,
        v::V4L2_PIX_FMT_ABGR32 => D::Argb8888 as u32,
        v::V4L2_PIX_FMT_RGB565 => D::Rgb565 as u32,
        v::V4L2_PIX_FMT_YUYV => D::Yuyv as u32,
        v::V4L2_PIX_FMT_NV12 => D::Nv12 as u32,
        _ => return None,
    })
}

/// An open V4L2 video node.
#[derive(Debug)]
pub struct VideoNode {
    path: String,
    fd: OwnedFd,
    caps: v::V4l2Capability,
    buf_type: u32,
}

impl VideoNode {
    /// Opens a capture node. Fails with [`Error::Unavailable`] when it cannot capture or stream.
    pub fn open(path: impl AsRef<Path>) -> Result<VideoNode> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let fd = rustix::fs::open(
            path,
            OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys("open", name.clone(), e))?;
        let caps =
            v::querycap(fd.as_fd()).map_err(|e| Error::sys("VIDIOC_QUERYCAP", name.clone(), e))?;
        let dc = if caps.capabilities & v::V4L2_CAP_DEVICE_CAPS != 0 {
            caps.device_caps
        } else {
            caps.capabilities
        };
        let buf_type = if dc & v::V4L2_CAP_VIDEO_CAPTURE != 0 {
            v::V4L2_BUF_TYPE_VIDEO_CAPTURE
        } else if dc & v::V4L2_CAP_VIDEO_CAPTURE_MPLANE != 0 {
            v::V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE
        } else {
            return Err(Error::Unavailable {
                what: format!("video capture on {name}"),
                why: format!(
                    "device caps {dc:#x} name neither VIDEO_CAPTURE nor VIDEO_CAPTURE_MPLANE"
                ),
            });
        };
        if dc & v::V4L2_CAP_STREAMING == 0 {
            return Err(Error::Unavailable {
                what: format!("streaming I/O on {name}"),
                why: format!("device caps {dc:#x} lack V4L2_CAP_STREAMING"),
            });
        }
        Ok(VideoNode {
            path: name,
            fd,
            caps,
            buf_type,
        })
    }

    /// Capture nodes whose driver name is `driver` (any driver when `None`), in the order of
    /// [`crate::devices::sort`] (`video2` before `video10`), found by [`crate::devices`].
    pub fn find(driver: Option<&str>) -> Vec<PathBuf> {
        crate::devices::enumerate_kind(crate::devices::DeviceKind::Video)
            .into_iter()
            .map(|d| d.devnode)
            .filter(|p| {
                VideoNode::open(p).is_ok_and(|node| driver.is_none_or(|d| node.driver() == d))
            })
            .collect()
    }

    /// The node's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The driver name (`"vivid"`).
    pub fn driver(&self) -> String {
        cstr(&self.caps.driver)
    }

    /// The card name.
    pub fn card(&self) -> String {
        cstr(&self.caps.card)
    }

    /// Whether the node uses the multi-planar API.
    pub fn is_mplane(&self) -> bool {
        self.buf_type == v::V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE
    }

    /// The capture fourccs the node lists (`VIDIOC_ENUM_FMT`).
    pub fn formats(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for index in 0..256 {
            let mut d = v::V4l2FmtDesc {
                index,
                type_: self.buf_type,
                ..Default::default()
            };
            match v::enum_fmt(self.fd.as_fd(), &mut d) {
                Ok(_) => out.push(d.pixelformat),
                Err(rustix::io::Errno::INVAL) => break,
                Err(e) => return Err(Error::sys("VIDIOC_ENUM_FMT", self.path.clone(), e)),
            }
        }
        Ok(out)
    }

    fn format_req(&self, fourcc: u32, width: u32, height: u32, pitches: &[u32]) -> v::V4l2Format {
        let mut f = v::V4l2Format::new(self.buf_type);
        if self.is_mplane() {
            let mut mp = v::V4l2PixFormatMplane {
                width,
                height,
                pixelformat: fourcc,
                field: v::V4L2_FIELD_NONE,
                num_planes: pitches.len().max(1) as u8,
                ..Default::default()
            };
            for (i, p) in pitches.iter().take(v::VIDEO_MAX_PLANES).enumerate() {
                mp.plane_fmt[i].bytesperline = *p;
            }
            f.fmt.pix_mp = mp;
        } else {
            f.fmt.pix = v::V4l2PixFormat {
                width,
                height,
                pixelformat: fourcc,
                field: v::V4L2_FIELD_NONE,
                bytesperline: pitches.first().copied().unwrap_or(0),
                ..Default::default()
            };
        }
        f
    }

    fn constraints_from(&self, f: &v::V4l2Format, pitch_flexible: bool) -> V4l2Constraints {
        let (fourcc, width, height, planes) = if self.is_mplane() {
            let mp = f.pix_mp();
            let n = (mp.num_planes as usize).min(v::VIDEO_MAX_PLANES);
            let pf = mp.plane_fmt;
            let planes = pf[..n]
                .iter()
                .map(|p| PlaneConstraint {
                    pitch: p.bytesperline,
                    size: p.sizeimage,
                })
                .collect();
            (mp.pixelformat, mp.width, mp.height, planes)
        } else {
            let p = f.pix();
            (
                p.pixelformat,
                p.width,
                p.height,
                vec![PlaneConstraint {
                    pitch: p.bytesperline,
                    size: p.sizeimage,
                }],
            )
        };
        V4l2Constraints {
            accessor: AccessorKind::Camera,
            device: self.path.clone(),
            fourcc,
            width,
            height,
            mplane: self.is_mplane(),
            planes,
            pitch_flexible,
        }
    }

    fn try_raw(&self, f: &mut v::V4l2Format) -> Result<()> {
        v::try_fmt(self.fd.as_fd(), f)
            .map_err(|e| Error::sys("VIDIOC_TRY_FMT", self.path.clone(), e))?;
        Ok(())
    }

    /// The constraint provider: what the driver needs for `fourcc` at `width`×`height`
    /// (`VIDIOC_TRY_FMT`; nothing changes on the device). The driver may adjust the size or the
    /// format: the answer says what it settled on, and the caller decides whether that will do.
    pub fn try_format(&self, fourcc: u32, width: u32, height: u32) -> Result<V4l2Constraints> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: format of {width}x{height}",
                self.path
            )));
        }
        let mut f = self.format_req(fourcc, width, height, &[]);
        self.try_raw(&mut f)?;
        let base = self.constraints_from(&f, false);
        // Probe whether a padded pitch is accepted: ask for each plane's pitch rounded up to 256
        // bytes plus 256, and see whether the driver keeps it.
        let padded: Vec<u32> = base
            .planes
            .iter()
            .map(|p| (p.pitch.div_ceil(256) + 1) * 256)
            .collect();
        let mut g = self.format_req(base.fourcc, base.width, base.height, &padded);
        let flexible = match self.try_raw(&mut g) {
            Ok(()) => {
                let c = self.constraints_from(&g, false);
                c.planes.iter().map(|p| p.pitch).eq(padded.iter().copied())
            }
            Err(_) => false,
        };
        Ok(V4l2Constraints {
            pitch_flexible: flexible,
            ..base
        })
    }

    /// The current format (`VIDIOC_G_FMT`).
    pub fn current_format(&self) -> Result<V4l2Constraints> {
        let mut f = v::V4l2Format::new(self.buf_type);
        v::g_fmt(self.fd.as_fd(), &mut f)
            .map_err(|e| Error::sys("VIDIOC_G_FMT", self.path.clone(), e))?;
        Ok(self.constraints_from(&f, false))
    }

    /// Sets the format with unibuf's per-plane pitches (`VIDIOC_S_FMT`) and checks that the driver
    /// kept the fourcc, the size and the pitches; returns what it set.
    pub fn set_format(
        &self,
        fourcc: u32,
        width: u32,
        height: u32,
        pitches: &[u32],
    ) -> Result<V4l2Constraints> {
        let mut f = self.format_req(fourcc, width, height, pitches);
        v::s_fmt(self.fd.as_fd(), &mut f)
            .map_err(|e| Error::sys("VIDIOC_S_FMT", self.path.clone(), e))?;
        let c = self.constraints_from(&f, false);
        let got: Vec<u32> = c.planes.iter().map(|p| p.pitch).collect();
        if c.fourcc != fourcc || c.width != width || c.height != height || got != pitches {
            return Err(Error::Device {
                device: self.path.clone(),
                what: format!(
                    "S_FMT {} {width}x{height} pitches {pitches:?} came back as {} {}x{} pitches {got:?}",
                    fourcc_str(fourcc),
                    fourcc_str(c.fourcc),
                    c.width,
                    c.height
                ),
            });
        }
        Ok(c)
    }

    /// Finds a control by its name (`"Test Pattern"`), returning its id and description.
    pub fn find_control(&self, name: &str) -> Result<Option<v::V4l2QueryCtrl>> {
        let mut id = v::V4L2_CTRL_FLAG_NEXT_CTRL;
        for _ in 0..4096 {
            let mut q = v::V4l2QueryCtrl {
                id,
                ..Default::default()
            };
            match v::queryctrl(self.fd.as_fd(), &mut q) {
                Ok(_) => {}
                Err(rustix::io::Errno::INVAL) => return Ok(None),
                Err(e) => return Err(Error::sys("VIDIOC_QUERYCTRL", self.path.clone(), e)),
            }
            if cstr(&q.name).eq_ignore_ascii_case(name) && q.flags & v::V4L2_CTRL_FLAG_DISABLED == 0
            {
                return Ok(Some(q));
            }
            id = q.id | v::V4L2_CTRL_FLAG_NEXT_CTRL;
        }
        Ok(None)
    }

    /// The item names of a menu control, by index.
    pub fn menu_items(&self, ctrl: &v::V4l2QueryCtrl) -> Result<Vec<(u32, String)>> {
        let mut out = Vec::new();
        let (lo, hi) = (ctrl.minimum.max(0) as u32, ctrl.maximum.max(0) as u32);
        for index in lo..=hi.min(lo + 255) {
            let mut m = v::V4l2QueryMenu {
                id: ctrl.id,
                index,
                ..Default::default()
            };
            match v::querymenu(self.fd.as_fd(), &mut m) {
                Ok(_) => {
                    let name = m.name;
                    out.push((index, cstr(&name)));
                }
                Err(rustix::io::Errno::INVAL) => {}
                Err(e) => return Err(Error::sys("VIDIOC_QUERYMENU", self.path.clone(), e)),
            }
        }
        Ok(out)
    }

    /// Sets a control by id (`VIDIOC_S_CTRL`).
    pub fn set_control(&self, id: u32, value: i32) -> Result<()> {
        v::s_ctrl(self.fd.as_fd(), id, value).map_err(|e| {
            Error::sys("VIDIOC_S_CTRL", format!("{} control {id:#x}", self.path), e)
        })?;
        Ok(())
    }

    /// Sets a menu control, both named (`"Test Pattern"`, `"100% Colorbar"`).
    pub fn set_menu_control(&self, control: &str, item: &str) -> Result<()> {
        let q = self
            .find_control(control)?
            .ok_or_else(|| Error::Unavailable {
                what: format!("control {control:?}"),
                why: format!(
                    "{} ({}) has no such enabled control",
                    self.path,
                    self.driver()
                ),
            })?;
        if q.type_ != v::V4L2_CTRL_TYPE_MENU {
            return Err(Error::InvalidArgument(format!(
                "control {control:?} of {} is of type {}, not a menu",
                self.path, q.type_
            )));
        }
        let items = self.menu_items(&q)?;
        let (index, _) = items
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(item))
            .ok_or_else(|| Error::Unavailable {
                what: format!("menu item {item:?} of {control:?}"),
                why: format!(
                    "{} offers {:?}",
                    self.path,
                    items.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>()
                ),
            })?;
        self.set_control(q.id, *index as i32)
    }

    /// The node's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One memory plane of a capture buffer: a dma-buf and the bytes of it the driver may fill.
#[derive(Debug, Clone, Copy)]
pub struct CapturePlane<'a> {
    /// The dma-buf.
    pub fd: BorrowedFd<'a>,
    /// Its length in bytes (at least the plane's `sizeimage`).
    pub length: u32,
}

/// A dequeued frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Index of the buffer (into the list given to [`DmabufCapture::new`]).
    pub index: usize,
    /// The driver's frame sequence number.
    pub sequence: u32,
    /// Bytes used in the first plane.
    pub bytesused: u32,
    /// The driver flagged the frame as corrupted (`V4L2_BUF_FLAG_ERROR`).
    pub error: bool,
}

/// Streaming capture into caller-owned dma-bufs (`V4L2_MEMORY_DMABUF`). Stops streaming and
/// releases the driver's buffer slots on drop.
#[derive(Debug)]
pub struct DmabufCapture<'a> {
    node: &'a VideoNode,
    buffers: Vec<Vec<CapturePlane<'a>>>,
    queued: Vec<bool>,
    streaming: bool,
}

impl<'a> DmabufCapture<'a> {
    /// Requests `buffers.len()` DMABUF slots (`VIDIOC_REQBUFS`) for buffers of one plane each
    /// (single-planar) or of as many planes as the format has (multi-planar).
    pub fn new(node: &'a VideoNode, buffers: Vec<Vec<CapturePlane<'a>>>) -> Result<Self> {
        if buffers.is_empty() || buffers.len() > 32 {
            return Err(Error::InvalidArgument(format!(
                "{}: {} capture buffers (1..=32)",
                node.path,
                buffers.len()
            )));
        }
        let nplanes = buffers[0].len();
        if nplanes == 0
            || buffers.iter().any(|b| b.len() != nplanes)
            || (!node.is_mplane() && nplanes != 1)
            || nplanes > v::VIDEO_MAX_PLANES
        {
            return Err(Error::InvalidArgument(format!(
                "{}: every buffer needs the same number of planes (1 for the single-planar API)",
                node.path
            )));
        }
        let mut rb = v::V4l2RequestBuffers {
            count: buffers.len() as u32,
            type_: node.buf_type,
            memory: v::V4L2_MEMORY_DMABUF,
            ..Default::default()
        };
        v::reqbufs(node.fd.as_fd(), &mut rb)
            .map_err(|e| Error::sys("VIDIOC_REQBUFS(DMABUF)", node.path.clone(), e))?;
        let n = buffers.len();
        let cap = DmabufCapture {
            node,
            buffers,
            queued: vec![false; n],
            streaming: false,
        };
        if rb.count as usize != n {
            return Err(Error::Device {
                device: node.path.clone(),
                what: format!("REQBUFS gave {} DMABUF slots, {n} were asked", rb.count),
            });
        }
        Ok(cap)
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    /// Whether there are no buffers (never: `new` refuses that).
    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// Queues buffer `index` (`VIDIOC_QBUF` with our dma-buf fds).
    pub fn queue(&mut self, index: usize) -> Result<()> {
        let planes = self.buffers.get(index).ok_or_else(|| {
            Error::InvalidArgument(format!("{}: no capture buffer {index}", self.node.path))
        })?;
        if self.queued[index] {
            return Err(Error::InvalidArgument(format!(
                "{}: capture buffer {index} is queued already",
                self.node.path
            )));
        }
        let mut b = v::V4l2Buffer::new(self.node.buf_type, v::V4L2_MEMORY_DMABUF, index as u32);
        b.field = v::V4L2_FIELD_NONE;
        let mut vp = [v::V4l2Plane::default(); v::VIDEO_MAX_PLANES];
        let nplanes = if self.node.is_mplane() {
            for (i, p) in planes.iter().enumerate() {
                vp[i].m.fd = p.fd.as_raw_fd();
                vp[i].length = p.length;
            }
            planes.len()
        } else {
            b.m.fd = planes[0].fd.as_raw_fd();
            b.length = planes[0].length;
            0
        };
        v::qbuf(self.node.fd.as_fd(), &mut b, &mut vp[..nplanes]).map_err(|e| {
            Error::sys(
                "VIDIOC_QBUF(DMABUF)",
                format!("{} buffer {index}", self.node.path),
                e,
            )
        })?;
        self.queued[index] = true;
        Ok(())
    }

    /// Starts streaming (`VIDIOC_STREAMON`).
    pub fn start(&mut self) -> Result<()> {
        v::streamon(self.node.fd.as_fd(), self.node.buf_type)
            .map_err(|e| Error::sys("VIDIOC_STREAMON", self.node.path.clone(), e))?;
        self.streaming = true;
        Ok(())
    }

    /// Waits up to `timeout` for a filled buffer and dequeues it (`VIDIOC_DQBUF`), checking that
    /// the driver returned one of our buffers: a known index, queued by us, with our fd(s).
    ///
    /// The wait has a deadline: `poll` gets the time left, and a wake-up with no buffer behind it
    /// (DQBUF answers `EAGAIN`) goes back to `poll` with what is left; when `poll` cannot wait (it
    /// reports `POLLERR` at once, as it does while streaming with no buffer queued) it sleeps 2 ms
    /// between tries instead of spinning. When
    /// nothing is done in time: [`Error::Timeout`].
    pub fn dequeue(&mut self, timeout: Duration) -> Result<Frame> {
        let mut b = v::V4l2Buffer::new(self.node.buf_type, v::V4L2_MEMORY_DMABUF, 0);
        let mut vp = [v::V4l2Plane::default(); v::VIDEO_MAX_PLANES];
        let nplanes = if self.node.is_mplane() {
            v::VIDEO_MAX_PLANES
        } else {
            0
        };
        let fd = self.node.fd.as_fd();
        let got = poll_then(fd, timeout, || {
            b = v::V4l2Buffer::new(self.node.buf_type, v::V4L2_MEMORY_DMABUF, 0);
            v::dqbuf(fd, &mut b, &mut vp[..nplanes])
        })
        .map_err(|(op, e)| Error::sys(op, self.node.path.clone(), e))?;
        if got.is_none() {
            return Err(Error::Timeout {
                what: format!("{}: no frame", self.node.path),
                after: timeout,
            });
        }
        let index = b.index as usize;
        let ours = self.buffers.get(index).ok_or_else(|| Error::Device {
            device: self.node.path.clone(),
            what: format!(
                "DQBUF returned index {index}, we own {}",
                self.buffers.len()
            ),
        })?;
        if !self.queued[index] {
            return Err(Error::Device {
                device: self.node.path.clone(),
                what: format!("DQBUF returned buffer {index}, which was not queued"),
            });
        }
        self.queued[index] = false;
        let (fds, bytesused): (Vec<i32>, u32) = if self.node.is_mplane() {
            let n = (b.length as usize).min(v::VIDEO_MAX_PLANES);
            (
                vp[..n].iter().map(v::V4l2Plane::dmabuf_fd).collect(),
                vp[0].bytesused,
            )
        } else {
            (vec![b.dmabuf_fd()], b.bytesused)
        };
        let want: Vec<i32> = ours.iter().map(|p| p.fd.as_raw_fd()).collect();
        if b.memory != v::V4L2_MEMORY_DMABUF || fds != want {
            return Err(Error::Device {
                device: self.node.path.clone(),
                what: format!(
                    "DQBUF buffer {index}: memory {} fds {fds:?}, we queued DMABUF fds {want:?}",
                    b.memory
                ),
            });
        }
        Ok(Frame {
            index,
            sequence: b.sequence,
            bytesused,
            error: b.flags & v::V4L2_BUF_FLAG_ERROR != 0,
        })
    }

    /// Stops streaming (`VIDIOC_STREAMOFF`); every buffer returns to us.
    pub fn stop(&mut self) -> Result<()> {
        if self.streaming {
            v::streamoff(self.node.fd.as_fd(), self.node.buf_type)
                .map_err(|e| Error::sys("VIDIOC_STREAMOFF", self.node.path.clone(), e))?;
            self.streaming = false;
            self.queued.iter_mut().for_each(|q| *q = false);
        }
        Ok(())
    }
}

/// How long [`poll_then`] sleeps before trying again when `poll` cannot wait (it reports an
/// error condition at once, as V4L2 does while streaming with no buffer queued).
const POLL_ERR_BACKOFF: Duration = Duration::from_millis(2);

/// Waits until `fd` is readable and calls `attempt`, until `attempt` answers anything but
/// `EAGAIN` (returned as `Some`) or `timeout` has passed (`None`). `Err` names the call that
/// failed and its errno.
///
/// `poll` always gets the time left to the deadline, so wake-ups with nothing behind them (an
/// `EAGAIN` after `POLLIN`, a signal) cannot stretch the wait. When `poll` returns at once
/// without `POLLIN` (`POLLERR`: for V4L2, streaming with no buffer queued, or not streaming) and
/// `attempt` still answers `EAGAIN`, it sleeps [`POLL_ERR_BACKOFF`] (at most the time left)
/// before the next round instead of spinning.
fn poll_then<T>(
    fd: BorrowedFd<'_>,
    timeout: Duration,
    mut attempt: impl FnMut() -> rustix::io::Result<T>,
) -> std::result::Result<Option<T>, (&'static str, rustix::io::Errno)> {
    let start = Instant::now();
    let left = || timeout.saturating_sub(start.elapsed());
    loop {
        let revents = match crate::sys::poll::poll_one(fd, PollFlags::IN, Some(left())) {
            Ok(r) if r.is_empty() => return Ok(None),
            Ok(r) => r,
            Err(e) => return Err(("poll", e)),
        };
        match attempt() {
            Err(rustix::io::Errno::AGAIN) => {
                let wait = left();
                if wait.is_zero() {
                    return Ok(None);
                }
                if !revents.contains(PollFlags::IN) {
                    std::thread::sleep(POLL_ERR_BACKOFF.min(wait));
                }
            }
            Err(e) => return Err(("VIDIOC_DQBUF", e)),
            Ok(t) => return Ok(Some(t)),
        }
    }
}

impl Drop for DmabufCapture<'_> {
    fn drop(&mut self) {
        let _ = self.stop();
        let mut rb = v::V4l2RequestBuffers {
            count: 0,
            type_: self.node.buf_type,
            memory: v::V4L2_MEMORY_DMABUF,
            ..Default::default()
        };
        // Count 0 frees the slots.
        let _ = v::reqbufs(self.node.fd.as_fd(), &mut rb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourcc_mapping() {
        assert_eq!(fourcc_str(v::V4L2_PIX_FMT_XBGR32), "XR24");
        assert_eq!(
            v4l2_to_drm_fourcc(v::V4L2_PIX_FMT_XBGR32),
            Some(drm_fourcc::DrmFourcc::Xrgb8888 as u32)
        );
        assert_eq!(v4l2_to_drm_fourcc(v::fourcc(b"ZZZZ")), None);
    }

    #[test]
    fn plane_lists_one_per_memory_plane() {
        let c = V4l2Constraints {
            accessor: AccessorKind::Camera,
            device: "/dev/video9".into(),
            fourcc: v::V4L2_PIX_FMT_NV12M,
            width: 64,
            height: 32,
            mplane: true,
            planes: vec![
                PlaneConstraint {
                    pitch: 64,
                    size: 2048,
                },
                PlaneConstraint {
                    pitch: 64,
                    size: 1024,
                },
            ],
            pitch_flexible: false,
        };
        assert!(matches!(c.attr_list(), Err(Error::InvalidArgument(_))));
        let l = c.plane_attr_lists().unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].accessor_kind(), Some(AccessorKind::Camera));
        let mut bad = c.clone();
        bad.planes[1].size = 0;
        assert!(bad.plane_attr_lists().is_err());
        let one = V4l2Constraints {
            fourcc: v::V4L2_PIX_FMT_XBGR32,
            planes: vec![PlaneConstraint {
                pitch: 256,
                size: 8192,
            }],
            ..c
        };
        let l = one.plane_attr_lists().unwrap();
        assert_eq!(l.len(), 1);
        assert!(l[0].types().contains(BufferType::Image));
    }

    /// CPU time this thread has used (`/proc/thread-self/schedstat`, in ns), if the kernel tells.
    fn thread_cpu() -> Option<Duration> {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        Some(Duration::from_nanos(
            s.split_whitespace().next()?.parse().ok()?,
        ))
    }

    #[test]
    fn poll_then_honours_the_timeout_when_poll_cannot_wait() {
        // The write end of a pipe whose read end is closed polls POLLERR at once, without POLLIN:
        // what a V4L2 node streaming with no buffer queued does. An attempt that keeps answering
        // EAGAIN (DQBUF there) must end in a timeout after `timeout`, without spinning.
        let (r, w) = rustix::pipe::pipe().unwrap();
        drop(r);
        let timeout = Duration::from_millis(200);
        let mut attempts = 0u32;
        let (t0, c0) = (Instant::now(), thread_cpu());
        let got: std::result::Result<Option<()>, _> = poll_then(w.as_fd(), timeout, || {
            attempts += 1;
            Err(rustix::io::Errno::AGAIN)
        });
        let (wall, c1) = (t0.elapsed(), thread_cpu());
        assert_eq!(got, Ok(None));
        assert!(
            wall >= timeout,
            "returned after {wall:?}, before the {timeout:?} timeout"
        );
        assert!(wall < timeout + Duration::from_secs(1), "took {wall:?}");
        // With the 2 ms back-off: about 100 attempts; a spin would make hundreds of thousands.
        assert!(
            (2..=150).contains(&attempts),
            "{attempts} attempts in {wall:?}"
        );
        if let (Some(c0), Some(c1)) = (c0, c1) {
            let cpu = c1.saturating_sub(c0);
            assert!(cpu < wall / 2, "used {cpu:?} of CPU in {wall:?}: spinning");
        }
    }

    #[test]
    fn poll_then_retries_eagain_after_a_wakeup_and_stops_on_success_or_error() {
        // A pipe with a byte in it polls POLLIN: EAGAIN twice, then a result.
        let (r, w) = rustix::pipe::pipe().unwrap();
        rustix::io::write(&w, b"x").unwrap();
        let mut n = 0;
        let got = poll_then(r.as_fd(), Duration::from_secs(5), || {
            n += 1;
            if n < 3 {
                Err(rustix::io::Errno::AGAIN)
            } else {
                Ok(n)
            }
        });
        assert_eq!(got, Ok(Some(3)));
        let got: std::result::Result<Option<()>, _> =
            poll_then(r.as_fd(), Duration::from_secs(5), || {
                Err(rustix::io::Errno::INVAL)
            });
        assert_eq!(got, Err(("VIDIOC_DQBUF", rustix::io::Errno::INVAL)));
        // Nothing to read, nothing wrong: poll itself times out and the attempt never runs.
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let t0 = Instant::now();
        let got: std::result::Result<Option<()>, _> =
            poll_then(r.as_fd(), Duration::from_millis(50), || unreachable!());
        assert_eq!(got, Ok(None));
        assert!(t0.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn open_missing_node_names_path() {
        let e = VideoNode::open("/nonexistent/video9").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/video9"), "{e}");
    }
}
