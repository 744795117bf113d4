//! The scenario of a stale registration breaking an innocent connection, end to end:
//! the user registers an fd and closes it without `remove_reader`; the loop's server
//! accepts a connection whose socket gets the freed number; the user's late
//! `remove_reader` / `add_reader` on that number must leave the connection alone.
//!
//! One test in its own process, so that no other test takes the freed number first
//! (the kernel hands out the lowest free descriptor).

#[path = "util/net.rs"]
mod net_util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use net_util::*;

/// The peer address of the socket at `fd`, if it is a connected socket.
fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: `fd` is only borrowed for the duration of this call, during which
    // nothing closes it (this test's thread owns every fd it touches).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&fd).peer_addr().ok()?.as_socket()
}

#[test]
fn an_accepted_socket_reusing_a_stale_user_fd_keeps_working() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());

    // The number the accepted socket gets is the lowest free one; retry in the unlikely
    // case that something else took it.
    for attempt in 1..=10 {
        let client = TcpStream::connect(addr).expect("connect"); // completed by the backlog
        let (_a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        lp.add_reader(fd, |_| {}).unwrap();
        drop(b); // closed while registered: `fd` is now the lowest free number

        let server = accepted(&lp, &probes, attempt);
        if peer_of(fd) != Some(client.local_addr().unwrap()) {
            let _ = lp.remove_reader(fd);
            continue;
        }
        // The accepted socket is `fd`. The user's late clean-up:
        assert!(
            !lp.remove_reader(fd),
            "no user reader is registered for the socket"
        );
        assert!(
            lp.add_reader(fd, |_| {}).is_err(),
            "the number is the loop's socket's"
        );

        // The connection still hears data, EOF and its end.
        (&client).write_all(b"ping").unwrap();
        run_until(&lp, "the server receives ping", || server.data() == b"ping");
        server.transport().write(b"pong");
        client
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while got.len() < 4 {
            assert!(Instant::now() < deadline, "the client never got pong");
            lp.run_once(Some(Duration::from_millis(5))).unwrap();
            let mut buf = [0u8; 16];
            if let Ok(n) = (&client).read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(got, b"pong");
        client.shutdown(Shutdown::Write).unwrap();
        run_until(&lp, "the server sees EOF", || server.saw_eof());
        server.transport().close();
        run_until(&lp, "connection_lost", || server.is_lost());
        // The probe's own clone of its transport (a cycle through the protocol).
        drop(server.0.transport.borrow_mut().take());
        return;
    }
    panic!("the accepted socket never took the freed number");
}
