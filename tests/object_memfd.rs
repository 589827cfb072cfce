//! Host tests of objects and CPU maps on the memfd backend, and of every object path that needs no
//! device.

use rustix::fd::{AsFd, AsRawFd};
use rustix::mm::{MapFlags, ProtFlags};
use std::sync::Arc;
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Permission};
use unibuf::backend::Backends;
use unibuf::object::{ImportParts, Object};
use unibuf::reconcile::{reconcile, Reconciled};
use unibuf::Error;

/// A reconciled CPU-only list (accessor kind Cpu: no device, so memfd is allowed).
fn cpu_list(size: u64, permission: Permission, cpu: bool) -> Arc<Reconciled> {
    let mut l = AttrList::raw(size).unwrap();
    l.set_need_cpu_access(cpu)
        .unwrap()
        .set_required_perm(permission)
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_accessor_name("host-test")
        .unwrap();
    Arc::new(reconcile([&l]).unwrap())
}

/// The same as a device list (no accessor kind stated counts as a device).
fn device_list(size: u64) -> Arc<Reconciled> {
    let mut l = AttrList::raw(size).unwrap();
    l.set_need_cpu_access(true).unwrap();
    Arc::new(reconcile([&l]).unwrap())
}

fn memfd_obj(size: u64) -> Object {
    Object::allocator(&cpu_list(size, Permission::ReadWrite, true))
        .backends(&Backends::memfd_only())
        .allocate()
        .expect("memfd allocation")
}

#[test]
fn memfd_object_is_chosen_for_cpu_only_and_round_trips_bytes() {
    let mut o = memfd_obj(10_000);
    assert_eq!(o.backend(), Some(BackendKind::Memfd));
    assert!(!o.is_dma_buf());
    assert_eq!(o.size(), 12288, "page-rounded");
    assert!(o.choice().unwrap().reason.contains("CPU-only"));
    assert_eq!(o.permission(), Permission::ReadWrite);
    {
        let mut w = o.map_write().unwrap();
        let mut g = w.write().unwrap();
        assert!(g.to_vec().iter().all(|&b| b == 0), "fresh memory is zeroed");
        g.copy_from_slice(0, &[0xAB]).unwrap();
        g.copy_from_slice(12287, &[0xCD]).unwrap();
        g.flush(0..12288).unwrap();
        assert!(g.flush(0..12289).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let bad = 5..4;
        assert!(g.flush(bad).is_err());
        g.end().unwrap();
    }
    let ro = o.dup_with(Permission::ReadOnly).unwrap();
    let r = ro.map_read().unwrap();
    let g = r.read().unwrap();
    let v = g.to_vec();
    assert_eq!((v[0], v[12287]), (0xAB, 0xCD));
}

#[test]
fn read_only_handles_refuse_writes_at_every_layer() {
    let o = memfd_obj(4096);
    let mut ro = o.dup_with(Permission::ReadOnly).unwrap();
    assert_eq!(ro.permission(), Permission::ReadOnly);
    // API layer.
    match ro.map_write() {
        Err(Error::PermissionDenied(m)) => assert!(m.contains("read-only"), "{m}"),
        other => panic!("map_write on RO handle: {other:?}"),
    }
    // Raising is refused.
    assert!(matches!(
        ro.dup_with(Permission::ReadWrite),
        Err(Error::PermissionDenied(_))
    ));
    // Kernel layer: the memfd behind an RO handle is O_RDONLY, so PROT_WRITE|MAP_SHARED fails.
    let m = ro.memfd().expect("memfd object has a memfd");
    let fl = rustix::fs::fcntl_getfl(m).unwrap();
    assert_eq!(fl & rustix::fs::OFlags::RWMODE, rustix::fs::OFlags::RDONLY);
    // SAFETY: a fresh mapping request; on success it is unmapped right away.
    let r = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            4096,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            m,
            0,
        )
    };
    assert_eq!(r.err(), Some(rustix::io::Errno::ACCESS));
    // An RW dup of the original still works.
    let mut rw = o.dup().unwrap();
    assert!(rw.map_write().is_ok());
}

#[test]
fn write_through_read_only_map_kills_child_with_sigsegv() {
    let o = memfd_obj(4096);
    let ro = o.dup_with(Permission::ReadOnly).unwrap();
    let map = ro.map_read().unwrap();
    let p = map.as_ptr() as *mut u8;
    // SAFETY: the child only performs the faulting store and exits; it touches no locks.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: deliberately invalid: a store into a PROT_READ page must fault.
        unsafe { std::ptr::write_volatile(p, 1) };
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFSIGNALED(status), "child status {status}");
    assert_eq!(libc::WTERMSIG(status), libc::SIGSEGV);
    assert_eq!(map.read().unwrap().to_vec()[0], 0, "nothing was written");
}

#[test]
fn cpu_access_must_be_requested() {
    let mut o = Object::allocator(&cpu_list(4096, Permission::ReadWrite, false))
        .backends(&Backends::memfd_only())
        .allocate()
        .unwrap();
    let e = o.map_read().unwrap_err().to_string();
    assert!(e.contains("CPU access"), "{e}");
    assert!(o.map_write().is_err());
}

/// NvSciBufObjAlloc: the allocated object has read-write permission even when every list asked
/// read-only (ActualPerm read-only): the allocating process must be able to fill the buffer. It
/// hands read-only handles out with `dup_with` (NvSciBufObjDupWithReducePerm). This test used to
/// expect a read-only allocator.
#[test]
fn nvscibuf_allocator_holds_read_write_of_a_read_only_list() {
    let list = cpu_list(4096, Permission::ReadOnly, true);
    assert_eq!(list.permission(), Permission::ReadOnly);
    let mut o = Object::allocator(&list)
        .backends(&Backends::memfd_only())
        .allocate()
        .unwrap();
    assert_eq!(o.permission(), Permission::ReadWrite);
    o.map_write().unwrap();
    let ro = o.dup_with(Permission::ReadOnly).unwrap();
    assert_eq!(ro.permission(), Permission::ReadOnly);
    let fl = rustix::fs::fcntl_getfl(ro.fd()).unwrap();
    assert_eq!(fl & rustix::fs::OFlags::RWMODE, rustix::fs::OFlags::RDONLY);
}

#[test]
fn device_lists_cannot_use_memfd_only_backends() {
    let e = Object::allocator(&device_list(4096))
        .backends(&Backends::memfd_only())
        .allocate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("dma-buf provider"), "{e}");
}

#[test]
fn import_checks_kind_size_and_permission() {
    let o = memfd_obj(8192);
    let list = cpu_list(8192, Permission::ReadWrite, true);
    // A memfd is accepted for a CPU-only list.
    let fd = rustix::io::fcntl_dupfd_cloexec(o.fd(), 0).unwrap();
    let imp = Object::import(fd, &list, Permission::ReadWrite).unwrap();
    assert_eq!(imp.size(), 8192);
    assert_eq!(imp.backend(), Some(BackendKind::Memfd));
    assert!(imp.cpu_mappable().is_ok());

    // Undersized: refused.
    let small = memfd_obj(4096);
    let fd = rustix::io::fcntl_dupfd_cloexec(small.fd(), 0).unwrap();
    let e = Object::import(fd, &list, Permission::ReadWrite)
        .unwrap_err()
        .to_string();
    assert!(e.contains("4096 bytes") && e.contains("8192"), "{e}");

    // A read-only fd cannot back a read-write handle; read-only is fine.
    let ro = o.dup_with(Permission::ReadOnly).unwrap();
    let fd = rustix::io::fcntl_dupfd_cloexec(ro.fd(), 0).unwrap();
    assert!(matches!(
        Object::import(fd, &list, Permission::ReadWrite),
        Err(Error::PermissionDenied(_))
    ));
    let fd = rustix::io::fcntl_dupfd_cloexec(ro.fd(), 0).unwrap();
    assert!(Object::import(fd, &list, Permission::ReadOnly).is_ok());

    // A writable memfd imported read-only is reopened O_RDONLY.
    let fd = rustix::io::fcntl_dupfd_cloexec(o.fd(), 0).unwrap();
    let imp = Object::import(fd, &list, Permission::ReadOnly).unwrap();
    let fl = rustix::fs::fcntl_getfl(imp.fd()).unwrap();
    assert_eq!(fl & rustix::fs::OFlags::RWMODE, rustix::fs::OFlags::RDONLY);

    // Not a dma-buf or memfd: refused.
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let e = Object::import(r, &list, Permission::ReadOnly)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a dma-buf"), "{e}");

    // A memfd for a device list: refused.
    let fd = rustix::io::fcntl_dupfd_cloexec(o.fd(), 0).unwrap();
    assert!(Object::import(fd, &device_list(8192), Permission::ReadOnly).is_err());

    // A "memfd" part that is not a memfd: refused.
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let fd = rustix::io::fcntl_dupfd_cloexec(o.fd(), 0).unwrap();
    let parts = ImportParts {
        fd,
        memfd: Some(r),
        backend: None,
    };
    assert!(Object::import_parts(parts, &list, Permission::ReadOnly).is_err());
}

#[test]
fn identify_names_memfds() {
    let o = memfd_obj(4096);
    assert!(!o.is_dma_buf());
    assert_eq!(o.name(), "host-test");
    // An import reads the name from the memfd on first use.
    let fd = rustix::io::fcntl_dupfd_cloexec(o.fd(), 0).unwrap();
    let imp = Object::import(fd, o.list(), Permission::ReadOnly).unwrap();
    assert_eq!(imp.name(), "unibuf:host-test");
}

#[test]
fn allocate_n_gives_distinct_named_buffers() {
    let b = Backends::memfd_only();
    let l = cpu_list(4096, Permission::ReadWrite, true);
    let v = Object::allocator(&l)
        .backends(&b)
        .name("a-very-long-buffer-name-that-will-be-cut")
        .allocate_n(3)
        .unwrap();
    assert_eq!(v.len(), 3);
    for (i, a) in v.iter().enumerate() {
        assert!(a.name().len() <= 31, "{}", a.name());
        assert!(a.name().ends_with(&format!("-{i}")), "{}", a.name());
    }
    assert_ne!(v[0].fd().as_raw_fd(), v[1].fd().as_raw_fd());
}

#[test]
fn bad_requests_change_nothing() {
    let b = Backends::memfd_only();
    let l = cpu_list(4096, Permission::ReadWrite, true);
    assert!(matches!(
        Object::allocator(&l)
            .backends(&b)
            .name("nul\0inside")
            .allocate(),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Object::allocator(&l)
            .backends(&b)
            .name("nul\0inside")
            .allocate_n(2),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn fd_count_is_stable_over_many_cycles() {
    let b = Backends::memfd_only();
    let list = cpu_list(65536, Permission::ReadWrite, true);
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // Other tests run in parallel threads and open fds: measure in a forked child.
    // SAFETY: the child runs only this loop and _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let before = count();
        for _ in 0..2000 {
            let mut o = Object::allocator(&list).backends(&b).allocate().unwrap();
            let ro = o.dup_with(Permission::ReadOnly).unwrap();
            {
                let mut w = o.map_write().unwrap();
                w.write().unwrap().copy_from_slice(0, &[1]).unwrap();
            }
            assert_eq!(ro.map_read().unwrap().read().unwrap().to_vec()[0], 1);
        }
        let after = count();
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(if before == after { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status}"
    );
}

#[test]
fn object_fd_is_borrowable_for_ipc() {
    let o = memfd_obj(4096);
    let raw = o.fd().as_fd().as_raw_fd();
    assert!(raw >= 0);
    assert_eq!(
        o.memfd().unwrap().as_raw_fd(),
        raw,
        "a memfd object's memfd is its fd"
    );
}

#[test]
fn reconcile_and_allocate_shortcut_and_named_allocation() {
    let mut cam = AttrList::raw(5000).unwrap();
    cam.set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_need_cpu_access(true)
        .unwrap()
        .set_accessor_name("writer")
        .unwrap();
    let mut reader = AttrList::raw(5000).unwrap();
    reader
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_required_perm(Permission::ReadOnly)
        .unwrap()
        .set_accessor_name("reader")
        .unwrap()
        .set_preferred_backend(BackendKind::Memfd)
        .unwrap();
    let o = Object::reconcile_and_allocate([&cam, &reader]).unwrap();
    assert_eq!(o.backend(), Some(BackendKind::Memfd));
    assert!(o.size() >= 5000);
    // The buffer is named after the accessors (the memfd carries the `unibuf:` prefix).
    assert_eq!(o.name(), "reader+writer");
    let link = std::fs::read_link(format!("/proc/self/fd/{}", o.fd().as_raw_fd())).unwrap();
    assert!(
        link.to_string_lossy()
            .starts_with("/memfd:unibuf:reader+writer"),
        "{link:?}"
    );
    // A conflict comes back as Error::Conflict.
    let mut other = AttrList::raw(6000).unwrap();
    other
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_preferred_backend(BackendKind::SystemHeap)
        .unwrap();
    match Object::reconcile_and_allocate([&reader, &other]) {
        Err(Error::Conflict(_)) => {}
        r => panic!("expected a conflict, got {r:?}"),
    }
}

#[test]
fn objects_and_maps_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Object>();
    send_sync::<unibuf::map::ReadMap<'static>>();
    send_sync::<unibuf::map::WriteMap<'static>>();
    // An object moved to another thread still maps and frees there.
    let o = memfd_obj(4096);
    let h = std::thread::spawn(move || o.map_read().unwrap().read().unwrap().to_vec()[0]);
    assert_eq!(h.join().unwrap(), 0);
}

#[test]
fn import_refuses_memfds_that_can_shrink() {
    // Before: an unsealed memfd was accepted, and its sender could ftruncate it under our
    // mapping, so that reading the safe `&[u8]` of a ReadGuard raised SIGBUS.
    let list = cpu_list(8192, Permission::ReadWrite, true);
    let m = rustix::fs::memfd_create(
        "unsealed",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&m, 8192).unwrap();
    let e = Object::import(m, &list, Permission::ReadOnly)
        .unwrap_err()
        .to_string();
    assert!(e.contains("F_SEAL_SHRINK"), "{e}");

    // unibuf's own memfds carry the seal, so they import.
    let o = memfd_obj(8192);
    let seals = rustix::fs::fcntl_get_seals(o.fd()).unwrap();
    assert!(seals.contains(rustix::fs::SealFlags::SHRINK));
    let fd = rustix::io::fcntl_dupfd_cloexec(o.fd(), 0).unwrap();
    assert!(Object::import(fd, &list, Permission::ReadOnly).is_ok());
}

#[test]
fn identify_does_not_take_a_file_named_dmabuf_for_a_dma_buf() {
    // Before: any file whose path contained "dmabuf" was identified as a dma-buf.
    let dir = std::env::temp_dir().join(format!("unibuf-dmabuf-name-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("not-a-dmabuf");
    std::fs::write(&p, vec![0u8; 8192]).unwrap();
    let f = std::fs::File::open(&p).unwrap();
    let r = unibuf::fd::identify(f.into(), None);
    std::fs::remove_dir_all(&dir).unwrap();
    let e = r.unwrap_err().to_string();
    assert!(e.contains("not a dma-buf"), "{e}");
}

/// Before: a reconciled base alignment above the page size was only checked to be a power of two
/// and the memfd buffer came back page-aligned. Now the memfd backend (page alignment) refuses it,
/// naming the key, the value and the backend.
#[test]
fn base_alignment_is_honoured_or_refused() {
    let b = Backends::memfd_only();
    let page = unibuf::backend::page_size();
    let aligned = |align: u64| {
        let mut l = AttrList::raw(3 * page).unwrap();
        l.set_need_cpu_access(true)
            .unwrap()
            .set_accessor_kind(AccessorKind::Cpu)
            .unwrap()
            .set_raw_align(align)
            .unwrap();
        Arc::new(reconcile([&l]).unwrap())
    };
    let o = Object::allocator(&aligned(page))
        .backends(&b)
        .allocate()
        .unwrap();
    assert_eq!(o.size(), 3 * page);
    for align in [2 * page, 2 << 20, 1 << 30] {
        let e = Object::allocator(&aligned(align))
            .backends(&b)
            .allocate_n(2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("raw.align") && e.contains(&align.to_string()) && e.contains("memfd"),
            "{e}"
        );
    }
    // image.base_align is named as such.
    let mut img = AttrList::image(unibuf::layout::PixelFormat::Nv12, 64, 64).unwrap();
    img.set_need_cpu_access(true)
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_base_align(1 << 16)
        .unwrap();
    let e = Object::allocator(&Arc::new(reconcile([&img]).unwrap()))
        .backends(&b)
        .allocate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("image.base_align = 65536"), "{e}");
    // What each backend guarantees.
    use unibuf::backend::guaranteed_alignment as g;
    assert_eq!(g(BackendKind::Memfd, 1 << 20), page);
    assert_eq!(g(BackendKind::SystemHeap, 1 << 20), page);
    assert_eq!(g(BackendKind::CmaHeap, page), page);
    assert_eq!(g(BackendKind::CmaHeap, 2 * page), 2 * page);
    assert_eq!(g(BackendKind::CmaHeap, 1 << 20), 4 * page);
}
