//! Discovery of memory backends: what exists on this machine, what this process can open, and why
//! not.
//!
//! Devices are found through [`crate::devices`] (udev, or the sysfs scan) and devfs
//! (`/dev/dma_heap/*`, `/dev/udmabuf`, `/dev/dri/card*`), with sysfs hints (`/sys/kernel/mm/cma/<name>` marks a heap as a CMA area). Nothing here depends on
//! fixed names beyond the directories: a CMA heap is recognised under any of the names kernels
//! give it (`linux,cma`, `reserved`, `default-pool`, `default_cma_region`, or any name that
//! `/sys/kernel/mm/cma` lists).

use crate::attr::BackendKind;
use crate::sys;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::fmt;
use std::path::{Path, PathBuf};

/// Names kernels give their contiguous (CMA) heap: device-tree `linux,cma`, the default CMA area
/// `reserved`, some vendor trees' `default-pool`, and `default_cma_region` (6.17 and later).
pub const CMA_HEAP_NAMES: [&str; 4] = [
    "linux,cma",
    "reserved",
    "default-pool",
    "default_cma_region",
];

/// Where the kernel lists its CMA areas (`CONFIG_CMA_SYSFS`); a heap named after one is a CMA heap.
pub const CMA_SYSFS_DIR: &str = "/sys/kernel/mm/cma";

/// Where sysfs lists the heaps (world-readable, also when `/dev/dma_heap` is not).
pub const HEAP_CLASS_DIR: &str = "/sys/class/dma_heap";
/// Where sysfs lists DRM devices.
pub const DRM_CLASS_DIR: &str = "/sys/class/drm";

/// What the `udev-rules/` rules say to a user who hit `EACCES`.
pub const EACCES_HINT: &str = "install udev-rules/60-unibuf.rules and add the user to group \
     'unibuf' (see docs/permissions.md); heaps and /dev/udmabuf are root-only by default";

/// Whether a device can be used by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// It opened (and, for DRM, a probe allocation and export worked).
    Usable,
    /// It does not exist; the string says what was looked for.
    Absent(String),
    /// Opening it was refused (`EACCES`/`EPERM`); the string names the fix.
    Denied(String),
    /// It exists but failed otherwise; the string names the operation and the errno.
    Failed(String),
}

impl Access {
    /// Whether the device can be used.
    pub fn is_usable(&self) -> bool {
        matches!(self, Access::Usable)
    }

    fn from_open_error(path: &Path, e: Errno) -> Access {
        let errno = crate::Errno(e);
        match e {
            Errno::NOENT | Errno::NXIO | Errno::NODEV => {
                Access::Absent(format!("open {}: {errno}", path.display()))
            }
            Errno::ACCESS | Errno::PERM => {
                Access::Denied(format!("open {}: {errno}: {EACCES_HINT}", path.display()))
            }
            _ => Access::Failed(format!("open {}: {errno}", path.display())),
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Usable => f.write_str("usable"),
            Access::Absent(s) => write!(f, "absent ({s})"),
            Access::Denied(s) => write!(f, "denied ({s})"),
            Access::Failed(s) => write!(f, "failed ({s})"),
        }
    }
}

/// What a DMA-BUF heap gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeapClass {
    /// The system heap: scattered pages.
    System,
    /// A contiguous (CMA) heap.
    Contiguous,
    /// A heap unibuf does not know (a carveout, a secure heap...): never chosen automatically.
    Other,
}

impl fmt::Display for HeapClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeapClass::System => "system",
            HeapClass::Contiguous => "contiguous (CMA)",
            HeapClass::Other => "other",
        })
    }
}

/// Classifies a heap by its name, with the sysfs CMA list as a hint. Returns the class and why.
pub fn classify_heap(name: &str, cma_sysfs_dir: &Path) -> (HeapClass, &'static str) {
    if name == "system" {
        return (HeapClass::System, "named 'system'");
    }
    if CMA_HEAP_NAMES.contains(&name) {
        return (HeapClass::Contiguous, "a name kernels give the CMA heap");
    }
    // A heap named after a CMA area is that area's heap. Heap names never contain '/', but check:
    // a name from readdir must not walk out of the directory.
    if !name.contains('/') && name != "." && name != ".." && cma_sysfs_dir.join(name).is_dir() {
        return (
            HeapClass::Contiguous,
            "a CMA area of that name in /sys/kernel/mm/cma",
        );
    }
    if name.starts_with("system") {
        return (HeapClass::System, "named 'system*'");
    }
    if name.contains("cma") {
        return (HeapClass::Contiguous, "its name contains 'cma'");
    }
    (HeapClass::Other, "unknown heap name")
}

/// One DMA-BUF heap.
#[derive(Debug)]
pub struct HeapInfo {
    /// The heap's name (its node in `/dev/dma_heap`).
    pub name: String,
    /// The device node.
    pub path: PathBuf,
    /// What it gives.
    pub class: HeapClass,
    /// Why it was classified so.
    pub class_reason: &'static str,
    /// Whether it opened.
    pub access: Access,
    pub(crate) fd: Option<OwnedFd>,
}

/// One DRM device node that may make dumb buffers.
#[derive(Debug)]
pub struct DrmInfo {
    /// The device node (`/dev/dri/cardN`).
    pub path: PathBuf,
    /// The driver's name (`vgem`, `vkms`, `i915`...), when the node opened.
    pub driver: Option<String>,
    /// Whether a probe dumb buffer was created and PRIME-exported.
    pub access: Access,
    pub(crate) card: Option<DrmCard>,
}

/// `/dev/udmabuf`.
#[derive(Debug)]
pub struct UdmabufInfo {
    /// The device node.
    pub path: PathBuf,
    /// Whether it opened.
    pub access: Access,
    pub(crate) fd: Option<OwnedFd>,
}

/// An opened DRM node, usable with the `drm` crate's traits.
#[derive(Debug)]
pub(crate) struct DrmCard(pub(crate) OwnedFd);

impl AsFd for DrmCard {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
impl drm::Device for DrmCard {}
impl drm::control::Device for DrmCard {}

/// What discovery found: every backend, whether it can be used, and why not. Read it through
/// [`Backends`], which dereferences to it (read-only, so choices memoized by
/// [`Backends::choose_shared`] can never go stale).
#[derive(Debug)]
pub struct Discovery {
    /// DMA-BUF heaps, sorted by name.
    pub heaps: Vec<HeapInfo>,
    /// `/dev/udmabuf`.
    pub udmabuf: UdmabufInfo,
    /// DRM card nodes, sorted by path.
    pub drm: Vec<DrmInfo>,
    /// Whether `memfd_create` works (it needs no device, but a seccomp policy may refuse it).
    pub memfd: Access,
    /// Whether `/dev/dma_heap` could be listed (absent on kernels without heaps).
    pub heap_dir: Access,
    /// Whether `/dev/dri` could be listed.
    pub dri_dir: Access,
}

/// What this machine offers, with the devices this process could open kept open for allocation.
///
/// Build it once ([`Backends::discover`]) and allocate from it many times: a heap's fd is opened
/// once, not per allocation. [`crate::backend::global`] holds one for the whole process. It
/// dereferences to its [`Discovery`] (`backends.heaps`, `backends.udmabuf`, ...), read-only.
#[derive(Debug)]
pub struct Backends {
    pub(super) disc: Discovery,
    /// Choices memoized by [`Backends::choose_shared`].
    pub(crate) choices: super::choose::ChoiceCache,
}

impl std::ops::Deref for Backends {
    type Target = Discovery;

    fn deref(&self) -> &Discovery {
        &self.disc
    }
}

fn open_dev(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
}

impl Backends {
    /// Wraps what discovery found (tests and callers that discover by other means).
    pub fn from_discovery(disc: Discovery) -> Backends {
        Backends {
            disc,
            choices: Default::default(),
        }
    }

    /// Looks at `/dev/dma_heap`, `/dev/udmabuf`, `/dev/dri` and memfd, opening what it can.
    pub fn discover() -> Backends {
        Backends::discover_with(
            Path::new(sys::dma_heap::DMA_HEAP_DEV_DIR),
            Path::new(sys::udmabuf::UDMABUF_DEV),
            Path::new(sys::drm::DRM_DEV_DIR),
            Path::new(CMA_SYSFS_DIR),
            true,
        )
    }

    /// Like [`Backends::discover`] with other directories (tests, chroots).
    pub fn discover_in(
        heap_dir: &Path,
        udmabuf: &Path,
        dri_dir: &Path,
        cma_dir: &Path,
    ) -> Backends {
        Backends::discover_with(heap_dir, udmabuf, dri_dir, cma_dir, false)
    }

    fn discover_with(
        heap_dir: &Path,
        udmabuf: &Path,
        dri_dir: &Path,
        cma_dir: &Path,
        enumerate: bool,
    ) -> Backends {
        // Device discovery (udev, or sysfs, both world-readable) finds a heap or a card, and so
        // its EACCES, also when /dev/dma_heap or /dev/dri itself cannot be listed.
        let (heaps, cards) = if enumerate {
            let all = crate::devices::enumerate();
            let of = |k: crate::devices::DeviceKind| -> Vec<String> {
                all.iter()
                    .filter(|d| d.kind == k)
                    .map(|d| d.sysname.clone())
                    .collect()
            };
            (
                Some(of(crate::devices::DeviceKind::DmaHeap)),
                Some(of(crate::devices::DeviceKind::DrmCard)),
            )
        } else {
            (None, None)
        };
        Backends::from_discovery(Discovery {
            heaps: discover_heaps(heap_dir, cma_dir, heaps.as_deref()),
            heap_dir: list_access(heap_dir),
            dri_dir: list_access(dri_dir),
            udmabuf: discover_udmabuf(udmabuf),
            drm: discover_drm(dri_dir, cards.as_deref()),
            memfd: probe_memfd(),
        })
    }

    /// An empty set with only memfd (CPU-only allocations), for tests and for callers that do not
    /// want device memory.
    pub fn memfd_only() -> Backends {
        Backends::from_discovery(Discovery {
            heaps: Vec::new(),
            udmabuf: UdmabufInfo {
                path: PathBuf::from(sys::udmabuf::UDMABUF_DEV),
                access: Access::Absent("not looked for (memfd-only backends)".into()),
                fd: None,
            },
            drm: Vec::new(),
            memfd: probe_memfd(),
            heap_dir: Access::Absent("not looked for (memfd-only backends)".into()),
            dri_dir: Access::Absent("not looked for (memfd-only backends)".into()),
        })
    }

    /// The first usable heap of `class`.
    pub fn heap(&self, class: HeapClass) -> Option<&HeapInfo> {
        self.heaps
            .iter()
            .find(|h| h.class == class && h.access.is_usable())
    }

    /// The DRM node dumb buffers come from: vgem when usable (a render-only driver that no
    /// display path needs), else the first card that made and exported a probe dumb buffer.
    pub fn drm_dumb(&self) -> Option<&DrmInfo> {
        self.drm
            .iter()
            .find(|d| d.access.is_usable() && d.driver.as_deref() == Some("vgem"))
            .or_else(|| self.drm.iter().find(|d| d.access.is_usable()))
    }

    /// Whether `kind` can be allocated from here.
    pub fn has(&self, kind: BackendKind) -> bool {
        match kind {
            BackendKind::SystemHeap => self.heap(HeapClass::System).is_some(),
            BackendKind::CmaHeap => self.heap(HeapClass::Contiguous).is_some(),
            BackendKind::Udmabuf => self.udmabuf.access.is_usable() && self.memfd.is_usable(),
            BackendKind::DrmDumb => self.drm_dumb().is_some(),
            BackendKind::Memfd => self.memfd.is_usable(),
            // Chosen per GPU for lists that set vidmem_gpu (`choose`), never as a hint of its own.
            BackendKind::CudaVidmem => false,
        }
    }

    /// Why `kind` cannot be allocated from here (or `"usable"`).
    pub fn why_not(&self, kind: BackendKind) -> String {
        let heaps = |class: HeapClass| -> String {
            let of: Vec<String> = self
                .heaps
                .iter()
                .filter(|h| h.class == class)
                .map(|h| format!("{}: {}", h.path.display(), h.access))
                .collect();
            if of.is_empty() {
                let names: Vec<&str> = self.heaps.iter().map(|h| h.name.as_str()).collect();
                format!(
                    "no {class} heap in {} ({}; heaps found: {})",
                    sys::dma_heap::DMA_HEAP_DEV_DIR,
                    self.heap_dir,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            } else {
                of.join("; ")
            }
        };
        if self.has(kind) {
            return "usable".into();
        }
        match kind {
            BackendKind::SystemHeap => heaps(HeapClass::System),
            BackendKind::CmaHeap => heaps(HeapClass::Contiguous),
            BackendKind::Udmabuf => {
                if self.udmabuf.access.is_usable() {
                    format!("memfd: {}", self.memfd)
                } else {
                    format!("{}: {}", self.udmabuf.path.display(), self.udmabuf.access)
                }
            }
            BackendKind::DrmDumb => {
                if self.drm.is_empty() {
                    format!(
                        "no DRM card node in {} ({})",
                        sys::drm::DRM_DEV_DIR,
                        self.dri_dir
                    )
                } else {
                    self.drm
                        .iter()
                        .map(|d| format!("{}: {}", d.path.display(), d.access))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            }
            BackendKind::Memfd => format!("memfd_create: {}", self.memfd),
            BackendKind::CudaVidmem => super::choose::vidmem_note().into(),
        }
    }
}

impl fmt::Display for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.heaps.is_empty() {
            match &self.heap_dir {
                Access::Usable => writeln!(
                    f,
                    "dma-heap: none in {} (no heap registered)",
                    sys::dma_heap::DMA_HEAP_DEV_DIR
                )?,
                Access::Absent(why) => writeln!(
                    f,
                    "dma-heap: none ({why}: kernel without CONFIG_DMABUF_HEAPS, or no heap \
                     registered)"
                )?,
                other => writeln!(f, "dma-heap: none found: {other}")?,
            }
        }
        for h in &self.heaps {
            writeln!(
                f,
                "dma-heap {} ({}: {}): {}",
                h.path.display(),
                h.class,
                h.class_reason,
                h.access
            )?;
        }
        writeln!(
            f,
            "udmabuf {}: {}",
            self.udmabuf.path.display(),
            self.udmabuf.access
        )?;
        if self.drm.is_empty() {
            writeln!(
                f,
                "drm: no card node in {} ({})",
                sys::drm::DRM_DEV_DIR,
                self.dri_dir
            )?;
        }
        for d in &self.drm {
            writeln!(
                f,
                "drm {} (driver {}): dumb+PRIME {}",
                d.path.display(),
                d.driver.as_deref().unwrap_or("?"),
                d.access
            )?;
        }
        write!(f, "memfd: {}", self.memfd)
    }
}

/// Whether a device directory can be listed; `EACCES` names the udev rules.
fn list_access(dir: &Path) -> Access {
    match std::fs::read_dir(dir) {
        Ok(_) => Access::Usable,
        Err(e) => {
            let errno = Errno::from_io_error(&e).unwrap_or(Errno::IO);
            match errno {
                Errno::NOENT | Errno::NOTDIR => {
                    Access::Absent(format!("{}: {}", dir.display(), crate::Errno(errno)))
                }
                Errno::ACCESS | Errno::PERM => Access::Denied(format!(
                    "list {}: {}: {EACCES_HINT}",
                    dir.display(),
                    crate::Errno(errno)
                )),
                _ => Access::Failed(format!("list {}: {}", dir.display(), crate::Errno(errno))),
            }
        }
    }
}

/// Names in `dir`, or none when it cannot be listed.
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Heap names: the nodes in `dir`, plus the heaps sysfs lists in `class_dir`
/// (`/sys/class/dma_heap`, world-readable), so a heap is found, and its `EACCES` reported, also
/// when `/dev/dma_heap` itself cannot be listed.
fn discover_heaps(dir: &Path, cma_dir: &Path, known: Option<&[String]>) -> Vec<HeapInfo> {
    let mut names = names_in(dir);
    if let Some(k) = known {
        names.extend(k.iter().cloned());
    }
    names.retain(|n| !n.contains('/') && n != "." && n != "..");
    names.sort_by_key(|n| crate::devices::natural_key(n));
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let (class, class_reason) = classify_heap(&name, cma_dir);
            let (access, fd) = match open_dev(&path) {
                Ok(fd) => (Access::Usable, Some(fd)),
                Err(e) => (Access::from_open_error(&path, e), None),
            };
            HeapInfo {
                name,
                path,
                class,
                class_reason,
                access,
                fd,
            }
        })
        .collect()
}

fn discover_udmabuf(path: &Path) -> UdmabufInfo {
    let (access, fd) = match open_dev(path) {
        Ok(fd) => (Access::Usable, Some(fd)),
        Err(e) => (Access::from_open_error(path, e), None),
    };
    UdmabufInfo {
        path: path.to_path_buf(),
        access,
        fd,
    }
}

/// `cardN` (not `cardN-Connector`, not `renderD*`).
fn is_card_name(n: &str) -> bool {
    n.strip_prefix("card")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Card nodes in `dir`, plus those device discovery knows (udev or `/sys/class/drm`), in the
/// one order of [`crate::devices::sort`].
fn discover_drm(dir: &Path, known: Option<&[String]>) -> Vec<DrmInfo> {
    let mut names = names_in(dir);
    if let Some(k) = known {
        names.extend(k.iter().cloned());
    }
    names.retain(|n| is_card_name(n));
    names.sort_by_key(|n| crate::devices::natural_key(n));
    names.dedup();
    names.into_iter().map(|n| probe_drm(&dir.join(n))).collect()
}

fn probe_drm(path: &Path) -> DrmInfo {
    use drm::Device as _;
    let fd = match open_dev(path) {
        Ok(fd) => fd,
        Err(e) => {
            return DrmInfo {
                path: path.to_path_buf(),
                driver: None,
                access: Access::from_open_error(path, e),
                card: None,
            }
        }
    };
    let card = DrmCard(fd);
    // The first opener of a primary node becomes DRM master; unibuf only makes buffers, so it
    // gives master up at once rather than keep a compositor or a KMS test from taking it. (Not
    // being master is the normal case, and the error then is expected.)
    let _ = card.release_master_lock();
    let driver = card
        .get_driver()
        .ok()
        .map(|d| d.name().to_string_lossy().into_owned());
    // DRM_CAP_DUMB_BUFFER is only answered by KMS drivers (vgem makes dumb buffers but answers
    // EOPNOTSUPP), so probe by doing: make a one-page dumb buffer and export it.
    let access = match super::alloc::drm_dumb_probe(&card) {
        Ok(()) => Access::Usable,
        Err(e) => Access::Failed(e.to_string()),
    };
    DrmInfo {
        path: path.to_path_buf(),
        driver,
        card: access.is_usable().then_some(card),
        access,
    }
}

fn probe_memfd() -> Access {
    match rustix::fs::memfd_create(
        "unibuf-probe",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    ) {
        Ok(_) => Access::Usable,
        Err(e) => Access::Failed(format!("memfd_create: {}", crate::Errno(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_names() {
        assert!(is_card_name("card0") && is_card_name("card12"));
        assert!(!is_card_name("card0-Writeback-1") && !is_card_name("renderD128"));
        assert!(!is_card_name("card"));
    }

    #[test]
    fn classifies_cma_under_every_name() {
        let none = Path::new("/nonexistent-cma-dir");
        for n in CMA_HEAP_NAMES {
            assert_eq!(classify_heap(n, none).0, HeapClass::Contiguous, "{n}");
        }
        assert_eq!(classify_heap("system", none).0, HeapClass::System);
        assert_eq!(classify_heap("system-uncached", none).0, HeapClass::System);
        assert_eq!(classify_heap("vendor-cma", none).0, HeapClass::Contiguous);
        assert_eq!(classify_heap("secure", none).0, HeapClass::Other);
    }

    #[test]
    fn sysfs_cma_area_marks_heap_contiguous() {
        let dir = std::env::temp_dir().join(format!("unibuf-cma-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("camera_pool")).unwrap();
        assert_eq!(classify_heap("camera_pool", &dir).0, HeapClass::Contiguous);
        assert_eq!(classify_heap("..", &dir).0, HeapClass::Other);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
