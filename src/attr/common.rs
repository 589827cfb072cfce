//! Small value types shared by attribute lists, reconciliation, backends and IPC.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Access permission of an accessor or of a handle to an object.
///
/// Ordered: `ReadOnly < ReadWrite`, so the reconciled permission is the maximum of what the lists
/// require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read-only: no mutable CPU view, `PROT_READ` mappings, DMA-read-only IOMMU mappings.
    ReadOnly,
    /// Read-write.
    ReadWrite,
}

impl Permission {
    /// Whether a handle with `self` may be reduced to (or is at least) `other`.
    pub fn allows(self, other: Permission) -> bool {
        self >= other
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::ReadOnly => "read-only",
            Permission::ReadWrite => "read-write",
        })
    }
}

/// What kind of engine an accessor is. It decides what memory the buffer needs: a `Vfio` accessor
/// needs memory it can pin (memfd-backed), and any accessor other than `Cpu` needs a dma-buf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessorKind {
    /// The CPU only.
    Cpu,
    /// A V4L2 capture or output device.
    Camera,
    /// A DRM/KMS display.
    Display,
    /// A GPU (importing through Vulkan/EGL/CUDA).
    Gpu,
    /// A PCIe device driven through VFIO (pins memory through the IOMMU).
    Vfio,
    /// Some other device that imports dma-bufs.
    Device,
}

impl AccessorKind {
    /// Whether this accessor is a device (anything but the CPU).
    pub fn is_device(self) -> bool {
        self != AccessorKind::Cpu
    }

    /// Whether this accessor imports the buffer as a dma-buf fd (a camera, a display, another
    /// device). CPU, VFIO and GPU accessors do not need one: VFIO type1 and iommufd map the
    /// process's own memory (a memfd mapping), and a GPU reaches memfd-backed memory by
    /// registering its mapping (CUDA's `cuMemHostRegister`, Vulkan's
    /// `VK_EXT_external_memory_host`); a GPU imports a dma-buf only where its driver can
    /// (`VK_EXT_external_memory_dma_buf`, CUDA's `DMABUF_FD` on Tegra), and udmabuf serves both.
    pub fn imports_dma_buf(self) -> bool {
        !matches!(
            self,
            AccessorKind::Cpu | AccessorKind::Vfio | AccessorKind::Gpu
        )
    }

    /// Whether this accessor maps or registers the process's memory, so the buffer must be
    /// memfd-backed (a memfd, or a udmabuf with its memfd): a heap dma-buf's own mapping is
    /// `VM_PFNMAP` and can be neither pinned by VFIO nor registered with CUDA.
    pub fn maps_host_memory(self) -> bool {
        matches!(self, AccessorKind::Vfio | AccessorKind::Gpu)
    }
}

impl fmt::Display for AccessorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessorKind::Cpu => "cpu",
            AccessorKind::Camera => "camera",
            AccessorKind::Display => "display",
            AccessorKind::Gpu => "gpu",
            AccessorKind::Vfio => "vfio",
            AccessorKind::Device => "device",
        })
    }
}

/// A memory backend unibuf can allocate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The DMA-BUF system heap (`/dev/dma_heap/system`): scattered pages.
    SystemHeap,
    /// A contiguous (CMA) DMA-BUF heap, whatever its name.
    CmaHeap,
    /// A memfd turned into a dma-buf by `/dev/udmabuf`; the memfd can be pinned by VFIO.
    Udmabuf,
    /// A DRM dumb buffer exported by PRIME (a KMS card or vgem).
    DrmDumb,
    /// A plain memfd: CPU only, not a dma-buf.
    Memfd,
}

impl BackendKind {
    /// All backends, in the order of preference for a buffer with no special needs.
    pub const ALL: [BackendKind; 5] = [
        BackendKind::SystemHeap,
        BackendKind::CmaHeap,
        BackendKind::Udmabuf,
        BackendKind::DrmDumb,
        BackendKind::Memfd,
    ];

    /// Whether buffers from this backend are dma-bufs.
    pub fn is_dma_buf(self) -> bool {
        self != BackendKind::Memfd
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::SystemHeap => "system-heap",
            BackendKind::CmaHeap => "cma-heap",
            BackendKind::Udmabuf => "udmabuf",
            BackendKind::DrmDumb => "drm-dumb",
            BackendKind::Memfd => "memfd",
        })
    }
}

impl AccessorKind {
    /// Every kind.
    pub const ALL: [AccessorKind; 6] = [
        AccessorKind::Cpu,
        AccessorKind::Camera,
        AccessorKind::Display,
        AccessorKind::Gpu,
        AccessorKind::Vfio,
        AccessorKind::Device,
    ];

    /// Stable wire code (`Cpu` = 1 ... `Device` = 6).
    pub fn code(self) -> u32 {
        match self {
            AccessorKind::Cpu => 1,
            AccessorKind::Camera => 2,
            AccessorKind::Display => 3,
            AccessorKind::Gpu => 4,
            AccessorKind::Vfio => 5,
            AccessorKind::Device => 6,
        }
    }

    /// The kind with this wire code.
    pub fn from_code(c: u32) -> Option<AccessorKind> {
        AccessorKind::ALL.into_iter().find(|k| k.code() == c)
    }

    /// The kind with this name (as printed by `Display`).
    pub fn from_name(s: &str) -> Option<AccessorKind> {
        AccessorKind::ALL.into_iter().find(|k| k.to_string() == s)
    }
}

impl BackendKind {
    /// Stable wire code (`SystemHeap` = 1 ... `Memfd` = 5).
    pub fn code(self) -> u32 {
        match self {
            BackendKind::SystemHeap => 1,
            BackendKind::CmaHeap => 2,
            BackendKind::Udmabuf => 3,
            BackendKind::DrmDumb => 4,
            BackendKind::Memfd => 5,
        }
    }

    /// The backend with this wire code.
    pub fn from_code(c: u32) -> Option<BackendKind> {
        BackendKind::ALL.into_iter().find(|k| k.code() == c)
    }

    /// The backend with this name (as printed by `Display`, e.g. `cma-heap`; `_` accepted for `-`).
    pub fn from_name(s: &str) -> Option<BackendKind> {
        let s = s.replace('_', "-");
        BackendKind::ALL.into_iter().find(|k| k.to_string() == s)
    }
}

impl Permission {
    /// The permission with this name (`read_only`/`read-only`, `read_write`/`read-write`).
    pub fn from_name(s: &str) -> Option<Permission> {
        match s.replace('_', "-").as_str() {
            "read-only" => Some(Permission::ReadOnly),
            "read-write" => Some(Permission::ReadWrite),
            _ => None,
        }
    }
}
