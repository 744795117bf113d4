//! The process-wide side of signal handling: the signal-hook-registry actions that
//! wake loops, and the disposition each signal had before evloop took it.
//!
//! # How this sits on signal-hook-registry
//! Every (loop, signal) pair is one registry action. The registry installs its own
//! `sigaction` handler the first time anyone registers a signal, remembers the
//! disposition it replaced (and chains to it if that was a function), and runs every
//! registered action from its handler. Its `unregister` removes the action but never
//! gives the signal its old disposition back: with SIG_DFL before it, SIGINT would no
//! longer terminate the process after the last handler went.
//!
//! So this table counts, per signal, the loops that hold a handler. When the count
//! goes from 0 to 1 it saves the disposition in force ("restore"); when it drops back
//! to 0 it puts that disposition back with `sigaction`, before unregistering the last
//! action. The registry does not know: it keeps its slot for the signal and believes
//! its handler is still installed, and will never install it again by itself. The
//! table therefore also remembers the registry's handler ("ours", read right after
//! the first registration) and re-installs it itself when a later registration takes
//! the count from 0 to 1 again.
//!
//! What this costs other users of the registry (documented on
//! [`Loop::add_signal_handler`](crate::Loop::add_signal_handler)): code that
//! registers the same signal through signal-hook-registry *after* evloop did and
//! keeps it after evloop's last handler is gone loses its handler when the old
//! disposition comes back (the registry exposes no count of its actions); code that
//! registered it *before* evloop is unaffected (the disposition evloop saved and puts
//! back is the registry's own handler then). A handler installed over the registry's
//! with plain `sigaction` while evloop holds the signal is left in place at the end.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use signal_hook_registry::SigId;

/// Signals numbered 1..=64 on Linux.
const SLOTS: usize = 65;

/// A loop's wake-up from signal handlers: the signals seen and an eventfd that the
/// loop watches. Shared with the registry's actions, which may run on any thread.
pub(super) struct Wake {
    /// Bit `n - 1` is set when signal `n` arrived and the loop has not taken it yet.
    pending: AtomicU64,
    /// Non-blocking, close-on-exec. Closed only when the last action holding this
    /// `Wake` is dropped, which the registry does after every handler invocation that
    /// could still see it has returned.
    eventfd: OwnedFd,
}

impl Wake {
    pub(super) fn new() -> io::Result<Wake> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new fd that
        // nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Wake {
            pending: AtomicU64::new(0),
            // SAFETY: `fd` was just created and is owned by nobody else.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(super) fn fd(&self) -> &OwnedFd {
        &self.eventfd
    }

    /// Runs inside the OS signal handler: only async-signal-safe work (an atomic
    /// `fetch_or` and `write(2)`). The registry saves and restores `errno` around it.
    fn notify(&self, signum: i32) {
        self.pending.fetch_or(1 << (signum - 1), Ordering::SeqCst);
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live local to an fd this `Wake` owns (see
        // `eventfd`); a full counter (EAGAIN) still leaves the fd readable.
        unsafe { libc::write(self.eventfd.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// On the loop thread: the signals that arrived since the last call. Resets the
    /// eventfd *before* taking the bits, so that a signal arriving in between is
    /// either taken now or wakes the loop again.
    pub(super) fn take(&self) -> u64 {
        let mut counter = 0u64;
        // SAFETY: reads at most 8 bytes into a live local from an fd this `Wake` owns.
        unsafe { libc::read(self.eventfd.as_raw_fd(), (&raw mut counter).cast(), 8) };
        self.pending.swap(0, Ordering::SeqCst)
    }
}

/// One signal's entry in the process-wide table.
struct Entry {
    /// Loops holding a handler for the signal (each through one registry action).
    loops: u32,
    /// The disposition in force when `loops` last went from 0 to 1: put back when it
    /// returns to 0.
    restore: Option<libc::sigaction>,
    /// The registry's handler, read after evloop first registered the signal:
    /// re-installed when `loops` leaves 0 again after a restore.
    ours: Option<libc::sigaction>,
}

const EMPTY: Entry = Entry {
    loops: 0,
    restore: None,
    ours: None,
};

/// Serializes every registration change of every loop (never touched by signal
/// handlers).
static TABLE: Mutex<[Entry; SLOTS]> = Mutex::new([EMPTY; SLOTS]);

/// `Err(InvalidInput)` unless `signum` is a signal a loop can handle: in range, not
/// one that cannot be caught (SIGKILL, SIGSTOP) and not one of the synchronous fault
/// signals the registry refuses (SIGILL, SIGFPE, SIGSEGV). The C library's reserved
/// real-time signals are refused later, by `sigaction` itself.
pub(super) fn check(signum: i32) -> io::Result<()> {
    if signum < 1 || signum as usize >= SLOTS {
        return Err(invalid(format!("signal number {signum} is out of range")));
    }
    if signal_hook_registry::FORBIDDEN.contains(&signum) {
        return Err(invalid(format!("signal {signum} cannot be handled")));
    }
    Ok(())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Adds a registry action that wakes `wake` on `signum`, installing the registry's
/// handler if no loop had one. Nothing is registered on error.
pub(super) fn register(signum: i32, wake: &Arc<Wake>) -> io::Result<SigId> {
    let mut table = TABLE.lock();
    let entry = &mut table[signum as usize];
    // The query also refuses what `sigaction` refuses (the C library's own signals).
    let before = match entry.loops {
        0 => Some(current(signum).map_err(|e| invalid(format!("signal {signum}: {e}")))?),
        _ => None,
    };
    let w = wake.clone();
    // SAFETY: the action runs in a signal handler and does only async-signal-safe work
    // (`Wake::notify`: an atomic and write(2)); it allocates, locks and panics nowhere.
    let id = unsafe { signal_hook_registry::register(signum, move || w.notify(signum)) }
        .map_err(|e| invalid(format!("signal {signum}: {e}")))?;
    if let Some(before) = before {
        match entry.ours {
            // First registration in this process: the registry's handler is in now.
            None => entry.ours = current(signum).ok(),
            // The registry's slot outlived a restore: put its handler back ourselves.
            Some(ours) if !same_handler(&before, &ours) => install(signum, &ours),
            Some(_) => {}
        }
        entry.restore = Some(before);
    }
    entry.loops += 1;
    Ok(id)
}

/// Removes a loop's action; the last one gives the signal back the disposition it had
/// before the first (unless someone replaced the registry's handler meanwhile).
pub(super) fn unregister(signum: i32, id: SigId) {
    let mut table = TABLE.lock();
    let entry = &mut table[signum as usize];
    entry.loops -= 1;
    if entry.loops == 0
        && let (Some(restore), Some(ours)) = (entry.restore.take(), entry.ours)
        && current(signum).is_ok_and(|now| same_handler(&now, &ours))
    {
        // Before unregistering: a signal arriving in between meets the restored
        // disposition rather than a registry handler with nothing to run.
        install(signum, &restore);
    }
    signal_hook_registry::unregister(id);
}

/// The disposition of `signum` now.
fn current(signum: i32) -> io::Result<libc::sigaction> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is valid for writes and zeroed is
    // a valid `sigaction`.
    if unsafe { libc::sigaction(signum, std::ptr::null(), old.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised, and filled in by a successful sigaction.
    Ok(unsafe { old.assume_init() })
}

fn install(signum: i32, action: &libc::sigaction) {
    // SAFETY: `action` is a disposition read back from `sigaction` for this same
    // signal, so it names SIG_DFL, SIG_IGN or a handler that was installed before.
    if unsafe { libc::sigaction(signum, action, std::ptr::null_mut()) } != 0 {
        log::error!(
            "evloop: cannot restore the disposition of signal {signum}: {}",
            io::Error::last_os_error()
        );
    }
}

fn same_handler(a: &libc::sigaction, b: &libc::sigaction) -> bool {
    a.sa_sigaction == b.sa_sigaction
        && (a.sa_flags & libc::SA_SIGINFO) == (b.sa_flags & libc::SA_SIGINFO)
}
