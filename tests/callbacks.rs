//! `call_soon` and `Handle`: FIFO order, what one iteration runs, cancellation.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Handle, Loop};
use util::{Counter, Drops, Events};

#[test]
fn call_soon_is_fifo() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    for i in 0..100 {
        let order = order.clone();
        lp.call_soon(move |_| order.push(i));
    }
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(order.get(), (0..100).collect::<Vec<_>>());
}

#[test]
fn each_callback_runs_exactly_once() {
    let lp = Loop::new().unwrap();
    let calls = Counter::new();
    for _ in 0..10 {
        let c = calls.clone();
        lp.call_soon(move |_| c.inc());
    }
    for _ in 0..5 {
        lp.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(calls.get(), 10);
}

#[test]
fn callback_gets_the_loop_it_runs_on() {
    let lp = Loop::new().unwrap();
    let same = Rc::new(RefCell::new(None));
    let s = same.clone();
    let remote = lp.remote();
    lp.call_soon(move |lp| {
        *s.borrow_mut() = Some(lp.remote().same_loop(&remote) && lp.is_running());
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*same.borrow(), Some(true));
}

/// asyncio's `_run_once`: only the callbacks queued when the run phase begins run in
/// that iteration; what they schedule waits for the next one.
#[test]
fn callbacks_scheduled_while_running_wait_for_the_next_iteration() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let o = order.clone();
    lp.call_soon(move |lp| {
        o.push("a");
        let o2 = o.clone();
        lp.call_soon(move |lp| {
            o2.push("c");
            let o3 = o2.clone();
            lp.call_soon(move |_| o3.push("d"));
        });
    });
    let o = order.clone();
    lp.call_soon(move |_| o.push("b"));

    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(order.get(), ["a", "b"]);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(order.get(), ["a", "b", "c"]);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(order.get(), ["a", "b", "c", "d"]);
}

#[test]
fn cancel_before_run_means_never_runs_and_drops_the_closure_at_once() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let ran = Counter::new();
    let (t, r) = (drops.token(), ran.clone());
    let h = lp.call_soon(move |_| {
        t.hold();
        r.inc();
    });
    assert!(!h.is_cancelled());
    assert_eq!(drops.dropped(), 0);
    h.cancel();
    assert!(h.is_cancelled());
    assert_eq!(drops.dropped(), 1, "cancel() drops the closure at once");
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(ran.get(), 0);
}

#[test]
fn cancel_twice_is_a_no_op_and_touches_no_other_callback() {
    let lp = Loop::new().unwrap();
    let ran = Events::new();
    let r = ran.clone();
    let h = lp.call_soon(move |_| r.push("cancelled"));
    h.cancel();
    // The freed slot is reused by the next callback: a second cancel of the old
    // handle must not reach it.
    let r = ran.clone();
    let _h2 = lp.call_soon(move |_| r.push("second"));
    h.cancel();
    assert!(h.is_cancelled());
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), ["second"]);
}

#[test]
fn cancel_after_run_touches_no_other_callback() {
    let lp = Loop::new().unwrap();
    let ran = Events::new();
    let r = ran.clone();
    let h = lp.call_soon(move |_| r.push("first"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let r = ran.clone();
    let _h2 = lp.call_soon(move |_| r.push("second"));
    h.cancel();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), ["first", "second"]);
}

#[test]
fn dropping_a_handle_does_not_cancel() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    let h = lp.call_soon(move |_| r.inc());
    drop(h);
    let r = ran.clone();
    drop(lp.call_later(Duration::ZERO, move |_| r.inc()));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), 2);
}

#[test]
fn cancel_from_another_callback_of_the_same_iteration() {
    let lp = Loop::new().unwrap();
    let ran = Events::new();
    let victim: Rc<RefCell<Option<Handle>>> = Rc::new(RefCell::new(None));
    let v = victim.clone();
    let r = ran.clone();
    lp.call_soon(move |_| {
        r.push("killer");
        v.borrow().as_ref().unwrap().cancel();
    });
    let drops = Drops::new();
    let (t, r) = (drops.token(), ran.clone());
    *victim.borrow_mut() = Some(lp.call_soon(move |_| {
        t.hold();
        r.push("victim");
    }));
    let r = ran.clone();
    lp.call_soon(move |_| r.push("after"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), ["killer", "after"]);
    assert_eq!(drops.dropped(), 1);
    assert!(victim.borrow().as_ref().unwrap().is_cancelled());
}

#[test]
fn a_callback_cancelling_its_own_handle_while_running_is_harmless() {
    let lp = Loop::new().unwrap();
    let me: Rc<RefCell<Option<Handle>>> = Rc::new(RefCell::new(None));
    let ran = Events::new();
    let (m, r) = (me.clone(), ran.clone());
    *me.borrow_mut() = Some(lp.call_soon(move |_| {
        r.push("self");
        m.borrow().as_ref().unwrap().cancel();
    }));
    let r = ran.clone();
    lp.call_soon(move |_| r.push("next"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), ["self", "next"]);
}

#[test]
fn handle_outliving_its_loop_can_still_be_cancelled() {
    let drops = Drops::new();
    let h = {
        let lp = Loop::new().unwrap();
        let t = drops.token();
        lp.call_soon(move |_| t.hold())
    };
    assert_eq!(
        drops.dropped(),
        1,
        "dropping the loop dropped the pending closure"
    );
    h.cancel();
    h.cancel();
    assert!(h.is_cancelled());
}

#[test]
fn closure_that_ran_is_dropped() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let t = drops.token();
    lp.call_soon(move |_| t.hold());
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(drops.dropped(), 1);
}

/// Schedules a callback on its loop when dropped: a closure's `Drop` may use the loop.
struct ScheduleOnDrop {
    lp: Loop,
    ran: Counter,
}

impl Drop for ScheduleOnDrop {
    fn drop(&mut self) {
        if !self.lp.is_closed() {
            let r = self.ran.clone();
            self.lp.call_soon(move |_| r.inc());
        }
    }
}

#[test]
fn a_closure_dropped_by_cancel_may_schedule_on_the_loop() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let guard = ScheduleOnDrop {
        lp: lp.clone(),
        ran: ran.clone(),
    };
    let h = lp.call_soon(move |_| drop(guard));
    h.cancel(); // drops the guard, which calls call_soon
    let guard = ScheduleOnDrop {
        lp: lp.clone(),
        ran: ran.clone(),
    };
    let t = lp.call_later(Duration::from_secs(60), move |_| drop(guard));
    t.cancel();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), 2);
}

#[test]
fn a_closure_dropped_after_running_may_schedule_on_the_loop() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let guard = ScheduleOnDrop {
        lp: lp.clone(),
        ran: ran.clone(),
    };
    lp.call_soon(move |_| {
        let _g = &guard;
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), 1);
}
