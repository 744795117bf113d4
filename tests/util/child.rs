//! Running one test's scenario in a child process: for tests that change
//! process-wide state the other tests of the binary would see (signal dispositions,
//! SIGPIPE), or that must watch the process die.
//!
//! The test calls [`run_child`] with its own name; the child is this test binary,
//! running only that test, with [`is_child`] true for it.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

const CHILD_ENV: &str = "EVLOOP_TEST_CHILD";

/// Whether this process is the child started by `run_child(name)`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

/// Runs this test binary again, test `name` alone, as the child; returns its
/// output once it has exited.
pub fn run_child(name: &str) -> Output {
    run_child_with(name, &[])
}

/// As [`run_child`], with extra environment variables.
pub fn run_child_with(name: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    // `--include-ignored`: the child runs its test even when it is `#[ignore]`d (the
    // parent then was asked to run it with `--ignored`).
    cmd.args([
        name,
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ])
    .env(CHILD_ENV, name)
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("cannot run the test binary as a child")
}

/// The child's stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
