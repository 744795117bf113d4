//! `sleep`, `sleep_until`, `timeout`, `yield_now` and `interval`, on the loop's clock
//! (the system clock, or a manual clock that jumps to the next timer).

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::future::{Future, pending};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use evloop::{
    Clock, Loop, TimeoutError, interval, sleep, sleep_until, timeout, timeout_at, yield_now,
};
use util::{Drops, Events};

const HOUR: Duration = Duration::from_secs(3600);

fn manual_loop() -> (Loop, Clock) {
    let clock = Clock::manual();
    let lp = Loop::builder().clock(clock.clone()).build().unwrap();
    (lp, clock)
}

/// A sleep never completes before its duration has passed on `lp.time()`, counted
/// from its first poll.
#[test]
fn sleep_never_completes_early() {
    let lp = Loop::new().unwrap();
    let durations = [0u64, 1, 3, 7, 15];
    let tasks: Vec<_> = durations
        .iter()
        .map(|&ms| {
            let d = Duration::from_millis(ms);
            lp.create_task(async move {
                let lp = Loop::current().unwrap();
                let start = lp.time();
                sleep(d).await;
                (d, lp.time() - start)
            })
        })
        .collect();
    let measured = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
        .unwrap();
    for (d, took) in measured {
        assert!(took >= d, "sleep({d:?}) completed after {took:?}");
    }
}

#[test]
fn sleeps_complete_in_deadline_order() {
    let (lp, _clock) = manual_loop();
    let order = Events::new();
    for ms in [30u64, 10, 20, 10] {
        let o = order.clone();
        drop(lp.create_task(async move {
            sleep(Duration::from_millis(ms)).await;
            o.push(ms);
        }));
    }
    lp.run_until_complete(sleep(Duration::from_millis(40)))
        .unwrap();
    assert_eq!(order.get(), vec![10, 10, 20, 30]);
}

#[test]
fn one_hour_sleep_under_a_manual_clock_is_quick() {
    let (lp, _clock) = manual_loop();
    let start = lp.time();
    let wall = Instant::now();
    lp.run_until_complete(sleep(HOUR)).unwrap();
    assert!(lp.time() - start >= HOUR);
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "virtual time must not wait for real time: {:?}",
        wall.elapsed()
    );
}

#[test]
fn sleep_until_a_past_instant_completes_at_once() {
    let (lp, _clock) = manual_loop();
    let start = lp.time();
    lp.run_until_complete(async {
        let lp = Loop::current().unwrap();
        sleep(Duration::from_secs(1)).await;
        sleep_until(start).await; // already passed
        sleep_until(lp.time()).await;
    })
    .unwrap();
    assert_eq!(lp.time() - start, Duration::from_secs(1), "no extra wait");
}

#[test]
fn sleep_until_waits_for_its_instant() {
    let (lp, _clock) = manual_loop();
    let when = lp.time() + Duration::from_secs(90);
    lp.run_until_complete(sleep_until(when)).unwrap();
    assert!(lp.time() >= when);
}

/// `sleep(ZERO)` yields for (at least) one iteration.
#[test]
fn sleep_zero_yields() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let o = order.clone();
    lp.run_until_complete(async move {
        let o2 = o.clone();
        Loop::current()
            .unwrap()
            .call_soon(move |_| o2.push("callback"));
        sleep(Duration::ZERO).await;
        o.push("after sleep(0)");
    })
    .unwrap();
    assert_eq!(order.get(), vec!["callback", "after sleep(0)"]);
}

/// asyncio `sleep(0)`: a queued callback runs before the task resumes.
#[test]
fn yield_now_lets_queued_callbacks_run_first() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let o = order.clone();
    lp.run_until_complete(async move {
        let o2 = o.clone();
        Loop::current()
            .unwrap()
            .call_soon(move |_| o2.push("callback"));
        o.push("before");
        yield_now().await;
        o.push("after");
    })
    .unwrap();
    assert_eq!(order.get(), vec!["before", "callback", "after"]);
}

/// Two tasks that yield alternate.
#[test]
fn yield_now_interleaves_tasks() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let tasks: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let o = order.clone();
            lp.create_task(async move {
                for i in 0..3 {
                    o.push(format!("{name}{i}"));
                    yield_now().await;
                }
            })
        })
        .collect();
    lp.run_until_complete(async move {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .unwrap();
    assert_eq!(order.get(), ["a0", "b0", "a1", "b1", "a2", "b2"]);
}

#[test]
fn timeout_expires_with_timeout_error_and_drops_the_inner_future() {
    let (lp, _clock) = manual_loop();
    let drops = Drops::new();
    let token = drops.token();
    let start = lp.time();
    let (r, dropped_on_expiry) = lp
        .run_until_complete(async {
            let inner = async move {
                token.hold();
                pending::<u32>().await
            };
            // Keep the Timeout alive past its expiry: the inner future must already
            // be gone.
            let mut t = pin!(timeout(HOUR, inner));
            let r = t.as_mut().await;
            (r, drops.dropped())
        })
        .unwrap();
    assert_eq!(r, Err(TimeoutError));
    assert_eq!(
        dropped_on_expiry, 1,
        "the inner future is dropped on expiry"
    );
    assert!(lp.time() - start >= HOUR, "not before its deadline");
}

#[test]
fn timeout_on_the_system_clock() {
    let lp = Loop::new().unwrap();
    let start = lp.time();
    let r = lp
        .run_until_complete(timeout(Duration::from_millis(5), sleep(HOUR)))
        .unwrap();
    assert_eq!(r, Err(TimeoutError));
    assert!(lp.time() - start >= Duration::from_millis(5));
}

#[test]
fn timeout_is_ok_when_the_future_is_fast() {
    let (lp, _clock) = manual_loop();
    let start = lp.time();
    let r = lp
        .run_until_complete(timeout(HOUR, async {
            yield_now().await;
            sleep(Duration::from_secs(1)).await;
            5
        }))
        .unwrap();
    assert_eq!(r, Ok(5));
    // Its timer was cancelled with it: an idle manual loop does not jump to it.
    lp.run_until_complete(sleep(Duration::from_secs(2)))
        .unwrap();
    let elapsed = lp.time() - start;
    assert_eq!(
        elapsed,
        Duration::from_secs(3),
        "the hour timer must be gone"
    );
}

#[test]
fn timeout_of_a_ready_future() {
    let lp = Loop::new().unwrap();
    let r = lp
        .run_until_complete(timeout(Duration::ZERO, async { 1 }))
        .unwrap();
    assert_eq!(r, Ok(1), "an output ready at the first poll wins");
}

#[test]
fn timeout_at_an_instant() {
    let (lp, _clock) = manual_loop();
    let when = lp.time() + Duration::from_secs(10);
    let r = lp
        .run_until_complete(timeout_at(when, sleep(HOUR)))
        .unwrap();
    assert_eq!(r, Err(TimeoutError));
    assert!(lp.time() >= when);
    assert!(lp.time() < when + HOUR);
}

/// A sleep dropped early (its task cancelled) cancels its timer.
#[test]
fn dropped_sleep_cancels_its_timer() {
    let (lp, _clock) = manual_loop();
    let start = lp.time();
    let sleeper = lp.create_task(sleep(HOUR));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(sleeper.cancel());
    lp.run_until_complete(sleep(Duration::from_secs(1)))
        .unwrap();
    // Let an idle loop advance to whatever timer is left, if any.
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(lp.time() - start < HOUR, "the cancelled hour timer fired");
    assert!(sleeper.is_cancelled());
}

/// `Clock::advance` (auto-advance off) drives sleeps step by step.
#[test]
fn manual_advance_drives_sleep() {
    let (lp, clock) = manual_loop();
    clock.set_auto_advance(false);
    let done = Rc::new(std::cell::Cell::new(false));
    let d = done.clone();
    let _task = lp.create_task(async move {
        sleep(Duration::from_secs(10)).await;
        d.set(true);
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    clock.advance(Duration::from_secs(9));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(!done.get(), "not before its deadline");
    clock.advance(Duration::from_secs(1));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(done.get());
}

#[test]
fn interval_ticks_every_period() {
    let (lp, _clock) = manual_loop();
    let start = lp.time();
    let period = Duration::from_millis(10);
    let ticks = lp
        .run_until_complete(async move {
            let lp = Loop::current().unwrap();
            let mut every = interval(period);
            let mut ticks = Vec::new();
            for _ in 0..4 {
                let due = every.tick().await;
                assert!(lp.time() >= due, "a tick never completes early");
                ticks.push(due - start);
            }
            ticks
        })
        .unwrap();
    assert_eq!(
        ticks,
        vec![Duration::ZERO, period, 2 * period, 3 * period],
        "the first tick is immediate, then one per period"
    );
}

/// Missed ticks are not replayed: after a stall, the next tick is one period after
/// the late one.
#[test]
fn interval_skips_missed_ticks() {
    let (lp, clock) = manual_loop();
    let start = lp.time();
    let period = Duration::from_millis(10);
    let ticks = lp
        .run_until_complete(async move {
            let mut every = interval(period);
            let t0 = every.tick().await;
            clock.advance(Duration::from_millis(35)); // a stall
            let late = every.tick().await;
            let next = every.tick().await;
            [t0 - start, late - start, next - start]
        })
        .unwrap();
    assert_eq!(ticks[0], Duration::ZERO);
    assert_eq!(
        ticks[1], period,
        "the late tick reports its scheduled instant"
    );
    assert_eq!(
        ticks[2],
        Duration::from_millis(45),
        "one period after the late tick was taken, not a burst"
    );
}

#[test]
#[should_panic(expected = "zero")]
fn interval_of_zero_panics() {
    let _ = interval(Duration::ZERO);
}

/// Polled outside a running loop, a sleep panics with a message.
#[test]
#[should_panic(expected = "outside a running loop")]
fn sleep_polled_outside_a_loop_panics() {
    let mut s = pin!(sleep(Duration::from_millis(1)));
    let mut cx = Context::from_waker(Waker::noop());
    let _: Poll<()> = s.as_mut().poll(&mut cx);
}
