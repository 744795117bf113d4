//! Done-callbacks (of a `Promise` or a `Task`) that panic in `Drop`, dropped without
//! running: completed on a closed loop, on a loop that is gone, or left pending when
//! the promise itself is dropped. Each panic is caught on its own (handed to the
//! exception handler, or logged when no loop is left) and the other callbacks are
//! still dropped; the process never aborts (a second panic while a `Vec` unwinds would
//! abort it, so every test drops two bombs).
//!
//! Before the fix, the promise tests killed this test binary (exit 134).

use std::cell::RefCell;
use std::rc::Rc;

use evloop::Loop;

#[path = "util/panics.rs"]
mod panics;
use panics::{record_panics, sorted};

/// Panics when dropped; counts its drops first.
struct Bomb(&'static str, Rc<RefCell<usize>>);

impl Bomb {
    fn arm(&self) {}
}

impl Drop for Bomb {
    fn drop(&mut self) {
        *self.1.borrow_mut() += 1;
        panic!("bomb: {}", self.0);
    }
}

/// A promise with two done-callbacks, each carrying a bomb.
fn promise_with_bombs(lp: &Loop, drops: &Rc<RefCell<usize>>) -> evloop::Promise<u32> {
    let p = lp.create_promise::<u32>();
    for name in ["a", "b"] {
        let bomb = Bomb(name, drops.clone());
        p.add_done_callback(move |_, _| bomb.arm());
    }
    p
}

#[test]
fn a_promise_completed_on_a_closed_loop_reports_each_panicking_callback() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let drops = Rc::new(RefCell::new(0));
    let p = promise_with_bombs(&lp, &drops);
    lp.close().unwrap();
    p.set_result(1).unwrap();
    assert_eq!(*drops.borrow(), 2, "both callbacks dropped");
    assert_eq!(sorted(&seen), ["bomb: a", "bomb: b"]);
    assert_eq!(p.result(), Some(&Ok(1)), "the result is recorded");
}

#[test]
fn a_promise_cancelled_after_its_loop_is_gone_drops_each_callback() {
    let lp = Loop::new().unwrap();
    let drops = Rc::new(RefCell::new(0));
    let p = promise_with_bombs(&lp, &drops);
    drop(lp);
    assert!(p.cancel());
    assert_eq!(
        *drops.borrow(),
        2,
        "both callbacks dropped (the panics are logged)"
    );
}

#[test]
fn a_promise_dropped_with_callbacks_pending_reports_each_panicking_callback() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let drops = Rc::new(RefCell::new(0));
    let p = promise_with_bombs(&lp, &drops);
    let other = p.clone();
    drop(p);
    assert_eq!(*drops.borrow(), 0, "a clone still holds the promise");
    drop(other);
    assert_eq!(*drops.borrow(), 2);
    assert_eq!(sorted(&seen), ["bomb: a", "bomb: b"]);
}

#[test]
fn a_promise_dropped_with_callbacks_pending_after_its_loop_is_gone_never_aborts() {
    let lp = Loop::new().unwrap();
    let drops = Rc::new(RefCell::new(0));
    let p = promise_with_bombs(&lp, &drops);
    drop(lp);
    drop(p);
    assert_eq!(*drops.borrow(), 2);
}

#[test]
fn a_removed_promise_callback_panicking_in_drop_is_reported() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let drops = Rc::new(RefCell::new(0));
    let p = lp.create_promise::<u32>();
    let bomb = Bomb("removed", drops.clone());
    let id = p.add_done_callback(move |_, _| bomb.arm());
    assert!(p.remove_done_callback(id));
    assert_eq!(*drops.borrow(), 1);
    assert_eq!(sorted(&seen), ["bomb: removed"]);
}

#[test]
fn task_done_callbacks_added_on_a_closed_loop_are_each_reported() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let drops = Rc::new(RefCell::new(0));
    let task = lp.create_task(async { 7 });
    lp.run_until_complete(async {}).unwrap();
    assert!(task.is_done());
    lp.close().unwrap();
    for name in ["a", "b"] {
        let bomb = Bomb(name, drops.clone());
        task.add_done_callback(move |_, _| bomb.arm());
    }
    assert_eq!(*drops.borrow(), 2);
    assert_eq!(sorted(&seen), ["bomb: a", "bomb: b"]);
}

#[test]
fn task_done_callbacks_added_after_the_loop_is_gone_never_abort() {
    let lp = Loop::new().unwrap();
    let drops = Rc::new(RefCell::new(0));
    let task = lp.create_task(async { 7 });
    lp.run_until_complete(async {}).unwrap();
    assert!(task.is_done());
    drop(lp);
    for name in ["a", "b"] {
        let bomb = Bomb(name, drops.clone());
        task.add_done_callback(move |_, _| bomb.arm());
    }
    assert_eq!(*drops.borrow(), 2);
}

#[test]
fn task_done_callbacks_pending_at_close_are_each_reported() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let drops = Rc::new(RefCell::new(0));
    let task = lp.create_task(std::future::pending::<()>());
    for name in ["a", "b"] {
        let bomb = Bomb(name, drops.clone());
        task.add_done_callback(move |_, _| bomb.arm());
    }
    lp.close().unwrap();
    assert_eq!(*drops.borrow(), 2);
    assert_eq!(sorted(&seen), ["bomb: a", "bomb: b"]);
}

#[test]
fn task_done_callbacks_scheduled_then_closed_are_each_reported() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let drops = Rc::new(RefCell::new(0));
    let task = lp.create_task(async {});
    for name in ["a", "b"] {
        let bomb = Bomb(name, drops.clone());
        task.add_done_callback(move |_, _| bomb.arm());
    }
    // One iteration runs the task's step: it finishes and schedules its callbacks.
    lp.run_once(Some(std::time::Duration::ZERO)).unwrap();
    assert!(task.is_done());
    assert_eq!(*drops.borrow(), 0, "scheduled, not run yet");
    lp.close().unwrap();
    assert_eq!(*drops.borrow(), 2);
    assert_eq!(sorted(&seen), ["bomb: a", "bomb: b"]);
}
