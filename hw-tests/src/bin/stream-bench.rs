//! `stream-bench`, the stream benchmark: pool acquire + release, and stream round trips between
//! two processes next to bare `sendmsg`/`recvmsg` ping-pongs of the same message sizes, without
//! fds and with one sync_file (a signalled fence exported from the buffer) per frame. Medians
//! over batches. In the VM on dma-bufs: `scripts/hw-test --bin stream-bench [--kernel K]`; on the
//! host (memfds, so without the fenced case): `cargo run --release -p hw-tests --bin
//! stream-bench`.

use rustix::fd::{AsFd, OwnedFd};
use std::hint::black_box;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::ipc::wire::{self, Message, StreamFrame, StreamRelease};
use unibuf::ipc::Endpoint;
use unibuf::reconcile::reconcile;
use unibuf::stream::{Access, Consumer, Fence, Pool, Producer, StreamPolicy};

fn list(name: &str, perm: Permission, kind: AccessorKind) -> AttrList {
    let mut l = AttrList::raw(1 << 20).unwrap();
    l.set_need_cpu_access(true)
        .unwrap()
        .set_accessor_kind(kind)
        .unwrap()
        .set_required_perm(perm)
        .unwrap()
        .set_accessor_name(name)
        .unwrap();
    l
}

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
    // SAFETY: single-threaded here; the child runs its loop and `exit_child`s.
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

fn send(fd: &OwnedFd, b: &[u8], with: Option<&OwnedFd>) {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ctl = rustix::net::SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(w) = with {
        fds = [w.as_fd()];
        ctl.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
    }
    rustix::net::sendmsg(
        fd,
        &[IoSlice::new(b)],
        &mut ctl,
        rustix::net::SendFlags::NOSIGNAL,
    )
    .unwrap();
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut ctl = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let n = rustix::net::recvmsg(
        fd,
        &mut [IoSliceMut::new(buf)],
        &mut ctl,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .map(|r| r.bytes)
    .unwrap_or(0);
    for m in ctl.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(r) = m {
            r.for_each(drop);
        }
    }
    n
}

fn bare(frame: &[u8], release: &[u8], fence: Option<&OwnedFd>) -> f64 {
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let child = fork();
    if child == 0 {
        drop(a);
        let mut buf = [0u8; 256];
        while recv(&b, &mut buf) > 0 {
            send(&b, release, None);
        }
        exit_child();
    }
    drop(b);
    let mut buf = [0u8; 256];
    let us = median_us(31, 1000, || {
        send(&a, frame, fence);
        black_box(recv(&a, &mut buf));
    });
    drop(a);
    reap(child);
    us
}

fn stream(r: &Arc<unibuf::reconcile::Reconciled>, fenced: bool) -> f64 {
    let (pa, pb) = Endpoint::pair().unwrap();
    let child = fork();
    if child == 0 {
        drop(pa);
        let mut c = Consumer::attach(
            pb,
            vec![list("display", Permission::ReadOnly, AccessorKind::Cpu)],
        )
        .unwrap();
        while let Ok(f) = c.next_frame(None) {
            if f.wait(Duration::from_secs(1)).is_err() || c.release(&f, None).is_err() {
                break;
            }
        }
        exit_child();
    }
    drop(pb);
    let mut p = Producer::new(Pool::new(r, 1, 1).unwrap(), StreamPolicy::Fifo).unwrap();
    p.attach(pa).unwrap();
    let stub = fenced.then(|| {
        let i = p.acquire(Duration::from_secs(1)).unwrap();
        let f = Fence::export(p.buffer(i).unwrap().fd(), Access::Read).unwrap();
        p.discard(i).unwrap();
        f
    });
    let us = median_us(31, 1000, || {
        let i = p.acquire(Duration::from_secs(5)).unwrap();
        let fence = stub.as_ref().map(|s| s.try_clone().unwrap());
        p.post(i, 0, fence).unwrap();
    });
    drop(p);
    reap(child);
    us
}

fn main() {
    // A camera's list asks for a dma-buf (the VM's heaps); where there is none (the host), a CPU
    // list's memfds.
    let pool_of = |kind| {
        let r = Arc::new(reconcile([&list("cam", Permission::ReadWrite, kind)]).unwrap());
        Pool::new(&r, 4, 4).map(|p| (r, p))
    };
    let (r, mut pool) = pool_of(AccessorKind::Camera)
        .or_else(|e| {
            println!("no dma-buf here ({e}): memfd buffers");
            pool_of(AccessorKind::Cpu)
        })
        .unwrap();
    let dma = pool.get(0).unwrap().is_dma_buf();
    let pool_us = median_us(31, 10_000, || {
        let i = pool.try_acquire().unwrap().unwrap();
        pool.release(black_box(i), None).unwrap();
    });
    println!("RATIO pool acquire+release (no fence, dma-buf {dma}): {pool_us:.3} us median (target <= 1 us)");
    // A sync_file to carry needs a dma-buf (the VM's heaps); on memfds (the host) the fenced
    // round trip is not measured.
    let stub: Option<OwnedFd> = dma.then(|| {
        Fence::export(pool.get(0).unwrap().fd(), Access::Read)
            .unwrap()
            .into_fd()
    });
    let f = |fence| {
        wire::encode(&Message::StreamFrame(StreamFrame {
            index: 0,
            fence,
            seq: 1,
            timestamp_ns: 2,
        }))
        .unwrap()
    };
    let release = wire::encode(&Message::StreamRelease(StreamRelease {
        index: 0,
        fence: false,
        seq: 1,
    }))
    .unwrap();
    let bare0 = bare(&f(false), &release, None);
    let s0 = stream(&r, false);
    println!(
        "RATIO stream round trip, no fence: {s0:.2} us / bare ping-pong without fds {bare0:.2} us = {:.2}x (target <= 1.5x)",
        s0 / bare0
    );
    let Some(stub) = stub else {
        println!("SKIP stream round trip, sync_file attached: the pool's buffers are memfds (no dma-buf here to export a fence from)");
        return;
    };
    let bare1 = bare(&f(true), &release, Some(&stub));
    let s1 = stream(&r, true);
    println!(
        "RATIO stream round trip, sync_file attached: {s1:.2} us / bare ping-pong carrying one fd {bare1:.2} us = {:.2}x (target <= 1.5x)",
        s1 / bare1
    );
}
