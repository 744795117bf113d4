//! Streams, asyncio's high-level network API: [`Loop::open_connection`] and
//! [`Loop::start_server`] (and their Unix twins) give a [`StreamReader`] and a
//! [`StreamWriter`] per connection.
//!
//! Streams sit on the [`Transport`](super::Transport) / [`Protocol`](super::Protocol)
//! layer: a connection's protocol puts what arrives into the reader's buffer (pausing
//! the transport's reading when the buffer goes over twice the reader's limit), and
//! the writer is the transport plus [`drain`](StreamWriter::drain), which waits while
//! the transport's flow control has paused writing.
//!
//! ```
//! use evloop::net::{StreamReader, StreamWriter};
//! async fn echo_lines(mut reader: StreamReader, writer: StreamWriter) {
//!     while let Ok(line) = reader.readline().await {
//!         if line.is_empty() {
//!             break; // EOF
//!         }
//!         writer.write(&line);
//!         if writer.drain().await.is_err() {
//!             break;
//!         }
//!     }
//! }
//! let lp = evloop::Loop::new()?;
//! lp.run_until_complete(async {
//!     let server = evloop::Loop::current().unwrap().start_server("127.0.0.1:0", echo_lines).await??;
//!     let addr = server.local_addrs()[0];
//!     let lp = evloop::Loop::current().unwrap();
//!     let (mut reader, writer) = lp.open_connection(addr).await??;
//!     writer.write(b"hello\n");
//!     assert_eq!(reader.readline().await?, b"hello\n");
//!     writer.close();
//!     writer.wait_closed().await?;
//!     server.close();
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })??;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod errors;
mod reader;
mod shared;
mod writer;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::path::Path;
use std::rc::Rc;

pub use errors::{IncompleteReadError, LimitOverrunError};
pub use reader::StreamReader;
pub use writer::StreamWriter;

use self::shared::{ClientConnected, Shared, StreamProtocol};
use super::addr::{ToSocketAddrs, resolve};
use super::connect::{connect_tcp, connect_unix};
use super::stream_sock::StreamSock;
use super::transport::TransportInner;
use super::{Server, ServerOptions};
use crate::Loop;
use crate::task::Task;

/// asyncio's default stream limit (`_DEFAULT_LIMIT`): 64 KiB.
pub const DEFAULT_LIMIT: usize = 64 * 1024;

/// Options of the streams API: the reader's limit, and for servers the listening
/// options. asyncio's `limit=` keyword (and `create_server`'s keywords).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamOptions {
    /// The [`StreamReader`]'s limit (default [`DEFAULT_LIMIT`], 64 KiB): the longest
    /// line `readline` / `readuntil` returns (plus its separator); reading pauses
    /// while more than twice it is buffered. Must be positive.
    pub limit: usize,
    /// How a server listens (TCP servers; a Unix server has no options).
    pub server: ServerOptions,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            limit: DEFAULT_LIMIT,
            server: ServerOptions::default(),
        }
    }
}

impl StreamOptions {
    /// Sets [`limit`](StreamOptions::limit).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Sets [`server`](StreamOptions::server).
    pub fn server(mut self, server: ServerOptions) -> Self {
        self.server = server;
        self
    }

    /// asyncio's `ValueError('Limit cannot be <= 0')`, as an `io::Error`.
    fn check(&self) -> io::Result<()> {
        if self.limit == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "StreamOptions::limit must be positive",
            ));
        }
        Ok(())
    }
}

/// The protocol of a client connection (no callback).
type ClientProtocol = StreamProtocol<fn(StreamReader, StreamWriter) -> std::future::Ready<()>>;

impl Loop {
    /// Opens a TCP connection to `addr` (asyncio's `open_connection`): the task
    /// completes with the connection's reader and writer. Host names are resolved off
    /// the loop, and each address is tried in turn.
    #[track_caller]
    pub fn open_connection(
        &self,
        addr: impl ToSocketAddrs,
    ) -> Task<io::Result<(StreamReader, StreamWriter)>> {
        self.open_connection_with(addr, StreamOptions::default())
    }

    /// [`open_connection`](Loop::open_connection) with [`StreamOptions`] (only the
    /// limit applies).
    ///
    /// # Errors
    /// `InvalidInput` for a zero limit; what connecting fails with.
    #[track_caller]
    pub fn open_connection_with(
        &self,
        addr: impl ToSocketAddrs,
        options: StreamOptions,
    ) -> Task<io::Result<(StreamReader, StreamWriter)>> {
        let target = addr.to_target();
        let lp = self.clone();
        self.create_task(async move {
            options.check()?;
            let addrs = resolve(&lp, target).await?;
            let mut last = None;
            for addr in addrs {
                match connect_tcp(addr).await {
                    Ok(io) => {
                        let sock = StreamSock::Tcp(io.into_inner());
                        return start_client(&lp, sock, options.limit).await;
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.expect("resolve returns at least one address"))
        })
    }

    /// Opens a connection to the Unix socket `path` (asyncio's
    /// `open_unix_connection`).
    #[track_caller]
    pub fn open_unix_connection(
        &self,
        path: impl AsRef<Path>,
    ) -> Task<io::Result<(StreamReader, StreamWriter)>> {
        self.open_unix_connection_with(path, StreamOptions::default())
    }

    /// [`open_unix_connection`](Loop::open_unix_connection) with [`StreamOptions`]
    /// (only the limit applies).
    #[track_caller]
    pub fn open_unix_connection_with(
        &self,
        path: impl AsRef<Path>,
        options: StreamOptions,
    ) -> Task<io::Result<(StreamReader, StreamWriter)>> {
        let path = path.as_ref().to_path_buf();
        let lp = self.clone();
        self.create_task(async move {
            options.check()?;
            let io = connect_unix(&path).await?;
            start_client(&lp, StreamSock::Unix(io.into_inner()), options.limit).await
        })
    }

    /// Starts a TCP server on `addr` (asyncio's `start_server`): for every
    /// connection, `client_connected` is called with its reader and writer, and the
    /// future it returns runs as a task. The task completes once the server listens.
    ///
    /// A client future that panics is reported to the exception handler and its
    /// connection is closed (asyncio's "Unhandled exception in client_connected_cb");
    /// one that returns drops its reader and writer, which closes the connection
    /// unless it handed them on. The callback is dropped when the server closes.
    #[track_caller]
    pub fn start_server<C, Fut>(
        &self,
        addr: impl ToSocketAddrs,
        client_connected: C,
    ) -> Task<io::Result<Server>>
    where
        C: FnMut(StreamReader, StreamWriter) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.start_server_with(addr, client_connected, StreamOptions::default())
    }

    /// [`start_server`](Loop::start_server) with [`StreamOptions`]: the readers'
    /// limit and the [`ServerOptions`].
    ///
    /// # Errors
    /// `InvalidInput` for a zero limit; what listening fails with.
    #[track_caller]
    pub fn start_server_with<C, Fut>(
        &self,
        addr: impl ToSocketAddrs,
        client_connected: C,
        options: StreamOptions,
    ) -> Task<io::Result<Server>>
    where
        C: FnMut(StreamReader, StreamWriter) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        if let Err(e) = options.check() {
            return self.create_task(async move { Err(e) });
        }
        let factory = server_factory(self, client_connected, options.limit, Location::caller());
        self.create_server_with(addr, factory, options.server)
    }

    /// Starts a server on the Unix socket `path` (asyncio's `start_unix_server`); as
    /// [`create_unix_server`](Loop::create_unix_server), a stale socket file is
    /// removed first and the file is removed when the server closes.
    #[track_caller]
    pub fn start_unix_server<C, Fut>(
        &self,
        path: impl AsRef<Path>,
        client_connected: C,
    ) -> Task<io::Result<Server>>
    where
        C: FnMut(StreamReader, StreamWriter) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.start_unix_server_with(path, client_connected, StreamOptions::default())
    }

    /// [`start_unix_server`](Loop::start_unix_server) with [`StreamOptions`] (only
    /// the limit applies).
    #[track_caller]
    pub fn start_unix_server_with<C, Fut>(
        &self,
        path: impl AsRef<Path>,
        client_connected: C,
        options: StreamOptions,
    ) -> Task<io::Result<Server>>
    where
        C: FnMut(StreamReader, StreamWriter) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        if let Err(e) = options.check() {
            return self.create_task(async move { Err(e) });
        }
        let factory = server_factory(self, client_connected, options.limit, Location::caller());
        self.create_unix_server(path, factory)
    }
}

/// The protocol factory of a streams server.
fn server_factory<C, Fut>(
    lp: &Loop,
    callback: C,
    limit: usize,
    location: &'static Location<'static>,
) -> impl FnMut() -> StreamProtocol<C> + 'static
where
    C: FnMut(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let connected = Rc::new(ClientConnected {
        callback: RefCell::new(callback),
        lp: lp.downgrade(),
        location,
    });
    move || StreamProtocol::new(Shared::new(limit), Some(connected.clone()))
}

/// Starts the transport of a client connection; the reader and writer exist before
/// the first await, so a cancelled `open_connection` closes the connection.
async fn start_client(
    lp: &Loop,
    sock: StreamSock,
    limit: usize,
) -> io::Result<(StreamReader, StreamWriter)> {
    let shared = Shared::new(limit);
    let protocol: ClientProtocol = StreamProtocol::new(shared.clone(), None);
    let transport = TransportInner::start(lp, sock, Rc::new(RefCell::new(protocol)), None)?;
    let reader = StreamReader::new(shared.clone(), transport.clone());
    let writer = StreamWriter::new(shared, transport);
    // `connection_made` was scheduled with call_soon: let it run before we return.
    crate::yield_now().await;
    Ok((reader, writer))
}
