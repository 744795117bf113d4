//! `Promise<T>`: asyncio's `Future` (behaviour ported from CPython's
//! `test_asyncio/test_futures.py`): states, `InvalidState`, done-callbacks run through
//! `call_soon` in order, removal, awaiting from several tasks, cancellation.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::rc::Rc;
use std::time::Duration;

use evloop::{Cancelled, InvalidState, Loop};
use futures_util::{Reports, run_briefly};
use util::{Drops, Events, Watchdog};

#[test]
fn initial_state_then_cancel() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    assert!(!p.is_done());
    assert!(!p.is_cancelled());
    assert!(p.result().is_none());

    assert!(p.cancel());
    assert!(p.is_done());
    assert!(p.is_cancelled());
    assert_eq!(p.result(), Some(&Err(Cancelled)));
    // Cancelled is done: no second cancel, no result.
    assert!(!p.cancel());
    assert_eq!(p.set_result(1), Err(InvalidState));
    assert!(p.is_cancelled());
}

#[test]
fn set_result_then_done() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    assert_eq!(p.set_result(42), Ok(()));
    assert!(p.is_done());
    assert!(!p.is_cancelled());
    assert_eq!(p.result(), Some(&Ok(42)));

    assert_eq!(p.set_result(7), Err(InvalidState));
    assert!(!p.cancel(), "cancel after done returns false");
    assert!(!p.is_cancelled());
    assert_eq!(p.result(), Some(&Ok(42)), "the first result stands");
}

#[test]
fn clones_are_the_same_promise() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<&'static str>();
    let q = p.clone();
    q.set_result("x").unwrap();
    assert!(p.is_done());
    assert_eq!(p.set_result("y"), Err(InvalidState));
    assert_eq!(p.result(), Some(&Ok("x")));
}

#[test]
fn set_result_drops_a_rejected_value() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let p = lp.create_promise();
    p.set_result(drops.token()).unwrap();
    assert!(p.set_result(drops.token()).is_err());
    assert_eq!(drops.dropped(), 1, "the rejected value is dropped at once");
    drop(p);
    assert_eq!(drops.dropped(), 2);
}

/// asyncio's `test_callbacks_invoked_on_set_result`: nothing runs inside
/// `set_result`; one iteration later the callbacks have run, in the order added.
#[test]
fn done_callbacks_run_via_call_soon_in_order() {
    let lp = Loop::new().unwrap();
    let bag = Events::new();
    let p = lp.create_promise::<&'static str>();
    for tag in [42, 17, 100] {
        let bag = bag.clone();
        p.add_done_callback(move |_, r| {
            assert_eq!(*r, Ok("foo"));
            bag.push(tag);
        });
    }
    assert!(bag.is_empty());
    p.set_result("foo").unwrap();
    assert!(
        bag.is_empty(),
        "done-callbacks must not run inline in set_result"
    );
    run_briefly(&lp);
    assert_eq!(bag.get(), vec![42, 17, 100]);
    run_briefly(&lp);
    assert_eq!(bag.len(), 3, "each callback runs once");
}

/// The callbacks are `call_soon`ed at the moment of completion: after what was already
/// queued, before what is queued later.
#[test]
fn done_callbacks_are_queued_at_completion_time() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let p = lp.create_promise::<()>();
    let o = order.clone();
    lp.call_soon(move |_| o.push("queued before"));
    for tag in ["cb1", "cb2"] {
        let o = order.clone();
        p.add_done_callback(move |_, _| o.push(tag));
    }
    p.set_result(()).unwrap();
    let o = order.clone();
    lp.call_soon(move |_| o.push("queued after"));
    run_briefly(&lp);
    assert_eq!(
        order.get(),
        vec!["queued before", "cb1", "cb2", "queued after"]
    );
}

#[test]
fn done_callbacks_on_cancel_see_cancelled() {
    let lp = Loop::new().unwrap();
    let seen = Events::new();
    let p = lp.create_promise::<u32>();
    let s = seen.clone();
    p.add_done_callback(move |_, r| s.push(*r));
    assert!(p.cancel());
    assert!(seen.is_empty(), "not inline inside cancel");
    run_briefly(&lp);
    assert_eq!(seen.get(), vec![Err(Cancelled)]);
}

/// A callback added to a promise that is already done is scheduled at once: it runs
/// on the next iteration, not inline.
#[test]
fn callback_added_to_done_promise_runs_next_iteration() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    p.set_result(5).unwrap();
    let seen = Events::new();
    let s = seen.clone();
    p.add_done_callback(move |_, r| s.push(*r));
    assert!(seen.is_empty(), "not inline inside add_done_callback");
    run_briefly(&lp);
    assert_eq!(seen.get(), vec![Ok(5)]);
}

/// It is queued when added, so behind callbacks queued earlier.
#[test]
fn callback_added_to_done_promise_is_queued_in_fifo_order() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let p = lp.create_promise::<()>();
    p.set_result(()).unwrap();
    let o = order.clone();
    lp.call_soon(move |_| o.push("soon"));
    let o = order.clone();
    p.add_done_callback(move |_, _| o.push("done-cb"));
    run_briefly(&lp);
    assert_eq!(order.get(), vec!["soon", "done-cb"]);
}

/// A done-callback that adds another done-callback to the (now done) promise: the
/// new one runs on the following iteration.
#[test]
fn done_callback_adding_a_callback_runs_it_one_iteration_later() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let p = lp.create_promise::<()>();
    let o = order.clone();
    let p2 = p.clone();
    p.add_done_callback(move |_, _| {
        o.push("first");
        let o2 = o.clone();
        p2.add_done_callback(move |_, _| o2.push("second"));
    });
    p.set_result(()).unwrap();
    run_briefly(&lp);
    assert_eq!(order.get(), vec!["first"]);
    run_briefly(&lp);
    assert_eq!(order.get(), vec!["first", "second"]);
}

/// asyncio's `test_callbacks_remove_first_callback` and friends.
#[test]
fn remove_done_callback_before_completion() {
    let lp = Loop::new().unwrap();
    let bag = Events::new();
    let p = lp.create_promise::<()>();
    let mut ids = Vec::new();
    for tag in [42, 17, 100, 5] {
        let bag = bag.clone();
        ids.push(p.add_done_callback(move |_, _| bag.push(tag)));
    }
    assert!(p.remove_done_callback(ids[0]), "first");
    assert!(p.remove_done_callback(ids[2]), "a middle one");
    assert!(
        !p.remove_done_callback(ids[0]),
        "removing twice: unknown id"
    );
    assert!(!p.remove_done_callback(ids[2]));
    p.set_result(()).unwrap();
    run_briefly(&lp);
    assert_eq!(bag.get(), vec![17, 5]);
}

#[test]
fn remove_done_callback_drops_the_closure_and_never_calls_it() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let p = lp.create_promise::<()>();
    let token = drops.token();
    let called = Events::new();
    let c = called.clone();
    let id = p.add_done_callback(move |_, _| {
        token.hold();
        c.push(());
    });
    assert!(p.remove_done_callback(id));
    assert_eq!(drops.dropped(), 1, "the removed closure is dropped");
    p.set_result(()).unwrap();
    run_briefly(&lp);
    assert!(called.is_empty());
}

#[test]
fn remove_done_callback_unknown_id_is_false() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<()>();
    let other = lp.create_promise::<()>();
    let mut foreign = None;
    for _ in 0..5 {
        foreign = Some(other.add_done_callback(|_, _| {}));
    }
    let bag = Events::new();
    let b = bag.clone();
    p.add_done_callback(move |_, _| b.push(1));
    // An id this promise never handed out.
    assert!(!p.remove_done_callback(foreign.unwrap()));
    p.set_result(()).unwrap();
    run_briefly(&lp);
    assert_eq!(bag.get(), vec![1], "an unknown id removes nothing");
}

/// Once the promise is done its callbacks are scheduled: removing one is too late.
#[test]
fn remove_done_callback_after_completion_is_false() {
    let lp = Loop::new().unwrap();
    let bag = Events::new();
    let p = lp.create_promise::<()>();
    let b = bag.clone();
    let id = p.add_done_callback(move |_, _| b.push(1));
    p.set_result(()).unwrap();
    assert!(!p.remove_done_callback(id));
    run_briefly(&lp);
    assert_eq!(bag.get(), vec![1]);
}

/// asyncio's `test_schedule_callbacks_list_mutation_1`: a callback that removes
/// another callback of the same promise while they run is harmless.
#[test]
fn done_callback_removing_a_sibling_is_harmless() {
    let lp = Loop::new().unwrap();
    let bag = Events::new();
    let p = lp.create_promise::<()>();
    let second = Rc::new(std::cell::Cell::new(None));
    let (b, p2, s) = (bag.clone(), p.clone(), second.clone());
    p.add_done_callback(move |_, _| {
        b.push("first");
        // Too late: it was scheduled with the others.
        assert!(!p2.remove_done_callback(s.get().unwrap()));
    });
    let b = bag.clone();
    second.set(Some(p.add_done_callback(move |_, _| b.push("second"))));
    p.set_result(()).unwrap();
    run_briefly(&lp);
    assert_eq!(bag.get(), vec!["first", "second"]);
}

#[test]
fn set_result_inside_a_done_callback_is_invalid_state() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    let seen = Events::new();
    let (s, p2) = (seen.clone(), p.clone());
    p.add_done_callback(move |_, _| s.push(p2.set_result(2)));
    p.set_result(1).unwrap();
    run_briefly(&lp);
    assert_eq!(seen.get(), vec![Err(InvalidState)]);
    assert_eq!(p.result(), Some(&Ok(1)));
}

/// The callback gets the loop it runs on, and may schedule on it.
#[test]
fn done_callback_gets_the_loop() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let p = lp.create_promise::<()>();
    let o = order.clone();
    p.add_done_callback(move |lp, _| {
        assert!(lp.is_running());
        let o2 = o.clone();
        lp.call_soon(move |_| o2.push("scheduled by the callback"));
        o.push("callback");
    });
    p.set_result(()).unwrap();
    run_briefly(&lp);
    run_briefly(&lp);
    assert_eq!(order.get(), vec!["callback", "scheduled by the callback"]);
}

/// A result that is not `Clone` is still delivered to callbacks (by reference).
#[test]
fn non_clone_result_reaches_callbacks() {
    struct NotClone(u32);
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<NotClone>();
    let seen = Events::new();
    for _ in 0..2 {
        let s = seen.clone();
        p.add_done_callback(move |_, r| s.push(r.as_ref().map(|v| v.0).ok()));
    }
    p.set_result(NotClone(9)).unwrap();
    run_briefly(&lp);
    assert_eq!(seen.get(), vec![Some(9), Some(9)]);
    assert_eq!(p.result().unwrap().as_ref().unwrap().0, 9);
}

/// Several tasks awaiting clones of one promise all get (a clone of) the value.
#[test]
fn await_from_several_tasks() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<String>();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let p = p.clone();
            lp.create_task(async move { (i, p.await) })
        })
        .collect();
    let setter = p.clone();
    lp.call_later(Duration::from_millis(1), move |_| {
        setter.set_result("shared".to_owned()).unwrap()
    });
    let results = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
        .unwrap();
    assert_eq!(
        results,
        (0..4)
            .map(|i| (i, Ok("shared".to_owned())))
            .collect::<Vec<_>>()
    );
}

/// Awaiting twice (from the same task) yields the value twice.
#[test]
fn await_done_promise_twice() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    p.set_result(3).unwrap();
    let out = lp
        .run_until_complete(async move {
            let a = p.clone().await;
            let b = p.await;
            (a, b)
        })
        .unwrap();
    assert_eq!(out, (Ok(3), Ok(3)));
}

#[test]
fn awaiting_a_cancelled_promise_gives_cancelled() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    let waiter = lp.create_task(p.clone()); // a task awaiting the promise
    let c = p.clone();
    lp.call_soon(move |_| {
        assert!(c.cancel());
    });
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    let r = lp.run_until_complete(waiter).unwrap();
    assert!(!dog.fired());
    assert_eq!(r.unwrap(), Err(Cancelled));
}

#[test]
fn run_until_complete_of_an_already_cancelled_promise() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    p.cancel();
    assert_eq!(lp.run_until_complete(p).unwrap(), Err(Cancelled));
}

/// asyncio: `run_until_complete(fut)` stops from a done-callback added after the
/// user's, so callbacks added beforehand have run when it returns.
#[test]
fn run_until_complete_runs_done_callbacks_added_beforehand() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    let seen = Events::new();
    let s = seen.clone();
    p.add_done_callback(move |_, r| s.push(*r));
    let setter = p.clone();
    lp.call_soon(move |_| setter.set_result(8).unwrap());
    assert_eq!(lp.run_until_complete(p).unwrap(), Ok(8));
    assert_eq!(seen.get(), vec![Ok(8)]);
}

/// The same when the promise was already completed before the run started.
#[test]
fn run_until_complete_of_a_done_promise_runs_its_pending_callbacks() {
    let lp = Loop::new().unwrap();
    let p = lp.create_promise::<u32>();
    let seen = Events::new();
    let s = seen.clone();
    p.add_done_callback(move |_, r| s.push(*r));
    p.set_result(4).unwrap();
    assert_eq!(lp.run_until_complete(p.clone()).unwrap(), Ok(4));
    assert_eq!(seen.get(), vec![Ok(4)]);
}

/// A promise completed after its loop was closed keeps the result; the callbacks
/// cannot run and are dropped (not leaked, not called).
#[test]
fn completing_after_close_drops_callbacks() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let drops = Drops::new();
    let p = lp.create_promise::<u32>();
    let token = drops.token();
    let called = Events::new();
    let c = called.clone();
    p.add_done_callback(move |_, _| {
        token.hold();
        c.push(());
    });
    lp.close().unwrap();
    assert_eq!(p.set_result(1), Ok(()));
    assert!(p.is_done());
    assert_eq!(drops.dropped(), 1, "the callback is dropped, not kept");
    assert!(called.is_empty());
    assert!(reports.is_empty());
}

#[test]
#[should_panic(expected = "closed")]
fn create_promise_on_a_closed_loop_panics() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    let _p = lp.create_promise::<()>();
}
