//! `DatagramTransport`: a UDP endpoint driving a `DatagramProtocol`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};

use mio::Interest;

use super::addr::{ToSocketAddrs, resolve};
use super::guard::{drop_guarded, guarded};
use super::registration::{NetSource, Registration};
use super::{DatagramProtocol, READ_BUDGET};
use crate::Loop;
use crate::event_loop::WeakLoop;
use crate::source::{Readiness, SourceHandler, SourceId};
use crate::task::Task;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// A UDP endpoint seen from its [`DatagramProtocol`]: asyncio's `DatagramTransport`.
///
/// `sendto` sends at once, or queues the datagram if the socket's buffer is full and
/// sends it when the socket is writable. `Clone`: all clones are the same endpoint.
///
/// `connection_lost` comes exactly once (after `close`, `abort`, or when the loop
/// closes or is dropped); then the socket is closed and the transport lets go of its
/// protocol and its queue, so a protocol that keeps a clone of its transport is
/// dropped then. A panic in a protocol method is caught and reported to the loop's
/// exception handler; unlike a stream connection's, the endpoint stays open (as
/// asyncio's, where datagrams are independent of each other).
#[derive(Clone)]
pub struct DatagramTransport {
    inner: Rc<DgramInner>,
}

struct DgramInner {
    me: Weak<DgramInner>,
    lp: WeakLoop,
    sock: RefCell<Option<mio::net::UdpSocket>>,
    /// `Some` while registered with the loop (the loop's entry holds this endpoint).
    id: Cell<Option<SourceId>>,
    /// `Some` until `connection_lost` has run: then the endpoint lets go, which
    /// breaks the cycle protocol → transport → protocol.
    protocol: RefCell<Option<Rc<RefCell<dyn DatagramProtocol>>>>,
    /// The connected peer, if any (`sendto` without an address goes there).
    peer: Option<SocketAddr>,
    queue: RefCell<VecDeque<(Vec<u8>, Option<SocketAddr>)>>,
    /// The receive buffer, reused.
    rbuf: RefCell<Vec<u8>>,
    closing: Cell<bool>,
    /// `connection_lost` is scheduled.
    lost: Cell<bool>,
    /// `connection_lost` ran and the socket is closed.
    finished: Cell<bool>,
}

impl DgramInner {
    fn send_one(&self, data: &[u8], addr: Option<SocketAddr>) -> io::Result<usize> {
        match &*self.sock.borrow() {
            Some(s) => match addr {
                Some(a) => s.send_to(data, a),
                None => s.send(data),
            },
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "closed")),
        }
    }

    /// Calls the protocol's method `what`, the one way the endpoint calls its
    /// protocol: a panic is reported (the endpoint stays open). `None` if the
    /// protocol panicked or is gone (`connection_lost` ran). Never re-entrant: a
    /// call made while the protocol is borrowed is a reported panic, so `report`
    /// defers instead.
    fn call<R>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut dyn DatagramProtocol) -> R,
    ) -> Option<R> {
        let protocol = self.protocol.borrow().clone()?;
        guarded(
            &self.lp,
            format_args!("a datagram protocol's {what}"),
            || {
                let Ok(mut p) = protocol.try_borrow_mut() else {
                    panic!(
                        "the datagram protocol is already borrowed while its transport calls \
                     {what}: do not hold a borrow of it across an await or into the loop"
                    );
                };
                f(&mut *p)
            },
        )
    }

    fn report(&self, e: io::Error) {
        let busy = match &*self.protocol.borrow() {
            Some(p) => p.try_borrow_mut().is_err(),
            None => return,
        };
        if !busy {
            self.call("error_received", |p| p.error_received(e));
            return;
        }
        // Inside one of the protocol's own callbacks: tell it from the next iteration.
        if let (Some(lp), Some(me)) = (
            self.lp.upgrade().filter(|lp| !lp.is_closed()),
            self.me.upgrade(),
        ) {
            lp.call_soon(move |_| {
                if !me.finished.get() {
                    me.call("error_received", |p| p.error_received(e));
                }
            });
        }
    }

    fn flush(&self, lp: &Loop) {
        loop {
            let front = self.queue.borrow_mut().pop_front();
            let Some((data, addr)) = front else { break };
            match self.send_one(&data, addr) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.queue.borrow_mut().push_front((data, addr));
                    return;
                }
                Err(e) => self.report(e),
            }
        }
        if self.closing.get() {
            self.schedule_lost(lp);
        }
    }

    fn receive(&self, lp: &Loop) {
        let mut buf = std::mem::take(&mut *self.rbuf.borrow_mut());
        buf.resize(MAX_DATAGRAM, 0);
        self.receive_into(lp, &mut buf);
        *self.rbuf.borrow_mut() = buf;
    }

    fn receive_into(&self, lp: &Loop, buf: &mut [u8]) {
        for _ in 0..READ_BUDGET {
            if self.closing.get() {
                return;
            }
            let r = match &*self.sock.borrow() {
                Some(s) => s.recv_from(buf),
                None => return,
            };
            match r {
                Ok((n, addr)) => {
                    // A panic is reported; the datagrams still queued are read on
                    // (no new edge would announce them).
                    self.call("datagram_received", |p| {
                        p.datagram_received(&buf[..n], addr)
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.report(e),
            }
        }
        if let Some(me) = self.me.upgrade() {
            lp.call_soon(move |lp| me.receive(lp));
        }
    }

    fn schedule_lost(&self, lp: &Loop) {
        if self.lost.replace(true) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        if lp.is_closed() {
            me.finish(Some(lp));
        } else {
            lp.call_soon(move |lp| me.finish(Some(lp)));
        }
    }

    /// Calls `connection_lost` (once), then closes the socket (even if the protocol
    /// panicked) and lets go of the protocol and the queue. `lp` is `None` when the
    /// loop is gone (dropped without `close()`).
    fn finish(&self, lp: Option<&Loop>) {
        if self.finished.replace(true) {
            return;
        }
        self.closing.set(true);
        self.call("connection_lost", |p| p.connection_lost(None));
        let sock = self.sock.borrow_mut().take();
        let id = self.id.take();
        if let Some(mut sock) = sock {
            if let (Some(lp), Some(id)) = (lp, id) {
                lp.deregister_source(&mut sock, id);
            }
            drop(sock);
        }
        let queue = std::mem::take(&mut *self.queue.borrow_mut());
        drop(queue);
        let rbuf = std::mem::take(&mut *self.rbuf.borrow_mut());
        drop(rbuf);
        let protocol = self.protocol.borrow_mut().take();
        if let Some(p) = protocol {
            drop_guarded(&self.lp, "a datagram protocol's destructor", p);
        }
    }
}

impl SourceHandler for DgramInner {
    fn loop_closed(&self, lp: &Loop) {
        self.closing.set(true);
        self.queue.borrow_mut().clear();
        // Inline: a `finish` scheduled earlier was dropped with the loop's queue.
        self.lost.set(true);
        self.finish(Some(lp));
    }

    fn ready(&self, lp: &Loop, readiness: Readiness) {
        if self.finished.get() {
            return;
        }
        if readiness.is_writable() && !self.queue.borrow().is_empty() {
            self.flush(lp);
        }
        if readiness.is_readable() {
            self.receive(lp);
        }
    }
}

impl NetSource for DgramInner {
    fn forgotten(&self) {
        // Registered (`id`) and not over: the loop was dropped without `close()`.
        if !self.finished.get() && self.id.get().is_some() {
            self.lost.set(true);
            self.finish(None);
        }
    }
}

impl Drop for DgramInner {
    fn drop(&mut self) {
        // Never started (registering failed): the protocol goes with it.
        if let Some(p) = self.protocol.get_mut().take() {
            drop_guarded(&self.lp, "a datagram protocol's destructor", p);
        }
    }
}

impl DatagramTransport {
    /// Sends `data` to `addr`, or to the connected peer when `addr` is `None`.
    /// Errors are reported to the protocol's `error_received`. Ignored after `close`.
    pub fn sendto(&self, data: &[u8], addr: Option<SocketAddr>) {
        let inner = &self.inner;
        if inner.closing.get() {
            log::warn!("evloop: DatagramTransport::sendto after close() is ignored");
            return;
        }
        if addr.is_none() && inner.peer.is_none() {
            inner.report(io::Error::new(
                io::ErrorKind::InvalidInput,
                "sendto without an address on an unconnected endpoint",
            ));
            return;
        }
        if inner.queue.borrow().is_empty() {
            match inner.send_one(data, addr) {
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    inner.report(e);
                    return;
                }
            }
        }
        inner.queue.borrow_mut().push_back((data.to_vec(), addr));
    }

    /// Closes the endpoint once queued datagrams are sent; `connection_lost(None)`
    /// follows.
    pub fn close(&self) {
        let inner = &self.inner;
        if inner.closing.replace(true) {
            return;
        }
        if inner.queue.borrow().is_empty()
            && let Some(lp) = inner.lp.upgrade()
        {
            inner.schedule_lost(&lp);
        }
    }

    /// Closes at once, dropping queued datagrams.
    pub fn abort(&self) {
        let inner = &self.inner;
        inner.closing.set(true);
        inner.queue.borrow_mut().clear();
        if let Some(lp) = inner.lp.upgrade() {
            inner.schedule_lost(&lp);
        }
    }

    /// Whether the endpoint is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.get()
    }

    /// Bytes queued, waiting for the socket.
    pub fn write_buffer_size(&self) -> usize {
        self.inner.queue.borrow().iter().map(|(d, _)| d.len()).sum()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &*self.inner.sock.borrow() {
            Some(s) => s.local_addr(),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "closed")),
        }
    }

    /// The connected peer, if the endpoint was created with a remote address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.inner.peer)
            .field("closing", &self.is_closing())
            .finish()
    }
}

impl Loop {
    /// Opens a UDP endpoint (asyncio's `create_datagram_endpoint`): bound to `local`
    /// (or to an ephemeral port of the remote's family), and connected to `remote`
    /// when given. At least one of them is needed.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use evloop::net::{DatagramProtocol, DatagramTransport};
    /// struct Echo(Option<DatagramTransport>);
    /// impl DatagramProtocol for Echo {
    ///     fn connection_made(&mut self, t: &DatagramTransport) { self.0 = Some(t.clone()); }
    ///     fn datagram_received(&mut self, data: &[u8], from: SocketAddr) {
    ///         self.0.as_ref().unwrap().sendto(data, Some(from));
    ///     }
    /// }
    /// let lp = evloop::Loop::new().unwrap();
    /// let (t, _) = lp
    ///     .run_until_complete(lp.create_datagram_endpoint(Some("127.0.0.1:0"), None::<&str>, Echo(None)))
    ///     .unwrap().unwrap().unwrap();
    /// let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    /// client.send_to(b"ping", t.local_addr().unwrap()).unwrap();
    /// let waiter = std::thread::spawn(move || {
    ///     let mut buf = [0; 16];
    ///     let n = client.recv(&mut buf).unwrap();
    ///     buf[..n].to_vec()
    /// });
    /// while !waiter.is_finished() {
    ///     lp.run_once(Some(std::time::Duration::from_millis(10))).unwrap();
    /// }
    /// assert_eq!(waiter.join().unwrap(), b"ping");
    /// ```
    #[track_caller]
    pub fn create_datagram_endpoint<P: DatagramProtocol + 'static>(
        &self,
        local: Option<impl ToSocketAddrs>,
        remote: Option<impl ToSocketAddrs>,
        protocol: P,
    ) -> Task<io::Result<(DatagramTransport, Rc<RefCell<P>>)>> {
        let local = local.map(|a| a.to_target());
        let remote = remote.map(|a| a.to_target());
        let lp = self.clone();
        self.create_task(async move {
            let remote = match remote {
                Some(t) => Some(resolve(&lp, t).await?[0]),
                None => None,
            };
            let local = match local {
                Some(t) => resolve(&lp, t).await?[0],
                None => match remote {
                    Some(SocketAddr::V4(_)) => "0.0.0.0:0".parse().expect("literal"),
                    Some(SocketAddr::V6(_)) => "[::]:0".parse().expect("literal"),
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "create_datagram_endpoint needs a local or a remote address",
                        ));
                    }
                },
            };
            let sock = mio::net::UdpSocket::bind(local)?;
            if let Some(r) = remote {
                sock.connect(r)?;
            }
            let protocol = Rc::new(RefCell::new(protocol));
            let inner = Rc::new_cyclic(|me| DgramInner {
                me: me.clone(),
                lp: lp.downgrade(),
                sock: RefCell::new(Some(sock)),
                id: Cell::new(None),
                protocol: RefCell::new(Some(protocol.clone())),
                peer: remote,
                queue: RefCell::new(VecDeque::new()),
                rbuf: RefCell::new(Vec::new()),
                closing: Cell::new(false),
                lost: Cell::new(false),
                finished: Cell::new(false),
            });
            let id = {
                let mut s = inner.sock.borrow_mut();
                lp.register_source(
                    s.as_mut().expect("just stored"),
                    Interest::READABLE | Interest::WRITABLE,
                    Registration::handler(&inner),
                )?
            };
            inner.id.set(Some(id));
            let transport = DatagramTransport { inner };
            transport
                .inner
                .call("connection_made", |p| p.connection_made(&transport));
            Ok((transport, protocol))
        })
    }
}
