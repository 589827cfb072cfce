//! Dumps of reconciled lists: the JSON form (`unibuf reconcile --json`) and a readable report.
//!
//! They live with reconciliation, not with the list files ([`crate::attr::file`]), so that the
//! attribute model does not import the reconciler.

use super::{Conflict, ConflictKind, Reconciled};
use crate::attr::file::{list_to_json, pairs_to_json, value_to_json};
use crate::layout::format::describe_code;
use serde_json::{json, Value as Json};
use std::fmt::Write as _;

/// The JSON form of a reconciled list: `{"reconciled": true, "inputs": [...], "merged":
/// {...}, "outputs": {...}}`.
pub fn reconciled_to_json(r: &Reconciled) -> Json {
    json!({
        "reconciled": true,
        "inputs": r.inputs().iter().map(list_to_json).collect::<Vec<_>>(),
        "merged": pairs_to_json(r.iter().filter(|(k, _)| !k.is_output())),
        "outputs": pairs_to_json(r.iter_outputs()),
    })
}

/// The JSON form of a conflict: `{"reconciled": false, "heading": "cannot reconcile",
/// "conflicts": [{"key", "kind", "reason"?, "values": [{"accessor", "value"}]}]}`, with `kind`
/// one of `disagree`, `missing`, `invalid`, `not_satisfied`, `no_lists` and the values in
/// the form the list files use.
pub fn conflict_to_json(c: &Conflict) -> Json {
    let items: Vec<Json> = c
        .items()
        .iter()
        .map(|i| {
            let (kind, reason) = match &i.kind {
                ConflictKind::Disagree => ("disagree", None),
                ConflictKind::Missing => ("missing", None),
                ConflictKind::Invalid(why) => ("invalid", Some(why.as_str())),
                ConflictKind::NotSatisfied => ("not_satisfied", None),
                ConflictKind::NoLists => ("no_lists", None),
            };
            let values: Vec<Json> = i
                .values
                .iter()
                .map(|(who, v)| json!({"accessor": who, "value": value_to_json(i.key, v)}))
                .collect();
            let mut j = json!({"key": i.key.name(), "kind": kind, "values": values});
            if let Some(r) = reason {
                j["reason"] = json!(r);
            }
            j
        })
        .collect();
    json!({"reconciled": false, "heading": c.heading(), "conflicts": items})
}

/// A readable report of a reconciled list: accessors, size, permission, memory, layouts,
/// the DRM/V4L2 views of the image, and every key.
pub fn reconciled_to_text(r: &Reconciled) -> String {
    let mut s = String::new();
    let acc: Vec<String> = r
        .accessors()
        .iter()
        .map(|a| {
            let n = a.name.clone().unwrap_or_else(|| "(unnamed)".to_string());
            match a.kind {
                Some(k) => format!("{n} ({k})"),
                None => n,
            }
        })
        .collect();
    let _ = writeln!(
        s,
        "reconciled {} list(s): {}",
        r.inputs().len(),
        acc.join(", ")
    );
    let _ = writeln!(s, "types: {}", r.types());
    let _ = writeln!(s, "size: {} bytes, alignment {}", r.size(), r.alignment());
    let _ = writeln!(
        s,
        "permission: {}; cpu access: {}; cpu cache: {}; cpu sw cache coherency: {}",
        r.permission(),
        r.need_cpu_access(),
        r.cpu_cache(),
        r.cpu_sw_cache_coherency()
    );
    for ((g, cache), (_, comp)) in r.gpu_cache().iter().zip(r.gpu_compression()) {
        let _ = writeln!(
            s,
            "gpu {g}: cache {cache}, compression {comp}{}",
            if r.vidmem_gpu() == Some(*g) {
                ", video memory"
            } else {
                ""
            }
        );
    }
    let m = r.memory();
    let _ = writeln!(
        s,
        "memory: contiguous {}, pinnable {}, device access {}, preferred backend {}",
        m.contiguous,
        m.pinnable,
        m.device_access,
        m.preferred.map_or("none".to_string(), |b| b.to_string())
    );
    if let Some(img) = r.image() {
        let _ = writeln!(
            s,
            "image: {} {}x{} {}, modifier {:#x}",
            img.format, img.width, img.height, img.scan, img.modifier
        );
        for (i, p) in img.planes.iter().enumerate() {
            let _ = writeln!(
                s,
                "  plane {i}: offset {} pitch {} aligned height {} size {} bpp {} channels {}{}",
                p.offset,
                p.pitch,
                p.aligned_height,
                p.size,
                p.bpp,
                p.channels,
                if p.second_field_offset != 0 {
                    format!(" second field at {}", p.second_field_offset)
                } else {
                    String::new()
                }
            );
        }
        if let Some(fb) = img.drm_framebuffer() {
            let n = fb.plane_count;
            let _ = writeln!(
                s,
                "  DRM ADDFB2: fourcc {} modifier {:#x} pitches {:?} offsets {:?}",
                describe_code(fb.fourcc),
                fb.modifier,
                &fb.pitches[..n],
                &fb.offsets[..n]
            );
        }
        match img.v4l2_format() {
            Some(v) => {
                let _ = writeln!(
                    s,
                    "  V4L2: pixelformat {} bytesperline {} sizeimage {}",
                    describe_code(v.pixelformat),
                    v.bytesperline,
                    v.sizeimage
                );
            }
            None => {
                let _ = writeln!(s, "  V4L2: single-planar format cannot express this layout");
            }
        }
    }
    if let Some(t) = r.tensor() {
        let _ = writeln!(
            s,
            "tensor: {} sizes {:?} strides {:?} size {}",
            t.data_type, t.sizes, t.strides, t.size
        );
    }
    if let Some(a) = r.array() {
        let _ = writeln!(
            s,
            "array: {} stride {} capacity {} size {}",
            a.data_type, a.stride, a.capacity, a.size
        );
    }
    if let Some(py) = r.pyramid() {
        for (i, l) in py.levels.iter().enumerate() {
            let _ = writeln!(
                s,
                "  level {i}: {}x{} offset {} size {}",
                l.image.width, l.image.height, l.offset, l.size
            );
        }
    }
    // What a backend is asked to allocate (`AllocRequest::from_reconciled(r, None)`).
    let _ = writeln!(
        s,
        "alloc request: name {:?} size {} alignment {}",
        r.derived_name(),
        r.size(),
        r.alignment()
    );
    let _ = writeln!(s, "keys:");
    for (k, v) in r.iter() {
        let _ = writeln!(s, "  {k} = {v}");
    }
    s
}
