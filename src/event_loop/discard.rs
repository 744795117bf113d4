//! Dropping what the loop lets go of without running it: one item at a time, with no
//! borrow of the loop's state held, each inside its own `catch_unwind`.
//!
//! Every user value the loop drops unrun goes through here: a cancelled, replaced,
//! removed or refused callback, a replaced exception handler, and everything
//! `close()` (or the loop's drop) discards. Two rules hold for each:
//!
//! - **No borrow held.** A destructor may call back into the loop (`remove_reader`,
//!   `call_soon`, `cancel`, ...), so the caller takes the value out of the loop's
//!   `RefCell`s first and hands it here.
//! - **One `catch_unwind` per item.** A destructor may panic. The panic is handed to
//!   the exception handler and the next item is still dropped. Dropping a whole `Vec`
//!   would not do: a second panic while the first unwinds aborts the process.

use std::any::Any;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};

use super::Loop;
use crate::errors::{ErrorContext, default_exception_handler};

/// Where a dropped value was scheduled, when known (for the report).
pub(crate) type Scheduled = Option<&'static Location<'static>>;

impl Loop {
    /// Drops each item, reporting a panicking destructor as "dropping `what`".
    pub(crate) fn discard<T>(&self, what: &str, items: impl IntoIterator<Item = T>) {
        for item in items {
            self.discard_one(what, item, None);
        }
    }

    /// Drops each `(item, where it was scheduled)`.
    pub(crate) fn discard_at<T, L: Into<Scheduled>>(
        &self,
        what: &str,
        items: impl IntoIterator<Item = (T, L)>,
    ) {
        for (item, location) in items {
            self.discard_one(what, item, location);
        }
    }

    /// Drops `item` (scheduled at `location`, if known); a panic in its destructor
    /// goes to the exception handler.
    #[inline]
    pub(crate) fn discard_one<T>(&self, what: &str, item: T, location: impl Into<Scheduled>) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(item))) {
            self.report_drop_panic(what, location.into(), payload);
        }
    }

    /// Hands the exception handler a panic caught while dropping `what`.
    #[cold]
    #[inline(never)]
    pub(crate) fn report_drop_panic(
        &self,
        what: &str,
        location: Scheduled,
        payload: Box<dyn Any + Send>,
    ) {
        self.call_exception_handler(drop_panic_context(what, location, &*payload));
        drop_payload(payload);
    }
}

/// Drops each item that will never run (a done-callback of a promise or task whose
/// loop is closed or gone): through [`Loop::discard`] while the loop lives, else
/// [`discard_logged`].
pub(crate) fn discard_unrun<T>(lp: Option<&Loop>, what: &str, items: impl IntoIterator<Item = T>) {
    match lp {
        Some(lp) => lp.discard(what, items),
        None => discard_logged(what, items),
    }
}

/// For the loop's own drop, or a value that outlived its loop, when no [`Loop`] is
/// left to hand the exception handler: drops each item, logging a panicking
/// destructor at error level (as the default handler does).
pub(crate) fn discard_logged<T>(what: &str, items: impl IntoIterator<Item = T>) {
    for item in items {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(item))) {
            log_drop_panic(what, None, payload);
        }
    }
}

/// Logs a panic caught while dropping `what`, where no loop is left to report it to.
#[cold]
pub(super) fn log_drop_panic(what: &str, location: Scheduled, payload: Box<dyn Any + Send>) {
    default_exception_handler(&drop_panic_context(what, location, &*payload));
    drop_payload(payload);
}

fn drop_panic_context(what: &str, location: Scheduled, payload: &(dyn Any + Send)) -> ErrorContext {
    let ctx = ErrorContext::from_panic(
        format!("a destructor panicked while the loop dropped {what}"),
        payload,
    );
    match location {
        Some(l) => ctx.with_location(l),
        None => ctx,
    }
}

/// Drops a panic payload; one that panics in its own destructor is leaked instead
/// (there is nothing left to report it to).
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}
