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
use slab::Slab;

use super::addr::{ToSocketAddrs, resolve};
use super::guard::{drop_guarded, guarded};
use super::registration::{NetSource, Registration};
use super::stream_sock::StreamSock;
use super::transport::TransportInner;
use super::{Protocol, READ_BUDGET, Transport};
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
    /// Accept connections as soon as the server is created (default true, as
    /// asyncio's). With false the socket is bound and listening (clients may connect
    /// and wait in the backlog), but nothing is accepted until
    /// [`Server::start_serving`] or [`Server::serve_forever`].
    pub start_serving: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            backlog: 100,
            reuse_address: true,
            reuse_port: false,
            start_serving: true,
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

    /// Sets [`start_serving`](ServerOptions::start_serving).
    pub fn start_serving(mut self, on: bool) -> Self {
        self.start_serving = on;
        self
    }
}

pub(super) type Factory = Box<dyn FnMut() -> Rc<RefCell<dyn Protocol>>>;

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
///
/// # Serving
/// A server made with [`ServerOptions::start_serving`] false listens but accepts
/// nothing until [`start_serving`](Server::start_serving) (or
/// [`serve_forever`](Server::serve_forever)); [`is_serving`](Server::is_serving) says
/// which. [`close_clients`](Server::close_clients) and
/// [`abort_clients`](Server::abort_clients) (Python 3.13) end the connections it
/// accepted, which `close()` leaves open.
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
    /// The transports of those connections, for `close_clients` / `abort_clients`
    /// (`None` for the moment a connection's transport is being made). An entry
    /// leaves when its connection is lost (or its transport could not be made).
    clients: RefCell<Slab<Option<Transport>>>,
    closed: Cell<bool>,
    /// The acceptors are registered: connections are accepted. False until
    /// `start_serving` for a server made with `ServerOptions::start_serving(false)`.
    serving: Cell<bool>,
    /// A `serve_forever` future is running (one at a time, as asyncio's).
    serving_forever: Cell<bool>,
    /// The `wait_closed` and `serve_forever` futures waiting, one entry each (see
    /// `WaitClosed::key`): all are woken when the server closes and when, closed, it
    /// loses its last connection; each checks what it waits for.
    waiters: RefCell<WaitQueue>,
    /// The socket file of a Unix server, removed on close.
    unix_path: Option<SocketFile>,
}

pub(super) enum ListenSock {
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
            if server.closed.get() || self.backing_off.get() || self.id.get().is_none() {
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

    /// Registers the listening socket with the loop: connections are accepted.
    fn register(self: &Rc<Self>, lp: &Loop) -> io::Result<()> {
        if self.id.get().is_some() {
            return Ok(());
        }
        let id = {
            let mut s = self.sock.borrow_mut();
            let handler = Registration::handler(self);
            match s.as_mut() {
                Some(ListenSock::Tcp(l)) => lp.register_source(l, Interest::READABLE, handler)?,
                Some(ListenSock::Unix(l)) => lp.register_source(l, Interest::READABLE, handler)?,
                None => return Ok(()),
            }
        };
        // Connections already waiting in the backlog need no call here: epoll reports
        // a source that is ready when it is added, edge-triggered or not.
        self.id.set(Some(id));
        Ok(())
    }

    /// Deregisters the listening socket (if registered), keeping it open.
    fn unregister(&self, lp: &Loop) {
        if let Some(id) = self.id.take()
            && let Some(sock) = &mut *self.sock.borrow_mut()
        {
            match sock {
                ListenSock::Tcp(l) => lp.deregister_source(l, id),
                ListenSock::Unix(l) => lp.deregister_source(l, id),
            }
        }
    }

    /// Stops listening: deregisters and closes the socket.
    fn stop(&self, lp: &Loop) {
        self.unregister(lp);
        drop(self.sock.borrow_mut().take());
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
        let key = self.clients.borrow_mut().insert(None);
        let server = Rc::downgrade(self);
        let on_lost = Box::new(move || {
            if let Some(s) = server.upgrade() {
                s.connection_done(key);
            }
        });
        match TransportInner::start(lp, sock, protocol, Some(on_lost)) {
            Ok(transport) => {
                if let Some(slot) = self.clients.borrow_mut().get_mut(key) {
                    *slot = Some(transport);
                }
            }
            Err(e) => {
                log::error!("evloop: cannot register an accepted connection: {e}");
                self.connection_done(key);
            }
        }
    }

    /// The connection of client slot `key` is over.
    fn connection_done(&self, key: usize) {
        let transport = self.clients.borrow_mut().try_remove(key);
        drop(transport); // after the borrow: never the last handle (its caller holds one)
        self.active.set(self.active.get() - 1);
        if self.closed.get() && self.active.get() == 0 {
            self.notify_waiters();
        }
    }

    /// Wakes every `wait_closed` and `serve_forever` future, to check its condition.
    fn notify_waiters(&self) {
        // Declared before the borrow: the wakers run after it ends.
        let mut wakeups = Wakeups::default();
        self.waiters.borrow_mut().notify_all(&mut wakeups);
    }

    /// Adds the listening sockets, and starts accepting on them if `serve`.
    pub(super) fn start(
        self: &Rc<Self>,
        lp: &Loop,
        socks: Vec<ListenSock>,
        serve: bool,
    ) -> io::Result<()> {
        for sock in socks {
            let acceptor = Rc::new_cyclic(|me| Acceptor {
                me: me.clone(),
                server: Rc::downgrade(self),
                sock: RefCell::new(Some(sock)),
                id: Cell::new(None),
                backing_off: Cell::new(false),
            });
            self.acceptors.borrow_mut().push(acceptor);
        }
        if serve {
            self.start_serving(lp)?;
        }
        Ok(())
    }

    /// Registers every acceptor; all or none.
    fn start_serving(&self, lp: &Loop) -> io::Result<()> {
        if self.closed.get() {
            return Err(io::Error::other("start_serving: the server is closed"));
        }
        if self.serving.get() {
            return Ok(());
        }
        let acceptors = self.acceptors.borrow().clone();
        for (i, a) in acceptors.iter().enumerate() {
            if let Err(e) = a.register(lp) {
                for a in &acceptors[..i] {
                    a.unregister(lp);
                }
                return Err(e);
            }
        }
        self.serving.set(true);
        Ok(())
    }

    /// The transports of the server's connections, cloned out of the borrow.
    fn clients(&self) -> Vec<Transport> {
        self.clients
            .borrow()
            .iter()
            .filter_map(|(_, t)| t.clone())
            .collect()
    }

    /// Closes the server: stops listening (with `lp` to deregister from, if the loop
    /// is still there), removes a Unix server's socket file, lets go of the factory.
    fn shut(&self, lp: Option<&Loop>) {
        if self.closed.replace(true) {
            return;
        }
        self.serving.set(false);
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
        self.notify_waiters();
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
    pub(super) fn new(lp: &Loop, factory: Factory, unix_path: Option<SocketFile>) -> Server {
        Server {
            inner: Rc::new(ServerInner {
                lp: lp.downgrade(),
                acceptors: RefCell::new(Vec::new()),
                factory: RefCell::new(Some(factory)),
                active: Cell::new(0),
                clients: RefCell::new(Slab::new()),
                closed: Cell::new(false),
                serving: Cell::new(false),
                serving_forever: Cell::new(false),
                waiters: RefCell::new(WaitQueue::default()),
                unix_path,
            }),
        }
    }

    /// Adds the listening sockets, and starts accepting on them if `serve`.
    pub(super) fn start(&self, lp: &Loop, socks: Vec<ListenSock>, serve: bool) -> io::Result<()> {
        self.inner.start(lp, socks, serve)
    }

    /// Stops listening (the listening sockets are closed; a Unix server's socket file
    /// is removed) and drops the protocol factory. Connections already accepted stay
    /// open. Closing twice is fine. A server also closes when its loop closes or is
    /// dropped: a closed loop serves nothing.
    pub fn close(&self) {
        let lp = self.inner.lp.upgrade();
        self.inner.shut(lp.as_ref());
    }

    /// Whether the server accepts connections: from creation (or from
    /// [`start_serving`](Server::start_serving), with
    /// [`ServerOptions::start_serving`] false) until it is closed.
    pub fn is_serving(&self) -> bool {
        self.inner.serving.get()
    }

    /// Starts accepting connections (asyncio's `start_serving`), for a server made
    /// with [`ServerOptions::start_serving`] false. Connections that queued in the
    /// backlog meanwhile are accepted from the next iteration. A server already
    /// serving: nothing happens.
    ///
    /// # Errors
    /// On a closed server (or a closed loop), or if the loop refuses the socket;
    /// then nothing is accepted.
    pub fn start_serving(&self) -> io::Result<()> {
        match self.inner.lp.upgrade() {
            Some(lp) if !lp.is_closed() => self.inner.start_serving(&lp),
            _ => Err(io::Error::other("start_serving: the loop is closed")),
        }
    }

    /// Serves until the server is closed (asyncio's `serve_forever`): starts serving
    /// if it was not, then completes once [`close`](Server::close) is called
    /// (connections may still be open: [`wait_closed`](Server::wait_closed) waits for
    /// them too). On a closed server it completes at once, with `Ok`.
    ///
    /// Dropping the future before then (a cancelled task) closes the server, as
    /// cancelling asyncio's `serve_forever` does.
    ///
    /// # Errors
    /// If another `serve_forever` future is running on this server, or starting to
    /// serve fails (see [`start_serving`](Server::start_serving)).
    pub fn serve_forever(&self) -> ServeForever {
        ServeForever {
            server: self.clone(),
            key: None,
            running: false,
        }
    }

    /// Closes every connection the server accepted that is still open (Python
    /// 3.13's `close_clients`): each transport's [`close`](super::Transport::close),
    /// which flushes its buffer first. Usually after [`close`](Server::close), so that
    /// no new ones come.
    pub fn close_clients(&self) {
        for t in self.inner.clients() {
            t.close();
        }
    }

    /// Aborts every connection the server accepted that is still open (Python 3.13's
    /// `abort_clients`): each transport's [`abort`](super::Transport::abort), which
    /// drops its unsent buffer.
    pub fn abort_clients(&self) {
        for t in self.inner.clients() {
            t.abort();
        }
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
        let done = inner.closed.get() && inner.active.get() == 0;
        inner.park(&mut this.key, cx, done)
    }
}

impl Drop for WaitClosed {
    fn drop(&mut self) {
        self.server.inner.unpark(&mut self.key);
    }
}

impl ServerInner {
    /// The waiting of a `wait_closed` or `serve_forever` future whose entry in
    /// `waiters` is `key`: leaves the queue and is ready if `done`, else keeps (or
    /// takes) one entry with the current waker.
    fn park(&self, key: &mut Option<usize>, cx: &Context<'_>, done: bool) -> Poll<()> {
        // Declared before the borrow: wakers are dropped after it ends.
        let mut wakeups = Wakeups::default();
        let mut waiters = self.waiters.borrow_mut();
        if done {
            if let Some(key) = key.take() {
                waiters.remove(key, &mut wakeups);
            }
            return Poll::Ready(());
        }
        match *key {
            Some(k) if !waiters.is_notified(k) => {
                waiters.register(k, cx.waker(), &mut wakeups);
            }
            stale => {
                if let Some(k) = stale {
                    waiters.remove(k, &mut wakeups);
                }
                *key = Some(waiters.push(cx.waker()));
            }
        }
        Poll::Pending
    }

    /// A waiting future goes away: its entry (and waker) with it.
    fn unpark(&self, key: &mut Option<usize>) {
        if let Some(k) = key.take() {
            let mut wakeups = Wakeups::default();
            self.waiters.borrow_mut().remove(k, &mut wakeups);
        }
    }
}

/// The future of [`Server::serve_forever`]: `io::Result<()>`.
#[derive(Debug)]
pub struct ServeForever {
    server: Server,
    /// Our entry in `ServerInner::waiters` while we wait; only we remove it.
    key: Option<usize>,
    /// We set `serving_forever` and have not completed: dropping us closes the server.
    running: bool,
}

impl Future for ServeForever {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let inner = &this.server.inner;
        if !this.running && !inner.closed.get() {
            if inner.serving_forever.get() {
                return Poll::Ready(Err(io::Error::other(
                    "serve_forever: another serve_forever is already running on this server",
                )));
            }
            this.server.start_serving()?;
            inner.serving_forever.set(true);
            this.running = true;
        }
        let r = inner.park(&mut this.key, cx, inner.closed.get());
        if r.is_ready() && std::mem::take(&mut this.running) {
            inner.serving_forever.set(false);
        }
        r.map(Ok)
    }
}

impl Drop for ServeForever {
    /// Cancelled while serving: the server closes (asyncio's `serve_forever`).
    fn drop(&mut self) {
        let inner = &self.server.inner;
        inner.unpark(&mut self.key);
        if std::mem::take(&mut self.running) {
            inner.serving_forever.set(false);
            self.server.close();
        }
    }
}

pub(super) fn make_factory<P: Protocol + 'static>(
    mut factory: impl FnMut() -> P + 'static,
) -> Factory {
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
            server.inner.start(&lp, socks, options.start_serving)?;
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
            server
                .inner
                .start(&lp, vec![ListenSock::Unix(listener)], true)?;
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
