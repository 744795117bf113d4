//! `StreamReader::readexactly`'s block: a `readexactly(n)` that waits makes room for
//! exactly `n` bytes at once, the data lands there, and the block is handed over
//! without a copy when it holds exactly the message. The edge cases of that path:
//! data already buffered (at the buffer's front or past bytes already read),
//! messages that arrive in pieces or several in one write, EOF in the middle, a
//! cancelled read, and more than twice the limit.
//!
//! A counting allocator (this thread's live heap bytes) shows when the block is
//! allocated.

#[path = "util/net.rs"]
mod net_util;

use std::cell::RefCell;
use std::io::ErrorKind;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use evloop::net::{IncompleteReadError, StreamOptions, StreamReader, StreamWriter};
use evloop::{Loop, sleep, timeout};
use net_util::*;

#[path = "util/alloc_count.rs"]
mod alloc_count;
use alloc_count::live_bytes as live;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// The client's reader and the server's writer of one connection (and the rest,
/// kept alive).
struct Pair {
    cr: StreamReader,
    _cw: StreamWriter,
    _sr: StreamReader,
    sw: StreamWriter,
    _server: evloop::net::Server,
}

async fn pair_with(limit: usize) -> Pair {
    let lp = Loop::current().unwrap();
    let accepted: Rc<RefCell<Vec<(StreamReader, StreamWriter)>>> = Rc::default();
    let a = accepted.clone();
    let opts = StreamOptions::default().limit(limit);
    let server = lp
        .start_server_with(
            "127.0.0.1:0",
            move |r, w| {
                a.borrow_mut().push((r, w));
                std::future::ready(())
            },
            opts.clone(),
        )
        .await
        .unwrap()
        .unwrap();
    let addr = server.local_addrs()[0];
    let (cr, cw) = lp.open_connection_with(addr, opts).await.unwrap().unwrap();
    for _ in 0..20_000 {
        if !accepted.borrow().is_empty() {
            break;
        }
        sleep(Duration::from_millis(1)).await;
    }
    let (sr, sw) = accepted.borrow_mut().pop().expect("accepted in time");
    Pair {
        cr,
        _cw: cw,
        _sr: sr,
        sw,
        _server: server,
    }
}

async fn pair() -> Pair {
    pair_with(evloop::net::DEFAULT_LIMIT).await
}

fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    let lp = new_loop();
    block_on(&lp, f());
}

fn incomplete(e: &std::io::Error) -> &IncompleteReadError {
    assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
    e.get_ref()
        .and_then(|e| e.downcast_ref::<IncompleteReadError>())
        .unwrap_or_else(|| panic!("not an IncompleteReadError: {e:?}"))
}

const MSG: usize = 64 * 1024;

/// The block of a waiting `readexactly(n)` exists before any byte arrives (it is
/// allocated by the read, not while data comes in); the message comes back in it,
/// holding no more than `n` spare bytes.
#[test]
fn a_waiting_readexactly_holds_its_block_before_data_comes() {
    run(|| async {
        let mut p = pair().await;
        let before = live();
        {
            let mut read = pin!(p.cr.readexactly(MSG));
            let cx = &mut Context::from_waker(Waker::noop());
            assert!(read.as_mut().poll(cx).is_pending());
            let grew = live() - before;
            assert!(
                grew >= MSG as isize,
                "the block is allocated when the read waits: {grew} bytes"
            );
        }
        let data = payload(MSG);
        p.sw.write(&data);
        let got = p.cr.readexactly(MSG).await.unwrap();
        assert_bytes_eq(&got, &data, "the message");
        assert!(got.capacity() <= 2 * MSG, "capacity {}", got.capacity());
    });
}

/// A large message that arrives in pieces (with pauses, so in several reads) comes
/// back whole and in order, message after message.
#[test]
fn readexactly_gathers_a_message_sent_in_pieces() {
    run(|| async {
        let mut p = pair().await;
        for round in 0..3 {
            let data = payload(MSG + round);
            let w = &p.sw;
            let send = async {
                for piece in [&data[..1000], &data[1000..31_000], &data[31_000..]] {
                    w.write(piece);
                    w.drain().await.unwrap();
                    sleep(Duration::from_millis(3)).await;
                }
            };
            let (got, ()) = futures_join(p.cr.readexactly(MSG + round), send).await;
            assert_bytes_eq(&got.unwrap(), &data, "pieces");
        }
    });
}

/// Bytes left behind by an earlier, smaller read (past the front of the buffer)
/// start the next large message: nothing is lost or repeated.
#[test]
fn readexactly_after_a_partial_read_keeps_the_leftover() {
    run(|| async {
        let mut p = pair().await;
        let data = payload(3 * MSG);
        p.sw.write(&data[..100]);
        assert_eq!(p.cr.read(10).await.unwrap(), &data[..10]);
        let w = &p.sw;
        let send = async {
            sleep(Duration::from_millis(5)).await;
            w.write(&data[100..]);
        };
        let (got, ()) = futures_join(p.cr.readexactly(MSG), send).await;
        assert_bytes_eq(&got.unwrap(), &data[10..10 + MSG], "first message");
        let second = p.cr.readexactly(MSG).await.unwrap();
        assert_bytes_eq(&second, &data[10 + MSG..10 + 2 * MSG], "second message");
        let rest = p.cr.readexactly(MSG - 10).await.unwrap();
        assert_bytes_eq(&rest, &data[10 + 2 * MSG..], "the rest");
    });
}

/// Several messages in one write (more than one message buffered at once): each
/// `readexactly` takes exactly its own.
#[test]
fn readexactly_splits_messages_sent_together() {
    run(|| async {
        let mut p = pair().await;
        let n = 40_000;
        let data = payload(5 * n);
        p.sw.write(&data);
        for i in 0..5 {
            let got = p.cr.readexactly(n).await.unwrap();
            assert_bytes_eq(&got, &data[i * n..(i + 1) * n], "message");
            assert!(got.capacity() <= 2 * n, "capacity {}", got.capacity());
        }
    });
}

/// EOF in the middle of a large message: an `IncompleteReadError` with every byte
/// that came, and the reader is at EOF.
#[test]
fn eof_in_the_middle_of_a_large_readexactly() {
    run(|| async {
        let mut p = pair().await;
        let data = payload(30_000);
        let w = &p.sw;
        let send = async {
            w.write(&data[..10_000]);
            sleep(Duration::from_millis(5)).await;
            w.write(&data[10_000..]);
            sleep(Duration::from_millis(5)).await;
            w.write_eof();
        };
        let (r, ()) = futures_join(p.cr.readexactly(MSG), send).await;
        let e = r.unwrap_err();
        let inc = incomplete(&e);
        assert_eq!(inc.expected, Some(MSG));
        assert_bytes_eq(&inc.partial, &data, "partial");
        assert!(p.cr.at_eof());
        assert_eq!(p.cr.read(10).await.unwrap(), b"");
    });
}

/// A large `readexactly` cancelled while part of its message is in (a timeout)
/// loses no byte: a smaller read takes from the front, and the next
/// `readexactly` gets the rest in order.
#[test]
fn a_cancelled_large_readexactly_loses_nothing() {
    run(|| async {
        let mut p = pair().await;
        let data = payload(2 * MSG);
        p.sw.write(&data[..20_000]);
        assert!(
            timeout(Duration::from_millis(30), p.cr.readexactly(MSG))
                .await
                .is_err()
        );
        assert_eq!(p.cr.read(7).await.unwrap(), &data[..7]);
        assert!(
            timeout(Duration::from_millis(30), p.cr.readexactly(MSG))
                .await
                .is_err()
        );
        p.sw.write(&data[20_000..]);
        let got = p.cr.readexactly(MSG).await.unwrap();
        assert_bytes_eq(&got, &data[7..7 + MSG], "after the cancels");
        let rest = p.cr.readexactly(MSG - 7).await.unwrap();
        assert_bytes_eq(&rest, &data[7 + MSG..], "the rest");
    });
}

/// Sizes around twice the limit (a small limit here): up to it the block is made
/// ahead, past it the buffer grows as data comes and reading is resumed while the
/// read waits; both return exactly the bytes sent.
#[test]
fn readexactly_around_twice_the_limit() {
    run(|| async {
        let limit = 1000;
        let mut p = pair_with(limit).await;
        for n in [1, 999, 2 * limit, 2 * limit + 1, 10 * limit] {
            let data = payload(n);
            let w = &p.sw;
            let send = async {
                sleep(Duration::from_millis(2)).await;
                w.write(&data);
            };
            let (got, ()) = futures_join(p.cr.readexactly(n), send).await;
            assert_bytes_eq(&got.unwrap(), &data, "message");
        }
        // Bytes beyond twice the limit while nobody reads pause reading, and a
        // readexactly of them all still completes.
        let data = payload(20 * limit);
        p.sw.write(&data);
        sleep(Duration::from_millis(20)).await;
        let got = p.cr.readexactly(20 * limit).await.unwrap();
        assert_bytes_eq(&got, &data, "paused, then all of it");
    });
}

/// Runs `a` and `b` concurrently on this task; both outputs.
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

/// A large `readexactly` already waiting when more than its message arrives in one
/// write (read straight into its block): it takes exactly its message, and the bytes
/// after it are there, in order, for the next reads.
#[test]
fn a_waiting_readexactly_takes_only_its_message() {
    run(|| async {
        let mut p = pair().await;
        let data = payload(5 * MSG / 2);
        let w = &p.sw;
        let send = async {
            sleep(Duration::from_millis(5)).await;
            w.write(&data);
        };
        let (got, ()) = futures_join(p.cr.readexactly(MSG), send).await;
        let got = got.unwrap();
        assert_bytes_eq(&got, &data[..MSG], "first message");
        assert!(got.capacity() <= 2 * MSG, "capacity {}", got.capacity());
        let second = p.cr.readexactly(MSG).await.unwrap();
        assert_bytes_eq(&second, &data[MSG..2 * MSG], "second message");
        let mut rest = Vec::new();
        while rest.len() < MSG / 2 {
            rest.extend(p.cr.read(MSG).await.unwrap());
        }
        assert_bytes_eq(&rest, &data[2 * MSG..], "the rest");
    });
}

/// The same over a Unix socket: large messages, in pieces, then EOF mid-message.
#[test]
fn large_readexactly_over_a_unix_socket() {
    run(|| async {
        let lp = Loop::current().unwrap();
        let dir = std::env::temp_dir().join(format!("evloop-exact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let accepted: Rc<RefCell<Vec<(StreamReader, StreamWriter)>>> = Rc::default();
        let a = accepted.clone();
        let server = lp
            .start_unix_server(&path, move |r, w| {
                a.borrow_mut().push((r, w));
                std::future::ready(())
            })
            .await
            .unwrap()
            .unwrap();
        let (mut cr, _cw) = lp.open_unix_connection(&path).await.unwrap().unwrap();
        for _ in 0..20_000 {
            if !accepted.borrow().is_empty() {
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        let (_sr, sw) = accepted.borrow_mut().pop().expect("accepted in time");
        let data = payload(2 * MSG + 500);
        let send = async {
            for piece in data.chunks(20_000) {
                sw.write(piece);
                sw.drain().await.unwrap();
                sleep(Duration::from_millis(1)).await;
            }
            sw.write_eof();
        };
        let read = async {
            let a = cr.readexactly(MSG).await.unwrap();
            let b = cr.readexactly(MSG).await.unwrap();
            let e = cr.readexactly(MSG).await.unwrap_err();
            (a, b, incomplete(&e).partial.clone())
        };
        let ((a, b, partial), ()) = futures_join(read, send).await;
        assert_bytes_eq(&a, &data[..MSG], "first");
        assert_bytes_eq(&b, &data[MSG..2 * MSG], "second");
        assert_bytes_eq(&partial, &data[2 * MSG..], "partial");
        server.close();
        let _ = std::fs::remove_dir_all(&dir);
    });
}
