//! The socket types meet the rest of the ecosystem: `AsFd` / `AsRawFd`, `from_std` /
//! `into_std`, options through `socket2::SockRef`, and `&TcpStream` / `&UnixStream`
//! as `AsyncRead + AsyncWrite`, so that one stream splits into a reader task and a
//! writer task by sharing a reference.

#[path = "util/net.rs"]
mod net_util;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;

use evloop::net::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use net_util::{SockPath, assert_bytes_eq, block_on, new_loop, payload};
use socket2::SockRef;

/// The fd of anything that is both `AsFd` and `AsRawFd`, checking that they agree.
fn fd_of<T: AsFd + AsRawFd>(t: &T) -> RawFd {
    let fd = t.as_raw_fd();
    assert_eq!(t.as_fd().as_raw_fd(), fd);
    fd
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let connect = evloop::spawn(async move { TcpStream::connect(addr).await.unwrap() });
    let (server, _) = l.accept().await.unwrap();
    (connect.await.unwrap(), server)
}

#[test]
fn tcp_stream_goes_into_std_with_its_fd_and_unread_data() {
    let lp = new_loop();
    block_on(&lp, async {
        let (client, server) = tcp_pair().await;
        let fd = fd_of(&client);
        server.write_all(b"unread").await.unwrap();
        client.readable().await;
        let mut std_client = client.into_std().unwrap();
        assert_eq!(std_client.as_raw_fd(), fd, "the same socket comes out");
        std_client.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 6];
        std_client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"unread");
        // Deregistered: the same socket can be wrapped again on this loop.
        let again = TcpStream::from_std(std_client).unwrap();
        again.write_all(b"back").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"back");
    });
}

#[test]
fn tcp_listener_round_trips_through_std() {
    let lp = new_loop();
    block_on(&lp, async {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_l.local_addr().unwrap();
        let l = TcpListener::from_std(std_l).unwrap();
        fd_of(&l);
        let std_l = l.into_std().unwrap();
        assert_eq!(std_l.local_addr().unwrap(), addr, "still listening");
        let _peer = std::net::TcpStream::connect(addr).unwrap();
        std_l.set_nonblocking(false).unwrap();
        std_l.accept().unwrap();
    });
}

#[test]
fn nodelay_is_on_by_default_and_can_be_turned_off() {
    let lp = new_loop();
    block_on(&lp, async {
        let (client, server) = tcp_pair().await;
        assert!(
            client.nodelay().unwrap(),
            "connected streams have TCP_NODELAY"
        );
        assert!(
            server.nodelay().unwrap(),
            "accepted streams have TCP_NODELAY"
        );
        client.set_nodelay(false).unwrap();
        assert!(!client.nodelay().unwrap());
        assert!(
            !SockRef::from(&client).tcp_nodelay().unwrap(),
            "the same option"
        );
    });
}

#[test]
fn other_options_go_through_socket2_sockref() {
    let lp = new_loop();
    block_on(&lp, async {
        let (client, _server) = tcp_pair().await;
        let sock = SockRef::from(&client);
        sock.set_keepalive(true).unwrap();
        assert!(sock.keepalive().unwrap());
        sock.set_keepalive(false).unwrap();
        assert!(!SockRef::from(&client).keepalive().unwrap());
        sock.set_recv_buffer_size(64 * 1024).unwrap();
        sock.set_send_buffer_size(64 * 1024).unwrap();
        // Linux doubles what it is given, within its limits: at least what was asked.
        assert!(sock.recv_buffer_size().unwrap() >= 64 * 1024);
        assert!(sock.send_buffer_size().unwrap() >= 64 * 1024);
        // The stream still works after its options changed under it.
        client.write_all(b"x").await.unwrap();

        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        SockRef::from(&u).set_broadcast(true).unwrap();
        assert!(SockRef::from(&u).broadcast().unwrap());
    });
}

/// One task writes 2 MB through `&stream` while another reads the echo through
/// `&stream`: neither could finish alone (the echo fills the socket buffers), so
/// both run concurrently on one stream.
#[test]
fn a_tcp_stream_splits_into_reader_and_writer_tasks_by_reference() {
    let lp = new_loop();
    block_on(&lp, async {
        let (client, server) = tcp_pair().await;
        let echo = evloop::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = server.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                server.write_all(&buf[..n]).await.unwrap();
            }
        });
        let data = payload(2 << 20);
        let client = Rc::new(client);
        let writer = {
            let (client, data) = (client.clone(), data.clone());
            evloop::spawn(async move {
                let mut w: &TcpStream = &client;
                for chunk in data.chunks(100_000) {
                    // The trait's method, not the inherent one of the same name.
                    AsyncWriteExt::write_all(&mut w, chunk).await.unwrap();
                }
                AsyncWriteExt::close(&mut w).await.unwrap(); // shutdown(Write): the echo ends
            })
        };
        let reader = {
            let client = client.clone();
            evloop::spawn(async move {
                let mut r: &TcpStream = &client;
                let mut got = Vec::new();
                AsyncReadExt::read_to_end(&mut r, &mut got).await.unwrap();
                got
            })
        };
        writer.await.unwrap();
        let got = reader.await.unwrap();
        echo.await.unwrap();
        assert_bytes_eq(&got, &data, "the echo read through &TcpStream");
    });
}

#[test]
fn a_unix_stream_splits_by_reference_too() {
    let lp = new_loop();
    block_on(&lp, async {
        let (a, b) = UnixStream::pair().unwrap();
        let a = Rc::new(a);
        let reader = {
            let a = a.clone();
            evloop::spawn(async move {
                let mut buf = [0u8; 5];
                AsyncReadExt::read_exact(&mut &*a, &mut buf).await.unwrap();
                buf
            })
        };
        let writer = {
            let a = a.clone();
            evloop::spawn(
                async move { AsyncWriteExt::write_all(&mut &*a, b"ping!").await.unwrap() },
            )
        };
        let mut buf = [0u8; 5];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping!");
        b.write_all(b"pong!").await.unwrap();
        writer.await.unwrap();
        assert_eq!(&reader.await.unwrap(), b"pong!");
    });
}

#[test]
fn unix_stream_round_trips_through_std() {
    let lp = new_loop();
    block_on(&lp, async {
        let (std_a, mut std_b) = std::os::unix::net::UnixStream::pair().unwrap();
        let a = UnixStream::from_std(std_a).unwrap();
        fd_of(&a);
        std_b.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        a.read_exact(&mut buf).await.unwrap();
        let mut std_a = a.into_std().unwrap();
        std_a.write_all(b"bye").unwrap();
        let mut buf = [0u8; 3];
        std_b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"bye");
    });
}

#[test]
fn unix_listener_into_std_keeps_its_socket_file() {
    let lp = new_loop();
    let path = SockPath::new("interop-into-std");
    block_on(&lp, async {
        let l = UnixListener::bind(&path).unwrap();
        fd_of(&l);
        let std_l = l.into_std().unwrap();
        assert!(path.0.exists(), "into_std removed the socket file");
        let _peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
        std_l.set_nonblocking(false).unwrap();
        std_l.accept().unwrap();
    });
}

#[test]
fn unix_listener_from_std_leaves_the_file_alone_when_dropped() {
    let lp = new_loop();
    let path = SockPath::new("interop-from-std");
    block_on(&lp, async {
        let std_l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let l = UnixListener::from_std(std_l).unwrap();
        assert_eq!(l.path(), path.0.as_path());
        let connect = evloop::spawn({
            let p = path.0.clone();
            async move { UnixStream::connect(p).await.unwrap() }
        });
        let server = l.accept().await.unwrap();
        let client = connect.await.unwrap();
        client.write_all(b"k").await.unwrap();
        let mut buf = [0u8; 1];
        server.read_exact(&mut buf).await.unwrap();
        drop(l);
        assert!(
            path.0.exists(),
            "a listener made elsewhere removed its file"
        );
    });
}

#[test]
fn udp_socket_round_trips_through_std() {
    let lp = new_loop();
    block_on(&lp, async {
        let std_u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let u = UdpSocket::from_std(std_u).unwrap();
        fd_of(&u);
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        peer.send_to(b"dgram", u.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = u.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"dgram"[..], peer.local_addr().unwrap())
        );
        peer.send_to(b"queued", u.local_addr().unwrap())
            .await
            .unwrap();
        let std_u = u.into_std().unwrap();
        std_u.set_nonblocking(false).unwrap();
        let n = std_u.recv(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            b"queued",
            "a datagram queued in the kernel stays"
        );
    });
}
