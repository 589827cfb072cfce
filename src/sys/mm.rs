//! Shared mappings of an fd: `mmap(MAP_SHARED)` through memmap2's [`MmapRaw`], unmapped on drop.
//!
//! `MmapRaw` hands out raw pointers only (never `&[u8]`), which is what shared memory needs: other
//! mappings, processes and devices may change the bytes at any time (see [`crate::map`]'s aliasing
//! contract). Read-only maps are `PROT_READ` of the given fd; both kinds are always `MAP_SHARED`,
//! never `MAP_PRIVATE` (a private map of a dma-buf copies pages on write, and devices never see
//! the data). The length is always passed, so memmap2 never `fstat`s the fd for it (a dma-buf
//! would answer: its `st_size` is the buffer size since the kernel sets `i_size` at export).

use rustix::fd::BorrowedFd;
use rustix::io::{Errno, Result};

pub use memmap2::MmapRaw;

fn errno(e: std::io::Error) -> Errno {
    Errno::from_io_error(&e).unwrap_or(Errno::IO)
}

fn map_shared(fd: BorrowedFd<'_>, len: usize, writable: bool) -> Result<MmapRaw> {
    if len == 0 {
        return Err(Errno::INVAL);
    }
    let mut o = memmap2::MmapOptions::new();
    o.len(len);
    if writable {
        o.map_raw(&fd)
    } else {
        o.map_raw_read_only(&fd)
    }
    .map_err(errno)
}

/// `mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0)`.
pub fn map_shared_read_only(fd: BorrowedFd<'_>, len: usize) -> Result<MmapRaw> {
    map_shared(fd, len, false)
}

/// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`. An `O_RDONLY` fd answers
/// `EACCES`.
pub fn map_shared_read_write(fd: BorrowedFd<'_>, len: usize) -> Result<MmapRaw> {
    map_shared(fd, len, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    fn maps(pid_line: &str) -> Option<String> {
        std::fs::read_to_string("/proc/self/maps")
            .ok()?
            .lines()
            .find(|l| l.starts_with(pid_line))
            .map(str::to_owned)
    }

    #[test]
    fn protections_and_sharing_are_the_ones_asked() {
        let m =
            rustix::fs::memfd_create("unibuf-mm-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&m, 8192).unwrap();
        let ro = map_shared_read_only(m.as_fd(), 8192).unwrap();
        let rw = map_shared_read_write(m.as_fd(), 4096).unwrap();
        assert_eq!(ro.len(), 8192);
        assert_eq!(rw.len(), 4096);
        // /proc/self/maps: "start-end perms ...", perms "r--s" / "rw-s" (s = MAP_SHARED).
        let line = |p: *const u8| maps(&format!("{:x}-", p as usize)).unwrap();
        assert!(
            line(ro.as_ptr()).contains(" r--s "),
            "{}",
            line(ro.as_ptr())
        );
        assert!(
            line(rw.as_ptr()).contains(" rw-s "),
            "{}",
            line(rw.as_ptr())
        );
        assert_eq!(map_shared_read_only(m.as_fd(), 0).err(), Some(Errno::INVAL));
    }

    #[test]
    fn a_read_only_fd_maps_read_only_and_refuses_write() {
        let m = rustix::fs::memfd_create("unibuf-mm-ro", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&m, 4096).unwrap();
        let ro = rustix::fs::open(
            format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&m)),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        assert!(map_shared_read_only(ro.as_fd(), 4096).is_ok());
        assert_eq!(
            map_shared_read_write(ro.as_fd(), 4096).err(),
            Some(Errno::ACCESS)
        );
    }
}
