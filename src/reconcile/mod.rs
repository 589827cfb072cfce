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
//! camera
//!     .set_accessor_name("camera")?
//!     .set_accessor_kind(AccessorKind::Camera)?
//!     .set_required_perm(Permission::ReadWrite)? // it writes; a list that says nothing reads
//!     .set_pitch_align(64)?;
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
//! assert_eq!(r.derived_name(), "camera+display"); // the buffer's name
//!
//! let mut rgb = AttrList::image(PixelFormat::Xrgb8888, 1920, 1080)?;
//! rgb.set_accessor_name("scaler")?;
//! let conflict = reconcile([&camera, &rgb]).unwrap_err();
//! assert!(conflict.to_string().contains("image.format: lists disagree: camera = NV12, scaler = XRGB8888"));
//! # Ok::<(), unibuf::Error>(())
//! ```

use crate::attr::{
    AccessorKind, AttrList, AttrRead, BufferType, BufferTypes, ColorStd, DataType, GpuId, Key,
    MergePolicy, MultiList, Padding, Permission, ScanType, Value,
};
use crate::layout::{
    ArrayLayout, ImageLayout, ImageParams, PixelFormat, PyramidLayout, TensorLayout,
};
use crate::model::MemoryRequirement;
use std::cmp::Ordering;
use std::sync::OnceLock;

mod conflict;
pub mod dump;
mod merge;
mod modifiers;
mod output;

pub use conflict::{Conflict, ConflictItem, ConflictKind};
use merge::{cmp_lists, label, merge, values_of};
use output::compute;

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
    /// The buffer name derived from the accessors, built on first use (allocation hot path).
    derived_name: OnceLock<std::sync::Arc<str>>,
    inputs: Vec<AttrList>,
    accessors: Vec<Accessor>,
    types: BufferTypes,
    size: u64,
    alignment: u64,
    permission: Permission,
    cpu_access: bool,
    /// Some list made in this process (not imported from a peer) asked for CPU access.
    local_cpu_access: bool,
    cpu_cache: bool,
    cpu_sw_cache_coherency: bool,
    gpu_cache: Vec<(GpuId, bool)>,
    gpu_compression: Vec<(GpuId, bool)>,
    memory: MemoryRequirement,
    image: Option<ImageLayout>,
    tensor: Option<TensorLayout>,
    array: Option<ArrayLayout>,
    pyramid: Option<PyramidLayout>,
}

/// Reconciles lists into one. Takes anything that yields `&AttrList` (a slice, a `Vec`, an
/// array of references, a [`MultiList`]).
pub fn reconcile<'a, I>(lists: I) -> Result<Reconciled, Conflict>
where
    I: IntoIterator<Item = &'a AttrList>,
{
    reconcile_indexed(lists.into_iter().enumerate().collect())
}

/// The body of [`reconcile`], not generic: every caller (a slice, an array, the C API's list of
/// references) runs the same code, compiled once.
fn reconcile_indexed(mut ls: Vec<(usize, &AttrList)>) -> Result<Reconciled, Conflict> {
    if ls.is_empty() {
        return Err(Conflict::one(Key::Types, ConflictKind::NoLists, vec![]));
    }
    // NvSciBuf NeedCpuAccess for the reconciler: its own lists decide (before identical lists
    // are merged, which may keep a peer's copy of one of ours).
    let local_cpu_access = ls
        .iter()
        .any(|(_, l)| !l.is_imported() && l.needs_cpu_access());
    ls.sort_by(|a, b| cmp_lists(a.1, b.1).then(a.0.cmp(&b.0)));
    ls.dedup_by(|a, b| cmp_lists(a.1, b.1) == Ordering::Equal);

    let mut merged = AttrList::new();
    merged.reserve(Key::COUNT);
    let mut items = Vec::new();
    for &key in Key::ALL {
        let policy = key.merge_policy();
        if matches!(
            policy,
            MergePolicy::PerList | MergePolicy::Output | MergePolicy::Intersect
        ) {
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
    let layout = match merged.get(Key::ImageLayout) {
        Some(Value::Layout(l)) => Some(*l),
        _ => None,
    };
    let tensor =
        matches!(merged.get(Key::Types), Some(Value::Types(t)) if t.contains(BufferType::Tensor));
    let modifier = match modifiers::negotiate(&ls, modifiers::Shape::of(layout, tensor)) {
        Ok(Some((ranked, pick))) => {
            merged.put(Key::ImageModifiers, Value::Modifiers(ranked));
            pick
        }
        Ok(None) => crate::model::modifier::LINEAR,
        Err(item) => {
            items.push(item);
            crate::model::modifier::LINEAR
        }
    };
    if !items.is_empty() {
        items.sort_by_key(|i| i.key);
        return Err(Conflict { items });
    }
    let inputs: Vec<AttrList> = ls.iter().map(|(_, l)| (*l).clone()).collect();
    compute(merged, inputs, &ls, modifier, local_cpu_access)
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

    /// The actual permission (NvSciBuf `ActualPerm`): the highest any list required; a list that
    /// states none requires read-only. The process that allocates holds read-write whatever
    /// this says (it fills the buffer); importers hold at most what their own lists asked.
    pub fn permission(&self) -> Permission {
        self.permission
    }

    /// Some accessor needs CPU access (the OR over every list: it decides the memory and its
    /// caching, not who may map it).
    pub fn need_cpu_access(&self) -> bool {
        self.cpu_access
    }

    /// Some list made in this process (not [imported](AttrList::is_imported) from a peer) asked
    /// for CPU access: what a handle this process allocates (or imports with this list) holds.
    /// NvSciBuf: `NeedCpuAccess` in the reconciler's list is true when a list it owns asked, and
    /// `NvSciBufObjGetCpuPtr` needs it. A reconciled list rebuilt from a peer's export has only
    /// imported inputs, so this is false there: the importer's own lists decide.
    pub fn local_cpu_access(&self) -> bool {
        self.local_cpu_access
    }

    /// CPU mappings are cached: CPU access is needed and no list disabled caching.
    pub fn cpu_cache(&self) -> bool {
        self.cpu_cache
    }

    /// What the memory must be.
    pub fn memory(&self) -> &MemoryRequirement {
        &self.memory
    }

    /// CPU access needs explicit cache maintenance (`out.cpu_sw_cache_coherency`, NvSciBuf
    /// `CpuNeedSwCacheCoherency`): CPU mappings are cached, some accessor is not the CPU, and
    /// the platform's DMA does not snoop CPU caches (every architecture but x86, conservatively).
    /// unibuf's map guards bracket accesses with `DMA_BUF_IOCTL_SYNC` either way; this says
    /// whether code using raw pointers must too.
    pub fn cpu_sw_cache_coherency(&self) -> bool {
        self.cpu_sw_cache_coherency
    }

    /// Per GPU of `gpu_ids`: whether it caches the buffer (`out.gpu_cache`, NvSciBuf
    /// `EnableGpuCache`: AND per GPU; default cached only in the GPU's own video memory).
    pub fn gpu_cache(&self) -> &[(GpuId, bool)] {
        &self.gpu_cache
    }

    /// Per GPU of `gpu_ids`: whether the buffer is compressible for it (`out.gpu_compression`,
    /// NvSciBuf `EnableGpuCompression`): what the lists asked, none when several GPUs, a non-GPU
    /// engine or CPU access share the buffer.
    pub fn gpu_compression(&self) -> &[(GpuId, bool)] {
        &self.gpu_compression
    }

    /// The GPU whose video memory the buffer must come from (`vidmem_gpu`), if any.
    pub fn vidmem_gpu(&self) -> Option<GpuId> {
        self.memory.vidmem
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

    /// The buffer name derived from the accessors: their names joined by `+` (or `unibuf` when
    /// no list is named), cut to 31 bytes at a character boundary. Built once per list.
    pub fn derived_name(&self) -> &str {
        self.derived_name_shared()
    }

    /// [`Reconciled::derived_name`] as a shared string: allocations name their buffers with it
    /// without copying it.
    pub(crate) fn derived_name_shared(&self) -> &std::sync::Arc<str> {
        self.derived_name.get_or_init(|| {
            let names: Vec<&str> = self
                .accessors
                .iter()
                .filter_map(|a| a.name.as_deref())
                .collect();
            let joined = if names.is_empty() {
                "unibuf".to_string()
            } else {
                names.join("+")
            };
            truncate_name(&joined, 31).into()
        })
    }

    /// Checks that this reconciled list satisfies each of `lists` (for example an importer's
    /// own lists). The error names each key that fails, the list and the two values.
    pub fn validate<'a, I>(&self, lists: I) -> Result<(), Conflict>
    where
        I: IntoIterator<Item = &'a AttrList>,
    {
        self.validate_on(lists, &self.memory)
    }

    /// [`Reconciled::validate`] against memory that already exists: `memory` is what the
    /// allocated buffer gives (contiguous because it came from a CMA heap, a dma-buf, pinnable
    /// because memfd-backed), which may be more than this list required. For a late peer
    /// (NvSciBufObjAttachPeer): the buffer as allocated must satisfy its lists.
    pub fn validate_on<'a, I>(&self, lists: I, memory: &MemoryRequirement) -> Result<(), Conflict>
    where
        I: IntoIterator<Item = &'a AttrList>,
    {
        let mut items = Vec::new();
        for (i, l) in lists.into_iter().enumerate() {
            let who = label(i, l);
            for (key, v) in l.iter() {
                let got = self.get(key);
                let ok = match key.merge_policy() {
                    _ if key == Key::PhysContiguous => v != &Value::Bool(true) || memory.contiguous,
                    MergePolicy::PerList => true,
                    MergePolicy::Intersect => {
                        modifiers::satisfies(l, self.image.as_ref().map(|i| i.modifier))
                    }
                    MergePolicy::Output => false,
                    MergePolicy::Equal => match (v, got) {
                        // Per GPU: each GPU this list names has its value.
                        (Value::GpuFlags(a), Some(Value::GpuFlags(b))) => {
                            a.iter().all(|e| b.contains(e))
                        }
                        _ => got == Some(v),
                    },
                    MergePolicy::Max => match (key, v, got) {
                        (Key::RequiredPerm, Value::Permission(p), _) => self.permission >= *p,
                        (_, v, Some(g)) => {
                            merge(MergePolicy::Max, g.clone(), v).as_ref() == Some(g)
                        }
                        _ => false,
                    },
                    MergePolicy::Or => v != &Value::Bool(true) || got == Some(&Value::Bool(true)),
                    MergePolicy::And => match (v, got) {
                        // Per GPU: each GPU this list disables is disabled.
                        (Value::GpuFlags(a), Some(Value::GpuFlags(b))) => {
                            a.iter().all(|e| e.1 || b.contains(e))
                        }
                        (Value::GpuFlags(a), None) => a.iter().all(|e| e.1),
                        _ => v != &Value::Bool(false) || got == Some(&Value::Bool(false)),
                    },
                    MergePolicy::Union => match (v, got) {
                        (Value::Types(a), Some(Value::Types(b))) => a.union(*b) == *b,
                        (Value::StrList(a), Some(Value::StrList(b))) => {
                            a.iter().all(|x| b.contains(x))
                        }
                        (Value::GpuIds(a), Some(Value::GpuIds(b))) => {
                            a.iter().all(|x| b.contains(x))
                        }
                        _ => false,
                    },
                };
                if !ok {
                    let mut values = vec![(who.clone(), v.clone())];
                    let shown = if key == Key::RequiredPerm {
                        Some(Value::Permission(self.permission))
                    } else if key.merge_policy() == MergePolicy::Intersect {
                        self.image
                            .as_ref()
                            .map(|i| Value::Modifiers(vec![i.modifier].into()))
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
            if let Some(k) = kind.filter(|k| k.needs_host_memory(memory.vidmem.is_some())) {
                if !memory.pinnable {
                    items.push(ConflictItem {
                        key: Key::OutPinnable,
                        kind: ConflictKind::NotSatisfied,
                        values: vec![(who.clone(), Value::Accessor(k))],
                    });
                }
            }
            if kind.is_none_or(AccessorKind::imports_dma_buf) && !memory.device_access {
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
