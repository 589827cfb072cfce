//! The camera -> display pipeline on the stream API: a V4L2 capture node (DMABUF) feeds a pool
//! through a [`Producer`]; a display process (forked) is a read-only [`Consumer`] that scans each
//! frame out with DRM/KMS atomic commits. Prints fps, capture-to-scanout latency and drops.
//!
//! ```sh
//! cargo run --example camera_display_stream -- [FRAMES] [VIDEO_NODE] [DRM_DRIVER]
//! # defaults: 120 frames, the first vivid node, the vkms card
//! ```
//!
//! The VM test `stream::pipeline_camera_display_120` (hw-tests/src/tests/stream.rs) runs the same
//! pipeline with the writeback connector checking every frame's pixels and a second consumer
//! that joins and is killed part way through.

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use unibuf::attr::{Key, Permission, Value};
use unibuf::interop::drm::{Card, Output};
use unibuf::interop::v4l2::{CapturePlane, DmabufCapture, VideoNode};
use unibuf::ipc::Endpoint;
use unibuf::reconcile::reconcile;
use unibuf::stream::{now_ns, Consumer, Pool, Producer, StreamPolicy};
use unibuf::sys::v4l2::V4L2_PIX_FMT_XBGR32;

const BUFFERS: u32 = 4;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let frames: u32 = args.first().map_or(Ok(120), |s| s.parse())?;
    let driver = args.get(2).cloned().unwrap_or_else(|| "vkms".into());
    let node = match args.get(1) {
        Some(p) => VideoNode::open(p)?,
        None => VideoNode::open(
            VideoNode::find(Some("vivid"))
                .first()
                .context("no vivid capture node (modprobe vivid)")?,
        )?,
    };
    let card_path = Card::find(&driver).with_context(|| format!("no {driver} DRM card"))?;
    let (cam_ep, disp_ep) = Endpoint::pair()?;
    // SAFETY: single-threaded here; the child runs the display and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop(cam_ep);
        let code = match display(disp_ep, &card_path) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("[display] {e:#}");
                1
            }
        };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(disp_ep);
    let r = camera(cam_ep, &node, frames);
    let mut st = 0;
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    r?;
    if !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
        bail!("the display process failed (status {st:#x})");
    }
    Ok(())
}

fn camera(mut ep: Endpoint, node: &VideoNode, frames: u32) -> Result<()> {
    let cam = node.try_format(V4L2_PIX_FMT_XBGR32, 640, 480)?;
    let cam_list = cam.attr_list()?;
    ep.export_lists([&cam_list])?;
    let theirs = ep.import_lists()?;
    let mut lists = vec![cam_list];
    lists.extend(theirs.slots.iter().cloned());
    let r = std::sync::Arc::new(reconcile(&lists)?);
    let v4l = r
        .image()
        .and_then(|i| i.v4l2_format())
        .context("the reconciled layout is no V4L2 format")?;
    node.set_format(cam.fourcc, cam.width, cam.height, &[v4l.bytesperline])?;
    let mut prod = Producer::new(
        Pool::with_name(&r, "camera", BUFFERS as usize, BUFFERS as usize)?,
        StreamPolicy::Fifo,
    )?;
    let display = prod.attach_with_lists(ep, &theirs)?;
    // V4L2 holds buffers the producer acquired; it gets fds of its own.
    let mut queued = [false; BUFFERS as usize];
    let fds = (0..BUFFERS)
        .map(|i| {
            Ok(prod
                .buffer(i)
                .context("buffer")?
                .fd()
                .try_clone_to_owned()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let planes = fds
        .iter()
        .map(|f| {
            vec![CapturePlane {
                fd: std::os::fd::AsFd::as_fd(f),
                length: r.size() as u32,
            }]
        })
        .collect();
    let mut cap = DmabufCapture::new(node, planes)?;
    for _ in 0..BUFFERS {
        let i = prod.acquire(Duration::from_secs(1))?;
        cap.queue(i as usize)?;
        queued[i as usize] = true;
    }
    cap.start()?;
    let t0 = Instant::now();
    for _ in 0..frames {
        let f = cap.dequeue(Duration::from_secs(10))?;
        queued[f.index] = false;
        prod.post(f.index as u32, now_ns(), None)?;
        let i = prod.acquire(Duration::from_secs(20))?;
        cap.queue(i as usize)?;
        queued[i as usize] = true;
    }
    let fps = f64::from(frames) / t0.elapsed().as_secs_f64();
    cap.stop()?;
    drop(cap);
    for (i, q) in queued.iter().enumerate() {
        if *q {
            prod.discard(i as u32)?;
        }
    }
    let mut ep = prod.end(display, Duration::from_secs(20))?;
    let summary = String::from_utf8_lossy(&ep.recv_data()?).into_owned();
    println!(
        "[camera] {frames} frames at {fps:.1} fps, {} dropped; display: {summary}",
        prod.stats().dropped
    );
    Ok(())
}

fn display(mut ep: Endpoint, card_path: &std::path::Path) -> Result<()> {
    let cam = ep
        .import_lists()?
        .slots
        .first()
        .context("no camera list")?
        .clone();
    let fourcc = match cam.get(Key::ImageFormat) {
        Some(Value::Format(f)) => f.drm_fourcc().context("no DRM fourcc")? as u32,
        other => bail!("camera image.format {other:?}"),
    };
    let dim = |k: Key| -> Result<u32> {
        Ok(u32::try_from(
            cam.get(k).and_then(|v| v.as_u64()).context("size")?,
        )?)
    };
    let (w, h) = (dim(Key::ImageWidth)?, dim(Key::ImageHeight)?);
    let card = Card::open(card_path)?;
    card.enable_atomic()?;
    let mut out = Output::find(&card, w, h)?;
    let own = vec![card.plane_constraints(out.plane)?.attr_list(fourcc, w, h)?];
    // Read-only: the lists say so, the stream grants it, the handles enforce it.
    let mut c = Consumer::attach(ep, own)?;
    let fbl = (&c
        .buffer(0)
        .context("no buffer")?
        .list()
        .image()
        .context("no image")?
        .drm_framebuffer()
        .context("no ADDFB2 layout")?)
        .into();
    let mut fbs = Vec::new();
    for i in 0..c.buffers() as u32 {
        let b = c.buffer(i).context("buffer")?;
        assert_eq!(b.permission(), Permission::ReadOnly);
        fbs.push(card.import_framebuffer(b.fd(), &fbl)?);
    }
    let mut lat = Vec::new();
    while let Some(f) = c.next(Some(Duration::from_secs(30)))? {
        f.wait(Duration::from_secs(5))?;
        out.commit(&card, &fbs[f.index as usize], None)?;
        lat.push(now_ns().saturating_sub(f.timestamp_ns) / 1000);
        c.release(&f, None)?;
    }
    out.disable(&card)?;
    lat.sort_unstable();
    let med = lat.get(lat.len() / 2).copied().unwrap_or(0);
    let mut ep = c.into_endpoint();
    ep.send_data(
        format!(
            "{} frames scanned out, capture->commit median {med} us",
            lat.len()
        )
        .as_bytes(),
    )?;
    Ok(())
}
