//! The streams API (`Loop::open_connection` / `start_server` and their Unix twins,
//! `StreamReader`, `StreamWriter`): asyncio's `test_streams.py` ported as behaviour,
//! on real loopback connections (the "feed" of a test is the peer's writer), plus the
//! flow control both ways and what dropping the handles does.
//!
//! (`tests/net_streams.rs` is the lower-level `TcpStream` / `UnixStream` task API.)

#[path = "util/net.rs"]
mod net_util;
mod util;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{self, ErrorKind};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use evloop::net::{
    IncompleteReadError, LimitOverrunError, Server, StreamOptions, StreamReader, StreamWriter,
};
use evloop::{Loop, sleep, timeout};
use net_util::*;
use util::Drops;

/// Both ends of one connection, all on one loop.
struct Pair {
    /// The `open_connection` side.
    cr: StreamReader,
    cw: StreamWriter,
    /// The `start_server` side.
    sr: StreamReader,
    sw: StreamWriter,
    server: Server,
}

type Accepted = Rc<RefCell<Vec<(StreamReader, StreamWriter)>>>;

/// A server that hands its connections' reader and writer to `accepted`.
fn handing_out(
    accepted: &Accepted,
) -> impl FnMut(StreamReader, StreamWriter) -> std::future::Ready<()> + use<> {
    let accepted = accepted.clone();
    move |r, w| {
        accepted.borrow_mut().push((r, w));
        std::future::ready(())
    }
}

/// Waits (bounded) until `cond` holds, sleeping a millisecond at a time.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if cond() {
            return;
        }
        sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A connected pair whose both readers have `limit`.
async fn pair_with(limit: usize) -> Pair {
    let lp = Loop::current().unwrap();
    let accepted: Accepted = Rc::default();
    let opts = StreamOptions::default().limit(limit);
    let server = lp
        .start_server_with("127.0.0.1:0", handing_out(&accepted), opts.clone())
        .await
        .unwrap()
        .unwrap();
    let addr = server.local_addrs()[0];
    let (cr, cw) = lp.open_connection_with(addr, opts).await.unwrap().unwrap();
    until("the server's side", || !accepted.borrow().is_empty()).await;
    let (sr, sw) = accepted.borrow_mut().pop().unwrap();
    Pair {
        cr,
        cw,
        sr,
        sw,
        server,
    }
}

async fn pair() -> Pair {
    pair_with(evloop::net::DEFAULT_LIMIT).await
}

/// Runs `f` on a fresh loop, with a deadline.
fn run<F: Future<Output = ()>>(f: impl FnOnce() -> F) {
    let lp = new_loop();
    block_on(&lp, f());
}

fn overrun(e: &io::Error) -> &LimitOverrunError {
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    e.get_ref()
        .and_then(|e| e.downcast_ref::<LimitOverrunError>())
        .unwrap_or_else(|| panic!("not a LimitOverrunError: {e:?}"))
}

fn incomplete(e: &io::Error) -> &IncompleteReadError {
    assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");
    e.get_ref()
        .and_then(|e| e.downcast_ref::<IncompleteReadError>())
        .unwrap_or_else(|| panic!("not an IncompleteReadError: {e:?}"))
}

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// The peer sends `chunks` (one write each, a short pause between), then EOF.
async fn send_then_eof(w: &StreamWriter, chunks: &[&[u8]]) {
    for c in chunks {
        w.write(c);
        w.drain().await.unwrap();
        sleep(Duration::from_millis(2)).await;
    }
    w.write_eof();
}

/// What is left in `r`'s buffer, once the peer has sent EOF.
async fn rest(r: &mut StreamReader) -> Vec<u8> {
    r.read_to_end().await.unwrap()
}

/// test_open_connection, test_start_server: a line server on `start_server`
/// (`readline`, `write`, `drain`), a client on `open_connection`; closing the
/// server and the writers ends everything, and `wait_closed` returns.
#[test]
fn open_connection_talks_to_start_server() {
    run(|| async {
        let lp = Loop::current().unwrap();
        let served = Rc::new(Cell::new(0));
        let s = served.clone();
        let server = lp
            .start_server(
                "127.0.0.1:0",
                move |mut r: StreamReader, w: StreamWriter| {
                    let s = s.clone();
                    async move {
                        let line = r.readline().await.unwrap();
                        w.write(&line);
                        w.drain().await.unwrap();
                        w.close();
                        w.wait_closed().await.unwrap();
                        s.set(s.get() + 1);
                    }
                },
            )
            .await
            .unwrap()
            .unwrap();
        let addr = server.local_addrs()[0];
        for _ in 0..3 {
            let (mut r, w) = lp.open_connection(addr).await.unwrap().unwrap();
            assert!(w.can_write_eof());
            w.write(b"hello world!\n");
            w.drain().await.unwrap();
            assert_eq!(r.readline().await.unwrap(), b"hello world!\n");
            assert_eq!(r.read_to_end().await.unwrap(), b"");
            assert!(r.at_eof());
            w.close();
            assert!(w.is_closing());
            w.wait_closed().await.unwrap();
        }
        until("the server's three tasks", || served.get() == 3).await;
        server.close();
        timeout(PATIENCE, server.wait_closed()).await.unwrap();
    });
}

/// test_open_unix_connection, test_start_unix_server: the same over a Unix socket.
#[test]
fn open_unix_connection_talks_to_start_unix_server() {
    run(|| async {
        let lp = Loop::current().unwrap();
        let path = SockPath::new("streams");
        let server = lp
            .start_unix_server(&path, |mut r: StreamReader, w: StreamWriter| async move {
                while let Ok(line) = r.readline().await {
                    if line.is_empty() {
                        break;
                    }
                    w.writelines([&b"echo: "[..], &line]);
                    w.drain().await.unwrap();
                }
            })
            .await
            .unwrap()
            .unwrap();
        let (mut r, w) = lp.open_unix_connection(&path).await.unwrap().unwrap();
        w.write(b"one\ntwo\n");
        assert_eq!(r.readline().await.unwrap(), b"echo: one\n");
        assert_eq!(r.readline().await.unwrap(), b"echo: two\n");
        w.write_eof();
        // The server's task returns at EOF and drops its handles: the connection ends.
        assert_eq!(r.read_to_end().await.unwrap(), b"");
        w.close();
        w.wait_closed().await.unwrap();
        server.close();
        timeout(PATIENCE, server.wait_closed()).await.unwrap();
        assert!(!path.0.exists(), "the socket file is removed on close");
    });
}

/// test_open_connection_error, test_open_unix_connection_error: a refused
/// connection is an `Err`, not a hang.
#[test]
fn open_connection_errors() {
    run(|| async {
        let lp = Loop::current().unwrap();
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = lp.open_connection(addr).await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        let path = SockPath::new("streams-none");
        assert!(lp.open_unix_connection(&path).await.unwrap().is_err());
    });
}

/// test_invalid_limit: a zero limit is `InvalidInput` (asyncio's ValueError), for
/// clients and servers.
#[test]
fn zero_limit_is_invalid_input() {
    run(|| async {
        let lp = Loop::current().unwrap();
        let zero = StreamOptions::default().limit(0);
        let e = lp
            .start_server_with("127.0.0.1:0", |_, _| async {}, zero.clone())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("limit"), "{e}");
        let path = SockPath::new("streams-zero");
        let e = lp
            .start_unix_server_with(&path, |_, _| async {}, zero.clone())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let p = pair().await;
        let addr = p.server.local_addrs()[0];
        let e = lp
            .open_connection_with(addr, zero)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
}

/// test_read_zero: `read(0)` is empty at once and takes nothing.
#[test]
fn read_zero_returns_at_once() {
    run(|| async {
        let mut p = pair().await;
        {
            let mut f = pin!(p.cr.read(0));
            assert!(matches!(poll_once(f.as_mut()), Poll::Ready(Ok(v)) if v.is_empty()));
        }
        send_then_eof(&p.sw, &[b"line1\nline2\n"]).await;
        assert_eq!(p.cr.read(0).await.unwrap(), b"");
        assert_eq!(rest(&mut p.cr).await, b"line1\nline2\n");
    });
}

/// test_read, test_read_line_breaks, test_read_limit: `read(n)` waits for data and
/// returns up to `n` bytes of what is there, not bounded by the limit.
#[test]
fn read_waits_and_returns_up_to_n() {
    run(|| async {
        let p = pair_with(3).await;
        let (w, mut cr) = (p.sw, p.cr);
        let read = evloop::spawn(async move { cr.read(30).await.map(|d| (d, cr)) });
        sleep(Duration::from_millis(10)).await;
        assert!(!read.is_done(), "read(30) waits for data");
        w.write(b"line1line2");
        let (got, mut cr) = read.await.unwrap().unwrap();
        assert_eq!(got, b"line1line2");
        w.write(b"chunk-more");
        sleep(Duration::from_millis(10)).await;
        assert_eq!(cr.read(5).await.unwrap(), b"chunk");
        assert_eq!(cr.read(100).await.unwrap(), b"-more");
        send_then_eof(&w, &[]).await;
        assert_eq!(rest(&mut cr).await, b"");
    });
}

/// test_read_eof: a read waiting when EOF comes returns empty, and so does every
/// read after.
#[test]
fn read_at_eof_is_empty() {
    run(|| async {
        let p = pair().await;
        let mut cr = p.cr;
        let read = evloop::spawn(async move { (cr.read(1024).await.unwrap(), cr) });
        sleep(Duration::from_millis(10)).await;
        p.sw.write_eof();
        let (got, mut cr) = read.await.unwrap();
        assert_eq!(got, b"");
        assert_eq!(cr.read(1024).await.unwrap(), b"");
        assert!(cr.at_eof());
    });
}

/// test_read_until_eof: `read_to_end` (asyncio's `read(-1)`) gathers every chunk up
/// to EOF.
#[test]
fn read_to_end_gathers_until_eof() {
    run(|| async {
        let mut p = pair().await;
        let w = p.sw;
        let feeder = evloop::spawn(async move {
            send_then_eof(&w, &[b"chunk1\n", b"chunk2"]).await;
            w
        });
        assert_eq!(p.cr.read_to_end().await.unwrap(), b"chunk1\nchunk2");
        assert!(p.cr.at_eof());
        drop(feeder.await.unwrap());
    });
}

/// test_readline, test_readline_nolimit_nowait, test_readline_read_byte_count: a
/// line across chunks; a line already buffered; reads after a line take the rest.
#[test]
fn readline_across_chunks_and_from_the_buffer() {
    run(|| async {
        let mut p = pair().await;
        let w = p.sw;
        w.write(b"chunk1 ");
        let feeder = evloop::spawn(async move {
            sleep(Duration::from_millis(10)).await;
            send_then_eof(&w, &[b"chunk2 ", b"chunk3 ", b"\n chunk4\n"]).await;
        });
        assert_eq!(p.cr.readline().await.unwrap(), b"chunk1 chunk2 chunk3 \n");
        feeder.await.unwrap();
        assert_eq!(rest(&mut p.cr).await, b" chunk4\n");

        let mut p = pair().await;
        send_then_eof(&p.sw, &[b"line1\nline2\nline3\n"]).await;
        sleep(Duration::from_millis(10)).await;
        assert_eq!(p.cr.readline().await.unwrap(), b"line1\n");
        assert_eq!(p.cr.read(7).await.unwrap(), b"line2\nl");
        assert_eq!(rest(&mut p.cr).await, b"ine3\n");
    });
}

/// test_readline_eof, test_readline_empty_eof: at EOF the last line comes without
/// its newline, then empty.
#[test]
fn readline_at_eof() {
    run(|| async {
        let mut p = pair().await;
        send_then_eof(&p.sw, &[b"some data"]).await;
        assert_eq!(p.cr.readline().await.unwrap(), b"some data");
        assert_eq!(p.cr.readline().await.unwrap(), b"");
        assert!(p.cr.at_eof());
    });
}

/// test_at_eof: true only once EOF was received and the buffer is empty.
#[test]
fn at_eof_only_once_the_buffer_is_empty() {
    run(|| async {
        let mut p = pair().await;
        assert!(!p.cr.at_eof());
        p.sw.write(b"some data\n");
        assert_eq!(p.cr.readline().await.unwrap(), b"some data\n");
        assert!(!p.cr.at_eof());
        send_then_eof(&p.sw, &[b"some data\n"]).await;
        until("the EOF", || format!("{:?}", p.cr).contains("eof: true")).await;
        assert!(!p.cr.at_eof(), "EOF seen, but a line is still buffered");
        assert_eq!(p.cr.readline().await.unwrap(), b"some data\n");
        assert!(p.cr.at_eof());
    });
}

/// test_readline_limit_with_existing_data: limit 3. A found newline past the limit:
/// `LimitOverrunError` and the line is removed with its newline; no newline within
/// the limit: the buffer is cleared (asyncio's rules).
#[test]
fn readline_over_the_limit_with_data_buffered() {
    run(|| async {
        let mut p = pair_with(3).await;
        send_then_eof(&p.sw, &[b"line1\nline2\n"]).await;
        sleep(Duration::from_millis(10)).await;
        let e = p.cr.readline().await.unwrap_err();
        let o = overrun(&e);
        assert_eq!(o.consumed, 5);
        assert!(o.separator_found());
        assert_eq!(rest(&mut p.cr).await, b"line2\n");

        let mut p = pair_with(3).await;
        send_then_eof(&p.sw, &[b"line1li"]).await;
        sleep(Duration::from_millis(10)).await;
        let e = p.cr.readline().await.unwrap_err();
        assert!(!overrun(&e).separator_found());
        assert_eq!(rest(&mut p.cr).await, b"");
    });
}

/// test_readline_limit: limit 7, data fed while `readline` waits; and the strictness
/// of the limit: a line of exactly the limit plus its newline is fine, one byte more
/// is an overrun, found or not, and leaves the buffer empty.
#[test]
fn readline_limit_is_strict() {
    run(|| async {
        // No newline within the limit while waiting: cleared, the rest comes later.
        let mut p = pair_with(7).await;
        let w = p.sw;
        let feeder = evloop::spawn(async move {
            send_then_eof(&w, &[b"chunk1", b"chunk2", b"chunk3\n"]).await;
        });
        let e = p.cr.readline().await.unwrap_err();
        overrun(&e);
        feeder.await.unwrap();
        // asyncio's buffer is empty here because all its chunks were fed in one go;
        // here what came after the overrun is still to read, and ends the line.
        let left = rest(&mut p.cr).await;
        assert!(b"chunk1chunk2chunk3\n".ends_with(&left), "{left:?}");

        // The newline found past the limit: that line goes, the next stays.
        let mut p = pair_with(7).await;
        send_then_eof(&p.sw, &[b"chunk1chunk2\nchunk3\n"]).await;
        sleep(Duration::from_millis(10)).await;
        let e = p.cr.readline().await.unwrap_err();
        assert!(overrun(&e).separator_found());
        assert_eq!(rest(&mut p.cr).await, b"chunk3\n");

        let mut p = pair_with(7).await;
        p.sw.write(b"1234567\n");
        assert_eq!(p.cr.readline().await.unwrap(), b"1234567\n");
        p.sw.write(b"12345678\n");
        sleep(Duration::from_millis(10)).await;
        let e = p.cr.readline().await.unwrap_err();
        assert!(overrun(&e).separator_found());
        p.sw.write(b"12345678");
        sleep(Duration::from_millis(10)).await;
        let e = p.cr.readline().await.unwrap_err();
        assert!(!overrun(&e).separator_found());
        send_then_eof(&p.sw, &[]).await;
        assert_eq!(rest(&mut p.cr).await, b"");
    });
}

/// test_readuntil_separator: an empty separator is `InvalidInput`.
#[test]
fn readuntil_empty_separator_is_invalid_input() {
    run(|| async {
        let mut p = pair().await;
        let e = p.cr.readuntil(b"").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
}

/// test_readuntil_multi_chunks, test_readuntil_multi_chunks_1: multi-byte
/// separators, whole or split across chunks (also in the middle of a partial match).
#[test]
fn readuntil_multi_byte_separators_across_chunks() {
    run(|| async {
        let mut p = pair().await;
        let cases: &[(&[&[u8]], &[u8])] = &[
            (&[b"lineAAA"], b"lineAAA"),
            (&[b"QWEaa", b"XYaa", b"a"], b"QWEaaXYaaa"),
            (&[b"QWEaa", b"XYa", b"aa"], b"QWEaaXYaaa"),
            (&[b"aaa"], b"aaa"),
            (&[b"Xaaa"], b"Xaaa"),
            (&[b"XXX", b"a", b"a", b"a"], b"XXXaaa"),
        ];
        for (chunks, want) in cases {
            let sep: &[u8] = if want.ends_with(b"AAA") {
                b"AAA"
            } else {
                b"aaa"
            };
            let w = p.sw;
            let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
            let feeder = evloop::spawn(async move {
                for c in &chunks {
                    w.write(c);
                    sleep(Duration::from_millis(2)).await;
                }
                w
            });
            assert_eq!(&p.cr.readuntil(sep).await.unwrap(), want);
            p.sw = feeder.await.unwrap();
        }
        send_then_eof(&p.sw, &[b"lineAAAxxx"]).await;
        assert_eq!(p.cr.readuntil(b"AAA").await.unwrap(), b"lineAAA");
        assert_eq!(rest(&mut p.cr).await, b"xxx");
    });
}

/// test_readuntil_eof: EOF before the separator is an `IncompleteReadError` with
/// everything that was left (part of the separator too), `expected` None; the
/// buffer is empty after.
#[test]
fn readuntil_at_eof_is_incomplete_read() {
    run(|| async {
        let mut p = pair().await;
        send_then_eof(&p.sw, &[b"some dataAA"]).await;
        let e = p.cr.readuntil(b"AAA").await.unwrap_err();
        let inc = incomplete(&e);
        assert_eq!(inc.partial, b"some dataAA");
        assert_eq!(inc.expected, None);
        assert!(e.to_string().contains("undefined expected bytes"), "{e}");
        assert!(p.cr.at_eof());
        let inc = e
            .into_inner()
            .unwrap()
            .downcast::<IncompleteReadError>()
            .unwrap();
        assert_eq!(inc.partial, b"some dataAA");
    });
}

/// test_readuntil_limit_found_sep: over the limit, found or not, `readuntil` leaves
/// the buffer as it was. (Limit 6, not asyncio's 3: its test feeds the reader by
/// hand, past the pause at twice the limit that a real transport makes.)
#[test]
fn readuntil_over_the_limit_keeps_the_buffer() {
    run(|| async {
        let mut p = pair_with(6).await;
        p.sw.write(b"some dataAA");
        sleep(Duration::from_millis(10)).await;
        let e = p.cr.readuntil(b"AAA").await.unwrap_err();
        assert!(!overrun(&e).separator_found());
        assert!(e.to_string().contains("not found"), "{e}");
        send_then_eof(&p.sw, &[b"A"]).await;
        sleep(Duration::from_millis(10)).await;
        let e = p.cr.readuntil(b"AAA").await.unwrap_err();
        let o = overrun(&e);
        assert!(o.separator_found());
        assert_eq!(o.consumed, 9);
        assert!(e.to_string().contains("is found"), "{e}");
        assert_eq!(rest(&mut p.cr).await, b"some dataAAA");
    });
}

/// test_readexactly_zero_or_less, test_readexactly, test_readexactly_limit:
/// `readexactly(0)` is empty at once; `readexactly(n)` waits across chunks, leaves
/// the rest, and is not bounded by the limit.
#[test]
fn readexactly_waits_for_n_bytes() {
    run(|| async {
        const DATA: &[u8] = b"line1\nline2\nline3\n";
        let mut p = pair_with(3).await;
        assert_eq!(p.cr.readexactly(0).await.unwrap(), b"");
        let w = p.sw;
        let feeder = evloop::spawn(async move {
            send_then_eof(&w, &[DATA, DATA, DATA]).await;
        });
        assert_eq!(
            p.cr.readexactly(2 * DATA.len()).await.unwrap(),
            [DATA, DATA].concat()
        );
        feeder.await.unwrap();
        assert_eq!(rest(&mut p.cr).await, DATA);
    });
}

/// test_readexactly_eof: EOF first is an `IncompleteReadError` with the partial
/// bytes and the count expected, asyncio's message; the buffer is empty after.
#[test]
fn readexactly_at_eof_is_incomplete_read() {
    run(|| async {
        const DATA: &[u8] = b"line1\nline2\nline3\n";
        let mut p = pair().await;
        let w = p.sw;
        let feeder = evloop::spawn(async move { send_then_eof(&w, &[DATA]).await });
        let e = p.cr.readexactly(2 * DATA.len()).await.unwrap_err();
        let inc = incomplete(&e);
        assert_eq!(inc.partial, DATA);
        assert_eq!(inc.expected, Some(36));
        assert_eq!(
            e.to_string(),
            "18 bytes read on a total of 36 expected bytes"
        );
        feeder.await.unwrap();
        assert!(p.cr.at_eof());
        assert_eq!(p.cr.read(10).await.unwrap(), b"");
    });
}

/// test_read_exception, test_readline_exception, test_readexactly_exception,
/// test_exception_waiter: a connection reset by the peer fails every read after
/// (bytes still buffered or not), and wakes a read that was waiting.
#[test]
fn a_reset_fails_reads_and_wakes_the_waiting_one() {
    run(|| async {
        let lp = Loop::current().unwrap();
        let accepted: Accepted = Rc::default();
        let server = lp
            .start_server("127.0.0.1:0", handing_out(&accepted))
            .await
            .unwrap()
            .unwrap();
        let peer = std_client(server.local_addrs()[0]);
        until("the server's side", || !accepted.borrow().is_empty()).await;
        let (mut r, w) = accepted.borrow_mut().pop().unwrap();
        use std::io::Write;
        (&peer).write_all(b"line\n").unwrap();
        assert_eq!(r.read(2).await.unwrap(), b"li");
        let waiting = evloop::spawn(async move {
            let e = r.readexactly(100).await.unwrap_err();
            (e, r)
        });
        sleep(Duration::from_millis(10)).await;
        set_linger_zero(&peer);
        drop(peer);
        let (e, mut r) = waiting.await.unwrap();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        for e in [
            r.read(2).await.unwrap_err(),
            r.readline().await.unwrap_err(),
            r.readexactly(2).await.unwrap_err(),
            r.readuntil(b"x").await.unwrap_err(),
            r.read_to_end().await.unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        }
        assert_eq!(
            w.drain().await.unwrap_err().kind(),
            ErrorKind::ConnectionReset
        );
        assert_eq!(
            w.wait_closed().await.unwrap_err().kind(),
            ErrorKind::ConnectionReset
        );
        server.close();
    });
}

/// test_exception_cancel: a read cancelled while waiting (a timeout) leaves the
/// reader usable and every byte for the next read (reads are cancel-safe), and a
/// reset after it does not trip on the gone waiter.
#[test]
fn a_cancelled_read_loses_nothing() {
    run(|| async {
        let mut p = pair().await;
        p.sw.write(b"par");
        assert!(
            timeout(Duration::from_millis(20), p.cr.readline())
                .await
                .is_err()
        );
        assert!(
            timeout(Duration::from_millis(20), p.cr.readexactly(10))
                .await
                .is_err()
        );
        assert!(
            timeout(Duration::from_millis(20), p.cr.readuntil(b"XY"))
                .await
                .is_err()
        );
        assert!(
            timeout(Duration::from_millis(20), p.cr.read_to_end())
                .await
                .is_err()
        );
        p.sw.write(b"tial\n");
        assert_eq!(p.cr.readline().await.unwrap(), b"partial\n");
        p.sw.transport().abort();
        assert_eq!(p.cr.read(10).await.unwrap(), b"", "the abort is a FIN here");
    });
}

/// Reading pauses when the buffer goes over twice the limit and resumes once reads
/// bring it down to the limit (asyncio's `feed_data` / `_maybe_resume_transport`);
/// a `readexactly` of more than twice the limit resumes it while it waits.
#[test]
fn reading_pauses_at_twice_the_limit() {
    run(|| async {
        let mut p = pair_with(1024).await;
        let data = payload(64 * 1024);
        p.sw.write(&data);
        let t = p.cw.transport().clone();
        until("reading paused", || !t.is_reading()).await;
        sleep(Duration::from_millis(20)).await;
        assert!(!t.is_reading(), "stays paused while nobody reads");
        // Read down to the limit: reading resumes.
        let mut got = Vec::new();
        while !t.is_reading() && got.len() < data.len() {
            got.extend(p.cr.read(512).await.unwrap());
        }
        assert!(t.is_reading());
        // A readexactly of everything left, far more than twice the limit.
        let left = data.len() - got.len();
        got.extend(p.cr.readexactly(left).await.unwrap());
        assert_bytes_eq(&got, &data, "paused and resumed");
        // read_to_end is not held at twice the limit either.
        let big = payload(300 * 1024);
        let w = p.sw;
        let feeder = evloop::spawn(async move {
            w.write(&big);
            w.drain().await.unwrap();
            w.write_eof();
            (w, big)
        });
        let all = p.cr.read_to_end().await.unwrap();
        let (_w, big) = feeder.await.unwrap();
        assert_bytes_eq(&all, &big, "read_to_end past the limit");
    });
}

/// `drain` returns at once below the high-water mark; above it, it waits until the
/// peer has read the buffer down to the low-water mark.
#[test]
fn drain_waits_while_writing_is_paused() {
    run(|| async {
        let p = pair().await;
        p.cw.write(b"small");
        assert!(matches!(
            poll_once(pin!(p.cw.drain()).as_mut()),
            Poll::Ready(Ok(()))
        ));
        let data = payload(8 << 20);
        p.cw.write(&data);
        assert!(p.cw.transport().is_writing_paused());
        let mut drain = pin!(p.cw.drain());
        assert!(poll_once(drain.as_mut()).is_pending());
        sleep(Duration::from_millis(20)).await;
        assert!(
            poll_once(drain.as_mut()).is_pending(),
            "nobody reads: still paused"
        );
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        let mut sr = p.sr;
        let reader = evloop::spawn(async move {
            while g.borrow().len() < 5 + (8 << 20) {
                let chunk = sr.read(1 << 20).await.unwrap();
                assert!(!chunk.is_empty());
                g.borrow_mut().extend(chunk);
            }
        });
        drain.await.unwrap();
        assert!(!p.cw.transport().is_writing_paused());
        reader.await.unwrap();
        assert_bytes_eq(&got.borrow(), &[&b"small"[..], &data].concat(), "drained");
    });
}

/// test_multiple_drain: several tasks drain one (shared) paused writer at once; all
/// return once it resumes.
#[test]
fn several_drains_at_once() {
    run(|| async {
        let p = pair().await;
        let cw = Rc::new(p.cw);
        cw.write(&payload(4 << 20));
        assert!(cw.transport().is_writing_paused());
        let drains: Vec<_> = (0..3)
            .map(|_| {
                let cw = cw.clone();
                evloop::spawn(async move { cw.drain().await })
            })
            .collect();
        sleep(Duration::from_millis(10)).await;
        assert!(drains.iter().all(|d| !d.is_done()));
        let mut sr = p.sr;
        let reader = evloop::spawn(async move {
            let mut n = 0;
            while n < 4 << 20 {
                n += sr.read(1 << 20).await.unwrap().len();
            }
        });
        for d in drains {
            d.await.unwrap().unwrap();
        }
        reader.await.unwrap();
    });
}

/// test_drain_raises: a writer that goes on writing to a peer that has gone gets an
/// `Err` from `drain`, not a hang; a drain waiting when the connection is lost
/// returns `Err` too.
#[test]
fn drain_fails_once_the_connection_is_lost() {
    run(|| async {
        let p = pair().await;
        drop(p.sr);
        drop(p.sw); // both server handles gone: the server side closes
        let mut failed = None;
        for _ in 0..1000 {
            p.cw.write(b"foo\n");
            if let Err(e) = p.cw.drain().await {
                failed = Some(e);
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        let e = failed.expect("drain never failed");
        assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "{e}"
        );

        // Lost while a drain waits: the drain returns Err.
        let p = pair().await;
        p.cw.write(&payload(8 << 20));
        let mut drain = pin!(p.cw.drain());
        assert!(poll_once(drain.as_mut()).is_pending());
        p.cw.transport().abort();
        let e = timeout(PATIENCE, drain).await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    });
}

/// test_wait_closed_on_close, test_wait_closed_on_close_with_unread_data,
/// test_async_writer_api_exception_after_close, test_eof_feed_when_closing_writer:
/// after `close`, `wait_closed` returns (unread data or not), the reader is at EOF,
/// and a `drain` after the close is `ConnectionReset`.
#[test]
fn close_then_wait_closed() {
    run(|| async {
        let mut p = pair().await;
        p.sw.write(b"unread data\n");
        sleep(Duration::from_millis(10)).await;
        p.cw.write(b"bye\n");
        p.cw.close();
        assert!(p.cw.is_closing());
        timeout(PATIENCE, p.cw.wait_closed())
            .await
            .unwrap()
            .unwrap();
        p.cw.wait_closed().await.unwrap(); // again: at once
        let e = p.cw.drain().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
        // What was buffered before the close is still read, then EOF.
        assert_eq!(p.cr.readline().await.unwrap(), b"unread data\n");
        assert!(p.cr.at_eof());
        // The peer got the last line, then EOF.
        assert_eq!(p.sr.readline().await.unwrap(), b"bye\n");
        assert_eq!(p.sr.readline().await.unwrap(), b"");
    });
}

/// `write_eof` half-closes: the peer reads EOF and can still answer, which the
/// writer's side still reads.
#[test]
fn write_eof_half_closes() {
    run(|| async {
        let mut p = pair().await;
        p.cw.write(b"question");
        p.cw.write_eof();
        assert_eq!(p.sr.read_to_end().await.unwrap(), b"question");
        p.sw.write(b"answer");
        p.sw.close();
        assert_eq!(p.cr.read_to_end().await.unwrap(), b"answer");
    });
}

/// Dropping both a connection's reader and writer closes it (the peer reads EOF);
/// dropping only the writer does not (the reader goes on reading).
#[test]
fn dropping_both_handles_closes_the_connection() {
    run(|| async {
        let mut p = pair().await;
        drop(p.sw);
        p.cw.write(b"still read\n");
        assert_eq!(p.sr.readline().await.unwrap(), b"still read\n");
        drop(p.sr);
        assert_eq!(p.cr.read(10).await.unwrap(), b"", "both gone: EOF");
        assert!(
            !p.cw.is_closing(),
            "EOF keeps the connection open for writing"
        );
        p.cw.close();
        p.cw.wait_closed().await.unwrap();
    });
}

/// test_unhandled_exceptions: a client future that panics is reported to the
/// exception handler and its connection is closed; the server goes on serving. The
/// callback (and what it holds) is dropped once, when the server closes.
#[test]
fn a_panicking_client_future_is_reported_and_closed() {
    let lp = Loop::new().unwrap();
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    lp.set_exception_handler(move |_, ctx| {
        r.borrow_mut().push(format!(
            "{} {}",
            ctx.message(),
            ctx.panic_message().unwrap_or_default()
        ));
    });
    let drops = Drops::new();
    let token = drops.token();
    block_on(&lp, async {
        let lp = Loop::current().unwrap();
        let server = lp
            .start_server(
                "127.0.0.1:0",
                move |mut r: StreamReader, w: StreamWriter| {
                    token.hold();
                    async move {
                        let line = r.readline().await.unwrap();
                        if line == b"panic\n" {
                            panic!("client handler failed");
                        }
                        w.write(&line);
                        w.drain().await.unwrap();
                    }
                },
            )
            .await
            .unwrap()
            .unwrap();
        let addr = server.local_addrs()[0];
        let (mut r, w) = lp.open_connection(addr).await.unwrap().unwrap();
        w.write(b"panic\n");
        assert_eq!(
            r.read_to_end().await.unwrap(),
            b"",
            "closed after the panic"
        );
        let (mut r, w) = lp.open_connection(addr).await.unwrap().unwrap();
        w.write(b"fine\n");
        assert_eq!(r.readline().await.unwrap(), b"fine\n");
        assert_eq!(drops.dropped(), 0);
        server.close();
        assert_eq!(
            drops.dropped(),
            1,
            "the callback goes with the closed server"
        );
    });
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("client_connected"), "{reports:?}");
    assert!(reports[0].contains("client handler failed"), "{reports:?}");
}

/// Connections of a server whose callback never returns end with the loop: closing
/// the loop runs every `connection_lost`, and nothing leaks (valgrind checks this
/// file).
#[test]
fn closing_the_loop_ends_open_stream_connections() {
    let lp = new_loop();
    let drops = Drops::new();
    let token = drops.token();
    let d = drops.clone();
    let kept: Rc<RefCell<Vec<(StreamReader, StreamWriter)>>> = Rc::default();
    block_on(&lp, async {
        let lp = Loop::current().unwrap();
        let server = lp
            .start_server(
                "127.0.0.1:0",
                move |mut r: StreamReader, w: StreamWriter| {
                    token.hold();
                    let t = d.token();
                    async move {
                        let _t = t;
                        let _ = r.read_to_end().await;
                        drop(w);
                    }
                },
            )
            .await
            .unwrap()
            .unwrap();
        let addr = server.local_addrs()[0];
        for _ in 0..3 {
            let c = lp.open_connection(addr).await.unwrap().unwrap();
            c.1.write(b"data");
            kept.borrow_mut().push(c);
        }
        sleep(Duration::from_millis(20)).await;
    });
    lp.close().unwrap();
    drop(lp);
    let kept = std::mem::take(&mut *kept.borrow_mut());
    for (r, w) in &kept {
        assert!(w.is_closing());
        assert!(r.at_eof() || format!("{r:?}").contains("buffered"));
    }
    drop(kept);
    assert_eq!(drops.made(), 4);
    assert_eq!(
        drops.dropped(),
        4,
        "three client futures and the callback, once each"
    );
}

/// A read or a drain dropped while it waits (a timeout, a cancelled task) takes its
/// waker with it: nothing keeps a gone task's waker.
#[test]
fn dropped_waiting_reads_and_drains_release_their_wakers() {
    use std::sync::Arc;
    use std::task::Wake;
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    run(|| async {
        let mut p = pair().await;
        let counted = Arc::new(Noop);
        let waker = Waker::from(counted.clone());
        let mut cx = Context::from_waker(&waker);
        {
            let mut read = pin!(p.cr.readexactly(10));
            assert!(read.as_mut().poll(&mut cx).is_pending());
            assert_eq!(Arc::strong_count(&counted), 3, "the read parked a clone");
        }
        assert_eq!(
            Arc::strong_count(&counted),
            2,
            "dropping the read released it"
        );
        p.cw.write(&payload(8 << 20));
        {
            let mut drain = pin!(p.cw.drain());
            assert!(drain.as_mut().poll(&mut cx).is_pending());
            assert_eq!(Arc::strong_count(&counted), 3, "the drain parked a clone");
        }
        assert_eq!(
            Arc::strong_count(&counted),
            2,
            "dropping the drain released it"
        );
        p.cw.transport().abort();
    });
}
