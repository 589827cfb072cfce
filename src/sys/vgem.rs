//! `include/uapi/drm/vgem_drm.h`: vgem's fences, which a test attaches to a buffer and signals
//! (the kernel's IGT `dmabuf_sync_file` tests use them). A vgem fence that is not signalled
//! signals by itself after 10 s (`VGEM_FENCE_TIMEOUT`).

use super::retry_eintr;
use rustix::fd::BorrowedFd;
use rustix::io::Result;
use rustix::ioctl::{ioctl, opcode, Opcode, Setter, Updater};

/// `struct drm_vgem_fence_attach`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VgemFenceAttach {
    /// GEM handle of the buffer.
    pub handle: u32,
    /// [`VGEM_FENCE_WRITE`] for a write (exclusive) fence, 0 for a read fence.
    pub flags: u32,
    /// Returned: the fence's id, for [`fence_signal`].
    pub out_fence: u32,
    /// Must be 0.
    pub pad: u32,
}

/// `struct drm_vgem_fence_signal`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VgemFenceSignal {
    /// The fence id from [`fence_attach`].
    pub fence: u32,
    /// Must be 0.
    pub flags: u32,
}

/// `VGEM_FENCE_WRITE`: the fence is a write fence.
pub const VGEM_FENCE_WRITE: u32 = 0x1;

/// `DRM_IOCTL_VGEM_FENCE_ATTACH`: `DRM_IOWR(DRM_COMMAND_BASE + 1, struct drm_vgem_fence_attach)`.
pub const DRM_IOCTL_VGEM_FENCE_ATTACH: Opcode = opcode::read_write::<VgemFenceAttach>(b'd', 0x41);
/// `DRM_IOCTL_VGEM_FENCE_SIGNAL`: `DRM_IOW(DRM_COMMAND_BASE + 2, struct drm_vgem_fence_signal)`.
pub const DRM_IOCTL_VGEM_FENCE_SIGNAL: Opcode = opcode::write::<VgemFenceSignal>(b'd', 0x42);

/// `DRM_IOCTL_VGEM_FENCE_ATTACH` on a vgem node: attaches a new pending fence to the GEM buffer
/// `handle` (a write fence with `write`) and returns its id. The kernel answers `ENOENT` for an
/// unknown handle, `EBUSY` when a conflicting fence is still pending (a write fence while any
/// fence is, a read fence while a write fence is), `EINVAL` for bad flags.
pub fn fence_attach(vgem: BorrowedFd<'_>, handle: u32, write: bool) -> Result<u32> {
    let mut arg = VgemFenceAttach {
        handle,
        flags: if write { VGEM_FENCE_WRITE } else { 0 },
        out_fence: 0,
        pad: 0,
    };
    retry_eintr(|| {
        // SAFETY: the opcode reads and writes a `struct drm_vgem_fence_attach`, which
        // `VgemFenceAttach` mirrors (size test below); `arg` is live and exclusive for the call.
        unsafe {
            ioctl(
                vgem,
                Updater::<DRM_IOCTL_VGEM_FENCE_ATTACH, _>::new(&mut arg),
            )
        }
    })?;
    Ok(arg.out_fence)
}

/// `DRM_IOCTL_VGEM_FENCE_SIGNAL`: signals the fence `fence` (and forgets its id). The kernel
/// answers `ENOENT` for an unknown id, `ETIMEDOUT` when it had already signalled by timing out.
pub fn fence_signal(vgem: BorrowedFd<'_>, fence: u32) -> Result<()> {
    retry_eintr(|| {
        // SAFETY: the opcode reads a `struct drm_vgem_fence_signal`, which `VgemFenceSignal`
        // mirrors (size test below); the kernel only reads it.
        unsafe {
            ioctl(
                vgem,
                Setter::<DRM_IOCTL_VGEM_FENCE_SIGNAL, _>::new(VgemFenceSignal { fence, flags: 0 }),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_and_layouts_match_kernel_headers() {
        assert_eq!(std::mem::size_of::<VgemFenceAttach>(), 16);
        assert_eq!(std::mem::size_of::<VgemFenceSignal>(), 8);
        assert_eq!(DRM_IOCTL_VGEM_FENCE_ATTACH as u64, 0xc010_6441);
        assert_eq!(DRM_IOCTL_VGEM_FENCE_SIGNAL as u64, 0x4008_6442);
    }
}
