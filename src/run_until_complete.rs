//! `Loop::run_until_complete`: runs the loop until one future completes (asyncio's
//! `run_until_complete`). An upper-layer method of [`Loop`] (it polls a future; the
//! core knows none), so it lives here, in an `impl Loop` block of its own file.
//!
//! The future is polled like a task, from the run phase: a wake queues an
//! `Entry::Main`, and the iteration calls back into the poll when it reaches it.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use crate::errors::Error;
use crate::event_loop::Loop;
use crate::ready::Entry;
use crate::remote::{Remote, RemoteCall};

impl Loop {
    /// Runs the loop until `fut` completes, and returns its output. `fut` may borrow
    /// from the caller's stack (it need not be `'static`).
    ///
    /// As in asyncio, `fut` is polled like a task: its first poll and every poll after
    /// a wake are queued behind the callbacks already ready. Once it completes, the
    /// run ends after the callbacks that were ready at that moment (done-callbacks of
    /// what it awaited included) and the rest of that iteration.
    ///
    /// # Errors
    /// As [`run_forever`](Loop::run_forever), and `Err(Error::Stopped)` if
    /// [`stop`](Loop::stop) ends the run before `fut` completes.
    ///
    /// # Panics
    /// If `fut` panics, the panic resumes here (as `block_on` does), and the loop is
    /// left stopped and usable.
    pub fn run_until_complete<F: Future>(&self, fut: F) -> Result<F::Output, Error> {
        let guard = self.enter()?;
        let main = Arc::new(MainWaker {
            woken: AtomicBool::new(true),
            remote: self.remote(),
        });
        let waker = Waker::from(main.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(fut);
        let output: Cell<Option<thread::Result<F::Output>>> = Cell::new(None);
        // `completed`: the future returned; like asyncio's `_run_until_complete_cb`,
        // the run ends at a marker queued then, after what was already ready.
        let completed = Cell::new(false);
        let done = Cell::new(false);
        let mut poll_main = || {
            if completed.get() {
                done.set(true);
                return;
            }
            if !main.woken.swap(false, Ordering::AcqRel) {
                return;
            }
            match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                Ok(Poll::Ready(v)) => output.set(Some(Ok(v))),
                Ok(Poll::Pending) => return,
                Err(payload) => {
                    // A panic resumes in the caller at the end of this iteration.
                    output.set(Some(Err(payload)));
                    done.set(true);
                }
            }
            completed.set(true);
            self.push_entry(Entry::Main);
        };
        self.push_entry(Entry::Main);
        loop {
            self.iterate(None, false, &mut poll_main)?;
            if done.get() {
                break;
            }
            if self.is_stopping() {
                if completed.get() {
                    break; // done in the iteration that stopped: its output stands
                }
                return Err(Error::Stopped);
            }
        }
        drop(guard);
        match output.take().expect("set when done") {
            Ok(v) => Ok(v),
            Err(payload) => resume_unwind(payload),
        }
    }
}

/// The waker of `run_until_complete`'s future: a wake sets the flag and queues an
/// `Entry::Main`, where the future is polled.
struct MainWaker {
    woken: AtomicBool,
    remote: Remote,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            match self.remote.local_loop() {
                Some(lp) => lp.push_entry(Entry::Main),
                None => {
                    let _ = self.remote.send(self.clone());
                }
            }
        }
    }
}

/// A wake from another thread: queue the poll, in FIFO order, from the run phase.
impl RemoteCall for MainWaker {
    fn run(&self, lp: &Loop) {
        lp.push_entry(Entry::Main);
    }
    fn discard(&self) {}
    fn cancel(&self) {}
    fn is_cancelled(&self) -> bool {
        false
    }
}
