//! `unibuf monitor`: hotplug events of heaps, udmabuf, DRM, V4L2 and VFIO devices, each added
//! device with its provider opened and ready to fill constraints.

use anyhow::Result;
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use unibuf::devices::{Action, DeviceKind, Event, Monitor};

/// Opens the provider of an added device: what it could fill an attribute list with.
fn provider(ev: &Event) -> Value {
    let path = &ev.device.devnode;
    match ev.device.kind {
        DeviceKind::Video => match unibuf::interop::v4l2::VideoNode::open(path)
            .and_then(|n| Ok((n.driver(), n.current_format()?)))
        {
            Ok((driver, c)) => json!({"ready": true, "provider": "v4l2", "driver": driver,
                "format": unibuf::interop::v4l2::fourcc_str(c.fourcc),
                "width": c.width, "height": c.height,
                "pitch": c.planes.first().map(|p| p.pitch),
                "size": c.total_size()}),
            Err(e) => json!({"ready": false, "error": e.to_string()}),
        },
        DeviceKind::DrmCard => match unibuf::interop::drm::Card::open(path) {
            Ok(card) => {
                let planes = card.planes().map(|p| p.len()).unwrap_or(0);
                json!({"ready": true, "provider": "drm", "driver": card.driver(),
                    "planes": planes})
            }
            Err(e) => json!({"ready": false, "error": e.to_string()}),
        },
        _ => match rustix::fs::open(
            path,
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(_) => json!({"ready": true, "provider": "node"}),
            Err(e) => json!({"ready": false, "error": format!("open: {e}")}),
        },
    }
}

fn node_perms(p: &std::path::Path) -> Value {
    match rustix::fs::stat(p) {
        Ok(s) => json!({"mode": format!("{:04o}", s.st_mode & 0o7777), "uid": s.st_uid,
            "gid": s.st_gid}),
        Err(_) => Value::Null,
    }
}

/// Prints events until `count` arrived (exit 0) or `timeout` passed (exit 1).
pub fn run(
    json_out: bool,
    count: Option<u32>,
    timeout: Option<u64>,
    kernel: bool,
) -> Result<ExitCode> {
    let mut m = if kernel {
        Monitor::kernel()?
    } else {
        Monitor::new()?
    };
    let deadline = timeout.map(|s| Instant::now() + Duration::from_secs(s));
    let mut out = std::io::stdout().lock();
    if json_out {
        writeln!(out, "{}", json!({"monitoring": m.source().name()}))?;
    } else {
        writeln!(
            out,
            "monitoring through {} (Ctrl-C to stop)",
            m.source().name()
        )?;
    }
    out.flush()?;
    let mut seen = 0u32;
    loop {
        if count.is_some_and(|c| seen >= c) {
            return Ok(ExitCode::SUCCESS);
        }
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if wait.is_zero() {
            return Ok(ExitCode::from(1));
        }
        let Some(ev) = m.next_event(wait)? else {
            continue;
        };
        seen += 1;
        let prov = if ev.action == Action::Add {
            provider(&ev)
        } else {
            Value::Null
        };
        let d = &ev.device;
        if json_out {
            writeln!(
                out,
                "{}",
                json!({"action": ev.action.name(), "device": d.to_json(),
                "node": node_perms(&d.devnode), "provider": prov})
            )?;
        } else {
            writeln!(
                out,
                "{} {} {} ({}{}){}",
                ev.action.name(),
                d.kind,
                d.devnode.display(),
                d.sysname,
                d.driver
                    .as_deref()
                    .map(|x| format!(", driver {x}"))
                    .unwrap_or_default(),
                match prov["ready"].as_bool() {
                    Some(true) => format!(": provider ready {prov}"),
                    Some(false) => format!(": provider not ready: {}", prov["error"]),
                    None => String::new(),
                }
            )?;
        }
        out.flush()?;
    }
}
