//! A guided tour of evloop: every feature in a short, printed section.
//!
//! ```text
//! cargo run --release --example tour
//! ```
//!
//! Each section builds a fresh [`Loop`], schedules a little work, runs it and prints
//! what happened. Sections 1–10 are the callback core; 11–15 the layers on top of it
//! (tasks, promises, timeouts, task groups, the executor, `Remote::spawn`, queues);
//! 16 is `close()`, 17 signal handlers, 18 the streams API (`start_server`,
//! `open_connection`).
//! The whole tour takes well under a second.

use std::cell::Cell;
use std::error::Error as StdError;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use evloop::{Clock, ErrorContext, Loop};

type Result<T = ()> = std::result::Result<T, Box<dyn StdError>>;

fn main() -> Result {
    log::set_logger(&LOGGER)?;
    log::set_max_level(log::LevelFilter::Info);

    let started = Instant::now();
    println!("evloop tour: a callback event loop in the style of asyncio");

    call_soon_fifo()?;
    timers()?;
    cancelling()?;
    readers_and_writers()?;
    other_threads()?;
    remote_stop()?;
    exception_handler()?;
    debug_mode()?;
    manual_clock()?;
    embedding()?;
    tasks_and_promises()?;
    sleep_and_timeout()?;
    task_group_and_executor()?;
    remote_spawn()?;
    queue()?;
    closing()?;
    signals()?;
    streams()?;

    println!("\ntour finished in {:.1?}", started.elapsed());
    Ok(())
}

fn heading(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Prints a line when dropped: shows when the loop lets go of a closure.
struct Noisy(&'static str);

impl Drop for Noisy {
    fn drop(&mut self) {
        println!("  (closure of {} dropped)", self.0);
    }
}

/// 1. `call_soon` is a FIFO; work scheduled while running waits for the next iteration.
fn call_soon_fifo() -> Result {
    heading(1, "call_soon: a FIFO of callbacks");
    let lp = Loop::new()?;
    for name in ["first", "second", "third"] {
        lp.call_soon(move |_| println!("  call_soon: {name}"));
    }
    lp.call_soon(|lp| {
        println!("  call_soon: fourth, which schedules a fifth for the next iteration");
        lp.call_soon(|lp| {
            println!("  call_soon: fifth, which calls stop()");
            lp.stop();
        });
    });
    lp.run_forever()?;
    println!("  run_forever() returned after stop()");
    Ok(())
}

/// 2. `call_later` / `call_at`, `TimerHandle::when`, equal deadlines in order.
fn timers() -> Result {
    heading(2, "call_later and call_at: timers on the loop's clock");
    let lp = Loop::new()?;
    let t0 = lp.time();
    let last = lp.call_later(ms(30), move |lp| {
        println!("  call_later(30 ms)     ran at +{:.1?}", lp.time() - t0);
        lp.stop();
    });
    lp.call_later(ms(20), move |lp| {
        println!("  call_later(20 ms)     ran at +{:.1?}", lp.time() - t0);
    });
    let at = lp.call_at(t0 + ms(10), move |lp| {
        println!("  call_at(t0 + 10 ms) A ran at +{:.1?}", lp.time() - t0);
    });
    lp.call_at(t0 + ms(10), move |lp| {
        println!(
            "  call_at(t0 + 10 ms) B ran at +{:.1?} (same deadline: scheduling order)",
            lp.time() - t0
        );
    });
    println!(
        "  TimerHandle::when(): +{:.1?} and +{:.1?}",
        at.when() - t0,
        last.when() - t0
    );
    lp.run_forever()?;
    Ok(())
}

/// 3. Cancelling: the callback never runs and its closure is dropped at once.
fn cancelling() -> Result {
    heading(3, "cancelling: Handle and TimerHandle");
    let lp = Loop::new()?;

    let guard = Noisy("the one-hour timer");
    let timer = lp.call_later(Duration::from_secs(3600), move |_| {
        let _keep = &guard;
        println!("  never printed");
    });
    println!("  next_timeout() = {:.1?}", lp.next_timeout());

    println!("  timer.cancel() ...");
    timer.cancel();
    println!("  timer.is_cancelled() = {}", timer.is_cancelled());
    println!(
        "  next_timeout() = {:?}: a cancelled timer never wakes the loop",
        lp.next_timeout()
    );

    let guard = Noisy("the call_soon callback");
    let handle = lp.call_soon(move |_| {
        let _keep = &guard;
        println!("  never printed");
    });
    println!("  handle.cancel() ...");
    handle.cancel();
    handle.cancel(); // twice is a no-op
    println!("  handle.is_cancelled() = {}", handle.is_cancelled());

    drop(lp.call_soon(|_| println!("  dropping a Handle does not cancel: this one runs")));
    lp.stop();
    lp.run_forever()?;
    Ok(())
}

/// 4. Level-triggered readers and writers on a socketpair.
fn readers_and_writers() -> Result {
    heading(4, "add_reader / add_writer: level-triggered fd callbacks");
    let (mut left, mut right) = UnixStream::pair()?;
    left.set_nonblocking(true)?;
    right.set_nonblocking(true)?;
    let lp = Loop::new()?;

    let left_fd = left.as_raw_fd();
    lp.add_writer(left_fd, move |lp| {
        left.write_all(b"hey!")
            .expect("a fresh socketpair has room");
        println!("  writer: fd {left_fd} is writable; wrote \"hey!\" and removed itself");
        lp.remove_writer(left_fd);
        // Returning drops this closure, and `left` with it: removed before closed.
    })?;

    let right_fd = right.as_raw_fd();
    let calls = Cell::new(0);
    lp.add_reader(right_fd, move |lp| {
        // Read one byte per call: the data left unread makes the reader run again.
        let mut byte = [0u8; 1];
        match right.read(&mut byte) {
            Ok(1) => {
                calls.set(calls.get() + 1);
                println!(
                    "  reader call #{}: read {:?}",
                    calls.get(),
                    char::from(byte[0])
                );
                if byte[0] == b'!' {
                    lp.remove_reader(right_fd);
                    lp.stop();
                }
            }
            Ok(_) => {
                println!("  reader: end of stream");
                lp.remove_reader(right_fd);
                lp.stop();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read failed: {e}"),
        }
    })?;
    lp.run_forever()?;
    println!("  four bytes, four reader calls: level-triggered, as asyncio's");
    Ok(())
}

thread_local! {
    /// Loop-thread state for section 5. Threadsafe callbacks must be `Send`, so they
    /// cannot capture an `Rc`; they reach state that lives on the loop's thread
    /// through a thread-local instead.
    static ARRIVED: Cell<u32> = const { Cell::new(0) };
}

/// 5. Other threads: `Remote::call_soon_threadsafe` and `RemoteHandle::cancel`.
fn other_threads() -> Result {
    heading(5, "Remote: work sent from other threads");
    let lp = Loop::new()?;
    let remote = lp.remote();
    let loop_thread = thread::current().id();

    let handle = remote.call_soon_threadsafe(|_| println!("  never printed"))?;
    let cancelled = thread::spawn(move || {
        handle.cancel();
        handle.is_cancelled()
    })
    .join()
    .expect("the cancelling thread");
    println!("  a RemoteHandle cancelled from another thread: is_cancelled() = {cancelled}");

    let workers: Vec<_> = (1..=3u64)
        .map(|i| {
            let remote = remote.clone();
            thread::spawn(move || {
                thread::sleep(ms(2 * i));
                let sum: u64 = (1..=i * 1000).sum();
                remote
                    .call_soon_threadsafe(move |lp| {
                        let on_loop = thread::current().id() == loop_thread;
                        println!("  worker {i} sent sum(1..={}) = {sum}; runs on the loop thread: {on_loop}", i * 1000);
                        ARRIVED.with(|n| {
                            n.set(n.get() + 1);
                            if n.get() == 3 {
                                lp.stop();
                            }
                        });
                    })
                    .expect("the loop is open");
            })
        })
        .collect();
    lp.run_forever()?;
    for w in workers {
        w.join().expect("a worker");
    }
    println!("  all three arrived; the loop slept in epoll until each one woke it");
    Ok(())
}

/// 6. `Remote::stop` from another thread wakes and stops a loop blocked in poll.
fn remote_stop() -> Result {
    heading(6, "Remote::stop from another thread");
    let lp = Loop::new()?;
    let remote = lp.remote();
    let start = Instant::now();
    let stopper = thread::spawn(move || {
        thread::sleep(ms(20));
        remote.stop();
    });
    lp.run_forever()?; // nothing to do: blocks in epoll until the stop arrives
    println!(
        "  an idle run_forever() returned after {:.1?}: a thread called remote.stop()",
        start.elapsed()
    );
    stopper.join().expect("the stopping thread");
    Ok(())
}

/// 7. A panicking callback is caught and handed to the exception handler.
fn exception_handler() -> Result {
    heading(7, "the exception handler catches panicking callbacks");
    // The std panic hook would still print the panic to stderr; keep the tour tidy.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));

    let lp = Loop::new()?;
    lp.set_exception_handler(|_, ctx: &ErrorContext| {
        println!("  exception handler: {}", ctx.message());
        println!("    panic message: {:?}", ctx.panic_message());
        if let Some(loc) = ctx.location() {
            println!("    scheduled at:  {loc}");
        }
    });
    lp.call_soon(|_| panic!("boom"));
    lp.call_soon(|lp| {
        println!("  the next callback still runs");
        lp.call_exception_handler(ErrorContext::new("reported by hand"));
        lp.stop();
    });
    lp.run_forever()?;

    panic::set_hook(default_hook);
    Ok(())
}

/// 8. Debug mode: slow callbacks are logged with where they were scheduled.
fn debug_mode() -> Result {
    heading(8, "debug mode: slow callbacks are logged");
    let lp = Loop::builder()
        .debug(true)
        .slow_callback_duration(ms(20))
        .build()?;
    lp.call_soon(|lp| {
        thread::sleep(ms(30)); // blocks the loop: exactly what debug mode reports
        lp.stop();
    });
    lp.run_forever()?;
    Ok(())
}

/// 9. A manual clock: an hour of timers in a millisecond, or time moved by hand.
fn manual_clock() -> Result {
    heading(9, "Clock::manual(): virtual time");
    let clock = Clock::manual();
    let lp = Loop::builder().clock(clock.clone()).build()?;
    let t0 = lp.time();
    let real = Instant::now();
    lp.call_later(Duration::from_secs(60), move |lp| {
        println!(
            "  the 1-minute timer fired at virtual +{:?}",
            lp.time() - t0
        );
    });
    lp.call_later(Duration::from_secs(3600), move |lp| {
        println!("  the 1-hour timer fired at virtual +{:?}", lp.time() - t0);
        lp.stop();
    });
    lp.run_forever()?;
    println!(
        "  an idle loop jumps to its next timer: an hour passed in {:.1?} of real time",
        real.elapsed()
    );

    clock.set_auto_advance(false);
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    lp.call_later(Duration::from_secs(10), move |_| f.set(true));
    lp.run_once(Some(Duration::ZERO))?;
    println!("  auto-advance off, 10 s timer: fired = {}", fired.get());
    clock.advance(Duration::from_secs(10));
    lp.run_once(Some(Duration::ZERO))?;
    println!(
        "  after clock.advance(10 s):    fired = {} (virtual +{:?})",
        fired.get(),
        lp.time() - t0
    );
    Ok(())
}

/// 10. Embedding: a foreign main loop polls `as_raw_fd` and calls `run_once`.
fn embedding() -> Result {
    heading(10, "embedding: a host's poll() loop drives run_once");
    let lp = Loop::new()?;
    let t0 = Instant::now();
    // Three things to wait for; the threadsafe call needs a `Send` counter.
    let pending = Arc::new(AtomicU32::new(3));
    let p = pending.clone();
    lp.call_later(ms(5), move |_| {
        println!("  timer (5 ms) at +{:.1?}", t0.elapsed());
        p.fetch_sub(1, Ordering::Relaxed);
    });
    let p = pending.clone();
    lp.call_later(ms(15), move |_| {
        println!("  timer (15 ms) at +{:.1?}", t0.elapsed());
        p.fetch_sub(1, Ordering::Relaxed);
    });
    let remote = lp.remote();
    let p = pending.clone();
    let sender = thread::spawn(move || {
        thread::sleep(ms(10));
        remote
            .call_soon_threadsafe(move |_| {
                println!("  threadsafe call at +{:.1?}", t0.elapsed());
                p.fetch_sub(1, Ordering::Relaxed);
            })
            .expect("the loop is open");
    });

    let fd = lp.as_raw_fd();
    let mut wakeups = 0;
    while pending.load(Ordering::Relaxed) > 0 {
        // The host's own wait: the loop's fd, for at most the loop's next timeout.
        let timeout_ms = match lp.next_timeout() {
            None => -1,
            Some(d) => i32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd that outlives the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
        wakeups += 1;
        lp.run_once(Some(Duration::ZERO))?;
    }
    sender.join().expect("the sending thread");
    println!("  the host woke {wakeups} times and called run_once(Some(0)) each time");
    Ok(())
}

/// 11. `create_task`, awaiting a `Task`, a `Promise` with a done-callback, `run_until_complete`.
fn tasks_and_promises() -> Result {
    heading(
        11,
        "tasks and promises: create_task, await, run_until_complete",
    );
    let lp = Loop::new()?;
    // A promise (asyncio's Future) that a timer completes; a done-callback hears of it.
    let promise = lp.create_promise::<&str>();
    promise.add_done_callback(|_, r| println!("  promise done-callback: {r:?}"));
    let setter = promise.clone();
    lp.call_later(ms(5), move |_| {
        setter.set_result("ready").expect("set once")
    });
    // A task awaits the promise; `run_until_complete` drives a future awaiting the task.
    let task = lp.create_task(async move {
        let word = promise.await.expect("not cancelled");
        println!("  task: awaited the promise, got {word:?}");
        word.len()
    });
    let len = lp.run_until_complete(async { task.await.expect("not cancelled, no panic") })?;
    println!("  run_until_complete(..) awaited the task: {len}");
    Ok(())
}

/// 12. `sleep` and `timeout` (asyncio's `sleep` and `wait_for`).
fn sleep_and_timeout() -> Result {
    heading(12, "sleep and timeout");
    let lp = Loop::new()?;
    lp.run_until_complete(async {
        let t0 = Instant::now();
        evloop::sleep(ms(10)).await;
        println!("  sleep(10 ms) returned after {:.1?}", t0.elapsed());
        let slow = evloop::timeout(ms(5), evloop::sleep(Duration::from_secs(60))).await;
        let quick = evloop::timeout(ms(5), async { 42 }).await;
        println!(
            "  timeout(5 ms, sleep(60 s)) -> {slow:?}; timeout(5 ms, async {{ 42 }}) -> {quick:?}"
        );
    })?;
    Ok(())
}

/// 13. A `TaskGroup` awaits its children; `run_in_executor` runs blocking work on threads.
fn task_group_and_executor() -> Result {
    heading(13, "TaskGroup and run_in_executor");
    let lp = Loop::builder().executor_threads(2).build()?;
    let loop_thread = thread::current().id();
    let t0 = Instant::now();
    let (a, b) = lp.run_until_complete(async {
        let group = evloop::TaskGroup::new();
        // Blocking work goes to the executor; its task completes on the loop.
        let job = lp.run_in_executor(move || {
            thread::sleep(ms(20)); // blocks an executor thread, not the loop
            thread::current().id() != loop_thread
        });
        let a = group.spawn(async { job.await.expect("the job did not panic") });
        let b = group.spawn(async {
            evloop::sleep(ms(20)).await;
            "slept 20 ms on the loop"
        });
        group.wait().await.expect("no child panicked");
        (a.await, b.await)
    })?;
    println!(
        "  group.wait() returned after {:.1?}: both children ran at once",
        t0.elapsed()
    );
    println!("  run_in_executor child -> {a:?}: it ran on an executor thread");
    println!("  sleeping child        -> {b:?}");
    Ok(())
}

/// 14. `Remote::spawn` (asyncio's `run_coroutine_threadsafe`) from a thread that blocks on it.
fn remote_spawn() -> Result {
    heading(14, "Remote::spawn from another thread");
    let lp = Loop::new()?;
    let remote = lp.remote();
    let loop_thread = thread::current().id();
    let caller = thread::spawn(move || {
        // The future crosses threads, so it must be `Send`: it cannot hold the
        // loop's own futures (a `Task`, `sleep`) across an `.await`.
        let task = remote
            .spawn(async move { (6 * 7, thread::current().id() == loop_thread) })
            .expect("the loop is open");
        let answer = task.wait(); // blocks this thread until the task is done
        remote.stop();
        answer
    });
    lp.run_forever()?;
    let answer = caller.join().expect("the calling thread");
    println!("  remote.spawn(..) then RemoteTask::wait() -> {answer:?}: 6 * 7, on the loop thread");
    Ok(())
}

/// 15. An `evloop::sync::Queue`: a producer task and a consumer, with backpressure.
fn queue() -> Result {
    heading(15, "sync::Queue: producer and consumer");
    let lp = Loop::new()?;
    lp.run_until_complete(async {
        let queue = evloop::Queue::bounded(2);
        let q = queue.clone();
        let producer = evloop::spawn(async move {
            let mut waits = 0;
            for item in 1..=5 {
                waits += u32::from(q.is_full()); // `put` will wait for a free slot
                q.put(item).await.expect("the queue is open");
            }
            q.shutdown(false); // the items left are still got, then `get` fails
            waits
        });
        let mut got = Vec::new();
        while let Ok(item) = queue.get().await {
            got.push(item);
        }
        let waits = producer.await.expect("the producer finished");
        println!("  consumer got {got:?} (shutdown ends the stream)");
        println!("  Queue::bounded(2): the producer waited for room {waits} times");
    })?;
    Ok(())
}

/// 16. `close()`: pending work is dropped, and the loop refuses new work.
fn closing() -> Result {
    heading(16, "close(): drop everything pending");
    let lp = Loop::new()?;
    let remote = lp.remote();

    lp.call_soon(|lp| {
        if let Err(e) = lp.close() {
            println!("  close() inside a callback: Err({e})");
        }
        lp.stop();
    });
    lp.run_forever()?;

    let guard = Noisy("a pending call_soon");
    lp.call_soon(move |_| drop(guard));
    let guard = Noisy("a pending timer");
    lp.call_later(ms(10), move |_| drop(guard));
    let (sock, _peer) = UnixStream::pair()?;
    let guard = Noisy("a reader");
    lp.add_reader(sock.as_raw_fd(), move |_| {
        let _keep = &guard;
    })?;

    println!("  lp.close() ...");
    lp.close()?;
    println!("  is_closed() = {}", lp.is_closed());
    match remote.call_soon_threadsafe(|_| {}) {
        Err(e) => println!("  remote.call_soon_threadsafe(..) -> Err({e})"),
        Ok(_) => println!("  remote.call_soon_threadsafe(..) -> unexpectedly Ok"),
    }
    if let Err(e) = lp.add_reader(sock.as_raw_fd(), |_| {}) {
        println!("  add_reader(..) -> Err({e})");
    }
    if let Err(e) = lp.run_forever() {
        println!("  run_forever() -> Err({e})");
    }
    println!("  close() again -> {:?}", lp.close());
    Ok(())
}

/// 17. Signals: a handler is an ordinary loop callback, not an OS signal handler.
fn signals() -> Result {
    heading(17, "signals: add_signal_handler");
    let lp = Loop::new()?;
    let loop_thread = thread::current().id();
    let first = lp.add_signal_handler(libc::SIGUSR1, move |lp| {
        let on_loop = thread::current().id() == loop_thread;
        println!("  SIGUSR1 handled on the loop thread: {on_loop}");
        lp.stop();
    })?;
    lp.call_soon(|_| raise(libc::SIGUSR1));
    lp.run_forever()?;

    // Adding again replaces; signals do not queue, so a burst runs it at least once.
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    lp.add_signal_handler(libc::SIGUSR1, move |_| c.set(c.get() + 1))?;
    println!(
        "  the replaced handler's handle: is_cancelled() = {}",
        first.is_cancelled()
    );
    lp.call_soon(|_| (0..3).for_each(|_| raise(libc::SIGUSR1)));
    for _ in 0..10 {
        lp.run_once(Some(ms(1)))?;
    }
    println!(
        "  a burst of 3 signals ran the handler {} time(s) (at least once)",
        count.get()
    );

    match lp.add_signal_handler(libc::SIGKILL, |_| {}) {
        Err(e) => println!("  SIGKILL -> Err({e})"),
        Ok(_) => println!("  SIGKILL -> unexpectedly Ok"),
    }
    println!(
        "  remove_signal_handler(SIGUSR1) -> {}",
        lp.remove_signal_handler(libc::SIGUSR1)
    );
    println!(
        "  SIGUSR1 is back to its default disposition: {}",
        disposition(libc::SIGUSR1) == libc::SIG_DFL
    );
    Ok(())
}

fn raise(signum: i32) {
    // SAFETY: raise only sends a signal to this thread; the tour handles `signum`.
    unsafe { libc::raise(signum) };
}

/// The handler `sigaction` reports for `signum`.
fn disposition(signum: i32) -> libc::sighandler_t {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is valid for writes, zeroed is a
    // valid sigaction, and the call fills it in.
    unsafe {
        libc::sigaction(signum, std::ptr::null(), old.as_mut_ptr());
        old.assume_init().sa_sigaction
    }
}

/// A tiny `log` backend for the tour: prints records to stdout. (Applications would
/// use `env_logger` or similar; the library only depends on the `log` facade.)
struct TourLogger;

static LOGGER: TourLogger = TourLogger;

impl log::Log for TourLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            println!(
                "  [log {} {}] {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Section 18: streams, asyncio's high-level network API. `start_server` calls
/// back with a `StreamReader` and a `StreamWriter` per connection; `open_connection`
/// gives a pair.
fn streams() -> Result {
    heading(18, "streams: start_server and open_connection");
    let lp = Loop::new()?;
    lp.run_until_complete(async {
        let lp = Loop::current().expect("inside run_until_complete");
        // An upper-casing line server: readline, write, drain (flow control).
        let server = lp
            .start_server("127.0.0.1:0", |mut reader: evloop::net::StreamReader, writer: evloop::net::StreamWriter| async move {
                while let Ok(line) = reader.readline().await {
                    if line.is_empty() {
                        break; // EOF
                    }
                    writer.write(&line.to_ascii_uppercase());
                    if writer.drain().await.is_err() {
                        break;
                    }
                }
                // Returning drops the reader and the writer: the connection closes.
            })
            .await??;
        let addr = server.local_addrs()[0];
        let (mut reader, writer) = lp.open_connection(addr).await??;
        writer.writelines([&b"hello\n"[..], b"streams\n"]);
        writer.drain().await?;
        let first = reader.readline().await?;
        let second = reader.readexactly(8).await?;
        println!(
            "  readline() -> {:?}, readexactly(8) -> {:?}",
            String::from_utf8_lossy(&first),
            String::from_utf8_lossy(&second)
        );
        writer.write(b"no newline");
        writer.write_eof();
        let e = reader.readexactly(100).await.expect_err("EOF comes first");
        let partial = e
            .get_ref()
            .and_then(|e| e.downcast_ref::<evloop::net::IncompleteReadError>())
            .map(|e| String::from_utf8_lossy(&e.partial).into_owned());
        println!("  readexactly(100) at EOF -> Err({e}), partial {partial:?}");
        println!("  at_eof() = {}", reader.at_eof());
        writer.close();
        writer.wait_closed().await?;
        server.close();
        server.wait_closed().await;
        println!("  server closed, its last connection gone");
        Ok::<(), Box<dyn StdError>>(())
    })??;
    Ok(())
}
