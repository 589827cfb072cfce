//! The kernel boundary: raw uapi (`#[repr(C)]` structs, ioctl numbers) and one safe function per
//! kernel call the crate makes.
//!
//! Each function takes `BorrowedFd`s and typed arguments, issues its call through rustix's typed
//! ioctl patterns (`Getter`, `Setter`, `Updater`, `IntegerSetter`, or the two patterns below for
//! ioctls whose return value is the result), and answers with the kernel's errno
//! (`rustix::io::Result`). Callers never see an opcode, and no `unsafe` outside this module
//! exists only to issue an ioctl, map memory or take ownership of an fd the kernel returned.
//!
//! Nothing here interprets results; the layers above (`backend`, `map`, `interop`) do.
//!
//! # Retries
//!
//! Every call is retried on `EINTR` (a signal arrived before the kernel did anything) and on
//! nothing else. `EAGAIN` goes back to the caller: for a non-blocking fd it means "not now", and
//! only the caller knows how long it may wait (V4L2's `DQBUF` returns to `poll` with the time
//! left, see [`crate::interop::v4l2`]); retrying it here would spin a core.
//!
//! Struct layouts follow the kernel's `include/uapi/linux/*.h` and are checked by size tests.

pub mod dma_buf;
pub mod dma_heap;
pub mod drm;
pub mod iommufd;
pub mod mm;
pub mod poll;
pub mod socket;
pub mod sync_file;
pub mod udmabuf;
pub mod v4l2;
pub mod vfio;
pub mod vgem;

use rustix::fd::{FromRawFd, OwnedFd, RawFd};
use rustix::io::{Errno, Result};
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};
use std::ffi::c_void;

/// Runs `call` again for as long as it fails with `EINTR`; any other result (`EAGAIN` included)
/// is returned as it is.
pub(crate) fn retry_eintr<T>(mut call: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match call() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Takes ownership of an fd the kernel just returned.
///
/// # Safety
///
/// `fd` must be an open fd of this process that nothing else owns (a fresh one from the kernel).
unsafe fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: forwarded from this function's contract.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The kernel's non-negative return value as a new fd (`UDMABUF_CREATE`, `VFIO_GROUP_GET_DEVICE_FD`).
///
/// # Safety
///
/// `out` must be the result of a successful ioctl that returns a new fd.
unsafe fn own_returned_fd(out: IoctlOutput) -> Result<OwnedFd> {
    if out < 0 {
        return Err(Errno::INVAL);
    }
    // SAFETY: the ioctl returned a new fd (contract), and it is non-negative.
    Ok(unsafe { own_fd(out) })
}

/// An ioctl whose argument points to a `T` that the kernel reads (and may write), and whose
/// non-negative return value is its result (a new fd, a count): rustix's `Updater`, keeping the
/// return value.
struct UpdaterReturning<'a, const OPCODE: Opcode, T> {
    value: &'a mut T,
}

impl<'a, const OPCODE: Opcode, T> UpdaterReturning<'a, OPCODE, T> {
    /// # Safety
    ///
    /// `T` must be the type the kernel expects for `OPCODE`.
    unsafe fn new(value: &'a mut T) -> Self {
        UpdaterReturning { value }
    }
}

// SAFETY: `opcode` is the const the constructor's caller vouched for, `as_ptr` points to the live
// exclusive `T` for the whole call, and the output is the plain integer result.
unsafe impl<const OPCODE: Opcode, T> Ioctl for UpdaterReturning<'_, OPCODE, T> {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        OPCODE
    }

    fn as_ptr(&mut self) -> *mut c_void {
        (self.value as *mut T).cast()
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> Result<IoctlOutput> {
        Ok(out)
    }
}

/// An ioctl whose argument is a pointer to memory the kernel reads (a string, a header followed by
/// a flexible array), and whose non-negative return value is its result (a new fd).
struct PointerReturning<const OPCODE: Opcode> {
    ptr: *mut c_void,
}

impl<const OPCODE: Opcode> PointerReturning<OPCODE> {
    /// # Safety
    ///
    /// `ptr` must point to what the kernel expects for `OPCODE`, live for the call.
    unsafe fn new(ptr: *mut c_void) -> Self {
        PointerReturning { ptr }
    }
}

// SAFETY: `opcode` is the const the constructor's caller vouched for, `as_ptr` is the pointer it
// vouched for, and the output is the plain integer result.
unsafe impl<const OPCODE: Opcode> Ioctl for PointerReturning<OPCODE> {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        OPCODE
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.ptr
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> Result<IoctlOutput> {
        Ok(out)
    }
}

/// An ioctl whose argument is an integer (or none) and whose return value is its result
/// (`VFIO_GET_API_VERSION`, `VFIO_CHECK_EXTENSION`): rustix's `IntegerSetter`, keeping the
/// return value.
struct IntegerReturning<const OPCODE: Opcode> {
    value: usize,
}

impl<const OPCODE: Opcode> IntegerReturning<OPCODE> {
    /// # Safety
    ///
    /// `OPCODE` must take an integer argument (or ignore it), and `value` must be in its range.
    unsafe fn new(value: usize) -> Self {
        IntegerReturning { value }
    }
}

// SAFETY: `opcode` is the const the constructor's caller vouched for; the argument is an integer
// the kernel never dereferences; the output is the plain integer result.
unsafe impl<const OPCODE: Opcode> Ioctl for IntegerReturning<OPCODE> {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        OPCODE
    }

    fn as_ptr(&mut self) -> *mut c_void {
        std::ptr::without_provenance_mut(self.value)
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> Result<IoctlOutput> {
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eintr_is_retried_and_eagain_is_not() {
        // Two EINTRs, then EAGAIN: the EINTRs are absorbed, the EAGAIN comes back after exactly
        // three calls (a retry of EAGAIN would call a fourth time and, on a real fd, spin).
        let mut answers = vec![Err(Errno::AGAIN), Err(Errno::INTR), Err(Errno::INTR)];
        let mut calls = 0;
        let r: Result<()> = retry_eintr(|| {
            calls += 1;
            answers.pop().unwrap_or(Ok(()))
        });
        assert_eq!(r, Err(Errno::AGAIN));
        assert_eq!(calls, 3);
        // Success and other errors come back at once.
        let mut calls = 0;
        assert_eq!(
            retry_eintr(|| {
                calls += 1;
                Err::<(), _>(Errno::NOTTY)
            }),
            Err(Errno::NOTTY)
        );
        assert_eq!(calls, 1);
        assert_eq!(retry_eintr(|| Ok(7)), Ok(7));
    }

    #[test]
    fn a_real_eagain_comes_back_at_once() {
        // A non-blocking pipe with nothing in it: read answers EAGAIN; through `retry_eintr` it
        // must come back after one call, not loop.
        let (r, _w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::NONBLOCK).unwrap();
        let mut calls = 0;
        let mut buf = [0u8; 1];
        let got = retry_eintr(|| {
            calls += 1;
            rustix::io::read(&r, &mut buf)
        });
        assert_eq!(got, Err(Errno::AGAIN));
        assert_eq!(calls, 1);
    }
}
