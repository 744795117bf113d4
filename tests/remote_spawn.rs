//! `Remote::spawn` (asyncio's `run_coroutine_threadsafe`): tasks started from other
//! threads, `RemoteTask::wait`/`wait_timeout`/`cancel`, awaiting a `RemoteTask` on
//! another loop, and what a closed loop does to them.

#[path = "util/futures.rs"]
mod futures_util;
mod util;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use evloop::{Error, Loop, Remote, TaskError};
use futures_util::{Gate, Reports, run_briefly};
use util::{Drops, Watchdog};

const GENEROUS: Duration = Duration::from_secs(10);

/// Runs `lp` on this thread until `worker` (given the loop's `Remote`) returns,
/// then stops it; a watchdog fails the test instead of hanging it.
fn with_loop_running<T: Send + 'static>(
    lp: &Loop,
    worker: impl FnOnce(Remote) -> T + Send + 'static,
) -> T {
    let remote = lp.remote();
    let handle = thread::spawn(move || {
        let stopper = remote.clone();
        // Stop the loop even if the worker panics.
        struct StopOnDrop(Remote);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                self.0.stop();
            }
        }
        let _stop = StopOnDrop(stopper);
        worker(remote)
    });
    let dog = Watchdog::new(lp, GENEROUS * 2);
    lp.run_forever().unwrap();
    let out = handle.join();
    assert!(!dog.fired(), "the worker did not finish in time");
    match out {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[test]
fn spawn_from_another_thread_and_wait() {
    let lp = Loop::new().unwrap();
    let loop_thread = thread::current().id();
    let (answer, ran_on) = with_loop_running(&lp, |remote| {
        let task = remote
            .spawn(async { (6 * 7, thread::current().id()) })
            .unwrap();
        task.wait().unwrap()
    });
    assert_eq!(answer, 42);
    assert_eq!(ran_on, loop_thread, "the future runs on the loop's thread");
}

#[test]
fn many_spawns_from_two_threads() {
    let lp = Loop::new().unwrap();
    let total = with_loop_running(&lp, |remote| {
        let threads: Vec<_> = (0..2u64)
            .map(|k| {
                let remote = remote.clone();
                thread::spawn(move || {
                    let tasks: Vec<_> = (0..100u64)
                        .map(|i| remote.spawn(async move { k * 1000 + i }).unwrap())
                        .collect();
                    tasks.into_iter().map(|t| t.wait().unwrap()).sum::<u64>()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum::<u64>()
    });
    let expected: u64 = (0..100).sum::<u64>() * 2 + 100 * 1000;
    assert_eq!(total, expected);
}

#[test]
fn wait_timeout_is_none_before_done_and_some_after() {
    let lp = Loop::new().unwrap();
    let gate = Gate::new();
    let (early, late, done_before, done_after) = with_loop_running(&lp, move |remote| {
        let g = gate.clone();
        let mut task = remote
            .spawn(async move {
                g.wait().await;
                5
            })
            .unwrap();
        let early = task.wait_timeout(Duration::from_millis(20)).map(|r| r.ok());
        let done_before = task.is_done();
        gate.open();
        let late = task.wait_timeout(GENEROUS).map(|r| r.ok());
        let done_after = task.is_done();
        (early, late, done_before, done_after)
    });
    assert_eq!(early, None, "not done before the gate opens");
    assert!(!done_before);
    assert_eq!(late, Some(Some(5)));
    assert!(done_after);
}

/// A `RemoteTask` is a `Future`: a task on another loop, on another thread, awaits it.
#[test]
fn remote_task_awaited_on_another_loop() {
    let lp = Loop::new().unwrap();
    let out = with_loop_running(&lp, |remote| {
        let other = Loop::new().unwrap();
        let dog = Watchdog::new(&other, GENEROUS);
        let r = other.run_until_complete(async move {
            let task = remote.spawn(async { "from the main loop" }).unwrap();
            // Also from a task of this loop.
            let r2 = remote.clone();
            let inner = evloop::spawn(async move { r2.spawn(async { 2 }).unwrap().await });
            (task.await, inner.await)
        });
        assert!(!dog.fired());
        let (a, b) = r.unwrap();
        (a.unwrap(), b.unwrap().unwrap())
    });
    assert_eq!(out, ("from the main loop", 2));
}

/// Awaited on its own loop (from the loop's thread): `.await` works there.
#[test]
fn remote_task_awaited_on_its_own_loop() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let task = remote.spawn(async { 11 }).unwrap();
    assert_eq!(lp.run_until_complete(task).unwrap().unwrap(), 11);
}

#[test]
fn panicking_remote_task_reports_panicked() {
    let lp = Loop::new().unwrap();
    let r = with_loop_running(&lp, |remote| {
        let task = remote
            .spawn(async {
                panic!("remote boom");
            })
            .unwrap();
        task.wait()
            .map_err(|e| e.panic_message().map(str::to_owned))
    });
    assert_eq!(r, Err(Some("remote boom".to_owned())));
}

/// A panic in `spawn_with`'s `make` (which builds the future on the loop) is the
/// task's panic, handed to `wait`: not a cancellation, and not lost.
#[test]
fn panicking_make_reports_panicked() {
    let lp = Loop::new().unwrap();
    let reports = Reports::install(&lp);
    let r = with_loop_running(&lp, |remote| {
        let task = remote
            .spawn_with(|| -> std::future::Ready<u32> { panic!("make boom") })
            .unwrap();
        task.wait()
            .map_err(|e| e.panic_message().map(str::to_owned))
    });
    assert_eq!(r, Err(Some("make boom".to_owned())));
    assert!(
        reports.is_empty(),
        "the waiter got the panic: nothing to report, got {:?}",
        reports.get()
    );
}

/// A future that completes but panics while being dropped fails its remote task.
#[test]
fn panic_dropping_the_finished_future_reports_panicked() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop boom");
        }
    }
    let lp = Loop::new().unwrap();
    let r = with_loop_running(&lp, |remote| {
        let task = remote
            .spawn(async {
                let _bomb = PanicOnDrop;
                std::future::ready(()).await;
                7
            })
            .unwrap();
        task.wait()
            .map_err(|e| e.panic_message().map(str::to_owned))
    });
    assert_eq!(r, Err(Some("drop boom".to_owned())));
}

/// Awaited on another loop, a remote task whose `make` panics resolves to
/// `Panicked` there too.
#[test]
fn panicking_make_awaited_on_another_loop() {
    let lp = Loop::new().unwrap();
    let r = with_loop_running(&lp, |remote| {
        let other = Loop::new().unwrap();
        let task = remote
            .spawn_with(|| -> std::future::Ready<u32> { panic!("make boom") })
            .unwrap();
        other
            .run_until_complete(task)
            .unwrap()
            .map_err(|e| e.panic_message().map(str::to_owned))
    });
    assert_eq!(r, Err(Some("make boom".to_owned())));
}

/// Cancelled once it is running on the loop (suspended): `wait` sees `Cancelled` and
/// the future is dropped.
#[test]
fn cancel_a_running_remote_task() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let token = drops.token();
    let gate = Gate::new();
    let (cancelled, r) = with_loop_running(&lp, move |remote| {
        let g = gate.clone();
        let task = remote
            .spawn(async move {
                token.hold();
                g.wait().await;
                1
            })
            .unwrap();
        gate.wait_polled(GENEROUS);
        let cancelled = task.cancel();
        let mut task = task;
        (cancelled, task.wait_timeout(GENEROUS))
    });
    assert!(cancelled);
    match r {
        Some(Err(TaskError::Cancelled)) => {}
        other => panic!("expected Some(Err(Cancelled)), got {other:?}"),
    }
    assert_eq!(drops.dropped(), 1);
}

/// Cancelled before the loop even received it: never polled.
#[test]
fn cancel_before_the_loop_runs_it() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let gate = Gate::new();
    let drops = Drops::new();
    let token = drops.token();
    let g = gate.clone();
    let (tx, rx) = mpsc::channel();
    // Spawned and cancelled from another thread while the loop is not running.
    thread::spawn(move || {
        let task = remote
            .spawn(async move {
                token.hold();
                g.wait().await;
            })
            .unwrap();
        assert!(task.cancel());
        tx.send(task).unwrap();
    })
    .join()
    .unwrap();
    let task = rx.recv().unwrap();
    let r = lp.run_until_complete(task).unwrap();
    assert!(matches!(r, Err(TaskError::Cancelled)), "got {r:?}");
    assert_eq!(gate.polls(), 0, "never polled");
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn cancel_after_done_is_false() {
    let lp = Loop::new().unwrap();
    let (cancel, done) = with_loop_running(&lp, |remote| {
        let mut task = remote.spawn(async { 3 }).unwrap();
        // Wait for completion without taking the output.
        let mut spins = 0;
        while !task.is_done() {
            thread::sleep(Duration::from_millis(1));
            spins += 1;
            assert!(spins < 10_000, "never finished");
        }
        (task.cancel(), task.wait_timeout(GENEROUS).map(|r| r.ok()))
    });
    assert!(!cancel);
    assert_eq!(done, Some(Some(3)));
}

/// A hook in this test binary's allocator that pauses the loop thread inside the
/// spawn hand-over, so that a race between `RemoteTask::cancel` and the hand-over can
/// be replayed deterministically.
///
/// `arm()` (called on the loop thread) makes that thread's next allocation announce
/// itself (`STATE` 0 -> 1) and wait, at most `PAUSE_LIMIT`, until the test moves
/// `STATE` to 2. Nothing in here allocates.
mod alloc_hook {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    pub static STATE: AtomicU32 = AtomicU32::new(0);
    const PAUSE_LIMIT: Duration = Duration::from_millis(500);

    thread_local! {
        static ARMED: Cell<bool> = const { Cell::new(false) };
    }

    pub fn arm() {
        ARMED.with(|a| a.set(true));
    }

    pub struct Hooked;

    // SAFETY: every call is forwarded unchanged to the system allocator; the hook
    // only waits before forwarding.
    unsafe impl GlobalAlloc for Hooked {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if ARMED.try_with(|a| a.replace(false)).unwrap_or(false) {
                STATE.store(1, Ordering::SeqCst);
                let deadline = Instant::now() + PAUSE_LIMIT;
                while STATE.load(Ordering::SeqCst) == 1 && Instant::now() < deadline {
                    std::thread::yield_now();
                }
            }
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Hooked = Hooked;
}

/// `RemoteTask::cancel` racing with the loop taking the spawn in: a cancel that lands
/// after the loop checked for an early cancel but before it recorded the new task
/// must still cancel the task. The future here can only end by a cancel, so a lost
/// cancel shows as a `wait_timeout` that times out (and, with `wait()`, a hang).
///
/// The allocator hook pauses the loop thread at its first allocation after the
/// marker callback: the first allocation of the hand-over, which creates the task.
#[test]
fn cancel_during_the_spawn_hand_over_is_not_lost() {
    let lp = Loop::new().unwrap();
    let (cancelled, outcome, polls) = with_loop_running(&lp, |remote| {
        use std::sync::atomic::AtomicBool;
        let gate = Gate::new(); // never opened: only a cancel ends the task
        let g = gate.clone();
        // Hold the loop in one callback until both the marker and the spawn are
        // queued, so that they run back to back in one iteration.
        let blocking = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicBool::new(false));
        let (b, s) = (blocking.clone(), sent.clone());
        remote
            .call_soon_threadsafe(move |_| {
                b.store(true, Ordering::SeqCst);
                let deadline = std::time::Instant::now() + GENEROUS;
                while !s.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                    thread::yield_now();
                }
            })
            .unwrap();
        while !blocking.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        remote.call_soon_threadsafe(|_| alloc_hook::arm()).unwrap();
        let mut task = remote.spawn(async move { g.wait().await }).unwrap();
        sent.store(true, Ordering::SeqCst);
        // The loop is now paused inside the hand-over.
        let deadline = std::time::Instant::now() + GENEROUS;
        while alloc_hook::STATE.load(Ordering::SeqCst) != 1 {
            assert!(std::time::Instant::now() < deadline, "the hook never fired");
            thread::yield_now();
        }
        let cancelled = task.cancel();
        alloc_hook::STATE.store(2, Ordering::SeqCst);
        let outcome = format!("{:?}", task.wait_timeout(Duration::from_secs(2)));
        (cancelled, outcome, gate.polls())
    });
    assert!(cancelled, "the task was not done, so cancel() is true");
    assert_eq!(
        outcome, "Some(Err(Cancelled))",
        "cancel() returned true but the task was never cancelled (its future was \
         polled {polls} time(s) and waits for ever)"
    );
}

#[test]
fn spawn_after_close_is_err_closed() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    lp.close().unwrap();
    assert!(matches!(remote.spawn(async { 1 }), Err(Error::Closed)));
    let r = thread::spawn(move || matches!(remote.spawn(async { 1 }), Err(Error::Closed)))
        .join()
        .unwrap();
    assert!(r, "from another thread too");
}

#[test]
fn spawn_after_the_loop_is_dropped_is_err_closed() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    drop(lp);
    assert!(matches!(remote.spawn(async { 1 }), Err(Error::Closed)));
}

/// The loop closes while the task is suspended on it: `wait` returns `Cancelled`
/// rather than hanging, and the future is dropped.
#[test]
fn loop_closed_while_the_remote_task_is_running() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let gate = Gate::new();
    let drops = Drops::new();
    let token = drops.token();
    let g = gate.clone();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut task = remote
            .spawn(async move {
                token.hold();
                g.wait().await;
            })
            .unwrap();
        tx.send(()).unwrap();
        task.wait_timeout(GENEROUS)
    });
    rx.recv().unwrap();
    let dog = Watchdog::new(&lp, GENEROUS);
    while gate.polls() == 0 && !dog.fired() {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(gate.polls(), 1, "the task started");
    lp.close().unwrap();
    assert_eq!(drops.dropped(), 1);
    match waiter.join().unwrap() {
        Some(Err(TaskError::Cancelled)) => {}
        other => panic!("expected Some(Err(Cancelled)), got {other:?}"),
    }
}

/// The loop closes before it ever ran the spawn: the queued hand-over is dropped and
/// `wait` returns `Cancelled`.
#[test]
fn loop_closed_before_the_remote_task_started() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let drops = Drops::new();
    let token = drops.token();
    let task = thread::spawn(move || {
        remote
            .spawn(async move {
                token.hold();
            })
            .unwrap()
    })
    .join()
    .unwrap();
    lp.close().unwrap();
    assert_eq!(drops.dropped(), 1);
    let waited = thread::spawn(move || {
        let mut task = task;
        task.wait_timeout(GENEROUS)
    })
    .join()
    .unwrap();
    assert!(
        matches!(waited, Some(Err(TaskError::Cancelled))),
        "got {waited:?}"
    );
}

/// Dropping the loop (without `close`) while a remote task is pending also completes
/// it as cancelled.
#[test]
fn loop_dropped_while_the_remote_task_is_running() {
    let gate = Gate::new();
    let g = gate.clone();
    let task = {
        let lp = Loop::new().unwrap();
        let task = lp.remote().spawn(async move { g.wait().await }).unwrap();
        run_briefly(&lp);
        run_briefly(&lp);
        assert_eq!(gate.polls(), 1);
        task
    };
    let r = thread::spawn(move || {
        let mut task = task;
        task.wait_timeout(GENEROUS)
    })
    .join()
    .unwrap();
    assert!(matches!(r, Some(Err(TaskError::Cancelled))), "got {r:?}");
}

/// `RemoteTask::wait` on the loop's own thread would deadlock: it panics instead.
#[test]
#[should_panic(expected = "deadlock")]
fn wait_on_the_loop_thread_panics() {
    let lp = Loop::new().unwrap();
    let task = lp.remote().spawn(async { 1 }).unwrap();
    let _ = task.wait();
}

/// Once a poll handed the output out, `wait` has nothing to wait for: it panics with
/// a message instead of blocking the thread forever.
#[test]
fn wait_after_a_poll_took_the_output_panics_instead_of_hanging() {
    let lp = Loop::new().unwrap();
    let out = with_loop_running(&lp, |remote| {
        let mut task = remote.spawn(async { 5 }).unwrap();
        // Poll by hand (as an abandoned `.await` would) until the output comes out.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let started = std::time::Instant::now();
        let first = loop {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut task).poll(&mut cx) {
                break r.unwrap();
            }
            assert!(started.elapsed() < GENEROUS, "the task never finished");
            thread::sleep(Duration::from_millis(1));
        };
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.wait()));
        (first, waited.map_err(|p| panic_text(&*p)))
    });
    assert_eq!(out.0, 5);
    let msg = out.1.expect_err("wait must panic, not return");
    assert!(msg.contains("handed out once"), "got {msg:?}");
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// `Send + Sync`, as the contract says.
#[test]
fn remote_task_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<evloop::RemoteTask<u32>>();
    assert_send_sync::<Remote>();
}
