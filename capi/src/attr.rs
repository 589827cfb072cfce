//! Modules, attribute lists (unreconciled, appended, reconciled, conflict), the generic
//! key/value set and get, reconciliation, validation and dumps.

use crate::adapt;
use crate::consts::*;
use crate::ffi;
use crate::handle;
use crate::handle::Pin;
use crate::status::{guard, ub_status, Fail, R, UB_ERR_OVERFLOW};
use std::ffi::{c_char, c_void};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::atomic::{AtomicPtr, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};
use unibuf_rs::attr::{AttrList, Key, MultiList, Value, ValueKind};
use unibuf_rs::reconcile::{Conflict, Reconciled};

/// A module: the library opened by one user. (`NvSciBufModule`.)
pub struct ub_module {
    _opaque: [u8; 0],
}

/// An attribute list: unreconciled (one slot, writable), appended (several slots, read-only),
/// reconciled (read-only), or a conflict (why reconciliation failed; dump it).
/// (`NvSciBufAttrList`.)
pub struct ub_attr_list {
    _opaque: [u8; 0],
}

/// One attribute: a key code (`ub_key`, or any code `ub_key_from_name` gives), a pointer to the
/// value and its length in bytes (the layout is the key's `ub_value_kind`).
/// (`NvSciBufAttrKeyValuePair`.)
///
/// For `ub_attr_list_set_attrs` the caller owns `value`; the library copies it. For
/// `ub_attr_list_get_attrs` the library writes `value` and `len`: `value` points into the list
/// and stays valid until the list is freed (NULL with `len` 0 when the key is not set).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ub_attr_kv {
    /// The key's wire code.
    pub key: u32,
    /// The value.
    pub value: *const c_void,
    /// The value's length in bytes.
    pub len: usize,
}

#[derive(Clone)]
pub(crate) struct ModuleH;

// Large by design: a reconciled list lives in its handle's slot, so a reconcile allocates
// nothing for its handle (slots are reused; the other states are pointers).
#[allow(clippy::large_enum_variant)]
pub(crate) enum ListState {
    /// One writable list (see [`Unrec`]).
    Unreconciled(Arc<Unrec>),
    Multi(Arc<MultiList>),
    /// In the handle's slot (no allocation of its own): objects made from it take a copy.
    Reconciled(Reconciled),
    Conflict(Arc<Conflict>),
}

/// An unreconciled list's contents: readers (reconcile, validate, export, get) borrow them
/// under a [`Pin`] with no lock and no reference count; a writer changes a copy, publishes it
/// whole (so a set is all or nothing, and a reader sees one version or the other), and frees the
/// version it replaced after a grace period. Writers of one list are serialized by `writer`.
pub(crate) struct Unrec {
    writer: Mutex<()>,
    /// `Arc::into_raw` of the current contents: never NULL.
    cur: AtomicPtr<AttrList>,
}

impl Unrec {
    fn new(contents: Arc<AttrList>) -> Arc<Unrec> {
        Arc::new(Unrec {
            writer: Mutex::new(()),
            cur: AtomicPtr::new(Arc::into_raw(contents).cast_mut()),
        })
    }

    /// The contents, valid while `pin` is held.
    pub(crate) fn contents<'p>(&'p self, _pin: &'p Pin) -> &'p AttrList {
        // SAFETY: `cur` is always a live `Arc` of the contents; a writer that replaces it drops
        // the old one only after a grace period, which waits for this pin (the load is `SeqCst`
        // for that: see `handle::synchronize`).
        unsafe { &*self.cur.load(SeqCst) }
    }

    /// The contents, shared (a clone of a list takes them until either list changes).
    fn shared(&self, _pin: &Pin) -> Arc<AttrList> {
        // The pointer as `Arc::into_raw` gave it (a reference would not reach the counts).
        let p = self.cur.load(SeqCst);
        // SAFETY: `p` came from `Arc::into_raw` and that `Arc` lives while `pin` is held (see
        // `contents`): one more strong count for the `Arc` made here.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    /// Changes the list: `f` works on a copy of the current contents, published only when `f`
    /// succeeds. Must not be called pinned (it waits for a grace period).
    pub(crate) fn modify(&self, f: impl FnOnce(&mut AttrList) -> R<()>) -> R<()> {
        handle::assert_unpinned();
        let w = lock(&self.writer);
        // SAFETY: only writers replace `cur`, and they hold `writer`, as this one does: the
        // contents stay.
        let mut next = unsafe { (*self.cur.load(Acquire)).clone() };
        f(&mut next)?;
        let old = self
            .cur
            .swap(Arc::into_raw(Arc::new(next)).cast_mut(), SeqCst);
        drop(w);
        handle::synchronize();
        // SAFETY: `old` came from `Arc::into_raw`; after the grace period no reader borrows it.
        drop(unsafe { Arc::from_raw(old) });
        Ok(())
    }
}

impl Drop for Unrec {
    fn drop(&mut self) {
        // SAFETY: `cur` came from `Arc::into_raw`; the last owner of the `Unrec` drops it, when no
        // reader can borrow it (its handle's grace period is over, or it never had a handle).
        drop(unsafe { Arc::from_raw(*self.cur.get_mut()) });
    }
}

/// One value's C form, made on first get.
type CValue = OnceLock<Box<[u8]>>;

/// An attribute list handle: its state and the C forms of values handed out by get (built on
/// first get; keys are set once, so a value's C form never changes while the list lives).
pub(crate) struct ListH {
    pub state: ListState,
    /// Made on the first get, so lists that are only reconciled or exported never pay for it.
    /// (Dropped by `ListH`'s drop, only when made: an unset `OnceLock` holds nothing, and its
    /// own drop is a call, on every free of a list.)
    cache: ManuallyDrop<OnceLock<Box<[CValue]>>>,
}

impl Drop for ListH {
    #[inline]
    fn drop(&mut self) {
        if self.cache.get().is_some() {
            // SAFETY: dropped once, here; not used after.
            unsafe { ManuallyDrop::drop(&mut self.cache) }
        }
    }
}

impl ListH {
    /// Writes a new list handle's value at `dst`, a field at a time: a reconciled state is
    /// large, and is written once, where it stays (not built beside and moved in).
    ///
    /// # Safety
    /// `dst` is valid for a write of a `ListH` (its old contents are not dropped).
    #[inline(always)]
    unsafe fn init(dst: *mut ListH, state: ListState) {
        // SAFETY: the caller's contract; fields' addresses projected without a read.
        unsafe {
            (&raw mut (*dst).state).write(state);
            (&raw mut (*dst).cache).write(ManuallyDrop::new(OnceLock::new()));
        }
    }

    /// The C form of `slot`'s value of `key`, made once.
    fn c_value(&self, slot: usize, key: Key, v: &Value) -> &[u8] {
        let cache = self.cache.get_or_init(|| {
            (0..self.slot_count() * Key::COUNT)
                .map(|_| OnceLock::new())
                .collect()
        });
        cache[slot * Key::COUNT + key.index()].get_or_init(|| value_to_c(v))
    }

    fn kind_name(&self) -> &'static str {
        match self.state {
            ListState::Unreconciled(_) => "an unreconciled list",
            ListState::Multi(_) => "an appended (multi-slot) list",
            ListState::Reconciled(_) => "a reconciled list",
            ListState::Conflict(_) => "a conflict",
        }
    }

    pub(crate) fn reconciled(&self, what: &str) -> R<&Reconciled> {
        match &self.state {
            ListState::Reconciled(r) => Ok(r),
            _ => Err(Fail::bad(format!(
                "{what}: the list is {}, not a reconciled list",
                self.kind_name()
            ))),
        }
    }

    fn slot_count(&self) -> usize {
        match &self.state {
            ListState::Unreconciled(_) | ListState::Reconciled(_) => 1,
            ListState::Multi(m) => m.len(),
            ListState::Conflict(_) => 0,
        }
    }

    /// The lists this one stands for as an input (an unreconciled list, or each slot of an
    /// appended one); `None` for the other states, which are no input.
    fn inputs<'p>(&'p self, pin: &'p Pin) -> Option<&'p [AttrList]> {
        match &self.state {
            ListState::Unreconciled(u) => Some(std::slice::from_ref(u.contents(pin))),
            ListState::Multi(m) => Some(m.slots()),
            _ => None,
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[inline]
pub(crate) fn new_list(state: ListState) -> R<*mut ub_attr_list> {
    Ok(publish_list(handle::reserve::<ListH>()?, state))
}

/// Writes a list handle's value with `state` into a reserved slot and publishes the handle.
#[inline(always)]
fn publish_list(slot: handle::Reserved<ListH>, state: ListState) -> *mut ub_attr_list {
    // SAFETY: `init` writes a whole `ListH` at the reserved place.
    unsafe {
        ListH::init(slot.place(), state);
        slot.publish()
    }
}

/// A new unreconciled list handle with these contents.
fn new_unreconciled(contents: Arc<AttrList>) -> R<*mut ub_attr_list> {
    new_list(ListState::Unreconciled(Unrec::new(contents)))
}

/// Runs `f` on a list handle, borrowed under a pin (`f` must only compute: no I/O, no wait,
/// no free).
pub(crate) fn with_list<T>(
    list: *const ub_attr_list,
    what: &str,
    f: impl FnOnce(&ListH, &Pin) -> R<T>,
) -> R<T> {
    handle::pinned(|g| f(handle::borrow::<ListH, _>(list, what, g)?, g))
}

/// A copy of a reconciled list handle's list, for calls that keep it (an object holds its
/// list) or do I/O with it.
pub(crate) fn reconciled_of(list: *const ub_attr_list, what: &str) -> R<Reconciled> {
    with_list(list, what, |l, _| Ok(l.reconciled(what)?.clone()))
}

/// Changes an unreconciled list: `f` works on a copy of its current contents, published only
/// when `f` succeeds (all or none). The writers of one list are serialized; readers never wait
/// for them.
pub(crate) fn modify(
    list: *const ub_attr_list,
    what: &str,
    f: impl FnOnce(&mut AttrList) -> R<()>,
) -> R<()> {
    unrec_of(list, what)?.modify(f)
}

/// An unreconciled list handle's contents holder (refused for other lists).
pub(crate) fn unrec_of(list: *const ub_attr_list, what: &str) -> R<Arc<Unrec>> {
    with_list(list, what, |l, _| match &l.state {
        ListState::Unreconciled(u) => Ok(u.clone()),
        _ => Err(Fail::bad(format!(
            "{what}: the list is {}; only unreconciled lists can be changed",
            l.kind_name()
        ))),
    })
}

/// How many lists (appended lists counted by their slots) [`with_inputs`] passes without a heap
/// allocation.
const REFS: usize = 8;

/// Runs `f` on the lists of a C array of handles (unreconciled or appended lists only, appended
/// lists flattened into their slots, in the caller's order): what reconcile, validate, append
/// and export take. Under one pin, with no lock and no reference count; up to [`REFS`] lists
/// are passed from the stack. `f` must only compute (no I/O, no wait, no free).
///
/// # Safety
/// `lists` points to `n` handles (or is NULL with `n == 0`).
pub(crate) unsafe fn with_inputs<T>(
    lists: *const *const ub_attr_list,
    n: usize,
    what: &str,
    f: impl FnOnce(&[&AttrList]) -> R<T>,
) -> R<T> {
    // SAFETY: the caller's contract.
    let ps = unsafe { ffi::slice(lists, n, what, "the list array") }?;
    handle::pinned(|g| {
        let mut buf = [MaybeUninit::<&AttrList>::uninit(); REFS];
        let mut len = 0;
        let mut more: Vec<&AttrList> = Vec::new();
        for p in ps {
            let Some(ins) = handle::lookup::<ListH, _>(*p, g).and_then(|l| l.inputs(g)) else {
                return Err(not_an_input(*p, what, g));
            };
            for l in ins {
                if len < REFS {
                    buf[len].write(l);
                    len += 1;
                } else {
                    if more.is_empty() {
                        // SAFETY: all `REFS` of `buf` were written before `len` reached it.
                        more.extend(buf.iter().map(|b| unsafe { b.assume_init() }));
                    }
                    more.push(l);
                }
            }
        }
        if more.is_empty() {
            // SAFETY: `buf[..len]` was written.
            f(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<&AttrList>(), len) })
        } else {
            f(&more)
        }
    })
}

/// Why `p` was refused as an input of [`with_inputs`]. Out of line: the loop stays small.
#[cold]
#[inline(never)]
fn not_an_input(p: *const ub_attr_list, what: &str, g: &Pin) -> Fail {
    match handle::borrow::<ListH, _>(p, what, g) {
        Err(f) => f,
        Ok(l) => Fail::bad(format!(
            "{what}: an input is {}; only unreconciled (or appended) lists are accepted",
            l.kind_name()
        )),
    }
}

/// Copies of the lists of a C array of handles (see [`with_inputs`]), for calls that do I/O
/// with them (IPC export).
///
/// # Safety
/// As [`with_inputs`].
pub(crate) unsafe fn owned_inputs(
    lists: *const *const ub_attr_list,
    n: usize,
    what: &str,
) -> R<Vec<AttrList>> {
    // SAFETY: the caller's contract.
    unsafe {
        with_inputs(lists, n, what, |ls| {
            Ok(ls.iter().map(|l| (*l).clone()).collect())
        })
    }
}

pub(crate) fn c_value_kind(k: ValueKind) -> ub_value_kind {
    match k {
        ValueKind::Bool => UB_VALUE_BOOL,
        ValueKind::U32 => UB_VALUE_U32,
        ValueKind::U64 => UB_VALUE_U64,
        ValueKind::F64 => UB_VALUE_F64,
        ValueKind::Str => UB_VALUE_STR,
        ValueKind::U64List => UB_VALUE_U64_LIST,
        ValueKind::StrList => UB_VALUE_STR_LIST,
        ValueKind::Types => UB_VALUE_TYPES,
        ValueKind::Permission => UB_VALUE_PERMISSION,
        ValueKind::Accessor => UB_VALUE_ACCESSOR,
        ValueKind::Backend => UB_VALUE_BACKEND,
        ValueKind::Format => UB_VALUE_FORMAT,
        ValueKind::Layout => UB_VALUE_LAYOUT,
        ValueKind::ColorStd => UB_VALUE_COLOR_STD,
        ValueKind::Scan => UB_VALUE_SCAN,
        ValueKind::DataType => UB_VALUE_DATA_TYPE,
        ValueKind::Padding => UB_VALUE_PADDING,
        ValueKind::Modifiers => UB_VALUE_MODIFIERS,
        ValueKind::ModifierUsage => UB_VALUE_MODIFIER_USAGE,
        ValueKind::GpuIdSet => UB_VALUE_GPU_ID_SET,
        ValueKind::GpuId => UB_VALUE_GPU_ID,
        ValueKind::GpuFlags => UB_VALUE_GPU_FLAGS,
    }
}

fn key_of(code: u32, what: &str) -> R<Key> {
    u16::try_from(code)
        .ok()
        .and_then(Key::from_code)
        .ok_or_else(|| {
            let mut f = Fail::bad(format!("{what}: unknown key code {code:#06x}"));
            f.key = code;
            f
        })
}

/// A value from its C form: the wire form, except strings (a trailing NUL allowed) and string
/// lists (NUL-terminated strings one after the other).
pub(crate) fn value_from_c(key: Key, b: &[u8]) -> R<Value> {
    match key.value_kind() {
        ValueKind::Str => {
            let b = b.strip_suffix(&[0]).unwrap_or(b);
            Ok(Value::decode(key, b)?)
        }
        ValueKind::StrList => {
            let b = b.strip_suffix(&[0]).unwrap_or(b);
            let mut l = Vec::new();
            if !b.is_empty() {
                for s in b.split(|c| *c == 0) {
                    let s = std::str::from_utf8(s).map_err(|_| {
                        Fail::from(unibuf_rs::attr::AttrError::Decode {
                            key,
                            reason: "string is not UTF-8".into(),
                        })
                    })?;
                    l.push(s.to_string());
                }
            }
            Ok(Value::StrList(l))
        }
        _ => Ok(Value::decode(key, b)?),
    }
}

/// The C form of a value (see [`value_from_c`]); strings get a NUL after their bytes.
pub(crate) fn value_to_c(v: &Value) -> Box<[u8]> {
    let mut out = Vec::with_capacity(16);
    match v {
        Value::Str(s) => {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        Value::StrList(l) => {
            for s in l {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
        }
        v => v.encode(&mut out),
    }
    out.into_boxed_slice()
}

/// Opens the library. (`NvSciBufModuleOpen`.) Thread-safe.
///
/// # Safety
/// `module` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_module_open(module: *mut *mut ub_module) -> ub_status {
    guard(|| {
        ffi::out(module, "ub_module_open", "module")?;
        let h = handle::insert(ModuleH)?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(module, h) };
        Ok(())
    })
}

/// Closes a module. Lists, objects and endpoints made through it stay usable (each holds what
/// it needs). (`NvSciBufModuleClose`.) Thread-safe; a second close is `UB_ERR_BAD_PARAMETER`.
#[no_mangle]
pub extern "C" fn ub_module_close(module: *mut ub_module) -> ub_status {
    guard(|| handle::free::<ModuleH, _>(module, "ub_module_close"))
}

/// The major version of the C API this header describes: a library of another major version
/// is incompatible.
pub const UB_VERSION_MAJOR: u32 = 0;
/// The minor version of the C API this header describes: a library of the same major version
/// and at least this minor version has every call of this header.
pub const UB_VERSION_MINOR: u32 = 1;

/// The C API version of the library that is loaded (it may be newer than the header the
/// program was compiled with). (`NvSciBufGetVersion`.) Thread-safe.
///
/// # Safety
/// `major` and `minor` point to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_get_version(major: *mut u32, minor: *mut u32) -> ub_status {
    guard(|| {
        ffi::out(major, "ub_get_version", "major")?;
        ffi::out(minor, "ub_get_version", "minor")?;
        // SAFETY: checked by `ffi::out`.
        unsafe {
            ffi::put(major, UB_VERSION_MAJOR);
            ffi::put(minor, UB_VERSION_MINOR);
        }
        Ok(())
    })
}

/// Whether the loaded library serves a program compiled against version `major`.`minor` (pass
/// `UB_VERSION_MAJOR`, `UB_VERSION_MINOR`): the same major version and a minor version no newer
/// than the library's. (`NvSciBufCheckVersionCompatibility`.) Thread-safe.
///
/// # Safety
/// `compatible` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_check_version_compatibility(
    major: u32,
    minor: u32,
    compatible: *mut bool,
) -> ub_status {
    guard(|| {
        ffi::out(compatible, "ub_check_version_compatibility", "compatible")?;
        let ok = major == UB_VERSION_MAJOR && minor <= UB_VERSION_MINOR;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(compatible, ok) };
        Ok(())
    })
}

/// Creates an empty unreconciled list. (`NvSciBufAttrListCreate`.) Thread-safe.
///
/// # Safety
/// `list` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_create(
    module: *mut ub_module,
    list: *mut *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        handle::get::<ModuleH, _>(module, "ub_attr_list_create")?;
        ffi::out(list, "ub_attr_list_create", "list")?;
        let h = new_unreconciled(Arc::new(AttrList::new()))?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(list, h) };
        Ok(())
    })
}

/// Frees a list handle of any state. Objects allocated or imported with a reconciled list keep
/// their own reference: freeing the list they came from is safe. (`NvSciBufAttrListFree`.)
/// Thread-safe; a second free is `UB_ERR_BAD_PARAMETER`; values handed out by get die with it.
#[no_mangle]
pub extern "C" fn ub_attr_list_free(list: *mut ub_attr_list) -> ub_status {
    guard(|| handle::free::<ListH, _>(list, "ub_attr_list_free"))
}

/// A copy of a list: an unreconciled copy stays writable (and independent); copies of
/// appended, reconciled and conflict lists are read-only, as the originals.
/// (`NvSciBufAttrListClone`.) Thread-safe.
///
/// # Safety
/// `clone` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_clone(
    list: *const ub_attr_list,
    clone: *mut *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_clone";
        let state = with_list(list, what, |l, g| {
            Ok(match &l.state {
                // The contents are shared until either list changes (a change copies).
                ListState::Unreconciled(u) => ListState::Unreconciled(Unrec::new(u.shared(g))),
                ListState::Multi(m) => ListState::Multi(m.clone()),
                ListState::Reconciled(r) => ListState::Reconciled(r.clone()),
                ListState::Conflict(c) => ListState::Conflict(c.clone()),
            })
        })?;
        ffi::out(clone, what, "clone")?;
        let h = new_list(state)?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(clone, h) };
        Ok(())
    })
}

/// Appends unreconciled (or appended) lists into one read-only list with one slot per input
/// list. (`NvSciBufAttrListAppendUnreconciled`.) Thread-safe.
///
/// # Safety
/// `lists` points to `count` handles; `appended` to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_append(
    lists: *const *const ub_attr_list,
    count: usize,
    appended: *mut *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_append";
        // SAFETY: the caller's contract.
        let m = unsafe {
            with_inputs(lists, count, what, |ls| {
                ffi::out(appended, what, "appended")?;
                if ls.is_empty() {
                    return Err(Fail::bad(format!("{what}: no lists")));
                }
                Ok(AttrList::append(ls.iter().copied()))
            })
        }?;
        let h = new_list(ListState::Multi(Arc::new(m)))?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(appended, h) };
        Ok(())
    })
}

/// Sets attributes of an unreconciled list: all of them, or (on the first refused pair) none.
/// Every key is set once; output keys, keys of a buffer type the list does not have (set
/// `UB_KEY_TYPES` first, in this call or an earlier one), values of the wrong length or out of
/// range are refused with `UB_ERR_BAD_PARAMETER` and the message names the key and why.
/// (`NvSciBufAttrListSetAttrs`.) Thread-safe (calls on one list are serialized).
///
/// # Safety
/// `pairs` points to `count` pairs whose `value` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_set_attrs(
    list: *mut ub_attr_list,
    pairs: *const ub_attr_kv,
    count: usize,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_set_attrs";
        // SAFETY: the caller's contract.
        let pairs = unsafe { ffi::slice(pairs, count, what, "pairs") }?;
        let mut kv = Vec::with_capacity(pairs.len());
        for p in pairs {
            let key = key_of(p.key, what)?;
            // SAFETY: the caller's contract: `value` points to `len` bytes.
            let b = unsafe { ffi::bytes(p.value.cast(), p.len, what) }?;
            kv.push((key, value_from_c(key, b)?));
        }
        modify(list, what, |l| Ok(l.set_all(kv)?))
    })
}

fn get_into(l: &ListH, pin: &Pin, slot: usize, pairs: &mut [ub_attr_kv], what: &str) -> R<()> {
    let n = l.slot_count();
    if slot >= n {
        return Err(Fail::bad(format!(
            "{what}: slot {slot} of a list with {n} slot(s)"
        )));
    }
    let keys = pairs
        .iter()
        .map(|p| key_of(p.key, what))
        .collect::<R<Vec<Key>>>()?;
    for (p, key) in pairs.iter_mut().zip(keys) {
        let v: Option<Value> = match &l.state {
            ListState::Unreconciled(u) => u.contents(pin).get(key).cloned(),
            ListState::Multi(m) => m.get(slot, key).cloned(),
            ListState::Reconciled(r) => r.get(key).cloned(),
            ListState::Conflict(_) => None,
        };
        match v {
            None => {
                p.value = std::ptr::null();
                p.len = 0;
            }
            Some(v) => {
                let c = l.c_value(slot, key, &v);
                // A set but empty value (an empty list) points at a real byte, not at the
                // dangling address of an empty allocation.
                static EMPTY: u8 = 0;
                p.value = if c.is_empty() {
                    std::ptr::from_ref(&EMPTY).cast()
                } else {
                    c.as_ptr().cast()
                };
                p.len = if key.value_kind() == ValueKind::Str {
                    c.len() - 1
                } else {
                    c.len()
                };
            }
        }
    }
    Ok(())
}

/// Gets attributes of a single-slot list (unreconciled or reconciled: merged inputs and
/// outputs). For each pair the caller sets `key`; the library sets `value` (pointing into the
/// list, valid until the list is freed) and `len`, or NULL and 0 for a key that is not set.
/// (`NvSciBufAttrListGetAttrs`.) Thread-safe.
///
/// # Safety
/// `pairs` points to `count` writable pairs.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_get_attrs(
    list: *const ub_attr_list,
    pairs: *mut ub_attr_kv,
    count: usize,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_get_attrs";
        with_list(list, what, |l, g| {
            if l.slot_count() != 1 {
                return Err(Fail::bad(format!(
                    "{what}: the list is {} with {} slots; use ub_attr_list_slot_get_attrs",
                    l.kind_name(),
                    l.slot_count()
                )));
            }
            // SAFETY: the caller's contract.
            let pairs = unsafe { pairs_mut(pairs, count, what) }?;
            get_into(l, g, 0, pairs, what)
        })
    })
}

/// # Safety
/// `pairs` points to `count` writable pairs.
unsafe fn pairs_mut<'a>(p: *mut ub_attr_kv, count: usize, what: &str) -> R<&'a mut [ub_attr_kv]> {
    // SAFETY: the caller's contract; `ffi::slice` checked NULL, alignment and the count.
    unsafe { ffi::slice(p.cast_const(), count, what, "pairs") }?;
    if count == 0 {
        return Ok(&mut []);
    }
    // SAFETY: as above; the caller gives us the pairs to write.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, count) })
}

/// Gets attributes of one slot of a list (an appended list has one slot per list appended).
/// (`NvSciBufAttrListSlotGetAttrs`.) Thread-safe.
///
/// # Safety
/// `pairs` points to `count` writable pairs.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_slot_get_attrs(
    list: *const ub_attr_list,
    slot: usize,
    pairs: *mut ub_attr_kv,
    count: usize,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_slot_get_attrs";
        with_list(list, what, |l, g| {
            // SAFETY: the caller's contract.
            let pairs = unsafe { pairs_mut(pairs, count, what) }?;
            get_into(l, g, slot, pairs, what)
        })
    })
}

/// The number of slots: 1 for an unreconciled or reconciled list, one per appended list, 0
/// for a conflict. (`NvSciBufAttrListGetSlotCount`.) Thread-safe.
///
/// # Safety
/// `count` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_get_slot_count(
    list: *const ub_attr_list,
    count: *mut usize,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_get_slot_count";
        let n = with_list(list, what, |l, _| Ok(l.slot_count()))?;
        ffi::out(count, what, "count")?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(count, n) };
        Ok(())
    })
}

/// Whether the list is a reconciled list. (`NvSciBufAttrListIsReconciled`.) Thread-safe.
///
/// # Safety
/// `is_reconciled` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_is_reconciled(
    list: *const ub_attr_list,
    is_reconciled: *mut bool,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_is_reconciled";
        let r = with_list(list, what, |l, _| {
            Ok(matches!(l.state, ListState::Reconciled(_)))
        })?;
        ffi::out(is_reconciled, what, "is_reconciled")?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(is_reconciled, r) };
        Ok(())
    })
}

/// Reconciles unreconciled (or appended) lists into one reconciled list.
///
/// On success `*reconciled` is a new reconciled list. When the lists cannot be reconciled the
/// call returns `UB_ERR_RECONCILIATION_FAILED`, the thread's last error message says which keys
/// failed, for which accessors and with which values, and, when `conflict` is not NULL,
/// `*conflict` is a conflict list to dump (`ub_attr_list_dump`) and free. The result does not
/// depend on the order of the inputs. (`NvSciBufAttrListReconcile`.) Thread-safe.
///
/// # Safety
/// `lists` points to `count` handles; `reconciled` (and `conflict`, unless NULL) to writable
/// storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_reconcile(
    lists: *const *const ub_attr_list,
    count: usize,
    reconciled: *mut *mut ub_attr_list,
    conflict: *mut *mut ub_attr_list,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_reconcile";
        ffi::out(reconciled, what, "reconciled")?;
        // The result's slot is taken first: the result is then written there as it comes.
        let slot = handle::reserve::<ListH>()?;
        // SAFETY: the caller's contract.
        let h = unsafe {
            reconcile_handles(lists, count, conflict, what, |r| {
                Ok(publish_list(slot, ListState::Reconciled(r)))
            })
        }?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(reconciled, h) };
        Ok(())
    })
}

/// Reconciles the lists of a C array of handles (see [`with_inputs`]) and passes the result to
/// `then` (run pinned, as the reconcile: it must only compute, or take a short lock), which
/// takes it where it goes: the result is large, and is not passed back through the frames in
/// between. What `ub_attr_list_reconcile` and `ub_attr_list_reconcile_and_obj_alloc` do.
/// `conflict`, unless NULL, is checked and cleared first, and gets a conflict list when the
/// lists conflict.
///
/// # Safety
/// As [`with_inputs`].
pub(crate) unsafe fn reconcile_handles<X>(
    lists: *const *const ub_attr_list,
    count: usize,
    conflict: *mut *mut ub_attr_list,
    what: &str,
    then: impl FnOnce(Reconciled) -> R<X>,
) -> R<X> {
    if !conflict.is_null() {
        ffi::out(conflict, what, "conflict")?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(conflict, std::ptr::null_mut()) };
    }
    // SAFETY: the caller's contract.
    unsafe {
        with_inputs(lists, count, what, |ls| match adapt::reconcile(ls) {
            Ok(r) => then(r),
            Err(c) => Err(conflict_out(c, conflict)),
        })
    }
}

/// The failure for a conflict; stores a conflict list in `conflict` when it is not NULL.
fn conflict_out(c: Conflict, conflict: *mut *mut ub_attr_list) -> Fail {
    let f = Fail::from(c.clone());
    if !conflict.is_null() {
        if let Ok(h) = new_list(ListState::Conflict(Arc::new(c))) {
            // SAFETY: checked by `ffi::out` by the caller of this function.
            unsafe { ffi::put(conflict, h) };
        }
    }
    f
}

/// Checks that a reconciled list satisfies unreconciled lists (an importer's own): each key of
/// theirs is met by the reconciled value. `*is_valid` tells; a list that is not satisfied also
/// returns `UB_ERR_ATTR_LIST_VALIDATION_FAILED`, with every key that is not met, the list and
/// both values in the message. (`NvSciBufAttrListValidateReconciled`.) Thread-safe.
///
/// # Safety
/// `lists` points to `count` handles; `is_valid` to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_validate_reconciled(
    reconciled: *const ub_attr_list,
    lists: *const *const ub_attr_list,
    count: usize,
    is_valid: *mut bool,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_validate_reconciled";
        with_list(reconciled, what, |l, _| {
            let r = l.reconciled(what)?;
            // SAFETY: the caller's contract.
            unsafe {
                with_inputs(lists, count, what, |ls| {
                    ffi::out(is_valid, what, "is_valid")?;
                    // SAFETY: checked by `ffi::out`.
                    ffi::put(is_valid, false);
                    Ok(r.validate(ls.iter().copied())?)
                })
            }
        })?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(is_valid, true) };
        Ok(())
    })
}

fn dump(l: &ListH, pin: &Pin, format: u32, what: &str) -> R<String> {
    use unibuf_rs::attr::file::{list_to_json, list_to_text};
    use unibuf_rs::reconcile::dump as d;
    let json = match format {
        x if x == UB_DUMP_TEXT as u32 => false,
        x if x == UB_DUMP_JSON as u32 => true,
        x => return Err(Fail::bad(format!("{what}: unknown dump format {x}"))),
    };
    let pretty = |j: serde_json::Value| serde_json::to_string_pretty(&j).unwrap_or_default();
    Ok(match (&l.state, json) {
        (ListState::Unreconciled(u), false) => list_to_text(u.contents(pin)),
        (ListState::Unreconciled(u), true) => pretty(list_to_json(u.contents(pin))),
        (ListState::Multi(m), false) => m
            .slots()
            .iter()
            .enumerate()
            .map(|(i, s)| format!("# slot {i}\n{}", list_to_text(s)))
            .collect::<Vec<_>>()
            .join("\n"),
        (ListState::Multi(m), true) => pretty(serde_json::json!({
            "slots": m.slots().iter().map(list_to_json).collect::<Vec<_>>()
        })),
        (ListState::Reconciled(r), false) => d::reconciled_to_text(r),
        (ListState::Reconciled(r), true) => pretty(d::reconciled_to_json(r)),
        (ListState::Conflict(c), false) => c.to_string(),
        (ListState::Conflict(c), true) => pretty(d::conflict_to_json(c)),
    })
}

/// A dump of any list (a conflict included) as text or JSON: `*out` is a NUL-terminated
/// string the caller frees with `ub_string_free`. (`NvSciBufAttrListDebugDump`.) Thread-safe.
///
/// # Safety
/// `out` points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_dump(
    list: *const ub_attr_list,
    format: u32,
    out: *mut *mut c_char,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_dump";
        let s = with_list(list, what, |l, g| dump(l, g, format, what))?;
        ffi::out(out, what, "out")?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(out, ffi::c_string(s)) };
        Ok(())
    })
}

/// The wire code of the key named `name` (`"raw.size"`, `"need_cpu_access"`, as in list files
/// and dumps). Thread-safe.
///
/// # Safety
/// `name` is a NUL-terminated string; `code` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_key_from_name(name: *const c_char, code: *mut u32) -> ub_status {
    guard(|| {
        let what = "ub_key_from_name";
        // SAFETY: the caller's contract.
        let n = unsafe { ffi::string(name, what, "name") }?;
        ffi::out(code, what, "code")?;
        let k = Key::from_name(n).ok_or_else(|| Fail::bad(format!("{what}: no key {n:?}")))?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(code, u32::from(k.code())) };
        Ok(())
    })
}

/// The name of the key with wire code `code` (a static string), or NULL for an unknown code.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn ub_key_name(code: u32) -> *const c_char {
    static NAMES: OnceLock<Vec<std::ffi::CString>> = OnceLock::new();
    let Some(k) = u16::try_from(code).ok().and_then(Key::from_code) else {
        return std::ptr::null();
    };
    let names = NAMES.get_or_init(|| {
        Key::ALL
            .iter()
            .map(|k| std::ffi::CString::new(k.name()).unwrap_or_default())
            .collect()
    });
    names[k.index()].as_ptr()
}

/// The value layout (`ub_value_kind`) of the key with wire code `code`. Thread-safe.
///
/// # Safety
/// `kind` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_key_value_kind(code: u32, kind: *mut u32) -> ub_status {
    guard(|| {
        let what = "ub_key_value_kind";
        let k = key_of(code, what)?;
        ffi::out(kind, what, "kind")?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(kind, c_value_kind(k.value_kind()) as u32) };
        Ok(())
    })
}

/// The format code (`UB_VALUE_FORMAT`) of a pixel format named `name` (`"NV12"`, `"XRGB8888"`,
/// as in list files). Thread-safe.
///
/// # Safety
/// `name` is a NUL-terminated string; `code` points to writable storage.
#[no_mangle]
pub unsafe extern "C" fn ub_format_from_name(name: *const c_char, code: *mut u32) -> ub_status {
    guard(|| {
        let what = "ub_format_from_name";
        // SAFETY: the caller's contract.
        let n = unsafe { ffi::string(name, what, "name") }?;
        ffi::out(code, what, "code")?;
        let f = unibuf_rs::layout::PixelFormat::from_name(n)
            .map_err(|e| Fail::bad(format!("{what}: {}", e.0)))?;
        // SAFETY: checked by `ffi::out`.
        unsafe { ffi::put(code, f.code()) };
        Ok(())
    })
}

/// Copies a value of a single-slot list into a caller buffer: `*len` is the buffer's size on
/// entry and the value's length on return (0 when unset). `UB_ERR_OVERFLOW` when the buffer is
/// too small (the needed length is written back). A convenience over `ub_attr_list_get_attrs`
/// for callers that do not keep pointers into lists. Thread-safe.
///
/// # Safety
/// `buf` points to `*len` writable bytes (or is NULL with `*len == 0`); `len` is writable.
#[no_mangle]
pub unsafe extern "C" fn ub_attr_list_get_value(
    list: *const ub_attr_list,
    key: u32,
    buf: *mut c_void,
    len: *mut usize,
) -> ub_status {
    guard(|| {
        let what = "ub_attr_list_get_value";
        ffi::out(len, what, "len")?;
        // SAFETY: checked by `ffi::out`.
        let cap = unsafe { *len };
        let mut kv = [ub_attr_kv {
            key,
            value: std::ptr::null(),
            len: 0,
        }];
        // The copy is made pinned: the value lives in the list, which another thread may free.
        with_list(list, what, |l, g| {
            get_into(l, g, 0, &mut kv, what)?;
            // SAFETY: checked by `ffi::out`.
            unsafe { ffi::put(len, kv[0].len) };
            if kv[0].len > cap {
                return Err(Fail::new(
                    UB_ERR_OVERFLOW,
                    format!(
                        "{what}: the value has {} bytes, the buffer {cap}",
                        kv[0].len
                    ),
                ));
            }
            if kv[0].len > 0 {
                if buf.is_null() {
                    return Err(Fail::bad(format!("{what}: buf is NULL")));
                }
                // SAFETY: `value` points to `len` bytes inside the list (alive while pinned);
                // `buf` has `cap >= len` writable bytes by the caller's contract; they cannot
                // overlap (the list's storage is the library's).
                unsafe {
                    std::ptr::copy_nonoverlapping(kv[0].value.cast::<u8>(), buf.cast(), kv[0].len)
                };
            }
            Ok(())
        })?;
        Ok(())
    })
}
