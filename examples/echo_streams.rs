//! A TCP echo server on the task API: `TcpListener`, `TcpStream`, one task per
//! connection.
//!
//! ```text
//! cargo run --release --example echo_streams -- 127.0.0.1:7000
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port).
//! The first line on stdout is `listening on ADDR`.
//!
//! Each connection's task reads into a buffer and writes it back with `write_all`
//! before reading again, so backpressure is free: a client that does not read stops
//! the task in `write_all`, and the task stops reading. At end of stream the task
//! shuts down its writing side, so the client reads EOF after the last echoed byte.

use std::io::{self, Write};
use std::net::Shutdown;

use evloop::Loop;
use evloop::net::{TcpListener, TcpStream};

async fn echo(stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown(Shutdown::Write);
        }
        stream.write_all(&buf[..n]).await?;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let lp = Loop::new()?;
    lp.run_until_complete(async move {
        let listener = TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        io::stdout().flush()?;
        loop {
            let (stream, peer) = listener.accept().await?;
            evloop::spawn(async move {
                if let Err(e) = echo(stream).await {
                    eprintln!("{peer}: {e}");
                }
            });
        }
    })?
}
