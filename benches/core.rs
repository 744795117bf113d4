//! Benchmarks of evloop's core, each beside its peers (tokio, calloop) in the same run.
//!
//! ```text
//! cargo bench --bench core                      # everything (~1.5-2 min)
//! cargo bench --bench core -- callbacks_batch   # one criterion group (a regex)
//! cargo bench --bench core -- timers_sparse     # one latency table
//! taskset -c 0 cargo bench --bench core         # everything on one core
//! ```
//!
//! Criterion groups (throughput; one iteration is one whole workload, setup excluded
//! through `iter_custom`):
//! - `callbacks_batch`: 1,000,000 no-op callbacks scheduled, then run.
//! - `callbacks_chain`: one callback re-scheduling itself 1,000,000 times (calloop:
//!   100,000 times).
//! - `debug_mode`: `callbacks_chain` (and a task yielding 1,000,000 times) on a loop
//!   built with `debug(false)` and with `debug(true)`: what debug mode costs a
//!   callback, and that it costs nothing when off.
//! - `timers`: 200,000 timers spread over 50 ms, every second one cancelled, run until
//!   the rest have fired (calloop: 20,000, as its timer cancel is O(n)).
//! - `threadsafe`: 2 producer threads × 500,000 threadsafe calls into a running loop.
//! - `fd_pingpong`: one byte bounced over a Unix socketpair by two level-triggered
//!   readers, 20,000 round trips.
//!
//! Latency tables (not criterion: printed after the groups, p50/p99 of single events):
//! - `timers_sparse`: 1,000 timers over 50 ms on an idle loop, lateness of each
//!   firing (fire time − deadline), 5 rounds.
//! - `threadsafe_roundtrip`: a foreign thread sends a call, the loop's callback
//!   unparks it; 20,000 round trips. `std_mpsc_baseline` is the floor without a loop:
//!   a plain thread blocked on a std channel replies.
//!
//! A table (or a row of it) runs when no filter is given, or when the filter is a
//! substring of its id (`timers_sparse/evloop`); the filter is a regex for criterion
//! but a plain substring here.
//!
//! Between the two, the binary prints a summary of the criterion groups: medians in
//! per-unit terms (ns per callback, …) over the measured iterations (warm-up
//! excluded), with the loop thread's CPU time beside the wall time. CPU time is less
//! disturbed than wall time when other processes compete for the cores.
//!
//! Run as a test (`cargo test --benches`, no `--bench` flag), every workload runs once
//! at a tiny size.
//!
//! The harness (timing, criterion groups, the summary, latency tables, the command
//! line) is `support/mod.rs`, shared with `benches/tasks.rs`.

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use calloop::channel::{self, Event as ChannelEvent};
use calloop::generic::Generic;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, Interest, LoopHandle, Mode, PostAction};
use criterion::Criterion;
use evloop::Loop;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::LocalSet;

#[path = "support/mod.rs"]
mod support;
use support::{
    Per, Reply, Run, Sample, Span, bench_tokio_spawn_batches, current_thread, group, lateness,
    reply, round_trips, roundtrip_evloop, roundtrip_std_baseline, roundtrip_tokio,
};

/// `timers`, `timers_sparse`: the span the deadlines are spread over.
const SPAN: Duration = Duration::from_millis(50);
/// `threadsafe`: producer threads.
const PRODUCERS: usize = 2;

/// Workload sizes: the real ones, or tiny ones when the binary runs as a test
/// (`cargo test --benches`, in the debug profile).
#[derive(Clone, Copy)]
struct Sizes {
    /// `callbacks_batch`: callbacks per iteration.
    batch: usize,
    /// `callbacks_chain`: links per iteration.
    chain: u32,
    /// `callbacks_chain` for calloop, ten times slower per link (it polls on every
    /// dispatch): per-link figures stay comparable, the group stays short.
    chain_calloop: u32,
    /// `timers`: timers per iteration (half are cancelled).
    timers: usize,
    /// `timers` for calloop, whose timer cancel is a linear scan of its heap.
    timers_calloop: usize,
    /// `threadsafe`: calls per producer thread.
    per_producer: usize,
    /// `fd_pingpong`: round trips per iteration.
    pingpongs: usize,
    /// `timers_sparse`: timers per round, rounds.
    sparse: usize,
    sparse_rounds: usize,
    /// `threadsafe_roundtrip`: measured round trips, after this many unmeasured.
    round_trips: usize,
    round_trip_warmup: usize,
}

impl Sizes {
    const BENCH: Sizes = Sizes {
        batch: 1_000_000,
        chain: 1_000_000,
        chain_calloop: 100_000,
        timers: 200_000,
        timers_calloop: 20_000,
        per_producer: 500_000,
        pingpongs: 20_000,
        sparse: 1_000,
        sparse_rounds: 5,
        round_trips: 20_000,
        round_trip_warmup: 2_000,
    };

    const TEST: Sizes = Sizes {
        batch: 1_000,
        chain: 1_000,
        chain_calloop: 1_000,
        timers: 200,
        timers_calloop: 200,
        per_producer: 1_000,
        pingpongs: 100,
        sparse: 20,
        sparse_rounds: 1,
        round_trips: 100,
        round_trip_warmup: 10,
    };
}

/// The delay of timer `i` of `n` spread over `SPAN`: the last one is due at `SPAN`.
fn spread(i: usize, n: usize) -> Duration {
    SPAN * (i as u32 + 1) / n as u32
}

fn socketpair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (a, b)
}

/// Reads the one byte in flight, if there is one.
fn read_byte(mut s: &UnixStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(s.read(&mut buf), Ok(1))
}

fn write_byte(mut s: &UnixStream) {
    s.write_all(b"x").expect("write to the socketpair");
}

// ----- callbacks_batch -----

fn callbacks_batch(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "callbacks_batch");
    let per = Per::Item(z.batch, "callback");

    let lp = Loop::new().unwrap();
    g.bench("evloop", per, || {
        let s = Span::start();
        for _ in 0..z.batch {
            lp.call_soon(|_| {});
        }
        lp.stop(); // before run_forever: run one iteration, which runs the batch
        lp.run_forever().unwrap();
        s.stop()
    });

    // The closure above captures nothing, so boxing it allocates nothing; a real
    // callback captures something.
    g.bench("evloop_capturing", per, || {
        let s = Span::start();
        for i in 0..z.batch {
            lp.call_soon(move |_| {
                black_box(i);
            });
        }
        lp.stop();
        lp.run_forever().unwrap();
        s.stop()
    });
    drop(lp);

    bench_tokio_spawn_batches(&mut g, per, z.batch);

    // calloop's one-shot "call this soon" is an idle callback: run by the next
    // dispatch, after its poll.
    let mut el: EventLoop<'static, ()> = EventLoop::try_new().unwrap();
    let h = el.handle();
    g.bench("calloop", per, || {
        let s = Span::start();
        for _ in 0..z.batch {
            h.insert_idle(|_| {});
        }
        el.dispatch(Some(Duration::ZERO), &mut ()).unwrap();
        s.stop()
    });
    g.finish();
}

// ----- callbacks_chain -----

fn evloop_link(lp: &Loop, left: u32) {
    if left == 0 {
        lp.stop();
    } else {
        lp.call_soon(move |lp| evloop_link(lp, left - 1));
    }
}

fn tokio_link(left: u32, done: oneshot::Sender<()>) {
    if left == 0 {
        let _ = done.send(());
    } else {
        tokio::spawn(async move { tokio_link(left - 1, done) });
    }
}

fn tokio_local_link(left: u32, done: oneshot::Sender<()>) {
    if left == 0 {
        let _ = done.send(());
    } else {
        tokio::task::spawn_local(async move { tokio_local_link(left - 1, done) });
    }
}

fn calloop_link(h: &LoopHandle<'static, u32>, left: &mut u32) {
    *left -= 1;
    if *left > 0 {
        let next = h.clone();
        h.insert_idle(move |left| calloop_link(&next, left));
    }
}

fn callbacks_chain(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "callbacks_chain");
    let per = Per::Item(z.chain as usize, "link");

    let lp = Loop::new().unwrap();
    g.bench("evloop", per, || {
        let s = Span::start();
        lp.call_soon(move |lp| evloop_link(lp, z.chain - 1));
        lp.run_forever().unwrap();
        s.stop()
    });
    drop(lp);

    let rt = current_thread();
    g.bench("tokio_current_thread", per, || {
        let s = Span::start();
        rt.block_on(async {
            tokio::spawn(async move {
                for _ in 0..z.chain {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap();
        });
        s.stop()
    });

    g.bench("tokio_current_thread_spawn", per, || {
        let s = Span::start();
        rt.block_on(async {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move { tokio_link(z.chain - 1, tx) });
            rx.await.unwrap();
        });
        s.stop()
    });

    let local = LocalSet::new();
    g.bench("tokio_localset_spawn", per, || {
        let s = Span::start();
        local.block_on(&rt, async {
            let (tx, rx) = oneshot::channel();
            tokio::task::spawn_local(async move { tokio_local_link(z.chain - 1, tx) });
            rx.await.unwrap();
        });
        s.stop()
    });
    drop(local);
    drop(rt);

    let mut el: EventLoop<'static, u32> = EventLoop::try_new().unwrap();
    let h = el.handle();
    let per = Per::Item(z.chain_calloop as usize, "link");
    g.bench("calloop", per, || {
        let s = Span::start();
        let mut left = z.chain_calloop;
        let first = h.clone();
        h.insert_idle(move |left| calloop_link(&first, left));
        while left > 0 {
            el.dispatch(Some(Duration::ZERO), &mut left).unwrap();
        }
        s.stop()
    });
    g.finish();
}

// ----- debug_mode -----

fn debug_mode(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "debug_mode");
    let per = Per::Item(z.chain as usize, "link");
    for (name, debug) in [("callbacks_off", false), ("callbacks_on", true)] {
        let lp = Loop::builder().debug(debug).build().unwrap();
        g.bench(name, per, || {
            let s = Span::start();
            lp.call_soon(move |lp| evloop_link(lp, z.chain - 1));
            lp.run_forever().unwrap();
            s.stop()
        });
    }
    // A task step goes through the same per-callback path as a callback.
    let per = Per::Item(z.chain as usize, "step");
    for (name, debug) in [("task_yield_off", false), ("task_yield_on", true)] {
        let lp = Loop::builder().debug(debug).build().unwrap();
        g.bench(name, per, || {
            let s = Span::start();
            let task = lp.create_task(async move {
                for _ in 0..z.chain {
                    evloop::yield_now().await;
                }
            });
            lp.run_until_complete(task).unwrap().unwrap();
            s.stop()
        });
    }
    g.finish();
}

// ----- timers -----

fn timers(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "timers");

    let lp = Loop::new().unwrap();
    let mut handles = Vec::with_capacity(z.timers);
    g.bench("evloop", Per::Overhead(z.timers, SPAN), || {
        let left = Rc::new(Cell::new(z.timers / 2));
        let s = Span::start();
        for i in 0..z.timers {
            let left = left.clone();
            handles.push(lp.call_later(spread(i, z.timers), move |lp| {
                left.set(left.get() - 1);
                if left.get() == 0 {
                    lp.stop();
                }
            }));
        }
        // Cancel the even ones; the last (odd) one is due at SPAN.
        for h in handles.iter().step_by(2) {
            h.cancel();
        }
        lp.run_forever().unwrap();
        let sample = s.stop();
        handles.clear();
        sample
    });
    drop(lp);

    let rt = current_thread();
    g.bench(
        "tokio_current_thread",
        Per::Overhead(z.timers, SPAN),
        || {
            let s = Span::start();
            rt.block_on(async {
                let left = Arc::new(AtomicUsize::new(z.timers / 2));
                let done = Arc::new(Notify::new());
                let mut tasks = Vec::with_capacity(z.timers);
                for i in 0..z.timers {
                    // The deadline is taken now, as `call_later` takes it.
                    let deadline = tokio::time::Instant::now() + spread(i, z.timers);
                    let (left, done) = (left.clone(), done.clone());
                    tasks.push(tokio::spawn(async move {
                        tokio::time::sleep_until(deadline).await;
                        if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                            done.notify_one();
                        }
                    }));
                }
                // A sleep registers its timer when first polled. This task runs after every
                // sleeper's first poll (FIFO), so it cancels registered timers.
                tokio::spawn(async move {
                    for t in tasks.iter().step_by(2) {
                        t.abort();
                    }
                })
                .await
                .unwrap();
                done.notified().await;
            });
            s.stop()
        },
    );
    drop(rt);

    let mut el: EventLoop<'static, usize> = EventLoop::try_new().unwrap();
    let h = el.handle();
    let mut tokens = Vec::with_capacity(z.timers_calloop);
    g.bench("calloop", Per::Overhead(z.timers_calloop, SPAN), || {
        let mut left = z.timers_calloop / 2;
        let s = Span::start();
        for i in 0..z.timers_calloop {
            let timer = Timer::from_duration(spread(i, z.timers_calloop));
            tokens.push(
                h.insert_source(timer, |_, _, left: &mut usize| {
                    *left -= 1;
                    TimeoutAction::Drop
                })
                .unwrap(),
            );
        }
        for t in tokens.iter().step_by(2) {
            h.remove(*t);
        }
        while left > 0 {
            el.dispatch(None, &mut left).unwrap();
        }
        let sample = s.stop();
        tokens.clear();
        sample
    });
    g.finish();
}

// ----- threadsafe -----

/// Runs `produce` on `PRODUCERS` threads released together with the loop thread, and
/// times `drive` (the loop running until the producers' last calls have run).
fn with_producers<P>(produce: P, drive: impl FnOnce()) -> Sample
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
    let sample = s.stop();
    for t in threads {
        t.join().unwrap();
    }
    sample
}

fn threadsafe(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "threadsafe");
    let calls = PRODUCERS * z.per_producer;
    let per = Per::Item(calls, "call");

    let lp = Loop::new().unwrap();
    g.bench("evloop", per, || {
        let remote = lp.remote();
        let done = Arc::new(AtomicUsize::new(0));
        with_producers(
            move || {
                for _ in 0..z.per_producer {
                    remote.call_soon_threadsafe(|_| {}).unwrap();
                }
                // Calls from one thread run in order: this one runs last.
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
    });
    drop(lp);

    let rt = current_thread();
    g.bench("tokio_current_thread", per, || {
        let handle = rt.handle().clone();
        let done = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(Notify::new());
        let all_done = finished.clone();
        with_producers(
            move || {
                for _ in 0..z.per_producer {
                    drop(handle.spawn(async {}));
                }
                let (done, finished) = (done.clone(), finished.clone());
                drop(handle.spawn(async move {
                    if done.fetch_add(1, Ordering::Relaxed) + 1 == PRODUCERS {
                        finished.notify_one();
                    }
                }));
            },
            || rt.block_on(all_done.notified()),
        )
    });

    type Job = Box<dyn FnOnce() -> bool + Send>;
    g.bench("tokio_mpsc", per, || {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        with_producers(
            move || {
                for _ in 0..z.per_producer {
                    tx.send(Box::new(|| false)).unwrap();
                }
                tx.send(Box::new(|| true)).unwrap();
            },
            || {
                rt.block_on(async {
                    let mut finished = 0;
                    while finished < PRODUCERS {
                        let job = rx.recv().await.unwrap();
                        if job() {
                            finished += 1;
                        }
                    }
                })
            },
        )
    });
    drop(rt);

    type CalloopJob = Box<dyn FnOnce(&mut usize) + Send>;
    let mut el: EventLoop<'static, usize> = EventLoop::try_new().unwrap();
    let h = el.handle();
    g.bench("calloop", per, || {
        let (tx, rx) = channel::channel::<CalloopJob>();
        let token = h
            .insert_source(rx, |ev, _, finished: &mut usize| {
                if let ChannelEvent::Msg(job) = ev {
                    job(finished);
                }
            })
            .unwrap();
        let mut finished = 0;
        let sample = with_producers(
            move || {
                for _ in 0..z.per_producer {
                    tx.send(Box::new(|_| {})).unwrap();
                }
                tx.send(Box::new(|finished| *finished += 1)).unwrap();
            },
            || {
                while finished < PRODUCERS {
                    el.dispatch(None, &mut finished).unwrap();
                }
            },
        );
        h.remove(token);
        sample
    });
    g.finish();
}

// ----- fd_pingpong -----

fn fd_pingpong(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "fd_pingpong");
    let per = Per::ItemMicros(z.pingpongs, "round trip");

    {
        let lp = Loop::new().unwrap();
        let (a, b) = socketpair();
        let (a, b) = (Rc::new(a), Rc::new(b));
        let left = Rc::new(Cell::new(0usize));
        let echo = b.clone();
        lp.add_reader(b.as_raw_fd(), move |_| {
            if read_byte(&echo) {
                write_byte(&echo);
            }
        })
        .unwrap();
        let (ping, count) = (a.clone(), left.clone());
        lp.add_reader(a.as_raw_fd(), move |lp| {
            if read_byte(&ping) {
                count.set(count.get() - 1);
                if count.get() == 0 {
                    lp.stop();
                } else {
                    write_byte(&ping);
                }
            }
        })
        .unwrap();
        g.bench("evloop", per, || {
            left.set(z.pingpongs);
            let s = Span::start();
            write_byte(&a);
            lp.run_forever().unwrap();
            s.stop()
        });
        lp.remove_reader(a.as_raw_fd());
        lp.remove_reader(b.as_raw_fd());
    }

    {
        let rt = current_thread();
        g.bench("tokio_current_thread", per, || {
            let (a, b) = socketpair();
            let _guard = rt.enter();
            let mut a = tokio::net::UnixStream::from_std(a).unwrap();
            let mut b = tokio::net::UnixStream::from_std(b).unwrap();
            let s = Span::start();
            rt.block_on(async move {
                let echo = tokio::spawn(async move {
                    let mut buf = [0u8; 1];
                    while b.read_exact(&mut buf).await.is_ok() {
                        b.write_all(&buf).await.unwrap();
                    }
                });
                let mut buf = [0u8; 1];
                for _ in 0..z.pingpongs {
                    a.write_all(b"x").await.unwrap();
                    a.read_exact(&mut buf).await.unwrap();
                }
                drop(a);
                echo.await.unwrap();
            });
            s.stop()
        });
    }

    {
        let mut el: EventLoop<'static, usize> = EventLoop::try_new().unwrap();
        let h = el.handle();
        let (a, b) = socketpair();
        let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        let echo = h
            .insert_source(Generic::new(b2, Interest::READ, Mode::Level), |_, s, _| {
                if read_byte(s) {
                    write_byte(s);
                }
                Ok(PostAction::Continue)
            })
            .unwrap();
        let ping = h
            .insert_source(
                Generic::new(a2, Interest::READ, Mode::Level),
                |_, s, left: &mut usize| {
                    if read_byte(s) {
                        *left -= 1;
                        if *left > 0 {
                            write_byte(s);
                        }
                    }
                    Ok(PostAction::Continue)
                },
            )
            .unwrap();
        g.bench("calloop", per, || {
            let mut left = z.pingpongs;
            let s = Span::start();
            write_byte(&a);
            while left > 0 {
                el.dispatch(None, &mut left).unwrap();
            }
            s.stop()
        });
        h.remove(echo);
        h.remove(ping);
        drop(b);
    }
    g.finish();
}

// ----- timers_sparse (latency) -----

/// Deadlines of one sparse round: `n` spread over `SPAN`, starting a little after
/// scheduling is done, so that the loop is idle when they fall due.
fn sparse_deadlines(n: usize) -> Vec<Instant> {
    let t0 = Instant::now() + Duration::from_millis(5);
    (0..n).map(|i| t0 + spread(i, n)).collect()
}

fn sparse_evloop(n: usize, rounds: usize) -> Vec<i64> {
    let lp = Loop::new().unwrap();
    let out = Rc::new(RefCell::new(Vec::with_capacity(n * rounds)));
    for _ in 0..rounds {
        let expected = out.borrow().len() + n;
        for deadline in sparse_deadlines(n) {
            let out = out.clone();
            lp.call_at(deadline, move |lp| {
                let late = lateness(Instant::now(), deadline);
                let mut out = out.borrow_mut();
                out.push(late);
                if out.len() == expected {
                    lp.stop();
                }
            });
        }
        lp.run_forever().unwrap();
    }
    Rc::try_unwrap(out).unwrap().into_inner()
}

fn sparse_tokio(n: usize, rounds: usize) -> Vec<i64> {
    let rt = current_thread();
    let mut out = Vec::with_capacity(n * rounds);
    for _ in 0..rounds {
        rt.block_on(async {
            let tasks: Vec<_> = sparse_deadlines(n)
                .into_iter()
                .map(|deadline| {
                    tokio::spawn(async move {
                        tokio::time::sleep_until(deadline.into()).await;
                        lateness(Instant::now(), deadline)
                    })
                })
                .collect();
            for t in tasks {
                out.push(t.await.unwrap());
            }
        });
    }
    out
}

fn sparse_calloop(n: usize, rounds: usize) -> Vec<i64> {
    let mut el: EventLoop<'static, Vec<i64>> = EventLoop::try_new().unwrap();
    let h = el.handle();
    let mut out = Vec::with_capacity(n * rounds);
    for _ in 0..rounds {
        let expected = out.len() + n;
        for deadline in sparse_deadlines(n) {
            h.insert_source(Timer::from_deadline(deadline), move |_, _, out| {
                out.push(lateness(Instant::now(), deadline));
                TimeoutAction::Drop
            })
            .unwrap();
        }
        while out.len() < expected {
            el.dispatch(None, &mut out).unwrap();
        }
    }
    out
}

fn timers_sparse(run: &Run<Sizes>) {
    let (n, rounds) = (run.sizes.sparse, run.sizes.sparse_rounds);
    type Bench = fn(usize, usize) -> Vec<i64>;
    let rows: [(&str, Bench); 3] = [
        ("timers_sparse/evloop", sparse_evloop),
        ("timers_sparse/tokio_current_thread", sparse_tokio),
        ("timers_sparse/calloop", sparse_calloop),
    ];
    run.table_header(&rows.map(|r| r.0));
    for (id, f) in rows {
        if run.wants(id) {
            run.latency(id, f(n, rounds));
        }
    }
}

// ----- threadsafe_roundtrip (latency) -----

fn roundtrip_tokio_mpsc(n: usize, warmup: usize) -> Vec<i64> {
    let rt = current_thread();
    let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
    let th = thread::spawn(move || {
        let out = round_trips(n, warmup, |flag, me| tx.send(Some((flag, me))).unwrap());
        tx.send(None).unwrap();
        out
    });
    rt.block_on(async {
        while let Some(Some((flag, me))) = rx.recv().await {
            reply(&flag, &me);
        }
    });
    th.join().unwrap()
}

fn threadsafe_roundtrip(run: &Run<Sizes>) {
    let (n, warmup) = (run.sizes.round_trips, run.sizes.round_trip_warmup);
    type Bench = fn(usize, usize) -> Vec<i64>;
    let rows: [(&str, Bench); 5] = [
        ("threadsafe_roundtrip/evloop", roundtrip_evloop),
        ("threadsafe_roundtrip/tokio_current_thread", roundtrip_tokio),
        ("threadsafe_roundtrip/tokio_mpsc", roundtrip_tokio_mpsc),
        ("threadsafe_roundtrip/calloop", support::roundtrip_calloop),
        (
            "threadsafe_roundtrip/std_mpsc_baseline",
            roundtrip_std_baseline,
        ),
    ];
    run.table_header(&rows.map(|r| r.0));
    for (id, f) in rows {
        if run.wants(id) {
            run.latency(id, f(n, warmup));
        }
    }
}

// ----- main -----

fn main() {
    let run = Run::new(Sizes::BENCH, Sizes::TEST);
    let mut c = run.criterion();

    callbacks_batch(&mut c, &run);
    callbacks_chain(&mut c, &run);
    debug_mode(&mut c, &run);
    timers(&mut c, &run);
    threadsafe(&mut c, &run);
    fd_pingpong(&mut c, &run);
    run.finish_groups(&mut c);

    timers_sparse(&run);
    threadsafe_roundtrip(&run);
}
