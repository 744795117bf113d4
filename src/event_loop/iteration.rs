//! One iteration of the loop, phase by phase, and the start and end of a run.
//!
//! `iterate` is the only place where callbacks run; everything else queues them.

use std::time::{Duration, Instant};

use super::{CURRENT, Loop};
use crate::errors::Error;
use crate::ready::Entry;
use crate::source::Readiness;
use crate::stats::add;

/// While callbacks keep the loop busy, the OS is polled (without blocking) on at
/// least every this many-th iteration: after a poll, at most `POLL_INTERVAL - 1`
/// iterations skip it, so a ready fd waits at most `POLL_INTERVAL` iterations. An
/// idle or blocking iteration always polls. Skipping the poll syscall on the others
/// is what makes a chain of callbacks cheap.
pub(crate) const POLL_INTERVAL: u32 = 32;

/// Restores the loop's idle state when a run ends, even by a panic.
pub(crate) struct RunGuard<'a> {
    lp: &'a Loop,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.lp.inner.running.set(false);
        self.lp.inner.stopping.set(false);
        let _ = CURRENT.try_with(|c| c.borrow_mut().take());
        self.lp.leave();
    }
}

impl Loop {
    /// Starts a run: refuses nested runs, runs on closed loops, and a second loop on
    /// this thread.
    pub(crate) fn enter(&self) -> Result<RunGuard<'_>, Error> {
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        if self.inner.running.get() {
            return Err(Error::AlreadyRunning);
        }
        let free = CURRENT
            .try_with(|c| {
                let mut c = c.borrow_mut();
                if c.is_some() {
                    false
                } else {
                    *c = Some(self.clone());
                    true
                }
            })
            .unwrap_or(false);
        if !free {
            return Err(Error::AlreadyRunning);
        }
        self.inner.running.set(true);
        self.inner.shared.awake();
        self.inner.unpolled.set(POLL_INTERVAL); // a run's first iteration polls
        self.inner.last_poll.set(None); // time outside runs is not busy time
        Ok(RunGuard { lp: self })
    }

    /// Control goes back to the host: make `as_raw_fd` reflect pending work.
    pub(super) fn leave(&self) {
        let inner = &*self.inner;
        if let Some(last) = inner.last_poll.take() {
            let busy = &inner.stats.time_busy;
            busy.set(busy.get() + last.elapsed());
        }
        if inner.closed.get() {
            return;
        }
        let asleep = inner.shared.prepare_sleep();
        if !asleep
            || !inner.ready.borrow().is_empty()
            || inner.stopping.get()
            // Edge safety: a level-triggered fd left ready (data left unread) would
            // give an edge-triggered host no new edge; the wake write below makes one.
            || inner.io.borrow_mut().ready_unannounced()
        {
            inner.shared.force_wake();
        }
        self.arm_timerfd();
    }

    /// Work that a non-blocking iteration would run right away.
    pub(super) fn has_ready_work(&self) -> bool {
        let inner = &*self.inner;
        !inner.ready.borrow().is_empty() || inner.stopping.get() || inner.shared.has_pending()
    }

    /// The earliest live timer's deadline, in clock nanoseconds.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.inner.timers.borrow_mut().next_deadline()
    }

    /// How long to wait for the next timer; `None` when there is none.
    pub(super) fn timer_timeout(&self) -> Option<Duration> {
        let deadline = self.next_deadline()?;
        let now = self.inner.clock.now_ns();
        if deadline <= now {
            return Some(Duration::ZERO);
        }
        if self.inner.clock.auto_advances() {
            if self.inner.external.get() > 0 {
                return None; // wait for the outside work; virtual time stands still
            }
            return Some(Duration::ZERO);
        }
        if self.inner.clock.is_manual() {
            return None; // only `Clock::advance` moves time, and it wakes us
        }
        Some(Duration::from_nanos(deadline - now))
    }

    /// Points the timerfd at the next deadline (system clock only) so that a due
    /// timer makes the loop's fd readable.
    pub(super) fn arm_timerfd(&self) {
        if self.inner.clock.is_manual() {
            return;
        }
        let deadline = self.next_deadline();
        let now = self.inner.clock.now_ns();
        if let Err(e) = self.inner.io.borrow_mut().arm_timer(deadline, now) {
            log::error!("evloop: cannot arm the timer fd: {e}");
        }
    }

    /// One iteration; see the type's docs for the phases. `main` is called for each
    /// `Entry::Main` in the run phase.
    pub(crate) fn iterate(
        &self,
        cap: Option<Duration>,
        always_poll: bool,
        main: &mut dyn FnMut(),
    ) -> Result<(), Error> {
        let inner = &*self.inner;

        // 1. Timeout.
        let busy = self.has_ready_work();
        let mut timeout = if busy {
            Some(Duration::ZERO)
        } else {
            self.timer_timeout()
        };
        if let Some(cap) = cap {
            timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
        }

        // 2. Poll.
        // A virtual clock jumps only after a poll found nothing: with nothing ready,
        // poll now rather than spin through iterations that skip it.
        let blocking = timeout != Some(Duration::ZERO);
        let jump = !busy && inner.clock.auto_advances();
        // This iteration is the `unpolled + 1`-th since the last poll.
        let poll_due = inner.unpolled.get() + 1 >= POLL_INTERVAL;
        if blocking || jump || always_poll || poll_due {
            inner.unpolled.set(0);
            if blocking {
                // Memory a burst needed comes back at the window's end even if the
                // loop has nothing else to do by then.
                if let Some(wait) = self.trim_wait() {
                    timeout = Some(timeout.map_or(wait, |t| t.min(wait)));
                }
                self.arm_timerfd();
                if !inner.shared.prepare_sleep() {
                    timeout = Some(Duration::ZERO);
                }
            }
            let before = Instant::now();
            if let Some(last) = inner.last_poll.get() {
                inner
                    .stats
                    .time_busy
                    .set(inner.stats.time_busy.get() + (before - last));
            }
            let outcome = {
                let mut io = inner.io.borrow_mut();
                let mut ready = inner.ready.borrow_mut();
                io.poll(timeout, &mut ready)
            };
            inner.shared.awake();
            let after = Instant::now();
            inner.last_poll.set(Some(after));
            self.trim_if_due(after);
            let stats = &inner.stats;
            add(&stats.polls, 1);
            if blocking {
                stats
                    .time_blocked
                    .set(stats.time_blocked.get() + (after - before));
            } else {
                stats
                    .time_busy
                    .set(stats.time_busy.get() + (after - before));
            }
            let outcome = outcome?;
            if outcome.woken {
                add(&stats.wakeups, 1);
            }
            if outcome.queued == 0
                && inner.clock.auto_advances()
                && inner.external.get() == 0
                && !self.has_ready_work()
            {
                // Virtual time: nothing to do but wait for a timer, so jump to it.
                if let Some(deadline) = self.next_deadline() {
                    inner.clock.auto_advance_to(deadline);
                }
            }
        } else {
            inner.unpolled.set(inner.unpolled.get() + 1);
        }

        // 3. Timers.
        {
            let mut timers = inner.timers.borrow_mut();
            timers.note_use();
            if !timers.is_empty() {
                let now = inner.clock.now_ns();
                let mut ready = inner.ready.borrow_mut();
                let fired = timers.pop_expired(now, |key, id| {
                    ready.push(Entry::Timer { key, id });
                });
                add(&inner.stats.timers_fired, fired);
            }
        }

        // 4. Threadsafe calls.
        {
            let mut recycled = inner.recycled.borrow_mut();
            if !recycled.is_empty() {
                inner.shared.give_back(&mut recycled);
            }
        }
        if inner.shared.has_pending() {
            let mut drained = inner.drained.borrow_mut();
            if let Some(shard_capacity) = inner.shared.drain(&mut drained) {
                inner.shard_capacity.set(shard_capacity);
            }
            let mut peak = inner.remote_peak.get();
            peak.note(drained.len());
            inner.remote_peak.set(peak);
            let mut ready = inner.ready.borrow_mut();
            add(&inner.stats.remote_calls, drained.len() as u64);
            for call in drained.drain(..) {
                ready.push(Entry::Remote(call));
            }
        }

        // 5. Run exactly what is queued now.
        let n = {
            let mut ready = inner.ready.borrow_mut();
            ready.note_use();
            ready.len()
        };
        let stats = &inner.stats;
        add(&stats.iterations, 1);
        if n > stats.ready_high_water.get() {
            stats.ready_high_water.set(n);
        }
        let mut skipped = 0;
        for _ in 0..n {
            let popped = inner.ready.borrow_mut().pop();
            match popped {
                None => break, // close() from a callback is refused, but be safe
                Some(Entry::Call { callback, location }) => {
                    self.invoke("callback", location, || callback.call(self));
                }
                Some(Entry::Cancelled) => skipped += 1,
                Some(Entry::Main) => main(),
                Some(entry) => self.run_entry(entry),
            }
        }
        add(&stats.callbacks_run, (n - skipped) as u64);
        Ok(())
    }

    pub(super) fn run_entry(&self, entry: Entry) {
        match entry {
            Entry::Call { .. } | Entry::Cancelled | Entry::Main => {
                unreachable!("handled by the run phase")
            }
            Entry::Timer { key, id } => {
                let slot = self.inner.timers.borrow_mut().take(key, id);
                if let Some(slot) = slot {
                    let callback = slot.callback;
                    self.invoke("timer", slot.location, || callback.call(self));
                }
            }
            Entry::Io { key, id, write } => {
                let taken = self.inner.io.borrow_mut().take(key, id, write);
                if let Some((mut callback, location)) = taken {
                    let what = if write { "writer" } else { "reader" };
                    self.invoke(what, location, || callback(self));
                    let rejected = self
                        .inner
                        .io
                        .borrow_mut()
                        .put_back(key, id, write, callback);
                    // Removed or replaced while it ran.
                    if let Some(f) = rejected {
                        self.discard_one("a removed reader or writer", f, location);
                    }
                }
            }
            Entry::Source {
                key,
                generation,
                readiness,
            } => {
                let handler = self.inner.io.borrow().source_handler(key, generation);
                if let Some((handler, location)) = handler {
                    let readiness = Readiness::from_bits(readiness);
                    self.invoke("I/O event handler", location, || {
                        handler.ready(self, readiness)
                    });
                }
            }
            // Runs as a callback itself (catching panics), then recycles its cell.
            Entry::Remote(call) => call.run(self),
            Entry::Runnable(r) => {
                let location = r.location();
                self.invoke("task step", location, || r.run(self));
            }
        }
    }

    /// Something was queued while the loop may be idle in its host: make the fd
    /// readable.
    pub(super) fn queued_while_idle(&self) {
        if !self.inner.running.get() {
            self.inner.shared.force_wake();
        }
    }
}
