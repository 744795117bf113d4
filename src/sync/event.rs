//! [`Event`]: asyncio's `Event`, a flag that tasks on one loop can wait for.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::waiters::{WaitQueue, Wakeups};

/// A flag that tasks can wait for (asyncio's `Event`).
///
/// [`set`](Event::set) raises the flag and wakes every task waiting in
/// [`wait`](Event::wait); while it is set, `wait()` returns at once.
/// [`clear`](Event::clear) lowers it again. A waiter woken by `set()` completes even
/// if the flag is cleared before its task runs.
///
/// An `Event` is a cheap handle: clones share one flag. It is `!Send`, for the tasks
/// of one loop thread; it works with any waker, not only evloop's.
///
/// # Example
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use evloop::{Loop, sync::Event, yield_now};
///
/// let lp = Loop::new().unwrap();
/// let ready = Event::new();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let waiters: Vec<_> = (0..3)
///     .map(|i| {
///         let (ready, log) = (ready.clone(), log.clone());
///         lp.create_task(async move {
///             ready.wait().await;
///             log.borrow_mut().push(i);
///         })
///     })
///     .collect();
/// lp.run_until_complete(async {
///     yield_now().await; // the waiters start waiting
///     assert!(log.borrow().is_empty());
///     ready.set(); // wakes them all
///     for w in waiters {
///         w.await.unwrap();
///     }
/// })
/// .unwrap();
/// assert_eq!(*log.borrow(), [0, 1, 2]);
/// ```
#[derive(Clone, Default)]
pub struct Event {
    state: Rc<RefCell<State>>,
}

#[derive(Default)]
struct State {
    /// The flag.
    is_set: bool,
    /// Tasks in `wait()`. Invariant: while `is_set`, no waiter is queued: `set()`
    /// notifies all of them, and `wait()` on a set event does not queue. A notified
    /// entry stays until its future completes or is dropped; dropping one passes
    /// nothing on, since every waiter was woken together.
    waiters: WaitQueue,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event::default()
    }

    /// Sets the flag and wakes every waiting task. Setting a set event does nothing.
    pub fn set(&self) {
        let mut wakeups = Wakeups::default();
        let mut state = self.state.borrow_mut();
        if !state.is_set {
            state.is_set = true;
            state.waiters.notify_all(&mut wakeups);
        }
    }

    /// Clears the flag: later `wait()` calls wait for the next `set()`. Waiters
    /// already woken by a `set()` still complete.
    pub fn clear(&self) {
        self.state.borrow_mut().is_set = false;
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state.borrow().is_set
    }

    /// Waits until the flag is set; ready at once if it is set now.
    pub fn wait(&self) -> WaitFuture {
        WaitFuture {
            state: self.state.clone(),
            key: None,
            done: false,
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("Event")
            .field("is_set", &state.is_set)
            .field("waiters", &state.waiters.queued())
            .finish()
    }
}

/// The future returned by [`Event::wait`]: ready once the event is set.
///
/// Dropping it while it waits takes it out of the event's waiters.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitFuture {
    state: Rc<RefCell<State>>,
    /// Our entry in `State::waiters` while we wait.
    key: Option<usize>,
    done: bool,
}

impl Future for WaitFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        assert!(!this.done, "`WaitFuture` polled after completion");
        let mut wakeups = Wakeups::default();
        let mut state = this.state.borrow_mut();
        match this.key {
            None if state.is_set => {}
            None => {
                this.key = Some(state.waiters.push(cx.waker()));
                return Poll::Pending;
            }
            Some(key) if state.waiters.is_notified(key) => {
                state.waiters.remove(key, &mut wakeups);
                this.key = None;
            }
            Some(key) => {
                state.waiters.register(key, cx.waker(), &mut wakeups);
                return Poll::Pending;
            }
        }
        this.done = true;
        Poll::Ready(())
    }
}

impl Drop for WaitFuture {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut wakeups = Wakeups::default();
            self.state.borrow_mut().waiters.remove(key, &mut wakeups);
        }
    }
}

impl fmt::Debug for WaitFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitFuture")
            .field("waiting", &self.key.is_some())
            .field("done", &self.done)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::sync::test_exec::Exec;

    type Log = Rc<RefCell<Vec<u32>>>;

    fn wait_and_log(ev: &Event, log: &Log, n: u32) -> impl Future<Output = ()> + use<> {
        let (ev, log) = (ev.clone(), log.clone());
        async move {
            ev.wait().await;
            log.borrow_mut().push(n);
        }
    }

    fn waiters(ev: &Event) -> usize {
        ev.state.borrow().waiters.queued()
    }

    /// asyncio `test_wait`: set() wakes every waiter; a task that starts after the
    /// set (but runs before the woken ones) passes straight through.
    #[test]
    fn set_wakes_all_waiters() {
        let ex = Exec::new();
        let ev = Event::new();
        let log = Log::default();
        assert!(!ev.is_set());
        let t1 = ex.spawn(wait_and_log(&ev, &log, 1));
        let t2 = ex.spawn(wait_and_log(&ev, &log, 2));
        ex.run_briefly();
        assert!(log.borrow().is_empty());
        assert_eq!(waiters(&ev), 2);

        let t3 = ex.spawn(wait_and_log(&ev, &log, 3));
        ev.set();
        ex.run_briefly();
        assert_eq!(*log.borrow(), [3, 1, 2]);
        assert!(t1.is_done() && t2.is_done() && t3.is_done());
        assert_eq!(ev.state.borrow().waiters.queued(), 0);
    }

    /// asyncio `test_wait_on_set`.
    #[test]
    fn wait_on_set_event_is_ready_at_once() {
        let ev = Event::new();
        ev.set();
        let mut f = ev.wait();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
        assert_eq!(waiters(&ev), 0);
    }

    /// asyncio `test_wait_cancel`: a dropped waiter leaves the waiters.
    #[test]
    fn cancelled_waiter_is_removed() {
        let ex = Exec::new();
        let ev = Event::new();
        let t = ex.spawn(ev.wait());
        ex.run_briefly();
        assert_eq!(waiters(&ev), 1);
        ex.cancel(t.id);
        assert_eq!(waiters(&ev), 0);
    }

    /// asyncio `test_clear`.
    #[test]
    fn set_and_clear() {
        let ev = Event::new();
        ev.set();
        assert!(ev.is_set());
        ev.set();
        assert!(ev.is_set());
        ev.clear();
        assert!(!ev.is_set());
        let clone = ev.clone();
        clone.set();
        assert!(ev.is_set());
    }

    /// asyncio `test_clear_with_waiters`: set then clear at once still lets the
    /// waiter through; setting twice wakes it once.
    #[test]
    fn cleared_after_set_waiter_still_completes() {
        let ex = Exec::new();
        let ev = Event::new();
        let log = Log::default();
        let t = ex.spawn(wait_and_log(&ev, &log, 1));
        ex.run_briefly();
        ev.set();
        ev.clear();
        assert!(!ev.is_set());
        ev.set();
        ev.set();
        ex.run_briefly();
        assert_eq!(*log.borrow(), [1]);
        assert!(t.is_done());
        assert_eq!(ex.run_until_stalled(), 0, "woken exactly once");
    }

    #[test]
    fn waiter_after_clear_waits_for_next_set() {
        let ex = Exec::new();
        let ev = Event::new();
        let log = Log::default();
        ev.set();
        ev.clear();
        let t = ex.spawn(wait_and_log(&ev, &log, 1));
        ex.run_until_stalled();
        assert!(!t.is_done());
        ev.set();
        ex.run_until_stalled();
        assert!(t.is_done());
    }

    #[test]
    fn dropping_a_woken_waiter_does_not_affect_the_others() {
        let ex = Exec::new();
        let ev = Event::new();
        let log = Log::default();
        let t1 = ex.spawn(wait_and_log(&ev, &log, 1));
        let t2 = ex.spawn(wait_and_log(&ev, &log, 2));
        ex.run_briefly();
        ev.set();
        ex.cancel(t1.id);
        ex.run_until_stalled();
        assert_eq!(*log.borrow(), [2]);
        assert!(t2.is_done());
    }
}
