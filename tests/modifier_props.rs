//! Property tests of modifier-set negotiation: the result does not depend on the input order,
//! the pick belongs to every list's set, and an empty intersection is a conflict that names
//! every accessor with its set.

use proptest::prelude::*;
use unibuf::attr::{AccessorKind, AttrList, Key, ModifierUsage, Value};
use unibuf::layout::modifier::{self, nvidia_block_linear_2d as bl, INVALID, LINEAR};
use unibuf::layout::PixelFormat;
use unibuf::reconcile::{reconcile, ConflictKind};

/// A small pool, so that intersections are often but not always empty: LINEAR, INVALID, four
/// block-linear heights, a compressed block-linear (no layout), an AMD modifier (no layout).
fn pool() -> Vec<u64> {
    vec![
        LINEAR,
        INVALID,
        bl(0, 1, 2, 0x06, 0),
        bl(0, 1, 2, 0x06, 2),
        bl(0, 1, 2, 0x06, 4),
        bl(0, 1, 2, 0x06, 5),
        bl(1, 1, 2, 0x06, 4),
        0x0200_0000_0000_0001,
    ]
}

#[derive(Debug, Clone)]
struct Spec {
    kind: Option<AccessorKind>,
    usage: Option<ModifierUsage>,
    /// None: the list states no set.
    set: Option<Vec<u64>>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::option::of(prop::sample::select(AccessorKind::ALL.to_vec())),
        proptest::option::of(prop::sample::select(ModifierUsage::ALL.to_vec())),
        proptest::option::weighted(0.9, prop::sample::subsequence(pool(), 1..=8).prop_shuffle()),
    )
        .prop_map(|(kind, usage, set)| Spec { kind, usage, set })
}

fn build(i: usize, s: &Spec) -> AttrList {
    let mut l = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    l.set_accessor_name(&format!("acc{i}")).unwrap();
    if let Some(k) = s.kind {
        l.set_accessor_kind(k).unwrap();
    }
    if let Some(u) = s.usage {
        l.set_image_modifier_usage(u).unwrap();
    }
    if let Some(set) = &s.set {
        l.set_image_modifiers(set.clone()).unwrap();
    }
    l
}

/// The set a list is held to: its own, or `{LINEAR}` for a CPU accessor that states none.
fn effective(s: &Spec) -> Option<Vec<u64>> {
    match (&s.set, s.kind) {
        (Some(set), _) => Some(set.clone()),
        (None, Some(AccessorKind::Cpu)) => Some(vec![LINEAR]),
        (None, _) => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn negotiation_is_order_independent_and_sound(
        specs in prop::collection::vec(spec(), 1..7),
        perm in any::<prop::sample::Index>(),
    ) {
        let lists: Vec<AttrList> = specs.iter().enumerate().map(|(i, s)| build(i, s)).collect();
        // A permutation: rotate by a random amount and reverse.
        let k = perm.index(lists.len());
        let mut shuffled: Vec<&AttrList> = lists.iter().collect();
        shuffled.rotate_left(k);
        shuffled.reverse();

        let a = reconcile(&lists);
        let b = reconcile(shuffled.iter().copied());
        match (&a, &b) {
            (Ok(x), Ok(y)) => {
                prop_assert_eq!(x.image(), y.image());
                prop_assert_eq!(x.get(Key::ImageModifiers), y.get(Key::ImageModifiers));
                prop_assert_eq!(x.get(Key::OutModifier), y.get(Key::OutModifier));
            }
            (Err(x), Err(y)) => prop_assert_eq!(x, y),
            _ => prop_assert!(false, "one order reconciled, the other did not: {:?} / {:?}", a.is_ok(), b.is_ok()),
        }

        let sets: Vec<(usize, Vec<u64>)> = specs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| effective(s).map(|e| (i, e)))
            .collect();
        let common: Vec<u64> = pool()
            .into_iter()
            .filter(|m| sets.iter().all(|(_, s)| s.contains(m)))
            .collect();
        match &a {
            Ok(r) => {
                let pick = r.image().unwrap().modifier;
                // The pick belongs to every set, and unibuf can lay it out.
                for (i, s) in &sets {
                    prop_assert!(s.contains(&pick), "pick {} not in acc{}'s {}", modifier::name(pick), i, modifier::names(s));
                }
                prop_assert!(modifier::layout_of(pick).is_ok());
                prop_assert_eq!(r.get(Key::OutModifier), Some(&Value::U64(pick)));
                if sets.is_empty() {
                    prop_assert_eq!(pick, LINEAR);
                }
                // Every list is satisfied by the result.
                prop_assert!(r.validate(&lists).is_ok());
            }
            Err(c) => {
                let item = c.items().iter().find(|i| i.key == Key::ImageModifiers);
                prop_assert!(item.is_some(), "a conflict without image.modifiers: {}", c);
                let item = item.unwrap();
                if common.is_empty() {
                    // An empty intersection names every accessor with its set.
                    prop_assert_eq!(&item.kind, &ConflictKind::Disagree);
                    prop_assert_eq!(item.values.len(), sets.len());
                    for (i, s) in &sets {
                        let want = (format!("acc{i}"), Value::Modifiers(s.clone().into()));
                        prop_assert!(item.values.contains(&want), "{} lacks acc{}", c, i);
                    }
                } else {
                    // A common set exists but unibuf can lay none of it out.
                    prop_assert!(common.iter().all(|m| modifier::layout_of(*m).is_err()), "{}", c);
                    prop_assert!(matches!(item.kind, ConflictKind::Invalid(_)));
                }
            }
        }
    }
}
