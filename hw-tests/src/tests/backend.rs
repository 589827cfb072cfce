//! Hardware tests: memory backends, objects, permissions and CPU access.
//!
//! Each test finds its backend through discovery ([`unibuf::backend::global`]); a backend this
//! kernel lacks makes the test skip with what discovery found.

use crate::harness::{pass, skip, Outcome, Test};
use anyhow::{bail, ensure, Context};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::mm::{MapFlags, ProtFlags};
use std::sync::Arc;
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Permission};
use unibuf::backend::{self, HeapClass, MemoryRequirement};
use unibuf::object::Object;
use unibuf::reconcile::{reconcile, Reconciled};

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "backend::discovery_report",
            needs: "nothing (reports what exists)",
            run: discovery_report,
        },
        Test {
            name: "backend::plan_system_heap",
            needs: "/dev/dma_heap/system",
            run: || plan_then_allocate(BackendKind::SystemHeap),
        },
        Test {
            name: "backend::plan_cma_heap",
            needs: "a CMA heap",
            run: || plan_then_allocate(BackendKind::CmaHeap),
        },
        Test {
            name: "backend::cma_enomem_names_cma_free",
            needs: "a CMA heap",
            run: cma_enomem_names_cma_free,
        },
        Test {
            name: "backend::alloc_system_heap",
            needs: "/dev/dma_heap/system",
            run: || alloc_backend(BackendKind::SystemHeap),
        },
        Test {
            name: "backend::alloc_cma_heap",
            needs: "a CMA heap (any name)",
            run: || alloc_backend(BackendKind::CmaHeap),
        },
        Test {
            name: "backend::alloc_udmabuf",
            needs: "/dev/udmabuf",
            run: || alloc_backend(BackendKind::Udmabuf),
        },
        Test {
            name: "backend::alloc_drm_dumb",
            needs: "a DRM card that makes dumb buffers (vgem, vkms)",
            run: || alloc_backend(BackendKind::DrmDumb),
        },
        Test {
            name: "backend::choice_cases",
            needs: "nothing (checks each case against what exists)",
            run: choice_cases,
        },
        Test {
            name: "backend::zeroed_after_realloc",
            needs: "any dma-buf backend",
            run: zeroed_after_realloc,
        },
        Test {
            name: "backend::sync_ioctls",
            needs: "any dma-buf backend",
            run: sync_ioctls,
        },
        Test {
            name: "backend::ro_map_write_sigsegv",
            needs: "any dma-buf backend",
            run: ro_map_write_sigsegv,
        },
        Test {
            name: "backend::prot_write_on_rdonly_fd",
            needs: "a DMA-BUF heap, udmabuf or a DRM dumb-buffer device",
            run: prot_write_on_rdonly_fd,
        },
        Test {
            name: "backend::undersized_import_refused",
            needs: "any dma-buf backend",
            run: undersized_import_refused,
        },
        Test {
            name: "backend::allocate_n_and_shortcut",
            needs: "any dma-buf backend",
            run: allocate_n_and_shortcut,
        },
        Test {
            name: "backend::udmabuf_read_only_handle",
            needs: "/dev/udmabuf",
            run: udmabuf_read_only_handle,
        },
        Test {
            name: "backend::eacces_names_udev_rules",
            needs: "a root-only heap or /dev/udmabuf (the default modes)",
            run: eacces_names_udev_rules,
        },
        Test {
            name: "backend::base_alignment_honoured_or_refused",
            needs: "a CMA heap (the system heap, udmabuf and DRM are checked where present)",
            run: base_alignment_honoured_or_refused,
        },
        Test {
            name: "backend::fd_count_10000_cycles",
            needs: "any dma-buf backend",
            run: fd_count_cycles,
        },
    ]
}

const DMA_BUF_KINDS: [BackendKind; 4] = [
    BackendKind::SystemHeap,
    BackendKind::CmaHeap,
    BackendKind::Udmabuf,
    BackendKind::DrmDumb,
];

/// A reconciled list for `size` bytes of device + CPU memory that leads to `kind`: contiguous
/// for the CMA heap, a VFIO accessor for udmabuf, the preferred-backend hint otherwise. The
/// accessor's name becomes the buffer's name.
fn list(size: u64, kind: Option<BackendKind>, name: &str) -> Arc<Reconciled> {
    let build = || -> Result<Reconciled, String> {
        let mut l = AttrList::raw(size).map_err(|e| e.to_string())?;
        l.set_need_cpu_access(true)
            .and_then(|l| l.set_accessor_name(name))
            .map_err(|e| e.to_string())?;
        let r = match kind {
            Some(BackendKind::CmaHeap) => l
                .set_contiguous(true)
                .and_then(|l| l.set_accessor_kind(AccessorKind::Device)),
            // VFIO pins the memory and another device imports the dma-buf: only udmabuf
            // serves both (VFIO alone could also use a plain memfd).
            Some(BackendKind::Udmabuf) => {
                let mut importer = AttrList::raw(size).map_err(|e| e.to_string())?;
                importer
                    .set_accessor_kind(AccessorKind::Device)
                    .map_err(|e| e.to_string())?;
                l.set_accessor_kind(AccessorKind::Vfio)
                    .map_err(|e| e.to_string())?;
                return reconcile([&l, &importer]).map_err(|e| e.to_string());
            }
            Some(k) => l
                .set_accessor_kind(AccessorKind::Device)
                .and_then(|l| l.set_preferred_backend(k)),
            None => l.set_accessor_kind(AccessorKind::Device),
        };
        r.map_err(|e| e.to_string())?;
        reconcile([&l]).map_err(|e| e.to_string())
    };
    // The inputs are fixed and valid; a failure here is a bug in this file.
    Arc::new(build().expect("test list reconciles"))
}

/// Why `kind` cannot run here, with the kernel option a Debian kernel lacks.
/// The dry run (`Backends::plan`) on a real heap: it names the backend allocation then uses,
/// opens the node read-write, reads CmaFree for a CMA heap, and allocates nothing (no new fd).
fn plan_then_allocate(kind: BackendKind) -> anyhow::Result<Outcome> {
    if let Some(why) = missing(kind) {
        return skip(why);
    }
    let r = list(1 << 20, Some(kind), "hwtest-plan");
    let before = unibuf::fd::count_open_fds()?;
    let plan = backend::global().plan(&r);
    ensure!(
        unibuf::fd::count_open_fds()? == before,
        "the dry run left an fd open"
    );
    ensure!(plan.can_allocate(), "plan says no:\n{plan}");
    let chosen = plan.choice.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(chosen.backend == kind, "plan chose {chosen}");
    ensure!(
        plan.checks
            .iter()
            .any(|c| c.what == "open read-write" && c.ok == Some(true)),
        "no read-write open check:\n{plan}"
    );
    if kind == BackendKind::CmaHeap {
        ensure!(
            plan.checks
                .iter()
                .any(|c| c.what == "cma free" && c.ok == Some(true)),
            "no CmaFree check:\n{plan}"
        );
    }
    let o = Object::allocate(&r)?;
    ensure!(
        o.backend() == Some(kind),
        "allocated from {:?}",
        o.backend()
    );
    let cma = plan
        .checks
        .iter()
        .find(|c| c.what == "cma free")
        .map(|c| format!("; {}", c.detail))
        .unwrap_or_default();
    pass(format!("plan: {chosen}{cma}; the allocation agreed"))
}

/// More contiguous memory than the CMA area has: the dry run says no (CmaFree), and the
/// allocation's ENOMEM names the size asked and CmaTotal/CmaFree.
fn cma_enomem_names_cma_free() -> anyhow::Result<Outcome> {
    if let Some(why) = missing(BackendKind::CmaHeap) {
        return skip(why);
    }
    let Some((total, _)) = backend::plan::read_cma_meminfo() else {
        return skip("/proc/meminfo reports no CMA totals");
    };
    let r = list(total * 2, Some(BackendKind::CmaHeap), "hwtest-cma-big");
    let plan = backend::global().plan(&r);
    ensure!(
        !plan.can_allocate(),
        "plan says yes for twice CmaTotal:\n{plan}"
    );
    ensure!(
        plan.checks
            .iter()
            .any(|c| c.what == "cma free" && c.ok == Some(false)),
        "{plan}"
    );
    let e = match Object::allocate(&r) {
        Ok(_) => bail!(
            "{} bytes of CMA allocated from a {total}-byte area",
            total * 2
        ),
        Err(e) => e.to_string(),
    };
    ensure!(
        e.contains("ENOMEM") && e.contains("CmaTotal") && e.contains("CmaFree"),
        "{e}"
    );
    ensure!(e.contains(&format!("{} bytes asked", total * 2)), "{e}");
    pass(e)
}

fn missing(kind: BackendKind) -> Option<String> {
    let b = backend::global();
    if b.has(kind) {
        return None;
    }
    let hint = match kind {
        BackendKind::SystemHeap => "CONFIG_DMABUF_HEAPS_SYSTEM (Debian 6.1 has no heaps)",
        BackendKind::CmaHeap => "CONFIG_DMABUF_HEAPS_CMA and a CMA area (Debian kernels have none)",
        BackendKind::Udmabuf => "CONFIG_UDMABUF (Debian 6.1 has none)",
        BackendKind::DrmDumb => "a DRM driver with dumb buffers (modprobe vgem)",
        BackendKind::Memfd => "memfd_create",
        BackendKind::CudaVidmem => {
            "feature cuda, an NVIDIA GPU and a vidmem_gpu list (gpu:: tests)"
        }
    };
    Some(format!("no {kind}: {} (needs {hint})", b.why_not(kind)))
}

/// The first dma-buf backend this machine has.
fn any_dma_buf() -> Option<BackendKind> {
    DMA_BUF_KINDS.into_iter().find(|k| missing(*k).is_none())
}

fn fdinfo(fd: BorrowedFd<'_>) -> anyhow::Result<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", crate::harness::raw(&fd)))
        .context("read /proc/self/fdinfo")
}

fn fdinfo_field(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.strip_prefix(key)
            .map(|v| v.trim_start_matches(':').trim().to_string())
    })
}

fn discovery_report() -> anyhow::Result<Outcome> {
    let b = backend::global();
    // Every node in /dev/dma_heap must be in the report, classified.
    if let Ok(rd) = std::fs::read_dir("/dev/dma_heap") {
        for e in rd {
            let name = e?.file_name().to_string_lossy().into_owned();
            ensure!(
                b.heaps.iter().any(|h| h.name == name),
                "heap {name} missing from discovery"
            );
        }
    }
    let have: Vec<String> = BackendKind::ALL
        .iter()
        .filter(|k| b.has(**k))
        .map(|k| k.to_string())
        .collect();
    pass(format!("usable: {} | {}", have.join(","), b))
}

fn alloc_backend(kind: BackendKind) -> anyhow::Result<Outcome> {
    if let Some(why) = missing(kind) {
        return skip(why);
    }
    let name = format!("hwtest-{kind}");
    let size = 1 << 20;
    let l = list(size, Some(kind), &name);
    let mut o = Object::allocate(&l).with_context(|| format!("allocate from {kind}"))?;
    let choice = o.choice().context("allocation has a choice")?.clone();
    ensure!(choice.backend == kind, "chose {choice} instead of {kind}");
    ensure!(o.is_dma_buf(), "{kind} object is not a dma-buf");
    ensure!(o.size() >= size, "size {} < {size}", o.size());
    // The name is in fdinfo right after allocation.
    let info = fdinfo(o.fd())?;
    let exp = fdinfo_field(&info, "exp_name").context("no exp_name: not a dma-buf?")?;
    let got_name = fdinfo_field(&info, "name").unwrap_or_default();
    ensure!(
        got_name == name,
        "fdinfo name {got_name:?}, want {name:?} ({info})"
    );
    match kind {
        BackendKind::SystemHeap => ensure!(exp == "system", "exp_name {exp}"),
        BackendKind::CmaHeap => {
            let heap = backend::global()
                .heap(HeapClass::Contiguous)
                .context("cma heap")?;
            ensure!(exp == heap.name, "exp_name {exp}, heap {}", heap.name);
        }
        BackendKind::Udmabuf => {
            ensure!(exp == "udmabuf", "exp_name {exp}");
            let m = o.memfd().context("udmabuf object keeps its memfd")?;
            let seals = rustix::fs::fcntl_get_seals(m)?;
            ensure!(
                seals.contains(rustix::fs::SealFlags::SHRINK),
                "memfd seals {seals:?} lack F_SEAL_SHRINK"
            );
        }
        _ => {}
    }
    // lseek(SEEK_END) agrees with the allocation.
    let end = unibuf::fd::fd_size(o.fd(), "dma-buf")?;
    ensure!(
        end == o.size(),
        "lseek size {end} != object size {}",
        o.size()
    );
    // Write through the writable map, read back through a read-only dup.
    {
        let mut w = o.map_write()?;
        let mut g = w.write()?;
        let pattern: Vec<u8> = (0..g.len()).map(|i| (i % 251) as u8).collect();
        g.copy_from_slice(0, &pattern)?;
        g.end()?;
    }
    let ro = o.dup_with(Permission::ReadOnly)?;
    let r = ro.map_read()?;
    let g = r.read()?.to_vec();
    let bad = g.iter().enumerate().find(|(i, b)| **b != (*i % 251) as u8);
    ensure!(bad.is_none(), "readback mismatch at {:?}", bad);
    pass(format!("{choice}; exp_name={exp}; name={got_name}"))
}

fn choice_cases() -> anyhow::Result<Outcome> {
    let b = backend::global();
    let m = |contiguous, pinnable, device_access, preferred| MemoryRequirement {
        contiguous,
        pinnable,
        device_access,
        preferred,
        vidmem: None,
    };
    let mut notes = Vec::new();
    let mut check = |what: &str, req: MemoryRequirement, want: Option<BackendKind>| {
        let got = b.choose(&req);
        match (&got, want) {
            (Ok(c), Some(w)) if c.backend == w => {
                notes.push(format!("{what}->{w}"));
                Ok(())
            }
            (Err(_), None) => {
                notes.push(format!("{what}->refused"));
                Ok(())
            }
            _ => Err(anyhow::anyhow!("{what}: got {got:?}, want {want:?}")),
        }
    };
    let has = |k| b.has(k);
    check(
        "contiguous",
        m(true, false, true, None),
        has(BackendKind::CmaHeap).then_some(BackendKind::CmaHeap),
    )?;
    check(
        "pinnable",
        m(false, true, true, None),
        has(BackendKind::Udmabuf).then_some(BackendKind::Udmabuf),
    )?;
    let plain = [
        BackendKind::SystemHeap,
        BackendKind::Udmabuf,
        BackendKind::DrmDumb,
        BackendKind::CmaHeap,
    ]
    .into_iter()
    .find(|k| has(*k));
    check("device", m(false, false, true, None), plain)?;
    let cpu = [
        BackendKind::SystemHeap,
        BackendKind::Udmabuf,
        BackendKind::DrmDumb,
        BackendKind::Memfd,
    ]
    .into_iter()
    .find(|k| has(*k));
    check("cpu-only", m(false, false, false, None), cpu)?;
    check(
        "cpu-only+hint-memfd",
        m(false, false, false, Some(BackendKind::Memfd)),
        Some(BackendKind::Memfd),
    )?;
    check(
        "device+hint-memfd",
        m(false, false, true, Some(BackendKind::Memfd)),
        None,
    )?;
    check("contiguous+pinnable", m(true, true, true, None), None)?;
    if has(BackendKind::DrmDumb) {
        check(
            "device+hint-drm",
            m(false, false, true, Some(BackendKind::DrmDumb)),
            Some(BackendKind::DrmDumb),
        )?;
    }
    pass(notes.join(" "))
}

fn zeroed_after_realloc() -> anyhow::Result<Outcome> {
    let mut done = Vec::new();
    for kind in DMA_BUF_KINDS {
        if missing(kind).is_some() {
            continue;
        }
        let l = list(256 << 10, Some(kind), "hwtest-zero");
        for round in 0..8 {
            let mut o = Object::allocate(&l)?;
            let mut w = o.map_write()?;
            let mut g = w.write()?;
            let v = g.to_vec();
            if let Some(i) = v.iter().position(|&b| b != 0) {
                bail!("{kind}: round {round}: byte {i} is {:#x}, not zero", v[i]);
            }
            g.fill(0xA5);
        }
        done.push(kind.to_string());
    }
    if done.is_empty() {
        return skip("no dma-buf backend here");
    }
    pass(format!("8 rounds of 256 KiB each on {}", done.join(",")))
}

fn raw_sync(fd: BorrowedFd<'_>, flags: u64) -> rustix::io::Result<()> {
    unibuf::sys::dma_buf::sync(fd, flags)
}

fn sync_ioctls() -> anyhow::Result<Outcome> {
    use unibuf::map::{sync_end, sync_start, SyncDir};
    let mut done = Vec::new();
    for kind in DMA_BUF_KINDS {
        if missing(kind).is_some() {
            continue;
        }
        let mut o = Object::allocate(&list(65536, Some(kind), "hwtest-sync"))?;
        for dir in [SyncDir::Read, SyncDir::Write, SyncDir::ReadWrite] {
            sync_start(o.fd(), dir).with_context(|| format!("{kind} start {dir:?}"))?;
            sync_end(o.fd(), dir).with_context(|| format!("{kind} end {dir:?}"))?;
        }
        // Flags outside the valid mask are refused by the kernel.
        let e = raw_sync(o.fd(), 0x100).err();
        ensure!(
            e == Some(rustix::io::Errno::INVAL),
            "{kind}: bad flags gave {e:?}"
        );
        // Guards and flush.
        let mut w = o.map_write()?;
        let mut g = w.read_write()?;
        g.copy_from_slice(0, &[7])?;
        g.flush(0..1)?;
        ensure!(
            g.flush(0..(g.len() + 1)).is_err(),
            "out-of-range flush accepted"
        );
        g.end()?;
        done.push(kind.to_string());
    }
    if done.is_empty() {
        return skip("no dma-buf backend here");
    }
    pass(format!(
        "START/END READ,WRITE,RW ok; bad flags EINVAL; on {}",
        done.join(",")
    ))
}

fn ro_map_write_sigsegv() -> anyhow::Result<Outcome> {
    let Some(kind) = any_dma_buf() else {
        return skip("no dma-buf backend here");
    };
    let o = Object::allocate(&list(4096, Some(kind), "hwtest-ro"))?;
    let ro = o.dup_with(Permission::ReadOnly)?;
    let map = ro.map_read()?;
    let p = map.as_ptr() as *mut u8;
    // SAFETY: the child only performs one store and exits.
    let pid = unsafe { libc::fork() };
    ensure!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: deliberately faulting store into a PROT_READ mapping.
        unsafe { std::ptr::write_volatile(p, 0x5A) };
        // SAFETY: async-signal-safe exit.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: our child; valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
        "child was not killed by SIGSEGV (status {status:#x})"
    );
    ensure!(map.read()?.to_vec()[0] == 0, "the byte changed");
    pass(format!("{kind}: child killed by SIGSEGV"))
}

fn mmap_rw(fd: BorrowedFd<'_>, len: usize) -> rustix::io::Result<()> {
    // SAFETY: a fresh mapping; unmapped right away on success.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    }?;
    // SAFETY: the mapping just made.
    unsafe { rustix::mm::munmap(p, len) }
}

fn prot_write_on_rdonly_fd() -> anyhow::Result<Outcome> {
    let mut notes = Vec::new();
    let b = backend::global();
    if let Some(h) = b.heaps.iter().find(|h| h.access.is_usable()) {
        // A heap buffer allocated O_RDONLY: PROT_WRITE must fail with EACCES.
        let heap = rustix::fs::open(
            &h.path,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let fd: OwnedFd = unibuf::sys::dma_heap::alloc(
            heap.as_fd(),
            4096,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u32,
            0,
        )?;
        let e = mmap_rw(fd.as_fd(), 4096).err();
        ensure!(
            e == Some(rustix::io::Errno::ACCESS),
            "PROT_WRITE on O_RDONLY {} dma-buf: {e:?}",
            h.name
        );
        // unibuf refuses to make a read-write handle of it, and a read-only one has no writable map.
        let l = list(4096, None, "hwtest-rdonly");
        let dup = rustix::io::fcntl_dupfd_cloexec(&fd, 0)?;
        match Object::import(dup, &l, Permission::ReadWrite) {
            Err(unibuf::Error::PermissionDenied(_)) => {}
            other => bail!("RW import of an O_RDONLY dma-buf: {other:?}"),
        }
        let mut ro = Object::import(fd, &l, Permission::ReadOnly)?;
        ensure!(ro.map_write().is_err(), "RO handle gave a writable map");
        ensure!(
            ro.map_read()?.read()?.to_vec()[0] == 0,
            "read through RO map"
        );
        notes.push(format!("heap {}: EACCES", h.name));
    }
    if missing(BackendKind::Udmabuf).is_none() {
        let o = Object::allocate(&list(4096, Some(BackendKind::Udmabuf), "hwtest-rdonly"))?;
        let ro = o.dup_with(Permission::ReadOnly)?;
        let m = ro.memfd().context("RO udmabuf handle has a memfd")?;
        let e = mmap_rw(m, 4096).err();
        ensure!(
            e == Some(rustix::io::Errno::ACCESS),
            "PROT_WRITE on the RO handle's memfd: {e:?}"
        );
        notes.push("udmabuf RO memfd: EACCES".into());
    }
    if let Some(d) = b.drm_dumb() {
        // A dumb buffer exported by PRIME without DRM_RDWR is an O_RDONLY dma-buf.
        let card = Card(rustix::fs::open(
            &d.path,
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?);
        use drm::control::Device as _;
        let _ = drm::Device::release_master_lock(&card);
        let dumb = card.create_dumb_buffer((1024, 1), drm::buffer::DrmFourcc::Xrgb8888, 32)?;
        let fd = card.buffer_to_prime_fd(
            drm::buffer::Buffer::handle(&dumb),
            unibuf::sys::drm::DRM_CLOEXEC,
        );
        card.destroy_dumb_buffer(dumb)?;
        let fd = fd?;
        let e = mmap_rw(fd.as_fd(), 4096).err();
        ensure!(
            e == Some(rustix::io::Errno::ACCESS),
            "PROT_WRITE on an O_RDONLY PRIME export of {}: {e:?}",
            d.path.display()
        );
        let l = list(4096, None, "hwtest-rdonly");
        ensure!(
            matches!(
                Object::import(fd, &l, Permission::ReadWrite),
                Err(unibuf::Error::PermissionDenied(_))
            ),
            "RW import of an O_RDONLY PRIME export was not refused"
        );
        notes.push(format!(
            "{} ({}) O_RDONLY PRIME export: EACCES",
            d.path.display(),
            d.driver.as_deref().unwrap_or("?")
        ));
    }
    if notes.is_empty() {
        return skip("no DMA-BUF heap, udmabuf or DRM dumb-buffer device here");
    }
    pass(notes.join("; "))
}

/// A DRM node for the `drm` crate's traits.
struct Card(OwnedFd);
impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
impl drm::Device for Card {}
impl drm::control::Device for Card {}

fn undersized_import_refused() -> anyhow::Result<Outcome> {
    let Some(kind) = any_dma_buf() else {
        return skip("no dma-buf backend here");
    };
    let small = Object::allocate(&list(4096, Some(kind), "hwtest-small"))?;
    let big = list(1 << 20, None, "hwtest-big");
    let fd = rustix::io::fcntl_dupfd_cloexec(small.fd(), 0)?;
    match Object::import(fd, &big, Permission::ReadOnly) {
        Err(unibuf::Error::InvalidArgument(m)) if m.contains("requires") => {}
        other => bail!("undersized import: {other:?}"),
    }
    // A fitting import works and knows its exporter.
    let fd = rustix::io::fcntl_dupfd_cloexec(small.fd(), 0)?;
    let ok = Object::import(fd, &list(4096, None, "x"), Permission::ReadOnly)?;
    ensure!(ok.cpu_mappable().is_ok(), "import not mappable");
    pass(format!(
        "{kind}: 4 KiB into a 1 MiB list refused; exporter {:?}",
        ok.exporter()
    ))
}

fn fd_count_cycles() -> anyhow::Result<Outcome> {
    let Some(kind) = any_dma_buf() else {
        return skip("no dma-buf backend here");
    };
    let l = list(4096, Some(kind), "hwtest-cycle");
    // One cycle first so lazily opened things (discovery) are counted in `before`.
    drop(Object::allocate(&l)?);
    let before = unibuf::fd::count_open_fds()?;
    let t = std::time::Instant::now();
    for i in 0..10_000 {
        let mut o = Object::allocate(&l).with_context(|| format!("cycle {i}"))?;
        let mut w = o.map_write()?;
        w.write()?.copy_from_slice(0, &[1])?;
    }
    let after = unibuf::fd::count_open_fds()?;
    ensure!(before == after, "fd count {before} -> {after}");
    pass(format!(
        "{kind}: 10000 cycles in {:.2}s, fd count {before} unchanged",
        t.elapsed().as_secs_f64()
    ))
}

fn eacces_names_udev_rules() -> anyhow::Result<Outcome> {
    use std::os::unix::fs::PermissionsExt;
    // Nodes only root can open (the kernel's default 0600).
    let mut root_only: Vec<std::path::PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/dev/dma_heap") {
        for e in rd.flatten() {
            root_only.push(e.path());
        }
    }
    root_only.push("/dev/udmabuf".into());
    // Nodes nobody may open: root-only (the kernel's 0600), or root:unibuf 0660 once udevd ran
    // udev-rules/60-unibuf.rules (nobody is not in the group).
    root_only.retain(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o006 == 0));
    if root_only.is_empty() {
        return skip("no root-only heap or udmabuf node (udev rules installed, or none present)");
    }
    // The VM's initramfs root may be 0700 (a mktemp directory packed by cpio): then nobody cannot
    // reach /dev at all and every open fails with EACCES for the wrong reason. Make `/`
    // traversable so the nodes' own modes decide.
    let mut note = String::new();
    let root_mode = std::fs::metadata("/")?.permissions().mode();
    if root_mode & 0o001 == 0 {
        std::fs::set_permissions("/", std::fs::Permissions::from_mode(root_mode | 0o055))?;
        note = format!(" (made / traversable: it was {:o})", root_mode & 0o7777);
    }
    // This test runs in its own forked child: drop to nobody for good.
    // SAFETY: plain syscalls on this process's credentials.
    let r = unsafe {
        (
            libc::setgroups(0, std::ptr::null()),
            libc::setgid(65534),
            libc::setuid(65534),
        )
    };
    ensure!(r == (0, 0, 0), "could not drop to uid/gid 65534: {r:?}");
    let b = unibuf::backend::Backends::discover();
    let mut seen = Vec::new();
    for p in &root_only {
        let access = if p.starts_with("/dev/dma_heap") {
            b.heaps
                .iter()
                .find(|h| &h.path == p)
                .map(|h| h.access.clone())
                .with_context(|| format!("heap missing from discovery: {b}"))?
        } else {
            b.udmabuf.access.clone()
        };
        let unibuf::backend::Access::Denied(msg) = &access else {
            bail!("{}: {access} (want denied)", p.display());
        };
        ensure!(
            msg.contains("EACCES") && msg.contains("udev-rules/60-unibuf.rules"),
            "{}: message does not name EACCES and the rules: {msg}",
            p.display()
        );
        seen.push(p.display().to_string());
    }
    // A device allocation that has nothing else says why, naming the rules.
    let l = list(4096, Some(BackendKind::Udmabuf), "hwtest-eacces");
    if !b.has(BackendKind::Udmabuf) {
        let e = Object::allocator(&l)
            .backends(&b)
            .allocate()
            .err()
            .context("udmabuf allocation as nobody succeeded")?
            .to_string();
        ensure!(
            e.contains("udev-rules"),
            "error does not name the rules: {e}"
        );
    }
    pass(format!(
        "as uid 65534: denied with the udev hint: {}{note}",
        seen.join(", ")
    ))
}

fn allocate_n_and_shortcut() -> anyhow::Result<Outcome> {
    let Some(kind) = any_dma_buf() else {
        return skip("no dma-buf backend here");
    };
    let l = list(65536, Some(kind), "hwtest-n");
    let objs = Object::allocator(&l).allocate_n(4)?;
    ensure!(objs.len() == 4, "{} objects", objs.len());
    for (i, o) in objs.iter().enumerate() {
        let info = fdinfo(o.fd())?;
        let name = fdinfo_field(&info, "name").unwrap_or_default();
        ensure!(
            name == format!("hwtest-n-{i}"),
            "object {i} is named {name:?}"
        );
        ensure!(
            o.backend() == Some(kind),
            "object {i} from {:?}",
            o.backend()
        );
    }
    // Distinct buffers: a write to one is not seen in another.
    let mut objs = objs;
    objs[0].map_write()?.write()?.copy_from_slice(0, &[0x11])?;
    ensure!(
        objs[1].map_read()?.read()?.to_vec()[0] == 0,
        "buffers alias"
    );
    // The shortcut: a camera (device, writes) and a CPU reader (read-only), one call.
    let mut cam = AttrList::raw(100_000)?;
    cam.set_accessor_kind(AccessorKind::Camera)?
        .set_accessor_name("cam")?;
    let mut cpu = AttrList::raw(100_000)?;
    cpu.set_accessor_kind(AccessorKind::Cpu)?
        .set_need_cpu_access(true)?
        .set_required_perm(Permission::ReadOnly)?
        .set_accessor_name("cpu")?;
    let o = Object::reconcile_and_allocate([&cam, &cpu])?;
    ensure!(o.is_dma_buf(), "a camera list got a non-dma-buf");
    ensure!(o.size() >= 100_000, "size {}", o.size());
    let name = fdinfo_field(&fdinfo(o.fd())?, "name").unwrap_or_default();
    pass(format!(
        "4 x 64 KiB from {kind} named hwtest-n-0..3; shortcut: {} named {name:?}",
        o.choice().map(|c| c.to_string()).unwrap_or_default()
    ))
}

fn udmabuf_read_only_handle() -> anyhow::Result<Outcome> {
    if let Some(why) = missing(BackendKind::Udmabuf) {
        return skip(why);
    }
    let mut rw = Object::allocate(&list(8192, Some(BackendKind::Udmabuf), "hwtest-ro-udmabuf"))?;
    let ro = rw.dup_with(Permission::ReadOnly)?;
    {
        let mut w = rw.map_write()?;
        let mut g = w.write()?;
        g.copy_from_slice(0, b"hello")?;
        g.copy_from_slice(8191, &[0x42])?;
    }
    // The read-only handle maps its O_RDONLY memfd and sees the writes.
    let m = ro.memfd().context("RO udmabuf handle keeps a memfd")?;
    let fl = rustix::fs::fcntl_getfl(m)?;
    ensure!(
        fl & rustix::fs::OFlags::RWMODE == rustix::fs::OFlags::RDONLY,
        "RO handle's memfd is {fl:?}"
    );
    let r = ro.map_read()?;
    let g = r.read()?.to_vec();
    ensure!(
        &g[..5] == b"hello" && g[8191] == 0x42,
        "RO view does not see the writes"
    );
    // Its dma-buf is the same buffer (same exporter, same size).
    ensure!(
        unibuf::fd::fd_size(ro.fd(), "dma-buf")? == unibuf::fd::fd_size(rw.fd(), "dma-buf")?,
        "sizes differ"
    );
    pass("writes through the RW map are seen through the RO handle's O_RDONLY memfd map")
}

/// A raw list of `size` bytes aligned to `align` that leads to `kind` (see [`list`]).
fn aligned_list(size: u64, align: u64, kind: BackendKind) -> anyhow::Result<Arc<Reconciled>> {
    let mut l = AttrList::raw(size)?;
    l.set_need_cpu_access(true)?
        .set_raw_align(align)?
        .set_accessor_name("align-test")?;
    match kind {
        BackendKind::CmaHeap => {
            l.set_contiguous(true)?
                .set_accessor_kind(AccessorKind::Device)?;
        }
        k => {
            l.set_accessor_kind(AccessorKind::Device)?
                .set_preferred_backend(k)?;
        }
    }
    Ok(Arc::new(
        reconcile([&l]).map_err(|c| anyhow::anyhow!("{c}"))?,
    ))
}

/// The CMA heap honours a base alignment up to 4 pages by allocating at least that much (its
/// physical alignment follows the size: cma_heap.c aligns to min(get_order(len),
/// CONFIG_CMA_ALIGNMENT), and CONFIG_CMA_ALIGNMENT is at least 2); beyond that, and beyond a page
/// on the other dma-buf backends, the allocation is refused with the key, value and backend.
fn base_alignment_honoured_or_refused() -> anyhow::Result<Outcome> {
    let b = backend::global();
    if !b.has(BackendKind::CmaHeap) {
        return skip(format!("no CMA heap: {}", b.why_not(BackendKind::CmaHeap)));
    }
    let page = backend::page_size();
    let o = Object::allocator(&aligned_list(page, 4 * page, BackendKind::CmaHeap)?).allocate()?;
    ensure!(
        o.backend() == Some(BackendKind::CmaHeap),
        "not from the CMA heap"
    );
    ensure!(
        o.size() >= 4 * page,
        "CMA buffer of {} bytes for a {}-byte alignment: its order would not guarantee it",
        o.size(),
        4 * page
    );
    let refused = |kind: BackendKind, align: u64| -> anyhow::Result<()> {
        let l = aligned_list(1 << 20, align, kind)?;
        match Object::allocator(&l).allocate() {
            Ok(o) => bail!(
                "{kind}: a {align}-byte alignment was accepted ({} bytes)",
                o.size()
            ),
            Err(e) => {
                let e = e.to_string();
                ensure!(
                    e.contains("raw.align")
                        && e.contains(&align.to_string())
                        && e.contains(&kind.to_string()),
                    "{kind}: the error does not name key, value and backend: {e}"
                );
                Ok(())
            }
        }
    };
    refused(BackendKind::CmaHeap, 2 << 20)?;
    for kind in [
        BackendKind::SystemHeap,
        BackendKind::Udmabuf,
        BackendKind::DrmDumb,
    ] {
        if b.has(kind) {
            refused(kind, 2 * page)?;
        }
    }
    pass(format!(
        "CMA honours {} bytes (buffer {} bytes), refuses 2 MiB; page-only backends refuse 2 pages",
        4 * page,
        o.size()
    ))
}
