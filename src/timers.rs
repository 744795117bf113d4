//! The timer store: deadlines ordered by time, then by scheduling order.
//!
//! A binary min-heap of `(when, id, key)`. `when` is in nanoseconds of the loop's
//! clock; `id` grows with every scheduled callback, so equal deadlines pop in the
//! order they were scheduled. The callbacks themselves live in the ready queue's
//! slab under `key`: cancelling a timer removes its slot there in O(1) and leaves
//! a *stale* entry here, which is skipped when it reaches the top. Stale entries
//! are counted, and the heap is rebuilt without them once they are more than half
//! of it, so endless schedule-and-cancel cycles keep memory flat.
//!
//! Pure data structure: every operation takes the current time as an argument.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

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

/// The timer heap. See the module docs.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<TimerEntry>,
    /// How many heap entries refer to cancelled timers. Invariant: `stale <= heap.len()`.
    stale: usize,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers::default()
    }

    /// Adds the timer `(key, id)` due at `when`.
    pub(crate) fn push(&mut self, when: u64, id: u64, key: u32) {
        self.heap.push(TimerEntry { when, id, key });
    }

    /// Records that one entry went stale (its timer was cancelled), compacting the
    /// heap with `is_live` once stale entries are the majority.
    pub(crate) fn cancelled(&mut self, is_live: impl FnMut(u32, u64) -> bool) {
        self.stale += 1;
        if self.heap.len() >= COMPACT_MIN && self.stale * 2 > self.heap.len() {
            self.compact(is_live);
        }
    }

    fn compact(&mut self, mut is_live: impl FnMut(u32, u64) -> bool) {
        self.heap.retain(|e| is_live(e.key, e.id));
        self.stale = 0;
    }

    /// Pops every timer due at `now` (`when <= now`) in order, handing each to
    /// `fire`, which returns false for a stale entry.
    pub(crate) fn pop_expired(&mut self, now: u64, mut fire: impl FnMut(u32, u64) -> bool) {
        while let Some(top) = self.heap.peek() {
            if top.when > now {
                break;
            }
            let e = self.heap.pop().expect("peeked");
            if !fire(e.key, e.id) {
                self.stale = self.stale.saturating_sub(1);
            }
        }
    }

    /// The deadline of the earliest live timer, dropping stale entries from the top.
    pub(crate) fn next_deadline(
        &mut self,
        mut is_live: impl FnMut(u32, u64) -> bool,
    ) -> Option<u64> {
        while let Some(top) = self.heap.peek() {
            if is_live(top.key, top.id) {
                return Some(top.when);
            }
            self.heap.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        None
    }

    /// Whether the heap is empty (it may hold only stale entries and still be non-empty).
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Entries in the heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Forgets every timer (their callbacks are dropped with the ready slab).
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.stale = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pops_in_deadline_then_schedule_order() {
        let mut t = Timers::new();
        t.push(20, 1, 0);
        t.push(10, 2, 1);
        t.push(20, 3, 2);
        t.push(10, 4, 3);
        let mut got = vec![];
        t.pop_expired(15, |k, _| {
            got.push(k);
            true
        });
        assert_eq!(got, vec![1, 3]);
        t.pop_expired(20, |k, _| {
            got.push(k);
            true
        });
        assert_eq!(got, vec![1, 3, 0, 2]);
        assert!(t.is_empty());
    }

    #[test]
    fn never_pops_before_deadline() {
        let mut t = Timers::new();
        t.push(100, 1, 0);
        t.pop_expired(99, |_, _| panic!("fired early"));
        assert_eq!(t.next_deadline(|_, _| true), Some(100));
    }

    #[test]
    fn next_deadline_skips_cancelled() {
        let mut t = Timers::new();
        t.push(5, 1, 0);
        t.push(9, 2, 1);
        let dead: HashSet<u64> = [1].into();
        t.cancelled(|_, id| !dead.contains(&id));
        assert_eq!(t.next_deadline(|_, id| !dead.contains(&id)), Some(9));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn schedule_cancel_cycles_keep_memory_flat() {
        let mut t = Timers::new();
        let mut live: HashSet<u64> = HashSet::new();
        for id in 0..1_000_000u64 {
            t.push(1_000 + id, id, 0);
            // cancel it straight away
            t.cancelled(|_, i| live.contains(&i));
            if id % 1000 == 0 {
                live.insert(id); // keep a few alive for good measure
                t.push(5, id, 0);
            }
            assert!(
                t.len() <= 2 * COMPACT_MIN + 4 * live.len(),
                "heap grew to {}",
                t.len()
            );
        }
    }
}
