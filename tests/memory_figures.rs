//! Heap bytes per pending callback, pending timer, idle task and idle TCP connection
//! (protocol API and async streams), counted by a global allocator, with tokio's
//! figure for the same where it has one. Each test prints its figure
//! (`cargo test --test memory_figures -- --nocapture`) and asserts a loose upper
//! bound: a million pending timers or callbacks, and a hundred thousand idle tasks,
//! fit in well under a gigabyte, and so do ten thousand idle connections.
//!
//! The allocator counts the live bytes of the calling thread only (every figure is
//! taken on the thread that runs the loop or runtime), so tests running in parallel
//! do not disturb each other. A figure is the growth of live bytes over `n` items,
//! divided by `n`: the store's growth slack (a doubled `Vec`) is included, as a user
//! would see it. The kernel's socket buffers are not heap and not counted.

use std::cell::Cell;
use std::future::Future;
use std::net::TcpStream as StdTcpStream;
use std::time::Duration;

use evloop::Loop;
use evloop::net::{Protocol, Transport};

#[path = "util/alloc_count.rs"]
mod alloc_count;
use alloc_count::live_bytes as live;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// Bytes per item of what `make(n)` leaves alive (it returns what must stay alive
/// while measuring; that is dropped after).
fn per_item<T>(n: usize, make: impl FnOnce(usize) -> T) -> f64 {
    let before = live();
    let keep = make(n);
    let after = live();
    drop(keep);
    (after - before) as f64 / n as f64
}

fn figure(what: &str, evloop: f64, tokio: Option<(&str, f64)>) {
    match tokio {
        Some((how, t)) => println!("figure: {what}: evloop {evloop:.0} B; tokio {t:.0} B ({how})"),
        None => println!("figure: {what}: evloop {evloop:.0} B; tokio has no equivalent"),
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Fewer items under valgrind, which is slow.
fn items(n: usize) -> usize {
    if std::env::var_os("EVLOOP_UNDER_VALGRIND").is_some() {
        n / 50
    } else {
        n
    }
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn bytes_per_pending_callback() {
    let n = items(100_000);
    let lp = Loop::new().unwrap();
    // Warm-up: the queue's first buffer, the loop's lazily made parts.
    lp.call_soon(|_| {});
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let per = per_item(n, |n| {
        for i in 0..n as u64 {
            // A closure capturing 8 bytes; its handle dropped (the loop still runs it).
            lp.call_soon(move |_| {
                std::hint::black_box(i);
            });
        }
    });
    figure("pending callback (call_soon, 8-byte closure)", per, None);
    assert!(
        per * 1e6 < 0.25 * GIB,
        "a million pending callbacks would take {:.0} MiB",
        per * 1e6 / (1024.0 * 1024.0)
    );
    lp.close().unwrap();
}

#[test]
fn bytes_per_pending_timer() {
    let n = items(100_000);
    let lp = Loop::new().unwrap();
    lp.call_later(Duration::from_secs(7200), |_| {});
    let per = per_item(n, |n| {
        for i in 0..n as u64 {
            lp.call_later(
                Duration::from_secs(3600) + Duration::from_micros(i),
                move |_| {
                    std::hint::black_box(i);
                },
            );
        }
    });
    // tokio: a timer lives in a task (spawn(sleep(1 h))).
    let rt = tokio_rt();
    let tokio = rt.block_on(tokio_per_task(n, |i| async move {
        tokio::time::sleep(Duration::from_secs(3600) + Duration::from_micros(i)).await;
    }));
    figure(
        "pending timer (call_later, 8-byte closure)",
        per,
        Some(("a task awaiting sleep(1 h), polled once", tokio)),
    );
    assert!(
        per * 1e6 < 0.5 * GIB,
        "a million pending timers would take {:.0} MiB",
        per * 1e6 / (1024.0 * 1024.0)
    );
    lp.close().unwrap();
}

/// Bytes per task of `n` tokio tasks made by `make`, spawned and polled once (on a
/// current-thread runtime, inside `block_on`).
async fn tokio_per_task<F: Future<Output = ()> + Send + 'static>(
    n: usize,
    make: impl Fn(u64) -> F,
) -> f64 {
    tokio::task::yield_now().await;
    let before = live();
    for i in 0..n as u64 {
        tokio::spawn(make(i));
    }
    // Each yield lets the scheduler run a round of the spawned tasks.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    (live() - before) as f64 / n as f64
}

/// A future that never completes, holding 8 bytes.
async fn idle_future(i: u64) {
    std::future::pending::<()>().await;
    std::hint::black_box(i);
}

#[test]
fn bytes_per_idle_task() {
    let n = items(100_000);
    let lp = Loop::new().unwrap();
    lp.create_task(async {}).cancel();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let per = per_item(n, |n| {
        let tasks: Vec<_> = (0..n as u64)
            .map(|i| lp.create_task(idle_future(i)))
            .collect();
        // Every task polled once, and parked.
        lp.run_once(Some(Duration::ZERO)).unwrap();
        // The handles detach: the loop keeps the tasks.
        drop(tasks);
    });
    let rt = tokio_rt();
    let tokio = rt.block_on(tokio_per_task(n, idle_future));
    figure(
        "idle task (create_task of a pending future, polled once)",
        per,
        Some((
            "tokio::spawn of the same future, polled once, current_thread runtime",
            tokio,
        )),
    );
    assert!(
        per * 1e5 < 0.25 * GIB,
        "a hundred thousand idle tasks would take {:.0} MiB",
        per * 1e5 / (1024.0 * 1024.0)
    );
    lp.close().unwrap();
}

/// The server's protocol: keeps its transport (the documented idiom) until
/// `connection_lost`, echoes.
struct Echo(Option<Transport>);

impl Protocol for Echo {
    fn connection_made(&mut self, t: &Transport) {
        self.0 = Some(t.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        self.0.as_ref().expect("made").write(data);
    }

    fn connection_lost(&mut self, _: Option<std::io::Error>) {
        // Let go of the transport, so that nothing leaks whether or not the
        // transport lets go of its protocol.
        self.0 = None;
    }
}

/// Runs `lp` until `done` or 30 s.
fn run_until(lp: &Loop, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        lp.run_once(Some(Duration::from_millis(5))).unwrap();
    }
}

/// Connects `n` std clients to `addr`, running `lp` between batches so that the
/// server's backlog never fills; they allocate nothing on the heap but the Vec that
/// holds them, made before the count starts.
fn clients(lp: &Loop, addr: std::net::SocketAddr, out: &mut Vec<StdTcpStream>, n: usize) {
    for i in 0..n {
        out.push(StdTcpStream::connect(addr).unwrap());
        if i % 32 == 31 {
            lp.run_once(Some(Duration::from_millis(1))).unwrap();
        }
    }
}

#[test]
fn bytes_per_idle_tcp_connection() {
    let n = items(1_000).max(20);
    let lp = Loop::new().unwrap();
    let made = std::rc::Rc::new(Cell::new(0usize));
    let m2 = made.clone();
    let server = lp
        .run_until_complete(lp.create_server("127.0.0.1:0", move || {
            m2.set(m2.get() + 1);
            Echo(None)
        }))
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = server.local_addrs()[0];
    let mut peers = Vec::with_capacity(n + 1);
    // Warm-up: one connection through its whole life on the server's side.
    clients(&lp, addr, &mut peers, 1);
    run_until(&lp, "warm-up accepted", || server.active_connections() == 1);
    let per = per_item(n, |n| {
        clients(&lp, addr, &mut peers, n);
        run_until(&lp, "all accepted", || server.active_connections() == n + 1);
    });
    assert_eq!(made.get(), n + 1);

    // The same with async streams: an accept loop task, and one task per connection
    // waiting to read into a 64-byte buffer.
    let listener = lp
        .run_until_complete(evloop::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let saddr = listener.local_addr().unwrap();
    let accepted = std::rc::Rc::new(Cell::new(0usize));
    let a2 = accepted.clone();
    let acceptor = lp.create_task(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            a2.set(a2.get() + 1);
            evloop::spawn(async move {
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    let mut speers = Vec::with_capacity(n + 1);
    clients(&lp, saddr, &mut speers, 1);
    run_until(&lp, "warm-up stream accepted", || accepted.get() == 1);
    let per_stream = per_item(n, |n| {
        clients(&lp, saddr, &mut speers, n);
        run_until(&lp, "all streams accepted", || accepted.get() == n + 1);
        // Every connection's task polled once, parked on its read.
        for _ in 0..3 {
            lp.run_once(Some(Duration::from_millis(1))).unwrap();
        }
    });

    // tokio: the same streams shape.
    let rt = tokio_rt();
    let mut tpeers = Vec::with_capacity(n + 1);
    let per_tokio = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let taddr = l.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tx.send(()).unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
                });
            }
        });
        // The clients connect from another thread (their allocations are not
        // counted here), in step with the accepts.
        let connect = move |k: usize| {
            std::thread::spawn(move || {
                (0..k)
                    .map(|_| StdTcpStream::connect(taddr).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        let warm = connect(1);
        rx.recv().await.unwrap();
        tpeers.extend(warm.join().unwrap());
        let before = live();
        let all = connect(n);
        for _ in 0..n {
            rx.recv().await.unwrap();
        }
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let per = (live() - before) as f64 / n as f64;
        tpeers.extend(all.join().unwrap());
        per
    });
    figure(
        "idle TCP connection, protocol API (server side: protocol keeping its transport)",
        per,
        None,
    );
    figure(
        "idle TCP connection, async streams (server side: a task reading into [u8; 64])",
        per_stream,
        Some((
            "the same with tokio::net, current_thread runtime",
            per_tokio,
        )),
    );
    for (what, p) in [("protocol", per), ("streams", per_stream)] {
        assert!(
            p * 1e4 < 0.5 * GIB,
            "ten thousand idle {what} connections would take {:.0} MiB",
            p * 1e4 / (1024.0 * 1024.0)
        );
    }
    drop(acceptor);
    drop(server);
    lp.close().unwrap();
}
