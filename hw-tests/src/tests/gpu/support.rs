//! What the GPU tests and `gpu-bench` share: the kernels they run, as PTX text (the driver
//! compiles it for the device at load), a thin launcher over the driver API, and fd passing to
//! forked peers.

use anyhow::{bail, Result};
use cudarc::driver::sys as cu;
use rustix::fd::{BorrowedFd, OwnedFd};
use std::ffi::{c_void, CString};
use unibuf::interop::cuda::Cuda;

/// Three grid-stride kernels over 32-bit words:
/// `not_u32(dst, src, n)`: `dst[i] = ~src[i]`; `fill_u32(dst, n, v)`: `dst[i] = v`;
/// `xor_u32x4(src, n4, out)`: XOR of `n4` 16-byte vectors into `*out` (one atomic per thread):
/// a read of every byte whose result the CPU can check, and the bandwidth kernel.
const PTX: &str = r#"
.version 7.0
.target sm_70
.address_size 64

.visible .entry not_u32(.param .u64 p_dst, .param .u64 p_src, .param .u64 p_n)
{
    .reg .pred %p<2>;
    .reg .b32 %r<8>;
    .reg .b64 %rd<12>;
    ld.param.u64 %rd1, [p_dst];
    ld.param.u64 %rd2, [p_src];
    ld.param.u64 %rd3, [p_n];
    mov.u32 %r1, %ctaid.x;
    mov.u32 %r2, %ntid.x;
    mov.u32 %r3, %tid.x;
    mov.u32 %r4, %nctaid.x;
    mul.wide.u32 %rd4, %r1, %r2;
    cvt.u64.u32 %rd5, %r3;
    add.u64 %rd4, %rd4, %rd5;
    mul.wide.u32 %rd6, %r4, %r2;
NOT_LOOP:
    setp.ge.u64 %p1, %rd4, %rd3;
    @%p1 bra NOT_DONE;
    shl.b64 %rd7, %rd4, 2;
    add.u64 %rd8, %rd2, %rd7;
    ld.global.u32 %r5, [%rd8];
    not.b32 %r6, %r5;
    add.u64 %rd9, %rd1, %rd7;
    st.global.u32 [%rd9], %r6;
    add.u64 %rd4, %rd4, %rd6;
    bra NOT_LOOP;
NOT_DONE:
    ret;
}

.visible .entry fill_u32(.param .u64 p_dst, .param .u64 p_n, .param .u32 p_v)
{
    .reg .pred %p<2>;
    .reg .b32 %r<8>;
    .reg .b64 %rd<12>;
    ld.param.u64 %rd1, [p_dst];
    ld.param.u64 %rd3, [p_n];
    ld.param.u32 %r6, [p_v];
    mov.u32 %r1, %ctaid.x;
    mov.u32 %r2, %ntid.x;
    mov.u32 %r3, %tid.x;
    mov.u32 %r4, %nctaid.x;
    mul.wide.u32 %rd4, %r1, %r2;
    cvt.u64.u32 %rd5, %r3;
    add.u64 %rd4, %rd4, %rd5;
    mul.wide.u32 %rd6, %r4, %r2;
FILL_LOOP:
    setp.ge.u64 %p1, %rd4, %rd3;
    @%p1 bra FILL_DONE;
    shl.b64 %rd7, %rd4, 2;
    add.u64 %rd9, %rd1, %rd7;
    st.global.u32 [%rd9], %r6;
    add.u64 %rd4, %rd4, %rd6;
    bra FILL_LOOP;
FILL_DONE:
    ret;
}

.visible .entry xor_u32x4(.param .u64 p_src, .param .u64 p_n4, .param .u64 p_out)
{
    .reg .pred %p<2>;
    .reg .b32 %r<12>;
    .reg .b64 %rd<12>;
    ld.param.u64 %rd1, [p_src];
    ld.param.u64 %rd2, [p_n4];
    ld.param.u64 %rd3, [p_out];
    mov.u32 %r1, %ctaid.x;
    mov.u32 %r2, %ntid.x;
    mov.u32 %r3, %tid.x;
    mov.u32 %r4, %nctaid.x;
    mul.wide.u32 %rd4, %r1, %r2;
    cvt.u64.u32 %rd5, %r3;
    add.u64 %rd4, %rd4, %rd5;
    mul.wide.u32 %rd6, %r4, %r2;
    mov.u32 %r5, 0;
XOR_LOOP:
    setp.ge.u64 %p1, %rd4, %rd2;
    @%p1 bra XOR_DONE;
    shl.b64 %rd7, %rd4, 4;
    add.u64 %rd8, %rd1, %rd7;
    ld.global.v4.u32 {%r6, %r7, %r8, %r9}, [%rd8];
    xor.b32 %r5, %r5, %r6;
    xor.b32 %r5, %r5, %r7;
    xor.b32 %r5, %r5, %r8;
    xor.b32 %r5, %r5, %r9;
    add.u64 %rd4, %rd4, %rd6;
    bra XOR_LOOP;
XOR_DONE:
    atom.global.xor.b32 %r10, [%rd3], %r5;
    ret;
}
"#;

fn ck(r: cu::CUresult, what: &str) -> Result<()> {
    if r == cu::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        bail!("{what}: {r:?}")
    }
}

/// The loaded module and its three functions.
pub struct Kernels<'c> {
    cuda: &'c Cuda,
    module: cu::CUmodule,
    not: cu::CUfunction,
    fill: cu::CUfunction,
    xor: cu::CUfunction,
    /// One device word for `xor_u32x4`'s result.
    out: cu::CUdeviceptr,
}

/// Blocks and threads per launch: enough blocks to fill an H200 (132 SMs) several times over.
const BLOCKS: u32 = 132 * 8;
const THREADS: u32 = 256;

impl<'c> Kernels<'c> {
    /// Loads the PTX into `cuda`'s context.
    pub fn load(cuda: &'c Cuda) -> Result<Kernels<'c>> {
        cuda.make_current()?;
        let ptx = CString::new(PTX)?;
        let mut module: cu::CUmodule = std::ptr::null_mut();
        // SAFETY: `ptx` is a NUL-terminated PTX image; the module is unloaded in Drop.
        let r = unsafe { cu::cuModuleLoadData(&mut module, ptx.as_ptr().cast()) };
        ck(r, "cuModuleLoadData")?;
        let get = |name: &str| -> Result<cu::CUfunction> {
            let n = CString::new(name)?;
            let mut f: cu::CUfunction = std::ptr::null_mut();
            // SAFETY: looks up a function of the module loaded above.
            let r = unsafe { cu::cuModuleGetFunction(&mut f, module, n.as_ptr()) };
            ck(r, "cuModuleGetFunction")?;
            Ok(f)
        };
        let mut out: cu::CUdeviceptr = 0;
        // SAFETY: allocates one device word, freed in Drop.
        let r = unsafe { cu::cuMemAlloc_v2(&mut out, 4) };
        ck(r, "cuMemAlloc")?;
        Ok(Kernels {
            cuda,
            module,
            not: get("not_u32")?,
            fill: get("fill_u32")?,
            xor: get("xor_u32x4")?,
            out,
        })
    }

    /// # Safety
    /// `params` must point to values of the kernel's parameter types, in order.
    unsafe fn launch(&self, f: cu::CUfunction, params: &mut [*mut c_void]) -> Result<()> {
        self.cuda.make_current()?;
        // SAFETY: the caller vouches for the parameters; the null stream is the context's.
        let r = unsafe {
            cu::cuLaunchKernel(
                f,
                BLOCKS,
                1,
                1,
                THREADS,
                1,
                1,
                0,
                std::ptr::null_mut(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        ck(r, "cuLaunchKernel")
    }

    /// `dst[i] = ~src[i]` for `n` words (asynchronous).
    pub fn not_u32(&self, dst: u64, src: u64, n: u64) -> Result<()> {
        let (mut d, mut s, mut n) = (dst, src, n);
        let mut p = [
            (&mut d as *mut u64).cast(),
            (&mut s as *mut u64).cast(),
            (&mut n as *mut u64).cast(),
        ];
        // SAFETY: not_u32 takes (u64, u64, u64).
        unsafe { self.launch(self.not, &mut p) }
    }

    /// `dst[i] = v` for `n` words (asynchronous: a fault shows at the next synchronize).
    pub fn fill_u32(&self, dst: u64, n: u64, v: u32) -> Result<()> {
        let (mut d, mut n, mut v) = (dst, n, v);
        let mut p = [
            (&mut d as *mut u64).cast(),
            (&mut n as *mut u64).cast(),
            (&mut v as *mut u32).cast(),
        ];
        // SAFETY: fill_u32 takes (u64, u64, u32).
        unsafe { self.launch(self.fill, &mut p) }
    }

    /// Launches the XOR of `n` words (a multiple of 4) at `src` without waiting.
    pub fn xor_u32_async(&self, src: u64, n: u64) -> Result<()> {
        if !n.is_multiple_of(4) {
            bail!("xor_u32 needs a multiple of 4 words, got {n}");
        }
        let (mut s, mut n4, mut o) = (src, n / 4, self.out);
        let mut p = [
            (&mut s as *mut u64).cast(),
            (&mut n4 as *mut u64).cast(),
            (&mut o as *mut u64).cast(),
        ];
        // SAFETY: xor_u32x4 takes (u64, u64, u64).
        unsafe { self.launch(self.xor, &mut p) }
    }

    /// Zeroes the XOR result word.
    pub fn xor_reset(&self) -> Result<()> {
        self.cuda.make_current()?;
        // SAFETY: sets the one word allocated in `load`.
        let r = unsafe { cu::cuMemsetD32_v2(self.out, 0, 1) };
        ck(r, "cuMemsetD32")
    }

    /// The XOR of the `n` words at `src` (a multiple of 4), computed on the GPU.
    pub fn xor_u32(&self, src: u64, n: u64) -> Result<u32> {
        self.xor_reset()?;
        self.xor_u32_async(src, n)?;
        self.cuda.synchronize()?;
        let mut v = [0u8; 4];
        copy_dtoh(self.cuda, &mut v, self.out)?;
        Ok(u32::from_ne_bytes(v))
    }
}

impl Drop for Kernels<'_> {
    fn drop(&mut self) {
        let _ = self.cuda.make_current();
        // SAFETY: frees the word and unloads the module made in `load`, once each.
        unsafe {
            let _ = cu::cuMemFree_v2(self.out);
            let _ = cu::cuModuleUnload(self.module);
        }
    }
}

/// Copies `dst.len()` bytes from device address `src` (synchronous).
pub fn copy_dtoh(cuda: &Cuda, dst: &mut [u8], src: u64) -> Result<()> {
    cuda.make_current()?;
    // SAFETY: `dst` is writable for its length; `src` is a device range the caller owns.
    let r = unsafe { cu::cuMemcpyDtoH_v2(dst.as_mut_ptr().cast(), src, dst.len()) };
    ck(r, "cuMemcpyDtoH")
}

/// A socketpair for handing raw fds (a CUDA shareable handle is not a unibuf object) to a forked
/// peer with `SCM_RIGHTS`.
pub fn fd_channel() -> Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sends `fd` with `data` (at most 8 bytes arrive at [`recv_fd`]).
pub fn send_fd(sock: &OwnedFd, fd: BorrowedFd<'_>, data: &[u8]) -> Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        bail!("cmsg space");
    }
    rustix::net::sendmsg(
        sock,
        &[std::io::IoSlice::new(data)],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

/// Receives one fd sent by [`send_fd`].
pub fn recv_fd(sock: &OwnedFd) -> Result<OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 8];
    rustix::net::recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = m {
            if let Some(fd) = fds.next() {
                return Ok(fd);
            }
        }
    }
    bail!("no fd arrived")
}
