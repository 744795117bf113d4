//! Client connections for protocols: `create_connection`, `create_unix_connection`.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;

use super::addr::{ToSocketAddrs, resolve};
use super::poll_io::PollIo;
use super::stream_sock::StreamSock;
use super::transport::TransportInner;
use super::{Protocol, Transport};
use crate::Loop;
use crate::task::Task;

/// Connects a non-blocking TCP socket to `addr`, waiting on the loop.
pub(crate) async fn connect_tcp(addr: SocketAddr) -> io::Result<PollIo<mio::net::TcpStream>> {
    let io = PollIo::new(mio::net::TcpStream::connect(addr)?)?;
    finish_connect(&io, |s| s.take_error(), |s| s.peer_addr().map(drop)).await?;
    let _ = io.get_ref().set_nodelay(true);
    Ok(io)
}

/// Connects a non-blocking Unix socket to `path`, waiting on the loop.
pub(crate) async fn connect_unix(path: &Path) -> io::Result<PollIo<mio::net::UnixStream>> {
    let io = PollIo::new(mio::net::UnixStream::connect(path)?)?;
    finish_connect(&io, |s| s.take_error(), |s| s.peer_addr().map(drop)).await?;
    Ok(io)
}

/// Waits for a non-blocking connect to finish: writable, then no pending error and
/// a peer.
async fn finish_connect<S: mio::event::Source + std::os::fd::AsRawFd>(
    io: &PollIo<S>,
    take_error: impl Fn(&S) -> io::Result<Option<io::Error>>,
    peer: impl Fn(&S) -> io::Result<()>,
) -> io::Result<()> {
    loop {
        io.writable().await;
        if let Some(e) = take_error(io.get_ref())? {
            return Err(e);
        }
        match peer(io.get_ref()) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                // Spurious: still connecting. Wait for the next edge.
                io.clear_writable();
            }
            Err(e) => return Err(e),
        }
    }
}

impl Loop {
    /// Opens a TCP connection to `addr` and runs `protocol` on it (asyncio's
    /// `create_connection`). Host names are resolved off the loop, and each address
    /// is tried in turn. The task completes with the transport and the protocol
    /// (shared, so that the caller can reach it) once connected; `connection_made`
    /// runs first.
    #[track_caller]
    pub fn create_connection<P: Protocol + 'static>(
        &self,
        addr: impl ToSocketAddrs,
        protocol: P,
    ) -> Task<io::Result<(Transport, Rc<RefCell<P>>)>> {
        let target = addr.to_target();
        let lp = self.clone();
        self.create_task(async move {
            let addrs = resolve(&lp, target).await?;
            let mut last = None;
            for addr in addrs {
                match connect_tcp(addr).await {
                    Ok(io) => return start(&lp, StreamSock::Tcp(io.into_inner()), protocol).await,
                    Err(e) => last = Some(e),
                }
            }
            Err(last.expect("resolve returns at least one address"))
        })
    }

    /// Opens a connection to the Unix socket `path` and runs `protocol` on it
    /// (asyncio's `create_unix_connection`).
    #[track_caller]
    pub fn create_unix_connection<P: Protocol + 'static>(
        &self,
        path: impl AsRef<Path>,
        protocol: P,
    ) -> Task<io::Result<(Transport, Rc<RefCell<P>>)>> {
        let path = path.as_ref().to_path_buf();
        let lp = self.clone();
        self.create_task(async move {
            let io = connect_unix(&path).await?;
            start(&lp, StreamSock::Unix(io.into_inner()), protocol).await
        })
    }
}

/// Starts the transport and waits until `connection_made` has run.
async fn start<P: Protocol + 'static>(
    lp: &Loop,
    sock: StreamSock,
    protocol: P,
) -> io::Result<(Transport, Rc<RefCell<P>>)> {
    let protocol = Rc::new(RefCell::new(protocol));
    let transport = TransportInner::start(lp, sock, protocol.clone(), None)?;
    // `connection_made` was scheduled with call_soon: let it run before we return.
    crate::yield_now().await;
    Ok((transport, protocol))
}
