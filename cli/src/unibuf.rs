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
