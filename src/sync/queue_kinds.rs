//! [`LifoQueue`] and [`PriorityQueue`]: asyncio's `LifoQueue` and `PriorityQueue`,
//! a [`Queue`] that hands out its items in another order, with the same methods.

use std::fmt;

use super::queue::{GetFuture, JoinFuture, PutFuture, Queue, checked_capacity};
use super::queue_error::{TryGetError, TryPutError};
use super::queue_order::Order;

/// The methods every queue kind shares with [`Queue`], which does the work.
macro_rules! queue_methods {
    ($name:ident) => {
        impl<T> $name<T> {
            /// Puts `item` in, waiting while the queue is full; see [`Queue::put`].
            pub fn put(&self, item: T) -> PutFuture<T> {
                self.inner.put(item)
            }

            /// Takes the next item, waiting while there is none; see [`Queue::get`].
            pub fn get(&self) -> GetFuture<T> {
                self.inner.get()
            }

            /// Puts `item` in without waiting; see [`Queue::put_nowait`].
            pub fn put_nowait(&self, item: T) -> Result<(), TryPutError<T>> {
                self.inner.put_nowait(item)
            }

            /// Takes the next item without waiting; see [`Queue::get_nowait`].
            pub fn get_nowait(&self) -> Result<T, TryGetError> {
                self.inner.get_nowait()
            }

            /// Shuts the queue down; see [`Queue::shutdown`].
            pub fn shutdown(&self, immediate: bool) {
                self.inner.shutdown(immediate)
            }

            /// Whether the queue was shut down; see [`Queue::is_shut_down`].
            pub fn is_shut_down(&self) -> bool {
                self.inner.is_shut_down()
            }

            /// How many items the queue holds (asyncio's `qsize()`); see [`Queue::len`].
            pub fn len(&self) -> usize {
                self.inner.len()
            }

            /// Whether the queue holds no item (asyncio's `empty()`).
            pub fn is_empty(&self) -> bool {
                self.inner.is_empty()
            }

            /// Whether the queue holds `capacity` items (asyncio's `full()`).
            pub fn is_full(&self) -> bool {
                self.inner.is_full()
            }

            /// The most items the queue holds (asyncio's `maxsize`); `None` if unbounded.
            pub fn capacity(&self) -> Option<usize> {
                self.inner.capacity()
            }

            /// Marks one item taken as processed; see [`Queue::task_done`].
            ///
            /// # Panics
            /// If called more times than items were put.
            pub fn task_done(&self) {
                self.inner.task_done()
            }

            /// Waits until every item put was marked done; see [`Queue::join`].
            pub fn join(&self) -> JoinFuture<T> {
                self.inner.join()
            }
        }

        impl<T> Clone for $name<T> {
            /// Another handle to the same queue.
            fn clone(&self) -> Self {
                $name {
                    inner: self.inner.clone(),
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.inner.debug_as(stringify!($name), f)
            }
        }
    };
}

/// A last-in, first-out queue between tasks on one loop (asyncio's `LifoQueue`):
/// `get` takes the item put most recently.
///
/// Everything else is as for [`Queue`]: capacity and backpressure, fairness among
/// waiters, cancellation, `task_done` / `join`, shutdown. An item promised to a
/// woken getter is not a fixed one: the getter takes the newest item when it
/// resumes.
///
/// ```
/// use evloop::sync::LifoQueue;
///
/// let q = LifoQueue::new();
/// for i in [1, 2, 3] {
///     q.put_nowait(i).unwrap();
/// }
/// assert_eq!([q.get_nowait(), q.get_nowait(), q.get_nowait()], [Ok(3), Ok(2), Ok(1)]);
/// ```
pub struct LifoQueue<T> {
    inner: Queue<T>,
}

impl<T> LifoQueue<T> {
    /// An unbounded LIFO queue: `put` never waits.
    pub fn new() -> Self {
        LifoQueue {
            inner: Queue::with_order(None, Order::Lifo),
        }
    }

    /// A LIFO queue that holds at most `capacity` items: `put` waits while it is
    /// full.
    ///
    /// # Panics
    /// If `capacity` is zero (use [`LifoQueue::new`] for unbounded).
    pub fn bounded(capacity: usize) -> Self {
        LifoQueue {
            inner: Queue::with_order(Some(checked_capacity(capacity)), Order::Lifo),
        }
    }
}

impl<T> Default for LifoQueue<T> {
    /// An unbounded LIFO queue.
    fn default() -> Self {
        LifoQueue::new()
    }
}

queue_methods!(LifoQueue);

/// A queue that hands out its smallest item first (asyncio's `PriorityQueue`).
///
/// Items are kept in a binary min-heap with Python's `heapq` algorithms, so items
/// that compare equal come out in the order asyncio's `PriorityQueue` would give
/// them (which is not the order they were put: for first-in-first-out among equal
/// priorities, put `(priority, sequence_number, item)` tuples, as asyncio's docs
/// advise).
///
/// Everything else is as for [`Queue`]: capacity and backpressure, fairness among
/// waiters, cancellation, `task_done` / `join`, shutdown. An item promised to a
/// woken getter is not a fixed one: the getter takes the smallest item when it
/// resumes.
///
/// `T`'s `Ord` is called while the queue is borrowed: it must not use the queue.
/// Should it panic, the panic reaches the caller of `put`/`get`, and the items stay
/// in the queue (their heap order may no longer hold).
///
/// ```
/// use evloop::sync::PriorityQueue;
///
/// let q = PriorityQueue::new();
/// for job in [(2, "write"), (0, "urgent"), (1, "read")] {
///     q.put_nowait(job).unwrap();
/// }
/// assert_eq!(q.get_nowait(), Ok((0, "urgent")));
/// assert_eq!(q.get_nowait(), Ok((1, "read")));
/// ```
pub struct PriorityQueue<T> {
    inner: Queue<T>,
}

impl<T: Ord> PriorityQueue<T> {
    /// An unbounded priority queue: `put` never waits.
    pub fn new() -> Self {
        PriorityQueue {
            inner: Queue::with_order(None, Order::Heap(less::<T>)),
        }
    }

    /// A priority queue that holds at most `capacity` items: `put` waits while it
    /// is full.
    ///
    /// # Panics
    /// If `capacity` is zero (use [`PriorityQueue::new`] for unbounded).
    pub fn bounded(capacity: usize) -> Self {
        PriorityQueue {
            inner: Queue::with_order(Some(checked_capacity(capacity)), Order::Heap(less::<T>)),
        }
    }
}

impl<T: Ord> Default for PriorityQueue<T> {
    /// An unbounded priority queue.
    fn default() -> Self {
        PriorityQueue::new()
    }
}

/// `T`'s `<`, as a plain function for [`Order::Heap`].
fn less<T: Ord>(a: &T, b: &T) -> bool {
    a < b
}

queue_methods!(PriorityQueue);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::QueueShutDown;
    use crate::sync::test_exec::Exec;

    /// asyncio `LifoQueueTests.test_order`.
    #[test]
    fn lifo_order() {
        let q = LifoQueue::new();
        for i in [1, 3, 2] {
            q.put_nowait(i).unwrap();
        }
        let items: Vec<_> = (0..3).map(|_| q.get_nowait().unwrap()).collect();
        assert_eq!(items, [2, 3, 1]);
    }

    /// asyncio `PriorityQueueTests.test_order`.
    #[test]
    fn priority_order() {
        let q = PriorityQueue::new();
        for i in [1, 3, 2] {
            q.put_nowait(i).unwrap();
        }
        let items: Vec<_> = (0..3).map(|_| q.get_nowait().unwrap()).collect();
        assert_eq!(items, [1, 2, 3]);
    }

    /// Items equal by priority come out in CPython's `heapq` order (computed with
    /// `heapq.heappush` / `heappop` on items that compare by their first field).
    #[test]
    fn equal_priorities_in_heapq_order() {
        #[derive(Debug, PartialEq, Eq)]
        struct Job(u8, char);
        impl PartialOrd for Job {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Job {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.cmp(&other.0)
            }
        }
        let q = PriorityQueue::new();
        for (p, c) in [
            (1, 'a'),
            (1, 'b'),
            (0, 'c'),
            (1, 'd'),
            (1, 'e'),
            (0, 'f'),
            (2, 'g'),
            (1, 'h'),
        ] {
            q.put_nowait(Job(p, c)).unwrap();
        }
        let out: String = std::iter::from_fn(|| q.get_nowait().ok())
            .map(|j| j.1)
            .collect();
        assert_eq!(out, "cfahbdeg");
    }

    /// A waiting getter of a priority queue takes the smallest item there when it
    /// resumes; a bounded one applies backpressure; shutdown works as `Queue`'s.
    #[test]
    fn priority_queue_waits_bounds_and_shuts_down() {
        let ex = Exec::new();
        let q = PriorityQueue::bounded(2);
        assert_eq!(q.capacity(), Some(2));
        let g = ex.spawn(q.get());
        ex.run_briefly();
        q.put_nowait(5).unwrap(); // promised to g
        q.put_nowait(1).unwrap();
        assert!(q.is_full());
        assert_eq!(q.put_nowait(0).unwrap_err().into_inner(), 0);
        ex.run_until_stalled();
        assert_eq!(g.take(), Ok(1), "the smallest at the time g resumed");
        let p = ex.spawn(q.put(7));
        let p2 = ex.spawn(q.put(3));
        ex.run_until_stalled();
        assert_eq!(p.take(), Ok(()));
        assert!(!p2.is_done());
        q.shutdown(false);
        ex.run_until_stalled();
        assert_eq!(p2.take().unwrap_err().into_inner(), 3);
        assert_eq!((q.get_nowait(), q.get_nowait()), (Ok(5), Ok(7)));
        let g = ex.spawn(q.get());
        assert_eq!(ex.run_until_complete(&g), Err(QueueShutDown(())));
        assert_eq!(q.len(), 0);
        assert!(format!("{q:?}").starts_with("PriorityQueue {"));
    }

    /// `LifoQueue` shares `Queue`'s `join` / `task_done` and cancellation.
    #[test]
    fn lifo_queue_join_and_cancelled_getter() {
        let ex = Exec::new();
        let q = LifoQueue::new();
        let g1 = ex.spawn(q.get());
        let g2 = ex.spawn(q.get());
        ex.run_briefly();
        q.put_nowait('a').unwrap(); // promised to g1
        ex.cancel(g1.id); // passes to g2
        let join = ex.spawn(q.join());
        ex.run_until_stalled();
        assert_eq!(g2.take(), Ok('a'));
        assert!(!join.is_done());
        q.task_done();
        ex.run_until_stalled();
        assert!(join.is_done());
        let q2 = q.clone();
        q2.put_nowait('b').unwrap();
        assert_eq!(q.len(), 1);
    }

    /// A `put` whose item's `Ord` panics (in the heap's sift) still wakes the getter
    /// it promised the item to, once the queue is no longer borrowed (its waker may
    /// use the queue), and both items stay in for the two promised getters.
    #[test]
    fn put_whose_ord_panics_still_wakes_its_getter_after_the_borrow() {
        use std::cell::{Cell, RefCell};
        use std::future::Future;
        use std::panic::{AssertUnwindSafe, catch_unwind};
        use std::pin::Pin;
        use std::sync::{Arc, Mutex};
        use std::task::{Context, Poll, Wake, Waker};

        thread_local!(static ARMED: Cell<bool> = const { Cell::new(false) });
        #[derive(Debug, PartialEq, Eq)]
        struct Item(u32);
        impl PartialOrd for Item {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Item {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                if ARMED.with(|a| a.replace(false)) {
                    panic!("Ord panicked");
                }
                self.0.cmp(&other.0)
            }
        }
        thread_local!(static QUEUE: RefCell<Option<PriorityQueue<Item>>> = const {
            RefCell::new(None)
        });
        /// Records, at each wake, what the queue's `len()` said (`None`: the queue
        /// was borrowed).
        struct Probe(Mutex<Vec<Option<usize>>>);
        impl Wake for Probe {
            fn wake(self: Arc<Self>) {
                let len = QUEUE.with(|q| {
                    let q = q.borrow();
                    let q = q.as_ref().expect("set");
                    catch_unwind(AssertUnwindSafe(|| q.len())).ok()
                });
                self.0.lock().unwrap().push(len);
            }
        }

        let q = PriorityQueue::new();
        QUEUE.with(|slot| *slot.borrow_mut() = Some(q.clone()));
        let probe = Arc::new(Probe(Mutex::new(Vec::new())));
        let probe_waker = Waker::from(probe.clone());
        let noop = &mut Context::from_waker(Waker::noop());
        let (mut g1, mut g2) = (q.get(), q.get());
        assert!(Pin::new(&mut g1).poll(noop).is_pending());
        let cx2 = &mut Context::from_waker(&probe_waker);
        assert!(Pin::new(&mut g2).poll(cx2).is_pending());
        q.put_nowait(Item(5)).unwrap(); // promised to g1
        ARMED.with(|a| a.set(true));
        let mut put = q.put(Item(1)); // promised to g2; its sift panics
        let r = catch_unwind(AssertUnwindSafe(|| Pin::new(&mut put).poll(noop)));
        assert!(r.is_err(), "the panic of `Ord` reaches the caller");
        assert_eq!(
            *probe.0.lock().unwrap(),
            [Some(2)],
            "woken once, unborrowed"
        );
        let Poll::Ready(Ok(a)) = Pin::new(&mut g1).poll(noop) else {
            panic!("g1 was promised an item");
        };
        let Poll::Ready(Ok(b)) = Pin::new(&mut g2).poll(cx2) else {
            panic!("g2 was promised an item");
        };
        let mut got = [a.0, b.0];
        got.sort();
        assert_eq!(got, [1, 5]);
        assert!(q.is_empty());
        QUEUE.with(|slot| slot.borrow_mut().take());
    }

    #[test]
    #[should_panic(expected = "capacity must be at least 1")]
    fn lifo_bounded_zero_panics() {
        let _ = LifoQueue::<u8>::bounded(0);
    }
}
