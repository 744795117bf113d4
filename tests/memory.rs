//! Memory that comes back: buffers that grew for a burst (callbacks, timers,
//! threadsafe calls) shrink once it is over, even on a loop left idle; steady traffic
//! keeps its buffers; a closed loop, and a `Remote` that outlives its loop, hold none.
//!
//! Capacities are read through `Loop::debug_buffer_capacities` (hidden, for tests);
//! two tests read the resident memory of a child process instead.

mod util;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Loop, Remote};

/// What a buffer may keep after a burst is over (the loop keeps room for 1,024).
const MODEST: usize = 1024;

fn capacity(lp: &Loop, name: &str) -> usize {
    lookup(&lp.debug_buffer_capacities(), name)
}

fn lookup(caps: &[(&'static str, usize)], name: &str) -> usize {
    caps.iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no buffer named {name} in {caps:?}"))
        .1
}

/// Leaves `lp` idle (nothing scheduled: only its own wake-ups run iterations) in
/// rounds of 300 ms, until `done` holds or 5 s have passed. Returns whether it held.
fn idle_until(lp: &Loop, done: impl Fn(&Loop) -> bool) -> bool {
    let start = Instant::now();
    while !done(lp) {
        if start.elapsed() > Duration::from_secs(5) {
            return false;
        }
        let remote = lp.remote();
        let stopper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            remote.stop();
        });
        lp.run_forever().unwrap();
        stopper.join().unwrap();
    }
    true
}

/// Queues `threads` × `per_thread` threadsafe no-op calls from other threads, each
/// counting itself in `ran`; returns once all are queued.
fn queue_from_threads(remote: &Remote, threads: usize, per_thread: usize) -> Arc<AtomicUsize> {
    let ran = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..threads)
        .map(|_| {
            let (remote, ran) = (remote.clone(), ran.clone());
            thread::spawn(move || {
                for _ in 0..per_thread {
                    let ran = ran.clone();
                    remote
                        .call_soon_threadsafe(move |_| {
                            ran.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    ran
}

#[test]
fn the_threadsafe_queue_gives_a_bursts_buffers_back_on_an_idle_loop() {
    let lp = Loop::new().unwrap();
    let ran = queue_from_threads(&lp.remote(), 2, 50_000);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 100_000);
    let remote_room = capacity(&lp, "remote_shards") + capacity(&lp, "remote_drained");
    assert!(remote_room >= 50_000, "{:?}", lp.debug_buffer_capacities());
    assert!(capacity(&lp, "ready") >= 100_000);

    let back = idle_until(&lp, |lp| {
        [
            "remote_shards",
            "remote_drained",
            "remote_recycled",
            "remote_pool",
            "ready",
        ]
        .iter()
        .all(|n| capacity(lp, n) <= MODEST)
    });
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());

    // The queue still works, and grows again as needed.
    let ran = queue_from_threads(&lp.remote(), 1, 5_000);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 5_000);
}

#[test]
fn the_ready_queue_gives_a_huge_bursts_room_back() {
    let lp = Loop::new().unwrap();
    let ran = util::Counter::new();
    for _ in 0..200_000 {
        let r = ran.clone();
        lp.call_soon(move |_| r.inc());
    }
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), 200_000);
    assert!(capacity(&lp, "ready") >= 200_000);
    assert!(
        idle_until(&lp, |lp| capacity(lp, "ready") <= MODEST),
        "kept {:?}",
        lp.debug_buffer_capacities()
    );
}

#[test]
fn the_timer_store_shrinks_once_its_timers_are_cancelled_or_fired() {
    let lp = Loop::new().unwrap();
    let fired = util::Counter::new();
    let mut handles = Vec::new();
    for i in 0..100_000u32 {
        let f = fired.clone();
        let delay = if i % 2 == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        };
        handles.push(lp.call_later(delay, move |_| f.inc()));
    }
    for h in handles.iter().skip(1).step_by(2) {
        h.cancel();
    }
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(fired.get(), 50_000);
    assert!(capacity(&lp, "timer_slots") >= 100_000);
    // The 50,000 that fired left the heap part's room behind; the run's stale entries
    // were dropped from its front as they were found, segment by segment.
    assert!(capacity(&lp, "timer_heap") >= 50_000);
    drop(handles);
    let back = idle_until(&lp, |lp| {
        capacity(lp, "timer_slots") <= 2 * MODEST && capacity(lp, "timer_heap") <= 2 * MODEST
    });
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());
}

/// Handles name timers by slab key, so a live timer with a high key keeps the slab
/// from shrinking below it; the heap still shrinks, and the idle loop does not keep
/// waking up for a slab it cannot shrink. Once that timer goes, the slab shrinks too.
#[test]
fn a_live_timer_pins_the_slab_below_its_key_without_waking_an_idle_loop() {
    let lp = Loop::new().unwrap();
    let mut handles: Vec<_> = (0..100_000)
        .map(|_| lp.call_later(Duration::from_secs(3600), |_| {}))
        .collect();
    let survivor = handles.pop().unwrap(); // the highest key
    for h in &handles {
        h.cancel();
    }
    drop(handles);
    let back = idle_until(&lp, |lp| capacity(lp, "timer_heap") <= 2 * MODEST);
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());
    assert!(capacity(&lp, "timer_slots") >= 100_000);

    let polls = lp.stats().polls;
    let remote = lp.remote();
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_secs(1));
        remote.stop();
    });
    lp.run_forever().unwrap();
    stopper.join().unwrap();
    let woke = lp.stats().polls - polls;
    assert!(woke <= 4, "an idle loop polled {woke} times in 1 s");

    survivor.cancel();
    let back = idle_until(&lp, |lp| capacity(lp, "timer_slots") <= 2 * MODEST);
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());
}

/// Hysteresis: traffic that needs the same room on every iteration never shrinks
/// (nor regrows) its buffers, however many windows pass.
#[test]
fn steady_traffic_keeps_its_buffers() {
    let lp = Loop::new().unwrap();
    let seen = util::Events::new();
    fn round(lp: &Loop, left: u32, seen: util::Events<Vec<(&'static str, usize)>>) {
        for _ in 0..3_000 {
            lp.call_soon(|_| {});
            lp.call_later(Duration::ZERO, |_| {});
        }
        seen.push(lp.debug_buffer_capacities());
        thread::sleep(Duration::from_millis(5)); // 80 rounds span several windows
        if left == 0 {
            lp.stop();
        } else {
            lp.call_soon(move |lp| round(lp, left - 1, seen));
        }
    }
    let s = seen.clone();
    lp.call_soon(move |lp| round(lp, 80, s));
    lp.run_forever().unwrap();
    let seen = seen.get();
    let settled = &seen[5..];
    for name in ["ready", "timer_slots", "timer_heap"] {
        let first = lookup(&settled[0], name);
        assert!(first >= 3_000, "{name}: {first}");
        for caps in settled {
            assert_eq!(lookup(caps, name), first, "{name} was reallocated");
        }
    }
}

#[test]
fn close_releases_every_buffer_and_a_remote_that_outlives_the_loop_holds_none() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    // A drained burst (buffers warm), then a second one left queued.
    let _ = queue_from_threads(&remote, 2, 20_000);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let _ = queue_from_threads(&remote, 2, 20_000);
    for _ in 0..20_000 {
        lp.call_soon(|_| {});
        lp.call_later(Duration::from_secs(60), |_| {});
    }
    lp.close().unwrap();
    for (name, cap) in lp.debug_buffer_capacities() {
        assert_eq!(cap, 0, "{name} kept room after close()");
    }
    drop(lp);
    for (name, cap) in remote.debug_buffer_capacities() {
        assert_eq!(cap, 0, "{name} kept room for a dropped loop");
    }
    assert!(remote.call_soon_threadsafe(|_| {}).is_err());
}

// ----- resident memory, in a child process -----

/// Set in the child process that runs one scenario.
const CHILD: &str = "EVLOOP_MEMORY_CHILD";

/// The process's resident memory in bytes, after handing freed memory back to the
/// OS (so that the figure is what the program holds, not what malloc caches).
fn rss() -> usize {
    // SAFETY: malloc_trim only walks glibc's own heap; sysconf has no preconditions.
    let page = unsafe {
        libc::malloc_trim(0);
        libc::sysconf(libc::_SC_PAGESIZE)
    };
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * usize::try_from(page).unwrap()
}

const MB: usize = 1 << 20;

/// Runs the test `name` of this binary alone in a child process with one malloc
/// arena (glibc keeps freed memory in per-thread arenas otherwise), and checks that
/// it passed. Returns false in the child itself, which then runs the scenario.
fn in_child(name: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("MALLOC_ARENA_MAX", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
    true
}

/// The figure: 100+ MB held by a live `Remote` after a burst, even once its
/// loop was closed and dropped.
#[test]
fn rss_a_remote_that_outlives_its_loop_holds_no_memory_for_it() {
    if in_child("rss_a_remote_that_outlives_its_loop_holds_no_memory_for_it") {
        return;
    }
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let _ = queue_from_threads(&remote, 1, 1_000);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let before = rss();
    // Queued while the loop does not run: the shards hold all of it.
    let _ = queue_from_threads(&remote, 4, 100_000);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let _ = queue_from_threads(&remote, 4, 100_000);
    let peak = rss();
    lp.close().unwrap();
    drop(lp);
    let after = rss();
    println!("rss: before {before}, peak {peak}, after {after}");
    assert!(peak > before + 16 * MB, "the burst did not show");
    assert!(
        after < before + 4 * MB,
        "{} MB still held",
        (after - before) / MB
    );
    drop(remote);
}

/// The other figure: hundreds of MB kept by the timer store after its timers
/// were all cancelled, until the loop closed.
#[test]
fn rss_cancelled_timers_give_their_memory_back_while_the_loop_lives() {
    if in_child("rss_cancelled_timers_give_their_memory_back_while_the_loop_lives") {
        return;
    }
    let lp = Loop::new().unwrap();
    lp.call_later(Duration::ZERO, |_| {});
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let before = rss();
    let handles: Vec<_> = (0..500_000)
        .map(|_| lp.call_later(Duration::from_secs(3600), |_| {}))
        .collect();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    for h in &handles {
        h.cancel();
    }
    drop(handles);
    let peak = rss();
    let back = idle_until(&lp, |lp| {
        capacity(lp, "timer_slots") <= 2 * MODEST && capacity(lp, "timer_heap") <= 2 * MODEST
    });
    assert!(back, "kept {:?}", lp.debug_buffer_capacities());
    let after = rss();
    println!("rss: before {before}, peak {peak}, after {after}");
    assert!(peak > before + 16 * MB, "the burst did not show");
    assert!(
        after < before + 4 * MB,
        "{} MB still held",
        (after - before) / MB
    );
}
