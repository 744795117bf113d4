//! Embedding in a foreign main loop: `as_raw_fd()` readable when the loop has work,
//! `next_timeout()`, and `run_once` with and without a cap.
//!
//! Time bounds are generous (the test machine is shared): they tell "returned about
//! when it should" from "blocked far too long", never measure speed.

mod util;

use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use evloop::Loop;
use util::{Counter, poll_readable, send, socketpair};

const ZERO: Option<Duration> = Some(Duration::ZERO);
const GENEROUS: Duration = Duration::from_secs(2);

#[test]
fn fd_is_readable_when_a_callback_is_ready() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |_| r.inc());
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
}

/// A host that takes `impl AsFd` (as tokio's `AsyncFd` or calloop's `Generic` do)
/// waits on the loop itself; the fd stays open through `close()`.
#[test]
fn the_loop_is_an_as_fd_source_open_through_close() {
    use std::os::fd::AsFd;
    fn host_waits(source: &impl AsFd) -> bool {
        poll_readable(source.as_fd().as_raw_fd(), GENEROUS)
    }
    let lp = Loop::new().unwrap();
    assert_eq!(lp.as_fd().as_raw_fd(), lp.as_raw_fd());
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |_| r.inc());
    assert!(host_waits(&lp));
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
    let fd = lp.as_fd().as_raw_fd();
    lp.close().unwrap();
    // SAFETY: F_GETFD only reads the descriptor's flags; any number is a valid
    // argument (one that is not open gives -1).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert_ne!(flags, -1, "the fd is open after close()");
    // (That it closes with the loop is not checked here: other tests of this binary
    // run in parallel and may reuse the number at once.)
}

#[test]
fn fd_is_readable_when_a_callback_scheduled_by_a_callback_waits() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |lp| {
        lp.call_soon(move |_| r.inc());
    });
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 0);
    assert_eq!(lp.next_timeout(), Some(Duration::ZERO));
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
}

#[test]
fn fd_is_readable_when_a_watched_fd_is_ready() {
    let lp = Loop::new().unwrap();
    let (a, b) = socketpair();
    let got = Counter::new();
    let g = got.clone();
    let fd = b.as_raw_fd();
    lp.add_reader(fd, move |lp| {
        util::recv(&b, 64).unwrap();
        g.inc();
        lp.remove_reader(fd);
    })
    .unwrap();
    send(&a, b"wake");
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    lp.run_once(ZERO).unwrap();
    assert_eq!(got.get(), 1);
}

#[test]
fn fd_is_readable_when_a_timer_is_due_and_not_before() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    let start = Instant::now();
    lp.call_later(Duration::from_millis(50), move |_| r.inc());
    assert!(
        !poll_readable(lp.as_raw_fd(), Duration::ZERO),
        "readable at once for a timer 50 ms away"
    );
    assert!(
        poll_readable(lp.as_raw_fd(), GENEROUS),
        "never readable for a due timer"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "readable {:?} after scheduling a 50 ms timer",
        start.elapsed()
    );
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
}

#[test]
fn fd_is_readable_when_a_timer_scheduled_by_a_callback_is_due() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |lp| {
        lp.call_later(Duration::from_millis(20), move |_| r.inc());
    });
    lp.run_once(ZERO).unwrap();
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    // A spurious wake-up is allowed: run until the timer has fired, within bounds.
    let start = Instant::now();
    while ran.get() == 0 && start.elapsed() < GENEROUS {
        poll_readable(lp.as_raw_fd(), GENEROUS);
        lp.run_once(ZERO).unwrap();
    }
    assert_eq!(ran.get(), 1);
}

#[test]
fn fd_is_readable_when_a_threadsafe_call_arrives() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        remote
            .call_soon_threadsafe(move |_| r.store(true, std::sync::atomic::Ordering::SeqCst))
            .unwrap();
    });
    assert!(poll_readable(lp.as_raw_fd(), GENEROUS));
    sender.join().unwrap();
    lp.run_once(ZERO).unwrap();
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
}

#[test]
fn fd_is_readable_after_each_run_once_while_threadsafe_calls_keep_coming() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for round in 1..=3 {
        let (r, rem) = (ran.clone(), remote.clone());
        thread::spawn(move || {
            rem.call_soon_threadsafe(move |_| {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .unwrap();
        })
        .join()
        .unwrap();
        assert!(poll_readable(lp.as_raw_fd(), GENEROUS), "round {round}");
        lp.run_once(ZERO).unwrap();
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), round);
    }
}

#[test]
fn next_timeout() {
    let lp = Loop::new().unwrap();
    assert_eq!(lp.next_timeout(), None, "idle: wait for I/O");

    let timer = lp.call_later(Duration::from_secs(10), |_| {});
    let t = lp.next_timeout().expect("a timer is pending");
    assert!(
        t > Duration::from_secs(9) && t <= Duration::from_secs(10),
        "{t:?}"
    );

    let soon = lp.call_soon(|_| {});
    assert_eq!(
        lp.next_timeout(),
        Some(Duration::ZERO),
        "a callback is ready"
    );
    soon.cancel();
    lp.run_once(ZERO).unwrap(); // consumes the cancelled entry
    let t = lp.next_timeout().expect("the timer is still pending");
    assert!(
        t > Duration::from_secs(9) && t <= Duration::from_secs(10),
        "{t:?}"
    );

    timer.cancel();
    assert_eq!(lp.next_timeout(), None);

    lp.stop();
    assert_eq!(
        lp.next_timeout(),
        Some(Duration::ZERO),
        "a pending stop: do not block"
    );
    lp.run_once(ZERO).unwrap();
    assert_eq!(lp.next_timeout(), None);
}

#[test]
fn next_timeout_is_zero_for_a_queued_threadsafe_call() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    thread::spawn(move || remote.call_soon_threadsafe(|_| {}).unwrap())
        .join()
        .unwrap();
    assert_eq!(lp.next_timeout(), Some(Duration::ZERO));
}

#[test]
fn run_once_with_a_cap_blocks_at_most_about_the_cap() {
    let lp = Loop::new().unwrap();
    let start = Instant::now();
    lp.run_once(Some(Duration::from_millis(50))).unwrap();
    assert!(start.elapsed() < GENEROUS, "{:?}", start.elapsed());
}

#[test]
fn run_once_never_blocks_past_its_cap_even_with_a_later_timer() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::from_secs(10), move |_| r.inc());
    let start = Instant::now();
    lp.run_once(Some(Duration::from_millis(50))).unwrap();
    assert!(start.elapsed() < GENEROUS, "{:?}", start.elapsed());
    assert_eq!(ran.get(), 0);
}

/// The cap never extends the loop's own timeout: with a timer 30 ms away and a cap of
/// ten seconds, one `run_once` waits for the timer and runs it.
#[test]
fn run_once_cap_does_not_extend_the_timer_wait() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::from_millis(30), move |_| r.inc());
    let start = Instant::now();
    lp.run_once(Some(Duration::from_secs(10))).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ran.get(), 1, "the due timer ran in that iteration");
}

#[test]
fn run_once_none_waits_for_the_next_timer_and_runs_it() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_later(Duration::from_millis(30), move |_| r.inc());
    let start = Instant::now();
    lp.run_once(None).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ran.get(), 1);
}

#[test]
fn run_once_does_not_block_when_a_callback_is_ready() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |_| r.inc());
    let start = Instant::now();
    lp.run_once(Some(Duration::from_secs(30))).unwrap();
    assert!(start.elapsed() < GENEROUS, "{:?}", start.elapsed());
    assert_eq!(ran.get(), 1);
}

#[test]
fn run_once_none_returns_when_a_threadsafe_call_arrives() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        remote.call_soon_threadsafe(|_| {}).unwrap();
    });
    let start = Instant::now();
    lp.run_once(Some(Duration::from_secs(30))).unwrap();
    // It may return spuriously before the call arrives; it must not sleep through it.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    sender.join().unwrap();
}

/// A host's main loop: wait on the fd with `next_timeout`, then `run_once(ZERO)`.
#[test]
fn a_host_loop_drives_timers_io_and_threadsafe_calls() {
    let lp = Loop::new().unwrap();
    let done = Counter::new();
    let (a, b) = socketpair();
    let fd = b.as_raw_fd();
    let d = done.clone();
    lp.add_reader(fd, move |lp| {
        util::recv(&b, 64).unwrap();
        d.inc();
        lp.remove_reader(fd);
    })
    .unwrap();
    let d = done.clone();
    lp.call_later(Duration::from_millis(20), move |_| d.inc());
    let remote = lp.remote();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        remote.call_soon_threadsafe(|_| {}).unwrap();
        thread::sleep(Duration::from_millis(10));
        send(&a, b"x");
        a
    });
    let start = Instant::now();
    while done.get() < 2 && start.elapsed() < Duration::from_secs(10) {
        let wait = lp.next_timeout().unwrap_or(Duration::from_secs(10));
        poll_readable(lp.as_raw_fd(), wait);
        lp.run_once(ZERO).unwrap();
    }
    let _a = sender.join().unwrap();
    assert_eq!(done.get(), 2);
}

/// An edge-triggered watcher of an fd, as a host such as tokio keeps one: an epoll
/// of its own holding the fd with `EPOLLET`. `edge` reports whether a new edge came
/// within `timeout`, consuming it.
struct EdgeWatcher {
    epfd: std::os::fd::OwnedFd,
}

impl EdgeWatcher {
    fn new(fd: std::os::fd::RawFd) -> EdgeWatcher {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 has no memory preconditions; the result is checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            epfd >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `epfd` is a fresh descriptor nothing else owns.
        let epfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(epfd) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: `ev` is a valid epoll_event for the whole call.
        let rc = unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        EdgeWatcher { epfd }
    }

    fn edge(&self, timeout: Duration) -> bool {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: `ev` is a valid buffer of one epoll_event for the whole call.
            let rc = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), &mut ev, 1, ms) };
            if rc < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            assert!(rc >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
            return rc == 1;
        }
    }

    /// Consumes the edges that came already, as a host does before it runs the loop.
    fn drain(&self) {
        while self.edge(Duration::ZERO) {}
    }
}

/// The edge-triggered host's view of a `call_soon` made while the loop is idle.
#[test]
fn edge_after_call_soon_while_idle() {
    let lp = Loop::new().unwrap();
    let watcher = EdgeWatcher::new(lp.as_raw_fd());
    lp.run_once(ZERO).unwrap();
    watcher.drain();
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |_| r.inc());
    assert!(
        watcher.edge(GENEROUS),
        "no edge for a callback scheduled while idle"
    );
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
}

/// A callback that schedules another leaves work pending when `run_once` returns.
#[test]
fn edge_after_a_run_once_that_left_a_callback_ready() {
    let lp = Loop::new().unwrap();
    let watcher = EdgeWatcher::new(lp.as_raw_fd());
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |lp| {
        lp.call_soon(move |_| r.inc());
    });
    watcher.drain();
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 0);
    assert!(
        watcher.edge(GENEROUS),
        "no edge for the callback left ready"
    );
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
}

#[test]
fn edge_when_a_timer_becomes_due() {
    let lp = Loop::new().unwrap();
    let watcher = EdgeWatcher::new(lp.as_raw_fd());
    let ran = Counter::new();
    let r = ran.clone();
    lp.call_soon(move |lp| {
        lp.call_later(Duration::from_millis(30), move |_| r.inc());
    });
    let start = Instant::now();
    lp.run_once(ZERO).unwrap();
    watcher.drain();
    assert!(watcher.edge(GENEROUS), "no edge for a due timer");
    assert!(
        start.elapsed() >= Duration::from_millis(30),
        "{:?}",
        start.elapsed()
    );
    lp.run_once(ZERO).unwrap();
    assert_eq!(ran.get(), 1);
}

#[test]
fn edge_after_a_threadsafe_call() {
    let lp = Loop::new().unwrap();
    let watcher = EdgeWatcher::new(lp.as_raw_fd());
    lp.run_once(ZERO).unwrap();
    watcher.drain();
    let remote = lp.remote();
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        remote
            .call_soon_threadsafe(move |_| r.store(true, std::sync::atomic::Ordering::SeqCst))
            .unwrap();
    });
    assert!(watcher.edge(GENEROUS), "no edge for a threadsafe call");
    sender.join().unwrap();
    lp.run_once(ZERO).unwrap();
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
}

/// The case: a reader that reads one byte per call. After each `run_once`
/// its fd is still readable (level-triggered, it is due again), and the host must
/// hear so with a fresh edge; once the data is all read, no edge comes: the loop
/// wakes its host only when work is pending.
#[test]
fn edge_after_a_run_once_that_left_a_readers_data_unread() {
    let lp = Loop::new().unwrap();
    let watcher = EdgeWatcher::new(lp.as_raw_fd());
    let (a, b) = socketpair();
    let got = Counter::new();
    let g = got.clone();
    lp.add_reader(b.as_raw_fd(), move |_| {
        assert_eq!(util::recv(&b, 1).expect("readable").len(), 1);
        g.inc();
    })
    .unwrap();
    send(&a, b"abc");
    for n in 1..=3 {
        assert!(watcher.edge(GENEROUS), "no edge before read {n}");
        watcher.drain();
        lp.run_once(ZERO).unwrap();
        assert_eq!(got.get(), n);
    }
    assert!(
        !watcher.edge(Duration::from_millis(100)),
        "an edge with nothing left to read"
    );
    send(&a, b"d");
    assert!(watcher.edge(GENEROUS), "no edge for new data");
    lp.run_once(ZERO).unwrap();
    assert_eq!(got.get(), 4);
}

/// A writer whose fd stays writable is due every iteration: an edge after each.
#[test]
fn edge_after_each_run_once_while_a_writer_stays_writable() {
    let lp = Loop::new().unwrap();
    let watcher = EdgeWatcher::new(lp.as_raw_fd());
    let (a, _b) = socketpair();
    let calls = Counter::new();
    let c = calls.clone();
    lp.add_writer(a.as_raw_fd(), move |_| c.inc()).unwrap();
    for n in 1..=3 {
        assert!(watcher.edge(GENEROUS), "no edge before call {n}");
        watcher.drain();
        lp.run_once(ZERO).unwrap();
        assert_eq!(calls.get(), n);
    }
    lp.remove_writer(a.as_raw_fd());
}
