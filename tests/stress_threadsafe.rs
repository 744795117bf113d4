//! Stress of the threadsafe door: bursts of `call_soon_threadsafe` from many threads,
//! and threads racing the loop's stop and close.
//!
//! Short form (CI, `cargo test`): 8 threads × 100k calls, 200 close races. Long form
//! (`EVLOOP_SOAK=1`, see `.ci/stress`): 8 threads × 1M calls, 2,000 close races.

mod util;

#[path = "util/child.rs"]
mod child;
#[path = "util/stress.rs"]
mod stress;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Error, Loop, RemoteHandle, RemoteTask, TaskError};
use stress::*;
use util::Drops;

const THREADS: usize = 8;

thread_local! {
    /// On the loop's thread: the next sequence number expected from each sender.
    static EXPECT: RefCell<[u64; THREADS]> = const { RefCell::new([0; THREADS]) };
    static RECEIVED: Cell<u64> = const { Cell::new(0) };
    static FAULTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Runs on the loop: checks that `seq` is the next one from thread `t`.
fn record(lp: &Loop, t: usize, seq: u64, total: u64) {
    EXPECT.with(|e| {
        let mut e = e.borrow_mut();
        if e[t] != seq {
            FAULTS.with(|f| {
                let mut f = f.borrow_mut();
                if f.len() < 10 {
                    f.push(format!(
                        "thread {t}: got call #{seq}, expected #{} ({})",
                        e[t],
                        if seq < e[t] {
                            "duplicated or reordered"
                        } else {
                            "one was lost or reordered"
                        }
                    ));
                }
            });
        }
        e[t] = seq + 1;
    });
    let n = RECEIVED.with(|r| {
        r.set(r.get() + 1);
        r.get()
    });
    if n == total {
        lp.stop();
    }
}

/// The peak resident set size so far (`VmHWM`), in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// Runs the loop for about `d`, idle (its own memory-trimming wake-ups may run).
fn idle(lp: &Loop, d: Duration) {
    lp.call_later(d, |lp| lp.stop());
    lp.run_forever().unwrap();
}

/// What a burst measured.
struct Burst {
    per: u64,
    took: Duration,
    rss_start: usize,
    rss_peak: usize,
    rss_idle: usize,
    rss_after: usize,
}

/// 8 threads send calls as fast as they can while the loop drains them; asserts
/// that every call ran once, each thread's in the order it sent them.
fn burst() -> Burst {
    let per: u64 = if under_valgrind() {
        2_000
    } else {
        scale(100_000, 1_000_000)
    };
    let total = per * THREADS as u64;
    EXPECT.with(|e| *e.borrow_mut() = [0; THREADS]);
    RECEIVED.with(|r| r.set(0));
    let lp = Loop::new().unwrap();
    let remote = lp.remote();

    // Warm up (the queue's first buffers, the thread machinery), then the baseline.
    let r = remote.clone();
    let warm = thread::spawn(move || {
        for _ in 0..1000 {
            r.call_soon_threadsafe(|_| {}).unwrap();
        }
        r.call_soon_threadsafe(|lp| lp.stop()).unwrap();
    });
    lp.run_forever().unwrap();
    warm.join().unwrap();
    idle(&lp, Duration::from_millis(500));
    malloc_trim();
    let rss_start = rss_bytes();

    let watchdog = Arc::new(AtomicBool::new(false));
    let w = watchdog.clone();
    let limit = scale(Duration::from_secs(120), Duration::from_secs(900));
    let dog = lp.call_later(limit, move |lp| {
        w.store(true, Ordering::SeqCst);
        lp.stop();
    });
    let started = Instant::now();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let r = remote.clone();
            thread::spawn(move || {
                for seq in 0..per {
                    r.call_soon_threadsafe(move |lp| record(lp, t, seq, total))
                        .expect("the loop is open");
                }
            })
        })
        .collect();
    lp.run_forever().unwrap();
    let took = started.elapsed();
    dog.cancel();
    for s in senders {
        s.join().unwrap();
    }
    assert!(
        !watchdog.load(Ordering::SeqCst),
        "the burst did not finish within {limit:?}"
    );
    let faults = FAULTS.with(|f| f.borrow().clone());
    assert!(faults.is_empty(), "{faults:#?}");
    assert_eq!(RECEIVED.with(Cell::get), total, "calls lost");
    EXPECT.with(|e| assert_eq!(*e.borrow(), [per; THREADS], "every thread's last call"));
    // Nothing more arrives: no duplicate after the last.
    idle(&lp, Duration::from_millis(100));
    assert_eq!(RECEIVED.with(Cell::get), total, "a call ran twice");
    let rss_peak = peak_rss();

    // After the burst: the loop idles (and may give memory back), then the figures.
    idle(&lp, Duration::from_millis(1500));
    let rss_idle = rss_bytes();
    malloc_trim();
    let rss_after = rss_bytes();
    lp.close().unwrap();
    Burst {
        per,
        took,
        rss_start,
        rss_peak,
        rss_idle,
        rss_after,
    }
}

/// 8 threads × 100k calls (long form: 1M): none lost, none duplicated, each thread's
/// order kept.
#[test]
fn eight_threads_of_calls_lose_nothing_and_keep_each_threads_order() {
    let b = burst();
    println!(
        "figure: threadsafe burst: {THREADS} threads x {} calls in {:.2?} ({:.0} calls/s)",
        b.per,
        b.took,
        (b.per * THREADS as u64) as f64 / b.took.as_secs_f64()
    );
}

const MEMORY: &str = "memory_comes_back_after_a_burst_of_threadsafe_calls";

/// After the same burst, the process's memory comes back near where it started
/// (what the loop still holds: RSS after `malloc_trim`, within 8 MiB or a tenth of
/// the burst's peak). Runs in a child process with `MALLOC_ARENA_MAX=1`, so that
/// glibc's per-thread arenas do not hide what the loop gave back and the peak is this
/// burst's alone.
#[test]
fn memory_comes_back_after_a_burst_of_threadsafe_calls() {
    if child::is_child(MEMORY) {
        let b = burst();
        println!(
            "figure: threadsafe burst memory: RSS start {:.1} MiB, peak {:.1} MiB, after \
             1.5 s idle {:.1} MiB, after malloc_trim {:.1} MiB",
            mib(b.rss_start),
            mib(b.rss_peak),
            mib(b.rss_idle),
            mib(b.rss_after)
        );
        let grew = b.rss_after.saturating_sub(b.rss_start);
        let peak = b.rss_peak.saturating_sub(b.rss_start);
        assert!(
            grew <= (8 << 20).max(peak / 10),
            "after the burst the process holds {:.1} MiB more than before it (peak +{:.1} MiB)",
            mib(grew),
            mib(peak)
        );
        return;
    }
    let out = child::run_child_with(MEMORY, &[("MALLOC_ARENA_MAX", "1")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines().filter(|l| l.contains("figure:")) {
        println!("{}", &line[line.find("figure:").unwrap()..]);
    }
    assert!(out.status.success(), "{}", child::describe(&out));
    assert!(
        stdout.contains("figure:"),
        "the child ran no burst: {}",
        child::describe(&out)
    );
}

/// What a racing thread got back from one call.
enum Outcome {
    Call(RemoteHandle, Arc<AtomicBool>),
    Task(RemoteTask<usize>),
    Refused,
}

/// Threads call `call_soon_threadsafe` and `Remote::spawn` while the loop stops and
/// closes (at a different moment in each race): every call either runs, or returns
/// `Err(Closed)`, or is discarded with `is_cancelled() == true` (never both run and
/// cancelled); every spawned task's `wait_timeout` ends (with its value or
/// `Cancelled`); every closure and future is dropped, whichever way it went.
#[test]
fn calls_racing_stop_and_close_run_or_are_refused_or_cancelled_and_never_leak() {
    let races = if under_valgrind() {
        10
    } else {
        scale(200, 2_000)
    };
    let racers = 3;
    let tries = 300;
    let drops = Drops::new();
    let (mut ran, mut refused, mut discarded, mut tasks_done, mut tasks_cancelled) =
        (0, 0, 0, 0, 0);
    for race in 0..races {
        let (tx, rx) = mpsc::channel();
        let delay = Duration::from_micros((race as u64 * 37) % 1500);
        let looper = thread::spawn(move || {
            let lp = Loop::new().unwrap();
            tx.send(lp.remote()).unwrap();
            lp.call_later(delay, |lp| lp.stop());
            lp.run_forever().unwrap();
            lp.close().unwrap();
        });
        let remote = rx.recv().unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..racers)
            .map(|r| {
                let (remote, drops, started) = (remote.clone(), drops.clone(), started.clone());
                thread::spawn(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    let mut out = Vec::new();
                    let mut refusals = 0;
                    for i in 0..tries {
                        let token = drops.token();
                        let outcome = if (i + r) % 2 == 0 {
                            let flag = Arc::new(AtomicBool::new(false));
                            let f = flag.clone();
                            match remote.call_soon_threadsafe(move |_| {
                                token.hold();
                                f.store(true, Ordering::SeqCst);
                            }) {
                                Ok(h) => Outcome::Call(h, flag),
                                Err(e) => {
                                    assert!(matches!(e, Error::Closed), "refused with {e:?}");
                                    Outcome::Refused
                                }
                            }
                        } else {
                            match remote.spawn(async move {
                                token.hold();
                                i
                            }) {
                                Ok(t) => Outcome::Task(t),
                                Err(e) => {
                                    assert!(matches!(e, Error::Closed), "refused with {e:?}");
                                    Outcome::Refused
                                }
                            }
                        };
                        if matches!(outcome, Outcome::Refused) {
                            refusals += 1;
                        }
                        out.push(outcome);
                        if refusals == 5 {
                            break; // closed for good: a few more refusals are enough
                        }
                    }
                    out
                })
            })
            .collect();
        let outcomes: Vec<Vec<Outcome>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        looper.join().unwrap();
        assert!(remote.is_closed());
        assert_eq!(
            drops.alive(),
            0,
            "race {race}: closures or futures alive after the loop closed"
        );
        for (i, outcome) in outcomes.into_iter().flatten().enumerate() {
            match outcome {
                Outcome::Call(h, flag) => {
                    let did_run = flag.load(Ordering::SeqCst);
                    assert_ne!(
                        did_run,
                        h.is_cancelled(),
                        "race {race}, call {i}: ran {did_run}, is_cancelled {}",
                        h.is_cancelled()
                    );
                    if did_run {
                        ran += 1;
                    } else {
                        discarded += 1;
                    }
                }
                Outcome::Task(mut t) => {
                    match t.wait_timeout(Duration::from_secs(20)) {
                        Some(Ok(_)) => tasks_done += 1,
                        Some(Err(TaskError::Cancelled)) => tasks_cancelled += 1,
                        Some(Err(e)) => panic!("race {race}, task {i}: {e:?}"),
                        None => panic!("race {race}, task {i}: wait_timeout hangs"),
                    }
                    assert!(t.is_done());
                }
                Outcome::Refused => refused += 1,
            }
        }
    }
    assert_eq!(drops.alive(), 0);
    println!(
        "figure: close races: {races} races x {racers} threads: {ran} calls ran, {discarded} \
         discarded (cancelled), {refused} refused (Closed); {tasks_done} tasks done, \
         {tasks_cancelled} cancelled"
    );
    // The races must have raced: some work ran, and some came too late.
    assert!(ran + tasks_done > 0, "nothing ever ran");
    assert!(
        refused > 0,
        "no call was ever refused: the races never met the close"
    );
}
