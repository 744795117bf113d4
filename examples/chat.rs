//! A line-based chat server on the streams API: `start_server`, `readline`, and a
//! `Queue` per client through which every line is broadcast to the other clients.
//!
//! ```text
//! cargo run --release --example chat -- 127.0.0.1:7000
//! nc 127.0.0.1 7000      # in several terminals
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port).
//! The first line on stdout is `listening on ADDR`.
//!
//! The protocol, one line at a time (`\n`-terminated, at most 64 KiB, the reader's
//! default limit):
//! - The server asks `name?`; the client's first line is its name. The server answers
//!   `welcome NAME, K online` and tells the others `* NAME joined`.
//! - Every later line is sent to every other client as `NAME: line`.
//! - A line over the limit is refused (`* line too long`) and the client goes on: a
//!   `LimitOverrunError` from `readline` leaves the reader past that line.
//! - At EOF (or a reset) the others hear `* NAME left`.
//!
//! Each client has two halves: its callback future reads lines and broadcasts them;
//! a writer task takes what others sent from the client's own `Queue` and writes it
//! with `write` + `drain`, so one slow reader never stalls a broadcast (its queue
//! grows instead, and a client more than `BACKLOG` lines behind is disconnected).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::rc::Rc;

use evloop::net::{StreamReader, StreamWriter, Transport};
use evloop::{Loop, Queue};

/// Lines a client may be behind before it is disconnected.
const BACKLOG: usize = 10_000;

/// A message to a client's writer task; `None` ends it.
type Outbox = Queue<Option<Rc<[u8]>>>;

struct Client {
    name: String,
    outbox: Outbox,
    transport: Transport,
}

/// Everyone connected, by id.
#[derive(Default)]
struct Room {
    clients: RefCell<BTreeMap<u64, Client>>,
    next_id: Cell<u64>,
}

impl Room {
    /// Queues `line` for every client but `from`.
    fn broadcast(&self, from: u64, line: &[u8]) {
        let line: Rc<[u8]> = line.into();
        for (&id, c) in self.clients.borrow().iter() {
            if id == from {
                continue;
            }
            if c.outbox.len() >= BACKLOG {
                eprintln!("{} is {BACKLOG} lines behind: disconnected", c.name);
                c.transport.abort();
                continue;
            }
            // Unbounded: never full.
            let _ = c.outbox.put_nowait(Some(line.clone()));
        }
    }
}

/// Writes what the others sent until the outbox says stop (or the peer is gone).
async fn write_outbox(writer: StreamWriter, outbox: Outbox) {
    while let Ok(Some(line)) = outbox.get().await {
        writer.write(&line);
        if writer.drain().await.is_err() {
            break;
        }
    }
}

async fn client(room: Rc<Room>, mut reader: StreamReader, writer: StreamWriter) {
    writer.write(b"name?\n");
    let name = match reader.readline().await {
        Ok(line) if line.ends_with(b"\n") => String::from_utf8_lossy(&line).trim().to_owned(),
        _ => return, // gone before saying who it is
    };
    let id = room.next_id.get();
    room.next_id.set(id + 1);
    let outbox = Outbox::new();
    let transport = writer.transport().clone();
    let online = {
        let mut clients = room.clients.borrow_mut();
        let c = Client {
            name: name.clone(),
            outbox: outbox.clone(),
            transport,
        };
        clients.insert(id, c);
        clients.len()
    };
    writer.write(format!("welcome {name}, {online} online\n").as_bytes());
    room.broadcast(id, format!("* {name} joined\n").as_bytes());
    let writing = evloop::spawn(write_outbox(writer, outbox.clone()));

    let prefix = format!("{name}: ");
    loop {
        match reader.readline().await {
            Ok(line) if line.is_empty() => break, // EOF
            Ok(mut line) => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n'); // the last line, cut by EOF
                }
                let mut msg = prefix.clone().into_bytes();
                msg.extend_from_slice(&line);
                room.broadcast(id, &msg);
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // LimitOverrunError: the long line is gone from the buffer.
                let _ = outbox.put_nowait(Some(Rc::from(&b"* line too long\n"[..])));
            }
            Err(_) => break, // reset
        }
    }
    room.clients.borrow_mut().remove(&id);
    room.broadcast(id, format!("* {name} left\n").as_bytes());
    let _ = outbox.put_nowait(None);
    let _ = writing.await;
    // The reader and the writer are dropped: the connection closes.
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let lp = Loop::new()?;
    let room = Rc::new(Room::default());
    let server = lp.run_until_complete(lp.start_server(addr, move |reader, writer| {
        client(room.clone(), reader, writer)
    }))???;
    println!("listening on {}", server.local_addrs()[0]);
    io::stdout().flush()?;
    lp.run_forever()?;
    Ok(())
}
