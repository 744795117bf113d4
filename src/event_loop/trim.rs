//! When the loop gives memory back: at the end of each window of use (see
//! `crate::capacity`), checked when the loop polls the OS.

use std::time::{Duration, Instant};

use super::Loop;
use crate::capacity::{FLOOR, WINDOW, is_oversized, shrink_target};
use crate::remote::Queued;

impl Loop {
    /// After a poll that returned at `now`: ends the window of use if it is over.
    pub(super) fn trim_if_due(&self, now: Instant) {
        let inner = &*self.inner;
        if now < inner.trim_at.get() {
            return;
        }
        inner.trim_at.set(now + WINDOW);
        inner.ready.borrow_mut().trim();
        inner.timers.borrow_mut().trim();

        // The threadsafe queue: the shards and the loop's spare buffer swap places on
        // each drain, so one peak (the largest batch) sizes them all.
        let mut peak = inner.remote_peak.get();
        let recent = peak.recent();
        let drained = peak.end_window(inner.drained.borrow().capacity(), 0);
        inner.remote_peak.set(peak);
        if drained.is_some() {
            // Empty between iterations: nothing goes with it but memory.
            let spare: Vec<Queued> = std::mem::take(&mut *inner.drained.borrow_mut());
            drop(spare);
        }
        if is_oversized(inner.shard_capacity.get(), recent) {
            inner.shard_capacity.set(inner.shared.trim(recent));
        }
        let mut recycled = inner.recycled.borrow_mut();
        if let Some(keep) = shrink_target(recycled.capacity(), recent.max(recycled.len())) {
            recycled.shrink_to(keep);
        }
        drop(recycled);
        inner.shared.trim_pool(recent);
    }

    /// How long an idle loop may block before a window ends, when it holds memory
    /// that the window's end would give back; `None` when it holds none (or waits
    /// for nothing). Reads the clock only then.
    pub(super) fn trim_wait(&self) -> Option<Duration> {
        let inner = &*self.inner;
        let spare = inner.ready.borrow().is_oversized()
            || inner.timers.borrow().is_oversized()
            || is_oversized(inner.drained.borrow().capacity(), 0)
            || is_oversized(inner.recycled.borrow().capacity(), 0)
            || is_oversized(inner.shard_capacity.get(), 0)
            || inner.shared.pool_len() > FLOOR;
        if !spare {
            return None;
        }
        Some(
            inner
                .trim_at
                .get()
                .saturating_duration_since(Instant::now()),
        )
    }

    /// Releases the threadsafe queue's loop-side buffers (at `close()`).
    pub(super) fn release_remote_buffers(&self) {
        let inner = &*self.inner;
        let drained: Vec<Queued> = std::mem::take(&mut *inner.drained.borrow_mut());
        let recycled = std::mem::take(&mut *inner.recycled.borrow_mut());
        inner.shard_capacity.set(0);
        drop(drained);
        drop(recycled);
    }

    /// The capacities of the loop's buffers, by name, in entries (for tests).
    #[doc(hidden)]
    pub fn debug_buffer_capacities(&self) -> Vec<(&'static str, usize)> {
        let inner = &*self.inner;
        let (slots, heap) = inner.timers.borrow().capacities();
        let (shards, pool) = inner.shared.capacities();
        vec![
            ("ready", inner.ready.borrow().capacity()),
            ("timer_slots", slots),
            ("timer_heap", heap),
            ("remote_shards", shards),
            ("remote_pool", pool),
            ("remote_drained", inner.drained.borrow().capacity()),
            ("remote_recycled", inner.recycled.borrow().capacity()),
        ]
    }
}
