//! The contract between reconciliation and the backends: what must be allocated.

use crate::attr::{BackendKind, Permission};

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
}

/// Everything a backend needs to allocate one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocRequest {
    /// Size in bytes (the reconciled buffer size; backends round up to pages).
    pub size: u64,
    /// Required base-address alignment in bytes (a power of two).
    pub alignment: u64,
    /// The permission the allocating handle holds (the highest any list required).
    pub permission: Permission,
    /// Some accessor needs CPU access.
    pub cpu_access: bool,
    /// CPU caching is wanted.
    pub cpu_cache: bool,
    /// What the memory must be.
    pub memory: MemoryRequirement,
    /// Name given to the buffer with `DMA_BUF_SET_NAME` (at most 31 bytes; longer is truncated).
    pub name: String,
}
