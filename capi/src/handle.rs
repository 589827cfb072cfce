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

use crate::status::{Fail, R};
use std::sync::{Arc, RwLock};

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

/// The objects of several handles, looked up under one lock.
pub(crate) fn get_many<T: Kind, P>(ps: &[*const P], what: &str) -> R<Vec<Arc<T>>> {
    let r = read();
    ps.iter()
        .map(|p| lookup(&r, *p as usize, what).cloned())
        .collect()
}

/// Registers a new handle.
pub(crate) fn insert<T: Kind, P>(a: Arc<T>) -> R<*mut P> {
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
            });
            s
        }
    };
    let sl = &mut r.slots[slot];
    sl.entry = Some(T::wrap(a));
    Ok(token(slot, sl.generation) as *mut P)
}

/// Unregisters a handle and returns its object (the caller drops it outside the lock).
pub(crate) fn remove<T: Kind, P>(p: *const P, what: &str) -> R<Arc<T>> {
    let mut r = write();
    let a = lookup::<T>(&r, p as usize, what)?.clone();
    if let Some((s, _)) = split(p as usize) {
        let sl = &mut r.slots[s];
        sl.entry = None;
        sl.generation = (sl.generation + 1) & GEN_MASK;
        r.free.push(s);
    }
    Ok(a)
}

/// Number of live handles (for leak checks in tests and examples).
#[no_mangle]
pub extern "C" fn ub_live_handle_count() -> usize {
    read().slots.iter().filter(|s| s.entry.is_some()).count()
}
