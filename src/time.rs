//! Sleeps, timeouts and intervals for tasks, on the loop's clock.
//!
//! Every future here reads the clock of the loop it is polled on (a manual
//! [`Clock`](crate::Clock) included), never the wall clock, and schedules one loop
//! timer, cancelled if the future is dropped first.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::handle::TimerHandle;
use crate::task::current_loop;

/// The deadline of [`timeout`] passed before the future completed: asyncio's
/// `TimeoutError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutError;

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for TimeoutError {}

#[derive(Clone, Copy, Debug)]
enum Deadline {
    After(Duration),
    At(Instant),
}

/// What the timer callback and the future share.
#[derive(Default)]
struct Shared {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// The future of [`sleep`] and [`sleep_until`].
///
/// # Not `Send`
/// `Sleep` is neither `Send` nor `Sync`: once polled it holds the loop's
/// [`TimerHandle`](crate::TimerHandle) and an `Rc` shared with the timer's callback,
/// both of which belong to the loop's thread (the type says so before the first poll
/// too). That costs nothing where futures run: [`spawn`](crate::spawn) and
/// [`Loop::create_task`](crate::Loop::create_task) take `!Send` futures. A future
/// that sleeps cannot go through [`Remote::spawn`](crate::Remote::spawn), which needs
/// `Send`: build it on the loop with
/// [`Remote::spawn_with`](crate::Remote::spawn_with) instead. For a `Send` sleep (a
/// library that demands one, such as hyper), see `evloop::compat::HyperTimer`
/// (feature `hyper`).
pub struct Sleep {
    deadline: Deadline,
    armed: Option<(TimerHandle, Rc<Shared>)>,
}

/// Completes after `d` on the loop's clock (asyncio's `asyncio.sleep`). The delay
/// starts when the future is first polled. `sleep(Duration::ZERO)` yields to the loop
/// for one iteration. A delay beyond the clock's range (`Duration::MAX`) never
/// completes, and its timer never wakes the loop nor moves a manual clock (see
/// [`Loop::call_later`](crate::Loop::call_later)).
///
/// # Panics
/// When polled outside a running loop.
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::Loop::new().unwrap();
/// let start = lp.time();
/// lp.run_until_complete(evloop::sleep(Duration::from_millis(5))).unwrap();
/// assert!(lp.time() - start >= Duration::from_millis(5));
/// ```
pub fn sleep(d: Duration) -> Sleep {
    Sleep {
        deadline: Deadline::After(d),
        armed: None,
    }
}

/// Completes at `when` on the loop's clock (at once if it has passed).
///
/// # Panics
/// When polled outside a running loop.
pub fn sleep_until(when: Instant) -> Sleep {
    Sleep {
        deadline: Deadline::At(when),
        armed: None,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some((_, shared)) = &self.armed {
            if shared.fired.get() {
                return Poll::Ready(());
            }
            let mut w = shared.waker.borrow_mut();
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let lp = current_loop("sleep");
        let shared = Rc::new(Shared {
            fired: Cell::new(false),
            waker: RefCell::new(Some(cx.waker().clone())),
        });
        let s = shared.clone();
        let fire = move |_: &crate::Loop| {
            s.fired.set(true);
            if let Some(w) = s.waker.borrow_mut().take() {
                w.wake();
            }
        };
        let timer = match self.deadline {
            Deadline::After(d) => lp.call_later(d, fire),
            Deadline::At(t) => lp.call_at(t, fire),
        };
        self.armed = Some((timer, shared));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((timer, _)) = &self.armed {
            timer.cancel();
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Yields to the loop once: the task is re-scheduled behind the callbacks already
/// queued (asyncio's `await asyncio.sleep(0)`).
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`]. `Send` and `Sync`: it holds nothing of the loop.
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs `fut` with a deadline `d` from its first poll (asyncio's `wait_for`): its
/// output, or `Err(TimeoutError)` if the deadline passes first, in which case `fut`
/// is dropped at once. `timeout(Duration::MAX, fut)` is `fut` without a deadline.
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::Loop::new().unwrap();
/// let r = lp.run_until_complete(evloop::timeout(
///     Duration::from_millis(5),
///     evloop::sleep(Duration::from_secs(60)),
/// ));
/// assert_eq!(r.unwrap(), Err(evloop::TimeoutError));
/// ```
pub fn timeout<F: Future>(d: Duration, fut: F) -> Timeout<F> {
    Timeout {
        fut: Some(Box::pin(fut)),
        sleep: sleep(d),
    }
}

/// As [`timeout`], with the deadline an instant on the loop's clock.
pub fn timeout_at<F: Future>(when: Instant, fut: F) -> Timeout<F> {
    Timeout {
        fut: Some(Box::pin(fut)),
        sleep: sleep_until(when),
    }
}

/// The future of [`timeout`].
///
/// # Not `Send`
/// Never `Send`, whatever `F` is: it holds a [`Sleep`], which belongs to the loop's
/// thread (see there). So is the future of [`Interval::tick`]. [`YieldNow`], which
/// holds nothing of the loop, is `Send`.
pub struct Timeout<F> {
    /// `None` once it completed or expired.
    fut: Option<Pin<Box<F>>>,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, TimeoutError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let fut = this
            .fut
            .as_mut()
            .expect("Timeout polled again after it completed");
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            this.fut = None;
            return Poll::Ready(Ok(v));
        }
        if Pin::new(&mut this.sleep).poll(cx).is_ready() {
            this.fut = None; // dropped on expiry
            return Poll::Ready(Err(TimeoutError));
        }
        Poll::Pending
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("sleep", &self.sleep)
            .field("done", &self.fut.is_none())
            .finish()
    }
}

/// Ticks every `period` on the loop's clock; the first tick completes at once.
/// Missed ticks are not replayed: after a stall the next tick is one period after
/// the late one.
///
/// # Panics
/// If `period` is zero.
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::Loop::new().unwrap();
/// lp.run_until_complete(async {
///     let mut every = evloop::interval(Duration::from_millis(1));
///     for _ in 0..3 {
///         every.tick().await;
///     }
/// }).unwrap();
/// ```
pub fn interval(period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "evloop::interval needs a non-zero period"
    );
    Interval {
        period,
        next: Next::First,
    }
}

/// The ticker of [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    next: Next,
}

#[derive(Debug, Clone, Copy)]
enum Next {
    First,
    At(Instant),
    /// The period is too long for the clock to represent the next tick: it never comes.
    Never,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled instant. (With a period that
    /// reaches past the clock's range, such as `Duration::MAX`, every tick after the
    /// first waits for ever.)
    pub async fn tick(&mut self) -> Instant {
        let lp = current_loop("interval");
        let due = match self.next {
            Next::First => lp.time(),
            Next::At(t) => t,
            Next::Never => std::future::pending().await,
        };
        sleep_until(due).await;
        let now = lp.time();
        self.next = match due.checked_add(self.period) {
            Some(next) if next >= now => Next::At(next),
            _ => now.checked_add(self.period).map_or(Next::Never, Next::At),
        };
        due
    }
}
