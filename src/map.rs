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
//! (always) and on `EAGAIN` (a bounded number of times, see [`sync_start`]). Objects that are plain
//! memfds (CPU-only) have no dma-buf: their guards issue no ioctl.
//!
//! The mapping itself is a memmap2 [`MmapRaw`] (made by
//! [`crate::sys::mm`]): raw pointers only, `MAP_SHARED`, `PROT_READ` for read-only maps; see
//! `docs/mapping.md`.
//!
//! # The aliasing contract
//!
//! The bytes are shared memory: other handles of the same buffer (in this process, made by
//! `dup`, `import` or IPC), other processes and devices may change them at any time, guard or no
//! guard. The guards give the cache-coherency protocol, not exclusion, and the borrow checker sees
//! only *this* mapping. A Rust reference (`&[u8]`, `&mut [u8]`) to such bytes would promise the
//! compiler that they do not change (or that nothing else touches them) while it lives, a promise
//! the library cannot keep; so, as in rust-vmm's `vm-memory` and crosvm, the guards never hand
//! out references from safe code:
//!
//! * [`ReadGuard::copy_to_slice`], [`ReadGuard::to_vec`], [`WriteGuard::copy_from_slice`] and
//!   [`WriteGuard::fill`] (and their siblings) copy between the mapping and memory the caller owns
//!   through raw pointers (`ptr::copy_nonoverlapping`, `ptr::write_bytes`: a plain `memcpy` /
//!   `memset` at full speed). Offsets are checked against the mapping and refused with
//!   [`Error::InvalidArgument`]. No reference to the shared bytes is ever created, so a concurrent
//!   writer elsewhere cannot invalidate an assumption the compiler made: it can only make a copy
//!   *torn* (part old bytes, part new), which is a data bug for the application to prevent by
//!   ordering its accesses. This is the stance of `vm-memory` for guest memory: the mapping is
//!   treated as memory outside the Rust program (like a device's), touched only by raw copies.
//!   (The language's memory model has no notion of such memory; two threads of *this* process
//!   copying into the same pages at once through two mappings is, strictly, still a race in that
//!   model, with torn bytes as its outcome in practice. Order such accesses too.)
//! * For zero-copy work, [`ReadGuard::as_slice`] and [`WriteGuard::as_mut_slice`] are `unsafe`:
//!   the caller promises that no one else (another mapping, process or device) writes the buffer
//!   — and, for the mutable slice, reads it — while the slice lives, which it can know only by
//!   its own ordering (buffers handed between producer and consumer by IPC messages, fences, or a
//!   queue such as V4L2 `QBUF`/`DQBUF`). [`ReadGuard::as_ptr`] / [`WriteGuard::as_mut_ptr`] give
//!   the raw address for code that does its own (e.g. volatile or atomic) accesses.
//!
//! A read-only mapping ([`ReadMap`]) gives only [`ReadGuard`]s, which have no writing method; the
//! page protection (`PROT_READ`) backs that up for raw pointers: a store through one faults.

use crate::error::{Error, Result};
use crate::sys::dma_buf as uapi;
use crate::sys::mm::{self, MmapRaw};
use rustix::fd::BorrowedFd;
use std::marker::PhantomData;
use std::ops::Range;
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

/// How many times an `EAGAIN` of `DMA_BUF_IOCTL_SYNC` is restarted before it is reported.
const SYNC_EAGAIN_RESTARTS: u32 = 16;

/// `DMA_BUF_IOCTL_SYNC` through [`crate::sys::dma_buf::sync`] (which retries `EINTR`), with the
/// restart the kernel's documentation of the ioctl asks for on `EAGAIN`
/// (`drivers/dma-buf/dma-buf.c`: "DMA_BUF_IOCTL_SYNC can fail with -EAGAIN or -EINTR, in which
/// case it must be restarted"). That `EAGAIN` is an exporter's transient failure, not "would
/// block" (the fd's `O_NONBLOCK` plays no part in SYNC), so it is restarted after a yield, but
/// only [`SYNC_EAGAIN_RESTARTS`] times: an exporter that keeps answering it gets reported
/// instead of spinning the caller forever.
fn sync(fd: BorrowedFd<'_>, flags: u64) -> Result<()> {
    let mut restarts = 0;
    loop {
        match uapi::sync(fd, flags) {
            Err(rustix::io::Errno::AGAIN) if restarts < SYNC_EAGAIN_RESTARTS => {
                restarts += 1;
                std::thread::yield_now();
            }
            r => {
                return r.map_err(|e| {
                    use rustix::fd::AsRawFd;
                    let what = match flags & uapi::DMA_BUF_SYNC_END {
                        0 => "DMA_BUF_IOCTL_SYNC(START)",
                        _ => "DMA_BUF_IOCTL_SYNC(END)",
                    };
                    Error::sys(what, format!("dma-buf fd {}", fd.as_raw_fd()), e)
                })
            }
        }
    }
}

/// Issues `DMA_BUF_IOCTL_SYNC` `START | dir` on a dma-buf fd, retrying `EINTR`, and `EAGAIN` up
/// to 16 times (the kernel documents both as "restart"; see `docs/mapping.md`).
pub fn sync_start(fd: BorrowedFd<'_>, dir: SyncDir) -> Result<()> {
    sync(fd, uapi::DMA_BUF_SYNC_START | dir.flags())
}

/// Issues `DMA_BUF_IOCTL_SYNC` `END | dir` on a dma-buf fd, retrying like [`sync_start`].
pub fn sync_end(fd: BorrowedFd<'_>, dir: SyncDir) -> Result<()> {
    sync(fd, uapi::DMA_BUF_SYNC_END | dir.flags())
}

/// A `MAP_SHARED` mapping; unmapped on drop (by memmap2). Reached only through raw pointers.
#[derive(Debug)]
struct Region {
    map: MmapRaw,
    /// `map`'s address, checked non-null once.
    ptr: NonNull<u8>,
}

// SAFETY: a `Region` owns a mapping (not thread-bound: munmap from any thread is fine) and is
// accessed only through the guards, which copy through raw pointers (reads from `&` guards,
// writes from `&mut WriteGuard`, made from `&mut WriteMap`) or hand out slices only under the
// contract of their `unsafe` methods. Sending or sharing it across threads adds no access that
// the borrow checker does not see.
unsafe impl Send for Region {}
// SAFETY: see above; `&Region` only reads `ptr`/`len`.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes of `fd`; `what` names the buffer in an error (built only then).
    fn map(
        fd: BorrowedFd<'_>,
        len: usize,
        writable: bool,
        what: impl FnOnce() -> String,
    ) -> Result<Region> {
        if len == 0 {
            return Err(Error::InvalidArgument("cannot map an empty buffer".into()));
        }
        let mapped = if writable {
            mm::map_shared_read_write(fd, len)
        } else {
            mm::map_shared_read_only(fd, len)
        };
        let op = if writable {
            "mmap(PROT_READ|PROT_WRITE, MAP_SHARED)"
        } else {
            "mmap(PROT_READ, MAP_SHARED)"
        };
        let map = match mapped {
            Ok(m) => m,
            Err(e) => return Err(Error::sys(op, what(), e)),
        };
        let Some(ptr) = NonNull::new(map.as_mut_ptr()) else {
            return Err(Error::sys(op, what(), rustix::io::Errno::FAULT));
        };
        Ok(Region { map, ptr })
    }

    fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Whether `fd` can be mapped for reading (maps one page and unmaps it). `Err` carries the reason.
pub fn probe_mappable(fd: BorrowedFd<'_>, what: &str) -> Result<()> {
    let len = crate::backend::page_size() as usize;
    Region::map(fd, len, false, || what.to_owned()).map(drop)
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
    /// plain memfd); `what` names the object in an error, and is called only then. Used by
    /// [`crate::object::Object::map_read`].
    pub(crate) fn new(
        map_fd: BorrowedFd<'_>,
        sync_fd: Option<BorrowedFd<'o>>,
        len: usize,
        what: impl FnOnce() -> String,
    ) -> Result<Self> {
        Ok(ReadMap {
            region: Region::map(map_fd, len, false, what)?,
            sync: sync_fd,
        })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Always false: empty buffers are not mapped.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The mapping's address, for handing to code that takes raw pointers. Writing through it
    /// faults.
    pub fn as_ptr(&self) -> *const u8 {
        self.region.ptr().as_ptr()
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
        what: impl FnOnce() -> String,
    ) -> Result<Self> {
        Ok(WriteMap {
            region: Region::map(map_fd, len, true, what)?,
            sync: sync_fd,
        })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Always false: empty buffers are not mapped.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The mapping's address.
    pub fn as_ptr(&self) -> *const u8 {
        self.region.ptr().as_ptr()
    }

    /// The mapping's address, writable. Accesses through it should be bracketed by
    /// [`crate::map::sync_start`]/[`crate::map::sync_end`] (or a guard).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.region.ptr().as_ptr()
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

/// Checks that `offset..offset + count` lies inside a `len`-byte mapping.
fn check_range(op: &str, offset: usize, count: usize, len: usize) -> Result<()> {
    match offset.checked_add(count) {
        Some(end) if end <= len => Ok(()),
        _ => Err(Error::InvalidArgument(format!(
            "{op}: {count} bytes at offset {offset} do not fit in the {len}-byte mapping"
        ))),
    }
}

/// Copies `dst.len()` bytes of the mapping at `ptr` (`len` bytes), starting at `offset`, into
/// `dst`.
fn copy_out(ptr: NonNull<u8>, len: usize, offset: usize, dst: &mut [u8]) -> Result<()> {
    check_range("copy_to_slice", offset, dst.len(), len)?;
    // SAFETY: `offset + dst.len() <= len` (checked), so the source lies inside the live mapping
    // of `len` readable bytes; `dst` is a valid `&mut [u8]` of `dst.len()` bytes, and it cannot
    // overlap this mapping's address range: a slice of it could only come from `as_mut_slice` of
    // the guard we are borrowed from (excluded by the borrow) or from the caller's own unsafe
    // code; other mappings of the same pages lie at other addresses. No reference to the mapping
    // is made: a concurrent writer elsewhere can only make the copied bytes torn.
    unsafe { std::ptr::copy_nonoverlapping(ptr.as_ptr().add(offset), dst.as_mut_ptr(), dst.len()) };
    Ok(())
}

/// Copies the whole mapping at `ptr` (`len` bytes) into a new vector.
fn copy_all(ptr: NonNull<u8>, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: the mapping has `len` readable bytes and `v` has capacity for `len`; a fresh
    // allocation does not overlap the mapping. `set_len` follows the copy that initialised them.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.as_ptr(), v.as_mut_ptr(), len);
        v.set_len(len);
    }
    v
}

/// A CPU read in progress; drop (or [`ReadGuard::end`]) issues `SYNC_END | READ`.
///
/// The bytes are read by copying them out ([`ReadGuard::copy_to_slice`], [`ReadGuard::to_vec`]);
/// no safe method hands out a reference to them, and none writes: see the
/// [module's aliasing contract](self).
///
/// ```
/// fn first_byte(g: &unibuf::map::ReadGuard<'_>) -> unibuf::Result<u8> {
///     let mut b = [0u8; 1];
///     g.copy_to_slice(0, &mut b)?;
///     Ok(b[0])
/// }
/// ```
///
/// A read guard has no way to write (nor does it deref to a slice):
///
/// ```compile_fail,E0599
/// fn poke(g: &mut unibuf::map::ReadGuard<'_>) -> unibuf::Result<()> {
///     g.copy_from_slice(0, &[1])
/// }
/// ```
///
/// ```compile_fail,E0599
/// fn poke(g: &mut unibuf::map::ReadGuard<'_>) {
///     g.fill(1);
/// }
/// ```
///
/// ```compile_fail,E0599
/// fn poke(g: &mut unibuf::map::ReadGuard<'_>) {
///     // SAFETY: (would be) no one else touches the buffer.
///     unsafe { g.as_mut_slice()[0] = 1 };
/// }
/// ```
///
/// ```compile_fail,E0608
/// fn peek(g: &unibuf::map::ReadGuard<'_>) -> u8 {
///     g[0]
/// }
/// ```
#[derive(Debug)]
pub struct ReadGuard<'m> {
    ptr: NonNull<u8>,
    len: usize,
    sync: Option<BorrowedFd<'m>>,
    _region: PhantomData<&'m Region>,
}

// SAFETY: the guard holds the address of a mapping that outlives it (`'m` borrows the region)
// and touches it only through raw-pointer reads (copies out) or, via `unsafe fn as_slice`, under
// the caller's contract. Nothing in it is bound to a thread (the SYNC ioctls may be issued from
// any thread), so moving or sharing it adds no access a `&[u8]`-holding guard would not have had.
unsafe impl Send for ReadGuard<'_> {}
// SAFETY: every `&self` method only reads the mapping (see above).
unsafe impl Sync for ReadGuard<'_> {}

impl<'m> ReadGuard<'m> {
    fn begin(region: &'m Region, sync: Option<BorrowedFd<'m>>) -> Result<Self> {
        if let Some(fd) = sync {
            sync_start(fd, SyncDir::Read)?;
        }
        Ok(ReadGuard {
            ptr: region.ptr(),
            len: region.len(),
            sync,
            _region: PhantomData,
        })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty buffers are not mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst` (a plain `memcpy`). Refused with
    /// [`Error::InvalidArgument`], copying nothing, when the range leaves the mapping. If someone
    /// else writes the buffer meanwhile, the copy may be torn; it is never undefined behaviour.
    pub fn copy_to_slice(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        copy_out(self.ptr, self.len, offset, dst)
    }

    /// Copies the whole mapping into a new vector (may be torn, like
    /// [`ReadGuard::copy_to_slice`]).
    pub fn to_vec(&self) -> Vec<u8> {
        copy_all(self.ptr, self.len)
    }

    /// The mapping's address, for code that does its own (e.g. volatile) accesses. Writing
    /// through it faults on a read-only mapping and is not allowed through a `ReadGuard` either.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The bytes as a slice, without copying.
    ///
    /// # Safety
    ///
    /// While the returned slice lives, no one may write the buffer: not another mapping or handle
    /// of it in this process (`dup`, `import`, IPC), not another process, not a device (DMA).
    /// unibuf cannot check this; the caller must know it from how it hands the buffer around
    /// (e.g. it was dequeued from the producer and is not queued again until the slice is gone).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` readable bytes are mapped at `ptr` for as long as `'m` (the mapping
        // borrows the object, whose size cannot shrink: dma-bufs have a fixed size, memfds are
        // sealed F_SEAL_SHRINK); the slice borrows `self`, so it ends before `'m`. That nothing
        // writes the bytes meanwhile is the caller's promise (this function's contract).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Ends the access now, reporting an error of `SYNC_END` (drop ignores it).
    pub fn end(mut self) -> Result<()> {
        match self.sync.take() {
            Some(fd) => sync_end(fd, SyncDir::Read),
            None => Ok(()),
        }
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if let Some(fd) = self.sync.take() {
            let _ = sync_end(fd, SyncDir::Read);
        }
    }
}

/// A CPU write (or read-write) in progress; drop (or [`WriteGuard::end`]) issues `SYNC_END` with
/// the same direction.
///
/// The bytes are accessed by copying ([`WriteGuard::copy_from_slice`], [`WriteGuard::fill`],
/// [`WriteGuard::copy_to_slice`], [`WriteGuard::to_vec`]); no safe method hands out a reference
/// to them: see the [module's aliasing contract](self).
#[derive(Debug)]
pub struct WriteGuard<'m> {
    ptr: NonNull<u8>,
    len: usize,
    sync: Option<BorrowedFd<'m>>,
    dir: SyncDir,
    _region: PhantomData<&'m mut Region>,
}

// SAFETY: as for `ReadGuard`: the mapping outlives the guard, is accessed only through raw
// pointers (reads from `&self`, writes from `&mut self`) or under the caller's contract of the
// unsafe slice methods, and nothing in the guard is bound to a thread.
unsafe impl Send for WriteGuard<'_> {}
// SAFETY: `&self` methods only read the mapping; writing needs `&mut self`.
unsafe impl Sync for WriteGuard<'_> {}

impl<'m> WriteGuard<'m> {
    fn begin(region: &'m Region, sync: Option<BorrowedFd<'m>>, dir: SyncDir) -> Result<Self> {
        if let Some(fd) = sync {
            sync_start(fd, dir)?;
        }
        Ok(WriteGuard {
            ptr: region.ptr(),
            len: region.len(),
            sync,
            dir,
            _region: PhantomData,
        })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty buffers are not mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`; see
    /// [`ReadGuard::copy_to_slice`].
    pub fn copy_to_slice(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        copy_out(self.ptr, self.len, offset, dst)
    }

    /// Copies the whole mapping into a new vector; see [`ReadGuard::to_vec`].
    pub fn to_vec(&self) -> Vec<u8> {
        copy_all(self.ptr, self.len)
    }

    /// Copies `src` into the mapping at `offset` (a plain `memcpy`). Refused with
    /// [`Error::InvalidArgument`], writing nothing, when the range leaves the mapping. A
    /// concurrent reader or writer elsewhere may see or leave torn data; it is never undefined
    /// behaviour in this process.
    pub fn copy_from_slice(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        check_range("copy_from_slice", offset, src.len(), self.len)?;
        // SAFETY: `offset + src.len() <= len` (checked), so the destination lies inside the live
        // PROT_READ|PROT_WRITE mapping; `src` is a valid `&[u8]` that cannot overlap this
        // mapping's address range (a slice of it could only come from `as_slice` of this guard,
        // excluded by the `&mut self` borrow, or from the caller's own unsafe code; other
        // mappings of the same pages lie at other addresses). No reference to the mapping is
        // created here.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        };
        Ok(())
    }

    /// Sets every byte of the mapping to `value` (a plain `memset`).
    pub fn fill(&mut self, value: u8) {
        // SAFETY: the whole `len`-byte mapping is live and writable; no reference is created.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), value, self.len) };
    }

    /// The mapping's address.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The mapping's address, writable, for code that does its own (e.g. volatile) accesses.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The bytes as a slice, without copying.
    ///
    /// # Safety
    ///
    /// While the returned slice lives, no one may write the buffer: not another mapping or handle
    /// of it in this process, not another process, not a device. See [`ReadGuard::as_slice`].
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped at `ptr` while `'m` lasts and the slice borrows `self`;
        // writes through this guard need `&mut self`, which the borrow excludes; writes from
        // anywhere else are excluded by the caller (this function's contract).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes as a mutable slice, without copying.
    ///
    /// # Safety
    ///
    /// While the returned slice lives, no one else may read or write the buffer: not another
    /// mapping or handle of it in this process (`dup`, `import`, IPC), not another process, not a
    /// device (DMA). unibuf cannot check this; the caller must know it from how it hands the
    /// buffer around (e.g. the buffer is dequeued and not shared until the slice is gone).
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len` writable bytes are mapped at `ptr` while `'m` lasts (the guard was made
        // from `&'m mut WriteMap`, so no other guard of this mapping exists) and the slice
        // borrows `self` mutably; accesses from anywhere else are excluded by the caller (this
        // function's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Makes the CPU's writes to `range` visible to devices now, keeping the access open: checks
    /// the range against the mapping, then issues `SYNC_END` and `SYNC_START` again (the kernel
    /// syncs whole buffers; the range is checked, not used for finer work). No-op for memfd
    /// objects, whose memory no device sees.
    pub fn flush(&mut self, range: Range<usize>) -> Result<()> {
        if range.start > range.end || range.end > self.len {
            return Err(Error::InvalidArgument(format!(
                "flush range {}..{} outside the {}-byte mapping",
                range.start, range.end, self.len
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
    /// A fresh `len`-byte memfd to map (no dma-buf: its guards issue no ioctl).
    fn memfd(len: usize) -> rustix::fd::OwnedFd {
        let m =
            rustix::fs::memfd_create("unibuf-map-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&m, len as u64).unwrap();
        m
    }

    #[test]
    fn copies_round_trip_at_offsets_and_between_mappings() {
        let m = memfd(8192);
        let mut w = WriteMap::new(m.as_fd(), None, 8192, || "memfd".into()).unwrap();
        let r = ReadMap::new(m.as_fd(), None, 8192, || "memfd".into()).unwrap();
        let mut g = w.write().unwrap();
        assert_eq!(g.len(), 8192);
        assert!(!g.is_empty());
        assert!(g.to_vec().iter().all(|&b| b == 0));
        g.copy_from_slice(0, b"head").unwrap();
        g.copy_from_slice(4000, b"middle").unwrap();
        g.copy_from_slice(8188, b"tail").unwrap(); // ends exactly at the end
        g.copy_from_slice(8192, &[]).unwrap(); // an empty copy at the end is fine
        let mut buf = [0u8; 6];
        g.copy_to_slice(4000, &mut buf).unwrap();
        assert_eq!(&buf, b"middle");
        g.end().unwrap();
        // The read-only mapping of the same pages sees the bytes.
        let rg = r.read().unwrap();
        assert_eq!(rg.len(), 8192);
        let v = rg.to_vec();
        assert_eq!(v.len(), 8192);
        assert_eq!(&v[..4], b"head");
        assert_eq!(&v[4000..4006], b"middle");
        assert_eq!(&v[8188..], b"tail");
        let mut tail = [0u8; 4];
        rg.copy_to_slice(8188, &mut tail).unwrap();
        assert_eq!(&tail, b"tail");
        assert_eq!(rg.as_ptr(), r.as_ptr());
    }

    #[test]
    fn out_of_bounds_copies_are_refused_and_change_nothing() {
        let m = memfd(4096);
        let mut w = WriteMap::new(m.as_fd(), None, 4096, || "memfd".into()).unwrap();
        let mut g = w.write().unwrap();
        g.fill(0x11);
        for (offset, n) in [(4096, 1), (4095, 2), (4097, 0), (0, 4097), (usize::MAX, 1)] {
            let src = vec![0xEE; n];
            match g.copy_from_slice(offset, &src) {
                Err(Error::InvalidArgument(e)) => {
                    assert!(e.contains("copy_from_slice"), "{e}");
                    assert!(e.contains(&format!("offset {offset}")), "{e}");
                    assert!(e.contains("4096-byte mapping"), "{e}");
                }
                other => panic!("copy_from_slice({offset}, {n} bytes): {other:?}"),
            }
            let mut dst = vec![0xEE; n];
            match g.copy_to_slice(offset, &mut dst) {
                Err(Error::InvalidArgument(e)) => assert!(e.contains("copy_to_slice"), "{e}"),
                other => panic!("copy_to_slice({offset}, {n} bytes): {other:?}"),
            }
            assert!(dst.iter().all(|&b| b == 0xEE), "dst was written");
        }
        assert!(g.to_vec().iter().all(|&b| b == 0x11), "the map was written");
        let r = ReadMap::new(m.as_fd(), None, 4096, || "memfd".into()).unwrap();
        let rg = r.read().unwrap();
        let mut dst = [0u8; 2];
        assert!(matches!(
            rg.copy_to_slice(4095, &mut dst),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(dst, [0, 0]);
    }

    #[test]
    fn fill_sets_every_byte() {
        let m = memfd(12288);
        let mut w = WriteMap::new(m.as_fd(), None, 12288, || "memfd".into()).unwrap();
        let mut g = w.read_write().unwrap();
        g.fill(0xA5);
        assert!(g.to_vec().iter().all(|&b| b == 0xA5));
        g.fill(0);
        assert!(g.to_vec().iter().all(|&b| b == 0));
    }

    #[test]
    fn unsafe_slices_see_the_same_bytes() {
        let m = memfd(4096);
        let mut w = WriteMap::new(m.as_fd(), None, 4096, || "memfd".into()).unwrap();
        let mut g = w.write().unwrap();
        // SAFETY: the memfd is local to this test; no other mapping is written while the slices
        // live (the read-only map below is made and read only after they are gone).
        unsafe {
            g.as_mut_slice()[..3].copy_from_slice(b"abc");
            assert_eq!(&g.as_slice()[..3], b"abc");
        }
        assert_eq!(g.as_ptr(), g.as_mut_ptr().cast_const());
        drop(g);
        let r = ReadMap::new(m.as_fd(), None, 4096, || "memfd".into()).unwrap();
        let rg = r.read().unwrap();
        // SAFETY: as above: nothing writes the memfd while this slice lives.
        assert_eq!(&unsafe { rg.as_slice() }[..3], b"abc");
    }

    #[test]
    fn guards_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<ReadGuard<'static>>();
        send_sync::<WriteGuard<'static>>();
    }
}
