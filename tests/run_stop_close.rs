//! Running, stopping and closing a loop: `run_forever`, `run_once`, `stop`,
//! re-entrancy, one running loop per thread, `close` and what a closed loop does.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Error, Loop};
use util::{Counter, Drops, Events, Watchdog, socketpair};

/// A callback that records `name` and, `depth` times over, schedules the next link
/// of a chain with `call_soon`, so that a run that returns after N iterations has
/// recorded exactly N names.
fn chain(lp: &Loop, order: &Events<usize>, depth: usize) {
    let order = order.clone();
    lp.call_soon(move |lp| {
        order.push(depth);
        if depth > 0 {
            chain(lp, &order, depth - 1);
        }
    });
}

/// Stops the loop in the first iteration where `order` holds `n` names (checked once
/// an iteration, after the chain's link): no timer, so a slow machine cannot make the
/// stop come early.
fn stop_when(lp: &Loop, order: &Events<usize>, n: usize) {
    let order = order.clone();
    lp.call_soon(move |lp| {
        if order.len() >= n {
            lp.stop();
        } else {
            stop_when(lp, &order, n);
        }
    });
}

#[test]
fn stop_before_run_forever_runs_exactly_one_iteration() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    chain(&lp, &order, 5);
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(order.get(), [5], "one iteration ran");
    assert!(!lp.is_running());
}

#[test]
fn stop_twice_before_run_forever_still_runs_one_iteration() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    chain(&lp, &order, 5);
    lp.stop();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(order.get(), [5]);
}

#[test]
fn a_stop_is_used_up_by_the_run_it_ends() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    lp.stop();
    lp.run_forever().unwrap();

    // The next run must not stop after one iteration: it runs the whole chain and
    // stops only when told to again.
    chain(&lp, &order, 3);
    stop_when(&lp, &order, 4);
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(order.get(), [3, 2, 1, 0]);
}

#[test]
fn a_pending_stop_is_used_up_by_run_once() {
    let lp = Loop::new().unwrap();
    lp.stop();
    let start = std::time::Instant::now();
    lp.run_once(Some(Duration::from_secs(5))).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "a pending stop makes run_once not block"
    );
    let order = Events::new();
    chain(&lp, &order, 2);
    stop_when(&lp, &order, 3);
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(order.get(), [2, 1, 0]);
}

/// asyncio: `stop()` from a callback lets the current iteration finish (the rest of
/// the callbacks queued for it run), and what it scheduled waits for the next run.
#[test]
fn stop_from_a_callback_finishes_the_iteration() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let o = order.clone();
    lp.call_soon(move |lp| {
        o.push("stopper");
        lp.stop();
        let o2 = o.clone();
        lp.call_soon(move |_| o2.push("next run"));
    });
    let o = order.clone();
    lp.call_soon(move |_| o.push("same iteration"));
    lp.run_forever().unwrap();
    assert_eq!(order.get(), ["stopper", "same iteration"]);

    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(order.get(), ["stopper", "same iteration", "next run"]);
}

#[test]
fn stop_from_a_timer_ends_run_forever() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::from_millis(10), move |lp| {
        r.inc();
        lp.stop();
    });
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(ran.get(), 1);
}

#[test]
fn reentrant_runs_are_refused() {
    let lp = Loop::new().unwrap();
    let results = Rc::new(RefCell::new(Vec::new()));
    let r = results.clone();
    lp.call_soon(move |lp| {
        let mut r = r.borrow_mut();
        r.push(lp.run_forever());
        r.push(lp.run_once(None));
        r.push(lp.run_once(Some(Duration::ZERO)));
    });
    let after = Counter::new();
    let a = after.clone();
    lp.call_soon(move |lp| {
        a.inc();
        assert!(
            lp.is_running(),
            "the refused calls did not end the outer run"
        );
    });
    lp.stop();
    lp.run_forever().unwrap();
    let results = results.borrow();
    assert_eq!(results.len(), 3);
    for r in results.iter() {
        assert!(matches!(r, Err(Error::AlreadyRunning)), "{r:?}");
    }
    assert_eq!(after.get(), 1);
    assert!(!lp.is_running());
}

#[test]
fn a_second_loop_cannot_run_on_a_thread_where_one_runs() {
    let lp1 = Loop::new().unwrap();
    let lp2 = Loop::new().unwrap();
    let ran2 = Counter::new();
    let r = ran2.clone();
    lp2.call_soon(move |_| r.inc());

    let results = Rc::new(RefCell::new(Vec::new()));
    let (res, l2) = (results.clone(), lp2.clone());
    lp1.call_soon(move |_| {
        let mut res = res.borrow_mut();
        res.push(l2.run_once(Some(Duration::ZERO)));
        res.push(l2.run_forever());
        assert!(!l2.is_running());
    });
    lp1.stop();
    lp1.run_forever().unwrap();
    for r in results.borrow().iter() {
        assert!(matches!(r, Err(Error::AlreadyRunning)), "{r:?}");
    }
    assert_eq!(ran2.get(), 0, "lp2 ran nothing while lp1 was running");

    // Once lp1 has returned, lp2 may run.
    lp2.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran2.get(), 1);
}

#[test]
fn loops_on_different_threads_run_independently() {
    let other = std::thread::spawn(|| {
        let lp = Loop::new().unwrap();
        let ran = Counter::new();
        let r = ran.clone();
        lp.call_later(Duration::from_millis(50), move |lp| {
            r.inc();
            lp.stop();
        });
        lp.run_forever().unwrap();
        ran.get()
    });
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::from_millis(10), move |lp| {
        r.inc();
        lp.stop();
    });
    lp.run_forever().unwrap();
    assert_eq!(ran.get(), 1);
    assert_eq!(other.join().unwrap(), 1);
}

#[test]
fn current_and_is_running() {
    let lp = Loop::new().unwrap();
    assert!(Loop::current().is_none());
    assert!(!lp.is_running());
    let seen = Rc::new(RefCell::new(None));
    let (s, remote) = (seen.clone(), lp.remote());
    lp.call_soon(move |lp| {
        let current = Loop::current().expect("a loop runs on this thread");
        *s.borrow_mut() = Some((current.remote().same_loop(&remote), lp.is_running()));
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*seen.borrow(), Some((true, true)));
    assert!(Loop::current().is_none());
    assert!(!lp.is_running());
}

#[test]
fn clones_are_the_same_loop() {
    let lp = Loop::new().unwrap();
    let clone = lp.clone();
    let ran = Counter::new();
    let r = ran.clone();
    clone.call_soon(move |_| r.inc());
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), 1);
    clone.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn close_while_running_is_an_error_and_the_loop_goes_on() {
    let lp = Loop::new().unwrap();
    let result = Rc::new(RefCell::new(None));
    let r = result.clone();
    lp.call_soon(move |lp| {
        *r.borrow_mut() = Some(lp.close());
        assert!(!lp.is_closed());
    });
    let after = Counter::new();
    let a = after.clone();
    lp.call_soon(move |lp| {
        a.inc();
        lp.call_soon(|lp| lp.stop());
    });
    lp.run_forever().unwrap();
    assert!(matches!(*result.borrow(), Some(Err(Error::AlreadyRunning))));
    assert_eq!(after.get(), 1);
    assert!(!lp.is_closed());
    lp.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn close_drops_every_pending_closure() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();

    let t = drops.token();
    let soon = lp.call_soon(move |_| t.hold());
    let t = drops.token();
    let timer = lp.call_later(Duration::from_secs(60), move |_| t.hold());
    let t = drops.token();
    let due = lp.call_later(Duration::ZERO, move |_| t.hold());

    let (a, b) = socketpair();
    let (c, _d) = socketpair();
    use std::os::fd::AsRawFd;
    let t = drops.token();
    lp.add_reader(a.as_raw_fd(), move |_| t.hold()).unwrap();
    let t = drops.token();
    lp.add_writer(a.as_raw_fd(), move |_| t.hold()).unwrap();
    let t = drops.token();
    lp.add_writer(c.as_raw_fd(), move |_| t.hold()).unwrap();

    // Threadsafe calls queued from another thread, never drained by a run.
    let remote = lp.remote();
    let tokens: Vec<_> = (0..3).map(|_| drops.token()).collect();
    let handles = std::thread::spawn(move || {
        tokens
            .into_iter()
            .map(|t| remote.call_soon_threadsafe(move |_| t.hold()).unwrap())
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    // And one sent from the loop's own thread.
    let t = drops.token();
    let local = lp.remote().call_soon_threadsafe(move |_| t.hold()).unwrap();

    assert_eq!(drops.dropped(), 0);
    lp.close().unwrap();
    assert_eq!(drops.alive(), 0, "close() dropped every pending closure");
    assert_eq!(drops.made(), 10);
    for h in handles.iter().chain([&local]) {
        assert!(h.is_cancelled(), "a call dropped unrun reports cancelled");
    }
    // Handles of dropped callbacks are harmless.
    soon.cancel();
    timer.cancel();
    due.cancel();
    drop(b);
}

/// After `close()`, every handle of a callback that never ran reports cancelled, the
/// same for `Handle`, `TimerHandle` and `RemoteHandle`; handles of callbacks that ran
/// keep reporting false. Dropping the loop afterwards changes nothing.
#[test]
fn after_close_handles_of_dropped_callbacks_report_cancelled_and_of_run_ones_not() {
    use std::os::fd::AsRawFd;
    let lp = Loop::new().unwrap();
    let ran_soon = lp.call_soon(|_| {});
    let ran_timer = lp.call_later(Duration::ZERO, |_| {});
    let ran_remote = lp.remote().call_soon_threadsafe(|_| {}).unwrap();
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.call_later(Duration::from_millis(1), |lp| lp.stop());
    lp.run_forever().unwrap();
    assert!(!dog.fired());

    let soon = lp.call_soon(|_| {});
    let timer = lp.call_later(Duration::from_secs(60), |_| {});
    let at = lp.call_at(lp.time(), |_| {});
    let remote = lp.remote().call_soon_threadsafe(|_| {}).unwrap();
    let (a, _b) = socketpair();
    let reader = lp.add_reader(a.as_raw_fd(), |_| {}).unwrap();
    let cancelled = lp.call_soon(|_| {});
    cancelled.cancel();
    for (h, what) in [(&soon, "call_soon"), (&cancelled, "cancelled")] {
        assert_eq!(h.is_cancelled(), what == "cancelled", "{what} before close");
    }
    assert!(!timer.is_cancelled() && !at.is_cancelled() && !remote.is_cancelled());

    lp.close().unwrap();
    let check = |after: &str| {
        assert!(soon.is_cancelled(), "call_soon dropped by close ({after})");
        assert!(
            timer.is_cancelled(),
            "call_later dropped by close ({after})"
        );
        assert!(at.is_cancelled(), "call_at dropped by close ({after})");
        assert!(remote.is_cancelled(), "threadsafe call dropped ({after})");
        assert!(reader.is_cancelled(), "reader dropped by close ({after})");
        assert!(cancelled.is_cancelled());
        assert!(!ran_soon.is_cancelled(), "a call_soon that ran ({after})");
        assert!(!ran_timer.is_cancelled(), "a timer that ran ({after})");
        assert!(
            !ran_remote.is_cancelled(),
            "a threadsafe call that ran ({after})"
        );
    };
    check("loop closed");
    drop(dog);
    drop(lp);
    check("loop dropped");
}

/// A loop dropped without `close()` drops its pending callbacks too: their handles
/// report cancelled, those of callbacks that ran do not.
#[test]
fn after_the_loop_is_dropped_handles_of_dropped_callbacks_report_cancelled() {
    let lp = Loop::new().unwrap();
    let ran = lp.call_soon(|_| {});
    let ran_timer = lp.call_later(Duration::ZERO, |_| {});
    lp.call_later(Duration::from_millis(1), |lp| lp.stop());
    lp.run_forever().unwrap();
    let soon = lp.call_soon(|_| {});
    let timer = lp.call_later(Duration::from_secs(60), |_| {});
    drop(lp);
    assert!(soon.is_cancelled() && timer.is_cancelled());
    assert!(!ran.is_cancelled() && !ran_timer.is_cancelled());
}

#[test]
fn close_never_closes_the_fds_it_watches() {
    use std::os::fd::AsRawFd;
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    lp.add_reader(a.as_raw_fd(), |_| {}).unwrap();
    lp.add_writer(b.as_raw_fd(), |_| {}).unwrap();
    lp.close().unwrap();
    drop(lp);
    assert!(util::fd_is_open(a.as_raw_fd()));
    assert!(util::fd_is_open(b.as_raw_fd()));
    util::send(&b, b"still works");
    assert_eq!(util::recv(&a, 64).unwrap(), b"still works");
}

#[test]
fn close_twice_is_fine() {
    let lp = Loop::new().unwrap();
    assert!(!lp.is_closed());
    lp.close().unwrap();
    assert!(lp.is_closed());
    lp.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn a_closed_loop_refuses_to_run() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    assert!(matches!(lp.run_forever(), Err(Error::Closed)));
    assert!(matches!(lp.run_once(None), Err(Error::Closed)));
    assert!(matches!(
        lp.run_once(Some(Duration::ZERO)),
        Err(Error::Closed)
    ));
}

#[test]
fn on_a_closed_loop_io_registration_fails_and_stop_does_nothing() {
    use std::os::fd::AsRawFd;
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    lp.add_reader(fd, |_| {}).unwrap();
    lp.close().unwrap();

    let drops = Drops::new();
    let t = drops.token();
    assert!(lp.add_reader(fd, move |_| t.hold()).is_err());
    let t = drops.token();
    assert!(lp.add_writer(fd, move |_| t.hold()).is_err());
    assert_eq!(drops.alive(), 0, "refused closures are dropped");
    assert!(!lp.remove_reader(fd));
    assert!(!lp.remove_writer(fd));
    lp.stop();
    assert!(!lp.is_running());
    assert!(lp.is_closed());
    assert!(matches!(lp.run_forever(), Err(Error::Closed)));
}

#[test]
#[should_panic(expected = "closed loop")]
fn call_soon_on_a_closed_loop_panics() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    lp.call_soon(|_| {});
}

#[test]
#[should_panic(expected = "closed loop")]
fn call_later_on_a_closed_loop_panics() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    lp.call_later(Duration::from_millis(1), |_| {});
}

#[test]
#[should_panic(expected = "closed loop")]
fn call_at_on_a_closed_loop_panics() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    let when = lp.time();
    lp.call_at(when, |_| {});
}

#[test]
fn errors_display_and_are_std_errors() {
    fn is_error<E: std::error::Error + 'static>(_: &E) {}
    let all = [
        Error::Closed,
        Error::Stopped,
        Error::AlreadyRunning,
        Error::Io(std::io::Error::other("x")),
    ];
    for e in &all {
        is_error(e);
        assert!(!e.to_string().is_empty());
    }
    assert!(std::error::Error::source(&all[3]).is_some());
}

/// asyncio's `test_run_forever_pre_stopped`: a pre-stopped run polls without blocking,
/// even with nothing to do but a far timer.
#[test]
fn pre_stopped_run_forever_does_not_block() {
    let lp = Loop::new().unwrap();
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.stop();
    let start = std::time::Instant::now();
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
