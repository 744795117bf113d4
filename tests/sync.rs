//! `evloop::sync` with real tasks on a real loop: Queue, Event, Lock and Semaphore
//! under `create_task`, `Task::cancel`, `timeout` and plain loop callbacks.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use evloop::sync::{Event, Lock, Queue, QueueShutDown, Semaphore, TryGetError, TryPutError};
use evloop::{Loop, Task, TaskError, TimeoutError, timeout, yield_now};

/// Runs one iteration of `lp` without blocking (asyncio's `run_briefly`).
fn run_briefly(lp: &Loop) {
    lp.run_once(Some(Duration::ZERO)).expect("run_once");
}

/// Awaits every task and checks none failed.
fn join_all<T: 'static>(lp: &Loop, tasks: Vec<Task<T>>) -> Vec<T> {
    lp.run_until_complete(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task failed"));
        }
        out
    })
    .expect("run_until_complete")
}

// ----- Queue -----

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(fut).poll(&mut cx)
}

/// As asyncio's: an item put while getters wait is promised to the oldest getter,
/// but stays in the queue (counted by `len`, `is_full`) until a woken getter
/// resumes, and a getter takes the front item when it resumes, so woken getters
/// that resume out of order still drain the queue in FIFO order.
#[test]
fn woken_getters_take_the_front_item_in_the_order_they_resume() {
    let q = Queue::bounded(2);
    let (mut g1, mut g2) = (Box::pin(q.get()), Box::pin(q.get()));
    assert!(poll_once(&mut g1).is_pending());
    assert!(poll_once(&mut g2).is_pending());
    q.put_nowait('a').unwrap(); // promised to g1
    q.put_nowait('b').unwrap(); // promised to g2
    assert_eq!(q.len(), 2);
    assert!(q.is_full() && !q.is_empty());
    assert_eq!(q.get_nowait(), Err(TryGetError::Empty), "both are promised");
    assert_eq!(poll_once(&mut g2), std::task::Poll::Ready(Ok('a')));
    assert_eq!(q.len(), 1);
    assert_eq!(poll_once(&mut g1), std::task::Poll::Ready(Ok('b')));
    assert!(q.is_empty() && !q.is_full());
}

/// Two tasks bouncing a counter over two `bounded(1)` queues (the `pingpong`
/// bench): every value arrives, in order, and both queues end empty.
#[test]
fn ping_pong_over_two_bounded_queues() {
    let lp = Loop::new().unwrap();
    let (a, b) = (Queue::bounded(1), Queue::bounded(1));
    let pong = lp.create_task({
        let (a, b) = (a.clone(), b.clone());
        async move {
            for _ in 0..1_000u64 {
                let v = a.get().await.unwrap();
                b.put(v + 1).await.unwrap();
            }
        }
    });
    let ping = lp.create_task({
        let (a, b) = (a.clone(), b.clone());
        async move {
            let mut got = Vec::new();
            for i in 0..1_000u64 {
                a.put(2 * i).await.unwrap();
                got.push(b.get().await.unwrap());
            }
            got
        }
    });
    let got = join_all(&lp, vec![ping]).pop().unwrap();
    join_all(&lp, vec![pong]);
    assert_eq!(got, (0..1_000u64).map(|i| 2 * i + 1).collect::<Vec<_>>());
    assert!(a.is_empty() && b.is_empty());
}

/// 3 producers × 1000 items through a capacity-4 queue to 2 consumers: every item
/// arrives exactly once, each producer's items in the order it put them, and the
/// queue never holds more than 4.
#[test]
fn bounded_queue_producers_and_consumers() {
    const PRODUCERS: usize = 3;
    const ITEMS: u32 = 1000;
    let lp = Loop::new().unwrap();
    let q = Queue::bounded(4);
    let received = Rc::new(RefCell::new(Vec::new()));
    let max_len = Rc::new(Cell::new(0));

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            lp.create_task(async move {
                for i in 0..ITEMS {
                    q.put(Some((p, i))).await.unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (q, received, max_len) = (q.clone(), received.clone(), max_len.clone());
            lp.create_task(async move {
                let mut n = 0;
                while let Some(item) = q.get().await.unwrap() {
                    max_len.set(max_len.get().max(q.len()));
                    received.borrow_mut().push(item);
                    n += 1;
                    if n % 3 == 0 {
                        yield_now().await;
                    }
                }
                n
            })
        })
        .collect();

    lp.run_until_complete({
        let q = q.clone();
        async move {
            for p in producers {
                p.await.unwrap();
            }
            for _ in 0..2 {
                q.put(None).await.unwrap(); // one stop marker per consumer
            }
        }
    })
    .unwrap();
    let counts = join_all(&lp, consumers);

    assert_eq!(counts.iter().sum::<u32>(), PRODUCERS as u32 * ITEMS);
    assert!(counts.iter().all(|&n| n > 0), "both consumers took part");
    assert!(max_len.get() <= 4);
    let mut next = [0u32; PRODUCERS];
    for &(p, i) in received.borrow().iter() {
        assert_eq!(i, next[p], "producer {p}'s items out of order");
        next[p] += 1;
    }
    assert_eq!(next, [ITEMS; PRODUCERS]);
    assert!(q.is_empty());
}

/// The producer runs ahead by exactly the capacity, then waits for the consumer.
#[test]
fn bounded_queue_backpressure() {
    let lp = Loop::new().unwrap();
    let q = Queue::bounded(3);
    let put = Rc::new(Cell::new(0));
    let producer = {
        let (q, put) = (q.clone(), put.clone());
        lp.create_task(async move {
            for i in 0..10 {
                q.put(i).await.unwrap();
                put.set(put.get() + 1);
            }
        })
    };
    for _ in 0..5 {
        run_briefly(&lp);
    }
    assert_eq!(put.get(), 3);
    assert!(q.is_full());
    assert_eq!(q.put_nowait(99), Err(TryPutError::Full(99)));

    assert_eq!(q.get_nowait(), Ok(0));
    for _ in 0..5 {
        run_briefly(&lp);
    }
    assert_eq!(put.get(), 4, "one slot freed, one more item put");

    let rest = lp
        .run_until_complete(async {
            let mut v = Vec::new();
            for _ in 0..9 {
                v.push(q.get().await.unwrap());
            }
            v
        })
        .unwrap();
    assert_eq!(rest, (1..10).collect::<Vec<_>>());
    assert!(producer.is_done());
}

/// asyncio `test_blocking_get_wait`: an item put from a plain timer callback
/// wakes a waiting getter.
#[test]
fn get_woken_by_put_from_a_callback() {
    let lp = Loop::new().unwrap();
    let q = Queue::new();
    let q2 = q.clone();
    lp.call_later(Duration::from_millis(5), move |_| {
        q2.put_nowait(1).unwrap();
    });
    assert_eq!(lp.run_until_complete(q.get()).unwrap(), Ok(1));
}

/// asyncio `test_get_cancel_drop_one_pending_reader`, with `Task::cancel`: the
/// reader is promised item 1 and cancelled before it resumes; 1 is not lost.
#[test]
fn cancelled_reader_loses_no_item() {
    let lp = Loop::new().unwrap();
    let q = Queue::new();
    let reader = lp.create_task({
        let q = q.clone();
        async move { q.get().await.unwrap() }
    });
    run_briefly(&lp);
    q.put_nowait(1).unwrap();
    q.put_nowait(2).unwrap();
    assert!(reader.cancel());
    let got = lp
        .run_until_complete(async {
            assert!(matches!(reader.await, Err(TaskError::Cancelled)));
            q.get().await.unwrap()
        })
        .unwrap();
    assert_eq!(got, 1);
    assert_eq!(q.get_nowait(), Ok(2));
}

/// asyncio `test_get_cancel_drop_many_pending_readers`: the cancelled reader's
/// promise passes on; the other two readers get both items.
#[test]
fn cancelled_reader_passes_its_item_on() {
    let lp = Loop::new().unwrap();
    let q = Queue::new();
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let q = q.clone();
            lp.create_task(async move { q.get().await.unwrap() })
        })
        .collect();
    run_briefly(&lp);
    q.put_nowait(1).unwrap();
    q.put_nowait(2).unwrap();
    readers[0].cancel();
    let mut got = lp
        .run_until_complete(async {
            let mut it = readers.into_iter();
            assert!(matches!(
                it.next().unwrap().await,
                Err(TaskError::Cancelled)
            ));
            let mut got = Vec::new();
            for r in it {
                got.push(r.await.unwrap());
            }
            got
        })
        .unwrap();
    got.sort();
    assert_eq!(got, [1, 2]);
    assert_eq!(q.get_nowait(), Err(TryGetError::Empty));
}

/// asyncio `test_cancelled_getters_not_being_held_in_self_getters` and
/// `test_get_cancelled`: a `get` that timed out left the line, so the next item
/// goes to the next getter.
#[test]
fn timed_out_get_leaves_the_line() {
    let lp = Loop::new().unwrap();
    let q = Queue::<u32>::bounded(5);
    let r = lp
        .run_until_complete(timeout(Duration::from_millis(5), q.get()))
        .unwrap();
    assert_eq!(r, Err(TimeoutError));
    let getter = lp.create_task({
        let q = q.clone();
        async move { q.get().await.unwrap() }
    });
    run_briefly(&lp);
    q.put_nowait(7).unwrap();
    assert_eq!(lp.run_until_complete(getter).unwrap().unwrap(), 7);
}

/// asyncio `test_put_cancel_drop`: a putter promised the freed slot is
/// cancelled; its item is not put and the slot is free for the retry.
#[test]
fn cancelled_putter_frees_its_slot() {
    let lp = Loop::new().unwrap();
    let q = Queue::bounded(1);
    q.put_nowait(1).unwrap();
    let writer = lp.create_task({
        let q = q.clone();
        async move { q.put(2).await.unwrap() }
    });
    run_briefly(&lp);
    assert_eq!(q.get_nowait(), Ok(1));
    writer.cancel();
    lp.run_until_complete(async {
        assert!(matches!(writer.await, Err(TaskError::Cancelled)));
        assert!(q.is_empty());
        q.put(2).await.unwrap();
    })
    .unwrap();
    assert_eq!(q.get_nowait(), Ok(2));
    assert!(q.is_empty());
}

/// asyncio `test_task_done`: two workers; `join()` returns once all items are
/// marked done.
#[test]
fn join_waits_for_workers() {
    let lp = Loop::new().unwrap();
    let q = Queue::new();
    for i in 0..100u64 {
        q.put_nowait(i).unwrap();
    }
    let sum = Rc::new(Cell::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (q, sum) = (q.clone(), sum.clone());
            lp.create_task(async move {
                loop {
                    let item = q.get().await.unwrap();
                    sum.set(sum.get() + item);
                    yield_now().await;
                    q.task_done();
                }
            })
        })
        .collect();
    lp.run_until_complete(q.join()).unwrap();
    assert_eq!(sum.get(), (0..100).sum::<u64>());
    for w in &workers {
        w.cancel();
    }
    lp.run_until_complete(async {
        for w in workers {
            assert!(matches!(w.await, Err(TaskError::Cancelled)));
        }
    })
    .unwrap();
    // A finished queue joins at once, twice (asyncio `test_join_empty_queue`).
    lp.run_until_complete(async {
        q.join().await;
        q.join().await;
    })
    .unwrap();
}

// ----- Lock -----

/// Tasks that hold the lock across awaits never overlap, and take turns in FIFO
/// order.
#[test]
fn lock_excludes_and_is_fifo() {
    let lp = Loop::new().unwrap();
    let lock = Lock::new();
    let inside = Rc::new(Cell::new(false));
    let order = Rc::new(RefCell::new(Vec::new()));
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (lock, inside, order) = (lock.clone(), inside.clone(), order.clone());
            lp.create_task(async move {
                for _ in 0..3 {
                    let _g = lock.lock().await;
                    assert!(!inside.replace(true), "two tasks inside the lock");
                    order.borrow_mut().push(i);
                    yield_now().await;
                    yield_now().await;
                    inside.set(false);
                }
            })
        })
        .collect();
    join_all(&lp, tasks);
    assert_eq!(*order.borrow(), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
    assert!(!lock.is_locked());
}

/// asyncio `test_cancel_race`: A releases while B, chosen next, is cancelled in
/// the same callback; C gets the lock and nothing hangs.
#[test]
fn cancelled_chosen_lock_waiter_passes_the_lock_on() {
    let lp = Loop::new().unwrap();
    let lock = Lock::new();
    let release_a = Event::new();
    let log = Rc::new(RefCell::new(Vec::new()));
    let lockit = |name: &'static str, blocker: Option<Event>| {
        let (lock, log) = (lock.clone(), log.clone());
        lp.create_task(async move {
            let _g = lock.lock().await;
            log.borrow_mut().push(name);
            if let Some(ev) = blocker {
                ev.wait().await;
            }
        })
    };
    let ta = lockit("A", Some(release_a.clone()));
    run_briefly(&lp);
    assert!(lock.is_locked());
    let tb = lockit("B", None);
    let tc = lockit("C", None);
    run_briefly(&lp);

    // A's release and B's cancel race within one iteration.
    release_a.set();
    run_briefly(&lp); // A resumes, releases: B is chosen
    assert!(ta.is_done());
    assert!(lock.is_locked());
    tb.cancel();
    lp.run_until_complete(async {
        assert!(matches!(tb.await, Err(TaskError::Cancelled)));
        tc.await.unwrap();
    })
    .unwrap();
    assert_eq!(*log.borrow(), ["A", "C"]);
    assert!(!lock.is_locked());
}

/// A task that panics while holding the lock releases it as it unwinds.
#[test]
fn panicking_holder_releases_the_lock() {
    let lp = Loop::new().unwrap();
    lp.set_exception_handler(|_, _| {});
    let lock = Lock::new();
    let holder = lp.create_task({
        let lock = lock.clone();
        async move {
            let _g = lock.lock().await;
            yield_now().await;
            panic!("boom");
        }
    });
    let waiter = lp.create_task({
        let lock = lock.clone();
        async move {
            let _g = lock.lock().await;
            "got it"
        }
    });
    lp.run_until_complete(async {
        assert!(matches!(holder.await, Err(TaskError::Panicked(_))));
        assert_eq!(waiter.await.unwrap(), "got it");
    })
    .unwrap();
    assert!(!lock.is_locked());
}

// ----- Semaphore -----

/// At most `n` tasks inside; every one gets in eventually; permits all come back.
#[test]
fn semaphore_bounds_concurrency() {
    let lp = Loop::new().unwrap();
    let sem = Semaphore::new(3);
    let (inside, peak) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (sem, inside, peak) = (sem.clone(), inside.clone(), peak.clone());
            lp.create_task(async move {
                let _p = sem.acquire().await;
                inside.set(inside.get() + 1);
                peak.set(peak.get().max(inside.get()));
                for _ in 0..(i % 4) {
                    yield_now().await;
                }
                inside.set(inside.get() - 1);
            })
        })
        .collect();
    join_all(&lp, tasks);
    assert_eq!(peak.get(), 3);
    assert_eq!(sem.available_permits(), 3);
}

/// asyncio `test_acquire_hang` with `Task::cancel`: the permit goes to t1, t1 is
/// cancelled, t2 gets the permit.
#[test]
fn cancelled_chosen_semaphore_waiter_passes_the_permit_on() {
    let lp = Loop::new().unwrap();
    let sem = Semaphore::new(0);
    let acquirer = || {
        let sem = sem.clone();
        lp.create_task(async move { sem.acquire().await.forget() })
    };
    let t1 = acquirer();
    let t2 = acquirer();
    run_briefly(&lp);
    sem.add_permits(1);
    t1.cancel();
    lp.run_until_complete(async {
        assert!(matches!(t1.await, Err(TaskError::Cancelled)));
        t2.await.unwrap();
    })
    .unwrap();
    assert_eq!(sem.available_permits(), 0);
}

// ----- Event -----

/// An event set from a plain timer callback wakes every waiting task.
#[test]
fn event_set_from_a_callback_wakes_all() {
    let lp = Loop::new().unwrap();
    let ev = Event::new();
    let woken = Rc::new(Cell::new(0));
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (ev, woken) = (ev.clone(), woken.clone());
            lp.create_task(async move {
                ev.wait().await;
                woken.set(woken.get() + 1);
            })
        })
        .collect();
    let ev2 = ev.clone();
    lp.call_later(Duration::from_millis(2), move |_| ev2.set());
    join_all(&lp, waiters);
    assert_eq!(woken.get(), 5);
    assert!(ev.is_set());
}

/// A cancelled `wait()` leaves no trace; the others still wake.
#[test]
fn cancelled_event_waiter() {
    let lp = Loop::new().unwrap();
    let ev = Event::new();
    let t1 = lp.create_task({
        let ev = ev.clone();
        async move { ev.wait().await }
    });
    let t2 = lp.create_task({
        let ev = ev.clone();
        async move { ev.wait().await }
    });
    run_briefly(&lp);
    t1.cancel();
    run_briefly(&lp);
    assert!(t1.is_cancelled());
    ev.set();
    lp.run_until_complete(t2).unwrap().unwrap();
}

/// asyncio 3.13 `test_shutdown_get` (on the loop): consumers drain what is left
/// after `shutdown(false)`, then each sees `QueueShutDown` and ends; a producer
/// waiting for room is handed its item back.
#[test]
fn shutdown_ends_consumers_and_refuses_the_waiting_producer() {
    let lp = Loop::new().unwrap();
    let q = Queue::bounded(2);
    let got = Rc::new(RefCell::new(Vec::new()));
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let (q, got) = (q.clone(), got.clone());
            lp.create_task(async move {
                while let Ok(item) = q.get().await {
                    got.borrow_mut().push(item);
                    yield_now().await;
                }
            })
        })
        .collect();
    let refused = lp
        .run_until_complete({
            let q = q.clone();
            async move {
                q.put(1).await.unwrap();
                q.put(2).await.unwrap();
                q.put(3).await.unwrap();
                q.put(4).await.unwrap();
                // A producer that runs ahead of the consumers (they yield after each
                // item) is waiting for room when the shutdown comes.
                let extra = evloop::spawn({
                    let q = q.clone();
                    async move {
                        q.put(5).await.unwrap();
                        q.put(6).await.unwrap();
                        q.put(7).await
                    }
                });
                yield_now().await;
                q.shutdown(false);
                extra.await.unwrap()
            }
        })
        .unwrap();
    for c in consumers {
        lp.run_until_complete(timeout(Duration::from_secs(5), c))
            .unwrap()
            .unwrap()
            .unwrap();
    }
    let mut got = got.borrow().clone();
    got.sort();
    let refused = refused.map_err(QueueShutDown::into_inner);
    match refused {
        // The 7th was refused: every item put was got.
        Err(7) => assert_eq!(got, [1, 2, 3, 4, 5, 6]),
        other => panic!("the waiting put should be refused with its item: {other:?}"),
    }
    assert!(q.is_empty() && q.is_shut_down());
}
