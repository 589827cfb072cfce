//! A stream across processes: one [`Producer`] and any number of [`Consumer`]s, each on its own
//! [`Endpoint`].
//!
//! - Attach: the consumer sends its own unreconciled lists; the producer validates its pool's
//!   reconciled list against them ([`Reconciled::validate`]), grants the permission those lists
//!   require (a read-only display gets read-only handles, enforced as far as the backend allows),
//!   and sends every buffer once ([`Kind::StreamAttach`] then one object each; the consumer
//!   validates each against its lists as every import does). A consumer may attach at any time
//!   (a late joiner gets the running pool); buffers the pool grows later follow the same way.
//! - Frames carry a buffer index, a sequence number, a timestamp and optionally a fence; a
//!   release carries the index, the sequence number and optionally the consumer's fence, which
//!   keeps the buffer out of the pool until it signals.
//! - A consumer that disconnects or dies releases everything it held (and its mailbox): the
//!   producer goes on.
//! - Back-pressure: [`StreamPolicy::Fifo`] posts every frame to every consumer, and the
//!   producer's [`Producer::acquire`] waits for a free buffer; [`StreamPolicy::Mailbox`] never
//!   holds more than one unread frame per consumer: a frame posted while the consumer still has
//!   one in flight waits in its mailbox, and a newer one replaces it (counted as dropped).
//!
//! The steady-state path (post, receive, release, acquire; no fence) allocates nothing.
//!
//! [`Kind::StreamAttach`]: crate::ipc::wire::Kind::StreamAttach
//! [`Reconciled::validate`]: crate::reconcile::Reconciled::validate

use super::fence::{poll_ready, Fence};
use super::pool::Pool;
use crate::attr::{AttrList, Permission};
use crate::error::{Error, Result};
use crate::ipc::attrs::resolve;
pub use crate::ipc::wire::StreamPolicy;
use crate::ipc::wire::{
    ErrorCode, Kind, Message, MessageRef, StreamAttach, StreamFrame, StreamRelease,
    MAX_STREAM_BUFFERS,
};
use crate::ipc::{Endpoint, Requested};
use crate::object::Object;
use rustix::event::{epoll, PollFlags, Timespec};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

/// Most consumers one producer serves.
pub const MAX_CONSUMERS: usize = 32;

/// A consumer of a [`Producer`], by attach order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerId(pub usize);

#[derive(Debug)]
struct Pending {
    index: u32,
    seq: u64,
    timestamp_ns: u64,
    fence: Option<Fence>,
}

#[derive(Debug)]
struct Peer {
    ep: Endpoint,
    permission: Permission,
    /// Per pool index: the sequence number of the frame this consumer holds in it, 0 for none.
    held: Vec<u64>,
    in_flight: u32,
    mailbox: Option<Pending>,
    stats: ConsumerStats,
}

/// What happened to one consumer's frames.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Frames sent to it.
    pub sent: u64,
    /// Frames it released.
    pub released: u64,
    /// Frames replaced in its mailbox before it could read them.
    pub dropped: u64,
}

/// What the producer has done.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStats {
    /// Frames posted.
    pub posted: u64,
    /// Frames dropped (mailbox replacements), all consumers together, gone ones included.
    pub dropped: u64,
    /// Consumers attached, in all.
    pub attached: u64,
    /// Consumers that disconnected or died (their buffers were released).
    pub lost: u64,
}

/// The producer end of a stream: a pool and its consumers.
#[derive(Debug)]
pub struct Producer {
    pool: Pool,
    policy: StreamPolicy,
    peers: Vec<Option<Peer>>,
    epoll: OwnedFd,
    seq: u64,
    stats: ProducerStats,
}

fn dup_epoll_err(e: Errno, op: &'static str) -> Error {
    Error::sys(op, "stream producer epoll", e)
}

impl Producer {
    /// A producer posting buffers of `pool` under `policy`.
    pub fn new(mut pool: Pool, policy: StreamPolicy) -> Result<Producer> {
        if pool.max() > MAX_STREAM_BUFFERS as usize {
            return Err(Error::InvalidArgument(format!(
                "a stream pool has at most {MAX_STREAM_BUFFERS} buffers, this one grows to {}",
                pool.max()
            )));
        }
        pool.take_added().for_each(drop);
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)
            .map_err(|e| dup_epoll_err(e, "epoll_create1"))?;
        Ok(Producer {
            pool,
            policy,
            peers: Vec::with_capacity(MAX_CONSUMERS),
            epoll,
            seq: 0,
            stats: ProducerStats::default(),
        })
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The buffer at `index` (to fill it after [`Producer::acquire`]).
    pub fn buffer(&self, index: u32) -> Option<&Object> {
        self.pool.get(index)
    }

    /// The buffer at `index`, mutable (to map it for writing while the producer holds it).
    pub fn buffer_mut(&mut self, index: u32) -> Option<&mut Object> {
        self.pool.get_mut(index)
    }

    /// The policy.
    pub fn policy(&self) -> StreamPolicy {
        self.policy
    }

    /// What the producer has done.
    pub fn stats(&self) -> ProducerStats {
        self.stats
    }

    /// What consumer `id` got, while it is attached.
    pub fn consumer_stats(&self, id: ConsumerId) -> Option<ConsumerStats> {
        Some(self.peers.get(id.0)?.as_ref()?.stats)
    }

    /// How many consumers are attached.
    pub fn consumers(&self) -> usize {
        self.peers.iter().filter(|p| p.is_some()).count()
    }

    /// The permission consumer `id` holds.
    pub fn consumer_permission(&self, id: ConsumerId) -> Option<Permission> {
        Some(self.peers.get(id.0)?.as_ref()?.permission)
    }

    /// Attaches the consumer at the other end of `ep` (at any time: a late joiner gets the
    /// running pool). Receives its lists, validates the pool's list against them (a conflict is
    /// reported to the consumer and returned), grants what they require, and sends every buffer.
    pub fn attach(&mut self, mut ep: Endpoint) -> Result<ConsumerId> {
        let lists = ep.import_lists()?;
        self.attach_with_lists(ep, &lists)
    }

    /// [`Producer::attach`] for a consumer whose lists were already imported from `ep` (an
    /// application that reconciled them into the pool's list first).
    pub fn attach_with_lists(
        &mut self,
        mut ep: Endpoint,
        lists: &crate::ipc::ImportedLists,
    ) -> Result<ConsumerId> {
        let slot = match self.peers.iter().position(|p| p.is_none()) {
            Some(i) => i,
            None if self.peers.len() < MAX_CONSUMERS => {
                self.peers.push(None);
                self.peers.len() - 1
            }
            None => {
                let _ = ep.send_error(ErrorCode::Other, "the stream has its most consumers");
                return Err(Error::LimitExceeded {
                    what: format!("{}: stream consumers", ep.name()),
                    asked: MAX_CONSUMERS as u64 + 1,
                    limit: MAX_CONSUMERS as u64,
                });
            }
        };
        if let Err(c) = self.pool.list().validate(&lists.slots) {
            let _ = ep.send_error(ErrorCode::Conflict, &c.to_string());
            return Err(c.into());
        }
        let permission = resolve(Requested::Auto, Some(&lists.slots))?;
        let mut peer = Peer {
            ep,
            permission,
            held: vec![0; self.pool.max()],
            in_flight: 0,
            mailbox: None,
            stats: ConsumerStats::default(),
        };
        let indices: Vec<u32> = self.pool.indices().collect();
        send_buffers(&mut peer, &self.pool, self.policy, &indices)?;
        epoll::add(
            &self.epoll,
            peer.ep.as_fd(),
            epoll::EventData::new_u64(slot as u64),
            epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
        )
        .map_err(|e| dup_epoll_err(e, "epoll_ctl(ADD)"))?;
        self.peers[slot] = Some(peer);
        self.stats.attached += 1;
        Ok(ConsumerId(slot))
    }

    /// Detaches consumer `id` (as if it had disconnected): everything it held is released.
    pub fn detach(&mut self, id: ConsumerId) -> Result<()> {
        self.drop_peer(id.0)
    }

    /// Ends the stream for consumer `id`: takes the releases of the frames it still has in
    /// flight (waiting at most `timeout` for them), sends it the end of the stream, releases
    /// whatever it held, and gives the endpoint back for the application's own messages.
    pub fn end(&mut self, id: ConsumerId, timeout: Duration) -> Result<Endpoint> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(peer) = self.peers.get_mut(id.0).and_then(Option::as_mut) else {
                return Err(Error::Disconnected);
            };
            if let Some(p) = peer.mailbox.take() {
                peer.stats.dropped += 1;
                self.stats.dropped += 1;
                self.pool.release(p.index, None)?;
                continue;
            }
            if peer.in_flight == 0 {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || !poll_ready(peer.ep.as_fd(), PollFlags::IN, Some(left), "stream end")?
            {
                break;
            }
            self.handle_one(id.0)?;
        }
        let Some(mut peer) = self.peers.get_mut(id.0).and_then(Option::take) else {
            return Err(Error::Disconnected);
        };
        let _ = epoll::delete(&self.epoll, peer.ep.as_fd());
        for (i, seq) in peer.held.iter().enumerate() {
            if *seq != 0 {
                self.pool.release(i as u32, None)?;
            }
        }
        peer.ep.send_ref(MessageRef::StreamEnd, &[])?;
        Ok(peer.ep)
    }

    fn drop_peer(&mut self, slot: usize) -> Result<()> {
        let Some(mut peer) = self.peers.get_mut(slot).and_then(Option::take) else {
            return Ok(());
        };
        let _ = epoll::delete(&self.epoll, peer.ep.as_fd());
        for (i, seq) in peer.held.iter().enumerate() {
            if *seq != 0 {
                self.pool.release(i as u32, None)?;
            }
        }
        if let Some(p) = peer.mailbox.take() {
            self.pool.release(p.index, None)?;
        }
        self.stats.lost += 1;
        Ok(())
    }

    /// A free buffer to fill (held by the producer until [`Producer::post`]), waiting at most
    /// `timeout` for consumers' releases and fences; [`Error::Timeout`] past it. Buffers the pool
    /// grows on the way are sent to every consumer first.
    pub fn acquire(&mut self, timeout: Duration) -> Result<u32> {
        // The clock is read once a wait begins, and again only when one wait did not suffice.
        let mut deadline = None;
        loop {
            if let Some(i) = self.pool.try_acquire()? {
                self.announce_added()?;
                return Ok(i);
            }
            let left = match deadline {
                None => {
                    deadline = Some(Instant::now() + timeout);
                    timeout
                }
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: "stream producer: a free buffer".into(),
                    after: timeout,
                });
            }
            // Released buffers may still carry a pending fence: look again soon.
            let slice = if self.pool.free_count() > 0 {
                left.min(Duration::from_millis(2))
            } else {
                left
            };
            self.service(Some(slice))?;
        }
    }

    /// Gives a buffer acquired but not posted back to the pool.
    pub fn discard(&mut self, index: u32) -> Result<()> {
        self.pool.release(index, None)
    }

    fn announce_added(&mut self) -> Result<()> {
        let mut added = [0u32; MAX_STREAM_BUFFERS as usize];
        let mut n = 0;
        for i in self.pool.take_added() {
            added[n] = i;
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        for slot in 0..self.peers.len() {
            let Some(peer) = self.peers[slot].as_mut() else {
                continue;
            };
            if send_buffers(peer, &self.pool, self.policy, &added[..n]).is_err() {
                self.drop_peer(slot)?;
            }
        }
        Ok(())
    }

    /// Frees buffers idle for at least `idle`, keeping `keep`, and tells the consumers; answers
    /// how many were freed.
    pub fn shrink_idle(&mut self, idle: Duration, keep: usize) -> Result<usize> {
        let freed = self.pool.shrink_idle(idle, keep)?;
        for &i in &freed {
            for slot in 0..self.peers.len() {
                let Some(peer) = self.peers[slot].as_mut() else {
                    continue;
                };
                if peer.ep.send_ref(MessageRef::StreamRetire(i), &[]).is_err() {
                    self.drop_peer(slot)?;
                }
            }
        }
        Ok(freed.len())
    }

    /// Posts buffer `index` (acquired, filled) as the next frame, captured at `timestamp_ns`
    /// (`CLOCK_MONOTONIC`), with the fence consumers must wait for before reading, if any. The
    /// producer's hold ends here. Answers the frame's sequence number.
    pub fn post(&mut self, index: u32, timestamp_ns: u64, fence: Option<Fence>) -> Result<u64> {
        if self.pool.holders(index) == 0 {
            return Err(Error::InvalidArgument(format!(
                "buffer {index} is not held by the producer: acquire it first"
            )));
        }
        self.seq += 1;
        let seq = self.seq;
        let frame = StreamFrame {
            index,
            fence: fence.is_some(),
            seq,
            timestamp_ns,
        };
        for slot in 0..self.peers.len() {
            let Some(peer) = self.peers[slot].as_mut() else {
                continue;
            };
            let mut lost = false;
            if self.policy == StreamPolicy::Mailbox && peer.in_flight > 0 {
                if let Some(old) = peer.mailbox.take() {
                    self.pool.release(old.index, None)?;
                    peer.stats.dropped += 1;
                    self.stats.dropped += 1;
                }
                let fence = fence.as_ref().map(Fence::try_clone).transpose()?;
                self.pool.hold(index)?;
                peer.mailbox = Some(Pending {
                    index,
                    seq,
                    timestamp_ns,
                    fence,
                });
            } else if send_frame(peer, &frame, fence.as_ref()).is_ok() {
                self.pool.hold(index)?;
                peer.held[index as usize] = seq;
            } else {
                lost = true;
            }
            if lost {
                self.drop_peer(slot)?;
            }
        }
        self.pool.release(index, None)?;
        self.stats.posted += 1;
        Ok(seq)
    }

    /// Handles what consumers sent (releases, disconnections): one message from each consumer
    /// that has one, waiting at most `timeout` for the first (`None`: until one arrives);
    /// answers how many messages were handled.
    pub fn service(&mut self, timeout: Option<Duration>) -> Result<usize> {
        let mut handled = 0;
        let wait = timeout;
        loop {
            let mut events = [MaybeUninit::<epoll::Event>::uninit(); 8];
            let ts = wait.map(|l| Timespec {
                tv_sec: l.as_secs() as _,
                tv_nsec: l.subsec_nanos() as _,
            });
            let (ready, _) = match epoll::wait(&self.epoll, &mut events, ts.as_ref()) {
                Ok(r) => r,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(dup_epoll_err(e, "epoll_wait")),
            };
            if ready.is_empty() {
                return Ok(handled);
            }
            for ev in ready.iter() {
                let slot = ev.data.u64() as usize;
                self.handle_one(slot)?;
                handled += 1;
            }
            return Ok(handled);
        }
    }

    fn handle_one(&mut self, slot: usize) -> Result<()> {
        let Some(peer) = self.peers.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        let got = match peer.ep.recv() {
            Ok(r) => r,
            Err(Error::Disconnected) => return self.drop_peer(slot),
            Err(Error::Ipc(_)) => return self.drop_peer(slot),
            Err(e) => return Err(e),
        };
        let Message::StreamRelease(StreamRelease { index, fence, seq }) = got.message else {
            // Anything else from a consumer breaks the protocol: it is detached.
            return self.drop_peer(slot);
        };
        let i = index as usize;
        if peer.held.get(i).copied() != Some(seq) || seq == 0 {
            return self.drop_peer(slot);
        }
        let fence = match (fence, got.fds.into_iter().next()) {
            (true, Some(fd)) => match Fence::from_sync_file(fd) {
                Ok(f) => Some(f),
                Err(_) => return self.drop_peer(slot),
            },
            _ => None,
        };
        peer.held[i] = 0;
        peer.in_flight -= 1;
        peer.stats.released += 1;
        let next = peer.mailbox.take();
        self.pool.release(index, fence)?;
        if let Some(p) = next {
            let peer = self.peers[slot].as_mut().expect("looked up above");
            let frame = StreamFrame {
                index: p.index,
                fence: p.fence.is_some(),
                seq: p.seq,
                timestamp_ns: p.timestamp_ns,
            };
            if send_frame(peer, &frame, p.fence.as_ref()).is_ok() {
                peer.held[p.index as usize] = p.seq;
            } else {
                // The mailbox's hold goes with the peer.
                peer.mailbox = Some(p);
                return self.drop_peer(slot);
            }
        }
        Ok(())
    }
}

fn send_frame(peer: &mut Peer, frame: &StreamFrame, fence: Option<&Fence>) -> Result<()> {
    match fence {
        Some(f) => peer
            .ep
            .send_ref(MessageRef::StreamFrame(*frame), &[f.as_fd()])?,
        None => peer.ep.send_ref(MessageRef::StreamFrame(*frame), &[])?,
    }
    peer.in_flight += 1;
    peer.stats.sent += 1;
    Ok(())
}

/// Sends buffers `indices` to a consumer: one attach message per run of consecutive indices,
/// then one object each.
fn send_buffers(peer: &mut Peer, pool: &Pool, policy: StreamPolicy, indices: &[u32]) -> Result<()> {
    let mut k = 0;
    while k < indices.len() {
        let first = indices[k];
        let mut n = 1;
        while k + n < indices.len() && indices[k + n] == first + n as u32 {
            n += 1;
        }
        peer.ep.send_ref(
            MessageRef::StreamAttach(StreamAttach {
                first,
                count: n as u32,
                policy,
            }),
            &[],
        )?;
        for i in first..first + n as u32 {
            let obj = pool
                .get(i)
                .ok_or_else(|| Error::InvalidArgument(format!("no buffer {i} in the pool")))?;
            peer.ep.export_object(obj, peer.permission)?;
        }
        k += n;
    }
    Ok(())
}

/// A frame as a consumer got it.
#[derive(Debug)]
pub struct Frame {
    /// The pool index of its buffer ([`Consumer::buffer`]).
    pub index: u32,
    /// Its sequence number.
    pub seq: u64,
    /// When it was captured (`CLOCK_MONOTONIC`, ns).
    pub timestamp_ns: u64,
    /// The fence to wait for before reading, if the producer attached one.
    pub fence: Option<Fence>,
}

impl Frame {
    /// Waits at most `timeout` for the frame's fence (at once when it has none).
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        match &self.fence {
            Some(f) => f.wait(timeout),
            None => Ok(()),
        }
    }
}

/// The consumer end of a stream.
#[derive(Debug)]
pub struct Consumer {
    ep: Endpoint,
    own: Vec<AttrList>,
    buffers: Vec<Option<Object>>,
    policy: StreamPolicy,
    held: u32,
}

impl Consumer {
    /// Attaches to the producer at the other end of `ep` with this consumer's own lists: sends
    /// them, then receives the pool's buffers (each validated against them, held with the
    /// permission they require).
    pub fn attach(mut ep: Endpoint, own: Vec<AttrList>) -> Result<Consumer> {
        ep.export_lists(&own)?;
        let mut c = Consumer {
            ep,
            own,
            buffers: Vec::new(),
            policy: StreamPolicy::Fifo,
            held: 0,
        };
        let r = c.ep.recv()?;
        match r.message {
            Message::StreamAttach(a) => c.receive_buffers(a)?,
            _ => return Err(crate::ipc::ops::unexpected(&c.ep, Kind::StreamAttach, r)),
        }
        Ok(c)
    }

    fn receive_buffers(&mut self, a: StreamAttach) -> Result<()> {
        self.policy = a.policy;
        let end = (a.first + a.count) as usize;
        if self.buffers.len() < end {
            self.buffers.resize_with(end, || None);
        }
        for i in a.first..a.first + a.count {
            let o = self.ep.import_object(Requested::Auto, Some(&self.own))?;
            self.buffers[i as usize] = Some(o);
        }
        Ok(())
    }

    /// The producer's policy.
    pub fn policy(&self) -> StreamPolicy {
        self.policy
    }

    /// The connection, for the application's own messages after the end of the stream; the
    /// buffers are dropped.
    pub fn into_endpoint(self) -> Endpoint {
        self.ep
    }

    /// The buffer at pool index `index`.
    pub fn buffer(&self, index: u32) -> Option<&Object> {
        self.buffers.get(index as usize)?.as_ref()
    }

    /// How many buffers this consumer has.
    pub fn buffers(&self) -> usize {
        self.buffers.iter().filter(|b| b.is_some()).count()
    }

    /// The endpoint (for poll loops).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.ep.as_fd()
    }

    /// The next frame, waiting at most `timeout` (`None`: until one comes); buffers the pool
    /// grew or freed on the way are taken in. [`Error::Timeout`] past it,
    /// [`Error::Disconnected`] when the producer has gone.
    pub fn next_frame(&mut self, timeout: Option<Duration>) -> Result<Frame> {
        self.next(timeout)?.ok_or(Error::Disconnected)
    }

    /// [`Consumer::next_frame`], answering `None` when the producer ended the stream
    /// ([`Producer::end`]); [`Consumer::into_endpoint`] then gives the connection back.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<Frame>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut left = timeout;
        loop {
            // Without a timeout the receive itself blocks: no poll needed.
            if left.is_some()
                && !poll_ready(self.ep.as_fd(), PollFlags::IN, left, "stream consumer")?
            {
                return Err(Error::Timeout {
                    what: format!("{}: a frame", self.ep.name()),
                    after: timeout.unwrap_or_default(),
                });
            }
            let r = self.ep.recv()?;
            match r.message {
                Message::StreamFrame(f) => {
                    if self.buffer(f.index).is_none() {
                        return Err(Error::Ipc(format!(
                            "{}: a frame in buffer {}, which this consumer does not have",
                            self.ep.name(),
                            f.index
                        )));
                    }
                    let fence = match r.fds.into_iter().next() {
                        Some(fd) => Some(Fence::from_sync_file(fd)?),
                        None => None,
                    };
                    self.held += 1;
                    return Ok(Some(Frame {
                        index: f.index,
                        seq: f.seq,
                        timestamp_ns: f.timestamp_ns,
                        fence,
                    }));
                }
                Message::StreamEnd => return Ok(None),
                Message::StreamAttach(a) => self.receive_buffers(a)?,
                Message::StreamRetire(i) => {
                    if let Some(b) = self.buffers.get_mut(i as usize) {
                        *b = None;
                    }
                }
                _ => return Err(crate::ipc::ops::unexpected(&self.ep, Kind::StreamFrame, r)),
            }
            left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        }
    }

    /// Releases `frame`, with the fence that signals when this consumer's access ends (the
    /// buffer stays out of the pool until then), if any.
    pub fn release(&mut self, frame: &Frame, fence: Option<&Fence>) -> Result<()> {
        self.release_index(frame.index, frame.seq, fence)
    }

    /// [`Consumer::release`] by index and sequence number.
    pub fn release_index(&mut self, index: u32, seq: u64, fence: Option<&Fence>) -> Result<()> {
        let rel = StreamRelease {
            index,
            fence: fence.is_some(),
            seq,
        };
        match fence {
            Some(f) => self
                .ep
                .send_ref(MessageRef::StreamRelease(rel), &[f.as_fd()])?,
            None => self.ep.send_ref(MessageRef::StreamRelease(rel), &[])?,
        }
        self.held = self.held.saturating_sub(1);
        Ok(())
    }
}
