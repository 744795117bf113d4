//! `evloop::run`: asyncio's `asyncio.run`, and what `#[evloop::main]` expands to.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crate::errors::Error;
use crate::event_loop::Loop;

/// How many times the shutdown cancels the tasks left over: a task spawned by the
/// destructor of a cancelled one is cancelled in the next round. Past this many
/// rounds, `close()` drops whatever is still pending.
const CANCEL_ROUNDS: usize = 16;

/// Runs `fut` on a fresh loop and shuts the loop down (asyncio's `asyncio.run`):
///
/// 1. A new [`Loop`] runs until `fut` completes.
/// 2. Every task still pending is cancelled, and the loop keeps running while they
///    unwind: their futures are dropped on the loop, so destructors may still use it
///    (`Loop::current()`, `call_soon`, `spawn`, a socket's close). A task spawned while
///    unwinding takes at least its first step, and is cancelled in turn if still
///    pending after it.
/// 3. Jobs already handed to [`run_in_executor`](Loop::run_in_executor) are waited
///    for, the loop still running (a job may call back into it through a
///    [`Remote`](crate::Remote)).
/// 4. The loop is [closed](Loop::close): the executor's threads are joined, and
///    anything still pending is dropped.
///
/// Steps 2–4 happen however step 1 ends: with `fut`'s output, with
/// `Err(Error::Stopped)` (someone called `stop()`), or with a panic of `fut`, which
/// then resumes here once the loop is closed (as asyncio re-raises `main`'s
/// exception after its clean-up).
///
/// A panic in a task's destructor while it is cancelled is reported to the loop's
/// exception handler (as asyncio reports "unhandled exception during asyncio.run()
/// shutdown"), if nobody holds that task's handle.
///
/// ```
/// let answer = evloop::run(async {
///     let a = evloop::spawn(async { 40 });
///     evloop::sleep(std::time::Duration::from_millis(1)).await;
///     a.await.unwrap() + 2
/// });
/// assert_eq!(answer.unwrap(), 42);
/// ```
///
/// # Errors
/// - `Err(Error::AlreadyRunning)` if called inside a running loop (a task or a
///   callback): `fut` is dropped unpolled. Await it, or `spawn` it, instead.
/// - `Err(Error::Io)` if the loop cannot be created.
/// - `Err(Error::Stopped)` if `stop()` ended the run before `fut` completed.
pub fn run<F: Future>(fut: F) -> Result<F::Output, Error> {
    if Loop::current().is_some() {
        drop(fut);
        return Err(Error::AlreadyRunning);
    }
    let lp = Loop::new()?;
    let out = catch_unwind(AssertUnwindSafe(|| lp.run_until_complete(fut)));
    let closed = shut_down(&lp);
    match out {
        Ok(out) => {
            let out = out?;
            closed?;
            Ok(out)
        }
        Err(payload) => resume_unwind(payload),
    }
}

/// Steps 2–4 of [`run`].
fn shut_down(lp: &Loop) -> Result<(), Error> {
    let unwind = async {
        for _ in 0..CANCEL_ROUNDS {
            let leftover = lp.live_runnables();
            if leftover.is_empty() {
                break;
            }
            for task in &leftover {
                task.cancel();
            }
            // A cancelled task is done at its next step.
            while leftover.iter().any(|task| !task.is_done()) {
                crate::yield_now().await;
            }
            // Tasks their destructors spawned take their first step before the next
            // round cancels what is still pending.
            crate::yield_now().await;
        }
        lp.executor_jobs_done().await;
        // Callbacks the last destructors scheduled run before the loop closes.
        crate::yield_now().await;
    };
    // A destructor that stops the loop cuts the unwinding short; close() drops the rest.
    match lp.run_until_complete(unwind) {
        Ok(()) | Err(Error::Stopped) => {}
        Err(e) => return Err(e),
    }
    lp.close()
}

/// What `#[evloop::main]` expands to: [`run`], with its errors turned into a panic
/// that says what happened.
#[doc(hidden)]
#[track_caller]
pub fn __main<F: Future>(fut: F) -> F::Output {
    match run(fut) {
        Ok(out) => out,
        Err(e) => panic!("#[evloop::main]: the loop could not run main to completion: {e}"),
    }
}
