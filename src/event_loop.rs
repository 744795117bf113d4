//! `Loop` and `LoopBuilder`: scheduling, and the iteration that runs callbacks.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::callback::TimerCallback;
use crate::capacity::{Peak, WINDOW};
use crate::clock::{Clock, NEVER, nanos};
use crate::errors::{Error, ErrorContext, default_exception_handler};
use crate::handle::{Handle, HandleState, Target, TimerHandle};
use crate::io::Io;
use crate::ready::{Callback, Entry, Ready, Runnable, Runnables};
use crate::remote::{CallCell, Queued, Remote, Shared, register_loop, unregister_loop};
use crate::stats::{Counters, Stats, add};
use crate::timers::Timers;

mod discard;
pub(crate) use discard::{discard_unrun, drop_payload};
mod hooks;
mod iteration;
mod trim;

/// The handler type stored by `set_exception_handler`.
type ExceptionHandler = Box<dyn FnMut(&Loop, &ErrorContext)>;

/// A callback-based event loop, in the style of asyncio's.
///
/// One thread owns a `Loop`. Timers, I/O readiness and work sent from other threads
/// all become callbacks on its ready queue, run one after another by
/// [`run_forever`](Loop::run_forever), [`run_once`](Loop::run_once) or
/// `run_until_complete`. Callbacks receive `&Loop`, so they need not capture it.
///
/// `Loop` is `!Send` and cheap to clone: all clones are the same loop. Other threads
/// use a [`Remote`].
///
/// # One iteration
/// Each iteration computes a timeout, polls I/O, queues expired timers and threadsafe
/// calls, then runs exactly the callbacks queued when its run phase began: see
/// [One iteration, phase by phase](crate#one-iteration-phase-by-phase) in the crate
/// docs, the one place the phases are described.
///
/// # Panics in callbacks
/// A panicking callback does not take the loop down: the panic is caught, handed to
/// the exception handler as an [`ErrorContext`] and the next callback runs. The same
/// goes for a destructor that panics when the loop drops a closure without running it
/// (a cancelled or replaced one, or what `close()` discards): it is reported, and the
/// loop goes on dropping the rest. (Built with `panic = "abort"`, there is nothing to
/// catch: the process aborts.)
///
/// # Drop re-entrancy
/// The loop drops user closures only when it holds no borrow of its own state, so a
/// closure's `Drop` may call into the loop (`remove_reader`, `call_soon`, a handle's
/// `cancel`, ...).
///
/// # Lifetime
/// The loop lives as long as a `Loop` clone does. A clone held *inside* the loop, by a
/// pending callback, timer, reader or task that captured one, is a reference cycle:
/// dropping your own clones then frees nothing (not the callbacks, not the loop's
/// fds). [`close()`](Loop::close) breaks every such cycle, since it drops all that is
/// pending; so does the work finishing. Callbacks need no clone (they are handed
/// `&Loop`), and a task can use [`Loop::current`] or the free functions
/// ([`spawn`](crate::spawn), [`sleep`](crate::sleep)) instead of capturing one.
/// Promises and tasks themselves hold the loop weakly and create no cycle.
///
/// # Memory
/// The ready queue, the timer store and the threadsafe queue grow for a burst (a
/// million callbacks at once) and give the room back once their use has stayed low
/// for 0.2 to 0.3 s (traffic that needs the same room every iteration keeps it: it
/// is never reallocated). A loop left idle after a burst wakes a few times, a tenth
/// of a second apart, to do so. `close()` releases them all, so a [`Remote`] that
/// outlives its loop holds nothing for it. (Handles name timers by slot, so the
/// timer store's table of slots cannot shrink below the highest slot still in use.)
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::Loop::new().unwrap();
/// lp.call_soon(|_| println!("first"));
/// lp.call_later(Duration::from_millis(1), |lp| {
///     println!("a millisecond later");
///     lp.stop();
/// });
/// lp.run_forever().unwrap();
/// ```
#[derive(Clone)]
pub struct Loop {
    inner: Rc<Inner>,
}

/// The state of a loop. Fields are separate `RefCell`s, each borrowed only briefly
/// and never while a user callback runs.
pub(crate) struct Inner {
    ready: RefCell<Ready>,
    timers: RefCell<Timers>,
    io: RefCell<Io>,
    /// What this loop's handles share (they answer `is_cancelled` from it).
    handles: Rc<HandleState>,
    /// A spare buffer swapped with the remote queue's on each drain.
    drained: RefCell<Vec<Queued>>,
    /// Spent threadsafe-call cells, handed back to the pool at the next drain (at most
    /// `POOL_MAX`: the pool takes no more).
    recycled: RefCell<Vec<Arc<CallCell>>>,
    /// The largest batch of threadsafe calls drained lately, which sizes `drained`,
    /// `recycled` and the remote queue's shards (see `crate::capacity`).
    remote_peak: Cell<Peak>,
    /// The largest capacity a shard of the remote queue had when last seen.
    shard_capacity: Cell<usize>,
    /// When the current window of use ends (see `crate::capacity`).
    trim_at: Cell<Instant>,
    shared: Arc<Shared>,
    /// This loop's id in the global table of loops (wakers carry it).
    loop_id: u16,
    clock: Clock,
    running: Cell<bool>,
    stopping: Cell<bool>,
    closed: Cell<bool>,
    /// `close()` is dropping what was pending: scheduling calls made from those drops
    /// are dropped too, instead of panicking.
    dropping: Cell<bool>,
    /// Iterations since the last one that polled the OS (see `POLL_INTERVAL`).
    unpolled: Cell<u32>,
    /// Work in flight outside the loop that will wake it (executor jobs): a manual
    /// clock does not auto-advance past it.
    external: Cell<usize>,
    /// When the last poll returned (for `Stats::time_busy`).
    last_poll: Cell<Option<Instant>>,
    stats: Counters,
    debug: bool,
    slow_callback: Duration,
    handler: RefCell<Option<ExceptionHandler>>,
    /// Upper-layer work that wakers find by id (tasks).
    runnables: RefCell<Runnables>,
    /// Threads of the default executor (`None`: asyncio's default).
    executor_threads: Option<usize>,
    /// Per-loop state of upper layers (the executor), by type.
    extensions: RefCell<Vec<Rc<dyn Any>>>,
    /// Called by `close()`, for upper layers (the executor) to shut down.
    close_hooks: RefCell<Vec<Box<dyn FnOnce()>>>,
}

thread_local! {
    /// The loop running on this thread, if any.
    static CURRENT: RefCell<Option<Loop>> = const { RefCell::new(None) };
    /// The `Inner` of the loop in `CURRENT`, or null when none runs here: a plain word
    /// (no `RefCell` flag, no reference count, no destructor to register) for the hot
    /// path of a task's wake ([`Loop::wake_on_running`]).
    ///
    /// Invariant: non-null exactly while `CURRENT` holds `Some(lp)`, and then it is
    /// `Rc::as_ptr(&lp.inner)`: set just after `CURRENT` when a run starts (`enter`),
    /// cleared just before `CURRENT` is emptied when it ends (`RunGuard::drop`), so
    /// while it is non-null, `CURRENT`'s clone keeps the `Inner` alive.
    static RUNNING: Cell<*const Inner> = const { Cell::new(std::ptr::null()) };
    /// The loops created on this thread, by the address of their `Shared`, so that a
    /// `Remote` used on its loop's own thread can skip the channel.
    static OWNED: RefCell<Vec<(usize, u16, Weak<Inner>)>> = const { RefCell::new(Vec::new()) };
}

/// The live loop created on this thread whose `(Shared address, id)` matches.
fn find_owned(matches: impl Fn(usize, u16) -> bool) -> Option<Loop> {
    OWNED
        .try_with(|owned| {
            owned
                .borrow()
                .iter()
                .find(|(a, i, _)| matches(*a, *i))
                .and_then(|(_, _, w)| w.upgrade())
                .map(|inner| Loop { inner })
        })
        .ok()
        .flatten()
}

/// The loop with id `id`, if it was created on this thread and still lives.
pub(crate) fn local_loop_by_id(id: u16) -> Option<Loop> {
    find_owned(|_, i| i == id)
}

/// The loop that `shared` belongs to, if it was created on this thread and still lives.
pub(crate) fn local_loop(shared: &Arc<Shared>) -> Option<Loop> {
    let addr = Arc::as_ptr(shared) as usize;
    find_owned(|a, _| a == addr)
}

/// A [`Loop`] reference that does not keep it alive (promises and tasks hold one, so
/// that a loop is freed with its last `Loop` clone).
#[derive(Clone)]
pub(crate) struct WeakLoop(Weak<Inner>);

impl WeakLoop {
    pub(crate) fn upgrade(&self) -> Option<Loop> {
        self.0.upgrade().map(|inner| Loop { inner })
    }
}

/// Configures and builds a [`Loop`].
///
/// ```
/// use std::time::Duration;
/// let lp = evloop::Loop::builder()
///     .debug(true)
///     .slow_callback_duration(Duration::from_millis(20))
///     .build()
///     .unwrap();
/// assert!(!lp.is_closed());
/// ```
#[derive(Debug, Clone)]
pub struct LoopBuilder {
    debug: bool,
    slow_callback: Duration,
    clock: Clock,
    executor_threads: Option<usize>,
}

impl LoopBuilder {
    /// Debug mode: callbacks running longer than
    /// [`slow_callback_duration`](LoopBuilder::slow_callback_duration) are logged at
    /// warning level with where they were scheduled. Off by default; its cost is a
    /// clock reading around each callback.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// The threshold of debug mode's slow-callback warning (default 100 ms).
    pub fn slow_callback_duration(mut self, d: Duration) -> Self {
        self.slow_callback = d;
        self
    }

    /// The loop's clock (default [`Clock::system()`]); [`Clock::manual()`] for tests.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How many threads the default executor of
    /// [`run_in_executor`](Loop::run_in_executor) may start (default, as asyncio's:
    /// `min(32, cpus + 4)`). Threads start on demand.
    ///
    /// # Panics
    /// If `n` is zero.
    pub fn executor_threads(mut self, n: usize) -> Self {
        assert!(
            n > 0,
            "LoopBuilder::executor_threads needs at least one thread"
        );
        self.executor_threads = Some(n);
        self
    }

    /// Builds the loop on the current thread.
    pub fn build(self) -> io::Result<Loop> {
        let (io, waker) = Io::new()?;
        let shared = Shared::new(waker);
        self.clock.attach(&shared);
        let loop_id = register_loop(&shared);
        let inner = Rc::new_cyclic(|me| Inner {
            ready: RefCell::new(Ready::new()),
            timers: RefCell::new(Timers::new()),
            io: RefCell::new(io),
            handles: HandleState::new(me.clone(), self.clock.epoch()),
            drained: RefCell::new(Vec::new()),
            recycled: RefCell::new(Vec::new()),
            remote_peak: Cell::new(Peak::default()),
            shard_capacity: Cell::new(0),
            trim_at: Cell::new(Instant::now() + WINDOW),
            loop_id,
            shared,
            clock: self.clock,
            running: Cell::new(false),
            stopping: Cell::new(false),
            closed: Cell::new(false),
            dropping: Cell::new(false),
            unpolled: Cell::new(0),
            external: Cell::new(0),
            last_poll: Cell::new(None),
            stats: Counters::default(),
            debug: self.debug,
            slow_callback: self.slow_callback,
            handler: RefCell::new(None),
            runnables: RefCell::new(Runnables::default()),
            executor_threads: self.executor_threads,
            extensions: RefCell::new(Vec::new()),
            close_hooks: RefCell::new(Vec::new()),
        });
        let addr = Arc::as_ptr(&inner.shared) as usize;
        OWNED.with(|o| {
            o.borrow_mut()
                .push((addr, inner.loop_id, Rc::downgrade(&inner)))
        });
        Ok(Loop { inner })
    }
}

impl Default for LoopBuilder {
    fn default() -> Self {
        LoopBuilder {
            debug: false,
            slow_callback: Duration::from_millis(100),
            clock: Clock::system(),
            executor_threads: None,
        }
    }
}

/// Clears a flag when dropped, even by a panic.
struct ResetOnDrop<'a>(&'a Cell<bool>);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Loop {
    /// A new loop with the default settings, on the current thread.
    pub fn new() -> io::Result<Loop> {
        LoopBuilder::default().build()
    }

    /// A builder for a loop with non-default settings.
    pub fn builder() -> LoopBuilder {
        LoopBuilder::default()
    }

    /// The loop running on this thread, if any (the one whose callback or task is
    /// executing).
    pub fn current() -> Option<Loop> {
        CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
    }

    /// A fresh reading of the loop's clock: the monotonic clock, or the virtual time
    /// of a manual [`Clock`]. Never cached per iteration.
    pub fn time(&self) -> Instant {
        self.inner.clock.now()
    }

    /// The loop's clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Whether debug mode is on.
    pub fn debug(&self) -> bool {
        self.inner.debug
    }

    /// Schedules `f` to run on the next iteration (asyncio's `call_soon`).
    ///
    /// Callbacks run in the order they were scheduled (FIFO), each exactly once
    /// unless cancelled through the returned [`Handle`].
    ///
    /// # Panics
    /// On a closed loop (a programming error, as asyncio raises).
    #[track_caller]
    pub fn call_soon(&self, f: impl FnOnce(&Loop) + 'static) -> Handle {
        let location = Location::caller();
        if self.closing_drops("call_soon") {
            return Handle::refused();
        }
        let (seq, was_empty) = {
            let mut ready = self.inner.ready.borrow_mut();
            let was_empty = ready.is_empty();
            let callback = Callback::new(f);
            (ready.push(Entry::Call { callback, location }), was_empty)
        };
        if was_empty {
            self.queued_while_idle();
        }
        Handle::new(self.inner.handles.clone(), Target::Call { seq })
    }

    /// Schedules `f` to run once `delay` has passed on the loop's clock.
    ///
    /// It never runs before [`time()`](Loop::time), read just before this call, plus
    /// `delay`. Timers due at the same instant run in the order they were scheduled.
    ///
    /// A deadline beyond the clock's range (about 438 years after the clock was made;
    /// `Duration::MAX`) means "never": no overflow, no panic; the timer never runs
    /// (cancel it to drop its closure), never moves a manual clock, and never makes
    /// the loop wake up: with only such timers pending,
    /// [`next_timeout`](Loop::next_timeout) is `None`. Its [`TimerHandle::when`] is the
    /// end of the clock's range.
    ///
    /// # Panics
    /// On a closed loop.
    #[track_caller]
    pub fn call_later(&self, delay: Duration, f: impl FnOnce(&Loop) + 'static) -> TimerHandle {
        let location = Location::caller();
        let now = self.inner.clock.now_ns();
        let when = now.saturating_add(nanos(delay));
        if self.closing_drops("call_later") {
            return TimerHandle::refused(self.inner.handles.clone(), when);
        }
        self.schedule_timer(when, Some(now), TimerCallback::new(f), location)
    }

    /// Schedules `f` to run at `when` on the loop's clock (at once if `when` has
    /// passed). See [`call_later`](Loop::call_later): an instant beyond the clock's
    /// range means "never".
    ///
    /// # Panics
    /// On a closed loop.
    #[track_caller]
    pub fn call_at(&self, when: Instant, f: impl FnOnce(&Loop) + 'static) -> TimerHandle {
        let location = Location::caller();
        let ns = self.inner.clock.ns_of(when);
        if self.closing_drops("call_at") {
            return TimerHandle::refused(self.inner.handles.clone(), ns);
        }
        self.schedule_timer(ns, None, TimerCallback::new(f), location)
    }

    fn schedule_timer(
        &self,
        when: u64,
        now: Option<u64>,
        f: TimerCallback,
        location: &'static Location<'static>,
    ) -> TimerHandle {
        let (key, id) = self.inner.timers.borrow_mut().insert(when, f, location);
        add(&self.inner.stats.timers_scheduled, 1);
        if !self.inner.running.get() && !self.inner.clock.is_manual() && when != NEVER {
            // An embedding host must see the new deadline on `as_raw_fd`. The clock is
            // read only if the timerfd must be re-armed (`call_at` has no reading).
            let now = || now.unwrap_or_else(|| self.inner.clock.now_ns());
            if let Err(e) = self.inner.io.borrow_mut().arm_timer_if_earlier(when, now) {
                log::error!("evloop: cannot arm the timer fd: {e}");
            }
        }
        TimerHandle::new(self.inner.handles.clone(), key, id, when)
    }

    /// A handle for other threads: `Send + Sync + Clone`.
    pub fn remote(&self) -> Remote {
        Remote::new(self.inner.shared.clone())
    }

    /// Calls `f` whenever `fd` is readable, level-triggered: as long as data is left
    /// unread, `f` is called again on the next iteration that polls the OS, so a
    /// ready fd waits at most 32 iterations (see
    /// [One iteration, phase by phase](crate#one-iteration-phase-by-phase)).
    ///
    /// One reader per fd: adding again replaces the previous reader, whose closure is
    /// dropped at once and whose handle counts as cancelled. The loop never closes `fd`.
    ///
    /// # Errors
    /// A bad or closed fd, a regular file (epoll refuses those), or a closed loop:
    /// nothing is registered then.
    ///
    /// # Closing a watched fd
    /// Remove the reader (and writer) *before* closing the fd. If an fd is closed while
    /// registered, the old callback stays in the loop's table (and `remove_reader`
    /// still finds it) until its number is reused. Then the stale entry is evicted,
    /// never the new owner's registration:
    /// - reused by another fd of yours, the new fd never receives the old
    ///   registration's events, and `add_reader` on the number registers the new fd
    ///   afresh (dropping the stale reader and writer);
    /// - reused by one of the loop's own sockets (an accepted connection, say), the
    ///   stale entry is dropped when the socket registers: its handles report
    ///   cancelled, `remove_reader` on the number returns false and `add_reader` fails,
    ///   and neither touches the socket.
    ///
    /// If the closed fd's file is still open elsewhere (a `dup`, a child process), the
    /// kernel keeps reporting its readiness under the old registration: those events
    /// are ignored, but a file that stays readable then wakes every poll.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::fd::AsRawFd;
    /// use std::os::unix::net::UnixStream;
    /// let lp = evloop::Loop::new().unwrap();
    /// let (mut a, mut b) = UnixStream::pair().unwrap();
    /// let fd = b.as_raw_fd();
    /// lp.add_reader(fd, move |lp| {
    ///     let mut buf = [0u8; 5];
    ///     b.read_exact(&mut buf).unwrap();
    ///     assert_eq!(&buf, b"hello");
    ///     lp.remove_reader(fd);
    ///     lp.stop();
    /// }).unwrap();
    /// a.write_all(b"hello").unwrap();
    /// lp.run_forever().unwrap();
    /// ```
    #[track_caller]
    pub fn add_reader(&self, fd: RawFd, f: impl FnMut(&Loop) + 'static) -> io::Result<Handle> {
        self.add_io(fd, false, Box::new(f), Location::caller())
    }

    /// Stops watching `fd` for reading. Returns whether a reader was registered.
    ///
    /// The reader is dropped before this returns (a panic in its destructor goes to
    /// the exception handler). On an fd number that one of the loop's own sockets now
    /// holds, this finds nothing and touches nothing: see "Closing a watched fd" in
    /// [`add_reader`](Loop::add_reader).
    pub fn remove_reader(&self, fd: RawFd) -> bool {
        self.remove_io(fd, false)
    }

    /// Calls `f` whenever `fd` is writable, level-triggered (a writer whose socket
    /// stays writable is called on every iteration: remove it when its buffer is
    /// drained). See [`add_reader`](Loop::add_reader) for the rules.
    #[track_caller]
    pub fn add_writer(&self, fd: RawFd, f: impl FnMut(&Loop) + 'static) -> io::Result<Handle> {
        self.add_io(fd, true, Box::new(f), Location::caller())
    }

    /// Stops watching `fd` for writing. Returns whether a writer was registered.
    pub fn remove_writer(&self, fd: RawFd) -> bool {
        self.remove_io(fd, true)
    }

    fn add_io(
        &self,
        fd: RawFd,
        write: bool,
        f: crate::io::IoCallback,
        location: &'static Location<'static>,
    ) -> io::Result<Handle> {
        if self.is_closed() {
            self.discard_one("a reader or writer refused by a closed loop", f, location);
            return Err(io::Error::other(Error::Closed));
        }
        let added = self.inner.io.borrow_mut().add(fd, write, f, location);
        match added {
            Ok((key, id, displaced)) => {
                let displaced = displaced.into_iter().flatten();
                self.discard_at("a replaced reader or writer", displaced);
                Ok(Handle::new(
                    self.inner.handles.clone(),
                    Target::Io { key, id, write },
                ))
            }
            Err((e, f)) => {
                self.discard_one("a refused reader or writer", f, location);
                Err(e)
            }
        }
    }

    fn remove_io(&self, fd: RawFd, write: bool) -> bool {
        let removed = self.inner.io.borrow_mut().remove(fd, write);
        let found = removed.is_some();
        let removed = removed.flatten();
        self.discard_at("a removed reader or writer", removed);
        found
    }

    /// Runs iterations until [`stop`](Loop::stop) is called.
    ///
    /// # Errors
    /// `Err(Error::AlreadyRunning)` if this loop is already running or another loop
    /// runs on this thread; `Err(Error::Closed)` on a closed loop; `Err(Error::Io)` if
    /// polling the OS fails.
    pub fn run_forever(&self) -> Result<(), Error> {
        let _guard = self.enter()?;
        loop {
            self.iterate(None, false, &mut || {})?;
            if self.inner.stopping.get() {
                return Ok(());
            }
        }
    }

    /// Runs one iteration, for embedding in a foreign main loop.
    ///
    /// `run_once(None)` blocks as an iteration of `run_forever` would;
    /// `run_once(Some(t))` blocks at most `t` (it caps the loop's own timeout, never
    /// extends it). It always polls the OS. A pending [`stop`](Loop::stop) makes it
    /// not block, and is used up by it.
    ///
    /// # Errors
    /// As [`run_forever`](Loop::run_forever).
    pub fn run_once(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let _guard = self.enter()?;
        self.iterate(timeout, true, &mut || {})
    }

    /// Makes `run_forever` return after the current iteration. Called before
    /// `run_forever`, that call runs one iteration and returns. Does nothing on a
    /// closed loop.
    pub fn stop(&self) {
        if !self.is_closed() {
            self.inner.stopping.set(true);
            if !self.inner.running.get() {
                self.inner.shared.force_wake();
            }
        }
    }

    /// Whether `run_forever`, `run_once` or `run_until_complete` is running.
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// Closes the loop: drops every pending callback, timer, reader, writer and task,
    /// and every threadsafe call not yet run, shuts the default executor down, and
    /// makes later [`Remote`] calls fail with `Err(Error::Closed)`. Closing twice is
    /// fine.
    ///
    /// Afterwards every [`Handle`], [`TimerHandle`] and
    /// [`RemoteHandle`](crate::RemoteHandle) of a callback that never ran reports
    /// `is_cancelled()`; those of callbacks that ran keep reporting false.
    ///
    /// Destructors run by this clean-up may call into the loop (`remove_reader`,
    /// `cancel`, ...) and schedule more work: that is dropped too (`call_soon` and the
    /// timers return cancelled handles, `create_task` a cancelled task). A destructor
    /// that panics is reported to the exception handler and the clean-up goes on: the
    /// other closures are still dropped, the close hooks still run and the executor's
    /// threads are still joined. Sockets owned by transports are closed, with one
    /// `connection_lost` each.
    ///
    /// # Errors
    /// `Err(Error::AlreadyRunning)` on a running loop.
    pub fn close(&self) -> Result<(), Error> {
        let inner = &*self.inner;
        if inner.running.get() {
            return Err(Error::AlreadyRunning);
        }
        if inner.closed.replace(true) {
            return Ok(());
        }
        inner.stopping.set(false);
        // Take everything out first, then drop it item by item with no borrow held
        // (see `discard`): a destructor may call back into the loop (and what it
        // schedules is dropped too), or panic (reported; the clean-up goes on).
        inner.dropping.set(true);
        let _reset = ResetOnDrop(&inner.dropping);
        // Later sends fail; what was queued is discarded (marked cancelled).
        let pending = inner.shared.shut();
        let (first_unrun, queued) = {
            let mut ready = inner.ready.borrow_mut();
            (ready.head(), ready.drain_all())
        };
        let timers = inner.timers.borrow_mut().clear();
        let timer_ids = timers.iter().map(|t| t.id()).collect();
        inner.handles.dropped_unrun(first_unrun, timer_ids);
        self.release_remote_buffers();
        let io = inner.io.borrow_mut().clear();
        let sources = inner.io.borrow_mut().clear_sources();
        let hooks = std::mem::take(&mut *inner.close_hooks.borrow_mut());
        let mut runnables = inner.runnables.borrow_mut().drain();
        // Tasks not yet stepped are not registered: their queued first step is
        // their only trace (a task in both lists is shut down twice: harmless).
        runnables.extend(queued.iter().filter_map(|e| match e {
            Entry::Runnable(r) if !r.is_done() => Some(r.clone()),
            _ => None,
        }));
        for r in &runnables {
            if inner.debug {
                log::warn!(
                    "Task was destroyed but it is pending: closing the loop drops the task spawned at {}",
                    r.location()
                );
            }
            self.shut_down(&**r);
        }
        self.discard("a pending task", runnables);
        for s in &sources {
            // Sockets close even if a protocol's connection_lost panics.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| s.loop_closed(self))) {
                let ctx = ErrorContext::from_panic(
                    "a protocol panicked while the loop closed",
                    &*payload,
                );
                self.call_exception_handler(ctx);
            }
        }
        self.discard("a pending threadsafe call", pending);
        self.discard_at("a pending callback", with_locations(queued));
        let timers = timers.into_iter().map(|t| {
            let location = t.location;
            (t, location)
        });
        self.discard_at("a pending timer", timers);
        self.discard_at("a reader or writer", io);
        self.discard("a library socket", sources);
        for hook in hooks {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(hook)) {
                let ctx = ErrorContext::from_panic("a close hook panicked", &*payload);
                self.call_exception_handler(ctx);
            }
        }
        let extensions = std::mem::take(&mut *inner.extensions.borrow_mut());
        self.discard("per-loop state", extensions);
        // Whatever those drops queued (task wakes) is dropped too.
        let queued = inner.ready.borrow_mut().drain_all();
        self.discard_at("work queued while the loop closed", with_locations(queued));
        Ok(())
    }

    /// Shuts down a runnable that will never run again (a task drops its future and
    /// done-callbacks), handing each panicking destructor to the exception handler.
    pub(crate) fn shut_down(&self, r: &dyn Runnable) {
        let location = Some(r.location());
        let mut report = |p| self.report_drop_panic("a pending task", location, p);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| r.shutdown(&mut report))) {
            report(p);
        }
    }

    /// Whether [`close`](Loop::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// The loop's pollable fd, for embedding: readable whenever a callback is ready, a
    /// watched fd is ready, a timer is due or a threadsafe call has arrived (it may
    /// also be readable spuriously; a host must tolerate that). A host waits for it
    /// (with [`next_timeout`](Loop::next_timeout) as its own timeout) and then calls
    /// [`run_once(Some(Duration::ZERO))`](Loop::run_once).
    pub fn as_raw_fd(&self) -> RawFd {
        self.inner.io.borrow().raw_fd()
    }

    /// How long the next iteration may block: what `run_once(None)` would wait for
    /// (`None`: until I/O or a threadsafe call; so too when the only timers pending
    /// never come due, such as `call_later(Duration::MAX)`).
    ///
    /// After a burst of work (more than a thousand callbacks, timers or threadsafe
    /// calls at once), an idle loop wakes a few times, a tenth of a second apart, to
    /// give back the memory the burst needed: this is then at most that long.
    pub fn next_timeout(&self) -> Option<Duration> {
        let inner = &*self.inner;
        if inner.closed.get() {
            return Some(Duration::ZERO);
        }
        if self.has_ready_work() {
            return Some(Duration::ZERO);
        }
        let timeout = self.timer_timeout();
        match self.trim_wait() {
            Some(wait) => Some(timeout.map_or(wait, |t| t.min(wait))),
            None => timeout,
        }
    }

    /// A snapshot of the loop's counters; see [`Stats`].
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// Installs the exception handler: called with an [`ErrorContext`] when a
    /// callback or task panics, instead of the default, which logs at error level
    /// through the `log` crate. A panic inside the handler is caught and logged.
    ///
    /// The handler it replaces is dropped before this returns (a panic in its
    /// destructor is handed to the new handler).
    pub fn set_exception_handler(&self, f: impl FnMut(&Loop, &ErrorContext) + 'static) {
        let old = self.inner.handler.borrow_mut().replace(Box::new(f));
        self.discard("the replaced exception handler", old);
    }

    /// Hands `ctx` to the exception handler (or to the default one).
    pub fn call_exception_handler(&self, ctx: ErrorContext) {
        let handler = self.inner.handler.borrow_mut().take();
        let Some(mut handler) = handler else {
            default_exception_handler(&ctx);
            return;
        };
        let result = catch_unwind(AssertUnwindSafe(|| handler(self, &ctx)));
        // The handler may have installed another while it ran: then it is replaced.
        let replaced = {
            let mut slot = self.inner.handler.borrow_mut();
            if slot.is_none() {
                *slot = Some(handler);
                None
            } else {
                Some(handler)
            }
        };
        if let Err(payload) = result {
            let err = ErrorContext::from_panic("the exception handler panicked", &*payload);
            default_exception_handler(&err);
            default_exception_handler(&ctx);
        }
        self.discard("the replaced exception handler", replaced);
    }
}

impl Inner {
    /// Cancels what a [`Handle`] names; its closure is dropped with no borrow held.
    pub(crate) fn cancel(inner: Rc<Inner>, target: Target) {
        let lp = Loop { inner };
        let inner = &*lp.inner;
        match target {
            Target::Call { seq } => {
                let callback = inner.ready.borrow_mut().cancel(seq);
                if let Some((f, location)) = callback {
                    lp.discard_one("a cancelled callback", f, location);
                }
            }
            Target::Timer { key, id } => {
                let slot = inner.timers.borrow_mut().cancel(key, id);
                if let Some(slot) = slot {
                    if slot.in_heap() {
                        add(&inner.stats.timers_cancelled, 1);
                    }
                    let location = slot.location;
                    lp.discard_one("a cancelled timer", slot, location);
                }
            }
            Target::Io { key, id, write } => {
                let removed = inner.io.borrow_mut().cancel(key, id, write);
                lp.discard_at("a cancelled reader or writer", removed.flatten());
            }
        }
    }

    pub(crate) fn io_is_current(&self, key: u32, id: u64, write: bool) -> bool {
        self.io.borrow().is_current(key, id, write)
    }
}

/// Pairs each queue entry with where it was scheduled, for drop reports.
fn with_locations(
    entries: impl IntoIterator<Item = Entry>,
) -> impl Iterator<Item = (Entry, discard::Scheduled)> {
    entries.into_iter().map(|e| {
        let location = e.location();
        (e, location)
    })
}

/// The last `Loop` clone is gone, closed or not: what is still pending is dropped as
/// `close()` drops it (item by item, panics caught), except that a panicking
/// destructor is logged: no `Loop` is left to hand the exception handler. Nothing
/// dropped here can reach the loop (its weak references no longer upgrade).
impl Drop for Inner {
    fn drop(&mut self) {
        // Later sends fail; calls still queued are discarded (marked cancelled).
        let pending = self.shared.shut();
        let ready = self.ready.get_mut();
        let (first_unrun, queued) = (ready.head(), ready.drain_all());
        let timers = self.timers.get_mut().clear();
        let timer_ids = timers.iter().map(|t| t.id()).collect();
        self.handles.dropped_unrun(first_unrun, timer_ids);
        // Tasks still registered, or not yet stepped (their queued step is their only
        // trace), drop their futures now, exactly once.
        let mut runnables = self.runnables.get_mut().drain();
        runnables.extend(queued.iter().filter_map(|e| match e {
            Entry::Runnable(r) if !r.is_done() => Some(r.clone()),
            _ => None,
        }));
        for r in &runnables {
            let location = Some(r.location());
            let mut report = |p| discard::log_drop_panic("a pending task", location, p);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| r.shutdown(&mut report))) {
                report(p);
            }
        }
        discard::discard_logged("a pending task", runnables);
        discard::discard_logged("a pending threadsafe call", pending);
        discard::discard_logged("a pending callback", queued);
        discard::discard_logged("a pending timer", timers);
        let io = self.io.get_mut();
        discard::discard_logged("a reader or writer", io.clear());
        discard::discard_logged("a library socket", io.clear_sources());
        discard::discard_logged("the exception handler", self.handler.get_mut().take());
        discard::discard_logged("a close hook", std::mem::take(self.close_hooks.get_mut()));
        discard::discard_logged("per-loop state", std::mem::take(self.extensions.get_mut()));
        let addr = Arc::as_ptr(&self.shared) as usize;
        let _ = OWNED.try_with(|o| o.borrow_mut().retain(|(a, _, _)| *a != addr));
        unregister_loop(self.loop_id);
    }
}

/// The loop's pollable fd ([`Loop::as_raw_fd`]) as a borrowed fd, for hosts that
/// take `AsFd` (tokio's `AsyncFd`, calloop's `Generic`, `rustix`/`nix` poll calls).
/// The fd is the loop's epoll instance: it stays open, `close()` included, until the
/// last `Loop` handle is dropped, so a `BorrowedFd` that borrows a `Loop` is valid for
/// as long as the borrow.
///
/// ```
/// use std::os::fd::{AsFd, AsRawFd};
/// let lp = evloop::Loop::new().unwrap();
/// assert_eq!(lp.as_fd().as_raw_fd(), lp.as_raw_fd());
/// lp.close().unwrap();
/// assert!(lp.as_fd().as_raw_fd() >= 0, "still open after close()");
/// ```
impl AsFd for Loop {
    fn as_fd(&self) -> BorrowedFd<'_> {
        let fd = self.as_raw_fd();
        // SAFETY: `fd` is the epoll instance of `self.inner.io`, which is created with
        // the loop and never replaced or closed before `Inner` drops; `&self` keeps an
        // `Rc` to `Inner` alive for the borrow's lifetime.
        unsafe { BorrowedFd::borrow_raw(fd) }
    }
}

/// [`Loop::as_raw_fd`] through the standard trait.
impl AsRawFd for Loop {
    fn as_raw_fd(&self) -> RawFd {
        Loop::as_raw_fd(self)
    }
}

impl fmt::Debug for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loop")
            .field("running", &self.is_running())
            .field("closed", &self.is_closed())
            .field("debug", &self.inner.debug)
            .field("clock", &self.inner.clock)
            .finish()
    }
}
