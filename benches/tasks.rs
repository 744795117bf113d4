//! Benchmarks of evloop's futures layer (tasks, wakers, `sync::Queue`, `Promise`,
//! `run_in_executor`), each beside its peers (tokio, calloop's executor) in the same
//! run. The harness is `support/mod.rs`, shared with `benches/core.rs`.
//!
//! ```text
//! cargo bench --bench tasks                     # everything (~1-2 min)
//! cargo bench --bench tasks -- task_pingpong    # one criterion group (a regex)
//! cargo bench --bench tasks -- cross_thread     # the latency table and cross_thread_wakes
//! ```
//!
//! Criterion groups (throughput; one iteration is one whole workload):
//! - `spawn`: 1,000,000 trivial tasks (`async {}`) spawned from inside the loop and
//!   run to completion; ns per task. evloop spawns them from a task
//!   (`evloop::spawn` inside `run_until_complete`, the last one awaited) and from a
//!   callback (`Loop::create_task`, the last task stops the loop); tokio from
//!   `block_on` with `tokio::spawn` and with `spawn_local` on a `LocalSet`; calloop
//!   schedules them on its `calloop::futures` executor from an idle callback.
//! - `task_pingpong`: two tasks bounce a counter over two channels, 1,000,000
//!   switches (a switch: one task hands the value over and the other one runs); ns
//!   per switch. evloop: `sync::Queue` unbounded and `bounded(1)`, and a fresh
//!   `Promise` per message (asyncio's futures style); tokio: `mpsc` unbounded and
//!   `channel(1)`. Two crossed rows separate the scheduler from the channel: evloop
//!   tasks over tokio's unbounded `mpsc`, and tokio tasks over evloop's `Queue` (both
//!   channels work under any executor).
//! - `run_in_executor`: 100,000 trivial jobs (`move || i`) sent to the blocking pool
//!   in batches of 1,000, each batch awaited on the loop; ns per job (loop-thread
//!   CPU: the loop's share). evloop's default pool is `min(32, cpus + 4)` threads;
//!   tokio's `spawn_blocking` pool starts up to 512, so it runs both with its default
//!   and capped at evloop's size.
//! - `cross_thread_wakes`: the loop thread's side of wakes from other threads.
//!   `drain`: 10,000 pending tasks, each woken once by a foreign thread before the
//!   loop runs; then one iteration drains the remote queue and steps them all; ns
//!   per wake (loop-thread CPU: the loop's cost of a cross-thread wake). `flood_one_task`:
//!   4 threads wake one pending task 100,000 times each while the loop runs; ns per
//!   wake until all are absorbed (wakes of one task are coalesced: the task is
//!   stepped once per queued entry, not once per wake).
//!
//! Latency table (not criterion: printed after the groups):
//! - `cross_thread_wake`: a foreign thread wakes a task on the loop, which replies by
//!   unparking it; p50/p99 of 20,000 round trips (after 2,000 unmeasured). The task
//!   awaits a one-slot mailbox (`Mailbox`: a mutex-guarded value and waker, as a
//!   oneshot channel is) that the foreign thread fills before calling `wake()`.
//!   Beside it, the same round trip by other means: evloop's `call_soon_threadsafe`
//!   (core's `threadsafe_roundtrip/evloop`) and `Remote::spawn` of a replying future,
//!   tokio's `Handle::spawn` (core's `threadsafe_roundtrip/tokio_current_thread`),
//!   and the floor without a loop (a thread blocked on a std channel).
//!
//! Filters, the summary table and test mode (`cargo test --benches`: every workload
//! once, tiny) work as in `benches/core.rs`.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use calloop::EventLoop;
use calloop::futures::{Scheduler, executor};
use criterion::Criterion;
use evloop::sync::Queue;
use evloop::{Loop, Promise};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::mpsc;
use tokio::task::LocalSet;

#[path = "support/mod.rs"]
mod support;
use support::{
    Per, Reply, Run, Sample, Span, bench_tokio_spawn_batches, current_thread, group, reply,
    round_trips, roundtrip_evloop, roundtrip_std_baseline, roundtrip_tokio,
};

/// Workload sizes: the real ones, or tiny ones when the binary runs as a test.
#[derive(Clone, Copy)]
struct Sizes {
    /// `spawn`: tasks per iteration.
    spawn: usize,
    /// `task_pingpong`: switches per iteration (two per round trip).
    switches: usize,
    /// `cross_thread_wake`: measured round trips, after this many unmeasured.
    wakes: usize,
    wake_warmup: usize,
    /// `run_in_executor`: jobs per iteration, in batches of `job_batch`.
    jobs: usize,
    job_batch: usize,
    /// `cross_thread_wakes`: tasks woken per drain; wakes per flooding thread.
    drain_tasks: usize,
    flood_wakes: usize,
}

impl Sizes {
    const BENCH: Sizes = Sizes {
        spawn: 1_000_000,
        switches: 1_000_000,
        wakes: 20_000,
        wake_warmup: 2_000,
        jobs: 100_000,
        job_batch: 1_000,
        drain_tasks: 10_000,
        flood_wakes: 100_000,
    };

    const TEST: Sizes = Sizes {
        spawn: 1_000,
        switches: 1_000,
        wakes: 100,
        wake_warmup: 10,
        jobs: 200,
        job_batch: 50,
        drain_tasks: 100,
        flood_wakes: 1_000,
    };
}

/// evloop's default executor size, `min(32, cpus + 4)`: tokio's blocking pool capped
/// at it runs the same number of threads.
fn evloop_pool_size() -> usize {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    (cpus + 4).min(32)
}

// ----- spawn -----

fn spawn(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "spawn");
    let per = Per::Item(z.spawn, "task");

    let lp = Loop::new().unwrap();
    g.bench("evloop", per, || {
        let s = Span::start();
        lp.run_until_complete(async {
            for _ in 0..z.spawn - 1 {
                drop(evloop::spawn(async {}));
            }
            // Task steps run in FIFO order: when the last task is done, all are.
            evloop::spawn(async {}).await.unwrap();
        })
        .unwrap();
        s.stop()
    });

    g.bench("evloop_from_callback", per, || {
        let s = Span::start();
        lp.call_soon(move |lp| {
            for _ in 0..z.spawn - 1 {
                drop(lp.create_task(async {}));
            }
            // Its step runs last, in the iteration that runs them all.
            drop(lp.create_task(async { Loop::current().unwrap().stop() }));
        });
        lp.run_forever().unwrap();
        s.stop()
    });
    drop(lp);

    bench_tokio_spawn_batches(&mut g, per, z.spawn);

    // calloop's executor runs at most 1,024 tasks per dispatch, then pings itself.
    let mut el: EventLoop<'static, usize> = EventLoop::try_new().unwrap();
    let h = el.handle();
    let (exec, sched) = executor::<()>().unwrap();
    h.insert_source(exec, |(), _, done: &mut usize| *done += 1)
        .unwrap();
    g.bench("calloop", per, || {
        let mut done = 0;
        let s = Span::start();
        let sched: Scheduler<()> = sched.clone();
        h.insert_idle(move |_| {
            for _ in 0..z.spawn {
                sched.schedule(async {}).unwrap();
            }
        });
        // An idle callback does not shorten the poll: the first dispatch must not
        // block. It runs the idle callback, whose schedules ping the executor.
        el.dispatch(Some(Duration::ZERO), &mut done).unwrap();
        while done < z.spawn {
            el.dispatch(None, &mut done).unwrap();
        }
        s.stop()
    });
    g.finish();
}

// ----- task_pingpong -----

/// Sends `rounds` values over `to` and waits for each to come back incremented on
/// `from`.
async fn queue_ping(to: Queue<u64>, from: Queue<u64>, rounds: usize) {
    for i in 0..rounds as u64 {
        to.put(i).await.unwrap();
        let v = from.get().await.unwrap();
        debug_assert_eq!(v, i + 1);
    }
}

/// The other side of [`queue_ping`].
async fn queue_pong(from: Queue<u64>, to: Queue<u64>, rounds: usize) {
    for _ in 0..rounds {
        let v = from.get().await.unwrap();
        to.put(v + 1).await.unwrap();
    }
}

async fn unbounded_ping(
    to: mpsc::UnboundedSender<u64>,
    mut from: mpsc::UnboundedReceiver<u64>,
    rounds: usize,
) {
    for i in 0..rounds as u64 {
        to.send(i).unwrap();
        let v = from.recv().await.unwrap();
        debug_assert_eq!(v, i + 1);
    }
}

async fn unbounded_pong(
    mut from: mpsc::UnboundedReceiver<u64>,
    to: mpsc::UnboundedSender<u64>,
    rounds: usize,
) {
    for _ in 0..rounds {
        let v = from.recv().await.unwrap();
        to.send(v + 1).unwrap();
    }
}

async fn bounded_ping(to: mpsc::Sender<u64>, mut from: mpsc::Receiver<u64>, rounds: usize) {
    for i in 0..rounds as u64 {
        to.send(i).await.unwrap();
        let v = from.recv().await.unwrap();
        debug_assert_eq!(v, i + 1);
    }
}

async fn bounded_pong(mut from: mpsc::Receiver<u64>, to: mpsc::Sender<u64>, rounds: usize) {
    for _ in 0..rounds {
        let v = from.recv().await.unwrap();
        to.send(v + 1).await.unwrap();
    }
}

/// A message of the promise ping-pong: the value, and the promise for the answer.
#[derive(Clone)]
struct Msg {
    v: u64,
    reply: Promise<Msg>,
}

/// asyncio's style: each message resolves the promise the other side awaits and
/// carries a fresh one for the answer.
async fn promise_ping(lp: Loop, first: Promise<Msg>, rounds: usize) {
    let mut to = first;
    for i in 0..rounds as u64 {
        let answer = lp.create_promise();
        to.set_result(Msg {
            v: i,
            reply: answer.clone(),
        })
        .unwrap();
        let msg = answer.await.unwrap();
        debug_assert_eq!(msg.v, i + 1);
        to = msg.reply;
    }
}

async fn promise_pong(lp: Loop, first: Promise<Msg>, rounds: usize) {
    let mut inbox = first;
    for _ in 0..rounds {
        let msg = inbox.await.unwrap();
        let next = lp.create_promise();
        msg.reply
            .set_result(Msg {
                v: msg.v + 1,
                reply: next.clone(),
            })
            .unwrap();
        inbox = next;
    }
}

/// Runs the two sides as evloop tasks until both are done.
fn evloop_pair(
    lp: &Loop,
    ping: impl Future<Output = ()> + 'static,
    pong: impl Future<Output = ()> + 'static,
) -> Sample {
    let s = Span::start();
    lp.run_until_complete(async {
        let pong = evloop::spawn(pong);
        let ping = evloop::spawn(ping);
        ping.await.unwrap();
        pong.await.unwrap();
    })
    .unwrap();
    s.stop()
}

/// Runs the two sides as tokio tasks on a `LocalSet` until both are done.
fn localset_pair(
    rt: &Runtime,
    local: &LocalSet,
    ping: impl Future<Output = ()> + 'static,
    pong: impl Future<Output = ()> + 'static,
) -> Sample {
    let s = Span::start();
    local.block_on(rt, async {
        let pong = tokio::task::spawn_local(pong);
        let ping = tokio::task::spawn_local(ping);
        ping.await.unwrap();
        pong.await.unwrap();
    });
    s.stop()
}

fn task_pingpong(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "task_pingpong");
    let per = Per::Item(z.switches, "switch");
    let rounds = z.switches / 2;

    let lp = Loop::new().unwrap();
    g.bench("evloop_queue_unbounded", per, || {
        let (a, b) = (Queue::new(), Queue::new());
        let ping = queue_ping(a.clone(), b.clone(), rounds);
        evloop_pair(&lp, ping, queue_pong(a, b, rounds))
    });
    g.bench("evloop_queue_bounded1", per, || {
        let (a, b) = (Queue::bounded(1), Queue::bounded(1));
        let ping = queue_ping(a.clone(), b.clone(), rounds);
        evloop_pair(&lp, ping, queue_pong(a, b, rounds))
    });
    g.bench("evloop_promise", per, || {
        let first = lp.create_promise();
        let ping = promise_ping(lp.clone(), first.clone(), rounds);
        evloop_pair(&lp, ping, promise_pong(lp.clone(), first, rounds))
    });
    g.bench("evloop_tasks_tokio_mpsc_unbounded", per, || {
        let ((tx_a, rx_a), (tx_b, rx_b)) = (mpsc::unbounded_channel(), mpsc::unbounded_channel());
        let ping = unbounded_ping(tx_a, rx_b, rounds);
        evloop_pair(&lp, ping, unbounded_pong(rx_a, tx_b, rounds))
    });
    drop(lp);

    let rt = current_thread();
    let local = LocalSet::new();
    g.bench("tokio_localset_mpsc_unbounded", per, || {
        let ((tx_a, rx_a), (tx_b, rx_b)) = (mpsc::unbounded_channel(), mpsc::unbounded_channel());
        let ping = unbounded_ping(tx_a, rx_b, rounds);
        localset_pair(&rt, &local, ping, unbounded_pong(rx_a, tx_b, rounds))
    });
    g.bench("tokio_current_thread_mpsc_unbounded", per, || {
        let ((tx_a, rx_a), (tx_b, rx_b)) = (mpsc::unbounded_channel(), mpsc::unbounded_channel());
        let s = Span::start();
        rt.block_on(async {
            let pong = tokio::spawn(unbounded_pong(rx_a, tx_b, rounds));
            let ping = tokio::spawn(unbounded_ping(tx_a, rx_b, rounds));
            ping.await.unwrap();
            pong.await.unwrap();
        });
        s.stop()
    });
    g.bench("tokio_localset_mpsc_bounded1", per, || {
        let ((tx_a, rx_a), (tx_b, rx_b)) = (mpsc::channel(1), mpsc::channel(1));
        let ping = bounded_ping(tx_a, rx_b, rounds);
        localset_pair(&rt, &local, ping, bounded_pong(rx_a, tx_b, rounds))
    });
    g.bench("tokio_localset_evloop_queue_unbounded", per, || {
        let (a, b) = (Queue::new(), Queue::new());
        let ping = queue_ping(a.clone(), b.clone(), rounds);
        localset_pair(&rt, &local, ping, queue_pong(a, b, rounds))
    });
    g.finish();
}

// ----- run_in_executor -----

fn run_in_executor(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "run_in_executor");
    let per = Per::Item(z.jobs, "job");
    let batches = z.jobs / z.job_batch;

    let lp = Loop::new().unwrap();
    g.bench("evloop", per, || {
        let s = Span::start();
        let sum = lp
            .run_until_complete(async {
                let mut sum = 0;
                for _ in 0..batches {
                    let jobs: Vec<_> = (0..z.job_batch)
                        .map(|i| lp.run_in_executor(move || i))
                        .collect();
                    for job in jobs {
                        sum += job.await.unwrap();
                    }
                }
                sum
            })
            .unwrap();
        black_box(sum);
        s.stop()
    });
    lp.close().unwrap(); // joins the pool's threads
    drop(lp);

    let tokio_spawn_blocking = |rt: &Runtime| {
        let s = Span::start();
        let sum = rt.block_on(async {
            let mut sum = 0;
            for _ in 0..batches {
                let jobs: Vec<_> = (0..z.job_batch)
                    .map(|i| tokio::task::spawn_blocking(move || i))
                    .collect();
                for job in jobs {
                    sum += job.await.unwrap();
                }
            }
            sum
        });
        black_box(sum);
        s.stop()
    };
    let rt = current_thread();
    g.bench("tokio_current_thread_spawn_blocking", per, || {
        tokio_spawn_blocking(&rt)
    });
    drop(rt);
    let rt = Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(evloop_pool_size())
        .build()
        .expect("tokio runtime");
    g.bench("tokio_current_thread_spawn_blocking_capped", per, || {
        tokio_spawn_blocking(&rt)
    });
    drop(rt);
    g.finish();
}

// ----- cross_thread_wake (latency) -----

/// A one-slot mailbox that a foreign thread fills and a task awaits: the value and
/// the waiting task's waker under one mutex, as in a oneshot channel.
#[derive(Default)]
struct Mailbox {
    slot: Mutex<(Option<Reply>, Option<Waker>)>,
}

impl Mailbox {
    /// Fills the slot and wakes the waiting task (outside the lock).
    fn send(&self, r: Reply) {
        let waker = {
            let mut slot = self.slot.lock().unwrap();
            slot.0 = Some(r);
            slot.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn recv(&self) -> Recv<'_> {
        Recv(self)
    }
}

struct Recv<'a>(&'a Mailbox);

impl Future for Recv<'_> {
    type Output = Reply;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let mut slot = self.0.slot.lock().unwrap();
        match slot.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                match &slot.1 {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => slot.1 = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

/// The task: replies to each round trip until told to finish.
async fn serve(mailbox: Arc<Mailbox>) {
    while let Some((flag, me)) = mailbox.recv().await {
        reply(&flag, &me);
    }
}

/// Starts the foreign thread that makes `n` round trips through `mailbox` (after
/// `warmup`), then tells the task to finish.
fn mailbox_thread(n: usize, warmup: usize, mailbox: Arc<Mailbox>) -> thread::JoinHandle<Vec<i64>> {
    thread::spawn(move || {
        let out = round_trips(n, warmup, |flag, me| mailbox.send(Some((flag, me))));
        mailbox.send(None);
        out
    })
}

/// evloop: the mailbox awaited by a task (`create_task`): a foreign wake goes through
/// the remote queue.
fn wake_evloop_task(n: usize, warmup: usize) -> Vec<i64> {
    let lp = Loop::new().unwrap();
    let mailbox = Arc::new(Mailbox::default());
    let th = mailbox_thread(n, warmup, mailbox.clone());
    let task = lp.create_task(serve(mailbox));
    lp.run_until_complete(task).unwrap().unwrap();
    th.join().unwrap()
}

/// evloop: the mailbox awaited by `run_until_complete`'s own future.
fn wake_evloop_main(n: usize, warmup: usize) -> Vec<i64> {
    let lp = Loop::new().unwrap();
    let mailbox = Arc::new(Mailbox::default());
    let th = mailbox_thread(n, warmup, mailbox.clone());
    lp.run_until_complete(serve(mailbox)).unwrap();
    th.join().unwrap()
}

/// evloop: each round trip is a `Remote::spawn` of a future that replies (asyncio's
/// `run_coroutine_threadsafe`).
fn wake_evloop_remote_spawn(n: usize, warmup: usize) -> Vec<i64> {
    let lp = Loop::new().unwrap();
    let remote = lp.remote();
    let th = thread::spawn(move || {
        let out = round_trips(n, warmup, |flag, me| {
            drop(remote.spawn(async move { reply(&flag, &me) }).unwrap());
        });
        remote.stop();
        out
    });
    lp.run_forever().unwrap();
    th.join().unwrap()
}

/// tokio: the mailbox awaited by a spawned task.
fn wake_tokio_task(n: usize, warmup: usize) -> Vec<i64> {
    let rt = current_thread();
    let mailbox = Arc::new(Mailbox::default());
    let th = mailbox_thread(n, warmup, mailbox.clone());
    rt.block_on(async { tokio::spawn(serve(mailbox)).await.unwrap() });
    th.join().unwrap()
}

/// calloop: the mailbox awaited by a task of its executor.
fn wake_calloop_task(n: usize, warmup: usize) -> Vec<i64> {
    let mut el: EventLoop<'static, bool> = EventLoop::try_new().unwrap();
    let (exec, sched) = executor::<()>().unwrap();
    el.handle()
        .insert_source(exec, |(), _, finished: &mut bool| *finished = true)
        .unwrap();
    let mailbox = Arc::new(Mailbox::default());
    let th = mailbox_thread(n, warmup, mailbox.clone());
    sched.schedule(serve(mailbox)).unwrap();
    let mut finished = false;
    while !finished {
        el.dispatch(None, &mut finished).unwrap();
    }
    th.join().unwrap()
}

fn cross_thread_wake(run: &Run<Sizes>) {
    let (n, w) = (run.sizes.wakes, run.sizes.wake_warmup);
    run.latency_table(&[
        ("cross_thread_wake/evloop_task", &|| wake_evloop_task(n, w)),
        ("cross_thread_wake/evloop_main_future", &|| {
            wake_evloop_main(n, w)
        }),
        ("cross_thread_wake/evloop_call_soon_threadsafe", &|| {
            roundtrip_evloop(n, w)
        }),
        ("cross_thread_wake/evloop_remote_spawn", &|| {
            wake_evloop_remote_spawn(n, w)
        }),
        ("cross_thread_wake/tokio_current_thread_task", &|| {
            wake_tokio_task(n, w)
        }),
        ("cross_thread_wake/tokio_current_thread_spawn", &|| {
            roundtrip_tokio(n, w)
        }),
        ("cross_thread_wake/calloop_executor_task", &|| {
            wake_calloop_task(n, w)
        }),
        ("cross_thread_wake/std_mpsc_baseline", &|| {
            roundtrip_std_baseline(n, w)
        }),
    ]);
}

// ----- cross_thread_wakes -----

/// A task that never completes and hands its waker out on its first poll.
fn pending_with_waker(wakers: &Arc<Mutex<Vec<Waker>>>) -> impl Future<Output = ()> + 'static {
    let wakers = wakers.clone();
    let mut first = true;
    std::future::poll_fn(move |cx| {
        if std::mem::take(&mut first) {
            wakers.lock().unwrap().push(cx.waker().clone());
        }
        Poll::Pending
    })
}

fn cross_thread_wakes(c: &mut Criterion, run: &Run<Sizes>) {
    let z = run.sizes;
    let mut g = group(c, run, "cross_thread_wakes");

    let lp = Loop::new().unwrap();
    let wakers = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..z.drain_tasks)
        .map(|_| lp.create_task(pending_with_waker(&wakers)))
        .collect();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let all: Arc<Vec<Waker>> = Arc::new(std::mem::take(&mut *wakers.lock().unwrap()));
    assert_eq!(all.len(), z.drain_tasks);
    g.bench("drain", Per::Item(z.drain_tasks, "wake"), || {
        let w = all.clone();
        thread::spawn(move || w.iter().for_each(Waker::wake_by_ref))
            .join()
            .unwrap();
        let s = Span::start();
        lp.run_once(Some(Duration::ZERO)).unwrap();
        s.stop()
    });
    drop(tasks);
    drop(lp);

    const FLOODERS: usize = 4;
    let lp = Loop::new().unwrap();
    let wakers = Arc::new(Mutex::new(Vec::new()));
    let _task = lp.create_task(pending_with_waker(&wakers));
    lp.run_once(Some(Duration::ZERO)).unwrap();
    let waker = wakers.lock().unwrap().pop().unwrap();
    g.bench(
        "flood_one_task",
        Per::Item(FLOODERS * z.flood_wakes, "wake"),
        || {
            let s = Span::start();
            let threads: Vec<_> = (0..FLOODERS)
                .map(|_| {
                    let w = waker.clone();
                    thread::spawn(move || (0..z.flood_wakes).for_each(|_| w.wake_by_ref()))
                })
                .collect();
            while !threads.iter().all(|t| t.is_finished()) {
                lp.run_once(Some(Duration::from_millis(1))).unwrap();
            }
            threads.into_iter().for_each(|t| t.join().unwrap());
            lp.run_once(Some(Duration::ZERO)).unwrap();
            s.stop()
        },
    );
    g.finish();
}

// ----- main -----

fn main() {
    let run = Run::new(Sizes::BENCH, Sizes::TEST);
    let mut c = run.criterion();

    spawn(&mut c, &run);
    task_pingpong(&mut c, &run);
    run_in_executor(&mut c, &run);
    cross_thread_wakes(&mut c, &run);
    run.finish_groups(&mut c);

    cross_thread_wake(&run);
}
