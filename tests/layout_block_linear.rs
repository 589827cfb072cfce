//! NVIDIA block-linear layouts checked against values computed here from drm_fourcc.h, written
//! independently of unibuf's layout code.
//!
//! Source: Linux `include/uapi/drm/drm_fourcc.h`, "Generalized Block Linear layout" and
//! `DRM_FORMAT_MOD_NVIDIA_16BX2_BLOCK(v)`: pixels are arranged in GOBs of 64 bytes × 8 rows
//! (4 rows for `g = 1`, G80 to GT2XX); GOBs are stacked vertically by 2^h (1 to 32) into a
//! block; there is no block width parameter (a block is one GOB wide). A plane is then a
//! row-major array of blocks: `ceil(row bytes / 64)` blocks across, `ceil(rows / (8 · 2^h))`
//! blocks down. The modifier carries one `h` for the whole framebuffer, so the NV12 chroma
//! plane (960 CbCr pairs × 540 rows) uses the same block height as the luma plane (the
//! header defines no per-plane rule).

use unibuf::attr::{AccessorKind, AttrList, Key, Value};
use unibuf::layout::PixelFormat;
use unibuf::reconcile::reconcile;

/// `DRM_FORMAT_MOD_NVIDIA_BLOCK_LINEAR_2D(c, s, g, k, h)`, from the macro's text:
/// `fourcc_mod_code(NVIDIA, 0x10 | (h & 0xf) | (k & 0xff) << 12 | (g & 0x3) << 20 |
/// (s & 0x1) << 22 | (c & 0x7) << 23)`, `fourcc_mod_code(vendor, val) = vendor << 56 | val`,
/// `DRM_FORMAT_MOD_VENDOR_NVIDIA = 0x03`.
fn macro_value(c: u64, s: u64, g: u64, k: u64, h: u64) -> u64 {
    (0x03u64 << 56)
        | 0x10
        | (h & 0xf)
        | ((k & 0xff) << 12)
        | ((g & 0x3) << 20)
        | ((s & 0x1) << 22)
        | ((c & 0x7) << 23)
}

/// One plane by the header's block arithmetic: (pitch, aligned rows, size).
fn plane(row_bytes: u64, rows: u64, gob_rows: u64, h: u32) -> (u64, u64, u64) {
    let gobs_across = row_bytes.div_ceil(64);
    let block_rows = gob_rows << h;
    let blocks_down = rows.div_ceil(block_rows);
    let block_bytes = 64 * block_rows;
    (
        gobs_across * 64,
        blocks_down * block_rows,
        gobs_across * blocks_down * block_bytes,
    )
}

fn reconciled(format: PixelFormat, m: u64) -> unibuf::reconcile::Reconciled {
    let mut gpu = AttrList::image(format, 1920, 1080).unwrap();
    gpu.set_accessor_name("gpu")
        .unwrap()
        .set_accessor_kind(AccessorKind::Gpu)
        .unwrap()
        .set_image_modifiers(vec![m])
        .unwrap();
    reconcile([&gpu]).unwrap_or_else(|c| panic!("{c}"))
}

#[test]
fn modifier_values_follow_the_macro() {
    // The legacy DRM_FORMAT_MOD_NVIDIA_16BX2_BLOCK(v) values: 0x0300000000000010 + v.
    for v in 0..6 {
        assert_eq!(macro_value(0, 0, 0, 0, v), 0x0300_0000_0000_0010 + v);
        assert_eq!(
            unibuf::layout::modifier::nvidia_block_linear_2d(0, 0, 0, 0, v),
            macro_value(0, 0, 0, 0, v)
        );
    }
    // A Turing+ / Xavier+ generic kind: s=1, g=2, k=0x06.
    for h in 0..6 {
        assert_eq!(
            unibuf::layout::modifier::nvidia_block_linear_2d(0, 1, 2, 0x06, h),
            macro_value(0, 1, 2, 0x06, h)
        );
    }
}

#[test]
fn xrgb8888_1080p_at_every_block_height() {
    for h in 0..=5u32 {
        let m = macro_value(0, 1, 2, 0x06, u64::from(h));
        let r = reconciled(PixelFormat::Xrgb8888, m);
        let img = r.image().unwrap();
        let (pitch, rows, size) = plane(1920 * 4, 1080, 8, h);
        let p = img.planes[0];
        assert_eq!(
            (p.offset, p.pitch, p.aligned_height, p.size),
            (0, pitch, rows, size),
            "h={h}"
        );
        assert_eq!(pitch % 64, 0);
        assert_eq!(rows % (8 << h), 0);
        assert_eq!(r.size(), size, "h={h}");
        assert_eq!(r.get(Key::OutModifier), Some(&Value::U64(m)));
        let fb = img.drm_framebuffer().unwrap();
        assert_eq!((fb.modifier, fb.pitches[0], fb.offsets[0]), (m, 7680, 0));
        assert!(img.v4l2_format().is_none());
    }
    // Spelled out for two heights: 120 GOBs across; 135 blocks of 8 rows, 5 of 256 rows.
    assert_eq!(plane(7680, 1080, 8, 0), (7680, 1080, 7680 * 1080));
    assert_eq!(plane(7680, 1080, 8, 5), (7680, 1280, 7680 * 1280));
}

#[test]
fn nv12_1080p_at_every_block_height() {
    for h in 0..=5u32 {
        let m = macro_value(0, 1, 2, 0x06, u64::from(h));
        let r = reconciled(PixelFormat::Nv12, m);
        let img = r.image().unwrap();
        let y = plane(1920, 1080, 8, h);
        let uv = plane(960 * 2, 540, 8, h);
        let (p0, p1) = (img.planes[0], img.planes[1]);
        assert_eq!((p0.pitch, p0.aligned_height, p0.size), y, "luma h={h}");
        assert_eq!((p1.pitch, p1.aligned_height, p1.size), uv, "chroma h={h}");
        assert_eq!(p0.offset, 0);
        // The chroma plane follows the luma plane; both sizes are whole blocks, so whole GOBs.
        assert_eq!(p1.offset, y.2, "h={h}");
        assert_eq!(p1.offset % 512, 0);
        assert_eq!(r.size(), y.2 + uv.2, "h={h}");
        let fb = img.drm_framebuffer().unwrap();
        assert_eq!(fb.plane_count, 2);
        assert_eq!(fb.modifier, m);
        assert_eq!(fb.pitches[..2], [1920, 1920]);
        assert_eq!(fb.offsets[..2], [0, y.2 as u32]);
        assert!(img.v4l2_format().is_none());
    }
    // h = 4 (16 GOBs, 128 rows): luma 9 blocks down (1152 rows), chroma 5 (640 rows).
    assert_eq!(plane(1920, 1080, 8, 4), (1920, 1152, 1920 * 1152));
    assert_eq!(plane(1920, 540, 8, 4), (1920, 640, 1920 * 640));
}

#[test]
fn g1_has_gobs_of_four_rows() {
    let m = macro_value(0, 0, 1, 0x70, 2);
    let r = reconciled(PixelFormat::Xrgb8888, m);
    let p = r.image().unwrap().planes[0];
    // Blocks of 4 GOBs × 4 rows = 16 rows: 1080 rows → 68 blocks → 1088; planes on 256 B.
    assert_eq!((p.pitch, p.aligned_height, p.size), plane(7680, 1080, 4, 2));
    assert_eq!(p.aligned_height, 1088);
}
