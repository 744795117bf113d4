//! `Task<T>`: Rust futures polled from loop callbacks (behaviour ported from CPython's
//! `test_asyncio/test_tasks.py`): the first step is a `call_soon`, wakes coalesce,
//! cancellation, panics and "never retrieved", detaching, wakers that cross threads
//! or outlive their loop.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::cell::{Cell, RefCell};
use std::future::{Future, pending};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Loop, Task, TaskError, yield_now};
use futures_util::{
    GrabWaker, Polls, Reports, WakerSlot, count_polls, run_briefly, run_iterations, wake_self,
};
use util::{Drops, Events, Watchdog};

const GENEROUS: Duration = Duration::from_secs(10);

#[test]
fn create_task_takes_a_non_send_future() {
    let lp = Loop::new().unwrap();
    let shared = Rc::new(Cell::new(1));
    let s = shared.clone();
    let task = lp.create_task(async move {
        yield_now().await;
        s.set(s.get() + 41);
        s.get()
    });
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 42);
    assert_eq!(shared.get(), 42);
}

/// `create_task` does not poll; the first poll is a `call_soon` step, FIFO with the
/// callbacks around it.
#[test]
fn first_poll_is_a_call_soon_step() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let polls = Polls::new();
    let o = order.clone();
    lp.call_soon(move |_| o.push("soon before"));
    let o = order.clone();
    let task = lp.create_task(count_polls(&polls, async move { o.push("task") }));
    assert_eq!(polls.get(), 0, "create_task must not poll inline");
    assert!(!task.is_done());
    let o = order.clone();
    lp.call_soon(move |_| o.push("soon after"));
    run_briefly(&lp);
    assert_eq!(order.get(), vec!["soon before", "task", "soon after"]);
    assert_eq!(polls.get(), 1);
    assert!(task.is_done());
}

/// However many wakes arrive before the next step runs, it is one step.
#[test]
fn many_wakes_during_a_poll_give_one_step() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let task = lp.create_task(wake_self(5, &polls));
    run_briefly(&lp);
    assert_eq!(polls.get(), 1);
    run_briefly(&lp);
    assert_eq!(polls.get(), 2, "five wakes, one step");
    run_iterations(&lp, 3);
    assert_eq!(polls.get(), 2, "no leftover steps");
    assert!(!task.is_done());
    task.cancel();
    run_briefly(&lp);
    assert!(task.is_cancelled());
    assert_eq!(polls.get(), 2);
}

/// Wakes from callbacks (on the loop thread) while the task is suspended.
#[test]
fn many_wakes_from_callbacks_give_one_step() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let slot = WakerSlot::new();
    let _task = lp.create_task(count_polls(&polls, GrabWaker(slot.clone())));
    run_briefly(&lp);
    assert_eq!(polls.get(), 1);
    for _ in 0..5 {
        let s = slot.clone();
        lp.call_soon(move |_| s.get().unwrap().wake());
    }
    run_briefly(&lp); // the five wakes
    assert_eq!(polls.get(), 1, "the step runs on the next iteration");
    run_briefly(&lp);
    assert_eq!(polls.get(), 2);
    run_iterations(&lp, 3);
    assert_eq!(polls.get(), 2);
}

/// A future whose drop is counted, and which never completes.
fn pending_with_guard(drops: &Drops, polls: &Polls) -> impl Future<Output = u32> + 'static {
    let token = drops.token();
    count_polls(polls, async move {
        token.hold();
        pending::<u32>().await
    })
}

#[test]
fn cancel_before_first_step_never_polls() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let polls = Polls::new();
    let mut task = lp.create_task(pending_with_guard(&drops, &polls));
    assert!(task.cancel());
    let r = lp.run_until_complete(&mut task).unwrap();
    assert!(matches!(r, Err(TaskError::Cancelled)), "got {r:?}");
    assert_eq!(
        polls.get(),
        0,
        "a task cancelled before its first step is never polled"
    );
    assert_eq!(drops.dropped(), 1, "its future is dropped");
    assert!(task.is_done());
    assert!(task.is_cancelled());
}

#[test]
fn cancel_while_suspended_drops_the_future_at_the_next_step() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let polls = Polls::new();
    let task = lp.create_task(pending_with_guard(&drops, &polls));
    let seen = Events::new();
    let s = seen.clone();
    task.add_done_callback(move |_, r| s.push(format!("{r:?}")));
    run_iterations(&lp, 3);
    assert_eq!(polls.get(), 1);
    assert_eq!(drops.dropped(), 0);

    assert!(task.cancel());
    assert_eq!(
        drops.dropped(),
        0,
        "dropped at the next step, not inside cancel()"
    );
    assert!(!task.is_done());
    run_briefly(&lp); // the step
    assert_eq!(drops.dropped(), 1);
    assert!(task.is_done());
    assert!(task.is_cancelled());
    assert_eq!(polls.get(), 1, "not polled again");
    assert!(seen.is_empty(), "done-callbacks go through call_soon");
    run_briefly(&lp);
    assert_eq!(seen.get(), vec!["Err(Cancelled)".to_owned()]);
}

/// asyncio `test_cancel_yield`-like: `cancel()` is true while pending (twice is
/// harmless), false once done.
#[test]
fn cancel_twice_then_after_done() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let polls = Polls::new();
    let task = lp.create_task(pending_with_guard(&drops, &polls));
    run_briefly(&lp);
    assert!(task.cancel());
    assert!(task.cancel(), "asking twice is harmless and still true");
    run_iterations(&lp, 2);
    assert!(task.is_cancelled());
    assert_eq!(drops.dropped(), 1, "dropped exactly once");
    assert!(!task.cancel(), "false once done");

    let finished = lp.create_task(async { 1 });
    run_briefly(&lp);
    assert!(finished.is_done());
    assert!(!finished.cancel());
    assert!(!finished.is_cancelled());
    assert_eq!(lp.run_until_complete(finished).unwrap().unwrap(), 1);
}

/// asyncio `test_cancel_at_end`: a cancel that arrives during the poll that
/// completes the task does not override its output.
#[test]
fn cancel_from_inside_the_completing_poll_keeps_the_output() {
    let lp = Loop::new().unwrap();
    let me: Rc<RefCell<Option<Task<u32>>>> = Rc::new(RefCell::new(None));
    let m = me.clone();
    let cancel_returned = Rc::new(Cell::new(None));
    let cr = cancel_returned.clone();
    let task = lp.create_task(async move {
        let r = m
            .borrow()
            .as_ref()
            .expect("set before the first step")
            .cancel();
        cr.set(Some(r));
        7
    });
    // The task's own handle lives in the slot; the test keeps a second view by
    // awaiting through the slot.
    *me.borrow_mut() = Some(task);
    run_iterations(&lp, 3);
    assert_eq!(
        cancel_returned.get(),
        Some(true),
        "still pending while polled"
    );
    let task = me.borrow_mut().take().unwrap();
    assert!(task.is_done());
    assert!(!task.is_cancelled(), "its output stands");
    assert!(!task.cancel());
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 7);
}

/// asyncio `test_cancel_current_task`: a cancel from inside the task's own poll, which
/// then suspends, takes effect at the next step.
#[test]
fn cancel_from_inside_a_pending_poll_takes_effect_next_step() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let me: Rc<RefCell<Option<Task<u32>>>> = Rc::new(RefCell::new(None));
    let m = me.clone();
    let reached = Rc::new(Cell::new(false));
    let r = reached.clone();
    let token = drops.token();
    let task = lp.create_task(async move {
        token.hold();
        assert!(m.borrow().as_ref().unwrap().cancel());
        yield_now().await;
        r.set(true); // never: the next step drops the future
        1
    });
    *me.borrow_mut() = Some(task);
    run_iterations(&lp, 3);
    let task = me.borrow_mut().take().unwrap();
    assert!(task.is_done());
    assert!(task.is_cancelled());
    assert!(!reached.get());
    assert_eq!(drops.dropped(), 1);
    let r = lp.run_until_complete(task).unwrap();
    assert!(matches!(r, Err(TaskError::Cancelled)));
}

/// Polls a task that the test can still reach (to cancel it) between steps.
struct PollShared<T>(Rc<RefCell<Task<T>>>);

impl<T: 'static> Future for PollShared<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut *self.0.borrow_mut()).poll(cx)
    }
}

/// asyncio `test_cancel_inner_future`: an awaited task that is cancelled makes its
/// awaiter see `Cancelled`.
#[test]
fn awaiter_sees_cancellation_of_the_awaited_task() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let inner = Rc::new(RefCell::new(
        lp.create_task(pending_with_guard(&drops, &Polls::new())),
    ));
    let outer = lp.create_task(PollShared(inner.clone()));
    run_iterations(&lp, 3);
    assert!(!outer.is_done());
    assert!(inner.borrow().cancel());
    let r = lp.run_until_complete(outer).unwrap();
    // The outer task completed normally, with the inner task's `Cancelled` as output.
    assert!(matches!(r, Ok(Err(TaskError::Cancelled))), "got {r:?}");
    assert_eq!(drops.dropped(), 1);
    assert!(inner.borrow().is_cancelled());
}

/// Cancelling a task that awaits another drops its future, and with it the inner
/// `Task` handle: by the contract that detaches the inner task, which runs on (unlike
/// asyncio, where cancelling the outer task cancels the awaited one).
#[test]
fn cancelling_the_awaiter_detaches_the_awaited_task() {
    let lp = Loop::new().unwrap();
    let finished = Rc::new(Cell::new(false));
    let f = finished.clone();
    let inner = lp.create_task(async move {
        for _ in 0..5 {
            yield_now().await;
        }
        f.set(true);
    });
    let outer = lp.create_task(async move { inner.await.is_ok() });
    run_iterations(&lp, 2);
    assert!(outer.cancel());
    let r = lp.run_until_complete(outer).unwrap();
    assert!(matches!(r, Err(TaskError::Cancelled)));
    run_iterations(&lp, 6);
    assert!(finished.get(), "the detached inner task ran to completion");
}

/// A panic inside a task completes it with `TaskError::Panicked` carrying the
/// message; the loop goes on, and an awaited panic is not reported.
#[test]
fn panicking_task_completes_with_panicked() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let task = lp.create_task(async {
        yield_now().await;
        if true {
            panic!("boom {}", 42);
        }
        0u32
    });
    let other = lp.create_task(async { 5 });
    let r = lp.run_until_complete(task).unwrap();
    match r {
        Err(e @ TaskError::Panicked(_)) => {
            assert_eq!(e.panic_message(), Some("boom 42"));
            assert!(e.is_panic());
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(lp.run_until_complete(other).unwrap().unwrap(), 5);
    run_iterations(&lp, 2);
    assert!(
        reports.is_empty(),
        "an awaited panic is retrieved: {:?}",
        reports.get()
    );
}

#[test]
fn panic_payload_is_the_original() {
    let lp = Loop::new().unwrap();
    let task = lp.create_task(async {
        std::panic::panic_any(1234u64);
    });
    match lp.run_until_complete(task).unwrap() {
        Err(TaskError::Panicked(payload)) => {
            assert_eq!(payload.downcast_ref::<u64>(), Some(&1234));
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

/// asyncio "Task exception was never retrieved": a detached panicking task is
/// reported once, when it is done.
#[test]
fn unretrieved_panic_of_a_detached_task_is_reported_once() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let task = lp.create_task(async {
        panic!("lost panic");
    });
    drop(task);
    assert!(reports.is_empty());
    run_iterations(&lp, 4);
    let got = reports.get();
    assert_eq!(got.len(), 1, "reported once: {got:?}");
    assert!(got[0].message.contains("never retrieved"), "{:?}", got[0]);
    assert_eq!(got[0].panic_message.as_deref(), Some("lost panic"));
}

/// The report waits until the last `Task` handle is gone.
#[test]
fn unretrieved_panic_is_reported_when_the_task_is_dropped() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let task = lp.create_task(async {
        yield_now().await;
        panic!("dropped unseen");
    });
    run_iterations(&lp, 4);
    assert!(task.is_done());
    assert!(
        reports.is_empty(),
        "someone may still await it: {:?}",
        reports.get()
    );
    drop(task);
    let got = reports.get();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].message.contains("never retrieved"), "{:?}", got[0]);
    assert_eq!(got[0].panic_message.as_deref(), Some("dropped unseen"));
    run_iterations(&lp, 2);
    assert_eq!(reports.len(), 1, "once");
}

#[test]
fn awaited_panic_is_not_reported() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let inner = lp.create_task(async {
        panic!("seen by the awaiter");
    });
    let outer = lp.create_task(async move { inner.await.unwrap_err().is_panic() });
    assert!(lp.run_until_complete(outer).unwrap().unwrap());
    run_iterations(&lp, 2);
    assert!(reports.is_empty(), "{:?}", reports.get());
}

#[test]
fn panic_handed_to_a_done_callback_is_not_reported() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let seen = Events::new();
    let task = lp.create_task(async {
        panic!("seen by the callback");
    });
    let s = seen.clone();
    task.add_done_callback(move |_, r| {
        s.push(
            r.as_ref()
                .err()
                .and_then(|e| e.panic_message())
                .map(str::to_owned),
        )
    });
    drop(task);
    run_iterations(&lp, 4);
    assert_eq!(seen.get(), vec![Some("seen by the callback".to_owned())]);
    assert!(reports.is_empty(), "{:?}", reports.get());
}

#[test]
fn successful_or_cancelled_tasks_are_never_reported() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    drop(lp.create_task(async { 1 }));
    let t = lp.create_task(pending::<()>());
    t.cancel();
    drop(t);
    run_iterations(&lp, 4);
    assert!(reports.is_empty(), "{:?}", reports.get());
}

#[test]
fn task_done_callbacks_run_via_call_soon_in_order() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let task = lp.create_task(async { 3u32 });
    for tag in ["a", "b", "c"] {
        let o = order.clone();
        task.add_done_callback(move |lp, r| {
            assert!(lp.is_running());
            o.push((tag, *r.as_ref().unwrap()));
        });
    }
    run_briefly(&lp);
    assert!(task.is_done());
    assert!(order.is_empty(), "not inline in the completing step");
    run_briefly(&lp);
    assert_eq!(order.get(), vec![("a", 3), ("b", 3), ("c", 3)]);
    // Added to a done task: scheduled at once, runs next iteration.
    let o = order.clone();
    task.add_done_callback(move |_, r| o.push(("late", *r.as_ref().unwrap())));
    assert_eq!(order.len(), 3);
    run_briefly(&lp);
    assert_eq!(order.get().last(), Some(&("late", 3)));
}

/// Dropping a `Task` detaches it: it still runs to completion.
#[test]
fn dropping_a_task_detaches_it() {
    let lp = Loop::new().unwrap();
    let finished = Rc::new(Cell::new(false));
    let f = finished.clone();
    drop(lp.create_task(async move {
        for _ in 0..3 {
            yield_now().await;
        }
        evloop::sleep(Duration::from_millis(2)).await;
        f.set(true);
        Loop::current().unwrap().stop();
    }));
    let dog = Watchdog::new(&lp, GENEROUS);
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert!(finished.get());
}

#[test]
fn task_awaited_from_another_task() {
    let lp = Loop::new().unwrap();
    let out = lp
        .run_until_complete(async {
            let inner = evloop::spawn(async {
                yield_now().await;
                20
            });
            let outer = evloop::spawn(async move { inner.await.unwrap() + 1 });
            outer.await.unwrap() * 2
        })
        .unwrap();
    assert_eq!(out, 42);
}

#[test]
fn loop_current_inside_a_task() {
    let lp = Loop::new().unwrap();
    assert!(Loop::current().is_none(), "no loop running here yet");
    let remote = lp.remote();
    let task = lp.create_task(async move {
        let cur = Loop::current().expect("a task runs on a running loop");
        cur.is_running() && cur.remote().same_loop(&remote)
    });
    assert!(lp.run_until_complete(task).unwrap().unwrap());
    assert!(Loop::current().is_none(), "none once the run ended");
}

#[test]
#[should_panic(expected = "outside a running loop")]
fn spawn_outside_a_loop_panics() {
    let _t = evloop::spawn(async {});
}

/// A loop that exists but is not running is not "current".
#[test]
#[should_panic(expected = "outside a running loop")]
fn spawn_beside_a_loop_that_is_not_running_panics() {
    let _lp = Loop::new().unwrap();
    let _t = evloop::spawn(async {});
}

#[test]
fn spawn_from_a_callback() {
    let lp = Loop::new().unwrap();
    let out = Rc::new(Cell::new(0));
    let o = out.clone();
    lp.call_soon(move |_| {
        drop(evloop::spawn(async move {
            yield_now().await;
            o.set(9);
            Loop::current().unwrap().stop();
        }));
    });
    let dog = Watchdog::new(&lp, GENEROUS);
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(out.get(), 9);
}

/// The "never retrieved" report names where the task was spawned (`create_task`
/// and `evloop::spawn` are `#[track_caller]`).
#[test]
fn unretrieved_panic_report_names_the_spawn_site() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let line_create = line!() + 1;
    drop(lp.create_task(async { panic!("from create_task") }));
    let line_spawn = Rc::new(Cell::new(0));
    let ls = line_spawn.clone();
    drop(lp.create_task(async move {
        ls.set(line!() + 1);
        drop(evloop::spawn(async { panic!("from spawn") }));
    }));
    run_iterations(&lp, 4);
    let got = reports.get();
    assert_eq!(got.len(), 2, "{got:?}");
    let here = file!();
    assert_eq!(got[0].panic_message.as_deref(), Some("from create_task"));
    assert_eq!(
        got[0].location,
        Some((here.to_owned(), line_create)),
        "{:?}",
        got[0]
    );
    assert_eq!(got[1].panic_message.as_deref(), Some("from spawn"));
    assert_eq!(
        got[1].location,
        Some((here.to_owned(), line_spawn.get())),
        "{:?}",
        got[1]
    );
}

#[test]
#[should_panic(expected = "closed")]
fn create_task_on_a_closed_loop_panics() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    let _t = lp.create_task(async {});
}

/// Tasks in every state when the loop closes: each future is dropped exactly once.
#[test]
fn close_drops_each_live_future_exactly_once() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let polls = Polls::new();
    let never_polled = lp.create_task(pending_with_guard(&drops, &Polls::new()));
    let suspended = lp.create_task(pending_with_guard(&drops, &polls));
    let sleeping = {
        let token = drops.token();
        lp.create_task(async move {
            token.hold();
            evloop::sleep(Duration::from_secs(3600)).await;
        })
    };
    let cancelled = lp.create_task(pending_with_guard(&drops, &Polls::new()));
    drop(lp.create_task(pending_with_guard(&drops, &Polls::new()))); // detached
    run_briefly(&lp);
    assert_eq!(polls.get(), 1);
    cancelled.cancel(); // its step is queued, not run
    let never = lp.create_task(pending_with_guard(&drops, &Polls::new()));
    assert_eq!(drops.dropped(), 0);
    lp.close().unwrap();
    assert_eq!(drops.made(), 6);
    assert_eq!(drops.dropped(), 6, "close drops every live future");
    drop((never_polled, suspended, sleeping, cancelled, never));
    drop(lp);
    assert_eq!(drops.dropped(), 6, "and never twice");
}

#[test]
fn dropping_the_loop_drops_each_live_future_exactly_once() {
    let drops = Drops::new();
    let kept;
    {
        let lp = Loop::new().unwrap();
        kept = lp.create_task(pending_with_guard(&drops, &Polls::new()));
        drop(lp.create_task(pending_with_guard(&drops, &Polls::new())));
        let token = drops.token();
        drop(lp.create_task(async move {
            token.hold();
            evloop::sleep(Duration::from_secs(3600)).await;
        }));
        run_briefly(&lp);
        drop(lp.create_task(pending_with_guard(&drops, &Polls::new()))); // never polled
        assert_eq!(drops.dropped(), 0);
    }
    assert_eq!(drops.made(), 4);
    assert_eq!(
        drops.dropped(),
        4,
        "dropping the loop drops its tasks' futures"
    );
    drop(kept);
    assert_eq!(drops.dropped(), 4);
}

/// A task's waker reaches its own loop whichever loop runs on the thread when it is
/// woken: its own (the task steps in the next iteration), another one (the step is
/// queued on the task's loop, never on the running one), or none (between runs).
#[test]
fn wakes_reach_the_tasks_loop_whichever_loop_runs_here() {
    let (a, b) = (Loop::new().unwrap(), Loop::new().unwrap());
    let polls = Polls::new();
    let slot = WakerSlot::new();
    let _t = a.create_task(count_polls(&polls, GrabWaker(slot.clone())));
    run_briefly(&a);
    assert_eq!(polls.get(), 1);
    let w = slot.get().expect("polled once");

    // From a callback of its own loop: polled in the next iteration, not this one.
    a.call_soon({
        let w = w.clone();
        move |_| w.wake_by_ref()
    });
    run_briefly(&a);
    assert_eq!(polls.get(), 1);
    run_briefly(&a);
    assert_eq!(polls.get(), 2);

    // From a callback and a task of the other loop: queued on `a`, run by `a` only.
    b.call_soon({
        let w = w.clone();
        move |_| w.wake_by_ref()
    });
    run_iterations(&b, 3);
    let w2 = w.clone();
    b.run_until_complete(async move { w2.wake() }).unwrap();
    assert_eq!(polls.get(), 2);
    run_briefly(&a);
    assert_eq!(polls.get(), 3, "two wakes before the step: one step");
    run_iterations(&a, 2);
    assert_eq!(polls.get(), 3);

    // With no loop running here, also once the last loop that ran here is gone.
    w.wake_by_ref();
    run_briefly(&a);
    assert_eq!(polls.get(), 4);
    run_briefly(&b);
    drop(b);
    w.wake();
    run_briefly(&a);
    assert_eq!(polls.get(), 5);
}

/// A waker that outlives its loop is harmless: waking it does nothing.
#[test]
fn waker_outliving_a_closed_and_dropped_loop_is_harmless() {
    let slot = WakerSlot::new();
    {
        let lp = Loop::new().unwrap();
        let _t = lp.create_task(GrabWaker(slot.clone()));
        run_briefly(&lp);
        let w = slot.get().expect("polled once");
        lp.close().unwrap();
        w.wake_by_ref(); // closed, still alive
        let by_value = w.clone();
        by_value.wake();
    }
    let w = slot.take().unwrap();
    w.wake_by_ref();
    let w2 = w.clone();
    thread::spawn(move || {
        w2.wake_by_ref();
        w2.wake();
    })
    .join()
    .expect("waking from another thread must not panic");
    w.wake();
}

#[test]
fn waker_outliving_a_dropped_loop_is_harmless() {
    let slot = WakerSlot::new();
    {
        let lp = Loop::new().unwrap();
        drop(lp.create_task(GrabWaker(slot.clone())));
        run_briefly(&lp);
    }
    let w = slot.take().expect("polled once");
    w.wake_by_ref();
    let w2 = w.clone();
    thread::spawn(move || w2.wake()).join().unwrap();
    w.wake();
}

/// A future that is ready once a counter reaches `target`; stores its waker where
/// other threads find it.
struct CountDown {
    count: Arc<AtomicUsize>,
    target: usize,
    waker: Arc<Mutex<Option<Waker>>>,
    polls: Polls,
}

impl Future for CountDown {
    type Output = usize;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        self.polls.inc();
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        let n = self.count.load(Ordering::SeqCst);
        if n >= self.target {
            Poll::Ready(n)
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn cross_thread_wake_schedules_the_task() {
    let lp = Loop::new().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let waker = Arc::new(Mutex::new(None::<Waker>));
    let polls = Polls::new();
    let task = lp.create_task(CountDown {
        count: count.clone(),
        target: 1,
        waker: waker.clone(),
        polls: polls.clone(),
    });
    run_briefly(&lp);
    assert_eq!(polls.get(), 1);
    let (c, w) = (count.clone(), waker.clone());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        c.store(1, Ordering::SeqCst);
        let w = w.lock().unwrap().clone().unwrap();
        w.wake();
    });
    let dog = Watchdog::new(&lp, GENEROUS);
    let r = lp.run_until_complete(task);
    t.join().unwrap();
    assert!(
        !dog.fired(),
        "the cross-thread wake never scheduled the task"
    );
    assert_eq!(r.unwrap().unwrap(), 1);
}

#[test]
fn many_cross_thread_wakes_from_two_threads() {
    const PER_THREAD: usize = 2000;
    let lp = Loop::new().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let waker = Arc::new(Mutex::new(None::<Waker>));
    let polls = Polls::new();
    let task = lp.create_task(CountDown {
        count: count.clone(),
        target: 2 * PER_THREAD,
        waker: waker.clone(),
        polls: polls.clone(),
    });
    run_briefly(&lp); // the waker is in place before the threads start
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (c, w) = (count.clone(), waker.clone());
            thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    c.fetch_add(1, Ordering::SeqCst);
                    let w = w.lock().unwrap().clone().unwrap();
                    w.wake();
                }
            })
        })
        .collect();
    let dog = Watchdog::new(&lp, GENEROUS);
    let r = lp.run_until_complete(task);
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        !dog.fired(),
        "lost a wake: count {}",
        count.load(Ordering::SeqCst)
    );
    assert_eq!(r.unwrap().unwrap(), 2 * PER_THREAD);
    assert!(polls.get() >= 2);
    assert!(
        polls.get() <= 2 * PER_THREAD + 1,
        "at most one step per wake: {} polls",
        polls.get()
    );
}

/// Wakes from another thread while the loop is blocked in poll wake it promptly
/// (within a generous bound), in `run_forever` too.
#[test]
fn cross_thread_wake_unblocks_an_idle_loop() {
    let lp = Loop::new().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let waker = Arc::new(Mutex::new(None::<Waker>));
    let done = Rc::new(Cell::new(false));
    let fut = CountDown {
        count: count.clone(),
        target: 1,
        waker: waker.clone(),
        polls: Polls::new(),
    };
    let d = done.clone();
    drop(lp.create_task(async move {
        fut.await;
        d.set(true);
        Loop::current().unwrap().stop();
    }));
    run_briefly(&lp);
    let (c, w) = (count.clone(), waker.clone());
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        c.store(1, Ordering::SeqCst);
        w.lock().unwrap().take().unwrap().wake();
    });
    let dog = Watchdog::new(&lp, GENEROUS);
    let start = Instant::now();
    lp.run_forever().unwrap();
    t.join().unwrap();
    assert!(!dog.fired());
    assert!(done.get());
    assert!(start.elapsed() < GENEROUS);
}

/// The waker of a task whose loop is gone never wakes a task of a later loop (loop
/// ids are not handed out again at once, and a new loop's first task has the same
/// key and generation as the old loop's first one).
#[test]
fn a_dead_loops_waker_does_not_wake_the_next_loops_task() {
    let old = WakerSlot::new();
    {
        let lp = Loop::new().unwrap();
        let _t = lp.create_task(GrabWaker(old.clone()));
        run_briefly(&lp);
    }
    let stale = old.get().expect("polled once");
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let slot = WakerSlot::new();
    let _t = lp.create_task(count_polls(&polls, GrabWaker(slot.clone())));
    run_briefly(&lp);
    assert_eq!(polls.get(), 1);
    stale.wake_by_ref();
    run_iterations(&lp, 2);
    assert_eq!(polls.get(), 1, "woken by another loop's task's waker");
    slot.get().unwrap().wake();
    run_briefly(&lp);
    assert_eq!(polls.get(), 2, "its own waker still works");
}
