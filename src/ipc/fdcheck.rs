//! Checks on fds that arrive from a peer: is it the kind of file the message says, is its buffer
//! as large as the message says, and the read-only reopen of memfds.

use super::wire::FdKind;
use crate::error::{Error, Result};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};

/// What an fd turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdFacts {
    /// Its kind, if it is a dma-buf or a memfd (`None`: something else).
    pub kind: Option<FdKind>,
    /// Its size in bytes (`fstat`; dma-bufs report their buffer size there).
    pub size: u64,
    /// Whether it was opened `O_RDONLY`.
    pub read_only: bool,
    /// What `/proc/self/fd/N` links to (for messages), when it was read.
    pub link: Option<String>,
}

fn proc_fd(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Whether `fd` is a dma-buf: its `/proc/self/fd` link names the dma-buf pseudo filesystem
/// (`/dmabuf:NAME` since Linux 5.3, `anon_inode:dmabuf` before).
pub fn is_dma_buf(fd: BorrowedFd<'_>) -> Result<(bool, String)> {
    let p = proc_fd(fd);
    let link = rustix::fs::readlink(&p, Vec::new()).map_err(|e| Error::sys("readlink", &p, e))?;
    let link = link.to_string_lossy().into_owned();
    Ok((
        link.starts_with("/dmabuf:") || link == "anon_inode:dmabuf",
        link,
    ))
}

/// Whether `fd` is a memfd (more exactly a shmem file: `F_GET_SEALS` succeeds only there).
pub fn is_memfd(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok()
}

/// Checks that `fd` is a file of `kind` whose buffer holds at least `size` bytes, and reports
/// what it found. Nothing is changed; the caller still owns `fd`.
pub fn check(fd: BorrowedFd<'_>, kind: FdKind, size: u64, from: &str) -> Result<FdFacts> {
    let st = rustix::fs::fstat(fd).map_err(|e| Error::sys("fstat", proc_fd(fd), e))?;
    let mode =
        rustix::fs::fcntl_getfl(fd).map_err(|e| Error::sys("fcntl(F_GETFL)", proc_fd(fd), e))?;
    let read_only = (mode & OFlags::RWMODE) == OFlags::RDONLY;
    let (ok, link) = match kind {
        FdKind::Memfd => (is_memfd(fd), None),
        FdKind::DmaBuf => {
            let (ok, link) = is_dma_buf(fd)?;
            (ok, Some(link))
        }
    };
    if !ok {
        let what = match &link {
            Some(l) => l.clone(),
            None => rustix::fs::readlink(proc_fd(fd), Vec::new())
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "an unknown file".into()),
        };
        return Err(Error::Ipc(format!(
            "{from}: the message announces a {kind} but its fd is {what}"
        )));
    }
    let actual = st.st_size.max(0) as u64;
    if actual < size {
        return Err(Error::Ipc(format!(
            "{from}: the message announces a {kind} of {size} bytes but the fd's buffer has \
             {actual} bytes"
        )));
    }
    Ok(FdFacts {
        kind: Some(kind),
        size: actual,
        read_only,
        link,
    })
}

/// Opens a new `O_RDONLY` file description of the memfd `fd` (through `/proc/self/fd`), so that a
/// read-only holder cannot `mmap(PROT_WRITE)` or `write()` through it.
pub fn reopen_read_only(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    if !is_memfd(fd) {
        return Err(Error::InvalidArgument(format!(
            "{}: only memfds can be reopened read-only",
            proc_fd(fd)
        )));
    }
    let p = proc_fd(fd);
    rustix::fs::open(&p, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys("open(O_RDONLY)", p, e))
}

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
