//! The two roles of `unibuf-demo`, on a connected endpoint. Shared with the VM tests
//! (`hw-tests/src/tests/ipc.rs` includes this file), which run them on DMA-BUF heaps.

use anyhow::{anyhow, bail, Context, Result};
use rustix::fd::AsRawFd;
use std::time::Duration;
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Permission};
use unibuf::backend::{self, Backends};
use unibuf::ipc::{Endpoint, ErrorCode};
use unibuf::layout::PixelFormat;
use unibuf::reconcile::dump::reconciled_to_text;
use unibuf::stream::{Consumer, Pool, Producer, StreamPolicy};

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
pub fn produce(mut ep: Endpoint, o: &Opts) -> Result<ProducerReport> {
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

    // 3. Allocation: a pool of the reconciled list (buffers named `<list name>-<index>`).
    let pool = match Pool::new(&reconciled, o.buffers, o.buffers) {
        Ok(p) => p,
        Err(e) => {
            let _ = ep.send_error(ErrorCode::Allocation, &e.to_string());
            return Err(e).context("allocating");
        }
    };
    let first = pool.get(0).ok_or_else(|| anyhow!("an empty pool"))?;
    let (backend, dma_buf) = (first.backend(), first.is_dma_buf());
    if let Some(c) = first.choice() {
        println!("{p} backend: {c}");
    }
    for i in pool.indices() {
        let obj = pool.get(i).ok_or_else(|| anyhow!("no buffer {i}"))?;
        println!(
            "{p} buffer {i}: {} bytes, {}, name {:?}",
            obj.size(),
            if obj.is_dma_buf() { "dma-buf" } else { "memfd" },
            obj.name()
        );
    }

    // 4. The stream: the consumer is attached with the lists it sent (validated again) and
    // gets every buffer once, with the permission its lists require (read-only).
    let mut producer = Producer::new(pool, StreamPolicy::Fifo)?;
    let id = producer
        .attach_with_lists(ep, &theirs)
        .context("attaching the consumer")?;
    let granted = producer
        .consumer_permission(id)
        .unwrap_or(Permission::ReadOnly);
    println!(
        "{p} exported {} buffers {granted} (stream attach)",
        o.buffers
    );

    // 5. Frames: acquire a free buffer (waiting for the consumer's releases), write, post.
    for f in 0..o.frames {
        let b = producer
            .acquire(Duration::from_secs(30))
            .context("waiting for the consumer to release a buffer")?;
        let sum = {
            let obj = producer
                .buffer_mut(b)
                .ok_or_else(|| anyhow!("no buffer {b}"))?;
            let mut map = obj.map_write().context("mapping a buffer for writing")?;
            let mut g = map.write().context("SYNC_START(WRITE)")?;
            let frame: Vec<u8> = (0..g.len()).map(|i| pattern(f, i)).collect();
            g.copy_from_slice(0, &frame)?;
            let sum = fnv1a(&frame);
            g.end().context("SYNC_END(WRITE)")?;
            sum
        };
        let seq = producer.post(b, unibuf::stream::now_ns(), None)?;
        println!("{p} frame {f}: wrote buffer {b} (fnv1a {sum:016x}), posted as frame {seq}");
    }
    // The end of the stream: the last releases are taken, and the endpoint comes back.
    let mut ep = producer
        .end(id, Duration::from_secs(30))
        .context("ending the stream")?;
    let summary = String::from_utf8_lossy(
        &ep.recv_data()
            .context("waiting for the consumer's summary")?,
    )
    .into_owned();
    println!("{p} consumer says: {summary}");
    if !summary.starts_with("ok") {
        bail!("consumer reported a failure: {summary}");
    }
    let st = producer.stats();
    println!(
        "{p} done: {} frames through {} buffers ({} dropped)",
        st.posted,
        producer.pool().len(),
        st.dropped
    );
    Ok(ProducerReport {
        backend,
        dma_buf,
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
pub fn consume(ep: Endpoint, o: &Opts) -> Result<u32> {
    let c = format!("[consumer pid {}]", std::process::id());
    ep.set_recv_timeout(Some(Duration::from_secs(30)))?;
    let peer = ep.peer();
    println!(
        "{c} connected to producer pid {} uid {} (SO_PEERCRED)",
        peer.pid, peer.uid
    );
    // 1. Our needs: read the image with the CPU, read-only.
    let mine = image_list(o, "consumer", AccessorKind::Cpu, Permission::ReadOnly)?;
    println!(
        "{c} sent needs: NV12 {}x{}, CPU access, read-only",
        o.width, o.height
    );

    // 2. The buffers: attached to the producer's stream, each validated against our needs and
    // held with the permission our list requires (Auto: read-only).
    let mut consumer = Consumer::attach(ep, vec![mine]).context("attaching to the stream")?;
    let n = consumer.buffers() as u32;
    for i in 0..n {
        let obj = consumer.buffer(i).ok_or_else(|| anyhow!("no buffer {i}"))?;
        let fl = rustix::fs::fcntl_getfl(obj.fd())?;
        let mode = if fl & rustix::fs::OFlags::RWMODE == rustix::fs::OFlags::RDONLY {
            "O_RDONLY"
        } else {
            "O_RDWR"
        };
        // A handle of our own to try a writable map on (the stream keeps its buffers shared).
        let mut dup = obj.dup()?;
        let refused = match dup.map_write() {
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
    let r = consumer
        .buffer(0)
        .ok_or_else(|| anyhow!("the stream has no buffer"))?
        .list()
        .clone();
    println!(
        "{c} reconciled list (validated against our needs): {} bytes, permission {}, {} planes",
        r.size(),
        r.permission(),
        r.image().map_or(0, |i| i.planes.len())
    );

    // 3. Frames, until the producer ends the stream.
    let mut seen = 0u32;
    let mut bad = 0u32;
    while let Some(frame) = consumer
        .next(Some(Duration::from_secs(30)))
        .context("waiting for a frame")?
    {
        frame.wait(Duration::from_secs(5))?;
        let (f, b) = ((frame.seq - 1) as u32, frame.index);
        let (ok, got) = {
            let obj = consumer
                .buffer(b)
                .ok_or_else(|| anyhow!("frame {f}: no buffer {b}"))?;
            let map = obj.map_read()?;
            let g = map.read().context("SYNC_START(READ)")?;
            let bytes = g.to_vec();
            let ok = bytes.iter().enumerate().all(|(i, &x)| x == pattern(f, i));
            let got = fnv1a(&bytes);
            g.end().context("SYNC_END(READ)")?;
            (ok, got)
        };
        seen += 1;
        if ok {
            println!(
                "{c} frame {f}: buffer {b} read-only, every byte as expected (fnv1a {got:016x})"
            );
        } else {
            bad += 1;
            println!("{c} frame {f}: buffer {b} MISMATCH (fnv1a {got:016x})");
        }
        consumer.release(&frame, None)?;
    }
    let mut ep = consumer.into_endpoint();
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
