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
//! - `cuda`, `vulkan` (features of the same names): providers and importers for those APIs.

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod drm;
pub mod gpu;
pub mod v4l2;
pub mod vfio;
#[cfg(feature = "vulkan")]
pub mod vulkan;

#[cfg(test)]
mod tests {
    use crate::attr::{AccessorKind, AttrList, BufferType, Permission};
    use crate::interop::drm::{DrmConstraints, MOD_LINEAR};
    use crate::interop::v4l2::{PlaneConstraint, V4l2Constraints};
    use crate::interop::vfio::VfioConstraints;
    use crate::sys::v4l2::V4L2_PIX_FMT_XBGR32;

    fn camera() -> V4l2Constraints {
        V4l2Constraints {
            accessor: AccessorKind::Camera,
            device: "/dev/video0".into(),
            fourcc: V4L2_PIX_FMT_XBGR32,
            width: 636,
            height: 480,
            mplane: false,
            planes: vec![PlaneConstraint {
                pitch: 2544,
                size: 2544 * 480,
            }],
            pitch_flexible: true,
        }
    }

    fn display() -> DrmConstraints {
        DrmConstraints {
            accessor: AccessorKind::Display,
            device: "/dev/dri/card1".into(),
            plane: 31,
            formats: vec![(drm_fourcc::DrmFourcc::Xrgb8888 as u32, vec![MOD_LINEAR])],
            pitch_alignment: 256,
        }
    }

    #[test]
    fn camera_and_display_reconcile_to_one_layout() {
        let cam = camera().attr_list().unwrap();
        let disp = display()
            .attr_list(drm_fourcc::DrmFourcc::Xrgb8888 as u32, 636, 480)
            .unwrap();
        let r = crate::reconcile::reconcile([&cam, &disp]).unwrap();
        let img = r.image().expect("image layout");
        let pitch = img.planes[0].pitch;
        assert!(pitch >= 2544 && pitch % 256 == 0, "pitch {pitch}");
        assert_eq!(r.permission(), Permission::ReadWrite);
        let fb = img.drm_framebuffer().unwrap();
        assert_eq!(fb.pitches[0] as u64, pitch);
        assert!(r.memory().device_access);
        // Order independent.
        let r2 = crate::reconcile::reconcile([&disp, &cam]).unwrap();
        assert_eq!(r2.image(), r.image());
    }

    /// A Tegra-like plane offering block-linear and LINEAR for XRGB8888: the display's set
    /// comes from IN_FORMATS; with a GPU the plane's order picks, with a camera LINEAR.
    #[test]
    fn display_modifier_set_from_in_formats() {
        use crate::layout::modifier::{nvidia_block_linear_2d as bl, LINEAR};
        let xrgb = drm_fourcc::DrmFourcc::Xrgb8888 as u32;
        let (b4, b2) = (bl(0, 1, 2, 0x06, 4), bl(0, 1, 2, 0x06, 2));
        let mut d = display();
        d.formats = vec![(xrgb, vec![b4, b2, LINEAR, b4])];
        assert_eq!(d.modifier_set(xrgb), vec![b4, b2, LINEAR]);
        assert!(d
            .modifier_set(drm_fourcc::DrmFourcc::Nv12 as u32)
            .is_empty());
        let disp = d.attr_list(xrgb, 1920, 1080).unwrap();
        let mut gpu = AttrList::image(crate::layout::PixelFormat::Xrgb8888, 1920, 1080).unwrap();
        gpu.set_accessor_kind(AccessorKind::Gpu)
            .unwrap()
            .set_image_modifiers(vec![b2, LINEAR, b4])
            .unwrap();
        let r = crate::reconcile::reconcile([&gpu, &disp]).unwrap();
        let img = r.image().unwrap();
        assert_eq!(img.modifier, b4);
        let fb = img.drm_framebuffer().unwrap();
        assert_eq!((fb.modifier, fb.pitches[0]), (b4, 7680));
        assert!(img.v4l2_format().is_none(), "V4L2 takes LINEAR only");
        // The camera (V4L2) is LINEAR: with it the pick is LINEAR.
        let mut cam = camera();
        cam.width = 1920;
        cam.height = 1080;
        cam.planes[0] = PlaneConstraint {
            pitch: 7680,
            size: 7680 * 1080,
        };
        let cam = cam.attr_list().unwrap();
        let disp = d.attr_list(xrgb, 1920, 1080).unwrap();
        let r = crate::reconcile::reconcile([&cam, &disp]).unwrap();
        assert_eq!(r.image().unwrap().modifier, LINEAR);
        assert!(r.image().unwrap().v4l2_format().is_some());
        // A CPU accessor that states no set is LINEAR too.
        let mut cpu = AttrList::image(crate::layout::PixelFormat::Xrgb8888, 1920, 1080).unwrap();
        cpu.set_accessor_kind(AccessorKind::Cpu).unwrap();
        let r = crate::reconcile::reconcile([&cpu, &gpu]).unwrap();
        assert_eq!(r.image().unwrap().modifier, LINEAR);
    }

    #[test]
    fn display_refuses_unsupported_format() {
        assert!(display()
            .attr_list(drm_fourcc::DrmFourcc::Nv12 as u32, 64, 64)
            .is_err());
    }

    #[test]
    fn vfio_accessor_asks_for_pinnable_memory() {
        let v = VfioConstraints {
            accessor: AccessorKind::Vfio,
            bdf: "0000:00:03.0".into(),
            contiguous: false,
            alignment: 4096,
            iova_limit: 1 << 28,
        };
        let mut l = AttrList::with_types(&[BufferType::RawBuffer]).unwrap();
        l.set_raw_size(8192).unwrap();
        v.fill(&mut l, Permission::ReadOnly).unwrap();
        let mut cpu = AttrList::with_types(&[BufferType::RawBuffer]).unwrap();
        cpu.set_raw_size(8192)
            .unwrap()
            .set_accessor_kind(AccessorKind::Cpu)
            .unwrap()
            .set_need_cpu_access(true)
            .unwrap()
            .set_required_perm(Permission::ReadWrite)
            .unwrap();
        let r = crate::reconcile::reconcile([&l, &cpu]).unwrap();
        assert!(r.memory().pinnable);
        assert!(r.alignment() >= 4096);
    }
}
