//! Loop statistics: counters cheap enough to be always on.

use std::cell::Cell;
use std::panic::Location;
use std::time::Duration;

/// A snapshot of a loop's counters, from [`Loop::stats`](crate::Loop::stats).
///
/// Counting costs a plain (non-atomic) increment per event. Clock readings are
/// taken only around polls of the OS (which make a syscall anyway), never per callback,
/// except in debug mode, which times every callback and so also knows the longest.
///
/// ```
/// let lp = evloop::Loop::new().unwrap();
/// for _ in 0..3 {
///     lp.call_soon(|_| {});
/// }
/// lp.stop();
/// lp.run_forever().unwrap();
/// let s = lp.stats();
/// assert_eq!(s.callbacks_run, 3);
/// assert_eq!(s.iterations, 1);
/// assert!(s.ready_high_water >= 3);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Iterations run.
    pub iterations: u64,
    /// Callbacks run: `call_soon` and timer callbacks, readers, writers, threadsafe
    /// calls and task steps (cancelled ones are not counted).
    pub callbacks_run: u64,
    /// Timers scheduled with `call_later` / `call_at` (sleeps included).
    pub timers_scheduled: u64,
    /// Timers whose callback was queued because their deadline passed.
    pub timers_fired: u64,
    /// Timers cancelled before they fired.
    pub timers_cancelled: u64,
    /// Threadsafe calls received from other threads, wakes of tasks included (wakes
    /// of one task from other threads are coalesced: those that arrive while one of
    /// them is still queued count as none).
    pub remote_calls: u64,
    /// Times another thread woke the loop out of a blocking poll, or out of its host.
    pub wakeups: u64,
    /// Polls of the OS (blocking or not).
    pub polls: u64,
    /// Time spent blocked in poll, waiting for something to do.
    pub time_blocked: Duration,
    /// Time spent between polls: running callbacks, plus the loop's own bookkeeping.
    pub time_busy: Duration,
    /// The longest callback and where it was scheduled (debug mode only: measuring it
    /// needs a clock reading per callback).
    pub longest_callback: Option<(Duration, &'static Location<'static>)>,
    /// The most entries the ready queue held at the start of a run phase.
    pub ready_high_water: usize,
}

/// The live counters, in the loop.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) iterations: Cell<u64>,
    pub(crate) callbacks_run: Cell<u64>,
    pub(crate) timers_scheduled: Cell<u64>,
    pub(crate) timers_fired: Cell<u64>,
    pub(crate) timers_cancelled: Cell<u64>,
    pub(crate) remote_calls: Cell<u64>,
    pub(crate) wakeups: Cell<u64>,
    pub(crate) polls: Cell<u64>,
    pub(crate) time_blocked: Cell<Duration>,
    pub(crate) time_busy: Cell<Duration>,
    pub(crate) longest_callback: Cell<Option<(Duration, &'static Location<'static>)>>,
    pub(crate) ready_high_water: Cell<usize>,
}

/// Adds `n` to a counter.
pub(crate) fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            iterations: self.iterations.get(),
            callbacks_run: self.callbacks_run.get(),
            timers_scheduled: self.timers_scheduled.get(),
            timers_fired: self.timers_fired.get(),
            timers_cancelled: self.timers_cancelled.get(),
            remote_calls: self.remote_calls.get(),
            wakeups: self.wakeups.get(),
            polls: self.polls.get(),
            time_blocked: self.time_blocked.get(),
            time_busy: self.time_busy.get(),
            longest_callback: self.longest_callback.get(),
            ready_high_water: self.ready_high_water.get(),
        }
    }

    /// Debug mode: records a callback's duration.
    pub(crate) fn callback_took(&self, took: Duration, location: &'static Location<'static>) {
        if self.longest_callback.get().is_none_or(|(d, _)| took > d) {
            self.longest_callback.set(Some((took, location)));
        }
    }
}
