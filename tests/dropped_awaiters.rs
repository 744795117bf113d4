//! Whatever many futures wait on (a `Promise`, a `Task`, a `RemoteTask`, a
//! `Server`'s `wait_closed`, the `sync` primitives) keeps one waker per waiting future,
//! however often it is polled, and lets go of it when the future is dropped (a
//! timeout expired, a task was cancelled). A long-lived promise awaited by many
//! short-lived futures (`timeout(d, shutdown.clone())` per connection) must not
//! accumulate their wakers.
//!
//! Each awaiter gets its own counting waker (an `Arc`): how many clones of it the
//! awaited thing keeps is `Arc::strong_count - 1`, and its wake count says whether a
//! dropped awaiter was ever woken.

#[path = "util/futures.rs"]
mod futures_util;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use evloop::net::Protocol;
use evloop::sync::{Event, Lock, Queue, Semaphore};
use evloop::{Loop, Promise};
use futures_util::run_iterations;

#[path = "util/waker_counts.rs"]
mod waker_counts;
use waker_counts::*;

/// The shape: 100,000 awaiters of one pending promise, dropped. The promise
/// keeps none of their wakers, and resolving it wakes none of them.
#[test]
fn dropped_promise_awaiters_let_go_of_their_wakers() {
    const N: usize = 100_000;
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    let cs = counters(N);
    let mut awaiters: Vec<Promise<u32>> = (0..N).map(|_| p.clone()).collect();
    for (a, c) in awaiters.iter_mut().zip(&cs) {
        assert!(poll(Pin::new(a), c).is_pending());
    }
    assert_eq!(total_held(&cs), N, "one waker kept per waiting clone");

    // One awaiter stays; the rest give up.
    let mut survivor = awaiters.pop().unwrap();
    let survivor_waker = &cs[N - 1];
    drop(awaiters);
    assert_eq!(
        total_held(&cs[..N - 1]),
        0,
        "a dropped awaiter's waker is released"
    );
    assert_eq!(held(survivor_waker), 1);

    p.set_result(7).unwrap();
    run_iterations(&lp, 2);
    assert_eq!(
        total_wakes(&cs[..N - 1]),
        0,
        "dropped awaiters are never woken"
    );
    assert_eq!(wakes(survivor_waker), 1);
    assert_eq!(
        poll(Pin::new(&mut survivor), survivor_waker),
        Poll::Ready(Ok(7))
    );
    assert_eq!(held(survivor_waker), 0);
}

/// N awaiters that re-poll again and again keep N wakers: a re-poll with the same
/// waker adds nothing, and one with another waker replaces the old one.
#[test]
fn repolled_promise_awaiters_keep_one_waker_each() {
    const N: usize = 1_000;
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    let first = counters(N);
    let mut awaiters: Vec<Promise<u32>> = (0..N).map(|_| p.clone()).collect();
    for _ in 0..20 {
        for (a, c) in awaiters.iter_mut().zip(&first) {
            assert!(poll(Pin::new(a), c).is_pending());
        }
    }
    assert!(first.iter().all(|c| held(c) == 1), "one waker per awaiter");

    // Moved to other tasks: the old wakers are let go of.
    let second = counters(N);
    for (a, c) in awaiters.iter_mut().zip(&second) {
        assert!(poll(Pin::new(a), c).is_pending());
    }
    assert_eq!(total_held(&first), 0, "a replaced waker is released");
    assert_eq!(total_held(&second), N);

    p.set_result(1).unwrap();
    run_iterations(&lp, 2);
    assert_eq!(total_wakes(&first), 0);
    assert!(
        second.iter().all(|c| wakes(c) == 1),
        "each awaiter woken once"
    );
    for (a, c) in awaiters.iter_mut().zip(&second) {
        assert_eq!(poll(Pin::new(a), c), Poll::Ready(Ok(1)));
    }
    assert_eq!(total_held(&second), 0);
}

/// Awaiters of one promise are woken in the order they started waiting, also when
/// others left in between (their slots reused).
#[test]
fn promise_awaiters_are_woken_oldest_first() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<()>();
    let order = Rc::new(RefCell::new(Vec::new()));
    let spawn = |n: u32| {
        let (p, order) = (p.clone(), order.clone());
        lp.create_task(async move {
            p.await.unwrap();
            order.borrow_mut().push(n);
        })
    };
    let t1 = spawn(1);
    let t2 = spawn(2);
    let t3 = spawn(3);
    let t4 = spawn(4);
    run_iterations(&lp, 1);
    t1.cancel();
    t3.cancel();
    run_iterations(&lp, 1); // the oldest awaiter and a middle one leave
    let t5 = spawn(5); // newer than 2 and 4, whatever slot it gets
    run_iterations(&lp, 1);
    p.set_result(()).unwrap();
    run_iterations(&lp, 3);
    assert_eq!(*order.borrow(), [2, 4, 5]);
    assert!(t2.is_done() && t4.is_done() && t5.is_done());
}

/// A `Task` has one awaiter: its latest waker is kept, an older one let go of, and
/// dropping the `Task` lets go of it too.
#[test]
fn task_keeps_only_its_latest_awaiter() {
    let lp = Loop::new().unwrap();
    let mut task = lp.create_task(std::future::pending::<()>());
    let cs = counters(3);
    for _ in 0..10 {
        assert!(poll(Pin::new(&mut task), &cs[0]).is_pending());
    }
    assert_eq!(held(&cs[0]), 1);
    assert!(poll(Pin::new(&mut task), &cs[1]).is_pending());
    assert_eq!((held(&cs[0]), held(&cs[1])), (0, 1));
    drop(task);
    assert_eq!(held(&cs[1]), 0, "a dropped Task keeps no awaiter");
}

/// The same for a `RemoteTask`.
#[test]
fn remote_task_keeps_only_its_latest_awaiter() {
    let lp = Loop::new().unwrap();
    let mut task = lp.remote().spawn(std::future::pending::<()>()).unwrap();
    let cs = counters(2);
    for _ in 0..10 {
        assert!(poll(Pin::new(&mut task), &cs[0]).is_pending());
    }
    assert_eq!(held(&cs[0]), 1);
    assert!(poll(Pin::new(&mut task), &cs[1]).is_pending());
    assert_eq!((held(&cs[0]), held(&cs[1])), (0, 1));
    drop(task);
    assert_eq!(held(&cs[1]), 0, "a dropped RemoteTask keeps no awaiter");
}

struct Quiet;

impl Protocol for Quiet {
    fn data_received(&mut self, _: &[u8]) {}
}

/// `Server::wait_closed`: dropped waiters leave, re-polled ones keep one waker, and
/// closing wakes exactly those still waiting.
#[test]
fn dropped_wait_closed_futures_let_go_of_their_wakers() {
    const N: usize = 10_000;
    let lp = Loop::new().unwrap();
    let server = lp
        .run_until_complete(lp.create_server("127.0.0.1:0", || Quiet))
        .unwrap()
        .unwrap()
        .unwrap();
    let cs = counters(N);
    let mut waits: Vec<_> = (0..N).map(|_| server.wait_closed()).collect();
    for _ in 0..3 {
        for (w, c) in waits.iter_mut().zip(&cs) {
            assert!(poll(Pin::new(w), c).is_pending());
        }
    }
    assert!(cs.iter().all(|c| held(c) == 1), "one waker per waiter");
    let kept: Vec<_> = waits.drain(N - 10..).collect();
    drop(waits);
    assert_eq!(total_held(&cs[..N - 10]), 0);

    server.close();
    run_iterations(&lp, 2);
    assert_eq!(
        total_wakes(&cs[..N - 10]),
        0,
        "dropped waiters are never woken"
    );
    assert!(cs[N - 10..].iter().all(|c| wakes(c) == 1));
    for (mut w, c) in kept.into_iter().zip(&cs[N - 10..]) {
        assert!(poll(Pin::new(&mut w), c).is_ready());
    }
    assert_eq!(total_held(&cs), 0);
}

/// Every `sync` primitive: waiters dropped while queued let go of their wakers, and
/// a re-polled waiter keeps one.
#[test]
fn dropped_sync_waiters_let_go_of_their_wakers() {
    const N: usize = 1_000;
    let event = Event::new();
    let lock = Lock::new();
    let _held = lock.try_lock().unwrap();
    let sem = Semaphore::new(0);
    let empty = Queue::<u32>::new();
    let full = Queue::<u32>::bounded(1);
    full.put_nowait(0).unwrap();
    let unfinished = Queue::<u32>::new();
    unfinished.put_nowait(0).unwrap();

    let check = |what: &str, make: &dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>| {
        let cs = counters(N);
        let mut futs: Vec<_> = (0..N).map(|_| make()).collect();
        for _ in 0..5 {
            for (f, c) in futs.iter_mut().zip(&cs) {
                assert!(poll(f.as_mut(), c).is_pending(), "{what}");
            }
        }
        assert!(cs.iter().all(|c| held(c) == 1), "{what}: one waker each");
        drop(futs);
        assert_eq!(total_held(&cs), 0, "{what}: dropped waiters keep no waker");
    };
    check("Event::wait", &|| Box::pin(event.wait()));
    check("Lock::lock", &|| {
        let f = lock.lock();
        Box::pin(async move {
            drop(f.await);
        })
    });
    check("Semaphore::acquire", &|| {
        let f = sem.acquire();
        Box::pin(async move {
            drop(f.await);
        })
    });
    check("Queue::get", &|| {
        let f = empty.get();
        Box::pin(async move {
            let _ = f.await;
        })
    });
    check("Queue::put", &|| {
        let f = full.put(1);
        Box::pin(async move {
            let _ = f.await;
        })
    });
    check("Queue::join", &|| Box::pin(unfinished.join()));
}
