//! [`BoundedSemaphore`]: asyncio's `BoundedSemaphore`, a semaphore whose
//! `release()` refuses to go past its initial count.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::permits::{Permits, Ticket};
use crate::waiters::Wakeups;

/// A semaphore that never holds more permits than it started with (asyncio's
/// `BoundedSemaphore`).
///
/// [`acquire`](BoundedSemaphore::acquire) resolves to a [`BoundedPermit`] that gives
/// its permit back when dropped, as [`Semaphore`](super::Semaphore)'s. For asyncio's
/// unpaired style, [`BoundedPermit::forget`] keeps the permit out and
/// [`release`](BoundedSemaphore::release) gives one back later; a `release` with no
/// permit out to give back is an `Err(`[`SemaphoreOverflow`]`)` (asyncio's
/// `ValueError`), and changes nothing. So, at all times, available permits plus
/// permits held (by guards, by forgetting tasks, or handed to woken waiters) equal
/// the bound.
///
/// Fairness and cancellation are those of [`Semaphore`](super::Semaphore): FIFO,
/// no barging, a cancelled waiter passes on a permit it had been handed.
///
/// ```
/// use evloop::sync::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(1);
/// assert!(sem.release().is_err(), "nothing to give back");
/// sem.try_acquire().unwrap().forget(); // asyncio's `acquire()`
/// assert_eq!(sem.available_permits(), 0);
/// sem.release().unwrap(); // asyncio's `release()`
/// assert_eq!(sem.available_permits(), 1);
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    inner: Rc<Inner>,
}

struct Inner {
    permits: RefCell<Permits>,
    /// Permits taken out of the guards' care by `forget` and not yet released.
    /// Invariant: available + handed to waiters + held by guards + `forgotten` =
    /// `bound`.
    forgotten: Cell<usize>,
    bound: usize,
}

impl BoundedSemaphore {
    /// A semaphore with `bound` permits, all available.
    pub fn new(bound: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            inner: Rc::new(Inner {
                permits: RefCell::new(Permits::new(bound)),
                forgotten: Cell::new(0),
                bound,
            }),
        }
    }

    /// Waits for a permit and takes it; see [`Semaphore::acquire`](super::Semaphore::acquire).
    pub fn acquire(&self) -> BoundedAcquire {
        BoundedAcquire {
            inner: self.inner.clone(),
            ticket: Ticket::Idle,
        }
    }

    /// Takes a permit if one is free right now (and, so, no one is waiting).
    pub fn try_acquire(&self) -> Option<BoundedPermit> {
        self.inner
            .permits
            .borrow_mut()
            .try_acquire()
            .then(|| BoundedPermit {
                inner: Some(self.inner.clone()),
            })
    }

    /// Gives back a permit that was [`forget`](BoundedPermit::forget)-ed (asyncio's
    /// `release()`): to the oldest waiter, or available.
    ///
    /// # Errors
    /// [`SemaphoreOverflow`] if no permit is out to give back: the semaphore would go
    /// past its bound. Nothing changes then.
    pub fn release(&self) -> Result<(), SemaphoreOverflow> {
        let forgotten = self.inner.forgotten.get();
        if forgotten == 0 {
            return Err(SemaphoreOverflow);
        }
        self.inner.forgotten.set(forgotten - 1);
        let mut wakeups = Wakeups::default();
        self.inner.permits.borrow_mut().release(1, &mut wakeups);
        Ok(())
    }

    /// Permits free for a newcomer right now.
    pub fn available_permits(&self) -> usize {
        self.inner.permits.borrow().available()
    }

    /// The bound: how many permits the semaphore was made with.
    pub fn bound(&self) -> usize {
        self.inner.bound
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.inner.permits.borrow();
        f.debug_struct("BoundedSemaphore")
            .field("available_permits", &p.available())
            .field("bound", &self.inner.bound)
            .field("waiters", &p.queued())
            .finish()
    }
}

/// The future of [`BoundedSemaphore::acquire`]: resolves to a [`BoundedPermit`].
///
/// Dropping it while it waits gives up its place in line (and passes the permit on
/// if it had already been handed one).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct BoundedAcquire {
    inner: Rc<Inner>,
    ticket: Ticket,
}

impl Future for BoundedAcquire {
    type Output = BoundedPermit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BoundedPermit> {
        let this = self.get_mut();
        let mut wakeups = Wakeups::default();
        let mut permits = this.inner.permits.borrow_mut();
        let ready = this
            .ticket
            .poll(&mut permits, cx.waker(), &mut wakeups, "BoundedAcquire");
        ready.map(|()| BoundedPermit {
            inner: Some(this.inner.clone()),
        })
    }
}

impl Drop for BoundedAcquire {
    fn drop(&mut self) {
        if self.ticket.is_waiting() {
            let mut wakeups = Wakeups::default();
            let mut permits = self.inner.permits.borrow_mut();
            self.ticket.cancel(&mut permits, &mut wakeups);
        }
    }
}

impl fmt::Debug for BoundedAcquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedAcquire")
            .field("ticket", &self.ticket)
            .finish()
    }
}

/// One permit of a [`BoundedSemaphore`]: dropping it gives the permit back.
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct BoundedPermit {
    /// `None` once forgotten.
    inner: Option<Rc<Inner>>,
}

impl BoundedPermit {
    /// Keeps the permit out, for a later [`BoundedSemaphore::release`] to give back
    /// (asyncio's `acquire()` without `async with`).
    pub fn forget(mut self) {
        if let Some(inner) = self.inner.take() {
            inner.forgotten.set(inner.forgotten.get() + 1);
        }
    }
}

impl Drop for BoundedPermit {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            let mut wakeups = Wakeups::default();
            inner.permits.borrow_mut().release(1, &mut wakeups);
        }
    }
}

impl fmt::Debug for BoundedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedPermit").finish_non_exhaustive()
    }
}

/// [`BoundedSemaphore::release`] with no permit out: the semaphore would exceed its
/// bound (asyncio's `ValueError: BoundedSemaphore released too many times`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemaphoreOverflow;

impl fmt::Display for SemaphoreOverflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoundedSemaphore released too many times")
    }
}

impl Error for SemaphoreOverflow {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::test_exec::Exec;

    /// asyncio `test_release_not_acquired` (BoundedSemaphore): releasing more than
    /// was acquired is refused and changes nothing.
    #[test]
    fn release_past_the_bound_is_refused() {
        let sem = BoundedSemaphore::new(2);
        assert_eq!(sem.release(), Err(SemaphoreOverflow));
        assert_eq!(sem.available_permits(), 2);
        let p = sem.try_acquire().unwrap();
        assert_eq!(
            sem.release(),
            Err(SemaphoreOverflow),
            "a guard gives its own back"
        );
        drop(p);
        assert_eq!(sem.available_permits(), 2);
        assert_eq!(
            SemaphoreOverflow.to_string(),
            "BoundedSemaphore released too many times"
        );
    }

    /// asyncio `test_acquire` with `release()`: forgotten permits come back through
    /// `release`, to the oldest waiter first; the bound holds throughout.
    #[test]
    fn forgotten_permits_are_released_to_waiters_in_order() {
        let ex = Exec::new();
        let sem = BoundedSemaphore::new(1);
        assert_eq!(sem.bound(), 1);
        sem.try_acquire().unwrap().forget();
        let w1 = ex.spawn(sem.acquire());
        let w2 = ex.spawn(sem.acquire());
        ex.run_until_stalled();
        sem.release().unwrap();
        assert_eq!(sem.release(), Err(SemaphoreOverflow));
        ex.run_until_stalled();
        assert!(w1.is_done() && !w2.is_done());
        drop(w1.take());
        ex.run_until_stalled();
        let p2 = w2.take();
        assert_eq!(sem.available_permits(), 0);
        drop(p2);
        assert_eq!(sem.available_permits(), 1);
    }

    /// asyncio `test_acquire_cancel_before_awoken`: a waiter handed a permit and then
    /// cancelled passes it on.
    #[test]
    fn cancelled_waiter_passes_the_permit_on() {
        let ex = Exec::new();
        let sem = BoundedSemaphore::new(1);
        let held = sem.try_acquire().unwrap();
        let w1 = ex.spawn(sem.acquire());
        let w2 = ex.spawn(sem.acquire());
        ex.run_until_stalled();
        drop(held); // to w1
        ex.cancel(w1.id);
        ex.run_until_stalled();
        assert!(w2.is_done());
        drop(w2.take());
        assert_eq!(sem.available_permits(), 1);
    }
}
