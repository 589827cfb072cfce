//! The typed layer: attribute lists and reconciled lists of the library over the wire.
//!
//! Every attribute travels as one entry: the key's stable code ([`Key::code`]), the
//! must-understand flag, and a `Bytes` value holding the value's own wire form
//! ([`Value::encode`]); the key decides how the bytes are read ([`Value::decode`]). Imported
//! entries go through [`AttrList::set`], so the receiving side applies every rule a local caller
//! meets (set once, no output keys in an unreconciled list, keys of the list's buffer types only,
//! ranges).
//!
//! Unknown keys (from a newer peer): an entry whose code this build does not know, or whose value
//! uses a tag it does not know, is skipped and reported in `skipped` when the sender did not mark
//! it must-understand; otherwise the whole message is refused. This build marks every key
//! must-understand except the informational `accessor_name`.

use super::endpoint::Endpoint;
use super::ops::{negotiate, unexpected, CheckedObject, Requested};
use super::wire::{
    decode_reconciled_body, Encoder, EntryRef, ErrorCode, FdKind, Kind, ObjectHeader, ValueRef,
    WireEntry, WireError, WireList, WireReconciled, WireValue,
};
use crate::attr::{AttrList, BackendKind, Key, MultiList, Permission, Value};
use crate::error::{Error, Result};
use crate::fd::Identified;
use crate::object::Object;
use crate::reconcile::Reconciled;
use rustix::fd::BorrowedFd;
use std::sync::Arc;

/// Lists imported from a peer, with the keys that were skipped under the unknown-key rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedLists {
    /// The lists, one per slot (reconcile takes them as they are; [`ImportedLists::multi`]
    /// makes core's multi-slot list).
    pub slots: Vec<AttrList>,
    /// Codes of the keys that were skipped (unknown to this build, not must-understand), with
    /// their slot.
    pub skipped: Vec<(usize, u16)>,
}

impl ImportedLists {
    /// The lists as one read-only multi-slot list.
    pub fn multi(&self) -> MultiList {
        AttrList::append(&self.slots)
    }
}

/// Whether the receiver must refuse a message carrying `key` when it does not know it.
fn must_understand(key: Key) -> bool {
    key != Key::AccessorName
}

fn entry(key: Key, value: &Value) -> WireEntry {
    let mut b = Vec::with_capacity(16);
    value.encode(&mut b);
    WireEntry {
        key: key.code(),
        must_understand: must_understand(key),
        value: WireValue::Bytes(b),
    }
}

/// The wire form of one list.
pub fn list_to_wire(list: &AttrList) -> WireList {
    WireList {
        entries: list.iter().map(|(k, v)| entry(k, v)).collect(),
    }
}

/// The slot that marks the outputs of a reconciled list (not an input list).
const OUTPUTS: usize = usize::MAX;

/// How errors name a slot: `list 2`, or `reconciled outputs`.
fn slot_name(slot: usize) -> String {
    if slot == OUTPUTS {
        "reconciled outputs".to_string()
    } else {
        format!("list {slot}")
    }
}

/// An entry's value as the typed layer sees it.
enum V<'a> {
    Bytes(&'a [u8]),
    Unknown(u8),
}

/// Applies the unknown-key rule to one entry: `Some((key, bytes))` for a known attribute,
/// `None` for a skipped one (recorded in `skipped`), an error when it must be understood (an
/// unknown key, or a known key whose value has a tag this version does not know).
fn known<'a>(
    code: u16,
    must_understand: bool,
    value: V<'a>,
    slot: usize,
    skipped: &mut Vec<(usize, u16)>,
) -> Result<Option<(Key, &'a [u8])>> {
    let skip = |why: String, skipped: &mut Vec<(usize, u16)>| -> Result<Option<(Key, &'a [u8])>> {
        if must_understand {
            return Err(Error::Ipc(format!(
                "{}: {why}, which the peer marked must-understand (a newer version?)",
                slot_name(slot)
            )));
        }
        skipped.push((slot, code));
        Ok(None)
    };
    let Some(key) = Key::from_code(code) else {
        return skip(format!("unknown key {code:#06x}"), skipped);
    };
    match value {
        V::Bytes(b) => Ok(Some((key, b))),
        V::Unknown(tag) => skip(
            format!("key {key} with a value of unknown type {tag}"),
            skipped,
        ),
    }
}

fn wire_v(v: &WireValue) -> V<'_> {
    match v {
        WireValue::Bytes(b) => V::Bytes(b),
        WireValue::Unknown { tag, .. } => V::Unknown(*tag),
    }
}

fn ref_v<'a>(v: &'a ValueRef<'a>) -> V<'a> {
    match v {
        ValueRef::Bytes(b) => V::Bytes(b),
        ValueRef::Unknown { tag, .. } => V::Unknown(*tag),
    }
}

/// Builds a list from known entries: types first (other keys depend on them), each through
/// [`AttrList::set`].
fn build(entries: &[(Key, &[u8])], slot: usize) -> Result<AttrList> {
    let mut l = AttrList::new();
    let types = entries.iter().filter(|(k, _)| *k == Key::Types);
    let rest = entries.iter().filter(|(k, _)| *k != Key::Types);
    for (k, b) in types.chain(rest) {
        let v = Value::decode(*k, b).map_err(|e| Error::Ipc(format!("list {slot}: {e}")))?;
        l.set(*k, v)
            .map_err(|e| Error::Ipc(format!("list {slot}: {e}")))?;
    }
    // A peer's list: it never gives this process CPU access.
    l.mark_imported();
    Ok(l)
}

/// Rebuilds an unreconciled list from its wire form; every entry goes through [`AttrList::set`]
/// (types first, since other keys depend on them).
pub fn list_from_wire(
    w: &WireList,
    slot: usize,
    skipped: &mut Vec<(usize, u16)>,
) -> Result<AttrList> {
    let mut kv = Vec::with_capacity(w.entries.len());
    for e in &w.entries {
        if let Some(x) = known(e.key, e.must_understand, wire_v(&e.value), slot, skipped)? {
            kv.push(x);
        }
    }
    build(&kv, slot)
}

/// [`list_from_wire`] over entries decoded without copying.
pub fn list_from_entries(
    entries: &[EntryRef<'_>],
    slot: usize,
    skipped: &mut Vec<(usize, u16)>,
) -> Result<AttrList> {
    let mut kv = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(x) = known(e.key, e.must_understand, ref_v(&e.value), slot, skipped)? {
            kv.push(x);
        }
    }
    build(&kv, slot)
}

/// Writes one list straight into an encoder (no intermediate [`WireList`]).
pub fn put_list(enc: &mut Encoder, list: &AttrList) -> std::result::Result<(), WireError> {
    enc.put_list_head(list.len())?;
    for (k, v) in list.iter() {
        enc.put_bytes_entry(k.code(), must_understand(k), |b| v.encode(b))?;
    }
    Ok(())
}

/// The wire form of a reconciled list: its inputs and its outputs.
pub fn reconciled_to_wire(r: &Reconciled) -> WireReconciled {
    WireReconciled {
        inputs: r.inputs().iter().map(list_to_wire).collect(),
        outputs: WireList {
            entries: r.iter_outputs().map(|(k, v)| entry(k, v)).collect(),
        },
    }
}

/// Rebuilds a reconciled list from its wire form: reconciles the inputs again and requires the
/// very outputs that were sent ([`Reconciled::from_parts`]). A peer cannot make this side believe
/// in a layout that its inputs do not give.
pub fn reconciled_from_wire(w: &WireReconciled) -> Result<Reconciled> {
    let mut skipped = Vec::new();
    let inputs = w
        .inputs
        .iter()
        .enumerate()
        .map(|(i, l)| list_from_wire(l, i, &mut skipped))
        .collect::<Result<Vec<_>>>()?;
    let mut outputs = Vec::with_capacity(w.outputs.entries.len());
    for e in &w.outputs.entries {
        if let Some((k, b)) = known(
            e.key,
            e.must_understand,
            wire_v(&e.value),
            OUTPUTS,
            &mut skipped,
        )? {
            let v = Value::decode(k, b)
                .map_err(|e| Error::Ipc(format!("{}: {e}", slot_name(OUTPUTS))))?;
            outputs.push((k, v));
        }
    }
    if let Some((k, _)) = outputs.iter().find(|(k, _)| !k.is_output()) {
        return Err(Error::Ipc(format!(
            "reconciled list: {k} is not an output key"
        )));
    }
    Ok(Reconciled::from_parts(&inputs, &outputs)?)
}

/// What an importer's own lists say about Auto: the permission each requires, a list that
/// states none counting as read-only (as reconciliation counts it: NvSciBuf's RequiredPerm
/// default).
pub fn required_by(own: &[AttrList]) -> impl Iterator<Item = Permission> + '_ {
    own.iter().map(|l| match l.get(Key::RequiredPerm) {
        Some(Value::Permission(p)) => *p,
        _ => Permission::ReadOnly,
    })
}

/// Resolves a request against the importer's own lists (needed for Auto).
///
/// With `own` given, the importer gets at most what its own lists asked (NvSciBuf: an imported
/// object's permission is the `ActualPerm` of the importer's own lists): an explicit read-write
/// request from a peer whose lists asked only read-only is refused ([`Error::PermissionDenied`]
/// naming `required_permission`).
pub fn resolve(requested: Requested, own: Option<&[AttrList]>) -> Result<Permission> {
    let asked = own
        .filter(|o| !o.is_empty())
        .map(|o| required_by(o).max().unwrap_or(Permission::ReadOnly));
    match (requested, asked) {
        (Requested::ReadOnly, _) => Ok(Permission::ReadOnly),
        (Requested::ReadWrite, Some(Permission::ReadOnly)) => Err(Error::PermissionDenied(
            "read-write requested, but this peer's own lists asked read-only              (required_permission; a list that states none asks read-only)"
                .into(),
        )),
        (Requested::ReadWrite, _) => Ok(Permission::ReadWrite),
        (Requested::Auto, Some(p)) => Ok(p),
        (Requested::Auto, _) => Err(Error::InvalidArgument(
            "Auto permission needs this peer's own unreconciled lists".into(),
        )),
    }
}

/// An object as imported at the typed level: the fd (checked), its reconciled list (re-derived
/// from its inputs and, when the importer gave its own lists, validated against them), the
/// backend it came from and the permission this side holds.
#[derive(Debug)]
pub struct ImportedObject {
    /// The fd: a dma-buf, or a memfd (read-only holders get an `O_RDONLY` description).
    pub fd: rustix::fd::OwnedFd,
    /// The memfd behind the dma-buf (a udmabuf), when the exporter passed it.
    pub memfd: Option<rustix::fd::OwnedFd>,
    /// The reconciled list (shared by every object imported with the same list).
    pub reconciled: Arc<Reconciled>,
    /// The backend that allocated it (`None`: a foreign dma-buf).
    pub backend: Option<BackendKind>,
    /// The permission this side holds.
    pub permission: Permission,
    /// The permission the exporter granted.
    pub exported: Permission,
}

impl Endpoint {
    /// Exports unreconciled lists (one slot each; a [`MultiList`] or a slice of lists).
    pub fn export_lists<'a>(
        &mut self,
        lists: impl IntoIterator<Item = &'a AttrList>,
    ) -> Result<()> {
        let lists: Vec<&AttrList> = lists.into_iter().collect();
        self.send_with(Kind::UnreconciledLists, |enc| {
            enc.put_slots_head(lists.len())?;
            lists.iter().try_for_each(|l| put_list(enc, l))
        })
    }

    /// Imports unreconciled lists, each rebuilt through [`AttrList::set`]. Errors name this
    /// endpoint, the peer and the slot.
    ///
    /// The peer's lists decide how much this side would allocate, so they are held to the
    /// endpoint's allocation limit ([`Endpoint::set_alloc_limit`]) here already: when the
    /// peer's lists reconcile by themselves to a buffer above the limit, the peer is told
    /// ([`ErrorCode::Allocation`]) and this returns [`Error::LimitExceeded`]. (Adding lists
    /// never shrinks a buffer, so no combination with this side's lists would fit.) Reconcile
    /// the result with [`Endpoint::reconcile_imported`], which checks the combined lists.
    pub fn import_lists(&mut self) -> Result<ImportedLists> {
        let r = self.recv_lists_with(|ep, lists| {
            let mut skipped = Vec::new();
            let slots = lists
                .iter()
                .enumerate()
                .map(|(i, l)| list_from_entries(l, i, &mut skipped))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| ep.peer_error(e))?;
            Ok(ImportedLists { slots, skipped })
        })?;
        let lists = r.map_err(|other| unexpected(self, Kind::UnreconciledLists, other))?;
        if let Ok(alone) = crate::reconcile::reconcile(&lists.slots) {
            self.check_alloc(alone.size(), 1, "the peer's lists alone")?;
        }
        Ok(lists)
    }

    /// Reconciles this side's `own` lists with lists imported from the peer and checks that
    /// `count` buffers of the result fit the endpoint's allocation limit
    /// ([`Endpoint::set_alloc_limit`]): the way to turn a peer's needs into an allocation. On a
    /// conflict the peer gets [`ErrorCode::Conflict`] and this returns [`Error::Conflict`];
    /// above the limit the peer gets [`ErrorCode::Allocation`] and this returns
    /// [`Error::LimitExceeded`]. Either way nothing was allocated.
    pub fn reconcile_imported(
        &mut self,
        own: &[AttrList],
        theirs: &ImportedLists,
        count: usize,
    ) -> Result<Arc<Reconciled>> {
        let all: Vec<&AttrList> = own.iter().chain(&theirs.slots).collect();
        let r = match crate::reconcile::reconcile(all) {
            Ok(r) => r,
            Err(c) => {
                let _ = self.send_error(ErrorCode::Conflict, &c.to_string());
                return Err(c.into());
            }
        };
        self.check_alloc(r.size(), count, "the reconciled lists")?;
        Ok(Arc::new(r))
    }

    /// `Ok` when `count` buffers of `size` bytes fit the allocation limit; else tells the peer
    /// and returns [`Error::LimitExceeded`].
    fn check_alloc(&mut self, size: u64, count: usize, what: &str) -> Result<()> {
        let limit = self.alloc_limit();
        let asked = size.saturating_mul(count as u64);
        if asked <= limit {
            return Ok(());
        }
        let e = Error::LimitExceeded {
            what: format!(
                "{} (peer pid {}): {what} ask for {count} x {size} bytes",
                self.name(),
                self.peer().pid
            ),
            asked,
            limit,
        };
        let _ = self.send_error(ErrorCode::Allocation, &e.to_string());
        Err(e)
    }

    /// Exports a reconciled list (its inputs and outputs).
    pub fn export_reconciled(&mut self, r: &Reconciled) -> Result<()> {
        self.send_wire_reconciled(&reconciled_to_wire(r))
    }

    /// Imports a reconciled list: reconciles its inputs again, requires the outputs sent, and,
    /// when `own` is given, validates it against this side's own unreconciled lists
    /// ([`Reconciled::validate`]; the error names each key that is not satisfied).
    pub fn import_reconciled(&mut self, own: Option<&[AttrList]>) -> Result<Reconciled> {
        let w = self.recv_wire_reconciled()?;
        let r = reconciled_from_wire(&w).map_err(|e| self.peer_error(e))?;
        if let Some(own) = own {
            r.validate(own)?;
        }
        Ok(r)
    }

    /// Exports an object of the library ([`Object`]) granting `granted` (at most what the handle
    /// holds). The memfd behind a udmabuf travels with it, so that a read-only importer's CPU
    /// maps are kernel-enforced and a VFIO importer can pin it.
    pub fn export_object(&mut self, obj: &Object, granted: Permission) -> Result<()> {
        let memfd = if obj.is_dma_buf() { obj.memfd() } else { None };
        self.export_object_parts(
            obj.fd(),
            memfd,
            obj.backend(),
            obj.list(),
            obj.permission(),
            granted,
        )
    }

    /// Attaches a late peer to an allocated object (NvSciBufObjAttachPeer): `newcomer` are the
    /// lists it exported ([`Endpoint::import_lists`]). When the buffer as allocated satisfies
    /// them ([`Object::satisfies`]), exports `obj` granting what they asked (read-only when they
    /// state no permission) and returns it; the peer imports it with
    /// [`Endpoint::import_object`] and its own lists. Otherwise the peer is sent the conflict
    /// (its import fails with the text) and this returns [`Error::Conflict`] naming each key
    /// the newcomer needs that the buffer lacks; a newcomer asking read-write of a read-only
    /// handle is refused the same way ([`Error::PermissionDenied`]).
    pub fn attach_peer(&mut self, obj: &Object, newcomer: &[AttrList]) -> Result<Permission> {
        if let Err(c) = obj.satisfies(newcomer) {
            let text = c.to_string();
            self.send_error(ErrorCode::Conflict, &text)?;
            return Err(Error::Conflict(Box::new(c)));
        }
        let granted = required_by(newcomer).max().unwrap_or(Permission::ReadOnly);
        if granted > obj.permission() {
            let text = format!(
                "the late peer asks {granted} (required_permission), this handle holds {}",
                obj.permission()
            );
            self.send_error(ErrorCode::PermissionDenied, &text)?;
            return Err(Error::PermissionDenied(text));
        }
        self.export_object(obj, granted)?;
        Ok(granted)
    }

    /// Imports an object as an [`Object`] of the library: [`Endpoint::import_object_parts`], then
    /// [`Object::import_parts`] (which identifies the exporter, measures the buffer, and probes
    /// whether it can be CPU-mapped). The object's mappings follow the permission it holds, and
    /// it may be CPU-mapped only when one of `own` asked `need_cpu_access` (whatever the
    /// exporter's lists asked; `own = None` gives no CPU access).
    pub fn import_object(
        &mut self,
        requested: Requested,
        own: Option<&[AttrList]>,
    ) -> Result<Object> {
        let o = self.import_object_identified(requested, own)?;
        let obj = Object::from_identified(o.fd, o.memfd, o.backend, &o.reconciled, o.permission)?;
        // CPU access is the importer's own business (NvSciBuf NeedCpuAccess per peer): only a
        // list of its own that asked gives it; without own lists it gets none.
        Ok(obj.with_cpu_access_of(own.unwrap_or(&[])))
    }

    /// Exports an object given as its parts: the buffer's fd, the memfd behind it (a udmabuf's,
    /// when the importer should get it), the backend it came from, its reconciled list, and the
    /// permission granted to the importer (at most `holder`, the permission of the exporting
    /// handle).
    ///
    /// The wire form of the list is kept for the next export of the same list (same `Arc`), so a
    /// stream of buffers sharing one list encodes it once.
    pub fn export_object_parts(
        &mut self,
        fd: BorrowedFd<'_>,
        memfd: Option<BorrowedFd<'_>>,
        backend: Option<BackendKind>,
        reconciled: &Arc<Reconciled>,
        holder: Permission,
        granted: Permission,
    ) -> Result<()> {
        if granted > holder {
            return Err(Error::PermissionDenied(format!(
                "cannot export {granted} from a {holder} handle"
            )));
        }
        let header = ObjectHeader {
            permission: granted,
            fd_kind: FdKind::of_backend(backend),
            backend,
            size: reconciled.size(),
            with_memfd: memfd.is_some(),
        };
        let body = match self.send_cache.take() {
            Some((r, b)) if Arc::ptr_eq(&r, reconciled) => b,
            _ => Encoder::new()
                .reconciled_body(&reconciled_to_wire(reconciled))
                .map_err(|e| Error::Ipc(format!("{}: {e}", self.name())))?,
        };
        let res = self.send_object_body(fd, memfd, header, &body);
        self.send_cache = Some((reconciled.clone(), body));
        res
    }

    /// Imports an object: resolves `requested` (Auto needs `own`), applies the permission rule,
    /// checks the fds (kind, size), rebuilds the reconciled list and validates it against `own`
    /// when given. On any error every fd that arrived is closed.
    ///
    /// The reconciled list is verified once per distinct list: the same bytes reconcile to the
    /// same list (reconciliation is deterministic), so a stream of buffers sharing one list
    /// shares one `Arc<Reconciled>`.
    pub fn import_object_parts(
        &mut self,
        requested: Requested,
        own: Option<&[AttrList]>,
    ) -> Result<ImportedObject> {
        let o = self.import_object_identified(requested, own)?;
        Ok(ImportedObject {
            fd: o.fd.into_fd(),
            memfd: o.memfd.map(Identified::into_fd),
            reconciled: o.reconciled,
            backend: o.backend,
            permission: o.permission,
            exported: o.exported,
        })
    }

    fn import_object_identified(
        &mut self,
        requested: Requested,
        own: Option<&[AttrList]>,
    ) -> Result<IdentifiedObject> {
        let want = resolve(requested, own)?;
        let CheckedObject {
            fd,
            memfd,
            header,
            permission,
            list,
            ..
        } = self.recv_object_checked(want)?;
        debug_assert_eq!(negotiate(header.permission, want).ok(), Some(permission));
        let bytes = self.received_bytes(list);
        let reconciled = match &self.rec_cache {
            Some((b, r)) if b.as_slice() == bytes => r.clone(),
            _ => {
                let w = decode_reconciled_body(bytes).map_err(|e| self.malformed(e))?;
                let bytes = bytes.to_vec();
                let r = Arc::new(reconciled_from_wire(&w).map_err(|e| self.peer_error(e))?);
                self.rec_cache = Some((bytes, r.clone()));
                r
            }
        };
        if reconciled.size() != header.size {
            return Err(Error::Ipc(format!(
                "{}: object header says {} bytes, its reconciled list {}",
                self.name(),
                header.size,
                reconciled.size()
            )));
        }
        if let Some(own) = own {
            reconciled.validate(own)?;
        }
        Ok(IdentifiedObject {
            fd,
            memfd,
            reconciled,
            backend: header.backend,
            permission,
            exported: header.permission,
        })
    }
}

/// [`ImportedObject`] with its fds still carrying what their identification found.
struct IdentifiedObject {
    fd: Identified,
    memfd: Option<Identified>,
    reconciled: Arc<Reconciled>,
    backend: Option<BackendKind>,
    permission: Permission,
    exported: Permission,
}
