//! `add_reader` / `add_writer`: level-triggered readiness, one reader and one writer
//! per fd, replacement, removal and cancellation.

mod util;

use std::cell::RefCell;
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use evloop::{Handle, Loop};
use util::{Counter, Drops, Events, Watchdog, recv, send, socketpair};

const ZERO: Option<Duration> = Some(Duration::ZERO);

#[test]
fn reader_is_called_when_data_arrives() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let got = Events::new();
    let g = got.clone();
    let fd = b.as_raw_fd();
    lp.add_reader(fd, move |lp| {
        g.push(recv(&b, 64).unwrap());
        lp.stop();
    })
    .unwrap();
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.call_later(Duration::from_millis(5), move |_| send(&a, b"ping"));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(got.get(), [b"ping".to_vec()]);
    assert!(lp.remove_reader(fd));
}

/// Level-triggered, as asyncio's selector loop: a reader that leaves data unread is
/// called again, once per iteration, until nothing is left.
#[test]
fn reader_leaving_data_unread_is_called_again_until_drained() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    send(&a, &[7u8; 100]);
    let calls = Counter::new();
    let spurious = Counter::new();
    let total = Rc::new(RefCell::new(0usize));
    let (c, s, t) = (calls.clone(), spurious.clone(), total.clone());
    lp.add_reader(b.as_raw_fd(), move |lp| {
        c.inc();
        match recv(&b, 10) {
            Ok(data) => {
                *t.borrow_mut() += data.len();
                if *t.borrow() == 100 {
                    // Give a wrongly repeated call the chance to show up.
                    lp.call_later(Duration::from_millis(30), |lp| lp.stop());
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => s.inc(),
            Err(e) => panic!("{e}"),
        }
    })
    .unwrap();
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(*total.borrow(), 100);
    assert_eq!(calls.get(), 10);
    assert_eq!(spurious.get(), 0, "called with nothing to read");
}

#[test]
fn reader_with_data_left_is_called_once_per_iteration() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    send(&a, &[1u8; 100]);
    let calls = Counter::new();
    let c = calls.clone();
    let fd = b.as_raw_fd();
    lp.add_reader(fd, move |_| {
        c.inc();
        recv(&b, 10).unwrap();
    })
    .unwrap();
    for i in 1..=10 {
        lp.run_once(ZERO).unwrap();
        assert_eq!(calls.get(), i, "after {i} iterations");
    }
    for _ in 0..3 {
        lp.run_once(ZERO).unwrap();
    }
    assert_eq!(calls.get(), 10, "drained: not called again");
    assert!(lp.remove_reader(fd));
}

#[test]
fn writer_on_a_writable_socket_is_called_every_iteration_until_removed() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let calls = Counter::new();
    let c = calls.clone();
    let fd = a.as_raw_fd();
    let h = lp.add_writer(fd, move |_| c.inc()).unwrap();
    for i in 1..=5 {
        lp.run_once(ZERO).unwrap();
        assert_eq!(calls.get(), i);
    }
    assert!(lp.remove_writer(fd));
    assert!(h.is_cancelled());
    for _ in 0..3 {
        lp.run_once(ZERO).unwrap();
    }
    assert_eq!(calls.get(), 5);
    assert!(!lp.remove_writer(fd));
}

#[test]
fn writer_removing_itself_from_run_forever() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let calls = Counter::new();
    let drops = Drops::new();
    let (c, t) = (calls.clone(), drops.token());
    let fd = a.as_raw_fd();
    lp.add_writer(fd, move |lp| {
        t.hold();
        c.inc();
        if c.get() == 7 {
            assert!(lp.remove_writer(fd));
            lp.call_later(Duration::from_millis(20), |lp| lp.stop());
        }
    })
    .unwrap();
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(calls.get(), 7);
    assert_eq!(drops.dropped(), 1, "a removed writer's closure is dropped");
}

#[test]
fn reader_and_writer_on_one_fd_are_independent() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let order = Events::new();
    let fd = a.as_raw_fd();
    let o = order.clone();
    lp.add_reader(fd, move |_| o.push("r")).unwrap();
    let o = order.clone();
    lp.add_writer(fd, move |_| o.push("w")).unwrap();
    send(&b, b"x");
    lp.run_once(ZERO).unwrap();
    let mut got = order.get();
    got.sort();
    assert_eq!(got, ["r", "w"], "both called in one iteration");

    assert!(lp.remove_writer(fd));
    lp.run_once(ZERO).unwrap();
    assert_eq!(order.get().len(), 3);
    assert_eq!(
        order.get()[2],
        "r",
        "the reader stays after its writer goes"
    );

    let o = order.clone();
    lp.add_writer(fd, move |_| o.push("w")).unwrap();
    assert!(lp.remove_reader(fd));
    lp.run_once(ZERO).unwrap();
    assert_eq!(
        order.get()[3..],
        ["w"],
        "the writer stays after its reader goes"
    );
    assert!(lp.remove_writer(fd));
}

#[test]
fn remove_returns_whether_one_was_registered() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    assert!(!lp.remove_reader(fd));
    assert!(!lp.remove_writer(fd));
    lp.add_reader(fd, |_| {}).unwrap();
    assert!(!lp.remove_writer(fd), "a reader is not a writer");
    assert!(lp.remove_reader(fd));
    assert!(!lp.remove_reader(fd));
    lp.add_writer(fd, |_| {}).unwrap();
    assert!(!lp.remove_reader(fd));
    assert!(lp.remove_writer(fd));
    assert!(!lp.remove_writer(fd));
}

#[test]
fn removing_drops_the_closure_at_once() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let drops = Drops::new();
    let t = drops.token();
    let h = lp.add_reader(a.as_raw_fd(), move |_| t.hold()).unwrap();
    assert!(!h.is_cancelled());
    assert!(lp.remove_reader(a.as_raw_fd()));
    assert_eq!(drops.dropped(), 1);
    assert!(
        h.is_cancelled(),
        "a removed reader's handle counts as cancelled"
    );
}

#[test]
fn cancelling_a_reader_handle_removes_it() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let drops = Drops::new();
    let (t, calls) = (drops.token(), Counter::new());
    let c = calls.clone();
    let h = lp
        .add_reader(b.as_raw_fd(), move |_| {
            t.hold();
            c.inc();
        })
        .unwrap();
    h.cancel();
    assert!(h.is_cancelled());
    assert_eq!(drops.dropped(), 1, "cancel() drops the closure at once");
    h.cancel();
    send(&a, b"x");
    lp.run_once(ZERO).unwrap();
    assert_eq!(calls.get(), 0);
    assert!(!lp.remove_reader(b.as_raw_fd()));
}

#[test]
fn adding_again_replaces_and_the_old_handle_cannot_touch_the_new_reader() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let drops = Drops::new();
    let calls = Events::new();
    let (t, c) = (drops.token(), calls.clone());
    let old = lp
        .add_reader(fd, move |_| {
            t.hold();
            c.push("old");
        })
        .unwrap();
    let c = calls.clone();
    let new = lp
        .add_reader(fd, move |_| {
            c.push("new");
            recv(&b, 64).unwrap();
        })
        .unwrap();
    assert!(
        old.is_cancelled(),
        "the replaced reader's handle counts as cancelled"
    );
    assert!(!new.is_cancelled());
    assert_eq!(
        drops.dropped(),
        1,
        "the replaced closure is dropped at once"
    );

    old.cancel();
    assert!(
        !new.is_cancelled(),
        "cancelling the replaced handle spares the new reader"
    );
    send(&a, b"x");
    lp.run_once(ZERO).unwrap();
    assert_eq!(calls.get(), ["new"]);
    assert!(lp.remove_reader(fd), "the new reader is still registered");
}

#[test]
fn replaced_writer_handle_is_cancelled_and_spares_the_new_writer() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    let calls = Events::new();
    let c = calls.clone();
    let old = lp.add_writer(fd, move |_| c.push("old")).unwrap();
    let c = calls.clone();
    let _new = lp.add_writer(fd, move |_| c.push("new")).unwrap();
    assert!(old.is_cancelled());
    old.cancel();
    lp.run_once(ZERO).unwrap();
    assert_eq!(calls.get(), ["new"]);
    assert!(lp.remove_writer(fd));
}

/// The reader's event is queued by the poll, but a callback that runs before it in
/// the same iteration removes it: it must not be called.
#[test]
fn reader_removed_earlier_in_the_iteration_is_not_called() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let calls = Counter::new();
    let c = calls.clone();
    lp.add_reader(fd, move |_| c.inc()).unwrap();
    send(&a, b"x");
    lp.call_soon(move |lp| assert!(lp.remove_reader(fd)));
    lp.run_once(ZERO).unwrap();
    assert_eq!(calls.get(), 0);
}

#[test]
fn reader_cancelled_earlier_in_the_iteration_is_not_called() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let calls = Counter::new();
    let c = calls.clone();
    let h = lp.add_reader(b.as_raw_fd(), move |_| c.inc()).unwrap();
    send(&a, b"x");
    lp.call_soon(move |_| h.cancel());
    lp.run_once(ZERO).unwrap();
    assert_eq!(calls.get(), 0);
}

/// Two readers ready in the same iteration; whichever runs first removes the other,
/// which then must not run.
#[test]
fn reader_removing_another_ready_reader() {
    let lp = Loop::new().unwrap();
    let (a1, b1) = socketpair();
    let (a2, b2) = socketpair();
    let (fd1, fd2) = (b1.as_raw_fd(), b2.as_raw_fd());
    let calls = Events::new();
    let c = calls.clone();
    lp.add_reader(fd1, move |lp| {
        c.push(1);
        assert!(lp.remove_reader(fd2));
        assert!(lp.remove_reader(fd1));
    })
    .unwrap();
    let c = calls.clone();
    lp.add_reader(fd2, move |lp| {
        c.push(2);
        assert!(lp.remove_reader(fd1));
        assert!(lp.remove_reader(fd2));
    })
    .unwrap();
    send(&a1, b"x");
    send(&a2, b"x");
    assert!(util::poll_readable(fd1, Duration::from_secs(1)));
    assert!(util::poll_readable(fd2, Duration::from_secs(1)));
    lp.run_once(ZERO).unwrap();
    lp.run_once(ZERO).unwrap();
    assert_eq!(calls.len(), 1, "{:?}", calls.get());
}

#[test]
fn reader_removing_itself_is_dropped_after_its_call() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let drops = Drops::new();
    let (t, d) = (drops.token(), drops.clone());
    let removed = Rc::new(RefCell::new(None));
    let r = removed.clone();
    lp.add_reader(fd, move |lp| {
        t.hold();
        *r.borrow_mut() = Some(lp.remove_reader(fd));
        assert_eq!(d.dropped(), 0, "not dropped while it runs");
    })
    .unwrap();
    send(&a, b"x");
    lp.run_once(ZERO).unwrap();
    assert_eq!(*removed.borrow(), Some(true));
    assert_eq!(drops.dropped(), 1);
    lp.run_once(ZERO).unwrap();
    assert!(!lp.remove_reader(fd));
}

#[test]
fn reader_replacing_itself() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let b = Rc::new(b);
    let drops = Drops::new();
    let calls = Events::new();
    let (t, c, b1) = (drops.token(), calls.clone(), b.clone());
    lp.add_reader(fd, move |lp| {
        t.hold();
        c.push("first");
        recv(&b1, 1).unwrap();
        let (c2, b2) = (c.clone(), b1.clone());
        lp.add_reader(fd, move |_| {
            c2.push("second");
            recv(&b2, 1).unwrap();
        })
        .unwrap();
    })
    .unwrap();
    send(&a, b"xyz");
    lp.run_once(ZERO).unwrap();
    assert_eq!(
        drops.dropped(),
        1,
        "the replaced reader is dropped after its call"
    );
    lp.run_once(ZERO).unwrap();
    lp.run_once(ZERO).unwrap();
    lp.run_once(ZERO).unwrap();
    assert_eq!(calls.get(), ["first", "second", "second"]);
    assert!(lp.remove_reader(fd));
}

#[test]
fn reader_is_called_at_end_of_file() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let got = Events::new();
    let g = got.clone();
    let fd = b.as_raw_fd();
    lp.add_reader(fd, move |lp| {
        g.push(recv(&b, 64).unwrap().len());
        lp.remove_reader(fd);
        lp.stop();
    })
    .unwrap();
    drop(a);
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(got.get(), [0]);
}

#[test]
fn handle_of_a_reader_outliving_its_loop() {
    let (a, _b) = socketpair();
    let h: Handle;
    {
        let lp = Loop::new().unwrap();
        h = lp.add_reader(a.as_raw_fd(), |_| {}).unwrap();
    }
    assert!(h.is_cancelled());
    h.cancel();
    assert!(util::fd_is_open(a.as_raw_fd()), "the loop never closes fds");
}

#[test]
fn the_loop_never_closes_removed_fds() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    lp.add_reader(a.as_raw_fd(), |_| {}).unwrap();
    lp.add_writer(a.as_raw_fd(), |_| {}).unwrap();
    lp.remove_reader(a.as_raw_fd());
    lp.remove_writer(a.as_raw_fd());
    let h = lp.add_reader(a.as_raw_fd(), |_| {}).unwrap();
    h.cancel();
    assert!(util::fd_is_open(a.as_raw_fd()));
    send(&b, b"ok");
    assert_eq!(recv(&a, 8).unwrap(), b"ok");
}

/// Schedules a callback on its loop when dropped: a closure's `Drop` may use the loop.
struct ScheduleOnDrop {
    lp: Loop,
    ran: Counter,
}

impl Drop for ScheduleOnDrop {
    fn drop(&mut self) {
        let r = self.ran.clone();
        self.lp.call_soon(move |_| r.inc());
    }
}

#[test]
fn a_reader_dropped_by_remove_replace_or_cancel_may_schedule_on_the_loop() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let fd = a.as_raw_fd();
    let ran = Counter::new();
    let guard = || ScheduleOnDrop {
        lp: lp.clone(),
        ran: ran.clone(),
    };

    let g = guard();
    lp.add_reader(fd, move |_| {
        let _g = &g;
    })
    .unwrap();
    assert!(lp.remove_reader(fd));

    let g = guard();
    lp.add_writer(fd, move |_| {
        let _g = &g;
    })
    .unwrap();
    lp.add_writer(fd, |_| {}).unwrap(); // replaces

    let g = guard();
    let h = lp
        .add_reader(fd, move |_| {
            let _g = &g;
        })
        .unwrap();
    h.cancel();
    assert!(lp.remove_writer(fd));

    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(ran.get(), 3);
}

/// asyncio's `test_writer_callback`: a writer fills the socket until it would block;
/// a full socket is not writable, so the writer is not called again until the peer
/// drains it.
#[test]
fn writer_is_not_called_while_the_socket_is_full_and_is_again_once_drained() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let fd = a.as_raw_fd();
    let calls = Counter::new();
    let full = Rc::new(std::cell::Cell::new(false));
    let (c, f) = (calls.clone(), full.clone());
    lp.add_writer(fd, move |_| {
        c.inc();
        loop {
            match (&a).write(&[0u8; 4096]) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        f.set(true);
    })
    .unwrap();
    lp.run_once(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(calls.get(), 1);
    assert!(full.get());
    for _ in 0..3 {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(calls.get(), 1, "called while the socket was full");

    // Drain the peer: the socket becomes writable again.
    while let Ok(data) = recv(&b, 1 << 16) {
        assert!(!data.is_empty());
    }
    lp.run_once(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(calls.get(), 2);
    assert!(lp.remove_writer(fd));
}

/// asyncio's `test_single_selecto_event_callback_after_stopping`: a reader ready in
/// the iteration that stops the loop runs once, and not again in the next run once
/// its data is consumed.
#[test]
fn reader_ready_in_a_stopping_iteration_runs_once() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let calls = Counter::new();
    let c = calls.clone();
    lp.add_reader(fd, move |_| {
        c.inc();
        recv(&b, 64).unwrap();
    })
    .unwrap();
    send(&a, b"x");
    for round in 1..=2 {
        lp.call_soon(|lp| lp.stop());
        lp.run_forever().unwrap();
        assert_eq!(calls.get(), 1, "round {round}");
    }
    assert!(lp.remove_reader(fd));
}
