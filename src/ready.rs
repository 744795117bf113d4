//! The ready queue: callbacks that run in the current or next iteration.
//!
//! `call_soon` closures and timer closures live in one slab of [`Slot`]s, each
//! with a unique `id`. The queue holds `(key, id)` pairs, not closures, so that a
//! [`Handle`](crate::Handle) can cancel in O(1): it removes its slot at once (dropping
//! the closure and what it captured) and the queue entry, finding a slot with
//! another id or none, is skipped when its turn comes.

use std::collections::VecDeque;
use std::panic::Location;
use std::rc::Rc;

use slab::Slab;

use crate::Loop;
use crate::remote::Queued;

/// A one-shot callback.
pub(crate) type Callback = Box<dyn FnOnce(&Loop)>;

/// Work that an upper layer (a task step) queues without boxing a closure per
/// schedule: the same `Rc` is queued again and again.
pub(crate) trait Runnable {
    /// Runs on the loop thread, from the run phase.
    fn run(self: Rc<Self>, lp: &Loop);
    /// Where this work was created, for error reports and debug mode.
    fn location(&self) -> &'static Location<'static>;
    /// Asks the work to cancel itself (a task: at its next step).
    fn cancel(&self) -> bool;
    /// The loop is closing or dropped: release what the work holds (a task drops
    /// its future), without running anything.
    fn shutdown(&self);
}

/// Names a registered [`Runnable`]; `Send`, so a waker may carry it to other threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunnableId {
    key: u32,
    id: u64,
}

/// Live runnables (tasks) by id, so that a `Send` waker can find its `!Send` task
/// again on the loop thread. A runnable is registered from creation until it is done.
#[derive(Default)]
pub(crate) struct Runnables {
    slab: Slab<(u64, Rc<dyn Runnable>)>,
    next_id: u64,
}

impl Runnables {
    /// The id the next [`insert`](Runnables::insert) will get.
    pub(crate) fn next(&self) -> RunnableId {
        RunnableId {
            key: key_u32(self.slab.vacant_key()),
            id: self.next_id,
        }
    }

    /// Registers `r` under `rid`, which must come from [`next`](Runnables::next) with
    /// no insert in between.
    pub(crate) fn insert(&mut self, rid: RunnableId, r: Rc<dyn Runnable>) {
        assert_eq!(self.next(), rid, "runnable id reserved out of order");
        self.next_id += 1;
        self.slab.insert((rid.id, r));
    }

    /// The runnable `rid`, if still registered.
    pub(crate) fn get(&self, rid: RunnableId) -> Option<&Rc<dyn Runnable>> {
        match self.slab.get(rid.key as usize) {
            Some((id, r)) if *id == rid.id => Some(r),
            _ => None,
        }
    }

    /// Unregisters `rid`.
    pub(crate) fn remove(&mut self, rid: RunnableId) -> Option<Rc<dyn Runnable>> {
        self.get(rid)?;
        Some(self.slab.remove(rid.key as usize).1)
    }

    /// Unregisters everything.
    pub(crate) fn drain(&mut self) -> Vec<Rc<dyn Runnable>> {
        self.slab.drain().map(|(_, r)| r).collect()
    }
}

/// A scheduled callback.
pub(crate) struct Slot {
    /// Unique for the loop's lifetime; a handle or queue entry naming another id
    /// refers to a callback that already ran or was cancelled.
    pub(crate) id: u64,
    pub(crate) callback: Callback,
    pub(crate) location: &'static Location<'static>,
    /// True while the slot is referenced from the timer heap rather than the queue
    /// (a cancel then leaves a stale heap entry behind to be counted).
    pub(crate) in_heap: bool,
}

/// One entry of the ready queue.
pub(crate) enum Entry {
    /// A `call_soon` callback or an expired timer, in the callback slab.
    Call { key: u32, id: u64 },
    /// A reader (`write == false`) or writer of the I/O registration `key`.
    Io { key: u32, id: u64, write: bool },
    /// An event of a library-owned source (a socket).
    Source {
        key: u32,
        generation: u32,
        readiness: u8,
    },
    /// A threadsafe call, drained from the remote queue or sent on the loop thread.
    Remote(Queued),
    /// Upper-layer work (a task step).
    Runnable(Rc<dyn Runnable>),
    /// Time to call the hook of the current run (`run_until_complete` polls its
    /// future there, in FIFO order with the callbacks).
    Main,
}

/// The callback slab and the FIFO of entries to run.
pub(crate) struct Ready {
    slots: Slab<Slot>,
    queue: VecDeque<Entry>,
    next_id: u64,
}

impl Ready {
    pub(crate) fn new() -> Ready {
        Ready {
            slots: Slab::new(),
            queue: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Stores a callback without queueing it (a timer); returns its `(key, id)`.
    pub(crate) fn insert(
        &mut self,
        callback: Callback,
        location: &'static Location<'static>,
        in_heap: bool,
    ) -> (u32, u64) {
        let id = self.next_id;
        self.next_id += 1;
        let key = self.slots.insert(Slot {
            id,
            callback,
            location,
            in_heap,
        });
        (key_u32(key), id)
    }

    /// Stores a callback and queues it at the back.
    pub(crate) fn push_call(
        &mut self,
        callback: Callback,
        location: &'static Location<'static>,
    ) -> (u32, u64) {
        let (key, id) = self.insert(callback, location, false);
        self.queue.push_back(Entry::Call { key, id });
        (key, id)
    }

    /// Queues an entry at the back.
    pub(crate) fn push(&mut self, entry: Entry) {
        self.queue.push_back(entry);
    }

    /// Moves a stored callback (an expired timer) to the back of the queue. Returns
    /// false if it is gone (cancelled).
    pub(crate) fn queue_stored(&mut self, key: u32, id: u64) -> bool {
        match self.slots.get_mut(key as usize) {
            Some(slot) if slot.id == id => {
                slot.in_heap = false;
                self.queue.push_back(Entry::Call { key, id });
                true
            }
            _ => false,
        }
    }

    /// Whether the callback `(key, id)` is still pending.
    pub(crate) fn contains(&self, key: u32, id: u64) -> bool {
        matches!(self.slots.get(key as usize), Some(s) if s.id == id)
    }

    /// Removes the callback `(key, id)` if still pending. The caller drops it after
    /// releasing its borrow of the queue (a closure's `Drop` may use the loop).
    pub(crate) fn remove(&mut self, key: u32, id: u64) -> Option<Slot> {
        if self.contains(key, id) {
            Some(self.slots.remove(key as usize))
        } else {
            None
        }
    }

    /// The next entry, with its callback taken out of the slab for `Call` entries.
    /// Cancelled `Call` entries come back as `Popped::Skip`.
    pub(crate) fn pop(&mut self) -> Option<Popped> {
        Some(match self.queue.pop_front()? {
            Entry::Call { key, id } => match self.remove(key, id) {
                Some(slot) => Popped::Call(slot),
                None => Popped::Skip,
            },
            other => Popped::Other(other),
        })
    }

    /// How many entries are queued (cancelled ones included).
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Empties the queue and the slab, handing everything back to be dropped outside
    /// the caller's borrow.
    pub(crate) fn drain_all(&mut self) -> (VecDeque<Entry>, Slab<Slot>) {
        (
            std::mem::take(&mut self.queue),
            std::mem::take(&mut self.slots),
        )
    }
}

/// What [`Ready::pop`] found.
pub(crate) enum Popped {
    Call(Slot),
    Skip,
    Other(Entry),
}

/// Slab keys are stored as `u32` to keep queue entries small.
pub(crate) fn key_u32(key: usize) -> u32 {
    u32::try_from(key).expect("more than 4 billion callbacks pending at once")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Callback {
        Box::new(|_| {})
    }

    #[test]
    fn fifo_and_cancel_skips() {
        let mut r = Ready::new();
        let here = Location::caller();
        let (k1, i1) = r.push_call(noop(), here);
        let (k2, i2) = r.push_call(noop(), here);
        assert!(r.remove(k1, i1).is_some());
        assert!(r.remove(k1, i1).is_none(), "a second remove finds nothing");
        assert!(matches!(r.pop(), Some(Popped::Skip)));
        match r.pop() {
            Some(Popped::Call(slot)) => assert_eq!((slot.id, k2), (i2, k2)),
            _ => panic!("expected the second callback"),
        }
        assert!(r.pop().is_none());
    }

    #[test]
    fn reused_key_does_not_match_old_id() {
        let mut r = Ready::new();
        let here = Location::caller();
        let (k1, i1) = r.insert(noop(), here, true);
        r.remove(k1, i1);
        let (k2, i2) = r.insert(noop(), here, true);
        assert_eq!(k1, k2, "the slab reuses the key");
        assert_ne!(i1, i2);
        assert!(!r.queue_stored(k1, i1), "a stale id is not queued");
        assert!(r.queue_stored(k2, i2));
    }
}
