//! Wakers that count their wakes and their clones, for tests that check what a
//! future keeps of the wakers it was polled with (included with
//! `#[path = "util/waker_counts.rs"] mod waker_counts;`).
#![allow(dead_code)] // not every test binary uses every helper

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// A waker that counts its wakes; each awaiter has its own.
#[derive(Default)]
pub struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// `n` fresh counters.
pub fn counters(n: usize) -> Vec<Arc<Counting>> {
    (0..n).map(|_| Arc::default()).collect()
}

/// How many clones of `c`'s waker are kept somewhere.
pub fn held(c: &Arc<Counting>) -> usize {
    Arc::strong_count(c) - 1
}

/// Clones kept of all the counters' wakers.
pub fn total_held(cs: &[Arc<Counting>]) -> usize {
    cs.iter().map(held).sum()
}

/// How many times `c`'s waker was woken.
pub fn wakes(c: &Counting) -> usize {
    c.0.load(Ordering::SeqCst)
}

/// Wakes of all the counters' wakers.
pub fn total_wakes(cs: &[Arc<Counting>]) -> usize {
    cs.iter().map(|c| wakes(c)).sum()
}

/// Polls `f` once with `c`'s waker.
pub fn poll<F: Future + ?Sized>(f: Pin<&mut F>, c: &Arc<Counting>) -> Poll<F::Output> {
    let waker = Waker::from(c.clone());
    f.poll(&mut Context::from_waker(&waker))
}
