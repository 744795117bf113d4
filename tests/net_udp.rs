//! UDP: `create_datagram_endpoint` with a local address only, a remote only, and
//! both; `datagram_received` with the sender's address; `sendto` with and without an
//! address; `error_received` for ICMP port unreachable on a connected endpoint and
//! for `sendto` without an address on an unconnected one; `close` / `abort` → one
//! `connection_lost(None)`; and the async `UdpSocket` (send_to / recv_from /
//! connect / send / recv).
//!
//! Behaviour ported from CPython's `test_events.py` (create_datagram_endpoint,
//! connected datagram endpoints) and `test_selector_events.py`
//! (`SelectorDatagramTransportTests`: sendto, sendto with no address, error_received,
//! close).

#[path = "util/net.rs"]
mod net_util;

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::time::Duration;

use evloop::net::UdpSocket;
use net_util::*;

fn std_udp() -> StdUdpSocket {
    let s = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// A loopback port with nothing bound to it (bound, then released).
fn closed_udp_port() -> SocketAddr {
    StdUdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn local_only_endpoint_receives_with_sender_and_echoes() {
    let lp = new_loop();
    let probe = DgProbe::echo();
    let (t, proto) = block_on(
        &lp,
        lp.create_datagram_endpoint(Some("127.0.0.1:0"), None::<&str>, probe.protocol()),
    )
    .unwrap()
    .expect("endpoint");
    assert_eq!(
        probe.events(),
        vec![DgEv::Made],
        "connection_made before the task completes"
    );
    assert!(std::rc::Rc::ptr_eq(&proto.borrow().0.0, &probe.0));
    let local = t.local_addr().unwrap();
    assert_eq!(local.ip().to_string(), "127.0.0.1");
    assert_ne!(local.port(), 0);
    assert_eq!(t.peer_addr(), None);

    let c1 = std_udp();
    let c2 = std_udp();
    c1.send_to(b"one", local).unwrap();
    c2.send_to(b"two", local).unwrap();
    c1.send_to(b"three", local).unwrap();
    run_until(&lp, "three datagrams", || probe.datagrams().len() == 3);
    let got = probe.datagrams();
    let from_c1: Vec<&[u8]> = got
        .iter()
        .filter(|(_, a)| *a == c1.local_addr().unwrap())
        .map(|(d, _)| d.as_slice())
        .collect();
    assert_eq!(from_c1, [&b"one"[..], b"three"], "sender address and order");
    assert!(got.contains(&(b"two".to_vec(), c2.local_addr().unwrap())));

    // The echo went back to each sender.
    let mut buf = [0u8; 16];
    let (n, from) = c2.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"two"[..], local));
    let (n, _) = c1.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");

    // An empty datagram is a datagram.
    c2.send_to(b"", local).unwrap();
    run_until(&lp, "empty datagram", || probe.datagrams().len() == 4);
    assert_eq!(probe.datagrams()[3].0, b"");

    // A datagram larger than 64 KiB cannot exist, but 60 KiB must arrive whole.
    let big = payload(60 * 1024);
    c1.send_to(&big, local).unwrap();
    run_until(&lp, "big datagram", || probe.datagrams().len() == 5);
    assert_bytes_eq(&probe.datagrams()[4].0, &big, "60 KiB datagram");
    assert!(probe.errors().is_empty(), "{:?}", probe.errors());
}

#[test]
fn remote_only_endpoint_is_connected() {
    let lp = new_loop();
    let server = std_udp();
    let server_addr = server.local_addr().unwrap();
    let probe = DgProbe::new();
    let (t, _) = block_on(
        &lp,
        lp.create_datagram_endpoint(None::<&str>, Some(server_addr), probe.protocol()),
    )
    .unwrap()
    .expect("endpoint");
    assert_eq!(t.peer_addr(), Some(server_addr));
    let local = t.local_addr().unwrap();
    assert_ne!(local.port(), 0);

    t.sendto(b"hello server", None);
    let mut buf = [0u8; 32];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello server");
    assert_eq!(from.port(), local.port());

    server.send_to(b"hello client", from).unwrap();
    // A stranger's datagram is filtered out by the connected socket.
    let stranger = std_udp();
    stranger.send_to(b"spam", from).unwrap();
    run_until(&lp, "reply", || !probe.datagrams().is_empty());
    run_for(&lp, Duration::from_millis(30));
    assert_eq!(
        probe.datagrams(),
        vec![(b"hello client".to_vec(), server_addr)]
    );
}

#[test]
fn local_and_remote_endpoint() {
    let lp = new_loop();
    let server = std_udp();
    let server_addr = server.local_addr().unwrap();
    let probe = DgProbe::new();
    let (t, _) = block_on(
        &lp,
        lp.create_datagram_endpoint(Some("127.0.0.1:0"), Some(server_addr), probe.protocol()),
    )
    .unwrap()
    .unwrap();
    let local = t.local_addr().unwrap();
    assert_eq!(local.ip().to_string(), "127.0.0.1");
    t.sendto(b"ping", Some(server_addr));
    t.sendto(b"ping2", None);
    let mut buf = [0u8; 8];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"ping"[..], local));
    let (n, _) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping2");
    server.send_to(b"pong", local).unwrap();
    run_until(&lp, "pong", || !probe.datagrams().is_empty());
    assert_eq!(probe.datagrams(), vec![(b"pong".to_vec(), server_addr)]);
}

#[test]
fn neither_local_nor_remote_is_an_error() {
    let lp = new_loop();
    let probe = DgProbe::new();
    let r = block_on(
        &lp,
        lp.create_datagram_endpoint(None::<&str>, None::<&str>, probe.protocol()),
    )
    .unwrap();
    assert_eq!(r.err().expect("no address").kind(), ErrorKind::InvalidInput);
    assert!(
        probe.events().is_empty(),
        "no callback for an endpoint never made"
    );
}

#[test]
fn sendto_without_address_on_unconnected_endpoint_reports_an_error() {
    let lp = new_loop();
    let probe = DgProbe::new();
    let (t, _) = block_on(
        &lp,
        lp.create_datagram_endpoint(Some("127.0.0.1:0"), None::<&str>, probe.protocol()),
    )
    .unwrap()
    .unwrap();
    t.sendto(b"where to?", None);
    run_until(&lp, "error_received", || !probe.errors().is_empty());
    assert_eq!(probe.errors(), vec![ErrorKind::InvalidInput]);
    assert!(!t.is_closing(), "the endpoint stays open");
}

/// ICMP port unreachable comes back to a connected socket as ECONNREFUSED on a later
/// receive: the protocol hears it through `error_received` and the endpoint stays
/// open and usable.
#[test]
fn connected_endpoint_to_a_closed_port_gets_error_received() {
    let lp = new_loop();
    let dead = closed_udp_port();
    let probe = DgProbe::new();
    let (t, _) = block_on(
        &lp,
        lp.create_datagram_endpoint(Some("127.0.0.1:0"), Some(dead), probe.protocol()),
    )
    .unwrap()
    .unwrap();
    run_until(&lp, "error_received(ConnectionRefused)", || {
        if probe.errors().is_empty() {
            t.sendto(b"anyone?", None);
        }
        !probe.errors().is_empty()
    });
    assert_eq!(probe.errors()[0], ErrorKind::ConnectionRefused);
    assert!(!t.is_closing(), "an ICMP error does not close the endpoint");
    assert!(probe.lost().is_empty());
    t.close();
    run_until(&lp, "lost", || !probe.lost().is_empty());
    assert_eq!(probe.lost(), vec![None]);
}

#[test]
fn close_and_abort_lose_once() {
    for abort in [false, true] {
        let lp = new_loop();
        let probe = DgProbe::echo();
        let (t, _) = block_on(
            &lp,
            lp.create_datagram_endpoint(Some("127.0.0.1:0"), None::<&str>, probe.protocol()),
        )
        .unwrap()
        .unwrap();
        let local = t.local_addr().unwrap();
        if abort {
            t.abort();
        } else {
            t.close();
        }
        assert!(t.is_closing());
        t.close();
        t.abort();
        t.sendto(b"ignored", Some(local));
        run_until(&lp, "lost", || !probe.lost().is_empty());
        run_for(&lp, Duration::from_millis(20));
        assert_eq!(probe.lost(), vec![None], "abort={abort}");
        // Closed: nothing is received any more.
        let c = std_udp();
        let _ = c.send_to(b"late", local);
        run_for(&lp, Duration::from_millis(20));
        assert!(probe.datagrams().is_empty(), "abort={abort}");
        assert!(t.local_addr().is_err(), "the socket is closed");
        assert_eq!(t.write_buffer_size(), 0);
        assert_eq!(probe.events().len(), 2, "{:?}", probe.events());
    }
}

/// Many datagrams in one burst: more than one read budget's worth arrive, none lost
/// (the socket's buffer holds them), in order from one sender.
#[test]
fn a_burst_of_datagrams() {
    let lp = new_loop();
    let probe = DgProbe::new();
    let (t, _) = block_on(
        &lp,
        lp.create_datagram_endpoint(Some("127.0.0.1:0"), None::<&str>, probe.protocol()),
    )
    .unwrap()
    .unwrap();
    let local = t.local_addr().unwrap();
    let c = std_udp();
    for i in 0..200u32 {
        c.send_to(&i.to_le_bytes(), local).unwrap();
    }
    run_until(&lp, "200 datagrams", || probe.datagrams().len() == 200);
    let got: Vec<u32> = probe
        .datagrams()
        .iter()
        .map(|(d, _)| u32::from_le_bytes(d[..4].try_into().unwrap()))
        .collect();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
}

#[test]
fn async_udp_socket_send_to_recv_from_connect_send_recv() {
    let lp = new_loop();
    block_on(&lp, async {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        assert!(format!("{a:?}").contains(&aa.to_string()));

        // recv_from waits for a datagram sent later.
        let b = std::rc::Rc::new(b);
        let b2 = b.clone();
        let receiver = evloop::spawn(async move {
            let mut buf = [0u8; 16];
            let (n, from) = b2.recv_from(&mut buf).await.unwrap();
            (buf[..n].to_vec(), from)
        });
        evloop::sleep(Duration::from_millis(10)).await;
        assert!(!receiver.is_done());
        assert_eq!(a.send_to(b"hi b", ba).await.unwrap(), 4);
        assert_eq!(receiver.await.unwrap(), (b"hi b".to_vec(), aa));

        // Connected: send / recv, peer_addr.
        assert!(a.peer_addr().is_err(), "not connected yet");
        a.connect(ba).await.unwrap();
        assert_eq!(a.peer_addr().unwrap(), ba);
        a.send(b"via send").await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"via send"[..], aa));
        b.send_to(b"back", aa).await.unwrap();
        let n = a.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"back");

        // Connected to a closed port: the ICMP error surfaces on recv.
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.connect(closed_udp_port()).await.unwrap();
        c.send(b"x").await.unwrap();
        let r = evloop::timeout(Duration::from_secs(5), c.recv(&mut buf)).await;
        let err = r.expect("recv must wake for the ICMP error").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    });
}

/// A panic in `datagram_received` is reported, and must not leave the datagrams
/// already queued in the socket stranded (edge-triggered: no new event comes for
/// them): either they are delivered or, as asyncio treats an exception there, the
/// endpoint is closed with `connection_lost`.
#[test]
fn a_panic_in_datagram_received_does_not_stall_the_endpoint() {
    struct PanicOnFirst(DgProbe);
    impl evloop::net::DatagramProtocol for PanicOnFirst {
        fn connection_made(&mut self, t: &evloop::net::DatagramTransport) {
            self.0.protocol().connection_made(t);
        }
        fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
            let first = self.0.datagrams().is_empty();
            self.0.protocol().datagram_received(data, addr);
            if first {
                panic!("boom in datagram_received");
            }
        }
        fn connection_lost(&mut self, e: Option<std::io::Error>) {
            self.0.protocol().connection_lost(e);
        }
    }
    let lp = new_loop();
    let panics = std::rc::Rc::new(std::cell::Cell::new(0));
    let p2 = panics.clone();
    lp.set_exception_handler(move |_, _| p2.set(p2.get() + 1));
    let probe = DgProbe::new();
    let (t, _) = block_on(
        &lp,
        lp.create_datagram_endpoint(
            Some("127.0.0.1:0"),
            None::<&str>,
            PanicOnFirst(probe.clone()),
        ),
    )
    .unwrap()
    .unwrap();
    let c = std_udp();
    for d in [&b"one"[..], b"two", b"three"] {
        c.send_to(d, t.local_addr().unwrap()).unwrap();
    }
    run_until(&lp, "the panic", || panics.get() == 1);
    run_for(&lp, Duration::from_millis(200));
    assert!(
        probe.datagrams().len() == 3 || !probe.lost().is_empty(),
        "datagrams left in the socket after a panic are never delivered, and the \
         endpoint is not closed: {:?}",
        probe.events()
    );
}
