//! `PollIo`: a library-owned socket whose readiness wakes tasks (the async streams).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use mio::Interest;
use mio::event::Source;

use crate::Loop;
use crate::event_loop::WeakLoop;
use crate::source::{Readiness, SourceHandler, SourceId};
use crate::task::current_loop;

/// How many operations in a row one stream may complete within one loop iteration
/// before it yields (returns `Pending` after waking itself), so that a task reading a
/// stream that always has data cannot starve the rest of the loop.
const OP_BUDGET: u32 = 32;

/// Readiness of one direction, edge-triggered.
#[derive(Default)]
struct Direction {
    /// Invariant: false only after an operation returned `WouldBlock` (or a level
    /// check found the fd not ready) and no event has arrived since. Starts true: try
    /// first, wait only when told to.
    ready: Cell<bool>,
    /// A wait for readiness (`poll_ready`) has already completed on the current
    /// `ready`, which may since have been used up by I/O this type does not see (a
    /// caller reading the fd itself). Then the next wait checks the fd's level with
    /// one `poll(2)` instead of trusting `ready`: a caller that waits, reads by hand
    /// until `WouldBlock` and waits again neither spins on a stale `ready` nor hangs
    /// on an edge that already passed. An event clears it: a fresh edge is trusted
    /// with no syscall. Starts true (nothing is known of a new fd's level).
    handed: Cell<bool>,
    /// Every task waiting on this direction (methods take `&self`, so several may):
    /// all are woken by an event, and those that find nothing wait again.
    wakers: RefCell<Vec<Waker>>,
}

impl Direction {
    fn fire(&self) {
        self.ready.set(true);
        self.handed.set(false);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    fn wait(&self, waker: &Waker) {
        let mut wakers = self.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }
}

#[derive(Default)]
struct State {
    read: Direction,
    write: Direction,
    /// An event reported a hang-up or error: reads go on until they say so (no
    /// short-read shortcut).
    read_closed: Cell<bool>,
    /// (iteration, operations completed in it), for the budget.
    budget: Cell<(u64, u32)>,
}

impl SourceHandler for State {
    fn ready(&self, _: &Loop, readiness: Readiness) {
        if readiness.bits() & (Readiness::READ_CLOSED | Readiness::ERROR) != 0 {
            self.read_closed.set(true);
        }
        if readiness.is_readable() {
            self.read.fire();
        }
        if readiness.is_writable() {
            self.write.fire();
        }
    }
}

/// A registered socket and its readiness.
pub(crate) struct PollIo<S: Source> {
    /// `Some` until `into_inner`.
    sock: Option<S>,
    lp: WeakLoop,
    id: SourceId,
    state: Rc<State>,
}

impl<S: Source> PollIo<S> {
    /// Registers `sock` with the running loop.
    ///
    /// # Panics
    /// Outside a running loop.
    #[track_caller]
    pub(crate) fn new(sock: S) -> io::Result<PollIo<S>>
    where
        S: AsRawFd,
    {
        Self::on_loop(&current_loop("net"), sock)
    }

    /// Registers `sock` with `lp` (running or not), for reading and writing.
    #[track_caller]
    pub(crate) fn on_loop(lp: &Loop, mut sock: S) -> io::Result<PollIo<S>>
    where
        S: AsRawFd,
    {
        let state = Rc::new(State::default());
        for dir in [&state.read, &state.write] {
            dir.ready.set(true);
            dir.handed.set(true);
        }
        let id = lp.register_source(
            &mut sock,
            Interest::READABLE | Interest::WRITABLE,
            state.clone(),
        )?;
        Ok(PollIo {
            sock: Some(sock),
            lp: lp.downgrade(),
            id,
            state,
        })
    }

    /// Whether the loop it is registered with is still open.
    pub(crate) fn loop_is_open(&self) -> bool {
        self.lp.upgrade().is_some_and(|lp| !lp.is_closed())
    }

    pub(crate) fn get_ref(&self) -> &S {
        self.sock.as_ref().expect("present until into_inner")
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        self.sock.as_mut().expect("present until into_inner")
    }

    /// Deregisters the socket and hands it back.
    pub(crate) fn into_inner(mut self) -> S {
        self.take_inner()
    }

    /// Deregisters the socket and hands it back, leaving `self` empty: for an owner
    /// with a `Drop` of its own, which cannot be taken apart. Nothing but dropping
    /// `self` may follow.
    pub(crate) fn take_inner(&mut self) -> S {
        let mut sock = self.sock.take().expect("present until into_inner");
        if let Some(lp) = self.lp.upgrade() {
            lp.deregister_source(&mut sock, self.id);
        }
        sock
    }

    /// Runs `op` when the socket may be readable; `Pending` (and a wake later) on
    /// `WouldBlock`.
    pub(crate) fn poll_read_with<T>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        self.poll_with(&self.state.read, cx, op)
    }

    /// As [`poll_read_with`](PollIo::poll_read_with), for writing.
    pub(crate) fn poll_write_with<T>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        self.poll_with(&self.state.write, cx, op)
    }

    /// Waits until the socket may be readable (without reading): at once on an edge
    /// not yet handed out, else after a level check or the next event.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()>
    where
        S: AsRawFd,
    {
        self.poll_ready(&self.state.read, libc::POLLIN, cx)
    }

    /// Waits until the socket may be writable.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()>
    where
        S: AsRawFd,
    {
        self.poll_ready(&self.state.write, libc::POLLOUT, cx)
    }

    /// Marks writing not ready.
    pub(crate) fn clear_writable(&self) {
        self.state.write.ready.set(false);
    }

    fn poll_ready(&self, dir: &Direction, events: libc::c_short, cx: &mut Context<'_>) -> Poll<()>
    where
        S: AsRawFd,
    {
        if dir.ready.get() && dir.handed.get() && !level_ready(self.get_ref().as_raw_fd(), events) {
            dir.ready.set(false);
        }
        if dir.ready.get() {
            dir.handed.set(true);
            Poll::Ready(())
        } else {
            dir.wait(cx.waker());
            Poll::Pending
        }
    }

    fn poll_with<T>(
        &self,
        dir: &Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            if !dir.ready.get() {
                dir.wait(cx.waker());
                return Poll::Pending;
            }
            if self.over_budget() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match op(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dir.ready.set(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }

    /// Counts an operation; true when this stream has had its share of the current
    /// iteration.
    fn over_budget(&self) -> bool {
        let Some(lp) = self.lp.upgrade() else {
            return false;
        };
        let it = lp.iteration();
        let (at, n) = self.state.budget.get();
        let n = if at == it { n + 1 } else { 1 };
        self.state.budget.set((it, n));
        n > OP_BUDGET
    }
}

/// Whether `fd` is ready for `events` now (`poll(2)` with a zero timeout). A hang-up
/// or an error counts as ready (the operation will report it), and so does a failed
/// check: a spurious readiness costs one `WouldBlock`, a missed one a hang.
fn level_ready(fd: RawFd, events: libc::c_short) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid, initialised `pollfd` that outlives the call, and the
    // count passed is 1; `poll` only writes its `revents`.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n != 0
}

/// Byte-stream operations shared by the TCP and Unix streams.
impl<S: Source> PollIo<S>
where
    for<'a> &'a S: Read + Write,
{
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_with(cx, |mut s| s.read(buf))
    }

    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |mut s| s.write(buf))
    }

    pub(crate) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    pub(crate) async fn read_exact(&self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read(buf).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    pub(crate) async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write(cx, buf)).await
    }

    pub(crate) async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }
}

impl<S: Source> Drop for PollIo<S> {
    fn drop(&mut self) {
        if let (Some(lp), Some(sock)) = (self.lp.upgrade(), self.sock.as_mut()) {
            lp.deregister_source(sock, self.id);
        }
    }
}
