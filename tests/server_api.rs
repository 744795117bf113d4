//! `Server`'s asyncio API past `close` / `wait_closed`: `ServerOptions::start_serving`
//! and `Server::start_serving`, `serve_forever` (returns after `close()`, at once on a
//! closed server, closes the server when cancelled), `close_clients` /
//! `abort_clients` (3.13); and sockets made elsewhere: `create_server_from` (std and
//! socket2 listeners, TCP and Unix) and `connect_accepted_socket`.
//!
//! Behaviour ported from CPython's `Lib/test/test_asyncio/test_server.py` (each test
//! names its case; the 3.13 ones are `test_close_clients` and `test_abort_clients`).

#[path = "util/net.rs"]
mod net_util;

use std::cell::Cell;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::rc::Rc;
use std::time::Duration;

use evloop::net::ServerOptions;
use evloop::{Loop, Server};
use net_util::*;
use socket2::{Domain, Socket, Type};

/// A TCP server on 127.0.0.1 made with `options`.
fn server_with(lp: &Loop, probes: &Probes, options: ServerOptions) -> Server {
    block_on(
        lp,
        lp.create_server_with("127.0.0.1:0", probes.factory(), options),
    )
    .expect("create_server task")
    .expect("create_server")
}

/// Reads from a non-blocking std stream until `n` bytes came or EOF, driving `lp`.
fn read_n(lp: &Loop, s: impl Read + Copy, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut eof = false;
    run_until(lp, "the client's read", || {
        eof = drain_into(s, &mut got).expect("client read");
        eof || got.len() >= n
    });
    got
}

/// CPython `test_start_server_1`: a server made with `start_serving(false)` is not
/// serving and accepts nothing (a client waits in the backlog); `serve_forever`
/// serves it; cancelling the task that runs `serve_forever` closes the server; and
/// `serve_forever` on the closed server returns at once.
#[test]
fn start_server_1() {
    let lp = new_loop();
    let probes = Probes::echo();
    let server = server_with(&lp, &probes, ServerOptions::default().start_serving(false));
    assert!(!server.is_serving());
    let addr = server.local_addrs()[0];
    let client = std_client(addr); // in the backlog: the kernel completed the handshake
    (&client).write_all(b"hello\n").unwrap();
    run_for(&lp, Duration::from_millis(50));
    assert_eq!(probes.len(), 0, "accepted although not serving");

    let s = server.clone();
    let main = lp.create_task(async move { s.serve_forever().await });
    let p = accepted(&lp, &probes, 1);
    assert!(server.is_serving());
    assert_eq!(read_n(&lp, &client, 6), b"hello\n", "the echo");
    assert!(!main.is_done());
    assert!(main.cancel());
    run_until(&lp, "the cancelled serve_forever ends", || main.is_done());
    assert!(
        !server.is_serving(),
        "cancelling serve_forever closes the server"
    );
    assert!(server.local_addrs().is_empty(), "its sockets are gone");
    // The connection it accepted is left alone, as by close().
    assert!(!p.is_lost());
    let again = block_on(&lp, server.serve_forever());
    assert!(again.is_ok(), "serve_forever on a closed server: {again:?}");
    p.transport().close();
    block_on(&lp, server.wait_closed());
}

/// CPython `test_start_unix_server_1`: a Unix listener made elsewhere, served with
/// `start_serving(false)`: not serving, then `start_serving()` makes it serve; a
/// client is echoed; `close()` from the protocol side ends `serve_forever` with `Ok`.
#[test]
fn start_unix_server_1() {
    let lp = new_loop();
    let path = SockPath::new("start-unix");
    let listener = StdUnixListener::bind(&path).unwrap();
    let probes = Probes::echo();
    let server = block_on(
        &lp,
        lp.create_server_from_with(
            listener,
            probes.factory(),
            ServerOptions::default().start_serving(false),
        ),
    )
    .unwrap()
    .unwrap();
    assert!(!server.is_serving());
    server.start_serving().unwrap();
    assert!(server.is_serving());
    server.start_serving().unwrap(); // twice: nothing happens
    let s = server.clone();
    let main = lp.create_task(async move { s.serve_forever().await });
    let client = StdUnixStream::connect(&path).unwrap();
    client.set_nonblocking(true).unwrap();
    (&client).write_all(b"ping\n").unwrap();
    assert_eq!(read_n(&lp, &client, 5), b"ping\n");
    server.close();
    run_until(&lp, "serve_forever returns after close", || main.is_done());
    assert!(
        matches!(block_on(&lp, main), Ok(Ok(()))),
        "serve_forever ends with Ok after close()"
    );
    assert!(!server.is_serving());
    assert!(
        path.0.exists(),
        "the socket file of a listener made elsewhere is left to its owner"
    );
    probes.get(0).transport().close();
    block_on(&lp, server.wait_closed());
}

/// `start_serving` on a closed server is an error, and accepts nothing.
#[test]
fn start_serving_on_closed_server_is_an_error() {
    let lp = new_loop();
    let probes = Probes::new();
    let server = server_with(&lp, &probes, ServerOptions::default().start_serving(false));
    server.close();
    assert!(server.start_serving().is_err());
    assert!(!server.is_serving());
}

/// `serve_forever` returns after `close()` without waiting for the connections
/// (`wait_closed` does that), and a second `serve_forever` running at once is an
/// error (asyncio's "already being awaited on serve_forever()").
#[test]
fn serve_forever_returns_after_close() {
    let lp = new_loop();
    let probes = Probes::new();
    let (server, addr) = tcp_server(&lp, probes.factory());
    let _client = std_client(addr);
    let p = accepted(&lp, &probes, 1);
    let s = server.clone();
    let forever = lp.create_task(async move { s.serve_forever().await });
    run_iterations(&lp, 3);
    let second = block_on(&lp, server.serve_forever());
    assert!(second.is_err(), "two serve_forever at once");
    assert!(
        server.is_serving(),
        "the refused second call changed nothing"
    );
    let waiter = lp.create_task(server.wait_closed());
    run_iterations(&lp, 3);
    assert!(!forever.is_done());
    server.close();
    run_until(&lp, "serve_forever returns", || forever.is_done());
    run_iterations(&lp, 3);
    assert!(!waiter.is_done(), "a connection is still open");
    p.transport().close();
    run_until(&lp, "wait_closed", || waiter.is_done());
    // serve_forever may run again afterwards (the closed server: at once).
    assert!(block_on(&lp, server.serve_forever()).is_ok());
}

/// CPython 3.13 `test_close_clients`: `close()` then `close_clients()`: the clients
/// read EOF and `wait_closed` completes.
#[test]
fn close_clients() {
    let lp = new_loop();
    let probes = Probes::new();
    let (server, addr) = tcp_server(&lp, probes.factory());
    let c1 = std_client(addr);
    let c2 = std_client(addr);
    accepted(&lp, &probes, 2);
    let waiter = lp.create_task(server.wait_closed());
    run_iterations(&lp, 3);
    assert!(!waiter.is_done());
    server.close();
    server.close_clients();
    run_until(&lp, "wait_closed after close_clients", || waiter.is_done());
    assert_eq!(server.active_connections(), 0);
    for c in [&c1, &c2] {
        let mut got = Vec::new();
        run_until(&lp, "the client's EOF", || drain_into(c, &mut got).unwrap());
        assert!(got.is_empty());
    }
    assert_eq!(probes.get(0).lost_count(), 1);
    assert_eq!(probes.get(1).lost_count(), 1);
}

/// CPython 3.13 `test_abort_clients`: with a client that does not read and a full
/// write buffer, `close_clients()` waits for the buffer to drain (so `wait_closed`
/// does not complete), `abort_clients()` drops it and ends the connection.
#[test]
fn abort_clients() {
    let lp = new_loop();
    let probes = Probes::new();
    let (server, addr) = tcp_server(&lp, probes.factory());
    let client = small_window_client(addr);
    let p = accepted(&lp, &probes, 1);
    buffer_up(&p.transport(), 256 * 1024);
    let waiter = lp.create_task(server.wait_closed());
    run_iterations(&lp, 3);
    server.close();
    server.close_clients();
    run_for(&lp, Duration::from_millis(50));
    assert!(
        !waiter.is_done(),
        "close_clients flushes first: the client does not read"
    );
    assert!(!p.is_lost());
    server.abort_clients();
    run_until(&lp, "wait_closed after abort_clients", || waiter.is_done());
    assert_eq!(p.lost_count(), 1);
    assert_eq!(
        p.transport().write_buffer_size(),
        0,
        "the buffer was dropped"
    );
    drop(client);
}

/// `close_clients` / `abort_clients` on a server without connections, or twice, do
/// nothing; connections to other servers are not touched.
#[test]
fn close_clients_touches_only_this_servers_connections() {
    let lp = new_loop();
    let (pa, pb) = (Probes::new(), Probes::new());
    let (a, addr_a) = tcp_server(&lp, pa.factory());
    let (_b, addr_b) = tcp_server(&lp, pb.factory());
    a.close_clients();
    a.abort_clients();
    let _ca = std_client(addr_a);
    let _cb = std_client(addr_b);
    let con_a = accepted(&lp, &pa, 1);
    let con_b = accepted(&lp, &pb, 1);
    a.abort_clients();
    a.abort_clients();
    run_until(&lp, "a's connection ends", || con_a.is_lost());
    run_iterations(&lp, 3);
    assert!(!con_b.is_lost(), "another server's connection was closed");
    assert!(a.is_serving(), "abort_clients leaves the server serving");
}

/// `create_server_from` takes a blocking std `TcpListener`, makes it non-blocking and
/// serves it; closing the server closes the socket (the server owns it).
#[test]
fn create_server_from_std_tcp_listener() {
    let lp = new_loop();
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let probes = Probes::echo();
    let server = block_on(&lp, lp.create_server_from(listener, probes.factory()))
        .unwrap()
        .unwrap();
    assert_eq!(server.local_addrs(), vec![addr]);
    assert!(server.is_serving());
    let client = std_client(addr);
    (&client).write_all(b"abc").unwrap();
    assert_eq!(read_n(&lp, &client, 3), b"abc");
    // The loop is not blocked by the listener: a second client works as well.
    let client2 = std_client(addr);
    (&client2).write_all(b"de").unwrap();
    assert_eq!(read_n(&lp, &client2, 2), b"de");
    server.close();
    drop((client, client2));
    run_until(&lp, "connections gone", || server.active_connections() == 0);
    assert_eq!(
        StdTcpStream::connect(addr).unwrap_err().kind(),
        ErrorKind::ConnectionRefused,
        "the server closed the listener it was given"
    );
}

/// `create_server_from` takes a `socket2::Socket` that is bound but not listening
/// yet: it listens with the options' backlog.
#[test]
fn create_server_from_bound_socket2() {
    let lp = new_loop();
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let addr = sock.local_addr().unwrap().as_socket().unwrap();
    let probes = Probes::echo();
    let server = block_on(&lp, lp.create_server_from(sock, probes.factory()))
        .unwrap()
        .unwrap();
    let client = std_client(addr);
    (&client).write_all(b"xyz").unwrap();
    assert_eq!(read_n(&lp, &client, 3), b"xyz");
    server.close();
}

/// `create_server_from` refuses a socket that is not a TCP or Unix stream (here UDP)
/// with `InvalidInput`, and closes it (its port is free again).
#[test]
fn create_server_from_udp_is_invalid() {
    let lp = new_loop();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap();
    let err = block_on(
        &lp,
        lp.create_server_from(Socket::from(udp), Probes::new().factory()),
    )
    .unwrap()
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    std::net::UdpSocket::bind(addr).expect("the refused socket still holds its port");
}

/// `connect_accepted_socket` on a std `TcpStream` accepted by a blocking std
/// listener: the socket becomes non-blocking, the protocol runs on it, and the
/// transport owns (and closes) it.
#[test]
fn connect_accepted_tcp_stream() {
    let lp = new_loop();
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let peer = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
    peer.set_nonblocking(true).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let probe = Probe::echo();
    let (t, _p) = block_on(&lp, lp.connect_accepted_socket(accepted, probe.protocol()))
        .unwrap()
        .unwrap();
    assert!(
        probe.made(),
        "connection_made ran before the task completed"
    );
    assert_eq!(t.peer_addr().unwrap(), peer.local_addr().unwrap());
    (&peer).write_all(b"echo me").unwrap();
    assert_eq!(read_n(&lp, &peer, 7), b"echo me");
    t.close();
    run_until(&lp, "connection_lost", || probe.is_lost());
    let mut rest = Vec::new();
    run_until(&lp, "the peer's EOF", || {
        drain_into(&peer, &mut rest).unwrap()
    });
}

/// `connect_accepted_socket` on a Unix stream (one end of a std socketpair) and on a
/// `socket2::Socket`.
#[test]
fn connect_accepted_unix_and_socket2() {
    let lp = new_loop();
    let (ours, peer) = StdUnixStream::pair().unwrap();
    peer.set_nonblocking(true).unwrap();
    let probe = Probe::echo();
    let (t, _p) = block_on(&lp, lp.connect_accepted_socket(ours, probe.protocol()))
        .unwrap()
        .unwrap();
    (&peer).write_all(b"unix").unwrap();
    assert_eq!(read_n(&lp, &peer, 4), b"unix");
    t.close();
    run_until(&lp, "lost", || probe.is_lost());

    let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM, None).unwrap();
    let b: StdUnixStream = b.into();
    b.set_nonblocking(true).unwrap();
    let probe = Probe::echo();
    let (t, _p) = block_on(&lp, lp.connect_accepted_socket(a, probe.protocol()))
        .unwrap()
        .unwrap();
    (&b).write_all(b"s2").unwrap();
    assert_eq!(read_n(&lp, &b, 2), b"s2");
    t.abort();
    run_until(&lp, "lost", || probe.is_lost());
}

/// `connect_accepted_socket` refuses a socket that is not connected (a listener:
/// `NotConnected`) and one that is not a stream (UDP: `InvalidInput`), closing each;
/// `connection_made` never runs.
#[test]
fn connect_accepted_socket_refuses_bad_sockets() {
    let lp = new_loop();
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = listener.local_addr().unwrap();
    let probe = Probe::new();
    let err = block_on(&lp, lp.connect_accepted_socket(listener, probe.protocol()))
        .unwrap()
        .map(drop)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    assert_eq!(
        StdTcpStream::connect(tcp_addr).unwrap_err().kind(),
        ErrorKind::ConnectionRefused,
        "the refused listener is closed"
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let err = block_on(&lp, lp.connect_accepted_socket(udp, probe.protocol()))
        .unwrap()
        .map(drop)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    std::net::UdpSocket::bind(udp_addr).expect("the refused socket still holds its port");
    assert!(!probe.made());
}

/// A `connect_accepted_socket` task dropped (cancelled) before it ran closes the
/// socket: the loop owned it from the call on.
#[test]
fn connect_accepted_socket_cancelled_closes_the_socket() {
    let lp = new_loop();
    let (ours, peer) = StdUnixStream::pair().unwrap();
    peer.set_nonblocking(true).unwrap();
    let task = lp.connect_accepted_socket(ours, Probe::new().protocol());
    assert!(task.cancel());
    let mut got = Vec::new();
    run_until(&lp, "the peer's EOF", || {
        drain_into(&peer, &mut got).unwrap()
    });
}

/// Counts its drops.
struct DropGuard(Rc<Cell<usize>>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// A `serve_forever` still pending when the loop closes: the task is dropped with
/// the loop, the server is closed, its factory dropped exactly once, nothing
/// reported; `start_serving` afterwards is an error.
#[test]
fn serve_forever_pending_at_loop_close() {
    let lp = new_loop();
    let drops = Rc::new(Cell::new(0));
    let guard = DropGuard(drops.clone());
    let factory = move || {
        let _ = &guard;
        Probe::new().protocol()
    };
    let server = block_on(
        &lp,
        lp.create_server_with(
            "127.0.0.1:0",
            factory,
            ServerOptions::default().start_serving(false),
        ),
    )
    .unwrap()
    .unwrap();
    let s = server.clone();
    let task = lp.create_task(async move { s.serve_forever().await });
    run_iterations(&lp, 2);
    assert!(server.is_serving());
    lp.close().unwrap();
    assert!(task.is_cancelled());
    assert!(!server.is_serving());
    assert_eq!(drops.get(), 1, "the factory is dropped once");
    assert!(server.start_serving().is_err());
    check_loop_errors();
    drop(server);
    assert_eq!(drops.get(), 1);
}

/// A server that never started serving, dropped with its last handle, lets go of
/// its factory once and closes its socket.
#[test]
fn unstarted_server_dropped() {
    let lp = new_loop();
    let drops = Rc::new(Cell::new(0));
    let guard = DropGuard(drops.clone());
    let factory = move || {
        let _ = &guard;
        Probe::new().protocol()
    };
    let server = block_on(
        &lp,
        lp.create_server_with(
            "127.0.0.1:0",
            factory,
            ServerOptions::default().start_serving(false),
        ),
    )
    .unwrap()
    .unwrap();
    let addr = server.local_addrs()[0];
    drop(server);
    assert_eq!(drops.get(), 1);
    assert_eq!(
        StdTcpStream::connect(addr).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
}
