//! loom models of evloop's cross-thread state machines.
//!
//! evloop keeps each cross-thread protocol in a small file whose atomics, `Arc`,
//! mutex and condition variable come from `src/sync_shim.rs`; this crate includes
//! those files by path and builds them with `--cfg loom`, which turns the shim to
//! loom's primitives and compiles the `loom_tests` module at the bottom of each file.
//! A separate crate, because `RUSTFLAGS="--cfg loom"` reaches every crate in the
//! build, and some of evloop's dependencies (concurrent-queue, through async-channel)
//! do not build under it; here the only dependency is loom.
//!
//! Run it with `bash .ci/loom`. Without `--cfg loom` this crate is empty.
#![cfg(loom)]
#![allow(dead_code)]

#[path = "../src/sync_shim.rs"]
mod sync_shim;

#[path = "../src/call_cell.rs"]
mod call_cell;

#[path = "../src/completion.rs"]
mod completion;

#[path = "../src/manual_time.rs"]
mod manual_time;

#[path = "../src/remote_queue.rs"]
mod remote_queue;

#[path = "../src/remote_wakes.rs"]
mod remote_wakes;

#[path = "../src/wake_state.rs"]
mod wake_state;
