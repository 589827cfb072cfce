//! Reconciliation of attribute lists into one layout.
//!
//! [`reconcile`] takes any number of unreconciled lists and either returns a read-only
//! [`Reconciled`] list (merged inputs + computed outputs) or a [`Conflict`] naming every key
//! that failed, the accessors involved and their values.
//!
//! The result does not depend on the order of the inputs: lists are put in a canonical order
//! (and identical lists merged) before anything else, and every merge policy is commutative.
//! (Only the fallback label `list #N` of an unnamed list in a conflict message refers to input
//! positions.)
//!
//! ```
//! use unibuf::attr::{AccessorKind, AttrList, Permission};
//! use unibuf::layout::PixelFormat;
//! use unibuf::reconcile::reconcile;
//!
//! let mut camera = AttrList::image(PixelFormat::Nv12, 1920, 1080)?;
//! camera.set_accessor_name("camera")?.set_accessor_kind(AccessorKind::Camera)?.set_pitch_align(64)?;
//! let mut display = AttrList::image(PixelFormat::Nv12, 1920, 1080)?;
//! display
//!     .set_accessor_name("display")?
//!     .set_accessor_kind(AccessorKind::Display)?
//!     .set_required_perm(Permission::ReadOnly)?
//!     .set_pitch_align(256)?;
//!
//! let r = reconcile([&camera, &display])?;
//! let image = r.image().expect("an image layout");
//! assert_eq!(image.planes[0].pitch, 2048); // 1920 rounded up to 256
//! assert_eq!(image.planes[1].offset, 2048 * 1080);
//! assert_eq!(r.permission(), Permission::ReadWrite);
//! let request = r.alloc_request(None); // what a backend allocates
//! assert_eq!(request.name, "camera+display");
//!
//! let mut rgb = AttrList::image(PixelFormat::Xrgb8888, 1920, 1080)?;
//! rgb.set_accessor_name("scaler")?;
//! let conflict = reconcile([&camera, &rgb]).unwrap_err();
//! assert!(conflict.to_string().contains("image.format: lists disagree: camera = NV12, scaler = XRGB8888"));
//! # Ok::<(), unibuf::Error>(())
//! ```

use crate::attr::{
    AccessorKind, AttrList, AttrRead, BufferType, BufferTypes, ColorStd, DataType, Key, LayoutKind,
    MergePolicy, MultiList, Padding, Permission, ScanType, Value,
};
use crate::backend::{AllocRequest, MemoryRequirement};
use crate::layout::{
    ArrayLayout, ImageLayout, ImageParams, PixelFormat, PyramidLayout, TensorLayout,
};
use std::cmp::Ordering;
use std::fmt;
use std::sync::OnceLock;

/// What went wrong with one key.
#[derive(Debug, Clone, PartialEq)]
pub enum ConflictKind {
    /// Lists give values that cannot be merged (equal-or-fail keys that differ, lists of
    /// different lengths, an unsupported union of buffer types).
    Disagree,
    /// A key reconciliation needs was set by no list.
    Missing,
    /// The merged values are inconsistent or cannot be laid out; the text says why.
    Invalid(String),
    /// A reconciled list does not satisfy an unreconciled list ([`Reconciled::validate`]), or an
    /// imported output differs from the recomputed one ([`Reconciled::from_parts`]).
    NotSatisfied,
    /// No lists were given.
    NoLists,
}

/// One failing key of a [`Conflict`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictItem {
    /// The key.
    pub key: Key,
    /// What went wrong.
    pub kind: ConflictKind,
    /// The accessors (by name, or `list #N` for an unnamed list) and the values they gave,
    /// sorted by value then accessor.
    pub values: Vec<(String, Value)>,
}

/// Why lists could not be reconciled (or validated). Read-only: inspect it or print it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    items: Vec<ConflictItem>,
}

impl Conflict {
    /// The failing keys, in key order.
    pub fn items(&self) -> &[ConflictItem] {
        &self.items
    }

    /// The failing keys.
    pub fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.items.iter().map(|i| i.key)
    }

    fn one(key: Key, kind: ConflictKind, values: Vec<(String, Value)>) -> Conflict {
        Conflict {
            items: vec![ConflictItem { key, kind, values }],
        }
    }
}

impl fmt::Display for ConflictItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vals = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            for (i, (who, v)) in self.values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{who} = {v}")?;
            }
            Ok(())
        };
        match &self.kind {
            ConflictKind::Disagree => {
                write!(f, "{}: lists disagree: ", self.key)?;
                vals(f)
            }
            ConflictKind::Missing => write!(f, "{}: required but set by no list", self.key),
            ConflictKind::Invalid(why) => {
                write!(f, "{}: {why}", self.key)?;
                if !self.values.is_empty() {
                    f.write_str(" (")?;
                    vals(f)?;
                    f.write_str(")")?;
                }
                Ok(())
            }
            ConflictKind::NotSatisfied => {
                write!(f, "{}: not satisfied: ", self.key)?;
                vals(f)
            }
            ConflictKind::NoLists => f.write_str("no attribute lists to reconcile"),
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot reconcile ({} key", self.items.len())?;
        if self.items.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for i in &self.items {
            write!(f, "\n  {i}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Conflict {}

impl From<Conflict> for crate::Error {
    fn from(c: Conflict) -> Self {
        crate::Error::Conflict(Box::new(c))
    }
}

/// One accessor of a reconciled list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Accessor {
    /// Its name, if the list gave one.
    pub name: Option<String>,
    /// Its kind, if the list gave one (a list without a kind counts as a device).
    pub kind: Option<AccessorKind>,
}

/// A reconciled attribute list: read-only. Holds the merged input keys and the computed
/// outputs (both readable through [`Reconciled::get`]/[`Reconciled::iter`]), the typed
/// layouts, and the (canonically ordered) input lists it was computed from.
///
/// Export/import (IPC): send [`Reconciled::inputs`] and [`Reconciled::iter_outputs`]; the
/// receiver rebuilds it with [`Reconciled::from_parts`] (which recomputes and compares every
/// output) and checks its own needs with [`Reconciled::validate`].
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// Merged input keys.
    list: AttrList,
    /// Output keys, built on first use (the typed fields are the source of truth).
    outputs: OnceLock<AttrList>,
    inputs: Vec<AttrList>,
    accessors: Vec<Accessor>,
    types: BufferTypes,
    size: u64,
    alignment: u64,
    permission: Permission,
    cpu_access: bool,
    cpu_cache: bool,
    memory: MemoryRequirement,
    image: Option<ImageLayout>,
    tensor: Option<TensorLayout>,
    array: Option<ArrayLayout>,
    pyramid: Option<PyramidLayout>,
}

/// Total order of lists, used to make reconciliation independent of input order.
fn cmp_lists(a: &AttrList, b: &AttrList) -> Ordering {
    for &k in Key::ALL {
        let o = match (a.get(k), b.get(k)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => x.total_cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn label(i: usize, l: &AttrList) -> String {
    match l.accessor_name() {
        Some(n) => n.to_string(),
        None => format!("list #{}", i + 1),
    }
}

/// Reconciles lists into one. Takes anything that yields `&AttrList` (a slice, a `Vec`, an
/// array of references, a [`MultiList`]).
pub fn reconcile<'a, I>(lists: I) -> Result<Reconciled, Conflict>
where
    I: IntoIterator<Item = &'a AttrList>,
{
    let mut ls: Vec<(usize, &AttrList)> = lists.into_iter().enumerate().collect();
    if ls.is_empty() {
        return Err(Conflict::one(Key::Types, ConflictKind::NoLists, vec![]));
    }
    ls.sort_by(|a, b| cmp_lists(a.1, b.1).then(a.0.cmp(&b.0)));
    ls.dedup_by(|a, b| cmp_lists(a.1, b.1) == Ordering::Equal);

    let mut merged = AttrList::new();
    merged.reserve(Key::COUNT);
    let mut items = Vec::new();
    for &key in Key::ALL {
        let policy = key.merge_policy();
        if matches!(policy, MergePolicy::PerList | MergePolicy::Output) {
            continue;
        }
        let mut acc: Option<Value> = None;
        let mut bad = false;
        for (_, l) in &ls {
            let Some(v) = l.get(key) else { continue };
            let Some(a) = acc.take() else {
                acc = Some(v.clone());
                continue;
            };
            match merge(policy, a, v) {
                Some(m) => acc = Some(m),
                None => {
                    bad = true;
                    break;
                }
            }
        }
        if key == Key::Types {
            if let Some(Value::Types(t)) = &acc {
                if !t.is_valid_combination() {
                    bad = true;
                }
            }
        }
        if bad {
            items.push(ConflictItem {
                key,
                kind: ConflictKind::Disagree,
                values: values_of(&ls, key),
            });
        } else if let Some(v) = acc {
            merged.put(key, v);
        }
    }
    if !items.is_empty() {
        return Err(Conflict { items });
    }
    let inputs: Vec<AttrList> = ls.iter().map(|(_, l)| (*l).clone()).collect();
    compute(merged, inputs, &ls)
}

fn values_of(ls: &[(usize, &AttrList)], key: Key) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = ls
        .iter()
        .filter_map(|(i, l)| l.get(key).map(|v| (label(*i, l), v.clone())))
        .collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Merges `b` into `a` under `policy`; `None` if they cannot be merged.
fn merge(policy: MergePolicy, a: Value, b: &Value) -> Option<Value> {
    use Value as V;
    match policy {
        MergePolicy::Equal => (a == *b).then_some(a),
        MergePolicy::Max => match (a, b) {
            (V::U64(x), V::U64(y)) => Some(V::U64(x.max(*y))),
            (V::U32(x), V::U32(y)) => Some(V::U32(x.max(*y))),
            (V::Permission(x), V::Permission(y)) => Some(V::Permission(x.max(*y))),
            (V::Padding(x), V::Padding(y)) => Some(V::Padding(x.max(*y))),
            (V::U64List(x), V::U64List(y)) => (x.len() == y.len())
                .then(|| V::U64List(x.iter().zip(y).map(|(p, q)| (*p).max(*q)).collect())),
            _ => None,
        },
        MergePolicy::Or => match (a, b) {
            (V::Bool(x), V::Bool(y)) => Some(V::Bool(x || *y)),
            _ => None,
        },
        MergePolicy::And => match (a, b) {
            (V::Bool(x), V::Bool(y)) => Some(V::Bool(x && *y)),
            _ => None,
        },
        MergePolicy::Union => match (a, b) {
            (V::Types(x), V::Types(y)) => Some(V::Types(x.union(*y))),
            (V::StrList(mut x), V::StrList(y)) => {
                x.extend(y.iter().cloned());
                x.sort();
                x.dedup();
                Some(V::StrList(x))
            }
            _ => None,
        },
        MergePolicy::PerList | MergePolicy::Output => None,
    }
}

struct Ctx<'a> {
    merged: &'a AttrList,
    ls: &'a [(usize, &'a AttrList)],
    items: Vec<ConflictItem>,
}

impl Ctx<'_> {
    fn missing(&mut self, key: Key) {
        self.items.push(ConflictItem {
            key,
            kind: ConflictKind::Missing,
            values: vec![],
        });
    }

    fn invalid(&mut self, key: Key, why: impl Into<String>) {
        let values = values_of(self.ls, key);
        self.items.push(ConflictItem {
            key,
            kind: ConflictKind::Invalid(why.into()),
            values,
        });
    }

    fn u64(&self, key: Key) -> Option<u64> {
        self.merged.get(key).and_then(Value::as_u64)
    }

    fn need_u64(&mut self, key: Key) -> Option<u64> {
        let v = self.u64(key);
        if v.is_none() {
            self.missing(key);
        }
        v
    }

    fn format(&mut self) -> Option<PixelFormat> {
        match self.merged.get(Key::ImageFormat) {
            Some(Value::Format(f)) => Some(*f),
            _ => {
                self.missing(Key::ImageFormat);
                None
            }
        }
    }

    fn data_type(&mut self, key: Key, required: bool) -> Option<DataType> {
        match self.merged.get(key) {
            Some(Value::DataType(d)) => Some(*d),
            _ => {
                if required {
                    self.missing(key);
                }
                None
            }
        }
    }

    fn list(&self, key: Key) -> Option<&[u64]> {
        match self.merged.get(key) {
            Some(Value::U64List(l)) => Some(l),
            _ => None,
        }
    }

    /// The merged image parameters (None, with items recorded, if something is missing).
    fn image_params(&mut self) -> Option<ImageParams> {
        let format = self.format();
        let width = self.need_u64(Key::ImageWidth);
        let height = self.need_u64(Key::ImageHeight);
        let layout = match self.merged.get(Key::ImageLayout) {
            Some(Value::Layout(l)) => *l,
            _ => LayoutKind::PitchLinear,
        };
        let modifier = self.u64(Key::ImageModifier);
        let modifier = match (layout, modifier) {
            (LayoutKind::PitchLinear, None | Some(0)) => 0,
            (LayoutKind::PitchLinear, Some(_)) => {
                self.invalid(
                    Key::ImageModifier,
                    "a pitch-linear image needs the linear modifier (0)",
                );
                0
            }
            (LayoutKind::Tiled, None | Some(0)) => {
                self.invalid(
                    Key::ImageLayout,
                    "a tiled image needs a non-linear image.modifier",
                );
                0
            }
            (LayoutKind::Tiled, Some(m)) => m,
        };
        let scan = match self.merged.get(Key::ImageScanType) {
            Some(Value::Scan(s)) => *s,
            _ => ScanType::Progressive,
        };
        if let (Some(f), Some(Value::ColorStd(c))) = (format, self.merged.get(Key::ImageColorStd)) {
            if !color_std_fits(f, *c) {
                self.invalid(
                    Key::ImageColorStd,
                    format!("{c} does not describe {f} ({:?} data)", f.info().family),
                );
            }
        }
        let padding = match self.merged.get(Key::ImagePadding) {
            Some(Value::Padding(p)) => *p,
            _ => Padding::default(),
        };
        let mut p = ImageParams::new(
            format?,
            u32::try_from(width?).ok()?,
            u32::try_from(height?).ok()?,
        );
        p.modifier = modifier;
        p.scan = scan;
        p.padding = padding;
        p.pitch_align = self.u64(Key::ImagePitchAlign).unwrap_or(1);
        p.base_align = self.u64(Key::ImageBaseAlign).unwrap_or(1);
        p.height_align = self.u64(Key::ImageHeightAlign).unwrap_or(1);
        p.size_align = self.u64(Key::ImageSizeAlign).unwrap_or(1);
        p.min_pitch = self.u64(Key::ImageMinPitch).unwrap_or(0);
        p.min_size = self.u64(Key::ImageMinSize).unwrap_or(0);
        p.exact_pitch = self.u64(Key::ImageExactPitch).unwrap_or(0);
        Some(p)
    }
}

/// Whether a color standard can describe a format's data: Y'CbCr needs a BT.* matrix, RGB is
/// sRGB or BT.709/BT.2020 primaries, Bayer data is raw, grey takes any but raw.
fn color_std_fits(f: PixelFormat, c: ColorStd) -> bool {
    use crate::layout::ColorFamily as F;
    match f.info().family {
        F::Yuv => matches!(
            c,
            ColorStd::Bt601 | ColorStd::Bt601Full | ColorStd::Bt709 | ColorStd::Bt2020
        ),
        F::Rgb => matches!(c, ColorStd::Srgb | ColorStd::Bt709 | ColorStd::Bt2020),
        F::Bayer => c == ColorStd::Raw,
        F::Grey => c != ColorStd::Raw,
    }
}

fn u64_list(v: impl Iterator<Item = u64>) -> Value {
    Value::U64List(v.collect())
}

/// Validates the merged list and computes the outputs.
fn compute(
    merged: AttrList,
    inputs: Vec<AttrList>,
    ls: &[(usize, &AttrList)],
) -> Result<Reconciled, Conflict> {
    let mut cx = Ctx {
        merged: &merged,
        ls,
        items: Vec::new(),
    };
    let types = match merged.get(Key::Types) {
        Some(Value::Types(t)) => *t,
        _ => {
            cx.missing(Key::Types);
            BufferTypes::EMPTY
        }
    };

    let mut image = None;
    let mut tensor = None;
    let mut array = None;
    let mut pyramid = None;
    let mut size = 0;
    let mut alignment = 1;

    if types.contains(BufferType::RawBuffer) {
        if let Some(s) = cx.need_u64(Key::RawSize) {
            size = s;
            alignment = cx.u64(Key::RawAlign).unwrap_or(1);
        }
    }
    if types.contains(BufferType::Image) && !types.contains(BufferType::Tensor) {
        if let Some(p) = cx.image_params() {
            match ImageLayout::compute(&p) {
                Ok(l) => {
                    size = l.size;
                    alignment = l.alignment;
                    image = Some(l);
                }
                Err(e) => cx.invalid(e.key, e.reason),
            }
        }
    }
    if types.contains(BufferType::Image) && types.contains(BufferType::Tensor) {
        if let Some((i, t)) = image_tensor(&mut cx) {
            size = i.size;
            alignment = t.alignment;
            image = Some(i);
            tensor = Some(t);
        }
    }
    if types.contains(BufferType::Tensor) && !types.contains(BufferType::Image) {
        let dt = cx.data_type(Key::TensorDataType, true);
        let dims = cx.need_u64(Key::TensorNumDims);
        let sizes = cx.list(Key::TensorSizes).map(<[u64]>::to_vec);
        if sizes.is_none() {
            cx.missing(Key::TensorSizes);
        }
        let align = cx.list(Key::TensorAlignPerDim).map(<[u64]>::to_vec);
        let base = cx.u64(Key::TensorBaseAlign).unwrap_or(1);
        if let (Some(dt), Some(dims), Some(sizes)) = (dt, dims, sizes) {
            if sizes.len() as u64 != dims {
                cx.invalid(
                    Key::TensorSizes,
                    format!("{} sizes for {dims} dimensions", sizes.len()),
                );
            } else if align.as_ref().is_some_and(|a| a.len() as u64 != dims) {
                cx.invalid(
                    Key::TensorAlignPerDim,
                    format!("alignments for {dims} dimensions expected"),
                );
            } else {
                match TensorLayout::compute(dt, &sizes, align.as_deref().unwrap_or(&[]), base) {
                    Ok(t) => {
                        size = t.size;
                        alignment = t.alignment;
                        tensor = Some(t);
                    }
                    Err(e) => cx.invalid(e.key, e.reason),
                }
            }
        }
    }
    if types.contains(BufferType::Array) {
        let dt = cx.data_type(Key::ArrayDataType, true);
        let stride = cx.need_u64(Key::ArrayStride);
        let cap = cx.need_u64(Key::ArrayCapacity);
        if let (Some(dt), Some(stride), Some(cap)) = (dt, stride, cap) {
            if stride < dt.size() {
                cx.invalid(
                    Key::ArrayStride,
                    format!("stride {stride} is smaller than a {dt} element"),
                );
            } else if let Some(sz) = stride.checked_mul(cap).filter(|s| *s <= 1 << 52) {
                let a = ArrayLayout {
                    data_type: dt,
                    stride,
                    capacity: cap,
                    size: sz,
                    alignment: dt.size(),
                };
                size = sz;
                alignment = a.alignment;
                array = Some(a);
            } else {
                cx.invalid(Key::ArrayCapacity, "array size overflows");
            }
        }
    }
    if types.contains(BufferType::ImagePyramid) {
        let levels = cx.need_u64(Key::PyramidLevels);
        let scale = match cx.merged.get(Key::PyramidScale) {
            Some(Value::F64(s)) => Some(*s),
            _ => {
                cx.missing(Key::PyramidScale);
                None
            }
        };
        if let (Some(p), Some(levels), Some(scale)) = (cx.image_params(), levels, scale) {
            match PyramidLayout::compute(&p, levels as u32, scale) {
                Ok(py) => {
                    size = py.size;
                    alignment = p.base_align;
                    image = Some(py.levels[0].image.clone());
                    pyramid = Some(py);
                }
                Err(e) => cx.invalid(e.key, e.reason),
            }
        }
    }
    if !cx.items.is_empty() {
        let mut items = cx.items;
        items.sort_by_key(|i| i.key);
        items.dedup_by(|a, b| a.key == b.key && a.kind == b.kind);
        return Err(Conflict { items });
    }

    // General outputs.
    let permission = ls
        .iter()
        .map(|(_, l)| match l.get(Key::RequiredPerm) {
            Some(Value::Permission(p)) => *p,
            _ => Permission::ReadWrite,
        })
        .max()
        .unwrap_or(Permission::ReadWrite);
    let flag = |k: Key, default: bool| merged.get(k).and_then(Value::as_bool).unwrap_or(default);
    let cpu_access = flag(Key::NeedCpuAccess, false);
    let cpu_cache = cpu_access && flag(Key::EnableCpuCache, true);
    let memory = MemoryRequirement {
        contiguous: flag(Key::PhysContiguous, false),
        pinnable: ls
            .iter()
            .any(|(_, l)| l.accessor_kind() == Some(AccessorKind::Vfio)),
        device_access: ls
            .iter()
            .any(|(_, l)| l.accessor_kind().is_none_or(AccessorKind::is_device)),
        preferred: match merged.get(Key::PreferredBackend) {
            Some(Value::Backend(b)) => Some(*b),
            _ => None,
        },
    };
    let mut accessors: Vec<Accessor> = ls
        .iter()
        .map(|(_, l)| Accessor {
            name: l.accessor_name().map(str::to_string),
            kind: l.accessor_kind(),
        })
        .collect();
    accessors.sort();
    Ok(Reconciled {
        list: merged,
        outputs: OnceLock::new(),
        inputs,
        accessors,
        types,
        size,
        alignment,
        permission,
        cpu_access,
        cpu_cache,
        memory,
        image,
        tensor,
        array,
        pyramid,
    })
}

impl PartialEq for Reconciled {
    fn eq(&self, o: &Self) -> bool {
        self.list == o.list
            && self.inputs == o.inputs
            && self.accessors == o.accessors
            && self.types == o.types
            && self.size == o.size
            && self.alignment == o.alignment
            && self.permission == o.permission
            && self.cpu_access == o.cpu_access
            && self.cpu_cache == o.cpu_cache
            && self.memory == o.memory
            && self.image == o.image
            && self.tensor == o.tensor
            && self.array == o.array
            && self.pyramid == o.pyramid
    }
}

impl Reconciled {
    fn outputs(&self) -> &AttrList {
        self.outputs.get_or_init(|| self.build_outputs())
    }

    fn build_outputs(&self) -> AttrList {
        let mut names: Vec<String> = self
            .accessors
            .iter()
            .filter_map(|a| a.name.clone())
            .collect();
        names.sort();
        names.dedup();

        let mut out = AttrList::new();
        out.reserve(24);
        let mut put = |k: Key, v: Value| out.put(k, v);
        put(Key::OutSize, Value::U64(self.size));
        put(Key::OutAlign, Value::U64(self.alignment));
        put(Key::OutPermission, Value::Permission(self.permission));
        put(Key::OutCpuAccess, Value::Bool(self.cpu_access));
        put(Key::OutCpuCache, Value::Bool(self.cpu_cache));
        put(Key::OutContiguous, Value::Bool(self.memory.contiguous));
        put(Key::OutPinnable, Value::Bool(self.memory.pinnable));
        put(Key::OutDeviceAccess, Value::Bool(self.memory.device_access));
        put(Key::OutAccessors, Value::StrList(names));
        if let Some(img) = &self.image {
            let pl = &img.planes;
            put(Key::OutPlaneCount, Value::U32(pl.len() as u32));
            put(Key::OutPlanePitch, u64_list(pl.iter().map(|p| p.pitch)));
            put(Key::OutPlaneOffset, u64_list(pl.iter().map(|p| p.offset)));
            put(
                Key::OutPlaneAlignedHeight,
                u64_list(pl.iter().map(|p| p.aligned_height)),
            );
            put(Key::OutPlaneSize, u64_list(pl.iter().map(|p| p.size)));
            put(
                Key::OutPlaneBpp,
                u64_list(pl.iter().map(|p| u64::from(p.bpp))),
            );
            put(
                Key::OutPlaneChannels,
                u64_list(pl.iter().map(|p| u64::from(p.channels))),
            );
            put(
                Key::OutPlaneSecondFieldOffset,
                u64_list(pl.iter().map(|p| p.second_field_offset)),
            );
        }
        if let Some(t) = &self.tensor {
            put(Key::OutTensorStrides, Value::U64List(t.strides.clone()));
            put(Key::OutTensorSize, Value::U64(t.size));
        }
        if let Some(a) = &self.array {
            put(Key::OutArraySize, Value::U64(a.size));
            put(Key::OutArrayAlign, Value::U64(a.alignment));
        }
        if let Some(py) = &self.pyramid {
            put(
                Key::OutPyramidLevelOffsets,
                u64_list(py.levels.iter().map(|l| l.offset)),
            );
            put(
                Key::OutPyramidLevelSizes,
                u64_list(py.levels.iter().map(|l| l.size)),
            );
        }
        out
    }
}

/// Image + Tensor: an NHWC tensor (N = 1) over a one-plane pitch-linear image.
fn image_tensor(cx: &mut Ctx<'_>) -> Option<(ImageLayout, TensorLayout)> {
    let mut p = cx.image_params()?;
    let info = p.format.info();
    if info.planes.len() != 1 || info.component_bits.is_none() {
        cx.invalid(
            Key::ImageFormat,
            format!("{} cannot be viewed as an NHWC tensor (needs one plane of equal byte-sized components)", p.format),
        );
        return None;
    }
    if p.modifier != 0 {
        cx.invalid(
            Key::ImageModifier,
            "an image+tensor buffer must be pitch-linear",
        );
        return None;
    }
    if p.scan != ScanType::Progressive {
        cx.invalid(
            Key::ImageScanType,
            "an image+tensor buffer must be progressive",
        );
        return None;
    }
    let plane = info.planes[0];
    let cbits = u64::from(info.component_bits.unwrap_or(8));
    let dt = cx
        .data_type(Key::TensorDataType, false)
        .unwrap_or(if cbits == 8 {
            DataType::Uint8
        } else {
            DataType::Uint16
        });
    if dt.size() * 8 != cbits {
        cx.invalid(
            Key::TensorDataType,
            format!(
                "{dt} does not match the {cbits}-bit components of {}",
                p.format
            ),
        );
        return None;
    }
    let (pad_w, pad_h) = (
        u64::from(p.padding.left + p.padding.right),
        u64::from(p.padding.top + p.padding.bottom),
    );
    let nhwc = [
        1,
        u64::from(p.height) + pad_h,
        u64::from(p.width) + pad_w,
        u64::from(plane.channels),
    ];
    if let Some(d) = cx.u64(Key::TensorNumDims) {
        if d != 4 {
            cx.invalid(
                Key::TensorNumDims,
                "an image+tensor buffer is NHWC: 4 dimensions",
            );
            return None;
        }
    }
    if let Some(s) = cx.list(Key::TensorSizes) {
        if s != nhwc {
            cx.invalid(
                Key::TensorSizes,
                format!("an image+tensor buffer is NHWC {nhwc:?} here"),
            );
            return None;
        }
    }
    let align = cx.list(Key::TensorAlignPerDim).map(<[u64]>::to_vec);
    if let Some(a) = &align {
        if a.len() != 4 {
            cx.invalid(
                Key::TensorAlignPerDim,
                "an image+tensor buffer is NHWC: 4 alignments",
            );
            return None;
        }
        p.pitch_align = p.pitch_align.max(a[1]);
    }
    p.base_align = p.base_align.max(cx.u64(Key::TensorBaseAlign).unwrap_or(1));
    let img = match ImageLayout::compute(&p) {
        Ok(i) => i,
        Err(e) => {
            cx.invalid(e.key, e.reason);
            return None;
        }
    };
    let pl = img.planes[0];
    let strides = vec![pl.size, pl.pitch, u64::from(plane.bpp) / 8, dt.size()];
    if let Some(a) = &align {
        for (i, (s, al)) in strides.iter().zip(a).enumerate() {
            if s % al != 0 {
                cx.invalid(
                    Key::TensorAlignPerDim,
                    format!("dimension {i} stride {s} of the image is not a multiple of {al}"),
                );
                return None;
            }
        }
    }
    let t = TensorLayout {
        data_type: dt,
        sizes: nhwc.to_vec(),
        strides,
        size: img.size,
        alignment: p.base_align.max(dt.size()),
    };
    Some((img, t))
}

impl Reconciled {
    /// Buffer size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Base-address alignment in bytes (a power of two).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The actual permission: the highest any list required (a list that states none
    /// requires read-write).
    pub fn permission(&self) -> Permission {
        self.permission
    }

    /// Some accessor needs CPU access.
    pub fn need_cpu_access(&self) -> bool {
        self.cpu_access
    }

    /// CPU mappings are cached: CPU access is needed and no list disabled caching.
    pub fn cpu_cache(&self) -> bool {
        self.cpu_cache
    }

    /// What the memory must be.
    pub fn memory(&self) -> &MemoryRequirement {
        &self.memory
    }

    /// The buffer types.
    pub fn types(&self) -> BufferTypes {
        self.types
    }

    /// The accessors, sorted.
    pub fn accessors(&self) -> &[Accessor] {
        &self.accessors
    }

    /// The image layout (images, image+tensor buffers, and level 0 of pyramids).
    pub fn image(&self) -> Option<&ImageLayout> {
        self.image.as_ref()
    }

    /// The tensor layout (tensors and image+tensor buffers).
    pub fn tensor(&self) -> Option<&TensorLayout> {
        self.tensor.as_ref()
    }

    /// The array layout.
    pub fn array(&self) -> Option<&ArrayLayout> {
        self.array.as_ref()
    }

    /// The pyramid layout.
    pub fn pyramid(&self) -> Option<&PyramidLayout> {
        self.pyramid.as_ref()
    }

    /// The input lists, in canonical order, identical lists merged.
    pub fn inputs(&self) -> &[AttrList] {
        &self.inputs
    }

    /// The value of a merged input key or an output key. Allocation-free.
    pub fn get(&self, key: Key) -> Option<&Value> {
        if key.is_output() {
            self.outputs().get(key)
        } else {
            self.list.get(key)
        }
    }

    /// Merged input keys then outputs, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &Value)> + '_ {
        self.list.iter().chain(self.outputs().iter())
    }

    /// The output keys and values.
    pub fn iter_outputs(&self) -> impl Iterator<Item = (Key, &Value)> + '_ {
        self.outputs().iter()
    }

    /// What a backend needs to allocate the buffer. The name is `name` if given, else the
    /// accessor names joined by `+` (or `unibuf` when no list is named), cut to 31 bytes at a
    /// character boundary.
    pub fn alloc_request(&self, name: Option<&str>) -> AllocRequest {
        let derived;
        let name = match name {
            Some(n) => n,
            None => {
                let names: Vec<&str> = self
                    .accessors
                    .iter()
                    .filter_map(|a| a.name.as_deref())
                    .collect();
                derived = if names.is_empty() {
                    "unibuf".to_string()
                } else {
                    names.join("+")
                };
                &derived
            }
        };
        AllocRequest {
            size: self.size,
            alignment: self.alignment,
            permission: self.permission,
            cpu_access: self.cpu_access,
            cpu_cache: self.cpu_cache,
            memory: self.memory.clone(),
            name: truncate_name(name, 31),
        }
    }

    /// Checks that this reconciled list satisfies each of `lists` (for example an importer's
    /// own lists). The error names each key that fails, the list and the two values.
    pub fn validate<'a, I>(&self, lists: I) -> Result<(), Conflict>
    where
        I: IntoIterator<Item = &'a AttrList>,
    {
        let mut items = Vec::new();
        for (i, l) in lists.into_iter().enumerate() {
            let who = label(i, l);
            for (key, v) in l.iter() {
                let got = self.get(key);
                let ok = match key.merge_policy() {
                    MergePolicy::PerList => true,
                    MergePolicy::Output => false,
                    MergePolicy::Equal => got == Some(v),
                    MergePolicy::Max => match (key, v, got) {
                        (Key::RequiredPerm, Value::Permission(p), _) => self.permission >= *p,
                        (_, v, Some(g)) => {
                            merge(MergePolicy::Max, g.clone(), v).as_ref() == Some(g)
                        }
                        _ => false,
                    },
                    MergePolicy::Or => v != &Value::Bool(true) || got == Some(&Value::Bool(true)),
                    MergePolicy::And => {
                        v != &Value::Bool(false) || got == Some(&Value::Bool(false))
                    }
                    MergePolicy::Union => match (v, got) {
                        (Value::Types(a), Some(Value::Types(b))) => a.union(*b) == *b,
                        (Value::StrList(a), Some(Value::StrList(b))) => {
                            a.iter().all(|x| b.contains(x))
                        }
                        _ => false,
                    },
                };
                if !ok {
                    let mut values = vec![(who.clone(), v.clone())];
                    let shown = if key == Key::RequiredPerm {
                        Some(Value::Permission(self.permission))
                    } else {
                        got.cloned()
                    };
                    if let Some(g) = shown {
                        values.push(("reconciled".to_string(), g));
                    }
                    items.push(ConflictItem {
                        key,
                        kind: ConflictKind::NotSatisfied,
                        values,
                    });
                }
            }
            let kind = l.accessor_kind();
            if kind == Some(AccessorKind::Vfio) && !self.memory.pinnable {
                items.push(ConflictItem {
                    key: Key::OutPinnable,
                    kind: ConflictKind::NotSatisfied,
                    values: vec![(who.clone(), Value::Accessor(AccessorKind::Vfio))],
                });
            }
            if kind.is_none_or(AccessorKind::is_device) && !self.memory.device_access {
                items.push(ConflictItem {
                    key: Key::OutDeviceAccess,
                    kind: ConflictKind::NotSatisfied,
                    values: vec![(who.clone(), Value::Bool(true))],
                });
            }
        }
        if items.is_empty() {
            Ok(())
        } else {
            Err(Conflict { items })
        }
    }

    /// Rebuilds a reconciled list from its inputs and its outputs (as exported): reconciles
    /// the inputs again and requires every output to be present and equal. A differing or
    /// missing output is a [`ConflictKind::NotSatisfied`] item naming the key.
    pub fn from_parts<'a, I>(inputs: I, outputs: &[(Key, Value)]) -> Result<Reconciled, Conflict>
    where
        I: IntoIterator<Item = &'a AttrList>,
    {
        let r = reconcile(inputs)?;
        let mut items = Vec::new();
        for (k, v) in outputs {
            if !k.is_output() || r.get(*k) != Some(v) {
                let mut values = vec![("exported".to_string(), v.clone())];
                if let Some(g) = r.get(*k) {
                    values.push(("recomputed".to_string(), g.clone()));
                }
                items.push(ConflictItem {
                    key: *k,
                    kind: ConflictKind::NotSatisfied,
                    values,
                });
            }
        }
        for (k, v) in r.iter_outputs() {
            if !outputs.iter().any(|(ok, _)| *ok == k) {
                items.push(ConflictItem {
                    key: k,
                    kind: ConflictKind::NotSatisfied,
                    values: vec![("recomputed".to_string(), v.clone())],
                });
            }
        }
        if items.is_empty() {
            Ok(r)
        } else {
            Err(Conflict { items })
        }
    }

    /// The inputs as a multi-slot list.
    pub fn inputs_multi(&self) -> MultiList {
        AttrList::append(&self.inputs)
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn truncate_name(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl AttrRead for Reconciled {
    fn is_reconciled(&self) -> bool {
        true
    }
    fn slot_count(&self) -> usize {
        1
    }
    fn get_in(&self, slot: usize, key: Key) -> Option<Value> {
        (slot == 0).then(|| self.get(key).cloned()).flatten()
    }
}

#[cfg(test)]
mod tests;
