//! evloop: a callback-based event loop in the style of Python's asyncio.
//!
//! One thread owns a [`Loop`]. Timers, I/O readiness and work sent from other threads
//! all turn into callbacks on the loop's ready queue, run one at a time by
//! [`Loop::run_forever`] or, in an embedding host, [`Loop::run_once`].
//!
//! ```
//! use std::time::Duration;
//! use evloop::Loop;
//!
//! let lp = Loop::new()?;
//! lp.call_soon(|_| println!("soon"));
//! let timer = lp.call_later(Duration::from_millis(5), |lp| {
//!     println!("5 ms later");
//!     lp.stop();
//! });
//! println!("due at {:?}", timer.when());
//!
//! let remote = lp.remote(); // Send + Sync: other threads schedule through it
//! std::thread::spawn(move || {
//!     remote.call_soon_threadsafe(|_| println!("from another thread")).unwrap();
//! });
//! lp.run_forever()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # One iteration, phase by phase
//! 1. **Timeout.** Zero if callbacks are ready, a threadsafe call is queued or the loop
//!    is stopping; else until the earliest live timer; else forever.
//! 2. **Poll.** Wait for I/O that long (epoll through mio; a `timerfd` gives timers
//!    sub-millisecond precision) and queue every ready reader and writer. Readers and
//!    writers are level-triggered, as asyncio's. While callbacks keep the loop busy,
//!    the OS is polled without blocking on at least every 32nd iteration instead of
//!    on each, so a ready fd waits at most 32 iterations behind a chain of callbacks;
//!    an idle or blocking iteration, and every [`Loop::run_once`], always polls. (A
//!    busy loop that watches no fd at all skips those periodic polls: they could
//!    only report threadsafe calls and due timers, which every iteration checks.)
//! 3. **Timers.** Queue every timer whose deadline has passed, in deadline order, equal
//!    deadlines in scheduling order. A timer never fires early.
//! 4. **Threadsafe calls.** Queue what other threads sent.
//! 5. **Run.** Run exactly the callbacks queued when this phase began, in order.
//!    Whatever they schedule waits for the next iteration. This is the only place
//!    where callbacks run; everything else just queues them.
//!
//! (This is the one description of the phases; the [`Loop`] docs and the code's
//! `iterate`, whose phase functions carry these names, link here.)
//!
//! # Threads
//! [`Loop`], [`Handle`] and [`TimerHandle`] are `!Send`: they belong to the loop's
//! thread, and callbacks scheduled with [`Loop::call_soon`] need not be `Send`. The
//! one door in from other threads is [`Remote`] (`Send + Sync + Clone`):
//! [`Remote::call_soon_threadsafe`] takes a `Send` closure and returns a
//! [`RemoteHandle`] that any thread may cancel. A loop blocked in poll wakes at once;
//! a burst of calls costs one wake-up.
//!
//! # Embedding
//! A GUI, game or FFI host that has its own main loop waits on [`Loop::as_raw_fd`]
//! (readable whenever the loop has work) with [`Loop::next_timeout`] as its timeout,
//! then calls [`Loop::run_once`] with a zero timeout.
//!
//! What is `Send`: [`Remote`], [`RemoteHandle`] and [`RemoteTask`] are; the futures of
//! this crate that reach the loop (a [`Sleep`], a [`Timeout`], the sockets of
//! [`net`] and their futures, `Promise`, the [`sync`] types) are not, as they share
//! state with the loop of their thread. Tasks need no `Send`
//! ([`spawn`], [`Loop::create_task`]); [`Remote::spawn`] does, and
//! [`Remote::spawn_with`] builds a `!Send` future on the loop instead.
//!
//! # Interop
//! - [`run()`] is asyncio's `asyncio.run` (a fresh loop, leftover tasks unwound, then
//!   closed) and `#[evloop::main]` wraps `async fn main` in it.
//! - The sockets of [`net`] are `AsFd` / `AsRawFd`, come `from_std` and go
//!   `into_std`, take any option through `socket2::SockRef`, and implement
//!   futures-io's `AsyncRead` / `AsyncWrite` (for `&TcpStream` too, to split a
//!   stream). [`net::AsyncFd`] makes any other fd an async source.
//! - `evloop::compat` (features `hyper`, `futures-task`): hyper 1.x's runtime traits,
//!   so that hyper's servers and clients run on a loop; `futures::task::Spawn` /
//!   `LocalSpawn` for [`Loop`] and [`Remote`].
//!
//! # Logging and tracing
//! evloop reports through the [`log`](https://docs.rs/log) crate: the default
//! exception handler logs a panicking callback at error level, and debug mode logs
//! slow callbacks at warning level. An application on `tracing` receives these
//! records by installing `tracing-log`'s bridge (`tracing_log::LogTracer::init()`,
//! or a subscriber built with its `tracing-log` feature): each becomes a `tracing`
//! event with the record's level, target (`evloop::…`) and message.
//!
//! A task instrumented with `tracing::Instrument` stays in its span across steps:
//! the span is entered around each poll of the task, and exited in between, so the
//! tasks that run between its steps are not inside it.
//!
//! ```
//! use tracing::Instrument;
//! evloop::run(async {
//!     let job = async {
//!         tracing::info!("first step");
//!         evloop::yield_now().await;
//!         tracing::info!("second step, same span");
//!     };
//!     evloop::spawn(job.instrument(tracing::info_span!("job", id = 7))).await.unwrap();
//! })
//! .unwrap();
//! ```
//!
//! # Platform
//! 64-bit Linux (epoll, eventfd, timerfd); Rust 1.95 or later.

#![warn(missing_docs)]
#![warn(rust_2018_idioms)]

// Task wakers pack a loop id, a task key and a generation into a pointer-sized word.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("evloop supports 64-bit Linux only");

mod call_cell;
mod callback;
mod capacity;
mod clock;
#[cfg(any(feature = "hyper", feature = "futures-task"))]
pub mod compat;
mod completion;
mod errors;
mod event_loop;
mod executor;
mod group;
mod handle;
mod io;
mod manual_time;
pub mod net;
pub mod process;
mod promise;
mod ready;
mod remote;
mod remote_queue;
mod remote_task;
mod remote_wakes;
mod run;
mod run_until_complete;
mod signal;
mod source;
mod stats;
pub mod sync;
mod sync_shim;
mod task;
mod task_group;
mod task_group_error;
pub mod test;
mod time;
mod timers;
mod token;
mod waiters;
mod wake_state;

pub use clock::Clock;
pub use errors::{Cancelled, Error, ErrorContext, InvalidState};
pub use event_loop::{Loop, LoopBuilder};
pub use group::LoopGroup;
pub use handle::{Handle, RemoteHandle, TimerHandle};
pub use net::{
    DatagramProtocol, DatagramTransport, Protocol, Server, ServerOptions, TcpListener, TcpStream,
    Transport, UdpSocket, UnixListener, UnixStream,
};
pub use process::{
    ChildStderr, ChildStdin, ChildStdout, Process, SubprocessProtocol, SubprocessTransport,
};
pub use promise::{CallbackId, Promise};
pub use remote::Remote;
pub use remote_task::RemoteTask;
#[doc(hidden)]
pub use run::__main;
pub use run::run;
pub use stats::Stats;
pub use sync::{
    Event, Lock, LockGuard, Queue, QueueShutDown, Semaphore, SemaphorePermit, TryGetError,
    TryPutError,
};
pub use task::{Task, TaskError, spawn};
pub use task_group::{TaskGroup, Wait};
pub use task_group_error::TaskGroupError;
pub use time::{
    Interval, Sleep, Timeout, TimeoutError, YieldNow, interval, sleep, sleep_until, timeout,
    timeout_at, yield_now,
};

/// Runs an `async fn` test on a fresh loop; see [`mod@test`].
pub use evloop_macros::test;

/// Runs `async fn main` through [`run()`]: a fresh loop, closed once `main` is done
/// and its leftover tasks have unwound.
///
/// ```
/// #[evloop::main]
/// async fn main() {
///     evloop::sleep(std::time::Duration::from_millis(1)).await;
///     println!("slept on evloop");
/// }
/// ```
///
/// `main` may return what a plain `main` may (`Result<(), E>` with `E: Debug`). If the
/// loop cannot be created, the program panics saying so.
pub use evloop_macros::main;
