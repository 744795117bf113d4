//! The ticket line under Lock/Semaphore/Queue waiters: FIFO with waiters leaving
//! from the middle, a woken waiter dropped before it runs passing its permit or item
//! on, shutdown with getters and putters waiting, counts that never drift, and 10k
//! waiters of which every other leaves.

#[path = "util/futures.rs"]
mod futures_util;

use std::cell::RefCell;
use std::rc::Rc;

use evloop::sync::{Lock, Queue, Semaphore};
use evloop::{Loop, Task};
use futures_util::run_iterations;

#[test]
fn ten_thousand_semaphore_waiters_half_cancelled_are_served_in_fifo_order() {
    let lp = Loop::new().unwrap();
    let sem = Semaphore::new(0);
    let order: Rc<RefCell<Vec<usize>>> = Rc::default();
    let n = 10_000;
    let tasks: Vec<Task<()>> = (0..n)
        .map(|i| {
            let (s, o) = (sem.clone(), order.clone());
            lp.create_task(async move {
                let p = s.acquire().await;
                o.borrow_mut().push(i);
                drop(p); // handed to the next waiter at once
            })
        })
        .collect();
    run_iterations(&lp, 2);
    for t in tasks.iter().step_by(2) {
        t.cancel();
    }
    run_iterations(&lp, 2);
    assert_eq!(sem.available_permits(), 0);
    sem.add_permits(1);
    for _ in 0..(n / 2 + 10) {
        run_iterations(&lp, 1);
        if order.borrow().len() == n / 2 {
            break;
        }
    }
    let want: Vec<usize> = (1..n).step_by(2).collect();
    assert_eq!(*order.borrow(), want);
    assert_eq!(sem.available_permits(), 1, "the one permit came back");
    assert!(tasks.iter().all(Task::is_done));
}

#[test]
fn a_served_waiter_dropped_before_it_runs_passes_its_permit_on() {
    let lp = Loop::new().unwrap();
    let sem = Semaphore::new(0);
    let lock = Lock::new();
    let got: Rc<RefCell<Vec<&'static str>>> = Rc::default();
    let mk = |name: &'static str| {
        let (s, g) = (sem.clone(), got.clone());
        lp.create_task(async move {
            let _p = s.acquire().await;
            g.borrow_mut().push(name);
            std::future::pending::<()>().await;
        })
    };
    let a = mk("a");
    let b = mk("b");
    let c = mk("c");
    run_iterations(&lp, 2);
    // Serve a and b, then cancel them before they run: the permits go to c, then
    // back to the count.
    sem.add_permits(2);
    a.cancel();
    b.cancel();
    run_iterations(&lp, 4);
    assert_eq!(*got.borrow(), vec!["c"]);
    assert_eq!(sem.available_permits(), 1);
    c.cancel();
    run_iterations(&lp, 2);
    assert_eq!(sem.available_permits(), 2, "no permit lost or made");

    // The same with a lock: the woken owner dropped unrun hands the lock on.
    let guard = lock.try_lock().unwrap();
    let mk = |name: &'static str| {
        let (l, g) = (lock.clone(), got.clone());
        lp.create_task(async move {
            let _guard = l.lock().await;
            g.borrow_mut().push(name);
        })
    };
    got.borrow_mut().clear();
    let x = mk("x");
    let y = mk("y");
    let z = mk("z");
    run_iterations(&lp, 2);
    drop(guard);
    x.cancel();
    drop(y); // detached, keeps running
    run_iterations(&lp, 4);
    assert_eq!(*got.borrow(), vec!["y", "z"]);
    assert!(!lock.is_locked());
    assert!(z.is_done());
}

#[test]
fn a_woken_getter_dropped_before_it_runs_leaves_the_item_to_the_next() {
    let lp = Loop::new().unwrap();
    let q: Queue<u32> = Queue::bounded(2);
    let got: Rc<RefCell<Vec<(u32, u32)>>> = Rc::default();
    let getters: Vec<Task<()>> = (0..4)
        .map(|g| {
            let (q, got) = (q.clone(), got.clone());
            lp.create_task(async move {
                while let Ok(v) = q.get().await {
                    got.borrow_mut().push((g, v));
                }
            })
        })
        .collect();
    run_iterations(&lp, 2);
    q.put_nowait(1).unwrap();
    q.put_nowait(2).unwrap();
    getters[0].cancel();
    getters[2].cancel();
    run_iterations(&lp, 4);
    let mut items: Vec<u32> = got.borrow().iter().map(|p| p.1).collect();
    items.sort();
    assert_eq!(items, vec![1, 2]);
    assert!(got.borrow().iter().all(|p| p.0 == 1 || p.0 == 3));
    assert_eq!(q.len(), 0);
    // Putters waiting on a full queue, getters on an empty one, then shutdown.
    q.shutdown(false);
    run_iterations(&lp, 2);
    assert!(getters.iter().all(Task::is_done));
}

#[test]
fn shutdown_immediate_fails_waiting_getters_and_putters_and_drops_items_once() {
    let lp = Loop::new().unwrap();
    let q: Queue<Rc<()>> = Queue::bounded(1);
    let token = Rc::new(());
    q.put_nowait(token.clone()).unwrap();
    let results: Rc<RefCell<Vec<String>>> = Rc::default();
    let putters: Vec<Task<()>> = (0..3)
        .map(|i| {
            let (q, r, t) = (q.clone(), results.clone(), token.clone());
            lp.create_task(async move {
                match q.put(t).await {
                    Ok(()) => r.borrow_mut().push(format!("put{i} ok")),
                    Err(e) => {
                        drop(e);
                        r.borrow_mut().push(format!("put{i} shut"));
                    }
                }
            })
        })
        .collect();
    run_iterations(&lp, 2);
    assert_eq!(Rc::strong_count(&token), 5);
    // One getter takes the item, which frees a slot for put0, then shutdown before
    // put0 resumes... and before the other getters resume.
    let getters: Vec<Task<bool>> = (0..3)
        .map(|_| {
            let q = q.clone();
            lp.create_task(async move { q.get().await.is_ok() })
        })
        .collect();
    run_iterations(&lp, 1);
    q.shutdown(true);
    run_iterations(&lp, 4);
    assert!(putters.iter().all(Task::is_done) && getters.iter().all(Task::is_done));
    drop((putters, getters));
    run_iterations(&lp, 1);
    assert_eq!(
        Rc::strong_count(&token),
        1,
        "every item dropped once: {:?}",
        results.borrow()
    );
    assert_eq!(q.len(), 0);
    assert!(q.put_nowait(token.clone()).is_err());
    assert_eq!(Rc::strong_count(&token), 1);
}

#[test]
fn queue_len_and_semaphore_count_never_drift_under_churn() {
    let lp = Loop::new().unwrap();
    let q: Queue<usize> = Queue::bounded(3);
    let sem = Semaphore::new(2);
    let mut x = 7u64;
    let mut rnd = move || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        (x >> 33) as usize
    };
    let taken = Rc::new(RefCell::new(0usize));
    let mut tasks: Vec<Task<()>> = Vec::new();
    let mut put = 0usize;
    for round in 0..300 {
        match rnd() % 4 {
            0 => {
                let q = q.clone();
                put += 1;
                tasks.push(lp.create_task(async move {
                    let _ = q.put(round).await;
                }));
            }
            1 => {
                let (q, t) = (q.clone(), taken.clone());
                tasks.push(lp.create_task(async move {
                    if q.get().await.is_ok() {
                        *t.borrow_mut() += 1;
                    }
                }));
            }
            2 => {
                let s = sem.clone();
                tasks.push(lp.create_task(async move {
                    let _p = s.acquire().await;
                    evloop::sleep(std::time::Duration::ZERO).await;
                }));
            }
            _ => {
                if !tasks.is_empty() {
                    let i = rnd() % tasks.len();
                    tasks[i].cancel();
                }
            }
        }
        run_iterations(&lp, 1);
        assert!(q.len() <= 3);
        assert!(sem.available_permits() <= 2);
    }
    for t in &tasks {
        t.cancel();
    }
    run_iterations(&lp, 5);
    assert_eq!(sem.available_permits(), 2);
    let mut left = 0;
    while q.get_nowait().is_ok() {
        left += 1;
    }
    assert!(*taken.borrow() + left <= put);
    assert_eq!(q.len(), 0);
}
