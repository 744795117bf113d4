//! Subprocesses with piped stdio, in both of asyncio's styles: a [`Process`] with
//! async pipes (`Loop::subprocess_exec`, asyncio's `create_subprocess_exec`), or a
//! [`SubprocessProtocol`] driven by the loop (`Loop::subprocess_exec_with`, asyncio's
//! `loop.subprocess_exec`).
//!
//! The child is started by `std::process::Command::spawn`, so everything a `Command`
//! can say (arguments, environment, working directory, `pre_exec`, which streams are
//! `Stdio::piped()`) applies, and a program that cannot be started is the same `Err`
//! as `spawn`'s. std makes every pipe close-on-exec.
//!
//! # Reaping
//! Children are reaped by their loop without blocking it and without touching other
//! code's children (no SIGCHLD handler, no `waitpid(-1)`): through a pidfd on Linux
//! 5.3+, otherwise through a waiter thread per child, as asyncio's
//! `ThreadedChildWatcher` (set `EVLOOP_NO_PIDFD=1` to force that fallback). No zombie
//! remains after `wait`. A child still running when its loop closes (or is dropped) is
//! left running, and reaped in the background when it exits; its `Process` then
//! reports no status, `wait` is an error, and signals are `Err(ESRCH)`.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::process::{Command, ExitStatus, Output};
use std::rc::Rc;
use std::task::Poll;

use crate::Loop;
use crate::errors::Error;

mod child;
mod pipes;
mod protocol;
mod sys;

use child::Child;
pub use pipes::{ChildStderr, ChildStdin, ChildStdout};
pub use protocol::{SubprocessProtocol, SubprocessTransport};

/// A child process started by [`Loop::subprocess_exec`] (asyncio's `Process`).
///
/// Its piped streams are the public fields, `None` for those the `Command` did not
/// pipe. Dropping a `Process` neither kills nor waits for the child: the loop still
/// reaps it when it exits.
///
/// ```
/// use std::process::{Command, Stdio};
/// let lp = evloop::Loop::new()?;
/// let out = lp.run_until_complete(async {
///     let lp = evloop::Loop::current().unwrap();
///     let mut cmd = Command::new("cat");
///     cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
///     let mut child = lp.subprocess_exec(cmd)?;
///     child.communicate(Some(b"hello")).await
/// })??;
/// assert!(out.status.success());
/// assert_eq!(out.stdout, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Process {
    /// The child's stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, if piped.
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, if piped.
    pub stderr: Option<ChildStderr>,
    child: Rc<Child>,
}

/// A child just started, with its pipes.
struct Spawned {
    child: Rc<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
}

/// Spawns `cmd` and wraps its pipes; the child is watched before this returns. If a
/// pipe cannot be registered, the child is killed (and reaped by its watcher).
fn spawn(lp: &Loop, mut cmd: Command) -> io::Result<Spawned> {
    if lp.is_closed() {
        return Err(io::Error::other(Error::Closed));
    }
    let mut std = cmd.spawn()?;
    let (stdin, stdout, stderr) = (std.stdin.take(), std.stdout.take(), std.stderr.take());
    let child = Child::watch(lp, std)?;
    let pipes = (|| {
        Ok(Spawned {
            child: child.clone(),
            stdin: stdin.map(|p| ChildStdin::new(lp, p)).transpose()?,
            stdout: stdout.map(|p| ChildStdout::new(lp, p)).transpose()?,
            stderr: stderr.map(|p| ChildStderr::new(lp, p)).transpose()?,
        })
    })();
    if pipes.is_err() {
        let _ = child.send_signal(libc::SIGKILL);
    }
    pipes
}

impl Loop {
    /// Starts `cmd` as a child process of this loop (asyncio's
    /// `create_subprocess_exec`); its `Stdio::piped()` streams become the async
    /// [`Process::stdin`], [`stdout`](Process::stdout) and
    /// [`stderr`](Process::stderr).
    ///
    /// The loop need not be running; the pipes and the reaping are served while it
    /// runs.
    ///
    /// # Errors
    /// What `Command::spawn` returns (a program that does not exist is `NotFound`);
    /// an error on a closed loop; an error if the loop cannot watch the child or its
    /// pipes (the child is then killed).
    pub fn subprocess_exec(&self, cmd: Command) -> io::Result<Process> {
        let Spawned {
            child,
            stdin,
            stdout,
            stderr,
        } = spawn(self, cmd)?;
        Ok(Process {
            stdin,
            stdout,
            stderr,
            child,
        })
    }
}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The exit status once the child has exited and been reaped (asyncio's
    /// `returncode`); `None` while it runs. On Unix, a child killed by a signal has
    /// an `ExitStatus` whose `signal()` (`ExitStatusExt`) names it.
    pub fn returncode(&self) -> Option<ExitStatus> {
        self.child.status()
    }

    /// Waits for the child to exit and returns its status; it has been reaped then
    /// (no zombie). Takes `&self`, so that `kill` may be called while a task waits.
    ///
    /// `wait` does not read the pipes: a child that fills a pipe nobody reads blocks
    /// for ever (use [`communicate`](Process::communicate)).
    ///
    /// # Errors
    /// If the loop closed before the child exited.
    pub async fn wait(&self) -> io::Result<ExitStatus> {
        poll_fn(|cx| self.child.poll_wait(cx)).await
    }

    /// Writes `input` to stdin and closes it, reads stdout and stderr to their ends,
    /// all at once, then waits for the child (asyncio's `communicate`). The pipes are
    /// taken out of the `Process` (they are used up).
    ///
    /// Writing and both reads proceed together, so a child that writes a lot to both
    /// streams while it reads its input never deadlocks. `None` closes stdin at once.
    /// A child that exits without reading its input is not an error (a broken stdin
    /// pipe is ignored, as asyncio does). A stream that was not piped comes back
    /// empty; `input` is ignored if stdin was not piped.
    pub async fn communicate(&mut self, input: Option<&[u8]>) -> io::Result<Output> {
        let (stdin, stdout, stderr) = (self.stdin.take(), self.stdout.take(), self.stderr.take());
        let feed = async move {
            let (Some(stdin), Some(input)) = (stdin, input) else {
                return Ok(());
            };
            match stdin.write_all(input).await {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    Ok(())
                }
                r => r,
            }
            // stdin dropped here: the child reads end of input.
        };
        let out = async move {
            match stdout {
                Some(p) => p.0.read_to_end().await,
                None => Ok(Vec::new()),
            }
        };
        let err = async move {
            match stderr {
                Some(p) => p.0.read_to_end().await,
                None => Ok(Vec::new()),
            }
        };
        let (fed, stdout, stderr) = join3(feed, out, err).await;
        fed?;
        let (stdout, stderr) = (stdout?, stderr?);
        let status = self.wait().await?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Sends signal `signum` to the child (asyncio's `send_signal`).
    ///
    /// # Errors
    /// `ESRCH` (asyncio's `ProcessLookupError`) once the child has been reaped, or
    /// after its loop closed: never a signal to a recycled pid. `EINVAL` for a bad
    /// signal number.
    pub fn send_signal(&self, signum: i32) -> io::Result<()> {
        self.child.send_signal(signum)
    }

    /// Sends SIGTERM; see [`send_signal`](Process::send_signal).
    pub fn terminate(&self) -> io::Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    /// Sends SIGKILL; see [`send_signal`](Process::send_signal).
    pub fn kill(&self) -> io::Result<()> {
        self.send_signal(libc::SIGKILL)
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid())
            .field("returncode", &self.returncode())
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish()
    }
}

/// Polls three futures together until all are done.
async fn join3<A: Future, B: Future, C: Future>(
    a: A,
    b: B,
    c: C,
) -> (A::Output, B::Output, C::Output) {
    let (mut a, mut b, mut c) = (pin!(a), pin!(b), pin!(c));
    let (mut ra, mut rb, mut rc) = (None, None, None);
    poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if rc.is_none()
            && let Poll::Ready(v) = c.as_mut().poll(cx)
        {
            rc = Some(v);
        }
        if ra.is_some() && rb.is_some() && rc.is_some() {
            Poll::Ready((ra.take().unwrap(), rb.take().unwrap(), rc.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}
