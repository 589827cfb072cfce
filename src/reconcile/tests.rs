use super::*;
use crate::attr::{BackendKind, LayoutKind, Padding};

fn camera() -> AttrList {
    let mut l = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    l.set_accessor_name("camera")
        .unwrap()
        .set_accessor_kind(AccessorKind::Camera)
        .unwrap()
        .set_pitch_align(64)
        .unwrap()
        .set_required_perm(Permission::ReadWrite)
        .unwrap();
    l
}

fn display() -> AttrList {
    let mut l = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    l.set_accessor_name("display")
        .unwrap()
        .set_accessor_kind(AccessorKind::Display)
        .unwrap()
        .set_pitch_align(256)
        .unwrap()
        .set_base_align(4096)
        .unwrap()
        .set_required_perm(Permission::ReadOnly)
        .unwrap();
    l
}

#[test]
fn camera_display_nv12() {
    let r = reconcile([&camera(), &display()]).unwrap();
    let img = r.image().unwrap();
    // 1920 rounded up to the display's 256: 2048 on both planes.
    assert_eq!(img.planes[0].pitch, 2048);
    assert_eq!(img.planes[1].pitch, 2048);
    assert_eq!(img.planes[1].offset, 2048 * 1080);
    assert_eq!(r.size(), 2048 * 1080 * 3 / 2);
    assert_eq!(r.alignment(), 4096);
    assert_eq!(r.permission(), Permission::ReadWrite);
    assert!(r.memory().device_access);
    assert!(!r.memory().pinnable);
    assert_eq!(r.derived_name(), "camera+display");
    assert_eq!(
        r.get(Key::OutPlanePitch),
        Some(&Value::U64List(vec![2048, 2048]))
    );
    assert!(r.validate([&camera(), &display()]).is_ok());
}

#[test]
fn order_independent_and_idempotent() {
    let a = reconcile([&camera(), &display()]).unwrap();
    let b = reconcile([&display(), &camera()]).unwrap();
    assert_eq!(a, b);
    let c = reconcile([&camera(), &display(), &camera()]).unwrap();
    assert_eq!(a, c);
}

#[test]
fn conflict_names_key_accessors_values() {
    let mut d = AttrList::image(PixelFormat::Xrgb8888, 1920, 1080).unwrap();
    d.set_accessor_name("display").unwrap();
    let e = reconcile([&camera(), &d]).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::ImageFormat]);
    let s = e.to_string();
    assert!(s.contains("image.format"), "{s}");
    assert!(s.contains("camera = NV12"), "{s}");
    assert!(s.contains("display = XRGB8888"), "{s}");
}

#[test]
fn every_conflicting_key_is_reported() {
    let mut a = AttrList::image(PixelFormat::Nv12, 640, 480).unwrap();
    a.set_color_std(ColorStd::Bt709).unwrap();
    a.set_preferred_backend(BackendKind::CmaHeap).unwrap();
    let mut b = AttrList::image(PixelFormat::Nv12, 640, 360).unwrap();
    b.set_color_std(ColorStd::Bt601).unwrap();
    b.set_preferred_backend(BackendKind::SystemHeap).unwrap();
    let e = reconcile([&a, &b]).unwrap_err();
    let keys: Vec<_> = e.keys().collect();
    assert_eq!(
        keys,
        vec![Key::PreferredBackend, Key::ImageHeight, Key::ImageColorStd]
    );
    assert!(e.to_string().contains("list #1"));
}

#[test]
fn missing_mandatory_keys() {
    let l = AttrList::with_types(&[BufferType::Image]).unwrap();
    let e = reconcile([&l]).unwrap_err();
    let keys: Vec<_> = e.keys().collect();
    assert_eq!(
        keys,
        vec![Key::ImageFormat, Key::ImageWidth, Key::ImageHeight]
    );
    assert!(e.items().iter().all(|i| i.kind == ConflictKind::Missing));
    let e = reconcile(std::iter::empty()).unwrap_err();
    assert_eq!(e.items()[0].kind, ConflictKind::NoLists);
    let e = reconcile([&AttrList::new()]).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::Types]);
}

#[test]
fn merge_policies() {
    let mut a = AttrList::raw(100).unwrap();
    a.set_raw_align(16)
        .unwrap()
        .set_need_cpu_access(false)
        .unwrap();
    a.set_enable_cpu_cache(true)
        .unwrap()
        .set_gpu_ids(&[gpu(2), gpu(1)])
        .unwrap();
    a.set_accessor_kind(AccessorKind::Cpu).unwrap();
    let mut b = AttrList::raw(100).unwrap();
    b.set_raw_align(4)
        .unwrap()
        .set_need_cpu_access(true)
        .unwrap();
    b.set_enable_cpu_cache(false)
        .unwrap()
        .set_gpu_ids(&[gpu(3), gpu(1)])
        .unwrap();
    b.set_contiguous(true)
        .unwrap()
        .set_accessor_kind(AccessorKind::Vfio)
        .unwrap();
    let r = reconcile([&a, &b]).unwrap();
    assert_eq!(r.size(), 100); // equal (NvSciBuf RawBuffer size)
    assert_eq!(r.alignment(), 16); // max of powers of two
    assert!(r.need_cpu_access()); // OR
    assert!(!r.cpu_cache()); // AND
    assert_eq!(
        r.get(Key::GpuIds),
        Some(&Value::GpuIds(vec![gpu(1), gpu(2), gpu(3)]))
    ); // union
    assert!(r.memory().contiguous);
    assert!(r.memory().pinnable);
    // CPU + VFIO: nobody imports a dma-buf (VFIO maps process memory).
    assert!(!r.memory().device_access);
    // Both lists state no permission. NvSciBuf ActualPerm: the default RequiredPerm is
    // read-only (least privilege), no longer read-write.
    assert_eq!(r.permission(), Permission::ReadOnly);
}

#[test]
fn vfio_needs_pinnable_memory_and_a_dma_buf_only_beside_an_importer() {
    let mut vfio = AttrList::raw(4096).unwrap();
    vfio.set_accessor_kind(AccessorKind::Vfio).unwrap();
    let r = reconcile([&vfio]).unwrap();
    assert!(r.memory().pinnable);
    assert!(!r.memory().device_access);
    let mut cam = AttrList::raw(4096).unwrap();
    cam.set_accessor_kind(AccessorKind::Camera).unwrap();
    let r = reconcile([&vfio, &cam]).unwrap();
    assert!(r.memory().pinnable);
    assert!(r.memory().device_access);
    // A list without a kind may be any importer.
    let anon = AttrList::raw(4096).unwrap();
    assert!(reconcile([&vfio, &anon]).unwrap().memory().device_access);
}

#[test]
fn a_gpu_needs_memfd_backed_memory_and_no_dma_buf_of_its_own() {
    // CUDA registers the buffer's mapping (cuMemHostRegister); a heap dma-buf's VM_PFNMAP
    // mapping cannot be registered, so the memory must be memfd-backed.
    let mut cpu = AttrList::raw(4096).unwrap();
    cpu.set_accessor_kind(AccessorKind::Cpu).unwrap();
    let mut gpu = AttrList::raw(4096).unwrap();
    gpu.set_accessor_kind(AccessorKind::Gpu).unwrap();
    let r = reconcile([&cpu, &gpu]).unwrap();
    assert!(r.memory().pinnable);
    assert!(!r.memory().device_access);
    let mut disp = AttrList::raw(4096).unwrap();
    disp.set_accessor_kind(AccessorKind::Display).unwrap();
    let r = reconcile([&gpu, &disp]).unwrap();
    assert!(r.memory().pinnable && r.memory().device_access);
}

#[test]
fn cpu_only_lists_need_no_device() {
    let mut a = AttrList::raw(4096).unwrap();
    a.set_accessor_kind(AccessorKind::Cpu).unwrap();
    a.set_required_perm(Permission::ReadOnly).unwrap();
    let r = reconcile([&a]).unwrap();
    assert!(!r.memory().device_access);
    assert_eq!(r.permission(), Permission::ReadOnly);
    assert_eq!(r.derived_name(), "unibuf");
}

#[test]
fn validate_names_failing_key() {
    let r = reconcile([&camera()]).unwrap();
    let e = r.validate([&display()]).unwrap_err();
    let keys: Vec<_> = e.keys().collect();
    assert!(keys.contains(&Key::ImagePitchAlign), "{e}");
    assert!(keys.contains(&Key::ImageBaseAlign), "{e}");
    assert!(!keys.contains(&Key::ImageFormat));
}

#[test]
fn from_parts_round_trip_and_tamper() {
    let r = reconcile([&camera(), &display()]).unwrap();
    let outs: Vec<(Key, Value)> = r.iter_outputs().map(|(k, v)| (k, v.clone())).collect();
    let back = Reconciled::from_parts(r.inputs(), &outs).unwrap();
    assert_eq!(back, r);
    let mut bad = outs.clone();
    for (k, v) in bad.iter_mut() {
        if *k == Key::OutSize {
            *v = Value::U64(1);
        }
    }
    let e = Reconciled::from_parts(r.inputs(), &bad).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::OutSize]);
}

#[test]
fn image_tensor_nhwc() {
    let mut img = AttrList::image(PixelFormat::Xrgb8888, 640, 480).unwrap();
    img.set_accessor_name("camera").unwrap();
    let mut t = AttrList::tensor(DataType::Uint8, &[1, 480, 640, 4]).unwrap();
    t.set_tensor_align_per_dim(&[1, 1024, 4, 1]).unwrap();
    t.set_accessor_name("gpu").unwrap();
    let r = reconcile([&img, &t]).unwrap();
    let tl = r.tensor().unwrap();
    assert_eq!(tl.strides, vec![3072 * 480, 3072, 4, 1]);
    assert_eq!(r.image().unwrap().planes[0].pitch, 3072);
    // NV12 has two planes: no NHWC view.
    let nv = AttrList::image(PixelFormat::Nv12, 640, 480).unwrap();
    let e = reconcile([&nv, &t]).unwrap_err();
    assert_eq!(e.keys().next(), Some(Key::ImageFormat));
}

#[test]
fn tiled_and_padding() {
    let mut l = AttrList::image(PixelFormat::Xrgb8888, 100, 10).unwrap();
    l.set_image_layout(LayoutKind::Tiled).unwrap();
    l.set_image_modifier(u64::from(drm_fourcc::DrmModifier::I915_x_tiled))
        .unwrap();
    l.set_padding(Padding {
        top: 0,
        bottom: 0,
        left: 0,
        right: 28,
    })
    .unwrap();
    let r = reconcile([&l]).unwrap();
    let p = r.image().unwrap().planes[0];
    assert_eq!(p.pitch, 512);
    assert_eq!(p.aligned_height, 16);
    // With no image.layout the modifier decides; pitch_linear keeps LINEAR only.
    let mut bad = AttrList::image(PixelFormat::Nv12, 64, 64).unwrap();
    bad.set_image_modifier(u64::from(drm_fourcc::DrmModifier::I915_x_tiled))
        .unwrap();
    assert!(reconcile([&bad]).is_ok());
    bad.set_image_layout(LayoutKind::PitchLinear).unwrap();
    assert_eq!(
        reconcile([&bad]).unwrap_err().keys().next(),
        Some(Key::ImageModifiers)
    );
}

/// A list of the type of `key`'s group with every mandatory key set except `key`.
/// A GPU id for tests: `n` in every byte.
fn gpu(n: u8) -> crate::attr::GpuId {
    crate::attr::GpuId([n; 16])
}

fn base_for(key: Key) -> AttrList {
    use crate::attr::KeyGroup as G;
    let ty = match key.group() {
        G::General | G::Raw => BufferType::RawBuffer,
        G::Image => BufferType::Image,
        G::Tensor => BufferType::Tensor,
        G::Array => BufferType::Array,
        G::Pyramid => BufferType::ImagePyramid,
    };
    let mut l = AttrList::with_types(&[ty]).unwrap();
    if matches!(key, Key::GpuCache | Key::GpuCompression | Key::VidMemGpu) {
        l.set_gpu_ids(&[gpu(1), gpu(2)]).unwrap();
    }
    let mandatory: Vec<(Key, Value)> = match ty {
        BufferType::RawBuffer => vec![(Key::RawSize, Value::U64(64))],
        BufferType::Image | BufferType::ImagePyramid => {
            let mut v = vec![
                (Key::ImageFormat, Value::Format(PixelFormat::Nv12)),
                (Key::ImageWidth, Value::U32(64)),
                (Key::ImageHeight, Value::U32(64)),
            ];
            if ty == BufferType::ImagePyramid {
                v.push((Key::PyramidLevels, Value::U32(2)));
                v.push((Key::PyramidScale, Value::F64(0.5)));
            }
            v
        }
        BufferType::Tensor => vec![
            (Key::TensorDataType, Value::DataType(DataType::Uint8)),
            (Key::TensorNumDims, Value::U32(2)),
            (Key::TensorSizes, Value::U64List(vec![4, 4])),
        ],
        BufferType::Array => vec![
            (Key::ArrayDataType, Value::DataType(DataType::Uint8)),
            (Key::ArrayStride, Value::U64(4)),
            (Key::ArrayCapacity, Value::U64(4)),
        ],
    };
    for (k, v) in mandatory {
        if k != key {
            l.set(k, v).unwrap();
        }
    }
    l
}

#[test]
fn every_input_key_merge_policy() {
    use crate::attr::{MergePolicy as M, ScanType};
    let pad = |t, b| {
        Value::Padding(Padding {
            top: t,
            bottom: b,
            left: 0,
            right: 0,
        })
    };
    let gpus = |v: &[u8]| Value::GpuIds(v.iter().map(|&n| gpu(n)).collect());
    let flags = |v: &[(u8, bool)]| Value::GpuFlags(v.iter().map(|&(n, f)| (gpu(n), f)).collect());
    // (key, value in list a, value in list b, merged value or None for a conflict)
    let cases: Vec<(Key, Value, Value, Option<Value>)> = vec![
        (
            Key::NeedCpuAccess,
            Value::Bool(false),
            Value::Bool(true),
            Some(Value::Bool(true)),
        ),
        (
            Key::RequiredPerm,
            Value::Permission(Permission::ReadOnly),
            Value::Permission(Permission::ReadWrite),
            Some(Value::Permission(Permission::ReadWrite)),
        ),
        (
            Key::EnableCpuCache,
            Value::Bool(true),
            Value::Bool(false),
            Some(Value::Bool(false)),
        ),
        (
            Key::GpuIds,
            gpus(&[2, 1]),
            gpus(&[3, 1]),
            Some(gpus(&[1, 2, 3])),
        ),
        // Per GPU: AND (NvSciBuf EnableGpuCache), GPUs of either list.
        (
            Key::GpuCache,
            flags(&[(1, true), (2, true)]),
            flags(&[(1, false)]),
            Some(flags(&[(1, false), (2, true)])),
        ),
        // Per GPU: equal (NvSciBuf EnableGpuCompression: the same type from every list).
        (
            Key::GpuCompression,
            flags(&[(1, true)]),
            flags(&[(1, false)]),
            None,
        ),
        // NvSciBuf VidMem_GpuId: equal-or-fail.
        (Key::VidMemGpu, Value::Gpu(gpu(1)), Value::Gpu(gpu(2)), None),
        (
            Key::PhysContiguous,
            Value::Bool(false),
            Value::Bool(true),
            Some(Value::Bool(true)),
        ),
        (
            Key::PreferredBackend,
            Value::Backend(BackendKind::SystemHeap),
            Value::Backend(BackendKind::CmaHeap),
            None,
        ),
        // NvSciBuf RawBuffer size: equal-or-fail (it used to take the maximum).
        (Key::RawSize, Value::U64(10), Value::U64(20), None),
        (
            Key::RawAlign,
            Value::U64(8),
            Value::U64(4),
            Some(Value::U64(8)),
        ),
        (
            Key::ImageLayout,
            Value::Layout(LayoutKind::PitchLinear),
            Value::Layout(LayoutKind::Tiled),
            None,
        ),
        (
            Key::ImageFormat,
            Value::Format(PixelFormat::Nv12),
            Value::Format(PixelFormat::Nv21),
            None,
        ),
        (Key::ImageWidth, Value::U32(64), Value::U32(32), None),
        (Key::ImageHeight, Value::U32(64), Value::U32(32), None),
        (
            Key::ImageColorStd,
            Value::ColorStd(ColorStd::Bt601),
            Value::ColorStd(ColorStd::Bt709),
            None,
        ),
        (
            Key::ImageScanType,
            Value::Scan(ScanType::Progressive),
            Value::Scan(ScanType::Interlaced),
            None,
        ),
        (Key::ImagePadding, pad(1, 0), pad(0, 2), Some(pad(1, 2))),
        (
            Key::ImagePitchAlign,
            Value::U64(64),
            Value::U64(256),
            Some(Value::U64(256)),
        ),
        (
            Key::ImageBaseAlign,
            Value::U64(4096),
            Value::U64(64),
            Some(Value::U64(4096)),
        ),
        (
            Key::ImageHeightAlign,
            Value::U64(2),
            Value::U64(16),
            Some(Value::U64(16)),
        ),
        (
            Key::ImageSizeAlign,
            Value::U64(4096),
            Value::U64(1),
            Some(Value::U64(4096)),
        ),
        (
            Key::ImageMinPitch,
            Value::U64(100),
            Value::U64(200),
            Some(Value::U64(200)),
        ),
        (
            Key::ImageMinSize,
            Value::U64(10_000),
            Value::U64(1),
            Some(Value::U64(10_000)),
        ),
        (Key::ImageExactPitch, Value::U64(64), Value::U64(128), None),
        // NvSciBuf PlaneBaseAddrAlign: maximum per plane (index).
        (
            Key::ImagePlaneBaseAlign,
            Value::U64List(vec![64, 4096]),
            Value::U64List(vec![256, 256]),
            Some(Value::U64List(vec![256, 4096])),
        ),
        (
            Key::TensorDataType,
            Value::DataType(DataType::Uint8),
            Value::DataType(DataType::Int8),
            None,
        ),
        (Key::TensorNumDims, Value::U32(2), Value::U32(3), None),
        (
            Key::TensorSizes,
            Value::U64List(vec![4, 4]),
            Value::U64List(vec![4, 8]),
            None,
        ),
        (
            Key::TensorAlignPerDim,
            Value::U64List(vec![1, 8]),
            Value::U64List(vec![16, 2]),
            Some(Value::U64List(vec![16, 8])),
        ),
        (
            Key::TensorBaseAlign,
            Value::U64(64),
            Value::U64(128),
            Some(Value::U64(128)),
        ),
        (
            Key::ArrayDataType,
            Value::DataType(DataType::Uint8),
            Value::DataType(DataType::Int8),
            None,
        ),
        (Key::ArrayStride, Value::U64(4), Value::U64(8), None),
        (Key::ArrayCapacity, Value::U64(4), Value::U64(8), None),
        (Key::PyramidLevels, Value::U32(2), Value::U32(3), None),
        (Key::PyramidScale, Value::F64(0.5), Value::F64(0.25), None),
    ];
    let covered: Vec<Key> = cases.iter().map(|c| c.0).collect();
    for &k in Key::ALL {
        // Modifier keys (Intersect) have their own tests (modifier_sets_*).
        let skip =
            matches!(k.merge_policy(), M::PerList | M::Output | M::Intersect) || k == Key::Types;
        assert_eq!(covered.contains(&k), !skip, "{k} coverage");
    }
    for (key, va, vb, want) in cases {
        let mut a = base_for(key);
        a.set_accessor_name("a").unwrap();
        a.set(key, va.clone()).unwrap();
        let mut b = base_for(key);
        b.set_accessor_name("b").unwrap();
        b.set(key, vb.clone()).unwrap();
        assert_eq!(want.is_none(), key.merge_policy() == M::Equal, "{key}");
        match want {
            Some(w) => {
                let r = reconcile([&a, &b]).unwrap_or_else(|c| panic!("{key}: {c}"));
                assert_eq!(r.get(key), Some(&w), "{key}");
                let r = reconcile([&b, &a]).unwrap();
                assert_eq!(r.get(key), Some(&w), "{key} reversed");
            }
            None => {
                let c = reconcile([&a, &b]).unwrap_err();
                let item = c
                    .items()
                    .iter()
                    .find(|i| i.key == key)
                    .unwrap_or_else(|| panic!("{key}: {c}"));
                assert_eq!(item.kind, ConflictKind::Disagree, "{key}");
                assert_eq!(item.values.len(), 2, "{key}");
                // The same value twice merges.
                let mut a2 = base_for(key);
                a2.set(key, va.clone()).unwrap();
                let ok = reconcile([&a, &a2]);
                if let Err(c) = &ok {
                    assert!(
                        c.items()
                            .iter()
                            .all(|i| i.key != key || i.kind != ConflictKind::Disagree),
                        "{key}: {c}"
                    );
                }
            }
        }
    }
}

#[test]
fn color_standard_must_fit_the_format() {
    let mut l = AttrList::image(PixelFormat::Nv12, 64, 64).unwrap();
    l.set_color_std(ColorStd::Srgb).unwrap();
    let c = reconcile([&l]).unwrap_err();
    assert_eq!(c.keys().collect::<Vec<_>>(), vec![Key::ImageColorStd]);
    let mut b = AttrList::image(PixelFormat::Srggb10, 64, 64).unwrap();
    b.set_color_std(ColorStd::Raw).unwrap();
    assert!(reconcile([&b]).is_ok());
    let mut x = AttrList::image(PixelFormat::Xrgb8888, 64, 64).unwrap();
    x.set_color_std(ColorStd::Bt709).unwrap();
    assert!(reconcile([&x]).is_ok());
}

mod modifier_sets {
    use super::*;
    use crate::attr::{AccessorKind, ModifierUsage};
    use crate::model::modifier::{nvidia_block_linear_2d as bl, INVALID, LINEAR};

    fn list(name: &str, kind: Option<AccessorKind>, mods: &[u64]) -> AttrList {
        let mut l = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
        l.set_accessor_name(name).unwrap();
        if let Some(k) = kind {
            l.set_accessor_kind(k).unwrap();
        }
        l.set_image_modifiers(mods.to_vec()).unwrap();
        l
    }

    fn pick(lists: &[&AttrList]) -> u64 {
        let r = reconcile(lists.iter().copied()).unwrap_or_else(|c| panic!("{c}"));
        assert_eq!(
            r.get(Key::OutModifier),
            Some(&Value::U64(r.image().unwrap().modifier))
        );
        r.image().unwrap().modifier
    }

    #[test]
    fn scanout_order_wins_then_the_most_constrained() {
        let b4 = bl(0, 1, 2, 0x06, 4);
        let b2 = bl(0, 1, 2, 0x06, 2);
        let gpu = list("gpu", Some(AccessorKind::Gpu), &[b4, b2, LINEAR]);
        let disp = list("disp", Some(AccessorKind::Display), &[LINEAR, b2, b4]);
        assert_eq!(pick(&[&gpu, &disp]), LINEAR);
        assert_eq!(pick(&[&disp, &gpu]), LINEAR);
        // Without a scanout list the GPU's order decides.
        let cpu_any = list("dev", None, &[LINEAR, b4, b2, INVALID]);
        assert_eq!(pick(&[&cpu_any, &gpu]), b4);
        // Same usage: the smaller set is preferred.
        let gpu2 = list("gpu2", Some(AccessorKind::Gpu), &[b2, b4]);
        assert_eq!(pick(&[&gpu, &gpu2]), b2);
        // An explicit usage overrides the kind's default.
        let mut tex = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
        tex.set_accessor_kind(AccessorKind::Display)
            .unwrap()
            .set_image_modifier_usage(ModifierUsage::Cpu)
            .unwrap()
            .set_image_modifiers(vec![b2, b4, LINEAR])
            .unwrap();
        assert_eq!(pick(&[&gpu, &tex]), b4);
        // The merged image.modifiers is the common set in the preferred order.
        let r = reconcile([&gpu, &disp]).unwrap();
        assert_eq!(
            r.get(Key::ImageModifiers),
            Some(&Value::Modifiers(vec![LINEAR, b2, b4].into()))
        );
        assert!(r.validate([&gpu, &disp]).is_ok());
        let other = list("other", None, &[b2]);
        assert!(r.validate([&other]).is_err());
    }

    #[test]
    fn invalid_and_linear_stay_distinct() {
        let a = list("a", None, &[INVALID]);
        let b = list("b", None, &[LINEAR]);
        let c = reconcile([&a, &b]).unwrap_err();
        assert_eq!(c.keys().collect::<Vec<_>>(), vec![Key::ImageModifiers]);
        assert_eq!(c.items()[0].kind, ConflictKind::Disagree);
        let text = c.to_string();
        assert!(
            text.contains("a = [INVALID]") && text.contains("b = [LINEAR]"),
            "{text}"
        );
        // INVALID alone is common but has no layout unibuf can compute.
        let c = reconcile([&a]).unwrap_err();
        assert!(c.to_string().contains("implicit"), "{c}");
    }

    #[test]
    fn uncomputable_modifiers_are_skipped_or_refused() {
        let amd = 0x0200_0000_0000_0001;
        let a = list("a", None, &[amd, bl(0, 1, 2, 0x06, 1)]);
        assert_eq!(pick(&[&a]), bl(0, 1, 2, 0x06, 1));
        let compressed = bl(1, 1, 2, 0x06, 1);
        let b = list("b", None, &[amd, compressed]);
        let c = reconcile([&b]).unwrap_err();
        let t = c.to_string();
        assert!(
            t.contains("cannot compute") && t.contains("compress"),
            "{t}"
        );
    }

    #[test]
    fn single_modifier_is_a_set_of_one_and_layout_filters() {
        let b1 = bl(0, 1, 2, 0x06, 1);
        let set = list("set", None, &[LINEAR, b1]);
        let mut one = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
        one.set_image_modifier(b1).unwrap();
        assert_eq!(pick(&[&set, &one]), b1);
        let mut tiled = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
        tiled.set_image_layout(LayoutKind::Tiled).unwrap();
        assert_eq!(pick(&[&set, &tiled]), b1);
        let mut lin = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
        lin.set_image_layout(LayoutKind::PitchLinear).unwrap();
        assert_eq!(pick(&[&set, &lin]), LINEAR);
        assert_eq!(
            reconcile([&one, &lin]).unwrap_err().keys().next(),
            Some(Key::ImageModifiers)
        );
        assert_eq!(
            reconcile([&tiled]).unwrap_err().keys().next(),
            Some(Key::ImageLayout)
        );
        // No set anywhere: linear, as before sets.
        assert_eq!(pick(&[&lin]), LINEAR);
        // Both keys in one list: the one modifier if the set holds it.
        let mut both = list("both", None, &[LINEAR, b1]);
        both.set_image_modifier(LINEAR).unwrap();
        assert_eq!(pick(&[&both]), LINEAR);
    }

    #[test]
    fn sets_are_checked() {
        let mut l = AttrList::image(PixelFormat::Nv12, 64, 64).unwrap();
        assert!(l.set_image_modifiers(Vec::<u64>::new()).is_err());
        assert!(l.set_image_modifiers(vec![0, 0]).is_err());
        assert!(l.set_image_modifiers(vec![7u64; 65]).is_err());
        let many: Vec<u64> = (0..65).collect();
        assert!(l.set_image_modifiers(many[..64].to_vec()).is_ok());
        let mut w = Vec::new();
        l.get(Key::ImageModifiers).unwrap().encode(&mut w);
        assert_eq!(w.len(), 64 * 8);
        assert!(Value::decode(Key::ImageModifiers, &w).is_ok());
        assert!(Value::decode(Key::ImageModifiers, &[]).is_err());
        assert!(Value::decode(Key::ImageModifiers, &[0; 65 * 8]).is_err());
        assert!(Value::decode(Key::ImageModifiers, &[0; 12]).is_err());
    }
}

// NvSciBuf rules (the NvSciBuf semantics issue). Each test names the rule of nvscibuf.h it checks.

/// NvSciBufGeneralAttrKey_ActualPerm: the maximum of RequiredPerm over the lists; read-only when
/// no list states it (RequiredPerm's default is NvSciBufAccessPerm_Readonly).
#[test]
fn nvscibuf_actual_perm_is_max_required_perm_default_read_only() {
    let silent = AttrList::raw(4096).unwrap();
    let mut ro = AttrList::raw(4096).unwrap();
    ro.set_accessor_name("ro").unwrap();
    ro.set_required_perm(Permission::ReadOnly).unwrap();
    let mut rw = AttrList::raw(4096).unwrap();
    rw.set_accessor_name("rw").unwrap();
    rw.set_required_perm(Permission::ReadWrite).unwrap();
    assert_eq!(
        reconcile([&silent]).unwrap().permission(),
        Permission::ReadOnly
    );
    assert_eq!(
        reconcile([&silent, &ro]).unwrap().permission(),
        Permission::ReadOnly
    );
    let r = reconcile([&silent, &ro, &rw]).unwrap();
    assert_eq!(r.permission(), Permission::ReadWrite);
    assert_eq!(
        r.get(Key::OutPermission),
        Some(&Value::Permission(Permission::ReadWrite))
    );
    // Validation: a list asking more than ActualPerm is not satisfied.
    let r = reconcile([&ro]).unwrap();
    let e = r.validate([&rw]).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::RequiredPerm]);
    r.validate([&silent]).unwrap();
}

/// NvSciBufRawBufferAttrKey_Size: equal-or-fail across lists; the conflict names both accessors
/// and both sizes (it used to take the maximum silently).
#[test]
fn nvscibuf_raw_size_is_equal_or_fail() {
    let mut a = AttrList::raw(4096).unwrap();
    a.set_accessor_name("producer").unwrap();
    let mut b = AttrList::raw(8192).unwrap();
    b.set_accessor_name("consumer").unwrap();
    let e = reconcile([&a, &b]).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::RawSize]);
    assert_eq!(e.items()[0].kind, ConflictKind::Disagree);
    let text = e.to_string();
    assert!(
        text.contains("raw.size: lists disagree: producer = 4096, consumer = 8192"),
        "{text}"
    );
    // Validation (an importer's or a late peer's list) wants the very size.
    let r = reconcile([&a]).unwrap();
    assert_eq!(
        r.validate([&b]).unwrap_err().keys().collect::<Vec<_>>(),
        vec![Key::RawSize]
    );
    r.validate([&a]).unwrap();
}

fn gpu_list(name: &str, ids: &[u8]) -> AttrList {
    let mut l = AttrList::raw(4096).unwrap();
    l.set_accessor_name(name)
        .unwrap()
        .set_accessor_kind(AccessorKind::Gpu)
        .unwrap()
        .set_gpu_ids(&ids.iter().map(|&n| gpu(n)).collect::<Vec<_>>())
        .unwrap();
    l
}

/// NvSciBufGeneralAttrKey_EnableGpuCache: AND per GPU over the lists; a GPU no list states
/// takes NvSciBuf's default (dGPU: not cached in system memory, cached in its video memory);
/// a GPU that is not in GpuId fails reconciliation.
#[test]
fn nvscibuf_gpu_cache_is_and_per_gpu() {
    let mut a = gpu_list("a", &[1, 2]);
    a.set_gpu_cache(&[(gpu(1), true), (gpu(2), true)]).unwrap();
    let mut b = gpu_list("b", &[1, 3]);
    b.set_gpu_cache(&[(gpu(1), false)]).unwrap();
    let r = reconcile([&a, &b]).unwrap();
    assert_eq!(
        r.gpu_cache(),
        &[(gpu(1), false), (gpu(2), true), (gpu(3), false)]
    );
    assert_eq!(
        r.get(Key::OutGpuCache),
        Some(&Value::GpuFlags(r.gpu_cache().to_vec()))
    );
    // Validation per GPU: a list that disables a GPU's cache needs it disabled.
    let mut c = gpu_list("c", &[2]);
    c.set_gpu_cache(&[(gpu(2), false)]).unwrap();
    let e = r.validate([&c]).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::GpuCache]);
    // A GPU outside gpu_ids.
    let mut d = gpu_list("d", &[1]);
    d.set_gpu_cache(&[(gpu(9), false)]).unwrap();
    let e = reconcile([&d]).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::GpuCache]);
    assert!(e.to_string().contains("not in gpu_ids"), "{e}");
    // No GPUs: no per-GPU outputs.
    let r = reconcile([&AttrList::raw(4096).unwrap()]).unwrap();
    assert!(r.gpu_cache().is_empty() && r.get(Key::OutGpuCache).is_none());
}

/// NvSciBufGeneralAttrKey_EnableGpuCompression: the same value from every list that names a
/// GPU, else a conflict; reconciled to none when several GPUs, a non-GPU engine or CPU access
/// share the buffer.
#[test]
fn nvscibuf_gpu_compression_is_none_when_shared() {
    let mut a = gpu_list("a", &[1]);
    a.set_gpu_compression(&[(gpu(1), true)]).unwrap();
    let r = reconcile([&a]).unwrap();
    assert_eq!(r.gpu_compression(), &[(gpu(1), true)]);
    // A second GPU list agreeing, same GPU: still one GPU, kept.
    let mut a2 = gpu_list("a2", &[1]);
    a2.set_gpu_compression(&[(gpu(1), true)]).unwrap();
    assert_eq!(
        reconcile([&a, &a2]).unwrap().gpu_compression(),
        &[(gpu(1), true)]
    );
    // Disagreement on the same GPU: a conflict.
    let mut off = gpu_list("off", &[1]);
    off.set_gpu_compression(&[(gpu(1), false)]).unwrap();
    let e = reconcile([&a, &off]).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::GpuCompression]);
    // Several GPUs.
    let other = gpu_list("other", &[2]);
    assert_eq!(
        reconcile([&a, &other]).unwrap().gpu_compression(),
        &[(gpu(1), false), (gpu(2), false)]
    );
    // A non-GPU engine.
    let mut cam = AttrList::raw(4096).unwrap();
    cam.set_accessor_kind(AccessorKind::Camera).unwrap();
    assert_eq!(
        reconcile([&a, &cam]).unwrap().gpu_compression(),
        &[(gpu(1), false)]
    );
    // CPU access.
    let mut cpu = gpu_list("cpu-too", &[1]);
    cpu.set_need_cpu_access(true).unwrap();
    assert_eq!(
        reconcile([&a, &cpu]).unwrap().gpu_compression(),
        &[(gpu(1), false)]
    );
}

/// NvSciBufGeneralAttrKey_VidMem_GpuId: equal-or-fail; here also a list that asks for a GPU's
/// memory must name that GPU in its own gpu_ids. It becomes the memory requirement's `vidmem`.
#[test]
fn nvscibuf_vidmem_gpu_is_a_reconciled_memory_requirement() {
    let mut a = gpu_list("a", &[1, 2]);
    a.set_vidmem_gpu(gpu(2)).unwrap();
    let r = reconcile([&a, &gpu_list("b", &[1])]).unwrap();
    assert_eq!(r.vidmem_gpu(), Some(gpu(2)));
    assert_eq!(r.memory().vidmem, Some(gpu(2)));
    // GPU accessors of video memory map it themselves: no host memory to pin or register, and
    // a GPU importer's own list is satisfied by the buffer without it.
    assert!(!r.memory().pinnable);
    r.validate(&[gpu_list("importer", &[1])]).unwrap();
    // In its own video memory a dGPU caches by default.
    assert_eq!(r.gpu_cache(), &[(gpu(1), false), (gpu(2), true)]);
    let mut stranger = gpu_list("stranger", &[1]);
    stranger.set_vidmem_gpu(gpu(2)).unwrap();
    let e = reconcile([&stranger, &gpu_list("b", &[2])]).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::VidMemGpu]);
    assert!(e.to_string().contains("without naming it"), "{e}");
}

/// NvSciBufGeneralAttrKey_CpuNeedSwCacheCoherency: true when cached CPU access shares the
/// buffer with a device that does not snoop CPU caches. unibuf: never on x86 (coherent PCI DMA),
/// conservatively everywhere else.
#[test]
fn nvscibuf_cpu_sw_cache_coherency() {
    let mut cpu = AttrList::raw(4096).unwrap();
    cpu.set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_need_cpu_access(true)
        .unwrap();
    let mut cam = AttrList::raw(4096).unwrap();
    cam.set_accessor_kind(AccessorKind::Camera).unwrap();
    let x86 = cfg!(any(target_arch = "x86", target_arch = "x86_64"));
    let r = reconcile([&cpu, &cam]).unwrap();
    assert_eq!(r.cpu_sw_cache_coherency(), !x86);
    assert_eq!(r.get(Key::OutCpuSwCacheCoherency), Some(&Value::Bool(!x86)));
    // CPU only, or an uncached CPU mapping: nothing to maintain.
    assert!(!reconcile([&cpu]).unwrap().cpu_sw_cache_coherency());
    let mut uncached = cpu.clone();
    uncached.set_enable_cpu_cache(false).unwrap();
    assert!(!reconcile([&uncached, &cam])
        .unwrap()
        .cpu_sw_cache_coherency());
}

/// NvSciBufImageAttrKey_PlaneBaseAddrAlign: per plane, the maximum at each index; the layout
/// starts each plane at a multiple of max(its alignment, image.base_align).
#[test]
fn nvscibuf_plane_base_addr_align_per_plane() {
    let mut a = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    a.set_plane_base_align(&[4096, 64]).unwrap();
    let mut b = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    b.set_plane_base_align(&[256, 1 << 20])
        .unwrap()
        .set_base_align(256)
        .unwrap();
    let r = reconcile([&a, &b]).unwrap();
    assert_eq!(
        r.get(Key::ImagePlaneBaseAlign),
        Some(&Value::U64List(vec![4096, 1 << 20]))
    );
    let img = r.image().unwrap();
    assert_eq!(img.planes[0].offset, 0);
    // 1920 x 1080 luma = 2073600 bytes; the chroma plane starts at the next MiB.
    assert_eq!(img.planes[1].offset, 1 << 21);
    assert_eq!(r.alignment(), 4096);
    // Without it the chroma plane follows the luma plane at the all-planes alignment.
    let plain = reconcile([&AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap()]).unwrap();
    assert_eq!(plain.image().unwrap().planes[1].offset, 1920 * 1080);
    // One alignment per plane of the format.
    let mut c = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    c.set_plane_base_align(&[64]).unwrap();
    let e = reconcile([&c]).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), vec![Key::ImagePlaneBaseAlign]);
    assert!(e.to_string().contains("2 planes of NV12"), "{e}");
}
