//! `HyperExecutor`: hyper's `rt::Executor` through `evloop::spawn`.

use std::future::Future;

/// hyper's [`Executor`](hyper::rt::Executor): spawns the background tasks hyper asks
/// for (an HTTP/2 connection's streams, a client's connection driver) as evloop
/// tasks on the loop running on the calling thread, detached.
///
/// The futures need not be `Send`: they never leave the loop's thread. A task that
/// panics is reported to the loop's exception handler, as any detached task.
///
/// ```
/// # #[cfg(feature = "hyper")] {
/// use evloop::compat::{HyperExecutor, HyperTimer};
/// let builder = hyper::server::conn::http2::Builder::new(HyperExecutor);
/// # let _ = builder;
/// # }
/// ```
///
/// # Panics
/// `execute` outside a running loop (as [`spawn`](crate::spawn)): hyper calls it
/// from the connection future it drives, so run that future on evloop.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperExecutor;

impl<F> hyper::rt::Executor<F> for HyperExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    #[track_caller]
    fn execute(&self, fut: F) {
        drop(crate::spawn(fut)); // detached: the loop keeps it until it is done
    }
}
