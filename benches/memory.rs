//! Memory beside time: heap bytes per pending callback, pending timer, idle task and
//! idle TCP connection, on evloop and on its peers, measured with a counting global
//! allocator. Printed as a markdown table; `benches/compare.sh` runs it.
//!
//! ```text
//! cargo bench --bench memory
//! ```
//!
//! Each figure is (live heap bytes after creating N items − before) / N, N = 100,000
//! (1,000 for connections), so the amortized growth of the loop's own tables is
//! included. Every closure and future captures one `u64`.
//! - pending callback: `call_soon` (not yet run). tokio and smol: a spawned task not
//!   yet polled; calloop: an idle callback.
//! - pending timer: `call_later(1 h)`. tokio and smol: a task polled once into a
//!   1-hour sleep (the timer lives inside the task); calloop: a `Timer` source.
//! - idle task: a task polled once, waiting on a future that never completes.
//! - idle TCP connection, protocol: an accepted connection with a `Protocol` that
//!   keeps its `Transport` (calloop: a `Generic` source whose callback owns a 64-byte
//!   buffer). Client sockets are std sockets of the same process (no heap).
//! - idle TCP connection, streams: an accepted connection served by a task awaiting
//!   `read` into a 64-byte buffer (evloop `net::TcpStream`, tokio `TcpStream`, smol
//!   `Async<TcpStream>`).
//!
//! Run as a test (`cargo test --benches`, no `--bench` flag): every row once, small N.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::{Future, pending};
use std::hint::black_box;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use async_executor::LocalExecutor;
use calloop::generic::Generic;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, Interest, Mode, PostAction};
use evloop::Loop;
use evloop::net::{Protocol, Transport};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc` and `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Tasks that have been polled once.
static POLLED: AtomicUsize = AtomicUsize::new(0);

/// A future that counts its first poll, then never completes.
async fn idle(x: u64) {
    POLLED.fetch_add(1, Ordering::Relaxed);
    pending::<()>().await;
    black_box(x);
}

const PEERS: [&str; 4] = ["evloop", "tokio current_thread", "calloop", "smol"];

/// Bytes per item: `make(n)` builds `n` items and keeps them alive until `measure`
/// (which it calls once they exist) returns.
fn per_item(n: usize, make: impl FnOnce(usize, &mut dyn FnMut())) -> f64 {
    // async-io's global reactor frees the timers of dropped tasks when it next runs:
    // let it run now, not inside the next measurement.
    for _ in 0..3 {
        async_io::block_on(async_io::Timer::after(Duration::from_millis(1)));
    }
    let mut after = None;
    let before = live();
    make(n, &mut || after = Some(live()));
    (after.expect("make measured") - before) as f64 / n as f64
}

// ----- callbacks, timers, tasks -----

fn pending_callback(peer: &str, n: usize) -> Option<f64> {
    Some(match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    lp.call_soon(move |_| {
                        black_box(i);
                    });
                }
                measure();
                drop(lp);
            })
        }
        "tokio current_thread" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    drop(rt.spawn(async move {
                        black_box(i);
                    }));
                }
                measure();
                drop(rt);
            })
        }
        "calloop" => {
            let el: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
            let h = el.handle();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    h.insert_idle(move |_| {
                        black_box(i);
                    });
                }
                measure();
                drop(el);
            })
        }
        "smol" => {
            let ex = LocalExecutor::new();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    ex.spawn(async move {
                        black_box(i);
                    })
                    .detach();
                }
                measure();
                drop(ex);
            })
        }
        _ => unreachable!(),
    })
}

fn pending_timer(peer: &str, n: usize) -> Option<f64> {
    const LATER: Duration = Duration::from_secs(3600);
    POLLED.store(0, Ordering::SeqCst);
    Some(match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    lp.call_later(LATER, move |_| {
                        black_box(i);
                    });
                }
                measure();
                drop(lp);
            })
        }
        "tokio current_thread" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    drop(rt.spawn(async move {
                        POLLED.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(LATER).await;
                        black_box(i);
                    }));
                }
                rt.block_on(async {
                    while POLLED.load(Ordering::Relaxed) < n {
                        tokio::task::yield_now().await;
                    }
                });
                measure();
                drop(rt);
            })
        }
        "calloop" => {
            let el: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
            let h = el.handle();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    h.insert_source(Timer::from_duration(LATER), move |_, _, _| {
                        black_box(i);
                        TimeoutAction::Drop
                    })
                    .unwrap();
                }
                measure();
                drop(el);
            })
        }
        "smol" => {
            let ex = LocalExecutor::new();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    ex.spawn(async move {
                        POLLED.fetch_add(1, Ordering::Relaxed);
                        async_io::Timer::after(LATER).await;
                        black_box(i);
                    })
                    .detach();
                }
                while POLLED.load(Ordering::Relaxed) < n && ex.try_tick() {}
                measure();
                drop(ex);
            })
        }
        _ => unreachable!(),
    })
}

fn idle_task(peer: &str, n: usize) -> Option<f64> {
    POLLED.store(0, Ordering::SeqCst);
    Some(match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    drop(lp.create_task(idle(i)));
                }
                lp.stop(); // one iteration: every first step
                lp.run_forever().unwrap();
                assert_eq!(POLLED.load(Ordering::Relaxed), n);
                measure();
                drop(lp);
            })
        }
        "tokio current_thread" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    drop(rt.spawn(idle(i)));
                }
                rt.block_on(async {
                    while POLLED.load(Ordering::Relaxed) < n {
                        tokio::task::yield_now().await;
                    }
                });
                measure();
                drop(rt);
            })
        }
        "calloop" => {
            let mut el: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
            let (exec, sched) = calloop::futures::executor::<()>().unwrap();
            el.handle().insert_source(exec, |(), _, _| {}).unwrap();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    sched.schedule(idle(i)).unwrap();
                }
                while POLLED.load(Ordering::Relaxed) < n {
                    el.dispatch(Some(Duration::ZERO), &mut ()).unwrap();
                }
                measure();
                drop(el);
            })
        }
        "smol" => {
            let ex = LocalExecutor::new();
            per_item(n, |n, measure| {
                for i in 0..n as u64 {
                    ex.spawn(idle(i)).detach();
                }
                while POLLED.load(Ordering::Relaxed) < n && ex.try_tick() {}
                measure();
                drop(ex);
            })
        }
        _ => unreachable!(),
    })
}

// ----- connections -----

/// A client thread that connects `n` std sockets to `addr` when told to, then holds
/// them until told again.
struct Clients {
    go: mpsc::Sender<()>,
    connected: mpsc::Receiver<()>,
    thread: thread::JoinHandle<()>,
}

impl Clients {
    fn start(addr: SocketAddr, n: usize) -> Clients {
        let (go, go_rx) = mpsc::channel();
        let (done_tx, connected) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut socks = Vec::with_capacity(n);
            go_rx.recv().unwrap();
            for _ in 0..n {
                socks.push(StdStream::connect(addr).unwrap());
            }
            done_tx.send(()).unwrap();
            go_rx.recv().unwrap(); // hold them until then
            drop(socks);
        });
        Clients {
            go,
            connected,
            thread,
        }
    }

    fn connect(&self) {
        self.go.send(()).unwrap();
    }

    fn finish(self) {
        self.connected.recv().unwrap();
        self.go.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

struct Idle {
    transport: Option<Transport>,
}

impl Protocol for Idle {
    fn connection_made(&mut self, t: &Transport) {
        self.transport = Some(t.clone());
    }

    fn data_received(&mut self, _: &[u8]) {}

    fn connection_lost(&mut self, _: Option<io::Error>) {
        self.transport = None;
    }
}

fn listener() -> StdListener {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Counts accepted connections that reached their idle state.
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

async fn read_idle(read: impl Future<Output = io::Result<usize>>) {
    ACCEPTED.fetch_add(1, Ordering::Relaxed);
    let _ = read.await;
}

fn tcp_protocol(peer: &str, n: usize) -> Option<f64> {
    ACCEPTED.store(0, Ordering::SeqCst);
    match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            let server = lp
                .run_until_complete(lp.create_server_with(
                    "127.0.0.1:0",
                    || Idle { transport: None },
                    evloop::ServerOptions::default().backlog(4096),
                ))
                .unwrap()
                .unwrap()
                .unwrap();
            let clients = Clients::start(server.local_addrs()[0], n);
            Some(per_item(n, |n, measure| {
                clients.connect();
                while server.active_connections() < n {
                    lp.run_once(Some(Duration::from_millis(10))).unwrap();
                }
                lp.run_once(Some(Duration::ZERO)).unwrap();
                measure();
                clients.finish();
                drop(server);
                drop(lp);
            }))
        }
        "calloop" => {
            let mut el: EventLoop<'static, usize> = EventLoop::try_new().unwrap();
            let h = el.handle();
            let l = listener();
            let clients = Clients::start(l.local_addr().unwrap(), n);
            let conn_handle = h.clone();
            h.insert_source(
                Generic::new(l, Interest::READ, Mode::Level),
                move |_, l, count: &mut usize| {
                    while let Ok((s, _)) = l.accept() {
                        s.set_nonblocking(true).unwrap();
                        let mut buf = [0u8; 64];
                        conn_handle
                            .insert_source(
                                Generic::new(s, Interest::READ, Mode::Level),
                                move |_, s, _| {
                                    use std::io::Read;
                                    // SAFETY: reading never invalidates the stream.
                                    let _ = unsafe { s.get_mut() }.read(&mut buf);
                                    Ok(PostAction::Continue)
                                },
                            )
                            .unwrap();
                        *count += 1;
                    }
                    Ok(PostAction::Continue)
                },
            )
            .unwrap();
            let mut count = 0;
            Some(per_item(n, |n, measure| {
                clients.connect();
                while count < n {
                    el.dispatch(Some(Duration::from_millis(10)), &mut count)
                        .unwrap();
                }
                measure();
                clients.finish();
                drop(el);
            }))
        }
        _ => None,
    }
}

fn tcp_streams(peer: &str, n: usize) -> Option<f64> {
    if peer == "calloop" {
        return None; // no async streams of its own
    }
    ACCEPTED.store(0, Ordering::SeqCst);
    let l = listener();
    let clients = Clients::start(l.local_addr().unwrap(), n);
    match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            let listener = lp
                .run_until_complete(async { evloop::net::TcpListener::from_std(l) })
                .unwrap()
                .unwrap();
            let listener = Rc::new(listener);
            Some(per_item(n, |n, measure| {
                clients.connect();
                lp.run_until_complete(async {
                    for _ in 0..n {
                        let (s, _) = listener.accept().await.unwrap();
                        evloop::spawn(async move {
                            let mut buf = [0u8; 64];
                            read_idle(s.read(&mut buf)).await;
                        });
                    }
                    while ACCEPTED.load(Ordering::Relaxed) < n {
                        evloop::yield_now().await;
                    }
                })
                .unwrap();
                measure();
                clients.finish();
                drop(listener);
                drop(lp);
            }))
        }
        "tokio current_thread" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let listener = {
                let _g = rt.enter();
                tokio::net::TcpListener::from_std(l).unwrap()
            };
            Some(per_item(n, |n, measure| {
                clients.connect();
                rt.block_on(async {
                    for _ in 0..n {
                        let (mut s, _) = listener.accept().await.unwrap();
                        tokio::spawn(async move {
                            use tokio::io::AsyncReadExt;
                            let mut buf = [0u8; 64];
                            read_idle(s.read(&mut buf)).await;
                        });
                    }
                    while ACCEPTED.load(Ordering::Relaxed) < n {
                        tokio::task::yield_now().await;
                    }
                });
                measure();
                clients.finish();
                drop(listener);
                drop(rt);
            }))
        }
        "smol" => {
            let ex = LocalExecutor::new();
            let listener = async_io::Async::new(l).unwrap();
            Some(per_item(n, |n, measure| {
                clients.connect();
                async_io::block_on(ex.run(async {
                    for _ in 0..n {
                        let (mut s, _) = listener.accept().await.unwrap();
                        ex.spawn(async move {
                            use futures_lite::AsyncReadExt;
                            let mut buf = [0u8; 64];
                            read_idle(s.read(&mut buf)).await;
                        })
                        .detach();
                    }
                    while ACCEPTED.load(Ordering::Relaxed) < n {
                        futures_lite::future::yield_now().await;
                    }
                }));
                measure();
                clients.finish();
                drop(listener);
                drop(ex);
            }))
        }
        _ => unreachable!(),
    }
}

// ----- main -----

type Row = (&'static str, usize, fn(&str, usize) -> Option<f64>);

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (n, conns) = if bench { (100_000, 1_000) } else { (1_000, 20) };
    let rows: [Row; 5] = [
        ("pending callback", n, pending_callback),
        ("pending timer", n, pending_timer),
        ("idle task", n, idle_task),
        ("idle TCP connection, protocol", conns, tcp_protocol),
        ("idle TCP connection, streams", conns, tcp_streams),
    ];
    println!("| heap bytes per item | {} |", PEERS.join(" | "));
    println!("|---|{}", "---:|".repeat(PEERS.len()));
    for (label, n, f) in rows {
        let cells: Vec<String> = PEERS
            .iter()
            .map(|p| f(p, n).map_or("–".to_owned(), |b| format!("{b:.0}")))
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
    println!();
    println!(
        "Live heap bytes after creating N items minus before, / N (N = {n}; {conns} for \
         connections), the loop's table growth included; each closure or future captures \
         a u64. tokio and smol: a pending callback is a spawned task not yet polled, a \
         pending timer a task polled once into a 1-hour sleep."
    );
}
