//! `Promise<T>`: asyncio's `Future`, a result slot that the loop completes.

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::errors::{Cancelled, InvalidState};
use crate::event_loop::{Loop, WeakLoop, discard_unrun};
use crate::waiters::{WaitQueue, Wakeups};

/// Identifies a done-callback, to remove it with `remove_done_callback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(pub(crate) u64);

type DoneCallback<T> = Box<dyn FnOnce(&Loop, &Result<T, Cancelled>)>;

/// How the loop's drop reports name a promise's done-callback dropped unrun.
const DROPPED_CALLBACK: &str = "a promise's done-callback";

/// A result slot completed on the loop: asyncio's `Future`.
///
/// Create one with [`Loop::create_promise`]. Someone sets its result (or cancels it);
/// everyone else waits, either with done-callbacks or, for `T: Clone`, by `.await`ing
/// it (every clone of the promise yields a clone of the result).
///
/// - Done-callbacks run through [`call_soon`](Loop::call_soon), never inline inside
///   `set_result` or `cancel`, in the order they were added. One added to a promise
///   that is already done is scheduled at once.
/// - `Clone`: all clones are the same promise. Each clone is its own awaiter: while
///   one waits (it returned `Pending`), the promise keeps that clone's latest waker,
///   one per clone however often it is polled, and dropping the clone (a timeout
///   that expired, a cancelled task) takes its waker off the promise at once, in
///   O(1). So a long-lived promise (a shutdown signal) that many short-lived futures
///   await never accumulates their wakers.
/// - Debug mode reports a promise dropped unresolved while tasks await it (they can
///   never complete).
/// - A promise holds its loop weakly; completing it after the loop is gone or closed
///   records the result, and the callbacks are dropped without running.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// let lp = evloop::Loop::new().unwrap();
/// let p = lp.create_promise::<u32>();
/// let seen = Rc::new(RefCell::new(None));
/// let s = seen.clone();
/// p.add_done_callback(move |_, r| *s.borrow_mut() = Some(*r));
/// let setter = p.clone();
/// lp.call_soon(move |_| setter.set_result(42).unwrap());
/// assert_eq!(lp.run_until_complete(p).unwrap(), Ok(42));
/// assert_eq!(*seen.borrow(), Some(Ok(42)));
/// ```
pub struct Promise<T> {
    inner: Rc<PromiseInner<T>>,
    /// This handle's entry in `PromiseInner::awaiters`: `Some` from the poll that
    /// returned `Pending` until the poll that returns `Ready`, or the drop. Only this
    /// handle removes the entry, so the key is never reused while held; once the
    /// promise is done the key means nothing (the awaiters were all woken and let go).
    key: Cell<Option<u32>>,
}

struct PromiseInner<T> {
    lp: WeakLoop,
    /// Where the promise was created, for debug reports.
    location: &'static Location<'static>,
    /// Set exactly once, by `set_result` or `cancel`.
    result: OnceCell<Result<T, Cancelled>>,
    /// Callbacks waiting for the result. Empty once done: they have been scheduled
    /// (or, with the loop closed or gone, dropped). Never dropped as a whole: each is
    /// dropped on its own (see `discard_unrun`), as a panic in one's `Drop` while
    /// the rest unwind would abort the process.
    callbacks: RefCell<Vec<(u64, DoneCallback<T>)>>,
    next_callback: Cell<u64>,
    /// The wakers of the handles awaiting the promise, one each (see
    /// `Promise::key`). Taken whole (and woken) when the promise completes.
    awaiters: RefCell<Awaiters>,
}

/// The wakers of the handles awaiting a pending promise, in the order they started
/// waiting, each removable in O(1) by its key. One awaiter, the common case, is
/// stored inline, without allocating.
#[derive(Default)]
struct Awaiters {
    /// Key 0. Taken only while `rest` is empty, so it is always the oldest waiter.
    first: Option<Waker>,
    /// Key `k + 1` for `rest`'s key `k`. Its entries are never notified: the whole
    /// set is taken and woken at once.
    rest: WaitQueue,
}

impl Awaiters {
    fn push(&mut self, waker: &Waker) -> u32 {
        if self.first.is_none() && self.rest.queued() == 0 {
            self.first = Some(waker.clone());
            return 0;
        }
        u32::try_from(self.rest.push(waker) + 1).expect("more than 4 billion awaiters")
    }

    /// Makes entry `key` wake `waker`; hands back the waker replaced.
    fn replace(&mut self, key: u32, waker: &Waker) -> Option<Waker> {
        match key {
            0 => match &self.first {
                Some(old) if old.will_wake(waker) => None,
                _ => self.first.replace(waker.clone()),
            },
            k => self.rest.replace(k as usize - 1, waker),
        }
    }

    /// Removes entry `key`; hands back its waker.
    fn remove(&mut self, key: u32) -> Option<Waker> {
        match key {
            0 => self.first.take(),
            k => self.rest.take(k as usize - 1).1,
        }
    }

    /// How many handles are awaiting.
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.queued()
    }

    /// Wakes everyone, oldest first (with no borrow held: `self` was taken out).
    fn wake_all(self) {
        let Awaiters { first, mut rest } = self;
        if rest.queued() == 0 {
            if let Some(first) = first {
                first.wake();
            }
            return;
        }
        let mut wakeups = Wakeups::default();
        if let Some(first) = first {
            wakeups.wake(first);
        }
        rest.notify_all(&mut wakeups);
        drop(wakeups); // wakes them, then the emptied queue is dropped
    }
}

impl<T> Clone for Promise<T> {
    fn clone(&self) -> Self {
        Promise {
            inner: self.inner.clone(),
            key: Cell::new(None),
        }
    }
}

/// The last handle is gone with callbacks still waiting: they can never run.
impl<T> Drop for PromiseInner<T> {
    fn drop(&mut self) {
        let callbacks = std::mem::take(self.callbacks.get_mut());
        if !callbacks.is_empty() {
            let lp = self.lp.upgrade();
            discard_unrun(
                lp.as_ref(),
                DROPPED_CALLBACK,
                callbacks.into_iter().map(|(_, f)| f),
            );
        }
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        let inner = &self.inner;
        if let Some(key) = self.key.take()
            && inner.result.get().is_none()
        {
            let waker = inner.awaiters.borrow_mut().remove(key);
            drop(waker); // after the borrow
        }
        let others = Rc::strong_count(inner) - 1;
        if inner.result.get().is_none()
            && others > 0
            && others == inner.awaiters.borrow().len()
            && let Some(lp) = inner.lp.upgrade()
            && lp.debug()
        {
            log::warn!(
                "Promise created at {} was dropped unresolved: the {others} task(s) awaiting it can never complete",
                inner.location
            );
        }
    }
}

impl Loop {
    /// A new, pending [`Promise`] bound to this loop.
    ///
    /// # Panics
    /// On a closed loop.
    #[track_caller]
    pub fn create_promise<T: 'static>(&self) -> Promise<T> {
        // A promise is only a slot: one made from a destructor while `close()` drops
        // what was pending is fine (its callbacks will not run).
        let _ = self.closing_drops("create_promise");
        Promise {
            key: Cell::new(None),
            inner: Rc::new(PromiseInner {
                lp: self.downgrade(),
                location: Location::caller(),
                result: OnceCell::new(),
                callbacks: RefCell::new(Vec::new()),
                next_callback: Cell::new(0),
                awaiters: RefCell::new(Awaiters::default()),
            }),
        }
    }
}

impl<T: 'static> Promise<T> {
    /// Sets the result, waking awaiters and scheduling the done-callbacks.
    ///
    /// # Errors
    /// `Err(InvalidState)` if the promise is already done (resolved or cancelled);
    /// `value` is dropped.
    pub fn set_result(&self, value: T) -> Result<(), InvalidState> {
        self.complete(Ok(value)).map_err(|_| InvalidState)
    }

    /// Cancels the promise: awaiters get `Err(Cancelled)`. Returns false if it was
    /// already done.
    pub fn cancel(&self) -> bool {
        self.complete(Err(Cancelled)).is_ok()
    }

    /// Whether a result was set or the promise was cancelled.
    pub fn is_done(&self) -> bool {
        self.inner.result.get().is_some()
    }

    /// Whether the promise was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.inner.result.get(), Some(Err(Cancelled)))
    }

    /// The result, if done: a reference, so `T` need not be `Clone`.
    pub fn result(&self) -> Option<&Result<T, Cancelled>> {
        self.inner.result.get()
    }

    /// Adds `f`, called with the result once the promise is done (through
    /// `call_soon`; at once, through `call_soon`, if already done).
    #[track_caller]
    pub fn add_done_callback(
        &self,
        f: impl FnOnce(&Loop, &Result<T, Cancelled>) + 'static,
    ) -> CallbackId {
        let id = self.inner.next_callback.get();
        self.inner.next_callback.set(id + 1);
        if self.is_done() {
            self.schedule(Box::new(f));
        } else {
            self.inner.callbacks.borrow_mut().push((id, Box::new(f)));
        }
        CallbackId(id)
    }

    /// Removes a done-callback that has not been scheduled yet. Returns whether it
    /// was found (false once the promise is done: its callbacks are scheduled).
    pub fn remove_done_callback(&self, id: CallbackId) -> bool {
        let mut cbs = self.inner.callbacks.borrow_mut();
        match cbs.iter().position(|(i, _)| *i == id.0) {
            Some(pos) => {
                let (_, removed) = cbs.remove(pos);
                drop(cbs);
                let lp = self.inner.lp.upgrade();
                discard_unrun(lp.as_ref(), "a removed done-callback", Some(removed));
                true
            }
            None => false,
        }
    }

    fn complete(&self, result: Result<T, Cancelled>) -> Result<(), Result<T, Cancelled>> {
        self.inner.result.set(result)?;
        let callbacks = std::mem::take(&mut *self.inner.callbacks.borrow_mut());
        if !callbacks.is_empty() {
            match self.inner.lp.upgrade() {
                Some(lp) if !lp.is_closed() => {
                    for (_, f) in callbacks {
                        self.schedule_on(&lp, f);
                    }
                }
                // Nothing can run them: each is dropped on its own.
                lp => discard_unrun(
                    lp.as_ref(),
                    DROPPED_CALLBACK,
                    callbacks.into_iter().map(|(_, f)| f),
                ),
            }
        }
        let awaiters = std::mem::take(&mut *self.inner.awaiters.borrow_mut());
        awaiters.wake_all();
        Ok(())
    }

    /// Schedules `f` on the promise's loop; with the loop closed or gone, nothing can
    /// run it, and it is dropped.
    #[track_caller]
    fn schedule(&self, f: DoneCallback<T>) {
        match self.inner.lp.upgrade() {
            Some(lp) if !lp.is_closed() => self.schedule_on(&lp, f),
            lp => discard_unrun(lp.as_ref(), DROPPED_CALLBACK, Some(f)),
        }
    }

    #[track_caller]
    fn schedule_on(&self, lp: &Loop, f: DoneCallback<T>) {
        let inner = self.inner.clone();
        lp.call_soon(move |lp| {
            let result = inner.result.get().expect("scheduled once done");
            f(lp, result);
        });
    }
}

impl<T: Clone + 'static> Future for Promise<T> {
    type Output = Result<T, Cancelled>;

    /// Each poll costs O(1): a handle keeps one entry in the promise's waiters, whose
    /// waker a re-poll replaces only if it would not wake the same task.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.inner.result.get() {
            self.key.set(None); // woken and let go of by `complete`
            return Poll::Ready(r.clone());
        }
        let mut awaiters = self.inner.awaiters.borrow_mut();
        let replaced = match self.key.get() {
            Some(key) => awaiters.replace(key, cx.waker()),
            None => {
                self.key.set(Some(awaiters.push(cx.waker())));
                None
            }
        };
        drop(awaiters);
        drop(replaced); // after the borrow
        Poll::Pending
    }
}

impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.inner.result.get() {
            None => "pending",
            Some(Ok(_)) => "done",
            Some(Err(_)) => "cancelled",
        };
        f.debug_struct("Promise").field("state", &state).finish()
    }
}
