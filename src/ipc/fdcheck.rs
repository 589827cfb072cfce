//! Checks on fds that arrive from a peer: is it the kind of file the message says, is its buffer
//! as large as the message says, and the read-only reopen of memfds.

use super::wire::FdKind;
use crate::error::{Error, Result};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd};
use rustix::fs::Mode;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an fd turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdFacts {
    /// Its kind (checked against what the message announced).
    pub kind: FdKind,
    /// Its size in bytes (`fstat`; dma-bufs report their buffer size there).
    pub size: u64,
}

fn proc_fd(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn link_of(fd: BorrowedFd<'_>) -> Result<String> {
    let p = proc_fd(fd);
    let link = rustix::fs::readlink(&p, Vec::new()).map_err(|e| Error::sys("readlink", &p, e))?;
    Ok(link.to_string_lossy().into_owned())
}

/// Device numbers of the filesystems that were seen to hold dma-bufs and memfds, learned from the
/// first fd of each kind that passed the slow check, so that later checks need only the `fstat`
/// that also gives the size. 0 = not learned yet.
static DMA_BUF_DEV: AtomicU64 = AtomicU64::new(0);
static MEMFD_DEV: AtomicU64 = AtomicU64::new(0);

pub use crate::object::{is_dma_buf, opened_read_only as is_read_only};

/// Whether `fd` is a memfd (more exactly a shmem or hugetlbfs file: `F_GET_SEALS` succeeds only
/// there).
pub fn is_memfd(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok()
}

/// Checks that `fd` is a file of `kind` whose buffer holds at least `size` bytes, and reports
/// what it found. Nothing is changed; the caller still owns `fd`. `from` names the peer in error
/// messages (called only on error).
///
/// The kind is decided by the file's filesystem: an fd on the filesystem where a dma-buf (memfd)
/// was already recognised is one; otherwise the slow test runs (`/proc/self/fd` link for
/// dma-bufs, `F_GET_SEALS` for memfds; the anonymous-inode filesystems that dma-bufs and memfds
/// live on hold nothing else that can be passed as an fd of a regular-file mode).
pub fn check(
    fd: BorrowedFd<'_>,
    kind: FdKind,
    size: u64,
    from: &dyn Fn() -> String,
) -> Result<FdFacts> {
    let st = rustix::fs::fstat(fd).map_err(|e| Error::sys("fstat", proc_fd(fd), e))?;
    let dev = st.st_dev as u64;
    let learned = match kind {
        FdKind::DmaBuf => &DMA_BUF_DEV,
        FdKind::Memfd => &MEMFD_DEV,
    };
    let ok = if dev != 0 && learned.load(Ordering::Relaxed) == dev {
        true
    } else {
        let (ok, learn) = match kind {
            FdKind::Memfd => (is_memfd(fd), true),
            FdKind::DmaBuf => {
                // Learn only the dma-buf filesystem itself (`statfs` magic, Linux 5.3+), never
                // the anonymous-inode filesystem older kernels shared with eventfds and others.
                let own_fs = crate::object::on_dma_buf_fs(fd)?;
                (
                    own_fs || link_of(fd)? == crate::object::ANON_DMA_BUF_LINK,
                    own_fs,
                )
            }
        };
        if ok && learn {
            learned.store(dev, Ordering::Relaxed);
        }
        ok
    };
    if !ok {
        let what = link_of(fd).unwrap_or_else(|_| "an unknown file".into());
        return Err(Error::Ipc(format!(
            "{}: the message announces a {kind} but its fd is {what}",
            from()
        )));
    }
    let actual = st.st_size.max(0) as u64;
    if actual < size {
        return Err(Error::Ipc(format!(
            "{}: the message announces a {kind} of {size} bytes but the fd's buffer has \
             {actual} bytes",
            from()
        )));
    }
    Ok(FdFacts { kind, size: actual })
}

/// Opens a new `O_RDONLY` file description of the memfd `fd` (through `/proc/self/fd`), so that a
/// read-only holder cannot `mmap(PROT_WRITE)` or `write()` through it; refuses anything but a
/// memfd.
pub use crate::object::reopen_readonly as reopen_read_only;

/// Drops the write bits of a memfd's mode (`fchmod 0444`), so that a process that holds only an
/// `O_RDONLY` descriptor cannot reopen it for writing through `/proc/<pid>/fd` (a process with
/// `CAP_DAC_OVERRIDE`, e.g. root, still can). Descriptors already open for writing keep working.
pub fn forbid_writable_reopen<Fd: AsFd>(fd: Fd) -> Result<()> {
    let fd = fd.as_fd();
    rustix::fs::fchmod(fd, Mode::from_raw_mode(0o444))
        .map_err(|e| Error::sys("fchmod(0444)", proc_fd(fd), e))
}

/// Number of fds open in this process (entries of `/proc/self/fd`), for leak checks in tests.
pub fn count_open_fds() -> Result<usize> {
    let dir = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Error::Ipc(format!("/proc/self/fd: {e}")))?;
    // The directory handle itself is one of the entries; do not count it.
    Ok(dir.count().saturating_sub(1))
}
