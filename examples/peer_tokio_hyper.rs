//! The peer of `hyper_server` for `benches/hyper_wrk.sh`: the same hyper hello
//! server (keep-alive, a 10 s header read timeout) on tokio's current-thread
//! runtime, through hyper-util's tokio glue. Not part of evloop: a yardstick.
//!
//! The listen address is the first argument (default `127.0.0.1:0`); the first line
//! on stdout is `listening on ADDR`.

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, World!",
    ))))
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
        println!("listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .keep_alive(true);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true); // as evloop's accepted streams
            let conn =
                http.serve_connection(TokioIo::new(stream), hyper::service::service_fn(hello));
            tokio::spawn(async move {
                // A client that hangs up mid-request (wrk at its end) is no error here.
                if let Err(e) = conn.await
                    && !e.is_incomplete_message()
                {
                    eprintln!("connection error: {e}");
                }
            });
        }
    })
}
