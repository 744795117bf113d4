//! `evloop::run` (asyncio's `asyncio.run`) and `#[evloop::main]`, with the relevant
//! cases of CPython's `test_asyncio/test_runners.py` as behaviour.

mod util;

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use evloop::{Error, Loop, Task};
use util::Drops;

/// test_asyncio_run_return
#[test]
fn run_returns_what_main_returns() {
    let out = evloop::run(async {
        evloop::yield_now().await;
        42
    });
    assert_eq!(out.unwrap(), 42);
}

/// test_asyncio_run_raises, test_asyncio_run_closes_gens_after_hanging_tasks_errors:
/// main's panic comes out of `run`, after the leftover tasks were cancelled and the
/// loop closed.
#[test]
fn a_panic_in_main_resumes_in_the_caller_after_the_clean_up() {
    let drops = Drops::new();
    let leftover: Rc<RefCell<Option<Task<()>>>> = Rc::default();
    let (d, l) = (drops.clone(), leftover.clone());
    let panic = catch_unwind(AssertUnwindSafe(|| {
        evloop::run(async move {
            let token = d.token();
            *l.borrow_mut() = Some(evloop::spawn(async move {
                let _token = token;
                std::future::pending::<()>().await;
            }));
            evloop::yield_now().await;
            panic!("spam");
        })
    }))
    .unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"spam"));
    assert_eq!(drops.alive(), 0, "the leftover task's future was dropped");
    let task = leftover.borrow_mut().take().unwrap();
    assert!(task.is_done() && task.is_cancelled());
}

/// test_asyncio_run_from_running_loop
#[test]
fn run_inside_a_running_loop_is_already_running_and_drops_the_future_unpolled() {
    let polled = Rc::new(Cell::new(false));
    let drops = Drops::new();
    let (p, d) = (polled.clone(), drops.clone());
    let out = evloop::run(async move {
        let token = d.token();
        let inner = evloop::run(async move {
            let _token = token;
            p.set(true);
        });
        matches!(inner, Err(Error::AlreadyRunning))
    });
    assert!(out.unwrap(), "inner run: Err(AlreadyRunning)");
    assert!(!polled.get());
    assert_eq!(drops.alive(), 0);

    // From a plain callback of another loop too.
    let lp = Loop::new().unwrap();
    let seen = Rc::new(Cell::new(false));
    let s = seen.clone();
    lp.call_soon(move |lp| {
        s.set(matches!(evloop::run(async {}), Err(Error::AlreadyRunning)));
        lp.stop();
    });
    lp.run_forever().unwrap();
    assert!(seen.get());
}

/// test_asyncio_run_cancels_hanging_tasks
#[test]
fn leftover_tasks_are_cancelled() {
    let leftover: Rc<RefCell<Option<Task<()>>>> = Rc::default();
    let l = leftover.clone();
    let out = evloop::run(async move {
        *l.borrow_mut() = Some(evloop::spawn(evloop::sleep(Duration::from_secs(3600))));
        123
    });
    assert_eq!(out.unwrap(), 123);
    let task = leftover.borrow_mut().take().unwrap();
    assert!(task.is_done());
    assert!(task.is_cancelled());
}

/// test_asyncio_run_reports_hanging_tasks_errors: a leftover task that fails while
/// it is cancelled (in Rust: its future's destructor panics) is reported to the
/// exception handler.
#[test]
fn a_leftover_task_that_panics_while_unwinding_is_reported() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("1 / 0 while cancelled");
        }
    }
    let reports: Rc<RefCell<Vec<String>>> = Rc::default();
    let r = reports.clone();
    let out = evloop::run(async move {
        let lp = Loop::current().unwrap();
        lp.set_exception_handler(move |_, ctx| {
            r.borrow_mut()
                .push(ctx.panic_message().unwrap_or_default().to_string());
        });
        let _detached = evloop::spawn(async {
            let _bomb = PanicOnDrop;
            std::future::pending::<()>().await;
        });
        evloop::yield_now().await;
        123
    });
    assert_eq!(out.unwrap(), 123);
    let reports = reports.borrow();
    assert!(
        reports.iter().any(|m| m.contains("1 / 0 while cancelled")),
        "{reports:?}"
    );
}

/// The leftover tasks unwind while the loop still runs: a destructor may use it
/// (`Loop::current()`, `call_soon`, `spawn`), and what it schedules runs.
#[test]
fn leftover_destructors_run_on_the_still_running_loop() {
    struct CleanUp(Rc<Cell<u32>>);
    impl Drop for CleanUp {
        fn drop(&mut self) {
            let lp = Loop::current().expect("dropped while the loop runs");
            let ran = self.0.clone();
            lp.call_soon(move |_| ran.set(ran.get() + 1));
            let ran = self.0.clone();
            evloop::spawn(async move { ran.set(ran.get() + 10) });
        }
    }
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    evloop::run(async move {
        let _t = evloop::spawn(async move {
            let _c = CleanUp(r);
            evloop::sleep(Duration::from_secs(3600)).await;
        });
        evloop::yield_now().await;
    })
    .unwrap();
    assert_eq!(
        ran.get(),
        11,
        "the callback and the task a destructor scheduled ran"
    );
}

/// A task spawned by a destructor that never finishes is cancelled in turn; `run`
/// returns.
#[test]
fn tasks_spawned_while_unwinding_are_cancelled_in_turn() {
    struct Respawn(Drops);
    impl Drop for Respawn {
        fn drop(&mut self) {
            let token = self.0.token();
            evloop::spawn(async move {
                let _token = token;
                std::future::pending::<()>().await;
            });
        }
    }
    let drops = Drops::new();
    let d = drops.clone();
    evloop::run(async move {
        let _t = evloop::spawn(async move {
            let _r = Respawn(d);
            std::future::pending::<()>().await;
        });
        evloop::yield_now().await;
    })
    .unwrap();
    assert_eq!(drops.made(), 1);
    assert_eq!(drops.alive(), 0);
}

/// asyncio's `shutdown_default_executor`: a job already running when main returns is
/// waited for, and the loop still serves it (here the job calls back into the loop
/// through a Remote and waits for the answer).
#[test]
fn executor_jobs_already_running_are_waited_for_with_the_loop_running() {
    let finished = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let (f, a) = (finished.clone(), answered.clone());
    evloop::run(async move {
        let lp = Loop::current().unwrap();
        let remote = lp.remote();
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        let _job = lp.run_in_executor(move || {
            s.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            let v = remote.spawn(async { 7 }).unwrap().wait().unwrap();
            a.store(v, Ordering::SeqCst);
            f.store(true, Ordering::SeqCst);
        });
        while !started.load(Ordering::SeqCst) {
            evloop::sleep(Duration::from_millis(1)).await;
        }
    })
    .unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "run returned before the job finished"
    );
    assert_eq!(
        answered.load(Ordering::SeqCst),
        7,
        "the loop served the job's call"
    );
}

#[test]
fn each_run_gets_a_fresh_loop_that_is_closed_afterwards() {
    let first = evloop::run(async { Loop::current().unwrap() }).unwrap();
    assert!(first.is_closed());
    assert!(Loop::current().is_none());
    let second = evloop::run(async { Loop::current().unwrap() }).unwrap();
    assert!(second.is_closed());
}

#[test]
fn a_stop_inside_main_is_stopped() {
    let out = evloop::run(async {
        Loop::current().unwrap().stop();
        std::future::pending::<()>().await;
    });
    assert!(matches!(out, Err(Error::Stopped)), "{out:?}");
}

#[evloop::main]
async fn main_like(x: u32) -> u32 {
    evloop::sleep(Duration::from_millis(1)).await;
    let _leftover = evloop::spawn(evloop::sleep(Duration::from_secs(3600)));
    x * 2
}

#[test]
fn evloop_main_wraps_an_async_fn_in_run() {
    assert!(Loop::current().is_none());
    assert_eq!(main_like(21), 42);
    assert!(Loop::current().is_none());
}
