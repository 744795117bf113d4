//! The synchronization primitives of the cross-thread state machines.
//!
//! The files that hold a cross-thread protocol (`wake_state`, `call_cell`,
//! `remote_queue`, `remote_wakes`, `completion`, `manual_time`) take their atomics, `Arc`, mutex and
//! condition variable from here and from nowhere else. Normally these are plain
//! re-exports of `std` and `parking_lot` (zero cost). Under `cfg(loom)` (only in the
//! `loom-models` crate, which includes those files by path; see `.ci/loom`) they are
//! loom's, so that the models at the bottom of each file explore every interleaving
//! and every weak-memory outcome that loom knows of.

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering, fence};
#[cfg(loom)]
pub(crate) use mocked::{Condvar, Mutex};

/// loom's mutex and condition variable behind `parking_lot`'s interface (no
/// poisoning; `wait` takes the guard by `&mut`).
#[cfg(loom)]
mod mocked {
    use std::ops::{Deref, DerefMut};

    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap()))
        }
    }

    /// Always `Some` but while [`Condvar::wait`] has it.
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().unwrap()
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().unwrap()
        }
    }

    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Condvar {
            Condvar(loom::sync::Condvar::new())
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let g = guard.0.take().unwrap();
            guard.0 = Some(self.0.wait(g).unwrap());
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
