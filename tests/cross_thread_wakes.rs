//! Wakes of a task from other threads are coalesced: however many threads wake one
//! pending task, however often, the remote queue holds one entry for it, so it is
//! stepped once per loop iteration at most, and never more often than woken. And no
//! wake is lost: a wake that arrives after (or while) the task is stepped schedules
//! another step.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use evloop::Loop;
use futures_util::{Polls, WakerSlot, run_briefly};
use util::Watchdog;

const GENEROUS: Duration = Duration::from_secs(60);

/// A task that counts its polls, shows its waker, and finishes once `done` is set.
fn counted_pending(
    polls: &Polls,
    slot: &WakerSlot,
    done: &Arc<AtomicBool>,
) -> impl Future<Output = ()> + 'static {
    let (polls, slot, done) = (polls.clone(), slot.clone(), done.clone());
    poll_fn(move |cx| {
        polls.inc();
        slot.set(cx.waker());
        if done.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// The shape, CI-sized: 4 threads × 100,000 wakes of one pending task.
#[test]
fn wakes_from_many_threads_queue_one_entry_per_task() {
    const THREADS: usize = 4;
    const WAKES: usize = 100_000;
    let lp = Loop::new().unwrap();
    let polls = Polls::new();
    let slot = WakerSlot::new();
    let done = Arc::new(AtomicBool::new(false));
    let task = lp.create_task(counted_pending(&polls, &slot, &done));
    run_briefly(&lp);
    assert_eq!(polls.get(), 1);
    let waker = slot.get().expect("polled once");
    let before = lp.stats();

    let finished = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (waker, finished, start) = (waker.clone(), finished.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for _ in 0..WAKES {
                    waker.wake_by_ref();
                }
                finished.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let deadline = Instant::now() + GENEROUS;
    while finished.load(Ordering::SeqCst) < THREADS && Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    // Whatever wake was still queued runs now.
    for _ in 0..3 {
        run_briefly(&lp);
    }
    let after = lp.stats();
    let steps = polls.get() - 1;
    let entries = after.remote_calls - before.remote_calls;
    let wakes = THREADS * WAKES;
    assert!(steps >= 1, "the wakes stepped the task");
    assert!(
        entries as usize <= steps,
        "one queued entry per step, never duplicates: {entries} entries for {steps} steps"
    );
    assert!(
        after.ready_high_water <= 4,
        "the loop never found more than a handful of entries queued: {}",
        after.ready_high_water
    );
    assert!(
        steps * 2 < wakes,
        "the task is stepped far fewer times than woken: {steps} steps for {wakes} wakes"
    );

    // A wake after all that still steps it.
    done.store(true, Ordering::Release);
    let t = thread::spawn(move || waker.wake());
    let dog = Watchdog::new(&lp, GENEROUS);
    lp.run_until_complete(task).unwrap().unwrap();
    t.join().unwrap();
    assert!(!dog.fired(), "the last wake was lost");
}

/// Ping-pong: each thread hands the task a new round and wakes it, then waits
/// until the task has seen that round. A wake lost (one that came while the task
/// was being polled, just after it read the round, is the tricky case) would leave
/// a thread waiting for ever; it gives up after a generous bound and says so.
#[test]
fn a_wake_during_or_after_a_step_is_never_lost() {
    const THREADS: usize = 2;
    const ROUNDS: usize = 5_000;
    let lp = Loop::new().unwrap();
    let rounds: Arc<Vec<AtomicUsize>> =
        Arc::new((0..THREADS).map(|_| AtomicUsize::new(0)).collect());
    let acks: Arc<Vec<AtomicUsize>> = Arc::new((0..THREADS).map(|_| AtomicUsize::new(0)).collect());
    let slot = WakerSlot::new();
    let (r, a, s) = (rounds.clone(), acks.clone(), slot.clone());
    let task = lp.create_task(poll_fn(move |cx| {
        s.set(cx.waker());
        let mut finished = 0;
        for (round, ack) in r.iter().zip(a.iter()) {
            let seen = round.load(Ordering::Acquire);
            ack.store(seen, Ordering::Release);
            if seen == ROUNDS {
                finished += 1;
            }
        }
        if finished == THREADS {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    run_briefly(&lp);
    let waker = slot.get().expect("polled once");
    let lost = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let (rounds, acks, waker, lost) =
                (rounds.clone(), acks.clone(), waker.clone(), lost.clone());
            let remote = lp.remote();
            thread::spawn(move || {
                for n in 1..=ROUNDS {
                    rounds[i].store(n, Ordering::Release);
                    waker.wake_by_ref();
                    let deadline = Instant::now() + GENEROUS;
                    while acks[i].load(Ordering::Acquire) < n {
                        if Instant::now() > deadline {
                            lost.store(true, Ordering::SeqCst);
                            remote.stop();
                            panic!("thread {i}: the wake of round {n} was lost");
                        }
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let r = lp.run_until_complete(task);
    for t in threads {
        t.join().unwrap();
    }
    assert!(!lost.load(Ordering::SeqCst));
    r.unwrap().unwrap();
}

/// A task whose slot a finished task had: the old task's wakers, still fired from
/// another thread, never suppress the new task's wakes.
#[test]
fn stale_wakers_of_a_finished_task_never_suppress_its_successor() {
    const ROUNDS: usize = 2_000;
    let lp = Loop::new().unwrap();
    // The first task: polled once (its waker kept), then finished.
    let old_slot = WakerSlot::new();
    let old_done = Arc::new(AtomicBool::new(false));
    let old = lp.create_task(counted_pending(&Polls::new(), &old_slot, &old_done));
    run_briefly(&lp);
    let stale = old_slot.get().unwrap();
    old_done.store(true, Ordering::Release);
    stale.wake_by_ref();
    lp.run_until_complete(old).unwrap().unwrap();

    // Its successor takes the same slot (the table refills front to back).
    let round = Arc::new(AtomicUsize::new(0));
    let ack = Arc::new(AtomicUsize::new(0));
    let slot = WakerSlot::new();
    let (r, a, s) = (round.clone(), ack.clone(), slot.clone());
    let task = lp.create_task(poll_fn(move |cx| {
        s.set(cx.waker());
        let seen = r.load(Ordering::Acquire);
        a.store(seen, Ordering::Release);
        if seen == ROUNDS {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    run_briefly(&lp);
    let waker = slot.get().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let (stale, stop) = (stale.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 50_000_000 {
                stale.wake_by_ref();
                n += 1;
            }
        })
    };
    let lost = Arc::new(AtomicBool::new(false));
    let pinger = {
        let (round, ack, waker, lost) = (round.clone(), ack.clone(), waker.clone(), lost.clone());
        let remote = lp.remote();
        thread::spawn(move || {
            for n in 1..=ROUNDS {
                round.store(n, Ordering::Release);
                waker.wake_by_ref();
                let deadline = Instant::now() + GENEROUS;
                while ack.load(Ordering::Acquire) < n {
                    if Instant::now() > deadline {
                        lost.store(true, Ordering::SeqCst);
                        remote.stop();
                        panic!("the wake of round {n} was lost");
                    }
                    thread::yield_now();
                }
            }
        })
    };
    let r = lp.run_until_complete(task);
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
    pinger.join().unwrap();
    assert!(!lost.load(Ordering::SeqCst));
    r.unwrap().unwrap();
}

/// Many tasks, each woken from another thread: every one is stepped (one task's
/// queued wake never hides another's).
#[test]
fn queued_wakes_of_different_tasks_are_independent() {
    const TASKS: usize = 1_000;
    let lp = Loop::new().unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let done = Rc::new(std::cell::Cell::new(0));
    let wakers: Vec<WakerSlot> = (0..TASKS).map(|_| WakerSlot::new()).collect();
    for slot in &wakers {
        let (go, done) = (go.clone(), done.clone());
        let fut = counted_pending(&Polls::new(), slot, &go);
        drop(lp.create_task(async move {
            fut.await;
            done.set(done.get() + 1);
        }));
    }
    run_briefly(&lp);
    let wakers: Vec<Waker> = wakers.iter().map(|s| s.get().unwrap()).collect();
    go.store(true, Ordering::Release);
    let t = thread::spawn(move || {
        for _ in 0..3 {
            for w in &wakers {
                w.wake_by_ref();
            }
        }
    });
    let deadline = Instant::now() + GENEROUS;
    while done.get() < TASKS && Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    t.join().unwrap();
    assert_eq!(done.get(), TASKS, "every task's wake stepped it");
}
