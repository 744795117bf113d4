//! `Server`: listening sockets that accept connections for a protocol factory.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use mio::Interest;

use super::addr::{ToSocketAddrs, resolve};
use super::guard::{drop_guarded, guarded};
use super::registration::{NetSource, Registration};
use super::stream_sock::StreamSock;
use super::transport::TransportInner;
use super::{Protocol, READ_BUDGET};
use crate::Loop;
use crate::event_loop::WeakLoop;
use crate::source::{Readiness, SourceHandler, SourceId};
use crate::task::Task;
use crate::waiters::{WaitQueue, Wakeups};

/// How long a server stops accepting after running out of fds (asyncio's
/// `ACCEPT_RETRY_DELAY`).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Options of [`Loop::create_server_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The `listen()` backlog (default 100, as asyncio's).
    pub backlog: i32,
    /// `SO_REUSEADDR` (default true, as asyncio's on Unix).
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: several servers share the port (default false).
    pub reuse_port: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            backlog: 100,
            reuse_address: true,
            reuse_port: false,
        }
    }
}

impl ServerOptions {
    /// Sets [`backlog`](ServerOptions::backlog).
    pub fn backlog(mut self, n: i32) -> Self {
        self.backlog = n;
        self
    }

    /// Sets [`reuse_port`](ServerOptions::reuse_port).
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// Sets [`reuse_address`](ServerOptions::reuse_address).
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.reuse_address = on;
        self
    }
}

type Factory = Box<dyn FnMut() -> Rc<RefCell<dyn Protocol>>>;

/// A listening server: asyncio's `Server`.
///
/// Each accepted connection gets a fresh protocol from the factory and a
/// [`Transport`](super::Transport). `close()` stops listening and leaves existing
/// connections alone; [`wait_closed`](Server::wait_closed) waits until the server is
/// closed and its last connection is gone. `Clone`: all clones are the same server.
///
/// A server survives running out of fds (`EMFILE`/`ENFILE`): it logs, stops
/// accepting for a second while existing connections are served, then resumes. A
/// factory that panics is reported to the loop's exception handler and that one
/// connection is dropped; the server goes on accepting.
///
/// The factory is dropped (once) when the server is closed, by [`close`](Server::close),
/// by the loop closing or being dropped, or with the last `Server` handle; so a
/// factory may keep a clone of its own `Server` without keeping it alive for ever.
#[derive(Clone)]
pub struct Server {
    inner: Rc<ServerInner>,
}

struct ServerInner {
    lp: WeakLoop,
    acceptors: RefCell<Vec<Rc<Acceptor>>>,
    /// `None` once the server is closed (or while the factory runs): the factory is
    /// let go when nothing can use it any more.
    factory: RefCell<Option<Factory>>,
    /// Connections accepted and not yet lost.
    active: Cell<usize>,
    closed: Cell<bool>,
    /// The `wait_closed` futures waiting, one entry each (see `WaitClosed::key`).
    waiters: RefCell<WaitQueue>,
    /// The socket file of a Unix server, removed on close.
    unix_path: Option<SocketFile>,
}

enum ListenSock {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
}

/// One listening socket and its accept loop.
struct Acceptor {
    me: Weak<Acceptor>,
    server: Weak<ServerInner>,
    sock: RefCell<Option<ListenSock>>,
    id: Cell<Option<SourceId>>,
    /// Out of fds: accepting resumes after `ACCEPT_RETRY_DELAY`.
    backing_off: Cell<bool>,
}

impl Acceptor {
    fn accept_some(&self, lp: &Loop) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        for _ in 0..READ_BUDGET * 4 {
            if server.closed.get() || self.backing_off.get() {
                return;
            }
            let accepted = match &*self.sock.borrow() {
                Some(ListenSock::Tcp(l)) => l.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    StreamSock::Tcp(s)
                }),
                Some(ListenSock::Unix(l)) => l.accept().map(|(s, _)| StreamSock::Unix(s)),
                None => return,
            };
            match accepted {
                Ok(sock) => server.serve(lp, sock),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_transient(&e) => {}
                Err(e) if is_resource_error(&e) => {
                    log::error!(
                        "evloop: accept failed ({e}); the server stops accepting for {ACCEPT_RETRY_DELAY:?}"
                    );
                    self.backing_off.set(true);
                    if let Some(me) = self.me.upgrade() {
                        lp.call_later(ACCEPT_RETRY_DELAY, move |lp| {
                            me.backing_off.set(false);
                            me.accept_some(lp);
                        });
                    }
                    return;
                }
                Err(e) => {
                    log::error!("evloop: accept failed: {e}");
                    return;
                }
            }
        }
        // Budget used: more connections may be waiting, and no new edge will say so.
        if let Some(me) = self.me.upgrade() {
            lp.call_soon(move |lp| me.accept_some(lp));
        }
    }

    fn stop(&self, lp: &Loop) {
        let sock = self.sock.borrow_mut().take();
        if let (Some(mut sock), Some(id)) = (sock, self.id.take()) {
            match &mut sock {
                ListenSock::Tcp(l) => lp.deregister_source(l, id),
                ListenSock::Unix(l) => lp.deregister_source(l, id),
            }
        }
    }
}

/// Errors after which the next `accept` may well succeed.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::EPERM
        )
    )
}

/// Out of fds or memory: back off.
fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl SourceHandler for Acceptor {
    fn ready(&self, lp: &Loop, readiness: Readiness) {
        if readiness.is_readable() {
            self.accept_some(lp);
        }
    }

    /// A closed loop serves nothing more: the server closes (its factory is let go).
    fn loop_closed(&self, lp: &Loop) {
        if let Some(server) = self.server.upgrade() {
            server.shut(Some(lp));
        }
    }
}

impl NetSource for Acceptor {
    fn forgotten(&self) {
        // Still registered (`stop` clears `id` first): the loop was dropped without
        // `close()`.
        if self.id.get().is_some()
            && let Some(server) = self.server.upgrade()
        {
            server.shut(None);
        }
    }
}

impl ServerInner {
    fn serve(self: &Rc<Self>, lp: &Loop, sock: StreamSock) {
        // Out of the cell while it runs: it may close the server (and so drop itself
        // once it has returned).
        let Some(mut factory) = self.factory.borrow_mut().take() else {
            return; // closed: the connection is dropped
        };
        let protocol = guarded(&self.lp, "a server's protocol factory", &mut factory);
        if self.closed.get() {
            drop_guarded(
                &self.lp,
                "a server's protocol factory's destructor",
                factory,
            );
        } else {
            *self.factory.borrow_mut() = Some(factory);
        }
        let Some(protocol) = protocol else {
            return; // it panicked (reported): the connection is dropped
        };
        self.active.set(self.active.get() + 1);
        let server = Rc::downgrade(self);
        let on_lost = Box::new(move || {
            if let Some(s) = server.upgrade() {
                s.connection_done();
            }
        });
        if let Err(e) = TransportInner::start(lp, sock, protocol, Some(on_lost)) {
            log::error!("evloop: cannot register an accepted connection: {e}");
            self.connection_done();
        }
    }

    fn connection_done(&self) {
        self.active.set(self.active.get() - 1);
        self.wake_if_done();
    }

    fn wake_if_done(&self) {
        if self.closed.get() && self.active.get() == 0 {
            // Declared before the borrow: the wakers run after it ends.
            let mut wakeups = Wakeups::default();
            self.waiters.borrow_mut().notify_all(&mut wakeups);
        }
    }

    fn start(self: &Rc<Self>, lp: &Loop, socks: Vec<ListenSock>) -> io::Result<()> {
        for sock in socks {
            let acceptor = Rc::new_cyclic(|me| Acceptor {
                me: me.clone(),
                server: Rc::downgrade(self),
                sock: RefCell::new(Some(sock)),
                id: Cell::new(None),
                backing_off: Cell::new(false),
            });
            let id = {
                let mut s = acceptor.sock.borrow_mut();
                let handler = Registration::handler(&acceptor);
                match s.as_mut().expect("just stored") {
                    ListenSock::Tcp(l) => lp.register_source(l, Interest::READABLE, handler)?,
                    ListenSock::Unix(l) => lp.register_source(l, Interest::READABLE, handler)?,
                }
            };
            acceptor.id.set(Some(id));
            self.acceptors.borrow_mut().push(acceptor);
        }
        Ok(())
    }

    /// Closes the server: stops listening (with `lp` to deregister from, if the loop
    /// is still there), removes a Unix server's socket file, lets go of the factory.
    fn shut(&self, lp: Option<&Loop>) {
        if self.closed.replace(true) {
            return;
        }
        let acceptors = std::mem::take(&mut *self.acceptors.borrow_mut());
        for a in &acceptors {
            match lp {
                Some(lp) => a.stop(lp),
                None => {
                    a.id.take();
                    drop(a.sock.borrow_mut().take());
                }
            }
        }
        drop(acceptors);
        if let Some(file) = &self.unix_path {
            file.remove();
        }
        let factory = self.factory.borrow_mut().take();
        if let Some(f) = factory {
            drop_guarded(&self.lp, "a server's protocol factory's destructor", f);
        }
        self.wake_if_done();
    }
}

impl Drop for ServerInner {
    /// The last `Server` handle is gone: nobody can close it any more, so stop
    /// listening now rather than leave a listener that accepts nothing.
    fn drop(&mut self) {
        let acceptors = std::mem::take(&mut *self.acceptors.borrow_mut());
        if let Some(lp) = self.lp.upgrade() {
            for a in &acceptors {
                a.stop(&lp);
            }
        }
        if !self.closed.get()
            && let Some(file) = &self.unix_path
        {
            file.remove();
        }
        if let Some(f) = self.factory.get_mut().take() {
            drop_guarded(&self.lp, "a server's protocol factory's destructor", f);
        }
    }
}

impl Server {
    fn new(lp: &Loop, factory: Factory, unix_path: Option<SocketFile>) -> Server {
        Server {
            inner: Rc::new(ServerInner {
                lp: lp.downgrade(),
                acceptors: RefCell::new(Vec::new()),
                factory: RefCell::new(Some(factory)),
                active: Cell::new(0),
                closed: Cell::new(false),
                waiters: RefCell::new(WaitQueue::default()),
                unix_path,
            }),
        }
    }

    /// Stops listening (the listening sockets are closed; a Unix server's socket file
    /// is removed) and drops the protocol factory. Connections already accepted stay
    /// open. Closing twice is fine. A server also closes when its loop closes or is
    /// dropped: a closed loop serves nothing.
    pub fn close(&self) {
        let lp = self.inner.lp.upgrade();
        self.inner.shut(lp.as_ref());
    }

    /// Whether the server is still listening.
    pub fn is_serving(&self) -> bool {
        !self.inner.closed.get()
    }

    /// How many accepted connections are still open.
    pub fn active_connections(&self) -> usize {
        self.inner.active.get()
    }

    /// Completes once the server is closed and its last connection is gone.
    ///
    /// Any number of futures may wait; each keeps one waker on the server however
    /// often it is polled, and dropping one (a timeout that expired) takes its waker
    /// off at once.
    pub fn wait_closed(&self) -> WaitClosed {
        WaitClosed {
            server: self.clone(),
            key: None,
        }
    }

    /// The addresses the server listens on (TCP servers; empty for Unix ones).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner
            .acceptors
            .borrow()
            .iter()
            .filter_map(|a| match &*a.sock.borrow() {
                Some(ListenSock::Tcp(l)) => l.local_addr().ok(),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("serving", &self.is_serving())
            .field("addrs", &self.local_addrs())
            .field("active", &self.active_connections())
            .finish()
    }
}

/// The future of [`Server::wait_closed`].
#[derive(Debug)]
pub struct WaitClosed {
    server: Server,
    /// Our entry in `ServerInner::waiters` while we wait; only we remove it.
    key: Option<usize>,
}

impl Future for WaitClosed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let inner = &this.server.inner;
        // Declared before the borrow: wakers are dropped after it ends.
        let mut wakeups = Wakeups::default();
        let mut waiters = inner.waiters.borrow_mut();
        if inner.closed.get() && inner.active.get() == 0 {
            if let Some(key) = this.key.take() {
                waiters.remove(key, &mut wakeups);
            }
            return Poll::Ready(());
        }
        match this.key {
            Some(key) if !waiters.is_notified(key) => {
                waiters.register(key, cx.waker(), &mut wakeups);
            }
            stale => {
                if let Some(key) = stale {
                    waiters.remove(key, &mut wakeups);
                }
                this.key = Some(waiters.push(cx.waker()));
            }
        }
        Poll::Pending
    }
}

impl Drop for WaitClosed {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut wakeups = Wakeups::default();
            self.server
                .inner
                .waiters
                .borrow_mut()
                .remove(key, &mut wakeups);
        }
    }
}

fn make_factory<P: Protocol + 'static>(mut factory: impl FnMut() -> P + 'static) -> Factory {
    Box::new(move || Rc::new(RefCell::new(factory())) as Rc<RefCell<dyn Protocol>>)
}

/// A listening TCP socket, non-blocking.
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    opts: &ServerOptions,
) -> io::Result<mio::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if opts.reuse_address {
        sock.set_reuse_address(true)?;
    }
    if opts.reuse_port {
        sock.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(opts.backlog)?;
    Ok(mio::net::TcpListener::from_std(sock.into()))
}

impl Loop {
    /// Starts a TCP server on `addr` (asyncio's `create_server`): every accepted
    /// connection gets a protocol from `factory`. The task completes once the server
    /// listens. Host names are resolved off the loop; every address found is bound.
    ///
    /// ```
    /// use evloop::net::{Protocol, Transport};
    /// struct Hello;
    /// impl Protocol for Hello {
    ///     fn connection_made(&mut self, t: &Transport) { t.write(b"hello\n"); t.close(); }
    ///     fn data_received(&mut self, _: &[u8]) {}
    /// }
    /// let lp = evloop::Loop::new().unwrap();
    /// let server = lp.run_until_complete(lp.create_server("127.0.0.1:0", || Hello)).unwrap();
    /// let server = server.unwrap().unwrap();
    /// let addr = server.local_addrs()[0];
    /// let client = std::thread::spawn(move || {
    ///     use std::io::Read;
    ///     let mut s = String::new();
    ///     std::net::TcpStream::connect(addr).unwrap().read_to_string(&mut s).unwrap();
    ///     s
    /// });
    /// while !client.is_finished() {
    ///     lp.run_once(Some(std::time::Duration::from_millis(10))).unwrap();
    /// }
    /// assert_eq!(client.join().unwrap(), "hello\n");
    /// ```
    #[track_caller]
    pub fn create_server<P: Protocol + 'static>(
        &self,
        addr: impl ToSocketAddrs,
        factory: impl FnMut() -> P + 'static,
    ) -> Task<io::Result<Server>> {
        self.create_server_with(addr, factory, ServerOptions::default())
    }

    /// [`create_server`](Loop::create_server) with [`ServerOptions`].
    #[track_caller]
    pub fn create_server_with<P: Protocol + 'static>(
        &self,
        addr: impl ToSocketAddrs,
        factory: impl FnMut() -> P + 'static,
        options: ServerOptions,
    ) -> Task<io::Result<Server>> {
        let target = addr.to_target();
        let factory = make_factory(factory);
        let lp = self.clone();
        self.create_task(async move {
            let addrs = resolve(&lp, target).await?;
            let socks = addrs
                .iter()
                .map(|a| bind_tcp(*a, &options).map(ListenSock::Tcp))
                .collect::<io::Result<Vec<_>>>()?;
            let server = Server::new(&lp, factory, None);
            server.inner.start(&lp, socks)?;
            Ok(server)
        })
    }

    /// Starts a server on the Unix socket `path` (asyncio's `create_unix_server`). A
    /// stale socket file at `path` is removed first; the file is removed again when
    /// the server closes.
    #[track_caller]
    pub fn create_unix_server<P: Protocol + 'static>(
        &self,
        path: impl AsRef<Path>,
        factory: impl FnMut() -> P + 'static,
    ) -> Task<io::Result<Server>> {
        let path = path.as_ref().to_path_buf();
        let factory = make_factory(factory);
        let lp = self.clone();
        self.create_task(async move {
            remove_stale_socket(&path);
            let listener = mio::net::UnixListener::bind(&path)?;
            // If starting fails, dropping the server removes the file it bound.
            let server = Server::new(&lp, factory, Some(SocketFile::bound(path)));
            server.inner.start(&lp, vec![ListenSock::Unix(listener)])?;
            Ok(server)
        })
    }
}

/// The socket file a Unix listener bound, to remove when it closes, but only if it is
/// still the same file (another listener may have replaced it at that path since).
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    /// (device, inode) of the file at bind time.
    id: Option<(u64, u64)>,
}

impl SocketFile {
    /// Remembers the file just bound at `path`.
    pub(crate) fn bound(path: PathBuf) -> SocketFile {
        use std::os::unix::fs::MetadataExt;
        let id = std::fs::symlink_metadata(&path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        SocketFile { path, id }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it is still the one we bound.
    pub(crate) fn remove(&self) {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now.is_some() && now == self.id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes `path` if it is a socket file (left by a server that died).
pub(crate) fn remove_stale_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        let _ = std::fs::remove_file(path);
    }
}
