//! The timer order (a sorted run beside a heap) against a model: mixed rising,
//! falling and equal deadlines, deadlines in the past and beyond the clock, cancels
//! of entries anywhere, on a manual clock; and `TimerHandle` states around close.

#[path = "util/futures.rs"]
mod futures_util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Clock, Loop, TimerHandle};
use futures_util::run_iterations;

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

#[test]
fn timers_fire_in_deadline_then_schedule_order_for_mixed_patterns() {
    for seed in 0..12u64 {
        let (lp, clock) = manual_loop();
        let start = lp.time();
        let fired: Rc<RefCell<Vec<usize>>> = Rc::default();
        // (deadline offset in ms, index), None when cancelled or NEVER.
        let mut model: Vec<Option<(u64, usize)>> = Vec::new();
        let mut handles: Vec<TimerHandle> = Vec::new();
        let mut x = seed * 7919 + 1;
        let mut now_ms = 0u64;
        let mut batches = Vec::new();
        for round in 0..6 {
            for _ in 0..300 {
                let i = model.len();
                let pattern = (seed + round) % 5;
                let ms = match pattern {
                    0 => now_ms + i as u64,                   // rising
                    1 => now_ms + 5_000 - (i as u64 % 5_000), // falling
                    2 => now_ms + 100,                        // equal
                    3 => now_ms + lcg(&mut x) % 1_000,        // random
                    _ => now_ms + (lcg(&mut x) % 3) * 50,     // few distinct
                };
                let f = fired.clone();
                let r = lcg(&mut x) % 20;
                let h = if r == 0 {
                    // Beyond the clock: never fires.
                    model.push(None);
                    lp.call_later(Duration::MAX, move |_| f.borrow_mut().push(i))
                } else if r == 1 {
                    // In the past: due at once.
                    model.push(Some((0, i)));
                    lp.call_at(start, move |_| f.borrow_mut().push(i))
                } else {
                    model.push(Some((ms, i)));
                    lp.call_at(start + Duration::from_millis(ms), move |_| {
                        f.borrow_mut().push(i)
                    })
                };
                handles.push(h);
                // Cancel a random earlier timer now and then, in the run or the heap.
                if lcg(&mut x).is_multiple_of(4) {
                    let j = (lcg(&mut x) as usize) % handles.len();
                    handles[j].cancel();
                    if !fired.borrow().contains(&j) {
                        model[j] = None;
                    }
                }
            }
            // Fire a slice: advance part way, in a few steps.
            for _ in 0..3 {
                now_ms += 150;
                clock.advance(Duration::from_millis(150));
                run_iterations(&lp, 2);
                batches.push(fired.borrow().len());
            }
        }
        clock.advance(Duration::from_secs(100_000));
        run_iterations(&lp, 3);
        let expect: Vec<(u64, usize)> = model.iter().flatten().copied().collect();
        let mut want: Vec<usize> = expect.iter().map(|e| e.1).collect();
        want.sort();
        let got = fired.borrow().clone();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want, "seed {seed}: the set that fired");
        // Each advance fires what is due in (deadline, scheduling) order.
        let due: std::collections::HashMap<usize, u64> =
            expect.iter().map(|&(ms, i)| (i, ms)).collect();
        let mut start_of = 0;
        for &end in batches.iter().chain([&got.len()]) {
            let batch: Vec<(u64, usize)> =
                got[start_of..end].iter().map(|i| (due[i], *i)).collect();
            let mut sorted = batch.clone();
            sorted.sort();
            assert_eq!(
                batch, sorted,
                "seed {seed}: one advance's timers out of order"
            );
            start_of = end;
        }
        let _ = lp.close();
    }
}

#[test]
fn one_advance_fires_everything_due_in_exact_deadline_then_schedule_order() {
    let mut x = 99u64;
    for _ in 0..20 {
        let (lp, clock) = manual_loop();
        let start = lp.time();
        let fired: Rc<RefCell<Vec<(u64, usize)>>> = Rc::default();
        let mut handles = Vec::new();
        let mut cancelled = Vec::new();
        for i in 0..500 {
            let ms = match i % 4 {
                0 => i as u64,
                1 => 1_000 - i as u64,
                2 => 250,
                _ => lcg(&mut x) % 700,
            };
            let f = fired.clone();
            handles.push(lp.call_at(start + Duration::from_millis(ms), move |_| {
                f.borrow_mut().push((ms, i))
            }));
            if lcg(&mut x).is_multiple_of(3) {
                let j = lcg(&mut x) as usize % handles.len();
                handles[j].cancel();
                cancelled.push(j);
            }
        }
        clock.advance(Duration::from_secs(2));
        run_iterations(&lp, 2);
        let got = fired.borrow().clone();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted, "deadline, then scheduling order");
        assert!(got.iter().all(|(_, i)| !cancelled.contains(i)));
        assert_eq!(got.len() + dedup_len(&cancelled), 500);
        assert!(handles.iter().all(|h| h.is_cancelled()
            == cancelled.contains(&handles.iter().position(|g| std::ptr::eq(g, h)).unwrap())));
    }
}

fn dedup_len(v: &[usize]) -> usize {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v.len()
}

#[test]
fn timer_handles_answer_is_cancelled_after_fire_close_and_drop() {
    let (lp, clock) = manual_loop();
    let fired = lp.call_later(Duration::from_millis(1), |_| {});
    let pending = lp.call_later(Duration::from_secs(10), |_| {});
    let never = lp.call_later(Duration::MAX, |_| {});
    let cancelled = lp.call_later(Duration::from_secs(5), |_| {});
    cancelled.cancel();
    clock.advance(Duration::from_millis(2));
    run_iterations(&lp, 2);
    // Due but not yet run at close: dropped unrun.
    let due = lp.call_later(Duration::ZERO, |_| {});
    // A timer scheduled by a destructor that close() runs is refused.
    struct SchedulesOnDrop(Loop, Rc<RefCell<Option<TimerHandle>>>);
    impl Drop for SchedulesOnDrop {
        fn drop(&mut self) {
            let h = self
                .0
                .call_later(Duration::ZERO, |_| panic!("refused timers never run"));
            *self.1.borrow_mut() = Some(h);
        }
    }
    let slot: Rc<RefCell<Option<TimerHandle>>> = Rc::default();
    let on_drop = SchedulesOnDrop(lp.clone(), slot.clone());
    lp.call_later(Duration::from_secs(3), move |_| drop(on_drop));
    assert!(!fired.is_cancelled());
    fired.cancel(); // after it fired: no effect on anything else
    assert!(!pending.is_cancelled());
    lp.close().unwrap();
    assert!(pending.is_cancelled() && never.is_cancelled() && cancelled.is_cancelled());
    assert!(due.is_cancelled());
    let refused = slot.borrow_mut().take().expect("scheduled while closing");
    assert!(refused.is_cancelled());
    refused.cancel();
    drop(lp);
    assert!(pending.is_cancelled() && due.is_cancelled() && refused.is_cancelled());
    pending.cancel();

    // Dropped without close(): the loop's drop records its timers too.
    let (lp, _clock) = manual_loop();
    let a = lp.call_later(Duration::from_secs(1), |_| {});
    let b = lp.call_later(Duration::ZERO, |_| {});
    run_iterations(&lp, 1);
    drop(lp);
    assert!(a.is_cancelled());
    assert!(!b.is_cancelled());
    a.cancel();
    b.cancel();
}

fn capacity(lp: &Loop, name: &str) -> usize {
    lp.debug_buffer_capacities()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c)
        .unwrap_or_else(|| panic!("no buffer {name}"))
}

#[test]
fn endless_schedule_and_cancel_of_far_timers_keeps_the_order_flat() {
    let (lp, _clock) = manual_loop();
    // A few live timers, in the run and in the heap, that stay throughout.
    let keep: Vec<TimerHandle> = [50u64, 40, 30, 3_000]
        .iter()
        .map(|&s| lp.call_later(Duration::from_secs(s), |_| {}))
        .collect();
    let mut high = 0;
    for n in 0..200_000u64 {
        // Rising far deadlines land in the run, falling ones in the heap.
        let d = if n % 2 == 0 {
            10_000 + n
        } else {
            1_000_000 - n
        };
        let h = lp.call_later(Duration::from_secs(d), |_| {});
        h.cancel();
        if n % 1_000 == 0 {
            high = high.max(capacity(&lp, "timer_heap"));
        }
    }
    assert!(high <= 1_024, "the order grew to {high} entries");
    assert!(keep.iter().all(|h| !h.is_cancelled()));
}
