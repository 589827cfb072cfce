//! `include/uapi/linux/dma-heap.h`.

use super::opcode;
use rustix::ioctl::Opcode;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_opcode_match_kernel_headers() {
        assert_eq!(std::mem::size_of::<DmaHeapAllocationData>(), 24);
        assert_eq!(DMA_HEAP_IOCTL_ALLOC as u64, 0xc018_4800);
    }
}
