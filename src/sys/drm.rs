//! The few DRM uapi values the backends need beyond what the `drm` crate names
//! (`include/uapi/drm/drm.h`), and the out-fence slot of an atomic commit.
//!
//! The DRM ioctls themselves are issued by the `drm` crate (drm-ffi), whose functions are already
//! one safe call per ioctl.

use rustix::fd::{FromRawFd, OwnedFd};

/// `DRM_PRIME_CAP_IMPORT`: bit of `DRM_CAP_PRIME` saying the driver imports dma-bufs.
pub const DRM_PRIME_CAP_IMPORT: u64 = 0x1;
/// `DRM_PRIME_CAP_EXPORT`: bit of `DRM_CAP_PRIME` saying the driver exports GEM objects as dma-bufs.
pub const DRM_PRIME_CAP_EXPORT: u64 = 0x2;
/// `DRM_CLOEXEC` flag of `DRM_IOCTL_PRIME_HANDLE_TO_FD` (equal to `O_CLOEXEC`).
pub const DRM_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
/// `DRM_RDWR` flag of `DRM_IOCTL_PRIME_HANDLE_TO_FD` (equal to `O_RDWR`): the exported fd may be
/// mapped writable.
pub const DRM_RDWR: u32 = libc::O_RDWR as u32;
/// Where DRM device nodes appear.
pub const DRM_DEV_DIR: &str = "/dev/dri";

/// Where an atomic commit's `WRITEBACK_OUT_FENCE_PTR` (or a CRTC's `OUT_FENCE_PTR`) property
/// points: the kernel writes the new sync_file fd into it.
///
/// The slot holds -1 until the kernel writes: `drm_mode_atomic_ioctl` stores the reserved fd
/// number while preparing the commit and, when the commit fails or is `TEST_ONLY`, releases it
/// and stores -1 again (`complete_signaling` in `drm_atomic_uapi.c`). After the commit ioctl has
/// returned, a non-negative value is therefore an fd installed for this process, which
/// [`OutFenceSlot::take`] owns once.
#[derive(Debug)]
pub struct OutFenceSlot(Box<i32>);

impl Default for OutFenceSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl OutFenceSlot {
    /// An empty slot (-1), on the heap so its address does not move.
    pub fn new() -> Self {
        OutFenceSlot(Box::new(-1))
    }

    /// The property value to commit: the slot's address. The slot must outlive the commit
    /// ioctl (keep it until [`OutFenceSlot::take`]).
    pub fn property_value(&mut self) -> u64 {
        (&mut *self.0 as *mut i32) as u64
    }

    /// After the commit ioctl returned: the fd the kernel installed, if it wrote one. The slot
    /// is empty again afterwards.
    pub fn take(&mut self) -> Option<OwnedFd> {
        let fd = std::mem::replace(&mut *self.0, -1);
        if fd < 0 {
            return None;
        }
        // SAFETY: only the kernel writes the slot besides us (we store -1), and after the commit
        // ioctl returns a non-negative value there is a sync_file fd it installed for this
        // process (see the type's documentation); the value was replaced by -1 above, so it is
        // owned exactly once.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_match_kernel_headers() {
        // drm.h: #define DRM_CLOEXEC O_CLOEXEC, #define DRM_RDWR O_RDWR (x86_64/aarch64 values).
        assert_eq!(DRM_CLOEXEC, 0o2000000);
        assert_eq!(DRM_RDWR, 0o2);
        assert_eq!(DRM_PRIME_CAP_EXPORT, 2);
    }

    #[test]
    fn an_untouched_out_fence_slot_yields_nothing() {
        let mut s = OutFenceSlot::new();
        assert_ne!(s.property_value(), 0);
        assert!(s.take().is_none());
        assert!(s.take().is_none());
    }
}
