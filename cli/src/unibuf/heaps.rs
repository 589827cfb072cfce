//! `unibuf heaps` (list and allocate-test each heap) and `unibuf bench` (allocation latency).

use anyhow::Result;
use serde_json::{json, Value};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Permission};
use unibuf::backend::{Backends, HeapClass};
use unibuf::object::Object;
use unibuf::reconcile::Reconciled;

/// A CPU buffer of `size` bytes that asks for `kind` (a hint the choice honours when it is
/// compatible, so the buffer comes from that backend or the allocation says why not).
fn request(size: u64, kind: BackendKind) -> unibuf::Result<Arc<Reconciled>> {
    let mut l = AttrList::raw(size)?;
    l.set_accessor_name("unibuf-cli")?
        .set_accessor_kind(AccessorKind::Cpu)?
        .set_required_perm(Permission::ReadWrite)?
        .set_need_cpu_access(true)?
        .set_preferred_backend(kind)?;
    unibuf::reconcile::reconcile([&l])
        .map(Arc::new)
        .map_err(|c| unibuf::Error::Conflict(Box::new(c)))
}

/// One allocation through the library's one route, from `kind`.
fn allocate(b: &Backends, kind: BackendKind, size: u64, name: &str) -> unibuf::Result<Object> {
    Object::allocator(&request(size, kind)?)
        .backends(b)
        .name(name)
        .allocate()
}

/// One heap's test: allocate `size`, map, check the name fdinfo shows.
fn test_heap(b: &Backends, kind: BackendKind, path: &std::path::Path, size: u64) -> Value {
    let t = Instant::now();
    match allocate(b, kind, size, "unibuf-heaps-test") {
        Err(e) => json!({"ok": false, "error": e.to_string()}),
        Ok(a) => {
            let us = t.elapsed().as_secs_f64() * 1e6;
            let map = unibuf::map::probe_mappable(a.fd(), &path.display().to_string());
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", a.fd().as_raw_fd()))
                .map(|t| unibuf::inspect::parse_fdinfo(&t))
                .unwrap_or_default();
            let ok = map.is_ok() && info.is_dmabuf();
            json!({"ok": ok, "alloc_us": us, "size": a.size(), "mapped": map.is_ok(),
                "map_error": map.err().map(|e| e.to_string()),
                "exp_name": info.exp_name, "name": info.name})
        }
    }
}

/// `unibuf heaps`: exit 1 when a usable heap fails its test.
pub fn heaps(json_out: bool, size: u64) -> Result<ExitCode> {
    let b = Backends::discover();
    let mut out = Vec::new();
    let mut bad = false;
    for h in &b.heaps {
        let kind = match h.class {
            HeapClass::System => Some(BackendKind::SystemHeap),
            HeapClass::Contiguous => Some(BackendKind::CmaHeap),
            HeapClass::Other => None,
        };
        let test = match (kind, h.access.is_usable()) {
            (Some(k), true) => test_heap(&b, k, &h.path, size),
            (None, true) => json!({"ok": null, "error": "not tested: unibuf does not know this \
                heap's kind and never allocates from it"}),
            (_, false) => json!({"ok": null, "error": h.access.to_string()}),
        };
        bad |= test["ok"] == json!(false);
        out.push(json!({"name": h.name, "path": h.path.display().to_string(),
            "class": h.class.to_string(), "usable": h.access.is_usable(), "test": test}));
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"heaps": out, "size": size}))?
        );
    } else if out.is_empty() {
        println!(
            "no DMA-BUF heaps ({}); `unibuf doctor` says why",
            b.heap_dir
        );
    } else {
        for h in &out {
            let t = &h["test"];
            let res = match t["ok"].as_bool() {
                Some(true) => format!(
                    "ok: {size} bytes in {:.0} us, mapped, fdinfo exp_name {} name {}",
                    t["alloc_us"].as_f64().unwrap_or(0.0),
                    t["exp_name"].as_str().unwrap_or("?"),
                    t["name"].as_str().unwrap_or("-")
                ),
                Some(false) => format!(
                    "FAILED: {}",
                    t["error"]
                        .as_str()
                        .or(t["map_error"].as_str())
                        .unwrap_or("fdinfo shows no dma-buf")
                ),
                None => t["error"].as_str().unwrap_or("").to_string(),
            };
            println!(
                "{:<24} {:<17} {res}",
                h["path"].as_str().unwrap_or(""),
                h["class"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::from(u8::from(bad)))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// `unibuf bench`: allocation latency p50/p99 per usable backend and size.
pub fn bench(json_out: bool, sizes: &[u64], iterations: u32) -> Result<ExitCode> {
    let b = Backends::discover();
    let kinds: Vec<BackendKind> = BackendKind::ALL
        .iter()
        .copied()
        .filter(|k| b.has(*k))
        .collect();
    let total = (kinds.len() * sizes.len()) as u64 * u64::from(iterations);
    let bar = indicatif::ProgressBar::new(total);
    if json_out || total < 2000 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:24} [{bar:40}] {pos}/{len} ({eta})")?
            .progress_chars("=> "),
    );
    let mut rows = Vec::new();
    for k in &kinds {
        for &size in sizes {
            bar.set_message(format!("{k} {size}"));
            let req = request(size, *k)?;
            let mut t = Vec::with_capacity(iterations as usize);
            let mut err = None;
            for _ in 0..iterations {
                let s = Instant::now();
                match Object::allocator(&req)
                    .backends(&b)
                    .name("unibuf-bench")
                    .allocate()
                {
                    Ok(a) => {
                        drop(a);
                        t.push(s.elapsed());
                    }
                    Err(e) => {
                        err = Some(e.to_string());
                        break;
                    }
                }
                bar.inc(1);
            }
            t.sort();
            rows.push(
                json!({"backend": k.to_string(), "size": size, "iterations": t.len(),
                "p50_us": percentile(&t, 0.5), "p99_us": percentile(&t, 0.99),
                "max_us": t.last().map(|d| d.as_secs_f64() * 1e6), "error": err}),
            );
        }
    }
    bar.finish_and_clear();
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"iterations": iterations, "results": rows}))?
        );
    } else {
        println!(
            "{:<12} {:>10} {:>10} {:>10} {:>10}  (allocate + free, {iterations} each)",
            "backend", "size", "p50 us", "p99 us", "max us"
        );
        for r in &rows {
            println!(
                "{:<12} {:>10} {:>10.1} {:>10.1} {:>10.1}{}",
                r["backend"].as_str().unwrap_or(""),
                r["size"].as_u64().unwrap_or(0),
                r["p50_us"].as_f64().unwrap_or(0.0),
                r["p99_us"].as_f64().unwrap_or(0.0),
                r["max_us"].as_f64().unwrap_or(0.0),
                r["error"]
                    .as_str()
                    .map(|e| format!("  FAILED: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    let failed = rows.iter().any(|r| !r["error"].is_null());
    Ok(ExitCode::from(u8::from(failed)))
}
