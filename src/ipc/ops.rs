//! Operations at the level of the wire: send and receive lists, reconciled lists, objects (fd +
//! header + list) and application data, with the permission rules applied on import.
//!
//! The typed layer (attribute lists, reconciled lists, objects of the library) is built on these.

use super::endpoint::{Endpoint, RawOrOther, Received};
use super::wire::{
    self, ErrorCode, FdKind, Kind, Message, MessageRef, ObjectHeader, WireList, WireReconciled,
};
use crate::attr::Permission;
use crate::error::{Error, Result};
use crate::fd::{self as fdid, Facts, Identified};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

/// The permission an importer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// Read-only.
    ReadOnly,
    /// Read-write.
    ReadWrite,
    /// The highest permission this peer's own unreconciled lists required (resolved from the
    /// lists by [`crate::ipc::attrs::resolve`]; a list that states none counts as read-only).
    Auto,
}

impl From<Permission> for Requested {
    fn from(p: Permission) -> Self {
        match p {
            Permission::ReadOnly => Requested::ReadOnly,
            Permission::ReadWrite => Requested::ReadWrite,
        }
    }
}

/// The permission rule: what the importer holds when the exporter granted `exported` and the
/// importer asked for `requested`.
///
/// - exported read-only, requested read-write: refused ([`Error::PermissionDenied`]);
/// - exported read-write, requested read-only: the importer holds read-only;
/// - otherwise the importer holds what it asked for.
pub fn negotiate(exported: Permission, requested: Permission) -> Result<Permission> {
    if requested > exported {
        return Err(Error::PermissionDenied(format!(
            "the object was exported {exported}; {requested} was requested"
        )));
    }
    Ok(requested)
}

/// An object as it arrived: a checked fd, what the message said about it, and what this side holds.
#[derive(Debug)]
pub struct ImportedFd {
    /// The fd: for a read-only holder of a memfd, an `O_RDONLY` description.
    pub fd: OwnedFd,
    /// The memfd behind the dma-buf (a udmabuf), when the exporter passed it (`O_RDONLY` for a
    /// read-only holder).
    pub memfd: Option<OwnedFd>,
    /// The header as the exporter sent it (its `permission` is what the exporter granted).
    pub header: ObjectHeader,
    /// The permission this side holds.
    pub permission: Permission,
    /// The object's reconciled list, as sent.
    pub list: WireReconciled,
    /// What the identification of the fd found ([`crate::fd::identify`]).
    pub facts: Facts,
}

pub(crate) fn unexpected(ep: &Endpoint, want: Kind, got: Received) -> Error {
    match got.message {
        Message::Error { code, text } => {
            let what = match code {
                c if c == ErrorCode::Conflict as u16 => "conflict",
                c if c == ErrorCode::PermissionDenied as u16 => "permission denied",
                c if c == ErrorCode::Malformed as u16 => "malformed message",
                c if c == ErrorCode::Allocation as u16 => "allocation failed",
                _ => "error",
            };
            if code == ErrorCode::PermissionDenied as u16 {
                Error::PermissionDenied(format!("peer {}: {text}", ep.peer().pid))
            } else {
                Error::Ipc(format!("{}: peer reported {what}: {text}", ep.name()))
            }
        }
        other => Error::Ipc(format!(
            "{}: expected a {want:?} message, got a {:?} message (discarded)",
            ep.name(),
            other.kind()
        )),
    }
}

impl Endpoint {
    /// Sends unreconciled lists (one slot each).
    pub fn send_wire_lists(&mut self, lists: &[WireList]) -> Result<()> {
        self.send_ref(MessageRef::UnreconciledLists(lists), &[])
    }

    /// Receives unreconciled lists.
    pub fn recv_wire_lists(&mut self) -> Result<Vec<WireList>> {
        let r = self.recv()?;
        match r.message {
            Message::UnreconciledLists(l) => Ok(l),
            _ => Err(unexpected(self, Kind::UnreconciledLists, r)),
        }
    }

    /// Sends a reconciled list.
    pub fn send_wire_reconciled(&mut self, list: &WireReconciled) -> Result<()> {
        self.send_ref(MessageRef::ReconciledList(list), &[])
    }

    /// Receives a reconciled list.
    pub fn recv_wire_reconciled(&mut self) -> Result<WireReconciled> {
        let r = self.recv()?;
        match r.message {
            Message::ReconciledList(l) => Ok(l),
            _ => Err(unexpected(self, Kind::ReconciledList, r)),
        }
    }

    /// Sends application data.
    pub fn send_data(&mut self, data: &[u8]) -> Result<()> {
        self.send_ref(MessageRef::Data(data), &[])
    }

    /// Receives application data.
    pub fn recv_data(&mut self) -> Result<Vec<u8>> {
        let r = self.recv()?;
        match r.message {
            Message::Data(d) => Ok(d),
            _ => Err(unexpected(self, Kind::Data, r)),
        }
    }

    /// Reports an error to the peer (its next receive of anything else fails with this text).
    pub fn send_error(&mut self, code: ErrorCode, text: &str) -> Result<()> {
        self.send_ref(
            MessageRef::Error {
                code: code as u16,
                text,
            },
            &[],
        )
    }

    /// Exports an object: sends `fd` (and `memfd`, the memfd behind a udmabuf, when given) with
    /// `header` (whose `permission` is what is granted; its `with_memfd` is set from `memfd`) and
    /// `list`.
    ///
    /// A memfd exported read-only travels as a new `O_RDONLY` description, never as the writable
    /// one, and its mode loses its write bits so that the importer cannot reopen it writable
    /// through `/proc` (unless it has `CAP_DAC_OVERRIDE`).
    pub fn send_wire_object(
        &mut self,
        fd: BorrowedFd<'_>,
        memfd: Option<BorrowedFd<'_>>,
        header: ObjectHeader,
        list: &WireReconciled,
    ) -> Result<()> {
        let body = wire::Encoder::new()
            .reconciled_body(list)
            .map_err(|e| Error::Ipc(format!("{}: {e}", self.name())))?;
        self.send_object_body(fd, memfd, header, &body)
    }

    /// [`Endpoint::send_wire_object`] with the list already encoded.
    pub(super) fn send_object_body(
        &mut self,
        fd: BorrowedFd<'_>,
        memfd: Option<BorrowedFd<'_>>,
        mut header: ObjectHeader,
        body: &[u8],
    ) -> Result<()> {
        header.with_memfd = memfd.is_some();
        let ro = header.permission == Permission::ReadOnly;
        let read_only_memfd = |m: BorrowedFd<'_>| -> Result<OwnedFd> {
            let r = fdid::reopen_read_only(m)?;
            // An exporter that does not own the memfd cannot chmod it. That is fine when its mode
            // has no write bit already (a relay of a buffer it got read-only); otherwise the
            // importer could reopen it writable through /proc and "read-only" would not hold:
            // refuse rather than grant a permission that is not enforced.
            if let Err(e) = fdid::forbid_writable_reopen(&r) {
                let st = rustix::fs::fstat(&r)
                    .map_err(|e| Error::sys("fstat", "memfd to export read-only", e))?;
                if st.st_mode & 0o222 != 0 {
                    return Err(Error::PermissionDenied(format!(
                        "{}: cannot export this memfd read-only: its mode {:o} lets the importer \
                         reopen it writable, and making it 0444 failed ({e})",
                        self.name(),
                        st.st_mode & 0o7777
                    )));
                }
            }
            Ok(r)
        };
        match (header.fd_kind, memfd) {
            (FdKind::Memfd, _) if ro => {
                let r = read_only_memfd(fd)?;
                self.send_object_encoded(&header, body, &[r.as_fd()])
            }
            (_, Some(m)) if ro => {
                let r = read_only_memfd(m)?;
                self.send_object_encoded(&header, body, &[fd, r.as_fd()])
            }
            (_, Some(m)) => self.send_object_encoded(&header, body, &[fd, m]),
            (_, None) => self.send_object_encoded(&header, body, &[fd]),
        }
    }

    /// Receives an object and checks its fds (see [`Endpoint::recv_wire_object`]); its
    /// reconciled list is left undecoded in the receive buffer.
    pub(super) fn recv_object_checked(&mut self, requested: Permission) -> Result<CheckedObject> {
        let raw = match self.recv_object_raw()? {
            RawOrOther::Object(o) => o,
            RawOrOther::Other(r) => return Err(unexpected(self, Kind::Object, r)),
        };
        let header = raw.header;
        let mut fds = raw.fds.into_iter();
        // The decoder guarantees one fd, plus one when the header announces a memfd.
        let fd = fds
            .next()
            .ok_or_else(|| Error::Ipc(format!("{}: object without fd", self.name())))?;
        let memfd = fds.next();
        let permission = negotiate(header.permission, requested)?;
        // Each fd is identified here, once; what is found travels on with it (`Identified`).
        let fd = self.identify_peer_fd(fd, header.fd_kind, header.size)?;
        let memfd = memfd
            .map(|m| self.identify_peer_fd(m, FdKind::Memfd, header.size))
            .transpose()?;
        // Exported read-write, held read-only: keep only a read-only description of a memfd.
        let (fd, memfd) = if permission == Permission::ReadOnly {
            (
                fd.read_only()?,
                memfd.map(Identified::read_only).transpose()?,
            )
        } else {
            (fd, memfd)
        };
        Ok(CheckedObject {
            fd,
            memfd,
            header,
            permission,
            list: raw.list,
        })
    }

    /// Identifies an fd from the peer as the `kind` its message announced, of at least `size`
    /// bytes. A cuda-vidmem handle has no size to measure: `size` (which the importer will map)
    /// is held to the endpoint's allocation limit instead, and CUDA refuses a mapping larger
    /// than the allocation behind the handle.
    fn identify_peer_fd(&self, fd: OwnedFd, kind: FdKind, size: u64) -> Result<Identified> {
        let from = || format!("{} (peer pid {})", self.name(), self.peer().pid);
        if kind == FdKind::CudaVidmem {
            let limit = self.alloc_limit();
            if size > limit {
                return Err(Error::LimitExceeded {
                    what: format!("{}: a {kind} of {size} bytes", from()),
                    asked: size,
                    limit,
                });
            }
        }
        let id = fdid::identify(fd, Some(kind)).map_err(|e| {
            Error::Ipc(format!(
                "{}: the message announces a {kind}, refused: {e}",
                from()
            ))
        })?;
        if kind == FdKind::CudaVidmem {
            return Ok(id);
        }
        let actual = id.facts().size;
        if actual < size {
            return Err(Error::Ipc(format!(
                "{}: the message announces a {kind} of {size} bytes but the fd's buffer has \
                 {actual} bytes",
                from()
            )));
        }
        Ok(id)
    }

    /// Imports an object, holding `requested` (already resolved from `Auto`).
    ///
    /// Checks, in order: the message is an object with as many fds as it announces; the
    /// permission rule ([`negotiate`]); the fd is the kind of file the header says (a dma-buf or
    /// a memfd) and the memfd beside it, if any, is a memfd; each buffer is at least the header's
    /// size; the reconciled list decodes. A read-only holder of a memfd keeps only an
    /// `O_RDONLY` description. On any error every fd that arrived is closed.
    pub fn recv_wire_object(&mut self, requested: Permission) -> Result<ImportedFd> {
        let c = self.recv_object_checked(requested)?;
        let list = wire::decode_reconciled_body(self.received_bytes(c.list.clone()))
            .map_err(|e| self.malformed(e))?;
        Ok(ImportedFd {
            facts: c.fd.facts(),
            fd: c.fd.into_fd(),
            memfd: c.memfd.map(Identified::into_fd),
            header: c.header,
            permission: c.permission,
            list,
        })
    }
}

/// An object whose fds were identified and whose list is still undecoded.
pub(super) struct CheckedObject {
    pub(super) fd: Identified,
    pub(super) memfd: Option<Identified>,
    pub(super) header: ObjectHeader,
    pub(super) permission: Permission,
    pub(super) list: std::ops::Range<usize>,
}
