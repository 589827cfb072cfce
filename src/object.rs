//! Buffer objects: a dma-buf (or memfd) fd, its reconciled list, and this handle's permission.
//!
//! An [`Object`] owns its fds: dropping the last handle (and every mapping, device import and
//! process holding the dma-buf) frees the memory. Handles are made by
//!
//! - [`Object::allocator`] (`.allocate()` for one, `.allocate_n(n)` for several; from the
//!   process-wide [`backend::global`] backends unless [`Allocator::backends`] names others), or
//!   its shorthand [`Object::allocate`]: the handle holds read-write whatever the list's
//!   permission (NvSciBufObjAlloc: the allocating process fills the buffer); a base alignment
//!   the chosen backend cannot guarantee is refused, never dropped;
//! - [`Object::dup`] (same permission) and [`Object::dup_with`] (a reduced permission:
//!   read-write → read-only; the reverse is refused);
//! - [`Object::import`] / [`Object::import_parts`]: a foreign dma-buf fd (a GPU's export, V4L2
//!   `VIDIOC_EXPBUF`, another process over IPC), identified once by [`crate::fd::identify`] as a
//!   dma-buf (or, for CPU-only lists, a memfd sealed `F_SEAL_SHRINK`) at least as large as the
//!   list requires.
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

use crate::attr::{BackendKind, Key, Permission, Value};
use crate::backend::{self, Allocation, Backends, BufferName, Choice};
use crate::error::{Error, Result};
use crate::fd::{self, Identified};
use crate::map::{ReadMap, WriteMap};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use crate::reconcile::Reconciled;

pub use crate::fd::FdKind;

fn list_size(l: &Reconciled) -> u64 {
    l.size()
}
fn list_cpu_access(l: &Reconciled) -> bool {
    l.need_cpu_access()
}
fn list_device_access(l: &Reconciled) -> bool {
    l.memory().device_access
}

/// Facts about the buffer, the same in every handle to it (held inline: no extra heap
/// allocation on the allocation path). What is only informational (an import's name and
/// exporter, whether a foreign dma-buf can be CPU-mapped) is found on first use.
#[derive(Debug, Clone)]
struct Info {
    kind: FdKind,
    backend: Fact<Option<BackendKind>>,
    choice: Option<Arc<Choice>>,
    size: u64,
    name: Fact<Arc<str>>,
    exporter: Fact<Option<String>>,
    cpu_mappable: Fact<std::result::Result<(), String>>,
}

/// A fact known when the handle is made (allocations: no atomic operation on that path), or
/// found on first use (imports).
#[derive(Debug, Clone)]
enum Fact<T> {
    Known(T),
    Later(OnceLock<T>),
}

impl<T> Fact<T> {
    fn later() -> Fact<T> {
        Fact::Later(OnceLock::new())
    }

    fn get(&self) -> Option<&T> {
        match self {
            Fact::Known(v) => Some(v),
            Fact::Later(c) => c.get(),
        }
    }

    fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        match self {
            Fact::Known(v) => v,
            Fact::Later(c) => c.get_or_init(f),
        }
    }
}

use Fact::Known as known;

/// Why a cuda-vidmem object has no CPU mapping.
const VIDMEM_NO_CPU: &str = "GPU video memory (cuda-vidmem): its fd is a CUDA shareable handle of \
     the NVIDIA driver, not a dma-buf or memfd, and cannot be mmapped; reach it through CUDA \
     (interop::cuda::CudaBuffer)";

/// An allocated or imported buffer: its fd, its reconciled list and this handle's permission.
pub struct Object {
    fd: OwnedFd,
    memfd: Option<OwnedFd>,
    /// What the allocation keeps alive besides the fds (`cuda-vidmem`: the CUDA allocation
    /// handle), shared by every handle of this process.
    keep: Option<backend::Keep>,
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
            .field("backend", &self.backend())
            .field("size", &self.info.size)
            .field("name", &self.name())
            .field("exporter", &self.exporter())
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

/// The key a reconciled base alignment came from, for error messages.
fn alignment_key(list: &Reconciled) -> Key {
    let a = list.alignment();
    [Key::RawAlign, Key::ImageBaseAlign, Key::TensorBaseAlign]
        .into_iter()
        .find(|&k| matches!(list.get(k), Some(Value::U64(v)) if *v == a))
        .unwrap_or(Key::OutAlign)
}

/// How to allocate objects for a reconciled list: made by [`Object::allocator`], finished by
/// [`Allocator::allocate`] (one buffer) or [`Allocator::allocate_n`] (several). This is the one
/// allocation route: backend choice, size and base alignment ([`backend`'s rules](
/// crate::backend#base-alignment)), the chosen backend's allocator, the name.
#[derive(Debug, Clone, Copy)]
#[must_use = "an Allocator allocates nothing until `allocate` or `allocate_n`"]
pub struct Allocator<'a> {
    list: &'a Arc<Reconciled>,
    backends: Option<&'a Backends>,
    name: Option<&'a str>,
}

impl<'a> Allocator<'a> {
    /// Allocates from `backends` instead of the process-wide [`backend::global`].
    pub fn backends(self, backends: &'a Backends) -> Self {
        Allocator {
            backends: Some(backends),
            ..self
        }
    }

    /// Names the buffer `name` (a [`BufferName`]: cut to 31 bytes; a NUL is refused) instead of
    /// the list's accessors' names.
    pub fn name(self, name: &'a str) -> Self {
        Allocator {
            name: Some(name),
            ..self
        }
    }

    /// Allocates one object. The handle holds read-write.
    #[inline]
    pub fn allocate(self) -> Result<Object> {
        let mut out = None;
        self.run(None, |o| out = Some(o))?;
        out.ok_or_else(|| Error::InvalidArgument("no object allocated".into()))
    }

    /// Allocates `n` objects (one backend choice for all; the names get `-<i>`). On an error the
    /// objects made so far are freed.
    pub fn allocate_n(self, n: usize) -> Result<Vec<Object>> {
        let mut out = Vec::with_capacity(n);
        self.run(Some(n), |o| out.push(o))?;
        Ok(out)
    }

    #[inline]
    fn run(self, n: Option<usize>, mut sink: impl FnMut(Object)) -> Result<()> {
        let list = self.list;
        let backends = self.backends.unwrap_or_else(|| backend::global());
        let choice = backends.choose_shared(list.memory())?;
        if choice.backend == BackendKind::CudaVidmem && list_cpu_access(list) {
            return Err(Error::Unavailable {
                what: "CPU access (need_cpu_access) to GPU video memory (vidmem_gpu)".into(),
                why: format!(
                    "{VIDMEM_NO_CPU}; a list that needs the CPU cannot share a vidmem_gpu buffer"
                ),
            });
        }
        let len = match backend::placement(choice.backend, list.size(), list.alignment())? {
            Ok(len) => len,
            Err(guaranteed) => {
                return Err(Error::Unavailable {
                    what: format!(
                        "a base alignment of {} bytes ({} = {})",
                        list.alignment(),
                        alignment_key(list),
                        list.alignment()
                    ),
                    why: format!(
                        "the chosen backend {} guarantees {guaranteed} bytes (see \
                         unibuf::backend, base alignment); {}",
                        choice.backend, choice.reason
                    ),
                })
            }
        };
        let name = match self.name {
            None => BufferName::from_shared(list.derived_name_shared())?,
            Some(n) => BufferName::new(n)?,
        };
        match n {
            None => sink(Object::from_allocation(
                backends.alloc_one(choice, len, name)?,
                list,
            )?),
            Some(n) => {
                for i in 0..n {
                    let a = backends.alloc_one(choice.clone(), len, name.with_index(i))?;
                    sink(Object::from_allocation(a, list)?);
                }
            }
        }
        Ok(())
    }
}

impl Object {
    /// The allocation route for `list`: `Object::allocator(&list).allocate()` makes one object
    /// from the process-wide backends, named after the list's accessors;
    /// [`Allocator::backends`], [`Allocator::name`] and [`Allocator::allocate_n`] change that.
    pub fn allocator(list: &Arc<Reconciled>) -> Allocator<'_> {
        Allocator {
            list,
            backends: None,
            name: None,
        }
    }

    /// `Object::allocator(list).allocate()`: one object for `list` from the process-wide
    /// backends ([`backend::global`]), named after the list's accessors. The handle holds
    /// read-write.
    pub fn allocate(list: &Arc<Reconciled>) -> Result<Object> {
        Object::allocator(list).allocate()
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
    fn from_allocation(a: Allocation, list: &Arc<Reconciled>) -> Result<Object> {
        if a.size < list_size(list) {
            return Err(Error::InvalidArgument(format!(
                "allocation of {} bytes is smaller than the list's {} bytes",
                a.size,
                list_size(list)
            )));
        }
        let kind = match a.choice.backend {
            BackendKind::Memfd => FdKind::Memfd,
            BackendKind::CudaVidmem => FdKind::CudaVidmem,
            _ => FdKind::DmaBuf,
        };
        // NvSciBufObjAlloc: the allocating process holds read-write whatever the list's
        // permission (it fills the buffer); `dup_with` gives read-only handles.
        Ok(Object {
            fd: a.fd,
            memfd: a.memfd,
            keep: a.keep,
            list: list.clone(),
            permission: Permission::ReadWrite,
            cpu_access: list.local_cpu_access(),
            info: Info {
                kind,
                backend: known(Some(a.choice.backend)),
                // Heaps, udmabuf, DRM dumb buffers and memfds all map; no probe needed.
                cpu_mappable: known(if kind == FdKind::CudaVidmem {
                    Err(VIDMEM_NO_CPU.into())
                } else {
                    Ok(())
                }),
                choice: Some(a.choice),
                size: a.size,
                name: known(a.name.into_shared()),
                exporter: known(None),
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
    /// Identifies each fd once ([`crate::fd::identify`]): `fd` must be a dma-buf (or a memfd,
    /// for a list with no device accessor) and `memfd` (if any) a memfd; every memfd must be
    /// sealed `F_SEAL_SHRINK` (unibuf's own allocations are), so no holder can shrink it under a
    /// mapping; `O_PATH` fds and files that only pose as memfds (a file on `/dev/shm`) are
    /// refused. Then checks that the buffer is at least as large as the list requires (and the
    /// memfd as large as the buffer), and that a read-write `permission` comes with fds that
    /// allow writing. Whether a foreign dma-buf can be CPU-mapped (some cannot, e.g. GPU
    /// memory: `ENOTSUPP`) is found on first use ([`Object::cpu_mappable`]). A read-only handle
    /// keeps an `O_RDONLY` reopen of a writable memfd and drops the writable one.
    pub fn import_parts(
        parts: ImportParts,
        list: &Arc<Reconciled>,
        permission: Permission,
    ) -> Result<Object> {
        let fd = fd::identify(parts.fd, None)?;
        let memfd = parts
            .memfd
            .map(|m| fd::identify(m, Some(FdKind::Memfd)))
            .transpose()?;
        Object::from_identified(fd, memfd, parts.backend, list, permission)
    }

    /// Makes an imported object of fds identified once ([`fd::identify`]; IPC identifies them
    /// on receipt), for `list` with `permission`.
    pub(crate) fn from_identified(
        fd: Identified,
        memfd: Option<Identified>,
        backend: Option<BackendKind>,
        list: &Arc<Reconciled>,
        permission: Permission,
    ) -> Result<Object> {
        let facts = fd.facts();
        let vidmem = facts.kind == FdKind::CudaVidmem;
        if vidmem && list.vidmem_gpu().is_none() {
            return Err(Error::InvalidArgument(
                "the imported fd is a CUDA shareable handle (GPU video memory), but the list \
                 does not set vidmem_gpu"
                    .into(),
            ));
        }
        if facts.kind == FdKind::Memfd && list_device_access(list) {
            return Err(Error::InvalidArgument(
                "the imported fd is a memfd, but the list has a device accessor that needs a \
                 dma-buf"
                    .into(),
            ));
        }
        let what = format!("imported {}", facts.kind);
        // A CUDA handle has no size: the list's is what the exporter allocated (at least), and
        // CUDA refuses to map more than the allocation.
        let size = if vidmem { list_size(list) } else { facts.size };
        if size < list_size(list) {
            return Err(Error::InvalidArgument(format!(
                "{what} has {size} bytes, the list requires {}",
                list_size(list)
            )));
        }
        let rw = permission == Permission::ReadWrite;
        // A CUDA handle's access mode grants nothing: the importing process sets its own access
        // (cuMemSetAccess), so read-only there is that process's choice (interop::cuda).
        if rw && !facts.writable && !vidmem {
            return Err(Error::PermissionDenied(format!(
                "{what} was opened read-only (or sealed against writes) and cannot back a \
                 read-write handle"
            )));
        }
        let memfd = match memfd {
            None => None,
            Some(m) => {
                let mf = m.facts();
                if mf.kind != FdKind::Memfd {
                    return Err(Error::InvalidArgument(
                        "the fd passed as the buffer's memfd is not a memfd".into(),
                    ));
                }
                // The memfd is what gets mapped, for the whole `size` of the buffer: a shorter
                // one would leave the tail of the mapping past its end (SIGBUS on access).
                if mf.size < size {
                    return Err(Error::InvalidArgument(format!(
                        "imported memfd has {} bytes, the buffer {size}",
                        mf.size
                    )));
                }
                if rw && !mf.writable {
                    return Err(Error::PermissionDenied(
                        "the imported memfd was opened read-only and cannot back a read-write \
                         handle"
                            .into(),
                    ));
                }
                Some(if rw { m } else { m.read_only()? }.into_fd())
            }
        };
        let fd = if rw { fd } else { fd.read_only()? }.into_fd();
        // A memfd is backed by shmem (or hugetlbfs) pages: it always maps. A dma-buf that comes
        // with its memfd maps that memfd.
        let mappable_known = facts.kind == FdKind::Memfd || memfd.is_some();
        let backend = match (facts.kind, backend) {
            (FdKind::Memfd, _) => known(Some(BackendKind::Memfd)),
            (FdKind::CudaVidmem, _) => known(Some(BackendKind::CudaVidmem)),
            // A dma-buf is never the memfd backend, whatever the sender said.
            (FdKind::DmaBuf, Some(BackendKind::Memfd)) | (FdKind::DmaBuf, None) => Fact::later(),
            (FdKind::DmaBuf, Some(b)) => known(Some(b)),
        };
        Ok(Object {
            fd,
            memfd,
            keep: None,
            list: list.clone(),
            permission,
            cpu_access: list.local_cpu_access(),
            info: Info {
                kind: facts.kind,
                backend,
                choice: None,
                size,
                name: if vidmem {
                    known("".into())
                } else {
                    Fact::later()
                },
                exporter: if facts.kind == FdKind::DmaBuf {
                    Fact::later()
                } else {
                    known(None)
                },
                cpu_mappable: if vidmem {
                    known(Err(VIDMEM_NO_CPU.into()))
                } else if mappable_known {
                    known(Ok(()))
                } else {
                    Fact::later()
                },
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
            keep: self.keep.clone(),
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
            self.memfd = Some(fd::reopen_read_only(m.as_fd())?);
        }
        if self.info.kind == FdKind::Memfd {
            self.fd = fd::reopen_read_only(self.fd.as_fd())?;
        }
        self.permission = Permission::ReadOnly;
        Ok(self)
    }

    fn what(&self) -> String {
        let kind = match self.info.kind {
            FdKind::DmaBuf => "dma-buf",
            FdKind::Memfd => "memfd",
            FdKind::CudaVidmem => "cuda-vidmem",
        };
        match self.info.name.get() {
            Some(n) if !n.is_empty() => format!("{kind} {n:?}"),
            _ => kind.to_string(),
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
            (None, FdKind::DmaBuf | FdKind::CudaVidmem) => None,
        }
    }

    /// Whether the fd is a dma-buf (false for a CPU-only memfd object and for a cuda-vidmem
    /// handle).
    pub fn is_dma_buf(&self) -> bool {
        self.info.kind == FdKind::DmaBuf
    }

    /// What kind of file the object's fd is: a dma-buf, a memfd, or a cuda-vidmem handle (GPU
    /// video memory, which only CUDA can reach: `interop::cuda::CudaBuffer::import`).
    pub fn fd_kind(&self) -> FdKind {
        self.info.kind
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
        let backend = self.backend();
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

    /// The buffer's name (`DMA_BUF_SET_NAME`, or the memfd's name; for an import read from
    /// `/proc/self/fdinfo` or the memfd's link on first use).
    pub fn name(&self) -> &str {
        self.info.name.get_or_init(|| {
            match self.info.kind {
                FdKind::DmaBuf => fd::exporter_and_name(self.fd.as_fd()).1,
                FdKind::Memfd => fd::memfd_name(self.fd.as_fd()),
                FdKind::CudaVidmem => None,
            }
            .unwrap_or_default()
            .into()
        })
    }

    /// The backend it came from, when known (imports of foreign exporters: `None`). For an
    /// import whose sender did not say, found from the exporter name on first use.
    pub fn backend(&self) -> Option<BackendKind> {
        *self
            .info
            .backend
            .get_or_init(|| self.exporter().and_then(backend_of_exporter))
    }

    /// The backend choice and its reason (allocations only).
    pub fn choice(&self) -> Option<&Choice> {
        self.info.choice.as_deref()
    }

    /// The exporter of an imported dma-buf (`exp_name` in fdinfo, read on first use).
    pub fn exporter(&self) -> Option<&str> {
        self.info
            .exporter
            .get_or_init(|| fd::exporter_and_name(self.fd.as_fd()).0)
            .as_deref()
    }

    /// Whether the buffer can be mapped for the CPU; `Err` says why not. For a foreign dma-buf
    /// this maps one page and unmaps it on first use.
    pub fn cpu_mappable(&self) -> std::result::Result<(), &str> {
        self.mappable().as_ref().map(|_| ()).map_err(|s| s.as_str())
    }

    fn mappable(&self) -> &std::result::Result<(), String> {
        self.info.cpu_mappable.get_or_init(|| {
            crate::map::probe_mappable(self.map_source(), &self.what()).map_err(|e| e.to_string())
        })
    }

    fn check_cpu(&self) -> Result<()> {
        if !self.cpu_access {
            let others = if list_cpu_access(&self.list) {
                "another peer's list asked, which gives this handle nothing"
            } else {
                "no list asked"
            };
            return Err(Error::PermissionDenied(format!(
                "{}: need_cpu_access: no list of this handle's holder asked for CPU access \
                 ({others}); set need_cpu_access in its own list",
                self.what()
            )));
        }
        if let Err(why) = self.mappable() {
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
            || self.what(),
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
        WriteMap::new(
            self.map_source(),
            self.sync_fd(),
            self.info.size as usize,
            || self.what(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{AccessorKind, AttrList, GpuId};
    use crate::fd::Facts;
    use rustix::fs::SealFlags;

    fn list(size: u64, vidmem: Option<GpuId>) -> Arc<Reconciled> {
        let mut l = AttrList::raw(size).unwrap();
        l.set_accessor_kind(AccessorKind::Cpu)
            .unwrap()
            .set_required_perm(Permission::ReadWrite)
            .unwrap();
        match vidmem {
            None => {
                l.set_need_cpu_access(true).unwrap();
            }
            Some(g) => {
                l.set_gpu_ids(&[g]).unwrap().set_vidmem_gpu(g).unwrap();
            }
        }
        Arc::new(crate::reconcile::reconcile([&l]).unwrap())
    }

    fn facts(kind: FdKind, size: u64, writable: bool) -> Facts {
        Facts {
            kind,
            size,
            writable,
            seals: SealFlags::empty(),
        }
    }

    /// A dma-buf that cannot be mmapped (GPU memory: `ENOTSUPP` on the H200; here a pipe taken
    /// for one, whose mmap fails with `ENODEV`) imports as an object without CPU access, not an
    /// error; `cpu_mappable` and `map_read` say why, naming the errno.
    #[test]
    fn an_unmappable_dma_buf_imports_without_cpu_access() {
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let id = crate::fd::Identified::assumed(r, facts(FdKind::DmaBuf, 8192, true));
        let obj = Object::from_identified(id, None, None, &list(8192, None), Permission::ReadWrite)
            .unwrap();
        assert!(obj.cpu_access(), "the holder's own list asked for the CPU");
        assert_eq!(obj.size(), 8192);
        let why = obj.cpu_mappable().unwrap_err().to_string();
        assert!(why.contains("mmap") && why.contains("ENODEV"), "{why}");
        match obj.map_read() {
            Err(Error::Unavailable { what, why: w }) => {
                assert!(what.contains("CPU mapping"), "{what}");
                assert_eq!(w, why);
            }
            other => panic!("map_read of an unmappable dma-buf: {other:?}"),
        }
    }

    /// A cuda-vidmem handle has no size: its object takes the list's, needs a list that sets
    /// vidmem_gpu, is never CPU-mapped, and holds read-write whatever the fd's access mode (the
    /// importing process sets the GPU access itself).
    #[test]
    fn a_cuda_handle_takes_the_list_size_and_no_cpu_access() {
        let fd = || rustix::fs::memfd_create("h", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let h = |f| crate::fd::Identified::assumed(f, facts(FdKind::CudaVidmem, 0, false));
        let e = Object::from_identified(
            h(fd()),
            None,
            None,
            &list(1 << 21, None),
            Permission::ReadWrite,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("vidmem_gpu"), "{e}");
        let l = list(1 << 21, Some(GpuId([7; 16])));
        let obj = Object::from_identified(h(fd()), None, None, &l, Permission::ReadWrite).unwrap();
        assert_eq!(obj.size(), 1 << 21);
        assert_eq!(obj.fd_kind(), FdKind::CudaVidmem);
        assert_eq!(obj.backend(), Some(BackendKind::CudaVidmem));
        assert!(!obj.is_dma_buf() && obj.memfd().is_none());
        let why = obj.cpu_mappable().unwrap_err();
        assert!(why.contains("cuda-vidmem"), "{why}");
        assert!(obj.map_read().is_err());
        let ro = obj.dup_with(Permission::ReadOnly).unwrap();
        assert_eq!(ro.fd_kind(), FdKind::CudaVidmem);
        assert_eq!(ro.permission(), Permission::ReadOnly);
    }
}
