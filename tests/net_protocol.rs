//! `Protocol` / `Transport` over TCP and Unix sockets: echo both ways with payloads
//! large enough to force partial writes, the write buffer growing and draining, flow
//! control (`pause_writing` / `resume_writing` at the water marks,
//! `set_write_buffer_limits`), `pause_reading` / `resume_reading`, `write_eof`
//! (also with buffered data), and the order of the protocol's callbacks.
//!
//! Behaviour ported from CPython's `test_selector_events.py`
//! (`SelectorSocketTransportTests`: write buffering, partial writes, write_eof with a
//! buffer, pause/resume) and `test_events.py` (create_server / create_connection and
//! their Unix twins), against real sockets instead of mocks.

#[path = "util/net.rs"]
mod net_util;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use evloop::net::Transport;
use net_util::*;

const MIB: usize = 1024 * 1024;

/// Client and server both on the Protocol API: the client writes megabytes at once (the
/// socket takes a part, the transport buffers the rest), the server echoes, the client
/// gets back every byte in order; then a clean close on both sides.
#[test]
fn tcp_echo_protocol_to_protocol_multi_mib() {
    let lp = new_loop();
    let probes = Probes::echo();
    let (server, addr) = tcp_server(&lp, probes.factory());

    let client = Probe::new();
    let (t, proto) = block_on(&lp, lp.create_connection(addr, client.protocol()))
        .unwrap()
        .expect("create_connection");
    // connection_made ran before the task completed.
    assert_eq!(client.events(), vec![Ev::Made]);
    assert!(
        std::rc::Rc::ptr_eq(&proto.borrow().0.0, &client.0),
        "the same protocol"
    );
    assert_eq!(t.peer_addr().unwrap(), addr);

    let data = buffer_up(&t, MIB);
    let mut max_buffered = t.write_buffer_size();
    run_until(&lp, "megabytes echoed", || {
        max_buffered = max_buffered.max(t.write_buffer_size());
        client.data_len() >= data.len()
    });
    assert_bytes_eq(&client.data(), &data, "echo");
    assert_eq!(t.write_buffer_size(), 0, "the buffer drained");
    assert!(max_buffered > 0);

    let srv = probes.get(0);
    assert_bytes_eq(&srv.data(), &data, "server side");
    assert_eq!(
        srv.transport().peer_addr().unwrap(),
        t.local_addr().unwrap()
    );

    t.close();
    assert!(t.is_closing());
    run_until(&lp, "both sides lost", || client.is_lost() && srv.is_lost());
    // The big write went over the high-water mark and drained.
    assert_eq!(
        client.lifecycle(),
        vec![Ev::Made, Ev::Pause, Ev::Resume, Ev::Lost(None)]
    );
    // The server heard EOF, and (eof_received returned false) closed cleanly.
    assert_eq!(without_flow(&srv), vec![Ev::Made, Ev::Eof, Ev::Lost(None)]);
    // Its echo (written from inside data_received) may have gone over the mark.
    assert_flow_alternates(&srv, "server echo");
    server.close();
    lp.close().unwrap();
}

/// The same over a Unix socket: create_unix_server + create_unix_connection.
#[test]
fn unix_echo_protocol_to_protocol_multi_mib() {
    let lp = new_loop();
    let path = SockPath::new("proto-echo");
    let probes = Probes::echo();
    let server = block_on(&lp, lp.create_unix_server(&path, probes.factory()))
        .unwrap()
        .expect("create_unix_server");
    assert!(
        server.local_addrs().is_empty(),
        "no IP address for a Unix server"
    );

    let client = Probe::new();
    let (t, _) = block_on(&lp, lp.create_unix_connection(&path, client.protocol()))
        .unwrap()
        .expect("create_unix_connection");
    assert_eq!(client.events(), vec![Ev::Made]);
    assert!(
        t.peer_addr().is_err(),
        "a Unix transport has no peer IP address"
    );

    let data = buffer_up(&t, MIB);
    run_until(&lp, "megabytes echoed over Unix", || {
        client.data_len() >= data.len()
    });
    assert_bytes_eq(&client.data(), &data, "unix echo");
    assert_eq!(t.write_buffer_size(), 0);

    t.close();
    let srv = probes.get(0);
    run_until(&lp, "both sides lost", || client.is_lost() && srv.is_lost());
    assert_eq!(
        client.lifecycle(),
        vec![Ev::Made, Ev::Pause, Ev::Resume, Ev::Lost(None)]
    );
    assert_eq!(without_flow(&srv), vec![Ev::Made, Ev::Eof, Ev::Lost(None)]);
    assert_flow_alternates(&srv, "server echo over Unix");
    server.close();
    lp.close().unwrap();
}

/// A server echoing to a std client: many small writes from the client arrive whole
/// and in order, and the echo comes back to the client.
#[test]
fn tcp_echo_to_std_client_many_small_writes() {
    let lp = new_loop();
    let probes = Probes::echo();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let client = std_client(addr);
    let srv = accepted(&lp, &probes, 1);

    let mut sent = Vec::new();
    let mut got = Vec::new();
    for i in 0..200u32 {
        let msg = format!("message {i};");
        (&client).write_all(msg.as_bytes()).unwrap();
        sent.extend_from_slice(msg.as_bytes());
        if i % 20 == 0 {
            run_iterations(&lp, 2);
            drain_into(&client, &mut got).unwrap();
        }
    }
    run_until(&lp, "all echoed", || {
        drain_into(&client, &mut got).unwrap();
        got.len() >= sent.len()
    });
    assert_eq!(got, sent);
    assert_eq!(srv.data(), sent);
    assert_eq!(srv.transport().write_buffer_size(), 0);
}

/// asyncio's flow control: writing past the high-water mark calls `pause_writing`
/// once (however much more is written), draining to the low-water mark calls
/// `resume_writing` once, and the peer receives every byte in order.
#[test]
fn pause_and_resume_writing_at_the_water_marks() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    assert_eq!(
        t.write_buffer_limits(),
        (16 * 1024, 64 * 1024),
        "asyncio's defaults"
    );
    t.set_write_buffer_limits(Some(256 * 1024), Some(32 * 1024))
        .unwrap();
    assert_eq!(t.write_buffer_limits(), (32 * 1024, 256 * 1024));

    // Below the high-water mark: no pause.
    let mut data = payload(100 * 1024);
    t.write(&data);
    run_iterations(&lp, 3);
    assert_eq!(
        srv.count(&Ev::Pause),
        0,
        "paused below the mark: {:?}",
        srv.lifecycle()
    );

    // Over it, while the peer does not read: one pause, the buffer grows.
    let mut chunks = 0;
    while t.write_buffer_size() <= 256 * 1024 {
        assert_eq!(srv.count(&Ev::Pause), 0, "paused under the high-water mark");
        let c = payload(MIB + chunks);
        t.write(&c);
        data.extend_from_slice(&c);
        chunks += 1;
        assert!(chunks < 64, "64 MiB taken by the socket");
    }
    let after_first = t.write_buffer_size();
    assert_eq!(
        srv.lifecycle(),
        vec![Ev::Made, Ev::Pause],
        "paused once over the mark"
    );
    let c = payload(MIB / 2);
    t.write(&c);
    data.extend_from_slice(&c);
    assert_eq!(
        t.write_buffer_size(),
        after_first + c.len(),
        "the buffer grows"
    );
    run_for(&lp, Duration::from_millis(50));
    assert_eq!(
        srv.lifecycle(),
        vec![Ev::Made, Ev::Pause],
        "paused once, still paused"
    );

    // The peer reads: the buffer drains, resume_writing once.
    let mut got = Vec::new();
    run_until(&lp, "the peer got everything", || {
        drain_into(&peer, &mut got).unwrap();
        got.len() >= data.len()
    });
    assert_bytes_eq(&got, &data, "peer");
    run_until(&lp, "resume_writing", || srv.count(&Ev::Resume) > 0);
    assert_eq!(t.write_buffer_size(), 0);
    assert_eq!(srv.lifecycle(), vec![Ev::Made, Ev::Pause, Ev::Resume]);
}

/// An echo whose own writes overflow (the peer sends a lot and reads slowly): the
/// protocol hears `pause_writing` from a write made inside `data_received` (on a
/// later iteration, never re-entrantly), pauses reading as asyncio's streams do, and
/// resumes on `resume_writing`. The transport's buffer stays bounded, pause and resume
/// alternate, and the peer gets every byte back in order.
#[test]
fn echo_with_flow_control_stays_bounded() {
    let lp = new_loop();
    let probes = Probes::echo().flow_control();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    let data = payload(24 * MIB);
    let mut at = 0;
    let mut max_buffered = 0;
    run_until(&lp, "the echo pauses", || {
        write_some(&peer, &data, &mut at).unwrap();
        max_buffered = max_buffered.max(t.write_buffer_size());
        srv.count(&Ev::Pause) > 0
    });
    assert!(!t.is_reading(), "the protocol paused reading");
    let mut got = Vec::new();
    run_until(&lp, "all echoed", || {
        write_some(&peer, &data, &mut at).unwrap();
        max_buffered = max_buffered.max(t.write_buffer_size());
        drain_into(&peer, &mut got).unwrap();
        got.len() >= data.len()
    });
    assert_bytes_eq(&got, &data, "echo");
    run_until(&lp, "resumed", || {
        srv.count(&Ev::Resume) > 0 && t.is_reading()
    });
    // One event's reads (16 x 64 KiB) may land before the pause takes effect.
    assert!(
        max_buffered < 4 * MIB,
        "the buffer grew to {max_buffered} bytes although reading was paused"
    );
    assert_flow_alternates(&srv, "flow-controlled echo");
    assert_eq!(srv.lifecycle().last(), Some(&Ev::Resume));
}

/// `set_write_buffer_limits`: asyncio's defaults for missing values, `low > high`
/// refused, and new limits take effect at once on what is already buffered.
#[test]
fn set_write_buffer_limits_rules() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    t.set_write_buffer_limits(Some(1000), None).unwrap();
    assert_eq!(t.write_buffer_limits(), (250, 1000), "low = high / 4");
    t.set_write_buffer_limits(None, Some(1000)).unwrap();
    assert_eq!(t.write_buffer_limits(), (1000, 4000), "high = 4 * low");
    t.set_write_buffer_limits(None, None).unwrap();
    assert_eq!(t.write_buffer_limits(), (16 * 1024, 64 * 1024));
    let err = t.set_write_buffer_limits(Some(10), Some(20)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(t.write_buffer_limits(), (16 * 1024, 64 * 1024), "unchanged");
    t.set_write_buffer_limits(Some(0), Some(0)).unwrap();
    assert_eq!(t.write_buffer_limits(), (0, 0), "zero is allowed");

    // Buffer ~1 MiB under a high mark of 16 MiB: not paused.
    t.set_write_buffer_limits(Some(16 * MIB), Some(0)).unwrap();
    let data = buffer_up(&t, MIB);
    let buffered = t.write_buffer_size();
    assert_eq!(srv.count(&Ev::Pause), 0);
    // Lowering the high mark under what is buffered pauses at once.
    t.set_write_buffer_limits(Some(buffered / 2), Some(0))
        .unwrap();
    assert_eq!(srv.lifecycle(), vec![Ev::Made, Ev::Pause]);
    // Raising the low mark over what is buffered resumes at once.
    t.set_write_buffer_limits(Some(32 * MIB), Some(16 * MIB))
        .unwrap();
    assert_eq!(srv.lifecycle(), vec![Ev::Made, Ev::Pause, Ev::Resume]);

    let mut got = Vec::new();
    run_until(&lp, "peer got everything", || {
        drain_into(&peer, &mut got).unwrap();
        got.len() >= data.len()
    });
    assert_bytes_eq(&got, &data, "peer");
    assert_eq!(srv.lifecycle(), vec![Ev::Made, Ev::Pause, Ev::Resume]);
}

/// `pause_reading` stops `data_received` (the data waits in the socket) and
/// `resume_reading` delivers it, although the edge that announced it is long gone.
#[test]
fn pause_and_resume_reading() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = std_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    assert!(t.is_reading());
    t.pause_reading();
    assert!(!t.is_reading());
    let data = payload(512 * 1024);
    let mut at = 0;
    run_for(&lp, Duration::from_millis(20));
    // Write while paused; the socket holds what it can.
    for _ in 0..20 {
        write_some(&peer, &data, &mut at).unwrap();
        run_iterations(&lp, 2);
    }
    assert!(at > 0);
    run_for(&lp, Duration::from_millis(50));
    assert_eq!(srv.data_len(), 0, "data_received while reading is paused");

    t.resume_reading();
    assert!(t.is_reading());
    run_until(&lp, "everything read after resume", || {
        write_some(&peer, &data, &mut at).unwrap();
        srv.data_len() >= data.len()
    });
    assert_bytes_eq(&srv.data(), &data, "after resume");

    // Pausing from inside data_received: later data waits for resume_reading.
    t.pause_reading();
    (&peer).write_all(b"more").unwrap();
    run_for(&lp, Duration::from_millis(50));
    assert_eq!(srv.data_len(), data.len());
    t.resume_reading();
    t.resume_reading(); // twice: harmless
    run_until(&lp, "more", || srv.data_len() == data.len() + 4);
    assert_eq!(&srv.data()[data.len()..], b"more");
}

/// `write_eof` with nothing buffered: the peer reads EOF at once; the transport still
/// reads, and `write` after it is ignored. Calling it twice is harmless.
#[test]
fn write_eof_then_keep_reading() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = std_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    assert!(t.can_write_eof());
    t.write(b"last words");
    t.write_eof();
    t.write_eof();
    t.write(b"ignored");
    let mut got = Vec::new();
    run_until(&lp, "EOF at the peer", || {
        drain_into(&peer, &mut got).unwrap()
    });
    assert_eq!(got, b"last words");

    // Reading goes on.
    (&peer).write_all(b"still talking").unwrap();
    run_until(&lp, "data after write_eof", || srv.data_len() == 13);
    assert_eq!(srv.data(), b"still talking");
    assert!(!srv.is_lost());
    assert!(!t.is_closing());

    // The peer's EOF then closes the transport (eof_received returns false).
    peer.shutdown(Shutdown::Write).unwrap();
    run_until(&lp, "lost", || srv.is_lost());
    assert_eq!(srv.lifecycle(), vec![Ev::Made, Ev::Eof, Ev::Lost(None)]);
}

/// asyncio's `test_write_eof_buffer`: with data buffered, the shutdown waits until
/// the buffer is drained, so the peer gets every byte, then EOF.
#[test]
fn write_eof_waits_for_the_buffer() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    let data = buffer_up(&t, MIB);
    t.write_eof();
    let mut got = Vec::new();
    let mut eof = false;
    run_until(&lp, "the peer reads to EOF", || {
        eof = drain_into(&peer, &mut got).unwrap();
        eof
    });
    assert_bytes_eq(&got, &data, "data before EOF");
    assert_eq!(t.write_buffer_size(), 0);
    assert!(!srv.is_lost(), "write_eof does not close");
    t.close();
    run_until(&lp, "lost", || srv.is_lost());
    assert_eq!(
        srv.lifecycle(),
        vec![Ev::Made, Ev::Pause, Ev::Resume, Ev::Lost(None)]
    );
}

/// A protocol that writes, closes and aborts from inside its own callbacks:
/// `connection_lost` never comes re-entrantly (it would find the protocol borrowed).
#[test]
fn close_from_inside_data_received_is_not_reentrant() {
    struct CloseOnData {
        probe: Probe,
        t: Option<Transport>,
        abort: bool,
    }
    impl evloop::net::Protocol for CloseOnData {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
            self.probe.0.events.borrow_mut().push(Ev::Made);
        }
        fn data_received(&mut self, data: &[u8]) {
            let t = self.t.as_ref().unwrap();
            t.write(data);
            if self.abort {
                t.abort();
            } else {
                t.close();
            }
            t.close();
            t.write(b"ignored after close");
            self.probe.0.events.borrow_mut().push(Ev::Data(data.len()));
        }
        fn connection_lost(&mut self, e: Option<std::io::Error>) {
            self.probe
                .0
                .events
                .borrow_mut()
                .push(Ev::Lost(e.map(|e| e.kind())));
        }
    }
    for abort in [false, true] {
        let lp = new_loop();
        let probe = Probe::new();
        let p2 = probe.clone();
        let (_server, addr) = tcp_server(&lp, move || CloseOnData {
            probe: p2.clone(),
            t: None,
            abort,
        });
        let peer = std_client(addr);
        (&peer).write_all(b"ping").unwrap();
        run_until(&lp, "lost", || probe.is_lost());
        assert_eq!(
            probe.events(),
            vec![Ev::Made, Ev::Data(4), Ev::Lost(None)],
            "abort={abort}"
        );
        let mut got = Vec::new();
        run_until(&lp, "peer EOF", || {
            drain_into(&peer, &mut got).unwrap_or(true)
        });
        if !abort {
            assert_eq!(got, b"ping", "close flushes what was written before it");
        }
        run_for(&lp, Duration::from_millis(20));
        assert_eq!(probe.lost_count(), 1);
    }
}

/// A deterministic run of the race that the echo tests hit by chance: within one
/// iteration, a read continuation (here from `resume_reading`) makes the protocol
/// write past the high-water mark — `pause_writing` is deferred, the protocol being
/// busy — and then the socket's writable event drains the buffer under the
/// low-water mark. The protocol must hear pause, then resume; not resume first and a
/// stale pause after it (which leaves a flow-controlled protocol paused for good).
#[test]
fn flow_control_notifications_keep_their_order() {
    let lp = new_loop();
    let probes = Probes::echo().flow_control();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();

    // Fill the socket and buffer over 1 MiB without pausing.
    t.set_write_buffer_limits(Some(usize::MAX), Some(0))
        .unwrap();
    let mut sent = buffer_up(&t, MIB);
    let pending = t.write_buffer_size();
    // One more byte will cross the high-water mark; draining half will resume.
    t.set_write_buffer_limits(Some(pending), Some(pending / 2))
        .unwrap();
    assert_eq!(srv.lifecycle(), vec![Ev::Made]);

    // A byte from the peer waits while reading is paused.
    t.pause_reading();
    (&peer).write_all(b"x").unwrap();
    run_iterations(&lp, 3);
    assert_eq!(srv.data_len(), 0);

    // Next iteration: first the read scheduled by resume_reading (the echo of "x"
    // crosses the mark), then the writable event after the peer drains.
    t.resume_reading();
    let mut got = Vec::new();
    drain_into(&peer, &mut got).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    sent.push(b'x');

    run_until(&lp, "the peer got everything", || {
        drain_into(&peer, &mut got).unwrap();
        got.len() >= sent.len()
    });
    assert_bytes_eq(&got, &sent, "peer");
    run_for(&lp, Duration::from_millis(30));
    assert_flow_alternates(&srv, "pause deferred, then a drain in the same iteration");
    assert_eq!(t.write_buffer_size(), 0);
    assert!(
        t.is_reading(),
        "the buffer is empty but the protocol was left paused: {:?}",
        srv.lifecycle()
    );
}
