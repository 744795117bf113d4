//! Embedding in a foreign main loop: `as_raw_fd()` readable when the loop has work,
//! `next_timeout()`, and `run_once` with and without a cap.
//!
//! Time bounds are generous (the test machine is shared): they tell "returned about
//! when it should" from "blocked far too long", never measure speed.

mod util;

use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use evloop::Loop;
use util::{Counter, poll_readable, send, socketpair};

const ZERO: Option<Duration> = Some(Duration::ZERO);
const GENEROUS: Duration = Duration::from_secs(2);

#[test]
fn fd_is_readable_when_a_callback_is_ready() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |_| r.inc());
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
}

#[test]
fn fd_is_readable_when_a_callback_scheduled_by_a_callback_waits() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |lp| {
        lp.call_soon(move |_| r.inc());
    });
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 0);
    assert_eq!(lp.next_timeout(), Some(Duration::ZERO));
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
}

#[test]
fn fd_is_readable_when_a_watched_fd_is_ready() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let got = Counter::new();
    let g = got.clone();
    let fd = b.as_raw_fd();
    lp.add_reader(fd, move |lp| {
        util::recv(&b, 64).unwrap();
        g.inc();
        lp.remove_reader(fd);
    })
    .unwrap();
    send(&a, b"wake");
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    lp.run_once(ZERO).unwrap();
    assert_eq!(got.get(), 1);
}

#[test]
fn fd_is_readable_when_a_timer_is_due_and_not_before() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    let start = Instant::now();
    lp.call_later(Duration::from_millis(50), move |_| r.inc());
    assert!(
        !poll_readable(lp.as_raw_fd(), Duration::ZERO),
        "readable at once for a timer 50 ms away"
    );
    assert!(
        poll_readable(lp.as_raw_fd(), GENEROUS),
        "never readable for a due timer"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "readable {:?} after scheduling a 50 ms timer",
        start.elapsed()
    );
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
}

#[test]
fn fd_is_readable_when_a_timer_scheduled_by_a_callback_is_due() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |lp| {
        lp.call_later(Duration::from_millis(20), move |_| r.inc());
    });
    lp.run_once(ZERO).unwrap();
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    // A spurious wake-up is allowed: run until the timer has fired, within bounds.
    let start = Instant::now();
    while ran.get() == 0 && start.elapsed() < GENEROUS {
        poll_readable(lp.as_raw_fd(), GENEROUS);
        lp.run_once(ZERO).unwrap();
    }
    assert_eq!(ran.get(), 1);
}

#[test]
fn fd_is_readable_when_a_threadsafe_call_arrives() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        remote
            .call_soon_threadsafe(move |_| r.store(true, std::sync::atomic::Ordering::SeqCst))
            .unwrap();
    });
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    sender.join().unwrap();
    lp.run_once(ZERO).unwrap();
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn fd_is_readable_after_each_run_once_while_threadsafe_calls_keep_coming() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for round in 1..=3 {
        let (r, rem) = (ran.clone(), remote.clone());
        thread::spawn(move || {
            rem.call_soon_threadsafe(move |_| {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .unwrap();
        })
        .join()
        .unwrap();
        assert!(poll_readable(lp.as_raw_fd(), GENEROUS), "round {round}");
        lp.run_once(ZERO).unwrap();
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), round);
    }
}

#[test]
fn next_timeout() {
    let lp = Loop::new().unwrap();
    assert_eq!(lp.next_timeout(), None, "idle: wait for I/O");

    let timer = lp.call_later(Duration::from_secs(10), |_| {});
    let t = lp.next_timeout().expect("a timer is pending");
    assert!(
        t > Duration::from_secs(9) && t <= Duration::from_secs(10),
        "{t:?}"
    );

    let soon = lp.call_soon(|_| {});
    assert_eq!(
        lp.next_timeout(),
        Some(Duration::ZERO),
        "a callback is ready"
    );
    soon.cancel();
    lp.run_once(ZERO).unwrap(); // consumes the cancelled entry
    let t = lp.next_timeout().expect("the timer is still pending");
    assert!(
        t > Duration::from_secs(9) && t <= Duration::from_secs(10),
        "{t:?}"
    );

    timer.cancel();
    assert_eq!(lp.next_timeout(), None);

    lp.stop();
    assert_eq!(
        lp.next_timeout(),
        Some(Duration::ZERO),
        "a pending stop: do not block"
    );
    lp.run_once(ZERO).unwrap();
    assert_eq!(lp.next_timeout(), None);
}

#[test]
fn next_timeout_is_zero_for_a_queued_threadsafe_call() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    thread::spawn(move || remote.call_soon_threadsafe(|_| {}).unwrap())
        .join()
        .unwrap();
    assert_eq!(lp.next_timeout(), Some(Duration::ZERO));
}

#[test]
fn run_once_with_a_cap_blocks_at_most_about_the_cap() {
    let lp = Loop::new().unwrap();
    let start = Instant::now();
    lp.run_once(Some(Duration::from_millis(50))).unwrap();
    assert!(start.elapsed() < GENEROUS, "{:?}", start.elapsed());
}

#[test]
fn run_once_never_blocks_past_its_cap_even_with_a_later_timer() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::from_secs(10), move |_| r.inc());
    let start = Instant::now();
    lp.run_once(Some(Duration::from_millis(50))).unwrap();
    assert!(start.elapsed() < GENEROUS, "{:?}", start.elapsed());
    assert_eq!(ran.get(), 0);
}

/// The cap never extends the loop's own timeout: with a timer 30 ms away and a cap of
/// ten seconds, one `run_once` waits for the timer and runs it.
#[test]
fn run_once_cap_does_not_extend_the_timer_wait() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::from_millis(30), move |_| r.inc());
    let start = Instant::now();
    lp.run_once(Some(Duration::from_secs(10))).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ran.get(), 1, "the due timer ran in that iteration");
}

#[test]
fn run_once_none_waits_for_the_next_timer_and_runs_it() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::from_millis(30), move |_| r.inc());
    let start = Instant::now();
    lp.run_once(None).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ran.get(), 1);
}

#[test]
fn run_once_does_not_block_when_a_callback_is_ready() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |_| r.inc());
    let start = Instant::now();
    lp.run_once(Some(Duration::from_secs(30))).unwrap();
    assert!(start.elapsed() < GENEROUS, "{:?}", start.elapsed());
    assert_eq!(ran.get(), 1);
}

#[test]
fn run_once_none_returns_when_a_threadsafe_call_arrives() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        remote.call_soon_threadsafe(|_| {}).unwrap();
    });
    let start = Instant::now();
    lp.run_once(Some(Duration::from_secs(30))).unwrap();
    // It may return spuriously before the call arrives; it must not sleep through it.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    sender.join().unwrap();
}

/// A host's main loop: wait on the fd with `next_timeout`, then `run_once(ZERO)`.
#[test]
fn a_host_loop_drives_timers_io_and_threadsafe_calls() {
    let lp = Loop::new().unwrap();
    let done = Counter::new();
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let d = done.clone();
    lp.add_reader(fd, move |lp| {
        util::recv(&b, 64).unwrap();
        d.inc();
        lp.remove_reader(fd);
    })
    .unwrap();
    let d = done.clone();
    lp.call_later(Duration::from_millis(20), move |_| d.inc());
    let remote = lp.remote();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        remote.call_soon_threadsafe(|_| {}).unwrap();
        thread::sleep(Duration::from_millis(10));
        send(&a, b"x");
        a
    });
    let start = Instant::now();
    while done.get() < 2 && start.elapsed() < Duration::from_secs(10) {
        let wait = lp.next_timeout().unwrap_or(Duration::from_secs(10));
        poll_readable(lp.as_raw_fd(), wait);
        lp.run_once(ZERO).unwrap();
    }
    let _a = sender.join().unwrap();
    assert_eq!(done.get(), 2);
}
