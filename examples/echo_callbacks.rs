//! A TCP echo server on `add_reader` / `add_writer` alone: no futures, no tasks.
//!
//! ```text
//! cargo run --release --example echo_callbacks -- 127.0.0.1:7000
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port).
//! The first line on stdout is `listening on ADDR`.
//!
//! How it works, as asyncio's selector transports do it by hand:
//! - The listener is non-blocking; its reader accepts until `WouldBlock`.
//! - Each connection is an `Rc<RefCell<Conn>>` shared by its reader and writer
//!   callbacks. The reader echoes what it reads with a direct `write`; whatever the
//!   socket does not take is buffered, and a writer drains the buffer and removes
//!   itself once it is empty.
//! - Backpressure: while more than `HIGH_WATER` bytes wait to be sent, the reader is
//!   removed, so a client that sends without reading cannot make the server buffer
//!   without bound; it is added again once the buffer has drained below `LOW_WATER`.
//! - End of stream: a client that shuts down its sending side still gets every byte
//!   echoed, then the server closes. Errors close at once. Closing removes the reader
//!   and writer first; the socket is closed when the last callback holding the
//!   connection is dropped, after it has left the loop.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use evloop::Loop;

/// Stop reading from a client while this much echo waits to be sent...
const HIGH_WATER: usize = 1 << 20;
/// ...and read again once the backlog is below this.
const LOW_WATER: usize = 64 << 10;
/// How much one reader call reads at most.
const READ_CHUNK: usize = 64 << 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    let lp = Loop::new()?;
    let listen_fd = listener.as_raw_fd();
    lp.add_reader(listen_fd, move |lp| accept_all(lp, &listener))?;
    lp.run_forever()?;
    Ok(())
}

/// The listener's reader: accepts every pending connection.
fn accept_all(lp: &Loop, listener: &TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = serve(lp, stream, peer) {
                    eprintln!("cannot serve {peer}: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(e) => {
                // EMFILE and the like: try again on the next iteration.
                eprintln!("accept failed: {e}");
                return;
            }
        }
    }
}

/// One client connection. Its reader and writer callbacks each hold an `Rc` to it;
/// when both are removed the connection, and its socket, are dropped.
struct Conn {
    stream: TcpStream,
    fd: RawFd,
    peer: SocketAddr,
    /// Echo not yet accepted by the socket.
    backlog: VecDeque<u8>,
    /// Whether the reader is registered.
    reading: bool,
    /// Whether the writer is registered.
    writing: bool,
    /// The client has shut down its sending side.
    eof: bool,
    /// Bytes echoed so far.
    echoed: u64,
}

type Shared = Rc<RefCell<Conn>>;

fn serve(lp: &Loop, stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    let conn = Rc::new(RefCell::new(Conn {
        fd: stream.as_raw_fd(),
        stream,
        peer,
        backlog: VecDeque::new(),
        reading: false,
        writing: false,
        eof: false,
        echoed: 0,
    }));
    start_reading(lp, &conn)?;
    println!("accepted {peer}");
    Ok(())
}

fn start_reading(lp: &Loop, conn: &Shared) -> io::Result<()> {
    let fd = conn.borrow().fd;
    let c = conn.clone();
    lp.add_reader(fd, move |lp| on_readable(lp, &c))?;
    conn.borrow_mut().reading = true;
    Ok(())
}

fn start_writing(lp: &Loop, conn: &Shared) -> io::Result<()> {
    let fd = conn.borrow().fd;
    let c = conn.clone();
    lp.add_writer(fd, move |lp| on_writable(lp, &c))?;
    conn.borrow_mut().writing = true;
    Ok(())
}

/// The connection's reader: read a chunk and echo it.
fn on_readable(lp: &Loop, conn: &Shared) {
    let mut buf = [0u8; READ_CHUNK];
    let read = conn.borrow_mut().stream.read(&mut buf);
    match read {
        Ok(0) => {
            let mut c = conn.borrow_mut();
            c.eof = true;
            c.reading = false;
            lp.remove_reader(c.fd);
            let flushed = c.backlog.is_empty();
            drop(c);
            if flushed {
                close(lp, conn, None);
            } // else the writer closes once the backlog is sent
        }
        Ok(n) => {
            if let Err(e) = echo(lp, conn, &buf[..n]) {
                close(lp, conn, Some(e));
            }
        }
        Err(e) if is_transient(&e) => {}
        Err(e) => close(lp, conn, Some(e)),
    }
}

/// Sends `data` back: straight to the socket when nothing is queued, else (and for
/// whatever the socket does not take) into the backlog, drained by the writer.
fn echo(lp: &Loop, conn: &Shared, data: &[u8]) -> io::Result<()> {
    let mut c = conn.borrow_mut();
    let mut sent = 0;
    if c.backlog.is_empty() {
        sent = match c.stream.write(data) {
            Ok(n) => n,
            Err(e) if is_transient(&e) => 0,
            Err(e) => return Err(e),
        };
        c.echoed += sent as u64;
    }
    if sent == data.len() {
        return Ok(());
    }
    c.backlog.extend(&data[sent..]);
    let (writing, pause) = (c.writing, c.reading && c.backlog.len() > HIGH_WATER);
    if pause {
        c.reading = false;
        lp.remove_reader(c.fd);
    }
    drop(c);
    if !writing {
        start_writing(lp, conn)?;
    }
    Ok(())
}

/// The connection's writer: drain the backlog, then remove itself.
fn on_writable(lp: &Loop, conn: &Shared) {
    let mut c = conn.borrow_mut();
    while !c.backlog.is_empty() {
        let c = &mut *c;
        let (front, _) = c.backlog.as_slices();
        match c.stream.write(front) {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::WriteZero, "the socket took nothing");
                return close_borrowed(lp, c, Some(e));
            }
            Ok(n) => {
                c.backlog.drain(..n);
                c.echoed += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return close_borrowed(lp, c, Some(e)),
        }
    }
    if c.backlog.is_empty() {
        c.writing = false;
        lp.remove_writer(c.fd);
        if c.eof {
            return close_borrowed(lp, &mut c, None);
        }
    }
    let resume = !c.reading && !c.eof && c.backlog.len() < LOW_WATER;
    drop(c);
    if resume && let Err(e) = start_reading(lp, conn) {
        close(lp, conn, Some(e));
    }
}

fn close(lp: &Loop, conn: &Shared, error: Option<io::Error>) {
    close_borrowed(lp, &mut conn.borrow_mut(), error);
}

/// Takes the connection off the loop. Its socket is closed when the last callback
/// holding it is dropped, which happens only after it has been removed.
fn close_borrowed(lp: &Loop, c: &mut Conn, error: Option<io::Error>) {
    lp.remove_reader(c.fd);
    lp.remove_writer(c.fd);
    c.reading = false;
    c.writing = false;
    c.backlog = VecDeque::new();
    match error {
        None => println!("closed {}: echoed {} bytes", c.peer, c.echoed),
        Some(e) => println!(
            "closed {} on error ({e}): echoed {} bytes",
            c.peer, c.echoed
        ),
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
