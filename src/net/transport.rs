//! `Transport`: the writing half of a stream connection, and the reader that feeds its
//! `Protocol`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::{Rc, Weak};

use mio::Interest;

use super::consumed;
use super::guard::{drop_guarded, guarded};
use super::registration::{NetSource, Registration};
use super::stream_sock::StreamSock;
use super::{Protocol, READ_BUDGET, READ_SIZE};
use crate::Loop;
use crate::event_loop::WeakLoop;
use crate::source::{Readiness, SourceHandler, SourceId};

/// asyncio's default high-water mark of a write buffer.
const DEFAULT_HIGH: usize = 64 * 1024;

thread_local! {
    /// The buffer transports read into, shared by all the loop's transports: a read
    /// allocates nothing. Taken while in use; a nested read makes its own.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A stream connection (TCP or Unix) seen from its [`Protocol`]: asyncio's
/// `Transport`.
///
/// `Clone`: all clones are the same connection. `write` sends at once what the socket
/// takes and buffers the rest, drained whenever the socket is writable.
///
/// # Flow control
/// Synchronous, as asyncio's: the `write` that takes the buffer over its high-water
/// mark (64 KiB by default) calls the protocol's `pause_writing` before it returns,
/// and the drain that takes it to the low-water mark (16 KiB) calls `resume_writing`.
/// A `write` made inside one of the protocol's own callbacks cannot call back into
/// it; the protocol is then told right after that callback returns, before any other
/// callback runs, and [`is_writing_paused`](Transport::is_writing_paused) is already
/// true inside it. So "write until paused" stops at the mark:
///
/// ```
/// use evloop::net::{Protocol, Transport};
/// /// Sends 1 MiB, never buffering much more than the high-water mark.
/// struct Sender { t: Option<Transport>, left: usize }
/// impl Sender {
///     fn send_more(&mut self) {
///         let t = self.t.as_ref().unwrap();
///         while self.left > 0 && !t.is_writing_paused() {
///             let n = self.left.min(16 * 1024);
///             t.write(&vec![b'x'; n]);
///             self.left -= n;
///         }
///     }
/// }
/// impl Protocol for Sender {
///     fn connection_made(&mut self, t: &Transport) {
///         self.t = Some(t.clone());
///         self.send_more();
///     }
///     fn data_received(&mut self, _: &[u8]) {}
///     fn resume_writing(&mut self) { self.send_more(); }
/// }
/// ```
/// (If code outside the loop's callbacks holds a `RefMut` of the protocol while it
/// writes, the protocol cannot be called then: it is told from the next iteration.)
///
/// # End of a connection
/// Every way a connection ends (`close`, `abort`, EOF, peer reset, broken pipe, a
/// panic in a protocol method, the loop closing or being dropped) leads to exactly
/// one `connection_lost`, delivered through `call_soon` (inline while the loop
/// closes), after which the socket is closed and the transport lets go of its
/// protocol and its buffer (asyncio sets `_protocol = None`): a protocol that keeps a
/// clone of its transport is dropped then, not kept alive by the pair. Writing to a
/// closing transport is ignored (and logged once), never a panic.
///
/// # Panics in the protocol
/// A panic in any protocol method is caught, reported to the loop's exception
/// handler, and closes the connection at once (buffer dropped), as asyncio's
/// `_fatal_error`: `connection_lost` follows with an error saying which method
/// panicked. A panic inside `connection_lost` is reported too; the socket is closed
/// all the same.
#[derive(Clone)]
pub struct Transport {
    inner: Rc<TransportInner>,
}

pub(crate) struct TransportInner {
    me: Weak<TransportInner>,
    lp: WeakLoop,
    /// `None` once closed.
    sock: RefCell<Option<StreamSock>>,
    /// `Some` while registered with the loop (the loop's entry holds this transport).
    id: Cell<Option<SourceId>>,
    /// `Some` until the connection is over (`connection_lost` ran, or the transport
    /// ended without it): then the transport lets go, which breaks the cycle
    /// protocol → transport → protocol of a protocol that keeps its transport.
    protocol: RefCell<Option<Rc<RefCell<dyn Protocol>>>>,
    /// One of the protocol's methods is running: flow-control news waits for it to
    /// return (see `call`).
    in_callback: Cell<bool>,
    /// Bytes not yet written; `buf[start..]` is pending.
    buf: RefCell<Vec<u8>>,
    start: Cell<usize>,
    high: Cell<usize>,
    low: Cell<usize>,
    /// `close()`/`abort()` was called or the connection failed: no more reads or writes.
    closing: Cell<bool>,
    /// `connection_lost` is scheduled (it is called once).
    lost_scheduled: Cell<bool>,
    /// `connection_made` ran: only then is `connection_lost` due.
    made: Cell<bool>,
    lost: Cell<bool>,
    eof_requested: Cell<bool>,
    eof_sent: Cell<bool>,
    reading_paused: Cell<bool>,
    /// Data may be waiting that no event will announce again (edge-triggered): read
    /// it on `resume_reading`.
    read_pending: Cell<bool>,
    read_eof: Cell<bool>,
    /// The buffer went over the high-water mark and has not drained to the
    /// low-water mark since (`is_writing_paused`).
    protocol_paused: Cell<bool>,
    /// What the protocol was last told (`pause_writing` / `resume_writing`). Differs
    /// from `protocol_paused` only while the protocol cannot be told: inside one of
    /// its callbacks, or while user code holds a borrow of it.
    told_paused: Cell<bool>,
    /// A retry of `sync_flow` is scheduled (the protocol was borrowed elsewhere).
    flow_sync_scheduled: Cell<bool>,
    write_warned: Cell<bool>,
    /// Told when the connection is lost (a server counts its connections).
    on_lost: RefCell<Option<Box<dyn FnOnce()>>>,
    /// A reader that may take bytes straight into its own buffer (the streams').
    direct: RefCell<Option<Rc<dyn DirectReader>>>,
    /// `direct` asked for the next bytes (`want_direct`): reads ask it first, until
    /// it declines.
    direct_wanted: Cell<bool>,
}

/// A reader that can take bytes from the socket straight into its own buffer, with
/// no copy through the transport's read buffer: asyncio's `BufferedProtocol`, for
/// the crate's own streams. What it takes this way never goes to `data_received`.
pub(crate) trait DirectReader {
    /// If the reader wants the next bytes in its buffer: reads them from `sock`,
    /// takes them in (waking whoever waits for them) and returns the read's result
    /// with the room it had; `None` to have the transport read as usual.
    fn read_direct(&self, sock: &StreamSock) -> Option<(io::Result<usize>, usize)>;
}

impl TransportInner {
    /// Wraps a connected socket, registers it and schedules `connection_made`.
    pub(crate) fn start(
        lp: &Loop,
        sock: StreamSock,
        protocol: Rc<RefCell<dyn Protocol>>,
        on_lost: Option<Box<dyn FnOnce()>>,
    ) -> io::Result<Transport> {
        let inner = Rc::new_cyclic(|me| TransportInner {
            me: me.clone(),
            lp: lp.downgrade(),
            sock: RefCell::new(Some(sock)),
            id: Cell::new(None),
            protocol: RefCell::new(Some(protocol)),
            in_callback: Cell::new(false),
            buf: RefCell::new(Vec::new()),
            start: Cell::new(0),
            high: Cell::new(DEFAULT_HIGH),
            low: Cell::new(DEFAULT_HIGH / 4),
            closing: Cell::new(false),
            lost_scheduled: Cell::new(false),
            made: Cell::new(false),
            lost: Cell::new(false),
            eof_requested: Cell::new(false),
            eof_sent: Cell::new(false),
            reading_paused: Cell::new(false),
            read_pending: Cell::new(false),
            read_eof: Cell::new(false),
            protocol_paused: Cell::new(false),
            told_paused: Cell::new(false),
            flow_sync_scheduled: Cell::new(false),
            write_warned: Cell::new(false),
            on_lost: RefCell::new(on_lost),
            direct: RefCell::new(None),
            direct_wanted: Cell::new(false),
        });
        let id = {
            let mut sock = inner.sock.borrow_mut();
            let sock = sock.as_mut().expect("just stored");
            let handler = Registration::handler(&inner);
            lp.register_source(sock, Interest::READABLE | Interest::WRITABLE, handler)?
        };
        inner.id.set(Some(id));
        let transport = Transport {
            inner: inner.clone(),
        };
        let t = transport.clone();
        lp.call_soon(move |_| {
            if !t.inner.lost.get() {
                t.inner.made.set(true);
                t.inner.call("connection_made", |p| p.connection_made(&t));
            }
        });
        Ok(transport)
    }

    fn pending(&self) -> usize {
        self.buf.borrow().len() - self.start.get()
    }

    /// Calls the protocol's method `what`: the one way the transport calls its
    /// protocol. Then tells it the flow-control news that writes made inside the
    /// call produced, before anything else runs (asyncio's synchronous flow control).
    /// `None` if the connection is over or the method panicked.
    fn call<R>(&self, what: &'static str, f: impl FnOnce(&mut dyn Protocol) -> R) -> Option<R> {
        let r = self.invoke(what, f);
        self.sync_flow();
        r
    }

    /// Calls the protocol (never re-entrantly: `in_callback` is set meanwhile). A
    /// panic is reported and closes the connection at once with an error naming the
    /// method (there is nothing left to close after `connection_lost`).
    fn invoke<R>(&self, what: &'static str, f: impl FnOnce(&mut dyn Protocol) -> R) -> Option<R> {
        let protocol = self.protocol.borrow().clone()?;
        let was = self.in_callback.replace(true);
        let r = guarded(&self.lp, format_args!("a protocol's {what}"), || {
            let Ok(mut p) = protocol.try_borrow_mut() else {
                panic!(
                    "the protocol is already borrowed while its transport calls {what}: \
                     do not hold a borrow of it across an await or into the loop"
                );
            };
            f(&mut *p)
        });
        self.in_callback.set(was);
        if r.is_none() && what != "connection_lost" {
            self.fail(io::Error::other(format!("the protocol's {what} panicked")));
        }
        r
    }

    /// Tells the protocol the flow-control state it has not heard yet, in order. At
    /// once, unless one of its callbacks is running (`call` tells it when that
    /// returns) or code outside the loop's callbacks holds a borrow of it (then once,
    /// from the next iteration).
    fn sync_flow(&self) {
        if self.in_callback.get() {
            return;
        }
        while self.told_paused.get() != self.protocol_paused.get() && !self.lost.get() {
            let busy = match &*self.protocol.borrow() {
                Some(p) => p.try_borrow_mut().is_err(),
                None => return,
            };
            if busy {
                self.retry_sync_flow();
                return;
            }
            let pause = !self.told_paused.get();
            self.told_paused.set(pause);
            if pause {
                self.invoke("pause_writing", |p| p.pause_writing());
            } else {
                self.invoke("resume_writing", |p| p.resume_writing());
            }
        }
    }

    fn retry_sync_flow(&self) {
        if self.flow_sync_scheduled.get() {
            return; // the scheduled sync will see the latest state
        }
        if let (Some(lp), Some(me)) = (
            self.lp.upgrade().filter(|lp| !lp.is_closed()),
            self.me.upgrade(),
        ) {
            self.flow_sync_scheduled.set(true);
            lp.call_soon(move |_| {
                me.flow_sync_scheduled.set(false);
                me.sync_flow();
            });
        }
    }

    /// Reads and hands data to the protocol, up to the budget. Edge-triggered: a
    /// read shorter than the buffer means the socket was drained, so unless
    /// `until_blocked` (the event also reported a hang-up or error, or no event
    /// vouches for the state) it stops there rather than pay a syscall for the
    /// `WouldBlock`; new data makes a new edge.
    fn read_some(&self, lp: &Loop, until_blocked: bool) {
        self.read_pending.set(false);
        let mut buf = READ_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if buf.len() < READ_SIZE {
            buf.resize(READ_SIZE, 0);
        }
        let mut budget_left = true;
        for i in 0.. {
            if self.closing.get() || self.read_eof.get() {
                break;
            }
            if self.reading_paused.get() {
                self.read_pending.set(true);
                break;
            }
            if i == READ_BUDGET {
                budget_left = false;
                break;
            }
            let (r, room) = match &*self.sock.borrow() {
                Some(s) => match self.read_direct(s) {
                    Some((r, room)) => (r, Some(room)),
                    None => (s.read(&mut buf), None),
                },
                None => break,
            };
            match r {
                Ok(0) => {
                    self.eof_received(lp);
                    break;
                }
                Ok(n) => {
                    let room = match room {
                        Some(room) => room, // the reader has taken them in
                        None => {
                            // A panic closes the connection: the loop stops at `closing`.
                            self.call("data_received", |p| p.data_received(&buf[..n]));
                            buf.len()
                        }
                    };
                    if n < room && !until_blocked {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fatal(lp, e);
                    break;
                }
            }
        }
        READ_BUF.with(|b| *b.borrow_mut() = buf);
        if !budget_left {
            // Edge-triggered: no new event will say there is more. Go on next iteration.
            if let Some(me) = self.me.upgrade() {
                lp.call_soon(move |lp| me.read_some(lp, true));
            }
        }
    }

    /// A read by the direct reader, if it asked for the next bytes and still wants
    /// them.
    #[inline]
    fn read_direct(&self, sock: &StreamSock) -> Option<(io::Result<usize>, usize)> {
        if !self.direct_wanted.get() {
            return None;
        }
        let reader = self.direct.borrow().clone();
        let r = reader.and_then(|d| d.read_direct(sock));
        if r.is_none() {
            self.direct_wanted.set(false);
        }
        r
    }

    fn eof_received(&self, lp: &Loop) {
        self.read_eof.set(true);
        // `None`: it panicked, and the connection is closing already.
        if self.call("eof_received", |p| p.eof_received()) == Some(false) {
            self.close(lp);
        }
    }

    /// A protocol method panicked: the connection is over.
    fn fail(&self, e: io::Error) {
        match self.lp.upgrade() {
            Some(lp) => self.force_close(&lp, Some(e)),
            // No loop to schedule on: end it here.
            None => self.end_without_loop(),
        }
    }

    /// A socket error: the connection is over.
    fn fatal(&self, lp: &Loop, e: io::Error) {
        log::debug!("evloop: connection failed: {e}");
        self.force_close(lp, Some(e));
    }

    fn force_close(&self, lp: &Loop, err: Option<io::Error>) {
        self.closing.set(true);
        self.buf.borrow_mut().clear();
        self.start.set(0);
        self.schedule_lost(lp, err);
    }

    fn schedule_lost(&self, lp: &Loop, err: Option<io::Error>) {
        if self.lost_scheduled.replace(true) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        if lp.is_closed() {
            me.connection_lost(Some(lp), err);
        } else {
            lp.call_soon(move |lp| me.connection_lost(Some(lp), err));
        }
    }

    /// Calls `connection_lost` (once, if `connection_made` ran), then releases
    /// everything: as asyncio's `try: protocol.connection_lost() finally:
    /// sock.close()`, the socket is closed (and a server told) even if the protocol
    /// panics. `lp` is `None` when the loop is gone (dropped without `close()`).
    fn connection_lost(&self, lp: Option<&Loop>, err: Option<io::Error>) {
        if self.lost.replace(true) {
            return;
        }
        self.closing.set(true);
        if self.made.get() {
            self.invoke("connection_lost", |p| p.connection_lost(err));
        }
        self.release(lp);
    }

    /// Deregisters and closes the socket, tells the server, and lets go of the
    /// protocol and the buffer: nothing of the connection is kept after this.
    fn release(&self, lp: Option<&Loop>) {
        let sock = self.sock.borrow_mut().take();
        let id = self.id.take();
        if let Some(mut sock) = sock {
            if let (Some(lp), Some(id)) = (lp, id) {
                lp.deregister_source(&mut sock, id);
            }
            drop(sock);
        }
        let buf = std::mem::take(&mut *self.buf.borrow_mut());
        self.start.set(0);
        drop(buf);
        let direct = self.direct.borrow_mut().take();
        drop(direct);
        let on_lost = self.on_lost.borrow_mut().take();
        if let Some(f) = on_lost {
            f();
        }
        // Last: the protocol's destructor may use the transport (it finds it closed).
        let protocol = self.protocol.borrow_mut().take();
        if let Some(p) = protocol {
            drop_guarded(&self.lp, "a protocol's destructor", p);
        }
    }

    /// The loop is gone without having closed this connection: end it now, as
    /// `close()` of the loop would have.
    fn end_without_loop(&self) {
        self.closing.set(true);
        self.lost_scheduled.set(true);
        self.connection_lost(None, None);
    }

    fn write(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.closing.get() || self.eof_requested.get() {
            if !self.write_warned.replace(true) {
                log::warn!(
                    "evloop: Transport::write after close(), abort() or write_eof() is ignored"
                );
            }
            return;
        }
        let mut written = 0;
        if self.pending() == 0 {
            loop {
                let r = match &*self.sock.borrow() {
                    Some(s) => s.write(&data[written..]),
                    None => return,
                };
                match r {
                    Ok(n) => {
                        written += n;
                        if written == data.len() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if let Some(lp) = self.lp.upgrade() {
                            self.fatal(&lp, e);
                        }
                        return;
                    }
                }
            }
        }
        self.buf.borrow_mut().extend_from_slice(&data[written..]);
        self.maybe_pause_protocol();
    }

    fn maybe_pause_protocol(&self) {
        if self.pending() > self.high.get() && !self.protocol_paused.replace(true) {
            self.sync_flow();
        }
    }

    fn maybe_resume_protocol(&self) {
        if self.protocol_paused.get() && self.pending() <= self.low.get() {
            self.protocol_paused.set(false);
            self.sync_flow();
        }
    }

    /// Writes buffered bytes while the socket takes them.
    fn flush(&self, lp: &Loop) {
        loop {
            let pending = self.pending();
            if pending == 0 {
                break;
            }
            let r = {
                let buf = self.buf.borrow();
                match &*self.sock.borrow() {
                    Some(s) => s.write(&buf[self.start.get()..]),
                    None => return,
                }
            };
            match r {
                Ok(n) => consumed::consume(&mut self.buf.borrow_mut(), &self.start, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fatal(lp, e);
                    return;
                }
            }
        }
        self.maybe_resume_protocol();
        if self.pending() == 0 {
            self.after_drain(lp);
        }
    }

    /// The buffer is empty: finish a pending close or EOF.
    fn after_drain(&self, lp: &Loop) {
        if self.closing.get() {
            self.schedule_lost(lp, None);
        } else if self.eof_requested.get() && !self.eof_sent.replace(true) {
            let r = match &*self.sock.borrow() {
                Some(s) => s.shutdown(Shutdown::Write),
                None => Ok(()),
            };
            if let Err(e) = r {
                self.fatal(lp, e);
            }
        }
    }

    fn close(&self, lp: &Loop) {
        if self.closing.replace(true) {
            return;
        }
        if self.pending() == 0 {
            self.schedule_lost(lp, None);
        }
    }
}

impl SourceHandler for TransportInner {
    fn loop_closed(&self, lp: &Loop) {
        self.closing.set(true);
        self.buf.borrow_mut().clear();
        self.start.set(0);
        // Inline: a `connection_lost` scheduled earlier was dropped with the queue.
        // (It guards itself against a second call.)
        self.lost_scheduled.set(true);
        self.connection_lost(Some(lp), None);
    }

    fn ready(&self, lp: &Loop, readiness: Readiness) {
        if self.lost.get() {
            return;
        }
        if readiness.is_writable() && self.pending() > 0 {
            self.flush(lp);
        }
        if readiness.is_readable() && !self.closing.get() {
            if self.reading_paused.get() {
                self.read_pending.set(true);
            } else {
                let hangup = readiness.bits() & (Readiness::READ_CLOSED | Readiness::ERROR) != 0;
                self.read_some(lp, hangup);
            }
        }
    }
}

impl NetSource for TransportInner {
    fn forgotten(&self) {
        // Registered (`id`) and not over: the loop was dropped without `close()`.
        if !self.lost.get() && self.id.get().is_some() {
            self.end_without_loop();
        }
    }
}

impl Drop for TransportInner {
    fn drop(&mut self) {
        if !self.lost.get()
            && let Some(lp) = self.lp.upgrade()
            && lp.debug()
        {
            log::warn!("evloop: a transport was dropped without being closed");
        }
        // Never started (registering failed): the protocol goes with it.
        if let Some(p) = self.protocol.get_mut().take() {
            drop_guarded(&self.lp, "a protocol's destructor", p);
        }
    }
}

impl Transport {
    /// Writes `data`: at once what the socket takes, the rest buffered and sent when
    /// the socket is writable. Ignored (logged once) after `close`, `abort` or
    /// `write_eof`.
    ///
    /// If this takes the buffer over the high-water mark, the protocol hears
    /// `pause_writing` before this returns, or, when called from inside one of the
    /// protocol's callbacks, right after that callback returns; either way
    /// [`is_writing_paused`](Transport::is_writing_paused) is true at once.
    pub fn write(&self, data: &[u8]) {
        self.inner.write(data);
    }

    /// Closes the writing side once the buffer is drained (the peer reads EOF); the
    /// transport still reads.
    pub fn write_eof(&self) {
        let inner = &self.inner;
        if inner.closing.get() || inner.eof_requested.replace(true) {
            return;
        }
        if inner.pending() == 0
            && let Some(lp) = inner.lp.upgrade()
        {
            inner.after_drain(&lp);
        }
    }

    /// Lets `reader` take this connection's bytes straight into its buffer when it
    /// wants them there (see [`DirectReader`]); until the connection ends.
    pub(crate) fn set_direct_reader(&self, reader: Rc<dyn DirectReader>) {
        if !self.inner.lost.get() {
            *self.inner.direct.borrow_mut() = Some(reader);
        }
    }

    /// The direct reader wants the next bytes: reads ask it first, until it
    /// declines.
    #[inline]
    pub(crate) fn want_direct(&self) {
        self.inner.direct_wanted.set(true);
    }

    /// Whether `write_eof` is supported (it is, for TCP and Unix streams).
    pub fn can_write_eof(&self) -> bool {
        true
    }

    /// Closes the connection: stops reading, flushes the buffer, then closes the
    /// socket and calls `connection_lost(None)`.
    pub fn close(&self) {
        if let Some(lp) = self.inner.lp.upgrade() {
            self.inner.close(&lp);
        }
    }

    /// Closes at once, dropping the buffer; `connection_lost(None)` follows.
    pub fn abort(&self) {
        if let Some(lp) = self.inner.lp.upgrade() {
            self.inner.force_close(&lp, None);
        }
    }

    /// Whether the write buffer is over its high-water mark: true from the `write`
    /// that takes it over (already inside the callback that wrote, before
    /// `pause_writing` is delivered) until the buffer drains to the low-water mark
    /// (`resume_writing`). The condition of asyncio's "write until paused" loop.
    #[inline]
    pub fn is_writing_paused(&self) -> bool {
        self.inner.protocol_paused.get()
    }

    /// Whether the transport is closing or closed.
    #[inline]
    pub fn is_closing(&self) -> bool {
        self.inner.closing.get()
    }

    /// Stops calling `data_received` until [`resume_reading`](Transport::resume_reading).
    pub fn pause_reading(&self) {
        self.inner.reading_paused.set(true);
    }

    /// Resumes reading after [`pause_reading`](Transport::pause_reading).
    pub fn resume_reading(&self) {
        let inner = &self.inner;
        if !inner.reading_paused.replace(false) {
            return;
        }
        if inner.read_pending.get()
            && let (Some(lp), Some(me)) = (inner.lp.upgrade(), inner.me.upgrade())
            && !lp.is_closed()
        {
            lp.call_soon(move |lp| me.read_some(lp, true));
        }
    }

    /// Whether the transport is reading (not paused, not closing).
    pub fn is_reading(&self) -> bool {
        !self.inner.reading_paused.get() && !self.inner.closing.get()
    }

    /// Bytes buffered, not yet written to the socket.
    pub fn write_buffer_size(&self) -> usize {
        self.inner.pending()
    }

    /// The buffer's (low, high) water marks.
    pub fn write_buffer_limits(&self) -> (usize, usize) {
        (self.inner.low.get(), self.inner.high.get())
    }

    /// Sets the write buffer's water marks, with asyncio's defaults: no `high` means
    /// `4 * low`, or 64 KiB without `low` either; no `low` means `high / 4`.
    ///
    /// # Errors
    /// `InvalidInput` if `low > high`.
    pub fn set_write_buffer_limits(
        &self,
        high: Option<usize>,
        low: Option<usize>,
    ) -> io::Result<()> {
        let high = high.unwrap_or_else(|| low.map_or(DEFAULT_HIGH, |l| l.saturating_mul(4)));
        let low = low.unwrap_or(high / 4);
        if low > high {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("write buffer limits: low ({low}) must not exceed high ({high})"),
            ));
        }
        self.inner.high.set(high);
        self.inner.low.set(low);
        self.inner.maybe_pause_protocol();
        self.inner.maybe_resume_protocol();
        Ok(())
    }

    /// The peer's address (TCP only).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &*self.inner.sock.borrow() {
            Some(s) => s.peer_addr(),
            None => Err(closed()),
        }
    }

    /// The local address (TCP only).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &*self.inner.sock.borrow() {
            Some(s) => s.local_addr(),
            None => Err(closed()),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the transport is closed")
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("closing", &self.is_closing())
            .field("buffered", &self.write_buffer_size())
            .finish()
    }
}
