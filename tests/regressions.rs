//! Regressions found in review: each test failed before its fix.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use evloop::{Loop, TaskError};

/// A future that is ready at once and panics when dropped.
struct DropBomb;

impl Future for DropBomb {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u32> {
        Poll::Ready(7)
    }
}

impl Drop for DropBomb {
    fn drop(&mut self) {
        panic!("drop bomb");
    }
}

#[test]
fn a_future_panicking_in_drop_still_completes_its_task() {
    let lp = Loop::new().unwrap();
    lp.set_exception_handler(|_, _| {});
    let task = lp.create_task(DropBomb);
    lp.call_later(Duration::from_secs(5), |lp| lp.stop()); // a watchdog, not a limit
    let r = lp.run_until_complete(task).expect("the task completed");
    match r {
        Err(TaskError::Panicked(_)) => {}
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[test]
fn a_cancelled_future_panicking_in_drop_still_completes_its_task() {
    let lp = Loop::new().unwrap();
    lp.set_exception_handler(|_, _| {});
    let task = lp.create_task(async {
        let _bomb = DropBomb;
        std::future::pending::<()>().await;
    });
    lp.run_once(Some(Duration::ZERO)).unwrap(); // first poll: now suspended
    assert!(task.cancel());
    lp.call_later(Duration::from_secs(5), |lp| lp.stop());
    let r = lp.run_until_complete(task).expect("the task completed");
    assert!(r.unwrap_err().is_panic());
}

#[test]
fn close_survives_destructors_that_spawn_and_schedule() {
    struct Guard(Loop);
    impl Drop for Guard {
        fn drop(&mut self) {
            let t = self.0.create_task(async {});
            assert!(t.is_cancelled(), "a task spawned while closing never runs");
            let p = self.0.create_promise::<u8>();
            assert!(!p.is_done());
            self.0.call_soon(|_| unreachable!());
        }
    }
    let lp = Loop::new().unwrap();
    let g = Guard(lp.clone());
    let _t = lp.create_task(async move {
        let _g = g;
        std::future::pending::<()>().await
    });
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn an_interval_too_long_to_represent_ticks_once() {
    let lp = Loop::new().unwrap();
    let ticked = lp
        .run_until_complete(async {
            let mut every = evloop::interval(Duration::MAX);
            every.tick().await;
            evloop::timeout(Duration::from_millis(20), every.tick())
                .await
                .is_err()
        })
        .unwrap();
    assert!(ticked, "the second tick never comes");
}

#[test]
fn the_loops_own_fd_cannot_be_watched() {
    let lp = Loop::new().unwrap();
    assert!(lp.add_reader(lp.as_raw_fd(), |_| {}).is_err());
    assert!(!lp.remove_reader(lp.as_raw_fd()));
}
