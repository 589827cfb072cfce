//! Endpoints across real processes: path and abstract listeners, SO_PEERCRED, the allowlist,
//! and objects (memfd-backed) with the permission rules, each checked in the importing process.

mod ipc_util;

use ipc_util::*;
use rustix::fd::AsFd;
use std::time::Duration;
use unibuf::attr::{BackendKind, Permission};
use unibuf::ipc::wire::{FdKind, ObjectHeader, WireList, WireReconciled, WireValue};
use unibuf::ipc::{Allowlist, Endpoint, Listener};
use unibuf::Error;

fn header(permission: Permission, size: u64) -> ObjectHeader {
    ObjectHeader {
        permission,
        fd_kind: FdKind::Memfd,
        backend: Some(BackendKind::Memfd),
        size,
        with_memfd: false,
    }
}

fn list() -> WireReconciled {
    WireReconciled {
        inputs: vec![WireList::default()],
        outputs: plain(),
    }
}

fn plain() -> WireList {
    let mut l = WireList::default();
    l.push(7, WireValue::Bytes(4096u64.to_le_bytes().to_vec()))
        .unwrap();
    l
}

fn tmp_sock(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("unibuf-test-{tag}-{}.sock", std::process::id()))
}

#[test]
fn path_listener_peer_credentials_and_object_across_fork() {
    let _g = serial();
    let path = tmp_sock("path");
    let _ = std::fs::remove_file(&path);
    let listener = Listener::bind(&path).expect("bind");
    let child_path = path.clone();
    let pid = fork_child(move || {
        let mut ep = Endpoint::connect(&child_path)?;
        ep.set_recv_timeout(Some(Duration::from_secs(10)))?;
        anyhow::ensure!(
            ep.peer().pid == rustix::process::getppid().unwrap().as_raw_nonzero().get()
        );
        let imp = ep.recv_wire_object(Permission::ReadOnly)?;
        anyhow::ensure!(imp.permission == Permission::ReadOnly);
        anyhow::ensure!(is_read_only(&imp.fd), "read-only holder got a writable fd");
        anyhow::ensure!(
            try_map_writable(&imp.fd, 4096) == Err(rustix::io::Errno::ACCESS),
            "PROT_WRITE map of the read-only import was not refused with EACCES"
        );
        let mut b = [0u8; 16];
        rustix::io::pread(&imp.fd, &mut b, 100)?;
        anyhow::ensure!(b == [0x5a; 16], "contents {b:?}");
        ep.send_data(b"ok")?;
        Ok(())
    });
    let mut ep = listener.accept().expect("accept");
    ep.set_recv_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(ep.peer().pid, pid, "SO_PEERCRED pid");
    assert_eq!(ep.peer().uid, rustix::process::geteuid().as_raw());
    let fd = memfd(4096, 0x5a);
    ep.send_wire_object(
        fd.as_fd(),
        None,
        header(Permission::ReadWrite, 4096),
        &list(),
    )
    .unwrap();
    assert_eq!(ep.recv_data().unwrap(), b"ok");
    assert_eq!(wait_child(pid), 0);
    drop(listener);
    assert!(!path.exists(), "listener removes its socket file");
}

#[test]
fn abstract_listener_and_read_only_export() {
    let _g = serial();
    let name = format!("unibuf-test-{}", std::process::id());
    let listener = Listener::bind_abstract(&name).expect("bind abstract");
    let child_name = name.clone();
    let pid = fork_child(move || {
        let mut ep = Endpoint::connect_abstract(&child_name)?;
        ep.set_recv_timeout(Some(Duration::from_secs(10)))?;
        // Exported read-only: a read-write request is refused, and the fd is closed.
        match ep.recv_wire_object(Permission::ReadWrite) {
            Err(Error::PermissionDenied(_)) => {}
            other => anyhow::bail!("read-write import of a read-only export: {other:?}"),
        }
        let imp = ep.recv_wire_object(Permission::ReadOnly)?;
        anyhow::ensure!(imp.permission == Permission::ReadOnly);
        anyhow::ensure!(is_read_only(&imp.fd), "exporter sent a writable fd");
        // Not root after dropping privileges: the mode the exporter set stops a writable reopen.
        let p = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&imp.fd));
        // SAFETY: setgid/setuid have no memory-safety preconditions.
        let dropped = unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 };
        if dropped {
            let r = rustix::fs::open(&p, rustix::fs::OFlags::RDWR, rustix::fs::Mode::empty());
            anyhow::ensure!(
                r.is_err(),
                "an unprivileged read-only holder reopened the memfd read-write"
            );
        }
        ep.send_data(if dropped {
            b"checked-reopen"
        } else {
            b"no-setuid"
        })?;
        Ok(())
    });
    let mut ep = listener.accept().expect("accept");
    ep.set_recv_timeout(Some(Duration::from_secs(10))).unwrap();
    let fd = memfd(8192, 1);
    ep.send_wire_object(
        fd.as_fd(),
        None,
        header(Permission::ReadOnly, 8192),
        &list(),
    )
    .unwrap();
    ep.send_wire_object(
        fd.as_fd(),
        None,
        header(Permission::ReadOnly, 8192),
        &list(),
    )
    .unwrap();
    let note = ep.recv_data().unwrap();
    assert_eq!(wait_child(pid), 0);
    if rustix::process::geteuid().is_root() {
        assert_eq!(note, b"checked-reopen");
    }
    // The exporter's own descriptor stays writable.
    assert!(!is_read_only(&fd));
    assert!(try_map_writable(&fd, 8192).is_ok());
}

#[test]
fn allowlist_refuses_other_uids() {
    let _g = serial();
    let me = rustix::process::geteuid().as_raw();
    let name = format!("unibuf-allow-{}", std::process::id());
    let mut listener = Listener::bind_abstract(&name).expect("bind");
    listener.set_allowlist(Some(Allowlist::uids([me])));
    let root = me == 0;
    let child_name = name.clone();
    let pid = fork_child(move || {
        if root {
            // SAFETY: setgid/setuid have no memory-safety preconditions.
            anyhow::ensure!(unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 });
        }
        let mut ep = Endpoint::connect_abstract(&child_name)?;
        ep.set_recv_timeout(Some(Duration::from_secs(10)))?;
        // The listener closes a refused connection: we see end of file.
        match ep.recv() {
            Err(Error::Disconnected) => Ok(()),
            other => anyhow::bail!("refused peer got {other:?}"),
        }
    });
    let r = listener.accept();
    if root {
        let err = r.expect_err("peer with another uid accepted");
        assert!(matches!(err, Error::PermissionDenied(_)), "{err}");
        assert!(err.to_string().contains("uid 65534"), "{err}");
        assert_eq!(wait_child(pid), 0);
    } else {
        // Without root the child keeps our uid and is accepted; refuse it with a list without it.
        let ep = r.expect("same uid accepted");
        let err = ep.require(&Allowlist::uids([me + 1])).unwrap_err();
        assert!(err.to_string().contains(&format!("uid {me}")), "{err}");
        assert_eq!(wait_child(pid), 0);
    }
    // Gid-based acceptance.
    let cred = unibuf::ipc::PeerCred {
        pid: 1,
        uid: 5,
        gid: 6,
    };
    assert!(Allowlist::uids([]).with_gids([6]).check(&cred).is_ok());
    assert!(Allowlist::uids([4]).with_gids([7]).check(&cred).is_err());
}

#[test]
fn read_write_export_read_only_request_holds_read_only() {
    let _g = serial();
    let (mut a, mut b) = Endpoint::pair().unwrap();
    let fd = memfd(4096, 3);
    no_fd_leak("rw export, ro import", || {
        a.send_wire_object(
            fd.as_fd(),
            None,
            header(Permission::ReadWrite, 4096),
            &list(),
        )
        .unwrap();
        let imp = b.recv_wire_object(Permission::ReadOnly).unwrap();
        assert_eq!(imp.permission, Permission::ReadOnly);
        assert_eq!(imp.header.permission, Permission::ReadWrite);
        assert!(is_read_only(&imp.fd), "the writable description was kept");
        assert_eq!(
            try_map_writable(&imp.fd, 4096),
            Err(rustix::io::Errno::ACCESS)
        );
        // Read-write request of a read-write export keeps the writable fd.
        a.send_wire_object(
            fd.as_fd(),
            None,
            header(Permission::ReadWrite, 4096),
            &list(),
        )
        .unwrap();
        let imp = b.recv_wire_object(Permission::ReadWrite).unwrap();
        assert!(!is_read_only(&imp.fd));
        assert!(try_map_writable(&imp.fd, 4096).is_ok());
        assert_eq!(imp.list, list());
    });
}

#[test]
fn permission_rule() {
    use Permission::*;
    assert!(unibuf::ipc::negotiate(ReadOnly, ReadWrite).is_err());
    assert_eq!(
        unibuf::ipc::negotiate(ReadWrite, ReadOnly).unwrap(),
        ReadOnly
    );
    assert_eq!(
        unibuf::ipc::negotiate(ReadWrite, ReadWrite).unwrap(),
        ReadWrite
    );
    assert_eq!(
        unibuf::ipc::negotiate(ReadOnly, ReadOnly).unwrap(),
        ReadOnly
    );
}

#[test]
fn from_owned_refuses_stream_sockets() {
    let _g = serial();
    let (s, _t) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    assert!(Endpoint::from_owned(s, "stream").is_err());
}

/// A regular file whose `/proc/self/fd` link starts with `/dmabuf:` (a file of that name at the
/// root) must not pass the wire-level dma-buf check: only the dma-buf filesystem's `statfs`
/// magic (or the pre-5.3 anonymous inode) makes a dma-buf. The check used to trust the link.
#[test]
fn a_file_named_like_a_dma_buf_is_not_one() {
    // It opens a file: not while another test counts fds.
    let _g = serial();
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIP: needs root to create a file named /dmabuf:... at the filesystem root");
        return;
    }
    let p = std::path::PathBuf::from(format!("/dmabuf:unibuf-test-{}", std::process::id()));
    std::fs::write(&p, vec![0u8; 8192]).unwrap();
    let f = std::fs::File::open(&p);
    std::fs::remove_file(&p).unwrap();
    let f = f.unwrap();
    assert!(!unibuf::fd::is_dma_buf(f.as_fd()).unwrap());
    let e = unibuf::fd::identify(f.into(), Some(unibuf::fd::FdKind::DmaBuf))
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a dma-buf"), "{e}");
}
