//! Memory backends: DMA-BUF heaps (system, CMA), udmabuf, DRM dumb buffers, memfd.
//!
//! (Placeholder: the backend work fills this module.)

mod request;

pub use request::{AllocRequest, MemoryRequirement};
