//! Memory backends: DMA-BUF heaps (system, CMA), udmabuf, DRM dumb buffers, memfd, and GPU video
//! memory from CUDA (`cuda-vidmem`, feature `cuda`, whose driver calls are in `backend::cuda`).
//!
//! - [`Backends::discover`] finds what this machine has and what this process can open (and why
//!   not: `EACCES` names the udev rules); its `Display` is a readable report.
//! - [`Backends::choose`] picks the backend for a [`MemoryRequirement`] and records why
//!   ([`Choice`]); the rules are in [`choose`](mod@choose).
//! - Allocation goes through [`crate::object::Object::allocator`] (one route for one buffer and
//!   for N): the choice, the size and base-alignment rules below, the allocator of the chosen
//!   backend, and the name (`DMA_BUF_SET_NAME` right away).
//! - [`Backends::plan`] is the dry run: which backend, why, and whether this machine can
//!   allocate a list now, without allocating ([`plan`](mod@plan)).
//! - [`global`] is a process-wide [`Backends`], discovered on first use; objects allocate from it
//!   unless given another.
//!
//! # Base alignment
//!
//! A reconciled base alignment (`raw.align`, `image.base_align`, `tensor.base_align`) is honoured
//! or refused, never dropped ([`guaranteed_alignment`]):
//!
//! - up to the page size, by every backend: every buffer starts on a page in every address
//!   space (its physical pages, its CPU mapping by `mmap`, its IOMMU mappings);
//! - beyond the page size, only by the CMA heap, whose buffer is physically contiguous and aligned
//!   to `PAGE_SIZE << min(get_order(len), CONFIG_CMA_ALIGNMENT)` (drivers/dma-buf/heaps/cma_heap.c).
//!   `CONFIG_CMA_ALIGNMENT` is not visible from user space and may be as low as 2 (Kconfig range
//!   2..12 since Linux 5.10, default 8), so unibuf counts on order 2: up to 4 pages (16 KiB with 4
//!   KiB pages), the allocation being made at least as large as the alignment;
//! - anything else fails with [`Error::Unavailable`] naming the key, the value and the backend.
//!   The system heap, udmabuf, DRM dumb buffers and memfds are made of single pages, and their CPU
//!   mapping is only page-aligned. A device behind an IOMMU sees the buffer at an IOVA its driver
//!   (or, with VFIO, the caller of the DMA map) chooses: that alignment is the importer's choice,
//!   not the buffer's.

mod alloc;
pub mod choose;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod discover;
pub mod plan;
mod request;

mod name;

pub use alloc::{page_round, page_size, set_name};
pub use choose::Choice;
pub use discover::{Access, Backends, Discovery, DrmInfo, HeapClass, HeapInfo, UdmabufInfo};
pub use name::{BufferName, MAX_NAME_LEN};
pub use plan::{Check, Plan};
pub use request::{AllocRequest, MemoryRequirement};

use crate::attr::BackendKind;
use crate::error::{Error, Result};
use rustix::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One allocated buffer, before it becomes an [`crate::object::Object`]. Crate-private: only
/// the allocators make one, so an object's fds are always what its facts say (a memfd sealed
/// `F_SEAL_SHRINK` and as large as `size`, a dma-buf of `size` bytes).
#[derive(Debug)]
pub(crate) struct Allocation {
    /// The dma-buf (for [`BackendKind::Memfd`]: the memfd itself), opened read-write.
    pub(crate) fd: OwnedFd,
    /// The memfd behind a udmabuf (sealed `F_SEAL_SHRINK`); `None` for heaps, DRM dumb buffers
    /// and [`BackendKind::Memfd`] (whose `fd` is the memfd).
    pub(crate) memfd: Option<OwnedFd>,
    /// Bytes allocated (the request's size rounded up to pages; a DRM dumb buffer may be larger).
    pub(crate) size: u64,
    /// The name given to the buffer (`DMA_BUF_SET_NAME`; `unibuf:<name>` for the memfd).
    pub(crate) name: BufferName,
    /// Which backend and why; one `Choice` is shared by every allocation for the same
    /// requirement from the same [`Backends`] ([`Backends::choose_shared`]).
    pub(crate) choice: Arc<Choice>,
    /// What must live as long as the buffer besides its fds (`cuda-vidmem`: the allocation's
    /// CUDA handle); shared by every handle of the object.
    pub(crate) keep: Option<Keep>,
}

/// Something an allocation keeps alive for as long as any handle of its object lives.
pub(crate) type Keep = Arc<dyn std::fmt::Debug + Send + Sync>;

static GLOBAL: OnceLock<Backends> = OnceLock::new();

/// The process-wide [`Backends`], discovered (and its devices opened) on first use.
pub fn global() -> &'static Backends {
    GLOBAL.get_or_init(Backends::discover)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A name for a buffer whose request gave none: `unibuf-<pid>-<n>`.
fn derived_name() -> String {
    format!(
        "unibuf-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// `a == b` for paths, trying the plain byte comparison first: a choice's device is a clone of the
/// discovered path, so the component-wise comparison is only needed for hand-made choices.
#[inline]
fn same_path(a: &std::path::Path, b: &std::path::Path) -> bool {
    a.as_os_str() == b.as_os_str() || a == b
}

/// The CMA heap's alignment order that every kernel guarantees: the floor of
/// `CONFIG_CMA_ALIGNMENT`'s Kconfig range (2..12 since Linux 5.10).
const CMA_ALIGNMENT_ORDER_FLOOR: u32 = 2;

/// The base alignment (bytes) that `backend` guarantees for a buffer of `len` bytes (see the
/// [module documentation](self#base-alignment)).
pub fn guaranteed_alignment(backend: BackendKind, len: u64) -> u64 {
    let page = page_size();
    match backend {
        BackendKind::CmaHeap => {
            // get_order(len): pages rounded up to a power of two.
            let pages = len.div_ceil(page).max(1);
            let order = pages.next_power_of_two().trailing_zeros();
            page << order.min(CMA_ALIGNMENT_ORDER_FLOOR)
        }
        _ => page,
    }
}

/// The number of bytes to allocate from `backend` for `size` bytes aligned to `alignment` (a
/// power of two, or 0 for none): `size` rounded up to pages, and for the CMA heap at least
/// `alignment` (its alignment follows the size). `Err(guaranteed)` when the backend cannot
/// guarantee `alignment` for any size; `guaranteed` is the most it can.
pub(crate) fn placement(
    backend: BackendKind,
    size: u64,
    alignment: u64,
) -> Result<std::result::Result<u64, u64>> {
    if alignment != 0 && !alignment.is_power_of_two() {
        return Err(Error::InvalidArgument(format!(
            "alignment {alignment} is not a power of two"
        )));
    }
    let len = alloc::page_round(size)?;
    if alignment <= page_size() {
        return Ok(Ok(len));
    }
    let len = len.max(alignment);
    let g = guaranteed_alignment(backend, len);
    Ok(if g >= alignment { Ok(len) } else { Err(g) })
}

/// A CMA heap's `ENOMEM` names the size asked and the CMA totals of `/proc/meminfo`: CMA
/// exhaustion (or fragmentation) is the usual cause, and the numbers tell which.
fn explain_cma_enomem(e: Error, class: HeapClass, len: u64) -> Error {
    match e {
        Error::Sys { op, target, errno }
            if class == HeapClass::Contiguous && errno.0 == rustix::io::Errno::NOMEM =>
        {
            let cma = match plan::read_cma_meminfo() {
                Some((total, free)) => format!(
                    "CmaTotal {} kB, CmaFree {} kB{}",
                    total / 1024,
                    free / 1024,
                    if free >= len {
                        ": enough is free but not contiguous (fragmented)"
                    } else {
                        ""
                    }
                ),
                None => format!("{} reports no CMA totals", plan::MEMINFO),
            };
            Error::Sys {
                op,
                target: format!("{target} ({len} bytes asked; {cma})"),
                errno,
            }
        }
        e => e,
    }
}

impl Backends {
    /// Allocates one buffer of `len` bytes (from [`placement`]) from the backend of `choice`
    /// (made by [`Backends::choose_shared`] on this same `Backends`), named `name`.
    pub(crate) fn alloc_one(
        &self,
        choice: Arc<Choice>,
        len: u64,
        name: BufferName,
    ) -> Result<Allocation> {
        let name = if name.is_empty() {
            BufferName::new(&derived_name())?
        } else {
            name
        };
        self.alloc_inner(choice, len, name)
    }

    fn alloc_inner(&self, choice: Arc<Choice>, len: u64, name: BufferName) -> Result<Allocation> {
        let missing = |what: &str| Error::Unavailable {
            what: what.to_string(),
            why: self.why_not(choice.backend),
        };
        #[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
        let mut keep: Option<Keep> = None;
        let (fd, memfd, size) = match choice.backend {
            BackendKind::SystemHeap | BackendKind::CmaHeap => {
                let class = if choice.backend == BackendKind::SystemHeap {
                    HeapClass::System
                } else {
                    HeapClass::Contiguous
                };
                let heap = self
                    .heaps
                    .iter()
                    .find(|h| {
                        h.class == class
                            && h.fd.is_some()
                            && choice
                                .device
                                .as_deref()
                                .is_none_or(|d| same_path(d, &h.path))
                    })
                    .ok_or_else(|| missing("the chosen DMA-BUF heap"))?;
                let heap_fd = heap.fd.as_ref().ok_or_else(|| missing("the heap"))?;
                let fd = alloc::heap_alloc(heap_fd.as_fd(), &heap.path, len)
                    .map_err(|e| explain_cma_enomem(e, class, len))?;
                (fd, None, len)
            }
            BackendKind::Udmabuf => {
                let dev = self
                    .udmabuf
                    .fd
                    .as_ref()
                    .ok_or_else(|| missing("/dev/udmabuf"))?;
                let (fd, memfd) =
                    alloc::udmabuf_alloc(dev.as_fd(), &self.udmabuf.path, len, &name)?;
                (fd, Some(memfd), len)
            }
            BackendKind::DrmDumb => {
                let d = self
                    .drm
                    .iter()
                    .find(|d| {
                        d.card.is_some() && choice.device.as_deref().is_none_or(|p| p == d.path)
                    })
                    .ok_or_else(|| missing("a DRM node that makes dumb buffers"))?;
                let card = d.card.as_ref().ok_or_else(|| missing("the DRM node"))?;
                let path = d.path.to_string_lossy();
                let fd = alloc::drm_dumb_alloc(card, &path, len)?;
                let size = crate::fd::fd_size(&fd, &path)?;
                (fd, None, size)
            }
            BackendKind::Memfd => {
                let memfd = alloc::memfd_alloc(len, &name)?;
                (memfd, None, len)
            }
            #[cfg(feature = "cuda")]
            BackendKind::CudaVidmem => {
                let gpu = choice
                    .gpu
                    .ok_or_else(|| missing("the GPU of a cuda-vidmem choice"))?;
                let (fd, size, alloc) = cuda::allocate(gpu, len)?;
                keep = Some(Arc::new(alloc));
                (fd, None, size)
            }
            #[cfg(not(feature = "cuda"))]
            BackendKind::CudaVidmem => {
                return Err(missing("the cuda-vidmem backend (feature cuda)"))
            }
        };
        if choice.backend.is_dma_buf() {
            alloc::set_name(fd.as_fd(), &name)?;
        }
        Ok(Allocation {
            fd,
            memfd,
            size,
            name,
            choice,
            keep,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CMA heap's ENOMEM says how much was asked and what CMA had; other errors pass as
    /// they are.
    #[test]
    fn cma_enomem_names_size_and_cma_totals() {
        let e = Error::sys(
            "DMA_HEAP_IOCTL_ALLOC",
            "/dev/dma_heap/reserved",
            rustix::io::Errno::NOMEM,
        );
        let t = explain_cma_enomem(e, HeapClass::Contiguous, 1 << 27).to_string();
        assert!(t.contains("ENOMEM"), "{t}");
        assert!(t.contains("134217728 bytes asked"), "{t}");
        assert!(t.contains("CmaTotal") || t.contains("no CMA totals"), "{t}");
        let e = Error::sys(
            "DMA_HEAP_IOCTL_ALLOC",
            "/dev/dma_heap/system",
            rustix::io::Errno::NOMEM,
        );
        let t = explain_cma_enomem(e, HeapClass::System, 4096).to_string();
        assert!(!t.contains("bytes asked"), "{t}");
    }
}
