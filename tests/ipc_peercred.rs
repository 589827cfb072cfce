//! SO_PEERCRED of a peer this process cannot see (its own test binary: it forks, and a forked
//! child of a multi-threaded test harness must be alone in its process).

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use unibuf::ipc::Endpoint;

/// The grandchild, in a new pid namespace, wraps an end of a socketpair made by its grandparent
/// (in the outer namespace): the kernel reports the peer's pid as 0. Before the fix, rustix built
/// a non-zero `Pid` from that 0 (undefined behaviour; in practice the endpoint failed to open).
#[test]
fn peer_in_an_invisible_pid_namespace_has_pid_0() {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    // SAFETY: the child only calls unshare, fork, waitpid and _exit, or (the grandchild) runs the
    // code under test and _exits; this test binary runs this one test on one thread.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain syscalls in the forked child; it never returns into the harness.
        unsafe {
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                libc::_exit(77);
            }
            let g = libc::fork();
            if g == 0 {
                let code = match Endpoint::from_owned(b, "in new pid ns") {
                    Ok(ep) if ep.peer().pid == 0 => 0,
                    Ok(_) => 2,
                    Err(_) => 3,
                };
                libc::_exit(code);
            }
            let mut st = 0;
            if g < 0 || libc::waitpid(g, &mut st, 0) != g || !libc::WIFEXITED(st) {
                libc::_exit(4);
            }
            libc::_exit(libc::WEXITSTATUS(st));
        }
    }
    drop(a);
    let mut st = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    assert!(libc::WIFEXITED(st), "child died: status {st:#x}");
    match libc::WEXITSTATUS(st) {
        0 => {}
        77 => eprintln!("SKIP: unshare(CLONE_NEWPID) not permitted here"),
        2 => panic!("peer pid not reported as 0"),
        3 => panic!("Endpoint::from_owned failed for a peer in an invisible pid namespace"),
        c => panic!("child failed: {c}"),
    }
}
