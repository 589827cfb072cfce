//! `include/uapi/linux/iommufd.h`: IOAS allocation, map and unmap on `/dev/iommu`.
//!
//! iommufd's ioctls are `_IO` and carry `size`: the functions below set it to the size of our
//! struct.

use super::mm::MmapRaw;
use super::retry_eintr;
use rustix::fd::BorrowedFd;
use rustix::io::Result;
use rustix::ioctl::{ioctl, opcode, Opcode, Updater};

/// `IOMMUFD_TYPE`: `';'`, same as VFIO.
pub const IOMMUFD_TYPE: u8 = b';';
/// `IOMMUFD_CMD_BASE`.
pub const IOMMUFD_CMD_BASE: u8 = 0x80;

/// `IOMMU_DESTROY`: `_IO(IOMMUFD_TYPE, 0x80)`, `struct iommu_destroy`.
pub const IOMMU_DESTROY: Opcode = opcode::none(IOMMUFD_TYPE, IOMMUFD_CMD_BASE);
/// `IOMMU_IOAS_ALLOC`: `_IO(IOMMUFD_TYPE, 0x81)`, `struct iommu_ioas_alloc`.
pub const IOMMU_IOAS_ALLOC: Opcode = opcode::none(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 1);
/// `IOMMU_IOAS_MAP`: `_IO(IOMMUFD_TYPE, 0x85)`, `struct iommu_ioas_map`.
pub const IOMMU_IOAS_MAP: Opcode = opcode::none(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 5);
/// `IOMMU_IOAS_UNMAP`: `_IO(IOMMUFD_TYPE, 0x86)`, `struct iommu_ioas_unmap`.
pub const IOMMU_IOAS_UNMAP: Opcode = opcode::none(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 6);

/// `struct iommu_destroy`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuDestroy {
    /// Size of this struct.
    pub size: u32,
    /// Object id to destroy.
    pub id: u32,
}

/// `struct iommu_ioas_alloc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasAlloc {
    /// Size of this struct.
    pub size: u32,
    /// Must be 0.
    pub flags: u32,
    /// Returned IOAS id.
    pub out_ioas_id: u32,
}

/// `struct iommu_ioas_map`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasMap {
    /// Size of this struct.
    pub size: u32,
    /// `IOMMU_IOAS_MAP_*`.
    pub flags: u32,
    /// IOAS to map into.
    pub ioas_id: u32,
    /// Must be 0.
    pub reserved: u32,
    /// Process virtual address of the memory.
    pub user_va: u64,
    /// Length in bytes.
    pub length: u64,
    /// IOVA (in with `FIXED_IOVA`, else out).
    pub iova: u64,
}
/// Map at exactly `iova`.
pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
/// The device may write the mapping.
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
/// The device may read the mapping.
pub const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

/// `struct iommu_ioas_unmap`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasUnmap {
    /// Size of this struct.
    pub size: u32,
    /// IOAS to unmap from.
    pub ioas_id: u32,
    /// IOVA of the mapping.
    pub iova: u64,
    /// Length in bytes (on return: bytes unmapped).
    pub length: u64,
}

fn size<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

/// `IOMMU_IOAS_ALLOC`: a new IO address space; returns its id.
pub fn ioas_alloc(iommufd: BorrowedFd<'_>) -> Result<u32> {
    let mut a = IommuIoasAlloc {
        size: size::<IommuIoasAlloc>(),
        ..Default::default()
    };
    retry_eintr(|| {
        // SAFETY: IOMMU_IOAS_ALLOC reads and writes a `struct iommu_ioas_alloc`, which
        // `IommuIoasAlloc` mirrors.
        unsafe { ioctl(iommufd, Updater::<IOMMU_IOAS_ALLOC, _>::new(&mut a)) }
    })?;
    Ok(a.out_ioas_id)
}

/// `IOMMU_IOAS_MAP`: maps the pages behind `cpu` (a shared file mapping of this process: the
/// kernel pins them) into IOAS `ioas` with `IOMMU_IOAS_MAP_*` `flags`; with
/// `IOMMU_IOAS_MAP_FIXED_IOVA` at `iova`. Returns the IOVA used.
pub fn ioas_map(
    iommufd: BorrowedFd<'_>,
    ioas: u32,
    cpu: &MmapRaw,
    iova: u64,
    flags: u32,
) -> Result<u64> {
    let mut m = IommuIoasMap {
        size: size::<IommuIoasMap>(),
        flags,
        ioas_id: ioas,
        reserved: 0,
        user_va: cpu.as_ptr() as u64,
        length: cpu.len() as u64,
        iova,
    };
    retry_eintr(|| {
        // SAFETY: IOMMU_IOAS_MAP reads and writes a `struct iommu_ioas_map`, which
        // `IommuIoasMap` mirrors; its address range is the live mapping `cpu`, a `MAP_SHARED`
        // file mapping that no Rust object lives in, so the device reaches only that file's
        // pages.
        unsafe { ioctl(iommufd, Updater::<IOMMU_IOAS_MAP, _>::new(&mut m)) }
    })?;
    Ok(m.iova)
}

/// `IOMMU_IOAS_UNMAP` of `length` bytes at `iova` of IOAS `ioas`; returns the bytes unmapped.
pub fn ioas_unmap(iommufd: BorrowedFd<'_>, ioas: u32, iova: u64, length: u64) -> Result<u64> {
    let mut u = IommuIoasUnmap {
        size: size::<IommuIoasUnmap>(),
        ioas_id: ioas,
        iova,
        length,
    };
    retry_eintr(|| {
        // SAFETY: IOMMU_IOAS_UNMAP reads and writes a `struct iommu_ioas_unmap`, which
        // `IommuIoasUnmap` mirrors.
        unsafe { ioctl(iommufd, Updater::<IOMMU_IOAS_UNMAP, _>::new(&mut u)) }
    })?;
    Ok(u.length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn struct_sizes_match_kernel_headers() {
        assert_eq!(size_of::<IommuDestroy>(), 8);
        assert_eq!(size_of::<IommuIoasAlloc>(), 12);
        assert_eq!(size_of::<IommuIoasMap>(), 40);
        assert_eq!(size_of::<IommuIoasUnmap>(), 24);
    }

    #[test]
    fn opcodes_match_kernel_headers() {
        assert_eq!(IOMMU_DESTROY as u64, 0x3b80);
        assert_eq!(IOMMU_IOAS_ALLOC as u64, 0x3b81);
        assert_eq!(IOMMU_IOAS_MAP as u64, 0x3b85);
        assert_eq!(IOMMU_IOAS_UNMAP as u64, 0x3b86);
    }
}
