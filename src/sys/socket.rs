//! `SO_PEERCRED` read into the kernel's own `struct ucred`.
//!
//! rustix's `socket_peercred` reads the option straight into a `UCred` whose `pid` is a `Pid`
//! (a non-zero integer); the kernel reports pid 0 when the peer lives in a pid namespace this
//! process cannot see (e.g. a server in a container accepting a client from the host), and that
//! 0 would be an invalid `Pid`: undefined behaviour. This reads plain integers instead.

use rustix::fd::{AsRawFd, BorrowedFd};

/// The peer's `(pid, uid, gid)` from `getsockopt(SOL_SOCKET, SO_PEERCRED)`. `pid` is 0 when the
/// peer's process is not visible in this process's pid namespace.
pub fn peercred(fd: BorrowedFd<'_>) -> rustix::io::Result<(i32, u32, u32)> {
    let mut c = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `c` is a live `struct ucred` of `len` bytes that SO_PEERCRED fills; `len` is a live
    // socklen_t the kernel updates; `fd` is an open fd for the call's duration.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(rustix::io::Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(rustix::io::Errno::INVAL);
    }
    Ok((c.pid, c.uid, c.gid))
}
