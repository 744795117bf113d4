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

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use calloop::channel::{self, Event as ChannelEvent};
use calloop::generic::Generic;
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, Interest, LoopHandle, Mode, PostAction};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use evloop::Loop;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::LocalSet;

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

// ----- measuring -----

/// Wall time and this thread's CPU time of one workload.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

struct Span {
    wall: Instant,
    cpu: Duration,
}

impl Span {
    fn start() -> Span {
        Span {
            cpu: thread_cpu_time(),
            wall: Instant::now(),
        }
    }

    fn stop(self) -> Sample {
        let wall = self.wall.elapsed();
        Sample {
            wall,
            cpu: thread_cpu_time().saturating_sub(self.cpu),
        }
    }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// How a workload's time becomes a per-unit figure for the summary.
#[derive(Clone, Copy)]
enum Per {
    /// Wall time / n, in ns.
    Item(usize, &'static str),
    /// (wall time − the span the deadlines cover) / n, in ns: the loop's overhead.
    Overhead(usize, Duration),
    /// Wall time / n, in µs.
    ItemMicros(usize, &'static str),
}

impl Per {
    fn wall(self, s: Sample) -> f64 {
        match self {
            Per::Item(n, _) => s.wall.as_nanos() as f64 / n as f64,
            Per::Overhead(n, span) => {
                (s.wall.as_nanos() as f64 - span.as_nanos() as f64) / n as f64
            }
            Per::ItemMicros(n, _) => s.wall.as_nanos() as f64 / n as f64 / 1e3,
        }
    }

    fn cpu(self, s: Sample) -> f64 {
        match self {
            Per::Item(n, _) | Per::Overhead(n, _) => s.cpu.as_nanos() as f64 / n as f64,
            Per::ItemMicros(n, _) => s.cpu.as_nanos() as f64 / n as f64 / 1e3,
        }
    }

    fn unit(self) -> String {
        match self {
            Per::Item(_, what) => format!("ns/{what}"),
            Per::Overhead(n, span) => {
                format!("ns/timer (wall: (t − {span:?}) / {n}; CPU: cpu / {n})")
            }
            Per::ItemMicros(_, what) => format!("µs/{what}"),
        }
    }
}

/// One summary row.
struct Row {
    id: String,
    per: Per,
    wall: f64,
    cpu: f64,
    samples: usize,
}

/// Settings and results shared by the whole run.
struct Run {
    args: Args,
    sizes: Sizes,
    rows: RefCell<Vec<Row>>,
}

impl Run {
    /// Whether the latency row `id` is selected.
    fn wants(&self, id: &str) -> bool {
        !self.args.list
            && match &self.args.filter {
                None => true,
                Some(f) => id.contains(f.as_str()),
            }
    }

    /// Records a latency row: `lateness` in ns (negative: early).
    fn latency(&self, id: &str, mut lateness: Vec<i64>) {
        lateness.sort_unstable();
        let early = lateness.iter().filter(|&&ns| ns < 0).count();
        let us = |ns: i64| ns as f64 / 1e3;
        println!(
            "| {id} | {:.1} | {:.1} | {:.1} | {:.1} | {early} | {} |",
            us(percentile(&lateness, 0.50)),
            us(percentile(&lateness, 0.99)),
            us(lateness[0]),
            us(*lateness.last().expect("samples")),
            lateness.len()
        );
    }

    fn print_summary(&self) {
        let rows = self.rows.borrow();
        if !rows.is_empty() {
            println!("\n## Throughput: medians of measured iterations\n");
            println!("| benchmark | wall | loop-thread CPU | unit | iterations |");
            println!("|---|---:|---:|---|---:|");
            for r in rows.iter() {
                println!(
                    "| {} | {:.2} | {:.2} | {} | {} |",
                    r.id,
                    r.wall,
                    r.cpu,
                    r.per.unit(),
                    r.samples
                );
            }
        }
    }
}

const LATENCY_HEADER: &str = "| latency (µs) | p50 | p99 | min | max | early | samples |\n|---|---:|---:|---:|---:|---:|---:|";

/// A criterion group whose functions also feed the summary.
struct Group<'c, 'r> {
    g: BenchmarkGroup<'c, WallTime>,
    name: &'static str,
    run: &'r Run,
}

fn group<'c, 'r>(c: &'c mut Criterion, run: &'r Run, name: &'static str) -> Group<'c, 'r> {
    let mut g = c.benchmark_group(name);
    // Each iteration is a whole workload of tens of milliseconds: the same number of
    // iterations per sample, not criterion's linear ramp.
    g.sampling_mode(SamplingMode::Flat);
    Group { g, name, run }
}

impl Group<'_, '_> {
    /// Benchmarks `workload` (which times itself, setup excluded) as `group/name`.
    fn bench(&mut self, name: &str, per: Per, mut workload: impl FnMut() -> Sample) {
        // One inner Vec per call of the routine: criterion calls it once per sample,
        // after its warm-up calls, so the last `sample_size` calls are the measured ones.
        let mut calls: Vec<Vec<Sample>> = Vec::new();
        if let Per::Item(n, _) | Per::ItemMicros(n, _) = per {
            self.g.throughput(Throughput::Elements(n as u64));
        }
        self.g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut this = Vec::with_capacity(iters as usize);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let s = workload();
                    total += s.wall;
                    this.push(s);
                }
                calls.push(this);
                total
            })
        });
        if calls.is_empty() {
            return; // filtered out
        }
        let skip = calls.len().saturating_sub(self.run.args.sample_size);
        let measured: Vec<Sample> = calls.into_iter().skip(skip).flatten().collect();
        self.run.rows.borrow_mut().push(Row {
            id: format!("{}/{name}", self.name),
            per,
            wall: median(measured.iter().map(|s| per.wall(*s)).collect()),
            cpu: median(measured.iter().map(|s| per.cpu(*s)).collect()),
            samples: measured.len(),
        });
    }

    fn finish(self) {
        self.g.finish();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `now − deadline` in ns, negative if `now` is early.
fn lateness(now: Instant, deadline: Instant) -> i64 {
    match now.checked_duration_since(deadline) {
        Some(late) => late.as_nanos() as i64,
        None => -((deadline - now).as_nanos() as i64),
    }
}

/// The delay of timer `i` of `n` spread over `SPAN`: the last one is due at `SPAN`.
fn spread(i: usize, n: usize) -> Duration {
    SPAN * (i as u32 + 1) / n as u32
}

fn current_thread() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
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

fn callbacks_batch(c: &mut Criterion, run: &Run) {
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

    let rt = current_thread();
    g.bench("tokio_current_thread", per, || {
        let s = Span::start();
        rt.block_on(async {
            for _ in 0..z.batch - 1 {
                drop(tokio::spawn(async {}));
            }
            // The run queue is FIFO: when the last task is done, all are.
            tokio::spawn(async {}).await.unwrap();
        });
        s.stop()
    });

    let local = LocalSet::new();
    g.bench("tokio_localset", per, || {
        let s = Span::start();
        local.block_on(&rt, async {
            for _ in 0..z.batch - 1 {
                drop(tokio::task::spawn_local(async {}));
            }
            tokio::task::spawn_local(async {}).await.unwrap();
        });
        s.stop()
    });
    drop(local);
    drop(rt);

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

fn callbacks_chain(c: &mut Criterion, run: &Run) {
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

// ----- timers -----

fn timers(c: &mut Criterion, run: &Run) {
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

fn threadsafe(c: &mut Criterion, run: &Run) {
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

fn fd_pingpong(c: &mut Criterion, run: &Run) {
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

fn timers_sparse(run: &Run) {
    let (n, rounds) = (run.sizes.sparse, run.sizes.sparse_rounds);
    type Bench = fn(usize, usize) -> Vec<i64>;
    let rows: [(&str, Bench); 3] = [
        ("timers_sparse/evloop", sparse_evloop),
        ("timers_sparse/tokio_current_thread", sparse_tokio),
        ("timers_sparse/calloop", sparse_calloop),
    ];
    print_table_header(run, &rows.map(|r| r.0));
    for (id, f) in rows {
        if run.wants(id) {
            run.latency(id, f(n, rounds));
        }
    }
}

fn print_table_header(run: &Run, ids: &[&str]) {
    if ids.iter().any(|id| run.wants(id)) {
        println!("\n{LATENCY_HEADER}");
    }
}

// ----- threadsafe_roundtrip (latency) -----

/// The foreign thread's side: `n` timed round trips after `warmup` untimed ones.
/// `send(flag, me)` must make the loop set `flag` and unpark `me`.
fn round_trips(
    n: usize,
    warmup: usize,
    send: impl Fn(Arc<AtomicBool>, thread::Thread),
) -> Vec<i64> {
    let me = thread::current();
    let flag = Arc::new(AtomicBool::new(false));
    let mut out = Vec::with_capacity(n);
    for i in 0..warmup + n {
        flag.store(false, Ordering::Relaxed);
        let t = Instant::now();
        send(flag.clone(), me.clone());
        while !flag.load(Ordering::Acquire) {
            thread::park();
        }
        let took = t.elapsed();
        if i >= warmup {
            out.push(took.as_nanos() as i64);
        }
    }
    out
}

fn reply(flag: &AtomicBool, th: &thread::Thread) {
    flag.store(true, Ordering::Release);
    th.unpark();
}

fn roundtrip_evloop(n: usize, warmup: usize) -> Vec<i64> {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let th = thread::spawn(move || {
        let out = round_trips(n, warmup, |flag, me| {
            remote
                .call_soon_threadsafe(move |_| reply(&flag, &me))
                .unwrap();
        });
        remote.stop();
        out
    });
    lp.run_forever().unwrap();
    th.join().unwrap()
}

fn roundtrip_tokio(n: usize, warmup: usize) -> Vec<i64> {
    let rt = current_thread();
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
    rt.block_on(finished.notified());
    th.join().unwrap()
}

type Reply = Option<(Arc<AtomicBool>, thread::Thread)>;

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

fn roundtrip_calloop(n: usize, warmup: usize) -> Vec<i64> {
    let mut el: EventLoop<'static, bool> = EventLoop::try_new().unwrap();
    let (tx, rx) = channel::channel::<Reply>();
    el.handle()
        .insert_source(rx, |ev, _, finished: &mut bool| match ev {
            ChannelEvent::Msg(Some((flag, me))) => reply(&flag, &me),
            _ => *finished = true,
        })
        .unwrap();
    let th = thread::spawn(move || {
        let out = round_trips(n, warmup, |flag, me| tx.send(Some((flag, me))).unwrap());
        tx.send(None).unwrap();
        out
    });
    let mut finished = false;
    while !finished {
        el.dispatch(None, &mut finished).unwrap();
    }
    th.join().unwrap()
}

/// The floor, without an event loop: the "loop" is a thread blocked on a std channel
/// (a futex wake each way, as in every row).
fn roundtrip_std_baseline(n: usize, warmup: usize) -> Vec<i64> {
    let (tx, rx) = std::sync::mpsc::channel::<Reply>();
    let th = thread::spawn(move || {
        let out = round_trips(n, warmup, |flag, me| tx.send(Some((flag, me))).unwrap());
        tx.send(None).unwrap();
        out
    });
    while let Ok(Some((flag, me))) = rx.recv() {
        reply(&flag, &me);
    }
    th.join().unwrap()
}

fn threadsafe_roundtrip(run: &Run) {
    let (n, warmup) = (run.sizes.round_trips, run.sizes.round_trip_warmup);
    type Bench = fn(usize, usize) -> Vec<i64>;
    let rows: [(&str, Bench); 5] = [
        ("threadsafe_roundtrip/evloop", roundtrip_evloop),
        ("threadsafe_roundtrip/tokio_current_thread", roundtrip_tokio),
        ("threadsafe_roundtrip/tokio_mpsc", roundtrip_tokio_mpsc),
        ("threadsafe_roundtrip/calloop", roundtrip_calloop),
        (
            "threadsafe_roundtrip/std_mpsc_baseline",
            roundtrip_std_baseline,
        ),
    ];
    print_table_header(run, &rows.map(|r| r.0));
    for (id, f) in rows {
        if run.wants(id) {
            run.latency(id, f(n, warmup));
        }
    }
}

// ----- main -----

/// What this binary needs to know of criterion's command line (criterion parses it
/// again for itself).
struct Args {
    filter: Option<String>,
    /// `cargo test --benches` (no `--bench`) or `--test`: run everything once, small.
    test: bool,
    list: bool,
    sample_size: usize,
}

impl Args {
    fn parse() -> Args {
        // criterion's options that take a value.
        const VALUED: &[&str] = &[
            "--color",
            "-c",
            "--save-baseline",
            "-s",
            "--baseline",
            "-b",
            "--baseline-lenient",
            "--format",
            "--profile-time",
            "--load-baseline",
            "--sample-size",
            "--warm-up-time",
            "--measurement-time",
            "--nresamples",
            "--noise-threshold",
            "--confidence-level",
            "--significance-level",
            "--plotting-backend",
            "--output-format",
        ];
        let mut args = Args {
            filter: None,
            test: false,
            list: false,
            sample_size: SAMPLE_SIZE,
        };
        let (mut bench, mut test) = (false, false);
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--bench" => bench = true,
                "--test" => test = true,
                "--list" => args.list = true,
                "--sample-size" => {
                    if let Some(n) = it.next().and_then(|v| v.parse().ok()) {
                        args.sample_size = n;
                    }
                }
                s if VALUED.contains(&s) => {
                    it.next();
                }
                s if s.starts_with('-') => {}
                s => args.filter = Some(s.to_owned()),
            }
        }
        args.test = test || !bench;
        args
    }
}

const SAMPLE_SIZE: usize = 10;

fn main() {
    let args = Args::parse();
    let run = Run {
        sizes: if args.test { Sizes::TEST } else { Sizes::BENCH },
        args,
        rows: RefCell::new(Vec::new()),
    };
    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        // Plots and 100,000 bootstrap resamples cost more time than they are worth
        // with 10 samples a benchmark.
        .without_plots()
        .nresamples(10_000)
        .configure_from_args();

    callbacks_batch(&mut c, &run);
    callbacks_chain(&mut c, &run);
    timers(&mut c, &run);
    threadsafe(&mut c, &run);
    fd_pingpong(&mut c, &run);
    c.final_summary();
    if !run.args.test && !run.args.list {
        run.print_summary();
    }

    timers_sparse(&run);
    threadsafe_roundtrip(&run);
}
