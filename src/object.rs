//! Buffer objects: a dma-buf (or memfd) fd, its reconciled list, and this handle's permission.
//!
//! An [`Object`] owns its fds: dropping the last handle (and every mapping, device import and
//! process holding the dma-buf) frees the memory. Handles are made by
//!
//! - [`Object::allocate`] / [`Object::allocate_n`] (from the process-wide [`backend::global`]
//!   backends) or [`Object::allocate_from`] (from given [`Backends`]): the handle holds
//!   read-write whatever the list's permission (NvSciBufObjAlloc: the allocating process fills
//!   the buffer), so an all-read-only reconciliation still gives a writable allocator;
//! - [`Object::dup`] (same permission) and [`Object::dup_with`] (a reduced permission:
//!   read-write → read-only; the reverse is refused);
//! - [`Object::import`] / [`Object::import_parts`]: a foreign dma-buf fd (a GPU's export, V4L2
//!   `VIDIOC_EXPBUF`, another process over IPC), checked to be a dma-buf (or, for CPU-only lists,
//!   a memfd) at least as large as the list requires.
//!
//! # Read-only handles
//!
//! A read-only handle gives no writable view ([`Object::map_write`] is refused) and its CPU
//! mapping is `PROT_READ`, so a stray write through a raw pointer faults. For memfd-backed objects
//! (udmabuf, memfd) a read-only handle holds an `O_RDONLY` reopen of the memfd (through
//! `/proc/self/fd/N`) and maps that, so even a raw `mmap(PROT_WRITE, MAP_SHARED)` on it fails
//! with `EACCES` in this process — and in a process the handle is sent to. A dma-buf fd cannot be
//! reopened read-only: a read-only handle of a heap or DRM buffer shares the read-write file, and
//! the kernel does not stop a device (or raw code holding that fd) from writing it. VFIO enforces
//! read-only for devices through read-only IOMMU mappings (`crate::interop`).

use crate::attr::{BackendKind, Permission};
use crate::backend::{self, AllocRequest, Allocation, Backends, Choice};
use crate::error::{Error, Result};
use crate::map::{ReadMap, WriteMap};
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use std::sync::Arc;

use crate::reconcile::Reconciled;

fn list_size(l: &Reconciled) -> u64 {
    l.size()
}
fn list_cpu_access(l: &Reconciled) -> bool {
    l.need_cpu_access()
}
fn list_device_access(l: &Reconciled) -> bool {
    l.memory().device_access
}

/// What kind of file backs an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FdKind {
    /// A dma-buf.
    DmaBuf,
    /// A plain memfd (CPU-only objects).
    Memfd,
}

/// Facts about the buffer, the same in every handle to it (held inline: no extra heap
/// allocation on the allocation path).
#[derive(Debug, Clone)]
struct Info {
    kind: FdKind,
    backend: Option<BackendKind>,
    choice: Option<Arc<Choice>>,
    size: u64,
    name: Arc<str>,
    exporter: Option<String>,
    cpu_mappable: std::result::Result<(), String>,
}

/// An allocated or imported buffer: its fd, its reconciled list and this handle's permission.
pub struct Object {
    fd: OwnedFd,
    memfd: Option<OwnedFd>,
    list: Arc<Reconciled>,
    permission: Permission,
    /// This handle may be CPU-mapped: a list of its holder asked for CPU access (NvSciBuf
    /// `NeedCpuAccess` is per peer; another peer's request gives this one nothing).
    cpu_access: bool,
    info: Info,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The reconciled list is left out: it is long, and `list()` gives it.
        f.debug_struct("Object")
            .field("fd", &self.fd)
            .field("memfd", &self.memfd)
            .field("permission", &self.permission)
            .field("cpu_access", &self.cpu_access)
            .field("kind", &self.info.kind)
            .field("backend", &self.info.backend)
            .field("size", &self.info.size)
            .field("name", &self.info.name)
            .field("exporter", &self.info.exporter)
            .finish_non_exhaustive()
    }
}

/// The fds of an object received from elsewhere (for [`Object::import_parts`]).
#[derive(Debug)]
pub struct ImportParts {
    /// The dma-buf (or, for a CPU-only object, the memfd).
    pub fd: OwnedFd,
    /// The memfd behind a udmabuf, when the sender passed it (it makes a read-only handle
    /// kernel-enforced for CPU maps, and it is what VFIO pins).
    pub memfd: Option<OwnedFd>,
    /// The backend the sender allocated from, if it said.
    pub backend: Option<BackendKind>,
}

fn dup_fd(fd: BorrowedFd<'_>, what: &str) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| Error::sys("F_DUPFD_CLOEXEC", what, e))
}

/// Opens `/proc/self/fd/<fd>` `O_RDONLY`: a new, read-only file of the same memfd. A writable
/// `mmap` of the result fails with `EACCES`.
pub fn reopen_readonly(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // Only memfds (F_GET_SEALS answers only there): opening a FIFO's /proc link would block, and
    // a dma-buf cannot be reopened at all.
    if rustix::fs::fcntl_get_seals(fd).is_err() {
        return Err(Error::InvalidArgument(format!(
            "{path}: only memfds can be reopened read-only"
        )));
    }
    rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys("open(O_RDONLY) reopen", path, e))
}

/// Whether `fd` was opened `O_RDONLY` (its access mode allows no writing).
pub fn opened_read_only(fd: BorrowedFd<'_>) -> Result<bool> {
    let fl = rustix::fs::fcntl_getfl(fd)
        .map_err(|e| Error::sys("F_GETFL", format!("fd {}", fd.as_raw_fd()), e))?;
    Ok(fl & OFlags::RWMODE == OFlags::RDONLY)
}

/// The access mode the fd was opened with allows writing.
fn fd_writable(fd: BorrowedFd<'_>) -> Result<bool> {
    Ok(!opened_read_only(fd)?)
}

/// The `/proc/self/fd` link of a dma-buf on kernels before 5.3, which kept dma-bufs on the
/// anonymous-inode filesystem shared with eventfds and others.
pub(crate) const ANON_DMA_BUF_LINK: &str = "anon_inode:dmabuf";

/// Whether `fd` lives on the dma-buf pseudo filesystem (`statfs` type `DMA_BUF_MAGIC`, Linux 5.3
/// and later). A path proves nothing: any file may be named `/dmabuf:...`.
pub(crate) fn on_dma_buf_fs(fd: BorrowedFd<'_>) -> Result<bool> {
    rustix::fs::fstatfs(fd)
        .map(|st| st.f_type as u32 == DMA_BUF_MAGIC)
        .map_err(|e| Error::sys("fstatfs", format!("/proc/self/fd/{}", fd.as_raw_fd()), e))
}

/// Whether `fd` is a dma-buf: on the dma-buf filesystem, or (before Linux 5.3) the anonymous
/// inode named exactly `dmabuf`.
pub fn is_dma_buf(fd: BorrowedFd<'_>) -> Result<bool> {
    if on_dma_buf_fs(fd)? {
        return Ok(true);
    }
    let raw = fd.as_raw_fd();
    let link = rustix::fs::readlink(format!("/proc/self/fd/{raw}"), Vec::new())
        .map_err(|e| Error::sys("readlink", format!("/proc/self/fd/{raw}"), e))?;
    Ok(link.to_bytes() == ANON_DMA_BUF_LINK.as_bytes())
}

/// What `/proc/self/fdinfo` and `/proc/self/fd` say about an fd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdIdentity {
    /// dma-buf or memfd.
    pub kind: FdKind,
    /// The dma-buf's exporter (`exp_name`: `system`, `udmabuf`, `vgem`...).
    pub exporter: Option<String>,
    /// The dma-buf's name (`DMA_BUF_SET_NAME`), or the memfd's name.
    pub name: Option<String>,
}

/// Identifies `fd` as a dma-buf (`exp_name` in `/proc/self/fdinfo/N`, or a link target naming
/// `dmabuf`) or a memfd (link target `/memfd:...`). Refuses anything else.
pub fn identify_fd(fd: BorrowedFd<'_>) -> Result<FdIdentity> {
    let raw = fd.as_raw_fd();
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}")).unwrap_or_default();
    let field = |key: &str| -> Option<String> {
        fdinfo.lines().find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim_start_matches(':').trim().to_string())
        })
    };
    if let Some(exp) = field("exp_name") {
        return Ok(FdIdentity {
            kind: FdKind::DmaBuf,
            exporter: Some(exp),
            name: field("name").filter(|n| !n.is_empty()),
        });
    }
    let link = rustix::fs::readlink(format!("/proc/self/fd/{raw}"), Vec::new())
        .map(|c| c.to_string_lossy().into_owned())
        .map_err(|e| Error::sys("readlink", format!("/proc/self/fd/{raw}"), e))?;
    // The link target alone is a path: any file whose name contains "dmabuf" must not pass for
    // one (see `is_dma_buf`).
    if link == ANON_DMA_BUF_LINK || on_dma_buf_fs(fd)? {
        return Ok(FdIdentity {
            kind: FdKind::DmaBuf,
            exporter: None,
            name: None,
        });
    }
    if let Some(rest) = link.strip_prefix("/memfd:") {
        let name = rest.strip_suffix(" (deleted)").unwrap_or(rest).to_string();
        return Ok(FdIdentity {
            kind: FdKind::Memfd,
            exporter: None,
            name: Some(name),
        });
    }
    Err(Error::InvalidArgument(format!(
        "fd {raw} is not a dma-buf or a memfd (it is {link:?})"
    )))
}

/// `DMA_BUF_MAGIC` from `include/uapi/linux/magic.h`: the `f_type` of the dma-buf filesystem.
const DMA_BUF_MAGIC: u32 = 0x444d_4142;

/// Refuses a memfd that is not sealed `F_SEAL_SHRINK`: it is about to be mapped `MAP_SHARED` and
/// read through `&[u8]`, and whoever else holds it (the peer that sent it) could `ftruncate` it
/// below the mapping, turning every later access past the new end into `SIGBUS`. (A shmem file
/// that is not a memfd, e.g. in `/dev/shm`, cannot be sealed at all, so it is refused too.)
fn require_shrink_seal(fd: BorrowedFd<'_>, what: &str) -> Result<()> {
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|e| Error::sys("F_GET_SEALS", what, e))?;
    if !seals.contains(rustix::fs::SealFlags::SHRINK) {
        return Err(Error::InvalidArgument(format!(
            "{what} is not sealed F_SEAL_SHRINK: its holder could shrink it under a mapping \
             (SIGBUS); seal it with fcntl(F_ADD_SEALS, F_SEAL_SHRINK) before sharing it"
        )));
    }
    Ok(())
}

/// The backend an exporter name points to, where it is one of ours.
fn backend_of_exporter(exp: &str) -> Option<BackendKind> {
    match exp {
        "system" => Some(BackendKind::SystemHeap),
        "udmabuf" => Some(BackendKind::Udmabuf),
        _ if backend::discover::classify_heap(exp, std::path::Path::new("/sys/kernel/mm/cma"))
            .0
            == backend::HeapClass::Contiguous =>
        {
            Some(BackendKind::CmaHeap)
        }
        _ => None,
    }
}

impl Object {
    /// Allocates one object for `list` from the process-wide backends ([`backend::global`]),
    /// named after the list's accessors. The handle holds read-write.
    pub fn allocate(list: &Arc<Reconciled>) -> Result<Object> {
        Object::allocate_from(backend::global(), list, None)
    }

    /// Like [`Object::allocate`], with the buffer named `name` (cut to 31 bytes).
    pub fn allocate_named(list: &Arc<Reconciled>, name: &str) -> Result<Object> {
        Object::allocate_from(backend::global(), list, Some(name))
    }

    /// Allocates `n` objects for `list` (one backend choice for all; names get `-<i>`).
    pub fn allocate_n(list: &Arc<Reconciled>, n: usize) -> Result<Vec<Object>> {
        let allocs = backend::global().allocate_n(&AllocRequest::from_reconciled(list, None), n)?;
        allocs
            .into_iter()
            .map(|a| Object::from_allocation(a, list))
            .collect()
    }

    /// Allocates one object for `list` from `backends`, named `name` (or after the list's
    /// accessors).
    #[inline]
    pub fn allocate_from(
        backends: &Backends,
        list: &Arc<Reconciled>,
        name: Option<&str>,
    ) -> Result<Object> {
        // The list's derived name is built once and shared; a given name is cut to 31 bytes
        // first (a NUL past the cut does not matter), as `AllocRequest::from_reconciled` does.
        let name: Arc<str> = match name {
            None => list.derived_name_shared().clone(),
            Some(n) => backend::cut_name(n).into(),
        };
        let a = backends.allocate_for(list.memory(), list.size(), list.alignment(), name)?;
        Object::from_allocation(a, list)
    }

    /// Reconciles `lists` and allocates one object for the result: the shortcut for a single
    /// process that holds every accessor's list. A conflict is returned as [`Error::Conflict`].
    pub fn reconcile_and_allocate<'a, I>(lists: I) -> Result<Object>
    where
        I: IntoIterator<Item = &'a crate::attr::AttrList>,
    {
        let r = crate::reconcile::reconcile(lists).map_err(|c| Error::Conflict(Box::new(c)))?;
        Object::allocate(&Arc::new(r))
    }

    /// Wraps a fresh [`Allocation`] made for `list`; the handle holds read-write (NvSciBuf: an
    /// allocated object has read-write permission; `dup_with` reduces it).
    #[inline]
    pub fn from_allocation(a: Allocation, list: &Arc<Reconciled>) -> Result<Object> {
        if a.size < list_size(list) {
            return Err(Error::InvalidArgument(format!(
                "allocation of {} bytes is smaller than the list's {} bytes",
                a.size,
                list_size(list)
            )));
        }
        let kind = if a.choice.backend == BackendKind::Memfd {
            FdKind::Memfd
        } else {
            FdKind::DmaBuf
        };
        Ok(Object {
            fd: a.fd,
            memfd: a.memfd,
            list: list.clone(),
            permission: Permission::ReadWrite,
            cpu_access: list.local_cpu_access(),
            info: Info {
                kind,
                backend: Some(a.choice.backend),
                // Heaps, udmabuf, DRM dumb buffers and memfds all map; no probe needed.
                cpu_mappable: Ok(()),
                choice: Some(a.choice),
                size: a.size,
                name: a.name,
                exporter: None,
            },
        })
    }

    /// Imports a foreign dma-buf fd for `list` with `permission`: see [`Object::import_parts`].
    pub fn import(fd: OwnedFd, list: &Arc<Reconciled>, permission: Permission) -> Result<Object> {
        Object::import_parts(
            ImportParts {
                fd,
                memfd: None,
                backend: None,
            },
            list,
            permission,
        )
    }

    /// Imports the fds of a buffer made elsewhere (another process, a GPU, V4L2 `EXPBUF`).
    ///
    /// Checks that `fd` is a dma-buf (or a memfd, for a list with no device accessor), that its
    /// size (`lseek(SEEK_END)`) is at least the list's, that a read-write `permission` comes with
    /// fds opened for writing, and that `memfd` (if any) is a memfd as large as the buffer. Every
    /// memfd (the fd of a CPU-only object, or the one beside a udmabuf) must be sealed
    /// `F_SEAL_SHRINK` (unibuf's own allocations are), so no holder can shrink it under a mapping.
    /// Records whether the buffer can be CPU-mapped (some exporters' dma-bufs cannot be, e.g.
    /// GPU memory: `ENOTSUPP`). A read-only handle keeps an `O_RDONLY` reopen of a writable memfd
    /// and drops the writable one.
    pub fn import_parts(
        parts: ImportParts,
        list: &Arc<Reconciled>,
        permission: Permission,
    ) -> Result<Object> {
        let id = identify_fd(parts.fd.as_fd())?;
        let needs_dma_buf = list_device_access(list);
        if id.kind != FdKind::DmaBuf && needs_dma_buf {
            return Err(Error::InvalidArgument(
                "the imported fd is a memfd, but the list has a device accessor that needs a \
                 dma-buf"
                    .into(),
            ));
        }
        let what = match &id.exporter {
            Some(e) => format!("imported dma-buf (exporter {e})"),
            None => format!("imported {:?}", id.kind),
        };
        let size = backend::fd_size(parts.fd.as_fd(), &what)?;
        if size < list_size(list) {
            return Err(Error::InvalidArgument(format!(
                "{what} has {size} bytes, the list requires {}",
                list_size(list)
            )));
        }
        if permission == Permission::ReadWrite && !fd_writable(parts.fd.as_fd())? {
            return Err(Error::PermissionDenied(format!(
                "{what} was opened read-only and cannot back a read-write handle"
            )));
        }
        let mut memfd = None;
        if let Some(m) = parts.memfd {
            let mid = identify_fd(m.as_fd())?;
            if mid.kind != FdKind::Memfd {
                return Err(Error::InvalidArgument(
                    "the fd passed as the buffer's memfd is not a memfd".into(),
                ));
            }
            let msize = backend::fd_size(m.as_fd(), "imported memfd")?;
            // The memfd is what gets mapped, for the whole `size` of the buffer: a shorter one
            // would leave the tail of the mapping past its end (SIGBUS on access).
            if msize < size {
                return Err(Error::InvalidArgument(format!(
                    "imported memfd has {msize} bytes, the buffer {size}"
                )));
            }
            require_shrink_seal(m.as_fd(), "imported memfd")?;
            let writable = fd_writable(m.as_fd())?;
            if permission == Permission::ReadWrite && !writable {
                return Err(Error::PermissionDenied(
                    "the imported memfd was opened read-only and cannot back a read-write handle"
                        .into(),
                ));
            }
            memfd = Some(if permission == Permission::ReadOnly && writable {
                reopen_readonly(m.as_fd())?
            } else {
                m
            });
        }
        if id.kind == FdKind::Memfd {
            require_shrink_seal(parts.fd.as_fd(), &what)?;
        }
        let mut fd = parts.fd;
        if id.kind == FdKind::Memfd
            && permission == Permission::ReadOnly
            && fd_writable(fd.as_fd())?
        {
            fd = reopen_readonly(fd.as_fd())?;
        }
        let map_fd = memfd.as_ref().map(|m| m.as_fd()).unwrap_or(fd.as_fd());
        let cpu_mappable = crate::map::probe_mappable(map_fd, &what).map_err(|e| e.to_string());
        let backend = parts.backend.or(match id.kind {
            FdKind::Memfd => Some(BackendKind::Memfd),
            FdKind::DmaBuf => id.exporter.as_deref().and_then(backend_of_exporter),
        });
        Ok(Object {
            fd,
            memfd,
            list: list.clone(),
            permission,
            cpu_access: list.local_cpu_access(),
            info: Info {
                kind: id.kind,
                backend,
                choice: None,
                size,
                name: id.name.unwrap_or_default().into(),
                exporter: id.exporter,
                cpu_mappable,
            },
        })
    }

    /// A second handle with the same permission (new fds of the same buffer).
    pub fn dup(&self) -> Result<Object> {
        Ok(Object {
            fd: dup_fd(self.fd.as_fd(), &self.what())?,
            memfd: match &self.memfd {
                Some(m) => Some(dup_fd(m.as_fd(), "memfd")?),
                None => None,
            },
            list: self.list.clone(),
            permission: self.permission,
            cpu_access: self.cpu_access,
            info: self.info.clone(),
        })
    }

    /// A second handle with `permission`, which may not exceed this handle's: read-write →
    /// read-only is allowed, read-only → read-write is refused ([`Error::PermissionDenied`]).
    pub fn dup_with(&self, permission: Permission) -> Result<Object> {
        if !self.permission.allows(permission) {
            return Err(Error::PermissionDenied(format!(
                "a {} handle cannot be raised to {permission}",
                self.permission
            )));
        }
        let d = self.dup()?;
        if permission == d.permission {
            Ok(d)
        } else {
            d.into_readonly()
        }
    }

    /// Turns this handle read-only: memfds are swapped for `O_RDONLY` reopens.
    fn into_readonly(mut self) -> Result<Object> {
        if let Some(m) = &self.memfd {
            self.memfd = Some(reopen_readonly(m.as_fd())?);
        }
        if self.info.kind == FdKind::Memfd {
            self.fd = reopen_readonly(self.fd.as_fd())?;
        }
        self.permission = Permission::ReadOnly;
        Ok(self)
    }

    fn what(&self) -> String {
        let kind = match self.info.kind {
            FdKind::DmaBuf => "dma-buf",
            FdKind::Memfd => "memfd",
        };
        if self.info.name.is_empty() {
            kind.to_string()
        } else {
            format!("{kind} {:?}", self.info.name)
        }
    }

    /// The buffer's fd: the dma-buf, or the memfd of a CPU-only ([`BackendKind::Memfd`]) object.
    /// This is what IPC sends and devices import.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The memfd behind the buffer: the udmabuf's memfd, or the fd itself for a memfd object;
    /// `None` for heap and DRM buffers. For a read-only handle it is an `O_RDONLY` file. IPC sends
    /// it along so the receiver's read-only handle is kernel-enforced; VFIO pins it.
    pub fn memfd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.memfd, self.info.kind) {
            (Some(m), _) => Some(m.as_fd()),
            (None, FdKind::Memfd) => Some(self.fd.as_fd()),
            (None, FdKind::DmaBuf) => None,
        }
    }

    /// Whether the fd is a dma-buf (false for a CPU-only memfd object).
    pub fn is_dma_buf(&self) -> bool {
        self.info.kind == FdKind::DmaBuf
    }

    /// The reconciled list the object was allocated or imported for.
    pub fn list(&self) -> &Arc<Reconciled> {
        &self.list
    }

    /// This handle's permission.
    pub fn permission(&self) -> Permission {
        self.permission
    }

    /// Whether the buffer as allocated satisfies a late peer's lists (NvSciBufObjAttachPeer):
    /// [`Reconciled::validate_on`] with what the memory actually is (a CMA heap's buffer is
    /// contiguous, a dma-buf can be imported by devices, a memfd-backed buffer can be pinned).
    /// The conflict names each key the newcomer needs that the buffer lacks. See
    /// [`crate::ipc::Endpoint::attach_peer`].
    pub fn satisfies(
        &self,
        newcomer: &[crate::attr::AttrList],
    ) -> std::result::Result<(), crate::reconcile::Conflict> {
        let list = self.list.memory();
        let backend = self.info.backend;
        let actual = crate::backend::MemoryRequirement {
            contiguous: list.contiguous || backend == Some(BackendKind::CmaHeap),
            pinnable: list.pinnable || self.memfd().is_some(),
            device_access: list.device_access || self.is_dma_buf(),
            preferred: list.preferred,
            vidmem: list.vidmem,
        };
        self.list.validate_on(newcomer, &actual)
    }

    /// Whether this handle may be CPU-mapped: one of its holder's own lists asked
    /// `need_cpu_access`. Allocations and [`Object::import_parts`] take it from
    /// [`Reconciled::local_cpu_access`] (the lists of this process, not those imported from
    /// peers); an object imported over IPC from the importer's own lists.
    pub fn cpu_access(&self) -> bool {
        self.cpu_access
    }

    /// This handle with the CPU access that `own` (its holder's own unreconciled lists) asks:
    /// granted when one of them sets `need_cpu_access`, withdrawn otherwise. For a buffer whose
    /// reconciled list came from a peer (its inputs are all imported, so it grants no CPU
    /// access by itself).
    pub fn with_cpu_access_of(mut self, own: &[crate::attr::AttrList]) -> Object {
        self.cpu_access = own.iter().any(crate::attr::AttrList::needs_cpu_access);
        self
    }

    /// The buffer's size in bytes (page-rounded for allocations; `lseek(SEEK_END)` for imports).
    pub fn size(&self) -> u64 {
        self.info.size
    }

    /// The buffer's name (`DMA_BUF_SET_NAME`, or the memfd's name).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The backend it came from, when known (imports of foreign exporters: `None`).
    pub fn backend(&self) -> Option<BackendKind> {
        self.info.backend
    }

    /// The backend choice and its reason (allocations only).
    pub fn choice(&self) -> Option<&Choice> {
        self.info.choice.as_deref()
    }

    /// The exporter of an imported dma-buf (`exp_name` in fdinfo).
    pub fn exporter(&self) -> Option<&str> {
        self.info.exporter.as_deref()
    }

    /// Whether the buffer can be mapped for the CPU; `Err` says why not (found at import).
    pub fn cpu_mappable(&self) -> std::result::Result<(), &str> {
        self.info
            .cpu_mappable
            .as_ref()
            .map(|_| ())
            .map_err(|s| s.as_str())
    }

    fn check_cpu(&self) -> Result<()> {
        if !self.cpu_access {
            let others = if list_cpu_access(&self.list) {
                "another peer's list asked, which gives this handle nothing"
            } else {
                "no list asked"
            };
            return Err(Error::PermissionDenied(format!(
                "{}: need_cpu_access: no list of this handle's holder asked for CPU access                  ({others}); set need_cpu_access in its own list",
                self.what()
            )));
        }
        if let Err(why) = &self.info.cpu_mappable {
            return Err(Error::Unavailable {
                what: format!("a CPU mapping of {}", self.what()),
                why: why.clone(),
            });
        }
        usize::try_from(self.info.size)
            .map(|_| ())
            .map_err(|_| Error::InvalidArgument("buffer larger than the address space".into()))
    }

    fn map_source(&self) -> BorrowedFd<'_> {
        self.memfd
            .as_ref()
            .map(|m| m.as_fd())
            .unwrap_or(self.fd.as_fd())
    }

    fn sync_fd(&self) -> Option<BorrowedFd<'_>> {
        (self.info.kind == FdKind::DmaBuf).then(|| self.fd.as_fd())
    }

    /// A read-only view (`PROT_READ`, `MAP_SHARED`). Refused when no list of this handle's
    /// holder asked for CPU access ([`Object::cpu_access`]) or the buffer cannot be mapped. memfd-backed objects map the memfd (for a read-only
    /// handle, its `O_RDONLY` reopen); accesses are bracketed on the dma-buf.
    pub fn map_read(&self) -> Result<ReadMap<'_>> {
        self.check_cpu()?;
        ReadMap::new(
            self.map_source(),
            self.sync_fd(),
            self.info.size as usize,
            &self.what(),
        )
    }

    /// A writable view (`PROT_READ | PROT_WRITE`, `MAP_SHARED`). Refused for a read-only handle
    /// ([`Error::PermissionDenied`]) and when no list of this handle's holder asked for CPU access.
    pub fn map_write(&mut self) -> Result<WriteMap<'_>> {
        // No CPU access at all is the first refusal (it names `need_cpu_access`).
        self.check_cpu()?;
        if self.permission != Permission::ReadWrite {
            return Err(Error::PermissionDenied(format!(
                "{}: this handle is {}; no writable view",
                self.what(),
                self.permission
            )));
        }
        let what = self.what();
        WriteMap::new(
            self.map_source(),
            self.sync_fd(),
            self.info.size as usize,
            &what,
        )
    }
}
