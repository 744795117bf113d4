//! The timer store: deadlines ordered by time, then by scheduling order.
//!
//! Callbacks live in a slab under `(key, id)`; a binary min-heap orders
//! `(when, id, key)`. `when` is in nanoseconds of the loop's clock; `id` grows with
//! every timer, so equal deadlines pop in the order they were scheduled. Cancelling
//! removes the slot in O(1) (dropping the closure at once) and leaves a *stale* heap
//! entry behind, skipped when it reaches the top. Stale entries are counted, and the
//! heap is rebuilt without them once they are more than half of it, so endless
//! schedule-and-cancel cycles keep memory flat.
//!
//! A timer that fires leaves the heap but keeps its slot until its callback is taken
//! to run, so that it can still be cancelled from the ready queue.
//!
//! Pure data structure: every operation takes the current time as an argument.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::panic::Location;

use slab::Slab;

use crate::ready::{Callback, key_u32};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct TimerEntry {
    when: u64,
    id: u64,
    key: u32,
}

impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap and we want the earliest on top.
        (other.when, other.id).cmp(&(self.when, self.id))
    }
}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Below this size the heap is never compacted: rebuilding would cost more than
/// the stale entries do.
const COMPACT_MIN: usize = 64;

/// A scheduled timer's callback.
pub(crate) struct TimerSlot {
    id: u64,
    pub(crate) callback: Callback,
    pub(crate) location: &'static Location<'static>,
    /// Still in the heap (not yet fired): a cancel leaves a stale heap entry.
    pub(crate) in_heap: bool,
}

/// The timer store. See the module docs.
pub(crate) struct Timers {
    slots: Slab<TimerSlot>,
    heap: BinaryHeap<TimerEntry>,
    /// How many heap entries refer to cancelled timers. Invariant: `stale <= heap.len()`.
    stale: usize,
    next_id: u64,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            slots: Slab::new(),
            heap: BinaryHeap::new(),
            stale: 0,
            next_id: 0,
        }
    }

    /// Adds a timer due at `when`; returns its `(key, id)`.
    pub(crate) fn insert(
        &mut self,
        when: u64,
        callback: Callback,
        location: &'static Location<'static>,
    ) -> (u32, u64) {
        let id = self.next_id;
        self.next_id += 1;
        let key = key_u32(self.slots.insert(TimerSlot {
            id,
            callback,
            location,
            in_heap: true,
        }));
        self.heap.push(TimerEntry { when, id, key });
        (key, id)
    }

    fn is_live(slots: &Slab<TimerSlot>, key: u32, id: u64) -> bool {
        matches!(slots.get(key as usize), Some(s) if s.id == id)
    }

    /// Cancels the timer `(key, id)` if it has not run: its slot is handed back for
    /// the caller to drop outside its borrow. Returns `None` if it already ran or was
    /// cancelled.
    pub(crate) fn cancel(&mut self, key: u32, id: u64) -> Option<TimerSlot> {
        if !Self::is_live(&self.slots, key, id) {
            return None;
        }
        let slot = self.slots.remove(key as usize);
        if slot.in_heap {
            self.stale += 1;
            if self.heap.len() >= COMPACT_MIN && self.stale * 2 > self.heap.len() {
                let slots = &self.slots;
                self.heap.retain(|e| Self::is_live(slots, e.key, e.id));
                self.stale = 0;
            }
        }
        Some(slot)
    }

    /// Takes a fired timer's callback out to run it.
    pub(crate) fn take(&mut self, key: u32, id: u64) -> Option<TimerSlot> {
        if Self::is_live(&self.slots, key, id) {
            Some(self.slots.remove(key as usize))
        } else {
            None
        }
    }

    /// Pops every live timer due at `now` (`when <= now`) in order, handing each
    /// `(key, id)` to `fire`. Returns how many fired.
    pub(crate) fn pop_expired(&mut self, now: u64, mut fire: impl FnMut(u32, u64)) -> u64 {
        let mut fired = 0;
        while let Some(top) = self.heap.peek() {
            if top.when > now {
                break;
            }
            let e = self.heap.pop().expect("peeked");
            match self.slots.get_mut(e.key as usize) {
                Some(slot) if slot.id == e.id => {
                    slot.in_heap = false;
                    fire(e.key, e.id);
                    fired += 1;
                }
                _ => self.stale = self.stale.saturating_sub(1),
            }
        }
        fired
    }

    /// The deadline of the earliest live timer, dropping stale entries from the top.
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        while let Some(top) = self.heap.peek() {
            if Self::is_live(&self.slots, top.key, top.id) {
                return Some(top.when);
            }
            self.heap.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        None
    }

    /// Whether no timer waits in the heap (fired ones may still wait to run).
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Entries in the heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Forgets every timer, handing the callbacks back to be dropped by the caller.
    pub(crate) fn clear(&mut self) -> Slab<TimerSlot> {
        self.heap.clear();
        self.stale = 0;
        std::mem::take(&mut self.slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Callback {
        Callback::new(|_| {})
    }

    fn at(t: &mut Timers, when: u64) -> (u32, u64) {
        t.insert(when, noop(), Location::caller())
    }

    fn expired(t: &mut Timers, now: u64) -> Vec<u64> {
        let mut got = vec![];
        t.pop_expired(now, |_, id| got.push(id));
        got
    }

    #[test]
    fn pops_in_deadline_then_schedule_order() {
        let mut t = Timers::new();
        let a = at(&mut t, 20).1;
        let b = at(&mut t, 10).1;
        let c = at(&mut t, 20).1;
        let d = at(&mut t, 10).1;
        assert_eq!(expired(&mut t, 15), vec![b, d]);
        assert_eq!(expired(&mut t, 20), vec![a, c]);
        assert!(t.is_empty());
    }

    #[test]
    fn never_pops_before_deadline() {
        let mut t = Timers::new();
        at(&mut t, 100);
        assert!(expired(&mut t, 99).is_empty());
        assert_eq!(t.next_deadline(), Some(100));
    }

    #[test]
    fn next_deadline_skips_cancelled() {
        let mut t = Timers::new();
        let (k, i) = at(&mut t, 5);
        at(&mut t, 9);
        assert!(t.cancel(k, i).is_some());
        assert!(t.cancel(k, i).is_none(), "twice is a no-op");
        assert_eq!(t.next_deadline(), Some(9));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_fired_timer_can_be_cancelled_until_taken() {
        let mut t = Timers::new();
        let (k, i) = at(&mut t, 1);
        assert_eq!(expired(&mut t, 1), vec![i]);
        assert!(t.cancel(k, i).is_some());
        assert!(t.take(k, i).is_none());
    }

    #[test]
    fn schedule_cancel_cycles_keep_memory_flat() {
        let mut t = Timers::new();
        let keep: Vec<_> = (0..10).map(|i| at(&mut t, 5 + i)).collect();
        for n in 0..1_000_000u64 {
            let (k, i) = at(&mut t, 1_000 + n);
            t.cancel(k, i);
            assert!(t.len() <= 2 * COMPACT_MIN + 20, "heap grew to {}", t.len());
        }
        assert_eq!(expired(&mut t, 100).len(), keep.len());
    }
}
