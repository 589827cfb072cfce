//! Property tests of the generic attribute interface: decoding untrusted bytes never panics and
//! is canonical; lists survive the wire encoding and the JSON file form unchanged.

use proptest::prelude::*;
use unibuf::attr::file::{list_to_json, parse_json, parse_toml};
use unibuf::attr::{AttrList, Key, Value};
use unibuf::layout::PixelFormat;

fn image_list() -> impl Strategy<Value = AttrList> {
    (
        prop::sample::select(PixelFormat::ALL.to_vec()),
        1u32..5000,
        1u32..5000,
        proptest::option::of(0u32..12),
        proptest::option::of(0u32..16),
        proptest::option::of(1u64..100_000),
        proptest::option::of("[a-z][a-z0-9-]{0,20}"),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(f, w, h, pa, ba, mp, name, cpu)| {
            let mut l = AttrList::image(f, w, h).unwrap();
            if let Some(a) = pa {
                l.set_pitch_align(1 << a).unwrap();
            }
            if let Some(a) = ba {
                l.set_base_align(1 << a).unwrap();
            }
            if let Some(m) = mp {
                l.set_min_pitch(m).unwrap();
            }
            if let Some(n) = name {
                l.set_accessor_name(&n).unwrap();
            }
            if let Some(c) = cpu {
                l.set_need_cpu_access(c).unwrap();
            }
            l
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_is_total_and_canonical(idx in 0usize..Key::COUNT, bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let key = Key::ALL[idx];
        if let Ok(v) = Value::decode(key, &bytes) {
            let mut again = Vec::new();
            v.encode(&mut again);
            prop_assert_eq!(again, bytes);
            // Setting it either works or is refused; it never panics.
            let mut l = AttrList::new();
            let _ = l.set(key, v);
        }
    }

    #[test]
    fn wire_round_trip(l in image_list()) {
        let mut back = AttrList::new();
        back.set_all(l.iter().map(|(k, v)| {
            let mut b = Vec::new();
            v.encode(&mut b);
            let k2 = Key::from_code(k.code()).unwrap();
            (k2, Value::decode(k2, &b).unwrap())
        })).unwrap();
        prop_assert_eq!(back, l);
    }

    #[test]
    fn json_round_trip(l in image_list()) {
        let text = serde_json::to_string(&list_to_json(&l)).unwrap();
        prop_assert_eq!(parse_json(&text, "x.json").unwrap(), l);
    }

    #[test]
    fn toml_parser_never_panics(s in "[\\[\\]a-z_.=\" 0-9\n{},]{0,80}") {
        let _ = parse_toml(&s, "fuzz.toml");
    }
}
