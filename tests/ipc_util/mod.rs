//! Helpers shared by the IPC host tests: fd-leak accounting, memfds, forked peers.
#![allow(dead_code)]

use rustix::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use unibuf::fd::count_open_fds;

/// fd counts are process-wide, and the test harness runs tests on several threads: every test
/// that counts fds holds this lock for its whole body.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` and asserts that it leaves as many fds open as there were before.
pub fn no_fd_leak<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let before = count_open_fds().expect("count fds");
    let out = f();
    let after = count_open_fds().expect("count fds");
    assert_eq!(
        before, after,
        "{what}: {before} fds open before, {after} after"
    );
    out
}

/// A memfd of `size` bytes, filled with `fill`, sealed `F_SEAL_SHRINK` as importers require.
pub fn memfd(size: u64, fill: u8) -> OwnedFd {
    let fd = rustix::fs::memfd_create(
        "unibuf-test",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .expect("memfd_create");
    rustix::fs::ftruncate(&fd, size).expect("ftruncate");
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).expect("F_SEAL_SHRINK");
    if fill != 0 {
        let buf = vec![fill; size as usize];
        rustix::io::pwrite(&fd, &buf, 0).expect("pwrite");
    }
    fd
}

/// Forks; the child runs `child` and exits with 0 if it returned Ok, 1 otherwise (printing the
/// error). Returns the child's pid.
pub fn fork_child(child: impl FnOnce() -> anyhow::Result<()>) -> i32 {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the child only runs `child` (socket calls and allocation, which glibc keeps working
    // after fork) and then `_exit`s without running the parent's destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)) {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                eprintln!("child: {e:#}");
                1
            }
            Err(_) => 2,
        };
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for `pid` and returns its exit status (or 128+signal).
pub fn wait_child(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: plain waitpid on our own child with a valid pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Whether `fd` was opened read-only.
pub fn is_read_only(fd: impl AsFd) -> bool {
    let fl = rustix::fs::fcntl_getfl(fd).expect("F_GETFL");
    (fl & rustix::fs::OFlags::RWMODE) == rustix::fs::OFlags::RDONLY
}

/// Tries a shared writable mapping of `len` bytes; returns the errno if refused.
pub fn try_map_writable(fd: impl AsFd, len: usize) -> Result<(), rustix::io::Errno> {
    use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};
    // SAFETY: a fresh mapping at an address the kernel chooses; unmapped right away.
    let p = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
    }?;
    // SAFETY: `p` is the mapping just made, of `len` bytes.
    unsafe { munmap(p, len) }.expect("munmap");
    Ok(())
}

/// Sends `bytes` with `fds` on `ep`'s socket as one datagram, bypassing the endpoint's encoder
/// and its fd limit: how the malformed-input tests forge what a hostile peer would send.
pub fn send_raw(
    ep: &unibuf::ipc::Endpoint,
    bytes: &[u8],
    fds: &[rustix::fd::BorrowedFd<'_>],
) -> rustix::io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::mem::MaybeUninit;
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    }
    let n = rustix::net::sendmsg(
        ep.as_fd(),
        &[std::io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    assert_eq!(n, bytes.len(), "a datagram is sent whole");
    Ok(())
}
