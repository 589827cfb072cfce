//! DRM format modifiers: names, the layouts unibuf can compute, and the usage an accessor
//! states with its modifier set.
//!
//! A modifier is a `u64` as `include/uapi/drm/drm_fourcc.h` defines it: vendor in bits 63:56,
//! vendor-specific value below. `DRM_FORMAT_MOD_LINEAR` (0) and `DRM_FORMAT_MOD_INVALID`
//! (`0x00ff_ffff_ffff_ffff`, "the driver's implicit layout") are distinct values and never
//! stand for each other.
//!
//! unibuf computes the layout of `LINEAR`, Intel X- and Y-tiled, and NVIDIA's generalized
//! block-linear layout ([`nvidia_block_linear_2d`]) without compression. Any other modifier
//! is valid in a set (it is intersected like any value), but only a backend that knows its
//! layout could allocate it; [`layout_of`] says why unibuf cannot.

use std::fmt::Write as _;
use std::sync::Arc;

/// `DRM_FORMAT_MOD_LINEAR`.
pub const LINEAR: u64 = 0;
/// `DRM_FORMAT_MOD_INVALID`: no explicit modifier, the driver's implicit layout.
pub const INVALID: u64 = 0x00ff_ffff_ffff_ffff;
/// `I915_FORMAT_MOD_X_TILED`.
pub const I915_X_TILED: u64 = (1 << 56) | 1;
/// `I915_FORMAT_MOD_Y_TILED`.
pub const I915_Y_TILED: u64 = (1 << 56) | 2;
/// `DRM_FORMAT_MOD_VENDOR_NVIDIA`.
pub const VENDOR_NVIDIA: u64 = 0x03;
/// Most modifiers in one set (`image.modifiers`); drivers offer at most a few dozen per format.
pub const MAX_MODIFIERS: usize = 64;

/// Width of an NVIDIA GOB in bytes (every generation).
pub const NVIDIA_GOB_WIDTH: u64 = 64;
/// Largest block height exponent `h` unibuf lays out: 2^5 = 32 GOBs, the largest the
/// `DRM_FORMAT_MOD_NVIDIA_16BX2_BLOCK(v)` comment of drm_fourcc.h names.
pub const NVIDIA_MAX_LOG2_BLOCK_HEIGHT: u32 = 5;

/// Bits of the NVIDIA block-linear value that drm_fourcc.h reserves (must be zero): 11:5 and
/// 55:28. Bits 27:26 are the high bits of the sector layout `s` in newer headers.
const NVIDIA_BL_RESERVED: u64 = (0x7f << 5) | (((1u64 << 56) - 1) & !((1u64 << 28) - 1));

/// An ordered set of modifiers, most preferred first, as `image.modifiers` holds it. Shared:
/// cloning it (a list cloned into a reconciled list's inputs) copies a pointer, not the set.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModifierSet(Arc<[u64]>);

impl ModifierSet {
    /// The modifiers, in order.
    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }
}

impl std::ops::Deref for ModifierSet {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        &self.0
    }
}

impl From<Vec<u64>> for ModifierSet {
    fn from(v: Vec<u64>) -> Self {
        ModifierSet(v.into())
    }
}

impl From<&[u64]> for ModifierSet {
    fn from(v: &[u64]) -> Self {
        ModifierSet(v.into())
    }
}

impl std::fmt::Debug for ModifierSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&names(&self.0))
    }
}

wire_enum!(
    /// What an accessor does with the image, stated with its modifier set
    /// (`image.modifier_usage`). It ranks the lists when the common modifiers are ordered:
    /// declaration order is priority order (scanout first).
    ModifierUsage {
        /// A display plane scans the image out.
        Scanout = 1, "scanout";
        /// A video engine (camera, codec) reads or writes it.
        Video = 2, "video";
        /// A GPU renders into it.
        Render = 3, "render";
        /// A GPU samples (textures) from it.
        Sampling = 4, "sampling";
        /// The CPU reads or writes it.
        Cpu = 5, "cpu";
    }
);

/// `DRM_FORMAT_MOD_NVIDIA_BLOCK_LINEAR_2D(c, s, g, k, h)` of drm_fourcc.h:
/// `0x03 << 56 | 0x10 | h & 0xf | (k & 0xff) << 12 | (g & 3) << 20 | (s & 1) << 22 |
/// (s & 6) << 25 | (c & 7) << 23`.
pub const fn nvidia_block_linear_2d(c: u64, s: u64, g: u64, k: u64, h: u64) -> u64 {
    (VENDOR_NVIDIA << 56)
        | 0x10
        | (h & 0xf)
        | ((k & 0xff) << 12)
        | ((g & 0x3) << 20)
        | ((s & 0x1) << 22)
        | ((s & 0x6) << 25)
        | ((c & 0x7) << 23)
}

/// The fields of an NVIDIA block-linear modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvidiaBlockLinear {
    /// Compression type (0 = none).
    pub c: u64,
    /// Sector layout.
    pub s: u64,
    /// GOB height and page kind generation (0, 2: GOBs of 8 rows; 1: 4 rows; 3 reserved).
    pub g: u64,
    /// Page kind.
    pub k: u64,
    /// log2 of the block height in GOBs.
    pub h: u64,
}

impl NvidiaBlockLinear {
    /// The fields of `m`, if it is an NVIDIA block-linear modifier with no reserved bit set.
    pub fn decode(m: u64) -> Option<NvidiaBlockLinear> {
        let v = m & ((1 << 56) - 1);
        if m >> 56 != VENDOR_NVIDIA || v & 0x10 == 0 || v & NVIDIA_BL_RESERVED != 0 {
            return None;
        }
        Some(NvidiaBlockLinear {
            h: v & 0xf,
            k: (v >> 12) & 0xff,
            g: (v >> 20) & 0x3,
            s: ((v >> 22) & 1) | ((v >> 25) & 0x6),
            c: (v >> 23) & 0x7,
        })
    }

    /// The modifier.
    pub fn encode(self) -> u64 {
        nvidia_block_linear_2d(self.c, self.s, self.g, self.k, self.h)
    }

    /// Rows of one GOB: 8, or 4 for `g = 1` (G80 to GT2XX); `None` for the reserved `g = 3`.
    pub fn gob_rows(self) -> Option<u64> {
        match self.g {
            0 | 2 => Some(8),
            1 => Some(4),
            _ => None,
        }
    }
}

/// What unibuf needs to lay out a modifier: a tile of `width_bytes` × `height_rows` that every
/// pitch and every plane's aligned height are multiples of, and the alignment of each plane's
/// start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGeometry {
    /// Tile width in bytes: every pitch is a multiple of it.
    pub width_bytes: u64,
    /// Tile height in rows: every plane's aligned height is a multiple of it.
    pub height_rows: u64,
    /// Every plane starts at a multiple of this (1 for linear; a GOB for block-linear).
    pub base_align: u64,
}

/// The tile geometry of `m`, or why unibuf cannot lay it out (a backend that knows the layout
/// would have to allocate it). `LINEAR` is a 1-byte × 1-row tile; Intel X-tiled 512 B × 8,
/// Y-tiled 128 B × 32 (planes on 4 KiB tiles); NVIDIA block-linear `h` one GOB (64 bytes)
/// wide and `gob_rows · 2^h` rows high, planes on a GOB boundary (`64 · gob_rows` bytes).
pub fn layout_of(m: u64) -> Result<TileGeometry, String> {
    let t = |w, h, b| {
        Ok(TileGeometry {
            width_bytes: w,
            height_rows: h,
            base_align: b,
        })
    };
    match m {
        LINEAR => return t(1, 1, 1),
        I915_X_TILED => return t(512, 8, 4096),
        I915_Y_TILED => return t(128, 32, 4096),
        INVALID => {
            return Err(
                "DRM_FORMAT_MOD_INVALID is the driver's implicit layout, which only \
                        the driver that allocates the buffer knows"
                    .into(),
            )
        }
        _ => {}
    }
    if let Some(bl) = NvidiaBlockLinear::decode(m) {
        let Some(rows) = bl.gob_rows() else {
            return Err(format!("{}: GOB generation g=3 is reserved", name(m)));
        };
        if bl.c != 0 {
            return Err(format!(
                "{}: compressed block-linear needs the GPU driver's compression resources; \
                 only a GPU backend can allocate it",
                name(m)
            ));
        }
        if bl.h > u64::from(NVIDIA_MAX_LOG2_BLOCK_HEIGHT) {
            return Err(format!(
                "{}: block height 2^{} GOBs is above 2^{NVIDIA_MAX_LOG2_BLOCK_HEIGHT}",
                name(m),
                bl.h
            ));
        }
        return t(NVIDIA_GOB_WIDTH, rows << bl.h, NVIDIA_GOB_WIDTH * rows);
    }
    Err(format!(
        "unibuf cannot compute the layout of modifier {}; only a backend that knows it could \
         allocate it",
        name(m)
    ))
}

/// The name of a modifier as files and messages write it: `LINEAR`, `INVALID`,
/// `I915_X_TILED`, `I915_Y_TILED`, `NVIDIA_BLOCK_LINEAR_2D(c=0,s=1,g=2,k=0x06,h=4)`, or hex
/// (`0x0200000000000001`). [`parse`] reads every form back.
pub fn name(m: u64) -> String {
    match m {
        LINEAR => "LINEAR".into(),
        INVALID => "INVALID".into(),
        I915_X_TILED => "I915_X_TILED".into(),
        I915_Y_TILED => "I915_Y_TILED".into(),
        _ => match NvidiaBlockLinear::decode(m) {
            Some(b) => format!(
                "NVIDIA_BLOCK_LINEAR_2D(c={},s={},g={},k={:#04x},h={})",
                b.c, b.s, b.g, b.k, b.h
            ),
            None => format!("{m:#018x}"),
        },
    }
}

/// Writes `[name, name, ...]` of a set.
pub fn names(set: &[u64]) -> String {
    let mut s = String::from("[");
    for (i, m) in set.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}", name(*m));
    }
    s.push(']');
    s
}

/// Legacy names accepted in files (lower case, from `drm_fourcc.h`'s macro names).
const LEGACY_NAMES: &[(&str, u64)] = &[
    ("linear", LINEAR),
    ("invalid", INVALID),
    ("i915_x_tiled", I915_X_TILED),
    ("i915_y_tiled", I915_Y_TILED),
    (
        "nvidia_16bx2_block_one_gob",
        nvidia_block_linear_2d(0, 0, 0, 0, 0),
    ),
    (
        "nvidia_16bx2_block_two_gob",
        nvidia_block_linear_2d(0, 0, 0, 0, 1),
    ),
    (
        "nvidia_16bx2_block_four_gob",
        nvidia_block_linear_2d(0, 0, 0, 0, 2),
    ),
    (
        "nvidia_16bx2_block_eight_gob",
        nvidia_block_linear_2d(0, 0, 0, 0, 3),
    ),
    (
        "nvidia_16bx2_block_sixteen_gob",
        nvidia_block_linear_2d(0, 0, 0, 0, 4),
    ),
    (
        "nvidia_16bx2_block_thirtytwo_gob",
        nvidia_block_linear_2d(0, 0, 0, 0, 5),
    ),
];

/// Parses a modifier name: any form [`name`] writes (case-insensitive), the legacy names
/// (`linear`, `nvidia_16bx2_block_two_gob`, ...), a `DRM_FORMAT_MOD_` prefix, or a number
/// (decimal or `0x` hex). `NVIDIA_BLOCK_LINEAR_2D(...)` takes `c`, `s`, `g`, `k`, `h` in any
/// order, each at most once, missing ones 0; `h` is required.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let up = t.to_ascii_uppercase();
    let up = up.strip_prefix("DRM_FORMAT_MOD_").unwrap_or(&up);
    if let Some((_, m)) = LEGACY_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(up))
    {
        return Ok(*m);
    }
    if let Some(args) = up
        .strip_prefix("NVIDIA_BLOCK_LINEAR_2D(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let mut f: [Option<u64>; 5] = [None; 5];
        for part in args.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{text:?}: expected name=value, got {part:?}"))?;
            let i = match k.trim() {
                "C" => 0,
                "S" => 1,
                "G" => 2,
                "K" => 3,
                "H" => 4,
                other => return Err(format!("{text:?}: unknown field {other:?} (c, s, g, k, h)")),
            };
            let limit = [7, 7, 3, 0xff, 0xf][i];
            let v = number(v.trim())
                .filter(|v| *v <= limit)
                .ok_or_else(|| format!("{text:?}: field {k} must be a number from 0 to {limit}"))?;
            if f[i].replace(v).is_some() {
                return Err(format!("{text:?}: field {k} given twice"));
            }
        }
        let h = f[4].ok_or_else(|| format!("{text:?}: h (log2 block height) is required"))?;
        let [c, s, g, k, _] = f.map(|v| v.unwrap_or(0));
        return Ok(nvidia_block_linear_2d(c, s, g, k, h));
    }
    number(up).ok_or_else(|| format!("unknown modifier {text:?}"))
}

fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0X") {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok(),
        None => s.replace('_', "").parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_linear_matches_the_drm_fourcc_macro() {
        // DRM_FORMAT_MOD_NVIDIA_16BX2_BLOCK(v) = BLOCK_LINEAR_2D(0, 0, 0, 0, v) = 0x03..10 | v.
        for v in 0..6 {
            assert_eq!(
                nvidia_block_linear_2d(0, 0, 0, 0, v),
                0x0300_0000_0000_0010 | v
            );
        }
        // Bit positions written out: c 25:23, s 22 (+27:26), g 21:20, k 19:12, h 3:0.
        assert_eq!(
            nvidia_block_linear_2d(1, 1, 2, 0xfe, 4),
            0x0300_0000_0000_0000 | (1 << 23) | (1 << 22) | (2 << 20) | (0xfe << 12) | 0x14
        );
        assert_eq!(nvidia_block_linear_2d(0, 3, 0, 0, 0), 0x0300_0000_0440_0010);
        let b = NvidiaBlockLinear::decode(nvidia_block_linear_2d(2, 5, 1, 0x7a, 3)).unwrap();
        assert_eq!((b.c, b.s, b.g, b.k, b.h), (2, 5, 1, 0x7a, 3));
        assert_eq!(b.encode(), nvidia_block_linear_2d(2, 5, 1, 0x7a, 3));
        assert_eq!(NvidiaBlockLinear::decode(0x0300_0000_0000_0001), None); // TEGRA_TILED
        assert_eq!(NvidiaBlockLinear::decode(0x0300_0000_0000_0030), None); // reserved bit 5
        assert_eq!(NvidiaBlockLinear::decode(0x0310_0000_0000_0010), None); // reserved bit 52
    }

    #[test]
    fn layouts() {
        assert_eq!(layout_of(LINEAR).unwrap().width_bytes, 1);
        let t = layout_of(nvidia_block_linear_2d(0, 1, 2, 0x06, 4)).unwrap();
        assert_eq!((t.width_bytes, t.height_rows, t.base_align), (64, 128, 512));
        let t = layout_of(nvidia_block_linear_2d(0, 0, 1, 0x70, 2)).unwrap();
        assert_eq!((t.height_rows, t.base_align), (16, 256));
        assert!(layout_of(INVALID).unwrap_err().contains("implicit"));
        assert!(layout_of(nvidia_block_linear_2d(1, 1, 2, 0x06, 4))
            .unwrap_err()
            .contains("compress"));
        assert!(layout_of(nvidia_block_linear_2d(0, 1, 3, 0x06, 4)).is_err());
        assert!(layout_of(nvidia_block_linear_2d(0, 1, 2, 0x06, 6)).is_err());
        assert!(layout_of(0x0200_0000_0000_0001).is_err()); // AMD
    }

    #[test]
    fn names_round_trip() {
        for m in [
            LINEAR,
            INVALID,
            I915_X_TILED,
            I915_Y_TILED,
            nvidia_block_linear_2d(0, 1, 2, 0x06, 4),
            nvidia_block_linear_2d(7, 7, 3, 0xff, 15),
            0x0200_0000_1234_5678,
            u64::MAX,
        ] {
            assert_eq!(parse(&name(m)), Ok(m), "{}", name(m));
            assert_eq!(parse(&name(m).to_lowercase()), Ok(m));
        }
        assert_eq!(parse("linear"), Ok(0));
        assert_eq!(parse("DRM_FORMAT_MOD_LINEAR"), Ok(0));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(
            parse("nvidia_16bx2_block_two_gob"),
            Ok(0x0300_0000_0000_0011)
        );
        assert_eq!(
            parse("NVIDIA_BLOCK_LINEAR_2D(h=4)"),
            Ok(nvidia_block_linear_2d(0, 0, 0, 0, 4))
        );
        assert_eq!(
            parse("nvidia_block_linear_2d(h = 1, k = 0xfe, s=1)"),
            Ok(nvidia_block_linear_2d(0, 1, 0, 0xfe, 1))
        );
        assert!(parse("NVIDIA_BLOCK_LINEAR_2D(k=6)").is_err());
        assert!(parse("NVIDIA_BLOCK_LINEAR_2D(h=1,h=2)").is_err());
        assert!(parse("NVIDIA_BLOCK_LINEAR_2D(h=16)").is_err());
        assert!(parse("tiled").is_err());
    }
}
