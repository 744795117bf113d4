//! `Registration`: what the loop's source table holds for a socket of the networking
//! layer (a transport, a datagram endpoint, a server's listener).
//!
//! The loop lets go of a source in three ways: the source deregisters itself (its
//! connection ended), the loop closes (`loop_closed` first, then the entry is
//! dropped), or the loop is dropped without `close()` (the entry is just dropped,
//! with no loop left to pass to anyone). The last one must still end the source's
//! lifetime, or a protocol that keeps its transport (the documented idiom) would keep
//! both alive forever. So the entry is this wrapper, whose `Drop` tells the source
//! that the loop forgot it; a source that has already ended ignores that.

use std::rc::Rc;

use crate::Loop;
use crate::source::{Readiness, SourceHandler};

/// A source of the networking layer, as the loop's table sees it.
pub(crate) trait NetSource: SourceHandler {
    /// The loop no longer holds this source. If the source has not ended (it was not
    /// deregistered, nor told `loop_closed`), the loop was dropped without being
    /// closed: end it now, without a loop (close the socket, let go of the protocol).
    fn forgotten(&self);
}

/// The entry registered for a [`NetSource`]; forwards its events.
pub(crate) struct Registration<S: NetSource>(pub(crate) Rc<S>);

impl<S: NetSource + 'static> Registration<S> {
    /// The handler to pass to `Loop::register_source`.
    pub(crate) fn handler(source: &Rc<S>) -> Rc<dyn SourceHandler> {
        Rc::new(Registration(source.clone()))
    }
}

impl<S: NetSource> SourceHandler for Registration<S> {
    fn ready(&self, lp: &Loop, readiness: Readiness) {
        self.0.ready(lp, readiness);
    }

    fn loop_closed(&self, lp: &Loop) {
        self.0.loop_closed(lp);
    }
}

impl<S: NetSource> Drop for Registration<S> {
    fn drop(&mut self) {
        self.0.forgotten();
    }
}
