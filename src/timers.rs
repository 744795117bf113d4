//! The timer store: deadlines ordered by time, then by scheduling order.
//!
//! Callbacks live in a slab under `(key, id)`; a binary min-heap orders
//! `(when, id, key)`. `when` is in nanoseconds of the loop's clock; `id` grows with
//! every timer, so equal deadlines pop in the order they were scheduled. Cancelling
//! removes the slot in O(1) (dropping the closure at once) and leaves a *stale* heap
//! entry behind, skipped when it reaches the top. Stale entries are counted, and the
//! heap is rebuilt without them once they are half of it or more, so endless
//! schedule-and-cancel cycles keep memory flat.
//!
//! A timer that fires leaves the heap but keeps its slot until its callback is taken
//! to run, so that it can still be cancelled from the ready queue.
//!
//! Memory: once use falls (a burst of timers fired or was cancelled), [`Timers::trim`]
//! gives the heap's room back and the slab's vacant tail (see `crate::capacity`). The
//! slab cannot shrink below its highest live key, since handles name slots by key.
//!
//! A deadline of [`NEVER`] (beyond the clock's range) is kept like any other, so that
//! its handle can cancel it, but it never pops (the clock never reads `NEVER`) and
//! [`Timers::next_deadline`] does not report it: nothing waits or jumps for it.
//!
//! Pure data structure: every operation takes the current time as an argument.

use std::panic::Location;

use slab::Slab;

use crate::capacity::{Peak, is_oversized};
use crate::clock::NEVER;
use crate::ready::{Callback, key_u32};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct TimerEntry {
    when: u64,
    id: u64,
    key: u32,
}

impl TimerEntry {
    /// Earlier deadline first; equal deadlines in scheduling order.
    #[inline]
    fn before(&self, other: &TimerEntry) -> bool {
        (self.when, self.id) < (other.when, other.id)
    }
}

/// A 4-ary min-heap of timer entries: half the depth of a binary heap, and the four
/// children of a node are adjacent, so a pop touches fewer cache lines (the heap of a
/// loop with 200,000 timers is megabytes).
#[derive(Default)]
struct QuadHeap {
    v: Vec<TimerEntry>,
}

impl QuadHeap {
    fn len(&self) -> usize {
        self.v.len()
    }

    fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    fn peek(&self) -> Option<&TimerEntry> {
        self.v.first()
    }

    fn capacity(&self) -> usize {
        self.v.capacity()
    }

    fn shrink_to(&mut self, n: usize) {
        self.v.shrink_to(n);
    }

    fn push(&mut self, e: TimerEntry) {
        let mut i = self.v.len();
        self.v.push(e);
        while i > 0 {
            let parent = (i - 1) / 4;
            if !e.before(&self.v[parent]) {
                break;
            }
            self.v[i] = self.v[parent];
            i = parent;
        }
        self.v[i] = e;
    }

    fn pop(&mut self) -> Option<TimerEntry> {
        let last = self.v.pop()?;
        if self.v.is_empty() {
            return Some(last);
        }
        let top = self.v[0];
        self.sift_down(0, last);
        Some(top)
    }

    /// Puts `e` at `i` (a hole) and moves it down to its place.
    fn sift_down(&mut self, mut i: usize, e: TimerEntry) {
        let n = self.v.len();
        loop {
            let first = 4 * i + 1;
            if first >= n {
                break;
            }
            let last = (first + 4).min(n);
            let mut best = first;
            for c in first + 1..last {
                if self.v[c].before(&self.v[best]) {
                    best = c;
                }
            }
            if !self.v[best].before(&e) {
                break;
            }
            self.v[i] = self.v[best];
            i = best;
        }
        self.v[i] = e;
    }

    /// Keeps the entries for which `keep` holds, and restores the heap order.
    fn retain(&mut self, keep: impl FnMut(&TimerEntry) -> bool) {
        self.v.retain(keep);
        for i in (0..self.v.len().div_ceil(4)).rev() {
            let e = self.v[i];
            self.sift_down(i, e);
        }
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

impl TimerSlot {
    /// The timer's id (unique in its store, growing with each timer).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

/// The timer store. See the module docs.
pub(crate) struct Timers {
    slots: Slab<TimerSlot>,
    heap: QuadHeap,
    /// How many heap entries refer to cancelled timers. Invariant: `stale <= heap.len()`.
    stale: usize,
    next_id: u64,
    /// Recent use of the slab and of the heap, for [`Timers::trim`].
    slot_peak: Peak,
    heap_peak: Peak,
    /// The live key that kept the last trim from shrinking the slab, and the slab's
    /// capacity then: until that key goes (or the slab grows), trying again cannot
    /// help, and the slab does not count as oversized.
    pinned_by: Option<(u32, usize)>,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            slots: Slab::new(),
            heap: QuadHeap::default(),
            stale: 0,
            next_id: 0,
            slot_peak: Peak::default(),
            heap_peak: Peak::default(),
            pinned_by: None,
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
        let slot = self.remove(key);
        if slot.in_heap {
            self.stale += 1;
            if self.heap.len() >= COMPACT_MIN && self.stale * 2 >= self.heap.len() {
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
            Some(self.remove(key))
        } else {
            None
        }
    }

    fn remove(&mut self, key: u32) -> TimerSlot {
        let slot = self.slots.remove(key as usize);
        if self.pinned_by.is_some_and(|(k, _)| k == key) {
            self.pinned_by = None;
        }
        if self.slots.is_empty() {
            // Forget the free list (its order is scattered): the next timers fill the
            // slab front to back, touching memory in order.
            self.slots.clear();
        }
        slot
    }

    /// Pops every live timer due at `now` (`when <= now`) in order, handing each
    /// `(key, id)` to `fire`. Returns how many fired. `now` is a clock reading, so
    /// less than [`NEVER`].
    pub(crate) fn pop_expired(&mut self, now: u64, mut fire: impl FnMut(u32, u64)) -> u64 {
        debug_assert!(now < NEVER, "a clock never reads NEVER");
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
    /// `None` if there is none, or only timers that never come due ([`NEVER`]: the
    /// earliest is the top, so every other is `NEVER` too).
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        while let Some(top) = self.heap.peek() {
            if Self::is_live(&self.slots, top.key, top.id) {
                return (top.when != NEVER).then_some(top.when);
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

    /// Records the present number of timers as a use (once per iteration).
    #[inline]
    pub(crate) fn note_use(&mut self) {
        self.slot_peak.note(self.slots.len());
        self.heap_peak.note(self.heap.len());
    }

    /// Ends a window of use: gives back the room a past burst of timers needed. The
    /// heap shrinks (after dropping its stale entries); the slab drops its vacant
    /// tail, down to its highest live key. Keys and ids stay valid.
    pub(crate) fn trim(&mut self) {
        if let Some(keep) = self
            .heap_peak
            .end_window(self.heap.capacity(), self.heap.len())
        {
            if self.stale > 0 {
                let slots = &self.slots;
                self.heap.retain(|e| Self::is_live(slots, e.key, e.id));
                self.stale = 0;
            }
            self.heap.shrink_to(keep);
        }
        let target = self
            .slot_peak
            .end_window(self.slots.capacity(), self.slots.len());
        if let Some(keep) = target
            && !self.slab_is_pinned()
        {
            if self.slots.is_empty() {
                self.slots = Slab::with_capacity(keep);
            } else {
                // Drops the vacant tail and, if there was one, relinks the vacant
                // slots lowest first, so that the new tail can empty in turn.
                self.slots.shrink_to_fit();
                if is_oversized(self.slots.capacity(), self.slots.len()) {
                    let top = self.slots.iter().next_back().map(|(k, _)| key_u32(k));
                    self.pinned_by = top.map(|k| (k, self.slots.capacity()));
                }
            }
        }
    }

    /// Whether the store holds room that [`trim`](Timers::trim) would give back if
    /// its use stays as it is now.
    pub(crate) fn is_oversized(&self) -> bool {
        is_oversized(self.heap.capacity(), self.heap.len())
            || (!self.slab_is_pinned() && is_oversized(self.slots.capacity(), self.slots.len()))
    }

    /// Whether the slab is as small as its highest live key lets it be.
    fn slab_is_pinned(&self) -> bool {
        self.pinned_by
            .is_some_and(|(_, capacity)| capacity == self.slots.capacity())
    }

    /// The slab's and the heap's capacities, in entries.
    pub(crate) fn capacities(&self) -> (usize, usize) {
        (self.slots.capacity(), self.heap.capacity())
    }

    /// Forgets every timer, handing the callbacks back to be dropped by the caller.
    /// The heap's buffer goes too.
    pub(crate) fn clear(&mut self) -> Slab<TimerSlot> {
        self.heap = QuadHeap::default();
        self.stale = 0;
        self.pinned_by = None;
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
    fn quad_heap_pops_sorted() {
        let mut h = QuadHeap::default();
        let mut x = 12345u64;
        let mut all = vec![];
        for id in 0..2000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let e = TimerEntry {
                when: x % 97,
                id,
                key: id as u32,
            };
            all.push(e);
            h.push(e);
        }
        h.retain(|e| e.id % 3 != 0);
        all.retain(|e| e.id % 3 != 0);
        all.sort_by_key(|e| (e.when, e.id));
        let mut got = vec![];
        while let Some(e) = h.pop() {
            got.push(e);
        }
        assert_eq!(got, all);
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
    fn a_never_deadline_is_not_reported_and_never_pops() {
        let mut t = Timers::new();
        at(&mut t, NEVER);
        at(&mut t, NEVER);
        assert_eq!(t.next_deadline(), None);
        assert!(expired(&mut t, NEVER - 1).is_empty());
        let (k, i) = at(&mut t, 7);
        assert_eq!(t.next_deadline(), Some(7));
        t.cancel(k, i);
        assert_eq!(t.next_deadline(), None);
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
    fn trim_gives_back_a_bursts_room_down_to_the_highest_live_key() {
        use crate::capacity::FLOOR;
        let mut t = Timers::new();
        let all: Vec<_> = (0..10_000).map(|i| at(&mut t, 1_000 + i)).collect();
        t.note_use();
        let (low, high) = (all[0], all[9_999]);
        for &(k, i) in &all[1..9_999] {
            t.cancel(k, i);
        }
        for _ in 0..3 {
            t.trim(); // the burst's window, then two quiet ones
        }
        let (slots, heap) = t.capacities();
        assert!(heap <= FLOOR, "heap kept {heap}");
        assert!(slots >= 10_000, "the highest live key pins the slab");
        assert!(!t.is_oversized(), "nothing more to give back for now");
        t.cancel(high.0, high.1);
        assert!(t.is_oversized());
        t.trim();
        assert!(t.capacities().0 <= FLOOR, "slab kept {}", t.capacities().0);
        assert_eq!(t.next_deadline(), Some(1_000));
        assert!(
            t.cancel(low.0, low.1).is_some(),
            "the survivor's key still works"
        );
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
