//! `Loop::run_in_executor`: blocking work on the loop's thread pool, results back on
//! the loop as a `Task`; the pool's size limit and its shutdown by `close()`.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use evloop::{Loop, TaskError};
use util::Watchdog;

const GENEROUS: Duration = Duration::from_secs(10);

#[test]
fn returns_the_value_computed_on_another_thread() {
    let lp = Loop::new().unwrap();
    let loop_thread = thread::current().id();
    let task = lp.run_in_executor(|| ((1..=100u64).sum::<u64>(), thread::current().id()));
    let dog = Watchdog::new(&lp, GENEROUS);
    let (sum, ran_on) = lp.run_until_complete(task).unwrap().unwrap();
    assert!(!dog.fired());
    assert_eq!(sum, 5050);
    assert_ne!(ran_on, loop_thread, "the job runs off the loop thread");
}

#[test]
fn awaited_from_a_task() {
    let lp = Loop::new().unwrap();
    let out = lp
        .run_until_complete(async {
            let lp = Loop::current().unwrap();
            let a = lp.run_in_executor(|| 20);
            let b = lp.run_in_executor(|| 22);
            a.await.unwrap() + b.await.unwrap()
        })
        .unwrap();
    assert_eq!(out, 42);
}

#[test]
fn panicking_job_gives_panicked_and_the_pool_survives() {
    let lp = Loop::builder().executor_threads(1).build().unwrap();
    let dog = Watchdog::new(&lp, GENEROUS);
    let r = lp
        .run_until_complete(lp.run_in_executor(|| -> u32 { panic!("job failed: {}", 3) }))
        .unwrap();
    match r {
        Err(e @ TaskError::Panicked(_)) => assert_eq!(e.panic_message(), Some("job failed: 3")),
        other => panic!("expected Panicked, got {other:?}"),
    }
    // The single worker is still serving.
    let r = lp.run_until_complete(lp.run_in_executor(|| 7)).unwrap();
    assert!(!dog.fired());
    assert_eq!(r.unwrap(), 7);
}

#[test]
fn many_jobs_complete() {
    let lp = Loop::new().unwrap();
    let tasks: Vec<_> = (0..200u64)
        .map(|i| lp.run_in_executor(move || i * 2))
        .collect();
    let dog = Watchdog::new(&lp, GENEROUS);
    let results = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
        .unwrap();
    assert!(!dog.fired());
    assert_eq!(results, (0..200u64).map(|i| i * 2).collect::<Vec<_>>());
}

#[test]
fn executor_threads_caps_concurrency() {
    let lp = Loop::builder().executor_threads(2).build().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (running, max_seen, threads) = (running.clone(), max_seen.clone(), threads.clone());
            lp.run_in_executor(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max_seen.fetch_max(now, Ordering::SeqCst);
                threads.lock().unwrap().insert(thread::current().id());
                thread::sleep(Duration::from_millis(10));
                running.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    let dog = Watchdog::new(&lp, GENEROUS);
    lp.run_until_complete(async move {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .unwrap();
    assert!(!dog.fired());
    let max = max_seen.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max), "at most 2 jobs at once, saw {max}");
    let n = threads.lock().unwrap().len();
    assert!((1..=2).contains(&n), "at most 2 threads, saw {n}");
}

/// `close()` shuts the pool down: jobs already submitted finish and the threads are
/// joined before `close` returns.
#[test]
fn close_joins_the_pool() {
    let lp = Loop::builder().executor_threads(2).build().unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    let exited = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let (finished, exited) = (finished.clone(), exited.clone());
        drop(lp.run_in_executor(move || {
            // Counts when the worker thread itself goes away.
            struct OnThreadExit(Arc<AtomicUsize>);
            impl Drop for OnThreadExit {
                fn drop(&mut self) {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            thread_local! {
                static EXIT: std::cell::RefCell<Option<OnThreadExit>> =
                    const { std::cell::RefCell::new(None) };
            }
            EXIT.with(|e| {
                e.borrow_mut().get_or_insert_with(|| OnThreadExit(exited));
            });
            thread::sleep(Duration::from_millis(30));
            finished.fetch_add(1, Ordering::SeqCst);
        }));
    }
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.close().unwrap();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        3,
        "jobs already submitted finish before close returns"
    );
    let exited = exited.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&exited),
        "every worker thread has exited when close returns: {exited} exited"
    );
}

/// Closing a loop whose executor was never used is fine.
#[test]
fn close_without_executor_use() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    assert!(lp.is_closed());
}

/// Cancelling the task does not interrupt the job (a thread cannot be stopped); the
/// task reports `Cancelled` and the job's result is dropped.
#[test]
fn cancelling_the_task_lets_the_job_finish() {
    let lp = Loop::new().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicBool::new(false));
    let (rel, r) = (release.clone(), ran.clone());
    let task = lp.run_in_executor(move || {
        while !rel.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
        r.store(true, Ordering::SeqCst);
        5
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(task.cancel());
    let dog = Watchdog::new(&lp, GENEROUS);
    let out = lp.run_until_complete(task).unwrap();
    assert!(!dog.fired());
    assert!(matches!(out, Err(TaskError::Cancelled)), "got {out:?}");
    release.store(true, Ordering::SeqCst);
    lp.close().unwrap(); // joins the worker
    assert!(ran.load(Ordering::SeqCst));
}

#[test]
fn no_loop_is_current_in_a_job() {
    let lp = Loop::new().unwrap();
    let r = lp
        .run_until_complete(lp.run_in_executor(|| Loop::current().is_none()))
        .unwrap();
    assert!(r.unwrap());
}

/// Two jobs that need each other (a rendezvous) both run when the pool allows two
/// threads, even if one worker is idle when they are submitted: as in asyncio's
/// `ThreadPoolExecutor`, each submission claims an idle worker, and a second job with
/// no idle worker left starts a thread.
#[test]
fn an_idle_worker_is_claimed_by_one_job_only() {
    let lp = Loop::builder().executor_threads(2).build().unwrap();
    let dog = Watchdog::new(&lp, GENEROUS * 3);
    // Warm up: one worker exists, finishes its job and goes idle.
    lp.run_until_complete(lp.run_in_executor(|| ()))
        .unwrap()
        .unwrap();
    thread::sleep(Duration::from_millis(50));

    let arrived = Arc::new(AtomicUsize::new(0));
    let rendezvous = |arrived: Arc<AtomicUsize>| {
        move || {
            arrived.fetch_add(1, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while arrived.load(Ordering::SeqCst) < 2 {
                if std::time::Instant::now() > deadline {
                    return false; // the other job never ran alongside this one
                }
                thread::sleep(Duration::from_millis(1));
            }
            true
        }
    };
    let a = lp.run_in_executor(rendezvous(arrived.clone()));
    let b = lp.run_in_executor(rendezvous(arrived.clone()));
    let (ra, rb) = lp
        .run_until_complete(async move { (a.await.unwrap(), b.await.unwrap()) })
        .unwrap();
    assert!(!dog.fired());
    assert!(
        ra && rb,
        "the two jobs never ran at the same time although the pool allows 2 threads \
         (a: {ra}, b: {rb})"
    );
}

/// A job blocked on the loop itself (a `RemoteTask` of this loop) does not make
/// `close()` hang: the close cancels the task before it joins the pool.
#[test]
fn close_does_not_hang_on_a_job_waiting_for_the_loop() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let started = Arc::new(AtomicBool::new(false));
    let waited = Arc::new(Mutex::new(None::<String>));
    let (s, w) = (started.clone(), waited.clone());
    drop(lp.run_in_executor(move || {
        let mut task = remote
            .spawn(async move {
                s.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await
            })
            .unwrap();
        *w.lock().unwrap() = Some(format!("{:?}", task.wait_timeout(GENEROUS)));
    }));
    let dog = Watchdog::new(&lp, GENEROUS);
    while !started.load(Ordering::SeqCst) && !dog.fired() {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert!(
        started.load(Ordering::SeqCst),
        "the remote task never started"
    );
    lp.close().unwrap(); // joins the pool: the job has finished when it returns
    assert_eq!(
        waited.lock().unwrap().as_deref(),
        Some("Some(Err(Cancelled))"),
        "the job's RemoteTask ends as cancelled when the loop closes"
    );
}
