//! `readable` / `writable`: wait for any fd, for custom I/O in tasks.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::Loop;
use crate::handle::Handle;
use crate::task::current_loop;

/// Completes when `fd` is readable (level-triggered: at once if data is waiting).
/// Built on [`Loop::add_reader`](crate::Loop::add_reader), so it replaces a reader
/// already registered for `fd`; the registration is removed when the future completes
/// or is dropped. The loop never reads or closes `fd`.
///
/// # Errors
/// A bad fd, or one epoll refuses (a regular file). `ResourceBusy` if, while it
/// waits, another reader of `fd` replaces it (an `add_reader`, a second `readable`, a
/// `sock_recv` of the same socket) or the loop closes: one waiter per fd and
/// direction, and the one displaced hears so rather than wait for ever.
///
/// # Panics
/// When polled outside a running loop.
pub fn readable(fd: RawFd) -> FdReady {
    FdReady::new(fd, false)
}

/// Completes when `fd` is writable; see [`readable`].
pub fn writable(fd: RawFd) -> FdReady {
    FdReady::new(fd, true)
}

/// The future of [`readable`] and [`writable`].
pub struct FdReady {
    fd: RawFd,
    write: bool,
    /// The loop to wait on; `None`: the loop running when first polled.
    lp: Option<Loop>,
    armed: Option<(Handle, Rc<Shared>)>,
}

/// What the registered callback and the future share.
#[derive(Default)]
struct Shared {
    /// The fd was ready: the callback ran (and removed itself).
    fired: Cell<bool>,
    /// The callback was dropped without having run and without the future asking for
    /// it: it was replaced by another reader/writer of the fd, or the loop closed.
    displaced: Cell<bool>,
    /// The future let go of its registration itself (completed or dropped).
    released: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Shared {
    fn wake(&self) {
        let waker = self.waker.borrow_mut().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Moved into the registered callback: its drop tells the future when the callback
/// went away unrun (see [`Shared::displaced`]).
struct Armed(Rc<Shared>);

impl Drop for Armed {
    fn drop(&mut self) {
        let s = &self.0;
        if !s.fired.get() && !s.released.get() {
            s.displaced.set(true);
            s.wake();
        }
    }
}

impl FdReady {
    fn new(fd: RawFd, write: bool) -> FdReady {
        FdReady {
            fd,
            write,
            lp: None,
            armed: None,
        }
    }

    /// Waits for `fd` on `lp` (the loop's own methods: no running loop needed).
    pub(crate) fn on(lp: &Loop, fd: RawFd, write: bool) -> FdReady {
        FdReady {
            fd,
            write,
            lp: Some(lp.clone()),
            armed: None,
        }
    }
}

impl Future for FdReady {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((_, shared)) = &self.armed {
            if shared.fired.get() {
                return Poll::Ready(Ok(()));
            }
            if shared.displaced.get() {
                return Poll::Ready(Err(displaced(self.fd, self.write)));
            }
            *shared.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let lp = match &self.lp {
            Some(lp) => lp.clone(),
            None => current_loop("net::readable"),
        };
        let shared = Rc::new(Shared::default());
        let armed = Armed(shared.clone());
        let (fd, write) = (self.fd, self.write);
        let callback = move |lp: &Loop| {
            let s = &armed.0;
            s.fired.set(true);
            // Ours is the callback of `fd` now (it runs), so this removes nothing else.
            if write {
                lp.remove_writer(fd);
            } else {
                lp.remove_reader(fd);
            }
            s.wake();
        };
        let handle = if write {
            lp.add_writer(fd, callback)
        } else {
            lp.add_reader(fd, callback)
        };
        match handle {
            Ok(h) => {
                // Only now: a refused callback is dropped unrun, and must wake no one.
                *shared.waker.borrow_mut() = Some(cx.waker().clone());
                self.armed = Some((h, shared));
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

fn displaced(fd: RawFd, write: bool) -> io::Error {
    let (who, how) = if write {
        ("writer", "add_writer")
    } else {
        ("reader", "add_reader")
    };
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!(
            "the wait for fd {fd} was cancelled: another {who} replaced it ({how}, or a second \
             wait on the same fd and direction), or the loop closed"
        ),
    )
}

impl Drop for FdReady {
    fn drop(&mut self) {
        if let Some((h, shared)) = &self.armed {
            shared.released.set(true);
            h.cancel(); // generation-checked: a newer reader of the fd is left alone
        }
    }
}

impl fmt::Debug for FdReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdReady")
            .field("fd", &self.fd)
            .field("write", &self.write)
            .finish()
    }
}
