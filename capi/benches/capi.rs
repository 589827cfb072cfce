//! What the C calls add to the Rust calls they wrap: reconcile of two NV12 1920x1080 lists, and
//! an object export + import over a socketpair (memfd).
//!
//! Run: `cargo bench -p unibuf-capi`. It prints first, for each pair, the median per-call times
//! of the Rust and the C call, timed in paired batches (each round one batch of each, in
//! alternating order, so that the machine's load and drift weigh on both alike), the median of
//! the rounds' C / Rust ratios with a 95 % interval of that median (within the run: a second
//! run on a shared machine can land outside it), and the heap allocations per call of each
//! (counted by this binary's allocator); then criterion's own measurements (short: the
//! machines are shared). The C functions are
//! compiled into this binary from the crate's sources and called as C would.

#![allow(missing_docs, clippy::undocumented_unsafe_blocks)]

#[path = "../src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod capi;
#[allow(unused_imports)]
use capi::{adapt, attr, consts, ffi, handle, ipc, keys, object, provider, status};

use criterion::{criterion_group, criterion_main, Criterion};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use unibuf_rs::attr::{AccessorKind, AttrList, Permission};
use unibuf_rs::ipc::{Endpoint, Requested};
use unibuf_rs::layout::PixelFormat;
use unibuf_rs::object::Object;
use unibuf_rs::reconcile::reconcile;

use attr::ub_attr_kv;
use consts::*;
use keys::ub_key::*;
use status::UB_SUCCESS;

include!("../../benches/support/paired.rs");

/// The system allocator, counting allocations (and reallocations) for the report.
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; the counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations per call of `f` (averaged over 1000 calls).
fn allocs_per_call(f: &mut dyn FnMut()) -> f64 {
    f();
    let a = ALLOCS.load(Relaxed);
    for _ in 0..1000 {
        f();
    }
    (ALLOCS.load(Relaxed) - a) as f64 / 1000.0
}

/// `UB_BENCH_ONLY=NAME` (rust-reconcile, rust-reconcile-arc, c-reconcile, rust-ipc, c-ipc): runs that call alone
/// `UB_BENCH_N` times (default 10^6) and exits, for `perf` or `valgrind --tool=callgrind`
/// (instruction counts are steadier than times on a loaded machine).
fn run_only(calls: &mut [(&str, &mut dyn FnMut())]) {
    let Ok(only) = std::env::var("UB_BENCH_ONLY") else {
        return;
    };
    let n: u64 = std::env::var("UB_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    if let Some((_, f)) = calls.iter_mut().find(|(name, _)| *name == only) {
        for _ in 0..n {
            f();
        }
        std::process::exit(0);
    }
}

/// Prints the Rust and C medians, the median of the paired C / Rust ratios with its 95 %
/// interval, and the allocations per call.
fn report(name: &str, rounds: usize, batch: usize, rust: &mut dyn FnMut(), c: &mut dyn FnMut()) {
    let (ar, ac) = (allocs_per_call(rust), allocs_per_call(c));
    let p = paired(rounds, batch, rust, c);
    println!(
        "{name}: rust {:.3} us, c {:.3} us, C/Rust {:.3} (95 % interval {:.3}-{:.3}; medians of {rounds} paired batches of {batch}); allocations per call: rust {ar}, c {ac}",
        p.a, p.b, p.ratio, p.lo, p.hi
    );
}

fn nv12(name: &str, kind: AccessorKind, pitch_align: u64, base_align: u64) -> AttrList {
    let mut l = AttrList::image(PixelFormat::Nv12, 1920, 1080).expect("list");
    l.set_accessor_name(name)
        .and_then(|l| l.set_accessor_kind(kind))
        .and_then(|l| l.set_pitch_align(pitch_align))
        .and_then(|l| l.set_base_align(base_align))
        .and_then(|l| l.set_required_perm(Permission::ReadWrite))
        .expect("set");
    l
}

unsafe fn c_nv12(
    m: *mut attr::ub_module,
    name: &str,
    kind: u32,
    pa: u64,
    ba: u64,
) -> *mut attr::ub_attr_list {
    let mut l = std::ptr::null_mut();
    assert_eq!(unsafe { attr::ub_attr_list_create(m, &mut l) }, UB_SUCCESS);
    let types = UB_TYPE_IMAGE as u8;
    let fmt = PixelFormat::Nv12.code();
    let (w, h) = (1920u32, 1080u32);
    let perm = UB_PERM_READ_WRITE as u32;
    let kv = |k: keys::ub_key, p: *const u8, n: usize| ub_attr_kv {
        key: k as u32,
        value: p.cast(),
        len: n,
    };
    let pairs = [
        kv(UB_KEY_TYPES, &types, 1),
        kv(UB_KEY_IMAGE_FORMAT, (&fmt as *const u32).cast(), 4),
        kv(UB_KEY_IMAGE_WIDTH, (&w as *const u32).cast(), 4),
        kv(UB_KEY_IMAGE_HEIGHT, (&h as *const u32).cast(), 4),
        kv(UB_KEY_ACCESSOR_NAME, name.as_ptr(), name.len()),
        kv(UB_KEY_ACCESSOR_KIND, (&kind as *const u32).cast(), 4),
        kv(UB_KEY_IMAGE_PITCH_ALIGN, (&pa as *const u64).cast(), 8),
        kv(UB_KEY_IMAGE_BASE_ALIGN, (&ba as *const u64).cast(), 8),
        kv(UB_KEY_REQUIRED_PERMISSION, (&perm as *const u32).cast(), 4),
    ];
    assert_eq!(
        unsafe { attr::ub_attr_list_set_attrs(l, pairs.as_ptr(), pairs.len()) },
        UB_SUCCESS
    );
    l
}

fn bench(c: &mut Criterion) {
    // Reconcile: Rust, and C (the result is a handle, freed each time as a C caller would).
    let two = [
        nv12("camera", AccessorKind::Camera, 64, 64),
        nv12("display", AccessorKind::Display, 256, 4096),
    ];
    let mut rust_reconcile = || {
        black_box(reconcile(black_box(&two)).expect("reconciles"));
    };
    // What the Rust flow to an object does with the result (`Object::allocate` takes an
    // `Arc<Reconciled>`): a second baseline, and what a result on the heap costs (as a C handle
    // that is a plain pointer would hold it; the C handle's result lives in its slot).
    let mut rust_reconcile_arc = || {
        black_box(Arc::new(reconcile(black_box(&two)).expect("reconciles")));
    };
    let mut m = std::ptr::null_mut();
    assert_eq!(unsafe { attr::ub_module_open(&mut m) }, UB_SUCCESS);
    let cl = unsafe {
        [
            c_nv12(m, "camera", UB_ACCESSOR_CAMERA as u32, 64, 64).cast_const(),
            c_nv12(m, "display", UB_ACCESSOR_DISPLAY as u32, 256, 4096).cast_const(),
        ]
    };
    let mut c_reconcile = || unsafe {
        let mut r = std::ptr::null_mut();
        let st =
            attr::ub_attr_list_reconcile(black_box(cl.as_ptr()), 2, &mut r, std::ptr::null_mut());
        assert_eq!(st, UB_SUCCESS);
        assert_eq!(attr::ub_attr_list_free(r), UB_SUCCESS);
    };

    // The reconcile calls alone (before any object exists: valgrind cannot run rustix's auxv
    // reading, which the allocation does).
    run_only(&mut [
        ("rust-reconcile", &mut rust_reconcile),
        ("rust-reconcile-arc", &mut rust_reconcile_arc),
        ("c-reconcile", &mut c_reconcile),
    ]);

    // Object export + import over a socketpair (memfd: a CPU accessor).
    let mut l = AttrList::raw(1 << 16).expect("list");
    l.set_accessor_kind(AccessorKind::Cpu).expect("kind");
    let r = Arc::new(reconcile([&l]).expect("reconciles"));
    let obj = Object::allocate(&r).expect("allocates");
    let (mut a, mut bb) = Endpoint::pair().expect("pair");
    let mut rust_ipc = || {
        a.export_object(&obj, Permission::ReadOnly).expect("export");
        black_box(bb.import_object(Requested::ReadOnly, None).expect("import"));
    };
    let mut ea = std::ptr::null_mut();
    let mut eb = std::ptr::null_mut();
    assert_eq!(
        unsafe { ipc::ub_endpoint_pair(&mut ea, &mut eb) },
        UB_SUCCESS
    );
    let rl = unsafe {
        let types = UB_TYPE_RAW as u8;
        let size = 1u64 << 16;
        let kind = UB_ACCESSOR_CPU as u32;
        let mut l = std::ptr::null_mut();
        assert_eq!(attr::ub_attr_list_create(m, &mut l), UB_SUCCESS);
        let pairs = [
            ub_attr_kv {
                key: UB_KEY_TYPES as u32,
                value: (&types as *const u8).cast(),
                len: 1,
            },
            ub_attr_kv {
                key: UB_KEY_RAW_SIZE as u32,
                value: (&size as *const u64).cast(),
                len: 8,
            },
            ub_attr_kv {
                key: UB_KEY_ACCESSOR_KIND as u32,
                value: (&kind as *const u32).cast(),
                len: 4,
            },
        ];
        assert_eq!(
            attr::ub_attr_list_set_attrs(l, pairs.as_ptr(), 3),
            UB_SUCCESS
        );
        let mut rec = std::ptr::null_mut();
        let ls = [l.cast_const()];
        assert_eq!(
            attr::ub_attr_list_reconcile(ls.as_ptr(), 1, &mut rec, std::ptr::null_mut()),
            UB_SUCCESS
        );
        rec
    };
    let mut cobj = std::ptr::null_mut();
    assert_eq!(unsafe { object::ub_obj_alloc(rl, &mut cobj) }, UB_SUCCESS);
    let mut c_ipc = || unsafe {
        assert_eq!(
            ipc::ub_ipc_export_obj(ea, cobj, UB_PERM_READ_ONLY as u32),
            UB_SUCCESS
        );
        let mut o = std::ptr::null_mut();
        let st = ipc::ub_ipc_import_obj(
            eb,
            UB_PERM_READ_ONLY as u32,
            std::ptr::null(),
            0,
            ipc::UB_TIMEOUT_INFINITE,
            &mut o,
        );
        assert_eq!(st, UB_SUCCESS);
        assert_eq!(object::ub_obj_free(o), UB_SUCCESS);
    };

    run_only(&mut [("rust-ipc", &mut rust_ipc), ("c-ipc", &mut c_ipc)]);

    // The figures of the issue, from interleaved batches.
    report(
        "reconcile 2 NV12 1920x1080",
        301,
        200,
        &mut rust_reconcile,
        &mut c_reconcile,
    );
    report(
        "reconcile 2 NV12 1920x1080, Rust result put in an Arc",
        301,
        200,
        &mut rust_reconcile_arc,
        &mut c_reconcile,
    );
    report(
        "object export + import (memfd)",
        201,
        50,
        &mut rust_ipc,
        &mut c_ipc,
    );

    c.bench_function("rust: reconcile 2 NV12 1920x1080", |b| {
        b.iter(&mut rust_reconcile)
    });
    c.bench_function("c: ub_attr_list_reconcile 2 NV12 1920x1080 + free", |b| {
        b.iter(&mut c_reconcile)
    });
    c.bench_function("rust: object export + import (memfd)", |b| {
        b.iter(&mut rust_ipc)
    });
    c.bench_function(
        "c: ub_ipc_export_obj + ub_ipc_import_obj + ub_obj_free (memfd)",
        |b| b.iter(&mut c_ipc),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
