//! `include/uapi/linux/sync_file.h`: merging sync_files and asking what they hold.
//!
//! A sync_file is an fd holding one or more dma-fences; it polls readable (`POLLIN`) once all of
//! them have signalled. Waiting is a `poll` (see [`crate::stream::fence`]); no ioctl is needed.

use super::{own_fd, retry_eintr};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::io::{Errno, Result};
use rustix::ioctl::{ioctl, opcode, Opcode, Updater};

/// Length of the name fields, including the NUL.
pub const SYNC_NAME_LEN: usize = 32;

/// `struct sync_merge_data`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SyncMergeData {
    /// Name of the new sync_file.
    pub name: [u8; SYNC_NAME_LEN],
    /// The second sync_file to merge (the first is the ioctl's fd).
    pub fd2: i32,
    /// Returned: the new sync_file fd.
    pub fence: i32,
    /// Must be 0.
    pub flags: u32,
    /// Must be 0.
    pub pad: u32,
}

/// `struct sync_fence_info`: one fence of a sync_file.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SyncFenceInfo {
    /// The fence's timeline name.
    pub obj_name: [u8; SYNC_NAME_LEN],
    /// The fence's driver name.
    pub driver_name: [u8; SYNC_NAME_LEN],
    /// 1 signalled, 0 pending, negative: signalled with that error.
    pub status: i32,
    /// Fence flags (none defined for userspace).
    pub flags: u32,
    /// When it signalled (`CLOCK_MONOTONIC` ns), 0 while pending.
    pub timestamp_ns: u64,
}

impl Default for SyncFenceInfo {
    fn default() -> Self {
        SyncFenceInfo {
            obj_name: [0; SYNC_NAME_LEN],
            driver_name: [0; SYNC_NAME_LEN],
            status: 0,
            flags: 0,
            timestamp_ns: 0,
        }
    }
}

/// `struct sync_file_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SyncFileInfo {
    /// The sync_file's name.
    pub name: [u8; SYNC_NAME_LEN],
    /// 1 all signalled, 0 some pending, negative: an error.
    pub status: i32,
    /// Must be 0 on input.
    pub flags: u32,
    /// In: room in the array `sync_fence_info` points to (0: ask the count); out: the count.
    pub num_fences: u32,
    /// Must be 0.
    pub pad: u32,
    /// Pointer to an array of `num_fences` [`SyncFenceInfo`].
    pub sync_fence_info: u64,
}

/// `SYNC_IOC_MERGE`: `_IOWR('>', 3, struct sync_merge_data)`.
pub const SYNC_IOC_MERGE: Opcode = opcode::read_write::<SyncMergeData>(b'>', 3);
/// `SYNC_IOC_FILE_INFO`: `_IOWR('>', 4, struct sync_file_info)`.
pub const SYNC_IOC_FILE_INFO: Opcode = opcode::read_write::<SyncFileInfo>(b'>', 4);

/// Copies `name` into a NUL-terminated name field, cut at 31 bytes.
pub fn name_field(name: &str) -> [u8; SYNC_NAME_LEN] {
    let mut out = [0u8; SYNC_NAME_LEN];
    let n = name.len().min(SYNC_NAME_LEN - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// The text of a NUL-terminated name field (lossy UTF-8).
pub fn field_str(f: &[u8; SYNC_NAME_LEN]) -> String {
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from_utf8_lossy(&f[..end]).into_owned()
}

/// `SYNC_IOC_MERGE`: a new sync_file named `name` holding the fences of `a` and `b` (signalled
/// when both are). The kernel answers `EINVAL` when `b` is not a sync_file, `ENOTTY` when `a`
/// is not one, `EMFILE`/`ENOMEM`.
pub fn merge(a: BorrowedFd<'_>, b: BorrowedFd<'_>, name: &str) -> Result<OwnedFd> {
    let mut arg = SyncMergeData {
        name: name_field(name),
        fd2: b.as_raw_fd(),
        fence: -1,
        flags: 0,
        pad: 0,
    };
    retry_eintr(|| {
        // SAFETY: SYNC_IOC_MERGE reads and writes a `struct sync_merge_data`, which
        // `SyncMergeData` mirrors (size test below); `arg` is live and exclusive for the call and
        // its `fd2` is borrowed for it.
        unsafe { ioctl(a, Updater::<SYNC_IOC_MERGE, _>::new(&mut arg)) }
    })?;
    if arg.fence < 0 {
        return Err(Errno::INVAL);
    }
    // SAFETY: on success the kernel installed the new sync_file fd in `arg.fence`.
    Ok(unsafe { own_fd(arg.fence) })
}

/// `SYNC_IOC_FILE_INFO`: the sync_file's name and status, and up to `fences.len()` of its fences
/// written into `fences`; `info.num_fences` is how many it holds. With an empty `fences` only the
/// count is asked (the kernel then writes no fence). The kernel answers `EINVAL` when `fences`
/// is shorter than the count (and not empty), `ENOTTY` when `fd` is not a sync_file.
pub fn file_info(fd: BorrowedFd<'_>, fences: &mut [SyncFenceInfo]) -> Result<SyncFileInfo> {
    let mut arg = SyncFileInfo {
        name: [0; SYNC_NAME_LEN],
        status: 0,
        flags: 0,
        num_fences: u32::try_from(fences.len()).map_err(|_| Errno::INVAL)?,
        pad: 0,
        sync_fence_info: if fences.is_empty() {
            0
        } else {
            fences.as_mut_ptr() as u64
        },
    };
    retry_eintr(|| {
        // SAFETY: SYNC_IOC_FILE_INFO reads and writes a `struct sync_file_info`, which
        // `SyncFileInfo` mirrors (size test below); its pointer names `fences`, an exclusive
        // array of `num_fences` `struct sync_fence_info` (mirrored by `SyncFenceInfo`), live for
        // the call, into which the kernel writes at most `num_fences` entries.
        unsafe { ioctl(fd, Updater::<SYNC_IOC_FILE_INFO, _>::new(&mut arg)) }
    })?;
    Ok(arg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_match_kernel_headers() {
        // sync_file.h on x86_64/aarch64 (_IOC_READ|_IOC_WRITE = 3 << 30).
        assert_eq!(SYNC_IOC_MERGE as u64, 0xc030_3e03);
        assert_eq!(SYNC_IOC_FILE_INFO as u64, 0xc038_3e04);
    }

    #[test]
    fn layouts_match_kernel_headers() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<SyncMergeData>(), 48);
        assert_eq!(offset_of!(SyncMergeData, fd2), 32);
        assert_eq!(offset_of!(SyncMergeData, fence), 36);
        assert_eq!(size_of::<SyncFenceInfo>(), 80);
        assert_eq!(offset_of!(SyncFenceInfo, status), 64);
        assert_eq!(offset_of!(SyncFenceInfo, timestamp_ns), 72);
        assert_eq!(size_of::<SyncFileInfo>(), 56);
        assert_eq!(offset_of!(SyncFileInfo, num_fences), 40);
        assert_eq!(offset_of!(SyncFileInfo, sync_fence_info), 48);
    }

    #[test]
    fn names_are_cut_and_nul_terminated() {
        let f = name_field(&"x".repeat(40));
        assert_eq!(f[31], 0);
        assert_eq!(field_str(&f), "x".repeat(31));
    }

    #[test]
    fn calls_on_a_memfd_answer_enotty() {
        use rustix::fd::AsFd;
        let m =
            rustix::fs::memfd_create("not-a-sync-file", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        assert_eq!(file_info(m.as_fd(), &mut []).unwrap_err(), Errno::NOTTY);
        assert_eq!(merge(m.as_fd(), m.as_fd(), "m").unwrap_err(), Errno::NOTTY);
    }
}
