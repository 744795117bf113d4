//! A callback that re-schedules itself forever (a `call_soon` chain) must not starve
//! I/O, timers or threadsafe calls. Counted in iterations, not in time.

mod util;

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::Loop;
use util::{send, socketpair};

/// Bound on how many iterations of a busy loop may pass before ready I/O is served:
/// the docs promise that a ready fd waits at most 32 iterations.
const MAX_ITERATIONS: u64 = 32;

/// Called by each link of the chain with the iteration count.
type Hook = Rc<dyn Fn(&Loop, u64)>;

/// A chain link: counts an iteration, runs `hook` with the count, and re-schedules
/// itself unless the loop was asked to stop; gives up after `limit` iterations or ten
/// seconds so that a starving loop fails the test instead of hanging.
fn chain(lp: &Loop, n: Rc<Cell<u64>>, limit: u64, hook: Hook) {
    let start = Instant::now();
    link(lp, n, limit, hook, start);
}

fn link(lp: &Loop, n: Rc<Cell<u64>>, limit: u64, hook: Hook, start: Instant) {
    lp.call_soon(move |lp| {
        n.set(n.get() + 1);
        hook(lp, n.get());
        if n.get() >= limit || start.elapsed() > Duration::from_secs(10) {
            lp.stop();
            return;
        }
        link(lp, n, limit, hook, start);
    });
}

#[test]
fn a_readable_socket_is_served_within_a_bounded_number_of_iterations() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let iterations = Rc::new(Cell::new(0u64));
    let written_at = Rc::new(Cell::new(None));
    let served_at = Rc::new(Cell::new(None));

    let (it, sv) = (iterations.clone(), served_at.clone());
    let fd = b.as_raw_fd();
    lp.add_reader(fd, move |lp| {
        sv.set(Some(it.get()));
        util::recv(&b, 64).unwrap();
        lp.remove_reader(fd);
        lp.stop();
    })
    .unwrap();

    let w = written_at.clone();
    let hook: Hook = Rc::new(move |_, n| {
        if n == 10 {
            send(&a, b"x");
            w.set(Some(n));
        }
    });
    chain(&lp, iterations.clone(), 100_000, hook);
    lp.run_forever().unwrap();

    let written = written_at.get().expect("the chain wrote");
    let served = served_at
        .get()
        .expect("the reader was never called: starved");
    assert!(
        served - written <= MAX_ITERATIONS,
        "served {} iterations after the write",
        served - written
    );
}

#[test]
fn a_reader_with_unread_data_runs_at_least_every_32nd_iteration_of_a_busy_loop() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    send(&a, b"never read"); // level-triggered: ready on every poll
    let iterations = Rc::new(Cell::new(0u64));
    let calls = util::Events::new();
    let (it, c) = (iterations.clone(), calls.clone());
    lp.add_reader(b.as_raw_fd(), move |_| c.push(it.get()))
        .unwrap();
    chain(&lp, iterations.clone(), 10_000, Rc::new(|_, _| {}));
    lp.run_forever().unwrap();
    let total = iterations.get();
    assert_eq!(total, 10_000, "the chain was cut short");
    let calls = calls.get();
    // The chain's link runs first in each iteration, so a reader call records the
    // number of the iteration it ran in.
    assert_eq!(calls.first(), Some(&1), "the first iteration polls");
    let mut last = 0;
    for &at in &calls {
        assert!(
            at - last <= MAX_ITERATIONS,
            "{} iterations between reader calls (at {last} and {at})",
            at - last
        );
        last = at;
    }
    assert!(total - last < MAX_ITERATIONS, "last reader call at {last}");
    drop(b);
}

#[test]
fn a_writable_socket_is_served_within_a_bounded_number_of_iterations() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let iterations = Rc::new(Cell::new(0u64));
    let calls = Rc::new(Cell::new(Vec::new()));
    let (it, c) = (iterations.clone(), calls.clone());
    lp.add_writer(a.as_raw_fd(), move |_| {
        let mut v = c.take();
        v.push(it.get());
        c.set(v);
    })
    .unwrap();
    chain(&lp, iterations.clone(), 1000, Rc::new(|_, _| {}));
    lp.run_forever().unwrap();
    let calls = calls.take();
    assert!(!calls.is_empty(), "the writer was starved");
    let mut last = 0;
    for &at in &calls {
        assert!(at - last <= MAX_ITERATIONS, "writer calls at {calls:?}");
        last = at;
    }
    assert!(
        iterations.get() - last <= MAX_ITERATIONS,
        "writer calls at {calls:?}"
    );
}

#[test]
fn a_due_timer_fires_while_a_chain_runs() {
    let lp = Loop::new().unwrap();
    let iterations = Rc::new(Cell::new(0u64));
    let fired_at = Rc::new(Cell::new(None));
    let (f, it) = (fired_at.clone(), iterations.clone());
    lp.call_later(Duration::from_millis(10), move |lp| {
        f.set(Some(it.get()));
        lp.stop();
    });
    chain(&lp, iterations.clone(), u64::MAX, Rc::new(|_, _| {}));
    lp.run_forever().unwrap();
    assert!(fired_at.get().is_some(), "the timer was starved");
}

#[test]
fn a_timer_due_at_once_fires_within_a_couple_of_iterations() {
    let lp = Loop::new().unwrap();
    let iterations = Rc::new(Cell::new(0u64));
    let fired_at = Rc::new(Cell::new(None));
    let (f, it) = (fired_at.clone(), iterations.clone());
    let hook: Hook = Rc::new(move |lp, n| {
        if n == 5 {
            let (f, it) = (f.clone(), it.clone());
            lp.call_later(Duration::ZERO, move |lp| {
                f.set(Some(it.get()));
                lp.stop();
            });
        }
    });
    chain(&lp, iterations.clone(), 100_000, hook);
    lp.run_forever().unwrap();
    let at = fired_at.get().expect("the timer was starved");
    assert!(at <= 7, "fired at iteration {at}, scheduled at 5");
}

#[test]
fn a_threadsafe_call_is_served_while_a_chain_runs() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let iterations = Rc::new(Cell::new(0u64));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let sender = std::thread::spawn(move || {
        rx.recv().unwrap();
        remote.call_soon_threadsafe(|lp| lp.stop()).unwrap();
    });
    let tx = Cell::new(Some(tx));
    let hook: Hook = Rc::new(move |_, n| {
        if n == 3 {
            tx.take().unwrap().send(()).unwrap();
        }
    });
    chain(&lp, iterations.clone(), u64::MAX, hook);
    let start = Instant::now();
    lp.run_forever().unwrap();
    sender.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the threadsafe call was starved"
    );
}

/// A busy loop that watches no fd skips its periodic polls (they could find only
/// what every iteration checks anyway); a reader added in the middle of the chain is
/// still served within the promised bound, and polls resume with it.
#[test]
fn a_reader_added_to_a_busy_loop_that_watched_no_fd_is_served_within_the_bound() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let b = Rc::new(b);
    let iterations = Rc::new(Cell::new(0u64));
    let added_at = Rc::new(Cell::new(None));
    let served_at = Rc::new(Cell::new(None));
    let polls_before_reader = Rc::new(Cell::new(None));
    let hook: Hook = {
        let (added_at, served_at, polls) = (
            added_at.clone(),
            served_at.clone(),
            polls_before_reader.clone(),
        );
        let it = iterations.clone();
        Rc::new(move |lp, n| {
            // Iteration 1000 + a few, off any 32-iteration boundary.
            if n == 1_005 {
                polls.set(Some(lp.stats().polls));
                send(&a, b"x");
                let (b2, sv, it) = (b.clone(), served_at.clone(), it.clone());
                let fd = b.as_raw_fd();
                lp.add_reader(fd, move |lp| {
                    if sv.get().is_none() {
                        sv.set(Some(it.get()));
                        util::recv(&b2, 64).unwrap();
                        lp.remove_reader(fd);
                        lp.stop();
                    }
                })
                .unwrap();
                added_at.set(Some(n));
            }
        })
    };
    chain(&lp, iterations.clone(), 100_000, hook);
    lp.run_forever().unwrap();
    let polls = polls_before_reader
        .get()
        .expect("the chain reached the reader");
    assert_eq!(polls, 0, "no fd watched: the busy iterations made no poll");
    let (added, served) = (added_at.get().unwrap(), served_at.get().expect("starved"));
    assert!(
        served - added <= MAX_ITERATIONS,
        "served {} iterations after the reader was added",
        served - added
    );
}
