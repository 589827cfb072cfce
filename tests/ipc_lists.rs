//! Attribute lists and reconciled lists over an endpoint: round trips, the unknown-key rule,
//! refusals of what a local caller could not do either, validation against the importer's lists.

mod ipc_util;

use ipc_util::*;
use rustix::fd::AsFd;
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Key, Permission};
use unibuf::ipc::attrs::{list_to_wire, reconciled_to_wire};
use unibuf::ipc::wire::{WireEntry, WireList, WireValue};
use unibuf::ipc::{Endpoint, Requested};
use unibuf::layout::PixelFormat;
use unibuf::reconcile::reconcile;
use unibuf::Error;

fn camera() -> AttrList {
    let mut l = AttrList::image(PixelFormat::Yuv420, 1920, 1080).unwrap();
    l.set_accessor_name("camera")
        .unwrap()
        .set_accessor_kind(AccessorKind::Camera)
        .unwrap()
        .set_required_perm(Permission::ReadWrite)
        .unwrap()
        .set_pitch_align(256)
        .unwrap();
    l
}

fn viewer(perm: Permission) -> AttrList {
    let mut l = AttrList::image(PixelFormat::Yuv420, 1920, 1080).unwrap();
    l.set_accessor_name("viewer")
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_need_cpu_access(true)
        .unwrap()
        .set_required_perm(perm)
        .unwrap();
    l
}

#[test]
fn unreconciled_lists_round_trip_multi_slot() {
    let _g = serial();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    let lists = [camera(), viewer(Permission::ReadOnly)];
    a.export_lists(&lists).unwrap();
    let got = b.import_lists().unwrap();
    assert!(got.skipped.is_empty());
    assert_eq!(got.slots, lists);
    assert_eq!(got.multi().len(), 2);
    // A MultiList goes as it is too.
    a.export_lists(&AttrList::append(&lists)).unwrap();
    assert_eq!(b.import_lists().unwrap().slots.len(), 2);
}

#[test]
fn unknown_keys_follow_the_must_understand_flag() {
    let _g = serial();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    let mut w = list_to_wire(&camera());
    w.entries.push(WireEntry {
        key: 0x7f01,
        must_understand: false,
        value: WireValue::Bytes(3u64.to_le_bytes().to_vec()),
    });
    w.entries.push(WireEntry {
        key: Key::ImageMinSize.code(),
        must_understand: false,
        value: WireValue::Unknown {
            tag: 99,
            bytes: vec![1, 2],
        },
    });
    a.send_wire_lists(std::slice::from_ref(&w)).unwrap();
    let got = b.import_lists().unwrap();
    assert_eq!(
        got.skipped,
        vec![(0, 0x7f01), (0, Key::ImageMinSize.code())]
    );
    assert_eq!(got.slots[0], camera());

    let n = w.entries.len();
    w.entries[n - 2].must_understand = true;
    a.send_wire_lists(std::slice::from_ref(&w)).unwrap();
    let err = b.import_lists().unwrap_err().to_string();
    assert!(
        err.contains("0x7f01") && err.contains("must-understand"),
        "{err}"
    );
    // Usable afterwards.
    a.export_lists(&[camera()]).unwrap();
    assert!(b.import_lists().is_ok());
}

#[test]
fn imported_entries_meet_the_set_rules() {
    let _g = serial();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    let r = reconcile(&[camera()]).unwrap();
    // An output key inside an unreconciled list.
    let (k, v) = r.iter_outputs().next().unwrap();
    let mut w = list_to_wire(&camera());
    let mut bytes = Vec::new();
    v.encode(&mut bytes);
    w.entries.push(WireEntry {
        key: k.code(),
        must_understand: true,
        value: WireValue::Bytes(bytes),
    });
    a.send_wire_lists(&[w]).unwrap();
    let err = b.import_lists().unwrap_err().to_string();
    assert!(err.contains("output key"), "{err}");
    // A value that does not decode for its key (a bool of 2 bytes).
    let mut w = WireList::default();
    w.entries.push(WireEntry {
        key: Key::NeedCpuAccess.code(),
        must_understand: true,
        value: WireValue::Bytes(vec![1, 0]),
    });
    a.send_wire_lists(&[w]).unwrap();
    match b.import_lists() {
        // The error names this endpoint, the peer and the slot, and says what was wrong.
        Err(Error::Ipc(t)) => assert!(
            t.contains("peer pid")
                && t.contains("list 0")
                && t.contains("need_cpu_access")
                && t.contains("decode"),
            "{t}"
        ),
        other => panic!("expected an ipc error naming the peer and the slot, got {other:?}"),
    }
    // A known key whose value has a tag this version does not know (1: a retired generic
    // bool): refused when it must be understood, skipped otherwise.
    let mut w = WireList::default();
    w.entries.push(WireEntry {
        key: Key::NeedCpuAccess.code(),
        must_understand: true,
        value: WireValue::Unknown {
            tag: 1,
            bytes: vec![1],
        },
    });
    a.send_wire_lists(std::slice::from_ref(&w)).unwrap();
    assert!(b.import_lists().is_err());
    w.entries[0].must_understand = false;
    a.send_wire_lists(&[w]).unwrap();
    let got = b.import_lists().unwrap();
    assert_eq!(got.skipped, vec![(0, Key::NeedCpuAccess.code())]);
}

#[test]
fn reconciled_round_trip_and_validation() {
    let _g = serial();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    let mine = [viewer(Permission::ReadOnly)];
    let r = reconcile(&[camera(), viewer(Permission::ReadOnly)]).unwrap();
    a.export_reconciled(&r).unwrap();
    let got = b.import_reconciled(Some(&mine)).unwrap();
    assert_eq!(got, r);
    assert_eq!(got.image().unwrap().planes.len(), 3);

    // A reconciled list that does not satisfy the importer's own list: the key is named.
    let other = reconcile(&[camera()]).unwrap();
    let mut big = viewer(Permission::ReadOnly);
    big.set_min_size(64 << 20).unwrap();
    a.export_reconciled(&other).unwrap();
    let err = b.import_reconciled(Some(&[big])).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(err.to_string().contains("image.min_size"), "{err}");

    // Tampered outputs are caught by re-reconciliation.
    let mut w = reconciled_to_wire(&r);
    let e = w
        .outputs
        .entries
        .iter_mut()
        .find(|e| e.key == Key::OutSize.code())
        .expect("size output");
    e.value = WireValue::Bytes((1u64 << 40).to_le_bytes().to_vec());
    a.send_wire_reconciled(&w).unwrap();
    let err = b.import_reconciled(None).unwrap_err().to_string();
    assert!(err.contains("out.size"), "{err}");
}

#[test]
fn objects_with_auto_permission() {
    let _g = serial();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    let r = std::sync::Arc::new(reconcile(&[camera(), viewer(Permission::ReadOnly)]).unwrap());
    let fd = memfd(r.size(), 0);
    no_fd_leak("typed object import", || {
        // Auto over a read-only viewer: holds read-only, even though read-write was exported.
        let own = [viewer(Permission::ReadOnly)];
        a.export_object_parts(
            fd.as_fd(),
            None,
            Some(BackendKind::Memfd),
            &r,
            Permission::ReadWrite,
            Permission::ReadWrite,
        )
        .unwrap();
        let o = b.import_object_parts(Requested::Auto, Some(&own)).unwrap();
        assert_eq!(o.permission, Permission::ReadOnly);
        assert_eq!(o.exported, Permission::ReadWrite);
        assert!(is_read_only(&o.fd));
        assert_eq!(*o.reconciled, *r);
        drop(o);
        // Auto over a read-write list of ours, object exported read-only: denied.
        let own = [viewer(Permission::ReadWrite)];
        a.export_object_parts(
            fd.as_fd(),
            None,
            Some(BackendKind::Memfd),
            &r,
            Permission::ReadWrite,
            Permission::ReadOnly,
        )
        .unwrap();
        let err = b
            .import_object_parts(Requested::Auto, Some(&own))
            .unwrap_err();
        assert!(matches!(err, Error::PermissionDenied(_)), "{err}");
        // Auto without lists is refused before anything is received... and the object waiting
        // in the socket is still importable afterwards.
        a.export_object_parts(
            fd.as_fd(),
            None,
            Some(BackendKind::Memfd),
            &r,
            Permission::ReadWrite,
            Permission::ReadWrite,
        )
        .unwrap();
        assert!(matches!(
            b.import_object_parts(Requested::Auto, None),
            Err(Error::InvalidArgument(_))
        ));
        // Read-write asked explicitly by a peer whose own lists asked read-only: refused, also
        // before anything is received (NvSciBuf: an importer holds at most the ActualPerm of its
        // own lists).
        assert!(matches!(
            b.import_object_parts(Requested::ReadWrite, Some(&[viewer(Permission::ReadOnly)])),
            Err(Error::PermissionDenied(_))
        ));
        let o = b.import_object_parts(Requested::ReadWrite, None).unwrap();
        assert_eq!(o.permission, Permission::ReadWrite);
        // A read-only handle cannot grant read-write.
        assert!(a
            .export_object_parts(
                fd.as_fd(),
                None,
                Some(BackendKind::Memfd),
                &r,
                Permission::ReadOnly,
                Permission::ReadWrite
            )
            .is_err());
        // A buffer smaller than its reconciled list says.
        let small = memfd(4096, 0);
        a.export_object_parts(
            small.as_fd(),
            None,
            Some(BackendKind::Memfd),
            &r,
            Permission::ReadWrite,
            Permission::ReadWrite,
        )
        .unwrap();
        let err = b
            .import_object_parts(Requested::ReadWrite, None)
            .unwrap_err();
        assert!(
            err.to_string().contains("the fd's buffer has 4096 bytes"),
            "{err}"
        );
        drop(small);
        // The importer's own needs are checked against the object's list.
        let mut big = viewer(Permission::ReadOnly);
        big.set_min_size(64 << 20).unwrap();
        a.export_object_parts(
            fd.as_fd(),
            None,
            Some(BackendKind::Memfd),
            &r,
            Permission::ReadWrite,
            Permission::ReadOnly,
        )
        .unwrap();
        let err = b
            .import_object_parts(Requested::ReadOnly, Some(&[big]))
            .unwrap_err();
        assert!(err.to_string().contains("image.min_size"), "{err}");
    });
}

/// The input the fuzzer found (fuzz/regressions/layout-pitch-mul-overflow): a reconciled list
/// whose input has a huge `image.min_pitch`. Re-reconciling it must be refused with an error;
/// `ImageLayout::compute_at` used to overflow on `pitch0 * bpp` (a panic with overflow checks,
/// a wrapped pitch without).
#[test]
fn regression_layout_pitch_overflow_is_an_error() {
    // It opens a file: not while another test counts fds.
    let _g = serial();
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/regressions/layout-pitch-mul-overflow"
    ))
    .unwrap();
    let (nfds, msg) = data.split_first().unwrap();
    let m = unibuf::ipc::wire::decode(msg, *nfds as usize % 6).expect("the message decodes");
    let r = match m {
        unibuf::ipc::wire::Message::Object(_, r)
        | unibuf::ipc::wire::Message::ReconciledList(r) => r,
        other => panic!("unexpected {other:?}"),
    };
    assert!(unibuf::ipc::attrs::reconciled_from_wire(&r).is_err());
}

/// A consumer that asks for a 1 TiB image (the demo producer used to allocate it).
fn greedy() -> AttrList {
    let mut l = viewer(Permission::ReadOnly);
    l.set_min_size(1 << 40).unwrap();
    l
}

#[test]
fn a_peer_cannot_make_this_side_allocate_past_the_limit() {
    let _g = serial();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    assert_eq!(b.alloc_limit(), unibuf::ipc::DEFAULT_ALLOC_LIMIT);
    // Refused at import: the peer's lists alone ask for more than the limit.
    a.export_lists(&[greedy()]).unwrap();
    match b.import_lists() {
        Err(Error::LimitExceeded { asked, limit, .. }) => {
            assert_eq!((asked, limit), (1 << 40, 1 << 30));
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    // ... and the peer is told why.
    let told = a.recv_data().unwrap_err().to_string();
    assert!(
        told.contains("allocation failed") && told.contains("limit"),
        "{told}"
    );
    // A raised limit lets it through, and reconcile_imported checks the combined lists
    // against the number of buffers asked for.
    b.set_alloc_limit(u64::MAX);
    a.export_lists(&[greedy()]).unwrap();
    let theirs = b.import_lists().unwrap();
    let r = b.reconcile_imported(&[camera()], &theirs, 2).unwrap();
    assert!(r.size() >= 1 << 40);
    b.set_alloc_limit(r.size() * 2 - 1);
    match b.reconcile_imported(&[camera()], &theirs, 2) {
        Err(Error::LimitExceeded { asked, .. }) => assert_eq!(asked, r.size() * 2),
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
    assert!(a.recv_data().unwrap_err().to_string().contains("limit"));
    // A conflict is reported to the peer too.
    let mut rgb = AttrList::image(PixelFormat::Xrgb8888, 64, 64).unwrap();
    rgb.set_accessor_name("rgb").unwrap();
    assert!(matches!(
        b.reconcile_imported(&[rgb], &theirs, 1),
        Err(Error::Conflict(_))
    ));
    assert!(a.recv_data().unwrap_err().to_string().contains("conflict"));
    // Within the limit nothing is sent and the endpoint stays usable both ways.
    b.set_alloc_limit(unibuf::ipc::DEFAULT_ALLOC_LIMIT);
    a.export_lists(&[viewer(Permission::ReadOnly)]).unwrap();
    let theirs = b.import_lists().unwrap();
    let r = b.reconcile_imported(&[camera()], &theirs, 3).unwrap();
    assert!(r.size() * 3 <= unibuf::ipc::DEFAULT_ALLOC_LIMIT);
    b.send_data(b"ok").unwrap();
    assert_eq!(a.recv_data().unwrap(), b"ok");
}
