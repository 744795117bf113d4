//! `readable` / `writable`: wait for any fd, for custom I/O in tasks.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::handle::Handle;
use crate::task::current_loop;

/// Completes when `fd` is readable (level-triggered: at once if data is waiting).
/// Built on [`Loop::add_reader`](crate::Loop::add_reader), so it replaces a reader
/// already registered for `fd`; the registration is removed when the future completes
/// or is dropped. The loop never reads or closes `fd`.
///
/// # Errors
/// A bad fd, or one epoll refuses (a regular file).
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
    armed: Option<(Handle, Rc<Shared>)>,
}

#[derive(Default)]
struct Shared {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl FdReady {
    fn new(fd: RawFd, write: bool) -> FdReady {
        FdReady {
            fd,
            write,
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
            *shared.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let lp = current_loop("net::readable");
        let shared = Rc::new(Shared::default());
        *shared.waker.borrow_mut() = Some(cx.waker().clone());
        let s = shared.clone();
        let (fd, write) = (self.fd, self.write);
        let callback = move |lp: &crate::Loop| {
            s.fired.set(true);
            if write {
                lp.remove_writer(fd);
            } else {
                lp.remove_reader(fd);
            }
            if let Some(w) = s.waker.borrow_mut().take() {
                w.wake();
            }
        };
        let handle = if write {
            lp.add_writer(fd, callback)
        } else {
            lp.add_reader(fd, callback)
        };
        match handle {
            Ok(h) => {
                self.armed = Some((h, shared));
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Drop for FdReady {
    fn drop(&mut self) {
        if let Some((h, _)) = &self.armed {
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
