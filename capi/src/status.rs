//! Status codes, the per-thread last error, and the boundary wrapper every exported function
//! runs its body in (no panic crosses into C).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use unibuf_rs::attr::AttrError;
use unibuf_rs::reconcile::Conflict;
use unibuf_rs::Error;

/// The result of every `ub_` call, in the spirit of `NvSciError`.
///
/// Every failure also leaves a message on the calling thread ([`ub_last_error_message`]) with
/// what the library knows: the key, the accessors and values, the path, the errno.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ub_status {
    /// The call succeeded.
    UB_SUCCESS = 0,
    /// A NULL or stale handle, a NULL pointer where one is needed, a bad length, an unknown
    /// key or code, a value refused by the key's rules (set once, wrong buffer type, range).
    UB_ERR_BAD_PARAMETER = 1,
    /// The operation is not supported here (no such device or backend, a buffer that cannot be
    /// CPU-mapped, an ioctl the kernel lacks).
    UB_ERR_NOT_SUPPORTED = 2,
    /// The handle's permission (or the list's CPU access) does not allow it, or the kernel
    /// answered EACCES/EPERM.
    UB_ERR_ACCESS_DENIED = 3,
    /// Out of memory (ENOMEM).
    UB_ERR_INSUFFICIENT_MEMORY = 4,
    /// The lists cannot be reconciled: keys disagree, a mandatory key is missing, the merged
    /// values are inconsistent.
    UB_ERR_RECONCILIATION_FAILED = 5,
    /// A reconciled list does not satisfy the unreconciled lists it was checked against.
    UB_ERR_ATTR_LIST_VALIDATION_FAILED = 6,
    /// A wait (IPC receive, accept) ran past its timeout.
    UB_ERR_TIMEOUT = 7,
    /// A system call failed (the message names it, the target and the errno).
    UB_ERR_RESOURCE_ERROR = 8,
    /// A request above a limit (the endpoint's allocation limit).
    UB_ERR_INSUFFICIENT_RESOURCE = 9,
    /// The IPC peer sent something malformed or unexpected, or reported an error.
    UB_ERR_IPC = 10,
    /// The IPC peer disconnected.
    UB_ERR_CONNECTION_RESET = 11,
    /// A buffer given by the caller is too small (the needed length was written back).
    UB_ERR_OVERFLOW = 12,
    /// An internal error (a caught panic: please report it with the message).
    UB_ERR_UNKNOWN = 13,
}

pub use ub_status::*;

/// A failure on its way to C: a status and the message for the thread's last error. Boxed, so
/// that a call's `R<T>` is a word or two, not the failure's size, on every success path.
#[derive(Debug)]
pub(crate) struct Fail(Box<Failure>);

/// What a [`Fail`] holds.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: ub_status,
    pub msg: String,
    pub errno: i32,
    pub key: u32,
}

impl std::ops::Deref for Fail {
    type Target = Failure;
    fn deref(&self) -> &Failure {
        &self.0
    }
}

impl std::ops::DerefMut for Fail {
    fn deref_mut(&mut self) -> &mut Failure {
        &mut self.0
    }
}

impl From<Failure> for Fail {
    #[cold]
    fn from(f: Failure) -> Fail {
        Fail(Box::new(f))
    }
}

impl Fail {
    pub(crate) fn new(status: ub_status, msg: impl Into<String>) -> Fail {
        Fail::from(Failure {
            status,
            msg: msg.into(),
            errno: 0,
            key: 0,
        })
    }
    pub(crate) fn bad(msg: impl Into<String>) -> Fail {
        Fail::new(UB_ERR_BAD_PARAMETER, msg)
    }
}

pub(crate) type R<T> = Result<T, Fail>;

fn attr_key(e: &AttrError) -> u32 {
    use AttrError as A;
    let k = match e {
        A::OutputKey(k) | A::AlreadySet(k) | A::Zero(k) => Some(*k),
        A::WrongBufferType { key, .. }
        | A::WrongValueKind { key, .. }
        | A::NotPowerOfTwo { key, .. }
        | A::TooManyDims { key, .. }
        | A::ScaleOutOfRange { key, .. }
        | A::Invalid { key, .. }
        | A::Decode { key, .. } => Some(*key),
        A::UnknownKey(c) => return u32::from(*c),
        _ => None,
    };
    k.map_or(0, |k| u32::from(k.code()))
}

pub(crate) fn conflict_status(c: &Conflict) -> ub_status {
    if c.heading() == "not satisfied" {
        UB_ERR_ATTR_LIST_VALIDATION_FAILED
    } else {
        UB_ERR_RECONCILIATION_FAILED
    }
}

impl From<Conflict> for Fail {
    fn from(c: Conflict) -> Fail {
        Fail::from(Failure {
            status: conflict_status(&c),
            key: c.keys().next().map_or(0, |k| u32::from(k.code())),
            msg: c.to_string(),
            errno: 0,
        })
    }
}

impl From<AttrError> for Fail {
    fn from(e: AttrError) -> Fail {
        Fail::from(Failure {
            status: UB_ERR_BAD_PARAMETER,
            key: attr_key(&e),
            msg: e.to_string(),
            errno: 0,
        })
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        use rustix::io::Errno as E;
        let mut errno = 0;
        let mut key = 0;
        let status = match &e {
            Error::Sys { errno: en, .. } => {
                errno = en.raw();
                match en.0 {
                    E::NOMEM => UB_ERR_INSUFFICIENT_MEMORY,
                    E::ACCESS | E::PERM => UB_ERR_ACCESS_DENIED,
                    E::NOTTY | E::NOTSUP | E::NOSYS | E::NODEV | E::NOENT => UB_ERR_NOT_SUPPORTED,
                    E::TIMEDOUT => UB_ERR_TIMEOUT,
                    E::CONNRESET | E::PIPE => UB_ERR_CONNECTION_RESET,
                    x if x.raw_os_error() == 524 => UB_ERR_NOT_SUPPORTED,
                    _ => UB_ERR_RESOURCE_ERROR,
                }
            }
            Error::Unavailable { .. } => UB_ERR_NOT_SUPPORTED,
            Error::PermissionDenied(_) => UB_ERR_ACCESS_DENIED,
            Error::InvalidArgument(_) => UB_ERR_BAD_PARAMETER,
            Error::Attr(a) => {
                key = attr_key(a);
                UB_ERR_BAD_PARAMETER
            }
            Error::Conflict(c) => {
                key = c.keys().next().map_or(0, |k| u32::from(k.code()));
                conflict_status(c)
            }
            Error::Ipc(_) => UB_ERR_IPC,
            Error::Disconnected => UB_ERR_CONNECTION_RESET,
            Error::Timeout { .. } => UB_ERR_TIMEOUT,
            Error::LimitExceeded { .. } => UB_ERR_INSUFFICIENT_RESOURCE,
            Error::Device { .. } => UB_ERR_RESOURCE_ERROR,
            _ => UB_ERR_UNKNOWN,
        };
        Fail::from(Failure {
            status,
            msg: e.to_string(),
            errno,
            key,
        })
    }
}

struct Last {
    status: ub_status,
    msg: CString,
    errno: i32,
    key: u32,
}

thread_local! {
    static LAST: RefCell<Last> = RefCell::new(Last {
        status: UB_SUCCESS,
        msg: CString::default(),
        errno: 0,
        key: 0,
    });
}

fn record(f: Fail) -> ub_status {
    let f = *f.0;
    let status = f.status;
    // A message with a NUL inside is cut there (messages never hold one, but be safe).
    let bytes: Vec<u8> = f
        .msg
        .into_bytes()
        .into_iter()
        .take_while(|b| *b != 0)
        .collect();
    let msg = CString::new(bytes).unwrap_or_default();
    let _ = LAST.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            *l = Last {
                status,
                msg,
                errno: f.errno,
                key: f.key,
            };
        }
    });
    status
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Runs the body of an exported function: a failure is recorded as the thread's last error and
/// returned as its status; a panic is caught and reported as `UB_ERR_UNKNOWN`. Success leaves
/// the last error as it was (as `errno` does).
#[inline]
pub(crate) fn guard(f: impl FnOnce() -> R<()>) -> ub_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => UB_SUCCESS,
        Ok(Err(fail)) => record(fail),
        Err(p) => record(Fail::new(
            UB_ERR_UNKNOWN,
            format!("internal error (panic): {}", panic_text(p.as_ref())),
        )),
    }
}

/// The message of the last failed `ub_` call on this thread (empty when none failed).
///
/// The string belongs to the library and stays valid until the next failing `ub_` call on the
/// same thread. Thread-safe: each thread has its own.
#[no_mangle]
pub extern "C" fn ub_last_error_message() -> *const c_char {
    LAST.try_with(|l| l.try_borrow().map(|l| l.msg.as_ptr()).ok())
        .ok()
        .flatten()
        .unwrap_or(c"".as_ptr())
}

/// The status of the last failed `ub_` call on this thread (`UB_SUCCESS` when none failed).
#[no_mangle]
pub extern "C" fn ub_last_error_status() -> ub_status {
    LAST.try_with(|l| l.try_borrow().map(|l| l.status).unwrap_or(UB_SUCCESS))
        .unwrap_or(UB_SUCCESS)
}

/// The errno the kernel answered in the last failed call on this thread (0 when the failure
/// was not a system call's).
#[no_mangle]
pub extern "C" fn ub_last_error_errno() -> i32 {
    LAST.try_with(|l| l.try_borrow().map(|l| l.errno).unwrap_or(0))
        .unwrap_or(0)
}

/// The wire code of the attribute key the last failed call on this thread was about (the first
/// key of a conflict), or 0.
#[no_mangle]
pub extern "C" fn ub_last_error_key() -> u32 {
    LAST.try_with(|l| l.try_borrow().map(|l| l.key).unwrap_or(0))
        .unwrap_or(0)
}

/// The name of a status (`"UB_ERR_TIMEOUT"`), a static string; `"UB_ERR_?"` for a value that is
/// none.
#[no_mangle]
pub extern "C" fn ub_status_name(status: i32) -> *const c_char {
    let s: &'static std::ffi::CStr = match status {
        0 => c"UB_SUCCESS",
        1 => c"UB_ERR_BAD_PARAMETER",
        2 => c"UB_ERR_NOT_SUPPORTED",
        3 => c"UB_ERR_ACCESS_DENIED",
        4 => c"UB_ERR_INSUFFICIENT_MEMORY",
        5 => c"UB_ERR_RECONCILIATION_FAILED",
        6 => c"UB_ERR_ATTR_LIST_VALIDATION_FAILED",
        7 => c"UB_ERR_TIMEOUT",
        8 => c"UB_ERR_RESOURCE_ERROR",
        9 => c"UB_ERR_INSUFFICIENT_RESOURCE",
        10 => c"UB_ERR_IPC",
        11 => c"UB_ERR_CONNECTION_RESET",
        12 => c"UB_ERR_OVERFLOW",
        13 => c"UB_ERR_UNKNOWN",
        _ => c"UB_ERR_?",
    };
    s.as_ptr()
}
