//! Subprocesses on the loop: a shell pipeline `printf ... | sort` whose two children
//! are connected *through the loop* (a task copies the first one's stdout into the
//! second one's stdin), then `communicate` and a killed child.
//!
//! ```text
//! cargo run --release --example subprocess
//! ```
//!
//! - `Loop::subprocess_exec` starts a `std::process::Command`; the streams it set to
//!   `Stdio::piped()` become async pipes (`ChildStdin::write_all`,
//!   `ChildStdout::read`, and `futures-io`'s traits).
//! - The copy runs while `sort` is read, so neither child ever blocks on a full
//!   pipe; closing `sort`'s stdin (dropping it) tells it the input is complete.
//! - `wait` reaps each child (no zombie is left); `kill` on a reaped child is
//!   `Err(ESRCH)`, never a signal to a recycled pid.

use std::error::Error;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use evloop::Loop;

fn main() -> Result<(), Box<dyn Error>> {
    let lp = Loop::new()?;
    lp.run_until_complete(pipeline())??;
    lp.run_until_complete(communicate())??;
    lp.run_until_complete(killed())??;
    lp.close()?;
    Ok(())
}

/// `printf 'pear\napple\nfig\n' | sort`, the pipe between them being the loop.
async fn pipeline() -> Result<(), Box<dyn Error>> {
    let lp = Loop::current().expect("inside run_until_complete");
    println!("== pipeline: printf | sort, connected through the loop");

    let mut printf = Command::new("printf");
    printf
        .arg("pear\\napple\\nfig\\nbanana\\ncherry\\n")
        .stdout(Stdio::piped());
    let mut first = lp.subprocess_exec(printf)?;

    let mut sort = Command::new("sort");
    sort.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut second = lp.subprocess_exec(sort)?;
    println!(
        "  started printf (pid {}) and sort (pid {})",
        first.pid(),
        second.pid()
    );

    // The copy: printf's stdout into sort's stdin, chunk by chunk.
    let from = first.stdout.take().expect("piped");
    let into = second.stdin.take().expect("piped");
    let copy = lp.create_task(async move {
        let mut buf = [0u8; 4096];
        let mut copied = 0;
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                break; // printf is done; dropping `into` closes sort's stdin
            }
            into.write_all(&buf[..n]).await?;
            copied += n;
        }
        Ok::<_, std::io::Error>(copied)
    });

    // Meanwhile, read what sort prints once its input is complete.
    let out = second.communicate(None).await?;
    let copied = copy.await.expect("the copy task finished")?;
    let status = first.wait().await?;
    println!("  copied {copied} bytes from printf to sort");
    println!("  printf exited: {status}; sort exited: {}", out.status);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  sorted: {line}");
    }
    Ok(())
}

/// `communicate` writes stdin while it reads stdout and stderr.
async fn communicate() -> Result<(), Box<dyn Error>> {
    let lp = Loop::current().expect("inside run_until_complete");
    println!("\n== communicate: a child that echoes stdin and writes stderr");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "tr a-z A-Z; echo 'done' >&2; exit 3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = lp.subprocess_exec(cmd)?;
    let out = child.communicate(Some(b"hello from the loop\n")).await?;
    print!("  stdout: {}", String::from_utf8_lossy(&out.stdout));
    print!("  stderr: {}", String::from_utf8_lossy(&out.stderr));
    println!("  exit code: {:?}", out.status.code());
    Ok(())
}

/// A child killed while it sleeps, then signalled again after it was reaped.
async fn killed() -> Result<(), Box<dyn Error>> {
    let lp = Loop::current().expect("inside run_until_complete");
    println!("\n== kill: sleep 30, killed after 50 ms");
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let child = lp.subprocess_exec(cmd)?;
    evloop::sleep(Duration::from_millis(50)).await;
    println!("  returncode while running: {:?}", child.returncode());
    child.kill()?;
    let status = child.wait().await?;
    println!("  killed by signal {:?}", status.signal());
    match child.kill() {
        Err(e) => println!("  kill() after the reap: Err({e})"),
        Ok(()) => println!("  kill() after the reap: unexpectedly Ok"),
    }
    Ok(())
}
