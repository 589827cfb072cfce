//! Attribute lists: what one accessor needs of a buffer.
//!
//! Three states, kept apart by types:
//!
//! - [`AttrList`]: one accessor's unreconciled list, writable. Every key is set once
//!   ([`AttrList::set`]); refused sets return an [`AttrError`] and leave the list unchanged.
//! - [`MultiList`]: several unreconciled lists appended into one read-only, multi-slot list
//!   (what IPC exports and reconciliation takes).
//! - [`crate::reconcile::Reconciled`]: the result of reconciliation, read-only; and
//!   [`crate::reconcile::Conflict`]: why lists could not be reconciled, only inspected and printed.
//!
//! Keys ([`Key`]) have stable wire codes and names; values ([`Value`]) have a generic wire form.
//! Typed setters (`set_image_format`, ...) sit on top of the generic [`AttrList::set`]. The
//! [`AttrRead`] trait gives every list state the same read interface (`get`, `iter`,
//! `is_reconciled`). Files: see [`mod@file`] (TOML/JSON loader and dumps).

pub mod file;
mod value;

pub use crate::model::{
    AccessorKind, BackendKind, ColorStd, DataType, Key, KeyGroup, LayoutKind, MergePolicy, Padding,
    Permission, ScanType, ValueKind,
};
pub use value::{BufferType, BufferTypes, Value, MAX_LIST_LEN, MAX_STR_LEN};

pub use crate::model::modifier::MAX_MODIFIERS;
pub use crate::model::ModifierUsage;
pub use crate::model::{BadGpuId, GpuId};
use crate::model::{PixelFormat, UnknownFormat};

/// The most tensor dimensions.
pub const MAX_TENSOR_DIMS: u64 = 8;
/// The most image pyramid levels.
pub const MAX_PYRAMID_LEVELS: u64 = 10;

/// An attribute list operation that was refused; the list is unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AttrError {
    /// The key is an output of reconciliation; callers cannot set it.
    #[error("{0} is an output key: reconciliation computes it, it cannot be set")]
    OutputKey(Key),
    /// The key belongs to a buffer type the list does not have (or no type is set yet).
    #[error("{key} belongs to another buffer type than this list's ({types}); set `types` first")]
    WrongBufferType {
        /// The key.
        key: Key,
        /// The list's buffer types.
        types: BufferTypes,
    },
    /// The key was already set; keys are set once.
    #[error("{0} is already set (keys are set once)")]
    AlreadySet(Key),
    /// The value's kind is not the key's.
    #[error("{key} takes a {expected:?} value, got {got:?}")]
    WrongValueKind {
        /// The key.
        key: Key,
        /// The kind it takes.
        expected: ValueKind,
        /// The kind given.
        got: ValueKind,
    },
    /// A size, dimension or count was zero.
    #[error("{0} must not be zero")]
    Zero(Key),
    /// An alignment was not a power of two.
    #[error("{key} must be a power of two, got {value}")]
    NotPowerOfTwo {
        /// The key.
        key: Key,
        /// The value given.
        value: u64,
    },
    /// Too many tensor dimensions (more than 8).
    #[error("{key}: {value} dimensions, at most 8 are supported")]
    TooManyDims {
        /// The key.
        key: Key,
        /// The count given.
        value: u64,
    },
    /// A pyramid scale outside (0, 1].
    #[error("{key} must be in (0, 1], got {value}")]
    ScaleOutOfRange {
        /// The key.
        key: Key,
        /// The value given.
        value: f64,
    },
    /// A pixel format code or name not in the format table.
    #[error("unknown pixel format {0}")]
    UnknownFormat(String),
    /// Some other value out of its range (names the key and why).
    #[error("{key}: {reason}")]
    Invalid {
        /// The key.
        key: Key,
        /// Why the value was refused.
        reason: String,
    },
    /// A wire code that names no key.
    #[error("unknown key code {0:#06x}")]
    UnknownKey(u16),
    /// A value's wire form could not be decoded.
    #[error("{key}: cannot decode value: {reason}")]
    Decode {
        /// The key.
        key: Key,
        /// What was wrong.
        reason: String,
    },
}

impl From<UnknownFormat> for AttrError {
    fn from(e: UnknownFormat) -> Self {
        AttrError::UnknownFormat(e.0)
    }
}

/// Read access common to every list state (unreconciled, multi-slot, reconciled).
pub trait AttrRead {
    /// Whether this list is the result of reconciliation.
    fn is_reconciled(&self) -> bool;
    /// Number of slots (1 for a single list; one per appended list for a [`MultiList`]; 1 for a
    /// reconciled list).
    fn slot_count(&self) -> usize;
    /// The value of `key` in `slot` (for a reconciled list, slot 0 holds the merged inputs and
    /// the outputs).
    fn get_in(&self, slot: usize, key: Key) -> Option<Value>;
}

/// One accessor's unreconciled attribute list (one slot, writable, set-once).
///
/// Values are held in a vector indexed through a fixed array of positions by [`Key::index`],
/// so [`AttrList::get`] allocates nothing (two array lookups) and cloning copies only the keys
/// that are set.
///
/// A list also remembers whether it came from a peer ([`AttrList::is_imported`]): that decides
/// who holds CPU access to the buffer (NvSciBuf: `NeedCpuAccess` holds for the peer whose own
/// lists asked), never the layout; equality, ordering and reconciliation ignore it.
#[derive(Debug, Clone)]
pub struct AttrList {
    /// Position + 1 of each key's value in `values`; 0 when unset.
    pos: [u8; Key::COUNT],
    values: Vec<Value>,
    /// Rebuilt from a peer's wire form (IPC import), not made in this process.
    imported: bool,
}

impl Default for AttrList {
    fn default() -> Self {
        AttrList::new()
    }
}

impl PartialEq for AttrList {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl AttrList {
    /// An empty list.
    pub const fn new() -> Self {
        AttrList {
            pos: [0; Key::COUNT],
            values: Vec::new(),
            imported: false,
        }
    }

    /// Whether this list was imported from a peer (by [`crate::ipc`]) rather than made in this
    /// process. A process holds CPU access to a buffer only when one of its *own* lists asked
    /// for it ([`crate::reconcile::Reconciled::local_cpu_access`]).
    pub fn is_imported(&self) -> bool {
        self.imported
    }

    /// Marks this list as a peer's (IPC import).
    pub(crate) fn mark_imported(&mut self) {
        self.imported = true;
    }

    /// Whether this list sets `need_cpu_access` to true.
    pub fn needs_cpu_access(&self) -> bool {
        self.get(Key::NeedCpuAccess) == Some(&Value::Bool(true))
    }

    /// The value of `key`, if set. Allocation-free.
    #[inline]
    pub fn get(&self, key: Key) -> Option<&Value> {
        match self.pos[key.index()] {
            0 => None,
            p => self.values.get(usize::from(p) - 1),
        }
    }

    /// The set keys and their values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &Value)> + '_ {
        Key::ALL
            .iter()
            .zip(self.pos.iter())
            .filter(|(_, p)| **p != 0)
            .map(|(k, p)| (*k, &self.values[usize::from(*p) - 1]))
    }

    /// Stores `value` for `key` (replacing any value), bypassing the set-once rules: used by
    /// reconciliation to write merged values and outputs.
    pub(crate) fn put(&mut self, key: Key, value: Value) {
        match self.pos[key.index()] {
            0 => {
                self.values.push(value);
                // At most Key::COUNT (< 255) values: the position fits a u8.
                self.pos[key.index()] = self.values.len() as u8;
            }
            p => self.values[usize::from(p) - 1] = value,
        }
    }

    /// Reserves room for `n` more values.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.values.reserve(n);
    }

    /// Number of keys set.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The buffer types of this list (empty if `types` is not set).
    pub fn types(&self) -> BufferTypes {
        match self.get(Key::Types) {
            Some(Value::Types(t)) => *t,
            _ => BufferTypes::EMPTY,
        }
    }

    /// The accessor name, if set.
    pub fn accessor_name(&self) -> Option<&str> {
        match self.get(Key::AccessorName) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The accessor kind, if set.
    pub fn accessor_kind(&self) -> Option<AccessorKind> {
        match self.get(Key::AccessorKind) {
            Some(Value::Accessor(a)) => Some(*a),
            _ => None,
        }
    }

    /// Sets `key` to `value`, once. On error the list is unchanged.
    ///
    /// Refused: output keys, keys of a buffer type the list does not have (`types` must be set
    /// before type keys), keys already set, values of the wrong kind, and invalid values (zero
    /// sizes/dimensions, non-power-of-two alignments, more than 8 tensor dims, a pyramid scale
    /// outside (0, 1], more than 10 pyramid levels, over-long strings and lists).
    pub fn set(&mut self, key: Key, value: Value) -> Result<(), AttrError> {
        let value = self.check(key, value)?;
        self.put(key, value);
        Ok(())
    }

    /// Sets several keys at once: either all are set, or (on the first error) none.
    pub fn set_all(
        &mut self,
        pairs: impl IntoIterator<Item = (Key, Value)>,
    ) -> Result<(), AttrError> {
        let mut next = self.clone();
        for (k, v) in pairs {
            next.set(k, v)?;
        }
        *self = next;
        Ok(())
    }

    /// Checks `value` for `key` against this list and normalizes it (sets are sorted).
    fn check(&self, key: Key, value: Value) -> Result<Value, AttrError> {
        if key.is_output() {
            return Err(AttrError::OutputKey(key));
        }
        if value.kind() != key.value_kind() {
            return Err(AttrError::WrongValueKind {
                key,
                expected: key.value_kind(),
                got: value.kind(),
            });
        }
        if self.get(key).is_some() {
            return Err(AttrError::AlreadySet(key));
        }
        let types = self.types();
        if !types.allows(key.group()) {
            return Err(AttrError::WrongBufferType { key, types });
        }
        validate_value(key, value)
    }

    /// Appends lists into one read-only multi-slot list (clones them).
    pub fn append<'a>(lists: impl IntoIterator<Item = &'a AttrList>) -> MultiList {
        MultiList {
            slots: lists.into_iter().cloned().collect(),
        }
    }
}

fn invalid(key: Key, reason: impl Into<String>) -> AttrError {
    AttrError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn check_pow2(key: Key, v: u64) -> Result<(), AttrError> {
    if v == 0 {
        Err(AttrError::Zero(key))
    } else if !v.is_power_of_two() {
        Err(AttrError::NotPowerOfTwo { key, value: v })
    } else {
        Ok(())
    }
}

/// Validates one value for its key (independent of the list) and normalizes it.
pub(crate) fn validate_value(key: Key, value: Value) -> Result<Value, AttrError> {
    use Key as K;
    match (key, value) {
        (K::Types, Value::Types(t)) => {
            if t.is_empty() {
                Err(invalid(key, "at least one buffer type is needed"))
            } else if !t.is_valid_combination() {
                Err(invalid(
                    key,
                    format!("{t} is not a supported combination (one type, or image+tensor)"),
                ))
            } else {
                Ok(Value::Types(t))
            }
        }
        (
            K::RawAlign
            | K::ImagePitchAlign
            | K::ImageBaseAlign
            | K::ImageHeightAlign
            | K::ImageSizeAlign
            | K::TensorBaseAlign,
            Value::U64(v),
        ) => {
            check_pow2(key, v)?;
            if v > 1 << 30 {
                return Err(invalid(key, format!("alignment {v} is larger than 1 GiB")));
            }
            Ok(Value::U64(v))
        }
        (
            K::RawSize | K::ImageMinPitch | K::ImageMinSize | K::ArrayStride | K::ArrayCapacity,
            Value::U64(v),
        ) => {
            if v == 0 {
                return Err(AttrError::Zero(key));
            }
            if v > 1 << 48 {
                return Err(invalid(key, format!("{v} is larger than 2^48")));
            }
            Ok(Value::U64(v))
        }
        (K::ImageWidth | K::ImageHeight, Value::U32(v)) => {
            if v == 0 {
                return Err(AttrError::Zero(key));
            }
            if v > 1 << 16 {
                return Err(invalid(key, format!("{v} is larger than 65536")));
            }
            Ok(Value::U32(v))
        }
        (K::ImagePadding, Value::Padding(p)) => {
            if [p.top, p.bottom, p.left, p.right]
                .iter()
                .any(|v| *v > 1 << 12)
            {
                return Err(invalid(key, "padding larger than 4096 pixels"));
            }
            Ok(Value::Padding(p))
        }
        (K::TensorNumDims, Value::U32(v)) => {
            if v == 0 {
                Err(AttrError::Zero(key))
            } else if u64::from(v) > MAX_TENSOR_DIMS {
                Err(AttrError::TooManyDims {
                    key,
                    value: u64::from(v),
                })
            } else {
                Ok(Value::U32(v))
            }
        }
        (K::ImagePlaneBaseAlign, Value::U64List(l)) => {
            if l.is_empty() || l.len() > 4 {
                return Err(invalid(key, "1 to 4 alignments (one per plane)"));
            }
            for &v in &l {
                check_pow2(key, v)?;
                if v > 1 << 30 {
                    return Err(invalid(key, "alignment larger than 1 GiB"));
                }
            }
            Ok(Value::U64List(l))
        }
        (K::TensorSizes | K::TensorAlignPerDim, Value::U64List(l)) => {
            if l.is_empty() {
                return Err(AttrError::Zero(key));
            }
            if l.len() as u64 > MAX_TENSOR_DIMS {
                return Err(AttrError::TooManyDims {
                    key,
                    value: l.len() as u64,
                });
            }
            for &v in &l {
                if key == K::TensorAlignPerDim {
                    check_pow2(key, v)?;
                    if v > 1 << 30 {
                        return Err(invalid(key, "alignment larger than 1 GiB"));
                    }
                } else if v == 0 {
                    return Err(AttrError::Zero(key));
                } else if v > 1 << 32 {
                    return Err(invalid(key, format!("dimension {v} is larger than 2^32")));
                }
            }
            Ok(Value::U64List(l))
        }
        (K::ImageModifiers, Value::Modifiers(l)) => {
            if l.is_empty() || l.len() > MAX_MODIFIERS {
                return Err(invalid(
                    key,
                    format!("1 to {MAX_MODIFIERS} modifiers, got {}", l.len()),
                ));
            }
            for (i, m) in l.iter().enumerate() {
                if l[..i].contains(m) {
                    return Err(invalid(
                        key,
                        format!("{} is given twice", crate::model::modifier::name(*m)),
                    ));
                }
            }
            Ok(Value::Modifiers(l))
        }
        (K::PyramidLevels, Value::U32(v)) => {
            if v == 0 {
                Err(AttrError::Zero(key))
            } else if u64::from(v) > MAX_PYRAMID_LEVELS {
                Err(invalid(
                    key,
                    format!("{v} levels, at most 10 are supported"),
                ))
            } else {
                Ok(Value::U32(v))
            }
        }
        (K::PyramidScale, Value::F64(s)) => {
            if s > 0.0 && s <= 1.0 {
                Ok(Value::F64(s))
            } else {
                Err(AttrError::ScaleOutOfRange { key, value: s })
            }
        }
        (K::AccessorName, Value::Str(s)) => {
            if s.is_empty() || s.len() > MAX_STR_LEN {
                return Err(invalid(key, format!("must be 1 to {MAX_STR_LEN} bytes")));
            }
            if s.chars().any(|c| c.is_control()) {
                return Err(invalid(key, "must not contain control characters"));
            }
            Ok(Value::Str(s))
        }
        (K::GpuIds, Value::GpuIds(mut l)) => {
            if l.is_empty() || l.len() > MAX_LIST_LEN {
                return Err(invalid(key, format!("1 to {MAX_LIST_LEN} GPUs")));
            }
            l.sort();
            l.dedup();
            Ok(Value::GpuIds(l))
        }
        (K::GpuCache | K::GpuCompression, Value::GpuFlags(mut l)) => {
            if l.is_empty() || l.len() > MAX_LIST_LEN {
                return Err(invalid(key, format!("1 to {MAX_LIST_LEN} GPUs")));
            }
            l.sort();
            l.dedup();
            if let Some(w) = l.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(invalid(
                    key,
                    format!("GPU {} is given both true and false", w[0].0),
                ));
            }
            Ok(Value::GpuFlags(l))
        }
        (_, v) => Ok(v),
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $fn:ident, $key:ident, $ty:ty, |$x:ident| $conv:expr) => {
        $(#[$doc])*
        pub fn $fn(&mut self, $x: $ty) -> Result<&mut Self, AttrError> {
            self.set(Key::$key, $conv)?;
            Ok(self)
        }
    };
}

/// Typed setters (each wraps [`AttrList::set`] and returns `&mut Self` for chaining).
impl AttrList {
    /// A list of the given buffer types.
    pub fn with_types(types: &[BufferType]) -> Result<AttrList, AttrError> {
        let mut l = AttrList::new();
        l.set_types(types)?;
        Ok(l)
    }

    /// A raw buffer list of `size` bytes.
    pub fn raw(size: u64) -> Result<AttrList, AttrError> {
        let mut l = AttrList::with_types(&[BufferType::RawBuffer])?;
        l.set_raw_size(size)?;
        Ok(l)
    }

    /// A pitch-linear image list.
    pub fn image(format: PixelFormat, width: u32, height: u32) -> Result<AttrList, AttrError> {
        let mut l = AttrList::with_types(&[BufferType::Image])?;
        l.set_image_format(format)?.set_image_size(width, height)?;
        Ok(l)
    }

    /// A tensor list with the given dimension sizes (outermost first).
    pub fn tensor(data_type: DataType, sizes: &[u64]) -> Result<AttrList, AttrError> {
        let mut l = AttrList::with_types(&[BufferType::Tensor])?;
        l.set_tensor(data_type, sizes)?;
        Ok(l)
    }

    /// An array list.
    pub fn array(data_type: DataType, stride: u64, capacity: u64) -> Result<AttrList, AttrError> {
        let mut l = AttrList::with_types(&[BufferType::Array])?;
        l.set_all([
            (Key::ArrayDataType, Value::DataType(data_type)),
            (Key::ArrayStride, Value::U64(stride)),
            (Key::ArrayCapacity, Value::U64(capacity)),
        ])?;
        Ok(l)
    }

    /// An image pyramid list.
    pub fn pyramid(
        format: PixelFormat,
        width: u32,
        height: u32,
        levels: u32,
        scale: f64,
    ) -> Result<AttrList, AttrError> {
        let mut l = AttrList::with_types(&[BufferType::ImagePyramid])?;
        l.set_image_format(format)?.set_image_size(width, height)?;
        l.set_all([
            (Key::PyramidLevels, Value::U32(levels)),
            (Key::PyramidScale, Value::F64(scale)),
        ])?;
        Ok(l)
    }

    /// Sets `types`.
    pub fn set_types(&mut self, types: &[BufferType]) -> Result<&mut Self, AttrError> {
        self.set(Key::Types, Value::Types(BufferTypes::of(types)))?;
        Ok(self)
    }

    setter!(/// Sets `need_cpu_access`.
        set_need_cpu_access, NeedCpuAccess, bool, |v| Value::Bool(v));
    setter!(/// Sets `required_permission`.
        set_required_perm, RequiredPerm, Permission, |v| Value::Permission(v));
    setter!(/// Sets `enable_cpu_cache`.
        set_enable_cpu_cache, EnableCpuCache, bool, |v| Value::Bool(v));
    setter!(/// Sets `physically_contiguous`.
        set_contiguous, PhysContiguous, bool, |v| Value::Bool(v));
    setter!(/// Sets `accessor_name`.
        set_accessor_name, AccessorName, &str, |v| Value::Str(v.to_string()));
    setter!(/// Sets `accessor_kind`.
        set_accessor_kind, AccessorKind, AccessorKind, |v| Value::Accessor(v));
    setter!(/// Sets `preferred_backend`.
        set_preferred_backend, PreferredBackend, BackendKind, |v| Value::Backend(v));
    setter!(/// Sets `raw.size`.
        set_raw_size, RawSize, u64, |v| Value::U64(v));
    setter!(/// Sets `raw.align`.
        set_raw_align, RawAlign, u64, |v| Value::U64(v));
    setter!(/// Sets `image.layout`.
        set_image_layout, ImageLayout, LayoutKind, |v| Value::Layout(v));
    setter!(/// Sets `image.modifier` (one DRM format modifier: a set of one).
        set_image_modifier, ImageModifier, u64, |v| Value::U64(v));
    setter!(/// Sets `image.modifier_usage` (ranks this list's modifier order in the pick).
        set_image_modifier_usage, ImageModifierUsage, ModifierUsage, |v| Value::ModifierUsage(v));

    /// Sets `image.modifiers`: the DRM format modifiers this accessor accepts for its format,
    /// most preferred first (1 to [`MAX_MODIFIERS`], no repeats). Takes the `Vec<u64>` a
    /// provider builds (a Vulkan driver's or a DRM plane's list) without copying it.
    pub fn set_image_modifiers(
        &mut self,
        modifiers: impl Into<Vec<u64>>,
    ) -> Result<&mut Self, AttrError> {
        self.set(
            Key::ImageModifiers,
            Value::Modifiers(modifiers.into().into()),
        )?;
        Ok(self)
    }
    setter!(/// Sets `image.format`.
        set_image_format, ImageFormat, PixelFormat, |v| Value::Format(v));
    setter!(/// Sets `image.color_std`.
        set_color_std, ImageColorStd, ColorStd, |v| Value::ColorStd(v));
    setter!(/// Sets `image.scan_type`.
        set_scan_type, ImageScanType, ScanType, |v| Value::Scan(v));
    setter!(/// Sets `image.padding`.
        set_padding, ImagePadding, Padding, |v| Value::Padding(v));
    setter!(/// Sets `image.pitch_align`.
        set_pitch_align, ImagePitchAlign, u64, |v| Value::U64(v));
    setter!(/// Sets `image.base_align`.
        set_base_align, ImageBaseAlign, u64, |v| Value::U64(v));
    setter!(/// Sets `image.plane_base_align` (one alignment per plane).
        set_plane_base_align, ImagePlaneBaseAlign, &[u64], |v| Value::U64List(v.to_vec()));
    setter!(/// Sets `image.height_align`.
        set_height_align, ImageHeightAlign, u64, |v| Value::U64(v));
    setter!(/// Sets `image.size_align`.
        set_size_align, ImageSizeAlign, u64, |v| Value::U64(v));
    setter!(/// Sets `image.min_pitch` (e.g. V4L2 `bytesperline`).
        set_min_pitch, ImageMinPitch, u64, |v| Value::U64(v));
    setter!(/// Sets `image.exact_pitch` (a device that accepts no other pitch).
        set_exact_pitch, ImageExactPitch, u64, |v| Value::U64(v));
    setter!(/// Sets `image.min_size` (e.g. V4L2 `sizeimage`).
        set_min_size, ImageMinSize, u64, |v| Value::U64(v));
    setter!(/// Sets `tensor.align_per_dim`.
        set_tensor_align_per_dim, TensorAlignPerDim, &[u64], |v| Value::U64List(v.to_vec()));
    setter!(/// Sets `tensor.base_align`.
        set_tensor_base_align, TensorBaseAlign, u64, |v| Value::U64(v));

    /// Sets `gpu_ids` (NvSciBuf `GpuId`).
    pub fn set_gpu_ids(&mut self, ids: &[GpuId]) -> Result<&mut Self, AttrError> {
        self.set(Key::GpuIds, Value::GpuIds(ids.to_vec()))?;
        Ok(self)
    }

    /// Sets `gpu_cache`: per GPU, whether it may cache the buffer (NvSciBuf `EnableGpuCache`).
    pub fn set_gpu_cache(&mut self, per_gpu: &[(GpuId, bool)]) -> Result<&mut Self, AttrError> {
        self.set(Key::GpuCache, Value::GpuFlags(per_gpu.to_vec()))?;
        Ok(self)
    }

    /// Sets `gpu_compression`: per GPU, whether it asks for a compressible buffer (NvSciBuf
    /// `EnableGpuCompression`).
    pub fn set_gpu_compression(
        &mut self,
        per_gpu: &[(GpuId, bool)],
    ) -> Result<&mut Self, AttrError> {
        self.set(Key::GpuCompression, Value::GpuFlags(per_gpu.to_vec()))?;
        Ok(self)
    }

    setter!(/// Sets `vidmem_gpu`: allocate in this GPU's memory (NvSciBuf `VidMem_GpuId`).
        set_vidmem_gpu, VidMemGpu, GpuId, |v| Value::Gpu(v));

    /// Sets `image.format` from a DRM fourcc (unknown codes are refused).
    pub fn set_image_drm_fourcc(&mut self, fourcc: u32) -> Result<&mut Self, AttrError> {
        let f = PixelFormat::from_drm(fourcc)?;
        self.set_image_format(f)
    }

    /// Sets `image.format` from a V4L2 pixel format (unknown codes are refused).
    pub fn set_image_v4l2_fourcc(&mut self, fourcc: u32) -> Result<&mut Self, AttrError> {
        let f = PixelFormat::from_v4l2(fourcc)?;
        self.set_image_format(f)
    }

    /// Sets `image.width` and `image.height` (both or neither).
    pub fn set_image_size(&mut self, width: u32, height: u32) -> Result<&mut Self, AttrError> {
        self.set_all([
            (Key::ImageWidth, Value::U32(width)),
            (Key::ImageHeight, Value::U32(height)),
        ])?;
        Ok(self)
    }

    /// Sets `tensor.data_type`, `tensor.num_dims` and `tensor.sizes` (all or none).
    pub fn set_tensor(
        &mut self,
        data_type: DataType,
        sizes: &[u64],
    ) -> Result<&mut Self, AttrError> {
        let dims = u32::try_from(sizes.len()).unwrap_or(u32::MAX);
        self.set_all([
            (Key::TensorDataType, Value::DataType(data_type)),
            (Key::TensorNumDims, Value::U32(dims)),
            (Key::TensorSizes, Value::U64List(sizes.to_vec())),
        ])?;
        Ok(self)
    }
}

impl AttrRead for AttrList {
    fn is_reconciled(&self) -> bool {
        false
    }
    fn slot_count(&self) -> usize {
        1
    }
    fn get_in(&self, slot: usize, key: Key) -> Option<Value> {
        (slot == 0).then(|| self.get(key).cloned()).flatten()
    }
}

/// Several unreconciled lists appended into one read-only multi-slot list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MultiList {
    slots: Vec<AttrList>,
}

impl MultiList {
    /// The slots, in append order.
    pub fn slots(&self) -> &[AttrList] {
        &self.slots
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The value of `key` in `slot`. Allocation-free.
    pub fn get(&self, slot: usize, key: Key) -> Option<&Value> {
        self.slots.get(slot).and_then(|l| l.get(key))
    }

    /// Every (slot, key, value), slot by slot.
    pub fn iter(&self) -> impl Iterator<Item = (usize, Key, &Value)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.iter().map(move |(k, v)| (i, k, v)))
    }

    /// A new multi-list with the slots of both.
    pub fn append(&self, other: &MultiList) -> MultiList {
        MultiList {
            slots: self
                .slots
                .iter()
                .chain(other.slots.iter())
                .cloned()
                .collect(),
        }
    }
}

impl<'a> IntoIterator for &'a MultiList {
    type Item = &'a AttrList;
    type IntoIter = std::slice::Iter<'a, AttrList>;
    fn into_iter(self) -> Self::IntoIter {
        self.slots.iter()
    }
}

impl AttrRead for MultiList {
    fn is_reconciled(&self) -> bool {
        false
    }
    fn slot_count(&self) -> usize {
        self.slots.len()
    }
    fn get_in(&self, slot: usize, key: Key) -> Option<Value> {
        self.get(slot, key).cloned()
    }
}
