//! The two roles of `unibuf-demo`, on a connected endpoint. Shared with the VM tests
//! (`hw-tests/src/tests/ipc.rs` includes this file), which run them on DMA-BUF heaps.

use anyhow::{anyhow, bail, Context, Result};
use rustix::fd::AsRawFd;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Permission};
use unibuf::backend::{self, Backends};
use unibuf::ipc::{Endpoint, ErrorCode, Requested};
use unibuf::layout::PixelFormat;
use unibuf::object::Object;
use unibuf::reconcile::dump::reconciled_to_text;

/// What the demo does.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Number of buffers.
    pub buffers: usize,
    /// Number of frames.
    pub frames: u32,
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// What the producer says it is.
    pub producer: ProducerKind,
    /// A backend the producer prefers (a hint the lists carry), if any.
    pub backend: Option<BackendKind>,
}

/// What the producer says it is: `Camera` needs a dma-buf (a heap, udmabuf or DRM dumb buffer),
/// `Cpu` is satisfied by memfd, `Auto` is `Camera` when this machine has a dma-buf provider this
/// process can open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerKind {
    /// Decide from what the machine has.
    Auto,
    /// A device: needs a dma-buf.
    Camera,
    /// The CPU: memfd will do.
    Cpu,
}

/// What the producer saw.
#[derive(Debug, Clone)]
pub struct ProducerReport {
    /// The backend the buffers came from.
    pub backend: Option<BackendKind>,
    /// Whether they are dma-bufs.
    pub dma_buf: bool,
    /// The consumer's summary.
    pub summary: String,
}

/// An NV12 image list read or written by the CPU.
pub fn image_list(o: &Opts, name: &str, kind: AccessorKind, perm: Permission) -> Result<AttrList> {
    let mut l = AttrList::image(PixelFormat::Nv12, o.width, o.height)?;
    l.set_accessor_name(name)?
        .set_accessor_kind(kind)?
        .set_need_cpu_access(true)?
        .set_required_perm(perm)?;
    Ok(l)
}

/// The byte at offset `i` of frame `f`.
pub fn pattern(f: u32, i: usize) -> u8 {
    (f as usize)
        .wrapping_mul(131)
        .wrapping_add(i.wrapping_mul(7))
        .wrapping_add(i >> 11) as u8
}

/// FNV-1a 64 of `b`.
pub fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The producer's side, on a connected endpoint.
pub fn produce(ep: &mut Endpoint, o: &Opts) -> Result<ProducerReport> {
    let p = format!("[producer pid {}]", std::process::id());
    ep.set_recv_timeout(Some(Duration::from_secs(30)))?;
    let peer = ep.peer();
    println!(
        "{p} consumer connected: pid {} uid {} gid {} (SO_PEERCRED)",
        peer.pid, peer.uid, peer.gid
    );

    // 1. The consumer's needs.
    let theirs = ep
        .import_lists()
        .context("importing the consumer's lists")?;
    println!(
        "{p} consumer's needs ({} list{}{}):",
        theirs.slots.len(),
        if theirs.slots.len() == 1 { "" } else { "s" },
        if theirs.skipped.is_empty() {
            String::new()
        } else {
            format!(", skipped unknown keys {:?}", theirs.skipped)
        }
    );
    for l in &theirs.slots {
        for (k, v) in l.iter() {
            println!("{p}     {k} = {v}");
        }
    }

    // 2. Our own, and reconciliation.
    let backends = backend::global();
    let (kind, why) = producer_kind(o.producer, backends);
    println!("{p} producer accessor kind: {kind} ({why})");
    let mut mine = image_list(o, "producer", kind, Permission::ReadWrite)?;
    if let Some(b) = o.backend {
        mine.set_preferred_backend(b)?;
        println!("{p} producer prefers the {b} backend");
    }
    // Reconciled by the endpoint, which tells the consumer about a conflict and holds the
    // buffers its lists ask for to the endpoint's allocation limit (nothing is allocated above).
    let reconciled = ep
        .reconcile_imported(&[mine], &theirs, o.buffers)
        .context("reconciliation failed")?;
    println!("{p} reconciled:");
    for line in reconciled_to_text(&reconciled).lines() {
        println!("{p}     {line}");
    }

    // 3. Allocation.
    let mut objects = match Object::allocator(&reconciled).allocate_n(o.buffers) {
        Ok(v) => v,
        Err(e) => {
            let _ = ep.send_error(ErrorCode::Allocation, &e.to_string());
            return Err(e).context("allocating");
        }
    };
    if let Some(c) = objects.first().and_then(|o| o.choice()) {
        println!("{p} backend: {c}");
    }
    for (i, obj) in objects.iter().enumerate() {
        println!(
            "{p} buffer {i}: {} bytes, {}, name {:?}",
            obj.size(),
            if obj.is_dma_buf() { "dma-buf" } else { "memfd" },
            obj.name()
        );
    }

    // 4. Export, read-only.
    ep.send_data(format!("buffers {}", objects.len()).as_bytes())?;
    for obj in &objects {
        ep.export_object(obj, Permission::ReadOnly)?;
    }
    println!("{p} exported {} buffers read-only", objects.len());

    // 5. Frames.
    let mut maps = Vec::new();
    for obj in objects.iter_mut() {
        maps.push(obj.map_write().context("mapping a buffer for writing")?);
    }
    let mut free: Vec<bool> = vec![true; maps.len()];
    for f in 0..o.frames {
        let b = (f as usize) % maps.len();
        while !free[b] {
            let d = ep
                .recv_data()
                .context("waiting for the consumer to release a buffer")?;
            let s = String::from_utf8_lossy(&d).into_owned();
            let i: usize = s
                .strip_prefix("release ")
                .and_then(|x| x.parse().ok())
                .filter(|&i| i < free.len())
                .ok_or_else(|| anyhow!("unexpected message from the consumer: {s:?}"))?;
            free[i] = true;
        }
        let sum = {
            let mut g = maps[b].write().context("SYNC_START(WRITE)")?;
            let frame: Vec<u8> = (0..g.len()).map(|i| pattern(f, i)).collect();
            g.copy_from_slice(0, &frame)?;
            let sum = fnv1a(&frame);
            g.end().context("SYNC_END(WRITE)")?;
            sum
        };
        free[b] = false;
        ep.send_data(format!("frame {f} buffer {b} fnv {sum:016x}").as_bytes())?;
        println!("{p} frame {f}: wrote buffer {b} (fnv1a {sum:016x}), signalled");
    }
    ep.send_data(b"end")?;
    // Releases of the last frames may come before the summary.
    let summary = loop {
        let d = ep
            .recv_data()
            .context("waiting for the consumer's summary")?;
        let s = String::from_utf8_lossy(&d).into_owned();
        if !s.starts_with("release ") {
            break s;
        }
    };
    println!("{p} consumer says: {summary}");
    drop(maps);
    if !summary.starts_with("ok") {
        bail!("consumer reported a failure: {summary}");
    }
    println!(
        "{p} done: {} frames through {} buffers",
        o.frames,
        objects.len()
    );
    Ok(ProducerReport {
        backend: objects.first().and_then(|o| o.backend()),
        dma_buf: objects.first().is_some_and(|o| o.is_dma_buf()),
        summary,
    })
}

/// The accessor kind the producer states, and why.
pub fn producer_kind(k: ProducerKind, b: &Backends) -> (AccessorKind, String) {
    let dma = [
        BackendKind::SystemHeap,
        BackendKind::CmaHeap,
        BackendKind::Udmabuf,
        BackendKind::DrmDumb,
    ];
    match k {
        ProducerKind::Camera => (AccessorKind::Camera, "asked for: --producer camera".into()),
        ProducerKind::Cpu => (AccessorKind::Cpu, "asked for: --producer cpu".into()),
        ProducerKind::Auto => match dma.iter().find(|&&d| b.has(d)) {
            Some(d) => (
                AccessorKind::Camera,
                format!("auto: this machine has a dma-buf provider ({d}), so act as a device"),
            ),
            None => (
                AccessorKind::Cpu,
                format!(
                    "auto: no dma-buf provider this process can open ({}), so CPU only (memfd)",
                    b.why_not(BackendKind::SystemHeap)
                ),
            ),
        },
    }
}

/// The consumer's side, on a connected endpoint.
pub fn consume(ep: &mut Endpoint, o: &Opts) -> Result<u32> {
    let c = format!("[consumer pid {}]", std::process::id());
    ep.set_recv_timeout(Some(Duration::from_secs(30)))?;
    let peer = ep.peer();
    println!(
        "{c} connected to producer pid {} uid {} (SO_PEERCRED)",
        peer.pid, peer.uid
    );
    // 1. Our needs: read the image with the CPU, read-only.
    let mine = image_list(o, "consumer", AccessorKind::Cpu, Permission::ReadOnly)?;
    ep.export_lists([&mine])?;
    println!(
        "{c} sent needs: NV12 {}x{}, CPU access, read-only",
        o.width, o.height
    );

    // 2. The buffers.
    let d = ep.recv_data().context("waiting for the buffer count")?;
    let s = String::from_utf8_lossy(&d).into_owned();
    let n: usize = s
        .strip_prefix("buffers ")
        .and_then(|x| x.parse().ok())
        .filter(|&n| n > 0 && n <= 64)
        .ok_or_else(|| anyhow!("unexpected message from the producer: {s:?}"))?;
    let own = [mine];
    let mut objects = Vec::new();
    for i in 0..n {
        // Auto: the highest permission our own list requires (read-only).
        let obj = ep
            .import_object(Requested::Auto, Some(&own))
            .with_context(|| format!("importing buffer {i}"))?;
        objects.push(obj);
    }
    for (i, obj) in objects.iter_mut().enumerate() {
        let fl = rustix::fs::fcntl_getfl(obj.fd())?;
        let mode = if fl & rustix::fs::OFlags::RWMODE == rustix::fs::OFlags::RDONLY {
            "O_RDONLY"
        } else {
            "O_RDWR"
        };
        let refused = match obj.map_write() {
            Ok(_) => bail!("buffer {i}: a read-only handle could be mapped for writing"),
            Err(e) => e.to_string(),
        };
        println!(
            "{c} buffer {i}: imported {} bytes, {}, holds {} (fd {} {mode}); map_write refused: {refused}",
            obj.size(),
            if obj.is_dma_buf() { "dma-buf" } else { "memfd" },
            obj.permission(),
            obj.fd().as_raw_fd(),
        );
        if !obj.is_dma_buf() {
            // Even raw syscalls cannot map it writable.
            match unibuf::sys::mm::map_shared_read_write(obj.fd(), obj.size() as usize) {
                Ok(_mapping) => {
                    // (unmapped again when `_mapping` drops)
                    bail!("buffer {i}: raw mmap(PROT_WRITE) of the read-only memfd succeeded");
                }
                Err(e) => println!("{c} buffer {i}: raw mmap(PROT_WRITE, MAP_SHARED) refused: {e}"),
            }
        }
    }
    let r = objects[0].list().clone();
    println!(
        "{c} reconciled list (validated against our needs): {} bytes, permission {}, {} planes",
        r.size(),
        r.permission(),
        r.image().map_or(0, |i| i.planes.len())
    );

    // 3. Frames.
    let maps: Vec<_> = objects
        .iter()
        .map(|o| o.map_read())
        .collect::<unibuf::Result<_>>()?;
    let mut seen = 0u32;
    let mut bad = 0u32;
    loop {
        let d = ep.recv_data().context("waiting for a frame")?;
        let s = String::from_utf8_lossy(&d).into_owned();
        if s == "end" {
            break;
        }
        let mut it = s.split_whitespace();
        let (f, b, sum) = match (
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
        ) {
            (Some("frame"), Some(f), Some("buffer"), Some(b), Some("fnv"), Some(sum)) => (
                f.parse::<u32>()?,
                b.parse::<usize>()?,
                u64::from_str_radix(sum, 16)?,
            ),
            _ => bail!("unexpected message from the producer: {s:?}"),
        };
        let map = maps
            .get(b)
            .ok_or_else(|| anyhow!("frame {f}: no buffer {b}"))?;
        let (ok, got) = {
            let g = map.read().context("SYNC_START(READ)")?;
            let bytes = g.to_vec();
            let ok = bytes.iter().enumerate().all(|(i, &x)| x == pattern(f, i));
            let got = fnv1a(&bytes);
            g.end().context("SYNC_END(READ)")?;
            (ok, got)
        };
        seen += 1;
        if ok && got == sum {
            println!(
                "{c} frame {f}: buffer {b} read-only, every byte as expected (fnv1a {got:016x})"
            );
        } else {
            bad += 1;
            println!(
                "{c} frame {f}: buffer {b} MISMATCH (fnv1a {got:016x}, producer said {sum:016x})"
            );
        }
        ep.send_data(format!("release {b}").as_bytes())?;
    }
    let summary = if bad == 0 {
        format!("ok: {seen} frames checked")
    } else {
        format!("FAILED: {bad} of {seen} frames differ")
    };
    ep.send_data(summary.as_bytes())?;
    println!("{c} {summary}");
    if bad != 0 {
        bail!("{summary}");
    }
    Ok(seen)
}
