//! Synchronous flow control, asyncio's "write until paused" pattern: a `write` that
//! takes the buffer over the high-water mark makes `pause_writing` come before any
//! other callback (right after the protocol's own callback returns, when the write
//! was made inside one), and `Transport::is_writing_paused` is true at once. So a
//! protocol that writes while `!is_writing_paused()` in `connection_made`,
//! `data_received` or `resume_writing` never buffers more than the high-water mark
//! plus one chunk, however much it has to send and however long the peer does not
//! read.
//!
//! Behaviour ported from CPython's `test_transports.py`
//! (`test_flowcontrol_mixin_set_write_limits`: the protocol is paused by the write
//! that crosses the mark, before `write` returns) and `test_selector_events.py`
//! (`test_write_buffer` / `_maybe_pause_protocol`).

#[path = "util/net.rs"]
mod net_util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use evloop::Loop;
use evloop::net::{Protocol, Transport};
use net_util::*;

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;
const HIGH: usize = 64 * 1024;

/// The byte at `offset` of a [`Streamer`]'s output.
fn byte_at(offset: usize) -> u8 {
    (offset % 251) as u8
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Flow {
    Made,
    /// A batch of writes made while not paused, from this callback.
    Wrote(&'static str),
    Pause,
    Resume,
    /// A callback scheduled with `call_soon` inside `connection_made`.
    Soon,
    Lost,
}

/// What a [`Streamer`] shares with the test.
#[derive(Default)]
struct Shared {
    events: RefCell<Vec<Flow>>,
    transport: RefCell<Option<Transport>>,
    written: Cell<usize>,
    /// The largest `write_buffer_size` seen after any write.
    max_buffered: Cell<usize>,
    /// `pause_writing` came while `is_writing_paused()` was false (must not).
    pause_not_flagged: Cell<bool>,
}

/// Sends `total` bytes, asyncio's way: write `CHUNK`s while not paused, go on in
/// `resume_writing`. Starts in `connection_made`, or on the first `data_received`.
struct Streamer {
    s: Rc<Shared>,
    total: usize,
    start_on_data: bool,
    started: bool,
}

impl Streamer {
    fn send_more(&mut self, from: &'static str) {
        let s = &self.s;
        let t = s.transport.borrow().clone().unwrap();
        s.events.borrow_mut().push(Flow::Wrote(from));
        while s.written.get() < self.total && !t.is_writing_paused() {
            let at = s.written.get();
            let n = CHUNK.min(self.total - at);
            let chunk: Vec<u8> = (at..at + n).map(byte_at).collect();
            t.write(&chunk);
            s.written.set(at + n);
            s.max_buffered
                .set(s.max_buffered.get().max(t.write_buffer_size()));
        }
    }
}

impl Protocol for Streamer {
    fn connection_made(&mut self, t: &Transport) {
        self.s.events.borrow_mut().push(Flow::Made);
        *self.s.transport.borrow_mut() = Some(t.clone());
        let s = self.s.clone();
        Loop::current()
            .unwrap()
            .call_soon(move |_| s.events.borrow_mut().push(Flow::Soon));
        if !self.start_on_data {
            self.started = true;
            self.send_more("connection_made");
        }
    }

    fn data_received(&mut self, _: &[u8]) {
        if !self.started {
            self.started = true;
            self.send_more("data_received");
        }
    }

    fn pause_writing(&mut self) {
        let t = self.s.transport.borrow().clone().unwrap();
        if !t.is_writing_paused() {
            self.s.pause_not_flagged.set(true);
        }
        self.s.events.borrow_mut().push(Flow::Pause);
    }

    fn resume_writing(&mut self) {
        self.s.events.borrow_mut().push(Flow::Resume);
        self.send_more("resume_writing");
    }

    fn connection_lost(&mut self, _: Option<std::io::Error>) {
        self.s.events.borrow_mut().push(Flow::Lost);
    }
}

/// Serves one [`Streamer`] to a peer that does not read at first; checks the bound
/// while it does not read, then lets it read `read` bytes (everything, if `read`
/// is `total`) and checks every byte.
fn write_until_paused(start_on_data: bool, total: usize, read: usize) {
    let lp = new_loop();
    let shared = Rc::new(Shared::default());
    let s2 = shared.clone();
    let (_server, addr) = tcp_server(&lp, move || Streamer {
        s: s2.clone(),
        total,
        start_on_data,
        started: false,
    });
    let peer = small_window_client(addr);
    if start_on_data {
        std::io::Write::write_all(&mut &peer, b"go").unwrap();
    }
    run_until(&lp, "paused", || {
        shared.events.borrow().contains(&Flow::Pause)
    });
    run_iterations(&lp, 2);
    let first = if start_on_data {
        "data_received"
    } else {
        "connection_made"
    };
    let events = shared.events.borrow().clone();
    let pause_at = events.iter().position(|e| *e == Flow::Pause).unwrap();
    let wrote_at = events
        .iter()
        .position(|e| *e == Flow::Wrote(first))
        .unwrap();
    assert_eq!(
        pause_at,
        wrote_at + 1,
        "pause_writing must come right after the {first} that wrote: {events:?}"
    );
    if !start_on_data {
        // `Soon` was scheduled before the writes: it runs after the pause. (What
        // comes between them depends on the kernel: a socket that drained enough
        // before the next poll resumes the protocol, which writes and pauses again.)
        assert_eq!(
            events[..3],
            [Flow::Made, Flow::Wrote(first), Flow::Pause],
            "pause_writing must come before any other callback"
        );
        let soon_at = events.iter().position(|e| *e == Flow::Soon);
        assert!(
            soon_at.is_some_and(|at| at > pause_at),
            "the callback scheduled before the writes runs after the pause: {events:?}"
        );
    }

    // The peer does not read: the transport stays at the mark.
    run_for(&lp, Duration::from_millis(200));
    let t = shared.transport.borrow().clone().unwrap();
    assert!(t.is_writing_paused());
    assert!(
        shared.max_buffered.get() <= HIGH + CHUNK,
        "the buffer grew to {} bytes against a mark of {HIGH} (+ one {CHUNK}-byte chunk)",
        shared.max_buffered.get()
    );
    assert!(
        shared.written.get() < total / 2,
        "{} of {total} bytes written to a peer that reads nothing",
        shared.written.get()
    );
    assert!(
        !shared.pause_not_flagged.get(),
        "is_writing_paused() false in pause_writing"
    );

    // The peer reads: the bytes arrive in order, and the bound holds throughout.
    let mut got = Vec::new();
    run_until(&lp, "the peer got its share", || {
        drain_into(&peer, &mut got).unwrap();
        got.len() >= read
    });
    let bad = got.iter().enumerate().position(|(i, b)| *b != byte_at(i));
    assert_eq!(bad, None, "the stream differs at this offset");
    assert!(
        shared.max_buffered.get() <= HIGH + CHUNK,
        "the buffer grew to {} bytes while resuming",
        shared.max_buffered.get()
    );
    if read == total {
        assert_eq!(got.len(), total);
        run_until(&lp, "drained", || {
            t.write_buffer_size() == 0 && !t.is_writing_paused()
        });
    }
    let events = shared.events.borrow().clone();
    let flow: Vec<&Flow> = events
        .iter()
        .filter(|e| matches!(e, Flow::Pause | Flow::Resume))
        .collect();
    assert!(flow.len() >= 3, "several pause/resume rounds: {flow:?}");
    for (i, e) in flow.iter().enumerate() {
        let want = if i % 2 == 0 {
            &Flow::Pause
        } else {
            &Flow::Resume
        };
        assert_eq!(*e, want, "pause and resume must alternate: {flow:?}");
    }
    // Every resume_writing that wrote was paused right after, unless it sent the rest.
    let last = events
        .iter()
        .rposition(|e| *e == Flow::Wrote("resume_writing"));
    for (i, w) in events.windows(2).enumerate() {
        if w[0] == Flow::Wrote("resume_writing") && Some(i) != last {
            assert_eq!(
                w[1],
                Flow::Pause,
                "a resume_writing that wrote was not paused: {events:?}"
            );
        }
    }
    assert!(
        !shared.pause_not_flagged.get(),
        "is_writing_paused() false in pause_writing"
    );
}

/// The reviewer's case: 100 MB to send, written in `connection_made` and
/// `resume_writing` while not paused, to a peer that does not read at first.
#[test]
fn write_until_paused_from_connection_made_stays_at_the_mark() {
    write_until_paused(false, 100 * MIB, 8 * MIB);
}

/// The same pattern started from `data_received` (a request, then a long reply).
#[test]
fn write_until_paused_from_data_received_stays_at_the_mark() {
    write_until_paused(true, 8 * MIB, 8 * MIB);
}

/// A write made outside any protocol callback (here the test itself, between
/// iterations) pauses the protocol before it returns; `is_writing_paused` follows
/// the buffer, and is false again once `resume_writing` came.
#[test]
fn a_write_outside_callbacks_pauses_before_it_returns() {
    let lp = new_loop();
    let probes = Probes::new();
    let (_server, addr) = tcp_server(&lp, probes.factory());
    let peer = small_window_client(addr);
    let srv = accepted(&lp, &probes, 1);
    let t = srv.transport();
    assert!(!t.is_writing_paused());
    let mut sent = Vec::new();
    let mut i = 0;
    while !t.is_writing_paused() {
        assert_eq!(srv.count(&Ev::Pause), 0, "paused under the mark");
        let c = payload(CHUNK + i);
        t.write(&c);
        sent.extend_from_slice(&c);
        i += 1;
        assert!(i < 1024, "64 MiB taken by the socket");
    }
    assert!(t.write_buffer_size() > HIGH);
    assert_eq!(
        srv.lifecycle(),
        vec![Ev::Made, Ev::Pause],
        "paused by the write itself"
    );
    let mut got = Vec::new();
    run_until(&lp, "resumed", || {
        drain_into(&peer, &mut got).unwrap();
        srv.count(&Ev::Resume) == 1
    });
    assert!(!t.is_writing_paused());
    assert!(t.write_buffer_size() <= 16 * 1024);
    run_until(&lp, "the peer got everything", || {
        drain_into(&peer, &mut got).unwrap();
        got.len() >= sent.len()
    });
    assert_bytes_eq(&got, &sent, "peer");
}

/// Code outside the loop's callbacks that holds a borrow of the protocol while it
/// writes (a task with the `Rc<RefCell<P>>` from `create_connection`): the protocol
/// cannot be called then, so it hears `pause_writing` from the next iteration;
/// `is_writing_paused` is true at once all the same.
#[test]
fn a_borrowed_protocol_hears_the_pause_on_the_next_iteration() {
    let lp = new_loop();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let probe = Probe::new();
    let (t, p) = block_on(&lp, lp.create_connection(addr, probe.protocol()))
        .unwrap()
        .unwrap();
    let (_peer, _) = l.accept().unwrap();
    {
        let _held = p.borrow_mut();
        buffer_up(&t, MIB);
        assert!(t.is_writing_paused());
        assert_eq!(probe.count(&Ev::Pause), 0, "called while borrowed");
    }
    lp.run_once(Some(Duration::ZERO)).unwrap();
    assert_eq!(probe.lifecycle(), vec![Ev::Made, Ev::Pause]);
    t.abort();
}
