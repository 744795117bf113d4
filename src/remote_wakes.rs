//! `RemoteWakes`: which tasks already have a cross-thread wake in the remote queue.
//!
//! A task's waker is a plain word (loop id, task key, low bits of the task id) with no
//! reference count, so the only per-task state that another thread can reach is in
//! the loop's [`Shared`](crate::remote::Shared). This table gives each task key one
//! atomic *mark* there, and the loop one *epoch*: a counter it bumps each time it
//! drains the remote queue. A wake from another thread writes the current epoch into
//! the task's mark, and queues an entry only if the mark did not hold that epoch
//! already. So each epoch queues one entry per task, however many threads wake it,
//! however often; the drain that takes the entry bumps the epoch, which clears every
//! mark at once, before any task is stepped. The loop's side costs one store and one
//! fence per drain, nothing per entry.
//!
//! One entry per epoch is not quite one per drain: a waker preempted between its
//! swap and its push can land its entry after the drain that ended its epoch, next
//! to the entry of a wake in the new epoch. The next drain then takes two entries for
//! the task and steps it twice: a spurious poll, harmless, and bounded by the number
//! of wakers in flight (the loom model found this interleaving).
//!
//! The mark names the slot, not the task (a finished task's stale waker may mark
//! the slot of a newer task with the same key), so the entry's step goes to whatever
//! task holds the slot when the loop runs it: at worst a spurious wake of the newer
//! task, which futures tolerate, and never a lost one.
//!
//! # Why no wake is lost
//! A waker's thread W, having written what the task will read, runs `fence(SeqCst)`,
//! loads the epoch `e`, and swaps `e` into the mark. The loop's drain takes the
//! queued entries, then stores `e + 1` and runs `fence(SeqCst)`, and only then steps
//! tasks. If W's swap finds another value, W queues an entry, which a later drain
//! takes (the queue's lock orders them). If it finds `e`:
//! - Some earlier waker W0 wrote `e` and, having found another value, queued an
//!   entry E0 after its swap. E0 is taken by the drain that stores `e + 1`, or a later
//!   one, never an earlier one: W0 read `e` (acquire) from the drain that stored it,
//!   after that drain had taken its entries. So the task's step for E0 comes after
//!   the fence of the drain that stores `e + 1`.
//! - W's epoch load read `e`, not that drain's `e + 1`, so (C++20 [atomics.order]
//!   p4.4) W's fence precedes the drain's fence in the single total order of seq-cst
//!   operations; then every read the loop makes after its fence (the step for E0)
//!   observes what W wrote before its fence.
//!
//! A wake that comes while the task is being polled either reads `e + 1` (the mark
//! is stale: it queues a new entry, and the task is stepped again) or, reading `e`,
//! is seen by that very poll, by the same argument.
//!
//! # Layout
//! Buckets of doubling size (64, 64, 128, 256, … slots: 2^26 in all, one per
//! possible task key), each allocated once, on the loop thread, when the first task
//! gets a key in it ([`reserve`](RemoteWakes::reserve), at task creation; amortized
//! as the task slab's own growth), and never moved or freed before the loop's
//! `Shared`. A wake reads its slot through one acquire load of the bucket's pointer:
//! it never allocates or locks.

use std::sync::OnceLock;

#[cfg(not(loom))]
use crate::ready::KEY_BITS;
use crate::sync_shim::{AtomicU64, Ordering, fence};

/// The models need few slots (and have no `ready` module).
#[cfg(loom)]
const KEY_BITS: u32 = 8;

/// Bucket 0 holds the keys below `1 << FIRST_BITS`; bucket `b > 0` the keys from
/// `1 << (FIRST_BITS + b - 1)` up to twice that.
const FIRST_BITS: u32 = 6;
/// Exactly enough buckets for every key below `2^KEY_BITS`.
const BUCKETS: usize = (KEY_BITS - FIRST_BITS + 1) as usize;

/// How many slots bucket `b` has: 64 for the first two, then twice the one before.
fn bucket_len(b: usize) -> usize {
    1 << (FIRST_BITS as usize + b.saturating_sub(1))
}

/// The bucket of `key`, and its index within that bucket.
fn locate(key: u32) -> (usize, usize) {
    let key = key as usize;
    match (key >> FIRST_BITS).checked_ilog2() {
        None => (0, key),
        Some(l) => {
            let b = l as usize + 1;
            (b, key - bucket_len(b))
        }
    }
}

/// The marks of one loop; see the module docs. On cache lines of its own: every
/// cross-thread wake reads it, and the loop writes it once per drain.
#[repr(align(128))]
pub(crate) struct RemoteWakes {
    /// Bumped by each drain of the remote queue. Starts at 1: a mark of 0 (never
    /// written) is stale.
    epoch: AtomicU64,
    /// The marks: the epoch at which the task in each slot last had a wake queued.
    buckets: [OnceLock<Box<[AtomicU64]>>; BUCKETS],
}

impl RemoteWakes {
    pub(crate) fn new() -> RemoteWakes {
        RemoteWakes {
            epoch: AtomicU64::new(1),
            buckets: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Loop thread, when a task gets `key`: makes sure its slot exists.
    pub(crate) fn reserve(&self, key: u32) {
        let (b, _) = locate(key);
        self.buckets[b].get_or_init(|| (0..bucket_len(b)).map(|_| AtomicU64::new(0)).collect());
    }

    fn slot(&self, key: u32) -> Option<&AtomicU64> {
        let (b, i) = locate(key);
        self.buckets.get(b)?.get()?.get(i)
    }

    /// A wake from another thread of the task with key `key`: true if the caller must
    /// queue it, false if an entry for the same slot is queued and not yet drained,
    /// whose step will see what this thread wrote before the call (see the module
    /// docs).
    pub(crate) fn mark(&self, key: u32) -> bool {
        // A slot that does not exist names no task this loop ever had: queue the
        // wake, and let the loop find nothing.
        let Some(slot) = self.slot(key) else {
            return true;
        };
        // Pairs with the fence in `drained`: if we read the epoch before its bump,
        // the steps after that fence see our writes.
        fence(Ordering::SeqCst);
        let epoch = self.epoch.load(Ordering::Acquire);
        slot.swap(epoch, Ordering::AcqRel) != epoch
    }

    /// Loop thread, after it took the queued entries and before it runs them: every
    /// mark is stale from now on, so a later wake queues again.
    pub(crate) fn drained(&self) {
        // Only the loop thread writes the epoch.
        let next = self.epoch.load(Ordering::Relaxed) + 1;
        self.epoch.store(next, Ordering::Release);
        fence(Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ready::RunnableId;

    #[test]
    fn buckets_tile_every_key() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(63), (0, 63));
        assert_eq!(locate(64), (1, 0));
        assert_eq!(locate(127), (1, 63));
        assert_eq!(locate(128), (2, 0));
        assert_eq!(locate(255), (2, 127));
        let last = (1u32 << KEY_BITS) - 1;
        let (b, i) = locate(last);
        assert_eq!(b, BUCKETS - 1, "the last key is in the last bucket");
        assert_eq!(i, bucket_len(b) - 1, "and fills it");
        // Consecutive keys take consecutive slots, bucket after bucket.
        let mut expect = (0, 0);
        for key in 0..100_000 {
            if expect.1 == bucket_len(expect.0) {
                expect = (expect.0 + 1, 0);
            }
            assert_eq!(locate(key), expect, "key {key}");
            expect.1 += 1;
        }
    }

    /// The key a task's waker carries.
    fn packed(key: u32, id: u32) -> u32 {
        RunnableId::unpack(RunnableId::for_test(key, id).pack(0))
            .1
            .key()
    }

    #[test]
    fn one_queued_wake_per_slot_until_the_next_drain() {
        let w = RemoteWakes::new();
        let a = packed(5, 1);
        w.reserve(5);
        assert!(w.mark(a), "the first wake queues");
        assert!(!w.mark(a), "later ones find it queued");
        assert!(!w.mark(a));
        w.drained();
        assert!(w.mark(a), "drained: the next wake queues again");
        assert!(!w.mark(a));
    }

    #[test]
    fn a_drain_clears_every_mark() {
        let w = RemoteWakes::new();
        for key in 0..200 {
            w.reserve(key);
            assert!(w.mark(packed(key, 0)));
        }
        w.drained();
        assert!((0..200).all(|key| w.mark(packed(key, 0))));
    }

    #[test]
    fn marks_of_different_slots_are_independent() {
        let w = RemoteWakes::new();
        w.reserve(1);
        w.reserve(2);
        assert!(w.mark(packed(1, 0)));
        assert!(w.mark(packed(2, 0)), "another slot queues its own");
    }

    #[test]
    fn an_unreserved_slot_always_queues() {
        let w = RemoteWakes::new();
        let p = packed(1000, 0);
        assert!(w.mark(p));
        assert!(w.mark(p));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync_shim::{Arc, AtomicBool, Mutex};
    use loom::thread;

    /// One task (key 3) on a loop; what its wakers wrote (one flag each, relaxed:
    /// only the protocol's fences order them) and the remote queue of its wakes.
    struct Task {
        wakes: RemoteWakes,
        queue: Mutex<Vec<u32>>,
        wrote: [AtomicBool; 2],
    }

    const KEY: u32 = 3;

    impl Task {
        /// `Shared::push_wake`, after writing what the task will read.
        fn wake(&self, waker: usize) {
            self.wrote[waker].store(true, Ordering::Relaxed);
            if self.wakes.mark(KEY) {
                self.queue.lock().push(KEY);
            }
        }

        /// One drain of the loop: the entries it took, then the step they run,
        /// which reports what it sees. Returns how many entries it took, too.
        fn drain_and_step(&self) -> (usize, Option<[bool; 2]>) {
            let entries: Vec<u32> = std::mem::take(&mut *self.queue.lock());
            self.wakes.drained();
            let saw = entries
                .first()
                .map(|_| self.wrote.each_ref().map(|w| w.load(Ordering::Relaxed)));
            (entries.len(), saw)
        }

        fn new() -> Arc<Task> {
            let task = Arc::new(Task {
                wakes: RemoteWakes::new(),
                queue: Mutex::new(Vec::new()),
                wrote: [AtomicBool::new(false), AtomicBool::new(false)],
            });
            task.wakes.reserve(KEY);
            task
        }
    }

    /// Two threads wake one task while the loop drains and steps it: no wake lost
    /// (the task's last step saw what every waker wrote, or an entry is still queued,
    /// whose step will), and never more entries than wakes.
    #[test]
    fn loom_many_wakes_none_lost() {
        loom::model(|| {
            let task = Task::new();
            let wakers: Vec<_> = (0..2)
                .map(|i| {
                    let task = task.clone();
                    thread::spawn(move || task.wake(i))
                })
                .collect();
            let mut last = None;
            let mut entries = 0;
            for _ in 0..2 {
                let (n, saw) = task.drain_and_step();
                entries += n;
                last = saw.or(last);
            }
            for w in wakers {
                w.join().unwrap();
            }
            let left = task.queue.lock().len();
            assert!(
                entries + left <= 2,
                "{} entries for 2 wakes",
                entries + left
            );
            let queued = left > 0;
            assert!(
                queued || last == Some([true, true]),
                "no entry left, and the last step saw {last:?}"
            );
        });
    }

    /// Wakes from two threads between two drains queue one entry, whose step sees
    /// both wakers' writes: one step.
    #[test]
    fn loom_wakes_between_two_drains_make_one_step() {
        loom::model(|| {
            let task = Task::new();
            let wakers: Vec<_> = (0..2)
                .map(|i| {
                    let task = task.clone();
                    thread::spawn(move || task.wake(i))
                })
                .collect();
            for w in wakers {
                w.join().unwrap();
            }
            assert_eq!(task.drain_and_step(), (1, Some([true, true])));
            assert_eq!(task.drain_and_step(), (0, None), "nothing after the step");
        });
    }
}
