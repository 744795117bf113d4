//! A tiny deterministic single-threaded executor for the unit tests of `sync`, so
//! that they depend on nothing but std's `Future`/`Waker`.
//!
//! It behaves like the loop with tasks: a woken task is queued once (however many
//! wakes arrive), and [`Exec::run_briefly`] polls exactly the tasks queued when it
//! starts, in wake order (asyncio's `await asyncio.sleep(0)` from a test body).
//! [`Exec::cancel`] drops a task's future at once, as a cancelled task's next step
//! would.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Task ids in the order they were woken.
type ReadyQueue = Arc<Mutex<VecDeque<usize>>>;

struct TaskWaker {
    id: usize,
    /// Set while the task is in the ready queue, so a task is queued at most once.
    queued: AtomicBool,
    ready: ReadyQueue,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            self.ready.lock().unwrap().push_back(self.id);
        }
    }
}

struct Slot {
    /// `None` once the task finished or was cancelled (or while it is being polled).
    future: Option<BoxFuture>,
    waker: Arc<TaskWaker>,
}

/// The executor. Tasks may spawn tasks.
#[derive(Default)]
pub(crate) struct Exec {
    tasks: RefCell<Vec<Slot>>,
    ready: ReadyQueue,
}

/// A spawned task: its id and, once it completes, its output.
pub(crate) struct TaskRef<T> {
    pub(crate) id: usize,
    out: Rc<RefCell<Option<T>>>,
}

impl<T> TaskRef<T> {
    /// Whether the task completed (a cancelled task never does).
    pub(crate) fn is_done(&self) -> bool {
        self.out.borrow().is_some()
    }

    /// The task's output.
    ///
    /// # Panics
    /// If the task has not completed.
    pub(crate) fn take(&self) -> T {
        self.out.borrow_mut().take().expect("task not done")
    }
}

impl Exec {
    pub(crate) fn new() -> Exec {
        Exec::default()
    }

    /// Spawns `fut`; its first poll is at the next [`run_briefly`](Exec::run_briefly).
    pub(crate) fn spawn<F: Future + 'static>(&self, fut: F) -> TaskRef<F::Output> {
        let out = Rc::new(RefCell::new(None));
        let o = out.clone();
        let mut tasks = self.tasks.borrow_mut();
        let id = tasks.len();
        let waker = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(false),
            ready: self.ready.clone(),
        });
        tasks.push(Slot {
            future: Some(Box::pin(async move {
                let v = fut.await;
                *o.borrow_mut() = Some(v);
            })),
            waker: waker.clone(),
        });
        waker.wake();
        TaskRef { id, out }
    }

    /// Drops task `id`'s future now (a no-op if it already finished).
    pub(crate) fn cancel(&self, id: usize) {
        let fut = self.tasks.borrow_mut()[id].future.take();
        drop(fut); // outside the borrow: the future's drop may wake other tasks
    }

    /// Whether task `id`'s future still exists (not finished, not cancelled).
    pub(crate) fn is_alive(&self, id: usize) -> bool {
        self.tasks.borrow()[id].future.is_some()
    }

    /// One iteration: polls each task queued when it starts, once, in wake order.
    pub(crate) fn run_briefly(&self) {
        let batch: Vec<usize> = self.ready.lock().unwrap().drain(..).collect();
        for id in batch {
            let (fut, waker) = {
                let mut tasks = self.tasks.borrow_mut();
                let slot = &mut tasks[id];
                slot.waker.queued.store(false, Ordering::SeqCst);
                (slot.future.take(), slot.waker.clone())
            };
            let Some(mut fut) = fut else { continue };
            let waker = Waker::from(waker);
            let mut cx = Context::from_waker(&waker);
            if fut.as_mut().poll(&mut cx).is_pending() {
                self.tasks.borrow_mut()[id].future = Some(fut);
            }
        }
    }

    /// Runs iterations until no task is ready; returns how many it ran.
    pub(crate) fn run_until_stalled(&self) -> usize {
        let mut n = 0;
        while !self.ready.lock().unwrap().is_empty() {
            self.run_briefly();
            n += 1;
        }
        n
    }

    /// Runs until `task` completes and returns its output.
    ///
    /// # Panics
    /// If everything stalls first.
    pub(crate) fn run_until_complete<T>(&self, task: &TaskRef<T>) -> T {
        while !task.is_done() {
            assert!(
                !self.ready.lock().unwrap().is_empty(),
                "stalled: task {} can never complete",
                task.id
            );
            self.run_briefly();
        }
        task.take()
    }
}

/// Yields to the executor once (asyncio's `await asyncio.sleep(0)` inside a task).
pub(crate) fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}
