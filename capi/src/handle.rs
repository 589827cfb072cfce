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
//! ## Lookups take no lock
//!
//! An entry lives in its slot (no allocation per handle, but the `Arc` of the kinds below). A
//! call *pins* its thread (one store to a word of its own: no lock, no shared cache line),
//! reads the slot and the entry, and unpins when it is done. A free unlinks the token (one
//! compare-and-swap, so of two racing frees one wins), then waits for a *grace period*: until every thread that was pinned when the token
//! went has unpinned (as RCU's `synchronize_rcu` does). Only then is the entry moved out and
//! dropped. So a call on a handle that another thread frees is safe: either it saw the token
//! live, and the free waits for it, or it sees it gone. Nothing is deferred: a free drops the
//! registry's part at once (`ub_obj_free` closes the object's fds before it returns, unless a
//! call on the object is running in another thread: then when that call returns).
//!
//! Objects, endpoints and listeners are `Arc`s in their slots: their calls can block (I/O), so
//! they clone the `Arc` under the pin and run unpinned (a free then drops the registry's
//! reference; the call's clone keeps the object until the call ends). What such a call
//! returns (a CPU pointer, a borrowed fd) dies with the object, as the C documentation says:
//! a C program that frees a handle while another thread uses it gets results it must not use.
//! Modules and lists are borrowed under the pin: their calls only compute, so the grace periods
//! stay short.
//!
//! Generations have 40 bits on 64-bit targets (8 on 32-bit ones, where a stale handle can
//! match a new one after 256 reuses of its slot).
//!
//! Slots sit in segments of 64 that are allocated once and never move or go away (up to 2^20
//! live handles); free slots are kept per thread (a batch at a time from a global list), so
//! creating and freeing handles takes no lock either, in the common case.
//!
//! A pinned thread must not free (it would wait for itself): [`assert_unpinned`] panics instead,
//! before anything is unlinked, which the call's guard turns into `UB_ERR_UNKNOWN`. That is a
//! bug of this crate, never of a caller, and no call does it.

use crate::status::{Fail, R};
use std::cell::{Cell, RefCell, UnsafeCell};
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};

/// What a slot holds: a value of the kind its tag names (the tag says which field is live).
/// Not an enum: a value is written where it will stay (a reconciled list is large, and is not
/// moved in), and a lookup or a free checks the tag, which it reads anyway, not a second
/// discriminant.
pub(crate) union Payload {
    module: ManuallyDrop<crate::attr::ModuleH>,
    list: ManuallyDrop<crate::attr::ListH>,
    object: ManuallyDrop<Arc<crate::object::ObjH>>,
    endpoint: ManuallyDrop<Arc<crate::ipc::EndpointH>>,
    listener: ManuallyDrop<Arc<crate::ipc::ListenerH>>,
}

/// A kind of handle: where it sits in a [`Payload`], its tag and its name for messages. (Shared
/// between threads through the registry: `Send + Sync`.)
pub(crate) trait Kind: Sized + Send + Sync {
    const NAME: &'static str;
    /// Nonzero, one per kind: what a slot's tag holds while a value of this kind lives there.
    const TAG: u8;
    /// The address of this kind's field in `p` (computed, nothing read).
    fn place(p: *mut Payload) -> *mut Self;
}

macro_rules! kind {
    ($t:ty, $field:ident, $tag:literal, $name:literal) => {
        impl Kind for $t {
            const NAME: &'static str = $name;
            const TAG: u8 = $tag;
            #[inline(always)]
            fn place(p: *mut Payload) -> *mut Self {
                // SAFETY: a field's address, projected without a read (`ManuallyDrop` is
                // `repr(transparent)`); whoever uses it knows the field is (or is made) live.
                unsafe { (&raw mut (*p).$field).cast() }
            }
        }
    };
}
kind!(crate::attr::ModuleH, module, 1, "ub_module");
kind!(crate::attr::ListH, list, 2, "ub_attr_list");
kind!(Arc<crate::object::ObjH>, object, 3, "ub_obj");
kind!(Arc<crate::ipc::EndpointH>, endpoint, 4, "ub_endpoint");
kind!(Arc<crate::ipc::ListenerH>, listener, 5, "ub_listener");

struct Slot {
    /// The token of the handle that lives here; 0 while the slot is free.
    token: AtomicUsize,
    /// The entry's [`Kind::TAG`], written before the token is published.
    tag: AtomicU8,
    /// The generation of the slot's current (or next) handle; changed only by the thread that
    /// holds the slot free.
    generation: AtomicUsize,
    /// A value of the tag's kind from the write before the token is published until the free
    /// that unlinked the token drops (or moves) it; uninitialized otherwise. Written only by the
    /// thread that holds the slot free; read under a pin while the token is live; dropped by a
    /// free after its grace period.
    entry: UnsafeCell<MaybeUninit<Payload>>,
}

// SAFETY: `entry` is shared by the protocol above: a writer holds the slot exclusively (taken
// from the free lists, token 0, no reader can reach it), readers only read it while pinned and
// while the token they were given is live, and a free drops it only after the grace period,
// once no pinned reader can see it. Every kind stored is `Send + Sync` (`Kind`'s bound).
unsafe impl Sync for Slot {}

impl Slot {
    fn new() -> Slot {
        Slot {
            token: AtomicUsize::new(0),
            tag: AtomicU8::new(0),
            generation: AtomicUsize::new(0),
            entry: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Where a `T` lives in this slot (see `entry` for when it is live).
    #[inline(always)]
    fn place<T: Kind>(&self) -> *mut T {
        T::place(self.entry.get().cast())
    }
}

const SLOT_BITS: u32 = 24;
const SLOT_MASK: usize = (1 << SLOT_BITS) - 1;
const GEN_MASK: usize = usize::MAX >> SLOT_BITS;
/// Slots per segment (about 40 KiB of slots).
const SEG: usize = 64;
/// Segments: room for 2^20 live handles.
const SEGMENTS: usize = 1 << 14;
const CAPACITY: usize = SEG * SEGMENTS;
// Slot + 1 fits the token's slot bits.
const _: () = assert!(CAPACITY < SLOT_MASK);

/// The segments made so far (null: not yet). 128 KiB of zeroes, of which only the pages of the
/// segments in use are ever touched.
static SEGMENT: [AtomicPtr<Slot>; SEGMENTS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SEGMENTS];

/// Segment and index in it of slot `i`.
#[inline(always)]
fn locate(i: usize) -> (usize, usize) {
    (i / SEG, i % SEG)
}

/// Slot `i`, if its segment exists.
#[inline(always)]
fn slot(i: usize) -> Option<&'static Slot> {
    let (k, off) = locate(i);
    let seg = SEGMENT.get(k)?.load(Acquire);
    if seg.is_null() {
        return None;
    }
    // SAFETY: a segment is an array of `SEG` initialized slots, published with release order,
    // never freed nor moved; `off < SEG` by `locate`.
    Some(unsafe { &*seg.add(off) })
}

fn token(slot: usize, generation: usize) -> usize {
    (generation << SLOT_BITS) | (slot + 1)
}

// ---- Free slots: per thread, a batch at a time from the global list. ----

struct Free {
    slots: Vec<usize>,
    /// Slots made so far (slot numbers `0..made`).
    made: usize,
}

static FREE: Mutex<Free> = Mutex::new(Free {
    slots: Vec::new(),
    made: 0,
});
/// Free slots a thread takes from (or gives back to) the global list at once.
const BATCH: usize = 32;

fn free_list() -> std::sync::MutexGuard<'static, Free> {
    // No code that can panic runs under this lock, but recover from poisoning anyway: the list
    // is consistent between statements.
    FREE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Moves up to `n` free slots (made new when the list has none) into `into`.
fn refill(into: &mut Vec<usize>, n: usize) -> R<()> {
    let mut g = free_list();
    let from = g.slots.len().saturating_sub(n);
    into.extend(g.slots.drain(from..));
    while into.len() < n {
        let s = g.made;
        if s >= CAPACITY {
            if into.is_empty() {
                return Err(Fail::new(
                    crate::status::UB_ERR_INSUFFICIENT_RESOURCE,
                    format!("too many live handles ({s})"),
                ));
            }
            break;
        }
        let (k, _) = locate(s);
        if SEGMENT[k].load(Relaxed).is_null() {
            let seg: Box<[Slot]> = (0..SEG).map(|_| Slot::new()).collect();
            // Never freed: slots must outlive every reader (they are few, and reachable).
            SEGMENT[k].store(Box::into_raw(seg).cast::<Slot>(), Release);
        }
        g.made += 1;
        into.push(s);
    }
    Ok(())
}

#[inline(always)]
fn take_slot() -> R<usize> {
    /// A slot from `free`, refilled with up to `n` when it is empty.
    #[inline(always)]
    fn pop(free: &mut Vec<usize>, n: usize) -> R<usize> {
        match free.pop() {
            Some(s) => Ok(s),
            None => refill_pop(free, n),
        }
    }
    /// Refills `free` (with up to `n`) and pops one. Out of line: it is rare.
    #[cold]
    #[inline(never)]
    fn refill_pop(free: &mut Vec<usize>, n: usize) -> R<usize> {
        refill(free, n)?;
        free.pop()
            .ok_or_else(|| Fail::bad("no free handle slot (internal error)".to_string()))
    }
    LOCAL
        .try_with(|l| pop(&mut l.free.borrow_mut(), BATCH))
        // This thread's locals are gone (a call from a thread-local destructor).
        .unwrap_or_else(|_| pop(&mut Vec::new(), 1))
}

#[inline(always)]
fn put_slot(s: usize) {
    /// Gives a batch of this thread's free slots back to the global list. Out of line: rare.
    #[cold]
    #[inline(never)]
    fn spill(f: &mut Vec<usize>) {
        let from = f.len() - BATCH;
        free_list().slots.extend(f.drain(from..));
    }
    let kept = LOCAL.try_with(|l| {
        let mut f = l.free.borrow_mut();
        f.push(s);
        if f.len() >= 2 * BATCH {
            spill(&mut f);
        }
    });
    if kept.is_err() {
        free_list().slots.push(s);
    }
}

// ---- Pins and grace periods. ----

/// One thread's pin state, in a list that only grows (records are reused by later threads).
struct Rec {
    /// Odd while its thread is pinned; each pin and each unpin adds one.
    state: AtomicUsize,
    /// Whether a thread holds this record.
    taken: AtomicBool,
    /// The record pushed before this one (set before this one is published; never changed).
    next: AtomicPtr<Rec>,
}

static RECS: AtomicPtr<Rec> = AtomicPtr::new(std::ptr::null_mut());

/// The records, newest first, the list's head loaded with `head` order.
fn records(head: std::sync::atomic::Ordering) -> impl Iterator<Item = &'static Rec> {
    let mut p = RECS.load(head);
    std::iter::from_fn(move || {
        // SAFETY: records are leaked boxes, never freed; `next` is set before publication.
        let r = unsafe { p.as_ref() }?;
        p = r.next.load(Acquire);
        Some(r)
    })
}

/// A record for this thread: a free one from the list, or a new one pushed on it.
fn claim() -> &'static Rec {
    let free = records(Acquire).find(|r| {
        !r.taken.load(Relaxed)
            && r.taken
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
    });
    if let Some(r) = free {
        return r;
    }
    // (Miri, which checks this module's tests, has no `fork`.)
    #[cfg(not(miri))]
    {
        static AT_FORK: std::sync::Once = std::sync::Once::new();
        AT_FORK.call_once(|| {
            // SAFETY: registers a handler that only loads and stores atomics of leaked records,
            // which a child of `fork` may do. A failure (ENOMEM) leaves the child as without it.
            unsafe { libc::pthread_atfork(None, None, Some(unpin_all_in_child)) };
        });
    }
    let r: &'static Rec = Box::leak(Box::new(Rec {
        state: AtomicUsize::new(0),
        taken: AtomicBool::new(true),
        next: AtomicPtr::new(std::ptr::null_mut()),
    }));
    let mut head = RECS.load(Relaxed);
    loop {
        r.next.store(head, Relaxed);
        let me = (r as *const Rec).cast_mut();
        // SeqCst, as the head's load in `synchronize`: see there.
        match RECS.compare_exchange_weak(head, me, SeqCst, Relaxed) {
            Ok(_) => return r,
            Err(h) => head = h,
        }
    }
}

/// In the child of a `fork` only the forking thread goes on, and it is not in a call (a pin does
/// not outlive one): the other records' threads are gone, pinned or not. Marks every record
/// unpinned, so that a free in the child does not wait for threads that do not exist.
#[cfg_attr(miri, allow(dead_code))]
extern "C" fn unpin_all_in_child() {
    for r in records(Acquire) {
        let s = r.state.load(Relaxed);
        if s & 1 == 1 {
            r.state.store(s + 1, Release);
        }
    }
}

/// What a thread keeps: its pin record and its free slots (given back when it exits).
struct Local {
    rec: &'static Rec,
    free: RefCell<Vec<usize>>,
}

impl Drop for Local {
    fn drop(&mut self) {
        let f = std::mem::take(self.free.get_mut());
        if !f.is_empty() {
            free_list().slots.extend(f);
        }
        // Unpinned here (a pin does not outlive a call), so the next holder starts even.
        self.rec.taken.store(false, Release);
    }
}

thread_local! {
    static LOCAL: Local = Local { rec: claim(), free: RefCell::new(Vec::new()) };
    /// Open pins of this thread (nested pins share the outermost one's record). No destructor:
    /// usable while the thread's other locals are destroyed.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// A pin of this thread (see the module's documentation): what is borrowed from the registry
/// under it stays valid until it is dropped. Not `Send`; hold it only for computation, never
/// across I/O or a wait.
pub(crate) struct Pin {
    /// The record this pin announced on, and whether it was claimed for this pin only (the
    /// thread's locals are gone); `None` for a nested pin.
    rec: Option<(&'static Rec, bool)>,
    _not_send: PhantomData<*const ()>,
}

/// Runs `f` with this thread pinned: what `f` borrows from the registry stays valid while it
/// runs. (The only way to pin outside this module: a pin cannot be leaked, nor dropped out of
/// order.)
#[inline]
pub(crate) fn pinned<T>(f: impl FnOnce(&Pin) -> T) -> T {
    let g = pin();
    f(&g)
}

/// Pins this thread.
#[inline]
fn pin() -> Pin {
    let d = DEPTH.get();
    DEPTH.set(d + 1);
    if d > 0 {
        return Pin {
            rec: None,
            _not_send: PhantomData,
        };
    }
    let (rec, temp) = match LOCAL.try_with(|l| l.rec) {
        Ok(r) => (r, false),
        Err(_) => (claim(), true),
    };
    let s = rec.state.load(Relaxed);
    // See [`synchronize`] for why this store and the loads it orders are `SeqCst`.
    rec.state.store(s + 1, SeqCst);
    Pin {
        rec: Some((rec, temp)),
        _not_send: PhantomData,
    }
}

impl Drop for Pin {
    #[inline]
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get() - 1);
        if let Some((rec, temp)) = self.rec {
            let s = rec.state.load(Relaxed);
            // Release: this thread's reads of entries happen before a free that sees it even.
            rec.state.store(s + 1, Release);
            if temp {
                rec.taken.store(false, Release);
            }
        }
    }
}

/// Waits until every thread pinned now has unpinned (a grace period): what was unlinked before
/// this call is then read by no one.
///
/// Why that holds: the pin's store of an odd state, a reader's load of what it follows (a
/// slot's token, a list's contents pointer), the unlink of it (the token's compare-and-swap, the
/// contents' swap) and the loads of the states here are all `SeqCst`, so they fall in one total
/// order. If the reader's load saw the value before the unlink, its pin came before the unlink
/// and this loop reads its odd state (or the even one its unpin stored, with release order:
/// then all its reads happened before). Otherwise the reader saw the unlink and never reaches
/// the old value. No fence is needed (on x86 the pin is one locked store, the loads plain).
///
/// The list of records is in that order too: a new record's push and the load of the list's
/// head here are `SeqCst`, so a thread whose first pin comes before the unlink has its record
/// in the list this loop walks. (With an acquire load, a CPU with RCpc loads, `ldapr` on recent
/// Arm cores, could read the head from before the push and miss the record.) A record reused
/// from the list was pushed before its new thread's pin, which that thread's claim orders.
pub(crate) fn synchronize() {
    assert_unpinned();
    grace_period();
}

/// The wait of [`synchronize`], for a caller that checked [`assert_unpinned`] itself.
fn grace_period() {
    for r in records(SeqCst) {
        let s = r.state.load(SeqCst);
        if s & 1 == 1 {
            let mut spins = 0u32;
            while r.state.load(SeqCst) == s {
                if spins < 100 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Refuses (panics: an internal error the call's guard reports) to go on when this thread is
/// pinned: a grace period would wait for the thread itself. Checked before anything is
/// unlinked, so that the refusal changes nothing.
#[inline]
pub(crate) fn assert_unpinned() {
    assert!(
        DEPTH.get() == 0,
        "internal error: a handle freed while this thread reads the registry"
    );
}

// ---- The registry's calls. ----

/// The slot of token `t` if the token is live there (read `SeqCst`: see [`synchronize`]).
#[inline]
fn find(t: usize) -> Option<&'static Slot> {
    let s = (t & SLOT_MASK).checked_sub(1)?;
    let sl = slot(s)?;
    (sl.token.load(SeqCst) == t).then_some(sl)
}

/// Why token `t` is refused as a `T` (it is NULL, not live, or live as another kind).
#[cold]
#[inline(never)]
fn refusal<T: Kind>(t: usize, what: &str) -> Fail {
    let p = t as *const u8;
    if t == 0 {
        return Fail::bad(format!("{what}: NULL {} handle", T::NAME));
    }
    match find(t) {
        Some(sl) if sl.tag.load(Relaxed) != T::TAG => Fail::bad(format!(
            "{what}: {p:p} is a live handle of another kind, not a {}",
            T::NAME
        )),
        _ => Fail::bad(format!(
            "{what}: {p:p} is not a live {} handle (never issued, or already freed)",
            T::NAME
        )),
    }
}

/// The handle's entry, borrowed for as long as `pin` is held.
#[inline]
pub(crate) fn borrow<'p, T: Kind, P>(p: *const P, what: &str, pin: &'p Pin) -> R<&'p T> {
    lookup::<T, P>(p, pin).ok_or_else(|| refusal::<T>(p as usize, what))
}

/// [`borrow`] without the reason of a refusal (for loops that make it only when one comes).
#[inline]
pub(crate) fn lookup<T: Kind, P>(p: *const P, _pin: &Pin) -> Option<&T> {
    let sl = find(p as usize)?;
    // The tag is the token's: written before the token was published (the load in `find` saw
    // it), and not rewritten while this thread is pinned (the slot is reused only after a
    // free's grace period).
    (sl.tag.load(Relaxed) == T::TAG).then(|| {
        // SAFETY: the token is live and this thread is pinned: the entry was written as a `T`
        // (the tag) before the token was published, and a free drops it only after a grace
        // period, which waits for this pin.
        unsafe { &*sl.place::<T>() }
    })
}

/// A clone of the handle's entry (an `Arc` for objects, endpoints and listeners).
#[inline]
pub(crate) fn get<T: Kind + Clone, P>(p: *const P, what: &str) -> R<T> {
    pinned(|g| borrow::<T, P>(p, what, g).cloned())
}

/// Registers a new handle.
#[inline(always)]
pub(crate) fn insert<T: Kind, P>(v: T) -> R<*mut P> {
    let r = reserve::<T>()?;
    // SAFETY: a whole `T` is written at the reserved place.
    unsafe {
        r.place().write(v);
        Ok(r.publish())
    }
}

/// A slot taken for a new handle of kind `T`, not yet published: its value is written in
/// place (a reconciled list is large: written once, where it stays, not built beside and moved
/// in), then [`Reserved::publish`] makes the handle. Dropped unpublished, it gives the slot
/// back.
pub(crate) struct Reserved<T: Kind> {
    slot: usize,
    sl: &'static Slot,
    _kind: PhantomData<T>,
}

/// Takes a free slot for a new handle of kind `T`.
#[inline(always)]
pub(crate) fn reserve<T: Kind>() -> R<Reserved<T>> {
    let s = take_slot()?;
    match slot(s) {
        Some(sl) => Ok(Reserved {
            slot: s,
            sl,
            _kind: PhantomData,
        }),
        None => Err(Fail::bad(format!(
            "slot {s} has no segment (internal error)"
        ))),
    }
}

impl<T: Kind> Reserved<T> {
    /// Where the value is to be written (uninitialized: the slot is this thread's, taken from
    /// the free lists with token 0, so no reader reaches it and no other thread writes it; its
    /// last value was dropped or moved out by the free that gave it back).
    #[inline(always)]
    pub(crate) fn place(&self) -> *mut T {
        self.sl.place::<T>()
    }

    /// Publishes the handle.
    ///
    /// # Safety
    /// A whole `T` was written at [`Reserved::place`].
    #[inline(always)]
    pub(crate) unsafe fn publish<P>(self) -> *mut P {
        let me = ManuallyDrop::new(self);
        me.sl.tag.store(T::TAG, Relaxed);
        let t = token(me.slot, me.sl.generation.load(Relaxed));
        // Release (SeqCst is stronger): the entry and the tag are written before a reader can
        // see the token.
        me.sl.token.store(t, Release);
        t as *mut P
    }
}

impl<T: Kind> Drop for Reserved<T> {
    fn drop(&mut self) {
        // Unpublished: nothing was made visible; the slot goes back as it came (what was
        // written in it, if anything, is the caller's to have dropped).
        put_slot(self.slot);
    }
}

/// Unregisters a handle and returns its entry, once no call can still be reading it (the
/// caller drops it). Must not be called pinned.
pub(crate) fn remove<T: Kind, P>(p: *const P, what: &str) -> R<T> {
    // SAFETY: `unlink` hands over the live `T`, to be dropped or moved out once: moved here.
    unlink::<T, P, _>(p, what, |v| unsafe { v.read() })
}

/// Unregisters a handle and drops its entry where it lies (a list's is large: not moved),
/// once no call can still be reading it. Must not be called pinned.
#[inline]
pub(crate) fn free<T: Kind, P>(p: *const P, what: &str) -> R<()> {
    // SAFETY: `unlink` hands over the live `T`, to be dropped or moved out once: dropped here.
    unlink::<T, P, _>(p, what, |v| unsafe { v.drop_in_place() })
}

/// Unlinks the token, waits for the grace period, hands the entry to `f` and frees the slot.
/// `f` must drop the `T` it is given or move it out, once: the slot's entry is uninitialized
/// after.
#[inline]
fn unlink<T: Kind, P, X>(p: *const P, what: &str, f: impl FnOnce(*mut T) -> X) -> R<X> {
    assert_unpinned();
    let t = p as usize;
    // The tag is the token's: it is written before the token is published, and a slot is
    // reused only after its token went (then the compare-and-swap fails). Of two frees of one
    // token, one wins the compare-and-swap.
    let Some(sl) = find(t).filter(|sl| {
        sl.tag.load(Relaxed) == T::TAG && sl.token.compare_exchange(t, 0, SeqCst, Relaxed).is_ok()
    }) else {
        return Err(refusal::<T>(t, what));
    };
    grace_period();
    // This thread unlinked the token and the grace period is over: no call reads the entry
    // now, and none can start (the token is gone); the entry is a live `T` (the tag), and the
    // slot is this thread's until it is back on a free list. (Should `f` unwind, the slot is
    // never reused: its entry is not dropped twice.)
    let x = f(sl.place::<T>());
    sl.generation
        .store(((t >> SLOT_BITS) + 1) & GEN_MASK, Relaxed);
    put_slot((t & SLOT_MASK) - 1);
    Ok(x)
}

/// Number of live handles (for leak checks in tests and examples).
#[no_mangle]
pub extern "C" fn ub_live_handle_count() -> usize {
    let made = free_list().made;
    (0..made)
        .filter(|&s| slot(s).is_some_and(|sl| sl.token.load(Acquire) != 0))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_map_onto_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(SEG - 1), (0, SEG - 1));
        assert_eq!(locate(SEG), (1, 0));
        assert_eq!(locate(3 * SEG + 5), (3, 5));
        assert_eq!(locate(CAPACITY - 1), (SEGMENTS - 1, SEG - 1));
    }

    use std::sync::atomic::AtomicBool;

    /// Spawns a thread that pins, holds the pin until `release`, runs `before_unpin` and
    /// unpins; returns once that thread is pinned.
    fn hold_pin<'scope>(
        s: &'scope std::thread::Scope<'scope, '_>,
        release: &'scope AtomicBool,
        before_unpin: impl FnOnce() + Send + 'scope,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let g = pin();
            tx.send(()).expect("the test waits");
            while !release.load(SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            before_unpin();
            drop(g);
        });
        rx.recv().expect("the pinning thread started");
    }

    #[test]
    fn a_grace_period_waits_for_a_pinned_thread() {
        let done = AtomicBool::new(false);
        let released = AtomicBool::new(false);
        std::thread::scope(|s| {
            // The grace period has not ended while the pin is held.
            hold_pin(s, &released, || assert!(!done.load(SeqCst)));
            s.spawn(|| {
                synchronize();
                done.store(true, SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            let ended_early = done.load(SeqCst);
            // Released before the assertion: a failure must not leave the pinned thread
            // waiting (the scope would never end).
            released.store(true, SeqCst);
            assert!(
                !ended_early,
                "synchronize did not wait for the pinned thread"
            );
        });
        assert!(done.load(SeqCst));
    }

    /// A thread pinned when the process forks does not exist in the child: a free there must not
    /// wait for it (the `pthread_atfork` handler).
    #[test]
    #[cfg(not(miri))]
    fn a_free_in_a_forked_child_does_not_wait_for_the_parents_threads() {
        let h: *mut u8 = insert(crate::attr::ModuleH).expect("a handle");
        let release = AtomicBool::new(false);
        std::thread::scope(|s| {
            hold_pin(s, &release, || {});
            // SAFETY: the child only frees a handle (no allocation: the slot goes to this
            // thread's cache) and leaves with `_exit`.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let ok = remove::<crate::attr::ModuleH, _>(h, "child").is_ok();
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            let mut done = false;
            for _ in 0..1000 {
                // SAFETY: waits for the child forked above, without blocking.
                if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                    done = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if !done {
                // SAFETY: kills and reaps the child forked above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
            }
            release.store(true, SeqCst);
            assert!(
                done,
                "the child's free waited 10 s for a thread that is not in it"
            );
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        });
        remove::<crate::attr::ModuleH, _>(h, "parent").expect("the parent's handle");
    }

    #[test]
    fn nested_pins_and_a_free_while_pinned() {
        let a = pin();
        let b = pin();
        drop(b);
        // Still pinned by `a`: a free here would wait for itself, and is refused.
        let r = std::panic::catch_unwind(synchronize);
        assert!(r.is_err());
        drop(a);
        synchronize();
    }
}
