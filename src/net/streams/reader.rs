//! `StreamReader`: the reading half of a stream connection (asyncio's).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::shared::Shared;
use super::{IncompleteReadError, LimitOverrunError};
use crate::net::Transport;

/// The reading half of a connection from [`Loop::open_connection`](crate::Loop::open_connection) or
/// [`Loop::start_server`](crate::Loop::start_server): asyncio's `StreamReader`.
///
/// Received bytes wait in the reader's buffer until a read takes them. Every read
/// returns an owned `Vec<u8>` and fails with the connection's error once it ended
/// with one (a reset, for example), even while bytes are still buffered, as asyncio
/// raises the reader's exception first.
///
/// # The limit
/// The reader has a limit (64 KiB unless set with
/// [`StreamOptions::limit`](super::StreamOptions::limit)): a line or chunk read by
/// [`readline`](StreamReader::readline) or [`readuntil`](StreamReader::readuntil) may
/// hold up to `limit` bytes plus its separator; a longer one is a
/// [`LimitOverrunError`]. It also bounds the buffer: over twice the limit, the
/// transport stops reading from the socket until reads bring the buffer back down to
/// the limit (a read that needs more, such as a large
/// [`readexactly`](StreamReader::readexactly), resumes it while it waits).
/// [`read`](StreamReader::read), `readexactly` and
/// [`read_to_end`](StreamReader::read_to_end) are not limited.
///
/// # One read at a time, and cancelling
/// Reads take `&mut self` and a reader is not `Clone`, so two reads can never wait
/// on one reader at once: asyncio's "already waiting for incoming data"
/// `RuntimeError` cannot happen. Every read is cancel-safe: it takes bytes out of
/// the buffer only when it completes, so a read dropped while waiting (a timeout)
/// leaves every byte for the next one.
///
/// # Lifetime
/// When both the reader and its [`StreamWriter`](super::StreamWriter) are dropped the
/// connection is closed (as asyncio's `StreamWriter.__del__` closes it). Dropping
/// the reader alone lets bytes that arrive afterwards be dropped.
pub struct StreamReader {
    shared: Rc<Shared>,
    transport: Transport,
}

/// Why `until` stopped without a chunk.
enum Until {
    Io(io::Error),
    Incomplete(Vec<u8>),
    Overrun(LimitOverrunError),
}

impl StreamReader {
    pub(super) fn new(shared: Rc<Shared>, transport: Transport) -> StreamReader {
        StreamReader { shared, transport }
    }

    /// Reads up to `n` bytes: waits until at least one byte is buffered (or EOF),
    /// then takes up to `n` of what is there. Empty at EOF; `read(0)` returns empty
    /// at once.
    ///
    /// # Errors
    /// The connection's error, if it ended with one.
    pub fn read(&mut self, n: usize) -> impl Future<Output = io::Result<Vec<u8>>> + '_ {
        self.reading(move |s, t| {
            if s.failed() {
                return Step::Done(s.check_error().map(|()| Vec::new()));
            }
            let pending = s.pending();
            if n == 0 || pending > 0 || s.eof() {
                return Step::Done(Ok(s.consume(n.min(pending), t)));
            }
            Step::Wait(1)
        })
    }

    /// Reads until EOF and returns everything (asyncio's `read(-1)`). The buffer is
    /// not held at twice the limit meanwhile (it all goes to the caller anyway).
    ///
    /// # Errors
    /// The connection's error, if it ended with one; the bytes buffered stay there.
    pub fn read_to_end(&mut self) -> impl Future<Output = io::Result<Vec<u8>>> + '_ {
        self.reading(|s, t| {
            if s.failed() {
                return Step::Done(s.check_error().map(|()| Vec::new()));
            }
            if s.eof() {
                return Step::Done(Ok(s.consume(s.pending(), t)));
            }
            Step::Wait(usize::MAX) // only EOF (or an error) completes it
        })
    }

    /// Reads one line, `\n` included. At EOF, the last line without its `\n`, or
    /// empty if nothing is left.
    ///
    /// # Errors
    /// - `InvalidData` with a [`LimitOverrunError`] if the line (without its `\n`)
    ///   is longer than the limit. As asyncio's: if the `\n` was found, the line and
    ///   its `\n` are removed from the buffer; if not, the buffer is cleared (that
    ///   part of the line is dropped), so the next read starts afresh.
    /// - The connection's error, if it ended with one.
    pub async fn readline(&mut self) -> io::Result<Vec<u8>> {
        match self.until(b"\n").await {
            Ok(line) => Ok(line),
            Err(Until::Io(e)) => Err(e),
            Err(Until::Incomplete(partial)) => Ok(partial),
            Err(Until::Overrun(e)) => {
                let sep_there = self
                    .shared
                    .with_pending(|b| b.get(e.consumed) == Some(&b'\n'));
                let n = if sep_there {
                    e.consumed + 1
                } else {
                    self.shared.pending()
                };
                self.shared.skip(n, &self.transport);
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }

    /// Reads up to and including `separator`.
    ///
    /// # Errors
    /// - `InvalidInput` for an empty separator.
    /// - `UnexpectedEof` with an [`IncompleteReadError`] (`expected: None`) if EOF
    ///   comes first: `partial` holds everything that was left (it may end with part
    ///   of the separator), and the buffer is empty.
    /// - `InvalidData` with a [`LimitOverrunError`] if the chunk (without its
    ///   separator) is longer than the limit: the buffer is left as it was, so the
    ///   data can be read another way.
    /// - The connection's error, if it ended with one.
    pub async fn readuntil(&mut self, separator: &[u8]) -> io::Result<Vec<u8>> {
        match self.until(separator).await {
            Ok(chunk) => Ok(chunk),
            Err(Until::Io(e)) => Err(e),
            Err(Until::Incomplete(partial)) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                IncompleteReadError {
                    partial,
                    expected: None,
                },
            )),
            Err(Until::Overrun(e)) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }

    /// Reads exactly `n` bytes (not limited by the limit). `readexactly(0)` returns
    /// empty at once.
    ///
    /// # Errors
    /// - `UnexpectedEof` with an [`IncompleteReadError`] (`expected: Some(n)`) if EOF
    ///   comes first: `partial` holds the bytes that were there, and the buffer is
    ///   empty.
    /// - The connection's error, if it ended with one.
    pub fn readexactly(&mut self, n: usize) -> impl Future<Output = io::Result<Vec<u8>>> + '_ {
        self.reading(move |s, t| {
            if s.failed() {
                return Step::Done(s.check_error().map(|()| Vec::new()));
            }
            let pending = s.pending();
            if pending >= n {
                return Step::Done(Ok(s.consume_exact(n, t)));
            }
            if s.eof() {
                let partial = s.consume(pending, t);
                return Step::Done(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    IncompleteReadError {
                        partial,
                        expected: Some(n),
                    },
                )));
            }
            if s.prepare_exact(n) {
                t.want_direct();
            }
            Step::Wait(n)
        })
    }

    /// Whether the buffer is empty and EOF was received: true only once everything
    /// the peer sent has been read.
    pub fn at_eof(&self) -> bool {
        self.shared.eof() && self.shared.pending() == 0
    }

    /// The reader's limit (see [the type's docs](StreamReader#the-limit)).
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// asyncio's `readuntil`, without its error types.
    fn until<'a>(&'a mut self, sep: &'a [u8]) -> impl Future<Output = Result<Vec<u8>, Until>> + 'a {
        let limit = self.shared.limit;
        // No separator starts before `offset`.
        let mut offset = 0;
        self.reading(move |s, t| {
            if sep.is_empty() {
                return Step::Done(Err(Until::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "readuntil: the separator must not be empty",
                ))));
            }
            if let Err(e) = s.check_error() {
                return Step::Done(Err(Until::Io(e)));
            }
            let (buflen, found) = s.with_pending(|b| (b.len(), find(b, sep, offset)));
            if let Some(isep) = found {
                if isep > limit {
                    return Step::Done(Err(Until::Overrun(LimitOverrunError::new(isep, true))));
                }
                return Step::Done(Ok(s.consume(isep + sep.len(), t)));
            }
            if buflen >= offset + sep.len() {
                // A separator may still start in the last `sep.len() - 1` bytes.
                offset = buflen + 1 - sep.len();
                if offset > limit {
                    return Step::Done(Err(Until::Overrun(LimitOverrunError::new(offset, false))));
                }
            }
            // Checked after the buffer: the last chunk may have completed it.
            if s.eof() {
                return Step::Done(Err(Until::Incomplete(s.consume(buflen, t))));
            }
            Step::Wait(buflen + 1)
        })
    }

    /// A read: `step` runs at every poll until it is `Done`; `Wait(n)` waits until
    /// `n` bytes are buffered (or EOF, or an error), resuming a paused transport
    /// first, which could otherwise never bring them.
    fn reading<T, F>(&mut self, step: F) -> Reading<'_, F>
    where
        F: FnMut(&Shared, &Transport) -> Step<T> + Unpin,
    {
        Reading { reader: self, step }
    }
}

/// What one poll of a read found.
enum Step<T> {
    Done(T),
    /// Not yet: wake the read once this many bytes are buffered.
    Wait(usize),
}

/// The future of every read (see `StreamReader::reading`). Only it parks a waker in
/// the reader, and it takes it back when dropped.
struct Reading<'a, F> {
    reader: &'a mut StreamReader,
    step: F,
}

impl<T, F> Future for Reading<'_, F>
where
    F: FnMut(&Shared, &Transport) -> Step<T> + Unpin,
{
    type Output = T;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let (shared, transport) = (&*this.reader.shared, &this.reader.transport);
        match (this.step)(shared, transport) {
            Step::Done(out) => Poll::Ready(out),
            Step::Wait(wants) => {
                shared.resume_for_wait(transport);
                shared.register_reader(cx.waker(), wants);
                Poll::Pending
            }
        }
    }
}

impl<F> Drop for Reading<'_, F> {
    fn drop(&mut self) {
        self.reader.shared.unregister_reader();
    }
}

/// Where `sep` first occurs in `buf` at or after `from`.
fn find(buf: &[u8], sep: &[u8], from: usize) -> Option<usize> {
    let hay = buf.get(from..)?;
    let at = if let [b] = sep {
        hay.iter().position(|c| c == b)
    } else {
        hay.windows(sep.len()).position(|w| w == sep)
    };
    at.map(|i| i + from)
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.shared.handle_dropped(&self.transport, true);
    }
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader")
            .field("buffered", &self.shared.pending())
            .field("eof", &self.shared.eof())
            .field("limit", &self.shared.limit)
            .finish()
    }
}
