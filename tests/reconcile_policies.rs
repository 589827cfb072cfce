//! Merge policies, validation, memory requirements and outputs of reconciliation.

use unibuf::attr::{
    AccessorKind, AttrList, AttrRead, BackendKind, BufferType, DataType, Key, Permission, Value,
};
use unibuf::backend::{AllocRequest, MemoryRequirement};
use unibuf::layout::PixelFormat;
use unibuf::reconcile::{reconcile, ConflictKind, Reconciled};
use unibuf::Error;

fn named(mut l: AttrList, name: &str, kind: AccessorKind) -> AttrList {
    l.set_accessor_name(name)
        .unwrap()
        .set_accessor_kind(kind)
        .unwrap();
    l
}

#[test]
fn equal_or_fail_names_key_accessors_and_values() {
    let a = named(
        AttrList::image(PixelFormat::Nv12, 1280, 720).unwrap(),
        "camera",
        AccessorKind::Camera,
    );
    let b = named(
        AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap(),
        "display",
        AccessorKind::Display,
    );
    let c = reconcile([&a, &b]).unwrap_err();
    let keys: Vec<Key> = c.keys().collect();
    assert_eq!(keys, vec![Key::ImageWidth, Key::ImageHeight]);
    let item = &c.items()[0];
    assert_eq!(item.kind, ConflictKind::Disagree);
    assert_eq!(
        item.values,
        vec![
            ("camera".to_string(), Value::U32(1280)),
            ("display".to_string(), Value::U32(1920))
        ]
    );
    let text = c.to_string();
    assert!(
        text.contains("image.width: lists disagree: camera = 1280, display = 1920"),
        "{text}"
    );
    // Into the crate error.
    let e: Error = c.into();
    assert!(matches!(e, Error::Conflict(_)));
    assert!(e.to_string().contains("image.height"));
}

#[test]
fn alignments_take_the_maximum_power_of_two() {
    let mut a = AttrList::raw(1000).unwrap();
    a.set_raw_align(64).unwrap();
    // raw.size is equal-or-fail (NvSciBuf); the alignments still take the maximum.
    let mut b = AttrList::raw(1000).unwrap();
    b.set_raw_align(4096).unwrap();
    let r = reconcile([&a, &b]).unwrap();
    assert_eq!(r.alignment(), 4096);
    assert_eq!(r.size(), 1000);
}

#[test]
fn permission_is_the_highest_required() {
    let mut ro1 = AttrList::raw(64).unwrap();
    ro1.set_required_perm(Permission::ReadOnly).unwrap();
    let mut ro2 = AttrList::raw(64).unwrap();
    ro2.set_required_perm(Permission::ReadOnly).unwrap();
    assert_eq!(
        reconcile([&ro1, &ro2]).unwrap().permission(),
        Permission::ReadOnly
    );
    let mut rw = AttrList::raw(64).unwrap();
    rw.set_required_perm(Permission::ReadWrite).unwrap();
    assert_eq!(
        reconcile([&ro1, &rw]).unwrap().permission(),
        Permission::ReadWrite
    );
    // A list that states nothing asks read-only: NvSciBuf's RequiredPerm default
    // (NvSciBufAccessPerm_Readonly); it used to count as read-write.
    let silent = AttrList::raw(64).unwrap();
    assert_eq!(
        reconcile([&ro1, &silent]).unwrap().permission(),
        Permission::ReadOnly
    );
    assert_eq!(
        reconcile([&rw, &silent]).unwrap().permission(),
        Permission::ReadWrite
    );
}

#[test]
fn memory_requirement_rules() {
    let cpu = named(AttrList::raw(4096).unwrap(), "cpu", AccessorKind::Cpu);
    let r = reconcile([&cpu]).unwrap();
    assert_eq!(*r.memory(), MemoryRequirement::default());

    // A list without an accessor kind counts as a device.
    let anon = AttrList::raw(4096).unwrap();
    assert!(reconcile([&cpu, &anon]).unwrap().memory().device_access);

    let mut vfio = named(AttrList::raw(4096).unwrap(), "fpga", AccessorKind::Vfio);
    vfio.set_contiguous(false).unwrap();
    let mut cam = named(AttrList::raw(4096).unwrap(), "cam", AccessorKind::Camera);
    cam.set_contiguous(true)
        .unwrap()
        .set_preferred_backend(BackendKind::CmaHeap)
        .unwrap();
    let r = reconcile([&cpu, &vfio, &cam]).unwrap();
    assert_eq!(
        *r.memory(),
        MemoryRequirement {
            contiguous: true,
            pinnable: true,
            device_access: true,
            preferred: Some(BackendKind::CmaHeap),
            vidmem: None,
        }
    );
    let req = AllocRequest::from_reconciled(&r, Some("fpga-frames"));
    assert_eq!(req.memory, *r.memory());
    assert_eq!(req.name, "fpga-frames");
    assert_eq!(
        AllocRequest::from_reconciled(&reconcile([&cam, &cpu, &vfio]).unwrap(), None).name,
        "cam+cpu+fpga"
    );

    let mut other = AttrList::raw(4096).unwrap();
    other
        .set_preferred_backend(BackendKind::SystemHeap)
        .unwrap();
    let c = reconcile([&cam, &other]).unwrap_err();
    assert_eq!(c.keys().collect::<Vec<_>>(), vec![Key::PreferredBackend]);
    assert!(c.to_string().contains("cam = cma-heap"), "{c}");
}

#[test]
fn cpu_cache_is_and_of_stated_values() {
    let mut a = AttrList::raw(64).unwrap();
    a.set_need_cpu_access(true).unwrap();
    let mut b = AttrList::raw(64).unwrap();
    b.set_enable_cpu_cache(true).unwrap();
    let r = reconcile([&a, &b]).unwrap();
    assert!(r.need_cpu_access() && r.cpu_cache());
    let mut c = AttrList::raw(64).unwrap();
    c.set_enable_cpu_cache(false).unwrap();
    let r = reconcile([&a, &b, &c]).unwrap();
    assert!(r.need_cpu_access() && !r.cpu_cache());
    assert!(
        !reconcile([&b]).unwrap().cpu_cache(),
        "no CPU access, no CPU cache"
    );
}

#[test]
fn buffer_types_union_and_combinations() {
    let img = AttrList::image(PixelFormat::Grey, 64, 64).unwrap();
    let raw = AttrList::raw(64).unwrap();
    let c = reconcile([&img, &raw]).unwrap_err();
    assert_eq!(c.keys().collect::<Vec<_>>(), vec![Key::Types]);
    // A list with only general keys joins any type.
    let mut cpu = AttrList::new();
    cpu.set_need_cpu_access(true).unwrap();
    let r = reconcile([&img, &cpu]).unwrap();
    assert!(r.need_cpu_access());
    assert!(r.types().contains(BufferType::Image));
}

#[test]
fn array_and_pyramid() {
    let a = AttrList::array(DataType::Float32, 16, 1000).unwrap();
    let r = reconcile([&a]).unwrap();
    assert_eq!(r.size(), 16_000);
    assert_eq!(r.get(Key::OutArraySize), Some(&Value::U64(16_000)));
    assert_eq!(r.get(Key::OutArrayAlign), Some(&Value::U64(4)));
    let bad = AttrList::array(DataType::Float64, 4, 10).unwrap();
    let c = reconcile([&bad]).unwrap_err();
    assert!(matches!(c.items()[0].kind, ConflictKind::Invalid(_)));
    assert_eq!(c.items()[0].key, Key::ArrayStride);

    let p = AttrList::pyramid(PixelFormat::Grey, 100, 100, 4, 0.5).unwrap();
    let r = reconcile([&p]).unwrap();
    assert_eq!(
        r.get(Key::OutPyramidLevelSizes),
        Some(&Value::U64List(vec![10_000, 2_500, 625, 144]))
    );
    let q = AttrList::pyramid(PixelFormat::Grey, 100, 100, 3, 0.5).unwrap();
    assert_eq!(
        reconcile([&p, &q]).unwrap_err().keys().collect::<Vec<_>>(),
        vec![Key::PyramidLevels]
    );
}

#[test]
fn tensor_mismatch_and_missing() {
    let mut t = AttrList::with_types(&[BufferType::Tensor]).unwrap();
    t.set(Key::TensorDataType, Value::DataType(DataType::Int8))
        .unwrap();
    t.set(Key::TensorNumDims, Value::U32(3)).unwrap();
    t.set(Key::TensorSizes, Value::U64List(vec![2, 2])).unwrap();
    let c = reconcile([&t]).unwrap_err();
    assert_eq!(c.keys().collect::<Vec<_>>(), vec![Key::TensorSizes]);
    let mut u = AttrList::with_types(&[BufferType::Tensor]).unwrap();
    u.set(Key::TensorNumDims, Value::U32(3)).unwrap();
    let c = reconcile([&u]).unwrap_err();
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        vec![Key::TensorDataType, Key::TensorSizes]
    );
    assert!(c.items().iter().all(|i| i.kind == ConflictKind::Missing));
}

#[test]
fn validate_reports_the_failing_key() {
    let cam = named(
        AttrList::image(PixelFormat::Nv12, 640, 480).unwrap(),
        "camera",
        AccessorKind::Camera,
    );
    let r = reconcile([&cam]).unwrap();
    assert!(r.is_reconciled());
    assert!(r.validate([&cam]).is_ok());

    let mut disp = named(
        AttrList::image(PixelFormat::Nv12, 640, 480).unwrap(),
        "display",
        AccessorKind::Display,
    );
    disp.set_pitch_align(1024).unwrap();
    let c = r.validate([&disp]).unwrap_err();
    assert_eq!(c.keys().collect::<Vec<_>>(), vec![Key::ImagePitchAlign]);
    assert_eq!(c.items()[0].kind, ConflictKind::NotSatisfied);
    assert!(c.to_string().contains("display = 1024"), "{c}");

    let vfio = named(
        AttrList::image(PixelFormat::Nv12, 640, 480).unwrap(),
        "fpga",
        AccessorKind::Vfio,
    );
    let c = r.validate([&vfio]).unwrap_err();
    assert_eq!(c.keys().collect::<Vec<_>>(), vec![Key::OutPinnable]);

    let other = AttrList::image(PixelFormat::Yuyv, 640, 480).unwrap();
    let c = r.validate([&other]).unwrap_err();
    assert_eq!(c.keys().collect::<Vec<_>>(), vec![Key::ImageFormat]);
}

#[test]
fn export_import_round_trip() {
    let cam = named(
        AttrList::image(PixelFormat::Nv12, 640, 480).unwrap(),
        "camera",
        AccessorKind::Camera,
    );
    let mut disp = named(
        AttrList::image(PixelFormat::Nv12, 640, 480).unwrap(),
        "display",
        AccessorKind::Display,
    );
    disp.set_base_align(4096).unwrap();
    let r = reconcile([&cam, &disp]).unwrap();
    // Export through the generic wire encoding of every value.
    let wire: Vec<Vec<(u16, Vec<u8>)>> = r
        .inputs()
        .iter()
        .map(|l| {
            l.iter()
                .map(|(k, v)| {
                    let mut b = Vec::new();
                    v.encode(&mut b);
                    (k.code(), b)
                })
                .collect()
        })
        .collect();
    let outs: Vec<(u16, Vec<u8>)> = r
        .iter_outputs()
        .map(|(k, v)| {
            let mut b = Vec::new();
            v.encode(&mut b);
            (k.code(), b)
        })
        .collect();
    // Import.
    let lists: Vec<AttrList> = wire
        .iter()
        .map(|pairs| {
            let mut l = AttrList::new();
            l.set_all(pairs.iter().map(|(c, b)| {
                let k = Key::from_code(*c).unwrap();
                (k, Value::decode(k, b).unwrap())
            }))
            .unwrap();
            l
        })
        .collect();
    let outputs: Vec<(Key, Value)> = outs
        .iter()
        .map(|(c, b)| {
            let k = Key::from_code(*c).unwrap();
            (k, Value::decode(k, b).unwrap())
        })
        .collect();
    let back = Reconciled::from_parts(&lists, &outputs).unwrap();
    assert_eq!(back, r);
    assert!(back.validate([&disp]).is_ok());
    // A dropped output is noticed.
    let c = Reconciled::from_parts(&lists, &outputs[1..]).unwrap_err();
    assert_eq!(c.keys().collect::<Vec<_>>(), vec![outputs[0].0]);
    assert_eq!(r.get_in(0, Key::OutSize), r.get(Key::OutSize).cloned());
    assert_eq!(r.slot_count(), 1);
}

#[test]
fn per_plane_outputs_for_yuv420_interlaced() {
    let mut l = AttrList::image(PixelFormat::Yuv420, 720, 576).unwrap();
    l.set_scan_type(unibuf::attr::ScanType::Interlaced).unwrap();
    let r = reconcile([&l]).unwrap();
    // Each field: 288 luma rows and 144 chroma rows.
    assert_eq!(
        r.get(Key::OutPlanePitch),
        Some(&Value::U64List(vec![720, 360, 360]))
    );
    assert_eq!(
        r.get(Key::OutPlaneAlignedHeight),
        Some(&Value::U64List(vec![576, 288, 288]))
    );
    assert_eq!(
        r.get(Key::OutPlaneOffset),
        Some(&Value::U64List(vec![0, 720 * 576, 720 * 576 + 360 * 288]))
    );
    assert_eq!(
        r.get(Key::OutPlaneSecondFieldOffset),
        Some(&Value::U64List(vec![
            720 * 288,
            720 * 576 + 360 * 144,
            720 * 576 + 360 * 288 + 360 * 144
        ]))
    );
    assert_eq!(
        r.get(Key::OutPlaneBpp),
        Some(&Value::U64List(vec![8, 8, 8]))
    );
    assert_eq!(
        r.get(Key::OutPlaneChannels),
        Some(&Value::U64List(vec![1, 1, 1]))
    );
    assert_eq!(r.size(), 720 * 576 * 3 / 2);
}
