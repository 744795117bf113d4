//! evloop inside a host main loop on plain `poll(2)`: the `Host` of
//! `examples/embed_host.rs`, used in process, and the example itself run as a process.
//! Nothing waits longer than one host iteration.
//!
//! Each host iteration is bounded by the host's idle cap (set to a few seconds here),
//! so a missed wake-up shows as a slow turn, never a hang.

mod util;

#[path = "../examples/embed_host.rs"]
#[allow(dead_code)]
mod host;

#[path = "util/example.rs"]
mod example;

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use evloop::Loop;
use host::Host;
use util::{Counter, send, socketpair};

/// The host's idle cap in these tests: a turn that takes this long missed a wake-up.
const CAP: Duration = Duration::from_secs(5);
/// Well under `CAP`: a turn faster than this was woken, not timed out.
const PROMPT: Duration = Duration::from_secs(3);

fn new_host() -> (Host, UnixStream) {
    let (to_host, pipe) = UnixStream::pair().unwrap();
    let mut host = Host::new(Loop::new().unwrap(), pipe).unwrap();
    host.idle_cap = CAP;
    (host, to_host)
}

/// One turn with nothing pending, capped short: lets what a previous step left settle.
fn settle(host: &mut Host) {
    host.idle_cap = Duration::from_millis(20);
    host.turn().unwrap();
    host.idle_cap = CAP;
}

/// One turn, which must come back promptly (woken, not timed out).
fn prompt_turn(host: &mut Host, what: &str) -> host::Turn {
    let start = Instant::now();
    let turn = host.turn().unwrap();
    assert!(
        start.elapsed() < PROMPT,
        "{what}: the host slept {:?} (its idle cap is {CAP:?})",
        start.elapsed()
    );
    turn
}

#[test]
fn a_callback_the_host_schedules_between_iterations_runs_in_the_next() {
    let (mut host, _to_host) = new_host();
    let ran = Rc::new(Cell::new(None));
    for round in 1..=3u64 {
        settle(&mut host);
        let r = ran.clone();
        let now = host.iteration.clone();
        host.lp.call_soon(move |_| r.set(Some(now.get())));
        let turn = prompt_turn(&mut host, "a callback scheduled between iterations");
        assert!(turn.ran_evloop, "round {round}");
        assert_eq!(ran.get(), Some(turn.iteration), "round {round}");
    }
}

#[test]
fn a_callback_scheduled_by_a_callback_runs_in_the_next_iteration() {
    let (mut host, _to_host) = new_host();
    let ran = Rc::new(Cell::new(None));
    let r = ran.clone();
    let now = host.iteration.clone();
    host.lp.call_soon(move |lp| {
        lp.call_soon(move |_| r.set(Some(now.get())));
    });
    let first = prompt_turn(&mut host, "the first callback");
    assert_eq!(ran.get(), None);
    let second = prompt_turn(&mut host, "the callback it scheduled");
    assert_eq!(ran.get(), Some(second.iteration));
    assert_eq!(second.iteration, first.iteration + 1);
}

#[test]
fn a_due_timer_runs_in_the_first_iteration_that_wakes_after_its_deadline() {
    let (mut host, _to_host) = new_host();
    let ran = Rc::new(Cell::new(None));
    let r = ran.clone();
    let now = host.iteration.clone();
    let delay = Duration::from_millis(30);
    host.lp.call_later(delay, move |_| r.set(Some(now.get())));
    let due = Instant::now() + delay;
    let mut last_woke = None;
    for _ in 0..100 {
        let turn = prompt_turn(&mut host, "a timer 30 ms away");
        if ran.get().is_some() {
            assert_eq!(ran.get(), Some(turn.iteration));
            if let Some(before) = last_woke {
                assert!(
                    before < due,
                    "the iteration before woke {:?} after the deadline and did not run the timer",
                    before - due
                );
            }
            return;
        }
        assert!(
            turn.woke < due + Duration::from_millis(1),
            "iteration {} woke {:?} after the deadline and did not run the timer",
            turn.iteration,
            turn.woke - due
        );
        last_woke = Some(turn.woke);
    }
    panic!("the timer never ran in 100 host iterations");
}

#[test]
fn a_threadsafe_call_wakes_the_hosts_poll() {
    let (mut host, _to_host) = new_host();
    let remote = host.lp.remote();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    settle(&mut host);
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        remote
            .call_soon_threadsafe(move |_| r.store(true, Ordering::SeqCst))
            .unwrap();
    });
    // The host may wake spuriously; within a few prompt turns the call runs.
    for _ in 0..10 {
        prompt_turn(&mut host, "a threadsafe call from another thread");
        if ran.load(Ordering::SeqCst) {
            sender.join().unwrap();
            return;
        }
    }
    panic!("the threadsafe call never ran");
}

#[test]
fn a_reader_that_leaves_data_unread_runs_every_iteration() {
    let (mut host, _to_host) = new_host();
    let (a, b) = socketpair();
    let got = Counter::new();
    let g = got.clone();
    host.lp
        .add_reader(b.as_raw_fd(), move |_| {
            assert_eq!(util::recv(&b, 1).unwrap().len(), 1);
            g.inc();
        })
        .unwrap();
    send(&a, b"xyz");
    for n in 1..=3 {
        prompt_turn(&mut host, "a reader with data left");
        assert_eq!(got.get(), n);
    }
}

#[test]
fn the_hosts_own_messages_are_served_alongside() {
    let (mut host, to_host) = new_host();
    send(&to_host, b"one\ntw");
    let turn = prompt_turn(&mut host, "a message on the host's pipe");
    assert_eq!(turn.messages, ["one"]);
    send(&to_host, b"o\n");
    let turn = prompt_turn(&mut host, "the rest of a message");
    assert_eq!(turn.messages, ["two"]);
}

/// The loop wakes its host only for work: an idle loop leaves the host asleep for its
/// whole cap.
#[test]
fn an_idle_loop_does_not_wake_the_host() {
    let (mut host, _to_host) = new_host();
    let ran = Counter::new();
    let r = ran.clone();
    host.lp.call_soon(move |_| r.inc());
    prompt_turn(&mut host, "a callback");
    assert_eq!(ran.get(), 1);
    host.idle_cap = Duration::from_millis(100);
    let start = Instant::now();
    let turn = host.turn().unwrap();
    assert!(
        !turn.ran_evloop,
        "evloop's fd was readable with nothing to do"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(90),
        "{:?}",
        start.elapsed()
    );
}

/// The example, as a process: it checks the same things itself and fails if one does
/// not hold.
#[test]
fn example_embed_host_serves_everything_within_one_host_iteration() {
    let (stdout, _) = example::run_example("embed_host");
    for line in [
        "evloop ran job 1",
        "evloop ran job 2",
        "evloop timer ran",
        "evloop ran the threadsafe call",
        "nothing waited longer than one host iteration",
    ] {
        example::assert_has(&stdout, line);
    }
}
