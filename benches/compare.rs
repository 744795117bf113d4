//! The peer comparison: the workloads of issue 13's table, each on evloop and on its
//! peers (tokio `current_thread` and `LocalSet`, calloop, smol: `async-executor` +
//! `async-io`), rounds interleaved across peers (each round starting at the next
//! peer), medians printed as one markdown
//! table. `benches/compare.sh` runs it with the TCP echo row and the memory table.
//!
//! ```text
//! cargo bench --bench compare                   # ~1 min: 5 rounds
//! cargo bench --bench compare -- --rounds 3
//! cargo bench --bench compare -- --only timers  # rows whose id contains "timers"
//! cargo bench --bench compare -- --only spawn --peer evloop --rounds 1  # (for a profiler)
//! cargo bench --bench compare -- --tcp-echo FILE  # add the row measured by compare.sh
//! ```
//!
//! Workloads (one run = one whole workload, setup excluded; each round runs every
//! workload once on every peer, in turn):
//! - `callbacks_batch`: 1,000,000 no-op callbacks scheduled, then run; ns/callback.
//!   tokio and smol have no callbacks: their row is a spawned `async {}` task, calloop's
//!   an idle callback.
//! - `callbacks_chain`: one callback re-scheduling itself 1,000,000 times (a task
//!   yielding 1,000,000 times on tokio and smol, an idle callback chain of 100,000 on
//!   calloop, which polls on each dispatch); ns/iteration.
//! - `threadsafe`: 2 producer threads × 500,000 threadsafe calls into a running loop
//!   (tokio: `Handle::spawn`, smol: `Executor::spawn`, calloop: its channel); ns/call.
//! - `timers`: 200,000 timers scheduled before the run at `t0 + 50 ms × (i+1)/N`
//!   (`call_at`; `t0` read just before the first is scheduled), every second one
//!   cancelled, run until the rest have fired (calloop: 20,000, its cancel is a linear
//!   scan). Row 1: (wall from `t0` to the last firing − 50 ms) / N, in ns. Row 2: the
//!   lateness of each firing (fire time − deadline), p50 / p99 in ms.
//! - `spawn`: 1,000,000 trivial tasks spawned from inside the loop, then run; ns/task.
//! - `pingpong`: two tasks bounce a counter over two capacity-1 queues (evloop
//!   `sync::Queue::bounded(1)`, tokio `mpsc::channel(1)`, smol and calloop's executor
//!   `async_channel::bounded(1)`), 1,000,000 switches; ns/switch.
//! - `roundtrip_1core`: a foreign thread sends a threadsafe call whose callback
//!   unparks it, both threads pinned to CPU 0; 20,000 round trips after 2,000; p50 /
//!   p99 in µs.
//! - `tcp_echo` (from `compare.sh`): 64-byte echo over 50 connections, the server's CPU
//!   per request in ns.
//!
//! Run as a test (`cargo test --benches`, no `--bench` flag): every workload once, tiny.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use async_executor::{Executor, LocalExecutor};
use calloop::channel::{self, Event as ChannelEvent};
use calloop::futures::executor;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, LoopHandle};
use evloop::Loop;
use evloop::sync::Queue;
use tokio::sync::{Notify, mpsc};
use tokio::task::LocalSet;

#[path = "support/mod.rs"]
mod support;
use support::{
    Span, current_thread, lateness, median, percentile, reply, round_trips, roundtrip_evloop,
    roundtrip_tokio, tokio_local_spawn_batch, tokio_spawn_batch,
};

const SPAN: Duration = Duration::from_millis(50);
const PRODUCERS: usize = 2;

#[derive(Clone, Copy)]
struct Sizes {
    batch: usize,
    chain: usize,
    chain_calloop: usize,
    per_producer: usize,
    timers: usize,
    timers_calloop: usize,
    spawn: usize,
    switches: usize,
    round_trips: usize,
    round_trip_warmup: usize,
}

const BENCH: Sizes = Sizes {
    batch: 1_000_000,
    chain: 1_000_000,
    chain_calloop: 100_000,
    per_producer: 500_000,
    timers: 200_000,
    timers_calloop: 20_000,
    spawn: 1_000_000,
    switches: 1_000_000,
    round_trips: 20_000,
    round_trip_warmup: 2_000,
};

const TEST: Sizes = Sizes {
    batch: 1_000,
    chain: 1_000,
    chain_calloop: 1_000,
    per_producer: 1_000,
    timers: 200,
    timers_calloop: 200,
    spawn: 1_000,
    switches: 1_000,
    round_trips: 100,
    round_trip_warmup: 10,
};

const PEERS: [&str; 5] = [
    "evloop",
    "tokio current_thread",
    "tokio LocalSet",
    "calloop",
    "smol",
];

/// `t0 + SPAN × (i+1) / n`: the last one is due at `t0 + SPAN`.
fn deadline(t0: Instant, i: usize, n: usize) -> Instant {
    t0 + SPAN * (i as u32 + 1) / n as u32
}

// ----- callbacks_batch -----

fn batch(peer: &str, n: usize) -> f64 {
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            let s = Span::start();
            for _ in 0..n {
                lp.call_soon(|_| {});
            }
            lp.stop();
            lp.run_forever().unwrap();
            per(s.stop().wall)
        }
        "tokio current_thread" => {
            let rt = current_thread();
            let s = Span::start();
            tokio_spawn_batch(&rt, n);
            per(s.stop().wall)
        }
        "tokio LocalSet" => {
            let rt = current_thread();
            let local = LocalSet::new();
            let s = Span::start();
            tokio_local_spawn_batch(&local, &rt, n);
            per(s.stop().wall)
        }
        "calloop" => {
            let mut el: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
            let h = el.handle();
            let s = Span::start();
            for _ in 0..n {
                h.insert_idle(|_| {});
            }
            el.dispatch(Some(Duration::ZERO), &mut ()).unwrap();
            per(s.stop().wall)
        }
        "smol" => {
            let ex = LocalExecutor::new();
            let s = Span::start();
            smol_spawn_batch(&ex, n);
            per(s.stop().wall)
        }
        _ => unreachable!(),
    }
}

/// `n` trivial tasks spawned on `ex` and run to completion.
fn smol_spawn_batch(ex: &LocalExecutor<'_>, n: usize) {
    let left = Rc::new(Cell::new(n));
    async_io::block_on(ex.run(async {
        for _ in 0..n {
            let left = left.clone();
            ex.spawn(async move { left.set(left.get() - 1) }).detach();
        }
        while left.get() > 0 {
            futures_lite::future::yield_now().await;
        }
    }));
}

// ----- callbacks_chain -----

fn evloop_link(lp: &Loop, left: usize) {
    if left == 0 {
        lp.stop();
    } else {
        lp.call_soon(move |lp| evloop_link(lp, left - 1));
    }
}

fn calloop_link(h: &LoopHandle<'static, usize>, left: &mut usize) {
    *left -= 1;
    if *left > 0 {
        let next = h.clone();
        h.insert_idle(move |left| calloop_link(&next, left));
    }
}

fn chain(peer: &str, z: Sizes) -> f64 {
    let n = z.chain;
    let per = |d: Duration, n: usize| d.as_nanos() as f64 / n as f64;
    match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            let s = Span::start();
            lp.call_soon(move |lp| evloop_link(lp, n - 1));
            lp.run_forever().unwrap();
            per(s.stop().wall, n)
        }
        "tokio current_thread" => {
            let rt = current_thread();
            let s = Span::start();
            rt.block_on(async {
                tokio::spawn(async move {
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .unwrap();
            });
            per(s.stop().wall, n)
        }
        "tokio LocalSet" => {
            let rt = current_thread();
            let local = LocalSet::new();
            let s = Span::start();
            local.block_on(&rt, async {
                tokio::task::spawn_local(async move {
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .unwrap();
            });
            per(s.stop().wall, n)
        }
        "calloop" => {
            let n = z.chain_calloop;
            let mut el: EventLoop<'static, usize> = EventLoop::try_new().unwrap();
            let h = el.handle();
            let s = Span::start();
            let mut left = n;
            let first = h.clone();
            h.insert_idle(move |left| calloop_link(&first, left));
            while left > 0 {
                el.dispatch(Some(Duration::ZERO), &mut left).unwrap();
            }
            per(s.stop().wall, n)
        }
        "smol" => {
            let ex = LocalExecutor::new();
            let s = Span::start();
            async_io::block_on(ex.run(ex.spawn(async move {
                for _ in 0..n {
                    futures_lite::future::yield_now().await;
                }
            })));
            per(s.stop().wall, n)
        }
        _ => unreachable!(),
    }
}

// ----- threadsafe -----

/// Runs `produce` on `PRODUCERS` threads released together with this one, and times
/// `drive` (the loop running until the producers' last calls have run).
fn with_producers<P>(produce: P, drive: impl FnOnce()) -> Duration
where
    P: Fn() + Send + Sync + 'static,
{
    let produce = Arc::new(produce);
    let start = Arc::new(Barrier::new(PRODUCERS + 1));
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let (produce, start) = (produce.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                produce();
            })
        })
        .collect();
    start.wait();
    let s = Span::start();
    drive();
    let wall = s.stop().wall;
    for t in threads {
        t.join().unwrap();
    }
    wall
}

fn threadsafe(peer: &str, per_producer: usize) -> f64 {
    let calls = (PRODUCERS * per_producer) as f64;
    let wall = match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            let remote = lp.remote();
            let done = Arc::new(AtomicUsize::new(0));
            with_producers(
                move || {
                    for _ in 0..per_producer {
                        remote.call_soon_threadsafe(|_| {}).unwrap();
                    }
                    let done = done.clone();
                    remote
                        .call_soon_threadsafe(move |lp| {
                            if done.fetch_add(1, Ordering::Relaxed) + 1 == PRODUCERS {
                                lp.stop();
                            }
                        })
                        .unwrap();
                },
                || lp.run_forever().unwrap(),
            )
        }
        "tokio current_thread" | "tokio LocalSet" => {
            let rt = current_thread();
            let handle = rt.handle().clone();
            let done = Arc::new(AtomicUsize::new(0));
            let finished = Arc::new(Notify::new());
            let all_done = finished.clone();
            let local = (peer == "tokio LocalSet").then(LocalSet::new);
            with_producers(
                move || {
                    for _ in 0..per_producer {
                        drop(handle.spawn(async {}));
                    }
                    let (done, finished) = (done.clone(), finished.clone());
                    drop(handle.spawn(async move {
                        if done.fetch_add(1, Ordering::Relaxed) + 1 == PRODUCERS {
                            finished.notify_one();
                        }
                    }));
                },
                || match &local {
                    Some(local) => local.block_on(&rt, all_done.notified()),
                    None => rt.block_on(all_done.notified()),
                },
            )
        }
        "calloop" => {
            type Job = Box<dyn FnOnce(&mut usize) + Send>;
            let mut el: EventLoop<'static, usize> = EventLoop::try_new().unwrap();
            let (tx, rx) = channel::channel::<Job>();
            el.handle()
                .insert_source(rx, |ev, _, finished: &mut usize| {
                    if let ChannelEvent::Msg(job) = ev {
                        job(finished);
                    }
                })
                .unwrap();
            let mut finished = 0;
            with_producers(
                move || {
                    for _ in 0..per_producer {
                        tx.send(Box::new(|_| {})).unwrap();
                    }
                    tx.send(Box::new(|finished| *finished += 1)).unwrap();
                },
                || {
                    while finished < PRODUCERS {
                        el.dispatch(None, &mut finished).unwrap();
                    }
                },
            )
        }
        "smol" => {
            let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
            let done = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = async_channel::bounded::<()>(1);
            let producer_ex = ex.clone();
            with_producers(
                move || {
                    for _ in 0..per_producer {
                        producer_ex.spawn(async {}).detach();
                    }
                    let (done, tx) = (done.clone(), tx.clone());
                    producer_ex
                        .spawn(async move {
                            if done.fetch_add(1, Ordering::Relaxed) + 1 == PRODUCERS {
                                let _ = tx.send(()).await;
                            }
                        })
                        .detach();
                },
                || async_io::block_on(ex.run(rx.recv())).unwrap(),
            )
        }
        _ => unreachable!(),
    };
    wall.as_nanos() as f64 / calls
}

// ----- timers -----

thread_local! {
    /// Lateness of each firing of the current `timers` run, in ns.
    static LATE: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
    /// When the last timer of the run fired.
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Records a firing; returns true for the run's last one.
fn fired(deadline: Instant, expected: usize) -> bool {
    let now = Instant::now();
    LATE.with_borrow_mut(|l| {
        l.push(lateness(now, deadline));
        if l.len() == expected {
            LAST.set(Some(now));
            true
        } else {
            false
        }
    })
}

/// (ns of overhead per timer, p50 and p99 lateness in ms).
fn timers(peer: &str, z: Sizes) -> (f64, f64, f64) {
    let n = if peer == "calloop" {
        z.timers_calloop
    } else {
        z.timers
    };
    let expected = n / 2;
    LATE.with_borrow_mut(|l| {
        l.clear();
        l.reserve(expected);
    });
    LAST.set(None);
    let t0 = match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            let mut handles = Vec::with_capacity(n);
            let t0 = Instant::now();
            for i in 0..n {
                let d = deadline(t0, i, n);
                handles.push(lp.call_at(d, move |lp| {
                    if fired(d, expected) {
                        lp.stop();
                    }
                }));
            }
            for h in handles.iter().step_by(2) {
                h.cancel();
            }
            lp.run_forever().unwrap();
            t0
        }
        "tokio current_thread" | "tokio LocalSet" => {
            let rt = current_thread();
            let local = LocalSet::new();
            let done = Arc::new(Notify::new());
            let run = async {
                let t0 = Instant::now();
                let mut tasks = Vec::with_capacity(n);
                for i in 0..n {
                    let d = deadline(t0, i, n);
                    let done = done.clone();
                    let timer = async move {
                        tokio::time::sleep_until(d.into()).await;
                        if fired(d, expected) {
                            done.notify_one();
                        }
                    };
                    tasks.push(if peer == "tokio LocalSet" {
                        tokio::task::spawn_local(timer)
                    } else {
                        tokio::spawn(timer)
                    });
                }
                // A sleep registers its timer when first polled; this task runs
                // after every sleeper's first poll (FIFO), so it cancels registered
                // timers.
                let cancel = async move {
                    for t in tasks.iter().step_by(2) {
                        t.abort();
                    }
                };
                if peer == "tokio LocalSet" {
                    tokio::task::spawn_local(cancel).await.unwrap();
                } else {
                    tokio::spawn(cancel).await.unwrap();
                }
                done.notified().await;
                t0
            };
            if peer == "tokio LocalSet" {
                local.block_on(&rt, run)
            } else {
                rt.block_on(run)
            }
        }
        "calloop" => {
            let mut el: EventLoop<'static, bool> = EventLoop::try_new().unwrap();
            let h = el.handle();
            let mut tokens = Vec::with_capacity(n);
            let t0 = Instant::now();
            for i in 0..n {
                let d = deadline(t0, i, n);
                tokens.push(
                    h.insert_source(Timer::from_deadline(d), move |_, _, done: &mut bool| {
                        *done = fired(d, expected);
                        TimeoutAction::Drop
                    })
                    .unwrap(),
                );
            }
            for t in tokens.iter().step_by(2) {
                h.remove(*t);
            }
            let mut done = false;
            while !done {
                el.dispatch(None, &mut done).unwrap();
            }
            t0
        }
        "smol" => {
            let ex = LocalExecutor::new();
            let (tx, rx) = async_channel::bounded::<()>(1);
            async_io::block_on(ex.run(async {
                let t0 = Instant::now();
                let mut tasks = Vec::with_capacity(n);
                for i in 0..n {
                    let d = deadline(t0, i, n);
                    let tx = tx.clone();
                    tasks.push(ex.spawn(async move {
                        async_io::Timer::at(d).await;
                        if fired(d, expected) {
                            let _ = tx.send(()).await;
                        }
                    }));
                }
                // As tokio's: a task that runs after every timer's first poll.
                ex.spawn(async move {
                    let mut kept = Vec::with_capacity(tasks.len() / 2);
                    for (i, t) in tasks.into_iter().enumerate() {
                        if i % 2 == 0 {
                            drop(t); // cancels it
                        } else {
                            kept.push(t);
                        }
                    }
                    for t in kept {
                        t.detach();
                    }
                })
                .await;
                rx.recv().await.unwrap();
                t0
            }))
        }
        _ => unreachable!(),
    };
    let last = LAST.get().expect("the last timer fired");
    let wall = last - t0;
    let overhead = (wall.as_nanos() as f64 - SPAN.as_nanos() as f64) / n as f64;
    let mut late = LATE.with_borrow_mut(std::mem::take);
    late.sort_unstable();
    let ms = |ns: i64| ns as f64 / 1e6;
    (
        overhead,
        ms(percentile(&late, 0.50)),
        ms(percentile(&late, 0.99)),
    )
}

// ----- spawn -----

fn spawn(peer: &str, n: usize) -> f64 {
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            let s = Span::start();
            lp.run_until_complete(async {
                for _ in 0..n - 1 {
                    drop(evloop::spawn(async {}));
                }
                // Task steps run in FIFO order: when the last task is done, all are.
                evloop::spawn(async {}).await.unwrap();
            })
            .unwrap();
            per(s.stop().wall)
        }
        "tokio current_thread" => {
            let rt = current_thread();
            let s = Span::start();
            tokio_spawn_batch(&rt, n);
            per(s.stop().wall)
        }
        "tokio LocalSet" => {
            let rt = current_thread();
            let local = LocalSet::new();
            let s = Span::start();
            tokio_local_spawn_batch(&local, &rt, n);
            per(s.stop().wall)
        }
        "calloop" => {
            let mut el: EventLoop<'static, usize> = EventLoop::try_new().unwrap();
            let h = el.handle();
            let (exec, sched) = executor::<()>().unwrap();
            h.insert_source(exec, |(), _, done: &mut usize| *done += 1)
                .unwrap();
            let mut done = 0;
            let s = Span::start();
            h.insert_idle(move |_| {
                for _ in 0..n {
                    sched.schedule(async {}).unwrap();
                }
            });
            el.dispatch(Some(Duration::ZERO), &mut done).unwrap();
            while done < n {
                el.dispatch(None, &mut done).unwrap();
            }
            per(s.stop().wall)
        }
        "smol" => {
            let ex = LocalExecutor::new();
            let s = Span::start();
            smol_spawn_batch(&ex, n);
            per(s.stop().wall)
        }
        _ => unreachable!(),
    }
}

// ----- pingpong -----

async fn queue_ping(to: Queue<u64>, from: Queue<u64>, rounds: usize) {
    for i in 0..rounds as u64 {
        to.put(i).await.unwrap();
        let v = from.get().await.unwrap();
        debug_assert_eq!(v, i + 1);
    }
}

async fn queue_pong(from: Queue<u64>, to: Queue<u64>, rounds: usize) {
    for _ in 0..rounds {
        let v = from.get().await.unwrap();
        to.put(v + 1).await.unwrap();
    }
}

async fn tokio_ping(to: mpsc::Sender<u64>, mut from: mpsc::Receiver<u64>, rounds: usize) {
    for i in 0..rounds as u64 {
        to.send(i).await.unwrap();
        let v = from.recv().await.unwrap();
        debug_assert_eq!(v, i + 1);
    }
}

async fn tokio_pong(mut from: mpsc::Receiver<u64>, to: mpsc::Sender<u64>, rounds: usize) {
    for _ in 0..rounds {
        let v = from.recv().await.unwrap();
        to.send(v + 1).await.unwrap();
    }
}

async fn chan_ping(
    to: async_channel::Sender<u64>,
    from: async_channel::Receiver<u64>,
    rounds: usize,
) {
    for i in 0..rounds as u64 {
        to.send(i).await.unwrap();
        let v = from.recv().await.unwrap();
        debug_assert_eq!(v, i + 1);
    }
}

async fn chan_pong(
    from: async_channel::Receiver<u64>,
    to: async_channel::Sender<u64>,
    rounds: usize,
) {
    for _ in 0..rounds {
        let v = from.recv().await.unwrap();
        to.send(v + 1).await.unwrap();
    }
}

/// The two sides of a ping-pong over async-channel.
fn chan_pair(rounds: usize) -> (impl Future<Output = ()>, impl Future<Output = ()>) {
    let ((tx_a, rx_a), (tx_b, rx_b)) = (async_channel::bounded(1), async_channel::bounded(1));
    (chan_ping(tx_a, rx_b, rounds), chan_pong(rx_a, tx_b, rounds))
}

fn pingpong(peer: &str, switches: usize) -> f64 {
    let rounds = switches / 2;
    let tokio_pair = || {
        let ((tx_a, rx_a), (tx_b, rx_b)) = (mpsc::channel(1), mpsc::channel(1));
        (
            tokio_ping(tx_a, rx_b, rounds),
            tokio_pong(rx_a, tx_b, rounds),
        )
    };
    let wall = match peer {
        "evloop" => {
            let lp = Loop::new().unwrap();
            let (a, b) = (Queue::bounded(1), Queue::bounded(1));
            let (ping, pong) = (
                queue_ping(a.clone(), b.clone(), rounds),
                queue_pong(a, b, rounds),
            );
            let s = Span::start();
            lp.run_until_complete(async {
                let pong = evloop::spawn(pong);
                let ping = evloop::spawn(ping);
                ping.await.unwrap();
                pong.await.unwrap();
            })
            .unwrap();
            s.stop().wall
        }
        "tokio current_thread" => {
            let rt = current_thread();
            let (ping, pong) = tokio_pair();
            let s = Span::start();
            rt.block_on(async {
                let pong = tokio::spawn(pong);
                let ping = tokio::spawn(ping);
                ping.await.unwrap();
                pong.await.unwrap();
            });
            s.stop().wall
        }
        "tokio LocalSet" => {
            let rt = current_thread();
            let local = LocalSet::new();
            let (ping, pong) = tokio_pair();
            let s = Span::start();
            local.block_on(&rt, async {
                let pong = tokio::task::spawn_local(pong);
                let ping = tokio::task::spawn_local(ping);
                ping.await.unwrap();
                pong.await.unwrap();
            });
            s.stop().wall
        }
        "calloop" => {
            let mut el: EventLoop<'static, usize> = EventLoop::try_new().unwrap();
            let (exec, sched) = executor::<()>().unwrap();
            el.handle()
                .insert_source(exec, |(), _, done: &mut usize| *done += 1)
                .unwrap();
            let (ping, pong) = chan_pair(rounds);
            let s = Span::start();
            sched.schedule(pong).unwrap();
            sched.schedule(ping).unwrap();
            let mut done = 0;
            while done < 2 {
                el.dispatch(None, &mut done).unwrap();
            }
            s.stop().wall
        }
        "smol" => {
            let ex = LocalExecutor::new();
            let (ping, pong) = chan_pair(rounds);
            let s = Span::start();
            async_io::block_on(ex.run(async {
                let pong = ex.spawn(pong);
                let ping = ex.spawn(ping);
                ping.await;
                pong.await;
            }));
            s.stop().wall
        }
        _ => unreachable!(),
    };
    wall.as_nanos() as f64 / switches as f64
}

// ----- roundtrip_1core -----

/// Pins this thread (and the threads it starts from now on) to `cpus`; returns the
/// mask it had.
fn pin(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data: all zeroes is a valid empty set.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `old` is a valid cpu_set_t of `size` bytes; 0 is this thread.
    unsafe { libc::sched_getaffinity(0, size, &mut old) };
    // SAFETY: as above.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `c` is below CPU_SETSIZE (a core number of this machine).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set_affinity(&set);
    old
}

fn set_affinity(set: &libc::cpu_set_t) {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is a valid cpu_set_t of `size` bytes; 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, size, set) };
    assert_eq!(rc, 0, "sched_setaffinity");
}

fn roundtrip_tokio_localset(n: usize, warmup: usize) -> Vec<i64> {
    let rt = current_thread();
    let local = LocalSet::new();
    let handle = rt.handle().clone();
    let finished = Arc::new(Notify::new());
    let done = finished.clone();
    let th = thread::spawn(move || {
        let out = round_trips(n, warmup, |flag, me| {
            drop(handle.spawn(async move { reply(&flag, &me) }));
        });
        done.notify_one();
        out
    });
    local.block_on(&rt, finished.notified());
    th.join().unwrap()
}

fn roundtrip_smol(n: usize, warmup: usize) -> Vec<i64> {
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let (tx, rx) = async_channel::bounded::<()>(1);
    let foreign = ex.clone();
    let th = thread::spawn(move || {
        let out = round_trips(n, warmup, |flag, me| {
            foreign.spawn(async move { reply(&flag, &me) }).detach();
        });
        tx.send_blocking(()).unwrap();
        out
    });
    async_io::block_on(ex.run(rx.recv())).unwrap();
    th.join().unwrap()
}

/// (p50, p99) in µs, both threads on CPU 0.
fn roundtrip(peer: &str, z: Sizes) -> (f64, f64) {
    let (n, w) = (z.round_trips, z.round_trip_warmup);
    let old = pin(&[0]);
    let mut ns = match peer {
        "evloop" => roundtrip_evloop(n, w),
        "tokio current_thread" => roundtrip_tokio(n, w),
        "tokio LocalSet" => roundtrip_tokio_localset(n, w),
        "calloop" => support::roundtrip_calloop(n, w),
        "smol" => roundtrip_smol(n, w),
        _ => unreachable!(),
    };
    set_affinity(&old);
    ns.sort_unstable();
    let us = |v: i64| v as f64 / 1e3;
    (us(percentile(&ns, 0.50)), us(percentile(&ns, 0.99)))
}

// ----- the table -----

/// What the issue asks of a row.
#[derive(Clone, Copy)]
enum Target {
    /// Keep the best peer at least this many times slower.
    Ahead(f64),
    /// At most this (evloop's own figure).
    AtMost(f64),
    /// At most these two (p50, p99).
    AtMost2(f64, f64),
    /// At most this times the best peer.
    OfBest(f64),
}

struct RowDef {
    id: &'static str,
    label: &'static str,
    target: Target,
    /// Two figures per cell (p50 / p99).
    pair: bool,
}

const ROWS: &[RowDef] = &[
    RowDef {
        id: "callbacks_batch",
        label: "callbacks_batch, ns/callback",
        target: Target::Ahead(2.5),
        pair: false,
    },
    RowDef {
        id: "callbacks_chain",
        label: "callbacks_chain, ns/iteration",
        target: Target::Ahead(1.9),
        pair: false,
    },
    RowDef {
        id: "threadsafe",
        label: "threadsafe, 2 producers, ns/call",
        target: Target::Ahead(2.5),
        pair: false,
    },
    RowDef {
        id: "timers",
        label: "timers: 200k call_at before the run over 50 ms, half cancelled: (wall − 50 ms)/N, ns",
        target: Target::AtMost(40.0),
        pair: false,
    },
    RowDef {
        id: "timers_lateness",
        label: "same run: timer lateness p50 / p99, ms",
        target: Target::AtMost2(5.0, 10.0),
        pair: true,
    },
    RowDef {
        id: "spawn",
        label: "spawn 1M trivial tasks, ns/task",
        target: Target::AtMost(100.0),
        pair: false,
    },
    RowDef {
        id: "pingpong",
        label: "task ping-pong over a bounded(1) queue, ns/switch",
        target: Target::AtMost(50.0),
        pair: false,
    },
    RowDef {
        id: "tcp_echo",
        label: "tcp_echo 64 B × 50 conns, server CPU ns/request",
        target: Target::OfBest(0.9),
        pair: false,
    },
    RowDef {
        id: "roundtrip_1core",
        label: "threadsafe round trip, one core, p50 / p99 µs",
        target: Target::OfBest(1.0),
        pair: true,
    },
];

/// Samples of (row, peer): one figure (or two, for pair rows) per round.
type Samples = HashMap<(&'static str, &'static str), Vec<(f64, f64)>>;

fn fmt_num(v: f64) -> String {
    if v >= 1000.0 {
        let s = format!("{v:.0}");
        // 6591 -> 6,591
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn print_table(samples: &Samples, rounds: usize) {
    println!(
        "| workload | {} | best peer | target | met |",
        PEERS.join(" | ")
    );
    println!("|---|{}---|---|---|", "---:|".repeat(PEERS.len()));
    for row in ROWS {
        let med: Vec<Option<(f64, f64)>> = PEERS
            .iter()
            .map(|p| {
                samples
                    .get(&(row.id, *p))
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        (
                            median(v.iter().map(|s| s.0).collect()),
                            median(v.iter().map(|s| s.1).collect()),
                        )
                    })
            })
            .collect();
        if med.iter().all(Option::is_none) {
            continue;
        }
        let cell = |m: Option<(f64, f64)>| match m {
            None => "–".to_owned(),
            Some((a, b)) if row.pair => format!("{} / {}", fmt_num(a), fmt_num(b)),
            Some((a, _)) => fmt_num(a),
        };
        // The best peer: the lowest first figure among the peers (not evloop).
        let best = PEERS
            .iter()
            .zip(&med)
            .skip(1)
            .filter_map(|(p, m)| m.map(|m| (*p, m)))
            .min_by(|a, b| a.1.0.total_cmp(&b.1.0));
        let ev = med[0];
        let (target, met) = match (row.target, ev, best) {
            (Target::Ahead(k), Some(e), Some((_, b))) => (
                format!("keep ≥ {k}× ahead (now {:.2}×)", b.0 / e.0),
                b.0 / e.0 >= k,
            ),
            (Target::AtMost(t), Some(e), _) => (format!("≤ {t}"), e.0 <= t),
            (Target::AtMost2(a, b), Some(e), _) => (format!("≤ {a} / ≤ {b}"), e.0 <= a && e.1 <= b),
            (Target::OfBest(k), Some(e), Some((_, b))) => {
                let t = if k == 1.0 {
                    "≤ best peer".to_owned()
                } else {
                    format!("≤ {k}× the best peer")
                };
                let ok = e.0 <= k * b.0 && (!row.pair || e.1 <= k * b.1);
                (format!("{t} (now {:.2}×)", e.0 / b.0), ok)
            }
            _ => ("–".to_owned(), false),
        };
        let best_cell = best.map_or("–".to_owned(), |(p, m)| format!("{p} {}", cell(Some(m))));
        println!(
            "| {} | {} | {best_cell} | {target} | {} |",
            row.label,
            med.iter().map(|m| cell(*m)).collect::<Vec<_>>().join(" | "),
            if met { "yes" } else { "**no**" }
        );
    }
    println!();
    println!(
        "Medians of {rounds} rounds, peers interleaved within each round. calloop runs \
         100,000 links in callbacks_chain and 20,000 timers (its timer cancel is a linear \
         scan); tokio and smol have no plain callbacks, so their callbacks rows spawn \
         trivial tasks (chain: a task yielding)."
    );
}

/// Reads `peer value` lines (the TCP echo medians measured by `compare.sh`).
fn read_tcp_echo(path: &str, samples: &mut Samples) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for line in text.lines() {
        let Some((peer, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(p) = PEERS.iter().find(|p| **p == peer) else {
            continue;
        };
        if let Ok(v) = value.trim().parse::<f64>() {
            samples.entry(("tcp_echo", *p)).or_default().push((v, v));
        }
    }
}

struct Args {
    test: bool,
    rounds: usize,
    only: Option<String>,
    peer: Option<String>,
    tcp_echo: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        test: true,
        rounds: 5,
        only: None,
        peer: None,
        tcp_echo: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => a.test = false,
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(5),
            "--only" => a.only = it.next(),
            "--peer" => a.peer = it.next(),
            "--tcp-echo" => a.tcp_echo = it.next(),
            _ => {}
        }
    }
    if a.test {
        a.rounds = 1;
    }
    a
}

fn main() {
    let args = parse_args();
    let z = if args.test { TEST } else { BENCH };
    let wants = |id: &str| args.only.as_deref().is_none_or(|f| id.contains(f));
    let mut samples = Samples::new();
    let started = Instant::now();
    for round in 1..=args.rounds {
        // Each round starts at the next peer, so that no peer always runs first in a
        // round (the first run of a process pays its fresh heap's page faults) or
        // always after the same one (whose freed memory the allocator hands on).
        for k in 0..PEERS.len() {
            let peer = PEERS[(round - 1 + k) % PEERS.len()];
            if args.peer.as_deref().is_some_and(|p| p != peer) {
                continue;
            }
            let mut push = |id: &'static str, v: (f64, f64)| {
                samples.entry((id, peer)).or_default().push(v);
            };
            if wants("callbacks_batch") {
                let v = batch(peer, z.batch);
                push("callbacks_batch", (v, v));
            }
            if wants("callbacks_chain") {
                let v = chain(peer, z);
                push("callbacks_chain", (v, v));
            }
            if wants("threadsafe") {
                let v = threadsafe(peer, z.per_producer);
                push("threadsafe", (v, v));
            }
            if wants("timers") {
                let (overhead, p50, p99) = timers(peer, z);
                push("timers", (overhead, overhead));
                push("timers_lateness", (p50, p99));
            }
            if wants("spawn") {
                let v = spawn(peer, z.spawn);
                push("spawn", (v, v));
            }
            if wants("pingpong") {
                let v = pingpong(peer, z.switches);
                push("pingpong", (v, v));
            }
            if wants("roundtrip_1core") {
                push("roundtrip_1core", roundtrip(peer, z));
            }
        }
        eprintln!(
            "round {round}/{} done ({:.0?})",
            args.rounds,
            started.elapsed()
        );
    }
    if let Some(path) = &args.tcp_echo {
        read_tcp_echo(path, &mut samples);
    }
    if !args.test {
        for ((row, peer), v) in sample_lines(&samples) {
            eprintln!("raw {row} {peer}: {v}");
        }
    }
    print_table(&samples, args.rounds);
}

/// Every sample, for stderr.
fn sample_lines(samples: &Samples) -> Vec<((&'static str, &'static str), String)> {
    let mut out: Vec<_> = samples
        .iter()
        .map(|(k, v)| {
            let vals: Vec<String> = v.iter().map(|s| format!("{:.1}/{:.1}", s.0, s.1)).collect();
            (*k, vals.join(" "))
        })
        .collect();
    out.sort();
    out
}
