//! The signal and subprocess examples, run as processes through `cargo run`: the
//! tour's signals section; `subprocess` prints its pipeline's sorted output;
//! `daemon` serves until SIGTERM or Ctrl-C (SIGINT), then refuses new connections,
//! lets an open one finish, and exits 0.
//!
//! (`cargo run` replaces itself with the example on Unix, so the child's pid is the
//! example's and signals reach it; the test checks that before relying on it.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long a step may take.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long the example may take to print its first line: it may be compiled first.
const STARTUP: Duration = Duration::from_secs(300);

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

fn run_example(name: &str) -> String {
    let out = cargo_run(name, &[])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[track_caller]
fn assert_has(output: &str, needle: &str) {
    assert!(output.contains(needle), "expected {needle:?} in:\n{output}");
}

#[test]
fn tour_has_a_signals_section() {
    let stdout = run_example("tour");
    for line in [
        "== 17. signals",
        "SIGUSR1 handled on the loop thread: true",
        "a burst of 3 signals ran the handler",
        "the replaced handler's handle: is_cancelled() = true",
        "SIGKILL -> Err(",
        "remove_signal_handler(SIGUSR1) -> true",
        "SIGUSR1 is back to its default disposition: true",
    ] {
        assert_has(&stdout, line);
    }
}

#[test]
fn subprocess_pipes_printf_through_sort() {
    let stdout = run_example("subprocess");
    let sorted: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sorted: "))
        .collect();
    assert_eq!(
        sorted,
        ["apple", "banana", "cherry", "fig", "pear"],
        "{stdout}"
    );
    for line in [
        "copied 29 bytes from printf to sort",
        "stdout: HELLO FROM THE LOOP",
        "stderr: done",
        "exit code: Some(3)",
        "killed by signal Some(9)",
        "kill() after the reap: Err(",
    ] {
        assert_has(&stdout, line);
    }
}

/// The daemon, its pid and the lines it prints.
struct Daemon {
    child: Child,
    lines: Receiver<String>,
    addr: SocketAddr,
}

impl Daemon {
    fn start() -> Daemon {
        let mut child = cargo_run("daemon", &["127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run cargo");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(STARTUP)
            .expect("the daemon's first line");
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap();
        assert_eq!(
            comm.trim(),
            "daemon",
            "cargo run replaced itself with the example"
        );
        Daemon { child, lines, addr }
    }

    fn signal(&self, signum: i32) {
        // SAFETY: kill with the pid of our own, still unreaped, child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signum) }, 0);
    }

    #[track_caller]
    fn expect_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {needle:?} from the daemon: {e}"),
            }
        }
    }

    #[track_caller]
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ask(s: &mut TcpStream, line: &str) -> String {
    s.write_all(line.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "the daemon closed early");
        got.push(byte[0]);
    }
    String::from_utf8(got).unwrap()
}

/// SIGTERM: new connections are refused at once, the open one is still served until
/// the client leaves, then the daemon exits 0.
#[test]
fn daemon_shuts_down_cleanly_on_sigterm() {
    let mut d = Daemon::start();
    let mut client = TcpStream::connect(d.addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(ask(&mut client, "hello\n"), "HELLO\n");

    d.signal(libc::SIGTERM);
    d.expect_line("SIGTERM: shutting down; no new connections, waiting for 1 open");
    assert!(TcpStream::connect(d.addr).is_err(), "the server is closed");
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "still serving the open client"
    );
    assert_eq!(ask(&mut client, "still here\n"), "STILL HERE\n");
    drop(client);

    d.expect_line("every connection finished");
    d.expect_line("bye");
    let status = d.wait_exit();
    assert!(status.success(), "{status}");
}

/// Ctrl-C (SIGINT) with nothing open: the daemon exits 0 at once.
#[test]
fn daemon_shuts_down_cleanly_on_ctrl_c() {
    let mut d = Daemon::start();
    d.signal(libc::SIGINT);
    d.expect_line("SIGINT: shutting down; no new connections, waiting for 0 open");
    d.expect_line("bye");
    assert!(d.wait_exit().success());
}

/// A second signal while connections are still open stops the daemon at once.
#[test]
fn a_second_signal_stops_the_daemon_at_once() {
    let mut d = Daemon::start();
    let mut client = TcpStream::connect(d.addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(ask(&mut client, "hi\n"), "HI\n");
    d.signal(libc::SIGTERM);
    d.expect_line("waiting for 1 open");
    d.signal(libc::SIGINT);
    d.expect_line("SIGINT again: stopping now");
    d.expect_line("bye");
    assert!(d.wait_exit().success());
    let mut rest = Vec::new();
    assert_eq!(
        client.read_to_end(&mut rest).unwrap_or(0),
        0,
        "closed by the exit"
    );
}
