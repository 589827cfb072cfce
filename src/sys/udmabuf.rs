//! `include/uapi/linux/udmabuf.h`: a dma-buf made of a memfd's pages.

use super::{own_returned_fd, retry_eintr, PointerReturning, UpdaterReturning};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::{Errno, Result};
use rustix::ioctl::{ioctl, opcode, Opcode};

/// Give the returned dma-buf fd `O_CLOEXEC`.
pub const UDMABUF_FLAGS_CLOEXEC: u32 = 0x01;

/// `struct udmabuf_create`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UdmabufCreate {
    /// The memfd (must be sealed with `F_SEAL_SHRINK`, must not be sealed `F_SEAL_WRITE`).
    pub memfd: u32,
    /// `UDMABUF_FLAGS_*`.
    pub flags: u32,
    /// Page-aligned offset into the memfd.
    pub offset: u64,
    /// Page-aligned size.
    pub size: u64,
}

/// `struct udmabuf_create_item`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UdmabufCreateItem {
    /// The memfd.
    pub memfd: u32,
    /// Padding.
    pub pad: u32,
    /// Page-aligned offset into the memfd.
    pub offset: u64,
    /// Page-aligned size.
    pub size: u64,
}

/// Header of `struct udmabuf_create_list` (followed by `count` items).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UdmabufCreateListHeader {
    /// `UDMABUF_FLAGS_*`.
    pub flags: u32,
    /// Number of items that follow.
    pub count: u32,
}

/// `UDMABUF_CREATE`: `_IOW('u', 0x42, struct udmabuf_create)`; returns the new dma-buf fd.
pub const UDMABUF_CREATE: Opcode = opcode::write::<UdmabufCreate>(b'u', 0x42);
/// `UDMABUF_CREATE_LIST`: `_IOW('u', 0x43, struct udmabuf_create_list)` (size of the header).
pub const UDMABUF_CREATE_LIST: Opcode = opcode::write::<UdmabufCreateListHeader>(b'u', 0x43);

/// The udmabuf misc device.
pub const UDMABUF_DEV: &str = "/dev/udmabuf";

/// `UDMABUF_CREATE`: a dma-buf of `size` bytes of `memfd` from `offset` (both page-aligned; the
/// memfd sealed `F_SEAL_SHRINK` and not `F_SEAL_WRITE`), with `flags` (`UDMABUF_FLAGS_*`).
pub fn create(
    dev: BorrowedFd<'_>,
    memfd: BorrowedFd<'_>,
    offset: u64,
    size: u64,
    flags: u32,
) -> Result<OwnedFd> {
    let mut arg = UdmabufCreate {
        memfd: memfd.as_raw_fd() as u32,
        flags,
        offset,
        size,
    };
    let out = retry_eintr(|| {
        // SAFETY: UDMABUF_CREATE reads a `struct udmabuf_create`, which `arg` mirrors (size test
        // below); it holds no pointer, and the memfd is an fd number the kernel looks up.
        unsafe { ioctl(dev, UpdaterReturning::<UDMABUF_CREATE, _>::new(&mut arg)) }
    })?;
    // SAFETY: on success UDMABUF_CREATE returns a new dma-buf fd that nothing else owns.
    unsafe { own_returned_fd(out) }
}

/// The largest `count` [`create_list`] sends (the kernel's default `list_limit` is 1024).
pub const UDMABUF_CREATE_LIST_MAX: usize = 1024;

/// `UDMABUF_CREATE_LIST`: one dma-buf made of several memfd ranges, in order.
pub fn create_list(
    dev: BorrowedFd<'_>,
    flags: u32,
    items: &[UdmabufCreateItem],
) -> Result<OwnedFd> {
    if items.is_empty() || items.len() > UDMABUF_CREATE_LIST_MAX {
        return Err(Errno::INVAL);
    }
    // The kernel reads the 8-byte header and then `count` items right after it (a flexible
    // array): lay both out in one 8-aligned buffer of u64 words.
    let header = std::mem::size_of::<UdmabufCreateListHeader>();
    let mut buf = vec![0u64; (header + std::mem::size_of_val(items)) / 8];
    let base = buf.as_mut_ptr().cast::<u8>();
    // SAFETY: `buf` has room for the header and every item (its length is computed from their
    // sizes, which are multiples of 8); both types are plain integers with alignment 8 or less,
    // and `buf`'s u64 words are 8-aligned at every offset written (0, 8, 8 + 24 * i).
    unsafe {
        base.cast::<UdmabufCreateListHeader>()
            .write(UdmabufCreateListHeader {
                flags,
                count: items.len() as u32,
            });
        std::ptr::copy_nonoverlapping(
            items.as_ptr(),
            base.add(header).cast::<UdmabufCreateItem>(),
            items.len(),
        );
    }
    let out = retry_eintr(|| {
        // SAFETY: UDMABUF_CREATE_LIST reads a `struct udmabuf_create_list` header and the `count`
        // items that follow it, all inside `buf`, which lives for the call; nothing in them is a
        // pointer.
        unsafe {
            ioctl(
                dev,
                PointerReturning::<UDMABUF_CREATE_LIST>::new(base.cast()),
            )
        }
    })?;
    // SAFETY: on success UDMABUF_CREATE_LIST returns a new dma-buf fd that nothing else owns.
    unsafe { own_returned_fd(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_opcodes_match_kernel_headers() {
        assert_eq!(std::mem::size_of::<UdmabufCreate>(), 24);
        assert_eq!(std::mem::size_of::<UdmabufCreateItem>(), 24);
        assert_eq!(std::mem::size_of::<UdmabufCreateListHeader>(), 8);
        assert_eq!(UDMABUF_CREATE as u64, 0x4018_7542);
        assert_eq!(UDMABUF_CREATE_LIST as u64, 0x4008_7543);
    }
}
