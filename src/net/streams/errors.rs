//! The typed payloads of the `io::Error`s that stream reads fail with.

use std::error::Error;
use std::fmt;

/// EOF came before a read could complete: asyncio's `IncompleteReadError`.
///
/// Carried by an `io::Error` of kind `UnexpectedEof`, from
/// [`readexactly`](super::StreamReader::readexactly) (`expected` is the count asked
/// for) and [`readuntil`](super::StreamReader::readuntil) (`expected` is `None`). The
/// bytes read before EOF are in `partial`; they have left the reader's buffer. Take
/// them with a downcast:
///
/// ```
/// # use std::io;
/// use evloop::net::IncompleteReadError;
/// fn partial(e: io::Error) -> Option<Vec<u8>> {
///     let inner = e.into_inner()?;
///     Some(inner.downcast::<IncompleteReadError>().ok()?.partial)
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteReadError {
    /// What was read before EOF.
    pub partial: Vec<u8>,
    /// How many bytes were asked for (`None`: reading up to a separator).
    pub expected: Option<usize>,
}

impl fmt::Display for IncompleteReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expected {
            Some(n) => write!(
                f,
                "{} bytes read on a total of {n} expected bytes",
                self.partial.len()
            ),
            None => write!(
                f,
                "{} bytes read on a total of undefined expected bytes",
                self.partial.len()
            ),
        }
    }
}

impl Error for IncompleteReadError {}

/// A line or chunk ran past the reader's limit: asyncio's `LimitOverrunError`.
///
/// Carried by an `io::Error` of kind `InvalidData`, from
/// [`readuntil`](super::StreamReader::readuntil) and
/// [`readline`](super::StreamReader::readline) (where asyncio raises a `ValueError`
/// made from it). `consumed` is how many bytes the overrun covers (where the
/// separator starts, if it was found). What is left in the buffer is said by each
/// method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOverrunError {
    /// Bytes to consume to get past the overrun (asyncio's `consumed`).
    pub consumed: usize,
    /// Whether the separator was found (past the limit).
    found: bool,
}

impl LimitOverrunError {
    pub(super) fn new(consumed: usize, found: bool) -> Self {
        LimitOverrunError { consumed, found }
    }

    /// Whether the separator was found (beyond the limit), as opposed to not found
    /// within it.
    pub fn separator_found(&self) -> bool {
        self.found
    }
}

impl fmt::Display for LimitOverrunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.found {
            f.write_str("separator is found, but chunk is longer than limit")
        } else {
            f.write_str("separator is not found, and chunk exceeds the limit")
        }
    }
}

impl Error for LimitOverrunError {}
