//! A TCP echo server on the callback API: `create_server` and a `Protocol`.
//!
//! ```text
//! cargo run --release --example echo_protocol -- 127.0.0.1:7000
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port).
//! The first line on stdout is `listening on ADDR`.
//!
//! - Each connection gets its own `Echo`, which keeps a clone of its `Transport` and
//!   writes back whatever arrives. The transport sends at once what the socket takes
//!   and buffers the rest.
//! - Backpressure as asyncio's streams do it: when the transport's buffer goes over
//!   its high-water mark the protocol hears `pause_writing` and stops reading
//!   (`pause_reading`) until `resume_writing`; a client that sends without reading
//!   cannot make the server buffer without bound.
//! - A client that shuts down its sending side still gets every byte echoed:
//!   `eof_received` returns false, so the transport closes once its buffer is flushed.
//! - `connection_lost` drops the protocol's transport clone (the transport owns the
//!   protocol, so keeping it would be a reference cycle).

use std::io::{self, Write};

use evloop::Loop;
use evloop::net::{Protocol, Transport};

#[derive(Default)]
struct Echo {
    transport: Option<Transport>,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            t.write(data);
        }
    }

    fn eof_received(&mut self) -> bool {
        false // close once the echo is flushed
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        if let Some(e) = error {
            eprintln!("connection lost: {e}");
        }
        self.transport = None;
    }

    fn pause_writing(&mut self) {
        if let Some(t) = &self.transport {
            t.pause_reading();
        }
    }

    fn resume_writing(&mut self) {
        if let Some(t) = &self.transport {
            t.resume_reading();
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let lp = Loop::new()?;
    let server = lp.run_until_complete(lp.create_server(addr, Echo::default))???;
    println!("listening on {}", server.local_addrs()[0]);
    io::stdout().flush()?;
    lp.run_forever()?;
    Ok(())
}
