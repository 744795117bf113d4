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
//! **Low level**, as asyncio's `loop.sock_*`: [`Loop::sock_recv`](crate::Loop::sock_recv)
//! and its siblings run one socket call on any non-blocking socket the caller owns,
//! waiting on the loop when it would block. Sockets made elsewhere are handed over with
//! [`Loop::create_server_from`](crate::Loop::create_server_from) (a [`Listener`]) and
//! [`Loop::connect_accepted_socket`](crate::Loop::connect_accepted_socket).
//!
//! # Low-level socket calls
//! `Loop::sock_recv`, `sock_recv_into`, `sock_recvfrom`, `sock_sendall`, `sock_sendto`,
//! `sock_connect` and `sock_accept` take any socket (`&impl AsFd`: std, socket2, a
//! raw fd borrowed) that is non-blocking (a blocking one is `Err(InvalidInput)` when
//! the call is awaited). Each tries its syscall first and waits only on
//! `WouldBlock`, through a one-shot reader or writer of the fd
//! ([`Loop::add_reader`](crate::Loop::add_reader)) that is gone when the wait ends and
//! when the future is dropped: a call leaves nothing registered, completed or
//! cancelled.
//!
//! Cancelling (dropping) a call:
//! - a receive or `sock_accept` consumed nothing: a syscall either completes the
//!   call in the same poll or took nothing (`WouldBlock`);
//! - `sock_sendall` may have sent a prefix (as asyncio's, "data may have been
//!   partially sent"), never a byte twice: whether and what to send again is the
//!   caller's decision (on a stream, the state is then unknown to the peer's reader);
//! - `sock_sendto` sent its datagram whole or not at all;
//! - `sock_connect` leaves the kernel connecting: calling it again with the same
//!   address waits for that attempt and reports its outcome.
//!
//! One call may wait on each direction of a socket at a time (a `sock_recv` and a
//! `sock_sendall` together are fine). The wait replaces a reader (or writer) the fd
//! has, as asyncio's does; the call replaced ends with `Err(ResourceBusy)` rather than
//! wait for ever. A socket the loop owns (a transport's) is refused with
//! `AlreadyExists` once a call would wait.
//!
//! **Streams**, asyncio's high-level API over the callbacks:
//! [`Loop::open_connection`](crate::Loop::open_connection) and
//! [`Loop::start_server`](crate::Loop::start_server) give a [`StreamReader`]
//! (`read`, `readline`, `readuntil`, `readexactly`) and a [`StreamWriter`] (`write`,
//! `drain`) per connection.
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
mod adopt;
mod async_fd;
mod connect;
mod consumed;
mod datagram;
mod guard;
mod poll_io;
mod protocol;
mod ready;
mod registration;
mod server;
mod sock;
mod stream_sock;
mod streams;
mod tcp;
mod transport;
mod udp;
mod unix;

pub use addr::ToSocketAddrs;
pub use adopt::Listener;
pub use async_fd::AsyncFd;
pub use datagram::DatagramTransport;
pub(crate) use poll_io::PollIo;
pub use protocol::{DatagramProtocol, Protocol};
pub use ready::{FdReady, readable, writable};
pub use server::{ServeForever, Server, ServerOptions, WaitClosed};
pub use streams::{
    DEFAULT_LIMIT, IncompleteReadError, LimitOverrunError, StreamOptions, StreamReader,
    StreamWriter,
};
pub use tcp::{TcpListener, TcpStream};
pub use transport::Transport;
pub use udp::UdpSocket;
pub use unix::{UnixListener, UnixStream};

/// How many reads (or accepts) one readiness event may do before the handler yields
/// to the rest of the loop and continues on the next iteration.
pub(crate) const READ_BUDGET: usize = 16;

/// The size of the buffer a transport reads into.
pub(crate) const READ_SIZE: usize = 64 * 1024;
