//! Sharing lists and objects across processes over Unix domain sockets.
//!
//! - [`endpoint`]: `SOCK_SEQPACKET` endpoints (path, abstract name, socketpair), peer credentials
//!   (`SO_PEERCRED`) and an optional uid/gid [`Allowlist`]; framing of messages with their fds
//!   (`SCM_RIGHTS`, received with `MSG_CMSG_CLOEXEC`; `MSG_CTRUNC` is an error and closes every fd
//!   that arrived).
//! - [`wire`]: the versioned wire format (documented in `docs/wire-format.md`), a pure codec that
//!   bounds every length before allocating and checks every enum, flag and key.
//! - [`ops`]: operations on the wire level (lists, reconciled lists, objects, data) and the
//!   permission rules ([`ops::negotiate`]).
//! - Every fd from a peer is identified once by [`crate::fd::identify`] (kind, size, seals,
//!   access mode) and the read-only reopen of memfds is made there too.
//!
//! Permission rules (an importer asks for ReadOnly, ReadWrite or Auto = the highest its own lists
//! required):
//! exported read-only and requested read-write is refused; exported read-write and requested
//! read-only leaves the importer holding read-only; a read-only holder of a memfd-backed object
//! holds only an `O_RDONLY` description of the memfd.

pub mod attrs;
pub mod endpoint;
pub mod ops;
pub mod wire;

pub use attrs::{ImportedLists, ImportedObject};
pub use endpoint::{Allowlist, Endpoint, Listener, PeerCred, Received, DEFAULT_ALLOC_LIMIT};
pub use ops::{negotiate, ImportedFd, Requested};
pub use wire::{
    ErrorCode, FdKind, Message, ObjectHeader, WireEntry, WireList, WireReconciled, WireValue,
};
