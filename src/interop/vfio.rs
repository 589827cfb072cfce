//! VFIO: a PCIe device driven from user space, with unibuf buffers mapped into its IOMMU domain.
//!
//! - [`VfioConstraints::probe`] is the constraint provider: a VFIO accessor needs memory it can pin
//!   (memfd-backed: a heap dma-buf's own mapping is `VM_PFNMAP` and type1 refuses to pin it), and
//!   physically contiguous memory when the device sits in no IOMMU group.
//! - [`bind_vfio_pci`] binds a device to `vfio-pci` through `driver_override`.
//! - [`VfioDevice::open_type1`] opens it through a type1 container and its group;
//!   [`VfioDevice::open_iommufd`] through `/dev/iommu` and the device cdev (`/dev/vfio/devices/vfioN`).
//! - [`VfioDevice::map_fd`] maps a memfd-backed buffer at a chosen IOVA with the handle's
//!   permission: `ReadWrite` → DMA read and write, `ReadOnly` → DMA read only. The returned
//!   [`DmaMapping`] unmaps on drop.
//! - [`Edu`] drives QEMU's `edu` device's DMA engine, which makes a real test of the mappings.

use crate::attr::{AccessorKind, AttrList, BufferType, Permission};
use crate::error::{Error, Result};
use crate::sys::{iommufd, mm, vfio as v};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SYSFS_PCI: &str = "/sys/bus/pci/devices";

fn open(path: &Path, flags: OFlags) -> Result<OwnedFd> {
    rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys("open", path.display().to_string(), e))
}

fn sysfs_dev(bdf: &str) -> PathBuf {
    Path::new(SYSFS_PCI).join(bdf)
}

fn check_bdf(bdf: &str) -> Result<()> {
    // dddd:bb:dd.f
    let ok = bdf.len() == 12
        && bdf.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b':',
            10 => c == b'.',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{bdf:?} is not a PCI address of the form dddd:bb:dd.f"
        )))
    }
}

fn read_hex(path: &Path) -> Option<u32> {
    let s = std::fs::read_to_string(path).ok()?;
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// PCI addresses (`dddd:bb:dd.f`) of the devices with this vendor and device id, sorted.
pub fn find_pci_devices(vendor: u16, device: u16) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(SYSFS_PCI) {
        for e in rd.flatten() {
            let p = e.path();
            if read_hex(&p.join("vendor")) == Some(vendor as u32)
                && read_hex(&p.join("device")) == Some(device as u32)
            {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The IOMMU group number of a PCI device, `None` when it has none (no IOMMU in front of it).
pub fn iommu_group(bdf: &str) -> Option<u32> {
    let link = std::fs::read_link(sysfs_dev(bdf).join("iommu_group")).ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// The name of the driver bound to a PCI device, if any.
pub fn bound_driver(bdf: &str) -> Option<String> {
    let link = std::fs::read_link(sysfs_dev(bdf).join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

fn write_sysfs(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| {
        Error::sys(
            "write",
            format!("{} ({value:?})", path.display()),
            rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
        )
    })
}

/// Binds a PCI device to `vfio-pci` (through `driver_override`, then `drivers_probe`), unbinding it
/// from its current driver first. Does nothing when it is bound to `vfio-pci` already.
pub fn bind_vfio_pci(bdf: &str) -> Result<()> {
    check_bdf(bdf)?;
    let dev = sysfs_dev(bdf);
    if !dev.exists() {
        return Err(Error::Unavailable {
            what: format!("PCI device {bdf}"),
            why: format!("{} does not exist", dev.display()),
        });
    }
    if bound_driver(bdf).as_deref() == Some("vfio-pci") {
        return Ok(());
    }
    if !Path::new("/sys/bus/pci/drivers/vfio-pci").exists() {
        return Err(Error::Unavailable {
            what: "the vfio-pci driver".into(),
            why: "/sys/bus/pci/drivers/vfio-pci does not exist (CONFIG_VFIO_PCI off or module not loaded)"
                .into(),
        });
    }
    write_sysfs(&dev.join("driver_override"), "vfio-pci")?;
    if bound_driver(bdf).is_some() {
        write_sysfs(&dev.join("driver/unbind"), bdf)?;
    }
    write_sysfs(Path::new("/sys/bus/pci/drivers_probe"), bdf)?;
    match bound_driver(bdf) {
        Some(d) if d == "vfio-pci" => Ok(()),
        other => Err(Error::Device {
            device: bdf.into(),
            what: format!(
                "still bound to {other:?} after driver_override=vfio-pci and drivers_probe"
            ),
        }),
    }
}

/// What a VFIO accessor needs of a buffer: the constraint provider's answer for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfioConstraints {
    /// Always [`AccessorKind::Vfio`]: reconciliation then asks for pinnable (memfd-backed) memory.
    pub accessor: AccessorKind,
    /// The PCI address.
    pub bdf: String,
    /// The device sits in no IOMMU group, so it needs physically contiguous memory.
    pub contiguous: bool,
    /// Minimum alignment of a mapping: the smallest IOMMU page size (the CPU page size when the
    /// IOMMU cannot be asked).
    pub alignment: u64,
    /// Exclusive upper bound of the IOVAs the device can address (`1 << dma_mask_bits`).
    pub iova_limit: u64,
}

impl VfioConstraints {
    /// Adds this device's needs to an accessor's list (the list states the buffer type): accessor
    /// kind `Vfio` (so reconciliation asks for pinnable, memfd-backed memory), contiguity when
    /// the device has no IOMMU, the base alignment, and the DMA permission `permission`.
    pub fn fill(&self, list: &mut AttrList, permission: Permission) -> Result<()> {
        list.set_accessor_kind(AccessorKind::Vfio)?
            .set_accessor_name(&format!("vfio:{}", self.bdf))?
            .set_required_perm(permission)?;
        if self.contiguous {
            list.set_contiguous(true)?;
        }
        let types = list.types();
        if types.contains(BufferType::Image) || types.contains(BufferType::ImagePyramid) {
            list.set_base_align(self.alignment)?;
        }
        if types.contains(BufferType::RawBuffer) {
            list.set_raw_align(self.alignment)?;
        }
        if types.contains(BufferType::Tensor) {
            list.set_tensor_base_align(self.alignment)?;
        }
        Ok(())
    }

    /// Asks sysfs about `bdf`. `dma_mask_bits` is the device's DMA addressing width, which only
    /// its driver knows (QEMU's `edu`: 28).
    pub fn probe(bdf: &str, dma_mask_bits: u32) -> Result<VfioConstraints> {
        check_bdf(bdf)?;
        if !sysfs_dev(bdf).exists() {
            return Err(Error::Unavailable {
                what: format!("PCI device {bdf}"),
                why: "not in /sys/bus/pci/devices".into(),
            });
        }
        if !(12..=64).contains(&dma_mask_bits) {
            return Err(Error::InvalidArgument(format!(
                "DMA mask of {dma_mask_bits} bits is out of range 12..=64"
            )));
        }
        Ok(VfioConstraints {
            accessor: AccessorKind::Vfio,
            bdf: bdf.into(),
            contiguous: iommu_group(bdf).is_none(),
            alignment: rustix::param::page_size() as u64,
            iova_limit: if dma_mask_bits == 64 {
                u64::MAX
            } else {
                1u64 << dma_mask_bits
            },
        })
    }
}

/// The IOMMU side of an open device.
#[derive(Debug)]
enum Iommu {
    /// Legacy container + group.
    Type1 { container: OwnedFd, _group: OwnedFd },
    /// `/dev/iommu` with one IOAS the device is attached to.
    Iommufd { iommufd: OwnedFd, ioas: u32 },
}

/// Which VFIO interface opened a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfioInterface {
    /// `/dev/vfio/vfio` container with the type1 IOMMU and `/dev/vfio/<group>`.
    Type1,
    /// `/dev/iommu` and the device cdev `/dev/vfio/devices/vfioN`.
    Iommufd,
}

/// A region of the device (a BAR or the config space), accessed with `pread`/`pwrite` on the
/// device fd.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    /// Offset of the region in the device fd.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
}

/// An open VFIO device.
#[derive(Debug)]
pub struct VfioDevice {
    bdf: String,
    device: OwnedFd,
    iommu: Iommu,
    iova_limit: u64,
}

impl VfioDevice {
    /// Opens `bdf` (bound to `vfio-pci`) through a type1 container.
    pub fn open_type1(bdf: &str) -> Result<VfioDevice> {
        check_bdf(bdf)?;
        let group_no = iommu_group(bdf).ok_or_else(|| Error::Unavailable {
            what: format!("an IOMMU group for {bdf}"),
            why: "the device has no iommu_group link in sysfs (no IOMMU, or it is off)".into(),
        })?;
        let cpath = Path::new("/dev/vfio/vfio");
        let container = open(cpath, OFlags::RDWR)?;
        let ver = v::get_api_version(container.as_fd())
            .map_err(|e| Error::sys("VFIO_GET_API_VERSION", "/dev/vfio/vfio", e))?;
        if ver != v::VFIO_API_VERSION {
            return Err(Error::Device {
                device: "/dev/vfio/vfio".into(),
                what: format!("VFIO API version {ver}, expected {}", v::VFIO_API_VERSION),
            });
        }
        let mut iommu_type = 0;
        for t in [v::VFIO_TYPE1V2_IOMMU, v::VFIO_TYPE1_IOMMU] {
            let supported = v::check_extension(container.as_fd(), t)
                .map_err(|e| Error::sys("VFIO_CHECK_EXTENSION", "/dev/vfio/vfio", e))?;
            if supported {
                iommu_type = t;
                break;
            }
        }
        if iommu_type == 0 {
            return Err(Error::Unavailable {
                what: "the VFIO type1 IOMMU".into(),
                why: "/dev/vfio/vfio supports neither TYPE1v2 nor TYPE1 (vfio_iommu_type1 not loaded?)"
                    .into(),
            });
        }
        let gpath = PathBuf::from(format!("/dev/vfio/{group_no}"));
        let gname = gpath.display().to_string();
        let group = open(&gpath, OFlags::RDWR)?;
        let st = v::group_get_status(group.as_fd())
            .map_err(|e| Error::sys("VFIO_GROUP_GET_STATUS", gname.clone(), e))?;
        if st.flags & v::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(Error::Device {
                device: gname,
                what: "group is not viable: bind every device of the group to vfio-pci".into(),
            });
        }
        v::group_set_container(group.as_fd(), container.as_fd())
            .map_err(|e| Error::sys("VFIO_GROUP_SET_CONTAINER", gname.clone(), e))?;
        v::set_iommu(container.as_fd(), iommu_type)
            .map_err(|e| Error::sys("VFIO_SET_IOMMU", "/dev/vfio/vfio", e))?;
        let name = CString::new(bdf).map_err(|_| Error::InvalidArgument("NUL in bdf".into()))?;
        let device = v::group_get_device_fd(group.as_fd(), &name)
            .map_err(|e| Error::sys("VFIO_GROUP_GET_DEVICE_FD", format!("{gname} ({bdf})"), e))?;
        Ok(VfioDevice {
            bdf: bdf.into(),
            device,
            iommu: Iommu::Type1 {
                container,
                _group: group,
            },
            iova_limit: u64::MAX,
        })
    }

    /// The device cdev of `bdf` (`/dev/vfio/devices/vfioN`), if the kernel has
    /// `CONFIG_VFIO_DEVICE_CDEV` and the device is bound to a VFIO driver.
    pub fn cdev_path(bdf: &str) -> Option<PathBuf> {
        let rd = std::fs::read_dir(sysfs_dev(bdf).join("vfio-dev")).ok()?;
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("vfio") {
                return Some(Path::new("/dev/vfio/devices").join(n));
            }
        }
        None
    }

    /// Opens `bdf` (bound to `vfio-pci`) through iommufd: binds its cdev to a new `/dev/iommu`
    /// context and attaches it to a fresh IOAS.
    pub fn open_iommufd(bdf: &str) -> Result<VfioDevice> {
        check_bdf(bdf)?;
        let cdev = Self::cdev_path(bdf).ok_or_else(|| Error::Unavailable {
            what: format!("a VFIO device cdev for {bdf}"),
            why:
                "no vfio-dev/vfioN in sysfs (CONFIG_VFIO_DEVICE_CDEV off, or not bound to vfio-pci)"
                    .into(),
        })?;
        let iommufd = open(Path::new("/dev/iommu"), OFlags::RDWR)?;
        let device = open(&cdev, OFlags::RDWR)?;
        let cname = cdev.display().to_string();
        v::device_bind_iommufd(device.as_fd(), iommufd.as_fd())
            .map_err(|e| Error::sys("VFIO_DEVICE_BIND_IOMMUFD", cname.clone(), e))?;
        let ioas = iommufd::ioas_alloc(iommufd.as_fd())
            .map_err(|e| Error::sys("IOMMU_IOAS_ALLOC", "/dev/iommu", e))?;
        v::device_attach_iommufd_pt(device.as_fd(), ioas)
            .map_err(|e| Error::sys("VFIO_DEVICE_ATTACH_IOMMUFD_PT", cname, e))?;
        Ok(VfioDevice {
            bdf: bdf.into(),
            device,
            iommu: Iommu::Iommufd { iommufd, ioas },
            iova_limit: u64::MAX,
        })
    }

    /// The PCI address.
    pub fn bdf(&self) -> &str {
        &self.bdf
    }

    /// Which interface opened the device.
    pub fn interface(&self) -> VfioInterface {
        match self.iommu {
            Iommu::Type1 { .. } => VfioInterface::Type1,
            Iommu::Iommufd { .. } => VfioInterface::Iommufd,
        }
    }

    /// Restricts mappings to IOVAs below `limit` (the device's DMA mask).
    pub fn set_iova_limit(&mut self, limit: u64) {
        self.iova_limit = limit;
    }

    /// Information about region `index` (`VFIO_PCI_BAR0_REGION_INDEX`...).
    pub fn region(&self, index: u32) -> Result<Region> {
        let ri = v::device_get_region_info(self.device.as_fd(), index)
            .map_err(|e| Error::sys("VFIO_DEVICE_GET_REGION_INFO", self.bdf.clone(), e))?;
        Ok(Region {
            offset: ri.offset,
            size: ri.size,
            flags: ri.flags,
        })
    }

    fn check_region(&self, r: &Region, off: u64, len: usize) -> Result<()> {
        match off.checked_add(len as u64) {
            Some(end) if end <= r.size => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "{}: access of {len} bytes at {off:#x} is outside a region of {:#x} bytes",
                self.bdf, r.size
            ))),
        }
    }

    /// Reads `buf.len()` bytes at `off` in region `r`.
    pub fn read_region(&self, r: &Region, off: u64, buf: &mut [u8]) -> Result<()> {
        self.check_region(r, off, buf.len())?;
        let n = rustix::io::pread(&self.device, &mut *buf, r.offset + off)
            .map_err(|e| Error::sys("pread", format!("{} region@{off:#x}", self.bdf), e))?;
        if n != buf.len() {
            return Err(Error::Device {
                device: self.bdf.clone(),
                what: format!("short region read at {off:#x}: {n} of {}", buf.len()),
            });
        }
        Ok(())
    }

    /// Writes `buf` at `off` in region `r`.
    pub fn write_region(&self, r: &Region, off: u64, buf: &[u8]) -> Result<()> {
        self.check_region(r, off, buf.len())?;
        let n = rustix::io::pwrite(&self.device, buf, r.offset + off)
            .map_err(|e| Error::sys("pwrite", format!("{} region@{off:#x}", self.bdf), e))?;
        if n != buf.len() {
            return Err(Error::Device {
                device: self.bdf.clone(),
                what: format!("short region write at {off:#x}: {n} of {}", buf.len()),
            });
        }
        Ok(())
    }

    /// Enables memory decoding and bus mastering in the PCI command register, so the device may
    /// do DMA.
    pub fn enable_bus_master(&self) -> Result<()> {
        let cfg = self.region(v::VFIO_PCI_CONFIG_REGION_INDEX)?;
        let mut cmd = [0u8; 2];
        self.read_region(&cfg, 4, &mut cmd)?;
        let val = u16::from_le_bytes(cmd) | 0x2 | 0x4;
        self.write_region(&cfg, 4, &val.to_le_bytes())
    }

    /// Maps `len` bytes of `fd` (a memfd, or the memfd behind a udmabuf: anything whose pages
    /// VFIO can pin; a dma-buf's own mapping is `VM_PFNMAP` and is refused with `EFAULT`) at
    /// `iova` in the device's IOMMU domain. `ReadOnly` grants the device DMA reads only;
    /// `ReadWrite` reads and writes. The CPU mapping made for the pin uses the same protection,
    /// so a read-only fd works.
    pub fn map_fd(
        &self,
        fd: BorrowedFd<'_>,
        len: u64,
        iova: u64,
        permission: Permission,
    ) -> Result<DmaMapping<'_>> {
        let page = rustix::param::page_size() as u64;
        if len == 0 || len % page != 0 || iova % page != 0 {
            return Err(Error::InvalidArgument(format!(
                "VFIO mapping of {len:#x} bytes at IOVA {iova:#x}: both must be non-zero multiples of the page size {page:#x}"
            )));
        }
        match iova.checked_add(len) {
            Some(end) if end <= self.iova_limit => {}
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{}: IOVA range {iova:#x}+{len:#x} exceeds the device's DMA limit {:#x}",
                    self.bdf, self.iova_limit
                )))
            }
        }
        let what = || format!("buffer for VFIO map on {}", self.bdf);
        let cpu = match permission {
            Permission::ReadOnly => mm::map_shared_read_only(fd, len as usize),
            Permission::ReadWrite => mm::map_shared_read_write(fd, len as usize),
        }
        .map_err(|e| Error::sys("mmap", what(), e))?;
        match &self.iommu {
            Iommu::Type1 { container, .. } => {
                let flags = match permission {
                    Permission::ReadOnly => v::VFIO_DMA_MAP_FLAG_READ,
                    Permission::ReadWrite => v::VFIO_DMA_MAP_FLAG_READ | v::VFIO_DMA_MAP_FLAG_WRITE,
                };
                v::iommu_map_dma(container.as_fd(), &cpu, iova, flags)
                    .map_err(|e| Error::sys("VFIO_IOMMU_MAP_DMA", self.bdf.clone(), e))?;
            }
            Iommu::Iommufd { iommufd, ioas } => {
                let flags = iommufd::IOMMU_IOAS_MAP_FIXED_IOVA
                    | match permission {
                        Permission::ReadOnly => iommufd::IOMMU_IOAS_MAP_READABLE,
                        Permission::ReadWrite => {
                            iommufd::IOMMU_IOAS_MAP_READABLE | iommufd::IOMMU_IOAS_MAP_WRITEABLE
                        }
                    };
                iommufd::ioas_map(iommufd.as_fd(), *ioas, &cpu, iova, flags)
                    .map_err(|e| Error::sys("IOMMU_IOAS_MAP", self.bdf.clone(), e))?;
            }
        }
        Ok(DmaMapping {
            dev: self,
            _cpu: cpu,
            len,
            iova,
            permission,
            mapped: true,
        })
    }

    /// Maps a unibuf object at `iova` with the object's permission (read-only handles get a
    /// DMA-read-only mapping). The object must be memfd-backed (udmabuf or memfd: what
    /// reconciliation picks when a list has accessor kind `Vfio`); a heap or DRM dma-buf is
    /// refused, because its mapping is `VM_PFNMAP` and VFIO cannot pin it. The whole object
    /// (its size rounded up to pages) is mapped.
    pub fn map_object(&self, obj: &crate::object::Object, iova: u64) -> Result<DmaMapping<'_>> {
        let memfd = obj.memfd().ok_or_else(|| Error::Unavailable {
            what: format!("pinnable memory for VFIO in object {:?}", obj.name()),
            why: format!(
                "it comes from {} (a dma-buf mapping is VM_PFNMAP, which VFIO cannot pin); allocate it with a Vfio accessor list so it is memfd-backed",
                obj.backend().map(|b| b.to_string()).unwrap_or_else(|| "an import".into())
            ),
        })?;
        let page = rustix::param::page_size() as u64;
        let len = obj.size().div_ceil(page) * page;
        self.map_fd(memfd, len, iova, obj.permission())
    }

    fn unmap(&self, iova: u64, len: u64) -> Result<()> {
        match &self.iommu {
            Iommu::Type1 { container, .. } => {
                let done = v::iommu_unmap_dma(container.as_fd(), iova, len)
                    .map_err(|e| Error::sys("VFIO_IOMMU_UNMAP_DMA", self.bdf.clone(), e))?;
                if done != len {
                    return Err(Error::Device {
                        device: self.bdf.clone(),
                        what: format!("unmapped {done:#x} of {len:#x} bytes at {iova:#x}"),
                    });
                }
            }
            Iommu::Iommufd { iommufd, ioas } => {
                iommufd::ioas_unmap(iommufd.as_fd(), *ioas, iova, len)
                    .map_err(|e| Error::sys("IOMMU_IOAS_UNMAP", self.bdf.clone(), e))?;
            }
        }
        Ok(())
    }

    /// The device fd.
    pub fn device_fd(&self) -> BorrowedFd<'_> {
        self.device.as_fd()
    }
}

/// A buffer mapped into a device's IOMMU domain; unmapped (IOMMU first, then the CPU mapping
/// used for the pin) on drop.
#[derive(Debug)]
pub struct DmaMapping<'d> {
    dev: &'d VfioDevice,
    /// The CPU mapping whose pages the IOMMU maps; dropped (unmapped) after the IOMMU mapping.
    _cpu: mm::MmapRaw,
    len: u64,
    iova: u64,
    permission: Permission,
    /// The IOMMU mapping is still in place.
    mapped: bool,
}

impl DmaMapping<'_> {
    /// The IOVA the device uses.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the mapping is empty (never: mappings are at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The DMA permission the device holds.
    pub fn permission(&self) -> Permission {
        self.permission
    }

    /// Unmaps now and reports an error (drop ignores it).
    pub fn unmap(mut self) -> Result<()> {
        self.mapped = false;
        self.dev.unmap(self.iova, self.len)
    }
}

impl Drop for DmaMapping<'_> {
    fn drop(&mut self) {
        if self.mapped {
            let _ = self.dev.unmap(self.iova, self.len);
        }
        // `_cpu` is unmapped after this, when the fields drop.
    }
}

/// QEMU's `edu` educational PCI device (1234:11e8): a 4 KiB internal buffer and a DMA engine.
///
/// BAR0 registers (from QEMU's `docs/specs/edu.rst`): 0x00 identification (`0xRRrr00ed`), 0x04
/// liveness check (reads back the inverse), 0x80 DMA source, 0x88 DMA destination, 0x90 DMA
/// count, 0x98 DMA command (bit 0 start, bit 1 direction: 0 RAM→device, 1 device→RAM, bit 2
/// raise an interrupt). The internal buffer is at device address 0x40000. The device's DMA mask is
/// 28 bits: IOVAs must lie below 256 MiB.
#[derive(Debug)]
pub struct Edu {
    dev: VfioDevice,
    bar0: Region,
}

/// PCI vendor id of `edu`.
pub const EDU_VENDOR: u16 = 0x1234;
/// PCI device id of `edu`.
pub const EDU_DEVICE: u16 = 0x11e8;
/// `edu`'s DMA addressing width.
pub const EDU_DMA_BITS: u32 = 28;
/// Device address of `edu`'s internal buffer.
pub const EDU_BUFFER_ADDR: u64 = 0x40000;
/// Size of `edu`'s internal buffer.
pub const EDU_BUFFER_SIZE: u64 = 4096;

const EDU_REG_ID: u64 = 0x00;
const EDU_REG_LIVENESS: u64 = 0x04;
const EDU_REG_DMA_SRC: u64 = 0x80;
const EDU_REG_DMA_DST: u64 = 0x88;
const EDU_REG_DMA_COUNT: u64 = 0x90;
const EDU_REG_DMA_CMD: u64 = 0x98;
const EDU_DMA_START: u64 = 1;
const EDU_DMA_TO_RAM: u64 = 2;

/// Direction of one `edu` DMA transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EduDirection {
    /// From RAM (an IOVA) into the device buffer.
    RamToDevice,
    /// From the device buffer into RAM (an IOVA).
    DeviceToRam,
}

impl Edu {
    /// Takes an opened device, checks it is an `edu`, enables bus mastering and limits IOVAs to
    /// its 28-bit DMA mask.
    pub fn new(mut dev: VfioDevice) -> Result<Edu> {
        let bar0 = dev.region(v::VFIO_PCI_BAR0_REGION_INDEX)?;
        if bar0.size < 0x100 {
            return Err(Error::Device {
                device: dev.bdf.clone(),
                what: format!("BAR0 is {:#x} bytes, too small for edu", bar0.size),
            });
        }
        dev.set_iova_limit(1 << EDU_DMA_BITS);
        let edu = Edu { dev, bar0 };
        let id = edu.read32(EDU_REG_ID)?;
        if id & 0xff != 0xed {
            return Err(Error::Device {
                device: edu.dev.bdf.clone(),
                what: format!("identification register reads {id:#x}, not an edu device"),
            });
        }
        edu.write32(EDU_REG_LIVENESS, 0x1234_5678)?;
        let live = edu.read32(EDU_REG_LIVENESS)?;
        if live != !0x1234_5678u32 {
            return Err(Error::Device {
                device: edu.dev.bdf.clone(),
                what: format!(
                    "liveness check read {live:#x}, expected {:#x}",
                    !0x1234_5678u32
                ),
            });
        }
        edu.dev.enable_bus_master()?;
        Ok(edu)
    }

    /// The VFIO device (to map buffers).
    pub fn device(&self) -> &VfioDevice {
        &self.dev
    }

    fn read32(&self, reg: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.dev.read_region(&self.bar0, reg, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn write32(&self, reg: u64, val: u32) -> Result<()> {
        self.dev.write_region(&self.bar0, reg, &val.to_le_bytes())
    }

    fn read64(&self, reg: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.dev.read_region(&self.bar0, reg, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write64(&self, reg: u64, val: u64) -> Result<()> {
        self.dev.write_region(&self.bar0, reg, &val.to_le_bytes())
    }

    /// Runs one DMA of `count` bytes between IOVA `iova` and the device buffer at `offset`, and
    /// waits (polling the command register) until the engine is idle again. The device does not
    /// report IOMMU faults: a transfer into a mapping it may not write completes with nothing
    /// written (the fault appears in the kernel log).
    pub fn dma(
        &self,
        dir: EduDirection,
        iova: u64,
        offset: u64,
        count: u64,
        timeout: Duration,
    ) -> Result<()> {
        if count == 0
            || offset
                .checked_add(count)
                .is_none_or(|e| e >= EDU_BUFFER_SIZE)
        {
            // QEMU's range check (`edu_check_range`) treats the end of the buffer as outside
            // it, and a transfer it refuses aborts the whole VM: keep transfers strictly inside.
            return Err(Error::InvalidArgument(format!(
                "edu DMA of {count} bytes at buffer offset {offset}: must end before byte {EDU_BUFFER_SIZE} of the device buffer"
            )));
        }
        if iova
            .checked_add(count)
            .is_none_or(|e| e > 1 << EDU_DMA_BITS)
        {
            return Err(Error::InvalidArgument(format!(
                "edu DMA at IOVA {iova:#x}: beyond the device's 28-bit DMA mask"
            )));
        }
        self.wait_idle(timeout)?;
        let dev_addr = EDU_BUFFER_ADDR + offset;
        let (src, dst, cmd) = match dir {
            EduDirection::RamToDevice => (iova, dev_addr, EDU_DMA_START),
            EduDirection::DeviceToRam => (dev_addr, iova, EDU_DMA_START | EDU_DMA_TO_RAM),
        };
        self.write64(EDU_REG_DMA_SRC, src)?;
        self.write64(EDU_REG_DMA_DST, dst)?;
        self.write64(EDU_REG_DMA_COUNT, count)?;
        self.write64(EDU_REG_DMA_CMD, cmd)?;
        self.wait_idle(timeout)
    }

    fn wait_idle(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.read64(EDU_REG_DMA_CMD)? & EDU_DMA_START == 0 {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(Error::Device {
                    device: self.dev.bdf.clone(),
                    what: format!("DMA still running after {timeout:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_is_checked() {
        assert!(check_bdf("0000:00:03.0").is_ok());
        assert!(check_bdf("0000:00:03").is_err());
        assert!(check_bdf("../../etc/pas").is_err());
        assert!(bind_vfio_pci("0000:00:0g.0").is_err());
    }

    #[test]
    fn constraints_reject_bad_mask() {
        assert!(VfioConstraints::probe("0000:00:03.0", 8).is_err());
    }
}
