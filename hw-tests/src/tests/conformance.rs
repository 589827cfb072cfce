//! Hardware tests: conformance. These re-check, on every kernel the tests run on, what the kernel's
//! own selftests require of DMA-BUF heaps (`tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c`)
//! and of udmabuf (`tools/testing/selftests/drivers/dma-buf/udmabuf.c`), so that unibuf's
//! backends are only ever built on behaviour the kernel actually has. The calls go through
//! `unibuf::sys`'s safe functions, which pass flags as they are (so invalid flags reach the
//! kernel); the old and oversized allocation structs, which no safe API lets through, are raw
//! rustix ioctls here.
//!
//! Heap tests run on every heap in `/dev/dma_heap`; devices are found by discovery
//! (see [`super::env`]).

use super::env::{self, Feature};
use crate::harness::{own_fd, pass, raw, Outcome, Test};
use anyhow::{anyhow, bail, ensure, Context};
use rustix::io::Errno;
use rustix::ioctl::{opcode, Updater};
use rustix::mm::{MapFlags, ProtFlags};
use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use unibuf::fd::count_open_fds as fd_count;
use unibuf::sys::dma_buf::{DMA_BUF_SYNC_END, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_START};
use unibuf::sys::udmabuf::{UdmabufCreateItem, UDMABUF_FLAGS_CLOEXEC};

/// The tests of this area.
pub fn tests() -> Vec<Test> {
    vec![
        Test {
            name: "conformance::heap_alloc_import_vgem",
            needs: "dma-buf heaps and a vgem card",
            run: heap_alloc_import_vgem,
        },
        Test {
            name: "conformance::heap_zeroed_4k",
            needs: "dma-buf heaps",
            run: || heap_zeroed(4 << 10),
        },
        Test {
            name: "conformance::heap_zeroed_1m",
            needs: "dma-buf heaps",
            run: || heap_zeroed(1 << 20),
        },
        Test {
            name: "conformance::heap_alloc_compat",
            needs: "dma-buf heaps",
            run: heap_alloc_compat,
        },
        Test {
            name: "conformance::heap_alloc_errors",
            needs: "dma-buf heaps",
            run: heap_alloc_errors,
        },
        Test {
            name: "conformance::udmabuf_create_errors",
            needs: "/dev/udmabuf",
            run: udmabuf_create_errors,
        },
        Test {
            name: "conformance::udmabuf_content",
            needs: "/dev/udmabuf",
            run: udmabuf_content,
        },
    ]
}

const ONE_MEG: usize = 1 << 20;

/// A shared mapping, unmapped on drop.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    /// Maps `len` bytes of `fd` shared, read-write.
    fn shared_rw(fd: BorrowedFd<'_>, len: usize, what: &str) -> anyhow::Result<Map> {
        // SAFETY: a fresh mapping chosen by the kernel (null hint) aliases no Rust object; it is
        // only accessed through this `Map` and unmapped once, on drop.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )
        }
        .with_context(|| format!("mmap {len} bytes of {what} (fd {})", fd.as_raw_fd()))?;
        Ok(Map {
            ptr: ptr.cast(),
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for the lifetime of `self`; the memory is plain
        // bytes (any value valid) and other writers (the device, other mappings) can only change
        // values, never invalidate them.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only slice over the mapping.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and no slice outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast::<c_void>(), self.len) };
    }
}

/// DMA_BUF_IOCTL_SYNC with `DMA_BUF_SYNC_RW | start_end`.
fn sync(fd: BorrowedFd<'_>, start_end: u64) -> anyhow::Result<()> {
    unibuf::sys::dma_buf::sync(fd, start_end | DMA_BUF_SYNC_RW)
        .with_context(|| format!("DMA_BUF_IOCTL_SYNC {start_end:#x} on fd {}", fd.as_raw_fd()))
}

/// DMA_HEAP_IOCTL_ALLOC with the current struct; returns the dma-buf or the errno.
fn heap_alloc(
    heap: BorrowedFd<'_>,
    len: usize,
    fd_flags: u32,
    heap_flags: u64,
) -> Result<OwnedFd, Errno> {
    unibuf::sys::dma_heap::alloc(heap, len as u64, fd_flags, heap_flags)
}

const RW_CLOEXEC: u32 = (libc::O_RDWR | libc::O_CLOEXEC) as u32;

/// Runs `f` on every heap; `Ok(None)` when there are none (the caller decides skip or fail).
fn for_each_heap(
    mut f: impl FnMut(&str, BorrowedFd<'_>) -> anyhow::Result<String>,
) -> anyhow::Result<Outcome> {
    let heaps = env::heap_names();
    if heaps.is_empty() {
        return env::missing(Feature::SystemHeap, "no dma-buf heaps in /dev/dma_heap");
    }
    let mut notes = Vec::new();
    let mut failures = Vec::new();
    for h in &heaps {
        let heap = env::open_heap(h)?;
        match f(h, heap.as_fd()) {
            Ok(n) => notes.push(format!("{h}: {n}")),
            Err(e) => failures.push(format!("{h}: {e:#}")),
        }
    }
    if !failures.is_empty() {
        return Ok(Outcome::Fail(failures.join("; ")));
    }
    pass(notes.join("; "))
}

fn heap_alloc_import_vgem() -> anyhow::Result<Outcome> {
    use drm::control::Device as _;
    if env::heap_names().is_empty() {
        return env::missing(Feature::SystemHeap, "no dma-buf heaps in /dev/dma_heap");
    }
    let Some(vgem) = env::drm_card("vgem") else {
        return env::missing(Feature::Vgem, "no vgem card to import into");
    };
    for_each_heap(|_, heap| {
        let buf = heap_alloc(heap, ONE_MEG, RW_CLOEXEC, 0).context("allocate 1 MiB")?;
        let mut map = Map::shared_rw(buf.as_fd(), ONE_MEG, "the dma-buf")?;
        sync(buf.as_fd(), DMA_BUF_SYNC_START)?;
        map.bytes_mut()[..ONE_MEG / 2].fill(1);
        map.bytes_mut()[ONE_MEG / 2..].fill(0);
        sync(buf.as_fd(), DMA_BUF_SYNC_END)?;
        let handle = vgem
            .prime_fd_to_buffer(buf.as_fd())
            .with_context(|| format!("DRM_IOCTL_PRIME_FD_TO_HANDLE on {}", vgem.path.display()))?;
        // The buffer stays usable by the CPU while the importer holds it.
        sync(buf.as_fd(), DMA_BUF_SYNC_START)?;
        map.bytes_mut().fill(0xff);
        sync(buf.as_fd(), DMA_BUF_SYNC_END)?;
        ensure!(
            map.bytes().iter().all(|&b| b == 0xff),
            "CPU writes did not stick"
        );
        vgem.close_buffer(handle)
            .with_context(|| format!("DRM_IOCTL_GEM_CLOSE on {}", vgem.path.display()))?;
        Ok(format!(
            "imported as GEM handle {:?} into {}",
            handle,
            vgem.path.display()
        ))
    })
}

fn heap_zeroed(size: usize) -> anyhow::Result<Outcome> {
    for_each_heap(|_, heap| {
        let fds_before = fd_count()?;
        let mut bufs = Vec::with_capacity(32);
        for i in 0..32 {
            let b = heap_alloc(heap, size, RW_CLOEXEC, 0)
                .with_context(|| format!("allocation {i} of {size} bytes"))?;
            let mut m = Map::shared_rw(b.as_fd(), size, "the dma-buf")?;
            sync(b.as_fd(), DMA_BUF_SYNC_START)?;
            m.bytes_mut().fill(0xff);
            sync(b.as_fd(), DMA_BUF_SYNC_END)?;
            bufs.push(b);
        }
        drop(bufs);
        for i in 0..32 {
            let b = heap_alloc(heap, size, RW_CLOEXEC, 0)
                .with_context(|| format!("re-allocation {i} of {size} bytes"))?;
            let m = Map::shared_rw(b.as_fd(), size, "the dma-buf")?;
            sync(b.as_fd(), DMA_BUF_SYNC_START)?;
            if let Some(at) = m.bytes().iter().position(|&x| x != 0) {
                bail!("re-allocated buffer {i} not zeroed at byte {at}");
            }
            sync(b.as_fd(), DMA_BUF_SYNC_END)?;
        }
        let fds_after = fd_count()?;
        ensure!(
            fds_after == fds_before,
            "fds leaked: {fds_before} before, {fds_after} after"
        );
        Ok(format!(
            "32 x {size} bytes zeroed after free and re-allocation"
        ))
    })
}

/// `struct dma_heap_allocation_data` as an older kernel uapi might have had it (no heap_flags).
#[repr(C)]
struct AllocOlder {
    len: u64,
    fd: u32,
    fd_flags: u32,
}

/// A (theoretical) newer, larger `struct dma_heap_allocation_data` with non-zero tail fields.
#[repr(C)]
struct AllocNewer {
    len: u64,
    fd: u32,
    fd_flags: u32,
    heap_flags: u64,
    garbage: [u64; 3],
}

fn heap_alloc_compat() -> anyhow::Result<Outcome> {
    for_each_heap(|_, heap| {
        let mut old = AllocOlder {
            len: ONE_MEG as u64,
            fd: 0,
            fd_flags: RW_CLOEXEC,
        };
        const OP_OLD: rustix::ioctl::Opcode = opcode::read_write::<AllocOlder>(b'H', 0);
        // SAFETY: the kernel copies `_IOC_SIZE(OP_OLD)` = size_of::<AllocOlder>() bytes in and out
        // of `old`, which holds no pointer.
        unsafe { rustix::ioctl::ioctl(heap, Updater::<OP_OLD, _>::new(&mut old)) }
            .context("allocation with the older 16-byte struct")?;
        // SAFETY: on success the kernel installed a new fd that nothing else owns.
        let a = unsafe { own_fd(old.fd as i32) };
        ensure!(
            rustix::fs::fstat(&a).is_ok(),
            "older struct: returned fd {} is not open",
            old.fd
        );
        let mut new = AllocNewer {
            len: ONE_MEG as u64,
            fd: 0,
            fd_flags: RW_CLOEXEC,
            heap_flags: 0,
            garbage: [0xffff_ffff, 0x8888_8888, 0x1111_1111],
        };
        const OP_NEW: rustix::ioctl::Opcode = opcode::read_write::<AllocNewer>(b'H', 0);
        // SAFETY: as above, for size_of::<AllocNewer>() bytes.
        unsafe { rustix::ioctl::ioctl(heap, Updater::<OP_NEW, _>::new(&mut new)) }
            .context("allocation with an oversized 48-byte struct")?;
        // SAFETY: as above.
        let b = unsafe { own_fd(new.fd as i32) };
        let size =
            rustix::fs::seek(&b, rustix::fs::SeekFrom::End(0)).context("lseek of the dma-buf")?;
        ensure!(
            size == ONE_MEG as u64,
            "oversized struct: buffer has {size} bytes, asked {ONE_MEG}"
        );
        Ok("16-byte and 48-byte structs accepted".into())
    })
}

fn expect_err(
    what: &str,
    r: Result<OwnedFd, Errno>,
    want: Option<Errno>,
) -> anyhow::Result<String> {
    match r {
        Ok(fd) => Err(anyhow!(
            "{what}: accepted (fd {}), must be refused",
            raw(&fd)
        )),
        Err(e) => match want {
            Some(w) if w != e => Err(anyhow!(
                "{what}: refused with {}, expected {}",
                unibuf::Errno(e),
                unibuf::Errno(w)
            )),
            _ => Ok(format!("{what}: {}", unibuf::Errno(e))),
        },
    }
}

fn heap_alloc_errors() -> anyhow::Result<Outcome> {
    for_each_heap(|_, heap| {
        let not_a_heap = rustix::fs::memfd_create("not-a-heap", rustix::fs::MemfdFlags::CLOEXEC)?;
        let mut notes = vec![expect_err(
            "ALLOC on a non-heap fd",
            heap_alloc(not_a_heap.as_fd(), ONE_MEG, RW_CLOEXEC, 0),
            None,
        )?];
        notes.push(expect_err(
            "heap_flags 0x111111",
            heap_alloc(heap, ONE_MEG, RW_CLOEXEC, 0x11_1111),
            Some(Errno::INVAL),
        )?);
        notes.push(expect_err(
            "fd_flags ~(O_RDWR|O_CLOEXEC)",
            heap_alloc(heap, ONE_MEG, !RW_CLOEXEC, 0),
            Some(Errno::INVAL),
        )?);
        Ok(notes.join(", "))
    })
}

/// A memfd of `size` bytes, sealed against shrinking as udmabuf requires (unless `seal` is false).
fn sealed_memfd(size: usize, seal: bool) -> anyhow::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let m = rustix::fs::memfd_create(
        "unibuf-conformance",
        MemfdFlags::ALLOW_SEALING | MemfdFlags::CLOEXEC,
    )
    .context("memfd_create")?;
    if seal {
        rustix::fs::fcntl_add_seals(&m, SealFlags::SHRINK).context("F_ADD_SEALS F_SEAL_SHRINK")?;
    }
    rustix::fs::ftruncate(&m, size as u64).context("ftruncate of the memfd")?;
    Ok(m)
}

fn udmabuf_create(
    dev: BorrowedFd<'_>,
    memfd: BorrowedFd<'_>,
    offset: usize,
    size: usize,
) -> Result<OwnedFd, Errno> {
    unibuf::sys::udmabuf::create(
        dev,
        memfd,
        offset as u64,
        size as u64,
        UDMABUF_FLAGS_CLOEXEC,
    )
}

fn open_udmabuf() -> anyhow::Result<Result<OwnedFd, Outcome>> {
    match env::udmabuf_node() {
        Some(p) => Ok(Ok(env::open_rw(&p)?)),
        None => Ok(Err(env::missing(
            Feature::Udmabuf,
            "no udmabuf misc device",
        )?)),
    }
}

fn udmabuf_create_errors() -> anyhow::Result<Outcome> {
    let dev = match open_udmabuf()? {
        Ok(d) => d,
        Err(o) => return Ok(o),
    };
    let page = rustix::param::page_size();
    let memfd = sealed_memfd(4 * page, true)?;
    let mut notes = vec![
        expect_err(
            "offset page/2",
            udmabuf_create(dev.as_fd(), memfd.as_fd(), page / 2, page),
            Some(Errno::INVAL),
        )?,
        expect_err(
            "size page/2",
            udmabuf_create(dev.as_fd(), memfd.as_fd(), 0, page / 2),
            Some(Errno::INVAL),
        )?,
    ];
    let not_memfd = rustix::fs::open(
        "/proc/self/stat",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .context("open /proc/self/stat")?;
    notes.push(expect_err(
        "not a memfd",
        udmabuf_create(dev.as_fd(), not_memfd.as_fd(), 0, 4 * page),
        None,
    )?);
    let unsealed = sealed_memfd(4 * page, false)?;
    notes.push(expect_err(
        "memfd without F_SEAL_SHRINK",
        udmabuf_create(dev.as_fd(), unsealed.as_fd(), 0, 4 * page),
        Some(Errno::INVAL),
    )?);
    notes.push(expect_err(
        "range beyond the memfd",
        udmabuf_create(dev.as_fd(), memfd.as_fd(), 0, 8 * page),
        None,
    )?);
    let ok = udmabuf_create(dev.as_fd(), memfd.as_fd(), 0, 4 * page)
        .context("a valid UDMABUF_CREATE failed")?;
    let size =
        rustix::fs::seek(&ok, rustix::fs::SeekFrom::End(0)).context("lseek of the udmabuf")?;
    ensure!(
        size == 4 * page as u64,
        "udmabuf has {size} bytes, asked {}",
        4 * page
    );
    notes.push("4 pages accepted".into());
    pass(notes.join(", "))
}

fn udmabuf_content() -> anyhow::Result<Outcome> {
    let dev = match open_udmabuf()? {
        Ok(d) => d,
        Err(o) => return Ok(o),
    };
    const NUM_PAGES: usize = 4;
    const NUM_ENTRIES: usize = 4;
    let page = rustix::param::page_size();
    let size = 1024 * page;
    let memfd = sealed_memfd(size, true)?;
    let mut mem = Map::shared_rw(memfd.as_fd(), size, "the memfd")?;
    for p in 0..size / page {
        mem.bytes_mut()[p * page] = b'a';
    }
    let mut items = [UdmabufCreateItem::default(); NUM_ENTRIES];
    for (i, it) in items.iter_mut().enumerate() {
        *it = UdmabufCreateItem {
            memfd: memfd.as_raw_fd() as u32,
            pad: 0,
            offset: (i * (size / NUM_ENTRIES)) as u64,
            size: (page * NUM_PAGES) as u64,
        };
    }
    let ubuf = unibuf::sys::udmabuf::create_list(dev.as_fd(), UDMABUF_FLAGS_CLOEXEC, &items)
        .context("UDMABUF_CREATE_LIST")?;
    let ulen = NUM_PAGES * NUM_ENTRIES * page;
    let mut umap = Map::shared_rw(ubuf.as_fd(), ulen, "the udmabuf")?;
    // Writes through the memfd are seen through the udmabuf mapping...
    for p in 0..size / page {
        mem.bytes_mut()[p * page] = b'b';
    }
    let mut k = 0;
    for i in 0..NUM_ENTRIES {
        let off = i * (size / NUM_ENTRIES);
        for j in 0..NUM_PAGES {
            let a = mem.bytes()[off + j * page];
            let b = umap.bytes()[k * page];
            ensure!(
                a == b,
                "entry {i} page {j}: memfd has {a:#x}, udmabuf mapping {b:#x}"
            );
            k += 1;
        }
    }
    // ...and writes through the udmabuf mapping are seen through the memfd.
    sync(ubuf.as_fd(), DMA_BUF_SYNC_START)?;
    for p in 0..ulen / page {
        umap.bytes_mut()[p * page + 1] = p as u8 ^ 0x5a;
    }
    sync(ubuf.as_fd(), DMA_BUF_SYNC_END)?;
    let mut k = 0;
    for i in 0..NUM_ENTRIES {
        let off = i * (size / NUM_ENTRIES);
        for j in 0..NUM_PAGES {
            let got = mem.bytes()[off + j * page + 1];
            ensure!(
                got == k as u8 ^ 0x5a,
                "udmabuf write to page {k} not seen in memfd (entry {i} page {j})"
            );
            k += 1;
        }
    }
    pass(format!(
        "{NUM_ENTRIES} items x {NUM_PAGES} pages: content agrees both ways between memfd and udmabuf mapping"
    ))
}
