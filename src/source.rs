//! Edge-triggered sources: sockets the library owns, registered through `mio::Registry`.
//!
//! Unlike user fds (level-triggered, in `io.rs`), a library-owned socket is registered
//! once for the interests it will ever need, and reports *edges*: its handler must
//! read (or write) until `WouldBlock` before it can expect another event, the mio way.
//! Events reach the handler from the run phase, as any callback, with the readiness
//! bits the poll reported.

use std::panic::Location;
use std::rc::Rc;

use crate::Loop;

/// What a poll reported for a source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Readiness(u8);

impl Readiness {
    pub(crate) const READABLE: u8 = 1;
    pub(crate) const WRITABLE: u8 = 2;
    pub(crate) const READ_CLOSED: u8 = 4;
    pub(crate) const WRITE_CLOSED: u8 = 8;
    pub(crate) const ERROR: u8 = 16;

    pub(crate) fn from_event(ev: &mio::event::Event) -> Readiness {
        let mut r = 0;
        if ev.is_readable() || ev.is_priority() {
            r |= Self::READABLE;
        }
        if ev.is_writable() {
            r |= Self::WRITABLE;
        }
        if ev.is_read_closed() {
            r |= Self::READ_CLOSED;
        }
        if ev.is_write_closed() {
            r |= Self::WRITE_CLOSED;
        }
        if ev.is_error() {
            r |= Self::ERROR;
        }
        Readiness(r)
    }

    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    pub(crate) fn from_bits(bits: u8) -> Readiness {
        Readiness(bits)
    }

    /// Worth trying a read: readable, or an EOF/error for the read to report.
    pub(crate) fn is_readable(self) -> bool {
        self.0 & (Self::READABLE | Self::READ_CLOSED | Self::ERROR) != 0
    }

    /// Worth trying a write: writable, or an error for the write to report.
    pub(crate) fn is_writable(self) -> bool {
        self.0 & (Self::WRITABLE | Self::WRITE_CLOSED | Self::ERROR) != 0
    }
}

/// Receives a source's events, on the loop thread, from the run phase.
pub(crate) trait SourceHandler {
    fn ready(&self, lp: &Loop, readiness: Readiness);

    /// The loop is closing and forgets the source: let go of the socket.
    fn loop_closed(&self, lp: &Loop) {
        let _ = lp;
    }
}

/// Names a registered source: its slot and generation. Events for an id whose
/// generation no longer matches (the source was deregistered, its slot reused) are
/// dropped.
pub(crate) type SourceId = crate::token::Token;

/// Marks a token's low word as a source's (user fd registrations never set it).
pub(crate) const SOURCE_BIT: u32 = 1 << 31;

pub(crate) struct SourceEntry {
    pub(crate) generation: u32,
    pub(crate) handler: Rc<dyn SourceHandler>,
    pub(crate) location: &'static Location<'static>,
}

/// A bare fd as a library source, for fds an upper layer owns itself (a signal
/// wake-up eventfd, a pidfd): `mio`'s `SourceFd` plus the fd number, which
/// `register_source` needs to evict a stale user entry of the same number.
pub(crate) struct FdSource(pub(crate) std::os::fd::RawFd);

impl std::os::fd::AsRawFd for FdSource {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

impl mio::event::Source for FdSource {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> std::io::Result<()> {
        mio::unix::SourceFd(&self.0).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> std::io::Result<()> {
        mio::unix::SourceFd(&self.0).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        mio::unix::SourceFd(&self.0).deregister(registry)
    }
}
