//! Property test of readers and writers (level-triggered, as asyncio's) against a
//! reference model, on Unix socket pairs.
//!
//! A random program writes chunks of random sizes from a peer, shuts the peer's write
//! side (EOF), adds, replaces and removes a reader and a writer (also from inside
//! their own callbacks) and runs iterations. The reader reads a random number of bytes
//! each time it is called, so it often leaves data unread; the writer writes a random
//! number of bytes each time. The model says, for every iteration, whether each of
//! them must be called: a registered reader exactly once when its socket has unread
//! data or is at EOF (data left unread means "called again at the next poll"), a
//! registered writer exactly once (its socket never fills: the test drains the
//! peer after every iteration). Every byte must arrive once, in order; the calls
//! must be exactly the model's; `remove_reader` / `remove_writer` return whether one
//! was registered; a removed or replaced closure is dropped at once.
//!
//! `PROPTEST_CASES` raises the number of programs for the long form (default 512).

mod util;

#[path = "util/prop.rs"]
mod prop_util;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use evloop::Loop;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

#[derive(Clone, Debug)]
enum Step {
    PeerWrite(u16),
    PeerEof,
    AddReader,
    RemoveReader,
    AddWriter,
    RemoveWriter,
    RunOnce,
}

#[derive(Clone, Debug)]
struct Program {
    /// The reader's `k`th call reads up to `read_sizes[k % len]` bytes.
    read_sizes: Vec<u16>,
    /// The reader removes itself on its `n`th call (counting from 1), if set.
    reader_quits_at: Option<u8>,
    /// The writer's `k`th call writes `write_sizes[k % len]` bytes.
    write_sizes: Vec<u16>,
    writer_quits_at: Option<u8>,
    steps: Vec<Step>,
}

fn program() -> impl Strategy<Value = Program> {
    let step = prop_oneof![
        4 => (1u16..3000).prop_map(Step::PeerWrite),
        1 => Just(Step::PeerEof),
        2 => Just(Step::AddReader),
        1 => Just(Step::RemoveReader),
        1 => Just(Step::AddWriter),
        1 => Just(Step::RemoveWriter),
        6 => Just(Step::RunOnce),
    ];
    (
        prop::collection::vec(1u16..2500, 1..6),
        prop::option::weighted(0.3, 1u8..12),
        prop::collection::vec(0u16..600, 1..6),
        prop::option::weighted(0.3, 1u8..12),
        prop::collection::vec(step, 1..80),
    )
        .prop_map(
            |(read_sizes, reader_quits_at, write_sizes, writer_quits_at, steps)| Program {
                read_sizes,
                reader_quits_at,
                write_sizes,
                writer_quits_at,
                steps,
            },
        )
}

/// Byte `i` of the stream each direction carries.
fn byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8)) as u8
}

fn bytes(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(byte).collect()
}

// ------------------------------------------------------------------ the model

#[derive(Default, Debug)]
struct Model {
    reader: bool,
    writer: bool,
    /// Bytes written by the peer, and read by the reader.
    sent: usize,
    read: usize,
    eof: bool,
    reader_calls: usize,
    writer_calls: usize,
    written: usize,
    /// (iteration, reader called, writer called).
    log: Vec<(usize, bool, bool)>,
}

impl Model {
    fn run_once(&mut self, p: &Program, iteration: usize) {
        let call_reader = self.reader && (self.sent > self.read || self.eof);
        let call_writer = self.writer;
        if call_reader {
            let size = p.read_sizes[self.reader_calls % p.read_sizes.len()] as usize;
            self.read += size.min(self.sent - self.read);
            self.reader_calls += 1;
            if p.reader_quits_at == Some(self.reader_calls as u8) {
                self.reader = false;
            }
        }
        if call_writer {
            self.written += p.write_sizes[self.writer_calls % p.write_sizes.len()] as usize;
            self.writer_calls += 1;
            if p.writer_quits_at == Some(self.writer_calls as u8) {
                self.writer = false;
            }
        }
        self.log.push((iteration, call_reader, call_writer));
    }
}

// ------------------------------------------------------------------ the real loop

#[derive(Default)]
struct Seen {
    /// Calls in the current iteration.
    reader_now: Cell<usize>,
    writer_now: Cell<usize>,
    reader_calls: Cell<usize>,
    writer_calls: Cell<usize>,
    received: RefCell<Vec<u8>>,
    eofs: Cell<usize>,
    written: Cell<usize>,
    /// Reader and writer closures alive.
    readers_alive: Cell<usize>,
    writers_alive: Cell<usize>,
    faults: RefCell<Vec<String>>,
}

/// Counts a closure alive while it exists.
struct Alive(Rc<Seen>, bool);

impl Alive {
    fn new(seen: &Rc<Seen>, reader: bool) -> Alive {
        let c = if reader {
            &seen.readers_alive
        } else {
            &seen.writers_alive
        };
        c.set(c.get() + 1);
        Alive(seen.clone(), reader)
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        let c = if self.1 {
            &self.0.readers_alive
        } else {
            &self.0.writers_alive
        };
        c.set(c.get() - 1);
    }
}

fn add_reader(lp: &Loop, sock: &Rc<UnixStream>, seen: &Rc<Seen>, p: &Program) {
    let (sock, seen2, sizes, quit) = (
        sock.clone(),
        seen.clone(),
        p.read_sizes.clone(),
        p.reader_quits_at,
    );
    let alive = Alive::new(seen, true);
    lp.add_reader(sock.as_raw_fd(), move |lp| {
        let _ = &alive;
        let s = &seen2;
        s.reader_now.set(s.reader_now.get() + 1);
        let k = s.reader_calls.get();
        s.reader_calls.set(k + 1);
        let mut buf = vec![0u8; sizes[k % sizes.len()] as usize];
        match (&*sock).read(&mut buf) {
            Ok(0) => s.eofs.set(s.eofs.get() + 1),
            Ok(n) => s.received.borrow_mut().extend_from_slice(&buf[..n]),
            Err(e) => s
                .faults
                .borrow_mut()
                .push(format!("the reader was called but read fails: {e}")),
        }
        if quit == Some((k + 1) as u8) && !lp.remove_reader(sock.as_raw_fd()) {
            s.faults
                .borrow_mut()
                .push("remove_reader from inside the reader returned false".into());
        }
    })
    .expect("add_reader");
}

fn add_writer(lp: &Loop, sock: &Rc<UnixStream>, seen: &Rc<Seen>, p: &Program) {
    let (sock, seen2, sizes, quit) = (
        sock.clone(),
        seen.clone(),
        p.write_sizes.clone(),
        p.writer_quits_at,
    );
    let alive = Alive::new(seen, false);
    lp.add_writer(sock.as_raw_fd(), move |lp| {
        let _ = &alive;
        let s = &seen2;
        s.writer_now.set(s.writer_now.get() + 1);
        let k = s.writer_calls.get();
        s.writer_calls.set(k + 1);
        let data = bytes(s.written.get(), sizes[k % sizes.len()] as usize);
        match (&*sock).write(&data) {
            Ok(n) if n == data.len() => s.written.set(s.written.get() + n),
            r => s.faults.borrow_mut().push(format!(
                "the writer was called but wrote {r:?} of {} bytes",
                data.len()
            )),
        }
        if quit == Some((k + 1) as u8) && !lp.remove_writer(sock.as_raw_fd()) {
            s.faults
                .borrow_mut()
                .push("remove_writer from inside the writer returned false".into());
        }
    })
    .expect("add_writer");
}

/// Everything the peer end of the writer's socket has now.
fn drain(mut s: &UnixStream, out: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    for _ in 0..10_000 {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => panic!("reading the writer's peer: {e}"),
        }
    }
    panic!("the writer's peer never ran dry");
}

fn check_program(p: &Program) -> Result<(), TestCaseError> {
    let lp = Loop::new().unwrap();
    let panics = Rc::new(RefCell::new(Vec::<String>::new()));
    let p2 = panics.clone();
    lp.set_exception_handler(move |_, ctx| p2.borrow_mut().push(ctx.to_string()));
    let (r_sock, r_peer) = util::socketpair();
    let (w_sock, w_peer) = util::socketpair();
    let (r_sock, w_sock) = (Rc::new(r_sock), Rc::new(w_sock));
    let seen = Rc::new(Seen::default());
    let mut m = Model::default();
    let mut log = Vec::new();
    let mut drained = Vec::new();
    let mut iteration = 0;

    for (i, step) in p.steps.iter().enumerate() {
        match step {
            Step::PeerWrite(n) => {
                if !m.eof {
                    util::send(&r_peer, &bytes(m.sent, *n as usize));
                    m.sent += *n as usize;
                }
            }
            Step::PeerEof => {
                if !m.eof {
                    r_peer.shutdown(Shutdown::Write).unwrap();
                    m.eof = true;
                }
            }
            Step::AddReader => {
                add_reader(&lp, &r_sock, &seen, p);
                m.reader = true;
            }
            Step::RemoveReader => {
                let removed = lp.remove_reader(r_sock.as_raw_fd());
                prop_assert_eq!(removed, m.reader, "step {}: remove_reader", i);
                m.reader = false;
            }
            Step::AddWriter => {
                add_writer(&lp, &w_sock, &seen, p);
                m.writer = true;
            }
            Step::RemoveWriter => {
                let removed = lp.remove_writer(w_sock.as_raw_fd());
                prop_assert_eq!(removed, m.writer, "step {}: remove_writer", i);
                m.writer = false;
            }
            Step::RunOnce => {
                seen.reader_now.set(0);
                seen.writer_now.set(0);
                lp.run_once(Some(Duration::ZERO)).unwrap();
                m.run_once(p, iteration);
                prop_assert!(
                    seen.reader_now.get() <= 1 && seen.writer_now.get() <= 1,
                    "step {}: called more than once in one iteration",
                    i
                );
                log.push((
                    iteration,
                    seen.reader_now.get() == 1,
                    seen.writer_now.get() == 1,
                ));
                iteration += 1;
                drain(&w_peer, &mut drained);
            }
        }
        let faults = seen.faults.borrow();
        prop_assert!(faults.is_empty(), "step {}: {:?}", i, *faults);
        prop_assert_eq!(
            &log,
            &m.log,
            "step {}: (iteration, reader called, writer called) differ from the model",
            i
        );
        prop_assert_eq!(
            seen.received.borrow().len(),
            m.read,
            "step {}: bytes read",
            i
        );
        prop_assert_eq!(seen.written.get(), m.written, "step {}: bytes written", i);
        prop_assert_eq!(
            seen.readers_alive.get(),
            usize::from(m.reader),
            "step {}: reader closures alive (a removed or replaced one is dropped at once)",
            i
        );
        prop_assert_eq!(
            seen.writers_alive.get(),
            usize::from(m.writer),
            "step {}: writer closures alive",
            i
        );
    }
    // Every byte once, in order.
    prop_assert!(*seen.received.borrow() == bytes(0, m.read), "bytes read");
    prop_assert!(drained == bytes(0, m.written), "bytes written");
    prop_assert!(panics.borrow().is_empty(), "{:?}", panics.borrow());
    lp.close().unwrap();
    prop_assert_eq!(seen.readers_alive.get() + seen.writers_alive.get(), 0);
    prop_assert!(
        util::fd_is_open(r_sock.as_raw_fd()),
        "the loop closed our fd"
    );
    Ok(())
}

#[test]
fn readers_and_writers_follow_the_level_triggered_model() {
    let config = prop_util::config(512);
    let mut runner = TestRunner::new(config);
    runner
        .run(&program(), |p| check_program(&p))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A known program: a reader that reads 10 bytes a call is called again at each
/// iteration until the 25 bytes are gone, then once more per iteration for the EOF.
#[test]
fn a_reader_leaving_data_unread_is_called_at_every_poll() {
    use Step::*;
    let p = Program {
        read_sizes: vec![10],
        reader_quits_at: None,
        write_sizes: vec![1],
        writer_quits_at: Some(2),
        steps: vec![
            PeerWrite(25),
            AddReader,
            AddWriter,
            RunOnce,
            RunOnce,
            RunOnce,
            RunOnce,
            PeerEof,
            RunOnce,
            RunOnce,
        ],
    };
    let mut m = Model {
        sent: 25,
        reader: true,
        writer: true,
        ..Model::default()
    };
    for i in 0..4 {
        m.run_once(&p, i);
    }
    m.eof = true;
    m.run_once(&p, 4);
    m.run_once(&p, 5);
    assert_eq!(
        m.log,
        vec![
            (0, true, true),
            (1, true, true),
            (2, true, false),
            (3, false, false),
            (4, true, false),
            (5, true, false),
        ]
    );
    check_program(&p).unwrap();
}
