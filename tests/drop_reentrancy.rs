//! Drop re-entrancy: a closure the loop drops without running it (cancelled,
//! replaced, refused by a failed `add_reader`, removed, discarded by `close()`) may call
//! into the loop from its `Drop` (`remove_reader`, `call_soon`, `cancel`, ...) without
//! a `RefCell` panic: the loop drops user closures only when it holds no borrow of its
//! own state.

mod util;

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use evloop::{ErrorContext, Loop, TaskError, TimerHandle};
use util::{Counter, TempFile, dup_to, socketpair};

const ZERO: Option<Duration> = Some(Duration::ZERO);

/// What a [`Reentrant`] guard did when dropped.
#[derive(Clone, Default)]
struct Probe {
    dropped: Counter,
    /// Counts runs of the callback that the guard's `Drop` scheduled.
    scheduled_ran: Counter,
    /// A pending timer that the guard cancels from its `Drop`.
    victim: Rc<RefCell<Option<TimerHandle>>>,
    victim_ran: Counter,
}

impl Probe {
    fn new(lp: &Loop) -> Probe {
        let p = Probe::default();
        let ran = p.victim_ran.clone();
        let t = lp.call_later(Duration::from_secs(3600), move |_| ran.inc());
        *p.victim.borrow_mut() = Some(t);
        p
    }

    /// A guard to capture in a closure; its `Drop` removes the reader and writer of
    /// `fd`.
    fn guard(&self, lp: &Loop, fd: RawFd) -> Reentrant {
        Reentrant {
            lp: lp.clone(),
            fd,
            probe: self.clone(),
        }
    }
}

/// Calls into the loop from its `Drop`: `remove_reader`, `remove_writer`, `call_soon`
/// and a handle's `cancel`, as a connection guard would.
struct Reentrant {
    lp: Loop,
    fd: RawFd,
    probe: Probe,
}

impl Reentrant {
    fn hold(&self) {}
}

impl Drop for Reentrant {
    fn drop(&mut self) {
        self.lp.remove_reader(self.fd);
        self.lp.remove_writer(self.fd);
        if self.lp.is_closed() {
            // Refused quietly while close() drops what was pending.
            let h = self
                .lp
                .call_soon(|_| unreachable!("refused during close()"));
            assert!(h.is_cancelled());
            self.probe.scheduled_ran.inc();
        } else {
            let ran = self.probe.scheduled_ran.clone();
            self.lp.call_soon(move |_| ran.inc());
        }
        if let Some(h) = self.probe.victim.borrow_mut().take() {
            h.cancel();
            assert!(h.is_cancelled());
        }
        self.probe.dropped.inc();
    }
}

/// The guard was dropped exactly once and did its work; the loop still runs.
#[track_caller]
fn check(lp: &Loop, p: &Probe) {
    assert_eq!(p.dropped.get(), 1, "the closure was dropped exactly once");
    assert!(p.victim.borrow().is_none(), "the victim was cancelled");
    if !lp.is_closed() {
        lp.run_once(ZERO).unwrap();
        lp.run_once(ZERO).unwrap();
    }
    assert_eq!(p.scheduled_ran.get(), 1, "what the Drop scheduled ran");
    assert_eq!(p.victim_ran.get(), 0, "the cancelled victim never ran");
}

/// A loop whose exception handler fails the test: nothing here may panic.
fn strict_loop() -> Loop {
    let lp = Loop::new().unwrap();
    lp.set_exception_handler(|_, ctx: &ErrorContext| {
        panic!(
            "unexpected report: {} {:?}",
            ctx.message(),
            ctx.panic_message()
        )
    });
    lp
}

#[test]
fn a_cancelled_call_soon() {
    let lp = strict_loop();
    let p = Probe::new(&lp);
    let g = p.guard(&lp, -1);
    let h = lp.call_soon(move |_| g.hold());
    h.cancel();
    check(&lp, &p);
}

#[test]
fn a_cancelled_timer() {
    let lp = strict_loop();
    let p = Probe::new(&lp);
    let g = p.guard(&lp, -1);
    let t = lp.call_later(Duration::from_secs(60), move |_| g.hold());
    t.cancel();
    check(&lp, &p);
}

#[test]
fn a_cancelled_reader_whose_drop_removes_its_own_fd() {
    let lp = strict_loop();
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    let p = Probe::new(&lp);
    let g = p.guard(&lp, fd);
    lp.add_writer(fd, |_| {}).unwrap();
    let h = lp.add_reader(fd, move |_| g.hold()).unwrap();
    h.cancel();
    check(&lp, &p);
    assert!(!lp.remove_writer(fd), "the guard removed the writer");
}

#[test]
fn a_reader_removed_with_remove_reader() {
    let lp = strict_loop();
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    let p = Probe::new(&lp);
    let g = p.guard(&lp, fd);
    lp.add_reader(fd, move |_| g.hold()).unwrap();
    assert!(lp.remove_reader(fd));
    check(&lp, &p);
}

#[test]
fn a_reader_that_removes_itself_while_running() {
    let lp = strict_loop();
    let (a, b) = socketpair();
    util::send(&b, b"x");
    let fd = a.as_raw_fd();
    let p = Probe::new(&lp);
    let g = p.guard(&lp, fd);
    lp.add_reader(fd, move |lp| {
        g.hold();
        lp.remove_reader(fd);
    })
    .unwrap();
    lp.run_once(Some(Duration::from_secs(5))).unwrap();
    check(&lp, &p);
}

#[test]
fn a_replaced_reader_and_a_replaced_writer() {
    let lp = strict_loop();
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    for write in [false, true] {
        let p = Probe::new(&lp);
        let g = p.guard(&lp, -1);
        let add = |f: Box<dyn FnMut(&Loop)>| {
            if write {
                lp.add_writer(fd, f)
            } else {
                lp.add_reader(fd, f)
            }
        };
        let old = add(Box::new(move |_| g.hold())).unwrap();
        let new = add(Box::new(|_| {})).unwrap();
        assert!(old.is_cancelled());
        assert!(!new.is_cancelled());
        check(&lp, &p);
    }
    assert!(lp.remove_reader(fd));
    assert!(lp.remove_writer(fd));
}

#[test]
fn stale_closures_displaced_by_a_reused_fd_number() {
    const H: i32 = 840;
    let lp = strict_loop();
    let (_a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    drop(b1);
    let p = Probe::new(&lp);
    let g = p.guard(&lp, -1);
    lp.add_writer(H, move |_| g.hold()).unwrap();
    drop(old);
    let (_a2, b2) = socketpair();
    let new = dup_to(&b2, H);
    drop(b2);
    lp.add_reader(H, |_| {}).unwrap();
    check(&lp, &p);
    assert!(lp.remove_reader(H));
    drop(new);
}

#[test]
fn a_failed_add_reader_or_add_writer_is_an_err_not_a_panic() {
    const CLOSED: i32 = 841;
    let lp = strict_loop();
    let tmp = TempFile::new("drop-reentrancy");
    let (a, _b) = socketpair();
    let registered_then_closed = dup_to(&a, CLOSED);
    lp.add_reader(CLOSED, |_| {}).unwrap();
    drop(registered_then_closed);
    let bad: [(RawFd, &str); 3] = [
        (-1, "a negative fd"),
        (tmp.file.as_raw_fd(), "a regular file"),
        (CLOSED, "a registered fd closed behind the loop's back"),
    ];
    for (fd, what) in bad {
        for write in [false, true] {
            let p = Probe::new(&lp);
            // The guard's Drop removes the reader of the fd being refused: the
            // connection-guard pattern.
            let g = p.guard(&lp, fd);
            let r = if write {
                lp.add_writer(fd, move |_| g.hold())
            } else {
                lp.add_reader(fd, move |_| g.hold())
            };
            assert!(r.is_err(), "{what} (write: {write})");
            check(&lp, &p);
        }
    }
}

#[test]
fn close_discarding_every_kind_of_pending_closure() {
    let lp = strict_loop();
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    let probes: Vec<Probe> = (0..6).map(|_| Probe::new(&lp)).collect();
    let g = probes[0].guard(&lp, fd);
    lp.call_soon(move |_| g.hold());
    let g = probes[1].guard(&lp, fd);
    lp.call_later(Duration::from_secs(60), move |_| g.hold());
    let g = probes[2].guard(&lp, fd);
    lp.add_reader(fd, move |_| g.hold()).unwrap();
    let g = probes[3].guard(&lp, -1);
    lp.add_writer(fd, move |_| g.hold()).unwrap();
    let g = probes[4].guard(&lp, fd);
    let task = lp.create_task(async move {
        g.hold();
        std::future::pending::<()>().await
    });
    let g = probes[5].guard(&lp, fd);
    task.add_done_callback(move |_, _: &Result<(), TaskError>| g.hold());
    lp.close().unwrap();
    for p in &probes {
        check(&lp, p);
    }
    assert!(task.is_cancelled());
}

#[test]
fn a_replaced_exception_handler() {
    let lp = strict_loop();
    let p = Probe::new(&lp);
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    lp.add_reader(fd, |_| {}).unwrap();
    let g = p.guard(&lp, fd);
    let reporter = ReportsOnDrop(lp.clone());
    lp.set_exception_handler(move |_, _| {
        g.hold();
        let _ = &reporter;
    });
    let reports = util::Events::new();
    let r = reports.clone();
    lp.set_exception_handler(move |_, ctx: &ErrorContext| r.push(ctx.message().to_owned()));
    check(&lp, &p);
    assert!(!lp.remove_reader(fd), "the guard removed the reader");
    assert_eq!(
        reports.get(),
        ["from a drop"],
        "the new handler heard the old one's drop"
    );
}

/// Hands the loop's exception handler a report from its `Drop`.
struct ReportsOnDrop(Loop);

impl Drop for ReportsOnDrop {
    fn drop(&mut self) {
        self.0
            .call_exception_handler(ErrorContext::new("from a drop"));
    }
}

/// A handler that replaces itself while it runs: the old one is dropped once the call
/// returns, and its `Drop` may use the loop, even hand the new handler a report.
#[test]
fn an_exception_handler_replaced_from_inside_itself() {
    let lp = Loop::new().unwrap();
    let p = Probe::new(&lp);
    let g = p.guard(&lp, -1);
    let reporter = ReportsOnDrop(lp.clone());
    let reports = util::Events::new();
    let r = reports.clone();
    lp.set_exception_handler(move |lp, _| {
        g.hold();
        let _ = &reporter;
        let r = r.clone();
        lp.set_exception_handler(move |_, ctx: &ErrorContext| r.push(ctx.message().to_owned()));
    });
    lp.call_exception_handler(ErrorContext::new("first"));
    check(&lp, &p);
    lp.call_exception_handler(ErrorContext::new("second"));
    assert_eq!(reports.get(), ["from a drop", "second"]);
}
