//! Host names: `"localhost:PORT"` (and `("localhost", port)`) is resolved off the loop,
//! on its executor, then connected / bound; every API that takes an address accepts
//! one. Malformed addresses fail with `InvalidInput`, without a resolver round trip.

#[path = "util/net.rs"]
mod net_util;

use std::cell::Cell;
use std::io::ErrorKind;
use std::rc::Rc;
use std::time::Duration;

use evloop::net::{TcpListener, TcpStream, UdpSocket};
use net_util::*;

#[test]
fn create_connection_to_localhost_by_name() {
    let lp = new_loop();
    let probes = Probes::echo();
    let (_server, addr) = tcp_server(&lp, probes.factory());

    // The loop keeps running callbacks while the name is resolved.
    let ticks = Rc::new(Cell::new(0));
    let t2 = ticks.clone();
    fn tick(lp: &evloop::Loop, t: Rc<Cell<u32>>) {
        t.set(t.get() + 1);
        lp.call_later(Duration::from_millis(1), move |lp| tick(lp, t));
    }
    lp.call_soon(move |lp| tick(lp, t2));

    let client = Probe::new();
    let (t, _) = block_on(
        &lp,
        lp.create_connection(format!("localhost:{}", addr.port()), client.protocol()),
    )
    .unwrap()
    .expect("create_connection(\"localhost:PORT\")");
    let peer = t.peer_addr().unwrap();
    assert!(peer.ip().is_loopback(), "{peer}");
    assert_eq!(peer.port(), addr.port());
    assert!(ticks.get() > 0);
    t.write(b"by name");
    run_until(&lp, "echo", || client.data_len() == 7);
    assert_eq!(client.data(), b"by name");
    t.close();
    run_until(&lp, "lost", || client.is_lost());
}

#[test]
fn streams_and_servers_by_name() {
    let lp = new_loop();
    block_on(&lp, async {
        let listener = TcpListener::bind("localhost:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback());
        let accept = evloop::spawn(async move { listener.accept().await.map(drop) });
        let s = TcpStream::connect(("localhost", addr.port()))
            .await
            .unwrap();
        assert_eq!(s.peer_addr().unwrap().port(), addr.port());
        accept.await.unwrap().unwrap();

        let a = UdpSocket::bind("localhost:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        b.connect(format!("localhost:{}", a.local_addr().unwrap().port()))
            .await
            .unwrap();
        assert!(b.peer_addr().unwrap().ip().is_loopback());
    });

    // create_server binds every address the name resolves to.
    let probes = Probes::echo();
    let server = block_on(&lp, lp.create_server("localhost:0", probes.factory()))
        .unwrap()
        .expect("create_server(\"localhost:0\")");
    let addrs = server.local_addrs();
    assert!(!addrs.is_empty());
    for a in &addrs {
        assert!(a.ip().is_loopback(), "{a}");
        let c = std_client(*a);
        drop(c);
    }
    run_until(&lp, "every address accepted a connection", || {
        probes.len() == addrs.len()
    });

    let probe = DgProbe::new();
    let (t, _) = block_on(
        &lp,
        lp.create_datagram_endpoint(Some("localhost:0"), None::<&str>, probe.protocol()),
    )
    .unwrap()
    .expect("datagram endpoint by name");
    assert!(t.local_addr().unwrap().ip().is_loopback());
}

#[test]
fn malformed_addresses_are_invalid_input() {
    let lp = new_loop();
    for bad in ["127.0.0.1", "localhost", "", "[::1]"] {
        let r = block_on(&lp, lp.create_connection(bad, Probe::new().protocol())).unwrap();
        let err = r.err().unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
        let err = block_on(&lp, TcpStream::connect(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
    }
}
