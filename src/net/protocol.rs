//! The callback-style interfaces: `Protocol` and `DatagramProtocol`.

use std::io;
use std::net::SocketAddr;

use super::{DatagramTransport, Transport};

/// The callbacks of a stream connection (TCP or Unix): asyncio's `Protocol`.
///
/// The loop calls these on its thread, one at a time; `connection_made` first, then
/// any number of `data_received`, at most one `eof_received`, and exactly one
/// `connection_lost` last. Transport methods called from inside a callback never call
/// back into the protocol inline: `connection_lost` comes through `call_soon`, and
/// `pause_writing` / `resume_writing` caused by a write inside a callback come right
/// after that callback returns (a write from anywhere else calls them before it
/// returns; see [`Transport`]'s flow control).
///
/// After `connection_lost` the transport lets go of the protocol: a protocol that
/// keeps a clone of its transport (below) is dropped then, unless something else
/// holds it. A panic in any of these methods is reported to the loop's exception
/// handler and closes the connection; `connection_lost` still comes, once.
///
/// ```
/// use evloop::net::{Protocol, Transport};
/// /// Echoes everything back.
/// struct Echo(Option<Transport>);
/// impl Protocol for Echo {
///     fn connection_made(&mut self, t: &Transport) { self.0 = Some(t.clone()); }
///     fn data_received(&mut self, data: &[u8]) { self.0.as_ref().unwrap().write(data); }
/// }
/// ```
pub trait Protocol {
    /// The connection is up; keep a clone of `transport` to write to it.
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Bytes arrived. The slice is valid for this call only.
    fn data_received(&mut self, data: &[u8]);

    /// The peer closed its writing side. Return `true` to keep the connection open
    /// for writing (half-close); `false` (the default) closes the transport.
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is closed: `None` after a normal close or an abort, the error
    /// otherwise (peer reset, broken pipe, ...). Called exactly once.
    fn connection_lost(&mut self, error: Option<io::Error>) {
        let _ = error;
    }

    /// The transport's write buffer went over its high-water mark: stop writing.
    /// Called by the `write` that crossed the mark, or right after the callback that
    /// made that write returns; [`Transport::is_writing_paused`] is true from the
    /// write on.
    fn pause_writing(&mut self) {}

    /// The write buffer drained to its low-water mark: writing may resume.
    fn resume_writing(&mut self) {}
}

/// The callbacks of a datagram (UDP) endpoint: asyncio's `DatagramProtocol`.
///
/// After `connection_lost` the transport lets go of the protocol. A panic in any of
/// these methods is reported to the loop's exception handler; the endpoint stays open
/// (one bad datagram does not end the others, as in asyncio).
pub trait DatagramProtocol {
    /// The endpoint is ready; keep a clone of `transport` to send with it.
    fn connection_made(&mut self, transport: &DatagramTransport) {
        let _ = transport;
    }

    /// A datagram arrived from `addr`.
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr);

    /// A send or receive failed (for example ICMP port unreachable on a connected
    /// socket). The endpoint stays open.
    fn error_received(&mut self, error: io::Error) {
        log::warn!("evloop: datagram endpoint error: {error}");
    }

    /// The endpoint is closed. Called exactly once.
    fn connection_lost(&mut self, error: Option<io::Error>) {
        let _ = error;
    }
}
