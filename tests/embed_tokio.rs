//! evloop driven from a tokio `current_thread` app through `AsyncFd` on
//! `Loop::as_raw_fd()`, with the ordinary clear-readiness idiom: wait readable, one
//! `run_once(Some(ZERO))`, `clear_ready()`. tokio watches the fd edge-triggered, so
//! this only works if every `run_once` that leaves work pending makes the fd readable
//! anew (DESIGN.md "Interop": embedding is edge-safe).
//!
//! Every test runs under a tokio timeout: a stall fails the test instead of hanging it.
//! The drivers here watch the fd alone (no sleep for `next_timeout()`), which is the
//! strict form of the contract; `examples/embed_in_tokio.rs` adds the sleep.

mod util;

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use evloop::Loop;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use util::{Counter, send, socketpair};

const ZERO: Option<Duration> = Some(Duration::ZERO);
/// Far longer than anything here takes: reaching it means the driver stalled.
const STALL: Duration = Duration::from_secs(20);

/// Runs `body` on a fresh tokio current-thread runtime.
fn tokio_main<F: Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(body)
}

/// Drives `lp` from tokio until `done()` holds: the clear-readiness idiom on the fd,
/// nothing else. Returns how many `run_once` calls it took.
async fn drive(lp: &Loop, done: impl Fn() -> bool) -> io::Result<usize> {
    // SAFETY: the fd is `lp`'s epoll fd, which stays open as long as the loop exists
    // (closing the loop keeps it), and `lp` is borrowed for the whole life of `afd`.
    let afd = unsafe { AsyncFd::register_with_interest(lp.as_raw_fd(), Interest::READABLE)? };
    let mut iterations = 0;
    while !done() {
        let mut guard = afd.readable().await?;
        lp.run_once(ZERO).map_err(io::Error::other)?;
        iterations += 1;
        guard.clear_ready();
    }
    Ok(iterations)
}

/// `drive` under the stall timeout, panicking with `what` if it stalls.
fn drive_to_completion(lp: &Loop, what: &str, done: impl Fn() -> bool) -> usize {
    tokio_main(async {
        match tokio::time::timeout(STALL, drive(lp, done)).await {
            Ok(result) => result.expect("driving the loop"),
            Err(_) => panic!("the tokio driver stalled: {what}"),
        }
    })
}

/// The case: a reader that takes one byte per call leaves the rest unread.
/// Level-triggered inside evloop, it is due again at once, but the epoll fd gives an
/// edge-triggered watcher no new edge for it unless the loop makes one.
#[test]
fn a_reader_that_leaves_data_unread_is_called_until_it_has_read_everything() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let fd: RawFd = b.as_raw_fd();
    let got = Rc::new(Cell::new(0usize));
    let g = got.clone();
    lp.add_reader(fd, move |lp| {
        let byte = util::recv(&b, 1).expect("readable");
        assert_eq!(byte.len(), 1);
        g.set(g.get() + 1);
        if g.get() == 10 {
            lp.remove_reader(fd);
        }
    })
    .unwrap();
    send(&a, b"0123456789");
    drive_to_completion(&lp, "a reader left data unread", || got.get() == 10);
    assert_eq!(got.get(), 10);
}

/// A writer stays due while its fd is writable, each iteration.
#[test]
fn a_writer_is_called_each_iteration_while_its_fd_is_writable() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    let calls = Counter::new();
    let c = calls.clone();
    lp.add_writer(fd, move |lp| {
        c.inc();
        if c.get() == 5 {
            lp.remove_writer(fd);
        }
    })
    .unwrap();
    drive_to_completion(&lp, "a writable fd", || calls.get() == 5);
    assert_eq!(calls.get(), 5);
}

/// Timers: one due later, one chain where each timer schedules the next (the last
/// with zero delay), and a callback scheduled by a timer.
#[test]
fn timers_are_served() {
    let lp = Loop::new().unwrap();
    let fired = Counter::new();
    let f = fired.clone();
    lp.call_later(Duration::from_millis(30), move |_| f.inc());
    fn chain(lp: &Loop, left: u32, fired: Counter) {
        let delay = Duration::from_millis(u64::from(left.saturating_sub(1)) * 5);
        lp.call_later(delay, move |lp| {
            fired.inc();
            if left > 1 {
                chain(lp, left - 1, fired);
            } else {
                lp.call_soon(move |_| fired.inc());
            }
        });
    }
    chain(&lp, 4, fired.clone());
    drive_to_completion(&lp, "timers", || fired.get() == 6);
    assert_eq!(fired.get(), 6);
}

/// Threadsafe calls from another thread, spaced out so that each arrives while the
/// driver waits, and a burst of them at the end.
#[test]
fn threadsafe_calls_are_served() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let sender = thread::spawn(move || {
        for _ in 0..5 {
            thread::sleep(Duration::from_millis(5));
            let r = r.clone();
            remote
                .call_soon_threadsafe(move |_| {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        }
        for _ in 0..100 {
            let r = r.clone();
            remote
                .call_soon_threadsafe(move |lp| {
                    r.fetch_add(1, Ordering::SeqCst);
                    // Work scheduled from a threadsafe call is served too.
                    let r = r.clone();
                    lp.call_soon(move |_| {
                        r.fetch_add(1, Ordering::SeqCst);
                    });
                })
                .unwrap();
        }
    });
    drive_to_completion(&lp, "threadsafe calls", || {
        ran.load(Ordering::SeqCst) == 205
    });
    sender.join().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 205);
}

/// evloop's own sockets: a 200 kB TCP echo over loopback between evloop tasks, so
/// that both sides fill their socket buffers and wait for each other.
#[test]
fn sockets_are_served() {
    let lp = Loop::new().unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let echoed = Rc::new(RefCell::new(None));
    let out = echoed.clone();
    lp.create_task(async move {
        let result = async move {
            let listener = evloop::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let server = evloop::spawn(async move {
                let (s, _) = listener.accept().await?;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = s.read(&mut buf).await?;
                    if n == 0 {
                        return io::Result::Ok(());
                    }
                    s.write_all(&buf[..n]).await?;
                }
            });
            let client = Rc::new(evloop::net::TcpStream::connect(addr).await?);
            let writer = {
                let client = client.clone();
                evloop::spawn(async move {
                    client.write_all(&payload).await?;
                    client.shutdown(std::net::Shutdown::Write)
                })
            };
            let mut back = Vec::new();
            client.read_to_end(&mut back).await?;
            writer.await.expect("writer task")?;
            server.await.expect("server task")?;
            io::Result::Ok(back)
        }
        .await;
        *out.borrow_mut() = Some(result);
    });
    drive_to_completion(&lp, "sockets", || echoed.borrow().is_some());
    let back = echoed.borrow_mut().take().unwrap().expect("echo");
    assert!(
        back == expected,
        "echoed {} of {} bytes",
        back.len(),
        expected.len()
    );
}

#[path = "util/example.rs"]
mod example;

/// The example itself, as a process: everything it sets up is served, and it exits.
#[test]
fn example_embed_in_tokio_serves_everything_and_exits() {
    let (stdout, _) = example::run_example("embed_in_tokio");
    for line in [
        "evloop timer fired",
        "threadsafe call 1",
        "threadsafe call 3",
        "tokio client got \"hello through evloop\"",
        "evloop echo server: client left",
        "reader call 1: read \"abcd\"",
        "reader call 4: read \"mnop\"",
        "all served",
    ] {
        example::assert_has(&stdout, line);
    }
}
