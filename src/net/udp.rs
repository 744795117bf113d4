//! Async UDP sockets for tasks.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use super::addr::{ToSocketAddrs, resolve};
use super::poll_io::PollIo;
use crate::task::current_loop;

/// A UDP socket for tasks.
///
/// ```
/// let lp = evloop::Loop::new().unwrap();
/// lp.run_until_complete(async {
///     let a = evloop::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
///     let b = evloop::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
///     a.send_to(b"hi", b.local_addr().unwrap()).await.unwrap();
///     let mut buf = [0u8; 8];
///     let (n, from) = b.recv_from(&mut buf).await.unwrap();
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr().unwrap()));
/// }).unwrap();
/// ```
pub struct UdpSocket {
    io: PollIo<mio::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds to `addr`.
    ///
    /// # Panics
    /// Outside a running loop.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let lp = current_loop("net::UdpSocket::bind");
        let addr = resolve(&lp, addr.to_target()).await?[0];
        Ok(UdpSocket {
            io: PollIo::new(mio::net::UdpSocket::bind(addr)?)?,
        })
    }

    /// Wraps a socket made elsewhere (it is made non-blocking).
    ///
    /// # Panics
    /// Outside a running loop.
    #[track_caller]
    pub fn from_std(s: std::net::UdpSocket) -> io::Result<UdpSocket> {
        s.set_nonblocking(true)?;
        Ok(UdpSocket {
            io: PollIo::new(mio::net::UdpSocket::from_std(s))?,
        })
    }

    /// Deregisters the socket from the loop and hands it back, still non-blocking
    /// (`set_nonblocking(false)` for blocking use). Datagrams queued in the kernel stay
    /// readable from it.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        Ok(OwnedFd::from(self.io.into_inner()).into())
    }

    /// Connects to `addr`: `send` and `recv` then talk to it only.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let lp = current_loop("net::UdpSocket::connect");
        let addr = resolve(&lp, addr.to_target()).await?[0];
        self.io.get_ref().connect(addr)
    }

    /// Sends a datagram to `target`.
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.io.write_op(|s| s.send_to(buf, target)).await
    }

    /// Receives a datagram and its sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.read_op(|s| s.recv_from(buf)).await
    }

    /// Sends to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.write_op(|s| s.send(buf)).await
    }

    /// Receives from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read_op(|s| s.recv(buf)).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// The connected peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local_addr().ok())
            .finish()
    }
}

impl_as_fd!(UdpSocket);
