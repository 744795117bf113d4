//! The socket under a stream transport: TCP or Unix.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::event::Source;
use mio::{Interest, Registry, Token};

/// A connected, non-blocking stream socket.
pub(crate) enum StreamSock {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl StreamSock {
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StreamSock::Tcp(s) => (&*s).read(buf),
            StreamSock::Unix(s) => (&*s).read(buf),
        }
    }

    /// `read` into memory that may be uninitialised: on `Ok(n)`, the first `n`
    /// bytes of `buf` are initialised.
    pub(crate) fn read_uninit(&self, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
        match self {
            StreamSock::Tcp(s) => socket2::SockRef::from(s).recv(buf),
            StreamSock::Unix(s) => socket2::SockRef::from(s).recv(buf),
        }
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamSock::Tcp(s) => (&*s).write(buf),
            StreamSock::Unix(s) => (&*s).write(buf),
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            StreamSock::Tcp(s) => s.shutdown(how),
            StreamSock::Unix(s) => s.shutdown(how),
        }
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            StreamSock::Tcp(s) => s.peer_addr(),
            StreamSock::Unix(_) => Err(not_ip()),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            StreamSock::Tcp(s) => s.local_addr(),
            StreamSock::Unix(_) => Err(not_ip()),
        }
    }
}

fn not_ip() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a Unix socket has no IP address",
    )
}

impl std::os::fd::AsRawFd for StreamSock {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            StreamSock::Tcp(s) => s.as_raw_fd(),
            StreamSock::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Source for StreamSock {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            StreamSock::Tcp(s) => s.register(r, t, i),
            StreamSock::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            StreamSock::Tcp(s) => s.reregister(r, t, i),
            StreamSock::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            StreamSock::Tcp(s) => s.deregister(r),
            StreamSock::Unix(s) => s.deregister(r),
        }
    }
}
