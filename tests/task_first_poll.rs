//! A task's first step: a task that finishes in it never takes a slot in the loop's
//! table, so the waker of that step must still find the task however it is used —
//! cloned or woken on the loop's thread, or from a scoped thread inside the poll —
//! and a task not yet stepped must still be cancelled, shut down by `close()` and
//! dropped with its loop.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::cell::RefCell;
use std::future::{Future, pending, poll_fn};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Loop, Task, TaskError};
use futures_util::{Polls, Reports, run_iterations};
use util::{Drops, Watchdog};

const GENEROUS: Duration = Duration::from_secs(10);

/// A future that is `Pending` on its first poll (after `first` ran with the
/// context's waker) and `Ready(polls)` on the next.
fn pending_once(
    polls: &Polls,
    first: impl FnOnce(&Waker) + 'static,
) -> impl Future<Output = usize> + 'static {
    let polls = polls.clone();
    let mut first = Some(first);
    poll_fn(move |cx| {
        polls.inc();
        match first.take() {
            Some(f) => {
                f(cx.waker());
                Poll::Pending
            }
            None => Poll::Ready(polls.get()),
        }
    })
}

/// Waits (bounded) until `slot` holds a waker, then wakes it, from this thread.
fn wake_when_set(slot: Arc<Mutex<Option<Waker>>>) -> thread::JoinHandle<bool> {
    thread::spawn(move || {
        let deadline = Instant::now() + GENEROUS;
        while Instant::now() < deadline {
            if let Some(w) = slot.lock().unwrap().take() {
                w.wake();
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
        false
    })
}

#[test]
fn waker_cloned_on_the_loop_thread_in_the_first_poll_wakes_the_task_later() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let slot: Rc<RefCell<Option<Waker>>> = Rc::default();
    let s = slot.clone();
    let task = lp.create_task(pending_once(&polls, move |w| {
        *s.borrow_mut() = Some(w.clone());
    }));
    run_iterations(&lp, 3);
    assert_eq!(polls.get(), 1, "asleep until woken");
    slot.borrow_mut().take().unwrap().wake();
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 2);
}

#[test]
fn waker_cloned_on_another_thread_in_the_first_poll_wakes_the_task_from_there() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let s = slot.clone();
    let task = lp.create_task(pending_once(&polls, move |w| {
        // A scoped thread is the only way the borrowed waker can reach another thread.
        thread::scope(|scope| {
            scope.spawn(|| *s.lock().unwrap() = Some(w.clone()));
        });
    }));
    let waker_thread = wake_when_set(slot);
    let watchdog = Watchdog::new(&lp, GENEROUS);
    let out = lp.run_until_complete(task);
    assert!(!watchdog.fired(), "the wake from the other thread was lost");
    assert_eq!(out.unwrap().unwrap(), 2);
    assert!(waker_thread.join().unwrap());
}

#[test]
fn waker_cloned_on_another_thread_wakes_the_task_on_the_loop_thread_too() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let s = slot.clone();
    let task = lp.create_task(pending_once(&polls, move |w| {
        thread::scope(|scope| {
            scope.spawn(|| *s.lock().unwrap() = Some(w.clone()));
        });
    }));
    run_iterations(&lp, 3);
    assert_eq!(polls.get(), 1);
    let waker = slot.lock().unwrap().take().unwrap();
    let again = waker.clone();
    waker.wake();
    again.wake_by_ref(); // coalesced with the first: one step
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 2);
    drop(again);
}

#[test]
fn wake_from_another_thread_during_the_first_poll_steps_the_task_again() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let task = lp.create_task(pending_once(&polls, |w| {
        thread::scope(|scope| {
            scope.spawn(|| w.wake_by_ref());
        });
    }));
    let watchdog = Watchdog::new(&lp, GENEROUS);
    let out = lp.run_until_complete(task);
    assert!(!watchdog.fired(), "the wake made during the poll was lost");
    assert_eq!(out.unwrap().unwrap(), 2);
}

#[test]
fn wake_on_the_loop_thread_during_the_first_poll_steps_the_task_once_more() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let task = lp.create_task(pending_once(&polls, |w| {
        w.wake_by_ref();
        w.wake_by_ref(); // coalesced
    }));
    run_iterations(&lp, 1);
    assert_eq!(polls.get(), 1);
    run_iterations(&lp, 1);
    assert_eq!(polls.get(), 2, "one step queued by the wakes");
    assert!(task.is_done());
    run_iterations(&lp, 3);
    assert_eq!(polls.get(), 2);
}

#[test]
fn waker_cloned_on_another_thread_by_a_task_that_finishes_wakes_nothing() {
    let lp = Loop::new().unwrap();
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let s = slot.clone();
    let task = lp.create_task(poll_fn(move |cx| {
        let w = cx.waker();
        thread::scope(|scope| {
            scope.spawn(|| *s.lock().unwrap() = Some(w.clone()));
        });
        Poll::Ready(5)
    }));
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 5);
    let waker = slot.lock().unwrap().take().unwrap();
    // From another thread and from this one: the task is gone, nothing runs.
    let w = waker.clone();
    thread::spawn(move || w.wake()).join().unwrap();
    waker.wake_by_ref();
    let polls = Polls::new();
    let later = lp.create_task(pending_once(&polls, |_| {}));
    run_iterations(&lp, 3);
    assert_eq!(
        polls.get(),
        1,
        "a stale waker does not step a newer task here"
    );
    assert!(!later.is_done());
    drop(waker);
}

#[test]
fn cancel_during_a_first_poll_that_keeps_no_waker_takes_effect_next_step() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let me: Rc<RefCell<Option<Task<()>>>> = Rc::default();
    let m = me.clone();
    let token = drops.token();
    let task = lp.create_task(async move {
        token.hold();
        assert!(m.borrow().as_ref().unwrap().cancel());
        pending::<()>().await; // no waker kept: only the cancel can step it
    });
    *me.borrow_mut() = Some(task);
    run_iterations(&lp, 3);
    let task = me.borrow_mut().take().unwrap();
    assert!(task.is_done() && task.is_cancelled());
    assert_eq!(drops.dropped(), 1);
    assert!(matches!(
        lp.run_until_complete(task).unwrap(),
        Err(TaskError::Cancelled)
    ));
}

#[test]
fn a_task_pending_without_a_waker_is_still_cancelled_and_closed() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let polls = Polls::new();
    let token = drops.token();
    let p = polls.clone();
    let task = lp.create_task(async move {
        token.hold();
        p.inc();
        pending::<()>().await;
    });
    run_iterations(&lp, 2);
    assert_eq!(polls.get(), 1);
    assert!(task.cancel());
    run_iterations(&lp, 1);
    assert!(task.is_cancelled());
    assert_eq!(drops.dropped(), 1);

    let token = drops.token();
    let kept = lp.create_task(async move {
        token.hold();
        pending::<()>().await;
    });
    run_iterations(&lp, 2);
    lp.close().unwrap();
    assert!(kept.is_done() && kept.is_cancelled(), "close() finds it");
    assert_eq!(drops.dropped(), 2);
}

#[test]
fn close_shuts_down_a_task_not_yet_stepped() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let polls = Polls::new();
    let token = drops.token();
    let p = polls.clone();
    let task = lp.create_task(async move {
        token.hold();
        p.inc();
    });
    lp.close().unwrap();
    assert!(task.is_done() && task.is_cancelled());
    assert_eq!(polls.get(), 0, "never polled");
    assert_eq!(drops.dropped(), 1);
    drop(task);
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn run_cancels_a_task_spawned_last_before_its_first_step() {
    let drops = Drops::new();
    let polls = Polls::new();
    let token = drops.token();
    let p = polls.clone();
    evloop::run(async move {
        // Spawned by the main future's last step: `run` cancels it when it unwinds.
        drop(evloop::spawn(async move {
            token.hold();
            p.inc();
            pending::<()>().await;
        }));
    })
    .unwrap();
    assert!(polls.get() <= 1);
    assert_eq!(drops.dropped(), 1, "the task's future was dropped by run");
}

#[test]
fn detached_tasks_finish_in_spawn_order_and_drop_their_outputs_at_once() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let order = Rc::new(RefCell::new(Vec::new()));
    let n = 1000;
    lp.run_until_complete({
        let order = order.clone();
        let drops_made = &drops;
        let tokens: Vec<_> = (0..n).map(|_| drops_made.token()).collect();
        async move {
            for (i, token) in tokens.into_iter().enumerate() {
                let order = order.clone();
                drop(evloop::spawn(async move {
                    order.borrow_mut().push(i);
                    token // the output, dropped by the loop once the task is done
                }));
            }
            evloop::yield_now().await;
        }
    })
    .unwrap();
    assert_eq!(*order.borrow(), (0..n).collect::<Vec<_>>());
    assert_eq!(drops.dropped(), n);
}

#[test]
fn a_panicking_done_callback_leaves_the_result_to_the_next_and_to_await() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let task = lp.create_task(async { 7 });
    let s = seen.clone();
    task.add_done_callback(move |_, r| {
        s.borrow_mut().push(*r.as_ref().unwrap());
        panic!("first callback");
    });
    let s = seen.clone();
    task.add_done_callback(move |_, r| s.borrow_mut().push(*r.as_ref().unwrap() + 1));
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 7);
    assert_eq!(*seen.borrow(), vec![7, 8]);
    assert_eq!(reports.len(), 1, "the callback's panic is reported");
}

#[test]
fn an_unretrieved_panic_of_a_detached_task_is_reported_once() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    lp.run_until_complete(async {
        drop(evloop::spawn(async { panic!("boom") }));
        evloop::yield_now().await;
    })
    .unwrap();
    let got = reports.get();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message, "Task exception was never retrieved");
    assert_eq!(got[0].panic_message.as_deref(), Some("boom"));
    run_iterations(&lp, 2);
    assert_eq!(reports.len(), 1);
}
