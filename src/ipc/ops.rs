//! Operations at the level of the wire: send and receive lists, reconciled lists, objects (fd +
//! header + list) and application data, with the permission rules applied on import.
//!
//! The typed layer (attribute lists, reconciled lists, objects of the library) is built on these.

use super::endpoint::{Endpoint, Received};
use super::fdcheck::{self, FdFacts};
use super::wire::{ErrorCode, FdKind, Kind, Message, MessageRef, ObjectHeader, WireList};
use crate::attr::Permission;
use crate::error::{Error, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

/// The permission an importer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// Read-only.
    ReadOnly,
    /// Read-write.
    ReadWrite,
    /// The highest permission this peer's own unreconciled lists required (resolved by the caller
    /// that has the lists; see [`resolve_auto`]).
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

/// Resolves [`Requested::Auto`] to the highest of `required` (the permissions this peer's own
/// lists required); with no list stating one, `ReadOnly`. Other requests are returned as they are.
pub fn resolve_auto(req: Requested, required: impl IntoIterator<Item = Permission>) -> Permission {
    match req {
        Requested::ReadOnly => Permission::ReadOnly,
        Requested::ReadWrite => Permission::ReadWrite,
        Requested::Auto => required.into_iter().max().unwrap_or(Permission::ReadOnly),
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
    /// The header as the exporter sent it (its `permission` is what the exporter granted).
    pub header: ObjectHeader,
    /// The permission this side holds.
    pub permission: Permission,
    /// The object's reconciled list, as sent.
    pub list: WireList,
    /// What the fd checks found.
    pub facts: FdFacts,
}

fn unexpected(ep: &Endpoint, want: Kind, got: Received) -> Error {
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
    pub fn send_wire_reconciled(&mut self, list: &WireList) -> Result<()> {
        self.send_ref(MessageRef::ReconciledList(list), &[])
    }

    /// Receives a reconciled list.
    pub fn recv_wire_reconciled(&mut self) -> Result<WireList> {
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

    /// Exports an object: sends `fd` with `header` (whose `permission` is what is granted) and
    /// `list`.
    ///
    /// A memfd exported read-only travels as a new `O_RDONLY` description, never as the writable
    /// one, and its mode loses its write bits so that the importer cannot reopen it writable
    /// through `/proc` (unless it has `CAP_DAC_OVERRIDE`).
    pub fn send_wire_object(
        &mut self,
        fd: BorrowedFd<'_>,
        header: ObjectHeader,
        list: &WireList,
    ) -> Result<()> {
        let msg = MessageRef::Object(header, list);
        if header.fd_kind == FdKind::Memfd && header.permission == Permission::ReadOnly {
            let ro = fdcheck::reopen_read_only(fd)?;
            // Best effort: an exporter that does not own the memfd cannot chmod it.
            let _ = fdcheck::forbid_writable_reopen(&ro);
            self.send_ref(msg, &[ro.as_fd()])
        } else {
            self.send_ref(msg, &[fd])
        }
    }

    /// Imports an object, holding `requested` (already resolved from `Auto`).
    ///
    /// Checks, in order: the message is an object with exactly one fd; the permission rule
    /// ([`negotiate`]); the fd is the kind of file the header says (a dma-buf or a memfd); its
    /// buffer is at least the header's size. A read-only holder of a memfd keeps only an
    /// `O_RDONLY` description. On any error every fd that arrived is closed.
    pub fn recv_wire_object(&mut self, requested: Permission) -> Result<ImportedFd> {
        let r = self.recv()?;
        let (header, list) = match r.message {
            Message::Object(h, l) => (h, l),
            _ => return Err(unexpected(self, Kind::Object, r)),
        };
        let mut fds = r.fds;
        // The decoder guarantees exactly one fd for an object message.
        let fd = fds
            .pop()
            .ok_or_else(|| Error::Ipc(format!("{}: object without fd", self.name())))?;
        let permission = negotiate(header.permission, requested)?;
        let facts = fdcheck::check(fd.as_fd(), header.fd_kind, header.size, &|| {
            format!("{} (peer pid {})", self.name(), self.peer().pid)
        })?;
        let fd = if header.fd_kind == FdKind::Memfd
            && permission == Permission::ReadOnly
            && !fdcheck::is_read_only(fd.as_fd())?
        {
            // Exported read-write, held read-only: keep only a read-only description.
            let ro = fdcheck::reopen_read_only(fd.as_fd())?;
            drop(fd);
            ro
        } else {
            fd
        };
        Ok(ImportedFd {
            fd,
            header,
            permission,
            list,
            facts,
        })
    }
}
