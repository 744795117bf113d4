//! `TaskGroup`: structured concurrency, as asyncio 3.11's and trio's nursery.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use crate::Loop;
use crate::errors::{ErrorContext, panic_text};
use crate::ready::Runnable;
use crate::task::{Task, TaskError, current_loop};

/// A set of child tasks awaited together.
///
/// Children are spawned into the group with [`spawn`](TaskGroup::spawn); awaiting
/// [`wait`](TaskGroup::wait) waits for all of them. The first child that panics makes
/// the group cancel the others, and `wait` then reports that panic as
/// `Err(TaskError::Panicked(payload))` (the original payload; the child's own
/// [`Task`] sees a `Panicked` carrying the message only). A child that is cancelled
/// does not fail the group.
///
/// Dropping the group before `wait` completed cancels the children still running, so
/// that no child outlives its group (as when the task holding it is cancelled); a
/// child panic that `wait` never handed out then goes to the exception handler.
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
    /// The first child panic, until `wait` hands it out.
    error: RefCell<Option<TaskError>>,
    failed: Cell<bool>,
    /// `wait` has returned: no more children.
    finished: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl Group {
    fn cancel_all(&self) {
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

    fn fail(&self, payload: Box<dyn std::any::Any + Send>) {
        if !self.failed.replace(true) {
            *self.error.borrow_mut() = Some(TaskError::Panicked(payload));
            self.cancel_all();
        }
    }
}

impl TaskGroup {
    /// An empty group.
    pub fn new() -> TaskGroup {
        TaskGroup {
            inner: Rc::new(Group {
                children: RefCell::new(Slab::new()),
                error: RefCell::new(None),
                failed: Cell::new(false),
                finished: Cell::new(false),
                waiter: RefCell::new(None),
            }),
        }
    }

    /// Spawns `fut` as a child task on the running loop. In a group that is already
    /// failing, the child is cancelled before it is ever polled.
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
        let key = self.inner.children.borrow().vacant_key();
        let child = Child {
            fut: Box::pin(fut),
            group: self.inner.clone(),
            key,
        };
        let task = lp.create_task_at(child, Location::caller());
        task.mark_retrieved(); // its panic is reported by `wait`
        self.inner.children.borrow_mut().insert(task.runnable());
        if self.inner.failed.get() {
            task.cancel();
        }
        task
    }

    /// Cancels every child still running.
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

    /// Waits until every child is done: `Ok(())`, or the first child panic.
    pub fn wait(&self) -> Wait<'_> {
        Wait { group: self }
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
        let error = self.inner.error.borrow_mut().take();
        if let Some(TaskError::Panicked(payload)) = error {
            let ctx = ErrorContext::from_panic(
                "TaskGroup dropped before wait(): a child's panic was never retrieved",
                &*payload,
            );
            match Loop::current() {
                Some(lp) => lp.call_exception_handler(ctx),
                None => log::error!("{ctx}"),
            }
        }
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("running", &self.len())
            .field("failed", &self.inner.failed.get())
            .finish()
    }
}

/// The future of [`TaskGroup::wait`].
pub struct Wait<'a> {
    group: &'a TaskGroup,
}

impl Future for Wait<'_> {
    type Output = Result<(), TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let g = &self.group.inner;
        if g.children.borrow().is_empty() {
            g.finished.set(true);
            return Poll::Ready(match g.error.borrow_mut().take() {
                Some(e) => Err(e),
                None => Ok(()),
            });
        }
        *g.waiter.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl fmt::Debug for Wait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait").finish()
    }
}

/// A child's future: reports a panic to the group, and leaves the group when dropped.
struct Child<F> {
    fut: Pin<Box<F>>,
    group: Rc<Group>,
    key: usize,
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
                self.group.fail(payload);
                resume_unwind(Box::new(message))
            }
        }
    }
}

impl<F> Drop for Child<F> {
    fn drop(&mut self) {
        let removed = {
            let mut children = self.group.children.borrow_mut();
            children.try_remove(self.key)
        };
        drop(removed);
        if self.group.children.borrow().is_empty()
            && let Some(w) = self.group.waiter.borrow_mut().take()
        {
            w.wake();
        }
    }
}
