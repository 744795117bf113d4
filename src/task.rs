//! `Task<T>`: a Rust future polled from loop callbacks, re-scheduled by its waker.
//!
//! A task step is an ordinary loop callback (a [`Runnable`] on the ready queue, not a
//! boxed closure). The task's waker is a plain word naming the task (see
//! `task_waker`): waking sets the task's `SCHEDULED` bit (see `task/state.rs`, where
//! every state bit is documented) and, if it was clear, queues one step. On the
//! loop's own thread that is a push onto the ready queue (no lock, no syscall, no
//! allocation); from another thread the word travels through the remote queue, once
//! per task until the loop takes it (see `remote_wakes`: however many threads wake a
//! pending task, one entry is queued for it).
//!
//! The word names the task by its id in the loop's table of runnables, which a task
//! takes lazily (see `Head::rid` and `task/first_poll.rs`): a task that finishes in
//! its first step without its waker escaping never takes one, so spawning and
//! finishing it is an allocation, a queue push and a poll. Until its first step a task
//! is reached through that queued step (by `close()`, the loop's drop and
//! `evloop::run`'s final cancellation).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::ptr;
use std::rc::Rc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::errors::{ErrorContext, panic_text};
use crate::event_loop::{Loop, WeakLoop, discard_unrun, local_loop_by_id};
use crate::promise::CallbackId;
use crate::ready::{Entry, Runnable, RunnableId};
use crate::remote::loop_by_id;

mod first_poll;
mod state;
use first_poll::{FirstPoll, Unregistered};
use state::State;

/// Why a task produced no output.
pub enum TaskError {
    /// The task was cancelled before it finished.
    Cancelled,
    /// The task's future panicked; this is the panic's payload
    /// (`std::panic::resume_unwind` it to propagate).
    Panicked(Box<dyn Any + Send>),
}

impl TaskError {
    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }

    /// The panic's message, when its payload was a `&str` or `String`.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            TaskError::Panicked(p) => panic_text(&**p),
            TaskError::Cancelled => None,
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Cancelled => f.write_str("Cancelled"),
            TaskError::Panicked(_) => f
                .debug_tuple("Panicked")
                .field(&self.panic_message().unwrap_or("<non-string payload>"))
                .finish(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Cancelled => f.write_str("task cancelled"),
            TaskError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "task panicked: {m}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl std::error::Error for TaskError {}

type TaskCallback<T> = Box<dyn FnOnce(&Loop, &Result<T, TaskError>)>;

/// How drop reports name a task's done-callback dropped unrun.
const DROPPED_CALLBACK: &str = "a task's done-callback";

/// A task's waker: no allocation and no reference count. Its data word is the
/// packed `(loop id, task key, low bits of the task id)` (see `RunnableId::pack`);
/// cloning copies the word and dropping does nothing. Waking looks the task up: on the
/// loop's own thread through the thread's table of loops (no lock, no syscall), from
/// another thread through the global table and the loop's remote queue. A waker that
/// outlives its task or loop finds nothing, or at worst (a reused slot) wakes a newer
/// task spuriously, which futures tolerate.
fn task_waker(loop_id: u16, rid: RunnableId) -> Waker {
    let raw = task_raw_waker(loop_id, rid);
    // SAFETY: the data pointer is never dereferenced: it is a plain word, and the
    // vtable's functions only decode it. Those functions are thread-safe (they go
    // through thread-local or lock-protected tables), cloning returns the same word
    // with the same vtable, and dropping holds nothing to release: the RawWaker
    // contract (thread safety, clone/drop pairing) holds.
    unsafe { Waker::from_raw(raw) }
}

/// The raw form of [`task_waker`].
fn task_raw_waker(loop_id: u16, rid: RunnableId) -> RawWaker {
    let word = rid.pack(loop_id) as usize;
    RawWaker::new(ptr::without_provenance(word), &TASK_WAKER)
}

static TASK_WAKER: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake, waker_drop);

fn waker_clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &TASK_WAKER)
}

fn waker_wake(data: *const ()) {
    wake_word(data.addr() as u64);
}

/// The wake of the waker whose word is `word`: inline, the common case (a wake on the
/// thread where the task's loop is running) is one thread-local read away from the
/// task's state bit and the ready queue.
#[inline(always)]
fn wake_word(word: u64) {
    let (loop_id, packed) = RunnableId::unpack(word);
    if !Loop::wake_on_running(loop_id, packed) {
        wake_elsewhere(loop_id, packed);
    }
}

/// [`wake_word`] when the loop running on this thread (if any) is not the task's.
#[cold]
#[inline(never)]
fn wake_elsewhere(loop_id: u16, packed: crate::ready::Packed) {
    if let Some(lp) = local_loop_by_id(loop_id) {
        lp.wake_packed(packed);
    } else if let Some(shared) = loop_by_id(loop_id) {
        shared.push_wake(packed);
    }
}

fn waker_drop(_: *const ()) {}

/// The state of a task that does not depend on its future's type, shared by the loop
/// (while it runs) and the [`Task`].
///
/// Kept small (it is most of an idle task's memory): `Cell`s rather than `RefCell`s
/// where a value is only ever swapped in and out, and no stored waker (the waker of
/// a step is a word made from `rid` at each poll, see `task_waker`).
struct Head<T> {
    lp: WeakLoop,
    /// The task's id in the loop's table of runnables, taken lazily:
    /// [`RunnableId::NONE`] until the waker of its first poll escapes that poll, the
    /// poll returns `Pending`, or the crate asks for it ([`Task::rid`]); so a task
    /// that finishes in its first step never has one. Kept until the task is done
    /// (it is unregistered then, and the id is stale).
    rid: Cell<RunnableId>,
    /// Set once done; taken by the `.await` that consumes it. A `Cell`: whoever
    /// looks at it takes it out and puts it back ([`Lent`]), with no borrow held
    /// across user code.
    result: Cell<Option<Result<T, TaskError>>>,
    /// Where the task stands: see [`State`], each bit with its invariant.
    state: State,
    /// Done-callbacks scheduled but not yet run: an `.await` waits for them, since
    /// it moves the result they are handed.
    callbacks_in_flight: Cell<u32>,
    /// Done-callbacks not yet scheduled, boxed so that a task without any (most)
    /// pays one word for them. Only ever swapped out whole (`take`) and back, never
    /// borrowed across user code.
    callbacks: Cell<Option<Box<DoneCallbacks<T>>>>,
    /// The waker of the `.await` of the task, if any; swapped like `callbacks`.
    awaiter: Cell<Option<Waker>>,
    location: &'static Location<'static>,
}

/// The done-callbacks of a task that was given any.
struct DoneCallbacks<T> {
    /// Not yet scheduled (emptied when the task is done).
    list: Vec<TaskCallback<T>>,
    /// How many were ever added: the next one's [`CallbackId`].
    added: u32,
}

/// A task: its head and, inline in the same allocation, its future.
struct TaskCell<F: Future> {
    head: Head<F::Output>,
    /// `None` once the future finished, panicked, was cancelled or shut down; it is
    /// dropped exactly once, at that moment, in place.
    ///
    /// Pinned: the cell lives in an `Rc` and never moves, and the future is never
    /// moved out of this slot (it is only polled through `Pin::new_unchecked` and
    /// dropped in place by assigning `None`).
    future: RefCell<Option<F>>,
}

/// A task seen without its future's type: what the [`Task`] handle holds.
trait TaskRef<T>: Runnable {
    fn head(&self) -> &Head<T>;
}

impl<F: Future + 'static> TaskRef<F::Output> for TaskCell<F> {
    fn head(&self) -> &Head<F::Output> {
        &self.head
    }
}

impl<T: 'static> Head<T> {
    /// Completes the task with `result`; `me` makes a reference to the task, needed
    /// only if done-callbacks are scheduled (so a detached task's finish clones none).
    fn finish(&self, me: &dyn Fn() -> Rc<dyn TaskRef<T>>, lp: &Loop, result: Result<T, TaskError>) {
        let panicked = matches!(result, Err(TaskError::Panicked(_)));
        if matches!(result, Err(TaskError::Cancelled)) {
            self.state.set(State::CANCELLED);
        }
        self.state.set(State::DONE);
        let rid = self.rid.get();
        if rid.is_some() {
            lp.unregister_runnable(rid);
        }
        let callbacks = self.callbacks.take();
        if self.state.is(State::DETACHED) && callbacks.is_none() {
            // Nobody can ever read the result (no handle, no callback, no awaiter: a
            // detached task's awaiter was dropped with its handle): drop it now,
            // with no borrow held, instead of with the cell.
            if let Err(TaskError::Panicked(p)) = &result
                && !self.state.insert(State::RETRIEVED)
            {
                let ctx = ErrorContext::from_panic("Task exception was never retrieved", &**p)
                    .with_location(self.location);
                lp.call_exception_handler(ctx);
            }
            drop(result);
            return;
        }
        self.result.set(Some(result));
        if let Some(mut callbacks) = callbacks {
            let list = std::mem::take(&mut callbacks.list);
            self.callbacks.set(Some(callbacks)); // keeps the count of those added
            let me = me();
            for f in list {
                self.schedule_callback(&me, lp, f);
            }
        }
        self.wake_awaiter();
        if panicked && self.state.is(State::DETACHED) && !self.state.is(State::RETRIEVED) {
            self.report_unretrieved(lp);
        }
    }

    /// Schedules done-callback `f`; on a closed loop nothing can run it, and it is
    /// dropped on its own (a panic in its `Drop` is reported).
    fn schedule_callback(&self, me: &Rc<dyn TaskRef<T>>, lp: &Loop, f: TaskCallback<T>) {
        if lp.is_closed() {
            lp.discard_one(DROPPED_CALLBACK, f, self.location);
            return;
        }
        self.callbacks_in_flight
            .set(self.callbacks_in_flight.get() + 1);
        let guard = InFlight(me.clone());
        lp.call_soon(move |lp| {
            let result = Lent::take(&guard.0.head().result);
            f(
                lp,
                result
                    .value
                    .as_ref()
                    .expect("done-callbacks run before the result is taken"),
            );
        });
    }

    /// Wakes the `.await` of the task, if any (taken first: the waker runs with no
    /// borrow held).
    fn wake_awaiter(&self) {
        if let Some(w) = self.awaiter.take() {
            w.wake();
        }
    }

    fn report_unretrieved(&self, lp: &Loop) {
        self.state.set(State::RETRIEVED);
        if let Some(ctx) = self.unretrieved_report() {
            lp.call_exception_handler(ctx);
        }
    }
}

impl<T> Head<T> {
    /// Takes the done-callbacks not yet scheduled out (`None` if none were ever
    /// added), keeping the count of those added.
    fn take_callbacks(&self) -> Option<Vec<TaskCallback<T>>> {
        let mut callbacks = self.callbacks.take()?;
        let list = std::mem::take(&mut callbacks.list);
        self.callbacks.set(Some(callbacks));
        Some(list)
    }

    /// The "Task exception was never retrieved" report of a panicked result.
    fn unretrieved_report(&self) -> Option<ErrorContext> {
        let result = Lent::take(&self.result);
        match &result.value {
            Some(Err(TaskError::Panicked(p))) => Some(
                ErrorContext::from_panic("Task exception was never retrieved", &**p)
                    .with_location(self.location),
            ),
            _ => None,
        }
    }
}

/// A task's result taken out of its cell to be looked at, put back when dropped
/// (even by a panic of the done-callback it is lent to). While it is out, the cell
/// holds `None`: nothing reads it then (an `.await` waits for the callbacks in
/// flight; a report needs `RETRIEVED` clear, and a done-callback sets it).
struct Lent<'a, T> {
    cell: &'a Cell<Option<Result<T, TaskError>>>,
    value: Option<Result<T, TaskError>>,
}

impl<'a, T> Lent<'a, T> {
    fn take(cell: &'a Cell<Option<Result<T, TaskError>>>) -> Lent<'a, T> {
        Lent {
            cell,
            value: cell.take(),
        }
    }
}

impl<T> Drop for Lent<'_, T> {
    fn drop(&mut self) {
        self.cell.set(self.value.take());
    }
}

impl<F: Future + 'static> TaskCell<F> {
    /// Polls the future once with `waker`; `None` if it is gone already.
    #[inline(always)]
    fn poll_once(&self, waker: &Waker) -> Option<std::thread::Result<Poll<F::Output>>> {
        let mut slot = self.future.borrow_mut();
        let fut = slot.as_mut()?;
        // SAFETY: the future is pinned: it lives inside the `Rc` allocation of
        // this cell, which never moves, and it is never moved out of its slot,
        // only dropped in place (`drop_future`) — see the field's invariant.
        let fut = unsafe { Pin::new_unchecked(fut) };
        let mut cx = Context::from_waker(waker);
        Some(catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx))))
    }

    /// What a poll's outcome makes of the task (`first`: a poll by `first_step`).
    #[inline(always)]
    fn after_poll(
        self: &Rc<Self>,
        lp: &Loop,
        polled: Option<std::thread::Result<Poll<F::Output>>>,
        first: bool,
    ) {
        match polled {
            None => {}
            Some(Ok(Poll::Pending)) if first => {
                let head = &self.head;
                // From now on only a waker (or a cancel) can reach the task: it needs
                // its id, and `close()` must find it.
                self.register(lp);
                // A cancel during a first poll found no id to wake: queue the step
                // that carries it out.
                if head.state.is(State::CANCEL_REQUESTED) && !head.state.insert(State::SCHEDULED) {
                    lp.push_entry(Entry::Runnable(self.clone()));
                }
            }
            Some(Ok(Poll::Pending)) => {}
            Some(Ok(Poll::Ready(v))) => {
                // A future that panics while being dropped fails its task.
                let result = match self.drop_future() {
                    None => Ok(v),
                    Some(panic) => Err(TaskError::Panicked(panic)),
                };
                self.finish(lp, result);
            }
            Some(Err(payload)) => {
                // The poll's panic is the one reported; one from the drop is dropped.
                drop(self.drop_future());
                self.finish(lp, Err(TaskError::Panicked(payload)));
            }
        }
    }

    /// Completes the task with `result`.
    fn finish(self: &Rc<Self>, lp: &Loop, result: Result<F::Output, TaskError>) {
        let me = || self.clone() as Rc<dyn TaskRef<F::Output>>;
        self.head.finish(&me, lp, result);
    }

    /// Drops the future in place (it is pinned: never moved out). A panic in its
    /// `Drop` is caught and handed back, so that the task still completes.
    fn drop_future(&self) -> Option<Box<dyn std::any::Any + Send>> {
        catch_unwind(AssertUnwindSafe(|| *self.future.borrow_mut() = None)).err()
    }
}

impl<F: Future + 'static> TaskCell<F> {
    /// A step of a task that is done (nothing to do) or asked to cancel (it drops
    /// its future and finishes cancelled).
    #[cold]
    #[inline(never)]
    fn step_done_or_cancelled(self: Rc<Self>, lp: &Loop) {
        let head = &self.head;
        if head.state.is(State::DONE) {
            return;
        }
        let result = match self.drop_future() {
            None => Err(TaskError::Cancelled),
            Some(panic) => Err(TaskError::Panicked(panic)),
        };
        self.finish(lp, result);
    }
}

/// Counts a scheduled done-callback until it has run or been dropped, then wakes the
/// awaiter that waits for the result.
struct InFlight<T: 'static>(Rc<dyn TaskRef<T>>);

impl<T: 'static> Drop for InFlight<T> {
    fn drop(&mut self) {
        let head = self.0.head();
        let n = head.callbacks_in_flight.get() - 1;
        head.callbacks_in_flight.set(n);
        if n == 0 {
            head.wake_awaiter();
        }
    }
}

impl<F: Future + 'static> Unregistered for Rc<TaskCell<F>> {
    fn register(&self, lp: &Loop) -> RunnableId {
        let head = &self.head;
        let rid = head.rid.get();
        if rid.is_some() {
            return rid;
        }
        let rid = lp.register_runnable(self.clone());
        head.rid.set(rid);
        rid
    }

    fn wake_here(&self, lp: &Loop) {
        if self.wake() {
            lp.push_entry(Entry::Runnable(self.clone()));
        }
    }

    fn done(&self) -> bool {
        self.head.state.is(State::DONE)
    }
}

impl<F: Future + 'static> Runnable for TaskCell<F> {
    fn run(self: Rc<Self>, lp: &Loop) {
        let head = &self.head;
        // One test for the two rare states (done, or asked to cancel).
        if head
            .state
            .clear_and_test(State::SCHEDULED, State::DONE | State::CANCEL_REQUESTED)
        {
            self.step_done_or_cancelled(lp);
            return;
        }
        // A task with no id yet (its first step, see `first_poll`) is polled with
        // the first-poll waker; it takes an id if that waker escapes the poll, or in
        // `after_poll` if the poll returns `Pending`. (One poll site: the future's
        // poll is inlined here.)
        let rid = head.rid.get();
        let first = (!rid.is_some()).then(|| FirstPoll::new(lp, &self));
        // Dropping either waker does nothing (a word waker holds nothing, and the
        // first-poll waker's clones are independent of it): it is forgotten rather
        // than dropped through its vtable.
        let waker = ManuallyDrop::new(match &first {
            Some(first) => first.waker(),
            None => task_waker(lp.loop_id(), rid),
        });
        let polled = self.poll_once(&waker);
        self.after_poll(lp, polled, first.is_some());
        if let Some(first) = first {
            first.settle();
        }
    }

    fn location(&self) -> &'static Location<'static> {
        self.head.location
    }

    fn cancel(&self) -> bool {
        let head = &self.head;
        if head.state.is(State::DONE) {
            return false;
        }
        // With no id, the task is before or in its first step: its queued step, or
        // the end of that poll (`after_poll`), carries the cancel out.
        if !head.state.insert(State::CANCEL_REQUESTED)
            && head.rid.get().is_some()
            && let Some(lp) = head.lp.upgrade()
        {
            lp.wake_runnable(head.rid.get());
        }
        true
    }

    fn is_done(&self) -> bool {
        self.head.state.is(State::DONE)
    }

    fn wake(&self) -> bool {
        !self.head.state.insert(State::SCHEDULED)
    }

    fn shutdown(&self, report: &mut dyn FnMut(Box<dyn Any + Send>)) {
        if let Some(panic) = self.drop_future() {
            report(panic);
        }
        let head = &self.head;
        if !head.state.insert(State::DONE) {
            head.state.set(State::CANCELLED);
            head.result.set(Some(Err(TaskError::Cancelled)));
            // Dropped one by one with no borrow held: a callback's `Drop` may use the
            // task (or panic, without aborting the process).
            for f in head.take_callbacks().into_iter().flatten() {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(f))) {
                    report(panic);
                }
            }
        }
        head.wake_awaiter();
    }
}

/// A Rust future running on a loop: made by [`Loop::create_task`] or [`spawn`].
///
/// - The first poll is a `call_soon` step; a wake schedules the next step, once,
///   however many wakes arrive before it runs.
/// - Dropping a `Task` detaches it: the loop keeps it running to completion.
/// - `.await` it (from another task, or in [`Loop::run_until_complete`]) for its output:
///   `Err(TaskError::Cancelled)` if it was cancelled, `Err(TaskError::Panicked)` if its
///   future panicked.
/// - A panicked task whose result nobody retrieved (by awaiting it or through a
///   done-callback) is reported to the exception handler once it is done and its
///   `Task` is dropped: asyncio's "Task exception was never retrieved".
///
/// ```
/// let lp = evloop::Loop::new().unwrap();
/// let out = lp.run_until_complete(async {
///     let a = evloop::spawn(async { 20 });
///     let b = evloop::spawn(async { 22 });
///     a.await.unwrap() + b.await.unwrap()
/// });
/// assert_eq!(out.unwrap(), 42);
/// ```
pub struct Task<T> {
    cell: Rc<dyn TaskRef<T>>,
}

impl Loop {
    /// Wraps `fut` in a [`Task`] and schedules its first step with `call_soon`. The
    /// future need not be `Send`.
    ///
    /// # Panics
    /// On a closed loop.
    #[track_caller]
    pub fn create_task<F: Future + 'static>(&self, fut: F) -> Task<F::Output> {
        self.create_task_at(fut, Location::caller())
    }

    /// `create_task`, naming where the task was spawned from.
    #[track_caller]
    pub(crate) fn create_task_at<F: Future + 'static>(
        &self,
        fut: F,
        location: &'static Location<'static>,
    ) -> Task<F::Output> {
        let dropping = self.closing_drops("create_task");
        let lp = self.downgrade();
        // Not registered: its queued first step is its only trace until then (see
        // `Head::rid`).
        let cell = Rc::new(TaskCell {
            head: Head {
                lp,
                rid: Cell::new(RunnableId::NONE),
                result: Cell::new(None),
                state: State::new(State::SCHEDULED),
                callbacks_in_flight: Cell::new(0),
                callbacks: Cell::new(None),
                awaiter: Cell::new(None),
                location,
            },
            future: RefCell::new(Some(fut)),
        });
        if dropping {
            // Spawned from a destructor while `close()` drops what was pending: the
            // task is cancelled at once, never polled.
            self.shut_down(&*cell);
            return Task { cell };
        }
        self.push_entry(Entry::Runnable(cell.clone()));
        Task { cell }
    }
}

impl<T: 'static> Task<T> {
    /// Asks the task to cancel: its future is dropped at its next step, and it
    /// completes with `Err(TaskError::Cancelled)`. Returns true if the task was not
    /// yet done (asking twice is harmless). A task cancelled before its first step is
    /// never polled; a cancel that arrives while the task is being polled takes effect
    /// at its next step, and if that poll completes the task, its output stands.
    pub fn cancel(&self) -> bool {
        self.cell.cancel()
    }

    /// Whether the task finished, panicked or was cancelled.
    pub fn is_done(&self) -> bool {
        self.cell.head().state.is(State::DONE)
    }

    /// Whether the task ended by cancellation.
    pub fn is_cancelled(&self) -> bool {
        self.cell.head().state.is(State::CANCELLED)
    }

    /// Adds `f`, called (through `call_soon`) with the task's result once it is done.
    /// Callbacks run in the order added; an `.await` of the task completes after them.
    ///
    /// # Panics
    /// If the task's output was already moved out by an `.await`.
    #[track_caller]
    pub fn add_done_callback(
        &self,
        f: impl FnOnce(&Loop, &Result<T, TaskError>) + 'static,
    ) -> CallbackId {
        assert!(
            !self.cell.head().state.is(State::TAKEN),
            "Task::add_done_callback after the task's output was taken by .await; add done-callbacks before awaiting"
        );
        let head = self.cell.head();
        head.state.set(State::RETRIEVED);
        let mut callbacks = head.callbacks.take().unwrap_or_else(|| {
            Box::new(DoneCallbacks {
                list: Vec::new(),
                added: 0,
            })
        });
        let id = callbacks.added;
        callbacks.added += 1;
        let done = head.state.is(State::DONE);
        if !done {
            callbacks.list.push(Box::new(f));
            head.callbacks.set(Some(callbacks));
        } else {
            head.callbacks.set(Some(callbacks));
            match head.lp.upgrade() {
                Some(lp) => head.schedule_callback(&self.cell, &lp, Box::new(f)),
                None => discard_unrun(None, DROPPED_CALLBACK, Some(f)),
            }
        }
        CallbackId(u64::from(id))
    }

    /// Where the task was created.
    pub fn location(&self) -> &'static Location<'static> {
        self.cell.head().location
    }

    /// The task's id, registering it if it has none yet (a task not yet stepped);
    /// [`RunnableId::NONE`] once it is done without one, or if its loop is gone.
    pub(crate) fn rid(&self) -> RunnableId {
        let head = self.cell.head();
        let rid = head.rid.get();
        if rid.is_some() || head.state.is(State::DONE) {
            return rid;
        }
        let Some(lp) = head.lp.upgrade() else {
            return rid;
        };
        let rid = lp.register_runnable(self.runnable());
        head.rid.set(rid);
        rid
    }

    /// Someone else (a `TaskGroup`) takes care of the task's panic.
    pub(crate) fn mark_retrieved(&self) {
        self.cell.head().state.set(State::RETRIEVED);
    }

    /// The task as loop work, to cancel it without knowing `T`.
    pub(crate) fn runnable(&self) -> Rc<dyn Runnable> {
        self.cell.clone() as Rc<dyn Runnable>
    }
}

impl<T: 'static> Future for Task<T> {
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let cell = self.cell.head();
        if cell.state.is(State::DONE) && cell.callbacks_in_flight.get() == 0 {
            match cell.result.take() {
                Some(r) => {
                    cell.state.set(State::TAKEN);
                    cell.state.set(State::RETRIEVED);
                    Poll::Ready(r)
                }
                None => panic!("Task polled again after it returned its output"),
            }
        } else {
            // One awaiter (a `Task` is not `Clone`): keep its latest waker, cloned only
            // if it would not wake the same task; the one replaced is dropped after it
            // is swapped out (its `Drop` may use the task).
            let kept = match cell.awaiter.take() {
                Some(w) if w.will_wake(cx.waker()) => Some(w),
                replaced => {
                    cell.awaiter.set(Some(cx.waker().clone()));
                    drop(replaced);
                    None
                }
            };
            if let Some(w) = kept {
                cell.awaiter.set(Some(w));
            }
            Poll::Pending
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        let cell = self.cell.head();
        cell.state.set(State::DETACHED);
        // Nobody can await the task any more: let go of the waker of the last `.await`
        // (a future that awaited `&mut task` and was dropped, a timeout).
        drop(cell.awaiter.take());
        if cell.state.is(State::DONE)
            && !cell.state.is(State::RETRIEVED)
            && let Some(ctx) = cell.unretrieved_report()
            && let Some(lp) = cell.lp.upgrade()
        {
            cell.state.set(State::RETRIEVED);
            lp.call_exception_handler(ctx);
        }
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("location", &self.cell.head().location)
            .field("done", &self.cell.head().state.is(State::DONE))
            .field("cancelled", &self.cell.head().state.is(State::CANCELLED))
            .finish()
    }
}

/// Spawns `fut` as a task on the loop running on this thread ([`Loop::current`]).
///
/// # Panics
/// Outside a running loop.
#[track_caller]
pub fn spawn<F: Future + 'static>(fut: F) -> Task<F::Output> {
    let location = Location::caller();
    // `create_task_at` on a running loop runs no user code (only a closing loop
    // drops the future at once, and a running loop is not closed).
    match Loop::with_running(|lp| lp.create_task_at(fut, location)) {
        Some(task) => task,
        None => no_running_loop("spawn"),
    }
}

/// The running loop, or a panic that says what to do.
#[track_caller]
pub(crate) fn current_loop(what: &str) -> Loop {
    Loop::current().unwrap_or_else(|| no_running_loop(what))
}

#[cold]
#[track_caller]
fn no_running_loop(what: &str) -> ! {
    panic!(
        "evloop::{what} called outside a running loop: call it from a task or callback, \
         or use the Loop's own method"
    )
}

#[cfg(test)]
mod layout {
    /// A task cell with its `Rc` counts fits 120 bytes for a small future: a glibc
    /// fastbin size, whose free is a push (no coalescing), where 1M live tasks
    /// otherwise pay ~120 instructions more per free.
    #[test]
    fn a_small_task_fits_120_bytes_with_its_counts() {
        assert_eq!(std::mem::size_of::<super::Head<()>>(), 80);
        assert!(std::mem::size_of::<super::TaskCell<std::future::Ready<()>>>() + 16 <= 120);
    }
}
