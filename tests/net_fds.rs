//! No fd leaks: the process's open fds (`/proc/self/fd`) are counted before and after
//! every way a connection, a server, a stream or a loop ends.
//!
//! Tests of one file run on parallel threads of one process, and every socket counts,
//! so this file holds a single `#[test]` that runs its cases one after the other.
//! Each case counts before it starts and after it has dropped everything it made;
//! cases also check the count while their loop is still open (only the loop's own
//! fds and the listeners they made on purpose may remain). Every case runs even if an
//! earlier one failed; the test fails at the end with the list of leaks.

#[path = "util/net.rs"]
mod net_util;

use std::cell::RefCell;
use std::io::Write;
use std::net::Shutdown;
use std::rc::Rc;

use evloop::Loop;
use evloop::net::{TcpListener, UdpSocket, UnixListener, UnixStream};
use net_util::*;

const MIB: usize = 1024 * 1024;

struct Leaks(Vec<String>);

impl Leaks {
    /// Runs `case`, which must drop everything it makes, and records a leak if the
    /// number of open fds changed. A panic inside the case is recorded too.
    fn case(&mut self, name: &str, case: impl FnOnce(&mut Vec<String>)) {
        let before = open_fds();
        let before_list = fd_list();
        let mut failures = Vec::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&mut failures)));
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            self.0.push(format!("{name}: panicked: {msg}"));
        }
        for f in failures {
            self.0.push(format!("{name}: {f}"));
        }
        let after = open_fds();
        if after != before {
            self.0.push(format!(
                "{name}: {before} fds open before, {after} after\nbefore:\n{before_list}after:\n{}",
                fd_list()
            ));
        }
    }
}

/// Records (does not panic) a count that differs from the expected one.
fn expect_fds(failures: &mut Vec<String>, what: &str, want: usize) {
    let got = open_fds();
    if got != want {
        failures.push(format!(
            "{what}: {got} fds open, want {want}\n{}",
            fd_list()
        ));
    }
}

fn close_loop(lp: Loop) {
    lp.close().expect("close");
    drop(lp);
}

#[test]
fn no_fd_leaks() {
    let mut leaks = Leaks(Vec::new());

    leaks.case("a loop, created, run, closed", |_| {
        let lp = new_loop();
        lp.call_soon(|lp| lp.stop());
        lp.run_forever().unwrap();
        close_loop(lp);
    });

    // Every way a server-side connection ends; the listener stays, then closes.
    leaks.case("server-side connection end paths", |f| {
        let lp = new_loop();
        let with_loop = open_fds();
        let probes = Probes::new().keep_open(false);
        let (server, addr) = tcp_server(&lp, probes.factory());
        let with_listener = with_loop + 1;
        expect_fds(f, "server listening", with_listener);

        // close() with a full buffer, flushed to a reading peer.
        {
            let peer = small_window_client(addr);
            let p = accepted(&lp, &probes, 1);
            buffer_up(&p.transport(), MIB);
            p.transport().close();
            let mut got = Vec::new();
            run_until(&lp, "flushed", || drain_into(&peer, &mut got).unwrap());
            run_until(&lp, "lost", || p.is_lost());
            drop(peer);
            expect_fds(f, "after close()", with_listener);
        }
        // abort() with a full buffer.
        {
            let peer = small_window_client(addr);
            let p = accepted(&lp, &probes, 2);
            buffer_up(&p.transport(), MIB);
            p.transport().abort();
            run_until(&lp, "lost", || p.is_lost());
            drop(peer);
            expect_fds(f, "after abort()", with_listener);
        }
        // The peer's EOF.
        {
            let peer = std_client(addr);
            let p = accepted(&lp, &probes, 3);
            peer.shutdown(Shutdown::Write).unwrap();
            run_until(&lp, "lost", || p.is_lost());
            drop(peer);
            expect_fds(f, "after peer EOF", with_listener);
        }
        // A peer reset.
        {
            let peer = std_client(addr);
            let p = accepted(&lp, &probes, 4);
            set_linger_zero(&peer);
            drop(peer);
            run_until(&lp, "lost", || p.is_lost());
            expect_fds(f, "after peer reset", with_listener);
        }
        server.close();
        expect_fds(f, "after server.close()", with_loop);
        drop(server);
        close_loop(lp);
    });

    leaks.case("half-close then broken pipe", |f| {
        let lp = new_loop();
        let with_loop = open_fds();
        let probes = Probes::new().keep_open(true);
        let (server, addr) = tcp_server(&lp, probes.factory());
        let peer = std_client(addr);
        let p = accepted(&lp, &probes, 1);
        drop(peer);
        run_until(&lp, "eof", || p.saw_eof());
        let t = p.transport();
        run_until(&lp, "broken pipe", || {
            t.write(&[0u8; 4096]);
            p.is_lost()
        });
        server.close();
        expect_fds(f, "after the broken pipe and server.close()", with_loop);
        drop((server, t));
        close_loop(lp);
    });

    leaks.case("server closed with connections open, then they end", |f| {
        let lp = new_loop();
        let with_loop = open_fds();
        let probes = Probes::echo();
        let (server, addr) = tcp_server(&lp, probes.factory());
        let c1 = std_client(addr);
        let c2 = std_client(addr);
        accepted(&lp, &probes, 2);
        server.close();
        expect_fds(
            f,
            "server closed, two connections (4 sockets) open",
            with_loop + 4,
        );
        drop((c1, c2));
        let w = lp.create_task(server.wait_closed());
        run_until(&lp, "wait_closed", || w.is_done());
        expect_fds(f, "after wait_closed", with_loop);
        close_loop(lp);
    });

    leaks.case("create_connection: closed, refused", |f| {
        let lp = new_loop();
        let with_loop = open_fds();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let probe = Probe::new();
        let (t, _) = block_on(&lp, lp.create_connection(addr, probe.protocol()))
            .unwrap()
            .unwrap();
        let (conn, _) = listener.accept().unwrap();
        t.close();
        run_until(&lp, "lost", || probe.is_lost());
        drop((conn, listener, t));
        expect_fds(f, "after a client connection closed", with_loop);
        let refused = block_on(&lp, lp.create_connection(addr, Probe::new().protocol())).unwrap();
        assert!(refused.is_err());
        expect_fds(f, "after a refused connect", with_loop);
        close_loop(lp);
    });

    leaks.case("unix server and connections", |f| {
        let lp = new_loop();
        let with_loop = open_fds();
        let path = SockPath::new("fds");
        let probes = Probes::echo();
        let server = block_on(&lp, lp.create_unix_server(&path, probes.factory()))
            .unwrap()
            .unwrap();
        let client = Probe::new();
        let (t, _) = block_on(&lp, lp.create_unix_connection(&path, client.protocol()))
            .unwrap()
            .unwrap();
        accepted(&lp, &probes, 1);
        expect_fds(f, "unix listener + 2 connected", with_loop + 3);
        t.close();
        run_until(&lp, "both lost", || {
            client.is_lost() && probes.get(0).is_lost()
        });
        server.close();
        drop((server, t));
        expect_fds(f, "after unix close", with_loop);
        close_loop(lp);
    });

    leaks.case("async streams dropped", |f| {
        let lp = new_loop();
        let with_loop = open_fds();
        block_on(&lp, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let client = evloop::spawn(async move {
                let s = evloop::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(b"x").await.unwrap();
                s
            });
            let (conn, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 1];
            conn.read_exact(&mut b).await.unwrap();
            let s = client.await.unwrap();
            drop((s, conn, listener));

            let (a, b) = UnixStream::pair().unwrap();
            drop((a, b));
            let path = SockPath::new("fds-stream");
            let ul = UnixListener::bind(&path).unwrap();
            let uc = UnixStream::connect(&path).await.unwrap();
            let us = ul.accept().await.unwrap();
            drop((ul, uc, us));
            let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            drop(u);
        });
        expect_fds(f, "after the streams were dropped", with_loop);
        close_loop(lp);
    });

    leaks.case("a stream dropped while a task waits on it", |f| {
        let lp = new_loop();
        let with_loop = open_fds();
        let (a, b) = block_on(&lp, async { UnixStream::pair().unwrap() });
        let a = Rc::new(a);
        let a2 = a.clone();
        let reader = lp.create_task(async move {
            let mut buf = [0u8; 8];
            a2.read(&mut buf).await
        });
        run_iterations(&lp, 3);
        reader.cancel();
        run_iterations(&lp, 3);
        drop((a, b, reader));
        expect_fds(
            f,
            "after the cancelled reader and its stream were dropped",
            with_loop,
        );
        close_loop(lp);
    });

    leaks.case("datagram endpoint closed", |f| {
        let lp = new_loop();
        let with_loop = open_fds();
        let probe = DgProbe::echo();
        let (t, _) = block_on(
            &lp,
            lp.create_datagram_endpoint(Some("127.0.0.1:0"), None::<&str>, probe.protocol()),
        )
        .unwrap()
        .unwrap();
        t.close();
        run_until(&lp, "lost", || !probe.lost().is_empty());
        drop(t);
        expect_fds(f, "after the endpoint closed", with_loop);
        close_loop(lp);
    });

    leaks.case("host name resolution", |f| {
        let lp = new_loop();
        let with_loop = open_fds();
        let probes = Probes::new();
        let (server, addr) = tcp_server(&lp, probes.factory());
        let probe = Probe::new();
        let (t, _) = block_on(
            &lp,
            lp.create_connection(format!("localhost:{}", addr.port()), probe.protocol()),
        )
        .unwrap()
        .expect("connect to localhost");
        t.abort();
        run_until(&lp, "lost", || probe.is_lost());
        accepted(&lp, &probes, 1);
        probes.get(0).transport().abort();
        run_until(&lp, "server side lost", || probes.get(0).is_lost());
        server.close();
        drop((server, t));
        expect_fds(f, "after a connection by name", with_loop);
        close_loop(lp);
    });

    leaks.case("a protocol whose connection_lost panics", |f| {
        struct LostPanics;
        impl evloop::net::Protocol for LostPanics {
            fn data_received(&mut self, _: &[u8]) {}
            fn connection_lost(&mut self, _: Option<std::io::Error>) {
                panic!("boom in connection_lost");
            }
        }
        let lp = new_loop();
        let with_loop = open_fds();
        let panics = Rc::new(std::cell::Cell::new(0));
        let p2 = panics.clone();
        lp.set_exception_handler(move |_, _| p2.set(p2.get() + 1));
        let (server, addr) = tcp_server(&lp, || LostPanics);
        let c = std_client(addr);
        run_until(&lp, "accepted", || server.active_connections() == 1);
        drop(c);
        run_until(&lp, "the panic", || panics.get() == 1);
        run_iterations(&lp, 3);
        server.close();
        expect_fds(f, "after connection_lost panicked", with_loop);
        drop(server);
        close_loop(lp);
    });

    leaks.case("a datagram protocol whose connection_lost panics", |f| {
        struct LostPanics;
        impl evloop::net::DatagramProtocol for LostPanics {
            fn datagram_received(&mut self, _: &[u8], _: std::net::SocketAddr) {}
            fn connection_lost(&mut self, _: Option<std::io::Error>) {
                panic!("boom in connection_lost");
            }
        }
        let lp = new_loop();
        let with_loop = open_fds();
        let panics = Rc::new(std::cell::Cell::new(0));
        let p2 = panics.clone();
        lp.set_exception_handler(move |_, _| p2.set(p2.get() + 1));
        let (t, _) = block_on(
            &lp,
            lp.create_datagram_endpoint(Some("127.0.0.1:0"), None::<&str>, LostPanics),
        )
        .unwrap()
        .unwrap();
        t.close();
        run_until(&lp, "the panic", || panics.get() == 1);
        run_iterations(&lp, 3);
        drop(t);
        expect_fds(f, "after the datagram connection_lost panicked", with_loop);
        close_loop(lp);
    });

    // Closing the loop while things are open: the loop must let go of every socket it
    // owns. The protocols keep their transport (the usual pattern, as in the echo
    // example of `Protocol`'s docs), which a Rust user cannot be asked to break.
    leaks.case("loop closed with a listening server", |_| {
        let lp = new_loop();
        let probes = Probes::echo();
        let (server, _addr) = tcp_server(&lp, probes.factory());
        drop(server);
        close_loop(lp);
    });

    leaks.case(
        "loop closed with an open connection (protocol keeps its transport)",
        |_| {
            let lp = new_loop();
            let probes = Probes::echo();
            let (server, addr) = tcp_server(&lp, probes.factory());
            let c = std_client(addr);
            (&c).write_all(b"hi").unwrap();
            let p = accepted(&lp, &probes, 1);
            run_until(&lp, "echo", || p.data_len() == 2);
            drop((server, p, probes, c));
            close_loop(lp);
        },
    );

    leaks.case(
        "loop closed with an open connection (protocol without its transport)",
        |_| {
            struct Quiet;
            impl evloop::net::Protocol for Quiet {
                fn data_received(&mut self, _: &[u8]) {}
            }
            let lp = new_loop();
            let (server, addr) = tcp_server(&lp, || Quiet);
            let c = std_client(addr);
            (&c).write_all(b"hi").unwrap();
            run_until(&lp, "accepted", || server.active_connections() == 1);
            run_iterations(&lp, 3);
            drop((server, c));
            close_loop(lp);
        },
    );

    leaks.case("loop closed with an open datagram endpoint", |_| {
        let lp = new_loop();
        let probe = DgProbe::echo();
        let (t, _) = block_on(
            &lp,
            lp.create_datagram_endpoint(Some("127.0.0.1:0"), None::<&str>, probe.protocol()),
        )
        .unwrap()
        .unwrap();
        drop((t, probe));
        close_loop(lp);
    });

    leaks.case("loop closed with a task blocked on a stream", |_| {
        let lp = new_loop();
        let held = Rc::new(RefCell::new(None));
        let h2 = held.clone();
        let (a, b) = block_on(&lp, async { UnixStream::pair().unwrap() });
        *h2.borrow_mut() = Some(b);
        let task = lp.create_task(async move {
            let mut buf = [0u8; 8];
            let _ = a.read(&mut buf).await;
        });
        run_iterations(&lp, 3);
        drop(task);
        held.borrow_mut().take();
        close_loop(lp);
    });

    leaks.case(
        "loop closed with a connection in the middle of a flush",
        |_| {
            let lp = new_loop();
            let probes = Probes::new();
            let (server, addr) = tcp_server(&lp, probes.factory());
            let c = small_window_client(addr);
            let p = accepted(&lp, &probes, 1);
            buffer_up(&p.transport(), MIB);
            p.transport().close();
            run_iterations(&lp, 2);
            drop((server, p, probes, c));
            close_loop(lp);
        },
    );

    // Dropped without close(): nothing owns the loop any more, so nothing may keep
    // its sockets (or its epoll fd) open either.
    leaks.case(
        "loop dropped without close() with a server, a connection and an endpoint",
        |_| {
            let lp = new_loop();
            let probes = Probes::echo();
            let (server, addr) = tcp_server(&lp, probes.factory());
            let c = small_window_client(addr);
            let p = accepted(&lp, &probes, 1);
            buffer_up(&p.transport(), MIB);
            let probe = DgProbe::echo();
            let (t, _) = block_on(
                &lp,
                lp.create_datagram_endpoint(Some("127.0.0.1:0"), None::<&str>, probe.protocol()),
            )
            .unwrap()
            .unwrap();
            drop((t, probe, p, probes, c));
            drop(lp);
            drop(server);
        },
    );

    // Sanity: the counter sees a socket.
    let before = open_fds();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(open_fds(), before + 1, "the fd counter works");
    drop(sock);

    assert!(
        leaks.0.is_empty(),
        "{} fd problem(s):\n\n{}",
        leaks.0.len(),
        leaks.0.join("\n\n")
    );
}
