//! `include/uapi/linux/dma-buf.h`: CPU-access sync and naming of a dma-buf.

use super::{own_fd, retry_eintr};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::io::Result;
use rustix::ioctl::{ioctl, opcode, IntegerSetter, Opcode, Setter, Updater};
use std::ffi::CStr;

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

/// `DMA_BUF_IOCTL_SYNC` with `flags` (`DMA_BUF_SYNC_START`/`END` | `READ`/`WRITE`/`RW`),
/// retried on `EINTR` only.
///
/// What the kernel answers (6.12 `drivers/dma-buf/dma-buf.c`): `EFAULT`, `EINVAL` for flags
/// outside [`DMA_BUF_SYNC_VALID_FLAGS_MASK`] or without a direction, and whatever the
/// exporter's `begin_cpu_access`/`end_cpu_access` return. The only wait in the core path,
/// `dma_resv_wait_timeout(.., intr = true, MAX_SCHEDULE_TIMEOUT)` on the buffer's fences, ends
/// in `EINTR` when a signal arrives (retried here). The fd's `O_NONBLOCK` plays no part, so
/// `EAGAIN` here never means "would block"; the kernel's own documentation of the ioctl says it
/// may fail with `EAGAIN` and must then be restarted, which is left to the caller
/// ([`crate::map`] restarts it a bounded number of times).
pub fn sync(fd: BorrowedFd<'_>, flags: u64) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: DMA_BUF_IOCTL_SYNC reads a `struct dma_buf_sync`, which `DmaBufSync` mirrors
        // (size test below); the kernel only reads it.
        unsafe {
            ioctl(
                fd,
                Setter::<DMA_BUF_IOCTL_SYNC, _>::new(DmaBufSync { flags }),
            )
        }
    })
}

/// `DMA_BUF_SET_NAME`: names the buffer (shown in `/proc/<pid>/fdinfo/<fd>`). The kernel copies
/// at most [`DMA_BUF_NAME_LEN`] bytes including the NUL and refuses a longer name (`EINVAL`).
pub fn set_name(fd: BorrowedFd<'_>, name: &CStr) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: DMA_BUF_SET_NAME takes a pointer to a NUL-terminated string, which `name` is,
        // live for the call; the kernel only reads it (`strndup_user`).
        unsafe {
            ioctl(
                fd,
                IntegerSetter::<DMA_BUF_SET_NAME_B>::new_pointer(name.as_ptr().cast_mut().cast()),
            )
        }
    })
}

/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` (Linux 6.0): a new sync_file fd holding the buffer's fences
/// that an access of kind `flags` must wait for (`DMA_BUF_SYNC_READ`: the write fences, which a
/// reader waits for; `DMA_BUF_SYNC_WRITE`: every fence, read and write). Retried on `EINTR` only.
///
/// What the kernel answers (6.12 `dma_buf_export_sync_file`): `EINVAL` for flags outside
/// `DMA_BUF_SYNC_RW` or without a direction, `ENOMEM`, and `ENOTTY` before 6.0 (the ioctl is
/// unknown there: wait by polling the dma-buf fd instead). A buffer with no fence gives a
/// sync_file that is already signalled (a stub fence).
pub fn export_sync_file(fd: BorrowedFd<'_>, flags: u32) -> Result<OwnedFd> {
    let mut arg = DmaBufExportSyncFile { flags, fd: -1 };
    retry_eintr(|| {
        // SAFETY: DMA_BUF_IOCTL_EXPORT_SYNC_FILE reads and writes a
        // `struct dma_buf_export_sync_file`, which `DmaBufExportSyncFile` mirrors (size test
        // below); `arg` is live and exclusive for the call.
        unsafe {
            ioctl(
                fd,
                Updater::<DMA_BUF_IOCTL_EXPORT_SYNC_FILE, _>::new(&mut arg),
            )
        }
    })?;
    if arg.fd < 0 {
        return Err(rustix::io::Errno::INVAL);
    }
    // SAFETY: on success the kernel installed a new sync_file fd for this process in `arg.fd`,
    // which nothing else owns.
    Ok(unsafe { own_fd(arg.fd) })
}

/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` (Linux 6.0): adds the fences of `sync_file` to the buffer,
/// as write fences (`DMA_BUF_SYNC_WRITE`: later readers and writers wait for them) or read
/// fences (`DMA_BUF_SYNC_READ`: later writers wait for them). Retried on `EINTR` only.
///
/// What the kernel answers: `EINVAL` for bad flags or an fd that is not a sync_file, `ENOMEM`,
/// and `ENOTTY` before 6.0.
pub fn import_sync_file(fd: BorrowedFd<'_>, flags: u32, sync_file: BorrowedFd<'_>) -> Result<()> {
    use rustix::fd::AsRawFd;
    let arg = DmaBufImportSyncFile {
        flags,
        fd: sync_file.as_raw_fd(),
    };
    retry_eintr(|| {
        // SAFETY: DMA_BUF_IOCTL_IMPORT_SYNC_FILE reads a `struct dma_buf_import_sync_file`, which
        // `DmaBufImportSyncFile` mirrors (size test below); the fd in it is live (borrowed) for
        // the call and the kernel only takes its own reference to the fence.
        unsafe { ioctl(fd, Setter::<DMA_BUF_IOCTL_IMPORT_SYNC_FILE, _>::new(arg)) }
    })
}

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

    #[test]
    fn layouts_match_kernel_headers() {
        assert_eq!(std::mem::size_of::<DmaBufSync>(), 8);
        assert_eq!(std::mem::size_of::<DmaBufExportSyncFile>(), 8);
        assert_eq!(std::mem::size_of::<DmaBufImportSyncFile>(), 8);
    }

    #[test]
    fn calls_on_a_memfd_answer_enotty() {
        use rustix::fd::AsFd;
        let m = rustix::fs::memfd_create("not-a-dma-buf", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        assert_eq!(
            sync(m.as_fd(), DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ),
            Err(rustix::io::Errno::NOTTY)
        );
        assert_eq!(set_name(m.as_fd(), c"x"), Err(rustix::io::Errno::NOTTY));
        assert_eq!(
            export_sync_file(m.as_fd(), DMA_BUF_SYNC_READ as u32).unwrap_err(),
            rustix::io::Errno::NOTTY
        );
        assert_eq!(
            import_sync_file(m.as_fd(), DMA_BUF_SYNC_WRITE as u32, m.as_fd()),
            Err(rustix::io::Errno::NOTTY)
        );
    }
}
