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
