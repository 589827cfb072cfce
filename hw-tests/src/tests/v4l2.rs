//! Hardware tests: v4l2. vivid as the camera: the constraint provider (`TRY_FMT`) and capture into
//! unibuf dma-bufs with `V4L2_MEMORY_DMABUF`, checked against vivid's 100% colorbar pattern.
//! Also the small helpers (CPU maps, colorbar check) the drm tests share.

use crate::harness::{self, Outcome, Test};
use anyhow::{bail, Context};
use rustix::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, BufferType, Permission};
use unibuf::interop::v4l2::{fourcc_str, CapturePlane, DmabufCapture, VideoNode};
use unibuf::object::Object;
use unibuf::sys::v4l2::V4L2_PIX_FMT_XBGR32;

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "v4l2::vivid_try_fmt",
            needs: "vivid (/dev/video*)",
            run: vivid_try_fmt,
        },
        Test {
            name: "v4l2::vivid_dmabuf_capture",
            needs: "vivid, a dma-buf backend (heap, udmabuf or DRM dumb)",
            run: vivid_dmabuf_capture,
        },
    ]
}

/// vivid's "100% Colorbar": eight vertical bars, left to right.
pub const COLORBAR: [(&str, [u8; 3]); 8] = [
    ("white", [255, 255, 255]),
    ("yellow", [255, 255, 0]),
    ("cyan", [0, 255, 255]),
    ("green", [0, 255, 0]),
    ("magenta", [255, 0, 255]),
    ("red", [255, 0, 0]),
    ("blue", [0, 0, 255]),
    ("black", [0, 0, 0]),
];

/// Checks an XRGB8888 frame for the 100% colorbar: the middle of each bar, at three rows in the
/// lower half (vivid's OSD text is at the top). Returns a summary of what was seen.
pub fn check_colorbar(data: &[u8], w: u32, h: u32, pitch: usize) -> anyhow::Result<String> {
    let px = |x: u32, y: u32| -> [u8; 3] {
        let o = y as usize * pitch + x as usize * 4;
        [data[o + 2], data[o + 1], data[o]]
    };
    let class = |v: u8| -> Option<u8> {
        if v >= 0xa0 {
            Some(255)
        } else if v <= 0x60 {
            Some(0)
        } else {
            None
        }
    };
    let mut seen = Vec::new();
    for y in [h / 2 + 8, h * 3 / 4, h - 8] {
        for (i, (name, rgb)) in COLORBAR.iter().enumerate() {
            let x = (2 * i as u32 + 1) * w / 16;
            let p = px(x, y);
            let c = [class(p[0]), class(p[1]), class(p[2])];
            if c != [Some(rgb[0]), Some(rgb[1]), Some(rgb[2])] {
                let row: Vec<String> = (0..8)
                    .map(|j| format!("{:02x?}", px((2 * j + 1) * w / 16, y)))
                    .collect();
                bail!(
                    "bar {i} ({name}) at ({x},{y}) is RGB {p:02x?}; row {y}: {}",
                    row.join(" ")
                );
            }
            if y == h * 3 / 4 {
                seen.push(format!("{name}={:02x}{:02x}{:02x}", p[0], p[1], p[2]));
            }
        }
    }
    Ok(seen.join(","))
}

/// The first vivid capture node, single-planar if there is one.
pub fn vivid_node() -> Option<VideoNode> {
    let nodes = VideoNode::find(Some("vivid"));
    let mut mplane = None;
    for p in nodes {
        if let Ok(n) = VideoNode::open(&p) {
            if !n.is_mplane() {
                return Some(n);
            }
            mplane.get_or_insert(n);
        }
    }
    mplane
}

/// Sets vivid's test pattern to the 100% colorbar and turns its OSD text off.
pub fn vivid_colorbar(node: &VideoNode) -> anyhow::Result<()> {
    node.set_menu_control("Test Pattern", "100% Colorbar")
        .context("setting vivid's test pattern")?;
    let _ = node.set_menu_control("OSD Text Mode", "None");
    Ok(())
}

fn vivid_try_fmt() -> anyhow::Result<Outcome> {
    let Some(node) = vivid_node() else {
        return harness::skip("no vivid capture node (vivid not loaded / not built)");
    };
    let fmts = node.formats()?;
    if !fmts.contains(&V4L2_PIX_FMT_XBGR32) {
        bail!(
            "{} does not list XR24: {:?}",
            node.path(),
            fmts.iter().map(|f| fourcc_str(*f)).collect::<Vec<_>>()
        );
    }
    let c = node.try_format(V4L2_PIX_FMT_XBGR32, 640, 480)?;
    if c.fourcc != V4L2_PIX_FMT_XBGR32 || c.planes.is_empty() {
        bail!("TRY_FMT XR24 gave {c:?}");
    }
    let p = c.planes[0];
    if p.pitch < c.width * 4 || (p.size as u64) < p.pitch as u64 * c.height as u64 {
        bail!(
            "TRY_FMT XR24 {}x{}: bytesperline {} sizeimage {} too small",
            c.width,
            c.height,
            p.pitch,
            p.size
        );
    }
    // TRY_FMT must not change the current format.
    let before = node.current_format()?;
    let _ = node.try_format(V4L2_PIX_FMT_XBGR32, 320, 180)?;
    let after = node.current_format()?;
    if before != after {
        bail!("TRY_FMT changed the current format: {before:?} -> {after:?}");
    }
    harness::pass(format!(
        "{} mplane={} XR24 {}x{} pitch {} size {} pitch_flexible={} ({} formats)",
        node.path(),
        c.mplane,
        c.width,
        c.height,
        p.pitch,
        p.size,
        c.pitch_flexible,
        fmts.len()
    ))
}

/// Allocates a dma-buf of `size` bytes (page-rounded) straight from the system heap, bypassing
/// unibuf (to show what the kernel does with one); `None` when this kernel has no system heap.
pub fn raw_heap_dmabuf(size: u64) -> anyhow::Result<Option<OwnedFd>> {
    use unibuf::sys::dma_heap as h;
    let page = rustix::param::page_size() as u64;
    let size = size.div_ceil(page) * page;
    let heap = match rustix::fs::open(
        "/dev/dma_heap/system",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(f) => f,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e).context("open /dev/dma_heap/system"),
    };
    let mut a = h::DmaHeapAllocationData {
        len: size,
        fd: 0,
        fd_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
        heap_flags: 0,
    };
    // SAFETY: DMA_HEAP_IOCTL_ALLOC takes a `struct dma_heap_allocation_data`.
    unsafe { unibuf::sys::ioctl_with(&heap, h::DMA_HEAP_IOCTL_ALLOC, &mut a) }
        .context("DMA_HEAP_IOCTL_ALLOC")?;
    // SAFETY: the ioctl returned a new fd that nothing else owns.
    let fd = unsafe { harness::own_fd(a.fd as i32) };
    Ok(Some(fd))
}

fn vivid_dmabuf_capture() -> anyhow::Result<Outcome> {
    let Some(node) = vivid_node() else {
        return harness::skip("no vivid capture node (vivid not loaded / not built)");
    };
    vivid_colorbar(&node)?;
    let c = node.try_format(V4L2_PIX_FMT_XBGR32, 640, 480)?;
    // Camera list + a CPU reader, reconciled; four objects from the chosen backend.
    let mut cpu = AttrList::with_types(&[BufferType::Image])?;
    cpu.set_accessor_kind(AccessorKind::Cpu)?
        .set_need_cpu_access(true)?
        .set_required_perm(Permission::ReadOnly)?;
    let r = Arc::new(
        unibuf::reconcile::reconcile([&c.attr_list()?, &cpu])
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let objs = match Object::allocate_n(&r, 4) {
        Ok(o) => o,
        Err(unibuf::Error::Unavailable { what, why }) => {
            return harness::skip(format!("no dma-buf backend: {what}: {why}"))
        }
        Err(e) => return Err(e.into()),
    };
    let img = r.image().context("no image layout")?;
    let v = img
        .v4l2_format()
        .context("layout not expressible as a V4L2 format")?;
    let pitch = v.bytesperline;
    node.set_format(c.fourcc, c.width, c.height, &[pitch])?;
    let planes: Vec<Vec<CapturePlane<'_>>> = objs
        .iter()
        .map(|o| {
            vec![CapturePlane {
                fd: o.fd(),
                length: o.size() as u32,
            }]
        })
        .collect();
    let mut cap = DmabufCapture::new(&node, planes)?;
    for i in 0..cap.len() {
        cap.queue(i)?;
    }
    cap.start()?;
    let mut seqs = Vec::new();
    let mut last = None;
    for _ in 0..8 {
        let f = cap.dequeue(Duration::from_secs(10))?;
        if f.error {
            bail!("frame {} flagged V4L2_BUF_FLAG_ERROR", f.sequence);
        }
        if (f.bytesused as u64) < pitch as u64 * c.height as u64 {
            bail!(
                "frame {} has {} bytes, less than one image",
                f.sequence,
                f.bytesused
            );
        }
        seqs.push(f.sequence);
        if let Some(prev) = last.replace(f.index) {
            cap.queue(prev)?;
        }
    }
    let idx = last.context("no frame")?;
    let obj = &objs[idx];
    let map = obj.map_read()?;
    let g = map.read()?;
    let seen = check_colorbar(&g.to_vec(), c.width, c.height, pitch as usize);
    g.end()?;
    let seen = seen?;
    cap.stop()?;
    if seqs.windows(2).any(|w| w[1] <= w[0]) {
        bail!("sequence numbers not increasing: {seqs:?}");
    }
    harness::pass(format!(
        "{} XR24 {}x{} pitch {} into {} unibuf {} buffers; 8 frames seq {seqs:?}; colorbar {seen}",
        node.path(),
        c.width,
        c.height,
        pitch,
        objs.len(),
        objs[0].backend().map(|b| b.to_string()).unwrap_or_default(),
    ))
}
