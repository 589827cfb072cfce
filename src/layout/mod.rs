//! Buffer layouts computed by reconciliation: image planes, tensors, arrays, pyramids, and the
//! format table ([`mod@format`]).
//!
//! The formulas are documented in `docs/model.md`; in short, for a pitch-linear image of
//! `W × H` pixels (padding included), with pitch alignment `A`, height alignment `HA`, base
//! alignment `B` and size alignment `S`:
//!
//! - plane `i` has `ceil(W / hsub_i)` samples of `bpp_i` bits per row; its pitch is
//!   `pitch_0 · bpp_i / (hsub_i · bpp_0)` (the V4L2 rule: chroma pitches follow the luma
//!   `bytesperline`), and `pitch_0` is the smallest multiple of the alignment that makes
//!   every plane's pitch a multiple of `A` and at least its row size (and `image.min_pitch`);
//! - the aligned height of plane 0 is `H` rounded up to `HA` (and the modifier's tile
//!   height), of plane `i` it is `ceil(ah_0 / vsub_i)`;
//! - plane sizes are `pitch · aligned height` rounded up to `S`; plane offsets are the end of
//!   the previous plane rounded up to `B`; the image size is the end of the last plane, at
//!   least `image.min_size`, rounded up to `S`.
//!
//! Interlaced images store each plane's two fields one after the other: every field has
//! `ceil(H / 2)` rows (aligned as above), the second field starts at the first field's size
//! rounded up to `B`.

pub use crate::model::format;
pub use crate::model::format::{
    fourcc, modifier_tile, ColorFamily, FormatInfo, PixelFormat, PlaneInfo, TileGeometry,
    UnknownFormat,
};
pub use crate::model::modifier;

use crate::model::{DataType, Key, Padding, ScanType};

/// Rounds `v` up to a multiple of `a` (`a > 0`), or `None` on overflow.
pub fn align_up(v: u64, a: u64) -> Option<u64> {
    debug_assert!(a > 0);
    let r = v % a;
    if r == 0 {
        Some(v)
    } else {
        v.checked_add(a - r)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn lcm(a: u64, b: u64) -> Option<u64> {
    (a / gcd(a, b)).checked_mul(b)
}

/// Why a layout could not be computed: the key at fault and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError {
    /// The key whose value cannot be laid out.
    pub key: Key,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

fn lerr(key: Key, reason: impl Into<String>) -> LayoutError {
    LayoutError {
        key,
        reason: reason.into(),
    }
}

fn overflow() -> LayoutError {
    lerr(Key::OutSize, "layout size overflows")
}

/// `a * b`, or the overflow error: every product here can be driven by values from another
/// process (pitch alignments, minimum pitches), so none may wrap or panic.
fn mul(a: u64, b: u64) -> Result<u64, LayoutError> {
    a.checked_mul(b).ok_or_else(overflow)
}

/// `a + b`, or the overflow error.
fn add(a: u64, b: u64) -> Result<u64, LayoutError> {
    a.checked_add(b).ok_or_else(overflow)
}

/// The layout of one image plane. Offsets are from the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlaneLayout {
    /// Offset of the plane's first byte from the buffer start.
    pub offset: u64,
    /// Bytes from one row to the next.
    pub pitch: u64,
    /// Rows allocated (both fields together for interlaced images).
    pub aligned_height: u64,
    /// Bytes allocated for the plane.
    pub size: u64,
    /// Bits per sample unit of the plane.
    pub bpp: u32,
    /// Interleaved components per sample unit.
    pub channels: u32,
    /// Offset of the second field from the buffer start (interlaced), 0 when progressive.
    pub second_field_offset: u64,
    /// Samples per row (the plane's width at its own resolution).
    pub width: u64,
    /// Rows of image data (the plane's unaligned height; per frame).
    pub height: u64,
}

impl PlaneLayout {
    /// One past the plane's last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// What an image layout is computed from (merged image keys).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageParams {
    /// Pixel format.
    pub format: PixelFormat,
    /// DRM format modifier (0 = linear).
    pub modifier: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Scan type.
    pub scan: ScanType,
    /// Padding.
    pub padding: Padding,
    /// Pitch alignment (power of two).
    pub pitch_align: u64,
    /// Plane base-address alignment (power of two), every plane.
    pub base_align: u64,
    /// Base-address alignment of each plane (powers of two; NvSciBuf `PlaneBaseAddrAlign`),
    /// on top of `base_align`; 1 = none. Plane 0's also aligns the image.
    pub plane_base_align: [u64; 4],
    /// Height alignment in rows (power of two).
    pub height_align: u64,
    /// Plane size alignment (power of two).
    pub size_align: u64,
    /// Minimum pitch of plane 0.
    pub min_pitch: u64,
    /// Minimum image size.
    pub min_size: u64,
    /// Exact pitch of plane 0 (0 = none).
    pub exact_pitch: u64,
}

impl ImageParams {
    /// Parameters with no constraints beyond format and size (alignments 1, linear).
    pub fn new(format: PixelFormat, width: u32, height: u32) -> ImageParams {
        ImageParams {
            format,
            modifier: 0,
            width,
            height,
            scan: ScanType::Progressive,
            padding: Padding::default(),
            pitch_align: 1,
            base_align: 1,
            plane_base_align: [1; 4],
            height_align: 1,
            size_align: 1,
            min_pitch: 0,
            min_size: 0,
            exact_pitch: 0,
        }
    }
}

/// A reconciled image layout: format, modifier and planes. Directly usable for DRM
/// `ADDFB2` ([`ImageLayout::drm_framebuffer`]) and V4L2 ([`ImageLayout::v4l2_format`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageLayout {
    /// Pixel format.
    pub format: PixelFormat,
    /// DRM format modifier (0 = linear).
    pub modifier: u64,
    /// Width in pixels (padding included).
    pub width: u32,
    /// Height in pixels (padding included).
    pub height: u32,
    /// Scan type.
    pub scan: ScanType,
    /// The planes, in format order.
    pub planes: Vec<PlaneLayout>,
    /// Bytes the image occupies from its first plane's offset (all planes, aligned).
    pub size: u64,
    /// Base-address alignment the image needs.
    pub alignment: u64,
}

/// The parameters of a DRM framebuffer (`DRM_IOCTL_MODE_ADDFB2`) for one buffer object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrmFramebuffer {
    /// DRM fourcc.
    pub fourcc: u32,
    /// Format modifier (pass with `DRM_MODE_FB_MODIFIERS` unless linear).
    pub modifier: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Number of planes used in `pitches`/`offsets`.
    pub plane_count: usize,
    /// Pitch of each plane.
    pub pitches: [u32; 4],
    /// Offset of each plane within the buffer object.
    pub offsets: [u32; 4],
}

/// A V4L2 single-planar format (`struct v4l2_pix_format`) describing the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4l2Format {
    /// V4L2 pixel format.
    pub pixelformat: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Pitch of the first plane.
    pub bytesperline: u32,
    /// Size of the whole image.
    pub sizeimage: u32,
}

impl ImageLayout {
    /// Computes the layout of an image.
    pub fn compute(p: &ImageParams) -> Result<ImageLayout, LayoutError> {
        Self::compute_at(p, 0)
    }

    /// Computes the layout of an image whose first plane starts at `start` (pyramid levels).
    pub fn compute_at(p: &ImageParams, start: u64) -> Result<ImageLayout, LayoutError> {
        let info = p.format.info();
        let tile = crate::model::modifier::layout_of(p.modifier)
            .map_err(|why| lerr(Key::ImageModifiers, why))?;
        if p.modifier != 0 && info.planes.iter().any(|pl| pl.bpp % 8 != 0) {
            return Err(lerr(
                Key::ImageModifiers,
                "tiled layouts need whole-byte samples",
            ));
        }
        let w = u64::from(p.width) + u64::from(p.padding.left) + u64::from(p.padding.right);
        let h = u64::from(p.height) + u64::from(p.padding.top) + u64::from(p.padding.bottom);
        let interlaced = p.scan == ScanType::Interlaced;
        let a = p.pitch_align.max(tile.width_bytes);
        // Planes of a tiled layout start on a tile (GOB) boundary; both are powers of two.
        let base_align = p.base_align.max(tile.base_align);
        let bpp0 = u64::from(info.planes[0].bpp);

        // Pitch of plane 0: every plane's pitch is pitch0 * num / den.
        let mut unit = a;
        let mut need = p.min_pitch;
        for pl in info.planes {
            let g = gcd(u64::from(pl.bpp), u64::from(pl.hsub) * bpp0);
            let num = u64::from(pl.bpp) / g;
            let den = u64::from(pl.hsub) * bpp0 / g;
            let plane_unit = mul(den, a)? / gcd(a, num);
            unit = lcm(unit, plane_unit).ok_or_else(overflow)?;
            let row_bytes = mul(w.div_ceil(u64::from(pl.hsub)), u64::from(pl.bpp))?.div_ceil(8);
            need = need.max(mul(row_bytes, den)?.div_ceil(num));
        }
        let pitch0 = if p.exact_pitch != 0 {
            if p.exact_pitch < need || p.exact_pitch % unit != 0 {
                return Err(lerr(
                    Key::ImageExactPitch,
                    format!(
                        "exact pitch {} does not hold a row of {need} bytes as a multiple of {unit}",
                        p.exact_pitch
                    ),
                ));
            }
            p.exact_pitch
        } else {
            align_up(need, unit).ok_or_else(overflow)?
        };

        // Rows: per frame (progressive) or per field (interlaced).
        let rows = if interlaced { h.div_ceil(2) } else { h };
        let ah0 = align_up(
            align_up(rows, p.height_align).ok_or_else(overflow)?,
            tile.height_rows,
        )
        .ok_or_else(overflow)?;

        let mut planes = Vec::with_capacity(info.planes.len());
        let mut cursor = start;
        for (i, pl) in info.planes.iter().enumerate() {
            let align = base_align.max(p.plane_base_align.get(i).copied().unwrap_or(1));
            let pitch = mul(pitch0, u64::from(pl.bpp))? / (u64::from(pl.hsub) * bpp0);
            let vsub = u64::from(pl.vsub);
            let field_rows = align_up(ah0.div_ceil(vsub), tile.height_rows).ok_or_else(overflow)?;
            let field_bytes = pitch.checked_mul(field_rows).ok_or_else(overflow)?;
            let offset = align_up(cursor, align).ok_or_else(overflow)?;
            let (aligned_height, raw_size, second) = if interlaced {
                let first = align_up(field_bytes, align).ok_or_else(overflow)?;
                (
                    mul(2, field_rows)?,
                    add(first, field_bytes)?,
                    add(offset, first)?,
                )
            } else {
                (field_rows, field_bytes, 0)
            };
            let size = align_up(raw_size, p.size_align).ok_or_else(overflow)?;
            planes.push(PlaneLayout {
                offset,
                pitch,
                aligned_height,
                size,
                bpp: pl.bpp,
                channels: pl.channels,
                second_field_offset: second,
                width: w.div_ceil(u64::from(pl.hsub)),
                height: h.div_ceil(vsub),
            });
            cursor = offset.checked_add(size).ok_or_else(overflow)?;
        }
        let first = planes[0].offset;
        let size = align_up((cursor - first).max(p.min_size), p.size_align).ok_or_else(overflow)?;
        if first.checked_add(size).is_none_or(|e| e > 1 << 52) {
            return Err(overflow());
        }
        Ok(ImageLayout {
            format: p.format,
            modifier: p.modifier,
            width: u32::try_from(w).map_err(|_| overflow())?,
            height: u32::try_from(h).map_err(|_| overflow())?,
            scan: p.scan,
            planes,
            size,
            alignment: base_align.max(p.plane_base_align[0]),
        })
    }

    /// One past the last byte of the image (offset of the first plane + size).
    pub fn end(&self) -> u64 {
        self.planes[0].offset + self.size
    }

    /// The DRM framebuffer parameters (`ADDFB2`), if DRM has this format and every pitch and
    /// offset fits 32 bits.
    pub fn drm_framebuffer(&self) -> Option<DrmFramebuffer> {
        let fourcc = self.format.drm_fourcc()? as u32;
        let mut pitches = [0u32; 4];
        let mut offsets = [0u32; 4];
        for (i, pl) in self.planes.iter().enumerate() {
            pitches[i] = u32::try_from(pl.pitch).ok()?;
            offsets[i] = u32::try_from(pl.offset).ok()?;
        }
        Some(DrmFramebuffer {
            fourcc,
            modifier: self.modifier,
            width: self.width,
            height: self.height,
            plane_count: self.planes.len(),
            pitches,
            offsets,
        })
    }

    /// The V4L2 single-planar format for this layout, if V4L2 has the format and the layout
    /// is one V4L2 can express: linear, progressive, starting at offset 0, with every plane
    /// starting exactly where `bytesperline` and the height put it (chroma pitches follow the
    /// luma pitch by construction). Otherwise use the multi-planar API with the per-plane
    /// pitches and offsets.
    pub fn v4l2_format(&self) -> Option<V4l2Format> {
        let pixelformat = self.format.v4l2_fourcc()?;
        if self.modifier != 0 || self.scan != ScanType::Progressive || self.planes[0].offset != 0 {
            return None;
        }
        let mut expect = 0;
        for pl in &self.planes {
            if pl.offset != expect {
                return None;
            }
            expect += pl.pitch * pl.height;
        }
        Some(V4l2Format {
            pixelformat,
            width: self.width,
            height: self.height,
            bytesperline: u32::try_from(self.planes[0].pitch).ok()?,
            sizeimage: u32::try_from(self.size).ok()?,
        })
    }
}

/// A reconciled tensor layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorLayout {
    /// Element type.
    pub data_type: DataType,
    /// Size of each dimension, outermost first.
    pub sizes: Vec<u64>,
    /// Stride of each dimension in bytes.
    pub strides: Vec<u64>,
    /// Size in bytes (`sizes[0] · strides[0]`).
    pub size: u64,
    /// Base-address alignment.
    pub alignment: u64,
}

impl TensorLayout {
    /// Computes strides: the innermost stride is the element size rounded up to its
    /// dimension's alignment; each outer stride is `size · stride` of the next inner
    /// dimension, rounded up to its own dimension's alignment.
    pub fn compute(
        data_type: DataType,
        sizes: &[u64],
        align_per_dim: &[u64],
        base_align: u64,
    ) -> Result<TensorLayout, LayoutError> {
        let n = sizes.len();
        let al = |i: usize| align_per_dim.get(i).copied().unwrap_or(1);
        let mut strides = vec![0u64; n];
        let mut s = align_up(data_type.size(), al(n - 1)).ok_or_else(overflow)?;
        strides[n - 1] = s;
        for i in (0..n - 1).rev() {
            s = align_up(sizes[i + 1].checked_mul(s).ok_or_else(overflow)?, al(i))
                .ok_or_else(overflow)?;
            strides[i] = s;
        }
        let size = sizes[0].checked_mul(strides[0]).ok_or_else(overflow)?;
        if size > 1 << 52 {
            return Err(overflow());
        }
        Ok(TensorLayout {
            data_type,
            sizes: sizes.to_vec(),
            strides,
            size,
            alignment: base_align.max(data_type.size()),
        })
    }
}

/// A reconciled array layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArrayLayout {
    /// Element type.
    pub data_type: DataType,
    /// Bytes from one element to the next.
    pub stride: u64,
    /// Number of elements.
    pub capacity: u64,
    /// Size in bytes (`stride · capacity`).
    pub size: u64,
    /// Alignment (the element size).
    pub alignment: u64,
}

/// One level of an image pyramid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PyramidLevel {
    /// Offset of the level from the buffer start.
    pub offset: u64,
    /// Size of the level.
    pub size: u64,
    /// The level's image layout (plane offsets from the buffer start).
    pub image: ImageLayout,
}

/// A reconciled image pyramid: level `l` is `floor(W · scale^l) × floor(H · scale^l)` (at least
/// 1 × 1), laid out with the same alignments, each level starting at the previous level's end
/// rounded up to the base alignment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PyramidLayout {
    /// The levels, largest first.
    pub levels: Vec<PyramidLevel>,
    /// The scale between levels, as IEEE bits (kept exact for equality).
    pub scale_bits: u64,
    /// Total size.
    pub size: u64,
}

impl PyramidLayout {
    /// Computes the pyramid of `levels` levels.
    pub fn compute(p: &ImageParams, levels: u32, scale: f64) -> Result<PyramidLayout, LayoutError> {
        let mut out = Vec::with_capacity(levels as usize);
        let mut cursor = 0u64;
        for l in 0..levels {
            let f = scale.powi(l as i32);
            let lw = ((f64::from(p.width) * f).floor() as u32).max(1);
            let lh = ((f64::from(p.height) * f).floor() as u32).max(1);
            let lp = ImageParams {
                width: lw,
                height: lh,
                // min pitch / min size describe level 0 only.
                min_pitch: if l == 0 { p.min_pitch } else { 0 },
                exact_pitch: if l == 0 { p.exact_pitch } else { 0 },
                min_size: if l == 0 { p.min_size } else { 0 },
                padding: if l == 0 {
                    p.padding
                } else {
                    Padding::default()
                },
                ..*p
            };
            let img = ImageLayout::compute_at(&lp, cursor)?;
            let offset = img.planes[0].offset;
            cursor = img.end();
            out.push(PyramidLevel {
                offset,
                size: img.size,
                image: img,
            });
        }
        Ok(PyramidLayout {
            levels: out,
            scale_bits: scale.to_bits(),
            size: cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the IPC fuzzer (fuzz/regressions/layout-pitch-mul-overflow): huge minimum
    /// pitches and pitch alignments from a peer overflowed `pitch0 * bpp`. Every extreme must
    /// be an error, never a panic or a wrapped layout.
    #[test]
    fn extreme_pitches_are_errors_not_overflows() {
        for format in [
            PixelFormat::Nv12,
            PixelFormat::Yuv420,
            PixelFormat::Xrgb8888,
        ] {
            for (min_pitch, pitch_align, exact_pitch) in [
                (u64::MAX / 2, 1, 0),
                (u64::MAX, 1, 0),
                (0, 1 << 63, 0),
                (1 << 62, 1 << 62, 0),
                (0, 1, u64::MAX),
                (0, 1, 1 << 63),
            ] {
                let mut p = ImageParams::new(format, 1920, 1080);
                p.min_pitch = min_pitch;
                p.pitch_align = pitch_align;
                p.exact_pitch = exact_pitch;
                p.scan = ScanType::Interlaced;
                assert!(
                    ImageLayout::compute(&p).is_err(),
                    "{format:?} min_pitch {min_pitch} align {pitch_align} exact {exact_pitch}"
                );
            }
        }
    }

    #[test]
    fn align_up_works() {
        assert_eq!(align_up(0, 64), Some(0));
        assert_eq!(align_up(1, 64), Some(64));
        assert_eq!(align_up(64, 64), Some(64));
        assert_eq!(align_up(u64::MAX, 2), None);
    }

    #[test]
    fn yuv420_chroma_pitch_is_half_of_aligned_luma_pitch() {
        let mut p = ImageParams::new(PixelFormat::Yuv420, 100, 10);
        p.pitch_align = 64;
        let l = ImageLayout::compute(&p).unwrap();
        // Chroma pitch must be a multiple of 64 too, so luma pitch is a multiple of 128.
        assert_eq!(l.planes[0].pitch, 128);
        assert_eq!(l.planes[1].pitch, 64);
        assert_eq!(l.planes[2].pitch, 64);
    }

    #[test]
    fn interlaced_fields() {
        let mut p = ImageParams::new(PixelFormat::Nv12, 720, 480);
        p.scan = ScanType::Interlaced;
        let l = ImageLayout::compute(&p).unwrap();
        assert_eq!(l.planes[0].aligned_height, 480);
        assert_eq!(l.planes[0].second_field_offset, 720 * 240);
        assert_eq!(l.planes[1].offset, 720 * 480);
        assert_eq!(l.planes[1].second_field_offset, 720 * 480 + 720 * 120);
        assert_eq!(l.size, 720 * 480 * 3 / 2);
    }

    #[test]
    fn tensor_strides() {
        let t = TensorLayout::compute(DataType::Float32, &[2, 3, 5], &[1, 64, 1], 1).unwrap();
        assert_eq!(t.strides, vec![3 * 64, 64, 4]);
        assert_eq!(t.size, 2 * 192);
    }

    #[test]
    fn pyramid_levels_shrink() {
        let p = ImageParams::new(PixelFormat::Grey, 64, 32);
        let py = PyramidLayout::compute(&p, 3, 0.5).unwrap();
        let sizes: Vec<_> = py.levels.iter().map(|l| l.size).collect();
        assert_eq!(sizes, vec![64 * 32, 32 * 16, 16 * 8]);
        assert_eq!(py.levels[2].offset, 64 * 32 + 32 * 16);
    }
}
