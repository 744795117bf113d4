//! Helpers for the subprocess tests: commands, running a future with a deadline, and
//! reading a child's state from `/proc` (to count zombies).
#![allow(dead_code)]

use std::future::Future;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evloop::Loop;

/// How long any one wait in these tests may take before it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `sh -c script` with every stream piped.
pub fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    piped(cmd)
}

/// `cmd` with stdin, stdout and stderr piped.
pub fn piped(mut cmd: Command) -> Command {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `fut` on `lp`, failing the test if it takes longer than [`PATIENCE`].
#[track_caller]
pub fn block_on<F: Future>(lp: &Loop, fut: F) -> F::Output {
    lp.run_until_complete(evloop::timeout(PATIENCE, fut))
        .expect("run_until_complete")
        .unwrap_or_else(|_| panic!("the future did not complete within {PATIENCE:?}"))
}

/// The running loop, inside a task.
pub fn current() -> Loop {
    Loop::current().expect("inside a running loop")
}

/// What `/proc` says of `pid`, if it is still a child of this process: its state
/// letter (`'Z'` for a zombie). `None` once it is gone (reaped).
pub fn child_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid: u32 = fields.next()?.parse().ok()?;
    (ppid == std::process::id()).then_some(state)
}

/// Waits until none of `pids` is a child of this process any more (all reaped),
/// failing after [`PATIENCE`] with the states left.
#[track_caller]
pub fn assert_all_reaped(pids: &[u32]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left: Vec<_> = pids
            .iter()
            .filter_map(|&p| child_state(p).map(|s| (p, s)))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "children not reaped after {PATIENCE:?} (pid, state): {left:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that `pid` is not a zombie (nor alive) as a child of this process now.
#[track_caller]
pub fn assert_reaped(pid: u32) {
    assert_eq!(child_state(pid), None, "child {pid} is still ours");
}

/// The names of this process's threads.
pub fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim_end().to_owned())
        .collect()
}
