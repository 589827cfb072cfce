//! Set-once semantics, validation of every key, typed setters, wire codes and encoding.

use unibuf::attr::{
    AccessorKind, AttrError, AttrList, AttrRead, BackendKind, BufferType, BufferTypes, ColorStd,
    DataType, GpuId, Key, KeyGroup, LayoutKind, Padding, Permission, ScanType, Value, ValueKind,
};
use unibuf::layout::{fourcc, PixelFormat};

fn image() -> AttrList {
    AttrList::image(PixelFormat::Nv12, 640, 480).unwrap()
}

/// Asserts that `f` fails with an error matching `pred` and leaves `list` unchanged.
fn refused(
    list: &mut AttrList,
    f: impl FnOnce(&mut AttrList) -> Result<(), AttrError>,
    pred: impl Fn(&AttrError) -> bool,
) {
    let before = list.clone();
    let e = f(list).expect_err("set must be refused");
    assert!(pred(&e), "unexpected error {e:?}");
    assert_eq!(*list, before, "list changed by a refused set");
}

#[test]
fn output_key_is_refused() {
    let mut l = image();
    for &k in Key::ALL.iter().filter(|k| k.is_output()) {
        let v = match k.value_kind() {
            ValueKind::U64 => Value::U64(1),
            ValueKind::U32 => Value::U32(1),
            ValueKind::Bool => Value::Bool(true),
            ValueKind::Permission => Value::Permission(Permission::ReadOnly),
            ValueKind::StrList => Value::StrList(vec![]),
            _ => Value::U64List(vec![1]),
        };
        refused(&mut l, |l| l.set(k, v), |e| *e == AttrError::OutputKey(k));
    }
}

#[test]
fn key_of_another_type_is_refused() {
    let mut l = image();
    refused(
        &mut l,
        |l| l.set_raw_size(10).map(|_| ()),
        |e| {
            matches!(
                e,
                AttrError::WrongBufferType {
                    key: Key::RawSize,
                    ..
                }
            )
        },
    );
    refused(
        &mut l,
        |l| l.set(Key::TensorNumDims, Value::U32(2)),
        |e| {
            matches!(
                e,
                AttrError::WrongBufferType {
                    key: Key::TensorNumDims,
                    ..
                }
            )
        },
    );
    refused(
        &mut l,
        |l| l.set(Key::PyramidLevels, Value::U32(2)),
        |e| {
            matches!(
                e,
                AttrError::WrongBufferType {
                    key: Key::PyramidLevels,
                    ..
                }
            )
        },
    );
    // Without types, no type key can be set.
    let mut empty = AttrList::new();
    refused(
        &mut empty,
        |l| l.set(Key::ImageWidth, Value::U32(2)),
        |e| matches!(e, AttrError::WrongBufferType { types, .. } if types.is_empty()),
    );
    // A pyramid takes image keys.
    let mut p = AttrList::with_types(&[BufferType::ImagePyramid]).unwrap();
    p.set_image_format(PixelFormat::Grey).unwrap();
    p.set(Key::PyramidScale, Value::F64(0.5)).unwrap();
}

#[test]
fn key_twice_is_refused() {
    let mut l = image();
    refused(
        &mut l,
        |l| l.set_image_format(PixelFormat::Nv12).map(|_| ()),
        |e| *e == AttrError::AlreadySet(Key::ImageFormat),
    );
    refused(
        &mut l,
        |l| l.set_types(&[BufferType::Image]).map(|_| ()),
        |e| *e == AttrError::AlreadySet(Key::Types),
    );
    // set_image_size is all-or-nothing: width is free but height is taken.
    let mut l = AttrList::with_types(&[BufferType::Image]).unwrap();
    l.set(Key::ImageHeight, Value::U32(4)).unwrap();
    refused(
        &mut l,
        |l| l.set_image_size(8, 8).map(|_| ()),
        |e| *e == AttrError::AlreadySet(Key::ImageHeight),
    );
    assert_eq!(l.get(Key::ImageWidth), None);
}

#[test]
fn wrong_value_kind_is_refused() {
    let mut l = image();
    refused(
        &mut l,
        |l| l.set(Key::ImagePitchAlign, Value::U32(64)),
        |e| {
            matches!(
                e,
                AttrError::WrongValueKind {
                    key: Key::ImagePitchAlign,
                    expected: ValueKind::U64,
                    got: ValueKind::U32
                }
            )
        },
    );
}

#[test]
fn invalid_values_are_refused() {
    let mut raw = AttrList::with_types(&[BufferType::RawBuffer]).unwrap();
    refused(
        &mut raw,
        |l| l.set_raw_size(0).map(|_| ()),
        |e| *e == AttrError::Zero(Key::RawSize),
    );
    refused(
        &mut raw,
        |l| l.set_raw_align(48).map(|_| ()),
        |e| {
            *e == AttrError::NotPowerOfTwo {
                key: Key::RawAlign,
                value: 48,
            }
        },
    );
    refused(
        &mut raw,
        |l| l.set_raw_align(0).map(|_| ()),
        |e| *e == AttrError::Zero(Key::RawAlign),
    );

    let mut img = AttrList::with_types(&[BufferType::Image]).unwrap();
    refused(
        &mut img,
        |l| l.set_image_size(0, 480).map(|_| ()),
        |e| *e == AttrError::Zero(Key::ImageWidth),
    );
    for k in [
        Key::ImagePitchAlign,
        Key::ImageBaseAlign,
        Key::ImageHeightAlign,
        Key::ImageSizeAlign,
    ] {
        refused(
            &mut img,
            |l| l.set(k, Value::U64(3)),
            |e| *e == AttrError::NotPowerOfTwo { key: k, value: 3 },
        );
    }
    refused(
        &mut img,
        |l| l.set_image_drm_fourcc(fourcc(b"NV13")).map(|_| ()),
        |e| matches!(e, AttrError::UnknownFormat(_)),
    );
    refused(
        &mut img,
        |l| l.set_image_v4l2_fourcc(fourcc(b"ZZZZ")).map(|_| ()),
        |e| matches!(e, AttrError::UnknownFormat(_)),
    );
    refused(
        &mut img,
        |l| {
            l.set_padding(Padding {
                top: 100_000,
                ..Padding::default()
            })
            .map(|_| ())
        },
        |e| {
            matches!(
                e,
                AttrError::Invalid {
                    key: Key::ImagePadding,
                    ..
                }
            )
        },
    );
    img.set_image_v4l2_fourcc(fourcc(b"YU12")).unwrap();
    assert_eq!(
        img.get(Key::ImageFormat),
        Some(&Value::Format(PixelFormat::Yuv420))
    );

    let mut t = AttrList::with_types(&[BufferType::Tensor]).unwrap();
    refused(
        &mut t,
        |l| l.set(Key::TensorNumDims, Value::U32(9)),
        |e| {
            *e == AttrError::TooManyDims {
                key: Key::TensorNumDims,
                value: 9,
            }
        },
    );
    refused(
        &mut t,
        |l| l.set(Key::TensorNumDims, Value::U32(0)),
        |e| *e == AttrError::Zero(Key::TensorNumDims),
    );
    refused(
        &mut t,
        |l| l.set_tensor(DataType::Uint8, &[1; 9]).map(|_| ()),
        |e| matches!(e, AttrError::TooManyDims { .. }),
    );
    assert!(
        t.is_empty() || t.len() == 1,
        "set_tensor must be all-or-nothing"
    );
    refused(
        &mut t,
        |l| l.set(Key::TensorSizes, Value::U64List(vec![2, 0])),
        |e| *e == AttrError::Zero(Key::TensorSizes),
    );
    refused(
        &mut t,
        |l| l.set_tensor_align_per_dim(&[1, 6]).map(|_| ()),
        |e| {
            *e == AttrError::NotPowerOfTwo {
                key: Key::TensorAlignPerDim,
                value: 6,
            }
        },
    );

    let mut p = AttrList::with_types(&[BufferType::ImagePyramid]).unwrap();
    for s in [0.0, -0.5, 1.5, f64::NAN] {
        refused(
            &mut p,
            |l| l.set(Key::PyramidScale, Value::F64(s)),
            |e| {
                matches!(
                    e,
                    AttrError::ScaleOutOfRange {
                        key: Key::PyramidScale,
                        ..
                    }
                )
            },
        );
    }
    p.set(Key::PyramidScale, Value::F64(1.0)).unwrap();
    refused(
        &mut p,
        |l| l.set(Key::PyramidLevels, Value::U32(11)),
        |e| {
            matches!(
                e,
                AttrError::Invalid {
                    key: Key::PyramidLevels,
                    ..
                }
            )
        },
    );

    let mut g = AttrList::new();
    refused(
        &mut g,
        |l| l.set_types(&[]).map(|_| ()),
        |e| {
            matches!(
                e,
                AttrError::Invalid {
                    key: Key::Types,
                    ..
                }
            )
        },
    );
    refused(
        &mut g,
        |l| {
            l.set_types(&[BufferType::RawBuffer, BufferType::Image])
                .map(|_| ())
        },
        |e| {
            matches!(
                e,
                AttrError::Invalid {
                    key: Key::Types,
                    ..
                }
            )
        },
    );
    refused(
        &mut g,
        |l| l.set_accessor_name("").map(|_| ()),
        |e| {
            matches!(
                e,
                AttrError::Invalid {
                    key: Key::AccessorName,
                    ..
                }
            )
        },
    );
    refused(
        &mut g,
        |l| l.set_accessor_name(&"x".repeat(65)).map(|_| ()),
        |e| matches!(e, AttrError::Invalid { .. }),
    );
    refused(
        &mut g,
        |l| l.set_accessor_name("a\nb").map(|_| ()),
        |e| matches!(e, AttrError::Invalid { .. }),
    );
    g.set_types(&[BufferType::Image, BufferType::Tensor])
        .unwrap();
}

#[test]
fn typed_setters_and_generic_view_agree() {
    let mut l = image();
    l.set_need_cpu_access(true)
        .unwrap()
        .set_required_perm(Permission::ReadOnly)
        .unwrap()
        .set_enable_cpu_cache(false)
        .unwrap()
        .set_gpu_ids(&[GpuId([2; 16]), GpuId([1; 16]), GpuId([2; 16])])
        .unwrap()
        .set_contiguous(true)
        .unwrap()
        .set_accessor_name("cam")
        .unwrap()
        .set_accessor_kind(AccessorKind::Camera)
        .unwrap()
        .set_preferred_backend(BackendKind::CmaHeap)
        .unwrap()
        .set_image_layout(LayoutKind::PitchLinear)
        .unwrap()
        .set_image_modifier(0)
        .unwrap()
        .set_color_std(ColorStd::Bt601)
        .unwrap()
        .set_scan_type(ScanType::Interlaced)
        .unwrap()
        .set_pitch_align(64)
        .unwrap()
        .set_base_align(4096)
        .unwrap()
        .set_height_align(16)
        .unwrap()
        .set_size_align(4096)
        .unwrap()
        .set_min_pitch(1024)
        .unwrap()
        .set_min_size(1 << 20)
        .unwrap();
    assert_eq!(
        l.get(Key::GpuIds),
        Some(&Value::GpuIds(vec![GpuId([1; 16]), GpuId([2; 16])]))
    );
    assert_eq!(l.get(Key::NeedCpuAccess), Some(&Value::Bool(true)));
    assert_eq!(l.accessor_name(), Some("cam"));
    assert_eq!(l.types(), BufferTypes::of(&[BufferType::Image]));
    let keys: Vec<Key> = l.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), l.len());
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "iter is in key order");
    // Rebuilding through the generic interface gives the same list.
    let mut g = AttrList::new();
    g.set_all(l.iter().map(|(k, v)| (k, v.clone()))).unwrap();
    assert_eq!(g, l);
    assert!(!l.is_reconciled());
    assert_eq!(l.get_in(0, Key::ImageWidth), Some(Value::U32(640)));
    assert_eq!(l.get_in(1, Key::ImageWidth), None);
}

#[test]
fn constructors() {
    assert_eq!(
        AttrList::raw(10).unwrap().get(Key::RawSize),
        Some(&Value::U64(10))
    );
    let t = AttrList::tensor(DataType::Float16, &[2, 3]).unwrap();
    assert_eq!(t.get(Key::TensorNumDims), Some(&Value::U32(2)));
    let a = AttrList::array(DataType::Int32, 16, 100).unwrap();
    assert_eq!(a.get(Key::ArrayCapacity), Some(&Value::U64(100)));
    let p = AttrList::pyramid(PixelFormat::Nv12, 64, 64, 3, 0.5).unwrap();
    assert_eq!(p.get(Key::PyramidLevels), Some(&Value::U32(3)));
    assert!(AttrList::pyramid(PixelFormat::Nv12, 64, 64, 3, 2.0).is_err());
}

#[test]
fn multi_list_append() {
    let a = image();
    let b = AttrList::raw(5).unwrap();
    let m = AttrList::append([&a, &b]);
    assert_eq!(m.len(), 2);
    assert_eq!(m.get(1, Key::RawSize), Some(&Value::U64(5)));
    assert_eq!(m.get(0, Key::RawSize), None);
    assert_eq!(m.get(2, Key::RawSize), None);
    assert_eq!(m.iter().count(), a.len() + b.len());
    let mm = m.append(&m);
    assert_eq!(mm.slot_count(), 4);
    assert!(!mm.is_reconciled());
}

#[test]
fn every_key_has_a_group_matching_its_section() {
    for &k in Key::ALL {
        let sec = k.group().section();
        if !k.is_output() {
            if sec.is_empty() {
                assert!(!k.name().contains('.'), "{k}");
            } else {
                assert_eq!(k.name().split('.').next(), Some(sec), "{k}");
            }
        }
        if k.group() == KeyGroup::General && !k.is_output() {
            assert!(BufferTypes::EMPTY.allows(k.group()));
        }
    }
}

#[test]
fn values_encode_and_decode() {
    let cases = vec![
        (
            Key::Types,
            Value::Types(BufferTypes::of(&[BufferType::Image, BufferType::Tensor])),
        ),
        (Key::NeedCpuAccess, Value::Bool(true)),
        (Key::RequiredPerm, Value::Permission(Permission::ReadOnly)),
        (
            Key::GpuIds,
            Value::GpuIds(vec![GpuId([1; 16]), GpuId([0xab; 16])]),
        ),
        (Key::VidMemGpu, Value::Gpu(GpuId([7; 16]))),
        (
            Key::GpuCache,
            Value::GpuFlags(vec![(GpuId([1; 16]), false), (GpuId([2; 16]), true)]),
        ),
        (Key::AccessorName, Value::Str("camera".into())),
        (Key::AccessorKind, Value::Accessor(AccessorKind::Vfio)),
        (Key::PreferredBackend, Value::Backend(BackendKind::Udmabuf)),
        (Key::ImageFormat, Value::Format(PixelFormat::Srggb16)),
        (Key::ImageFormat, Value::Format(PixelFormat::Rgb565)),
        (Key::ImageWidth, Value::U32(1920)),
        (Key::ImageModifier, Value::U64(0x0300_0000_0000_0014)),
        (Key::ImageLayout, Value::Layout(LayoutKind::Tiled)),
        (Key::ImageColorStd, Value::ColorStd(ColorStd::Bt2020)),
        (Key::ImageScanType, Value::Scan(ScanType::Interlaced)),
        (
            Key::ImagePadding,
            Value::Padding(Padding {
                top: 1,
                bottom: 2,
                left: 3,
                right: 4,
            }),
        ),
        (Key::TensorSizes, Value::U64List(vec![1, 2, 3])),
        (Key::TensorDataType, Value::DataType(DataType::Float16)),
        (Key::PyramidScale, Value::F64(0.75)),
    ];
    for (k, v) in cases {
        let mut buf = Vec::new();
        v.encode(&mut buf);
        assert_eq!(Value::decode(k, &buf), Ok(v.clone()), "{k}");
        // Truncated or extended input is refused, never panics.
        if !buf.is_empty() && !matches!(v, Value::Str(_) | Value::StrList(_) | Value::U64List(_)) {
            assert!(Value::decode(k, &buf[..buf.len() - 1]).is_err(), "{k}");
            let mut longer = buf.clone();
            longer.push(0);
            assert!(Value::decode(k, &longer).is_err(), "{k}");
        }
    }
    assert!(matches!(
        Value::decode(Key::NeedCpuAccess, &[2]),
        Err(AttrError::Decode { .. })
    ));
    assert!(matches!(
        Value::decode(Key::ImageFormat, &fourcc(b"NV13").to_le_bytes()),
        Err(AttrError::UnknownFormat(_))
    ));
    assert!(Value::decode(Key::AccessorName, &[0xff, 0xfe]).is_err());
    assert!(Value::decode(Key::GpuIds, &[5, 0, b'a']).is_err());
    assert!(Value::decode(Key::GpuIds, &[0; 17]).is_err());
    assert!(Value::decode(Key::VidMemGpu, &[0; 15]).is_err());
    assert!(Value::decode(Key::GpuCache, &[0; 16]).is_err());
    let mut bad_flag = vec![0; 17];
    bad_flag[16] = 2;
    assert!(Value::decode(Key::GpuCache, &bad_flag).is_err());
    assert!(Value::decode(Key::TensorSizes, &[0; 7]).is_err());
    assert!(Value::decode(Key::TensorSizes, &[0; 8 * 17]).is_err());
    assert!(Value::decode(Key::Types, &[0x80]).is_err());
}

#[test]
fn lookup_by_code() {
    for &k in Key::ALL {
        assert_eq!(Key::from_code(k.code()), Some(k));
    }
    assert_eq!(Key::from_code(0), None);
    assert_eq!(Key::from_code(0xffff), None);
}
