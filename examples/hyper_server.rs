//! A hello-world HTTP server: hyper 1.x on evloop through `evloop::compat` (feature
//! `hyper`), with keep-alive and a header read timeout on the loop's timers.
//!
//! ```text
//! cargo run --release --features hyper --example hyper_server -- 127.0.0.1:8080
//! curl -s http://127.0.0.1:8080/ http://127.0.0.1:8080/
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port).
//! The first line on stdout is `listening on ADDR`. `benches/hyper_wrk.sh` measures
//! it with `wrk` next to the same server on tokio's current-thread runtime
//! (`peer_tokio_hyper`).

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use evloop::compat::{HyperIo, HyperTimer};
use evloop::net::TcpListener;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

#[evloop::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(addr.as_str()).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(HyperTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    loop {
        let (stream, _) = listener.accept().await?;
        let conn = http.serve_connection(HyperIo::new(stream), hyper::service::service_fn(hello));
        evloop::spawn(async move {
            // A client that hangs up mid-request (wrk at its end) is no error here.
            if let Err(e) = conn.await
                && !e.is_incomplete_message()
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}
