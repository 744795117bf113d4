//! `TaskGroup`: structured concurrency, as asyncio 3.11's and trio's nursery.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use slab::Slab;

use crate::Loop;
use crate::errors::{ErrorContext, panic_text};
use crate::ready::Runnable;
use crate::task::{Task, TaskError, current_loop};
use crate::task_group_error::TaskGroupError;
use crate::waiters::{WaitQueue, Wakeups};

/// A set of child tasks awaited together.
///
/// Children are spawned into the group with [`spawn`](TaskGroup::spawn); awaiting
/// [`wait`](TaskGroup::wait) waits for all of them. A child that panics makes the
/// group cancel the others, and `wait` then reports every child's panic, in order,
/// as a [`TaskGroupError`] (asyncio's `ExceptionGroup`). A child that is cancelled
/// does not fail the group.
///
/// # Failing, as asyncio's `TaskGroup`
/// The siblings of a child that panicked are cancelled from a later loop callback
/// (asyncio cancels them in the failed task's done-callback), not inside the panic:
/// children whose steps run in the same loop iteration still run, and if they panic
/// too, each panic is reported. From that callback on (or from
/// [`cancel`](TaskGroup::cancel), or the group's drop) the group is *shutting down*:
/// a child spawned then is returned already cancelled.
///
/// Dropping the group before `wait` completed cancels the children still running, so
/// that no child outlives its group (as when the task holding it is cancelled); child
/// panics that `wait` never handed out then go to the exception handler.
///
/// ```
/// let lp = evloop::Loop::new().unwrap();
/// let total = lp.run_until_complete(async {
///     let group = evloop::TaskGroup::new();
///     let a = group.spawn(async { 1 });
///     let b = group.spawn(async { 2 });
///     group.wait().await.unwrap();
///     a.await.unwrap() + b.await.unwrap()
/// });
/// assert_eq!(total.unwrap(), 3);
/// ```
pub struct TaskGroup {
    inner: Rc<Group>,
}

struct Group {
    /// Children still running, to cancel them. A child removes itself when its
    /// future is dropped (finished, panicked or cancelled).
    children: RefCell<Slab<Rc<dyn Runnable>>>,
    /// Every child panic not yet handed out by `wait`, in order, with where the child
    /// was spawned.
    errors: RefCell<Vec<(TaskError, &'static Location<'static>)>>,
    /// The messages of the panics a `wait` handed out, for any later `wait` (the
    /// payloads went to the first).
    handed_out: RefCell<Vec<(String, &'static Location<'static>)>>,
    /// A child panicked: the siblings' cancellation is scheduled (or has run).
    failed: Cell<bool>,
    /// The children were cancelled (after a panic, by `cancel`, or by the group's
    /// drop): a child spawned from now on is returned cancelled.
    shutting_down: Cell<bool>,
    /// `wait` has returned: no more children.
    finished: Cell<bool>,
    /// The `wait` futures waiting for the last child. Invariant: notified ones are
    /// notified because the slab became empty.
    waiters: RefCell<WaitQueue>,
}

impl Group {
    fn cancel_all(&self) {
        self.shutting_down.set(true);
        let children: Vec<_> = self
            .children
            .borrow()
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        for c in children {
            c.cancel();
        }
    }

    /// Records a child's panic; the first schedules the siblings' cancellation.
    fn fail(
        self: &Rc<Self>,
        payload: Box<dyn std::any::Any + Send>,
        at: &'static Location<'static>,
    ) {
        self.errors
            .borrow_mut()
            .push((TaskError::Panicked(payload), at));
        if self.failed.replace(true) {
            return;
        }
        let group = Rc::downgrade(self);
        let cancel = move |_: &Loop| {
            if let Some(group) = Weak::upgrade(&group) {
                group.cancel_all();
            }
        };
        match Loop::current() {
            Some(lp) if !lp.is_closed() => drop(lp.call_soon(cancel)),
            _ => self.cancel_all(),
        }
    }

    /// What `wait` resolves to once no child is left.
    fn outcome(&self) -> Result<(), TaskGroupError> {
        let errors = std::mem::take(&mut *self.errors.borrow_mut());
        let mut handed_out = self.handed_out.borrow_mut();
        if errors.is_empty() && handed_out.is_empty() {
            return Ok(());
        }
        // Later waits get the messages; the first gets the payloads.
        let earlier: Vec<_> = handed_out
            .iter()
            .map(|(m, at)| (TaskError::Panicked(Box::new(m.clone())), *at))
            .collect();
        for (e, at) in &errors {
            let message = e.panic_message().unwrap_or("a TaskGroup child panicked");
            handed_out.push((message.to_owned(), at));
        }
        let (errors, locations) = earlier.into_iter().chain(errors).unzip();
        Err(TaskGroupError::new(errors, locations))
    }
}

impl TaskGroup {
    /// An empty group.
    pub fn new() -> TaskGroup {
        TaskGroup {
            inner: Rc::new(Group {
                children: RefCell::new(Slab::new()),
                errors: RefCell::new(Vec::new()),
                handed_out: RefCell::new(Vec::new()),
                failed: Cell::new(false),
                shutting_down: Cell::new(false),
                finished: Cell::new(false),
                waiters: RefCell::new(WaitQueue::default()),
            }),
        }
    }

    /// Spawns `fut` as a child task on the running loop.
    ///
    /// Into a group that is shutting down (its children were cancelled after a
    /// child panicked, or by [`cancel`](TaskGroup::cancel)), the task is returned
    /// already cancelled: [`Task::is_cancelled`] is true at once, and `fut` is never
    /// polled; it is dropped before `spawn` returns. (asyncio raises `RuntimeError`
    /// there; a cancelled task keeps `spawn` infallible and tells the caller the
    /// same.)
    ///
    /// # Panics
    /// Outside a running loop, or after [`wait`](TaskGroup::wait) has returned.
    #[track_caller]
    pub fn spawn<F: Future + 'static>(&self, fut: F) -> Task<F::Output> {
        assert!(
            !self.inner.finished.get(),
            "TaskGroup::spawn after the group's wait() returned: the group is finished"
        );
        let lp = current_loop("TaskGroup::spawn");
        let location = Location::caller();
        if self.inner.shutting_down.get() {
            let task = lp.create_task_at(fut, location);
            // (A loop that is closing has done this already.)
            if !task.is_done() {
                lp.shut_down(&*task.runnable()); // drops `fut`, marks the task cancelled
                lp.unregister_runnable(task.rid());
            }
            return task;
        }
        let key = self.inner.children.borrow().vacant_key();
        let child = Child {
            fut: Box::pin(fut),
            group: self.inner.clone(),
            key,
            location,
        };
        let task = lp.create_task_at(child, location);
        task.mark_retrieved(); // its panic is reported by `wait`
        self.inner.children.borrow_mut().insert(task.runnable());
        task
    }

    /// Cancels every child still running; from now on the group is shutting down
    /// (see [`spawn`](TaskGroup::spawn)).
    pub fn cancel(&self) {
        self.inner.cancel_all();
    }

    /// How many children are still running.
    pub fn len(&self) -> usize {
        self.inner.children.borrow().len()
    }

    /// Whether no child is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every child is done: `Ok(())`, or every child's panic.
    ///
    /// Several `wait`s may be awaited at once; all complete when the last child is
    /// done. The first to complete gets the panics' payloads; the others get
    /// `Panicked` errors holding the panics' messages.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            group: self,
            key: None,
        }
    }
}

impl Default for TaskGroup {
    fn default() -> Self {
        TaskGroup::new()
    }
}

impl Drop for TaskGroup {
    fn drop(&mut self) {
        if self.inner.finished.get() {
            return;
        }
        self.inner.cancel_all();
        // A child's panic that `wait` never handed out is not lost silently.
        let errors = std::mem::take(&mut *self.inner.errors.borrow_mut());
        for (error, at) in errors {
            if let TaskError::Panicked(payload) = error {
                let ctx = ErrorContext::from_panic(
                    format!(
                        "TaskGroup dropped before wait(): the panic of its child spawned at {at} was never retrieved"
                    ),
                    &*payload,
                );
                match Loop::current() {
                    Some(lp) => lp.call_exception_handler(ctx),
                    None => log::error!("{ctx}"),
                }
            }
        }
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("running", &self.len())
            .field("failed", &self.inner.failed.get())
            .field("shutting_down", &self.inner.shutting_down.get())
            .finish()
    }
}

/// The future of [`TaskGroup::wait`].
pub struct Wait<'a> {
    group: &'a TaskGroup,
    /// Our entry in `Group::waiters` while we wait.
    key: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = Result<(), TaskGroupError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let g = &self.group.inner;
        let mut wakeups = Wakeups::default();
        let empty = g.children.borrow().is_empty();
        let mut waiters = g.waiters.borrow_mut();
        if empty {
            if let Some(key) = self.key.take() {
                waiters.remove(key, &mut wakeups);
            }
            drop(waiters);
            g.finished.set(true);
            return Poll::Ready(g.outcome());
        }
        match self.key {
            // Notified, but a child was spawned since: wait again.
            Some(key) if waiters.is_notified(key) => {
                waiters.remove(key, &mut wakeups);
                self.key = Some(waiters.push(cx.waker()));
            }
            Some(key) => waiters.register(key, cx.waker(), &mut wakeups),
            None => self.key = Some(waiters.push(cx.waker())),
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut wakeups = Wakeups::default();
            self.group
                .inner
                .waiters
                .borrow_mut()
                .remove(key, &mut wakeups);
        }
    }
}

impl fmt::Debug for Wait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("waiting", &self.key.is_some())
            .finish()
    }
}

/// A child's future: reports a panic to the group, and leaves the group when dropped.
struct Child<F> {
    fut: Pin<Box<F>>,
    group: Rc<Group>,
    key: usize,
    /// Where the child was spawned.
    location: &'static Location<'static>,
}

impl<F: Future> Future for Child<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(payload) => {
                let message = panic_text(&*payload)
                    .unwrap_or("a TaskGroup child panicked")
                    .to_owned();
                self.group.fail(payload, self.location);
                resume_unwind(Box::new(message))
            }
        }
    }
}

impl<F> Drop for Child<F> {
    fn drop(&mut self) {
        // Each borrow ends with its statement: the child's `Rc` drops, and the
        // waiters wake, with no borrow of the group held.
        let removed = self.group.children.borrow_mut().try_remove(self.key);
        drop(removed);
        if self.group.children.borrow().is_empty() {
            let mut wakeups = Wakeups::default();
            self.group.waiters.borrow_mut().notify_all(&mut wakeups);
        }
    }
}
