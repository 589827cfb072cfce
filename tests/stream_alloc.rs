//! The steady-state stream path allocates nothing: pool acquire/release, and a frame posted,
//! received, released and its buffer acquired again (no fence), counted with a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::ipc::Endpoint;
use unibuf::reconcile::reconcile;
use unibuf::stream::{Consumer, Pool, Producer, StreamPolicy};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

#[test]
fn steady_state_allocates_nothing() {
    let r = Arc::new(reconcile([&list("cam", Permission::ReadWrite)]).unwrap());
    let mut pool = Pool::new(&r, 3, 3).unwrap();
    // Warm up, then count.
    for _ in 0..10 {
        let i = pool.try_acquire().unwrap().unwrap();
        pool.release(i, None).unwrap();
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        let i = pool.try_acquire().unwrap().unwrap();
        pool.hold(i).unwrap();
        pool.release(i, None).unwrap();
        pool.release(i, None).unwrap();
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "pool path allocated"
    );

    let (a, b) = Endpoint::pair().unwrap();
    let t = std::thread::spawn(move || {
        Consumer::attach(b, vec![list("display", Permission::ReadOnly)])
    });
    let mut p = Producer::new(pool, StreamPolicy::Fifo).unwrap();
    p.attach(a).unwrap();
    let mut c = t.join().unwrap().unwrap();
    let round = |p: &mut Producer, c: &mut Consumer| {
        let i = p.acquire(Duration::from_secs(1)).unwrap();
        p.post(i, 1, None).unwrap();
        let f = c.next_frame(Some(Duration::from_secs(1))).unwrap();
        c.release(&f, None).unwrap();
        p.service(Some(Duration::from_secs(1))).unwrap();
    };
    for _ in 0..10 {
        round(&mut p, &mut c);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        round(&mut p, &mut c);
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "stream path allocated"
    );
}
