//! `HyperTimer`: hyper's `rt::Timer` on the loop's timers, with `Send + Sync` sleeps.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::handle::TimerKey;
use crate::task::current_loop;
use crate::{Loop, Remote};

/// hyper's [`Timer`](hyper::rt::Timer) on a loop's timers (and its clock, a manual
/// [`Clock`](crate::Clock) included): what `header_read_timeout`, keep-alive
/// timeouts and HTTP/2 pings sleep on.
///
/// ```
/// # #[cfg(feature = "hyper")] {
/// use std::time::Duration;
/// evloop::run(async {
///     let mut http = hyper::server::conn::http1::Builder::new();
///     http.timer(evloop::compat::HyperTimer::new())
///         .header_read_timeout(Duration::from_secs(10));
/// })
/// .unwrap();
/// # }
/// ```
///
/// # Why the sleeps are `Send`, and what that costs
/// hyper wants `Send + Sync` sleeps, and [`evloop::Sleep`](crate::Sleep) is neither
/// (it holds the loop's `!Send` timer handle). A [`HyperSleep`] keeps nothing `!Send`:
/// the loop-side state is an ordinary loop timer whose callback shares a small
/// `Arc<Mutex<_>>` slot with the sleep, and the sleep holds only the loop's
/// [`Remote`] and the timer's key (plain data).
/// - Polled on the loop's thread (the normal case: hyper's connection futures run
///   as evloop tasks), it arms its timer with `call_at` directly: no syscall, no
///   threadsafe call. Dropped there, it cancels the timer at once.
/// - Polled or dropped on another thread (a connection future moved off the loop),
///   it arms or cancels through the `Remote` instead: correct, one threadsafe call
///   dearer. If the loop has closed, the sleep never completes.
#[derive(Clone)]
pub struct HyperTimer {
    remote: Remote,
}

impl HyperTimer {
    /// A timer on the loop running on this thread.
    ///
    /// # Panics
    /// Outside a running loop.
    #[track_caller]
    pub fn new() -> HyperTimer {
        HyperTimer::for_loop(&current_loop("compat::HyperTimer::new"))
    }

    /// A timer on `lp`.
    pub fn for_loop(lp: &Loop) -> HyperTimer {
        HyperTimer {
            remote: lp.remote(),
        }
    }

    /// The loop's time when called on its thread, else `Instant::now()` (the same
    /// clock, unless the loop's is manual).
    fn now(&self) -> Instant {
        self.remote
            .local_loop()
            .map_or_else(Instant::now, |lp| lp.time())
    }

    fn sleep_at(&self, deadline: Option<Instant>) -> HyperSleep {
        HyperSleep {
            deadline,
            remote: self.remote.clone(),
            shared: Arc::new(Mutex::new(Slot::default())),
        }
    }
}

/// [`HyperTimer::new`]: the loop running on this thread.
///
/// # Panics
/// Outside a running loop.
impl Default for HyperTimer {
    fn default() -> HyperTimer {
        HyperTimer::new()
    }
}

impl fmt::Debug for HyperTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperTimer").finish_non_exhaustive()
    }
}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.sleep_at(self.now().checked_add(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.sleep_at(Some(deadline)))
    }

    fn now(&self) -> Instant {
        HyperTimer::now(self)
    }

    /// Re-arms a [`HyperSleep`] in place (no new allocation); any other sleep is
    /// replaced.
    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            // `HyperSleep` is `Unpin`: nothing of it is pinned.
            Some(s) => s.get_mut().reset(Some(new_deadline)),
            None => *sleep = hyper::rt::Timer::sleep_until(self, new_deadline),
        }
    }
}

/// The sleep of [`HyperTimer`]: `Send + Sync`, completes at its deadline on the
/// loop's clock. See [`HyperTimer`] for how it reaches the loop.
pub struct HyperSleep {
    /// `None`: too far to represent (`Duration::MAX`), never completes.
    deadline: Option<Instant>,
    remote: Remote,
    shared: Arc<Mutex<Slot>>,
}

/// What the sleep and its loop timer share.
#[derive(Default)]
struct Slot {
    /// Bumped by each reset: a timer armed for an older deadline that fires anyway
    /// (its cancel was still on its way through the Remote) is ignored.
    epoch: u64,
    fired: bool,
    /// Arming was started (directly, or sent through the Remote).
    requested: bool,
    /// The armed timer, while it is pending.
    timer: Option<TimerKey>,
    waker: Option<Waker>,
    /// The sleep was dropped: an arming call still on its way arms nothing.
    dropped: bool,
}

impl HyperSleep {
    /// Arms the timer for `epoch` on `lp` (its thread), unless the sleep moved on.
    fn arm(lp: &Loop, shared: &Arc<Mutex<Slot>>, deadline: Instant, epoch: u64) {
        if lp.is_closed() {
            return;
        }
        let mut slot = shared.lock();
        if slot.dropped || slot.epoch != epoch {
            return;
        }
        let s = shared.clone();
        // The callback never runs inline: holding the lock across `call_at` is fine.
        let timer = lp.call_at(deadline, move |_| {
            let waker = {
                let mut slot = s.lock();
                if slot.epoch != epoch {
                    return;
                }
                slot.fired = true;
                slot.timer = None;
                slot.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
        slot.timer = Some(timer.key());
    }

    /// Cancels a pending timer: at once on the loop's thread, else through the Remote.
    fn cancel(&self, timer: TimerKey) {
        match self.remote.local_loop() {
            Some(lp) => lp.cancel_timer(timer),
            None => {
                let _ = self
                    .remote
                    .call_soon_threadsafe(move |lp| lp.cancel_timer(timer));
            }
        }
    }

    fn reset(&mut self, deadline: Option<Instant>) {
        let (old, rearm) = {
            let mut slot = self.shared.lock();
            slot.epoch += 1;
            slot.fired = false;
            slot.requested = false;
            (slot.timer.take(), slot.waker.is_some())
        };
        if let Some(timer) = old {
            self.cancel(timer);
        }
        self.deadline = deadline;
        if rearm {
            // Someone waits on it: arm now rather than at the next poll.
            self.request();
        }
    }

    /// Starts arming the timer for the current epoch.
    fn request(&self) {
        let Some(deadline) = self.deadline else {
            return;
        };
        let epoch = {
            let mut slot = self.shared.lock();
            if slot.requested || slot.fired {
                return;
            }
            slot.requested = true;
            slot.epoch
        };
        match self.remote.local_loop() {
            Some(lp) => HyperSleep::arm(&lp, &self.shared, deadline, epoch),
            None => {
                let shared = self.shared.clone();
                // A closed loop refuses the call: the sleep never completes (nothing
                // runs on that loop any more).
                let _ = self
                    .remote
                    .call_soon_threadsafe(move |lp| HyperSleep::arm(lp, &shared, deadline, epoch));
            }
        }
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut slot = self.shared.lock();
            if slot.fired {
                return Poll::Ready(());
            }
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                slot.waker = Some(cx.waker().clone());
            }
        }
        self.request();
        Poll::Pending
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        let timer = {
            let mut slot = self.shared.lock();
            slot.dropped = true;
            slot.waker = None;
            slot.timer.take()
        };
        if let Some(timer) = timer {
            self.cancel(timer);
        }
    }
}

impl fmt::Debug for HyperSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperSleep")
            .field("deadline", &self.deadline)
            .field("fired", &self.shared.lock().fired)
            .finish()
    }
}
