//! Fences on real dma-bufs, with vgem as the fence source (`DRM_IOCTL_VGEM_FENCE_ATTACH` and
//! `_SIGNAL`, as the kernel's IGT `dmabuf_sync_file` tests do), and pools/streams that honour
//! them. vgem fences signal by themselves after 10 s: every wait here is well below that.

use super::env::{self, Feature};
use crate::harness::{pass, skip, Outcome, Test};
use anyhow::{ensure, Context};
use drm::control::Device as _;
use rustix::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::ipc::Endpoint;
use unibuf::reconcile::reconcile;
use unibuf::stream::fence::{wait_dma_buf, wait_method};
use unibuf::stream::{
    Access, Consumer, Fence, FenceStatus, Pool, Producer, StreamPolicy, WaitMethod,
};
use unibuf::sys::vgem;

pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "stream::vgem_exported_fence_pending_then_signalled",
            needs: "a vgem card, DMA_BUF_IOCTL_EXPORT_SYNC_FILE (6.0+)",
            run: exported_fence,
        },
        Test {
            name: "stream::vgem_implicit_fence_wait",
            needs: "a vgem card (any kernel: before 6.0 the wait polls the dma-buf)",
            run: implicit_fence_wait,
        },
        Test {
            name: "stream::vgem_imported_fence_seen_by_others",
            needs: "a vgem card, DMA_BUF_IOCTL_IMPORT_SYNC_FILE (6.0+)",
            run: imported_fence,
        },
        Test {
            name: "stream::pool_keeps_fenced_buffers_out",
            needs: "a vgem card, a dma-buf backend",
            run: pool_fenced,
        },
        Test {
            name: "stream::release_fence_over_ipc",
            needs: "a vgem card, a dma-buf backend",
            run: release_fence_over_ipc,
        },
    ]
}

/// A vgem card and one dumb buffer on it, exported as a dma-buf.
struct VgemBuf {
    card: env::DrmCard,
    handle: u32,
    dmabuf: OwnedFd,
}

impl VgemBuf {
    fn new() -> anyhow::Result<Result<VgemBuf, anyhow::Result<Outcome>>> {
        let Some(card) = env::drm_card("vgem") else {
            return Ok(Err(env::missing(Feature::Vgem, "no vgem card")));
        };
        let db = card
            .create_dumb_buffer((64, 64), drm::buffer::DrmFourcc::Xrgb8888, 32)
            .context("vgem DRM_IOCTL_MODE_CREATE_DUMB")?;
        let h = drm::buffer::Buffer::handle(&db);
        let dmabuf = card
            .buffer_to_prime_fd(
                h,
                unibuf::sys::drm::DRM_CLOEXEC | unibuf::sys::drm::DRM_RDWR,
            )
            .context("vgem PRIME_HANDLE_TO_FD")?;
        Ok(Ok(VgemBuf {
            handle: u32::from(h),
            card,
            dmabuf,
        }))
    }

    /// Attaches a pending write fence; answers its id.
    fn attach_write(&self) -> anyhow::Result<u32> {
        vgem::fence_attach(self.card.as_fd(), self.handle, true)
            .context("DRM_IOCTL_VGEM_FENCE_ATTACH")
    }

    fn signal(&self, id: u32) -> anyhow::Result<()> {
        vgem::fence_signal(self.card.as_fd(), id).context("DRM_IOCTL_VGEM_FENCE_SIGNAL")
    }
}

macro_rules! vgem_or_skip {
    () => {
        match VgemBuf::new()? {
            Ok(v) => v,
            Err(outcome) => return outcome,
        }
    };
}

fn no_sync_file(v: &VgemBuf) -> Option<anyhow::Result<Outcome>> {
    (wait_method(v.dmabuf.as_fd()) == WaitMethod::DmaBufPoll).then(|| {
        skip(format!(
            "kernel {} has no DMA_BUF_IOCTL_EXPORT_SYNC_FILE (ENOTTY; 6.0+): waits poll the \
             dma-buf",
            env::kernel().unwrap_or_default()
        ))
    })
}

fn exported_fence() -> anyhow::Result<Outcome> {
    let v = vgem_or_skip!();
    if let Some(s) = no_sync_file(&v) {
        return s;
    }
    // No fence yet: the export is signalled.
    let idle = Fence::export(v.dmabuf.as_fd(), Access::Read)?;
    ensure!(
        idle.is_signalled()?,
        "a buffer without fences exported a pending fence"
    );
    let id = v.attach_write()?;
    let f = Fence::export(v.dmabuf.as_fd(), Access::Read)?;
    let info = f.info()?;
    ensure!(
        info.status == FenceStatus::Pending,
        "exported while vgem's write fence pends: {info:?}"
    );
    ensure!(!f.is_signalled()?, "poll says signalled while pending");
    let e = f.wait(Duration::from_millis(30)).unwrap_err();
    ensure!(
        matches!(e, unibuf::Error::Timeout { .. }),
        "expected a timeout, got {e}"
    );
    let e = wait_dma_buf(v.dmabuf.as_fd(), Access::Read, Duration::from_millis(10)).unwrap_err();
    ensure!(
        matches!(e, unibuf::Error::Timeout { .. }),
        "dma-buf wait: {e}"
    );
    // Signalled from another thread while this one waits.
    let t0 = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            v.signal(id)
        });
        f.wait(Duration::from_secs(3))?;
        Ok(())
    })?;
    let waited = t0.elapsed();
    ensure!(
        waited >= Duration::from_millis(90),
        "returned before the signal ({waited:?})"
    );
    let info = f.info()?;
    ensure!(
        info.status == FenceStatus::Signalled,
        "after the signal: {info:?}"
    );
    let m = wait_dma_buf(v.dmabuf.as_fd(), Access::Read, Duration::from_secs(1))?;
    ensure!(m == WaitMethod::SyncFile);
    let names = info
        .fences
        .iter()
        .map(|e| format!("{}/{}", e.driver, e.timeline))
        .collect::<Vec<_>>()
        .join(",");
    pass(format!(
        "pending, timed out, signalled after {waited:?}; fences {names}; wait by {m}"
    ))
}

/// `wait_dma_buf` on every kernel: by an exported sync_file from 6.0, by polling the dma-buf fd
/// before (5.10's implicit-sync wait). Times out while vgem's write fence pends, returns once it
/// is signalled from another thread, and says which wait it used.
fn implicit_fence_wait() -> anyhow::Result<Outcome> {
    let v = vgem_or_skip!();
    let expect = wait_method(v.dmabuf.as_fd());
    let m = wait_dma_buf(v.dmabuf.as_fd(), Access::Read, Duration::from_millis(10))?;
    ensure!(
        m == expect,
        "idle buffer waited by {m}, wait_method says {expect}"
    );
    let id = v.attach_write()?;
    let t0 = Instant::now();
    let e = wait_dma_buf(v.dmabuf.as_fd(), Access::Read, Duration::from_millis(30)).unwrap_err();
    ensure!(
        matches!(e, unibuf::Error::Timeout { .. }) && t0.elapsed() >= Duration::from_millis(29),
        "expected a timeout after 30 ms, got {e} after {:?}",
        t0.elapsed()
    );
    let t0 = Instant::now();
    let m = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            v.signal(id)
        });
        wait_dma_buf(v.dmabuf.as_fd(), Access::Read, Duration::from_secs(3))
    })?;
    let waited = t0.elapsed();
    ensure!(
        waited >= Duration::from_millis(90),
        "returned before the signal ({waited:?})"
    );
    ensure!(m == expect, "waited by {m}, wait_method says {expect}");
    pass(format!(
        "timed out while pending, returned {waited:?} after, once signalled; wait by {m}"
    ))
}

fn imported_fence() -> anyhow::Result<Outcome> {
    let a = vgem_or_skip!();
    let b = vgem_or_skip!();
    if let Some(s) = no_sync_file(&a) {
        return s;
    }
    let id = b.attach_write()?;
    let fb = Fence::export(b.dmabuf.as_fd(), Access::Read)?;
    ensure!(!fb.is_signalled()?);
    // Into A as a write fence: A's readers now wait for B's work.
    fb.import_into(a.dmabuf.as_fd(), Access::Write)?;
    let fa = Fence::export(a.dmabuf.as_fd(), Access::Read)?;
    ensure!(!fa.is_signalled()?, "A does not show the imported fence");
    let polled = rustix::event::poll(
        &mut [rustix::event::PollFd::new(
            &a.dmabuf,
            rustix::event::PollFlags::IN,
        )],
        Some(&rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
    )?;
    ensure!(
        polled == 0,
        "poll on A's dma-buf is ready while the imported fence pends"
    );
    let idle = Fence::export(a.dmabuf.as_fd(), Access::Read)?;
    let merged = fa.merge(&idle, "merged")?;
    let mi = merged.info()?;
    ensure!(
        mi.status == FenceStatus::Pending && mi.name == "merged",
        "{mi:?}"
    );
    b.signal(id)?;
    fa.wait(Duration::from_secs(2))?;
    merged.wait(Duration::from_secs(2))?;
    ensure!(merged.info()?.status == FenceStatus::Signalled);
    pass(format!(
        "imported fence seen by A's export and poll; merged {} fences",
        mi.fences.len()
    ))
}

fn cpu_list(name: &str, perm: Permission) -> anyhow::Result<AttrList> {
    let mut l = AttrList::raw(64 * 1024)?;
    l.set_need_cpu_access(true)?
        .set_accessor_kind(AccessorKind::Cpu)?
        .set_required_perm(perm)?
        .set_accessor_name(name)?;
    Ok(l)
}

fn dma_pool(n: usize) -> anyhow::Result<Result<Pool, anyhow::Result<Outcome>>> {
    let r = Arc::new(reconcile([&cpu_list("cam", Permission::ReadWrite)?])?);
    let p = Pool::with_name(&r, "cam", n, n)?;
    if !p.get(0).is_some_and(|o| o.is_dma_buf()) {
        return Ok(Err(env::missing(
            Feature::SystemHeap,
            "the pool's buffers are not dma-bufs",
        )));
    }
    Ok(Ok(p))
}

fn pool_fenced() -> anyhow::Result<Outcome> {
    let v = vgem_or_skip!();
    if let Some(s) = no_sync_file(&v) {
        return s;
    }
    let mut p = match dma_pool(1)? {
        Ok(p) => p,
        Err(o) => return o,
    };
    let i = p.try_acquire()?.context("a free buffer")?;
    let id = v.attach_write()?;
    let f = Fence::export(v.dmabuf.as_fd(), Access::Read)?;
    p.release(i, Some(f))?;
    for _ in 0..5 {
        ensure!(
            p.try_acquire()?.is_none(),
            "handed out a buffer whose release fence pends"
        );
    }
    let e = p.acquire(Duration::from_millis(20)).unwrap_err();
    ensure!(matches!(e, unibuf::Error::Timeout { .. }), "{e}");
    v.signal(id)?;
    let j = p.acquire(Duration::from_secs(2))?;
    ensure!(i == j);
    pass("a release fence kept the buffer out until vgem signalled it")
}

fn release_fence_over_ipc() -> anyhow::Result<Outcome> {
    let v = vgem_or_skip!();
    if let Some(s) = no_sync_file(&v) {
        return s;
    }
    let pool = match dma_pool(1)? {
        Ok(p) => p,
        Err(o) => return o,
    };
    let mut p = Producer::new(pool, StreamPolicy::Fifo)?;
    let (a, b) = Endpoint::pair()?;
    let t = std::thread::spawn(move || -> anyhow::Result<Consumer> {
        Ok(Consumer::attach(
            b,
            vec![cpu_list("display", Permission::ReadOnly)?],
        )?)
    });
    p.attach(a)?;
    let mut c = t
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    // The producer's write is "pending" (a vgem fence): the consumer must wait for it.
    let i = p.acquire(Duration::from_secs(1))?;
    let wid = v.attach_write()?;
    p.post(i, 0, Some(Fence::export(v.dmabuf.as_fd(), Access::Read)?))?;
    let f = c.next_frame(Some(Duration::from_secs(1)))?;
    ensure!(f.fence.is_some(), "the frame lost its fence");
    ensure!(
        f.wait(Duration::from_millis(20)).is_err(),
        "frame fence signalled early"
    );
    v.signal(wid)?;
    f.wait(Duration::from_secs(2))?;
    // The consumer's read is "pending" too: its release fence keeps the buffer out.
    let rid = v.attach_write()?;
    let rf = Fence::export(v.dmabuf.as_fd(), Access::Read)?;
    c.release(&f, Some(&rf))?;
    let e = p.acquire(Duration::from_millis(30)).unwrap_err();
    ensure!(matches!(e, unibuf::Error::Timeout { .. }), "{e}");
    v.signal(rid)?;
    let j = p.acquire(Duration::from_secs(2))?;
    ensure!(i == j);
    pass("frame fence and release fence crossed the socket and were honoured")
}

// ---- The camera -> display pipeline on the stream API ------------------------------------------
//
// The camera (this process) owns vivid and the pool; the display (a forked process) owns vkms and
// is a read-only consumer: each frame is committed, written back, and the written-back pixels are
// checked against vivid's colorbar. A CPU checker (another forked process, read-only) attaches at
// frame 30 and is killed (SIGKILL) at frame 80; the stream goes on without losing a buffer.

const PIPE_FRAMES: u32 = 120;
const CAPTURE_ONLY_FRAMES: u32 = 30;
const CHECKER_JOIN: u32 = 30;
const CHECKER_KILL: u32 = 80;

pub fn pipeline_tests() -> Vec<Test> {
    vec![
        Test {
            name: "stream::pipeline_camera_display_120",
            needs: "vivid, vkms with writeback, a dma-buf backend",
            run: pipeline,
        },
        Test {
            name: "stream::pipeline_example_program",
            needs: "vivid, vkms, /bin/camera_display_stream (scripts/hw-test stages it)",
            run: example_program,
        },
    ]
}

/// The library example `examples/camera_display_stream.rs`, as a user runs it: 120 frames from
/// vivid's single-planar node through a stream to a read-only vkms display process.
fn example_program() -> anyhow::Result<Outcome> {
    use super::v4l2::{vivid_colorbar, vivid_node};
    use std::process::{Command, Stdio};
    use unibuf::interop::drm::Card;
    const BIN: &str = "/bin/camera_display_stream";
    const FRAMES: u32 = 120;
    if Card::find("vkms").is_none() {
        return env::missing(Feature::VkmsWriteback, "no vkms card");
    }
    let Some(node) = vivid_node() else {
        return env::missing(Feature::Vivid, "no vivid capture node");
    };
    if !std::path::Path::new(BIN).exists() {
        return skip(format!(
            "{BIN} is not in the initramfs (scripts/hw-test builds and stages it)"
        ));
    }
    vivid_colorbar(&node)?;
    let path = node.path().to_owned();
    drop(node);
    let mut child = Command::new(BIN)
        .args([&FRAMES.to_string(), &path, "vkms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {BIN}"))?;
    let t0 = Instant::now();
    while child.try_wait()?.is_none() {
        if t0.elapsed() > Duration::from_secs(200) {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{BIN} {FRAMES} {path} vkms: still running after 200 s, killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "{BIN} {FRAMES} {path} vkms: {}: {text}",
        out.status
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("[camera]"))
        .with_context(|| format!("{BIN}: no [camera] summary line in: {text}"))?;
    ensure!(
        line.starts_with(&format!("[camera] {FRAMES} frames at "))
            && line.contains(&format!("display: {FRAMES} frames scanned out")),
        "{BIN}: expected {FRAMES} frames captured and scanned out: {line}"
    );
    pass(format!("{BIN} {FRAMES} {path} vkms: {line}"))
}

fn fork_with(
    keep: Endpoint,
    f: impl FnOnce(Endpoint) -> anyhow::Result<()>,
) -> anyhow::Result<i32> {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: the test process is single-threaded; the child runs `f` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    ensure!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: prctl and alarm have no memory-safety preconditions.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::alarm(100);
        }
        super::drm::close_other_fds(&[0, 1, 2, rustix::fd::AsRawFd::as_raw_fd(&keep.as_fd())]);
        let code = match f(keep) {
            Ok(()) => 0,
            Err(e) => {
                println!("pipeline child: {e:#}");
                1
            }
        };
        let _ = std::io::stdout().flush();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

fn pipeline() -> anyhow::Result<Outcome> {
    use super::v4l2::{vivid_colorbar, vivid_node};
    use unibuf::interop::drm::Card;
    use unibuf::interop::v4l2::{CapturePlane, DmabufCapture};
    if Card::find("vkms").is_none() {
        return env::missing(Feature::VkmsWriteback, "no vkms card");
    }
    let Some(node) = vivid_node() else {
        return env::missing(Feature::Vivid, "no vivid capture node");
    };
    vivid_colorbar(&node)?;
    let cam = node.try_format(unibuf::sys::v4l2::V4L2_PIX_FMT_XBGR32, 640, 480)?;
    let cam_list = cam.attr_list()?;

    let (mut cam_ep, disp_ep) = Endpoint::pair()?;
    let disp_pid = fork_with(disp_ep, display_process)?;
    cam_ep.set_recv_timeout(Some(Duration::from_secs(40)))?;
    cam_ep.export_lists([&cam_list])?;
    let theirs = cam_ep.import_lists().context("the display's lists")?;
    // The pool also serves consumers that join later: the CPU checker's needs are in it from the
    // start (a late joiner is validated against the running pool's list, not reconciled in).
    let mut lists = vec![cam_list, checker_list()?];
    lists.extend(theirs.slots.iter().cloned());
    let r = Arc::new(reconcile(&lists)?);
    let img = r.image().context("no image layout")?;
    let v4l = img.v4l2_format().context("no V4L2 format")?;
    node.set_format(cam.fourcc, cam.width, cam.height, &[v4l.bytesperline])?;
    let pool = Pool::with_name(&r, "vivid", 4, 4)?;
    let mut prod = Producer::new(pool, StreamPolicy::Fifo)?;
    prod.attach_with_lists(cam_ep, &theirs)?;
    // The producer holds every buffer while V4L2 has it: acquire all, queue all.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(prod.acquire(Duration::from_secs(1))?);
    }
    // V4L2 borrows fds of its own (dups), so the pool stays free to be used meanwhile.
    let fds: Vec<OwnedFd> = (0..4u32)
        .map(|i| {
            Ok(prod
                .buffer(i)
                .context("buffer")?
                .fd()
                .try_clone_to_owned()?)
        })
        .collect::<anyhow::Result<_>>()?;
    let size = r.size() as u32;
    let planes = fds
        .iter()
        .map(|f| {
            vec![CapturePlane {
                fd: f.as_fd(),
                length: size,
            }]
        })
        .collect();
    let mut capture = DmabufCapture::new(&node, planes)?;
    for &i in &held {
        capture.queue(i as usize)?;
    }
    capture.start()?;
    // The same capture loop with no stream, for comparison.
    let t0 = Instant::now();
    for _ in 0..CAPTURE_ONLY_FRAMES {
        let f = capture.dequeue(Duration::from_secs(10))?;
        capture.queue(f.index)?;
    }
    let bare_fps = f64::from(CAPTURE_ONLY_FRAMES) / t0.elapsed().as_secs_f64();

    let mut queued = [true; 4];
    let mut checker: Option<(i32, unibuf::stream::ConsumerId)> = None;
    let mut checker_frames = 0;
    let t0 = Instant::now();
    for n in 0..PIPE_FRAMES {
        if n == CHECKER_JOIN {
            let (a, b) = Endpoint::pair()?;
            let pid = fork_with(b, checker_process)?;
            checker = Some((pid, prod.attach(a)?));
        }
        if n == CHECKER_KILL {
            if let Some((pid, id)) = checker.take() {
                checker_frames = prod.consumer_stats(id).map_or(0, |s| s.released);
                // SAFETY: kills and reaps our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    let mut st = 0;
                    libc::waitpid(pid, &mut st, 0);
                    ensure!(
                        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL,
                        "the checker ended by itself (status {st:#x}): a pixel check failed"
                    );
                }
            }
        }
        let f = capture.dequeue(Duration::from_secs(10))?;
        let ts = unibuf::stream::now_ns();
        queued[f.index] = false;
        prod.post(f.index as u32, ts, None)?;
        let i = prod
            .acquire(Duration::from_secs(20))
            .context("a buffer back")?;
        capture.queue(i as usize)?;
        queued[i as usize] = true;
    }
    let fps = f64::from(PIPE_FRAMES) / t0.elapsed().as_secs_f64();
    capture.stop()?;
    drop(capture);
    // What V4L2 had queued comes back to the producer, which held it meanwhile.
    for (i, q) in queued.iter().enumerate() {
        if *q {
            prod.discard(i as u32)?;
        }
    }
    let st = prod.stats();
    ensure!(
        st.lost == 1,
        "consumers lost: {} (the killed checker only)",
        st.lost
    );
    let mut ep = prod.end(unibuf::stream::ConsumerId(0), Duration::from_secs(20))?;
    let summary =
        String::from_utf8_lossy(&ep.recv_data().context("the display's summary")?).into_owned();
    let mut status = 0;
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(disp_pid, &mut status, 0) };
    ensure!(summary.starts_with("OK"), "display: {summary}");
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "display process status {status:#x}"
    );
    // Every buffer is back: the producer can hold all four at once.
    for _ in 0..4 {
        prod.acquire(Duration::from_secs(2))
            .context("a buffer lost")?;
    }
    pass(format!(
        "{PIPE_FRAMES} frames vivid -> stream -> vkms (read-only, writeback-checked): {fps:.1} fps \
         (capture alone {bare_fps:.1} fps), {} dropped; display {summary}; CPU checker joined at \
         {CHECKER_JOIN}, checked {checker_frames} frames, killed at {CHECKER_KILL}; no buffer lost",
        st.dropped
    ))
}

fn display_process(mut ep: Endpoint) -> anyhow::Result<()> {
    use super::v4l2::check_colorbar;
    use unibuf::attr::{Key, Value};
    use unibuf::interop::drm::{Card, Output};
    ep.set_recv_timeout(Some(Duration::from_secs(40)))?;
    let theirs = ep.import_lists()?;
    let cam = theirs.slots.first().context("no camera list")?.clone();
    let fourcc = match cam.get(Key::ImageFormat) {
        Some(Value::Format(f)) => f.drm_fourcc().context("no DRM fourcc")? as u32,
        other => anyhow::bail!("camera image.format {other:?}"),
    };
    let size = |k: Key| -> anyhow::Result<u32> {
        Ok(u32::try_from(
            cam.get(k).and_then(|v| v.as_u64()).context("size")?,
        )?)
    };
    let (w, h) = (size(Key::ImageWidth)?, size(Key::ImageHeight)?);
    let card = Card::open(Card::find("vkms").context("no vkms")?)?;
    ensure!(card.enable_atomic()?, "no writeback connector support");
    let mut out = Output::find(&card, w, h)?;
    let disp = card.plane_constraints(out.plane)?;
    let own = vec![disp.attr_list(fourcc, w, h)?];
    let mut c = Consumer::attach(ep, own)?;
    let n = c.buffers() as u32;
    let fbl = super::drm::fb_layout(c.buffer(0).context("no buffer")?.list())?;
    let mut fbs = Vec::new();
    for i in 0..n {
        let b = c.buffer(i).context("buffer")?;
        ensure!(
            b.permission() == Permission::ReadOnly,
            "display holds {}",
            b.permission()
        );
        fbs.push(card.import_framebuffer(b.fd(), &fbl)?);
    }
    let (wbobj, wbl) = super::drm::writeback_target(&disp, fourcc, w, h)?;
    let wb = card.import_framebuffer(wbobj.fd(), &wbl)?;
    let wm = wbobj.map_read()?;
    let mut lat = Vec::with_capacity(256);
    let mut checked = 0u32;
    // vkms on a starved TCG host (two VMs on two cores) now and then never completes a writeback
    // job (seen next to "vkms_vblank_simulate: vblank timer overrun", not always): the job stays
    // queued, and the next completion signals that older job. So the fences wait in commit order: after
    // each commit the display waits for the oldest pending one; when it does not signal, the
    // frame is committed again (counted and reported), whose completion signals it.
    let mut pending = std::collections::VecDeque::new();
    let mut recommits = 0u32;
    let kmsg = super::vfio::kmsg_open();
    while let Some(f) = c.next(Some(Duration::from_secs(30)))? {
        let fb = fbs.get(f.index as usize).context("no framebuffer")?;
        pending.push_back(super::drm::commit_debug(&mut out, &card, fb, &wb)?);
        let t = Instant::now();
        while let Some(front) = pending.front() {
            match front.wait(Duration::from_secs(3)) {
                Ok(()) => {
                    pending.pop_front();
                    break;
                }
                Err(_) if recommits < 8 => {
                    recommits += 1;
                    pending.push_back(super::drm::commit_debug(&mut out, &card, fb, &wb)?);
                }
                Err(e) => {
                    let log = kmsg
                        .as_ref()
                        .map(super::vfio::kmsg_lines)
                        .unwrap_or_default();
                    anyhow::bail!(
                        "frame {} (buffer {}, {checked} checked before, {recommits} re-commits): \
                         {e} after {:?}; kernel: {}",
                        f.seq,
                        f.index,
                        t.elapsed(),
                        log[log.len().saturating_sub(12)..].join(" | ")
                    );
                }
            }
        }
        lat.push(unibuf::stream::now_ns().saturating_sub(f.timestamp_ns));
        let g = wm.read()?;
        let r = check_colorbar(&g.to_vec(), w, h, wbl.pitches[0] as usize);
        g.end()?;
        r.with_context(|| format!("written-back frame {}", f.seq))?;
        checked += 1;
        c.release(&f, None)?;
    }
    out.disable(&card)?;
    drop(fbs);
    let mut ep = c.into_endpoint();
    lat.sort_unstable();
    let q = |p: usize| {
        lat.get(lat.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0)
            / 1000
    };
    ep.send_data(
        format!(
            "OK {checked} frames scanned out and checked; latency capture->writeback median {} us, \
             p95 {} us, max {} us; {recommits} frames re-committed after a lost vkms writeback \
             completion{}",
            q(50),
            q(95),
            q(100),
            if recommits > 0 {
                let log = kmsg.as_ref().map(super::vfio::kmsg_lines).unwrap_or_default();
                let overruns = log.iter().filter(|l| l.contains("vblank timer overrun")).count();
                format!(" ({overruns} vblank timer overruns logged)")
            } else {
                String::new()
            }
        )
        .as_bytes(),
    )?;
    Ok(())
}

fn checker_list() -> anyhow::Result<AttrList> {
    let mut l = AttrList::with_types(&[unibuf::attr::BufferType::Image])?;
    l.set_accessor_kind(AccessorKind::Cpu)?
        .set_need_cpu_access(true)?
        .set_required_perm(Permission::ReadOnly)?
        .set_accessor_name("cpu-checker")?;
    Ok(l)
}

fn checker_process(ep: Endpoint) -> anyhow::Result<()> {
    use super::v4l2::check_colorbar;
    let mut c = Consumer::attach(ep, vec![checker_list()?])?;
    loop {
        let f = c.next_frame(None)?;
        let b = c.buffer(f.index).context("buffer")?;
        let img = b.list().image().context("no image")?;
        let (w, h, pitch) = (img.width, img.height, img.planes[0].pitch as usize);
        let m = b.map_read()?;
        let g = m.read()?;
        let r = check_colorbar(&g.to_vec(), w, h, pitch);
        g.end()?;
        r.with_context(|| format!("checker: frame {}", f.seq))?;
        c.release(&f, None)?;
    }
}
