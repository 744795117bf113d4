//! Bad input is an `Err` or a well-defined no-op, never a panic, a hang or a leak:
//! bad fds, regular files, huge delays, threadsafe calls to a closed loop.

mod util;

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use evloop::{Error, Loop};
use util::{Counter, Drops, TempFile, Watchdog, dup_to, socketpair};

/// Fixed high descriptor numbers, one per test, so that closing one cannot race with
/// another test of this process opening the same number (see `util::dup_to`).
const CLOSED_FD: RawFd = 800;
const CLOSED_FD_REGISTERED: RawFd = 801;

fn assert_nothing_registered(lp: &Loop, fd: RawFd) {
    assert!(!lp.remove_reader(fd), "no reader registered for {fd}");
    assert!(!lp.remove_writer(fd), "no writer registered for {fd}");
}

#[test]
fn negative_fd_is_an_error_and_registers_nothing() {
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let t = drops.token();
    assert!(lp.add_reader(-1, move |_| t.hold()).is_err());
    let t = drops.token();
    assert!(lp.add_writer(-1, move |_| t.hold()).is_err());
    assert_eq!(drops.alive(), 0, "refused closures are dropped");
    assert_nothing_registered(&lp, -1);
    // The loop still works.
    lp.stop();
    lp.run_forever().unwrap();
}

#[test]
fn closed_fd_is_an_error_and_registers_nothing() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    drop(dup_to(&a, CLOSED_FD)); // open, then closed: a number no one holds
    assert!(!util::fd_is_open(CLOSED_FD));
    assert!(lp.add_reader(CLOSED_FD, |_| {}).is_err());
    assert!(lp.add_writer(CLOSED_FD, |_| {}).is_err());
    assert_nothing_registered(&lp, CLOSED_FD);
}

/// The fd is registered for reading, then closed behind the loop's back; adding a
/// writer for the now closed number fails and leaves no writer behind.
#[test]
fn adding_to_a_registered_but_closed_fd_is_an_error() {
    let lp = Loop::new().unwrap();
    let (a, _b) = socketpair();
    let fd = dup_to(&a, CLOSED_FD_REGISTERED);
    lp.add_reader(CLOSED_FD_REGISTERED, |_| {}).unwrap();
    drop(fd);
    assert!(lp.add_writer(CLOSED_FD_REGISTERED, |_| {}).is_err());
    assert!(!lp.remove_writer(CLOSED_FD_REGISTERED));
}

#[test]
fn regular_file_is_an_error_and_registers_nothing() {
    let lp = Loop::new().unwrap();
    let tmp = TempFile::new("regular");
    let fd = tmp.file.as_raw_fd();
    let drops = Drops::new();
    let t = drops.token();
    assert!(lp.add_reader(fd, move |_| t.hold()).is_err());
    let t = drops.token();
    assert!(lp.add_writer(fd, move |_| t.hold()).is_err());
    assert_eq!(drops.alive(), 0);
    assert_nothing_registered(&lp, fd);
    assert!(
        util::fd_is_open(fd),
        "the loop never closes fds, even refused ones"
    );
}

#[test]
fn a_refused_fd_does_not_disturb_other_registrations() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let calls = Counter::new();
    let c = calls.clone();
    let fd = b.as_raw_fd();
    lp.add_reader(fd, move |lp| {
        c.inc();
        util::recv(&b, 64).unwrap();
        lp.stop();
    })
    .unwrap();
    assert!(lp.add_reader(-1, |_| {}).is_err());
    let tmp = TempFile::new("other");
    assert!(lp.add_reader(tmp.file.as_raw_fd(), |_| {}).is_err());
    util::send(&a, b"x");
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(calls.get(), 1);
    assert!(lp.remove_reader(fd));
}

#[test]
fn duration_max_and_far_future_deadlines_never_fire() {
    let logs = util::LogCapture::start();
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::MAX, move |_| r.inc());
    let r = ran.clone();
    lp.call_later(Duration::from_secs(u64::MAX), move |_| r.inc());
    let r = ran.clone();
    let far = lp.time() + Duration::from_secs(200 * 365 * 24 * 3600);
    lp.call_at(far, move |_| r.inc());
    lp.call_later(Duration::from_millis(20), |lp| lp.stop());
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    dog.disarm();
    assert_eq!(ran.get(), 0);
    // Nothing else is due: an embedding host would block a long time.
    let t = lp.next_timeout().expect("timers are pending");
    assert!(t > Duration::from_secs(24 * 3600), "{t:?}");
    lp.run_once(Some(Duration::from_millis(5))).unwrap();
    assert_eq!(ran.get(), 0);
    assert!(logs.problems().is_empty(), "{:?}", logs.problems());
}

#[test]
fn call_soon_threadsafe_after_close_is_err_and_drops_the_closure() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    lp.close().unwrap();
    assert!(remote.is_closed());

    // From the loop's own thread ...
    let drops = Drops::new();
    let t = drops.token();
    let r = remote.call_soon_threadsafe(move |_| t.hold());
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    assert_eq!(drops.alive(), 0);

    // ... and from another.
    let (d, rem) = (drops.clone(), remote.clone());
    std::thread::spawn(move || {
        let t = d.token();
        let r = rem.call_soon_threadsafe(move |_| t.hold());
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        assert_eq!(d.alive(), 0);
    })
    .join()
    .unwrap();
    assert_eq!(drops.made(), 2);
    remote.stop(); // does nothing, does not panic
}
