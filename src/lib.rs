//! unibuf: an open NvSciBuf for upstream Linux.
//!
//! Several accessors (a V4L2 camera, a DRM display, a GPU, a VFIO-driven PCIe device, the CPU) each
//! describe what they need of a buffer in an attribute list ([`attr`]). unibuf reconciles the lists
//! into one layout ([`reconcile`], [`layout`]), allocates one buffer that satisfies all of them from
//! a memory backend ([`backend`]: DMA-BUF heaps, udmabuf, DRM dumb buffers, memfd), hands it out as a
//! dma-buf fd ([`object`]), maps it for the CPU bracketed by the `DMA_BUF_IOCTL_SYNC` cache ioctls
//! ([`map`]), and shares lists and objects across processes over Unix sockets ([`ipc`]).
//!
//! Raw kernel uapi lives in [`sys`]; every other module speaks in safe types.

pub mod attr;
pub mod backend;
pub mod devices;
pub mod error;
pub mod fd;
pub mod inspect;
pub mod interop;
pub mod ipc;
pub mod layout;
pub mod map;
mod model;
pub mod object;
pub mod reconcile;
pub mod stream;
pub mod sys;

pub use error::{Errno, Error, Result};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
