//! Reconciliation micro-benchmarks: two and ten NV12 1920x1080 lists, two and 64 such lists
//! with modifier sets of 8 entries each, and a key lookup.
//!
//! Run: `cargo bench --bench reconcile` (short measurement times: the machines are shared).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, Key, Permission};
use unibuf::layout::modifier::{nvidia_block_linear_2d, I915_X_TILED, LINEAR};
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

/// Eight modifiers (LINEAR, Intel X-tiled, block-linear h = 0..5), rotated by `i` so that every
/// list has its own order.
fn modifier_set(i: usize) -> Vec<u64> {
    let mut set = vec![LINEAR, I915_X_TILED];
    set.extend((0..6).map(|h| nvidia_block_linear_2d(0, 1, 2, 0x06, h)));
    set.rotate_left(i % 8);
    set
}

fn nv12_with_set(i: usize, kind: AccessorKind) -> AttrList {
    let mut l = nv12(
        &format!("accessor{i}"),
        kind,
        1 << (i % 9),
        1 << (6 + i % 7),
    );
    l.set_image_modifiers(modifier_set(i)).expect("set");
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
    let two_sets = [
        nv12_with_set(0, AccessorKind::Gpu),
        nv12_with_set(3, AccessorKind::Display),
    ];
    let sixty_four: Vec<AttrList> = (0..64).map(|i| nv12_with_set(i, kinds[i % 5])).collect();
    c.bench_function("reconcile 2 NV12 1920x1080, 8 modifiers each", |b| {
        b.iter(|| reconcile(black_box(&two_sets)).expect("reconciles"))
    });
    c.bench_function("reconcile 64 NV12 1920x1080, 8 modifiers each", |b| {
        b.iter(|| reconcile(black_box(&sixty_four)).expect("reconciles"))
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
