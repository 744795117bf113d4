//! What a stream connection's reader, writer and protocol share: the read buffer,
//! EOF and the error the connection ended with, and the futures waiting on them.
//! `StreamProtocol` is the `Protocol` that feeds it (asyncio's
//! `StreamReaderProtocol` with its `FlowControlMixin`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::{StreamReader, StreamWriter};
use crate::errors::ErrorContext;
use crate::event_loop::WeakLoop;
use crate::net::consumed;
use crate::net::stream_sock::StreamSock;
use crate::net::transport::DirectReader;
use crate::net::{Protocol, Transport};
use crate::task::TaskError;
use crate::waiters::{WaitQueue, Wakeups};

/// The state of one connection, shared by its `StreamReader`, `StreamWriter` and
/// `StreamProtocol`. Holds no `Transport`: the reader and writer hold their own, the
/// protocol the one it was given, so no cycle outlives the connection.
pub(super) struct Shared {
    /// Line and chunk limit (asyncio's `_limit`); reading pauses above twice it.
    pub(super) limit: usize,
    /// Received bytes not yet read; `buf[start..]` is pending.
    buf: RefCell<Vec<u8>>,
    start: Cell<usize>,
    /// The peer closed its writing side, or the connection ended without an error.
    eof: Cell<bool>,
    /// The connection ended with this error (asyncio's `set_exception`): every read
    /// fails with it from then on.
    error: RefCell<Option<io::Error>>,
    /// `error` is `Some` (checked first by every read, without a borrow).
    failed: Cell<bool>,
    /// `connection_lost` ran.
    lost: Cell<bool>,
    /// We paused the transport's reading (buffer over `2 * limit`).
    paused: Cell<bool>,
    /// The waker of the read waiting for data (there is at most one: reads take
    /// `&mut StreamReader`, and a reader is not `Clone`).
    reader_waker: Cell<Option<Waker>>,
    /// How many bytes the waiting read needs buffered before it can complete (0: no
    /// read waits). Data that leaves the buffer below this does not wake it (EOF
    /// and errors always do), and does not pause reading either: the read would
    /// only resume it.
    reader_wants: Cell<usize>,
    /// The waiting read is a large `readexactly` whose block is prepared: the
    /// transport reads its bytes straight into the buffer (see `read_direct`).
    direct: Cell<bool>,
    /// The `StreamReader` is alive; once it is gone, data received is dropped.
    reader_alive: Cell<bool>,
    /// How many of the reader and the writer are alive; the last one closes.
    handles: Cell<u8>,
    /// `drain()`s waiting for `resume_writing` (or the end).
    pub(super) drain_waiters: RefCell<WaitQueue>,
    /// `wait_closed()`s waiting for `connection_lost`.
    pub(super) close_waiters: RefCell<WaitQueue>,
}

impl Shared {
    pub(super) fn new(limit: usize) -> Rc<Shared> {
        Rc::new(Shared {
            limit,
            buf: RefCell::new(Vec::new()),
            start: Cell::new(0),
            eof: Cell::new(false),
            error: RefCell::new(None),
            failed: Cell::new(false),
            lost: Cell::new(false),
            paused: Cell::new(false),
            reader_waker: Cell::new(None),
            reader_wants: Cell::new(0),
            direct: Cell::new(false),
            reader_alive: Cell::new(true),
            handles: Cell::new(2),
            drain_waiters: RefCell::new(WaitQueue::default()),
            close_waiters: RefCell::new(WaitQueue::default()),
        })
    }

    /// Bytes buffered and not yet read.
    #[inline]
    pub(super) fn pending(&self) -> usize {
        self.buf.borrow().len() - self.start.get()
    }

    #[inline]
    pub(super) fn eof(&self) -> bool {
        self.eof.get()
    }

    #[inline]
    pub(super) fn lost(&self) -> bool {
        self.lost.get()
    }

    /// Whether the connection ended with an error.
    #[inline]
    pub(super) fn failed(&self) -> bool {
        self.failed.get()
    }

    /// The error the connection ended with, as a fresh `io::Error` (one for each
    /// caller, as asyncio raises the same exception again).
    pub(super) fn error(&self) -> Option<io::Error> {
        if !self.failed.get() {
            return None;
        }
        self.error.borrow().as_ref().map(copy_error)
    }

    /// `Err` with the connection's error, if it ended with one.
    #[inline]
    pub(super) fn check_error(&self) -> io::Result<()> {
        if !self.failed.get() {
            return Ok(());
        }
        Err(self.error().expect("failed: an error is stored"))
    }

    /// Runs `f` on the pending bytes.
    pub(super) fn with_pending<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let buf = self.buf.borrow();
        f(&buf[self.start.get()..])
    }

    /// Takes the first `n` pending bytes (`n <= pending()`), then resumes reading if
    /// the buffer went down to the limit.
    pub(super) fn consume(&self, n: usize, transport: &Transport) -> Vec<u8> {
        let out = {
            let mut buf = self.buf.borrow_mut();
            let start = self.start.get();
            debug_assert!(n <= buf.len() - start);
            if n >= TAKE_WHOLE && start == 0 && n == buf.len() && buf.capacity() <= 2 * n {
                // All of a large buffer, without much spare capacity to hand out:
                // no copy (the next chunk starts a new buffer). Small reads copy,
                // so that the buffer keeps its capacity.
                std::mem::take(&mut *buf)
            } else {
                let out = buf[start..start + n].to_vec();
                self.skip_locked(&mut buf, n);
                out
            }
        };
        self.maybe_resume(transport);
        out
    }

    /// A `readexactly(n)` is about to wait for `n` bytes: makes the buffer a single
    /// block with room for exactly `n` bytes, the pending ones at its front, so that
    /// the data arrives where [`consume_exact`](Shared::consume_exact) hands it over
    /// without a copy. Not for `n` over twice the limit: that much is not reserved
    /// before the peer sends it (the buffer grows as data comes, as for any read).
    ///
    /// Allocated now, right after the previous message was handed over (and, in the
    /// usual read–write loop, freed): the allocator gives the same block back. Left
    /// to `feed_data`, every connection's block would be allocated while the
    /// connections' data comes in and freed when their tasks run, a swing of one
    /// block per connection each iteration that the allocator answers, for large
    /// blocks, by growing and trimming the heap: page faults on every message.
    ///
    /// For a large `n` (`TAKE_WHOLE` and up), the transport then reads the bytes
    /// straight into the block ([`read_direct`](DirectReader::read_direct)), never
    /// more than the message: no copy at all between the socket and the caller.
    ///
    /// Returns whether the transport should be asked to read straight into the block
    /// ([`Transport::want_direct`]).
    #[inline]
    pub(super) fn prepare_exact(&self, n: usize) -> bool {
        let mut buf = self.buf.borrow_mut();
        if self.start.get() != 0 || buf.capacity() < n {
            if n > 2 * self.limit {
                return false;
            }
            if buf.is_empty() {
                // Handed over (or never used): a fresh block, the allocator's fast path.
                *buf = Vec::with_capacity(n);
                self.start.set(0);
            } else {
                let start = self.start.replace(0);
                if start > 0 {
                    buf.drain(..start);
                }
                let len = buf.len();
                buf.reserve_exact(n - len);
            }
        }
        // Prepared (or holding more than asked, at its front).
        let direct = n >= TAKE_WHOLE && self.start.get() == 0;
        self.direct.set(direct);
        direct
    }

    /// Takes the first `n` pending bytes for `readexactly(n)`: the whole buffer,
    /// without a copy, when it holds exactly them (as [`prepare_exact`] arranges)
    /// and has no more than `n` bytes of spare room to hand out; else a copy, as
    /// [`consume`](Shared::consume).
    ///
    /// [`prepare_exact`]: Shared::prepare_exact
    #[inline]
    pub(super) fn consume_exact(&self, n: usize, transport: &Transport) -> Vec<u8> {
        {
            let mut buf = self.buf.borrow_mut();
            if self.start.get() == 0 && buf.len() == n && buf.capacity() <= 2 * n {
                let out = std::mem::take(&mut *buf);
                drop(buf);
                self.maybe_resume(transport);
                return out;
            }
        }
        self.consume(n, transport)
    }

    /// Drops the first `n` pending bytes (`n <= pending()`).
    pub(super) fn skip(&self, n: usize, transport: &Transport) {
        self.skip_locked(&mut self.buf.borrow_mut(), n);
        self.maybe_resume(transport);
    }

    fn skip_locked(&self, buf: &mut Vec<u8>, n: usize) {
        consumed::consume(buf, &self.start, n);
    }

    /// asyncio's `_maybe_resume_transport`: reading resumes once the buffer is back
    /// down to the limit.
    fn maybe_resume(&self, transport: &Transport) {
        if self.paused.get() && self.pending() <= self.limit {
            self.paused.set(false);
            transport.resume_reading();
        }
    }

    /// Before waiting for data: a paused transport would never bring it (a
    /// `readexactly(n)` with `n` over twice the limit), so resume it.
    #[inline]
    pub(super) fn resume_for_wait(&self, transport: &Transport) {
        if self.paused.replace(false) {
            transport.resume_reading();
        }
    }

    /// Parks the reader's waker until `wants` bytes are buffered, or EOF or an
    /// error arrives.
    #[inline]
    pub(super) fn register_reader(&self, waker: &Waker, wants: usize) {
        self.reader_wants.set(wants);
        let old = self.reader_waker.take();
        let new = match old {
            Some(w) if w.will_wake(waker) => w,
            old => {
                drop(old);
                waker.clone()
            }
        };
        self.reader_waker.set(Some(new));
    }

    /// Lets go of a parked reader waker (its future is gone).
    #[inline]
    pub(super) fn unregister_reader(&self) {
        self.reader_wants.set(0);
        self.direct.set(false);
        if let Some(w) = self.reader_waker.take() {
            drop(w);
        }
    }

    fn wake_reader(&self) {
        self.reader_wants.set(0);
        self.direct.set(false);
        if let Some(w) = self.reader_waker.take() {
            w.wake();
        }
    }

    fn feed_data(&self, data: &[u8], transport: Option<&Transport>) {
        if !self.reader_alive.get() || data.is_empty() {
            return; // nobody can read it (asyncio's reader is gone: dropped too)
        }
        let len = {
            let mut buf = self.buf.borrow_mut();
            buf.extend_from_slice(data);
            buf.len() - self.start.get()
        };
        let wants = self.reader_wants.get();
        if len > 2 * self.limit
            && !self.paused.get()
            && wants <= len
            && let Some(t) = transport
        {
            t.pause_reading();
            self.paused.set(true);
        }
        if wants != 0 && len >= wants {
            self.wake_reader();
        }
    }

    fn feed_eof(&self) {
        self.eof.set(true);
        self.wake_reader();
    }

    /// The `StreamReader` or the `StreamWriter` is gone; when both are, nothing can
    /// use the connection any more: close it (asyncio's `StreamWriter.__del__`).
    pub(super) fn handle_dropped(&self, transport: &Transport, reader: bool) {
        if reader {
            self.reader_alive.set(false);
            let buf = std::mem::take(&mut *self.buf.borrow_mut());
            self.start.set(0);
            drop(buf);
            // Nothing will consume what arrives: let it come (and be dropped).
            self.resume_for_wait(transport);
        }
        let left = self.handles.get() - 1;
        self.handles.set(left);
        if left == 0 && !self.lost.get() {
            transport.close();
        }
    }
}

impl DirectReader for Shared {
    /// While a large `readexactly` waits with its block prepared (`direct`): reads
    /// into the block's spare room, at most what the read still needs, so that the
    /// block ends up holding exactly the message.
    fn read_direct(&self, sock: &StreamSock) -> Option<(io::Result<usize>, usize)> {
        if !self.direct.get() {
            return None;
        }
        let wants = self.reader_wants.get();
        let mut buf = self.buf.borrow_mut();
        let len = buf.len();
        // `prepare_exact` put the pending bytes at the front, with room for `wants`.
        let room = wants.saturating_sub(len).min(buf.capacity() - len);
        if room == 0 || self.start.get() != 0 {
            return None;
        }
        let r = sock.read_uninit(&mut buf.spare_capacity_mut()[..room]);
        if let Ok(n) = r {
            debug_assert!(n <= room);
            // SAFETY: `read_uninit` returned `Ok(n)`: it initialised the first `n`
            // bytes of the spare capacity it was given, which starts at `len`, and
            // `n <= room <= capacity - len`.
            unsafe { buf.set_len(len + n) };
            drop(buf);
            if n > 0 && len + n >= wants {
                self.wake_reader();
            }
        }
        Some((r, room))
    }
}

/// The least a read must take for the reader to hand over its whole buffer rather
/// than copy out of it.
const TAKE_WHOLE: usize = 32 * 1024;

/// A copy of `e`: the same OS error, or the same kind and message.
pub(super) fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The error of a drain or write on a connection that is gone.
pub(super) fn lost_error(shared: &Shared) -> io::Error {
    shared.error().unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::ConnectionReset, "the connection was lost")
    })
}

/// What a server does with a new connection: `start_server`'s callback, shared by
/// the connections of one server.
pub(super) struct ClientConnected<C> {
    pub(super) callback: RefCell<C>,
    pub(super) lp: WeakLoop,
    /// Where `start_server` was called: the client tasks are "created" there.
    pub(super) location: &'static Location<'static>,
}

/// The `Protocol` under a stream connection. `C` is the server's callback type
/// (unused by clients).
pub(super) struct StreamProtocol<C> {
    shared: Rc<Shared>,
    transport: Option<Transport>,
    /// A server's callback, called once in `connection_made` (then let go).
    connected: Option<Rc<ClientConnected<C>>>,
}

impl<C> StreamProtocol<C> {
    pub(super) fn new(shared: Rc<Shared>, connected: Option<Rc<ClientConnected<C>>>) -> Self {
        StreamProtocol {
            shared,
            transport: None,
            connected,
        }
    }
}

impl<C, Fut> Protocol for StreamProtocol<C>
where
    C: FnMut(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
        transport.set_direct_reader(self.shared.clone());
        let Some(connected) = self.connected.take() else {
            return; // a client: `open_connection` hands out the reader and writer
        };
        let Some(lp) = connected.lp.upgrade() else {
            return;
        };
        let reader = StreamReader::new(self.shared.clone(), transport.clone());
        let writer = StreamWriter::new(self.shared.clone(), transport.clone());
        let fut = {
            let Ok(mut callback) = connected.callback.try_borrow_mut() else {
                panic!("start_server's client_connected callback is already running");
            };
            (callback)(reader, writer)
        };
        let task = lp.create_task_at(fut, connected.location);
        let t = transport.clone();
        let location = connected.location;
        // asyncio's "Unhandled exception in client_connected_cb": report, close.
        task.add_done_callback(move |lp, result| {
            if let Err(TaskError::Panicked(p)) = result {
                let ctx = ErrorContext::from_panic(
                    "start_server's client_connected future panicked",
                    &**p,
                )
                .with_location(location);
                lp.call_exception_handler(ctx);
                t.close();
            }
        });
    }

    fn data_received(&mut self, data: &[u8]) {
        self.shared.feed_data(data, self.transport.as_ref());
    }

    /// Keeps the connection open for writing, as asyncio's streams do: the reader
    /// sees EOF, the writer may go on.
    fn eof_received(&mut self) -> bool {
        self.shared.feed_eof();
        true
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        let shared = &self.shared;
        shared.lost.set(true);
        match error {
            None => shared.eof.set(true),
            Some(e) => {
                *shared.error.borrow_mut() = Some(e);
                shared.failed.set(true);
            }
        }
        shared.wake_reader();
        let mut wakeups = Wakeups::default();
        shared.drain_waiters.borrow_mut().notify_all(&mut wakeups);
        shared.close_waiters.borrow_mut().notify_all(&mut wakeups);
        drop(wakeups);
        self.transport = None;
    }

    fn resume_writing(&mut self) {
        let mut wakeups = Wakeups::default();
        self.shared
            .drain_waiters
            .borrow_mut()
            .notify_all(&mut wakeups);
    }
}

/// Waits, in `queue`, until `done()` holds; any number may wait, each keeping one
/// waker however often it is polled, and a dropped one takes its waker off at once.
pub(super) struct WaitUntil<'a, F> {
    pub(super) queue: &'a RefCell<WaitQueue>,
    pub(super) done: F,
    /// Our entry in `queue` while we wait; only we remove it.
    pub(super) key: Option<usize>,
}

impl<F: Fn() -> bool + Unpin> Future for WaitUntil<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Declared before the borrow: wakers are dropped after it ends.
        let mut wakeups = Wakeups::default();
        let mut queue = this.queue.borrow_mut();
        if (this.done)() {
            if let Some(key) = this.key.take() {
                queue.remove(key, &mut wakeups);
            }
            return Poll::Ready(());
        }
        match this.key {
            Some(key) if !queue.is_notified(key) => queue.register(key, cx.waker(), &mut wakeups),
            stale => {
                if let Some(key) = stale {
                    queue.remove(key, &mut wakeups);
                }
                this.key = Some(queue.push(cx.waker()));
            }
        }
        Poll::Pending
    }
}

impl<F> Drop for WaitUntil<'_, F> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut wakeups = Wakeups::default();
            self.queue.borrow_mut().remove(key, &mut wakeups);
        }
    }
}
