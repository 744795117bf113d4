//! `Loop::run_until_complete`: borrowed futures, `Err(Stopped)`, panics resuming in
//! the caller, nesting refused, and when exactly the run ends.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::thread;
use std::time::Duration;

use evloop::{Error, Loop, sleep, yield_now};
use futures_util::{Gate, run_briefly};
use util::{Drops, Events, Watchdog};

const GENEROUS: Duration = Duration::from_secs(10);

#[test]
fn ready_future_returns_its_output() {
    let lp = Loop::new().unwrap();
    assert_eq!(lp.run_until_complete(async { 5 }).unwrap(), 5);
    assert!(!lp.is_running());
}

/// The future need not be `'static`: it may borrow the caller's stack.
#[test]
fn borrowed_future_referencing_the_stack() {
    let lp = Loop::new().unwrap();
    let mut log = Vec::new();
    let name = String::from("borrowed");
    let len = lp
        .run_until_complete(async {
            log.push(1);
            yield_now().await;
            log.push(2);
            sleep(Duration::from_millis(1)).await;
            log.push(3);
            name.len()
        })
        .unwrap();
    assert_eq!(len, 8);
    assert_eq!(log, vec![1, 2, 3]);
}

#[test]
fn stop_before_completion_is_err_stopped_and_the_loop_stays_usable() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    lp.call_soon(|lp| lp.stop());
    let token = drops.token();
    let r = lp.run_until_complete(async move {
        token.hold();
        sleep(Duration::from_secs(3600)).await;
        1
    });
    assert!(matches!(r, Err(Error::Stopped)), "got {r:?}");
    assert_eq!(drops.dropped(), 1, "the unfinished future is dropped");
    assert!(!lp.is_running());
    assert!(Loop::current().is_none());
    // Usable afterwards, and the stop was used up.
    assert_eq!(lp.run_until_complete(async { 2 }).unwrap(), 2);
    let r = lp.run_until_complete(async {
        sleep(Duration::from_millis(2)).await;
        3
    });
    assert_eq!(r.unwrap(), 3);
}

/// `stop()` from inside the future itself, while it then waits.
#[test]
fn stop_from_inside_the_future() {
    let lp = Loop::new().unwrap();
    let r = lp.run_until_complete(async {
        Loop::current().unwrap().stop();
        sleep(Duration::from_secs(3600)).await;
    });
    assert!(matches!(r, Err(Error::Stopped)), "got {r:?}");
    assert_eq!(lp.run_until_complete(async { 4 }).unwrap(), 4);
}

/// A stop requested before the run is used up by it (as for `run_forever`).
#[test]
fn stop_before_the_run_ends_it_after_one_iteration() {
    let lp = Loop::new().unwrap();
    lp.stop();
    let r = lp.run_until_complete(sleep(Duration::from_secs(3600)));
    assert!(matches!(r, Err(Error::Stopped)), "got {r:?}");
    assert_eq!(lp.run_until_complete(async { 1 }).unwrap(), 1);
}

#[test]
fn panic_resumes_in_the_caller_and_the_loop_stays_usable() {
    let lp = Loop::new().unwrap();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        lp.run_until_complete(async move {
            yield_now().await;
            let r2 = r.clone();
            Loop::current()
                .unwrap()
                .call_soon(move |_| r2.set(r2.get() + 1));
            panic!("kaboom {}", 7);
        })
    }));
    let payload = caught.expect_err("the panic must resume in the caller");
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    assert_eq!(msg, Some("kaboom 7"));
    assert!(!lp.is_running(), "left stopped");
    assert!(Loop::current().is_none());
    assert!(!lp.is_closed());
    assert_eq!(lp.run_until_complete(async { 3 }).unwrap(), 3);
    // Work queued before the panic is not lost: it ran once, by now.
    run_briefly(&lp);
    assert_eq!(ran.get(), 1);
    lp.close().unwrap();
}

#[test]
fn panic_on_the_first_poll_resumes_in_the_caller() {
    let lp = Loop::new().unwrap();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        lp.run_until_complete(async {
            panic!("first poll");
        })
    }));
    assert!(caught.is_err());
    assert!(!lp.is_running());
    // `run_forever` works afterwards.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_soon(move |lp| {
        r.set(true);
        lp.stop();
    });
    let dog = Watchdog::new(&lp, GENEROUS);
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert!(ran.get());
}

#[test]
fn nested_run_until_complete_from_a_task_is_already_running() {
    let lp = Loop::new().unwrap();
    let outcome = lp
        .run_until_complete(async {
            let inner_lp = Loop::current().unwrap();
            let task = evloop::spawn(async move {
                let r = inner_lp.run_until_complete(async { 1 });
                matches!(r, Err(Error::AlreadyRunning))
            });
            task.await.unwrap()
        })
        .unwrap();
    assert!(outcome, "a nested run must be refused with AlreadyRunning");
    assert!(!lp.is_running());
}

#[test]
fn nested_run_until_complete_directly_in_the_future() {
    let lp = Loop::new().unwrap();
    let lp2 = lp.clone();
    let r = lp
        .run_until_complete(async move {
            let nested = lp2.run_until_complete(async { 1 });
            let forever = lp2.run_forever();
            (
                matches!(nested, Err(Error::AlreadyRunning)),
                matches!(forever, Err(Error::AlreadyRunning)),
            )
        })
        .unwrap();
    assert_eq!(r, (true, true));
}

/// Another loop cannot run on this thread while one is running.
#[test]
fn other_loop_run_until_complete_inside_a_task_is_refused() {
    let lp = Loop::new().unwrap();
    let other = Loop::new().unwrap();
    let o = other.clone();
    let refused = lp
        .run_until_complete(async move {
            matches!(
                o.run_until_complete(async { 1 }),
                Err(Error::AlreadyRunning)
            )
        })
        .unwrap();
    assert!(refused);
    assert_eq!(other.run_until_complete(async { 2 }).unwrap(), 2);
}

#[test]
fn on_a_closed_loop_is_err_closed() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    let r = lp.run_until_complete(async { 1 });
    assert!(matches!(r, Err(Error::Closed)), "got {r:?}");
}

/// asyncio: the run ends after the callbacks that were ready when the future
/// completed, so a callback it scheduled just before returning has run.
#[test]
fn callbacks_scheduled_by_the_completing_poll_have_run() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let o = order.clone();
    let out = lp
        .run_until_complete(async move {
            let o2 = o.clone();
            Loop::current()
                .unwrap()
                .call_soon(move |_| o2.push("scheduled by the future"));
            o.push("future returns");
            9
        })
        .unwrap();
    assert_eq!(out, 9);
    assert_eq!(
        order.get(),
        vec!["future returns", "scheduled by the future"]
    );
}

/// A task created before the run is driven by it, and its output returned.
#[test]
fn run_until_complete_of_a_task() {
    let lp = Loop::new().unwrap();
    let task = lp.create_task(async {
        yield_now().await;
        "task output"
    });
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), "task output");
}

/// Other tasks keep running while the main future waits.
#[test]
fn other_tasks_run_meanwhile() {
    let lp = Loop::new().unwrap();
    let count = Rc::new(Cell::new(0));
    for _ in 0..10 {
        let c = count.clone();
        drop(lp.create_task(async move {
            yield_now().await;
            c.set(c.get() + 1);
        }));
    }
    lp.run_until_complete(sleep(Duration::from_millis(2)))
        .unwrap();
    assert_eq!(count.get(), 10);
}

/// The main future is woken from another thread (its waker is `Send`).
#[test]
fn main_future_woken_from_another_thread() {
    let lp = Loop::new().unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let t = thread::spawn(move || {
        g.wait_polled(GENEROUS);
        thread::sleep(Duration::from_millis(5));
        g.open();
    });
    let dog = Watchdog::new(&lp, GENEROUS);
    let r = lp.run_until_complete(gate.wait());
    t.join().unwrap();
    assert!(!dog.fired(), "the cross-thread wake was lost");
    r.unwrap();
}

/// Many wakes of the main future from two threads: it completes, and never gets more
/// polls than wakes.
#[test]
fn main_future_many_cross_thread_wakes() {
    const PER_THREAD: usize = 1000;
    struct Count {
        n: Arc<AtomicUsize>,
        waker: Arc<Mutex<Option<Waker>>>,
        polls: usize,
    }
    impl std::future::Future for Count {
        type Output = usize;
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<usize> {
            self.polls += 1;
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.n.load(Ordering::SeqCst) >= 2 * PER_THREAD {
                std::task::Poll::Ready(self.polls)
            } else {
                std::task::Poll::Pending
            }
        }
    }
    let lp = Loop::new().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let waker = Arc::new(Mutex::new(None::<Waker>));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (n, w) = (n.clone(), waker.clone());
            thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    n.fetch_add(1, Ordering::SeqCst);
                    // Spin until the first poll stored a waker.
                    let w = loop {
                        if let Some(w) = w.lock().unwrap().clone() {
                            break w;
                        }
                        thread::yield_now();
                    };
                    w.wake();
                }
            })
        })
        .collect();
    let dog = Watchdog::new(&lp, GENEROUS);
    let r = lp.run_until_complete(Count {
        n: n.clone(),
        waker,
        polls: 0,
    });
    for t in threads {
        t.join().unwrap();
    }
    assert!(!dog.fired(), "a wake was lost");
    let polls = r.unwrap();
    assert!(polls <= 2 * PER_THREAD + 1, "{polls} polls");
}

/// asyncio: `run_until_complete` raises "stopped before Future completed" only when
/// the future is not done; a future that completed in the very iteration that a
/// `stop()` ends returns its output.
#[test]
fn future_completed_in_the_stopping_iteration_returns_its_output() {
    let lp = Loop::new().unwrap();
    let r = lp.run_until_complete(async {
        Loop::current().unwrap().stop();
        5
    });
    assert!(
        matches!(r, Ok(5)),
        "the future completed before the run ended: got {r:?}"
    );
    assert!(!lp.is_running());
}

/// The same with the stop coming from a callback queued just before the completing
/// poll, in the same iteration.
#[test]
fn stop_from_a_callback_in_the_completing_iteration_keeps_the_output() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    let setter = p.clone();
    // Iteration 1 polls the future (pending) and runs the outer callback; iteration 2
    // runs the inner one; iteration 3 runs, in this order, the stop and the poll that
    // completes the future.
    lp.call_soon(move |lp| {
        lp.call_soon(move |lp| {
            lp.call_soon(|lp| lp.stop());
            setter.set_result(6).unwrap();
        });
    });
    let r = lp.run_until_complete(p);
    assert!(
        matches!(r, Ok(Ok(6))),
        "the future completed before the run ended: got {r:?}"
    );
}
