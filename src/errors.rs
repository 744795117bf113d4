//! The loop's own errors, and the context handed to the exception handler.

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::Location;

/// What went wrong when running or driving a [`Loop`](crate::Loop).
///
/// OS failures are carried as [`Error::Io`]; everything else is the loop's own
/// state refusing the call.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The loop has been closed: it can run nothing more.
    Closed,
    /// [`Loop::stop`](crate::Loop::stop) ended the run before the awaited future finished.
    Stopped,
    /// The loop is already running (a re-entrant `run_*` call, `close()` from inside
    /// the loop), or another loop is running on this thread.
    AlreadyRunning,
    /// The operating system refused a call the loop made.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => f.write_str("the event loop is closed"),
            Error::Stopped => f.write_str("the event loop stopped before the future completed"),
            Error::AlreadyRunning => f.write_str(
                "the event loop is running: run calls do not nest, a running loop cannot be \
                 closed, and a thread runs one loop at a time",
            ),
            Error::Io(e) => write!(f, "event loop I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// The result slot was already set: asyncio's `InvalidStateError`.
///
/// Returned by [`Promise::set_result`](crate::Promise::set_result) on a promise that
/// is already done (resolved or cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidState;

impl fmt::Display for InvalidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid state: the result is already set or the promise was cancelled")
    }
}

impl std::error::Error for InvalidState {}

/// The awaited promise was cancelled: asyncio's `CancelledError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// What the exception handler is told: asyncio's exception-handler `context` dict.
///
/// The loop builds one when a callback panics; code may build its own and pass it
/// to [`Loop::call_exception_handler`](crate::Loop::call_exception_handler).
///
/// ```
/// let ctx = evloop::ErrorContext::new("the backend went away");
/// assert_eq!(ctx.message(), "the backend went away");
/// assert!(ctx.panic_message().is_none());
/// ```
#[derive(Debug, Clone)]
pub struct ErrorContext {
    message: String,
    panic_message: Option<String>,
    location: Option<&'static Location<'static>>,
    /// Made by `from_panic`: it reports a caught panic (whatever its payload).
    panicked: bool,
}

impl ErrorContext {
    /// A context carrying only a message.
    pub fn new(message: impl Into<String>) -> Self {
        ErrorContext {
            message: message.into(),
            panic_message: None,
            location: None,
            panicked: false,
        }
    }

    /// What happened, in words.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message of the caught panic, when the payload was a `&str` or a `String`
    /// (what `panic!` produces). `None` when no panic was involved, or for other payloads.
    pub fn panic_message(&self) -> Option<&str> {
        self.panic_message.as_deref()
    }

    /// Where the failing callback or task was scheduled (`call_soon`, `call_later`,
    /// `add_reader`, ... are `#[track_caller]`).
    pub fn location(&self) -> Option<&'static Location<'static>> {
        self.location
    }

    /// Adds where the failing work was scheduled.
    pub(crate) fn with_location(mut self, location: &'static Location<'static>) -> Self {
        self.location = Some(location);
        self
    }

    /// A context for a caught panic: `message` says what was running.
    pub(crate) fn from_panic(message: impl Into<String>, payload: &(dyn Any + Send)) -> Self {
        let mut ctx = ErrorContext::new(message);
        ctx.panic_message = panic_text(payload).map(str::to_owned);
        ctx.panicked = true;
        ctx
    }

    /// Whether it reports a caught panic (even one whose payload is not text).
    pub(crate) fn is_panic(&self) -> bool {
        self.panicked
    }
}

impl fmt::Display for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(p) = &self.panic_message {
            write!(f, ": panicked with '{p}'")?;
        }
        if let Some(loc) = self.location {
            write!(f, " (scheduled at {loc})")?;
        }
        Ok(())
    }
}

/// The text of a panic payload, when it has one.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> Option<&str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Some(s)
    } else {
        payload.downcast_ref::<String>().map(String::as_str)
    }
}

/// The default exception handler: logs the context at error level.
pub(crate) fn default_exception_handler(ctx: &ErrorContext) {
    log::error!("{ctx}");
}
