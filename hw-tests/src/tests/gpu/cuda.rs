//! CUDA tests: unibuf objects imported into CUDA, read-only enforced by the GPU's MMU, GPU-resident
//! objects (the cuda-vidmem backend) across processes over unibuf IPC, and their dma-buf view.
//!
//! Processes: CUDA must not be initialised before a `fork` (the child could not use it), so every
//! test forks its peers first and each process opens CUDA for itself.

use super::support::{self, fd_channel, recv_fd, send_fd, Kernels};
use crate::harness::{pass, skip, Outcome, Test};
use crate::tests::ipc::{fork_peer, wait};
use anyhow::{bail, ensure, Context};
use rustix::fd::AsFd;
use rustix::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use unibuf::attr::BackendKind;
use unibuf::attr::{AccessorKind, AttrList, Permission};
use unibuf::interop::cuda::{Cuda, CudaBuffer, ImportPath};
use unibuf::ipc::{Endpoint, Requested};
use unibuf::object::FdKind;
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
            name: "gpu::cuda_vidmem_choice_errors",
            needs: "an NVIDIA GPU",
            run: vidmem_choice_errors,
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

/// The list of a GPU that wants its own video memory (`vidmem_gpu` = its UUID, filled by the
/// CUDA provider), read-write: what makes `Object::allocator` pick the cuda-vidmem backend.
pub(super) fn vidmem_list(cuda: &Cuda, size: u64) -> anyhow::Result<AttrList> {
    let mut l = AttrList::raw(size)?;
    l.set_accessor_name("cuda-vidmem")?
        .set_required_perm(Permission::ReadWrite)?;
    cuda.fill(&mut l)?;
    l.set_vidmem_gpu(cuda.gpu_id())?;
    Ok(l)
}

/// A GPU importer's own list (built without CUDA): a raw buffer it accesses with `perm`.
fn gpu_importer_list(size: u64, perm: Permission) -> anyhow::Result<Vec<AttrList>> {
    let mut l = AttrList::raw(size)?;
    l.set_accessor_name("cuda-importer")?
        .set_accessor_kind(AccessorKind::Gpu)?
        .set_required_perm(perm)?;
    Ok(vec![l])
}

/// What the kernel says the object's fd is: its `/proc/self/fd` link and `major:minor`.
fn fd_identity(obj: &Object) -> String {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", obj.fd().as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("readlink: {e}"));
    match rustix::fs::fstat(obj.fd()) {
        Ok(st) => format!(
            "{link} ({}:{})",
            rustix::fs::major(st.st_rdev),
            rustix::fs::minor(st.st_rdev)
        ),
        Err(e) => format!("{link} (fstat: {e})"),
    }
}

/// Checks what a cuda-vidmem object is on either side: its kind, backend, no CPU access.
fn check_vidmem_object(obj: &Object) -> anyhow::Result<()> {
    ensure!(
        obj.fd_kind() == FdKind::CudaVidmem,
        "fd kind {:?}",
        obj.fd_kind()
    );
    ensure!(
        obj.backend() == Some(BackendKind::CudaVidmem),
        "backend {:?}",
        obj.backend()
    );
    ensure!(
        obj.cpu_mappable().is_err() && obj.map_read().is_err(),
        "a cuda-vidmem object offered a CPU mapping"
    );
    Ok(())
}

/// A child importer of test 4: imports the object over `ep` holding `perm`, into CUDA; its
/// kernel reads it (xor sent back); then the read-only one writes (must fault, here only) and
/// the read-write one negates every word in place (the exporter must see it).
fn vidmem_importer(mut ep: Endpoint, size: u64, perm: Permission) -> anyhow::Result<()> {
    let own = gpu_importer_list(size, perm)?;
    let obj = ep.import_object(Requested::from(perm), Some(&own))?;
    ensure!(
        obj.permission() == perm,
        "importer holds {}",
        obj.permission()
    );
    check_vidmem_object(&obj)?;
    let cuda = open().map_err(anyhow::Error::msg)?;
    let k = Kernels::load(&cuda)?;
    let g = CudaBuffer::import(&cuda, &obj)?;
    ensure!(
        g.path()
            == ImportPath::Vidmem {
                read_only: perm == Permission::ReadOnly
            },
        "imported as {:?}",
        g.path()
    );
    let words = g.len() as u64 / 4;
    let x = k.xor_u32(g.device_ptr(), words)?;
    ep.send_data(&x.to_ne_bytes())?;
    match perm {
        Permission::ReadOnly => {
            k.fill_u32(g.device_ptr(), words, 0xdead_beef)?;
            match cuda.synchronize() {
                Ok(()) => bail!("a kernel's write through a PROT_READ mapping did not fault"),
                Err(e) => ep.send_data(format!("faulted: {e}").as_bytes())?,
            }
        }
        Permission::ReadWrite => {
            k.not_u32(g.device_ptr(), g.device_ptr(), words)?;
            cuda.synchronize().context("read-write importer's write")?;
            ep.send_data(format!("wrote; {}", g.applied()).as_bytes())?;
        }
    }
    Ok(())
}

/// Build item 2 / test 4: a cuda-vidmem object (Object::allocator on a `vidmem_gpu` list)
/// exported over unibuf IPC to a read-only and a read-write importer process, each importing it
/// with `import_object` and `CudaBuffer::import`.
fn vidmem_across_processes() -> anyhow::Result<Outcome> {
    if let Err(why) = probe() {
        return skip(why);
    }
    let size = 64 * MIB;
    let (mut ro, ro_b) = Endpoint::pair()?;
    let (mut rw, rw_b) = Endpoint::pair()?;
    ro_b.set_recv_timeout(Some(Duration::from_secs(60)))?;
    rw_b.set_recv_timeout(Some(Duration::from_secs(60)))?;
    let ro_pid = fork_peer(ro_b, move |ep| {
        vidmem_importer(ep, size, Permission::ReadOnly)
    })?;
    let rw_pid = fork_peer(rw_b, move |ep| {
        vidmem_importer(ep, size, Permission::ReadWrite)
    })?;
    let cuda = cuda_or_skip!();
    let k = Kernels::load(&cuda)?;
    let r = Arc::new(reconcile([&vidmem_list(&cuda, size)?]).map_err(|c| anyhow::anyhow!("{c}"))?);
    let obj = Object::allocator(&r).allocate()?;
    check_vidmem_object(&obj)?;
    let reason = obj.choice().map(|c| c.to_string()).unwrap_or_default();
    let identity = fd_identity(&obj);
    eprintln!("cuda-vidmem object fd: {identity}");
    let mine = CudaBuffer::import(&cuda, &obj)?;
    ensure!(
        mine.path() == ImportPath::Vidmem { read_only: false },
        "{:?}",
        mine.path()
    );
    // Fill the GPU memory with a pattern: a host object's words, negated by a kernel.
    let (_hr, mut host) = allocate(&cpu_gpu_lists(&cuda, size, Permission::ReadOnly)?)?;
    let words = pattern((size / 4) as usize, 11);
    write_words(&mut host, &words)?;
    let h = CudaBuffer::import(&cuda, &host)?;
    k.not_u32(mine.device_ptr(), h.device_ptr(), size / 4)?;
    cuda.synchronize()?;
    let negated: Vec<u32> = words.iter().map(|w| !w).collect();
    let expect = xor_all(&negated);
    ensure!(
        k.xor_u32(mine.device_ptr(), size / 4)? == expect,
        "the exporter's own kernel reads wrong"
    );
    for ep in [&mut ro, &mut rw] {
        ep.set_recv_timeout(Some(Duration::from_secs(60)))?;
    }
    ro.export_object(&obj, Permission::ReadOnly)?;
    let x = u32::from_ne_bytes(ro.recv_data()?.as_slice().try_into()?);
    ensure!(
        x == expect,
        "read-only importer read xor {x:#x}, expected {expect:#x}"
    );
    let ro_note = String::from_utf8_lossy(&ro.recv_data()?).into_owned();
    ensure!(
        ro_note.starts_with("faulted"),
        "read-only importer: {ro_note}"
    );
    wait(ro_pid)?;
    // The exporter is unaffected by the importer's fault: its context runs, its data is intact.
    let x = k.xor_u32(mine.device_ptr(), size / 4)?;
    cuda.synchronize()
        .context("the exporter's context after the importer's fault")?;
    ensure!(
        x == expect,
        "exporter read xor {x:#x} after the importer's fault"
    );
    let mut first = [0u8; 4];
    support::copy_dtoh(&cuda, &mut first, mine.device_ptr())?;
    ensure!(
        u32::from_ne_bytes(first) == negated[0],
        "the exporter's data changed"
    );
    rw.export_object(&obj, Permission::ReadWrite)?;
    let x = u32::from_ne_bytes(rw.recv_data()?.as_slice().try_into()?);
    ensure!(
        x == expect,
        "read-write importer read xor {x:#x}, expected {expect:#x}"
    );
    let rw_note = String::from_utf8_lossy(&rw.recv_data()?).into_owned();
    ensure!(
        rw_note.starts_with("wrote"),
        "read-write importer: {rw_note}"
    );
    wait(rw_pid)?;
    // The read-write importer negated every word: the exporter sees the pattern itself.
    let x = k.xor_u32(mine.device_ptr(), size / 4)?;
    ensure!(
        x == xor_all(&words),
        "exporter read xor {x:#x} after the read-write importer's write"
    );
    support::copy_dtoh(&cuda, &mut first, mine.device_ptr())?;
    ensure!(
        u32::from_ne_bytes(first) == words[0],
        "the read-write importer's write is not visible to the exporter"
    );
    pass(format!(
        "{} MiB object from {reason}; fd {identity}; read-only importer (import_object + \
         CudaBuffer::import) read it right and {ro_note}, exporter's data and context intact; \
         read-write importer's in-place write seen by the exporter ({rw_note})",
        size / MIB
    ))
}

/// The refusals of the cuda-vidmem backend where a GPU is: a `vidmem_gpu` no device here has
/// names the GPU and the devices there are; CPU access to video memory is refused.
fn vidmem_choice_errors() -> anyhow::Result<Outcome> {
    let cuda = cuda_or_skip!();
    let mut l = vidmem_list(&cuda, MIB)?;
    let mut other = AttrList::raw(MIB)?;
    let stranger = unibuf::attr::GpuId([0xee; 16]);
    other
        .set_accessor_name("stranger")?
        .set_gpu_ids(&[stranger])?
        .set_vidmem_gpu(stranger)?;
    let r = Arc::new(reconcile([&other]).map_err(|c| anyhow::anyhow!("{c}"))?);
    let e = match Object::allocate(&r) {
        Ok(o) => bail!("allocated {o:?} in the memory of a GPU that is not here"),
        Err(e) => e.to_string(),
    };
    ensure!(
        e.contains(&stranger.to_string()) && e.contains(&cuda.gpu_id().to_string()),
        "{e}"
    );
    l.set_need_cpu_access(true)?;
    let r = Arc::new(reconcile([&l]).map_err(|c| anyhow::anyhow!("{c}"))?);
    let e2 = match Object::allocate(&r) {
        Ok(o) => bail!("allocated video memory for a list that needs the CPU: {o:?}"),
        Err(e) => e.to_string(),
    };
    ensure!(e2.contains("need_cpu_access"), "{e2}");
    pass(format!("unknown GPU: {e}; with need_cpu_access: {e2}"))
}

/// Test 5: the vidmem dma-buf: a real dma-buf (statfs magic, `exp_name`, size), SYNC and
/// SET_NAME work, it outlives the exporting process, and a process without CUDA imports it as an
/// object without CPU access (with the reason). The child allocates a cuda-vidmem object through
/// `Object::allocator` and exports the dma-buf view of its CUDA import.
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
        let r = Arc::new(
            reconcile([&vidmem_list(&cuda, size as u64)?]).map_err(|c| anyhow::anyhow!("{c}"))?,
        );
        let obj = Object::allocator(&r).allocate()?;
        check_vidmem_object(&obj)?;
        let g = CudaBuffer::import(&cuda, &obj)?;
        let d = g.dma_buf()?;
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
