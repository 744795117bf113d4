//! A wake on the loop's own thread allocates nothing: the task's step reuses the
//! task's own allocation, and its waker is a plain word. Counted with a global
//! allocator that counts the allocations of the current thread only.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use evloop::Loop;

#[path = "util/alloc_count.rs"]
mod alloc_count;
use alloc_count::allocations;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// Pending `n` times, waking itself each time (so each wake schedules one step).
struct WakeSelf {
    left: u32,
}

impl Future for WakeSelf {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.left == 0 {
            return Poll::Ready(());
        }
        self.left -= 1;
        cx.waker().wake_by_ref();
        let w = cx.waker().clone(); // cloning a task's waker allocates nothing either
        drop(w);
        Poll::Pending
    }
}

#[test]
fn waking_a_task_on_its_loop_allocates_nothing() {
    let lp = Loop::new().unwrap();
    let task = lp.create_task(WakeSelf { left: 10_000 });
    // Warm up: the first steps size the ready queue.
    for _ in 0..100 {
        lp.run_once(Some(std::time::Duration::ZERO)).unwrap();
    }
    let before = allocations();
    for _ in 0..5_000 {
        lp.run_once(Some(std::time::Duration::ZERO)).unwrap();
    }
    let during = allocations() - before;
    assert!(
        !task.is_done(),
        "still running: every iteration above was a step"
    );
    assert_eq!(
        during, 0,
        "5,000 wake-and-step cycles allocated {during} times"
    );
}
