//! The async socket types keep one waker per waiting future, however often it is
//! polled, and let go of it when the future is dropped (a timeout expired, a task was
//! cancelled): 10,000 dropped `accept()` / `readable()` / `recv()` / `read()` futures
//! on one socket leave none of their wakers behind, and a readiness event wakes only
//! the futures still waiting.
//!
//! Each awaiter gets its own counting waker (an `Arc`): how many clones of it the
//! socket keeps is `Arc::strong_count - 1`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use evloop::Loop;
use evloop::net::{TcpListener, TcpStream, UdpSocket, UnixStream};

#[path = "util/waker_counts.rs"]
mod waker_counts;
use waker_counts::*;

const N: usize = 10_000;

/// Polls a fresh future from `make` once with each counter's waker (each is
/// pending), and drops it.
fn poll_and_drop<F: Future>(cs: &[Arc<Counting>], mut make: impl FnMut() -> F) {
    for c in cs {
        let f = pin!(make());
        assert!(poll(f, c).is_pending(), "nothing is ready yet");
    }
}

/// Runs `f` on a fresh loop (the socket types need a running one).
fn on_loop(f: impl Future<Output = ()>) {
    let lp = Loop::new().unwrap();
    lp.run_until_complete(evloop::timeout(Duration::from_secs(30), f))
        .unwrap()
        .expect("the test finishes in time");
}

#[test]
fn dropped_accept_futures_keep_no_waker() {
    on_loop(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cs = counters(N);
        poll_and_drop(&cs, || listener.accept());
        assert_eq!(total_held(&cs), 0, "no dropped accept() keeps its waker");

        // The listener still works, and a connection wakes none of the dropped.
        let addr = listener.local_addr().unwrap();
        let client = evloop::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (_conn, _) = listener.accept().await.unwrap();
        let _client = client.await.unwrap();
        assert_eq!(cs.iter().map(|c| wakes(c)).sum::<usize>(), 0);
        assert_eq!(total_held(&cs), 0);
    });
}

#[test]
fn dropped_readable_futures_keep_no_waker() {
    on_loop(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = evloop::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (conn, _) = listener.accept().await.unwrap();
        let client = client.await.unwrap();
        let cs = counters(N);
        // `readable()` answers from the last event: make the stream not ready first.
        let mut buf = [0u8; 16];
        {
            let mut read = pin!(conn.read(&mut buf));
            assert!(poll(read.as_mut(), &cs[0]).is_pending());
        }
        poll_and_drop(&cs, || conn.readable());
        poll_and_drop(&cs, || async {
            let mut buf = [0u8; 16];
            conn.read(&mut buf).await
        });
        assert_eq!(
            total_held(&cs),
            0,
            "no dropped readable()/read() keeps its waker"
        );

        client.write_all(b"x").await.unwrap();
        conn.readable().await;
        assert_eq!(conn.read(&mut buf).await.unwrap(), 1);
        assert_eq!(total_held(&cs), 0);
    });
}

#[test]
fn dropped_recv_futures_keep_no_waker() {
    on_loop(async {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let cs = counters(N);
        poll_and_drop(&cs, || async {
            let mut buf = [0u8; 8];
            sock.recv_from(&mut buf).await.map(|(n, _)| n)
        });
        assert_eq!(total_held(&cs), 0, "no dropped recv_from() keeps its waker");
    });
}

#[test]
fn a_repolled_future_keeps_one_waker_and_is_woken_once() {
    on_loop(async {
        let (a, b) = UnixStream::pair().unwrap();
        let c = Arc::new(Counting::default());
        let mut buf = [0u8; 8];
        let mut read = pin!(a.read(&mut buf));
        for _ in 0..1000 {
            assert!(poll(read.as_mut(), &c).is_pending());
        }
        assert_eq!(held(&c), 1, "re-polls with the same waker keep one clone");

        // Another waker replaces it: the old one is let go of.
        let other = Arc::new(Counting::default());
        assert!(poll(read.as_mut(), &other).is_pending());
        assert_eq!((held(&c), held(&other)), (0, 1));

        b.write_all(b"hi").await.unwrap();
        // Let the loop see the event.
        for _ in 0..100 {
            if wakes(&other) > 0 {
                break;
            }
            evloop::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!((wakes(&c), wakes(&other)), (0, 1));
        assert!(matches!(poll(read.as_mut(), &other), Poll::Ready(Ok(2))));
        assert_eq!(held(&other), 0, "a finished future keeps nothing");
    });
}
