//! What the reconciled accessors need of the memory itself: the contract between
//! reconciliation (which computes it) and the backends (which serve it).

use super::{BackendKind, GpuId};

/// What the reconciled accessors need of the memory itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryRequirement {
    /// Some accessor needs physically contiguous memory (a device without an IOMMU).
    pub contiguous: bool,
    /// Some accessor pins the memory through VFIO; a heap dma-buf's own mapping cannot be pinned
    /// (it is `VM_PFNMAP`), so the buffer must be memfd-backed (udmabuf).
    pub pinnable: bool,
    /// Some accessor imports the buffer as a dma-buf (a camera, display, GPU or unspecified
    /// device), so the buffer must be a dma-buf. CPU and VFIO accessors map memory and do not
    /// count: CPU- and VFIO-only lists may use a plain memfd where no udmabuf exists.
    pub device_access: bool,
    /// The backend the lists asked for, if any (a hint: honored when compatible).
    pub preferred: Option<BackendKind>,
    /// The GPU whose video memory the buffer must be allocated in (`vidmem_gpu`, NvSciBuf
    /// `VidMem_GpuId`); `None`: host memory.
    pub vidmem: Option<GpuId>,
}
