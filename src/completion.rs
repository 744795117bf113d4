//! `Completion`: the result slot of a [`RemoteTask`](crate::RemoteTask), shared by
//! the loop (which completes it) and any thread (which waits for it, polls it or
//! cancels it).
//!
//! One mutex guards the whole slot, and a condition variable wakes blocked waiters,
//! so the rules are plain:
//! - The first [`complete`](Completion::complete) wins and sets `finished`; later
//!   ones (the loop closing after the task ended) do nothing.
//! - A waiter checks for the result and sleeps on the condition variable in one
//!   critical section with the completion's `notify_all`, so it cannot miss it; a
//!   `.await`er's waker is stored under the same lock and taken by the completion,
//!   which wakes it after releasing the lock.
//! - [`request_cancel`](Completion::request_cancel) fails once `finished`; otherwise
//!   it records the request and returns the task's id if the loop has already
//!   created the task, else the loop sees the request in
//!   [`started`](Completion::started) (one critical section each, so a cancel is
//!   either seen by `started` or finds the id).
//!
//! The models at the bottom check waits racing with completion and cancel
//! (`.ci/loom`).

use std::task::{Context, Poll, Waker};

use crate::sync_shim::{Condvar, Mutex};

/// A result of type `T` for a task known to the loop as `Id`; see the module docs.
pub(crate) struct Completion<T, Id> {
    slot: Mutex<Slot<T, Id>>,
    done: Condvar,
}

struct Slot<T, Id> {
    /// The output, from completion until someone takes it.
    result: Option<T>,
    /// Completed (the output may have been taken since).
    finished: bool,
    cancel_requested: bool,
    /// The task on the loop, once created.
    id: Option<Id>,
    /// The waker of the last `.await`.
    waker: Option<Waker>,
}

impl<T, Id: Copy> Completion<T, Id> {
    pub(crate) fn new() -> Completion<T, Id> {
        Completion {
            slot: Mutex::new(Slot {
                result: None,
                finished: false,
                cancel_requested: false,
                id: None,
                waker: None,
            }),
            done: Condvar::new(),
        }
    }

    /// Sets the result, unless one was set already; wakes whoever waits.
    pub(crate) fn complete(&self, r: T) {
        let waker = {
            let mut slot = self.slot.lock();
            if slot.finished {
                return;
            }
            slot.finished = true;
            slot.result = Some(r);
            slot.waker.take()
        };
        self.done.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Blocks until the result is there, and takes it.
    ///
    /// # Panics
    /// If the result was taken before (a poll returned it): waiting would never end.
    pub(crate) fn wait(&self) -> T {
        let mut slot = self.slot.lock();
        loop {
            if let Some(r) = slot.result.take() {
                return r;
            }
            if slot.finished {
                drop(slot);
                panic!(
                    "RemoteTask::wait after an .await or poll already returned the \
                     task's output: the output is handed out once"
                );
            }
            self.done.wait(&mut slot);
        }
    }

    /// Blocks until the result is there or `deadline` (`None`: no deadline) passes:
    /// takes the result, or `None` if it is not there (or was taken before).
    #[cfg(not(loom))]
    pub(crate) fn wait_until(&self, deadline: Option<std::time::Instant>) -> Option<T> {
        let mut slot = self.slot.lock();
        loop {
            if let Some(r) = slot.result.take() {
                return Some(r);
            }
            if slot.finished {
                return None; // already taken
            }
            match deadline {
                Some(deadline) => {
                    if self.done.wait_until(&mut slot, deadline).timed_out() {
                        return slot.result.take();
                    }
                }
                None => self.done.wait(&mut slot),
            }
        }
    }

    /// A cancel from any thread: `None` if the task is finished; else the request is
    /// recorded, and `Some` holds the task's id if the loop has created it.
    pub(crate) fn request_cancel(&self) -> Option<Option<Id>> {
        let mut slot = self.slot.lock();
        if slot.finished {
            return None;
        }
        slot.cancel_requested = true;
        Some(slot.id)
    }

    /// Whether a cancel was requested.
    pub(crate) fn cancel_requested(&self) -> bool {
        self.slot.lock().cancel_requested
    }

    /// Loop side: the task now exists as `id`. Returns whether a cancel was
    /// requested (before this call; later requests find the id).
    pub(crate) fn started(&self, id: Id) -> bool {
        let mut slot = self.slot.lock();
        slot.id = Some(id);
        slot.cancel_requested
    }

    /// Whether the task is done.
    pub(crate) fn is_done(&self) -> bool {
        self.slot.lock().finished
    }

    /// As `Future::poll`: the result, or `Pending` with the context's waker kept
    /// for [`complete`](Completion::complete).
    ///
    /// # Panics
    /// If the result was already taken.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.slot.lock();
        if let Some(r) = slot.result.take() {
            return Poll::Ready(r);
        }
        assert!(
            !slot.finished,
            "RemoteTask polled again after it returned its output"
        );
        // Keep the latest waker, cloned only if it would not wake the same task; the
        // one replaced is dropped after the lock is released.
        let replaced = match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => None,
            _ => slot.waker.replace(cx.waker().clone()),
        };
        drop(slot);
        drop(replaced);
        Poll::Pending
    }

    /// Nobody will await the result any more: lets go of the stored waker.
    pub(crate) fn forget_waker(&self) {
        let waker = self.slot.lock().waker.take();
        drop(waker);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync_shim::{Arc, AtomicBool, Ordering};
    use loom::thread;
    use std::task::Wake;

    type Slot = Completion<Result<u32, &'static str>, u8>;

    /// The loop's side of `Remote::spawn`: the task starts unless a cancel came
    /// first, then ends; a cancel that found the id cancels it (the task ends
    /// cancelled if that cancel comes before it finishes).
    fn run_task(c: &Slot, cancel_seen: &AtomicBool) {
        if c.cancel_requested() {
            c.complete(Err("cancelled")); // never polled
            return;
        }
        if c.started(7) || cancel_seen.load(Ordering::SeqCst) {
            c.complete(Err("cancelled"));
        } else {
            c.complete(Ok(42));
        }
    }

    /// `RemoteTask::wait` racing with completion and with `cancel` from a third
    /// thread: the waiter always returns (no lost notification), with the output
    /// if the cancel came too late, and a cancel reported as done only if it came
    /// before the task finished.
    #[test]
    fn loom_wait_races_completion_and_cancel() {
        loom::model(|| {
            let c = Arc::new(Slot::new());
            let cancel_seen = Arc::new(AtomicBool::new(false));
            let lp = {
                let (c, seen) = (c.clone(), cancel_seen.clone());
                thread::spawn(move || run_task(&c, &seen))
            };
            let canceller = {
                let (c, seen) = (c.clone(), cancel_seen.clone());
                thread::spawn(move || {
                    let r = c.request_cancel();
                    if let Some(Some(7)) = r {
                        // `cancel` sends the task's cancel to the loop.
                        seen.store(true, Ordering::SeqCst);
                    }
                    r.is_some()
                })
            };
            let out = c.wait();
            let cancelled = canceller.join().unwrap();
            lp.join().unwrap();
            assert!(c.is_done());
            if !cancelled {
                assert_eq!(out, Ok(42), "a cancel after the end changes nothing");
            }
            // A late cancel (after the task checked) may not change the output;
            // but a cancelled output always comes from a cancel that was accepted.
            if out.is_err() {
                assert!(cancelled, "cancelled output without an accepted cancel");
            }
            assert!(c.request_cancel().is_none(), "done: nothing to cancel");
        });
    }

    struct Count(loom::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// An `.await` (a poll that stores its waker) racing with completion: the
    /// poll gets the output, or its waker is woken exactly once.
    #[test]
    fn loom_await_races_completion() {
        loom::model(|| {
            let c = Arc::new(Slot::new());
            let lp = {
                let c = c.clone();
                thread::spawn(move || c.complete(Ok(1)))
            };
            let count = std::sync::Arc::new(Count(loom::sync::atomic::AtomicUsize::new(0)));
            let waker = Waker::from(count.clone());
            let first = c.poll(&mut Context::from_waker(&waker));
            lp.join().unwrap();
            let woken = count.0.load(Ordering::SeqCst);
            match first {
                Poll::Ready(r) => {
                    assert_eq!(r, Ok(1));
                    assert_eq!(woken, 0, "no wake for a poll that got the output");
                }
                Poll::Pending => {
                    assert_eq!(woken, 1, "the pending poll's waker is woken once");
                    let again = c.poll(&mut Context::from_waker(&waker));
                    assert_eq!(again, Poll::Ready(Ok(1)));
                }
            }
        });
    }
}
