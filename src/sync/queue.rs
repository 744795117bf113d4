//! [`Queue`]: asyncio's `Queue`, a FIFO queue between tasks on one loop; the engine
//! of [`LifoQueue`](super::LifoQueue) and [`PriorityQueue`](super::PriorityQueue) too.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::permits::{Permits, Ticket};
use super::queue_error::{QueueShutDown, TryGetError, TryPutError};
use super::queue_order::Order;
use crate::waiters::{WaitQueue, WakeOnUnwind, Wakeups};

/// A first-in, first-out queue between tasks on one loop (asyncio's `Queue`).
///
/// [`get`](Queue::get) waits while the queue is empty. A [`bounded`](Queue::bounded)
/// queue holds at most `capacity` items and [`put`](Queue::put) waits while it is
/// full: backpressure on the producers. [`Queue::new`] is unbounded, and `put`
/// never waits. [`put_nowait`](Queue::put_nowait) and
/// [`get_nowait`](Queue::get_nowait) never wait; they fail instead, and a failed
/// `put_nowait` hands the item back.
///
/// [`task_done`](Queue::task_done) and [`join`](Queue::join) track, as asyncio's
/// do, whether every item put has also been processed.
///
/// A `Queue` is a cheap handle: clones share one queue. It is `!Send`, for the tasks
/// of one loop thread; it works with any waker, not only evloop's.
///
/// # Shutting down
/// [`shutdown`](Queue::shutdown) (Python 3.13's `Queue.shutdown`) ends the queue as
/// closing a channel does: from then on every `put` fails with [`QueueShutDown`]
/// (holding the item), waiting putters included; `get` still takes the items left
/// and fails with `QueueShutDown` once there are none, waiting getters included.
/// `shutdown(true)` also drops the items left at once.
///
/// # Fairness
/// Getters get items in the order they started waiting, and putters get free slots
/// in the order they started waiting. An item put while getters wait is promised to
/// the oldest getter at once, and a slot freed while putters wait to the oldest
/// putter, before the woken task runs again. A newcomer cannot take what was
/// promised: while every item in the queue is promised to a woken getter,
/// `get_nowait()` fails although [`len`](Queue::len) is not zero; while every free
/// slot is promised to a woken putter, `put_nowait()` fails although
/// [`is_full`](Queue::is_full) is `false`. The window lasts until the woken tasks
/// run.
///
/// # Cancellation
/// Dropping a [`GetFuture`] or [`PutFuture`] takes it out of its line. A dropped
/// `get()` never takes an item out of the queue, and a dropped `put()` never puts its
/// item in (it drops the item). If the dropped waiter had already been promised an
/// item or a slot, the promise passes to the next waiter in line: a cancelled waiter
/// never swallows a wake-up, and no item is lost.
///
/// # Example
/// ```
/// use evloop::{Loop, sync::Queue};
///
/// let lp = Loop::new().unwrap();
/// let q = Queue::bounded(2);
/// let producer = lp.create_task({
///     let q = q.clone();
///     async move {
///         for i in 0..10 {
///             q.put(i).await.unwrap(); // waits while two items are unread
///         }
///         q.shutdown(false); // no more items: the consumer's loop ends
///     }
/// });
/// let received = lp
///     .run_until_complete(async {
///         let mut received = Vec::new();
///         while let Ok(item) = q.get().await {
///             received.push(item);
///             assert!(q.len() <= 2);
///         }
///         received
///     })
///     .unwrap();
/// assert_eq!(received, (0..10).collect::<Vec<_>>());
/// assert!(producer.is_done());
/// ```
pub struct Queue<T> {
    shared: Rc<RefCell<Shared<T>>>,
}

struct Shared<T> {
    /// The items, in `order`. Invariant: `items.len() <= capacity` when bounded.
    items: VecDeque<T>,
    /// Which item a getter takes.
    order: Order<T>,
    /// `None`: unbounded.
    capacity: Option<usize>,
    /// One permit per item in `items` that no getter has been promised yet.
    /// Invariant (until a `shutdown(true)`): `items.len()` = free permits + notified
    /// getters (each notified getter owns one item, which it pops when it resumes;
    /// which item is not fixed, it pops the next one in `order`). After
    /// `shutdown(true)`, `items` is empty and a notified getter finds nothing.
    readable: Permits,
    /// For a bounded queue, one permit per free slot that no putter has been promised
    /// yet. Invariant (until shutdown, after which no item is put):
    /// `capacity - items.len()` = free permits + notified putters. `None` when
    /// unbounded.
    writable: Option<Permits>,
    /// Items put and not yet marked done by `task_done()`.
    unfinished: usize,
    /// Tasks in `join()`. Invariant: while `unfinished == 0`, none is queued:
    /// `task_done()` reaching zero notifies them all, and `join()` at zero does not
    /// queue.
    joiners: WaitQueue,
    /// `shutdown` was called: no item is put any more. Both permit sets are closed.
    shut_down: bool,
}

impl<T> Shared<T> {
    /// Pushes `item` into a slot the caller owns and promises it to the oldest getter
    /// (or counts it as free).
    #[inline]
    fn push(&mut self, item: T, wakeups: &mut Wakeups) {
        self.unfinished += 1;
        self.readable.release(1, wakeups);
        // Last: should `T`'s `Ord` panic, the item and its permit are both in.
        self.order.push(&mut self.items, item);
    }

    /// Takes the next item for a caller that owns a `readable` permit, and frees its
    /// slot (for the oldest putter, if any). `None` only after `shutdown(true)`.
    #[inline]
    fn pop(&mut self, wakeups: &mut Wakeups) -> Option<T> {
        let item = self.order.pop(&mut self.items);
        debug_assert!(
            item.is_some() || self.shut_down,
            "queue: a readable permit without an item"
        );
        if item.is_some()
            && let Some(writable) = &mut self.writable
        {
            writable.release(1, wakeups);
        }
        item
    }
}

impl<T> Queue<T> {
    /// An unbounded queue: `put` never waits.
    pub fn new() -> Queue<T> {
        Queue::with_order(None, Order::Fifo)
    }

    /// A queue that holds at most `capacity` items (asyncio's `maxsize`): `put`
    /// waits while it is full.
    ///
    /// # Panics
    /// If `capacity` is zero. (asyncio reads `maxsize=0` as unbounded; use
    /// [`Queue::new`] for that.)
    pub fn bounded(capacity: usize) -> Queue<T> {
        Queue::with_order(Some(checked_capacity(capacity)), Order::Fifo)
    }

    pub(crate) fn with_order(capacity: Option<usize>, order: Order<T>) -> Queue<T> {
        Queue {
            shared: Rc::new(RefCell::new(Shared {
                items: VecDeque::new(),
                order,
                capacity,
                readable: Permits::new(0),
                writable: capacity.map(Permits::new),
                unfinished: 0,
                joiners: WaitQueue::default(),
                shut_down: false,
            })),
        }
    }

    /// Puts `item` in, waiting while the queue is full (never, if it is unbounded).
    ///
    /// The item is in the queue when the future completes with `Ok(())`. If the
    /// queue is shut down before that (or was already), the future completes with
    /// `Err(QueueShutDown(item))`, handing the item back. Dropped before it
    /// completes, the future drops the item instead, and the queue is as if `put`
    /// was never called.
    pub fn put(&self, item: T) -> PutFuture<T> {
        PutFuture {
            shared: self.shared.clone(),
            item: Some(item),
            ticket: Ticket::Idle,
        }
    }

    /// Takes the next item, waiting while there is none.
    ///
    /// Completes with `Err(QueueShutDown(()))` once the queue is shut down and no item
    /// is left for this getter (at once after `shutdown(true)`). Dropped before it
    /// completes, the future takes nothing.
    pub fn get(&self) -> GetFuture<T> {
        GetFuture {
            shared: self.shared.clone(),
            ticket: Ticket::Idle,
        }
    }

    /// Puts `item` in if a slot is free for a newcomer; otherwise hands it back in
    /// [`TryPutError::Full`] (or [`TryPutError::ShutDown`] once the queue is shut
    /// down).
    pub fn put_nowait(&self, item: T) -> Result<(), TryPutError<T>> {
        let mut wakeups = Wakeups::default();
        let mut shared = self.shared.borrow_mut();
        if shared.shut_down {
            return Err(TryPutError::ShutDown(item));
        }
        if let Some(writable) = &mut shared.writable
            && !writable.try_acquire()
        {
            return Err(TryPutError::Full(item));
        }
        shared.push(item, &mut wakeups);
        Ok(())
    }

    /// Takes the next item if one is there for a newcomer (not promised to a woken
    /// `get()`); otherwise fails with [`TryGetError::Empty`], or with
    /// [`TryGetError::ShutDown`] once the queue is shut down and has none left.
    pub fn get_nowait(&self) -> Result<T, TryGetError> {
        let mut wakeups = Wakeups::default();
        let mut shared = self.shared.borrow_mut();
        if !shared.readable.try_acquire() {
            return Err(if shared.shut_down {
                TryGetError::ShutDown
            } else {
                TryGetError::Empty
            });
        }
        shared.pop(&mut wakeups).ok_or(TryGetError::ShutDown)
    }

    /// Shuts the queue down (Python 3.13's `Queue.shutdown(immediate)`).
    ///
    /// From then on `put` and `put_nowait` fail with the item handed back, and
    /// putters waiting for a slot wake and fail the same way. With `immediate` false,
    /// getters still take the items left, then fail with [`QueueShutDown`]; getters
    /// that wait for an item that will never come wake and fail at once.
    ///
    /// With `immediate` true, the items left are dropped, and every getter fails,
    /// those already promised an item included. Each dropped item counts as done for
    /// [`join`](Queue::join) (a [`task_done`](Queue::task_done) each, as 3.13's), so
    /// joiners wake once nothing else is unfinished. The items are dropped during
    /// this call, after the queue has been updated and its waiters woken, in the
    /// order they are stored (for a `Queue`, oldest first), with no borrow of the
    /// queue held (an item's `Drop` may use the queue). If an item's `Drop` panics,
    /// the other items are still dropped and the first panic is then resumed from
    /// this call.
    ///
    /// Calling it again is harmless; `shutdown(true)` after `shutdown(false)` drops
    /// the items left.
    pub fn shutdown(&self, immediate: bool) {
        let dropped = {
            let mut wakeups = Wakeups::default();
            let mut shared = self.shared.borrow_mut();
            let shared = &mut *shared;
            shared.shut_down = true;
            let mut dropped = VecDeque::new();
            if immediate {
                dropped = std::mem::take(&mut shared.items);
                shared.readable.clear_available();
                shared.unfinished = shared.unfinished.saturating_sub(dropped.len());
                if shared.unfinished == 0 {
                    shared.joiners.notify_all(&mut wakeups);
                }
            }
            shared.readable.close(&mut wakeups);
            if let Some(writable) = &mut shared.writable {
                writable.close(&mut wakeups);
            }
            dropped
            // The borrow ends, then `wakeups` wakes the waiters.
        };
        let mut first_panic = None;
        for item in dropped {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| drop(item))) {
                first_panic.get_or_insert(panic);
            }
        }
        if let Some(panic) = first_panic {
            resume_unwind(panic);
        }
    }

    /// Whether [`shutdown`](Queue::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.borrow().shut_down
    }

    /// How many items the queue holds (asyncio's `qsize()`), counting those promised
    /// to woken getters that have not resumed yet.
    pub fn len(&self) -> usize {
        self.shared.borrow().items.len()
    }

    /// Whether the queue holds no item (asyncio's `empty()`).
    pub fn is_empty(&self) -> bool {
        self.shared.borrow().items.is_empty()
    }

    /// Whether the queue holds `capacity` items (asyncio's `full()`); always `false`
    /// for an unbounded queue.
    pub fn is_full(&self) -> bool {
        let shared = self.shared.borrow();
        shared.capacity.is_some_and(|cap| shared.items.len() >= cap)
    }

    /// The most items the queue holds (asyncio's `maxsize`); `None` if unbounded.
    pub fn capacity(&self) -> Option<usize> {
        self.shared.borrow().capacity
    }

    /// Marks one item taken from the queue as processed (asyncio's `task_done()`).
    ///
    /// Every item put counts as unfinished until a `task_done()` call is made for
    /// it; when none is left, tasks waiting in [`join`](Queue::join) wake.
    ///
    /// # Panics
    /// If called more times than items were put (asyncio's `ValueError`).
    pub fn task_done(&self) {
        let mut wakeups = Wakeups::default();
        let mut shared = self.shared.borrow_mut();
        assert!(
            shared.unfinished > 0,
            "Queue::task_done called more times than items were put"
        );
        shared.unfinished -= 1;
        if shared.unfinished == 0 {
            shared.joiners.notify_all(&mut wakeups);
        }
    }

    /// Waits until every item put has been marked processed with
    /// [`task_done`](Queue::task_done) (asyncio's `join()`); ready at once if none is
    /// unfinished.
    pub fn join(&self) -> JoinFuture<T> {
        JoinFuture {
            shared: self.shared.clone(),
            key: None,
            done: false,
        }
    }

    /// The type's name and shared state, for the `Debug` of every queue kind.
    pub(crate) fn debug_as(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared.borrow();
        f.debug_struct(name)
            .field("len", &shared.items.len())
            .field("capacity", &shared.capacity)
            .field("getters", &shared.readable.queued())
            .field(
                "putters",
                &shared.writable.as_ref().map_or(0, Permits::queued),
            )
            .field("unfinished", &shared.unfinished)
            .field("shut_down", &shared.shut_down)
            .finish()
    }
}

/// `capacity`, checked for [`Queue::bounded`] and its kin.
pub(crate) fn checked_capacity(capacity: usize) -> usize {
    assert!(
        capacity >= 1,
        "bounded queue: capacity must be at least 1 (use new() for unbounded)"
    );
    capacity
}

impl<T> Clone for Queue<T> {
    /// Another handle to the same queue.
    fn clone(&self) -> Queue<T> {
        Queue {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Default for Queue<T> {
    /// An unbounded queue.
    fn default() -> Queue<T> {
        Queue::new()
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.debug_as("Queue", f)
    }
}

/// The future returned by [`Queue::put`]: `Ok(())` once the item is in the queue,
/// `Err(QueueShutDown(item))` if the queue was shut down first.
///
/// Dropped before that, it drops the item and leaves its place in line (passing on a
/// slot it had already been promised).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct PutFuture<T> {
    shared: Rc<RefCell<Shared<T>>>,
    /// The item to put; `None` once put (or handed back).
    item: Option<T>,
    /// Our place among the putters waiting for a slot (bounded queues only).
    ticket: Ticket,
}

// The item is moved, never pinned.
impl<T> Unpin for PutFuture<T> {}

impl<T> Future for PutFuture<T> {
    type Output = Result<(), QueueShutDown<T>>;

    // The common case inline (at the `.await`): a first poll that finds a free
    // slot, which puts the item in and wakes at most one getter (the one promised
    // the item). The rest (waiting for a slot, a shut-down queue) is `poll_slow`.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if matches!(this.ticket, Ticket::Idle) && this.item.is_some() {
            // The one waker this may wake, woken once the borrow has ended (or by an
            // unwinding, should `T`'s `Ord` panic in the push).
            let mut woken = WakeOnUnwind::default();
            let mut borrowed = this.shared.borrow_mut();
            let shared = &mut *borrowed;
            if !shared.shut_down
                && shared
                    .writable
                    .as_mut()
                    .is_none_or(|writable| writable.try_acquire())
            {
                this.ticket = Ticket::Done;
                let item = this.item.take().expect("checked above");
                // `Shared::push`, with its one wake kept here.
                shared.unfinished += 1;
                woken.0 = shared.readable.release_one();
                shared.order.push(&mut shared.items, item);
                drop(borrowed);
                woken.wake_now();
                return Poll::Ready(Ok(()));
            }
        }
        this.poll_slow(cx)
    }
}

impl<T> PutFuture<T> {
    /// [`poll`](Future::poll) past its inline case.
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), QueueShutDown<T>>> {
        let this = self;
        assert!(this.item.is_some(), "`PutFuture` polled after completion");
        let mut wakeups = Wakeups::default();
        let mut shared = this.shared.borrow_mut();
        let shared = &mut *shared;
        if shared.shut_down {
            // A slot we were promised goes on; it no longer matters to anyone.
            if let Some(writable) = &mut shared.writable {
                this.ticket.cancel(writable, &mut wakeups);
            }
            let item = this.item.take().expect("checked above");
            return Poll::Ready(Err(QueueShutDown(item)));
        }
        if let Some(writable) = &mut shared.writable
            && this
                .ticket
                .poll(writable, cx.waker(), &mut wakeups, "PutFuture")
                .is_pending()
        {
            return Poll::Pending;
        }
        let item = this.item.take().expect("checked above");
        shared.push(item, &mut wakeups);
        Poll::Ready(Ok(()))
    }
}

impl<T> Drop for PutFuture<T> {
    #[inline]
    fn drop(&mut self) {
        if self.ticket.is_waiting() {
            self.leave_line();
        }
        // `self.item`, if still here, drops after this: outside the borrow.
    }
}

impl<T> PutFuture<T> {
    /// Dropped while waiting: leaves the putters' line (passing on a promised slot).
    #[cold]
    #[inline(never)]
    fn leave_line(&mut self) {
        let mut wakeups = Wakeups::default();
        let mut shared = self.shared.borrow_mut();
        if let Some(writable) = &mut shared.writable {
            self.ticket.cancel(writable, &mut wakeups);
        }
    }
}

impl<T> fmt::Debug for PutFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutFuture")
            .field("ticket", &self.ticket)
            .field("done", &self.item.is_none())
            .finish()
    }
}

/// The future returned by [`Queue::get`]: resolves to the next item, or to
/// `Err(QueueShutDown(()))` once the queue is shut down with none left for it.
///
/// Dropped before that, it takes nothing and leaves its place in line (passing on an
/// item it had already been promised).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct GetFuture<T> {
    shared: Rc<RefCell<Shared<T>>>,
    ticket: Ticket,
}

impl<T> Future for GetFuture<T> {
    type Output = Result<T, QueueShutDown>;

    // The common cases inline (at the `.await`), neither of which wakes anyone: a
    // get that has to wait queues itself, and a get that has its item (free, or
    // promised to it) takes it while no putter waits for the slot it frees. The
    // rest is `poll_slow`.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        {
            let mut shared = this.shared.borrow_mut();
            let shared = &mut *shared;
            if this
                .ticket
                .queue_if_none_free(&mut shared.readable, cx.waker())
            {
                return Poll::Pending;
            }
            if shared
                .writable
                .as_ref()
                .is_none_or(|writable| writable.queued() == 0)
                && this.ticket.take_ready(&mut shared.readable)
            {
                // `Shared::pop`, whose freed slot goes to no one.
                let item = shared.order.pop(&mut shared.items);
                debug_assert!(
                    item.is_some() || shared.shut_down,
                    "queue: a readable permit without an item"
                );
                if item.is_some()
                    && let Some(writable) = &mut shared.writable
                {
                    writable.release_unqueued(1);
                }
                return Poll::Ready(item.ok_or(QueueShutDown(())));
            }
        }
        this.poll_slow(cx)
    }
}

impl<T> GetFuture<T> {
    /// [`poll`](Future::poll) past its inline cases.
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, QueueShutDown>> {
        let this = self;
        let mut wakeups = Wakeups::default();
        let mut shared = this.shared.borrow_mut();
        let got = this.ticket.poll_unless_closed(
            &mut shared.readable,
            cx.waker(),
            &mut wakeups,
            "GetFuture",
        );
        got.map(|got| match got {
            true => shared.pop(&mut wakeups).ok_or(QueueShutDown(())),
            false => Err(QueueShutDown(())),
        })
    }
}

impl<T> Drop for GetFuture<T> {
    #[inline]
    fn drop(&mut self) {
        if self.ticket.is_waiting() {
            self.leave_line();
        }
    }
}

impl<T> GetFuture<T> {
    /// Dropped while waiting: leaves the getters' line (passing on a promised item).
    #[cold]
    #[inline(never)]
    fn leave_line(&mut self) {
        let mut wakeups = Wakeups::default();
        let mut shared = self.shared.borrow_mut();
        self.ticket.cancel(&mut shared.readable, &mut wakeups);
    }
}

impl<T> fmt::Debug for GetFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetFuture")
            .field("ticket", &self.ticket)
            .finish()
    }
}

/// The future returned by [`Queue::join`]: ready once every item put has been
/// marked done.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct JoinFuture<T> {
    shared: Rc<RefCell<Shared<T>>>,
    /// Our entry in `Shared::joiners` while we wait.
    key: Option<usize>,
    done: bool,
}

impl<T> Future for JoinFuture<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        assert!(!this.done, "`JoinFuture` polled after completion");
        let mut wakeups = Wakeups::default();
        let mut shared = this.shared.borrow_mut();
        match this.key {
            None if shared.unfinished == 0 => {}
            None => {
                this.key = Some(shared.joiners.push(cx.waker()));
                return Poll::Pending;
            }
            Some(key) if shared.joiners.is_notified(key) => {
                shared.joiners.remove(key, &mut wakeups);
                this.key = None;
            }
            Some(key) => {
                shared.joiners.register(key, cx.waker(), &mut wakeups);
                return Poll::Pending;
            }
        }
        this.done = true;
        Poll::Ready(())
    }
}

impl<T> Drop for JoinFuture<T> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut wakeups = Wakeups::default();
            self.shared.borrow_mut().joiners.remove(key, &mut wakeups);
        }
    }
}

impl<T> fmt::Debug for JoinFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinFuture")
            .field("waiting", &self.key.is_some())
            .field("done", &self.done)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::*;
    use crate::sync::test_exec::{Exec, yield_now};

    fn getters<T>(q: &Queue<T>) -> usize {
        q.shared.borrow().readable.queued()
    }

    fn putters<T>(q: &Queue<T>) -> usize {
        q.shared
            .borrow()
            .writable
            .as_ref()
            .map_or(0, Permits::queued)
    }

    /// asyncio `test_empty` / `test_full` / `test_order`.
    #[test]
    fn empty_full_and_order() {
        let q = Queue::new();
        assert!(q.is_empty() && !q.is_full());
        assert_eq!(q.capacity(), None);
        for i in [1, 3, 2] {
            q.put_nowait(i).unwrap();
        }
        assert_eq!(q.len(), 3);
        assert!(!q.is_full(), "an unbounded queue is never full");
        let items: Vec<_> = (0..3).map(|_| q.get_nowait().unwrap()).collect();
        assert_eq!(items, [1, 3, 2]);
        assert!(q.is_empty());

        let q = Queue::bounded(1);
        assert_eq!(q.capacity(), Some(1));
        q.put_nowait("a").unwrap();
        assert!(q.is_full());
    }

    /// asyncio `test_nonblocking_get_exception` / `test_nonblocking_put_exception`.
    #[test]
    fn nowait_errors_give_the_item_back() {
        let q = Queue::bounded(1);
        assert_eq!(q.get_nowait(), Err(TryGetError::Empty));
        q.put_nowait(String::from("one")).unwrap();
        let err = q.put_nowait(String::from("two")).unwrap_err();
        assert_eq!(err.to_string(), "queue is full");
        assert_eq!(err.into_inner(), "two");
        assert_eq!(q.get_nowait().as_deref(), Ok("one"));
        assert_eq!(TryGetError::Empty.to_string(), "queue is empty");
    }

    #[test]
    #[should_panic(expected = "capacity must be at least 1")]
    fn bounded_zero_panics() {
        let _ = Queue::<()>::bounded(0);
    }

    #[test]
    fn clones_share_the_queue() {
        let a = Queue::new();
        let b = a.clone();
        a.put_nowait(7).unwrap();
        assert_eq!(b.get_nowait(), Ok(7));
    }

    /// asyncio `test_maxsize`: the putter blocks after filling the queue and
    /// resumes when a slot frees.
    #[test]
    fn bounded_queue_applies_backpressure() {
        let ex = Exec::new();
        let q = Queue::bounded(2);
        let put = Rc::new(RefCell::new(Vec::new()));
        let t = {
            let (q, put) = (q.clone(), put.clone());
            ex.spawn(async move {
                for i in 0..3 {
                    q.put(i).await.unwrap();
                    put.borrow_mut().push(i);
                }
            })
        };
        ex.run_until_stalled();
        assert_eq!(*put.borrow(), [0, 1]);
        assert!(q.is_full());
        assert_eq!(putters(&q), 1);
        assert_eq!(q.get_nowait(), Ok(0));
        ex.run_briefly();
        assert_eq!(*put.borrow(), [0, 1, 2]);
        assert_eq!(q.get_nowait(), Ok(1));
        assert_eq!(q.get_nowait(), Ok(2));
        assert!(t.is_done());
    }

    /// asyncio `test_blocking_get_wait` / `test_put_with_waiting_getters`.
    #[test]
    fn get_waits_for_put() {
        let ex = Exec::new();
        let q = Queue::new();
        let t = ex.spawn(q.get());
        ex.run_until_stalled();
        assert!(!t.is_done());
        assert_eq!(getters(&q), 1);
        let p = ex.spawn(q.put('a'));
        ex.run_until_stalled();
        assert!(p.is_done());
        assert_eq!(t.take(), Ok('a'));
        assert!(q.is_empty());
    }

    #[test]
    fn getters_are_served_in_fifo_order() {
        let ex = Exec::new();
        let q = Queue::new();
        let g: Vec<_> = (0..3).map(|_| ex.spawn(q.get())).collect();
        ex.run_briefly();
        for i in 0..3 {
            q.put_nowait(i).unwrap();
        }
        ex.run_until_stalled();
        assert_eq!(
            g.iter().map(|t| t.take().unwrap()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    /// asyncio `test_get_with_waiting_putters`: waiting putters are served in order.
    #[test]
    fn putters_are_served_in_fifo_order() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        let _pa = ex.spawn(q.put('a'));
        let _pb = ex.spawn(q.put('b'));
        let _pc = ex.spawn(q.put('c'));
        ex.run_briefly();
        assert_eq!(putters(&q), 2);
        let mut got = Vec::new();
        for _ in 0..3 {
            let g = ex.spawn(q.get());
            got.push(ex.run_until_complete(&g).unwrap());
        }
        assert_eq!(got, ['a', 'b', 'c']);
    }

    /// asyncio `test_get_cancelled_race`: a cancelled queued getter does not
    /// receive the next item; the next getter does.
    #[test]
    fn cancelled_queued_getter_is_skipped() {
        let ex = Exec::new();
        let q = Queue::new();
        let t1 = ex.spawn(q.get());
        let t2 = ex.spawn(q.get());
        ex.run_briefly();
        ex.cancel(t1.id);
        assert_eq!(getters(&q), 1);
        q.put_nowait('a').unwrap();
        ex.run_briefly();
        assert_eq!(t2.take(), Ok('a'));
    }

    /// asyncio `test_get_cancel_drop_one_pending_reader`: the reader was promised
    /// item 1 but is cancelled before it resumes; 1 stays first in the queue.
    #[test]
    fn cancelled_chosen_getter_loses_no_item() {
        let ex = Exec::new();
        let q = Queue::new();
        let reader = ex.spawn(q.get());
        ex.run_briefly();
        q.put_nowait(1).unwrap(); // promised to `reader`
        q.put_nowait(2).unwrap();
        assert_eq!(q.len(), 2);
        ex.cancel(reader.id);
        assert_eq!(q.len(), 2);
        let again = ex.spawn(q.get());
        assert_eq!(ex.run_until_complete(&again), Ok(1));
        assert_eq!(q.get_nowait(), Ok(2));
    }

    /// asyncio `test_get_cancel_drop_many_pending_readers`: the promise of the
    /// cancelled reader passes to the next one; both items are delivered.
    #[test]
    fn cancelled_chosen_getter_passes_its_item_on() {
        let ex = Exec::new();
        let q = Queue::new();
        let r1 = ex.spawn(q.get());
        let r2 = ex.spawn(q.get());
        let r3 = ex.spawn(q.get());
        ex.run_briefly();
        q.put_nowait(1).unwrap(); // promised to r1
        q.put_nowait(2).unwrap(); // promised to r2
        ex.cancel(r1.id); // r1's promise goes to r3
        ex.run_until_stalled();
        assert_eq!((r2.take(), r3.take()), (Ok(1), Ok(2)));
        assert!(q.is_empty());
    }

    /// asyncio `test_put_cancel_drop`: the writer was promised the freed slot but is
    /// cancelled before it resumes; its item is not put, and the slot is free again.
    #[test]
    fn cancelled_chosen_putter_frees_its_slot() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        q.put_nowait(1).unwrap();
        let writer = ex.spawn(q.put(2));
        ex.run_briefly();
        assert_eq!(q.get_nowait(), Ok(1)); // slot promised to `writer`
        assert_eq!(q.put_nowait(99), Err(TryPutError::Full(99)), "no barging");
        ex.cancel(writer.id);
        assert!(q.is_empty());
        q.put_nowait(2).unwrap();
        assert_eq!(q.get_nowait(), Ok(2));
        assert_eq!(q.len(), 0);
    }

    /// asyncio `test_put_cancelled_race`: of two waiting putters, the cancelled one
    /// is skipped and its item never appears.
    #[test]
    fn cancelled_queued_putter_is_skipped() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        let put_a = ex.spawn(q.put('a'));
        let put_b = ex.spawn(q.put('b'));
        let put_c = ex.spawn(q.put('X'));
        ex.run_briefly();
        assert!(put_a.is_done() && !put_b.is_done());
        ex.cancel(put_c.id);
        assert_eq!(putters(&q), 1);
        assert_eq!(q.get_nowait(), Ok('a'));
        ex.run_briefly();
        assert_eq!(q.get_nowait(), Ok('b'));
        assert!(put_b.is_done());
        assert_eq!(q.get_nowait(), Err(TryGetError::Empty));
    }

    /// A cancelled putter whose slot passes to the next putter.
    #[test]
    fn cancelled_chosen_putter_passes_its_slot_on() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        q.put_nowait('a').unwrap();
        let pb = ex.spawn(q.put('b'));
        let pc = ex.spawn(q.put('c'));
        ex.run_briefly();
        assert_eq!(q.get_nowait(), Ok('a')); // slot promised to pb
        ex.cancel(pb.id);
        ex.run_until_stalled();
        assert!(pc.is_done());
        assert_eq!(q.get_nowait(), Ok('c'));
    }

    #[test]
    fn newcomer_get_does_not_barge() {
        let ex = Exec::new();
        let q = Queue::new();
        let g = ex.spawn(q.get());
        ex.run_briefly();
        q.put_nowait(1).unwrap(); // promised to g
        assert_eq!(q.len(), 1);
        assert_eq!(q.get_nowait(), Err(TryGetError::Empty));
        let newcomer = ex.spawn(q.get());
        ex.run_until_stalled();
        assert_eq!(g.take(), Ok(1));
        assert!(!newcomer.is_done());
        q.put_nowait(2).unwrap();
        ex.run_until_stalled();
        assert_eq!(newcomer.take(), Ok(2));
    }

    /// asyncio `test_why_are_getters_waiting`.
    #[test]
    fn producer_and_consumer_over_capacity_one() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        let (qp, qc) = (q.clone(), q.clone());
        let producer = ex.spawn(async move {
            for i in 0..5 {
                qp.put(i).await.unwrap();
            }
        });
        let consumer = ex.spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(qc.get().await.unwrap());
            }
            got
        });
        ex.run_until_stalled();
        assert!(producer.is_done());
        assert_eq!(consumer.take(), [0, 1, 2, 3, 4]);
    }

    /// asyncio `test_why_are_putters_waiting`: a getter that drains with
    /// `get_nowait` lets every putter through.
    #[test]
    fn draining_with_get_nowait_releases_all_putters() {
        let ex = Exec::new();
        let q = Queue::bounded(2);
        let drained = Rc::new(RefCell::new(Vec::new()));
        let getter = {
            let (q, drained) = (q.clone(), drained.clone());
            ex.spawn(async move {
                yield_now().await;
                while let Ok(i) = q.get_nowait() {
                    drained.borrow_mut().push(i);
                }
            })
        };
        let putters: Vec<_> = (0..4).map(|i| ex.spawn(q.put(i))).collect();
        ex.run_until_stalled();
        assert!(getter.is_done());
        assert!(putters.iter().all(|p| p.is_done()));
        assert_eq!(*drained.borrow(), [0, 1]);
        assert_eq!((q.get_nowait(), q.get_nowait()), (Ok(2), Ok(3)));
    }

    /// asyncio `test_cancelled_puts_not_being_held_in_self_putters`.
    #[test]
    fn cancelled_putter_is_removed() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        q.put_nowait(1).unwrap();
        let p = ex.spawn(q.put(1));
        ex.run_briefly();
        assert_eq!(putters(&q), 1);
        ex.cancel(p.id);
        assert_eq!(putters(&q), 0);
    }

    #[test]
    fn dropped_put_drops_its_item() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        let item = Rc::new(());
        q.put_nowait(item.clone()).unwrap();
        let p = ex.spawn(q.put(item.clone()));
        ex.run_briefly();
        assert_eq!(Rc::strong_count(&item), 3);
        ex.cancel(p.id);
        assert_eq!(Rc::strong_count(&item), 2);
    }

    /// asyncio `test_task_done`: two workers, `join()` returns once all 100 items
    /// are processed.
    #[test]
    fn join_waits_for_task_done() {
        let ex = Exec::new();
        let q = Queue::new();
        for i in 0..100 {
            q.put_nowait(i).unwrap();
        }
        let sum = Rc::new(Cell::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (q, sum) = (q.clone(), sum.clone());
                ex.spawn(async move {
                    loop {
                        let item = q.get().await.unwrap();
                        sum.set(sum.get() + item);
                        yield_now().await;
                        q.task_done();
                    }
                })
            })
            .collect();
        let join = ex.spawn(q.join());
        ex.run_until_complete(&join);
        assert_eq!(sum.get(), (0..100).sum::<i32>());
        for w in &workers {
            ex.cancel(w.id);
        }
        assert_eq!(getters(&q), 0);
    }

    /// asyncio `test_join_empty_queue`.
    #[test]
    fn join_on_a_finished_queue_is_ready_at_once() {
        let q = Queue::<u8>::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut q.join()).poll(&mut cx).is_ready());
        assert!(Pin::new(&mut q.join()).poll(&mut cx).is_ready());
    }

    #[test]
    fn dropped_joiner_is_removed() {
        let ex = Exec::new();
        let q = Queue::new();
        q.put_nowait(1).unwrap();
        let j = ex.spawn(q.join());
        ex.run_briefly();
        assert_eq!(q.shared.borrow().joiners.queued(), 1);
        ex.cancel(j.id);
        assert_eq!(q.shared.borrow().joiners.queued(), 0);
    }

    /// asyncio `test_task_done_underflow`.
    #[test]
    #[should_panic(expected = "task_done called more times than items were put")]
    fn task_done_underflow_panics() {
        Queue::<()>::new().task_done();
    }

    #[test]
    fn many_producers_keep_per_producer_order() {
        let ex = Exec::new();
        let q = Queue::bounded(4);
        let producers: Vec<_> = (0..3u32)
            .map(|p| {
                let q = q.clone();
                ex.spawn(async move {
                    for i in 0..200u32 {
                        q.put((p, i)).await.unwrap();
                        if i % 7 == 0 {
                            yield_now().await;
                        }
                    }
                })
            })
            .collect();
        let consumer = {
            let q = q.clone();
            ex.spawn(async move {
                let mut next = [0u32; 3];
                for _ in 0..600 {
                    let (p, i) = q.get().await.unwrap();
                    assert_eq!(i, next[p as usize], "producer {p} out of order");
                    next[p as usize] += 1;
                    assert!(q.len() <= 4);
                }
                next
            })
        };
        ex.run_until_stalled();
        assert!(producers.iter().all(|p| p.is_done()));
        assert_eq!(consumer.take(), [200, 200, 200]);
        assert!(q.is_empty());
    }

    /// Counts the drops of its items.
    struct Counted(Rc<Cell<usize>>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    /// asyncio 3.13 `test_shutdown_empty`: a shut-down empty queue refuses every
    /// put (handing the item back) and every get.
    #[test]
    fn shutdown_empty_queue_refuses_puts_and_gets() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        assert!(!q.is_shut_down());
        q.shutdown(false);
        assert!(q.is_shut_down());
        let put = ex.spawn(q.put("data"));
        let get = ex.spawn(q.get());
        ex.run_briefly();
        assert_eq!(put.take().unwrap_err().into_inner(), "data");
        assert_eq!(get.take(), Err(QueueShutDown(())));
        let err = q.put_nowait("data").unwrap_err();
        assert!(err.is_shut_down() && !err.is_full());
        assert_eq!(err.to_string(), "queue is shut down");
        assert_eq!(err.into_inner(), "data");
        assert_eq!(q.get_nowait(), Err(TryGetError::ShutDown));
        assert_eq!(QueueShutDown(()).to_string(), "queue is shut down");
    }

    /// asyncio 3.13 `test_shutdown_nonempty`: after `shutdown(false)` the items left
    /// are still got, then gets fail.
    #[test]
    fn shutdown_nonempty_queue_drains_then_refuses() {
        let ex = Exec::new();
        let q = Queue::new();
        q.put_nowait(1).unwrap();
        q.put_nowait(2).unwrap();
        q.shutdown(false);
        assert_eq!(q.put_nowait(3), Err(TryPutError::ShutDown(3)));
        assert_eq!(q.get_nowait(), Ok(1));
        let get = ex.spawn(q.get());
        assert_eq!(ex.run_until_complete(&get), Ok(2));
        assert_eq!(q.get_nowait(), Err(TryGetError::ShutDown));
        let get = ex.spawn(q.get());
        assert_eq!(ex.run_until_complete(&get), Err(QueueShutDown(())));
    }

    /// asyncio 3.13 `test_shutdown_immediate`: `shutdown(true)` drops the items left
    /// (during the call) and every get fails.
    #[test]
    fn shutdown_immediate_drops_the_items_at_once() {
        let ex = Exec::new();
        let drops = Rc::new(Cell::new(0));
        let q = Queue::new();
        for _ in 0..3 {
            q.put_nowait(Counted(drops.clone())).unwrap();
        }
        q.shutdown(true);
        assert_eq!(drops.get(), 3, "dropped before shutdown returned");
        assert!(q.is_empty());
        assert!(matches!(q.get_nowait(), Err(TryGetError::ShutDown)));
        let get = ex.spawn(q.get());
        assert!(ex.run_until_complete(&get).is_err());
    }

    /// asyncio 3.13 `test_shutdown_immediate_with_unfinished`: each dropped item
    /// counts as done; the items already got still need their `task_done()`.
    #[test]
    fn shutdown_immediate_marks_dropped_items_done() {
        let ex = Exec::new();
        let q = Queue::new();
        q.put_nowait("data").unwrap();
        q.put_nowait("data").unwrap();
        assert_eq!(q.get_nowait(), Ok("data"));
        let join = ex.spawn(q.join());
        ex.run_briefly();
        q.shutdown(true);
        ex.run_until_stalled();
        assert!(!join.is_done(), "the item got is not done yet");
        q.task_done();
        ex.run_until_stalled();
        assert!(join.is_done());
    }

    /// asyncio 3.13 `test_shutdown_immediate_with_unfinished` (its end): with nothing
    /// unfinished, `task_done()` still refuses.
    #[test]
    #[should_panic(expected = "task_done called more times than items were put")]
    fn task_done_after_immediate_shutdown_underflows() {
        let q = Queue::new();
        q.put_nowait(1).unwrap();
        q.shutdown(true);
        q.task_done();
    }

    /// asyncio 3.13 `test_shutdown_putters` / `_test_shutdown_put` (bounded): a
    /// putter waiting for a slot, and one already promised a slot, both wake and
    /// fail with their items.
    #[test]
    fn shutdown_wakes_waiting_putters_with_their_items() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        q.put_nowait(0).unwrap();
        let p1 = ex.spawn(q.put(1));
        let p2 = ex.spawn(q.put(2));
        ex.run_briefly();
        assert_eq!(putters(&q), 2);
        assert_eq!(q.get_nowait(), Ok(0)); // the slot is promised to p1
        q.shutdown(false);
        ex.run_until_stalled();
        assert_eq!(p1.take().unwrap_err().into_inner(), 1);
        assert_eq!(p2.take().unwrap_err().into_inner(), 2);
        assert_eq!(putters(&q), 0);
        assert!(q.is_empty());
    }

    /// asyncio 3.13 `test_shutdown_getters` / `_test_shutdown_get`: getters waiting
    /// on an empty queue wake and fail; one already promised an item gets it
    /// (`shutdown(false)`).
    #[test]
    fn shutdown_wakes_waiting_getters() {
        let ex = Exec::new();
        let q = Queue::new();
        let g1 = ex.spawn(q.get());
        let g2 = ex.spawn(q.get());
        let g3 = ex.spawn(q.get());
        ex.run_briefly();
        q.put_nowait('a').unwrap(); // promised to g1
        q.shutdown(false);
        ex.run_until_stalled();
        assert_eq!(g1.take(), Ok('a'));
        assert_eq!(g2.take(), Err(QueueShutDown(())));
        assert_eq!(g3.take(), Err(QueueShutDown(())));
        assert_eq!(getters(&q), 0);
    }

    /// `shutdown(true)` takes the promised item away too: the promised getter fails.
    #[test]
    fn shutdown_immediate_fails_a_promised_getter() {
        let ex = Exec::new();
        let q = Queue::new();
        let g = ex.spawn(q.get());
        ex.run_briefly();
        q.put_nowait('a').unwrap(); // promised to g
        q.shutdown(true);
        ex.run_until_stalled();
        assert_eq!(g.take(), Err(QueueShutDown(())));
    }

    /// A getter promised an item and then cancelled after `shutdown(false)` passes
    /// the item on: a newcomer still gets it.
    #[test]
    fn cancelled_promised_getter_after_shutdown_loses_no_item() {
        let ex = Exec::new();
        let q = Queue::new();
        let g = ex.spawn(q.get());
        ex.run_briefly();
        q.put_nowait('a').unwrap();
        q.shutdown(false);
        ex.cancel(g.id);
        assert_eq!(q.get_nowait(), Ok('a'));
        assert_eq!(q.get_nowait(), Err(TryGetError::ShutDown));
    }

    /// An item whose `Drop` panics: `shutdown(true)` still drops every other item,
    /// leaves the queue usable, and then resumes the panic.
    #[test]
    fn shutdown_immediate_survives_a_panicking_drop() {
        struct Bomb(Rc<Cell<usize>>, bool);
        impl Drop for Bomb {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
                if self.1 {
                    panic!("bomb");
                }
            }
        }
        let drops = Rc::new(Cell::new(0));
        let q = Queue::new();
        for explode in [false, true, false, true] {
            q.put_nowait(Bomb(drops.clone(), explode)).unwrap();
        }
        let panic = catch_unwind(AssertUnwindSafe(|| q.shutdown(true))).unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"bomb"));
        assert_eq!(drops.get(), 4);
        assert!(q.is_empty() && q.is_shut_down());
        assert!(matches!(q.get_nowait(), Err(TryGetError::ShutDown)));
    }

    /// An item whose `Drop` uses the queue: the queue is not borrowed then.
    #[test]
    fn shutdown_immediate_drops_items_with_the_queue_free() {
        struct Peek(Queue<Peek>, Rc<Cell<usize>>);
        impl Drop for Peek {
            fn drop(&mut self) {
                self.1.set(self.1.get() + self.0.len() + 1);
            }
        }
        let seen = Rc::new(Cell::new(0));
        let q = Queue::new();
        q.put_nowait(Peek(q.clone(), seen.clone())).unwrap();
        q.shutdown(true);
        assert_eq!(seen.get(), 1, "dropped once, seeing an empty queue");
    }
}
