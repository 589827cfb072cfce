//! Raw kernel uapi: ioctl numbers and `#[repr(C)]` structs, and the one generic ioctl entry point.
//!
//! Nothing here interprets results; the safe layers above (`backend`, `map`, `interop`) do.
//! Struct layouts follow the kernel's `include/uapi/linux/*.h` and are checked by size tests.

pub mod dma_buf;
pub mod dma_heap;
pub mod drm;
pub mod socket;
pub mod udmabuf;
pub mod v4l2;
pub mod vfio;

use rustix::fd::AsFd;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};
use std::ffi::c_void;

/// `_IOC`-encoded request number, re-exported from rustix.
pub use rustix::ioctl::opcode;

/// An ioctl whose argument is a pointer (or pointer-sized integer) and whose return value is the
/// ioctl's own non-negative result (some ioctls, like `UDMABUF_CREATE`, return a new fd).
struct RawIoctl {
    opcode: Opcode,
    arg: *mut c_void,
}

// SAFETY: `opcode` returns the caller's opcode, `as_ptr` the caller's argument, and the output is
// the plain integer result. The caller of `ioctl_raw` vouches that the opcode and argument agree.
unsafe impl Ioctl for RawIoctl {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.arg
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _extract_output: *mut c_void,
    ) -> rustix::io::Result<Self::Output> {
        Ok(out)
    }
}

/// Issues `ioctl(fd, opcode, arg)` and returns the ioctl's non-negative result.
///
/// # Safety
///
/// `arg` must be what the kernel expects for `opcode`: a pointer to a live, correctly laid out
/// struct (readable and, for `_IOR`/`_IOWR`, writable for its whole size) or an integer value.
pub unsafe fn ioctl_raw<Fd: AsFd>(
    fd: Fd,
    opcode: Opcode,
    arg: *mut c_void,
) -> rustix::io::Result<IoctlOutput> {
    let op = RawIoctl { opcode, arg };
    // SAFETY: forwarded from this function's contract.
    unsafe { rustix::ioctl::ioctl(fd, op) }
}

/// Issues an ioctl whose argument is a pointer to `arg`, retrying on `EINTR` and `EAGAIN`.
///
/// # Safety
///
/// `T` must be the struct the kernel expects for `opcode`.
pub unsafe fn ioctl_with<Fd: AsFd, T>(
    fd: Fd,
    opcode: Opcode,
    arg: &mut T,
) -> rustix::io::Result<IoctlOutput> {
    let fd = fd.as_fd();
    loop {
        // SAFETY: `arg` is a live exclusive reference to the struct `opcode` expects (contract).
        match unsafe { ioctl_raw(fd, opcode, (arg as *mut T).cast()) } {
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => continue,
            other => return other,
        }
    }
}
