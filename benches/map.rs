//! Map-cycle benchmark: a 4 KiB memfd object mapped, accessed through a guard, and unmapped.
//!
//! - `map_cycle_4k/bare`: `mmap(PROT_READ|PROT_WRITE, MAP_SHARED)` + `munmap` of the object's
//!   memfd, straight through rustix: the floor.
//! - `map_cycle_4k/unibuf`: `Object::map_write` + `WriteMap::write` guard + drop of both (a memfd
//!   object has no dma-buf, so the guard issues no `DMA_BUF_IOCTL_SYNC`: the difference is
//!   unibuf's own work).
//!
//! Neither touches the pages: a first-touch page fault costs several times the whole cycle and
//! would hide the difference. Run: `cargo bench --bench map`; the figure is unibuf minus bare,
//! printed first as `map_cycle_4k: ...` from interleaved batches (the machine's load weighs on
//! both alike), then criterion's own measurements.

use criterion::{criterion_group, criterion_main, Criterion};
use rustix::mm::{MapFlags, ProtFlags};
use std::hint::black_box;
use std::sync::Arc;
use unibuf::attr::{AccessorKind, AttrList, BackendKind};
use unibuf::object::Object;
use unibuf::reconcile::reconcile;

include!("support/interleaved.rs");

fn memfd_object(size: u64) -> Object {
    let mut l = AttrList::raw(size).expect("raw list");
    l.set_need_cpu_access(true)
        .and_then(|l| l.set_accessor_kind(AccessorKind::Cpu))
        .and_then(|l| l.set_accessor_name("bench-map"))
        .and_then(|l| l.set_preferred_backend(BackendKind::Memfd))
        .expect("bench list");
    let r = Arc::new(reconcile([&l]).expect("bench list reconciles"));
    Object::allocate(&r).expect("memfd object")
}

/// mmap + munmap of `fd`, nothing touched.
fn bare_cycle(fd: rustix::fd::BorrowedFd<'_>, len: usize) {
    // SAFETY: a fresh shared mapping the kernel places, unmapped right away; nothing refers to
    // it.
    unsafe {
        let p = rustix::mm::mmap(
            std::ptr::null_mut(),
            black_box(len),
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )
        .expect("mmap");
        rustix::mm::munmap(black_box(p), len).expect("munmap");
    }
}

/// `map_write` + write guard + drop, nothing touched.
fn unibuf_cycle(o: &mut Object) {
    let mut w = o.map_write().expect("map_write");
    let guard = w.write().expect("write guard");
    black_box(guard.as_ptr());
    drop(guard);
    drop(w);
}

/// The figure, from interleaved batches: unibuf, bare, and the difference.
fn difference_report(_c: &mut Criterion) {
    let mut o = memfd_object(4096);
    let len = o.size() as usize;
    let fd = rustix::io::fcntl_dupfd_cloexec(o.fd(), 0).expect("dup");
    let med = interleaved(
        301,
        200,
        &mut [&mut || unibuf_cycle(&mut o), &mut || {
            bare_cycle(rustix::fd::AsFd::as_fd(&fd), len)
        }],
    );
    println!(
        "map_cycle_4k: unibuf {:.2} us, bare mmap+munmap {:.2} us, difference {:.2} us (medians of 301 interleaved batches)",
        med[0],
        med[1],
        med[0] - med[1]
    );
}

fn map_cycle(c: &mut Criterion) {
    let mut o = memfd_object(4096);
    let len = o.size() as usize;
    let fd = rustix::io::fcntl_dupfd_cloexec(o.fd(), 0).expect("dup");
    let mut g = c.benchmark_group("map_cycle_4k");
    g.bench_function("bare", |b| {
        b.iter(|| bare_cycle(rustix::fd::AsFd::as_fd(&fd), len))
    });
    g.bench_function("unibuf", |b| b.iter(|| unibuf_cycle(&mut o)));
    g.finish();
}

criterion_group!(benches, difference_report, map_cycle);
criterion_main!(benches);
