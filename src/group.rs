//! `LoopGroup`: one loop per thread, N threads, for work that outgrows a core.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use crate::Loop;
use crate::errors::{Error, ErrorContext, default_exception_handler};
use crate::handle::RemoteHandle;
use crate::remote::Remote;
use crate::remote_task::RemoteTask;

/// N event loops, each running on a thread of its own: a server or pipeline that
/// outgrows one core runs one loop per core.
///
/// # The model
/// - **Each loop stays a plain asyncio loop.** Its callbacks, tasks and sockets live on
///   its thread and never move: there is no work stealing. A task started on loop 2
///   runs on loop 2 until it ends, so `!Send` tools (`Rc`, `Promise`, `sync::Queue`,
///   `Transport`) work inside it as on a lone loop.
/// - **Work crosses loops through their [`Remote`]s**: [`call_soon_threadsafe_on`]
///   (a `Send` closure), [`spawn_on`] / [`spawn_each`] (a `Send` closure that builds
///   a `!Send` future on the chosen loop, whose output comes back through a
///   [`RemoteTask`]). From inside a loop, hand work to another one the same way,
///   through a [`remote`](LoopGroup::remote) cloned into it.
/// - **Servers share a port**: every loop listens on the same address with
///   [`ServerOptions::reuse_port`](crate::ServerOptions::reuse_port) (`SO_REUSEPORT`),
///   and the kernel spreads incoming connections over the listeners; a connection
///   then stays on the loop that accepted it. `examples/multicore_echo.rs` shows it.
///
/// # When to use it
/// Pick a group over one loop when one core is the limit: handlers that spend CPU
/// (parsing, compression, crypto, templating) or many connections at once, whose
/// total work is more than one core can do. Requests then run on N cores (about N×
/// the throughput of one loop while each connection's work stays on its loop).
///
/// It does not help a single latency-bound stream (one connection, one
/// request at a time): that work stays on one loop, and handing parts of it to
/// another loop only adds a cross-thread hop (a few microseconds) to each of them.
///
/// # Panics in callbacks and tasks
/// A panicking callback or task does not take its loop down: as on any loop it is
/// caught and handed to the loop's exception handler, and the loop goes on serving.
/// The group's loops start with a handler that logs as the default one does and also
/// remembers the loop's first panic; [`join`](LoopGroup::join) returns it. A loop
/// whose exception handler you replace ([`Loop::set_exception_handler`]) reports
/// through your handler instead. A task's panic that is retrieved is handled, not
/// reported: that of a task started by [`spawn_on`] or [`spawn_each`] goes to its
/// [`RemoteTask`] (as `Err(TaskError::Panicked)`, kept there even if no one reads
/// it); a detached task's panic that no one retrieves is reported ("Task exception
/// was never retrieved").
///
/// # Ending
/// A loop ends when it stops: [`stop`](LoopGroup::stop) stops them all,
/// [`Remote::stop`] one, and so does [`Loop::stop`] from one of its callbacks. Its
/// thread then closes it ([`Loop::close`]: pending callbacks, timers and tasks are
/// dropped there, on the loop's thread) and exits; later calls through its `Remote`
/// return `Err(Error::Closed)`. [`join`](LoopGroup::join) waits for every loop to
/// end. Dropping a group that was not joined stops and joins it (its panics are
/// already logged); a group dropped on one of its own loops' threads leaves that
/// thread to finish by itself.
///
/// ```
/// use std::thread;
/// use evloop::LoopGroup;
///
/// let group = LoopGroup::new(2)?;
/// let tasks = group.spawn_each(|i| async move {
///     // Built on loop `i`'s thread: a !Send future is fine here.
///     let here = std::rc::Rc::new(i);
///     evloop::yield_now().await;
///     (*here, thread::current().id())
/// })?;
/// let ran: Vec<_> = tasks.into_iter().map(|t| t.wait().unwrap()).collect();
/// assert_eq!(ran[0].0, 0);
/// assert_ne!(ran[0].1, ran[1].1); // two threads
/// group.stop();
/// assert!(group.join().iter().all(|r| r.is_ok()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`call_soon_threadsafe_on`]: LoopGroup::call_soon_threadsafe_on
/// [`spawn_on`]: LoopGroup::spawn_on
/// [`spawn_each`]: LoopGroup::spawn_each
pub struct LoopGroup {
    members: Vec<Member>,
}

/// One loop of the group.
struct Member {
    remote: Remote,
    /// Taken by `join` (or by `Drop`).
    thread: Option<JoinHandle<Result<(), ErrorContext>>>,
}

impl LoopGroup {
    /// Starts `n` loops, each on a thread of its own (named `evloop-group-I`), and
    /// returns once every one is built and about to run.
    ///
    /// # Errors
    /// `n == 0` is `Err(InvalidInput)` (a group has at least one loop). Failing to
    /// start a thread or to build a loop (out of fds, say) is that `io::Error`; the
    /// loops already started are stopped and joined first.
    pub fn new(n: usize) -> io::Result<LoopGroup> {
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "LoopGroup::new(0): a group needs at least one loop",
            ));
        }
        // Dropped on an early return: stops and joins what was started.
        let mut group = LoopGroup {
            members: Vec::with_capacity(n),
        };
        for index in 0..n {
            let (tx, rx) = mpsc::sync_channel(1);
            let thread = thread::Builder::new()
                .name(format!("evloop-group-{index}"))
                .spawn(move || run_member(tx))?;
            match rx.recv() {
                Ok(Ok(remote)) => group.members.push(Member {
                    remote,
                    thread: Some(thread),
                }),
                Ok(Err(e)) => {
                    let _ = thread.join();
                    return Err(e);
                }
                Err(mpsc::RecvError) => {
                    let _ = thread.join();
                    return Err(io::Error::other(format!(
                        "LoopGroup::new: the thread of loop {index} panicked while building its loop"
                    )));
                }
            }
        }
        Ok(group)
    }

    /// Starts one loop per core: [`new`](LoopGroup::new) with
    /// `std::thread::available_parallelism()` (1 where that is unknown).
    ///
    /// # Errors
    /// As [`new`](LoopGroup::new).
    pub fn per_core() -> io::Result<LoopGroup> {
        LoopGroup::new(thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// How many loops the group has (at least one).
    #[allow(clippy::len_without_is_empty)] // a group is never empty
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The [`Remote`] of loop `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[track_caller]
    pub fn remote(&self, i: usize) -> Remote {
        self.member(i).remote.clone()
    }

    /// Runs `f` on loop `i` ([`Remote::call_soon_threadsafe`]).
    ///
    /// # Errors
    /// `Err(Error::Closed)` if that loop has ended.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[track_caller]
    pub fn call_soon_threadsafe_on(
        &self,
        i: usize,
        f: impl FnOnce(&Loop) + Send + 'static,
    ) -> Result<RemoteHandle, Error> {
        self.member(i).remote.call_soon_threadsafe(f)
    }

    /// Runs a task on loop `i`: `make` (which is `Send`) builds its future there, so
    /// the future itself need not be `Send` ([`Remote::spawn_with`]). Its output comes
    /// back through the returned [`RemoteTask`] (`wait` on a plain thread, `.await` in
    /// a task on another loop).
    ///
    /// # Errors
    /// `Err(Error::Closed)` if that loop has ended. If it ends before the task does,
    /// the task completes with `Err(TaskError::Cancelled)`.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[track_caller]
    pub fn spawn_on<F, M>(&self, i: usize, make: M) -> Result<RemoteTask<F::Output>, Error>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send,
    {
        self.member(i).remote.spawn_with(make)
    }

    /// Runs a task on every loop: on loop `i`, `make(i)` builds its future (as
    /// [`spawn_on`](LoopGroup::spawn_on) does). The tasks come back in loop order.
    ///
    /// # Errors
    /// `Err(Error::Closed)` if a loop has ended; the tasks already started on the
    /// loops before it go on running (detached).
    #[track_caller]
    pub fn spawn_each<F, M>(&self, make: M) -> Result<Vec<RemoteTask<F::Output>>, Error>
    where
        M: Fn(usize) -> F + Send + Sync + 'static,
        F: Future + 'static,
        F::Output: Send,
    {
        let make = Arc::new(make);
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let make = make.clone();
                m.remote.spawn_with(move || make(i))
            })
            .collect()
    }

    /// Asks every loop to stop ([`Remote::stop`]); returns at once. Each loop
    /// finishes its current iteration, then its thread closes it and exits. Stopping
    /// twice, or a loop that has already ended, is harmless.
    pub fn stop(&self) {
        for m in &self.members {
            m.remote.stop();
        }
    }

    /// Waits until every loop has ended (it does not stop them: call
    /// [`stop`](LoopGroup::stop) first, or let them stop themselves), and returns, in
    /// loop order, `Ok(())` for each loop that ended cleanly, or `Err` with the first
    /// panic it reported: a callback or task panic caught by the loop that reached
    /// the group's exception handler (see [Panics](LoopGroup#panics-in-callbacks-and-tasks)),
    /// or a panic of the loop's thread itself (message "the loop's thread panicked").
    ///
    /// # Panics
    /// When called on one of the group's own loop threads, which would wait for
    /// itself.
    pub fn join(mut self) -> Vec<Result<(), ErrorContext>> {
        let me = thread::current().id();
        assert!(
            !self
                .members
                .iter()
                .any(|m| m.thread.as_ref().is_some_and(|t| t.thread().id() == me)),
            "LoopGroup::join on one of the group's own loop threads would wait for itself: \
             join from another thread"
        );
        self.members
            .iter_mut()
            .map(|m| match m.thread.take() {
                Some(t) => joined(t),
                None => Ok(()),
            })
            .collect()
    }

    #[track_caller]
    fn member(&self, i: usize) -> &Member {
        match self.members.get(i) {
            Some(m) => m,
            None => panic!(
                "LoopGroup: no loop {i}: the group has {} loops (0..{})",
                self.members.len(),
                self.members.len()
            ),
        }
    }
}

impl Drop for LoopGroup {
    /// Stops and joins every loop not yet joined; their panics were logged already.
    /// A loop whose own thread drops the group is left to finish by itself.
    fn drop(&mut self) {
        self.stop();
        let me = thread::current().id();
        for m in &mut self.members {
            if let Some(t) = m.thread.take()
                && t.thread().id() != me
            {
                let _ = t.join();
            }
        }
    }
}

impl fmt::Debug for LoopGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopGroup")
            .field("len", &self.members.len())
            .finish()
    }
}

/// What a loop's thread ended with.
fn joined(t: JoinHandle<Result<(), ErrorContext>>) -> Result<(), ErrorContext> {
    match t.join() {
        Ok(r) => r,
        Err(payload) => Err(ErrorContext::from_panic(
            "the loop's thread panicked",
            &*payload,
        )),
    }
}

/// The body of a loop's thread: build the loop, hand its `Remote` back, run it until
/// it stops, close it. Returns the first panic the loop reported.
fn run_member(ready: mpsc::SyncSender<io::Result<Remote>>) -> Result<(), ErrorContext> {
    let lp = match Loop::new() {
        Ok(lp) => lp,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let first: Rc<RefCell<Option<ErrorContext>>> = Rc::default();
    let seen = first.clone();
    lp.set_exception_handler(move |_, ctx| {
        default_exception_handler(ctx);
        let mut seen = seen.borrow_mut();
        if ctx.is_panic() && seen.is_none() {
            *seen = Some(ctx.clone());
        }
    });
    // `new` waits for this message, so the send cannot fail.
    let _ = ready.send(Ok(lp.remote()));
    drop(ready);
    // Panics in callbacks are caught by the loop; this catches what escapes it, so
    // that the loop is still closed on its thread.
    let ran = catch_unwind(AssertUnwindSafe(|| lp.run_forever()));
    let closed = lp.close();
    let ran = match ran {
        Ok(r) => r,
        Err(payload) => std::panic::resume_unwind(payload),
    };
    let first = first.borrow_mut().take();
    if let Some(ctx) = first {
        return Err(ctx);
    }
    if let Err(e) = ran.and(closed) {
        return Err(ErrorContext::new(format!("the loop failed: {e}")));
    }
    Ok(())
}
