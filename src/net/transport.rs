//! `Transport`: the writing half of a stream connection, and the reader that feeds its
//! `Protocol`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::{Rc, Weak};

use mio::Interest;

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
/// takes and buffers the rest, drained whenever the socket is writable; the protocol
/// hears `pause_writing` when the buffer goes over its high-water mark (64 KiB by
/// default) and `resume_writing` when it drains below the low-water mark (16 KiB).
///
/// Every way a connection ends (`close`, `abort`, EOF, peer reset, broken pipe)
/// leads to exactly one `connection_lost`, delivered through `call_soon`, after
/// which the socket is closed. Writing to a closing transport is ignored (and logged
/// once), never a panic.
#[derive(Clone)]
pub struct Transport {
    inner: Rc<TransportInner>,
}

pub(crate) struct TransportInner {
    me: Weak<TransportInner>,
    lp: WeakLoop,
    /// `None` once closed.
    sock: RefCell<Option<StreamSock>>,
    id: Cell<Option<SourceId>>,
    protocol: Rc<RefCell<dyn Protocol>>,
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
    protocol_paused: Cell<bool>,
    /// What the protocol was last told (`pause_writing` / `resume_writing`).
    told_paused: Cell<bool>,
    flow_sync_scheduled: Cell<bool>,
    write_warned: Cell<bool>,
    /// Told when the connection is lost (a server counts its connections).
    on_lost: RefCell<Option<Box<dyn FnOnce()>>>,
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
            protocol,
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
        });
        let id = {
            let mut sock = inner.sock.borrow_mut();
            let sock = sock.as_mut().expect("just stored");
            lp.register_source(sock, Interest::READABLE | Interest::WRITABLE, inner.clone())?
        };
        inner.id.set(Some(id));
        let transport = Transport {
            inner: inner.clone(),
        };
        let t = transport.clone();
        lp.call_soon(move |_| {
            if !t.inner.lost.get() {
                t.inner.made.set(true);
                t.inner.protocol.borrow_mut().connection_made(&t);
            }
        });
        Ok(transport)
    }

    fn pending(&self) -> usize {
        self.buf.borrow().len() - self.start.get()
    }

    /// Tells the protocol the flow-control state it has not heard yet, in order: now
    /// if it is free, else (once) from the next iteration.
    fn sync_flow(&self) {
        if self.flow_sync_scheduled.get() {
            return; // the scheduled sync will see the latest state
        }
        let Ok(mut p) = self.protocol.try_borrow_mut() else {
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
            return;
        };
        while self.told_paused.get() != self.protocol_paused.get() {
            let pause = !self.told_paused.get();
            self.told_paused.set(pause);
            if pause {
                p.pause_writing();
            } else {
                p.resume_writing();
            }
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
            let r = match &*self.sock.borrow() {
                Some(s) => s.read(&mut buf),
                None => break,
            };
            match r {
                Ok(0) => {
                    self.eof_received(lp);
                    break;
                }
                Ok(n) => {
                    // A panicking protocol is a fatal error, as an exception in
                    // asyncio's data_received: close with an error, then let the panic
                    // go on to the loop's exception handler.
                    struct FatalOnPanic<'a>(&'a TransportInner, &'a Loop);
                    impl Drop for FatalOnPanic<'_> {
                        fn drop(&mut self) {
                            if std::thread::panicking() {
                                self.0.force_close(
                                    self.1,
                                    Some(io::Error::other("the protocol's data_received panicked")),
                                );
                            }
                        }
                    }
                    let guard = FatalOnPanic(self, lp);
                    self.protocol.borrow_mut().data_received(&buf[..n]);
                    std::mem::forget(guard);
                    if n < buf.len() && !until_blocked {
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

    fn eof_received(&self, lp: &Loop) {
        self.read_eof.set(true);
        let keep_open = self.protocol.borrow_mut().eof_received();
        if !keep_open {
            self.close(lp);
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
            me.connection_lost(lp, err);
        } else {
            lp.call_soon(move |lp| me.connection_lost(lp, err));
        }
    }

    fn connection_lost(&self, lp: &Loop, err: Option<io::Error>) {
        if self.lost.replace(true) {
            return;
        }
        // As asyncio's `try: protocol.connection_lost() finally: sock.close()`: the
        // socket is closed (and a server told) even if the protocol panics.
        struct Release<'a>(&'a TransportInner, &'a Loop);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.release(self.1);
            }
        }
        let _release = Release(self, lp);
        if self.made.get() {
            self.protocol.borrow_mut().connection_lost(err);
        }
    }

    /// Deregisters and closes the socket.
    fn release(&self, lp: &Loop) {
        let sock = self.sock.borrow_mut().take();
        if let (Some(mut sock), Some(id)) = (sock, self.id.take()) {
            lp.deregister_source(&mut sock, id);
        }
        let on_lost = self.on_lost.borrow_mut().take();
        if let Some(f) = on_lost {
            f();
        }
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
                Ok(n) => {
                    let start = self.start.get() + n;
                    let mut buf = self.buf.borrow_mut();
                    if start == buf.len() {
                        buf.clear();
                        self.start.set(0);
                    } else if start > buf.len() / 2 && start > 64 * 1024 {
                        buf.drain(..start);
                        self.start.set(0);
                    } else {
                        self.start.set(start);
                    }
                }
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
        self.connection_lost(lp, None);
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

impl Drop for TransportInner {
    fn drop(&mut self) {
        if !self.lost.get()
            && let Some(lp) = self.lp.upgrade()
            && lp.debug()
        {
            log::warn!("evloop: a transport was dropped without being closed");
        }
    }
}

impl Transport {
    /// Writes `data`: at once what the socket takes, the rest buffered and sent when
    /// the socket is writable. Ignored (logged once) after `close`, `abort` or
    /// `write_eof`.
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

    /// Whether the transport is closing or closed.
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
