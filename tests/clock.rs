//! `Clock::manual()`: virtual time for tests. Long timers fire at once in wall time
//! while the loop's clock advances by exactly their delay.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use evloop::{Clock, Loop};
use util::{Events, Watchdog};

const HOUR: Duration = Duration::from_secs(3600);

fn manual_loop() -> (Loop, Clock) {
    let clock = Clock::manual();
    let lp = Loop::builder().clock(clock.clone()).build().unwrap();
    (lp, clock)
}

#[test]
fn a_one_hour_timer_fires_at_once_and_time_advances_exactly_one_hour() {
    let (lp, _clock) = manual_loop();
    let start = lp.time();
    let wall = Instant::now();
    let fired_at = Events::new();
    let f = fired_at.clone();
    lp.call_later(HOUR, move |lp| {
        f.push(lp.time());
        lp.stop();
    });
    lp.run_forever().unwrap();
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "{:?}",
        wall.elapsed()
    );
    assert_eq!(fired_at.get(), [start + HOUR]);
    assert_eq!(lp.time() - start, HOUR);
}

#[test]
fn timers_fire_at_their_exact_virtual_deadlines_in_order() {
    let (lp, _clock) = manual_loop();
    let start = lp.time();
    let fired = Events::new();
    for (name, d) in [("c", 3 * HOUR), ("a", HOUR), ("b", 2 * HOUR)] {
        let f = fired.clone();
        lp.call_later(d, move |lp| f.push((name, lp.time() - start)));
    }
    lp.call_later(4 * HOUR, |lp| lp.stop());
    lp.run_forever().unwrap();
    assert_eq!(fired.get(), [("a", HOUR), ("b", 2 * HOUR), ("c", 3 * HOUR)]);
    assert_eq!(lp.time() - start, 4 * HOUR);
}

#[test]
fn manual_time_stands_still_until_advanced() {
    let (lp, clock) = manual_loop();
    let t0 = lp.time();
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(lp.time(), t0);
    clock.advance(Duration::from_secs(5));
    assert_eq!(lp.time(), t0 + Duration::from_secs(5));
    assert_eq!(clock.now(), lp.time());
}

#[test]
fn advancing_makes_due_timers_run() {
    let (lp, clock) = manual_loop();
    let start = lp.time();
    let fired = Events::new();
    let f = fired.clone();
    lp.call_later(Duration::from_secs(10), move |_| f.push("ten"));
    let f = fired.clone();
    lp.call_later(Duration::from_secs(20), move |_| f.push("twenty"));
    clock.advance(Duration::from_secs(15));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(fired.get(), ["ten"], "only the timer that is due ran");
    assert_eq!(lp.time() - start, Duration::from_secs(15));
}

#[test]
fn ready_callbacks_do_not_advance_virtual_time() {
    let (lp, _clock) = manual_loop();
    let t0 = lp.time();
    let seen = Events::new();
    let s = seen.clone();
    lp.call_later(HOUR, |_| {});
    lp.call_soon(move |lp| s.push(lp.time()));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(seen.get(), [t0], "a ready callback runs before time jumps");
}

#[test]
fn threadsafe_calls_and_manual_time() {
    let (lp, _clock) = manual_loop();
    let remote = lp.remote();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    std::thread::spawn(move || {
        remote
            .call_soon_threadsafe(move |lp| {
                r.store(true, Ordering::SeqCst);
                lp.stop();
            })
            .unwrap();
    })
    .join()
    .unwrap();
    let dog = Watchdog::new(&lp, 24 * HOUR);
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert!(ran.load(Ordering::SeqCst));
}

#[test]
#[should_panic(expected = "manual")]
fn advancing_the_system_clock_panics() {
    Clock::system().advance(Duration::from_secs(1));
}

#[test]
fn the_system_clock_is_monotonic_time() {
    let lp = Loop::new().unwrap();
    let before = Instant::now();
    let t = lp.time();
    let after = Instant::now();
    assert!(before <= t && t <= after);
}

/// With auto-advance off, a loop waiting for a virtual timer sleeps until another
/// thread advances the clock, and then wakes.
#[test]
fn advance_from_another_thread_wakes_a_waiting_loop() {
    let (lp, clock) = manual_loop();
    clock.set_auto_advance(false);
    let start = lp.time();
    let fired_at = Events::new();
    let f = fired_at.clone();
    lp.call_later(HOUR, move |lp| {
        f.push(lp.time() - start);
        lp.stop();
    });
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    lp.call_soon(move |_| started_tx.send(()).unwrap());
    let c = clock.clone();
    let advancer = std::thread::spawn(move || {
        started_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        c.advance(HOUR);
    });
    let wall = Instant::now();
    lp.run_forever().unwrap();
    advancer.join().unwrap();
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "{:?}",
        wall.elapsed()
    );
    assert_eq!(fired_at.get(), [HOUR]);
}

/// With auto-advance off, a timer made due by `advance` is due: `next_timeout()` is
/// zero, as "what `run_once(None)` would block for".
#[test]
fn next_timeout_is_zero_for_a_timer_made_due_by_advance() {
    let (lp, clock) = manual_loop();
    clock.set_auto_advance(false);
    lp.call_later(Duration::from_secs(10), |_| {});
    clock.advance(Duration::from_secs(10));
    assert_eq!(lp.next_timeout(), Some(Duration::ZERO));
}

/// With auto-advance off, a callback advances the clock past a timer's deadline: the
/// next iteration must run the timer rather than block waiting for a wake-up.
#[test]
fn a_timer_made_due_by_advance_from_a_callback_runs_without_blocking() {
    let (lp, clock) = manual_loop();
    clock.set_auto_advance(false);
    let fired = Events::new();
    let f = fired.clone();
    lp.call_later(HOUR, move |_| f.push("timer"));
    let c = clock.clone();
    lp.call_soon(move |_| c.advance(HOUR));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let start = Instant::now();
    lp.run_once(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(fired.get(), ["timer"]);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "blocked {:?} with a due timer",
        start.elapsed()
    );
}

/// Far enough ahead to be past any clock's range (about 438 years).
const MILLENNIUM: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

/// Runs `lp` until another thread stops it, `after` from now: a loop left with
/// nothing but timers that never come due waits for I/O instead of jumping.
fn run_until_stopped_from_another_thread(lp: &Loop, after: Duration) {
    let remote = lp.remote();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(after);
        remote.stop();
    });
    lp.run_forever().unwrap();
    stopper.join().unwrap();
}

/// Issue 8: auto-advance on an idle loop used to jump ~438 years to fire
/// `call_later(Duration::MAX)`, after which every timer saturated and was due at once.
#[test]
fn a_timer_beyond_the_clocks_range_never_fires_nor_moves_virtual_time() {
    let (lp, _clock) = manual_loop();
    let start = lp.time();
    let ran = util::Counter::new();
    let r = ran.clone();
    let never = lp.call_later(Duration::MAX, move |_| r.inc());
    let r = ran.clone();
    lp.call_at(start + MILLENNIUM, move |_| r.inc());
    assert_eq!(lp.next_timeout(), None, "nothing will ever be due");
    run_until_stopped_from_another_thread(&lp, Duration::from_millis(30));
    assert_eq!(ran.get(), 0);
    assert_eq!(lp.time(), start, "virtual time stood still");
    assert!(!never.is_cancelled());

    // Later timers keep their meaning: one second is one virtual second.
    let fired_at = Events::new();
    let f = fired_at.clone();
    lp.call_later(Duration::from_secs(1), move |lp| {
        f.push(lp.time() - start);
        lp.stop();
    });
    lp.run_forever().unwrap();
    assert_eq!(fired_at.get(), [Duration::from_secs(1)]);
    assert_eq!(ran.get(), 0);
    never.cancel();
    assert!(never.is_cancelled());
}

#[test]
fn advancing_past_the_clocks_range_stops_at_its_end() {
    let (lp, clock) = manual_loop();
    clock.set_auto_advance(false);
    let start = lp.time();
    let fired = Events::new();
    let f = fired.clone();
    lp.call_later(HOUR, move |_| f.push("hour"));
    let f = fired.clone();
    lp.call_later(Duration::MAX, move |_| f.push("never"));
    clock.advance(Duration::MAX);
    clock.advance(Duration::MAX); // no overflow
    let end = lp.time();
    assert!(end - start > Duration::from_secs(400 * 365 * 24 * 3600));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(fired.get(), ["hour"]);

    // At the end of the range a zero delay is still due; any other is beyond it.
    let f = fired.clone();
    lp.call_later(Duration::ZERO, move |_| f.push("zero"));
    let f = fired.clone();
    lp.call_later(Duration::from_secs(1), move |_| f.push("one second"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(fired.get(), ["hour", "zero"]);
    assert_eq!(lp.time(), end);
    assert_eq!(lp.next_timeout(), None);
}

#[test]
fn sleep_and_timeout_of_duration_max_wait_for_ever_on_a_manual_clock() {
    let (lp, _clock) = manual_loop();
    let start = lp.time();
    let (a, b) = util::socketpair();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&b);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        util::send(&a, b"x");
        a
    });
    let out = lp
        .run_until_complete(async move {
            // No deadline: the loop waits for the fd instead of jumping to "never".
            let io = evloop::timeout(Duration::MAX, evloop::net::readable(fd)).await;
            let at_io = evloop::Loop::current().unwrap().time();
            // A sleep that never ends loses to any real deadline, exactly on time.
            let slept = evloop::timeout(HOUR, evloop::sleep(Duration::MAX)).await;
            let mut every = evloop::interval(Duration::MAX);
            every.tick().await;
            let second_tick = evloop::timeout(HOUR, every.tick()).await;
            (io.map(|r| r.is_ok()), at_io, slept, second_tick.is_err())
        })
        .unwrap();
    drop(writer.join().unwrap());
    drop(b);
    assert_eq!(out.0, Ok(true));
    assert_eq!(
        out.1, start,
        "virtual time stood still while waiting for I/O"
    );
    assert_eq!(out.2, Err(evloop::TimeoutError));
    assert!(out.3, "an interval of Duration::MAX ticks once");
    assert_eq!(lp.time() - start, 2 * HOUR);
}

#[test]
fn a_timer_beyond_the_range_on_the_system_clock_never_wakes_the_loop() {
    let lp = Loop::new().unwrap();
    let ran = util::Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::MAX, move |_| r.inc());
    let r = ran.clone();
    lp.call_at(lp.time() + MILLENNIUM, move |_| r.inc());
    assert_eq!(lp.next_timeout(), None);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    // The timerfd is left disarmed: the loop's fd does not become readable.
    assert!(!util::poll_readable(
        lp.as_raw_fd(),
        Duration::from_millis(30)
    ));
    run_until_stopped_from_another_thread(&lp, Duration::from_millis(30));
    assert_eq!(ran.get(), 0);
    assert_eq!(lp.next_timeout(), None);
}
