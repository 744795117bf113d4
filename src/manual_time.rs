//! `ManualTime`: the shared time of a manual [`Clock`](crate::Clock), moved by
//! `Clock::advance` from any thread and by its loops' auto-advance.
//!
//! The time is one atomic word that only grows: an advance adds (saturating at the
//! clock's last time) and an auto-advance jumps to a deadline with `fetch_max`, both
//! read-modify-writes, so neither is lost to the other.
//!
//! # Waking the loops
//! After an advance, `Clock::advance` wakes every loop that uses the clock
//! unconditionally (a write to each loop's eventfd), not through the coalesced
//! protocol of [`WakeState`](crate::wake_state): that protocol decides from the
//! `pending` flag of the remote queue, which an advance does not set, so a loop that
//! read the time just before the advance and then announced its sleep would find no
//! call pending and block with a timeout computed from the old time. The eventfd
//! stays readable until the loop polls it, so the loop's next poll returns, whenever
//! the write comes. The model at the bottom checks both (`.ci/loom`).

use crate::sync_shim::{AtomicBool, AtomicU64, Ordering};

/// A manual clock's time and its auto-advance switch; see the module docs.
pub(crate) struct ManualTime {
    /// Only grows.
    now_ns: AtomicU64,
    auto_advance: AtomicBool,
}

impl ManualTime {
    /// A time that starts at `start`, with auto-advance on.
    pub(crate) fn new(start: u64) -> ManualTime {
        ManualTime {
            now_ns: AtomicU64::new(start),
            auto_advance: AtomicBool::new(true),
        }
    }

    /// The time now.
    pub(crate) fn now(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }

    /// Moves the time forward by `d`, but not past `last`.
    pub(crate) fn advance(&self, d: u64, last: u64) {
        let _ = self
            .now_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(d).min(last))
            });
    }

    /// Moves the time to `ns` if that is later.
    pub(crate) fn jump_to(&self, ns: u64) {
        self.now_ns.fetch_max(ns, Ordering::SeqCst);
    }

    pub(crate) fn set_auto_advance(&self, on: bool) {
        self.auto_advance.store(on, Ordering::SeqCst);
    }

    pub(crate) fn auto_advances(&self) -> bool {
        self.auto_advance.load(Ordering::SeqCst)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync_shim::Arc;
    use crate::wake_state::WakeState;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    /// A loop that uses the clock, with a timer due at `DUE`.
    struct Loop {
        time: ManualTime,
        ws: WakeState,
        /// Writes to the loop's eventfd.
        eventfd: AtomicUsize,
    }

    const DUE: u64 = 100;

    /// `Clock::advance` racing with the loop going to sleep: if the loop blocks
    /// having read a time at which its timer was not due, and the advance made it
    /// due, the loop's eventfd was written (its poll returns and the timer fires).
    #[test]
    fn loom_advance_racing_sleep_wakes_the_loop() {
        loom::model(|| {
            let lp = Arc::new(Loop {
                time: ManualTime::new(0),
                ws: WakeState::new(),
                eventfd: AtomicUsize::new(0),
            });
            lp.time.set_auto_advance(false);
            lp.ws.awake();
            let advancer = {
                let lp = lp.clone();
                thread::spawn(move || {
                    lp.time.advance(DUE, u64::MAX - 1);
                    // Unconditionally (see the module docs).
                    lp.eventfd.fetch_add(1, Ordering::SeqCst);
                })
            };
            // One iteration of the loop: timers, then the decision to block.
            let fired = lp.time.now() >= DUE;
            let blocked = !fired && lp.ws.prepare_sleep();
            advancer.join().unwrap();
            if blocked {
                assert!(
                    lp.eventfd.load(Ordering::SeqCst) > 0,
                    "the loop sleeps past its due timer"
                );
            }
            assert_eq!(lp.time.now(), DUE);
        });
    }

    /// An advance from another thread racing with the loop's auto-advance to its
    /// next deadline: neither is lost, and time only grows.
    #[test]
    fn loom_advance_racing_auto_advance() {
        loom::model(|| {
            let time = Arc::new(ManualTime::new(0));
            let advancer = {
                let time = time.clone();
                thread::spawn(move || {
                    let before = time.now();
                    time.advance(10, u64::MAX - 1);
                    let after = time.now();
                    assert!(after >= before + 10, "advanced from {before} to {after}");
                })
            };
            time.jump_to(100);
            let seen = time.now();
            assert!(seen >= 100);
            advancer.join().unwrap();
            let end = time.now();
            assert!(end >= seen && (end == 100 || end == 110), "ended at {end}");
        });
    }
}
