//! The `unibuf` command-line tool.
//!
//! - `unibuf reconcile A.toml B.toml ...`: reconciles the lists and prints the layout (exit 0),
//!   or the conflict or validation failure (exit 1; `--json` prints either as JSON); unusable
//!   input (a file that cannot be read or parsed, or holds no key) exits 2 with a message
//!   naming the file and the line or key.
//! - `unibuf plan A.toml B.toml ...`: a dry run (Android's `IAllocator::isSupported`): the
//!   reconciled layout, the backend this machine would use and why, and whether it can allocate
//!   the buffer now (device node present and openable read-write, CMA free space), without
//!   allocating. Exit 0 when it can, 3 when it cannot, 1 on a conflict, 2 on unusable input.
//! - `unibuf dump FILE`: prints one list (text, or `--json`).
//! - `unibuf formats`: prints the format table.
//! - `unibuf doctor`, `inspect`, `heaps`, `bench`, `monitor`: the machine's devices, the dma-bufs
//!   processes hold, heap tests, allocation latency, hotplug (see docs/cli.md for exit codes).

#[path = "unibuf/doctor.rs"]
mod doctor;
#[path = "unibuf/heaps.rs"]
mod heaps;
#[path = "unibuf/inspect.rs"]
mod inspect;
#[path = "unibuf/monitor.rs"]
mod monitor;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use unibuf::attr::file;
use unibuf::attr::AttrList;
use unibuf::layout::format::describe_code;
use unibuf::layout::PixelFormat;
use unibuf::reconcile::reconcile;

#[derive(Parser)]
#[command(
    name = "unibuf",
    version,
    about = "Reconcile buffer needs of several accessors (an open NvSciBuf for Linux)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Reconcile attribute lists (TOML or JSON files) and print the layout or the conflict.
    Reconcile {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The lists, one per accessor.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Dry run: which backend would serve the lists here, the layout, and whether this machine
    /// can allocate it now (nothing is allocated). Exit 0 yes, 3 no, 1 conflict, 2 bad input.
    Plan {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The lists, one per accessor.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print one attribute list.
    Dump {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The list file.
        file: PathBuf,
    },
    /// Print the pixel format table.
    Formats,
    /// What this machine offers and lacks for unibuf, and what to do (exit 1: no dma-buf
    /// provider usable for a device buffer).
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every dma-buf held by processes (fds and mappings), grouped by buffer, with totals.
    Inspect {
        /// Print JSON (a snapshot that `--diff` reads back).
        #[arg(long)]
        json: bool,
        /// Every process (the default when no PID is given).
        #[arg(long)]
        all: bool,
        /// Compare with a snapshot saved by `inspect --json`: name the buffers that appeared
        /// since and are still held (exit 1 when there are any).
        #[arg(long, value_name = "SNAPSHOT.json")]
        diff: Option<PathBuf>,
        /// Only these processes.
        pids: Vec<u32>,
    },
    /// List the DMA-BUF heaps and allocate-test each (exit 1 when a usable heap fails).
    Heaps {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Bytes each test allocates.
        #[arg(long, default_value_t = 1 << 20)]
        size: u64,
    },
    /// Allocation latency (p50/p99) per usable backend and size on this machine.
    Bench {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Allocations per backend and size.
        #[arg(long, default_value_t = 200)]
        iterations: u32,
        /// Sizes in bytes.
        #[arg(long, value_delimiter = ',', default_values_t = [4096u64, 65536, 1 << 20, 8 << 20])]
        sizes: Vec<u64>,
    },
    /// Report heaps, udmabuf, DRM, V4L2 and VFIO devices appearing and leaving.
    Monitor {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Stop after this many events (exit 0).
        #[arg(long)]
        count: Option<u32>,
        /// Give up after this many seconds (exit 1).
        #[arg(long)]
        timeout: Option<u64>,
        /// The kernel's uevent socket even where udev is available.
        #[arg(long)]
        kernel: bool,
    },
}

/// Loads every list; a file with no key at all is unusable input, not an accessor that
/// asks for nothing (it would otherwise take part in reconciliation as an unnamed list).
fn load_all(files: &[PathBuf]) -> Result<Vec<AttrList>, file::FileError> {
    files
        .iter()
        .map(|f| {
            let l = file::load(f)?;
            if l.is_empty() {
                return Err(file::FileError {
                    path: f.display().to_string(),
                    line: None,
                    key: None,
                    message: "the list is empty (no keys): not a usable attribute list".into(),
                });
            }
            Ok(l)
        })
        .collect()
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Reconcile { json, files } => {
            let lists = match load_all(&files) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("unibuf: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            match reconcile(&lists) {
                Ok(r) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(
                                &unibuf::reconcile::dump::reconciled_to_json(&r)
                            )?
                        );
                    } else {
                        print!("{}", unibuf::reconcile::dump::reconciled_to_text(&r));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(c) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(
                                &unibuf::reconcile::dump::conflict_to_json(&c)
                            )?
                        );
                    } else {
                        println!("{c}");
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Plan { json, files } => {
            let lists = match load_all(&files) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("unibuf: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let r = match reconcile(&lists) {
                Ok(r) => r,
                Err(c) => {
                    println!("{c}");
                    return Ok(ExitCode::from(1));
                }
            };
            let plan = unibuf::backend::global().plan(&r);
            if json {
                let checks: Vec<serde_json::Value> = plan
                    .checks
                    .iter()
                    .map(|c| serde_json::json!({"what": c.what, "ok": c.ok, "detail": c.detail}))
                    .collect();
                let backend = match &plan.choice {
                    Ok(c) => serde_json::json!({
                        "kind": c.backend.name(),
                        "device": c.device.as_ref().map(|d| d.display().to_string()),
                        "reason": c.reason,
                    }),
                    Err(e) => serde_json::json!({"error": e}),
                };
                let out = serde_json::json!({
                    "reconciled": unibuf::reconcile::dump::reconciled_to_json(&r),
                    "backend": backend,
                    "size": plan.size,
                    "alignment": plan.alignment,
                    "checks": checks,
                    "can_allocate": plan.can_allocate(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", unibuf::reconcile::dump::reconciled_to_text(&r));
                print!("{plan}");
            }
            Ok(if plan.can_allocate() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Cmd::Dump { json, file: path } => match file::load(&path) {
            Ok(l) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&file::list_to_json(&l))?);
                } else {
                    print!("{}", file::list_to_text(&l));
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("unibuf: {e}");
                Ok(ExitCode::from(2))
            }
        },
        Cmd::Doctor { json } => {
            let d = doctor::collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", doctor::render(&d));
            }
            Ok(ExitCode::from(u8::from(
                d["choice"]["cpu_and_device"]["backend"].is_null(),
            )))
        }
        Cmd::Inspect {
            json,
            all,
            diff,
            pids,
        } => {
            if all && !pids.is_empty() {
                eprintln!("unibuf: inspect: give PIDs or --all, not both");
                return Ok(ExitCode::from(2));
            }
            inspect::run(&pids, json, diff.as_deref())
        }
        Cmd::Heaps { json, size } => heaps::heaps(json, size),
        Cmd::Bench {
            json,
            iterations,
            sizes,
        } => heaps::bench(json, &sizes, iterations),
        Cmd::Monitor {
            json,
            count,
            timeout,
            kernel,
        } => monitor::run(json, count, timeout, kernel),
        Cmd::Formats => {
            println!(
                "{:<12} {:<22} {:<22} planes (bpp/hsub/vsub/channels)",
                "name", "DRM", "V4L2"
            );
            for f in PixelFormat::ALL {
                let planes: Vec<String> = f
                    .planes()
                    .iter()
                    .map(|p| format!("{}/{}/{}/{}", p.bpp, p.hsub, p.vsub, p.channels))
                    .collect();
                println!(
                    "{:<12} {:<22} {:<22} {}",
                    f.name(),
                    f.drm_fourcc()
                        .map_or("-".to_string(), |d| describe_code(d as u32)),
                    f.v4l2_fourcc().map_or("-".to_string(), describe_code),
                    planes.join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    // A CLI whose output is piped into `head` should stop quietly when the reader goes away,
    // as C tools do, instead of panicking in println!: restore the default SIGPIPE action that
    // the Rust runtime replaced with SIG_IGN.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    match run() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unibuf: {e:#}");
            ExitCode::from(2)
        }
    }
}
