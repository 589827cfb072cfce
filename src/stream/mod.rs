//! Streams: buffer pools, dma-buf fences and producer/consumer queues across processes.
//!
//! - [`fence`]: [`Fence`], an owned sync_file: exported from a dma-buf
//!   (`DMA_BUF_IOCTL_EXPORT_SYNC_FILE`), imported into one (`DMA_BUF_IOCTL_IMPORT_SYNC_FILE`),
//!   merged, inspected, waited for with a timeout; on kernels before 6.0 the wait polls the
//!   dma-buf itself ([`fence::WaitMethod`] says which).
//! - [`pool`]: [`Pool`], N objects of one reconciled list, acquired and released without
//!   allocating; fence-aware, growing to a bound, shrinking when idle.
//! - [`ipc`]: [`Producer`] and [`Consumer`], a stream over [`crate::ipc::Endpoint`]s (wire
//!   kinds `StreamAttach`, `StreamFrame`, `StreamRelease`, `StreamRetire`, wire minor 1).

pub mod fence;
pub mod ipc;
pub mod pool;

pub use fence::{Access, Fence, FenceInfo, FenceStatus, WaitMethod};
pub use ipc::{Consumer, ConsumerId, Frame, Producer, StreamPolicy};
pub use pool::Pool;

/// `CLOCK_MONOTONIC` now, in ns: the clock frames are stamped with (the same in every process,
/// and the clock of V4L2 buffer timestamps and DRM vblank events).
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
