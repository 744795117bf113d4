//! What the upper layers (tasks, the executor, sockets) and the cross-thread
//! machinery ask of the loop: registries of runnables and sources, wake-ups,
//! per-loop extensions, close hooks, and `invoke`, through which every callback runs.

use std::any::Any;
use std::cell::Cell;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::{CURRENT, Inner, Loop, RUNNING, WeakLoop};
use crate::errors::{Error, ErrorContext};
use crate::ready::{Entry, Packed, Runnable, RunnableId};
use crate::remote::{CallCell, POOL_MAX};
use crate::source::{SourceHandler, SourceId};

impl Inner {
    /// [`Loop::wake_packed`].
    #[inline(always)]
    fn wake_packed(&self, p: Packed) {
        // `wake` only sets the task's state bit (no user code), so it is asked with
        // the table borrowed, and the task's `Rc` is cloned only if a step is queued.
        let r = match self.runnables.borrow().get_packed(p) {
            Some(r) if r.wake() => r.clone(),
            _ => return,
        };
        self.push_step(r);
    }

    /// Queues a step of `r` ([`Loop::push_entry`], with the entry made in the
    /// queue's slot rather than moved through every call in between).
    #[inline(always)]
    fn push_step(&self, r: Rc<dyn Runnable>) {
        let was_empty = {
            let mut ready = self.ready.borrow_mut();
            let was_empty = ready.is_empty();
            ready.push_runnable(r);
            was_empty
        };
        // `Loop::queued_while_idle`.
        if was_empty && !self.running.get() {
            self.shared.force_wake();
        }
    }
}

impl Loop {
    /// Queues upper-layer work (a task step, a remote call on the loop thread).
    #[inline(always)]
    pub(crate) fn push_entry(&self, entry: Entry) {
        let was_empty = {
            let mut ready = self.inner.ready.borrow_mut();
            let was_empty = ready.is_empty();
            ready.push(entry);
            was_empty
        };
        if was_empty {
            self.queued_while_idle();
        }
    }

    /// Registers a library-owned socket, edge-triggered. A user registration left
    /// under the socket's fd number (a user fd closed while registered) is stale: it
    /// is evicted, and its closures dropped.
    #[track_caller]
    pub(crate) fn register_source(
        &self,
        source: &mut (impl mio::event::Source + AsRawFd),
        interest: mio::Interest,
        handler: Rc<dyn SourceHandler>,
    ) -> io::Result<SourceId> {
        if self.is_closed() {
            return Err(io::Error::other(Error::Closed));
        }
        let location = Location::caller();
        let fd = source.as_raw_fd();
        let registered = self
            .inner
            .io
            .borrow_mut()
            .register_source(source, fd, interest, handler, location);
        let (id, evicted) = registered?;
        let evicted = evicted.into_iter().flatten();
        self.discard_at("a stale reader or writer", evicted);
        Ok(id)
    }

    /// Deregisters a library-owned socket (before it is closed).
    pub(crate) fn deregister_source(&self, source: &mut impl mio::event::Source, id: SourceId) {
        let handler = self.inner.io.borrow_mut().deregister_source(source, id);
        self.discard("a library socket's handler", handler);
    }

    /// The number of the current iteration (for per-iteration budgets).
    pub(crate) fn iteration(&self) -> u64 {
        self.inner.stats.iterations.get()
    }

    /// Keeps a spent threadsafe-call cell for reuse (up to `POOL_MAX` of them: the
    /// pool takes no more, so the rest are freed at once).
    pub(crate) fn recycle_cell(&self, cell: Arc<CallCell>) {
        let mut recycled = self.inner.recycled.borrow_mut();
        if recycled.len() < POOL_MAX {
            recycled.push(cell);
        } // else `cell` is freed: spent, it holds no closure
    }

    /// A reference that does not keep the loop alive.
    pub(crate) fn downgrade(&self) -> WeakLoop {
        WeakLoop(Rc::downgrade(&self.inner))
    }

    /// Registers `r` (so that wakers find it by id); returns its id.
    pub(crate) fn register_runnable(&self, r: Rc<dyn Runnable>) -> RunnableId {
        let mut runnables = self.inner.runnables.borrow_mut();
        let rid = runnables.next();
        self.inner.shared.wakes().reserve(rid.key());
        runnables.insert(rid, r);
        rid
    }

    /// Unregisters a runnable (it is done).
    pub(crate) fn unregister_runnable(&self, rid: RunnableId) {
        let r = self.inner.runnables.borrow_mut().remove(rid);
        drop(r);
    }

    /// This loop's id (task wakers carry it).
    pub(crate) fn loop_id(&self) -> u16 {
        self.inner.loop_id
    }

    /// A wake of runnable `rid` on this thread: queues a step unless one is queued.
    pub(crate) fn wake_runnable(&self, rid: RunnableId) {
        let r = self.inner.runnables.borrow().get(rid).cloned();
        self.wake_found(r, false);
    }

    /// A waker's wake on this thread: queues a step unless one is queued.
    pub(crate) fn wake_packed(&self, p: Packed) {
        self.inner.wake_packed(p);
    }

    /// A waker's wake on the thread where its loop is running: a thread-local read
    /// and a compare, then [`wake_packed`](Loop::wake_packed). Returns false (and
    /// does nothing) if the loop running here, if any, is not loop `loop_id`.
    #[inline(always)]
    pub(crate) fn wake_on_running(loop_id: u16, p: Packed) -> bool {
        let running = RUNNING.try_with(Cell::get).unwrap_or(std::ptr::null());
        if running.is_null() {
            return false;
        }
        // SAFETY: a non-null `RUNNING` points at the `Inner` that `CURRENT`'s clone
        // keeps alive (the invariant written on `RUNNING`). The reference is used only
        // within this call, which runs no user code (a task's state bit, a queue
        // push, at most the loop's own wake-up write), so nothing can end the run,
        // and with it that clone, while it is held.
        let inner = unsafe { &*running };
        if inner.loop_id != loop_id {
            return false;
        }
        inner.wake_packed(p);
        true
    }

    /// The id of the loop running on this thread, if any.
    pub(crate) fn running_id() -> Option<u16> {
        CURRENT
            .try_with(|c| c.borrow().as_ref().map(|lp| lp.inner.loop_id))
            .ok()
            .flatten()
    }

    /// Calls `f` with the loop running on this thread, without cloning it; `None` if
    /// no loop is running here. `f` must run no user code: `CURRENT` stays borrowed
    /// while it runs, and a user callback could start a run on another loop.
    #[inline]
    pub(crate) fn with_running<R>(f: impl FnOnce(&Loop) -> R) -> Option<R> {
        CURRENT
            .try_with(|c| c.borrow().as_ref().map(f))
            .ok()
            .flatten()
    }

    /// A waker's wake from another thread, drained in the run phase: runs the step
    /// now unless one is queued. It wakes whatever task holds the waker's slot: wakes
    /// queued from other threads are coalesced per slot (see `remote_wakes`), so this
    /// entry may stand for the wake of a newer task in the slot than the one it names.
    pub(crate) fn wake_packed_now(&self, p: Packed) {
        let r = self.inner.runnables.borrow().get_slot(p).cloned();
        self.wake_found(r, true);
    }

    /// Wakes `r` if found: nothing if a step is already queued, else a step run now
    /// (`now`, from the run phase) or queued.
    fn wake_found(&self, r: Option<Rc<dyn Runnable>>, now: bool) {
        let Some(r) = r.filter(|r| r.wake()) else {
            return;
        };
        if now {
            let location = r.location();
            self.invoke("task step", location, || r.run(self));
        } else {
            self.push_entry(Entry::Runnable(r));
        }
    }

    /// Cancels the timer `key` names, if it is still pending (as its `TimerHandle`
    /// would).
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) fn cancel_timer(&self, key: crate::handle::TimerKey) {
        Inner::cancel(self.inner.clone(), key.0);
    }

    /// Every live runnable (task) not done: the registered ones and those whose
    /// first step is queued, for a shutdown that cancels them all (a task may be in
    /// both lists: cancelling it twice is harmless).
    pub(crate) fn live_runnables(&self) -> Vec<Rc<dyn Runnable>> {
        let ids = self.inner.runnables.borrow().ids();
        let mut live: Vec<Rc<dyn Runnable>> =
            ids.iter().filter_map(|&rid| self.runnable(rid)).collect();
        live.extend(self.inner.ready.borrow().runnables());
        live.retain(|r| !r.is_done());
        live
    }

    /// The registered runnable `rid`, if it is still live.
    pub(crate) fn runnable(&self, rid: RunnableId) -> Option<Rc<dyn Runnable>> {
        self.inner.runnables.borrow().get(rid).cloned()
    }

    /// Counts work in flight outside the loop (+1 when it starts, -1 when it is
    /// back): while any is, a manual clock does not jump ahead.
    pub(crate) fn external_work(&self, started: bool) {
        let n = &self.inner.external;
        n.set(if started { n.get() + 1 } else { n.get() - 1 });
    }

    /// The size the builder gave the default executor.
    pub(crate) fn executor_threads(&self) -> Option<usize> {
        self.inner.executor_threads
    }

    /// Whether `stop()` was called during this run.
    pub(crate) fn is_stopping(&self) -> bool {
        self.inner.stopping.get()
    }

    /// The upper-layer state of type `T`, made by `make` on first use.
    pub(crate) fn extension<T: Any>(&self, make: impl FnOnce() -> T) -> Rc<T> {
        let found = self
            .inner
            .extensions
            .borrow()
            .iter()
            .find_map(|e| e.clone().downcast::<T>().ok());
        if let Some(found) = found {
            return found;
        }
        let made = Rc::new(make());
        self.inner.extensions.borrow_mut().push(made.clone());
        made
    }

    /// The upper-layer state of type `T`, if it was made.
    pub(crate) fn find_extension<T: Any>(&self) -> Option<Rc<T>> {
        self.inner
            .extensions
            .borrow()
            .iter()
            .find_map(|e| e.clone().downcast::<T>().ok())
    }

    /// Registers `hook` to run when the loop is closed.
    pub(crate) fn on_close(&self, hook: impl FnOnce() + 'static) {
        self.inner.close_hooks.borrow_mut().push(Box::new(hook));
    }

    /// For scheduling calls: true if the loop is in the middle of `close()` dropping
    /// what was pending (a closure's `Drop` scheduling more work: that work is
    /// dropped too, the returned handle cancelled). Panics on a closed loop otherwise.
    #[track_caller]
    #[inline]
    pub(crate) fn closing_drops(&self, what: &str) -> bool {
        // One branch on the hot path: `dropping` implies `closed`.
        if self.inner.closed.get() {
            if self.inner.dropping.get() {
                return true;
            }
            self.closed_panic(what);
        }
        false
    }

    #[track_caller]
    #[cold]
    fn closed_panic(&self, what: &str) -> ! {
        panic!(
            "Loop::{what} called on a closed loop: a closed loop runs nothing more; create a new Loop"
        );
    }

    /// Runs `f` as a callback would run: panics caught and reported, slow calls
    /// reported in debug mode.
    #[inline]
    pub(crate) fn invoke(
        &self,
        what: &str,
        location: &'static Location<'static>,
        f: impl FnOnce(),
    ) {
        if self.inner.debug {
            self.invoke_timed(what, location, f);
        } else {
            self.catch(location, f);
        }
    }

    #[inline(never)]
    fn invoke_timed(&self, what: &str, location: &'static Location<'static>, f: impl FnOnce()) {
        let start = Instant::now();
        self.catch(location, f);
        let took = start.elapsed();
        self.inner.stats.callback_took(took, location);
        if took >= self.inner.slow_callback {
            log::warn!("Executing {what} scheduled at {location} took {took:.3?}");
        }
    }

    #[inline]
    fn catch(&self, location: &'static Location<'static>, f: impl FnOnce()) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            self.report_panic(location, payload);
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn report_panic(
        &self,
        location: &'static Location<'static>,
        payload: Box<dyn Any + Send>,
    ) {
        let ctx =
            ErrorContext::from_panic("a callback panicked", &*payload).with_location(location);
        self.call_exception_handler(ctx);
    }
}
