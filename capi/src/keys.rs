//! Key codes as C constants (`UB_KEY_*`): the wire codes of `unibuf::attr::Key`.
//!
//! The generic calls take any code (or a name through `ub_key_from_name`), so a key added to
//! the library works from C without this table; the table is a convenience, and a test checks
//! that every constant here is the library's code for that name.

/// Attribute key wire codes (`unibuf::attr::Key::code`). Output keys have bit 15 set.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_key {
    /// `types` (Types): Buffer types of the list; union across lists.
    UB_KEY_TYPES = 0x0001,
    /// `need_cpu_access` (Bool): The accessor reads or writes the buffer through the CPU; OR.
    UB_KEY_NEED_CPU_ACCESS = 0x0002,
    /// `required_permission` (Permission): Permission the accessor needs; the reconciled permission is the maximum.
    UB_KEY_REQUIRED_PERMISSION = 0x0003,
    /// `enable_cpu_cache` (Bool): Whether CPU mappings may be cached; AND over the lists that state it (default true).
    UB_KEY_ENABLE_CPU_CACHE = 0x0004,
    /// `gpu_ids` (GpuIdSet): UUIDs of the GPUs that access the buffer (n × 16 bytes); union.
    UB_KEY_GPU_IDS = 0x0005,
    /// `physically_contiguous` (Bool): The accessor needs physically contiguous memory (no IOMMU); OR.
    UB_KEY_PHYSICALLY_CONTIGUOUS = 0x0006,
    /// `accessor_name` (Str): Name of the accessor (used in conflicts and the buffer name), at most 64 bytes.
    UB_KEY_ACCESSOR_NAME = 0x0007,
    /// `accessor_kind` (Accessor): Kind of the accessor (decides the memory requirement).
    UB_KEY_ACCESSOR_KIND = 0x0008,
    /// `preferred_backend` (Backend): Preferred memory backend (a hint); all lists that give one must agree.
    UB_KEY_PREFERRED_BACKEND = 0x0009,
    /// `gpu_cache` (GpuFlags): GPU caching per GPU (n × (16-byte UUID + 1 byte)); AND per GPU.
    UB_KEY_GPU_CACHE = 0x000a,
    /// `gpu_compression` (GpuFlags): requested compression per GPU; none when several GPUs, a
    /// non-GPU engine or CPU access is involved.
    UB_KEY_GPU_COMPRESSION = 0x000b,
    /// `vidmem_gpu` (GpuId): allocate in this GPU's memory (16 bytes); equal-or-fail.
    UB_KEY_VIDMEM_GPU = 0x000c,
    /// `raw.size` (U64): Raw buffer size in bytes (non-zero); maximum.
    UB_KEY_RAW_SIZE = 0x0101,
    /// `raw.align` (U64): Raw buffer alignment in bytes (power of two); maximum.
    UB_KEY_RAW_ALIGN = 0x0102,
    /// `image.layout` (Layout): Image layout: pitch-linear or tiled (by a DRM format modifier); equal.
    UB_KEY_IMAGE_LAYOUT = 0x0201,
    /// `image.modifier` (U64): DRM format modifier (`0` = linear); equal.
    UB_KEY_IMAGE_MODIFIER = 0x0202,
    /// `image.format` (Format): Pixel format; equal.
    UB_KEY_IMAGE_FORMAT = 0x0203,
    /// `image.width` (U32): Width in pixels (non-zero); equal.
    UB_KEY_IMAGE_WIDTH = 0x0204,
    /// `image.height` (U32): Height in pixels (non-zero); equal.
    UB_KEY_IMAGE_HEIGHT = 0x0205,
    /// `image.color_std` (ColorStd): Color standard; equal.
    UB_KEY_IMAGE_COLOR_STD = 0x0206,
    /// `image.scan_type` (Scan): Scan type (progressive or interlaced); equal.
    UB_KEY_IMAGE_SCAN_TYPE = 0x0207,
    /// `image.padding` (Padding): Padding in pixels around the image (top, bottom, left, right); maximum per side.
    UB_KEY_IMAGE_PADDING = 0x0208,
    /// `image.pitch_align` (U64): Alignment of every plane's pitch in bytes (power of two); maximum.
    UB_KEY_IMAGE_PITCH_ALIGN = 0x0209,
    /// `image.base_align` (U64): Alignment of every plane's start address in bytes (power of two); maximum.
    UB_KEY_IMAGE_BASE_ALIGN = 0x020a,
    /// `image.height_align` (U64): Alignment of the (luma) plane height in rows (power of two); maximum.
    UB_KEY_IMAGE_HEIGHT_ALIGN = 0x020b,
    /// `image.size_align` (U64): Alignment of every plane's size in bytes (power of two); maximum.
    UB_KEY_IMAGE_SIZE_ALIGN = 0x020c,
    /// `image.min_pitch` (U64): Minimum pitch of plane 0 in bytes (e.g. V4L2 `bytesperline` from `VIDIOC_TRY_FMT`); the other planes' pitches follow from it; maximum.
    UB_KEY_IMAGE_MIN_PITCH = 0x020d,
    /// `image.min_size` (U64): Minimum size of the image in bytes (e.g. V4L2 `sizeimage`); maximum.
    UB_KEY_IMAGE_MIN_SIZE = 0x020e,
    /// `image.exact_pitch` (U64): Exact pitch of plane 0 in bytes, for a device that cannot take any other (a V4L2 driver that does not accept a padded `bytesperline`); every list that gives one must agree, and it must satisfy every other list's alignment and minimum; equal.
    UB_KEY_IMAGE_EXACT_PITCH = 0x020f,
    /// `image.modifiers` (Modifiers): DRM format modifiers accepted, most preferred first (n × u64).
    UB_KEY_IMAGE_MODIFIERS = 0x0210,
    /// `image.modifier_usage` (ModifierUsage): what the accessor does with the image (u32).
    UB_KEY_IMAGE_MODIFIER_USAGE = 0x0211,
    /// `image.plane_base_align` (U64List): base-address alignment of each plane; maximum per plane.
    UB_KEY_IMAGE_PLANE_BASE_ALIGN = 0x0212,
    /// `tensor.data_type` (DataType): Tensor element data type; equal.
    UB_KEY_TENSOR_DATA_TYPE = 0x0301,
    /// `tensor.num_dims` (U32): Number of tensor dimensions (1 to 8); equal.
    UB_KEY_TENSOR_NUM_DIMS = 0x0302,
    /// `tensor.sizes` (U64List): Size of each dimension, outermost first (non-zero, 1 to 8 entries); equal.
    UB_KEY_TENSOR_SIZES = 0x0303,
    /// `tensor.align_per_dim` (U64List): Alignment in bytes of each dimension's stride (powers of two); maximum per dimension.
    UB_KEY_TENSOR_ALIGN_PER_DIM = 0x0304,
    /// `tensor.base_align` (U64): Alignment of the tensor's start address in bytes (power of two); maximum.
    UB_KEY_TENSOR_BASE_ALIGN = 0x0305,
    /// `array.data_type` (DataType): Array element data type; equal.
    UB_KEY_ARRAY_DATA_TYPE = 0x0401,
    /// `array.stride` (U64): Array stride in bytes (non-zero, at least the element size); equal.
    UB_KEY_ARRAY_STRIDE = 0x0402,
    /// `array.capacity` (U64): Array capacity in elements (non-zero); equal.
    UB_KEY_ARRAY_CAPACITY = 0x0403,
    /// `pyramid.levels` (U32): Number of pyramid levels (1 to 10); equal.
    UB_KEY_PYRAMID_LEVELS = 0x0501,
    /// `pyramid.scale` (F64): Scale factor between levels, in (0, 1]; equal.
    UB_KEY_PYRAMID_SCALE = 0x0502,
    /// `out.size` (U64): Output: buffer size in bytes.
    UB_KEY_OUT_SIZE = 0x8001,
    /// `out.align` (U64): Output: buffer base-address alignment in bytes.
    UB_KEY_OUT_ALIGN = 0x8002,
    /// `out.permission` (Permission): Output: the actual permission (maximum required).
    UB_KEY_OUT_PERMISSION = 0x8003,
    /// `out.cpu_access` (Bool): Output: some accessor needs CPU access.
    UB_KEY_OUT_CPU_ACCESS = 0x8004,
    /// `out.cpu_cache` (Bool): Output: CPU mappings are cached.
    UB_KEY_OUT_CPU_CACHE = 0x8005,
    /// `out.contiguous` (Bool): Output: memory must be physically contiguous.
    UB_KEY_OUT_CONTIGUOUS = 0x8006,
    /// `out.pinnable` (Bool): Output: memory must be pinnable by VFIO (memfd-backed).
    UB_KEY_OUT_PINNABLE = 0x8007,
    /// `out.device_access` (Bool): Output: some accessor is a device, so the buffer must be a dma-buf.
    UB_KEY_OUT_DEVICE_ACCESS = 0x8008,
    /// `out.gpu_cache` (GpuFlags): the reconciled GPU caching per GPU.
    UB_KEY_OUT_GPU_CACHE = 0x800a,
    /// `out.gpu_compression` (GpuFlags): the reconciled compression per GPU.
    UB_KEY_OUT_GPU_COMPRESSION = 0x800b,
    /// `out.cpu_sw_cache_coherency` (Bool): CPU access needs explicit cache maintenance.
    UB_KEY_OUT_CPU_SW_CACHE_COHERENCY = 0x800c,
    /// `out.accessors` (StrList): Output: the accessor names, sorted.
    UB_KEY_OUT_ACCESSORS = 0x8009,
    /// `out.plane_count` (U32): Output: number of planes.
    UB_KEY_OUT_PLANE_COUNT = 0x8201,
    /// `out.plane_pitch` (U64List): Output: pitch of each plane in bytes.
    UB_KEY_OUT_PLANE_PITCH = 0x8202,
    /// `out.plane_offset` (U64List): Output: offset of each plane from the buffer start in bytes.
    UB_KEY_OUT_PLANE_OFFSET = 0x8203,
    /// `out.plane_aligned_height` (U64List): Output: aligned height of each plane in rows.
    UB_KEY_OUT_PLANE_ALIGNED_HEIGHT = 0x8204,
    /// `out.plane_size` (U64List): Output: aligned size of each plane in bytes.
    UB_KEY_OUT_PLANE_SIZE = 0x8205,
    /// `out.plane_bpp` (U64List): Output: bits per pixel of each plane (per sample of that plane's resolution).
    UB_KEY_OUT_PLANE_BPP = 0x8206,
    /// `out.plane_channels` (U64List): Output: channel count of each plane.
    UB_KEY_OUT_PLANE_CHANNELS = 0x8207,
    /// `out.plane_second_field_offset` (U64List): Output: offset of each plane's second field (interlaced; 0 when progressive).
    UB_KEY_OUT_PLANE_SECOND_FIELD_OFFSET = 0x8208,
    /// `out.modifier` (U64): the picked DRM format modifier.
    UB_KEY_OUT_MODIFIER = 0x8209,
    /// `out.tensor_strides` (U64List): Output: tensor stride of each dimension in bytes.
    UB_KEY_OUT_TENSOR_STRIDES = 0x8301,
    /// `out.tensor_size` (U64): Output: tensor size in bytes.
    UB_KEY_OUT_TENSOR_SIZE = 0x8302,
    /// `out.array_size` (U64): Output: array size in bytes.
    UB_KEY_OUT_ARRAY_SIZE = 0x8401,
    /// `out.array_align` (U64): Output: array alignment in bytes.
    UB_KEY_OUT_ARRAY_ALIGN = 0x8402,
    /// `out.pyramid_level_offsets` (U64List): Output: offset of each pyramid level.
    UB_KEY_OUT_PYRAMID_LEVEL_OFFSETS = 0x8501,
    /// `out.pyramid_level_sizes` (U64List): Output: size of each pyramid level.
    UB_KEY_OUT_PYRAMID_LEVEL_SIZES = 0x8502,
}

/// Every constant with its key name, for the consistency test.
#[cfg(test)]
pub(crate) const KEY_NAMES: &[(ub_key, &str)] = &[
    (ub_key::UB_KEY_TYPES, "types"),
    (ub_key::UB_KEY_GPU_CACHE, "gpu_cache"),
    (ub_key::UB_KEY_GPU_COMPRESSION, "gpu_compression"),
    (ub_key::UB_KEY_VIDMEM_GPU, "vidmem_gpu"),
    (ub_key::UB_KEY_IMAGE_MODIFIERS, "image.modifiers"),
    (ub_key::UB_KEY_IMAGE_MODIFIER_USAGE, "image.modifier_usage"),
    (
        ub_key::UB_KEY_IMAGE_PLANE_BASE_ALIGN,
        "image.plane_base_align",
    ),
    (ub_key::UB_KEY_OUT_GPU_CACHE, "out.gpu_cache"),
    (ub_key::UB_KEY_OUT_GPU_COMPRESSION, "out.gpu_compression"),
    (
        ub_key::UB_KEY_OUT_CPU_SW_CACHE_COHERENCY,
        "out.cpu_sw_cache_coherency",
    ),
    (ub_key::UB_KEY_OUT_MODIFIER, "out.modifier"),
    (ub_key::UB_KEY_NEED_CPU_ACCESS, "need_cpu_access"),
    (ub_key::UB_KEY_REQUIRED_PERMISSION, "required_permission"),
    (ub_key::UB_KEY_ENABLE_CPU_CACHE, "enable_cpu_cache"),
    (ub_key::UB_KEY_GPU_IDS, "gpu_ids"),
    (
        ub_key::UB_KEY_PHYSICALLY_CONTIGUOUS,
        "physically_contiguous",
    ),
    (ub_key::UB_KEY_ACCESSOR_NAME, "accessor_name"),
    (ub_key::UB_KEY_ACCESSOR_KIND, "accessor_kind"),
    (ub_key::UB_KEY_PREFERRED_BACKEND, "preferred_backend"),
    (ub_key::UB_KEY_RAW_SIZE, "raw.size"),
    (ub_key::UB_KEY_RAW_ALIGN, "raw.align"),
    (ub_key::UB_KEY_IMAGE_LAYOUT, "image.layout"),
    (ub_key::UB_KEY_IMAGE_MODIFIER, "image.modifier"),
    (ub_key::UB_KEY_IMAGE_FORMAT, "image.format"),
    (ub_key::UB_KEY_IMAGE_WIDTH, "image.width"),
    (ub_key::UB_KEY_IMAGE_HEIGHT, "image.height"),
    (ub_key::UB_KEY_IMAGE_COLOR_STD, "image.color_std"),
    (ub_key::UB_KEY_IMAGE_SCAN_TYPE, "image.scan_type"),
    (ub_key::UB_KEY_IMAGE_PADDING, "image.padding"),
    (ub_key::UB_KEY_IMAGE_PITCH_ALIGN, "image.pitch_align"),
    (ub_key::UB_KEY_IMAGE_BASE_ALIGN, "image.base_align"),
    (ub_key::UB_KEY_IMAGE_HEIGHT_ALIGN, "image.height_align"),
    (ub_key::UB_KEY_IMAGE_SIZE_ALIGN, "image.size_align"),
    (ub_key::UB_KEY_IMAGE_MIN_PITCH, "image.min_pitch"),
    (ub_key::UB_KEY_IMAGE_MIN_SIZE, "image.min_size"),
    (ub_key::UB_KEY_IMAGE_EXACT_PITCH, "image.exact_pitch"),
    (ub_key::UB_KEY_TENSOR_DATA_TYPE, "tensor.data_type"),
    (ub_key::UB_KEY_TENSOR_NUM_DIMS, "tensor.num_dims"),
    (ub_key::UB_KEY_TENSOR_SIZES, "tensor.sizes"),
    (ub_key::UB_KEY_TENSOR_ALIGN_PER_DIM, "tensor.align_per_dim"),
    (ub_key::UB_KEY_TENSOR_BASE_ALIGN, "tensor.base_align"),
    (ub_key::UB_KEY_ARRAY_DATA_TYPE, "array.data_type"),
    (ub_key::UB_KEY_ARRAY_STRIDE, "array.stride"),
    (ub_key::UB_KEY_ARRAY_CAPACITY, "array.capacity"),
    (ub_key::UB_KEY_PYRAMID_LEVELS, "pyramid.levels"),
    (ub_key::UB_KEY_PYRAMID_SCALE, "pyramid.scale"),
    (ub_key::UB_KEY_OUT_SIZE, "out.size"),
    (ub_key::UB_KEY_OUT_ALIGN, "out.align"),
    (ub_key::UB_KEY_OUT_PERMISSION, "out.permission"),
    (ub_key::UB_KEY_OUT_CPU_ACCESS, "out.cpu_access"),
    (ub_key::UB_KEY_OUT_CPU_CACHE, "out.cpu_cache"),
    (ub_key::UB_KEY_OUT_CONTIGUOUS, "out.contiguous"),
    (ub_key::UB_KEY_OUT_PINNABLE, "out.pinnable"),
    (ub_key::UB_KEY_OUT_DEVICE_ACCESS, "out.device_access"),
    (ub_key::UB_KEY_OUT_ACCESSORS, "out.accessors"),
    (ub_key::UB_KEY_OUT_PLANE_COUNT, "out.plane_count"),
    (ub_key::UB_KEY_OUT_PLANE_PITCH, "out.plane_pitch"),
    (ub_key::UB_KEY_OUT_PLANE_OFFSET, "out.plane_offset"),
    (
        ub_key::UB_KEY_OUT_PLANE_ALIGNED_HEIGHT,
        "out.plane_aligned_height",
    ),
    (ub_key::UB_KEY_OUT_PLANE_SIZE, "out.plane_size"),
    (ub_key::UB_KEY_OUT_PLANE_BPP, "out.plane_bpp"),
    (ub_key::UB_KEY_OUT_PLANE_CHANNELS, "out.plane_channels"),
    (
        ub_key::UB_KEY_OUT_PLANE_SECOND_FIELD_OFFSET,
        "out.plane_second_field_offset",
    ),
    (ub_key::UB_KEY_OUT_TENSOR_STRIDES, "out.tensor_strides"),
    (ub_key::UB_KEY_OUT_TENSOR_SIZE, "out.tensor_size"),
    (ub_key::UB_KEY_OUT_ARRAY_SIZE, "out.array_size"),
    (ub_key::UB_KEY_OUT_ARRAY_ALIGN, "out.array_align"),
    (
        ub_key::UB_KEY_OUT_PYRAMID_LEVEL_OFFSETS,
        "out.pyramid_level_offsets",
    ),
    (
        ub_key::UB_KEY_OUT_PYRAMID_LEVEL_SIZES,
        "out.pyramid_level_sizes",
    ),
];
