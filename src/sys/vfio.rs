//! `include/uapi/linux/vfio.h`: type1 container, groups, devices, device cdev binding to iommufd
//! (the iommufd side is [`super::iommufd`]).
//!
//! Our own structs rather than `vfio-bindings`: the read-only IOMMU maps unibuf needs are plain
//! `VFIO_IOMMU_MAP_DMA` / `IOMMU_IOAS_MAP` calls whose flags we choose, and the few structs involved
//! are small enough to check by size here.
//!
//! VFIO's ioctls are `_IO` (no size in the number) and carry `argsz`: the functions below set it
//! to the size of our struct, so the kernel never writes past it (a region's capability chain,
//! which would need a larger buffer, is not asked for).

use super::mm::MmapRaw;
use super::{own_returned_fd, retry_eintr, IntegerReturning, PointerReturning};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::Result;
use rustix::ioctl::{ioctl, opcode, IntegerSetter, Opcode, Setter, Updater};
use std::ffi::CStr;

/// `VFIO_TYPE`: the ioctl type byte `';'` shared by VFIO and iommufd.
pub const VFIO_TYPE: u8 = b';';
/// `VFIO_BASE`: first VFIO ioctl number.
pub const VFIO_BASE: u8 = 100;
/// `VFIO_API_VERSION`.
pub const VFIO_API_VERSION: i32 = 0;
/// `VFIO_TYPE1_IOMMU`.
pub const VFIO_TYPE1_IOMMU: u32 = 1;
/// `VFIO_TYPE1v2_IOMMU`.
pub const VFIO_TYPE1V2_IOMMU: u32 = 3;

/// `VFIO_GET_API_VERSION`: `_IO(VFIO_TYPE, VFIO_BASE + 0)`.
pub const VFIO_GET_API_VERSION: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE);
/// `VFIO_CHECK_EXTENSION`: `_IO(VFIO_TYPE, VFIO_BASE + 1)`; the argument is the extension number.
pub const VFIO_CHECK_EXTENSION: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 1);
/// `VFIO_SET_IOMMU`: `_IO(VFIO_TYPE, VFIO_BASE + 2)`; the argument is the IOMMU type.
pub const VFIO_SET_IOMMU: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 2);
/// `VFIO_GROUP_GET_STATUS`: `_IO(VFIO_TYPE, VFIO_BASE + 3)`, `struct vfio_group_status`.
pub const VFIO_GROUP_GET_STATUS: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 3);
/// `VFIO_GROUP_SET_CONTAINER`: `_IO(VFIO_TYPE, VFIO_BASE + 4)`, pointer to the container fd.
pub const VFIO_GROUP_SET_CONTAINER: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 4);
/// `VFIO_GROUP_UNSET_CONTAINER`: `_IO(VFIO_TYPE, VFIO_BASE + 5)`.
pub const VFIO_GROUP_UNSET_CONTAINER: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 5);
/// `VFIO_GROUP_GET_DEVICE_FD`: `_IO(VFIO_TYPE, VFIO_BASE + 6)`, pointer to the device name.
pub const VFIO_GROUP_GET_DEVICE_FD: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 6);
/// `VFIO_DEVICE_GET_INFO`: `_IO(VFIO_TYPE, VFIO_BASE + 7)`, `struct vfio_device_info`.
pub const VFIO_DEVICE_GET_INFO: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 7);
/// `VFIO_DEVICE_GET_REGION_INFO`: `_IO(VFIO_TYPE, VFIO_BASE + 8)`, `struct vfio_region_info`.
pub const VFIO_DEVICE_GET_REGION_INFO: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 8);
/// `VFIO_DEVICE_RESET`: `_IO(VFIO_TYPE, VFIO_BASE + 11)`.
pub const VFIO_DEVICE_RESET: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 11);
/// `VFIO_IOMMU_GET_INFO`: `_IO(VFIO_TYPE, VFIO_BASE + 12)`, `struct vfio_iommu_type1_info`.
pub const VFIO_IOMMU_GET_INFO: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 12);
/// `VFIO_IOMMU_MAP_DMA`: `_IO(VFIO_TYPE, VFIO_BASE + 13)`, `struct vfio_iommu_type1_dma_map`.
pub const VFIO_IOMMU_MAP_DMA: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 13);
/// `VFIO_IOMMU_UNMAP_DMA`: `_IO(VFIO_TYPE, VFIO_BASE + 14)`, `struct vfio_iommu_type1_dma_unmap`.
pub const VFIO_IOMMU_UNMAP_DMA: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 14);
/// `VFIO_DEVICE_BIND_IOMMUFD`: `_IO(VFIO_TYPE, VFIO_BASE + 18)`, `struct vfio_device_bind_iommufd`.
pub const VFIO_DEVICE_BIND_IOMMUFD: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 18);
/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: `_IO(VFIO_TYPE, VFIO_BASE + 19)`.
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 19);
/// `VFIO_DEVICE_DETACH_IOMMUFD_PT`: `_IO(VFIO_TYPE, VFIO_BASE + 20)`.
pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: Opcode = opcode::none(VFIO_TYPE, VFIO_BASE + 20);

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioGroupStatus {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_GROUP_FLAGS_*`.
    pub flags: u32,
}
/// All devices of the group are bound to VFIO drivers (or none at all).
pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
/// The group is attached to a container.
pub const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 1 << 1;

/// `struct vfio_device_info` as in 6.12 (24 bytes; older headers lack `pad` and are 20 bytes —
/// the kernel copies `min(argsz, its size)`, so either works).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioDeviceInfo {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
    /// Offset of the first capability.
    pub cap_offset: u32,
    /// Padding.
    pub pad: u32,
}
/// The device is a PCI device.
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;

/// `struct vfio_region_info` (without the capability chain).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioRegionInfo {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Region index (`VFIO_PCI_BAR0_REGION_INDEX`...).
    pub index: u32,
    /// Offset of the first capability.
    pub cap_offset: u32,
    /// Region size in bytes.
    pub size: u64,
    /// Region offset from the start of the device fd.
    pub offset: u64,
}
/// The region can be read.
pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
/// The region can be written.
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
/// The region can be mmapped.
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
/// `VFIO_PCI_BAR0_REGION_INDEX`.
pub const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;

/// `struct vfio_iommu_type1_info` (without the capability chain).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioIommuType1Info {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_IOMMU_INFO_*`.
    pub flags: u32,
    /// Bitmap of supported page sizes.
    pub iova_pgsizes: u64,
    /// Offset of the first capability.
    pub cap_offset: u32,
    /// Padding.
    pub pad: u32,
}
/// `iova_pgsizes` is valid.
pub const VFIO_IOMMU_INFO_PGSIZES: u32 = 1 << 0;

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioIommuType1DmaMap {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_DMA_MAP_FLAG_*`.
    pub flags: u32,
    /// Process virtual address of the memory.
    pub vaddr: u64,
    /// IO virtual address the device will use.
    pub iova: u64,
    /// Size of the mapping in bytes.
    pub size: u64,
}
/// The device may read the mapping.
pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
/// The device may write the mapping.
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;

/// `struct vfio_iommu_type1_dma_unmap` (without the dirty-bitmap tail).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioIommuType1DmaUnmap {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_DMA_UNMAP_FLAG_*`.
    pub flags: u32,
    /// IO virtual address of the mapping.
    pub iova: u64,
    /// Size in bytes (on return: bytes unmapped).
    pub size: u64,
}

/// `struct vfio_device_bind_iommufd`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioDeviceBindIommufd {
    /// Size of this struct.
    pub argsz: u32,
    /// Must be 0.
    pub flags: u32,
    /// The `/dev/iommu` fd.
    pub iommufd: i32,
    /// Returned device id within the iommufd.
    pub out_devid: u32,
}

/// `struct vfio_device_attach_iommufd_pt` (the 6.6 layout, without the later PASID field).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioDeviceAttachIommufdPt {
    /// Size of this struct.
    pub argsz: u32,
    /// Must be 0.
    pub flags: u32,
    /// IOAS or HWPT id to attach to (on return: the HWPT actually attached).
    pub pt_id: u32,
}

/// `struct vfio_device_detach_iommufd_pt`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioDeviceDetachIommufdPt {
    /// Size of this struct.
    pub argsz: u32,
    /// Must be 0.
    pub flags: u32,
}

// ---- calls ----------------------------------------------------------------------------------

fn argsz<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

/// `VFIO_GET_API_VERSION` of a container (`/dev/vfio/vfio`).
pub fn get_api_version(container: BorrowedFd<'_>) -> Result<i32> {
    retry_eintr(|| {
        // SAFETY: VFIO_GET_API_VERSION takes no argument (the integer 0 is ignored) and returns
        // the version.
        unsafe { ioctl(container, IntegerReturning::<VFIO_GET_API_VERSION>::new(0)) }
    })
}

/// `VFIO_CHECK_EXTENSION`: whether the container supports extension `ext` (an IOMMU type).
pub fn check_extension(container: BorrowedFd<'_>, ext: u32) -> Result<bool> {
    let r = retry_eintr(|| {
        // SAFETY: VFIO_CHECK_EXTENSION takes the extension number as an integer argument and
        // returns 0 or a positive value.
        unsafe {
            ioctl(
                container,
                IntegerReturning::<VFIO_CHECK_EXTENSION>::new(ext as usize),
            )
        }
    })?;
    Ok(r > 0)
}

/// `VFIO_SET_IOMMU`: gives the container (with a group attached) IOMMU type `iommu_type`.
pub fn set_iommu(container: BorrowedFd<'_>, iommu_type: u32) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: VFIO_SET_IOMMU takes the IOMMU type as an integer argument.
        unsafe {
            ioctl(
                container,
                IntegerSetter::<VFIO_SET_IOMMU>::new_usize(iommu_type as usize),
            )
        }
    })
}

/// `VFIO_GROUP_GET_STATUS` of a group (`/dev/vfio/<n>`).
pub fn group_get_status(group: BorrowedFd<'_>) -> Result<VfioGroupStatus> {
    let mut st = VfioGroupStatus {
        argsz: argsz::<VfioGroupStatus>(),
        flags: 0,
    };
    retry_eintr(|| {
        // SAFETY: VFIO_GROUP_GET_STATUS reads `argsz` and writes a `struct vfio_group_status`,
        // which `VfioGroupStatus` mirrors.
        unsafe { ioctl(group, Updater::<VFIO_GROUP_GET_STATUS, _>::new(&mut st)) }
    })?;
    Ok(st)
}

/// `VFIO_GROUP_SET_CONTAINER`: attaches the group to a container.
pub fn group_set_container(group: BorrowedFd<'_>, container: BorrowedFd<'_>) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: VFIO_GROUP_SET_CONTAINER reads an `int`, the container fd.
        unsafe {
            ioctl(
                group,
                Setter::<VFIO_GROUP_SET_CONTAINER, i32>::new(container.as_raw_fd()),
            )
        }
    })
}

/// `VFIO_GROUP_GET_DEVICE_FD`: opens device `name` (its PCI address) of the group.
pub fn group_get_device_fd(group: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd> {
    let out = retry_eintr(|| {
        // SAFETY: VFIO_GROUP_GET_DEVICE_FD reads a NUL-terminated device name through its
        // pointer argument (`name`, live for the call) and returns a new fd.
        unsafe {
            ioctl(
                group,
                PointerReturning::<VFIO_GROUP_GET_DEVICE_FD>::new(name.as_ptr().cast_mut().cast()),
            )
        }
    })?;
    // SAFETY: on success VFIO_GROUP_GET_DEVICE_FD returns a new device fd nothing else owns.
    unsafe { own_returned_fd(out) }
}

/// `VFIO_DEVICE_GET_REGION_INFO` of region `index` (without its capability chain).
pub fn device_get_region_info(device: BorrowedFd<'_>, index: u32) -> Result<VfioRegionInfo> {
    let mut ri = VfioRegionInfo {
        argsz: argsz::<VfioRegionInfo>(),
        index,
        ..Default::default()
    };
    retry_eintr(|| {
        // SAFETY: VFIO_DEVICE_GET_REGION_INFO reads and writes a `struct vfio_region_info`,
        // which `VfioRegionInfo` mirrors; with `argsz` its size the kernel writes no capability
        // chain after it.
        unsafe {
            ioctl(
                device,
                Updater::<VFIO_DEVICE_GET_REGION_INFO, _>::new(&mut ri),
            )
        }
    })?;
    Ok(ri)
}

/// `VFIO_IOMMU_MAP_DMA`: maps the pages behind `cpu` (a shared file mapping of this process:
/// the kernel pins them) at `iova` of the container's IOMMU domain, with
/// `VFIO_DMA_MAP_FLAG_READ`/`WRITE` in `flags`. A write permission on a read-only mapping fails
/// (`EFAULT`: the pages cannot be pinned for writing). Pinned pages stay the device's until
/// [`iommu_unmap_dma`], whatever happens to `cpu`.
pub fn iommu_map_dma(
    container: BorrowedFd<'_>,
    cpu: &MmapRaw,
    iova: u64,
    flags: u32,
) -> Result<()> {
    let m = VfioIommuType1DmaMap {
        argsz: argsz::<VfioIommuType1DmaMap>(),
        flags,
        vaddr: cpu.as_ptr() as u64,
        iova,
        size: cpu.len() as u64,
    };
    retry_eintr(|| {
        // SAFETY: VFIO_IOMMU_MAP_DMA reads a `struct vfio_iommu_type1_dma_map`, which
        // `VfioIommuType1DmaMap` mirrors; its address range is the live mapping `cpu`, a
        // `MAP_SHARED` file mapping that no Rust object lives in, so the device reaches only
        // that file's pages.
        unsafe { ioctl(container, Setter::<VFIO_IOMMU_MAP_DMA, _>::new(m)) }
    })
}

/// `VFIO_IOMMU_UNMAP_DMA` of `size` bytes at `iova`; returns the bytes the kernel unmapped.
pub fn iommu_unmap_dma(container: BorrowedFd<'_>, iova: u64, size: u64) -> Result<u64> {
    let mut u = VfioIommuType1DmaUnmap {
        argsz: argsz::<VfioIommuType1DmaUnmap>(),
        flags: 0,
        iova,
        size,
    };
    retry_eintr(|| {
        // SAFETY: VFIO_IOMMU_UNMAP_DMA reads and writes a `struct vfio_iommu_type1_dma_unmap`
        // (no dirty bitmap asked: flags 0), which `VfioIommuType1DmaUnmap` mirrors.
        unsafe { ioctl(container, Updater::<VFIO_IOMMU_UNMAP_DMA, _>::new(&mut u)) }
    })?;
    Ok(u.size)
}

/// `VFIO_DEVICE_BIND_IOMMUFD`: binds a device cdev to an iommufd; returns the device id in it.
pub fn device_bind_iommufd(device: BorrowedFd<'_>, iommufd: BorrowedFd<'_>) -> Result<u32> {
    let mut bind = VfioDeviceBindIommufd {
        argsz: argsz::<VfioDeviceBindIommufd>(),
        flags: 0,
        iommufd: iommufd.as_raw_fd(),
        out_devid: 0,
    };
    retry_eintr(|| {
        // SAFETY: VFIO_DEVICE_BIND_IOMMUFD reads and writes a `struct vfio_device_bind_iommufd`,
        // which `VfioDeviceBindIommufd` mirrors (plain integers; the iommufd is an fd number).
        unsafe {
            ioctl(
                device,
                Updater::<VFIO_DEVICE_BIND_IOMMUFD, _>::new(&mut bind),
            )
        }
    })?;
    Ok(bind.out_devid)
}

/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: attaches a bound device to IOAS (or HWPT) `pt_id`; returns
/// the HWPT actually attached.
pub fn device_attach_iommufd_pt(device: BorrowedFd<'_>, pt_id: u32) -> Result<u32> {
    let mut attach = VfioDeviceAttachIommufdPt {
        argsz: argsz::<VfioDeviceAttachIommufdPt>(),
        flags: 0,
        pt_id,
    };
    retry_eintr(|| {
        // SAFETY: VFIO_DEVICE_ATTACH_IOMMUFD_PT reads and writes a
        // `struct vfio_device_attach_iommufd_pt`, which `VfioDeviceAttachIommufdPt` mirrors.
        unsafe {
            ioctl(
                device,
                Updater::<VFIO_DEVICE_ATTACH_IOMMUFD_PT, _>::new(&mut attach),
            )
        }
    })?;
    Ok(attach.pt_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn struct_sizes_match_kernel_headers() {
        assert_eq!(size_of::<VfioGroupStatus>(), 8);
        assert_eq!(size_of::<VfioDeviceInfo>(), 24);
        assert_eq!(size_of::<VfioRegionInfo>(), 32);
        assert_eq!(size_of::<VfioIommuType1Info>(), 24);
        assert_eq!(size_of::<VfioIommuType1DmaMap>(), 32);
        assert_eq!(size_of::<VfioIommuType1DmaUnmap>(), 24);
        assert_eq!(size_of::<VfioDeviceBindIommufd>(), 16);
        assert_eq!(size_of::<VfioDeviceAttachIommufdPt>(), 12);
    }

    #[test]
    fn opcodes_match_kernel_headers() {
        // _IO(';', n) = (0x3b << 8) | n.
        assert_eq!(VFIO_GET_API_VERSION as u64, 0x3b64);
        assert_eq!(VFIO_CHECK_EXTENSION as u64, 0x3b65);
        assert_eq!(VFIO_SET_IOMMU as u64, 0x3b66);
        assert_eq!(VFIO_GROUP_GET_STATUS as u64, 0x3b67);
        assert_eq!(VFIO_GROUP_SET_CONTAINER as u64, 0x3b68);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD as u64, 0x3b6a);
        assert_eq!(VFIO_DEVICE_GET_INFO as u64, 0x3b6b);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO as u64, 0x3b6c);
        assert_eq!(VFIO_DEVICE_RESET as u64, 0x3b6f);
        assert_eq!(VFIO_IOMMU_GET_INFO as u64, 0x3b70);
        assert_eq!(VFIO_IOMMU_MAP_DMA as u64, 0x3b71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA as u64, 0x3b72);
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD as u64, 0x3b76);
        assert_eq!(VFIO_DEVICE_ATTACH_IOMMUFD_PT as u64, 0x3b77);
        assert_eq!(VFIO_DEVICE_DETACH_IOMMUFD_PT as u64, 0x3b78);
    }
}
