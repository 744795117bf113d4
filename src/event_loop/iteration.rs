//! One iteration of the loop, phase by phase, and the start and end of a run.
//!
//! `iterate` reads as the phases the crate docs describe
//! ([One iteration, phase by phase](crate#one-iteration-phase-by-phase)):
//! `poll_timeout`, `poll_io`, `queue_timers`, `queue_remote`, `run_ready`. It is the
//! only place where callbacks run; everything else queues them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use std::rc::Rc;

use super::{CURRENT, Loop, RUNNING};
use crate::errors::Error;
use crate::ready::Entry;
use crate::source::Readiness;
use crate::stats::add;

/// While callbacks keep the loop busy, the OS is polled (without blocking) on at
/// least every this many-th iteration: after a poll, at most `POLL_INTERVAL - 1`
/// iterations skip it, so a ready fd waits at most `POLL_INTERVAL` iterations. An
/// idle or blocking iteration always polls. Skipping the poll syscall on the others
/// is what makes a chain of callbacks cheap. With no fd watched at all (no reader,
/// writer, socket, signal or child), a busy iteration never needs the poll: what
/// the loop's own fds would report (threadsafe calls, due timers) it checks on every
/// iteration anyway.
pub(crate) const POLL_INTERVAL: u32 = 32;

/// Restores the loop's idle state when a run ends, even by a panic.
pub(crate) struct RunGuard<'a> {
    lp: &'a Loop,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.lp.inner.running.set(false);
        self.lp.inner.stopping.set(false);
        // `RUNNING` first: it must never outlive `CURRENT`'s clone.
        let _ = RUNNING.try_with(|r| r.set(std::ptr::null()));
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
        // After `CURRENT`, which now keeps the `Inner` alive (see `RUNNING`). If the
        // thread's locals are being destroyed, `CURRENT` refused above.
        let _ = RUNNING.try_with(|r| r.set(Rc::as_ptr(&self.inner)));
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

    /// One iteration, as the crate docs describe it
    /// ([One iteration, phase by phase](crate#one-iteration-phase-by-phase)). `cap`
    /// caps the poll timeout (`run_once`), `always_poll` makes the iteration poll the
    /// OS even when the poll could be skipped, and `main` is called for each
    /// `Entry::Main` in the run phase (`run_until_complete`).
    ///
    /// This is the only place where callbacks run; everything else queues them.
    pub(crate) fn iterate(
        &self,
        cap: Option<Duration>,
        always_poll: bool,
        main: &mut dyn FnMut(),
    ) -> Result<(), Error> {
        let busy = self.has_ready_work();
        let timeout = self.poll_timeout(busy, cap);
        self.poll_io(busy, timeout, always_poll)?;
        self.queue_timers();
        self.queue_remote();
        self.run_ready(main);
        Ok(())
    }

    /// Phase 1: how long the poll may block: zero when work is ready, else until the
    /// earliest live timer (or forever), capped by `cap`.
    #[inline(always)]
    fn poll_timeout(&self, busy: bool, cap: Option<Duration>) -> Option<Duration> {
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            self.timer_timeout()
        };
        match cap {
            Some(cap) => Some(timeout.map_or(cap, |t| t.min(cap))),
            None => timeout,
        }
    }

    /// Phase 2: polls the OS (or skips it; see [`POLL_INTERVAL`]) and queues the
    /// ready readers, writers and sources.
    #[inline(always)]
    fn poll_io(
        &self,
        busy: bool,
        timeout: Option<Duration>,
        always_poll: bool,
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        // This iteration is the `unpolled + 1`-th since the last poll.
        let poll_due = always_poll || inner.unpolled.get() + 1 >= POLL_INTERVAL;
        // Work ready means a zero timeout: the busy path skips the comparison.
        let blocking = !busy && timeout != Some(Duration::ZERO);
        // A virtual clock jumps only after a poll found nothing: with nothing ready,
        // poll now rather than spin through iterations that skip it.
        if poll_due || blocking || (!busy && inner.clock.auto_advances()) {
            inner.unpolled.set(0);
            self.poll_os(timeout, blocking, busy && !always_poll)
        } else {
            inner.unpolled.set(inner.unpolled.get() + 1);
            Ok(())
        }
    }

    /// A busy iteration's periodic poll, skipped because no fd is watched (it could
    /// only find the loop's own fds ready): what the poll would have done but the
    /// syscall, the busy time and the memory trim, is done all the same.
    fn skip_poll(&self) {
        let now = Instant::now();
        let inner = &*self.inner;
        if let Some(last) = inner.last_poll.replace(Some(now)) {
            let busy = &inner.stats.time_busy;
            busy.set(busy.get() + (now - last));
        }
        self.trim_if_due(now);
    }

    /// Polls the OS for at most `timeout` (`blocking`: it may wait) and queues what
    /// is ready. `skippable`: a busy iteration's periodic poll, which is skipped when
    /// no fd is watched.
    #[inline(never)] // off the busy path: one call per poll, which is a syscall anyway
    fn poll_os(
        &self,
        mut timeout: Option<Duration>,
        blocking: bool,
        skippable: bool,
    ) -> Result<(), Error> {
        let inner = &*self.inner;
        if skippable && !inner.io.borrow().watches_fds() {
            self.skip_poll();
            return Ok(());
        }
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
        let outcome = {
            let mut io = inner.io.borrow_mut();
            let mut ready = inner.ready.borrow_mut();
            io.poll(timeout, &mut ready)
        };
        inner.shared.awake();
        let after = Instant::now();
        self.trim_if_due(after);
        self.count_poll(before, after, blocking);
        let outcome = outcome?;
        if outcome.woken {
            add(&inner.stats.wakeups, 1);
        }
        if outcome.queued == 0 {
            self.jump_virtual_time();
        }
        Ok(())
    }

    /// Stats of a poll that ran from `before` to `after`: busy time since the last
    /// poll, then the poll's own time as blocked or busy.
    #[inline(always)]
    fn count_poll(&self, before: Instant, after: Instant, blocking: bool) {
        let inner = &*self.inner;
        let stats = &inner.stats;
        if let Some(last) = inner.last_poll.replace(Some(after)) {
            stats.time_busy.set(stats.time_busy.get() + (before - last));
        }
        add(&stats.polls, 1);
        let spent = if blocking {
            &stats.time_blocked
        } else {
            &stats.time_busy
        };
        spent.set(spent.get() + (after - before));
    }

    /// Virtual time after a poll that found nothing: with nothing to do but wait for
    /// a timer (and no outside work in flight), an auto-advancing clock jumps to it.
    #[inline(always)]
    fn jump_virtual_time(&self) {
        let inner = &*self.inner;
        if inner.clock.auto_advances()
            && inner.external.get() == 0
            && !self.has_ready_work()
            && let Some(deadline) = self.next_deadline()
        {
            inner.clock.auto_advance_to(deadline);
        }
    }

    /// Phase 3: queues every timer whose deadline has passed, earliest first.
    #[inline(always)]
    fn queue_timers(&self) {
        let inner = &*self.inner;
        let mut timers = inner.timers.borrow_mut();
        if !timers.is_empty() {
            // (Noting the use of an empty store would note nothing.)
            timers.note_use();
            let now = inner.clock.now_ns();
            let mut ready = inner.ready.borrow_mut();
            let fired = timers.pop_expired(now, |key, id| {
                ready.push(Entry::Timer { key, id });
            });
            add(&inner.stats.timers_fired, fired);
        }
    }

    /// Phase 4: queues the calls that arrived from other threads (after handing
    /// spent call cells back to the remote queue's pool).
    #[inline(always)]
    fn queue_remote(&self) {
        let inner = &*self.inner;
        {
            let mut recycled = inner.recycled.borrow_mut();
            if !recycled.is_empty() {
                inner.shared.give_back(&mut recycled);
            }
        }
        if !inner.shared.has_pending() {
            return;
        }
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

    /// Phase 5: runs exactly the entries queued now; what they queue waits for the
    /// next iteration.
    #[inline(always)]
    fn run_ready(&self, main: &mut dyn FnMut()) {
        let inner = &*self.inner;
        let n = {
            let mut ready = inner.ready.borrow_mut();
            ready.note_use();
            ready.len()
        };
        self.count_iteration(n);
        let mut skipped = 0;
        for _ in 0..n {
            let popped = inner.ready.borrow_mut().pop();
            // The two common kinds are tested one after the other, the others left to
            // `run_entry`: one compare each rather than a jump table.
            // (`close()` from a callback is refused, but be safe.)
            let Some(entry) = popped else { break };
            match entry {
                Entry::Call { callback, location } => {
                    self.invoke("callback", location, || callback.call(self));
                }
                Entry::Runnable(r) => self.run_step(r),
                entry => {
                    if !self.run_other(entry, main) {
                        skipped += 1;
                    }
                }
            }
        }
        add(&inner.stats.callbacks_run, (n - skipped) as u64);
    }

    /// Stats of an iteration whose run phase has `n` entries.
    #[inline(always)]
    fn count_iteration(&self, n: usize) {
        let stats = &self.inner.stats;
        add(&stats.iterations, 1);
        if n > stats.ready_high_water.get() {
            stats.ready_high_water.set(n);
        }
    }

    /// Runs an entry that is neither a call nor a task step; returns false if it was
    /// a cancelled call (skipped).
    #[inline(never)]
    fn run_other(&self, entry: Entry, main: &mut dyn FnMut()) -> bool {
        match entry {
            Entry::Cancelled => return false,
            Entry::Main => main(),
            entry => self.run_entry(entry),
        }
        true
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
            Entry::Source { token, readiness } => {
                let handler = self.inner.io.borrow().source_handler(token);
                if let Some((handler, location)) = handler {
                    let readiness = Readiness::from_bits(readiness);
                    self.invoke("I/O event handler", location, || {
                        handler.ready(self, readiness)
                    });
                }
            }
            // Runs as a callback itself (catching panics), then recycles its cell.
            Entry::Remote(call) => call.run(self),
            Entry::Runnable(r) => self.run_step(r),
        }
    }

    /// Runs a task step as a callback. Outside debug mode the step's location is
    /// needed only if it panics: it is asked for then, through a second reference
    /// (a count increment costs less than asking every step).
    #[inline(always)]
    fn run_step(&self, r: std::rc::Rc<dyn crate::ready::Runnable>) {
        if self.inner.debug {
            let location = r.location();
            self.invoke("task step", location, || r.run(self));
            return;
        }
        let step = r.clone();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| step.run(self))) {
            self.report_panic(r.location(), payload);
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
