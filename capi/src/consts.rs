//! Value codes as C constants: the wire codes the library's value enums carry. A test checks
//! each against the library.

/// A permission (`required_permission`, `out.permission`, object handles). Values of
/// `UB_VALUE_PERMISSION` keys are these codes as `uint32_t`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_permission {
    /// For imports only: the highest permission the importer's own lists require.
    UB_PERM_AUTO = 0,
    /// Read-only.
    UB_PERM_READ_ONLY = 1,
    /// Read-write.
    UB_PERM_READ_WRITE = 2,
}

/// Kind of accessor (`accessor_kind`, a `uint32_t`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_accessor_kind {
    /// The CPU.
    UB_ACCESSOR_CPU = 1,
    /// A camera (V4L2 capture).
    UB_ACCESSOR_CAMERA = 2,
    /// A display (DRM/KMS).
    UB_ACCESSOR_DISPLAY = 3,
    /// A GPU.
    UB_ACCESSOR_GPU = 4,
    /// A VFIO-driven PCIe device.
    UB_ACCESSOR_VFIO = 5,
    /// Another device that imports dma-bufs.
    UB_ACCESSOR_DEVICE = 6,
}

/// Buffer type bits: a `types` value is one byte (`uint8_t`) OR-ing these.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_buffer_type {
    /// A raw buffer (`raw.size`, `raw.align`).
    UB_TYPE_RAW = 1,
    /// An image.
    UB_TYPE_IMAGE = 2,
    /// A tensor.
    UB_TYPE_TENSOR = 4,
    /// An array.
    UB_TYPE_ARRAY = 8,
    /// An image pyramid.
    UB_TYPE_IMAGE_PYRAMID = 16,
}

/// A memory backend (`preferred_backend`, a `uint32_t`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_backend {
    /// The DMA-BUF system heap.
    UB_BACKEND_SYSTEM_HEAP = 1,
    /// The DMA-BUF CMA heap.
    UB_BACKEND_CMA_HEAP = 2,
    /// udmabuf (a memfd turned into a dma-buf).
    UB_BACKEND_UDMABUF = 3,
    /// A DRM dumb buffer exported by PRIME.
    UB_BACKEND_DRM_DUMB = 4,
    /// A plain memfd (CPU only).
    UB_BACKEND_MEMFD = 5,
    /// GPU video memory from CUDA (lists that set `vidmem_gpu`; feature `cuda`).
    UB_BACKEND_CUDA_VIDMEM = 6,
}

/// Element data type (`tensor.data_type`, `array.data_type`, a `uint32_t`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_data_type {
    /// int8_t
    UB_DATA_INT8 = 0,
    /// uint8_t
    UB_DATA_UINT8 = 1,
    /// int16_t
    UB_DATA_INT16 = 2,
    /// uint16_t
    UB_DATA_UINT16 = 3,
    /// IEEE half
    UB_DATA_FLOAT16 = 4,
    /// int32_t
    UB_DATA_INT32 = 5,
    /// uint32_t
    UB_DATA_UINT32 = 6,
    /// float
    UB_DATA_FLOAT32 = 7,
    /// int64_t
    UB_DATA_INT64 = 8,
    /// double
    UB_DATA_FLOAT64 = 9,
}

/// How a key's value is laid out in a `ub_attr_kv` (`value` points to it, `len` is its size in
/// bytes; numbers in the machine's byte order, which is little-endian on every supported CPU).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_value_kind {
    /// `bool` / `uint8_t` 0 or 1 (len 1).
    UB_VALUE_BOOL = 0,
    /// `uint32_t` (len 4).
    UB_VALUE_U32 = 1,
    /// `uint64_t` (len 8).
    UB_VALUE_U64 = 2,
    /// `double` (len 8).
    UB_VALUE_F64 = 3,
    /// UTF-8 bytes; on set a trailing NUL is allowed (`strlen + 1`); on get `len` excludes the
    /// NUL the library stores after the bytes.
    UB_VALUE_STR = 4,
    /// `uint64_t[n]` (len 8 n).
    UB_VALUE_U64_LIST = 5,
    /// Strings one after the other, each NUL-terminated (`"a\0b\0"`, len counts every NUL).
    UB_VALUE_STR_LIST = 6,
    /// `uint8_t` of `ub_buffer_type` bits (len 1).
    UB_VALUE_TYPES = 7,
    /// `uint32_t` `ub_permission` (len 4).
    UB_VALUE_PERMISSION = 8,
    /// `uint32_t` `ub_accessor_kind` (len 4).
    UB_VALUE_ACCESSOR = 9,
    /// `uint32_t` `ub_backend` (len 4).
    UB_VALUE_BACKEND = 10,
    /// `uint32_t` pixel format: a DRM fourcc (`DRM_FORMAT_NV12`), or a V4L2 fourcc with bit 31
    /// set for formats DRM lacks; `ub_format_from_name` (len 4).
    UB_VALUE_FORMAT = 11,
    /// `uint32_t` layout: 0 pitch-linear, 1 tiled (len 4).
    UB_VALUE_LAYOUT = 12,
    /// `uint32_t` color standard: 0 srgb, 1 bt601, 2 bt601_full, 3 bt709, 4 bt2020, 5 raw.
    UB_VALUE_COLOR_STD = 13,
    /// `uint32_t` scan type: 0 progressive, 1 interlaced (len 4).
    UB_VALUE_SCAN = 14,
    /// `uint32_t` `ub_data_type` (len 4).
    UB_VALUE_DATA_TYPE = 15,
    /// `ub_padding` (len 16).
    UB_VALUE_PADDING = 16,
    /// An ordered set of DRM format modifiers: n × u64, most preferred first.
    UB_VALUE_MODIFIERS = 17,
    /// A modifier usage: u32 (scanout 1, video 2, render 3, sampling 4, cpu 5).
    UB_VALUE_MODIFIER_USAGE = 18,
    /// A set of GPU UUIDs: n × 16 bytes.
    UB_VALUE_GPU_ID_SET = 19,
    /// One GPU UUID: 16 bytes.
    UB_VALUE_GPU_ID = 20,
    /// A flag per GPU: n × (16-byte UUID + 1 byte 0/1).
    UB_VALUE_GPU_FLAGS = 21,
}

/// The value of an `image.padding` key.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ub_padding {
    /// Rows above.
    pub top: u32,
    /// Rows below.
    pub bottom: u32,
    /// Columns left.
    pub left: u32,
    /// Columns right.
    pub right: u32,
}

/// Format of `ub_attr_list_dump`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_dump_format {
    /// A readable report (for a conflict: the message `ub_last_error_message` also gives).
    UB_DUMP_TEXT = 0,
    /// JSON (the form `unibuf reconcile --json` prints).
    UB_DUMP_JSON = 1,
}

/// Direction of a CPU access (`ub_obj_begin_cpu_access`, `DMA_BUF_IOCTL_SYNC`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_cpu_access {
    /// The CPU reads.
    UB_CPU_READ = 1,
    /// The CPU writes.
    UB_CPU_WRITE = 2,
    /// The CPU reads and writes.
    UB_CPU_READ_WRITE = 3,
}

pub use ub_accessor_kind::*;
pub use ub_backend::*;
pub use ub_buffer_type::*;
pub use ub_cpu_access::*;
pub use ub_data_type::*;
pub use ub_dump_format::*;
pub use ub_permission::*;
pub use ub_value_kind::*;

#[cfg(test)]
mod tests {
    use super::*;
    use unibuf_rs::attr::{
        AccessorKind, BackendKind, BufferType, BufferTypes, DataType, Permission,
    };

    #[test]
    fn codes_match_the_library() {
        assert_eq!(UB_PERM_READ_ONLY as u32, Permission::ReadOnly.code());
        assert_eq!(UB_PERM_READ_WRITE as u32, Permission::ReadWrite.code());
        let acc = [
            (UB_ACCESSOR_CPU, AccessorKind::Cpu),
            (UB_ACCESSOR_CAMERA, AccessorKind::Camera),
            (UB_ACCESSOR_DISPLAY, AccessorKind::Display),
            (UB_ACCESSOR_GPU, AccessorKind::Gpu),
            (UB_ACCESSOR_VFIO, AccessorKind::Vfio),
            (UB_ACCESSOR_DEVICE, AccessorKind::Device),
        ];
        assert_eq!(acc.len(), AccessorKind::ALL.len());
        for (c, k) in acc {
            assert_eq!(c as u32, k.code());
        }
        let be = [
            (UB_BACKEND_SYSTEM_HEAP, BackendKind::SystemHeap),
            (UB_BACKEND_CMA_HEAP, BackendKind::CmaHeap),
            (UB_BACKEND_UDMABUF, BackendKind::Udmabuf),
            (UB_BACKEND_DRM_DUMB, BackendKind::DrmDumb),
            (UB_BACKEND_MEMFD, BackendKind::Memfd),
            (UB_BACKEND_CUDA_VIDMEM, BackendKind::CudaVidmem),
        ];
        assert_eq!(be.len(), BackendKind::ALL.len());
        for (c, k) in be {
            assert_eq!(c as u32, k.code());
        }
        let ty = [
            (UB_TYPE_RAW, BufferType::RawBuffer),
            (UB_TYPE_IMAGE, BufferType::Image),
            (UB_TYPE_TENSOR, BufferType::Tensor),
            (UB_TYPE_ARRAY, BufferType::Array),
            (UB_TYPE_IMAGE_PYRAMID, BufferType::ImagePyramid),
        ];
        for (c, t) in ty {
            assert_eq!(c as u32, u32::from(BufferTypes::of(&[t]).bits()));
        }
        assert_eq!(DataType::ALL.len(), 10);
        assert_eq!(UB_DATA_FLOAT32 as u32, DataType::Float32.code());
        assert_eq!(UB_DATA_FLOAT64 as u32, DataType::Float64.code());
        assert_eq!(UB_DATA_UINT8 as u32, DataType::Uint8.code());
    }
}
