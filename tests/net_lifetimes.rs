//! No reference cycle survives a connection: every protocol, datagram protocol and
//! server factory is dropped exactly once, counted with drop counters, by every way
//! its life ends (the peer's EOF, `close`, `abort`, a reset, a panicking protocol,
//! the loop closing, the loop dropped without `close`). The protocols here keep a
//! clone of their transport, the documented idiom that forms the cycle
//! protocol → transport → protocol which the transport must break after
//! `connection_lost`.
//!
//! Behaviour ported from CPython's `test_selector_events.py`
//! (`test_connection_lost`: after `_call_connection_lost` the transport's `_protocol`
//! and `_sock` are `None`) and `test_events.py` (many connections served, then the
//! server closed).

#[path = "util/net.rs"]
mod net_util;
mod util;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;

use evloop::net::{DatagramProtocol, DatagramTransport, Protocol, Transport};
use net_util::*;
use util::{DropToken, Drops};

/// What a [`Keeper`] heard, shared with the test.
#[derive(Clone, Default)]
struct Seen {
    made: Rc<Cell<usize>>,
    lost: Rc<Cell<usize>>,
}

/// A protocol that keeps its transport (the cycle) and a drop token; it may write a
/// big reply (so that something stays buffered) and close on EOF or at once.
struct Keeper {
    t: Option<Transport>,
    seen: Seen,
    _token: DropToken,
    /// Written in `connection_made`.
    greeting: usize,
    close_at_once: bool,
    abort_at_once: bool,
}

impl Keeper {
    fn new(seen: &Seen, drops: &Drops) -> Keeper {
        Keeper {
            t: None,
            seen: seen.clone(),
            _token: drops.token(),
            greeting: 0,
            close_at_once: false,
            abort_at_once: false,
        }
    }
}

impl Protocol for Keeper {
    fn connection_made(&mut self, t: &Transport) {
        self.seen.made.set(self.seen.made.get() + 1);
        self.t = Some(t.clone());
        if self.greeting > 0 {
            t.write(&vec![b'g'; self.greeting]);
        }
        if self.close_at_once {
            t.close();
        }
        if self.abort_at_once {
            t.abort();
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        self.t.as_ref().unwrap().write(data);
    }

    fn connection_lost(&mut self, _: Option<io::Error>) {
        self.seen.lost.set(self.seen.lost.get() + 1);
    }
}

/// A factory that counts its own drop.
fn counted_factory(
    seen: &Seen,
    protocols: &Drops,
    factory_drops: &Drops,
    configure: impl Fn(&mut Keeper) + 'static,
) -> impl FnMut() -> Keeper + 'static {
    let (seen, protocols, token) = (seen.clone(), protocols.clone(), factory_drops.token());
    move || {
        token.hold();
        let mut k = Keeper::new(&seen, &protocols);
        configure(&mut k);
        k
    }
}

fn read_all_blocking(mut s: &TcpStream) -> Vec<u8> {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// Reads until the peer has closed (EOF, or a reset); fails on a timeout.
fn assert_closed_by_peer(mut s: &TcpStream) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = vec![0; 256 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the peer's socket was not closed: {e}"),
        }
    }
}

/// The reviewer's case: many served connections, each ended by the peer's EOF. Every
/// protocol is dropped exactly once, right after its `connection_lost` (not at the
/// end of the test), and the factory once the server is closed.
#[test]
fn every_served_protocol_is_dropped_after_connection_lost() {
    const N: usize = 300;
    let lp = new_loop();
    let (seen, protocols, factory) = (Seen::default(), Drops::new(), Drops::new());
    let (server, addr) = tcp_server(&lp, counted_factory(&seen, &protocols, &factory, |_| {}));
    for i in 0..N {
        let c = std_client(addr);
        (&c).write_all(b"ping").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        run_until(&lp, "echo and close", || {
            drain_into(&c, &mut got).unwrap() && seen.lost.get() == i + 1
        });
        assert_eq!(got, b"ping");
        assert_eq!(
            protocols.dropped(),
            i + 1,
            "connection #{i}: connection_lost ran but its protocol is still alive"
        );
    }
    assert_eq!(seen.made.get(), N);
    assert_eq!(server.active_connections(), 0);
    assert_eq!(factory.dropped(), 0, "the factory is needed while serving");
    server.close();
    assert_eq!(factory.dropped(), 1, "the factory outlived close()");
    drop(server);
    lp.close().unwrap();
    assert_eq!((protocols.made(), protocols.dropped()), (N, N));
    assert_eq!(factory.dropped(), 1);
}

/// Every way a server-side connection ends lets go of the protocol, once; a
/// buffered reply is dropped with it.
#[test]
fn each_end_of_a_connection_drops_its_protocol_once() {
    let lp = new_loop();
    let seen = Seen::default();
    let protocols = Drops::new();
    let factory = Drops::new();
    let mode = Rc::new(Cell::new(0u8));
    let m = mode.clone();
    let (server, addr) = tcp_server(
        &lp,
        counted_factory(&seen, &protocols, &factory, move |k| match m.get() {
            0 => {}
            1 => {
                k.greeting = 8 * 1024 * 1024; // buffered: the peer does not read
                k.abort_at_once = true;
            }
            2 => k.close_at_once = true,
            _ => k.greeting = 8 * 1024 * 1024,
        }),
    );

    // The peer resets (RST) while the protocol has megabytes buffered.
    mode.set(3);
    let c = small_window_client(addr);
    run_until(&lp, "made", || seen.made.get() == 1);
    set_linger_zero(&c);
    drop(c);
    run_until(&lp, "lost after the reset", || seen.lost.get() == 1);
    assert_eq!(protocols.dropped(), 1, "after a reset");

    // abort() with a buffer.
    mode.set(1);
    let c = small_window_client(addr);
    run_until(&lp, "lost after abort", || seen.lost.get() == 2);
    assert_eq!(protocols.dropped(), 2, "after abort()");
    drop(c);

    // close() at once: the peer reads EOF.
    mode.set(2);
    let c = std_client(addr);
    run_until(&lp, "lost after close", || seen.lost.get() == 3);
    assert_eq!(read_all_blocking(&c), b"");
    assert_eq!(protocols.dropped(), 3, "after close()");

    assert_eq!(server.active_connections(), 0);
    drop(server); // the last handle: the server closes, the factory goes
    assert_eq!(
        factory.dropped(),
        1,
        "the factory outlived its last Server handle"
    );
    lp.close().unwrap();
    assert_eq!((protocols.made(), protocols.dropped()), (3, 3));
}

/// A client protocol (`create_connection`) whose caller lets go of the transport and
/// the protocol handle it got: dropped once the connection is lost, with the loop
/// still running.
#[test]
fn a_client_protocol_is_dropped_after_connection_lost() {
    let lp = new_loop();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (seen, drops) = (Seen::default(), Drops::new());
    let (t, p) = block_on(&lp, lp.create_connection(addr, Keeper::new(&seen, &drops)))
        .unwrap()
        .unwrap();
    let (peer, _) = l.accept().unwrap();
    drop(p);
    t.close();
    drop(t);
    run_until(&lp, "lost", || seen.lost.get() == 1);
    assert_eq!(
        drops.dropped(),
        1,
        "the client protocol outlived its connection"
    );
    assert_eq!(read_all_blocking(&peer), b"");
}

/// The loop closes with connections open (one of them with a buffer): one
/// `connection_lost` each, every protocol dropped, the factory too, though the
/// server was never closed and the test keeps its handle.
#[test]
fn closing_the_loop_drops_open_protocols_and_the_factory() {
    let lp = new_loop();
    let (seen, protocols, factory) = (Seen::default(), Drops::new(), Drops::new());
    let (server, addr) = tcp_server(
        &lp,
        counted_factory(&seen, &protocols, &factory, |k| {
            k.greeting = 4 * 1024 * 1024
        }),
    );
    let clients: Vec<_> = (0..5).map(|_| small_window_client(addr)).collect();
    run_until(&lp, "all made", || seen.made.get() == 5);
    lp.close().unwrap();
    assert_eq!(seen.lost.get(), 5, "one connection_lost each");
    assert_eq!(protocols.dropped(), 5, "protocols kept alive after close()");
    assert_eq!(factory.dropped(), 1, "the factory outlived the closed loop");
    assert!(
        !server.is_serving(),
        "a closed loop's server serves nothing"
    );
    assert_eq!(server.active_connections(), 0);
    for c in &clients {
        assert_closed_by_peer(c);
    }
}

/// The loop is dropped without `close()` with connections, a datagram endpoint and
/// a server open: everything still ends, once.
#[test]
fn dropping_the_loop_without_close_drops_everything_once() {
    let lp = new_loop();
    let (seen, protocols, factory) = (Seen::default(), Drops::new(), Drops::new());
    let (server, addr) = tcp_server(&lp, counted_factory(&seen, &protocols, &factory, |_| {}));
    let clients: Vec<_> = (0..3).map(|_| std_client(addr)).collect();
    run_until(&lp, "all made", || seen.made.get() == 3);
    let (dg_seen, dg_drops) = (DgSeen::default(), Drops::new());
    let (dt, dp) = block_on(
        &lp,
        lp.create_datagram_endpoint(
            Some("127.0.0.1:0"),
            None::<&str>,
            DgKeeper::new(&dg_seen, &dg_drops),
        ),
    )
    .unwrap()
    .unwrap();
    drop((dt, dp));
    drop(server);
    // The server handle is gone, so the factory went with it; the connections live on.
    assert_eq!(factory.dropped(), 1);
    assert_eq!(protocols.dropped(), 0);
    drop(lp);
    assert_eq!(seen.lost.get(), 3, "one connection_lost each");
    assert_eq!(protocols.dropped(), 3, "protocols leaked with the loop");
    assert_eq!(dg_seen.lost.get(), 1);
    assert_eq!(
        dg_drops.dropped(),
        1,
        "the datagram protocol leaked with the loop"
    );
    for c in &clients {
        assert_eq!(read_all_blocking(c), b"", "the socket was not closed");
    }
}

/// A factory that keeps a clone of its own `Server` (a cycle server → factory →
/// server): dropped at `close()`, and at the latest when the loop closes or is
/// dropped.
#[test]
fn a_factory_that_keeps_its_server_is_dropped_when_the_server_ends() {
    for end in ["close", "loop close", "loop drop"] {
        let lp = new_loop();
        let (seen, protocols, factory) = (Seen::default(), Drops::new(), Drops::new());
        let slot: Rc<RefCell<Option<evloop::Server>>> = Rc::default();
        let s2 = slot.clone();
        let mut inner = counted_factory(&seen, &protocols, &factory, |_| {});
        let (server, addr) = tcp_server(&lp, move || {
            assert!(s2.borrow().is_some());
            inner()
        });
        *slot.borrow_mut() = Some(server.clone());
        // The factory holds the server through `slot`; the test lets go of both.
        let factory_slot = Rc::downgrade(&slot);
        drop(slot);
        let c = std_client(addr);
        run_until(&lp, "made", || seen.made.get() == 1);
        drop(c);
        run_until(&lp, "lost", || seen.lost.get() == 1);
        assert_eq!(factory.dropped(), 0, "{end}: dropped while serving");
        match end {
            "close" => {
                server.close();
                drop(server);
                assert_eq!(factory.dropped(), 1, "{end}: the factory outlived close()");
                lp.close().unwrap();
            }
            "loop close" => {
                drop(server);
                lp.close().unwrap();
            }
            _ => {
                drop(server);
                drop(lp);
            }
        }
        assert_eq!(factory.dropped(), 1, "{end}: the factory leaked");
        assert!(factory_slot.upgrade().is_none(), "{end}: the server leaked");
        assert_eq!(protocols.dropped(), 1);
    }
}

/// A factory that closes its own server while it runs: the connection it made is
/// served, and the factory is dropped once it has returned.
#[test]
fn a_factory_that_closes_its_server_is_dropped_after_it_returns() {
    let lp = new_loop();
    let (seen, protocols, factory) = (Seen::default(), Drops::new(), Drops::new());
    let slot: Rc<RefCell<Option<evloop::Server>>> = Rc::default();
    let s2 = slot.clone();
    let f2 = factory.clone();
    let mut inner = counted_factory(&seen, &protocols, &factory, |_| {});
    let (server, addr) = tcp_server(&lp, move || {
        s2.borrow().as_ref().unwrap().close();
        assert_eq!(f2.dropped(), 0, "dropped while running");
        inner()
    });
    *slot.borrow_mut() = Some(server.clone());
    let c = std_client(addr);
    run_until(&lp, "made", || seen.made.get() == 1);
    assert!(!server.is_serving());
    assert_eq!(factory.dropped(), 1);
    (&c).write_all(b"still served").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    run_until(&lp, "echo", || drain_into(&c, &mut got).unwrap());
    assert_eq!(got, b"still served");
    run_until(&lp, "lost", || seen.lost.get() == 1);
    assert_eq!(protocols.dropped(), 1);
    slot.borrow_mut().take();
}

/// A protocol whose methods panic is still dropped once (the panic ends the
/// connection), and so is one whose destructor panics (reported, no abort).
#[test]
fn panicking_protocols_are_dropped_once() {
    struct Bad {
        t: Option<Transport>,
        _token: DropToken,
        lost: Rc<Cell<usize>>,
        panic_in_drop: bool,
    }
    impl Protocol for Bad {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, _: &[u8]) {
            panic!("boom in data_received");
        }
        fn connection_lost(&mut self, _: Option<io::Error>) {
            self.lost.set(self.lost.get() + 1);
            panic!("boom in connection_lost");
        }
    }
    impl Drop for Bad {
        fn drop(&mut self) {
            if self.panic_in_drop {
                panic!("boom in Drop");
            }
        }
    }
    let lp = new_loop();
    let panics = Rc::new(RefCell::new(Vec::new()));
    let p2 = panics.clone();
    lp.set_exception_handler(move |_, ctx| p2.borrow_mut().push(ctx.to_string()));
    let (drops, lost) = (Drops::new(), Rc::new(Cell::new(0)));
    let (d2, l2) = (drops.clone(), lost.clone());
    let n = Rc::new(Cell::new(0));
    let (_server, addr) = tcp_server(&lp, move || {
        n.set(n.get() + 1);
        Bad {
            t: None,
            _token: d2.token(),
            lost: l2.clone(),
            panic_in_drop: n.get() == 2,
        }
    });
    for i in 1..=2 {
        let c = std_client(addr);
        (&c).write_all(b"x").unwrap();
        run_until(&lp, "lost", || lost.get() == i);
        assert_eq!(
            drops.dropped(),
            i,
            "connection #{i}: the protocol outlived it"
        );
        assert_eq!(
            read_all_blocking(&c),
            b"",
            "connection #{i}: socket not closed"
        );
    }
    let panics = panics.borrow();
    let count = |what: &str| panics.iter().filter(|p| p.contains(what)).count();
    assert_eq!(count("boom in data_received"), 2, "{panics:#?}");
    assert_eq!(count("boom in connection_lost"), 2, "{panics:#?}");
    assert_eq!(count("boom in Drop"), 1, "{panics:#?}");
}

// ------------------------------------------------------------------ datagrams

#[derive(Clone, Default)]
struct DgSeen {
    lost: Rc<Cell<usize>>,
    got: Rc<Cell<usize>>,
}

struct DgKeeper {
    t: Option<DatagramTransport>,
    seen: DgSeen,
    _token: DropToken,
}

impl DgKeeper {
    fn new(seen: &DgSeen, drops: &Drops) -> DgKeeper {
        DgKeeper {
            t: None,
            seen: seen.clone(),
            _token: drops.token(),
        }
    }
}

impl DatagramProtocol for DgKeeper {
    fn connection_made(&mut self, t: &DatagramTransport) {
        self.t = Some(t.clone());
    }
    fn datagram_received(&mut self, data: &[u8], from: SocketAddr) {
        self.seen.got.set(self.seen.got.get() + 1);
        self.t.as_ref().unwrap().sendto(data, Some(from));
    }
    fn connection_lost(&mut self, _: Option<io::Error>) {
        self.seen.lost.set(self.seen.lost.get() + 1);
    }
}

/// A datagram protocol that keeps its transport is dropped once the endpoint is
/// closed (or aborted, or its loop closed), with the loop still alive.
#[test]
fn a_datagram_protocol_is_dropped_after_connection_lost() {
    for end in ["close", "abort", "loop close"] {
        let lp = new_loop();
        let (seen, drops) = (DgSeen::default(), Drops::new());
        let (t, p) = block_on(
            &lp,
            lp.create_datagram_endpoint(
                Some("127.0.0.1:0"),
                None::<&str>,
                DgKeeper::new(&seen, &drops),
            ),
        )
        .unwrap()
        .unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"ping", t.local_addr().unwrap()).unwrap();
        run_until(&lp, "echoed", || seen.got.get() == 1);
        drop(p);
        match end {
            "close" => t.close(),
            "abort" => t.abort(),
            _ => lp.close().unwrap(),
        }
        drop(t);
        if end != "loop close" {
            run_until(&lp, "lost", || seen.lost.get() == 1);
        }
        assert_eq!(seen.lost.get(), 1, "{end}");
        assert_eq!(
            drops.dropped(),
            1,
            "{end}: the datagram protocol outlived its endpoint"
        );
    }
}
