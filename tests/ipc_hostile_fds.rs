//! fds a hostile peer could send in place of a memfd: each is refused by the one identification
//! of `unibuf::fd`, on the IPC path (`import_object_parts`, `import_object`) and on
//! `Object::import_parts`, whatever was imported before.

mod ipc_util;

use ipc_util::*;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use std::sync::Arc;
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Permission};
use unibuf::ipc::{Endpoint, Requested};
use unibuf::object::{ImportParts, Object};
use unibuf::reconcile::{reconcile, Reconciled};

const SIZE: u64 = 8192;

fn cpu_list() -> Arc<Reconciled> {
    let mut l = AttrList::raw(SIZE).unwrap();
    // Read-write stated: a list that states no permission asks read-only (NvSciBuf's default).
    l.set_need_cpu_access(true)
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_required_perm(Permission::ReadWrite)
        .unwrap();
    Arc::new(reconcile([&l]).unwrap())
}

/// Exports `fd` as a read-write memfd object of `rec`.
fn export_memfd(a: &mut Endpoint, fd: &OwnedFd, rec: &Arc<Reconciled>) {
    a.export_object_parts(
        fd.as_fd(),
        None,
        Some(BackendKind::Memfd),
        rec,
        Permission::ReadWrite,
        Permission::ReadWrite,
    )
    .unwrap()
}

/// Sends `fd` as a read-write memfd object and imports it with `import_object_parts`, then again
/// with `import_object`; returns both errors (or panics if either was accepted).
fn refused_both_ways(fd: &OwnedFd) -> (String, String) {
    let rec = cpu_list();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    export_memfd(&mut a, fd, &rec);
    let parts = b
        .import_object_parts(Requested::ReadWrite, None)
        .expect_err("import_object_parts accepted it")
        .to_string();
    export_memfd(&mut a, fd, &rec);
    let object = b
        .import_object(Requested::ReadWrite, None)
        .expect_err("import_object accepted it")
        .to_string();
    (parts, object)
}

fn import_parts_error(fd: OwnedFd) -> String {
    Object::import_parts(
        ImportParts {
            fd,
            memfd: None,
            backend: None,
        },
        &cpu_list(),
        Permission::ReadOnly,
    )
    .expect_err("Object::import_parts accepted it")
    .to_string()
}

/// Before: after one genuine memfd import, the check trusted any fd on the st_dev it had seen
/// and skipped its kind test, so an `O_PATH` fd of a memfd passed as a memfd (a fresh process
/// refused it).
#[test]
fn an_o_path_fd_of_a_memfd_is_refused_after_a_genuine_import() {
    let _g = serial();
    let genuine = memfd(SIZE, 0);
    let rec = cpu_list();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    export_memfd(&mut a, &genuine, &rec);
    b.import_object_parts(Requested::ReadWrite, None)
        .expect("a genuine memfd imports");

    let path = format!("/proc/self/fd/{}", genuine.as_raw_fd());
    let o_path = rustix::fs::open(&path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
    let (parts, object) = no_fd_leak("O_PATH", || refused_both_ways(&o_path));
    for e in [&parts, &object] {
        assert!(
            e.contains("announces a memfd") && e.contains("O_PATH"),
            "{e}"
        );
    }
    let e = import_parts_error(o_path);
    assert!(e.contains("O_PATH"), "{e}");
}

/// Before: a regular file on /dev/shm (tmpfs, like a memfd) was accepted as a memfd. It can never
/// be sealed, so its creator can shrink it under the importer's mapping.
#[test]
fn a_file_on_dev_shm_is_not_a_memfd() {
    let _g = serial();
    let p = format!("/dev/shm/unibuf-test-{}", std::process::id());
    let f = rustix::fs::open(
        &p,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .expect("create a file on /dev/shm");
    rustix::fs::unlink(&p).unwrap();
    rustix::fs::ftruncate(&f, SIZE).unwrap();
    // It answers F_GET_SEALS like a memfd, but sealing is never allowed on it.
    let seals = rustix::fs::fcntl_get_seals(&f).unwrap();
    assert!(seals.contains(rustix::fs::SealFlags::SEAL), "{seals:?}");
    assert!(rustix::fs::fcntl_add_seals(&f, rustix::fs::SealFlags::SHRINK).is_err());

    let (parts, object) = no_fd_leak("/dev/shm file", || refused_both_ways(&f));
    for e in [&parts, &object] {
        assert!(
            e.contains("announces a memfd") && e.contains("not a memfd"),
            "{e}"
        );
    }
    let e = import_parts_error(f);
    assert!(e.contains("not a memfd"), "{e}");
}

/// Before: import_object_parts accepted a memfd without F_SEAL_SHRINK, which the peer could then
/// truncate to 0 (a mapping of it would raise SIGBUS on access).
#[test]
fn an_unsealed_memfd_is_refused_with_the_reason() {
    let _g = serial();
    let m = rustix::fs::memfd_create(
        "unsealed",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&m, SIZE).unwrap();
    let (parts, object) = no_fd_leak("unsealed memfd", || refused_both_ways(&m));
    for e in [&parts, &object] {
        assert!(
            e.contains("announces a memfd") && e.contains("F_SEAL_SHRINK"),
            "{e}"
        );
    }
    // The peer could indeed have shrunk it.
    rustix::fs::ftruncate(&m, 0).unwrap();
    // A memfd made without MFD_ALLOW_SEALING can never be sealed: refused the same way.
    let n = rustix::fs::memfd_create("no-sealing", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&n, SIZE).unwrap();
    let e = import_parts_error(n);
    assert!(e.contains("F_SEAL_SHRINK"), "{e}");
}

/// The sealed memfd of the fixtures imports through both paths, and a FIFO, a socket and a
/// device are refused.
#[test]
fn sealed_memfds_import_and_other_files_do_not() {
    let _g = serial();
    let rec = cpu_list();
    let m = memfd(SIZE, 7);
    let (mut a, mut b) = Endpoint::pair().unwrap();
    export_memfd(&mut a, &m, &rec);
    // The importer's own list asks for CPU access (NvSciBuf: NeedCpuAccess is per peer).
    let mut own = AttrList::raw(SIZE).unwrap();
    own.set_need_cpu_access(true)
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_required_perm(Permission::ReadWrite)
        .unwrap();
    let o = b.import_object(Requested::ReadWrite, Some(&[own])).unwrap();
    assert_eq!(o.size(), SIZE);
    assert_eq!(o.backend(), Some(BackendKind::Memfd));
    assert_eq!(o.map_read().unwrap().read().unwrap().to_vec()[0], 7);

    let (r, _w) = rustix::pipe::pipe().unwrap();
    let (s, _t) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let null =
        rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).unwrap();
    for f in [r, s, null] {
        let (parts, object) = refused_both_ways(&f);
        assert!(parts.contains("not a memfd"), "{parts}");
        assert!(object.contains("not a memfd"), "{object}");
        // A pipe or socket is on neither filesystem; /dev/null is a character device, which
        // only an NVIDIA driver's (a CUDA handle) could be.
        let e = import_parts_error(f);
        assert!(
            e.contains("not a dma-buf or a memfd")
                || e.contains("not a memfd")
                || e.contains("not a CUDA shareable handle"),
            "{e}"
        );
    }
}

/// A GPU list asking for video memory (the GPU need not exist: nothing is allocated here).
fn vidmem_list(size: u64) -> Arc<Reconciled> {
    let g = unibuf::attr::GpuId([0x42; 16]);
    let mut l = AttrList::raw(size).unwrap();
    l.set_accessor_kind(AccessorKind::Gpu)
        .unwrap()
        .set_required_perm(Permission::ReadWrite)
        .unwrap()
        .set_gpu_ids(&[g])
        .unwrap()
        .set_vidmem_gpu(g)
        .unwrap();
    Arc::new(reconcile([&l]).unwrap())
}

/// Exports `fd` as a read-write cuda-vidmem object of `rec`.
fn export_vidmem(a: &mut Endpoint, fd: BorrowedFd<'_>, rec: &Arc<Reconciled>) {
    a.export_object_parts(
        fd,
        None,
        Some(BackendKind::CudaVidmem),
        rec,
        Permission::ReadWrite,
        Permission::ReadWrite,
    )
    .unwrap()
}

/// A peer that announces a cuda-vidmem handle must send a character device of the NVIDIA
/// driver: `/dev/null` (a character device of another driver) and a memfd are refused with what
/// they are; a handle larger than the endpoint's allocation limit is refused before anything is
/// mapped. (No NVIDIA driver here: the genuine handle is the GPU tests' `gpu::cuda_vidmem_*`.)
#[test]
fn a_cuda_vidmem_announcement_needs_an_nvidia_device_fd() {
    let _g = serial();
    let rec = vidmem_list(SIZE);
    let null: OwnedFd = rustix::fs::open("/dev/null", OFlags::RDWR, Mode::empty()).unwrap();
    let memfd = unibuf::object::Object::allocator(&cpu_list())
        .backends(&unibuf::backend::Backends::memfd_only())
        .allocate()
        .unwrap();
    for (fd, is) in [(null.as_fd(), "\"/dev/null\""), (memfd.fd(), "/memfd:")] {
        let (mut a, mut b) = Endpoint::pair().unwrap();
        let before = unibuf::fd::count_open_fds().unwrap();
        export_vidmem(&mut a, fd, &rec);
        let e = b
            .import_object(Requested::ReadWrite, None)
            .expect_err("accepted as a CUDA handle")
            .to_string();
        assert!(e.contains("announces a cuda-vidmem handle"), "{e}");
        assert!(e.contains("not a CUDA shareable handle"), "{e}");
        assert!(e.contains(is), "{e}");
        // The refused fd was closed, not leaked.
        assert_eq!(unibuf::fd::count_open_fds().unwrap(), before);
    }
    // Object::import of /dev/null: identified as a device node, refused the same way.
    let fd: OwnedFd = rustix::fs::open("/dev/null", OFlags::RDWR, Mode::empty()).unwrap();
    let e = Object::import(fd, &rec, Permission::ReadWrite)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a CUDA shareable handle") && e.contains("major 1"),
        "{e}"
    );
    // Over the endpoint's allocation limit: refused by the size it announces (the list's),
    // before the fd is looked at.
    let big = vidmem_list(1 << 31);
    let (mut a, mut b) = Endpoint::pair().unwrap();
    b.set_alloc_limit(1 << 30);
    export_vidmem(&mut a, null.as_fd(), &big);
    let e = b.import_object(Requested::ReadWrite, None).unwrap_err();
    assert!(
        matches!(&e, unibuf::Error::LimitExceeded { asked, limit, .. }
            if *asked == 1 << 31 && *limit == 1 << 30),
        "{e}"
    );
    assert!(e.to_string().contains("cuda-vidmem"), "{e}");
}
