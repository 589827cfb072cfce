//! Hardware tests: the udev rules under a real udevd, hotplug, and the CLI's `doctor` and
//! `inspect` against the VM's devices.
//!
//! scripts/hw-test puts Debian's systemd-udevd, `udev-rules/60-unibuf.rules` (in
//! /etc/udev/rules.d, as docs/permissions.md installs it), users `member` (uid 1000, in group
//! `unibuf`) and `outsider` (uid 1001), and the dynamically linked `unibuf` CLI (built with the
//! `udev` feature) with their libraries into the initramfs; the init starts udevd and runs the
//! coldplug (`udevadm trigger --action=add; udevadm settle`) before the tests. This binary is
//! static, so it sees devices through the sysfs fallback and the kernel's uevents; the CLI sees
//! them through libudev.

use crate::harness::{pass, skip, Outcome, Test};
use anyhow::{bail, ensure, Context};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use unibuf::attr::{AccessorKind, AttrList, BackendKind, Permission};
use unibuf::devices::{self, Action, DeviceKind};
use unibuf::object::Object;
use unibuf::reconcile::{reconcile, Reconciled};

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "udev::coldplug_permissions",
            needs: "udevd with 60-unibuf.rules in the VM (scripts/hw-test)",
            run: coldplug_permissions,
        },
        Test {
            name: "udev::member_allocates_maps_imports",
            needs: "udevd + rules, a heap or udmabuf, user member in group unibuf",
            run: member_allocates,
        },
        Test {
            name: "udev::outsider_gets_eacces_with_hint",
            needs: "udevd + rules, a heap or udmabuf, user outsider",
            run: outsider_denied,
        },
        Test {
            name: "udev::hotplug_kernel_monitor",
            needs: "vivid (its platform device is unbound and bound again)",
            run: hotplug_kernel_monitor,
        },
        Test {
            name: "udev::hotplug_udev_monitor_cli",
            needs: "udevd, vivid and the dynamic unibuf CLI",
            run: hotplug_udev_monitor,
        },
        Test {
            name: "cli::doctor_json_knows_every_device",
            needs: "the unibuf CLI in the VM",
            run: doctor_json,
        },
        Test {
            name: "cli::inspect_groups_children_by_inode",
            needs: "the unibuf CLI and a dma-buf provider",
            run: inspect_children,
        },
        Test {
            name: "cli::inspect_diff_catches_leak",
            needs: "the unibuf CLI and a dma-buf provider",
            run: inspect_diff,
        },
    ]
}

const CLI: &str = "/bin/unibuf";
const MARKER: &str = "/etc/hwtest-udev";
const MEMBER: u32 = 1000;
const OUTSIDER: u32 = 1001;

/// In an x86_64 VM a missing piece of the test environment is a failure; on a board, and in the
/// aarch64 VMs (scripts/vm/udev.sh stages the x86_64 host's udevd and CLI, so only the x86_64 VMs
/// get them), a skip.
fn env_missing(what: &str) -> anyhow::Result<Outcome> {
    if !cfg!(target_arch = "x86_64") && super::env::kernel().is_some() {
        return skip(format!(
            "{what}: the VM's udevd and dynamic CLI are staged for x86_64 VMs only"
        ));
    }
    if super::env::kernel().is_some() {
        Ok(Outcome::Fail(format!(
            "{what}: scripts/hw-test should have put it into the VM"
        )))
    } else {
        skip(what.to_string())
    }
}

fn need_udevd() -> Option<anyhow::Result<Outcome>> {
    if !Path::new(MARKER).exists() {
        return Some(env_missing("no udevd in this system (/etc/hwtest-udev)"));
    }
    if !Path::new("/run/udev/control").exists() {
        return Some(Ok(Outcome::Fail(
            "udevd was installed but is not running (/run/udev/control missing): see the console"
                .into(),
        )));
    }
    None
}

fn need_cli() -> Option<anyhow::Result<Outcome>> {
    (!Path::new(CLI).exists()).then(|| env_missing("no unibuf CLI at /bin/unibuf"))
}

fn group_gid(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[0] == name).then(|| f[2].parse().ok())?
        })
}

/// The nodes the rules give to group unibuf: heaps, udmabuf, VFIO container, groups, cdevs,
/// iommufd.
fn rule_nodes() -> Vec<PathBuf> {
    devices::enumerate()
        .into_iter()
        .filter(|d| {
            matches!(
                d.kind,
                DeviceKind::DmaHeap
                    | DeviceKind::Udmabuf
                    | DeviceKind::VfioContainer
                    | DeviceKind::VfioGroup
                    | DeviceKind::VfioDevice
                    | DeviceKind::Iommufd
            )
        })
        .map(|d| d.devnode)
        .collect()
}

fn coldplug_permissions() -> anyhow::Result<Outcome> {
    if let Some(o) = need_udevd() {
        return o;
    }
    let gid = group_gid("unibuf").context("no group unibuf in /etc/group")?;
    let nodes = rule_nodes();
    ensure!(!nodes.is_empty(), "no heap, udmabuf or VFIO node at all");
    let mut seen = Vec::new();
    let mut absent = Vec::new();
    for p in &nodes {
        // sysfs can list a device whose node this kernel's devtmpfs did not make (the VFIO
        // device cdev on Debian's kernels): nothing to give a group to, so it is reported.
        if !p.exists() {
            absent.push(p.display().to_string());
            continue;
        }
        let m = std::fs::metadata(p).with_context(|| format!("stat {}", p.display()))?;
        let mode = m.permissions().mode() & 0o7777;
        ensure!(
            m.uid() == 0 && m.gid() == gid && mode == 0o660,
            "{}: {}:{} {mode:04o}, want root:unibuf({gid}) 0660",
            p.display(),
            m.uid(),
            m.gid()
        );
        seen.push(p.display().to_string());
    }
    ensure!(!seen.is_empty(), "none of {absent:?} has a node in /dev");
    let absent = if absent.is_empty() {
        String::new()
    } else {
        format!("; in sysfs without a /dev node: {}", absent.join(" "))
    };
    pass(format!("root:unibuf 0660: {}{absent}", seen.join(" ")))
}

/// Runs `f` in a forked child with these credentials; its `Ok` string or error comes back.
fn as_user(
    uid: u32,
    groups: &[u32],
    f: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    // The initramfs root may be 0700 (a mktemp directory packed by cpio): make it traversable
    // so that the nodes' own modes decide.
    let root_mode = std::fs::metadata("/")?.permissions().mode();
    if root_mode & 0o001 == 0 {
        std::fs::set_permissions("/", std::fs::Permissions::from_mode(root_mode | 0o055))?;
    }
    let (rd, wr) = rustix::pipe::pipe()?;
    // SAFETY: the test runs single-threaded in its own forked child; the grandchild only runs
    // `f` and exits.
    let pid = unsafe { libc::fork() };
    ensure!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(rd);
        let gids: Vec<libc::gid_t> = groups.to_vec();
        // SAFETY: plain syscalls on this process's credentials.
        let r = unsafe {
            (
                libc::setgroups(gids.len(), gids.as_ptr()),
                libc::setgid(uid),
                libc::setuid(uid),
            )
        };
        let res = if r != (0, 0, 0) {
            Err(anyhow::anyhow!("could not become uid {uid}: {r:?}"))
        } else {
            f()
        };
        let mut w = std::fs::File::from(wr);
        let (code, msg) = match res {
            Ok(s) => (0, s),
            Err(e) => (1, format!("{e:#}")),
        };
        let _ = w.write_all(msg.as_bytes());
        drop(w);
        // SAFETY: leaves the grandchild without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(wr);
    let mut msg = String::new();
    std::fs::File::from(rd).read_to_string(&mut msg)?;
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(msg)
    } else {
        bail!("as uid {uid}: {msg} (status {status:#x})")
    }
}

fn list(size: u64, kind: BackendKind, name: &str) -> anyhow::Result<Arc<Reconciled>> {
    let mut l = AttrList::raw(size)?;
    l.set_need_cpu_access(true)?
        .set_accessor_name(name)?
        .set_accessor_kind(AccessorKind::Device)?;
    if kind == BackendKind::CmaHeap {
        l.set_contiguous(true)?;
    } else {
        l.set_preferred_backend(kind)?;
    }
    Ok(Arc::new(
        reconcile([&l]).map_err(|e| anyhow::anyhow!("{e}"))?,
    ))
}

/// Allocates from `kind`, writes a pattern, imports a read-only duplicate and reads it back.
fn alloc_map_import(kind: BackendKind) -> anyhow::Result<()> {
    let l = list(65536, kind, "hwt-member")?;
    let mut o = Object::allocate(&l).with_context(|| format!("allocate from {kind}"))?;
    let got = o.choice().map(|c| c.backend);
    ensure!(got == Some(kind), "chose {got:?}, not {kind}");
    {
        let mut m = o.map_write()?;
        let mut g = m.write()?;
        // SAFETY: the guard's mapping is 65536 bytes long.
        unsafe { std::ptr::write_bytes(g.as_mut_ptr(), 0x5a, 4096) };
        g.end()?;
    }
    let dup: OwnedFd = o.fd().try_clone_to_owned()?;
    let imp = Object::import(dup, &l, Permission::ReadOnly)?;
    let m = imp.map_read()?;
    let v = m.read()?.to_vec();
    ensure!(
        v[..4096].iter().all(|&b| b == 0x5a),
        "import did not see the pattern"
    );
    Ok(())
}

fn usable_kinds() -> Vec<BackendKind> {
    let mut v = Vec::new();
    if super::env::heap_names().iter().any(|n| n == "system") {
        v.push(BackendKind::SystemHeap);
    }
    if super::env::cma_heap_name().is_some() {
        v.push(BackendKind::CmaHeap);
    }
    if Path::new("/dev/udmabuf").exists() {
        v.push(BackendKind::Udmabuf);
    }
    v
}

fn member_allocates() -> anyhow::Result<Outcome> {
    if let Some(o) = need_udevd() {
        return o;
    }
    let kinds = usable_kinds();
    if kinds.is_empty() {
        return super::env::missing(super::env::Feature::SystemHeap, "no heap and no udmabuf");
    }
    let gid = group_gid("unibuf").context("no group unibuf")?;
    let k2 = kinds.clone();
    as_user(MEMBER, &[gid], move || {
        for k in &k2 {
            alloc_map_import(*k)?;
        }
        Ok(String::new())
    })?;
    pass(format!(
        "uid {MEMBER} in unibuf: allocated, mapped, imported from {}",
        kinds
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn outsider_denied() -> anyhow::Result<Outcome> {
    if let Some(o) = need_udevd() {
        return o;
    }
    let nodes: Vec<PathBuf> = rule_nodes()
        .into_iter()
        .filter(|p| p.starts_with("/dev/dma_heap") || p == Path::new("/dev/udmabuf"))
        .collect();
    if nodes.is_empty() {
        return super::env::missing(super::env::Feature::Udmabuf, "no heap and no udmabuf");
    }
    let n2 = nodes.clone();
    let out = as_user(OUTSIDER, &[OUTSIDER], move || {
        for p in &n2 {
            match rustix::fs::open(
                p,
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Err(rustix::io::Errno::ACCESS) => {}
                other => bail!("{}: {other:?}, want EACCES", p.display()),
            }
        }
        let b = unibuf::backend::Backends::discover();
        let why = b.why_not(BackendKind::SystemHeap) + &b.why_not(BackendKind::Udmabuf);
        ensure!(
            why.contains("EACCES") && why.contains("udev-rules/60-unibuf.rules"),
            "no hint: {why}"
        );
        Ok(why)
    })?;
    pass(format!(
        "uid {OUTSIDER}: EACCES on {} with the hint ({})",
        nodes
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        out.chars().take(120).collect::<String>()
    ))
}

/// vivid's platform device bound to its driver (`vivid.0`).
fn vivid_device() -> Option<String> {
    let rd = std::fs::read_dir("/sys/bus/platform/drivers/vivid").ok()?;
    let mut v: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("vivid."))
        .collect();
    v.sort();
    v.into_iter().next()
}

/// The kernel's last uevent sequence number (`/sys/kernel/uevent_seqnum`).
fn uevent_seqnum() -> anyhow::Result<u64> {
    let p = "/sys/kernel/uevent_seqnum";
    let s = std::fs::read_to_string(p).with_context(|| format!("read {p}"))?;
    s.trim().parse().with_context(|| format!("{p}: {s:?}"))
}

fn replug_vivid(dev: &str, what: &str) -> anyhow::Result<()> {
    let p = format!("/sys/bus/platform/drivers/vivid/{what}");
    std::fs::write(&p, dev).with_context(|| format!("write {dev} to {p}"))
}

fn hotplug_kernel_monitor() -> anyhow::Result<Outcome> {
    let Some(dev) = vivid_device() else {
        return super::env::missing(super::env::Feature::Vivid, "no vivid platform device");
    };
    let before = devices::enumerate_kind(DeviceKind::Video).len();
    let mut m = devices::Monitor::kernel()?;
    replug_vivid(&dev, "unbind")?;
    let mut removed = Vec::new();
    let t = Instant::now();
    while removed.len() < before && t.elapsed() < Duration::from_secs(15) {
        if let Some(ev) = m.next_event(Duration::from_secs(1))? {
            if ev.action == Action::Remove && ev.device.kind == DeviceKind::Video {
                removed.push(ev.device.sysname);
            }
        }
    }
    replug_vivid(&dev, "bind")?;
    let mut added = Vec::new();
    let mut ready = None;
    let t = Instant::now();
    while added.len() < removed.len() && t.elapsed() < Duration::from_secs(15) {
        if let Some(ev) = m.next_event(Duration::from_secs(1))? {
            if ev.action == Action::Add && ev.device.kind == DeviceKind::Video {
                if ready.is_none() {
                    if let Ok(n) = unibuf::interop::v4l2::VideoNode::open(&ev.device.devnode) {
                        let c = n.current_format()?;
                        ready = Some(format!(
                            "{} {} {}x{} sizeimage {}",
                            ev.device.devnode.display(),
                            unibuf::interop::v4l2::fourcc_str(c.fourcc),
                            c.width,
                            c.height,
                            c.total_size()
                        ));
                    }
                }
                added.push(ev.device.sysname);
            }
        }
    }
    ensure!(!removed.is_empty(), "no remove event of a video node");
    ensure!(
        added.len() == removed.len(),
        "removed {removed:?}, added back {added:?}"
    );
    let ready = ready.context("no added node opened as a capture node")?;
    ensure!(
        devices::enumerate_kind(DeviceKind::Video).len() == before,
        "the video nodes did not all come back"
    );
    pass(format!(
        "kernel uevents: removed {removed:?}, added {added:?}; provider ready: {ready}"
    ))
}

fn hotplug_udev_monitor() -> anyhow::Result<Outcome> {
    if let Some(o) = need_udevd().or_else(need_cli) {
        return o;
    }
    let Some(dev) = vivid_device() else {
        return super::env::missing(super::env::Feature::Vivid, "no vivid platform device");
    };
    let mut child = Command::new(CLI)
        .args(["monitor", "--json", "--timeout", "40"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let out = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let result = (|| -> anyhow::Result<String> {
        let first = rx.recv_timeout(Duration::from_secs(10))?;
        let v: serde_json::Value = serde_json::from_str(&first)?;
        ensure!(v["monitoring"] == "udev", "monitor is not udev's: {first}");
        // udevd may still be working through the events of an earlier replug (the previous
        // test's, on a slow VM): they reach this monitor too. Only events the kernel numbered
        // after this point belong to this replug.
        let since = uevent_seqnum()?;
        replug_vivid(&dev, "unbind")?;
        std::thread::sleep(Duration::from_millis(300));
        replug_vivid(&dev, "bind")?;
        let video_gid = group_gid("video");
        let t = Instant::now();
        let mut removes = 0;
        while t.elapsed() < Duration::from_secs(30) {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&line)?;
            if v["device"]["kind"] != "video" {
                continue;
            }
            let seq = v["device"]["properties"]["SEQNUM"]
                .as_str()
                .and_then(|n| n.parse::<u64>().ok());
            if seq.is_some_and(|n| n <= since) {
                continue;
            }
            if v["action"] == "remove" {
                removes += 1;
            }
            if v["action"] == "add" && v["provider"]["ready"] == true {
                ensure!(removes > 0, "an add before any remove: {line}");
                ensure!(
                    v["device"]["source"] == "udev",
                    "device not from udev: {line}"
                );
                // udevd ran the rules before the event reached the monitor: the node already
                // has Debian's video group (50-udev-default.rules).
                if let Some(g) = video_gid {
                    ensure!(
                        v["node"]["gid"] == g,
                        "node gid is not video ({g}) when the event arrived: {line}"
                    );
                }
                return Ok(format!(
                    "{removes} remove(s), then add {} (ID_PATH {}, provider {})",
                    v["device"]["devnode"], v["device"]["id_path"], v["provider"]
                ));
            }
        }
        bail!("no add event of a ready video node within 30 s ({removes} removes)")
    })();
    let _ = child.kill();
    let _ = child.wait();
    pass(result?)
}

fn names_in(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| keep(n))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|n| devices::natural_key(n));
    v
}

fn strs(v: &serde_json::Value, key: &str) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x[key].as_str().map(str::to_string))
        .collect()
}

fn doctor_json() -> anyhow::Result<Outcome> {
    if let Some(o) = need_cli() {
        return o;
    }
    let out = Command::new(CLI).args(["doctor", "--json"]).output()?;
    let d: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("doctor --json: {}", String::from_utf8_lossy(&out.stderr)))?;
    let numbered = |p: &'static str| {
        move |n: &str| {
            n.strip_prefix(p)
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        }
    };
    // Every heap, card, render node, video node and VFIO group of the VM, with the right names.
    let want_heaps = super::env::heap_names();
    ensure!(
        strs(&d["heaps"], "name") == want_heaps,
        "heaps {} != {want_heaps:?}",
        d["heaps"]
    );
    let want_cards = names_in("/sys/class/drm", numbered("card"));
    ensure!(
        strs(&d["drm"], "sysname") == want_cards,
        "cards {} != {want_cards:?}",
        d["drm"]
    );
    let want_render = names_in("/sys/class/drm", numbered("renderD"));
    ensure!(
        strs(&d["drm_render"], "sysname") == want_render,
        "render nodes {} != {want_render:?}",
        d["drm_render"]
    );
    let want_video = names_in("/sys/class/video4linux", numbered("video"));
    ensure!(
        strs(&d["video"], "sysname") == want_video,
        "video {} != {want_video:?}",
        d["video"]
    );
    let want_groups = names_in("/sys/class/vfio", |_| true);
    ensure!(
        strs(&d["vfio"]["groups"], "group") == want_groups,
        "vfio groups {} != {want_groups:?}",
        d["vfio"]["groups"]
    );
    ensure!(
        d["udmabuf"]["present"] == Path::new("/sys/class/misc/udmabuf").exists(),
        "udmabuf {}",
        d["udmabuf"]
    );
    let drivers = strs(&d["drm"], "driver");
    if super::env::known_to_have(super::env::Feature::Vgem) == Some(true) {
        ensure!(
            drivers.iter().any(|x| x == "vgem"),
            "no vgem in {drivers:?}"
        );
    }
    if super::env::known_to_have(super::env::Feature::VkmsWriteback) == Some(true) {
        ensure!(
            drivers.iter().any(|x| x == "vkms"),
            "no vkms in {drivers:?}"
        );
        let vkms = d["drm"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["driver"] == "vkms")
            .context("vkms")?;
        ensure!(
            vkms["kms"] == true
                && vkms["primary_planes"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()),
            "vkms: {vkms}"
        );
        let fmts = vkms["primary_planes"][0]["formats"].to_string();
        ensure!(fmts.contains("XR24"), "vkms primary formats {fmts}");
    }
    if let Some(cma) = super::env::cma_heap_name() {
        let h = d["heaps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["name"] == cma.as_str())
            .context("cma heap")?;
        ensure!(
            h["class"] == "contiguous (CMA)" && d["cma"]["total_bytes"].as_u64() > Some(0),
            "CMA heap {h}, cma {}",
            d["cma"]
        );
    }
    let udev = Path::new(MARKER).exists();
    if udev {
        ensure!(
            d["discovery"]["source"] == "udev",
            "discovery {}",
            d["discovery"]
        );
    }
    let any_provider = !want_heaps.is_empty()
        || Path::new("/sys/class/misc/udmabuf").exists()
        || !want_cards.is_empty();
    ensure!(
        out.status.code() == Some(if any_provider { 0 } else { 1 }),
        "doctor exit {:?}, choice {}",
        out.status.code(),
        d["choice"]["cpu_and_device"]
    );
    pass(format!(
        "heaps {want_heaps:?}, cards {want_cards:?} ({drivers:?}), render {want_render:?}, video \
         {want_video:?}, vfio {want_groups:?}; choice {}",
        d["choice"]["cpu_and_device"]["backend"]
    ))
}

/// Forks a child that holds what this process holds until killed; `then` runs in it first.
fn hold_child(then: impl FnOnce()) -> anyhow::Result<i32> {
    // SAFETY: the test runs single-threaded in its own forked child.
    let pid = unsafe { libc::fork() };
    ensure!(pid >= 0, "fork failed");
    if pid == 0 {
        then();
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    Ok(pid)
}

fn kill(pid: i32) {
    // SAFETY: kills and reaps a child this test forked.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

fn any_kind() -> Option<BackendKind> {
    usable_kinds()
        .into_iter()
        .next()
        .or_else(|| (!super::env::drm_cards().is_empty()).then_some(BackendKind::DrmDumb))
}

fn inspect_children() -> anyhow::Result<Outcome> {
    if let Some(o) = need_cli() {
        return o;
    }
    let Some(kind) = any_kind() else {
        return super::env::missing(super::env::Feature::SystemHeap, "no dma-buf provider");
    };
    let o = Object::allocate(&list(1 << 16, kind, "hwt-inspect")?)?;
    let fd = o.fd().try_clone_to_owned()?;
    // One child holds the fd; the other maps the buffer and closes its fds of it.
    let a = hold_child(|| {})?;
    let b = hold_child(move || {
        let len = 1 << 16;
        // SAFETY: a shared read-only mapping of a dma-buf fd of at least `len` bytes.
        let _ = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::SHARED,
                fd.as_fd(),
                0,
            )
        };
    })?;
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new(CLI)
        .args(["inspect", "--json", &a.to_string(), &b.to_string()])
        .output();
    // What the mapping child's maps show of DRM and dma-buf files (for a failure's message).
    let b_maps: Vec<String> = std::fs::read_to_string(format!("/proc/{b}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("dmabuf") || l.contains("/dev/dri") || l.contains("drm"))
        .map(str::to_string)
        .collect();
    kill(a);
    kill(b);
    let out = out?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let found: Vec<&serde_json::Value> = v["buffers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["name"] == "hwt-inspect")
        .collect();
    ensure!(
        found.len() == 1,
        "want one hwt-inspect buffer: {}",
        v["buffers"]
    );
    let bf = found[0];
    let pids: Vec<i64> = bf["pids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_i64())
        .collect();
    let mut want = vec![i64::from(a), i64::from(b)];
    want.sort();
    ensure!(pids == want, "pids {pids:?} != {want:?}: {bf}");
    ensure!(bf["size"].as_u64() >= Some(1 << 16), "size {}", bf["size"]);
    let holds = bf["holders"].to_string();
    // Some kernels (Debian's 5.10, with vgem's dumb buffers) put the exporter's own file on a
    // mapping of its dma-buf (`/drm mm object`): /proc then cannot tell whose mapping it is.
    if !holds.contains("\"start\"")
        && b_maps.iter().any(|l| l.contains("/drm mm object"))
        && !b_maps.iter().any(|l| l.contains("dmabuf"))
    {
        return skip(format!(
            "fd holds found ({holds}), but this kernel shows the mapping of the {kind:?} \
             dma-buf as the exporter's file, not the dma-buf's: {b_maps:?}"
        ));
    }
    ensure!(
        holds.contains("\"fd\"") && holds.contains("\"start\""),
        "want an fd hold and a map hold: {holds}; the mapping child's maps: {b_maps:?}"
    );
    pass(format!(
        "inode {} ({}, exporter {}) held by {pids:?}",
        bf["inode"], bf["size"], bf["exp_name"]
    ))
}

fn inspect_diff() -> anyhow::Result<Outcome> {
    if let Some(o) = need_cli() {
        return o;
    }
    let Some(kind) = any_kind() else {
        return super::env::missing(super::env::Feature::SystemHeap, "no dma-buf provider");
    };
    let kept_list = list(4096, kind, "hwt-kept")?;
    let leak_list = list(8192, kind, "hwt-leak")?;
    let temp_list = list(4096, kind, "hwt-temp")?;
    let (cmd_r, cmd_w) = rustix::pipe::pipe()?;
    let (ack_r, ack_w) = rustix::pipe::pipe()?;
    let child = hold_child(move || {
        // Held for the child's life (hold_child never returns from it).
        std::mem::forget(Object::allocate(&kept_list).ok());
        let mut b = [0u8; 1];
        let _ = rustix::io::write(&ack_w, b"k");
        let _ = rustix::io::read(&cmd_r, &mut b);
        let leak = Object::allocate(&leak_list).ok();
        drop(Object::allocate(&temp_list).ok());
        std::mem::forget(leak);
        let _ = rustix::io::write(&ack_w, b"a");
    })?;
    let result = (|| -> anyhow::Result<String> {
        let mut b = [0u8; 1];
        rustix::io::read(&ack_r, &mut b)?;
        let snap = "/tmp/hwt-inspect-before.json";
        let out = Command::new(CLI)
            .args(["inspect", "--json", &child.to_string()])
            .output()?;
        std::fs::write(snap, &out.stdout)?;
        ensure!(
            String::from_utf8_lossy(&out.stdout).contains("hwt-kept"),
            "the snapshot lacks the kept buffer"
        );
        rustix::io::write(&cmd_w, b"go")?;
        rustix::io::read(&ack_r, &mut b)?;
        let out = Command::new(CLI)
            .args(["inspect", "--json", "--diff", snap, &child.to_string()])
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let appeared: Vec<String> = strs(&v["appeared"], "name");
        ensure!(
            appeared == ["hwt-leak"],
            "appeared {appeared:?}, want only hwt-leak: {v}"
        );
        ensure!(strs(&v["freed"], "name").is_empty(), "freed {}", v["freed"]);
        ensure!(
            out.status.code() == Some(1),
            "exit {:?}, want 1",
            out.status.code()
        );
        Ok(format!(
            "appeared: {appeared:?} ({} bytes), kept and freed buffers not named",
            v["appeared_bytes"]
        ))
    })();
    kill(child);
    pass(result?)
}
