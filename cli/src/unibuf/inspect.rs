//! `unibuf inspect`: every dma-buf processes hold, grouped by buffer, with totals; `--diff`
//! names the buffers that appeared since a saved snapshot.

use anyhow::{Context, Result};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use unibuf::inspect::{buffer_json, diff, Buffer, Hold, Snapshot};

fn human(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn holders(b: &Buffer) -> String {
    b.holders
        .iter()
        .map(|(pid, comm, h)| match h {
            Hold::Fd(fd) => format!("{pid} {comm} fd {fd}"),
            Hold::Map { start, perms, .. } => format!("{pid} {comm} map {start:#x} {perms}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn table(bufs: &[Buffer]) -> String {
    let mut o = format!(
        "{:<10} {:>10} {:<12} {:<24} holders (pid command fd|map)\n",
        "inode", "size", "exporter", "name"
    );
    for b in bufs {
        o += &format!(
            "{:<10} {:>10} {:<12} {:<24} {}\n",
            b.inode,
            human(b.size),
            b.exp_name,
            if b.name.is_empty() { "-" } else { &b.name },
            holders(b)
        );
    }
    o
}

/// Runs `inspect`: exit 0; with `--diff`, 1 when buffers appeared that are still held.
pub fn run(pids: &[u32], json_out: bool, diff_with: Option<&Path>) -> Result<ExitCode> {
    let sel = (!pids.is_empty()).then_some(pids);
    let now = Snapshot::take(sel);
    if let Some(path) = diff_with {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the snapshot {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let before =
            Snapshot::from_json(&v).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let d = diff(&before, &now);
        if json_out {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "appeared": d.appeared.iter().map(buffer_json).collect::<Vec<_>>(),
                    "freed": d.freed.iter().map(buffer_json).collect::<Vec<_>>(),
                    "appeared_bytes": d.appeared.iter().map(|b| b.size).sum::<u64>(),
                }))?
            );
        } else {
            println!(
                "{} buffer(s) appeared since {} and are still held ({}):",
                d.appeared.len(),
                path.display(),
                human(d.appeared.iter().map(|b| b.size).sum())
            );
            if !d.appeared.is_empty() {
                print!("{}", table(&d.appeared));
            }
            println!("{} buffer(s) were freed since.", d.freed.len());
            if !d.freed.is_empty() {
                print!("{}", table(&d.freed));
            }
        }
        return Ok(ExitCode::from(u8::from(!d.appeared.is_empty())));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&now.to_json())?);
        return Ok(ExitCode::SUCCESS);
    }
    let bufs = now.buffers();
    if bufs.is_empty() {
        println!("no dma-buf is held by the processes looked at");
    } else {
        print!("{}", table(&bufs));
        println!("\nper exporter:");
        for (e, (n, b)) in now.totals_by_exporter() {
            println!("  {e:<12} {n:>4} buffer(s) {:>10}", human(b));
        }
        println!("per process:");
        for (pid, (comm, n, b)) in now.totals_by_process() {
            println!("  {pid:<7} {comm:<16} {n:>4} buffer(s) {:>10}", human(b));
        }
        println!(
            "{} buffer(s), {} in all",
            bufs.len(),
            human(bufs.iter().map(|b| b.size).sum())
        );
    }
    if !now.errors.is_empty() {
        eprintln!(
            "unibuf: {} process(es) could not be read (run as root to see every process): {}",
            now.errors.len(),
            now.errors.join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
