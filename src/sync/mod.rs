//! Synchronisation primitives for tasks on one loop: [`Queue`], [`LifoQueue`],
//! [`PriorityQueue`], [`Event`], [`Lock`], [`Condition`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Barrier`] (asyncio's `asyncio.Queue`, `LifoQueue`,
//! `PriorityQueue`, `Event`, `Lock`, `Condition`, `Semaphore`, `BoundedSemaphore`,
//! `Barrier`).
//!
//! They are for the tasks of **one** loop thread: `!Send`, built on `Rc` and
//! `RefCell`, with no locks or atomics. Each is a cheap handle: clones share the
//! same queue, event, lock or semaphore. They use nothing of the loop but std's
//! `Future` and `Waker`, so they work under any executor on one thread.
//!
//! # Fairness
//! Waiters are served first come, first served. When a lock, a permit, a queued
//! item or a free queue slot is given back while tasks wait for it, it is handed
//! straight to the oldest waiter and is that waiter's from then on, even before its
//! task runs again. A newcomer (`lock()`, `acquire()`, `get()`, `put()` or their
//! `try_`/`_nowait` forms) never barges ahead of a queued waiter.
//!
//! # Cancellation
//! Every waiting future ([`LockFuture`], [`AcquireFuture`], [`GetFuture`],
//! [`PutFuture`], [`WaitFuture`], [`JoinFuture`], [`ConditionWait`],
//! [`BoundedAcquire`], [`BarrierWait`]) may be dropped at any point: that
//! is how a cancelled task or an expired timeout stops waiting. A dropped waiter
//! leaves the line at once. If it had already been handed what it waited for, it
//! passes that on to the next waiter: a cancelled waiter never swallows a wake-up.
//! A dropped [`GetFuture`] never takes an item out of the queue, and a dropped
//! [`PutFuture`] never puts its item in.

mod barrier;
mod bounded_semaphore;
mod condition;
mod event;
mod line;
mod lock;
mod permits;
mod queue;
mod queue_error;
mod queue_kinds;
mod queue_order;
mod semaphore;
#[cfg(test)]
mod test_exec;

pub use barrier::{Barrier, BarrierWait, BrokenBarrierError};
pub use bounded_semaphore::{BoundedAcquire, BoundedPermit, BoundedSemaphore, SemaphoreOverflow};
pub use condition::{Condition, ConditionWait};
pub use event::{Event, WaitFuture};
pub use lock::{Lock, LockFuture, LockGuard};
pub use queue::{GetFuture, JoinFuture, PutFuture, Queue};
pub use queue_error::{QueueShutDown, TryGetError, TryPutError};
pub use queue_kinds::{LifoQueue, PriorityQueue};
pub use semaphore::{AcquireFuture, Semaphore, SemaphorePermit};
