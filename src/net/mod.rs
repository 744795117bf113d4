//! Networking in both of asyncio's styles.
//!
//! **Callbacks**: a [`Protocol`] gets `connection_made`, `data_received`,
//! `eof_received` and `connection_lost`, and writes through its [`Transport`], which
//! buffers what the socket does not take and drains it when the socket is writable.
//! Servers come from [`Loop::create_server`](crate::Loop::create_server), clients from
//! [`Loop::create_connection`](crate::Loop::create_connection), their Unix-socket
//! twins and [`Loop::create_datagram_endpoint`](crate::Loop::create_datagram_endpoint)
//! for UDP.
//!
//! **Tasks**: [`TcpListener`], [`TcpStream`], [`UnixListener`], [`UnixStream`] and
//! [`UdpSocket`] with async `accept`, `connect`, `read`, `write_all`, `send_to`,
//! `recv_from`, and (feature `futures-io`, on by default) the `AsyncRead` /
//! `AsyncWrite` traits of the ecosystem. [`readable`] and [`writable`] wait for any fd
//! once; [`AsyncFd`] makes any fd a long-lived async source.
//!
//! **Interop**: every socket type is `AsFd` + `AsRawFd`, comes `from_std` and goes
//! `into_std`; `&TcpStream` and `&UnixStream` are `AsyncRead + AsyncWrite` too, so a
//! stream splits into a reader task and a writer task by sharing a reference; options
//! without a method here are set through `socket2::SockRef::from(&socket)`.
//!
//! Sockets the library owns are registered edge-triggered (read until `WouldBlock`,
//! the mio way), with a budget per event so that one busy connection cannot starve the
//! others; the level-triggered `add_reader` is for user callbacks. Host names are
//! resolved off the loop, through [`run_in_executor`](crate::Loop::run_in_executor).

/// `futures-io`'s `AsyncRead` / `AsyncWrite` for a stream type with an `io:
/// PollIo<_>` field and a `shutdown` method (TCP and Unix streams alike), and for a
/// shared reference to it: the methods take `&self`, so `&stream` reads and writes as
/// well as `stream` does, and a stream splits into a reader and a writer by sharing a
/// reference (as async-io's `&Async<T>`).
#[cfg(feature = "futures-io")]
macro_rules! impl_futures_io {
    ($stream:ty) => {
        impl_futures_io!(@impl $stream);
        impl_futures_io!(@impl &$stream);
    };
    (@impl $ty:ty) => {
        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.io.poll_read(cx, buf)
            }
        }

        impl futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.io.poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(())) // nothing is buffered above the socket
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(self.shutdown(std::net::Shutdown::Write))
            }
        }
    };
}

/// `AsFd` and `AsRawFd` for a socket type with an `io: PollIo<_>` field: the fd stays
/// registered with the loop and owned by the socket (use `into_std` to take it out).
/// Through it `socket2::SockRef::from(&socket)` sets any option the type has no
/// method for.
macro_rules! impl_as_fd {
    ($($ty:ty),*) => {$(
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.io.get_ref().as_fd()
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.io.get_ref().as_raw_fd()
            }
        }
    )*};
}

mod addr;
mod async_fd;
mod connect;
mod datagram;
mod guard;
mod poll_io;
mod protocol;
mod ready;
mod registration;
mod server;
mod stream_sock;
mod tcp;
mod transport;
mod udp;
mod unix;

pub use addr::ToSocketAddrs;
pub use async_fd::AsyncFd;
pub use datagram::DatagramTransport;
pub(crate) use poll_io::PollIo;
pub use protocol::{DatagramProtocol, Protocol};
pub use ready::{FdReady, readable, writable};
pub use server::{Server, ServerOptions, WaitClosed};
pub use tcp::{TcpListener, TcpStream};
pub use transport::Transport;
pub use udp::UdpSocket;
pub use unix::{UnixListener, UnixStream};

/// How many reads (or accepts) one readiness event may do before the handler yields
/// to the rest of the loop and continues on the next iteration.
pub(crate) const READ_BUDGET: usize = 16;

/// The size of the buffer a transport reads into.
pub(crate) const READ_SIZE: usize = 64 * 1024;
