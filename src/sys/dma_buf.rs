//! `include/uapi/linux/dma-buf.h`.

use super::opcode;
use rustix::ioctl::Opcode;

/// `struct dma_buf_sync`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaBufSync {
    /// `DMA_BUF_SYNC_*` flags.
    pub flags: u64,
}

/// CPU reads the buffer.
pub const DMA_BUF_SYNC_READ: u64 = 1 << 0;
/// CPU writes the buffer.
#[allow(clippy::identity_op)]
pub const DMA_BUF_SYNC_WRITE: u64 = 2 << 0;
/// CPU reads and writes the buffer.
pub const DMA_BUF_SYNC_RW: u64 = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
/// Start of a CPU access.
#[allow(clippy::identity_op)]
pub const DMA_BUF_SYNC_START: u64 = 0 << 2;
/// End of a CPU access.
pub const DMA_BUF_SYNC_END: u64 = 1 << 2;
/// All valid sync flags.
pub const DMA_BUF_SYNC_VALID_FLAGS_MASK: u64 = DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END;

/// Maximum length of a dma-buf name including the terminating NUL.
pub const DMA_BUF_NAME_LEN: usize = 32;

/// `DMA_BUF_IOCTL_SYNC`: `_IOW('b', 0, struct dma_buf_sync)`.
pub const DMA_BUF_IOCTL_SYNC: Opcode = opcode::write::<DmaBufSync>(b'b', 0);
/// `DMA_BUF_SET_NAME_B`: `_IOW('b', 1, __u64)`; the argument is a pointer to a NUL-terminated name.
pub const DMA_BUF_SET_NAME_B: Opcode = opcode::write::<u64>(b'b', 1);
/// `DMA_BUF_SET_NAME_A`: `_IOW('b', 1, __u32)` (32-bit userspace).
pub const DMA_BUF_SET_NAME_A: Opcode = opcode::write::<u32>(b'b', 1);

/// `struct dma_buf_export_sync_file`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaBufExportSyncFile {
    /// `DMA_BUF_SYNC_READ`/`WRITE`.
    pub flags: u32,
    /// Returned sync_file fd.
    pub fd: i32,
}

/// `struct dma_buf_import_sync_file`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaBufImportSyncFile {
    /// `DMA_BUF_SYNC_READ`/`WRITE`.
    pub flags: u32,
    /// sync_file fd to import.
    pub fd: i32,
}

/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: `_IOWR('b', 2, struct dma_buf_export_sync_file)`.
pub const DMA_BUF_IOCTL_EXPORT_SYNC_FILE: Opcode =
    opcode::read_write::<DmaBufExportSyncFile>(b'b', 2);
/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: `_IOW('b', 3, struct dma_buf_import_sync_file)`.
pub const DMA_BUF_IOCTL_IMPORT_SYNC_FILE: Opcode = opcode::write::<DmaBufImportSyncFile>(b'b', 3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_match_kernel_headers() {
        // Values from the kernel's dma-buf.h on x86_64/aarch64 (_IOC_WRITE=1).
        assert_eq!(DMA_BUF_IOCTL_SYNC as u64, 0x4008_6200);
        assert_eq!(DMA_BUF_SET_NAME_B as u64, 0x4008_6201);
        assert_eq!(DMA_BUF_SET_NAME_A as u64, 0x4004_6201);
        assert_eq!(DMA_BUF_IOCTL_EXPORT_SYNC_FILE as u64, 0xc008_6202);
        assert_eq!(DMA_BUF_IOCTL_IMPORT_SYNC_FILE as u64, 0x4008_6203);
    }
}
