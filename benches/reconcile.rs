//! Reconciliation micro-benchmarks: two and ten NV12 1920x1080 lists, and a key lookup.
//!
//! Run: `cargo bench --bench reconcile` (short measurement times: the machines are shared).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, Key, Permission};
use unibuf::layout::PixelFormat;
use unibuf::reconcile::reconcile;

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

fn bench(c: &mut Criterion) {
    let two = [
        nv12("camera", AccessorKind::Camera, 64, 64),
        nv12("display", AccessorKind::Display, 256, 4096),
    ];
    let kinds = [
        AccessorKind::Camera,
        AccessorKind::Display,
        AccessorKind::Gpu,
        AccessorKind::Cpu,
        AccessorKind::Device,
    ];
    let ten: Vec<AttrList> = (0..10)
        .map(|i| {
            nv12(
                &format!("accessor{i}"),
                kinds[i % 5],
                1 << (i % 9),
                1 << (6 + i % 7),
            )
        })
        .collect();
    c.bench_function("reconcile 2 NV12 1920x1080", |b| {
        b.iter(|| reconcile(black_box(&two)).expect("reconciles"))
    });
    c.bench_function("reconcile 10 NV12 1920x1080", |b| {
        b.iter(|| reconcile(black_box(&ten)).expect("reconciles"))
    });
    c.bench_function("key lookup", |b| {
        b.iter(|| {
            black_box(&two[0])
                .get(black_box(Key::ImagePitchAlign))
                .is_some()
        })
    });
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
