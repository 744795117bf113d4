//! `StreamWriter`: the writing half of a stream connection (asyncio's).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::shared::{Shared, WaitUntil, lost_error};
use crate::net::Transport;
use crate::waiters::Wakeups;

/// The writing half of a connection from [`Loop::open_connection`](crate::Loop::open_connection)
/// or [`Loop::start_server`](crate::Loop::start_server): asyncio's `StreamWriter`, a
/// [`Transport`] with [`drain`](StreamWriter::drain).
///
/// `write` never waits: the transport sends at once what the socket takes and
/// buffers the rest. The asyncio idiom bounds that buffer:
///
/// ```no_run
/// # async fn f(writer: &evloop::net::StreamWriter, chunk: &[u8]) -> std::io::Result<()> {
/// writer.write(chunk);
/// writer.drain().await?; // waits only while the buffer is over its high-water mark
/// # Ok(()) }
/// ```
///
/// Methods take `&self`: a writer may be shared (in an `Rc`) by several tasks, and
/// any number of them may wait in `drain` or `wait_closed` at once.
///
/// When both the writer and its [`StreamReader`](super::StreamReader) are dropped, the
/// connection is closed (after the buffer is flushed). Dropping the writer alone
/// leaves the connection open for the reader; [`write_eof`](StreamWriter::write_eof)
/// tells the peer that nothing more is coming.
pub struct StreamWriter {
    shared: Rc<Shared>,
    transport: Transport,
}

impl StreamWriter {
    pub(super) fn new(shared: Rc<Shared>, transport: Transport) -> StreamWriter {
        StreamWriter { shared, transport }
    }

    /// Writes `data` (see [`Transport::write`]); follow with [`drain`](StreamWriter::drain)
    /// to respect flow control. Ignored after `close` or `write_eof`.
    pub fn write(&self, data: &[u8]) {
        self.transport.write(data);
    }

    /// Writes every buffer of `bufs`, in order, as one write.
    pub fn writelines<I>(&self, bufs: I)
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut iter = bufs.into_iter();
        let Some(first) = iter.next() else { return };
        let Some(second) = iter.next() else {
            return self.write(first.as_ref());
        };
        let mut joined = first.as_ref().to_vec();
        joined.extend_from_slice(second.as_ref());
        for b in iter {
            joined.extend_from_slice(b.as_ref());
        }
        self.write(&joined);
    }

    /// Waits until it is fine to write again: at once while the transport's buffer is
    /// below its high-water mark, else until it has drained to the low-water mark
    /// (`resume_writing`). asyncio's `drain`.
    ///
    /// # Errors
    /// - The connection's error, if it ended with one (a reset, a broken pipe).
    /// - `ConnectionReset` ("the connection was lost") once the connection is gone,
    ///   also when it ends while this waits. A closing connection is given one loop
    ///   iteration to finish first, as asyncio's `drain` does, so that a
    ///   `write(); drain()` loop sees the end.
    pub fn drain(&self) -> impl Future<Output = io::Result<()>> + '_ {
        Drain {
            writer: self,
            yielded: false,
            key: None,
        }
    }

    /// Closes the writing side once the buffer is flushed (the peer reads EOF); the
    /// reader goes on reading.
    pub fn write_eof(&self) {
        self.transport.write_eof();
    }

    /// Whether [`write_eof`](StreamWriter::write_eof) is supported (always, for TCP
    /// and Unix streams).
    pub fn can_write_eof(&self) -> bool {
        self.transport.can_write_eof()
    }

    /// Closes the connection once the buffer is flushed; see
    /// [`wait_closed`](StreamWriter::wait_closed).
    pub fn close(&self) {
        self.transport.close();
    }

    /// Whether the connection is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// Waits until the connection is closed (by either side, `connection_lost`); call
    /// after [`close`](StreamWriter::close). At once if it is already.
    ///
    /// # Errors
    /// The error the connection ended with, if any (as asyncio's, which raises it).
    pub async fn wait_closed(&self) -> io::Result<()> {
        let shared = &*self.shared;
        WaitUntil {
            queue: &shared.close_waiters,
            done: || shared.lost(),
            key: None,
        }
        .await;
        shared.check_error()
    }

    /// The transport underneath: addresses, write-buffer limits, `abort`.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }
}

/// The future of [`StreamWriter::drain`].
struct Drain<'a> {
    writer: &'a StreamWriter,
    /// The connection was closing: we gave `connection_lost` a loop iteration.
    yielded: bool,
    /// Our entry in the drain waiters while we wait; only we remove it.
    key: Option<usize>,
}

impl Future for Drain<'_> {
    type Output = io::Result<()>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (shared, transport) = (&*this.writer.shared, &this.writer.transport);
        // The usual case, first: an open connection below its high-water mark (not
        // closing also means not lost: `connection_lost` marks the transport closing).
        if this.key.is_none()
            && !shared.failed()
            && !transport.is_closing()
            && !transport.is_writing_paused()
        {
            return Poll::Ready(Ok(()));
        }
        this.poll_slow(cx)
    }
}

impl Drain<'_> {
    /// `poll` past the usual case: an error, a closing connection, or flow control.
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self;
        let (shared, transport) = (&*this.writer.shared, &this.writer.transport);
        if shared.failed() {
            return Poll::Ready(Err(lost_error(shared)));
        }
        if transport.is_closing() && !shared.lost() && !this.yielded {
            // Let `connection_lost` run first (asyncio's `sleep(0)` in `drain`).
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let done = if shared.lost() {
            Some(Err(lost_error(shared)))
        } else if !transport.is_writing_paused() {
            Some(Ok(()))
        } else {
            None
        };
        if let Some(r) = done {
            if let Some(key) = this.key.take() {
                let mut wakeups = Wakeups::default();
                shared.drain_waiters.borrow_mut().remove(key, &mut wakeups);
            }
            return Poll::Ready(r);
        }
        // Declared before the borrow: wakers are dropped after it ends.
        let mut wakeups = Wakeups::default();
        let mut queue = shared.drain_waiters.borrow_mut();
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

impl Drop for Drain<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut wakeups = Wakeups::default();
            self.writer
                .shared
                .drain_waiters
                .borrow_mut()
                .remove(key, &mut wakeups);
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.shared.handle_dropped(&self.transport, false);
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("transport", &self.transport)
            .finish()
    }
}
