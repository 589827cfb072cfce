//! Fences: sync_files (a dma-fence set behind an fd) exported from and imported into dma-bufs,
//! merged, inspected, and waited for with a timeout.
//!
//! Two ways to wait for the work a dma-buf carries:
//!
//! - [`WaitMethod::SyncFile`]: `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` (Linux 6.0) snapshots the
//!   buffer's fences into a [`Fence`], which can travel to another process and be waited for
//!   there, merged, or imported into another buffer (`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`).
//! - [`WaitMethod::DmaBufPoll`]: before 6.0 the ioctls answer `ENOTTY`; `poll` on the dma-buf fd
//!   itself waits for its fences (`POLLIN`: the write fences a reader waits for; `POLLOUT`: all
//!   of them). This is the implicit-sync wait; it cannot travel, but it needs no new ioctl.
//!
//! [`wait_dma_buf`] uses the first where the kernel has it and says which one it used.

use crate::error::{Error, Result};
use crate::sys::{dma_buf, sync_file};
use rustix::event::PollFlags;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Which access a fence is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading the buffer: wait for its writers (export), or a fence of a reader (import:
    /// later writers wait for it).
    Read,
    /// Writing the buffer: wait for every reader and writer (export), or a fence of a writer
    /// (import: every later access waits for it).
    Write,
}

impl Access {
    fn flags(self) -> u32 {
        match self {
            Access::Read => dma_buf::DMA_BUF_SYNC_READ as u32,
            Access::Write => dma_buf::DMA_BUF_SYNC_WRITE as u32,
        }
    }

    fn poll_flags(self) -> PollFlags {
        match self {
            Access::Read => PollFlags::IN,
            Access::Write => PollFlags::OUT,
        }
    }
}

/// How a wait on a dma-buf's fences was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMethod {
    /// Through a sync_file exported from the buffer (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`, 6.0+).
    SyncFile,
    /// By polling the dma-buf fd itself (kernels before 6.0 answer the export `ENOTTY`).
    DmaBufPoll,
}

impl std::fmt::Display for WaitMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WaitMethod::SyncFile => "sync_file (DMA_BUF_IOCTL_EXPORT_SYNC_FILE)",
            WaitMethod::DmaBufPoll => "poll on the dma-buf (implicit sync; no EXPORT_SYNC_FILE)",
        })
    }
}

/// The state of a fence (`sync_file_info.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStatus {
    /// Some fence is still pending.
    Pending,
    /// Every fence has signalled.
    Signalled,
    /// A fence signalled with an error (the negative errno the driver set).
    Error(i32),
}

impl FenceStatus {
    fn from_raw(s: i32) -> Self {
        match s {
            0 => FenceStatus::Pending,
            s if s > 0 => FenceStatus::Signalled,
            e => FenceStatus::Error(e),
        }
    }
}

/// One dma-fence of a sync_file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceEntry {
    /// The timeline's name (`obj_name`).
    pub timeline: String,
    /// The driver's name.
    pub driver: String,
    /// Its state.
    pub status: FenceStatus,
    /// When it signalled (`CLOCK_MONOTONIC`, ns); 0 while pending.
    pub timestamp_ns: u64,
}

/// What `SYNC_IOC_FILE_INFO` says about a sync_file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceInfo {
    /// The sync_file's name.
    pub name: String,
    /// The state of the whole set.
    pub status: FenceStatus,
    /// Its fences.
    pub fences: Vec<FenceEntry>,
}

/// An owned sync_file: signalled once every dma-fence in it has signalled. Dropping it closes
/// the fd (the fences go on; only this reference to them goes).
#[derive(Debug)]
pub struct Fence {
    fd: OwnedFd,
    /// Seen signalled (a sync_file that signalled stays signalled): waits after that need no
    /// syscall.
    done: AtomicBool,
}

impl AsFd for Fence {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Fence {
    /// A sync_file from the kernel, state not yet looked at.
    fn pending(fd: OwnedFd) -> Fence {
        Fence {
            fd,
            done: AtomicBool::new(false),
        }
    }

    /// Takes `fd` as a fence after checking that it is a sync_file (`SYNC_IOC_FILE_INFO`
    /// answers; anything else is refused with [`Error::InvalidArgument`]): the way to accept a
    /// fence from a peer or from a driver's out-fence.
    ///
    /// The same call answers the state: a fence that arrives signalled is waited for without
    /// another syscall.
    pub fn from_sync_file(fd: OwnedFd) -> Result<Fence> {
        match sync_file::file_info(fd.as_fd(), &mut []) {
            // status: 1 signalled, < 0 signalled with an error, 0 pending.
            Ok(info) => Ok(Fence {
                fd,
                done: AtomicBool::new(info.status != 0),
            }),
            Err(e) => Err(Error::InvalidArgument(format!(
                "not a sync_file (SYNC_IOC_FILE_INFO answered {})",
                crate::Errno(e)
            ))),
        }
    }

    /// A snapshot of the fences of dma-buf `buf` that an `access` must wait for
    /// (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`). A buffer without fences gives a signalled fence.
    /// Before Linux 6.0 this fails with `ENOTTY` ([`Error::Sys`]); use [`wait_dma_buf`] there.
    pub fn export(buf: BorrowedFd<'_>, access: Access) -> Result<Fence> {
        dma_buf::export_sync_file(buf, access.flags())
            .map(Fence::pending)
            .map_err(|e| Error::sys("DMA_BUF_IOCTL_EXPORT_SYNC_FILE", "dma-buf", e))
    }

    /// Adds this fence to dma-buf `buf` as a fence of `access` (`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`):
    /// every later implicit-sync user of the buffer (a display, a GPU, [`Fence::export`], a poll)
    /// sees it.
    pub fn import_into(&self, buf: BorrowedFd<'_>, access: Access) -> Result<()> {
        dma_buf::import_sync_file(buf, access.flags(), self.fd.as_fd())
            .map_err(|e| Error::sys("DMA_BUF_IOCTL_IMPORT_SYNC_FILE", "dma-buf", e))
    }

    /// A new fence named `name` signalled when both this one and `other` are (`SYNC_IOC_MERGE`).
    pub fn merge(&self, other: &Fence, name: &str) -> Result<Fence> {
        sync_file::merge(self.fd.as_fd(), other.fd.as_fd(), name)
            .map(Fence::pending)
            .map_err(|e| Error::sys("SYNC_IOC_MERGE", "sync_file", e))
    }

    /// Another fd for the same fences (`dup`; no heap allocation).
    pub fn try_clone(&self) -> Result<Fence> {
        rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map(|fd| Fence {
                fd,
                done: AtomicBool::new(self.done.load(Ordering::Relaxed)),
            })
            .map_err(|e| Error::sys("fcntl(F_DUPFD_CLOEXEC)", "sync_file", e))
    }

    /// Name, state and fences (`SYNC_IOC_FILE_INFO`, twice: the count, then the fences).
    pub fn info(&self) -> Result<FenceInfo> {
        let err = |e| Error::sys("SYNC_IOC_FILE_INFO", "sync_file", e);
        let n = sync_file::file_info(self.fd.as_fd(), &mut [])
            .map_err(err)?
            .num_fences as usize;
        let mut raw = vec![sync_file::SyncFenceInfo::default(); n.min(1024)];
        let info = if raw.is_empty() {
            sync_file::file_info(self.fd.as_fd(), &mut []).map_err(err)?
        } else {
            sync_file::file_info(self.fd.as_fd(), &mut raw).map_err(err)?
        };
        raw.truncate(info.num_fences as usize);
        Ok(FenceInfo {
            name: sync_file::field_str(&info.name),
            status: FenceStatus::from_raw(info.status),
            fences: raw
                .iter()
                .map(|f| FenceEntry {
                    timeline: sync_file::field_str(&f.obj_name),
                    driver: sync_file::field_str(&f.driver_name),
                    status: FenceStatus::from_raw(f.status),
                    timestamp_ns: f.timestamp_ns,
                })
                .collect(),
        })
    }

    /// Whether every fence has signalled, without waiting (a poll with a zero timeout).
    pub fn is_signalled(&self) -> Result<bool> {
        if self.done.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let ready = poll_ready(
            self.fd.as_fd(),
            PollFlags::IN,
            Some(Duration::ZERO),
            "sync_file",
        )?;
        self.done.store(ready, Ordering::Relaxed);
        Ok(ready)
    }

    /// Waits until every fence has signalled, at most `timeout` (`poll`, `POLLIN`); past it,
    /// [`Error::Timeout`] (the fence stays usable: wait again).
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        if self.done.load(Ordering::Relaxed)
            || poll_ready(self.fd.as_fd(), PollFlags::IN, Some(timeout), "sync_file")?
        {
            self.done.store(true, Ordering::Relaxed);
            return Ok(());
        }
        Err(Error::Timeout {
            what: "a fence (sync_file) to signal".into(),
            after: timeout,
        })
    }

    /// The fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// Polls `fd` for `events` for at most `timeout` (`None`: forever), `EINTR` continuing with the
/// time left; `Ok(true)` when ready, `Ok(false)` on timeout. `POLLERR`/`POLLHUP`/`POLLNVAL`
/// count as ready (the caller's next call tells what happened).
pub(crate) fn poll_ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
    what: &str,
) -> Result<bool> {
    crate::sys::poll::poll_one(fd, events, timeout)
        .map(|r| !r.is_empty())
        .map_err(|e| Error::sys("poll", what.to_owned(), e))
}

/// Which wait [`wait_dma_buf`] would use on `buf`: exports a fence once to see whether the
/// kernel has `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`.
pub fn wait_method(buf: BorrowedFd<'_>) -> WaitMethod {
    match dma_buf::export_sync_file(buf, Access::Read.flags()) {
        Err(Errno::NOTTY) => WaitMethod::DmaBufPoll,
        _ => WaitMethod::SyncFile,
    }
}

/// Waits, at most `timeout`, until the fences of dma-buf `buf` that an `access` must wait for
/// have signalled: through an exported sync_file where the kernel has the ioctl, else by polling
/// the dma-buf fd (before 6.0). Answers which one it used; past the timeout,
/// [`Error::Timeout`].
pub fn wait_dma_buf(buf: BorrowedFd<'_>, access: Access, timeout: Duration) -> Result<WaitMethod> {
    let (ready, method) = match dma_buf::export_sync_file(buf, access.flags()) {
        Ok(fd) => (
            poll_ready(fd.as_fd(), PollFlags::IN, Some(timeout), "sync_file")?,
            WaitMethod::SyncFile,
        ),
        Err(Errno::NOTTY) => (
            poll_ready(buf, access.poll_flags(), Some(timeout), "dma-buf")?,
            WaitMethod::DmaBufPoll,
        ),
        Err(e) => return Err(Error::sys("DMA_BUF_IOCTL_EXPORT_SYNC_FILE", "dma-buf", e)),
    };
    if ready {
        Ok(method)
    } else {
        Err(Error::Timeout {
            what: format!("the dma-buf's fences ({method})"),
            after: timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memfd_is_not_a_fence() {
        let m = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let e = Fence::from_sync_file(m).unwrap_err();
        assert!(e.to_string().contains("not a sync_file"), "{e}");
    }

    #[test]
    fn a_memfd_waits_by_poll() {
        // Not a dma-buf: the export answers ENOTTY, so the wait falls back to poll, which a
        // memfd answers at once.
        let m = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        assert_eq!(wait_method(m.as_fd()), WaitMethod::DmaBufPoll);
        assert_eq!(
            wait_dma_buf(m.as_fd(), Access::Read, Duration::from_millis(1)).unwrap(),
            WaitMethod::DmaBufPoll
        );
    }
}
