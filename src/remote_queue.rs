//! `RemoteQueue`: the sharded queue of calls sent to a loop from other threads, and
//! its `closed` mark.
//!
//! Each shard is a mutex-guarded `Vec`; a producer thread always pushes to the same
//! shard (so its calls stay in order), and two producers seldom share one, so they do
//! not fight over a lock and a cache line on every call. The loop drains them all.
//!
//! # A push racing with `close()`
//! [`shut`](RemoteQueue::shut) sets each shard's `closed` under that shard's lock and
//! takes what it holds; [`push`](RemoteQueue::push) checks `closed` under the same
//! lock. So a push either lands before the shut (which hands the call back to
//! `close()`, to be discarded, its handle cancelled) or sees `closed` and fails (the
//! caller gets `Err(Closed)`): it never lands in a queue that nobody drains again.
//! The model at the bottom checks it (`.ci/loom`).

use crate::sync_shim::Mutex;

/// How many shards the remote queue has.
pub(crate) const SHARDS: usize = 4;

/// The queue of calls of type `T`; see the module docs.
pub(crate) struct RemoteQueue<T> {
    shards: [Shard<T>; SHARDS],
}

/// One shard, on its own cache lines.
#[repr(align(128))]
struct Shard<T>(Mutex<Calls<T>>);

struct Calls<T> {
    calls: Vec<T>,
    /// Set under the lock by `shut`: a push either lands before it (and is handed
    /// back by `shut`) or sees it and fails.
    closed: bool,
}

impl<T> RemoteQueue<T> {
    pub(crate) fn new() -> RemoteQueue<T> {
        RemoteQueue {
            shards: std::array::from_fn(|_| {
                Shard(Mutex::new(Calls {
                    calls: Vec::new(),
                    closed: false,
                }))
            }),
        }
    }

    /// Queues `call` on shard `shard` (below [`SHARDS`]). Fails, handing it back, once
    /// the queue is shut.
    pub(crate) fn push(&self, shard: usize, call: T) -> Result<(), T> {
        let mut q = self.shards[shard].0.lock();
        if q.closed {
            return Err(call);
        }
        q.calls.push(call);
        Ok(())
    }

    /// Loop side: moves every queued call into `into` (swapping buffers when `into` is
    /// empty, so that a shard keeps a warm one). Returns the largest capacity a shard
    /// is left with.
    pub(crate) fn drain_into(&self, into: &mut Vec<T>) -> usize {
        let mut largest = 0;
        for shard in &self.shards {
            let mut q = shard.0.lock();
            if !q.calls.is_empty() {
                if into.is_empty() {
                    std::mem::swap(&mut q.calls, into);
                } else {
                    into.append(&mut q.calls);
                }
            }
            largest = largest.max(q.calls.capacity());
        }
        largest
    }

    /// Runs `f` on each shard's buffer in turn, under its lock; what `f` returns is
    /// dropped after the lock is released.
    pub(crate) fn each_buffer<R>(&self, mut f: impl FnMut(&mut Vec<T>) -> R) {
        for shard in &self.shards {
            let mut q = shard.0.lock();
            let out = f(&mut q.calls);
            drop(q);
            drop(out);
        }
    }

    /// Loop side, `close()`: refuses later pushes and hands back what was queued. The
    /// shards' buffers are released.
    pub(crate) fn shut(&self) -> Vec<T> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let mut q = shard.0.lock();
            q.closed = true;
            let calls = std::mem::take(&mut q.calls);
            drop(q);
            if all.is_empty() {
                all = calls;
            } else {
                all.extend(calls);
            }
        }
        all
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::call_cell::CallCell;
    use crate::sync_shim::{Arc, AtomicBool, Ordering};
    use loom::thread;

    /// A queued call: dropped unrun, it discards its closure (as `Queued` does).
    struct Queued(Option<Arc<CallCell<Arc<AtomicBool>>>>);

    impl Queued {
        /// The loop runs it: the closure marks that it ran.
        fn run(mut self) {
            if let Some((f, _)) = self.0.take().and_then(|c| c.take_to_run()) {
                f.store(true, Ordering::SeqCst);
            }
        }
    }

    impl Drop for Queued {
        fn drop(&mut self) {
            if let Some(c) = self.0.take() {
                drop(c.take_discarded());
            }
        }
    }

    /// A threadsafe call (`Remote::call_soon_threadsafe` without the closed check
    /// before it, the race's worst case) racing with a loop that runs one iteration
    /// and closes: the call runs, or is discarded with its handle cancelled, or is
    /// refused; exactly one of them.
    #[test]
    fn loom_call_racing_close_runs_or_is_discarded() {
        loom::model(|| {
            let queue = Arc::new(RemoteQueue::<Queued>::new());
            let ran = Arc::new(AtomicBool::new(false));
            let producer = {
                let (queue, ran) = (queue.clone(), ran.clone());
                thread::spawn(move || {
                    let cell = Arc::new(CallCell::new());
                    cell.fill(ran, std::panic::Location::caller());
                    match queue.push(1, Queued(Some(cell.clone()))) {
                        Ok(()) => Some(cell), // the caller gets a handle
                        Err(refused) => {
                            drop(refused); // `Err(Closed)`: the closure is dropped
                            None
                        }
                    }
                })
            };
            // The loop: one iteration (drain and run), then close().
            let mut drained = Vec::new();
            queue.drain_into(&mut drained);
            drained.into_iter().for_each(Queued::run);
            drop(queue.shut()); // discards what was left
            let handle = producer.join().unwrap();
            let ran = ran.load(Ordering::SeqCst);
            match handle {
                Some(h) => {
                    assert!(
                        ran != h.is_cancelled(),
                        "accepted: ran {ran}, cancelled {}",
                        h.is_cancelled()
                    );
                    assert!(h.take_to_run().is_none(), "the closure is gone either way");
                }
                None => assert!(!ran, "refused, yet ran"),
            }
            let mut left = Vec::new();
            queue.drain_into(&mut left);
            assert!(left.is_empty(), "a call left in a closed queue");
            assert!(queue.push(0, Queued(None)).is_err(), "closed: pushes fail");
        });
    }
}
