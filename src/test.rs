//! Running async tests on a fresh loop: the plain-function form of `#[evloop::test]`.
//!
//! ```
//! use std::time::Duration;
//! // A one-hour timeout, tested in milliseconds under the manual clock:
//! let r = evloop::test::run_manual_clock(async {
//!     evloop::timeout(Duration::from_secs(3600), std::future::pending::<()>()).await
//! });
//! assert_eq!(r, Err(evloop::TimeoutError));
//! ```
//!
//! With the attribute (needs nothing else in scope):
//! ```
//! #[evloop::test(manual_clock)]
//! async fn retries_back_off() {
//!     let lp = evloop::Loop::current().unwrap();
//!     let start = lp.time();
//!     for attempt in 0..5u32 {
//!         evloop::sleep(std::time::Duration::from_secs(60 << attempt)).await;
//!     }
//!     assert_eq!(lp.time() - start, std::time::Duration::from_secs(60 * 31));
//! }
//! # fn main() {}
//! ```

use std::future::Future;

use crate::{Clock, Loop};

/// Runs `fut` to completion on a fresh loop with the system clock, then closes the
/// loop, and returns the future's output.
///
/// # Panics
/// If the loop cannot be created or run, or if `fut` panics (the panic resumes here,
/// so the test fails with it).
pub fn run<F: Future>(fut: F) -> F::Output {
    run_with_clock(Clock::system(), fut)
}

/// As [`run`], under a manual, auto-advancing [`Clock`]: sleeps and timeouts complete
/// as soon as nothing else is ready, however long they are.
pub fn run_manual_clock<F: Future>(fut: F) -> F::Output {
    run_with_clock(Clock::manual(), fut)
}

/// As [`run`], with the given clock.
pub fn run_with_clock<F: Future>(clock: Clock, fut: F) -> F::Output {
    let lp = Loop::builder()
        .clock(clock)
        .build()
        .expect("evloop::test: cannot create a loop");
    let out = lp
        .run_until_complete(fut)
        .expect("evloop::test: the loop did not run the test to completion");
    lp.close().expect("evloop::test: cannot close the loop");
    out
}
