//! `unibuf doctor`: what this machine offers and lacks for unibuf, and what to do about it.
//!
//! One JSON value is built (`--json` prints it); the text report is rendered from it, so both
//! always say the same.

use serde_json::{json, Value};
use std::path::Path;
use unibuf::attr::BackendKind;
use unibuf::backend::{Backends, HeapClass, MemoryRequirement};
use unibuf::devices::{self, Device, DeviceKind};

/// The commands that install the rules and the group (docs/permissions.md says the same).
pub const RULES_FIX: &str = "sudo groupadd --system unibuf; \
sudo install -m 0644 udev-rules/60-unibuf.rules /etc/udev/rules.d/; \
sudo udevadm control --reload-rules; \
sudo udevadm trigger --action=add --subsystem-match=dma_heap --subsystem-match=misc \
--subsystem-match=vfio --subsystem-match=vfio-dev; \
sudo usermod -aG unibuf \"$USER\" (then log in again)";

fn read(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `(major, minor)` of a release string such as `6.12.48+deb13-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// `/proc/meminfo` value of `key` in bytes.
fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

fn names(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|n| devices::natural_key(n));
    v
}

fn user_name(uid: u32) -> String {
    read("/etc/passwd")
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// `(name, gid, members)` of every group in /etc/group.
fn groups_file() -> Vec<(String, u32, Vec<String>)> {
    read("/etc/group")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then(|| {
                (
                    f[0].to_string(),
                    f[2].parse().unwrap_or(u32::MAX),
                    f[3].split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            })
        })
        .collect()
}

fn group_name(gid: u32) -> String {
    groups_file()
        .into_iter()
        .find(|g| g.1 == gid)
        .map(|g| g.0)
        .unwrap_or_else(|| gid.to_string())
}

/// Whether this process may open `path` read-write, with the node's owner, group and mode and
/// the fix when it may not.
fn node_access(path: &Path, in_unibuf: bool) -> Value {
    let st = rustix::fs::stat(path);
    let ok = rustix::fs::access(
        path,
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    );
    let (owner, group, mode) = match &st {
        Ok(s) => (
            user_name(s.st_uid),
            group_name(s.st_gid),
            format!("{:04o}", s.st_mode & 0o7777),
        ),
        Err(_) => (String::new(), String::new(), String::new()),
    };
    let fix = match (&st, &ok) {
        (Err(e), _) => Some(format!("{}: {e}", path.display())),
        (_, Ok(())) => None,
        (_, Err(_)) if group == "unibuf" && !in_unibuf => Some(
            "the node is group unibuf: add the user to it (sudo usermod -aG unibuf \"$USER\", \
             then log in again)"
                .to_string(),
        ),
        (_, Err(_)) => Some(format!(
            "the node is {owner}:{group} {mode}: install the udev rules and the group: {RULES_FIX}"
        )),
    };
    json!({"path": path.display().to_string(), "exists": st.is_ok(), "read_write": ok.is_ok(),
        "owner": owner, "group": group, "mode": mode, "fix": fix})
}

fn drm_card(d: &Device) -> Value {
    use unibuf::interop::drm::{Card, PlaneType};
    let mut v = json!({"sysname": d.sysname, "path": d.devnode.display().to_string(),
        "driver": d.driver, "id_path": d.id_path(), "seat": d.seat()});
    match Card::open(&d.devnode) {
        Err(e) => {
            v["error"] = json!(e.to_string());
        }
        Ok(card) => {
            v["driver"] = json!(card.driver());
            // Primary planes are only listed to clients with universal planes (atomic) on;
            // render-only drivers refuse the caps, which is fine.
            let _ = card.enable_atomic();
            match card.planes() {
                Ok(planes) if !planes.is_empty() => {
                    v["kms"] = json!(true);
                    let prim: Vec<Value> = planes
                        .iter()
                        .filter(|p| p.1 == PlaneType::Primary)
                        .map(|(h, _)| match card.plane_constraints(*h) {
                            Ok(c) => json!({"plane": c.plane, "formats": c.formats.iter()
                                .map(|(f, _)| unibuf::interop::v4l2::fourcc_str(*f))
                                .collect::<Vec<_>>(), "pitch_alignment": c.pitch_alignment}),
                            Err(e) => json!({"plane": u32::from(*h), "error": e.to_string()}),
                        })
                        .collect();
                    v["primary_planes"] = json!(prim);
                }
                Ok(_) => v["kms"] = json!(false),
                Err(e) => {
                    v["kms"] = json!(false);
                    v["kms_error"] = json!(e.to_string());
                }
            }
        }
    }
    v
}

fn video_node(d: &Device) -> Value {
    use unibuf::interop::v4l2::{fourcc_str, VideoNode};
    let mut v = json!({"sysname": d.sysname, "path": d.devnode.display().to_string(),
        "name": read(d.syspath.join("name")), "driver": d.driver,
        "v4l_capabilities": d.v4l_capabilities(), "id_path": d.id_path()});
    match VideoNode::open(&d.devnode) {
        Ok(n) => {
            v["capture"] = json!(true);
            v["driver"] = json!(n.driver());
            v["card"] = json!(n.card());
            v["mplane"] = json!(n.is_mplane());
            v["formats"] = json!(n
                .formats()
                .unwrap_or_default()
                .into_iter()
                .map(fourcc_str)
                .collect::<Vec<_>>());
        }
        Err(e) => {
            v["capture"] = json!(false);
            v["error"] = json!(e.to_string());
        }
    }
    v
}

fn choice_json(b: &Backends, m: &MemoryRequirement) -> Value {
    match b.choose(m) {
        Ok(c) => json!({"backend": c.backend.to_string(),
            "device": c.device.map(|d| d.display().to_string()), "reason": c.reason}),
        Err(e) => json!({"backend": null, "error": e.to_string()}),
    }
}

/// Everything the doctor found, as JSON.
pub fn collect() -> Value {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let ver = kernel_version(&release);
    let at_least = |a: u32, b: u32| ver.is_some_and(|v| v >= (a, b));
    let all = devices::enumerate();
    let of = |k: DeviceKind| all.iter().filter(move |d| d.kind == k);
    let backends = Backends::discover();

    // The user and the unibuf group.
    let uid = rustix::process::getuid().as_raw();
    let mut gids: Vec<u32> = rustix::process::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    gids.push(rustix::process::getegid().as_raw());
    gids.sort_unstable();
    gids.dedup();
    let unibuf_group = groups_file().into_iter().find(|g| g.0 == "unibuf");
    let in_unibuf = unibuf_group.as_ref().is_some_and(|g| gids.contains(&g.1));

    // Heaps.
    let cma_total = meminfo("CmaTotal");
    let cma_free = meminfo("CmaFree");
    let heaps: Vec<Value> = backends
        .heaps
        .iter()
        .map(|h| {
            let (size, from) = match h.class {
                HeapClass::System => (meminfo("MemTotal"), "MemTotal (system RAM)"),
                HeapClass::Contiguous => (cma_total, "CmaTotal (all CMA areas)"),
                HeapClass::Other => (None, "unknown"),
            };
            json!({"name": h.name, "path": h.path.display().to_string(),
                "class": h.class.to_string(), "class_reason": h.class_reason,
                "size_bytes": size, "size_from": from, "usable": h.access.is_usable(),
                "access": h.access.to_string()})
        })
        .collect();
    let cma_areas = names("/sys/kernel/mm/cma");

    // udmabuf.
    let udmabuf = json!({
        "path": backends.udmabuf.path.display().to_string(),
        "present": of(DeviceKind::Udmabuf).next().is_some() || backends.udmabuf.path.exists(),
        "usable": backends.udmabuf.access.is_usable(),
        "access": backends.udmabuf.access.to_string(),
        "size_limit_mb": read("/sys/module/udmabuf/parameters/size_limit_mb")
            .and_then(|s| s.parse::<u64>().ok()),
        "list_limit": read("/sys/module/udmabuf/parameters/list_limit")
            .and_then(|s| s.parse::<u64>().ok()),
    });

    let drm: Vec<Value> = of(DeviceKind::DrmCard).map(drm_card).collect();
    let render: Vec<Value> = of(DeviceKind::DrmRender)
        .map(|d| {
            json!({"sysname": d.sysname, "path": d.devnode.display().to_string(),
            "driver": d.driver})
        })
        .collect();
    let video: Vec<Value> = of(DeviceKind::Video).map(video_node).collect();

    // IOMMU and VFIO.
    let iommu_units = names("/sys/class/iommu");
    let iommu_groups = names("/sys/kernel/iommu_groups");
    let vfio = json!({
        "container": of(DeviceKind::VfioContainer).next().map(|d| d.devnode.display().to_string()),
        "vfio_pci_driver": Path::new("/sys/bus/pci/drivers/vfio-pci").exists(),
        "groups": of(DeviceKind::VfioGroup).map(|d| json!({"group": d.sysname,
            "path": d.devnode.display().to_string()})).collect::<Vec<_>>(),
        "devices": of(DeviceKind::VfioDevice).map(|d| json!({"sysname": d.sysname,
            "path": d.devnode.display().to_string(), "pci": d.syspath.parent()
                .and_then(|p| p.parent()).and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())})).collect::<Vec<_>>(),
        "iommufd": of(DeviceKind::Iommufd).next().map(|d| d.devnode.display().to_string()),
    });

    // What the user may open.
    let nodes: Vec<Value> = all
        .iter()
        .map(|d| {
            let mut v = node_access(&d.devnode, in_unibuf);
            v["kind"] = json!(d.kind.name());
            v
        })
        .collect();

    // Which backend, and why.
    let device_buf = MemoryRequirement {
        device_access: true,
        ..Default::default()
    };
    let choice = json!({
        "cpu_and_device": choice_json(&backends, &device_buf),
        "cpu_only": choice_json(&backends, &MemoryRequirement::default()),
        "backends": BackendKind::ALL.iter().map(|k| json!({"backend": k.to_string(),
            "usable": backends.has(*k), "why": backends.why_not(*k)})).collect::<Vec<_>>(),
    });

    let heaps_present = Path::new("/sys/class/dma_heap").exists() || !heaps.is_empty();
    let udmabuf_present = udmabuf["present"].as_bool().unwrap_or(false);
    let features = json!([
        {"feature": "DMA-BUF heaps (CONFIG_DMABUF_HEAPS)", "since": "5.6",
         "by_version": at_least(5, 6), "present": heaps_present},
        {"feature": "udmabuf (CONFIG_UDMABUF)", "since": "4.20",
         "by_version": at_least(4, 20), "present": udmabuf_present},
        {"feature": "DMA_BUF_IOCTL_EXPORT_SYNC_FILE (implicit fences as sync_file)",
         "since": "6.0", "by_version": at_least(6, 0), "present": null},
        {"feature": "VFIO device cdev + iommufd (CONFIG_VFIO_DEVICE_CDEV)", "since": "6.6",
         "by_version": at_least(6, 6),
         "present": of(DeviceKind::Iommufd).next().is_some()},
        {"feature": "CMA heap named default_cma_region (before: reserved / linux,cma)",
         "since": "6.17", "by_version": at_least(6, 17), "present": null},
    ]);

    // Advice.
    let mut advice: Vec<String> = Vec::new();
    if !heaps_present {
        advice.push(if at_least(5, 6) {
            "no DMA-BUF heaps: this kernel was built without CONFIG_DMABUF_HEAPS. A board needs \
             CONFIG_DMABUF_HEAPS_SYSTEM for device buffers and CONFIG_DMABUF_HEAPS_CMA with a CMA \
             area (CONFIG_CMA + a `cma=64M` boot argument or a device-tree pool) for devices \
             without an IOMMU"
                .into()
        } else {
            format!("no DMA-BUF heaps: kernel {release} predates them (5.6); a board needs 5.6+")
        });
    } else if !backends
        .heaps
        .iter()
        .any(|h| h.class == HeapClass::Contiguous)
    {
        advice.push(
            "no CMA heap: devices without an IOMMU (no iommu_group) need contiguous memory: \
             CONFIG_DMABUF_HEAPS_CMA and a CMA area (cma=64M)"
                .into(),
        );
    }
    if !udmabuf_present {
        advice.push(
            "no /dev/udmabuf (CONFIG_UDMABUF): VFIO devices need udmabuf memory (the only \
             dma-buf VFIO type1 can pin)"
                .into(),
        );
    }
    let denied: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["exists"] == json!(true) && n["read_write"] == json!(false))
        .collect();
    if !denied.is_empty() {
        let list: Vec<&str> = denied.iter().filter_map(|n| n["path"].as_str()).collect();
        advice.push(format!(
            "this user cannot open {}: {}",
            list.join(", "),
            if unibuf_group.is_some() && !in_unibuf {
                "add the user to group unibuf (sudo usermod -aG unibuf \"$USER\", then log in \
                 again)"
                    .to_string()
            } else {
                format!("install the udev rules and the group: {RULES_FIX}")
            }
        ));
    }
    if all.iter().all(|d| d.kind != DeviceKind::DrmCard) {
        advice.push(
            "no DRM card: nothing to display on, and no DRM dumb buffers (vgem or a KMS driver) \
             as a last dma-buf provider"
                .into(),
        );
    }
    if choice["cpu_and_device"]["backend"].is_null() {
        advice.push(
            "no dma-buf provider is usable: only plain memfd (CPU-only buffers) is available; a \
             device buffer needs a usable heap, /dev/udmabuf or a DRM card"
                .into(),
        );
    }

    json!({
        "kernel": {"release": release, "version": ver.map(|(a, b)| format!("{a}.{b}")),
            "features": features},
        "discovery": {"source": devices::source().name(), "devices": all.len()},
        "heaps": heaps,
        "cma": {"total_bytes": cma_total, "free_bytes": cma_free, "areas": cma_areas},
        "udmabuf": udmabuf,
        "drm": drm,
        "drm_render": render,
        "video": video,
        "iommu": {"present": !iommu_units.is_empty() || !iommu_groups.is_empty(),
            "units": iommu_units, "groups": iommu_groups.len()},
        "vfio": vfio,
        "user": {"uid": uid, "name": user_name(uid),
            "groups": gids.iter().map(|g| group_name(*g)).collect::<Vec<_>>(),
            "unibuf_group_exists": unibuf_group.is_some(), "in_unibuf_group": in_unibuf,
            "nodes": nodes},
        "choice": choice,
        "advice": advice,
    })
}

fn mib(v: &Value) -> String {
    v.as_u64()
        .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "?".into())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        o => o.to_string(),
    }
}

/// The text report of [`collect`]'s value.
pub fn render(d: &Value) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let k = &d["kernel"];
    let _ = writeln!(
        o,
        "kernel {} (device discovery through {})",
        s(&k["release"]),
        s(&d["discovery"]["source"])
    );
    for f in k["features"].as_array().into_iter().flatten() {
        let present = match f["present"].as_bool() {
            Some(true) => "present",
            Some(false) => "ABSENT",
            None => "not probed",
        };
        let _ = writeln!(
            o,
            "  {:<62} since {:<5} {} by version, {present}",
            s(&f["feature"]),
            s(&f["since"]),
            if f["by_version"] == json!(true) {
                "yes"
            } else {
                "no"
            }
        );
    }
    let _ = writeln!(o, "\nDMA-BUF heaps:");
    let heaps = d["heaps"].as_array().cloned().unwrap_or_default();
    if heaps.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for h in &heaps {
        let _ = writeln!(
            o,
            "  {:<20} {:<17} {} ({}): {}",
            s(&h["name"]),
            s(&h["class"]),
            mib(&h["size_bytes"]),
            s(&h["size_from"]),
            s(&h["access"])
        );
    }
    let c = &d["cma"];
    let _ = writeln!(
        o,
        "  CMA: CmaTotal {}, CmaFree {}, areas: {}",
        mib(&c["total_bytes"]),
        mib(&c["free_bytes"]),
        c["areas"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "none".into())
    );
    let u = &d["udmabuf"];
    let _ = writeln!(
        o,
        "\nudmabuf {}: {} (size_limit_mb {}, list_limit {})",
        s(&u["path"]),
        s(&u["access"]),
        s(&u["size_limit_mb"]),
        s(&u["list_limit"])
    );
    let _ = writeln!(o, "\nDRM cards:");
    let cards = d["drm"].as_array().cloned().unwrap_or_default();
    if cards.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for c in &cards {
        let kind = match c["kms"].as_bool() {
            Some(true) => "KMS",
            Some(false) => "render-only",
            None => "?",
        };
        let _ = writeln!(
            o,
            "  {:<16} driver {:<8} {kind}{}",
            s(&c["path"]),
            s(&c["driver"]),
            c["error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        for p in c["primary_planes"].as_array().into_iter().flatten() {
            let f = p["formats"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| s(&p["error"]));
            let _ = writeln!(o, "    primary plane {}: {f}", s(&p["plane"]));
        }
    }
    for r in d["drm_render"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  {:<16} render node", s(&r["path"]));
    }
    let _ = writeln!(o, "\nV4L2 video nodes:");
    let video = d["video"].as_array().cloned().unwrap_or_default();
    if video.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for v in &video {
        if v["capture"] == json!(true) {
            let _ = writeln!(
                o,
                "  {:<12} capture, driver {} ({}){}: {}",
                s(&v["path"]),
                s(&v["driver"]),
                s(&v["card"]),
                if v["mplane"] == json!(true) {
                    ", multiplanar"
                } else {
                    ""
                },
                v["formats"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default()
            );
        } else {
            let _ = writeln!(
                o,
                "  {:<12} {}: not used ({})",
                s(&v["path"]),
                s(&v["name"]),
                s(&v["error"])
            );
        }
    }
    let i = &d["iommu"];
    let f = &d["vfio"];
    let _ = writeln!(
        o,
        "\nIOMMU: {} ({} groups); VFIO: container {}, vfio-pci {}, groups [{}], device cdevs [{}], iommufd {}",
        if i["present"] == json!(true) { "present" } else { "none" },
        s(&i["groups"]),
        s(&f["container"]),
        if f["vfio_pci_driver"] == json!(true) { "loaded" } else { "absent" },
        f["groups"].as_array().into_iter().flatten().map(|g| s(&g["path"])).collect::<Vec<_>>().join(", "),
        f["devices"].as_array().into_iter().flatten().map(|g| s(&g["path"])).collect::<Vec<_>>().join(", "),
        s(&f["iommufd"]),
    );
    let us = &d["user"];
    let _ = writeln!(
        o,
        "\nuser {} (uid {}), groups {}; group unibuf {}",
        s(&us["name"]),
        s(&us["uid"]),
        us["groups"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        match (
            us["unibuf_group_exists"].as_bool(),
            us["in_unibuf_group"].as_bool()
        ) {
            (Some(true), Some(true)) => "exists, user is a member",
            (Some(true), _) => "exists, user is NOT a member",
            _ => "does not exist",
        }
    );
    for n in us["nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  {:<26} {} {}:{} {}{}",
            s(&n["path"]),
            s(&n["mode"]),
            s(&n["owner"]),
            s(&n["group"]),
            if n["read_write"] == json!(true) {
                "may open"
            } else {
                "CANNOT open"
            },
            n["fix"]
                .as_str()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        );
    }
    let ch = &d["choice"];
    let _ = writeln!(o, "\nbackends:");
    for b in ch["backends"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  {:<10} {}", s(&b["backend"]), s(&b["why"]));
    }
    let line = |c: &Value| match c["backend"].as_str() {
        Some(b) => format!(
            "{b}{}: {}",
            c["device"]
                .as_str()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            s(&c["reason"])
        ),
        None => format!("none: {}", s(&c["error"])),
    };
    let _ = writeln!(
        o,
        "\na plain CPU+device buffer would come from: {}",
        line(&ch["cpu_and_device"])
    );
    let _ = writeln!(
        o,
        "a CPU-only buffer would come from: {}",
        line(&ch["cpu_only"])
    );
    let advice = d["advice"].as_array().cloned().unwrap_or_default();
    if !advice.is_empty() {
        let _ = writeln!(o, "\nwhat to do:");
        for a in &advice {
            let _ = writeln!(o, "  - {}", s(a));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(kernel_version("6.12.48+deb13-amd64"), Some((6, 12)));
        assert_eq!(kernel_version("5.10.0-32-amd64"), Some((5, 10)));
        assert_eq!(kernel_version("junk"), None);
    }

    #[test]
    fn renders_this_machine() {
        let d = collect();
        let text = render(&d);
        assert!(
            text.contains("a plain CPU+device buffer would come from"),
            "{text}"
        );
        assert!(d["choice"]["cpu_only"]["backend"].is_string(), "{d:#}");
    }
}
