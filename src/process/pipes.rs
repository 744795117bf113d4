//! A child's piped stdin, stdout and stderr as async streams on the loop.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::task::{Context, Poll};

use mio::unix::pipe;

use super::sys;
use crate::Loop;
use crate::net::PollIo;

/// How much one read takes from a pipe.
pub(super) const READ_SIZE: usize = 64 * 1024;

/// The writing end of a child's stdin (`Stdio::piped()`): [`write_all`] and
/// [`close`], and `futures-io`'s `AsyncWrite`.
///
/// A write after the child closed its stdin (or exited) is `Err(BrokenPipe)`, never a
/// SIGPIPE, whatever the process's SIGPIPE disposition. Dropping it closes the pipe,
/// which the child sees as end of input.
///
/// [`write_all`]: ChildStdin::write_all
/// [`close`]: ChildStdin::close
pub struct ChildStdin {
    /// `None` once closed.
    io: Option<PollIo<pipe::Sender>>,
}

impl ChildStdin {
    pub(super) fn new(lp: &Loop, pipe: std::process::ChildStdin) -> io::Result<ChildStdin> {
        let pipe = pipe::Sender::from(pipe);
        pipe.set_nonblocking(true)?;
        Ok(ChildStdin {
            io: Some(PollIo::on_loop(lp, pipe)?),
        })
    }

    /// Writes all of `data`, waiting while the pipe is full. `Err(BrokenPipe)` if the
    /// child closed its end (or this one was closed).
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let written = match &self.io {
                Some(io) => {
                    io.write_op(|p| sys::write_no_sigpipe(p.as_raw_fd(), data))
                        .await
                }
                None => Err(stdin_closed()),
            };
            match written? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => data = &data[n..],
            }
        }
        Ok(())
    }

    /// Closes the pipe: the child reads end of input. Closing twice is fine.
    pub async fn close(&mut self) -> io::Result<()> {
        self.io = None;
        Ok(())
    }

    pub(super) fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &self.io {
            Some(io) => io.poll_write_with(cx, |p| sys::write_no_sigpipe(p.as_raw_fd(), buf)),
            None => Poll::Ready(Err(stdin_closed())),
        }
    }

    /// `Ready` once the child's end of the pipe is gone, for the protocol style,
    /// which watches an idle stdin. The pipe's read direction is never used for
    /// reading, so it serves as the readiness of "the reader left": an EPOLLERR edge
    /// fires it, and a probe confirms.
    pub(super) fn poll_peer_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(io) = &self.io else {
            return Poll::Ready(());
        };
        io.poll_read_with(cx, |p| {
            if peer_closed(p.as_raw_fd()) {
                Ok(())
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            }
        })
        .map(|_| ())
    }
}

/// Whether the reading end of the pipe whose write end is `fd` is closed (poll(2)
/// reports POLLERR on the write end then).
fn peer_closed(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the whole call; a zero timeout never blocks.
    let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
    rc == 1 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// The reading side shared by [`ChildStdout`] and [`ChildStderr`].
pub(super) struct PipeReader {
    io: PollIo<pipe::Receiver>,
}

impl PipeReader {
    fn new(lp: &Loop, pipe: pipe::Receiver) -> io::Result<PipeReader> {
        pipe.set_nonblocking(true)?;
        Ok(PipeReader {
            io: PollIo::on_loop(lp, pipe)?,
        })
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.io.poll_read_with(cx, |mut p| p.read(buf))
    }

    pub(super) async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read_op(|mut p| p.read(buf)).await
    }

    /// Everything up to end of file.
    pub(super) async fn read_to_end(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            match self.read(&mut buf).await? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.io.get_ref().as_fd()
    }
}

/// Defines a child's output pipe type over [`PipeReader`].
macro_rules! reader_type {
    ($name:ident, $std:ty, $which:literal) => {
        #[doc = concat!("The reading end of a child's ", $which, " (`Stdio::piped()`): [`read`](Self::read), and `futures-io`'s `AsyncRead`.")]
        ///
        /// A read returns `Ok(0)` at end of file: once the child (and every process it
        /// shared the pipe with) closed its end. Dropping it closes the pipe; a child
        /// that writes more then gets EPIPE or SIGPIPE, as with any pipe.
        pub struct $name(pub(super) PipeReader);

        impl $name {
            pub(super) fn new(lp: &Loop, pipe: $std) -> io::Result<$name> {
                PipeReader::new(lp, pipe::Receiver::from(pipe)).map($name)
            }

            /// Reads what the pipe holds into `buf`, waiting until it holds something;
            /// `Ok(0)` at end of file.
            pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.read(buf).await
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.fd()
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.0.fd().as_raw_fd()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.as_raw_fd()).finish()
            }
        }

        #[cfg(feature = "futures-io")]
        impl futures_io::AsyncRead for $name {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.0.poll_read(cx, buf)
            }
        }
    };
}

reader_type!(ChildStdout, std::process::ChildStdout, "stdout");
reader_type!(ChildStderr, std::process::ChildStderr, "stderr");

impl fmt::Debug for ChildStdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fd = self.io.as_ref().map(|io| io.get_ref().as_raw_fd());
        f.debug_struct("ChildStdin").field("fd", &fd).finish()
    }
}

#[cfg(feature = "futures-io")]
impl futures_io::AsyncWrite for ChildStdin {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ChildStdin::poll_write(&self, cx, buf)
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // nothing is buffered above the pipe
    }

    /// Closes the pipe.
    fn poll_close(mut self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io = None;
        Poll::Ready(Ok(()))
    }
}

/// The error of a write to a stdin pipe this side closed.
fn stdin_closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the child's stdin was closed")
}
