//! Objects: allocate, reconcile-and-allocate, import an fd, dup, dup with reduced permission,
//! free; their list, fd, permission and size; CPU pointers and the sync ioctls.
//!
//! # CPU pointers
//!
//! The Rust API brackets CPU access with RAII guards. In C, `ub_obj_get_cpu_ptr` (read-write
//! handles) and `ub_obj_get_const_cpu_ptr` (any handle) return a persistent `MAP_SHARED`
//! mapping of the whole buffer held by the object handle: made on the first call, the same
//! address on every later call, unmapped by `ub_obj_free`. The mapping follows the library's
//! rules: refused (`UB_ERR_ACCESS_DENIED`) when no list of the object asked for CPU access, and
//! a writable pointer is refused for a read-only handle; a read-only handle's mapping is
//! `PROT_READ`, so a store through the const pointer faults. The cache protocol is explicit:
//! call `ub_obj_begin_cpu_access` before touching the bytes and `ub_obj_end_cpu_access` after
//! (`DMA_BUF_IOCTL_SYNC` START/END; no-ops for CPU-only memfd objects), and
//! `ub_obj_flush_cpu_cache_range` to publish writes while the access stays open.

use crate::adapt;
use crate::attr::{self, reconcile_handles, ListH, ListState};
use crate::consts::*;
use crate::ffi;
use crate::handle;
use crate::status::{guard, ub_status, Fail, R, UB_ERR_ACCESS_DENIED};
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use unibuf_rs::attr::Permission;
use unibuf_rs::map::{ReadMap, SyncDir, WriteMap};
use unibuf_rs::object::Object;

/// An allocated or imported buffer with this handle's permission. (`NvSciBufObj`.)
pub struct ub_obj {
    _opaque: [u8; 0],
}

/// A mapping made from a handle's own duplicate of the object, which it owns: the mapping
/// borrows that duplicate (never the `ObjH`'s object), and is dropped before it.
struct Mapping<M> {
    map: std::mem::ManuallyDrop<M>,
    obj: NonNull<Object>,
    ptr: *mut u8,
}

impl<M> Drop for Mapping<M> {
    fn drop(&mut self) {
        // SAFETY: the map is dropped once, here, before the object it borrows; `obj` came from
        // `Box::into_raw` in `mapping` and is freed once, here.
        unsafe {
            std::mem::ManuallyDrop::drop(&mut self.map);
            drop(Box::from_raw(self.obj.as_ptr()));
        }
    }
}

// SAFETY: the mapping is plain memory (munmap from any thread is fine) and the object is a set of
// fds; neither is tied to a thread. Access to them is serialized by `ObjH::cpu`.
unsafe impl<M> Send for Mapping<M> {}

/// Makes a mapping of a duplicate of `obj` that owns the duplicate.
fn mapping<M>(
    obj: &Object,
    make: impl FnOnce(&'static mut Object) -> unibuf_rs::Result<M>,
    ptr_of: impl FnOnce(&M) -> *mut u8,
) -> R<Mapping<M>> {
    let dup = Box::new(adapt::dup(obj)?);
    let raw = Box::into_raw(dup);
    // SAFETY: `raw` is a fresh, unique heap object; the `'static` borrow is held only by the map,
    // which `Mapping::drop` drops before freeing the object. Nothing else touches it.
    let made = make(unsafe { &mut *raw });
    match made {
        Ok(map) => {
            let ptr = ptr_of(&map);
            Ok(Mapping {
                map: std::mem::ManuallyDrop::new(map),
                // SAFETY: from `Box::into_raw`, never NULL.
                obj: unsafe { NonNull::new_unchecked(raw) },
                ptr,
            })
        }
        Err(e) => {
            // SAFETY: the failed call left no borrow; free the duplicate.
            drop(unsafe { Box::from_raw(raw) });
            Err(e.into())
        }
    }
}

#[derive(Default)]
struct Cpu {
    read: Option<Mapping<ReadMap<'static>>>,
    write: Option<Mapping<WriteMap<'static>>>,
}

pub(crate) struct ObjH {
    // Declared first: mappings go before the object.
    cpu: Mutex<Cpu>,
    pub obj: Object,
    /// The handle of the object's list from `ub_obj_get_attr_list` (0: none yet). `SeqCst`, as
    /// the registry's tokens: see `ub_obj_get_attr_list`.
    list: AtomicUsize,
}

impl ObjH {
    pub(crate) fn new(obj: Object) -> ObjH {
        ObjH {
            cpu: Mutex::new(Cpu::default()),
            obj,
            list: AtomicUsize::new(0),
        }
    }
}

pub(crate) fn new_obj(o: Object) -> R<*mut ub_obj> {
    handle::insert(Arc::new(ObjH::new(o)))
}

pub(crate) fn perm_arg(p: u32, what: &str, auto_ok: bool) -> R<Option<Permission>> {
    match p {
        0 if auto_ok => Ok(None),
        p => Permission::from_code(p).map(Some).ok_or_else(|| {
            Fail::bad(format!(
                "{what}: {p} is not a permission (UB_PERM_READ_ONLY or UB_PERM_READ_WRITE{})",
                if auto_ok { ", or UB_PERM_AUTO" } else { "" }
            ))
        }),
    }
}

fn obj_out(out: *mut *mut ub_obj, o: Object, what: &str) -> R<()> {
    ffi::out(out, what, "obj")?;
    let h = new_obj(o)?;
    // SAFETY: checked by `ffi::out`.
    unsafe { ffi::put(out, h) };
    Ok(())
}

/// Allocates one buffer for a reconciled list from the best backend the machine has (DMA-BUF
/// heaps, udmabuf, DRM dumb buffers, memfd: the list's memory requirement decides). The handle
/// holds the list's permission. (`NvSciBufObjAlloc`.) Thread-safe.
///
/// # Safety
/// `obj` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_alloc(
    reconciled: *const ub_attr_list,
    obj: *mut *mut ub_obj,
) -> ub_status {
    guard(|| {
        let what = "ub_obj_alloc";
        let r = Arc::new(attr::reconciled_of(reconciled, what)?);
        ffi::out(obj, what, "obj")?;
        obj_out(obj, adapt::allocate(&r)?, what)
    })
}

use crate::attr::ub_attr_list;

/// Reconciles lists and allocates one buffer for the result. On a conflict: as
/// `ub_attr_list_reconcile`. (`NvSciBufAttrListReconcileAndObjAlloc`.) Thread-safe.
///
/// # Safety
/// `lists` points to `count` handles; `obj` (and `conflict`, unless NULL) to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_reconcile_and_obj_alloc(
    lists: *const *const ub_attr_list,
    count: usize,
    obj: *mut *mut ub_obj,
    conflict: *mut *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_reconcile_and_obj_alloc";
        ffi::out(obj, what, "obj")?;
        // SAFETY: the caller's contract.
        let r = unsafe { reconcile_handles(lists, count, conflict, what, |r| Ok(Arc::new(r))) }?;
        obj_out(obj, adapt::allocate(&r)?, what)
    })
}

/// Imports a buffer made elsewhere (a GPU's dma-buf, a V4L2 `EXPBUF`, another process's fd)
/// for a reconciled list, with `permission` (`UB_PERM_READ_ONLY` or `UB_PERM_READ_WRITE`). The
/// fd is duplicated: the caller keeps (and closes) `fd`. Checks that it is a dma-buf (or a
/// sealed memfd for a CPU-only list) at least as large as the list, and opened for writing when
/// read-write is asked. Thread-safe.
///
/// # Safety
/// `obj` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_import_fd(
    fd: i32,
    reconciled: *const ub_attr_list,
    permission: u32,
    obj: *mut *mut ub_obj,
) -> ub_status {
    guard(|| {
        let what = "ub_obj_import_fd";
        let r = Arc::new(attr::reconciled_of(reconciled, what)?);
        let perm = perm_arg(permission, what, false)?.unwrap_or(Permission::ReadOnly);
        ffi::out(obj, what, "obj")?;
        let owned = dup_raw_fd(fd, what)?;
        obj_out(obj, adapt::import_fd(owned, &r, perm)?, what)
    })
}

pub(crate) fn dup_raw_fd(fd: i32, what: &str) -> R<rustix::fd::OwnedFd> {
    if fd < 0 {
        return Err(Fail::bad(format!("{what}: fd {fd} is not an fd")));
    }
    // SAFETY: only borrowed for the duplication; an fd number that is not open makes fcntl fail
    // with EBADF, which is reported.
    let b = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_dupfd_cloexec(b, 0).map_err(|e| {
        Fail::from(unibuf_rs::Error::sys(
            "F_DUPFD_CLOEXEC",
            format!("fd {fd}"),
            e,
        ))
    })
}

/// A second handle of the same buffer with the same permission (new fds). (`NvSciBufObjDup`.)
/// Thread-safe.
///
/// # Safety
/// `dup` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_dup(obj: *const ub_obj, dup: *mut *mut ub_obj) -> ub_status {
    guard(|| {
        let what = "ub_obj_dup";
        let o = handle::get::<Arc<ObjH>, _>(obj, what)?;
        ffi::out(dup, what, "dup")?;
        obj_out(dup, adapt::dup(&o.obj)?, what)
    })
}

/// A second handle with `permission`, at most this handle's (read-write to read-only is
/// allowed, the other way is `UB_ERR_ACCESS_DENIED`). A read-only handle of a memfd-backed
/// buffer holds `O_RDONLY` fds, so even its fd cannot be mapped writable.
/// (`NvSciBufObjDupWithReducePerm`.) Thread-safe.
///
/// # Safety
/// `dup` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_dup_with_reduced_perm(
    obj: *const ub_obj,
    permission: u32,
    dup: *mut *mut ub_obj,
) -> ub_status {
    guard(|| {
        let what = "ub_obj_dup_with_reduced_perm";
        let o = handle::get::<Arc<ObjH>, _>(obj, what)?;
        let perm = perm_arg(permission, what, false)?.unwrap_or(Permission::ReadOnly);
        ffi::out(dup, what, "dup")?;
        obj_out(dup, adapt::dup_with(&o.obj, perm)?, what)
    })
}

/// Frees an object handle: its CPU mappings are unmapped, its fds closed (other handles of the
/// buffer, in this process or others, keep it alive), the list from `ub_obj_get_attr_list`
/// freed. (`NvSciBufObjFree`.) Thread-safe; a second free is `UB_ERR_BAD_PARAMETER`. Pointers
/// from `ub_obj_get_cpu_ptr` die here.
#[no_mangle]
pub extern "C" fn ub_obj_free(obj: *mut ub_obj) -> ub_status {
    guard(|| {
        let o = handle::remove::<Arc<ObjH>, _>(obj, "ub_obj_free")?;
        // See `ub_obj_get_attr_list`: a list made while this free ran is freed by one side.
        let t = o.list.load(SeqCst);
        if t != 0 {
            let _ = handle::free::<ListH, _>(t as *const u8, "ub_obj_free");
        }
        drop(o);
        Ok(())
    })
}

/// The object's reconciled list. The handle belongs to the object (do not free it; it is valid
/// until the object is freed, the same handle on every call). (`NvSciBufObjGetAttrList`.)
/// Thread-safe.
///
/// # Safety
/// `list` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_get_attr_list(
    obj: *const ub_obj,
    list: *mut *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_obj_get_attr_list";
        let o = handle::get::<Arc<ObjH>, _>(obj, what)?;
        ffi::out(list, what, "list")?;
        let mut t = o.list.load(SeqCst);
        if t == 0 {
            let h = attr::new_list(ListState::Reconciled((**o.obj.list()).clone()))? as usize;
            t = match o.list.compare_exchange(0, h, SeqCst, SeqCst) {
                Ok(_) => h,
                Err(first) => {
                    // Another thread made it first: keep that one.
                    let _ = handle::free::<ListH, _>(h as *const u8, what);
                    first
                }
            };
            // If the object was freed meanwhile, its free may not have seen this list (it
            // looks after unlinking the object): free it here, or it would live on. The list's
            // store, the object's unlink and both sides' loads are `SeqCst`, in one total
            // order: the free sees the list, or this lookup sees the object gone (or both, and
            // one of the two frees of the list wins).
            if handle::pinned(|g| handle::borrow::<Arc<ObjH>, _>(obj, what, g).is_err()) {
                let _ = handle::free::<ListH, _>(t as *const u8, what);
                return Err(Fail::bad(format!("{what}: the object was freed meanwhile")));
            }
        }
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(list, t as *mut ub_attr_list) };
        Ok(())
    })
}

/// The buffer's fd (a dma-buf, or the memfd of a CPU-only buffer), borrowed: it belongs to the
/// handle and is closed by `ub_obj_free`. Thread-safe.
///
/// # Safety
/// `fd` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_get_fd(obj: *const ub_obj, fd: *mut i32) -> ub_status {
    guard(|| {
        use rustix::fd::AsRawFd;
        let o = handle::get::<Arc<ObjH>, _>(obj, "ub_obj_get_fd")?;
        ffi::out(fd, "ub_obj_get_fd", "fd")?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(fd, o.obj.fd().as_raw_fd()) };
        Ok(())
    })
}

/// A duplicate of the buffer's fd (`F_DUPFD_CLOEXEC`) that the caller owns and closes.
/// Thread-safe.
///
/// # Safety
/// `fd` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_dup_fd(obj: *const ub_obj, fd: *mut i32) -> ub_status {
    guard(|| {
        use rustix::fd::{AsRawFd, IntoRawFd};
        let o = handle::get::<Arc<ObjH>, _>(obj, "ub_obj_dup_fd")?;
        ffi::out(fd, "ub_obj_dup_fd", "fd")?;
        let d = dup_raw_fd(o.obj.fd().as_raw_fd(), "ub_obj_dup_fd")?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(fd, d.into_raw_fd()) };
        Ok(())
    })
}

/// This handle's permission (`ub_permission`). Thread-safe.
///
/// # Safety
/// `permission` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_get_permission(
    obj: *const ub_obj,
    permission: *mut u32,
) -> ub_status {
    guard(|| {
        let o = handle::get::<Arc<ObjH>, _>(obj, "ub_obj_get_permission")?;
        ffi::out(permission, "ub_obj_get_permission", "permission")?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(permission, o.obj.permission().code()) };
        Ok(())
    })
}

/// The buffer's size in bytes (page-rounded for allocations; the fd's size for imports).
/// Thread-safe.
///
/// # Safety
/// `size` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_get_size(obj: *const ub_obj, size: *mut u64) -> ub_status {
    guard(|| {
        let o = handle::get::<Arc<ObjH>, _>(obj, "ub_obj_get_size")?;
        ffi::out(size, "ub_obj_get_size", "size")?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(size, o.obj.size()) };
        Ok(())
    })
}

/// A writable CPU pointer to the whole buffer (see the module's CPU pointer contract):
/// `UB_ERR_ACCESS_DENIED` for a read-only handle or when no list asked for CPU access.
/// (`NvSciBufObjGetCpuPtr`.) Thread-safe; the pointer is valid until `ub_obj_free`.
///
/// # Safety
/// `ptr` points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_get_cpu_ptr(
    obj: *const ub_obj,
    ptr: *mut *mut c_void,
) -> ub_status {
    guard(|| {
        let what = "ub_obj_get_cpu_ptr";
        let o = handle::get::<Arc<ObjH>, _>(obj, what)?;
        ffi::out(ptr, what, "ptr")?;
        if o.obj.permission() != Permission::ReadWrite {
            return Err(Fail::new(
                UB_ERR_ACCESS_DENIED,
                format!(
                    "{what}: this handle is {}; a writable pointer needs a read-write handle \
                     (ub_obj_get_const_cpu_ptr gives a read-only one)",
                    o.obj.permission()
                ),
            ));
        }
        let mut cpu = attr::lock(&o.cpu);
        if cpu.write.is_none() {
            cpu.write = Some(mapping(&o.obj, adapt::map_write, |m| {
                m.as_ptr().cast_mut()
            })?);
        }
        let p = cpu.write.as_ref().map_or(std::ptr::null_mut(), |m| m.ptr);
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(ptr, p.cast()) };
        Ok(())
    })
}

/// A read-only CPU pointer to the whole buffer, for any handle whose lists asked for CPU access
/// (for a read-write handle that already has a writable pointer, the same address). A store
/// through it faults for a read-only handle (`PROT_READ`). (`NvSciBufObjGetConstCpuPtr`.)
/// Thread-safe; the pointer is valid until `ub_obj_free`.
///
/// # Safety
/// `ptr` points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn ub_obj_get_const_cpu_ptr(
    obj: *const ub_obj,
    ptr: *mut *const c_void,
) -> ub_status {
    guard(|| {
        let what = "ub_obj_get_const_cpu_ptr";
        let o = handle::get::<Arc<ObjH>, _>(obj, what)?;
        ffi::out(ptr, what, "ptr")?;
        let mut cpu = attr::lock(&o.cpu);
        let p = if let Some(w) = &cpu.write {
            w.ptr
        } else {
            if cpu.read.is_none() {
                cpu.read = Some(mapping(
                    &o.obj,
                    |d| adapt::map_read(d),
                    |m| m.as_ptr().cast_mut(),
                )?);
            }
            cpu.read.as_ref().map_or(std::ptr::null_mut(), |m| m.ptr)
        };
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(ptr, p.cast_const().cast()) };
        Ok(())
    })
}

fn dir_arg(o: &ObjH, access: u32, what: &str) -> R<SyncDir> {
    let dir = match access {
        x if x == UB_CPU_READ as u32 => SyncDir::Read,
        x if x == UB_CPU_WRITE as u32 => SyncDir::Write,
        x if x == UB_CPU_READ_WRITE as u32 => SyncDir::ReadWrite,
        x => {
            return Err(Fail::bad(format!(
                "{what}: {x} is not a ub_cpu_access (UB_CPU_READ, UB_CPU_WRITE, UB_CPU_READ_WRITE)"
            )))
        }
    };
    if dir != SyncDir::Read && o.obj.permission() != Permission::ReadWrite {
        return Err(Fail::new(
            UB_ERR_ACCESS_DENIED,
            format!("{what}: a write access needs a read-write handle; this one is read-only"),
        ));
    }
    Ok(dir)
}

/// Begins a CPU access in direction `access` (`DMA_BUF_IOCTL_SYNC` START; retried on EINTR):
/// caches are made coherent for the CPU. A write direction needs a read-write handle. Pair
/// every begin with an end of the same direction. Thread-safe.
#[no_mangle]
pub extern "C" fn ub_obj_begin_cpu_access(obj: *const ub_obj, access: u32) -> ub_status {
    guard(|| {
        let what = "ub_obj_begin_cpu_access";
        let o = handle::get::<Arc<ObjH>, _>(obj, what)?;
        let dir = dir_arg(&o, access, what)?;
        Ok(adapt::sync_start(&o.obj, dir)?)
    })
}

/// Ends a CPU access (`DMA_BUF_IOCTL_SYNC` END): the CPU's writes become visible to devices.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn ub_obj_end_cpu_access(obj: *const ub_obj, access: u32) -> ub_status {
    guard(|| {
        let what = "ub_obj_end_cpu_access";
        let o = handle::get::<Arc<ObjH>, _>(obj, what)?;
        let dir = dir_arg(&o, access, what)?;
        Ok(adapt::sync_end(&o.obj, dir)?)
    })
}

/// Makes the CPU's writes to `offset .. offset + len` visible to devices now (END then START
/// again, so an open access stays open; the kernel syncs whole buffers, the range is checked
/// against the buffer). (`NvSciBufObjFlushCpuCacheRange`.) Thread-safe.
#[no_mangle]
pub extern "C" fn ub_obj_flush_cpu_cache_range(
    obj: *const ub_obj,
    offset: u64,
    len: u64,
) -> ub_status {
    guard(|| {
        let what = "ub_obj_flush_cpu_cache_range";
        let o = handle::get::<Arc<ObjH>, _>(obj, what)?;
        let size = o.obj.size();
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(Fail::bad(format!(
                "{what}: {len} bytes at offset {offset} do not fit in the {size}-byte buffer"
            )));
        }
        let dir = match o.obj.permission() {
            Permission::ReadWrite => SyncDir::ReadWrite,
            Permission::ReadOnly => SyncDir::Read,
        };
        adapt::sync_end(&o.obj, dir)?;
        Ok(adapt::sync_start(&o.obj, dir)?)
    })
}
