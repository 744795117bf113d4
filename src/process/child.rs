//! A child process as the loop tracks it: how its exit is noticed, who reaps it, and
//! signals that can never reach a recycled pid.
//!
//! # Who reaps
//! Exactly one party reaps each child, and never with `waitpid(-1)` (which would steal
//! other code's children) nor through a SIGCHLD handler:
//! - While the loop is open, the loop thread does (`Child::reap`), when told the child
//!   exited: by its **pidfd** becoming readable (Linux 5.3+), or, without pidfds, by
//!   a **waiter thread** per child (asyncio's `ThreadedChildWatcher`) that blocks in
//!   `waitid(WNOWAIT)`, which waits for the exit *without* reaping, and then sends
//!   the loop a threadsafe call.
//! - Once the loop is closed (or dropped) with the child still running, a background
//!   reaper does: a thread that waits for that child (pidfd mode), or the waiter
//!   thread itself, whose call the loop can no longer run (fallback mode).
//!
//! Because the loop thread is the only reaper while the loop is open, and signals are
//! sent from that same thread only while the child is unreaped (a zombie keeps its
//! pid reserved), `send_signal` never reaches a recycled pid, with or without pidfds.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::thread;

use crate::source::FdSource;
use mio::Interest;
use mio::unix::SourceFd;
use slab::Slab;

use super::sys;
use crate::Loop;
use crate::event_loop::WeakLoop;
use crate::source::{Readiness, SourceHandler, SourceId};

/// How the loop learns that the child exited.
enum Watch {
    /// Readable once the child has exited; kept open for `pidfd_send_signal`.
    Pidfd { fd: OwnedFd, source: SourceId },
    /// A waiter thread sends an [`ExitNotice`].
    Thread,
}

/// A spawned child, shared by its `Process` or transport and the loop's registry.
pub(crate) struct Child {
    pid: u32,
    lp: WeakLoop,
    watch: Watch,
    /// std's handle, for reaping: `Some` until reaped or handed to a background
    /// reaper (its pipes were taken out at spawn).
    std: RefCell<Option<std::process::Child>>,
    /// Set once, when the loop reaps the child.
    status: Cell<Option<ExitStatus>>,
    /// The loop closed first: the child now belongs to a background reaper, and the
    /// loop will never know its status.
    released: Cell<bool>,
    /// Tasks waiting for the exit.
    waiters: RefCell<Vec<Waker>>,
    /// The child's key in its loop's [`Children`].
    key: Cell<usize>,
}

impl Child {
    /// Starts watching `std`, a child just spawned. On error the child has been
    /// killed and reaped.
    pub(crate) fn watch(lp: &Loop, std: std::process::Child) -> io::Result<Rc<Child>> {
        let pid = std.id();
        let pidfd = if sys::pidfd_supported() {
            sys::pidfd_open(pid).ok()
        } else {
            None
        };
        // A child must be registered before anything can reap it.
        let children = Children::of(lp);
        let entry = children.live.borrow_mut().vacant_entry().key();
        let make = |watch| {
            Rc::new(Child {
                pid,
                lp: lp.downgrade(),
                watch,
                std: RefCell::new(Some(std)),
                status: Cell::new(None),
                released: Cell::new(false),
                waiters: RefCell::new(Vec::new()),
                key: Cell::new(entry),
            })
        };
        let child = match pidfd {
            Some(fd) => {
                // The handler is the child itself; `source` is filled in below.
                let probe = Rc::new(PidfdWaiter(RefCell::new(None)));
                match lp.register_source(
                    &mut FdSource(fd.as_raw_fd()),
                    Interest::READABLE,
                    probe.clone(),
                ) {
                    Ok(source) => {
                        let child = make(Watch::Pidfd { fd, source });
                        *probe.0.borrow_mut() = Some(Rc::downgrade(&child));
                        child
                    }
                    // An epoll that refuses more fds: fall back to a waiter thread.
                    Err(_) => Self::with_thread(lp, make)?,
                }
            }
            None => Self::with_thread(lp, make)?,
        };
        let key = children.live.borrow_mut().insert(child.clone());
        debug_assert_eq!(key, entry);
        Ok(child)
    }

    /// Fallback mode: a waiter thread that notices the exit without reaping.
    fn with_thread(lp: &Loop, make: impl FnOnce(Watch) -> Rc<Child>) -> io::Result<Rc<Child>> {
        let child = make(Watch::Thread);
        let (pid, key, remote) = (child.pid, child.key.get(), lp.remote());
        let spawned = thread::Builder::new()
            .name(format!("evloop-child-{pid}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                sys::wait_exited(pid);
                let notice = ExitNotice {
                    pid,
                    key,
                    armed: true,
                };
                // Refused (the loop closed): the notice, dropped, reaps the child.
                let _ = remote.call_soon_threadsafe(move |lp| notice.deliver(lp));
            });
        if let Err(e) = spawned {
            let mut std = child.std.borrow_mut().take().expect("not reaped yet");
            let _ = std.kill();
            let _ = std.wait();
            return Err(e);
        }
        Ok(child)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status, once the loop has reaped the child.
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        self.status.get()
    }

    /// Sends `signum`; `Err(ESRCH)` once the child is reaped or released.
    pub(crate) fn send_signal(&self, signum: i32) -> io::Result<()> {
        if self.status.get().is_some() || self.released.get() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        match &self.watch {
            Watch::Pidfd { fd, .. } => sys::pidfd_send_signal(fd.as_raw_fd(), signum),
            // Unreaped, and only this thread reaps it: the pid is still the child's.
            Watch::Thread => sys::kill(self.pid, signum),
        }
    }

    /// `Ready` with the status once reaped; an error if the loop closed first.
    pub(crate) fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<io::Result<ExitStatus>> {
        if let Some(status) = self.status.get() {
            return Poll::Ready(Ok(status));
        }
        if self.released.get() || self.lp.upgrade().is_none_or(|lp| lp.is_closed()) {
            return Poll::Ready(Err(io::Error::other(
                "the loop closed before the child exited; it is reaped in the background",
            )));
        }
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// On the loop thread, told that the child exited: reaps it.
    fn reap(&self, lp: &Loop) {
        if self.status.get().is_some() {
            return;
        }
        let polled = self.std.borrow_mut().as_mut().map(|c| c.try_wait());
        let status = match polled {
            Some(Ok(Some(status))) => status,
            Some(Ok(None)) | None => return, // not exited (a spurious event), or released
            Some(Err(e)) => {
                // Someone else reaped it (SIGCHLD ignored, or a waitpid(-1) elsewhere):
                // asyncio reports 255 then.
                log::warn!(
                    "evloop: child {} was reaped by someone else ({e}); reporting exit status 255",
                    self.pid
                );
                ExitStatus::from_raw(255 << 8)
            }
        };
        self.status.set(Some(status));
        let std = self.std.borrow_mut().take();
        drop(std);
        if let Watch::Pidfd { fd, source } = &self.watch {
            lp.deregister_source(&mut SourceFd(&fd.as_raw_fd()), *source);
        }
        let me = Children::of(lp)
            .live
            .borrow_mut()
            .try_remove(self.key.get());
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
        drop(me);
    }

    /// The loop is closing or gone with the child unreaped: hand it to a background
    /// reaper (pidfd mode; in fallback mode the waiter thread is that reaper already).
    fn release(&self) {
        if self.status.get().is_some() || self.released.replace(true) {
            return;
        }
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
        if let Watch::Thread = self.watch {
            return;
        }
        let Some(mut std) = self.std.borrow_mut().take() else {
            return;
        };
        let pid = self.pid;
        let spawned = thread::Builder::new()
            .name(format!("evloop-reaper-{pid}"))
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = std.wait();
            });
        if let Err(e) = spawned {
            log::error!(
                "evloop: cannot start a reaper thread for child {pid}; it stays a zombie when it exits: {e}"
            );
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.release();
    }
}

/// The pidfd's source handler. Holds the child weakly: the registry owns it.
struct PidfdWaiter(RefCell<Option<std::rc::Weak<Child>>>);

impl SourceHandler for PidfdWaiter {
    fn ready(&self, lp: &Loop, _: Readiness) {
        let child = self.0.borrow().as_ref().and_then(|w| w.upgrade());
        if let Some(child) = child {
            child.reap(lp);
        }
    }
}

/// A waiter thread's news that child `pid` exited (it is a zombie now). Reaps the
/// child itself if dropped without being delivered (the loop closed first).
struct ExitNotice {
    pid: u32,
    key: usize,
    armed: bool,
}

impl ExitNotice {
    fn deliver(mut self, lp: &Loop) {
        let child = Children::of(lp).live.borrow().get(self.key).cloned();
        if let Some(child) = child.filter(|c| c.pid == self.pid) {
            child.reap(lp);
            self.armed = child.status.get().is_none();
        }
    }
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        if self.armed {
            sys::reap_exited(self.pid);
        }
    }
}

/// A loop's unreaped children (an extension of the loop).
#[derive(Default)]
struct Children {
    live: RefCell<Slab<Rc<Child>>>,
    /// `close()` knows to release the children.
    close_hooked: Cell<bool>,
}

impl Children {
    fn of(lp: &Loop) -> Rc<Children> {
        let children = lp.extension(Children::default);
        if !children.close_hooked.replace(true) {
            let c = Rc::downgrade(&children);
            lp.on_close(move || {
                if let Some(c) = c.upgrade() {
                    c.release_all();
                }
            });
        }
        children
    }

    fn release_all(&self) {
        let live: Vec<_> = self.live.borrow_mut().drain().collect();
        for child in &live {
            child.release();
        }
    }
}

impl Drop for Children {
    /// A loop dropped without `close()`.
    fn drop(&mut self) {
        for child in self.live.get_mut().drain() {
            child.release();
        }
    }
}
