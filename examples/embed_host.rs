//! evloop inside a foreign main loop: a host that waits on plain `poll(2)`, as a GUI
//! toolkit's main loop does, owning its own fds (here a pipe that a producer thread
//! writes "messages" to) and watching evloop's fd among them.
//!
//! The recipe, one host iteration:
//! 1. wait (`poll`) on the host's fds and [`Loop::as_raw_fd`], with
//!    [`Loop::next_timeout`] as the timeout (capped by the host's own);
//! 2. if evloop's fd is readable or its timeout is up, `lp.run_once(Some(ZERO))`;
//! 3. handle the host's own events, which may schedule evloop work.
//!
//! Nothing waits longer than one host iteration: a callback the host schedules in
//! step 3 runs in the next iteration (evloop's fd is readable at once), a timer runs
//! in the first iteration that wakes after its deadline, and a threadsafe call from
//! another thread wakes the host's `poll` even though the host would otherwise sleep
//! for its whole (long) idle cap. The example checks each of these itself and fails
//! if one does not hold.
//!
//! ```text
//! cargo run --example embed_host
//! ```

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use evloop::Loop;

const ZERO: Option<Duration> = Some(Duration::ZERO);

/// The host's main loop: a pipe of its own (messages, one a line) and an evloop
/// [`Loop`], waited on together with `poll(2)`.
pub struct Host {
    /// The embedded loop.
    pub lp: Loop,
    /// The read end of the host's own pipe.
    pipe: UnixStream,
    /// What came on the pipe but does not make a whole line yet.
    partial: Vec<u8>,
    /// The current host iteration, counted from 1; shared so that evloop callbacks can
    /// note when they ran.
    pub iteration: Rc<Cell<u64>>,
    /// The longest the host sleeps when neither it nor evloop has anything due, as a
    /// toolkit's idle tick.
    pub idle_cap: Duration,
}

/// What one host iteration did.
pub struct Turn {
    /// Which iteration it was.
    pub iteration: u64,
    /// When its wait ended.
    pub woke: Instant,
    /// Whether it ran an evloop iteration.
    pub ran_evloop: bool,
    /// The whole lines that came on the host's pipe, for the host to handle.
    pub messages: Vec<String>,
}

impl Host {
    /// A host reading `pipe` (made non-blocking here) and driving `lp`.
    pub fn new(lp: Loop, pipe: UnixStream) -> io::Result<Host> {
        pipe.set_nonblocking(true)?;
        Ok(Host {
            lp,
            pipe,
            partial: Vec::new(),
            iteration: Rc::new(Cell::new(0)),
            idle_cap: Duration::from_secs(30),
        })
    }

    /// One host iteration: wait, run evloop if it is due, read the host's messages.
    pub fn turn(&mut self) -> io::Result<Turn> {
        let iteration = self.iteration.get() + 1;
        self.iteration.set(iteration);

        // 1. Wait on both, for at most evloop's timeout (the host's own cap if none).
        let wait = self
            .lp
            .next_timeout()
            .map_or(self.idle_cap, |t| t.min(self.idle_cap));
        // Rounded up: a wait cut short to the millisecond would wake before a timer.
        let ms = wait.as_nanos().div_ceil(1_000_000);
        let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
        let mut fds = [
            libc::pollfd {
                fd: self.pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.lp.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds for the whole call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let woke = Instant::now();

        // 2. evloop, if its fd says so or its timeout is up.
        let evloop_ready = rc > 0 && fds[1].revents != 0;
        let ran_evloop = evloop_ready || self.lp.next_timeout() == ZERO;
        if ran_evloop {
            self.lp.run_once(ZERO).map_err(io::Error::other)?;
        }

        // 3. The host's own events.
        let mut messages = Vec::new();
        if rc > 0 && fds[0].revents != 0 {
            let mut buf = [0u8; 512];
            loop {
                match self.pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                messages.push(String::from_utf8_lossy(&line[..end]).into_owned());
            }
        }
        Ok(Turn {
            iteration,
            woke,
            ran_evloop,
            messages,
        })
    }
}

fn main() -> io::Result<()> {
    let (mut to_host, pipe) = UnixStream::pair()?;
    let mut host = Host::new(Loop::new()?, pipe)?;
    let lp = host.lp.clone();
    let start = Instant::now();
    let failures: Rc<RefCell<Vec<String>>> = Rc::default();

    // An evloop timer, 40 ms from now; `due` is read after scheduling, so it is no
    // earlier than the loop's own deadline.
    let delay = Duration::from_millis(40);
    let timer_ran = Rc::new(Cell::new(None));
    let (t, now) = (timer_ran.clone(), host.iteration.clone());
    lp.call_later(delay, move |_| t.set(Some(now.get())));
    let due = Instant::now() + delay;

    // The producer: two messages for the host, then (when the timer has run and
    // nothing is pending, so that the host would sleep its whole 30 s idle cap) a
    // threadsafe call, which tells the host how long after it was sent it ran.
    let remote = lp.remote();
    let (ran_tx, ran_rx) = std::sync::mpsc::channel::<Duration>();
    let producer = thread::spawn(move || -> io::Result<()> {
        to_host.write_all(b"job 1\n")?;
        thread::sleep(Duration::from_millis(10));
        to_host.write_all(b"job 2\n")?;
        thread::sleep(Duration::from_millis(100));
        let sent = Instant::now();
        remote
            .call_soon_threadsafe(move |_| {
                let _ = ran_tx.send(sent.elapsed());
            })
            .map_err(io::Error::other)?;
        Ok(())
    });

    let jobs_ran = Rc::new(Cell::new(0));
    let mut threadsafe_ran = false;
    let mut last_woke: Option<Instant> = None;
    while (jobs_ran.get() < 2 || timer_ran.get().is_none() || !threadsafe_ran)
        && start.elapsed() < Duration::from_secs(20)
    {
        let turn = host.turn()?;
        if let Ok(latency) = ran_rx.try_recv() {
            println!(
                "host iteration {}: evloop ran the threadsafe call",
                turn.iteration
            );
            if latency > Duration::from_secs(5) {
                failures
                    .borrow_mut()
                    .push(format!("the threadsafe call waited {latency:?}"));
            }
            threadsafe_ran = true;
        }
        if timer_ran.get() == Some(turn.iteration) {
            println!("host iteration {}: evloop timer ran", turn.iteration);
            // The first iteration to wake after the deadline runs it.
            if last_woke.is_some_and(|w| w >= due) {
                failures.borrow_mut().push(format!(
                    "iteration {} woke after the timer's deadline and did not run it",
                    turn.iteration - 1
                ));
            }
        }
        last_woke = Some(turn.woke);
        // Handled after evloop's turn: work scheduled here runs in the next iteration.
        for message in turn.messages {
            let scheduled = turn.iteration;
            println!("host iteration {scheduled}: message {message:?}: scheduled on evloop");
            let (now, jobs, failures) =
                (host.iteration.clone(), jobs_ran.clone(), failures.clone());
            lp.call_soon(move |_| {
                let ran = now.get();
                println!("host iteration {ran}: evloop ran {message} (scheduled in {scheduled})");
                if ran != scheduled + 1 {
                    failures.borrow_mut().push(format!(
                        "{message} ran {} iterations late",
                        ran - scheduled - 1
                    ));
                }
                jobs.set(jobs.get() + 1);
            });
        }
    }
    producer.join().expect("producer thread")?;
    if jobs_ran.get() < 2 || timer_ran.get().is_none() || !threadsafe_ran {
        failures
            .borrow_mut()
            .push("not everything was served within 20 s".into());
    }
    let failures = failures.borrow();
    if !failures.is_empty() {
        for f in failures.iter() {
            eprintln!("FAILED: {f}");
        }
        std::process::exit(1);
    }
    println!(
        "served in {} host iterations: 2 jobs, the timer and the threadsafe call; nothing waited longer than one host iteration",
        host.iteration.get()
    );
    Ok(())
}
