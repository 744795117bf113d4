//! Unix signal handlers that run on the loop: `add_signal_handler` /
//! `remove_signal_handler`.
//!
//! The OS handler (signal-hook-registry's, see `disposition.rs`) only sets a bit and
//! writes to the loop's eventfd; the loop, woken, runs the user's handler as an
//! ordinary callback in its run phase.
//!
//! Why not `signalfd`: it only sees a signal that is blocked in *every* thread of the
//! process (or the signal may be delivered to a thread that does not block it, and
//! the default action kills the process). A library cannot promise that for threads
//! it did not start, and blocking a signal changes what `exec`ed children inherit. A
//! handler installed through signal-hook-registry needs nothing of other threads and
//! chains to handlers other code installed before it.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use crate::source::FdSource;
use mio::Interest;
use signal_hook_registry::SigId;

use crate::Loop;
use crate::errors::{Error, ErrorContext};
use crate::handle::{Handle, Registration};
use crate::source::{Readiness, SourceHandler};

mod disposition;

use disposition::Wake;

type SignalCallback = Box<dyn FnMut(&Loop)>;

/// A loop's handler for one signal.
struct Slot {
    /// Bumped by every `add_signal_handler`: a handle names one generation.
    generation: u64,
    /// The loop's registry action for the signal (kept across replacements).
    action: SigId,
    /// `None` while the handler runs (taken out, so that it may re-enter the loop).
    callback: Option<SignalCallback>,
    location: &'static Location<'static>,
}

/// One loop's signal handlers, and its wake-up (registered as a source).
struct Signals {
    wake: Arc<Wake>,
    /// Indexed by signal number.
    slots: RefCell<Vec<Option<Slot>>>,
    next_generation: Cell<u64>,
}

/// The per-loop extension: made on the first `add_signal_handler` (the eventfd may
/// fail to open, and the extension maker cannot fail).
#[derive(Default)]
struct SignalsExt(RefCell<Option<Rc<Signals>>>);

impl Signals {
    /// The loop's signal state, made (and its eventfd registered) on first use.
    fn of(lp: &Loop) -> io::Result<Rc<Signals>> {
        let ext = lp.extension(SignalsExt::default);
        if let Some(s) = ext.0.borrow().as_ref() {
            return Ok(s.clone());
        }
        let wake = Arc::new(Wake::new()?);
        let signals = Rc::new(Signals {
            wake,
            slots: RefCell::new((0..65).map(|_| None).collect()),
            next_generation: Cell::new(1),
        });
        lp.register_source(
            &mut FdSource(signals.wake.fd().as_raw_fd()),
            Interest::READABLE,
            signals.clone(),
        )?;
        *ext.0.borrow_mut() = Some(signals.clone());
        Ok(signals)
    }

    /// The loop's signal state if it was ever made.
    fn existing(lp: &Loop) -> Option<Rc<Signals>> {
        let ext = lp.extension(SignalsExt::default);
        ext.0.borrow().clone()
    }

    fn add(
        self: &Rc<Self>,
        signum: i32,
        callback: SignalCallback,
        location: &'static Location<'static>,
    ) -> io::Result<Handle> {
        let generation = self.next_generation.get();
        self.next_generation.set(generation + 1);
        let i = signum as usize;
        // Replacing keeps the registry action; the old closure is dropped with no
        // borrow held.
        let replaced = {
            let mut slots = self.slots.borrow_mut();
            match slots[i].as_mut() {
                Some(slot) => {
                    slot.generation = generation;
                    slot.location = location;
                    Ok(slot.callback.replace(callback))
                }
                None => Err(callback),
            }
        };
        match replaced {
            Ok(old) => drop(old),
            Err(callback) => {
                let action = disposition::register(signum, &self.wake)?;
                self.slots.borrow_mut()[i] = Some(Slot {
                    generation,
                    action,
                    callback: Some(callback),
                    location,
                });
            }
        }
        Ok(Handle::upper(Rc::new(SignalRegistration {
            signals: Rc::downgrade(self),
            signum,
            generation,
        })))
    }

    /// Removes the handler of `signum` (only generation `generation`, if given).
    fn remove(&self, signum: i32, generation: Option<u64>) -> bool {
        let taken = {
            let mut slots = self.slots.borrow_mut();
            match slots.get_mut(signum as usize) {
                Some(s)
                    if s.as_ref()
                        .is_some_and(|s| generation.is_none_or(|g| g == s.generation)) =>
                {
                    s.take()
                }
                _ => None,
            }
        };
        let Some(slot) = taken else {
            return false;
        };
        disposition::unregister(signum, slot.action);
        drop(slot); // the closure, with no borrow held
        true
    }

    fn is_current(&self, signum: i32, generation: u64) -> bool {
        self.slots.borrow()[signum as usize]
            .as_ref()
            .is_some_and(|s| s.generation == generation)
    }

    /// Removes every handler (the loop is closing). A closure that panics when
    /// dropped is reported; the others are still removed.
    fn remove_all(&self, lp: &Loop) {
        for signum in 1..65 {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.remove(signum, None))) {
                let ctx = ErrorContext::from_panic(
                    "a signal handler panicked when dropped while the loop closed",
                    &*payload,
                );
                lp.call_exception_handler(ctx);
            }
        }
    }

    /// Runs the handler of `signum`, if any, as a callback.
    fn run(&self, lp: &Loop, signum: i32) {
        let taken = {
            let mut slots = self.slots.borrow_mut();
            slots[signum as usize].as_mut().and_then(|s| {
                let cb = s.callback.take()?;
                Some((cb, s.generation, s.location))
            })
        };
        let Some((mut callback, generation, location)) = taken else {
            return;
        };
        lp.invoke("signal handler", location, || callback(lp));
        // Put it back unless the handler removed or replaced itself meanwhile.
        let rejected = {
            let mut slots = self.slots.borrow_mut();
            match slots[signum as usize].as_mut() {
                Some(s) if s.generation == generation && s.callback.is_none() => {
                    s.callback = Some(callback);
                    None
                }
                _ => Some(callback),
            }
        };
        drop(rejected);
    }
}

impl SourceHandler for Signals {
    fn ready(&self, lp: &Loop, _: Readiness) {
        let mut bits = self.wake.take();
        while bits != 0 {
            let signum = bits.trailing_zeros() as i32 + 1;
            bits &= bits - 1;
            self.run(lp, signum);
        }
    }

    fn loop_closed(&self, lp: &Loop) {
        self.remove_all(lp);
    }
}

impl Drop for Signals {
    /// A loop dropped without `close()`: its actions go, dispositions come back.
    fn drop(&mut self) {
        for (signum, slot) in self.slots.get_mut().iter_mut().enumerate() {
            let Some(slot) = slot.take() else { continue };
            disposition::unregister(signum as i32, slot.action);
            if catch_unwind(AssertUnwindSafe(|| drop(slot))).is_err() {
                log::error!("evloop: a signal handler panicked when dropped with its loop");
            }
        }
    }
}

/// What a signal handler's [`Handle`] cancels: one generation of one slot.
struct SignalRegistration {
    signals: Weak<Signals>,
    signum: i32,
    generation: u64,
}

impl Registration for SignalRegistration {
    fn cancel(&self) {
        if let Some(s) = self.signals.upgrade() {
            s.remove(self.signum, Some(self.generation));
        }
    }

    fn is_current(&self) -> bool {
        self.signals
            .upgrade()
            .is_some_and(|s| s.is_current(self.signum, self.generation))
    }
}

impl Loop {
    /// Calls `f` on this loop's thread, as an ordinary callback, whenever signal
    /// `signum` arrives (asyncio's `add_signal_handler`).
    ///
    /// `f` never runs inside the OS signal handler, so it may do anything a callback
    /// does. Signals do not queue: a burst of one signal runs `f` at least once, not
    /// once per signal. A signal that arrives while the loop blocks in poll wakes it
    /// at once. Any thread that runs a loop may register (asyncio allows only the
    /// main thread), and several loops may handle one signal: each runs its handler.
    ///
    /// Adding a handler for a signal that already has one on this loop replaces it:
    /// the old closure is dropped at once and its handle counts as cancelled. A
    /// handler that panics is reported to the exception handler and stays registered.
    ///
    /// # Dispositions
    /// The OS handler is installed through `signal-hook-registry` (shared with other
    /// crates that use it, and chained to a handler installed before). Once no loop
    /// has a handler for the signal any more ([`remove_signal_handler`], the handle's
    /// `cancel`, [`close`](Loop::close), or dropping the loop), the signal gets back
    /// the disposition it had before the first loop took it: SIGINT terminates the
    /// process again. Code that registered the same signal through
    /// signal-hook-registry *after* evloop did, and keeps it after evloop's last
    /// handler goes, loses its handler then (the registry cannot tell evloop that it
    /// has other users); code that did so *before* evloop keeps working.
    ///
    /// [`remove_signal_handler`]: Loop::remove_signal_handler
    ///
    /// # Errors
    /// `Err(InvalidInput)`, with nothing registered, for a number out of range, for
    /// SIGKILL and SIGSTOP (they cannot be caught), for SIGILL, SIGFPE and SIGSEGV
    /// (faults of the thread itself, which a handler that returns cannot mend), and
    /// for signals the C library reserves (32 and 33 under glibc). An error too on a
    /// closed loop, or if the loop's wake-up eventfd cannot be made.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// let lp = evloop::Loop::new()?;
    /// let got = Rc::new(Cell::new(0));
    /// let g = got.clone();
    /// lp.add_signal_handler(libc::SIGUSR1, move |lp| {
    ///     g.set(g.get() + 1);
    ///     lp.stop();
    /// })?;
    /// // SAFETY: raising a signal this process now handles.
    /// unsafe { libc::raise(libc::SIGUSR1) };
    /// lp.run_forever()?;
    /// assert_eq!(got.get(), 1);
    /// assert!(lp.remove_signal_handler(libc::SIGUSR1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn add_signal_handler(
        &self,
        signum: i32,
        f: impl FnMut(&Loop) + 'static,
    ) -> io::Result<Handle> {
        let location = Location::caller();
        disposition::check(signum)?;
        if self.is_closed() {
            return Err(io::Error::other(Error::Closed));
        }
        Signals::of(self)?.add(signum, Box::new(f), location)
    }

    /// Removes this loop's handler for `signum`; returns whether there was one. The
    /// closure is dropped at once. With no loop handling the signal any more, it gets
    /// back its disposition from before (see
    /// [`add_signal_handler`](Loop::add_signal_handler)). A number out of range is
    /// simply `false`.
    pub fn remove_signal_handler(&self, signum: i32) -> bool {
        if disposition::check(signum).is_err() || self.is_closed() {
            return false;
        }
        Signals::existing(self).is_some_and(|s| s.remove(signum, None))
    }
}
