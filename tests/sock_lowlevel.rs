//! `Loop::sock_*`: asyncio's low-level socket calls on sockets the caller owns.
//! A blocking socket is refused, a call leaves no reader or writer registered after
//! it returns or is cancelled, a cancelled receive consumed nothing, a cancelled
//! `sock_sendall` never makes the next one send twice, and two waits on one
//! direction of one fd end in an error rather than a hang.
//!
//! Behaviour ported from CPython's `Lib/test/test_asyncio/test_sock_lowlevel.py`
//! (each test names its case).

#[path = "util/net.rs"]
mod net_util;

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream as StdUnixStream};
use std::rc::Rc;
use std::time::Duration;

use evloop::Loop;
use evloop::net::Protocol;
use net_util::*;
use socket2::{Domain, SockAddr, Socket, Type};

/// A fresh non-blocking TCP socket, unconnected.
fn tcp_socket() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

/// A connected non-blocking pair over loopback TCP: (client, server side).
fn tcp_pair() -> (StdTcpStream, StdTcpStream) {
    let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let c = StdTcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    c.set_nonblocking(true).unwrap();
    s.set_nonblocking(true).unwrap();
    (c, s)
}

/// Whether the loop still has a reader (or writer) for `fd`: removing one says so.
/// (Removes it, so call it last.)
fn left_registered(lp: &Loop, fd: i32) -> (bool, bool) {
    (lp.remove_reader(fd), lp.remove_writer(fd))
}

/// Connect, sendall, recv and recv_into against an echo server, over `sock`.
async fn client_ops(lp: &Loop, sock: &Socket, addr: SockAddr) {
    lp.sock_connect(sock, addr).await.expect("sock_connect");
    lp.sock_sendall(sock, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 18 {
        let data = lp.sock_recv(sock, 1024).await.unwrap();
        assert!(!data.is_empty(), "the echo server closed early");
        got.extend(data);
    }
    assert_eq!(got, b"GET / HTTP/1.0\r\n\r\n");
    lp.sock_sendall(sock, b"HTTP/1.0 200 OK").await.unwrap();
    let mut buf = [0u8; 1024];
    let mut n = 0;
    while n < 15 {
        let k = lp.sock_recv_into(sock, &mut buf[n..]).await.unwrap();
        assert!(k > 0, "the echo server closed early");
        n += k;
    }
    assert_eq!(&buf[..n], b"HTTP/1.0 200 OK");
}

/// Every `sock_*` call refuses a blocking socket with `InvalidInput`, when awaited.
async fn blocking_refused(lp: &Loop, sock: &Socket, addr: SockAddr) {
    sock.set_nonblocking(false).unwrap();
    let kind = |r: std::io::Result<()>| r.unwrap_err().kind();
    let refused = ErrorKind::InvalidInput;
    assert_eq!(kind(lp.sock_connect(sock, addr.clone()).await), refused);
    assert_eq!(kind(lp.sock_sendall(sock, b"x").await), refused);
    assert_eq!(kind(lp.sock_recv(sock, 1024).await.map(drop)), refused);
    assert_eq!(
        kind(lp.sock_recv_into(sock, &mut []).await.map(drop)),
        refused
    );
    assert_eq!(kind(lp.sock_accept(sock).await.map(drop)), refused);
    assert_eq!(kind(lp.sock_recvfrom(sock, 10).await.map(drop)), refused);
    assert_eq!(
        kind(lp.sock_sendto(sock, b"x", addr).await.map(drop)),
        refused
    );
    sock.set_nonblocking(true).unwrap();
}

/// CPython `test_sock_client_ops` (TCP): a blocking socket is refused by every call
/// (asyncio checks in debug mode; evloop always); non-blocking, connect, sendall,
/// recv and recv_into work, and leave nothing registered.
#[test]
fn sock_client_ops_tcp() {
    let lp = new_loop();
    let (_server, addr) = tcp_server(&lp, Probes::echo().factory());
    let sock = tcp_socket();
    block_on(&lp, async {
        blocking_refused(&lp, &sock, addr.into()).await;
        client_ops(&lp, &sock, addr.into()).await;
    });
    assert_eq!(left_registered(&lp, sock.as_raw_fd()), (false, false));
}

/// CPython `test_unix_sock_client_ops`: the same over a Unix socket.
#[test]
fn sock_client_ops_unix() {
    let lp = new_loop();
    let path = SockPath::new("sock-ops");
    let server = block_on(&lp, lp.create_unix_server(&path, Probes::echo().factory()))
        .unwrap()
        .unwrap();
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    sock.set_nonblocking(true).unwrap();
    let addr = SockAddr::unix(&path.0).unwrap();
    block_on(&lp, async {
        blocking_refused(&lp, &sock, addr.clone()).await;
        client_ops(&lp, &sock, addr).await;
    });
    assert_eq!(left_registered(&lp, sock.as_raw_fd()), (false, false));
    server.close();
}

/// CPython `test_sock_client_racing` (recv): a `sock_recv` cancelled while it waits
/// consumed nothing and left no reader; the next one gets all the data.
#[test]
fn cancelled_sock_recv_consumes_nothing() {
    let lp = new_loop();
    let (client, peer) = tcp_pair();
    let client = Rc::new(client);
    let fd = client.as_raw_fd();
    block_on(&lp, async {
        let (l, c) = (lp.clone(), client.clone());
        let task = lp.create_task(async move { l.sock_recv(&*c, 1024).await });
        evloop::yield_now().await;
        evloop::yield_now().await;
        assert!(!task.is_done(), "nothing was sent yet");
        assert!(task.cancel());
        evloop::yield_now().await;
        assert!(task.is_cancelled());
        assert!(
            !lp.remove_reader(fd),
            "the cancelled sock_recv left its reader"
        );
        (&peer).write_all(b"HTTP/1.0 200 OK\r\n").unwrap();
        let data = lp.sock_recv(&*client, 1024).await.unwrap();
        assert_eq!(data, b"HTTP/1.0 200 OK\r\n", "the cancelled call took some");
    });
    assert_eq!(left_registered(&lp, fd), (false, false));
}

/// CPython `test_sock_client_racing` (recv_into): the same for `sock_recv_into`.
#[test]
fn cancelled_sock_recv_into_consumes_nothing() {
    let lp = new_loop();
    let (client, peer) = tcp_pair();
    let client = Rc::new(client);
    block_on(&lp, async {
        let (l, c) = (lp.clone(), client.clone());
        let task = lp.create_task(async move {
            let mut buf = [0u8; 1024];
            l.sock_recv_into(&*c, &mut buf).await
        });
        evloop::yield_now().await;
        assert!(task.cancel());
        evloop::yield_now().await;
        (&peer).write_all(b"hello").unwrap();
        let mut buf = [0u8; 1024];
        let n = lp.sock_recv_into(&*client, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
    });
    assert_eq!(left_registered(&lp, client.as_raw_fd()), (false, false));
}

/// CPython `test_sock_client_racing` (send): with the socket's buffer full, a
/// `sock_sendall` cancelled while it waits left no writer; the next `sock_sendall`
/// goes through, and nothing is sent twice.
#[test]
fn cancelled_sock_sendall_then_sendall() {
    let lp = new_loop();
    let (client, peer) = tcp_pair();
    socket2::SockRef::from(&client)
        .set_send_buffer_size(1024)
        .unwrap();
    let client = Rc::new(client);
    let fd = client.as_raw_fd();
    // Fill the buffers until sending even 4 bytes would block. Loopback moves data
    // into the peer's receive buffer a little later (more so on a slow or loaded
    // machine, or under valgrind): fill again after a pause, until a pass finds no room.
    let mut size = 8192;
    let mut passes = 0;
    while size >= 4 || {
        passes += 1;
        std::thread::sleep(Duration::from_millis(20));
        size = 8192;
        let before = (&*client).write(&[b' '; 4]);
        passes < 50 && before.is_ok()
    } {
        let chunk = vec![b' '; size];
        let mut rounds = 0;
        loop {
            match (&*client).write(&chunk) {
                Ok(_) => rounds += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling: {e}"),
            }
            assert!(rounds < 100_000, "the socket never filled");
        }
        size /= 2;
    }
    let got = block_on(&lp, async {
        let (l, c) = (lp.clone(), client.clone());
        // Far more than the room a late drain of loopback can make: it must wait.
        let task = lp.create_task(async move { l.sock_sendall(&*c, &[b'h'; 256 * 1024]).await });
        evloop::yield_now().await;
        assert!(task.cancel());
        evloop::yield_now().await;
        assert!(
            !lp.remove_writer(fd),
            "the cancelled sock_sendall left its writer"
        );
        let peer = Rc::new(peer);
        let (l, p) = (lp.clone(), peer.clone());
        let reader = lp.create_task(async move {
            let mut all = Vec::new();
            loop {
                let buf = l.sock_recv(&*p, 8192).await.unwrap();
                if buf.is_empty() {
                    return all;
                }
                all.extend(buf.into_iter().filter(|&b| b != b' '));
            }
        });
        lp.sock_sendall(&*client, b"world").await.unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        reader.await.unwrap()
    });
    assert!(
        got.ends_with(b"world"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    // The cancelled call may have sent a prefix of its bytes, never more than all of
    // them, and nothing after the cancel.
    let hs = got.len() - b"world".len();
    assert!(
        hs <= 256 * 1024 && got[..hs].iter().all(|&b| b == b'h'),
        "sent twice or garbled: {} bytes before \"world\"",
        hs
    );
}

/// CPython `test_sock_client_connect_racing`: a `sock_connect` cancelled at once
/// leaves the socket usable; after the listener listens, connecting again succeeds
/// (within a bounded number of attempts, as the CPython test allows).
#[test]
fn cancelled_sock_connect_then_connect() {
    let lp = new_loop();
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let sock = Rc::new(tcp_socket());
    block_on(&lp, async {
        let (l, s, a) = (lp.clone(), sock.clone(), addr.clone());
        let task = lp.create_task(async move { l.sock_connect(&*s, a).await });
        evloop::yield_now().await;
        task.cancel();
        evloop::yield_now().await;
        listener.listen(1).unwrap();
        let mut last = None;
        for _ in 0..128 {
            match lp.sock_connect(&*sock, addr.clone()).await {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
        }
        panic!("sock_connect never succeeded: {last:?}");
    });
    assert_eq!(left_registered(&lp, sock.as_raw_fd()), (false, false));
}

/// CPython `test_huge_content`: 1 MB through `sock_sendall` in one task while
/// another reads it back with `sock_recv`, from an echo server.
#[test]
fn huge_content() {
    huge(false);
}

/// CPython `test_huge_content_recvinto`: the same, read with `sock_recv_into`.
#[test]
fn huge_content_recv_into() {
    huge(true);
}

fn huge(into: bool) {
    const SIZE: usize = 1_000_000;
    let lp = new_loop();
    let (_server, addr) = tcp_server(&lp, Probes::echo().factory());
    let sock = Rc::new(tcp_socket());
    let data = payload(SIZE);
    let got = block_on(&lp, async {
        lp.sock_connect(&*sock, addr).await.unwrap();
        let (l, s, d) = (lp.clone(), sock.clone(), data.clone());
        let sender = lp.create_task(async move { l.sock_sendall(&*s, &d).await });
        let mut got = Vec::new();
        let mut buf = vec![0u8; SIZE];
        while got.len() < SIZE {
            if into {
                let n = lp.sock_recv_into(&*sock, &mut buf).await.unwrap();
                assert!(n > 0, "early EOF");
                got.extend_from_slice(&buf[..n]);
            } else {
                let chunk = lp.sock_recv(&*sock, SIZE).await.unwrap();
                assert!(!chunk.is_empty(), "early EOF");
                got.extend(chunk);
            }
        }
        sender.await.unwrap().unwrap();
        got
    });
    assert_bytes_eq(&got, &data, "echoed");
    assert_eq!(left_registered(&lp, sock.as_raw_fd()), (false, false));
}

/// CPython `test_recvfrom`: `sock_sendto` a 4 KiB datagram to an echo peer,
/// `sock_recvfrom` it back with the peer's address.
#[test]
fn sock_recvfrom_and_sendto() {
    let lp = new_loop();
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let server_addr = server.local_addr().unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_nonblocking(true).unwrap();
    let server = Rc::new(server);
    let data = vec![1u8; 4096];
    block_on(&lp, async {
        let (l, s) = (lp.clone(), server.clone());
        let echo = lp.create_task(async move {
            let (d, from) = l.sock_recvfrom(&*s, 8192).await.unwrap();
            l.sock_sendto(&*s, &d, from).await.unwrap()
        });
        assert_eq!(
            lp.sock_sendto(&client, &data, server_addr).await.unwrap(),
            4096
        );
        let (got, from) = lp.sock_recvfrom(&client, 4096).await.unwrap();
        assert_eq!(got, data);
        assert_eq!(from.as_socket(), Some(server_addr));
        assert_eq!(echo.await.unwrap(), 4096);
    });
    assert_eq!(left_registered(&lp, client.as_raw_fd()), (false, false));
    assert_eq!(left_registered(&lp, server.as_raw_fd()), (false, false));
}

/// `sock_recvfrom` truncates a datagram longer than `n`, as `recvfrom` does.
#[test]
fn sock_recvfrom_truncates() {
    let lp = new_loop();
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    b.send(b"0123456789").unwrap();
    let (got, _) = block_on(&lp, lp.sock_recvfrom(&a, 4)).unwrap();
    assert_eq!(got, b"0123");
}

/// CPython `test_sendto_blocking`: a `sock_sendto` that finds the socket full waits
/// and sends once there is room.
#[test]
fn sock_sendto_waits_for_room() {
    let lp = new_loop();
    let server_path = SockPath::new("dgram-server");
    let server = UnixDatagram::bind(&server_path).unwrap();
    server.set_nonblocking(true).unwrap();
    let client = UnixDatagram::unbound().unwrap();
    client.connect(&server_path).unwrap();
    client.set_nonblocking(true).unwrap();
    let mut queued = 0;
    loop {
        match client.send(b"filler") {
            Ok(_) => queued += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling: {e}"),
        }
        assert!(queued < 100_000, "the queue never filled");
    }
    let client = Rc::new(client);
    let to = SockAddr::unix(&server_path.0).unwrap();
    block_on(&lp, async {
        let (l, c) = (lp.clone(), client.clone());
        let send = lp.create_task(async move { l.sock_sendto(&*c, b"last", to).await });
        for _ in 0..3 {
            evloop::yield_now().await;
        }
        assert!(!send.is_done(), "the queue is full: sock_sendto must wait");
        let mut buf = [0u8; 16];
        for _ in 0..queued {
            let (n, _) = lp
                .sock_recvfrom(&server, 16)
                .await
                .map(|(d, a)| (d.len(), a))
                .unwrap();
            assert_eq!(n, 6);
        }
        assert_eq!(send.await.unwrap().unwrap(), 4);
        let n = loop {
            match server.recv(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => evloop::yield_now().await,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"last");
    });
    assert_eq!(left_registered(&lp, client.as_raw_fd()), (false, false));
}

/// CPython `test_sock_client_fail`: connecting to a port nobody listens on is
/// `ConnectionRefused`.
#[test]
fn sock_connect_refused() {
    let lp = new_loop();
    let addr = {
        let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sock = tcp_socket();
    let err = block_on(&lp, lp.sock_connect(&sock, addr)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(left_registered(&lp, sock.as_raw_fd()), (false, false));
}

/// CPython `test_sock_accept`: the accepted socket is non-blocking, its address is
/// the client's, and the client's peer is the listener.
#[test]
fn sock_accept_gives_nonblocking_socket() {
    let lp = new_loop();
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let client = StdTcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, addr) = block_on(&lp, lp.sock_accept(&listener)).unwrap();
    assert!(
        conn.nonblocking().unwrap(),
        "the accepted socket is non-blocking"
    );
    assert_eq!(addr.as_socket(), Some(client.local_addr().unwrap()));
    assert_eq!(client.peer_addr().unwrap(), listener.local_addr().unwrap());
    // And it works as a socket.
    (&client).write_all(b"ping").unwrap();
    let got = block_on(&lp, lp.sock_recv(&conn, 16)).unwrap();
    assert_eq!(got, b"ping");
}

/// `sock_accept` waits for a client (it need not be there yet).
#[test]
fn sock_accept_waits() {
    let lp = new_loop();
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = Rc::new(listener);
    block_on(&lp, async {
        let (l, li) = (lp.clone(), listener.clone());
        let accept = lp.create_task(async move { l.sock_accept(&*li).await });
        evloop::yield_now().await;
        assert!(!accept.is_done());
        let client = tcp_socket();
        lp.sock_connect(&client, addr).await.unwrap();
        let (_conn, from) = accept.await.unwrap().unwrap();
        assert_eq!(from.as_socket(), client.local_addr().unwrap().as_socket());
    });
    assert_eq!(left_registered(&lp, listener.as_raw_fd()), (false, false));
}

/// CPython `test_cancel_sock_accept`: a `sock_accept` that times out leaves no reader
/// behind; once the listener is closed, connecting to it is refused.
#[test]
fn cancelled_sock_accept() {
    let lp = new_loop();
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let timed_out = block_on(
        &lp,
        evloop::timeout(Duration::from_millis(100), lp.sock_accept(&listener)),
    );
    assert!(
        timed_out.is_err(),
        "nobody connected: the accept must time out"
    );
    assert!(
        !lp.remove_reader(listener.as_raw_fd()),
        "the timed-out accept left its reader"
    );
    drop(listener);
    let client = tcp_socket();
    let err = block_on(&lp, lp.sock_connect(&client, addr)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

/// A protocol that records what it gets and says when it has `want` bytes.
struct Collect {
    got: Rc<RefCell<Vec<u8>>>,
}

impl Protocol for Collect {
    fn data_received(&mut self, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
    }
}

/// CPython `test_create_connection_sock`: a socket connected with `sock_connect`
/// (a `socket2::Socket`) handed to `connect_accepted_socket` runs a protocol.
#[test]
fn sock_connect_then_protocol() {
    let lp = new_loop();
    let (_server, addr) = tcp_server(&lp, Probes::echo().factory());
    let sock = tcp_socket();
    block_on(&lp, lp.sock_connect(&sock, addr)).unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (t, _p) = block_on(
        &lp,
        lp.connect_accepted_socket(sock, Collect { got: got.clone() }),
    )
    .unwrap()
    .unwrap();
    t.write(b"through the transport");
    run_until(&lp, "the echo", || got.borrow().len() >= 21);
    assert_eq!(&*got.borrow(), b"through the transport");
    t.close();
    run_until(&lp, "closed", || t.is_closing());
}

/// Two `sock_recv` waiting on one socket cannot both wait: the one whose wait was
/// replaced ends with `ResourceBusy` (asyncio's would wait for ever); the other gets
/// the data.
#[test]
fn second_waiter_on_one_direction_displaces_the_first() {
    let lp = new_loop();
    let (client, peer) = tcp_pair();
    let client = Rc::new(client);
    block_on(&lp, async {
        let (l, c) = (lp.clone(), client.clone());
        let first = lp.create_task(async move { l.sock_recv(&*c, 16).await });
        evloop::yield_now().await;
        let (l, c) = (lp.clone(), client.clone());
        let second = lp.create_task(async move { l.sock_recv(&*c, 16).await });
        evloop::yield_now().await;
        let err = first.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResourceBusy, "{err}");
        (&peer).write_all(b"data").unwrap();
        assert_eq!(second.await.unwrap().unwrap(), b"data");
    });
    assert_eq!(left_registered(&lp, client.as_raw_fd()), (false, false));
}

/// `net::readable(fd)` replaced by an `add_reader` on the same fd ends with
/// `ResourceBusy` instead of waiting for ever (its reader is gone: nothing would
/// ever wake it).
#[test]
fn readable_replaced_by_add_reader_is_an_error() {
    let lp = new_loop();
    let (a, _b) = socketpair_std();
    let fd = a.as_raw_fd();
    let r = block_on(&lp, async {
        let waiter = lp.create_task(evloop::net::readable(fd));
        evloop::yield_now().await;
        lp.add_reader(fd, |_| {}).unwrap();
        evloop::timeout(Duration::from_secs(10), waiter).await
    });
    let err = r.expect("the displaced wait hung").unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceBusy);
    assert!(lp.remove_reader(fd), "the new reader stays");
}

/// The same for a `sock_sendall` waiting for room whose writer is replaced.
#[test]
fn sock_sendall_displaced_by_add_writer_is_an_error() {
    let lp = new_loop();
    let (a, _b) = socketpair_std();
    let fd = a.as_raw_fd();
    let a = Rc::new(a);
    let r = block_on(&lp, async {
        let (l, s) = (lp.clone(), a.clone());
        let big = vec![0u8; 8 << 20];
        let send = lp.create_task(async move { l.sock_sendall(&*s, &big).await });
        evloop::yield_now().await;
        lp.add_writer(fd, |_| {}).unwrap();
        evloop::timeout(Duration::from_secs(10), send).await
    });
    let err = r.expect("the displaced sendall hung").unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResourceBusy);
    assert!(lp.remove_writer(fd), "the new writer stays");
}

/// `sock_sendall` to a peer that went away is `BrokenPipe` (sent with
/// `MSG_NOSIGNAL`: no `SIGPIPE`).
#[test]
fn sock_sendall_to_closed_peer_is_broken_pipe() {
    let lp = new_loop();
    let (a, b) = socketpair_std();
    drop(b);
    let err = block_on(&lp, lp.sock_sendall(&a, b"anyone?")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
}

/// `sock_recv` on a socket whose peer closed is empty (end of stream); `n == 0`
/// returns at once.
#[test]
fn sock_recv_eof_and_zero() {
    let lp = new_loop();
    let (a, b) = socketpair_std();
    assert_eq!(block_on(&lp, lp.sock_recv(&a, 0)).unwrap(), b"");
    assert_eq!(block_on(&lp, lp.sock_recv_into(&a, &mut [])).unwrap(), 0);
    drop(b);
    assert_eq!(block_on(&lp, lp.sock_recv(&a, 64)).unwrap(), b"");
}

/// A socket the loop itself owns (here one handed to `connect_accepted_socket`) is
/// refused with a clear error once a call would wait, never taken over.
#[test]
fn library_socket_is_refused() {
    let lp = new_loop();
    let (a, _b) = socketpair_std();
    let fd = a.as_raw_fd();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (t, _p) = block_on(&lp, lp.connect_accepted_socket(a, Collect { got }))
        .unwrap()
        .unwrap();
    // SAFETY: `fd` is the transport's socket, open until the transport closes, which
    // happens only after this borrow ends (below).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let err = block_on(&lp, lp.sock_recv(&borrowed, 16)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    t.close();
    run_until(&lp, "closed", || t.is_closing());
}

/// A non-blocking Unix stream pair from std.
fn socketpair_std() -> (StdUnixStream, StdUnixStream) {
    let (a, b) = StdUnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// `sock_recv` reads what a std peer wrote (a quick check that reads consume).
#[test]
fn sock_recv_reads_in_order() {
    let lp = new_loop();
    let (a, mut b) = socketpair_std();
    b.write_all(b"one two").unwrap();
    assert_eq!(block_on(&lp, lp.sock_recv(&a, 4)).unwrap(), b"one ");
    assert_eq!(block_on(&lp, lp.sock_recv(&a, 16)).unwrap(), b"two");
    let mut rest = [0u8; 4];
    assert_eq!(
        (&a).read(&mut rest).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}
