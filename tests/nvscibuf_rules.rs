//! NvSciBuf's rules as unibuf follows them, across objects and IPC (the NvSciBuf semantics
//! issue). Each test names the rule of `nvscibuf.h` (DRIVE OS 6.0) whose answer it asserts.
//! Reconciliation-only rules are unit tests in `src/reconcile/tests.rs`.

mod ipc_util;

use ipc_util::*;
use std::sync::Arc;
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::backend::Backends;
use unibuf::ipc::{Endpoint, Requested};
use unibuf::object::Object;
use unibuf::reconcile::reconcile;
use unibuf::Error;

/// A CPU-side list of a 16 KiB raw buffer (memfd-backed on any machine).
fn cpu(name: &str, perm: Permission, cpu_access: bool) -> AttrList {
    let mut l = AttrList::raw(16384).unwrap();
    l.set_accessor_name(name)
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_required_perm(perm)
        .unwrap()
        .set_need_cpu_access(cpu_access)
        .unwrap();
    l
}

/// The producer side of a share: imports the consumer's lists, reconciles them with its own,
/// allocates (memfd) and exports the object granting `granted`.
fn produce(a: &mut Endpoint, own: &AttrList, granted: Permission) -> Object {
    let theirs = a.import_lists().unwrap();
    assert!(theirs.slots.iter().all(AttrList::is_imported));
    let mut lists = vec![own.clone()];
    lists.extend(theirs.slots);
    let r = Arc::new(reconcile(&lists).unwrap());
    let obj = Object::allocator(&r)
        .backends(&Backends::memfd_only())
        .allocate()
        .unwrap();
    a.export_object(&obj, granted).unwrap();
    obj
}

fn refused_naming_the_key(e: Error) {
    assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
    let text = e.to_string();
    assert!(text.contains("need_cpu_access"), "{text}");
}

/// NvSciBufGeneralAttrKey_NeedCpuAccess is per peer: the reconciled list a peer imports says
/// true only if one of that peer's own lists asked, and NvSciBufObjGetCpuPtr needs it. So an
/// importer whose lists never asked gets no CPU mapping although the producer asked (it used to
/// map the buffer read and write), and the producer (the reconciler) holds CPU access from its
/// own lists only.
#[test]
fn nvscibuf_need_cpu_access_is_per_peer() {
    let _g = serial();
    let (mut a, mut b) = Endpoint::pair().unwrap();

    // The producer asked, the consumer did not.
    let producer = cpu("producer", Permission::ReadWrite, true);
    let consumer = cpu("consumer", Permission::ReadOnly, false);
    b.export_lists([&consumer]).unwrap();
    let mut obj = produce(&mut a, &producer, Permission::ReadOnly);
    assert!(
        obj.list().need_cpu_access(),
        "OR over the lists: the memory"
    );
    assert!(obj.cpu_access());
    obj.map_write().unwrap();
    let mut imp = b
        .import_object(Requested::Auto, Some(std::slice::from_ref(&consumer)))
        .unwrap();
    assert_eq!(imp.permission(), Permission::ReadOnly);
    assert!(!imp.cpu_access());
    refused_naming_the_key(imp.map_read().unwrap_err());
    refused_naming_the_key(imp.map_write().unwrap_err());
    // The reconciled list the importer rebuilt grants nobody CPU access by itself.
    assert!(!imp.list().local_cpu_access());

    // The consumer asked, the producer did not: the producer cannot map, the consumer can.
    let producer = cpu("producer", Permission::ReadWrite, false);
    let consumer = cpu("consumer", Permission::ReadOnly, true);
    b.export_lists([&consumer]).unwrap();
    let obj = produce(&mut a, &producer, Permission::ReadOnly);
    assert!(obj.list().need_cpu_access());
    assert!(!obj.cpu_access());
    let e = obj.map_read().unwrap_err();
    assert!(e.to_string().contains("another peer"), "{e}");
    refused_naming_the_key(e);
    let imp = b
        .import_object(Requested::Auto, Some(std::slice::from_ref(&consumer)))
        .unwrap();
    assert!(imp.cpu_access());
    imp.map_read().unwrap();

    // Without its own lists an importer states no need: no CPU access.
    a.export_object(&imp.dup().unwrap(), Permission::ReadOnly)
        .unwrap();
    let imp2 = b.import_object(Requested::ReadOnly, None).unwrap();
    refused_naming_the_key(imp2.map_read().unwrap_err());
}

/// The same rule for objects made locally: the allocating process holds CPU access when one of
/// the lists it reconciled that are its own (not imported) asked; dup keeps it.
#[test]
fn nvscibuf_local_allocation_holds_cpu_access_of_its_own_lists() {
    let reader = cpu("reader", Permission::ReadOnly, true);
    let device = cpu("device", Permission::ReadWrite, false);
    let r = Arc::new(reconcile([&reader, &device]).unwrap());
    assert!(r.local_cpu_access());
    let o = Object::allocator(&r)
        .backends(&Backends::memfd_only())
        .allocate()
        .unwrap();
    assert!(o.cpu_access() && o.dup().unwrap().cpu_access());
    o.map_read().unwrap();
    let r = Arc::new(reconcile([&device]).unwrap());
    let o = Object::allocator(&r)
        .backends(&Backends::memfd_only())
        .allocate()
        .unwrap();
    refused_naming_the_key(o.map_read().unwrap_err());
    // A handle may give up CPU access, or take it from lists of its holder.
    let o = o.with_cpu_access_of(std::slice::from_ref(&reader));
    o.map_read().unwrap();
}

/// NvSciBufObjAttachPeer: a peer that joins after allocation gets the object when the buffer
/// as allocated satisfies its lists (NvSciBufAttrListValidateReconciled), with the permission
/// and CPU access its own lists asked; otherwise a conflict naming what it needs that the
/// buffer lacks, on both sides. The first consumer keeps its share throughout.
#[test]
fn nvscibuf_attach_peer_late_consumer_joins_a_running_share() {
    let _g = serial();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    let producer = cpu("producer", Permission::ReadWrite, true);
    let first = cpu("first", Permission::ReadOnly, true);
    b.export_lists([&first]).unwrap();
    let mut obj = produce(&mut a, &producer, Permission::ReadOnly);
    obj.map_write()
        .unwrap()
        .write()
        .unwrap()
        .copy_from_slice(0, b"frame")
        .unwrap();
    let held = b
        .import_object(Requested::Auto, Some(std::slice::from_ref(&first)))
        .unwrap();

    // A late reader whose needs the buffer meets.
    let (mut a2, mut late_ep) = Endpoint::pair().unwrap();
    let late = cpu("late", Permission::ReadOnly, true);
    late_ep.export_lists([&late]).unwrap();
    let theirs = a2.import_lists().unwrap();
    assert_eq!(
        a2.attach_peer(&obj, &theirs.slots).unwrap(),
        Permission::ReadOnly
    );
    let got = late_ep
        .import_object(Requested::Auto, Some(std::slice::from_ref(&late)))
        .unwrap();
    assert_eq!(got.permission(), Permission::ReadOnly);
    assert_eq!(
        &got.map_read().unwrap().read().unwrap().to_vec()[..5],
        b"frame"
    );
    assert_eq!(
        &held.map_read().unwrap().read().unwrap().to_vec()[..5],
        b"frame"
    );

    // A late peer that needs what the buffer lacks: a dma-buf (a camera), contiguous memory,
    // another size. The conflict names each key, and the peer's import fails with it.
    let mut cam = AttrList::raw(8192).unwrap();
    cam.set_accessor_name("late-camera")
        .unwrap()
        .set_accessor_kind(AccessorKind::Camera)
        .unwrap()
        .set_contiguous(true)
        .unwrap();
    late_ep.export_lists([&cam]).unwrap();
    let theirs = a2.import_lists().unwrap();
    let e = a2.attach_peer(&obj, &theirs.slots).unwrap_err();
    let Error::Conflict(c) = &e else {
        panic!("expected a conflict, got {e}")
    };
    let mut keys: Vec<_> = c.keys().map(|k| k.name()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["out.device_access", "physically_contiguous", "raw.size"],
        "{c}"
    );
    let e = late_ep
        .import_object(Requested::Auto, Some(std::slice::from_ref(&cam)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("conflict") && e.contains("raw.size"), "{e}");

    // A late writer of a buffer everyone reads: ActualPerm is read-only, so RequiredPerm
    // read-write is not satisfied (NvSciBuf validation of ActualPerm).
    let writer = cpu("late-writer", Permission::ReadWrite, true);
    let r_ro = Arc::new(reconcile([&cpu("reader", Permission::ReadOnly, true)]).unwrap());
    let ro_obj = Object::allocator(&r_ro)
        .backends(&Backends::memfd_only())
        .allocate()
        .unwrap();
    late_ep.export_lists([&writer]).unwrap();
    let theirs = a2.import_lists().unwrap();
    let e = a2.attach_peer(&ro_obj, &theirs.slots).unwrap_err();
    assert!(e.to_string().contains("required_permission"), "{e}");
    assert!(late_ep
        .import_object(Requested::Auto, Some(&[writer]))
        .is_err());
    // The endpoint is still usable.
    a2.send_data(b"x").unwrap();
    assert_eq!(late_ep.recv_data().unwrap(), b"x");
}
