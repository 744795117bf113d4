//! `Remote`: how other threads reach a loop.
//!
//! Threadsafe calls are pushed onto mutex-guarded `Vec`s (a few shards, one per
//! producer thread), which the loop swaps out whole once per iteration (one lock per
//! shard and batch on its side; a lock and a push on a producer's). A loop blocked in
//! poll is woken through a `mio::Waker` (an eventfd), when
//! [`WakeState`](crate::wake_state) says so: a `pending` flag lets the loop see that
//! calls are waiting without taking the locks, and producers wake the loop only when
//! it has announced that it is about to sleep, and only the first of them does; a
//! burst of N calls costs at most one syscall, and calls made while the loop is busy
//! cost none.

use std::cell::RefCell;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};

use parking_lot::Mutex;

use crate::Loop;
use crate::call_cell;
use crate::callback::SendCallback;
use crate::capacity::{FLOOR, shrink_target};
use crate::errors::Error;
use crate::event_loop::local_loop;
use crate::handle::RemoteHandle;
use crate::ready::{Entry, Packed};
use crate::remote_queue::{RemoteQueue, SHARDS};
use crate::remote_wakes::RemoteWakes;
use crate::wake_state::WakeState;

/// Work sent to the loop from any thread.
pub(crate) trait RemoteCall: Send + Sync {
    /// Runs it on the loop thread.
    fn run(&self, lp: &Loop);
    /// It will never run (the loop closed first): drop what it holds now.
    fn discard(&self);
    /// Cancels it if it has not started.
    fn cancel(&self);
    /// Whether it was cancelled or discarded.
    fn is_cancelled(&self) -> bool;
}

/// A queued remote call. Dropping it unrun discards the call, so a call that the loop
/// never gets to (the loop closed first) drops its closure instead of keeping it alive
/// in a handle.
pub(crate) struct Queued(Option<Kind>);

enum Kind {
    /// A `call_soon_threadsafe` closure.
    Call(Arc<CallCell>),
    /// A task's waker, used on another thread.
    Wake(Packed),
    /// Anything else (a task's wake).
    Other(Arc<dyn RemoteCall>),
}

impl Queued {
    pub(crate) fn new(call: Arc<dyn RemoteCall>) -> Queued {
        Queued(Some(Kind::Other(call)))
    }

    /// Runs the call on the loop thread (as a callback: panics caught and reported).
    pub(crate) fn run(mut self, lp: &Loop) {
        match self.0.take() {
            Some(Kind::Call(cell)) => {
                cell.run(lp);
                // No handle left: nobody can see the cell again, so it is reused.
                if call_cell::reusable(&cell) {
                    lp.recycle_cell(cell);
                }
            }
            Some(Kind::Other(call)) => call.run(lp),
            Some(Kind::Wake(p)) => lp.wake_packed_now(p),
            None => {}
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        match self.0.take() {
            Some(Kind::Call(cell)) => cell.discard(),
            Some(Kind::Other(call)) => call.discard(),
            Some(Kind::Wake(_)) | None => {}
        }
    }
}

/// The cell of a `call_soon_threadsafe` call, shared by the queue and the
/// [`RemoteHandle`]. Cells carry no type parameter, so that the loop can hand a spent
/// one back (through [`Shared::give_back`]) to be reused by the next call from any
/// thread: a threadsafe call then allocates nothing, on either side.
pub(crate) type CallCell = call_cell::CallCell<SendCallback>;

impl RemoteCall for CallCell {
    fn run(&self, lp: &Loop) {
        if let Some((f, location)) = self.take_to_run() {
            lp.invoke("threadsafe call", location, || f.call(lp));
        }
    }

    fn discard(&self) {
        drop(self.take_discarded());
    }

    fn cancel(&self) {
        drop(self.take_cancelled());
    }

    fn is_cancelled(&self) -> bool {
        call_cell::CallCell::is_cancelled(self) // the inherent method
    }
}

/// How many spent cells a loop keeps for reuse (the loop holds no more than this
/// many waiting to go back either), and how many a thread takes at once.
///
/// Large enough that producers far ahead of the loop (a queue tens of thousands of
/// calls deep) reuse cells instead of allocating each call's and having the loop
/// free it: a cross-thread `free` is the loop's costliest step of a threadsafe call.
/// The pool is trimmed like the loop's buffers: at the end of a window of use it
/// keeps no more cells than that window's largest drain needed (see
/// [`Shared::trim_pool`]), so an idle loop holds at most `capacity::FLOOR` of them.
pub(crate) const POOL_MAX: usize = 65_536;
const CACHE_REFILL: usize = 32;

thread_local! {
    /// Spent cells this thread took from a loop's pool, to fill without a lock. Cells
    /// belong to no loop in particular.
    static CELLS: RefCell<Vec<Arc<CallCell>>> = const { RefCell::new(Vec::new()) };
}

/// Every live loop's `Shared`, by loop id, so that a task's waker (a plain word:
/// loop id, task key and generation) can reach its loop from any thread.
static LOOPS: RwLock<Vec<Option<Weak<Shared>>>> = RwLock::new(Vec::new());

/// The next id to hand out once every id has been used: ids are given round-robin,
/// so that a dead loop's id comes back only after 65,535 others.
static NEXT_REUSE: AtomicUsize = AtomicUsize::new(0);

/// Gives `shared` a loop id.
///
/// Ids are not reused while fresh ones remain, and then round-robin: a waker that
/// outlived its loop (a plain word naming loop, task key and generation) must not
/// reach a task of the next loop, whose first tasks have the same keys and
/// generations. (Reuse of the lowest free id made the waker of a dropped loop's task
/// wake the first task of the loop created after it.)
///
/// # Panics
/// With more than 65,536 loops alive at once.
pub(crate) fn register_loop(shared: &Arc<Shared>) -> u16 {
    const IDS: usize = 1 << 16;
    let mut loops = LOOPS.write().unwrap_or_else(|e| e.into_inner());
    let weak = Some(Arc::downgrade(shared));
    let free = |l: &Option<Weak<Shared>>| l.as_ref().is_none_or(|w| w.strong_count() == 0);
    let id = if loops.len() < IDS {
        loops.push(weak);
        loops.len() - 1
    } else {
        let start = NEXT_REUSE.load(Ordering::Relaxed) % IDS;
        let i = (0..IDS)
            .map(|k| (start + k) % IDS)
            .find(|&i| free(&loops[i]))
            .expect("more than 65,536 event loops alive at once");
        NEXT_REUSE.store(i + 1, Ordering::Relaxed);
        loops[i] = weak;
        i
    };
    u16::try_from(id).expect("loop ids fit in 16 bits")
}

/// Frees a loop id.
pub(crate) fn unregister_loop(id: u16) {
    let mut loops = LOOPS.write().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = loops.get_mut(usize::from(id)) {
        *l = None;
    }
}

/// The live loop with id `id`.
pub(crate) fn loop_by_id(id: u16) -> Option<Arc<Shared>> {
    let loops = LOOPS.read().unwrap_or_else(|e| e.into_inner());
    loops.get(usize::from(id))?.as_ref()?.upgrade()
}

/// The part of a loop that other threads hold.
pub(crate) struct Shared {
    /// The queue, in shards (see [`RemoteQueue`]).
    queue: RemoteQueue<Queued>,
    /// Spent call cells, for reuse (at most `POOL_MAX`).
    pool: Mutex<Vec<Arc<CallCell>>>,
    /// Whether calls wait, and whether a producer must wake the loop.
    wake: WakeState,
    waker: mio::Waker,
    closed: AtomicBool,
    /// Which tasks have a wake from another thread queued: one entry per task and
    /// drain epoch.
    wakes: RemoteWakes,
}

static NEXT_SHARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's shard, assigned round-robin on first use.
    static MY_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> Arc<Shared> {
        Arc::new(Shared {
            queue: RemoteQueue::new(),
            pool: Mutex::new(Vec::new()),
            wake: WakeState::new(),
            waker,
            closed: AtomicBool::new(false),
            wakes: RemoteWakes::new(),
        })
    }

    /// Queues a call. Fails (handing it back) if the loop is closed.
    fn push(&self, call: Queued) -> Result<(), Queued> {
        let shard = MY_SHARD.try_with(|s| *s).unwrap_or(0);
        self.queue.push(shard, call)?;
        if self.wake.pushed() {
            self.force_wake();
        }
        Ok(())
    }

    /// A cell for a new call: from this thread's cache, refilled from the pool, or
    /// new.
    fn cell(&self) -> Arc<CallCell> {
        CELLS
            .try_with(|cache| {
                let mut cache = cache.borrow_mut();
                if cache.is_empty() {
                    let mut pool = self.pool.lock();
                    let n = pool.len().min(CACHE_REFILL);
                    let at = pool.len() - n;
                    cache.extend(pool.drain(at..));
                }
                cache.pop()
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| Arc::new(CallCell::new()))
    }

    /// Loop side: takes spent cells back into the pool (emptying `cells`).
    pub(crate) fn give_back(&self, cells: &mut Vec<Arc<CallCell>>) {
        let mut pool = self.pool.lock();
        let room = POOL_MAX.saturating_sub(pool.len());
        let n = cells.len().min(room);
        pool.extend(cells.drain(..n));
        drop(pool);
        cells.clear();
    }

    /// Loop side, at the end of a window of use: keeps at most `keep` spent cells
    /// (the window's largest drain; at least `capacity::FLOOR`) and frees the rest
    /// outside the lock. Returns how many it kept.
    pub(crate) fn trim_pool(&self, keep: usize) -> usize {
        let keep = keep.max(FLOOR);
        let mut pool = self.pool.lock();
        let excess = if pool.len() > keep {
            pool.split_off(keep)
        } else {
            Vec::new()
        };
        if let Some(room) = shrink_target(pool.capacity(), keep) {
            pool.shrink_to(room);
        }
        let kept = pool.len();
        drop(pool);
        drop(excess); // spent cells: no closure, nothing but memory
        kept
    }

    /// How many spent cells the pool holds.
    pub(crate) fn pool_len(&self) -> usize {
        self.pool.lock().len()
    }

    /// Sends a task's wake from another thread (no allocation), unless one for the
    /// same task is queued and not yet drained (see [`RemoteWakes`]). Ignored once
    /// the loop is closed.
    pub(crate) fn push_wake(&self, p: Packed) {
        if self.wakes.mark(p.key()) {
            let _ = self.push(Queued(Some(Kind::Wake(p))));
        }
    }

    /// The marks of queued cross-thread wakes, by task.
    pub(crate) fn wakes(&self) -> &RemoteWakes {
        &self.wakes
    }

    /// Loop side: whether calls are waiting.
    pub(crate) fn has_pending(&self) -> bool {
        self.wake.has_pending()
    }

    /// Loop side: moves the waiting calls into `into` (which must be empty; its
    /// buffer is swapped in, so that the queue keeps a warm one). Returns the largest
    /// capacity a shard is left with, or `None` if nothing was waiting.
    pub(crate) fn drain(&self, into: &mut Vec<Queued>) -> Option<usize> {
        // Clears `pending` before the swaps: a push after them sets it again.
        if !self.wake.begin_drain() {
            return None;
        }
        let largest = self.queue.drain_into(into);
        // After taking the entries, before running any: wakes from now on queue anew.
        self.wakes.drained();
        Some(largest)
    }

    /// Loop side, at the end of a window of use (see `crate::capacity`): shrinks the
    /// shards' buffers that are oversized for batches of `peak` calls. Returns the
    /// largest capacity a shard is left with.
    pub(crate) fn trim(&self, peak: usize) -> usize {
        let mut largest = 0;
        self.queue.each_buffer(|calls| {
            let old = match shrink_target(calls.capacity(), peak.max(calls.len())) {
                // Empty (the usual case): the next pushes grow a new buffer as needed.
                Some(_) if calls.is_empty() => std::mem::take(calls),
                Some(keep) => {
                    calls.shrink_to(keep);
                    Vec::new()
                }
                None => Vec::new(),
            };
            largest = largest.max(calls.capacity());
            old // empty: its buffer is freed without the lock
        });
        largest
    }

    /// Loop side, `close()`: refuses later pushes and hands back what was queued. The
    /// shards' buffers and the pool of spent cells are released: a [`Remote`] that
    /// outlives its loop holds no memory for it.
    pub(crate) fn shut(&self) -> Vec<Queued> {
        self.closed.store(true, Ordering::SeqCst);
        let all = self.queue.shut();
        let pool = std::mem::take(&mut *self.pool.lock());
        drop(pool); // spent cells: no closure in them
        all
    }

    /// The capacities of the shards' buffers (summed) and how many cells the pool
    /// holds, for tests.
    pub(crate) fn capacities(&self) -> (usize, usize) {
        let mut shards = 0;
        self.queue.each_buffer(|calls| shards += calls.capacity());
        (shards, self.pool.lock().len())
    }

    /// Wakes the loop (or makes its fd readable) whatever its state.
    pub(crate) fn force_wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("evloop: failed to wake the loop: {e}");
        }
    }

    /// Loop side, before blocking or returning to the host. Returns false if calls
    /// are already queued (then the loop must not block).
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.wake.prepare_sleep()
    }

    /// Loop side: it runs again and will drain the queue before sleeping.
    pub(crate) fn awake(&self) {
        self.wake.awake();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A handle to a [`Loop`] that other threads use: `Send + Sync + Clone`.
///
/// Get one with [`Loop::remote`]. Calls sent from one thread run in the order that
/// thread sent them. A loop blocked in poll wakes promptly; a burst of calls costs one
/// wake-up. Called on the loop's own thread, `call_soon_threadsafe` is `call_soon`
/// (one FIFO, no syscall).
///
/// ```
/// use std::thread;
/// let lp = evloop::Loop::new().unwrap();
/// let remote = lp.remote();
/// let worker = thread::spawn(move || {
///     let answer = 6 * 7;
///     remote.call_soon_threadsafe(move |lp| {
///         println!("the answer is {answer}");
///         lp.stop();
///     }).unwrap();
/// });
/// lp.run_forever().unwrap();
/// worker.join().unwrap();
/// ```
#[derive(Clone)]
pub struct Remote {
    shared: Arc<Shared>,
}

impl Remote {
    pub(crate) fn new(shared: Arc<Shared>) -> Remote {
        Remote { shared }
    }

    /// Schedules `f` to run on the loop, from any thread (asyncio's
    /// `call_soon_threadsafe`).
    ///
    /// Returns `Err(Error::Closed)` if the loop is closed; `f` is then dropped, never
    /// silently lost. A call accepted (`Ok`) runs, unless it is cancelled through its
    /// [`RemoteHandle`] or the loop is closed before draining it: then its closure is
    /// dropped and the handle reports `is_cancelled()`.
    #[track_caller]
    pub fn call_soon_threadsafe(
        &self,
        f: impl FnOnce(&Loop) + Send + 'static,
    ) -> Result<RemoteHandle, Error> {
        let location = Location::caller();
        if self.shared.is_closed() {
            return Err(Error::Closed);
        }
        let cell = self.shared.cell();
        // A reused cell: no handle to it is left, so nobody sees its reset.
        cell.fill(SendCallback::new_send(f), location);
        self.send_queued(Queued(Some(Kind::Call(cell.clone()))))?;
        Ok(RemoteHandle::new(cell))
    }

    /// Queues a call: straight onto the ready queue on the loop's own thread, else
    /// through the channel. Fails only if the loop is closed.
    pub(crate) fn send(&self, call: Arc<dyn RemoteCall>) -> Result<(), Error> {
        self.send_queued(Queued::new(call))
    }

    fn send_queued(&self, call: Queued) -> Result<(), Error> {
        if let Some(lp) = local_loop(&self.shared) {
            if lp.is_closed() {
                return Err(Error::Closed);
            }
            lp.push_entry(Entry::Remote(call));
            return Ok(());
        }
        // A send racing with close(): either it lands before close() shuts the queue
        // (then close() discards it, marking it cancelled) or it fails here.
        self.shared.push(call).map_err(|_| Error::Closed)
    }

    /// Asks the loop to stop, as [`Loop::stop`] does, from any thread. Does nothing
    /// on a closed loop.
    pub fn stop(&self) {
        if let Some(lp) = local_loop(&self.shared) {
            lp.stop();
        } else {
            let _ = self.call_soon_threadsafe(|lp| lp.stop());
        }
    }

    /// Whether the loop has been closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The loop itself, when called on the thread that owns it.
    pub(crate) fn local_loop(&self) -> Option<Loop> {
        local_loop(&self.shared)
    }

    /// Whether `self` and `other` reach the same loop.
    pub fn same_loop(&self, other: &Remote) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The capacities of the queue's buffers, by name, in entries (for tests).
    #[doc(hidden)]
    pub fn debug_buffer_capacities(&self) -> Vec<(&'static str, usize)> {
        let (shards, pool) = self.shared.capacities();
        vec![("remote_shards", shards), ("remote_pool", pool)]
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("closed", &self.is_closed())
            .finish()
    }
}
