//! Every way a stream connection ends leads to exactly one `connection_lost`, with
//! the right error: `close()` (None, after the buffer is flushed: the peer gets every
//! byte), `abort()` (None, the buffer dropped), the peer's EOF with `eof_received`
//! returning false (the transport closes) or true (half-close: we still write, then
//! close), a peer reset (ConnectionReset), a broken pipe (BrokenPipe or
//! ConnectionReset). Writes to a closing or closed transport are ignored.
//!
//! Behaviour ported from CPython's `test_selector_events.py` (`test_close`,
//! `test_abort`, `test_write_closing`, `test_read_ready_eof`,
//! `test_read_ready_eof_keep_open`, `test_read_ready_conn_reset`,
//! `test_write_ready_closing`), on real sockets.

#[path = "util/net.rs"]
mod net_util;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::Duration;

use net_util::*;

const MIB: usize = 1024 * 1024;

#[test]
fn close_flushes_the_buffer_then_connection_lost_none() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    let data = buffer_up(&t, MIB);
    t.close();
    assert!(t.is_closing());
    assert!(!t.is_reading());
    t.write(b"IGNORED: written after close");
    t.close(); // twice: harmless
    run_for(&lp, Duration::from_millis(50));
    assert!(
        !srv.is_lost(),
        "connection_lost before the buffer was flushed (peer has not read yet)"
    );

    let mut got = Vec::new();
    run_until(&lp, "the peer reads to EOF", || {
        drain_into(&peer, &mut got).expect("peer read")
    });
    assert_bytes_eq(&got, &data, "what the peer got before EOF");
    run_until(&lp, "lost", || srv.is_lost());
    run_for(&lp, Duration::from_millis(20));
    assert_eq!(without_flow(&srv), vec![Ev::Made, Ev::Lost(None)]);
    assert_flow_alternates(&srv, "close");
    assert_eq!(t.write_buffer_size(), 0);
}

#[test]
fn abort_drops_the_buffer_then_connection_lost_none() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    let data = buffer_up(&t, MIB);
    t.abort();
    assert!(t.is_closing());
    assert_eq!(t.write_buffer_size(), 0, "abort drops the buffer");
    t.write(b"ignored");
    assert_eq!(t.write_buffer_size(), 0);
    // The peer does not read, yet the connection is lost: nothing waits for a flush.
    run_until(&lp, "lost", || srv.is_lost());
    assert_eq!(without_flow(&srv), vec![Ev::Made, Ev::Lost(None)]);

    // The peer gets at most what the socket had taken, then the end.
    let mut got = Vec::new();
    run_until(&lp, "the peer sees the end", || {
        drain_into(&peer, &mut got).unwrap_or(true)
    });
    assert!(got.len() < data.len(), "abort sent the whole buffer");
    assert_bytes_eq(&got, &data[..got.len()], "prefix");
    t.abort();
    t.close();
    run_for(&lp, Duration::from_millis(20));
    assert_eq!(srv.lost_count(), 1);
}

#[test]
fn close_then_abort_loses_once() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let _peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();
    buffer_up(&t, MIB);
    t.close();
    run_iterations(&lp, 3);
    assert!(!srv.is_lost());
    t.abort(); // the flush is abandoned
    run_until(&lp, "lost", || srv.is_lost());
    run_for(&lp, Duration::from_millis(20));
    assert_eq!(without_flow(&srv), vec![Ev::Made, Ev::Lost(None)]);
}

#[test]
fn peer_eof_closes_the_transport_when_eof_received_returns_false() {
    let lp = new_loop();
    let probes = Probes::new(); // eof_received returns false
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = std_client(addr);
    let srv = accepted(&lp, &probes, 1);

    (&peer).write_all(b"last").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    run_until(&lp, "lost", || srv.is_lost());
    assert_eq!(srv.lifecycle(), vec![Ev::Made, Ev::Eof, Ev::Lost(None)]);
    assert_eq!(srv.data(), b"last", "data before EOF");
    assert!(srv.transport().is_closing());
    let mut got = Vec::new();
    run_until(&lp, "the peer reads EOF", || {
        drain_into(&peer, &mut got).unwrap()
    });
    assert!(got.is_empty());
}

#[test]
fn peer_eof_keep_open_is_a_half_close() {
    let lp = new_loop();
    let probes = Probes::new().keep_open(true);
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = std_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    (&peer).write_all(b"question").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    run_until(&lp, "eof_received", || srv.saw_eof());
    run_for(&lp, Duration::from_millis(50));
    assert_eq!(srv.lifecycle(), vec![Ev::Made, Ev::Eof], "kept open");
    assert!(!t.is_closing());

    // We can still write, and the peer gets it, large or small.
    let answer = payload(MIB);
    t.write(&answer);
    let mut got = Vec::new();
    run_until(&lp, "the answer arrives", || {
        drain_into(&peer, &mut got).unwrap();
        got.len() >= answer.len()
    });
    assert_bytes_eq(&got, &answer, "answer after half-close");
    t.close();
    run_until(&lp, "lost", || srv.is_lost());
    run_until(&lp, "the peer reads EOF", || {
        drain_into(&peer, &mut got).unwrap()
    });
    assert_eq!(got.len(), answer.len());
    assert_eq!(without_flow(&srv), vec![Ev::Made, Ev::Eof, Ev::Lost(None)]);
}

#[test]
fn peer_reset_gives_connection_reset() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = std_client(addr);
    let srv = accepted(&lp, &probes, 1);
    (&peer).write_all(b"hello").unwrap();
    run_until(&lp, "data", || srv.data_len() == 5);

    set_linger_zero(&peer);
    drop(peer); // RST
    run_until(&lp, "lost", || srv.is_lost());
    assert_eq!(
        srv.lifecycle(),
        vec![Ev::Made, Ev::Lost(Some(ErrorKind::ConnectionReset))],
        "{:?}",
        srv.lost_message()
    );
    run_for(&lp, Duration::from_millis(20));
    assert_eq!(srv.lost_count(), 1);
    // Writing to the dead transport is ignored.
    srv.transport().write(b"nobody listens");
    srv.transport().close();
    run_for(&lp, Duration::from_millis(20));
    assert_eq!(srv.lost_count(), 1);
}

#[test]
fn peer_reset_while_our_buffer_is_full() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();
    buffer_up(&t, MIB);

    set_linger_zero(&peer);
    drop(peer);
    run_until(&lp, "lost", || srv.is_lost());
    let err = srv.lost_with();
    assert!(
        matches!(
            err,
            Some(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
        ),
        "expected a reset or broken pipe, got {err:?} ({:?})",
        srv.lost_message()
    );
    assert_eq!(
        t.write_buffer_size(),
        0,
        "the buffer is dropped on a fatal error"
    );
    run_for(&lp, Duration::from_millis(20));
    assert_eq!(srv.lost_count(), 1);
}

#[test]
fn broken_pipe_when_writing_to_a_closed_peer() {
    let lp = new_loop();
    let probes = Probes::new().keep_open(true);
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = std_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    drop(peer); // a full close: FIN; whatever we send next is answered with RST
    run_until(&lp, "eof_received", || srv.saw_eof());
    let chunk = payload(16 * 1024);
    run_until(&lp, "a write fails", || {
        if !t.is_closing() {
            t.write(&chunk);
        }
        srv.is_lost()
    });
    let err = srv.lost_with();
    assert!(
        matches!(
            err,
            Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
        ),
        "expected a broken pipe or reset, got {err:?} ({:?})",
        srv.lost_message()
    );
    assert_eq!(without_flow(&srv).len(), 3, "{:?}", srv.lifecycle());
    assert_eq!(without_flow(&srv)[..2], [Ev::Made, Ev::Eof]);
    // Later writes: ignored, no panic, still one connection_lost.
    t.write(&chunk);
    t.write_eof();
    t.close();
    run_for(&lp, Duration::from_millis(20));
    assert_eq!(srv.lost_count(), 1);
    assert!(t.peer_addr().is_err(), "the socket is closed");
}

/// The client side (create_connection): the server closing is an EOF for it, then a
/// clean close.
#[test]
fn client_transport_sees_server_close() {
    let lp = new_loop();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = Probe::new();
    let (t, _) = block_on(&lp, lp.create_connection(addr, client.protocol()))
        .unwrap()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    t.write(b"hi");
    let mut hi = [0u8; 2];
    std::io::Read::read_exact(&mut &conn, &mut hi).unwrap(); // unread data would make the close a RST
    assert_eq!(&hi, b"hi");
    (&conn).write_all(b"bye").unwrap();
    drop(conn);
    run_until(&lp, "client lost", || client.is_lost());
    assert_eq!(client.data(), b"bye");
    assert_eq!(client.lifecycle(), vec![Ev::Made, Ev::Eof, Ev::Lost(None)]);
}

/// Connection refused: create_connection fails, no protocol callback runs.
#[test]
fn create_connection_refused() {
    let lp = new_loop();
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let probe = Probe::new();
    let r = block_on(&lp, lp.create_connection(addr, probe.protocol())).unwrap();
    let err = r.err().expect("connecting to a closed port must fail");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    run_for(&lp, Duration::from_millis(20));
    assert!(probe.events().is_empty());
}

// ------------------------------------------------------------------ Unix sockets

fn unix_server(lp: &evloop::Loop, probes: &Probes, path: &SockPath) -> evloop::Server {
    block_on(lp, lp.create_unix_server(path, probes.factory()))
        .unwrap()
        .expect("create_unix_server")
}

fn unix_peer(path: &SockPath) -> StdUnixStream {
    let s = StdUnixStream::connect(path).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

#[test]
fn unix_close_flushes_then_lost_none() {
    let lp = new_loop();
    let path = SockPath::new("close-flush");
    let probes = Probes::new();
    let _server = unix_server(&lp, &probes, &path);
    let peer = unix_peer(&path);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();
    let data = buffer_up(&t, MIB);
    t.close();
    t.write(b"IGNORED");
    run_for(&lp, Duration::from_millis(30));
    assert!(!srv.is_lost());
    let mut got = Vec::new();
    run_until(&lp, "peer EOF", || drain_into(&peer, &mut got).unwrap());
    assert_bytes_eq(&got, &data, "unix peer");
    run_until(&lp, "lost", || srv.is_lost());
    assert_eq!(without_flow(&srv), vec![Ev::Made, Ev::Lost(None)]);
}

#[test]
fn unix_abort_and_peer_eof() {
    let lp = new_loop();
    let path = SockPath::new("abort-eof");
    let probes = Probes::new();
    let _server = unix_server(&lp, &probes, &path);

    let peer1 = unix_peer(&path);
    let a = accepted(&lp, &probes, 1);
    buffer_up(&a.transport(), MIB);
    a.transport().abort();
    run_until(&lp, "aborted", || a.is_lost());
    assert_eq!(without_flow(&a), vec![Ev::Made, Ev::Lost(None)]);
    drop(peer1);

    let peer2 = unix_peer(&path);
    let b = accepted(&lp, &probes, 2);
    (&peer2).write_all(b"x").unwrap();
    peer2.shutdown(Shutdown::Write).unwrap();
    run_until(&lp, "eof closes", || b.is_lost());
    assert_eq!(
        b.events(),
        vec![Ev::Made, Ev::Data(1), Ev::Eof, Ev::Lost(None)]
    );
}

#[test]
fn unix_broken_pipe() {
    let lp = new_loop();
    let path = SockPath::new("epipe");
    let probes = Probes::new().keep_open(true);
    let _server = unix_server(&lp, &probes, &path);
    let peer = unix_peer(&path);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();
    drop(peer);
    run_until(&lp, "eof", || srv.saw_eof());
    run_until(&lp, "a write fails", || {
        t.write(b"into the void");
        srv.is_lost()
    });
    let err = srv.lost_with();
    assert!(
        matches!(
            err,
            Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
        ),
        "got {err:?}"
    );
    run_for(&lp, Duration::from_millis(20));
    assert_eq!(srv.lost_count(), 1);
}

// ------------------------------------------------------------ panicking protocols

/// A protocol that panics in the callbacks it is told to.
struct Panicky {
    probe: Probe,
    in_data: bool,
    in_lost: bool,
}

impl evloop::net::Protocol for Panicky {
    fn connection_made(&mut self, t: &evloop::net::Transport) {
        self.probe.protocol().connection_made(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        let first = self.probe.data_len() == 0;
        self.probe.protocol().data_received(data);
        if self.in_data && first {
            panic!("boom in data_received");
        }
    }
    fn eof_received(&mut self) -> bool {
        self.probe.protocol().eof_received()
    }
    fn connection_lost(&mut self, e: Option<std::io::Error>) {
        self.probe.protocol().connection_lost(e);
        if self.in_lost {
            panic!("boom in connection_lost");
        }
    }
}

/// Counts what the exception handler hears (instead of failing the test on it).
fn count_panics(lp: &evloop::Loop) -> std::rc::Rc<std::cell::Cell<usize>> {
    let n = std::rc::Rc::new(std::cell::Cell::new(0));
    let n2 = n.clone();
    lp.set_exception_handler(move |_, _| n2.set(n2.get() + 1));
    n
}

/// A panic in `data_received` is caught and reported; it must not leave the
/// connection stalled with data unread. The socket is edge-triggered: no new event
/// comes for data that is already there, so if the read loop just stops, the rest
/// waits for the peer's next write, which may never come (here the peer has said
/// everything and waits). asyncio closes the transport with the error; reading on
/// would do too.
#[test]
fn a_panic_in_data_received_does_not_stall_the_connection() {
    let lp = new_loop();
    let panics = count_panics(&lp);
    let probe = Probe::new();
    let p2 = probe.clone();
    let (_server, addr) = tcp_server(&lp, move || Panicky {
        probe: p2.clone(),
        in_data: true,
        in_lost: false,
    });
    // More than one read (64 KiB) in the socket before the server reads at all.
    let data = payload(100 * 1024);
    let peer = TcpStream::connect(addr).unwrap();
    (&peer).write_all(&data).unwrap();
    run_until(&lp, "the protocol panics", || panics.get() > 0);
    assert!(
        probe.data_len() < data.len(),
        "the first read took everything"
    );
    run_for(&lp, Duration::from_millis(300));
    assert!(
        probe.is_lost() || probe.data_len() == data.len(),
        "after a panic in data_received the connection is stalled: {} of {} bytes \
         delivered, the rest sits unread in the socket, and no connection_lost",
        probe.data_len(),
        data.len()
    );
    assert_eq!(panics.get(), 1);
}

/// A protocol that panics in one chosen method, counting its `connection_lost`s.
struct PanicIn {
    method: &'static str,
    t: Option<evloop::net::Transport>,
    lost: std::rc::Rc<std::cell::RefCell<Vec<Option<String>>>>,
}

impl PanicIn {
    fn maybe_panic(&self, method: &str) {
        if self.method == method {
            panic!("boom in {method}");
        }
    }
}

impl evloop::net::Protocol for PanicIn {
    fn connection_made(&mut self, t: &evloop::net::Transport) {
        self.t = Some(t.clone());
        if self.method.ends_with("_writing") {
            // Over the mark, to a peer that does not read yet.
            let chunk = vec![b'w'; 64 * 1024];
            for _ in 0..1024 {
                if t.is_writing_paused() {
                    break;
                }
                t.write(&chunk);
            }
        }
        self.maybe_panic("connection_made");
    }
    fn data_received(&mut self, _: &[u8]) {
        self.maybe_panic("data_received");
    }
    fn eof_received(&mut self) -> bool {
        self.maybe_panic("eof_received");
        false
    }
    fn pause_writing(&mut self) {
        self.maybe_panic("pause_writing");
    }
    fn resume_writing(&mut self) {
        self.maybe_panic("resume_writing");
    }
    fn connection_lost(&mut self, e: Option<std::io::Error>) {
        self.lost.borrow_mut().push(e.map(|e| e.to_string()));
        self.maybe_panic("connection_lost");
    }
}

/// A panic in any protocol method — `eof_received` included, which used to leave
/// the connection open for ever (no `connection_lost`, `active_connections` stuck at
/// 1, the fd leaked) — is reported to the exception handler once and closes that
/// connection: `connection_lost` runs exactly once (with an error naming the method,
/// unless it is the one that panicked), the server's count goes back to zero and the
/// peer sees the socket closed. asyncio's `test_read_eof_received_error` and
/// `test_data_received_error` (`_fatal_error`), on real sockets.
fn a_panic_in(method: &'static str) {
    let lp = new_loop();
    let reports = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let r2 = reports.clone();
    lp.set_exception_handler(move |_, ctx| r2.borrow_mut().push(ctx.to_string()));
    let lost = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let l2 = lost.clone();
    let (server, addr) = tcp_server(&lp, move || PanicIn {
        method,
        t: None,
        lost: l2.clone(),
    });
    let peer = small_window_client(addr);
    run_until(&lp, "accepted", || server.active_connections() == 1);
    match method {
        "data_received" => (&peer).write_all(b"data").unwrap(),
        "eof_received" | "connection_lost" => peer.shutdown(Shutdown::Write).unwrap(),
        _ => {}
    }
    // resume_writing comes once the peer reads; every other trigger is sent.
    let mut got = Vec::new();
    let mut closed = false;
    run_until(&lp, &format!("{method}: connection_lost"), || {
        if (method == "resume_writing" || !lost.borrow().is_empty()) && !closed {
            // EOF, or a reset: closed either way.
            closed = drain_into(&peer, &mut got).unwrap_or(true);
        }
        closed && !lost.borrow().is_empty()
    });
    run_for(&lp, Duration::from_millis(30));
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{method}: one report: {reports:#?}");
    assert!(
        reports[0].contains(&format!("boom in {method}")) && reports[0].contains(method),
        "{method}: the report says what panicked: {}",
        reports[0]
    );
    let lost = lost.borrow();
    assert_eq!(lost.len(), 1, "{method}: connection_lost once: {lost:?}");
    if method != "connection_lost" {
        let err = lost[0].as_deref().unwrap_or_default();
        assert!(
            err.contains(method),
            "{method}: connection_lost's error names the method: {err:?}"
        );
    }
    assert_eq!(
        server.active_connections(),
        0,
        "{method}: still counted as active"
    );
    drop(reports);
    lp.close().unwrap();
}

#[test]
fn a_panic_in_eof_received_closes_the_connection() {
    a_panic_in("eof_received");
}

#[test]
fn a_panic_in_connection_made_closes_the_connection() {
    a_panic_in("connection_made");
}

#[test]
fn a_panic_in_data_received_closes_the_connection() {
    a_panic_in("data_received");
}

#[test]
fn a_panic_in_pause_writing_closes_the_connection() {
    a_panic_in("pause_writing");
}

#[test]
fn a_panic_in_resume_writing_closes_the_connection() {
    a_panic_in("resume_writing");
}

#[test]
fn a_panic_in_connection_lost_still_closes_the_socket() {
    a_panic_in("connection_lost");
}
