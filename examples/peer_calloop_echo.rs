//! The calloop peer of `echo_protocol`, for `benches/net_echo.sh`: a TCP echo server
//! on calloop, one edge-triggered `Generic` source per connection whose callback
//! reads and writes back at once, keeping what the socket does not take until it is
//! writable again (and reading nothing meanwhile). Not an evloop example: it exists to
//! put evloop's numbers next to calloop's.
//!
//! ```text
//! cargo run --release --example peer_calloop_echo -- 127.0.0.1:7003
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port).
//! The first line on stdout is `listening on ADDR`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

use calloop::generic::Generic;
use calloop::{EventLoop, Interest, LoopHandle, Mode, PostAction};

struct Conn {
    buf: Vec<u8>,
    /// Read but not yet written: `pending[start..]`.
    pending: Vec<u8>,
    start: usize,
}

impl Conn {
    /// Flushes what is pending, then reads and echoes until `WouldBlock` or until the
    /// socket stops taking writes (edge-triggered: a writable edge comes back here).
    /// `Ok(false)` once the connection is over.
    fn on_event(&mut self, mut s: &TcpStream) -> io::Result<bool> {
        while self.start < self.pending.len() {
            match s.write(&self.pending[self.start..]) {
                Ok(n) => self.start += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pending.clear();
        self.start = 0;
        loop {
            let n = match s.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut written = 0;
            while written < n {
                match s.write(&self.buf[written..n]) {
                    Ok(k) => written += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Wait for a writable edge; reading resumes after the flush.
                        self.pending.extend_from_slice(&self.buf[written..n]);
                        return Ok(true);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

fn add_conn(handle: &LoopHandle<'static, ()>, stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        buf: vec![0u8; 64 * 1024],
        pending: Vec::new(),
        start: 0,
    };
    handle
        .insert_source(
            Generic::new(stream, Interest::BOTH, Mode::Edge),
            move |_, stream, _| match conn.on_event(stream) {
                Ok(true) => Ok(PostAction::Continue),
                Ok(false) => Ok(PostAction::Remove),
                Err(e) => {
                    eprintln!("connection lost: {e}");
                    Ok(PostAction::Remove)
                }
            },
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let mut event_loop: EventLoop<'static, ()> = EventLoop::try_new()?;
    let handle = event_loop.handle();
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    let conn_handle = handle.clone();
    handle
        .insert_source(
            Generic::new(listener, Interest::READ, Mode::Level),
            move |_, listener, _| {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => add_conn(&conn_handle, stream)?,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            eprintln!("accept: {e}");
                            break;
                        }
                    }
                }
                Ok(PostAction::Continue)
            },
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
    event_loop.run(None, &mut (), |_| {})?;
    Ok(())
}
