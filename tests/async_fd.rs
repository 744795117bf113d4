//! `evloop::net::AsyncFd`: any fd as a long-lived async source, tried on an eventfd,
//! a pipe and a timerfd.

#[path = "util/net.rs"]
mod net_util;
mod util;

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use evloop::net::AsyncFd;
use futures::FutureExt;
use net_util::{PATIENCE, block_on, new_loop, run_iterations};
use util::{TempFile, fd_is_open};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A blocking eventfd (AsyncFd makes it non-blocking).
fn eventfd() -> OwnedFd {
    // SAFETY: eventfd has no memory preconditions; the result is checked.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) }).expect("eventfd");
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A blocking pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of two ints for pipe2 to fill; result checked.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }).expect("pipe2");
    // SAFETY: both are fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A timerfd firing once after `after`.
fn timerfd(after: Duration) -> OwnedFd {
    // SAFETY: timerfd_create has no memory preconditions; the result is checked.
    let fd = check(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) })
        .expect("timerfd_create");
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `spec` is a live itimerspec; the old value pointer may be null.
    check(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })
        .expect("timerfd_settime");
    fd
}

/// Reads an 8-byte counter (eventfd, timerfd).
fn read8(fd: impl AsFd) -> io::Result<u64> {
    let mut n = 0u64;
    // SAFETY: reads at most 8 bytes into a live u64.
    let r = unsafe { libc::read(fd.as_fd().as_raw_fd(), (&raw mut n).cast(), 8) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n)
    }
}

/// Adds `n` to an eventfd's counter.
fn write8(fd: impl AsFd, n: u64) -> io::Result<()> {
    // SAFETY: writes 8 bytes from a live u64.
    let r = unsafe { libc::write(fd.as_fd().as_raw_fd(), (&raw const n).cast(), 8) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn read_buf(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reads at most `buf.len()` bytes into `buf`.
    let r = unsafe { libc::read(fd.as_fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn write_buf(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: writes at most `buf.len()` bytes from `buf`.
    let r = unsafe { libc::write(fd.as_fd().as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn is_nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL only queries the descriptor.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags & libc::O_NONBLOCK != 0
}

#[test]
fn read_with_waits_for_an_eventfd_written_later() {
    let lp = new_loop();
    block_on(&lp, async {
        let efd = Rc::new(AsyncFd::new(eventfd()).unwrap());
        assert!(
            is_nonblocking(efd.as_raw_fd()),
            "new() makes the fd non-blocking"
        );
        let writer = {
            let efd = efd.clone();
            evloop::spawn(async move {
                evloop::sleep(Duration::from_millis(10)).await;
                efd.write_with(|fd| write8(fd, 5)).await.unwrap();
            })
        };
        let got = efd.read_with(|fd| read8(fd)).await.unwrap();
        assert_eq!(got, 5);
        writer.await.unwrap();
    });
}

#[test]
fn read_with_runs_at_once_when_the_fd_is_ready() {
    let lp = new_loop();
    block_on(&lp, async {
        let fd = eventfd();
        write8(&fd, 2).unwrap();
        let efd = AsyncFd::new(fd).unwrap();
        // No wait: the first poll runs the read.
        let got = efd
            .read_with(|fd| read8(fd))
            .now_or_never()
            .expect("ready at once");
        assert_eq!(got.unwrap(), 2);
    });
}

#[test]
fn a_fresh_unready_eventfd_is_not_readable() {
    let lp = new_loop();
    let efd = Rc::new(Cell::new(None));
    let done = Rc::new(Cell::new(false));
    let (e, d) = (efd.clone(), done.clone());
    let _t = lp.create_task(async move {
        let fd = AsyncFd::new(eventfd()).unwrap();
        fd.readable().await.unwrap();
        d.set(true);
        e.set(Some(fd));
    });
    run_iterations(&lp, 20);
    assert!(
        !done.get(),
        "readable() completed on an eventfd with nothing to read"
    );
}

#[test]
fn several_tasks_wait_on_one_direction_and_one_event_wakes_them_all() {
    let lp = new_loop();
    block_on(&lp, async {
        let efd = Rc::new(AsyncFd::new(eventfd()).unwrap());
        let woken = Rc::new(Cell::new(0));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (efd, woken) = (efd.clone(), woken.clone());
                evloop::spawn(async move {
                    efd.readable().await.unwrap();
                    woken.set(woken.get() + 1);
                })
            })
            .collect();
        for _ in 0..5 {
            evloop::yield_now().await;
        }
        assert_eq!(woken.get(), 0, "nothing to read yet");
        write8(efd.get_ref(), 1).unwrap();
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(woken.get(), 3);
    });
}

/// A task that waits, reads by hand (not through `read_with`) until `WouldBlock`
/// and waits again neither spins (the second wait blocks until new data) nor misses
/// data it left unread (a wait with data still there completes at once).
#[test]
fn waiting_around_hand_made_reads_neither_spins_nor_hangs() {
    let lp = new_loop();
    block_on(&lp, async {
        let (r, w) = pipe();
        let r = AsyncFd::new(r).unwrap();
        write_buf(&w, b"0123456789").unwrap();
        r.readable().await.unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(read_buf(r.get_ref(), &mut buf).unwrap(), 4);
        // Six bytes left: waiting again must not hang on an edge already used.
        r.readable()
            .now_or_never()
            .expect("data is left: readable at once")
            .unwrap();
        let mut rest = [0u8; 16];
        assert_eq!(read_buf(r.get_ref(), &mut rest).unwrap(), 6);
        let e = read_buf(r.get_ref(), &mut rest).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // Drained by hand: the next wait waits (a pending poll, not a spin).
        let mut wait = Box::pin(r.readable());
        assert!(
            wait.as_mut().now_or_never().is_none(),
            "readable with nothing to read"
        );
        let writer = evloop::spawn(async move {
            evloop::sleep(Duration::from_millis(5)).await;
            write_buf(&w, b"more").unwrap();
            w
        });
        evloop::timeout(PATIENCE, wait).await.unwrap().unwrap();
        assert_eq!(read_buf(r.get_ref(), &mut rest).unwrap(), 4);
        drop(writer.await.unwrap());
    });
}

/// A writer fills a pipe until `WouldBlock` while a reader drains it: `write_with`
/// waits for room and resumes, and every byte arrives once, in order.
#[test]
fn a_pipe_carries_a_megabyte_through_write_with_and_read_with() {
    let lp = new_loop();
    block_on(&lp, async {
        let (r, w) = pipe();
        let (r, w) = (AsyncFd::new(r).unwrap(), AsyncFd::new(w).unwrap());
        let data = net_util::payload(1 << 20);
        let writer = {
            let data = data.clone();
            evloop::spawn(async move {
                let mut at = 0;
                while at < data.len() {
                    at += w.write_with(|fd| write_buf(fd, &data[at..])).await.unwrap();
                }
                // Dropping `w` closes the write end (it owns it): the reader sees EOF.
            })
        };
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read_with(|fd| read_buf(fd, &mut buf)).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        net_util::assert_bytes_eq(&got, &data, "the pipe's bytes");
    });
}

#[test]
fn a_timerfd_becomes_readable_when_it_expires() {
    let lp = new_loop();
    block_on(&lp, async {
        let start = std::time::Instant::now();
        let tfd = AsyncFd::new(timerfd(Duration::from_millis(20))).unwrap();
        let expirations = tfd.read_with(|fd| read8(fd)).await.unwrap();
        assert_eq!(expirations, 1);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(
            tfd.read_with(|fd| read8(fd)).now_or_never().is_none(),
            "expired once only"
        );
    });
}

#[test]
fn it_stays_registered_between_waits_and_dropping_deregisters_without_closing_a_borrowed_fd() {
    let lp = new_loop();
    block_on(&lp, async {
        let fd = eventfd();
        let efd = AsyncFd::new(&fd).unwrap();
        for i in 1..=3 {
            write8(&fd, 1).unwrap();
            assert_eq!(efd.read_with(|fd| read8(fd)).await.unwrap(), 1, "round {i}");
            // Still registered: a second registration of the same fd is refused.
            let e = AsyncFd::new(&fd).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        }
        drop(efd);
        assert!(
            fd_is_open(fd.as_raw_fd()),
            "dropping an AsyncFd<&OwnedFd> closed the fd"
        );
        // Deregistered: it can be registered again.
        let again = AsyncFd::new(fd.as_fd()).unwrap();
        write8(&fd, 7).unwrap();
        assert_eq!(again.read_with(|fd| read8(fd)).await.unwrap(), 7);
    });
}

#[test]
fn dropping_an_owning_asyncfd_closes_its_fd_and_into_inner_hands_it_back_open() {
    let lp = new_loop();
    block_on(&lp, async {
        let efd = AsyncFd::new(eventfd()).unwrap();
        let raw = efd.as_raw_fd();
        drop(efd);
        assert!(!fd_is_open(raw), "an AsyncFd<OwnedFd> owns its fd");

        let mut efd = AsyncFd::new(eventfd()).unwrap();
        let raw = efd.as_raw_fd();
        let _: &mut OwnedFd = efd.get_mut();
        let fd = efd.into_inner().unwrap();
        assert_eq!(fd.as_raw_fd(), raw);
        assert!(fd_is_open(raw));
        write8(&fd, 1).unwrap();
        let again = AsyncFd::new(fd).unwrap(); // deregistered by into_inner
        assert_eq!(again.read_with(|fd| read8(fd)).await.unwrap(), 1);
    });
}

#[test]
fn a_regular_file_is_an_error() {
    let lp = new_loop();
    let file = TempFile::new("asyncfd");
    block_on(&lp, async {
        let e = AsyncFd::new(&file.file).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    });
    assert!(fd_is_open(file.file.as_raw_fd()));
}

#[test]
fn new_outside_a_running_loop_panics_saying_so() {
    let fd = eventfd();
    let panic = std::panic::catch_unwind(|| AsyncFd::new(&fd).map(drop)).unwrap_err();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("outside a running loop"), "{msg}");
    assert!(fd_is_open(fd.as_raw_fd()));
}

#[test]
fn waits_report_a_closed_loop() {
    let lp = new_loop();
    let efd = block_on(&lp, async { AsyncFd::new(eventfd()).unwrap() });
    lp.close().unwrap();
    let lp2 = new_loop();
    block_on(&lp2, async {
        let e = efd.readable().await.unwrap_err();
        assert!(e.to_string().contains("closed"), "{e}");
        let e = efd.read_with(|fd| read8(fd)).await.unwrap_err();
        assert!(e.to_string().contains("closed"), "{e}");
    });
    assert!(
        efd.into_inner().is_ok(),
        "taken apart after its loop closed"
    );
}
