//! Running an example as a process through `cargo run`, under a deadline, so that an
//! example that hangs fails its test instead of hanging it.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Long enough for `cargo run` to build the example first on a loaded machine, and
/// for the example to finish; reaching it means the example hung.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// `cargo run --quiet --example NAME` in this package, in the profile this test was
/// built with.
fn cargo_run(name: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--example", name]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd
}

/// Runs example `name` to completion and checks that it succeeded within
/// [`DEADLINE`]; returns its stdout and stderr. Kills it (and fails) past the deadline.
pub fn run_example(name: &str) -> (String, String) {
    let start = Instant::now();
    let mut child = cargo_run(name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run cargo");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the example") {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) if status.success() => (stdout, stderr),
        Some(status) => panic!(
            "example {name} failed ({status}) after {:.1?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            start.elapsed()
        ),
        None => panic!(
            "example {name} still running after {DEADLINE:?}: killed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ),
    }
}

/// Asserts that `output` contains `needle`, showing the output if not.
pub fn assert_has(output: &str, needle: &str) {
    assert!(
        output.contains(needle),
        "expected {needle:?} in the output:\n{output}"
    );
}
