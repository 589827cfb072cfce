//! GPU accessors: a constraint provider and the import descriptor Vulkan and EGL expect.
//!
//! unibuf does not link a graphics API. [`GpuConstraints`] states what a GPU needs of a buffer
//! (base alignment, pitch alignment, which GPU); [`ImportDescriptor`] describes an allocated buffer
//! in the terms of the import extensions:
//!
//! - `EGL_EXT_image_dma_buf_import` (+ `_modifiers`): [`ImportDescriptor::egl_attribs`] is the
//!   attribute list for `eglCreateImage(dpy, EGL_NO_CONTEXT, EGL_LINUX_DMA_BUF_EXT, NULL, attribs)`.
//! - `VK_EXT_external_memory_dma_buf` + `VK_EXT_image_drm_format_modifier`:
//!   [`ImportDescriptor::vk_import`] gives the `VkImportMemoryFdInfoKHR` handle type and fd, the
//!   allocation size, the `VkFormat`, and the modifier with one `VkSubresourceLayout` per plane for
//!   `VkImageDrmFormatModifierExplicitCreateInfoEXT`.
//!
//! A test on a real GPU follows in a later issue; the shapes here are checked against the
//! extension texts by unit tests.

use crate::attr::{AccessorKind, AttrList, BufferType};
use crate::error::{Error, Result};
use rustix::fd::{AsRawFd, BorrowedFd};

/// A GPU's identity; it lives in the model layer (attribute values carry it) and is re-exported
/// here, where GPU code looks for it.
pub use crate::model::GpuId;

/// What a GPU accessor needs of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuConstraints {
    /// Always [`AccessorKind::Gpu`].
    pub accessor: AccessorKind,
    /// The GPU that will access the buffer.
    pub gpu: GpuId,
    /// Base-address alignment in bytes (a power of two).
    pub alignment: u64,
    /// Pitch alignment in bytes for linear images (a power of two).
    pub pitch_alignment: u32,
}

impl GpuConstraints {
    /// Adds this GPU's needs to an accessor's list (the list states the buffer type and the
    /// permission): accessor kind `Gpu`, the GPU id, and the alignments that apply to its types.
    pub fn fill(&self, list: &mut AttrList) -> Result<()> {
        list.set_accessor_kind(AccessorKind::Gpu)?
            .set_gpu_ids(&[self.gpu])?;
        let types = list.types();
        if types.contains(BufferType::Image) || types.contains(BufferType::ImagePyramid) {
            list.set_base_align(self.alignment)?
                .set_pitch_align(self.pitch_alignment as u64)?;
        }
        if types.contains(BufferType::RawBuffer) {
            list.set_raw_align(self.alignment)?;
        }
        if types.contains(BufferType::Tensor) {
            list.set_tensor_base_align(self.alignment)?;
        }
        Ok(())
    }

    /// A GPU's constraints, with the alignments checked to be powers of two. Typical values: 4096
    /// and 256 (Vulkan's `optimalBufferCopyRowPitchAlignment` and linear-image row pitch on most
    /// desktop GPUs; Tegra's are 512 and 64).
    pub fn new(gpu: GpuId, alignment: u64, pitch_alignment: u32) -> Result<GpuConstraints> {
        if !alignment.is_power_of_two() || !pitch_alignment.is_power_of_two() {
            return Err(Error::InvalidArgument(format!(
                "GPU alignments must be powers of two: base {alignment}, pitch {pitch_alignment}"
            )));
        }
        Ok(GpuConstraints {
            accessor: AccessorKind::Gpu,
            gpu,
            alignment,
            pitch_alignment,
        })
    }
}

/// One plane of an imported image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaneLayout {
    /// Byte offset of the plane in the buffer.
    pub offset: u64,
    /// Bytes per row.
    pub pitch: u32,
    /// Bytes of the plane (pitch × its aligned height).
    pub size: u64,
}

/// An allocated image as the GPU import extensions describe it.
#[derive(Debug, Clone)]
pub struct ImportDescriptor<'a> {
    /// The dma-buf.
    pub fd: BorrowedFd<'a>,
    /// Size of the dma-buf in bytes (Vulkan's `allocationSize`).
    pub size: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// DRM fourcc.
    pub fourcc: u32,
    /// DRM modifier (`DRM_FORMAT_MOD_LINEAR` = 0 for unibuf's linear layouts).
    pub modifier: u64,
    /// Planes, 1 to 4.
    pub planes: Vec<PlaneLayout>,
}

/// `EGL_NONE`.
pub const EGL_NONE: i64 = 0x3038;
/// `EGL_WIDTH`.
pub const EGL_WIDTH: i64 = 0x3057;
/// `EGL_HEIGHT`.
pub const EGL_HEIGHT: i64 = 0x3056;
/// `EGL_LINUX_DMA_BUF_EXT`: the `target` of `eglCreateImage`.
pub const EGL_LINUX_DMA_BUF_EXT: u32 = 0x3270;
/// `EGL_LINUX_DRM_FOURCC_EXT`.
pub const EGL_LINUX_DRM_FOURCC_EXT: i64 = 0x3271;
/// `EGL_DMA_BUF_PLANE{0,1,2,3}_FD_EXT`.
pub const EGL_PLANE_FD: [i64; 4] = [0x3272, 0x3275, 0x3278, 0x3440];
/// `EGL_DMA_BUF_PLANE{0,1,2,3}_OFFSET_EXT`.
pub const EGL_PLANE_OFFSET: [i64; 4] = [0x3273, 0x3276, 0x3279, 0x3441];
/// `EGL_DMA_BUF_PLANE{0,1,2,3}_PITCH_EXT`.
pub const EGL_PLANE_PITCH: [i64; 4] = [0x3274, 0x3277, 0x327A, 0x3442];
/// `EGL_DMA_BUF_PLANE{0,1,2,3}_MODIFIER_LO_EXT`.
pub const EGL_PLANE_MODIFIER_LO: [i64; 4] = [0x3443, 0x3445, 0x3447, 0x3449];
/// `EGL_DMA_BUF_PLANE{0,1,2,3}_MODIFIER_HI_EXT`.
pub const EGL_PLANE_MODIFIER_HI: [i64; 4] = [0x3444, 0x3446, 0x3448, 0x344A];

/// `VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT`.
pub const VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT: u32 = 0x0000_0200;

/// `VkSubresourceLayout`, one per memory plane of a DRM-format-modifier image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VkSubresourceLayout {
    /// `offset`.
    pub offset: u64,
    /// `size`: 0 in an explicit create info (the Vulkan spec requires it).
    pub size: u64,
    /// `rowPitch`.
    pub row_pitch: u64,
    /// `arrayPitch` (0: single-layer 2D image).
    pub array_pitch: u64,
    /// `depthPitch` (0: 2D image).
    pub depth_pitch: u64,
}

/// Everything a Vulkan import needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkImport {
    /// `VkImportMemoryFdInfoKHR::handleType`.
    pub handle_type: u32,
    /// `VkImportMemoryFdInfoKHR::fd` (Vulkan takes ownership: pass a dup).
    pub fd: i32,
    /// `VkMemoryAllocateInfo::allocationSize`.
    pub allocation_size: u64,
    /// `VkImageCreateInfo::format` (a `VkFormat` value), where the fourcc has one.
    pub vk_format: Option<i32>,
    /// `VkImageDrmFormatModifierExplicitCreateInfoEXT::drmFormatModifier`.
    pub drm_format_modifier: u64,
    /// `...::pPlaneLayouts` (count = `drmFormatModifierPlaneCount`).
    pub plane_layouts: Vec<VkSubresourceLayout>,
}

/// The `VkFormat` whose memory layout a DRM fourcc has (DRM names little-endian words, Vulkan
/// names bytes: `XRGB8888` is `B8G8R8A8`).
pub fn vk_format_for(fourcc: u32) -> Option<i32> {
    use drm_fourcc::DrmFourcc as D;
    let f = D::try_from(fourcc).ok()?;
    Some(match f {
        D::Xrgb8888 | D::Argb8888 => 44, // VK_FORMAT_B8G8R8A8_UNORM
        D::Xbgr8888 | D::Abgr8888 => 37, // VK_FORMAT_R8G8B8A8_UNORM
        D::Rgb565 => 4,                  // VK_FORMAT_R5G6B5_UNORM_PACK16
        D::R8 => 9,                      // VK_FORMAT_R8_UNORM
        D::Nv12 => 1_000_156_003,        // VK_FORMAT_G8_B8R8_2PLANE_420_UNORM
        D::Yuyv => 1_000_156_000,        // VK_FORMAT_G8B8G8R8_422_UNORM
        _ => return None,
    })
}

impl ImportDescriptor<'_> {
    fn check(&self) -> Result<()> {
        if self.planes.is_empty() || self.planes.len() > 4 || self.width == 0 || self.height == 0 {
            return Err(Error::InvalidArgument(format!(
                "import descriptor: {} planes of a {}x{} image (1 to 4 planes, non-zero size)",
                self.planes.len(),
                self.width,
                self.height
            )));
        }
        for (i, p) in self.planes.iter().enumerate() {
            if p.offset.checked_add(p.size).is_none_or(|e| e > self.size) {
                return Err(Error::InvalidArgument(format!(
                    "import descriptor: plane {i} ({}+{}) exceeds the buffer of {} bytes",
                    p.offset, p.size, self.size
                )));
            }
        }
        Ok(())
    }

    /// The `EGLAttrib` list for `eglCreateImage` with target [`EGL_LINUX_DMA_BUF_EXT`], ending in
    /// `EGL_NONE`. Modifier attributes are included unless the modifier is
    /// `DRM_FORMAT_MOD_INVALID` (implicit layout).
    pub fn egl_attribs(&self) -> Result<Vec<i64>> {
        self.check()?;
        let mut a = vec![
            EGL_WIDTH,
            self.width as i64,
            EGL_HEIGHT,
            self.height as i64,
            EGL_LINUX_DRM_FOURCC_EXT,
            self.fourcc as i64,
        ];
        let fd = self.fd.as_raw_fd() as i64;
        for (i, p) in self.planes.iter().enumerate() {
            a.extend_from_slice(&[
                EGL_PLANE_FD[i],
                fd,
                EGL_PLANE_OFFSET[i],
                p.offset as i64,
                EGL_PLANE_PITCH[i],
                p.pitch as i64,
            ]);
            if self.modifier != super::drm::MOD_INVALID {
                a.extend_from_slice(&[
                    EGL_PLANE_MODIFIER_LO[i],
                    (self.modifier & 0xffff_ffff) as i64,
                    EGL_PLANE_MODIFIER_HI[i],
                    (self.modifier >> 32) as i64,
                ]);
            }
        }
        a.push(EGL_NONE);
        Ok(a)
    }

    /// What `VK_EXT_external_memory_dma_buf` and `VK_EXT_image_drm_format_modifier` need.
    pub fn vk_import(&self) -> Result<VkImport> {
        self.check()?;
        Ok(VkImport {
            handle_type: VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT,
            fd: self.fd.as_raw_fd(),
            allocation_size: self.size,
            vk_format: vk_format_for(self.fourcc),
            drm_format_modifier: self.modifier,
            plane_layouts: self
                .planes
                .iter()
                .map(|p| VkSubresourceLayout {
                    offset: p.offset,
                    // VUID-VkImageDrmFormatModifierExplicitCreateInfoEXT-size-02267: the
                    // application's plane layouts must leave `size` 0 (the driver computes it).
                    size: 0,
                    row_pitch: p.pitch as u64,
                    array_pitch: 0,
                    depth_pitch: 0,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn gpu_id_round_trips() {
        let id = GpuId::parse("GPU-0123abcd-4567-89ef-0123-456789abcdef").unwrap();
        assert_eq!(id.to_string(), "0123abcd-4567-89ef-0123-456789abcdef");
        assert!(GpuId::parse("xyz").is_err());
        assert!(GpuConstraints::new(id, 4096, 256).is_ok());
        assert!(GpuConstraints::new(id, 4095, 256).is_err());
    }

    #[test]
    fn egl_attribs_for_nv12() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let d = ImportDescriptor {
            fd: f.as_fd(),
            size: 1920 * 1088 * 3 / 2,
            width: 1920,
            height: 1080,
            fourcc: drm_fourcc::DrmFourcc::Nv12 as u32,
            modifier: 0,
            planes: vec![
                PlaneLayout {
                    offset: 0,
                    pitch: 1920,
                    size: 1920 * 1088,
                },
                PlaneLayout {
                    offset: 1920 * 1088,
                    pitch: 1920,
                    size: 1920 * 544,
                },
            ],
        };
        let a = d.egl_attribs().unwrap();
        let fd = f.as_raw_fd() as i64;
        assert_eq!(a.last(), Some(&EGL_NONE));
        assert_eq!(a.len(), 6 + 2 * 10 + 1);
        assert_eq!(&a[6..12], &[0x3272, fd, 0x3273, 0, 0x3274, 1920]);
        assert_eq!(&a[16..22], &[0x3275, fd, 0x3276, 1920 * 1088, 0x3277, 1920]);
        let v = d.vk_import().unwrap();
        assert_eq!(v.vk_format, Some(1_000_156_003));
        assert_eq!(v.plane_layouts.len(), 2);
        assert_eq!(v.plane_layouts[1].offset, 1920 * 1088);
        assert!(
            v.plane_layouts.iter().all(|p| p.size == 0),
            "VUID-...-size-02267"
        );
        assert_eq!(v.handle_type, 0x200);
        let mut bad = d.clone();
        bad.planes[1].size = u64::MAX;
        assert!(bad.egl_attribs().is_err());
    }
}
