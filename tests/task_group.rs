//! `TaskGroup` (asyncio 3.11's `TaskGroup`): `wait` waits for every child; the first
//! panic cancels the siblings and is returned by `wait`; cancelled children do not
//! fail the group; dropping the group cancels its children.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::cell::{Cell, RefCell};
use std::future::{Future, pending};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use evloop::{Clock, Loop, TaskError, TaskGroup, sleep, yield_now};
use futures_util::{Polls, Reports, count_polls, run_iterations};
use util::{Drops, Events};

fn manual_loop() -> Loop {
    Loop::builder().clock(Clock::manual()).build().unwrap()
}

#[test]
fn wait_waits_for_every_child() {
    let lp = manual_loop();
    let finished = Events::new();
    let (r, empty) = lp
        .run_until_complete({
            let finished = finished.clone();
            async move {
                let group = TaskGroup::new();
                for (name, ms) in [("slow", 30u64), ("fast", 1), ("mid", 10)] {
                    let f = finished.clone();
                    drop(group.spawn(async move {
                        sleep(Duration::from_millis(ms)).await;
                        f.push(name);
                    }));
                }
                let f = finished.clone();
                drop(group.spawn(async move {
                    yield_now().await;
                    f.push("yield");
                }));
                assert_eq!(group.len(), 4);
                let r = group.wait().await;
                (r, group.is_empty())
            }
        })
        .unwrap();
    assert!(r.is_ok(), "got {r:?}");
    assert!(empty);
    assert_eq!(finished.get(), vec!["yield", "fast", "mid", "slow"]);
}

#[test]
fn wait_on_an_empty_group_is_ok_at_once() {
    let lp = Loop::new().unwrap();
    let r = lp
        .run_until_complete(async { TaskGroup::new().wait().await })
        .unwrap();
    assert!(r.is_ok());
}

#[test]
fn children_outputs_are_awaitable() {
    let lp = Loop::new().unwrap();
    let total = lp
        .run_until_complete(async {
            let group = TaskGroup::new();
            let a = group.spawn(async { 1 });
            let b = group.spawn(async {
                yield_now().await;
                2
            });
            group.wait().await.unwrap();
            a.await.unwrap() + b.await.unwrap()
        })
        .unwrap();
    assert_eq!(total, 3);
}

#[test]
fn first_panic_cancels_the_siblings() {
    let lp = manual_loop();
    let drops = Drops::new();
    let (wait_result, sibling_results, failing_result) = lp
        .run_until_complete({
            let drops = drops.clone();
            async move {
                let group = TaskGroup::new();
                let t1 = drops.token();
                let pending_child = group.spawn(async move {
                    t1.hold();
                    pending::<u32>().await
                });
                let t2 = drops.token();
                let sleeping_child = group.spawn(async move {
                    t2.hold();
                    sleep(Duration::from_secs(3600)).await;
                    2u32
                });
                let failing = group.spawn(async {
                    yield_now().await;
                    panic!("child failed: {}", 13);
                });
                let wait_result = group.wait().await;
                let siblings = [pending_child.await, sleeping_child.await];
                (wait_result, siblings, failing.await)
            }
        })
        .unwrap();
    let errors = wait_result.expect_err("wait should report the panic");
    assert_eq!(errors.errors().len(), 1);
    assert_eq!(errors.errors()[0].panic_message(), Some("child failed: 13"));
    for r in &sibling_results {
        assert!(matches!(r, Err(TaskError::Cancelled)), "sibling: {r:?}");
    }
    assert_eq!(drops.dropped(), 2, "the siblings' futures were dropped");
    match failing_result {
        Err(e @ TaskError::Panicked(_)) => {
            assert_eq!(e.panic_message(), Some("child failed: 13"))
        }
        other => panic!("the failing child's own result: {other:?}"),
    }
}

/// `wait` hands out the original payload.
#[test]
fn wait_returns_the_original_payload() {
    let lp = Loop::new().unwrap();
    let r = lp
        .run_until_complete(async {
            let group = TaskGroup::new();
            drop(group.spawn(async {
                std::panic::panic_any(77u16);
            }));
            group.wait().await
        })
        .unwrap();
    match r.unwrap_err().into_errors().as_slice() {
        [TaskError::Panicked(p)] => assert_eq!(p.downcast_ref::<u16>(), Some(&77)),
        other => panic!("got {other:?}"),
    }
}

/// asyncio `test_cancel_children_on_child_error` (the three `foo1` children that
/// fail together): two children panic in the same iteration; the siblings are
/// cancelled from a later callback, so `wait` reports both panics, in order, with
/// where each child was spawned.
#[test]
fn panics_of_one_iteration_are_all_reported() {
    let lp = Loop::new().unwrap();
    let r = lp
        .run_until_complete(async {
            let group = TaskGroup::new();
            drop(group.spawn(async {
                yield_now().await;
                panic!("first");
            }));
            drop(group.spawn(async {
                yield_now().await;
                panic!("second");
            }));
            group.wait().await
        })
        .unwrap();
    let e = r.unwrap_err();
    let messages: Vec<_> = e.errors().iter().map(|e| e.panic_message()).collect();
    assert_eq!(messages, [Some("first"), Some("second")]);
    assert_eq!(e.locations().len(), 2);
    assert!(
        e.locations()
            .iter()
            .all(|l| l.file().ends_with("task_group.rs"))
    );
    assert!(e.locations()[0].line() < e.locations()[1].line());
    let shown = e.to_string();
    assert!(
        shown.starts_with("2 TaskGroup children panicked"),
        "{shown}"
    );
    assert!(
        shown.contains(": first") && shown.contains(": second"),
        "{shown}"
    );
}

#[test]
fn a_cancelled_child_does_not_fail_the_group() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let (r, cancelled, other) = lp
        .run_until_complete({
            let drops = drops.clone();
            async move {
                let group = TaskGroup::new();
                let t = drops.token();
                let victim = group.spawn(async move {
                    t.hold();
                    pending::<()>().await
                });
                let other = group.spawn(async {
                    for _ in 0..3 {
                        yield_now().await;
                    }
                    "other finished"
                });
                yield_now().await;
                assert!(victim.cancel());
                let r = group.wait().await;
                (r, victim.await, other.await)
            }
        })
        .unwrap();
    assert!(
        r.is_ok(),
        "a cancelled child must not fail the group: {r:?}"
    );
    assert!(matches!(cancelled, Err(TaskError::Cancelled)));
    assert_eq!(other.unwrap(), "other finished");
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn group_cancel_cancels_every_child() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let r = lp
        .run_until_complete({
            let drops = drops.clone();
            async move {
                let group = TaskGroup::new();
                for _ in 0..3 {
                    let t = drops.token();
                    drop(group.spawn(async move {
                        t.hold();
                        pending::<()>().await
                    }));
                }
                yield_now().await;
                group.cancel();
                group.wait().await
            }
        })
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(drops.dropped(), 3);
}

#[test]
#[should_panic(expected = "wait() returned")]
fn spawn_after_wait_returned_panics() {
    let lp = Loop::new().unwrap();
    let _ = lp.run_until_complete(async {
        let group = TaskGroup::new();
        drop(group.spawn(async {}));
        group.wait().await.unwrap();
        drop(group.spawn(async {}));
    });
}

#[test]
#[should_panic(expected = "outside a running loop")]
fn spawn_outside_a_loop_panics() {
    let group = TaskGroup::new();
    drop(group.spawn(async {}));
}

/// Dropping the group before `wait` completed cancels the children still running.
#[test]
fn dropping_the_group_cancels_running_children() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let (child_result, finished_result) = lp
        .run_until_complete({
            let drops = drops.clone();
            async move {
                let group = TaskGroup::new();
                let t = drops.token();
                let child = group.spawn(async move {
                    t.hold();
                    pending::<()>().await
                });
                let finished = group.spawn(async { 5 });
                yield_now().await;
                yield_now().await;
                drop(group);
                (child.await, finished.await)
            }
        })
        .unwrap();
    assert!(
        matches!(child_result, Err(TaskError::Cancelled)),
        "{child_result:?}"
    );
    assert_eq!(
        finished_result.unwrap(),
        5,
        "a finished child keeps its output"
    );
    assert_eq!(drops.dropped(), 1);
}

/// The task holding the group is cancelled: its future (and the group in it) is
/// dropped, and the children with it.
#[test]
fn cancelling_the_owner_task_cancels_the_children() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let d = drops.clone();
    let owner = lp.create_task(async move {
        let group = TaskGroup::new();
        for _ in 0..2 {
            let t = d.token();
            drop(group.spawn(async move {
                t.hold();
                pending::<()>().await
            }));
        }
        group.wait().await
    });
    run_iterations(&lp, 3);
    assert_eq!(drops.dropped(), 0);
    assert!(owner.cancel());
    run_iterations(&lp, 3);
    assert!(owner.is_cancelled());
    assert_eq!(drops.dropped(), 2, "no child outlives its group");
}

/// In a group that is already failing, a new child is cancelled before it is polled.
#[test]
fn spawn_into_a_failing_group_is_never_polled() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let p = polls.clone();
    let (r, late) = lp
        .run_until_complete(async move {
            let group = TaskGroup::new();
            drop(group.spawn(async {
                panic!("fail first");
            }));
            yield_now().await;
            yield_now().await;
            let late = group.spawn(count_polls(&p, async { 1 }));
            let r = group.wait().await;
            (r, late.await)
        })
        .unwrap();
    assert!(r.is_err());
    assert!(matches!(late, Err(TaskError::Cancelled)), "{late:?}");
    assert_eq!(polls.get(), 0);
}

/// Group children's panics go to `wait`, not to the exception handler, even when
/// their `Task` handles were dropped unawaited.
#[test]
fn no_never_retrieved_report_for_group_children() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let r = lp
        .run_until_complete(async {
            let group = TaskGroup::new();
            drop(group.spawn(async {
                panic!("child panic");
            }));
            let kept = group.spawn(async {
                yield_now().await;
                panic!("second child panic");
            });
            let r = group.wait().await;
            drop(kept);
            r
        })
        .unwrap();
    assert!(r.is_err());
    run_iterations(&lp, 3);
    assert!(
        reports.is_empty(),
        "group children must not be reported as never retrieved: {:?}",
        reports.get()
    );
}

/// A group child's panic does not escape into the run that drives the group.
#[test]
fn child_panic_does_not_unwind_the_owner() {
    let lp = Loop::new().unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        lp.run_until_complete(async {
            let group = TaskGroup::new();
            drop(group.spawn(async {
                panic!("contained");
            }));
            group.wait().await.is_err()
        })
    }));
    assert!(matches!(outcome, Ok(Ok(true))));
}

/// asyncio `test_taskgroup_no_create_task_after_failure`: once the siblings of a
/// failed child were cancelled, `spawn` returns a task that is already cancelled:
/// `is_cancelled()` at once, its future dropped before `spawn` returns, never polled.
#[test]
fn spawn_into_a_shutting_down_group_returns_a_cancelled_task() {
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let drops = Drops::new();
    let (p, d) = (polls.clone(), drops.clone());
    let r = lp
        .run_until_complete(async move {
            let group = TaskGroup::new();
            drop(group.spawn(async {
                panic!("fail first");
            }));
            let sibling = group.spawn(pending::<()>());
            while !sibling.is_done() {
                yield_now().await; // the failure cancels the sibling
            }
            let t = d.token();
            let late = group.spawn(count_polls(&p, async move {
                t.hold();
            }));
            assert!(late.is_cancelled() && late.is_done());
            assert_eq!(d.dropped(), 1, "its future is dropped at once");
            assert_eq!(group.len(), 0);
            let r = group.wait().await;
            (r, late.await)
        })
        .unwrap();
    assert_eq!(r.0.unwrap_err().errors().len(), 1);
    assert!(matches!(r.1, Err(TaskError::Cancelled)));
    assert_eq!(polls.get(), 0);
}

/// After `cancel()` the group is shutting down too.
#[test]
fn spawn_after_cancel_returns_a_cancelled_task() {
    let lp = Loop::new().unwrap();
    let r = lp
        .run_until_complete(async {
            let group = TaskGroup::new();
            group.cancel();
            let t = group.spawn(async { 1 });
            assert!(t.is_cancelled());
            (group.wait().await.is_ok(), t.await.is_err())
        })
        .unwrap();
    assert_eq!(r, (true, true));
}

/// Regression: `Wait` kept one waker, so of two `wait()`s awaited at once the first
/// never woke.
#[test]
fn two_concurrent_waits_both_complete() {
    let lp = manual_loop();
    let done = lp
        .run_until_complete(async {
            let group = Rc::new(TaskGroup::new());
            drop(group.spawn(sleep(Duration::from_millis(10))));
            let waits: Vec<_> = (0..2)
                .map(|_| {
                    let g = group.clone();
                    evloop::spawn(async move { g.wait().await.is_ok() })
                })
                .collect();
            yield_now().await; // both waits are now parked
            let mut outs = Vec::new();
            for w in waits {
                outs.push(evloop::timeout(Duration::from_secs(5), w).await);
            }
            outs
        })
        .unwrap();
    for out in done {
        assert!(matches!(out, Ok(Ok(true))), "{out:?}");
    }
}

/// Two concurrent `wait()`s after panics: the first gets the payloads, the other
/// the messages; neither pretends the group succeeded.
#[test]
fn a_second_wait_also_sees_the_panics() {
    let lp = Loop::new().unwrap();
    let (first, second) = lp
        .run_until_complete(async {
            let group = TaskGroup::new();
            drop(group.spawn(async {
                yield_now().await;
                std::panic::panic_any(String::from("boom"));
            }));
            let (a, b) = (group.wait(), group.wait());
            let a = a.await;
            let b = b.await;
            (a, b)
        })
        .unwrap();
    let first = first.unwrap_err();
    let second = second.unwrap_err();
    assert_eq!(first.errors()[0].panic_message(), Some("boom"));
    assert_eq!(second.errors()[0].panic_message(), Some("boom"));
    assert_eq!(first.locations(), second.locations());
}

thread_local! {
    static WAKE_GROUP: RefCell<Option<Rc<TaskGroup>>> = const { RefCell::new(None) };
    static SPAWNED_IN_WAKE: Cell<bool> = const { Cell::new(false) };
}

/// A waker that spawns into the group when woken.
struct SpawnOnWake;

impl Wake for SpawnOnWake {
    fn wake(self: Arc<Self>) {
        let group = WAKE_GROUP.with(|g| g.borrow().clone());
        if let Some(g) = group {
            drop(g.spawn(async {}));
            // And waits on it again (a waker that polls at once, as some executors'
            // do): the group's waiters must not be borrowed either.
            let mut wait = g.wait();
            let cx = &mut Context::from_waker(Waker::noop());
            assert!(Pin::new(&mut wait).poll(cx).is_pending());
            SPAWNED_IN_WAKE.with(|s| s.set(true));
        }
    }
}

/// Regression: the last child's drop woke the `wait()` while the group's children
/// (and its waker slot) were still borrowed, so a waker that uses the group (here:
/// spawns into it and waits on it) panicked.
#[test]
fn the_last_child_wakes_wait_with_the_group_free() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let ok = lp
        .run_until_complete(async {
            let group = Rc::new(TaskGroup::new());
            WAKE_GROUP.with(|g| *g.borrow_mut() = Some(group.clone()));
            drop(group.spawn(yield_now()));
            // Park a `wait()` with the waker that spawns.
            let waker = Waker::from(Arc::new(SpawnOnWake));
            let mut wait = group.wait();
            let parked = Pin::new(&mut wait)
                .poll(&mut Context::from_waker(&waker))
                .is_pending();
            assert!(parked);
            for _ in 0..3 {
                yield_now().await;
            }
            drop(wait);
            WAKE_GROUP.with(|g| g.borrow_mut().take());
            group.wait().await.is_ok()
        })
        .unwrap();
    assert!(
        SPAWNED_IN_WAKE.with(|s| s.get()),
        "the waker could not spawn"
    );
    assert!(ok);
    assert!(reports.is_empty(), "{:?}", reports.get());
}
