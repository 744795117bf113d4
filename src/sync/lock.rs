//! [`Lock`]: asyncio's `Lock`, a mutual-exclusion lock for tasks on one loop.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::permits::{Permits, Ticket};
use crate::waiters::Wakeups;

/// A mutual-exclusion lock for tasks on one loop (asyncio's `Lock`).
///
/// [`lock`](Lock::lock) waits until the lock is free and returns a [`LockGuard`];
/// dropping the guard releases the lock (asyncio's `async with lock:`). A `Lock`
/// protects no data of its own: it orders tasks around an `await`. (Data behind it
/// can live in a `RefCell` touched only while the guard is held.)
///
/// A `Lock` is a cheap handle: clones share one lock. It is `!Send`, for the tasks
/// of one loop thread; it works with any waker, not only evloop's.
///
/// # Fairness
/// Waiters acquire the lock in the order they started waiting. Releasing the lock
/// while tasks wait hands it straight to the oldest waiter: from then on the lock
/// belongs to that waiter, and [`is_locked`](Lock::is_locked) stays `true`, even
/// before the waiter's task runs again. So a newcomer's [`try_lock`](Lock::try_lock)
/// or `lock()` cannot barge ahead of a queued waiter. (asyncio reports the lock as
/// unlocked during that window, though it too refuses newcomers.)
///
/// # Not reentrant
/// A task that calls `lock().await` while it holds the guard waits for itself
/// forever, as with asyncio's `Lock`.
///
/// # Cancellation
/// Dropping a [`LockFuture`] (the task was cancelled, a timeout fired) takes it out
/// of the line. If the lock had already been handed to it, the lock passes to the
/// next waiter, or is released: a cancelled waiter never keeps the lock, nor swallows
/// the wake-up meant for the others.
///
/// # Example
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use evloop::{Loop, sync::Lock, yield_now};
///
/// let lp = Loop::new().unwrap();
/// let lock = Lock::new();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let tasks: Vec<_> = (0..3)
///     .map(|i| {
///         let (lock, log) = (lock.clone(), log.clone());
///         lp.create_task(async move {
///             let _guard = lock.lock().await;
///             log.borrow_mut().push(format!("{i} in"));
///             yield_now().await; // others run, but none gets in
///             log.borrow_mut().push(format!("{i} out"));
///         })
///     })
///     .collect();
/// lp.run_until_complete(async {
///     for t in tasks {
///         t.await.unwrap();
///     }
/// })
/// .unwrap();
/// assert_eq!(*log.borrow(), ["0 in", "0 out", "1 in", "1 out", "2 in", "2 out"]);
/// assert!(!lock.is_locked());
/// ```
#[derive(Clone)]
pub struct Lock {
    /// One permit: available when unlocked, held by the [`LockGuard`] (or handed to
    /// the waiter that will get one) when locked.
    permits: Rc<RefCell<Permits>>,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Lock {
        Lock {
            permits: Rc::new(RefCell::new(Permits::new(1))),
        }
    }

    /// Waits until the lock is free and takes it; the lock is held until the returned
    /// [`LockGuard`] is dropped.
    ///
    /// If the lock is free and no one is waiting, the future is ready at its first
    /// poll. Otherwise it waits its turn behind the tasks already waiting.
    pub fn lock(&self) -> LockFuture {
        LockFuture {
            permits: self.permits.clone(),
            ticket: Ticket::Idle,
        }
    }

    /// Takes the lock if it is free right now (and, so, no one is waiting).
    pub fn try_lock(&self) -> Option<LockGuard> {
        self.permits.borrow_mut().try_acquire().then(|| LockGuard {
            permits: self.permits.clone(),
        })
    }

    /// Whether the lock is held, or has been handed to a waiter that has not yet
    /// resumed. `try_lock` succeeds exactly when this is `false`.
    pub fn is_locked(&self) -> bool {
        self.permits.borrow().available() == 0
    }
}

impl Default for Lock {
    /// A new, unlocked lock.
    fn default() -> Lock {
        Lock::new()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.permits.borrow();
        f.debug_struct("Lock")
            .field("locked", &(p.available() == 0))
            .field("waiters", &p.queued())
            .finish()
    }
}

/// The future returned by [`Lock::lock`]: resolves to a [`LockGuard`].
///
/// Dropping it while it waits gives up its place in line (and passes the lock on if
/// it had already been handed the lock).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct LockFuture {
    permits: Rc<RefCell<Permits>>,
    ticket: Ticket,
}

impl Future for LockFuture {
    type Output = LockGuard;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard> {
        let this = self.get_mut();
        let mut wakeups = Wakeups::default();
        let mut permits = this.permits.borrow_mut();
        let ready = this
            .ticket
            .poll(&mut permits, cx.waker(), &mut wakeups, "LockFuture");
        ready.map(|()| LockGuard {
            permits: this.permits.clone(),
        })
    }
}

impl Drop for LockFuture {
    fn drop(&mut self) {
        if self.ticket.is_waiting() {
            let mut wakeups = Wakeups::default();
            let mut permits = self.permits.borrow_mut();
            self.ticket.cancel(&mut permits, &mut wakeups);
        }
    }
}

impl fmt::Debug for LockFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockFuture")
            .field("ticket", &self.ticket)
            .finish()
    }
}

/// Proof that the lock is held: dropping it releases the [`Lock`] (to the oldest
/// waiter, if any).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    permits: Rc<RefCell<Permits>>,
}

impl LockGuard {
    /// Whether this guard holds `lock`.
    pub(crate) fn is_of(&self, lock: &Lock) -> bool {
        Rc::ptr_eq(&self.permits, &lock.permits)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut wakeups = Wakeups::default();
        self.permits.borrow_mut().release(1, &mut wakeups);
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::*;
    use crate::sync::test_exec::{Exec, yield_now};

    type Log = Rc<RefCell<Vec<u32>>>;

    fn waiters(lock: &Lock) -> usize {
        lock.permits.borrow().queued()
    }

    /// A task that takes the lock, logs `n`, and keeps the guard until it ends.
    fn take_and_log(lock: &Lock, log: &Log, n: u32) -> impl Future<Output = LockGuard> + use<> {
        let (lock, log) = (lock.clone(), log.clone());
        async move {
            let g = lock.lock().await;
            log.borrow_mut().push(n);
            g
        }
    }

    #[test]
    fn try_lock_and_guard_release() {
        let lock = Lock::new();
        assert!(!lock.is_locked());
        let g = lock.try_lock().expect("free");
        assert!(lock.is_locked());
        assert!(lock.try_lock().is_none());
        drop(g);
        assert!(!lock.is_locked());
        assert!(lock.try_lock().is_some());
        assert!(!lock.is_locked(), "the temporary guard released it");
    }

    #[test]
    fn clones_share_the_lock() {
        let a = Lock::new();
        let b = a.clone();
        let _g = a.try_lock().unwrap();
        assert!(b.is_locked());
        assert!(b.try_lock().is_none());
    }

    #[test]
    fn free_lock_is_ready_at_first_poll() {
        let ex = Exec::new();
        let lock = Lock::new();
        let t = ex.spawn(lock.lock());
        ex.run_briefly();
        assert!(t.is_done());
        assert!(lock.is_locked());
        drop(t.take());
        assert!(!lock.is_locked());
    }

    /// asyncio `test_acquire`: waiters get the lock in FIFO order, a late one last.
    #[test]
    fn waiters_acquire_in_fifo_order() {
        let ex = Exec::new();
        let lock = Lock::new();
        let log = Log::default();
        let first = lock.try_lock().unwrap();

        let t1 = ex.spawn(take_and_log(&lock, &log, 1));
        let t2 = ex.spawn(take_and_log(&lock, &log, 2));
        ex.run_briefly();
        assert_eq!(*log.borrow(), [] as [u32; 0]);
        assert_eq!(waiters(&lock), 2);

        drop(first);
        ex.run_briefly();
        assert_eq!(*log.borrow(), [1]);
        ex.run_briefly();
        assert_eq!(*log.borrow(), [1]);

        let t3 = ex.spawn(take_and_log(&lock, &log, 3));
        drop(t1.take());
        ex.run_briefly();
        assert_eq!(*log.borrow(), [1, 2]);
        drop(t2.take());
        ex.run_briefly();
        assert_eq!(*log.borrow(), [1, 2, 3]);
        drop(t3.take());
        assert!(!lock.is_locked());
    }

    #[test]
    fn newcomer_does_not_barge() {
        let ex = Exec::new();
        let lock = Lock::new();
        let log = Log::default();
        let g = lock.try_lock().unwrap();
        let t1 = ex.spawn(take_and_log(&lock, &log, 1));
        ex.run_briefly();
        drop(g); // handed to t1, which has not run yet
        assert!(lock.is_locked());
        assert!(lock.try_lock().is_none());
        let t2 = ex.spawn(take_and_log(&lock, &log, 2)); // polled before t1 resumes
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [1]);
        drop(t1.take());
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [1, 2]);
        drop(t2.take());
    }

    /// asyncio `test_acquire_cancel`: a cancelled waiter leaves the line.
    #[test]
    fn cancelled_waiter_leaves_the_line() {
        let ex = Exec::new();
        let lock = Lock::new();
        let g = lock.try_lock().unwrap();
        let t = ex.spawn(lock.lock());
        ex.run_briefly();
        assert_eq!(waiters(&lock), 1);
        ex.cancel(t.id);
        assert_eq!(waiters(&lock), 0);
        assert!(lock.is_locked());
        drop(g);
        assert!(!lock.is_locked());
    }

    /// asyncio `test_cancel_race` / `test_finished_waiter_cancelled`: the lock is
    /// handed to B, B is cancelled before it runs, C gets the lock.
    #[test]
    fn cancelled_chosen_waiter_passes_the_lock_on() {
        let ex = Exec::new();
        let lock = Lock::new();
        let log = Log::default();
        let a = lock.try_lock().unwrap();
        let tb = ex.spawn(take_and_log(&lock, &log, 2));
        let tc = ex.spawn(take_and_log(&lock, &log, 3));
        ex.run_briefly();
        assert_eq!(waiters(&lock), 2);

        drop(a); // chooses B
        assert_eq!(waiters(&lock), 1);
        ex.cancel(tb.id); // B never resumes
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [3]);
        assert!(lock.is_locked());
        drop(tc.take());
        assert!(!lock.is_locked());
        assert!(!tb.is_done());
    }

    /// The same race with nobody behind: the lock ends up free, not held by a ghost.
    #[test]
    fn cancelled_chosen_last_waiter_frees_the_lock() {
        let ex = Exec::new();
        let lock = Lock::new();
        let a = lock.try_lock().unwrap();
        let tb = ex.spawn(lock.lock());
        ex.run_briefly();
        drop(a);
        assert!(lock.is_locked());
        ex.cancel(tb.id);
        assert!(!lock.is_locked());
    }

    /// asyncio `test_cancel_release_race`: cancelling the first waiter and
    /// releasing at once lets exactly one waiter in.
    #[test]
    fn cancel_and_release_together_admit_one() {
        let ex = Exec::new();
        let lock = Lock::new();
        let count = Rc::new(Cell::new(0));
        let g = lock.try_lock().unwrap();
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let (lock, count) = (lock.clone(), count.clone());
                ex.spawn(async move {
                    let g = lock.lock().await;
                    count.set(count.get() + 1);
                    g
                })
            })
            .collect();
        ex.run_briefly();
        ex.cancel(tasks[0].id);
        drop(g);
        ex.run_until_stalled();
        assert_eq!(count.get(), 1);
        assert!(tasks[1].is_done() && !tasks[2].is_done());
        ex.cancel(tasks[2].id);
        assert_eq!(waiters(&lock), 0);
    }

    #[test]
    fn mutual_exclusion_across_interleaved_tasks() {
        let ex = Exec::new();
        let lock = Lock::new();
        let inside = Rc::new(Cell::new(0u32));
        let entries = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = (0..5u32)
            .map(|i| {
                let (lock, inside, entries) = (lock.clone(), inside.clone(), entries.clone());
                ex.spawn(async move {
                    for round in 0..4 {
                        yield_now().await;
                        let _g = lock.lock().await;
                        inside.set(inside.get() + 1);
                        assert_eq!(inside.get(), 1, "two tasks inside the lock");
                        entries.borrow_mut().push((round, i));
                        for _ in 0..(i % 3) {
                            yield_now().await;
                        }
                        inside.set(inside.get() - 1);
                    }
                })
            })
            .collect();
        ex.run_until_stalled();
        assert!(tasks.iter().all(|t| t.is_done()));
        assert_eq!(entries.borrow().len(), 20);
        assert!(!lock.is_locked());
    }

    #[test]
    fn waiter_polled_with_a_new_waker_is_woken_through_it() {
        // A future moved between tasks: the newest waker must be the one woken.
        let ex = Exec::new();
        let lock = Lock::new();
        let g = lock.try_lock().unwrap();
        let fut = Rc::new(RefCell::new(Some(lock.lock())));
        let poll_once = |fut: Rc<RefCell<Option<LockFuture>>>| {
            std::future::poll_fn(move |cx| {
                let mut f = fut.borrow_mut();
                match Pin::new(f.as_mut().unwrap()).poll(cx) {
                    Poll::Ready(g) => {
                        *f = None;
                        Poll::Ready(Some(g))
                    }
                    // First task gives up after one poll; the second keeps waiting.
                    Poll::Pending => Poll::Ready(None),
                }
            })
        };
        let t1 = ex.spawn(poll_once(fut.clone()));
        ex.run_briefly();
        assert!(t1.take().is_none());
        let fut2 = fut.clone();
        let t2 = ex.spawn(async move {
            loop {
                if let Some(g) = poll_once(fut2.clone()).await {
                    return g;
                }
                // Park until woken: only the registered waker can bring us back.
                let mut parked = false;
                std::future::poll_fn(|_| {
                    if parked {
                        Poll::Ready(())
                    } else {
                        parked = true;
                        Poll::Pending
                    }
                })
                .await;
            }
        });
        ex.run_briefly();
        drop(g);
        ex.run_until_stalled();
        assert!(t2.is_done());
    }

    #[test]
    #[should_panic(expected = "`LockFuture` polled after completion")]
    fn lock_future_polled_after_completion_panics() {
        let lock = Lock::new();
        let mut f = lock.lock();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let g = Pin::new(&mut f).poll(&mut cx);
        assert!(g.is_ready());
        let _ = Pin::new(&mut f).poll(&mut cx);
    }
}
