//! `gpu-bench`: GPU figures of unibuf's CUDA paths, each against a baseline measured in the same
//! run (feature `gpu`; run on the GPU machine by `scripts/gpu-test`).
//!
//! 1. GPU read bandwidth of the same kernel over an imported unibuf host buffer and over
//!    `cuMemHostAlloc` memory (interleaved repetitions, medians, the ratio).
//! 2. Import (registration) time of 64 MiB and 1 GiB objects, pages touched and untouched.
//! 3. Cross-process read-only import of a GPU-resident 64 MiB buffer (a cuda-vidmem object):
//!    from `export_object` to a mapped device pointer in the importer (whose context is already
//!    open), through `import_object` and `CudaBuffer::import`.

// The bench uses part of what the tests share.
#[allow(dead_code)]
#[path = "../tests/gpu/support.rs"]
mod support;

use anyhow::{bail, Context, Result};
use cudarc::driver::sys as cu;
use std::sync::Arc;
use std::time::{Duration, Instant};
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::interop::cuda::{Cuda, CudaBuffer, ImportPath};
use unibuf::ipc::{Endpoint, Requested};
use unibuf::object::Object;
use unibuf::reconcile::reconcile;

const MIB: u64 = 1 << 20;

fn object(cuda: &Cuda, size: u64) -> Result<Object> {
    let mut cpu = AttrList::raw(size)?;
    cpu.set_accessor_name("cpu")?
        .set_accessor_kind(AccessorKind::Cpu)?
        .set_required_perm(Permission::ReadWrite)?
        .set_need_cpu_access(true)?;
    let mut gpu = AttrList::raw(size)?;
    gpu.set_accessor_name("cuda")?
        .set_required_perm(Permission::ReadOnly)?;
    cuda.fill(&mut gpu)?;
    let r = Arc::new(reconcile([&cpu, &gpu]).map_err(|c| anyhow::anyhow!("{c}"))?);
    Ok(Object::allocate(&r)?)
}

fn touch(obj: &mut Object) -> Result<()> {
    let mut m = obj.map_write()?;
    let mut g = m.write()?;
    g.fill(0x11);
    g.end()?;
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Seconds one `xor_u32x4` pass over `len` bytes at `ptr` takes (CUDA events).
fn timed_read(cuda: &Cuda, k: &support::Kernels<'_>, ptr: u64, len: u64) -> Result<f64> {
    let mut start: cu::CUevent = std::ptr::null_mut();
    let mut stop: cu::CUevent = std::ptr::null_mut();
    // SAFETY: creates two events in the current context, destroyed below.
    unsafe {
        if cu::cuEventCreate(&mut start, 0) != cu::CUresult::CUDA_SUCCESS
            || cu::cuEventCreate(&mut stop, 0) != cu::CUresult::CUDA_SUCCESS
        {
            bail!("cuEventCreate");
        }
    }
    k.xor_reset()?;
    // SAFETY: records on the null stream of the current context.
    unsafe { cu::cuEventRecord(start, std::ptr::null_mut()) };
    k.xor_u32_async(ptr, len / 4)?;
    // SAFETY: as above.
    unsafe { cu::cuEventRecord(stop, std::ptr::null_mut()) };
    cuda.synchronize()?;
    let mut ms = 0f32;
    // SAFETY: both events were recorded and have completed (synchronized).
    let r = unsafe { cu::cuEventElapsedTime_v2(&mut ms, start, stop) };
    // SAFETY: destroys the two events made above.
    unsafe {
        cu::cuEventDestroy_v2(start);
        cu::cuEventDestroy_v2(stop);
    }
    if r != cu::CUresult::CUDA_SUCCESS {
        bail!("cuEventElapsedTime: {r:?}");
    }
    Ok(f64::from(ms) / 1000.0)
}

fn bandwidth(cuda: &Cuda) -> Result<()> {
    let k = support::Kernels::load(cuda)?;
    let size = 1024 * MIB;
    let mut obj = object(cuda, size)?;
    touch(&mut obj)?;
    let imported = CudaBuffer::import(cuda, &obj)?;
    let mut host: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: allocates `size` bytes of pinned, device-mapped host memory, freed below.
    let r = unsafe { cu::cuMemHostAlloc(&mut host, size as usize, cu::CU_MEMHOSTALLOC_DEVICEMAP) };
    if r != cu::CUresult::CUDA_SUCCESS {
        bail!("cuMemHostAlloc: {r:?}");
    }
    // SAFETY: `host` is `size` writable bytes just allocated.
    unsafe { std::ptr::write_bytes(host.cast::<u8>(), 0x11, size as usize) };
    let mut hptr: cu::CUdeviceptr = 0;
    // SAFETY: the device address of the allocation above.
    let r = unsafe { cu::cuMemHostGetDevicePointer_v2(&mut hptr, host, 0) };
    if r != cu::CUresult::CUDA_SUCCESS {
        bail!("cuMemHostGetDevicePointer: {r:?}");
    }
    // Warm-up, then interleaved repetitions.
    timed_read(cuda, &k, imported.device_ptr(), size)?;
    timed_read(cuda, &k, hptr, size)?;
    let (mut u, mut b) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        u.push(size as f64 / timed_read(cuda, &k, imported.device_ptr(), size)? / 1e9);
        b.push(size as f64 / timed_read(cuda, &k, hptr, size)? / 1e9);
    }
    let (mu, mb) = (median(&mut u), median(&mut b));
    println!(
        "BENCH gpu-read 1GiB unibuf-memfd-registered {mu:.1} GB/s, cuMemHostAlloc {mb:.1} GB/s, \
         RATIO {:.3} (median of 7 interleaved passes; xor_u32x4 kernel, {})",
        mu / mb,
        cuda.label()
    );
    drop(imported);
    // SAFETY: frees the allocation made above, after its last use.
    unsafe { cu::cuMemFreeHost(host) };
    Ok(())
}

fn registration(cuda: &Cuda) -> Result<()> {
    for size in [64 * MIB, 1024 * MIB] {
        for touched in [true, false] {
            let mut times = Vec::new();
            for _ in 0..3 {
                let mut obj = object(cuda, size)?;
                if touched {
                    touch(&mut obj)?;
                }
                let t = Instant::now();
                let g = CudaBuffer::import(cuda, &obj)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                drop(g);
            }
            println!(
                "BENCH import {} MiB pages {}: {:.2} ms median of 3 (mmap + cuMemHostRegister + \
                 device pointer)",
                size / MIB,
                if touched { "touched" } else { "untouched" },
                median(&mut times)
            );
        }
    }
    Ok(())
}

fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the time into `t`; CLOCK_MONOTONIC is the same clock in every process.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

const VIDMEM_RUNS: usize = 5;

/// Figure 3 through the unibuf path: `Object::allocator` on a `vidmem_gpu` list (the cuda-vidmem
/// backend), `export_object` read-only over a socket to a forked importer whose CUDA context is
/// already open, `import_object` + `CudaBuffer::import` there. Timed from just before
/// `export_object` to the importer holding the mapped device pointer; each run a new object.
fn cross_process_vidmem() -> Result<()> {
    let size = 64 * MIB;
    let (mut ep, child_ep) = Endpoint::pair()?;
    child_ep.set_recv_timeout(Some(Duration::from_secs(60)))?;
    // SAFETY: single-threaded here; the child opens CUDA itself after the fork and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(ep);
        let code = match importer(child_ep, size) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("importer: {e:#}");
                1
            }
        };
        // SAFETY: no preconditions.
        unsafe { libc::_exit(code) };
    }
    drop(child_ep);
    ep.set_recv_timeout(Some(Duration::from_secs(60)))?;
    let cuda = Cuda::open(0)?;
    let mut l = AttrList::raw(size)?;
    l.set_accessor_name("cuda-vidmem")?
        .set_required_perm(Permission::ReadWrite)?;
    cuda.fill(&mut l)?;
    l.set_vidmem_gpu(cuda.gpu_id())?;
    let r = Arc::new(reconcile([&l]).map_err(|c| anyhow::anyhow!("{c}"))?);
    let mut us = Vec::new();
    for _ in 0..VIDMEM_RUNS {
        let obj = Object::allocator(&r).allocate()?;
        ep.recv_data().context("importer ready")?;
        let t0 = monotonic_ns();
        ep.export_object(&obj, Permission::ReadOnly)?;
        let t1 = u64::from_ne_bytes(ep.recv_data()?.as_slice().try_into()?);
        us.push(Duration::from_nanos(t1.saturating_sub(t0)).as_secs_f64() * 1e6);
    }
    let mut st = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
        bail!("importer failed ({st:#x})");
    }
    let all = us.iter().map(|u| format!("{u:.1}")).collect::<Vec<_>>();
    println!(
        "BENCH vidmem 64 MiB cross-process read-only import: median {:.1} us (runs: {} us) from \
         export_object to a PROT_READ device pointer in the importer (cuda-vidmem object; \
         SCM_RIGHTS + import_object + CudaBuffer::import: cuMemImportFromShareableHandle + \
         cuMemAddressReserve + cuMemMap + cuMemSetAccess)",
        median(&mut us),
        all.join(", ")
    );
    Ok(())
}

fn importer(mut ep: Endpoint, size: u64) -> Result<()> {
    let cuda = Cuda::open(0)?;
    let mut own = AttrList::raw(size)?;
    own.set_accessor_name("cuda-importer")?
        .set_accessor_kind(AccessorKind::Gpu)?
        .set_required_perm(Permission::ReadOnly)?;
    let own = [own];
    for _ in 0..VIDMEM_RUNS {
        ep.send_data(b"ready")?;
        let obj = ep.import_object(Requested::ReadOnly, Some(&own))?;
        let g = CudaBuffer::import(&cuda, &obj)?;
        let t1 = monotonic_ns();
        if g.path() != (ImportPath::Vidmem { read_only: true }) {
            bail!("imported as {:?}", g.path());
        }
        ep.send_data(&t1.to_ne_bytes())?;
    }
    Ok(())
}

fn main() -> Result<()> {
    if let Err(why) = Cuda::available() {
        println!("BENCH SKIP: {why}");
        return Ok(());
    }
    // The cross-process figure forks before this process opens CUDA.
    cross_process_vidmem().context("cross-process vidmem import")?;
    let cuda = Cuda::open(0)?;
    println!("BENCH device {} uuid {}", cuda.label(), cuda.gpu_id());
    bandwidth(&cuda).context("bandwidth")?;
    registration(&cuda).context("registration")?;
    Ok(())
}
