//! Faults, all at once, across many connections of one server: peers that reset in
//! the middle of a large write, peers that never read (while the protocol streams
//! data honouring `pause_writing`), peers that half-close, protocols that panic, and
//! healthy connections echoing throughout. Then a loop closed with connections still
//! open whose protocols panic in `connection_lost` and in their destructors.
//!
//! The single-fault cases have their own tests (`net_close_paths.rs`,
//! `net_flow_control.rs`, `net_lifetimes.rs`, `panicking_destructors.rs`); this file
//! checks that they do not disturb each other, nor the healthy connections beside
//! them.
//!
//! Short form (CI): 2 waves of 10 connections of each fault. Long form
//! (`EVLOOP_SOAK=1`): 10 waves of 100.

#[path = "util/stress.rs"]
mod stress;
mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use evloop::Loop;
use evloop::net::{Protocol, Transport};
use stress::*;
use util::Drops;

/// The tests of this file count the process's fds: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const PATIENCE: Duration = Duration::from_secs(60);

/// The first byte a client sends names what its connection does.
const HEALTHY: u8 = b'h';
const RESET_MID_WRITE: u8 = b'r';
const NEVER_READS: u8 = b'n';
const HALF_CLOSE: u8 = b'c';
const PANIC_IN_DATA: u8 = b'p';
const PANIC_IN_EOF: u8 = b'e';
const KINDS: [u8; 6] = [
    HEALTHY,
    RESET_MID_WRITE,
    NEVER_READS,
    HALF_CLOSE,
    PANIC_IN_DATA,
    PANIC_IN_EOF,
];

/// What the streaming connections write at a time.
const CHUNK: usize = 16 * 1024;
/// The default high-water mark of a transport's write buffer.
const HIGH: usize = 64 * 1024;

/// What the server saw of one connection.
#[derive(Default)]
struct Conn {
    kind: Cell<u8>,
    lost: Cell<usize>,
    lost_with: Cell<Option<ErrorKind>>,
    paused: Cell<bool>,
    /// `pause_writing` came at least once.
    ever_paused: Cell<bool>,
    /// The largest write buffer seen right after a write.
    max_buffered: Cell<usize>,
    streamed: Cell<usize>,
    t: RefCell<Option<Transport>>,
}

impl Conn {
    /// Streams a chunk, then the next from a later callback, until paused or closed:
    /// the protocol honours `pause_writing` (at most one more chunk after the pause,
    /// whichever iteration it comes in).
    fn stream(self: &Rc<Self>, lp: &Loop) {
        let t = match &*self.t.borrow() {
            Some(t) if !t.is_closing() => t.clone(),
            _ => return,
        };
        if self.paused.get() {
            return;
        }
        t.write(&[b'x'; CHUNK]);
        self.streamed.set(self.streamed.get() + CHUNK);
        self.max_buffered
            .set(self.max_buffered.get().max(t.write_buffer_size()));
        let me = self.clone();
        lp.call_soon(move |lp| me.stream(lp));
    }
}

/// The server's protocol: does what the first byte says.
struct Faulty {
    conn: Rc<Conn>,
    lp: Loop,
    _token: util::DropToken,
}

impl Protocol for Faulty {
    fn connection_made(&mut self, t: &Transport) {
        *self.conn.t.borrow_mut() = Some(t.clone());
    }

    fn data_received(&mut self, mut data: &[u8]) {
        if self.conn.kind.get() == 0 {
            self.conn.kind.set(data[0]);
            data = &data[1..];
            match self.conn.kind.get() {
                RESET_MID_WRITE | NEVER_READS => self.conn.stream(&self.lp),
                PANIC_IN_DATA => panic!("boom in data_received"),
                _ => {}
            }
        }
        if self.conn.kind.get() == HEALTHY && !data.is_empty() {
            self.conn.t.borrow().as_ref().expect("made").write(data);
        }
    }

    fn eof_received(&mut self) -> bool {
        match self.conn.kind.get() {
            HALF_CLOSE => {
                // Half-closed by the peer: reply, then close.
                let t = self.conn.t.borrow().clone().expect("made");
                t.write(b"bye");
                t.close();
                true
            }
            PANIC_IN_EOF => panic!("boom in eof_received"),
            _ => false,
        }
    }

    fn pause_writing(&mut self) {
        self.conn.paused.set(true);
        self.conn.ever_paused.set(true);
    }

    fn resume_writing(&mut self) {
        self.conn.paused.set(false);
        self.conn.stream(&self.lp);
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.conn.lost.set(self.conn.lost.get() + 1);
        self.conn.lost_with.set(error.map(|e| e.kind()));
        // Let go of the transport: the test's own record must not keep it.
        self.conn.t.borrow_mut().take();
    }
}

/// A std client and what it has done.
struct Client {
    kind: u8,
    s: Option<TcpStream>,
    sent_at: Instant,
    got: Vec<u8>,
    eof: bool,
    round: u64,
}

impl Client {
    fn connect(addr: SocketAddr, kind: u8) -> Client {
        let s = if kind == RESET_MID_WRITE || kind == NEVER_READS {
            // A small window, so that the server has to buffer soon.
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_recv_buffer_size(4096).unwrap();
            s.connect(&addr.into()).unwrap();
            TcpStream::from(s)
        } else {
            TcpStream::connect(addr).unwrap()
        };
        s.set_nonblocking(true).unwrap();
        let first: &[u8] = if kind == HEALTHY { b"hping-0" } else { &[kind] };
        (&s).write_all(first).unwrap();
        if kind == HALF_CLOSE {
            (&s).write_all(b"some request").unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        }
        if kind == PANIC_IN_EOF {
            s.shutdown(Shutdown::Write).unwrap();
        }
        Client {
            kind,
            s: Some(s),
            sent_at: Instant::now(),
            got: Vec::new(),
            eof: false,
            round: 0,
        }
    }

    fn read_some(&mut self) {
        let Some(s) = &self.s else { return };
        let mut buf = [0u8; 64 * 1024];
        for _ in 0..64 {
            match (&*s).read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.eof = true; // reset: ended all the same
                    return;
                }
            }
        }
    }

    /// Drives the client one step; true once it is done with its connection.
    /// `may_reset`: the never-reading peers have made their server connections
    /// pause (so the bound on the buffer has been tested) and may reset now.
    fn step(&mut self, may_reset: bool) -> bool {
        match self.kind {
            HEALTHY => {
                self.read_some();
                let want = format!("ping-{}", self.round).into_bytes();
                if self.got.len() >= want.len() {
                    assert_eq!(self.got, want, "a healthy connection's echo");
                    self.got.clear();
                    self.round += 1;
                    let next = format!("ping-{}", self.round);
                    self.s.as_ref().unwrap().write_all(next.as_bytes()).unwrap();
                }
                false
            }
            RESET_MID_WRITE => {
                self.read_some();
                if self.got.len() >= 64 * 1024 && self.s.is_some() {
                    let s = self.s.take().unwrap();
                    socket2::SockRef::from(&s)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                    drop(s); // RST in the middle of the server's stream
                }
                self.s.is_none()
            }
            NEVER_READS => {
                // Never reads; resets once the server had to pause (or after 20 s).
                let patience_over = self.sent_at.elapsed() > Duration::from_secs(20);
                if (may_reset || patience_over) && self.s.is_some() {
                    let s = self.s.take().unwrap();
                    socket2::SockRef::from(&s)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                    drop(s);
                }
                self.s.is_none()
            }
            HALF_CLOSE => {
                self.read_some();
                if self.eof {
                    assert_eq!(self.got, b"bye", "the reply to a half-closed peer");
                    self.s = None;
                }
                self.s.is_none()
            }
            _ => {
                // The panicking ones: the server closes (or the client gives up).
                self.read_some();
                if self.eof || self.sent_at.elapsed() > Duration::from_millis(500) {
                    self.s = None;
                }
                self.s.is_none()
            }
        }
    }
}

/// Connects a client of each kind, running `lp` between small batches so that the
/// server accepts as they come and its backlog never overflows.
fn connect_all(lp: &Loop, addr: SocketAddr, kinds: &[u8]) -> Vec<Client> {
    let mut out = Vec::with_capacity(kinds.len());
    for (i, &k) in kinds.iter().enumerate() {
        out.push(Client::connect(addr, k));
        if i % 16 == 15 {
            lp.run_once(Some(Duration::from_millis(1))).unwrap();
        }
    }
    out
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// Every fault kind but a panic in `eof_received`, whose fix is on its way.
#[test]
fn mixed_faults_end_each_connection_once_and_spare_the_healthy_ones() {
    mixed_faults(&KINDS[..KINDS.len() - 1]);
}

/// The same with protocols that panic in `eof_received` among them (it used to leave
/// the connection open for ever).
#[test]
fn mixed_faults_with_panics_in_eof_received() {
    mixed_faults(&KINDS);
}

/// Keeps the expected panics ("boom in ...", caught and reported by the loop) from
/// printing a backtrace each; any other panic prints as usual.
fn quiet_booms() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
            if !msg.is_some_and(|m| m.starts_with("boom in")) {
                default(info);
            }
        }));
    });
}

/// Runs waves of connections of every kind in `kinds` (the first is `HEALTHY`).
fn mixed_faults(kinds: &[u8]) {
    assert_eq!(kinds[0], HEALTHY);
    quiet_booms();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (waves, per_kind) = if under_valgrind() {
        (1, 2)
    } else {
        scale((2, 10), (10, 100))
    };
    raise_nofile(4 * (per_kind as u64 * kinds.len() as u64) + 256);
    let fds_start = open_fds();
    let lp = Loop::new().unwrap();
    let reports = Rc::new(RefCell::new(Vec::<String>::new()));
    let r2 = reports.clone();
    lp.set_exception_handler(move |_, ctx| r2.borrow_mut().push(ctx.to_string()));
    let conns: Rc<RefCell<Vec<Rc<Conn>>>> = Rc::default();
    let drops = Drops::new();
    let (c2, d2, l2) = (conns.clone(), drops.clone(), lp.clone());
    let server = lp
        .run_until_complete(lp.create_server("127.0.0.1:0", move || {
            let conn = Rc::new(Conn::default());
            c2.borrow_mut().push(conn.clone());
            Faulty {
                conn,
                lp: l2.clone(),
                _token: d2.token(),
            }
        }))
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = server.local_addrs()[0];

    // Healthy connections live through every wave.
    let mut healthy = connect_all(&lp, addr, &vec![HEALTHY; per_kind]);
    let deadline = Instant::now() + PATIENCE * waves;
    for wave in 0..waves {
        let wave_kinds: Vec<u8> = kinds[1..]
            .iter()
            .flat_map(|&k| (0..per_kind).map(move |_| k))
            .collect();
        let mut faulty = connect_all(&lp, addr, &wave_kinds);
        let rounds_before: u64 = healthy.iter().map(|c| c.round).sum();
        loop {
            assert!(Instant::now() < deadline, "wave {wave} does not end");
            lp.run_once(Some(Duration::from_millis(5))).unwrap();
            for c in &mut healthy {
                c.step(false);
            }
            let may_reset = {
                let conns = conns.borrow();
                let never: Vec<_> = conns
                    .iter()
                    .filter(|c| c.kind.get() == NEVER_READS && c.lost.get() == 0)
                    .collect();
                never.len() == per_kind && never.iter().all(|c| c.ever_paused.get())
            };
            let mut done = 0;
            for c in &mut faulty {
                if c.step(may_reset) {
                    done += 1;
                }
            }
            if done == faulty.len() {
                break;
            }
        }
        let rounds_after: u64 = healthy.iter().map(|c| c.round).sum();
        assert!(
            healthy.iter().all(|c| c.round > 0) && rounds_after > rounds_before,
            "wave {wave}: the healthy connections made no progress beside the faults"
        );
    }
    // The healthy ones close cleanly; then every server connection has ended.
    drop(healthy);
    let n = per_kind + per_kind * (kinds.len() - 1) * waves as usize;
    let start = Instant::now();
    while conns.borrow().iter().any(|c| c.lost.get() == 0) {
        assert!(
            start.elapsed() < PATIENCE,
            "connections never end: {:?}",
            conns
                .borrow()
                .iter()
                .filter(|c| c.lost.get() == 0)
                .map(|c| c.kind.get() as char)
                .collect::<String>()
        );
        lp.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    let conns = conns.borrow();
    assert_eq!(conns.len(), n, "connections the server accepted");
    let mut per_kind_seen = std::collections::HashMap::new();
    for (i, c) in conns.iter().enumerate() {
        let kind = c.kind.get() as char;
        *per_kind_seen.entry(kind).or_insert(0) += 1;
        assert_eq!(
            c.lost.get(),
            1,
            "connection {i} ({kind}): connection_lost once"
        );
        match c.kind.get() {
            HEALTHY | HALF_CLOSE => assert_eq!(
                c.lost_with.get(),
                None,
                "connection {i} ({kind}): a clean end"
            ),
            RESET_MID_WRITE | NEVER_READS => {
                assert!(
                    matches!(
                        c.lost_with.get(),
                        Some(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
                    ),
                    "connection {i} ({kind}): ended by a reset, got {:?}",
                    c.lost_with.get()
                );
                if c.kind.get() == NEVER_READS {
                    assert!(
                        c.ever_paused.get(),
                        "connection {i} ({kind}): a peer that never reads never paused it"
                    );
                }
                // Honouring pause_writing keeps the buffer at the mark (plus the
                // chunk that crossed it, and one more if the pause came an iteration
                // late), however long the peer does not read.
                assert!(
                    c.max_buffered.get() <= HIGH + 2 * CHUNK,
                    "connection {i} ({kind}): {} bytes buffered, high-water mark {HIGH}",
                    c.max_buffered.get()
                );
            }
            _ => {}
        }
    }
    let never: Vec<&Rc<Conn>> = conns
        .iter()
        .filter(|c| c.kind.get() == NEVER_READS)
        .collect();
    let streamed: usize = never.iter().map(|c| c.streamed.get()).sum();
    println!(
        "figure: faults: {waves} waves, {per_kind} connections of each of {} kinds: each ended \
         once; never-reading peers were sent {:.1} MiB in all, at most {} KiB buffered each",
        kinds.len(),
        mib(streamed),
        never
            .iter()
            .map(|c| c.max_buffered.get())
            .max()
            .unwrap_or(0)
            / 1024
    );
    let panicking = kinds
        .iter()
        .filter(|&&k| k == PANIC_IN_DATA || k == PANIC_IN_EOF)
        .count();
    let panics = per_kind * panicking * waves as usize;
    let reports = reports.borrow();
    assert_eq!(
        reports.iter().filter(|r| r.contains("boom in")).count(),
        panics,
        "one report per panic: {reports:#?}"
    );
    assert_eq!(reports.len(), panics, "nothing else reported: {reports:#?}");
    drop(conns);
    server.close();
    drop(server);
    lp.close().unwrap();
    drop(lp);
    assert_eq!(open_fds(), fds_start, "fds left open");
}

/// The loop closed with connections still open: their protocols hear
/// `connection_lost` from `close()`; those that panic there, or in their destructor,
/// are each reported once; `close()` finishes (no abort), every connection's socket
/// is closed (the peers see it), and every protocol is dropped once.
#[test]
fn close_reports_panics_in_connection_lost_and_destructors_of_open_connections() {
    struct Doomed {
        t: Option<Transport>,
        made: Rc<Cell<usize>>,
        lost: Rc<Cell<usize>>,
        panic_in_lost: bool,
        panic_in_drop: bool,
        _token: util::DropToken,
    }
    impl Protocol for Doomed {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
            self.made.set(self.made.get() + 1);
        }
        fn data_received(&mut self, _: &[u8]) {}
        fn connection_lost(&mut self, _: Option<io::Error>) {
            self.lost.set(self.lost.get() + 1);
            if self.panic_in_lost {
                panic!("boom in connection_lost");
            }
        }
    }
    impl Drop for Doomed {
        fn drop(&mut self) {
            if self.panic_in_drop {
                panic!("boom in Drop");
            }
        }
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    quiet_booms();
    let n = 12;
    let lp = Loop::new().unwrap();
    let reports = Rc::new(RefCell::new(Vec::<String>::new()));
    let r2 = reports.clone();
    lp.set_exception_handler(move |_, ctx| r2.borrow_mut().push(ctx.to_string()));
    let drops = Drops::new();
    let accepted = Rc::new(Cell::new(0usize));
    let made = Rc::new(Cell::new(0usize));
    let lost = Rc::new(Cell::new(0usize));
    let (d2, a2, m2, l2) = (drops.clone(), accepted.clone(), made.clone(), lost.clone());
    let server = lp
        .run_until_complete(lp.create_server("127.0.0.1:0", move || {
            let i = a2.get();
            a2.set(i + 1);
            Doomed {
                t: None,
                made: m2.clone(),
                lost: l2.clone(),
                panic_in_lost: i % 3 == 0,
                panic_in_drop: i % 3 == 1,
                _token: d2.token(),
            }
        }))
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = server.local_addrs()[0];
    let peers: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let start = Instant::now();
    while made.get() < n {
        assert!(start.elapsed() < PATIENCE, "not all connection_made");
        lp.run_once(Some(Duration::from_millis(5))).unwrap();
    }
    drop(server);
    lp.close().expect("close() with panicking protocols");
    assert_eq!(
        lost.get(),
        n,
        "close() calls connection_lost once a connection"
    );
    let reports = reports.borrow();
    let count = |what: &str| reports.iter().filter(|r| r.contains(what)).count();
    assert_eq!(count("boom in connection_lost"), n / 3, "{reports:#?}");
    assert_eq!(count("boom in Drop"), n / 3, "{reports:#?}");
    assert_eq!(drops.made(), n);
    assert_eq!(drops.alive(), 0, "protocols never dropped");
    for (i, p) in peers.iter().enumerate() {
        p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        match (&*p).read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            r => panic!("peer {i}: the server's socket is still open ({r:?})"),
        }
    }
}
