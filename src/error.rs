//! The one error type of the library.
//!
//! Every variant says what was asked and, where the kernel was involved, what it answered.
//!
//! It sits above the model layer (attr, layout, reconcile), which returns its own error types
//! ([`crate::attr::AttrError`], [`crate::reconcile::Conflict`], ...) and never this one; the
//! conversions from them live here, so no arrow points back from the model to this module.

use std::fmt;

/// A kernel error number, printed with its symbolic name and message, e.g. `EACCES (Permission denied)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub rustix::io::Errno);

impl Errno {
    /// The raw positive errno value.
    pub fn raw(self) -> i32 {
        self.0.raw_os_error()
    }

    /// The symbolic name (`"EACCES"`), or `None` for a number this table does not know.
    pub fn name(self) -> Option<&'static str> {
        use rustix::io::Errno as E;
        let e = self.0;
        Some(match e {
            E::PERM => "EPERM",
            E::NOENT => "ENOENT",
            E::SRCH => "ESRCH",
            E::INTR => "EINTR",
            E::IO => "EIO",
            E::NXIO => "ENXIO",
            E::TOOBIG => "E2BIG",
            E::BADF => "EBADF",
            E::AGAIN => "EAGAIN",
            E::NOMEM => "ENOMEM",
            E::ACCESS => "EACCES",
            E::FAULT => "EFAULT",
            E::BUSY => "EBUSY",
            E::EXIST => "EEXIST",
            E::NODEV => "ENODEV",
            E::NOTDIR => "ENOTDIR",
            E::INVAL => "EINVAL",
            E::NFILE => "ENFILE",
            E::MFILE => "EMFILE",
            E::NOTTY => "ENOTTY",
            E::FBIG => "EFBIG",
            E::NOSPC => "ENOSPC",
            E::SPIPE => "ESPIPE",
            E::ROFS => "EROFS",
            E::PIPE => "EPIPE",
            E::RANGE => "ERANGE",
            E::NOSYS => "ENOSYS",
            E::NOTSUP => "EOPNOTSUPP",
            E::OVERFLOW => "EOVERFLOW",
            E::CONNREFUSED => "ECONNREFUSED",
            E::CONNRESET => "ECONNRESET",
            E::NOTCONN => "ENOTCONN",
            E::MSGSIZE => "EMSGSIZE",
            E::PROTO => "EPROTO",
            E::TIMEDOUT => "ETIMEDOUT",
            _ if e.raw_os_error() == 524 => "ENOTSUPP",
            _ => return None,
        })
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Errno(e)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = std::io::Error::from_raw_os_error(self.raw());
        match self.name() {
            Some(name) => write!(f, "{name} ({})", strip_os_suffix(&msg.to_string())),
            None => write!(
                f,
                "errno {} ({})",
                self.raw(),
                strip_os_suffix(&msg.to_string())
            ),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `std::io::Error`'s Display appends " (os error N)"; we print the number ourselves.
fn strip_os_suffix(s: &str) -> &str {
    match s.find(" (os error") {
        Some(i) => &s[..i],
        None => s,
    }
}

/// The library's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call or ioctl failed: `op` is what was asked, `target` the path or object it was
    /// asked of, `errno` what the kernel answered.
    #[error("{op} on {target}: {errno}")]
    Sys {
        /// What was asked, e.g. `"DMA_HEAP_IOCTL_ALLOC"` or `"open"`.
        op: &'static str,
        /// The path or object it was asked of, e.g. `/dev/dma_heap/system`.
        target: String,
        /// What the kernel answered.
        errno: Errno,
    },

    /// A capability the request needs is not present on this machine (no such heap, no udmabuf,
    /// no DRM device that can make dumb buffers...). `why` says what was looked for and where.
    #[error("{what} is not available: {why}")]
    Unavailable {
        /// The capability, e.g. `"a contiguous (CMA) DMA-BUF heap"`.
        what: String,
        /// What was looked for and what was found instead.
        why: String,
    },

    /// The caller's handle does not hold the permission the operation needs.
    #[error("permission denied: {0}")]
    PermissionDenied(String),

    /// An argument is out of range or inconsistent; nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// An attribute list operation was refused; the list is unchanged.
    #[error(transparent)]
    Attr(#[from] crate::attr::AttrError),

    /// Attribute lists could not be reconciled.
    #[error("{0}")]
    Conflict(Box<crate::reconcile::Conflict>),

    /// A message from a peer was malformed or refused.
    #[error("ipc: {0}")]
    Ipc(String),

    /// The peer closed the connection.
    #[error("ipc: peer disconnected")]
    Disconnected,

    /// Nothing arrived in time: `what` was awaited (a message on an endpoint, a frame, a fence)
    /// for `after` (the caller's timeout). Nothing was consumed; the endpoint or device stays
    /// usable.
    #[error("{what}: timed out after {after:?}")]
    Timeout {
        /// What was awaited, e.g. `socketpair (a) waiting for a message` or
        /// `/dev/video0: no frame`.
        what: String,
        /// How long it was awaited.
        after: std::time::Duration,
    },

    /// A request is above a configured limit (the bytes a peer's lists may make this side
    /// allocate, [`crate::ipc::Endpoint::set_alloc_limit`]); nothing was allocated.
    #[error(
        "{what}: {asked} bytes asked, above the limit of {limit} bytes; nothing was allocated"
    )]
    LimitExceeded {
        /// What asked, e.g. the endpoint and the peer.
        what: String,
        /// Bytes asked.
        asked: u64,
        /// The limit.
        limit: u64,
    },

    /// A device refused a request (a format, a size, a mapping).
    #[error("{device}: {what}")]
    Device {
        /// The device path or name.
        device: String,
        /// What it refused.
        what: String,
    },
}

impl Error {
    /// Builds [`Error::Sys`] from a rustix errno.
    pub fn sys(op: &'static str, target: impl Into<String>, errno: rustix::io::Errno) -> Self {
        Error::Sys {
            op,
            target: target.into(),
            errno: Errno(errno),
        }
    }

    /// The errno of a [`Error::Sys`], if this is one.
    pub fn errno(&self) -> Option<rustix::io::Errno> {
        match self {
            Error::Sys { errno, .. } => Some(errno.0),
            _ => None,
        }
    }
}

impl From<crate::reconcile::Conflict> for Error {
    fn from(c: crate::reconcile::Conflict) -> Self {
        Error::Conflict(Box::new(c))
    }
}

impl From<crate::attr::file::FileError> for Error {
    fn from(e: crate::attr::file::FileError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<crate::layout::UnknownFormat> for Error {
    fn from(e: crate::layout::UnknownFormat) -> Self {
        Error::Attr(crate::attr::AttrError::from(e))
    }
}

impl From<crate::model::BadGpuId> for Error {
    fn from(e: crate::model::BadGpuId) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

/// Shorthand for `Result<T, unibuf::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_error_names_op_target_and_errno() {
        let e = Error::sys("open", "/dev/dma_heap/system", rustix::io::Errno::ACCESS);
        assert_eq!(
            e.to_string(),
            "open on /dev/dma_heap/system: EACCES (Permission denied)"
        );
        assert_eq!(e.errno(), Some(rustix::io::Errno::ACCESS));
    }

    #[test]
    fn unknown_errno_prints_number() {
        let e = Errno(rustix::io::Errno::from_raw_os_error(524));
        assert!(e.to_string().starts_with("ENOTSUPP"), "{e}");
        let e = Errno(rustix::io::Errno::from_raw_os_error(133));
        assert!(e.to_string().starts_with("errno 133"), "{e}");
    }
}
