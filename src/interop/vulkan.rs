//! Vulkan accessors (feature `vulkan`): a constraint provider filled from the physical device,
//! the import of unibuf objects as Vulkan memory, and images with explicit DRM-modifier layouts
//! over it.
//!
//! The loader (`libvulkan.so.1`) is opened at run time through ash's `loaded` feature, so a crate
//! built with this feature runs on machines without Vulkan: [`Vulkan::open`] then answers
//! [`Error::Unavailable`]. The instance and device are created headless: no surface or swapchain
//! extension is asked for.
//!
//! # What the provider reads ([`Vulkan`])
//!
//! - the GPU's identity: `VkPhysicalDeviceIDProperties::deviceUUID` as a [`GpuId`] (the same 16
//!   bytes as CUDA's `cuDeviceGetUuid` and `nvidia-smi -L`);
//! - the modifiers of a format ([`Vulkan::modifiers`]): `VkDrmFormatModifierPropertiesList2EXT`
//!   (`VK_EXT_image_drm_format_modifier`), with each modifier's plane count and features;
//! - `minImportedHostPointerAlignment` (`VK_EXT_external_memory_host`);
//! - the linear pitch rule of a format ([`Vulkan::linear_pitch_alignment`]), derived from the
//!   driver's own layouts (below).
//!
//! # The linear pitch rule
//!
//! A driver accepts (`VK_SUCCESS`) an explicit `rowPitch` it cannot read correctly: on an NVIDIA
//! H200 (driver 580) any pitch below `align_up(width × bytes per pixel, 32)` gives wrong pixels.
//! No Vulkan limit states this alignment (`optimalBufferCopyRowPitchAlignment` is about buffer
//! copies, and is a hint). unibuf therefore derives it from the layouts the driver picks itself:
//! it creates small images of the format with the `LINEAR` modifier and an *implicit* layout
//! (`VkImageDrmFormatModifierListCreateInfoEXT`), for several widths, and reads every memory
//! plane's `rowPitch` with `vkGetImageSubresourceLayout`. The alignment is the smallest power of
//! two that divides every such pitch, and it must reproduce them all (`rowPitch ==
//! align_up(row bytes, alignment)` for every probe), or the derivation is refused: a driver whose
//! pitches follow no alignment rule gets no explicit layouts from unibuf. Plane offsets are
//! derived the same way. [`VkImage::with_layout`] refuses a layout that breaks the rule, naming
//! the plane, pitch, width and alignment, and [`Vulkan::fill`] puts the alignment into an
//! accessor's list, so reconciled layouts keep it.
//!
//! # Import paths ([`VkMemory::import`])
//!
//! | object | path |
//! | --- | --- |
//! | a dma-buf, where the device has `VK_EXT_external_memory_dma_buf` | `VkImportMemoryFdInfoKHR` with `DMA_BUF_BIT_EXT` (of a duplicate: Vulkan owns the fd it imports) |
//! | memfd-backed (a memfd object, or a udmabuf with its memfd), where the device has `VK_EXT_external_memory_host` | the memfd mapped `MAP_SHARED` read-write and imported with `VkImportMemoryHostPointerInfoEXT` (`HOST_ALLOCATION_BIT_EXT`): the GPU reads and writes the pages of the memfd |
//!
//! A read-only handle is refused on both paths: Vulkan has no read-only memory import, and the
//! driver refuses a host pointer to a `PROT_READ` mapping. Anything else is refused with what is
//! missing; nothing falls back silently.
//!
//! # Lifetimes
//!
//! [`VkMemory`] borrows the [`Object`] and the [`Vulkan`] device; [`VkImage`] and [`VkBuffer`]
//! borrow the memory. The borrow checker thus destroys images and buffers before the memory is
//! freed, the memory before the host mapping is unmapped, and all of it before the device.

use super::gpu::{vk_format_for, GpuConstraints, GpuId};
use crate::attr::{AccessorKind, AttrList, BufferType, Key, Permission, Value};
use crate::error::{Error, Result};
use crate::layout::{align_up, ImageLayout, PixelFormat};
use crate::object::Object;
pub use ash;
use ash::vk;
use rustix::fd::{AsRawFd, BorrowedFd};
use std::cell::Cell;
use std::ffi::{c_void, CStr};
use std::sync::Mutex;

/// `DRM_FORMAT_MOD_LINEAR`.
pub const MOD_LINEAR: u64 = 0;

/// A Vulkan call's failure as an [`Error::Device`] naming the device, the call and the result.
fn vk_err(device: &str, call: &str, r: vk::Result) -> Error {
    Error::Device {
        device: device.to_string(),
        what: format!("{call}: VK_{r:?}"),
    }
}

fn c_str_lossy(s: std::result::Result<&CStr, std::ffi::FromBytesUntilNulError>) -> String {
    s.map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into())
}

/// The lowest set bit of `v` (`v > 0`): the largest power of two dividing it.
fn pow2_divisor(v: u64) -> u64 {
    v & v.wrapping_neg()
}

const EXT_DRM_MODIFIER: &CStr = vk::EXT_IMAGE_DRM_FORMAT_MODIFIER_NAME;
const EXT_DMA_BUF: &CStr = vk::EXT_EXTERNAL_MEMORY_DMA_BUF_NAME;
const EXT_HOST: &CStr = vk::EXT_EXTERNAL_MEMORY_HOST_NAME;
const KHR_MEMORY_FD: &CStr = vk::KHR_EXTERNAL_MEMORY_FD_NAME;
const KHR_FORMAT_LIST: &CStr = vk::KHR_IMAGE_FORMAT_LIST_NAME;
const KHR_FEATURE_FLAGS2: &CStr = vk::KHR_FORMAT_FEATURE_FLAGS2_NAME;

/// A physical device as the instance lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkDeviceInfo {
    /// Index in `vkEnumeratePhysicalDevices` order (what [`Vulkan::open`] takes).
    pub index: usize,
    /// `deviceName`.
    pub name: String,
    /// `deviceUUID`.
    pub uuid: GpuId,
    /// `vendorID` (0x10de: NVIDIA).
    pub vendor_id: u32,
    /// `deviceType`, e.g. `DISCRETE_GPU`, `CPU`.
    pub device_type: String,
    /// `apiVersion` (major, minor, patch).
    pub api_version: (u32, u32, u32),
}

/// What a Vulkan device offers of the import paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VulkanCaps {
    /// The API version used (the device's, capped at the instance's), (major, minor, patch).
    pub api_version: (u32, u32, u32),
    /// `VkPhysicalDeviceDriverProperties`: driver name and info (empty before Vulkan 1.2).
    pub driver: String,
    /// `vendorID`.
    pub vendor_id: u32,
    /// `VK_EXT_image_drm_format_modifier`: explicit image layouts, the modifier sets.
    pub drm_format_modifier: bool,
    /// `VK_KHR_external_memory_fd`.
    pub external_memory_fd: bool,
    /// `VK_EXT_external_memory_dma_buf`: dma-buf import.
    pub dma_buf: bool,
    /// `VK_EXT_external_memory_host`: host memory import.
    pub host_memory: bool,
    /// `minImportedHostPointerAlignment` (0 without `VK_EXT_external_memory_host`).
    pub min_imported_host_pointer_alignment: u64,
    /// `VkPhysicalDeviceLimits::optimalBufferCopyRowPitchAlignment` (a hint for buffer copies;
    /// reported, not used for image pitches).
    pub optimal_buffer_copy_row_pitch_alignment: u64,
}

/// One DRM format modifier a device supports for a format.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ModifierInfo {
    /// The modifier.
    pub modifier: u64,
    /// `drmFormatModifierPlaneCount`: memory planes of an image with this modifier.
    pub plane_count: u32,
    /// `drmFormatModifierTilingFeatures` (`VkFormatFeatureFlags2`).
    pub features: vk::FormatFeatureFlags2,
}

impl std::fmt::Debug for ModifierInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:#018x} ({} plane(s), features {:#x})",
            self.modifier,
            self.plane_count,
            self.features.as_raw()
        )
    }
}

impl ModifierInfo {
    /// Whether images with this modifier can be copied from and to (transfer source and
    /// destination).
    pub fn can_transfer(&self) -> bool {
        self.features
            .contains(vk::FormatFeatureFlags2::TRANSFER_SRC | vk::FormatFeatureFlags2::TRANSFER_DST)
    }
}

/// One probe of the pitch-rule derivation: what the driver chose for an implicit linear layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PitchProbe {
    /// Image width in pixels.
    pub width: u32,
    /// Memory plane.
    pub plane: usize,
    /// Bytes of one row of the plane's samples.
    pub row_bytes: u64,
    /// The driver's `rowPitch`.
    pub row_pitch: u64,
    /// The driver's plane `offset`.
    pub offset: u64,
}

/// The linear pitch rule of one format, derived from the driver's own layouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PitchAlignment {
    /// The format.
    pub format: PixelFormat,
    /// Per plane: every pitch must be a multiple of it (and so at least
    /// `align_up(row bytes, alignment)`).
    pub plane_alignment: Vec<u64>,
    /// The largest of [`Self::plane_alignment`]: the list's pitch alignment.
    pub alignment: u64,
    /// Alignment of the offsets of planes after the first (1 for single-plane formats).
    pub plane_offset_alignment: u64,
    /// `VkMemoryRequirements::alignment` of the probe images (base alignment).
    pub memory_alignment: u64,
    /// How it was derived: `"LINEAR-modifier images"` or `"TILING_LINEAR images"`.
    pub source: &'static str,
    /// The probes the alignments reproduce.
    pub probes: Vec<PitchProbe>,
}

impl std::fmt::Display for PitchAlignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: pitch alignment {} (per plane {:?}), plane offsets {}, from the driver's {} \
             (width→rowPitch:",
            self.format.name(),
            self.alignment,
            self.plane_alignment,
            self.plane_offset_alignment,
            self.source
        )?;
        for p in &self.probes {
            write!(f, " {}p{}→{}", p.width, p.plane, p.row_pitch)?;
        }
        f.write_str(")")
    }
}

/// An open Vulkan device: instance, physical device, logical device with one queue, headless.
pub struct Vulkan {
    label: String,
    uuid: GpuId,
    caps: VulkanCaps,
    physical: vk::PhysicalDevice,
    queue: vk::Queue,
    queue_family: u32,
    pool: Mutex<vk::CommandPool>,
    pitch_cache: Mutex<Vec<PitchAlignment>>,
    host_fn: Option<ash::ext::external_memory_host::Device>,
    fd_fn: Option<ash::khr::external_memory_fd::Device>,
    device: ash::Device,
    instance: ash::Instance,
    _entry: ash::Entry,
}

impl std::fmt::Debug for Vulkan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vulkan")
            .field("device", &self.label)
            .field("uuid", &self.uuid)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

fn version(v: u32) -> (u32, u32, u32) {
    (
        vk::api_version_major(v),
        vk::api_version_minor(v),
        vk::api_version_patch(v),
    )
}

fn unavailable(why: impl Into<String>) -> Error {
    Error::Unavailable {
        what: "a Vulkan device".into(),
        why: why.into(),
    }
}

/// The loader and an instance (headless: no extensions, no layers), at the highest API version up
/// to 1.3 that the loader offers (1.1 at least).
fn instance() -> Result<(ash::Entry, ash::Instance, u32)> {
    // SAFETY: dlopens libvulkan.so.1 and resolves vkGetInstanceProcAddr; nothing else runs.
    let entry = unsafe { ash::Entry::load() }
        .map_err(|e| unavailable(format!("the Vulkan loader (libvulkan.so.1): {e}")))?;
    // SAFETY: a global command with no preconditions.
    let loader = unsafe { entry.try_enumerate_instance_version() }
        .map_err(|r| vk_err("the Vulkan loader", "vkEnumerateInstanceVersion", r))?
        .unwrap_or(vk::API_VERSION_1_0);
    if loader < vk::API_VERSION_1_1 {
        return Err(unavailable(format!(
            "the loader offers Vulkan {:?}; unibuf needs 1.1",
            version(loader)
        )));
    }
    let api = loader.min(vk::API_VERSION_1_3);
    let app = vk::ApplicationInfo::default()
        .application_name(c"unibuf")
        .engine_name(c"unibuf")
        .api_version(api);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: `info` and `app` live across the call; no allocator callbacks.
    let instance = unsafe { entry.create_instance(&info, None) }.map_err(|r| {
        unavailable(format!(
            "vkCreateInstance: VK_{r:?} (the loader found no driver that starts: no ICD \
             manifest (set VK_DRIVER_FILES), or the driver refused to initialise; \
             VK_LOADER_DEBUG=error,driver says which)"
        ))
    })?;
    Ok((entry, instance, api))
}

fn device_info(instance: &ash::Instance, pd: vk::PhysicalDevice, index: usize) -> VkDeviceInfo {
    let mut id = vk::PhysicalDeviceIDProperties::default();
    let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut id);
    // SAFETY: `pd` comes from this instance; the chain holds one structure Vulkan 1.1 knows.
    unsafe { instance.get_physical_device_properties2(pd, &mut p2) };
    let p = p2.properties;
    VkDeviceInfo {
        index,
        name: c_str_lossy(p.device_name_as_c_str()),
        uuid: GpuId(id.device_uuid),
        vendor_id: p.vendor_id,
        device_type: device_type_name(p.device_type),
        api_version: version(p.api_version),
    }
}

fn device_type_name(t: vk::PhysicalDeviceType) -> String {
    match t {
        vk::PhysicalDeviceType::DISCRETE_GPU => "discrete GPU".into(),
        vk::PhysicalDeviceType::INTEGRATED_GPU => "integrated GPU".into(),
        vk::PhysicalDeviceType::VIRTUAL_GPU => "virtual GPU".into(),
        vk::PhysicalDeviceType::CPU => "CPU".into(),
        t => format!("type {}", t.as_raw()),
    }
}

fn physical_devices(instance: &ash::Instance) -> Result<Vec<vk::PhysicalDevice>> {
    // SAFETY: the instance is live.
    unsafe { instance.enumerate_physical_devices() }
        .map_err(|r| vk_err("the Vulkan instance", "vkEnumeratePhysicalDevices", r))
}

impl Vulkan {
    /// Whether the Vulkan loader can be loaded here; `Err` says why not.
    pub fn available() -> std::result::Result<(), String> {
        // SAFETY: only dlopens the loader; dropped again at once.
        unsafe { ash::Entry::load() }
            .map(|_| ())
            .map_err(|e| format!("the Vulkan loader (libvulkan.so.1) cannot be loaded: {e}"))
    }

    /// The physical devices the loader's drivers offer.
    pub fn devices() -> Result<Vec<VkDeviceInfo>> {
        let (_entry, instance, _) = instance()?;
        let r = physical_devices(&instance).map(|pds| {
            pds.iter()
                .enumerate()
                .map(|(i, pd)| device_info(&instance, *pd, i))
                .collect()
        });
        // SAFETY: the instance was created above and nothing derived from it survives.
        unsafe { instance.destroy_instance(None) };
        r
    }

    /// Opens physical device `index` (in [`Vulkan::devices`] order) with one queue that can
    /// transfer, and every import extension it has. [`Error::Unavailable`] where there is no
    /// loader, no driver or no such device.
    pub fn open(index: usize) -> Result<Vulkan> {
        Vulkan::open_where(|d| d.index == index, &format!("Vulkan device {index}"))
    }

    /// Opens the physical device whose `deviceUUID` is `gpu` (e.g. the GPU a CUDA context runs
    /// on, or one named in an attribute list's GPU ids).
    pub fn open_gpu(gpu: GpuId) -> Result<Vulkan> {
        Vulkan::open_where(
            |d| d.uuid == gpu,
            &format!("the Vulkan device with UUID {gpu}"),
        )
    }

    fn open_where(pick: impl Fn(&VkDeviceInfo) -> bool, wanted: &str) -> Result<Vulkan> {
        let (entry, instance, api) = instance()?;
        let destroy = |e: Error| {
            // SAFETY: nothing derived from the instance survives the failed open.
            unsafe { instance.destroy_instance(None) };
            e
        };
        let pds = physical_devices(&instance).map_err(destroy)?;
        let found = pds
            .iter()
            .enumerate()
            .map(|(i, pd)| (*pd, device_info(&instance, *pd, i)))
            .collect::<Vec<_>>();
        let Some((pd, info)) = found.iter().find(|(_, d)| pick(d)).cloned() else {
            let names: Vec<String> = found
                .iter()
                .map(|(_, d)| format!("{} ({})", d.name, d.uuid))
                .collect();
            return Err(destroy(Error::Unavailable {
                what: wanted.to_string(),
                why: format!(
                    "the Vulkan drivers offer {} device(s): {names:?}",
                    found.len()
                ),
            }));
        };
        match Vulkan::create_device(entry, &instance, api, pd, info) {
            Ok(v) => Ok(v),
            Err(e) => Err(destroy(e)),
        }
    }

    fn create_device(
        entry: ash::Entry,
        instance: &ash::Instance,
        instance_api: u32,
        pd: vk::PhysicalDevice,
        info: VkDeviceInfo,
    ) -> Result<Vulkan> {
        let label = format!("Vulkan device {} ({})", info.index, info.name);
        // SAFETY: `pd` belongs to `instance`.
        let props = unsafe { instance.get_physical_device_properties(pd) };
        let api = props.api_version.min(instance_api);
        if api < vk::API_VERSION_1_1 {
            return Err(Error::Unavailable {
                what: label,
                why: format!("it offers Vulkan {:?}; unibuf needs 1.1", version(api)),
            });
        }
        // SAFETY: `pd` belongs to `instance`.
        let exts = unsafe { instance.enumerate_device_extension_properties(pd) }
            .map_err(|r| vk_err(&label, "vkEnumerateDeviceExtensionProperties", r))?;
        let has = |n: &CStr| exts.iter().any(|e| e.extension_name_as_c_str() == Ok(n));
        let mut enable: Vec<&CStr> = Vec::new();
        let drm_format_modifier =
            has(EXT_DRM_MODIFIER) && (api >= vk::API_VERSION_1_2 || has(KHR_FORMAT_LIST));
        if drm_format_modifier {
            enable.push(EXT_DRM_MODIFIER);
            if api < vk::API_VERSION_1_2 {
                enable.push(KHR_FORMAT_LIST);
            }
        }
        let feature_flags2 = api >= vk::API_VERSION_1_3 || has(KHR_FEATURE_FLAGS2);
        if api < vk::API_VERSION_1_3 && feature_flags2 {
            enable.push(KHR_FEATURE_FLAGS2);
        }
        let external_memory_fd = has(KHR_MEMORY_FD);
        if external_memory_fd {
            enable.push(KHR_MEMORY_FD);
        }
        let dma_buf = external_memory_fd && has(EXT_DMA_BUF);
        if dma_buf {
            enable.push(EXT_DMA_BUF);
        }
        let host_memory = has(EXT_HOST);
        if host_memory {
            enable.push(EXT_HOST);
        }
        let mut host_props = vk::PhysicalDeviceExternalMemoryHostPropertiesEXT::default();
        if host_memory {
            let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut host_props);
            // SAFETY: the device has the extension whose structure is chained.
            unsafe { instance.get_physical_device_properties2(pd, &mut p2) };
        }
        let mut driver = String::new();
        if api >= vk::API_VERSION_1_2 {
            let mut dp = vk::PhysicalDeviceDriverProperties::default();
            let mut p2 = vk::PhysicalDeviceProperties2::default().push_next(&mut dp);
            // SAFETY: a Vulkan 1.2 structure on a 1.2 device.
            unsafe { instance.get_physical_device_properties2(pd, &mut p2) };
            driver = format!(
                "{} {}",
                c_str_lossy(dp.driver_name_as_c_str()),
                c_str_lossy(dp.driver_info_as_c_str())
            );
        }
        // SAFETY: `pd` belongs to `instance`.
        let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
        let queue_family = families
            .iter()
            .position(|f| {
                f.queue_count > 0
                    && f.queue_flags.intersects(
                        vk::QueueFlags::GRAPHICS
                            | vk::QueueFlags::COMPUTE
                            | vk::QueueFlags::TRANSFER,
                    )
            })
            .ok_or_else(|| Error::Unavailable {
                what: format!("a transfer queue on {label}"),
                why: format!("its {} queue families cannot transfer", families.len()),
            })? as u32;
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(queue_family)
            .queue_priorities(&priorities)];
        let names: Vec<*const std::ffi::c_char> = enable.iter().map(|n| n.as_ptr()).collect();
        let dinfo = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&names);
        // SAFETY: every pointer in `dinfo` (queues, priorities, extension names: static CStrs)
        // lives across the call; the extensions were listed by the device.
        let device = unsafe { instance.create_device(pd, &dinfo, None) }
            .map_err(|r| vk_err(&label, "vkCreateDevice", r))?;
        // SAFETY: the family and index 0 were created with the device.
        let queue = unsafe { device.get_device_queue(queue_family, 0) };
        let pinfo = vk::CommandPoolCreateInfo::default()
            .queue_family_index(queue_family)
            .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
        // SAFETY: a plain pool of the device's queue family.
        let pool = match unsafe { device.create_command_pool(&pinfo, None) } {
            Ok(p) => p,
            Err(r) => {
                // SAFETY: the device was created above and nothing uses it yet.
                unsafe { device.destroy_device(None) };
                return Err(vk_err(&label, "vkCreateCommandPool", r));
            }
        };
        let host_fn =
            host_memory.then(|| ash::ext::external_memory_host::Device::new(instance, &device));
        let fd_fn = external_memory_fd
            .then(|| ash::khr::external_memory_fd::Device::new(instance, &device));
        let caps = VulkanCaps {
            api_version: version(api),
            driver,
            vendor_id: info.vendor_id,
            drm_format_modifier: drm_format_modifier && feature_flags2,
            external_memory_fd,
            dma_buf,
            host_memory,
            min_imported_host_pointer_alignment: if host_memory {
                host_props.min_imported_host_pointer_alignment
            } else {
                0
            },
            optimal_buffer_copy_row_pitch_alignment: props
                .limits
                .optimal_buffer_copy_row_pitch_alignment,
        };
        Ok(Vulkan {
            label,
            uuid: info.uuid,
            caps,
            physical: pd,
            queue,
            queue_family,
            pool: Mutex::new(pool),
            pitch_cache: Mutex::new(Vec::new()),
            host_fn,
            fd_fn,
            device,
            instance: instance.clone(),
            _entry: entry,
        })
    }

    /// The device's `deviceUUID`: the same 16 bytes as CUDA's UUID and `nvidia-smi -L`.
    pub fn gpu_id(&self) -> GpuId {
        self.uuid
    }

    /// `Vulkan device N (name)`, as errors name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What the device offers.
    pub fn caps(&self) -> &VulkanCaps {
        &self.caps
    }

    /// The accessor kind this provider fills.
    pub fn accessor_kind(&self) -> AccessorKind {
        AccessorKind::Gpu
    }

    /// The logical device (ash), for recording work of one's own on imported images/buffers.
    pub fn device(&self) -> &ash::Device {
        &self.device
    }

    /// The queue unibuf's copies use, and its family index.
    pub fn queue(&self) -> (vk::Queue, u32) {
        (self.queue, self.queue_family)
    }

    fn need_modifiers(&self, what: &str) -> Result<()> {
        if self.caps.drm_format_modifier {
            Ok(())
        } else {
            Err(Error::Unavailable {
                what: format!("{what} on {}", self.label),
                why: "the device lacks VK_EXT_image_drm_format_modifier (with \
                      VK_KHR_format_feature_flags2 or Vulkan 1.3)"
                    .into(),
            })
        }
    }

    fn vk_format(&self, format: PixelFormat) -> Result<vk::Format> {
        format
            .drm_fourcc()
            .and_then(|f| vk_format_for(f as u32))
            .map(vk::Format::from_raw)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{} has no Vulkan format unibuf knows (see interop::gpu::vk_format_for)",
                    format.name()
                ))
            })
    }

    /// The DRM format modifiers the device supports for images of `format`
    /// (`VkDrmFormatModifierPropertiesList2EXT`), in the order the driver reports them (Vulkan
    /// ranks none), each with its plane count and features.
    pub fn modifiers(&self, format: PixelFormat) -> Result<Vec<ModifierInfo>> {
        self.need_modifiers("the modifiers of a format")?;
        let vf = self.vk_format(format)?;
        let mut list = vk::DrmFormatModifierPropertiesList2EXT::default();
        let mut fp = vk::FormatProperties2::default().push_next(&mut list);
        // SAFETY: the device has the extension; the list's count is 0 and its pointer null, so
        // the driver only writes the count.
        unsafe {
            self.instance
                .get_physical_device_format_properties2(self.physical, vf, &mut fp)
        };
        let n = list.drm_format_modifier_count as usize;
        let mut props = vec![vk::DrmFormatModifierProperties2EXT::default(); n];
        let mut list = vk::DrmFormatModifierPropertiesList2EXT::default()
            .drm_format_modifier_properties(&mut props);
        let mut fp = vk::FormatProperties2::default().push_next(&mut list);
        // SAFETY: the list points to `n` writable elements and says so in its count.
        unsafe {
            self.instance
                .get_physical_device_format_properties2(self.physical, vf, &mut fp)
        };
        let n = (list.drm_format_modifier_count as usize).min(props.len());
        let mut out: Vec<ModifierInfo> = Vec::with_capacity(n);
        for p in &props[..n] {
            if !out.iter().any(|m| m.modifier == p.drm_format_modifier) {
                out.push(ModifierInfo {
                    modifier: p.drm_format_modifier,
                    plane_count: p.drm_format_modifier_plane_count,
                    features: p.drm_format_modifier_tiling_features,
                });
            }
        }
        Ok(out)
    }

    /// [`Vulkan::modifiers`] of a DRM fourcc.
    pub fn modifiers_fourcc(&self, fourcc: u32) -> Result<Vec<ModifierInfo>> {
        self.modifiers(PixelFormat::from_drm(fourcc)?)
    }

    fn linear_modifier(&self, format: PixelFormat) -> Result<ModifierInfo> {
        let mods = self.modifiers(format)?;
        let lin = mods.iter().find(|m| m.modifier == MOD_LINEAR).copied();
        match lin {
            Some(m) if m.can_transfer() && m.plane_count as usize == format.planes().len() => Ok(m),
            Some(m) => Err(Error::Unavailable {
                what: format!("linear {} images on {}", format.name(), self.label),
                why: format!(
                    "the LINEAR modifier has {} plane(s) and features {:#x} (unibuf needs {} \
                     plane(s) and TRANSFER_SRC|TRANSFER_DST)",
                    m.plane_count,
                    m.features.as_raw(),
                    format.planes().len()
                ),
            }),
            None => Err(Error::Unavailable {
                what: format!("linear {} images on {}", format.name(), self.label),
                why: format!(
                    "the driver lists no LINEAR modifier for it (modifiers: {:x?})",
                    mods.iter().map(|m| m.modifier).collect::<Vec<_>>()
                ),
            }),
        }
    }

    /// The linear pitch rule of `format`, derived from the layouts the driver picks for
    /// `LINEAR`-modifier images (see the module documentation); computed once per format.
    pub fn linear_pitch_alignment(&self, format: PixelFormat) -> Result<PitchAlignment> {
        if let Ok(c) = self.pitch_cache.lock() {
            if let Some(p) = c.iter().find(|p| p.format == format) {
                return Ok(p.clone());
            }
        }
        self.linear_modifier(format)?;
        let vf = self.vk_format(format)?;
        let planes = format.planes();
        let hsub = planes.iter().map(|p| p.hsub).max().unwrap_or(1).max(1);
        let vsub = planes.iter().map(|p| p.vsub).max().unwrap_or(1).max(1);
        let mut probes = Vec::new();
        let mut memory_alignment = 1u64;
        for w in [1u32, 3, 7, 13, 33, 65, 129, 257, 1001] {
            let width = w * hsub;
            let height = 2 * vsub;
            let (layouts, align) = self.probe_linear(vf, planes.len(), width, height)?;
            memory_alignment = memory_alignment.max(align);
            for (i, (pl, l)) in planes.iter().zip(layouts).enumerate() {
                let samples = u64::from(width.div_ceil(pl.hsub));
                probes.push(PitchProbe {
                    width,
                    plane: i,
                    row_bytes: (samples * u64::from(pl.bpp)).div_ceil(8),
                    row_pitch: l.row_pitch,
                    offset: l.offset,
                });
            }
        }
        let mut plane_alignment = Vec::with_capacity(planes.len());
        for i in 0..planes.len() {
            let mine = probes.iter().filter(|p| p.plane == i);
            let a = mine
                .clone()
                .map(|p| pow2_divisor(p.row_pitch.max(1)))
                .min()
                .unwrap_or(1);
            if let Some(bad) = mine
                .clone()
                .find(|p| align_up(p.row_bytes, a) != Some(p.row_pitch))
            {
                return Err(Error::Unavailable {
                    what: format!(
                        "explicit linear {} layouts on {}",
                        format.name(),
                        self.label
                    ),
                    why: format!(
                        "the driver's own pitches follow no alignment rule (plane {i}: a \
                         {}-pixel row of {} bytes gets rowPitch {}, not a multiple of {a} \
                         rounded up), so unibuf cannot tell which explicit pitches it reads \
                         correctly; probes: {:?}",
                        bad.width,
                        bad.row_bytes,
                        bad.row_pitch,
                        mine.map(|p| (p.width, p.row_pitch)).collect::<Vec<_>>()
                    ),
                });
            }
            plane_alignment.push(a);
        }
        let plane_offset_alignment = probes
            .iter()
            .filter(|p| p.plane > 0)
            .map(|p| pow2_divisor(p.offset.max(1)))
            .min()
            .unwrap_or(1);
        let pa = PitchAlignment {
            format,
            alignment: plane_alignment.iter().copied().max().unwrap_or(1),
            plane_alignment,
            plane_offset_alignment,
            memory_alignment,
            source: "LINEAR-modifier images",
            probes,
        };
        if let Ok(mut c) = self.pitch_cache.lock() {
            c.push(pa.clone());
        }
        Ok(pa)
    }

    /// Creates a `width × height` image with the LINEAR modifier and the driver's own layout,
    /// and returns its memory planes' layouts and its memory alignment.
    fn probe_linear(
        &self,
        vf: vk::Format,
        planes: usize,
        width: u32,
        height: u32,
    ) -> Result<(Vec<vk::SubresourceLayout>, u64)> {
        let (layouts, align, _) = self.probe_linear_sized(vf, planes, width, height)?;
        Ok((layouts, align))
    }

    /// [`Self::probe_linear`], with the memory size the driver requires as well.
    fn probe_linear_sized(
        &self,
        vf: vk::Format,
        planes: usize,
        width: u32,
        height: u32,
    ) -> Result<(Vec<vk::SubresourceLayout>, u64, u64)> {
        let mods = [MOD_LINEAR];
        let mut list =
            vk::ImageDrmFormatModifierListCreateInfoEXT::default().drm_format_modifiers(&mods);
        let info = vk::ImageCreateInfo::default()
            .image_type(vk::ImageType::TYPE_2D)
            .format(vf)
            .extent(vk::Extent3D {
                width,
                height,
                depth: 1,
            })
            .mip_levels(1)
            .array_layers(1)
            .samples(vk::SampleCountFlags::TYPE_1)
            .tiling(vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT)
            .usage(vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST)
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
            .initial_layout(vk::ImageLayout::UNDEFINED)
            .push_next(&mut list);
        // SAFETY: `info` and its chain live across the call; the LINEAR modifier was checked to
        // be listed with transfer features for this format.
        let image = unsafe { self.device.create_image(&info, None) }
            .map_err(|r| vk_err(&self.label, "vkCreateImage(LINEAR modifier probe)", r))?;
        let mut out = Vec::with_capacity(planes);
        for i in 0..planes {
            let aspect = memory_plane_aspect(i);
            // SAFETY: `image` is live; the aspect names one of its memory planes.
            out.push(unsafe {
                self.device.get_image_subresource_layout(
                    image,
                    vk::ImageSubresource {
                        aspect_mask: aspect,
                        mip_level: 0,
                        array_layer: 0,
                    },
                )
            });
        }
        // SAFETY: `image` is live and unbound.
        let req = unsafe { self.device.get_image_memory_requirements(image) };
        // SAFETY: destroys the probe image created above, unused by any command.
        unsafe { self.device.destroy_image(image, None) };
        Ok((out, req.alignment.max(1), req.size))
    }

    /// The constraints this GPU puts on a buffer of `format` (`None`: a raw buffer) it imports:
    /// its UUID, the base alignment (a page and `minImportedHostPointerAlignment`: the start of
    /// the imported memory) and the derived linear pitch alignment. The driver's memory
    /// alignment (`VkMemoryRequirements::alignment`) constrains where an image is bound inside
    /// that memory, and unibuf binds at offset 0; its plane-offset alignment is a per-plane
    /// alignment, which [`Vulkan::fill`] states as `image.plane_base_align`.
    pub fn constraints(&self, format: Option<PixelFormat>) -> Result<GpuConstraints> {
        let page = rustix::param::page_size() as u64;
        let base = page.max(self.caps.min_imported_host_pointer_alignment);
        let mut pitch = 1u64;
        if let Some(f) = format {
            let pa = self.linear_pitch_alignment(f)?;
            pitch = pa.alignment;
        }
        let pitch = u32::try_from(pitch).map_err(|_| {
            Error::InvalidArgument(format!("{}: pitch alignment {pitch}", self.label))
        })?;
        GpuConstraints::new(self.uuid, base.next_power_of_two(), pitch)
    }

    /// Fills an accessor's list with this GPU's needs (GPU id, base and pitch alignment; the
    /// caller sets the buffer type, CPU access and permission). An image list must state its
    /// format first: the pitch rule is the format's, and a format without a usable LINEAR
    /// modifier is refused here rather than at import.
    pub fn fill(&self, list: &mut AttrList) -> Result<()> {
        let types = list.types();
        let format =
            if types.contains(BufferType::Image) || types.contains(BufferType::ImagePyramid) {
                match list.get(Key::ImageFormat) {
                    Some(Value::Format(f)) => Some(*f),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "{}: set the image format before filling the list (the pitch rule is \
                         per format)",
                            self.label
                        )))
                    }
                }
            } else {
                None
            };
        self.constraints(format)?.fill(list)?;
        // The driver sizes a linear image's memory in whole units of its memory alignment (an
        // NV12 image with its chroma plane at 64 KiB needs 128 KiB, not 64 KiB and the chroma
        // bytes): ask it for an image of this list's size and make that the minimum.
        if let (Some(f), Some(Value::U32(w)), Some(Value::U32(h))) = (
            format,
            list.get(Key::ImageWidth),
            list.get(Key::ImageHeight),
        ) {
            let (w, h) = (*w, *h);
            // Planes after the first start where the driver puts them: on its plane-offset
            // alignment (64 KiB for NV12 on the H200), measured from the buffer's start.
            let planes = f.planes().len();
            if planes > 1 {
                let poa = self.linear_pitch_alignment(f)?.plane_offset_alignment;
                let mut per_plane = vec![poa; planes];
                per_plane[0] = 1;
                list.set_plane_base_align(&per_plane)?;
            }
            let need = self.linear_image_size(f, w, h)?;
            list.set_min_size(need)?;
            // The modifiers this GPU can take an image of this size in, from the memory unibuf
            // can give it (host memory always; dma-bufs where the extension is), in the
            // driver's order: reconciliation intersects them with the other accessors' sets.
            if list.get(Key::ImageModifiers).is_none() && list.get(Key::ImageModifier).is_none() {
                let set = self.importable_modifiers(f, w, h)?;
                list.set_image_modifiers(set)?;
            }
        }
        Ok(())
    }

    /// The modifiers of `format` (in the driver's order) whose `width × height` images can be
    /// imported from every kind of memory unibuf may hand this device: host memory
    /// (`VK_EXT_external_memory_host`) and, where the device has `VK_EXT_external_memory_dma_buf`,
    /// dma-bufs. [`Error::Unavailable`] when there is none.
    pub fn importable_modifiers(
        &self,
        format: PixelFormat,
        width: u32,
        height: u32,
    ) -> Result<Vec<u64>> {
        self.need_modifiers("modifier sets")?;
        let vf = self.vk_format(format)?;
        let mut layout =
            ImageLayout::compute(&crate::layout::ImageParams::new(format, width, height))
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let usage = vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST;
        let mut handles = Vec::new();
        if self.caps.host_memory {
            handles.push(vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT);
        }
        if self.caps.dma_buf {
            handles.push(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
        }
        let mut set = Vec::new();
        let mut refused = Vec::new();
        for m in self.modifiers(format)? {
            layout.modifier = m.modifier;
            match handles
                .iter()
                .try_for_each(|&h| self.check_importable(vf, &layout, usage, h))
            {
                Ok(()) if !handles.is_empty() => set.push(m.modifier),
                Ok(()) => refused.push(format!("{:#018x}: no import extension", m.modifier)),
                Err(e) => refused.push(format!("{:#018x}: {e}", m.modifier)),
            }
        }
        if set.is_empty() {
            return Err(Error::Unavailable {
                what: format!(
                    "{width}x{height} {} images over imported memory on {}",
                    format.name(),
                    self.label
                ),
                why: refused.join("; "),
            });
        }
        Ok(set)
    }

    /// The memory size the driver requires for a `width × height` `format` image with the
    /// LINEAR modifier and its own layout (`VkMemoryRequirements::size`).
    pub fn linear_image_size(&self, format: PixelFormat, width: u32, height: u32) -> Result<u64> {
        self.linear_modifier(format)?;
        let vf = self.vk_format(format)?;
        let (_, _, size) = self.probe_linear_sized(vf, format.planes().len(), width, height)?;
        Ok(size)
    }

    /// Records commands with `record`, submits them and waits (10 s at most).
    pub fn submit_and_wait(
        &self,
        record: impl FnOnce(&ash::Device, vk::CommandBuffer),
    ) -> Result<()> {
        let pool = self.pool.lock().map_err(|_| {
            Error::InvalidArgument(format!("{}: command pool poisoned", self.label))
        })?;
        let ainfo = vk::CommandBufferAllocateInfo::default()
            .command_pool(*pool)
            .level(vk::CommandBufferLevel::PRIMARY)
            .command_buffer_count(1);
        // SAFETY: the pool is live and externally synchronized by the mutex held.
        let cbs = unsafe { self.device.allocate_command_buffers(&ainfo) }
            .map_err(|r| vk_err(&self.label, "vkAllocateCommandBuffers", r))?;
        let cb = cbs[0];
        let free = || {
            // SAFETY: `cb` came from `pool` (held) and is not pending (waited or never submitted).
            unsafe { self.device.free_command_buffers(*pool, &cbs) }
        };
        let binfo = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: a fresh command buffer in the initial state.
        if let Err(r) = unsafe { self.device.begin_command_buffer(cb, &binfo) } {
            free();
            return Err(vk_err(&self.label, "vkBeginCommandBuffer", r));
        }
        record(&self.device, cb);
        // SAFETY: `cb` is recording.
        if let Err(r) = unsafe { self.device.end_command_buffer(cb) } {
            free();
            return Err(vk_err(&self.label, "vkEndCommandBuffer", r));
        }
        // SAFETY: a plain unsignalled fence.
        let fence = match unsafe {
            self.device
                .create_fence(&vk::FenceCreateInfo::default(), None)
        } {
            Ok(f) => f,
            Err(r) => {
                free();
                return Err(vk_err(&self.label, "vkCreateFence", r));
            }
        };
        let submit = [vk::SubmitInfo::default().command_buffers(&cbs)];
        // SAFETY: `cb` is executable; the queue is used from this thread only while the pool
        // mutex is held.
        let r = unsafe { self.device.queue_submit(self.queue, &submit, fence) }
            .map_err(|r| vk_err(&self.label, "vkQueueSubmit", r))
            .and_then(|()| {
                // SAFETY: waits on our fence.
                unsafe { self.device.wait_for_fences(&[fence], true, 10_000_000_000) }
                    .map_err(|r| vk_err(&self.label, "vkWaitForFences (10 s)", r))
            });
        if r.is_err() {
            // SAFETY: nothing may still run when the fence and buffer go.
            let _ = unsafe { self.device.device_wait_idle() };
        }
        // SAFETY: the fence is no longer waited on; the buffer is complete.
        unsafe { self.device.destroy_fence(fence, None) };
        free();
        r
    }
}

impl Drop for Vulkan {
    fn drop(&mut self) {
        // SAFETY: every image, buffer and memory borrowed `self` and is gone; waiting idle makes
        // sure no command runs; then the pool, the device and the instance go, in that order.
        unsafe {
            let _ = self.device.device_wait_idle();
            if let Ok(pool) = self.pool.lock() {
                self.device.destroy_command_pool(*pool, None);
            }
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

fn memory_plane_aspect(i: usize) -> vk::ImageAspectFlags {
    match i {
        0 => vk::ImageAspectFlags::MEMORY_PLANE_0_EXT,
        1 => vk::ImageAspectFlags::MEMORY_PLANE_1_EXT,
        2 => vk::ImageAspectFlags::MEMORY_PLANE_2_EXT,
        _ => vk::ImageAspectFlags::MEMORY_PLANE_3_EXT,
    }
}

fn format_plane_aspect(i: usize, planes: usize) -> vk::ImageAspectFlags {
    match (planes, i) {
        (1, _) => vk::ImageAspectFlags::COLOR,
        (_, 0) => vk::ImageAspectFlags::PLANE_0,
        (_, 1) => vk::ImageAspectFlags::PLANE_1,
        _ => vk::ImageAspectFlags::PLANE_2,
    }
}

/// A shared read-write mapping of a memfd made for the driver's host-pointer import (not a CPU
/// access: unibuf never reads or writes through it): [`crate::sys::mm`]'s, unmapped on drop,
/// after the Vulkan memory that imported it (VkMemory's Drop runs before its fields drop).
fn host_mapping(fd: BorrowedFd<'_>, len: usize, what: &str) -> Result<crate::sys::mm::MmapRaw> {
    crate::sys::mm::map_shared_read_write(fd, len).map_err(|e| Error::sys("mmap", what, e))
}

/// How an object reached Vulkan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VkImportPath {
    /// `VkImportMemoryFdInfoKHR` with `DMA_BUF_BIT_EXT`.
    DmaBuf,
    /// Its memfd mapped read-write and imported with `VkImportMemoryHostPointerInfoEXT`.
    HostPointer,
}

/// A unibuf object imported as Vulkan memory (`VkDeviceMemory`), freed on drop. The object and
/// the device outlive it.
pub struct VkMemory<'a> {
    vk: &'a Vulkan,
    obj: &'a Object,
    memory: vk::DeviceMemory,
    type_index: u32,
    handle_type: vk::ExternalMemoryHandleTypeFlags,
    size: u64,
    path: VkImportPath,
    _mapping: Option<crate::sys::mm::MmapRaw>,
}

impl std::fmt::Debug for VkMemory<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VkMemory")
            .field("device", &self.vk.label)
            .field("object", &self.obj.name())
            .field("size", &self.size)
            .field("path", &self.path)
            .field("memory_type", &self.type_index)
            .finish()
    }
}

impl<'a> VkMemory<'a> {
    /// Imports `obj` into `vk` by the path the module documentation's table gives for it.
    pub fn import(vk: &'a Vulkan, obj: &'a Object) -> Result<VkMemory<'a>> {
        let what = format!(
            "a Vulkan import of {:?} ({} bytes) on {}",
            obj.name(),
            obj.size(),
            vk.label
        );
        if obj.permission() == Permission::ReadOnly {
            return Err(Error::Unavailable {
                what,
                why: "the handle is read-only: Vulkan has no read-only memory import, and \
                      VK_EXT_external_memory_host needs a writable mapping (the driver refuses \
                      a PROT_READ one); import a read-write handle"
                    .into(),
            });
        }
        if obj.is_dma_buf() && vk.caps.dma_buf {
            return VkMemory::import_dma_buf(vk, obj);
        }
        if let Some(memfd) = obj.memfd() {
            if vk.caps.host_memory {
                return VkMemory::import_host(vk, obj, memfd);
            }
        }
        let why = match (obj.is_dma_buf(), obj.memfd().is_some()) {
            (true, true) => {
                "the device has neither VK_EXT_external_memory_dma_buf (for the \
                             dma-buf) nor VK_EXT_external_memory_host (for its memfd)"
            }
            (true, false) => {
                "the device lacks VK_EXT_external_memory_dma_buf, and the dma-buf \
                              has no memfd to import as host memory"
            }
            (false, true) => {
                "the device lacks VK_EXT_external_memory_host (a memfd object is \
                              not a dma-buf)"
            }
            (false, false) => "it is neither a dma-buf nor memfd-backed",
        };
        Err(Error::Unavailable {
            what,
            why: why.into(),
        })
    }

    fn pick_type(vk: &Vulkan, bits: u32, call: &str) -> Result<u32> {
        // SAFETY: `physical` belongs to the instance.
        let mp = unsafe {
            vk.instance
                .get_physical_device_memory_properties(vk.physical)
        };
        let n = mp.memory_type_count.min(vk::MAX_MEMORY_TYPES as u32);
        let usable = |i: u32| bits & (1 << i) != 0;
        let coherent =
            vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        (0..n)
            .find(|&i| {
                usable(i)
                    && mp.memory_types[i as usize]
                        .property_flags
                        .contains(coherent)
            })
            .or_else(|| (0..n).find(|&i| usable(i)))
            .ok_or_else(|| Error::Device {
                device: vk.label.clone(),
                what: format!("{call}: no memory type can import it (memoryTypeBits {bits:#x})"),
            })
    }

    fn import_host(vk: &'a Vulkan, obj: &'a Object, memfd: BorrowedFd<'_>) -> Result<VkMemory<'a>> {
        let what = format!("the memfd of {:?}", obj.name());
        let size = obj.size();
        let len = usize::try_from(size)
            .map_err(|_| Error::InvalidArgument("buffer larger than the address space".into()))?;
        let align = vk.caps.min_imported_host_pointer_alignment.max(1);
        if size % align != 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: {what} has {size} bytes, not a multiple of minImportedHostPointerAlignment \
                 {align} (fill the list with Vulkan::fill)",
                vk.label
            )));
        }
        let mapping = host_mapping(memfd, len, &what)?;
        let host: *mut c_void = mapping.as_mut_ptr().cast();
        if (host as u64) % align != 0 {
            return Err(Error::InvalidArgument(format!(
                "{}: the mapping of {what} at {:p} is not aligned to \
                 minImportedHostPointerAlignment {align}",
                vk.label, host
            )));
        }
        let host_fn = vk.host_fn.as_ref().ok_or_else(|| Error::Unavailable {
            what: format!("host memory import on {}", vk.label),
            why: "VK_EXT_external_memory_host is not enabled".into(),
        })?;
        let handle_type = vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT;
        let mut hp = vk::MemoryHostPointerPropertiesEXT::default();
        // SAFETY: the pointer is our live mapping; `hp` is a valid output structure.
        let r = unsafe {
            (host_fn.fp().get_memory_host_pointer_properties_ext)(
                vk.device.handle(),
                handle_type,
                host,
                &mut hp,
            )
        };
        if r != vk::Result::SUCCESS {
            return Err(vk_err(
                &vk.label,
                &format!("vkGetMemoryHostPointerPropertiesEXT({what})"),
                r,
            ));
        }
        let type_index = VkMemory::pick_type(vk, hp.memory_type_bits, "host pointer import")?;
        let mut imp = vk::ImportMemoryHostPointerInfoEXT::default()
            .handle_type(handle_type)
            .host_pointer(host);
        let ainfo = vk::MemoryAllocateInfo::default()
            .allocation_size(size)
            .memory_type_index(type_index)
            .push_next(&mut imp);
        // SAFETY: imports our mapping (aligned, whole) into device memory freed in Drop before
        // the mapping is unmapped.
        let memory = unsafe { vk.device.allocate_memory(&ainfo, None) }.map_err(|r| {
            vk_err(
                &vk.label,
                &format!("vkAllocateMemory(VkImportMemoryHostPointerInfoEXT of {what})"),
                r,
            )
        })?;
        Ok(VkMemory {
            vk,
            obj,
            memory,
            type_index,
            handle_type,
            size,
            path: VkImportPath::HostPointer,
            _mapping: Some(mapping),
        })
    }

    fn import_dma_buf(vk: &'a Vulkan, obj: &'a Object) -> Result<VkMemory<'a>> {
        let what = format!("dma-buf {:?}", obj.name());
        let fd_fn = vk.fd_fn.as_ref().ok_or_else(|| Error::Unavailable {
            what: format!("fd import on {}", vk.label),
            why: "VK_KHR_external_memory_fd is not enabled".into(),
        })?;
        let handle_type = vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT;
        let mut fp = vk::MemoryFdPropertiesKHR::default();
        // SAFETY: the fd is the object's live dma-buf; the driver does not take it.
        unsafe { fd_fn.get_memory_fd_properties(handle_type, obj.fd().as_raw_fd(), &mut fp) }
            .map_err(|r| vk_err(&vk.label, &format!("vkGetMemoryFdPropertiesKHR({what})"), r))?;
        let type_index = VkMemory::pick_type(vk, fp.memory_type_bits, "dma-buf import")?;
        // Vulkan takes ownership of the fd on success: give it a duplicate.
        let dup = rustix::io::fcntl_dupfd_cloexec(obj.fd(), 0)
            .map_err(|e| Error::sys("F_DUPFD_CLOEXEC", "dma-buf", e))?;
        let mut imp = vk::ImportMemoryFdInfoKHR::default()
            .handle_type(handle_type)
            .fd(dup.as_raw_fd());
        let ainfo = vk::MemoryAllocateInfo::default()
            .allocation_size(obj.size())
            .memory_type_index(type_index)
            .push_next(&mut imp);
        // SAFETY: imports our duplicate; on success the driver owns it (forgotten below).
        let memory = unsafe { vk.device.allocate_memory(&ainfo, None) }.map_err(|r| {
            vk_err(
                &vk.label,
                &format!("vkAllocateMemory(VkImportMemoryFdInfoKHR DMA_BUF of {what})"),
                r,
            )
        })?;
        std::mem::forget(dup);
        Ok(VkMemory {
            vk,
            obj,
            memory,
            type_index,
            handle_type,
            size: obj.size(),
            path: VkImportPath::DmaBuf,
            _mapping: None,
        })
    }

    /// The memory handle.
    pub fn memory(&self) -> vk::DeviceMemory {
        self.memory
    }

    /// The imported size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How the object reached Vulkan.
    pub fn path(&self) -> VkImportPath {
        self.path
    }

    /// The external handle type images and buffers over it are created with.
    pub fn handle_type(&self) -> vk::ExternalMemoryHandleTypeFlags {
        self.handle_type
    }

    /// The object.
    pub fn object(&self) -> &Object {
        self.obj
    }

    fn bind_check(&self, req: &vk::MemoryRequirements, offset: u64, what: &str) -> Result<()> {
        if req.memory_type_bits & (1 << self.type_index) == 0
            || offset % req.alignment.max(1) != 0
            || offset.checked_add(req.size).is_none_or(|e| e > self.size)
        {
            return Err(Error::Device {
                device: self.vk.label.clone(),
                what: format!(
                    "{what} needs {} bytes aligned to {} in memory types {:#x}; the import of \
                     {:?} has {} bytes of type {} (offset {offset})",
                    req.size,
                    req.alignment,
                    req.memory_type_bits,
                    self.obj.name(),
                    self.size,
                    self.type_index
                ),
            });
        }
        Ok(())
    }
}

impl Drop for VkMemory<'_> {
    fn drop(&mut self) {
        // SAFETY: every image and buffer bound to the memory borrowed `self` and is gone; the
        // memory is freed once, before the host mapping (a field) is unmapped.
        unsafe { self.vk.device.free_memory(self.memory, None) };
    }
}

/// A buffer over (part of) imported memory, destroyed on drop.
pub struct VkBuffer<'a> {
    mem: &'a VkMemory<'a>,
    buffer: vk::Buffer,
    offset: u64,
    size: u64,
}

impl std::fmt::Debug for VkBuffer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VkBuffer")
            .field("memory", &self.mem)
            .field("offset", &self.offset)
            .field("size", &self.size)
            .finish()
    }
}

impl<'a> VkBuffer<'a> {
    /// A transfer source and destination buffer of `size` bytes at `offset` of `mem`.
    pub fn new(mem: &'a VkMemory<'a>, offset: u64, size: u64) -> Result<VkBuffer<'a>> {
        let vk = mem.vk;
        let mut ext = vk::ExternalMemoryBufferCreateInfo::default().handle_types(mem.handle_type);
        let info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(vk::BufferUsageFlags::TRANSFER_SRC | vk::BufferUsageFlags::TRANSFER_DST)
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
            .push_next(&mut ext);
        // SAFETY: `info` and its chain live across the call.
        let buffer = unsafe { vk.device.create_buffer(&info, None) }
            .map_err(|r| vk_err(&vk.label, "vkCreateBuffer", r))?;
        let b = VkBuffer {
            mem,
            buffer,
            offset,
            size,
        };
        // SAFETY: `buffer` is live.
        let req = unsafe { vk.device.get_buffer_memory_requirements(buffer) };
        mem.bind_check(&req, offset, &format!("a buffer of {size} bytes"))?;
        // SAFETY: checked: the memory type fits, the range lies in the memory, aligned.
        unsafe { vk.device.bind_buffer_memory(buffer, mem.memory, offset) }
            .map_err(|r| vk_err(&vk.label, "vkBindBufferMemory", r))?;
        Ok(b)
    }

    /// The buffer handle.
    pub fn buffer(&self) -> vk::Buffer {
        self.buffer
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for VkBuffer<'_> {
    fn drop(&mut self) {
        // SAFETY: every submission using the buffer was waited for (submit_and_wait).
        unsafe { self.mem.vk.device.destroy_buffer(self.buffer, None) };
    }
}

/// An image over imported memory with an explicit DRM-modifier layout (unibuf's reconciled
/// plane layout), bound at offset 0; destroyed on drop.
pub struct VkImage<'a> {
    mem: &'a VkMemory<'a>,
    image: vk::Image,
    layout: ImageLayout,
    state: Cell<vk::ImageLayout>,
}

impl std::fmt::Debug for VkImage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VkImage")
            .field("memory", &self.mem)
            .field("layout", &self.layout)
            .finish()
    }
}

/// The tightly packed copy of an image's planes in a buffer (what [`VkImage::copy_to_buffer`]
/// writes and [`VkImage::copy_from_buffer`] reads): each plane's rows without padding, planes
/// one after the other at 16-byte-aligned offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedPlanes {
    /// Per plane: (offset, bytes per row, rows).
    pub planes: Vec<(u64, u64, u64)>,
    /// Total bytes.
    pub size: u64,
}

/// The packed layout of `layout`'s planes (see [`PackedPlanes`]).
pub fn packed_planes(layout: &ImageLayout) -> PackedPlanes {
    let mut planes = Vec::with_capacity(layout.planes.len());
    let mut cursor = 0u64;
    for p in &layout.planes {
        let row = (p.width * u64::from(p.bpp)).div_ceil(8);
        planes.push((cursor, row, p.height));
        cursor = (cursor + row * p.height).next_multiple_of(16);
    }
    PackedPlanes {
        planes,
        size: cursor,
    }
}

/// Checks `layout`'s pitches and plane offsets against the derived rule `pa`: every plane's
/// pitch a multiple of its alignment (so at least `align_up(row bytes, alignment)`), every
/// later plane's offset a multiple of the plane-offset alignment.
pub fn check_pitch_rule(layout: &ImageLayout, pa: &PitchAlignment, device: &str) -> Result<()> {
    for (i, p) in layout.planes.iter().enumerate() {
        let a = pa.plane_alignment.get(i).copied().unwrap_or(pa.alignment);
        let row = (p.width * u64::from(p.bpp)).div_ceil(8);
        let least = align_up(row, a).unwrap_or(u64::MAX);
        if p.pitch % a != 0 || p.pitch < least {
            return Err(Error::InvalidArgument(format!(
                "{device}: plane {i} of a {}x{} {} image has pitch {}, which breaks the \
                 driver's linear pitch alignment of {a} bytes (width {} samples of {} bytes: the \
                 pitch must be a multiple of {a}, at least {least}); the driver would accept it \
                 and read wrong pixels, so unibuf refuses it",
                layout.width,
                layout.height,
                layout.format.name(),
                p.pitch,
                p.width,
                u64::from(p.bpp) / 8,
            )));
        }
        if i > 0 && p.offset % pa.plane_offset_alignment != 0 {
            return Err(Error::InvalidArgument(format!(
                "{device}: plane {i} of a {} image starts at offset {}, not a multiple of the \
                 driver's plane-offset alignment {}",
                layout.format.name(),
                p.offset,
                pa.plane_offset_alignment
            )));
        }
    }
    Ok(())
}

impl<'a> VkImage<'a> {
    /// An image with the object's reconciled image layout (transfer source and destination).
    pub fn new(mem: &'a VkMemory<'a>) -> Result<VkImage<'a>> {
        let layout = mem.obj.list().image().cloned().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{}: {:?} has no image layout (its list is not an image)",
                mem.vk.label,
                mem.obj.name()
            ))
        })?;
        VkImage::with_layout(mem, &layout)
    }

    /// An image with an explicit `layout` over `mem` (offsets from the memory's start). Refused
    /// unless the layout is LINEAR, its pitches and plane offsets keep the driver's derived rule
    /// ([`Vulkan::linear_pitch_alignment`]), the device can import such images from this handle
    /// type, and the driver reports back exactly the layout it was given.
    pub fn with_layout(mem: &'a VkMemory<'a>, layout: &ImageLayout) -> Result<VkImage<'a>> {
        let vk = mem.vk;
        vk.need_modifiers("explicit image layouts")?;
        if layout.modifier != MOD_LINEAR {
            return Err(Error::InvalidArgument(format!(
                "{}: modifier {:#x}: unibuf imports LINEAR layouts only (its pitch rule is \
                 derived for LINEAR)",
                vk.label, layout.modifier
            )));
        }
        let vf = vk.vk_format(layout.format)?;
        let pa = vk.linear_pitch_alignment(layout.format)?;
        check_pitch_rule(layout, &pa, &vk.label)?;
        let usage = vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST;
        vk.check_importable(vf, layout, usage, mem.handle_type)?;

        let plane_layouts: Vec<vk::SubresourceLayout> = layout
            .planes
            .iter()
            .map(|p| vk::SubresourceLayout {
                offset: p.offset,
                // VUID-VkImageDrmFormatModifierExplicitCreateInfoEXT-size-02267: must be 0.
                size: 0,
                row_pitch: p.pitch,
                array_pitch: 0,
                depth_pitch: 0,
            })
            .collect();
        let mut explicit = vk::ImageDrmFormatModifierExplicitCreateInfoEXT::default()
            .drm_format_modifier(layout.modifier)
            .plane_layouts(&plane_layouts);
        let mut ext = vk::ExternalMemoryImageCreateInfo::default().handle_types(mem.handle_type);
        let info = image_info(vf, layout, usage, vk::ImageLayout::PREINITIALIZED)
            .push_next(&mut explicit)
            .push_next(&mut ext);
        // SAFETY: `info` and its chain (plane layouts) live across the call; the combination was
        // reported importable by vkGetPhysicalDeviceImageFormatProperties2.
        let image = unsafe { vk.device.create_image(&info, None) }.map_err(|r| {
            vk_err(
                &vk.label,
                &format!(
                    "vkCreateImage({}x{} {} with explicit layout {:?})",
                    layout.width,
                    layout.height,
                    layout.format.name(),
                    layout
                        .planes
                        .iter()
                        .map(|p| (p.offset, p.pitch))
                        .collect::<Vec<_>>()
                ),
                r,
            )
        })?;
        let img = VkImage {
            mem,
            image,
            layout: layout.clone(),
            state: Cell::new(vk::ImageLayout::PREINITIALIZED),
        };
        for (i, p) in layout.planes.iter().enumerate() {
            // SAFETY: `image` is live; the aspect names one of its memory planes.
            let got = unsafe {
                vk.device.get_image_subresource_layout(
                    image,
                    vk::ImageSubresource {
                        aspect_mask: memory_plane_aspect(i),
                        mip_level: 0,
                        array_layer: 0,
                    },
                )
            };
            if got.offset != p.offset || got.row_pitch != p.pitch {
                return Err(Error::Device {
                    device: vk.label.clone(),
                    what: format!(
                        "vkCreateImage with an explicit layout: plane {i} reports offset {} \
                         rowPitch {}, but was given offset {} pitch {}",
                        got.offset, got.row_pitch, p.offset, p.pitch
                    ),
                });
            }
        }
        // SAFETY: `image` is live.
        let req = unsafe { vk.device.get_image_memory_requirements(image) };
        mem.bind_check(
            &req,
            0,
            &format!(
                "a {}x{} {} image",
                layout.width,
                layout.height,
                layout.format.name()
            ),
        )?;
        // SAFETY: checked: the memory type fits and the image's requirements lie in the memory.
        unsafe { vk.device.bind_image_memory(image, mem.memory, 0) }
            .map_err(|r| vk_err(&vk.label, "vkBindImageMemory", r))?;
        Ok(img)
    }

    /// The image handle.
    pub fn image(&self) -> vk::Image {
        self.image
    }

    /// The layout it was created with.
    pub fn layout(&self) -> &ImageLayout {
        &self.layout
    }

    /// The packed layout [`Self::copy_to_buffer`] writes.
    pub fn packed(&self) -> PackedPlanes {
        packed_planes(&self.layout)
    }

    fn regions(&self, buffer_offset: u64) -> Vec<vk::BufferImageCopy> {
        let packed = self.packed();
        let n = self.layout.planes.len();
        self.layout
            .planes
            .iter()
            .zip(packed.planes)
            .enumerate()
            .map(|(i, (p, (off, _, _)))| vk::BufferImageCopy {
                buffer_offset: buffer_offset + off,
                buffer_row_length: 0,
                buffer_image_height: 0,
                image_subresource: vk::ImageSubresourceLayers {
                    aspect_mask: format_plane_aspect(i, n),
                    mip_level: 0,
                    base_array_layer: 0,
                    layer_count: 1,
                },
                image_offset: vk::Offset3D::default(),
                image_extent: vk::Extent3D {
                    width: p.width as u32,
                    height: p.height as u32,
                    depth: 1,
                },
            })
            .collect()
    }

    fn copy(&self, buf: &VkBuffer<'_>, offset: u64, to_buffer: bool) -> Result<()> {
        let vk = self.mem.vk;
        let need = self.packed().size;
        if offset.checked_add(need).is_none_or(|e| e > buf.size) {
            return Err(Error::InvalidArgument(format!(
                "{}: a packed copy of {need} bytes at offset {offset} exceeds the buffer of {}",
                vk.label, buf.size
            )));
        }
        let regions = self.regions(offset);
        let old = self.state.get();
        vk.submit_and_wait(|d, cb| {
            let range = vk::ImageSubresourceRange {
                aspect_mask: vk::ImageAspectFlags::COLOR,
                base_mip_level: 0,
                level_count: 1,
                base_array_layer: 0,
                layer_count: 1,
            };
            let to_general = vk::ImageMemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::HOST_WRITE | vk::AccessFlags::TRANSFER_WRITE)
                .dst_access_mask(vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE)
                .old_layout(old)
                .new_layout(vk::ImageLayout::GENERAL)
                .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
                .image(self.image)
                .subresource_range(range);
            let host_read = [vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
                .dst_access_mask(vk::AccessFlags::HOST_READ)];
            // SAFETY: `cb` is recording; the image, buffer and regions were checked above and
            // outlive the wait in submit_and_wait.
            unsafe {
                d.cmd_pipeline_barrier(
                    cb,
                    vk::PipelineStageFlags::HOST | vk::PipelineStageFlags::TRANSFER,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::DependencyFlags::empty(),
                    &[],
                    &[],
                    &[to_general],
                );
                if to_buffer {
                    d.cmd_copy_image_to_buffer(
                        cb,
                        self.image,
                        vk::ImageLayout::GENERAL,
                        buf.buffer,
                        &regions,
                    );
                } else {
                    d.cmd_copy_buffer_to_image(
                        cb,
                        buf.buffer,
                        self.image,
                        vk::ImageLayout::GENERAL,
                        &regions,
                    );
                }
                d.cmd_pipeline_barrier(
                    cb,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::PipelineStageFlags::HOST,
                    vk::DependencyFlags::empty(),
                    &host_read,
                    &[],
                    &[],
                );
            }
        })?;
        self.state.set(vk::ImageLayout::GENERAL);
        Ok(())
    }

    /// Copies every plane into `buf` at `offset`, packed ([`PackedPlanes`]), and waits.
    pub fn copy_to_buffer(&self, buf: &VkBuffer<'_>, offset: u64) -> Result<()> {
        self.copy(buf, offset, true)
    }

    /// Copies every plane from `buf` at `offset` (packed, as [`PackedPlanes`] says) into the
    /// image, and waits.
    pub fn copy_from_buffer(&self, buf: &VkBuffer<'_>, offset: u64) -> Result<()> {
        self.copy(buf, offset, false)
    }
}

impl Drop for VkImage<'_> {
    fn drop(&mut self) {
        // SAFETY: every submission using the image was waited for (submit_and_wait).
        unsafe { self.mem.vk.device.destroy_image(self.image, None) };
    }
}

fn image_info<'b>(
    vf: vk::Format,
    layout: &ImageLayout,
    usage: vk::ImageUsageFlags,
    initial: vk::ImageLayout,
) -> vk::ImageCreateInfo<'b> {
    vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(vf)
        .extent(vk::Extent3D {
            width: layout.width,
            height: layout.height,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT)
        .usage(usage)
        .sharing_mode(vk::SharingMode::EXCLUSIVE)
        .initial_layout(initial)
}

impl Vulkan {
    /// Whether a `width × height` LINEAR image of `format` (transfer source and destination) can
    /// be imported from memory of `handle_type` (`HOST_ALLOCATION_EXT`, `DMA_BUF_EXT`): `Err`
    /// says what the driver answered.
    pub fn image_import_support(
        &self,
        format: PixelFormat,
        width: u32,
        height: u32,
        handle_type: vk::ExternalMemoryHandleTypeFlags,
    ) -> Result<()> {
        self.need_modifiers("explicit image layouts")?;
        let vf = self.vk_format(format)?;
        let layout = ImageLayout::compute(&crate::layout::ImageParams::new(format, width, height))
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let usage = vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST;
        self.check_importable(vf, &layout, usage, handle_type)
    }

    /// Whether images of `vf` with `layout`'s modifier and size can be imported from memory of
    /// `handle_type` (`vkGetPhysicalDeviceImageFormatProperties2` with the modifier and the
    /// external handle type).
    fn check_importable(
        &self,
        vf: vk::Format,
        layout: &ImageLayout,
        usage: vk::ImageUsageFlags,
        handle_type: vk::ExternalMemoryHandleTypeFlags,
    ) -> Result<()> {
        let mut modinfo = vk::PhysicalDeviceImageDrmFormatModifierInfoEXT::default()
            .drm_format_modifier(layout.modifier)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        let mut extinfo =
            vk::PhysicalDeviceExternalImageFormatInfo::default().handle_type(handle_type);
        let info = vk::PhysicalDeviceImageFormatInfo2::default()
            .format(vf)
            .ty(vk::ImageType::TYPE_2D)
            .tiling(vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT)
            .usage(usage)
            .push_next(&mut modinfo)
            .push_next(&mut extinfo);
        let mut extprops = vk::ExternalImageFormatProperties::default();
        let mut props = vk::ImageFormatProperties2::default().push_next(&mut extprops);
        let what = format!(
            "{}x{} {} images (LINEAR modifier) over memory of handle type {:#x} on {}",
            layout.width,
            layout.height,
            layout.format.name(),
            handle_type.as_raw(),
            self.label
        );
        // SAFETY: both chains hold structures of enabled extensions and live across the call.
        unsafe {
            self.instance.get_physical_device_image_format_properties2(
                self.physical,
                &info,
                &mut props,
            )
        }
        .map_err(|r| Error::Unavailable {
            what: what.clone(),
            why: format!("vkGetPhysicalDeviceImageFormatProperties2: VK_{r:?}"),
        })?;
        let max = props.image_format_properties.max_extent;
        let feats = extprops.external_memory_properties.external_memory_features;
        if !feats.contains(vk::ExternalMemoryFeatureFlags::IMPORTABLE) {
            return Err(Error::Unavailable {
                what,
                why: format!(
                    "vkGetPhysicalDeviceImageFormatProperties2 reports external memory \
                     features {:#x} (not IMPORTABLE)",
                    feats.as_raw()
                ),
            });
        }
        if layout.width > max.width || layout.height > max.height {
            return Err(Error::Unavailable {
                what,
                why: format!("the largest such image is {}x{}", max.width, max.height),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ImageParams;

    fn pa(format: PixelFormat, a: u64) -> PitchAlignment {
        PitchAlignment {
            format,
            plane_alignment: vec![a; format.planes().len()],
            alignment: a,
            plane_offset_alignment: a,
            memory_alignment: 4096,
            source: "test",
            probes: vec![],
        }
    }

    #[test]
    fn pitch_rule_refuses_pitches_below_the_alignment() {
        let mut p = ImageParams::new(PixelFormat::Xrgb8888, 1001, 4);
        p.pitch_align = 4;
        let l = ImageLayout::compute(&p).unwrap();
        assert_eq!(l.planes[0].pitch, 4004);
        let e = check_pitch_rule(&l, &pa(PixelFormat::Xrgb8888, 32), "dev")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pitch 4004") && e.contains("32") && e.contains("4032"),
            "{e}"
        );
        p.pitch_align = 32;
        let l = ImageLayout::compute(&p).unwrap();
        check_pitch_rule(&l, &pa(PixelFormat::Xrgb8888, 32), "dev").unwrap();
    }

    #[test]
    fn packed_planes_of_nv12() {
        let mut p = ImageParams::new(PixelFormat::Nv12, 202, 66);
        p.pitch_align = 32;
        let l = ImageLayout::compute(&p).unwrap();
        let k = packed_planes(&l);
        assert_eq!(k.planes[0], (0, 202, 66));
        assert_eq!(k.planes[1], ((202 * 66u64).next_multiple_of(16), 202, 33));
        check_pitch_rule(&l, &pa(PixelFormat::Nv12, 32), "dev").unwrap();
    }

    #[test]
    fn pow2_divisors() {
        assert_eq!(pow2_divisor(4032), 64);
        assert_eq!(pow2_divisor(96), 32);
        assert_eq!(pow2_divisor(1), 1);
    }
}
