//! The measurement harness shared by the bench binaries (`core`, `tasks`): each
//! includes it with `#[path = "support/mod.rs"] mod support;`.
//!
//! - [`Span`] / [`Sample`]: wall time and the loop thread's CPU time of one workload.
//! - [`group`] / [`Group`]: a criterion group whose functions also feed the summary
//!   table ([`Per`] turns a workload's time into a per-unit figure).
//! - [`Run`]: the command line ([`Args`]), the workload sizes (each bench has its own
//!   sizes type `S`: the real ones, or tiny ones when run as a test), the summary
//!   rows, and latency tables ([`LATENCY_HEADER`], [`Run::latency`]).
//! - [`round_trips`]: the foreign thread's side of a cross-thread round-trip latency.
//!
//! Run as a test (`cargo test --benches`, no `--bench` flag), a bench binary runs
//! every workload once at its tiny size.

// Each bench binary uses a different part of this module.
#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use evloop::Loop;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::Notify;

/// criterion's samples per benchmark.
pub const SAMPLE_SIZE: usize = 10;

// ----- measuring -----

/// Wall time and this thread's CPU time of one workload.
#[derive(Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub cpu: Duration,
}

/// A workload being timed: started by [`Span::start`], ended by [`Span::stop`].
pub struct Span {
    wall: Instant,
    cpu: Duration,
}

impl Span {
    pub fn start() -> Span {
        Span {
            cpu: thread_cpu_time(),
            wall: Instant::now(),
        }
    }

    pub fn stop(self) -> Sample {
        let wall = self.wall.elapsed();
        Sample {
            wall,
            cpu: thread_cpu_time().saturating_sub(self.cpu),
        }
    }
}

/// The CPU time this thread has used.
pub fn thread_cpu_time() -> Duration {
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
pub enum Per {
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

// ----- the run -----

/// Settings and results shared by the whole run of one bench binary; `S` is that
/// bench's workload sizes.
pub struct Run<S> {
    pub args: Args,
    pub sizes: S,
    rows: RefCell<Vec<Row>>,
}

impl<S: Copy> Run<S> {
    /// Parses the command line and picks `bench` sizes, or `test` ones when the
    /// binary runs as a test.
    pub fn new(bench: S, test: S) -> Run<S> {
        let args = Args::parse();
        Run {
            sizes: if args.test { test } else { bench },
            args,
            rows: RefCell::new(Vec::new()),
        }
    }

    /// A criterion configured for whole-workload iterations, with the command line
    /// applied.
    pub fn criterion(&self) -> Criterion {
        Criterion::default()
            .sample_size(SAMPLE_SIZE)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            // Plots and 100,000 bootstrap resamples cost more time than they are worth
            // with 10 samples a benchmark.
            .without_plots()
            .nresamples(10_000)
            .configure_from_args()
    }

    /// Ends the criterion groups: criterion's own summary, then ours (not in test or
    /// list mode).
    pub fn finish_groups(&self, c: &mut Criterion) {
        c.final_summary();
        if !self.args.test && !self.args.list {
            self.print_summary();
        }
    }
}

impl<S> Run<S> {
    /// Whether the latency row `id` is selected.
    pub fn wants(&self, id: &str) -> bool {
        !self.args.list
            && match &self.args.filter {
                None => true,
                Some(f) => id.contains(f.as_str()),
            }
    }

    /// Prints the latency table's header if any of its rows `ids` is selected.
    pub fn table_header(&self, ids: &[&str]) {
        if ids.iter().any(|id| self.wants(id)) {
            println!("\n{LATENCY_HEADER}");
        }
    }

    /// Runs each selected row of a latency table: `(id, f)`, where `f()` returns the
    /// row's samples in ns.
    pub fn latency_table(&self, rows: &[(&str, &dyn Fn() -> Vec<i64>)]) {
        let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
        self.table_header(&ids);
        for (id, f) in rows {
            if self.wants(id) {
                self.latency(id, f());
            }
        }
    }

    /// Records a latency row: `lateness` in ns (negative: early).
    pub fn latency(&self, id: &str, mut lateness: Vec<i64>) {
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

    pub fn print_summary(&self) {
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

pub const LATENCY_HEADER: &str = "| latency (µs) | p50 | p99 | min | max | early | samples |\n|---|---:|---:|---:|---:|---:|---:|";

// ----- criterion groups -----

/// A criterion group whose functions also feed the summary.
pub struct Group<'c, 'r, S> {
    g: BenchmarkGroup<'c, WallTime>,
    name: &'static str,
    run: &'r Run<S>,
}

pub fn group<'c, 'r, S>(
    c: &'c mut Criterion,
    run: &'r Run<S>,
    name: &'static str,
) -> Group<'c, 'r, S> {
    let mut g = c.benchmark_group(name);
    // Each iteration is a whole workload of tens of milliseconds: the same number of
    // iterations per sample, not criterion's linear ramp.
    g.sampling_mode(SamplingMode::Flat);
    Group { g, name, run }
}

impl<S> Group<'_, '_, S> {
    /// Benchmarks `workload` (which times itself, setup excluded) as `group/name`.
    pub fn bench(&mut self, name: &str, per: Per, mut workload: impl FnMut() -> Sample) {
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

    pub fn finish(self) {
        self.g.finish();
    }
}

// ----- statistics -----

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `now − deadline` in ns, negative if `now` is early.
pub fn lateness(now: Instant, deadline: Instant) -> i64 {
    match now.checked_duration_since(deadline) {
        Some(late) => late.as_nanos() as i64,
        None => -((deadline - now).as_nanos() as i64),
    }
}

// ----- peers -----

/// tokio's single-threaded runtime, with its I/O and time drivers (and, through
/// `enable_all`, nothing less than a user would have).
pub fn current_thread() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ----- cross-thread round trips -----

/// The foreign thread's side of a round-trip latency table: `n` timed round trips
/// after `warmup` untimed ones, in ns. `send(flag, me)` must make the loop set `flag`
/// and unpark `me` (with [`reply`]).
pub fn round_trips(
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

/// The loop's side of a round trip: tell the foreign thread.
pub fn reply(flag: &AtomicBool, th: &thread::Thread) {
    flag.store(true, Ordering::Release);
    th.unpark();
}

/// What a round trip hands the loop: whom to reply to, or `None` to finish.
pub type Reply = Option<(Arc<AtomicBool>, thread::Thread)>;

/// evloop: the foreign thread sends a `call_soon_threadsafe` call that replies.
pub fn roundtrip_evloop(n: usize, warmup: usize) -> Vec<i64> {
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

/// tokio: the foreign thread spawns a task that replies (tokio's nearest to a
/// threadsafe call).
pub fn roundtrip_tokio(n: usize, warmup: usize) -> Vec<i64> {
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

/// The floor, without an event loop: the "loop" is a thread blocked on a std channel
/// (a futex wake each way, as in every row).
pub fn roundtrip_std_baseline(n: usize, warmup: usize) -> Vec<i64> {
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

// ----- main -----

/// What a bench binary needs to know of criterion's command line (criterion parses
/// it again for itself).
pub struct Args {
    pub filter: Option<String>,
    /// `cargo test --benches` (no `--bench`) or `--test`: run everything once, small.
    pub test: bool,
    pub list: bool,
    pub sample_size: usize,
}

impl Args {
    pub fn parse() -> Args {
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

/// The rows `tokio_current_thread` and `tokio_localset` of a group: `n` trivial
/// tasks spawned and run to completion, on a fresh current-thread runtime.
pub fn bench_tokio_spawn_batches<S>(g: &mut Group<'_, '_, S>, per: Per, n: usize) {
    let rt = current_thread();
    g.bench("tokio_current_thread", per, || {
        let s = Span::start();
        tokio_spawn_batch(&rt, n);
        s.stop()
    });
    let local = tokio::task::LocalSet::new();
    g.bench("tokio_localset", per, || {
        let s = Span::start();
        tokio_local_spawn_batch(&local, &rt, n);
        s.stop()
    });
}

/// `n` trivial tokio tasks spawned on `rt` and run to completion. The run queue is
/// FIFO: when the last task is done, all are.
pub fn tokio_spawn_batch(rt: &Runtime, n: usize) {
    rt.block_on(async {
        for _ in 0..n - 1 {
            drop(tokio::spawn(async {}));
        }
        tokio::spawn(async {}).await.unwrap();
    });
}

/// As [`tokio_spawn_batch`], with `spawn_local` on a `LocalSet`.
pub fn tokio_local_spawn_batch(local: &tokio::task::LocalSet, rt: &Runtime, n: usize) {
    local.block_on(rt, async {
        for _ in 0..n - 1 {
            drop(tokio::task::spawn_local(async {}));
        }
        tokio::task::spawn_local(async {}).await.unwrap();
    });
}

/// The calloop peer of the threadsafe round-trip table: a plain thread sends on a
/// calloop channel, the loop replies (shared by the core and compare benches).
pub fn roundtrip_calloop(n: usize, warmup: usize) -> Vec<i64> {
    let mut el: calloop::EventLoop<'static, bool> = calloop::EventLoop::try_new().unwrap();
    let (tx, rx) = calloop::channel::channel::<Reply>();
    el.handle()
        .insert_source(rx, |ev, _, finished: &mut bool| match ev {
            calloop::channel::Event::Msg(Some((flag, me))) => reply(&flag, &me),
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
