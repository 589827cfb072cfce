//! A pool of buffers of one reconciled list, acquired and released without allocating.
//!
//! A buffer is free again only when every holder (the producer, each consumer it was posted to)
//! has released it and every fence released with it has signalled: [`Pool::try_acquire`] never
//! hands out a buffer with a pending fence. The pool grows up to a bound (one allocation, named
//! `<list name>-<index>`, only when no buffer is free) and shrinks when idle
//! ([`Pool::shrink_idle`]).

use super::fence::Fence;
use crate::error::{Error, Result};
use crate::object::Object;
use crate::reconcile::Reconciled;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most fences one buffer carries at once (one per consumer release and the producer's own);
/// a release beyond it merges nothing and is refused.
pub const MAX_FENCES: usize = 16;

#[derive(Debug)]
struct Slot {
    object: Option<Object>,
    holders: u32,
    fences: Vec<Fence>,
    idle_since: Instant,
    in_free: bool,
}

/// A pool of objects from one reconciled list.
#[derive(Debug)]
pub struct Pool {
    list: Arc<Reconciled>,
    name: String,
    slots: Vec<Slot>,
    free: VecDeque<u32>,
    max: usize,
    live: usize,
    added: Vec<u32>,
}

impl Pool {
    /// A pool of `initial` buffers of `list`, growing to at most `max`, named after the list
    /// (`<name>-<index>`).
    pub fn new(list: &Arc<Reconciled>, initial: usize, max: usize) -> Result<Pool> {
        Pool::with_name(list, list.derived_name(), initial, max)
    }

    /// [`Pool::new`] with buffers named `<name>-<index>`.
    pub fn with_name(
        list: &Arc<Reconciled>,
        name: &str,
        initial: usize,
        max: usize,
    ) -> Result<Pool> {
        if max == 0 || initial > max || max > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "a pool of {initial} buffers growing to {max}: need 1 <= max and initial <= max"
            )));
        }
        let mut p = Pool {
            list: list.clone(),
            name: name.to_owned(),
            slots: Vec::with_capacity(max),
            free: VecDeque::with_capacity(max),
            max,
            live: 0,
            added: Vec::with_capacity(max),
        };
        for _ in 0..initial {
            p.grow()?;
        }
        Ok(p)
    }

    fn grow(&mut self) -> Result<u32> {
        let i = match self.slots.iter().position(|s| s.object.is_none()) {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    object: None,
                    holders: 0,
                    fences: Vec::with_capacity(MAX_FENCES),
                    idle_since: Instant::now(),
                    in_free: false,
                });
                self.slots.len() - 1
            }
        };
        let name = format!("{}-{i}", self.name);
        let obj = Object::allocator(&self.list).name(&name).allocate()?;
        let s = &mut self.slots[i];
        s.object = Some(obj);
        s.holders = 0;
        s.idle_since = Instant::now();
        s.in_free = true;
        self.free.push_back(i as u32);
        self.live += 1;
        self.added.push(i as u32);
        Ok(i as u32)
    }

    /// The reconciled list every buffer was allocated for.
    pub fn list(&self) -> &Arc<Reconciled> {
        &self.list
    }

    /// How many buffers exist now.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the pool has no buffer.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The bound it grows to.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The highest index + 1 (indices of freed buffers are reused).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The buffer at `index`, if it exists.
    pub fn get(&self, index: u32) -> Option<&Object> {
        self.slots.get(index as usize)?.object.as_ref()
    }

    /// The buffer at `index`, mutable (to map it for writing), if it exists.
    pub fn get_mut(&mut self, index: u32) -> Option<&mut Object> {
        self.slots.get_mut(index as usize)?.object.as_mut()
    }

    /// The indices of the buffers that exist.
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.object.is_some())
            .map(|(i, _)| i as u32)
    }

    /// How many holders buffer `index` has.
    pub fn holders(&self, index: u32) -> u32 {
        self.slots.get(index as usize).map_or(0, |s| s.holders)
    }

    /// A free buffer whose fences have all signalled, held once by the caller; `None` when there
    /// is none and the pool is at its bound. Grows the pool (one allocation) when no buffer is
    /// free and it is below the bound. Signalled fences are dropped on the way. No heap
    /// allocation when a buffer is free.
    pub fn try_acquire(&mut self) -> Result<Option<u32>> {
        for _ in 0..self.free.len() {
            let Some(i) = self.free.pop_front() else {
                break;
            };
            let s = &mut self.slots[i as usize];
            if s.object.is_none() {
                s.in_free = false;
                continue;
            }
            if fences_signalled(&mut s.fences)? {
                s.in_free = false;
                s.holders = 1;
                return Ok(Some(i));
            }
            self.free.push_back(i);
        }
        if self.live < self.max {
            let i = self.grow()?;
            let popped = self.free.pop_back();
            debug_assert_eq!(popped, Some(i));
            let s = &mut self.slots[i as usize];
            s.in_free = false;
            s.holders = 1;
            return Ok(Some(i));
        }
        Ok(None)
    }

    /// [`Pool::try_acquire`], waiting at most `timeout` for a fence of a free buffer to signal;
    /// [`Error::Timeout`] when none did (or no buffer is free at all: only a release can free
    /// one, which a stream's producer waits for itself).
    pub fn acquire(&mut self, timeout: Duration) -> Result<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.try_acquire()? {
                return Ok(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.wait_free_fence(left)? {
                return Err(Error::Timeout {
                    what: format!("pool {}: a free buffer", self.name),
                    after: timeout,
                });
            }
        }
    }

    /// Waits at most `timeout` for the first pending fence of a free buffer; `false` when no
    /// free buffer has one or it did not signal in time.
    pub fn wait_free_fence(&self, timeout: Duration) -> Result<bool> {
        for &i in &self.free {
            if let Some(f) = self.slots[i as usize].fences.first() {
                return match f.wait(timeout) {
                    Ok(()) => Ok(true),
                    Err(Error::Timeout { .. }) => Ok(false),
                    Err(e) => Err(e),
                };
            }
        }
        Ok(false)
    }

    /// One more holder of buffer `index` (posting it to a consumer).
    pub fn hold(&mut self, index: u32) -> Result<()> {
        let s = self.slot(index)?;
        if s.holders == 0 {
            return Err(Error::InvalidArgument(format!(
                "buffer {index} is free: acquire it before posting it"
            )));
        }
        s.holders += 1;
        Ok(())
    }

    /// One holder of buffer `index` releases it, with the fence its last access signals (the
    /// buffer stays out of the free list until that fence has signalled). When it was the last
    /// holder the buffer goes back to the free list.
    pub fn release(&mut self, index: u32, fence: Option<Fence>) -> Result<()> {
        let s = self.slot(index)?;
        if s.holders == 0 {
            return Err(Error::InvalidArgument(format!(
                "buffer {index} released more often than held"
            )));
        }
        if let Some(f) = fence {
            if s.fences.len() == MAX_FENCES {
                // Keep the pool's promise: drop the fences that have signalled, else merge.
                fences_signalled(&mut s.fences)?;
            }
            if s.fences.len() == MAX_FENCES {
                let last = s.fences.pop().expect("MAX_FENCES > 0");
                s.fences.push(last.merge(&f, "unibuf-pool")?);
            } else {
                s.fences.push(f);
            }
        }
        s.holders -= 1;
        if s.holders == 0 {
            s.idle_since = Instant::now();
            if !s.in_free {
                s.in_free = true;
                self.free.push_back(index);
            }
        }
        Ok(())
    }

    fn slot(&mut self, index: u32) -> Result<&mut Slot> {
        match self.slots.get_mut(index as usize) {
            Some(s) if s.object.is_some() => Ok(s),
            _ => Err(Error::InvalidArgument(format!(
                "no buffer {index} in pool {}",
                self.name
            ))),
        }
    }

    /// Frees free buffers idle for at least `idle` (fences signalled), keeping at least `keep`
    /// buffers; answers the indices freed.
    pub fn shrink_idle(&mut self, idle: Duration, keep: usize) -> Result<Vec<u32>> {
        let now = Instant::now();
        let mut freed = Vec::new();
        for i in 0..self.slots.len() {
            if self.live <= keep {
                break;
            }
            let s = &mut self.slots[i];
            if s.object.is_some()
                && s.holders == 0
                && now.duration_since(s.idle_since) >= idle
                && fences_signalled(&mut s.fences)?
            {
                s.object = None;
                self.live -= 1;
                freed.push(i as u32);
            }
        }
        self.free
            .retain(|&i| self.slots[i as usize].object.is_some());
        for &i in &freed {
            self.slots[i as usize].in_free = false;
        }
        Ok(freed)
    }

    /// Allocates one more buffer now (below the bound), free; answers its index.
    pub fn add(&mut self) -> Result<u32> {
        if self.live >= self.max {
            return Err(Error::LimitExceeded {
                what: format!("pool {}: buffers", self.name),
                asked: self.live as u64 + 1,
                limit: self.max as u64,
            });
        }
        self.grow()
    }

    /// The buffers allocated since the last call (by growth or [`Pool::add`]), in order; the
    /// ones made by [`Pool::new`] included on the first call.
    pub fn take_added(&mut self) -> impl Iterator<Item = u32> + '_ {
        self.added.drain(..)
    }

    /// How many buffers are free now (fences not looked at).
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
}

/// Drops the signalled fences of `fences`; `true` when none is left pending.
fn fences_signalled(fences: &mut Vec<Fence>) -> Result<bool> {
    let mut i = 0;
    while i < fences.len() {
        if fences[i].is_signalled()? {
            fences.swap_remove(i);
        } else {
            i += 1;
        }
    }
    Ok(fences.is_empty())
}
