//! A dry run (Android's `IAllocator::isSupported`): for a reconciled list, which backend would
//! serve it here and why, and whether this machine can allocate it now — without allocating.
//!
//! The checks: a backend is chosen ([`Backends::choose`]); its device node exists and this
//! process can open it read-write (opened and closed again, nothing allocated); for a CMA heap,
//! `/proc/meminfo` `CmaFree` holds the buffer (necessary, not sufficient: CMA can be
//! fragmented); for a memfd, `memfd_create` works. `unibuf plan` prints it.

use super::discover::Backends;
use super::Choice;
use crate::attr::BackendKind;
use crate::reconcile::Reconciled;
use std::fmt;
use std::path::Path;

/// Where the kernel reports CMA totals.
pub const MEMINFO: &str = "/proc/meminfo";

/// `CmaTotal` and `CmaFree` of a `/proc/meminfo` text, in bytes (the file says kB); `None` when
/// the kernel reports no CMA (built without `CONFIG_CMA`).
pub fn cma_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            kb.checked_mul(1024)
        })
    };
    Some((field("CmaTotal")?, field("CmaFree")?))
}

/// [`cma_meminfo`] of this machine's [`MEMINFO`].
pub fn read_cma_meminfo() -> Option<(u64, u64)> {
    cma_meminfo(&std::fs::read_to_string(MEMINFO).ok()?)
}

/// One check of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`backend`, `device`, `open read-write`, `cma free`, `memfd`).
    pub what: &'static str,
    /// Passed (`Some(true)`), failed (`Some(false)`), or could not be told (`None`).
    pub ok: Option<bool>,
    /// What was found.
    pub detail: String,
}

/// What allocating a reconciled list would do here (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The backend that would be used and why, or why none can be.
    pub choice: Result<Choice, String>,
    /// Bytes that would be allocated (the list's size, page-rounded).
    pub size: u64,
    /// Base-address alignment the list requires.
    pub alignment: u64,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Plan {
    /// Whether every check that could be told passed: the allocation should succeed now.
    pub fn can_allocate(&self) -> bool {
        self.choice.is_ok() && self.checks.iter().all(|c| c.ok != Some(false))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.choice {
            Ok(c) => writeln!(f, "backend: {c}")?,
            Err(e) => writeln!(f, "backend: none: {e}")?,
        }
        writeln!(
            f,
            "allocation: {} bytes, alignment {}",
            self.size, self.alignment
        )?;
        for c in &self.checks {
            let mark = match c.ok {
                Some(true) => "ok",
                Some(false) => "FAIL",
                None => "?",
            };
            writeln!(f, "  [{mark}] {}: {}", c.what, c.detail)?;
        }
        writeln!(
            f,
            "can allocate now: {}",
            if self.can_allocate() { "yes" } else { "no" }
        )
    }
}

impl Backends {
    /// The dry run of allocating `r` here (this machine's `/proc/meminfo`).
    pub fn plan(&self, r: &Reconciled) -> Plan {
        self.plan_with(r, read_cma_meminfo())
    }

    /// [`Backends::plan`] with the CMA totals given (`(CmaTotal, CmaFree)` in bytes; tests).
    pub fn plan_with(&self, r: &Reconciled, cma: Option<(u64, u64)>) -> Plan {
        let size = super::page_round(r.size()).unwrap_or(r.size());
        let mut checks = Vec::new();
        let choice = self.choose(r.memory()).map_err(|e| e.to_string());
        match &choice {
            Err(e) => checks.push(Check {
                what: "backend",
                ok: Some(false),
                detail: e.clone(),
            }),
            Ok(c) => {
                checks.push(Check {
                    what: "backend",
                    ok: Some(true),
                    detail: c.to_string(),
                });
                if let Some(dev) = &c.device {
                    checks.extend(device_checks(dev));
                }
                match c.backend {
                    BackendKind::CmaHeap => checks.push(cma_check(size, cma)),
                    BackendKind::Memfd | BackendKind::Udmabuf => checks.push(Check {
                        what: "memfd",
                        ok: Some(self.memfd.is_usable()),
                        detail: format!("memfd_create: {}", self.memfd),
                    }),
                    _ => {}
                }
            }
        }
        Plan {
            choice,
            size,
            alignment: r.alignment(),
            checks,
        }
    }
}

/// The device node exists and opens read-write (closed at once; nothing is allocated).
fn device_checks(dev: &Path) -> Vec<Check> {
    let shown = dev.display().to_string();
    if !dev.exists() {
        return vec![Check {
            what: "device",
            ok: Some(false),
            detail: format!("{shown} does not exist"),
        }];
    }
    let open = rustix::fs::open(
        dev,
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    );
    vec![
        Check {
            what: "device",
            ok: Some(true),
            detail: format!("{shown} exists"),
        },
        match open {
            Ok(_fd) => Check {
                what: "open read-write",
                ok: Some(true),
                detail: format!("{shown} opens O_RDWR"),
            },
            Err(e) => Check {
                what: "open read-write",
                ok: Some(false),
                detail: format!(
                    "open {shown} O_RDWR: {}{}",
                    crate::Errno(e),
                    if matches!(e, rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) {
                        format!(": {}", super::discover::EACCES_HINT)
                    } else {
                        String::new()
                    }
                ),
            },
        },
    ]
}

/// CMA free space against the buffer (CMA may be fragmented: enough free is necessary only).
fn cma_check(size: u64, cma: Option<(u64, u64)>) -> Check {
    match cma {
        None => Check {
            what: "cma free",
            ok: None,
            detail: format!("{MEMINFO} reports no CmaTotal/CmaFree"),
        },
        Some((total, free)) => Check {
            what: "cma free",
            ok: Some(free >= size),
            detail: format!(
                "{size} bytes asked; CmaTotal {} kB, CmaFree {} kB{}",
                total / 1024,
                free / 1024,
                if free >= size {
                    " (enough unless fragmented)"
                } else {
                    ": not enough free CMA"
                }
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{AccessorKind, AttrList};
    use crate::backend::discover::{Access, Discovery, HeapClass, HeapInfo, UdmabufInfo};
    use crate::reconcile::reconcile;
    use std::path::PathBuf;

    #[test]
    fn meminfo_cma_fields() {
        let t = "MemTotal: 100 kB\nCmaTotal:        65536 kB\nCmaFree:         1024 kB\n";
        assert_eq!(cma_meminfo(t), Some((65536 * 1024, 1024 * 1024)));
        assert_eq!(cma_meminfo("MemTotal: 100 kB\n"), None);
    }

    #[test]
    fn memfd_plan_can_allocate_without_allocating() {
        let mut l = AttrList::raw(10_000).unwrap();
        l.set_accessor_kind(AccessorKind::Cpu).unwrap();
        let r = reconcile([&l]).unwrap();
        let p = Backends::memfd_only().plan_with(&r, None);
        assert_eq!(p.choice.as_ref().unwrap().backend, BackendKind::Memfd);
        assert_eq!(p.size, 12288);
        assert!(p.can_allocate(), "{p}");
        assert!(p.to_string().contains("can allocate now: yes"), "{p}");
        // A device list: no dma-buf provider here.
        let r = reconcile([&AttrList::raw(4096).unwrap()]).unwrap();
        let p = Backends::memfd_only().plan_with(&r, None);
        assert!(!p.can_allocate());
        assert!(p.to_string().contains("backend: none"), "{p}");
    }

    #[test]
    fn cma_plan_checks_the_node_and_cma_free() {
        let b = Backends::from_discovery(Discovery {
            heaps: vec![HeapInfo {
                name: "reserved".into(),
                path: PathBuf::from("/nonexistent/dma_heap/reserved"),
                class: HeapClass::Contiguous,
                class_reason: "test",
                access: Access::Usable,
                fd: None,
            }],
            udmabuf: UdmabufInfo {
                path: "/dev/udmabuf".into(),
                access: Access::Absent("test".into()),
                fd: None,
            },
            drm: vec![],
            memfd: Access::Usable,
            heap_dir: Access::Usable,
            dri_dir: Access::Usable,
        });
        let mut l = AttrList::raw(8 << 20).unwrap();
        l.set_contiguous(true).unwrap();
        let r = reconcile([&l]).unwrap();
        let p = b.plan_with(&r, Some((64 << 20, 4 << 20)));
        assert_eq!(p.choice.as_ref().unwrap().backend, BackendKind::CmaHeap);
        let text = p.to_string();
        assert!(text.contains("[FAIL] device: /nonexistent"), "{text}");
        assert!(
            text.contains(
                "[FAIL] cma free: 8388608 bytes asked; CmaTotal 65536 kB, CmaFree 4096 kB"
            ),
            "{text}"
        );
        assert!(!p.can_allocate());
        let p = b.plan_with(&r, Some((64 << 20, 32 << 20)));
        assert!(p.to_string().contains("[ok] cma free"), "{p}");
    }
}
