//! A minimal HTTP/1.1 server on the callback API: every request gets
//! `Hello, World!`.
//!
//! ```text
//! cargo run --release --example http_hello -- 127.0.0.1:8080
//! curl -s --http1.1 http://127.0.0.1:8080/ http://127.0.0.1:8080/
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port).
//! The first line on stdout is `listening on ADDR`. `benches/http_wrk.sh` measures it
//! with `wrk` next to a tokio server doing the same work (`peer_tokio_http`).
//!
//! - Requests are parsed incrementally: a request split across any number of
//!   `data_received` calls is answered once it is complete.
//! - Keep-alive (HTTP/1.1's default) and pipelining: every complete request in the
//!   buffer is answered, in order, and the responses of one `data_received` go out in
//!   one `write`.
//! - `Connection: close` (or HTTP/1.0 without keep-alive) is honoured: the response
//!   says so and the transport closes once it is flushed. So do malformed requests,
//!   after an error response.
//! - Backpressure: a client that pipelines without reading makes the protocol pause
//!   reading until the responses drain.

#[path = "support/http1.rs"]
mod http1;

use std::io::{self, Write};

use evloop::Loop;
use evloop::net::{Protocol, Transport};

#[derive(Default)]
struct Http {
    transport: Option<Transport>,
    conn: http1::Conn,
    out: Vec<u8>,
}

impl Protocol for Http {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        let Some(t) = &self.transport else { return };
        if self.conn.closing {
            return; // answered `Connection: close`: the rest is ignored
        }
        let close = self.conn.feed(data, &mut self.out);
        if !self.out.is_empty() {
            t.write(&self.out);
            self.out.clear();
        }
        if close {
            t.close();
        }
    }

    fn connection_lost(&mut self, _: Option<io::Error>) {
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
    let server = lp.run_until_complete(lp.create_server(addr, Http::default))???;
    println!("listening on {}", server.local_addrs()[0]);
    io::stdout().flush()?;
    lp.run_forever()?;
    Ok(())
}
