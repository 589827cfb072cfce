//! Fuzz target over the wire decoder and the typed layer above it: any bytes with any fd count
//! must decode or be refused, never panic, never allocate beyond the limits; what decodes must
//! re-encode to the same bytes; decoded lists must rebuild into attribute lists (or be refused)
//! without panicking, and reconciled lists must re-reconcile (or be refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use unibuf::ipc::{attrs, wire};

fuzz_target!(|data: &[u8]| {
    let Some((&nfds, msg)) = data.split_first() else {
        return;
    };
    // The fd count is taken from the first byte, 0..=MAX_FDS+1, as recvmsg could report it.
    let nfds = nfds as usize % (wire::MAX_FDS + 2);
    if msg.len() > wire::MAX_MESSAGE {
        return; // the endpoint refuses longer messages before decoding
    }
    let decoded = wire::decode(msg, nfds);
    // The object fast path must agree with the full decoder.
    if let Ok((h, off)) = wire::decode_object_prefix(msg, nfds) {
        let body = wire::decode_reconciled_body(&msg[off..]);
        match &decoded {
            Ok(wire::Message::Object(h2, l2)) => {
                assert_eq!(&h, h2);
                assert_eq!(body.as_ref().ok(), Some(l2));
            }
            _ => assert!(body.is_err(), "prefix path accepted what decode refused"),
        }
    }
    // The borrowed list decoder must agree with the full decoder, and so must the typed layer
    // built on each.
    if let Ok(refs) = wire::decode_lists_ref(msg, nfds) {
        match &decoded {
            Ok(wire::Message::UnreconciledLists(lists)) => {
                assert_eq!(refs.len(), lists.len());
                for (i, (r, l)) in refs.iter().zip(lists).enumerate() {
                    let (mut s1, mut s2) = (Vec::new(), Vec::new());
                    let a = attrs::list_from_entries(r, i, &mut s1).ok();
                    let b = attrs::list_from_wire(l, i, &mut s2).ok();
                    assert_eq!(a, b);
                }
            }
            _ => panic!("borrowed list decoder accepted what decode refused"),
        }
    }
    let Ok(m) = decoded else { return };
    // The fd count a decoded message carries is the one that arrived (the stream kinds carry
    // their fence as an optional fd, flagged in the body).
    assert_eq!(m.fd_count(), nfds, "decoded {m:?} with {nfds} fds");
    let again = wire::encode(&m).expect("a decoded message re-encodes");
    // The encoding is canonical except for the minor version the peer wrote.
    assert_eq!(&again[..5], &msg[..5]);
    assert_eq!(&again[6..], &msg[6..]);
    assert_eq!(wire::decode(&again, nfds).expect("re-decodes"), m);
    match &m {
        wire::Message::UnreconciledLists(lists) => {
            let mut skipped = Vec::new();
            for (i, l) in lists.iter().enumerate() {
                let _ = attrs::list_from_wire(l, i, &mut skipped);
            }
        }
        wire::Message::ReconciledList(r) | wire::Message::Object(_, r) => {
            // Rebuild the input lists (AttrList::set on untrusted values) and re-reconcile them:
            // layout arithmetic on a peer's values must end in an error, never a panic
            // (regression: fuzz/regressions/layout-pitch-mul-overflow).
            let _ = attrs::reconciled_from_wire(r);
        }
        _ => {}
    }
});
