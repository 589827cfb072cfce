//! Malformed input on a real socket: each case returns an error, leaks no fd (counted in
//! /proc/self/fd before and after), and leaves the endpoint usable (a good message still goes
//! through afterwards) or closed (the peer went away) — never hung (every receive has a timeout).

mod ipc_util;

use ipc_util::*;
use rustix::fd::{AsFd, BorrowedFd};
use std::time::Duration;
use unibuf::attr::{BackendKind, Permission};
use unibuf::ipc::wire::{self, FdKind, Message, ObjectHeader, WireList, WireReconciled, WireValue};
use unibuf::ipc::Endpoint;
use unibuf::Error;

fn pair() -> (Endpoint, Endpoint) {
    let (a, b) = Endpoint::pair().expect("socketpair");
    a.set_recv_timeout(Some(Duration::from_secs(5))).unwrap();
    b.set_recv_timeout(Some(Duration::from_secs(5))).unwrap();
    (a, b)
}

fn list() -> WireReconciled {
    WireReconciled {
        inputs: vec![WireList::default()],
        outputs: plain(),
    }
}

fn plain() -> WireList {
    let mut l = WireList::default();
    l.push(1, WireValue::Bytes(4096u64.to_le_bytes().to_vec()))
        .unwrap();
    l.push(2, WireValue::Bytes(b"frame".to_vec())).unwrap();
    l
}

fn object_header(size: u64) -> ObjectHeader {
    header_of(FdKind::Memfd, Some(BackendKind::Memfd), size)
}

fn header_of(fd_kind: FdKind, backend: Option<BackendKind>, size: u64) -> ObjectHeader {
    ObjectHeader {
        permission: Permission::ReadWrite,
        fd_kind,
        backend,
        size,
        with_memfd: false,
    }
}

fn object_bytes(h: ObjectHeader) -> Vec<u8> {
    wire::encode(&Message::Object(h, list())).unwrap()
}

/// After an error, the endpoint must still carry a good message both ways.
fn assert_usable(tx: &mut Endpoint, rx: &mut Endpoint) {
    tx.send_data(b"still alive").expect("send after error");
    assert_eq!(rx.recv_data().expect("recv after error"), b"still alive");
}

/// Sends `bytes` with `fds` raw, expects the receive to fail with an error whose text contains
/// `needle`, no fd to leak, and the endpoint to stay usable.
fn refuse(bytes: &[u8], fds: &[BorrowedFd<'_>], needle: &str) {
    let (mut tx, mut rx) = pair();
    no_fd_leak(needle, || {
        send_raw(&tx, bytes, fds).expect("raw send");
        let err = rx.recv().expect_err("malformed message accepted");
        let text = err.to_string();
        assert!(
            text.contains(needle),
            "error {text:?} should mention {needle:?}"
        );
    });
    assert_usable(&mut tx, &mut rx);
}

#[test]
fn truncated_message() {
    let _g = serial();
    let fd = memfd(4096, 0);
    let b = object_bytes(object_header(4096));
    // Cut inside the header, inside the fixed object part, inside the list.
    refuse(&b[..10], &[fd.as_fd()], "truncated");
    let mut cut = b[..30].to_vec();
    let body = (cut.len() - wire::HEADER_LEN) as u32;
    cut[8..12].copy_from_slice(&body.to_le_bytes());
    refuse(&cut, &[fd.as_fd()], "truncated");
    let mut cut = b[..b.len() - 3].to_vec();
    let body = (cut.len() - wire::HEADER_LEN) as u32;
    cut[8..12].copy_from_slice(&body.to_le_bytes());
    refuse(&cut, &[fd.as_fd()], "truncated");
}

#[test]
fn length_larger_than_message() {
    let _g = serial();
    let fd = memfd(4096, 0);
    let mut b = object_bytes(object_header(4096));
    b[8..12].copy_from_slice(&(u32::MAX).to_le_bytes());
    refuse(&b, &[fd.as_fd()], "header says the body is");
    // A value length running past the end of the message.
    let mut b = wire::encode(&Message::ReconciledList(list())).unwrap();
    // slots (4) + empty input list (2) + outputs count (2) + key (2) + flags (1) + tag (1)
    let at = wire::HEADER_LEN + 4 + 2 + 2 + 2 + 1 + 1;
    b[at..at + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
    refuse(&b, &[], "value length");
}

#[test]
fn wrong_version() {
    let _g = serial();
    let fd = memfd(4096, 0);
    let mut b = object_bytes(object_header(4096));
    b[4] = wire::VERSION_MAJOR + 1;
    refuse(&b, &[fd.as_fd()], "wire version");
}

#[test]
fn fd_count_disagrees_with_message() {
    let _g = serial();
    let a = memfd(4096, 0);
    let c = memfd(4096, 0);
    let b = object_bytes(object_header(4096));
    refuse(&b, &[], "fd count");
    refuse(&b, &[a.as_fd(), c.as_fd()], "fd count");
    let d = wire::encode(&Message::Data(b"x".to_vec())).unwrap();
    refuse(&d, &[a.as_fd()], "fd count");
}

#[test]
fn memfd_flag_disagreeing_with_the_fds() {
    let _g = serial();
    let a = memfd(4096, 0);
    let c = memfd(4096, 0);
    // A dma-buf object announcing the memfd behind it, sent with one fd only.
    let mut h = object_header(4096);
    h.fd_kind = FdKind::DmaBuf;
    h.backend = Some(BackendKind::Udmabuf);
    h.with_memfd = true;
    let mut b = wire::encode(&Message::Object(h, list())).unwrap();
    refuse(&b, &[a.as_fd()], "header announces 2 fds, 1 arrived");
    b[12] = 1; // a header that agrees with the fds but not with the object's flag
    refuse(&b, &[a.as_fd()], "the object announces a memfd");
    // Not announcing it, sent with two.
    h.with_memfd = false;
    let mut b = wire::encode(&Message::Object(h, list())).unwrap();
    b[12] = 2;
    refuse(&b, &[a.as_fd(), c.as_fd()], "does not announce");
    // The flag on a memfd object is refused outright.
    refuse_memfd_flag(object_bytes(object_header(4096)));
}

/// `object` (an encoded object message whose fd is not a dma-buf) with the memfd flag set and
/// two fds: refused, the memfd has nothing to stand beside.
fn refuse_memfd_flag(mut object: Vec<u8>) {
    let (a, c) = (memfd(4096, 0), memfd(4096, 0));
    object[wire::HEADER_LEN + 3] = wire::OBJECT_WITH_MEMFD;
    object[12] = 2;
    refuse(
        &object,
        &[a.as_fd(), c.as_fd()],
        "memfd beside an fd that is not a dma-buf",
    );
}

#[test]
fn more_fds_than_allowed_is_ctrunc() {
    // From the first fd past MAX_FDS (5, which used to arrive whole through the control
    // buffer's alignment slack, and be refused only later) to a few more.
    let _g = serial();
    for n in wire::MAX_FDS + 1..=wire::MAX_FDS + 3 {
        let fds: Vec<_> = (0..n).map(|_| memfd(4096, 0)).collect();
        let (mut tx, mut rx) = pair();
        no_fd_leak("ctrunc", || {
            // Bypass our own sender's limit with a raw sendmsg.
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
            send_raw(&tx, &object_bytes(object_header(4096)), &borrowed).expect("sendmsg");
            let err = rx.recv().expect_err("ctrunc accepted").to_string();
            assert!(err.contains("MSG_CTRUNC"), "{n} fds: {err}");
        });
        assert_usable(&mut tx, &mut rx);
    }
}

#[test]
fn a_receive_timeout_is_its_own_error() {
    let _g = serial();
    let (_tx, mut rx) = Endpoint::pair().unwrap();
    rx.set_recv_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    match rx.recv() {
        Err(Error::Timeout { what, after }) => {
            // The kernel keeps the timeout in jiffies: 50 ms may read back rounded up.
            assert!(
                after >= Duration::from_millis(50) && after < Duration::from_millis(100),
                "{after:?}"
            );
            assert!(what.contains("waiting for a message"), "{what}");
        }
        other => panic!("expected Error::Timeout, got {other:?}"),
    }
    assert!(!rx.is_closed());
}

#[test]
fn oversized_message() {
    let _g = serial();
    let big = vec![0u8; wire::MAX_MESSAGE + 100];
    let fd = memfd(4096, 0);
    refuse(&big, &[fd.as_fd()], "exceeds the limit");
}

#[test]
fn non_dma_buf_where_dma_buf_expected() {
    let _g = serial();
    let mut h = object_header(4096);
    h.fd_kind = FdKind::DmaBuf;
    h.backend = Some(BackendKind::SystemHeap);
    let fd = memfd(4096, 0);
    let (mut tx, mut rx) = pair();
    no_fd_leak("memfd as dma-buf", || {
        tx.send_wire_object(fd.as_fd(), None, h, &list()).unwrap();
        let err = rx.recv_wire_object(Permission::ReadWrite).unwrap_err();
        assert!(err.to_string().contains("announces a dma-buf"), "{err}");
        // A pipe where a memfd is expected.
        let (r, _w) = rustix::pipe::pipe().unwrap();
        send_raw(&tx, &object_bytes(object_header(4096)), &[r.as_fd()]).unwrap();
        let err = rx.recv_wire_object(Permission::ReadWrite).unwrap_err();
        assert!(err.to_string().contains("announces a memfd"), "{err}");
    });
    assert_usable(&mut tx, &mut rx);
}

#[test]
fn buffer_smaller_than_its_list_says() {
    let _g = serial();
    let fd = memfd(4096, 0);
    let (mut tx, mut rx) = pair();
    no_fd_leak("small buffer", || {
        tx.send_wire_object(fd.as_fd(), None, object_header(8192), &list())
            .unwrap();
        let err = rx.recv_wire_object(Permission::ReadWrite).unwrap_err();
        assert!(err.to_string().contains("4096 bytes"), "{err}");
    });
    assert_usable(&mut tx, &mut rx);
}

#[test]
fn read_write_request_of_read_only_export_is_denied() {
    let _g = serial();
    let fd = memfd(4096, 0);
    let mut h = object_header(4096);
    h.permission = Permission::ReadOnly;
    let (mut tx, mut rx) = pair();
    no_fd_leak("ro export, rw request", || {
        tx.send_wire_object(fd.as_fd(), None, h, &list()).unwrap();
        let err = rx.recv_wire_object(Permission::ReadWrite).unwrap_err();
        assert!(matches!(err, Error::PermissionDenied(_)), "{err}");
    });
    assert_usable(&mut tx, &mut rx);
}

#[test]
fn unexpected_kind_is_refused_and_discarded() {
    let _g = serial();
    let fd = memfd(4096, 0);
    let (mut tx, mut rx) = pair();
    no_fd_leak("object where lists expected", || {
        tx.send_wire_object(fd.as_fd(), None, object_header(4096), &list())
            .unwrap();
        let err = rx.recv_wire_lists().unwrap_err();
        assert!(
            err.to_string().contains("expected a UnreconciledLists"),
            "{err}"
        );
    });
    assert_usable(&mut tx, &mut rx);
}

#[test]
fn peer_disconnects_mid_message() {
    let _g = serial();
    no_fd_leak("peer gone mid-exchange", || {
        let (mut parent, child_end) = pair();
        let pid = fork_child(move || {
            // Start an object transfer but send only part of it, with its fd, then die.
            let fd = memfd(4096, 0);
            let b = object_bytes(object_header(4096));
            send_raw(&child_end, &b[..b.len() / 2], &[fd.as_fd()]).map_err(anyhow::Error::from)?;
            // SAFETY: exit immediately, as a crashing peer would.
            unsafe { libc::_exit(0) }
        });
        // `child_end` moved into the closure, which the parent drops unrun inside `fork_child`:
        // only the child holds that end, so its exit reads as end of file here.
        let err = parent.recv().expect_err("half message accepted");
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = parent.recv().expect_err("recv after peer exit");
        assert!(matches!(err, Error::Disconnected), "{err}");
        assert!(parent.is_closed());
        assert!(matches!(parent.recv(), Err(Error::Disconnected)));
        assert!(matches!(parent.send_data(b"x"), Err(Error::Disconnected)));
        assert_eq!(wait_child(pid), 0);
    });
}

#[test]
fn peer_killed_while_we_wait() {
    let _g = serial();
    no_fd_leak("peer killed", || {
        let (mut parent, child_end) = pair();
        let pid = fork_child(move || {
            let _keep = child_end;
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        });
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: kill of our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let t = std::time::Instant::now();
        let err = parent.recv().expect_err("recv from a killed peer");
        assert!(matches!(err, Error::Disconnected), "{err}");
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(wait_child(pid), 128 + libc::SIGKILL);
    });
}

/// The cuda-vidmem fd kind (wire 1.2) comes only with the cuda-vidmem backend and back: a header
/// that pairs it with another backend, or that backend with another kind, is refused on both
/// sides; a memfd beside it too. The right pairing encodes and decodes.
#[test]
fn cuda_vidmem_kind_and_backend_go_together() {
    let _g = serial();
    let h = header_of(FdKind::CudaVidmem, Some(BackendKind::CudaVidmem), 4096);
    let good = wire::encode(&Message::Object(h, list())).unwrap();
    let m = wire::decode(&good, 1).unwrap();
    assert!(matches!(&m, Message::Object(d, _) if *d == h), "{m:?}");
    for (kind, backend) in [
        (FdKind::CudaVidmem, Some(BackendKind::SystemHeap)),
        (FdKind::CudaVidmem, None),
        (FdKind::DmaBuf, Some(BackendKind::CudaVidmem)),
        (FdKind::Memfd, Some(BackendKind::CudaVidmem)),
    ] {
        let bad = header_of(kind, backend, 4096);
        assert!(
            wire::encode(&Message::Object(bad, list())).is_err(),
            "{kind} from {backend:?} encoded"
        );
    }
    // Raw bytes: the kind byte changed to dma-buf under the cuda-vidmem backend.
    let a = memfd(4096, 0);
    let mut b = good.clone();
    b[wire::HEADER_LEN + 1] = 1;
    refuse(&b, &[a.as_fd()], "fd kind for the backend");
    // A memfd announced beside a CUDA handle.
    refuse_memfd_flag(good);
}
