//! Handles: what `call_soon`, `call_later`, `add_reader`, ... return, to cancel with.

use std::cell::{Cell, OnceCell};
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

/// What every [`Handle`] of one loop shares: the loop (weakly), and, once the loop is
/// closed or dropped, which of its callbacks it dropped without running them. It
/// outlives the loop as long as a handle does, so that a handle still answers
/// `is_cancelled` after the loop is gone. Cloning it is what `Rc::downgrade` of the
/// loop would cost: one count, no allocation.
pub(crate) struct HandleState {
    lp: Weak<Inner>,
    /// The loop clock's epoch: a [`TimerHandle`] keeps its deadline in timer-store
    /// nanoseconds and rebuilds the `Instant` from this.
    epoch: Instant,
    /// Set once, by `close()` or by the loop's drop, whichever comes first.
    dropped: OnceCell<Dropped>,
}

/// The callbacks that the loop dropped unrun when it closed.
struct Dropped {
    /// The sequence number of the first ready-queue entry that was dropped: every
    /// `call_soon` entry from it on was dropped unrun, every one before it was popped.
    first_seq: u64,
    /// The ids of the timers still in the store, sorted (fired ones waiting in the
    /// ready queue included: a timer leaves the store only when it runs or is cancelled).
    timers: Box<[u64]>,
}

impl HandleState {
    pub(crate) fn new(lp: Weak<Inner>, epoch: Instant) -> Rc<HandleState> {
        Rc::new(HandleState {
            lp,
            epoch,
            dropped: OnceCell::new(),
        })
    }

    /// Records what the loop dropped unrun: the ready queue from sequence `first_seq`
    /// on, and the timers `timers`. Only the first call counts.
    pub(crate) fn dropped_unrun(&self, first_seq: u64, mut timers: Vec<u64>) {
        timers.sort_unstable();
        let _ = self.dropped.set(Dropped {
            first_seq,
            timers: timers.into_boxed_slice(),
        });
    }

    fn dropped_call(&self, seq: u64) -> bool {
        self.dropped.get().is_some_and(|d| seq >= d.first_seq)
    }

    fn dropped_timer(&self, id: u64) -> bool {
        self.dropped
            .get()
            .is_some_and(|d| d.timers.binary_search(&id).is_ok())
    }
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
/// After [`close()`](crate::Loop::close) (or once the loop is dropped), the handle of
/// every callback that was dropped without running reports
/// [`is_cancelled`](Handle::is_cancelled); the handle of one that ran keeps reporting
/// false.
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
    /// `None` for a handle to nothing (work refused while the loop closes).
    state: Option<Rc<HandleState>>,
    kind: Kind,
    cancelled: Cell<bool>,
}

impl Handle {
    pub(crate) fn new(state: Rc<HandleState>, target: Target) -> Handle {
        Handle {
            state: Some(state),
            kind: Kind::Core(target),
            cancelled: Cell::new(false),
        }
    }

    /// A handle to an upper layer's registration.
    pub(crate) fn upper(registration: Rc<dyn Registration>) -> Handle {
        Handle {
            state: None,
            kind: Kind::Upper(registration),
            cancelled: Cell::new(false),
        }
    }

    /// A handle to nothing that reports cancelled: for work refused while the loop
    /// closes.
    pub(crate) fn refused() -> Handle {
        Handle {
            state: None,
            kind: Kind::Core(Target::Call { seq: u64::MAX }),
            cancelled: Cell::new(true),
        }
    }

    /// Cancels the callback (or removes the reader/writer) if it is still pending.
    ///
    /// The closure is dropped before this returns. If its destructor panics, the
    /// panic is handed to the loop's exception handler, and `cancel` returns normally.
    pub fn cancel(&self) {
        if self.cancelled.replace(true) {
            return;
        }
        match &self.kind {
            Kind::Core(target) => {
                if let Some(inner) = self.state.as_ref().and_then(|s| s.lp.upgrade()) {
                    Inner::cancel(inner, *target);
                }
            }
            Kind::Upper(registration) => registration.cancel(),
        }
    }

    /// Whether [`cancel`](Handle::cancel) was called, whether the loop dropped the
    /// callback without running it (`close()`, or the loop itself dropped), or, for a
    /// reader or writer, whether it has been removed or replaced.
    pub fn is_cancelled(&self) -> bool {
        if self.cancelled.get() {
            return true;
        }
        let target = match &self.kind {
            Kind::Core(target) => *target,
            Kind::Upper(registration) => return !registration.is_current(),
        };
        let Some(state) = &self.state else {
            return true;
        };
        match target {
            Target::Call { seq } => state.dropped_call(seq),
            Target::Timer { id, .. } => state.dropped_timer(id),
            Target::Io { key, id, write } => match state.lp.upgrade() {
                Some(inner) => !inner.io_is_current(key, id, write),
                None => true,
            },
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
    state: Rc<HandleState>,
    /// The timer's id in the timer store (generation-checked with `key`);
    /// [`REFUSED`] for a handle to nothing.
    id: u64,
    /// The deadline in timer-store nanoseconds (`crate::clock`), from which
    /// [`when`](TimerHandle::when) rebuilds the `Instant`.
    when: u64,
    /// The timer's slot in the timer store.
    key: u32,
    cancelled: Cell<bool>,
}

/// The id of a handle to nothing: timer ids count from zero and never reach the top
/// bit, so it names no timer.
const REFUSED: u64 = u64::MAX;

impl TimerHandle {
    /// The handle of timer `(key, id)` due at `when` (timer-store nanoseconds). Four
    /// words (an `Instant` and a [`Handle`] would be seven): programs keep one per
    /// pending timer (a timeout per request), and a burst of 200,000 timers touches
    /// 4.8 MB less, which on a VM is mostly page faults saved.
    pub(crate) fn new(state: Rc<HandleState>, key: u32, id: u64, when: u64) -> TimerHandle {
        TimerHandle {
            state,
            id,
            when,
            key,
            cancelled: Cell::new(false),
        }
    }

    /// A handle to nothing, already cancelled (work refused while the loop closes).
    pub(crate) fn refused(state: Rc<HandleState>, when: u64) -> TimerHandle {
        TimerHandle {
            state,
            id: REFUSED,
            when,
            key: 0,
            cancelled: Cell::new(true),
        }
    }

    fn target(&self) -> Target {
        Target::Timer {
            key: self.key,
            id: self.id,
        }
    }

    /// The timer's identity as plain, `Send` data: cancels it later, on the loop's
    /// thread, through `Loop::cancel_timer` (generation-checked, so a key whose timer
    /// already ran cancels nothing).
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn key(&self) -> TimerKey {
        TimerKey(self.target())
    }

    /// Cancels the timer if it has not run yet. Twice is a no-op. As
    /// [`Handle::cancel`], a panic in the closure's destructor goes to the exception
    /// handler.
    pub fn cancel(&self) {
        if self.cancelled.replace(true) {
            return;
        }
        if let Some(inner) = self.state.lp.upgrade() {
            Inner::cancel(inner, self.target());
        }
    }

    /// Whether [`cancel`](TimerHandle::cancel) was called, or the loop dropped the
    /// timer without running it (`close()`, or the loop itself dropped).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.get() || self.state.dropped_timer(self.id)
    }

    /// When the timer is due, on the loop's clock: the `Instant` given to
    /// [`call_at`](crate::Loop::call_at), or `time()` plus the delay of
    /// [`call_later`](crate::Loop::call_later). The clock's range ends about 438 years
    /// after the loop's creation; a deadline past it (a timer that never fires) reads
    /// as that end.
    pub fn when(&self) -> Instant {
        crate::clock::instant_at(self.state.epoch, self.when)
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle")
            .field("when", &self.when())
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
    ///
    /// The closure is dropped on the calling thread, after the call is marked
    /// cancelled; a panic in its destructor propagates to the caller (the loop's
    /// exception handler lives on the loop's thread, and this may be another).
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
