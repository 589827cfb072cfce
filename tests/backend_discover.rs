//! Host tests of discovery and allocation error paths, with device directories faked by temp files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use unibuf::attr::{AccessorKind, AttrList, BackendKind};
use unibuf::backend::{Access, Backends, HeapClass};
use unibuf::object::Object;
use unibuf::reconcile::{reconcile, Reconciled};

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("unibuf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A 4 KiB buffer for a device (no accessor kind stated counts as one), or for a VFIO device
/// (`pinnable`).
fn device_list(pinnable: bool) -> Arc<Reconciled> {
    let mut l = AttrList::raw(4096).unwrap();
    l.set_raw_align(4096).unwrap();
    if pinnable {
        l.set_accessor_kind(AccessorKind::Vfio).unwrap();
    }
    Arc::new(reconcile([&l]).unwrap())
}

#[test]
fn absent_devices_are_reported_with_reasons() {
    let t = TempDir::new("none");
    let b = Backends::discover_in(
        &t.0.join("dma_heap"),
        &t.0.join("udmabuf"),
        &t.0.join("dri"),
        &t.0.join("cma"),
    );
    assert!(b.heaps.is_empty());
    assert!(matches!(b.udmabuf.access, Access::Absent(_)));
    assert!(b.drm.is_empty());
    assert!(b.memfd.is_usable());
    let report = b.to_string();
    assert!(report.contains("dma-heap: none"), "{report}");
    assert!(report.contains("ENOENT"), "{report}");
    let e = Object::allocator(&device_list(false))
        .backends(&b)
        .allocate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("no system heap") && e.contains("udmabuf"), "{e}");
}

#[test]
fn heaps_are_classified_and_errors_name_op_and_path() {
    let t = TempDir::new("heaps");
    let heaps = t.0.join("dma_heap");
    std::fs::create_dir_all(&heaps).unwrap();
    std::fs::create_dir_all(t.0.join("cma").join("vendor_area")).unwrap();
    for n in ["system", "default_cma_region", "vendor_area", "secure"] {
        std::fs::write(heaps.join(n), b"").unwrap();
    }
    let b = Backends::discover_in(
        &heaps,
        &t.0.join("udmabuf"),
        &t.0.join("dri"),
        &t.0.join("cma"),
    );
    let class = |n: &str| b.heaps.iter().find(|h| h.name == n).unwrap().class;
    assert_eq!(class("system"), HeapClass::System);
    assert_eq!(class("default_cma_region"), HeapClass::Contiguous);
    assert_eq!(class("vendor_area"), HeapClass::Contiguous);
    assert_eq!(class("secure"), HeapClass::Other);
    assert!(b.has(BackendKind::SystemHeap) && b.has(BackendKind::CmaHeap));
    // The fake heap is a regular file: the ioctl fails, and the error says which and where.
    let e = Object::allocator(&device_list(false))
        .backends(&b)
        .allocate()
        .unwrap_err()
        .to_string();
    let sys = heaps.join("system");
    assert!(e.starts_with("DMA_HEAP_IOCTL_ALLOC on "), "{e}");
    assert!(
        e.contains(&*sys.to_string_lossy()) && e.contains("ENOTTY"),
        "{e}"
    );
    // Contiguous goes to the CMA-class heap (the first one by name).
    let mut m = device_list(false).memory().clone();
    m.contiguous = true;
    let c = b.choose(&m).unwrap();
    assert_eq!(c.backend, BackendKind::CmaHeap);
    assert_eq!(
        c.device.as_deref(),
        Some(Path::new(&heaps.join("default_cma_region")))
    );
}

#[test]
fn udmabuf_errors_name_the_device() {
    let t = TempDir::new("udmabuf");
    let dev = t.0.join("udmabuf");
    std::fs::write(&dev, b"").unwrap();
    let b = Backends::discover_in(
        &t.0.join("dma_heap"),
        &dev,
        &t.0.join("dri"),
        &t.0.join("cma"),
    );
    let r = device_list(true);
    assert!(r.memory().pinnable);
    assert_eq!(b.choose(r.memory()).unwrap().backend, BackendKind::Udmabuf);
    let e = Object::allocator(&r)
        .backends(&b)
        .allocate()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("UDMABUF_CREATE on ") && e.contains("ENOTTY"),
        "{e}"
    );
}

#[test]
fn real_discovery_reports_something() {
    // Runs on any machine: the report names every backend, whatever is present.
    let report = Backends::discover().to_string();
    for what in ["udmabuf", "memfd"] {
        assert!(report.contains(what), "{report}");
    }
}
