//! The tokio peer of `echo_streams` / `echo_protocol`, for `benches/net_echo.sh`: a
//! TCP echo server on tokio's current-thread runtime, one `spawn_local` task per
//! connection on a `LocalSet`, doing what `echo_streams` does (64 KiB read buffer,
//! `write_all` of each read, `TCP_NODELAY` on). Not an evloop example: it exists to
//! put evloop's numbers next to tokio's.
//!
//! ```text
//! cargo run --release --example peer_tokio_echo -- 127.0.0.1:7002
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port).
//! The first line on stdout is `listening on ADDR`.

use std::io::{self, Write};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo(mut stream: TcpStream) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        io::stdout().flush()?;
        loop {
            let (stream, peer) = listener.accept().await?;
            tokio::task::spawn_local(async move {
                if let Err(e) = echo(stream).await {
                    eprintln!("{peer}: {e}");
                }
            });
        }
    })
}
