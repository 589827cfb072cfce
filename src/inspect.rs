//! Who holds which dma-buf: a snapshot of every dma-buf that processes hold, from `/proc`.
//!
//! A process holds a dma-buf through an fd (`/proc/PID/fd/N` links to `/dmabuf:NAME`, and
//! `/proc/PID/fdinfo/N` has the kernel's dma-buf fields) or through a mapping (a line of
//! `/proc/PID/maps` whose path is `/dmabuf:NAME`, also after the fd was closed). The kernel's
//! format (Documentation/filesystems/proc.rst, "dma-buf"):
//!
//! ```text
//! pos:    0
//! flags:  02000002
//! mnt_id: 9
//! ino:    63107
//! size:   32768
//! count:  2
//! exp_name:  system-heap
//! name:   camera-frame-3
//! ```
//!
//! (`ino:` is there from Linux 5.14; on older kernels the inode comes from `stat` of the fd's
//! `/proc/PID/fd/N` link, which is the same number.)
//!
//! A dma-buf's inode number is given once per buffer by a 64-bit counter that is never reused,
//! so it identifies the same buffer across processes and across snapshots taken at different
//! times: [`Snapshot::buffers`] groups by it, [`diff`] compares by it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The dma-buf fields of one `/proc/PID/fdinfo/N` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// `size`: the buffer's size in bytes.
    pub size: Option<u64>,
    /// `flags`: the file's open flags (octal in the file).
    pub flags: Option<u32>,
    /// `mode`: the file's mode bits, where the kernel shows them.
    pub mode: Option<u32>,
    /// `count`: references to the buffer's file besides this fdinfo read.
    pub count: Option<u64>,
    /// `exp_name`: the exporter (`system`, `reserved`, `udmabuf`, `vgem`, `nv_dmabuf`...).
    pub exp_name: Option<String>,
    /// `name`: what DMA_BUF_SET_NAME gave it (absent when never named).
    pub name: Option<String>,
    /// `ino`: the buffer's inode (Linux 5.14 and later).
    pub ino: Option<u64>,
}

impl FdInfo {
    /// Whether the fields are a dma-buf's (`exp_name` is only shown for dma-bufs).
    pub fn is_dmabuf(&self) -> bool {
        self.exp_name.is_some()
    }

    /// `ro`, `wo` or `rw` from `flags`.
    pub fn access(&self) -> Option<&'static str> {
        self.flags.map(|f| match f & 0o3 {
            0 => "ro",
            1 => "wo",
            _ => "rw",
        })
    }
}

/// Parses an fdinfo file's text (`key:<tabs or spaces>value` lines; unknown keys ignored).
pub fn parse_fdinfo(text: &str) -> FdInfo {
    let mut f = FdInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "size" => f.size = v.parse().ok(),
            "flags" => f.flags = u32::from_str_radix(v, 8).ok(),
            "mode" => f.mode = u32::from_str_radix(v, 8).ok(),
            "count" => f.count = v.parse().ok(),
            "exp_name" => f.exp_name = Some(v.to_string()),
            "name" => f.name = Some(v.to_string()),
            "ino" => f.ino = v.parse().ok(),
            _ => {}
        }
    }
    f
}

/// One dma-buf mapping of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `rw-s` and the like.
    pub perms: String,
    /// Offset into the buffer.
    pub offset: u64,
    /// The buffer's inode.
    pub inode: u64,
    /// The name after `/dmabuf:` (empty when never named).
    pub name: String,
}

/// The name of a dma-buf file from its path (`/dmabuf:NAME` since 5.x with the dmabuf
/// pseudo-filesystem, `anon_inode:dmabuf` on older kernels); `None` for other files.
pub fn dmabuf_path_name(path: &str) -> Option<&str> {
    path.strip_prefix("/dmabuf:")
        .or_else(|| (path == "anon_inode:dmabuf").then_some(""))
}

/// Parses one `/proc/PID/maps` line; `Some` only for dma-buf mappings.
pub fn parse_maps_line(line: &str) -> Option<MapEntry> {
    // start-end perms offset dev inode [path]; the path may contain spaces.
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let offset = it.next()?;
    let _dev = it.next()?;
    let inode = it.next()?;
    let path = it.next().unwrap_or("").trim_start();
    let name = dmabuf_path_name(path)?;
    let (s, e) = range.split_once('-')?;
    Some(MapEntry {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        perms: perms.to_string(),
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        name: name.to_string(),
    })
}

/// How one process holds one buffer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hold {
    /// Through fd N.
    Fd(i32),
    /// Through a mapping `start..end` with these permissions.
    Map {
        /// First address.
        start: u64,
        /// One past the last.
        end: u64,
        /// `rw-s` and the like.
        perms: String,
    },
}

/// One process's hold of one dma-buf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// The process.
    pub pid: u32,
    /// Its `comm`.
    pub comm: String,
    /// Fd or mapping.
    pub hold: Hold,
    /// The buffer's inode.
    pub inode: u64,
    /// Its size (from fdinfo; for a mapping without an fd, the mapping's length).
    pub size: u64,
    /// The exporter, when an fd showed it.
    pub exp_name: Option<String>,
    /// The buffer's name, when it has one.
    pub name: Option<String>,
    /// `ro`/`rw`/`wo` of the fd, or the mapping's permissions.
    pub access: Option<String>,
}

/// One buffer with everyone who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    /// Its inode (unique per buffer, never reused).
    pub inode: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The exporter (`?` when only mappings were seen).
    pub exp_name: String,
    /// Its name (empty when unnamed).
    pub name: String,
    /// The processes holding it, and how.
    pub holders: Vec<(u32, String, Hold)>,
}

impl Buffer {
    /// The distinct pids holding it.
    pub fn pids(&self) -> BTreeSet<u32> {
        self.holders.iter().map(|h| h.0).collect()
    }
}

/// Every dma-buf reference found, and the processes that could not be read.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// One per (process, fd) and (process, mapping).
    pub refs: Vec<Ref>,
    /// Processes whose fds or maps could not be read (`pid: why`), typically EACCES for another
    /// user's processes when not root.
    pub errors: Vec<String>,
    /// When it was taken (seconds since the epoch).
    pub taken_at: u64,
}

fn read_comm(proc_root: &Path, pid: u32) -> String {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// The pids under `proc_root`, ascending.
pub fn all_pids(proc_root: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(proc_root)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

impl Snapshot {
    /// Takes a snapshot of `pids` (every process when `None`) from `/proc`.
    pub fn take(pids: Option<&[u32]>) -> Snapshot {
        Snapshot::take_in(Path::new("/proc"), pids)
    }

    /// Like [`Snapshot::take`] with another proc root (tests).
    pub fn take_in(proc_root: &Path, pids: Option<&[u32]>) -> Snapshot {
        let pids: Vec<u32> = match pids {
            Some(p) => p.to_vec(),
            None => all_pids(proc_root),
        };
        let mut snap = Snapshot {
            taken_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ..Default::default()
        };
        for pid in pids {
            snap.add_process(proc_root, pid);
        }
        snap
    }

    fn add_process(&mut self, proc_root: &Path, pid: u32) {
        let dir = proc_root.join(pid.to_string());
        let comm = read_comm(proc_root, pid);
        match std::fs::read_dir(dir.join("fd")) {
            Ok(rd) => {
                let mut fds: Vec<i32> = rd
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect();
                fds.sort_unstable();
                for fd in fds {
                    let Ok(target) = std::fs::read_link(dir.join("fd").join(fd.to_string())) else {
                        continue;
                    };
                    let target = target.to_string_lossy();
                    let Some(link_name) = dmabuf_path_name(&target) else {
                        continue;
                    };
                    let Ok(text) = std::fs::read_to_string(dir.join("fdinfo").join(fd.to_string()))
                    else {
                        continue;
                    };
                    let info = parse_fdinfo(&text);
                    // fdinfo has `ino:` from 5.14 on; before, the inode of the file the fd
                    // link leads to is the same number.
                    let Some(inode) = info.ino.or_else(|| {
                        use std::os::unix::fs::MetadataExt;
                        std::fs::metadata(dir.join("fd").join(fd.to_string()))
                            .ok()
                            .map(|m| m.ino())
                    }) else {
                        continue;
                    };
                    let name = info
                        .name
                        .clone()
                        .or_else(|| (!link_name.is_empty()).then(|| link_name.to_string()));
                    self.refs.push(Ref {
                        pid,
                        comm: comm.clone(),
                        hold: Hold::Fd(fd),
                        inode,
                        size: info.size.unwrap_or(0),
                        exp_name: info.exp_name.clone(),
                        name,
                        access: info.access().map(str::to_string),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => self.errors.push(format!("{pid} ({comm}): fds: {e}")),
        }
        match std::fs::read_to_string(dir.join("maps")) {
            Ok(text) => {
                for m in text.lines().filter_map(parse_maps_line) {
                    self.refs.push(Ref {
                        pid,
                        comm: comm.clone(),
                        hold: Hold::Map {
                            start: m.start,
                            end: m.end,
                            perms: m.perms.clone(),
                        },
                        inode: m.inode,
                        size: m.end - m.start,
                        exp_name: None,
                        name: (!m.name.is_empty()).then_some(m.name),
                        access: Some(m.perms),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self.errors.push(format!("{pid} ({comm}): maps: {e}")),
        }
    }

    /// The buffers, one per inode, with every holder; the size and exporter come from an fd's
    /// fdinfo where any process holds one (a mapping's length may be a part of the buffer).
    /// Sorted by inode.
    pub fn buffers(&self) -> Vec<Buffer> {
        let mut by: BTreeMap<u64, Buffer> = BTreeMap::new();
        for r in &self.refs {
            let b = by.entry(r.inode).or_insert_with(|| Buffer {
                inode: r.inode,
                size: 0,
                exp_name: "?".into(),
                name: String::new(),
                holders: Vec::new(),
            });
            let from_fd = matches!(r.hold, Hold::Fd(_));
            if from_fd {
                b.size = r.size;
                if let Some(e) = &r.exp_name {
                    b.exp_name = e.clone();
                }
            } else if b.exp_name == "?" {
                b.size = b.size.max(r.size);
            }
            if b.name.is_empty() {
                if let Some(n) = &r.name {
                    b.name = n.clone();
                }
            }
            b.holders.push((r.pid, r.comm.clone(), r.hold.clone()));
        }
        let mut v: Vec<Buffer> = by.into_values().collect();
        for b in &mut v {
            b.holders.sort();
        }
        v
    }

    /// Per exporter: (buffers, bytes), each buffer counted once.
    pub fn totals_by_exporter(&self) -> BTreeMap<String, (usize, u64)> {
        let mut t: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for b in self.buffers() {
            let e = t.entry(b.exp_name.clone()).or_default();
            e.0 += 1;
            e.1 += b.size;
        }
        t
    }

    /// Per process: (comm, buffers, bytes), each buffer counted once per process however many
    /// fds and mappings it holds of it.
    pub fn totals_by_process(&self) -> BTreeMap<u32, (String, usize, u64)> {
        let mut t: BTreeMap<u32, (String, usize, u64)> = BTreeMap::new();
        for b in self.buffers() {
            for pid in b.pids() {
                let comm = b
                    .holders
                    .iter()
                    .find(|h| h.0 == pid)
                    .map(|h| h.1.clone())
                    .unwrap_or_default();
                let e = t.entry(pid).or_insert((comm, 0, 0));
                e.1 += 1;
                e.2 += b.size;
            }
        }
        t
    }

    /// The snapshot as JSON (what `unibuf inspect --json` prints and `--diff` reads).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let buffers: Vec<_> = self.buffers().iter().map(buffer_json).collect();
        let exporters: serde_json::Map<String, serde_json::Value> = self
            .totals_by_exporter()
            .into_iter()
            .map(|(k, (n, b))| (k, json!({"buffers": n, "bytes": b})))
            .collect();
        let processes: Vec<_> = self
            .totals_by_process()
            .into_iter()
            .map(|(pid, (comm, n, b))| json!({"pid": pid, "comm": comm, "buffers": n, "bytes": b}))
            .collect();
        json!({
            "version": 1,
            "taken_at": self.taken_at,
            "buffers": buffers,
            "totals": {"exporters": exporters, "processes": processes,
                "buffers": self.buffers().len(),
                "bytes": self.buffers().iter().map(|b| b.size).sum::<u64>()},
            "errors": self.errors,
        })
    }

    /// Reads back what [`Snapshot::to_json`] wrote.
    pub fn from_json(v: &serde_json::Value) -> Result<Snapshot, String> {
        if v.get("version").and_then(|x| x.as_u64()) != Some(1) {
            return Err("not a unibuf inspect snapshot (no \"version\": 1)".into());
        }
        let mut snap = Snapshot {
            taken_at: v.get("taken_at").and_then(|x| x.as_u64()).unwrap_or(0),
            ..Default::default()
        };
        let bufs = v
            .get("buffers")
            .and_then(|b| b.as_array())
            .ok_or("no \"buffers\" array")?;
        for b in bufs {
            let inode = b
                .get("inode")
                .and_then(|x| x.as_u64())
                .ok_or("a buffer without \"inode\"")?;
            let size = b.get("size").and_then(|x| x.as_u64()).unwrap_or(0);
            let exp = b.get("exp_name").and_then(|x| x.as_str()).unwrap_or("?");
            let name = b.get("name").and_then(|x| x.as_str()).unwrap_or("");
            for h in b
                .get("holders")
                .and_then(|x| x.as_array())
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let pid = h.get("pid").and_then(|x| x.as_u64()).unwrap_or(0) as u32;
                let comm = h.get("comm").and_then(|x| x.as_str()).unwrap_or("");
                let hold = if let Some(fd) = h.get("fd").and_then(|x| x.as_i64()) {
                    Hold::Fd(fd as i32)
                } else {
                    let hex = |k: &str| {
                        h.get(k)
                            .and_then(|x| x.as_str())
                            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                            .unwrap_or(0)
                    };
                    Hold::Map {
                        start: hex("start"),
                        end: hex("end"),
                        perms: h
                            .get("perms")
                            .and_then(|x| x.as_str())
                            .unwrap_or("")
                            .to_string(),
                    }
                };
                snap.refs.push(Ref {
                    pid,
                    comm: comm.to_string(),
                    hold,
                    inode,
                    size,
                    exp_name: (exp != "?").then(|| exp.to_string()),
                    name: (!name.is_empty()).then(|| name.to_string()),
                    access: None,
                });
            }
        }
        Ok(snap)
    }
}

/// One buffer as JSON.
pub fn buffer_json(b: &Buffer) -> serde_json::Value {
    use serde_json::json;
    let holders: Vec<_> = b
        .holders
        .iter()
        .map(|(pid, comm, hold)| match hold {
            Hold::Fd(fd) => json!({"pid": pid, "comm": comm, "fd": fd}),
            Hold::Map { start, end, perms } => json!({"pid": pid, "comm": comm,
                "start": format!("{start:#x}"), "end": format!("{end:#x}"), "perms": perms}),
        })
        .collect();
    json!({"inode": b.inode, "size": b.size, "exp_name": b.exp_name, "name": b.name,
        "pids": b.pids(), "holders": holders})
}

/// What changed between two snapshots, by inode.
#[derive(Debug, Clone, Default)]
pub struct Diff {
    /// Buffers held now that were not held before: allocated since and never freed.
    pub appeared: Vec<Buffer>,
    /// Buffers held before and freed since.
    pub freed: Vec<Buffer>,
}

/// Compares `before` with `after`.
pub fn diff(before: &Snapshot, after: &Snapshot) -> Diff {
    let old: BTreeSet<u64> = before.refs.iter().map(|r| r.inode).collect();
    let new: BTreeSet<u64> = after.refs.iter().map(|r| r.inode).collect();
    Diff {
        appeared: after
            .buffers()
            .into_iter()
            .filter(|b| !old.contains(&b.inode))
            .collect(),
        freed: before
            .buffers()
            .into_iter()
            .filter(|b| !new.contains(&b.inode))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fdinfo of a named system-heap buffer as a 6.x kernel prints it.
    const FDINFO: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nsize:\t8294400\n\
count:\t1\nexp_name:\tsystem\nname:\tcam-frame-0\n";

    #[test]
    fn fdinfo_fields() {
        let f = parse_fdinfo(FDINFO);
        assert_eq!(f.size, Some(8294400));
        assert_eq!(f.flags, Some(0o2000002));
        assert_eq!(f.access(), Some("rw"));
        assert_eq!(f.count, Some(1));
        assert_eq!(f.exp_name.as_deref(), Some("system"));
        assert_eq!(f.name.as_deref(), Some("cam-frame-0"));
        assert_eq!(f.ino, Some(1057));
        assert!(f.is_dmabuf());
        // A memfd's fdinfo has no exp_name.
        let m = parse_fdinfo("pos:\t0\nflags:\t02100002\nmnt_id:\t1\nino:\t5\n");
        assert!(!m.is_dmabuf());
        // Older kernels: `mode`, spaces, no name.
        let o =
            parse_fdinfo("size:   4096\nflags:  00\nmode:   0600\ncount:  2\nexp_name:  udmabuf\n");
        assert_eq!(
            (o.mode, o.access(), o.name),
            (Some(0o600), Some("ro"), None)
        );
    }

    #[test]
    fn maps_lines() {
        let m = parse_maps_line(
            "7f3a1c000000-7f3a1c7e9000 rw-s 00000000 00:0f 1057                       /dmabuf:cam-frame-0",
        )
        .unwrap();
        assert_eq!(
            (m.start, m.end, m.inode),
            (0x7f3a1c000000, 0x7f3a1c7e9000, 1057)
        );
        assert_eq!((m.perms.as_str(), m.name.as_str()), ("rw-s", "cam-frame-0"));
        let u = parse_maps_line("7f00-8f00 r--s 00001000 00:0f 9 /dmabuf:").unwrap();
        assert_eq!((u.name.as_str(), u.offset), ("", 0x1000));
        assert!(parse_maps_line("7f00-8f00 r-xp 00000000 fd:01 1234 /usr/lib/libc.so.6").is_none());
        assert!(parse_maps_line("7f00-8f00 rw-s 00000000 00:01 77 /memfd:x (deleted)").is_none());
        assert!(parse_maps_line("7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]").is_none());
    }

    struct Fake(std::path::PathBuf);
    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fake_proc() -> Fake {
        use std::os::unix::fs::symlink;
        // One tree per call: the tests run in parallel threads of one process.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("unibuf-proc-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let proc_ = |pid: u32, comm: &str, fds: &[(i32, &str, &str)], maps: &str| {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(d.join("fd")).unwrap();
            std::fs::create_dir_all(d.join("fdinfo")).unwrap();
            std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(d.join("maps"), maps).unwrap();
            for (fd, link, info) in fds {
                symlink(link, d.join("fd").join(fd.to_string())).unwrap();
                std::fs::write(d.join("fdinfo").join(fd.to_string()), info).unwrap();
            }
        };
        proc_(
            100,
            "producer",
            &[
                (0, "/dev/null", "pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t3\n"),
                (5, "/dmabuf:cam-frame-0", FDINFO),
                (
                    6,
                    "/dmabuf:",
                    "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1060\nsize:\t4096\ncount:\t1\nexp_name:\treserved\n",
                ),
            ],
            "7f00000000-7f007e9000 rw-s 00000000 00:0f 1057 /dmabuf:cam-frame-0\n",
        );
        proc_(
            200,
            "consumer",
            &[(
                9,
                "/dmabuf:cam-frame-0",
                &FDINFO.replace("02000002", "02000000"),
            )],
            "7e00000000-7e00001000 r--s 00000000 00:0f 1057 /dmabuf:cam-frame-0\n\
             7e10000000-7e10002000 rw-s 00000000 00:0f 1099 /dmabuf:mapped-only\n",
        );
        Fake(root)
    }

    #[test]
    fn snapshot_groups_by_inode_and_totals() {
        let f = fake_proc();
        let s = Snapshot::take_in(&f.0, None);
        let bufs = s.buffers();
        assert_eq!(bufs.len(), 3, "{bufs:#?}");
        let cam = &bufs[0];
        assert_eq!((cam.inode, cam.size), (1057, 8294400));
        assert_eq!(
            (cam.exp_name.as_str(), cam.name.as_str()),
            ("system", "cam-frame-0")
        );
        assert_eq!(cam.pids().into_iter().collect::<Vec<_>>(), [100, 200]);
        assert_eq!(cam.holders.len(), 4);
        assert_eq!(
            (bufs[1].inode, bufs[1].exp_name.as_str()),
            (1060, "reserved")
        );
        let only = &bufs[2];
        assert_eq!(
            (only.inode, only.size, only.exp_name.as_str()),
            (1099, 0x2000, "?")
        );
        let e = s.totals_by_exporter();
        assert_eq!(e["system"], (1, 8294400));
        assert_eq!(e["reserved"], (1, 4096));
        let p = s.totals_by_process();
        assert_eq!(p[&100], ("producer".to_string(), 2, 8294400 + 4096));
        assert_eq!(p[&200], ("consumer".to_string(), 2, 8294400 + 0x2000));
        // Only one pid asked.
        let one = Snapshot::take_in(&f.0, Some(&[200]));
        assert!(one.refs.iter().all(|r| r.pid == 200));
        // JSON round trip keeps the buffers.
        let back = Snapshot::from_json(&s.to_json()).unwrap();
        assert_eq!(back.buffers(), s.buffers().into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn diff_names_new_and_freed() {
        let f = fake_proc();
        let before = Snapshot::take_in(&f.0, None);
        std::fs::remove_file(f.0.join("100/fd/6")).unwrap();
        let leak = f.0.join("200/fd/11");
        std::os::unix::fs::symlink("/dmabuf:leak", &leak).unwrap();
        std::fs::write(
            f.0.join("200/fdinfo/11"),
            "flags:\t02\nino:\t2000\nsize:\t65536\ncount:\t1\nexp_name:\tsystem\nname:\tleak\n",
        )
        .unwrap();
        let after = Snapshot::take_in(&f.0, None);
        let d = diff(&before, &after);
        assert_eq!(d.appeared.len(), 1);
        assert_eq!(
            (d.appeared[0].inode, d.appeared[0].name.as_str()),
            (2000, "leak")
        );
        assert_eq!(d.freed.iter().map(|b| b.inode).collect::<Vec<_>>(), [1060]);
        assert!(diff(&after, &after).appeared.is_empty());
    }
}
