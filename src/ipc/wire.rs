//! The wire format: encoding and decoding of every message, with no I/O and no fds.
//!
//! The layout is documented in `docs/wire-format.md`; this module is its reference implementation.
//! Decoding treats every byte as untrusted: every length is checked against both a fixed limit and
//! the bytes that remain before anything is allocated, every enum and flag is checked, and the
//! number of fds the header announces must be the number that arrived and the number the message
//! kind carries. The decoder is a pure function of `(bytes, fd count)`, which is what the fuzz
//! target (`fuzz/fuzz_targets/decode.rs`) drives.

use crate::attr::{BackendKind, Permission};

/// The four bytes every message starts with.
pub const MAGIC: [u8; 4] = *b"UBUF";
/// Major version of the wire format this build speaks. A message of another major is refused.
pub const VERSION_MAJOR: u8 = 1;
/// Minor version of the wire format this build writes. Messages of any minor of the same major are
/// accepted; a newer minor may only add keys, value tags and message kinds (see the docs).
pub const VERSION_MINOR: u8 = 2;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;
/// Largest message (header + body) either side sends or accepts, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most fds one message may carry (SCM_RIGHTS); more arrive as `MSG_CTRUNC` and are refused.
pub const MAX_FDS: usize = 4;
/// Most attribute lists (slots) in one unreconciled-lists message.
pub const MAX_SLOTS: usize = 64;
/// Most entries (keys) in one list.
pub const MAX_ENTRIES: usize = 512;
/// Longest value payload, in bytes.
pub const MAX_BYTES: usize = 4096;
/// Longest error text, in bytes.
pub const MAX_ERROR_TEXT: usize = 1024;

/// Entry flag: a receiver that does not know this key (or a value tag inside it) must refuse the
/// whole message instead of skipping the entry.
pub const FLAG_MUST_UNDERSTAND: u8 = 0x01;
const KNOWN_ENTRY_FLAGS: u8 = FLAG_MUST_UNDERSTAND;

/// Message kinds (header bytes 6..8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Kind {
    /// Unreconciled attribute lists (one or more slots). No fds.
    UnreconciledLists = 1,
    /// One reconciled list (generic key/value view of inputs and outputs). No fds.
    ReconciledList = 2,
    /// An object: its exported permission, backing kind, size and reconciled list. One fd.
    Object = 3,
    /// Application data (opaque bytes), e.g. a "frame ready" signal. No fds.
    Data = 4,
    /// An error report from the peer: a code and a text. No fds.
    Error = 5,
    /// Stream (minor 1): buffers of the producer's pool follow (one [`Kind::Object`] each). No fds.
    StreamAttach = 6,
    /// Stream (minor 1): a frame posted, by buffer index; its fence, when flagged, is the fd.
    StreamFrame = 7,
    /// Stream (minor 1): a consumer releases a frame; its fence, when flagged, is the fd.
    StreamRelease = 8,
    /// Stream (minor 1): a buffer of the pool was freed; the consumer drops it. No fds.
    StreamRetire = 9,
    /// Stream (minor 1): no more frames; the endpoint goes back to the applications. No body,
    /// no fds.
    StreamEnd = 10,
}

impl Kind {
    /// The kind with wire code `code`, if this version knows it.
    pub fn from_code(code: u16) -> Option<Kind> {
        Some(match code {
            1 => Kind::UnreconciledLists,
            2 => Kind::ReconciledList,
            3 => Kind::Object,
            4 => Kind::Data,
            5 => Kind::Error,
            6 => Kind::StreamAttach,
            7 => Kind::StreamFrame,
            8 => Kind::StreamRelease,
            9 => Kind::StreamRetire,
            10 => Kind::StreamEnd,
            _ => return None,
        })
    }

    /// The fewest and the most fds a message of this kind carries (an object carries its
    /// buffer's fd, and the memfd behind a udmabuf when the exporter passes it).
    pub fn fd_range(self) -> (usize, usize) {
        match self {
            Kind::Object => (1, 2),
            Kind::StreamFrame | Kind::StreamRelease => (0, 1),
            _ => (0, 0),
        }
    }
}

/// Why a message could not be decoded. Every variant says what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message is shorter than what it says it contains.
    #[error("truncated message: {what} needs {need} bytes at offset {at}, {have} left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Offset into the message.
        at: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The message does not start with [`MAGIC`].
    #[error("bad magic {0:02x?} (not a unibuf message)")]
    BadMagic([u8; 4]),
    /// The peer speaks another major version.
    #[error("peer speaks wire version {major}.{minor}, this build speaks {VERSION_MAJOR}.x")]
    Version {
        /// The peer's major version.
        major: u8,
        /// The peer's minor version.
        minor: u8,
    },
    /// The header's body length disagrees with the bytes received.
    #[error("header says the body is {said} bytes, {got} arrived ({})",
        if (*got as u64) < *said { "truncated message" } else { "trailing bytes" })]
    Length {
        /// What the header says.
        said: u64,
        /// What arrived.
        got: usize,
    },
    /// The fd count disagrees with the header or the message kind.
    #[error("fd count mismatch: {detail}")]
    FdCount {
        /// What disagreed with what.
        detail: String,
    },
    /// An unknown message kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    /// An enum, flag or reserved field holds a value this version does not define.
    #[error("invalid {field} value {value} at offset {at}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Offset into the message.
        at: usize,
    },
    /// A count or length exceeds its limit.
    #[error("{what} of {value} exceeds the limit of {limit}")]
    Limit {
        /// What was counted.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// A key appears twice in one list.
    #[error("key {0:#06x} appears twice in one list")]
    DuplicateKey(u16),
    /// A string is not UTF-8.
    #[error("string at offset {0} is not UTF-8")]
    Utf8(usize),
    /// Bytes follow the end of a body or value.
    #[error("{extra} unexpected trailing bytes after {what}")]
    Trailing {
        /// What ended.
        what: &'static str,
        /// How many bytes followed.
        extra: usize,
    },
    /// The message would be larger than [`MAX_MESSAGE`] or violates another limit when encoding.
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// A value as it travels: a tag, a length and a payload. Attribute values travel one way only,
/// as their own wire form ([`crate::attr::Value::encode`]) under tag 5; the key says how the
/// bytes read. Any other tag is one this version does not know (tags 1 to 4 and 6 are retired:
/// earlier drafts had generic bool, integer, string and array values that no sender produced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireValue {
    /// Tag 5: an attribute value's wire form, at most [`MAX_BYTES`].
    Bytes(Vec<u8>),
    /// A tag this version does not know (sent by a newer peer). Kept verbatim so the entry can be
    /// skipped or refused by the rule for unknown keys; never produced by this version's encoders
    /// except when re-encoding what was decoded.
    Unknown {
        /// The tag (anything but 5).
        tag: u8,
        /// The payload, verbatim, at most [`MAX_BYTES`].
        bytes: Vec<u8>,
    },
}

/// The tag of [`WireValue::Bytes`].
const TAG_BYTES: u8 = 5;

impl WireValue {
    /// Whether this value has a tag this version does not know.
    pub fn has_unknown(&self) -> bool {
        matches!(self, WireValue::Unknown { .. })
    }
}

/// One key of a list: its stable code, its flags and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEntry {
    /// The key's stable wire code (`Key::code`).
    pub key: u16,
    /// The receiver must refuse the message if it does not understand this entry.
    pub must_understand: bool,
    /// The value.
    pub value: WireValue,
}

/// A list of entries, each key at most once, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WireList {
    /// The entries.
    pub entries: Vec<WireEntry>,
}

impl WireList {
    /// The value of `key`, if present.
    pub fn get(&self, key: u16) -> Option<&WireValue> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    /// Appends an entry that the receiver must understand. Refuses a key that is already present.
    pub fn push(&mut self, key: u16, value: WireValue) -> Result<(), WireError> {
        if self.get(key).is_some() {
            return Err(WireError::DuplicateKey(key));
        }
        self.entries.push(WireEntry {
            key,
            must_understand: true,
            value,
        });
        Ok(())
    }
}

/// A reconciled list as it travels: the input lists it was reconciled from (at least one) and
/// its output keys. The receiver reconciles the inputs again and requires the same outputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WireReconciled {
    /// The input lists, one per slot.
    pub inputs: Vec<WireList>,
    /// The output keys.
    pub outputs: WireList,
}

/// The fixed part of an object message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    /// The permission the exporter granted.
    pub permission: Permission,
    /// What the fd is.
    pub fd_kind: FdKind,
    /// The backend the buffer came from.
    /// The backend the buffer came from; `None` for a foreign dma-buf (a GPU's, a V4L2
    /// `EXPBUF`) that no unibuf backend allocated (wire code 0).
    pub backend: Option<BackendKind>,
    /// Size in bytes the fd's buffer must at least have.
    pub size: u64,
    /// A second fd follows: the memfd behind the dma-buf (a udmabuf), which VFIO can pin and
    /// which makes read-only CPU maps kernel-enforced.
    pub with_memfd: bool,
}

/// Object flag: the memfd behind the dma-buf travels as the second fd.
pub const OBJECT_WITH_MEMFD: u8 = 0x01;

/// What kind of file an object's fd is: [`crate::fd::FdKind`], the one enum of fd kinds.
/// Wire codes: dma-buf 1, memfd 2, cuda-vidmem handle 3 (wire 1.2).
pub use crate::fd::FdKind;

/// Whether an object of `backend` may travel as fd kind `k`: the memfd and cuda-vidmem
/// backends give only their own kind, and those kinds come only from them (a dma-buf may come
/// from any other backend, or none).
fn fd_kind_fits(k: FdKind, backend: Option<BackendKind>) -> bool {
    k == FdKind::of_backend(backend)
}

/// The object header carries a permission and a backend in one byte each, by their codes
/// (`Permission::code`, `BackendKind::code`: the model's `wire_enum!` tables are the one
/// source of those numbers). Every code must fit the byte.
const _: () = {
    let mut i = 0;
    while i < Permission::ALL.len() {
        assert!(Permission::ALL[i].code() <= u8::MAX as u32);
        i += 1;
    }
    let mut i = 0;
    while i < BackendKind::ALL.len() {
        assert!(BackendKind::ALL[i].code() != 0 && BackendKind::ALL[i].code() <= u8::MAX as u32);
        i += 1;
    }
};

/// The header byte of a code checked by the assertion above.
const fn header_byte(code: u32) -> u8 {
    code as u8
}

fn fd_kind_code(k: FdKind) -> u8 {
    match k {
        FdKind::DmaBuf => 1,
        FdKind::Memfd => 2,
        FdKind::CudaVidmem => 3,
    }
}

fn fd_kind_from_code(c: u8) -> Option<FdKind> {
    match c {
        1 => Some(FdKind::DmaBuf),
        2 => Some(FdKind::Memfd),
        3 => Some(FdKind::CudaVidmem),
        _ => None,
    }
}

/// A decoded message (its fds travel separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Unreconciled lists, one per slot.
    UnreconciledLists(Vec<WireList>),
    /// A reconciled list.
    ReconciledList(WireReconciled),
    /// An object; its fd is the message's one fd.
    Object(ObjectHeader, WireReconciled),
    /// Application data.
    Data(Vec<u8>),
    /// An error report from the peer.
    Error {
        /// A code (see [`ErrorCode`]; unknown codes are kept).
        code: u16,
        /// The text.
        text: String,
    },
    /// Buffers of a stream's pool follow.
    StreamAttach(StreamAttach),
    /// A frame posted.
    StreamFrame(StreamFrame),
    /// A frame released.
    StreamRelease(StreamRelease),
    /// A buffer of the pool was freed.
    StreamRetire(u32),
    /// No more frames.
    StreamEnd,
}

/// The back-pressure policy of a stream, as the producer announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StreamPolicy {
    /// Every frame reaches every consumer; the producer waits for a free buffer.
    Fifo = 1,
    /// The producer never waits: a frame posted while a consumer has an older one unread
    /// replaces it (the replaced one is counted as dropped).
    Mailbox = 2,
}

/// [`Kind::StreamAttach`]: `count` buffers follow, for pool indices `indices[0..count]` in the
/// order the objects come (`first`, `first + 1`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAttach {
    /// Pool index of the first buffer that follows.
    pub first: u32,
    /// How many buffers follow (each its own object message), at most [`MAX_STREAM_BUFFERS`].
    pub count: u32,
    /// The producer's policy.
    pub policy: StreamPolicy,
}

/// Most buffers one stream pool has (so an index is bounded before a consumer allocates for it).
pub const MAX_STREAM_BUFFERS: u32 = 256;

/// Frame and release flag: a fence (sync_file) is the message's one fd.
pub const STREAM_FLAG_FENCE: u32 = 0x1;

/// [`Kind::StreamFrame`]: what the producer posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFrame {
    /// The pool index of the buffer.
    pub index: u32,
    /// Whether a fence (the message's fd) must signal before the buffer is read.
    pub fence: bool,
    /// The frame's sequence number (per stream, from 1).
    pub seq: u64,
    /// When it was captured (`CLOCK_MONOTONIC`, ns).
    pub timestamp_ns: u64,
}

/// [`Kind::StreamRelease`]: what a consumer sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRelease {
    /// The pool index of the buffer.
    pub index: u32,
    /// Whether a fence (the message's fd) must signal before the buffer is written again.
    pub fence: bool,
    /// The sequence number of the frame released.
    pub seq: u64,
}

impl Message {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Message::UnreconciledLists(_) => Kind::UnreconciledLists,
            Message::ReconciledList(_) => Kind::ReconciledList,
            Message::Object(..) => Kind::Object,
            Message::Data(_) => Kind::Data,
            Message::Error { .. } => Kind::Error,
            Message::StreamAttach(_) => Kind::StreamAttach,
            Message::StreamFrame(_) => Kind::StreamFrame,
            Message::StreamRelease(_) => Kind::StreamRelease,
            Message::StreamRetire(_) => Kind::StreamRetire,
            Message::StreamEnd => Kind::StreamEnd,
        }
    }
}

/// A message borrowed for encoding (so that senders need not clone their lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// Unreconciled lists, one per slot.
    UnreconciledLists(&'a [WireList]),
    /// A reconciled list.
    ReconciledList(&'a WireReconciled),
    /// An object; its fd travels beside.
    Object(ObjectHeader, &'a WireReconciled),
    /// Application data.
    Data(&'a [u8]),
    /// An error report.
    Error {
        /// The code.
        code: u16,
        /// The text (cut at [`MAX_ERROR_TEXT`] bytes).
        text: &'a str,
    },
    /// Buffers of a stream's pool follow.
    StreamAttach(StreamAttach),
    /// A frame posted.
    StreamFrame(StreamFrame),
    /// A frame released.
    StreamRelease(StreamRelease),
    /// A buffer of the pool was freed.
    StreamRetire(u32),
    /// No more frames.
    StreamEnd,
}

impl MessageRef<'_> {
    /// How many fds travel with this message.
    pub fn fd_count(&self) -> usize {
        match self {
            MessageRef::Object(h, _) => 1 + usize::from(h.with_memfd),
            MessageRef::StreamFrame(f) => usize::from(f.fence),
            MessageRef::StreamRelease(r) => usize::from(r.fence),
            _ => 0,
        }
    }

    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            MessageRef::UnreconciledLists(_) => Kind::UnreconciledLists,
            MessageRef::ReconciledList(_) => Kind::ReconciledList,
            MessageRef::Object(..) => Kind::Object,
            MessageRef::Data(_) => Kind::Data,
            MessageRef::Error { .. } => Kind::Error,
            MessageRef::StreamAttach(_) => Kind::StreamAttach,
            MessageRef::StreamFrame(_) => Kind::StreamFrame,
            MessageRef::StreamRelease(_) => Kind::StreamRelease,
            MessageRef::StreamRetire(_) => Kind::StreamRetire,
            MessageRef::StreamEnd => Kind::StreamEnd,
        }
    }
}

impl Message {
    /// How many fds travel with this message.
    pub fn fd_count(&self) -> usize {
        self.as_ref().fd_count()
    }

    /// Borrows the message for encoding.
    pub fn as_ref(&self) -> MessageRef<'_> {
        match self {
            Message::UnreconciledLists(l) => MessageRef::UnreconciledLists(l),
            Message::ReconciledList(l) => MessageRef::ReconciledList(l),
            Message::Object(h, l) => MessageRef::Object(*h, l),
            Message::Data(d) => MessageRef::Data(d),
            Message::Error { code, text } => MessageRef::Error { code: *code, text },
            Message::StreamAttach(a) => MessageRef::StreamAttach(*a),
            Message::StreamFrame(f) => MessageRef::StreamFrame(*f),
            Message::StreamRelease(r) => MessageRef::StreamRelease(*r),
            Message::StreamRetire(i) => MessageRef::StreamRetire(*i),
            Message::StreamEnd => MessageRef::StreamEnd,
        }
    }
}

/// Codes of [`Message::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// Something else; the text says what.
    Other = 1,
    /// The lists could not be reconciled.
    Conflict = 2,
    /// A permission was refused.
    PermissionDenied = 3,
    /// A message was malformed.
    Malformed = 4,
    /// Allocation failed.
    Allocation = 5,
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A bounds-checked reader over a message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if n > self.left() {
            return Err(WireError::Truncated {
                what,
                at: self.pos,
                need: n,
                have: self.left(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length or count, checked against `limit` and against the bytes left (each unit needing at
    /// least `min_unit` bytes) before the caller allocates anything for it.
    fn bounded(
        &mut self,
        raw: u64,
        limit: usize,
        min_unit: usize,
        what: &'static str,
    ) -> Result<usize, WireError> {
        if raw > limit as u64 {
            return Err(WireError::Limit {
                what,
                value: raw,
                limit: limit as u64,
            });
        }
        let n = raw as usize;
        let need = n.saturating_mul(min_unit);
        if need > self.left() {
            return Err(WireError::Truncated {
                what,
                at: self.pos,
                need,
                have: self.left(),
            });
        }
        Ok(n)
    }

    fn end(&self, what: &'static str) -> Result<(), WireError> {
        if self.left() != 0 {
            return Err(WireError::Trailing {
                what,
                extra: self.left(),
            });
        }
        Ok(())
    }
}

/// The decoded fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's minor version.
    pub minor: u8,
    /// The message kind.
    pub kind: Kind,
    /// Body length in bytes.
    pub body_len: usize,
    /// Number of fds the message carries.
    pub nfds: usize,
}

/// Decodes and checks the header of `msg`, which arrived with `nfds` fds.
pub fn decode_header(msg: &[u8], nfds: usize) -> Result<Header, WireError> {
    let mut r = Reader::new(msg, 0);
    let magic = r.take(4, "magic")?;
    if magic != MAGIC {
        let mut m = [0u8; 4];
        m.copy_from_slice(magic);
        return Err(WireError::BadMagic(m));
    }
    let major = r.u8("version")?;
    let minor = r.u8("version")?;
    if major != VERSION_MAJOR {
        return Err(WireError::Version { major, minor });
    }
    let kind_code = r.u16("kind")?;
    let body_len = r.u32("body length")?;
    let said_fds = r.u8("fd count")?;
    let flags = r.u8("flags")?;
    let reserved = r.u16("reserved")?;
    if flags != 0 {
        return Err(WireError::Invalid {
            field: "header flags",
            value: flags.into(),
            at: 13,
        });
    }
    if reserved != 0 {
        return Err(WireError::Invalid {
            field: "header reserved",
            value: reserved.into(),
            at: 14,
        });
    }
    if body_len as u64 != r.left() as u64 {
        return Err(WireError::Length {
            said: body_len.into(),
            got: r.left(),
        });
    }
    if said_fds as usize != nfds {
        return Err(WireError::FdCount {
            detail: format!("header announces {said_fds} fds, {nfds} arrived"),
        });
    }
    let kind = Kind::from_code(kind_code).ok_or(WireError::UnknownKind(kind_code))?;
    let (lo, hi) = kind.fd_range();
    if nfds < lo || nfds > hi {
        return Err(WireError::FdCount {
            detail: format!("a {kind:?} message carries {lo} to {hi} fds, {nfds} arrived"),
        });
    }
    Ok(Header {
        minor,
        kind,
        body_len: body_len as usize,
        nfds,
    })
}

/// A stream message's buffer index (below [`MAX_STREAM_BUFFERS`]) and flags word, whose
/// [`STREAM_FLAG_FENCE`] must say what the fd count says.
fn stream_index_flags(r: &mut Reader<'_>, nfds: usize) -> Result<(u32, bool), WireError> {
    let at = r.pos;
    let index = r.u32("stream buffer index")?;
    if index >= MAX_STREAM_BUFFERS {
        return Err(WireError::Invalid {
            field: "stream buffer index",
            value: index.into(),
            at,
        });
    }
    let at = r.pos;
    let flags = r.u32("stream flags")?;
    if flags & !STREAM_FLAG_FENCE != 0 {
        return Err(WireError::Invalid {
            field: "stream flags",
            value: flags.into(),
            at,
        });
    }
    let fence = flags & STREAM_FLAG_FENCE != 0;
    if usize::from(fence) != nfds {
        return Err(WireError::FdCount {
            detail: format!(
                "the stream message's fence flag is {}, {nfds} fds arrived",
                u8::from(fence)
            ),
        });
    }
    Ok((index, fence))
}

/// Decodes a whole message that arrived with `nfds` fds.
pub fn decode(msg: &[u8], nfds: usize) -> Result<Message, WireError> {
    let h = decode_header(msg, nfds)?;
    let mut r = Reader::new(msg, HEADER_LEN);
    let m = match h.kind {
        Kind::UnreconciledLists => Message::UnreconciledLists(decode_slots(&mut r)?),
        Kind::ReconciledList => Message::ReconciledList(decode_reconciled(&mut r)?),
        Kind::Object => {
            let h = decode_object_header(&mut r, nfds)?;
            Message::Object(h, decode_reconciled(&mut r)?)
        }
        Kind::Data => {
            let n = r.left();
            Message::Data(r.take(n, "data")?.to_vec())
        }
        Kind::Error => {
            let code = r.u16("error code")?;
            let at = r.pos;
            let n = r.left();
            if n > MAX_ERROR_TEXT {
                return Err(WireError::Limit {
                    what: "error text",
                    value: n as u64,
                    limit: MAX_ERROR_TEXT as u64,
                });
            }
            let text = std::str::from_utf8(r.take(n, "error text")?)
                .map_err(|_| WireError::Utf8(at))?
                .to_owned();
            Message::Error { code, text }
        }
        Kind::StreamAttach => {
            let first = r.u32("stream first index")?;
            let count = r.u32("stream buffer count")?;
            let at = r.pos;
            let policy = match r.u8("stream policy")? {
                1 => StreamPolicy::Fifo,
                2 => StreamPolicy::Mailbox,
                v => {
                    return Err(WireError::Invalid {
                        field: "stream policy",
                        value: v.into(),
                        at,
                    })
                }
            };
            let at = r.pos;
            let reserved = r.take(3, "stream reserved")?;
            if reserved != [0, 0, 0] {
                return Err(WireError::Invalid {
                    field: "stream reserved",
                    value: 1,
                    at,
                });
            }
            let end = u64::from(first) + u64::from(count);
            if end > u64::from(MAX_STREAM_BUFFERS) {
                return Err(WireError::Limit {
                    what: "stream buffer index",
                    value: end,
                    limit: MAX_STREAM_BUFFERS.into(),
                });
            }
            Message::StreamAttach(StreamAttach {
                first,
                count,
                policy,
            })
        }
        Kind::StreamFrame => {
            let (index, fence) = stream_index_flags(&mut r, nfds)?;
            Message::StreamFrame(StreamFrame {
                index,
                fence,
                seq: r.u64("frame sequence")?,
                timestamp_ns: r.u64("frame timestamp")?,
            })
        }
        Kind::StreamRelease => {
            let (index, fence) = stream_index_flags(&mut r, nfds)?;
            Message::StreamRelease(StreamRelease {
                index,
                fence,
                seq: r.u64("release sequence")?,
            })
        }
        Kind::StreamRetire => {
            let (index, _) = stream_index_flags(&mut r, 0)?;
            Message::StreamRetire(index)
        }
        Kind::StreamEnd => Message::StreamEnd,
    };
    r.end("message body")?;
    Ok(m)
}

/// The fixed part of an object body (after the message header).
fn decode_object_header(r: &mut Reader<'_>, nfds: usize) -> Result<ObjectHeader, WireError> {
    let at = r.pos;
    let p = r.u8("permission")?;
    let permission = Permission::from_code(p.into()).ok_or(WireError::Invalid {
        field: "permission",
        value: p.into(),
        at,
    })?;
    let k = r.u8("fd kind")?;
    let fd_kind = fd_kind_from_code(k).ok_or(WireError::Invalid {
        field: "fd kind",
        value: k.into(),
        at: at + 1,
    })?;
    let b = r.u8("backend")?;
    let backend = match b {
        0 => None,
        _ => Some(BackendKind::from_code(b.into()).ok_or(WireError::Invalid {
            field: "backend",
            value: b.into(),
            at: at + 2,
        })?),
    };
    let flags = r.u8("object flags")?;
    if flags & !OBJECT_WITH_MEMFD != 0 {
        return Err(WireError::Invalid {
            field: "object flags",
            value: flags.into(),
            at: at + 3,
        });
    }
    let with_memfd = flags & OBJECT_WITH_MEMFD != 0;
    if with_memfd && fd_kind != FdKind::DmaBuf {
        return Err(WireError::Invalid {
            field: "object flags (a memfd beside an fd that is not a dma-buf)",
            value: flags.into(),
            at: at + 3,
        });
    }
    if nfds != 1 + usize::from(with_memfd) {
        return Err(WireError::FdCount {
            detail: format!(
                "the object {} a memfd, so it carries {} fds; {nfds} arrived",
                if with_memfd {
                    "announces"
                } else {
                    "does not announce"
                },
                1 + usize::from(with_memfd)
            ),
        });
    }
    if !fd_kind_fits(fd_kind, backend) {
        return Err(WireError::Invalid {
            field: "fd kind for the backend",
            value: k.into(),
            at: at + 1,
        });
    }
    let size = r.u64("size")?;
    if size == 0 || size > i64::MAX as u64 {
        return Err(WireError::Invalid {
            field: "object size",
            value: size,
            at: at + 4,
        });
    }
    Ok(ObjectHeader {
        permission,
        fd_kind,
        backend,
        size,
        with_memfd,
    })
}

/// Decodes an object message up to its reconciled list: the header and the bytes of the list
/// (not yet decoded: see [`decode_reconciled_body`]). Everything else is checked as [`decode`]
/// checks it.
pub fn decode_object_prefix(msg: &[u8], nfds: usize) -> Result<(ObjectHeader, usize), WireError> {
    let h = decode_header(msg, nfds)?;
    if h.kind != Kind::Object {
        return Err(WireError::Invalid {
            field: "kind (an object was expected)",
            value: h.kind as u64,
            at: 6,
        });
    }
    let mut r = Reader::new(msg, HEADER_LEN);
    let oh = decode_object_header(&mut r, nfds)?;
    Ok((oh, r.pos))
}

/// Decodes the reconciled list that ends an object message (the bytes after
/// [`decode_object_prefix`]'s offset), requiring it to fill them exactly.
pub fn decode_reconciled_body(bytes: &[u8]) -> Result<WireReconciled, WireError> {
    let mut r = Reader::new(bytes, 0);
    let w = decode_reconciled(&mut r)?;
    r.end("reconciled list")?;
    Ok(w)
}

/// Slots: u16 count (1..=MAX_SLOTS), u16 reserved (0), then that many lists.
fn decode_slots(r: &mut Reader<'_>) -> Result<Vec<WireList>, WireError> {
    let n = decode_slot_count(r)?;
    let mut lists = Vec::with_capacity(n);
    for _ in 0..n {
        lists.push(decode_list(r)?);
    }
    Ok(lists)
}

fn decode_slot_count(r: &mut Reader<'_>) -> Result<usize, WireError> {
    let at = r.pos;
    let raw = r.u16("slot count")?;
    let reserved = r.u16("reserved")?;
    if reserved != 0 {
        return Err(WireError::Invalid {
            field: "slots reserved",
            value: reserved.into(),
            at: at + 2,
        });
    }
    if raw == 0 {
        return Err(WireError::Invalid {
            field: "slot count",
            value: 0,
            at,
        });
    }
    // Each list needs at least its 2-byte entry count.
    r.bounded(raw.into(), MAX_SLOTS, 2, "slot count")
}

/// A reconciled list: its input slots, then its outputs list.
fn decode_reconciled(r: &mut Reader<'_>) -> Result<WireReconciled, WireError> {
    let inputs = decode_slots(r)?;
    let outputs = decode_list(r)?;
    Ok(WireReconciled { inputs, outputs })
}

/// Bytes of an entry before its value: key u16, flags u8.
const ENTRY_HEAD: usize = 3;
/// Bytes of a value before its payload: tag u8, length u32.
const VALUE_HEAD: usize = 5;

fn decode_list(r: &mut Reader<'_>) -> Result<WireList, WireError> {
    let entries = decode_list_ref(r)?
        .into_iter()
        .map(|e| WireEntry {
            key: e.key,
            must_understand: e.must_understand,
            value: match e.value {
                ValueRef::Bytes(b) => WireValue::Bytes(b.to_vec()),
                ValueRef::Unknown { tag, bytes } => WireValue::Unknown {
                    tag,
                    bytes: bytes.to_vec(),
                },
            },
        })
        .collect();
    Ok(WireList { entries })
}

/// A value borrowed from the message (the borrowed form of [`WireValue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// Tag 5: an attribute value's wire form.
    Bytes(&'a [u8]),
    /// A tag this version does not know, with its payload.
    Unknown {
        /// The tag.
        tag: u8,
        /// The payload.
        bytes: &'a [u8],
    },
}

/// An entry decoded without copying its Bytes value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The key's wire code.
    pub key: u16,
    /// The must-understand flag.
    pub must_understand: bool,
    /// The value.
    pub value: ValueRef<'a>,
}

/// The one list decoder: every check of a list and its entries is here; [`decode_list`] copies
/// what it returns.
fn decode_list_ref<'a>(r: &mut Reader<'a>) -> Result<Vec<EntryRef<'a>>, WireError> {
    let raw = r.u16("entry count")?;
    let n = r.bounded(
        raw.into(),
        MAX_ENTRIES,
        ENTRY_HEAD + VALUE_HEAD,
        "entry count",
    )?;
    let mut entries: Vec<EntryRef<'a>> = Vec::with_capacity(n);
    for _ in 0..n {
        let key = r.u16("key")?;
        let at = r.pos;
        let flags = r.u8("entry flags")?;
        if flags & !KNOWN_ENTRY_FLAGS != 0 {
            return Err(WireError::Invalid {
                field: "entry flags",
                value: flags.into(),
                at,
            });
        }
        if entries.iter().any(|e| e.key == key) {
            return Err(WireError::DuplicateKey(key));
        }
        let tag = r.u8("value tag")?;
        let len = r.u32("value length")?;
        let len = r.bounded(len.into(), MAX_MESSAGE, 1, "value length")?;
        if len > MAX_BYTES {
            return Err(WireError::Limit {
                what: "value length",
                value: len as u64,
                limit: MAX_BYTES as u64,
            });
        }
        let bytes = r.take(len, "value")?;
        let value = match tag {
            TAG_BYTES => ValueRef::Bytes(bytes),
            tag => ValueRef::Unknown { tag, bytes },
        };
        entries.push(EntryRef {
            key,
            must_understand: flags & FLAG_MUST_UNDERSTAND != 0,
            value,
        });
    }
    Ok(entries)
}

/// Decodes an unreconciled-lists message without copying attribute values: one vector of
/// entries per slot. Checks everything [`decode`] checks.
pub fn decode_lists_ref(msg: &[u8], nfds: usize) -> Result<Vec<Vec<EntryRef<'_>>>, WireError> {
    let h = decode_header(msg, nfds)?;
    if h.kind != Kind::UnreconciledLists {
        return Err(WireError::Invalid {
            field: "kind (unreconciled lists were expected)",
            value: h.kind as u64,
            at: 6,
        });
    }
    let mut r = Reader::new(msg, HEADER_LEN);
    let n = decode_slot_count(&mut r)?;
    let mut lists = Vec::with_capacity(n);
    for _ in 0..n {
        lists.push(decode_list_ref(&mut r)?);
    }
    r.end("message body")?;
    Ok(lists)
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Writes messages into a reusable buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// A new encoder with an empty buffer.
    pub fn new() -> Self {
        Encoder {
            buf: Vec::with_capacity(256),
        }
    }

    /// Encodes `msg` and returns the bytes (valid until the next call).
    pub fn encode(&mut self, msg: &Message) -> Result<&[u8], WireError> {
        self.encode_ref(msg.as_ref())
    }

    /// Encodes a borrowed message and returns the bytes (valid until the next call).
    pub fn encode_ref(&mut self, msg: MessageRef<'_>) -> Result<&[u8], WireError> {
        self.start(msg.kind(), msg.fd_count());
        match msg {
            MessageRef::UnreconciledLists(lists) => self.slots(lists)?,
            MessageRef::ReconciledList(r) => self.reconciled(r)?,
            MessageRef::Object(h, l) => {
                self.object_fixed(&h)?;
                self.reconciled(l)?;
            }
            MessageRef::Data(d) => self.buf.extend_from_slice(d),
            MessageRef::Error { code, text } => {
                self.buf.extend_from_slice(&code.to_le_bytes());
                // Cut an over-long text at a character boundary rather than refusing to report.
                let mut end = text.len().min(MAX_ERROR_TEXT);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                self.buf.extend_from_slice(&text.as_bytes()[..end]);
            }
            MessageRef::StreamAttach(a) => {
                self.buf.extend_from_slice(&a.first.to_le_bytes());
                self.buf.extend_from_slice(&a.count.to_le_bytes());
                self.buf.extend_from_slice(&[a.policy as u8, 0, 0, 0]);
            }
            MessageRef::StreamFrame(f) => {
                self.stream_index_flags(f.index, f.fence);
                self.buf.extend_from_slice(&f.seq.to_le_bytes());
                self.buf.extend_from_slice(&f.timestamp_ns.to_le_bytes());
            }
            MessageRef::StreamRelease(rel) => {
                self.stream_index_flags(rel.index, rel.fence);
                self.buf.extend_from_slice(&rel.seq.to_le_bytes());
            }
            MessageRef::StreamRetire(i) => self.stream_index_flags(i, false),
            MessageRef::StreamEnd => {}
        }
        self.finish()
    }

    fn stream_index_flags(&mut self, index: u32, fence: bool) {
        self.buf.extend_from_slice(&index.to_le_bytes());
        let flags = if fence { STREAM_FLAG_FENCE } else { 0 };
        self.buf.extend_from_slice(&flags.to_le_bytes());
    }

    fn start(&mut self, kind: Kind, nfds: usize) {
        self.buf.clear();
        self.buf.extend_from_slice(&MAGIC);
        self.buf.push(VERSION_MAJOR);
        self.buf.push(VERSION_MINOR);
        self.buf.extend_from_slice(&(kind as u16).to_le_bytes());
        self.buf.extend_from_slice(&0u32.to_le_bytes()); // body length, patched by finish
        self.buf.push(nfds as u8);
        self.buf.push(0);
        self.buf.extend_from_slice(&0u16.to_le_bytes());
    }

    fn finish(&mut self) -> Result<&[u8], WireError> {
        if self.buf.len() > MAX_MESSAGE {
            return Err(WireError::Encode(format!(
                "message of {} bytes exceeds {MAX_MESSAGE}",
                self.buf.len()
            )));
        }
        let body = (self.buf.len() - HEADER_LEN) as u32;
        self.buf[8..12].copy_from_slice(&body.to_le_bytes());
        Ok(&self.buf)
    }

    /// Starts a message of `kind` carrying `nfds` fds; write its body with the `put_*` methods and
    /// end it with [`Encoder::finish_message`]. For senders that encode their own structures
    /// (attribute lists) without building [`WireList`]s first.
    pub fn begin_message(&mut self, kind: Kind, nfds: usize) {
        self.start(kind, nfds);
    }

    /// Ends a message begun with [`Encoder::begin_message`] and returns its bytes.
    pub fn finish_message(&mut self) -> Result<&[u8], WireError> {
        self.finish()
    }

    /// Writes the head of a Slots body with `n` lists.
    pub fn put_slots_head(&mut self, n: usize) -> Result<(), WireError> {
        if n == 0 || n > MAX_SLOTS {
            return Err(WireError::Encode(format!(
                "{n} lists (1 to {MAX_SLOTS} allowed)"
            )));
        }
        self.buf.extend_from_slice(&(n as u16).to_le_bytes());
        self.buf.extend_from_slice(&0u16.to_le_bytes());
        Ok(())
    }

    /// Writes the head of a list of `n` entries.
    pub fn put_list_head(&mut self, n: usize) -> Result<(), WireError> {
        if n > MAX_ENTRIES {
            return Err(WireError::Encode(format!(
                "{n} entries (at most {MAX_ENTRIES})"
            )));
        }
        self.buf.extend_from_slice(&(n as u16).to_le_bytes());
        Ok(())
    }

    /// Writes one entry whose value is Bytes, filled by `fill` (the caller guarantees keys are
    /// unique within the list).
    pub fn put_bytes_entry(
        &mut self,
        key: u16,
        must_understand: bool,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), WireError> {
        self.buf.extend_from_slice(&key.to_le_bytes());
        self.buf.push(if must_understand {
            FLAG_MUST_UNDERSTAND
        } else {
            0
        });
        self.buf.push(TAG_BYTES);
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        fill(&mut self.buf);
        let len = self.buf.len() - at - 4;
        if len > MAX_BYTES {
            return Err(WireError::Encode(format!(
                "value of key {key:#06x} is {len} bytes (at most {MAX_BYTES})"
            )));
        }
        self.buf[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(())
    }

    fn object_fixed(&mut self, h: &ObjectHeader) -> Result<(), WireError> {
        if h.size == 0 || h.size > i64::MAX as u64 {
            return Err(WireError::Encode(format!("object size {}", h.size)));
        }
        if h.with_memfd && h.fd_kind != FdKind::DmaBuf {
            return Err(WireError::Encode(format!("a memfd beside a {}", h.fd_kind)));
        }
        if !fd_kind_fits(h.fd_kind, h.backend) {
            return Err(WireError::Encode(format!(
                "a {} fd cannot come from the {:?} backend",
                h.fd_kind, h.backend
            )));
        }
        self.buf.push(header_byte(h.permission.code()));
        self.buf.push(fd_kind_code(h.fd_kind));
        self.buf
            .push(h.backend.map_or(0, |b| header_byte(b.code())));
        self.buf
            .push(if h.with_memfd { OBJECT_WITH_MEMFD } else { 0 });
        self.buf.extend_from_slice(&h.size.to_le_bytes());
        Ok(())
    }

    /// Encodes an object message whose reconciled list is already encoded
    /// ([`Encoder::reconciled_body`]): what a sender of many objects sharing one list does.
    pub fn encode_object_raw(
        &mut self,
        h: &ObjectHeader,
        reconciled_body: &[u8],
    ) -> Result<&[u8], WireError> {
        self.start(Kind::Object, 1 + usize::from(h.with_memfd));
        self.object_fixed(h)?;
        self.buf.extend_from_slice(reconciled_body);
        self.finish()
    }

    /// The encoded form of a reconciled list, as it ends an object message.
    pub fn reconciled_body(&mut self, r: &WireReconciled) -> Result<Vec<u8>, WireError> {
        self.buf.clear();
        self.reconciled(r)?;
        Ok(std::mem::take(&mut self.buf))
    }

    fn slots(&mut self, lists: &[WireList]) -> Result<(), WireError> {
        if lists.is_empty() || lists.len() > MAX_SLOTS {
            return Err(WireError::Encode(format!(
                "{} lists (1 to {MAX_SLOTS} allowed)",
                lists.len()
            )));
        }
        self.buf
            .extend_from_slice(&(lists.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(&0u16.to_le_bytes());
        for l in lists {
            self.list(l)?;
        }
        Ok(())
    }

    fn reconciled(&mut self, r: &WireReconciled) -> Result<(), WireError> {
        self.slots(&r.inputs)?;
        self.list(&r.outputs)
    }

    fn list(&mut self, l: &WireList) -> Result<(), WireError> {
        if l.entries.len() > MAX_ENTRIES {
            return Err(WireError::Encode(format!(
                "{} entries (at most {MAX_ENTRIES})",
                l.entries.len()
            )));
        }
        self.buf
            .extend_from_slice(&(l.entries.len() as u16).to_le_bytes());
        for (i, e) in l.entries.iter().enumerate() {
            if l.entries[..i].iter().any(|p| p.key == e.key) {
                return Err(WireError::DuplicateKey(e.key));
            }
            self.buf.extend_from_slice(&e.key.to_le_bytes());
            self.buf.push(if e.must_understand {
                FLAG_MUST_UNDERSTAND
            } else {
                0
            });
            self.value(&e.value)?;
        }
        Ok(())
    }

    fn value(&mut self, v: &WireValue) -> Result<(), WireError> {
        let (tag, bytes) = match v {
            WireValue::Bytes(b) => (TAG_BYTES, b),
            WireValue::Unknown { tag, .. } if *tag == TAG_BYTES => {
                return Err(WireError::Encode(format!(
                    "unknown value with the known tag {tag}"
                )));
            }
            WireValue::Unknown { tag, bytes } => (*tag, bytes),
        };
        self.buf.push(tag);
        self.buf
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.bytes(bytes)
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), WireError> {
        if b.len() > MAX_BYTES {
            return Err(WireError::Encode(format!(
                "string or bytes of {} (at most {MAX_BYTES})",
                b.len()
            )));
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }
}

/// Encodes `msg` into a new vector (convenience for tests and tools).
pub fn encode(msg: &Message) -> Result<Vec<u8>, WireError> {
    Encoder::new().encode(msg).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_list() -> WireList {
        let mut l = WireList::default();
        l.push(1, WireValue::Bytes(7u64.to_le_bytes().to_vec()))
            .unwrap();
        l.push(2, WireValue::Bytes(vec![1])).unwrap();
        l.push(3, WireValue::Bytes(b"nv12".to_vec())).unwrap();
        l.push(
            4,
            WireValue::Unknown {
                tag: 6,
                bytes: vec![1, 2, 3],
            },
        )
        .unwrap();
        l
    }

    fn sample_rec() -> WireReconciled {
        WireReconciled {
            inputs: vec![sample_list(), WireList::default()],
            outputs: sample_list(),
        }
    }

    fn rec(l: WireList) -> WireReconciled {
        WireReconciled {
            inputs: vec![WireList::default()],
            outputs: l,
        }
    }

    fn all_messages() -> Vec<Message> {
        vec![
            Message::UnreconciledLists(vec![sample_list(), WireList::default()]),
            Message::ReconciledList(sample_rec()),
            Message::Object(
                ObjectHeader {
                    permission: Permission::ReadOnly,
                    fd_kind: FdKind::Memfd,
                    backend: Some(BackendKind::Memfd),
                    size: 4096,
                    with_memfd: false,
                },
                sample_rec(),
            ),
            Message::Data(b"frame 3".to_vec()),
            Message::Error {
                code: ErrorCode::Conflict as u16,
                text: "key X".into(),
            },
            Message::StreamAttach(StreamAttach {
                first: 2,
                count: 3,
                policy: StreamPolicy::Mailbox,
            }),
            Message::StreamFrame(StreamFrame {
                index: 4,
                fence: true,
                seq: 7,
                timestamp_ns: 123_456_789,
            }),
            Message::StreamFrame(StreamFrame {
                index: 0,
                fence: false,
                seq: 1,
                timestamp_ns: 0,
            }),
            Message::StreamRelease(StreamRelease {
                index: 255,
                fence: true,
                seq: u64::MAX,
            }),
            Message::StreamRetire(9),
            Message::StreamEnd,
        ]
    }

    #[test]
    fn stream_messages_are_checked() {
        let f = |index: u32, fence: bool| {
            Message::StreamFrame(StreamFrame {
                index,
                fence,
                seq: 1,
                timestamp_ns: 2,
            })
        };
        let with = encode(&f(1, true)).unwrap();
        assert_eq!(with.len(), HEADER_LEN + 24);
        assert_eq!(decode(&with, 1).unwrap(), f(1, true));
        // The fence flag and the fd count must agree (the header's count says 1 here).
        let mut no_fd = with.clone();
        no_fd[12] = 0;
        assert!(matches!(decode(&no_fd, 0), Err(WireError::FdCount { .. })));
        // Index bound, unknown flags, unknown policy, attach past the bound.
        let mut big = encode(&f(0, false)).unwrap();
        big[16..20].copy_from_slice(&MAX_STREAM_BUFFERS.to_le_bytes());
        assert!(matches!(decode(&big, 0), Err(WireError::Invalid { .. })));
        let mut flags = encode(&f(0, false)).unwrap();
        flags[20] = 2;
        assert!(matches!(decode(&flags, 0), Err(WireError::Invalid { .. })));
        let a = |first, count| {
            encode(&Message::StreamAttach(StreamAttach {
                first,
                count,
                policy: StreamPolicy::Fifo,
            }))
            .unwrap()
        };
        let mut pol = a(0, 1);
        pol[24] = 3;
        assert!(matches!(decode(&pol, 0), Err(WireError::Invalid { .. })));
        assert!(matches!(
            decode(&a(200, 57), 0),
            Err(WireError::Limit { .. })
        ));
        assert!(decode(&a(200, 56), 0).is_ok());
    }

    /// Writes one valid message of each kind (fd-count byte first) as seeds for the fuzzer
    /// (`scripts/fuzz` runs this once).
    #[test]
    #[ignore]
    fn write_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode");
        std::fs::create_dir_all(&dir).unwrap();
        let mut msgs = all_messages();
        // Messages of the typed layer: real attribute lists, a reconciled list, an object.
        use crate::attr::{AccessorKind, AttrList};
        use crate::ipc::attrs::{list_to_wire, reconciled_to_wire};
        let mut cam = AttrList::image(crate::layout::PixelFormat::Nv12, 640, 480).unwrap();
        cam.set_accessor_name("cam")
            .unwrap()
            .set_accessor_kind(AccessorKind::Camera)
            .unwrap()
            .set_pitch_align(256)
            .unwrap();
        let mut cpu = AttrList::raw(4096).unwrap();
        cpu.set_need_cpu_access(true)
            .unwrap()
            .set_required_perm(Permission::ReadOnly)
            .unwrap();
        msgs.push(Message::UnreconciledLists(vec![
            list_to_wire(&cam),
            list_to_wire(&cpu),
        ]));
        let r = crate::reconcile::reconcile(&[cam]).unwrap();
        msgs.push(Message::ReconciledList(reconciled_to_wire(&r)));
        msgs.push(Message::Object(
            ObjectHeader {
                permission: Permission::ReadWrite,
                fd_kind: FdKind::DmaBuf,
                backend: Some(BackendKind::Udmabuf),
                size: r.size(),
                with_memfd: true,
            },
            reconciled_to_wire(&r),
        ));
        for (i, m) in msgs.iter().enumerate() {
            let mut b = vec![m.fd_count() as u8];
            b.extend(encode(m).unwrap());
            std::fs::write(dir.join(format!("seed-{i}")), b).unwrap();
        }
    }

    #[test]
    fn round_trip_every_kind() {
        for m in all_messages() {
            let b = encode(&m).unwrap();
            let nfds = m.fd_count();
            assert_eq!(decode(&b, nfds).unwrap(), m);
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        for m in all_messages() {
            let b = encode(&m).unwrap();
            let nfds = m.fd_count();
            for cut in 0..b.len() {
                assert!(decode(&b[..cut], nfds).is_err(), "{m:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn wrong_version_and_magic() {
        let mut b = encode(&Message::Data(vec![1])).unwrap();
        b[4] = 2;
        assert!(matches!(
            decode(&b, 0),
            Err(WireError::Version { major: 2, .. })
        ));
        b[4] = VERSION_MAJOR;
        b[5] = 9; // a newer minor is accepted
        assert!(decode(&b, 0).is_ok());
        b[0] = b'X';
        assert!(matches!(decode(&b, 0), Err(WireError::BadMagic(_))));
    }

    #[test]
    fn body_length_must_match() {
        let mut b = encode(&Message::Data(vec![1, 2, 3])).unwrap();
        b[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(decode(&b, 0), Err(WireError::Length { .. })));
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&b, 0), Err(WireError::Length { .. })));
    }

    #[test]
    fn fd_count_must_agree() {
        let obj = encode(&all_messages()[2]).unwrap();
        assert!(matches!(decode(&obj, 0), Err(WireError::FdCount { .. })));
        assert!(matches!(decode(&obj, 2), Err(WireError::FdCount { .. })));
        let mut data = encode(&Message::Data(vec![])).unwrap();
        data[12] = 1; // header claims an fd a Data message does not carry
        assert!(matches!(decode(&data, 1), Err(WireError::FdCount { .. })));
    }

    #[test]
    fn huge_counts_fail_before_allocating() {
        // A list that claims 512 entries in a 2-byte body.
        let mut b = encode(&Message::ReconciledList(rec(WireList::default()))).unwrap();
        let n = b.len();
        b[n - 2..].copy_from_slice(&512u16.to_le_bytes());
        assert!(matches!(decode(&b, 0), Err(WireError::Truncated { .. })));
        b[n - 2..].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(decode(&b, 0), Err(WireError::Limit { .. })));
    }

    #[test]
    fn unknown_tags_are_kept_and_flags_checked() {
        let mut l = WireList::default();
        l.entries.push(WireEntry {
            key: 0x7fff,
            must_understand: false,
            value: WireValue::Unknown {
                tag: 200,
                bytes: vec![9; 5],
            },
        });
        let m = Message::ReconciledList(rec(l));
        let b = encode(&m).unwrap();
        let d = decode(&b, 0).unwrap();
        assert_eq!(d, m);
        let mut bad = b.clone();
        bad[HEADER_LEN + 4 + 2 + 2 + 2] = 0x80; // unknown entry flag of the outputs' entry
        assert!(matches!(decode(&bad, 0), Err(WireError::Invalid { .. })));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let mut l = WireList::default();
        l.push(5, WireValue::Bytes(vec![0])).unwrap();
        assert!(l.push(5, WireValue::Bytes(vec![1])).is_err());
        let mut l = WireList::default();
        for _ in 0..2 {
            l.entries.push(WireEntry {
                key: 5,
                must_understand: true,
                value: WireValue::Bytes(vec![0]),
            });
        }
        assert!(matches!(
            encode(&Message::ReconciledList(rec(l))),
            Err(WireError::DuplicateKey(5))
        ));
    }

    #[test]
    fn values_travel_one_way() {
        // Tag 5 is the one value type; the retired generic tags (1-4, 6) read as unknown.
        let mut l = WireList::default();
        l.push(1, WireValue::Bytes(vec![1])).unwrap();
        let b = encode(&Message::ReconciledList(rec(l))).unwrap();
        let tag_at = b.len() - 1 - 4 - 1;
        assert_eq!(b[tag_at], TAG_BYTES);
        for retired in [1u8, 2, 3, 4, 6] {
            let mut c = b.clone();
            c[tag_at] = retired;
            let Ok(Message::ReconciledList(r)) = decode(&c, 0) else {
                panic!("tag {retired} refused");
            };
            assert_eq!(
                r.outputs.get(1),
                Some(&WireValue::Unknown {
                    tag: retired,
                    bytes: vec![1]
                })
            );
        }
        // An encoder never writes an unknown value under the known tag.
        let mut l = WireList::default();
        l.push(
            1,
            WireValue::Unknown {
                tag: TAG_BYTES,
                bytes: vec![],
            },
        )
        .unwrap();
        assert!(encode(&Message::ReconciledList(rec(l))).is_err());
        // Payloads are bounded whatever the tag.
        let mut l = WireList::default();
        l.push(
            1,
            WireValue::Unknown {
                tag: 9,
                bytes: vec![0; MAX_BYTES + 1],
            },
        )
        .unwrap();
        assert!(encode(&Message::ReconciledList(rec(l))).is_err());
    }
}
