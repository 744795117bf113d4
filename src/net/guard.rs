//! `guarded`: the one place where the networking layer calls user code (a protocol's
//! methods, a server's protocol factory, their destructors) and catches its panics.
//!
//! A panic never unwinds through a transport's own state (a read loop, a flush, a
//! `connection_lost` that still has a socket to close): it is caught at the call,
//! reported to the loop's exception handler, and the caller decides what it means for
//! the connection (a stream transport closes it, as asyncio's `_fatal_error` does).

use std::any::Any;
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::ErrorContext;
use crate::event_loop::WeakLoop;

/// Runs `f`, user code described by `what` ("a protocol's eof_received"; formatted
/// only after a panic, so a `format_args!` costs nothing on the way). A panic is
/// reported to the exception handler of `lp` (or logged, if the loop is gone) as
/// "`what` panicked", and `None` is returned.
pub(crate) fn guarded<R>(lp: &WeakLoop, what: impl Display, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) => {
            report(lp, &what, payload);
            None
        }
    }
}

/// Drops `value` (user data: a protocol, a factory) through [`guarded`], so that a
/// destructor that panics is reported instead of unwinding into the transport.
pub(crate) fn drop_guarded<T>(lp: &WeakLoop, what: impl Display, value: T) {
    guarded(lp, what, move || drop(value));
}

#[cold]
#[inline(never)]
fn report(lp: &WeakLoop, what: &dyn Display, payload: Box<dyn Any + Send>) {
    let ctx = ErrorContext::from_panic(format!("{what} panicked"), &*payload);
    // The payload is user data too: its destructor may panic.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
    match lp.upgrade() {
        Some(lp) => lp.call_exception_handler(ctx),
        None => log::error!("{ctx}"),
    }
}
