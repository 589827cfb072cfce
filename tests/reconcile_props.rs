//! Property tests of reconciliation: order independence, idempotence, and every reconciled
//! layout satisfies every input list.

use proptest::prelude::*;
use unibuf::attr::{AccessorKind, AttrList, Key, Padding, Permission, ScanType, Value};
use unibuf::layout::PixelFormat;
use unibuf::reconcile::{reconcile, Reconciled};

#[derive(Debug, Clone)]
struct Constraints {
    name: Option<&'static str>,
    kind: Option<AccessorKind>,
    perm: Option<Permission>,
    cpu: Option<bool>,
    pitch_align: Option<u64>,
    base_align: Option<u64>,
    height_align: Option<u64>,
    size_align: Option<u64>,
    min_pitch: Option<u64>,
    min_size: Option<u64>,
    padding: Option<Padding>,
    interlaced: Option<bool>,
    exact_pitch: Option<u64>,
}

fn pow2(max_log: u32) -> impl Strategy<Value = u64> {
    (0..=max_log).prop_map(|l| 1u64 << l)
}

fn constraints() -> impl Strategy<Value = Constraints> {
    (
        (
            proptest::option::of(prop::sample::select(vec![
                "cam", "disp", "gpu", "cpu", "vfio",
            ])),
            proptest::option::of(prop::sample::select(AccessorKind::ALL.to_vec())),
            proptest::option::of(prop::sample::select(vec![
                Permission::ReadOnly,
                Permission::ReadWrite,
            ])),
            proptest::option::of(any::<bool>()),
        ),
        (
            proptest::option::of(pow2(10)),
            proptest::option::of(pow2(16)),
            proptest::option::of(pow2(6)),
            proptest::option::of(pow2(12)),
            proptest::option::of(1u64..20_000),
            proptest::option::of(1u64..50_000_000),
            proptest::option::of((0u32..16, 0u32..16, 0u32..16, 0u32..16)),
            proptest::option::of(any::<bool>()),
        ),
        proptest::option::weighted(0.15, prop::sample::select(vec![2048u64, 4096, 7680, 8192])),
    )
        .prop_map(
            |((name, kind, perm, cpu), (pa, ba, ha, sa, mp, ms, pad, il), ep)| Constraints {
                name,
                kind,
                perm,
                cpu,
                pitch_align: pa,
                base_align: ba,
                height_align: ha,
                size_align: sa,
                min_pitch: mp,
                min_size: ms,
                padding: pad.map(|(top, bottom, left, right)| Padding {
                    top,
                    bottom,
                    left,
                    right,
                }),
                interlaced: il,
                exact_pitch: ep,
            },
        )
}

fn build(f: PixelFormat, w: u32, h: u32, c: &Constraints) -> AttrList {
    let mut l = AttrList::image(f, w, h).unwrap();
    if let Some(n) = c.name {
        l.set_accessor_name(n).unwrap();
    }
    if let Some(k) = c.kind {
        l.set_accessor_kind(k).unwrap();
    }
    if let Some(p) = c.perm {
        l.set_required_perm(p).unwrap();
    }
    if let Some(b) = c.cpu {
        l.set_need_cpu_access(b).unwrap();
    }
    if let Some(v) = c.pitch_align {
        l.set_pitch_align(v).unwrap();
    }
    if let Some(v) = c.base_align {
        l.set_base_align(v).unwrap();
    }
    if let Some(v) = c.height_align {
        l.set_height_align(v).unwrap();
    }
    if let Some(v) = c.size_align {
        l.set_size_align(v).unwrap();
    }
    if let Some(v) = c.min_pitch {
        l.set_min_pitch(v).unwrap();
    }
    if let Some(v) = c.min_size {
        l.set_min_size(v).unwrap();
    }
    if let Some(p) = c.padding {
        l.set_padding(p).unwrap();
    }
    if let Some(v) = c.exact_pitch {
        l.set_exact_pitch(v).unwrap();
    }
    if let Some(i) = c.interlaced {
        l.set_scan_type(if i {
            ScanType::Interlaced
        } else {
            ScanType::Progressive
        })
        .unwrap();
    }
    l
}

/// Lists that agree on format and size (so they reconcile unless scan types differ).
fn agreeing_lists() -> impl Strategy<Value = Vec<AttrList>> {
    (
        prop::sample::select(PixelFormat::ALL.to_vec()),
        1u32..2200,
        1u32..2200,
        prop::collection::vec(constraints(), 1..6),
    )
        .prop_map(|(f, w, h, cs)| cs.iter().map(|c| build(f, w, h, c)).collect())
}

/// Lists that may disagree on anything.
fn any_lists() -> impl Strategy<Value = Vec<AttrList>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![PixelFormat::Nv12, PixelFormat::Yuyv]),
            prop::sample::select(vec![640u32, 1920]),
            constraints(),
        )
            .prop_map(|(f, w, c)| build(f, w, 480, &c)),
        1..5,
    )
}

fn get_u64(l: &AttrList, k: Key) -> u64 {
    l.get(k).and_then(Value::as_u64).unwrap_or(1)
}

fn check_satisfies(r: &Reconciled, lists: &[AttrList]) -> Result<(), TestCaseError> {
    let img = r.image().expect("image layout");
    let planes = &img.planes;
    for l in lists {
        let pa = get_u64(l, Key::ImagePitchAlign);
        let ba = get_u64(l, Key::ImageBaseAlign);
        let ha = get_u64(l, Key::ImageHeightAlign);
        let sa = get_u64(l, Key::ImageSizeAlign);
        for p in planes {
            prop_assert_eq!(p.pitch % pa, 0, "pitch {} align {}", p.pitch, pa);
            prop_assert_eq!(p.offset % ba, 0, "offset {} align {}", p.offset, ba);
            prop_assert_eq!(p.size % sa, 0);
            prop_assert!(p.pitch * 8 >= p.width * u64::from(p.bpp), "pitch too small");
            prop_assert!(p.size >= p.pitch * p.aligned_height);
            prop_assert!(p.aligned_height * 2 >= p.height, "rows");
        }
        prop_assert_eq!(planes[0].aligned_height % ha, 0);
        prop_assert_eq!(r.alignment() % ba, 0);
        if let Some(Value::U64(mp)) = l.get(Key::ImageMinPitch) {
            prop_assert!(planes[0].pitch >= *mp);
        }
        if let Some(Value::U64(ep)) = l.get(Key::ImageExactPitch) {
            prop_assert_eq!(planes[0].pitch, *ep);
        }
        if let Some(Value::U64(ms)) = l.get(Key::ImageMinSize) {
            prop_assert!(r.size() >= *ms);
        }
        if let Some(Value::Permission(p)) = l.get(Key::RequiredPerm) {
            prop_assert!(r.permission() >= *p);
        }
    }
    let mut sorted = planes.clone();
    sorted.sort_by_key(|p| p.offset);
    for w in sorted.windows(2) {
        prop_assert!(w[0].end() <= w[1].offset, "planes overlap");
    }
    prop_assert!(r.size() >= sorted.last().unwrap().end());
    for p in planes {
        if p.second_field_offset != 0 {
            prop_assert!(p.second_field_offset > p.offset && p.second_field_offset < p.end());
        }
    }
    prop_assert!(r.validate(lists).is_ok());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn order_independent(lists in any_lists(), seed in any::<u64>()) {
        let a = reconcile(&lists);
        let mut shuffled = lists.clone();
        // Deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let b = reconcile(&shuffled);
        match (a, b) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
            (Err(x), Err(y)) => prop_assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>()),
            (x, y) => prop_assert!(false, "one order reconciled, the other not: {:?} / {:?}", x.is_ok(), y.is_ok()),
        }
    }

    #[test]
    fn reconciling_with_itself_changes_nothing(lists in agreeing_lists()) {
        if let Ok(r) = reconcile(&lists) {
            let mut twice = lists.clone();
            twice.extend(lists.iter().cloned());
            prop_assert_eq!(&reconcile(&twice).unwrap(), &r);
            // Reconciling the reconciled list's inputs again gives the same list.
            prop_assert_eq!(&reconcile(r.inputs()).unwrap(), &r);
            // Each single list reconciled with itself is unchanged too.
            for l in &lists {
                prop_assert_eq!(reconcile([l, l]).unwrap(), reconcile([l]).unwrap());
            }
        }
    }

    #[test]
    fn layout_satisfies_every_input(lists in agreeing_lists()) {
        match reconcile(&lists) {
            Ok(r) => check_satisfies(&r, &lists)?,
            Err(c) => {
                // Only scan types and exact pitches may fail among these lists.
                prop_assert!(
                    c.keys().all(|k| k == Key::ImageScanType || k == Key::ImageExactPitch),
                    "{}",
                    c
                );
            }
        }
    }

    #[test]
    fn tensor_strides_respect_alignment(
        sizes in prop::collection::vec(1u64..64, 1..=8),
        aligns in prop::collection::vec(pow2(8), 8),
    ) {
        let n = sizes.len();
        let mut l = AttrList::tensor(unibuf::attr::DataType::Float32, &sizes).unwrap();
        l.set_tensor_align_per_dim(&aligns[..n]).unwrap();
        // The strides as the rule defines them, in u128: above the layout's 2^52-byte bound the
        // list must be refused as too large (the generator can reach 2^58), not reconciled.
        let mut stride = 4u128.next_multiple_of(aligns[n - 1] as u128);
        for i in (0..n - 1).rev() {
            stride = (sizes[i + 1] as u128 * stride).next_multiple_of(aligns[i] as u128);
        }
        if sizes[0] as u128 * stride > 1u128 << 52 {
            let c = reconcile([&l]).unwrap_err();
            prop_assert!(c.keys().any(|k| k == Key::OutSize), "{}", c);
            return Ok(());
        }
        let r = reconcile([&l]).unwrap();
        let t = r.tensor().unwrap();
        for i in 0..n {
            prop_assert_eq!(t.strides[i] % aligns[i], 0);
            if i + 1 < n {
                prop_assert!(t.strides[i] >= sizes[i + 1] * t.strides[i + 1]);
            }
        }
        prop_assert!(t.strides[n - 1] >= 4);
        prop_assert_eq!(r.size(), sizes[0] * t.strides[0]);
    }
}
