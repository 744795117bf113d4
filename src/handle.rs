//! Handles: what `call_soon`, `call_later`, `add_reader`, ... return, to cancel with.

use std::cell::Cell;
use std::fmt;
use std::rc::Weak;
use std::sync::Arc;
use std::time::Instant;

use crate::event_loop::Inner;
use crate::remote::RemoteCall;

/// What a [`Handle`] cancels.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// A `call_soon` callback: its sequence number in the ready queue.
    Call { seq: u64 },
    /// A timer in the timer store.
    Timer { key: u32, id: u64 },
    /// A reader (`write == false`) or writer.
    Io { key: u32, id: u64, write: bool },
}

/// A scheduled callback, reader or writer, returned so that it can be cancelled.
///
/// `cancel()` before the callback starts means it never runs, and its closure (with
/// everything it captured) is dropped at once. Cancelling twice, or after the callback
/// ran, does nothing. Dropping a `Handle` does **not** cancel: it just lets go.
///
/// For a reader or writer, cancelling is [`Loop::remove_reader`](crate::Loop::remove_reader)
/// / [`remove_writer`](crate::Loop::remove_writer) for that registration only:
/// handles are generation-checked, so cancelling a handle whose reader was replaced by
/// a later `add_reader` leaves the new reader alone, and the replaced handle reports
/// [`is_cancelled`](Handle::is_cancelled).
///
/// A `Handle` is `!Send`: it belongs to the loop's thread. Other threads cancel through
/// a [`RemoteHandle`].
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// let lp = evloop::Loop::new().unwrap();
/// let ran = Rc::new(Cell::new(false));
/// let r = ran.clone();
/// let h = lp.call_soon(move |_| r.set(true));
/// h.cancel();
/// assert!(h.is_cancelled());
/// lp.stop();
/// lp.run_forever().unwrap();
/// assert!(!ran.get());
/// assert_eq!(Rc::strong_count(&ran), 1, "the closure was dropped at cancel()");
/// ```
pub struct Handle {
    lp: Weak<Inner>,
    target: Target,
    cancelled: Cell<bool>,
}

impl Handle {
    pub(crate) fn new(lp: Weak<Inner>, target: Target) -> Handle {
        Handle {
            lp,
            target,
            cancelled: Cell::new(false),
        }
    }

    /// A handle to nothing that reports cancelled: for work refused while the loop
    /// closes.
    pub(crate) fn refused() -> Handle {
        let h = Handle::new(Weak::new(), Target::Call { seq: u64::MAX });
        h.cancelled.set(true);
        h
    }

    /// Cancels the callback (or removes the reader/writer) if it is still pending.
    pub fn cancel(&self) {
        if self.cancelled.replace(true) {
            return;
        }
        if let Some(inner) = self.lp.upgrade() {
            inner.cancel(self.target);
        }
    }

    /// Whether [`cancel`](Handle::cancel) was called, or, for a reader or writer,
    /// whether it has been removed or replaced.
    pub fn is_cancelled(&self) -> bool {
        if self.cancelled.get() {
            return true;
        }
        match self.target {
            Target::Call { .. } | Target::Timer { .. } => false,
            Target::Io { key, id, write } => match self.lp.upgrade() {
                Some(inner) => !inner.io_is_current(key, id, write),
                None => true,
            },
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("target", &self.target)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// What [`TimerHandle::key`] returns: a timer named by plain data.
#[cfg_attr(not(feature = "hyper"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerKey(pub(crate) Target);

/// A timer scheduled by [`call_later`](crate::Loop::call_later) or
/// [`call_at`](crate::Loop::call_at).
///
/// Cancelling costs O(1), drops the closure at once, and a cancelled timer never
/// makes the loop wake up.
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::Loop::new().unwrap();
/// let t = lp.call_later(Duration::from_secs(60), |_| unreachable!());
/// assert!(t.when() >= lp.time() + Duration::from_secs(59));
/// t.cancel();
/// assert!(t.is_cancelled());
/// ```
pub struct TimerHandle {
    handle: Handle,
    when: Instant,
}

impl TimerHandle {
    pub(crate) fn new(handle: Handle, when: Instant) -> TimerHandle {
        TimerHandle { handle, when }
    }

    /// The timer's identity as plain, `Send` data: cancels it later, on the loop's
    /// thread, through `Loop::cancel_timer` (generation-checked, so a key whose timer
    /// already ran cancels nothing).
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn key(&self) -> TimerKey {
        TimerKey(self.handle.target)
    }

    /// Cancels the timer if it has not run yet. Twice is a no-op.
    pub fn cancel(&self) {
        self.handle.cancel()
    }

    /// Whether [`cancel`](TimerHandle::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.handle.is_cancelled()
    }

    /// When the timer is due, on the loop's clock.
    pub fn when(&self) -> Instant {
        self.when
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle")
            .field("when", &self.when)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// A threadsafe call, returned by
/// [`Remote::call_soon_threadsafe`](crate::Remote::call_soon_threadsafe); `Send + Sync`,
/// so any thread may cancel it.
///
/// `cancel()` before the callback starts on the loop means it never runs, and its
/// closure is dropped at once, on the cancelling thread. A call that the loop dropped
/// without running it (because the loop was closed first) also reports
/// [`is_cancelled`](RemoteHandle::is_cancelled).
pub struct RemoteHandle {
    call: Arc<dyn RemoteCall>,
}

impl RemoteHandle {
    pub(crate) fn new(call: Arc<dyn RemoteCall>) -> RemoteHandle {
        RemoteHandle { call }
    }

    /// Cancels the call if it has not started. Twice is a no-op.
    pub fn cancel(&self) {
        self.call.cancel();
    }

    /// Whether the call was cancelled, or dropped unrun by `close()`.
    pub fn is_cancelled(&self) -> bool {
        self.call.is_cancelled()
    }
}

impl fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
