//! The waker of a task's first poll, for a task that has no id yet.
//!
//! Most tasks of a spawn-heavy program finish in their first step without anyone
//! keeping their waker (`spawn(async { .. })` that never waits). Such a task needs no
//! slot in the loop's table of runnables, so a task gets its id lazily: its first
//! poll is handed a waker that points at a [`FirstPoll`] on the stack of that poll,
//! and the id is taken only when the waker escapes the poll, or when the poll returns
//! `Pending` (see `TaskCell::run`).
//!
//! The waker can only be used during the poll: it is lent to the future as
//! `&Context`, every clone is a different waker, and dropping it does nothing. So the
//! `FirstPoll` it points at outlives every use (a scoped thread that uses it joins
//! before the poll returns). What its functions do:
//! - on the loop's thread, `clone` registers the task and returns its ordinary
//!   word waker, and `wake_by_ref` queues a step at once (as a wake of the ordinary
//!   waker would);
//! - on another thread (a scoped thread inside the poll), nothing of the loop can be
//!   touched: `clone` returns a [`Deferred`] waker, and `wake_by_ref` marks it woken.
//!   After the poll, the loop (`settle`) registers the task and tells the `Deferred`
//!   its word: its later wakes are ordinary wakes of that word, and a wake that came
//!   before is delivered then.

use std::sync::{Arc, Mutex, OnceLock};
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::event_loop::Loop;
use crate::ready::RunnableId;

/// What the first-poll waker needs of its task, without its future's type.
pub(super) trait Unregistered {
    /// Registers the task if it has no id yet; returns its id.
    fn register(&self, lp: &Loop) -> RunnableId;
    /// A wake on the loop's thread: queues a step unless one is queued.
    fn wake_here(&self, lp: &Loop);
    /// Whether the task is done.
    fn done(&self) -> bool;
}

/// Lives on the stack of a task's first poll; the first-poll waker points at it.
pub(super) struct FirstPoll<'a> {
    loop_id: u16,
    /// Touched only on the loop's thread (see [`FirstPoll::on_loop_thread`]).
    lp: &'a Loop,
    /// Touched only on the loop's thread (see [`FirstPoll::on_loop_thread`]).
    task: &'a dyn Unregistered,
    /// Made by the first use of the waker from another thread.
    deferred: OnceLock<Arc<Deferred>>,
}

impl<'a> FirstPoll<'a> {
    pub(super) fn new(lp: &'a Loop, task: &'a dyn Unregistered) -> FirstPoll<'a> {
        FirstPoll {
            loop_id: lp.loop_id(),
            lp,
            task,
            deferred: OnceLock::new(),
        }
    }

    /// The waker to poll with. It must not outlive `self`, which holds as long as it
    /// is only lent to the poll (through a `Context`), never stored.
    pub(super) fn waker(&self) -> Waker {
        let raw = RawWaker::new((self as *const FirstPoll<'_>).cast(), &FIRST_POLL);
        // SAFETY: the data pointer is a `FirstPoll` that outlives every use of this
        // waker: it is only lent to one poll through `&Context` (clones are other
        // wakers, see `first_clone`; dropping it does nothing). Its functions are
        // thread-safe: the `!Sync` fields are touched only on the loop's thread
        // (`on_loop_thread`), other threads touch only `loop_id` and the `OnceLock`.
        unsafe { Waker::from_raw(raw) }
    }

    /// After the poll, on the loop's thread: if the waker was used from another
    /// thread, the task gets its id (unless it is done) and the `Deferred` learns
    /// it; a wake it held is delivered now.
    #[inline]
    pub(super) fn settle(self) {
        if let Some(deferred) = self.deferred.get() {
            self.settle_deferred(deferred);
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_deferred(&self, deferred: &Deferred) {
        let word = if self.task.done() {
            None
        } else {
            Some(self.task.register(self.lp).pack(self.loop_id))
        };
        let woken = {
            let mut state = deferred.0.lock().unwrap_or_else(|e| e.into_inner());
            let woken = matches!(*state, Settled::Pending { woken: true });
            *state = match word {
                Some(w) => Settled::Known(w),
                None => Settled::Dead,
            };
            woken
        };
        if woken && word.is_some() {
            self.task.wake_here(self.lp);
        }
    }

    /// Whether the caller runs on the loop's thread. The poll runs inside a run of
    /// the task's loop, so that loop is the one running on its thread, and no other
    /// thread runs a loop with its id (ids are unique among live loops).
    fn on_loop_thread(&self) -> bool {
        Loop::running_id() == Some(self.loop_id)
    }

    fn deferred(&self) -> &Arc<Deferred> {
        self.deferred
            .get_or_init(|| Arc::new(Deferred(Mutex::new(Settled::Pending { woken: false }))))
    }
}

static FIRST_POLL: RawWakerVTable =
    RawWakerVTable::new(first_clone, first_wake, first_wake, first_drop);

/// # Safety
/// `data` is the `FirstPoll` of a poll in progress (see [`FirstPoll::waker`]).
unsafe fn first_poll<'a>(data: *const ()) -> &'a FirstPoll<'a> {
    // SAFETY: see the function's contract.
    unsafe { &*data.cast::<FirstPoll<'a>>() }
}

fn first_clone(data: *const ()) -> RawWaker {
    // SAFETY: only the first-poll waker has this vtable, and it is used only during
    // its poll (see `FirstPoll::waker`).
    let first = unsafe { first_poll(data) };
    if first.on_loop_thread() {
        let rid = first.task.register(first.lp);
        super::task_raw_waker(first.loop_id, rid)
    } else {
        let d = Arc::into_raw(first.deferred().clone());
        RawWaker::new(d.cast(), &DEFERRED)
    }
}

fn first_wake(data: *const ()) {
    // SAFETY: as in `first_clone`.
    let first = unsafe { first_poll(data) };
    if first.on_loop_thread() {
        first.task.wake_here(first.lp);
    } else {
        first.deferred().wake();
    }
}

fn first_drop(_: *const ()) {}

/// A first-poll waker cloned on another thread: it waits (a plain lock, taken once
/// per wake; this path is rare) for the loop to tell it the task's word.
pub(super) struct Deferred(Mutex<Settled>);

enum Settled {
    /// The poll has not settled yet; `woken` if a wake came meanwhile.
    Pending { woken: bool },
    /// The task's waker word: wakes are ordinary wakes of it.
    Known(u64),
    /// The task finished in that poll: wakes do nothing.
    Dead,
}

impl Deferred {
    fn wake(&self) {
        let word = {
            let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match &mut *state {
                Settled::Pending { woken } => {
                    *woken = true;
                    return;
                }
                Settled::Known(w) => *w,
                Settled::Dead => return,
            }
        };
        super::wake_word(word);
    }
}

static DEFERRED: RawWakerVTable = RawWakerVTable::new(
    deferred_clone,
    deferred_wake,
    deferred_wake_by_ref,
    deferred_drop,
);

fn deferred_clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` came from `Arc::into_raw` of an `Arc<Deferred>` (in
    // `first_clone` or here) whose count this waker holds.
    unsafe { Arc::increment_strong_count(data.cast::<Deferred>()) };
    RawWaker::new(data, &DEFERRED)
}

fn deferred_wake(data: *const ()) {
    deferred_wake_by_ref(data);
    deferred_drop(data);
}

fn deferred_wake_by_ref(data: *const ()) {
    // SAFETY: as in `deferred_clone`: the waker's count keeps the `Deferred` alive.
    let d = unsafe { &*data.cast::<Deferred>() };
    d.wake();
}

fn deferred_drop(data: *const ()) {
    // SAFETY: as in `deferred_clone`; this releases the count the waker held.
    unsafe { Arc::decrement_strong_count(data.cast::<Deferred>()) };
}
