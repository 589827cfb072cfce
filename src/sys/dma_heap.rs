//! `include/uapi/linux/dma-heap.h`: allocation from a DMA-BUF heap.

use super::{own_fd, retry_eintr};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Result;
use rustix::ioctl::{ioctl, opcode, Opcode, Updater};

/// `struct dma_heap_allocation_data`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaHeapAllocationData {
    /// Size of the allocation in bytes.
    pub len: u64,
    /// Returned dma-buf fd.
    pub fd: u32,
    /// `O_CLOEXEC | O_ACCMODE` flags of the returned fd.
    pub fd_flags: u32,
    /// Heap flags; none are defined.
    pub heap_flags: u64,
}

/// `DMA_HEAP_IOCTL_ALLOC`: `_IOWR('H', 0, struct dma_heap_allocation_data)`.
pub const DMA_HEAP_IOCTL_ALLOC: Opcode = opcode::read_write::<DmaHeapAllocationData>(b'H', 0);

/// fd flags the kernel accepts: `O_CLOEXEC | O_ACCMODE`.
pub const DMA_HEAP_VALID_FD_FLAGS: u32 = (libc::O_CLOEXEC | libc::O_ACCMODE) as u32;
/// Heap flags the kernel accepts: none.
pub const DMA_HEAP_VALID_HEAP_FLAGS: u64 = 0;

/// Where heaps appear.
pub const DMA_HEAP_DEV_DIR: &str = "/dev/dma_heap";

/// `DMA_HEAP_IOCTL_ALLOC`: a new dma-buf of `len` bytes from `heap`, its fd opened with
/// `fd_flags` (`O_RDWR`/`O_RDONLY` | `O_CLOEXEC`). The kernel refuses flags outside
/// [`DMA_HEAP_VALID_FD_FLAGS`] / [`DMA_HEAP_VALID_HEAP_FLAGS`] with `EINVAL` (the values are
/// passed as they are, so conformance tests can check that).
pub fn alloc(heap: BorrowedFd<'_>, len: u64, fd_flags: u32, heap_flags: u64) -> Result<OwnedFd> {
    let mut data = DmaHeapAllocationData {
        len,
        fd: 0,
        fd_flags,
        heap_flags,
    };
    retry_eintr(|| {
        // SAFETY: DMA_HEAP_IOCTL_ALLOC reads and writes a `struct dma_heap_allocation_data`,
        // which `data` mirrors (size test below); it holds no pointer.
        unsafe { ioctl(heap, Updater::<DMA_HEAP_IOCTL_ALLOC, _>::new(&mut data)) }
    })?;
    // SAFETY: on success the kernel installed a new fd in `data.fd` for this process, owned by
    // nothing else.
    Ok(unsafe { own_fd(data.fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_opcode_match_kernel_headers() {
        assert_eq!(std::mem::size_of::<DmaHeapAllocationData>(), 24);
        assert_eq!(DMA_HEAP_IOCTL_ALLOC as u64, 0xc018_4800);
    }
}
