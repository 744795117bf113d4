//! Blocking work on `run_in_executor` threads while the loop stays responsive.
//!
//! ```text
//! cargo run --release --example executor
//! ```
//!
//! Eight jobs each block for 50 ms (`thread::sleep`, standing in for a blocking read or
//! a C library call) and then count the primes below their input. Run on the loop's
//! thread they would freeze it for 400 ms; handed to the executor with
//! `lp.run_in_executor(..)` (asyncio's `loop.run_in_executor(None, f)`) they run on a
//! pool of four threads, four at a time, while a ticker task keeps ticking every 10 ms
//! on the loop. A `TaskGroup` (asyncio's `async with TaskGroup()`) waits for them all,
//! and the results are printed in input order.

use std::cell::Cell;
use std::error::Error as StdError;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Loop, TaskGroup};

/// How long each job blocks its thread.
const BLOCKING: Duration = Duration::from_millis(50);
/// The executor's threads: at most this many jobs run at once.
const THREADS: usize = 4;
const INPUTS: [u64; 8] = [1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000];

/// What one job reports back to the loop.
struct JobResult {
    primes: usize,
    thread: String,
    started: Duration,
}

/// The blocking job, run on an executor thread.
fn count_primes_slowly(below: u64, t0: Instant) -> JobResult {
    let started = t0.elapsed();
    thread::sleep(BLOCKING);
    let primes = (2..below)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count();
    JobResult {
        primes,
        thread: thread::current().name().unwrap_or("unnamed").to_owned(),
        started,
    }
}

fn main() -> Result<(), Box<dyn StdError>> {
    let lp = Loop::builder().executor_threads(THREADS).build()?;
    lp.run_until_complete(run(&lp))?
}

async fn run(lp: &Loop) -> Result<(), Box<dyn StdError>> {
    let t0 = Instant::now();
    let finished = Rc::new(Cell::new(0));

    // A task that ticks every 10 ms: it only gets to run if nothing blocks the loop.
    let ticks = Rc::new(Cell::new(0u32));
    let (n, f) = (ticks.clone(), finished.clone());
    let ticker = lp.create_task(async move {
        let mut every = evloop::interval(Duration::from_millis(10));
        every.tick().await; // the first tick is immediate
        loop {
            every.tick().await;
            n.set(n.get() + 1);
            println!(
                "  tick {:>2} at +{:>3} ms: {}/{} jobs done",
                n.get(),
                t0.elapsed().as_millis(),
                f.get(),
                INPUTS.len()
            );
        }
    });

    // One child per job: it awaits the executor's task for that job.
    let group = TaskGroup::new();
    let children: Vec<_> = INPUTS
        .iter()
        .map(|&below| {
            let job = lp.run_in_executor(move || count_primes_slowly(below, t0));
            let finished = finished.clone();
            group.spawn(async move {
                let result = job.await;
                finished.set(finished.get() + 1);
                result
            })
        })
        .collect();
    println!(
        "{} jobs handed to {THREADS} executor threads; the loop ticks meanwhile:",
        INPUTS.len()
    );

    group.wait().await?; // every child is done (or every child panic, as Err)
    let elapsed = t0.elapsed();
    ticker.cancel();
    let ticked = ticks.get();

    println!("results, in input order:");
    for (below, child) in INPUTS.iter().zip(children) {
        let job = child.await??; // the child's result, then the job's
        println!(
            "  primes below {below}: {} (on {}, started at +{} ms)",
            job.primes,
            job.thread,
            job.started.as_millis()
        );
    }
    println!(
        "all {} jobs done in {} ms of wall time, {THREADS} at a time \
         (one after another: at least {} ms)",
        INPUTS.len(),
        elapsed.as_millis(),
        BLOCKING.as_millis() * INPUTS.len() as u128
    );
    println!("the loop ticked {ticked} times while the jobs blocked their threads");
    Ok(())
}
