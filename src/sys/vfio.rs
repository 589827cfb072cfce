//! `include/uapi/linux/vfio.h` (type1 container, groups, devices, device cdev binding) and
//! `include/uapi/linux/iommufd.h` (IOAS allocation, map, unmap).
//!
//! Our own structs rather than `vfio-bindings`: the read-only IOMMU maps unibuf needs are plain
//! `VFIO_IOMMU_MAP_DMA` / `IOMMU_IOAS_MAP` calls whose flags we choose, and the few structs involved
//! are small enough to check by size here.

use super::opcode;
use rustix::ioctl::Opcode;

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

// ---- iommufd -------------------------------------------------------------------------------

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
        assert_eq!(size_of::<IommuDestroy>(), 8);
        assert_eq!(size_of::<IommuIoasAlloc>(), 12);
        assert_eq!(size_of::<IommuIoasMap>(), 40);
        assert_eq!(size_of::<IommuIoasUnmap>(), 24);
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
        assert_eq!(IOMMU_DESTROY as u64, 0x3b80);
        assert_eq!(IOMMU_IOAS_ALLOC as u64, 0x3b81);
        assert_eq!(IOMMU_IOAS_MAP as u64, 0x3b85);
        assert_eq!(IOMMU_IOAS_UNMAP as u64, 0x3b86);
    }
}
