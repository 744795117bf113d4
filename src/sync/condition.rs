//! [`Condition`]: asyncio's `Condition`, a condition variable for tasks on one loop.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::lock::{Lock, LockFuture, LockGuard};
use crate::waiters::{WaitQueue, Wakeups};

/// A condition variable for tasks on one loop (asyncio's `Condition`), tied to its
/// own [`Lock`].
///
/// A task takes the lock with [`lock`](Condition::lock), checks the state the lock
/// protects, and if it must wait hands its guard to [`wait`](Condition::wait):
/// the lock is released while it waits and taken again before `wait` gives the
/// guard back. [`notify`](Condition::notify) and
/// [`notify_all`](Condition::notify_all) wake waiters; they need no guard (asyncio
/// requires the lock held; the wake-up order is the same either way).
///
/// A `Condition` is a cheap handle: clones share one condition and its lock. It is
/// `!Send`, for the tasks of one loop thread; it works with any waker.
///
/// # Cancellation
/// The guard is moved into the [`ConditionWait`] future, so no path loses the lock:
/// the future either resolves to the guard (the lock held again) or, dropped (the
/// task cancelled, a timeout), drops what it holds: the lock is free, never held by
/// a ghost. A waiter that was notified and is then dropped, before or while it takes
/// the lock again, passes the notification to the next waiter (Python 3.13): a
/// cancelled waiter never swallows a wake-up.
///
/// # Example
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use evloop::{Loop, sync::Condition};
///
/// let lp = Loop::new().unwrap();
/// let cond = Condition::new();
/// let ready = Rc::new(Cell::new(false));
/// let waiter = lp.create_task({
///     let (cond, ready) = (cond.clone(), ready.clone());
///     async move {
///         let guard = cond.lock().await;
///         let _guard = cond.wait_for(guard, || ready.get()).await;
///         "saw ready"
///     }
/// });
/// lp.run_until_complete(async {
///     let _guard = cond.lock().await;
///     ready.set(true);
///     cond.notify(1);
/// })
/// .unwrap();
/// assert_eq!(lp.run_until_complete(waiter).unwrap().unwrap(), "saw ready");
/// ```
#[derive(Clone)]
pub struct Condition {
    inner: Rc<Inner>,
}

struct Inner {
    lock: Lock,
    /// Tasks in `wait`. A notified entry has been handed one notification, which it
    /// consumes by removing its entry and taking the lock again; dropped before it
    /// has the lock, it hands the notification on.
    waiters: RefCell<WaitQueue>,
}

impl Condition {
    /// A new condition with its own, unlocked lock.
    pub fn new() -> Condition {
        Condition {
            inner: Rc::new(Inner {
                lock: Lock::new(),
                waiters: RefCell::new(WaitQueue::default()),
            }),
        }
    }

    /// Waits for the condition's lock and takes it (as [`Lock::lock`]).
    pub fn lock(&self) -> LockFuture {
        self.inner.lock.lock()
    }

    /// Takes the condition's lock if it is free right now (as [`Lock::try_lock`]).
    pub fn try_lock(&self) -> Option<LockGuard> {
        self.inner.lock.try_lock()
    }

    /// Whether the condition's lock is held (as [`Lock::is_locked`]).
    pub fn is_locked(&self) -> bool {
        self.inner.lock.is_locked()
    }

    /// Releases the lock held by `guard`, waits to be notified, takes the lock again
    /// and resolves to the new guard (asyncio's `wait()`).
    ///
    /// The lock is released at the future's first poll; a notification sent before
    /// that is not for this waiter. Waiters are notified in the order they started
    /// waiting.
    ///
    /// # Panics
    /// If `guard` holds another lock than this condition's.
    #[track_caller]
    pub fn wait(&self, guard: LockGuard) -> ConditionWait {
        assert!(
            guard.is_of(&self.inner.lock),
            "Condition::wait: the guard is not of this condition's lock; take it with the condition's lock()"
        );
        ConditionWait {
            cond: self.inner.clone(),
            state: State::Start(Some(guard)),
        }
    }

    /// Waits until `pred()` is true (asyncio's `wait_for`): checks it with the lock
    /// held, and while it is false [`wait`](Condition::wait)s for a notification.
    /// Resolves to the guard, with `pred()` true.
    ///
    /// # Panics
    /// If `guard` holds another lock than this condition's.
    #[track_caller]
    pub fn wait_for<P: FnMut() -> bool>(
        &self,
        guard: LockGuard,
        mut pred: P,
    ) -> impl Future<Output = LockGuard> + use<P> {
        assert!(
            guard.is_of(&self.inner.lock),
            "Condition::wait_for: the guard is not of this condition's lock; take it with the condition's lock()"
        );
        let cond = self.clone();
        async move {
            let mut guard = guard;
            while !pred() {
                guard = cond.wait(guard).await;
            }
            guard
        }
    }

    /// Wakes up to `n` of the tasks waiting, oldest first (asyncio's `notify(n)`).
    pub fn notify(&self, n: usize) {
        let mut wakeups = Wakeups::default();
        let mut waiters = self.inner.waiters.borrow_mut();
        for _ in 0..n {
            if !waiters.notify_one(&mut wakeups) {
                break;
            }
        }
    }

    /// Wakes every task waiting (asyncio's `notify_all()`).
    pub fn notify_all(&self) {
        let mut wakeups = Wakeups::default();
        self.inner.waiters.borrow_mut().notify_all(&mut wakeups);
    }

    /// How many tasks wait for a notification (not counting those notified that
    /// have not taken the lock again yet).
    pub fn waiters(&self) -> usize {
        self.inner.waiters.borrow().queued()
    }
}

impl Default for Condition {
    /// A new condition with its own, unlocked lock.
    fn default() -> Condition {
        Condition::new()
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("locked", &self.is_locked())
            .field("waiters", &self.waiters())
            .finish()
    }
}

/// Where a [`ConditionWait`] is.
enum State {
    /// Not polled yet: holds the caller's guard (`None` only while being released).
    Start(Option<LockGuard>),
    /// Waiting for a notification under this key of `Inner::waiters`.
    Waiting(usize),
    /// Notified; taking the lock again.
    Relocking(LockFuture),
    /// Resolved.
    Done,
}

/// The future of [`Condition::wait`]: resolves to the guard, the lock held again.
///
/// Dropped, it drops what it holds (never keeping the lock), and passes a
/// notification it had been given on to the next waiter.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ConditionWait {
    cond: Rc<Inner>,
    state: State,
}

impl Future for ConditionWait {
    type Output = LockGuard;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Start(guard) => {
                    let guard = guard.take();
                    let key = this.cond.waiters.borrow_mut().push(cx.waker());
                    this.state = State::Waiting(key);
                    drop(guard); // releases the lock, no borrow held
                    return Poll::Pending;
                }
                State::Waiting(key) => {
                    let key = *key;
                    let mut wakeups = Wakeups::default();
                    let mut waiters = this.cond.waiters.borrow_mut();
                    if !waiters.is_notified(key) {
                        waiters.register(key, cx.waker(), &mut wakeups);
                        return Poll::Pending;
                    }
                    waiters.remove(key, &mut wakeups);
                    drop(waiters);
                    this.state = State::Relocking(this.cond.lock.lock());
                }
                State::Relocking(relock) => {
                    let guard = std::task::ready!(Pin::new(relock).poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(guard);
                }
                State::Done => panic!("`ConditionWait` polled after completion"),
            }
        }
    }
}

impl Drop for ConditionWait {
    fn drop(&mut self) {
        let notified = match std::mem::replace(&mut self.state, State::Done) {
            State::Waiting(key) => {
                let mut wakeups = Wakeups::default();
                self.cond.waiters.borrow_mut().remove(key, &mut wakeups)
            }
            State::Relocking(relock) => {
                drop(relock); // leaves the lock's line (or frees the lock handed to it)
                true
            }
            State::Start(_) | State::Done => false,
        };
        if notified {
            let mut wakeups = Wakeups::default();
            self.cond.waiters.borrow_mut().notify_one(&mut wakeups);
        }
    }
}

impl fmt::Debug for ConditionWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Start(_) => "start",
            State::Waiting(_) => "waiting",
            State::Relocking(_) => "relocking",
            State::Done => "done",
        };
        f.debug_struct("ConditionWait")
            .field("state", &state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::*;
    use crate::sync::test_exec::Exec;

    type Log = Rc<RefCell<Vec<u32>>>;

    /// A task that takes the lock, waits once, logs `n` and releases.
    fn waiter(cond: &Condition, log: &Log, n: u32) -> impl Future<Output = ()> + use<> {
        let (cond, log) = (cond.clone(), log.clone());
        async move {
            let g = cond.lock().await;
            let _g = cond.wait(g).await;
            log.borrow_mut().push(n);
        }
    }

    /// asyncio `ConditionTests.test_wait`: three waiters; `notify(1)`, `notify(1)`,
    /// `notify(2)` let them through in order, each once the lock is free.
    #[test]
    fn notify_wakes_waiters_in_order() {
        let ex = Exec::new();
        let cond = Condition::new();
        let log = Log::default();
        let _t: Vec<_> = (1..=3).map(|n| ex.spawn(waiter(&cond, &log, n))).collect();
        ex.run_until_stalled();
        assert_eq!(cond.waiters(), 3);
        assert!(!cond.is_locked(), "waiting released the lock");

        let g = cond.try_lock().unwrap();
        cond.notify(1);
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [] as [u32; 0], "the lock is still ours");
        drop(g);
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [1]);

        cond.notify(1);
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [1, 2]);
        cond.notify(2);
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [1, 2, 3]);
        assert!(!cond.is_locked());
    }

    /// asyncio `test_notify_all`.
    #[test]
    fn notify_all_wakes_every_waiter() {
        let ex = Exec::new();
        let cond = Condition::new();
        let log = Log::default();
        let _t: Vec<_> = (1..=3).map(|n| ex.spawn(waiter(&cond, &log, n))).collect();
        ex.run_until_stalled();
        cond.notify_all();
        cond.notify_all(); // nobody left to wake
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [1, 2, 3]);
        assert_eq!(cond.waiters(), 0);
    }

    /// asyncio `test_wait_cancel`: a cancelled waiter leaves the line and holds
    /// no lock (here the guard went with it, so the lock is free).
    #[test]
    fn cancelled_waiter_leaves_and_keeps_no_lock() {
        let ex = Exec::new();
        let cond = Condition::new();
        let log = Log::default();
        let t = ex.spawn(waiter(&cond, &log, 1));
        ex.run_until_stalled();
        assert_eq!(cond.waiters(), 1);
        ex.cancel(t.id);
        assert_eq!(cond.waiters(), 0);
        assert!(!cond.is_locked());
    }

    /// asyncio 3.13 `test_wait_cancel_after_notify` / `test_cancelled_error_wakeup`:
    /// a waiter notified and then cancelled (here while it waits to take the lock
    /// again) passes the notification to the next waiter.
    #[test]
    fn notified_then_cancelled_waiter_passes_the_notification_on() {
        let ex = Exec::new();
        let cond = Condition::new();
        let log = Log::default();
        let t1 = ex.spawn(waiter(&cond, &log, 1));
        let _t2 = ex.spawn(waiter(&cond, &log, 2));
        ex.run_until_stalled();
        let g = cond.try_lock().unwrap();
        cond.notify(1); // to t1
        ex.run_until_stalled(); // t1 now waits for the lock
        assert_eq!(cond.waiters(), 1);
        ex.cancel(t1.id);
        drop(g);
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [2], "t2 got t1's notification");
    }

    /// The same, cancelled before it resumed at all.
    #[test]
    fn notified_waiter_cancelled_before_resuming_passes_it_on() {
        let ex = Exec::new();
        let cond = Condition::new();
        let log = Log::default();
        let t1 = ex.spawn(waiter(&cond, &log, 1));
        let _t2 = ex.spawn(waiter(&cond, &log, 2));
        let _t3 = ex.spawn(waiter(&cond, &log, 3));
        ex.run_until_stalled();
        cond.notify(1);
        ex.cancel(t1.id);
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [2]);
        assert_eq!(cond.waiters(), 1);
    }

    /// asyncio `test_wait_for`: the predicate is checked under the lock at each
    /// notification; `wait_for` returns once it holds.
    #[test]
    fn wait_for_returns_once_the_predicate_holds() {
        let ex = Exec::new();
        let cond = Condition::new();
        let presult = Rc::new(Cell::new(false));
        let checks = Rc::new(Cell::new(0));
        let t = {
            let (cond, presult, checks) = (cond.clone(), presult.clone(), checks.clone());
            ex.spawn(async move {
                let g = cond.lock().await;
                let g = cond
                    .wait_for(g, || {
                        checks.set(checks.get() + 1);
                        presult.get()
                    })
                    .await;
                assert!(cond.is_locked());
                drop(g);
            })
        };
        ex.run_until_stalled();
        assert_eq!(checks.get(), 1);
        cond.notify(1);
        ex.run_until_stalled();
        assert_eq!(checks.get(), 2);
        assert!(!t.is_done());
        presult.set(true);
        cond.notify(1);
        ex.run_until_stalled();
        assert_eq!(checks.get(), 3);
        assert!(t.is_done());
        assert!(!cond.is_locked());
    }

    /// asyncio `test_wait_unacquired`: `wait` needs this condition's lock.
    #[test]
    #[should_panic(expected = "not of this condition's lock")]
    fn wait_with_another_locks_guard_panics() {
        let cond = Condition::new();
        let other = Lock::new();
        drop(cond.wait(other.try_lock().unwrap()));
    }
}
