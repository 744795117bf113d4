//! Helpers for the networking tests: a recording `Protocol` and `DatagramProtocol`,
//! loop-driving helpers with deadlines (a broken loop fails a test instead of hanging
//! it), non-blocking std peers, temporary Unix socket paths and an fd counter.
//!
//! Include it as `#[path = "util/net.rs"] mod net_util;`.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use evloop::Loop;
use evloop::net::{DatagramProtocol, DatagramTransport, Protocol, Transport};

/// How long any wait in these tests may take before it counts as a hang. Generous:
/// the machine has two shared cores and runs other tests at the same time.
pub const PATIENCE: Duration = Duration::from_secs(20);

thread_local! {
    /// What the exception handler of loops made by [`new_loop`] heard: a protocol
    /// callback that panics (a failed assertion in a [`Recorder`]) lands here.
    static LOOP_ERRORS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Creates a loop whose exception handler records what it hears, so that a panic in
/// a callback (an assertion inside a protocol) fails the test at the next
/// [`run_until`] / [`run_for`] / [`block_on`] / [`check_loop_errors`].
pub fn new_loop() -> Loop {
    let lp = Loop::new().expect("Loop::new");
    lp.set_exception_handler(|_, ctx| {
        let msg = format!(
            "{} {}",
            ctx.message(),
            ctx.panic_message().unwrap_or_default()
        );
        LOOP_ERRORS.with(|e| e.borrow_mut().push(msg));
    });
    lp
}

/// Fails if a callback of a loop made by [`new_loop`] panicked.
#[track_caller]
pub fn check_loop_errors() {
    let errors = LOOP_ERRORS.with(|e| std::mem::take(&mut *e.borrow_mut()));
    assert!(
        errors.is_empty(),
        "the loop's exception handler was called: {errors:#?}"
    );
}

/// Runs iterations of `lp` (each blocking at most 5 ms) until `cond` holds.
///
/// # Panics
/// After [`PATIENCE`], naming `what`; or if a callback panicked.
#[track_caller]
pub fn run_until(lp: &Loop, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        check_loop_errors();
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for: {what}"
        );
        lp.run_once(Some(Duration::from_millis(5)))
            .expect("run_once");
    }
    check_loop_errors();
}

/// Runs iterations of `lp` for about `d` (for "nothing happens" checks).
#[track_caller]
pub fn run_for(lp: &Loop, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        lp.run_once(Some(Duration::from_millis(5)))
            .expect("run_once");
    }
    check_loop_errors();
}

/// Runs `n` non-blocking iterations.
#[track_caller]
pub fn run_iterations(lp: &Loop, n: usize) {
    for _ in 0..n {
        lp.run_once(Some(Duration::ZERO)).expect("run_once");
    }
    check_loop_errors();
}

/// Runs `fut` on `lp`, failing the test if it takes longer than [`PATIENCE`].
#[track_caller]
pub fn block_on<F: std::future::Future>(lp: &Loop, fut: F) -> F::Output {
    let out = lp
        .run_until_complete(evloop::timeout(PATIENCE, fut))
        .expect("run_until_complete")
        .unwrap_or_else(|_| panic!("the future did not complete within {PATIENCE:?}"));
    check_loop_errors();
    out
}

/// A deterministic payload of `n` bytes (not a repeating short pattern, so that a
/// reordering or a lost chunk shows).
pub fn payload(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Compares two byte strings without dumping megabytes on failure.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} bytes, want {}; first difference at byte {first}",
            got.len(),
            want.len()
        );
    }
}

// ---------------------------------------------------------------------------------
// A recording Protocol.

/// What a [`Recorder`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Made,
    /// `data_received` with this many bytes.
    Data(usize),
    Eof,
    /// `connection_lost`, with the error's kind.
    Lost(Option<io::ErrorKind>),
    Pause,
    Resume,
}

/// The shared record of one connection, readable by the test while the protocol
/// lives inside the transport.
#[derive(Clone, Default)]
pub struct Probe(pub Rc<ProbeInner>);

#[derive(Default)]
pub struct ProbeInner {
    pub events: RefCell<Vec<Ev>>,
    pub data: RefCell<Vec<u8>>,
    pub transport: RefCell<Option<Transport>>,
    /// The full error given to `connection_lost`, for its message.
    pub lost_error: RefCell<Option<String>>,
    /// What `eof_received` returns.
    pub keep_open: Cell<bool>,
    /// Echo every byte back.
    pub echo: Cell<bool>,
    /// Flow control as asyncio's streams do it: `pause_reading` on `pause_writing`,
    /// `resume_reading` on `resume_writing`.
    pub flow: Cell<bool>,
}

impl Probe {
    pub fn new() -> Probe {
        Probe::default()
    }

    /// A probe whose protocol echoes.
    pub fn echo() -> Probe {
        let p = Probe::new();
        p.0.echo.set(true);
        p
    }

    /// A probe whose `eof_received` returns `keep_open`.
    pub fn keep_open(self, keep_open: bool) -> Probe {
        self.0.keep_open.set(keep_open);
        self
    }

    /// The protocol that records into this probe.
    pub fn protocol(&self) -> Recorder {
        Recorder(self.clone())
    }

    pub fn events(&self) -> Vec<Ev> {
        self.0.events.borrow().clone()
    }

    /// Events without the `Data` entries.
    pub fn lifecycle(&self) -> Vec<Ev> {
        self.events()
            .into_iter()
            .filter(|e| !matches!(e, Ev::Data(_)))
            .collect()
    }

    pub fn count(&self, ev: &Ev) -> usize {
        self.0.events.borrow().iter().filter(|e| *e == ev).count()
    }

    pub fn data(&self) -> Vec<u8> {
        self.0.data.borrow().clone()
    }

    pub fn data_len(&self) -> usize {
        self.0.data.borrow().len()
    }

    pub fn transport(&self) -> Transport {
        self.0
            .transport
            .borrow()
            .clone()
            .expect("connection_made has not run")
    }

    pub fn made(&self) -> bool {
        self.0.transport.borrow().is_some()
    }

    pub fn saw_eof(&self) -> bool {
        self.count(&Ev::Eof) > 0
    }

    /// How many times `connection_lost` ran.
    pub fn lost_count(&self) -> usize {
        self.0
            .events
            .borrow()
            .iter()
            .filter(|e| matches!(e, Ev::Lost(_)))
            .count()
    }

    pub fn is_lost(&self) -> bool {
        self.lost_count() > 0
    }

    /// The error kind `connection_lost` was given (`None` for a clean close).
    ///
    /// # Panics
    /// If `connection_lost` has not run.
    pub fn lost_with(&self) -> Option<io::ErrorKind> {
        self.0
            .events
            .borrow()
            .iter()
            .find_map(|e| match e {
                Ev::Lost(k) => Some(*k),
                _ => None,
            })
            .expect("connection_lost has not run")
    }

    pub fn lost_message(&self) -> Option<String> {
        self.0.lost_error.borrow().clone()
    }
}

/// A protocol that records every callback into its [`Probe`] (and echoes if asked).
pub struct Recorder(pub Probe);

impl Protocol for Recorder {
    fn connection_made(&mut self, transport: &Transport) {
        let p = &self.0.0;
        assert!(
            p.events.borrow().is_empty(),
            "connection_made must come first, got {:?} before it",
            p.events.borrow()
        );
        p.events.borrow_mut().push(Ev::Made);
        *p.transport.borrow_mut() = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        let p = &self.0.0;
        assert!(!data.is_empty(), "data_received with an empty slice");
        {
            let ev = p.events.borrow();
            assert_eq!(ev.first(), Some(&Ev::Made), "data before connection_made");
            assert!(
                !ev.iter().any(|e| matches!(e, Ev::Eof | Ev::Lost(_))),
                "data_received after eof_received or connection_lost: {ev:?}"
            );
        }
        p.events.borrow_mut().push(Ev::Data(data.len()));
        p.data.borrow_mut().extend_from_slice(data);
        if p.echo.get() {
            p.transport.borrow().as_ref().expect("made").write(data);
        }
    }

    fn eof_received(&mut self) -> bool {
        let p = &self.0.0;
        assert_eq!(p.events.borrow().first(), Some(&Ev::Made));
        assert_eq!(
            self.0.count(&Ev::Eof),
            0,
            "eof_received called twice: {:?}",
            self.0.lifecycle()
        );
        p.events.borrow_mut().push(Ev::Eof);
        p.keep_open.get()
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        let p = &self.0.0;
        *p.lost_error.borrow_mut() = error.as_ref().map(|e| e.to_string());
        p.events
            .borrow_mut()
            .push(Ev::Lost(error.as_ref().map(io::Error::kind)));
    }

    fn pause_writing(&mut self) {
        let p = &self.0.0;
        p.events.borrow_mut().push(Ev::Pause);
        if p.flow.get() {
            p.transport.borrow().as_ref().expect("made").pause_reading();
        }
    }

    fn resume_writing(&mut self) {
        let p = &self.0.0;
        p.events.borrow_mut().push(Ev::Resume);
        if p.flow.get() {
            p.transport
                .borrow()
                .as_ref()
                .expect("made")
                .resume_reading();
        }
    }
}

/// A server-side factory of [`Recorder`]s; every accepted connection's probe is kept
/// in order.
#[derive(Clone, Default)]
pub struct Probes {
    pub list: Rc<RefCell<Vec<Probe>>>,
    echo: bool,
    keep_open: bool,
    flow: bool,
}

impl Probes {
    pub fn new() -> Probes {
        Probes::default()
    }

    pub fn echo() -> Probes {
        Probes {
            echo: true,
            ..Probes::default()
        }
    }

    pub fn keep_open(mut self, on: bool) -> Probes {
        self.keep_open = on;
        self
    }

    /// Protocols that pause reading while their writing is paused.
    pub fn flow_control(mut self) -> Probes {
        self.flow = true;
        self
    }

    /// The protocol factory for `create_server`.
    pub fn factory(&self) -> impl FnMut() -> Recorder + 'static {
        let me = self.clone();
        move || {
            let p = if me.echo { Probe::echo() } else { Probe::new() };
            p.0.keep_open.set(me.keep_open);
            p.0.flow.set(me.flow);
            me.list.borrow_mut().push(p.clone());
            p.protocol()
        }
    }

    pub fn len(&self) -> usize {
        self.list.borrow().len()
    }

    pub fn get(&self, i: usize) -> Probe {
        self.list.borrow()[i].clone()
    }
}

// ---------------------------------------------------------------------------------
// A recording DatagramProtocol.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DgEv {
    Made,
    Datagram(Vec<u8>, SocketAddr),
    Error(io::ErrorKind),
    Lost(Option<io::ErrorKind>),
}

#[derive(Clone, Default)]
pub struct DgProbe(pub Rc<DgProbeInner>);

#[derive(Default)]
pub struct DgProbeInner {
    pub events: RefCell<Vec<DgEv>>,
    pub transport: RefCell<Option<DatagramTransport>>,
    /// Send every datagram back to its sender.
    pub echo: Cell<bool>,
}

impl DgProbe {
    pub fn new() -> DgProbe {
        DgProbe::default()
    }

    pub fn echo() -> DgProbe {
        let p = DgProbe::new();
        p.0.echo.set(true);
        p
    }

    pub fn protocol(&self) -> DgRecorder {
        DgRecorder(self.clone())
    }

    pub fn events(&self) -> Vec<DgEv> {
        self.0.events.borrow().clone()
    }

    pub fn datagrams(&self) -> Vec<(Vec<u8>, SocketAddr)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                DgEv::Datagram(d, a) => Some((d, a)),
                _ => None,
            })
            .collect()
    }

    pub fn errors(&self) -> Vec<io::ErrorKind> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                DgEv::Error(k) => Some(k),
                _ => None,
            })
            .collect()
    }

    pub fn lost(&self) -> Vec<Option<io::ErrorKind>> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                DgEv::Lost(k) => Some(k),
                _ => None,
            })
            .collect()
    }
}

pub struct DgRecorder(pub DgProbe);

impl DatagramProtocol for DgRecorder {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        let p = &self.0.0;
        assert!(
            p.events.borrow().is_empty(),
            "connection_made must come first"
        );
        p.events.borrow_mut().push(DgEv::Made);
        *p.transport.borrow_mut() = Some(transport.clone());
    }

    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        let p = &self.0.0;
        assert!(
            !p.events.borrow().iter().any(|e| matches!(e, DgEv::Lost(_))),
            "datagram after connection_lost"
        );
        p.events
            .borrow_mut()
            .push(DgEv::Datagram(data.to_vec(), addr));
        if p.echo.get() {
            p.transport
                .borrow()
                .as_ref()
                .expect("made")
                .sendto(data, Some(addr));
        }
    }

    fn error_received(&mut self, error: io::Error) {
        self.0.0.events.borrow_mut().push(DgEv::Error(error.kind()));
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.0
            .0
            .events
            .borrow_mut()
            .push(DgEv::Lost(error.as_ref().map(io::Error::kind)));
    }
}

// ---------------------------------------------------------------------------------
// Std peers, driven from the loop's thread between iterations.

/// Connects a std client to `addr` and makes it non-blocking.
pub fn std_client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("std connect");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// Reads what a non-blocking socket has into `out`; true at EOF.
pub fn drain_into(mut s: impl Read, out: &mut Vec<u8>) -> io::Result<bool> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes as much of `data[*at..]` as a non-blocking socket takes now.
pub fn write_some(mut s: impl Write, data: &[u8], at: &mut usize) -> io::Result<()> {
    while *at < data.len() {
        match s.write(&data[*at..]) {
            Ok(n) => *at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes the next `close` of `s` send a RST instead of a FIN (`SO_LINGER` 0).
pub fn set_linger_zero(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

/// A fresh path for a Unix socket, removed when dropped.
pub struct SockPath(pub PathBuf);

impl SockPath {
    pub fn new(tag: &str) -> SockPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("evloop-{tag}-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        SockPath(p)
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl AsRef<std::path::Path> for SockPath {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

/// The number of open fds of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
        - 1 // the directory handle of read_dir itself
}

/// The open fds of this process with what they point at, for failure messages.
pub fn fd_list() -> String {
    let mut out = String::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
    {
        let target = std::fs::read_link(e.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        out.push_str(&format!(
            "  {} -> {target}\n",
            e.file_name().to_string_lossy()
        ));
    }
    out
}

// ---------------------------------------------------------------------------------
// Servers and clients.

/// Starts a TCP server on 127.0.0.1 (ephemeral port) for `factory`.
#[track_caller]
pub fn tcp_server<P: Protocol + 'static>(
    lp: &Loop,
    factory: impl FnMut() -> P + 'static,
) -> (evloop::Server, SocketAddr) {
    let server = block_on(lp, lp.create_server("127.0.0.1:0", factory))
        .expect("create_server task")
        .expect("create_server");
    let addrs = server.local_addrs();
    assert_eq!(addrs.len(), 1, "one address for 127.0.0.1:0: {addrs:?}");
    (server, addrs[0])
}

/// Runs the loop until the server of `probes` has accepted its `n`th connection and
/// `connection_made` ran; returns that connection's probe.
#[track_caller]
pub fn accepted(lp: &Loop, probes: &Probes, n: usize) -> Probe {
    run_until(lp, &format!("connection #{n} accepted"), || {
        probes.len() >= n && probes.get(n - 1).made()
    });
    probes.get(n - 1)
}

/// A non-blocking std client with a small receive buffer, so that a peer writing to
/// it while it does not read has to buffer soon.
pub fn small_window_client(addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    s.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    s.connect(&addr.into()).expect("connect");
    let s: TcpStream = s.into();
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// Writes to `t` (1 MiB at a time, with no loop iteration in between, so nothing
/// drains) until the transport buffers at least `min_buffered` bytes that the
/// socket would not take; returns everything written, in order. The peer must not
/// be reading.
///
/// # Panics
/// If 64 MiB are taken whole by the socket.
#[track_caller]
pub fn buffer_up(t: &Transport, min_buffered: usize) -> Vec<u8> {
    let chunk = payload(1024 * 1024);
    let mut written = Vec::new();
    for i in 0..64u8 {
        // Vary the chunks so that a misplaced one shows.
        let c: Vec<u8> = chunk.iter().map(|b| b.wrapping_add(i)).collect();
        t.write(&c);
        written.extend_from_slice(&c);
        if t.write_buffer_size() >= min_buffered {
            return written;
        }
    }
    panic!(
        "64 MiB written to a peer that does not read and only {} bytes buffered",
        t.write_buffer_size()
    );
}

/// Checks that a probe's `pause_writing` / `resume_writing` calls alternate, starting
/// with a pause (asyncio's contract: a protocol never hears resume while not paused,
/// nor pause twice in a row).
#[track_caller]
pub fn assert_flow_alternates(p: &Probe, what: &str) {
    let flow: Vec<Ev> = p
        .lifecycle()
        .into_iter()
        .filter(|e| matches!(e, Ev::Pause | Ev::Resume))
        .collect();
    for (i, e) in flow.iter().enumerate() {
        let want = if i % 2 == 0 { Ev::Pause } else { Ev::Resume };
        assert_eq!(
            *e, want,
            "{what}: pause_writing/resume_writing must alternate starting with a pause, got {flow:?}"
        );
    }
}

/// The lifecycle without the flow-control events.
pub fn without_flow(p: &Probe) -> Vec<Ev> {
    p.lifecycle()
        .into_iter()
        .filter(|e| !matches!(e, Ev::Pause | Ev::Resume))
        .collect()
}
