//! The allocators: one function per backend, each returning owned fds.

use super::discover::DrmCard;
use super::{BufferName, MAX_NAME_LEN};
use crate::error::{Error, Result};
use crate::sys;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::io::Errno;
use std::path::Path;

/// Converts an `io::Error` from the `drm` crate into our errno.
fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or(Errno::IO)
}

/// The page size, the granule of every backend.
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// Rounds `size` up to whole pages; refuses 0 and sizes that overflow or exceed `isize::MAX`.
#[inline]
pub fn page_round(size: u64) -> Result<u64> {
    if size == 0 {
        return Err(Error::InvalidArgument("buffer size 0".into()));
    }
    let p = page_size();
    let r = size
        .checked_add(p - 1)
        .map(|s| s & !(p - 1))
        .filter(|&s| s <= isize::MAX as u64)
        .ok_or_else(|| Error::InvalidArgument(format!("buffer size {size} is too large")))?;
    Ok(r)
}

/// Names a dma-buf with `DMA_BUF_SET_NAME` (shown in `/proc/<pid>/fdinfo/<fd>` and
/// debugfs).
pub fn set_name(fd: BorrowedFd<'_>, name: &BufferName) -> Result<()> {
    let name = name.as_str();
    let mut buf = [0u8; sys::dma_buf::DMA_BUF_NAME_LEN];
    buf[..name.len()].copy_from_slice(name.as_bytes());
    // At most 31 bytes were copied into 32 zeroed ones, so a NUL ends them (the scan stops at
    // the first NUL; `fit_name` refused inner ones on the checked path).
    let cname = std::ffi::CStr::from_bytes_until_nul(&buf)
        .map_err(|_| Error::InvalidArgument(format!("buffer name {name:?} is not terminated")))?;
    sys::dma_buf::set_name(fd, cname)
        .map_err(|e| Error::sys("DMA_BUF_SET_NAME", format!("dma-buf {name:?}"), e))?;
    Ok(())
}

/// `DMA_HEAP_IOCTL_ALLOC` of `len` bytes (page-rounded) with `O_RDWR | O_CLOEXEC`.
pub(crate) fn heap_alloc(heap: BorrowedFd<'_>, heap_path: &Path, len: u64) -> Result<OwnedFd> {
    sys::dma_heap::alloc(heap, len, (libc::O_RDWR | libc::O_CLOEXEC) as u32, 0)
        .map_err(|e| Error::sys("DMA_HEAP_IOCTL_ALLOC", heap_path.to_string_lossy(), e))
}

/// A memfd of `len` bytes named `unibuf:<name>`, sealed against shrinking (`F_SEAL_SHRINK`).
///
/// The seal matters for soundness, not only for udmabuf: the memfd is mapped `MAP_SHARED` and
/// handed out as `&[u8]`, and it is sent to other processes. Without the seal any holder could
/// `ftruncate` it below the mapping and every access past the new end would raise `SIGBUS` in
/// safe code. Importers ([`crate::fd::identify`]) refuse memfds without it.
pub(crate) fn memfd_alloc(len: u64, name: &BufferName) -> Result<OwnedFd> {
    // "unibuf:" + a name of at most 31 bytes + NUL, built on the stack (this is on the hot path).
    const PREFIX: &[u8] = b"unibuf:";
    let name = name.as_str();
    let mut buf = [0u8; PREFIX.len() + MAX_NAME_LEN + 1];
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    buf[PREFIX.len()..PREFIX.len() + name.len()].copy_from_slice(name.as_bytes());
    let end = PREFIX.len() + name.len();
    // SAFETY: `BufferName` refused a NUL in `name` and the prefix has none, so `buf[..end]` holds
    // no NUL; `buf[end]` is the zero the array was made with (`end` is at most 38 of 39 bytes).
    // This skips the scan `CStr::from_bytes_until_nul` would repeat.
    let cname = unsafe { std::ffi::CStr::from_bytes_with_nul_unchecked(&buf[..=end]) };
    let memfd = rustix::fs::memfd_create(cname, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| Error::sys("memfd_create", format!("memfd unibuf:{name}"), e))?;
    rustix::fs::ftruncate(&memfd, len)
        .map_err(|e| Error::sys("ftruncate", format!("memfd unibuf:{name}"), e))?;
    rustix::fs::fcntl_add_seals(&memfd, SealFlags::SHRINK).map_err(|e| {
        Error::sys(
            "F_ADD_SEALS(F_SEAL_SHRINK)",
            format!("memfd unibuf:{name}"),
            e,
        )
    })?;
    Ok(memfd)
}

/// A memfd of `len` bytes sealed against shrinking, turned into a dma-buf by `/dev/udmabuf`.
/// Returns `(dma-buf, memfd)`.
pub(crate) fn udmabuf_alloc(
    dev: BorrowedFd<'_>,
    dev_path: &Path,
    len: u64,
    name: &BufferName,
) -> Result<(OwnedFd, OwnedFd)> {
    // udmabuf refuses a memfd that can shrink (pages could vanish under the device) and one
    // sealed against writes: `memfd_alloc` seals F_SEAL_SHRINK and nothing else.
    let memfd = memfd_alloc(len, name)?;
    let dmabuf = sys::udmabuf::create(
        dev,
        memfd.as_fd(),
        0,
        len,
        sys::udmabuf::UDMABUF_FLAGS_CLOEXEC,
    )
    .map_err(|e| Error::sys("UDMABUF_CREATE", dev_path.to_string_lossy(), e))?;
    Ok((dmabuf, memfd))
}

/// The width (in 32-bit pixels) of the dumb buffers made for raw allocations: one 4 KiB row.
const DUMB_WIDTH: u32 = 1024;
const DUMB_BPP: u32 = 32;

/// A dumb buffer of at least `len` bytes, exported by PRIME (`O_RDWR | O_CLOEXEC`); the GEM handle
/// is closed again, so the dma-buf is the only reference.
pub(crate) fn drm_dumb_alloc(card: &DrmCard, card_path: &str, len: u64) -> Result<OwnedFd> {
    use drm::buffer::Buffer as _;
    use drm::control::Device as _;
    let row = u64::from(DUMB_WIDTH * DUMB_BPP / 8);
    let height = u32::try_from(len.div_ceil(row)).map_err(|_| {
        Error::InvalidArgument(format!("{len} bytes is too large for a DRM dumb buffer"))
    })?;
    let dumb = card
        .create_dumb_buffer(
            (DUMB_WIDTH, height),
            drm::buffer::DrmFourcc::Xrgb8888,
            DUMB_BPP,
        )
        .map_err(|e| Error::sys("DRM_IOCTL_MODE_CREATE_DUMB", card_path, io_errno(&e)))?;
    let handle = dumb.handle();
    let pitch = u64::from(dumb.pitch());
    let exported = card.buffer_to_prime_fd(handle, sys::drm::DRM_CLOEXEC | sys::drm::DRM_RDWR);
    // The dma-buf (if any) holds its own reference to the GEM object: drop our handle either way.
    let destroyed = card.destroy_dumb_buffer(dumb);
    let fd = exported
        .map_err(|e| Error::sys("DRM_IOCTL_PRIME_HANDLE_TO_FD", card_path, io_errno(&e)))?;
    destroyed.map_err(|e| Error::sys("DRM_IOCTL_MODE_DESTROY_DUMB", card_path, io_errno(&e)))?;
    let got = pitch * u64::from(height);
    if got < len {
        return Err(Error::Device {
            device: card_path.into(),
            what: format!("dumb buffer of {got} bytes is smaller than the {len} asked for"),
        });
    }
    Ok(fd)
}

/// Makes and exports a one-page dumb buffer: whether this node can serve as a backend.
pub(crate) fn drm_dumb_probe(card: &DrmCard) -> Result<()> {
    let fd = drm_dumb_alloc(card, "probe", page_size())?;
    drop(fd);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_size_leaves_the_shared_offset_alone() {
        let m = memfd_alloc(8192, &BufferName::new("offset").unwrap()).unwrap();
        rustix::io::write(&m, b"hello").unwrap();
        assert_eq!(crate::fd::fd_size(&m, "memfd").unwrap(), 8192);
        let pos = rustix::fs::seek(&m, rustix::fs::SeekFrom::Current(0)).unwrap();
        assert_eq!(pos, 5);
    }

    #[test]
    fn memfd_names_carry_the_prefix_and_refuse_nul() {
        use rustix::fd::AsRawFd;
        let long = "n".repeat(40);
        let m = memfd_alloc(4096, &BufferName::new(&long).unwrap()).unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", m.as_raw_fd())).unwrap();
        assert_eq!(
            link.to_string_lossy(),
            format!("/memfd:unibuf:{} (deleted)", "n".repeat(31))
        );
        assert!(memfd_alloc(4096, &BufferName::new("").unwrap()).is_ok());
    }

    #[test]
    fn sizes_round_to_pages() {
        let p = page_size();
        assert_eq!(page_round(1).unwrap(), p);
        assert_eq!(page_round(p).unwrap(), p);
        assert_eq!(page_round(p + 1).unwrap(), 2 * p);
        assert!(page_round(0).is_err());
        assert!(page_round(u64::MAX).is_err());
    }
}
