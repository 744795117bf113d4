//! A calloop `EventLoop` nested in evloop (the `Nested` of
//! `examples/host_calloop.rs`, used in process), and the example run as a process:
//! calloop's timers fire on time (also rescheduled and added from inside calloop),
//! and its channels are served from another thread.
//!
//! Every run has an evloop watchdog timer that stops it: a stall fails the test.

#[path = "../examples/host_calloop.rs"]
#[allow(dead_code)]
mod host_calloop;

#[path = "util/example.rs"]
mod example;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use calloop::channel::{self, Event};
use calloop::timer::{TimeoutAction, Timer};
use evloop::Loop;
use host_calloop::Nested;

const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `lp` until something calls `stop`, or the watchdog does.
fn run(lp: &Loop) -> Duration {
    let start = Instant::now();
    let watchdog = lp.call_later(WATCHDOG, |lp| lp.stop());
    lp.run_forever().unwrap();
    watchdog.cancel();
    start.elapsed()
}

#[test]
fn a_calloop_timer_fires_at_its_deadline() {
    let lp = Loop::new().unwrap();
    let nested = Nested::new(&lp).unwrap();
    let fired_at = Rc::new(Cell::new(None));
    let f = fired_at.clone();
    let start = Instant::now();
    nested.insert_timer(
        &lp,
        Timer::from_duration(Duration::from_millis(30)),
        move |_, ctx| {
            f.set(Some(start.elapsed()));
            ctx.lp.stop();
            TimeoutAction::Drop
        },
    );
    run(&lp);
    let at = fired_at.get().expect("the calloop timer never fired");
    assert!(at >= Duration::from_millis(30), "fired after {at:?}");
    assert!(at < Duration::from_secs(5), "fired after {at:?}");
    nested.detach(&lp);
}

#[test]
fn a_rescheduled_calloop_timer_fires_each_time() {
    let lp = Loop::new().unwrap();
    let nested = Nested::new(&lp).unwrap();
    let fires = Rc::new(RefCell::new(Vec::new()));
    let f = fires.clone();
    let start = Instant::now();
    nested.insert_timer(&lp, Timer::immediate(), move |_, ctx| {
        f.borrow_mut().push(start.elapsed());
        if f.borrow().len() == 4 {
            ctx.lp.stop();
            TimeoutAction::Drop
        } else if f.borrow().len() % 2 == 0 {
            TimeoutAction::ToInstant(Instant::now() + Duration::from_millis(10))
        } else {
            TimeoutAction::ToDuration(Duration::from_millis(10))
        }
    });
    run(&lp);
    let fires = fires.borrow();
    assert_eq!(fires.len(), 4, "fired at {fires:?}");
    for pair in fires.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(10), "{fires:?}");
    }
}

#[test]
fn a_calloop_timer_added_inside_calloop_fires() {
    let lp = Loop::new().unwrap();
    let nested = Nested::new(&lp).unwrap();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    nested.insert_timer(&lp, Timer::immediate(), move |_, ctx| {
        let f = f.clone();
        ctx.insert_timer(
            Timer::from_duration(Duration::from_millis(20)),
            move |_, ctx| {
                f.set(true);
                ctx.lp.stop();
                TimeoutAction::Drop
            },
        );
        TimeoutAction::Drop
    });
    run(&lp);
    assert!(fired.get(), "the inner calloop timer never fired");
}

#[test]
fn a_calloop_channel_is_served_from_another_thread() {
    let lp = Loop::new().unwrap();
    let nested = Nested::new(&lp).unwrap();
    let (tx, rx) = channel::channel::<u32>();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    nested
        .handle()
        .insert_source(rx, move |event, _, ctx| match event {
            Event::Msg(n) => g.borrow_mut().push(n),
            Event::Closed => ctx.lp.stop(),
        })
        .unwrap();
    let sender = thread::spawn(move || {
        for n in 0..50 {
            if n % 10 == 0 {
                thread::sleep(Duration::from_millis(5));
            }
            tx.send(n).unwrap();
        }
    });
    run(&lp);
    sender.join().unwrap();
    assert_eq!(*got.borrow(), (0..50).collect::<Vec<_>>());
}

#[test]
fn example_host_calloop_serves_everything() {
    let (stdout, _) = example::run_example("host_calloop");
    for line in [
        "calloop timer fired (3 of 3)",
        "calloop channel: message 3",
        "calloop channel: closed",
        "calloop timer added by message 2 fired",
        "evloop timer fired",
        "all served",
    ] {
        example::assert_has(&stdout, line);
    }
}
