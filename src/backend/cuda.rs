//! The CUDA driver API (feature `cuda`) as unibuf uses it: the device ([`Cuda`]), and the calls of
//! the `cuda-vidmem` backend, which allocates GPU-resident memory (`cuMemCreate` with a POSIX-fd
//! shareable handle) for lists that set `vidmem_gpu`.
//!
//! The backend allocates through this module and [`crate::interop::cuda`] (the provider and
//! importer) builds on it, adding only the calls of its own import paths (host registration,
//! external memory): each driver call is made in one place. The driver library (`libcuda.so.1`) is opened at run time through cudarc's dynamic
//! loading, so a crate built with the feature runs on machines without CUDA: [`Cuda::open`] and
//! the backend answer [`Error::Unavailable`] there instead of failing to start.
//!
//! CUDA must not be initialised before a `fork` whose child uses it: choosing or allocating for
//! a `vidmem_gpu` list calls `cuInit` in the calling process.

use crate::attr::{GpuId, Permission};
use crate::error::{Error, Result};
use cudarc::driver::sys as cu;
use rustix::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// The name of a CUDA result code (`cuGetErrorName`), or its number.
pub(crate) fn result_name(r: cu::CUresult) -> String {
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
pub(crate) fn check(r: cu::CUresult, device: &str, call: &str) -> Result<()> {
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
        let ord = i32::try_from(ordinal)
            .map_err(|_| Error::InvalidArgument(format!("CUDA device {ordinal}")))?;
        let label0 = format!("CUDA device {ordinal}");
        let count = init_and_count()?;
        if ord >= count {
            return Err(Error::Unavailable {
                what: label0,
                why: format!("the driver reports {count} CUDA device(s)"),
            });
        }
        let (dev, name, uuid) = device(ord)?;
        let label = format!("CUDA device {ordinal} ({name})");
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
}

impl Drop for Cuda {
    fn drop(&mut self) {
        // SAFETY: releases the primary context retained in `open`, once.
        let _ = unsafe { cu::cuDevicePrimaryCtxRelease_v2(self.dev) };
    }
}

/// Loads the driver and initialises it (`cuInit`); the number of devices it reports.
fn init_and_count() -> Result<i32> {
    Cuda::available().map_err(|why| Error::Unavailable {
        what: "a CUDA device".into(),
        why,
    })?;
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
    check(r, "CUDA", "cuDeviceGetCount")?;
    Ok(count)
}

/// Device `ord` (below the count `init_and_count` gave): its handle, name and UUID. Makes no
/// context.
fn device(ord: i32) -> Result<(cu::CUdevice, String, GpuId)> {
    let label0 = format!("CUDA device {ord}");
    let mut dev = 0;
    // SAFETY: writes the device handle of ordinal `ord` into `dev` (an error for a bad ordinal).
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
    let mut uuid = cu::CUuuid { bytes: [0; 16] };
    // SAFETY: writes the 16-byte UUID into `uuid`.
    let r = unsafe { cu::cuDeviceGetUuid_v2(&mut uuid, dev) };
    check(r, &label0, "cuDeviceGetUuid")?;
    Ok((dev, name, GpuId(uuid.bytes.map(|b| b as u8))))
}

/// The ordinal and label (`CUDA device N (name)`) of the device whose UUID is `gpu`, without
/// making a context. [`Error::Unavailable`] naming the devices there are when none has it, or
/// why CUDA cannot be reached at all.
pub(crate) fn find_device(gpu: GpuId) -> Result<(usize, String)> {
    let count = init_and_count().map_err(|e| match e {
        Error::Unavailable { why, .. } => Error::Unavailable {
            what: format!("GPU {gpu} (vidmem_gpu) for the cuda-vidmem backend"),
            why,
        },
        e => e,
    })?;
    let mut seen = Vec::new();
    for ord in 0..count {
        let (_, name, uuid) = device(ord)?;
        if uuid == gpu {
            return Ok((ord as usize, format!("CUDA device {ord} ({name})")));
        }
        seen.push(format!("{ord}: {name} {uuid}"));
    }
    Err(Error::Unavailable {
        what: format!("GPU {gpu} (vidmem_gpu) for the cuda-vidmem backend"),
        why: format!(
            "no CUDA device here has that UUID ({})",
            if seen.is_empty() {
                "the driver reports no device".to_string()
            } else {
                seen.join("; ")
            }
        ),
    })
}

/// The devices the backend allocated from, kept open (primary context retained) for the life of
/// the process: every allocation of one GPU shares one.
static OPENED: Mutex<Vec<Arc<Cuda>>> = Mutex::new(Vec::new());

/// The open device whose UUID is `gpu` (opened on first use).
fn device_for(gpu: GpuId) -> Result<Arc<Cuda>> {
    let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = opened.iter().find(|c| c.uuid == gpu) {
        return Ok(c.clone());
    }
    let (ord, _) = find_device(gpu)?;
    let c = Arc::new(Cuda::open(ord)?);
    opened.push(c.clone());
    Ok(c)
}

/// A reserved and mapped device address range (unmapped and freed on drop).
pub(crate) struct DeviceRange {
    pub(crate) ptr: cu::CUdeviceptr,
    pub(crate) size: usize,
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
pub(crate) fn map_range(
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

impl Cuda {
    /// The allocation granularity of GPU-resident shareable memory on this device (sizes and
    /// mappings are multiples of it; 2 MiB on an H200).
    pub fn vidmem_granularity(&self) -> Result<usize> {
        let prop = vidmem_prop(self);
        let mut g = 0usize;
        // SAFETY: writes the granularity for `prop` into `g`.
        let r = unsafe {
            cu::cuMemGetAllocationGranularity(
                &mut g,
                &prop,
                cu::CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_RECOMMENDED,
            )
        };
        check(r, &self.label, "cuMemGetAllocationGranularity")?;
        Ok(g.max(1))
    }
}

/// Releases a generic allocation handle of this process (made by `cuMemCreate` or
/// `cuMemImportFromShareableHandle`), once per handle. The driver frees the memory only when
/// every handle and mapping of it is gone; the mappings made of this handle keep it until they
/// are unmapped.
pub(crate) fn release(cuda: &Cuda, handle: cu::CUmemGenericAllocationHandle) {
    let _ = cuda.make_current();
    // SAFETY: the caller gives each handle it owns here once, and uses it no more.
    let _ = unsafe { cu::cuMemRelease(handle) };
}

/// Imports the POSIX-fd shareable handle `fd` (an fd of the NVIDIA driver, from another
/// process's or this one's `cuMemCreate` allocation) into this process.
pub(crate) fn import_shareable(
    cuda: &Cuda,
    fd: BorrowedFd<'_>,
) -> Result<cu::CUmemGenericAllocationHandle> {
    cuda.make_current()?;
    let mut handle: cu::CUmemGenericAllocationHandle = 0;
    // SAFETY: the POSIX-fd handle type takes the fd value itself as the pointer-sized handle;
    // the driver does not take ownership of it (it stays ours and open).
    let r = unsafe {
        cu::cuMemImportFromShareableHandle(
            &mut handle,
            fd.as_raw_fd() as usize as *mut c_void,
            cu::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
        )
    };
    check(r, &cuda.label, "cuMemImportFromShareableHandle")?;
    Ok(handle)
}

/// A dma-buf of the mapped range `range` (`cuMemGetHandleForAddressRange(DMA_BUF_FD)`): a real
/// dma-buf (its `exp_name` is `nv_dmabuf`) that outlives the mapping and the process. It cannot
/// be CPU-mapped (`mmap` fails with `ENOTSUPP`).
pub(crate) fn range_dma_buf(cuda: &Cuda, range: &DeviceRange) -> Result<OwnedFd> {
    if !cuda.caps.dma_buf {
        return Err(Error::Unavailable {
            what: format!("a dma-buf of GPU memory on {}", cuda.label),
            why: "the device reports DMA_BUF_SUPPORTED = 0".into(),
        });
    }
    cuda.make_current()?;
    let mut raw: i32 = -1;
    // SAFETY: writes a new dma-buf fd (owned by us) for the mapped range into `raw`.
    let r = unsafe {
        cu::cuMemGetHandleForAddressRange(
            (&mut raw as *mut i32).cast(),
            range.ptr,
            range.size,
            cu::CUmemRangeHandleType::CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD,
            0,
        )
    };
    check(r, &cuda.label, "cuMemGetHandleForAddressRange(DMA_BUF_FD)")?;
    // SAFETY: the driver returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The allocation behind a `cuda-vidmem` object in the allocating process: its `cuMemCreate`
/// handle and the device, held by every handle of the object (released with the last), so the
/// memory lives as long as the object does, whatever the driver does with the exported fd.
pub(crate) struct VidmemAllocation {
    cuda: Arc<Cuda>,
    handle: cu::CUmemGenericAllocationHandle,
    size: usize,
}

impl std::fmt::Debug for VidmemAllocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VidmemAllocation")
            .field("device", &self.cuda.label)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Drop for VidmemAllocation {
    fn drop(&mut self) {
        release(&self.cuda, self.handle);
    }
}

/// The `cuda-vidmem` backend's allocator: at least `len` bytes of the memory of GPU `gpu`
/// (`cuMemCreate`, pinned, on that device, with a POSIX-fd shareable handle), rounded up to the
/// allocation granularity. Returns the shareable fd (`cuMemExportToShareableHandle`: an fd of the
/// NVIDIA driver's control device, not a dma-buf), the size allocated, and the allocation.
pub(crate) fn allocate(gpu: GpuId, len: u64) -> Result<(OwnedFd, u64, VidmemAllocation)> {
    let cuda = device_for(gpu)?;
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
    let g = cuda.vidmem_granularity()? as u64;
    let size = len
        .max(1)
        .checked_next_multiple_of(g)
        .and_then(|s| usize::try_from(s).ok())
        .ok_or_else(|| Error::InvalidArgument(format!("{len} bytes of GPU memory")))?;
    let prop = vidmem_prop(&cuda);
    let mut handle: cu::CUmemGenericAllocationHandle = 0;
    // SAFETY: creates an allocation of `size` bytes (a multiple of the granularity).
    let r = unsafe { cu::cuMemCreate(&mut handle, size, &prop, 0) };
    check(r, &cuda.label, "cuMemCreate")?;
    // Owned from here: released on every way out.
    let alloc = VidmemAllocation {
        cuda: cuda.clone(),
        handle,
        size,
    };
    let mut raw: i32 = -1;
    // SAFETY: writes a new fd (owned by us) into `raw`.
    let r = unsafe {
        cu::cuMemExportToShareableHandle(
            (&mut raw as *mut i32).cast(),
            alloc.handle,
            cu::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            0,
        )
    };
    check(r, &cuda.label, "cuMemExportToShareableHandle")?;
    // SAFETY: the driver returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok((fd, size as u64, alloc))
}
