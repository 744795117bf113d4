//! Helpers shared by the integration tests: socket pairs, drop counters, polling an
//! fd, a watchdog so that a broken loop fails a test instead of hanging it, and a
//! capturing `log` logger.
//!
//! Each test file is its own process and uses a subset of these.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use evloop::{Loop, TimerHandle};

/// A connected pair of non-blocking Unix stream sockets.
pub fn socketpair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (a, b)
}

/// Writes all of `data` to a non-blocking socket whose buffer has room.
pub fn send(mut s: &UnixStream, data: &[u8]) {
    s.write_all(data).expect("write to socket");
}

/// Reads whatever is available (up to `max` bytes) from a non-blocking socket:
/// `Ok(0)` at end of file, `Err(WouldBlock)` when nothing is there.
pub fn recv(mut s: &UnixStream, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let n = s.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Counts how many of its tokens have been dropped. `Send + Sync`, so it serves
/// local closures and threadsafe ones alike.
#[derive(Clone, Default)]
pub struct Drops {
    dropped: Arc<AtomicUsize>,
    made: Arc<AtomicUsize>,
}

impl Drops {
    pub fn new() -> Drops {
        Drops::default()
    }

    /// A token to move into a closure: dropping the closure drops the token.
    pub fn token(&self) -> DropToken {
        self.made.fetch_add(1, Ordering::SeqCst);
        DropToken(self.dropped.clone())
    }

    /// How many tokens have been dropped.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }

    /// How many tokens were handed out.
    pub fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    /// How many tokens are still alive.
    pub fn alive(&self) -> usize {
        self.made() - self.dropped()
    }
}

/// Counts one drop on its [`Drops`] when dropped.
pub struct DropToken(Arc<AtomicUsize>);

impl DropToken {
    /// Does nothing; call it inside a closure so that the closure captures the token.
    pub fn hold(&self) {}
}

impl Drop for DropToken {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// An ordered record of events, shared between a test and its callbacks.
#[derive(Clone)]
pub struct Events<T>(Rc<RefCell<Vec<T>>>);

impl<T: Clone> Events<T> {
    pub fn new() -> Events<T> {
        Events(Rc::new(RefCell::new(Vec::new())))
    }

    pub fn push(&self, t: T) {
        self.0.borrow_mut().push(t);
    }

    pub fn get(&self) -> Vec<T> {
        self.0.borrow().clone()
    }

    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

impl<T: Clone> Default for Events<T> {
    fn default() -> Self {
        Events::new()
    }
}

/// A shared counter for callbacks on the loop thread.
#[derive(Clone, Default)]
pub struct Counter(Rc<Cell<usize>>);

impl Counter {
    pub fn new() -> Counter {
        Counter::default()
    }

    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }

    pub fn get(&self) -> usize {
        self.0.get()
    }
}

/// Stops the loop after `after` and records that it had to: a test asserts
/// `!fired()` so that a loop that never stops by itself fails instead of hanging.
pub struct Watchdog {
    fired: Rc<Cell<bool>>,
    timer: TimerHandle,
}

impl Watchdog {
    #[track_caller]
    pub fn new(lp: &Loop, after: Duration) -> Watchdog {
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        let timer = lp.call_later(after, move |lp| {
            f.set(true);
            lp.stop();
        });
        Watchdog { fired, timer }
    }

    pub fn fired(&self) -> bool {
        self.fired.get()
    }

    /// Cancels the watchdog's timer, so that it no longer counts as a deadline.
    pub fn disarm(&self) {
        self.timer.cancel();
    }
}

/// Whether `fd` becomes readable within `timeout` (`libc::poll`, retried on EINTR).
pub fn poll_readable(fd: RawFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd array of length 1 for the whole call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("poll failed: {e}");
        }
        return rc == 1 && pfd.revents & libc::POLLIN != 0;
    }
}

/// Whether `fd` is an open descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; a bad fd yields -1/EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Duplicates `src` onto the fixed descriptor number `target` (closing whatever
/// `target` was) and returns it as an owned fd.
///
/// Tests that need an fd number to be closed and then reused use high, fixed numbers
/// this way: the kernel hands out the lowest free number, so no other test running
/// concurrently in this process can take `target` between our close and our reuse.
pub fn dup_to(src: &impl AsRawFd, target: RawFd) -> OwnedFd {
    // SAFETY: dup2 has no memory preconditions; the result is checked.
    let fd = unsafe { libc::dup2(src.as_raw_fd(), target) };
    assert_eq!(
        fd,
        target,
        "dup2 onto {target}: {}",
        io::Error::last_os_error()
    );
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A unique path in the temp directory; the file is removed when the guard drops.
pub struct TempFile {
    pub path: std::path::PathBuf,
    pub file: std::fs::File,
}

impl TempFile {
    pub fn new(tag: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "evloop-test-{}-{}-{}",
            std::process::id(),
            tag,
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let mut file = std::fs::File::create(&path).expect("create temp file");
        file.write_all(b"some bytes").expect("write temp file");
        TempFile { path, file }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ----- a capturing logger -----

/// One captured log record.
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub level: log::Level,
    pub message: String,
    pub thread: ThreadId,
}

struct CaptureLogger {
    records: Mutex<Vec<LogRecord>>,
}

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let r = LogRecord {
            level: record.level(),
            message: record.args().to_string(),
            thread: thread::current().id(),
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    fn flush(&self) {}
}

fn logger() -> &'static CaptureLogger {
    static LOGGER: OnceLock<&'static CaptureLogger> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static CaptureLogger = Box::leak(Box::new(CaptureLogger {
            records: Mutex::new(Vec::new()),
        }));
        log::set_logger(logger).expect("no other logger in this test process");
        log::set_max_level(log::LevelFilter::Trace);
        logger
    })
}

/// The log records emitted on the current thread from the moment it was created
/// (tests of one file run in one process, on their own threads, and share the logger).
pub struct LogCapture {
    start: usize,
    thread: ThreadId,
}

impl LogCapture {
    /// Installs the capturing logger (once per process) and starts capturing.
    pub fn start() -> LogCapture {
        let logger = logger();
        let start = logger
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        LogCapture {
            start,
            thread: thread::current().id(),
        }
    }

    /// The records logged on this thread since `start`.
    pub fn records(&self) -> Vec<LogRecord> {
        let all = logger().records.lock().unwrap_or_else(|e| e.into_inner());
        all[self.start..]
            .iter()
            .filter(|r| r.thread == self.thread)
            .cloned()
            .collect()
    }

    /// The warnings and errors logged on this thread since `start` (other crates,
    /// mio among them, log at trace level).
    pub fn problems(&self) -> Vec<LogRecord> {
        self.records()
            .into_iter()
            .filter(|r| r.level <= log::Level::Warn)
            .collect()
    }

    /// The messages logged at `level` on this thread since `start`.
    pub fn at(&self, level: log::Level) -> Vec<String> {
        self.records()
            .into_iter()
            .filter(|r| r.level == level)
            .map(|r| r.message)
            .collect()
    }
}
