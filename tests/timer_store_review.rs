//! A review of the timer store's storage (the chunked slot slab of 1,024-slot chunks,
//! the sorted run in 2,048-entry segments) and of the four-word `TimerHandle`, through
//! the public API, at sizes that cross chunk and segment boundaries many times:
//! firing order against a model (run and heap parts, equal deadlines, the rebuild at
//! three quarters stale in the middle of a segment), every closure dropped exactly
//! once (drop counters), stale handles against reused slots (after the slab empties,
//! and after a trim relinked it), `when()` to the nanosecond, `is_cancelled` after
//! `close()` and the loop's drop, panicking destructors, and memory given back.

mod util;

#[path = "util/panics.rs"]
mod panics;

use std::cell::RefCell;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Clock, Loop, TimerHandle};
use panics::{record_panics, sorted};
use util::{Counter, DropToken, Drops};

const MS: Duration = Duration::from_millis(1);

/// What a buffer may keep after a burst is over (the loop keeps room for 1,024).
const MODEST: usize = 1024;

fn lcg(x: &mut u64) -> u64 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *x >> 33
}

fn manual_loop() -> (Loop, Clock) {
    let clock = Clock::manual();
    clock.set_auto_advance(false);
    let lp = Loop::builder().clock(clock.clone()).build().unwrap();
    (lp, clock)
}

fn run_iterations(lp: &Loop, n: usize) {
    for _ in 0..n {
        lp.run_once(Some(Duration::ZERO)).unwrap();
    }
}

fn capacity(lp: &Loop, name: &str) -> usize {
    lp.debug_buffer_capacities()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("no buffer {name}"))
}

/// Leaves `lp` idle in rounds of 300 ms until `done` holds or 5 s have passed.
fn idle_until(lp: &Loop, done: impl Fn(&Loop) -> bool) -> bool {
    let start = Instant::now();
    while !done(lp) {
        if start.elapsed() > Duration::from_secs(5) {
            return false;
        }
        idle_for(lp, Duration::from_millis(300));
    }
    true
}

/// Runs `lp` with nothing to do for `d` (a thread stops it).
fn idle_for(lp: &Loop, d: Duration) {
    let remote = lp.remote();
    let stopper = thread::spawn(move || {
        thread::sleep(d);
        remote.stop();
    });
    lp.run_forever().unwrap();
    stopper.join().unwrap();
}

/// A timer that records its index when it runs and holds a drop token.
fn timer_at(
    lp: &Loop,
    at: Instant,
    i: usize,
    fired: &Rc<RefCell<Vec<usize>>>,
    drops: &Drops,
) -> TimerHandle {
    let (f, t) = (fired.clone(), drops.token());
    lp.call_at(at, move |_| {
        t.hold();
        f.borrow_mut().push(i);
    })
}

/// The model: each timer's deadline (ms from the start) while it is pending.
struct Model {
    due: Vec<Option<i64>>,
    cancelled: Vec<bool>,
}

impl Model {
    fn pending(&self) -> usize {
        self.due.iter().flatten().count()
    }

    /// Takes the timers due at `now_ms`, in (deadline, scheduling) order.
    fn fire(&mut self, now_ms: i64) -> Vec<usize> {
        let mut due: Vec<(i64, usize)> = self
            .due
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.filter(|&d| d <= now_ms).map(|d| (d, i)))
            .collect();
        due.sort();
        for &(_, i) in &due {
            self.due[i] = None;
        }
        due.into_iter().map(|(_, i)| i).collect()
    }
}

/// Thousands of timers in batches of every shape (rising: the run; falling and
/// random: the heap; equal deadlines; deadlines in the past), cancels of pending and
/// of already-fired timers (whose slots other timers have reused), a mass cancel that
/// rebuilds the order in the middle of a segment, and advances in steps: each step
/// fires exactly the model's due timers in (deadline, scheduling) order, and the live
/// closures are exactly the model's pending timers at every step.
#[test]
fn timers_across_chunk_and_segment_boundaries_follow_the_model() {
    for seed in 0..3u64 {
        let (lp, clock) = manual_loop();
        let start = lp.time();
        let drops = Drops::new();
        let fired: Rc<RefCell<Vec<usize>>> = Rc::default();
        let mut model = Model {
            due: Vec::new(),
            cancelled: Vec::new(),
        };
        let mut handles: Vec<TimerHandle> = Vec::new();
        let mut x = 0x5EED + seed;
        let mut now_ms: i64 = 0;
        for round in 0..14u64 {
            let n = 1_500 + (lcg(&mut x) % 1_200) as usize;
            for k in 0..n {
                let i = handles.len();
                let ms = match (round + seed) % 6 {
                    0 => now_ms + 1 + k as i64 / 3,             // rising, ties
                    1 => now_ms + 3_000 - k as i64,             // falling
                    2 => now_ms + 500,                          // all equal
                    3 => now_ms + (lcg(&mut x) % 2_000) as i64, // random
                    4 => now_ms - (lcg(&mut x) % 50) as i64,    // in the past
                    _ => now_ms + [100, 100, 7, 900][k % 4] + k as i64 / 1_000,
                };
                let at = if ms >= 0 {
                    start + MS * ms as u32
                } else {
                    start - MS * (-ms) as u32
                };
                let h = timer_at(&lp, at, i, &fired, &drops);
                assert_eq!(h.when(), at);
                handles.push(h);
                model.due.push(Some(ms));
                model.cancelled.push(false);
                if lcg(&mut x).is_multiple_of(5) {
                    // Any timer so far: pending (its closure goes now), fired (a stale
                    // handle: its slot may hold a newer timer) or cancelled.
                    let j = lcg(&mut x) as usize % handles.len();
                    handles[j].cancel();
                    model.due[j] = None;
                    model.cancelled[j] = true;
                }
            }
            if round % 4 == 3 {
                // Cancel four in five of the pending ones: the order is rebuilt
                // without its stale entries, wherever its front is in a segment.
                for (j, h) in handles.iter().enumerate() {
                    if model.due[j].is_some() && !j.is_multiple_of(5) {
                        h.cancel();
                        model.due[j] = None;
                        model.cancelled[j] = true;
                    }
                }
                assert_eq!(drops.alive(), model.pending(), "seed {seed}: mass cancel");
            }
            assert_eq!(drops.alive(), model.pending(), "seed {seed} round {round}");
            for _ in 0..3 {
                let step = 1 + (lcg(&mut x) % 400) as i64;
                now_ms += step;
                clock.advance(MS * step as u32);
                fired.borrow_mut().clear();
                run_iterations(&lp, 1);
                let expected = model.fire(now_ms);
                assert_eq!(
                    *fired.borrow(),
                    expected,
                    "seed {seed} round {round}: what fired at {now_ms} ms"
                );
                assert_eq!(drops.alive(), model.pending());
            }
        }
        clock.advance(Duration::from_secs(10_000));
        fired.borrow_mut().clear();
        run_iterations(&lp, 1);
        assert_eq!(*fired.borrow(), model.fire(i64::MAX / 2));
        assert_eq!(drops.alive(), 0, "seed {seed}: every closure dropped");
        assert_eq!(drops.made(), drops.dropped());
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(h.is_cancelled(), model.cancelled[i], "timer {i}");
        }
        lp.close().unwrap();
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(
                h.is_cancelled(),
                model.cancelled[i],
                "timer {i} after close"
            );
        }
    }
}

/// Equal deadlines run in scheduling order whichever part holds them: 5,000 at one
/// instant (the run, across two segment boundaries), some earlier ones (the heap),
/// more at the same instant after a later one (the heap, beside the run's).
#[test]
fn equal_deadlines_keep_scheduling_order_across_segments_and_the_heap() {
    let (lp, clock) = manual_loop();
    let t = lp.time() + Duration::from_secs(1);
    let drops = Drops::new();
    let fired: Rc<RefCell<Vec<usize>>> = Rc::default();
    let mut handles = Vec::new();
    let mut at_t = Vec::new();
    let mut i = 0;
    let mut add = |when: Instant, handles: &mut Vec<TimerHandle>| {
        handles.push(timer_at(&lp, when, i, &fired, &drops));
        i += 1;
        i - 1
    };
    for _ in 0..5_000 {
        at_t.push(add(t, &mut handles));
    }
    for _ in 0..300 {
        add(t - MS, &mut handles);
    }
    for _ in 0..300 {
        at_t.push(add(t, &mut handles));
    }
    add(t + MS, &mut handles);
    for _ in 0..1_500 {
        at_t.push(add(t, &mut handles)); // earlier than the run's tail: the heap
    }
    for &j in at_t.iter().step_by(3) {
        handles[j].cancel();
    }
    clock.advance(Duration::from_secs(1));
    run_iterations(&lp, 1);
    let got = fired.borrow().clone();
    let early: Vec<usize> = (5_000..5_300).collect();
    let same: Vec<usize> = at_t
        .iter()
        .enumerate()
        .filter(|(pos, _)| pos % 3 != 0)
        .map(|(_, &j)| j)
        .collect();
    assert_eq!(got.len(), early.len() + same.len());
    assert_eq!(&got[..300], &early[..], "the earlier deadline first");
    assert_eq!(
        &got[300..],
        &same[..],
        "then the equal ones in scheduling order"
    );
    clock.advance(MS);
    run_iterations(&lp, 1);
    assert_eq!(fired.borrow().last(), Some(&5_600));
    assert_eq!(drops.alive(), 0);
}

/// A timer that ran leaves a handle behind; its slot is reused by later timers (last
/// freed first, or from key 0 once the store emptied). Cancelling the old handle must
/// not touch the new timer, at any key, in any chunk.
#[test]
fn a_stale_handle_never_cancels_the_timer_that_reused_its_slot() {
    let (lp, clock) = manual_loop();
    let drops = Drops::new();
    let fired: Rc<RefCell<Vec<usize>>> = Rc::default();
    let start = lp.time();
    // 3,000 timers, every one fires: the store empties and starts again at key 0.
    let old: Vec<TimerHandle> = (0..3_000)
        .map(|i| timer_at(&lp, start + MS, i, &fired, &drops))
        .collect();
    clock.advance(MS);
    run_iterations(&lp, 1);
    assert_eq!(fired.borrow().len(), 3_000);
    // New timers in the same keys; half of them fire, then new ones reuse those keys
    // last freed first while the other half still hold theirs.
    let mid: Vec<TimerHandle> = (0..3_000)
        .map(|i| {
            let at = start + MS * if i % 2 == 0 { 2 } else { 1_000 };
            timer_at(&lp, at, 10_000 + i, &fired, &drops)
        })
        .collect();
    clock.advance(MS);
    run_iterations(&lp, 1);
    assert_eq!(fired.borrow().len(), 4_500);
    let new: Vec<TimerHandle> = (0..2_000)
        .map(|i| timer_at(&lp, start + MS * 500, 20_000 + i, &fired, &drops))
        .collect();
    for h in old.iter().chain(mid.iter().step_by(2)) {
        h.cancel(); // they ran: nothing to cancel
    }
    assert_eq!(drops.alive(), 1_500 + 2_000, "no live timer was cancelled");
    assert!(mid.iter().skip(1).step_by(2).all(|h| !h.is_cancelled()));
    assert!(new.iter().all(|h| !h.is_cancelled()));
    fired.borrow_mut().clear();
    clock.advance(Duration::from_secs(1));
    run_iterations(&lp, 1);
    let got = fired.borrow().clone();
    let expected: Vec<usize> = (20_000..22_000)
        .chain((0..3_000).filter(|i| i % 2 == 1).map(|i| 10_000 + i))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(drops.alive(), 0);
}

/// Trimming shrinks the slab down to its highest live key and relinks the vacant
/// slots below it lowest first. A live timer at a high key pins the slab; handles of
/// timers that ran name keys that new timers reuse after the trim; once the high
/// timer is cancelled the slab shrinks further. Through all of it every timer runs
/// once or is dropped once, and stale handles cancel nothing.
#[test]
fn trimming_around_live_keys_keeps_every_timer_and_handle_right() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let fired: Rc<RefCell<Vec<usize>>> = Rc::default();
    let hour = lp.time() + Duration::from_secs(3_600);
    // Keys 0..6,000: the first 2,000 run at once, two far ones stay (key 5 and the
    // highest key), the rest are cancelled.
    let handles: Vec<TimerHandle> = (0..6_000)
        .map(|i| {
            let at = if i < 2_000 { lp.time() } else { hour };
            timer_at(&lp, at, i, &fired, &drops)
        })
        .collect();
    let (low, high) = (4_005, 5_999);
    for (i, h) in handles.iter().enumerate().skip(2_000) {
        if i != low && i != high {
            h.cancel();
        }
    }
    run_iterations(&lp, 1);
    assert_eq!(fired.borrow().len(), 2_000);
    assert_eq!(drops.alive(), 2);
    let back = idle_until(&lp, |lp| capacity(lp, "timer_heap") <= 2 * MODEST);
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());
    assert!(
        capacity(&lp, "timer_slots") >= 6_000,
        "the live key pins the slab"
    );

    // New timers fill the relinked vacant keys (lowest first); the stale handles of
    // the 2,000 that ran name some of them.
    fired.borrow_mut().clear();
    let new: Vec<TimerHandle> = (0..3_000)
        .map(|i| timer_at(&lp, lp.time() + MS * 20, 10_000 + i, &fired, &drops))
        .collect();
    for h in &handles[..2_000] {
        h.cancel();
    }
    assert_eq!(drops.alive(), 3_002);
    handles[high].cancel();
    assert_eq!(drops.alive(), 3_001);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fired.borrow().len() < 3_000 && Instant::now() < deadline {
        lp.run_once(Some(MS * 50)).unwrap();
    }
    assert_eq!(*fired.borrow(), (10_000..13_000).collect::<Vec<_>>());
    assert!(new.iter().all(|h| !h.is_cancelled()));
    // Now key 4,005 is the highest live one: the slab keeps its four chunks.
    let back = idle_until(&lp, |lp| capacity(lp, "timer_slots") <= 4 * 1024);
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());
    assert!(capacity(&lp, "timer_slots") > 4_005);
    // The survivor at key 4,005 is still there and still cancellable once.
    assert_eq!(drops.alive(), 1);
    assert!(!handles[low].is_cancelled());
    handles[low].cancel();
    assert_eq!(drops.alive(), 0);
    assert!(handles[low].is_cancelled());
    let back = idle_until(&lp, |lp| capacity(lp, "timer_slots") <= 2 * MODEST);
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());
    // And the store still works.
    fired.borrow_mut().clear();
    for i in 0..3 {
        timer_at(&lp, lp.time(), i, &fired, &drops);
    }
    run_iterations(&lp, 1);
    assert_eq!(*fired.borrow(), [0, 1, 2]);
    assert_eq!(drops.alive(), 0);
}

/// Once a burst of timers in deadline order has mostly fired, the few left may sit
/// in two segments of the run (the end of one, the start of the next): the order's
/// room still goes back on an idle loop, and the loop then sleeps instead of waking
/// every window to try again.
#[test]
fn a_run_left_with_a_few_timers_across_two_segments_gives_its_room_back() {
    let lp = Loop::new().unwrap();
    let fired = Counter::new();
    let drops = Drops::new();
    for _ in 0..2_047 {
        let f = fired.clone();
        lp.call_later(Duration::ZERO, move |_| f.inc());
    }
    let late: Vec<TimerHandle> = (0..2)
        .map(|_| {
            let t = drops.token();
            lp.call_later(Duration::from_secs(3_600), move |_| t.hold())
        })
        .collect();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(fired.get(), 2_047);
    assert!(capacity(&lp, "timer_heap") > 2 * MODEST);
    let back = idle_until(&lp, |lp| capacity(lp, "timer_heap") <= 2 * MODEST);
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());

    let polls = lp.stats().polls;
    idle_for(&lp, Duration::from_secs(1));
    let woke = lp.stats().polls - polls;
    assert!(woke <= 4, "an idle loop polled {woke} times in 1 s");
    assert_eq!(drops.alive(), 2);
    assert!(late.iter().all(|h| !h.is_cancelled()));
    for h in &late {
        h.cancel();
    }
    assert_eq!(drops.alive(), 0);
}

/// asyncio's `test__run_once`: a cancelled timer ahead of a live one does not shorten
/// the wait. Here the cancelled ones are at the fronts of both parts (the run, which
/// spans segments, and the heap): the loop waits for the live timer.
#[test]
fn next_timeout_skips_cancelled_timers_at_the_front_of_run_and_heap() {
    let lp = Loop::new().unwrap();
    let t = lp.time();
    let mut cancel = Vec::new();
    for i in 0..5_000u32 {
        cancel.push(lp.call_at(t + MS * (10 + i), |_| {}));
    }
    let live = lp.call_at(t + Duration::from_secs(10), |_| {});
    // Live ones behind it keep the store busy enough that no trim is due (which
    // would shorten the wait to the next window).
    let behind: Vec<TimerHandle> = (0..4_000u32)
        .map(|i| lp.call_at(t + Duration::from_secs(20) + MS * i, |_| {}))
        .collect();
    for i in 0..3_000u32 {
        cancel.push(lp.call_at(t + MS * (5 + i), |_| {})); // the heap
    }
    for h in &cancel {
        h.cancel();
    }
    // (The time that passed since `t` was read is taken off the wait.)
    let wait = |lp: &Loop, secs: u64| {
        let w = lp.next_timeout().expect("a live timer");
        let d = Duration::from_secs(secs);
        assert!(
            w <= d && w > d - Duration::from_secs(5),
            "{w:?}, not about {d:?}"
        );
    };
    wait(&lp, 10);
    live.cancel();
    wait(&lp, 20);
    for h in &behind {
        h.cancel();
    }
    assert!(
        lp.next_timeout()
            .is_none_or(|t| t <= Duration::from_millis(100))
    );
}

/// `when()` gives back the very instant given to `call_at`, and `time()` plus the
/// delay of `call_later`, to the nanosecond: on both clocks, far back and far ahead
/// in the clock's range, for a live timer, one that ran, one that close() refused,
/// and after the loop itself is gone.
#[test]
fn when_gives_back_the_deadline_in_every_state_and_after_the_loop() {
    let mut x = 7u64;
    for manual in [false, true] {
        let lp = if manual {
            let clock = Clock::manual();
            clock.set_auto_advance(false);
            clock.advance(Duration::new(12_345, 678_901_234));
            Loop::builder().clock(clock).build().unwrap()
        } else {
            Loop::new().unwrap()
        };
        let now = lp.time();
        let mut cases: Vec<(Instant, TimerHandle)> = Vec::new();
        for k in 0..3_000u64 {
            let ns = lcg(&mut x) * 1_000_003 + lcg(&mut x);
            let d = match k % 4 {
                0 => Duration::from_nanos(ns % 1_000_000_007),
                1 => Duration::from_nanos(ns % (400 * 365 * 86_400 * 1_000_000_000)),
                _ => Duration::from_nanos(ns % 10_000_000_000),
            };
            let at = if k % 3 == 0 {
                match now.checked_sub(d) {
                    Some(at) => at,
                    None => continue,
                }
            } else {
                now + d
            };
            cases.push((at, lp.call_at(at, |_| {})));
        }
        if manual {
            // call_later on a still clock: exactly time() + delay.
            for k in 0..50u64 {
                let d = Duration::from_nanos(lcg(&mut x) * 7_919 + k);
                let h = lp.call_later(d, |_| {});
                assert_eq!(h.when(), lp.time() + d);
            }
        }
        for (at, h) in &cases {
            assert_eq!(h.when(), *at);
        }
        run_iterations(&lp, 1); // the past ones run
        // A destructor that close() runs schedules timers: they are refused, and
        // their handles still know their deadlines.
        type Refused = Rc<RefCell<Vec<(Instant, TimerHandle)>>>;
        struct OnDrop(Loop, Refused);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                let at = self.0.time() + Duration::new(3, 1);
                let h = self.0.call_at(at, |_| panic!("refused timers never run"));
                self.1.borrow_mut().push((at, h));
                let h = self.0.call_at(at - Duration::new(5, 3), |_| unreachable!());
                self.1.borrow_mut().push((at - Duration::new(5, 3), h));
            }
        }
        let refused: Refused = Rc::default();
        let on_drop = OnDrop(lp.clone(), refused.clone());
        lp.call_later(Duration::from_secs(60), move |_| drop(on_drop));
        lp.close().unwrap();
        assert_eq!(refused.borrow().len(), 2);
        for (at, h) in refused.borrow().iter() {
            assert!(h.is_cancelled());
            assert_eq!(h.when(), *at);
        }
        drop(lp);
        for (at, h) in cases.iter().chain(refused.borrow().iter()) {
            assert_eq!(h.when(), *at, "after the loop is gone");
        }
    }
}

/// After `close()`, and after the loop's drop without it, across chunks: handles of
/// timers that ran say not cancelled; of timers pending, due but not yet run, or
/// beyond the clock, cancelled. Every closure is dropped exactly once.
#[test]
fn is_cancelled_after_close_and_after_the_loops_drop_across_chunks() {
    for close in [true, false] {
        let (lp, clock) = manual_loop();
        let drops = Drops::new();
        let fired: Rc<RefCell<Vec<usize>>> = Rc::default();
        let t = lp.time();
        let mut handles = Vec::new();
        let mut ran = Vec::new();
        for i in 0..4_500usize {
            let at = match i % 5 {
                0 | 1 => t + MS,                                    // runs
                2 => t + Duration::from_secs(3_600),                // pending
                3 => t + Duration::from_secs(1_000 * 365 * 86_400), // never
                _ => t + MS * 2,                                    // due at close, not run
            };
            handles.push(timer_at(&lp, at, i, &fired, &drops));
            ran.push(i % 5 < 2);
        }
        clock.advance(MS);
        run_iterations(&lp, 1);
        assert_eq!(fired.borrow().len(), 1_800);
        clock.advance(MS);
        assert_eq!(drops.alive(), 4_500 - 1_800);
        if close {
            lp.close().unwrap();
        }
        drop(lp);
        assert_eq!(drops.alive(), 0);
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(h.is_cancelled(), !ran[i], "timer {i} (close: {close})");
            h.cancel();
            assert!(h.is_cancelled());
        }
    }
}

/// Panics when dropped.
struct Bomb(usize);

impl Bomb {
    fn arm(&self) {}
}

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb {}", self.0);
    }
}

fn bomb_timer(lp: &Loop, at: Instant, i: usize, drops: &Drops) -> TimerHandle {
    let t: DropToken = drops.token();
    if i.is_multiple_of(600) {
        let b = Bomb(i);
        lp.call_at(at, move |_| {
            b.arm();
            t.hold();
        })
    } else {
        lp.call_at(at, move |_| t.hold())
    }
}

/// Closures whose destructors panic, spread over several chunks: cancelling one
/// reports its panic and returns; close() reports each remaining one and still drops
/// every other closure; dropping the loop without close() logs them and drops the
/// rest (no abort: one catch per closure).
#[test]
fn panicking_timer_destructors_at_cancel_close_and_drop_are_each_caught() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let drops = Drops::new();
    let far = lp.time() + Duration::from_secs(3_600);
    let handles: Vec<TimerHandle> = (0..3_100)
        .map(|i| bomb_timer(&lp, far - MS * (i % 7) as u32, i, &drops))
        .collect();
    handles[600].cancel();
    handles[1_800].cancel();
    handles[1_801].cancel();
    assert_eq!(sorted(&seen), ["bomb 1800", "bomb 600"]);
    assert_eq!(drops.dropped(), 3, "the tokens beside the bombs went too");
    lp.close().unwrap();
    assert_eq!(
        sorted(&seen),
        [
            "bomb 0",
            "bomb 1200",
            "bomb 1800",
            "bomb 2400",
            "bomb 3000",
            "bomb 600"
        ]
    );
    assert_eq!(drops.alive(), 0);
    assert!(handles.iter().all(TimerHandle::is_cancelled));
    drop(lp);

    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let handles: Vec<TimerHandle> = (0..2_500)
        .map(|i| bomb_timer(&lp, far, i, &drops))
        .collect();
    drop(lp);
    assert_eq!(drops.alive(), 0);
    assert!(handles.iter().all(TimerHandle::is_cancelled));
}

/// After a trim shrank the slab to one chunk of an odd size (down to a live key), a
/// new burst regrows it in whole chunks: the first doubles only up to its 1,024
/// slots, never to room it cannot use.
#[test]
fn the_slab_regrows_in_whole_chunks_after_a_shrink() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let fired: Rc<RefCell<Vec<usize>>> = Rc::default();
    let hour = lp.time() + Duration::from_secs(3_600);
    let handles: Vec<TimerHandle> = (0..3_000)
        .map(|i| timer_at(&lp, hour, i, &fired, &drops))
        .collect();
    for (i, h) in handles.iter().enumerate() {
        if i != 332 {
            h.cancel();
        }
    }
    let back = idle_until(&lp, |lp| capacity(lp, "timer_slots") < 1024);
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());
    assert!(capacity(&lp, "timer_slots") > 332);
    let more: Vec<TimerHandle> = (0..2_000)
        .map(|i| timer_at(&lp, hour, 10_000 + i, &fired, &drops))
        .collect();
    assert!(
        capacity(&lp, "timer_slots") <= 2 * 1024,
        "2,001 timers hold {:?}",
        lp.debug_buffer_capacities()
    );
    assert_eq!(drops.alive(), 2_001);
    for h in more.iter().chain([&handles[332]]) {
        h.cancel();
    }
    assert_eq!(drops.alive(), 0);
}
