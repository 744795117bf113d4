//! Threadsafe calls whose handles cancel while the loop runs them and recycles their
//! cells: each call runs or is cancelled, never both and never neither; a recycled
//! cell carries no stale cancel flag or closure into the next call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use evloop::Loop;

struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn cancels_racing_runs_with_recycled_cells_run_or_cancel_each_call_once() {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let ran = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let per_thread = 20_000;
    let threads = 2;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (remote, ran, dropped) = (remote.clone(), ran.clone(), dropped.clone());
            thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..per_thread {
                    let token = Counted(dropped.clone());
                    let r = ran.clone();
                    let h = remote
                        .call_soon_threadsafe(move |_| {
                            let _t = &token;
                            r.fetch_add(1, Ordering::SeqCst);
                        })
                        .unwrap();
                    match (i + t) % 4 {
                        0 => {
                            // Cancel at once: races the loop running it.
                            h.cancel();
                            kept.push(h);
                        }
                        1 => drop(h), // the cell may be recycled as soon as it ran
                        2 => kept.push(h),
                        _ => {
                            h.cancel();
                            drop(h);
                        }
                    }
                    if kept.len() > 64 {
                        kept.drain(..32);
                    }
                }
                drop(kept);
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    while workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(1))).unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
    for _ in 0..5 {
        lp.run_once(Some(Duration::ZERO)).unwrap();
    }
    let total = per_thread * threads;
    // Every closure dropped exactly once (run, or cancelled unrun).
    assert_eq!(dropped.load(Ordering::SeqCst), total);
    // Calls never cancelled (kinds 1 and 2: half of them) all ran.
    assert!(ran.load(Ordering::SeqCst) >= total / 2);

    // After the churn, fresh calls from recycled cells are not cancelled, and run.
    let fresh = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..2_000)
        .map(|_| {
            let f = fresh.clone();
            remote
                .call_soon_threadsafe(move |_| {
                    f.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
        })
        .collect();
    assert!(handles.iter().all(|h| !h.is_cancelled()));
    for _ in 0..3 {
        lp.run_once(Some(Duration::ZERO)).unwrap();
    }
    assert_eq!(fresh.load(Ordering::SeqCst), 2_000);
    assert!(handles.iter().all(|h| !h.is_cancelled()));
    lp.close().unwrap();
}
