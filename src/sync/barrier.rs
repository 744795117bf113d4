//! [`Barrier`]: asyncio's `Barrier`, a meeting point for a fixed number of tasks.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::waiters::{WaitQueue, Wakeups};

/// A meeting point for `parties` tasks on one loop (asyncio's `Barrier`):
/// [`wait`](Barrier::wait) blocks until `parties` tasks wait, then lets them all
/// go, and the barrier can be used again.
///
/// As asyncio's, the barrier *drains* before it refills: once it has tripped, tasks
/// that arrive wait until every released task has resumed (left `wait`). Each of the
/// released tasks gets its arrival index, `0` for the first to arrive through
/// `parties - 1` for the one that tripped the barrier.
///
/// [`reset`](Barrier::reset) returns the barrier to its empty state: tasks waiting
/// get [`BrokenBarrierError`]. [`abort`](Barrier::abort) breaks it for good: every
/// waiting and later `wait` gets `BrokenBarrierError`. Both are synchronous (in
/// asyncio they are coroutines only to take the barrier's internal lock).
///
/// A `Barrier` is a cheap handle: clones share one barrier. It is `!Send`, for the
/// tasks of one loop thread; it works with any waker.
///
/// # Cancellation
/// A task cancelled (its [`BarrierWait`] dropped) while it waits for the barrier to
/// fill leaves the count: the barrier then needs one more task, as asyncio's.
///
/// ```
/// use evloop::{Loop, sync::Barrier};
///
/// let lp = Loop::new().unwrap();
/// let barrier = Barrier::new(3);
/// let tasks: Vec<_> = (0..3)
///     .map(|_| {
///         let b = barrier.clone();
///         lp.create_task(async move { b.wait().await.unwrap() })
///     })
///     .collect();
/// let mut indices: Vec<usize> = lp
///     .run_until_complete(async {
///         let mut v = Vec::new();
///         for t in tasks {
///             v.push(t.await.unwrap());
///         }
///         v
///     })
///     .unwrap();
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// ```
#[derive(Clone)]
pub struct Barrier {
    inner: Rc<RefCell<Inner>>,
}

/// asyncio's `_BarrierState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Collecting tasks (`count < parties`).
    Filling,
    /// Tripped: the released tasks are leaving; newcomers wait.
    Draining,
    /// `reset` while tasks were in: they leave with an error; newcomers wait.
    Resetting,
    /// `abort`ed: every wait fails.
    Broken,
}

struct Inner {
    parties: usize,
    /// Tasks counted in (arrived while filling and not yet left).
    count: usize,
    phase: Phase,
    /// Every task in `wait`, counted or not. Each change of `phase` notifies them
    /// all, and each looks again (as asyncio's `Condition.notify_all`).
    waiters: WaitQueue,
}

impl Inner {
    /// Sets the phase and wakes every waiter to look at it.
    fn set_phase(&mut self, phase: Phase, wakeups: &mut Wakeups) {
        self.phase = phase;
        self.waiters.notify_all(wakeups);
    }

    /// A counted task leaves (asyncio's `finally: count -= 1; _exit()`): the last to
    /// leave a drained or reset barrier makes it fill again.
    fn leave(&mut self, wakeups: &mut Wakeups) {
        self.count -= 1;
        if self.count == 0 && matches!(self.phase, Phase::Draining | Phase::Resetting) {
            self.set_phase(Phase::Filling, wakeups);
        }
    }
}

impl Barrier {
    /// A barrier for `parties` tasks.
    ///
    /// # Panics
    /// If `parties` is zero (asyncio's `ValueError`).
    pub fn new(parties: usize) -> Barrier {
        assert!(parties >= 1, "Barrier::new: parties must be at least 1");
        Barrier {
            inner: Rc::new(RefCell::new(Inner {
                parties,
                count: 0,
                phase: Phase::Filling,
                waiters: WaitQueue::default(),
            })),
        }
    }

    /// Waits until `parties` tasks wait, and resolves to this task's arrival index
    /// (`0..parties`); `Err(BrokenBarrierError)` if the barrier is reset while this
    /// task waits, or is broken.
    pub fn wait(&self) -> BarrierWait {
        BarrierWait {
            inner: self.inner.clone(),
            state: WaitState::Arriving(None),
        }
    }

    /// Returns the barrier to its empty, filling state (asyncio's `reset()`): tasks
    /// waiting for it to fill fail with [`BrokenBarrierError`]; the barrier fills
    /// again once they (and any still draining) have left. Also mends a broken
    /// barrier.
    pub fn reset(&self) {
        let mut wakeups = Wakeups::default();
        let mut inner = self.inner.borrow_mut();
        let phase = if inner.count > 0 {
            Phase::Resetting
        } else {
            Phase::Filling
        };
        inner.set_phase(phase, &mut wakeups);
    }

    /// Breaks the barrier (asyncio's `abort()`): every task waiting, and every later
    /// `wait`, fails with [`BrokenBarrierError`] until [`reset`](Barrier::reset).
    pub fn abort(&self) {
        let mut wakeups = Wakeups::default();
        self.inner
            .borrow_mut()
            .set_phase(Phase::Broken, &mut wakeups);
    }

    /// Whether the barrier is broken ([`abort`](Barrier::abort)ed).
    pub fn is_broken(&self) -> bool {
        self.inner.borrow().phase == Phase::Broken
    }

    /// How many tasks it takes to trip the barrier.
    pub fn parties(&self) -> usize {
        self.inner.borrow().parties
    }

    /// How many tasks wait for the barrier to fill (0 while it drains or resets).
    pub fn n_waiting(&self) -> usize {
        let inner = self.inner.borrow();
        match inner.phase {
            Phase::Filling => inner.count,
            _ => 0,
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("Barrier")
            .field("parties", &inner.parties)
            .field("count", &inner.count)
            .field("phase", &inner.phase)
            .finish()
    }
}

/// Where a [`BarrierWait`] is. Each waiting state holds its entry in
/// `Inner::waiters` (`None` before it first parks).
#[derive(Debug)]
enum WaitState {
    /// Not counted in yet: waits while the barrier drains or resets.
    Arriving(Option<usize>),
    /// Counted in with this index: waits for the barrier to trip.
    Counted(usize, usize),
    /// Resolved.
    Done,
}

/// The future of [`Barrier::wait`]: resolves to the arrival index.
///
/// Dropped while counted in, it leaves the count.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct BarrierWait {
    inner: Rc<RefCell<Inner>>,
    state: WaitState,
}

impl Future for BarrierWait {
    type Output = Result<usize, BrokenBarrierError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut wakeups = Wakeups::default();
        let mut inner = this.inner.borrow_mut();
        let inner = &mut *inner;
        // Our entry, if parked; a notified one is spent (the phase changed).
        let parked = match this.state {
            WaitState::Arriving(key) => key,
            WaitState::Counted(_, key) => Some(key),
            WaitState::Done => panic!("`BarrierWait` polled after completion"),
        };
        let waker = cx.waker();
        let park = |inner: &mut Inner, wakeups: &mut Wakeups| match parked {
            Some(key) if !inner.waiters.is_notified(key) => {
                inner.waiters.register(key, waker, wakeups);
                key
            }
            Some(key) => {
                inner.waiters.remove(key, wakeups);
                inner.waiters.push(waker)
            }
            None => inner.waiters.push(waker),
        };
        let unpark = |inner: &mut Inner, wakeups: &mut Wakeups| {
            if let Some(key) = parked {
                inner.waiters.remove(key, wakeups);
            }
        };
        match this.state {
            WaitState::Arriving(_) => match inner.phase {
                Phase::Draining | Phase::Resetting => {
                    this.state = WaitState::Arriving(Some(park(inner, &mut wakeups)));
                    Poll::Pending
                }
                Phase::Broken => {
                    unpark(inner, &mut wakeups);
                    this.state = WaitState::Done;
                    Poll::Ready(Err(BrokenBarrierError))
                }
                Phase::Filling => {
                    let index = inner.count;
                    inner.count += 1;
                    if inner.count == inner.parties {
                        // Trips the barrier, and leaves at once.
                        unpark(inner, &mut wakeups);
                        this.state = WaitState::Done;
                        inner.set_phase(Phase::Draining, &mut wakeups);
                        inner.leave(&mut wakeups);
                        return Poll::Ready(Ok(index));
                    }
                    this.state = WaitState::Counted(index, park(inner, &mut wakeups));
                    Poll::Pending
                }
            },
            WaitState::Counted(index, _) => {
                let result = match inner.phase {
                    Phase::Filling => {
                        this.state = WaitState::Counted(index, park(inner, &mut wakeups));
                        return Poll::Pending;
                    }
                    Phase::Draining => Ok(index),
                    Phase::Resetting | Phase::Broken => Err(BrokenBarrierError),
                };
                unpark(inner, &mut wakeups);
                this.state = WaitState::Done;
                inner.leave(&mut wakeups);
                Poll::Ready(result)
            }
            WaitState::Done => unreachable!("checked above"),
        }
    }
}

impl fmt::Debug for BarrierWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierWait")
            .field("state", &self.state)
            .finish()
    }
}

impl Drop for BarrierWait {
    fn drop(&mut self) {
        let (key, counted) = match self.state {
            WaitState::Arriving(key) => (key, false),
            WaitState::Counted(_, key) => (Some(key), true),
            WaitState::Done => return,
        };
        let mut wakeups = Wakeups::default();
        let mut inner = self.inner.borrow_mut();
        if let Some(key) = key {
            inner.waiters.remove(key, &mut wakeups);
        }
        if counted {
            inner.leave(&mut wakeups);
        }
    }
}

/// The barrier was reset while the task waited, or is broken (asyncio's
/// `BrokenBarrierError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokenBarrierError;

impl fmt::Display for BrokenBarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("barrier is broken or was reset")
    }
}

impl Error for BrokenBarrierError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::test_exec::{Exec, TaskRef};

    fn spawn_waits(
        ex: &Exec,
        b: &Barrier,
        n: usize,
    ) -> Vec<TaskRef<Result<usize, BrokenBarrierError>>> {
        (0..n).map(|_| ex.spawn(b.wait())).collect()
    }

    /// asyncio `test_barrier` / `test_filling_task_by_task` /
    /// `test_filling_tasks_check_return_value`: the barrier trips when the last party
    /// arrives; each gets its arrival index.
    #[test]
    fn trips_when_full_and_hands_out_indices() {
        let ex = Exec::new();
        let b = Barrier::new(3);
        assert_eq!(b.parties(), 3);
        let first = spawn_waits(&ex, &b, 2);
        ex.run_until_stalled();
        assert_eq!(b.n_waiting(), 2);
        assert!(first.iter().all(|t| !t.is_done()));
        let last = ex.spawn(b.wait());
        ex.run_until_stalled();
        assert_eq!(last.take(), Ok(2));
        let mut got: Vec<_> = first.iter().map(|t| t.take().unwrap()).collect();
        got.sort();
        assert_eq!(got, [0, 1]);
        assert_eq!(b.n_waiting(), 0);
        assert!(!b.is_broken());
    }

    /// asyncio `test_filling_tasks_wait_twice`: the barrier is used again.
    #[test]
    fn is_reusable() {
        let ex = Exec::new();
        let b = Barrier::new(2);
        for _ in 0..3 {
            let t = spawn_waits(&ex, &b, 2);
            ex.run_until_stalled();
            assert!(t.iter().all(|t| t.is_done()));
        }
        assert_eq!(b.n_waiting(), 0);
    }

    /// asyncio `test_draining_state` / `test_blocking_tasks_while_draining`: a task
    /// arriving while the released ones have not left yet waits for the next cycle.
    #[test]
    fn newcomers_wait_while_the_barrier_drains() {
        let ex = Exec::new();
        let b = Barrier::new(2);
        let released = spawn_waits(&ex, &b, 1);
        ex.run_until_stalled();
        let tripper = b.clone();
        let mut trip = Box::pin(tripper.wait());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(trip.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
        // The first party is released but has not resumed: the barrier drains.
        assert_eq!(b.n_waiting(), 0);
        let newcomer = ex.spawn(b.wait());
        ex.run_briefly(); // runs the newcomer before the released task
        ex.run_until_stalled();
        assert_eq!(released[0].take(), Ok(0));
        assert!(
            !newcomer.is_done(),
            "it waits for a partner of its own cycle"
        );
        assert_eq!(b.n_waiting(), 1);
        let partner = ex.spawn(b.wait());
        ex.run_until_stalled();
        assert_eq!((newcomer.take(), partner.take()), (Ok(0), Ok(1)));
    }

    /// asyncio `test_filling_tasks_cancel_one`: a cancelled waiter leaves the count.
    #[test]
    fn a_cancelled_waiter_leaves_the_count() {
        let ex = Exec::new();
        let b = Barrier::new(3);
        let t = spawn_waits(&ex, &b, 2);
        ex.run_until_stalled();
        ex.cancel(t[0].id);
        assert_eq!(b.n_waiting(), 1);
        let more = spawn_waits(&ex, &b, 1);
        ex.run_until_stalled();
        assert!(!t[1].is_done() && !more[0].is_done(), "still one short");
        let last = ex.spawn(b.wait());
        ex.run_until_stalled();
        assert!(t[1].is_done() && more[0].is_done() && last.is_done());
    }

    /// asyncio `test_reset_barrier` / `test_reset_barrier_while_tasks_waiting`:
    /// waiting tasks fail, and the barrier fills again from empty.
    #[test]
    fn reset_fails_the_waiters_and_refills() {
        let ex = Exec::new();
        let b = Barrier::new(3);
        b.reset(); // empty: just filling
        assert_eq!(b.n_waiting(), 0);
        let t = spawn_waits(&ex, &b, 2);
        ex.run_until_stalled();
        b.reset();
        assert_eq!(b.n_waiting(), 0, "resetting");
        let newcomer = ex.spawn(b.wait());
        ex.run_until_stalled();
        assert!(t.iter().all(|t| t.take() == Err(BrokenBarrierError)));
        assert!(!newcomer.is_done());
        assert_eq!(b.n_waiting(), 1, "the newcomer counts in the new cycle");
        let rest = spawn_waits(&ex, &b, 2);
        ex.run_until_stalled();
        assert!(newcomer.take().is_ok() && rest.iter().all(|t| t.take().is_ok()));
    }

    /// asyncio `test_abort_barrier`: waiters and later waits fail; `reset` mends it.
    #[test]
    fn abort_breaks_the_barrier_until_reset() {
        let ex = Exec::new();
        let b = Barrier::new(2);
        let t = spawn_waits(&ex, &b, 1);
        ex.run_until_stalled();
        b.abort();
        assert!(b.is_broken());
        let late = ex.spawn(b.wait());
        ex.run_until_stalled();
        assert_eq!(t[0].take(), Err(BrokenBarrierError));
        assert_eq!(late.take(), Err(BrokenBarrierError));
        assert_eq!(
            BrokenBarrierError.to_string(),
            "barrier is broken or was reset"
        );
        b.reset();
        assert!(!b.is_broken());
        let t = spawn_waits(&ex, &b, 2);
        ex.run_until_stalled();
        assert!(t.iter().all(|t| t.take().is_ok()));
    }

    #[test]
    #[should_panic(expected = "parties must be at least 1")]
    fn zero_parties_panics() {
        let _ = Barrier::new(0);
    }
}
