//! Async TCP streams for tasks: `TcpListener` and `TcpStream`.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::OwnedFd;

use super::addr::{ToSocketAddrs, resolve};
use super::connect::connect_tcp;
use super::poll_io::PollIo;
use super::server::{ServerOptions, bind_tcp};
use crate::task::current_loop;

/// A TCP listening socket for tasks.
///
/// ```
/// let lp = evloop::Loop::new().unwrap();
/// lp.run_until_complete(async {
///     let listener = evloop::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let addr = listener.local_addr().unwrap();
///     let client = evloop::spawn(async move {
///         let s = evloop::net::TcpStream::connect(addr).await.unwrap();
///         s.write_all(b"ping").await.unwrap();
///     });
///     let (conn, _) = listener.accept().await.unwrap();
///     let mut buf = [0u8; 4];
///     conn.read_exact(&mut buf).await.unwrap();
///     assert_eq!(&buf, b"ping");
///     client.await.unwrap();
/// }).unwrap();
/// ```
pub struct TcpListener {
    io: PollIo<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (the first address it resolves to), with `SO_REUSEADDR` and a
    /// backlog of 1024.
    ///
    /// # Panics
    /// Outside a running loop.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let lp = current_loop("net::TcpListener::bind");
        let addrs = resolve(&lp, addr.to_target()).await?;
        let opts = ServerOptions::default().backlog(1024);
        let mut last = None;
        for a in addrs {
            match bind_tcp(a, &opts) {
                Ok(l) => {
                    return Ok(TcpListener {
                        io: PollIo::new(l)?,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one address"))
    }

    /// Wraps a listener made elsewhere (it is made non-blocking).
    ///
    /// # Panics
    /// Outside a running loop.
    #[track_caller]
    pub fn from_std(l: std::net::TcpListener) -> io::Result<TcpListener> {
        l.set_nonblocking(true)?;
        Ok(TcpListener {
            io: PollIo::new(mio::net::TcpListener::from_std(l))?,
        })
    }

    /// Deregisters the listener from the loop and hands the socket back, still
    /// listening and still non-blocking (`set_nonblocking(false)` for blocking use),
    /// as tokio's `into_std` does.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        Ok(OwnedFd::from(self.io.into_inner()).into())
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, addr) = self.io.read_op(|l| l.accept()).await?;
        let _ = s.set_nodelay(true);
        Ok((
            TcpStream {
                io: PollIo::new(s)?,
            },
            addr,
        ))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr().ok())
            .finish()
    }
}

/// A TCP connection for tasks: async `read`, `write`, `write_all`, and (feature
/// `futures-io`) `AsyncRead` / `AsyncWrite`, for `&TcpStream` too. Methods take
/// `&self`, so one task may read while another writes (share it in an `Rc`).
/// `TCP_NODELAY` is on, as in asyncio.
///
/// # Not `Send`
/// The socket types of this module are `!Send` and `!Sync`, and so are the futures
/// of their methods (`read`, `accept`, `connect`, ...): each is registered with the
/// loop of the thread that made it and shares `Rc` state with that loop. Use them
/// in tasks of that loop; to hand a socket to another thread or loop, take it out
/// with `into_std` and wrap it again there with `from_std`.
pub struct TcpStream {
    io: PollIo<mio::net::TcpStream>,
}

impl TcpStream {
    /// Connects to `addr`, trying each address it resolves to.
    ///
    /// # Panics
    /// Outside a running loop.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let lp = current_loop("net::TcpStream::connect");
        let addrs = resolve(&lp, addr.to_target()).await?;
        let mut last = None;
        for a in addrs {
            match connect_tcp(a).await {
                Ok(io) => return Ok(TcpStream { io }),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one address"))
    }

    /// Wraps a connected stream made elsewhere (it is made non-blocking; its
    /// `TCP_NODELAY` is left as it is).
    ///
    /// # Panics
    /// Outside a running loop.
    #[track_caller]
    pub fn from_std(s: std::net::TcpStream) -> io::Result<TcpStream> {
        s.set_nonblocking(true)?;
        Ok(TcpStream {
            io: PollIo::new(mio::net::TcpStream::from_std(s))?,
        })
    }

    /// Deregisters the stream from the loop and hands the socket back, still
    /// non-blocking (`set_nonblocking(false)` for blocking use). Data the kernel has
    /// received and nobody read stays readable from it.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        Ok(self.io.into_inner().into())
    }

    /// Reads what is available into `buf` (waiting for at least one byte); `Ok(0)` at EOF.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read(buf).await
    }

    /// Reads exactly `buf.len()` bytes; `UnexpectedEof` if the stream ends first.
    pub async fn read_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        self.io.read_exact(buf).await
    }

    /// Reads until EOF, appending to `out`; returns how many bytes were read.
    pub async fn read_to_end(&self, out: &mut Vec<u8>) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let mut total = 0;
        loop {
            match self.read(&mut chunk).await? {
                0 => return Ok(total),
                n => {
                    out.extend_from_slice(&chunk[..n]);
                    total += n;
                }
            }
        }
    }

    /// Writes some of `buf` (waiting until the socket takes at least one byte).
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.io.write_all(buf).await
    }

    /// Shuts down the reading, writing or both halves (`Shutdown::Write` sends EOF).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.get_ref().shutdown(how)
    }

    /// Waits until the socket may be readable.
    pub async fn readable(&self) {
        self.io.readable().await
    }

    /// Waits until the socket may be writable.
    pub async fn writable(&self) {
        self.io.writable().await
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    /// Sets `TCP_NODELAY` (on by default for streams evloop connects or accepts).
    /// Other options: `socket2::SockRef::from(&stream)`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.io.get_ref().set_nodelay(on)
    }

    /// Whether `TCP_NODELAY` is on.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.get_ref().nodelay()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl_as_fd!(TcpListener, TcpStream);

#[cfg(feature = "futures-io")]
impl_futures_io!(TcpStream);
