//! `unibuf-demo`: a producer and a consumer in two processes share buffers over a Unix socket.
//!
//! ```text
//! cargo run --bin unibuf-demo                 # both processes: this one produces, a child consumes
//! unibuf-demo producer --socket /tmp/demo.sock   # or one role per terminal
//! unibuf-demo consumer --socket /tmp/demo.sock
//! ```
//!
//! The consumer sends its needs (an NV12 image it reads with the CPU, read-only); the producer
//! reconciles them with its own, allocates N buffers (a dma-buf when this machine has a provider,
//! else memfd), exports them read-only, writes frames under the `DMA_BUF_IOCTL_SYNC` guards and
//! signals each over the socket; the consumer maps them read-only, checks every byte, and hands
//! the buffer back. Both print what they did.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rustix::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use unibuf::attr::{file::reconciled_to_text, AccessorKind, AttrList, BackendKind, Permission};
use unibuf::backend::{self, Backends};
use unibuf::ipc::{Allowlist, Endpoint, ErrorCode, Listener, Requested};
use unibuf::layout::PixelFormat;
use unibuf::object::Object;
use unibuf::reconcile::reconcile;

#[derive(Parser, Debug)]
#[command(about = "Two-process unibuf demo: a producer shares buffers with a read-only consumer")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(clap::Args, Debug, Clone)]
struct Opts {
    /// Socket path (default: an abstract socket named after the producer's pid).
    #[arg(long, global = true)]
    socket: Option<String>,
    /// Number of buffers.
    #[arg(long, default_value_t = 3, global = true)]
    buffers: usize,
    /// Number of frames.
    #[arg(long, default_value_t = 8, global = true)]
    frames: u32,
    /// Image width.
    #[arg(long, default_value_t = 640, global = true)]
    width: u32,
    /// Image height.
    #[arg(long, default_value_t = 480, global = true)]
    height: u32,
    /// What the producer says it is: `camera` needs a dma-buf (a heap, udmabuf or DRM dumb
    /// buffer), `cpu` is satisfied by memfd, `auto` is `camera` when this machine has a dma-buf
    /// provider this process can open.
    #[arg(long, value_enum, default_value_t = ProducerKind::Auto, global = true)]
    producer: ProducerKind,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Produce only (wait for a consumer on the socket).
    Producer,
    /// Consume only (connect to a producer's socket).
    Consumer,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ProducerKind {
    Auto,
    Camera,
    Cpu,
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.role {
        None => launcher(&cli.opts),
        Some(Role::Producer) => producer(&cli.opts, None),
        Some(Role::Consumer) => consumer(&cli.opts),
    };
    if let Err(e) = r {
        eprintln!("unibuf-demo: error: {e:#}");
        std::process::exit(1);
    }
}

/// Both roles: bind, spawn the consumer as a child process, produce.
fn launcher(o: &Opts) -> Result<()> {
    let mut o = o.clone();
    if o.socket.is_none() {
        o.socket = Some(format!("@unibuf-demo-{}", std::process::id()));
    }
    let listener = bind(&o)?;
    let exe = std::env::current_exe().context("finding this program to spawn the consumer")?;
    let child = Command::new(exe)
        .arg("consumer")
        .args(["--socket", o.socket.as_deref().unwrap_or_default()])
        .args(["--buffers", &o.buffers.to_string()])
        .args(["--frames", &o.frames.to_string()])
        .args(["--width", &o.width.to_string()])
        .args(["--height", &o.height.to_string()])
        .spawn()
        .context("spawning the consumer")?;
    println!(
        "[producer pid {}] spawned consumer pid {}",
        std::process::id(),
        child.id()
    );
    producer(&o, Some((listener, child)))
}

fn bind(o: &Opts) -> Result<Listener> {
    let s = o.socket.as_deref().unwrap_or("@unibuf-demo");
    let mut l = match s.strip_prefix('@') {
        Some(name) => Listener::bind_abstract(name)?,
        None => Listener::bind(s)?,
    };
    // Only processes of this user may connect.
    l.set_allowlist(Some(Allowlist::uids([rustix::process::geteuid().as_raw()])));
    Ok(l)
}

fn connect(o: &Opts) -> Result<Endpoint> {
    let s = o
        .socket
        .as_deref()
        .ok_or_else(|| anyhow!("consumer: --socket is required"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = match s.strip_prefix('@') {
            Some(name) => Endpoint::connect_abstract(name),
            None => Endpoint::connect(s),
        };
        match r {
            Ok(ep) => {
                // And only a producer of this user is trusted.
                return Ok(ep.require(&Allowlist::uids([rustix::process::geteuid().as_raw()]))?);
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e).context(format!("connecting to {s}")),
        }
    }
}

fn image_list(o: &Opts, name: &str, kind: AccessorKind, perm: Permission) -> Result<AttrList> {
    let mut l = AttrList::image(PixelFormat::Nv12, o.width, o.height)?;
    l.set_accessor_name(name)?
        .set_accessor_kind(kind)?
        .set_need_cpu_access(true)?
        .set_required_perm(perm)?;
    Ok(l)
}

/// The byte at offset `i` of frame `f`.
fn pattern(f: u32, i: usize) -> u8 {
    (f as usize)
        .wrapping_mul(131)
        .wrapping_add(i.wrapping_mul(7))
        .wrapping_add(i >> 11) as u8
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn producer(o: &Opts, launched: Option<(Listener, std::process::Child)>) -> Result<()> {
    let p = format!("[producer pid {}]", std::process::id());
    let (listener, mut child) = match launched {
        Some((l, c)) => (l, Some(c)),
        None => (bind(o)?, None),
    };
    println!(
        "{p} listening on {} (peers allowed: uid {})",
        o.socket.as_deref().unwrap_or("@unibuf-demo"),
        rustix::process::geteuid().as_raw()
    );
    let mut ep = listener.accept()?;
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
        theirs.lists.len(),
        if theirs.lists.len() == 1 { "" } else { "s" },
        if theirs.skipped.is_empty() {
            String::new()
        } else {
            format!(", skipped unknown keys {:?}", theirs.skipped)
        }
    );
    for l in theirs.lists.slots() {
        for (k, v) in l.iter() {
            println!("{p}     {k} = {v}");
        }
    }

    // 2. Our own, and reconciliation.
    let backends = backend::global();
    let (kind, why) = producer_kind(o.producer, backends);
    println!("{p} producer accessor kind: {kind} ({why})");
    let mine = image_list(o, "producer", kind, Permission::ReadWrite)?;
    let mut all: Vec<AttrList> = vec![mine];
    all.extend(theirs.lists.slots().iter().cloned());
    let reconciled = match reconcile(&all) {
        Ok(r) => Arc::new(r),
        Err(c) => {
            let _ = ep.send_error(ErrorCode::Conflict, &c.to_string());
            bail!("reconciliation failed: {c}");
        }
    };
    println!("{p} reconciled:");
    for line in reconciled_to_text(&reconciled).lines() {
        println!("{p}     {line}");
    }

    // 3. Allocation.
    let mut objects = match Object::allocate_n(&reconciled, o.buffers) {
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
            for (i, x) in g.iter_mut().enumerate() {
                *x = pattern(f, i);
            }
            let sum = fnv1a(&g);
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
    if let Some(c) = child.as_mut() {
        let st = c.wait().context("waiting for the consumer")?;
        if !st.success() {
            bail!("consumer exited with {st}");
        }
    }
    if !summary.starts_with("ok") {
        bail!("consumer reported a failure: {summary}");
    }
    println!(
        "{p} done: {} frames through {} buffers",
        o.frames,
        objects.len()
    );
    Ok(())
}

fn producer_kind(k: ProducerKind, b: &Backends) -> (AccessorKind, String) {
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

fn consumer(o: &Opts) -> Result<()> {
    let c = format!("[consumer pid {}]", std::process::id());
    let mut ep = connect(o)?;
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
            // SAFETY: a fresh mapping request at an address the kernel picks; unmapped if made.
            let r = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    obj.size() as usize,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::SHARED,
                    obj.fd(),
                    0,
                )
            };
            match r {
                Ok(p) => {
                    // SAFETY: `p` is the mapping just made.
                    let _ = unsafe { rustix::mm::munmap(p, obj.size() as usize) };
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
            let ok = g.iter().enumerate().all(|(i, &x)| x == pattern(f, i));
            let got = fnv1a(&g);
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
    Ok(())
}
