//! Sockets made elsewhere: a listening socket to serve (`create_server_from`, asyncio's
//! `create_server(sock=)`) and a connected one to run a protocol on
//! (`connect_accepted_socket`).
//!
//! Either way the loop takes the socket over: it is made non-blocking, and the loop
//! owns it from then on (closes it when the server or connection ends, or when the
//! task is dropped before it started). TCP and Unix stream sockets are accepted;
//! anything else is an `Err(InvalidInput)` that closes it.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use socket2::{Domain, SockRef, Type};

use super::server::{ListenSock, Server, ServerOptions, make_factory};
use super::stream_sock::StreamSock;
use super::transport::TransportInner;
use super::{Protocol, Transport};
use crate::Loop;
use crate::task::Task;

/// A stream socket to listen on, made elsewhere, for
/// [`Loop::create_server_from`]: a `std::net::TcpListener`, a
/// `std::os::unix::net::UnixListener`, or a `socket2::Socket` (TCP or Unix, bound;
/// it need not be listening yet).
pub struct Listener {
    fd: OwnedFd,
}

impl From<std::net::TcpListener> for Listener {
    fn from(l: std::net::TcpListener) -> Listener {
        Listener { fd: l.into() }
    }
}

impl From<std::os::unix::net::UnixListener> for Listener {
    fn from(l: std::os::unix::net::UnixListener) -> Listener {
        Listener { fd: l.into() }
    }
}

impl From<socket2::Socket> for Listener {
    fn from(s: socket2::Socket) -> Listener {
        Listener { fd: s.into() }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("fd", &self.fd).finish()
    }
}

/// TCP (IPv4 or IPv6) or Unix, of a stream socket; `InvalidInput` for anything else.
fn stream_kind(fd: &impl AsFd, what: &str) -> io::Result<bool> {
    let sock = SockRef::from(fd);
    let (domain, ty) = (sock.domain()?, sock.r#type()?);
    if ty != Type::STREAM {
        return Err(invalid(what, "not a stream socket"));
    }
    match domain {
        Domain::IPV4 | Domain::IPV6 => Ok(true),
        Domain::UNIX => Ok(false),
        _ => Err(invalid(what, "neither a TCP nor a Unix socket")),
    }
}

fn invalid(what: &str, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {why}"))
}

impl Listener {
    /// Listens (with `backlog`: a socket already listening just takes the new one),
    /// non-blocking.
    fn into_listen_sock(self, backlog: i32) -> io::Result<ListenSock> {
        let tcp = stream_kind(&self.fd, "create_server_from")?;
        let sock = socket2::Socket::from(self.fd);
        sock.set_nonblocking(true)?;
        sock.listen(backlog)?;
        let fd = OwnedFd::from(sock);
        Ok(if tcp {
            ListenSock::Tcp(mio::net::TcpListener::from_std(fd.into()))
        } else {
            ListenSock::Unix(mio::net::UnixListener::from_std(fd.into()))
        })
    }
}

impl Loop {
    /// Serves a listening socket made elsewhere (asyncio's `create_server(sock=)`):
    /// as [`create_server`](Loop::create_server), on `listener`, which the server owns
    /// from now on. A Unix socket's file is left where it is when the server closes
    /// (it belongs to whoever bound it).
    ///
    /// # Errors
    /// In the task: `InvalidInput` for a socket that is not a TCP or Unix stream
    /// socket; `listen`'s errors (an unbound Unix socket).
    #[track_caller]
    pub fn create_server_from<P: Protocol + 'static>(
        &self,
        listener: impl Into<Listener>,
        factory: impl FnMut() -> P + 'static,
    ) -> Task<io::Result<Server>> {
        self.create_server_from_with(listener, factory, ServerOptions::default())
    }

    /// [`create_server_from`](Loop::create_server_from) with [`ServerOptions`]: its
    /// `backlog` and `start_serving` apply (the socket is made already, so the
    /// address options do not).
    #[track_caller]
    pub fn create_server_from_with<P: Protocol + 'static>(
        &self,
        listener: impl Into<Listener>,
        factory: impl FnMut() -> P + 'static,
        options: ServerOptions,
    ) -> Task<io::Result<Server>> {
        let listener = listener.into();
        let factory = make_factory(factory);
        let lp = self.clone();
        self.create_task(async move {
            let sock = listener.into_listen_sock(options.backlog)?;
            let server = Server::new(&lp, factory, None);
            server.start(&lp, vec![sock], options.start_serving)?;
            Ok(server)
        })
    }

    /// Runs `protocol` on a connected socket made elsewhere (asyncio's
    /// `connect_accepted_socket`): a `std::net::TcpStream`, a
    /// `std::os::unix::net::UnixStream`, a `socket2::Socket` (anything that is an
    /// `OwnedFd`), TCP or Unix. The transport owns the socket from now on. Completes
    /// as [`create_connection`](Loop::create_connection) does, once
    /// `connection_made` has run. TCP sockets get `TCP_NODELAY`, as asyncio's.
    ///
    /// # Errors
    /// In the task: `InvalidInput` for a socket that is not a TCP or Unix stream
    /// socket; `NotConnected` for one that is not connected (a listener, a fresh
    /// socket).
    #[track_caller]
    pub fn connect_accepted_socket<P: Protocol + 'static>(
        &self,
        stream: impl Into<OwnedFd>,
        protocol: P,
    ) -> Task<io::Result<(Transport, Rc<RefCell<P>>)>> {
        let fd = stream.into();
        let lp = self.clone();
        self.create_task(async move {
            let tcp = stream_kind(&fd, "connect_accepted_socket")?;
            let sock = socket2::Socket::from(fd);
            sock.peer_addr()?;
            sock.set_nonblocking(true)?;
            let fd = OwnedFd::from(sock);
            let sock = if tcp {
                let s = mio::net::TcpStream::from_std(fd.into());
                let _ = s.set_nodelay(true);
                StreamSock::Tcp(s)
            } else {
                StreamSock::Unix(mio::net::UnixStream::from_std(fd.into()))
            };
            let protocol = Rc::new(RefCell::new(protocol));
            let transport = TransportInner::start(&lp, sock, protocol.clone(), None)?;
            // `connection_made` was scheduled with call_soon: let it run first.
            crate::yield_now().await;
            Ok((transport, protocol))
        })
    }
}
