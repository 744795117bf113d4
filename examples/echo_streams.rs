//! A TCP echo server on the task API, in two forms: `TcpListener` / `TcpStream`
//! (one task per connection, the default), or asyncio's streams API,
//! `Loop::start_server` with a `StreamReader` and a `StreamWriter` per connection.
//!
//! ```text
//! cargo run --release --example echo_streams -- 127.0.0.1:7000
//! cargo run --release --example echo_streams -- 127.0.0.1:7000 --start-server
//! cargo run --release --example echo_streams -- 127.0.0.1:7000 --start-server --exactly 64
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port).
//! The first line on stdout is `listening on ADDR`.
//!
//! - **`TcpListener`** (default): each connection's task reads into a buffer and
//!   writes it back with `write_all` before reading again, so backpressure is free: a
//!   client that does not read stops the task in `write_all`, and the task stops
//!   reading. At end of stream the task shuts down its writing side, so the client
//!   reads EOF after the last echoed byte.
//! - **`--start-server`**: the callback's future reads with `read(64 KiB)` and writes
//!   each chunk back with `write` + `drain` (asyncio's idiom: `drain` waits only while
//!   the transport's buffer is over its high-water mark, so a client that does not
//!   read stops the reading too). At EOF it returns; dropping its reader and writer
//!   closes the connection once the echo is flushed.
//! - **`--start-server --exactly N`**: messages of exactly N bytes, read with
//!   `readexactly(N)`: the streams server of `benches/net_echo.sh` (`MODE=streams`),
//!   measured beside `echo_protocol`. A last message cut short by EOF is echoed too.

use std::io::{self, Write};
use std::net::Shutdown;

use evloop::Loop;
use evloop::net::{IncompleteReadError, StreamReader, StreamWriter, TcpListener, TcpStream};

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

/// The `--start-server` echo: `read`, `write`, `drain` until EOF.
async fn echo_chunks(mut reader: StreamReader, writer: StreamWriter) -> io::Result<()> {
    loop {
        let chunk = reader.read(64 * 1024).await?;
        if chunk.is_empty() {
            return Ok(()); // EOF: dropping the reader and writer closes after the flush
        }
        writer.write(&chunk);
        writer.drain().await?;
    }
}

/// The `--exactly N` echo: `readexactly(N)`, `write`, `drain` until EOF.
async fn echo_messages(mut reader: StreamReader, writer: StreamWriter, n: usize) -> io::Result<()> {
    loop {
        match reader.readexactly(n).await {
            Ok(msg) => writer.write(&msg),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                if let Some(cut) = e
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<IncompleteReadError>())
                {
                    writer.write(&cut.partial);
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        writer.drain().await?;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let mut start_server = false;
    let mut exactly = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--start-server" => start_server = true,
            "--exactly" => {
                let n: usize = args.next().ok_or("--exactly needs a size")?.parse()?;
                if n == 0 {
                    return Err("--exactly needs a positive size".into());
                }
                exactly = Some(n);
            }
            _ => return Err(format!("unknown argument {arg}").into()),
        }
    }
    let lp = Loop::new()?;
    if start_server {
        let server =
            lp.run_until_complete(lp.start_server(addr, move |reader, writer| async move {
                let r = match exactly {
                    Some(n) => echo_messages(reader, writer, n).await,
                    None => echo_chunks(reader, writer).await,
                };
                if let Err(e) = r {
                    eprintln!("connection: {e}");
                }
            }))???;
        println!("listening on {}", server.local_addrs()[0]);
        io::stdout().flush()?;
        lp.run_forever()?;
        return Ok(());
    }
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
