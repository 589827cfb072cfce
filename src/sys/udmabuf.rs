//! `include/uapi/linux/udmabuf.h`.

use super::opcode;
use rustix::ioctl::Opcode;

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
