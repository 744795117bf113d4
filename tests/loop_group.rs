//! `LoopGroup`: work lands on the loop it is sent to, `spawn_each` runs once on each
//! loop, panics come back from `join`, `stop` and `drop` end every loop, and servers
//! on every loop share one port (`SO_REUSEPORT`), in-process and as the
//! `multicore_echo` example run as a process.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use evloop::net::{Protocol, Transport};
use evloop::{Error, Loop, LoopGroup, RemoteTask, ServerOptions, TaskError};

/// How long anything may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn wait<T>(mut task: RemoteTask<T>) -> Result<T, TaskError> {
    task.wait_timeout(PATIENCE)
        .expect("the task did not finish in time")
}

/// The thread that loop `i` runs on, and its name.
fn thread_of(group: &LoopGroup, i: usize) -> (ThreadId, String) {
    wait(
        group
            .spawn_on(i, || async {
                let t = thread::current();
                (t.id(), t.name().unwrap_or("").to_owned())
            })
            .unwrap(),
    )
    .unwrap()
}

/// Counts drops.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn new_zero_is_an_error_and_len_counts_loops() {
    let err = LoopGroup::new(0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let group = LoopGroup::new(3).unwrap();
    assert_eq!(group.len(), 3);
    let per_core = LoopGroup::per_core().unwrap();
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(per_core.len(), cores);
}

#[test]
fn work_lands_on_the_chosen_loop() {
    let group = LoopGroup::new(2).unwrap();
    let (t0, name0) = thread_of(&group, 0);
    let (t1, name1) = thread_of(&group, 1);
    assert_ne!(t0, t1, "two loops, two threads");
    assert_ne!(t0, thread::current().id());
    assert_eq!(
        (name0.as_str(), name1.as_str()),
        ("evloop-group-0", "evloop-group-1")
    );
    // The same loop again: the same thread (nothing moves between loops).
    assert_eq!(thread_of(&group, 1).0, t1);

    // call_soon_threadsafe_on, and a callback that sees its own loop.
    let (tx, rx) = mpsc::channel();
    for i in [1, 0, 1] {
        let tx = tx.clone();
        group
            .call_soon_threadsafe_on(i, move |lp| {
                let mine = Loop::current().is_some_and(|cur| cur.remote().same_loop(&lp.remote()));
                tx.send((i, thread::current().id(), mine)).unwrap();
            })
            .unwrap();
    }
    for _ in 0..3 {
        let (i, t, mine) = rx.recv_timeout(PATIENCE).unwrap();
        assert!(mine);
        assert_eq!(t, if i == 0 { t0 } else { t1 }, "a call for loop {i}");
    }
    // remote(i) reaches loop i.
    let remote = group.remote(1);
    let (tx, rx) = mpsc::channel();
    remote
        .call_soon_threadsafe(move |_| tx.send(thread::current().id()).unwrap())
        .unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), t1);
    group.stop();
    assert!(group.join().iter().all(Result::is_ok));
}

#[test]
#[should_panic(expected = "the group has 2 loops")]
fn an_index_out_of_range_panics_with_the_group_size() {
    let group = LoopGroup::new(2).unwrap();
    let _ = group.remote(2);
}

#[test]
fn spawn_each_runs_once_on_each_loop() {
    let group = LoopGroup::new(3).unwrap();
    let threads: Vec<ThreadId> = (0..3).map(|i| thread_of(&group, i).0).collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let tasks = group
        .spawn_each(move |i| {
            counted.fetch_add(1, Ordering::SeqCst);
            // A !Send future: it is built and polled on loop i only.
            let here = Rc::new(i);
            async move {
                evloop::sleep(Duration::from_millis(1)).await;
                (*here, thread::current().id())
            }
        })
        .unwrap();
    assert_eq!(tasks.len(), 3);
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(wait(task).unwrap(), (i, threads[i]));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    group.stop();
    assert!(group.join().iter().all(Result::is_ok));
}

#[test]
fn join_returns_the_first_panic_of_each_loop() {
    let group = LoopGroup::new(3).unwrap();
    // Loop 1: a callback panics twice; the loop goes on and `join` reports the first.
    group
        .call_soon_threadsafe_on(1, |_| panic!("boom on loop 1"))
        .unwrap();
    group
        .call_soon_threadsafe_on(1, |_| panic!("second boom"))
        .unwrap();
    // Loop 2: a task panics and nobody retrieves its result (a detached task).
    wait(
        group
            .spawn_on(2, || async {
                drop(evloop::spawn(async { panic!("task boom on loop 2") }));
            })
            .unwrap(),
    )
    .unwrap();
    // Loop 0: a task panics and its RemoteTask retrieves it: handled, not reported.
    let retrieved = group.spawn_on(0, || async { panic!("retrieved") }).unwrap();
    assert!(matches!(wait(retrieved), Err(TaskError::Panicked(_))));
    // The loops still serve after their panics.
    for i in 0..3 {
        assert_eq!(
            wait(group.spawn_on(i, move || async move { i }).unwrap()).unwrap(),
            i
        );
    }
    group.stop();
    let results = group.join();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let e1 = results[1].as_ref().unwrap_err();
    assert_eq!(e1.panic_message(), Some("boom on loop 1"));
    let e2 = results[2].as_ref().unwrap_err();
    assert_eq!(e2.panic_message(), Some("task boom on loop 2"));
}

#[test]
fn a_replaced_exception_handler_takes_over_the_reports() {
    let group = LoopGroup::new(1).unwrap();
    let (tx, rx) = mpsc::channel();
    group
        .call_soon_threadsafe_on(0, move |lp| {
            let tx = tx.clone();
            lp.set_exception_handler(move |_, ctx| {
                tx.send(ctx.panic_message().map(str::to_owned)).unwrap();
            });
        })
        .unwrap();
    group
        .call_soon_threadsafe_on(0, |_| panic!("mine"))
        .unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap().as_deref(), Some("mine"));
    group.stop();
    assert!(group.join()[0].is_ok());
}

#[test]
fn stop_ends_every_loop_and_closes_it() {
    let group = LoopGroup::new(2).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    // A task on each loop that never finishes, holding a drop counter.
    let d = drops.clone();
    let tasks = group
        .spawn_each(move |_| {
            let guard = DropCount(d.clone());
            async move {
                std::future::pending::<()>().await;
                drop(guard);
            }
        })
        .unwrap();
    let remotes = [group.remote(0), group.remote(1)];
    group.stop();
    group.stop(); // twice: harmless
    let results = group.join();
    assert!(results.iter().all(Result::is_ok));
    // Each thread closed its loop: the pending tasks were dropped there.
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    for t in tasks {
        assert!(matches!(wait(t), Err(TaskError::Cancelled)));
    }
    for r in &remotes {
        assert!(r.is_closed());
        assert!(matches!(r.call_soon_threadsafe(|_| {}), Err(Error::Closed)));
    }
}

#[test]
fn a_loop_that_stops_itself_ends_alone() {
    let group = LoopGroup::new(2).unwrap();
    group.call_soon_threadsafe_on(0, |lp| lp.stop()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !group.remote(0).is_closed() {
        assert!(Instant::now() < deadline, "loop 0 did not end");
        thread::sleep(Duration::from_millis(1));
    }
    assert!(matches!(
        group.call_soon_threadsafe_on(0, |_| {}),
        Err(Error::Closed)
    ));
    assert!(matches!(group.spawn_on(0, || async {}), Err(Error::Closed)));
    // Loop 1 still serves.
    assert_eq!(wait(group.spawn_on(1, || async { 7 }).unwrap()).unwrap(), 7);
    group.stop();
    assert!(group.join().iter().all(Result::is_ok));
}

#[test]
fn dropping_the_group_stops_and_joins_its_loops() {
    let drops = Arc::new(AtomicUsize::new(0));
    let group = LoopGroup::new(2).unwrap();
    let d = drops.clone();
    drop(
        group
            .spawn_each(move |_| {
                let guard = DropCount(d.clone());
                async move {
                    std::future::pending::<()>().await;
                    drop(guard);
                }
            })
            .unwrap(),
    );
    let threads: Vec<ThreadId> = (0..2).map(|i| thread_of(&group, i).0).collect();
    assert_eq!(threads.len(), 2);
    let remotes = [group.remote(0), group.remote(1)];
    drop(group); // no stop, no join
    // Joined: both loops were closed (their tasks dropped) before drop returned.
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert!(remotes.iter().all(|r| r.is_closed()));
}

#[test]
fn dropping_the_group_on_its_own_loop_thread_does_not_deadlock() {
    let group = LoopGroup::new(2).unwrap();
    let remote = group.remote(0);
    let (tx, rx) = mpsc::channel();
    remote
        .call_soon_threadsafe(move |_| {
            drop(group); // on loop 0's thread: stops both, joins loop 1 only
            tx.send(()).unwrap();
        })
        .unwrap();
    rx.recv_timeout(PATIENCE).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !remote.is_closed() {
        assert!(Instant::now() < deadline, "loop 0 did not end");
        thread::sleep(Duration::from_millis(1));
    }
}

// ----- a server on every loop -----

/// Tells each client which loop accepted it, then echoes.
struct WhichLoop {
    index: usize,
    transport: Option<Transport>,
}

impl Protocol for WhichLoop {
    fn connection_made(&mut self, t: &Transport) {
        t.write(&[self.index as u8]);
        self.transport = Some(t.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            t.write(data);
        }
    }

    fn connection_lost(&mut self, _: Option<io::Error>) {
        self.transport = None;
    }
}

/// Listens on `addr` with `SO_REUSEPORT` on the current loop, sends the bound
/// address, and serves until the loop ends.
async fn serve_which(index: usize, addr: String, bound: mpsc::Sender<io::Result<SocketAddr>>) {
    let lp = Loop::current().unwrap();
    let server = lp
        .create_server_with(
            addr,
            move || WhichLoop {
                index,
                transport: None,
            },
            ServerOptions::default().reuse_port(true),
        )
        .await
        .unwrap();
    match server {
        Ok(server) => {
            bound.send(Ok(server.local_addrs()[0])).unwrap();
            server.wait_closed().await;
        }
        Err(e) => bound.send(Err(e)).unwrap(),
    }
}

/// Connects, reads the index of the loop that accepted, checks an echo.
fn which_loop(addr: SocketAddr) -> u8 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut index = [0u8; 1];
    s.read_exact(&mut index).unwrap();
    s.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    index[0]
}

#[test]
fn servers_on_every_loop_share_one_port() {
    let group = LoopGroup::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    let t = tx.clone();
    drop(
        group
            .spawn_on(0, move || serve_which(0, "127.0.0.1:0".into(), t))
            .unwrap(),
    );
    let addr = rx.recv_timeout(PATIENCE).unwrap().unwrap();
    drop(
        group
            .spawn_on(1, move || serve_which(1, addr.to_string(), tx))
            .unwrap(),
    );
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap().unwrap(), addr);
    // The kernel hashes each connection to a listener: over 64 connections, both
    // loops get some (all on one: a chance of 2^-63).
    let seen: HashSet<u8> = (0..64).map(|_| which_loop(addr)).collect();
    assert_eq!(seen, HashSet::from([0, 1]));
    group.stop();
    assert!(group.join().iter().all(Result::is_ok));
}

/// `multicore_echo` as a process, killed when dropped.
struct Example(Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn multicore_echo_example_serves_many_clients() {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "run",
        "--quiet",
        "--example",
        "multicore_echo",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.args(["--", "127.0.0.1:0", "--loops", "2"]);
    let mut child = Example(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run cargo"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = reader.read_to_end(&mut Vec::new());
    });
    // It may be compiled first.
    let line = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("multicore_echo printed nothing");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    // 16 clients at once, 100 round trips each, and a half-close at the end.
    let clients: Vec<_> = (0..16u8)
        .map(|c| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(PATIENCE)).unwrap();
                let msg = [c; 64];
                let mut back = [0u8; 64];
                for _ in 0..100 {
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg);
                }
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).unwrap();
                assert!(rest.is_empty());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert!(child.0.try_wait().unwrap().is_none(), "the example exited");
}
