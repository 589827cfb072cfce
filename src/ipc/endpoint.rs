//! IPC endpoints: `SOCK_SEQPACKET` Unix domain sockets (filesystem path, abstract name, or a
//! socketpair), peer credentials, an optional uid/gid allowlist, and the framing of messages with
//! their fds.
//!
//! `SOCK_SEQPACKET` keeps message boundaries: one `sendmsg` is one message, delivered whole or not
//! at all, so a malformed message never desynchronises the stream and the endpoint stays usable
//! after refusing one. Fds travel as `SCM_RIGHTS` and are received with `MSG_CMSG_CLOEXEC`.

use super::wire::{self, Message, MessageRef, MAX_FDS, MAX_MESSAGE};
use crate::error::{Error, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{
    self, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The credentials of the process at the other end, from `SO_PEERCRED` (taken by the kernel when
/// the connection or socketpair was made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id, as seen in this process's pid namespace: 0 when the peer's process is not
    /// visible there (e.g. this end runs in a container and the peer on the host).
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective (primary) group id. Supplementary groups are not reported by `SO_PEERCRED`.
    pub gid: u32,
}

/// Which peers an endpoint accepts. A peer is accepted when its uid is in `uids` or its primary
/// gid is in `gids`. The empty allowlist accepts nobody; use `None` where a policy is optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allowlist {
    /// Accepted user ids.
    pub uids: Vec<u32>,
    /// Accepted (primary) group ids.
    pub gids: Vec<u32>,
}

impl Allowlist {
    /// Accepts the given uids.
    pub fn uids(uids: impl IntoIterator<Item = u32>) -> Self {
        Allowlist {
            uids: uids.into_iter().collect(),
            gids: Vec::new(),
        }
    }

    /// Also accepts the given gids.
    pub fn with_gids(mut self, gids: impl IntoIterator<Item = u32>) -> Self {
        self.gids.extend(gids);
        self
    }

    /// `Ok` if `peer` is accepted, else [`Error::PermissionDenied`] naming the peer and the list.
    pub fn check(&self, peer: &PeerCred) -> Result<()> {
        if self.uids.contains(&peer.uid) || self.gids.contains(&peer.gid) {
            return Ok(());
        }
        Err(Error::PermissionDenied(format!(
            "ipc peer pid {} uid {} gid {} is not allowed (allowed uids {:?}, gids {:?})",
            peer.pid, peer.uid, peer.gid, self.uids, self.gids
        )))
    }
}

/// One end of a connection.
#[derive(Debug)]
pub struct Endpoint {
    fd: OwnedFd,
    peer: PeerCred,
    name: String,
    closed: bool,
    rbuf: Vec<u8>,
    enc: wire::Encoder,
    /// The bytes of the last reconciled list verified on import, and what they gave.
    pub(super) rec_cache: Option<(Vec<u8>, Arc<crate::reconcile::Reconciled>)>,
    /// The last reconciled list exported, and its encoded form.
    pub(super) send_cache: Option<(Arc<crate::reconcile::Reconciled>, Vec<u8>)>,
    /// The most bytes the peer's lists may make this side allocate.
    alloc_limit: u64,
}

/// The default of [`Endpoint::set_alloc_limit`]: 1 GiB.
///
/// Large enough for every buffer set this field uses (an 8K `RGBA16F` frame is 265 MB, a pool
/// of three 4K NV12 frames 37 MB, Jetson CMA pools are 64 to 512 MiB), small enough that a
/// peer's list cannot make an exporter on a 4 to 16 GiB board exhaust its memory (a consumer
/// asking `image.min_size = 2^40` made the demo producer create a 1 TiB memfd).
pub const DEFAULT_ALLOC_LIMIT: u64 = 1 << 30;

/// A message received with its fds. The fds are owned: dropping the message closes them.
#[derive(Debug)]
pub struct Received {
    /// The decoded message.
    pub message: Message,
    /// The fds that came with it (exactly as many as the message kind carries).
    pub fds: Vec<OwnedFd>,
}

fn seqpacket() -> Result<OwnedFd> {
    net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::sys("socket(AF_UNIX, SOCK_SEQPACKET)", "ipc endpoint", e))
}

fn peercred(fd: BorrowedFd<'_>, name: &str) -> Result<PeerCred> {
    // Not rustix's socket_peercred: it would build a non-zero `Pid` from the 0 the kernel
    // reports for a peer in a pid namespace we cannot see (undefined behaviour).
    let (pid, uid, gid) = crate::sys::socket::peercred(fd)
        .map_err(|e| Error::sys("getsockopt(SO_PEERCRED)", name, e))?;
    Ok(PeerCred { pid, uid, gid })
}

fn abstract_addr(name: &str) -> Result<SocketAddrUnix> {
    SocketAddrUnix::new_abstract_name(name.as_bytes()).map_err(|e| {
        Error::InvalidArgument(format!(
            "abstract socket name {name:?}: {e} (at most 107 bytes)"
        ))
    })
}

fn path_addr(path: &Path) -> Result<SocketAddrUnix> {
    SocketAddrUnix::new(path).map_err(|e| {
        Error::InvalidArgument(format!(
            "socket path {}: {e} (at most 107 bytes)",
            path.display()
        ))
    })
}

impl Endpoint {
    fn from_fd(fd: OwnedFd, name: String) -> Result<Self> {
        let peer = peercred(fd.as_fd(), &name)?;
        Ok(Endpoint {
            fd,
            peer,
            name,
            closed: false,
            rbuf: vec![0u8; MAX_MESSAGE + 1],
            enc: wire::Encoder::new(),
            rec_cache: None,
            send_cache: None,
            alloc_limit: DEFAULT_ALLOC_LIMIT,
        })
    }

    /// A connected pair (`socketpair(AF_UNIX, SOCK_SEQPACKET)`), for tests and forked children.
    pub fn pair() -> Result<(Endpoint, Endpoint)> {
        let (a, b) = net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::sys("socketpair(AF_UNIX, SOCK_SEQPACKET)", "ipc endpoint", e))?;
        Ok((
            Endpoint::from_fd(a, "socketpair end 0".into())?,
            Endpoint::from_fd(b, "socketpair end 1".into())?,
        ))
    }

    /// Wraps one end of an already connected `SOCK_SEQPACKET` socket (e.g. inherited by a child).
    pub fn from_owned(fd: OwnedFd, name: impl Into<String>) -> Result<Endpoint> {
        let name = name.into();
        let ty = net::sockopt::socket_type(&fd)
            .map_err(|e| Error::sys("getsockopt(SO_TYPE)", name.clone(), e))?;
        if ty != SocketType::SEQPACKET {
            return Err(Error::InvalidArgument(format!(
                "{name}: not a SOCK_SEQPACKET socket"
            )));
        }
        Endpoint::from_fd(fd, name)
    }

    /// Connects to a listener bound to a filesystem path.
    pub fn connect(path: impl AsRef<Path>) -> Result<Endpoint> {
        let path = path.as_ref();
        let addr = path_addr(path)?;
        let name = format!("socket {}", path.display());
        let fd = seqpacket()?;
        net::connect(&fd, &addr).map_err(|e| Error::sys("connect", name.clone(), e))?;
        Endpoint::from_fd(fd, name)
    }

    /// Connects to a listener bound to an abstract name (Linux; no file, no leading NUL needed).
    pub fn connect_abstract(name: &str) -> Result<Endpoint> {
        let addr = abstract_addr(name)?;
        let label = format!("abstract socket @{name}");
        let fd = seqpacket()?;
        net::connect(&fd, &addr).map_err(|e| Error::sys("connect", label.clone(), e))?;
        Endpoint::from_fd(fd, label)
    }

    /// The peer's credentials.
    pub fn peer(&self) -> PeerCred {
        self.peer
    }

    /// Refuses (and closes) the connection unless `allow` accepts the peer.
    pub fn require(self, allow: &Allowlist) -> Result<Endpoint> {
        allow.check(&self.peer)?;
        Ok(self)
    }

    /// What this endpoint is, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket fd (for poll loops).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the peer has been seen to close the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sets how long a receive waits before failing with `EAGAIN` (`None`: forever).
    pub fn set_recv_timeout(&self, t: Option<Duration>) -> Result<()> {
        net::sockopt::set_socket_timeout(&self.fd, net::sockopt::Timeout::Recv, t)
            .map_err(|e| Error::sys("setsockopt(SO_RCVTIMEO)", self.name.clone(), e))
    }

    /// Encodes and sends one message with `fds` (which must be as many as its kind carries).
    pub fn send(&mut self, msg: &Message, fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.send_ref(msg.as_ref(), fds)
    }

    /// Encodes and sends one borrowed message with `fds`.
    pub fn send_ref(&mut self, msg: MessageRef<'_>, fds: &[BorrowedFd<'_>]) -> Result<()> {
        if fds.len() != msg.fd_count() {
            return Err(Error::InvalidArgument(format!(
                "this {:?} message carries {} fds, {} given",
                msg.kind(),
                msg.fd_count(),
                fds.len()
            )));
        }
        let bytes = self
            .enc
            .encode_ref(msg)
            .map_err(|e| Error::Ipc(format!("{}: {e}", self.name)))?;
        send_raw(&self.fd, &self.name, bytes, fds).inspect_err(|e| {
            if matches!(e, Error::Disconnected) {
                self.closed = true;
            }
        })
    }

    /// Receives and decodes one message.
    ///
    /// Errors leave the endpoint usable (the bad message was consumed whole and every fd it
    /// carried is closed) except [`Error::Disconnected`], after which the endpoint is closed.
    pub fn recv(&mut self) -> Result<Received> {
        let (n, fds) = self.recv_frame()?;
        // On error `fds` is dropped here, closing every fd that arrived.
        let message = wire::decode(&self.rbuf[..n], fds.len()).map_err(|e| self.malformed(e))?;
        Ok(Received { message, fds })
    }

    fn recv_frame(&mut self) -> Result<(usize, Vec<OwnedFd>)> {
        if self.closed {
            return Err(Error::Disconnected);
        }
        match recv_raw(&self.fd, &self.name, &mut self.rbuf) {
            Err(Error::Disconnected) => {
                self.closed = true;
                Err(Error::Disconnected)
            }
            other => other,
        }
    }

    /// Sets the most bytes the peer's lists may make this side allocate (all buffers of one
    /// request together), checked by [`Endpoint::import_lists`] and
    /// [`Endpoint::reconcile_imported`]; default [`DEFAULT_ALLOC_LIMIT`], `u64::MAX` for none.
    pub fn set_alloc_limit(&mut self, bytes: u64) {
        self.alloc_limit = bytes;
    }

    /// The limit set by [`Endpoint::set_alloc_limit`].
    pub fn alloc_limit(&self) -> u64 {
        self.alloc_limit
    }

    /// Names this endpoint and its peer in an error about what the peer sent.
    pub(super) fn peer_error(&self, e: Error) -> Error {
        match e {
            Error::Ipc(m) => Error::Ipc(format!("{} (peer pid {}): {m}", self.name, self.peer.pid)),
            Error::Attr(a) => {
                Error::Ipc(format!("{} (peer pid {}): {a}", self.name, self.peer.pid))
            }
            other => other,
        }
    }

    pub(super) fn malformed(&self, e: wire::WireError) -> Error {
        Error::Ipc(format!(
            "{} (peer pid {}): malformed message: {e}",
            self.name, self.peer.pid
        ))
    }

    /// Receives one message; an object is decoded up to its reconciled list only (the list's
    /// bytes stay in the receive buffer: [`Endpoint::received_bytes`]), anything else whole.
    pub(super) fn recv_object_raw(&mut self) -> Result<RawOrOther> {
        let (n, fds) = self.recv_frame()?;
        let msg = &self.rbuf[..n];
        let h = wire::decode_header(msg, fds.len()).map_err(|e| self.malformed(e))?;
        if h.kind != wire::Kind::Object {
            let message = wire::decode(msg, fds.len()).map_err(|e| self.malformed(e))?;
            return Ok(RawOrOther::Other(Received { message, fds }));
        }
        let (header, off) =
            wire::decode_object_prefix(msg, fds.len()).map_err(|e| self.malformed(e))?;
        Ok(RawOrOther::Object(RawObject {
            header,
            fds,
            list: off..n,
        }))
    }

    /// Encodes a message with `f` (between [`wire::Encoder::begin_message`] and
    /// [`wire::Encoder::finish_message`]) and sends it without fds.
    pub(super) fn send_with(
        &mut self,
        kind: wire::Kind,
        f: impl FnOnce(&mut wire::Encoder) -> std::result::Result<(), wire::WireError>,
    ) -> Result<()> {
        self.enc.begin_message(kind, 0);
        let name = &self.name;
        f(&mut self.enc).map_err(|e| Error::Ipc(format!("{name}: {e}")))?;
        let bytes = self
            .enc
            .finish_message()
            .map_err(|e| Error::Ipc(format!("{name}: {e}")))?;
        send_raw(&self.fd, &self.name, bytes, &[]).inspect_err(|e| {
            if matches!(e, Error::Disconnected) {
                self.closed = true;
            }
        })
    }

    /// Receives one message; unreconciled lists are decoded without copying their values (see
    /// [`wire::decode_lists_ref`]) and handed to `f`; anything else is decoded whole and returned.
    pub(super) fn recv_lists_with<T>(
        &mut self,
        f: impl FnOnce(&Self, Vec<Vec<wire::EntryRef<'_>>>) -> Result<T>,
    ) -> Result<std::result::Result<T, Received>> {
        let (n, fds) = self.recv_frame()?;
        let msg = &self.rbuf[..n];
        let h = wire::decode_header(msg, fds.len()).map_err(|e| self.malformed(e))?;
        if h.kind != wire::Kind::UnreconciledLists {
            let message = wire::decode(msg, fds.len()).map_err(|e| self.malformed(e))?;
            return Ok(Err(Received { message, fds }));
        }
        let lists = wire::decode_lists_ref(msg, fds.len()).map_err(|e| self.malformed(e))?;
        f(self, lists).map(Ok)
    }

    /// Bytes of the last received message.
    pub(super) fn received_bytes(&self, r: Range<usize>) -> &[u8] {
        &self.rbuf[r]
    }

    /// Sends an object whose reconciled list is already encoded.
    pub(super) fn send_object_encoded(
        &mut self,
        header: &wire::ObjectHeader,
        reconciled_body: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<()> {
        let bytes = self
            .enc
            .encode_object_raw(header, reconciled_body)
            .map_err(|e| Error::Ipc(format!("{}: {e}", self.name)))?;
        send_raw(&self.fd, &self.name, bytes, fds).inspect_err(|e| {
            if matches!(e, Error::Disconnected) {
                self.closed = true;
            }
        })
    }
}

/// An object message decoded up to its reconciled list.
pub(super) struct RawObject {
    pub(super) header: wire::ObjectHeader,
    pub(super) fds: Vec<OwnedFd>,
    /// Where the reconciled list's bytes are in the receive buffer.
    pub(super) list: Range<usize>,
}

/// What [`Endpoint::recv_object_raw`] got.
pub(super) enum RawOrOther {
    Object(RawObject),
    Other(Received),
}

fn send_raw(fd: &OwnedFd, name: &str, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Error::InvalidArgument(format!(
            "{} fds in one message (at most {MAX_FDS})",
            fds.len()
        )));
    }
    let iov = [IoSlice::new(bytes)];
    loop {
        match net::sendmsg(fd, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => {
                return Err(Error::Ipc(format!(
                    "{name}: sendmsg sent {n} of {} bytes",
                    bytes.len()
                )))
            }
            Err(Errno::INTR) => continue,
            Err(Errno::PIPE) | Err(Errno::CONNRESET) | Err(Errno::NOTCONN) => {
                return Err(Error::Disconnected)
            }
            Err(e) => return Err(Error::sys("sendmsg", name, e)),
        }
    }
}

/// Bytes of a control buffer that holds exactly [`MAX_FDS`] fds: `CMSG_SPACE(MAX_FDS * 4)`
/// (a `cmsghdr`, then the fds padded to `size_t` alignment, as Linux's `CMSG_ALIGN` pads).
const RECV_CONTROL_LEN: usize = std::mem::size_of::<libc::cmsghdr>()
    + (MAX_FDS * std::mem::size_of::<std::os::fd::RawFd>())
        .next_multiple_of(std::mem::size_of::<usize>());

/// The receive control buffer, aligned for `cmsghdr` so that rustix uses it from its first byte
/// and the kernel sees room for [`MAX_FDS`] fds, no more: a 5th fd sets `MSG_CTRUNC`.
/// (`rustix::cmsg_space!` adds alignment slack for unaligned buffers; with it 5 and 6 fds
/// arrived whole.)
#[repr(C, align(8))]
struct RecvControl([MaybeUninit<u8>; RECV_CONTROL_LEN]);

const _: () = assert!(std::mem::align_of::<RecvControl>() >= std::mem::align_of::<libc::cmsghdr>());

/// Receives one datagram into `buf` (which must be `MAX_MESSAGE + 1` bytes) and its fds.
fn recv_raw(fd: &OwnedFd, name: &str, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>)> {
    let mut space = RecvControl([MaybeUninit::uninit(); RECV_CONTROL_LEN]);
    let mut control = RecvAncillaryBuffer::new(&mut space.0);
    let r = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match net::recvmsg(
            fd,
            &mut iov,
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC,
        ) {
            Err(Errno::INTR) => continue,
            Err(Errno::CONNRESET) => return Err(Error::Disconnected),
            Err(Errno::AGAIN) => {
                let after = net::sockopt::socket_timeout(fd, net::sockopt::Timeout::Recv)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                return Err(Error::Timeout {
                    what: format!("{name}: waiting for a message"),
                    after,
                });
            }
            Err(e) => return Err(Error::sys("recvmsg", name, e)),
            Ok(r) => break r,
        }
    };
    // Take ownership of every fd that arrived before looking at anything else, so that every
    // error path below closes them (dropping the Vec closes them).
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if r.flags.contains(ReturnFlags::CTRUNC) {
        let got = fds.len();
        drop(fds);
        return Err(Error::Ipc(format!(
            "{name}: control data truncated (MSG_CTRUNC): the peer sent more fds than the \
             {MAX_FDS} a message may carry; the {got} that arrived were closed"
        )));
    }
    if r.bytes == 0 {
        // SOCK_SEQPACKET: a zero-length read is end of file (this protocol never sends an empty
        // message).
        return Err(Error::Disconnected);
    }
    if r.flags.contains(ReturnFlags::TRUNC) || r.bytes > MAX_MESSAGE {
        return Err(Error::Ipc(format!(
            "{name}: message of {} bytes exceeds the limit of {MAX_MESSAGE}; discarded with its {} fds",
            r.bytes,
            fds.len()
        )));
    }
    Ok((r.bytes, fds))
}

/// A listening socket bound to a path or an abstract name.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    name: String,
    path: Option<PathBuf>,
    allow: Option<Allowlist>,
}

impl Listener {
    /// Binds and listens on a filesystem path (which must not exist).
    pub fn bind(path: impl AsRef<Path>) -> Result<Listener> {
        let path = path.as_ref();
        let addr = path_addr(path)?;
        let name = format!("socket {}", path.display());
        let fd = seqpacket()?;
        net::bind(&fd, &addr).map_err(|e| Error::sys("bind", name.clone(), e))?;
        net::listen(&fd, 16).map_err(|e| Error::sys("listen", name.clone(), e))?;
        Ok(Listener {
            fd,
            name,
            path: Some(path.to_owned()),
            allow: None,
        })
    }

    /// Binds and listens on an abstract name.
    pub fn bind_abstract(name: &str) -> Result<Listener> {
        let addr = abstract_addr(name)?;
        let label = format!("abstract socket @{name}");
        let fd = seqpacket()?;
        net::bind(&fd, &addr).map_err(|e| Error::sys("bind", label.clone(), e))?;
        net::listen(&fd, 16).map_err(|e| Error::sys("listen", label.clone(), e))?;
        Ok(Listener {
            fd,
            name: label,
            path: None,
            allow: None,
        })
    }

    /// Accepts only peers that `allow` accepts; others are closed by [`Listener::accept`], which
    /// returns [`Error::PermissionDenied`] for them.
    pub fn set_allowlist(&mut self, allow: Option<Allowlist>) {
        self.allow = allow;
    }

    /// Waits for a connection and checks the peer against the allowlist.
    pub fn accept(&self) -> Result<Endpoint> {
        let fd = loop {
            match net::accept_with(&self.fd, SocketFlags::CLOEXEC) {
                Err(Errno::INTR) => continue,
                r => break r.map_err(|e| Error::sys("accept", self.name.clone(), e))?,
            }
        };
        let ep = Endpoint::from_fd(fd, format!("{} (accepted)", self.name))?;
        match &self.allow {
            Some(a) => ep.require(a),
            None => Ok(ep),
        }
    }

    /// The listening fd (for poll loops).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_buffer_is_cmsg_space_of_max_fds() {
        // SAFETY: CMSG_SPACE only computes a size from its argument.
        let want = unsafe { libc::CMSG_SPACE((MAX_FDS * 4) as u32) } as usize;
        assert_eq!(RECV_CONTROL_LEN, want);
        assert_eq!(std::mem::size_of::<RecvControl>(), want);
    }
}
