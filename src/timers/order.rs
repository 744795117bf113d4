//! The order of pending deadlines: a sorted run beside a 4-ary heap.
//!
//! Most programs schedule timers in deadline order: `call_later` with one delay, a
//! timeout per request, an interval, a batch of `call_at`s counting up. Such a timer
//! is no earlier than the latest one in the run, so it is appended to the run
//! (O(1), segments that never move: [`super::run`]) and leaves from its front (O(1), memory touched in order), never paying
//! the heap's sift. A timer earlier than the run's tail goes to the heap. The
//! earliest timer is the smaller of the two fronts.
//!
//! Invariants: `run` is sorted by [`TimerEntry::before`] (each entry is no earlier
//! than the one ahead of it); `heap` is a min-heap by the same order. Ids grow with
//! every timer, so an entry appended with `when >= tail.when` is after the tail.

use super::run::Run;

/// One pending deadline: `when` in nanoseconds of the loop's clock, `id` (growing
/// with every timer: equal deadlines keep scheduling order), `key` of its slot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct TimerEntry {
    pub(super) when: u64,
    pub(super) id: u64,
    pub(super) key: u32,
}

impl TimerEntry {
    /// Earlier deadline first; equal deadlines in scheduling order.
    #[inline]
    pub(super) fn before(&self, other: &TimerEntry) -> bool {
        (self.when, self.id) < (other.when, other.id)
    }
}

/// Pending deadlines in order. See the module docs.
#[derive(Default)]
pub(super) struct Order {
    run: Run,
    heap: QuadHeap,
}

impl Order {
    /// Entries of both parts, stale ones included.
    pub(super) fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.run.is_empty() && self.heap.is_empty()
    }

    /// Room of both parts, in entries.
    pub(super) fn capacity(&self) -> usize {
        self.run.capacity() + self.heap.capacity()
    }

    /// Gives room back: each part keeps at least its entries, and the two together
    /// about `n`.
    pub(super) fn shrink_to(&mut self, n: usize) {
        let run = n.saturating_sub(self.heap.len()).max(self.run.len());
        self.run.shrink_to(run);
        self.heap
            .shrink_to(n.saturating_sub(run).max(self.heap.len()));
    }

    /// Adds `e`, whose id is greater than every id already in.
    #[inline]
    pub(super) fn push(&mut self, e: TimerEntry) {
        match self.run.back() {
            Some(tail) if e.when < tail.when => self.heap.push(e),
            _ => self.run.push_back(e),
        }
    }

    /// The earliest entry.
    #[inline]
    pub(super) fn peek(&self) -> Option<&TimerEntry> {
        match (self.run.front(), self.heap.peek()) {
            (Some(r), Some(h)) => Some(if h.before(r) { h } else { r }),
            (r, h) => r.or(h),
        }
    }

    /// Takes the earliest entry.
    #[inline]
    pub(super) fn pop(&mut self) -> Option<TimerEntry> {
        let from_heap = match (self.run.front(), self.heap.peek()) {
            (Some(r), Some(h)) => h.before(r),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if from_heap {
            self.heap.pop()
        } else {
            self.run.pop_front()
        }
    }

    /// Keeps the entries for which `keep` holds (both parts stay in order).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&TimerEntry) -> bool) {
        self.run.retain(&mut keep);
        self.heap.retain(keep);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(x: &mut u64) -> u64 {
        *x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *x >> 33
    }

    fn drain(o: &mut Order) -> Vec<TimerEntry> {
        std::iter::from_fn(|| o.pop()).collect()
    }

    #[test]
    fn quad_heap_pops_sorted() {
        let mut h = QuadHeap::default();
        let mut x = 12345u64;
        let mut all = vec![];
        for id in 0..2000u64 {
            let e = TimerEntry {
                when: lcg(&mut x) % 97,
                id,
                key: id as u32,
            };
            all.push(e);
            h.push(e);
        }
        h.retain(|e| e.id % 3 != 0);
        all.retain(|e| e.id % 3 != 0);
        all.sort_by_key(|e| (e.when, e.id));
        let got: Vec<_> = std::iter::from_fn(|| h.pop()).collect();
        assert_eq!(got, all);
    }

    /// Mixed patterns (rising runs, random, equal deadlines, pops in between): the
    /// pops come out in `(when, id)` order, whichever part each entry went to.
    #[test]
    fn order_pops_sorted_whatever_the_insertion_pattern() {
        for pattern in 0..4u64 {
            let mut o = Order::default();
            let mut x = 99 + pattern;
            let mut live = vec![];
            let mut got = vec![];
            let mut expected = vec![];
            for id in 0..5000u64 {
                let when = match pattern {
                    0 => id / 3,                      // rising, with ties
                    1 => lcg(&mut x) % 500,           // random
                    2 => (id % 100) * 7 + id / 100,   // saw-tooth
                    _ => 1000 - (id % 1000).min(999), // falling
                };
                let e = TimerEntry {
                    when,
                    id,
                    key: id as u32,
                };
                o.push(e);
                live.push(e);
                if id % 7 == 0 {
                    // Pop everything due by `when`: the earliest first.
                    live.sort_by_key(|e| (e.when, e.id));
                    while o.peek().is_some_and(|p| p.when <= when / 2) {
                        let p = o.pop().unwrap();
                        got.push(p);
                        expected.push(live.remove(0));
                    }
                }
            }
            o.retain(|e| e.id % 5 != 0);
            live.retain(|e| e.id % 5 != 0);
            live.sort_by_key(|e| (e.when, e.id));
            assert_eq!(o.len(), live.len());
            got.extend(drain(&mut o));
            expected.extend(live);
            assert_eq!(got, expected, "pattern {pattern}");
            assert!(o.is_empty());
        }
    }

    #[test]
    fn rising_deadlines_stay_out_of_the_heap() {
        let mut o = Order::default();
        for id in 0..1000 {
            o.push(TimerEntry {
                when: id / 2,
                id,
                key: 0,
            });
        }
        assert_eq!(o.heap.len(), 0);
        o.push(TimerEntry {
            when: 3,
            id: 1000,
            key: 0,
        });
        assert_eq!(o.heap.len(), 1, "earlier than the run's tail");
        let first: Vec<_> = (0..9).map(|_| o.pop().unwrap().id).collect();
        assert_eq!(first, vec![0, 1, 2, 3, 4, 5, 6, 7, 1000]);
    }

    #[test]
    fn shrinking_keeps_every_entry() {
        let mut o = Order::default();
        for id in 0..10_000 {
            o.push(TimerEntry {
                when: 10_000 - id,
                id,
                key: 0,
            });
            o.push(TimerEntry {
                when: 20_000 + id,
                id: 100_000 + id,
                key: 0,
            });
        }
        o.retain(|e| e.id % 100 == 0);
        o.shrink_to(0);
        assert_eq!(o.len(), 200);
        assert!(o.capacity() >= 200 && o.capacity() < 1000);
        let got = drain(&mut o);
        assert!(got.windows(2).all(|w| w[0].before(&w[1])));
    }
}
