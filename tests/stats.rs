//! `Loop::stats()`: each counter checked against counted work.

mod util;

use std::thread;
use std::time::Duration;

use evloop::Loop;

#[test]
fn callbacks_and_iterations_are_counted() {
    let lp = Loop::new().unwrap();
    for _ in 0..10 {
        lp.call_soon(|_| {});
    }
    let cancelled = lp.call_soon(|_| {});
    cancelled.cancel();
    lp.stop();
    lp.run_forever().unwrap();
    let s = lp.stats();
    assert_eq!(s.callbacks_run, 10, "cancelled callbacks are not counted");
    assert_eq!(s.iterations, 1);
    assert_eq!(s.ready_high_water, 11);
}

#[test]
fn timers_scheduled_fired_and_cancelled() {
    let lp = Loop::new().unwrap();
    let mut handles = Vec::new();
    for i in 0..6u64 {
        handles.push(lp.call_later(Duration::from_millis(i), |_| {}));
    }
    handles[1].cancel();
    handles[3].cancel();
    lp.call_later(Duration::from_millis(10), |lp| lp.stop());
    lp.run_forever().unwrap();
    let s = lp.stats();
    assert_eq!(s.timers_scheduled, 7);
    assert_eq!(s.timers_cancelled, 2);
    assert_eq!(s.timers_fired, 5);
}

#[test]
fn remote_calls_and_wakeups() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        for _ in 0..4 {
            remote.call_soon_threadsafe(|_| {}).unwrap();
        }
        remote.stop();
    });
    lp.run_forever().unwrap();
    t.join().unwrap();
    let s = lp.stats();
    assert_eq!(s.remote_calls, 5, "four calls and the stop");
    assert!(s.wakeups >= 1, "the sleeping loop was woken: {s:?}");
    assert!(s.polls >= 1);
    assert!(
        s.time_blocked >= Duration::from_millis(10),
        "the loop slept while waiting: {s:?}"
    );
}

#[test]
fn longest_callback_needs_debug_mode() {
    let plain = Loop::new().unwrap();
    plain.call_soon(|_| thread::sleep(Duration::from_millis(5)));
    plain.stop();
    plain.run_forever().unwrap();
    assert!(plain.stats().longest_callback.is_none());

    let debug = Loop::builder().debug(true).build().unwrap();
    debug.call_soon(|_| {});
    let line = line!() + 1;
    debug.call_soon(|_| thread::sleep(Duration::from_millis(15)));
    debug.stop();
    debug.run_forever().unwrap();
    let (took, at) = debug
        .stats()
        .longest_callback
        .expect("measured in debug mode");
    assert!(took >= Duration::from_millis(15));
    assert_eq!(at.line(), line);
    assert!(at.file().ends_with("stats.rs"));
}

#[test]
fn busy_time_grows_with_work() {
    let lp = Loop::new().unwrap();
    for _ in 0..3 {
        lp.call_soon(|_| thread::sleep(Duration::from_millis(5)));
    }
    lp.call_soon(|lp| lp.stop());
    lp.run_forever().unwrap();
    let s = lp.stats();
    assert!(s.time_busy >= Duration::from_millis(15), "{s:?}");
}
