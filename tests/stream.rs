//! Pools and streams on the host (memfd-backed buffers; fences need a dma-buf and are tested in
//! the VM: hw-tests/src/tests/stream.rs).

mod ipc_util;

use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::ipc::Endpoint;
use unibuf::reconcile::reconcile;
use unibuf::stream::{Consumer, Pool, Producer, StreamPolicy};

fn list(name: &str, perm: Permission, size: u64) -> AttrList {
    let mut l = AttrList::raw(size).unwrap();
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

fn pool(initial: usize, max: usize) -> Pool {
    let r = Arc::new(reconcile([&list("cam", Permission::ReadWrite, 4096)]).unwrap());
    Pool::with_name(&r, "cam", initial, max).unwrap()
}

#[test]
fn pool_grows_to_its_bound_and_reuses_released_buffers() {
    let _s = ipc_util::serial();
    let mut p = pool(2, 3);
    assert_eq!(p.len(), 2);
    let a = p.try_acquire().unwrap().unwrap();
    let b = p.try_acquire().unwrap().unwrap();
    let c = p.try_acquire().unwrap().unwrap();
    assert_eq!(p.len(), 3, "grew by one");
    assert!(p.try_acquire().unwrap().is_none(), "at its bound");
    for i in [a, b, c] {
        assert_eq!(p.get(i).unwrap().name(), format!("cam-{i}"));
    }
    // A buffer held twice is free only after both releases.
    p.hold(b).unwrap();
    p.release(b, None).unwrap();
    assert!(p.try_acquire().unwrap().is_none());
    p.release(b, None).unwrap();
    assert_eq!(p.try_acquire().unwrap(), Some(b));
    assert!(p.release(a, None).is_ok());
    assert!(p.release(a, None).is_err(), "released more often than held");
    let e = p.acquire(Duration::from_millis(1));
    assert_eq!(e.unwrap(), a);
    let e = p.acquire(Duration::from_millis(5)).unwrap_err();
    assert!(matches!(e, unibuf::Error::Timeout { .. }), "{e}");
    // Idle buffers go, down to what is kept.
    p.release(a, None).unwrap();
    p.release(b, None).unwrap();
    let freed = p.shrink_idle(Duration::ZERO, 2).unwrap();
    assert_eq!(freed.len(), 1);
    assert_eq!(p.len(), 2);
}

fn attach(p: &mut Producer, perm: Permission, name: &str) -> Consumer {
    let (a, b) = Endpoint::pair().unwrap();
    let name = name.to_owned();
    let t = std::thread::spawn(move || Consumer::attach(b, vec![list(&name, perm, 4096)]));
    p.attach(a).unwrap();
    t.join().unwrap().unwrap()
}

#[test]
fn fifo_frames_reach_every_consumer_with_its_permission_and_come_back() {
    let _s = ipc_util::serial();
    // No fd leaked: as many or fewer open after (an fd of the harness may close meanwhile).
    let before = unibuf::fd::count_open_fds().unwrap();
    {
        let mut p = Producer::new(pool(3, 3), StreamPolicy::Fifo).unwrap();
        let mut display = attach(&mut p, Permission::ReadOnly, "display");
        let mut post = attach(&mut p, Permission::ReadWrite, "post");
        assert_eq!(display.buffers(), 3);
        assert_eq!(
            display.buffer(0).unwrap().permission(),
            Permission::ReadOnly
        );
        assert_eq!(post.buffer(0).unwrap().permission(), Permission::ReadWrite);
        for n in 1..=10u64 {
            let i = p.acquire(Duration::from_secs(1)).unwrap();
            let seq = p.post(i, 1000 + n, None).unwrap();
            assert_eq!(seq, n);
            for c in [&mut display, &mut post] {
                let f = c.next_frame(Some(Duration::from_secs(1))).unwrap();
                assert_eq!((f.index, f.seq, f.timestamp_ns), (i, n, 1000 + n));
                assert!(f.fence.is_none());
                c.release(&f, None).unwrap();
            }
        }
        // Back-pressure: nobody releases, three frames fill the pool, the fourth waits.
        let mut held = Vec::new();
        for _ in 0..3 {
            let i = p.acquire(Duration::from_secs(1)).unwrap();
            p.post(i, 0, None).unwrap();
            held.push((
                display.next_frame(Some(Duration::from_secs(1))).unwrap(),
                post.next_frame(Some(Duration::from_secs(1))).unwrap(),
            ));
        }
        let e = p.acquire(Duration::from_millis(20)).unwrap_err();
        assert!(matches!(e, unibuf::Error::Timeout { .. }), "{e}");
        // The display leaves without releasing: its holds go with it.
        drop(display);
        let (_, f) = held.remove(0);
        post.release(&f, None).unwrap();
        let i = p.acquire(Duration::from_secs(1)).unwrap();
        assert_eq!(i, f.index);
        assert_eq!(p.stats().lost, 1);
        assert_eq!(p.consumers(), 1);
        // A late joiner gets the running pool.
        let late = attach(&mut p, Permission::ReadOnly, "late");
        assert_eq!(late.buffers(), 3);
        p.discard(i).unwrap();
        drop(held);
    }
    let after = unibuf::fd::count_open_fds().unwrap();
    assert!(
        after <= before,
        "fifo stream: {before} fds open before, {after} after"
    );
}

#[test]
fn mailbox_replaces_unread_frames_and_counts_them() {
    let _s = ipc_util::serial();
    let mut p = Producer::new(pool(4, 4), StreamPolicy::Mailbox).unwrap();
    let mut c = attach(&mut p, Permission::ReadOnly, "display");
    assert_eq!(c.policy(), StreamPolicy::Mailbox);
    // Five frames while the consumer reads none: the first is in flight, the last waits in the
    // mailbox, the three between were replaced. The producer never waited.
    for _ in 0..5 {
        let i = p.acquire(Duration::ZERO).unwrap();
        p.post(i, 0, None).unwrap();
    }
    assert_eq!(p.stats().dropped, 3);
    let f = c.next_frame(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(f.seq, 1);
    assert!(
        c.next_frame(Some(Duration::from_millis(10))).is_err(),
        "one in flight at most"
    );
    c.release(&f, None).unwrap();
    p.service(Some(Duration::from_secs(1))).unwrap();
    let f = c.next_frame(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(f.seq, 5, "the newest frame");
    c.release(&f, None).unwrap();
    p.service(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(p.pool().free_count(), 4, "every buffer back");
}

#[test]
fn a_list_the_pool_does_not_satisfy_is_refused_at_attach() {
    let _s = ipc_util::serial();
    let mut p = Producer::new(pool(1, 1), StreamPolicy::Fifo).unwrap();
    let (a, b) = Endpoint::pair().unwrap();
    let t = std::thread::spawn(move || {
        Consumer::attach(b, vec![list("big", Permission::ReadOnly, 1 << 20)]).map(|_| ())
    });
    assert!(p.attach(a).is_err());
    assert!(t.join().unwrap().is_err());
    assert_eq!(p.consumers(), 0);
}

#[test]
fn a_consumer_that_dies_releases_what_it_held() {
    let _s = ipc_util::serial();
    let mut p = Producer::new(pool(2, 2), StreamPolicy::Fifo).unwrap();
    let fds_before = unibuf::fd::count_open_fds().unwrap();
    let (a, b) = Endpoint::pair().unwrap();
    // SAFETY: the child only attaches, takes two frames and exits without releasing them.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(a);
        let code = match Consumer::attach(b, vec![list("doomed", Permission::ReadOnly, 4096)]) {
            Ok(mut c) => {
                let ok = c.next_frame(Some(Duration::from_secs(5))).is_ok()
                    && c.next_frame(Some(Duration::from_secs(5))).is_ok();
                if ok {
                    0
                } else {
                    2
                }
            }
            Err(_) => 1,
        };
        // SAFETY: leaves the child at once (SIGKILL-like: nothing is released).
        unsafe { libc::_exit(code) };
    }
    drop(b);
    p.attach(a).unwrap();
    for _ in 0..2 {
        let i = p.acquire(Duration::from_secs(1)).unwrap();
        p.post(i, 0, None).unwrap();
    }
    let mut st = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    assert_eq!(libc::WEXITSTATUS(st), 0);
    // Both buffers come back once the producer sees the end of the connection.
    let i = p.acquire(Duration::from_secs(2)).unwrap();
    let j = p.acquire(Duration::from_secs(2)).unwrap();
    assert_ne!(i, j);
    assert_eq!(p.stats().lost, 1);
    assert_eq!(p.consumers(), 0);
    assert_eq!(
        unibuf::fd::count_open_fds().unwrap(),
        fds_before,
        "no fd leaked"
    );
}

#[test]
fn buffers_the_pool_grows_and_frees_reach_attached_consumers() {
    let _s = ipc_util::serial();
    let mut p = Producer::new(pool(1, 2), StreamPolicy::Fifo).unwrap();
    let mut c = attach(&mut p, Permission::ReadOnly, "display");
    assert_eq!(c.buffers(), 1);
    // Frame 1 is held by the consumer: the next acquire grows the pool, and the new buffer is
    // sent before the frame that uses it.
    let i = p.acquire(Duration::from_secs(1)).unwrap();
    p.post(i, 0, None).unwrap();
    let f1 = c.next_frame(Some(Duration::from_secs(1))).unwrap();
    let j = p.acquire(Duration::from_secs(1)).unwrap();
    assert_ne!(i, j);
    assert_eq!(p.pool().len(), 2);
    p.post(j, 0, None).unwrap();
    let f2 = c.next_frame(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(f2.index, j);
    assert_eq!(c.buffers(), 2);
    assert!(c.buffer(j).unwrap().name().ends_with(&format!("cam-{j}")));
    c.release(&f1, None).unwrap();
    c.release(&f2, None).unwrap();
    // One message per consumer per call: two releases, two calls.
    p.service(Some(Duration::from_secs(1))).unwrap();
    p.service(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(p.pool().free_count(), 2);
    // Idle: shrink to one; the consumer drops the freed buffer when it next reads.
    assert_eq!(p.shrink_idle(Duration::ZERO, 1).unwrap(), 1);
    let k = p.acquire(Duration::from_secs(1)).unwrap();
    p.post(k, 0, None).unwrap();
    assert_eq!(p.pool().len(), 1, "acquire took the kept buffer");
    let f3 = c.next_frame(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(c.buffers(), 1);
    c.release(&f3, None).unwrap();
}

#[test]
fn a_consumer_that_releases_what_it_does_not_hold_is_dropped_and_the_stream_goes_on() {
    let _s = ipc_util::serial();
    let mut p = Producer::new(pool(2, 2), StreamPolicy::Fifo).unwrap();
    let mut good = attach(&mut p, Permission::ReadOnly, "good");
    let mut bad = attach(&mut p, Permission::ReadOnly, "bad");
    let i = p.acquire(Duration::from_secs(1)).unwrap();
    let seq = p.post(i, 0, None).unwrap();
    let fg = good.next_frame(Some(Duration::from_secs(1))).unwrap();
    let fb = bad.next_frame(Some(Duration::from_secs(1))).unwrap();
    assert_eq!((fb.index, fb.seq), (i, seq));
    // A release of a sequence number it was never sent, then of a buffer it never got: the
    // first breaks the protocol, and the producer drops the peer with everything it held.
    bad.release_index(i, seq + 7, None).unwrap();
    good.release(&fg, None).unwrap();
    let mut served = 0;
    while p.consumers() > 1 && served < 10 {
        served += p.service(Some(Duration::from_millis(200))).unwrap();
    }
    assert_eq!(p.consumers(), 1, "the lying consumer is detached");
    assert_eq!(p.stats().lost, 1);
    // Its hold on buffer i went with it: i is free again, and the good consumer goes on.
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(p.acquire(Duration::from_secs(1)).unwrap());
    }
    assert!(got.contains(&i), "buffer {i} came back: {got:?}");
    let seq2 = p.post(got[0], 0, None).unwrap();
    let f = good.next_frame(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(f.seq, seq2);
    good.release(&f, None).unwrap();
    // The dropped consumer sees the end of the connection.
    let e = bad.next_frame(Some(Duration::from_secs(1))).unwrap_err();
    assert!(matches!(e, unibuf::Error::Disconnected), "{e}");
}
