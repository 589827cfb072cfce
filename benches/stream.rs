//! Stream figures (`cargo bench --bench stream`): pool acquire + release, and a frame post +
//! release round trip between two processes next to a bare `sendmsg`/`recvmsg` ping-pong of the
//! same message sizes without fds. Medians over batches, printed as `RATIO` lines.
//!
//! The fenced round trip needs a sync_file source (a dma-buf with fences): it runs in the VM
//! (`scripts/hw-test --bench`), not here.

use rustix::fd::OwnedFd;
use std::hint::black_box;
use std::io::IoSliceMut;
use std::sync::Arc;
use std::time::{Duration, Instant};
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::ipc::wire::{self, Message, StreamFrame, StreamRelease};
use unibuf::ipc::Endpoint;
use unibuf::reconcile::reconcile;
use unibuf::stream::{Consumer, Pool, Producer, StreamPolicy};

fn list(name: &str, perm: Permission) -> AttrList {
    let mut l = AttrList::raw(4096).unwrap();
    l.set_need_cpu_access(true)
        .unwrap()
        .set_accessor_kind(AccessorKind::Cpu)
        .unwrap()
        .set_required_perm(perm)
        .unwrap()
        .set_accessor_name(name)
        .unwrap();
    l
}

/// Median per-iteration time in microseconds of `batches` batches of `per` calls.
fn median_us(batches: usize, per: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..per {
        f();
    }
    let mut v: Vec<f64> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / per as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn fork() -> i32 {
    // SAFETY: the bench is single-threaded here; the child runs its loop and `exit_child`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    pid
}

fn exit_child() -> ! {
    // SAFETY: leaves the child without running the parent's exit path.
    unsafe { libc::_exit(0) }
}

fn reap(pid: i32) {
    let mut st = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
}

fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

fn send(fd: &OwnedFd, b: &[u8]) {
    rustix::net::send(fd, b, rustix::net::SendFlags::NOSIGNAL).unwrap();
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut ctl = rustix::net::RecvAncillaryBuffer::new(&mut []);
    rustix::net::recvmsg(
        fd,
        &mut [IoSliceMut::new(buf)],
        &mut ctl,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .map(|r| r.bytes)
    .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Pool acquire + release, no fence.
    let r = Arc::new(reconcile([&list("cam", Permission::ReadWrite)]).unwrap());
    let mut pool = Pool::new(&r, 4, 4).unwrap();
    let pool_us = median_us(101, 10_000, || {
        let i = pool.try_acquire().unwrap().unwrap();
        pool.release(black_box(i), None).unwrap();
    });
    println!(
        "RATIO pool acquire+release (no fence): {:.3} us median (target <= 1 us)",
        pool_us
    );

    // Bare ping-pong with the stream messages' sizes, no fds.
    let frame = wire::encode(&Message::StreamFrame(StreamFrame {
        index: 0,
        fence: false,
        seq: 1,
        timestamp_ns: 2,
    }))
    .unwrap();
    let release = wire::encode(&Message::StreamRelease(StreamRelease {
        index: 0,
        fence: false,
        seq: 1,
    }))
    .unwrap();
    let (a, b) = seqpacket_pair();
    let child = fork();
    if child == 0 {
        drop(a);
        let mut buf = [0u8; 256];
        while recv(&b, &mut buf) > 0 {
            send(&b, &release);
        }
        exit_child();
    }
    drop(b);
    let mut buf = [0u8; 256];
    let bare_us = median_us(51, 2_000, || {
        send(&a, &frame);
        black_box(recv(&a, &mut buf));
    });
    drop(a);
    reap(child);

    // The stream: a producer here, a consumer in a child process, one buffer, so every acquire
    // waits for the release of the frame before.
    let (pa, pb) = Endpoint::pair().unwrap();
    let child = fork();
    if child == 0 {
        drop(pa);
        let mut c = Consumer::attach(pb, vec![list("display", Permission::ReadOnly)]).unwrap();
        while let Ok(f) = c.next_frame(None) {
            if c.release(&f, None).is_err() {
                break;
            }
        }
        exit_child();
    }
    drop(pb);
    let mut p = Producer::new(Pool::new(&r, 1, 1).unwrap(), StreamPolicy::Fifo).unwrap();
    p.attach(pa).unwrap();
    let stream_us = median_us(51, 2_000, || {
        let i = p.acquire(Duration::from_secs(5)).unwrap();
        p.post(i, 0, None).unwrap();
    });
    drop(p);
    reap(child);
    println!(
        "RATIO stream post+release round trip, 2 processes, no fence: {:.2} us / bare sendmsg+recvmsg ping-pong ({}B/{}B, no fds) {:.2} us = {:.2}x (target <= 1.5x)",
        stream_us,
        frame.len(),
        release.len(),
        bare_us,
        stream_us / bare_us
    );
}
