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
//! `AsyncWrite` traits of the ecosystem. [`readable`] and [`writable`] wait for any fd.
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
/// PollIo<_>` field and a `shutdown` method (TCP and Unix streams alike).
#[cfg(feature = "futures-io")]
macro_rules! impl_futures_io {
    ($stream:ty) => {
        impl futures_io::AsyncRead for $stream {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.io.poll_read(cx, buf)
            }
        }

        impl futures_io::AsyncWrite for $stream {
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

mod addr;
mod connect;
mod datagram;
mod guard;
mod poll_io;
mod protocol;
mod ready;
mod registration;
mod server;
mod stream_sock;
mod streams;
mod tcp;
mod transport;
mod udp;
mod unix;

pub use addr::ToSocketAddrs;
pub use datagram::DatagramTransport;
pub(crate) use poll_io::PollIo;
pub use protocol::{DatagramProtocol, Protocol};
pub use ready::{FdReady, readable, writable};
pub use server::{Server, ServerOptions, WaitClosed};
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
