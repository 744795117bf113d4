//! `PollIo`: a library-owned socket whose readiness wakes tasks (the async streams).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use mio::Interest;
use mio::event::Source;

use crate::Loop;
use crate::event_loop::WeakLoop;
use crate::source::{Readiness, SourceHandler, SourceId};
use crate::task::current_loop;
use crate::waiters::{WaitQueue, Wakeups};

/// How many operations in a row one stream may complete within one loop iteration
/// before it yields (returns `Pending` after waking itself), so that a task reading a
/// stream that always has data cannot starve the rest of the loop.
const OP_BUDGET: u32 = 32;

/// Readiness of one direction, edge-triggered, and who waits for it.
///
/// Two kinds of waiter, as async-io's `Direction` has:
/// - the **poll API** (`AsyncRead` / `AsyncWrite`, `poll_read_with` and friends)
///   keeps one waker: that of the latest poll (the futures-io contract: "the current
///   task is woken");
/// - each **future** ([`IoOp`], [`IoReady`]: `accept()`, `recv()`, `read()`,
///   `readable()`, ...) has its own entry in `waiters`, refreshed on re-poll only if
///   its waker changed, and taken off in O(1) when the future is dropped. So a
///   dropped or timed-out `accept()` leaves nothing behind, and re-polls never pile
///   up duplicates.
#[derive(Default)]
struct Direction {
    /// Invariant: false only after an operation returned `WouldBlock` and no event
    /// has arrived since. Starts true: try first, wait only when told to.
    ready: Cell<bool>,
    /// A wait for readiness (`poll_ready`) has already completed on the current
    /// `ready`, which may since have been used up by I/O this type does not see (a
    /// caller reading the fd itself). Then the next wait checks the fd's level with
    /// one `poll(2)` instead of trusting `ready`: a caller that waits, reads by hand
    /// until `WouldBlock` and waits again neither spins on a stale `ready` nor hangs
    /// on an edge that already passed. An event clears it: a fresh edge is trusted
    /// with no syscall. Starts true (nothing is known of a new fd's level).
    handed: Cell<bool>,
    /// The waker of the latest poll through the poll API, if it is waiting.
    poller: RefCell<Option<Waker>>,
    /// The futures waiting on this direction, one entry each, keyed by
    /// [`WaitKey`]; every one is notified by an event, and those that find nothing
    /// wait again.
    waiters: RefCell<WaitQueue>,
}

/// Where a waiter of a [`Direction`] keeps its waker.
enum Waiter<'a> {
    /// The poll API's single slot.
    Poller,
    /// A future's own entry: `None` until it first waits, then its key until it is
    /// dropped (only the future removes its entry, so a key is never reused while
    /// held).
    Entry(&'a mut Option<usize>),
}

impl Direction {
    fn fire(&self) {
        self.ready.set(true);
        self.handed.set(false);
        // Declared before the borrows: the wakers run once they have ended.
        let mut wakeups = Wakeups::default();
        if let Some(w) = self.poller.borrow_mut().take() {
            wakeups.wake(w);
        }
        self.waiters.borrow_mut().notify_all(&mut wakeups);
    }

    fn wait(&self, waker: &Waker, waiter: Waiter<'_>) {
        let mut wakeups = Wakeups::default();
        match waiter {
            Waiter::Poller => {
                let mut slot = self.poller.borrow_mut();
                match &*slot {
                    Some(w) if w.will_wake(waker) => {}
                    _ => {
                        if let Some(old) = slot.replace(waker.clone()) {
                            wakeups.discard(old);
                        }
                    }
                }
            }
            Waiter::Entry(key) => {
                let mut waiters = self.waiters.borrow_mut();
                match *key {
                    Some(k) if !waiters.is_notified(k) => waiters.register(k, waker, &mut wakeups),
                    // Notified by an event that found nothing for it: queue anew.
                    Some(k) => {
                        waiters.remove(k, &mut wakeups);
                        *key = Some(waiters.push(waker));
                    }
                    None => *key = Some(waiters.push(waker)),
                }
            }
        }
    }

    /// A future stops waiting: its entry (and waker) goes, in O(1).
    fn leave(&self, key: &mut Option<usize>) {
        if let Some(k) = key.take() {
            let mut wakeups = Wakeups::default();
            self.waiters.borrow_mut().remove(k, &mut wakeups);
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
    /// `WouldBlock`. The poll API: only the latest poll's waker is woken.
    pub(crate) fn poll_read_with<T>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        self.poll_with(&self.state.read, cx, Waiter::Poller, op)
    }

    /// As [`poll_read_with`](PollIo::poll_read_with), for writing.
    pub(crate) fn poll_write_with<T>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnMut(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        self.poll_with(&self.state.write, cx, Waiter::Poller, op)
    }

    /// A future that runs `op` once the socket may be readable (again on each event
    /// while it returns `WouldBlock`).
    pub(crate) fn read_op<T, F: FnMut(&S) -> io::Result<T> + Unpin>(
        &self,
        op: F,
    ) -> IoOp<'_, S, F> {
        IoOp::new(self, Dir::Read, op)
    }

    /// As [`read_op`](PollIo::read_op), for writing.
    pub(crate) fn write_op<T, F: FnMut(&S) -> io::Result<T> + Unpin>(
        &self,
        op: F,
    ) -> IoOp<'_, S, F> {
        IoOp::new(self, Dir::Write, op)
    }

    /// Waits until an event says the socket is readable (without reading).
    pub(crate) fn readable(&self) -> IoReady<'_, S> {
        IoReady {
            io: self,
            dir: Dir::Read,
            key: None,
        }
    }

    /// Waits until an event says the socket is writable.
    pub(crate) fn writable(&self) -> IoReady<'_, S> {
        IoReady {
            io: self,
            dir: Dir::Write,
            key: None,
        }
    }

    /// Marks writing not ready.
    pub(crate) fn clear_writable(&self) {
        self.state.write.ready.set(false);
    }

    fn direction(&self, dir: Dir) -> &Direction {
        match dir {
            Dir::Read => &self.state.read,
            Dir::Write => &self.state.write,
        }
    }

    /// Ready at once on an edge not yet handed out; after one was handed out, only
    /// if a level check (one `poll(2)`) finds the fd ready; else waits for an event.
    fn poll_ready(&self, dir: Dir, cx: &mut Context<'_>, waiter: Waiter<'_>) -> Poll<()>
    where
        S: AsRawFd,
    {
        let events = match dir {
            Dir::Read => libc::POLLIN,
            Dir::Write => libc::POLLOUT,
        };
        let dir = self.direction(dir);
        if dir.ready.get() && dir.handed.get() && !level_ready(self.get_ref().as_raw_fd(), events) {
            dir.ready.set(false);
        }
        if dir.ready.get() {
            dir.handed.set(true);
            Poll::Ready(())
        } else {
            dir.wait(cx.waker(), waiter);
            Poll::Pending
        }
    }

    fn poll_with<T>(
        &self,
        dir: &Direction,
        cx: &mut Context<'_>,
        waiter: Waiter<'_>,
        mut op: impl FnMut(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            if !dir.ready.get() {
                dir.wait(cx.waker(), waiter);
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
        self.read_op(|mut s| s.read(buf)).await
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
        self.write_op(|mut s| s.write(buf)).await
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

/// One direction of a [`PollIo`].
#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

/// A future that runs an operation once its direction is ready: see
/// [`PollIo::read_op`]. It waits with its own entry in the direction's waiters,
/// removed when it completes or is dropped.
pub(crate) struct IoOp<'a, S: Source, F> {
    io: &'a PollIo<S>,
    dir: Dir,
    op: F,
    /// This future's entry in the direction's waiters (see [`Waiter::Entry`]).
    key: Option<usize>,
}

impl<'a, S: Source, F> IoOp<'a, S, F> {
    fn new(io: &'a PollIo<S>, dir: Dir, op: F) -> Self {
        IoOp {
            io,
            dir,
            op,
            key: None,
        }
    }
}

impl<S: Source, T, F: FnMut(&S) -> io::Result<T> + Unpin> Future for IoOp<'_, S, F> {
    type Output = io::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let this = self.get_mut();
        let dir = this.io.direction(this.dir);
        let polled = this
            .io
            .poll_with(dir, cx, Waiter::Entry(&mut this.key), &mut this.op);
        if polled.is_ready() {
            dir.leave(&mut this.key);
        }
        polled
    }
}

impl<S: Source, F> Drop for IoOp<'_, S, F> {
    fn drop(&mut self) {
        self.io.direction(self.dir).leave(&mut self.key);
    }
}

/// A future that waits until its direction is ready: see [`PollIo::readable`].
pub(crate) struct IoReady<'a, S: Source> {
    io: &'a PollIo<S>,
    dir: Dir,
    /// This future's entry in the direction's waiters (see [`Waiter::Entry`]).
    key: Option<usize>,
}

impl<S: Source + AsRawFd> Future for IoReady<'_, S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let polled = this
            .io
            .poll_ready(this.dir, cx, Waiter::Entry(&mut this.key));
        if polled.is_ready() {
            this.io.direction(this.dir).leave(&mut this.key);
        }
        polled
    }
}

impl<S: Source> Drop for IoReady<'_, S> {
    fn drop(&mut self) {
        self.io.direction(self.dir).leave(&mut self.key);
    }
}
