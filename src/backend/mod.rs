//! Memory backends: DMA-BUF heaps (system, CMA), udmabuf, DRM dumb buffers, memfd.
//!
//! - [`Backends::discover`] finds what this machine has and what this process can open (and why
//!   not: `EACCES` names the udev rules); its `Display` is a readable report.
//! - [`Backends::choose`] picks the backend for a [`MemoryRequirement`] and records why
//!   ([`Choice`]); the rules are in [`choose`](mod@choose).
//! - [`Backends::allocate`] allocates one buffer for an [`AllocRequest`] and names it with
//!   `DMA_BUF_SET_NAME` right away; [`Backends::allocate_n`] allocates several from one request.
//! - [`global`] is a process-wide [`Backends`], discovered on first use; objects allocate from it
//!   unless given another.
//!
//! Most users go through [`crate::object::Object`], which wraps an [`Allocation`] with its
//! reconciled list and a permission.

mod alloc;
pub mod choose;
pub mod discover;
mod request;

pub use alloc::{fd_size, fit_name, page_round, page_size, set_name, MAX_NAME_LEN};
pub use choose::Choice;
pub use discover::{Access, Backends, DrmInfo, HeapClass, HeapInfo, UdmabufInfo};
pub use request::{AllocRequest, MemoryRequirement};

use crate::attr::BackendKind;
use crate::error::{Error, Result};
use rustix::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

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
    /// The name given to the buffer (`DMA_BUF_SET_NAME`; `unibuf:<name>` for the memfd).
    pub name: String,
    /// Which backend and why.
    pub choice: Choice,
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

fn check_request(req: &AllocRequest) -> Result<u64> {
    if req.alignment != 0 && !req.alignment.is_power_of_two() {
        return Err(Error::InvalidArgument(format!(
            "alignment {} is not a power of two",
            req.alignment
        )));
    }
    alloc::page_round(req.size)
}

impl Backends {
    /// Chooses a backend for `req.memory` and allocates one buffer from it.
    pub fn allocate(&self, req: &AllocRequest) -> Result<Allocation> {
        let choice = self.choose(&req.memory)?;
        let name = self.buffer_name(req)?;
        self.alloc_inner(choice, req, name)
    }

    /// Like [`Backends::allocate`], taking the request by value (its name is moved, not copied:
    /// the path [`crate::object::Object::allocate`] takes).
    pub fn allocate_owned(&self, mut req: AllocRequest) -> Result<Allocation> {
        let choice = self.choose(&req.memory)?;
        let name = if req.name.is_empty() || req.name.len() > MAX_NAME_LEN {
            self.buffer_name(&req)?
        } else {
            fit_name(&req.name)?;
            std::mem::take(&mut req.name)
        };
        self.alloc_inner(choice, &req, name)
    }

    fn buffer_name(&self, req: &AllocRequest) -> Result<String> {
        Ok(if req.name.is_empty() {
            derived_name()
        } else {
            fit_name(&req.name)?.to_string()
        })
    }

    /// Allocates `n` buffers for one request (one choice for all; each gets its own name:
    /// `<name>-<i>`, or derived names). On an error the buffers made so far are freed.
    pub fn allocate_n(&self, req: &AllocRequest, n: usize) -> Result<Vec<Allocation>> {
        let choice = self.choose(&req.memory)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let mut r = req.clone();
            if !req.name.is_empty() {
                let suffix = format!("-{i}");
                // Keep the suffix visible when the name is cut to 31 bytes.
                let base = fit_name(&req.name)?;
                let mut end = base.len().min(MAX_NAME_LEN - suffix.len());
                while !base.is_char_boundary(end) {
                    end -= 1;
                }
                r.name = format!("{}{suffix}", &base[..end]);
            }
            out.push(self.allocate_as(&choice, &r)?);
        }
        Ok(out)
    }

    /// Allocates one buffer from the backend of `choice` (made by [`Backends::choose`] on this
    /// same `Backends`).
    pub fn allocate_as(&self, choice: &Choice, req: &AllocRequest) -> Result<Allocation> {
        let name = self.buffer_name(req)?;
        self.alloc_inner(choice.clone(), req, name)
    }

    fn alloc_inner(&self, choice: Choice, req: &AllocRequest, name: String) -> Result<Allocation> {
        let len = check_request(req)?;
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
                            && choice.device.as_deref().is_none_or(|d| d == h.path)
                    })
                    .ok_or_else(|| missing("the chosen DMA-BUF heap"))?;
                let heap_fd = heap.fd.as_ref().ok_or_else(|| missing("the heap"))?;
                let path = heap.path.to_string_lossy();
                let fd = alloc::heap_alloc(heap_fd.as_fd(), &path, len)?;
                (fd, None, len)
            }
            BackendKind::Udmabuf => {
                let dev = self
                    .udmabuf
                    .fd
                    .as_ref()
                    .ok_or_else(|| missing("/dev/udmabuf"))?;
                let path = self.udmabuf.path.to_string_lossy();
                let (fd, memfd) = alloc::udmabuf_alloc(dev.as_fd(), &path, len, &name)?;
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
            set_name(fd.as_fd(), &name)?;
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
