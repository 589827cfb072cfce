//! Endpoints (path, abstract name, socketpair, an existing fd), listeners, and the export and
//! import of unreconciled lists, reconciled lists and objects.
//!
//! An endpoint is used by one call at a time: concurrent calls on one endpoint from several
//! threads are serialized (a receive blocks the other calls on that endpoint until it returns).

use crate::adapt;
use crate::attr::{self, owned_inputs, ub_attr_list, ListState};
use crate::ffi;
use crate::handle;
use crate::object::{new_obj, perm_arg, ub_obj, ObjH};
use crate::status::{guard, ub_status, Fail, R, UB_ERR_TIMEOUT};
use std::ffi::c_char;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use unibuf_rs::attr::AttrList;
use unibuf_rs::ipc::{Endpoint, Listener};

/// A connected Unix socket to a peer. (NvSciIpc's endpoint.)
pub struct ub_endpoint {
    _opaque: [u8; 0],
}

/// A socket that accepts endpoints.
pub struct ub_listener {
    _opaque: [u8; 0],
}

/// The endpoint, and the receive timeout last set on its socket (so a call with the same
/// timeout costs no `setsockopt`).
pub(crate) struct EndpointH(Mutex<(Endpoint, Option<i64>)>);
pub(crate) struct ListenerH(Listener);

/// Wait forever (a `timeout_ms` value).
pub const UB_TIMEOUT_INFINITE: i64 = -1;

fn timeout(ms: i64) -> Option<Duration> {
    // 0 would mean "forever" to SO_RCVTIMEO: make it the shortest wait instead.
    (ms >= 0).then(|| Duration::from_millis(ms.max(1) as u64))
}

fn ep_out(out: *mut *mut ub_endpoint, ep: Endpoint) -> R<()> {
    let h = handle::insert(Arc::new(EndpointH(Mutex::new((ep, None)))))?;
    // SAFETY: checked by `ffi::out` by every caller.
    unsafe { ffi::put(out, h) };
    Ok(())
}

/// Connects to a listener bound to a filesystem path. Thread-safe.
///
/// # Safety
/// `path` is a NUL-terminated string; `ep` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_endpoint_connect(
    path: *const c_char,
    ep: *mut *mut ub_endpoint,
) -> ub_status {
    guard(|| {
        let what = "ub_endpoint_connect";
        // SAFETY: the caller's contract.
        let p = unsafe { ffi::string(path, what, "path") }?;
        ffi::out(ep, what, "ep")?;
        ep_out(ep, Endpoint::connect(p)?)
    })
}

/// Connects to a listener bound to an abstract socket name (no file). Thread-safe.
///
/// # Safety
/// `name` is a NUL-terminated string; `ep` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_endpoint_connect_abstract(
    name: *const c_char,
    ep: *mut *mut ub_endpoint,
) -> ub_status {
    guard(|| {
        let what = "ub_endpoint_connect_abstract";
        // SAFETY: the caller's contract.
        let n = unsafe { ffi::string(name, what, "name") }?;
        ffi::out(ep, what, "ep")?;
        ep_out(ep, Endpoint::connect_abstract(n)?)
    })
}

/// A connected pair of endpoints (`socketpair`), e.g. for a child after `fork`. Thread-safe.
///
/// # Safety
/// `a` and `b` point to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_endpoint_pair(
    a: *mut *mut ub_endpoint,
    b: *mut *mut ub_endpoint,
) -> ub_status {
    guard(|| {
        let what = "ub_endpoint_pair";
        ffi::out(a, what, "a")?;
        ffi::out(b, what, "b")?;
        let (x, y) = Endpoint::pair()?;
        let hx: *mut ub_endpoint = handle::insert(Arc::new(EndpointH(Mutex::new((x, None)))))?;
        let hy = match handle::insert(Arc::new(EndpointH(Mutex::new((y, None))))) {
            Ok(h) => h,
            Err(e) => {
                let _ = handle::free::<Arc<EndpointH>, _>(hx.cast_const(), what);
                return Err(e);
            }
        };
        // SAFETY: checked by `ffi::out`.
        unsafe {
            ffi::put(a, hx);
            ffi::put(b, hy);
        }
        Ok(())
    })
}

/// An endpoint over an already connected `SOCK_SEQPACKET` Unix socket `fd` (inherited, or from
/// another library). The fd is duplicated: the caller keeps (and closes) `fd`. Thread-safe.
///
/// # Safety
/// `ep` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_endpoint_from_fd(fd: i32, ep: *mut *mut ub_endpoint) -> ub_status {
    guard(|| {
        let what = "ub_endpoint_from_fd";
        ffi::out(ep, what, "ep")?;
        let owned = crate::object::dup_raw_fd(fd, what)?;
        ep_out(ep, Endpoint::from_owned(owned, format!("fd {fd}"))?)
    })
}

/// The endpoint's socket fd, borrowed (for `poll`; it belongs to the endpoint). Thread-safe.
///
/// # Safety
/// `fd` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_endpoint_get_fd(ep: *const ub_endpoint, fd: *mut i32) -> ub_status {
    guard(|| {
        use rustix::fd::AsRawFd;
        let e = handle::get::<Arc<EndpointH>, _>(ep, "ub_endpoint_get_fd")?;
        ffi::out(fd, "ub_endpoint_get_fd", "fd")?;
        let raw = attr::lock(&e.0).0.as_fd().as_raw_fd();
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(fd, raw) };
        Ok(())
    })
}

/// Closes an endpoint. Thread-safe; a second free is `UB_ERR_BAD_PARAMETER`.
#[no_mangle]
pub extern "C" fn ub_endpoint_free(ep: *mut ub_endpoint) -> ub_status {
    guard(|| handle::free::<Arc<EndpointH>, _>(ep, "ub_endpoint_free"))
}

/// Binds a listener to a filesystem path (the socket file is removed when the listener is
/// freed). Thread-safe.
///
/// # Safety
/// `path` is a NUL-terminated string; `listener` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_listener_bind(
    path: *const c_char,
    listener: *mut *mut ub_listener,
) -> ub_status {
    guard(|| {
        let what = "ub_listener_bind";
        // SAFETY: the caller's contract.
        let p = unsafe { ffi::string(path, what, "path") }?;
        ffi::out(listener, what, "listener")?;
        let h = handle::insert(Arc::new(ListenerH(Listener::bind(p)?)))?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(listener, h) };
        Ok(())
    })
}

/// Binds a listener to an abstract socket name. Thread-safe.
///
/// # Safety
/// `name` is a NUL-terminated string; `listener` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_listener_bind_abstract(
    name: *const c_char,
    listener: *mut *mut ub_listener,
) -> ub_status {
    guard(|| {
        let what = "ub_listener_bind_abstract";
        // SAFETY: the caller's contract.
        let n = unsafe { ffi::string(name, what, "name") }?;
        ffi::out(listener, what, "listener")?;
        let h = handle::insert(Arc::new(ListenerH(Listener::bind_abstract(n)?)))?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(listener, h) };
        Ok(())
    })
}

/// Waits up to `timeout_ms` (`UB_TIMEOUT_INFINITE`: forever) for a connection:
/// `UB_ERR_TIMEOUT` when none came. Thread-safe.
///
/// # Safety
/// `ep` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_listener_accept(
    listener: *const ub_listener,
    timeout_ms: i64,
    ep: *mut *mut ub_endpoint,
) -> ub_status {
    guard(|| {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let what = "ub_listener_accept";
        let l = handle::get::<Arc<ListenerH>, _>(listener, what)?;
        ffi::out(ep, what, "ep")?;
        if let Some(t) = timeout(timeout_ms) {
            let lfd = l.0.as_fd();
            let mut fds = [PollFd::new(&lfd, PollFlags::IN)];
            let ts = Timespec {
                tv_sec: t.as_secs() as i64,
                tv_nsec: i64::from(t.subsec_nanos()),
            };
            let n = loop {
                match poll(&mut fds, Some(&ts)) {
                    Err(rustix::io::Errno::INTR) => continue,
                    r => break r.map_err(|e| unibuf_rs::Error::sys("poll", "listener", e))?,
                }
            };
            if n == 0 {
                return Err(Fail::new(
                    UB_ERR_TIMEOUT,
                    format!("{what}: no connection within {timeout_ms} ms"),
                ));
            }
        }
        ep_out(ep, l.0.accept()?)
    })
}

/// Closes a listener. Thread-safe; a second free is `UB_ERR_BAD_PARAMETER`.
#[no_mangle]
pub extern "C" fn ub_listener_free(listener: *mut ub_listener) -> ub_status {
    guard(|| handle::free::<Arc<ListenerH>, _>(listener, "ub_listener_free"))
}

/// Runs `f` on the endpoint handle `ep` (see [`on_ep`]).
fn with_ep<T>(
    ep: *const ub_endpoint,
    timeout_ms: Option<i64>,
    what: &str,
    f: impl FnOnce(&mut Endpoint) -> R<T>,
) -> R<T> {
    let e = handle::get::<Arc<EndpointH>, _>(ep, what)?;
    on_ep(&e, timeout_ms, f)
}

/// Runs `f` on an endpoint, serialized with the other calls on it, with its receive timeout set
/// to `timeout_ms` (`None`: left as it is).
fn on_ep<T>(e: &EndpointH, timeout_ms: Option<i64>, f: impl FnOnce(&mut Endpoint) -> R<T>) -> R<T> {
    let mut g = attr::lock(&e.0);
    let (ep, last) = &mut *g;
    if let Some(ms) = timeout_ms {
        let ms = ms.max(-1);
        if *last != Some(ms) {
            adapt::set_timeout(ep, timeout(ms))?;
            *last = Some(ms);
        }
    }
    f(ep)
}

/// # Safety
/// `own` points to `count` handles.
unsafe fn own_lists(
    own: *const *const ub_attr_list,
    count: usize,
    what: &str,
) -> R<Option<Vec<AttrList>>> {
    if count == 0 {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    Ok(Some(unsafe { owned_inputs(own, count, what) }?))
}

/// Exports unreconciled (or appended) lists to the peer, one slot per list.
/// (`NvSciBufAttrListIpcExportUnreconciled`.) Thread-safe.
///
/// # Safety
/// `lists` points to `count` handles.
#[no_mangle]
pub unsafe extern "C" fn ub_ipc_export_attr_lists(
    ep: *const ub_endpoint,
    lists: *const *const ub_attr_list,
    count: usize,
) -> ub_status {
    guard(|| {
        let what = "ub_ipc_export_attr_lists";
        // SAFETY: the caller's contract.
        // Copies: the send may block, and no list is borrowed across I/O.
        let ls = unsafe { owned_inputs(lists, count, what) }?;
        with_ep(ep, None, what, |e| Ok(adapt::export_lists(e, &ls)?))
    })
}

/// Imports the peer's unreconciled lists as one appended list (a slot per list; reconcile it
/// with this side's lists). Every imported key goes through the same set-once rules as a local
/// set. Waits up to `timeout_ms`. (`NvSciBufAttrListIpcImportUnreconciled`.) Thread-safe.
///
/// # Safety
/// `list` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_ipc_import_attr_lists(
    ep: *const ub_endpoint,
    timeout_ms: i64,
    list: *mut *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_ipc_import_attr_lists";
        ffi::out(list, what, "list")?;
        let slots = with_ep(ep, Some(timeout_ms), what, |e| Ok(adapt::import_lists(e)?))?;
        let m = AttrList::append(&slots);
        let h = attr::new_list(ListState::Multi(Arc::new(m)))?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(list, h) };
        Ok(())
    })
}

/// Exports a reconciled list. (`NvSciBufAttrListIpcExportReconciled`.) Thread-safe.
#[no_mangle]
pub extern "C" fn ub_ipc_export_reconciled(
    ep: *const ub_endpoint,
    reconciled: *const ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_ipc_export_reconciled";
        let r = attr::reconciled_of(reconciled, what)?;
        with_ep(ep, None, what, |e| Ok(adapt::export_reconciled(e, &r)?))
    })
}

/// Imports a reconciled list: the importer recomputes it from its inputs and, when `own` lists
/// are given (`own_count > 0`), validates it against them (`UB_ERR_ATTR_LIST_VALIDATION_FAILED`
/// naming each key not met). Waits up to `timeout_ms`.
/// (`NvSciBufAttrListIpcImportReconciled`.) Thread-safe.
///
/// # Safety
/// `own` points to `own_count` handles; `reconciled` to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_ipc_import_reconciled(
    ep: *const ub_endpoint,
    own: *const *const ub_attr_list,
    own_count: usize,
    timeout_ms: i64,
    reconciled: *mut *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_ipc_import_reconciled";
        // SAFETY: the caller's contract.
        let own = unsafe { own_lists(own, own_count, what) }?;
        ffi::out(reconciled, what, "reconciled")?;
        let r = with_ep(ep, Some(timeout_ms), what, |e| {
            Ok(adapt::import_reconciled(e, own.as_deref())?)
        })?;
        let h = attr::new_list(ListState::Reconciled(r))?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(reconciled, h) };
        Ok(())
    })
}

/// Exports an object, granting the peer `permission` (at most this handle's). The fd travels by
/// `SCM_RIGHTS` with the object's reconciled list. (`NvSciBufObjIpcExport`.) Thread-safe.
#[no_mangle]
pub extern "C" fn ub_ipc_export_obj(
    ep: *const ub_endpoint,
    obj: *const ub_obj,
    permission: u32,
) -> ub_status {
    guard(|| {
        let what = "ub_ipc_export_obj";
        // Both handles under one pin.
        let (o, e) = handle::pinned(|g| {
            let o = handle::borrow::<Arc<ObjH>, _>(obj, what, g)?.clone();
            Ok::<_, Fail>((o, handle::borrow::<Arc<EndpointH>, _>(ep, what, g)?.clone()))
        })?;
        let perm = perm_arg(permission, what, false)?.unwrap_or(o.obj.permission());
        on_ep(&e, None, |e| Ok(adapt::export_object(e, &o.obj, perm)?))
    })
}

/// Imports an object with `permission` (`UB_PERM_AUTO`: the highest the `own` lists require;
/// asking more than the exporter granted is `UB_ERR_ACCESS_DENIED`). With `own` lists the
/// object's list is validated against them. Every fd is checked (a dma-buf or sealed memfd of
/// at least the list's size; a read-only holder of a memfd gets an `O_RDONLY` fd). Waits up to
/// `timeout_ms`. (`NvSciBufObjIpcImport`.) Thread-safe.
///
/// # Safety
/// `own` points to `own_count` handles; `obj` to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_ipc_import_obj(
    ep: *const ub_endpoint,
    permission: u32,
    own: *const *const ub_attr_list,
    own_count: usize,
    timeout_ms: i64,
    obj: *mut *mut ub_obj,
) -> ub_status {
    guard(|| {
        let what = "ub_ipc_import_obj";
        let perm = perm_arg(permission, what, true)?;
        // SAFETY: the caller's contract.
        let own = unsafe { own_lists(own, own_count, what) }?;
        ffi::out(obj, what, "obj")?;
        let o = with_ep(ep, Some(timeout_ms), what, |e| {
            Ok(adapt::import_object(e, perm, own.as_deref())?)
        })?;
        let h = new_obj(o)?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(obj, h) };
        Ok(())
    })
}
