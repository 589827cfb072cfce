//! Attribute keys: their stable wire codes, names, groups, value kinds and merge policies.

use std::fmt;

/// Which buffer type a key belongs to (or `General` for keys of every list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyGroup {
    /// Keys of every list (types, permissions, CPU access, accessor identity, memory hints).
    General,
    /// Keys of a raw buffer.
    Raw,
    /// Keys of an image (also used by image pyramids for level 0).
    Image,
    /// Keys of a tensor.
    Tensor,
    /// Keys of an array.
    Array,
    /// Keys of an image pyramid (levels, scale).
    Pyramid,
}

impl KeyGroup {
    /// The section name used in TOML/JSON files (`""` for general keys, which live at top level).
    pub fn section(self) -> &'static str {
        match self {
            KeyGroup::General => "",
            KeyGroup::Raw => "raw",
            KeyGroup::Image => "image",
            KeyGroup::Tensor => "tensor",
            KeyGroup::Array => "array",
            KeyGroup::Pyramid => "pyramid",
        }
    }
}

/// The kind of [`crate::attr::Value`] a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// [`crate::attr::Value::Bool`].
    Bool,
    /// [`crate::attr::Value::U32`].
    U32,
    /// [`crate::attr::Value::U64`].
    U64,
    /// [`crate::attr::Value::F64`].
    F64,
    /// [`crate::attr::Value::Str`].
    Str,
    /// [`crate::attr::Value::U64List`].
    U64List,
    /// [`crate::attr::Value::StrList`].
    StrList,
    /// [`crate::attr::Value::Types`].
    Types,
    /// [`crate::attr::Value::Permission`].
    Permission,
    /// [`crate::attr::Value::Accessor`].
    Accessor,
    /// [`crate::attr::Value::Backend`].
    Backend,
    /// [`crate::attr::Value::Format`].
    Format,
    /// [`crate::attr::Value::Layout`].
    Layout,
    /// [`crate::attr::Value::ColorStd`].
    ColorStd,
    /// [`crate::attr::Value::Scan`].
    Scan,
    /// [`crate::attr::Value::DataType`].
    DataType,
    /// [`crate::attr::Value::Padding`].
    Padding,
    /// [`crate::attr::Value::Modifiers`].
    Modifiers,
    /// [`crate::attr::Value::ModifierUsage`].
    ModifierUsage,
    /// [`crate::attr::Value::GpuIds`].
    GpuIdSet,
    /// [`crate::attr::Value::Gpu`].
    GpuId,
    /// [`crate::attr::Value::GpuFlags`].
    GpuFlags,
}

/// How reconciliation merges the values several lists give for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergePolicy {
    /// Every list that sets the key must give the same value.
    Equal,
    /// The largest value wins (sizes, minimum pitches, padding per side, alignments, permissions).
    /// For alignments (always powers of two) the maximum is also the least common multiple.
    Max,
    /// Logical OR (some accessor needs it).
    Or,
    /// Logical AND (every accessor that states it must allow it).
    And,
    /// Set union (GPU ids, buffer types).
    Union,
    /// Ordered-set intersection, then one pick by the documented rank (DRM format modifiers:
    /// `image.modifiers`, and `image.modifier` as a set of one; see `docs/model.md`).
    Intersect,
    /// Not merged: identifies one list (accessor name and kind); reconciliation keeps one per list.
    PerList,
    /// An output: computed by reconciliation, never set by a caller.
    Output,
}

macro_rules! keys {
    ($( $(#[$doc:meta])* $name:ident = $code:expr, $text:expr, $group:ident, $kind:ident, $merge:ident; )*) => {
        /// An attribute key.
        ///
        /// Every key has a stable 16-bit wire code ([`Key::code`]) used by IPC and a stable
        /// name ([`Key::name`]) used in files and dumps. Keys with the high bit of the code set
        /// (`0x8000`) are outputs: reconciliation computes them, a caller cannot set them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum Key {
            $( $(#[$doc])* $name, )*
        }

        impl Key {
            /// Every key, in index order.
            pub const ALL: &'static [Key] = &[ $( Key::$name, )* ];
            /// Number of keys (size of the per-list slot array).
            pub const COUNT: usize = Key::ALL.len();

            /// The stable wire code of this key.
            #[inline]
            pub const fn code(self) -> u16 {
                match self { $( Key::$name => $code, )* }
            }

            /// The key with this wire code, if any.
            pub const fn from_code(code: u16) -> Option<Key> {
                match code { $( $code => Some(Key::$name), )* _ => None }
            }

            /// The stable name used in files and dumps: `section.name` (`image.format`), or the
            /// bare name for general keys (`need_cpu_access`), `out.` prefixed for outputs.
            pub const fn name(self) -> &'static str {
                match self { $( Key::$name => $text, )* }
            }

            /// The buffer type this key belongs to.
            pub const fn group(self) -> KeyGroup {
                match self { $( Key::$name => KeyGroup::$group, )* }
            }

            /// The kind of value this key takes.
            pub const fn value_kind(self) -> ValueKind {
                match self { $( Key::$name => ValueKind::$kind, )* }
            }

            /// How reconciliation merges this key.
            #[inline]
            pub const fn merge_policy(self) -> MergePolicy {
                match self { $( Key::$name => MergePolicy::$merge, )* }
            }
        }
    };
}

keys! {
    /// Buffer types of the list ([`crate::attr::BufferTypes`]); union across lists.
    Types = 0x0001, "types", General, Types, Union;
    /// The accessor reads or writes the buffer through the CPU; OR.
    NeedCpuAccess = 0x0002, "need_cpu_access", General, Bool, Or;
    /// Permission the accessor needs (read-only when not set); the reconciled permission is the
    /// maximum.
    RequiredPerm = 0x0003, "required_permission", General, Permission, Max;
    /// Whether CPU mappings may be cached; AND over the lists that state it (default true).
    EnableCpuCache = 0x0004, "enable_cpu_cache", General, Bool, And;
    /// UUIDs of the GPUs that access the buffer (NvSciBuf `GpuId`); union.
    GpuIds = 0x0005, "gpu_ids", General, GpuIdSet, Union;
    /// The accessor needs physically contiguous memory (no IOMMU); OR.
    PhysContiguous = 0x0006, "physically_contiguous", General, Bool, Or;
    /// Name of the accessor (used in conflicts and the buffer name), at most 64 bytes.
    AccessorName = 0x0007, "accessor_name", General, Str, PerList;
    /// Kind of the accessor (decides the memory requirement).
    AccessorKind = 0x0008, "accessor_kind", General, Accessor, PerList;
    /// Preferred memory backend (a hint); all lists that give one must agree.
    PreferredBackend = 0x0009, "preferred_backend", General, Backend, Equal;
    /// Per GPU: whether that GPU may cache the buffer (NvSciBuf `EnableGpuCache`); each GPU
    /// must be in `gpu_ids`; AND per GPU.
    GpuCache = 0x000a, "gpu_cache", General, GpuFlags, And;
    /// Per GPU: whether that GPU asks for a compressible buffer (NvSciBuf
    /// `EnableGpuCompression`); each GPU must be in `gpu_ids`; equal per GPU.
    GpuCompression = 0x000b, "gpu_compression", General, GpuFlags, Equal;
    /// Allocate in this GPU's video memory (NvSciBuf `VidMem_GpuId`); the list must name the
    /// GPU in its `gpu_ids`; equal.
    VidMemGpu = 0x000c, "vidmem_gpu", General, GpuId, Equal;

    /// Raw buffer size in bytes (non-zero); equal (NvSciBuf: every list that gives a size must
    /// give the same one).
    RawSize = 0x0101, "raw.size", Raw, U64, Equal;
    /// Raw buffer alignment in bytes (power of two); maximum.
    RawAlign = 0x0102, "raw.align", Raw, U64, Max;

    /// Image layout: pitch-linear or tiled (by a DRM format modifier); equal.
    ImageLayout = 0x0201, "image.layout", Image, Layout, Equal;
    /// One DRM format modifier (`0` = linear): the set of one `{modifier}`, intersected with
    /// every list's `image.modifiers`.
    ImageModifier = 0x0202, "image.modifier", Image, U64, Intersect;
    /// Pixel format ([`crate::layout::PixelFormat`]); equal.
    ImageFormat = 0x0203, "image.format", Image, Format, Equal;
    /// Width in pixels (non-zero); equal.
    ImageWidth = 0x0204, "image.width", Image, U32, Equal;
    /// Height in pixels (non-zero); equal.
    ImageHeight = 0x0205, "image.height", Image, U32, Equal;
    /// Color standard; equal.
    ImageColorStd = 0x0206, "image.color_std", Image, ColorStd, Equal;
    /// Scan type (progressive or interlaced); equal.
    ImageScanType = 0x0207, "image.scan_type", Image, Scan, Equal;
    /// Padding in pixels around the image (top, bottom, left, right); maximum per side.
    ImagePadding = 0x0208, "image.padding", Image, Padding, Max;
    /// Alignment of every plane's pitch in bytes (power of two); maximum.
    ImagePitchAlign = 0x0209, "image.pitch_align", Image, U64, Max;
    /// Alignment of every plane's start address in bytes (power of two); maximum.
    ImageBaseAlign = 0x020a, "image.base_align", Image, U64, Max;
    /// Alignment of the (luma) plane height in rows (power of two); maximum.
    ImageHeightAlign = 0x020b, "image.height_align", Image, U64, Max;
    /// Alignment of every plane's size in bytes (power of two); maximum.
    ImageSizeAlign = 0x020c, "image.size_align", Image, U64, Max;
    /// Minimum pitch of plane 0 in bytes (e.g. V4L2 `bytesperline` from `VIDIOC_TRY_FMT`);
    /// the other planes' pitches follow from it; maximum.
    ImageMinPitch = 0x020d, "image.min_pitch", Image, U64, Max;
    /// Minimum size of the image in bytes (e.g. V4L2 `sizeimage`); maximum.
    ImageMinSize = 0x020e, "image.min_size", Image, U64, Max;
    /// Exact pitch of plane 0 in bytes, for a device that cannot take any other (a V4L2 driver
    /// that does not accept a padded `bytesperline`); every list that gives one must agree,
    /// and it must satisfy every other list's alignment and minimum; equal.
    ImageExactPitch = 0x020f, "image.exact_pitch", Image, U64, Equal;
    /// DRM format modifiers the accessor accepts for the format, most preferred first (1 to 64,
    /// no repeats; `LINEAR` and `INVALID` are distinct); intersected, then one is picked
    /// (`out.modifier`).
    ImageModifiers = 0x0210, "image.modifiers", Image, Modifiers, Intersect;
    /// What the accessor does with the image (scanout, video, render, sampling, cpu): ranks
    /// its modifier order in the pick; per list (default from `accessor_kind`).
    ImageModifierUsage = 0x0211, "image.modifier_usage", Image, ModifierUsage, PerList;
    /// Base-address alignment of each plane in bytes (powers of two, one per plane of the
    /// format; NvSciBuf `PlaneBaseAddrAlign`), on top of `image.base_align`; maximum per plane.
    ImagePlaneBaseAlign = 0x0212, "image.plane_base_align", Image, U64List, Max;

    /// Tensor element data type; equal.
    TensorDataType = 0x0301, "tensor.data_type", Tensor, DataType, Equal;
    /// Number of tensor dimensions (1 to 8); equal.
    TensorNumDims = 0x0302, "tensor.num_dims", Tensor, U32, Equal;
    /// Size of each dimension, outermost first (non-zero, 1 to 8 entries); equal.
    TensorSizes = 0x0303, "tensor.sizes", Tensor, U64List, Equal;
    /// Alignment in bytes of each dimension's stride (powers of two); maximum per dimension.
    TensorAlignPerDim = 0x0304, "tensor.align_per_dim", Tensor, U64List, Max;
    /// Alignment of the tensor's start address in bytes (power of two); maximum.
    TensorBaseAlign = 0x0305, "tensor.base_align", Tensor, U64, Max;

    /// Array element data type; equal.
    ArrayDataType = 0x0401, "array.data_type", Array, DataType, Equal;
    /// Array stride in bytes (non-zero, at least the element size); equal.
    ArrayStride = 0x0402, "array.stride", Array, U64, Equal;
    /// Array capacity in elements (non-zero); equal.
    ArrayCapacity = 0x0403, "array.capacity", Array, U64, Equal;

    /// Number of pyramid levels (1 to 10); equal.
    PyramidLevels = 0x0501, "pyramid.levels", Pyramid, U32, Equal;
    /// Scale factor between levels, in (0, 1]; equal.
    PyramidScale = 0x0502, "pyramid.scale", Pyramid, F64, Equal;

    /// Output: buffer size in bytes.
    OutSize = 0x8001, "out.size", General, U64, Output;
    /// Output: buffer base-address alignment in bytes.
    OutAlign = 0x8002, "out.align", General, U64, Output;
    /// Output: the actual permission (maximum required; read-only when no list states one).
    OutPermission = 0x8003, "out.permission", General, Permission, Output;
    /// Output: some accessor needs CPU access.
    OutCpuAccess = 0x8004, "out.cpu_access", General, Bool, Output;
    /// Output: CPU mappings are cached.
    OutCpuCache = 0x8005, "out.cpu_cache", General, Bool, Output;
    /// Output: memory must be physically contiguous.
    OutContiguous = 0x8006, "out.contiguous", General, Bool, Output;
    /// Output: memory must be pinnable by VFIO (memfd-backed).
    OutPinnable = 0x8007, "out.pinnable", General, Bool, Output;
    /// Output: some accessor is a device, so the buffer must be a dma-buf.
    OutDeviceAccess = 0x8008, "out.device_access", General, Bool, Output;
    /// Output: the accessor names, sorted.
    OutAccessors = 0x8009, "out.accessors", General, StrList, Output;
    /// Output: per GPU of `gpu_ids`, whether it caches the buffer (when GPUs are named).
    OutGpuCache = 0x800a, "out.gpu_cache", General, GpuFlags, Output;
    /// Output: per GPU of `gpu_ids`, whether the buffer is compressible for it (when GPUs are
    /// named).
    OutGpuCompression = 0x800b, "out.gpu_compression", General, GpuFlags, Output;
    /// Output: CPU access needs explicit cache maintenance (NvSciBuf `CpuNeedSwCacheCoherency`).
    OutCpuSwCacheCoherency = 0x800c, "out.cpu_sw_cache_coherency", General, Bool, Output;

    /// Output: number of planes.
    OutPlaneCount = 0x8201, "out.plane_count", Image, U32, Output;
    /// Output: pitch of each plane in bytes.
    OutPlanePitch = 0x8202, "out.plane_pitch", Image, U64List, Output;
    /// Output: offset of each plane from the buffer start in bytes.
    OutPlaneOffset = 0x8203, "out.plane_offset", Image, U64List, Output;
    /// Output: aligned height of each plane in rows.
    OutPlaneAlignedHeight = 0x8204, "out.plane_aligned_height", Image, U64List, Output;
    /// Output: aligned size of each plane in bytes.
    OutPlaneSize = 0x8205, "out.plane_size", Image, U64List, Output;
    /// Output: bits per pixel of each plane (per sample of that plane's resolution).
    OutPlaneBpp = 0x8206, "out.plane_bpp", Image, U64List, Output;
    /// Output: channel count of each plane.
    OutPlaneChannels = 0x8207, "out.plane_channels", Image, U64List, Output;
    /// Output: offset of each plane's second field (interlaced; 0 when progressive).
    OutPlaneSecondFieldOffset = 0x8208, "out.plane_second_field_offset", Image, U64List, Output;
    /// Output: the DRM format modifier picked from the common modifiers.
    OutModifier = 0x8209, "out.modifier", Image, U64, Output;

    /// Output: tensor stride of each dimension in bytes.
    OutTensorStrides = 0x8301, "out.tensor_strides", Tensor, U64List, Output;
    /// Output: tensor size in bytes.
    OutTensorSize = 0x8302, "out.tensor_size", Tensor, U64, Output;

    /// Output: array size in bytes.
    OutArraySize = 0x8401, "out.array_size", Array, U64, Output;
    /// Output: array alignment in bytes.
    OutArrayAlign = 0x8402, "out.array_align", Array, U64, Output;

    /// Output: offset of each pyramid level.
    OutPyramidLevelOffsets = 0x8501, "out.pyramid_level_offsets", Pyramid, U64List, Output;
    /// Output: size of each pyramid level.
    OutPyramidLevelSizes = 0x8502, "out.pyramid_level_sizes", Pyramid, U64List, Output;
}

// Positions in an AttrList are stored in a u8.
const _: () = assert!(Key::COUNT < 255);

impl Key {
    /// Index of this key in a per-list slot array (`0..Key::COUNT`).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether this key is an output (computed by reconciliation).
    pub const fn is_output(self) -> bool {
        self.code() & 0x8000 != 0
    }

    /// The key with this name (as in [`Key::name`]).
    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// The name without the section prefix (`format` for `image.format`).
    pub fn short_name(self) -> &'static str {
        let n = self.name();
        match n.find('.') {
            Some(i) => &n[i + 1..],
            None => n,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_names_are_unique_and_round_trip() {
        let mut codes = HashSet::new();
        let mut names = HashSet::new();
        for (i, k) in Key::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert!(codes.insert(k.code()), "duplicate code {:#x}", k.code());
            assert!(names.insert(k.name()), "duplicate name {}", k.name());
            assert_eq!(Key::from_code(k.code()), Some(*k));
            assert_eq!(Key::from_name(k.name()), Some(*k));
            assert_eq!(k.is_output(), k.merge_policy() == MergePolicy::Output);
            assert_eq!(k.is_output(), k.name().starts_with("out."));
        }
        assert_eq!(Key::from_code(0x7fff), None);
    }

    #[test]
    fn wire_codes_are_stable() {
        // These numbers are part of the IPC wire format: never change them.
        assert_eq!(Key::Types.code(), 0x0001);
        assert_eq!(Key::ImageFormat.code(), 0x0203);
        assert_eq!(Key::TensorSizes.code(), 0x0303);
        assert_eq!(Key::OutPlanePitch.code(), 0x8202);
        assert_eq!(Key::OutPyramidLevelSizes.code(), 0x8502);
        assert_eq!(Key::ImageModifiers.code(), 0x0210);
        assert_eq!(Key::ImageModifierUsage.code(), 0x0211);
        assert_eq!(Key::OutModifier.code(), 0x8209);
    }
}
