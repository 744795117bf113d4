//! An evloop [`Loop`] inside a tokio app: tokio owns the thread (a `current_thread`
//! runtime) and drives evloop through `tokio::io::unix::AsyncFd` on
//! [`Loop::as_raw_fd`], with tokio's ordinary clear-readiness idiom:
//!
//! ```text
//! let mut guard = afd.readable().await?;
//! lp.run_once(Some(Duration::ZERO))?;
//! guard.clear_ready();
//! ```
//!
//! plus a tokio sleep for [`Loop::next_timeout`]. tokio watches the fd
//! edge-triggered; evloop makes the fd readable anew whenever a `run_once` leaves
//! work pending, so the host needs nothing more (see README, "Embedding").
//!
//! Served here, all on one thread: an evloop
//! timer, threadsafe calls from a std thread, an evloop TCP echo server with a tokio
//! client (a tokio task), and an evloop reader that takes four bytes per call and so leaves data
//! unread between iterations.
//!
//! ```text
//! cargo run --example embed_in_tokio
//! ```

use std::cell::Cell;
use std::error::Error;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use evloop::Loop;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};

/// Runs `lp` from the tokio task this is awaited in, until `done()` holds.
async fn drive(lp: &Loop, done: impl Fn() -> bool) -> Result<(), Box<dyn Error>> {
    // SAFETY: the fd is `lp`'s epoll fd, which stays open as long as the loop exists
    // (closing the loop keeps it), and `lp` is borrowed for the whole life of `afd`.
    let afd = unsafe { AsyncFd::register_with_interest(lp.as_raw_fd(), Interest::READABLE)? };
    while !done() {
        let timeout = lp.next_timeout();
        tokio::select! {
            guard = afd.readable() => {
                let mut guard = guard?;
                lp.run_once(Some(Duration::ZERO))?;
                guard.clear_ready();
            }
            () = sleep_for(timeout) => {
                lp.run_once(Some(Duration::ZERO))?;
            }
        }
    }
    Ok(())
}

/// Sleeps for `timeout`, or forever for `None` (evloop waits for I/O only).
async fn sleep_for(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let lp = Loop::new()?;
    // The timer, the server and the reader count here when they are done.
    let served = Rc::new(Cell::new(0));

    // 1. A timer.
    let s = served.clone();
    lp.call_later(Duration::from_millis(50), move |_| {
        println!("evloop timer fired");
        s.set(s.get() + 1);
    });

    // 2. Threadsafe calls from another thread.
    let remote = lp.remote();
    let threadsafe = Arc::new(AtomicUsize::new(0));
    let t = threadsafe.clone();
    let sender = thread::spawn(move || {
        for i in 1..=3 {
            thread::sleep(Duration::from_millis(10));
            let t = t.clone();
            remote
                .call_soon_threadsafe(move |_| {
                    println!("threadsafe call {i}");
                    t.fetch_add(1, Ordering::SeqCst);
                })
                .expect("loop open");
        }
    });

    // 3. An evloop TCP echo server; tokio's client is below. The address crosses over
    //    in a tokio oneshot channel.
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let s = served.clone();
    lp.create_task(async move {
        let listener = evloop::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let _ = addr_tx.send(listener.local_addr().expect("address"));
        let (conn, _) = listener.accept().await.expect("accept");
        let mut buf = [0u8; 1024];
        loop {
            let n = conn.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            conn.write_all(&buf[..n]).await.expect("write");
        }
        println!("evloop echo server: client left");
        s.set(s.get() + 1);
    });

    // 4. A reader that takes four bytes per call and leaves the rest for the next
    //    iteration (evloop's readers are level-triggered, as asyncio's).
    let (mut tx, rx) = UnixStream::pair()?;
    rx.set_nonblocking(true)?;
    let rx_fd = rx.as_raw_fd();
    let calls = Rc::new(Cell::new(0));
    let s = served.clone();
    lp.add_reader(rx_fd, move |lp| {
        let mut four = [0u8; 4];
        let n = (&rx).read(&mut four).expect("readable");
        calls.set(calls.get() + 1);
        let text = String::from_utf8_lossy(&four[..n]);
        println!("reader call {}: read {text:?}", calls.get());
        if calls.get() == 4 {
            lp.remove_reader(rx_fd);
            s.set(s.get() + 1);
        }
    })?;
    tx.write_all(b"abcdefghijklmnop")?;

    // tokio's own work, alongside: a client of the evloop server.
    let client = tokio::spawn(async move {
        let addr = addr_rx.await.expect("the server's address");
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(b"hello through evloop").await?;
        let mut back = [0u8; 20];
        conn.read_exact(&mut back).await?;
        println!("tokio client got {:?}", String::from_utf8_lossy(&back));
        std::io::Result::Ok(())
    });

    drive(&lp, || {
        served.get() == 3 && threadsafe.load(Ordering::SeqCst) == 3
    })
    .await?;
    client.await??;
    sender.join().expect("sender thread");
    println!("all served");
    Ok(())
}
