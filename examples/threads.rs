//! Worker threads feeding one loop through `Remote::call_soon_threadsafe`.
//!
//! ```text
//! cargo run --release --example threads
//! ```
//!
//! Four workers count the primes in their share of a range and report each chunk as
//! they finish it. The reports run as callbacks on the loop's thread, where the
//! totals live; a timer prints progress meanwhile. When the last worker says it is
//! done, the loop stops and the result is checked against a count made in one go.

use std::cell::RefCell;
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Loop, Remote};

const WORKERS: u64 = 4;
const LIMIT: u64 = 300_000;
const CHUNK: u64 = 10_000;

/// The totals, kept on the loop's thread.
#[derive(Default)]
struct Totals {
    primes: u64,
    chunks: u64,
    finished: u64,
}

thread_local! {
    /// Threadsafe callbacks must be `Send`, so they cannot capture an `Rc` to the
    /// loop-side state; they find it here, on the loop's thread, instead.
    static TOTALS: RefCell<Totals> = RefCell::new(Totals::default());
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = Loop::new()?;
    let started = Instant::now();

    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let remote = lp.remote();
            thread::spawn(move || work(id, &remote))
        })
        .collect();

    progress(&lp);
    lp.run_forever()?;

    for w in workers {
        w.join().expect("a worker panicked");
    }
    let (primes, chunks) = TOTALS.with_borrow(|t| (t.primes, t.chunks));
    let expected = count_primes(0, LIMIT);
    println!(
        "{primes} primes below {LIMIT}, from {chunks} chunks sent by {WORKERS} threads, in {:.1?}",
        started.elapsed()
    );
    assert_eq!(primes, expected, "the loop saw every chunk exactly once");
    println!("matches the single-threaded count: {expected}");
    Ok(())
}

/// A worker: takes every `WORKERS`-th chunk, sends each count to the loop, then
/// says it is done.
fn work(id: u64, remote: &Remote) {
    let mut start = id * CHUNK;
    while start < LIMIT {
        let end = (start + CHUNK).min(LIMIT);
        let n = count_primes(start, end);
        remote
            .call_soon_threadsafe(move |_| {
                TOTALS.with_borrow_mut(|t| {
                    t.primes += n;
                    t.chunks += 1;
                });
            })
            .expect("the loop outlives its workers");
        start += WORKERS * CHUNK;
    }
    // Calls from one thread run in the order they were sent: this one comes last.
    remote
        .call_soon_threadsafe(move |lp| {
            let finished = TOTALS.with_borrow_mut(|t| {
                t.finished += 1;
                t.finished
            });
            println!("worker {id} done ({finished}/{WORKERS})");
            if finished == WORKERS {
                lp.stop();
            }
        })
        .expect("the loop outlives its workers");
}

/// Prints the running total every few milliseconds until the loop stops.
fn progress(lp: &Loop) {
    lp.call_later(Duration::from_millis(5), |lp| {
        let (primes, chunks) = TOTALS.with_borrow(|t| (t.primes, t.chunks));
        println!("progress: {chunks} chunks, {primes} primes so far");
        progress(lp);
    });
}

/// The primes in `start..end`, by trial division (deliberately a little slow).
fn count_primes(start: u64, end: u64) -> u64 {
    (start..end).filter(|&n| is_prime(n)).count() as u64
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}
