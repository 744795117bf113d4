//! `HyperIo<T>`: hyper 1.x's `rt::Read` / `rt::Write` for any futures-io stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use hyper::rt::ReadBufCursor;

/// The most of hyper's unfilled buffer one read fills, so that the zeroing a safe
/// `&mut [u8]` needs stays small whatever capacity hyper reserved.
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
}

impl<T> HyperIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> HyperIo<T> {
        HyperIo { inner }
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
        let want = buf.remaining().min(MAX_READ);
        // Zeroes what hyper has not initialised yet: futures-io reads into `&mut [u8]`.
        let dst = buf.initialize_unfilled_to(want);
        let n = match Pin::new(&mut self.inner).poll_read(cx, dst) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        assert!(
            n <= want,
            "AsyncRead::poll_read returned more than it was given"
        );
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
