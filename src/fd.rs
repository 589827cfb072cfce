//! What an fd is: a dma-buf or a memfd, its size, its seals, its access mode; the read-only
//! reopen of a memfd.
//!
//! This is the one place that decides what a foreign fd is. [`identify`] runs once per fd of an
//! import (IPC or [`crate::object::Object::import_parts`]) and returns an [`Identified`]: the fd
//! with the facts found, which only this module can make, so code that holds one need not (and
//! does not) check again. Nothing is cached between calls: every fd is judged on its own.
//!
//! # How an fd is recognised
//!
//! - Every fd: `F_GETFL` (an `O_PATH` fd gives no access to the buffer and is refused; the
//!   access mode) and `fstat` (the size, the file type).
//! - **dma-buf**: `fstatfs` reports the dma-buf filesystem (`DMA_BUF_MAGIC`, Linux 5.3 and
//!   later), which holds nothing but dma-bufs. Before 5.3 dma-bufs lived on the anonymous-inode
//!   filesystem shared with eventfds and others: there the `/proc/self/fd` link must be exactly
//!   `anon_inode:dmabuf` (and the size comes from `lseek`, as those inodes report 0). A path
//!   proves nothing else: any file may be named `/dmabuf:...`.
//! - **memfd**: `F_GET_SEALS` succeeds (it answers only for shmem and hugetlbfs files) and the
//!   seals include `F_SEAL_SHRINK`. That test cannot be passed by any file but a memfd: every
//!   shmem or hugetlbfs inode that `memfd_create` did not make (a file on `/dev/shm` or any
//!   tmpfs, a hugetlbfs file, `shmget` memory) starts with `F_SEAL_SEAL`, which forbids adding
//!   any seal, so it can never carry `F_SEAL_SHRINK`; nor can a memfd made without
//!   `MFD_ALLOW_SEALING`. The seal is required in any case: an imported memfd is mapped
//!   `MAP_SHARED`, and a holder that could `ftruncate` it would turn every later access past the
//!   new end into `SIGBUS`. FIFOs, sockets and devices fail `F_GET_SEALS` (or `fstatfs`).
//!
//! - **cuda-vidmem handle**: `fstat` reports a character device whose major the kernel lists in
//!   `/proc/devices` under the NVIDIA driver's names (`nvidiactl`, `nvidia`, `nvidia-frontend`:
//!   major 195). That is all the kernel can tell: such an fd is some open file of the NVIDIA
//!   driver, and whether it is a `cuMemCreate` allocation's shareable handle only
//!   `cuMemImportFromShareableHandle` finds out (it fails for any other). It has no size: an
//!   object of it takes the size of its reconciled list (over IPC bounded by the endpoint's
//!   allocation limit), and CUDA refuses a mapping larger than the allocation.
//!
//! A memfd costs `F_GETFL`, `fstat` and `F_GET_SEALS`; a dma-buf `F_GETFL`, `fstat` and
//! `fstatfs`; a cuda-vidmem handle `F_GETFL`, `fstat` and a read of `/proc/devices`. What is only informational (a dma-buf's exporter and name in
//! `/proc/self/fdinfo`, a memfd's name) is read on demand by [`exporter_and_name`] and
//! [`memfd_name`].

use crate::attr::BackendKind;
use crate::error::{Error, Result};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags, SealFlags};

/// What kind of file backs an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FdKind {
    /// A dma-buf.
    DmaBuf,
    /// A plain memfd (CPU-only objects).
    Memfd,
    /// A CUDA POSIX-fd shareable handle of GPU video memory (the `cuda-vidmem` backend): a
    /// character device fd of the NVIDIA driver (`/dev/nvidiactl`). It has no size and no CPU
    /// mapping; only CUDA can use it.
    CudaVidmem,
}

impl std::fmt::Display for FdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FdKind::DmaBuf => "dma-buf",
            FdKind::Memfd => "memfd",
            FdKind::CudaVidmem => "cuda-vidmem handle",
        })
    }
}

impl FdKind {
    /// The fd kind that the backend `b` (`None`: a foreign dma-buf) gives: a memfd for
    /// [`BackendKind::Memfd`], a CUDA handle for [`BackendKind::CudaVidmem`], else a dma-buf.
    /// The wire decoder refuses an object header whose fd kind and backend disagree.
    pub fn of_backend(b: Option<BackendKind>) -> FdKind {
        match b {
            Some(BackendKind::Memfd) => FdKind::Memfd,
            Some(BackendKind::CudaVidmem) => FdKind::CudaVidmem,
            _ => FdKind::DmaBuf,
        }
    }
}

/// `DMA_BUF_MAGIC` from `include/uapi/linux/magic.h`: the `f_type` of the dma-buf filesystem.
const DMA_BUF_MAGIC: u32 = 0x444d_4142;
/// `ANON_INODE_FS_MAGIC`: where dma-bufs lived before Linux 5.3.
const ANON_INODE_FS_MAGIC: u32 = 0x0904_1934;
/// `TMPFS_MAGIC`: shmem, where memfds live.
const TMPFS_MAGIC: u32 = 0x0102_1994;
/// `HUGETLBFS_MAGIC`: where `MFD_HUGETLB` memfds live.
const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;

/// The `/proc/self/fd` link of a dma-buf on kernels before 5.3, which kept dma-bufs on the
/// anonymous-inode filesystem shared with eventfds and others.
pub const ANON_DMA_BUF_LINK: &str = "anon_inode:dmabuf";

/// What [`identify`] found out about an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// dma-buf or memfd.
    pub kind: FdKind,
    /// The buffer's size in bytes (0 for a cuda-vidmem handle, which has none: its object takes
    /// the size from its list).
    pub size: u64,
    /// Whether the fd allows writing the buffer: opened `O_RDWR` (or `O_WRONLY`), and for a memfd
    /// not sealed `F_SEAL_WRITE` or `F_SEAL_FUTURE_WRITE`.
    pub writable: bool,
    /// A memfd's seals (always with `F_SEAL_SHRINK`); empty for a dma-buf.
    pub seals: SealFlags,
}

/// An fd together with what [`identify`] verified about it. Only this module makes one, so a
/// holder may rely on the facts without checking the fd again.
#[derive(Debug)]
pub struct Identified {
    fd: OwnedFd,
    facts: Facts,
}

impl Identified {
    /// The facts found.
    pub fn facts(&self) -> Facts {
        self.facts
    }

    /// The fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives the fd back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// An fd taken to be what `facts` say, unchecked: for unit tests of what is built on an
    /// identification that this machine cannot make (no dma-buf provider, no NVIDIA driver).
    #[cfg(test)]
    pub(crate) fn assumed(fd: OwnedFd, facts: Facts) -> Identified {
        Identified { fd, facts }
    }

    /// This fd, or (for a writable memfd) an `O_RDONLY` reopen of it in its place, so that a
    /// read-only holder cannot `mmap(PROT_WRITE)` or `write()` through it. A dma-buf cannot be
    /// reopened; it is returned unchanged.
    pub fn read_only(self) -> Result<Identified> {
        if self.facts.kind != FdKind::Memfd || !self.facts.writable {
            return Ok(self);
        }
        // The kind is verified: /proc/self/fd/N of our own fd table names this same memfd (only
        // this process can change what N is), so the facts carry over but for the access mode.
        let fd = open_proc_fd_read_only(self.fd.as_fd())?;
        Ok(Identified {
            fd,
            facts: Facts {
                writable: false,
                ..self.facts
            },
        })
    }
}

fn proc_fd(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn link_of(fd: BorrowedFd<'_>) -> Result<String> {
    let p = proc_fd(fd);
    let link = rustix::fs::readlink(&p, Vec::new()).map_err(|e| Error::sys("readlink", &p, e))?;
    Ok(link.to_string_lossy().into_owned())
}

/// What an fd is, for error messages (error paths only: one `readlink`).
fn describe(fd: BorrowedFd<'_>) -> String {
    match link_of(fd) {
        Ok(l) => format!("{l:?}"),
        Err(_) => "an unknown file".into(),
    }
}

fn refused(fd: BorrowedFd<'_>, why: String) -> Error {
    Error::InvalidArgument(format!("fd {} {why}", fd.as_raw_fd()))
}

/// Identifies `fd` (see the [module docs](self)): a dma-buf or a memfd sealed `F_SEAL_SHRINK`,
/// not opened `O_PATH`. With `expect`, only that kind is tried (one syscall fewer); without,
/// `fstatfs` tells which. On error the fd is closed and the error says what it is instead.
pub fn identify(fd: OwnedFd, expect: Option<FdKind>) -> Result<Identified> {
    let facts = facts(fd.as_fd(), expect)?;
    Ok(Identified { fd, facts })
}

/// [`identify`] of a borrowed fd: the facts alone.
pub fn facts(fd: BorrowedFd<'_>, expect: Option<FdKind>) -> Result<Facts> {
    let fl = rustix::fs::fcntl_getfl(fd).map_err(|e| Error::sys("F_GETFL", proc_fd(fd), e))?;
    if fl.contains(OFlags::PATH) {
        return Err(refused(
            fd,
            format!(
                "({}) was opened O_PATH: it gives no access to a buffer",
                describe(fd)
            ),
        ));
    }
    let writable = fl & OFlags::RWMODE != OFlags::RDONLY;
    let st = rustix::fs::fstat(fd).map_err(|e| Error::sys("fstat", proc_fd(fd), e))?;
    let size = st.st_size.max(0) as u64;
    let is_chr = FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice;
    let kind = match expect {
        Some(k) => k,
        // A device node: of the NVIDIA driver, or nothing unibuf takes (before fstatfs, which
        // would report devtmpfs).
        None if is_chr => FdKind::CudaVidmem,
        None => {
            let magic = fs_magic(fd)?;
            if magic == DMA_BUF_MAGIC {
                return Ok(dma_buf_facts(size, writable));
            }
            match magic {
                ANON_INODE_FS_MAGIC => FdKind::DmaBuf,
                TMPFS_MAGIC | HUGETLBFS_MAGIC => FdKind::Memfd,
                _ => {
                    return Err(refused(
                        fd,
                        format!("is not a dma-buf or a memfd: it is {}", describe(fd)),
                    ))
                }
            }
        }
    };
    match kind {
        FdKind::CudaVidmem => cuda_vidmem_facts(fd, is_chr, st.st_rdev, writable),
        FdKind::Memfd => {
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                return Err(refused(
                    fd,
                    format!("is not a memfd: it is {}", describe(fd)),
                ));
            }
            let seals = rustix::fs::fcntl_get_seals(fd).map_err(|_| {
                refused(
                    fd,
                    format!(
                        "is not a memfd: it is {}, not a shmem file (F_GET_SEALS refused)",
                        describe(fd)
                    ),
                )
            })?;
            if !seals.contains(SealFlags::SHRINK) {
                return Err(refused(fd, unsealed(fd, seals)));
            }
            let write_sealed = seals.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE);
            Ok(Facts {
                kind,
                size,
                writable: writable && !write_sealed,
                seals,
            })
        }
        FdKind::DmaBuf => {
            if expect.is_some() && fs_magic(fd)? == DMA_BUF_MAGIC {
                return Ok(dma_buf_facts(size, writable));
            }
            // Before Linux 5.3: the anonymous inode named exactly `dmabuf`, whose inode size is
            // 0; the dma-buf answers lseek with its size.
            if link_of(fd)? == ANON_DMA_BUF_LINK {
                return Ok(dma_buf_facts(fd_size(fd, "dma-buf")?, writable));
            }
            Err(refused(
                fd,
                format!("is not a dma-buf: it is {}", describe(fd)),
            ))
        }
    }
}

/// `/proc/devices`, where the kernel lists the majors of its character and block drivers.
pub const PROC_DEVICES: &str = "/proc/devices";

/// The names under which the NVIDIA driver registers its character devices' major (195): the
/// control device `nvidiactl` and the GPUs (`nvidia`; `nvidia-frontend` in older drivers).
const NVIDIA_CHR_NAMES: [&str; 3] = ["nvidiactl", "nvidia", "nvidia-frontend"];

/// The character-device majors that `/proc/devices` (its text given) lists under the NVIDIA
/// driver's names.
pub fn nvidia_majors(proc_devices: &str) -> Vec<u32> {
    let mut chr = false;
    let mut out = Vec::new();
    for line in proc_devices.lines() {
        let line = line.trim();
        if line.ends_with(':') {
            chr = line == "Character devices:";
            continue;
        }
        if !chr {
            continue;
        }
        let mut it = line.split_whitespace();
        if let (Some(major), Some(name)) = (it.next(), it.next()) {
            if NVIDIA_CHR_NAMES.contains(&name) {
                if let Ok(m) = major.parse() {
                    if !out.contains(&m) {
                        out.push(m);
                    }
                }
            }
        }
    }
    out
}

/// The facts of a cuda-vidmem handle (see the [module docs](self)).
fn cuda_vidmem_facts(fd: BorrowedFd<'_>, is_chr: bool, rdev: u64, writable: bool) -> Result<Facts> {
    let what = || {
        format!(
            "is not a CUDA shareable handle (a character device of the NVIDIA driver): it is {}",
            describe(fd)
        )
    };
    if !is_chr {
        return Err(refused(fd, what()));
    }
    let text = std::fs::read_to_string(PROC_DEVICES).map_err(|e| {
        let errno = rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO);
        Error::sys("read", PROC_DEVICES, errno)
    })?;
    let major = rustix::fs::major(rdev);
    let majors = nvidia_majors(&text);
    if !majors.contains(&major) {
        return Err(refused(
            fd,
            format!(
                "{} (major {major}; {PROC_DEVICES} lists the NVIDIA driver at {})",
                what(),
                if majors.is_empty() {
                    "no major: the driver is not loaded".to_string()
                } else {
                    format!("{majors:?}")
                }
            ),
        ));
    }
    Ok(Facts {
        kind: FdKind::CudaVidmem,
        size: 0,
        writable,
        seals: SealFlags::empty(),
    })
}

fn dma_buf_facts(size: u64, writable: bool) -> Facts {
    Facts {
        kind: FdKind::DmaBuf,
        size,
        writable,
        seals: SealFlags::empty(),
    }
}

fn fs_magic(fd: BorrowedFd<'_>) -> Result<u32> {
    rustix::fs::fstatfs(fd)
        .map(|st| st.f_type as u32)
        .map_err(|e| Error::sys("fstatfs", proc_fd(fd), e))
}

/// Why a shmem file without `F_SEAL_SHRINK` is refused (error path: may `readlink`).
fn unsealed(fd: BorrowedFd<'_>, seals: SealFlags) -> String {
    let link = link_of(fd).unwrap_or_default();
    if seals.contains(SealFlags::SEAL) && !link.starts_with("/memfd:") {
        format!(
            "is not a memfd: it is {link:?}, a tmpfs or hugetlbfs file that memfd_create did not \
             make (it can never be sealed, so its holders can shrink it under a mapping)"
        )
    } else {
        format!(
            "({link:?}) is not sealed F_SEAL_SHRINK: its holder could shrink it under a mapping \
             (SIGBUS); make it with MFD_ALLOW_SEALING and seal it with \
             fcntl(F_ADD_SEALS, F_SEAL_SHRINK) before sharing it"
        )
    }
}

/// Whether `fd` is a dma-buf: on the dma-buf filesystem, or (before Linux 5.3) the anonymous
/// inode named exactly `dmabuf`.
pub fn is_dma_buf(fd: BorrowedFd<'_>) -> Result<bool> {
    if fs_magic(fd)? == DMA_BUF_MAGIC {
        return Ok(true);
    }
    Ok(link_of(fd)? == ANON_DMA_BUF_LINK)
}

/// Whether `fd` was opened `O_RDONLY` (its access mode allows no writing).
pub fn opened_read_only(fd: BorrowedFd<'_>) -> Result<bool> {
    let fl = rustix::fs::fcntl_getfl(fd).map_err(|e| Error::sys("F_GETFL", proc_fd(fd), e))?;
    Ok(fl & OFlags::RWMODE == OFlags::RDONLY)
}

fn open_proc_fd_read_only(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    let path = proc_fd(fd);
    rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys("open(O_RDONLY) reopen", path, e))
}

/// Opens `/proc/self/fd/<fd>` `O_RDONLY`: a new, read-only file of the same memfd. A writable
/// `mmap` of the result fails with `EACCES`. Refuses anything but a shmem file (`F_GET_SEALS`
/// answers only there): opening a FIFO's `/proc` link would block, and a dma-buf cannot be
/// reopened at all. (An [`Identified`] memfd needs no check: [`Identified::read_only`].)
pub fn reopen_read_only(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    if rustix::fs::fcntl_get_seals(fd).is_err() {
        return Err(Error::InvalidArgument(format!(
            "{}: only memfds can be reopened read-only",
            proc_fd(fd)
        )));
    }
    open_proc_fd_read_only(fd)
}

/// Drops the write bits of a memfd's mode (`fchmod 0444`), so that a process that holds only an
/// `O_RDONLY` descriptor cannot reopen it for writing through `/proc/<pid>/fd` (a process with
/// `CAP_DAC_OVERRIDE`, e.g. root, still can). Descriptors already open for writing keep working.
pub fn forbid_writable_reopen<Fd: AsFd>(fd: Fd) -> Result<()> {
    let fd = fd.as_fd();
    rustix::fs::fchmod(fd, Mode::from_raw_mode(0o444))
        .map_err(|e| Error::sys("fchmod(0444)", proc_fd(fd), e))
}

/// The size of a dma-buf (or memfd): `lseek(fd, 0, SEEK_END)`, with the fd's offset put back.
///
/// The offset belongs to the open file description, which an imported fd shares with whoever
/// sent it: leaving it at the end would move the sender's `read`/`write` position of a memfd.
pub fn fd_size(fd: impl AsFd, what: &str) -> Result<u64> {
    use rustix::fs::{seek, SeekFrom};
    let fd = fd.as_fd();
    // dma-bufs answer only SEEK_END and SEEK_SET (EINVAL for SEEK_CUR) and keep no offset that
    // matters; memfds keep a real one.
    let cur = match seek(fd, SeekFrom::Current(0)) {
        Ok(c) => Some(c),
        Err(rustix::io::Errno::INVAL) => None,
        Err(e) => return Err(Error::sys("lseek(SEEK_CUR)", what, e)),
    };
    let end = seek(fd, SeekFrom::End(0)).map_err(|e| Error::sys("lseek(SEEK_END)", what, e))?;
    if let Some(cur) = cur.filter(|&c| c != end) {
        seek(fd, SeekFrom::Start(cur)).map_err(|e| Error::sys("lseek(SEEK_SET)", what, e))?;
    }
    Ok(end)
}

/// A dma-buf's exporter (`exp_name`: `system`, `udmabuf`, `vgem`...) and name
/// (`DMA_BUF_SET_NAME`) from `/proc/self/fdinfo/N`; `None`s where the kernel shows none.
/// Informational: read only when asked for.
pub fn exporter_and_name(fd: BorrowedFd<'_>) -> (Option<String>, Option<String>) {
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .unwrap_or_default();
    let field = |key: &str| -> Option<String> {
        fdinfo.lines().find_map(|l| {
            l.strip_prefix(key)
                .filter(|v| v.starts_with(':'))
                .map(|v| v.trim_start_matches(':').trim().to_string())
        })
    };
    (field("exp_name"), field("name").filter(|n| !n.is_empty()))
}

/// A memfd's name (what `memfd_create` was given), from its `/proc/self/fd` link
/// `/memfd:NAME (deleted)`. Informational: read only when asked for.
pub fn memfd_name(fd: BorrowedFd<'_>) -> Option<String> {
    let link = link_of(fd).ok()?;
    let rest = link.strip_prefix("/memfd:")?;
    Some(rest.strip_suffix(" (deleted)").unwrap_or(rest).to_string())
}

/// Number of fds open in this process (entries of `/proc/self/fd`), for leak checks in tests.
pub fn count_open_fds() -> Result<usize> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| {
        let errno = rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO);
        Error::sys("opendir", "/proc/self/fd", errno)
    })?;
    // The directory handle itself is one of the entries; do not count it.
    Ok(dir.count().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/devices` as the NVIDIA driver 580 leaves it (the block section has no NVIDIA).
    const PROC_DEVICES_NV: &str = "Character devices:\n  1 mem\n  4 /dev/vc/0\n195 nvidia\n\
        195 nvidiactl\n235 nvidia-uvm\n236 nvidia-caps\n\nBlock devices:\n  7 loop\n195 nvidia\n";

    #[test]
    fn nvidia_majors_are_read_from_the_character_section() {
        assert_eq!(nvidia_majors(PROC_DEVICES_NV), vec![195]);
        assert_eq!(
            nvidia_majors("Character devices:\n  1 mem\n"),
            Vec::<u32>::new()
        );
        assert_eq!(
            nvidia_majors("Character devices:\n195 nvidia-frontend\n"),
            vec![195]
        );
        // A block major under the name counts for nothing.
        assert_eq!(
            nvidia_majors("Block devices:\n195 nvidia\n"),
            Vec::<u32>::new()
        );
    }

    /// A character device of another driver is no CUDA handle, whichever way it is asked for,
    /// and the refusal says what it is; a memfd announced as one is refused too.
    #[test]
    fn only_nvidia_device_fds_are_cuda_handles() {
        let null = || rustix::fs::open("/dev/null", OFlags::RDWR, Mode::empty()).unwrap();
        for expect in [None, Some(FdKind::CudaVidmem)] {
            let e = identify(null(), expect).unwrap_err().to_string();
            assert!(e.contains("not a CUDA shareable handle"), "{e}");
            assert!(e.contains("\"/dev/null\"") && e.contains("major 1"), "{e}");
        }
        let m = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let e = identify(m, Some(FdKind::CudaVidmem))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a CUDA shareable handle"), "{e}");
    }
}
