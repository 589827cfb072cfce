//! Key lookups allocate nothing: counted with a global allocator wrapper, on the test's own
//! thread only (the test harness's threads allocate when they like: counting them made this
//! test fail now and then on a loaded machine, 4 of 40 runs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use unibuf::attr::{AttrList, Key};
use unibuf::layout::PixelFormat;
use unibuf::reconcile::reconcile;

struct Counting;

thread_local! {
    // Const-initialized and without a destructor: reading it never allocates.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn lookups_do_not_allocate() {
    let mut l = AttrList::image(PixelFormat::Nv12, 1920, 1080).unwrap();
    l.set_pitch_align(64)
        .unwrap()
        .set_accessor_name("camera")
        .unwrap();
    let r = reconcile([&l]).unwrap();
    let _ = r.get(Key::OutPlanePitch); // build the lazily made outputs once
    let before = allocs();
    let mut found = 0;
    for _ in 0..1000 {
        for &k in Key::ALL {
            found += usize::from(l.get(k).is_some());
            found += usize::from(r.get(k).is_some());
        }
    }
    let after = allocs();
    assert_eq!(after - before, 0, "lookups allocated");
    assert!(found > 0);
}
