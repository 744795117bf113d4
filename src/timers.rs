//! The timer store: deadlines ordered by time, then by scheduling order.
//!
//! Callbacks live in a chunked slab ([`slots`]) under `(key, id)`; [`order`] keeps `(when, id, key)`
//! entries in deadline order (a sorted run for timers scheduled in deadline order,
//! the usual case, beside a 4-ary heap for the others). `when` is in nanoseconds of
//! the loop's clock; `id` grows with every timer, so equal deadlines pop in the order
//! they were scheduled. Cancelling removes the slot in O(1) (dropping the closure at
//! once) and leaves a *stale* entry in the order, skipped when it reaches the front.
//! Stale entries are counted, and the order is rebuilt without them once they are
//! three quarters of it or more, so endless schedule-and-cancel cycles keep memory
//! flat (at most four entries of 24 bytes per live timer). Skipping a stale entry at
//! the front costs less than a rebuild spends per entry it removes, so rebuilds are
//! kept rare: cancelling half of 200,000 timers triggers none.
//!
//! A timer that fires leaves the order but keeps its slot until its callback is taken
//! to run, so that it can still be cancelled from the ready queue.
//!
//! Memory: once use falls (a burst of timers fired or was cancelled), [`Timers::trim`]
//! gives the order's room back and the slab's vacant tail (see `crate::capacity`). The
//! slab cannot shrink below its highest live key, since handles name slots by key.
//!
//! A deadline of [`NEVER`] (beyond the clock's range) is kept like any other, so that
//! its handle can cancel it, but it never pops (the clock never reads `NEVER`) and
//! [`Timers::next_deadline`] does not report it: nothing waits or jumps for it.
//!
//! Pure data structure: every operation takes the current time as an argument.

use std::panic::Location;

use crate::callback::TimerCallback;
use crate::capacity::{Peak, is_oversized};
use crate::clock::NEVER;
use crate::ready::key_u32;

mod order;
mod run;
mod slots;
use order::{Order, TimerEntry};
use slots::Slots;

/// Below this size the heap is never compacted: rebuilding would cost more than
/// the stale entries do.
const COMPACT_MIN: usize = 64;

/// A scheduled timer's callback. Six words: the closure (inline up to three words,
/// see `TimerCallback`), its location, and the id with the pending flag.
pub(crate) struct TimerSlot {
    /// The timer's id in the low 63 bits; the top bit ([`PENDING`]) is set while it
    /// is still in the order (not yet fired), where a cancel leaves a stale entry.
    /// Ids count timers from 0, so they never reach the top bit.
    id_pending: u64,
    pub(crate) callback: TimerCallback,
    pub(crate) location: &'static Location<'static>,
}

/// The pending flag of [`TimerSlot::id_pending`].
const PENDING: u64 = 1 << 63;

impl TimerSlot {
    /// The timer's id (unique in its store, growing with each timer).
    pub(crate) fn id(&self) -> u64 {
        self.id_pending & !PENDING
    }

    /// Whether the timer is still in the order (it has not fired): cancelling it
    /// left a stale entry there.
    pub(crate) fn in_heap(&self) -> bool {
        self.id_pending & PENDING != 0
    }
}

/// The timer store. See the module docs.
pub(crate) struct Timers {
    slots: Slots<TimerSlot>,
    order: Order,
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
            slots: Slots::default(),
            order: Order::default(),
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
        callback: TimerCallback,
        location: &'static Location<'static>,
    ) -> (u32, u64) {
        let id = self.next_id;
        self.next_id += 1;
        debug_assert!(id < PENDING, "ids never reach the flag bit");
        let key = key_u32(self.slots.insert(TimerSlot {
            id_pending: id | PENDING,
            callback,
            location,
        }));
        self.order.push(TimerEntry { when, id, key });
        (key, id)
    }

    fn is_live(slots: &Slots<TimerSlot>, key: u32, id: u64) -> bool {
        matches!(slots.get(key as usize), Some(s) if s.id() == id)
    }

    /// Cancels the timer `(key, id)` if it has not run: its slot is handed back for
    /// the caller to drop outside its borrow. Returns `None` if it already ran or was
    /// cancelled.
    pub(crate) fn cancel(&mut self, key: u32, id: u64) -> Option<TimerSlot> {
        if !Self::is_live(&self.slots, key, id) {
            return None;
        }
        let slot = self.remove(key);
        if slot.in_heap() {
            self.stale += 1;
            self.compact_if_mostly_stale();
        }
        Some(slot)
    }

    /// Rebuilds the order without its stale entries once they are three quarters of
    /// it or more. Checked wherever their share grows: when a cancel adds one, and
    /// when live timers leave (fire) ahead of stale ones, which may be all that is
    /// left of a burst (cancelled far timers behind fired near ones).
    fn compact_if_mostly_stale(&mut self) {
        if self.order.len() >= COMPACT_MIN && self.stale * 4 >= self.order.len() * 3 {
            let slots = &self.slots;
            self.order.retain(|e| Self::is_live(slots, e.key, e.id));
            self.stale = 0;
        }
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
            self.slots.reset_empty();
        }
        slot
    }

    /// Pops every live timer due at `now` (`when <= now`) in order, handing each
    /// `(key, id)` to `fire`. Returns how many fired. `now` is a clock reading, so
    /// less than [`NEVER`].
    pub(crate) fn pop_expired(&mut self, now: u64, mut fire: impl FnMut(u32, u64)) -> u64 {
        debug_assert!(now < NEVER, "a clock never reads NEVER");
        let mut fired = 0;
        while let Some(top) = self.order.peek() {
            if top.when > now {
                break;
            }
            let e = self.order.pop().expect("peeked");
            match self.slots.get_mut(e.key as usize) {
                Some(slot) if slot.id() == e.id => {
                    slot.id_pending = e.id; // fired: no longer pending
                    fire(e.key, e.id);
                    fired += 1;
                }
                _ => self.stale = self.stale.saturating_sub(1),
            }
        }
        if fired > 0 {
            self.compact_if_mostly_stale();
        }
        fired
    }

    /// The deadline of the earliest live timer, dropping stale entries from the top.
    /// `None` if there is none, or only timers that never come due ([`NEVER`]: the
    /// earliest is the top, so every other is `NEVER` too).
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        while let Some(top) = self.order.peek() {
            if Self::is_live(&self.slots, top.key, top.id) {
                return (top.when != NEVER).then_some(top.when);
            }
            self.order.pop();
            self.stale = self.stale.saturating_sub(1);
        }
        None
    }

    /// Whether no timer waits in the heap (fired ones may still wait to run).
    pub(crate) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Entries in the heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Records the present number of timers as a use (once per iteration).
    #[inline]
    pub(crate) fn note_use(&mut self) {
        self.slot_peak.note(self.slots.len());
        self.heap_peak.note(self.order.len());
    }

    /// Ends a window of use: gives back the room a past burst of timers needed. The
    /// heap shrinks (after dropping its stale entries); the slab drops its vacant
    /// tail, down to its highest live key. Keys and ids stay valid.
    pub(crate) fn trim(&mut self) {
        if let Some(keep) = self
            .heap_peak
            .end_window(self.order.capacity(), self.order.len())
        {
            if self.stale > 0 {
                let slots = &self.slots;
                self.order.retain(|e| Self::is_live(slots, e.key, e.id));
                self.stale = 0;
            }
            self.order.shrink_to(keep);
        }
        let target = self
            .slot_peak
            .end_window(self.slots.capacity(), self.slots.len());
        if let Some(keep) = target
            && !self.slab_is_pinned()
        {
            if self.slots.is_empty() {
                self.slots = Slots::with_capacity(keep);
            } else {
                // Drops the vacant tail and, if there was one, relinks the vacant
                // slots lowest first, so that the new tail can empty in turn.
                self.slots.shrink_to_fit();
                if is_oversized(self.slots.capacity(), self.slots.len()) {
                    let top = self.slots.highest_key().map(key_u32);
                    self.pinned_by = top.map(|k| (k, self.slots.capacity()));
                }
            }
        }
    }

    /// Whether the store holds room that [`trim`](Timers::trim) would give back if
    /// its use stays as it is now.
    pub(crate) fn is_oversized(&self) -> bool {
        is_oversized(self.order.capacity(), self.order.len())
            || (!self.slab_is_pinned() && is_oversized(self.slots.capacity(), self.slots.len()))
    }

    /// Whether the slab is as small as its highest live key lets it be.
    fn slab_is_pinned(&self) -> bool {
        self.pinned_by
            .is_some_and(|(_, capacity)| capacity == self.slots.capacity())
    }

    /// The slab's and the heap's capacities, in entries.
    pub(crate) fn capacities(&self) -> (usize, usize) {
        (self.slots.capacity(), self.order.capacity())
    }

    /// Forgets every timer, handing the callbacks back (lowest key first) to be
    /// dropped by the caller. The heap's buffer goes too.
    pub(crate) fn clear(&mut self) -> Vec<TimerSlot> {
        self.order = Order::default();
        self.stale = 0;
        self.pinned_by = None;
        self.slots.take_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The random numbers of the store's randomized tests (here and in `run`,
    /// `slots`): a xorshift64 generator from `seed`, the same sequence on every run.
    pub(super) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Steps of a randomized test: a fifth of `n` under valgrind (`.ci/valgrind` sets
    /// `EVLOOP_UNDER_VALGRIND`), whose slowdown the lib's other tests share.
    pub(super) fn random_steps(n: usize) -> usize {
        if std::env::var_os("EVLOOP_UNDER_VALGRIND").is_some() {
            n / 5
        } else {
            n
        }
    }

    /// A slot costs no word for the chunked slab's vacant/occupied tag.
    #[test]
    fn a_slot_entry_is_six_words() {
        assert_eq!(size_of::<TimerSlot>(), 6 * size_of::<usize>());
        assert_eq!(size_of::<slots::Entry<TimerSlot>>(), size_of::<TimerSlot>());
    }

    fn noop() -> TimerCallback {
        TimerCallback::new(|_| {})
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
    fn a_slot_is_six_words() {
        assert_eq!(
            std::mem::size_of::<TimerSlot>(),
            6 * std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn cancelling_a_fired_timer_leaves_no_stale_count_behind() {
        let mut t = Timers::new();
        let (k, i) = at(&mut t, 1);
        assert!(t.slots.get(k as usize).unwrap().in_heap());
        assert_eq!(expired(&mut t, 1), vec![i]);
        assert!(
            !t.slots.get(k as usize).unwrap().in_heap(),
            "fired: out of the order"
        );
        assert_eq!(
            t.slots.get(k as usize).unwrap().id(),
            i,
            "the id survives the flag"
        );
        let slot = t.cancel(k, i).unwrap();
        assert!(!slot.in_heap());
        assert_eq!(t.stale, 0);
    }

    /// Far timers cancelled behind near ones that then fire: once the near ones are
    /// gone the stale entries are nearly all of the order, which is rebuilt then, not
    /// when the far deadlines come (at most four entries per live timer).
    #[test]
    fn stale_entries_left_behind_fired_timers_are_dropped() {
        let mut t = Timers::new();
        for i in 0..2_000 {
            at(&mut t, 10 + i);
        }
        let far: Vec<_> = (0..4_000).map(|i| at(&mut t, 1_000_000 + i)).collect();
        for &(k, i) in &far[2..] {
            t.cancel(k, i);
        }
        assert_eq!(t.len(), 6_000, "a third live: no rebuild yet");
        assert_eq!(expired(&mut t, 100_000).len(), 2_000);
        assert_eq!(t.len(), 2, "only the two live far timers are left");
        assert_eq!(t.stale, 0);
        assert_eq!(expired(&mut t, 2_000_000), vec![far[0].1, far[1].1]);
    }

    /// Random schedules (rising, falling, equal, NEVER), cancels (of pending, fired
    /// and long-gone timers), pops, takes and trims against a model: pops come in
    /// (deadline, id) order, cancel and take find exactly the live timers, keys stay
    /// valid through every trim, and the slab holds its highest live key.
    #[test]
    fn random_use_with_trims_matches_a_model() {
        use std::collections::BTreeMap;
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let mut t = Timers::new();
        // Pending: (when, id) -> key. Fired, not taken: id -> key. Every handle ever.
        let mut pending: BTreeMap<(u64, u64), u32> = BTreeMap::new();
        let mut fired: BTreeMap<u64, u32> = BTreeMap::new();
        let mut handles: Vec<(u32, u64, u64)> = Vec::new();
        let mut now = 1_000u64;
        for step in 0..random_steps(600) {
            match next() % 12 {
                0..=3 => {
                    let shape = next() % 5;
                    for k in 0..next() % 1_500 {
                        let when = match shape {
                            0 => now + k,
                            1 => now + 5_000 - k.min(4_999),
                            2 => now + 300,
                            3 => NEVER,
                            _ => now + next() % 3_000,
                        };
                        let (key, id) = at(&mut t, when);
                        assert!(pending.insert((when, id), key).is_none());
                        handles.push((key, id, when));
                    }
                }
                4..=6 if !handles.is_empty() => {
                    for _ in 0..next() % 1_200 {
                        let (key, id, when) = handles[next() as usize % handles.len()];
                        let was_live =
                            pending.remove(&(when, id)).is_some() || fired.remove(&id).is_some();
                        assert_eq!(t.cancel(key, id).is_some(), was_live, "step {step}");
                    }
                }
                7..=8 => {
                    now += next() % 1_000;
                    let due: Vec<(u64, u64)> =
                        pending.range(..(now + 1, 0)).map(|(k, _)| *k).collect();
                    let mut got = vec![];
                    t.pop_expired(now, |key, id| got.push((key, id)));
                    let expected: Vec<(u32, u64)> = due.iter().map(|k| (pending[k], k.1)).collect();
                    assert_eq!(got, expected, "step {step}: pops at {now}");
                    for k in due {
                        let key = pending.remove(&k).unwrap();
                        fired.insert(k.1, key);
                    }
                }
                9 => {
                    let ids: Vec<u64> = fired.keys().copied().collect();
                    for id in ids.into_iter().filter(|_| next().is_multiple_of(2)) {
                        let key = fired.remove(&id).unwrap();
                        assert!(t.take(key, id).is_some());
                        assert!(t.take(key, id).is_none(), "taken twice");
                    }
                }
                _ => {
                    t.note_use();
                    t.trim();
                    let highest = pending.values().chain(fired.values()).max();
                    if let Some(&k) = highest {
                        assert!(t.capacities().0 > k as usize, "the slab lost key {k}");
                    }
                }
            }
            if step % 50 == 0 {
                for (&(_, id), &key) in &pending {
                    assert!(Timers::is_live(&t.slots, key, id));
                }
                for (&id, &key) in &fired {
                    assert!(Timers::is_live(&t.slots, key, id));
                }
                assert_eq!(t.slots.len(), pending.len() + fired.len());
                let first = pending.keys().next().map(|k| k.0).filter(|&w| w != NEVER);
                assert_eq!(t.next_deadline(), first, "step {step}");
                assert!(t.stale <= t.len(), "stale {} > {}", t.stale, t.len());
                let live_entries = pending.len().max(COMPACT_MIN / 4);
                assert!(
                    t.len() <= 4 * live_entries + 2 * 1_500,
                    "step {step}: {} entries for {} pending",
                    t.len(),
                    pending.len()
                );
            }
        }
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
