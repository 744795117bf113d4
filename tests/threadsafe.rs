//! `Remote`: threadsafe calls, their order, prompt wake-ups, `RemoteHandle`
//! cancellation, `Remote::stop`, and races with `close()`.

mod util;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Error, Loop, Remote, RemoteHandle};
use util::{Counter, Drops, Events, Watchdog};

#[test]
fn remote_and_remote_handle_are_send_sync_clone() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn clone<T: Clone>() {}
    send_sync::<Remote>();
    clone::<Remote>();
    send_sync::<RemoteHandle>();
}

#[test]
fn a_loop_blocked_in_poll_wakes_promptly() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let (started_tx, started_rx) = mpsc::channel();
    lp.call_soon(move |_| started_tx.send(()).unwrap());
    let sender = thread::spawn(move || {
        started_rx.recv().unwrap();
        // Let the loop settle into its blocking poll: it has nothing else to do.
        thread::sleep(Duration::from_millis(50));
        let sent = Instant::now();
        remote
            .call_soon_threadsafe(move |lp| {
                assert!(
                    sent.elapsed() < Duration::from_secs(1),
                    "woke after {:?}",
                    sent.elapsed()
                );
                lp.stop();
            })
            .unwrap();
    });
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    let start = Instant::now();
    lp.run_forever().unwrap();
    sender.join().unwrap();
    assert!(!dog.fired(), "the threadsafe call did not wake the loop");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn each_threads_calls_run_in_the_order_it_sent_them() {
    const THREADS: usize = 4;
    const CALLS: usize = 2000;
    let lp = Loop::new().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ran = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let (remote, seen, ran, barrier) =
                (lp.remote(), seen.clone(), ran.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..CALLS {
                    let (seen, ran) = (seen.clone(), ran.clone());
                    remote
                        .call_soon_threadsafe(move |lp| {
                            seen.lock().unwrap().push((t, i));
                            if ran.fetch_add(1, Ordering::SeqCst) + 1 == THREADS * CALLS {
                                lp.stop();
                            }
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    let dog = Watchdog::new(&lp, Duration::from_secs(20));
    lp.run_forever().unwrap();
    for s in senders {
        s.join().unwrap();
    }
    assert!(!dog.fired());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), THREADS * CALLS);
    for t in 0..THREADS {
        let mine: Vec<usize> = seen
            .iter()
            .filter(|(th, _)| *th == t)
            .map(|&(_, i)| i)
            .collect();
        assert_eq!(mine, (0..CALLS).collect::<Vec<_>>(), "thread {t}'s order");
    }
}

/// Called on the loop's own thread, `call_soon_threadsafe` is `call_soon`: one FIFO.
#[test]
fn on_the_loop_thread_it_is_fifo_with_call_soon() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..10 {
        let o = order.clone();
        if i % 2 == 0 {
            lp.call_soon(move |_| o.lock().unwrap().push(i));
        } else {
            remote
                .call_soon_threadsafe(move |_| o.lock().unwrap().push(i))
                .unwrap();
        }
    }
    // Also from inside a callback, while the loop runs.
    let (o, r) = (order.clone(), remote.clone());
    lp.call_soon(move |lp| {
        for i in 10..20 {
            let o = o.clone();
            if i % 2 == 0 {
                r.call_soon_threadsafe(move |_| o.lock().unwrap().push(i))
                    .unwrap();
            } else {
                lp.call_soon(move |_| o.lock().unwrap().push(i));
            }
        }
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

#[test]
fn calls_sent_while_the_loop_is_idle_run_at_the_next_run() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    thread::spawn(move || {
        for _ in 0..3 {
            let r = r.clone();
            remote
                .call_soon_threadsafe(move |_| {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        }
    })
    .join()
    .unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    lp.run_once(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 3);
}

#[test]
fn remote_handle_cancelled_from_another_thread_never_runs_and_drops_at_once() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let drops = Drops::new();
    let ran = Arc::new(AtomicBool::new(false));
    let (d, r) = (drops.clone(), ran.clone());
    let handle = thread::spawn(move || {
        let t = d.token();
        let h = remote
            .call_soon_threadsafe(move |_| {
                t.hold();
                r.store(true, Ordering::SeqCst);
            })
            .unwrap();
        assert!(!h.is_cancelled());
        h.cancel();
        assert!(h.is_cancelled());
        assert_eq!(d.dropped(), 1, "dropped at once, on the cancelling thread");
        h.cancel(); // twice: no-op
        h
    })
    .join()
    .unwrap();
    lp.run_once(Some(Duration::from_millis(50))).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    assert!(handle.is_cancelled());
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn remote_handle_cancelled_by_an_earlier_callback_of_the_same_iteration() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let ran = Arc::new(AtomicBool::new(false));
    let slot: Arc<Mutex<Option<RemoteHandle>>> = Arc::new(Mutex::new(None));
    let s = slot.clone();
    lp.call_soon(move |_| s.lock().unwrap().as_ref().unwrap().cancel());
    let r = ran.clone();
    let h = remote
        .call_soon_threadsafe(move |_| r.store(true, Ordering::SeqCst))
        .unwrap();
    *slot.lock().unwrap() = Some(h);
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn remote_handle_of_a_call_that_ran_is_not_cancelled() {
    let lp = Loop::new().unwrap();
    let h = lp.remote().call_soon_threadsafe(|_| {}).unwrap();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert!(!h.is_cancelled());
}

#[test]
fn remote_stop_from_another_thread_stops_run_forever() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let (started_tx, started_rx) = mpsc::channel();
    lp.call_soon(move |_| started_tx.send(()).unwrap());
    let stopper = thread::spawn(move || {
        started_rx.recv().unwrap();
        thread::sleep(Duration::from_millis(20));
        remote.stop();
    });
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    stopper.join().unwrap();
    assert!(!dog.fired(), "Remote::stop did not stop the loop");
    assert!(!lp.is_running());
}

#[test]
fn remote_stop_on_the_loop_thread_is_stop() {
    let lp = Loop::new().unwrap();
    let order = Events::new();
    let o = order.clone();
    lp.call_soon(move |lp| {
        o.push(1);
        let o2 = o.clone();
        lp.call_soon(move |_| o2.push(2));
    });
    lp.remote().stop();
    lp.run_forever().unwrap();
    assert_eq!(order.get(), [1], "one iteration, as after Loop::stop");
}

#[test]
fn remote_is_closed() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    assert!(!remote.is_closed());
    let r = remote.clone();
    assert!(!thread::spawn(move || r.is_closed()).join().unwrap());
    lp.close().unwrap();
    assert!(remote.is_closed());
    let r = remote.clone();
    assert!(thread::spawn(move || r.is_closed()).join().unwrap());
}

#[test]
fn remote_of_a_dropped_loop_is_closed() {
    let drops = Drops::new();
    let remote = {
        let lp = Loop::new().unwrap();
        let remote = lp.remote();
        // Queued but never drained: dropped with the loop.
        let d = drops.clone();
        let r = remote.clone();
        let h = thread::spawn(move || {
            let t = d.token();
            r.call_soon_threadsafe(move |_| t.hold()).unwrap()
        })
        .join()
        .unwrap();
        drop(lp);
        assert!(h.is_cancelled());
        remote
    };
    assert!(remote.is_closed());
    assert_eq!(drops.alive(), 0);
    let t = drops.token();
    assert!(matches!(
        remote.call_soon_threadsafe(move |_| t.hold()),
        Err(Error::Closed)
    ));
    assert_eq!(drops.alive(), 0);
}

#[test]
fn threadsafe_calls_queued_but_not_drained_are_dropped_by_close() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let drops = Drops::new();
    let d = drops.clone();
    let handles = thread::spawn(move || {
        (0..5)
            .map(|_| {
                let t = d.token();
                remote.call_soon_threadsafe(move |_| t.hold()).unwrap()
            })
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert_eq!(drops.dropped(), 0);
    lp.close().unwrap();
    assert_eq!(drops.dropped(), 5);
    assert!(handles.iter().all(RemoteHandle::is_cancelled));
}

/// Several threads keep sending while the loop runs, stops and closes. Every call
/// either ran, or was refused with `Err`, or was accepted and then dropped unrun with
/// its handle reporting cancelled; no closure outlives the loop's close.
#[test]
fn racing_close_loses_no_call_and_leaks_no_closure() {
    const THREADS: usize = 3;
    const MAX_CALLS: usize = 200_000;
    let lp = Loop::new().unwrap();
    let drops = Drops::new();
    let go = Arc::new(Barrier::new(THREADS + 1));

    type Outcome = (Option<RemoteHandle>, Arc<AtomicBool>);
    let senders: Vec<thread::JoinHandle<Vec<Outcome>>> = (0..THREADS)
        .map(|_| {
            let (remote, drops, go) = (lp.remote(), drops.clone(), go.clone());
            thread::spawn(move || {
                go.wait();
                let mut out = Vec::new();
                let mut errors = 0;
                while out.len() < MAX_CALLS && errors < 3 {
                    let ran = Arc::new(AtomicBool::new(false));
                    let (t, r) = (drops.token(), ran.clone());
                    match remote.call_soon_threadsafe(move |_| {
                        t.hold();
                        r.store(true, Ordering::SeqCst);
                    }) {
                        Ok(h) => {
                            assert_eq!(errors, 0, "accepted after a refusal: the loop reopened?");
                            out.push((Some(h), ran));
                        }
                        Err(Error::Closed) => {
                            errors += 1;
                            out.push((None, ran));
                        }
                        Err(e) => panic!("unexpected error {e}"),
                    }
                    if out.len() % 64 == 0 {
                        thread::yield_now();
                    }
                }
                out
            })
        })
        .collect();

    lp.call_later(Duration::from_millis(20), |lp| lp.stop());
    go.wait();
    lp.run_forever().unwrap();
    // Calls keep arriving between the stop and the close: those are queued, never
    // drained, and must be dropped by close().
    thread::sleep(Duration::from_millis(10));
    lp.close().unwrap();
    let closed_at = drops.dropped();

    let mut total = 0;
    let (mut ran_n, mut refused, mut dropped_unrun) = (0, 0, 0);
    for s in senders {
        for (handle, ran) in s.join().unwrap() {
            total += 1;
            let ran = ran.load(Ordering::SeqCst);
            match handle {
                None => {
                    assert!(!ran, "a refused call ran");
                    refused += 1;
                }
                Some(h) => {
                    assert!(
                        ran != h.is_cancelled(),
                        "an accepted call must have run or report cancelled (ran: {ran})"
                    );
                    if ran {
                        ran_n += 1;
                    } else {
                        dropped_unrun += 1;
                    }
                }
            }
        }
    }
    assert_eq!(drops.made(), total);
    assert_eq!(drops.alive(), 0, "closures leaked");
    assert!(closed_at <= total);
    assert!(ran_n > 0, "nothing ran at all");
    assert!(refused > 0, "the threads never saw the loop closed");
    let _ = dropped_unrun; // usually thousands, but scheduling decides
}

#[test]
fn threadsafe_call_can_schedule_on_the_loop() {
    let lp = Loop::new().unwrap();
    let ran = Counter::new();
    let remote = lp.remote();
    thread::spawn(move || {
        remote
            .call_soon_threadsafe(|lp| {
                lp.call_soon(|lp| lp.stop());
            })
            .unwrap();
    })
    .join()
    .unwrap();
    let r = ran.clone();
    lp.call_soon(move |_| r.inc());
    let dog = Watchdog::new(&lp, Duration::from_secs(10));
    lp.run_forever().unwrap();
    assert!(!dog.fired());
    assert_eq!(ran.get(), 1);
}
