//! Giving memory back: buffers that grew for a burst shrink once it is over.
//!
//! A queue that held a million callbacks keeps room for a million unless told
//! otherwise. The loop's buffers (the ready queue, the timer store's slab and heap,
//! the threadsafe queue's shards and the loop's spare buffer for them) each track
//! their peak use with a [`Peak`]. Every [`WINDOW`] of real time, when the loop polls
//! the OS, a window ends: a buffer whose capacity exceeds both [`FLOOR`] and four
//! times its peak over the last two windows shrinks to twice that peak (at least
//! `FLOOR`).
//!
//! Hysteresis: a buffer grown by doubling holds less than four times its peak, so
//! steady traffic never shrinks (nor regrows) its buffers; only a fall in use that
//! lasts a whole window does, and then once. An idle loop that still holds spare
//! memory blocks no longer than the current window, so that memory comes back even
//! if nothing else happens (a few extra wake-ups after a burst, none after that).

use std::time::Duration;

/// Entries a buffer may always keep, however little it is used.
pub(crate) const FLOOR: usize = 1024;

/// How long a window of use lasts. Memory held for a burst comes back two to three
/// windows after the burst ends.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);

/// The peak use of one buffer over the current and the previous window.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Peak {
    cur: usize,
    prev: usize,
}

impl Peak {
    /// Records a use of `used` entries.
    #[inline]
    pub(crate) fn note(&mut self, used: usize) {
        if used > self.cur {
            self.cur = used;
        }
    }

    /// The peak use over the current and the previous window.
    pub(crate) fn recent(&self) -> usize {
        self.cur.max(self.prev)
    }

    /// Ends a window, `used` being the present use. Returns the capacity to shrink
    /// to if `capacity` is oversized for the peak of the two windows.
    pub(crate) fn end_window(&mut self, capacity: usize, used: usize) -> Option<usize> {
        self.note(used);
        let peak = self.recent();
        self.prev = self.cur;
        self.cur = used;
        shrink_target(capacity, peak)
    }
}

/// The capacity to shrink a buffer of `capacity` to, if it is oversized for a peak
/// use of `peak`: over `FLOOR` and over four times the peak.
pub(crate) fn shrink_target(capacity: usize, peak: usize) -> Option<usize> {
    let limit = FLOOR.max(peak.saturating_mul(4));
    (capacity > limit).then(|| FLOOR.max(peak.saturating_mul(2)))
}

/// Whether a buffer of `capacity` holding `used` entries has memory that the coming
/// windows would give back if its use stays this low.
pub(crate) fn is_oversized(capacity: usize, used: usize) -> bool {
    shrink_target(capacity, used).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffers_are_kept() {
        assert_eq!(shrink_target(FLOOR, 0), None);
        assert!(!is_oversized(FLOOR, 0));
        assert_eq!(shrink_target(FLOOR + 1, 0), Some(FLOOR));
    }

    #[test]
    fn a_burst_shrinks_after_two_quiet_windows() {
        let mut p = Peak::default();
        p.note(1_000_000);
        let cap = 1 << 20;
        assert_eq!(p.end_window(cap, 0), None, "the burst's own window");
        assert_eq!(p.end_window(cap, 0), None, "the burst is still recent");
        assert_eq!(p.end_window(cap, 0), Some(FLOOR));
    }

    #[test]
    fn steady_use_never_shrinks_a_doubled_buffer() {
        let mut p = Peak::default();
        // Use between 3,000 and 5,000: grown by doubling, the capacity is 8,192.
        for i in 0..100 {
            p.note(3_000 + (i * 37) % 2_000);
            if i % 7 == 0 {
                assert_eq!(p.end_window(8_192, 3_000), None);
            }
        }
    }

    #[test]
    fn what_is_in_use_now_is_kept() {
        let mut p = Peak::default();
        assert_eq!(p.end_window(1 << 20, 300_000), None);
        assert_eq!(p.end_window(1 << 20, 300_000), None);
        // 300,000 were in use when the window began, then in the one before.
        assert_eq!(p.end_window(1 << 20, 10_000), None);
        assert_eq!(p.end_window(1 << 20, 10_000), None);
        assert_eq!(p.end_window(1 << 20, 10_000), Some(20_000));
    }
}
