//! An fd closed while still registered, and its number reused: the old registration's
//! events never reach the new fd's callbacks, the new fd's events never reach the old
//! callbacks, and `add_reader` on the reused number works.
//!
//! Each test uses its own fixed, high fd number through `util::dup_to`, so that the
//! close-then-reuse sequence cannot race with other tests of this process.

mod util;

use std::time::Duration;

use evloop::Loop;
use util::{Counter, Drops, dup_to, send, socketpair};

const ZERO: Option<Duration> = Some(Duration::ZERO);

/// Runs a few iterations, each waiting a little for I/O.
fn spin(lp: &Loop) {
    for _ in 0..3 {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
}

/// The old socket is closed for good; the number comes back as a new socket.
#[test]
fn reused_number_gets_a_fresh_registration() {
    const H: i32 = 810;
    let lp = Loop::new().unwrap();
    let old_calls = Counter::new();
    let drops = Drops::new();

    let (a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    drop(b1); // `old` is now the socket's only descriptor
    let (c, t) = (old_calls.clone(), drops.token());
    let old_handle = lp
        .add_reader(H, move |_| {
            t.hold();
            c.inc();
        })
        .unwrap();
    drop(old); // closed while registered

    let (a2, b2) = socketpair();
    let new = dup_to(&b2, H);
    drop(b2);
    send(&a2, b"new data");
    spin(&lp);
    assert_eq!(
        old_calls.get(),
        0,
        "the old reader got the new socket's events"
    );

    let new_calls = Counter::new();
    let c = new_calls.clone();
    let new_handle = lp.add_reader(H, move |_| c.inc()).unwrap();
    assert!(old_handle.is_cancelled());
    assert_eq!(
        drops.dropped(),
        1,
        "the stale reader is dropped when replaced"
    );
    lp.run_once(ZERO).unwrap();
    assert_eq!(new_calls.get(), 1, "the new socket's reader is called");
    assert_eq!(old_calls.get(), 0);

    old_handle.cancel();
    assert!(!new_handle.is_cancelled());
    assert!(lp.remove_reader(H));
    drop((a1, new));
}

/// The old socket stays open through another descriptor, so the kernel keeps its
/// epoll registration alive under the old number: its events must be ignored.
#[test]
fn old_socket_still_open_elsewhere_does_not_reach_the_new_reader() {
    const H: i32 = 811;
    let lp = Loop::new().unwrap();
    let (a1, b1) = socketpair();
    let old = dup_to(&b1, H); // b1 keeps the old socket open
    let old_calls = Counter::new();
    let c = old_calls.clone();
    lp.add_reader(H, move |_| c.inc()).unwrap();
    drop(old);

    let (a2, b2) = socketpair();
    let new = dup_to(&b2, H);
    drop(b2);
    let new_calls = Counter::new();
    let c = new_calls.clone();
    lp.add_reader(H, move |_| c.inc()).unwrap();

    send(&a1, b"to the old socket");
    spin(&lp);
    assert_eq!(
        new_calls.get(),
        0,
        "the new reader got the old socket's events"
    );

    send(&a2, b"to the new socket");
    lp.run_once(Some(Duration::from_millis(100))).unwrap();
    assert!(
        new_calls.get() >= 1,
        "the new reader is called for its own socket"
    );
    assert_eq!(old_calls.get(), 0, "the replaced reader never runs again");
    assert!(lp.remove_reader(H));
    drop((a1, b1, a2, new));
}

/// Same as above with a writer: the old socket stays writable forever.
#[test]
fn old_writable_socket_does_not_reach_the_new_writer() {
    const H: i32 = 812;
    let lp = Loop::new().unwrap();
    let (_a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    lp.add_writer(H, |_| {}).unwrap();
    drop(old);

    // The new descriptor is the read end of a pipe: never writable.
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
        0
    );
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pipe2 just returned these descriptors; we are their only owner.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let new = dup_to(&rd, H);
    drop(rd);
    let new_calls = Counter::new();
    let c = new_calls.clone();
    lp.add_writer(H, move |_| c.inc()).unwrap();
    spin(&lp);
    assert_eq!(new_calls.get(), 0, "a pipe's read end is never writable");
    assert!(lp.remove_writer(H));
    drop((b1, new, wr));
}

/// The old socket is closed for good and the number reused; the host then adds a
/// *writer* for the new socket. The stale reader, registered for the old socket,
/// must not start receiving the new socket's readability.
#[test]
fn stale_reader_does_not_receive_the_new_sockets_events() {
    const H: i32 = 813;
    let lp = Loop::new().unwrap();
    let (a1, b1) = socketpair();
    let old = dup_to(&b1, H);
    drop(b1);
    let old_calls = Counter::new();
    let c = old_calls.clone();
    lp.add_reader(H, move |_| c.inc()).unwrap();
    drop(old);

    let (a2, b2) = socketpair();
    let new = dup_to(&b2, H);
    drop(b2);
    let writes = Counter::new();
    let w = writes.clone();
    lp.add_writer(H, move |lp| {
        w.inc();
        lp.remove_writer(H);
    })
    .unwrap();
    send(&a2, b"readable new socket");
    spin(&lp);
    assert_eq!(writes.get(), 1, "the new writer ran");
    assert_eq!(
        old_calls.get(),
        0,
        "the old socket's reader was called for the new socket's data"
    );
    drop((a1, a2, new));
}
