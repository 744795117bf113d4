//! `Server`: `local_addrs`, `close()` stops accepting (new connects refused) while
//! accepted connections keep working, `wait_closed` completes after the last
//! connection is lost, `active_connections`, `reuse_port` (two servers on one port),
//! `backlog`, many clients at once, and the socket file of a Unix server.
//!
//! Behaviour ported from CPython's `test_events.py` / `test_base_events.py`
//! (create_server, server close, reuse_port, Unix servers).

#[path = "util/net.rs"]
mod net_util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::thread;
use std::time::Duration;

use evloop::net::ServerOptions;
use net_util::*;

/// Echo round trip from a std client, driving the loop meanwhile.
fn echo_round_trip(lp: &evloop::Loop, client: &TcpStream, msg: &[u8]) {
    (&*client).write_all(msg).unwrap();
    let mut got = Vec::new();
    run_until(lp, "echo", || {
        drain_into(client, &mut got).unwrap();
        got.len() >= msg.len()
    });
    assert_eq!(got, msg);
}

#[test]
fn local_addrs_and_debug() {
    let lp = new_loop();
    let probes = Probes::echo();
    let (server, addr) = tcp_server(&lp, probes.factory());
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0, "the ephemeral port is reported, not 0");
    assert!(server.is_serving());
    assert_eq!(server.active_connections(), 0);
    let dbg = format!("{server:?}");
    assert!(dbg.contains(&addr.to_string()), "{dbg}");
    // A clone is the same server.
    let clone = server.clone();
    clone.close();
    assert!(!server.is_serving());
    assert!(
        server.local_addrs().is_empty(),
        "a closed server listens nowhere"
    );
    server.close(); // twice: harmless
}

#[test]
fn close_stops_accepting_but_keeps_connections_and_wait_closed_waits_for_them() {
    let lp = new_loop();
    let probes = Probes::echo();
    let (server, addr) = tcp_server(&lp, probes.factory());

    let c1 = std_client(addr);
    let p1 = accepted(&lp, &probes, 1);
    let c2 = std_client(addr);
    let p2 = accepted(&lp, &probes, 2);
    assert_eq!(server.active_connections(), 2);
    echo_round_trip(&lp, &c1, b"before close");

    let waiter = lp.create_task(server.wait_closed());
    run_for(&lp, Duration::from_millis(20));
    assert!(
        !waiter.is_done(),
        "wait_closed done while the server serves"
    );

    server.close();
    assert!(!server.is_serving());
    // New connections are refused.
    let err = TcpStream::connect(addr).expect_err("connect to a closed server");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    // Existing ones still work.
    echo_round_trip(&lp, &c1, b"after close, c1");
    echo_round_trip(&lp, &c2, b"after close, c2");
    run_for(&lp, Duration::from_millis(20));
    assert!(
        !waiter.is_done(),
        "wait_closed done with two connections open"
    );

    c1.shutdown(Shutdown::Write).unwrap();
    run_until(&lp, "c1 lost", || p1.is_lost());
    assert_eq!(server.active_connections(), 1);
    run_for(&lp, Duration::from_millis(20));
    assert!(
        !waiter.is_done(),
        "wait_closed done with one connection open"
    );

    p2.transport().close();
    run_until(&lp, "wait_closed completes", || waiter.is_done());
    assert!(p2.is_lost());
    assert_eq!(server.active_connections(), 0);
    assert_eq!(probes.len(), 2, "nothing accepted after close");
    // Once done, wait_closed is done at once.
    block_on(&lp, server.wait_closed());
}

#[test]
fn wait_closed_without_connections_completes_after_close() {
    let lp = new_loop();
    let probes = Probes::new();
    let (server, _addr) = tcp_server(&lp, probes.factory());
    let waiter = lp.create_task(server.wait_closed());
    run_for(&lp, Duration::from_millis(20));
    assert!(!waiter.is_done());
    let s = server.clone();
    lp.call_soon(move |_| s.close());
    run_until(&lp, "wait_closed", || waiter.is_done());
}

#[test]
fn two_servers_share_a_port_with_reuse_port() {
    let lp = new_loop();
    let a = Probes::echo();
    let b = Probes::echo();
    let opts = ServerOptions::default().reuse_port(true);
    let sa = block_on(
        &lp,
        lp.create_server_with("127.0.0.1:0", a.factory(), opts.clone()),
    )
    .unwrap()
    .unwrap();
    let addr = sa.local_addrs()[0];
    let sb = block_on(&lp, lp.create_server_with(addr, b.factory(), opts))
        .unwrap()
        .expect("a second server on the same port with reuse_port");
    assert_eq!(sb.local_addrs(), vec![addr]);

    let clients: Vec<TcpStream> = (0..16).map(|_| std_client(addr)).collect();
    run_until(&lp, "16 accepted", || a.len() + b.len() == 16);
    for (i, c) in clients.iter().enumerate() {
        echo_round_trip(&lp, c, format!("client {i}").as_bytes());
    }

    // With one closed, the other takes every new connection.
    sa.close();
    let before = b.len();
    let more: Vec<TcpStream> = (0..4).map(|_| std_client(addr)).collect();
    run_until(&lp, "the remaining server accepts", || {
        b.len() == before + 4
    });
    for c in &more {
        echo_round_trip(&lp, c, b"still served");
    }
    sb.close();
}

#[test]
fn without_reuse_port_the_second_bind_fails() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let err = block_on(&lp, lp.create_server(addr, probes.factory()))
        .unwrap()
        .expect_err("two servers on one port without reuse_port");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
}

#[test]
fn small_backlog_still_serves_every_client() {
    let lp = new_loop();
    let probes = Probes::echo();
    let opts = ServerOptions::default().backlog(1).reuse_address(false);
    let server = block_on(
        &lp,
        lp.create_server_with("127.0.0.1:0", probes.factory(), opts),
    )
    .unwrap()
    .unwrap();
    let addr = server.local_addrs()[0];
    for i in 0..5 {
        let c = std_client(addr);
        echo_round_trip(&lp, &c, format!("backlog client {i}").as_bytes());
    }
    assert_eq!(probes.len(), 5);
}

/// Many clients at once, from threads with blocking sockets, each sending 256 KiB
/// and reading it back while the loop serves them all.
#[test]
fn many_concurrent_clients() {
    let lp = new_loop();
    let probes = Probes::echo();
    let (server, addr) = tcp_server(&lp, probes.factory());
    let clients: Vec<thread::JoinHandle<Vec<u8>>> = (0..12)
        .map(|i| {
            thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                let data = payload(256 * 1024 + i);
                let w = s.try_clone().unwrap();
                let d2 = data.clone();
                let writer = thread::spawn(move || {
                    (&w).write_all(&d2).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let mut got = Vec::new();
                (&s).read_to_end(&mut got).unwrap();
                writer.join().unwrap();
                assert_bytes_eq(&got, &data, "echo");
                got
            })
        })
        .collect();
    run_until(&lp, "all clients done", || {
        clients.iter().all(|c| c.is_finished())
    });
    for c in clients {
        c.join().expect("client thread");
    }
    run_until(&lp, "all connections lost", || {
        server.active_connections() == 0
    });
    assert_eq!(probes.len(), 12);
    for i in 0..12 {
        assert_eq!(
            without_flow(&probes.get(i)),
            vec![Ev::Made, Ev::Eof, Ev::Lost(None)]
        );
    }
}

#[test]
fn unix_server_socket_file_lifecycle() {
    let lp = new_loop();
    let path = SockPath::new("server-file");
    // A stale socket file left by a dead server is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.0.exists());
    let probes = Probes::echo();
    let server = block_on(&lp, lp.create_unix_server(&path, probes.factory()))
        .unwrap()
        .expect("create_unix_server over a stale socket file");
    assert!(path.0.exists());

    let c = StdUnixStream::connect(&path).unwrap();
    c.set_nonblocking(true).unwrap();
    let p = accepted(&lp, &probes, 1);
    (&c).write_all(b"unix").unwrap();
    let mut got = Vec::new();
    run_until(&lp, "unix echo", || {
        drain_into(&c, &mut got).unwrap();
        got.len() >= 4
    });
    assert_eq!(got, b"unix");

    server.close();
    assert!(!path.0.exists(), "close removes the socket file");
    assert!(StdUnixStream::connect(&path).is_err());
    // The accepted connection lives on.
    (&c).write_all(b"still").unwrap();
    got.clear();
    run_until(&lp, "echo after close", || {
        drain_into(&c, &mut got).unwrap();
        got.len() >= 5
    });
    assert_eq!(got, b"still");
    let w = lp.create_task(server.wait_closed());
    drop(c);
    run_until(&lp, "wait_closed", || w.is_done());
    assert!(p.is_lost());
}

#[test]
fn unix_server_refuses_a_path_that_is_not_a_socket() {
    let lp = new_loop();
    let path = SockPath::new("regular-file");
    std::fs::write(&path.0, b"precious").unwrap();
    let probes = Probes::new();
    let r = block_on(&lp, lp.create_unix_server(&path, probes.factory())).unwrap();
    assert_eq!(
        r.expect_err("bind over a regular file").kind(),
        ErrorKind::AddrInUse
    );
    assert_eq!(
        std::fs::read(&path.0).unwrap(),
        b"precious",
        "the file was left alone"
    );
}

/// Dropping every `Server` handle without `close()` must not leave a listener that
/// accepts at the TCP level but never serves: either the server keeps serving (as
/// asyncio's, which the loop keeps alive) or its port is closed.
#[test]
fn dropping_the_server_handle_does_not_leave_a_dead_listener() {
    let lp = new_loop();
    let probes = Probes::echo();
    let (server, addr) = tcp_server(&lp, probes.factory());
    drop(server);
    run_iterations(&lp, 2);
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(c) => {
            c.set_nonblocking(true).unwrap();
            (&c).write_all(b"anyone?").unwrap();
            let mut got = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while got.len() < 7 && std::time::Instant::now() < deadline {
                lp.run_once(Some(Duration::from_millis(5))).unwrap();
                drain_into(&c, &mut got).unwrap();
            }
            assert_eq!(
                String::from_utf8_lossy(&got),
                "anyone?",
                "the listener of a dropped server accepted the connection at the TCP \
                 level but nobody serves it (accepted by the protocol factory: {})",
                probes.len()
            );
        }
    }
}

#[test]
fn create_server_reports_bad_addresses() {
    let lp = new_loop();
    let probes = Probes::new();
    let r = block_on(&lp, lp.create_server("127.0.0.1", probes.factory())).unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidInput, "no port");
    // A non-local address cannot be bound.
    let addr: SocketAddr = "192.0.2.1:0".parse().unwrap();
    let r = block_on(&lp, lp.create_server(addr, probes.factory())).unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::AddrNotAvailable);
}

/// A protocol whose `connection_lost` panics: the panic is reported, and the
/// connection still counts as gone (the server's `wait_closed` completes).
#[test]
fn wait_closed_completes_even_if_connection_lost_panics() {
    struct LostPanics;
    impl evloop::net::Protocol for LostPanics {
        fn data_received(&mut self, _: &[u8]) {}
        fn connection_lost(&mut self, _: Option<std::io::Error>) {
            panic!("boom in connection_lost");
        }
    }
    let lp = new_loop();
    let panics = std::rc::Rc::new(std::cell::Cell::new(0));
    let p2 = panics.clone();
    lp.set_exception_handler(move |_, _| p2.set(p2.get() + 1));
    let (server, addr) = tcp_server(&lp, || LostPanics);
    let c = std_client(addr);
    run_until(&lp, "accepted", || server.active_connections() == 1);
    c.shutdown(Shutdown::Write).unwrap();
    run_until(&lp, "the panic", || panics.get() == 1);
    let mut got = Vec::new();
    let mut eof = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !eof && std::time::Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(5))).unwrap();
        eof = drain_into(&c, &mut got).unwrap_or(true);
    }
    assert!(
        eof,
        "the socket was not closed after connection_lost panicked"
    );
    server.close();
    let w = lp.create_task(server.wait_closed());
    run_for(&lp, Duration::from_millis(50));
    assert_eq!(
        server.active_connections(),
        0,
        "the connection still counts after its connection_lost panicked"
    );
    assert!(w.is_done(), "wait_closed hangs");
}
