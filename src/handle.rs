//! Handles: what `call_soon`, `call_later`, `add_reader`, ... return, to cancel with.

use std::cell::Cell;
use std::fmt;
use std::rc::{Rc, Weak};
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

/// A registration an upper layer keeps itself (a signal handler), cancelled through
/// its own state rather than the core's stores.
pub(crate) trait Registration {
    /// Removes the registration if it is still the current one.
    fn cancel(&self);
    /// Whether it is still registered (not removed, replaced, or dropped by `close()`).
    fn is_current(&self) -> bool;
}

/// What a handle names: something in the core's stores, or an upper layer's
/// registration.
enum Kind {
    Core(Target),
    Upper(Rc<dyn Registration>),
}

/// A scheduled callback, reader, writer or signal handler, returned so that it can be
/// cancelled.
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
/// For a signal handler ([`Loop::add_signal_handler`](crate::Loop::add_signal_handler)),
/// cancelling is `remove_signal_handler` for that registration only, generation-checked
/// the same way.
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
    kind: Kind,
    cancelled: Cell<bool>,
}

impl Handle {
    pub(crate) fn new(lp: Weak<Inner>, target: Target) -> Handle {
        Handle {
            lp,
            kind: Kind::Core(target),
            cancelled: Cell::new(false),
        }
    }

    /// A handle to an upper layer's registration.
    pub(crate) fn upper(registration: Rc<dyn Registration>) -> Handle {
        Handle {
            lp: Weak::new(),
            kind: Kind::Upper(registration),
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
        match &self.kind {
            Kind::Core(target) => {
                if let Some(inner) = self.lp.upgrade() {
                    inner.cancel(*target);
                }
            }
            Kind::Upper(registration) => registration.cancel(),
        }
    }

    /// Whether [`cancel`](Handle::cancel) was called, or, for a reader or writer,
    /// whether it has been removed or replaced.
    pub fn is_cancelled(&self) -> bool {
        if self.cancelled.get() {
            return true;
        }
        match self.kind {
            Kind::Core(Target::Call { .. } | Target::Timer { .. }) => false,
            Kind::Core(Target::Io { key, id, write }) => match self.lp.upgrade() {
                Some(inner) => !inner.io_is_current(key, id, write),
                None => true,
            },
            Kind::Upper(ref registration) => !registration.is_current(),
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Handle");
        if let Kind::Core(target) = &self.kind {
            d.field("target", target);
        }
        d.field("cancelled", &self.is_cancelled()).finish()
    }
}

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
