//! The few DRM uapi values the backends need beyond what the `drm` crate names
//! (`include/uapi/drm/drm.h`).

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
}
