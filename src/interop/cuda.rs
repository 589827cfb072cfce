//! CUDA accessors (feature `cuda`): a constraint provider filled from the device, the import of
//! unibuf objects into CUDA, and GPU-resident memory shared across processes.
//!
//! The driver library (`libcuda.so.1`) is opened at run time through cudarc's dynamic loading, so
//! a crate built with this feature runs on machines without CUDA: [`Cuda::open`] then answers
//! [`Error::Unavailable`] instead of failing to start.
//!
//! # Import paths ([`CudaBuffer::import`]), the counterpart of `cudaImportExternalMemory`
//!
//! | object | path | read-only handle |
//! | --- | --- | --- |
//! | memfd-backed (a memfd object, or a udmabuf with its memfd) | the object's memfd is mapped `MAP_SHARED` and registered with `cuMemHostRegister(DEVICEMAP)`; the GPU reads and writes host memory | mapped `PROT_READ` from the handle's `O_RDONLY` file and registered `CU_MEMHOSTREGISTER_READ_ONLY`: the GPU's MMU faults a write (`CUDA_ERROR_ILLEGAL_ADDRESS`, Xid 31) |
//! | any other dma-buf | `cuImportExternalMemory(CU_EXTERNAL_MEMORY_HANDLE_TYPE_DMABUF_FD)` + `cuExternalMemoryGetMappedBuffer`, where the device reports `CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED` and the driver accepts it (documented for Tegra) | refused: CUDA has no read-only flag for an external-memory mapping |
//! | a `cuda-vidmem` object (GPU-resident memory, allocated for a list that sets `vidmem_gpu`) | its POSIX-fd shareable handle imported (`cuMemImportFromShareableHandle`), mapped (`cuMemAddressReserve` + `cuMemMap`) and given access (`cuMemSetAccess`) in this process ([`VidmemMapping`]) | mapped `PROT_READ`: a kernel's write faults in this process only. **Applied by the importing process**: the driver grants `PROT_READWRITE` to any holder of the fd that asks, so this protects against mistakes, not against a hostile importer |
//!
//! Anything else is refused with what this GPU or driver lacks; nothing falls back silently.
//!
//! # GPU-resident memory (the `cuda-vidmem` backend)
//!
//! [`crate::object::Object::allocator`] on a list with `vidmem_gpu` allocates with `cuMemCreate`
//! on the GPU of that UUID ([`crate::backend::cuda`]); the object's fd is the allocation's POSIX-fd
//! shareable handle, an fd of the NVIDIA driver's control device (`/dev/nvidiactl`), not a
//! dma-buf: no size, no mmap, no CPU access. It travels over unibuf IPC like any object (wire fd
//! kind `cuda-vidmem`); [`CudaBuffer::import`] maps it. [`CudaBuffer::dma_buf`] (or
//! [`VidmemMapping::dma_buf`]) exports the memory as a real dma-buf
//! (`cuMemGetHandleForAddressRange`) for importers that take dma-bufs.

use super::gpu::GpuConstraints;
use crate::attr::{AccessorKind, AttrList, Permission};
use crate::backend::cuda::{self as backend_cuda, check, result_name, DeviceRange};
use crate::error::{Error, Result};
use crate::object::{FdKind, Object};
use crate::sys::mm::MmapRaw;
use cudarc::driver::sys as cu;
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ffi::c_void;

pub use crate::backend::cuda::{Cuda, CudaCaps};

impl Cuda {
    /// The constraints this GPU puts on a buffer it imports: its UUID, the base alignment
    /// (`TEXTURE_ALIGNMENT`, at least a page for host registration) and the pitch alignment of
    /// linear 2D images (`TEXTURE_PITCH_ALIGNMENT`).
    pub fn constraints(&self) -> Result<GpuConstraints> {
        let page = rustix::param::page_size() as u64;
        GpuConstraints::new(
            self.gpu_id(),
            self.caps().texture_alignment.max(page),
            self.caps().texture_pitch_alignment,
        )
    }

    /// Fills an accessor's list with this GPU's needs (the counterpart of filling an NvSciBuf
    /// list for CUDA: GPU id, alignment; the caller sets the buffer type, CPU access and
    /// permission).
    pub fn fill(&self, list: &mut AttrList) -> Result<()> {
        self.constraints()?.fill(list)
    }

    /// The accessor kind this provider fills.
    pub fn accessor_kind(&self) -> AccessorKind {
        AccessorKind::Gpu
    }
}

/// A shared mapping made for the GPU's registration (not a CPU access: no sync bracketing, and
/// unibuf never reads or writes through it): [`crate::sys::mm`]'s, unmapped on drop.
fn host_mapping(fd: BorrowedFd<'_>, len: usize, writable: bool, what: &str) -> Result<MmapRaw> {
    let m = if writable {
        crate::sys::mm::map_shared_read_write(fd, len)
    } else {
        crate::sys::mm::map_shared_read_only(fd, len)
    };
    m.map_err(|e| Error::sys("mmap", what, e))
}

/// The address of `m` as the driver API takes it.
fn host_ptr(m: &MmapRaw) -> *mut c_void {
    m.as_mut_ptr().cast()
}

/// How an object reached the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportPath {
    /// Its memfd mapped and registered with `cuMemHostRegister`; the device pointer addresses
    /// host memory. `read_only`: registered `CU_MEMHOSTREGISTER_READ_ONLY`.
    HostRegistered {
        /// Registered read-only (the GPU's MMU refuses writes).
        read_only: bool,
    },
    /// Imported with `cuImportExternalMemory(DMABUF_FD)`.
    ExternalDmaBuf,
    /// GPU-resident memory (a `cuda-vidmem` object): its shareable handle imported
    /// (`cuMemImportFromShareableHandle`), mapped, and access set by this process
    /// (`cuMemSetAccess`). `read_only`: mapped `PROT_READ`, which this process chose.
    Vidmem {
        /// Mapped `CU_MEM_ACCESS_FLAGS_PROT_READ`.
        read_only: bool,
    },
}

/// A unibuf object imported into CUDA: a device pointer valid while this value lives. The object
/// and the device outlive it (the borrows say so).
pub struct CudaBuffer<'a> {
    cuda: &'a Cuda,
    _obj: &'a Object,
    dptr: cu::CUdeviceptr,
    len: usize,
    path: ImportPath,
    applied: String,
    /// The registered mapping; the registration is removed in Drop before it is unmapped.
    mapping: Option<MmapRaw>,
    ext: Option<cu::CUexternalMemory>,
    /// The device mapping of a `cuda-vidmem` object.
    vidmem: Option<VidmemMapping<'a>>,
}

impl std::fmt::Debug for CudaBuffer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBuffer")
            .field("device", &self.cuda.label())
            .field("dptr", &format_args!("{:#x}", self.dptr))
            .field("len", &self.len)
            .field("path", &self.path)
            .field("applied", &self.applied)
            .finish()
    }
}

impl<'a> CudaBuffer<'a> {
    /// Imports `obj` into `cuda` (the counterpart of `cudaImportExternalMemory` +
    /// `cudaExternalMemoryGetMappedBuffer`), by the path the module documentation's table gives
    /// for the object; a read-only handle gives read-only GPU access or is refused.
    ///
    /// `gpu_cache` (the list's `EnableGpuCache`) is reported, not applied: CUDA has no per-buffer
    /// cache switch for registered host memory or imported external memory ([`Self::applied`]
    /// says so).
    pub fn import(cuda: &'a Cuda, obj: &'a Object) -> Result<CudaBuffer<'a>> {
        let len = usize::try_from(obj.size())
            .map_err(|_| Error::InvalidArgument("buffer larger than the address space".into()))?;
        cuda.make_current()?;
        let read_only = obj.permission() == Permission::ReadOnly;
        if obj.fd_kind() == FdKind::CudaVidmem {
            return CudaBuffer::import_vidmem(cuda, obj, len);
        }
        if let Some(memfd) = obj.memfd() {
            return CudaBuffer::register(cuda, obj, memfd, len, read_only);
        }
        if obj.is_dma_buf() {
            return CudaBuffer::import_dma_buf(cuda, obj, len, read_only);
        }
        Err(Error::Unavailable {
            what: format!("a CUDA import of {obj:?}"),
            why: "it is neither memfd-backed nor a dma-buf".into(),
        })
    }

    fn register(
        cuda: &'a Cuda,
        obj: &'a Object,
        memfd: BorrowedFd<'_>,
        len: usize,
        read_only: bool,
    ) -> Result<CudaBuffer<'a>> {
        let what = format!("the memfd of {:?}", obj.name());
        if !cuda.caps().host_register {
            return Err(Error::Unavailable {
                what: format!("registering {what} with {}", cuda.label()),
                why: "the device reports HOST_REGISTER_SUPPORTED = 0".into(),
            });
        }
        if read_only && !cuda.caps().read_only_host_register {
            return Err(Error::Unavailable {
                what: format!("a read-only registration of {what} with {}", cuda.label()),
                why: "the device reports READ_ONLY_HOST_REGISTER_SUPPORTED = 0, and a writable \
                      registration would not enforce the read-only handle"
                    .into(),
            });
        }
        let mapping = host_mapping(memfd, len, !read_only, &what)?;
        let mut flags = cu::CU_MEMHOSTREGISTER_DEVICEMAP;
        if read_only {
            flags |= cu::CU_MEMHOSTREGISTER_READ_ONLY;
        }
        // SAFETY: registers the `len` bytes of our own live mapping (page-aligned, whole pages);
        // it is unregistered in Drop before the mapping is unmapped.
        let r = unsafe { cu::cuMemHostRegister_v2(host_ptr(&mapping), len, flags) };
        check(r, cuda.label(), "cuMemHostRegister")?;
        let mut dptr: cu::CUdeviceptr = 0;
        // SAFETY: asks for the device address of the registration just made.
        let r = unsafe { cu::cuMemHostGetDevicePointer_v2(&mut dptr, host_ptr(&mapping), 0) };
        if let Err(e) = check(r, cuda.label(), "cuMemHostGetDevicePointer") {
            // SAFETY: undoes the registration above.
            let _ = unsafe { cu::cuMemHostUnregister(host_ptr(&mapping)) };
            return Err(e);
        }
        Ok(CudaBuffer {
            cuda,
            _obj: obj,
            dptr,
            len,
            path: ImportPath::HostRegistered { read_only },
            applied: format!(
                "cuMemHostRegister(DEVICEMAP{}) of a {} mapping; gpu_cache: not applicable \
                 (host memory is reached over the bus; CUDA has no per-buffer cache control)",
                if read_only { "|READ_ONLY" } else { "" },
                if read_only {
                    "PROT_READ"
                } else {
                    "PROT_READ|PROT_WRITE"
                },
            ),
            mapping: Some(mapping),
            ext: None,
            vidmem: None,
        })
    }

    fn import_dma_buf(
        cuda: &'a Cuda,
        obj: &'a Object,
        len: usize,
        read_only: bool,
    ) -> Result<CudaBuffer<'a>> {
        let what = format!("a CUDA import of dma-buf {:?}", obj.name());
        if read_only {
            return Err(Error::Unavailable {
                what,
                why: "CUDA maps external memory read-write only, so a read-only handle cannot \
                      be enforced on the GPU"
                    .into(),
            });
        }
        if !cuda.caps().dma_buf {
            return Err(Error::Unavailable {
                what,
                why: format!(
                    "{} reports DMA_BUF_SUPPORTED = 0 and the buffer has no memfd to register",
                    cuda.label()
                ),
            });
        }
        // cuImportExternalMemory takes ownership of the fd on success: give it a duplicate.
        let dup = rustix::io::fcntl_dupfd_cloexec(obj.fd(), 0)
            .map_err(|e| Error::sys("F_DUPFD_CLOEXEC", "dma-buf", e))?;
        // SAFETY: the descriptor is plain data; zeroed reserved fields are what the API expects.
        let mut desc: cu::CUDA_EXTERNAL_MEMORY_HANDLE_DESC = unsafe { std::mem::zeroed() };
        desc.type_ = cu::CUexternalMemoryHandleType::CU_EXTERNAL_MEMORY_HANDLE_TYPE_DMABUF_FD;
        desc.handle.fd = dup.as_raw_fd();
        desc.size = len as u64;
        let mut ext: cu::CUexternalMemory = std::ptr::null_mut();
        // SAFETY: `desc` describes our fd; on success the driver owns the fd (we forget `dup`).
        let r = unsafe { cu::cuImportExternalMemory(&mut ext, &desc) };
        if r != cu::CUresult::CUDA_SUCCESS {
            return Err(Error::Unavailable {
                what,
                why: format!(
                    "cuImportExternalMemory(DMABUF_FD) on {}: {}",
                    cuda.label(),
                    result_name(r)
                ),
            });
        }
        std::mem::forget(dup);
        // SAFETY: plain data, zeroed reserved fields.
        let mut bd: cu::CUDA_EXTERNAL_MEMORY_BUFFER_DESC = unsafe { std::mem::zeroed() };
        bd.offset = 0;
        bd.size = len as u64;
        let mut dptr: cu::CUdeviceptr = 0;
        // SAFETY: maps the whole imported range of `ext`.
        let r = unsafe { cu::cuExternalMemoryGetMappedBuffer(&mut dptr, ext, &bd) };
        if let Err(e) = check(r, cuda.label(), "cuExternalMemoryGetMappedBuffer") {
            // SAFETY: destroys the import made above.
            let _ = unsafe { cu::cuDestroyExternalMemory(ext) };
            return Err(e);
        }
        Ok(CudaBuffer {
            cuda,
            _obj: obj,
            dptr,
            len,
            path: ImportPath::ExternalDmaBuf,
            applied: "cuImportExternalMemory(DMABUF_FD) + cuExternalMemoryGetMappedBuffer; \
                      gpu_cache: the driver's default"
                .into(),
            mapping: None,
            ext: Some(ext),
            vidmem: None,
        })
    }

    /// A `cuda-vidmem` object: its POSIX-fd handle imported and mapped with the handle's
    /// permission ([`VidmemMapping`]): `PROT_READ` for a read-only handle, read-write otherwise.
    /// The mapping covers the object's size rounded up to the allocation granularity (the
    /// exporter allocated that much; the driver refuses a mapping past the allocation).
    fn import_vidmem(cuda: &'a Cuda, obj: &'a Object, len: usize) -> Result<CudaBuffer<'a>> {
        if let Some(g) = obj.list().vidmem_gpu() {
            if g != cuda.gpu_id() {
                return Err(Error::Unavailable {
                    what: format!("a CUDA import of the video memory of GPU {g}"),
                    why: format!("{} is GPU {}", cuda.label(), cuda.gpu_id()),
                });
            }
        }
        let gran = cuda.vidmem_granularity()?;
        let map_len = len
            .checked_next_multiple_of(gran)
            .ok_or_else(|| Error::InvalidArgument(format!("{len} bytes of GPU memory")))?;
        let permission = obj.permission();
        let m = VidmemMapping::import(cuda, obj.fd(), map_len, permission)?;
        let read_only = permission == Permission::ReadOnly;
        Ok(CudaBuffer {
            cuda,
            _obj: obj,
            dptr: m.device_ptr(),
            len,
            path: ImportPath::Vidmem { read_only },
            applied: format!(
                "cuMemImportFromShareableHandle + cuMemMap of {map_len} bytes + \
                 cuMemSetAccess({}), applied by this process (the driver would grant \
                 read-write to an importer that asked); gpu_cache: the driver's default for \
                 device memory",
                if read_only {
                    "PROT_READ"
                } else {
                    "PROT_READWRITE"
                }
            ),
            mapping: None,
            ext: None,
            vidmem: Some(m),
        })
    }

    /// The buffer as a dma-buf, for importers that take dma-bufs: for a `cuda-vidmem` object,
    /// [`VidmemMapping::dma_buf`] of its mapping here; other objects are dma-bufs or memfds
    /// already ([`Object::fd`]).
    pub fn dma_buf(&self) -> Result<OwnedFd> {
        match &self.vidmem {
            Some(m) => m.dma_buf(),
            None => Err(Error::Unavailable {
                what: format!("a dma-buf view of {:?}", self.path),
                why: "only a cuda-vidmem object needs one: the object's own fd is what to share"
                    .into(),
            }),
        }
    }

    /// The device pointer of the buffer's first byte.
    pub fn device_ptr(&self) -> u64 {
        self.dptr
    }

    /// The imported length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was imported (never: objects are at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How the object reached the GPU.
    pub fn path(&self) -> ImportPath {
        self.path
    }

    /// What was applied (flags, protections, cache), in words.
    pub fn applied(&self) -> &str {
        &self.applied
    }
}

impl Drop for CudaBuffer<'_> {
    fn drop(&mut self) {
        let _ = self.cuda.make_current();
        if let Some(m) = &self.mapping {
            // SAFETY: removes the registration made in `register`, before the mapping goes.
            let _ = unsafe { cu::cuMemHostUnregister(host_ptr(m)) };
        }
        if let Some(ext) = self.ext.take() {
            // SAFETY: the mapped buffer is freed and the import destroyed, once each.
            unsafe {
                let _ = cu::cuMemFree_v2(self.dptr);
                let _ = cu::cuDestroyExternalMemory(ext);
            }
        }
    }
}

/// GPU-resident memory (a `cuda-vidmem` object's allocation) mapped in this process from its
/// POSIX-fd shareable handle, with a permission. [`CudaBuffer::import`] makes one for a
/// `cuda-vidmem` object; this is the same for an fd that came another way.
pub struct VidmemMapping<'a> {
    cuda: &'a Cuda,
    handle: cu::CUmemGenericAllocationHandle,
    mapping: DeviceRange,
    permission: Permission,
}

impl std::fmt::Debug for VidmemMapping<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VidmemMapping")
            .field("device", &self.cuda.label())
            .field("size", &self.mapping.size)
            .field("permission", &self.permission)
            .finish()
    }
}

impl<'a> VidmemMapping<'a> {
    /// Imports the shareable handle `fd` (`cuMemImportFromShareableHandle`) and maps `size`
    /// bytes of it (a multiple of [`Cuda::vidmem_granularity`], at most what was allocated) with
    /// `permission` (`cuMemSetAccess`): `PROT_READ` for [`Permission::ReadOnly`], so a kernel's
    /// write faults in this process only. Read-only is this process's own choice: the driver
    /// would grant read-write to an importer that asked.
    pub fn import(
        cuda: &'a Cuda,
        fd: BorrowedFd<'_>,
        size: usize,
        permission: Permission,
    ) -> Result<VidmemMapping<'a>> {
        let handle = backend_cuda::import_shareable(cuda, fd)?;
        let mapping = backend_cuda::map_range(cuda, handle, size, permission)
            .inspect_err(|_| backend_cuda::release(cuda, handle))?;
        Ok(VidmemMapping {
            cuda,
            handle,
            mapping,
            permission,
        })
    }

    /// The device pointer in this process.
    pub fn device_ptr(&self) -> u64 {
        self.mapping.ptr
    }

    /// The mapped size.
    pub fn size(&self) -> usize {
        self.mapping.size
    }

    /// The permission this process mapped it with.
    pub fn permission(&self) -> Permission {
        self.permission
    }

    /// The memory as a dma-buf (`cuMemGetHandleForAddressRange(DMA_BUF_FD)` of this mapping),
    /// for importers that take dma-bufs: a real dma-buf fd (its `exp_name` is `nv_dmabuf`) that
    /// outlives this mapping and this process. It cannot be CPU-mapped (`mmap` fails with
    /// `ENOTSUPP`; [`crate::object::Object::import`] gives an object without CPU access), and
    /// its importers get read-write access whatever this mapping's permission.
    pub fn dma_buf(&self) -> Result<OwnedFd> {
        backend_cuda::range_dma_buf(self.cuda, &self.mapping)
    }
}

impl Drop for VidmemMapping<'_> {
    fn drop(&mut self) {
        // Releases the imported handle, once; `mapping`'s Drop unmaps the range after.
        backend_cuda::release(self.cuda, self.handle);
    }
}
