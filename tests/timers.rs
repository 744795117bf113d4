//! `call_later`, `call_at` and `TimerHandle`: deadline order, ties, never early,
//! interplay with ready callbacks in one iteration, cancellation.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::{Clock, Loop, TimerHandle};
use util::{Counter, Drops, Events, Watchdog};

const MS: Duration = Duration::from_millis(1);

#[test]
fn timers_fire_in_deadline_order() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    for (name, ms) in [("c", 30), ("a", 10), ("d", 40), ("b", 20)] {
        let o = order.clone();
        lp.call_later(ms * MS, move |_| o.push(name));
    }
    lp.call_later(50 * MS, |lp| lp.stop());
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(order.get(), ["a", "b", "c", "d"]);
}

#[test]
fn equal_deadlines_fire_in_scheduling_order() {
    let lp = Loop::new().unwrap();
    let when = lp.time() + 5 * MS;
    let order = Events::new();
    for i in 0..20 {
        let o = order.clone();
        lp.call_at(when, move |_| o.push(i));
    }
    lp.call_at(when, |lp| lp.stop());
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(order.get(), (0..20).collect::<Vec<_>>());
}

/// asyncio's `test_call_later_negative_delays`: deadlines already in the past fire at
/// once, still earliest first.
#[test]
fn past_deadlines_fire_at_once_earliest_first() {
    let lp = Loop::new().unwrap();
    let now = lp.time();
    let order = Events::new();
    let o = order.clone();
    lp.call_at(now - 10 * MS, move |_| o.push("a"));
    let o = order.clone();
    lp.call_at(now - 20 * MS, move |_| o.push("b"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(order.get(), ["b", "a"]);
}

#[test]
fn many_timers_fire_sorted_by_deadline_then_scheduling_order() {
    // Virtual time: a thousand deadlines over ten minutes run in milliseconds.
    let lp = Loop::builder().clock(Clock::manual()).build().unwrap();
    let start = lp.time();
    let fired = Events::new();
    let mut expected = Vec::new();
    let mut x: u64 = 12345;
    for seq in 0..1000u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis((x >> 33) % 600_000 / 1000 * 1000); // many ties
        expected.push((delay, seq));
        let f = fired.clone();
        lp.call_later(delay, move |lp| f.push((lp.time() - start, seq)));
    }
    lp.call_later(Duration::from_secs(601), |lp| lp.stop());
    lp.run_forever().unwrap();
    expected.sort();
    assert_eq!(fired.get(), expected);
}

#[test]
fn a_timer_never_fires_before_its_deadline() {
    let lp = Loop::new().unwrap();
    let early = Events::new();
    let fired = Counter::new();
    let delays = [0u32, 1, 2, 3, 5, 8, 13, 21];
    for ms in delays {
        let d = ms * MS;
        let before = lp.time();
        let wall = Instant::now();
        let (e, f) = (early.clone(), fired.clone());
        lp.call_later(d, move |lp| {
            f.inc();
            let (t, w) = (lp.time(), Instant::now());
            if t < before + d || w < wall + d {
                e.push(format!(
                    "call_later({d:?}) fired {:?} early",
                    before + d - t
                ));
            }
        });
        let when = lp.time() + d;
        let (e, f) = (early.clone(), fired.clone());
        lp.call_at(when, move |lp| {
            f.inc();
            if lp.time() < when {
                e.push(format!("call_at fired {:?} early", when - lp.time()));
            }
        });
    }
    lp.call_later(40 * MS, |lp| lp.stop());
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(fired.get(), 2 * delays.len());
    assert!(early.is_empty(), "{:?}", early.get());
}

#[test]
fn timer_handle_when() {
    let lp = Loop::new().unwrap();
    let at = lp.time() + Duration::from_secs(3);
    assert_eq!(lp.call_at(at, |_| {}).when(), at);

    let before = lp.time();
    let h = lp.call_later(Duration::from_secs(7), |_| {});
    let after = lp.time();
    assert!(h.when() >= before + Duration::from_secs(7));
    assert!(h.when() <= after + Duration::from_secs(7));
}

/// The handle keeps the deadline as the loop clock's nanoseconds: `when()` gives back
/// the very `Instant` handed to `call_at`, before the loop's creation, at nanosecond
/// offsets and a century ahead, on the system clock and on a manual one.
#[test]
fn timer_handle_when_gives_back_the_instant_to_the_nanosecond() {
    let created = Instant::now();
    for lp in [
        Loop::new().unwrap(),
        Loop::builder().clock(Clock::manual()).build().unwrap(),
    ] {
        let t = lp.time();
        let mut instants = vec![
            t,
            t + Duration::from_nanos(1),
            t + Duration::new(1, 999_999_999),
            t + Duration::from_secs(100 * 365 * 24 * 3600),
        ];
        for back in [Duration::from_nanos(1), Duration::from_millis(1)] {
            if let Some(past) = created.checked_sub(back) {
                instants.push(past);
            }
        }
        for at in instants {
            let h = lp.call_at(at, |_| {});
            assert_eq!(h.when(), at);
            h.cancel();
            assert_eq!(h.when(), at, "a cancelled handle still knows its deadline");
        }
    }
}

/// In one iteration, callbacks already ready run before timers that expire in it:
/// expired timers join the back of the ready queue.
#[test]
fn ready_callbacks_and_expired_timers_run_in_one_iteration_ready_first() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let o = order.clone();
    lp.call_later(Duration::ZERO, move |_| o.push("timer"));
    let o = order.clone();
    lp.call_soon(move |_| o.push("soon"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(order.get(), ["soon", "timer"]);
}

/// asyncio's `test__run_once_schedule_handle`: what a timer schedules waits for the
/// next iteration.
#[test]
fn callback_scheduled_by_a_timer_runs_next_iteration() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let o = order.clone();
    lp.call_later(Duration::ZERO, move |lp| {
        o.push("timer");
        let o2 = o.clone();
        lp.call_soon(move |_| o2.push("soon"));
        let o3 = o.clone();
        lp.call_later(Duration::ZERO, move |_| o3.push("timer2"));
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(order.get(), ["timer"]);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(order.get(), ["timer", "soon", "timer2"]);
}

#[test]
fn cancelled_timer_never_runs_and_its_closure_is_dropped_at_once() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let ran = Counter::new();
    let (t, r) = (drops.token(), ran.clone());
    let h = lp.call_later(Duration::ZERO, move |_| {
        t.hold();
        r.inc();
    });
    h.cancel();
    assert!(h.is_cancelled());
    assert_eq!(drops.dropped(), 1);
    h.cancel(); // twice: no-op
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), 0);
}

#[test]
fn cancelled_timer_does_not_hold_up_the_loop() {
    let lp = Loop::new().unwrap();
    let far = lp.call_later(Duration::from_secs(30), |_| panic!("cancelled timer ran"));
    far.cancel();
    assert_eq!(lp.next_timeout(), None, "a cancelled timer is no deadline");
    let near = lp.call_later(Duration::from_secs(20), |_| {});
    let t = lp.next_timeout().expect("a live timer");
    assert!(
        t > Duration::from_secs(19) && t <= Duration::from_secs(20),
        "{t:?}"
    );
    near.cancel();
    assert_eq!(lp.next_timeout(), None);
}

#[test]
fn cancel_a_timer_from_an_earlier_timer_of_the_same_iteration() {
    let lp = Loop::new().unwrap();
    let when = lp.time();
    let order = Events::new();
    let victim: Rc<RefCell<Option<TimerHandle>>> = Rc::new(RefCell::new(None));
    let (o, v) = (order.clone(), victim.clone());
    lp.call_at(when, move |_| {
        o.push("first");
        v.borrow().as_ref().unwrap().cancel();
    });
    let o = order.clone();
    *victim.borrow_mut() = Some(lp.call_at(when, move |_| o.push("victim")));
    let o = order.clone();
    lp.call_at(when, move |_| o.push("third"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(order.get(), ["first", "third"]);
}

#[test]
fn cancelling_a_fired_timer_touches_no_other_callback() {
    let lp = Loop::new().unwrap();
    let ran = Events::new();
    let r = ran.clone();
    let h = lp.call_later(Duration::ZERO, move |_| r.push("timer"));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let r = ran.clone();
    lp.call_later(Duration::ZERO, move |_| r.push("next"));
    h.cancel();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), ["timer", "next"]);
}

#[test]
fn time_is_read_fresh_not_cached_per_iteration() {
    let lp = Loop::new().unwrap();
    let seen = Events::new();
    let s = seen.clone();
    lp.call_soon(move |lp| {
        let a = lp.time();
        std::thread::sleep(5 * MS);
        s.push(lp.time() - a);
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(seen.get()[0] >= 5 * MS, "{:?}", seen.get());
}

#[test]
fn huge_delays_do_not_overflow_and_never_fire() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    let max = lp.call_later(Duration::MAX, move |_| r.inc());
    let _ = max.when(); // no panic
    let r = ran.clone();
    let far = lp.time() + Duration::from_secs(100 * 365 * 24 * 3600);
    assert_eq!(lp.call_at(far, move |_| r.inc()).when(), far);
    let r = ran.clone();
    lp.call_later(Duration::from_secs(u64::MAX / 2), move |_| r.inc());
    let t = lp.next_timeout().expect("a timer is pending");
    assert!(t > Duration::from_secs(3600), "{t:?}");

    lp.call_later(20 * MS, |lp| lp.stop());
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(ran.get(), 0);
    assert!(!max.is_cancelled());
}

#[test]
fn cancelling_most_timers_keeps_the_others_in_order() {
    let lp = Loop::builder().clock(Clock::manual()).build().unwrap();
    let start = lp.time();
    let fired = Events::new();
    let mut handles = Vec::new();
    for i in 0..300u64 {
        let f = fired.clone();
        let d = Duration::from_secs(1 + (i * 7919) % 300);
        handles.push((
            i,
            d,
            lp.call_later(d, move |lp| f.push((lp.time() - start, i))),
        ));
    }
    let mut expected = Vec::new();
    for (i, d, h) in &handles {
        if i % 5 == 0 {
            expected.push((*d, *i));
        } else {
            h.cancel();
        }
    }
    lp.call_later(Duration::from_secs(400), |lp| lp.stop());
    lp.run_forever().unwrap();
    expected.sort();
    assert_eq!(fired.get(), expected);
}

/// Programs keep a handle per pending timer (a timeout per request): it stays small.
#[test]
fn a_timer_handle_is_four_words() {
    assert!(
        std::mem::size_of::<evloop::TimerHandle>() <= 4 * std::mem::size_of::<usize>(),
        "TimerHandle grew to {} bytes",
        std::mem::size_of::<evloop::TimerHandle>()
    );
}
