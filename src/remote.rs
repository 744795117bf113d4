//! `Remote`: how other threads reach a loop.
//!
//! Threadsafe calls travel through an unbounded crossbeam channel, drained by the
//! loop once per iteration. A loop blocked in poll is woken through a `mio::Waker`
//! (an eventfd). Wake-ups are coalesced by the `state` flag: producers wake the loop
//! only when it has announced that it is about to sleep, and only the first of them
//! does; a burst of N calls costs at most one syscall, and calls made while the loop
//! is busy cost none.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering, fence};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::Loop;
use crate::errors::Error;
use crate::event_loop::local_loop;
use crate::handle::RemoteHandle;
use crate::ready::Entry;

/// Work sent to the loop from any thread.
pub(crate) trait RemoteCall: Send + Sync {
    /// Runs it on the loop thread.
    fn run(&self, lp: &Loop);
    /// It will never run (the loop closed first): drop what it holds now.
    fn discard(&self);
    /// Cancels it if it has not started.
    fn cancel(&self);
    /// Whether it was cancelled or discarded.
    fn is_cancelled(&self) -> bool;
    /// Where it was sent from.
    fn location(&self) -> &'static Location<'static>;
}

/// A queued remote call. Dropping it unrun discards the call, so a call that the loop
/// never gets to (the loop closed, or the channel was torn down) drops its closure
/// instead of keeping it alive in a handle.
pub(crate) struct Queued(Option<Arc<dyn RemoteCall>>);

impl Queued {
    pub(crate) fn new(call: Arc<dyn RemoteCall>) -> Queued {
        Queued(Some(call))
    }

    /// Runs the call on the loop thread.
    pub(crate) fn run(mut self, lp: &Loop) {
        if let Some(call) = self.0.take() {
            call.run(lp);
        }
    }

    pub(crate) fn location(&self) -> &'static Location<'static> {
        self.0.as_ref().map_or(Location::caller(), |c| c.location())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(call) = self.0.take() {
            call.discard();
        }
    }
}

/// A closure sent by `call_soon_threadsafe`.
struct RemoteCell<F> {
    f: Mutex<Option<F>>,
    cancelled: AtomicBool,
    location: &'static Location<'static>,
}

impl<F: FnOnce(&Loop) + Send + 'static> RemoteCall for RemoteCell<F> {
    fn run(&self, lp: &Loop) {
        let f = self.f.lock().take();
        if let Some(f) = f {
            f(lp);
        }
    }

    fn discard(&self) {
        let f = self.f.lock().take();
        if f.is_some() {
            self.cancelled.store(true, Ordering::Release);
        }
        drop(f);
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        let f = self.f.lock().take();
        drop(f);
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

/// The loop is running callbacks or polling without blocking: it will look at the
/// queue before it sleeps, so producers need not wake it.
const AWAKE: u8 = 0;
/// The loop is blocked in poll, or has returned control to its host: the next
/// producer must wake it.
const SLEEPING: u8 = 1;
/// A producer has woken the sleeping loop; later producers need not.
const NOTIFIED: u8 = 2;

/// The part of a loop that other threads hold.
pub(crate) struct Shared {
    tx: Sender<Queued>,
    waker: mio::Waker,
    /// `AWAKE`, `SLEEPING` or `NOTIFIED`; see the constants.
    state: AtomicU8,
    closed: AtomicBool,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> (Arc<Shared>, Receiver<Queued>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            tx,
            waker,
            state: AtomicU8::new(SLEEPING),
            closed: AtomicBool::new(false),
        });
        (shared, rx)
    }

    /// Producer side, after queueing: wake the loop if it sleeps and nobody has yet.
    pub(crate) fn notify(&self) {
        // Pairs with the fence in `prepare_sleep`: either the loop sees our message
        // when it re-checks the queue, or we see its SLEEPING.
        fence(Ordering::SeqCst);
        if self.state.load(Ordering::Relaxed) == SLEEPING
            && self
                .state
                .compare_exchange(SLEEPING, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.force_wake();
        }
    }

    /// Wakes the loop (or makes its fd readable) whatever its state.
    pub(crate) fn force_wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("evloop: failed to wake the loop: {e}");
        }
    }

    /// Loop side, before blocking or returning to the host. Returns false if calls
    /// are already queued (then the loop must not block).
    pub(crate) fn prepare_sleep(&self, rx: &Receiver<Queued>) -> bool {
        self.state.store(SLEEPING, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if rx.is_empty() {
            true
        } else {
            self.state.store(AWAKE, Ordering::Relaxed);
            false
        }
    }

    /// Loop side: it runs again and will drain the queue before sleeping.
    pub(crate) fn awake(&self) {
        self.state.store(AWAKE, Ordering::Relaxed);
    }

    pub(crate) fn set_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A handle to a [`Loop`] that other threads use: `Send + Sync + Clone`.
///
/// Get one with [`Loop::remote`]. Calls sent from one thread run in the order that
/// thread sent them. A loop blocked in poll wakes promptly; a burst of calls costs one
/// wake-up. Called on the loop's own thread, `call_soon_threadsafe` is `call_soon`
/// (one FIFO, no syscall).
///
/// ```
/// use std::thread;
/// let lp = evloop::Loop::new().unwrap();
/// let remote = lp.remote();
/// let worker = thread::spawn(move || {
///     let answer = 6 * 7;
///     remote.call_soon_threadsafe(move |lp| {
///         println!("the answer is {answer}");
///         lp.stop();
///     }).unwrap();
/// });
/// lp.run_forever().unwrap();
/// worker.join().unwrap();
/// ```
#[derive(Clone)]
pub struct Remote {
    shared: Arc<Shared>,
}

impl Remote {
    pub(crate) fn new(shared: Arc<Shared>) -> Remote {
        Remote { shared }
    }

    /// Schedules `f` to run on the loop, from any thread (asyncio's
    /// `call_soon_threadsafe`).
    ///
    /// Returns `Err(Error::Closed)` if the loop is closed; `f` is then dropped, never
    /// silently lost. A call accepted (`Ok`) runs, unless it is cancelled through its
    /// [`RemoteHandle`] or the loop is closed before draining it: then its closure is
    /// dropped and the handle reports `is_cancelled()`.
    #[track_caller]
    pub fn call_soon_threadsafe(
        &self,
        f: impl FnOnce(&Loop) + Send + 'static,
    ) -> Result<RemoteHandle, Error> {
        let location = Location::caller();
        if self.shared.is_closed() {
            return Err(Error::Closed);
        }
        let call: Arc<dyn RemoteCall> = Arc::new(RemoteCell {
            f: Mutex::new(Some(f)),
            cancelled: AtomicBool::new(false),
            location,
        });
        self.send(call.clone())?;
        Ok(RemoteHandle::new(call))
    }

    /// Queues a call: straight onto the ready queue on the loop's own thread, else
    /// through the channel. Fails only if the loop is closed.
    pub(crate) fn send(&self, call: Arc<dyn RemoteCall>) -> Result<(), Error> {
        if let Some(lp) = local_loop(&self.shared) {
            if lp.is_closed() {
                return Err(Error::Closed);
            }
            lp.push_entry(Entry::Remote(Queued::new(call)));
            return Ok(());
        }
        // A send racing with close(): either it lands before the receiver is dropped
        // (then close() discards it, marking it cancelled) or it fails here.
        self.shared
            .tx
            .send(Queued::new(call))
            .map_err(|_| Error::Closed)?;
        self.shared.notify();
        Ok(())
    }

    /// Asks the loop to stop, as [`Loop::stop`] does, from any thread. Does nothing
    /// on a closed loop.
    pub fn stop(&self) {
        if let Some(lp) = local_loop(&self.shared) {
            lp.stop();
        } else {
            let _ = self.call_soon_threadsafe(|lp| lp.stop());
        }
    }

    /// Whether the loop has been closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The loop itself, when called on the thread that owns it.
    pub(crate) fn local_loop(&self) -> Option<Loop> {
        local_loop(&self.shared)
    }

    /// Whether `self` and `other` reach the same loop.
    pub fn same_loop(&self, other: &Remote) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("closed", &self.is_closed())
            .finish()
    }
}
