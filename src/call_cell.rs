//! `CallCell`: the state of one `call_soon_threadsafe` call, shared by the remote
//! queue (the loop's side) and the call's `RemoteHandle` (any thread), and recycled
//! for a later call once nobody else can see it.
//!
//! The closure sits under a small mutex: whoever takes it (the loop to run it,
//! `cancel` from any thread, `close()` to discard it) takes it alone, so a call runs
//! or is dropped unrun, never both. The cancel flag is a separate atomic that
//! `is_cancelled` reads without the lock; it is set by `cancel` (always, as asyncio's
//! `Handle.cancel()`) and by `discard` (only if the closure was still there).
//!
//! # Recycling
//! After the loop runs a call it asks [`reusable`]: the cell may go back to a pool
//! only if the queue's reference is the last one (no handle left). That check reads
//! the reference count, and an acquire fence after it pairs with the release
//! decrement of the handle's drop, so everything the handle's thread did to the cell
//! (a cancel setting the flag) happens before the next [`fill`](CallCell::fill),
//! which clears the flag: a recycled cell never carries a stale cancel flag into the
//! next call. The model at the bottom checks it (`.ci/loom`).

use std::panic::Location;

use crate::sync_shim::{Arc, AtomicBool, Mutex, Ordering, fence};

/// One call's closure (`F`) and cancel flag; see the module docs.
pub(crate) struct CallCell<F> {
    state: Mutex<CellState<F>>,
    cancelled: AtomicBool,
}

struct CellState<F> {
    /// The closure, until it runs, is cancelled or discarded.
    f: Option<F>,
    /// Where the call was made (for the loop's error reports).
    location: &'static Location<'static>,
}

impl<F> CallCell<F> {
    /// An empty cell.
    pub(crate) fn new() -> CallCell<F> {
        CallCell {
            state: Mutex::new(CellState {
                f: None,
                location: Location::caller(),
            }),
            cancelled: AtomicBool::new(false),
        }
    }

    /// Puts a new call in a fresh or recycled cell, whose only reference the caller
    /// holds (so nobody sees the flag being cleared).
    pub(crate) fn fill(&self, f: F, location: &'static Location<'static>) {
        let mut st = self.state.lock();
        st.f = Some(f);
        st.location = location;
        self.cancelled.store(false, Ordering::Relaxed);
    }

    /// Loop side: takes the closure to run it, unless it was cancelled or discarded.
    pub(crate) fn take_to_run(&self) -> Option<(F, &'static Location<'static>)> {
        let mut st = self.state.lock();
        let location = st.location;
        st.f.take().map(|f| (f, location))
    }

    /// The call will never run (the loop closed first): hands back the closure for
    /// the caller to drop, and marks the call cancelled if it had not run.
    pub(crate) fn take_discarded(&self) -> Option<F> {
        let f = self.state.lock().f.take();
        if f.is_some() {
            self.cancelled.store(true, Ordering::Release);
        }
        f
    }

    /// Cancels the call if it has not started: hands back the closure, if still
    /// there, for the caller to drop (without the lock).
    pub(crate) fn take_cancelled(&self) -> Option<F> {
        self.cancelled.store(true, Ordering::Release);
        self.state.lock().f.take()
    }

    /// Whether the call was cancelled or discarded.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

/// Loop side, after the call ran: whether `cell` may be recycled (the caller's
/// reference is the only one). See the module docs.
pub(crate) fn reusable<F>(cell: &Arc<CallCell<F>>) -> bool {
    if Arc::strong_count(cell) != 1 {
        return false;
    }
    // Pairs with the release decrement of the last other reference's drop: what its
    // thread did to the cell happens before the cell's next `fill`.
    fence(Ordering::Acquire);
    true
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    /// A handle cancels its call and is dropped while the loop runs the call and
    /// recycles the cell for the next call: the next call's handle is not cancelled,
    /// and the first call ran or was cancelled, never both.
    ///
    /// (loom's `Arc::strong_count` synchronizes like an acquire load, std's is
    /// relaxed; so this model cannot show that [`reusable`]'s fence is needed, only
    /// that the protocol holds with it. The module docs argue the fence.)
    #[test]
    fn loom_a_recycled_cell_carries_no_stale_cancel_flag() {
        loom::model(|| {
            let cell = Arc::new(CallCell::<u32>::new());
            cell.fill(1, here());
            let handle = cell.clone();
            let canceller = thread::spawn(move || {
                let dropped = handle.take_cancelled();
                drop(handle);
                dropped.is_some()
            });
            // The loop.
            let ran = cell.take_to_run().is_some();
            let recycled = reusable(&cell);
            if recycled {
                cell.fill(2, here()); // the next call, from the pool
                assert!(!cell.is_cancelled(), "a new call starts uncancelled");
            }
            let cancelled_unrun = canceller.join().unwrap();
            assert!(
                ran != cancelled_unrun,
                "ran: {ran}, cancelled unrun: {cancelled_unrun}"
            );
            if recycled {
                assert!(
                    !cell.is_cancelled(),
                    "the old call's cancel reached the new call"
                );
                assert_eq!(cell.take_to_run().map(|(f, _)| f), Some(2));
            } else {
                assert!(cell.is_cancelled(), "the handle cancelled");
            }
        });
    }

    /// `cancel` from another thread racing with `discard` (the loop closing): the
    /// closure is dropped once, and the handle reports cancelled either way.
    #[test]
    fn loom_cancel_racing_discard_drops_once() {
        loom::model(|| {
            let cell = Arc::new(CallCell::<u32>::new());
            cell.fill(1, here());
            let handle = cell.clone();
            let canceller = thread::spawn(move || handle.take_cancelled().is_some());
            let discarded = cell.take_discarded().is_some();
            let cancelled = canceller.join().unwrap();
            assert!(discarded != cancelled, "dropped by both or by neither");
            assert!(cell.is_cancelled());
        });
    }
}
