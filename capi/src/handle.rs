//! Handles: opaque tokens that C holds, validated on every call against a registry of live
//! handles.
//!
//! A handle is not an address: it is `generation << 24 | (slot + 1)` cast to a pointer type.
//! Every call looks the token up; a NULL, a token that was never issued, one that was freed
//! (its slot's generation moved on) or one of another kind (an object passed as a list) is
//! refused with `UB_ERR_BAD_PARAMETER`, never dereferenced. So a double free is caught (the
//! second free finds a stale generation), as is any use after free, until a slot's 40-bit
//! generation wraps (2^40 frees of one slot).
//!
//! The registry holds one `Arc` per handle; a call clones the `Arc` under a read lock and works
//! on it without the lock, so freeing a handle while another thread is inside a call on it is
//! safe: the call finishes on its clone, and the memory goes when the last clone drops.
//!
//! The registry is read-mostly: lookups take its read lock, only a new handle, a free, and the
//! publication of an unreconciled list's new contents take the write lock. An unreconciled
//! list's contents live in its slot (an `Arc<AttrList>` replaced whole on each set), so the
//! readers of lists (reconcile, validate, export: the hot calls) take every input under one read
//! lock with one reference-count increment each, and no lock of the lists themselves.

use crate::attr::ListH;
use crate::status::{Fail, R};
use std::sync::{Arc, RwLock};
use unibuf_rs::attr::AttrList;

/// What a slot holds.
pub(crate) enum Entry {
    Module(Arc<crate::attr::ModuleH>),
    List(Arc<crate::attr::ListH>),
    Object(Arc<crate::object::ObjH>),
    Endpoint(Arc<crate::ipc::EndpointH>),
    Listener(Arc<crate::ipc::ListenerH>),
}

/// A kind of handle: how it sits in an [`Entry`], and its name for messages.
pub(crate) trait Kind: Sized {
    const NAME: &'static str;
    fn wrap(a: Arc<Self>) -> Entry;
    fn unwrap(e: &Entry) -> Option<&Arc<Self>>;
    fn take(e: Entry) -> Option<Arc<Self>>;
}

macro_rules! kind {
    ($t:ty, $v:ident, $name:literal) => {
        impl Kind for $t {
            const NAME: &'static str = $name;
            fn wrap(a: Arc<Self>) -> Entry {
                Entry::$v(a)
            }
            fn unwrap(e: &Entry) -> Option<&Arc<Self>> {
                match e {
                    Entry::$v(a) => Some(a),
                    _ => None,
                }
            }
            fn take(e: Entry) -> Option<Arc<Self>> {
                match e {
                    Entry::$v(a) => Some(a),
                    _ => None,
                }
            }
        }
    };
}
kind!(crate::attr::ModuleH, Module, "ub_module");
kind!(crate::attr::ListH, List, "ub_attr_list");
kind!(crate::object::ObjH, Object, "ub_obj");
kind!(crate::ipc::EndpointH, Endpoint, "ub_endpoint");
kind!(crate::ipc::ListenerH, Listener, "ub_listener");

struct Slot {
    generation: usize,
    entry: Option<Entry>,
    /// An unreconciled list's current contents (see the module's documentation); `None` for
    /// every other handle.
    list: Option<Arc<AttrList>>,
}

struct Registry {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    slots: Vec::new(),
    free: Vec::new(),
});

const SLOT_BITS: u32 = 24;
const SLOT_MASK: usize = (1 << SLOT_BITS) - 1;
const GEN_MASK: usize = usize::MAX >> SLOT_BITS;

fn token(slot: usize, generation: usize) -> usize {
    (generation << SLOT_BITS) | (slot + 1)
}

fn split(t: usize) -> Option<(usize, usize)> {
    let s = t & SLOT_MASK;
    (s != 0).then(|| (s - 1, t >> SLOT_BITS))
}

fn read() -> std::sync::RwLockReadGuard<'static, Registry> {
    // A panic never happens while the lock is held (no user code runs under it), but recover
    // from poisoning anyway: the registry's state is always consistent between statements.
    REGISTRY.read().unwrap_or_else(|p| p.into_inner())
}

fn write() -> std::sync::RwLockWriteGuard<'static, Registry> {
    REGISTRY.write().unwrap_or_else(|p| p.into_inner())
}

fn lookup<'r, T: Kind>(r: &'r Registry, t: usize, what: &str) -> R<&'r Arc<T>> {
    let p = t as *const u8;
    if t == 0 {
        return Err(Fail::bad(format!("{what}: NULL {} handle", T::NAME)));
    }
    let found = split(t).and_then(|(s, g)| {
        let slot = r.slots.get(s)?;
        if slot.generation != g {
            return None;
        }
        slot.entry.as_ref()
    });
    match found {
        None => Err(Fail::bad(format!(
            "{what}: {p:p} is not a live {} handle (never issued, or already freed)",
            T::NAME
        ))),
        Some(e) => T::unwrap(e).ok_or_else(|| {
            Fail::bad(format!(
                "{what}: {p:p} is a live handle of another kind, not a {}",
                T::NAME
            ))
        }),
    }
}

/// The handle's object (a clone of its `Arc`).
#[inline]
pub(crate) fn get<T: Kind, P>(p: *const P, what: &str) -> R<Arc<T>> {
    let r = read();
    lookup(&r, p as usize, what).cloned()
}

/// A list handle's object and, for an unreconciled list, its current contents.
pub(crate) fn get_list<P>(p: *const P, what: &str) -> R<(Arc<ListH>, Option<Arc<AttrList>>)> {
    let r = read();
    let h = lookup::<ListH>(&r, p as usize, what)?.clone();
    Ok((h, slot_list(&r, p as usize).cloned()))
}

fn slot_list(r: &Registry, t: usize) -> Option<&Arc<AttrList>> {
    split(t).and_then(|(s, _)| r.slots.get(s)?.list.as_ref())
}

/// Runs `f` on each list handle, in order, with its current contents (unreconciled lists),
/// under one read lock of the registry, without cloning the handles' `Arc`s (what `f` keeps,
/// it clones). `f` must not call into the registry, nor wait for anything.
pub(crate) fn with_each_list<P>(
    ps: &[*const P],
    what: &str,
    mut f: impl FnMut(&ListH, Option<&Arc<AttrList>>) -> R<()>,
) -> R<()> {
    let r = read();
    for p in ps {
        let t = *p as usize;
        f(lookup::<ListH>(&r, t, what)?, slot_list(&r, t))?;
    }
    Ok(())
}

/// Publishes an unreconciled list's new contents (the caller holds the list's writer lock).
pub(crate) fn publish<P>(p: *const P, what: &str, list: Arc<AttrList>) -> R<()> {
    let mut r = write();
    lookup::<ListH>(&r, p as usize, what)?;
    let old = match split(p as usize).and_then(|(s, _)| r.slots.get_mut(s)) {
        Some(sl) => sl.list.replace(list),
        None => None,
    };
    drop(r);
    drop(old);
    Ok(())
}

/// Registers a new handle.
pub(crate) fn insert<T: Kind, P>(a: Arc<T>) -> R<*mut P> {
    insert_with(a, None)
}

/// Registers a new handle, with an unreconciled list's contents.
pub(crate) fn insert_with<T: Kind, P>(a: Arc<T>, list: Option<Arc<AttrList>>) -> R<*mut P> {
    let mut r = write();
    let slot = match r.free.pop() {
        Some(s) => s,
        None => {
            let s = r.slots.len();
            if s >= SLOT_MASK {
                return Err(Fail::new(
                    crate::status::UB_ERR_INSUFFICIENT_RESOURCE,
                    format!("too many live handles ({s})"),
                ));
            }
            r.slots.push(Slot {
                generation: 0,
                entry: None,
                list: None,
            });
            s
        }
    };
    let sl = &mut r.slots[slot];
    sl.entry = Some(T::wrap(a));
    sl.list = list;
    Ok(token(slot, sl.generation) as *mut P)
}

/// Unregisters a handle and returns its object (the caller drops it outside the lock). The
/// registry's `Arc` is moved out, not cloned and dropped.
pub(crate) fn remove<T: Kind, P>(p: *const P, what: &str) -> R<Arc<T>> {
    let mut r = write();
    lookup::<T>(&r, p as usize, what)?;
    let Some((s, _)) = split(p as usize) else {
        return Err(Fail::bad(format!("{what}: {p:p} is not a handle")));
    };
    let sl = &mut r.slots[s];
    let e = sl.entry.take();
    let list = sl.list.take();
    sl.generation = (sl.generation + 1) & GEN_MASK;
    r.free.push(s);
    drop(r);
    drop(list);
    e.and_then(|e| T::take(e))
        .ok_or_else(|| Fail::bad(format!("{what}: {p:p} changed kind")))
}

/// Number of live handles (for leak checks in tests and examples).
#[no_mangle]
pub extern "C" fn ub_live_handle_count() -> usize {
    read().slots.iter().filter(|s| s.entry.is_some()).count()
}
