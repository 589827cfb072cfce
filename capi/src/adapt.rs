//! The narrow adapters between the C API and the Rust API: every call into the library whose
//! signature or rules may change (allocation, import, permissions, CPU maps, IPC) goes through
//! one function here, so a change of the Rust API touches these lines and not the C functions.

use std::sync::Arc;
use std::time::Duration;
use unibuf_rs::attr::{AttrList, Permission};
use unibuf_rs::ipc::{Endpoint, Requested};
use unibuf_rs::map::{ReadMap, SyncDir, WriteMap};
use unibuf_rs::object::Object;
use unibuf_rs::reconcile::{Conflict, Reconciled};
use unibuf_rs::Result;

/// Reconciles lists.
#[inline]
pub(crate) fn reconcile(lists: &[&AttrList]) -> std::result::Result<Reconciled, Conflict> {
    unibuf_rs::reconcile::reconcile(lists.iter().copied())
}

/// Allocates one object for a reconciled list (the allocator holds the list's permission).
pub(crate) fn allocate(list: &Arc<Reconciled>) -> Result<Object> {
    Object::allocate(list)
}

/// A second handle of the same buffer.
pub(crate) fn dup(obj: &Object) -> Result<Object> {
    obj.dup()
}

/// A second handle with at most this handle's permission.
pub(crate) fn dup_with(obj: &Object, perm: Permission) -> Result<Object> {
    obj.dup_with(perm)
}

/// Imports a foreign dma-buf (or memfd) fd for a reconciled list.
pub(crate) fn import_fd(
    fd: rustix::fd::OwnedFd,
    list: &Arc<Reconciled>,
    perm: Permission,
) -> Result<Object> {
    Object::import(fd, list, perm)
}

/// A read-only CPU mapping (the library's rules: CPU access asked by the list, mappable).
pub(crate) fn map_read(obj: &Object) -> Result<ReadMap<'_>> {
    obj.map_read()
}

/// A writable CPU mapping (refused for read-only handles).
pub(crate) fn map_write(obj: &mut Object) -> Result<WriteMap<'_>> {
    obj.map_write()
}

/// `DMA_BUF_IOCTL_SYNC` START (no-op for CPU-only memfd objects).
pub(crate) fn sync_start(obj: &Object, dir: SyncDir) -> Result<()> {
    if obj.is_dma_buf() {
        unibuf_rs::map::sync_start(obj.fd(), dir)?;
    }
    Ok(())
}

/// `DMA_BUF_IOCTL_SYNC` END (no-op for CPU-only memfd objects).
pub(crate) fn sync_end(obj: &Object, dir: SyncDir) -> Result<()> {
    if obj.is_dma_buf() {
        unibuf_rs::map::sync_end(obj.fd(), dir)?;
    }
    Ok(())
}

/// Sets the receive timeout of an endpoint (`None`: wait forever).
pub(crate) fn set_timeout(ep: &Endpoint, t: Option<Duration>) -> Result<()> {
    ep.set_recv_timeout(t)
}

/// Exports unreconciled lists.
pub(crate) fn export_lists<'a>(
    ep: &mut Endpoint,
    lists: impl IntoIterator<Item = &'a AttrList>,
) -> Result<()> {
    ep.export_lists(lists)
}

/// Imports unreconciled lists (one per slot).
pub(crate) fn import_lists(ep: &mut Endpoint) -> Result<Vec<AttrList>> {
    Ok(ep.import_lists()?.slots)
}

/// Exports a reconciled list.
pub(crate) fn export_reconciled(ep: &mut Endpoint, r: &Reconciled) -> Result<()> {
    ep.export_reconciled(r)
}

/// Imports a reconciled list, validated against `own` when given.
pub(crate) fn import_reconciled(ep: &mut Endpoint, own: Option<&[AttrList]>) -> Result<Reconciled> {
    ep.import_reconciled(own)
}

/// Exports an object granting `perm`.
pub(crate) fn export_object(ep: &mut Endpoint, obj: &Object, perm: Permission) -> Result<()> {
    ep.export_object(obj, perm)
}

/// Imports an object with the requested permission (`None`: what `own` requires).
pub(crate) fn import_object(
    ep: &mut Endpoint,
    perm: Option<Permission>,
    own: Option<&[AttrList]>,
) -> Result<Object> {
    let req = match perm {
        Some(p) => Requested::from(p),
        None => Requested::Auto,
    };
    ep.import_object(req, own)
}
