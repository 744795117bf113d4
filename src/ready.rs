//! The ready queue: what runs in the current or next iteration.
//!
//! A FIFO of [`Entry`]s. A `call_soon` closure is stored in its entry itself (no
//! side table, no allocation beyond the closure's box), and every entry pushed gets
//! the next *sequence number*: entry `i` of the queue has sequence `head + i`. A
//! [`Handle`](crate::Handle) keeps its sequence number, so cancelling is O(1): if the
//! entry is still queued it sits at index `seq - head`, and its closure is taken out
//! (and dropped at once) leaving a `Cancelled` entry that the run phase skips.

use std::collections::VecDeque;
use std::panic::Location;
use std::rc::Rc;

use slab::Slab;

use crate::Loop;
use crate::capacity::{Peak, is_oversized};
use crate::remote::Queued;
use crate::token::Token;

pub(crate) use crate::callback::Callback;

/// Work that an upper layer (a task step) queues without boxing a closure per
/// schedule: the same `Rc` is queued again and again.
pub(crate) trait Runnable {
    /// Runs on the loop thread, from the run phase.
    fn run(self: Rc<Self>, lp: &Loop);
    /// Where this work was created, for error reports and debug mode.
    fn location(&self) -> &'static Location<'static>;
    /// Asks the work to cancel itself (a task: at its next step).
    fn cancel(&self) -> bool;
    /// A wake: returns true if a step must be queued (false if one already is).
    fn wake(&self) -> bool;
    /// The loop is closing or dropped: release what the work holds (a task drops
    /// its future and its done-callbacks), without running anything. Each user value
    /// is dropped inside its own `catch_unwind`, and a panic from its destructor is
    /// handed to `report` (which reports it to the exception handler, or logs it).
    fn shutdown(&self, report: &mut dyn FnMut(Box<dyn std::any::Any + Send>));
    /// Whether the work is finished (a task: done, it will never step again).
    fn is_done(&self) -> bool;
}

/// Names a registered [`Runnable`]; `Send`, so a waker may carry it to other threads.
///
/// Eight bytes (every task keeps one): the slot's key and a 32-bit id, counted per
/// loop with wrap-around. A stale id names nothing, unless the same slot has been
/// taken by the runnable registered exactly 2^32 registrations later; lookups by
/// full id (a cancel from another thread, a shutdown) are made while the id is fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunnableId {
    key: u32,
    id: u32,
}

/// Bits of a packed id (see [`RunnableId::pack`]).
pub(crate) const KEY_BITS: u32 = 26;
const GEN_BITS: u32 = 22;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

impl RunnableId {
    /// No id: a runnable not (or not yet) registered. No slot has this key (keys stay
    /// below 2^26), so no lookup finds anything under it.
    pub(crate) const NONE: RunnableId = RunnableId {
        key: u32::MAX,
        id: u32::MAX,
    };

    /// Whether this names a registration (is not [`NONE`](RunnableId::NONE)).
    #[inline]
    pub(crate) fn is_some(self) -> bool {
        self.key != u32::MAX
    }

    /// The slot of the runnable in the loop's table (reused once it is done).
    pub(crate) fn key(self) -> u32 {
        self.key
    }

    #[cfg(test)]
    pub(crate) fn for_test(key: u32, id: u32) -> RunnableId {
        RunnableId { key, id }
    }

    /// Packs the loop's id, the key and the low bits of the id in one word, for a
    /// waker's data. Two runnables of one slot whose ids differ by a multiple of 2^22
    /// pack alike: a stale waker may then wake the newer one, a spurious wake, which
    /// every future must tolerate.
    pub(crate) fn pack(self, loop_id: u16) -> u64 {
        (u64::from(loop_id) << (KEY_BITS + GEN_BITS))
            | (u64::from(self.key) << GEN_BITS)
            | u64::from(self.id & GEN_MASK)
    }

    /// The loop id and the packed `(key, low id bits)` of a word made by `pack`.
    pub(crate) fn unpack(word: u64) -> (u16, Packed) {
        let loop_id = (word >> (KEY_BITS + GEN_BITS)) as u16;
        let key = ((word >> GEN_BITS) & ((1 << KEY_BITS) - 1)) as u32;
        (
            loop_id,
            Packed {
                key,
                low: (word as u32) & GEN_MASK,
            },
        )
    }
}

/// A runnable named by a waker: its key and the low bits of its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Packed {
    key: u32,
    low: u32,
}

impl Packed {
    /// The runnable's slot.
    pub(crate) fn key(self) -> u32 {
        self.key
    }
}

/// Live runnables (tasks) by id, so that a `Send` waker can find its `!Send` task
/// again on the loop thread. A task is registered once anything may need to find it
/// by id (see `task.rs`: its waker escaped its first poll, that poll returned
/// `Pending`, or the crate asked for its id) until it is done; before its first step
/// an unregistered task is reachable through its queued step.
#[derive(Default)]
pub(crate) struct Runnables {
    slab: Slab<(u32, Rc<dyn Runnable>)>,
    next_id: u32,
}

impl Runnables {
    /// The id the next [`insert`](Runnables::insert) will get.
    ///
    /// # Panics
    /// With more than 2^26 (67 million) runnables alive at once.
    pub(crate) fn next(&self) -> RunnableId {
        let key = key_u32(self.slab.vacant_key());
        assert!(
            key < (1 << KEY_BITS),
            "more than 67 million tasks alive on one loop"
        );
        RunnableId {
            key,
            id: self.next_id,
        }
    }

    /// Registers `r` under `rid`, which must come from [`next`](Runnables::next) with
    /// no insert in between.
    pub(crate) fn insert(&mut self, rid: RunnableId, r: Rc<dyn Runnable>) {
        assert_eq!(self.next(), rid, "runnable id reserved out of order");
        self.next_id = self.next_id.wrapping_add(1);
        self.slab.insert((rid.id, r));
    }

    /// The runnable `rid`, if still registered.
    pub(crate) fn get(&self, rid: RunnableId) -> Option<&Rc<dyn Runnable>> {
        match self.slab.get(rid.key as usize) {
            Some((id, r)) if *id == rid.id => Some(r),
            _ => None,
        }
    }

    /// The runnable a waker names, if still registered (or a newer one that packs
    /// alike: a spurious wake).
    pub(crate) fn get_packed(&self, p: Packed) -> Option<&Rc<dyn Runnable>> {
        match self.slab.get(p.key as usize) {
            Some((id, r)) if *id & GEN_MASK == p.low => Some(r),
            _ => None,
        }
    }

    /// The runnable in the slot a waker names, whichever it is (the one the waker
    /// was made for, or a newer one: a spurious wake).
    pub(crate) fn get_slot(&self, p: Packed) -> Option<&Rc<dyn Runnable>> {
        self.slab.get(p.key as usize).map(|(_, r)| r)
    }

    /// The ids of every registered runnable, in slot order.
    pub(crate) fn ids(&self) -> Vec<RunnableId> {
        self.slab
            .iter()
            .map(|(key, (id, _))| RunnableId {
                key: key_u32(key),
                id: *id,
            })
            .collect()
    }

    /// Unregisters `rid`.
    pub(crate) fn remove(&mut self, rid: RunnableId) -> Option<Rc<dyn Runnable>> {
        self.get(rid)?;
        let r = self.slab.remove(rid.key as usize).1;
        if self.slab.is_empty() {
            self.slab.clear(); // refill front to back (see `Timers::remove`)
        }
        Some(r)
    }

    /// Unregisters everything.
    pub(crate) fn drain(&mut self) -> Vec<Rc<dyn Runnable>> {
        self.slab.drain().map(|(_, r)| r).collect()
    }
}

/// One entry of the ready queue (32 bytes).
///
/// `repr(u64)`: a word-sized tag keeps every variant's fields word-aligned, so moving
/// an entry in and out of the queue is a few aligned word copies (a byte tag made
/// rustc copy from offset 1, and the reads that followed stalled on store forwarding).
#[repr(u64)]
pub(crate) enum Entry {
    /// A `call_soon` callback.
    Call {
        callback: Callback,
        location: &'static Location<'static>,
    },
    /// A `call_soon` callback cancelled while queued.
    Cancelled,
    /// An expired timer: its callback is in the timer store under `(key, id)`.
    Timer { key: u32, id: u64 },
    /// A reader (`write == false`) or writer of the I/O registration `key`.
    Io { key: u32, id: u64, write: bool },
    /// An event of a library-owned source (a socket).
    Source { token: Token, readiness: u8 },
    /// A threadsafe call, drained from the remote queue or sent on the loop thread.
    Remote(Queued),
    /// Upper-layer work (a task step).
    Runnable(Rc<dyn Runnable>),
    /// Time to call the hook of the current run (`run_until_complete` polls its
    /// future there, in FIFO order with the callbacks).
    Main,
}

impl Entry {
    /// Where the entry's work was scheduled, when the entry itself knows (for
    /// reports about dropping it).
    pub(crate) fn location(&self) -> Option<&'static Location<'static>> {
        match self {
            Entry::Call { location, .. } => Some(location),
            Entry::Runnable(r) => Some(r.location()),
            _ => None,
        }
    }
}

/// The FIFO of entries to run.
pub(crate) struct Ready {
    queue: VecDeque<Entry>,
    /// The sequence number of `queue[0]`. Invariant: the entry with sequence `s` is
    /// `queue[s - head]` while `head <= s < head + queue.len()`, and has been popped
    /// when `s < head`.
    head: u64,
    /// The queue's length at the start of recent run phases, so that the room a
    /// burst needed is given back (see `crate::capacity`).
    peak: Peak,
}

impl Ready {
    pub(crate) fn new() -> Ready {
        Ready {
            queue: VecDeque::new(),
            head: 0,
            peak: Peak::default(),
        }
    }

    /// Queues an entry at the back; returns its sequence number.
    #[inline]
    pub(crate) fn push(&mut self, entry: Entry) -> u64 {
        let seq = self.head + self.queue.len() as u64;
        self.queue.push_back(entry);
        seq
    }

    /// Queues a step of `r` (an `Entry::Runnable`) at the back.
    #[inline(always)]
    pub(crate) fn push_runnable(&mut self, r: Rc<dyn Runnable>) {
        self.queue.push_back(Entry::Runnable(r));
    }

    /// Takes the callback of the `Call` entry `seq` out (with where it was
    /// scheduled), if it is still queued. The caller drops it after releasing its
    /// borrow of the queue (a closure's `Drop` may use the loop).
    pub(crate) fn cancel(&mut self, seq: u64) -> Option<(Callback, &'static Location<'static>)> {
        let i = usize::try_from(seq.checked_sub(self.head)?).ok()?;
        let entry = self.queue.get_mut(i)?;
        match std::mem::replace(entry, Entry::Cancelled) {
            Entry::Call { callback, location } => Some((callback, location)),
            other => {
                *entry = other;
                None
            }
        }
    }

    /// The next entry.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Entry> {
        let e = self.queue.pop_front()?;
        self.head += 1;
        Some(e)
    }

    /// How many entries are queued (cancelled ones included).
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The sequence number of the first entry still queued (the next one to pop).
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// The upper-layer work queued (task steps), in queue order.
    pub(crate) fn runnables(&self) -> impl Iterator<Item = Rc<dyn Runnable>> + '_ {
        self.queue.iter().filter_map(|e| match e {
            Entry::Runnable(r) => Some(r.clone()),
            _ => None,
        })
    }

    /// Empties the queue, handing the entries back to be dropped outside the caller's
    /// borrow (with its buffer: the queue keeps none).
    pub(crate) fn drain_all(&mut self) -> VecDeque<Entry> {
        self.head += self.queue.len() as u64;
        std::mem::take(&mut self.queue)
    }

    /// Records the present length as a use of the queue (once per run phase).
    #[inline]
    pub(crate) fn note_use(&mut self) {
        self.peak.note(self.queue.len());
    }

    /// Ends a window of use: gives back the room a past burst needed (entries and
    /// sequence numbers stay as they are).
    pub(crate) fn trim(&mut self) {
        if let Some(keep) = self
            .peak
            .end_window(self.queue.capacity(), self.queue.len())
        {
            self.queue.shrink_to(keep);
        }
    }

    /// Whether the queue holds room that [`trim`](Ready::trim) would give back if its
    /// use stays as it is now.
    pub(crate) fn is_oversized(&self) -> bool {
        is_oversized(self.queue.capacity(), self.queue.len())
    }

    /// Entries the queue has room for.
    pub(crate) fn capacity(&self) -> usize {
        self.queue.capacity()
    }
}

/// Slab keys are stored as `u32` to keep queue entries small.
pub(crate) fn key_u32(key: usize) -> u32 {
    u32::try_from(key).expect("more than 4 billion callbacks pending at once")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Entry {
        Entry::Call {
            callback: Callback::new(|_| {}),
            location: Location::caller(),
        }
    }

    #[test]
    fn fifo_with_sequence_numbers() {
        let mut r = Ready::new();
        assert_eq!(r.push(call()), 0);
        assert_eq!(r.push(Entry::Main), 1);
        assert!(matches!(r.pop(), Some(Entry::Call { .. })));
        assert_eq!(r.push(call()), 2);
        assert!(matches!(r.pop(), Some(Entry::Main)));
        assert!(matches!(r.pop(), Some(Entry::Call { .. })));
        assert!(r.pop().is_none());
    }

    #[test]
    fn cancel_takes_the_callback_once_and_only_while_queued() {
        let mut r = Ready::new();
        let a = r.push(call());
        let b = r.push(call());
        assert!(r.cancel(a).is_some());
        assert!(r.cancel(a).is_none(), "a second cancel finds nothing");
        assert!(matches!(r.pop(), Some(Entry::Cancelled)));
        assert!(matches!(r.pop(), Some(Entry::Call { .. })));
        assert!(r.cancel(b).is_none(), "popped: too late to cancel");
        assert!(r.cancel(99).is_none(), "never pushed");
    }

    #[test]
    fn packed_ids_round_trip() {
        let rid = RunnableId {
            key: 12345,
            id: (7 << GEN_BITS) | 99,
        };
        let (loop_id, p) = RunnableId::unpack(rid.pack(513));
        assert_eq!(loop_id, 513);
        assert_eq!(
            p,
            Packed {
                key: 12345,
                low: 99
            }
        );
    }

    #[test]
    fn trimming_gives_back_a_bursts_room_and_keeps_sequence_numbers() {
        let mut r = Ready::new();
        for _ in 0..100_000 {
            r.push(Entry::Main);
        }
        r.note_use();
        let keep = r.push(call());
        while r.len() > 1 {
            r.pop();
        }
        assert!(r.capacity() >= 100_000);
        for _ in 0..3 {
            r.trim();
        }
        assert!(r.capacity() <= crate::capacity::FLOOR, "{}", r.capacity());
        assert!(r.cancel(keep).is_some(), "the queued entry is still found");
    }

    #[test]
    fn cancel_leaves_other_kinds_alone() {
        let mut r = Ready::new();
        let m = r.push(Entry::Main);
        assert!(r.cancel(m).is_none());
        assert!(matches!(r.pop(), Some(Entry::Main)));
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn entry_is_four_words() {
        assert_eq!(std::mem::size_of::<super::Entry>(), 32);
    }
}
