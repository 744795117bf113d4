//! The async streams, for tasks: `TcpListener` / `TcpStream` (accept, connect, read,
//! read_exact, read_to_end, write_all, shutdown(Write) → the peer reads EOF),
//! `UnixListener` / `UnixStream` (and `pair`), the `futures-io` traits driven by hand,
//! `readable(fd)` / `writable(fd)` on a socketpair, and wrapping std sockets.
//!
//! Behaviour ported from CPython's `test_streams.py` and `test_sock_lowlevel.py`
//! (sock_accept / sock_connect / sock_recv / sock_sendall, a large payload, EOF), on
//! evloop's task API.

#[path = "util/net.rs"]
mod net_util;

use std::future::poll_fn;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use evloop::net::{TcpListener, TcpStream, UnixListener, UnixStream, readable, writable};
use net_util::*;

const MIB: usize = 1024 * 1024;

/// Both ends in tasks on one loop: the client writes 8 MiB (far more than the socket
/// buffers hold, so `write_all` waits for writability many times) while reading the
/// echo; the server echoes until EOF, then shuts its side down.
#[test]
fn tcp_echo_between_tasks_multi_mib() {
    let lp = new_loop();
    block_on(&lp, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(format!("{listener:?}").contains(&addr.to_string()));
        let server = evloop::spawn(async move {
            let (s, peer) = listener.accept().await.unwrap();
            assert_eq!(s.peer_addr().unwrap(), peer);
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
                total += n;
            }
            s.shutdown(Shutdown::Write).unwrap();
            total
        });

        let data = Rc::new(payload(8 * MIB));
        let client = Rc::new(TcpStream::connect(addr).await.unwrap());
        assert_eq!(client.peer_addr().unwrap(), addr);
        let (c2, d2) = (client.clone(), data.clone());
        let writer = evloop::spawn(async move {
            c2.write_all(&d2).await.unwrap();
            c2.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        let n = client.read_to_end(&mut got).await.unwrap();
        assert_eq!(n, data.len());
        assert_bytes_eq(&got, &data, "echo");
        writer.await.unwrap();
        assert_eq!(server.await.unwrap(), data.len());
    });
}

/// A real blocking peer on another thread; read_exact, and EOF seen as `Ok(0)` /
/// `UnexpectedEof`.
#[test]
fn tcp_stream_against_a_std_peer() {
    let lp = new_loop();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"0123456789").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        // Our shutdown(Write) is an EOF here.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        s.write_all(b"bye").unwrap();
        // Dropping s: EOF for the loop side.
    });
    block_on(&lp, async {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"0123");
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"456789");
        s.write_all(b"hello").await.unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut buf = [0u8; 10];
        let err = s.read_exact(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        assert_eq!(s.read(&mut buf).await.unwrap(), 0, "EOF again");
    });
    peer.join().unwrap();
}

#[test]
fn tcp_connect_refused() {
    let lp = new_loop();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = block_on(&lp, TcpStream::connect(addr)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

/// Methods take `&self`: one task reads while another writes on the same stream, and
/// `readable()` / `writable()` wait without doing I/O.
#[test]
fn one_stream_read_and_written_by_two_tasks() {
    let lp = new_loop();
    block_on(&lp, async {
        let (a, b) = UnixStream::pair().unwrap();
        let a = Rc::new(a);
        let b = Rc::new(b);
        let a2 = a.clone();
        let reader = evloop::spawn(async move {
            let mut buf = [0u8; 3];
            a2.read_exact(&mut buf).await.unwrap();
            buf
        });
        let a3 = a.clone();
        let writer = evloop::spawn(async move { a3.write_all(b"abc").await.unwrap() });
        let mut buf = [0u8; 3];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        b.write_all(b"xyz").await.unwrap();
        assert_eq!(&reader.await.unwrap(), b"xyz");
        writer.await.unwrap();
    });
}

#[test]
fn tcp_stream_readable_and_writable_wait_without_io() {
    let lp = new_loop();
    block_on(&lp, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        c.writable().await;
        let s = Rc::new(s);
        let s2 = s.clone();
        let waiter = evloop::spawn(async move {
            s2.readable().await;
            let mut b = [0u8; 2];
            s2.read(&mut b).await.unwrap()
        });
        evloop::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_done(), "readable() with nothing to read");
        c.write_all(b"hi").await.unwrap();
        assert_eq!(waiter.await.unwrap(), 2);
        c.set_nodelay(false).unwrap();
        assert_eq!(c.local_addr().unwrap(), s.peer_addr().unwrap());
    });
}

#[test]
fn unix_listener_and_stream_echo() {
    let lp = new_loop();
    let path = SockPath::new("streams");
    block_on(&lp, async {
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(listener.path(), path.0.as_path());
        let server = evloop::spawn(async move {
            let s = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
            s.shutdown(Shutdown::Write).unwrap();
            drop(listener); // removes the socket file
        });
        let c = Rc::new(UnixStream::connect(&path).await.unwrap());
        let data = Rc::new(payload(2 * MIB));
        let (c2, d2) = (c.clone(), data.clone());
        let writer = evloop::spawn(async move {
            c2.write_all(&d2).await.unwrap();
            c2.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = vec![0u8; data.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_bytes_eq(&got, &data, "unix echo");
        let mut more = [0u8; 1];
        assert_eq!(c.read(&mut more).await.unwrap(), 0, "EOF after the echo");
        writer.await.unwrap();
        server.await.unwrap();
    });
    assert!(
        !path.0.exists(),
        "dropping a UnixListener removes its socket file"
    );
}

#[test]
fn unix_connect_to_nothing_fails() {
    let lp = new_loop();
    let path = SockPath::new("nothing");
    let err = block_on(&lp, UnixStream::connect(&path)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn unix_pair_eof_both_ways() {
    let lp = new_loop();
    block_on(&lp, async {
        let (a, b) = UnixStream::pair().unwrap();
        a.write_all(b"to b").await.unwrap();
        a.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        loop {
            match b.read(&mut buf).await.unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(got, b"to b");
        // The other direction is still open.
        b.write_all(b"to a").await.unwrap();
        drop(b);
        let mut buf = [0u8; 4];
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"to a");
        assert_eq!(a.read(&mut buf).await.unwrap(), 0);
    });
}

/// `futures_io::AsyncRead` / `AsyncWrite` polled by hand (no extension crate):
/// `poll_write`, `poll_read`, `poll_flush`, and `poll_close` as a write shutdown.
#[cfg(feature = "futures-io")]
#[test]
fn futures_io_traits_by_hand() {
    use futures_io::{AsyncRead, AsyncWrite};

    async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, mut buf: &[u8]) {
        while !buf.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, buf))
                .await
                .unwrap();
            assert!(n > 0);
            buf = &buf[n..];
        }
        poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx))
            .await
            .unwrap();
    }
    async fn read_to_end<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = poll_fn(|cx| Pin::new(&mut *r).poll_read(cx, &mut buf))
                .await
                .unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    let lp = new_loop();
    block_on(&lp, async {
        // Unix pair.
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let data = payload(MIB);
        let d2 = data.clone();
        let w = evloop::spawn(async move {
            write_all(&mut a, &d2).await;
            poll_fn(|cx| Pin::new(&mut a).poll_close(cx)).await.unwrap();
            a
        });
        let got = read_to_end(&mut b).await;
        assert_bytes_eq(&got, &data, "futures-io over a Unix pair");
        drop(w.await.unwrap());

        // TCP.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        let d3 = data.clone();
        let w = evloop::spawn(async move {
            write_all(&mut c, &d3).await;
            poll_fn(|cx| Pin::new(&mut c).poll_close(cx)).await.unwrap();
            c
        });
        let got = read_to_end(&mut s).await;
        assert_bytes_eq(&got, &data, "futures-io over TCP");
        drop(w.await.unwrap());
    });
}

/// `readable(fd)` / `writable(fd)` on a std socketpair the loop does not own.
#[test]
fn readable_and_writable_on_a_socketpair() {
    let lp = new_loop();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    block_on(&lp, async {
        writable(fb).await.expect("an empty socket is writable");
        let waiter = evloop::spawn(async move { readable(fa).await });
        evloop::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_done(), "readable with nothing to read");
        (&b).write_all(b"!").unwrap();
        waiter.await.unwrap().unwrap();
        // Level-triggered: the byte is still unread, so it is readable at once.
        readable(fa).await.unwrap();
        let mut buf = [0u8; 1];
        (&a).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"!");
    });
    // Completed futures leave no registration behind.
    assert!(!lp.remove_reader(fa));
    assert!(!lp.remove_writer(fb));
    // The loop never closes fds it is given.
    (&b).write_all(b"?").unwrap();
    let mut buf = [0u8; 1];
    (&a).read_exact(&mut buf).unwrap();
}

/// A `readable` future dropped before it fires leaves no registration, and a newer
/// reader of the same fd is left alone.
#[test]
fn a_dropped_readable_future_unregisters() {
    let lp = new_loop();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fa = a.as_raw_fd();
    let t = lp.create_task(async move { readable(fa).await });
    run_iterations(&lp, 2);
    t.cancel();
    run_iterations(&lp, 2);
    assert!(
        !lp.remove_reader(fa),
        "the registration of a dropped readable() future is still there"
    );
}

#[test]
fn readable_on_a_regular_file_is_an_error() {
    let lp = new_loop();
    let f = std::fs::File::open("/proc/self/exe").unwrap();
    let fd = f.as_raw_fd();
    let r = block_on(&lp, async move { readable(fd).await });
    assert!(r.is_err(), "epoll refuses regular files");
}

#[test]
fn wrapping_std_sockets() {
    let lp = new_loop();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let std_client = std::net::TcpStream::connect(addr).unwrap(); // blocking: made non-blocking by from_std
    block_on(&lp, async move {
        let listener = TcpListener::from_std(std_listener).unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let c = TcpStream::from_std(std_client).unwrap();
        c.write_all(b"wrapped").await.unwrap();
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"wrapped");
        // A read with nothing to read must wait, not block the thread.
        let read = evloop::timeout(Duration::from_millis(30), s.read(&mut buf)).await;
        assert!(read.is_err(), "a read with nothing to read completed");
    });
}

#[test]
fn streams_outside_a_running_loop_panic_clearly() {
    let r = std::panic::catch_unwind(|| UnixStream::pair().map(drop));
    let msg = r.expect_err("UnixStream::pair outside a loop must panic");
    let msg = msg
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| msg.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("loop"), "unclear panic message: {msg:?}");
}
