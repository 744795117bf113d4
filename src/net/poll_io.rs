//! `PollIo`: a library-owned socket whose readiness wakes tasks (the async streams).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::{self, Read, Write};
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
    /// Invariant: false only after an operation returned `WouldBlock` and no event
    /// has arrived since. Starts true: try first, wait only when told to.
    ready: Cell<bool>,
    /// Every task waiting on this direction (methods take `&self`, so several may):
    /// all are woken by an event, and those that find nothing wait again.
    wakers: RefCell<Vec<Waker>>,
}

impl Direction {
    fn fire(&self) {
        self.ready.set(true);
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
        S: std::os::fd::AsRawFd,
    {
        Self::on_loop(&current_loop("net"), sock)
    }

    /// Registers `sock` with `lp`, running or not.
    #[track_caller]
    pub(crate) fn on_loop(lp: &Loop, mut sock: S) -> io::Result<PollIo<S>>
    where
        S: std::os::fd::AsRawFd,
    {
        Self::with_loop(lp, &mut sock).map(|(id, state)| PollIo {
            sock: Some(sock),
            lp: lp.downgrade(),
            id,
            state,
        })
    }

    fn with_loop(lp: &Loop, sock: &mut S) -> io::Result<(SourceId, Rc<State>)>
    where
        S: std::os::fd::AsRawFd,
    {
        let state = Rc::new(State::default());
        state.read.ready.set(true);
        state.write.ready.set(true);
        let id =
            lp.register_source(sock, Interest::READABLE | Interest::WRITABLE, state.clone())?;
        Ok((id, state))
    }

    pub(crate) fn get_ref(&self) -> &S {
        self.sock.as_ref().expect("present until into_inner")
    }

    /// Deregisters the socket and hands it back.
    pub(crate) fn into_inner(mut self) -> S {
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

    /// Waits until an event says the socket is readable (without reading).
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        Self::poll_ready(&self.state.read, cx)
    }

    /// Waits until an event says the socket is writable.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<()> {
        Self::poll_ready(&self.state.write, cx)
    }

    /// Marks writing not ready.
    pub(crate) fn clear_writable(&self) {
        self.state.write.ready.set(false);
    }

    fn poll_ready(dir: &Direction, cx: &mut Context<'_>) -> Poll<()> {
        if dir.ready.get() {
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
