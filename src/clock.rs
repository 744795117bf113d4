//! The loop's clock: the system's monotonic clock, or a manual (virtual) one for tests.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::manual_time::ManualTime;
use crate::remote::Shared;

/// The time source of a [`Loop`](crate::Loop).
///
/// [`Clock::system()`] (the default) is the monotonic clock. [`Clock::manual()`] is
/// a virtual clock for tests: it stands still until [`advance`](Clock::advance) moves
/// it, except that by default it *auto-advances*: when a loop that uses it has
/// nothing ready, no I/O event and no threadsafe call pending, it jumps straight to the
/// loop's next timer instead of sleeping. A test of a one-hour timeout then takes
/// milliseconds, and readers, writers and threadsafe calls still work.
///
/// Clones share one time: advancing a clone advances them all, and wakes every loop
/// built with the clock.
///
/// # Range
/// A clock reads from about 146 years before its creation to about 438 years after.
/// A deadline past the end (`call_later(Duration::MAX)`, `sleep(Duration::MAX)`,
/// `call_at` with a far-off instant) means *never*: the timer never fires, and it
/// neither moves a manual clock nor makes a loop wake up. A manual clock advanced
/// past the end stops there.
///
/// ```
/// use std::time::Duration;
/// use std::{cell::Cell, rc::Rc};
/// use evloop::{Clock, Loop};
///
/// let clock = Clock::manual();
/// let lp = Loop::builder().clock(clock.clone()).build().unwrap();
/// let start = lp.time();
/// let fired = Rc::new(Cell::new(false));
/// let f = fired.clone();
/// lp.call_later(Duration::from_secs(3600), move |lp| { f.set(true); lp.stop(); });
/// lp.run_forever().unwrap(); // returns at once: the clock jumped an hour
/// assert!(fired.get());
/// assert_eq!(lp.time() - start, Duration::from_secs(3600));
/// ```
#[derive(Clone)]
pub struct Clock {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    System { epoch: Instant },
    Manual(Arc<Manual>),
}

struct Manual {
    epoch: Instant,
    /// Virtual time in timer-store nanoseconds (see [`EPOCH_OFFSET`]); only grows.
    time: ManualTime,
    /// The loops that use this clock, woken when it is advanced.
    loops: Mutex<Vec<Weak<Shared>>>,
}

impl Clock {
    /// The system's monotonic clock ([`Instant::now`]).
    pub fn system() -> Clock {
        Clock {
            kind: Kind::System {
                epoch: Instant::now(),
            },
        }
    }

    /// A virtual clock that starts at the current instant and moves only when
    /// advanced (by [`advance`](Clock::advance), or automatically to the next timer
    /// when a loop using it is idle).
    pub fn manual() -> Clock {
        Clock {
            kind: Kind::Manual(Arc::new(Manual {
                epoch: Instant::now(),
                time: ManualTime::new(EPOCH_OFFSET),
                loops: Mutex::new(Vec::new()),
            })),
        }
    }

    /// Turns auto-advance of a manual clock on (the default) or off. With it off, the
    /// clock moves only through [`advance`](Clock::advance), and a loop waiting for a
    /// timer sleeps until then.
    ///
    /// # Panics
    /// On a system clock: its time cannot be steered.
    pub fn set_auto_advance(&self, on: bool) {
        self.manual_state("set_auto_advance")
            .time
            .set_auto_advance(on);
    }

    /// Moves a manual clock forward by `d` and wakes the loops that use it, so that
    /// timers now due run. Callable from any thread.
    ///
    /// The clock's range ends about 438 years after it was made: an advance past the
    /// end (`advance(Duration::MAX)`) stops there, no overflow and no panic. Timers
    /// beyond the range (`call_later(Duration::MAX)`) never come due, even then.
    ///
    /// # Panics
    /// On a system clock: its time cannot be steered.
    pub fn advance(&self, d: Duration) {
        let m = self.manual_state("advance");
        m.time.advance(nanos(d), LAST);
        m.notify();
    }

    /// A fresh reading of this clock.
    pub fn now(&self) -> Instant {
        self.instant_at(self.now_ns())
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self.kind, Kind::Manual(_))
    }

    fn manual_state(&self, what: &str) -> &Manual {
        match &self.kind {
            Kind::Manual(m) => m,
            Kind::System { .. } => {
                panic!("Clock::{what} works on a manual clock only: build it with Clock::manual()")
            }
        }
    }

    /// The current time in timer-store nanoseconds: [`EPOCH_OFFSET`] plus the time
    /// since this clock's epoch. Never more than [`LAST`], so never [`NEVER`].
    pub(crate) fn now_ns(&self) -> u64 {
        match &self.kind {
            Kind::System { epoch } => EPOCH_OFFSET
                .saturating_add(nanos(epoch.elapsed()))
                .min(LAST),
            Kind::Manual(m) => m.time.now(),
        }
    }

    /// The instant of timer-store time `ns`.
    pub(crate) fn instant_at(&self, ns: u64) -> Instant {
        instant_at(self.epoch(), ns)
    }

    /// The timer-store time of `when`. Instants before the epoch keep their order
    /// (down to 146 years back; earlier ones count as that).
    pub(crate) fn ns_of(&self, when: Instant) -> u64 {
        let epoch = self.epoch();
        match when.checked_duration_since(epoch) {
            Some(after) => EPOCH_OFFSET.saturating_add(nanos(after)),
            None => EPOCH_OFFSET.saturating_sub(nanos(epoch - when)),
        }
    }

    /// The instant that timer-store time [`EPOCH_OFFSET`] stands for.
    pub(crate) fn epoch(&self) -> Instant {
        match &self.kind {
            Kind::System { epoch } => *epoch,
            Kind::Manual(m) => m.epoch,
        }
    }

    /// For a manual clock with auto-advance: jump to `ns` if it is in the future (a
    /// deadline beyond the range, [`NEVER`], is no place to jump to: at most [`LAST`]).
    /// Returns whether the clock is one that auto-advances.
    pub(crate) fn auto_advance_to(&self, ns: u64) -> bool {
        match &self.kind {
            Kind::Manual(m) if m.time.auto_advances() => {
                m.time.jump_to(ns.min(LAST));
                true
            }
            _ => false,
        }
    }

    /// Whether an idle loop should jump in time rather than sleep.
    pub(crate) fn auto_advances(&self) -> bool {
        matches!(&self.kind, Kind::Manual(m) if m.time.auto_advances())
    }

    /// Remembers a loop to wake when a manual clock is advanced.
    pub(crate) fn attach(&self, shared: &Arc<Shared>) {
        if let Kind::Manual(m) = &self.kind {
            let mut loops = m.loops.lock();
            loops.retain(|w| w.strong_count() > 0);
            loops.push(Arc::downgrade(shared));
        }
    }
}

impl Manual {
    fn notify(&self) {
        let loops: Vec<Arc<Shared>> = self.loops.lock().iter().filter_map(Weak::upgrade).collect();
        // Unconditionally: a loop that read the clock just before this advance may be
        // about to sleep without a timeout; the coalesced protocol would miss it (see
        // `crate::manual_time`).
        for shared in loops {
            shared.force_wake();
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::System { .. } => f.write_str("Clock::system()"),
            Kind::Manual(m) => write!(
                f,
                "Clock::manual(+{:?})",
                Duration::from_nanos(m.time.now() - EPOCH_OFFSET)
            ),
        }
    }
}

/// Timer-store times are `u64` nanoseconds, with the clock's epoch (its creation)
/// at this offset, so that instants before the epoch (a `call_at` with a deadline in
/// the past) keep their order: 2^62 ns, about 146 years back, and 438 years ahead.
pub(crate) const EPOCH_OFFSET: u64 = 1 << 62;

/// The last time a clock reads: the end of its range, about 438 years after its
/// creation. A manual clock advanced further stops here.
pub(crate) const LAST: u64 = u64::MAX - 1;

/// A deadline beyond the clock's range (`call_later(Duration::MAX)`, a `call_at` past
/// [`LAST`]): it is never due, since the clock never reads it.
pub(crate) const NEVER: u64 = u64::MAX;

/// The instant of timer-store time `ns` on a clock whose epoch is `epoch`: exact for
/// every time a clock reads or `ns_of` returns unsaturated (146 years before the epoch
/// to 438 years after it); earlier times count as the epoch.
pub(crate) fn instant_at(epoch: Instant, ns: u64) -> Instant {
    if ns >= EPOCH_OFFSET {
        epoch + Duration::from_nanos(ns - EPOCH_OFFSET)
    } else {
        epoch
            .checked_sub(Duration::from_nanos(EPOCH_OFFSET - ns))
            .unwrap_or(epoch)
    }
}

/// A duration in whole nanoseconds, saturating (u64 nanoseconds last 584 years).
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    // In 64-bit arithmetic (`as_nanos` is a 128-bit product): this runs per `call_at`.
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_is_exact_then_saturates() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::new(1, 999_999_999),
            Duration::from_nanos(u64::MAX),
            Duration::new(u64::MAX / 1_000_000_000, 0),
        ] {
            assert_eq!(nanos(d), u64::try_from(d.as_nanos()).unwrap(), "{d:?}");
        }
        assert_eq!(
            nanos(Duration::from_nanos(u64::MAX) + Duration::from_nanos(1)),
            u64::MAX
        );
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
