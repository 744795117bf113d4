//! A closure, task or handler whose captured value panics in `Drop`: wherever the loop
//! drops it without running it (`close()`, dropping the loop, `cancel()`, a replaced
//! reader, a refused `add_reader`), the panic goes to the exception handler, the rest
//! of the clean-up still happens, and the process never aborts (a second panic while
//! a collection unwinds would abort it: every test here drops two bombs of a kind).
//!
//! Before the fix, the two-bomb tests killed this test binary (exit 134).

mod util;

use std::cell::RefCell;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use evloop::{Loop, TaskError};

#[path = "util/panics.rs"]
mod panics;
use panics::{record_panics, sorted};
use util::{Drops, dup_to, socketpair};

/// Panics when dropped. `Send`, so threadsafe closures may carry it too.
struct Bomb(&'static str);

impl Bomb {
    fn arm(&self) {}
}

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb: {}", self.0);
    }
}

/// A future that never completes and panics when dropped.
struct PendingBomb(#[allow(dead_code)] Bomb);

impl Future for PendingBomb {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// Set when the worker thread that ran a job exits (a thread-local's destructor): after
/// `close()` the default executor's threads are joined, so they have exited.
struct ExitFlag(Arc<AtomicBool>);

impl Drop for ExitFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

thread_local! {
    static ON_EXIT: RefCell<Option<ExitFlag>> = const { RefCell::new(None) };
}

#[test]
fn close_reports_every_panicking_destructor_and_still_cleans_up() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let drops = Drops::new();

    // The executor has a thread; it must be joined by close() whatever panics.
    let exited = Arc::new(AtomicBool::new(false));
    let e = exited.clone();
    let job = lp.run_in_executor(move || {
        ON_EXIT.with(|f| *f.borrow_mut() = Some(ExitFlag(e)));
    });
    lp.run_until_complete(job).unwrap().unwrap();

    let ran = Rc::new(std::cell::Cell::new(false));
    let (a, _b) = socketpair();
    let (c, _d) = socketpair();
    for i in 0..2 {
        let (b, t) = (Bomb(["soon 1", "soon 2"][i]), drops.token());
        lp.call_soon(move |_| {
            b.arm();
            t.hold();
        });
        let (b, t) = (Bomb(["timer 1", "timer 2"][i]), drops.token());
        lp.call_later(Duration::from_secs(60), move |_| {
            b.arm();
            t.hold();
        });
        let fd = [a.as_raw_fd(), c.as_raw_fd()][i];
        let (b, t) = (Bomb(["reader 1", "reader 2"][i]), drops.token());
        lp.add_reader(fd, move |_| {
            b.arm();
            t.hold();
        })
        .unwrap();
        let (b, t) = (Bomb(["writer 1", "writer 2"][i]), drops.token());
        lp.add_writer(fd, move |_| {
            b.arm();
            t.hold();
        })
        .unwrap();
        let (b, t) = (
            Bomb(["local threadsafe 1", "local threadsafe 2"][i]),
            drops.token(),
        );
        lp.remote()
            .call_soon_threadsafe(move |_| {
                b.arm();
                t.hold();
            })
            .unwrap();
        lp.create_task(PendingBomb(Bomb(["task 1", "task 2"][i])));
    }
    // Threadsafe calls from another thread, never drained.
    let remote = lp.remote();
    let tokens = (drops.token(), drops.token());
    std::thread::spawn(move || {
        let (b, t) = (Bomb("remote 1"), tokens.0);
        remote
            .call_soon_threadsafe(move |_| {
                b.arm();
                t.hold();
            })
            .unwrap();
        let (b, t) = (Bomb("remote 2"), tokens.1);
        remote
            .call_soon_threadsafe(move |_| {
                b.arm();
                t.hold();
            })
            .unwrap();
    })
    .join()
    .unwrap();
    // A task cancelled but not yet stepped (its future is dropped by close()).
    let t = lp.create_task(PendingBomb(Bomb("cancelled task")));
    t.cancel();
    drop(t);
    // One more callback without a bomb, scheduled last: it is dropped too.
    let (t, h) = (drops.token(), ran.clone());
    lp.call_soon(move |_| {
        t.hold();
        h.set(true);
    });

    lp.close().expect("close() itself does not panic");

    assert_eq!(drops.alive(), 0, "every closure was dropped");
    assert!(!ran.get(), "nothing ran");
    let mut want: Vec<String> = [
        "soon",
        "timer",
        "reader",
        "writer",
        "local threadsafe",
        "task",
        "remote",
    ]
    .iter()
    .flat_map(|k| [format!("bomb: {k} 1"), format!("bomb: {k} 2")])
    .chain(["bomb: cancelled task".to_owned()])
    .collect();
    want.sort();
    assert_eq!(sorted(&seen), want, "each panic was reported once");
    assert!(
        exited.load(Ordering::SeqCst),
        "the executor's thread was joined"
    );
    assert!(lp.remote().is_closed());
}

#[test]
fn dropping_a_loop_without_close_drops_everything_and_never_aborts() {
    let drops = Drops::new();
    let (a, _b) = socketpair();
    let lp = Loop::new().unwrap();
    lp.set_exception_handler(|_, _| {});
    for i in 0..2 {
        let (b, t) = (Bomb("soon"), drops.token());
        lp.call_soon(move |_| {
            b.arm();
            t.hold();
        });
        let (b, t) = (Bomb("timer"), drops.token());
        lp.call_later(Duration::from_secs(60), move |_| {
            b.arm();
            t.hold();
        });
        let (b, t) = (Bomb("threadsafe"), drops.token());
        lp.remote()
            .call_soon_threadsafe(move |_| {
                b.arm();
                t.hold();
            })
            .unwrap();
        lp.create_task(PendingBomb(Bomb("task")));
        let (b, t) = (Bomb("io"), drops.token());
        if i == 0 {
            lp.add_reader(a.as_raw_fd(), move |_| {
                b.arm();
                t.hold();
            })
            .unwrap();
        } else {
            lp.add_writer(a.as_raw_fd(), move |_| {
                b.arm();
                t.hold();
            })
            .unwrap();
        }
    }
    let remote = lp.remote();
    drop(lp);
    assert_eq!(drops.alive(), 0, "every closure was dropped");
    assert!(remote.is_closed());
}

#[test]
fn a_task_future_panicking_in_drop_at_close_reaches_the_handler() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let task = lp.create_task(PendingBomb(Bomb("future")));
    lp.run_once(Some(Duration::ZERO)).unwrap(); // polled once: pending
    lp.close().unwrap();
    assert_eq!(sorted(&seen), ["bomb: future"]);
    assert!(task.is_cancelled());
}

#[test]
fn task_done_callbacks_panicking_in_drop_at_close_are_reported() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let task = lp.create_task(PendingBomb(Bomb("future")));
    for name in ["done 1", "done 2"] {
        let b = Bomb(name);
        task.add_done_callback(move |_, _: &Result<(), TaskError>| b.arm());
    }
    lp.close().unwrap();
    assert_eq!(
        sorted(&seen),
        ["bomb: done 1", "bomb: done 2", "bomb: future"]
    );
}

#[test]
fn cancel_reports_a_panicking_destructor_and_returns() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let (a, _b) = socketpair();
    let b = Bomb("soon");
    let soon = lp.call_soon(move |_| b.arm());
    let b = Bomb("timer");
    let timer = lp.call_later(Duration::from_secs(60), move |_| b.arm());
    let b = Bomb("reader");
    let reader = lp.add_reader(a.as_raw_fd(), move |_| b.arm()).unwrap();
    soon.cancel();
    timer.cancel();
    reader.cancel();
    assert!(soon.is_cancelled() && timer.is_cancelled() && reader.is_cancelled());
    assert_eq!(sorted(&seen), ["bomb: reader", "bomb: soon", "bomb: timer"]);
    let b = Bomb("removed writer");
    lp.add_writer(a.as_raw_fd(), move |_| b.arm()).unwrap();
    assert!(lp.remove_writer(a.as_raw_fd()));
    assert_eq!(seen.borrow().len(), 4, "{:?}", seen.borrow());
    // The loop still works.
    lp.call_soon(|lp| lp.stop());
    lp.run_forever().unwrap();
}

/// The fd is closed while its reader and writer are registered and its number is
/// reused; `add_reader` for the new file displaces both stale closures at once.
#[test]
fn displacing_two_panicking_closures_at_once_reports_both() {
    const H: i32 = 830;
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let (_a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    drop(b1);
    let b = Bomb("old reader");
    lp.add_reader(H, move |_| b.arm()).unwrap();
    let b = Bomb("old writer");
    lp.add_writer(H, move |_| b.arm()).unwrap();
    drop(old);
    let (_a2, b2) = socketpair();
    let new = dup_to(&b2, H);
    drop(b2);
    let h = lp.add_reader(H, |_| {}).expect("the new file registers");
    assert_eq!(sorted(&seen), ["bomb: old reader", "bomb: old writer"]);
    assert!(!h.is_cancelled());
    assert!(lp.remove_reader(H));
    drop(new);
}

#[test]
fn a_refused_reader_panicking_in_drop_is_reported_and_add_reader_errs() {
    let lp = Loop::new().unwrap();
    let seen = record_panics(&lp);
    let b = Bomb("refused");
    let r = lp.add_reader(-1, move |_| b.arm());
    assert!(r.is_err());
    assert_eq!(sorted(&seen), ["bomb: refused"]);
}

#[test]
fn a_replaced_exception_handler_panicking_in_drop_is_reported_to_the_new_one() {
    let lp = Loop::new().unwrap();
    let b = Bomb("old handler");
    lp.set_exception_handler(move |_, _| b.arm());
    let seen = record_panics(&lp);
    assert_eq!(sorted(&seen), ["bomb: old handler"]);
}
