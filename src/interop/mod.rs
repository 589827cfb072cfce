//! Constraint providers and importers for real devices: DRM/KMS, V4L2, VFIO, GPUs.
//!
//! Each provider asks a device what it needs of a buffer (the Linux counterpart of
//! `NvMediaImageFillNvSciBufAttrs`) and answers in a plain constraint struct that can be turned into
//! an attribute list; each importer consumes an allocated buffer (a dma-buf fd and its layout).
//!
//! - [`v4l2`]: a V4L2 video node: `VIDIOC_TRY_FMT`/`G_FMT` → pitch and size constraints; capture
//!   into imported dma-bufs (`V4L2_MEMORY_DMABUF`).
//! - [`drm`]: a DRM/KMS plane: `IN_FORMATS` formats and modifiers, pitch alignment; PRIME import,
//!   `ADDFB2`, atomic scanout and writeback readback.
//! - [`vfio`]: a PCIe device behind an IOMMU: pinnable memory, read-only IOMMU maps, QEMU `edu`.
//! - [`gpu`]: a GPU accessor's constraints and the import descriptor Vulkan and EGL expect.

pub mod drm;
pub mod gpu;
pub mod png;
pub mod v4l2;
pub mod vfio;
