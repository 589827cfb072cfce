//! Small value types shared by attribute lists, reconciliation, backends and IPC. Their wire
//! codes (in attribute values and in IPC object headers) come from the `wire_enum!` tables here.

wire_enum!(
    /// Access permission of an accessor or of a handle to an object.
    ///
    /// Ordered: `ReadOnly < ReadWrite`, so the reconciled permission is the maximum of what the
    /// lists require. `from_name` accepts `read_only` for `read-only`.
    Permission (underscore_for_dash) {
        /// Read-only: no mutable CPU view, `PROT_READ` mappings, DMA-read-only IOMMU mappings.
        ReadOnly = 1, "read-only";
        /// Read-write.
        ReadWrite = 2, "read-write";
    }
);

impl Permission {
    /// Whether a handle with `self` may be reduced to (or is at least) `other`.
    pub fn allows(self, other: Permission) -> bool {
        self >= other
    }
}

wire_enum!(
    /// What kind of engine an accessor is. It decides what memory the buffer needs: a `Vfio`
    /// accessor needs memory it can pin (memfd-backed), and any accessor other than `Cpu` needs a
    /// dma-buf.
    AccessorKind {
        /// The CPU only.
        Cpu = 1, "cpu";
        /// A V4L2 capture or output device.
        Camera = 2, "camera";
        /// A DRM/KMS display.
        Display = 3, "display";
        /// A GPU (importing through Vulkan/EGL/CUDA).
        Gpu = 4, "gpu";
        /// A PCIe device driven through VFIO (pins memory through the IOMMU).
        Vfio = 5, "vfio";
        /// Some other device that imports dma-bufs.
        Device = 6, "device";
    }
);

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

    /// [`Self::maps_host_memory`] for a buffer that is (`in_vidmem`: the lists set
    /// `vidmem_gpu`) or is not GPU video memory: a GPU reaches video memory through its own
    /// mapping (the cuda-vidmem backend), not by registering host memory; VFIO pins host memory
    /// either way (and GPU video memory cannot be pinned: the backend refuses it).
    pub fn needs_host_memory(self, in_vidmem: bool) -> bool {
        match self {
            AccessorKind::Gpu => !in_vidmem,
            k => k.maps_host_memory(),
        }
    }
}

wire_enum!(
    /// A memory backend unibuf can allocate from. `ALL` is in the order of preference for a
    /// buffer with no special needs; `from_name` accepts `_` for `-` (`cma_heap`).
    BackendKind (underscore_for_dash) {
        /// The DMA-BUF system heap (`/dev/dma_heap/system`): scattered pages.
        SystemHeap = 1, "system-heap";
        /// A contiguous (CMA) DMA-BUF heap, whatever its name.
        CmaHeap = 2, "cma-heap";
        /// A memfd turned into a dma-buf by `/dev/udmabuf`; the memfd can be pinned by VFIO.
        Udmabuf = 3, "udmabuf";
        /// A DRM dumb buffer exported by PRIME (a KMS card or vgem).
        DrmDumb = 4, "drm-dumb";
        /// A plain memfd: CPU only, not a dma-buf.
        Memfd = 5, "memfd";
        /// GPU video memory from CUDA's `cuMemCreate` (feature `cuda`), for lists that set
        /// `vidmem_gpu`: the fd is the allocation's POSIX-fd shareable handle, not a dma-buf.
        CudaVidmem = 6, "cuda-vidmem";
    }
);

impl BackendKind {
    /// Whether buffers from this backend are dma-bufs (not a memfd, not a CUDA handle).
    pub fn is_dma_buf(self) -> bool {
        !matches!(self, BackendKind::Memfd | BackendKind::CudaVidmem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_codes_are_stable_and_round_trip() {
        // These numbers are part of the IPC wire format (attribute values and object headers).
        assert_eq!(Permission::ReadOnly.code(), 1);
        assert_eq!(Permission::ReadWrite.code(), 2);
        assert_eq!(AccessorKind::Cpu.code(), 1);
        assert_eq!(AccessorKind::Device.code(), 6);
        assert_eq!(BackendKind::SystemHeap.code(), 1);
        assert_eq!(BackendKind::Memfd.code(), 5);
        assert_eq!(BackendKind::CudaVidmem.code(), 6);
        for p in Permission::ALL {
            assert_eq!(Permission::from_code(p.code()), Some(p));
            assert_eq!(Permission::from_name(p.name()), Some(p));
        }
        for k in AccessorKind::ALL {
            assert_eq!(AccessorKind::from_code(k.code()), Some(k));
            assert_eq!(AccessorKind::from_name(&k.to_string()), Some(k));
        }
        for b in BackendKind::ALL {
            assert_eq!(BackendKind::from_code(b.code()), Some(b));
            assert_eq!(BackendKind::from_name(&b.to_string()), Some(b));
        }
        assert_eq!(Permission::from_code(0), None);
        assert_eq!(BackendKind::from_code(7), None);
        assert_eq!(
            Permission::from_name("read_only"),
            Some(Permission::ReadOnly)
        );
        assert_eq!(
            BackendKind::from_name("cma_heap"),
            Some(BackendKind::CmaHeap)
        );
        assert_eq!(AccessorKind::from_name("Cpu"), None);
    }
}
