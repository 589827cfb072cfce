//! Memory backends: DMA-BUF heaps (system, CMA), udmabuf, DRM dumb buffers, memfd.
//!
//! - [`Backends::discover`] finds what this machine has and what this process can open (and why
//!   not: `EACCES` names the udev rules); its `Display` is a readable report.
//! - [`Backends::choose`] picks the backend for a [`MemoryRequirement`] and records why
//!   ([`Choice`]); the rules are in [`choose`](mod@choose).
//! - [`Backends::allocate`] allocates one buffer for an [`AllocRequest`] and names it with
//!   `DMA_BUF_SET_NAME` right away; [`Backends::allocate_n`] allocates several from one request.
//! - [`Backends::plan`] is the dry run: which backend, why, and whether this machine can
//!   allocate a list now, without allocating ([`plan`](mod@plan)).
//! - [`global`] is a process-wide [`Backends`], discovered on first use; objects allocate from it
//!   unless given another.
//!
//! Most users go through [`crate::object::Object`], which wraps an [`Allocation`] with its
//! reconciled list and a permission.

mod alloc;
pub mod choose;
pub mod discover;
pub mod plan;
mod request;

pub use alloc::{cut_name, fd_size, fit_name, page_round, page_size, set_name, MAX_NAME_LEN};
pub use choose::Choice;
pub use discover::{Access, Backends, Discovery, DrmInfo, HeapClass, HeapInfo, UdmabufInfo};
pub use plan::{Check, Plan};
pub use request::{AllocRequest, MemoryRequirement};

use crate::attr::BackendKind;
use crate::error::{Error, Result};
use rustix::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One allocated buffer, before it becomes an [`crate::object::Object`].
#[derive(Debug)]
pub struct Allocation {
    /// The dma-buf (for [`BackendKind::Memfd`]: the memfd itself), opened read-write.
    pub fd: OwnedFd,
    /// The memfd behind a udmabuf (sealed `F_SEAL_SHRINK`); `None` for heaps, DRM dumb buffers
    /// and [`BackendKind::Memfd`] (whose `fd` is the memfd).
    pub memfd: Option<OwnedFd>,
    /// Bytes allocated (the request's size rounded up to pages; a DRM dumb buffer may be larger).
    pub size: u64,
    /// The name given to the buffer (`DMA_BUF_SET_NAME`; `unibuf:<name>` for the memfd). Shared:
    /// every buffer of one reconciled list can carry the same string without copying it.
    pub name: Arc<str>,
    /// Which backend and why; one `Choice` is shared by every allocation for the same
    /// requirement from the same [`Backends`] ([`Backends::choose_shared`]).
    pub choice: Arc<Choice>,
}

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

#[inline]
fn check_size(size: u64, alignment: u64) -> Result<u64> {
    if alignment != 0 && !alignment.is_power_of_two() {
        return Err(Error::InvalidArgument(format!(
            "alignment {alignment} is not a power of two"
        )));
    }
    alloc::page_round(size)
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
    /// Chooses a backend for `req.memory` and allocates one buffer from it.
    pub fn allocate(&self, req: &AllocRequest) -> Result<Allocation> {
        let choice = self.choose_shared(&req.memory)?;
        let name = self.buffer_name(&req.name)?;
        self.alloc_inner(choice, req.size, req.alignment, name)
    }

    /// Like [`Backends::allocate`], taking the request by value.
    pub fn allocate_owned(&self, req: AllocRequest) -> Result<Allocation> {
        self.allocate(&req)
    }

    /// Allocates one buffer of `size` bytes (aligned to `alignment`, a power of two or 0) for
    /// `memory`, named `name` (cut to 31 bytes; an empty name gets a derived one): what
    /// [`Backends::allocate`] does, without building an [`AllocRequest`] and without copying a
    /// name that already fits. The path [`crate::object::Object::allocate`] takes.
    #[inline]
    pub fn allocate_for(
        &self,
        memory: &MemoryRequirement,
        size: u64,
        alignment: u64,
        name: Arc<str>,
    ) -> Result<Allocation> {
        let choice = self.choose_shared(memory)?;
        let name = if name.is_empty() {
            derived_name().into()
        } else {
            let fitted = fit_name(&name)?;
            if fitted.len() == name.len() {
                name
            } else {
                fitted.into()
            }
        };
        self.alloc_inner(choice, size, alignment, name)
    }

    fn buffer_name(&self, name: &str) -> Result<Arc<str>> {
        Ok(if name.is_empty() {
            derived_name().into()
        } else {
            fit_name(name)?.into()
        })
    }

    /// Allocates `n` buffers for one request (one choice for all; each gets its own name:
    /// `<name>-<i>`, or derived names). On an error the buffers made so far are freed.
    pub fn allocate_n(&self, req: &AllocRequest, n: usize) -> Result<Vec<Allocation>> {
        let choice = self.choose_shared(&req.memory)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let name = if req.name.is_empty() {
                derived_name().into()
            } else {
                let suffix = format!("-{i}");
                // Keep the suffix visible when the name is cut to 31 bytes.
                let base = fit_name(&req.name)?;
                let mut end = base.len().min(MAX_NAME_LEN - suffix.len());
                while !base.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}{suffix}", &base[..end]).into()
            };
            out.push(self.alloc_inner(choice.clone(), req.size, req.alignment, name)?);
        }
        Ok(out)
    }

    /// Allocates one buffer from the backend of `choice` (made by [`Backends::choose`] on this
    /// same `Backends`).
    pub fn allocate_as(&self, choice: &Choice, req: &AllocRequest) -> Result<Allocation> {
        let name = self.buffer_name(&req.name)?;
        self.alloc_inner(Arc::new(choice.clone()), req.size, req.alignment, name)
    }

    fn alloc_inner(
        &self,
        choice: Arc<Choice>,
        size: u64,
        alignment: u64,
        name: Arc<str>,
    ) -> Result<Allocation> {
        let len = check_size(size, alignment)?;
        let missing = |what: &str| Error::Unavailable {
            what: what.to_string(),
            why: self.why_not(choice.backend),
        };
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
                let size = fd_size(&fd, &path)?;
                (fd, None, size)
            }
            BackendKind::Memfd => {
                let memfd = alloc::memfd_alloc(len, &name)?;
                (memfd, None, len)
            }
        };
        if choice.backend.is_dma_buf() {
            // Every path here passed the name through `fit_name` (or made it).
            alloc::set_fitted_name(fd.as_fd(), &name)?;
        }
        Ok(Allocation {
            fd,
            memfd,
            size,
            name,
            choice,
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
