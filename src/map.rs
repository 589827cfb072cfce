//! CPU mappings of objects, bracketed by `DMA_BUF_IOCTL_SYNC`.
//!
//! A mapping is made by [`crate::object::Object::map_read`] (`PROT_READ`, any handle) or
//! [`crate::object::Object::map_write`] (`PROT_READ | PROT_WRITE`, read-write handles only); both
//! are `MAP_SHARED` (a `MAP_PRIVATE` map of a dma-buf would silently copy pages on write and
//! devices would never see the data, so unibuf never makes one).
//!
//! Access to the bytes goes through guards: [`ReadMap::read`] / [`WriteMap::read`] issue
//! `DMA_BUF_IOCTL_SYNC` `START|READ` and the guard's drop issues `END|READ`; [`WriteMap::write`]
//! and [`WriteMap::read_write`] do the same with `WRITE` / `RW`. The ioctls are retried on `EINTR`
//! and `EAGAIN`. Objects that are plain memfds (CPU-only) have no dma-buf: their guards issue no
//! ioctl.
//!
//! # The aliasing contract (read this before using the guards)
//!
//! The bytes are shared memory: other handles of the same buffer (in this process, made by
//! `dup`, `import` or IPC), other processes and devices may change them while a guard is held.
//! The guards give the cache-coherency protocol, not exclusion. The borrow checker sees only
//! *this* mapping: it stops a `WriteGuard` and a `ReadGuard` of the same [`WriteMap`] from
//! coexisting, but it cannot see a second mapping of the same pages.
//!
//! [`ReadGuard`] derefs to `&[u8]` and [`WriteGuard`] to `&mut [u8]`, and Rust assumes that the
//! bytes behind a `&[u8]` do not change and that nothing else reads or writes the bytes behind a
//! `&mut [u8]` while the reference lives. Any write to the buffer through another mapping, by
//! another process or by a device *while a guard is held* breaks that assumption: it is a data
//! race, undefined behaviour, even though no `unsafe` appears in the caller's code. unibuf cannot
//! check this (the writer may be another process or a DMA engine); the application must order
//! accesses, the way every user of shared memory does: hand buffers between producer and
//! consumer (IPC messages, fences, a queue such as V4L2 `QBUF`/`DQBUF`) so that no one writes a
//! buffer while another side holds a guard on it. Outside a guard, use [`ReadMap::as_ptr`] /
//! [`WriteMap::as_mut_ptr`] with volatile or atomic accesses if the bytes may change under you.

use crate::error::{Error, Result};
use crate::sys::dma_buf as uapi;
use rustix::fd::BorrowedFd;
use rustix::mm::{MapFlags, ProtFlags};
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;

/// The direction of a CPU access, for `DMA_BUF_IOCTL_SYNC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncDir {
    /// The CPU reads.
    Read,
    /// The CPU writes.
    Write,
    /// The CPU reads and writes.
    ReadWrite,
}

impl SyncDir {
    fn flags(self) -> u64 {
        match self {
            SyncDir::Read => uapi::DMA_BUF_SYNC_READ,
            SyncDir::Write => uapi::DMA_BUF_SYNC_WRITE,
            SyncDir::ReadWrite => uapi::DMA_BUF_SYNC_RW,
        }
    }
}

fn sync(fd: BorrowedFd<'_>, flags: u64) -> Result<()> {
    let mut arg = uapi::DmaBufSync { flags };
    // SAFETY: `arg` is the `dma_buf_sync` DMA_BUF_IOCTL_SYNC reads. `ioctl_with` retries
    // EINTR/EAGAIN.
    unsafe { crate::sys::ioctl_with(fd, uapi::DMA_BUF_IOCTL_SYNC, &mut arg) }.map_err(|e| {
        use rustix::fd::AsRawFd;
        let what = match flags & uapi::DMA_BUF_SYNC_END {
            0 => "DMA_BUF_IOCTL_SYNC(START)",
            _ => "DMA_BUF_IOCTL_SYNC(END)",
        };
        Error::sys(what, format!("dma-buf fd {}", fd.as_raw_fd()), e)
    })?;
    Ok(())
}

/// Issues `DMA_BUF_IOCTL_SYNC` `START | dir` on a dma-buf fd (retrying `EINTR`/`EAGAIN`).
pub fn sync_start(fd: BorrowedFd<'_>, dir: SyncDir) -> Result<()> {
    sync(fd, uapi::DMA_BUF_SYNC_START | dir.flags())
}

/// Issues `DMA_BUF_IOCTL_SYNC` `END | dir` on a dma-buf fd (retrying `EINTR`/`EAGAIN`).
pub fn sync_end(fd: BorrowedFd<'_>, dir: SyncDir) -> Result<()> {
    sync(fd, uapi::DMA_BUF_SYNC_END | dir.flags())
}

/// A `MAP_SHARED` mapping; unmapped on drop.
#[derive(Debug)]
struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Region` owns a mapping (not thread-bound: munmap from any thread is fine) and hands
// out views only through the guards, whose borrows follow `&[u8]` / `&mut [u8]` rules for this
// mapping: `&Region` gives shared reads, a write view needs `&mut WriteMap`. Sending or sharing
// the region across threads adds no aliasing that the borrow checker does not see. (Aliasing
// through *other* mappings of the same pages is outside what any impl here can justify: see the
// module's aliasing contract.)
unsafe impl Send for Region {}
// SAFETY: see above; `&Region` only reads `ptr`/`len`, and only `ReadGuard` (shared) views come
// from `&ReadMap`/`&WriteMap`.
unsafe impl Sync for Region {}

impl Region {
    fn map(fd: BorrowedFd<'_>, len: usize, writable: bool, what: &str) -> Result<Region> {
        if len == 0 {
            return Err(Error::InvalidArgument("cannot map an empty buffer".into()));
        }
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a fresh mapping chosen by the kernel (null hint) aliases no Rust object; it is
        // unmapped only by our Drop.
        let p =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }
                .map_err(|e| {
                Error::sys(
                    if writable {
                        "mmap(PROT_READ|PROT_WRITE, MAP_SHARED)"
                    } else {
                        "mmap(PROT_READ, MAP_SHARED)"
                    },
                    what,
                    e,
                )
            })?;
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| Error::sys("mmap", what, rustix::io::Errno::FAULT))?;
        Ok(Region { ptr, len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `map`; no view outlives the region.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Whether `fd` can be mapped for reading (maps one page and unmaps it). `Err` carries the reason.
pub fn probe_mappable(fd: BorrowedFd<'_>, what: &str) -> Result<()> {
    let len = crate::backend::page_size() as usize;
    Region::map(fd, len, false, what).map(drop)
}

/// A read-only (`PROT_READ`, `MAP_SHARED`) mapping of an object. A write through a raw pointer into
/// it faults (`SIGSEGV`).
#[derive(Debug)]
pub struct ReadMap<'o> {
    region: Region,
    sync: Option<BorrowedFd<'o>>,
}

/// A writable (`PROT_READ | PROT_WRITE`, `MAP_SHARED`) mapping of a read-write object.
#[derive(Debug)]
pub struct WriteMap<'o> {
    region: Region,
    sync: Option<BorrowedFd<'o>>,
}

impl<'o> ReadMap<'o> {
    /// Maps `map_fd` read-only; `sync_fd` is the dma-buf to bracket accesses with (`None` for a
    /// plain memfd). Used by [`crate::object::Object::map_read`].
    pub(crate) fn new(
        map_fd: BorrowedFd<'_>,
        sync_fd: Option<BorrowedFd<'o>>,
        len: usize,
        what: &str,
    ) -> Result<Self> {
        Ok(ReadMap {
            region: Region::map(map_fd, len, false, what)?,
            sync: sync_fd,
        })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.region.len
    }

    /// Always false: empty buffers are not mapped.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The mapping's address, for handing to code that takes raw pointers. Writing through it
    /// faults.
    pub fn as_ptr(&self) -> *const u8 {
        self.region.ptr.as_ptr()
    }

    /// Begins a CPU read (`SYNC_START | READ`); the guard ends it (`SYNC_END | READ`) on drop.
    pub fn read(&self) -> Result<ReadGuard<'_>> {
        ReadGuard::begin(&self.region, self.sync)
    }
}

impl<'o> WriteMap<'o> {
    /// Maps `map_fd` read-write; see [`ReadMap::new`].
    pub(crate) fn new(
        map_fd: BorrowedFd<'_>,
        sync_fd: Option<BorrowedFd<'o>>,
        len: usize,
        what: &str,
    ) -> Result<Self> {
        Ok(WriteMap {
            region: Region::map(map_fd, len, true, what)?,
            sync: sync_fd,
        })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.region.len
    }

    /// Always false: empty buffers are not mapped.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The mapping's address.
    pub fn as_ptr(&self) -> *const u8 {
        self.region.ptr.as_ptr()
    }

    /// The mapping's address, writable. Accesses through it should be bracketed by
    /// [`crate::map::sync_start`]/[`crate::map::sync_end`] (or a guard).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.region.ptr.as_ptr()
    }

    /// Begins a CPU read (`SYNC_START | READ`).
    pub fn read(&self) -> Result<ReadGuard<'_>> {
        ReadGuard::begin(&self.region, self.sync)
    }

    /// Begins a CPU write (`SYNC_START | WRITE`); the guard ends it on drop.
    pub fn write(&mut self) -> Result<WriteGuard<'_>> {
        WriteGuard::begin(&self.region, self.sync, SyncDir::Write)
    }

    /// Begins a CPU read-modify-write (`SYNC_START | RW`); the guard ends it on drop.
    pub fn read_write(&mut self) -> Result<WriteGuard<'_>> {
        WriteGuard::begin(&self.region, self.sync, SyncDir::ReadWrite)
    }
}

/// A CPU read in progress: derefs to the bytes; drop (or [`ReadGuard::end`]) issues
/// `SYNC_END | READ`.
///
/// No one may write the buffer (through another handle, process or device) while this guard
/// lives: see the [module's aliasing contract](self).
#[derive(Debug)]
pub struct ReadGuard<'m> {
    bytes: &'m [u8],
    sync: Option<BorrowedFd<'m>>,
}

impl<'m> ReadGuard<'m> {
    fn begin(region: &'m Region, sync: Option<BorrowedFd<'m>>) -> Result<Self> {
        if let Some(fd) = sync {
            sync_start(fd, SyncDir::Read)?;
        }
        // SAFETY: the region is a live, readable mapping of exactly `len` bytes (mmap succeeded
        // for `len`; the objects it maps are at least `len` bytes long and cannot shrink:
        // dma-bufs have a fixed size, memfds are sealed F_SEAL_SHRINK) for as long as `'m`
        // borrows it, and `&'m Region` keeps `&mut`-views of this mapping away. Writes through
        // other mappings while the guard lives are excluded by the module's aliasing contract,
        // which the caller must uphold; the library cannot.
        let bytes = unsafe { std::slice::from_raw_parts(region.ptr.as_ptr(), region.len) };
        Ok(ReadGuard { bytes, sync })
    }

    /// Ends the access now, reporting an error of `SYNC_END` (drop ignores it).
    pub fn end(mut self) -> Result<()> {
        match self.sync.take() {
            Some(fd) => sync_end(fd, SyncDir::Read),
            None => Ok(()),
        }
    }
}

impl Deref for ReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if let Some(fd) = self.sync.take() {
            let _ = sync_end(fd, SyncDir::Read);
        }
    }
}

/// A CPU write (or read-write) in progress: derefs mutably to the bytes; drop (or
/// [`WriteGuard::end`]) issues `SYNC_END` with the same direction.
///
/// No one else may read or write the buffer (through another handle, process or device) while
/// this guard lives: see the [module's aliasing contract](self).
#[derive(Debug)]
pub struct WriteGuard<'m> {
    bytes: &'m mut [u8],
    sync: Option<BorrowedFd<'m>>,
    dir: SyncDir,
}

impl<'m> WriteGuard<'m> {
    fn begin(region: &'m Region, sync: Option<BorrowedFd<'m>>, dir: SyncDir) -> Result<Self> {
        if let Some(fd) = sync {
            sync_start(fd, dir)?;
        }
        // SAFETY: the region is a live PROT_READ|PROT_WRITE mapping of exactly `len` bytes (see
        // `ReadGuard::begin` for why its pages stay there); the guard is made from
        // `&'m mut WriteMap`, so no other view of this mapping exists for `'m`. Accesses through
        // other mappings are excluded by the module's aliasing contract (caller's duty).
        let bytes = unsafe { std::slice::from_raw_parts_mut(region.ptr.as_ptr(), region.len) };
        Ok(WriteGuard { bytes, sync, dir })
    }

    /// Makes the CPU's writes to `range` visible to devices now, keeping the access open: checks
    /// the range against the mapping, then issues `SYNC_END` and `SYNC_START` again (the kernel
    /// syncs whole buffers; the range is checked, not used for finer work). No-op for memfd
    /// objects, whose memory no device sees.
    pub fn flush(&mut self, range: Range<usize>) -> Result<()> {
        if range.start > range.end || range.end > self.bytes.len() {
            return Err(Error::InvalidArgument(format!(
                "flush range {}..{} outside the {}-byte mapping",
                range.start,
                range.end,
                self.bytes.len()
            )));
        }
        if let Some(fd) = self.sync {
            sync_end(fd, self.dir)?;
            sync_start(fd, self.dir)?;
        }
        Ok(())
    }

    /// Ends the access now, reporting an error of `SYNC_END` (drop ignores it).
    pub fn end(mut self) -> Result<()> {
        match self.sync.take() {
            Some(fd) => sync_end(fd, self.dir),
            None => Ok(()),
        }
    }
}

impl Deref for WriteGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.bytes
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(fd) = self.sync.take() {
            let _ = sync_end(fd, self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::{AsFd, AsRawFd};

    #[test]
    fn sync_errors_name_the_direction_the_fd_and_the_errno() {
        // A memfd is not a dma-buf: the ioctl fails with ENOTTY.
        let m = rustix::fs::memfd_create("not-a-dma-buf", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let e = sync_start(m.as_fd(), SyncDir::Read)
            .unwrap_err()
            .to_string();
        let fd = format!("dma-buf fd {}", m.as_raw_fd());
        assert!(
            e.contains("DMA_BUF_IOCTL_SYNC(START)") && e.contains(&fd),
            "{e}"
        );
        assert!(
            e.contains("ENOTTY") || e.contains("inappropriate ioctl"),
            "{e}"
        );
        let e = sync_end(m.as_fd(), SyncDir::Write).unwrap_err().to_string();
        assert!(
            e.contains("DMA_BUF_IOCTL_SYNC(END)") && e.contains(&fd),
            "{e}"
        );
    }
}
