//! Layouts checked against independent references written down here, not against the code's
//! own output.
//!
//! V4L2 (Documentation/userspace-api/media/v4l/pixfmt-yuv-planar.rst, pixfmt-packed-yuv.rst,
//! and v4l2_fill_pixfmt in drivers/media/v4l2-core/v4l2-common.c):
//! - NV12: Y plane of `bytesperline` × height, then the CbCr plane with the same
//!   `bytesperline` and height / 2 lines; sizeimage = bytesperline × height × 3 / 2.
//! - YUV420 (YU12): Y plane, then Cb then Cr, each with bytesperline / 2 and height / 2 lines;
//!   sizeimage = bytesperline × height × 3 / 2.
//! - YUYV: one plane, 2 bytes per pixel: bytesperline = width × 2, sizeimage = bytesperline ×
//!   height.
//!
//! DRM dumb buffers (drm_mode_create_dumb / drm_mode_size_dumb in drivers/gpu/drm/drm_dumb_buffers.c):
//! pitch = DIV_ROUND_UP(width × bpp, 8) rounded up to the hardware pitch alignment, size =
//! pitch × height rounded up to the page size.

use unibuf::attr::{AttrList, ScanType};
use unibuf::layout::{fourcc, ImageLayout, ImageParams, PixelFormat};
use unibuf::reconcile::reconcile;

fn layout(format: PixelFormat, w: u32, h: u32) -> ImageLayout {
    reconcile([&AttrList::image(format, w, h).unwrap()])
        .unwrap()
        .image()
        .unwrap()
        .clone()
}

#[test]
fn v4l2_nv12() {
    for (w, h, bpl, size) in [(1920, 1080, 1920, 3_110_400), (640, 480, 640, 460_800)] {
        let l = layout(PixelFormat::Nv12, w, h);
        let v = l.v4l2_format().unwrap();
        assert_eq!(v.pixelformat, fourcc(b"NV12"));
        assert_eq!(v.bytesperline, bpl);
        assert_eq!(v.sizeimage, size);
        assert_eq!(l.planes[1].offset, u64::from(bpl) * u64::from(h));
        assert_eq!(l.planes[1].pitch, u64::from(bpl));
        assert_eq!(l.planes[1].aligned_height, u64::from(h / 2));
    }
}

#[test]
fn v4l2_yuv420() {
    for (w, h, bpl, size, cb, cr) in [
        (1920, 1080, 1920, 3_110_400, 2_073_600, 2_592_000),
        (640, 480, 640, 460_800, 307_200, 384_000),
    ] {
        let l = layout(PixelFormat::Yuv420, w, h);
        let v = l.v4l2_format().unwrap();
        assert_eq!(v.pixelformat, fourcc(b"YU12"));
        assert_eq!(v.bytesperline, bpl);
        assert_eq!(v.sizeimage, size);
        assert_eq!(l.planes[1].offset, cb);
        assert_eq!(l.planes[2].offset, cr);
        assert_eq!(l.planes[1].pitch, u64::from(bpl / 2));
        assert_eq!(l.planes[2].pitch, u64::from(bpl / 2));
    }
}

#[test]
fn v4l2_yuyv() {
    for (w, h, bpl, size) in [(1920, 1080, 3840, 4_147_200), (640, 480, 1280, 614_400)] {
        let l = layout(PixelFormat::Yuyv, w, h);
        let v = l.v4l2_format().unwrap();
        assert_eq!(v.pixelformat, fourcc(b"YUYV"));
        assert_eq!(v.bytesperline, bpl);
        assert_eq!(v.sizeimage, size);
    }
}

#[test]
fn v4l2_provider_min_pitch() {
    // A driver answering VIDIOC_TRY_FMT with bytesperline 2048 for NV12 1920x1080: the chroma
    // plane follows at 2048 × 1080 with the same pitch, sizeimage 2048 × 1080 × 3 / 2.
    let mut cam = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    cam.set_min_pitch(2048)
        .unwrap()
        .set_min_size(3_317_760)
        .unwrap();
    let r = reconcile([&cam]).unwrap();
    let v = r.image().unwrap().v4l2_format().unwrap();
    assert_eq!((v.bytesperline, v.sizeimage), (2048, 3_317_760));
    // A YUV420 driver with bytesperline 1984: chroma pitch 992.
    let mut cam = AttrList::image(PixelFormat::Yuv420, 1920, 1080).unwrap();
    cam.set_min_pitch(1984).unwrap();
    let img = reconcile([&cam]).unwrap().image().unwrap().clone();
    assert_eq!(img.planes[1].pitch, 992);
    assert_eq!(img.v4l2_format().unwrap().sizeimage, 1984 * 1080 * 3 / 2);
}

#[test]
fn v4l2_provider_exact_pitch() {
    // A driver that takes only bytesperline 1920 for NV12 1920x1080.
    let mut cam = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    cam.set_exact_pitch(1920)
        .unwrap()
        .set_accessor_name("camera")
        .unwrap();
    let mut gpu = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    gpu.set_pitch_align(128)
        .unwrap()
        .set_accessor_name("gpu")
        .unwrap();
    let r = reconcile([&cam, &gpu]).unwrap();
    let v = r.image().unwrap().v4l2_format().unwrap();
    assert_eq!((v.bytesperline, v.sizeimage), (1920, 3_110_400));
    // A display wanting 256-byte pitches cannot share it: 1920 is not a multiple of 256.
    let mut disp = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    disp.set_pitch_align(256)
        .unwrap()
        .set_accessor_name("display")
        .unwrap();
    let c = reconcile([&cam, &disp]).unwrap_err();
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        vec![unibuf::attr::Key::ImageExactPitch]
    );
    assert!(c.to_string().contains("camera = 1920"), "{c}");
    // Nor can a list needing a wider minimum pitch.
    let mut wide = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    wide.set_min_pitch(2048).unwrap();
    assert!(reconcile([&cam, &wide]).is_err());
    // YUV420: the chroma pitch (half) must hold too: 1922 / 2 = 961 is fine with alignment 1,
    // an odd exact pitch is not.
    let mut y = AttrList::image(PixelFormat::Yuv420, 1920, 1080).unwrap();
    y.set_exact_pitch(1921).unwrap();
    assert!(reconcile([&y]).is_err());
}

#[test]
fn v4l2_cannot_express_gaps() {
    let mut p = ImageParams::new(PixelFormat::Nv12, 640, 480);
    p.height_align = 64; // 480 -> 512 rows: chroma is not at bytesperline * height
    let l = ImageLayout::compute(&p).unwrap();
    assert_eq!(l.planes[1].offset, 640 * 512);
    assert_eq!(l.v4l2_format(), None);
    p.height_align = 1;
    p.scan = ScanType::Interlaced;
    assert_eq!(ImageLayout::compute(&p).unwrap().v4l2_format(), None);
}

/// DRM dumb-buffer rule, written independently: pitch = align(ceil(w*bpp/8), pitch_align),
/// size = align(pitch*h, 4096).
fn dumb(w: u64, h: u64, bpp: u64, pitch_align: u64) -> (u64, u64) {
    let pitch = (w * bpp).div_ceil(8).div_ceil(pitch_align) * pitch_align;
    (pitch, (pitch * h).div_ceil(4096) * 4096)
}

#[test]
fn drm_dumb_pitch() {
    // Worked values: XRGB8888 1920x1080 -> pitch 7680, size 8294400 (2025 pages);
    // 1366x768 with 64-byte pitch alignment -> 5464 rounded to 5504, size 4227072.
    assert_eq!(dumb(1920, 1080, 32, 1), (7680, 8_294_400));
    assert_eq!(dumb(1366, 768, 32, 64), (5504, 4_227_072));
    for (f, bpp) in [
        (PixelFormat::Xrgb8888, 32),
        (PixelFormat::Rgb565, 16),
        (PixelFormat::Rgb888, 24),
        (PixelFormat::Grey, 8),
    ] {
        for (w, h, a) in [
            (1920, 1080, 1),
            (1366, 768, 64),
            (1024, 600, 256),
            (33, 7, 8),
        ] {
            let mut l = AttrList::image(f, w, h).unwrap();
            l.set_pitch_align(a).unwrap().set_size_align(4096).unwrap();
            let r = reconcile([&l]).unwrap();
            let (pitch, size) = dumb(u64::from(w), u64::from(h), bpp, a);
            assert_eq!(r.image().unwrap().planes[0].pitch, pitch, "{f} {w}x{h}/{a}");
            assert_eq!(r.size(), size, "{f} {w}x{h}/{a}");
        }
    }
}

#[test]
fn drm_addfb2_nv12() {
    let mut l = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    l.set_pitch_align(256).unwrap();
    let fb = reconcile([&l])
        .unwrap()
        .image()
        .unwrap()
        .drm_framebuffer()
        .unwrap();
    assert_eq!(fb.fourcc, fourcc(b"NV12"));
    assert_eq!(fb.modifier, 0);
    assert_eq!(fb.plane_count, 2);
    assert_eq!(fb.pitches, [2048, 2048, 0, 0]);
    assert_eq!(fb.offsets, [0, 2048 * 1080, 0, 0]);
    // Bayer has no DRM format.
    assert!(layout(PixelFormat::Sbggr10, 64, 64)
        .drm_framebuffer()
        .is_none());
}

#[test]
fn format_table_bits_per_pixel() {
    // Average bits per pixel over all planes, from the formats' definitions.
    let expect = [
        (PixelFormat::Nv12, 12.0),
        (PixelFormat::Nv21, 12.0),
        (PixelFormat::Nv16, 16.0),
        (PixelFormat::Nv61, 16.0),
        (PixelFormat::Nv24, 24.0),
        (PixelFormat::Yuv420, 12.0),
        (PixelFormat::Yvu420, 12.0),
        (PixelFormat::Yuv422, 16.0),
        (PixelFormat::Yuyv, 16.0),
        (PixelFormat::Uyvy, 16.0),
        (PixelFormat::Grey, 8.0),
        (PixelFormat::R16, 16.0),
        (PixelFormat::Rgb565, 16.0),
        (PixelFormat::Rgb888, 24.0),
        (PixelFormat::Bgr888, 24.0),
        (PixelFormat::Xrgb8888, 32.0),
        (PixelFormat::Argb8888, 32.0),
        (PixelFormat::Xbgr8888, 32.0),
        (PixelFormat::Abgr8888, 32.0),
        (PixelFormat::Argb2101010, 32.0),
        (PixelFormat::P010, 24.0),
        (PixelFormat::Sbggr8, 8.0),
        (PixelFormat::Srggb12, 16.0),
        (PixelFormat::Sgrbg16, 16.0),
    ];
    for (f, bpp) in expect {
        let avg: f64 = f
            .planes()
            .iter()
            .map(|p| f64::from(p.bpp) / f64::from(p.hsub * p.vsub))
            .sum();
        assert_eq!(avg, bpp, "{f}");
        // And the layout of a 64x64 image has exactly that many bytes.
        assert_eq!(
            layout(f, 64, 64).size as f64,
            64.0 * 64.0 * bpp / 8.0,
            "{f}"
        );
    }
}

#[test]
fn v4l2_drm_mapping() {
    // From videodev2.h / drm_fourcc.h: memory order B,G,R,X is DRM XRGB8888 and V4L2 XBGR32.
    assert_eq!(PixelFormat::Xrgb8888.v4l2_fourcc(), Some(fourcc(b"XR24")));
    assert_eq!(PixelFormat::Rgb888.v4l2_fourcc(), Some(fourcc(b"BGR3")));
    assert_eq!(PixelFormat::Bgr888.v4l2_fourcc(), Some(fourcc(b"RGB3")));
    assert_eq!(PixelFormat::Yuv422.v4l2_fourcc(), Some(fourcc(b"422P")));
    assert_eq!(
        PixelFormat::Yuv422.drm_fourcc().map(|d| d as u32),
        Some(fourcc(b"YU16"))
    );
    assert_eq!(
        PixelFormat::Grey.drm_fourcc().map(|d| d as u32),
        Some(fourcc(b"R8  "))
    );
}

#[test]
fn pyramid_levels() {
    // Unaligned: 640x480 NV12 = 460800 bytes; 320x240 = 115200; 160x120 = 28800, packed.
    let l = AttrList::pyramid(PixelFormat::Nv12, 640, 480, 3, 0.5).unwrap();
    let r = reconcile([&l]).unwrap();
    let py = r.pyramid().unwrap();
    let sizes: Vec<u64> = py.levels.iter().map(|l| l.size).collect();
    assert_eq!(sizes, vec![460_800, 115_200, 28_800]);
    let offsets: Vec<u64> = py.levels.iter().map(|l| l.offset).collect();
    assert_eq!(offsets, vec![0, 460_800, 576_000]);
    assert_eq!(r.size(), 604_800);

    // 4 KiB base alignment applies to every plane start, so to every level start too:
    // level 1 starts at 460800 rounded up = 462848; its chroma plane at 76800 -> 77824 into
    // the level, so the level is 77824 + 38400 = 116224 bytes; level 2 starts at
    // 579072 rounded up = 581632 and is 20480 + 9600 = 30080 bytes.
    let mut l = AttrList::pyramid(PixelFormat::Nv12, 640, 480, 3, 0.5).unwrap();
    l.set_base_align(4096).unwrap();
    let r = reconcile([&l]).unwrap();
    let py = r.pyramid().unwrap();
    let sizes: Vec<u64> = py.levels.iter().map(|l| l.size).collect();
    assert_eq!(sizes, vec![460_800, 116_224, 30_080]);
    let offsets: Vec<u64> = py.levels.iter().map(|l| l.offset).collect();
    assert_eq!(offsets, vec![0, 462_848, 581_632]);
    assert_eq!(r.size(), 581_632 + 30_080);
    assert_eq!(py.levels[1].image.width, 320);
}
