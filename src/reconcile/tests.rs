use super::*;
use crate::attr::{BackendKind, ColorStd, Padding};

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
    let req = r.alloc_request(None);
    assert_eq!(req.name, "camera+display");
    assert_eq!(req.size, r.size());
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
        .set_gpu_ids(&["gpu-b", "gpu-a"])
        .unwrap();
    a.set_accessor_kind(AccessorKind::Cpu).unwrap();
    let mut b = AttrList::raw(4000).unwrap();
    b.set_raw_align(4)
        .unwrap()
        .set_need_cpu_access(true)
        .unwrap();
    b.set_enable_cpu_cache(false)
        .unwrap()
        .set_gpu_ids(&["gpu-c", "gpu-a"])
        .unwrap();
    b.set_contiguous(true)
        .unwrap()
        .set_accessor_kind(AccessorKind::Vfio)
        .unwrap();
    let r = reconcile([&a, &b]).unwrap();
    assert_eq!(r.size(), 4000); // max
    assert_eq!(r.alignment(), 16); // max of powers of two
    assert!(r.need_cpu_access()); // OR
    assert!(!r.cpu_cache()); // AND
    assert_eq!(
        r.get(Key::GpuIds),
        Some(&Value::StrList(vec![
            "gpu-a".into(),
            "gpu-b".into(),
            "gpu-c".into()
        ]))
    ); // union
    assert!(r.memory().contiguous);
    assert!(r.memory().pinnable);
    assert!(r.memory().device_access);
    // Both lists state no permission: read-write.
    assert_eq!(r.permission(), Permission::ReadWrite);
}

#[test]
fn cpu_only_lists_need_no_device() {
    let mut a = AttrList::raw(4096).unwrap();
    a.set_accessor_kind(AccessorKind::Cpu).unwrap();
    a.set_required_perm(Permission::ReadOnly).unwrap();
    let r = reconcile([&a]).unwrap();
    assert!(!r.memory().device_access);
    assert_eq!(r.permission(), Permission::ReadOnly);
    assert_eq!(r.alloc_request(None).name, "unibuf");
    assert_eq!(
        r.alloc_request(Some("a-very-long-buffer-name-that-exceeds-31-bytes"))
            .name
            .len(),
        31
    );
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
    let mut bad = AttrList::image(PixelFormat::Nv12, 64, 64).unwrap();
    bad.set_image_modifier(u64::from(drm_fourcc::DrmModifier::I915_x_tiled))
        .unwrap();
    assert_eq!(
        reconcile([&bad]).unwrap_err().keys().next(),
        Some(Key::ImageModifier)
    );
}
