//! A loop under load, printing its statistics once a second.
//!
//! Four worker threads feed threadsafe calls, a timer fires every millisecond, and a
//! socket pair bounces a byte through readers: `Loop::stats()` shows the work, the
//! time blocked and the time busy.
//!
//! Run with `cargo run --release --example stats [seconds]` (default 3).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use evloop::{Loop, Stats};

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let lp = Loop::builder().debug(true).build().expect("loop");

    // Load 1: worker threads sending threadsafe calls.
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let remote = lp.remote();
            let done = done.clone();
            thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    for _ in 0..100 {
                        if remote.call_soon_threadsafe(|_| {}).is_err() {
                            return;
                        }
                    }
                    thread::sleep(Duration::from_micros(200));
                }
            })
        })
        .collect();

    // Load 2: a millisecond ticker.
    fn tick(lp: &Loop) {
        lp.call_later(Duration::from_millis(1), tick);
    }
    tick(&lp);

    // Load 3: a byte bouncing between two sockets through level-triggered readers.
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (&a).write_all(b"x").unwrap();
    for (mut me, peer) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
        let fd = me.as_raw_fd();
        lp.add_reader(fd, move |_| {
            let mut byte = [0u8; 1];
            if me.read(&mut byte).unwrap_or(0) == 1 {
                let _ = (&peer).write(&byte);
            }
        })
        .expect("add_reader");
    }

    // Print once a second, then stop.
    let mut last = lp.stats();
    let mut second = 0;
    let report = move |lp: &Loop| {
        second += 1;
        let now = lp.stats();
        print_delta(second, &last, &now);
        last = now;
        second < seconds
    };
    fn every_second(lp: &Loop, mut report: impl FnMut(&Loop) -> bool + 'static) {
        lp.call_later(Duration::from_secs(1), move |lp| {
            if report(lp) {
                every_second(lp, report);
            } else {
                lp.stop();
            }
        });
    }
    every_second(&lp, report);
    println!(
        "{:>3} {:>10} {:>12} {:>8} {:>10} {:>8} {:>9} {:>9} {:>6}",
        "s", "iterations", "callbacks", "timers", "remote", "wakeups", "blocked", "busy", "hiwat"
    );
    lp.run_forever().expect("run");
    done.store(true, Ordering::Relaxed);
    lp.close().expect("close");
    for w in workers {
        w.join().unwrap();
    }
    let total = lp.stats();
    if let Some((took, at)) = total.longest_callback {
        println!("longest callback: {took:?}, scheduled at {at}");
    }
}

fn print_delta(second: u64, a: &Stats, b: &Stats) {
    println!(
        "{:>3} {:>10} {:>12} {:>8} {:>10} {:>8} {:>8.1}% {:>8.1}% {:>6}",
        second,
        b.iterations - a.iterations,
        b.callbacks_run - a.callbacks_run,
        b.timers_fired - a.timers_fired,
        b.remote_calls - a.remote_calls,
        b.wakeups - a.wakeups,
        100.0 * (b.time_blocked - a.time_blocked).as_secs_f64(),
        100.0 * (b.time_busy - a.time_busy).as_secs_f64(),
        b.ready_high_water,
    );
}
