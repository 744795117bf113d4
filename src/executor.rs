//! `run_in_executor`: blocking work on a thread pool, results back on the loop.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::event_loop::{Loop, WeakLoop};
use crate::task::Task;

type Job = Box<dyn FnOnce() + Send>;

/// asyncio's default: `min(32, cpus + 4)` threads.
fn default_threads() -> usize {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    (cpus + 4).min(32)
}

/// A loop's default executor: threads started on demand up to `max`, fed by a
/// channel. Shut down (channel closed, threads joined) by `Loop::close`.
struct Pool {
    max: usize,
    state: RefCell<PoolState>,
    /// Workers that finished a job and were not claimed since. A submit claims one, or
    /// starts a thread (up to `max`) if there is none to claim.
    idle: Arc<AtomicUsize>,
    /// Jobs submitted and not yet finished (queued or running).
    busy: Arc<AtomicUsize>,
    /// `close()` knows to shut this pool down.
    close_hooked: Cell<bool>,
}

struct PoolState {
    tx: Option<Sender<Job>>,
    rx: Receiver<Job>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(max: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            max,
            state: RefCell::new(PoolState {
                tx: Some(tx),
                rx,
                threads: Vec::new(),
            }),
            idle: Arc::new(AtomicUsize::new(0)),
            busy: Arc::new(AtomicUsize::new(0)),
            close_hooked: Cell::new(false),
        }
    }

    fn submit(&self, job: Job) {
        let busy = self.busy.clone();
        busy.fetch_add(1, Ordering::AcqRel);
        let job: Job = Box::new(move || {
            job();
            busy.fetch_sub(1, Ordering::AcqRel);
        });
        let mut st = self.state.borrow_mut();
        let tx = st
            .tx
            .as_ref()
            .expect("the executor of an open loop is running");
        if tx.send(job).is_err() {
            unreachable!("the pool holds a receiver while it runs");
        }
        // Claim an idle worker for this job (asyncio's idle semaphore); only if none
        // can be claimed, start a thread.
        let claimed = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !claimed && st.threads.len() < self.max {
            let rx = st.rx.clone();
            let idle = self.idle.clone();
            let n = st.threads.len();
            let spawned = thread::Builder::new()
                .name(format!("evloop-executor-{n}"))
                .spawn(move || worker(rx, idle));
            match spawned {
                Ok(h) => st.threads.push(h),
                // Queued work is still served by the threads we have; with none at all
                // it would wait for ever, so say so loudly.
                Err(e) if st.threads.is_empty() => {
                    panic!("run_in_executor: cannot start an executor thread: {e}")
                }
                Err(e) => log::warn!("run_in_executor: cannot start another thread: {e}"),
            }
        }
    }

    /// Closes the queue (workers finish what was submitted) and joins the threads.
    fn shutdown(&self) {
        let threads = {
            let mut st = self.state.borrow_mut();
            st.tx = None;
            std::mem::take(&mut st.threads)
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A pool thread: runs jobs until the queue is closed and drained. It counts itself
/// idle after each job; a submit claims an idle worker by taking one off the count.
fn worker(rx: Receiver<Job>, idle: Arc<AtomicUsize>) {
    while let Ok(job) = rx.recv() {
        job();
        idle.fetch_add(1, Ordering::AcqRel);
    }
}

/// The result of one job, handed from the worker to the task.
struct Slot<T> {
    inner: Mutex<(Option<thread::Result<T>>, Option<Waker>)>,
}

struct JobFuture<T> {
    slot: Arc<Slot<T>>,
    /// Counted as outside work while it waits, so that a manual clock does not jump
    /// past a blocking job.
    lp: WeakLoop,
}

impl<T> Drop for JobFuture<T> {
    fn drop(&mut self) {
        if let Some(lp) = self.lp.upgrade() {
            lp.external_work(false);
        }
    }
}

impl<T> Future for JobFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut g = self.slot.inner.lock();
        match g.0.take() {
            Some(Ok(v)) => Poll::Ready(v),
            // The job panicked: panic in the task too, so it completes with
            // `TaskError::Panicked` carrying the job's payload.
            Some(Err(payload)) => {
                drop(g);
                resume_unwind(payload)
            }
            None => {
                g.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Loop {
    /// Waits, while the loop runs, until no job submitted to the default executor is
    /// queued or running (asyncio's `shutdown_default_executor`, without closing the
    /// pool: [`close`](Loop::close) does that). A job that calls back into the loop
    /// (`Remote::call_soon_threadsafe`, a `RemoteTask` it waits for) is served
    /// meanwhile. Checks every millisecond: it is for shutdown, not a hot path.
    pub(crate) async fn executor_jobs_done(&self) {
        let Some(busy) = self.find_extension::<Pool>().map(|p| p.busy.clone()) else {
            return;
        };
        while busy.load(Ordering::Acquire) > 0 {
            crate::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Runs blocking `f` on the loop's default thread pool and returns a [`Task`] that
    /// completes on the loop with its result (asyncio's `run_in_executor(None, f)`).
    ///
    /// The pool starts threads on demand, up to `min(32, cpus + 4)` (or
    /// [`LoopBuilder::executor_threads`](crate::LoopBuilder::executor_threads)).
    /// A panic in `f` completes the task with `TaskError::Panicked`. Under a manual
    /// [`Clock`](crate::Clock), virtual time does not auto-advance while a job is out. Cancelling the
    /// task does not interrupt `f` (a running thread cannot be stopped); its result is
    /// dropped. [`close`](Loop::close) shuts the pool down: jobs already submitted
    /// finish, and the threads are joined.
    ///
    /// # Panics
    /// On a closed loop.
    ///
    /// ```
    /// let lp = evloop::Loop::new().unwrap();
    /// let sum = lp.run_until_complete(async {
    ///     let lp = evloop::Loop::current().unwrap();
    ///     let job = lp.run_in_executor(|| (1..=100u64).sum::<u64>()); // a blocking computation
    ///     job.await.unwrap()
    /// });
    /// assert_eq!(sum.unwrap(), 5050);
    /// ```
    #[track_caller]
    pub fn run_in_executor<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Task<T> {
        if self.closing_drops("run_in_executor") {
            drop(f); // asked from a destructor while `close()` drops: never runs
            return self.create_task(async { unreachable!("cancelled at creation") });
        }
        let pool =
            self.extension(|| Pool::new(self.executor_threads().unwrap_or_else(default_threads)));
        if !pool.close_hooked.replace(true) {
            let p = pool.clone();
            self.on_close(move || p.shutdown());
        }
        let slot = Arc::new(Slot {
            inner: Mutex::new((None, None)),
        });
        let job_slot = slot.clone();
        pool.submit(Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            let waker = {
                let mut g = job_slot.inner.lock();
                g.0 = Some(r);
                g.1.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }));
        self.external_work(true);
        self.create_task(JobFuture {
            slot,
            lp: self.downgrade(),
        })
    }
}
