//! Counted permits handed over in FIFO order: the engine of [`Lock`](super::Lock)
//! (one permit), [`Semaphore`](super::Semaphore) (n permits) and
//! [`Queue`](super::Queue) (a permit per item and one per free slot).
//!
//! A released permit goes straight to the oldest queued waiter, which is served
//! (taken out of the [`Line`]) and owns it from then on, before anyone else can see
//! it; only with no one
//! queued is it counted as available. So a newcomer never barges ahead of a queued
//! waiter, and a woken waiter never finds its permit gone. A waiter that is dropped
//! after being handed a permit releases it again, to the next waiter in line.

use std::task::{Poll, Waker};

use super::line::Line;
use crate::waiters::Wakeups;

/// A count of free permits and the FIFO of waiters for them.
pub(crate) struct Permits {
    /// Permits no one holds and no waiter has been handed.
    ///
    /// Invariant: `available > 0` implies no waiter is queued: a permit released
    /// while someone is queued goes to the oldest of them instead of being counted.
    available: usize,
    /// Waiters for a permit. Invariant: each waiter *served* from the line (and
    /// still holding its ticket) owns exactly one permit, handed to it by
    /// [`release`](Permits::release); it takes the permit when it polls (through
    /// [`Ticket::poll`]) or gives it back by being cancelled (through
    /// [`Ticket::cancel`]).
    waiters: Line,
    /// No permit will be released any more to waiters that are not already served
    /// (a queue shut down): a queued waiter that polls leaves with "closed", and so
    /// does a newcomer that finds no permit available. Served waiters keep theirs.
    closed: bool,
}

impl Permits {
    /// `available` free permits and no waiters.
    pub(crate) fn new(available: usize) -> Permits {
        Permits {
            available,
            waiters: Line::default(),
            closed: false,
        }
    }

    /// Closes the permits (see `closed`) and wakes every queued waiter, so that it
    /// polls again and leaves.
    pub(crate) fn close(&mut self, wakeups: &mut Wakeups) {
        self.closed = true;
        self.waiters.wake_queued(wakeups);
    }

    /// Forgets the available permits (their items are gone: a queue shut down at
    /// once). Waiters already handed one keep it.
    pub(crate) fn clear_available(&mut self) {
        self.available = 0;
    }

    /// Permits free for a newcomer right now.
    pub(crate) fn available(&self) -> usize {
        self.available
    }

    /// How many waiters are queued (not yet handed a permit).
    pub(crate) fn queued(&self) -> usize {
        self.waiters.queued()
    }

    /// Takes a free permit if there is one (which, by the invariant on `available`,
    /// means no one is queued, so this is never barging).
    #[inline(always)]
    pub(crate) fn try_acquire(&mut self) -> bool {
        if self.available > 0 {
            self.available -= 1;
            true
        } else {
            false
        }
    }

    /// Gives back `n` permits: each goes to the oldest queued waiter, the rest to
    /// `available`.
    ///
    /// # Panics
    /// If `available` would overflow `usize`.
    #[inline(always)] // hot in every queue operation; folds to a branch for `n == 1`
    pub(crate) fn release(&mut self, n: usize, wakeups: &mut Wakeups) {
        let mut left = n;
        while left > 0 && self.waiters.serve_one(wakeups) {
            left -= 1;
        }
        self.available = self
            .available
            .checked_add(left)
            .expect("permit count overflows usize");
    }
}

impl Permits {
    /// [`release`](Permits::release) of one permit, handing back the waker of the
    /// waiter it went to (if any), for a caller that has nothing else to wake: it
    /// wakes it once its borrow has ended (through a
    /// [`WakeOnUnwind`](crate::waiters::WakeOnUnwind) declared before the borrow).
    #[inline(always)]
    pub(crate) fn release_one(&mut self) -> Option<Waker> {
        match self.waiters.serve_one_taking() {
            Some(waker) => waker,
            None => {
                self.release_unqueued(1);
                None
            }
        }
    }

    /// [`release`](Permits::release) of `n` permits when no waiter is queued (the
    /// caller has checked [`queued`](Permits::queued)): they are all free.
    #[inline(always)]
    pub(crate) fn release_unqueued(&mut self, n: usize) {
        debug_assert_eq!(self.waiters.queued(), 0, "permits: waiters queued");
        self.available = self
            .available
            .checked_add(n)
            .expect("permit count overflows usize");
    }
}

/// One waiter's place in a [`Permits`] queue: what a future that acquires a
/// permit keeps between polls.
#[derive(Debug, Default)]
pub(crate) enum Ticket {
    /// Not polled yet, or polled and not queued.
    #[default]
    Idle,
    /// Holding this ticket of `Permits::waiters`: queued, or served (and then
    /// owning a permit).
    Waiting(u64),
    /// The permit was taken; the future has completed.
    Done,
}

impl Ticket {
    /// Polls for one permit. `Ready` means the caller now owns a permit.
    ///
    /// # Panics
    /// If polled again after returning `Ready`, naming `what` was polled.
    #[inline(always)]
    pub(crate) fn poll(
        &mut self,
        permits: &mut Permits,
        waker: &Waker,
        wakeups: &mut Wakeups,
        what: &str,
    ) -> Poll<()> {
        self.poll_unless_closed(permits, waker, wakeups, what)
            .map(|got| {
                if !got {
                    permits_closed(what)
                }
            })
    }

    /// The first poll of a waiter that has to wait (no permit free, the permits
    /// open), the common case of a contended primitive: queues the waiter and returns
    /// `true`. Otherwise changes nothing and returns `false`, for
    /// [`poll`](Ticket::poll) to do the rest. It wakes and drops no waker, so its
    /// caller's [`Wakeups`] stays empty.
    #[inline(always)]
    pub(crate) fn queue_if_none_free(&mut self, permits: &mut Permits, waker: &Waker) -> bool {
        if matches!(self, Ticket::Idle) && permits.available == 0 && !permits.closed {
            *self = Ticket::Waiting(permits.waiters.push(waker));
            true
        } else {
            false
        }
    }

    /// Takes the caller's permit if it has one now without waiting: a free one for
    /// an idle ticket, or the one a served ticket was handed (closed or not, as
    /// [`poll_unless_closed`](Ticket::poll_unless_closed) does). Returns whether it
    /// did (the ticket is then done); otherwise changes nothing.
    #[inline(always)]
    pub(crate) fn take_ready(&mut self, permits: &mut Permits) -> bool {
        let ready = match *self {
            Ticket::Idle => permits.try_acquire(),
            Ticket::Waiting(key) => permits.waiters.is_served(key),
            Ticket::Done => false,
        };
        if ready {
            *self = Ticket::Done;
        }
        ready
    }

    /// [`poll`](Ticket::poll) on permits that may be [closed](Permits::close):
    /// `Ready(true)` means the caller now owns a permit, `Ready(false)` that none
    /// will come (the ticket is done either way).
    #[inline(always)] // the call would cost more than its common paths
    pub(crate) fn poll_unless_closed(
        &mut self,
        permits: &mut Permits,
        waker: &Waker,
        wakeups: &mut Wakeups,
        what: &str,
    ) -> Poll<bool> {
        match *self {
            Ticket::Idle => {
                if permits.try_acquire() {
                    *self = Ticket::Done;
                    return Poll::Ready(true);
                }
                if permits.closed {
                    *self = Ticket::Done;
                    return Poll::Ready(false);
                }
                *self = Ticket::Waiting(permits.waiters.push(waker));
                Poll::Pending
            }
            Ticket::Waiting(key) => {
                if permits.waiters.is_served(key) {
                    *self = Ticket::Done;
                    Poll::Ready(true)
                } else if permits.closed {
                    permits.waiters.leave(key, wakeups);
                    *self = Ticket::Done;
                    Poll::Ready(false)
                } else {
                    permits.waiters.register(key, waker, wakeups);
                    Poll::Pending
                }
            }
            Ticket::Done => polled_after_completion(what),
        }
    }

    /// Leaves the queue (the waiting future is being dropped). A permit the waiter
    /// had already been handed goes on to the next waiter: a cancelled waiter never
    /// swallows a wake-up.
    pub(crate) fn cancel(&mut self, permits: &mut Permits, wakeups: &mut Wakeups) {
        if let Ticket::Waiting(key) = *self {
            *self = Ticket::Idle;
            if permits.waiters.is_served(key) {
                permits.release(1, wakeups);
            } else {
                permits.waiters.leave(key, wakeups);
            }
        }
    }

    /// Whether the ticket is queued (or served) and must be cancelled on drop.
    #[inline(always)]
    pub(crate) fn is_waiting(&self) -> bool {
        matches!(self, Ticket::Waiting(_))
    }
}

/// The panic of a [`Ticket`] polled again after it returned `Ready`; out of line, so
/// that the hot path does not build its message's arguments.
#[cold]
#[inline(never)]
#[track_caller]
fn polled_after_completion(what: &str) -> ! {
    panic!("`{what}` polled after completion")
}

/// The panic of [`Ticket::poll`] on closed permits (a primitive that never closes
/// them).
#[cold]
#[inline(never)]
#[track_caller]
fn permits_closed(what: &str) -> ! {
    panic!("`{what}`: permits closed")
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn poll(t: &mut Ticket, p: &mut Permits) -> Poll<()> {
        let mut w = Wakeups::default();
        t.poll(p, Waker::noop(), &mut w, "test")
    }

    #[test]
    fn free_permits_are_taken_at_once() {
        let mut p = Permits::new(2);
        let (mut a, mut b, mut c) = (Ticket::Idle, Ticket::Idle, Ticket::Idle);
        assert!(poll(&mut a, &mut p).is_ready());
        assert!(poll(&mut b, &mut p).is_ready());
        assert!(poll(&mut c, &mut p).is_pending());
        assert_eq!((p.available(), p.queued()), (0, 1));
    }

    #[test]
    fn release_hands_over_in_fifo_order() {
        let mut p = Permits::new(0);
        let mut t: Vec<Ticket> = (0..3).map(|_| Ticket::Idle).collect();
        for t in &mut t {
            assert!(poll(t, &mut p).is_pending());
        }
        p.release(2, &mut Wakeups::default());
        assert_eq!((p.available(), p.queued()), (0, 1));
        // A newcomer finds nothing free: the two permits belong to t[0] and t[1].
        assert!(!p.try_acquire());
        assert!(poll(&mut t[1], &mut p).is_ready());
        assert!(poll(&mut t[0], &mut p).is_ready());
        assert!(poll(&mut t[2], &mut p).is_pending());
    }

    #[test]
    fn cancelled_notified_waiter_passes_its_permit_on() {
        let mut p = Permits::new(0);
        let (mut a, mut b) = (Ticket::Idle, Ticket::Idle);
        assert!(poll(&mut a, &mut p).is_pending());
        assert!(poll(&mut b, &mut p).is_pending());
        p.release(1, &mut Wakeups::default());
        a.cancel(&mut p, &mut Wakeups::default());
        assert!(poll(&mut b, &mut p).is_ready());
        assert_eq!(p.available(), 0);
    }

    #[test]
    fn cancelled_notified_waiter_with_no_successor_frees_its_permit() {
        let mut p = Permits::new(0);
        let mut a = Ticket::Idle;
        assert!(poll(&mut a, &mut p).is_pending());
        p.release(1, &mut Wakeups::default());
        a.cancel(&mut p, &mut Wakeups::default());
        assert_eq!(p.available(), 1);
    }

    #[test]
    fn cancelled_queued_waiter_takes_nothing() {
        let mut p = Permits::new(0);
        let (mut a, mut b) = (Ticket::Idle, Ticket::Idle);
        assert!(poll(&mut a, &mut p).is_pending());
        assert!(poll(&mut b, &mut p).is_pending());
        a.cancel(&mut p, &mut Wakeups::default());
        assert_eq!((p.available(), p.queued()), (0, 1));
        p.release(1, &mut Wakeups::default());
        assert!(poll(&mut b, &mut p).is_ready());
    }

    #[test]
    fn closing_sends_queued_waiters_away_and_keeps_handed_permits() {
        let mut p = Permits::new(0);
        let (mut a, mut b, mut c) = (Ticket::Idle, Ticket::Idle, Ticket::Idle);
        let mut w = Wakeups::default();
        let mut poll = |t: &mut Ticket, p: &mut Permits| {
            t.poll_unless_closed(p, Waker::noop(), &mut w, "test")
        };
        assert!(poll(&mut a, &mut p).is_pending());
        assert!(poll(&mut b, &mut p).is_pending());
        p.release(1, &mut Wakeups::default()); // handed to a
        p.close(&mut Wakeups::default());
        assert_eq!(poll(&mut b, &mut p), Poll::Ready(false));
        assert_eq!(poll(&mut c, &mut p), Poll::Ready(false));
        assert_eq!(poll(&mut a, &mut p), Poll::Ready(true));
        assert_eq!(p.queued(), 0);
    }

    #[test]
    #[should_panic(expected = "`test` polled after completion")]
    fn polling_after_completion_panics() {
        let mut p = Permits::new(1);
        let mut a = Ticket::Idle;
        assert!(poll(&mut a, &mut p).is_ready());
        let _ = poll(&mut a, &mut p);
    }
}
