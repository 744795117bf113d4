//! Property test of `Queue`, `Lock` and `Semaphore` under random cancellations.
//!
//! A random program spawns producers (each puts a few items into a small bounded
//! queue, waiting when it is full), consumers (each gets a few items), lockers (hold
//! the lock across a sleep) and semaphore users (hold a permit across a sleep),
//! cancels random tasks at random moments (while they wait in line, while they hold
//! the lock or a permit, right after they were handed an item or a slot), puts and
//! gets without waiting from outside, and runs iterations (a manual clock, so the
//! sleeps cost no time).
//!
//! What must hold:
//! - no item is lost or duplicated: every item whose `put` completed is received by a
//!   consumer or still in the queue at the end, exactly once; an item that was never
//!   put (its producer cancelled while waiting for a slot) is dropped, never received;
//!   every item is dropped exactly once by the end; each producer's items arrive in
//!   the order it put them;
//! - at most one lock holder at a time, and at most `permits` semaphore holders;
//! - nothing waits for ever: every locker and semaphore user not cancelled finishes;
//! - nothing leaks: once every task has ended the lock is free and every permit is
//!   back.
//!
//! `PROPTEST_CASES` raises the number of programs for the long form (default 512).

#[path = "util/prop.rs"]
mod prop_util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use evloop::sync::{Lock, Queue, Semaphore};
use evloop::{Clock, Loop, Task};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

#[derive(Clone, Debug)]
enum Step {
    /// A producer of this many items.
    Producer(u8),
    /// A consumer of this many items.
    Consumer(u8),
    /// Holds the lock for this many ms.
    Locker(u8),
    /// Holds a permit for this many ms.
    SemUser(u8),
    /// Cancel the `n % spawned`th task.
    Cancel(u16),
    PutNowait,
    GetNowait,
    RunOnce,
}

#[derive(Clone, Debug)]
struct Program {
    capacity: usize,
    permits: usize,
    steps: Vec<Step>,
}

fn program() -> impl Strategy<Value = Program> {
    let step = prop_oneof![
        2 => (1u8..5).prop_map(Step::Producer),
        2 => (1u8..5).prop_map(Step::Consumer),
        2 => (0u8..4).prop_map(Step::Locker),
        2 => (0u8..4).prop_map(Step::SemUser),
        3 => any::<u16>().prop_map(Step::Cancel),
        1 => Just(Step::PutNowait),
        1 => Just(Step::GetNowait),
        5 => Just(Step::RunOnce),
    ];
    (1usize..4, 1usize..4, prop::collection::vec(step, 1..70)).prop_map(
        |(capacity, permits, steps)| Program {
            capacity,
            permits,
            steps,
        },
    )
}

/// An item: its producer and its number there; counts its drops.
struct Item {
    producer: usize,
    seq: usize,
    id: usize,
    world: Rc<World>,
}

impl Drop for Item {
    fn drop(&mut self) {
        let mut d = self.world.item_drops.borrow_mut();
        d[self.id] += 1;
    }
}

#[derive(Default)]
struct World {
    /// Drops per item id.
    item_drops: RefCell<Vec<usize>>,
    /// Item ids whose `put` completed (or `put_nowait` succeeded).
    put_done: RefCell<Vec<usize>>,
    /// (producer, seq, id) of the items consumers received, in order.
    received: RefCell<Vec<(usize, usize, usize)>>,
    lock_holders: Cell<usize>,
    sem_holders: Cell<usize>,
    faults: RefCell<Vec<String>>,
}

impl World {
    fn item(self: &Rc<Self>, producer: usize, seq: usize) -> Item {
        let mut d = self.item_drops.borrow_mut();
        d.push(0);
        Item {
            producer,
            seq,
            id: d.len() - 1,
            world: self.clone(),
        }
    }

    fn fault(&self, msg: String) {
        self.faults.borrow_mut().push(msg);
    }

    fn receive(&self, item: Item) {
        self.received
            .borrow_mut()
            .push((item.producer, item.seq, item.id));
    }
}

/// Leaves the holder count when dropped (the task may be cancelled while holding).
struct Holding<'a>(&'a Cell<usize>);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

enum Kind {
    Producer,
    Consumer,
    Locker,
    SemUser,
}

fn check_program(p: &Program) -> Result<(), TestCaseError> {
    let clock = Clock::manual();
    let lp = Loop::builder().clock(clock).build().unwrap();
    let panics = Rc::new(RefCell::new(Vec::<String>::new()));
    let p2 = panics.clone();
    lp.set_exception_handler(move |_, ctx| p2.borrow_mut().push(ctx.to_string()));
    let w = Rc::new(World::default());
    let q: Queue<Item> = Queue::bounded(p.capacity);
    let lock = Lock::new();
    let sem = Semaphore::new(p.permits);
    let mut tasks: Vec<(Kind, Task<()>, bool)> = Vec::new(); // (kind, task, cancelled)
    // Producer 0 is the test's own put_nowait.
    let mut producers = 1;
    let mut outside_seq = 0;

    for step in &p.steps {
        match *step {
            Step::Producer(n) => {
                let (w, q, me) = (w.clone(), q.clone(), producers);
                producers += 1;
                let t = lp.create_task(async move {
                    for seq in 0..n as usize {
                        let item = w.item(me, seq);
                        let id = item.id;
                        q.put(item)
                            .await
                            .expect("the queue is never shut down here");
                        w.put_done.borrow_mut().push(id);
                    }
                });
                tasks.push((Kind::Producer, t, false));
            }
            Step::Consumer(n) => {
                let (w, q) = (w.clone(), q.clone());
                let t = lp.create_task(async move {
                    for _ in 0..n {
                        let item = q.get().await.expect("the queue is never shut down here");
                        w.receive(item);
                    }
                });
                tasks.push((Kind::Consumer, t, false));
            }
            Step::Locker(ms) => {
                let (w, lock) = (w.clone(), lock.clone());
                let t = lp.create_task(async move {
                    let _guard = lock.lock().await;
                    w.lock_holders.set(w.lock_holders.get() + 1);
                    let _h = Holding(&w.lock_holders);
                    if w.lock_holders.get() > 1 {
                        w.fault(format!("{} lock holders at once", w.lock_holders.get()));
                    }
                    evloop::sleep(Duration::from_millis(ms.into())).await;
                });
                tasks.push((Kind::Locker, t, false));
            }
            Step::SemUser(ms) => {
                let (w, sem, permits) = (w.clone(), sem.clone(), p.permits);
                let t = lp.create_task(async move {
                    let _permit = sem.acquire().await;
                    w.sem_holders.set(w.sem_holders.get() + 1);
                    let _h = Holding(&w.sem_holders);
                    if w.sem_holders.get() > permits {
                        w.fault(format!(
                            "{} semaphore holders with {permits} permits",
                            w.sem_holders.get()
                        ));
                    }
                    evloop::sleep(Duration::from_millis(ms.into())).await;
                });
                tasks.push((Kind::SemUser, t, false));
            }
            Step::Cancel(n) => {
                if !tasks.is_empty() {
                    let i = n as usize % tasks.len();
                    tasks[i].1.cancel();
                    tasks[i].2 = true;
                }
            }
            Step::PutNowait => {
                let item = w.item(0, outside_seq);
                let id = item.id;
                if q.put_nowait(item).is_ok() {
                    w.put_done.borrow_mut().push(id);
                    outside_seq += 1;
                } else {
                    // Refused and handed back (then dropped): never put. Its number
                    // is used up, so the order check skips it.
                    outside_seq += 1;
                }
            }
            Step::GetNowait => {
                if let Ok(item) = q.get_nowait() {
                    w.receive(item);
                }
            }
            Step::RunOnce => lp.run_once(Some(Duration::ZERO)).unwrap(),
        }
        let faults = w.faults.borrow();
        prop_assert!(faults.is_empty(), "{:?}", *faults);
    }

    // Nothing waits for ever: every locker and semaphore user that was not cancelled
    // finishes (their holds are finite; the manual clock jumps to each sleep's end).
    let live = |tasks: &[(Kind, Task<()>, bool)]| {
        tasks
            .iter()
            .filter(|(k, t, c)| matches!(k, Kind::Locker | Kind::SemUser) && !c && !t.is_done())
            .count()
    };
    for _ in 0..10_000 {
        if live(&tasks) == 0 {
            break;
        }
        lp.run_once(Some(Duration::ZERO)).unwrap();
    }
    prop_assert_eq!(live(&tasks), 0, "a locker or semaphore user waits for ever");

    // End every task, then look at what is left.
    for (_, t, _) in &tasks {
        t.cancel();
    }
    for _ in 0..10_000 {
        if tasks.iter().all(|(_, t, _)| t.is_done()) {
            break;
        }
        lp.run_once(Some(Duration::ZERO)).unwrap();
    }
    prop_assert!(tasks.iter().all(|(_, t, _)| t.is_done()), "tasks never end");
    prop_assert!(!lock.is_locked(), "the lock is held by no one, yet locked");
    prop_assert_eq!(sem.available_permits(), p.permits, "permits lost");
    prop_assert_eq!(w.lock_holders.get() + w.sem_holders.get(), 0);
    let mut remaining = Vec::new();
    while let Ok(item) = q.get_nowait() {
        remaining.push(item.id);
    }
    prop_assert!(q.is_empty());

    let received = w.received.borrow().clone();
    let mut seen: Vec<usize> = received
        .iter()
        .map(|r| r.2)
        .chain(remaining.clone())
        .collect();
    seen.sort_unstable();
    let before = seen.len();
    seen.dedup();
    prop_assert_eq!(seen.len(), before, "an item came out twice");
    let mut put_done = w.put_done.borrow().clone();
    put_done.sort_unstable();
    for id in &put_done {
        prop_assert!(
            seen.binary_search(id).is_ok(),
            "item {} was put, then lost (received: {:?}, remaining: {:?})",
            id,
            received,
            remaining
        );
    }
    for id in &seen {
        prop_assert!(
            put_done.binary_search(id).is_ok(),
            "item {} came out but its put never completed",
            id
        );
    }
    // Each producer's items arrive in the order it put them.
    for producer in 0..producers {
        let seqs: Vec<usize> = received
            .iter()
            .filter(|r| r.0 == producer)
            .map(|r| r.1)
            .collect();
        prop_assert!(
            seqs.windows(2).all(|s| s[0] < s[1]),
            "producer {}'s items out of order: {:?}",
            producer,
            seqs
        );
    }
    drop(tasks);
    prop_assert!(panics.borrow().is_empty(), "{:?}", panics.borrow());
    lp.close().unwrap();
    let drops = w.item_drops.borrow();
    prop_assert!(
        drops.iter().all(|&d| d == 1),
        "every item is dropped exactly once: {:?}",
        *drops
    );
    Ok(())
}

#[test]
fn queue_lock_and_semaphore_lose_nothing_under_random_cancellations() {
    let config = prop_util::config(512);
    let mut runner = TestRunner::new(config);
    runner
        .run(&program(), |p| check_program(&p))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The cases most likely to lose something, by hand: a consumer handed an item and
/// cancelled before it runs; a producer handed a slot and cancelled; a lock waiter
/// handed the lock and cancelled; a permit likewise.
#[test]
fn handed_over_then_cancelled_passes_it_on() {
    use Step::*;
    let p = Program {
        capacity: 1,
        permits: 1,
        steps: vec![
            Consumer(1), // task 0
            Consumer(1), // task 1
            RunOnce,     // both wait for an item
            PutNowait,   // handed to 0
            Cancel(0),   // 0 never takes it: 1 must get it
            Producer(2), // task 2: the first put fills the queue
            Producer(1), // task 3
            RunOnce,
            RunOnce,
            Locker(3),  // task 4: holds the lock
            Locker(0),  // task 5: waits
            Locker(0),  // task 6: waits
            SemUser(3), // task 7
            SemUser(0), // task 8
            SemUser(0), // task 9
            RunOnce,
            Cancel(4), // the holder: 5 is handed the lock
            Cancel(5), // then cancelled: 6 must get it
            Cancel(7),
            Cancel(8),
            RunOnce,
            RunOnce,
        ],
    };
    check_program(&p).unwrap();
}
