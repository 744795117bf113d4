//! Scheduling a timer whose closure captures up to three words (a deadline and a
//! word, say) allocates nothing once the timer store has grown: the closure lives in
//! the timer's slot. Counted with a global allocator that counts the allocations of
//! the current thread only.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::Loop;

#[path = "util/alloc_count.rs"]
mod alloc_count;
use alloc_count::allocations;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

#[test]
fn a_timer_capturing_three_words_allocates_nothing_and_still_runs_and_drops_once() {
    let lp = Loop::new().unwrap();
    let fired = Rc::new(Cell::new(0u32));
    let start = Instant::now() + Duration::from_millis(1);
    let n = 1_500u32; // the warmed store has room for n and the stale entries left over
    let schedule = |lp: &Loop, i: u32| {
        let (f, due) = (fired.clone(), start + Duration::from_micros(u64::from(i)));
        // Captures an `Rc` and an `Instant`: three words.
        lp.call_at(due, move |_| {
            assert!(Instant::now() >= due, "never before its deadline");
            f.set(f.get() + 1);
        })
    };
    // Warm up: grow the store, then empty it. (Deadlines count up across batches, as
    // a program's do: each timer joins the store's sorted run.)
    let warm: Vec<_> = (0..n).map(|i| schedule(&lp, i)).collect();
    warm.iter().for_each(|h| h.cancel());
    drop(warm);
    let mut handles = Vec::with_capacity(n as usize);
    let before = allocations();
    for i in 0..n {
        handles.push(schedule(&lp, n + i));
    }
    for h in handles.iter().step_by(2) {
        h.cancel();
    }
    let during = allocations() - before;
    assert_eq!(
        during,
        0,
        "{n} call_at + {} cancels allocated {during} times",
        n / 2
    );
    assert_eq!(
        Rc::strong_count(&fired),
        1 + n as usize / 2,
        "cancelled closures dropped at once"
    );
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    lp.call_at(start + Duration::from_micros(u64::from(2 * n)), move |lp| {
        d.set(true);
        lp.stop();
    });
    lp.run_forever().unwrap();
    assert!(done.get());
    assert_eq!(fired.get(), n / 2, "every live timer fired, once");
    assert_eq!(Rc::strong_count(&fired), 1, "fired closures dropped");
}
