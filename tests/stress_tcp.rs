//! Soak of many concurrent loopback TCP connections echoing through the protocol API.
//!
//! A server loop (the test's thread) echoes; a client loop (another thread) keeps
//! every connection in a ping-pong of checked messages. Short form (CI): 1,000
//! connections for 5 s. Long form (`EVLOOP_SOAK=1`): 5,000 connections for 60 s.
//! `RLIMIT_NOFILE` is raised up to the hard limit; the test is skipped, saying why,
//! if that is too low.
//!
//! What must hold: no error anywhere (no connect failure, no `connection_lost` with an
//! error, no reply out of order or corrupted, nothing reported to either loop's
//! exception handler); every connection keeps making progress; RSS is flat after the
//! warm-up; once both loops are closed, the process's open fds are back to the start
//! figure and (with the transport cycle fix) every protocol has been dropped.

#[path = "util/stress.rs"]
mod stress;
mod util;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use evloop::net::{Protocol, Transport};
use evloop::{Loop, ServerOptions};
use stress::*;
use util::{DropToken, Drops};

/// The tests of this file count the process's fds and RSS: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The message of round `round` on connection `id`: 16 to 271 bytes, every byte
/// depending on both, so that a reply crossed between connections or rounds shows.
fn message(id: usize, round: u64) -> Vec<u8> {
    let n = 16 + ((id as u64 * 7 + round * 13) % 256) as usize;
    let mut x = (id as u64) << 32 | (round & 0xffff_ffff);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

/// What the client loop counts.
#[derive(Default)]
struct ClientStats {
    made: Cell<usize>,
    rounds: Cell<u64>,
    lost: Cell<usize>,
    faults: RefCell<Vec<String>>,
    stop: Cell<bool>,
    /// The protocols drop their transport in `connection_lost`.
    let_go: bool,
    /// Rounds per connection, to show that every one made progress.
    per_conn: RefCell<Vec<u64>>,
}

impl ClientStats {
    fn fault(&self, f: String) {
        let mut faults = self.faults.borrow_mut();
        if faults.len() < 20 {
            faults.push(f);
        }
    }
}

/// A client connection: sends round `r`'s message, waits for its echo, checks it,
/// sends round `r + 1`; closes once told to stop.
struct Pinger {
    id: usize,
    round: u64,
    want: Vec<u8>,
    got: Vec<u8>,
    t: Option<Transport>,
    stats: Rc<ClientStats>,
    _token: DropToken,
}

impl Protocol for Pinger {
    fn connection_made(&mut self, t: &Transport) {
        self.stats.made.set(self.stats.made.get() + 1);
        self.want = message(self.id, 0);
        t.write(&self.want);
        self.t = Some(t.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        self.got.extend_from_slice(data);
        if self.got.len() < self.want.len() {
            return;
        }
        if self.got != self.want {
            self.stats.fault(format!(
                "connection {} round {}: the echo differs ({} bytes, want {})",
                self.id,
                self.round,
                self.got.len(),
                self.want.len()
            ));
        }
        self.got.clear();
        self.round += 1;
        self.stats.rounds.set(self.stats.rounds.get() + 1);
        self.stats.per_conn.borrow_mut()[self.id] = self.round;
        let t = self.t.as_ref().expect("made");
        if self.stats.stop.get() {
            t.close();
        } else {
            self.want = message(self.id, self.round);
            t.write(&self.want);
        }
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        if self.stats.let_go {
            self.t = None;
        }
        self.stats.lost.set(self.stats.lost.get() + 1);
        if let Some(e) = error {
            self.stats
                .fault(format!("connection {}: connection_lost({e})", self.id));
        }
        if !self.stats.stop.get() {
            self.stats
                .fault(format!("connection {}: lost before the end", self.id));
        }
    }
}

/// The server's protocol: echoes, keeping its transport (the documented idiom),
/// until `connection_lost` if `let_go`.
struct Echo {
    t: Option<Transport>,
    errors: Rc<Cell<usize>>,
    let_go: bool,
    _token: DropToken,
}

impl Protocol for Echo {
    fn connection_made(&mut self, t: &Transport) {
        self.t = Some(t.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        self.t.as_ref().expect("made").write(data);
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        if self.let_go {
            self.t = None;
        }
        if error.is_some() {
            self.errors.set(self.errors.get() + 1);
        }
    }
}

/// A loop whose exception handler counts what it hears.
fn counting_loop() -> (Loop, Rc<RefCell<Vec<String>>>) {
    let lp = Loop::new().unwrap();
    let heard = Rc::new(RefCell::new(Vec::new()));
    let h = heard.clone();
    lp.set_exception_handler(move |_, ctx| h.borrow_mut().push(ctx.to_string()));
    (lp, heard)
}

/// What the client thread reports.
struct ClientReport {
    made: usize,
    rounds: u64,
    lost: usize,
    faults: Vec<String>,
    slowest: u64,
    handler: Vec<String>,
    rounds_at_warm: u64,
}

/// Runs the clients: `n` connections to `addr`, ping-pong for `run`, then every one
/// closes after its round. Tells the test thread the warm-up is over through `warm`.
fn clients(
    addr: SocketAddr,
    n: usize,
    warm_up: Duration,
    run: Duration,
    drops: Drops,
    let_go: bool,
    warm: mpsc::Sender<()>,
) -> ClientReport {
    let (lp, handler) = counting_loop();
    let stats = Rc::new(ClientStats {
        let_go,
        ..ClientStats::default()
    });
    stats.per_conn.borrow_mut().resize(n, 0);
    // Connect in batches, so that the server's backlog never overflows.
    let s2 = stats.clone();
    let connecting = lp.create_task(async move {
        let lp = Loop::current().unwrap();
        for batch in (0..n).collect::<Vec<_>>().chunks(256) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|&id| {
                    let p = Pinger {
                        id,
                        round: 0,
                        want: Vec::new(),
                        got: Vec::new(),
                        t: None,
                        stats: s2.clone(),
                        _token: drops.token(),
                    };
                    lp.create_connection(addr, p)
                })
                .collect();
            for (t, id) in tasks.into_iter().zip(batch) {
                match t.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => s2.fault(format!("connect #{id}: {e}")),
                    Err(e) => s2.fault(format!("connect task #{id}: {e:?}")),
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !connecting.is_done() && Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert!(
        connecting.is_done(),
        "connecting {n} clients took over 2 minutes"
    );
    // Warm-up, then the measured run.
    let end_warm = Instant::now() + warm_up;
    while Instant::now() < end_warm {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    let rounds_at_warm = stats.rounds.get();
    warm.send(()).unwrap();
    let end = Instant::now() + run;
    while Instant::now() < end {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    // Stop: each connection closes after its current round.
    stats.stop.set(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.lost.get() < stats.made.get() && Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    let report = ClientReport {
        made: stats.made.get(),
        rounds: stats.rounds.get(),
        lost: stats.lost.get(),
        faults: stats.faults.borrow().clone(),
        slowest: stats.per_conn.borrow().iter().copied().min().unwrap_or(0),
        handler: handler.borrow().clone(),
        rounds_at_warm,
    };
    drop(connecting);
    lp.close().unwrap();
    report
}

/// How a soak went, for the assertions.
struct Soak {
    n: usize,
    client: ClientReport,
    server_errors: usize,
    server_handler: Vec<String>,
    fds_start: usize,
    fds_end: usize,
    rss_warm: usize,
    rss_max_after_warm: usize,
    rss_end: usize,
    took: Duration,
}

/// Runs `n` connections for `run` after `warm_up`; `None` (with the reason printed)
/// if the fd limit cannot be raised far enough.
fn soak_connections(
    n: usize,
    warm_up: Duration,
    run: Duration,
    server_drops: &Drops,
    client_drops: &Drops,
    let_go: bool,
) -> Option<Soak> {
    let need = 2 * n as u64 + 200;
    let limit = raise_nofile(need);
    if limit < need {
        println!(
            "skipped: {n} connections need {need} fds, and RLIMIT_NOFILE's hard limit is {}",
            nofile().1
        );
        return None;
    }
    let fds_start = util_fds();
    let started = Instant::now();
    let (lp, server_handler) = counting_loop();
    let errors = Rc::new(Cell::new(0));
    let (e2, d2) = (errors.clone(), server_drops.clone());
    let server = util_block_on(
        &lp,
        lp.create_server_with(
            "127.0.0.1:0",
            move || Echo {
                t: None,
                errors: e2.clone(),
                let_go,
                _token: d2.token(),
            },
            ServerOptions::default().backlog(1024),
        ),
    )
    .expect("create_server task")
    .expect("create_server");
    let addr = server.local_addrs()[0];
    let (warm_tx, warm_rx) = mpsc::channel();
    let cd = client_drops.clone();
    let client = thread::spawn(move || clients(addr, n, warm_up, run, cd, let_go, warm_tx));

    // Serve until the clients are done; sample RSS once a second after the warm-up.
    let mut rss_warm = None;
    let mut rss_max_after_warm = 0;
    let mut next_sample = Instant::now();
    let deadline = Instant::now() + warm_up + run + Duration::from_secs(300);
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "the soak does not end");
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
        if rss_warm.is_none() && warm_rx.try_recv().is_ok() {
            rss_warm = Some(rss_bytes());
            next_sample = Instant::now() + Duration::from_secs(1);
        }
        if rss_warm.is_some() && Instant::now() >= next_sample {
            rss_max_after_warm = rss_max_after_warm.max(rss_bytes());
            next_sample += Duration::from_secs(1);
        }
    }
    let client = client.join().expect("the client thread panicked");
    let rss_end = rss_bytes();
    // The server's ends see the clients' closes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.active_connections() > 0 && Instant::now() < deadline {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert_eq!(
        server.active_connections(),
        0,
        "server connections never ended"
    );
    server.close();
    drop(server);
    for _ in 0..10 {
        lp.run_once(Some(Duration::from_millis(1))).unwrap();
    }
    lp.close().unwrap();
    let server_handler = server_handler.borrow().clone();
    drop(lp);
    Some(Soak {
        n,
        client,
        server_errors: errors.get(),
        server_handler,
        fds_start,
        fds_end: util_fds(),
        rss_warm: rss_warm.expect("the warm-up never ended"),
        rss_max_after_warm,
        rss_end,
        took: started.elapsed(),
    })
}

fn util_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
        - 1
}

fn util_block_on<F: std::future::Future>(lp: &Loop, fut: F) -> F::Output {
    lp.run_until_complete(evloop::timeout(Duration::from_secs(30), fut))
        .expect("run_until_complete")
        .expect("timed out")
}

fn sizes() -> (usize, Duration, Duration) {
    if under_valgrind() {
        (50, Duration::from_millis(200), Duration::from_millis(500))
    } else {
        scale(
            (1_000, Duration::from_secs(1), Duration::from_secs(5)),
            (5_000, Duration::from_secs(10), Duration::from_secs(60)),
        )
    }
}

/// 1,000 connections echo for 5 s (long form: 5,000 for 60 s) with no error, RSS
/// flat after the warm-up, and the process's fds back to the start figure.
#[test]
fn many_connections_echo_without_error_with_flat_memory_and_no_fd_left() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (n, warm_up, run) = sizes();
    let (sd, cd) = (Drops::new(), Drops::new());
    // The protocols let go of their transports in `connection_lost`, so that nothing
    // leaks whether or not the transport lets go of them (the next test checks that).
    let Some(s) = soak_connections(n, warm_up, run, &sd, &cd, true) else {
        return;
    };
    let c = &s.client;
    println!(
        "figure: tcp soak: {} connections, {:.0?} measured: {} round trips ({:.0}/s), the \
         slowest connection {} rounds; RSS after warm-up {:.1} MiB, max after {:.1} MiB, \
         end {:.1} MiB; fds {} -> {}; {:.1?} in all",
        s.n,
        run,
        c.rounds,
        (c.rounds - c.rounds_at_warm) as f64 / run.as_secs_f64(),
        c.slowest,
        mib(s.rss_warm),
        mib(s.rss_max_after_warm),
        mib(s.rss_end),
        s.fds_start,
        s.fds_end,
        s.took
    );
    assert!(c.faults.is_empty(), "client faults: {:#?}", c.faults);
    assert!(c.handler.is_empty(), "client loop errors: {:#?}", c.handler);
    assert!(
        s.server_handler.is_empty(),
        "server loop errors: {:#?}",
        s.server_handler
    );
    assert_eq!(s.server_errors, 0, "server connections lost with an error");
    assert_eq!(c.made, n, "connections made");
    assert_eq!(c.lost, n, "client connections ended");
    assert!(c.slowest > 0, "a connection made no progress");
    let rss_top = s.rss_max_after_warm.max(s.rss_end);
    let grew = rss_top.saturating_sub(s.rss_warm);
    assert!(
        grew <= (16 << 20).max(s.rss_warm / 5),
        "RSS grew {:.1} MiB after the warm-up ({:.1} -> {:.1} MiB)",
        mib(grew),
        mib(s.rss_warm),
        mib(rss_top)
    );
    assert_eq!(s.fds_end, s.fds_start, "fds left open");
}

/// Every protocol, server and client side, is dropped once its connection has ended:
/// nothing keeps a connection's protocol (the protocol keeps its transport, the
/// documented idiom, so the transport must let go of it after `connection_lost`).
#[test]
fn every_protocol_of_many_connections_is_dropped() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let n = if under_valgrind() {
        50
    } else {
        scale(1_000, 5_000)
    };
    let (sd, cd) = (Drops::new(), Drops::new());
    let Some(s) = soak_connections(
        n,
        Duration::from_millis(200),
        Duration::from_millis(500),
        &sd,
        &cd,
        false,
    ) else {
        return;
    };
    assert!(s.client.faults.is_empty(), "{:#?}", s.client.faults);
    assert_eq!(sd.made(), n, "server protocols made");
    assert_eq!(cd.made(), n, "client protocols made");
    assert_eq!(
        (sd.alive(), cd.alive()),
        (0, 0),
        "(server, client) protocols never dropped"
    );
}
