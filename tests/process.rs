//! `Loop::subprocess_exec` and `Process`: piped stdin/stdout/stderr as async streams,
//! `communicate` without deadlocks, exit codes and signals, broken pipes without
//! SIGPIPE, and reaping: no zombie after `wait`, after `kill`, or after the loop
//! closes, with 100 children at once, with pidfds and with the thread fallback.
//!
//! Ported (as behaviour) from CPython's `test_asyncio/test_subprocess.py`
//! (`SubprocessMixin`); each test names its case.

#[path = "util/child.rs"]
mod child;
#[path = "util/process.rs"]
mod process_util;

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::{Loop, Process, sleep};
use process_util::*;

/// `prog args...`, nothing piped.
fn cmd(prog: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    cmd
}

fn exec(cmd: Command) -> Process {
    current().subprocess_exec(cmd).expect("subprocess_exec")
}

/// A deterministic, non-repeating payload.
fn payload(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// test_stdin_stdout: `cat` echoes what is written to its stdin; closing stdin ends
/// it with status 0.
#[test]
fn cat_echoes_stdin_to_stdout() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let mut p = exec(piped(Command::new("cat")));
        let mut stdin = p.stdin.take().unwrap();
        stdin.write_all(b"some data").await.unwrap();
        stdin.close().await.unwrap();
        let stdout = p.stdout.take().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            match stdout.read(&mut buf).await.unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(got, b"some data");
        let status = p.wait().await.unwrap();
        assert_eq!(status.code(), Some(0));
        assert_eq!(p.returncode(), Some(status));
        assert_reaped(p.pid());
    });
}

/// test_communicate: `communicate(input)` feeds `cat` and collects its output.
#[test]
fn communicate_feeds_and_collects() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let mut p = exec(piped(Command::new("cat")));
        let out = p.communicate(Some(b"some data")).await.unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"some data");
        assert_eq!(out.stderr, b"");
        assert!(p.stdin.is_none() && p.stdout.is_none() && p.stderr.is_none());
        assert_reaped(p.pid());
    });
}

/// test_shell / test_subprocess_exitcode: `sh -c 'exit 3'` exits with 3;
/// `returncode` is `None` until the child is reaped.
#[test]
fn exit_code_of_sh_exit_3() {
    let lp = Loop::new().unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exit 3"]);
    let p = lp.subprocess_exec(cmd).unwrap(); // before the loop runs
    assert_eq!(p.returncode(), None);
    assert!(p.stdin.is_none() && p.stdout.is_none() && p.stderr.is_none());
    let status = block_on(&lp, p.wait()).unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(p.returncode().and_then(|s| s.code()), Some(3));
    // Waiting again returns the same status at once.
    assert_eq!(block_on(&lp, p.wait()).unwrap(), status);
}

/// test_kill: `sleep 30` killed ends by SIGKILL; no zombie is left after `wait`;
/// every signal after the reap is `ESRCH` (asyncio's `ProcessLookupError`).
#[test]
fn kill_then_wait_leaves_no_zombie_and_later_signals_are_esrch() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let p = exec(cmd("sleep", &["30"]));
        p.kill().unwrap();
        let status = p.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_reaped(p.pid());
        for r in [
            p.kill(),
            p.terminate(),
            p.send_signal(libc::SIGUSR1),
            p.send_signal(0),
        ] {
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ESRCH));
        }
    });
}

/// test_terminate: `terminate` ends `sleep 30` by SIGTERM.
#[test]
fn terminate_sends_sigterm() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let p = exec(cmd("sleep", &["30"]));
        p.terminate().unwrap();
        assert_eq!(p.wait().await.unwrap().signal(), Some(libc::SIGTERM));
    });
}

/// test_send_signal: once the child says it is running, SIGHUP ends it.
#[test]
fn send_signal_sighup_to_a_running_child() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let p = exec(sh("echo sleeping; exec sleep 30"));
        let mut line = [0u8; 9];
        let stdout = p.stdout.as_ref().unwrap();
        let mut n = 0;
        while n < line.len() {
            n += stdout.read(&mut line[n..]).await.unwrap();
        }
        assert_eq!(&line, b"sleeping\n");
        p.send_signal(libc::SIGHUP).unwrap();
        assert_eq!(p.wait().await.unwrap().signal(), Some(libc::SIGHUP));
        assert_eq!(
            p.send_signal(libc::SIGHUP).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
    });
}

/// A child that ignores SIGTERM outlives `terminate` and still dies of `kill`.
#[test]
fn a_child_that_ignores_sigterm_needs_kill() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let p = exec(sh("trap '' TERM; echo ready; exec sleep 30"));
        let mut ready = [0u8; 6];
        let stdout = p.stdout.as_ref().unwrap();
        let mut n = 0;
        while n < ready.len() {
            n += stdout.read(&mut ready[n..]).await.unwrap();
        }
        p.terminate().unwrap();
        sleep(Duration::from_millis(200)).await;
        assert_eq!(p.returncode(), None, "SIGTERM is ignored");
        p.kill().unwrap();
        assert_eq!(p.wait().await.unwrap().signal(), Some(libc::SIGKILL));
    });
}

/// test_popen_error: a program that does not exist is the `Err` that
/// `Command::spawn` gives (`NotFound`); the loop is fine afterwards.
#[test]
fn a_program_that_does_not_exist_is_not_found() {
    const MISSING: &str = "/nonexistent/evloop-no-such-program";
    let Err(spawn_says) = Command::new(MISSING).spawn() else {
        // (Under valgrind, whose vfork cannot report a failed exec, spawn succeeds.)
        return;
    };
    assert_eq!(spawn_says.kind(), ErrorKind::NotFound);
    let lp = Loop::new().unwrap();
    let err = lp
        .subprocess_exec(piped(Command::new(MISSING)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = lp
        .subprocess_exec_with(
            piped(Command::new("evloop-no-such-program-on-path")),
            NoProtocol,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let mut cmd = Command::new("true");
    cmd.stdin(Stdio::null());
    let p = lp.subprocess_exec(cmd).unwrap();
    assert!(block_on(&lp, p.wait()).unwrap().success());
}

#[derive(Debug)]
struct NoProtocol;
impl evloop::SubprocessProtocol for NoProtocol {}

/// A closed loop refuses to start children.
#[test]
fn a_closed_loop_refuses_to_start_a_child() {
    let lp = Loop::new().unwrap();
    lp.close().unwrap();
    assert!(lp.subprocess_exec(Command::new("true")).is_err());
}

/// Large outputs both ways: 10 MB through `cat` while 10 MB more come on stderr at
/// the same time. `communicate` never deadlocks, and every byte arrives in order.
#[test]
fn communicate_10_mb_in_while_10_mb_come_out_of_both_streams() {
    const N: usize = 10_000_000;
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let input = payload(N);
        let mut p = exec(sh(&format!("head -c {N} /dev/zero >&2 & cat; wait")));
        let out = p.communicate(Some(&input)).await.unwrap();
        assert!(out.status.success(), "{:?}", out.status);
        assert_eq!(out.stdout.len(), N);
        assert!(out.stdout == input, "stdout is the input, byte for byte");
        assert_eq!(out.stderr.len(), N);
        assert!(out.stderr.iter().all(|&b| b == 0));
    });
}

/// test_stdin_broken_pipe: writing to a child that exited without reading is
/// `Err(BrokenPipe)` (the test binary ignores SIGPIPE; the child-process test below
/// checks the default disposition too).
#[test]
fn writing_to_a_child_that_closed_stdin_is_broken_pipe() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let p = exec(piped(Command::new("true")));
        p.wait().await.unwrap();
        let err = p
            .stdin
            .as_ref()
            .unwrap()
            .write_all(&payload(1 << 20))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    });
}

/// The same with SIGPIPE at its default disposition (terminate), in a child
/// process: the write is `Err(BrokenPipe)` and the process lives on.
#[test]
fn a_broken_stdin_raises_no_sigpipe_under_the_default_disposition() {
    const NAME: &str = "a_broken_stdin_raises_no_sigpipe_under_the_default_disposition";
    if child::is_child(NAME) {
        // SAFETY: restoring the default action of SIGPIPE, as a C host would have it.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let lp = Loop::new().unwrap();
        block_on(&lp, async {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "exec 0<&-; echo closed; sleep 1"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            let p = exec(cmd);
            let mut buf = [0u8; 7];
            let stdout = p.stdout.as_ref().unwrap();
            let mut n = 0;
            while n < buf.len() {
                n += stdout.read(&mut buf[n..]).await.unwrap();
            }
            let stdin = p.stdin.as_ref().unwrap();
            for _ in 0..3 {
                let err = stdin.write_all(b"x").await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::BrokenPipe);
            }
            p.kill().unwrap();
            p.wait().await.unwrap();
        });
        println!("still alive");
        return;
    }
    let out = child::run_child(NAME);
    assert!(out.status.success(), "{}", child::describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("still alive"));
}

/// test_communicate_ignore_broken_pipe: `communicate` with input for a child that
/// exits without reading it is not an error.
#[test]
fn communicate_ignores_a_broken_stdin() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let mut p = exec(piped(Command::new("true")));
        let out = p.communicate(Some(&payload(4 << 20))).await.unwrap();
        assert!(out.status.success());
    });
}

/// test_empty_input / test_devnull_input: empty input and `None` both give the
/// child end of input at once.
#[test]
fn empty_input_and_no_input_close_stdin_at_once() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        for input in [Some(&b""[..]), None] {
            let mut p = exec(piped(cmd("wc", &["-c"])));
            let out = p.communicate(input).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
            assert!(out.status.success());
        }
    });
}

/// test_devnull_output / test_devnull_error: streams that are not piped are `None`
/// and come back empty from `communicate`.
#[test]
fn streams_that_are_not_piped_are_none() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let mut cmd = sh("cat; echo err >&2");
        cmd.stdout(Stdio::null());
        let mut p = exec(cmd);
        assert!(p.stdout.is_none());
        let out = p.communicate(Some(b"abc")).await.unwrap();
        assert_eq!(out.stdout, b"");
        assert_eq!(out.stderr, b"err\n");
        let mut cmd = sh("cat; echo err >&2");
        cmd.stderr(Stdio::null());
        let mut p = exec(cmd);
        assert!(p.stderr.is_none());
        let out = p.communicate(Some(b"abc")).await.unwrap();
        assert_eq!(out.stdout, b"abc");
        assert_eq!(out.stderr, b"");
    });
}

/// test_read_stdout_after_process_exit: output the child wrote before it exited
/// is all still readable afterwards, read slowly.
#[test]
fn output_is_readable_after_the_child_exited() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let p = exec(sh("head -c 262144 /dev/zero; exit 1"));
        let stdout = p.stdout.as_ref().unwrap();
        let mut total = 0;
        let mut buf = vec![0u8; 65536];
        loop {
            match stdout.read(&mut buf).await.unwrap() {
                0 => break,
                n => total += n,
            }
            sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(total, 262144);
        assert_eq!(p.wait().await.unwrap().code(), Some(1));
    });
}

/// test_cancel_process_wait: a task waiting on `wait` can be cancelled; the child
/// is still killed and waited for afterwards.
#[test]
fn a_cancelled_wait_leaves_the_process_usable() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let p = Rc::new(exec(cmd("sleep", &["30"])));
        let p2 = p.clone();
        let waiting = current().create_task(async move { p2.wait().await });
        sleep(Duration::from_millis(20)).await;
        assert!(waiting.cancel());
        assert!(matches!(waiting.await, Err(evloop::TaskError::Cancelled)));
        p.kill().unwrap();
        assert_eq!(p.wait().await.unwrap().signal(), Some(libc::SIGKILL));
    });
}

/// `wait` takes `&self`: several tasks may wait, and `kill` races them.
#[test]
fn several_tasks_wait_while_another_kills() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let p = Rc::new(exec(cmd("sleep", &["30"])));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let p = p.clone();
                current().create_task(async move { p.wait().await.unwrap() })
            })
            .collect();
        sleep(Duration::from_millis(10)).await;
        p.kill().unwrap();
        for w in waiters {
            assert_eq!(w.await.unwrap().signal(), Some(libc::SIGKILL));
        }
    });
}

/// A child whose stdout closes early (it closes it itself): the read sees end of
/// file at once while the child still runs, and `wait` then returns its status.
#[test]
fn a_child_that_closes_its_stdout_early() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let p = exec(sh("exec 1>&-; sleep 0.2; exit 4"));
        let mut buf = [0u8; 16];
        assert_eq!(p.stdout.as_ref().unwrap().read(&mut buf).await.unwrap(), 0);
        assert_eq!(
            p.returncode(),
            None,
            "still running after its stdout closed"
        );
        assert_eq!(p.wait().await.unwrap().code(), Some(4));
    });
}

/// We close the child's stdout early, while it writes without end: the child dies of
/// its own SIGPIPE and is reaped; nothing hangs.
#[test]
fn closing_a_childs_stdout_early_ends_a_writer() {
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let mut cmd = Command::new("yes");
        cmd.stdout(Stdio::piped());
        let mut p = exec(cmd);
        let mut buf = [0u8; 4];
        let stdout = p.stdout.take().unwrap();
        stdout.read(&mut buf).await.unwrap();
        drop(stdout);
        let status = p.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}");
    });
}

/// The pipes are `futures-io` streams: `AsyncWrite` into `cat`, `poll_close` to end
/// its input, `AsyncRead` out of it.
#[cfg(feature = "futures-io")]
#[test]
fn the_pipes_are_futures_io_streams() {
    use futures_io::{AsyncRead, AsyncWrite};
    use std::future::poll_fn;
    let lp = Loop::new().unwrap();
    block_on(&lp, async {
        let mut p = exec(piped(Command::new("cat")));
        let mut stdin = p.stdin.take().unwrap();
        let mut data: &[u8] = b"through futures-io";
        while !data.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut stdin).poll_write(cx, data))
                .await
                .unwrap();
            data = &data[n..];
        }
        poll_fn(|cx| Pin::new(&mut stdin).poll_flush(cx))
            .await
            .unwrap();
        poll_fn(|cx| Pin::new(&mut stdin).poll_close(cx))
            .await
            .unwrap();
        let err = poll_fn(|cx| Pin::new(&mut stdin).poll_write(cx, b"more"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe, "closed");
        let mut stdout = p.stdout.take().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match poll_fn(|cx| Pin::new(&mut stdout).poll_read(cx, &mut buf))
                .await
                .unwrap()
            {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(got, b"through futures-io");
        assert!(p.wait().await.unwrap().success());
    });
}

/// 100 children at once, each with its own exit code and output, all waited for
/// concurrently: every status is right and no zombie remains.
#[test]
fn a_hundred_children_at_once() {
    let lp = Loop::new().unwrap();
    let pids = block_on(&lp, async {
        let children: Vec<_> = (0..100)
            .map(|i| {
                let mut cmd = Command::new("sh");
                cmd.args(["-c", &format!("echo {i}; exit {}", i % 7)])
                    .stdout(Stdio::piped());
                exec(cmd)
            })
            .collect();
        let pids: Vec<u32> = children.iter().map(Process::pid).collect();
        let tasks: Vec<_> = children
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| {
                current().create_task(async move {
                    let out = p.communicate(None).await.unwrap();
                    assert_eq!(out.status.code(), Some(i as i32 % 7));
                    assert_eq!(out.stdout, format!("{i}\n").into_bytes());
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        pids
    });
    for pid in pids {
        assert_reaped(pid);
    }
}

/// Dropping a `Process` neither kills nor leaks its child: the loop still reaps
/// it when it exits.
#[test]
fn a_dropped_process_is_still_reaped() {
    let lp = Loop::new().unwrap();
    let mut cmd = Command::new("sleep");
    cmd.arg("0.05");
    let pid = lp.subprocess_exec(cmd).unwrap().pid();
    let deadline = Instant::now() + PATIENCE;
    while child_state(pid).is_some() {
        assert!(Instant::now() < deadline, "child {pid} never reaped");
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }
}

/// A loop closed with children still running leaves them running, and they are
/// reaped in the background when they exit: no zombie. Their `Process`es report no
/// status, `wait` is an error and signals are `ESRCH`.
#[test]
fn children_running_when_the_loop_closes_are_reaped_in_the_background() {
    let lp = Loop::new().unwrap();
    let children: Vec<Process> = (0..5)
        .map(|_| {
            let mut cmd = Command::new("sleep");
            cmd.arg("0.3").stdout(Stdio::piped());
            lp.subprocess_exec(cmd).unwrap()
        })
        .collect();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    lp.close().unwrap();
    let pids: Vec<u32> = children.iter().map(Process::pid).collect();
    for p in &children {
        assert_eq!(
            child_state(p.pid()).map(|s| s != 'Z'),
            Some(true),
            "still running"
        );
        assert_eq!(p.returncode(), None);
        assert_eq!(p.kill().unwrap_err().raw_os_error(), Some(libc::ESRCH));
    }
    let other = Loop::new().unwrap();
    let err = other
        .run_until_complete(children[0].wait())
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("loop closed"), "{err}");
    assert_all_reaped(&pids);
    drop(children);
}

/// The same when the loop is dropped without `close()`.
#[test]
fn children_running_when_the_loop_is_dropped_are_reaped_in_the_background() {
    let lp = Loop::new().unwrap();
    let pids: Vec<u32> = (0..5)
        .map(|_| {
            let mut cmd = Command::new("sleep");
            cmd.arg("0.3");
            lp.subprocess_exec(cmd).unwrap().pid()
        })
        .collect();
    lp.run_once(Some(Duration::ZERO)).unwrap();
    drop(lp);
    assert_all_reaped(&pids);
}

/// Children that exited while the loop was not running are reaped when it runs, or
/// in the background if it is closed first: no zombie either way.
#[test]
fn children_that_exited_before_the_loop_closed_are_reaped_too() {
    let lp = Loop::new().unwrap();
    let pids: Vec<u32> = (0..5)
        .map(|_| lp.subprocess_exec(Command::new("true")).unwrap().pid())
        .collect();
    std::thread::sleep(Duration::from_millis(100)); // they are zombies now
    lp.close().unwrap();
    assert_all_reaped(&pids);
}

/// Nothing reaps a child the loop did not start (no `waitpid(-1)`, no SIGCHLD
/// handler): a `std::process::Child` next to the loop's children keeps its status
/// for its own `wait`.
#[test]
fn other_code_keeps_its_own_children() {
    let lp = Loop::new().unwrap();
    let mut theirs = Command::new("sh").args(["-c", "exit 9"]).spawn().unwrap();
    block_on(&lp, async {
        for _ in 0..5 {
            let p = exec(Command::new("true"));
            p.wait().await.unwrap();
        }
        sleep(Duration::from_millis(50)).await;
    });
    assert_eq!(theirs.wait().unwrap().code(), Some(9));
}

/// Whether this kernel (or valgrind) serves `pidfd_open`.
fn pidfds_work() -> bool {
    // SAFETY: pidfd_open of our own pid only creates an fd, closed right after.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd >= 0 {
        // SAFETY: `fd` was just opened here.
        unsafe { libc::close(fd as i32) };
    }
    fd >= 0
}

/// Pidfds are used where the kernel has them (and valgrind, which lacks the
/// syscall, does not hide them); `EVLOOP_NO_PIDFD=1` forces the fallback, a waiter
/// thread per child (checked by its name in `/proc`).
#[test]
fn the_fallback_watches_each_child_with_a_thread() {
    let lp = Loop::new().unwrap();
    let p = lp.subprocess_exec(cmd("sleep", &["30"])).unwrap();
    let waiter = format!("evloop-child-{}", p.pid());
    let waiter = &waiter[..waiter.len().min(15)]; // comm is cut at 15 bytes
    // A new thread is named by itself once it starts (until then it carries its
    // creator's name): look for a while before deciding.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut has_thread = thread_names().iter().any(|n| n == waiter);
    let expect_thread = std::env::var_os("EVLOOP_NO_PIDFD").is_some() || !pidfds_work();
    while expect_thread && !has_thread && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        has_thread = thread_names().iter().any(|n| n == waiter);
    }
    // SAFETY: pidfd_open of our own pid only creates an fd, closed right after.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd >= 0 {
        // SAFETY: `fd` was just opened here.
        unsafe { libc::close(fd as i32) };
    }
    let fallback = std::env::var_os("EVLOOP_NO_PIDFD").is_some() || fd < 0;
    assert_eq!(has_thread, fallback, "threads: {:?}", thread_names());
    p.kill().unwrap();
    assert_eq!(
        block_on(&lp, p.wait()).unwrap().signal(),
        Some(libc::SIGKILL)
    );
}

/// Every test above again, with the thread fallback instead of pidfds.
#[test]
fn every_test_passes_with_the_thread_fallback() {
    if std::env::var_os("EVLOOP_NO_PIDFD").is_some() {
        return; // this is the re-run
    }
    if std::env::var_os("EVLOOP_UNDER_VALGRIND").is_some() {
        // The re-run would run natively, outside valgrind: nothing to check there.
        eprintln!("skipped under valgrind");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--skip", "every_test_passes_with_the_thread_fallback"])
        .env("EVLOOP_NO_PIDFD", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", child::describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("test result: ok"), "{stdout}");
}
