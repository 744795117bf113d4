//! `HyperIo<T>`: hyper 1.x's `rt::Read` / `rt::Write` for any futures-io stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use hyper::rt::ReadBufCursor;

/// The window one read fills: futures-io reads into an initialised `&mut [u8]`, and
/// hyper hands over uninitialised capacity, so each read zeroes its window first.
/// The window adapts to what reads return (doubling when a read fills it, halving
/// when reads use less than a quarter), so that a small request costs a small
/// memset whatever capacity hyper reserved, and a bulk transfer still reads in
/// large chunks.
const MIN_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;

/// A futures-io stream (`AsyncRead` / `AsyncWrite`: [`TcpStream`], [`UnixStream`],
/// anything else) as hyper's [`Read`](hyper::rt::Read) and
/// [`Write`](hyper::rt::Write), to hand to `serve_connection` or `handshake`.
///
/// `T` must be `Unpin` (evloop's streams are; pin anything else in a `Box`).
/// Writes are not vectored: hyper then flattens a response's head and body into one
/// buffer, one `write` for a small response.
///
/// [`TcpStream`]: crate::net::TcpStream
/// [`UnixStream`]: crate::net::UnixStream
#[derive(Debug)]
pub struct HyperIo<T> {
    inner: T,
    /// The current read window, `MIN_READ..=MAX_READ`.
    window: usize,
}

impl<T> HyperIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> HyperIo<T> {
        HyperIo {
            inner,
            window: MIN_READ,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let want = buf.remaining().min(this.window);
        // Zeroes what hyper has not initialised yet: futures-io reads into `&mut [u8]`.
        let dst = buf.initialize_unfilled_to(want);
        let n = match Pin::new(&mut this.inner).poll_read(cx, dst) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        assert!(
            n <= want,
            "AsyncRead::poll_read returned more than it was given"
        );
        if n == this.window {
            this.window = (this.window * 2).min(MAX_READ);
        } else if n < this.window / 4 {
            this.window = (this.window / 2).max(MIN_READ);
        }
        // SAFETY: the first `want` bytes of the unfilled part were initialised by
        // `initialize_unfilled_to` just above, and `n <= want` (asserted), so the
        // cursor advances over initialised bytes only, as `advance` requires.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}
