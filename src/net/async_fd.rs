//! `AsyncFd<T>`: any fd as a long-lived async source (async-io's `Async<T>`, tokio's
//! `AsyncFd`).

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::poll_io::PollIo;
use crate::errors::Error;
use crate::task::current_loop;

/// Any fd — an eventfd, a pipe, a timerfd, a device, another event loop's epoll fd —
/// as an async source for tasks on the running loop.
///
/// The fd is registered once, when the `AsyncFd` is made, and stays registered until
/// it is dropped or taken apart with [`into_inner`](AsyncFd::into_inner): a wait on a
/// direction already known to be ready costs no syscall, and no wait re-registers
/// anything (unlike a oneshot registration, re-armed per wait). Several tasks may
/// wait on one direction at once; an event wakes them all, and each that finds
/// nothing waits again.
///
/// Do the I/O through [`read_with`](AsyncFd::read_with) and
/// [`write_with`](AsyncFd::write_with): they run the operation at once (no wait when
/// the fd is ready), and on `WouldBlock` wait for the next event and run it again.
///
/// ```
/// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
/// use evloop::net::AsyncFd;
///
/// evloop::test::run(async {
///     // SAFETY: eventfd has no memory preconditions; the result is checked.
///     let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
///     assert!(fd >= 0);
///     // SAFETY: `fd` is a new descriptor that nothing else owns.
///     let fd = unsafe { OwnedFd::from_raw_fd(fd) };
///     let efd = AsyncFd::new(fd).unwrap();
///     let n: u64 = 3;
///     efd.write_with(|fd| write8(fd.as_raw_fd(), n)).await.unwrap();
///     let got = efd.read_with(|fd| read8(fd.as_raw_fd())).await.unwrap();
///     assert_eq!(got, 3);
/// });
/// # fn write8(fd: i32, n: u64) -> std::io::Result<()> {
/// #     // SAFETY: writes 8 bytes from a live u64.
/// #     let r = unsafe { libc::write(fd, (&n as *const u64).cast(), 8) };
/// #     if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
/// # }
/// # fn read8(fd: i32) -> std::io::Result<u64> {
/// #     let mut n = 0u64;
/// #     // SAFETY: reads at most 8 bytes into a live u64.
/// #     let r = unsafe { libc::read(fd, (&mut n as *mut u64).cast(), 8) };
/// #     if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n) }
/// # }
/// ```
///
/// # Non-blocking mode
/// [`new`](AsyncFd::new) puts the fd in non-blocking mode (`O_NONBLOCK`, as async-io's
/// `Async::new` does): an operation that blocked would block the whole loop. The
/// flag belongs to the open file description, so other holders of the same file
/// (a `dup`, a parent process sharing a terminal) see it too, and
/// [`into_inner`](AsyncFd::into_inner) does not clear it.
///
/// # Waiting without the I/O
/// [`readable`](AsyncFd::readable) and [`writable`](AsyncFd::writable) complete when
/// the fd may be ready. Readiness is edge-triggered underneath: a fresh event is
/// trusted at once, with no syscall; once a wait has completed on an event, the next
/// wait checks the fd's level (one `poll(2)`) before it trusts that event again, so a
/// task that waits, reads by hand until `WouldBlock` and waits again never spins, and
/// one that leaves data unread never hangs. Readiness can be spurious: the
/// operation may still say `WouldBlock`.
///
/// # Dropping
/// Dropping deregisters the fd from the loop, then drops `T`: an `OwnedFd` is closed,
/// a `BorrowedFd` or `&File` is left open. The loop never closes anything it does not
/// own.
pub struct AsyncFd<T: AsFd> {
    io: PollIo<FdSource<T>>,
}

/// `T` as a mio source: registered by its fd number, owned as `T`.
struct FdSource<T>(T);

impl<T: AsFd> AsRawFd for FdSource<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl<T: AsFd> Source for FdSource<T> {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).register(r, t, i)
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).reregister(r, t, i)
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        SourceFd(&self.as_raw_fd()).deregister(r)
    }
}

impl<T: AsFd> AsyncFd<T> {
    /// Registers `inner`'s fd with the running loop, for reading and writing, and
    /// puts it in non-blocking mode.
    ///
    /// # Errors
    /// An fd that epoll cannot watch (a regular file or a directory: `EPERM`), or one
    /// already registered with this loop (`EEXIST`: one `AsyncFd` a file). On error
    /// `inner` is dropped and nothing stays registered.
    ///
    /// # Panics
    /// Outside a running loop.
    #[track_caller]
    pub fn new(inner: T) -> io::Result<AsyncFd<T>> {
        let lp = current_loop("net::AsyncFd::new");
        let io = PollIo::on_loop(&lp, FdSource(inner))?;
        set_nonblocking(io.get_ref().as_raw_fd())?;
        Ok(AsyncFd { io })
    }

    /// Waits until the fd may be readable (see [Waiting without the
    /// I/O](AsyncFd#waiting-without-the-io)).
    ///
    /// # Errors
    /// `Error::Closed` (as an `io::Error` of kind `Other`) if the loop has closed.
    pub async fn readable(&self) -> io::Result<()> {
        self.check_open()?;
        self.io.readable().await;
        self.check_open()
    }

    /// Waits until the fd may be writable.
    ///
    /// # Errors
    /// As [`readable`](AsyncFd::readable).
    pub async fn writable(&self) -> io::Result<()> {
        self.check_open()?;
        self.io.writable().await;
        self.check_open()
    }

    /// Runs `op` (a read of some kind) until it returns something other than
    /// `WouldBlock`: at once first, then after each readable event. `Interrupted`
    /// retries at once. Other errors and successes are returned.
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.check_open()?;
        poll_fn(|cx| self.io.poll_read_with(cx, |s| op(&s.0))).await
    }

    /// As [`read_with`](AsyncFd::read_with), for an operation that writes.
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.check_open()?;
        poll_fn(|cx| self.io.poll_write_with(cx, |s| op(&s.0))).await
    }

    /// The wrapped value.
    pub fn get_ref(&self) -> &T {
        &self.io.get_ref().0
    }

    /// The wrapped value, mutably. Replacing its fd (e.g. `dup2` onto it) while
    /// registered confuses epoll: take it out with `into_inner` first.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io.get_mut().0
    }

    /// Deregisters the fd and hands `T` back (still non-blocking).
    ///
    /// # Errors
    /// None today: deregistration cannot fail for an fd `T` keeps open. The `Result`
    /// leaves room for a registration that can (as tokio's `into_std`).
    pub fn into_inner(self) -> io::Result<T> {
        Ok(self.io.into_inner().0)
    }

    fn check_open(&self) -> io::Result<()> {
        if self.io.loop_is_open() {
            Ok(())
        } else {
            Err(io::Error::other(Error::Closed))
        }
    }
}

/// Sets `O_NONBLOCK` on `fd`.
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fd` is open for the duration of the call (the caller's `T: AsFd` owns
    // or borrows it); F_GETFL takes no argument and touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above; F_SETFL takes an int argument and touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl<T: AsFd> AsFd for AsyncFd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<T: AsFd> AsRawFd for AsyncFd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.get_ref().as_fd().as_raw_fd()
    }
}

impl<T: AsFd + fmt::Debug> fmt::Debug for AsyncFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFd")
            .field("inner", self.get_ref())
            .finish()
    }
}
