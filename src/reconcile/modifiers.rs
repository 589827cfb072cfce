//! Format modifiers negotiated as sets: the intersection of every list's set and the pick.
//!
//! Each list's set is its `image.modifiers` (in its order), or `{image.modifier}`, or (both
//! given) the one modifier if the set holds it, else nothing. A `cpu` accessor that states
//! neither has `{LINEAR}`; other lists that state neither do not constrain. The rule (also in `docs/model.md`):
//!
//! 1. The **common set** is the intersection of the stated sets. `LINEAR` and `INVALID` are
//!    plain values here: neither stands for the other.
//! 2. `image.layout = pitch_linear` (or an image+tensor buffer) keeps only `LINEAR`;
//!    `image.layout = tiled` drops it.
//! 3. The **preferred list** is the stating list with the highest-priority usage
//!    (`image.modifier_usage`, or from `accessor_kind`: display → scanout, camera → video,
//!    gpu → render, cpu → cpu; scanout > video > render > sampling > cpu > none), then the
//!    smallest set (the most constrained accessor), then the canonical list order. The common
//!    set is ranked in the preferred list's order (every common modifier is in it).
//! 4. The **pick** (`out.modifier`) is the first ranked modifier whose layout unibuf can
//!    compute ([`crate::model::modifier::layout_of`]); if there is none, reconciliation fails
//!    with the reason (a backend that knows the layout would have to allocate it).
//!
//! The result depends on the lists' contents only, never on their input order.

use super::merge::label;
use super::{ConflictItem, ConflictKind};
use crate::attr::{AccessorKind, AttrList, Key, LayoutKind, Value};
use crate::model::modifier::{self, ModifierSet, ModifierUsage, LINEAR};

/// The usage that ranks a list: its `image.modifier_usage`, or the default of its kind.
pub(crate) fn usage_of(l: &AttrList) -> Option<ModifierUsage> {
    if let Some(Value::ModifierUsage(u)) = l.get(Key::ImageModifierUsage) {
        return Some(*u);
    }
    match l.accessor_kind()? {
        AccessorKind::Display => Some(ModifierUsage::Scanout),
        AccessorKind::Camera => Some(ModifierUsage::Video),
        AccessorKind::Gpu => Some(ModifierUsage::Render),
        AccessorKind::Cpu => Some(ModifierUsage::Cpu),
        AccessorKind::Vfio | AccessorKind::Device => None,
    }
}

/// The set of a CPU accessor that states none: the CPU reads and writes rows, it cannot detile.
const CPU_SET: &[u64] = &[LINEAR];

/// A list's effective set, if it states one (empty when its two keys exclude each other); a
/// `cpu` accessor that states none has `{LINEAR}`.
fn set_of(l: &AttrList) -> Option<&[u64]> {
    let set = match l.get(Key::ImageModifiers) {
        Some(Value::Modifiers(s)) => Some(s.as_slice()),
        _ => None,
    };
    let one = match l.get(Key::ImageModifier) {
        Some(Value::U64(m)) => Some(std::slice::from_ref(m)),
        _ => None,
    };
    match (set, one) {
        (Some(s), Some(o)) => Some(if s.contains(&o[0]) { o } else { &[] }),
        (None, None) if l.accessor_kind() == Some(AccessorKind::Cpu) => Some(CPU_SET),
        (s, o) => s.or(o),
    }
}

/// What a list stated, for a conflict: its `image.modifiers`, or `{image.modifier}`.
fn stated(l: &AttrList) -> Option<Value> {
    match (l.get(Key::ImageModifiers), l.get(Key::ImageModifier)) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(Value::U64(m))) => Some(Value::Modifiers(vec![*m].into())),
        _ => set_of(l).map(|s| Value::Modifiers(s.into())),
    }
}

/// Which modifiers the buffer's shape allows besides the sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// Any modifier.
    Any,
    /// `LINEAR` only (pitch-linear layout, or an image+tensor buffer); the text says why.
    LinearOnly(&'static str),
    /// Not `LINEAR` (`image.layout = tiled`).
    TiledOnly,
}

impl Shape {
    pub(super) fn of(layout: Option<LayoutKind>, tensor: bool) -> Shape {
        match (layout, tensor) {
            (_, true) => Shape::LinearOnly("an image+tensor buffer must be pitch-linear"),
            (Some(LayoutKind::PitchLinear), _) => {
                Shape::LinearOnly("image.layout = pitch_linear needs LINEAR")
            }
            (Some(LayoutKind::Tiled), _) => Shape::TiledOnly,
            (None, false) => Shape::Any,
        }
    }

    fn allows(self, m: u64) -> bool {
        match self {
            Shape::Any => true,
            Shape::LinearOnly(_) => m == LINEAR,
            Shape::TiledOnly => m != LINEAR,
        }
    }
}

/// The ranked common set and the pick; `Ok(None)` when no list states a set and the shape
/// allows `LINEAR` (the image is then linear, as before sets existed).
pub(super) fn negotiate(
    ls: &[(usize, &AttrList)],
    shape: Shape,
) -> Result<Option<(ModifierSet, u64)>, ConflictItem> {
    // The preferred list: (usage priority, set size, canonical position) smallest.
    let mut preferred: Option<(usize, &AttrList, &[u64])> = None;
    let mut best = (u8::MAX, usize::MAX);
    for (pos, (_, l)) in ls.iter().enumerate() {
        let Some(set) = set_of(l) else { continue };
        let usage = usage_of(l).map_or(u8::MAX, |u| u.code() as u8);
        if (usage, set.len()) < best {
            best = (usage, set.len());
            preferred = Some((pos, l, set));
        }
    }
    let Some((p, pl, pset)) = preferred else {
        return match shape {
            Shape::TiledOnly => Err(ConflictItem {
                key: Key::ImageLayout,
                kind: ConflictKind::Invalid(
                    "a tiled image needs image.modifiers (or image.modifier) with a non-linear \
                     modifier"
                        .into(),
                ),
                values: vec![],
            }),
            _ => Ok(None),
        };
    };
    let in_all = |m: &u64| {
        ls.iter()
            .enumerate()
            .all(|(i, (_, l))| i == p || set_of(l).is_none_or(|s| s.contains(m)))
    };
    let keep = |m: &u64| shape.allows(*m) && in_all(m);
    // The common case, every list holding the preferred set whole: share that set.
    let whole = match pl.get(Key::ImageModifiers) {
        Some(Value::Modifiers(ms)) if std::ptr::eq(ms.as_slice(), pset) => Some(ms),
        _ => None,
    };
    let ranked: ModifierSet = match whole {
        Some(ms) if pset.iter().all(keep) => ms.clone(),
        _ => pset
            .iter()
            .copied()
            .filter(keep)
            .collect::<Vec<u64>>()
            .into(),
    };
    if ranked.is_empty() {
        let common: Vec<u64> = pset.iter().copied().filter(in_all).collect();
        if common.is_empty() {
            let mut values: Vec<(String, Value)> = ls
                .iter()
                .filter_map(|(i, l)| stated(l).map(|v| (label(*i, l), v)))
                .collect();
            values.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            return Err(ConflictItem {
                key: Key::ImageModifiers,
                kind: ConflictKind::Disagree,
                values,
            });
        }
        let why = match shape {
            Shape::LinearOnly(why) => why,
            _ => "image.layout = tiled needs a non-linear modifier",
        };
        return Err(ConflictItem {
            key: Key::ImageModifiers,
            kind: ConflictKind::Invalid(format!(
                "{why}, and the common modifiers are {}",
                modifier::names(&common)
            )),
            values: vec![],
        });
    }
    match ranked.iter().find(|m| modifier::layout_of(**m).is_ok()) {
        Some(&pick) => Ok(Some((ranked, pick))),
        None => {
            let reasons: Vec<String> = ranked
                .iter()
                .filter_map(|m| modifier::layout_of(*m).err())
                .collect();
            Err(ConflictItem {
                key: Key::ImageModifiers,
                kind: ConflictKind::Invalid(format!(
                    "no common modifier has a layout unibuf can compute, and no backend here \
                     lays one out itself: {}",
                    reasons.join("; ")
                )),
                values: vec![],
            })
        }
    }
}

/// Whether a reconciled image with modifier `picked` satisfies `l`'s modifier keys.
pub(super) fn satisfies(l: &AttrList, picked: Option<u64>) -> bool {
    set_of(l).is_none_or(|s| picked.is_some_and(|m| s.contains(&m)))
}
