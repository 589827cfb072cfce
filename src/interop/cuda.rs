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
//!
//! Anything else is refused with what this GPU or driver lacks; nothing falls back silently.
//!
//! # GPU-resident memory ([`Vidmem`])
//!
//! `cuMemCreate` with a POSIX-fd shareable handle: the fd travels to other processes, which
//! import it with `cuMemImportFromShareableHandle` and map it with `cuMemSetAccess`. Read-only
//! there is applied by the importing process ([`VidmemMapping`] with
//! [`Permission::ReadOnly`] maps `PROT_READ`): the driver lets an importer ask for read-write, so
//! it protects against mistakes, not against a hostile importer. [`Vidmem::dma_buf`] exports the
//! memory as a real dma-buf (`cuMemGetHandleForAddressRange`) for importers that take dma-bufs.

use super::gpu::{GpuConstraints, GpuId};
use crate::attr::{AccessorKind, AttrList, Permission};
use crate::error::{Error, Result};
use crate::object::Object;
use crate::sys::mm::MmapRaw;
use cudarc::driver::sys as cu;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ffi::c_void;

/// The name of a CUDA result code (`cuGetErrorName`), or its number.
fn result_name(r: cu::CUresult) -> String {
    let mut p: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: cuGetErrorName writes a pointer to a static NUL-terminated string into `p` (or
    // fails and leaves it null); it needs no context.
    let ok = unsafe { cu::cuGetErrorName(r, &mut p) } == cu::CUresult::CUDA_SUCCESS;
    if ok && !p.is_null() {
        // SAFETY: on success `p` points to a static NUL-terminated string owned by the driver.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    } else {
        format!("CUresult {}", r as i32)
    }
}

/// A CUDA call's result as a [`Result`]: `Err(Error::Device)` naming the device, the call and the
/// driver's answer.
fn check(r: cu::CUresult, device: &str, call: &str) -> Result<()> {
    if r == cu::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(Error::Device {
            device: device.to_string(),
            what: format!("{call}: {}", result_name(r)),
        })
    }
}

/// What a CUDA device supports of the import paths, read from its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaCaps {
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// `CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED`: host memory can be registered.
    pub host_register: bool,
    /// `CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED`: and registered read-only.
    pub read_only_host_register: bool,
    /// `CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED`: device memory can be exported as a dma-buf.
    pub dma_buf: bool,
    /// `CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED`: `cuMemCreate` memory
    /// can be shared by fd.
    pub posix_fd_handles: bool,
    /// `CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED`: `cuMemCreate`/`cuMemMap`.
    pub virtual_memory: bool,
    /// `CU_DEVICE_ATTRIBUTE_GENERIC_COMPRESSION_SUPPORTED`.
    pub compression: bool,
    /// `CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT`: base alignment of texture memory, in bytes.
    pub texture_alignment: u64,
    /// `CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT`: pitch alignment of pitched 2D textures.
    pub texture_pitch_alignment: u32,
    /// Device memory in bytes (`cuDeviceTotalMem`).
    pub total_memory: u64,
}

/// An open CUDA device with its primary context retained (and made current on the calling thread
/// by every call that needs it).
pub struct Cuda {
    dev: cu::CUdevice,
    ctx: cu::CUcontext,
    ordinal: i32,
    label: String,
    uuid: GpuId,
    caps: CudaCaps,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cuda")
            .field("device", &self.label)
            .field("uuid", &self.uuid)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

// SAFETY: the primary context is process-wide and may be made current on any thread; every call
// that uses it sets it current first (`make_current`). The handles are plain driver tokens.
unsafe impl Send for Cuda {}
// SAFETY: as above; the driver API is thread-safe for calls made with a current context.
unsafe impl Sync for Cuda {}

impl Cuda {
    /// Whether the CUDA driver library can be loaded here; `Err` says why not.
    pub fn available() -> std::result::Result<(), String> {
        // SAFETY: only tries to dlopen libcuda; no CUDA call is made.
        if unsafe { cu::is_culib_present() } {
            Ok(())
        } else {
            Err("libcuda.so.1 (the NVIDIA driver's CUDA library) cannot be loaded".into())
        }
    }

    /// Opens CUDA device `ordinal`: `cuInit`, the device, its primary context, UUID and
    /// capabilities. [`Error::Unavailable`] where there is no CUDA driver or no such device.
    pub fn open(ordinal: usize) -> Result<Cuda> {
        Cuda::available().map_err(|why| Error::Unavailable {
            what: "a CUDA device".into(),
            why,
        })?;
        let ord = i32::try_from(ordinal)
            .map_err(|_| Error::InvalidArgument(format!("CUDA device {ordinal}")))?;
        let label0 = format!("CUDA device {ordinal}");
        // SAFETY: cuInit takes flags 0 and may be called repeatedly.
        let r = unsafe { cu::cuInit(0) };
        if r != cu::CUresult::CUDA_SUCCESS {
            return Err(Error::Unavailable {
                what: "a CUDA device".into(),
                why: format!("cuInit: {}", result_name(r)),
            });
        }
        let mut count = 0;
        // SAFETY: writes the device count into `count`.
        let r = unsafe { cu::cuDeviceGetCount(&mut count) };
        check(r, &label0, "cuDeviceGetCount")?;
        if ord >= count {
            return Err(Error::Unavailable {
                what: label0,
                why: format!("the driver reports {count} CUDA device(s)"),
            });
        }
        let mut dev = 0;
        // SAFETY: writes the device handle of ordinal `ord` (< count) into `dev`.
        let r = unsafe { cu::cuDeviceGet(&mut dev, ord) };
        check(r, &label0, "cuDeviceGet")?;
        let mut name = [0 as std::ffi::c_char; 256];
        // SAFETY: writes at most 256 bytes, NUL-terminated, into `name`.
        let r = unsafe { cu::cuDeviceGetName(name.as_mut_ptr(), name.len() as i32, dev) };
        check(r, &label0, "cuDeviceGetName")?;
        // SAFETY: `name` is NUL-terminated (the driver terminates it; the array is zeroed).
        let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let label = format!("CUDA device {ordinal} ({name})");
        let mut uuid = cu::CUuuid { bytes: [0; 16] };
        // SAFETY: writes the 16-byte UUID into `uuid`.
        let r = unsafe { cu::cuDeviceGetUuid_v2(&mut uuid, dev) };
        check(r, &label, "cuDeviceGetUuid")?;
        let uuid = GpuId(uuid.bytes.map(|b| b as u8));
        let mut ctx: cu::CUcontext = std::ptr::null_mut();
        // SAFETY: retains the device's primary context (released in Drop) and writes it to `ctx`.
        let r = unsafe { cu::cuDevicePrimaryCtxRetain(&mut ctx, dev) };
        check(r, &label, "cuDevicePrimaryCtxRetain")?;
        let mut cuda = Cuda {
            dev,
            ctx,
            ordinal: ord,
            label,
            uuid,
            caps: CudaCaps {
                compute_capability: (0, 0),
                host_register: false,
                read_only_host_register: false,
                dma_buf: false,
                posix_fd_handles: false,
                virtual_memory: false,
                compression: false,
                texture_alignment: 0,
                texture_pitch_alignment: 0,
                total_memory: 0,
            },
        };
        cuda.caps = cuda.read_caps()?;
        Ok(cuda)
    }

    fn attr(&self, a: cu::CUdevice_attribute) -> Result<i32> {
        let mut v = 0;
        // SAFETY: writes the attribute's value into `v`; `self.dev` is a valid device.
        let r = unsafe { cu::cuDeviceGetAttribute(&mut v, a, self.dev) };
        check(r, &self.label, "cuDeviceGetAttribute")?;
        Ok(v)
    }

    fn read_caps(&self) -> Result<CudaCaps> {
        use cu::CUdevice_attribute as A;
        let mut total = 0usize;
        // SAFETY: writes the device's memory size into `total`.
        let r = unsafe { cu::cuDeviceTotalMem_v2(&mut total, self.dev) };
        check(r, &self.label, "cuDeviceTotalMem")?;
        Ok(CudaCaps {
            compute_capability: (
                self.attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
                self.attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
            ),
            host_register: self.attr(A::CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED)? != 0,
            read_only_host_register: self
                .attr(A::CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED)?
                != 0,
            dma_buf: self.attr(A::CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED)? != 0,
            posix_fd_handles: self
                .attr(A::CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED)?
                != 0,
            virtual_memory: self
                .attr(A::CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED)?
                != 0,
            compression: self.attr(A::CU_DEVICE_ATTRIBUTE_GENERIC_COMPRESSION_SUPPORTED)? != 0,
            texture_alignment: self.attr(A::CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT)?.max(1) as u64,
            texture_pitch_alignment: self
                .attr(A::CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT)?
                .max(1) as u32,
            total_memory: total as u64,
        })
    }

    /// Makes the primary context current on the calling thread.
    pub fn make_current(&self) -> Result<()> {
        // SAFETY: `self.ctx` is the retained primary context, valid until Drop.
        let r = unsafe { cu::cuCtxSetCurrent(self.ctx) };
        check(r, &self.label, "cuCtxSetCurrent")
    }

    /// Waits for all work on the context (`cuCtxSynchronize`): where a kernel faulted, this is
    /// where the fault is reported (and the context is unusable after it).
    pub fn synchronize(&self) -> Result<()> {
        self.make_current()?;
        // SAFETY: the context is current on this thread.
        let r = unsafe { cu::cuCtxSynchronize() };
        check(r, &self.label, "cuCtxSynchronize")
    }

    /// The device's UUID: the same 16 bytes as Vulkan's `deviceUUID` and `nvidia-smi -L`.
    pub fn gpu_id(&self) -> GpuId {
        self.uuid
    }

    /// `CUDA device N (name)`, as errors name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> i32 {
        self.ordinal
    }

    /// What the device supports.
    pub fn caps(&self) -> &CudaCaps {
        &self.caps
    }

    /// The constraints this GPU puts on a buffer it imports: its UUID, the base alignment
    /// (`TEXTURE_ALIGNMENT`, at least a page for host registration) and the pitch alignment of
    /// linear 2D images (`TEXTURE_PITCH_ALIGNMENT`).
    pub fn constraints(&self) -> Result<GpuConstraints> {
        let page = rustix::param::page_size() as u64;
        GpuConstraints::new(
            self.uuid,
            self.caps.texture_alignment.max(page),
            self.caps.texture_pitch_alignment,
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

impl Drop for Cuda {
    fn drop(&mut self) {
        // SAFETY: releases the primary context retained in `open`, once.
        let _ = unsafe { cu::cuDevicePrimaryCtxRelease_v2(self.dev) };
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
}

impl std::fmt::Debug for CudaBuffer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBuffer")
            .field("device", &self.cuda.label)
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
        if !cuda.caps.host_register {
            return Err(Error::Unavailable {
                what: format!("registering {what} with {}", cuda.label),
                why: "the device reports HOST_REGISTER_SUPPORTED = 0".into(),
            });
        }
        if read_only && !cuda.caps.read_only_host_register {
            return Err(Error::Unavailable {
                what: format!("a read-only registration of {what} with {}", cuda.label),
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
        check(r, &cuda.label, "cuMemHostRegister")?;
        let mut dptr: cu::CUdeviceptr = 0;
        // SAFETY: asks for the device address of the registration just made.
        let r = unsafe { cu::cuMemHostGetDevicePointer_v2(&mut dptr, host_ptr(&mapping), 0) };
        if let Err(e) = check(r, &cuda.label, "cuMemHostGetDevicePointer") {
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
        if !cuda.caps.dma_buf {
            return Err(Error::Unavailable {
                what,
                why: format!(
                    "{} reports DMA_BUF_SUPPORTED = 0 and the buffer has no memfd to register",
                    cuda.label
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
                    cuda.label,
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
        if let Err(e) = check(r, &cuda.label, "cuExternalMemoryGetMappedBuffer") {
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
        })
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

/// GPU-resident memory from `cuMemCreate` with a POSIX-fd shareable handle, mapped read-write in
/// the allocating process.
pub struct Vidmem<'a> {
    cuda: &'a Cuda,
    handle: cu::CUmemGenericAllocationHandle,
    fd: OwnedFd,
    mapping: DeviceRange,
}

impl std::fmt::Debug for Vidmem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vidmem")
            .field("device", &self.cuda.label)
            .field("fd", &self.fd)
            .field("size", &self.mapping.size)
            .finish()
    }
}

/// A reserved and mapped device address range (unmapped and freed on drop).
struct DeviceRange {
    ptr: cu::CUdeviceptr,
    size: usize,
}

impl Drop for DeviceRange {
    fn drop(&mut self) {
        // SAFETY: unmaps and frees the range reserved and mapped by `map_range`, once.
        unsafe {
            let _ = cu::cuMemUnmap(self.ptr, self.size);
            let _ = cu::cuMemAddressFree(self.ptr, self.size);
        }
    }
}

fn device_location(cuda: &Cuda) -> cu::CUmemLocation {
    cu::CUmemLocation {
        type_: cu::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id: cuda.ordinal,
    }
}

fn vidmem_prop(cuda: &Cuda) -> cu::CUmemAllocationProp {
    // SAFETY: plain data; zero is the documented default of every other field.
    let mut prop: cu::CUmemAllocationProp = unsafe { std::mem::zeroed() };
    prop.type_ = cu::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.requestedHandleTypes =
        cu::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    prop.location = device_location(cuda);
    prop
}

/// Reserves an address range for `size` bytes of `handle`, maps it and sets `permission` for
/// this device.
fn map_range(
    cuda: &Cuda,
    handle: cu::CUmemGenericAllocationHandle,
    size: usize,
    permission: Permission,
) -> Result<DeviceRange> {
    let mut ptr: cu::CUdeviceptr = 0;
    // SAFETY: reserves a fresh range of `size` bytes (alignment 0: the granularity).
    let r = unsafe { cu::cuMemAddressReserve(&mut ptr, size, 0, 0, 0) };
    check(r, &cuda.label, "cuMemAddressReserve")?;
    // SAFETY: maps the whole allocation `handle` (of `size` bytes) at the reserved range.
    let r = unsafe { cu::cuMemMap(ptr, size, 0, handle, 0) };
    if let Err(e) = check(r, &cuda.label, "cuMemMap") {
        // SAFETY: frees the reservation above.
        let _ = unsafe { cu::cuMemAddressFree(ptr, size) };
        return Err(e);
    }
    let range = DeviceRange { ptr, size };
    let access = cu::CUmemAccessDesc {
        location: device_location(cuda),
        flags: match permission {
            Permission::ReadOnly => cu::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READ,
            Permission::ReadWrite => cu::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
        },
    };
    // SAFETY: sets access for the mapped range on this device (one descriptor).
    let r = unsafe { cu::cuMemSetAccess(ptr, size, &access, 1) };
    check(r, &cuda.label, "cuMemSetAccess")?;
    Ok(range)
}

impl<'a> Vidmem<'a> {
    /// The allocation granularity for GPU-resident shareable memory (sizes are rounded up to it).
    pub fn granularity(cuda: &Cuda) -> Result<usize> {
        let prop = vidmem_prop(cuda);
        let mut g = 0usize;
        // SAFETY: writes the granularity for `prop` into `g`.
        let r = unsafe {
            cu::cuMemGetAllocationGranularity(
                &mut g,
                &prop,
                cu::CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_RECOMMENDED,
            )
        };
        check(r, &cuda.label, "cuMemGetAllocationGranularity")?;
        Ok(g.max(1))
    }

    /// Allocates at least `size` bytes of device memory with a POSIX-fd handle (the `cuda-vidmem`
    /// backend), exports the fd and maps the memory read-write here.
    pub fn allocate(cuda: &'a Cuda, size: u64) -> Result<Vidmem<'a>> {
        if !(cuda.caps.virtual_memory && cuda.caps.posix_fd_handles) {
            return Err(Error::Unavailable {
                what: format!("GPU-resident shareable memory on {}", cuda.label),
                why: format!(
                    "VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED = {}, \
                     HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED = {}",
                    cuda.caps.virtual_memory as u8, cuda.caps.posix_fd_handles as u8
                ),
            });
        }
        cuda.make_current()?;
        let g = Vidmem::granularity(cuda)? as u64;
        let size = size
            .max(1)
            .checked_next_multiple_of(g)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| Error::InvalidArgument(format!("{size} bytes of GPU memory")))?;
        let prop = vidmem_prop(cuda);
        let mut handle: cu::CUmemGenericAllocationHandle = 0;
        // SAFETY: creates an allocation of `size` bytes (a multiple of the granularity).
        let r = unsafe { cu::cuMemCreate(&mut handle, size, &prop, 0) };
        check(r, &cuda.label, "cuMemCreate")?;
        let release = |e| {
            // SAFETY: releases the allocation handle created above.
            let _ = unsafe { cu::cuMemRelease(handle) };
            e
        };
        let mut raw: i32 = -1;
        // SAFETY: writes a new fd (owned by us) into `raw`.
        let r = unsafe {
            cu::cuMemExportToShareableHandle(
                (&mut raw as *mut i32).cast(),
                handle,
                cu::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                0,
            )
        };
        check(r, &cuda.label, "cuMemExportToShareableHandle").map_err(release)?;
        // SAFETY: the driver returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mapping = map_range(cuda, handle, size, Permission::ReadWrite).map_err(release)?;
        Ok(Vidmem {
            cuda,
            handle,
            fd,
            mapping,
        })
    }

    /// The shareable handle: send it over unibuf IPC; [`VidmemMapping::import`] takes it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The size in bytes (a multiple of the granularity).
    pub fn size(&self) -> usize {
        self.mapping.size
    }

    /// The device pointer (read-write) in this process.
    pub fn device_ptr(&self) -> u64 {
        self.mapping.ptr
    }

    /// Exports the memory as a dma-buf (`cuMemGetHandleForAddressRange(DMA_BUF_FD)`): a real
    /// dma-buf fd (its `exp_name` is `nv_dmabuf`) that outlives this process. It cannot be
    /// CPU-mapped (`mmap` fails with `ENOTSUPP`).
    pub fn dma_buf(&self) -> Result<OwnedFd> {
        if !self.cuda.caps.dma_buf {
            return Err(Error::Unavailable {
                what: format!("a dma-buf of GPU memory on {}", self.cuda.label),
                why: "the device reports DMA_BUF_SUPPORTED = 0".into(),
            });
        }
        self.cuda.make_current()?;
        let mut raw: i32 = -1;
        // SAFETY: writes a new dma-buf fd (owned by us) for the mapped range into `raw`.
        let r = unsafe {
            cu::cuMemGetHandleForAddressRange(
                (&mut raw as *mut i32).cast(),
                self.mapping.ptr,
                self.mapping.size,
                cu::CUmemRangeHandleType::CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD,
                0,
            )
        };
        check(
            r,
            &self.cuda.label,
            "cuMemGetHandleForAddressRange(DMA_BUF_FD)",
        )?;
        // SAFETY: the driver returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
}

impl Drop for Vidmem<'_> {
    fn drop(&mut self) {
        let _ = self.cuda.make_current();
        // SAFETY: releases the allocation handle created in `allocate`, once. The driver frees the
        // memory only when every mapping (ours: `mapping`'s Drop, which runs after this) and
        // every shareable handle (the fd, other processes' imports) is gone.
        let _ = unsafe { cu::cuMemRelease(self.handle) };
    }
}

/// GPU-resident memory imported from another process's [`Vidmem`] fd, mapped with a permission.
pub struct VidmemMapping<'a> {
    cuda: &'a Cuda,
    handle: cu::CUmemGenericAllocationHandle,
    mapping: DeviceRange,
    permission: Permission,
}

impl std::fmt::Debug for VidmemMapping<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VidmemMapping")
            .field("device", &self.cuda.label)
            .field("size", &self.mapping.size)
            .field("permission", &self.permission)
            .finish()
    }
}

impl<'a> VidmemMapping<'a> {
    /// Imports the shareable handle `fd` (`size` bytes, as the exporter allocated) and maps it
    /// with `permission`: `PROT_READ` for [`Permission::ReadOnly`], so a kernel's write faults in
    /// this process only. Read-only is this process's own choice: the driver would grant
    /// read-write to an importer that asked.
    pub fn import(
        cuda: &'a Cuda,
        fd: BorrowedFd<'_>,
        size: usize,
        permission: Permission,
    ) -> Result<VidmemMapping<'a>> {
        cuda.make_current()?;
        let mut handle: cu::CUmemGenericAllocationHandle = 0;
        // SAFETY: the POSIX-fd handle type takes the fd value itself as the pointer-sized handle;
        // the driver does not take ownership of it.
        let r = unsafe {
            cu::cuMemImportFromShareableHandle(
                &mut handle,
                fd.as_raw_fd() as usize as *mut c_void,
                cu::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            )
        };
        check(r, &cuda.label, "cuMemImportFromShareableHandle")?;
        let mapping = map_range(cuda, handle, size, permission).inspect_err(|_| {
            // SAFETY: releases the imported handle.
            let _ = unsafe { cu::cuMemRelease(handle) };
        })?;
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
}

impl Drop for VidmemMapping<'_> {
    fn drop(&mut self) {
        let _ = self.cuda.make_current();
        // SAFETY: releases the imported handle, once; `mapping`'s Drop unmaps the range after.
        let _ = unsafe { cu::cuMemRelease(self.handle) };
    }
}
