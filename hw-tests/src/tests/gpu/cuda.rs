//! CUDA tests: unibuf objects imported into CUDA, read-only enforced by the GPU's MMU, GPU-resident
//! memory across processes, and its dma-buf view.
//!
//! Processes: CUDA must not be initialised before a `fork` (the child could not use it), so every
//! test forks its peers first and each process opens CUDA for itself.

use super::support::{self, fd_channel, recv_fd, send_fd, Kernels};
use crate::harness::{pass, skip, Outcome, Test};
use crate::tests::ipc::{fork_peer, wait};
use anyhow::{bail, ensure, Context};
use rustix::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::interop::cuda::{Cuda, CudaBuffer, ImportPath, Vidmem, VidmemMapping};
use unibuf::ipc::{Endpoint, Requested};
use unibuf::object::Object;
use unibuf::reconcile::{reconcile, Reconciled};

/// The CUDA tests.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "gpu::cuda_memfd_kernel_roundtrip",
            needs: "an NVIDIA GPU with HOST_REGISTER_SUPPORTED",
            run: memfd_kernel_roundtrip,
        },
        Test {
            name: "gpu::cuda_read_only_write_faults",
            needs: "an NVIDIA GPU with READ_ONLY_HOST_REGISTER_SUPPORTED",
            run: read_only_write_faults,
        },
        Test {
            name: "gpu::cuda_ipc_read_only_consumer",
            needs: "an NVIDIA GPU with READ_ONLY_HOST_REGISTER_SUPPORTED",
            run: ipc_read_only_consumer,
        },
        Test {
            name: "gpu::cuda_vidmem_across_processes",
            needs: "an NVIDIA GPU with VMM and POSIX-fd handles",
            run: vidmem_across_processes,
        },
        Test {
            name: "gpu::cuda_vidmem_dma_buf",
            needs: "an NVIDIA GPU with DMA_BUF_SUPPORTED",
            run: vidmem_dma_buf,
        },
    ]
}

/// Opens device 0, or says why the test is skipped.
pub(super) fn open() -> std::result::Result<Cuda, String> {
    Cuda::available()?;
    Cuda::open(0).map_err(|e| e.to_string())
}

macro_rules! cuda_or_skip {
    () => {
        match open() {
            Ok(c) => c,
            Err(why) => return skip(why),
        }
    };
}

/// Skips (with the reason) where no CUDA device is, before any fork.
fn probe() -> std::result::Result<(), String> {
    Cuda::available()
}

/// The CPU producer's and the GPU's lists for a raw buffer of `size` bytes; the GPU list is
/// filled by the CUDA provider.
fn cpu_gpu_lists(cuda: &Cuda, size: u64, gpu_perm: Permission) -> anyhow::Result<[AttrList; 2]> {
    let mut cpu = AttrList::raw(size)?;
    cpu.set_accessor_name("cpu")?
        .set_accessor_kind(AccessorKind::Cpu)?
        .set_required_perm(Permission::ReadWrite)?
        .set_need_cpu_access(true)?;
    let mut gpu = AttrList::raw(size)?;
    gpu.set_accessor_name("cuda")?.set_required_perm(gpu_perm)?;
    cuda.fill(&mut gpu)?;
    Ok([cpu, gpu])
}

fn allocate(lists: &[AttrList]) -> anyhow::Result<(Arc<Reconciled>, Object)> {
    let r = Arc::new(reconcile(lists.iter()).map_err(|c| anyhow::anyhow!("{c}"))?);
    let obj = Object::allocate(&r)?;
    Ok((r, obj))
}

fn pattern(words: usize, seed: u32) -> Vec<u32> {
    (0..words as u32)
        .map(|i| i.wrapping_mul(2_654_435_761).wrapping_add(seed))
        .collect()
}

fn write_words(obj: &mut Object, words: &[u32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut m = obj.map_write()?;
    let mut g = m.write()?;
    g.copy_from_slice(0, &bytes)?;
    g.end()?;
    Ok(())
}

fn read_words(obj: &Object) -> anyhow::Result<Vec<u32>> {
    let m = obj.map_read()?;
    let g = m.read()?;
    let bytes = g.to_vec();
    g.end()?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn xor_all(words: &[u32]) -> u32 {
    words.iter().fold(0, |a, w| a ^ w)
}

const MIB: u64 = 1 << 20;

/// Build test 1: a memfd object → a CUDA kernel → a second object, byte-exact.
fn memfd_kernel_roundtrip() -> anyhow::Result<Outcome> {
    let cuda = cuda_or_skip!();
    let k = Kernels::load(&cuda)?;
    let size = 16 * MIB;
    let (_ra, mut a) = allocate(&cpu_gpu_lists(&cuda, size, Permission::ReadOnly)?)?;
    let (_rb, b) = allocate(&cpu_gpu_lists(&cuda, size, Permission::ReadWrite)?)?;
    let words = (size / 4) as usize;
    let src = pattern(words, 7);
    write_words(&mut a, &src)?;
    let ga = CudaBuffer::import(&cuda, &a)?;
    let gb = CudaBuffer::import(&cuda, &b)?;
    ensure!(
        matches!(ga.path(), ImportPath::HostRegistered { read_only: false }),
        "{:?}",
        ga.path()
    );
    k.not_u32(gb.device_ptr(), ga.device_ptr(), words as u64)?;
    cuda.synchronize()?;
    let out = read_words(&b)?;
    let bad = out.iter().zip(&src).filter(|(o, s)| **o != !**s).count();
    ensure!(bad == 0, "{bad} of {words} words differ after the kernel");
    pass(format!(
        "{} MiB {:?} objects ({:?}) through not_u32 on {}: byte-exact; {}",
        size / MIB,
        a.backend(),
        a.name(),
        cuda.label(),
        ga.applied()
    ))
}

/// A child that opens CUDA, imports `obj` (a read-only handle), checks it reads right and that a
/// write faults. Exit 0 only when the write faulted.
fn faulting_reader(obj: &Object, expect_xor: u32) -> anyhow::Result<String> {
    let cuda = open().map_err(anyhow::Error::msg)?;
    let k = Kernels::load(&cuda)?;
    let g = CudaBuffer::import(&cuda, obj)?;
    ensure!(
        g.path() == ImportPath::HostRegistered { read_only: true },
        "read-only handle imported as {:?}",
        g.path()
    );
    let got = k.xor_u32(g.device_ptr(), g.len() as u64 / 4)?;
    ensure!(
        got == expect_xor,
        "the GPU read xor {got:#x}, expected {expect_xor:#x}"
    );
    k.fill_u32(g.device_ptr(), g.len() as u64 / 4, 0xdead_beef)?;
    match cuda.synchronize() {
        Ok(()) => bail!("a GPU write into a read-only registration did not fault"),
        Err(e) => Ok(format!("read right (xor {got:#x}); write faulted: {e}")),
    }
}

/// Build test 2: a read-only handle's GPU write faults in a subprocess; memory unchanged; the
/// parent's context (made before the fault) still runs kernels.
fn read_only_write_faults() -> anyhow::Result<Outcome> {
    if let Err(why) = probe() {
        return skip(why);
    }
    let size = 4 * MIB;
    let (mut a, b) = Endpoint::pair()?;
    b.set_recv_timeout(Some(Duration::from_secs(60)))?;
    let pid = fork_peer(b, |mut ep| {
        // Wait for the parent's object before touching CUDA.
        let own = ro_gpu_list_for_child(size)?;
        let obj = ep.import_object(Requested::ReadOnly, Some(&own))?;
        let xor = u32::from_ne_bytes(ep.recv_data()?.as_slice().try_into()?);
        let note = faulting_reader(&obj, xor)?;
        ep.send_data(note.as_bytes())?;
        Ok(())
    })?;
    let cuda = cuda_or_skip!();
    let k = Kernels::load(&cuda)?;
    let (_r, mut obj) = allocate(&cpu_gpu_lists(&cuda, size, Permission::ReadOnly)?)?;
    let words = pattern((size / 4) as usize, 3);
    write_words(&mut obj, &words)?;
    let mine = CudaBuffer::import(&cuda, &obj)?;
    a.set_recv_timeout(Some(Duration::from_secs(60)))?;
    a.export_object(&obj, Permission::ReadOnly)?;
    a.send_data(&xor_all(&words).to_ne_bytes())?;
    let note = a.recv_data().context("the faulting child's report")?;
    wait(pid)?;
    ensure!(
        read_words(&obj)? == words,
        "memory changed by the faulting write"
    );
    // The parent's context is alive: its own kernel runs and reads the same data.
    let got = k.xor_u32(mine.device_ptr(), mine.len() as u64 / 4)?;
    cuda.synchronize()
        .context("the parent's context after the child's fault")?;
    ensure!(got == xor_all(&words), "parent read xor {got:#x}");
    pass(format!(
        "child: {}; memory unchanged; parent context alive",
        String::from_utf8_lossy(&note)
    ))
}

/// A read-only GPU consumer's list that the child builds without CUDA (the GPU id is filled by
/// the producer's provider; the consumer states its accessor kind and permission).
fn ro_gpu_list_for_child(size: u64) -> anyhow::Result<Vec<AttrList>> {
    let mut l = AttrList::raw(size)?;
    l.set_accessor_name("cuda-consumer")?
        .set_accessor_kind(AccessorKind::Gpu)?
        .set_required_perm(Permission::ReadOnly)?;
    Ok(vec![l])
}

/// Build item 4 / test 3: a producer writes frames; a consumer process imports them read-only
/// over IPC and into CUDA; its kernel reads each frame right; its write faults in the consumer
/// only; the producer's data and CUDA context are intact.
fn ipc_read_only_consumer() -> anyhow::Result<Outcome> {
    if let Err(why) = probe() {
        return skip(why);
    }
    const FRAMES: u32 = 8;
    let size = 8 * MIB;
    let (mut a, b) = Endpoint::pair()?;
    b.set_recv_timeout(Some(Duration::from_secs(60)))?;
    let pid = fork_peer(b, |mut ep| {
        let own = ro_gpu_list_for_child(size)?;
        let obj = ep.import_object(Requested::ReadOnly, Some(&own))?;
        ensure!(
            obj.permission() == Permission::ReadOnly,
            "consumer holds {}",
            obj.permission()
        );
        let cuda = open().map_err(anyhow::Error::msg)?;
        let k = Kernels::load(&cuda)?;
        let g = CudaBuffer::import(&cuda, &obj)?;
        for _ in 0..FRAMES {
            let _frame = ep.recv_data()?; // "frame ready"
            let x = k.xor_u32(g.device_ptr(), g.len() as u64 / 4)?;
            ep.send_data(&x.to_ne_bytes())?;
        }
        k.fill_u32(g.device_ptr(), g.len() as u64 / 4, 0)?;
        let r = cuda.synchronize();
        ensure!(
            r.is_err(),
            "the consumer's write into its read-only import did not fault"
        );
        ep.send_data(b"faulted")?;
        Ok(())
    })?;
    let cuda = cuda_or_skip!();
    let k = Kernels::load(&cuda)?;
    let (_r, mut obj) = allocate(&cpu_gpu_lists(&cuda, size, Permission::ReadOnly)?)?;
    // The GPU import borrows its handle, so the CPU writes through another handle of the buffer.
    let gpu_handle = obj.dup()?;
    let mine = CudaBuffer::import(&cuda, &gpu_handle)?;
    a.set_recv_timeout(Some(Duration::from_secs(60)))?;
    a.export_object(&obj, Permission::ReadOnly)?;
    let mut last = Vec::new();
    for f in 0..FRAMES {
        let words = pattern((size / 4) as usize, 1000 + f);
        write_words(&mut obj, &words)?;
        a.send_data(&f.to_ne_bytes())?;
        let got = u32::from_ne_bytes(a.recv_data()?.as_slice().try_into()?);
        ensure!(
            got == xor_all(&words),
            "frame {f}: the consumer's GPU read xor {got:#x}, expected {:#x}",
            xor_all(&words)
        );
        last = words;
    }
    ensure!(
        a.recv_data()? == b"faulted",
        "consumer did not report its fault"
    );
    wait(pid)?;
    ensure!(read_words(&obj)? == last, "the producer's data changed");
    let x = k.xor_u32(mine.device_ptr(), mine.len() as u64 / 4)?;
    cuda.synchronize().context("the producer's context")?;
    ensure!(x == xor_all(&last), "producer's own GPU read {x:#x}");
    pass(format!(
        "{FRAMES} frames of {} MiB read right by the consumer's kernel through a read-only \
         import; its write faulted there only; producer data and context intact",
        size / MIB
    ))
}

/// Build item 2 / test 4: GPU-resident memory shared by its POSIX-fd handle with one read-only
/// and one read-write importer process.
fn vidmem_across_processes() -> anyhow::Result<Outcome> {
    if let Err(why) = probe() {
        return skip(why);
    }
    let size = 64 * MIB as usize;
    let (ro_tx, ro_rx) = fd_channel()?;
    let (rw_tx, rw_rx) = fd_channel()?;
    let child = |perm: Permission, rx: OwnedFd| {
        move |mut ep: Endpoint| -> anyhow::Result<()> {
            let fd = recv_fd(&rx)?;
            let cuda = open().map_err(anyhow::Error::msg)?;
            let k = Kernels::load(&cuda)?;
            let m = VidmemMapping::import(&cuda, fd.as_fd(), size, perm)?;
            let x = k.xor_u32(m.device_ptr(), (size / 4) as u64)?;
            ep.send_data(&x.to_ne_bytes())?;
            k.fill_u32(m.device_ptr(), (size / 4) as u64, 0x5a5a_5a5a)?;
            let r = cuda.synchronize();
            match (perm, r) {
                (Permission::ReadOnly, Ok(())) => bail!("a write through PROT_READ did not fault"),
                (Permission::ReadOnly, Err(_)) => ep.send_data(b"faulted")?,
                (Permission::ReadWrite, Ok(())) => ep.send_data(b"wrote")?,
                (Permission::ReadWrite, Err(e)) => bail!("read-write importer: {e}"),
            }
            Ok(())
        }
    };
    let (mut ro, ro_b) = Endpoint::pair()?;
    let (mut rw, rw_b) = Endpoint::pair()?;
    ro_b.set_recv_timeout(Some(Duration::from_secs(60)))?;
    rw_b.set_recv_timeout(Some(Duration::from_secs(60)))?;
    let ro_pid = fork_peer(ro_b, child(Permission::ReadOnly, ro_rx))?;
    let rw_pid = fork_peer(rw_b, child(Permission::ReadWrite, rw_rx))?;
    let cuda = cuda_or_skip!();
    let k = Kernels::load(&cuda)?;
    let v = Vidmem::allocate(&cuda, size as u64)?;
    ensure!(v.size() == size, "allocated {} bytes", v.size());
    k.fill_u32(v.device_ptr(), (size / 4) as u64, 0x0102_0304)?;
    cuda.synchronize()?;
    let expect = if (size / 4).is_multiple_of(2) {
        0
    } else {
        0x0102_0304
    };
    for ep in [&mut ro, &mut rw] {
        ep.set_recv_timeout(Some(Duration::from_secs(60)))?;
    }
    send_fd(&ro_tx, v.fd(), b"fd")?;
    let x = u32::from_ne_bytes(ro.recv_data()?.as_slice().try_into()?);
    ensure!(x == expect, "read-only importer read {x:#x}");
    ensure!(ro.recv_data()? == b"faulted", "read-only importer");
    wait(ro_pid)?;
    // The exporter is unaffected by the importer's fault: its kernel still runs.
    let x = k.xor_u32(v.device_ptr(), (size / 4) as u64)?;
    ensure!(
        x == expect,
        "exporter read {x:#x} after the importer's fault"
    );
    send_fd(&rw_tx, v.fd(), b"fd")?;
    let x = u32::from_ne_bytes(rw.recv_data()?.as_slice().try_into()?);
    ensure!(x == expect, "read-write importer read {x:#x}");
    ensure!(rw.recv_data()? == b"wrote", "read-write importer");
    wait(rw_pid)?;
    let x = k.xor_u32(v.device_ptr(), (size / 4) as u64)?;
    let expect_rw = if (size / 4).is_multiple_of(2) {
        0
    } else {
        0x5a5a_5a5a
    };
    ensure!(
        x == expect_rw,
        "exporter read {x:#x} after the read-write importer's write"
    );
    let mut first = [0u8; 4];
    support::copy_dtoh(&cuda, &mut first, v.device_ptr())?;
    ensure!(
        u32::from_ne_bytes(first) == 0x5a5a_5a5a,
        "the read-write importer's write is not visible"
    );
    pass(format!(
        "{} MiB cuMemCreate memory: read-only importer read it and faulted on write (exporter \
         unaffected); read-write importer's write seen by the exporter",
        size as u64 / MIB
    ))
}

/// Test 5: the vidmem dma-buf: a real dma-buf (statfs magic, `exp_name`, size), SYNC and
/// SET_NAME work, it outlives the exporting process, and a process without CUDA imports it as an
/// object without CPU access (with the reason).
fn vidmem_dma_buf() -> anyhow::Result<Outcome> {
    if let Err(why) = probe() {
        return skip(why);
    }
    let size = 2 * MIB as usize;
    let (tx, rx) = fd_channel()?;
    let (a, b) = Endpoint::pair()?;
    // The child exports and exits; the parent never opens CUDA.
    let pid = fork_peer(b, move |_ep| {
        let cuda = open().map_err(anyhow::Error::msg)?;
        let v = Vidmem::allocate(&cuda, size as u64)?;
        let d = v.dma_buf()?;
        send_fd(&tx, d.as_fd(), b"fd")?;
        Ok(())
    })?;
    let fd = recv_fd(&rx)?;
    wait(pid)?;
    drop(a);
    ensure!(unibuf::fd::is_dma_buf(fd.as_fd())?, "not a dma-buf");
    let (exporter, _) = unibuf::fd::exporter_and_name(fd.as_fd());
    let got = unibuf::fd::fd_size(&fd, "vidmem dma-buf")?;
    ensure!(got as usize == size, "dma-buf size {got}, allocated {size}");
    unibuf::backend::set_name(
        fd.as_fd(),
        &unibuf::backend::BufferName::new("vidmem-test")?,
    )?;
    let mut l = AttrList::raw(size as u64)?;
    l.set_accessor_name("viewer")?
        .set_accessor_kind(AccessorKind::Gpu)?
        .set_required_perm(Permission::ReadWrite)?
        .set_need_cpu_access(true)?;
    let r = Arc::new(reconcile([&l]).map_err(|c| anyhow::anyhow!("{c}"))?);
    let obj = Object::import(fd, &r, Permission::ReadWrite)?;
    let why = match obj.cpu_mappable() {
        Ok(()) => bail!("an nv_dmabuf reported CPU-mappable"),
        Err(w) => w.to_string(),
    };
    ensure!(
        obj.map_read().is_err(),
        "map_read of an unmappable dma-buf succeeded"
    );
    // The sync ioctls work on it (no CPU mapping is needed for them).
    unibuf::map::sync_start(obj.fd(), unibuf::map::SyncDir::Read)?;
    unibuf::map::sync_end(obj.fd(), unibuf::map::SyncDir::Read)?;
    pass(format!(
        "exporter {:?}, {size} bytes, alive after the exporting process exited; SET_NAME and \
         SYNC succeed; imported without CPU access: {why}",
        exporter
    ))
}
