//! Checks of what C passes in: pointers, lengths, strings. Nothing from C is trusted.

use crate::status::{Fail, R};
use std::ffi::{c_char, CStr};

/// The most elements any array argument may have (lists to reconcile, key/value pairs).
pub(crate) const MAX_ARRAY: usize = 1 << 16;

/// Checks an out-pointer: non-NULL and aligned for `T`.
#[inline(always)]
pub(crate) fn out<T>(p: *mut T, what: &str, name: &str) -> R<()> {
    if p.is_null() || !p.is_aligned() {
        return Err(bad_pointer(p.cast_const().cast(), what, name));
    }
    Ok(())
}

/// Why a pointer argument was refused (NULL or misaligned). Out of line: the checks stay small.
#[cold]
#[inline(never)]
fn bad_pointer(p: *const u8, what: &str, name: &str) -> Fail {
    if p.is_null() {
        Fail::bad(format!("{what}: {name} is NULL"))
    } else {
        Fail::bad(format!("{what}: {name} ({p:p}) is misaligned"))
    }
}

/// Writes a checked out-pointer.
///
/// # Safety
/// `p` was checked with [`out`] and points to writable memory for a `T` (the C caller's duty).
pub(crate) unsafe fn put<T>(p: *mut T, v: T) {
    // SAFETY: non-NULL and aligned (checked by `out`); writable by the caller's contract. The
    // old contents are plain C data, not dropped.
    unsafe { p.write(v) }
}

/// An array argument: NULL is accepted only with `n == 0`; `n` is bounded.
///
/// # Safety
/// When `n > 0`, `p` points to `n` readable `T`s that stay unchanged during the call.
#[inline(always)]
pub(crate) unsafe fn slice<'a, T>(p: *const T, n: usize, what: &str, name: &str) -> R<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if n > MAX_ARRAY || p.is_null() || !p.is_aligned() {
        return Err(bad_array(p.cast(), n, what, name));
    }
    // SAFETY: non-NULL, aligned, `n` elements by the caller's contract; `n * size_of::<T>()` is
    // at most 2^16 * a small struct, far below isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Why an array argument was refused. Out of line: the checks stay small.
#[cold]
#[inline(never)]
fn bad_array(p: *const u8, n: usize, what: &str, name: &str) -> Fail {
    if n > MAX_ARRAY {
        Fail::bad(format!(
            "{what}: {name} has {n} elements, at most {MAX_ARRAY} are accepted"
        ))
    } else if p.is_null() {
        Fail::bad(format!("{what}: {name} is NULL with a count of {n}"))
    } else {
        bad_pointer(p, what, name)
    }
}

/// A byte buffer argument (a value): NULL only with `len == 0`; at most 1 MiB.
///
/// # Safety
/// When `len > 0`, `p` points to `len` readable bytes.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> R<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if len > 1 << 20 {
        return Err(Fail::bad(format!(
            "{what}: a value of {len} bytes is too long"
        )));
    }
    if p.is_null() {
        return Err(Fail::bad(format!(
            "{what}: value is NULL with a length of {len}"
        )));
    }
    // SAFETY: non-NULL, `len` bytes by the caller's contract, u8 needs no alignment.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A NUL-terminated UTF-8 string argument (at most 4096 bytes).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn string<'a>(p: *const c_char, what: &str, name: &str) -> R<&'a str> {
    if p.is_null() {
        return Err(Fail::bad(format!("{what}: {name} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    let b = c.to_bytes();
    if b.len() > 4096 {
        return Err(Fail::bad(format!(
            "{what}: {name} is longer than 4096 bytes"
        )));
    }
    std::str::from_utf8(b).map_err(|_| Fail::bad(format!("{what}: {name} is not UTF-8")))
}

/// A string the library hands to C (freed with `ub_string_free`).
pub(crate) fn c_string(s: String) -> *mut c_char {
    let b: Vec<u8> = s.into_bytes().into_iter().filter(|b| *b != 0).collect();
    std::ffi::CString::new(b).unwrap_or_default().into_raw()
}

/// Frees a string returned by the library (`ub_attr_list_dump`). NULL is accepted.
///
/// # Safety
/// `s` is NULL or a string returned by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ub_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: made by `CString::into_raw` in `c_string` (the caller's contract).
        drop(unsafe { std::ffi::CString::from_raw(s) });
    });
}
