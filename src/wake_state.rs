//! `WakeState`: when a producer on another thread must wake the loop.
//!
//! Two words, shared by a loop and every thread that sends it calls:
//! - `pending`: set by the producer whose push finds it clear, cleared by the loop
//!   just before it drains the queue. While it is set, the loop is sure to look at the
//!   queue (it sets no timeout and drains on its next iteration), so later producers
//!   need do nothing.
//! - `state`: [`AWAKE`], [`SLEEPING`] or [`NOTIFIED`]. The loop stores `SLEEPING` just
//!   before it blocks in poll (or returns control to its host) and `AWAKE` when it
//!   runs again; the producer that sets `pending` wakes the loop only if it moves
//!   `state` from `SLEEPING` to `NOTIFIED`.
//!
//! This file decides *whether* to wake; the caller makes the syscall (a write to the
//! loop's eventfd) when [`WakeState::pushed`] says so. A burst of N calls to a
//! sleeping loop therefore costs one syscall, and calls made while the loop is busy
//! cost none. A burst that meets the loop *as it goes to sleep* can cost two, the
//! second spurious (a producer preempted between setting `pending` and its exchange
//! wakes an announcement that the loop withdraws; see the first model): never more
//! than one per announcement.
//!
//! # Why no wake-up is lost
//! The loop, in [`prepare_sleep`](WakeState::prepare_sleep): (S) stores `SLEEPING`,
//! runs fence (F1), (L) loads `pending`; if set, it does not block. A producer, after
//! its push (P0, under the shard's lock): (P) swaps `pending` to true, finding it
//! false, runs fence (F2), (R) loads `state` and tries `SLEEPING → NOTIFIED`. Both
//! fences are `SeqCst`, so one precedes the other in the single total order:
//! - F1 before F2: R observes S or a store after it in `state`'s modification order
//!   (C++20 [atomics.fences] p7). Such a later store is `NOTIFIED` (another producer
//!   won the exchange and wakes the loop) or the loop's own `AWAKE`, which it stores
//!   only once poll returned, before it drains. Either way the loop looks.
//! - F2 before F1: L observes P, or a later store to `pending`: a `false` by a drain
//!   sequenced before this `prepare_sleep`. That drain cleared the flag and *then*
//!   took each shard's lock; the lock order puts its take after P0 (otherwise P,
//!   being after P0, would follow the clear in `pending`'s order), so it took the
//!   call.
//!
//! # Why at most one wake per sleep
//! Only an exchange `SLEEPING → NOTIFIED` leads to a wake, and only the loop stores
//! `SLEEPING` again, once per sleep. Producers that find `pending` set do not look at
//! `state` at all.
//!
//! The models at the bottom check both (`.ci/loom`).

use crate::sync_shim::{AtomicBool, AtomicU8, Ordering, fence};

/// The loop is running callbacks or polling without blocking: it will look at the
/// queue before it sleeps, so producers need not wake it.
const AWAKE: u8 = 0;
/// The loop is blocked in poll, or has returned control to its host: the next
/// producer must wake it.
const SLEEPING: u8 = 1;
/// A producer has woken the sleeping loop; later producers need not.
const NOTIFIED: u8 = 2;

/// The wake-up protocol of one loop's remote queue; see the module docs.
pub(crate) struct WakeState {
    /// Set by a producer after it pushed; cleared by the loop before it drains. The
    /// loop reads it without the queue's locks to learn whether anything waits.
    pending: AtomicBool,
    /// `AWAKE`, `SLEEPING` or `NOTIFIED`. A new loop is `SLEEPING`: it has not run,
    /// so a call sent before its first run makes its fd readable.
    state: AtomicU8,
}

impl WakeState {
    pub(crate) fn new() -> WakeState {
        WakeState {
            pending: AtomicBool::new(false),
            state: AtomicU8::new(SLEEPING),
        }
    }

    /// Producer side, after queueing a call: true if the caller must wake the loop.
    pub(crate) fn pushed(&self) -> bool {
        // If `pending` is already set, whoever set it (after the loop last cleared it)
        // has made sure the loop will look: our call is in the same batch. Only the
        // producer that sets it runs the wake-up protocol. Reading first keeps the
        // flag's cache line shared while the loop is busy.
        !self.pending.load(Ordering::Acquire)
            && !self.pending.swap(true, Ordering::AcqRel)
            && self.notify()
    }

    /// Producer side: true if the loop sleeps and nobody has woken it yet (the caller
    /// must now).
    fn notify(&self) -> bool {
        // F2 of the module docs: either the loop sees `pending` when it re-checks, or
        // we see its SLEEPING.
        fence(Ordering::SeqCst);
        self.state.load(Ordering::Relaxed) == SLEEPING
            && self
                .state
                .compare_exchange(SLEEPING, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Loop side: whether calls are waiting.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Loop side, before it takes the queued calls: false if none are waiting. Clears
    /// `pending` before the caller takes the shards' locks, so that a push after the
    /// take sets it again.
    pub(crate) fn begin_drain(&self) -> bool {
        if !self.pending.load(Ordering::Acquire) {
            return false;
        }
        self.pending.store(false, Ordering::Release);
        true
    }

    /// Loop side, before blocking or returning to the host. Returns false if calls
    /// are already queued (then the loop must not block).
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.state.store(SLEEPING, Ordering::SeqCst);
        // F1 of the module docs.
        fence(Ordering::SeqCst);
        if self.pending.load(Ordering::SeqCst) {
            self.state.store(AWAKE, Ordering::Relaxed);
            false
        } else {
            true
        }
    }

    /// Loop side: it runs again and will drain the queue before sleeping.
    pub(crate) fn awake(&self) {
        self.state.store(AWAKE, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_burst_costs_one_wake_and_a_busy_loop_none() {
        let ws = WakeState::new();
        assert!(ws.prepare_sleep());
        assert!(ws.pushed(), "the first call wakes the sleeping loop");
        assert!(!ws.pushed(), "the rest of the burst does not");
        assert!(ws.begin_drain());
        ws.awake();
        assert!(!ws.pushed(), "pending was clear, but the loop is awake");
        assert!(
            !ws.prepare_sleep(),
            "a call is pending: the loop must not block"
        );
        assert!(ws.begin_drain());
        assert!(!ws.begin_drain(), "nothing pending twice");
        assert!(ws.prepare_sleep());
        assert!(ws.pushed(), "asleep again: the next call wakes it");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync_shim::{Arc, Mutex};
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    /// A loop's queue (one shard is enough: its lock is what orders a push and a
    /// take) and a counter of eventfd writes.
    struct Remote {
        ws: WakeState,
        queue: Mutex<Vec<u32>>,
        wakes: AtomicUsize,
    }

    impl Remote {
        fn new() -> Arc<Remote> {
            Arc::new(Remote {
                ws: WakeState::new(),
                queue: Mutex::new(Vec::new()),
                wakes: AtomicUsize::new(0),
            })
        }

        /// What `Shared::push` does.
        fn push(&self, call: u32) {
            self.queue.lock().push(call);
            if self.ws.pushed() {
                self.wakes.fetch_add(1, Ordering::SeqCst);
            }
        }

        /// What `Shared::drain` does: how many calls it took.
        fn drain(&self) -> usize {
            if self.ws.begin_drain() {
                self.queue.lock().drain(..).count()
            } else {
                0
            }
        }

        /// Iterations of the loop until it decides to block: true if it did within
        /// `max` of them. Counts its announcements (`prepare_sleep` calls).
        fn run_until_asleep(&self, max: usize, announced: &mut usize) -> bool {
            for _ in 0..max {
                self.drain();
                *announced += 1;
                if self.ws.prepare_sleep() {
                    return true;
                }
                // Calls pending: poll with a zero timeout, then run again.
                self.ws.awake();
            }
            false
        }
    }

    /// Threadsafe calls from two threads racing with the loop going to sleep: when
    /// the loop blocks with a call still queued, some producer woke it; and no
    /// announcement of sleep is woken twice.
    ///
    /// (Not one wake per batch: a producer that set `pending` and is preempted before
    /// its exchange may wake an announcement that is then withdrawn, because the
    /// other producer's call was pending; the loop drains both calls, sleeps, and the
    /// other producer, which set `pending` again after the drain cleared it, wakes it
    /// once more, spuriously. Two wakes for one batch, in that interleaving only.)
    #[test]
    fn loom_no_lost_wakeup_and_no_sleep_woken_twice() {
        loom::model(|| {
            let r = Remote::new();
            r.ws.awake(); // the loop is running when the burst comes
            let producers: Vec<_> = (0..2)
                .map(|i| {
                    let r = r.clone();
                    thread::spawn(move || r.push(i))
                })
                .collect();
            let mut announced = 0;
            let asleep = r.run_until_asleep(3, &mut announced);
            for p in producers {
                p.join().unwrap();
            }
            assert!(asleep, "two calls keep the loop up at most two iterations");
            let queued = r.queue.lock().len();
            let wakes = r.wakes.load(Ordering::SeqCst);
            assert!(
                queued == 0 || wakes >= 1,
                "the loop sleeps on {queued} calls, unwoken"
            );
            assert!(wakes <= announced, "{wakes} wakes for {announced} sleeps");
        });
    }

    /// A burst from two threads to a loop that is asleep costs exactly one wake.
    #[test]
    fn loom_a_burst_to_a_sleeping_loop_costs_one_wake() {
        loom::model(|| {
            let r = Remote::new();
            r.ws.awake();
            assert!(r.ws.prepare_sleep());
            let producers: Vec<_> = (0..2)
                .map(|i| {
                    let r = r.clone();
                    thread::spawn(move || r.push(i))
                })
                .collect();
            for p in producers {
                p.join().unwrap();
            }
            assert_eq!(r.wakes.load(Ordering::SeqCst), 1);
            r.ws.awake();
            assert_eq!(r.drain(), 2, "the woken loop takes both calls");
        });
    }

    /// A woken loop drains, sleeps again, and the next call wakes it again: one wake
    /// per sleep, none lost across two sleeps.
    #[test]
    fn loom_each_sleep_gets_its_own_wake() {
        loom::model(|| {
            let r = Remote::new();
            let producer = {
                let r = r.clone();
                thread::spawn(move || {
                    r.push(0);
                    r.push(1);
                })
            };
            // A loop that has not run yet is asleep: the first call wakes it.
            let mut sleeps = 1;
            let mut wakes_seen = 0;
            for _ in 0..3 {
                let wakes = r.wakes.load(Ordering::SeqCst);
                if wakes == wakes_seen {
                    break; // not woken: it stays blocked
                }
                wakes_seen = wakes;
                r.ws.awake();
                assert!(r.run_until_asleep(3, &mut 0));
                sleeps += 1;
            }
            producer.join().unwrap();
            let wakes = r.wakes.load(Ordering::SeqCst);
            let queued = r.queue.lock().len();
            assert!(wakes <= sleeps, "{wakes} wakes for {sleeps} sleeps");
            // Blocked for good with calls queued: the last sleep must have a wake.
            if queued > 0 {
                assert!(
                    wakes > wakes_seen,
                    "the loop sleeps on {queued} calls, unwoken"
                );
            }
        });
    }
}
