//! `add_signal_handler` / `remove_signal_handler`: handlers run on the loop as
//! ordinary callbacks, wake a loop blocked in poll, replace each other, survive their
//! own panics, and give the signal back its old disposition when the last one goes.
//!
//! Signal dispositions are process-wide and cargo runs the tests of a binary on
//! several threads: the tests that run here hold [`serial`] for their whole body, and
//! those that leave a signal's default action in force (or die of it) run in a child
//! process (`util/child.rs`). Ported from CPython's `test_events.py`
//! (`test_add_signal_handler`, `test_signal_handling_while_selecting`) and
//! `test_unix_events.py` (`SelectorEventLoopSignalTests`).

#[path = "util/child.rs"]
mod child;
mod util;

use std::cell::{Cell, RefCell};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use evloop::{ErrorContext, Loop};
use util::{Drops, Events, Watchdog};

const PATIENCE: Duration = Duration::from_secs(10);

/// Held by every test that changes signal state in this process.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn raise(signum: i32) {
    // SAFETY: raise only sends a signal to this thread; every caller has a handler
    // registered for `signum` (or wants the default action, in a child process).
    assert_eq!(unsafe { libc::raise(signum) }, 0);
}

/// Sends `signum` to the whole process (any thread may take it).
fn kill_self(signum: i32) {
    // SAFETY: kill with our own pid; callers have a handler registered for `signum`.
    assert_eq!(unsafe { libc::kill(libc::getpid(), signum) }, 0);
}

/// The handler `sigaction` reports for `signum` now.
fn disposition(signum: i32) -> libc::sighandler_t {
    try_disposition(signum).expect("sigaction")
}

fn try_disposition(signum: i32) -> Option<libc::sighandler_t> {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is valid for writes.
    let rc = unsafe { libc::sigaction(signum, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: zeroed, and filled in by the call when it succeeded.
    (rc == 0).then(|| unsafe { old.assume_init() }.sa_sigaction)
}

/// Runs the loop until `cond` holds, failing after [`PATIENCE`].
#[track_caller]
fn run_until(lp: &Loop, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
}

/// test_events.py `test_add_signal_handler`: a raised SIGUSR1 runs the handler on
/// the loop's thread, after the callback that raised it returned (never inside the
/// OS handler); removing returns true once, then false.
#[test]
fn raised_signal_runs_the_handler_later_on_the_loop_thread() {
    let _g = serial();
    let lp = Loop::new().unwrap();
    let events = Events::new();
    let e = events.clone();
    let loop_thread = thread::current().id();
    lp.add_signal_handler(libc::SIGUSR1, move |_| {
        assert_eq!(thread::current().id(), loop_thread);
        e.push("handled");
    })
    .unwrap();
    let e = events.clone();
    lp.call_soon(move |_| {
        raise(libc::SIGUSR1);
        e.push("raised");
    });
    run_until(&lp, "the handler", || events.len() == 2);
    assert_eq!(events.get(), ["raised", "handled"]);
    assert!(lp.remove_signal_handler(libc::SIGUSR1));
    assert!(!lp.remove_signal_handler(libc::SIGUSR1));
}

/// test_events.py `test_signal_handling_while_selecting`: a signal sent by another
/// thread while the loop blocks in poll (no timer, no other work) wakes it.
#[test]
fn a_signal_wakes_a_loop_blocked_in_poll() {
    let _g = serial();
    let lp = Loop::new().unwrap();
    let sent_at = Arc::new(Mutex::new(None::<Instant>));
    let latency = Rc::new(Cell::new(None));
    let (s, l) = (sent_at.clone(), latency.clone());
    lp.add_signal_handler(libc::SIGUSR2, move |lp| {
        l.set(s.lock().unwrap().map(|t| t.elapsed()));
        lp.stop();
    })
    .unwrap();
    assert_eq!(lp.next_timeout(), None, "the loop will block until I/O");
    let (tx, rx) = mpsc::channel();
    let sender = thread::spawn(move || {
        rx.recv().unwrap();
        thread::sleep(Duration::from_millis(50)); // let the loop block
        *sent_at.lock().unwrap() = Some(Instant::now());
        kill_self(libc::SIGUSR2);
    });
    let remote = lp.remote();
    let guard = thread::spawn(move || {
        thread::sleep(PATIENCE);
        remote.stop(); // only if the signal never woke the loop
    });
    tx.send(()).unwrap();
    lp.run_forever().unwrap();
    sender.join().unwrap();
    let latency = latency.get().expect("the handler ran and stopped the loop");
    println!("signal to handler: {latency:?}");
    assert!(lp.remove_signal_handler(libc::SIGUSR2));
    drop(guard); // detached; its stop() on a dropped loop's Remote is harmless
}

/// A burst of one signal runs the handler at least once (signals do not queue),
/// and at most once per signal.
#[test]
fn a_burst_of_one_signal_runs_the_handler_at_least_once() {
    let _g = serial();
    let lp = Loop::new().unwrap();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    lp.add_signal_handler(libc::SIGUSR1, move |_| c.set(c.get() + 1))
        .unwrap();
    lp.call_soon(|_| {
        for _ in 0..10 {
            raise(libc::SIGUSR1);
        }
    });
    run_until(&lp, "the handler", || count.get() >= 1);
    for _ in 0..5 {
        lp.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert!((1..=10).contains(&count.get()), "ran {} times", count.get());
    assert!(lp.remove_signal_handler(libc::SIGUSR1));
}

/// test_events.py `test_add_signal_handler` (error part) and test_unix_events.py
/// `test_check_signal`: out-of-range numbers, SIGKILL, SIGSTOP, the fault signals
/// and glibc's reserved signals are `Err(InvalidInput)`, register nothing (the
/// closure is dropped at once, the disposition untouched), and removing them is
/// `false`.
#[test]
fn signals_that_cannot_be_served_are_invalid_input() {
    let _g = serial();
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let reserved = libc::SIGRTMIN() - 1; // glibc keeps 32..SIGRTMIN for itself
    for signum in [
        0,
        -1,
        65,
        1000,
        i32::MAX,
        i32::MIN,
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGILL,
        libc::SIGFPE,
        32,
        reserved,
    ] {
        let before = try_disposition(signum);
        let t = drops.token();
        let err = lp
            .add_signal_handler(signum, move |_| t.hold())
            .expect_err("an unservable signal");
        assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidInput,
            "signal {signum}: {err}"
        );
        assert_eq!(drops.alive(), 0, "signal {signum}: the closure was dropped");
        assert_eq!(try_disposition(signum), before, "signal {signum} untouched");
        assert!(!lp.remove_signal_handler(signum));
    }
    // The loop still serves a good signal afterwards.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.add_signal_handler(libc::SIGUSR1, move |_| r.set(true))
        .unwrap();
    raise(libc::SIGUSR1);
    run_until(&lp, "the handler", || ran.get());
    assert!(lp.remove_signal_handler(libc::SIGUSR1));
}

/// test_unix_events.py `test_add_signal_handler`: adding again replaces; the old
/// closure is dropped at once and its handle reports cancelled, and cancelling it
/// later leaves the new handler alone.
#[test]
fn adding_again_replaces_and_cancels_the_old_handle() {
    let _g = serial();
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let events = Events::new();
    let (e, t) = (events.clone(), drops.token());
    let first = lp
        .add_signal_handler(libc::SIGUSR1, move |_| {
            t.hold();
            e.push("first");
        })
        .unwrap();
    assert!(!first.is_cancelled());
    let (e, t) = (events.clone(), drops.token());
    let second = lp
        .add_signal_handler(libc::SIGUSR1, move |_| {
            t.hold();
            e.push("second");
        })
        .unwrap();
    assert!(first.is_cancelled(), "replaced");
    assert_eq!(drops.dropped(), 1, "the first closure was dropped at once");
    first.cancel();
    assert!(
        !second.is_cancelled(),
        "cancelling the replaced handle is a no-op"
    );
    raise(libc::SIGUSR1);
    run_until(&lp, "the handler", || !events.is_empty());
    assert_eq!(events.get(), ["second"]);
    second.cancel();
    assert!(second.is_cancelled());
    assert_eq!(drops.dropped(), 2, "cancel dropped the second closure");
    assert!(
        !lp.remove_signal_handler(libc::SIGUSR1),
        "cancel removed it"
    );
}

/// Two loops on two threads register one signal: one signal runs both handlers.
#[test]
fn two_loops_registering_one_signal_both_run_their_handlers() {
    let _g = serial();
    let ready = Arc::new(Barrier::new(3));
    let handled = Arc::new(Barrier::new(3));
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (ready, handled) = (ready.clone(), handled.clone());
            thread::spawn(move || {
                let lp = Loop::new().unwrap();
                let ran = Rc::new(Cell::new(false));
                let r = ran.clone();
                lp.add_signal_handler(libc::SIGUSR2, move |lp| {
                    r.set(true);
                    lp.stop();
                })
                .unwrap();
                let watchdog = Watchdog::new(&lp, PATIENCE);
                ready.wait();
                lp.run_forever().unwrap();
                assert!(!watchdog.fired(), "this loop's handler never ran");
                assert!(ran.get());
                // Both have handled it before either removes its handler (the last
                // removal brings back SIGUSR2's default action: terminate).
                handled.wait();
                assert!(lp.remove_signal_handler(libc::SIGUSR2));
            })
        })
        .collect();
    ready.wait();
    kill_self(libc::SIGUSR2);
    handled.wait();
    for t in loops {
        t.join().unwrap();
    }
}

/// A handler's `Handle::cancel` removes it: the closure is dropped at once and
/// `remove_signal_handler` then finds nothing.
#[test]
fn cancelling_the_handle_removes_the_handler() {
    let _g = serial();
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let t = drops.token();
    let h = lp
        .add_signal_handler(libc::SIGHUP, move |_| t.hold())
        .unwrap();
    h.cancel();
    assert!(h.is_cancelled());
    assert_eq!(drops.alive(), 0);
    assert!(!lp.remove_signal_handler(libc::SIGHUP));
    assert_eq!(disposition(libc::SIGHUP), libc::SIG_DFL);
}

/// A handler that panics is reported with where it was added, stays registered,
/// and runs again on the next signal.
#[test]
fn a_panicking_handler_is_reported_and_stays_registered() {
    let _g = serial();
    let lp = Loop::new().unwrap();
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    lp.set_exception_handler(move |_, ctx: &ErrorContext| {
        r.borrow_mut().push((
            ctx.panic_message().map(str::to_owned),
            ctx.location().map(|l| l.line()),
        ));
    });
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let line = line!() + 1;
    let h = lp.add_signal_handler(libc::SIGUSR1, move |_| {
        c.set(c.get() + 1);
        panic!("handler boom");
    });
    h.unwrap();
    for n in 1..=2 {
        raise(libc::SIGUSR1);
        run_until(&lp, "the handler", || calls.get() == n);
    }
    assert_eq!(
        *reports.borrow(),
        vec![(Some("handler boom".to_owned()), Some(line)); 2]
    );
    assert!(lp.remove_signal_handler(libc::SIGUSR1));
}

/// A handler may remove itself, or replace itself, while it runs: no `RefCell`
/// panic, and a removed closure is dropped once it has returned.
#[test]
fn a_handler_may_remove_or_replace_itself() {
    let _g = serial();
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let events = Events::new();
    let (e, t) = (events.clone(), drops.token());
    lp.add_signal_handler(libc::SIGUSR1, move |lp| {
        t.hold();
        e.push("first, replacing itself");
        let e = e.clone();
        lp.add_signal_handler(libc::SIGUSR1, move |lp| {
            e.push("second, removing itself");
            assert!(lp.remove_signal_handler(libc::SIGUSR1));
        })
        .unwrap();
    })
    .unwrap();
    raise(libc::SIGUSR1);
    run_until(&lp, "the first handler", || events.len() == 1);
    assert_eq!(
        drops.alive(),
        0,
        "the replaced closure was dropped after it ran"
    );
    raise(libc::SIGUSR1);
    run_until(&lp, "the second handler", || events.len() == 2);
    assert!(!lp.remove_signal_handler(libc::SIGUSR1));
    assert_eq!(disposition(libc::SIGUSR1), libc::SIG_DFL);
}

/// test_unix_events.py `test_close`: `close()` drops every handler (their handles
/// report cancelled), later adds are errors and removes `false`, and the signals
/// get their default dispositions back.
#[test]
fn close_drops_the_handlers_and_restores_the_dispositions() {
    let _g = serial();
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let handles: Vec<_> = [libc::SIGHUP, libc::SIGCHLD, libc::SIGUSR1]
        .into_iter()
        .map(|s| {
            let t = drops.token();
            lp.add_signal_handler(s, move |_| t.hold()).unwrap()
        })
        .collect();
    assert_ne!(disposition(libc::SIGHUP), libc::SIG_DFL);
    lp.close().unwrap();
    assert_eq!(drops.alive(), 0);
    assert!(handles.iter().all(|h| h.is_cancelled()));
    for s in [libc::SIGHUP, libc::SIGCHLD, libc::SIGUSR1] {
        assert_eq!(disposition(s), libc::SIG_DFL, "signal {s}");
        assert!(!lp.remove_signal_handler(s));
    }
    assert!(lp.add_signal_handler(libc::SIGHUP, |_| {}).is_err());
}

/// A handler's closure whose `Drop` panics while `close()` drops it is reported;
/// the other handlers are still removed.
#[test]
fn close_survives_a_handler_that_panics_when_dropped() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("drop boom");
        }
    }
    let _g = serial();
    let lp = Loop::new().unwrap();
    let reported = Rc::new(Cell::new(0));
    let r = reported.clone();
    lp.set_exception_handler(move |_, _| r.set(r.get() + 1));
    let bomb = Bomb;
    lp.add_signal_handler(libc::SIGHUP, move |_| {
        let _keep = &bomb;
    })
    .unwrap();
    let drops = Drops::new();
    let t = drops.token();
    lp.add_signal_handler(libc::SIGUSR2, move |_| t.hold())
        .unwrap();
    lp.close().unwrap();
    assert_eq!(reported.get(), 1);
    assert_eq!(drops.alive(), 0);
    assert_eq!(disposition(libc::SIGHUP), libc::SIG_DFL);
    assert_eq!(disposition(libc::SIGUSR2), libc::SIG_DFL);
}

// ---- in a child process: the default action must come back and kill it ----

/// Asserts that the child handled SIGINT once, then died of it.
#[track_caller]
fn assert_handled_then_killed(name: &str) {
    let out = child::run_child(name);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("handled SIGINT"),
        "{}",
        child::describe(&out)
    );
    assert!(!stdout.contains("survived"), "{}", child::describe(&out));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGINT),
        "SIGINT terminates the process again: {}",
        child::describe(&out)
    );
}

/// In the child: a loop with a SIGINT handler that the raised signal runs.
fn handle_one_sigint() -> (Loop, evloop::Handle) {
    let lp = Loop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = lp
        .add_signal_handler(libc::SIGINT, move |_| r.set(true))
        .unwrap();
    raise(libc::SIGINT);
    run_until(&lp, "the SIGINT handler", || ran.get());
    println!("handled SIGINT");
    (lp, h)
}

fn die_of_sigint() -> ! {
    raise(libc::SIGINT);
    thread::sleep(Duration::from_millis(100));
    println!("survived");
    std::process::exit(0);
}

/// test_events.py `test_add_signal_handler` (the end: removing restores the
/// default handler): after `remove_signal_handler`, SIGINT terminates again.
#[test]
fn sigint_terminates_again_after_remove_signal_handler() {
    const NAME: &str = "sigint_terminates_again_after_remove_signal_handler";
    if child::is_child(NAME) {
        let (lp, _h) = handle_one_sigint();
        assert!(lp.remove_signal_handler(libc::SIGINT));
        die_of_sigint();
    }
    assert_handled_then_killed(NAME);
}

/// After the handle's `cancel`, SIGINT terminates again.
#[test]
fn sigint_terminates_again_after_cancel() {
    const NAME: &str = "sigint_terminates_again_after_cancel";
    if child::is_child(NAME) {
        let (_lp, h) = handle_one_sigint();
        h.cancel();
        die_of_sigint();
    }
    assert_handled_then_killed(NAME);
}

/// After `close()`, SIGINT terminates again.
#[test]
fn sigint_terminates_again_after_close() {
    const NAME: &str = "sigint_terminates_again_after_close";
    if child::is_child(NAME) {
        let (lp, _h) = handle_one_sigint();
        lp.close().unwrap();
        die_of_sigint();
    }
    assert_handled_then_killed(NAME);
}

/// After the loop is dropped without `close()`, SIGINT terminates again.
#[test]
fn sigint_terminates_again_after_the_loop_is_dropped() {
    const NAME: &str = "sigint_terminates_again_after_the_loop_is_dropped";
    if child::is_child(NAME) {
        let (lp, h) = handle_one_sigint();
        drop(h);
        drop(lp);
        die_of_sigint();
    }
    assert_handled_then_killed(NAME);
}

/// The disposition comes back only when the *last* loop lets go: while another loop
/// still has a handler, SIGINT is handled by it.
#[test]
fn sigint_terminates_only_after_the_last_loop_removes_its_handler() {
    const NAME: &str = "sigint_terminates_only_after_the_last_loop_removes_its_handler";
    if child::is_child(NAME) {
        let other = Loop::new().unwrap();
        let ran = Rc::new(Cell::new(0));
        let r = ran.clone();
        other
            .add_signal_handler(libc::SIGINT, move |_| r.set(r.get() + 1))
            .unwrap();
        let (lp, _h) = handle_one_sigint();
        run_until(&other, "the other loop's handler", || ran.get() == 1);
        assert!(lp.remove_signal_handler(libc::SIGINT));
        raise(libc::SIGINT);
        run_until(&other, "the other loop's handler again", || ran.get() == 2);
        assert!(other.remove_signal_handler(libc::SIGINT));
        die_of_sigint();
    }
    assert_handled_then_killed(NAME);
}

/// Registering again after a restore works (the registry's handler is put back),
/// and the next removal restores again.
#[test]
fn a_signal_can_be_handled_again_after_its_disposition_came_back() {
    const NAME: &str = "a_signal_can_be_handled_again_after_its_disposition_came_back";
    if child::is_child(NAME) {
        for _ in 0..3 {
            let (lp, _h) = handle_one_sigint();
            assert!(lp.remove_signal_handler(libc::SIGINT));
            assert_eq!(disposition(libc::SIGINT), libc::SIG_DFL);
        }
        die_of_sigint();
    }
    assert_handled_then_killed(NAME);
}

static FOREIGN_RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn foreign_handler(_: libc::c_int) {
    FOREIGN_RAN.store(true, Ordering::SeqCst);
}

/// A handler some other code installed with plain `sigaction` before the loop took
/// the signal keeps being called (chained) while the loop handles it, and is the
/// disposition again afterwards; SIG_IGN comes back as SIG_IGN.
#[test]
fn an_earlier_handler_is_chained_and_comes_back() {
    const NAME: &str = "an_earlier_handler_is_chained_and_comes_back";
    if child::is_child(NAME) {
        let handler: extern "C" fn(libc::c_int) = foreign_handler;
        // SAFETY: installs a handler that only stores to an atomic.
        unsafe { libc::signal(libc::SIGUSR1, handler as libc::sighandler_t) };
        // SAFETY: ignoring a signal is always sound.
        unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
        let lp = Loop::new().unwrap();
        let ran = Rc::new(Cell::new(0));
        for s in [libc::SIGUSR1, libc::SIGUSR2] {
            let r = ran.clone();
            lp.add_signal_handler(s, move |_| r.set(r.get() + 1))
                .unwrap();
            raise(s);
        }
        run_until(&lp, "both handlers", || ran.get() == 2);
        assert!(FOREIGN_RAN.swap(false, Ordering::SeqCst), "chained");
        lp.close().unwrap();
        assert_eq!(disposition(libc::SIGUSR1), handler as libc::sighandler_t);
        assert_eq!(disposition(libc::SIGUSR2), libc::SIG_IGN);
        raise(libc::SIGUSR1);
        assert!(FOREIGN_RAN.load(Ordering::SeqCst));
        println!("child done");
        return;
    }
    let out = child::run_child(NAME);
    assert!(out.status.success(), "{}", child::describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("child done"));
}
