//! `Remote::spawn` and `RemoteTask`: tasks started from other threads (asyncio's
//! `run_coroutine_threadsafe`).

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::completion::Completion;
use crate::errors::Error;
use crate::ready::RunnableId;
use crate::remote::Remote;
use crate::task::TaskError;

struct RemoteState<T> {
    slot: Completion<Result<T, TaskError>, RunnableId>,
    remote: Remote,
}

impl<T> RemoteState<T> {
    fn complete(&self, r: Result<T, TaskError>) {
        self.slot.complete(r);
    }
}

/// Completes the remote task as cancelled if dropped unfinished (the loop closed).
struct CompleteOnDrop<T>(Arc<RemoteState<T>>);

impl<T> Drop for CompleteOnDrop<T> {
    fn drop(&mut self) {
        self.0.complete(Err(TaskError::Cancelled));
    }
}

/// A task started from another thread by [`Remote::spawn`]: asyncio's
/// `run_coroutine_threadsafe` future. `Send + Sync`; a `Future` itself, and waitable
/// from a plain thread.
pub struct RemoteTask<T> {
    state: Arc<RemoteState<T>>,
}

impl Remote {
    /// Runs `fut` as a task on the loop, from any thread (asyncio's
    /// `run_coroutine_threadsafe`).
    ///
    /// `fut` must be `Send`, since it is built here and crosses to the loop's thread.
    /// Most futures that do async work on the loop are not: [`sleep`](crate::sleep),
    /// [`timeout`](crate::timeout), the sockets of [`net`](crate::net), `Promise` and
    /// the [`sync`](crate::sync) types all belong to the loop's thread. For those, use
    /// [`spawn_with`](Remote::spawn_with): it sends a `Send` closure that builds the
    /// future on the loop.
    ///
    /// This does not compile (the compiler says the future "cannot be sent between
    /// threads safely", because of the `Rc` inside `Sleep`):
    ///
    /// ```compile_fail
    /// # let lp = evloop::Loop::new().unwrap();
    /// # let remote = lp.remote();
    /// remote.spawn(async {
    ///     evloop::sleep(std::time::Duration::from_millis(1)).await;
    /// });
    /// ```
    ///
    /// and this does, the same work through `spawn_with`:
    ///
    /// ```
    /// # let lp = evloop::Loop::new().unwrap();
    /// # let remote = lp.remote();
    /// # let worker = std::thread::spawn(move || {
    /// let task = remote.spawn_with(|| async {
    ///     evloop::sleep(std::time::Duration::from_millis(1)).await;
    ///     "slept"
    /// });
    /// # let out = task.unwrap().wait().unwrap();
    /// # remote.stop();
    /// # out
    /// # });
    /// # lp.run_forever().unwrap();
    /// # assert_eq!(worker.join().unwrap(), "slept");
    /// ```
    ///
    /// # Errors
    /// `Err(Error::Closed)` if the loop is closed. If it closes before the task
    /// finishes, the task completes with `Err(TaskError::Cancelled)`.
    ///
    /// ```
    /// let lp = evloop::Loop::new().unwrap();
    /// let remote = lp.remote();
    /// let worker = std::thread::spawn(move || {
    ///     let task = remote.spawn(async { 6 * 7 }).unwrap();
    ///     let answer = task.wait().unwrap();
    ///     remote.stop();
    ///     answer
    /// });
    /// lp.run_forever().unwrap();
    /// assert_eq!(worker.join().unwrap(), 42);
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, fut: F) -> Result<RemoteTask<F::Output>, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send,
    {
        self.spawn_with_at(move || fut, Location::caller())
    }

    /// As [`spawn`](Remote::spawn), for a future that is not `Send`: `make` (which is)
    /// builds it on the loop's thread, so the future may use the loop's `!Send` tools
    /// (`sleep`, `Promise`, `sync::Queue`, ...). Only the output crosses threads.
    ///
    /// A panic in `make` completes the task with `Err(TaskError::Panicked)`, as a panic
    /// in the future does.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lp = evloop::Loop::new().unwrap();
    /// let remote = lp.remote();
    /// let worker = std::thread::spawn(move || {
    ///     let task = remote
    ///         .spawn_with(|| async {
    ///             evloop::sleep(Duration::from_millis(1)).await; // a !Send future
    ///             "slept"
    ///         })
    ///         .unwrap();
    ///     let out = task.wait().unwrap();
    ///     remote.stop();
    ///     out
    /// });
    /// lp.run_forever().unwrap();
    /// assert_eq!(worker.join().unwrap(), "slept");
    /// ```
    #[track_caller]
    pub fn spawn_with<F, M>(&self, make: M) -> Result<RemoteTask<F::Output>, Error>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send,
    {
        self.spawn_with_at(make, Location::caller())
    }

    fn spawn_with_at<F, M>(
        &self,
        make: M,
        location: &'static Location<'static>,
    ) -> Result<RemoteTask<F::Output>, Error>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send,
    {
        let state = Arc::new(RemoteState {
            slot: Completion::new(),
            remote: self.clone(),
        });
        let guard = CompleteOnDrop(state.clone());
        self.call_soon_threadsafe(move |lp| {
            if guard.0.slot.cancel_requested() {
                return; // never polled; the guard completes it as cancelled
            }
            // `make` is the task's code as much as the future is: its panic is the
            // task's outcome, handed to whoever waits (not a cancellation).
            let fut = match catch_unwind(AssertUnwindSafe(make)) {
                Ok(fut) => fut,
                Err(payload) => {
                    guard.0.complete(Err(TaskError::Panicked(payload)));
                    return;
                }
            };
            let task = lp.create_task_at(fut, location);
            // One critical section with `RemoteTask::cancel`: a cancel that came
            // while the task was being created is seen here, one that comes later
            // sees the id.
            if guard.0.slot.started(task.rid()) {
                task.cancel();
            }
            let bridge = async move {
                let r = task.await;
                guard.0.complete(r);
            };
            lp.create_task_at(bridge, location);
        })?;
        Ok(RemoteTask { state })
    }
}

impl<T> RemoteTask<T> {
    /// Blocks this thread until the task is done, and returns its output.
    ///
    /// # Panics
    /// On the loop's own thread, where waiting would deadlock: `.await` it there. And
    /// if a poll of this `RemoteTask` (an `.await` that was then abandoned, say)
    /// already returned the output, which is handed out once: waiting for it again
    /// would block forever.
    pub fn wait(self) -> Result<T, TaskError> {
        self.check_thread();
        self.state.slot.wait()
    }

    /// Blocks at most `d` for the output: `None` if the task is not done by then.
    pub fn wait_timeout(&mut self, d: Duration) -> Option<Result<T, TaskError>> {
        self.check_thread();
        self.state.slot.wait_until(Instant::now().checked_add(d))
    }

    /// Cancels the task (on the loop, at its next step). Returns false if it was
    /// already done.
    pub fn cancel(&self) -> bool {
        let Some(rid) = self.state.slot.request_cancel() else {
            return false;
        };
        if let Some(rid) = rid {
            let _ = self.state.remote.call_soon_threadsafe(move |lp| {
                if let Some(r) = lp.runnable(rid) {
                    r.cancel();
                }
            });
        }
        true
    }

    /// Whether the task is done.
    pub fn is_done(&self) -> bool {
        self.state.slot.is_done()
    }

    fn check_thread(&self) {
        assert!(
            self.state.remote.local_loop().is_none(),
            "RemoteTask::wait on the loop's own thread would deadlock: .await the RemoteTask instead"
        );
    }
}

impl<T> Future for RemoteTask<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.state.slot.poll(cx)
    }
}

impl<T> Drop for RemoteTask<T> {
    /// Nobody can await the task any more: lets go of the waker of its last `.await`.
    fn drop(&mut self) {
        self.state.slot.forget_waker();
    }
}

impl<T> fmt::Debug for RemoteTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTask")
            .field("done", &self.is_done())
            .finish()
    }
}
