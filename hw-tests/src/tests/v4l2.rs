//! Hardware tests: v4l2. vivid as the camera: the constraint provider (`TRY_FMT`) and capture into
//! unibuf dma-bufs with `V4L2_MEMORY_DMABUF`, checked against vivid's 100% colorbar pattern.
//! Also the small helpers (CPU maps, colorbar check) the drm tests share.

use super::env::{missing, Feature};
use crate::harness::{self, Outcome, Test};
use anyhow::{bail, Context};
use rustix::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, BufferType, Permission};
use unibuf::interop::v4l2::{fourcc_str, CapturePlane, DmabufCapture, VideoNode};
use unibuf::object::Object;
use unibuf::sys::v4l2::{V4L2_PIX_FMT_NV12M, V4L2_PIX_FMT_XBGR32};

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
        Test {
            name: "v4l2::vivid_dequeue_timeout",
            needs: "vivid, a dma-buf backend (heap, udmabuf or DRM dumb)",
            run: vivid_dequeue_timeout,
        },
        Test {
            name: "v4l2::vivid_mplane_try_fmt",
            needs: "a multi-planar vivid instance (vivid multiplanar=2)",
            run: vivid_mplane_try_fmt,
        },
        Test {
            name: "v4l2::vivid_mplane_dmabuf_capture",
            needs: "a multi-planar vivid instance (multiplanar=2), a dma-buf backend",
            run: vivid_mplane_dmabuf_capture,
        },
        Test {
            name: "v4l2::vivid_mplane_nv12m_capture",
            needs: "a multi-planar vivid instance (multiplanar=2), a dma-buf backend",
            run: vivid_mplane_nv12m_capture,
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

/// The first vivid capture node of the given API (multi-planar or single-planar), found by its
/// capabilities, whatever its `/dev/videoN` number.
pub fn vivid_node_api(mplane: bool) -> Option<VideoNode> {
    VideoNode::find(Some("vivid"))
        .into_iter()
        .filter_map(|p| VideoNode::open(&p).ok())
        .find(|n| n.is_mplane() == mplane)
}

/// The first vivid capture node, single-planar if there is one.
pub fn vivid_node() -> Option<VideoNode> {
    vivid_node_api(false).or_else(|| vivid_node_api(true))
}

/// The vivid node of one API, or the outcome for its absence (FAIL on a VM kernel with vivid:
/// scripts/vm makes one single-planar and one multi-planar instance).
fn vivid_or_missing(mplane: bool) -> Result<VideoNode, anyhow::Result<Outcome>> {
    vivid_node_api(mplane).ok_or_else(|| {
        let api = if mplane {
            "multi-planar (vivid multiplanar=2)"
        } else {
            "single-planar (vivid multiplanar=1)"
        };
        missing(
            Feature::Vivid,
            format!(
                "no {api} vivid capture node among {:?}",
                VideoNode::find(Some("vivid"))
            ),
        )
    })
}

/// The bytes of a captured object, copied out through a CPU read map (`DMA_BUF_IOCTL_SYNC`
/// bracketed). The one place these tests read captured memory.
pub fn captured_bytes(obj: &Object) -> anyhow::Result<Vec<u8>> {
    let map = obj.map_read()?;
    let g = map.read()?;
    let v = g.to_vec();
    g.end()?;
    Ok(v)
}

/// Queues every buffer, streams `frames` frames (each one re-queued once the next has arrived),
/// stops, and returns the index of the last frame's buffer (still dequeued) and the sequence
/// numbers. Fails on a frame flagged as an error, a first plane with fewer than
/// `min_first_plane` bytes, or sequence numbers that do not increase.
fn capture_frames(
    cap: &mut DmabufCapture<'_>,
    frames: usize,
    min_first_plane: u64,
) -> anyhow::Result<(usize, Vec<u32>)> {
    for i in 0..cap.len() {
        cap.queue(i)?;
    }
    cap.start()?;
    let mut seqs = Vec::new();
    let mut last = None;
    for _ in 0..frames {
        let f = cap.dequeue(Duration::from_secs(10))?;
        if f.error {
            bail!("frame {} flagged V4L2_BUF_FLAG_ERROR", f.sequence);
        }
        if u64::from(f.bytesused) < min_first_plane {
            bail!(
                "frame {}: first plane has {} bytes, less than one image ({min_first_plane})",
                f.sequence,
                f.bytesused
            );
        }
        seqs.push(f.sequence);
        if let Some(prev) = last.replace(f.index) {
            cap.queue(prev)?;
        }
    }
    cap.stop()?;
    let idx = last.context("no frame")?;
    if seqs.windows(2).any(|w| w[1] <= w[0]) {
        bail!("sequence numbers not increasing: {seqs:?}");
    }
    Ok((idx, seqs))
}

/// Capture buffers of one memory plane each: the whole of each object.
pub fn one_plane_each(objs: &[Object]) -> Vec<Vec<CapturePlane<'_>>> {
    objs.iter()
        .map(|o| {
            vec![CapturePlane {
                fd: o.fd(),
                length: o.size() as u32,
            }]
        })
        .collect()
}

/// Sets vivid's test pattern to the 100% colorbar and turns its OSD text off.
pub fn vivid_colorbar(node: &VideoNode) -> anyhow::Result<()> {
    node.set_menu_control("Test Pattern", "100% Colorbar")
        .context("setting vivid's test pattern")?;
    let _ = node.set_menu_control("OSD Text Mode", "None");
    Ok(())
}

fn vivid_try_fmt() -> anyhow::Result<Outcome> {
    match vivid_or_missing(false) {
        Ok(node) => try_fmt_xr24(&node),
        Err(o) => o,
    }
}

fn try_fmt_xr24(node: &VideoNode) -> anyhow::Result<Outcome> {
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
    let fd = h::alloc(
        rustix::fd::AsFd::as_fd(&heap),
        size,
        (libc::O_RDWR | libc::O_CLOEXEC) as u32,
        0,
    )
    .context("DMA_HEAP_IOCTL_ALLOC")?;
    Ok(Some(fd))
}

fn vivid_dmabuf_capture() -> anyhow::Result<Outcome> {
    match vivid_or_missing(false) {
        Ok(node) => capture_xr24(&node),
        Err(o) => o,
    }
}

/// XR24 capture into four unibuf objects (one memory plane each, through either API), 8 frames,
/// the last checked for the colorbar.
fn capture_xr24(node: &VideoNode) -> anyhow::Result<Outcome> {
    vivid_colorbar(node)?;
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
    let objs = match Object::allocator(&r).allocate_n(4) {
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
    let planes = one_plane_each(&objs);
    let mut cap = DmabufCapture::new(node, planes)?;
    let (idx, seqs) = capture_frames(&mut cap, 8, pitch as u64 * c.height as u64)?;
    let data = captured_bytes(&objs[idx])?;
    let seen = check_colorbar(&data, c.width, c.height, pitch as usize)?;
    harness::pass(format!(
        "{} mplane={} XR24 {}x{} pitch {} into {} unibuf {} buffers; 8 frames seq {seqs:?}; colorbar {seen}",
        node.path(),
        node.is_mplane(),
        c.width,
        c.height,
        pitch,
        objs.len(),
        objs[0].backend().map(|b| b.to_string()).unwrap_or_default(),
    ))
}

/// CPU time this thread has used: `/proc/thread-self/schedstat` (ns) where the kernel keeps it,
/// else utime + stime of `/proc/thread-self/stat` (clock ticks; the test kernels lack schedstats).
fn thread_cpu() -> Option<Duration> {
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        return Some(Duration::from_nanos(
            s.split_whitespace().next()?.parse().ok()?,
        ));
    }
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after "pid (comm)": state is field 3, utime 14, stime 15.
    let mut f = s.get(s.rfind(')')? + 1..)?.split_whitespace().skip(11);
    let ticks: u64 = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Some(Duration::from_millis(ticks * 1000 / hz))
}

/// Streaming on with no buffer queued: vivid's poll answers `POLLERR` at once and `DQBUF`
/// `EAGAIN`, so no frame can come. `dequeue` must give up with `Error::Timeout` once its timeout
/// has passed, without spinning a core meanwhile (before the fix, DQBUF's EAGAIN was retried in a
/// loop that ignored the timeout and never returned). Then a queued buffer is still captured.
fn vivid_dequeue_timeout() -> anyhow::Result<Outcome> {
    let node = match vivid_or_missing(false) {
        Ok(n) => n,
        Err(o) => return o,
    };
    let c = node.try_format(V4L2_PIX_FMT_XBGR32, 320, 240)?;
    let r = Arc::new(
        unibuf::reconcile::reconcile([&c.attr_list()?]).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let objs = match Object::allocator(&r).allocate_n(4) {
        Ok(o) => o,
        Err(unibuf::Error::Unavailable { what, why }) => {
            return harness::skip(format!("no dma-buf backend: {what}: {why}"))
        }
        Err(e) => return Err(e.into()),
    };
    let pitch = r
        .image()
        .and_then(|i| i.v4l2_format())
        .context("layout not expressible as a V4L2 format")?
        .bytesperline;
    node.set_format(c.fourcc, c.width, c.height, &[pitch])?;
    let planes = one_plane_each(&objs);
    let mut cap = DmabufCapture::new(&node, planes)?;
    cap.start()?;
    let timeout = Duration::from_millis(300);
    let (t0, c0) = (std::time::Instant::now(), thread_cpu());
    let got = cap.dequeue(timeout);
    let (wall, c1) = (t0.elapsed(), thread_cpu());
    match got {
        Err(unibuf::Error::Timeout { after, .. }) if after == timeout => {}
        other => bail!("dequeue with no buffer queued gave {other:?}, not a timeout"),
    }
    if wall < timeout || wall > timeout + Duration::from_secs(3) {
        bail!("dequeue({timeout:?}) returned after {wall:?}");
    }
    let cpu = match (c0, c1) {
        (Some(a), Some(b)) => {
            let cpu = b.saturating_sub(a);
            if cpu > wall / 2 {
                bail!("dequeue used {cpu:?} of CPU in {wall:?} of waiting: it spins");
            }
            format!("{cpu:?}")
        }
        _ => "unknown (no /proc/thread-self)".into(),
    };
    // The node is not stuck: queued buffers are filled and dequeued in order. Two, because vb2
    // starts streaming only with `min_buffers_needed` queued (vivid asks 2 on older kernels, 5.10).
    cap.queue(0)?;
    cap.queue(1)?;
    let f = cap.dequeue(Duration::from_secs(10))?;
    if f.index != 0 {
        bail!("dequeued buffer {}, queued 0", f.index);
    }
    cap.stop()?;
    harness::pass(format!(
        "{}: Timeout after {wall:?} (asked {timeout:?}, CPU {cpu}); then frame seq {} in buffer 0",
        node.path(),
        f.sequence
    ))
}

fn vivid_mplane_try_fmt() -> anyhow::Result<Outcome> {
    let node = match vivid_or_missing(true) {
        Ok(n) => n,
        Err(o) => return o,
    };
    // A one-plane format through the multi-planar API: same checks as the single-planar test.
    let xr24 = match try_fmt_xr24(&node)? {
        Outcome::Pass(note) => note,
        other => return Ok(other),
    };
    // NV12M: two memory planes, each with its own bytesperline and sizeimage.
    let fmts = node.formats()?;
    if !fmts.contains(&V4L2_PIX_FMT_NV12M) {
        bail!(
            "{} (multi-planar) does not list NM12: {:?}",
            node.path(),
            fmts.iter().map(|f| fourcc_str(*f)).collect::<Vec<_>>()
        );
    }
    let c = node.try_format(V4L2_PIX_FMT_NV12M, 640, 480)?;
    if c.fourcc != V4L2_PIX_FMT_NV12M || !c.mplane || c.planes.len() != 2 {
        bail!("TRY_FMT NM12 640x480 gave {c:?}");
    }
    let (y, uv) = (c.planes[0], c.planes[1]);
    let (w, h) = (c.width as u64, c.height as u64);
    if (y.pitch as u64) < w
        || (y.size as u64) < y.pitch as u64 * h
        || (uv.pitch as u64) < w
        || (uv.size as u64) < uv.pitch as u64 * h.div_ceil(2)
    {
        bail!("TRY_FMT NM12 {w}x{h}: planes {:?} too small", c.planes);
    }
    // The planes become one list each; one list for all planes is refused with the reason.
    let lists = c.plane_attr_lists()?;
    if lists.len() != 2 {
        bail!("{} plane lists for NM12", lists.len());
    }
    if c.attr_list().is_ok() {
        bail!("attr_list accepted a two-memory-plane format");
    }
    let mut sizes = Vec::new();
    for (i, l) in lists.iter().enumerate() {
        let r = unibuf::reconcile::reconcile([l]).map_err(|e| anyhow::anyhow!("plane {i}: {e}"))?;
        if r.size() < c.planes[i].size as u64 {
            bail!(
                "plane {i}: reconciled {} bytes < sizeimage {}",
                r.size(),
                c.planes[i].size
            );
        }
        sizes.push(r.size());
    }
    // TRY_FMT must not change the current format.
    let before = node.current_format()?;
    let _ = node.try_format(V4L2_PIX_FMT_NV12M, 320, 180)?;
    if node.current_format()? != before {
        bail!("TRY_FMT NM12 changed the current format");
    }
    harness::pass(format!(
        "{xr24}; NM12 {w}x{h} planes {:?} -> reconciled sizes {sizes:?}",
        c.planes
            .iter()
            .map(|p| format!("pitch {} size {}", p.pitch, p.size))
            .collect::<Vec<_>>()
    ))
}

fn vivid_mplane_dmabuf_capture() -> anyhow::Result<Outcome> {
    match vivid_or_missing(true) {
        Ok(node) => capture_xr24(&node),
        Err(o) => o,
    }
}

/// vivid's 100% colorbar in 8-bit Y'CbCr: luma falls from white to black, bar by bar.
/// Checks the Y plane (strictly decreasing luma, white bright, black dark) and the CbCr plane
/// (white and black neutral, blue high Cb, red high Cr, yellow low Cb, cyan low Cr) at three rows
/// of the lower half. Returns the luma values seen.
pub fn check_nv12_colorbar(
    y: &[u8],
    ypitch: usize,
    uv: &[u8],
    uvpitch: usize,
    w: u32,
    h: u32,
) -> anyhow::Result<String> {
    let mut seen = String::new();
    for row in [h / 2 + 8, h * 3 / 4, h - 8] {
        let xs: Vec<usize> = (0..8).map(|i| ((2 * i + 1) * w / 16) as usize).collect();
        let luma: Vec<u8> = xs.iter().map(|&x| y[row as usize * ypitch + x]).collect();
        let chroma: Vec<(u8, u8)> = xs
            .iter()
            .map(|&x| {
                let o = (row as usize / 2) * uvpitch + (x / 2) * 2;
                (uv[o], uv[o + 1])
            })
            .collect();
        let ctx = || format!("row {row}: Y {luma:?} CbCr {chroma:02x?}");
        if luma.windows(2).any(|p| p[1] + 8 > p[0]) || luma[0] < 0xc0 || luma[7] > 0x30 {
            bail!(
                "luma is not the colorbar's (falling, white to black): {}",
                ctx()
            );
        }
        let neutral = |(cb, cr): (u8, u8)| cb.abs_diff(128) <= 12 && cr.abs_diff(128) <= 12;
        let (yellow, cyan, red, blue) = (chroma[1], chroma[2], chroma[5], chroma[6]);
        if !neutral(chroma[0])
            || !neutral(chroma[7])
            || yellow.0 > 0x40
            || cyan.1 > 0x40
            || red.1 < 0xc0
            || blue.0 < 0xc0
        {
            bail!("chroma is not the colorbar's: {}", ctx());
        }
        if row == h * 3 / 4 {
            seen = format!("Y {luma:?} CbCr {chroma:?}");
        }
    }
    Ok(seen)
}

/// NV12M capture: two memory planes, each a unibuf object of its own (one dma-buf per plane:
/// videobuf2 takes a capture plane's `data_offset` from the driver, never from us, so the planes
/// cannot share one dma-buf at offsets).
fn vivid_mplane_nv12m_capture() -> anyhow::Result<Outcome> {
    let node = match vivid_or_missing(true) {
        Ok(n) => n,
        Err(o) => return o,
    };
    vivid_colorbar(&node)?;
    let c = node.try_format(V4L2_PIX_FMT_NV12M, 640, 480)?;
    if c.fourcc != V4L2_PIX_FMT_NV12M || c.planes.len() != 2 {
        bail!("TRY_FMT NM12 640x480 gave {c:?}");
    }
    let mut per_plane = Vec::new();
    for (i, l) in c.plane_attr_lists()?.iter().enumerate() {
        let mut cpu = AttrList::with_types(&[BufferType::RawBuffer])?;
        cpu.set_accessor_kind(AccessorKind::Cpu)?
            .set_need_cpu_access(true)?
            .set_required_perm(Permission::ReadOnly)?;
        let r = Arc::new(
            unibuf::reconcile::reconcile([l, &cpu])
                .map_err(|e| anyhow::anyhow!("plane {i}: {e}"))?,
        );
        match Object::allocator(&r).allocate_n(4) {
            Ok(o) => per_plane.push(o),
            Err(unibuf::Error::Unavailable { what, why }) => {
                return harness::skip(format!("no dma-buf backend: {what}: {why}"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let pitches: Vec<u32> = c.planes.iter().map(|p| p.pitch).collect();
    node.set_format(c.fourcc, c.width, c.height, &pitches)?;
    let buffers: Vec<Vec<CapturePlane<'_>>> = (0..4)
        .map(|n| {
            per_plane
                .iter()
                .map(|objs| CapturePlane {
                    fd: objs[n].fd(),
                    length: objs[n].size() as u32,
                })
                .collect()
        })
        .collect();
    let mut cap = DmabufCapture::new(&node, buffers)?;
    let (idx, seqs) = capture_frames(&mut cap, 8, pitches[0] as u64 * c.height as u64)?;
    let y = captured_bytes(&per_plane[0][idx])?;
    let uv = captured_bytes(&per_plane[1][idx])?;
    let seen = check_nv12_colorbar(
        &y,
        pitches[0] as usize,
        &uv,
        pitches[1] as usize,
        c.width,
        c.height,
    )?;
    harness::pass(format!(
        "{} NM12 {}x{} pitches {pitches:?} into 4x2 unibuf {} buffers (one per plane); 8 frames seq {seqs:?}; colorbar {seen}",
        node.path(),
        c.width,
        c.height,
        per_plane[0][0].backend().map(|b| b.to_string()).unwrap_or_default(),
    ))
}
