//! Exporting a memfd read-only when its mode cannot be made 0444 (own test binary: it forks).

use rustix::fd::AsFd;
use std::sync::Arc;
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Permission};
use unibuf::ipc::Endpoint;
use unibuf::reconcile::reconcile;

/// A process that does not own a writable-mode memfd cannot chmod it 0444; exporting it
/// read-only used to succeed anyway (the failure was ignored), leaving the importer free to
/// reopen it O_RDWR through /proc/self/fd. It must be refused.
#[test]
fn read_only_export_is_refused_when_the_memfd_stays_reopenable_for_writing() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP: needs root to hand a root-owned memfd to an unprivileged child");
        return;
    }
    let mut l = AttrList::raw(4096).unwrap();
    l.set_need_cpu_access(true)
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap();
    let r = Arc::new(reconcile([&l]).unwrap());
    let m = rustix::fs::memfd_create("ro-export", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&m, 4096).unwrap();
    // SAFETY: the child runs the code under test and _exits; this binary has one test thread.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain syscalls in the forked child, which never returns into the harness.
        let code = unsafe {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(77);
            }
            let (mut a, _b) = match Endpoint::pair() {
                Ok(p) => p,
                Err(_) => libc::_exit(4),
            };
            match a.export_object_parts(
                m.as_fd(),
                None,
                Some(BackendKind::Memfd),
                &r,
                Permission::ReadWrite,
                Permission::ReadOnly,
            ) {
                Err(unibuf::Error::PermissionDenied(_)) => 0,
                Err(_) => 3,
                Ok(()) => 2,
            }
        };
        // SAFETY: leaves the child without running the harness's exit path.
        unsafe { libc::_exit(code) };
    }
    let mut st = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    assert!(libc::WIFEXITED(st), "child died: status {st:#x}");
    match libc::WEXITSTATUS(st) {
        0 => {}
        77 => eprintln!("SKIP: setuid not permitted"),
        2 => panic!("read-only export of a memfd the importer can reopen writable succeeded"),
        c => panic!("child failed: {c}"),
    }
}
