//! The callback style: `subprocess_exec_with`, `SubprocessProtocol` and
//! `SubprocessTransport` (asyncio's `loop.subprocess_exec`).
//!
//! The transport drives the pipes with small tasks of its own: one per output pipe
//! reading into `pipe_data_received`, one feeding stdin from the transport's buffer,
//! and one waiting for the exit. Events reach the protocol from those tasks' steps or
//! from `call_soon` callbacks, never from inside another protocol method, so a
//! protocol may call any transport method from any of its methods.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, ExitStatus};
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::child::Child;
use super::pipes::{ChildStdin, PipeReader, READ_SIZE};
use super::{Spawned, spawn};
use crate::Loop;
use crate::errors::ErrorContext;
use crate::event_loop::WeakLoop;
use crate::task::Task;

/// What a child process tells its protocol (asyncio's `SubprocessProtocol`). Every
/// method has a default that does nothing.
///
/// Order: `connection_made` first; then, in any order, `pipe_data_received` for
/// output, one `pipe_connection_lost` per piped fd (0 for stdin, 1 for stdout, 2 for
/// stderr), and one `process_exited`. A method that panics is reported to the
/// exception handler and closes the transport (the child is killed); the remaining
/// `pipe_connection_lost` and `process_exited` calls still come.
pub trait SubprocessProtocol {
    /// The child was started; `transport` is its handle (keep a clone to write or
    /// signal later).
    fn connection_made(&mut self, transport: &SubprocessTransport) {
        let _ = transport;
    }

    /// The child wrote `data` to its stdout (`fd` 1) or stderr (`fd` 2).
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        let _ = (fd, data);
    }

    /// Pipe `fd` is done: end of file on an output pipe, or stdin closed (by
    /// [`close_stdin`](SubprocessTransport::close_stdin), by the child, or by
    /// [`close`](SubprocessTransport::close)); `error` if it failed (a write to a
    /// child that stopped reading: `BrokenPipe`).
    fn pipe_connection_lost(&mut self, fd: i32, error: Option<io::Error>) {
        let _ = (fd, error);
    }

    /// The child exited and was reaped: [`SubprocessTransport::returncode`] has its
    /// status.
    fn process_exited(&mut self) {}
}

/// The handle of a child started by [`Loop::subprocess_exec_with`] (asyncio's
/// `SubprocessTransport`). `Clone`: all clones are the same child.
///
/// Writes to stdin are buffered and fed to the child as it reads. The transport lets
/// go of its protocol once every pipe is done and the child has exited (or the loop
/// closed), so a protocol that keeps a transport clone forms no lasting cycle.
#[derive(Clone)]
pub struct SubprocessTransport {
    inner: Rc<Inner>,
}

type SharedProtocol = Rc<RefCell<dyn SubprocessProtocol>>;

struct Inner {
    child: Rc<Child>,
    lp: WeakLoop,
    /// `None` once finished (every pipe done and the child exited) or the loop closed.
    protocol: RefCell<Option<SharedProtocol>>,
    /// Bytes written with `write_stdin` that the child has not taken yet.
    buffer: RefCell<VecDeque<u8>>,
    /// `close_stdin` was called: close the pipe once the buffer is written.
    stdin_closing: Cell<bool>,
    /// Whether stdin was piped at all.
    stdin_piped: bool,
    /// A write was dropped because stdin is gone (warned about once).
    warned: Cell<bool>,
    /// The stdin feeder, waiting for data.
    feeder: RefCell<Option<Waker>>,
    /// Per fd: piped and not yet reported lost.
    open: [Cell<bool>; 3],
    exited: Cell<bool>,
    closed: Cell<bool>,
    /// The pipe tasks, cancelled by `close()`.
    tasks: RefCell<Vec<Task<()>>>,
}

impl Loop {
    /// Starts `cmd` and drives it with `protocol` (asyncio's `loop.subprocess_exec`):
    /// output arrives in [`SubprocessProtocol::pipe_data_received`], input goes
    /// through [`SubprocessTransport::write_stdin`]. Only the streams the `Command`
    /// set to `Stdio::piped()` are served.
    ///
    /// `connection_made` is called from the loop, after this returns. Returns the
    /// transport and the protocol, shared.
    ///
    /// # Errors
    /// As [`subprocess_exec`](Loop::subprocess_exec); `protocol` is dropped then.
    ///
    /// ```
    /// use std::process::{Command, Stdio};
    /// use evloop::{SubprocessProtocol, SubprocessTransport};
    ///
    /// #[derive(Default)]
    /// struct Collect { out: Vec<u8>, exited: bool }
    /// impl SubprocessProtocol for Collect {
    ///     fn pipe_data_received(&mut self, _fd: i32, data: &[u8]) {
    ///         self.out.extend_from_slice(data);
    ///     }
    ///     fn process_exited(&mut self) {
    ///         self.exited = true;
    ///     }
    /// }
    ///
    /// let lp = evloop::Loop::new()?;
    /// let mut cmd = Command::new("echo");
    /// cmd.arg("hi").stdout(Stdio::piped());
    /// let (transport, protocol) = lp.subprocess_exec_with(cmd, Collect::default())?;
    /// while !protocol.borrow().exited || protocol.borrow().out.is_empty() {
    ///     lp.run_once(Some(std::time::Duration::from_millis(10)))?;
    /// }
    /// assert_eq!(protocol.borrow().out, b"hi\n");
    /// assert!(transport.returncode().unwrap().success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subprocess_exec_with<P: SubprocessProtocol + 'static>(
        &self,
        cmd: Command,
        protocol: P,
    ) -> io::Result<(SubprocessTransport, Rc<RefCell<P>>)> {
        let Spawned {
            child,
            stdin,
            stdout,
            stderr,
        } = spawn(self, cmd)?;
        let protocol = Rc::new(RefCell::new(protocol));
        let shared: SharedProtocol = protocol.clone();
        let inner = Rc::new(Inner {
            child,
            lp: self.downgrade(),
            protocol: RefCell::new(Some(shared)),
            buffer: RefCell::new(VecDeque::new()),
            stdin_closing: Cell::new(false),
            stdin_piped: stdin.is_some(),
            warned: Cell::new(false),
            feeder: RefCell::new(None),
            open: [
                Cell::new(stdin.is_some()),
                Cell::new(stdout.is_some()),
                Cell::new(stderr.is_some()),
            ],
            exited: Cell::new(false),
            closed: Cell::new(false),
            tasks: RefCell::new(Vec::new()),
        });
        let transport = SubprocessTransport {
            inner: inner.clone(),
        };
        // First in the queue: before any step of the tasks below.
        let t = transport.clone();
        self.call_soon(move |_| t.inner.deliver(|p| p.connection_made(&t)));
        let mut tasks = Vec::new();
        if let Some(stdin) = stdin {
            tasks.push(inner.spawn(self, feed_stdin(inner.clone(), stdin)));
        }
        if let Some(stdout) = stdout {
            tasks.push(inner.spawn(self, read_pipe(inner.clone(), 1, stdout.0)));
        }
        if let Some(stderr) = stderr {
            tasks.push(inner.spawn(self, read_pipe(inner.clone(), 2, stderr.0)));
        }
        *inner.tasks.borrow_mut() = tasks;
        drop(inner.spawn(self, watch_exit(inner.clone()))); // detached: runs to the exit
        Ok((transport, protocol))
    }
}

impl Inner {
    /// Runs `fut` as a task that lets go of the protocol if the loop drops it.
    fn spawn(self: &Rc<Self>, lp: &Loop, fut: impl Future<Output = ()> + 'static) -> Task<()> {
        let guard = ReleaseOnLoopClose(self.clone());
        lp.create_task(async move {
            let _guard = guard;
            fut.await
        })
    }

    /// Calls the protocol, unless the transport has let go of it. A panic is
    /// reported and closes the transport.
    fn deliver(self: &Rc<Self>, f: impl FnOnce(&mut dyn SubprocessProtocol)) {
        let Some(protocol) = self.protocol.borrow().clone() else {
            return;
        };
        let called = catch_unwind(AssertUnwindSafe(|| {
            let mut p = protocol.try_borrow_mut().expect(
                "a SubprocessProtocol was borrowed while its transport called it: \
                 do not hold a borrow of the protocol across an await",
            );
            f(&mut *p)
        }));
        if let Err(payload) = called {
            if let Some(lp) = self.lp.upgrade() {
                let ctx = ErrorContext::from_panic("a subprocess protocol panicked", &*payload);
                lp.call_exception_handler(ctx);
            }
            self.close();
        }
    }

    /// Pipe `fd` is done: tells the protocol, once.
    fn pipe_lost(self: &Rc<Self>, fd: usize, error: Option<io::Error>) {
        if self.open[fd].replace(false) {
            self.deliver(|p| p.pipe_connection_lost(fd as i32, error));
            self.finish_if_done();
        }
    }

    fn finish_if_done(&self) {
        if self.exited.get() && self.open.iter().all(|o| !o.get()) {
            self.release();
        }
    }

    /// Lets go of the protocol and the tasks (breaking the protocol ↔ transport
    /// cycle). Dropped with no borrow held.
    fn release(&self) {
        let protocol = self.protocol.borrow_mut().take();
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
        drop(protocol);
    }

    fn close(self: &Rc<Self>) {
        if self.closed.replace(true) {
            return;
        }
        if self.child.status().is_none() {
            let _ = self.child.send_signal(libc::SIGKILL);
        }
        self.buffer.borrow_mut().clear();
        let feeder = self.feeder.borrow_mut().take();
        if let Some(w) = feeder {
            w.wake();
        }
        // The pipe tasks end at their next step, dropping (closing) the pipes.
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        for t in &tasks {
            t.cancel();
        }
        drop(tasks);
        if let Some(lp) = self.lp.upgrade().filter(|lp| !lp.is_closed()) {
            let me = self.clone();
            lp.call_soon(move |_| {
                for fd in 0..3 {
                    me.pipe_lost(fd, None);
                }
            });
        }
    }
}

/// Drops the transport's protocol and tasks if the loop drops the task holding it
/// (the loop closed, or was dropped, before the child finished).
struct ReleaseOnLoopClose(Rc<Inner>);

impl Drop for ReleaseOnLoopClose {
    fn drop(&mut self) {
        if self.0.lp.upgrade().is_none_or(|lp| lp.is_closed()) {
            self.0.release();
        }
    }
}

/// Feeds the buffer to the child's stdin; reports the pipe lost when it is closed,
/// broken, or closed by the child.
async fn feed_stdin(inner: Rc<Inner>, stdin: ChildStdin) {
    enum Step {
        Write,
        Close,
        Stop,
    }
    let error = loop {
        let step = poll_fn(|cx| {
            if inner.closed.get() {
                return Poll::Ready(Step::Stop);
            }
            if !inner.buffer.borrow().is_empty() {
                return Poll::Ready(Step::Write);
            }
            if inner.stdin_closing.get() {
                return Poll::Ready(Step::Close);
            }
            *inner.feeder.borrow_mut() = Some(cx.waker().clone());
            // Idle: the child closing its end is news too.
            stdin.poll_peer_closed(cx).map(|()| Step::Close)
        })
        .await;
        match step {
            Step::Stop => return, // close() reports the pipe
            Step::Close => break None,
            Step::Write => {}
        }
        let written = poll_fn(|cx| {
            if inner.closed.get() {
                return Poll::Ready(Ok(0));
            }
            let buffer = inner.buffer.borrow();
            stdin.poll_write(cx, buffer.as_slices().0)
        })
        .await;
        match written {
            Ok(n) => {
                inner.buffer.borrow_mut().drain(..n);
            }
            Err(e) => break Some(e),
        }
    };
    drop(stdin);
    inner.buffer.borrow_mut().clear();
    inner.pipe_lost(0, error);
}

/// Reads output pipe `fd` into `pipe_data_received` until end of file.
async fn read_pipe(inner: Rc<Inner>, fd: usize, pipe: PipeReader) {
    let mut buf = vec![0u8; READ_SIZE];
    let error = loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break None,
            Ok(n) => inner.deliver(|p| p.pipe_data_received(fd as i32, &buf[..n])),
            Err(e) => break Some(e),
        }
        if inner.closed.get() {
            return; // close() reports the pipe
        }
    };
    drop(pipe);
    inner.pipe_lost(fd, error);
}

/// Waits for the exit and tells the protocol.
async fn watch_exit(inner: Rc<Inner>) {
    if poll_fn(|cx| inner.child.poll_wait(cx)).await.is_ok() {
        inner.exited.set(true);
        inner.deliver(|p| p.process_exited());
        inner.finish_if_done();
    }
}

impl SubprocessTransport {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.inner.child.pid()
    }

    /// The exit status once the child has exited and been reaped; `None` before.
    pub fn returncode(&self) -> Option<ExitStatus> {
        self.inner.child.status()
    }

    /// Queues `data` for the child's stdin; it is written as the child reads. Once
    /// stdin is closed or lost (see
    /// [`pipe_connection_lost`](SubprocessProtocol::pipe_connection_lost)) the data
    /// is dropped, with a warning logged the first time.
    ///
    /// # Panics
    /// If the child's stdin was not `Stdio::piped()` (a programming error).
    pub fn write_stdin(&self, data: &[u8]) {
        let inner = &self.inner;
        assert!(
            inner.stdin_piped,
            "SubprocessTransport::write_stdin: the child's stdin is not piped; \
             set Command::stdin(Stdio::piped())"
        );
        if data.is_empty() {
            return;
        }
        if !inner.open[0].get() || inner.stdin_closing.get() || inner.closed.get() {
            if !inner.warned.replace(true) {
                log::warn!(
                    "evloop: write_stdin after the stdin of child {} was closed; data dropped",
                    self.pid()
                );
            }
            return;
        }
        inner.buffer.borrow_mut().extend(data);
        let feeder = inner.feeder.borrow_mut().take();
        if let Some(w) = feeder {
            w.wake();
        }
    }

    /// Closes the child's stdin once what was queued has been written (asyncio's
    /// `get_pipe_transport(0).close()`). Does nothing if stdin is not piped.
    pub fn close_stdin(&self) {
        let inner = &self.inner;
        if inner.stdin_closing.replace(true) {
            return;
        }
        let feeder = inner.feeder.borrow_mut().take();
        if let Some(w) = feeder {
            w.wake();
        }
    }

    /// Sends `signum` to the child; `Err(ESRCH)` once it has been reaped (see
    /// [`Process::send_signal`](crate::Process::send_signal)).
    pub fn send_signal(&self, signum: i32) -> io::Result<()> {
        self.inner.child.send_signal(signum)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> io::Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    /// Sends SIGKILL.
    pub fn kill(&self) -> io::Result<()> {
        self.send_signal(libc::SIGKILL)
    }

    /// Kills the child with SIGKILL if it is still running, and closes the pipes
    /// (unwritten stdin data is dropped). The protocol still hears
    /// `pipe_connection_lost` for every pipe not yet done, and `process_exited` once
    /// the child is reaped. Closing twice is fine.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl fmt::Debug for SubprocessTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubprocessTransport")
            .field("pid", &self.pid())
            .field("returncode", &self.returncode())
            .field("closed", &self.inner.closed.get())
            .finish()
    }
}
