//! Attribute values: buffer types and the [`Value`] enum with its wire form.

use super::{AttrError, Key};
use crate::model::modifier::{self, ModifierSet, MAX_MODIFIERS};
use crate::model::{
    AccessorKind, BackendKind, ColorStd, DataType, GpuId, LayoutKind, ModifierUsage, Padding,
    Permission, PixelFormat, ScanType, ValueKind,
};
use std::cmp::Ordering;
use std::fmt;

/// A buffer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BufferType {
    /// Untyped bytes (`raw.size`, `raw.align`).
    RawBuffer,
    /// An image of one or more planes.
    Image,
    /// An N-dimensional tensor.
    Tensor,
    /// An array of fixed-stride elements.
    Array,
    /// A pyramid of images, each level scaled down from the previous one.
    ImagePyramid,
}

impl BufferType {
    /// All buffer types.
    pub const ALL: [BufferType; 5] = [
        BufferType::RawBuffer,
        BufferType::Image,
        BufferType::Tensor,
        BufferType::Array,
        BufferType::ImagePyramid,
    ];

    /// Name used in files (`raw`, `image`, `tensor`, `array`, `image_pyramid`).
    pub fn name(self) -> &'static str {
        match self {
            BufferType::RawBuffer => "raw",
            BufferType::Image => "image",
            BufferType::Tensor => "tensor",
            BufferType::Array => "array",
            BufferType::ImagePyramid => "image_pyramid",
        }
    }

    /// The type with this file name.
    pub fn from_name(s: &str) -> Option<BufferType> {
        BufferType::ALL.into_iter().find(|t| t.name() == s)
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of buffer types (a bit set: bit `n` is `BufferType as n`).
///
/// Valid sets are a single type, or `{Image, Tensor}` (an NHWC tensor viewing a one-plane
/// pitch-linear image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BufferTypes(u8);

impl BufferTypes {
    /// The empty set.
    pub const EMPTY: BufferTypes = BufferTypes(0);

    /// The set of the given types.
    pub fn of(types: &[BufferType]) -> BufferTypes {
        BufferTypes(types.iter().fold(0, |a, t| a | t.bit()))
    }

    /// Whether `t` is in the set.
    pub fn contains(self, t: BufferType) -> bool {
        self.0 & t.bit() != 0
    }

    /// The union of two sets.
    pub fn union(self, other: BufferTypes) -> BufferTypes {
        BufferTypes(self.0 | other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw bits (wire form).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set from raw bits, if every bit names a type.
    pub fn from_bits(bits: u8) -> Option<BufferTypes> {
        (bits & !0x1f == 0).then_some(BufferTypes(bits))
    }

    /// The types in the set.
    pub fn iter(self) -> impl Iterator<Item = BufferType> {
        BufferType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }

    /// Whether this is a combination reconciliation supports: one type, or Image + Tensor.
    pub fn is_valid_combination(self) -> bool {
        self.0.count_ones() == 1
            || self == BufferTypes::of(&[BufferType::Image, BufferType::Tensor])
    }

    /// Whether keys of `group` may be set in a list of these types.
    pub fn allows(self, group: super::KeyGroup) -> bool {
        use super::KeyGroup as G;
        match group {
            G::General => true,
            G::Raw => self.contains(BufferType::RawBuffer),
            G::Image => self.contains(BufferType::Image) || self.contains(BufferType::ImagePyramid),
            G::Tensor => self.contains(BufferType::Tensor),
            G::Array => self.contains(BufferType::Array),
            G::Pyramid => self.contains(BufferType::ImagePyramid),
        }
    }
}

impl fmt::Display for BufferTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, t) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            f.write_str(t.name())?;
        }
        Ok(())
    }
}

/// An attribute value. Which variant a key takes is [`Key::value_kind`].
///
/// Wire form ([`Value::encode`]/[`Value::decode`], little-endian, the length is framed by
/// the caller): `Bool` 1 byte (0/1); `U32` 4; `U64` 8; `F64` 8 (IEEE bits); `Str` UTF-8 bytes;
/// `U64List` n × 8; `StrList` n × (u16 length + UTF-8 bytes); `Types` 1 byte (bit set);
/// the enums (`Permission`, `Accessor`, `Backend`, `Format`, `Layout`, `ColorStd`, `Scan`,
/// `DataType`, `ModifierUsage`) 4 bytes of their `code()`; `Padding` 4 × u32 (top, bottom,
/// left, right); `Modifiers` n × u64 in preference order (1 to [`MAX_MODIFIERS`]); `GpuIds`
/// n × 16 bytes (UUIDs); `Gpu` 16 bytes; `GpuFlags` n × (16-byte UUID + 1 byte 0/1).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A flag.
    Bool(bool),
    /// A 32-bit count or dimension.
    U32(u32),
    /// A 64-bit size, alignment, pitch or modifier.
    U64(u64),
    /// A real number (pyramid scale).
    F64(f64),
    /// A string (accessor name).
    Str(String),
    /// A list of numbers (tensor sizes, per-plane outputs).
    U64List(Vec<u64>),
    /// A set of strings, kept sorted and deduplicated (GPU ids, accessor names).
    StrList(Vec<String>),
    /// A set of buffer types.
    Types(BufferTypes),
    /// A permission.
    Permission(Permission),
    /// An accessor kind.
    Accessor(AccessorKind),
    /// A memory backend.
    Backend(BackendKind),
    /// A pixel format.
    Format(PixelFormat),
    /// An image layout kind.
    Layout(LayoutKind),
    /// A color standard.
    ColorStd(ColorStd),
    /// A scan type.
    Scan(ScanType),
    /// A data type.
    DataType(DataType),
    /// Image padding.
    Padding(Padding),
    /// An ordered set of DRM format modifiers, most preferred first (no repeats).
    Modifiers(ModifierSet),
    /// What an accessor does with an image (ranks its modifier order).
    ModifierUsage(ModifierUsage),
    /// A set of GPUs, kept sorted and deduplicated.
    GpuIds(Vec<GpuId>),
    /// One GPU.
    Gpu(GpuId),
    /// A flag per GPU, kept sorted by GPU, one entry per GPU (GPU cache, GPU compression).
    GpuFlags(Vec<(GpuId, bool)>),
}

/// Longest accepted string (accessor name, GPU id), in bytes.
pub const MAX_STR_LEN: usize = 64;
/// Longest accepted list (tensor dims, GPU ids, per-plane and per-level outputs).
pub const MAX_LIST_LEN: usize = 16;

impl Value {
    /// The kind of this value.
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Bool(_) => ValueKind::Bool,
            Value::U32(_) => ValueKind::U32,
            Value::U64(_) => ValueKind::U64,
            Value::F64(_) => ValueKind::F64,
            Value::Str(_) => ValueKind::Str,
            Value::U64List(_) => ValueKind::U64List,
            Value::StrList(_) => ValueKind::StrList,
            Value::Types(_) => ValueKind::Types,
            Value::Permission(_) => ValueKind::Permission,
            Value::Accessor(_) => ValueKind::Accessor,
            Value::Backend(_) => ValueKind::Backend,
            Value::Format(_) => ValueKind::Format,
            Value::Layout(_) => ValueKind::Layout,
            Value::ColorStd(_) => ValueKind::ColorStd,
            Value::Scan(_) => ValueKind::Scan,
            Value::DataType(_) => ValueKind::DataType,
            Value::Padding(_) => ValueKind::Padding,
            Value::Modifiers(_) => ValueKind::Modifiers,
            Value::ModifierUsage(_) => ValueKind::ModifierUsage,
            Value::GpuIds(_) => ValueKind::GpuIdSet,
            Value::Gpu(_) => ValueKind::GpuId,
            Value::GpuFlags(_) => ValueKind::GpuFlags,
        }
    }

    /// The number, if this is a `U32` or `U64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U32(v) => Some(u64::from(*v)),
            Value::U64(v) => Some(*v),
            _ => None,
        }
    }

    /// The flag, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A total order on values of the same kind (floats by `total_cmp`); values of different
    /// kinds order by kind. Used to make reconciliation independent of input order.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        use Value as V;
        match (self, other) {
            (V::Bool(a), V::Bool(b)) => a.cmp(b),
            (V::U32(a), V::U32(b)) => a.cmp(b),
            (V::U64(a), V::U64(b)) => a.cmp(b),
            (V::F64(a), V::F64(b)) => a.total_cmp(b),
            (V::Str(a), V::Str(b)) => a.cmp(b),
            (V::U64List(a), V::U64List(b)) => a.cmp(b),
            (V::StrList(a), V::StrList(b)) => a.cmp(b),
            (V::Types(a), V::Types(b)) => a.cmp(b),
            (V::Permission(a), V::Permission(b)) => a.cmp(b),
            (V::Accessor(a), V::Accessor(b)) => a.cmp(b),
            (V::Backend(a), V::Backend(b)) => a.cmp(b),
            (V::Format(a), V::Format(b)) => a.cmp(b),
            (V::Layout(a), V::Layout(b)) => a.cmp(b),
            (V::ColorStd(a), V::ColorStd(b)) => a.cmp(b),
            (V::Scan(a), V::Scan(b)) => a.cmp(b),
            (V::DataType(a), V::DataType(b)) => a.cmp(b),
            (V::Padding(a), V::Padding(b)) => a.cmp(b),
            (V::Modifiers(a), V::Modifiers(b)) => a.cmp(b),
            (V::ModifierUsage(a), V::ModifierUsage(b)) => a.cmp(b),
            (V::GpuIds(a), V::GpuIds(b)) => a.cmp(b),
            (V::Gpu(a), V::Gpu(b)) => a.cmp(b),
            (V::GpuFlags(a), V::GpuFlags(b)) => a.cmp(b),
            _ => (self.kind() as u8).cmp(&(other.kind() as u8)),
        }
    }

    /// Appends the wire form of this value to `out` (see the type's documentation).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F64(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
            Value::Str(s) => out.extend_from_slice(s.as_bytes()),
            Value::U64List(l) => l
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Value::StrList(l) => {
                for s in l {
                    // Strings are at most MAX_STR_LEN bytes (checked on set), so this fits.
                    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
            Value::Types(t) => out.push(t.bits()),
            Value::Permission(p) => out.extend_from_slice(&p.code().to_le_bytes()),
            Value::Accessor(a) => out.extend_from_slice(&a.code().to_le_bytes()),
            Value::Backend(b) => out.extend_from_slice(&b.code().to_le_bytes()),
            Value::Format(f) => out.extend_from_slice(&f.code().to_le_bytes()),
            Value::Layout(v) => out.extend_from_slice(&v.code().to_le_bytes()),
            Value::ColorStd(v) => out.extend_from_slice(&v.code().to_le_bytes()),
            Value::Scan(v) => out.extend_from_slice(&v.code().to_le_bytes()),
            Value::DataType(v) => out.extend_from_slice(&v.code().to_le_bytes()),
            Value::Padding(p) => {
                for v in [p.top, p.bottom, p.left, p.right] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Value::Modifiers(l) => l
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Value::ModifierUsage(v) => out.extend_from_slice(&v.code().to_le_bytes()),
            Value::GpuIds(l) => l.iter().for_each(|g| out.extend_from_slice(&g.0)),
            Value::Gpu(g) => out.extend_from_slice(&g.0),
            Value::GpuFlags(l) => {
                for (g, f) in l {
                    out.extend_from_slice(&g.0);
                    out.push(u8::from(*f));
                }
            }
        }
    }

    /// Decodes the wire form of a value of `key` (untrusted bytes: every length and code is
    /// checked). The result is not yet validated against the key's rules; [`super::AttrList::set`]
    /// does that.
    pub fn decode(key: Key, bytes: &[u8]) -> Result<Value, AttrError> {
        let bad = |reason: &str| AttrError::Decode {
            key,
            reason: reason.to_string(),
        };
        let fixed = |n: usize| -> Result<&[u8], AttrError> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(bad(&format!("expected {n} bytes, got {}", bytes.len())))
            }
        };
        let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let code = || fixed(4).map(u32_of);
        Ok(match key.value_kind() {
            ValueKind::Bool => match fixed(1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(bad("bool must be 0 or 1")),
            },
            ValueKind::U32 => Value::U32(code()?),
            ValueKind::U64 => Value::U64(u64_of(fixed(8)?)),
            ValueKind::F64 => Value::F64(f64::from_bits(u64_of(fixed(8)?))),
            ValueKind::Str => {
                if bytes.len() > MAX_STR_LEN {
                    return Err(bad("string too long"));
                }
                Value::Str(
                    std::str::from_utf8(bytes)
                        .map_err(|_| bad("string is not UTF-8"))?
                        .to_string(),
                )
            }
            ValueKind::U64List => {
                if bytes.len() % 8 != 0 || bytes.len() / 8 > MAX_LIST_LEN {
                    return Err(bad("bad list length"));
                }
                Value::U64List(bytes.chunks_exact(8).map(u64_of).collect())
            }
            ValueKind::StrList => {
                let mut rest = bytes;
                let mut l = Vec::new();
                while !rest.is_empty() {
                    if rest.len() < 2 || l.len() >= MAX_LIST_LEN {
                        return Err(bad("bad string list"));
                    }
                    let n = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
                    if n > MAX_STR_LEN || rest.len() < 2 + n {
                        return Err(bad("bad string list entry length"));
                    }
                    let s = std::str::from_utf8(&rest[2..2 + n])
                        .map_err(|_| bad("string is not UTF-8"))?;
                    l.push(s.to_string());
                    rest = &rest[2 + n..];
                }
                Value::StrList(l)
            }
            ValueKind::Types => Value::Types(
                BufferTypes::from_bits(fixed(1)?[0]).ok_or_else(|| bad("unknown type bit"))?,
            ),
            ValueKind::Permission => Value::Permission(
                Permission::from_code(code()?).ok_or_else(|| bad("unknown permission"))?,
            ),
            ValueKind::Accessor => Value::Accessor(
                AccessorKind::from_code(code()?).ok_or_else(|| bad("unknown accessor kind"))?,
            ),
            ValueKind::Backend => Value::Backend(
                BackendKind::from_code(code()?).ok_or_else(|| bad("unknown backend"))?,
            ),
            ValueKind::Format => Value::Format(PixelFormat::from_code(code()?)?),
            ValueKind::Layout => {
                Value::Layout(LayoutKind::from_code(code()?).ok_or_else(|| bad("unknown layout"))?)
            }
            ValueKind::ColorStd => Value::ColorStd(
                ColorStd::from_code(code()?).ok_or_else(|| bad("unknown color standard"))?,
            ),
            ValueKind::Scan => {
                Value::Scan(ScanType::from_code(code()?).ok_or_else(|| bad("unknown scan type"))?)
            }
            ValueKind::DataType => Value::DataType(
                DataType::from_code(code()?).ok_or_else(|| bad("unknown data type"))?,
            ),
            ValueKind::Modifiers => {
                if bytes.is_empty() || bytes.len() % 8 != 0 || bytes.len() / 8 > MAX_MODIFIERS {
                    return Err(bad("modifier set: 1 to 64 values of 8 bytes"));
                }
                Value::Modifiers(bytes.chunks_exact(8).map(u64_of).collect::<Vec<_>>().into())
            }
            ValueKind::ModifierUsage => Value::ModifierUsage(
                ModifierUsage::from_code(code()?).ok_or_else(|| bad("unknown modifier usage"))?,
            ),
            ValueKind::Padding => {
                let b = fixed(16)?;
                Value::Padding(Padding {
                    top: u32_of(&b[0..4]),
                    bottom: u32_of(&b[4..8]),
                    left: u32_of(&b[8..12]),
                    right: u32_of(&b[12..16]),
                })
            }
            ValueKind::GpuIdSet => {
                if bytes.len() % 16 != 0 || bytes.len() / 16 > MAX_LIST_LEN {
                    return Err(bad("bad GPU id list length"));
                }
                Value::GpuIds(bytes.chunks_exact(16).map(gpu_of).collect())
            }
            ValueKind::GpuId => Value::Gpu(gpu_of(fixed(16)?)),
            ValueKind::GpuFlags => {
                if bytes.len() % 17 != 0 || bytes.len() / 17 > MAX_LIST_LEN {
                    return Err(bad("bad per-GPU list length"));
                }
                let mut l = Vec::with_capacity(bytes.len() / 17);
                for c in bytes.chunks_exact(17) {
                    let f = match c[16] {
                        0 => false,
                        1 => true,
                        _ => return Err(bad("per-GPU flag must be 0 or 1")),
                    };
                    l.push((gpu_of(&c[..16]), f));
                }
                Value::GpuFlags(l)
            }
        })
    }
}

fn gpu_of(b: &[u8]) -> GpuId {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    GpuId(a)
}

fn u64_of(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::U64List(l) => write!(f, "{l:?}"),
            Value::StrList(l) => write!(f, "{l:?}"),
            Value::Types(t) => write!(f, "{t}"),
            Value::Permission(p) => write!(f, "{p}"),
            Value::Accessor(a) => write!(f, "{a}"),
            Value::Backend(b) => write!(f, "{b}"),
            Value::Format(x) => write!(f, "{x}"),
            Value::Layout(x) => write!(f, "{x}"),
            Value::ColorStd(x) => write!(f, "{x}"),
            Value::Scan(x) => write!(f, "{x}"),
            Value::DataType(x) => write!(f, "{x}"),
            Value::Padding(p) => write!(
                f,
                "top {} bottom {} left {} right {}",
                p.top, p.bottom, p.left, p.right
            ),
            Value::Modifiers(l) => f.write_str(&modifier::names(l)),
            Value::ModifierUsage(u) => write!(f, "{u}"),
            Value::GpuIds(l) => {
                f.write_str("[")?;
                for (i, g) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{g}")?;
                }
                f.write_str("]")
            }
            Value::Gpu(g) => write!(f, "{g}"),
            Value::GpuFlags(l) => {
                f.write_str("{")?;
                for (i, (g, b)) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{g}: {b}")?;
                }
                f.write_str("}")
            }
        }
    }
}
