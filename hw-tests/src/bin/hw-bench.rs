//! `hw-bench`: unibuf's backend micro-benchmarks, each reported as a ratio against a baseline
//! measured in the same run (so figures from a slow VM and a fast host compare).
//!
//! - allocation through unibuf (`Object::allocator(..).backends(b).allocate()`: choice, allocation, naming, object) vs a
//!   bare `DMA_HEAP_IOCTL_ALLOC` + `close` loop on an open heap fd, at 4 KiB, 1 MiB and 8 MiB
//!   (target: ≤ 1.05×); with no heap (the host), the memfd path vs bare
//!   `memfd_create` + `ftruncate` + `close` (and, informative, against the same plus the
//!   `F_SEAL_SHRINK` seal unibuf puts on every memfd);
//! - memcpy into a mapped buffer vs into anonymous memory of the same size (target: ≥ 0.95×);
//! - a `DMA_BUF_IOCTL_SYNC` start+end pair on a buffer no device has attached (target: ≤ 2 µs).
//!
//! Baseline and candidate run in alternating batches; each figure is the median of the batches.
//! Usage: `hw-bench [--rounds N]` (default 101 rounds).

use rustix::fd::{AsFd, OwnedFd};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use unibuf::attr::{AccessorKind, AttrList, BackendKind};
use unibuf::backend::{Backends, HeapClass};
use unibuf::map::{sync_end, sync_start, SyncDir};
use unibuf::object::Object;
use unibuf::reconcile::{reconcile, Reconciled};

/// Median and minimum of the batches (the minimum is the figure least disturbed by other load on
/// the machine; both are printed).
#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(|a, b| a.total_cmp(b));
    Stat {
        median: v[v.len() / 2],
        min: v[0],
    }
}

/// Runs `f` in batches sized to take about `batch` each; returns ns per call for each batch.
fn batches(
    rounds: usize,
    batch: Duration,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (Stat, Stat) {
    // Calibrate on `a`.
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            a();
        }
        let e = t.elapsed();
        if e >= batch / 4 || n >= 1 << 24 {
            let per = e.as_secs_f64() / n as f64;
            n = ((batch.as_secs_f64() / per) as u64).max(1);
            break;
        }
        n *= 2;
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let run = |f: &mut dyn FnMut(), out: &mut Vec<f64>| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            out.push(t.elapsed().as_nanos() as f64 / n as f64);
        };
        // Alternate which goes first, so drift hurts both alike.
        if r % 2 == 0 {
            run(&mut a, &mut ta);
            run(&mut b, &mut tb);
        } else {
            run(&mut b, &mut tb);
            run(&mut a, &mut ta);
        }
    }
    (stat(ta), stat(tb))
}

fn list(size: u64, kind: BackendKind) -> Arc<Reconciled> {
    let mut l = AttrList::raw(size).expect("raw list");
    let accessor = if kind == BackendKind::Memfd {
        AccessorKind::Cpu
    } else {
        AccessorKind::Device
    };
    l.set_need_cpu_access(true)
        .and_then(|l| l.set_accessor_kind(accessor))
        .and_then(|l| l.set_accessor_name("bench"))
        .and_then(|l| l.set_preferred_backend(kind))
        .expect("bench list");
    Arc::new(reconcile([&l]).expect("bench list reconciles"))
}

fn size_name(s: u64) -> String {
    if s >= 1 << 20 {
        format!("{}MiB", s >> 20)
    } else {
        format!("{}KiB", s >> 10)
    }
}

fn bare_heap_alloc(heap: &OwnedFd, len: u64) {
    drop(bare_heap_fd(heap, len));
}

/// The bare allocation plus the `DMA_BUF_SET_NAME` unibuf does on every buffer, to show how much
/// of the difference is the naming the design asks for.
fn bare_heap_alloc_named(heap: &OwnedFd, len: u64) {
    static NAME: std::sync::OnceLock<unibuf::backend::BufferName> = std::sync::OnceLock::new();
    let name = NAME.get_or_init(|| unibuf::backend::BufferName::new("bench").expect("name"));
    let fd = bare_heap_fd(heap, len);
    unibuf::backend::set_name(fd.as_fd(), name).expect("DMA_BUF_SET_NAME");
}

fn bare_heap_fd(heap: &OwnedFd, len: u64) -> OwnedFd {
    unibuf::sys::dma_heap::alloc(
        heap.as_fd(),
        len,
        (libc::O_RDWR | libc::O_CLOEXEC) as u32,
        0,
    )
    .expect("bare DMA_HEAP_IOCTL_ALLOC")
}

fn bare_memfd_alloc(len: u64) {
    let fd = rustix::fs::memfd_create("bench", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    rustix::fs::ftruncate(&fd, len).expect("ftruncate");
    drop(fd);
}

/// The bare memfd allocation plus the `F_SEAL_SHRINK` seal unibuf puts on every memfd (required
/// for soundness), to show how much of the difference is the seal.
fn bare_memfd_alloc_sealed(len: u64) {
    let fd = rustix::fs::memfd_create(
        "bench",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .expect("memfd");
    rustix::fs::ftruncate(&fd, len).expect("ftruncate");
    rustix::fs::fcntl_add_seals(&fd, rustix::fs::SealFlags::SHRINK).expect("F_ADD_SEALS");
    drop(fd);
}

fn bench_alloc(b: &Backends, rounds: usize) {
    let heap = b.heap(HeapClass::System).and_then(|h| {
        rustix::fs::open(
            &h.path,
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()
    });
    for size in [4u64 << 10, 1 << 20, 8 << 20] {
        match &heap {
            Some(h) => {
                let l = list(size, BackendKind::SystemHeap);
                let (ub, bare) = batches(
                    rounds,
                    Duration::from_millis(2),
                    || {
                        drop(black_box(
                            Object::allocator(&l)
                                .backends(b)
                                .allocate()
                                .expect("allocate"),
                        ))
                    },
                    || bare_heap_alloc(h, size),
                );
                report_alloc("system-heap", size, ub, bare, "DMA_HEAP_IOCTL_ALLOC+close");
                let (ub, named) = batches(
                    rounds,
                    Duration::from_millis(2),
                    || {
                        drop(black_box(
                            Object::allocator(&l)
                                .backends(b)
                                .allocate()
                                .expect("allocate"),
                        ))
                    },
                    || bare_heap_alloc_named(h, size),
                );
                println!(
                    "BENCH alloc system-heap {}: vs bare ALLOC+SET_NAME+close {:.2} us: ratio {:.3} \
                     (min-of-batches {:.3}) (informative: naming is part of unibuf's allocation)",
                    size_name(size),
                    named.median / 1e3,
                    ub.median / named.median,
                    ub.min / named.min
                );
            }
            None => {
                let l = list(size, BackendKind::Memfd);
                let (ub, bare) = batches(
                    rounds,
                    Duration::from_millis(2),
                    || {
                        drop(black_box(
                            Object::allocator(&l)
                                .backends(b)
                                .allocate()
                                .expect("allocate"),
                        ))
                    },
                    || bare_memfd_alloc(size),
                );
                report_alloc("memfd", size, ub, bare, "memfd_create+ftruncate+close");
                let (ub, sealed) = batches(
                    rounds,
                    Duration::from_millis(2),
                    || {
                        drop(black_box(
                            Object::allocator(&l)
                                .backends(b)
                                .allocate()
                                .expect("allocate"),
                        ))
                    },
                    || bare_memfd_alloc_sealed(size),
                );
                println!(
                    "BENCH alloc memfd {}: vs bare memfd_create+ftruncate+F_SEAL_SHRINK+close {:.2} us: \
                     ratio {:.3} (min-of-batches {:.3}) (informative: the seal is part of unibuf's \
                     allocation)",
                    size_name(size),
                    sealed.median / 1e3,
                    ub.median / sealed.median,
                    ub.min / sealed.min
                );
            }
        }
    }
}

fn report_alloc(what: &str, size: u64, ub: Stat, bare: Stat, base: &str) {
    let ratio = ub.median / bare.median;
    println!(
        "BENCH alloc {what} {}: unibuf {:.2} us, bare {base} {:.2} us, ratio {ratio:.3} \
         (min-of-batches ratio {:.3}) (target <= 1.05) {}",
        size_name(size),
        ub.median / 1e3,
        bare.median / 1e3,
        ub.min / bare.min,
        if ratio <= 1.05 { "MET" } else { "NOT MET" }
    );
}

fn bench_memcpy(b: &Backends, kind: BackendKind, rounds: usize) {
    let size = 8u64 << 20;
    let mut o = match Object::allocator(&list(size, kind)).backends(b).allocate() {
        Ok(o) => o,
        Err(e) => {
            println!("BENCH memcpy {kind}: not run: {e}");
            return;
        }
    };
    let src = vec![0x5Au8; size as usize];
    let mut anon = vec![0u8; size as usize];
    anon.fill(1); // fault the pages in
    let mut w = o.map_write().expect("map_write");
    let mut g = w.write().expect("begin write");
    g.fill(1);
    let (mapped, plain) = batches(
        rounds,
        Duration::from_millis(5),
        || {
            g.copy_from_slice(0, black_box(&src))
                .expect("copy into the map");
            black_box(g.as_mut_ptr());
        },
        || {
            anon.copy_from_slice(black_box(&src));
            black_box(&mut anon);
        },
    );
    drop(g);
    let gbs = |ns: f64| size as f64 / ns; // bytes per ns = GB/s
    let ratio = gbs(mapped.median) / gbs(plain.median);
    println!(
        "BENCH memcpy {kind} 8MiB: mapped {:.2} GB/s, anonymous {:.2} GB/s, ratio {ratio:.3} \
         (min-of-batches ratio {:.3}) (target >= 0.95) {}",
        gbs(mapped.median),
        gbs(plain.median),
        plain.min / mapped.min,
        if ratio >= 0.95 { "MET" } else { "NOT MET" }
    );
}

fn bench_sync(b: &Backends, kind: BackendKind, rounds: usize) {
    let o = match Object::allocator(&list(1 << 20, kind))
        .backends(b)
        .allocate()
    {
        Ok(o) => o,
        Err(e) => {
            println!("BENCH sync {kind}: not run: {e}");
            return;
        }
    };
    let fd = o.fd();
    let (pair, empty) = batches(
        rounds,
        Duration::from_millis(2),
        || {
            sync_start(fd.as_fd(), SyncDir::ReadWrite).expect("sync start");
            sync_end(fd.as_fd(), SyncDir::ReadWrite).expect("sync end");
        },
        || {
            // Baseline: a cheap syscall pair, to show what a round trip into the kernel costs here.
            black_box(rustix::process::getpid());
            black_box(rustix::process::getpid());
        },
    );
    println!(
        "BENCH sync {kind} start+end pair: {:.3} us (min {:.3} us; two getpid: {:.3} us, ratio {:.2}) \
         (target <= 2 us) {}",
        pair.median / 1e3,
        pair.min / 1e3,
        empty.median / 1e3,
        pair.median / empty.median,
        if pair.median <= 2000.0 { "MET" } else { "NOT MET" }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(101usize)
        .max(1);
    let b = Backends::discover();
    println!(
        "BENCH-ENV kernel {}",
        rustix::system::uname().release().to_string_lossy()
    );
    for line in b.to_string().lines() {
        println!("BENCH-ENV {line}");
    }
    bench_alloc(&b, rounds);
    let dma_buf = [
        BackendKind::SystemHeap,
        BackendKind::Udmabuf,
        BackendKind::DrmDumb,
    ]
    .into_iter()
    .filter(|k| b.has(*k))
    .collect::<Vec<_>>();
    for k in &dma_buf {
        bench_memcpy(&b, *k, rounds);
    }
    if dma_buf.is_empty() {
        bench_memcpy(&b, BackendKind::Memfd, rounds);
        println!("BENCH sync: not run: no dma-buf provider on this machine");
    }
    for k in &dma_buf {
        bench_sync(&b, *k, rounds);
    }
}
