//! The sorted run's storage: a FIFO of timer entries in fixed-size segments.
//!
//! A `VecDeque` that grows copies every entry into fresh memory at each doubling; for
//! a burst of 200,000 timers those copies were a fifth of the store's page faults.
//! Here a full run gets one more segment of [`SEG`] entries and nothing moves. The
//! first segment grows by doubling (a loop with a few timers holds a few entries);
//! a segment emptied at the front is kept as the one spare for the next one needed.
//!
//! Invariants: `segs` holds the entries in order, the first from index `head` on;
//! every segment but the last is full ([`SEG`] entries) and none is empty; `len`
//! counts the entries from `head` on. No segment has room for more than [`SEG`].

use std::collections::VecDeque;

use super::order::TimerEntry;

/// Entries per segment: 2,048 entries are 48 KiB.
pub(super) const SEG: usize = 2048;

/// Doubles a segment's room, but never past [`SEG`]: after a shrink (or as a reused
/// spare) a segment's capacity is any number, and plain doubling would give it room
/// it never uses (2,400 entries from 1,200).
#[cold]
fn grow_first(seg: &mut Vec<TimerEntry>) {
    seg.reserve_exact(seg.capacity().max(4).min(SEG - seg.len()));
}

#[derive(Default)]
pub(super) struct Run {
    segs: VecDeque<Vec<TimerEntry>>,
    /// Where the front entry sits in `segs[0]`.
    head: usize,
    len: usize,
    /// An emptied segment, kept for the next push that needs one.
    spare: Option<Vec<TimerEntry>>,
}

impl Run {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room held, in entries (the spare segment included).
    pub(super) fn capacity(&self) -> usize {
        self.segs.iter().map(Vec::capacity).sum::<usize>()
            + self.spare.as_ref().map_or(0, Vec::capacity)
    }

    #[inline]
    pub(super) fn front(&self) -> Option<&TimerEntry> {
        self.segs.front().map(|s| &s[self.head])
    }

    #[inline]
    pub(super) fn back(&self) -> Option<&TimerEntry> {
        self.segs.back().and_then(|s| s.last())
    }

    #[inline]
    pub(super) fn push_back(&mut self, e: TimerEntry) {
        match self.segs.back_mut() {
            // The first segment doubles up to SEG; later ones are allocated whole.
            Some(last) if last.len() < SEG => {
                if last.len() == last.capacity() {
                    grow_first(last);
                }
                last.push(e);
            }
            _ => self.push_segment(e),
        }
        self.len += 1;
    }

    #[cold]
    fn push_segment(&mut self, e: TimerEntry) {
        let mut seg = match self.spare.take() {
            Some(s) => s,
            None if self.segs.is_empty() => Vec::new(),
            None => Vec::with_capacity(SEG),
        };
        seg.push(e);
        self.segs.push_back(seg);
    }

    #[inline]
    pub(super) fn pop_front(&mut self) -> Option<TimerEntry> {
        let first = self.segs.front()?;
        let e = first[self.head];
        self.head += 1;
        self.len -= 1;
        if self.head == first.len() {
            self.drop_front();
        }
        Some(e)
    }

    /// The front segment is used up: it becomes the spare.
    fn drop_front(&mut self) {
        self.head = 0;
        if let Some(seg) = self.segs.pop_front() {
            self.keep_spare(seg);
        }
    }

    fn keep_spare(&mut self, mut seg: Vec<TimerEntry>) {
        seg.clear();
        if self
            .spare
            .as_ref()
            .is_none_or(|s| s.capacity() < seg.capacity())
        {
            self.spare = Some(seg);
        }
    }

    /// Keeps the entries for which `keep` holds, in order, compacted in place (the
    /// write position never passes the read position); segments left empty become
    /// the spare. Allocates nothing.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&TimerEntry) -> bool) {
        let (mut ws, mut wi) = (0, self.head);
        let mut len = 0;
        for rs in 0..self.segs.len() {
            let from = if rs == 0 { self.head } else { 0 };
            for ri in from..self.segs[rs].len() {
                let e = self.segs[rs][ri];
                if keep(&e) {
                    // Only a full segment is left behind (all but the last are full).
                    if wi == SEG {
                        ws += 1;
                        wi = 0;
                    }
                    self.segs[ws][wi] = e;
                    wi += 1;
                    len += 1;
                }
            }
        }
        self.len = len;
        let used = if len == 0 {
            self.head = 0;
            0
        } else {
            self.segs[ws].truncate(wi);
            ws + 1
        };
        while self.segs.len() > used {
            let seg = self.segs.pop_back().expect("more than `used`");
            self.keep_spare(seg);
        }
    }

    /// Gives room back, keeping at least the entries: the spare goes, and a run that
    /// fits in one segment is moved into one of its size (or about `n`, if more).
    ///
    /// A run that fits in one segment may still span two (the end of a full one,
    /// the start of the next, once the front has drained): they are gathered into
    /// the first, which has room since it was full. Longer runs keep their segments:
    /// all but the first and last are full, so they hold little spare room.
    pub(super) fn shrink_to(&mut self, n: usize) {
        self.spare = None;
        if self.len > SEG {
            return;
        }
        let Some(mut first) = self.segs.pop_front() else {
            return;
        };
        first.drain(..self.head);
        self.head = 0;
        while let Some(seg) = self.segs.pop_front() {
            first.extend(seg);
        }
        first.shrink_to(n.max(first.len()));
        self.segs.push_back(first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> TimerEntry {
        TimerEntry {
            when: id,
            id,
            key: id as u32,
        }
    }

    /// Pushes and pops interleaved across segment boundaries come out in FIFO order,
    /// with `len`, `front` and `back` right at every step.
    #[test]
    fn fifo_across_segments() {
        let mut r = Run::default();
        let (mut next_in, mut next_out) = (0u64, 0u64);
        for round in 0..6 {
            for _ in 0..(SEG as u64 * 3 / 2 + round) {
                r.push_back(entry(next_in));
                next_in += 1;
                assert_eq!(r.back(), Some(&entry(next_in - 1)));
            }
            for _ in 0..(SEG as u64 + round * 7) {
                assert_eq!(r.front(), Some(&entry(next_out)));
                assert_eq!(r.pop_front(), Some(entry(next_out)));
                next_out += 1;
            }
            assert_eq!(r.len() as u64, next_in - next_out);
        }
        while let Some(e) = r.pop_front() {
            assert_eq!(e, entry(next_out));
            next_out += 1;
        }
        assert_eq!(next_out, next_in);
        assert!(r.is_empty() && r.front().is_none() && r.back().is_none());
        assert!(
            r.capacity() <= SEG,
            "only the spare is left: {}",
            r.capacity()
        );
    }

    /// Retain keeps order and packs the survivors; shrinking keeps every entry.
    #[test]
    fn retain_then_shrink_keeps_order() {
        let mut r = Run::default();
        for id in 0..(3 * SEG as u64 + 10) {
            r.push_back(entry(id));
        }
        for _ in 0..100 {
            r.pop_front();
        }
        r.retain(|e| e.id.is_multiple_of(5));
        let expected: Vec<u64> = (100..(3 * SEG as u64 + 10))
            .filter(|i| i % 5 == 0)
            .collect();
        assert_eq!(r.len(), expected.len());
        r.shrink_to(0);
        assert!(r.capacity() < 2 * expected.len(), "{}", r.capacity());
        let got: Vec<u64> = std::iter::from_fn(|| r.pop_front().map(|e| e.id)).collect();
        assert_eq!(got, expected);
    }

    /// Compacting moves nothing out of place: the survivors fill the first
    /// segments, an emptied one stays as the spare and the next growth reuses it.
    #[test]
    fn retain_compacts_in_place_and_keeps_a_spare() {
        let mut r = Run::default();
        for id in 0..(2 * SEG as u64 + 3) {
            r.push_back(entry(id));
        }
        r.retain(|e| e.id % 4 == 3);
        assert_eq!(r.len(), SEG / 2, "ids 3, 7, ... of 2 * SEG + 3");
        assert_eq!(r.capacity(), 2 * SEG, "one segment in use, one spare");
        for id in 0..(SEG as u64) {
            r.push_back(entry(10 * SEG as u64 + id));
        }
        assert_eq!(r.capacity(), 2 * SEG, "the spare was reused");
        let got: Vec<u64> = std::iter::from_fn(|| r.pop_front().map(|e| e.id)).collect();
        let expected: Vec<u64> = (0..(2 * SEG as u64 + 3))
            .filter(|i| i % 4 == 3)
            .chain((0..SEG as u64).map(|i| 10 * SEG as u64 + i))
            .collect();
        assert_eq!(got, expected);
        r.push_back(entry(1));
        r.retain(|_| false);
        assert!(r.is_empty() && r.front().is_none() && r.back().is_none());
        r.push_back(entry(2));
        assert_eq!(r.pop_front(), Some(entry(2)));
    }

    /// A short run left across two segments (the front drained up to the end of
    /// the first) shrinks into one segment, in order.
    #[test]
    fn shrink_gathers_a_short_run_spanning_two_segments() {
        let mut r = Run::default();
        for id in 0..(SEG as u64 + 5) {
            r.push_back(entry(id));
        }
        for _ in 0..(SEG - 3) {
            r.pop_front();
        }
        assert_eq!((r.len(), r.capacity()), (8, 2 * SEG));
        r.shrink_to(0);
        assert!(r.capacity() < 16, "kept {}", r.capacity());
        r.push_back(entry(99));
        let got: Vec<u64> = std::iter::from_fn(|| r.pop_front().map(|e| e.id)).collect();
        let mut expected: Vec<u64> = ((SEG as u64 - 3)..(SEG as u64 + 5)).collect();
        expected.push(99);
        assert_eq!(got, expected);
        // It grows back into whole segments.
        for id in 0..(3 * SEG as u64) {
            r.push_back(entry(id));
        }
        let got: Vec<u64> = std::iter::from_fn(|| r.pop_front().map(|e| e.id)).collect();
        assert_eq!(got, (0..(3 * SEG as u64)).collect::<Vec<_>>());
    }

    /// The entries from the front, and the structural invariants of the module docs.
    fn checked_entries(r: &Run) -> Vec<TimerEntry> {
        let n = r.segs.len();
        for (i, s) in r.segs.iter().enumerate() {
            assert!(!s.is_empty(), "segment {i} of {n} is empty");
            if i + 1 < n {
                assert_eq!(s.len(), SEG, "segment {i} of {n} is not full");
            }
        }
        if n == 0 {
            assert_eq!(r.head, 0);
        } else {
            assert!(r.head < r.segs[0].len(), "head past the first segment");
        }
        let all: Vec<TimerEntry> = r.segs.iter().flatten().skip(r.head).copied().collect();
        assert_eq!(all.len(), r.len());
        assert_eq!(r.front(), all.first());
        assert_eq!(r.back(), all.last());
        all
    }

    /// Random pushes, pops, retains (any head position, any survivors) and shrinks
    /// against a `VecDeque`, checking the invariants after every step.
    #[test]
    fn random_use_matches_a_deque() {
        let mut next = crate::timers::tests::xorshift(0x2545_F491_4F6C_DD1D);
        let mut r = Run::default();
        let mut model: VecDeque<TimerEntry> = VecDeque::new();
        let mut id = 0u64;
        for _ in 0..crate::timers::tests::random_steps(1_000) {
            match next() % 9 {
                0..=3 => {
                    for _ in 0..next() % 3_000 {
                        r.push_back(entry(id));
                        model.push_back(entry(id));
                        id += 1;
                    }
                }
                4..=5 => {
                    for _ in 0..next() % 3_000 {
                        assert_eq!(r.pop_front(), model.pop_front());
                    }
                }
                6..=7 => {
                    let (m, k) = (next() % 7 + 1, next() % 7);
                    let keep = |e: &TimerEntry| e.id % m != k % m;
                    r.retain(keep);
                    model.retain(keep);
                }
                _ => {
                    let n = (next() % 5_000) as usize;
                    r.shrink_to(n);
                    if r.len() <= SEG {
                        assert!(
                            r.capacity() <= n.max(r.len()),
                            "shrink_to({n}) kept {} for {}",
                            r.capacity(),
                            r.len()
                        );
                    }
                }
            }
            assert_eq!(checked_entries(&r), Vec::from(model.clone()));
            for s in r.segs.iter().chain(&r.spare) {
                assert!(s.capacity() <= SEG, "a segment of {}", s.capacity());
            }
        }
    }

    /// A run that fills and drains over and over reuses its room.
    #[test]
    fn steady_use_reuses_segments() {
        let mut r = Run::default();
        for i in 0..(4 * SEG as u64) {
            r.push_back(entry(i));
        }
        while r.pop_front().is_some() {}
        let capacity = r.capacity();
        for _ in 0..10 {
            for i in 0..(2 * SEG as u64) {
                r.push_back(entry(i));
            }
            while r.pop_front().is_some() {}
        }
        assert!(
            r.capacity() <= capacity.max(SEG),
            "{} > {capacity}",
            r.capacity()
        );
    }
}
