//! [`Queue`]: asyncio's `Queue`, a FIFO queue between tasks on one loop.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::permits::{Permits, Ticket};
use crate::waiters::{WaitQueue, Wakeups};

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
///             q.put(i).await; // waits while two items are unread
///         }
///     }
/// });
/// let received = lp
///     .run_until_complete(async {
///         let mut received = Vec::new();
///         for _ in 0..10 {
///             received.push(q.get().await);
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
    /// The items, oldest first. Invariant: `items.len() <= capacity` when bounded.
    items: VecDeque<T>,
    /// `None`: unbounded.
    capacity: Option<usize>,
    /// One permit per item in `items` that no getter has been promised yet.
    /// Invariant: `items.len()` = free permits + notified getters (each notified
    /// getter owns one item, which it pops when it resumes; which item is not fixed,
    /// it pops the front).
    readable: Permits,
    /// For a bounded queue, one permit per free slot that no putter has been promised
    /// yet. Invariant: `capacity - items.len()` = free permits + notified putters.
    /// `None` when unbounded.
    writable: Option<Permits>,
    /// Items put and not yet marked done by `task_done()`.
    unfinished: usize,
    /// Tasks in `join()`. Invariant: while `unfinished == 0`, none is queued:
    /// `task_done()` reaching zero notifies them all, and `join()` at zero does not
    /// queue.
    joiners: WaitQueue,
}

impl<T> Shared<T> {
    /// Pushes `item` into a slot the caller owns and promises it to the oldest getter
    /// (or counts it as free).
    fn push(&mut self, item: T, wakeups: &mut Wakeups) {
        self.items.push_back(item);
        self.unfinished += 1;
        self.readable.release(1, wakeups);
    }

    /// Pops the front item for a caller that owns a `readable` permit, and frees its
    /// slot (for the oldest putter, if any).
    fn pop(&mut self, wakeups: &mut Wakeups) -> T {
        let item = self
            .items
            .pop_front()
            .expect("queue: a readable permit without an item");
        if let Some(writable) = &mut self.writable {
            writable.release(1, wakeups);
        }
        item
    }
}

impl<T> Queue<T> {
    /// An unbounded queue: `put` never waits.
    pub fn new() -> Queue<T> {
        Queue::with_capacity(None)
    }

    /// A queue that holds at most `capacity` items (asyncio's `maxsize`): `put`
    /// waits while it is full.
    ///
    /// # Panics
    /// If `capacity` is zero. (asyncio reads `maxsize=0` as unbounded; use
    /// [`Queue::new`] for that.)
    pub fn bounded(capacity: usize) -> Queue<T> {
        assert!(
            capacity >= 1,
            "Queue::bounded: capacity must be at least 1 (use Queue::new for unbounded)"
        );
        Queue::with_capacity(Some(capacity))
    }

    fn with_capacity(capacity: Option<usize>) -> Queue<T> {
        Queue {
            shared: Rc::new(RefCell::new(Shared {
                items: VecDeque::new(),
                capacity,
                readable: Permits::new(0),
                writable: capacity.map(Permits::new),
                unfinished: 0,
                joiners: WaitQueue::default(),
            })),
        }
    }

    /// Puts `item` at the back, waiting while the queue is full (never, if it is
    /// unbounded).
    ///
    /// The item is in the queue when the future completes. Dropped before that, the
    /// future drops the item instead, and the queue is as if `put` was never called.
    pub fn put(&self, item: T) -> PutFuture<T> {
        PutFuture {
            shared: self.shared.clone(),
            item: Some(item),
            ticket: Ticket::Idle,
        }
    }

    /// Takes the front item, waiting while there is none.
    ///
    /// Dropped before it completes, the future takes nothing.
    pub fn get(&self) -> GetFuture<T> {
        GetFuture {
            shared: self.shared.clone(),
            ticket: Ticket::Idle,
        }
    }

    /// Puts `item` at the back if a slot is free for a newcomer; otherwise hands it
    /// back in [`QueueFull`].
    pub fn put_nowait(&self, item: T) -> Result<(), QueueFull<T>> {
        let mut wakeups = Wakeups::default();
        let mut shared = self.shared.borrow_mut();
        if let Some(writable) = &mut shared.writable
            && !writable.try_acquire()
        {
            return Err(QueueFull(item));
        }
        shared.push(item, &mut wakeups);
        Ok(())
    }

    /// Takes the front item if one is there for a newcomer (not promised to a woken
    /// `get()`); otherwise fails with [`QueueEmpty`].
    pub fn get_nowait(&self) -> Result<T, QueueEmpty> {
        let mut wakeups = Wakeups::default();
        let mut shared = self.shared.borrow_mut();
        if !shared.readable.try_acquire() {
            return Err(QueueEmpty);
        }
        Ok(shared.pop(&mut wakeups))
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
        let shared = self.shared.borrow();
        f.debug_struct("Queue")
            .field("len", &shared.items.len())
            .field("capacity", &shared.capacity)
            .field("getters", &shared.readable.queued())
            .field(
                "putters",
                &shared.writable.as_ref().map_or(0, Permits::queued),
            )
            .field("unfinished", &shared.unfinished)
            .finish()
    }
}

/// The future returned by [`Queue::put`]: ready once the item is in the queue.
///
/// Dropped before that, it drops the item and leaves its place in line (passing on a
/// slot it had already been promised).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct PutFuture<T> {
    shared: Rc<RefCell<Shared<T>>>,
    /// The item to put; `None` once put.
    item: Option<T>,
    /// Our place among the putters waiting for a slot (bounded queues only).
    ticket: Ticket,
}

// The item is moved, never pinned.
impl<T> Unpin for PutFuture<T> {}

impl<T> Future for PutFuture<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        assert!(this.item.is_some(), "`PutFuture` polled after completion");
        let mut wakeups = Wakeups::default();
        let mut shared = this.shared.borrow_mut();
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
        Poll::Ready(())
    }
}

impl<T> Drop for PutFuture<T> {
    fn drop(&mut self) {
        if self.ticket.is_waiting() {
            let mut wakeups = Wakeups::default();
            let mut shared = self.shared.borrow_mut();
            if let Some(writable) = &mut shared.writable {
                self.ticket.cancel(writable, &mut wakeups);
            }
        }
        // `self.item`, if still here, drops after this: outside the borrow.
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

/// The future returned by [`Queue::get`]: resolves to the front item.
///
/// Dropped before that, it takes nothing and leaves its place in line (passing on an
/// item it had already been promised).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct GetFuture<T> {
    shared: Rc<RefCell<Shared<T>>>,
    ticket: Ticket,
}

impl<T> Future for GetFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let mut wakeups = Wakeups::default();
        let mut shared = this.shared.borrow_mut();
        let ready = this
            .ticket
            .poll(&mut shared.readable, cx.waker(), &mut wakeups, "GetFuture");
        ready.map(|()| shared.pop(&mut wakeups))
    }
}

impl<T> Drop for GetFuture<T> {
    fn drop(&mut self) {
        if self.ticket.is_waiting() {
            let mut wakeups = Wakeups::default();
            let mut shared = self.shared.borrow_mut();
            self.ticket.cancel(&mut shared.readable, &mut wakeups);
        }
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

/// [`Queue::put_nowait`] found no free slot: the queue is full, or its free slots
/// are promised to woken putters. Holds the item that was not put.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct QueueFull<T>(pub T);

impl<T> QueueFull<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QueueFull").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is full")
    }
}

impl<T> Error for QueueFull<T> {}

/// [`Queue::get_nowait`] found no item: the queue is empty, or its items are
/// promised to woken getters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueEmpty;

impl fmt::Display for QueueEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is empty")
    }
}

impl Error for QueueEmpty {}

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
        assert_eq!(q.get_nowait(), Err(QueueEmpty));
        q.put_nowait(String::from("one")).unwrap();
        let err = q.put_nowait(String::from("two")).unwrap_err();
        assert_eq!(err.to_string(), "queue is full");
        assert_eq!(err.into_inner(), "two");
        assert_eq!(q.get_nowait().as_deref(), Ok("one"));
        assert_eq!(QueueEmpty.to_string(), "queue is empty");
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
                    q.put(i).await;
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
        assert_eq!(t.take(), 'a');
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
        assert_eq!(g.iter().map(|t| t.take()).collect::<Vec<_>>(), [0, 1, 2]);
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
            got.push(ex.run_until_complete(&g));
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
        assert_eq!(t2.take(), 'a');
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
        assert_eq!(ex.run_until_complete(&again), 1);
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
        assert_eq!((r2.take(), r3.take()), (1, 2));
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
        assert_eq!(q.put_nowait(99), Err(QueueFull(99)), "no barging");
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
        assert_eq!(q.get_nowait(), Err(QueueEmpty));
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
        assert_eq!(q.get_nowait(), Err(QueueEmpty));
        let newcomer = ex.spawn(q.get());
        ex.run_until_stalled();
        assert_eq!(g.take(), 1);
        assert!(!newcomer.is_done());
        q.put_nowait(2).unwrap();
        ex.run_until_stalled();
        assert_eq!(newcomer.take(), 2);
    }

    /// asyncio `test_why_are_getters_waiting`.
    #[test]
    fn producer_and_consumer_over_capacity_one() {
        let ex = Exec::new();
        let q = Queue::bounded(1);
        let (qp, qc) = (q.clone(), q.clone());
        let producer = ex.spawn(async move {
            for i in 0..5 {
                qp.put(i).await;
            }
        });
        let consumer = ex.spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(qc.get().await);
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
                        let item = q.get().await;
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
                        q.put((p, i)).await;
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
                    let (p, i) = q.get().await;
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
}
