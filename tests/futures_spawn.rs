//! `futures::task::{Spawn, LocalSpawn}` for `Loop` and `Remote` (feature
//! `futures-task`): code written against those traits spawns on evloop.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use evloop::Loop;
use futures::task::{LocalSpawn, LocalSpawnExt, Spawn, SpawnExt};

/// A "library" that knows only the trait: spawns `n` local workers that record.
fn start_workers(spawner: &impl LocalSpawn, n: usize, log: Rc<RefCell<Vec<usize>>>) {
    for i in 0..n {
        let log = log.clone();
        spawner
            .spawn_local(async move {
                evloop::sleep(Duration::from_millis(1)).await; // runs on the loop
                log.borrow_mut().push(i);
            })
            .unwrap();
    }
}

#[test]
fn a_local_spawn_user_runs_its_tasks_on_the_loop() {
    let lp = Loop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    start_workers(&lp, 3, log.clone());
    lp.run_until_complete(evloop::sleep(Duration::from_millis(20)))
        .unwrap();
    let mut got = log.borrow().clone();
    got.sort();
    assert_eq!(got, vec![0, 1, 2]);
}

#[test]
fn spawn_with_handle_gives_the_output_back() {
    let lp = Loop::new().unwrap();
    let out = lp
        .run_until_complete(async {
            let lp = Loop::current().unwrap();
            let h = lp.spawn_with_handle(async { 6 * 7 }).unwrap();
            h.await
        })
        .unwrap();
    assert_eq!(out, 42);
}

#[test]
fn a_remote_spawns_send_futures_from_another_thread() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        remote.status().unwrap();
        // The trait's method (Remote has an inherent `spawn` too).
        SpawnExt::spawn(&remote, async move {
            tx.send(Loop::current().is_some()).unwrap();
            Loop::current().unwrap().stop();
        })
        .unwrap();
    });
    lp.run_forever().unwrap();
    worker.join().unwrap();
    assert!(rx.recv().unwrap(), "the future ran on the loop");
}

#[test]
fn a_closed_loop_refuses_with_spawn_error_shutdown() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    lp.close().unwrap();
    let e = lp.spawn_local(async {}).unwrap_err();
    assert!(e.is_shutdown());
    assert!(lp.status_local().unwrap_err().is_shutdown());
    assert!(Spawn::status(&lp).unwrap_err().is_shutdown());
    assert!(
        SpawnExt::spawn(&remote, async {})
            .unwrap_err()
            .is_shutdown()
    );
    assert!(remote.status().unwrap_err().is_shutdown());
}
