//! The manual clock: time-based code of minutes and hours tested in milliseconds,
//! without ever skipping ready work, pending I/O or executor jobs.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Clock, Loop, TimeoutError};
use util::{Events, send, socketpair};

fn manual_loop() -> (Loop, Clock) {
    let clock = Clock::manual();
    let lp = Loop::builder().clock(clock.clone()).build().unwrap();
    (lp, clock)
}

#[test]
fn retry_with_backoff_over_half_an_hour_runs_in_milliseconds() {
    let (lp, _) = manual_loop();
    let wall = Instant::now();
    let start = lp.time();
    let attempts = lp
        .run_until_complete(async {
            let mut attempts = Vec::new();
            let lp = Loop::current().unwrap();
            for attempt in 0..5u32 {
                attempts.push(lp.time() - start);
                evloop::sleep(Duration::from_secs(60) * 2u32.pow(attempt)).await;
            }
            attempts
        })
        .unwrap();
    let secs: Vec<u64> = attempts.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![0, 60, 180, 420, 900]);
    assert_eq!(lp.time() - start, Duration::from_secs(60 * 31));
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "took {:?}",
        wall.elapsed()
    );
}

#[test]
fn a_one_hour_timeout_expires_and_drops_the_inner_future() {
    let (lp, _) = manual_loop();
    let dropped = Rc::new(Cell::new(false));
    struct Guard(Rc<Cell<bool>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let g = Guard(dropped.clone());
    let start = lp.time();
    let r = lp
        .run_until_complete(evloop::timeout(Duration::from_secs(3600), async move {
            let _g = g;
            std::future::pending::<()>().await
        }))
        .unwrap();
    assert_eq!(r, Err(TimeoutError));
    assert!(dropped.get());
    assert_eq!(lp.time() - start, Duration::from_secs(3600));
}

#[test]
fn auto_advance_never_skips_ready_callbacks() {
    let (lp, _) = manual_loop();
    let start = lp.time();
    let seen = Events::new();
    let s = seen.clone();
    lp.call_later(Duration::from_secs(10), move |lp| {
        s.push(("timer", lp.time() - start));
        lp.stop();
    });
    // A chain of 50 callbacks: all of it runs before virtual time moves.
    fn step(lp: &Loop, n: u32, start: Instant, seen: Events<(&'static str, Duration)>) {
        seen.push(("step", lp.time() - start));
        if n > 0 {
            lp.call_soon(move |lp| step(lp, n - 1, start, seen));
        }
    }
    let s = seen.clone();
    lp.call_soon(move |lp| step(lp, 49, start, s));
    lp.run_forever().unwrap();
    let got = seen.get();
    assert_eq!(got.len(), 51);
    assert!(got[..50].iter().all(|(k, t)| *k == "step" && t.is_zero()));
    assert_eq!(got[50], ("timer", Duration::from_secs(10)));
}

#[test]
fn auto_advance_never_skips_pending_io() {
    let (lp, _) = manual_loop();
    let (a, b) = socketpair();
    send(&a, b"ready");
    let start = lp.time();
    let seen = Events::new();
    let s = seen.clone();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&b);
    lp.add_reader(fd, move |lp| {
        s.push(("read", lp.time() - start));
        lp.remove_reader(fd);
    })
    .unwrap();
    let s = seen.clone();
    lp.call_later(Duration::from_secs(3600), move |lp| {
        s.push(("timer", lp.time() - start));
        lp.stop();
    });
    lp.run_forever().unwrap();
    assert_eq!(
        seen.get(),
        vec![
            ("read", Duration::ZERO),
            ("timer", Duration::from_secs(3600))
        ]
    );
}

#[test]
fn virtual_time_waits_for_executor_jobs_in_flight() {
    let (lp, _) = manual_loop();
    let start = lp.time();
    let r = lp
        .run_until_complete(async {
            let lp = Loop::current().unwrap();
            let job = lp.run_in_executor(|| {
                thread::sleep(Duration::from_millis(50));
                7
            });
            // Without the job counted as outside work, the clock would jump an hour
            // at once and the timeout would win.
            evloop::timeout(Duration::from_secs(3600), job).await
        })
        .unwrap();
    assert_eq!(r.unwrap().unwrap(), 7);
    assert_eq!(lp.time(), start, "virtual time did not move");
}

#[test]
fn without_auto_advance_only_advance_moves_time() {
    let (lp, clock) = manual_loop();
    clock.set_auto_advance(false);
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    lp.call_later(Duration::from_secs(30), move |lp| {
        f.set(true);
        lp.stop();
    });
    // Nothing is due: one iteration capped at 20 ms of real time leaves it pending.
    lp.run_once(Some(Duration::from_millis(20))).unwrap();
    assert!(!fired.get());
    let c = clock.clone();
    let advancer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        c.advance(Duration::from_secs(30));
    });
    lp.run_forever().unwrap();
    advancer.join().unwrap();
    assert!(fired.get());
}

#[test]
fn task_group_children_with_timeouts_follow_the_loop_clock() {
    let (lp, _) = manual_loop();
    let start = lp.time();
    let results = lp
        .run_until_complete(async {
            let group = evloop::TaskGroup::new();
            let fast = group.spawn(evloop::timeout(
                Duration::from_secs(120),
                evloop::sleep(Duration::from_secs(60)),
            ));
            let slow = group.spawn(evloop::timeout(
                Duration::from_secs(120),
                evloop::sleep(Duration::from_secs(600)),
            ));
            group.wait().await.unwrap();
            (fast.await.unwrap(), slow.await.unwrap())
        })
        .unwrap();
    assert_eq!(results, (Ok(()), Err(TimeoutError)));
    assert_eq!(lp.time() - start, Duration::from_secs(120));
}

#[evloop::test(manual_clock)]
async fn the_test_attribute_runs_on_a_manual_clock() {
    let lp = Loop::current().expect("runs inside a loop");
    let start = lp.time();
    evloop::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(lp.time() - start, Duration::from_secs(24 * 3600));
}

#[evloop::test]
async fn the_test_attribute_runs_on_the_system_clock() {
    let lp = Loop::current().expect("runs inside a loop");
    assert!(!lp.clock().is_manual());
    let start = Instant::now();
    evloop::sleep(Duration::from_millis(5)).await;
    assert!(start.elapsed() >= Duration::from_millis(5));
}

#[test]
fn the_plain_function_form_returns_the_output() {
    let out = evloop::test::run_manual_clock(async {
        evloop::sleep(Duration::from_secs(5)).await;
        42
    });
    assert_eq!(out, 42);
}
