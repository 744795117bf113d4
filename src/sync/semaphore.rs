//! [`Semaphore`]: asyncio's `Semaphore`, a counter of permits for tasks on one loop.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::permits::{Permits, Ticket};
use crate::waiters::Wakeups;

/// A counting semaphore for tasks on one loop (asyncio's `Semaphore`).
///
/// It holds a number of permits. [`acquire`](Semaphore::acquire) takes one, waiting
/// while none is free, and returns a [`SemaphorePermit`] that gives it back when
/// dropped (asyncio's `async with sem:`). [`add_permits`](Semaphore::add_permits)
/// adds permits (asyncio's `release()` without a matching `acquire()`), and
/// [`SemaphorePermit::forget`] keeps one for good (an `acquire()` with no matching
/// `release()`).
///
/// A `Semaphore` is a cheap handle: clones share one semaphore. It is `!Send`, for
/// the tasks of one loop thread; it works with any waker, not only evloop's.
///
/// # Fairness
/// Waiters get permits in the order they started waiting. A permit given back while
/// tasks wait goes straight to the oldest waiter and belongs to it from then on,
/// even before its task runs again; it is not counted in
/// [`available_permits`](Semaphore::available_permits). So a newcomer's
/// [`try_acquire`](Semaphore::try_acquire) or `acquire()` never barges ahead of a
/// queued waiter.
///
/// # Cancellation
/// Dropping an [`AcquireFuture`] takes it out of the line. If it had already been
/// handed a permit, the permit goes on to the next waiter (or back to the count): a
/// cancelled waiter never swallows a permit.
///
/// # Example
/// At most two tasks at a time inside the section:
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use evloop::{Loop, sync::Semaphore, yield_now};
///
/// let lp = Loop::new().unwrap();
/// let sem = Semaphore::new(2);
/// let (inside, peak) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
/// let tasks: Vec<_> = (0..5)
///     .map(|_| {
///         let (sem, inside, peak) = (sem.clone(), inside.clone(), peak.clone());
///         lp.create_task(async move {
///             let _permit = sem.acquire().await;
///             inside.set(inside.get() + 1);
///             peak.set(peak.get().max(inside.get()));
///             yield_now().await;
///             inside.set(inside.get() - 1);
///         })
///     })
///     .collect();
/// lp.run_until_complete(async {
///     for t in tasks {
///         t.await.unwrap();
///     }
/// })
/// .unwrap();
/// assert_eq!(peak.get(), 2);
/// assert_eq!(sem.available_permits(), 2);
/// ```
#[derive(Clone)]
pub struct Semaphore {
    permits: Rc<RefCell<Permits>>,
}

impl Semaphore {
    /// A semaphore with `permits` free permits. Zero is allowed: then every
    /// `acquire()` waits for [`add_permits`](Semaphore::add_permits).
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            permits: Rc::new(RefCell::new(Permits::new(permits))),
        }
    }

    /// Waits for a permit and takes it; it is given back when the returned
    /// [`SemaphorePermit`] is dropped.
    ///
    /// If a permit is free (and so no one is waiting), the future is ready at its
    /// first poll. Otherwise it waits its turn behind the tasks already waiting.
    pub fn acquire(&self) -> AcquireFuture {
        AcquireFuture {
            permits: self.permits.clone(),
            ticket: Ticket::Idle,
        }
    }

    /// Takes a permit if one is free right now (and, so, no one is waiting).
    pub fn try_acquire(&self) -> Option<SemaphorePermit> {
        self.permits
            .borrow_mut()
            .try_acquire()
            .then(|| SemaphorePermit {
                permits: Some(self.permits.clone()),
            })
    }

    /// Permits free for a newcomer right now: not held, and not already handed to a
    /// waiter that has yet to resume. `try_acquire` succeeds exactly when this is
    /// not zero.
    pub fn available_permits(&self) -> usize {
        self.permits.borrow().available()
    }

    /// Adds `n` permits (asyncio's `release()`, `n` times): each goes to the oldest
    /// waiter, the rest become available.
    ///
    /// # Panics
    /// If the number of available permits would overflow `usize`.
    pub fn add_permits(&self, n: usize) {
        let mut wakeups = Wakeups::default();
        self.permits.borrow_mut().release(n, &mut wakeups);
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.permits.borrow();
        f.debug_struct("Semaphore")
            .field("available_permits", &p.available())
            .field("waiters", &p.queued())
            .finish()
    }
}

/// The future returned by [`Semaphore::acquire`]: resolves to a [`SemaphorePermit`].
///
/// Dropping it while it waits gives up its place in line (and passes the permit on
/// if it had already been handed one).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct AcquireFuture {
    permits: Rc<RefCell<Permits>>,
    ticket: Ticket,
}

impl Future for AcquireFuture {
    type Output = SemaphorePermit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SemaphorePermit> {
        let this = self.get_mut();
        let mut wakeups = Wakeups::default();
        let mut permits = this.permits.borrow_mut();
        let ready = this
            .ticket
            .poll(&mut permits, cx.waker(), &mut wakeups, "AcquireFuture");
        ready.map(|()| SemaphorePermit {
            permits: Some(this.permits.clone()),
        })
    }
}

impl Drop for AcquireFuture {
    fn drop(&mut self) {
        if self.ticket.is_waiting() {
            let mut wakeups = Wakeups::default();
            let mut permits = self.permits.borrow_mut();
            self.ticket.cancel(&mut permits, &mut wakeups);
        }
    }
}

impl fmt::Debug for AcquireFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireFuture")
            .field("ticket", &self.ticket)
            .finish()
    }
}

/// One permit of a [`Semaphore`]: dropping it gives the permit back (to the oldest
/// waiter, if any).
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct SemaphorePermit {
    /// The semaphore to give the permit back to; `None` once [`forget`]ed.
    ///
    /// [`forget`]: SemaphorePermit::forget
    permits: Option<Rc<RefCell<Permits>>>,
}

impl SemaphorePermit {
    /// Keeps the permit for good: the semaphore has one permit fewer from now on
    /// (asyncio's `acquire()` with no matching `release()`).
    pub fn forget(mut self) {
        self.permits = None;
    }
}

impl Drop for SemaphorePermit {
    fn drop(&mut self) {
        if let Some(permits) = &self.permits {
            let mut wakeups = Wakeups::default();
            permits.borrow_mut().release(1, &mut wakeups);
        }
    }
}

impl fmt::Debug for SemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::sync::test_exec::{Exec, yield_now};

    type Log = Rc<RefCell<Vec<String>>>;

    fn waiters(sem: &Semaphore) -> usize {
        sem.permits.borrow().queued()
    }

    /// A task that takes a permit, logs `tag`, and keeps the permit until it ends.
    fn take_and_log(
        sem: &Semaphore,
        log: &Log,
        tag: &'static str,
    ) -> impl Future<Output = SemaphorePermit> + use<> {
        let (sem, log) = (sem.clone(), log.clone());
        async move {
            let p = sem.acquire().await;
            log.borrow_mut().push(tag.to_string());
            p
        }
    }

    #[test]
    fn counts_permits() {
        let sem = Semaphore::new(3);
        let a = sem.try_acquire().unwrap();
        let b = sem.try_acquire().unwrap();
        let c = sem.try_acquire().unwrap();
        assert_eq!(sem.available_permits(), 0);
        assert!(sem.try_acquire().is_none());
        drop(b);
        assert_eq!(sem.available_permits(), 1);
        sem.add_permits(2);
        assert_eq!(sem.available_permits(), 3);
        c.forget();
        a.forget();
        assert_eq!(
            sem.available_permits(),
            3,
            "forgotten permits are not given back"
        );
    }

    #[test]
    fn zero_permits_waits_for_add_permits() {
        let ex = Exec::new();
        let sem = Semaphore::new(0);
        assert!(sem.try_acquire().is_none());
        let t = ex.spawn(sem.acquire());
        ex.run_until_stalled();
        assert!(!t.is_done());
        sem.add_permits(1);
        assert_eq!(sem.available_permits(), 0, "handed to the waiter");
        ex.run_until_stalled();
        drop(t.take());
        assert_eq!(sem.available_permits(), 1);
    }

    /// asyncio `test_acquire`: with 3 permits, 2 held, of c1..c3 only c1 gets in;
    /// two more permits go to c2 and c3, not to the later c4.
    #[test]
    fn acquire_counts_and_hands_over_in_order() {
        let ex = Exec::new();
        let sem = Semaphore::new(3);
        let log = Log::default();
        let _held = (sem.try_acquire().unwrap(), sem.try_acquire().unwrap());
        assert_eq!(sem.available_permits(), 1);

        let t1 = ex.spawn(take_and_log(&sem, &log, "c1"));
        let t2 = ex.spawn(take_and_log(&sem, &log, "c2"));
        let t3 = ex.spawn(take_and_log(&sem, &log, "c3"));
        ex.run_briefly();
        assert_eq!(*log.borrow(), ["c1"]);
        assert_eq!((sem.available_permits(), waiters(&sem)), (0, 2));

        let t4 = ex.spawn(take_and_log(&sem, &log, "c4"));
        sem.add_permits(2);
        assert_eq!(sem.available_permits(), 0);
        ex.run_briefly();
        assert_eq!(*log.borrow(), ["c1", "c2", "c3"]);
        assert_eq!((sem.available_permits(), waiters(&sem)), (0, 1));
        assert!(t1.is_done() && t2.is_done() && t3.is_done() && !t4.is_done());

        sem.add_permits(1);
        ex.run_until_stalled();
        assert!(t4.is_done());
    }

    /// asyncio `test_acquire_cancel`: a cancelled waiter leaves no trace.
    #[test]
    fn cancelled_waiter_leaves_the_line() {
        let ex = Exec::new();
        let sem = Semaphore::new(1);
        let _p = sem.try_acquire().unwrap();
        let t = ex.spawn(sem.acquire());
        ex.run_briefly();
        assert_eq!(waiters(&sem), 1);
        ex.cancel(t.id);
        assert_eq!(waiters(&sem), 0);
        assert_eq!(sem.available_permits(), 0);
    }

    /// asyncio `test_acquire_cancel_before_awoken`: two queued waiters cancelled,
    /// then one permit: the third waiter gets it, the fourth still waits.
    #[test]
    fn cancel_before_awoken() {
        let ex = Exec::new();
        let sem = Semaphore::new(0);
        let t: Vec<_> = (0..4).map(|_| ex.spawn(sem.acquire())).collect();
        ex.run_briefly();
        ex.cancel(t[0].id);
        ex.cancel(t[1].id);
        sem.add_permits(1);
        ex.run_until_stalled();
        assert!(t[2].is_done() && !t[3].is_done());
        ex.cancel(t[3].id);
        drop(t[2].take());
        assert_eq!(sem.available_permits(), 1);
    }

    /// asyncio `test_acquire_hang`: the permit goes to t1, t1 is cancelled before it
    /// resumes, and t2 gets the permit instead of hanging.
    #[test]
    fn cancelled_chosen_waiter_passes_the_permit_on() {
        let ex = Exec::new();
        let sem = Semaphore::new(0);
        let t1 = ex.spawn(sem.acquire());
        let t2 = ex.spawn(sem.acquire());
        ex.run_briefly();
        sem.add_permits(1); // chooses t1
        ex.cancel(t1.id);
        ex.run_until_stalled();
        assert!(t2.is_done());
        assert_eq!(sem.available_permits(), 0);
        drop(t2.take());
        assert_eq!(sem.available_permits(), 1);
    }

    /// asyncio `test_acquire_no_hang`: t2 is cancelled while holding nothing but a
    /// handed-over permit; the permit is not lost.
    #[test]
    fn no_hang_after_cancelled_handover() {
        let ex = Exec::new();
        let sem = Semaphore::new(1);
        let t2_id = Rc::new(std::cell::Cell::new(usize::MAX));
        let ex = Rc::new(ex);
        let t1 = {
            let (sem, ex, t2_id) = (sem.clone(), ex.clone(), t2_id.clone());
            ex.clone().spawn(async move {
                {
                    let _p = sem.acquire().await;
                    yield_now().await;
                }
                ex.cancel(t2_id.get());
            })
        };
        let t2 = ex.spawn({
            let sem = sem.clone();
            async move {
                let _p = sem.acquire().await;
                panic!("t2 must be cancelled before it gets the permit");
            }
        });
        t2_id.set(t2.id);
        ex.run_until_stalled();
        assert!(t1.is_done() && !t2.is_done() && !ex.is_alive(t2.id));
        assert!(sem.try_acquire().is_some());
    }

    /// asyncio `test_acquire_fifo_order`: with one permit, three tasks that each
    /// take it twice alternate strictly.
    #[test]
    fn fifo_order_round_robin() {
        let ex = Exec::new();
        let sem = Semaphore::new(1);
        let log = Log::default();
        let tasks: Vec<_> = ["c1", "c2", "c3"]
            .into_iter()
            .map(|tag| {
                let (sem, log) = (sem.clone(), log.clone());
                ex.spawn(async move {
                    for round in 1..=2 {
                        let _p = sem.acquire().await;
                        log.borrow_mut().push(format!("{tag}_{round}"));
                        yield_now().await;
                        yield_now().await;
                    }
                })
            })
            .collect();
        ex.run_until_stalled();
        assert!(tasks.iter().all(|t| t.is_done()));
        assert_eq!(
            *log.borrow(),
            ["c1_1", "c2_1", "c3_1", "c1_2", "c2_2", "c3_2"]
        );
    }

    /// asyncio `test_acquire_fifo_order_2`. asyncio logs [1, 2, 3, 4]: there a woken
    /// waiter still blocks newcomers until it runs, so c2's second acquire queues
    /// behind c3. Here permits are handed over at release: c3's permit is already
    /// its own, so c2's second acquire takes the permit c2 itself just gave back, and
    /// c3 still gets in. No one waits for a permit someone else was given.
    #[test]
    fn fifo_order_with_reacquire() {
        let ex = Exec::new();
        let sem = Semaphore::new(1);
        let log = Rc::new(RefCell::new(Vec::new()));
        let push = |log: &Rc<RefCell<Vec<u32>>>, n| log.borrow_mut().push(n);
        let (s, l) = (sem.clone(), log.clone());
        let t1 = ex.spawn(async move {
            s.acquire().await.forget();
            push(&l, 1);
        });
        let (s, l) = (sem.clone(), log.clone());
        let t2 = ex.spawn(async move {
            let p = s.acquire().await;
            push(&l, 2);
            drop(p);
            s.acquire().await.forget();
            push(&l, 4);
        });
        let (s, l) = (sem.clone(), log.clone());
        let t3 = ex.spawn(async move {
            s.acquire().await.forget();
            push(&l, 3);
        });
        ex.run_briefly();
        sem.add_permits(2);
        ex.run_until_stalled();
        assert!(t1.is_done() && t2.is_done() && t3.is_done());
        assert_eq!(*log.borrow(), [1, 2, 4, 3]);
        assert_eq!(sem.available_permits(), 0);
    }

    /// asyncio `test_acquire_fifo_order_3`: a waiter cancelled while queued is
    /// skipped; the next two get the two permits, in order.
    #[test]
    fn fifo_order_after_cancel() {
        let ex = Exec::new();
        let sem = Semaphore::new(0);
        let log = Log::default();
        let t1 = ex.spawn(take_and_log(&sem, &log, "1"));
        let t2 = ex.spawn(take_and_log(&sem, &log, "2"));
        let t3 = ex.spawn(take_and_log(&sem, &log, "3"));
        ex.run_briefly();
        ex.cancel(t1.id);
        ex.run_briefly();
        sem.add_permits(2);
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), ["2", "3"]);
        assert!(t2.is_done() && t3.is_done());
    }

    #[test]
    fn newcomer_does_not_barge() {
        let ex = Exec::new();
        let sem = Semaphore::new(0);
        let log = Log::default();
        let t1 = ex.spawn(take_and_log(&sem, &log, "waiter"));
        ex.run_briefly();
        sem.add_permits(1);
        assert!(sem.try_acquire().is_none());
        let t2 = ex.spawn(take_and_log(&sem, &log, "newcomer"));
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), ["waiter"]);
        drop(t1.take());
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), ["waiter", "newcomer"]);
        drop(t2.take());
    }
}
