//! Unit tests of the boundary: handle validation, set-once through the C calls, the key table.

use crate::attr::*;
use crate::keys::{ub_key, KEY_NAMES};
use crate::object::*;
use crate::status::*;
use std::ptr::null_mut;
use unibuf_rs::attr::Key;

#[test]
fn key_constants_are_the_library_codes() {
    for (c, name) in KEY_NAMES {
        let k = Key::from_name(name).unwrap_or_else(|| panic!("no key {name}"));
        assert_eq!(*c as u32, u32::from(k.code()), "{name}");
    }
    let missing: Vec<_> = Key::ALL
        .iter()
        .filter(|k| !KEY_NAMES.iter().any(|(_, n)| *n == k.name()))
        .map(|k| k.name())
        .collect();
    // Not an error (the generic calls take any code), but the table should be complete.
    assert!(
        missing.is_empty(),
        "keys without a UB_KEY_ constant: {missing:?}"
    );
}

fn list() -> (*mut ub_module, *mut ub_attr_list) {
    let mut m = null_mut();
    let mut l = null_mut();
    // SAFETY: valid out-pointers.
    unsafe {
        assert_eq!(ub_module_open(&mut m), UB_SUCCESS);
        assert_eq!(ub_attr_list_create(m, &mut l), UB_SUCCESS);
    }
    (m, l)
}

#[test]
fn stale_null_and_wrong_kind_handles_are_refused() {
    let (m, l) = list();
    assert_eq!(ub_attr_list_free(l), UB_SUCCESS);
    assert_eq!(ub_attr_list_free(l), UB_ERR_BAD_PARAMETER);
    // SAFETY: the library's message is a valid C string until the next failing call.
    let msg = unsafe { std::ffi::CStr::from_ptr(ub_last_error_message()) };
    assert!(msg.to_str().unwrap().contains("already freed"), "{msg:?}");
    assert_eq!(ub_attr_list_free(null_mut()), UB_ERR_BAD_PARAMETER);
    assert_eq!(ub_obj_free(m.cast()), UB_ERR_BAD_PARAMETER);
    assert_eq!(
        ub_attr_list_free(0xdead_beef as *mut _),
        UB_ERR_BAD_PARAMETER
    );
    // A new handle in the freed slot is a different token: the stale one stays dead.
    let (m2, l2) = list();
    assert_ne!(l2, l);
    assert_eq!(ub_attr_list_free(l), UB_ERR_BAD_PARAMETER);
    assert_eq!(ub_attr_list_free(l2), UB_SUCCESS);
    assert_eq!(ub_module_close(m2), UB_SUCCESS);
    assert_eq!(ub_module_close(m), UB_SUCCESS);
}

/// The message of the last failed call on this thread.
fn last_message() -> String {
    // SAFETY: the library's message is a valid C string until the next failing call.
    unsafe { std::ffi::CStr::from_ptr(ub_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn reconcile_refuses_each_input_that_is_no_unreconciled_list() {
    let (m, good) = list();
    // SAFETY: valid handles and out-pointers.
    unsafe {
        assert_eq!(set_raw(good, 4096), UB_SUCCESS);
        let mut rec = null_mut();
        let ins = [good.cast_const()];
        assert_eq!(
            ub_attr_list_reconcile(ins.as_ptr(), 1, &mut rec, null_mut()),
            UB_SUCCESS
        );
        let (_, freed) = list();
        assert_eq!(ub_attr_list_free(freed), UB_SUCCESS);
        let cases: [(*const ub_attr_list, &str); 4] = [
            (std::ptr::null(), "NULL ub_attr_list handle"),
            (freed, "already freed"),
            (m.cast_const().cast(), "live handle of another kind"),
            (rec, "an input is a reconciled list"),
        ];
        for (bad, why) in cases {
            // The bad input second: the good one before it was borrowed, and is let go.
            let ins = [good.cast_const(), bad];
            let mut out = std::ptr::dangling_mut::<ub_attr_list>();
            assert_eq!(
                ub_attr_list_reconcile(ins.as_ptr(), 2, &mut out, null_mut()),
                UB_ERR_BAD_PARAMETER,
                "{why}"
            );
            let msg = last_message();
            assert!(msg.starts_with("ub_attr_list_reconcile: "), "{msg}");
            assert!(msg.contains(why), "{why}: {msg}");
            assert_eq!(
                out,
                std::ptr::dangling_mut(),
                "{why}: the out-pointer was written"
            );
        }
        assert_eq!(ub_attr_list_free(rec), UB_SUCCESS);
        assert_eq!(ub_attr_list_free(good), UB_SUCCESS);
    }
    assert_eq!(ub_module_close(m), UB_SUCCESS);
}

#[test]
fn set_once_and_value_forms() {
    let (m, l) = list();
    let types = 1u8;
    let size = 4096u64;
    // Two GPU UUIDs (NvSciRmGpuId: 16 bytes each), in sorted order as the set keeps them.
    let ids = [[0x11u8; 16], [0x22u8; 16]].concat();
    let kv = |k: ub_key, p: *const u8, n: usize| ub_attr_kv {
        key: k as u32,
        value: p.cast(),
        len: n,
    };
    let pairs = [
        kv(ub_key::UB_KEY_TYPES, &types, 1),
        kv(ub_key::UB_KEY_RAW_SIZE, (&size as *const u64).cast(), 8),
        kv(ub_key::UB_KEY_GPU_IDS, ids.as_ptr(), ids.len()),
        kv(ub_key::UB_KEY_ACCESSOR_NAME, c"cam".as_ptr().cast(), 4),
    ];
    // SAFETY: the pairs point to live values.
    unsafe {
        assert_eq!(ub_attr_list_set_attrs(l, pairs.as_ptr(), 4), UB_SUCCESS);
        assert_eq!(
            ub_attr_list_set_attrs(l, pairs[1..].as_ptr(), 1),
            UB_ERR_BAD_PARAMETER
        );
        assert_eq!(ub_last_error_key(), 0x0101);
        assert_eq!(
            ub_attr_list_set_attrs(l, null_mut(), 1),
            UB_ERR_BAD_PARAMETER
        );
        let mut get = [
            kv(ub_key::UB_KEY_GPU_IDS, std::ptr::null(), 0),
            kv(ub_key::UB_KEY_ACCESSOR_NAME, std::ptr::null(), 0),
            kv(ub_key::UB_KEY_RAW_ALIGN, std::ptr::null(), 0),
        ];
        assert_eq!(ub_attr_list_get_attrs(l, get.as_mut_ptr(), 3), UB_SUCCESS);
        assert_eq!(
            std::slice::from_raw_parts(get[0].value.cast::<u8>(), get[0].len),
            &ids[..]
        );
        assert_eq!(
            std::slice::from_raw_parts(get[1].value.cast::<u8>(), get[1].len),
            b"cam"
        );
        assert!(get[2].value.is_null() && get[2].len == 0);
    }
    assert_eq!(ub_attr_list_free(l), UB_SUCCESS);
    assert_eq!(ub_module_close(m), UB_SUCCESS);
}

#[test]
fn version() {
    let (mut major, mut minor) = (99, 99);
    let mut ok = false;
    // SAFETY: valid out-pointers.
    unsafe {
        assert_eq!(ub_get_version(&mut major, &mut minor), UB_SUCCESS);
        assert_eq!((major, minor), (UB_VERSION_MAJOR, UB_VERSION_MINOR));
        assert_eq!(
            ub_check_version_compatibility(major, minor, &mut ok),
            UB_SUCCESS
        );
        assert!(ok);
        assert_eq!(
            ub_check_version_compatibility(major, minor + 1, &mut ok),
            UB_SUCCESS
        );
        assert!(!ok, "a newer minor version than the library's");
        assert_eq!(
            ub_check_version_compatibility(major + 1, 0, &mut ok),
            UB_SUCCESS
        );
        assert!(!ok, "another major version");
        assert_eq!(ub_get_version(null_mut(), &mut minor), UB_ERR_BAD_PARAMETER);
    }
}

/// Sets `raw` lists: types, size, CPU accessor.
unsafe fn set_raw(l: *mut ub_attr_list, size: u64) -> ub_status {
    let (types, kind) = (1u8, crate::consts::ub_accessor_kind::UB_ACCESSOR_CPU as u32);
    let pairs = [
        ub_attr_kv {
            key: ub_key::UB_KEY_TYPES as u32,
            value: (&types as *const u8).cast(),
            len: 1,
        },
        ub_attr_kv {
            key: ub_key::UB_KEY_RAW_SIZE as u32,
            value: (&size as *const u64).cast(),
            len: 8,
        },
        ub_attr_kv {
            key: ub_key::UB_KEY_ACCESSOR_KIND as u32,
            value: (&kind as *const u32).cast(),
            len: 4,
        },
    ];
    // SAFETY: the pairs point to live values.
    unsafe { ub_attr_list_set_attrs(l, pairs.as_ptr(), 3) }
}

fn out_size(r: *const ub_attr_list) -> u64 {
    out_u64(r, ub_key::UB_KEY_OUT_SIZE)
}

/// A 64-bit value of a reconciled list.
fn out_u64(r: *const ub_attr_list, key: ub_key) -> u64 {
    let mut v = 0u64;
    let mut len = 8usize;
    // SAFETY: `v` has `len` bytes.
    let st =
        unsafe { ub_attr_list_get_value(r, key as u32, (&mut v as *mut u64).cast(), &mut len) };
    assert_eq!((st, len), (UB_SUCCESS, 8));
    v
}

#[test]
fn contents_are_copied_on_write() {
    let (m, a) = list();
    let mut b = null_mut();
    let mut r = null_mut();
    // SAFETY: valid handles and out-pointers.
    unsafe {
        // A clone shares the contents until one of them changes.
        assert_eq!(ub_attr_list_clone(a, &mut b), UB_SUCCESS);
        assert_eq!(set_raw(a, 4096), UB_SUCCESS);
        let mut n = 0usize;
        let mut kv = [ub_attr_kv {
            key: ub_key::UB_KEY_RAW_SIZE as u32,
            value: std::ptr::null(),
            len: 0,
        }];
        assert_eq!(ub_attr_list_get_attrs(b, kv.as_mut_ptr(), 1), UB_SUCCESS);
        assert!(kv[0].value.is_null(), "the clone saw the original's set");
        assert_eq!(set_raw(b, 8192), UB_SUCCESS);
        // The same handle twice is two inputs (and no lock is taken twice).
        let ins = [a.cast_const(), a.cast_const()];
        assert_eq!(
            ub_attr_list_reconcile(ins.as_ptr(), 2, &mut r, null_mut()),
            UB_SUCCESS
        );
        assert!(out_size(r) >= 4096);
        assert_eq!(ub_attr_list_free(r), UB_SUCCESS);
        // A refused set changes nothing; a reconciled list keeps what its inputs were.
        assert_eq!(set_raw(b, 1), UB_ERR_BAD_PARAMETER);
        let ins = [b.cast_const()];
        assert_eq!(
            ub_attr_list_reconcile(ins.as_ptr(), 1, &mut r, null_mut()),
            UB_SUCCESS
        );
        assert_eq!(out_size(r), 8192);
        assert_eq!(ub_attr_list_get_slot_count(b, &mut n), UB_SUCCESS);
        assert_eq!(n, 1);
        // A reconciled list cannot be changed.
        assert_eq!(set_raw(r, 4096), UB_ERR_BAD_PARAMETER);
        for h in [r, a, b] {
            assert_eq!(ub_attr_list_free(h), UB_SUCCESS);
        }
    }
    assert_eq!(ub_module_close(m), UB_SUCCESS);
}

/// More inputs than `with_inputs` keeps on the stack (8), given as plain lists and as an
/// appended list: every one reaches the reconcile (the largest alignment wins wherever it
/// stands).
#[test]
fn more_inputs_than_the_stack_buffer_all_count() {
    let mut m = null_mut();
    // SAFETY: a valid out-pointer.
    assert_eq!(unsafe { ub_module_open(&mut m) }, UB_SUCCESS);
    let lists: Vec<*mut ub_attr_list> = (0..11u32)
        .map(|i| {
            let mut l = null_mut();
            // SAFETY: a live module, a valid out-pointer.
            assert_eq!(unsafe { ub_attr_list_create(m, &mut l) }, UB_SUCCESS);
            // The 10th list asks for the most.
            let align: u64 = if i == 9 { 1 << 20 } else { 16 << i };
            let kv = ub_attr_kv {
                key: ub_key::UB_KEY_RAW_ALIGN as u32,
                value: (&align as *const u64).cast(),
                len: 8,
            };
            // SAFETY: a live list; the pair points to a live value.
            unsafe {
                assert_eq!(set_raw(l, 4096), UB_SUCCESS);
                assert_eq!(ub_attr_list_set_attrs(l, &kv, 1), UB_SUCCESS);
            }
            l
        })
        .collect();
    let ins: Vec<*const ub_attr_list> = lists.iter().map(|l| l.cast_const()).collect();
    let align = |r| out_u64(r, ub_key::UB_KEY_OUT_ALIGN);
    let mut r = null_mut();
    let mut appended = null_mut();
    let mut n = 0usize;
    // SAFETY: valid handles and out-pointers.
    unsafe {
        assert_eq!(
            ub_attr_list_reconcile(ins.as_ptr(), ins.len(), &mut r, null_mut()),
            UB_SUCCESS
        );
        assert_eq!(align(r), 1 << 20);
        assert_eq!(ub_attr_list_free(r), UB_SUCCESS);
        // Without the 10th, the 11th (16 KiB) is the largest: the one past the buffer counts.
        let mut without = ins.clone();
        without.remove(9);
        assert_eq!(
            ub_attr_list_reconcile(without.as_ptr(), without.len(), &mut r, null_mut()),
            UB_SUCCESS
        );
        assert_eq!(align(r), 16 << 10);
        assert_eq!(ub_attr_list_free(r), UB_SUCCESS);
        // One appended list of 11 slots counts as its 11 lists.
        assert_eq!(
            ub_attr_list_append(ins.as_ptr(), ins.len(), &mut appended),
            UB_SUCCESS
        );
        assert_eq!(ub_attr_list_get_slot_count(appended, &mut n), UB_SUCCESS);
        assert_eq!(n, 11);
        let one = [appended.cast_const()];
        assert_eq!(
            ub_attr_list_reconcile(one.as_ptr(), 1, &mut r, null_mut()),
            UB_SUCCESS
        );
        assert_eq!(align(r), 1 << 20);
        for h in [r, appended].into_iter().chain(lists) {
            assert_eq!(ub_attr_list_free(h), UB_SUCCESS);
        }
    }
    assert_eq!(ub_module_close(m), UB_SUCCESS);
}

/// Threads that create, set, clone, reconcile and free lists, some of them shared (and freed
/// under the others' feet): every call answers a status it may answer (no panic, no deadlock),
/// and the sets that succeed are seen whole by the reconciles.
#[test]
fn lists_under_concurrent_sets_reconciles_and_frees() {
    use std::sync::atomic::{AtomicUsize, Ordering::*};
    const SHARED: usize = 8;
    let (m, l0) = list();
    assert_eq!(ub_attr_list_free(l0), UB_SUCCESS);
    // Handles as integers: tokens, not addresses, and shared across threads on purpose (with
    // acquire and release, as a C program hands a handle to another thread: through a lock or
    // a queue).
    let shared: Vec<AtomicUsize> = (0..SHARED).map(|_| AtomicUsize::new(0)).collect();
    let fresh = |m: usize| {
        let mut l = null_mut();
        // SAFETY: a valid out-pointer.
        let st = unsafe { ub_attr_list_create(m as *mut ub_module, &mut l) };
        assert_eq!(st, UB_SUCCESS);
        l as usize
    };
    for s in &shared {
        s.store(fresh(m as usize), Release);
    }
    let seen = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for t in 0..4usize {
            let (shared, seen) = (&shared, &seen);
            let m = m as usize;
            sc.spawn(move || {
                // Fewer under Miri (which checks this test for data races and memory-order bugs).
                let n = if cfg!(miri) { 40 } else { 2000 };
                for i in 0..n {
                    let k = (i * 7 + t * 3) % SHARED;
                    let h = shared[k].load(Acquire) as *mut ub_attr_list;
                    // SAFETY: every pointer handed over is a token or an out-pointer to a local.
                    unsafe {
                        match (i + t) % 4 {
                            // A set: the first wins, the others are refused (set once), or the
                            // handle was freed meanwhile.
                            0 => {
                                let st = set_raw(h, 4096 * (k as u64 + 1));
                                assert!(matches!(st, UB_SUCCESS | UB_ERR_BAD_PARAMETER), "{st:?}");
                            }
                            // A reconcile of two shared lists (possibly the same one, possibly
                            // empty or freed): a result is whole.
                            1 => {
                                let j = (k + 1 + t) % SHARED;
                                let ins = [h.cast_const(), shared[j].load(Acquire) as *const _];
                                let mut r = null_mut();
                                match ub_attr_list_reconcile(ins.as_ptr(), 2, &mut r, null_mut()) {
                                    UB_SUCCESS => {
                                        assert!(out_size(r) >= 4096);
                                        seen.fetch_add(1, Relaxed);
                                        assert_eq!(ub_attr_list_free(r), UB_SUCCESS);
                                    }
                                    st => assert!(
                                        matches!(
                                            st,
                                            UB_ERR_BAD_PARAMETER | UB_ERR_RECONCILIATION_FAILED
                                        ),
                                        "{st:?}"
                                    ),
                                }
                            }
                            // A clone, dumped and freed.
                            2 => {
                                let mut c = null_mut();
                                if ub_attr_list_clone(h, &mut c) == UB_SUCCESS {
                                    let mut s = null_mut();
                                    assert_eq!(ub_attr_list_dump(c, 0, &mut s), UB_SUCCESS);
                                    crate::ffi::ub_string_free(s);
                                    assert_eq!(ub_attr_list_free(c), UB_SUCCESS);
                                }
                            }
                            // A shared list replaced: freed (maybe while another thread is in a
                            // call on it) and a fresh one put in its place.
                            _ => {
                                let old = shared[k].swap(fresh(m), AcqRel);
                                let st = ub_attr_list_free(old as *mut ub_attr_list);
                                assert_eq!(st, UB_SUCCESS);
                            }
                        }
                    }
                }
            });
        }
    });
    assert!(seen.load(Relaxed) > 0, "no reconcile succeeded");
    for s in &shared {
        assert_eq!(
            ub_attr_list_free(s.load(Acquire) as *mut ub_attr_list),
            UB_SUCCESS
        );
    }
    assert_eq!(ub_module_close(m), UB_SUCCESS);
}

/// `ub_obj_get_attr_list` racing `ub_obj_free`: the list handle the object owns is freed with
/// it whichever comes first (none is left live for ever), and a call that lost the race says so.
#[test]
#[cfg(not(miri))] // allocates memfds
fn an_objects_list_dies_with_it_when_free_races_get() {
    use std::sync::atomic::{AtomicUsize, Ordering::*};
    let (m, l) = list();
    // SAFETY: valid handles and out-pointers.
    unsafe {
        assert_eq!(set_raw(l, 4096), UB_SUCCESS);
        for _ in 0..200 {
            let mut o = null_mut();
            let ins = [l.cast_const()];
            let st = ub_attr_list_reconcile_and_obj_alloc(ins.as_ptr(), 1, &mut o, null_mut());
            assert_eq!(st, UB_SUCCESS);
            let (obj, got) = (o as usize, AtomicUsize::new(0));
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut r = null_mut();
                    if ub_obj_get_attr_list(obj as *const ub_obj, &mut r) == UB_SUCCESS {
                        got.store(r as usize, Release);
                    }
                });
                s.spawn(|| assert_eq!(ub_obj_free(obj as *mut ub_obj), UB_SUCCESS));
            });
            let r = got.load(Acquire) as *const ub_attr_list;
            if !r.is_null() {
                let mut n = 0usize;
                assert_eq!(
                    ub_attr_list_get_slot_count(r, &mut n),
                    UB_ERR_BAD_PARAMETER,
                    "the object's list outlived the object"
                );
            }
        }
        assert_eq!(ub_attr_list_free(l), UB_SUCCESS);
    }
    assert_eq!(ub_module_close(m), UB_SUCCESS);
}
