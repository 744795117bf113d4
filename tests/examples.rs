//! The examples, run as processes through `cargo run`: the tour and the threads,
//! tasks and executor examples finish cleanly and print what they should; the echo
//! server echoes byte for byte to several clients at once, a large payload included,
//! and survives clients that leave cleanly or abruptly.
//!
//! `cargo test --all-targets` has already built the examples, so `cargo run` here
//! only checks that they are fresh.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long a client waits for an echo, or the test for a line from the server.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long the server may take to print its address: it may be compiled first.
const STARTUP: Duration = Duration::from_secs(300);

/// `cargo run --quiet --example NAME -- ARGS` in this package, in the profile this
/// test was built with.
fn cargo_run(name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--example", name]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.arg("--").args(args);
    cmd
}

/// Runs an example to completion and checks that it succeeded.
fn run_example(name: &str) -> (String, String) {
    let start = Instant::now();
    let Output {
        status,
        stdout,
        stderr,
    } = cargo_run(name, &[])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run cargo");
    let stdout = String::from_utf8(stdout).expect("UTF-8 stdout");
    let stderr = String::from_utf8(stderr).expect("UTF-8 stderr");
    assert!(
        status.success(),
        "example {name} failed ({status}) after {:.1?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        start.elapsed()
    );
    (stdout, stderr)
}

fn assert_has(output: &str, needle: &str) {
    assert!(
        output.contains(needle),
        "expected {needle:?} in the output:\n{output}"
    );
}

#[test]
fn tour_runs_every_section() {
    let (stdout, stderr) = run_example("tour");
    for n in 1..=16 {
        assert_has(&stdout, &format!("\n== {n}. "));
    }
    for line in [
        "call_soon: first",
        "same deadline: scheduling order",
        "(closure of the one-hour timer dropped)",
        "next_timeout() = None",
        "dropping a Handle does not cancel: this one runs",
        "reader call #4: read '!'",
        "is_cancelled() = true",
        "worker 3 sent",
        "a thread called remote.stop()",
        "exception handler: a callback panicked",
        "panic message: Some(\"boom\")",
        "the next callback still runs",
        "[log WARN evloop",
        "the 1-hour timer fired at virtual +3600s",
        "after clock.advance(10 s):    fired = true",
        "threadsafe call at",
        "== 11. tasks and promises",
        "promise done-callback: Ok(\"ready\")",
        "task: awaited the promise, got \"ready\"",
        "run_until_complete(..) awaited the task: 5",
        "== 12. sleep and timeout",
        "timeout(5 ms, sleep(60 s)) -> Err(TimeoutError)",
        "== 13. TaskGroup and run_in_executor",
        "run_in_executor child -> Ok(true)",
        "== 14. Remote::spawn from another thread",
        "RemoteTask::wait() -> Ok((42, true))",
        "== 15. sync::Queue",
        "consumer got [1, 2, 3, 4, 5]",
        "== 16. close()",
        "(closure of a reader dropped)",
        "run_forever() -> Err(the event loop is closed)",
        "== 18. streams",
        "readline() -> \"HELLO\\n\", readexactly(8) -> \"STREAMS\\n\"",
        "partial Some(\"NO NEWLINE\")",
        "tour finished in",
    ] {
        assert_has(&stdout, line);
    }
    assert!(
        !stderr.contains("boom"),
        "the tour's quiet panic hook keeps stderr clean:\n{stderr}"
    );
}

#[test]
fn threads_aggregates_every_worker() {
    let (stdout, _) = run_example("threads");
    assert_has(&stdout, "(4/4)");
    assert_has(&stdout, "matches the single-threaded count");
}

/// The three styles of `verify_user` print the same results, failures included.
#[test]
fn tasks_prints_the_same_results_in_three_styles() {
    let (stdout, _) = run_example("tasks");
    let mut styles: Vec<Vec<&str>> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with('(') {
            styles.push(Vec::new()); // "(a) nested callbacks: ...", "(b) ...", "(c) ..."
        } else if line.starts_with("  verify_user(") {
            styles
                .last_mut()
                .expect("a style heading comes first")
                .push(line);
        }
    }
    assert_eq!(styles.len(), 3, "three styles:\n{stdout}");
    let first = &styles[0];
    for expected in [
        r#"verify_user("alice", "wonderland")"#,
        "-> Ok: alice may read, write, admin",
        r#"-> Err: wrong password for "alice""#,
        r#"-> Err: unknown user "mallory""#,
    ] {
        assert!(
            first.iter().any(|l| l.contains(expected)),
            "expected {expected:?} in {first:#?}"
        );
    }
    assert_eq!(styles[1], *first, "promises print what callbacks print");
    assert_eq!(
        styles[2], *first,
        "the async fn prints what callbacks print"
    );
    assert_has(&stdout, "the three styles agree on all 3 attempts");
}

/// Blocking jobs run on the executor's threads, in parallel, while the loop ticks.
#[test]
fn executor_runs_blocking_jobs_while_the_loop_ticks() {
    let (stdout, _) = run_example("executor");
    for (below, primes) in [(1000, 168), (2000, 303), (5000, 669), (8000, 1007)] {
        assert_has(
            &stdout,
            &format!("primes below {below}: {primes} (on evloop-executor-"),
        );
    }
    assert_eq!(
        stdout.matches("(on evloop-executor-").count(),
        8,
        "eight results, each from an executor thread:\n{stdout}"
    );
    // Ticks printed while jobs were still out: the loop was not blocked.
    let ticks_meanwhile = stdout
        .lines()
        .filter(|l| l.starts_with("  tick ") && !l.ends_with(" 8/8 jobs done"))
        .count();
    assert!(
        ticks_meanwhile >= 2,
        "the loop should tick while the jobs block:\n{stdout}"
    );
    let number_after = |prefix: &str| -> u64 {
        let rest = &stdout[stdout.find(prefix).expect(prefix) + prefix.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect("a number")
    };
    assert!(number_after("the loop ticked ") >= 2);
    // Eight 50 ms jobs on four threads: two waves, far below 400 ms one after another.
    let wall = number_after("all 8 jobs done in ");
    assert!(wall < 400, "the jobs should overlap ({wall} ms):\n{stdout}");
}

/// The echo server process; killed when the test ends, however it ends.
struct Server {
    child: Child,
    /// The server's stdout, line by line.
    lines: Receiver<String>,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        let mut child = cargo_run("echo_callbacks", &["127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run cargo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines,
            addr: ([0, 0, 0, 0], 0).into(),
        };
        let first = server
            .lines
            .recv_timeout(STARTUP)
            .expect("the server prints its address first");
        server.addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"));
        server
    }

    /// Waits for a line of the server's output that starts with `prefix`.
    fn expect_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no line starting with {prefix:?} from the server; saw {seen:#?}");
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to the echo server");
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.set_write_timeout(Some(PATIENCE)).unwrap();
        self.expect_line(&format!("accepted {}", s.local_addr().unwrap()));
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `data` and checks that exactly `data` comes back.
fn round_trip(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).expect("send");
    let mut back = vec![0; data.len()];
    s.read_exact(&mut back).expect("echo");
    assert_eq!(back, data);
}

/// Deterministic bytes that are not a short repeating pattern.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn echo_server_serves_many_clients() {
    let server = Server::start();
    let mut clients: Vec<TcpStream> = (0..4).map(|_| server.connect()).collect();

    // Each client alone, then all of them in flight at once.
    for (i, c) in clients.iter_mut().enumerate() {
        round_trip(c, format!("hello from client {i}\n").as_bytes());
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("message {i}").as_bytes()).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let want = format!("message {i}");
        let mut back = vec![0; want.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, want.as_bytes());
    }

    // 4 MiB on one connection, sent from one thread while another reads: the
    // server's writes come up short and its writer drains the rest. The other
    // clients are served meanwhile. After the client shuts down its sending side,
    // the server echoes what is left and closes.
    let big = server.connect();
    let big_addr = big.local_addr().unwrap();
    let data = Arc::new(payload(4 << 20));
    let mut tx = big.try_clone().unwrap();
    let sent = data.clone();
    let sender = thread::spawn(move || {
        tx.write_all(&sent).expect("send the payload");
        tx.shutdown(Shutdown::Write).unwrap();
    });
    let mut rx = big;
    let receiver = thread::spawn(move || {
        let mut back = Vec::with_capacity(4 << 20);
        rx.read_to_end(&mut back).expect("read the echo to the end");
        back
    });
    for round in 0..20 {
        for c in clients.iter_mut() {
            round_trip(c, format!("round {round}").as_bytes());
        }
    }
    sender.join().unwrap();
    let back = receiver.join().unwrap();
    assert_eq!(back.len(), data.len(), "every byte echoed, then closed");
    if let Some(i) = back.iter().zip(data.iter()).position(|(a, b)| a != b) {
        panic!("the echo differs from the payload at byte {i}");
    }
    server.expect_line(&format!("closed {big_addr}: echoed {} bytes", 4 << 20));

    // A client that leaves cleanly, and one that leaves with its echo unread (its
    // close resets the connection): both are cleaned up, the others keep working.
    let gone = clients.remove(0);
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    server.expect_line(&format!("closed {gone_addr}: echoed"));

    let mut rude = server.connect();
    let rude_addr = rude.local_addr().unwrap();
    rude.write_all(&payload(256 << 10)).unwrap();
    drop(rude);
    server.expect_line(&format!("closed {rude_addr}"));

    for c in clients.iter_mut() {
        round_trip(c, b"still here");
    }
    let mut late = server.connect();
    round_trip(&mut late, b"a new client after the departures");
}
