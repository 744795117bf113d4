//! What a queue's operations fail with: [`QueueShutDown`] for the waiting
//! `get()` / `put()`, [`TryGetError`] and [`TryPutError`] for `get_nowait()` /
//! `put_nowait()`. An item that was not put is always handed back.

use std::error::Error;
use std::fmt;

/// The queue was shut down ([`Queue::shutdown`](super::Queue::shutdown); asyncio's
/// `QueueShutDown`). From `put(item)` it holds the item that was not put; from
/// `get()` it holds `()`: the queue is shut down and has no item left for this
/// getter.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueShutDown<T = ()>(pub T);

impl<T> QueueShutDown<T> {
    /// The item that was not put (`()` for a refused `get()`).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for QueueShutDown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QueueShutDown").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for QueueShutDown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue is shut down")
    }
}

impl<T> Error for QueueShutDown<T> {}

/// Why `get_nowait()` returned no item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryGetError {
    /// No item is there for a newcomer: the queue is empty, or its items are promised
    /// to woken getters (asyncio's `QueueEmpty`).
    Empty,
    /// The queue is shut down and no item is left for a newcomer (asyncio's
    /// `QueueShutDown`).
    ShutDown,
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryGetError::Empty => "queue is empty",
            TryGetError::ShutDown => "queue is shut down",
        })
    }
}

impl Error for TryGetError {}

/// Why `put_nowait(item)` did not put the item; both hold it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TryPutError<T> {
    /// No slot is free for a newcomer: the queue is full, or its free slots are
    /// promised to woken putters (asyncio's `QueueFull`).
    Full(T),
    /// The queue is shut down (asyncio's `QueueShutDown`).
    ShutDown(T),
}

impl<T> TryPutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            TryPutError::Full(item) | TryPutError::ShutDown(item) => item,
        }
    }

    /// Whether the queue was full (rather than shut down).
    pub fn is_full(&self) -> bool {
        matches!(self, TryPutError::Full(_))
    }

    /// Whether the queue was shut down.
    pub fn is_shut_down(&self) -> bool {
        matches!(self, TryPutError::ShutDown(_))
    }
}

impl<T> fmt::Debug for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            TryPutError::Full(_) => "Full",
            TryPutError::ShutDown(_) => "ShutDown",
        };
        f.debug_tuple(name).finish_non_exhaustive()
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryPutError::Full(_) => "queue is full",
            TryPutError::ShutDown(_) => "queue is shut down",
        })
    }
}

impl<T> Error for TryPutError<T> {}

impl<T> From<QueueShutDown<T>> for TryPutError<T> {
    fn from(e: QueueShutDown<T>) -> Self {
        TryPutError::ShutDown(e.0)
    }
}
