//! `Loop::subprocess_exec_with`: a `SubprocessProtocol` hears `connection_made`
//! first, output per fd, one `pipe_connection_lost` per piped fd and one
//! `process_exited`; the `SubprocessTransport` writes stdin, signals, and `close()`
//! kills a running child. No cycle outlives the child.
//!
//! Ported (as behaviour) from CPython's `test_asyncio/test_events.py`
//! (`test_subprocess_*` with `MySubprocessProtocol`); each test names its case.

#[path = "util/process.rs"]
mod process_util;
mod util;

use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::{ErrorContext, Loop, SubprocessProtocol, SubprocessTransport};
use process_util::*;
use util::{DropToken, Drops};

/// What the protocol heard, in order.
#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Made,
    Data(i32, Vec<u8>),
    Lost(i32, Option<ErrorKind>),
    Exited(Option<ExitStatus>),
}

/// asyncio's `MySubprocessProtocol`: records everything; keeps its transport (the
/// documented idiom); may be told to panic on output.
#[derive(Default)]
struct Recorder {
    events: Rc<RefCell<Vec<Ev>>>,
    transport: Option<SubprocessTransport>,
    panic_on_data: bool,
    _token: Option<DropToken>,
}

impl SubprocessProtocol for Recorder {
    fn connection_made(&mut self, transport: &SubprocessTransport) {
        assert!(
            self.events.borrow().is_empty(),
            "connection_made comes first"
        );
        self.transport = Some(transport.clone());
        self.events.borrow_mut().push(Ev::Made);
    }

    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        if self.panic_on_data {
            panic!("protocol boom");
        }
        let mut ev = self.events.borrow_mut();
        // Coalesce consecutive chunks of one fd (chunking is the OS's business).
        if let Some(Ev::Data(f, d)) = ev.last_mut()
            && *f == fd
        {
            d.extend_from_slice(data);
            return;
        }
        ev.push(Ev::Data(fd, data.to_vec()));
    }

    fn pipe_connection_lost(&mut self, fd: i32, error: Option<io::Error>) {
        self.events
            .borrow_mut()
            .push(Ev::Lost(fd, error.map(|e| e.kind())));
    }

    fn process_exited(&mut self) {
        let status = self.transport.as_ref().and_then(|t| t.returncode());
        self.events.borrow_mut().push(Ev::Exited(status));
    }
}

struct Run {
    lp: Loop,
    transport: SubprocessTransport,
    events: Rc<RefCell<Vec<Ev>>>,
}

impl Run {
    fn start(cmd: Command) -> Run {
        Run::start_with(cmd, Recorder::default())
    }

    fn start_with(cmd: Command, mut protocol: Recorder) -> Run {
        let lp = Loop::new().unwrap();
        let events = protocol.events.clone();
        protocol.events = events.clone();
        let (transport, _protocol) = lp.subprocess_exec_with(cmd, protocol).unwrap();
        Run {
            lp,
            transport,
            events,
        }
    }

    fn events(&self) -> Vec<Ev> {
        self.events.borrow().clone()
    }

    fn has(&self, ev: &Ev) -> bool {
        self.events.borrow().contains(ev)
    }

    fn count(&self, f: impl Fn(&Ev) -> bool) -> usize {
        self.events.borrow().iter().filter(|e| f(e)).count()
    }

    fn data(&self, fd: i32) -> Vec<u8> {
        self.events
            .borrow()
            .iter()
            .filter_map(|e| match e {
                Ev::Data(f, d) if *f == fd => Some(d.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn exited(&self) -> Option<ExitStatus> {
        self.events.borrow().iter().find_map(|e| match e {
            Ev::Exited(s) => Some(s.expect("returncode is set in process_exited")),
            _ => None,
        })
    }

    /// Runs the loop until `cond` holds.
    #[track_caller]
    fn until(&self, what: &str, cond: impl Fn(&Run) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; heard {:?}",
                self.events()
            );
            self.lp.run_once(Some(Duration::from_millis(10))).unwrap();
        }
    }

    /// Runs until the child exited and every piped fd in `fds` was lost.
    #[track_caller]
    fn until_done(&self, fds: &[i32]) {
        self.until("the end", |r| {
            r.exited().is_some()
                && fds
                    .iter()
                    .all(|&fd| r.count(|e| matches!(e, Ev::Lost(f, _) if *f == fd)) == 1)
        });
        // Nothing more comes afterwards.
        for _ in 0..5 {
            self.lp.run_once(Some(Duration::from_millis(1))).unwrap();
        }
    }

    /// Each piped fd was lost exactly once, and the child exited exactly once.
    #[track_caller]
    fn assert_each_once(&self, fds: &[i32]) {
        for &fd in fds {
            assert_eq!(
                self.count(|e| matches!(e, Ev::Lost(f, _) if *f == fd)),
                1,
                "fd {fd}: {:?}",
                self.events()
            );
        }
        assert_eq!(self.count(|e| matches!(e, Ev::Exited(_))), 1);
        assert_eq!(self.events()[0], Ev::Made);
    }
}

/// test_subprocess_exec: `cat` echoes what is written; `close()` kills it; every
/// pipe is reported lost once and the exit once.
#[test]
fn exec_echoes_and_close_kills_the_child() {
    let r = Run::start(piped(Command::new("cat")));
    r.until("connection_made", |r| r.has(&Ev::Made));
    r.transport.write_stdin(b"Python The Winner");
    r.until("the echo", |r| r.data(1) == b"Python The Winner");
    assert_eq!(r.transport.returncode(), None);
    r.transport.close();
    r.until_done(&[0, 1, 2]);
    r.assert_each_once(&[0, 1, 2]);
    assert_eq!(r.exited().unwrap().signal(), Some(libc::SIGKILL));
    r.transport.close(); // twice is fine
}

/// test_subprocess_interactive: two writes, two echoes.
#[test]
fn interactive_writes_and_echoes() {
    let r = Run::start(piped(Command::new("cat")));
    r.transport.write_stdin(b"Python ");
    r.until("the first echo", |r| r.data(1) == b"Python ");
    r.transport.write_stdin(b"The Winner");
    r.until("the second echo", |r| r.data(1) == b"Python The Winner");
    r.transport.close();
    r.until_done(&[0, 1, 2]);
}

/// test_subprocess_shell: closing stdin lets `sh` finish; output on fd 1, none on
/// fd 2, status 0, every pipe lost without error.
#[test]
fn close_stdin_lets_the_child_finish() {
    let r = Run::start(sh("cat; echo Python"));
    r.transport.close_stdin();
    r.until_done(&[0, 1, 2]);
    r.assert_each_once(&[0, 1, 2]);
    assert_eq!(r.exited().unwrap().code(), Some(0));
    assert_eq!(r.data(1), b"Python\n");
    assert_eq!(r.data(2), b"");
    for fd in 0..3 {
        assert!(r.has(&Ev::Lost(fd, None)), "{:?}", r.events());
    }
    r.transport.close();
}

/// test_subprocess_exitcode / test_subprocess_close_after_finish: no pipes: only
/// `connection_made` and `process_exited` (status 7); `close()` afterwards is a
/// no-op.
#[test]
fn a_child_without_pipes_reports_only_its_exit() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exit 7"]);
    let r = Run::start(cmd);
    r.until("the exit", |r| r.exited().is_some());
    assert_eq!(r.events(), [Ev::Made, Ev::Exited(r.exited())]);
    assert_eq!(r.exited().unwrap().code(), Some(7));
    r.transport.close();
    r.lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(r.events().len(), 2);
}

/// test_subprocess_kill / test_subprocess_terminate / test_subprocess_send_signal.
#[test]
fn kill_terminate_and_send_signal() {
    for (signum, how) in [
        (libc::SIGKILL, "kill"),
        (libc::SIGTERM, "terminate"),
        (libc::SIGHUP, "send_signal"),
    ] {
        let r = Run::start(piped(Command::new("cat")));
        r.until("connection_made", |r| r.has(&Ev::Made));
        match how {
            "kill" => r.transport.kill().unwrap(),
            "terminate" => r.transport.terminate().unwrap(),
            _ => r.transport.send_signal(signum).unwrap(),
        }
        r.until_done(&[1, 2]);
        assert_eq!(r.exited().unwrap().signal(), Some(signum), "{how}");
        assert_eq!(
            r.transport.send_signal(signum).unwrap_err().raw_os_error(),
            Some(libc::ESRCH),
            "after the reap"
        );
        r.transport.close();
    }
}

/// test_subprocess_stderr: what the child writes to stdout and stderr arrives on
/// fd 1 and fd 2.
#[test]
fn stdout_and_stderr_arrive_on_their_fds() {
    let r = Run::start(sh("read x; echo \"OUT:$x\"; echo \"ERR:$x\" >&2"));
    r.transport.write_stdin(b"test\n");
    r.until_done(&[1, 2]);
    assert_eq!(r.data(1), b"OUT:test\n");
    assert_eq!(r.data(2), b"ERR:test\n");
    assert_eq!(r.exited().unwrap().code(), Some(0));
    r.transport.close();
    r.until_done(&[0, 1, 2]);
    r.assert_each_once(&[0, 1, 2]);
}

/// test_subprocess_stderr_redirect_to_stdout: stderr not piped: it is not reported.
#[test]
fn only_piped_fds_are_reported() {
    let mut cmd = sh("echo out; echo err >&2");
    cmd.stderr(Stdio::null()).stdin(Stdio::null());
    let r = Run::start(cmd);
    r.until_done(&[1]);
    assert_eq!(r.data(1), b"out\n");
    assert_eq!(r.count(|e| matches!(e, Ev::Lost(0 | 2, _))), 0);
    assert_eq!(r.count(|e| matches!(e, Ev::Data(2, _))), 0);
}

/// The child closes its stdin while we have nothing to write: the loss of fd 0 is
/// reported at once, without an error, while the child still runs.
#[test]
fn a_child_closing_its_stdin_is_reported_while_idle() {
    let r = Run::start(sh("exec 0<&-; sleep 30"));
    r.until("stdin lost", |r| r.has(&Ev::Lost(0, None)));
    assert_eq!(r.transport.returncode(), None, "still running");
    r.transport.write_stdin(b"dropped, with a warning");
    r.transport.close();
    r.until_done(&[0, 1, 2]);
    r.assert_each_once(&[0, 1, 2]);
}

/// A child that stops reading while we still write: fd 0 is lost with
/// `BrokenPipe`, never a SIGPIPE.
#[test]
fn a_write_to_a_child_that_stopped_reading_reports_broken_pipe() {
    let r = Run::start(sh("head -c 1 >/dev/null; exit 0"));
    r.transport.write_stdin(&vec![b'x'; 4 << 20]);
    r.until("stdin lost", |r| {
        r.count(|e| matches!(e, Ev::Lost(0, _))) == 1
    });
    assert!(
        r.has(&Ev::Lost(0, Some(ErrorKind::BrokenPipe))),
        "{:?}",
        r.events()
    );
    r.until_done(&[0, 1, 2]);
    assert_eq!(r.exited().unwrap().code(), Some(0));
}

/// A large output arrives whole, in order.
#[test]
fn a_large_output_arrives_whole() {
    const N: usize = 8 << 20;
    let r = Run::start(sh(&format!("head -c {N} /dev/zero | tr '\\0' 'a'")));
    r.until_done(&[1]);
    let out = r.data(1);
    assert_eq!(out.len(), N);
    assert!(out.iter().all(|&b| b == b'a'));
}

/// A protocol method that panics is reported and closes the transport: the child is
/// killed, and every pipe and the exit are still reported once.
#[test]
fn a_panicking_protocol_is_reported_and_closes_the_transport() {
    let protocol = Recorder {
        panic_on_data: true,
        ..Recorder::default()
    };
    let r = Run::start_with(sh("echo hi; exec sleep 30"), protocol);
    let reports = Rc::new(RefCell::new(Vec::new()));
    let rep = reports.clone();
    r.lp.set_exception_handler(move |_, ctx: &ErrorContext| {
        rep.borrow_mut()
            .push(ctx.panic_message().unwrap_or_default().to_owned());
    });
    r.until_done(&[0, 1, 2]);
    r.assert_each_once(&[0, 1, 2]);
    assert_eq!(r.exited().unwrap().signal(), Some(libc::SIGKILL));
    assert_eq!(*reports.borrow(), ["protocol boom"]);
}

/// No cycle survives the child: a protocol that keeps its transport is dropped once
/// the child has exited and its pipes are done (and the transport's last clone can
/// go).
#[test]
fn the_protocol_is_dropped_once_the_child_is_done() {
    let drops = Drops::new();
    let lp = Loop::new().unwrap();
    let protocol = Recorder {
        _token: Some(drops.token()),
        ..Recorder::default()
    };
    let events = protocol.events.clone();
    let (transport, protocol) = lp.subprocess_exec_with(sh("cat"), protocol).unwrap();
    drop(protocol);
    transport.write_stdin(b"x");
    transport.close_stdin();
    let deadline = Instant::now() + PATIENCE;
    while drops.alive() > 0 {
        assert!(
            Instant::now() < deadline,
            "protocol never dropped: {:?}",
            events.borrow()
        );
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
    assert!(transport.returncode().unwrap().success());
}

/// The loop closing while the child runs drops the protocol (which keeps its
/// transport), and the child is reaped in the background.
#[test]
fn closing_the_loop_drops_the_protocol_and_leaves_no_zombie() {
    let drops = Drops::new();
    let lp = Loop::new().unwrap();
    let protocol = Recorder {
        _token: Some(drops.token()),
        ..Recorder::default()
    };
    let mut cmd = sh("sleep 0.3");
    cmd.stdin(Stdio::null());
    let (transport, protocol) = lp.subprocess_exec_with(cmd, protocol).unwrap();
    drop(protocol);
    lp.run_once(Some(Duration::from_millis(10))).unwrap();
    let pid = transport.pid();
    lp.close().unwrap();
    assert_eq!(drops.alive(), 0, "the protocol was dropped by close()");
    assert_eq!(transport.returncode(), None);
    assert_all_reaped(&[pid]);
    transport.close(); // a no-op on a closed loop
}
