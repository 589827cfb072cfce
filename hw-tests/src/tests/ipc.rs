//! Hardware tests: sharing dma-bufs across processes (IPC endpoints, objects, the demo on heaps).
//!
//! Each test forks: the child is the other process, connected by a `SOCK_SEQPACKET` socketpair.

use crate::harness::{pass, skip, Outcome, Test};
use anyhow::{bail, ensure, Context};
use rustix::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Permission};
use unibuf::backend;
use unibuf::ipc::wire::{FdKind, ObjectHeader};
use unibuf::ipc::{attrs, Endpoint, Requested};
use unibuf::object::Object;
use unibuf::reconcile::{reconcile, Reconciled};

#[path = "../../../cli/src/unibuf-demo/roles.rs"]
#[allow(dead_code)]
mod roles;

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "ipc::demo_on_dma_buf",
            needs: "any dma-buf backend (heap, udmabuf or DRM dumb)",
            run: demo_on_dma_buf,
        },
        Test {
            name: "ipc::demo_on_system_heap",
            needs: "/dev/dma_heap/system",
            run: || demo_on(BackendKind::SystemHeap),
        },
        Test {
            name: "ipc::demo_on_cma_heap",
            needs: "a CMA heap",
            run: || demo_on(BackendKind::CmaHeap),
        },
        Test {
            name: "ipc::demo_on_udmabuf",
            needs: "/dev/udmabuf",
            run: || demo_on(BackendKind::Udmabuf),
        },
        Test {
            name: "ipc::object_read_only_system_heap",
            needs: "/dev/dma_heap/system",
            run: || object_read_only(BackendKind::SystemHeap),
        },
        Test {
            name: "ipc::object_read_only_cma_heap",
            needs: "a CMA heap",
            run: || object_read_only(BackendKind::CmaHeap),
        },
        Test {
            name: "ipc::dma_buf_object_checks",
            needs: "any dma-buf backend",
            run: dma_buf_object_checks,
        },
        Test {
            name: "ipc::udmabuf_read_only_importer",
            needs: "/dev/udmabuf",
            run: udmabuf_read_only_importer,
        },
        Test {
            name: "ipc::late_peer_joins_running_share",
            needs: "any dma-buf backend",
            run: late_peer_joins_running_share,
        },
    ]
}

/// NvSciBufObjAttachPeer on real dma-bufs: a producer shares a buffer with a forked consumer
/// that keeps holding it; a second forked process joins late, its lists are validated against
/// the buffer as allocated, it imports the object read-only and reads what the producer wrote.
/// A late peer that needs what the buffer lacks (another size) gets the conflict instead.
fn late_peer_joins_running_share() -> anyhow::Result<Outcome> {
    let have = dma_buf_backends();
    let Some(&kind) = have.first() else {
        return skip("no dma-buf backend");
    };
    let size = 1 << 16;
    let r = Arc::new(reconcile(&[
        camera_list(Some(kind), size)?,
        viewer_list(size)?,
    ])?);
    let mut obj = Object::allocate(&r)?;
    {
        let mut m = obj.map_write()?;
        let mut g = m.write()?;
        g.copy_from_slice(0, b"late-peer")?;
        g.end()?;
    }
    let check = |o: &Object| -> anyhow::Result<()> {
        let m = o.map_read()?;
        let g = m.read()?;
        ensure!(
            &g.to_vec()[..9] == b"late-peer",
            "wrong bytes in the importer"
        );
        g.end()?;
        Ok(())
    };
    // The running share: the first consumer imports and holds the buffer until told.
    let (mut a, b) = Endpoint::pair()?;
    a.set_recv_timeout(Some(Duration::from_secs(20)))?;
    b.set_recv_timeout(Some(Duration::from_secs(20)))?;
    let first = fork_peer(b, move |mut ep| {
        let own = [viewer_list(size)?];
        let o = ep.import_object(Requested::Auto, Some(&own))?;
        check(&o)?;
        ep.send_data(b"holding")?;
        ensure!(ep.recv_data()? == b"done", "expected done");
        check(&o)?;
        Ok(())
    })?;
    a.export_object(&obj, Permission::ReadOnly)?;
    ensure!(
        a.recv_data()? == b"holding",
        "first consumer did not confirm"
    );
    // The late peer.
    let (mut c, d) = Endpoint::pair()?;
    c.set_recv_timeout(Some(Duration::from_secs(20)))?;
    d.set_recv_timeout(Some(Duration::from_secs(20)))?;
    let late = fork_peer(d, move |mut ep| {
        let own = [viewer_list(size)?];
        ep.export_lists(&own)?;
        let o = ep.import_object(Requested::Auto, Some(&own))?;
        ensure!(
            o.permission() == Permission::ReadOnly,
            "holds {}",
            o.permission()
        );
        check(&o)?;
        // CPU access is per peer (NvSciBuf NeedCpuAccess): with lists that did not ask for it,
        // the same buffer gives this process no CPU mapping.
        let mut blind = AttrList::raw(size)?;
        blind
            .set_accessor_kind(AccessorKind::Device)?
            .set_accessor_name("late-device")?;
        let o = o.with_cpu_access_of(&[blind]);
        match o.map_read() {
            Ok(_) => bail!("a handle whose lists never asked for CPU access mapped the buffer"),
            Err(e) => ensure!(e.to_string().contains("need_cpu_access"), "{e}"),
        }
        // A second late list this buffer cannot serve.
        let other = [viewer_list(size * 2)?];
        ep.export_lists(&other)?;
        let e = match ep.import_object(Requested::Auto, Some(&other)) {
            Ok(_) => bail!("a late peer needing another size got the object"),
            Err(e) => e.to_string(),
        };
        ensure!(e.contains("raw.size"), "{e}");
        ep.send_data(b"ok")?;
        Ok(())
    })?;
    let theirs = c.import_lists()?;
    let granted = c.attach_peer(&obj, &theirs.slots)?;
    ensure!(granted == Permission::ReadOnly, "granted {granted}");
    let theirs = c.import_lists()?;
    let refused = match c.attach_peer(&obj, &theirs.slots) {
        Ok(_) => bail!("attach_peer accepted a list the buffer does not satisfy"),
        Err(e) => e.to_string(),
    };
    ensure!(refused.contains("raw.size"), "{refused}");
    let reply = c.recv_data();
    a.send_data(b"done")?;
    wait(late)?;
    wait(first)?;
    ensure!(reply? == b"ok", "late peer did not confirm");
    pass(format!(
        "{kind}: a late peer joined a running share and read the buffer; a late peer of \
         another size was refused ({refused})"
    ))
}

fn dma_buf_backends() -> Vec<BackendKind> {
    let b = backend::global();
    [
        BackendKind::SystemHeap,
        BackendKind::CmaHeap,
        BackendKind::Udmabuf,
        BackendKind::DrmDumb,
    ]
    .into_iter()
    .filter(|k| b.has(*k))
    .collect()
}

/// Forks; the child runs `f` on `ep` and exits 0 on success (printing its error otherwise).
pub(crate) fn fork_peer(
    ep: Endpoint,
    f: impl FnOnce(Endpoint) -> anyhow::Result<()>,
) -> anyhow::Result<i32> {
    // SAFETY: the runner is single-threaded; the child runs `f` and `_exit`s.
    let pid = unsafe { libc::fork() };
    ensure!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match f(ep) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("peer: {e:#}");
                1
            }
        };
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(code) };
    }
    drop(ep);
    Ok(pid)
}

pub(crate) fn wait(pid: i32) -> anyhow::Result<()> {
    let mut st = 0;
    // SAFETY: waitpid on our own child with a valid pointer.
    let r = unsafe { libc::waitpid(pid, &mut st, 0) };
    ensure!(r == pid, "waitpid: {}", std::io::Error::last_os_error());
    ensure!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "peer process failed (status {st:#x})"
    );
    Ok(())
}

fn opts(producer: roles::ProducerKind, backend: Option<BackendKind>) -> roles::Opts {
    roles::Opts {
        buffers: 3,
        frames: 6,
        width: 320,
        height: 240,
        producer,
        backend,
    }
}

/// The demo, producer acting as a camera (so the buffers must be dma-bufs), consumer forked.
fn demo_on_dma_buf() -> anyhow::Result<Outcome> {
    let have = dma_buf_backends();
    if have.is_empty() {
        return skip(format!(
            "no dma-buf backend: {}",
            backend::global().why_not(BackendKind::SystemHeap)
        ));
    }
    run_demo(None)
}

fn run_demo(backend: Option<BackendKind>) -> anyhow::Result<Outcome> {
    let (a, b) = Endpoint::pair()?;
    let o = opts(roles::ProducerKind::Camera, backend);
    let co = o.clone();
    let pid = fork_peer(b, move |ep| roles::consume(ep, &co).map(|_| ()))?;
    let r = roles::produce(a, &o);
    wait(pid)?;
    let r = r?;
    ensure!(r.dma_buf, "the demo's buffers are not dma-bufs");
    ensure!(r.summary.starts_with("ok"), "consumer: {}", r.summary);
    if let Some(b) = backend {
        ensure!(
            r.backend == Some(b),
            "allocated from {:?}, not {b}",
            r.backend
        );
    }
    pass(format!(
        "demo: 6 frames through 3 {} buffers checked read-only by the consumer process",
        r.backend.map_or("?".into(), |b| b.to_string())
    ))
}

/// The demo with the producer preferring one backend.
fn demo_on(kind: BackendKind) -> anyhow::Result<Outcome> {
    if !backend::global().has(kind) {
        return skip(backend::global().why_not(kind));
    }
    run_demo(Some(kind))
}

/// One object of `kind` shared read-only with a forked importer.
fn object_read_only(kind: BackendKind) -> anyhow::Result<Outcome> {
    if !backend::global().has(kind) {
        return skip(backend::global().why_not(kind));
    }
    let list = camera_list(Some(kind), 1 << 20)?;
    let r = Arc::new(reconcile(&[list, viewer_list(1 << 20)?])?);
    let obj = Object::allocate(&r).with_context(|| format!("allocate from {kind}"))?;
    ensure!(
        obj.backend() == Some(kind),
        "allocated from {:?}",
        obj.backend()
    );
    share_and_check(obj, &r, Permission::ReadOnly)
        .map(|n| Outcome::Pass(format!("{kind}: exported read-only, {n}")))
}

fn camera_list(preferred: Option<BackendKind>, size: u64) -> anyhow::Result<AttrList> {
    let mut l = AttrList::raw(size)?;
    l.set_accessor_name("camera")?
        .set_accessor_kind(AccessorKind::Camera)?
        .set_need_cpu_access(true)?
        .set_required_perm(Permission::ReadWrite)?;
    if let Some(p) = preferred {
        l.set_preferred_backend(p)?;
    }
    Ok(l)
}

/// A CPU reader of `size` bytes (raw.size is equal-or-fail, as in NvSciBuf: it gives the
/// camera's size).
fn viewer_list(size: u64) -> anyhow::Result<AttrList> {
    let mut l = AttrList::raw(size)?;
    l.set_accessor_name("viewer")?
        .set_accessor_kind(AccessorKind::Cpu)?
        .set_need_cpu_access(true)?
        .set_required_perm(Permission::ReadOnly)?;
    Ok(l)
}

/// Writes a pattern, exports `obj` granting `granted` to a forked importer that checks the
/// pattern through a read-only map, that a writable map is refused, and writes nothing.
fn share_and_check(
    mut obj: Object,
    r: &Arc<Reconciled>,
    granted: Permission,
) -> anyhow::Result<String> {
    let len = obj.size() as usize;
    {
        let mut m = obj.map_write()?;
        let mut g = m.write()?;
        let pattern: Vec<u8> = (0..g.len()).map(|i| (i % 251) as u8).collect();
        g.copy_from_slice(0, &pattern)?;
        g.end()?;
    }
    let (mut a, b) = Endpoint::pair()?;
    b.set_recv_timeout(Some(Duration::from_secs(20)))?;
    let own = [viewer_list(r.size())?];
    let pid = fork_peer(b, move |mut ep| {
        let mut o = ep.import_object(Requested::Auto, Some(&own))?;
        ensure!(
            o.permission() == Permission::ReadOnly,
            "holds {}",
            o.permission()
        );
        ensure!(o.is_dma_buf(), "imported object is not a dma-buf");
        if o.map_write().is_ok() {
            bail!("a read-only importer got a writable map");
        }
        let m = o.map_read()?;
        let g = m.read()?;
        let bad = g
            .to_vec()
            .iter()
            .enumerate()
            .filter(|(i, &x)| x != (i % 251) as u8)
            .count();
        g.end()?;
        ensure!(bad == 0, "{bad} bytes differ in the importer");
        ep.send_data(b"ok")?;
        Ok(())
    })?;
    a.set_recv_timeout(Some(Duration::from_secs(20)))?;
    a.export_object(&obj, granted)?;
    let reply = a.recv_data();
    wait(pid)?;
    ensure!(reply? == b"ok", "importer did not confirm");
    let _ = r;
    Ok(format!(
        "{len} bytes checked in the importer through a read-only map"
    ))
}

/// On a real dma-buf: the importer recognises it, checks its size, and refuses a memfd sent as a
/// dma-buf even after it has learned where dma-bufs live; a dma-buf announced larger than it is
/// is refused; a read-write request of a read-only export is denied. No fd leaks.
fn dma_buf_object_checks() -> anyhow::Result<Outcome> {
    let have = dma_buf_backends();
    let Some(&kind) = have.first() else {
        return skip("no dma-buf backend");
    };
    let r = Arc::new(reconcile(&[camera_list(Some(kind), 1 << 16)?])?);
    let obj = Object::allocate(&r)?;
    let (mut a, mut b) = Endpoint::pair()?;
    b.set_recv_timeout(Some(Duration::from_secs(5)))?;
    let before = unibuf::fd::count_open_fds()?;
    // 1. A good one.
    a.export_object(&obj, Permission::ReadWrite)?;
    let got = b.import_object_parts(Requested::ReadWrite, None)?;
    ensure!(got.permission == Permission::ReadWrite);
    ensure!(
        unibuf::fd::is_dma_buf(got.fd.as_fd())?,
        "not seen as a dma-buf"
    );
    drop(got);
    // 2. A memfd announced as a dma-buf (after the importer learned the dma-buf filesystem).
    let m: OwnedFd = rustix::fs::memfd_create("not-a-dma-buf", rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&m, 1 << 16)?;
    let h = ObjectHeader {
        permission: Permission::ReadWrite,
        fd_kind: FdKind::DmaBuf,
        backend: Some(kind),
        size: 1 << 16,
        with_memfd: false,
    };
    a.send_wire_object(m.as_fd(), None, h, &attrs::reconciled_to_wire(&r))?;
    let e = b
        .import_object_parts(Requested::ReadWrite, None)
        .unwrap_err();
    ensure!(e.to_string().contains("announces a dma-buf"), "{e}");
    // 3. The dma-buf announced larger than it is.
    let mut big = h;
    big.size = obj.size() * 4;
    a.send_wire_object(obj.fd(), None, big, &attrs::reconciled_to_wire(&r))?;
    let e = b.recv_wire_object(Permission::ReadWrite).unwrap_err();
    ensure!(
        e.to_string().contains("bytes but the fd's buffer has"),
        "{e}"
    );
    // 4. Exported read-only, requested read-write.
    a.export_object(&obj, Permission::ReadOnly)?;
    let e = b
        .import_object_parts(Requested::ReadWrite, None)
        .unwrap_err();
    ensure!(matches!(e, unibuf::Error::PermissionDenied(_)), "{e}");
    drop(m);
    let after = unibuf::fd::count_open_fds()?;
    ensure!(before == after, "{before} fds before, {after} after");
    // Usable after all that.
    a.send_data(b"x")?;
    ensure!(b.recv_data()? == b"x");
    pass(format!(
        "{kind}: dma-buf recognised, 3 bad imports refused, no fd leaked"
    ))
}

/// A udmabuf exported read-only carries its memfd as an `O_RDONLY` description; the importer's
/// CPU maps go through it, so even a raw `mmap(PROT_WRITE)` of what it holds fails.
fn udmabuf_read_only_importer() -> anyhow::Result<Outcome> {
    if !backend::global().has(BackendKind::Udmabuf) {
        return skip(backend::global().why_not(BackendKind::Udmabuf));
    }
    let r = Arc::new(reconcile(&[camera_list(
        Some(BackendKind::Udmabuf),
        1 << 16,
    )?])?);
    let obj = Object::allocate(&r)?;
    ensure!(obj.backend() == Some(BackendKind::Udmabuf));
    let (mut a, mut b) = Endpoint::pair()?;
    b.set_recv_timeout(Some(Duration::from_secs(5)))?;
    a.export_object(&obj, Permission::ReadOnly)?;
    let got = b.import_object_parts(Requested::ReadOnly, None)?;
    let m = got
        .memfd
        .as_ref()
        .context("the udmabuf's memfd did not travel")?;
    let fl = rustix::fs::fcntl_getfl(m)?;
    ensure!(
        fl & rustix::fs::OFlags::RWMODE == rustix::fs::OFlags::RDONLY,
        "memfd is not O_RDONLY"
    );
    // SAFETY: a fresh mapping request; unmapped if it was made.
    let w = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            4096,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            m,
            0,
        )
    };
    if let Ok(p) = w {
        // SAFETY: the mapping just made.
        let _ = unsafe { rustix::mm::munmap(p, 4096) };
        bail!("mmap(PROT_WRITE) of the read-only memfd succeeded");
    }
    // The exporter's handle is still writable.
    let mut obj = obj;
    ensure!(
        obj.map_write().is_ok(),
        "the exporter lost its writable map"
    );
    pass("udmabuf memfd travels O_RDONLY; PROT_WRITE map refused; exporter keeps read-write")
}
