//! A task's state: named bits in one word, each with the invariant it stands for.
//!
//! Every bit but [`SCHEDULED`](State::SCHEDULED) is set at most once and never
//! cleared: a task only moves forward (asked to cancel, done, its result taken, its
//! handle dropped). The word lives in the task's `Head`, read and written only on the
//! loop's thread (wakes from other threads reach it through the remote queue).

use std::cell::Cell;

/// The state bits of one task (a `Cell`: the task is shared by the loop and its
/// [`Task`](crate::Task) handle, both on the loop's thread).
pub(super) struct State(Cell<u8>);

impl State {
    /// A step is queued on the ready queue (or on its way there through the remote
    /// queue). Set by a wake that finds it clear (which then queues the step), cleared
    /// when the step starts, so that a wake during the poll queues the next step:
    /// however many wakes arrive, at most one step is queued. Set from creation (the
    /// first step is queued by `create_task`).
    pub(super) const SCHEDULED: u8 = 1 << 0;

    /// `cancel()` was called before the task was done: its next step drops the
    /// future instead of polling it. Never cleared; a task cancelled during its poll
    /// whose poll completes keeps its output (`DONE` without `CANCELLED`).
    pub(super) const CANCEL_REQUESTED: u8 = 1 << 1;

    /// The task has its result (output, cancellation or panic) and will never be
    /// polled again; its future has been dropped. Set exactly once.
    pub(super) const DONE: u8 = 1 << 2;

    /// The task ended by cancellation (its result is `Err(TaskError::Cancelled)`).
    /// Only ever set together with `DONE`.
    pub(super) const CANCELLED: u8 = 1 << 3;

    /// An `.await` of the task moved its result out: nothing can be handed it any
    /// more (a later `add_done_callback` is a programming error). Implies `DONE`
    /// and `RETRIEVED`.
    pub(super) const TAKEN: u8 = 1 << 4;

    /// Someone has seen or will see the result (awaited the task, added a
    /// done-callback, or a `TaskGroup` took charge of it), so a panic needs no
    /// "Task exception was never retrieved" report; set too once that report is
    /// made, so it is made at most once.
    pub(super) const RETRIEVED: u8 = 1 << 5;

    /// The [`Task`](crate::Task) handle was dropped: nobody can await the task or
    /// add callbacks any more; the loop keeps it running to completion.
    pub(super) const DETACHED: u8 = 1 << 6;

    /// A state with exactly `bits` set.
    pub(super) const fn new(bits: u8) -> State {
        State(Cell::new(bits))
    }

    /// Whether `bit` is set.
    #[inline]
    pub(super) fn is(&self, bit: u8) -> bool {
        self.0.get() & bit != 0
    }

    /// Sets `bit`.
    #[inline]
    pub(super) fn set(&self, bit: u8) {
        self.0.set(self.0.get() | bit);
    }

    /// Sets `bit`; returns whether it was already set.
    #[inline]
    pub(super) fn insert(&self, bit: u8) -> bool {
        let old = self.0.get();
        self.0.set(old | bit);
        old & bit != 0
    }

    /// Clears `bit` (only [`SCHEDULED`](State::SCHEDULED) is ever cleared); returns
    /// whether any bit of `test` was set (one load for a step's start and its checks).
    #[inline]
    pub(super) fn clear_and_test(&self, bit: u8, test: u8) -> bool {
        let old = self.0.get();
        self.0.set(old & !bit);
        old & test != 0
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn bits_are_distinct_and_independent() {
        let all = [
            State::SCHEDULED,
            State::CANCEL_REQUESTED,
            State::DONE,
            State::CANCELLED,
            State::TAKEN,
            State::RETRIEVED,
            State::DETACHED,
        ];
        for (i, &a) in all.iter().enumerate() {
            assert_eq!(a.count_ones(), 1);
            for &b in &all[i + 1..] {
                assert_eq!(a & b, 0);
            }
        }
        let s = State::new(State::SCHEDULED);
        assert!(s.is(State::SCHEDULED) && !s.is(State::DONE));
        assert!(!s.insert(State::DONE), "DONE was clear");
        assert!(s.insert(State::DONE), "DONE was set");
        assert!(
            s.clear_and_test(State::SCHEDULED, State::DONE | State::CANCELLED),
            "DONE is among those tested"
        );
        assert!(!s.clear_and_test(State::SCHEDULED, State::SCHEDULED));
        s.set(State::TAKEN);
        assert!(s.is(State::TAKEN));
        assert!(!s.is(State::SCHEDULED) && s.is(State::DONE));
    }
}
