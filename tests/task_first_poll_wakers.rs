//! Adversarial tests of a task's first poll (the waker on the poll's stack, the lazy
//! runnable id): the waker kept past the task, the loop's close and drop; `will_wake`
//! between first-poll and later wakers; cancels, panics and nested spawns inside the
//! first poll; drops of futures and outputs that call back into the loop.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::Duration;

use evloop::{Loop, Task, TaskGroup};
use futures_util::{Polls, Reports, run_iterations};
use util::Drops;

/// Drops into the loop: `call_soon`, `spawn` (through `create_task`) and a cancel.
struct CallsBack {
    lp: Loop,
    ran: Rc<Cell<usize>>,
    victim: Rc<RefCell<Option<Task<()>>>>,
}

impl Drop for CallsBack {
    fn drop(&mut self) {
        if self.lp.is_closed() {
            return;
        }
        let ran = self.ran.clone();
        self.lp.call_soon(move |_| ran.set(ran.get() + 1));
        let ran = self.ran.clone();
        drop(self.lp.create_task(async move { ran.set(ran.get() + 1) }));
        if let Some(t) = self.victim.borrow_mut().take() {
            t.cancel();
        }
    }
}

#[test]
fn a_first_poll_waker_cloned_then_kept_past_the_task_close_and_drop_is_harmless() {
    let lp = Loop::new().unwrap();
    let kept: Rc<RefCell<Vec<Waker>>> = Rc::default();
    let sent: Arc<Mutex<Vec<Waker>>> = Arc::default();
    let (k, s) = (kept.clone(), sent.clone());
    let task = lp.create_task(poll_fn(move |cx| {
        k.borrow_mut().push(cx.waker().clone());
        let w = cx.waker();
        thread::scope(|scope| {
            scope.spawn(|| s.lock().unwrap().push(w.clone()));
        });
        Poll::Ready(1)
    }));
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 1);
    for w in kept.borrow().iter() {
        w.wake_by_ref();
    }
    let remote_wakers: Vec<Waker> = sent.lock().unwrap().drain(..).collect();
    thread::spawn({
        let ws = remote_wakers.clone();
        move || ws.iter().for_each(Waker::wake_by_ref)
    })
    .join()
    .unwrap();
    run_iterations(&lp, 2);
    lp.close().unwrap();
    for w in kept.borrow().iter() {
        w.wake_by_ref();
    }
    remote_wakers.iter().for_each(Waker::wake_by_ref);
    drop(lp);
    for w in kept.borrow_mut().drain(..) {
        w.wake();
    }
    thread::spawn(move || remote_wakers.into_iter().for_each(Waker::wake))
        .join()
        .unwrap();
}

#[test]
fn a_waker_sent_out_through_a_channel_in_the_first_poll_wakes_the_task_after_it() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let (tx, rx) = mpsc::channel::<Waker>();
    let p = polls.clone();
    let task = lp.create_task(poll_fn(move |cx| {
        p.inc();
        if p.get() == 1 {
            let w = cx.waker();
            let tx = tx.clone();
            thread::scope(|scope| {
                scope.spawn(move || tx.send(w.clone()).unwrap());
            });
            Poll::Pending
        } else {
            Poll::Ready(p.get())
        }
    }));
    run_iterations(&lp, 2);
    assert_eq!(polls.get(), 1);
    let waker = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // Dropped on another thread, a clone woken there after the poll.
    let w2 = waker.clone();
    thread::spawn(move || {
        let w3 = w2.clone();
        drop(w2);
        w3.wake();
    })
    .join()
    .unwrap();
    drop(waker);
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 2);
}

#[test]
fn will_wake_holds_between_a_first_poll_clone_and_the_later_wakers() {
    let lp = Loop::new().unwrap();
    let stored: Rc<RefCell<Option<Waker>>> = Rc::default();
    let results: Rc<RefCell<Vec<bool>>> = Rc::default();
    let (st, res) = (stored.clone(), results.clone());
    let mut n = 0;
    let task = lp.create_task(poll_fn(move |cx| {
        n += 1;
        let mut slot = st.borrow_mut();
        match &*slot {
            Some(w) => res.borrow_mut().push(w.will_wake(cx.waker())),
            None => *slot = Some(cx.waker().clone()),
        }
        if n < 3 {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }));
    lp.run_until_complete(task).unwrap().unwrap();
    assert_eq!(*results.borrow(), vec![true, true]);
}

#[test]
fn waking_itself_by_ref_then_pending_polls_exactly_twice_and_once_registered() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let p = polls.clone();
    let task = lp.create_task(poll_fn(move |cx| {
        p.inc();
        if p.get() == 1 {
            cx.waker().wake_by_ref();
            let _clone = cx.waker().clone(); // registers after the step was queued
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(p.get())
        }
    }));
    run_iterations(&lp, 1);
    assert_eq!(polls.get(), 1);
    run_iterations(&lp, 4);
    assert_eq!(polls.get(), 2);
    assert!(task.is_done());
}

#[test]
fn cancel_of_itself_in_the_first_poll_after_its_waker_was_cloned_cancels_once() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let me: Rc<RefCell<Option<Task<()>>>> = Rc::default();
    let m = me.clone();
    let token = drops.token();
    let polls = Polls::new();
    let p = polls.clone();
    let task = lp.create_task(poll_fn(move |cx| {
        token.hold();
        p.inc();
        let _w = cx.waker().clone();
        if let Some(t) = m.borrow().as_ref() {
            assert!(t.cancel());
            assert!(t.cancel());
        }
        cx.waker().wake_by_ref();
        Poll::<()>::Pending
    }));
    let handle = lp.create_task(async {});
    *me.borrow_mut() = Some(task);
    run_iterations(&lp, 4);
    let task = me.borrow_mut().take().unwrap();
    assert!(task.is_cancelled());
    assert_eq!(polls.get(), 1);
    assert_eq!(drops.alive(), 0);
    assert!(handle.is_done());
}

#[test]
fn a_panic_in_the_first_poll_after_a_cross_thread_clone_leaves_a_dead_waker() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let sent: Arc<Mutex<Option<Waker>>> = Arc::default();
    let s = sent.clone();
    let drops = Drops::new();
    let token = drops.token();
    let task = lp.create_task(poll_fn(move |cx| -> Poll<()> {
        token.hold();
        let w = cx.waker();
        thread::scope(|scope| {
            scope.spawn(|| {
                let c = w.clone();
                c.wake_by_ref();
                *s.lock().unwrap() = Some(c);
            });
        });
        panic!("first poll fails");
    }));
    let err = lp.run_until_complete(task).unwrap().unwrap_err();
    assert_eq!(err.panic_message(), Some("first poll fails"));
    assert_eq!(drops.alive(), 0);
    let w = sent.lock().unwrap().take().unwrap();
    thread::spawn(move || w.wake()).join().unwrap();
    run_iterations(&lp, 2);
    assert!(reports.is_empty(), "{:?}", reports.get());
}

#[test]
// The first child hands back the task it spawned, to await it.
#[allow(clippy::async_yields_async)]
fn nested_spawns_in_the_first_poll_run_and_finish_in_their_first_steps() {
    let lp = Loop::new().unwrap();
    let log: Rc<RefCell<Vec<u32>>> = Rc::default();
    let l = log.clone();
    let outer = lp.create_task(async move {
        let l2 = l.clone();
        let a = evloop::spawn(async move {
            l2.borrow_mut().push(1);
            let l3 = l2.clone();
            evloop::spawn(async move { l3.borrow_mut().push(3) })
        });
        let l4 = l.clone();
        let b = evloop::spawn(async move { l4.borrow_mut().push(2) });
        let inner = a.await.unwrap();
        b.await.unwrap();
        inner.await.unwrap();
        l.borrow_mut().push(4);
    });
    lp.run_until_complete(outer).unwrap().unwrap();
    assert_eq!(*log.borrow(), vec![1, 2, 3, 4]);
}

#[test]
fn futures_and_outputs_whose_drops_call_back_into_the_loop_drop_once_each() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let ran = Rc::new(Cell::new(0));
    let drops = Drops::new();
    let victim: Rc<RefCell<Option<Task<()>>>> = Rc::default();
    let n = 20usize;
    for i in 0..n {
        let cb = CallsBack {
            lp: lp.clone(),
            ran: ran.clone(),
            victim: victim.clone(),
        };
        let out = CallsBack {
            lp: lp.clone(),
            ran: ran.clone(),
            victim: victim.clone(),
        };
        let token = drops.token();
        let t = lp.create_task(async move {
            token.hold();
            let _cb = cb; // the future's own capture dropped at finish
            (out, i)
        });
        match i % 3 {
            0 => drop(t), // detached: the output is dropped at finish
            1 => {
                t.add_done_callback(|_, _| {});
                drop(t);
            }
            _ => {
                let _ = t.cancel(); // cancelled before its first step
            }
        }
        *victim.borrow_mut() = Some(lp.create_task(std::future::pending()));
    }
    run_iterations(&lp, 10);
    assert_eq!(drops.alive(), 0);
    // Each of the two `CallsBack` of a task (in its future, then in its output or,
    // cancelled before its first step, in its future still) ran two callbacks.
    assert_eq!(ran.get(), n * 4);
    assert!(reports.is_empty(), "{:?}", reports.get());
    lp.close().unwrap();
}

#[test]
fn a_detached_output_whose_drop_panics_is_reported_and_the_loop_goes_on() {
    struct PanicsOnDrop(Rc<Cell<usize>>);
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
            panic!("output drop");
        }
    }
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let dropped = Rc::new(Cell::new(0));
    let after = Rc::new(Cell::new(false));
    let d = dropped.clone();
    drop(lp.create_task(async move { PanicsOnDrop(d) }));
    let a = after.clone();
    lp.call_soon(move |_| a.set(true));
    run_iterations(&lp, 3);
    assert_eq!(dropped.get(), 1);
    assert!(after.get());
    assert_eq!(reports.len(), 1, "{:?}", reports.get());
    lp.close().unwrap();
}

#[test]
fn close_and_drop_with_first_steps_queued_drop_every_future_once() {
    for close_first in [true, false] {
        let lp = Loop::new().unwrap();
        let drops = Drops::new();
        let ran = Rc::new(Cell::new(0));
        let victim: Rc<RefCell<Option<Task<()>>>> = Rc::default();
        let mut kept = Vec::new();
        for i in 0..50 {
            let token = drops.token();
            // A future holding its loop keeps it alive (a cycle only `close()`
            // breaks): only the closed variant calls back into the loop.
            let cb = close_first.then(|| CallsBack {
                lp: lp.clone(),
                ran: ran.clone(),
                victim: victim.clone(),
            });
            let t = lp.create_task(async move {
                token.hold();
                let _cb = cb;
            });
            if i % 2 == 0 {
                kept.push(t);
            }
        }
        if close_first {
            lp.close().unwrap();
            assert_eq!(drops.alive(), 0);
            assert!(kept.iter().all(|t| t.is_cancelled()));
        }
        drop(lp);
        assert_eq!(drops.alive(), 0);
        drop(kept);
        assert_eq!(drops.made(), 50);
    }
}

#[test]
fn task_group_children_that_finish_in_their_first_step_are_all_awaited() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let sum = Rc::new(Cell::new(0));
    let (s, d) = (sum.clone(), drops.clone());
    lp.run_until_complete(async move {
        let group = TaskGroup::new();
        for i in 0..100 {
            let s = s.clone();
            let token = d.token();
            group.spawn(async move {
                token.hold();
                s.set(s.get() + i);
            });
        }
        group.wait().await.unwrap();
        assert!(group.is_empty());
    })
    .unwrap();
    assert_eq!(sum.get(), 4950);
    assert_eq!(drops.alive(), 0);
}

#[test]
// A clone made on a scoped thread, consumed there: the `Deferred` waker's path.
#[allow(clippy::waker_clone_wake)]
fn remote_spawned_tasks_finishing_in_their_first_step_return_their_outputs() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let worker = thread::spawn(move || {
        let mut sum = 0;
        for i in 0..200u64 {
            let t = remote.spawn(async move { i }).unwrap();
            let u = remote
                .spawn_with(move || {
                    poll_fn(move |cx| {
                        let w = cx.waker();
                        thread::scope(|scope| {
                            scope.spawn(|| w.clone().wake());
                        });
                        Poll::Ready(i)
                    })
                })
                .unwrap();
            if i % 5 == 0 {
                t.cancel();
            }
            sum += t.wait().unwrap_or(0) + u.wait().unwrap();
        }
        sum
    });
    let watchdog = util::Watchdog::new(&lp, Duration::from_secs(30));
    let stop = lp.clone();
    let done = Rc::new(Cell::new(false));
    let dn = done.clone();
    let w = Rc::new(RefCell::new(Some(worker)));
    fn poll_done(lp: &Loop, w: Rc<RefCell<Option<thread::JoinHandle<u64>>>>, done: Rc<Cell<bool>>) {
        if w.borrow().as_ref().unwrap().is_finished() {
            done.set(true);
            lp.stop();
        } else {
            lp.call_later(Duration::from_millis(1), move |lp| poll_done(lp, w, done));
        }
    }
    let w2 = w.clone();
    stop.call_soon(move |lp| poll_done(lp, w2, dn));
    lp.run_forever().unwrap();
    assert!(!watchdog.fired());
    assert!(done.get());
    let sum = w.borrow_mut().take().unwrap().join().unwrap();
    let all: u64 = (0..200).sum();
    assert!(sum >= all && sum <= 2 * all);
}

#[test]
fn remote_tasks_cancelled_around_their_first_step_all_complete() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let worker = thread::spawn(move || {
        let (mut finished, mut cancelled, mut lost) = (0, 0, 0);
        let mut sleeping = Vec::new();
        for i in 0..300u32 {
            let token = Counted(d.clone());
            let sleeps = i % 2 == 0;
            let mut t = remote
                .spawn_with(move || async move {
                    let _t = token;
                    if sleeps {
                        evloop::sleep(Duration::from_secs(3600)).await;
                    }
                    i
                })
                .unwrap();
            let cancel = i % 3 != 2;
            if cancel {
                t.cancel();
            }
            if sleeps && !cancel {
                sleeping.push(t);
                continue;
            }
            match t.wait_timeout(Duration::from_secs(20)) {
                Some(Ok(v)) => {
                    assert_eq!(v, i);
                    finished += 1
                }
                Some(Err(e)) if e.is_cancelled() => cancelled += 1,
                _ => lost += 1,
            }
        }
        (finished, cancelled, lost, sleeping)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !worker.is_finished() && std::time::Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(2))).unwrap();
    }
    let (finished, cancelled, lost, sleeping) = worker.join().unwrap();
    assert_eq!(lost, 0, "a remote task never completed");
    assert_eq!(finished + cancelled + sleeping.len(), 300);
    // Every sleeping task that was cancelled completed as cancelled.
    assert!(cancelled >= 100, "{cancelled}");
    assert!(sleeping.iter().all(|t| !t.is_done()));
    lp.close().unwrap();
    assert!(sleeping.iter().all(|t| t.is_done()));
    assert_eq!(drops.load(Ordering::SeqCst), 300);
}

#[test]
fn a_cancel_and_a_cross_thread_wake_in_the_same_first_poll_cancel_once() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let me: Rc<RefCell<Option<Task<()>>>> = Rc::default();
    let sent: Arc<Mutex<Option<Waker>>> = Arc::default();
    let (m, s) = (me.clone(), sent.clone());
    let token = drops.token();
    let polls = Polls::new();
    let p = polls.clone();
    let task = lp.create_task(poll_fn(move |cx| {
        token.hold();
        p.inc();
        let w = cx.waker();
        thread::scope(|scope| {
            scope.spawn(|| {
                let c = w.clone();
                c.wake_by_ref();
                *s.lock().unwrap() = Some(c);
            });
        });
        if let Some(t) = m.borrow().as_ref() {
            t.cancel();
        }
        Poll::<()>::Pending
    }));
    *me.borrow_mut() = Some(task);
    run_iterations(&lp, 4);
    let task = me.borrow_mut().take().unwrap();
    assert!(task.is_cancelled());
    assert_eq!(polls.get(), 1, "the cancel came before any second poll");
    assert_eq!(drops.alive(), 0);
    let w = sent.lock().unwrap().take().unwrap();
    let w2 = w.clone();
    thread::spawn(move || w2.wake()).join().unwrap();
    run_iterations(&lp, 2);
    drop(lp);
    w.wake_by_ref();
    thread::spawn(move || w.wake()).join().unwrap();
}

#[test]
fn a_future_spawning_from_its_drop_during_close_is_reported_not_aborted() {
    struct SpawnsOnDrop;
    impl Drop for SpawnsOnDrop {
        fn drop(&mut self) {
            drop(evloop::spawn(async {}));
        }
    }
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let guard = SpawnsOnDrop;
    let t = lp.create_task(async move {
        let _g = guard;
        std::future::pending::<()>().await;
    });
    run_iterations(&lp, 1);
    lp.close().unwrap();
    assert!(t.is_cancelled());
    assert_eq!(reports.len(), 1, "{:?}", reports.get());
}
