//! An fd closed while still registered, and its number reused: the old registration's
//! events never reach the new fd's callbacks, the new fd's events never reach the old
//! callbacks, and `add_reader` on the reused number works.
//!
//! Each test uses its own fixed, high fd number through `util::dup_to`, so that the
//! close-then-reuse sequence cannot race with other tests of this process.

mod util;

use std::time::Duration;

use evloop::Loop;
use util::{Counter, Drops, dup_to, send, socketpair};

const ZERO: Option<Duration> = Some(Duration::ZERO);

/// Runs a few iterations, each waiting a little for I/O.
fn spin(lp: &Loop) {
    for _ in 0..3 {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
}

/// The old socket is closed for good; the number comes back as a new socket.
#[test]
fn reused_number_gets_a_fresh_registration() {
    const H: i32 = 810;
    let lp = Loop::new().unwrap();
    let old_calls = Counter::new();
    let drops = Drops::new();

    let (a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    drop(b1); // `old` is now the socket's only descriptor
    let (c, t) = (old_calls.clone(), drops.token());
    let old_handle = lp
        .add_reader(H, move |_| {
            t.hold();
            c.inc();
        })
        .unwrap();
    drop(old); // closed while registered

    let (a2, b2) = socketpair();
    let new = dup_to(&b2, H);
    drop(b2);
    send(&a2, b"new data");
    spin(&lp);
    assert_eq!(
        old_calls.get(),
        0,
        "the old reader got the new socket's events"
    );

    let new_calls = Counter::new();
    let c = new_calls.clone();
    let new_handle = lp.add_reader(H, move |_| c.inc()).unwrap();
    assert!(old_handle.is_cancelled());
    assert_eq!(
        drops.dropped(),
        1,
        "the stale reader is dropped when replaced"
    );
    lp.run_once(ZERO).unwrap();
    assert_eq!(new_calls.get(), 1, "the new socket's reader is called");
    assert_eq!(old_calls.get(), 0);

    old_handle.cancel();
    assert!(!new_handle.is_cancelled());
    assert!(lp.remove_reader(H));
    drop((a1, new));
}

/// The old socket stays open through another descriptor, so the kernel keeps its
/// epoll registration alive under the old number: its events must be ignored.
#[test]
fn old_socket_still_open_elsewhere_does_not_reach_the_new_reader() {
    const H: i32 = 811;
    let lp = Loop::new().unwrap();
    let (a1, b1) = socketpair();
    let old = dup_to(&b1, H); // b1 keeps the old socket open
    let old_calls = Counter::new();
    let c = old_calls.clone();
    lp.add_reader(H, move |_| c.inc()).unwrap();
    drop(old);

    let (a2, b2) = socketpair();
    let new = dup_to(&b2, H);
    drop(b2);
    let new_calls = Counter::new();
    let c = new_calls.clone();
    lp.add_reader(H, move |_| c.inc()).unwrap();

    send(&a1, b"to the old socket");
    spin(&lp);
    assert_eq!(
        new_calls.get(),
        0,
        "the new reader got the old socket's events"
    );

    send(&a2, b"to the new socket");
    lp.run_once(Some(Duration::from_millis(100))).unwrap();
    assert!(
        new_calls.get() >= 1,
        "the new reader is called for its own socket"
    );
    assert_eq!(old_calls.get(), 0, "the replaced reader never runs again");
    assert!(lp.remove_reader(H));
    drop((a1, b1, a2, new));
}

/// Same as above with a writer: the old socket stays writable forever.
#[test]
fn old_writable_socket_does_not_reach_the_new_writer() {
    const H: i32 = 812;
    let lp = Loop::new().unwrap();
    let (_a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    lp.add_writer(H, |_| {}).unwrap();
    drop(old);

    // The new descriptor is the read end of a pipe: never writable.
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
        0
    );
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pipe2 just returned these descriptors; we are their only owner.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let new = dup_to(&rd, H);
    drop(rd);
    let new_calls = Counter::new();
    let c = new_calls.clone();
    lp.add_writer(H, move |_| c.inc()).unwrap();
    spin(&lp);
    assert_eq!(new_calls.get(), 0, "a pipe's read end is never writable");
    assert!(lp.remove_writer(H));
    drop((b1, new, wr));
}

/// The old socket is closed for good and the number reused; the host then adds a
/// *writer* for the new socket. The stale reader, registered for the old socket,
/// must not start receiving the new socket's readability.
#[test]
fn stale_reader_does_not_receive_the_new_sockets_events() {
    const H: i32 = 813;
    let lp = Loop::new().unwrap();
    let (a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    drop(b1);
    let old_calls = Counter::new();
    let c = old_calls.clone();
    lp.add_reader(H, move |_| c.inc()).unwrap();
    drop(old);

    let (a2, b2) = socketpair();
    let new = dup_to(&b2, H);
    drop(b2);
    let writes = Counter::new();
    let w = writes.clone();
    lp.add_writer(H, move |lp| {
        w.inc();
        lp.remove_writer(H);
    })
    .unwrap();
    send(&a2, b"readable new socket");
    spin(&lp);
    assert_eq!(writes.get(), 1, "the new writer ran");
    assert_eq!(
        old_calls.get(),
        0,
        "the old socket's reader was called for the new socket's data"
    );
    drop((a1, a2, new));
}

// ---------------------------------------------------------------------------------
// Reuse by a library socket: the net API's sockets share the loop's epoll set
// (edge-triggered, through the loop's source table). A stale user registration on
// their number must never touch theirs.

#[path = "util/net.rs"]
mod net_util;

/// Connects to `addr` and moves the client socket onto the descriptor number `fd`,
/// then hands it to the net API (which registers it with the running loop).
fn library_stream_at(lp: &Loop, addr: std::net::SocketAddr, fd: i32) -> evloop::net::TcpStream {
    let client = std::net::TcpStream::connect(addr).expect("connect");
    let at_fd = dup_to(&client, fd);
    drop(client);
    let std_stream = std::net::TcpStream::from(at_fd);
    net_util::block_on(
        lp,
        async move { evloop::net::TcpStream::from_std(std_stream) },
    )
    .expect("from_std")
}

/// Both directions of a library connection still work: `ping` one way, `pong` back.
fn assert_connection_works(lp: &Loop, stream: &evloop::net::TcpStream, server: &net_util::Probe) {
    net_util::block_on(lp, stream.write_all(b"ping")).expect("write");
    net_util::run_until(lp, "the server receives ping", || server.data() == b"ping");
    server.transport().write(b"pong");
    let mut buf = [0u8; 4];
    net_util::block_on(lp, stream.read_exact(&mut buf)).expect("read pong");
    assert_eq!(&buf, b"pong");
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    net_util::run_until(lp, "the server sees EOF", || server.saw_eof());
    net_util::run_until(lp, "connection_lost", || server.is_lost());
    // The probe's own clone of its transport (a cycle through the protocol).
    drop(server.0.transport.borrow_mut().take());
}

/// The user registers fd H (reader and writer), closes it without `remove_reader`, and
/// the number comes back as a library socket: the stale entry is evicted when the
/// socket registers, and `remove_reader` / `remove_writer` on H leave the socket's
/// registration alone.
#[test]
fn stale_user_fd_reused_by_a_library_socket_remove_leaves_it_alone() {
    const H: i32 = 814;
    let lp = net_util::new_loop();
    let probes = net_util::Probes::new();
    let (_server, addr) = net_util::tcp_server(&lp, probes.factory());

    let (_a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    drop(b1);
    let drops = Drops::new();
    let (t1, t2) = (drops.token(), drops.token());
    let reader = lp.add_reader(H, move |_| t1.hold()).unwrap();
    let writer = lp.add_writer(H, move |_| t2.hold()).unwrap();
    drop(old); // closed while registered

    let stream = library_stream_at(&lp, addr, H);
    assert!(
        reader.is_cancelled() && writer.is_cancelled(),
        "the stale entry was evicted"
    );
    assert_eq!(drops.alive(), 0, "its closures were dropped");
    assert!(
        !lp.remove_reader(H),
        "no user reader is registered for the socket at H"
    );
    assert!(!lp.remove_writer(H));
    reader.cancel();
    writer.cancel();

    let server = net_util::accepted(&lp, &probes, 1);
    assert_connection_works(&lp, &stream, &server);
}

/// As above, but the user then calls `add_reader` / `add_writer` on H: refused (the
/// number is the library socket's), and the socket keeps its registration.
#[test]
fn stale_user_fd_reused_by_a_library_socket_add_is_refused() {
    const H: i32 = 815;
    let lp = net_util::new_loop();
    let probes = net_util::Probes::new();
    let (_server, addr) = net_util::tcp_server(&lp, probes.factory());

    let (_a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    drop(b1);
    let reader = lp.add_reader(H, |_| {}).unwrap();
    drop(old);

    let stream = library_stream_at(&lp, addr, H);
    let calls = Counter::new();
    let c = calls.clone();
    assert!(
        lp.add_reader(H, move |_| c.inc()).is_err(),
        "H is a library socket's"
    );
    assert!(lp.add_writer(H, |_| {}).is_err());
    assert!(reader.is_cancelled());
    assert!(!lp.remove_reader(H));

    let server = net_util::accepted(&lp, &probes, 1);
    assert_connection_works(&lp, &stream, &server);
    assert_eq!(calls.get(), 0);
}

/// The closed fd's file stays open through another descriptor, so the kernel keeps
/// its old epoll entry under the number; the library socket that takes the number is
/// still left alone.
#[test]
fn stale_user_fd_still_open_elsewhere_reused_by_a_library_socket() {
    const H: i32 = 816;
    let lp = net_util::new_loop();
    let probes = net_util::Probes::new();
    let (_server, addr) = net_util::tcp_server(&lp, probes.factory());

    let (_a1, b1) = socketpair();
    let old = dup_to(&b1, H); // b1 keeps the old socket open
    let reader = lp.add_reader(H, |_| {}).unwrap();
    drop(old);

    let stream = library_stream_at(&lp, addr, H);
    assert!(reader.is_cancelled());
    assert!(!lp.remove_reader(H));
    assert!(lp.add_writer(H, |_| {}).is_err());

    let server = net_util::accepted(&lp, &probes, 1);
    assert_connection_works(&lp, &stream, &server);
    drop(b1);
}

/// Reuse by another user fd: the stale entry's other direction is evicted when the
/// new fd registers, and removing that direction afterwards leaves the new fd's
/// registration alone.
#[test]
fn stale_user_fd_reused_by_another_user_fd_remove_leaves_it_alone() {
    const H: i32 = 817;
    let lp = Loop::new().unwrap();
    let (_a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    drop(b1);
    let old_writer = lp.add_writer(H, |_| {}).unwrap();
    drop(old);

    let (a2, b2) = socketpair();
    let new = dup_to(&b2, H);
    drop(b2);
    let calls = Counter::new();
    let c = calls.clone();
    lp.add_reader(H, move |_| c.inc()).unwrap();
    assert!(old_writer.is_cancelled(), "the stale writer was evicted");
    assert!(
        !lp.remove_writer(H),
        "no writer is registered for the new fd"
    );
    old_writer.cancel();

    send(&a2, b"new data");
    lp.run_once(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(calls.get(), 1, "the new fd's reader still hears its events");
    assert!(lp.remove_reader(H));
    drop(new);
}

/// Ported from CPython's `test_unix_events.py`
/// (`test_add_reader_or_writer_transport_fd`): the fd of a socket the loop owns is
/// refused by `add_reader` / `add_writer` (asyncio raises "File descriptor ... is used
/// by transport"), `remove_reader` / `remove_writer` find nothing of the user's, and the
/// connection is not disturbed.
#[test]
fn a_library_sockets_fd_is_refused_by_add_and_ignored_by_remove() {
    const H: i32 = 818;
    let lp = net_util::new_loop();
    let probes = net_util::Probes::new();
    let (_server, addr) = net_util::tcp_server(&lp, probes.factory());
    let stream = library_stream_at(&lp, addr, H);
    for write in [false, true] {
        let r = if write {
            lp.add_writer(H, |_| {})
        } else {
            lp.add_reader(H, |_| {})
        };
        let e = r.expect_err("the socket's fd is the loop's");
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("used by the loop itself"), "{e}");
    }
    assert!(!lp.remove_reader(H));
    assert!(!lp.remove_writer(H));
    let server = net_util::accepted(&lp, &probes, 1);
    assert_connection_works(&lp, &stream, &server);
}
