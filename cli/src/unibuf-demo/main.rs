//! `unibuf-demo`: a producer and a consumer in two processes share buffers over a Unix socket.
//!
//! ```text
//! cargo run --bin unibuf-demo                    # both: this process produces, a child consumes
//! unibuf-demo producer --socket /tmp/demo.sock   # or one role per terminal
//! unibuf-demo consumer --socket /tmp/demo.sock
//! ```
//!
//! The consumer sends its needs (an NV12 image it reads with the CPU, read-only); the producer
//! reconciles them with its own, allocates N buffers (a dma-buf when this machine has a provider,
//! else memfd), exports them read-only, writes frames under the `DMA_BUF_IOCTL_SYNC` guards and
//! signals each over the socket; the consumer maps them read-only, checks every byte, and hands
//! the buffer back. Both print what they did.

mod roles;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use roles::{Opts, ProducerKind};
use std::process::Command;
use std::time::{Duration, Instant};
use unibuf::attr::BackendKind;
use unibuf::ipc::{Allowlist, Endpoint, Listener};

#[derive(Parser, Debug)]
#[command(about = "Two-process unibuf demo: a producer shares buffers with a read-only consumer")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// Socket path, or @name for an abstract socket (default: `@unibuf-demo-PID`).
    #[arg(long, global = true)]
    socket: Option<String>,
    /// Number of buffers (1 to 64: the consumer accepts no more, and 0 leaves no buffer to
    /// write frames into).
    #[arg(long, default_value_t = 3, global = true,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
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
    #[arg(long, value_enum, default_value_t = Kind::Auto, global = true)]
    producer: Kind,
    /// A backend the producer prefers: system-heap, cma-heap, udmabuf, drm-dumb or memfd.
    #[arg(long, global = true, value_parser = parse_backend)]
    backend: Option<BackendKind>,
}

fn parse_backend(s: &str) -> Result<BackendKind, String> {
    BackendKind::from_name(s).ok_or_else(|| {
        format!("unknown backend {s:?} (system-heap, cma-heap, udmabuf, drm-dumb, memfd)")
    })
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Produce only (wait for a consumer on the socket).
    Producer,
    /// Consume only (connect to a producer's socket).
    Consumer,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Auto,
    Camera,
    Cpu,
}

fn main() {
    let cli = Cli::parse();
    let opts = Opts {
        buffers: cli.buffers,
        frames: cli.frames,
        width: cli.width,
        height: cli.height,
        producer: match cli.producer {
            Kind::Auto => ProducerKind::Auto,
            Kind::Camera => ProducerKind::Camera,
            Kind::Cpu => ProducerKind::Cpu,
        },
        backend: cli.backend,
    };
    if let Err(e) = run(&cli, &opts) {
        eprintln!("unibuf-demo: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli, opts: &Opts) -> Result<()> {
    match cli.role {
        None => {
            // Both roles: bind, spawn the consumer as a child process, produce.
            let s = cli
                .socket
                .clone()
                .unwrap_or_else(|| format!("@unibuf-demo-{}", std::process::id()));
            let listener = bind(&s)?;
            let exe = std::env::current_exe().context("finding this program")?;
            let mut child = Command::new(exe)
                .arg("consumer")
                .args(["--socket", &s])
                .args(["--buffers", &opts.buffers.to_string()])
                .args(["--frames", &opts.frames.to_string()])
                .args(["--width", &opts.width.to_string()])
                .args(["--height", &opts.height.to_string()])
                .spawn()
                .context("spawning the consumer")?;
            println!(
                "[producer pid {}] spawned consumer pid {}",
                std::process::id(),
                child.id()
            );
            let r = produce_on(&listener, &s, opts);
            let st = child.wait().context("waiting for the consumer")?;
            r?;
            if !st.success() {
                bail!("consumer exited with {st}");
            }
            Ok(())
        }
        Some(Role::Producer) => {
            let s = cli.socket.clone().unwrap_or_else(|| "@unibuf-demo".into());
            produce_on(&bind(&s)?, &s, opts)
        }
        Some(Role::Consumer) => {
            let s = cli
                .socket
                .as_deref()
                .ok_or_else(|| anyhow!("consumer: --socket is required"))?;
            let ep = connect(s)?;
            roles::consume(ep, opts).map(|_| ())
        }
    }
}

fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn bind(s: &str) -> Result<Listener> {
    let mut l = match s.strip_prefix('@') {
        Some(name) => Listener::bind_abstract(name)?,
        None => Listener::bind(s)?,
    };
    // Only processes of this user may connect.
    l.set_allowlist(Some(Allowlist::uids([me()])));
    Ok(l)
}

fn produce_on(l: &Listener, s: &str, opts: &Opts) -> Result<()> {
    println!(
        "[producer pid {}] listening on {s} (peers allowed: uid {})",
        std::process::id(),
        me()
    );
    // A peer outside the allowlist (anyone can reach an abstract socket) is refused and
    // logged, and the producer keeps waiting for its consumer.
    let ep = loop {
        match l.accept() {
            Ok(ep) => break ep,
            Err(unibuf::Error::PermissionDenied(why)) => {
                eprintln!(
                    "[producer pid {}] refused a connection: {why}; still listening",
                    std::process::id()
                );
            }
            Err(e) => return Err(e.into()),
        }
    };
    let r = roles::produce(ep, opts)?;
    println!(
        "unibuf-demo: ok: {} buffers from {} ({}); consumer: {}",
        opts.buffers,
        r.backend
            .map_or("an unknown backend".to_string(), |b| b.to_string()),
        if r.dma_buf {
            "dma-bufs"
        } else {
            "memfds, CPU only"
        },
        r.summary
    );
    Ok(())
}

fn connect(s: &str) -> Result<Endpoint> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = match s.strip_prefix('@') {
            Some(name) => Endpoint::connect_abstract(name),
            None => Endpoint::connect(s),
        };
        match r {
            // And only a producer of this user is trusted.
            Ok(ep) => return Ok(ep.require(&Allowlist::uids([me()]))?),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e).context(format!("connecting to {s}")),
        }
    }
}
