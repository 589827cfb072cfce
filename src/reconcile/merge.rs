//! The merge step: canonical order of lists and the merge policies of each key.

use crate::attr::{AttrList, GpuId, Key, MergePolicy, Value};
use std::cmp::Ordering;

/// Total order of lists, used to make reconciliation independent of input order.
pub(super) fn cmp_lists(a: &AttrList, b: &AttrList) -> Ordering {
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

pub(super) fn label(i: usize, l: &AttrList) -> String {
    match l.accessor_name() {
        Some(n) => n.to_string(),
        None => format!("list #{}", i + 1),
    }
}

pub(super) fn values_of(ls: &[(usize, &AttrList)], key: Key) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = ls
        .iter()
        .filter_map(|(i, l)| l.get(key).map(|v| (label(*i, l), v.clone())))
        .collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Merges `b` into `a` under `policy`; `None` if they cannot be merged.
pub(super) fn merge(policy: MergePolicy, a: Value, b: &Value) -> Option<Value> {
    use Value as V;
    match policy {
        // Per-GPU values: equal for each GPU several lists name, union of the GPUs.
        MergePolicy::Equal => match (a, b) {
            (V::GpuFlags(x), V::GpuFlags(y)) => per_gpu(x, y, |p, q| (p == q).then_some(p)),
            (a, b) => (a == *b).then_some(a),
        },
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
            (V::GpuFlags(x), V::GpuFlags(y)) => per_gpu(x, y, |p, q| Some(p && q)),
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
            (V::GpuIds(mut x), V::GpuIds(y)) => {
                x.extend(y.iter().copied());
                x.sort();
                x.dedup();
                Some(V::GpuIds(x))
            }
            _ => None,
        },
        MergePolicy::PerList | MergePolicy::Output | MergePolicy::Intersect => None,
    }
}

/// Merges two per-GPU lists (each sorted, one entry per GPU): GPUs of either, `f` for a GPU in
/// both (`None`: they cannot be merged).
fn per_gpu(
    x: Vec<(GpuId, bool)>,
    y: &[(GpuId, bool)],
    f: impl Fn(bool, bool) -> Option<bool>,
) -> Option<Value> {
    let mut out = x;
    for &(g, v) in y {
        match out.binary_search_by(|(h, _)| h.cmp(&g)) {
            Ok(i) => out[i].1 = f(out[i].1, v)?,
            Err(i) => out.insert(i, (g, v)),
        }
    }
    Some(Value::GpuFlags(out))
}
