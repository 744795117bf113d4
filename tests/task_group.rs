//! `TaskGroup` (asyncio 3.11's `TaskGroup`): `wait` waits for every child; the first
//! panic cancels the siblings and is returned by `wait`; cancelled children do not
//! fail the group; dropping the group cancels its children.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::future::pending;
use std::panic::{AssertUnwindSafe, catch_unwind};
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
    match &wait_result {
        Err(e @ TaskError::Panicked(_)) => {
            assert_eq!(e.panic_message(), Some("child failed: 13"))
        }
        other => panic!("wait should report the panic, got {other:?}"),
    }
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
    match r {
        Err(TaskError::Panicked(p)) => assert_eq!(p.downcast_ref::<u16>(), Some(&77)),
        other => panic!("got {other:?}"),
    }
}

/// Two children panic in the same iteration: `wait` reports the first.
#[test]
fn only_the_first_panic_is_reported() {
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
    assert_eq!(e.panic_message(), Some("first"));
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
