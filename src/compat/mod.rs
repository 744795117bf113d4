//! Adapters for third-party async crates, each behind its own feature.
//!
//! - Feature `hyper`: [`HyperIo`], [`HyperExecutor`] and [`HyperTimer`], hyper 1.x's
//!   runtime traits on evloop, so that hyper's HTTP/1 and HTTP/2 servers and clients
//!   run on a loop with nothing else:
//!
//! ```
//! # #[cfg(feature = "hyper")] {
//! use std::time::Duration;
//! use evloop::compat::{HyperExecutor, HyperIo, HyperTimer};
//!
//! evloop::run(async {
//!     let listener = evloop::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let _server = evloop::spawn(async move {
//!         let (stream, _) = listener.accept().await.unwrap();
//!         let service = hyper::service::service_fn(|_req| async {
//!             Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("hello")))
//!         });
//!         hyper::server::conn::http1::Builder::new()
//!             .timer(HyperTimer::new())
//!             .header_read_timeout(Duration::from_secs(5))
//!             .serve_connection(HyperIo::new(stream), service)
//!             .await
//!     });
//!     let stream = evloop::net::TcpStream::connect(addr).await.unwrap();
//!     let (mut sender, conn) =
//!         hyper::client::conn::http1::handshake::<_, String>(HyperIo::new(stream))
//!             .await
//!             .unwrap();
//!     evloop::spawn(conn);
//!     let req = hyper::Request::get("/").body(String::new()).unwrap();
//!     let resp = sender.send_request(req).await.unwrap();
//!     assert_eq!(resp.status(), 200);
//!     let _ = HyperExecutor; // what HTTP/2 builders take to spawn their tasks
//! })
//! .unwrap();
//! # }
//! ```
//!
//! - Feature `futures-task`: `futures::task::LocalSpawn` and `Spawn` for [`Loop`]
//!   and `Spawn` for [`Remote`], so that libraries written against those traits spawn
//!   their tasks on evloop.
//!
//! [`Loop`]: crate::Loop
//! [`Remote`]: crate::Remote

#[cfg(feature = "futures-task")]
mod futures_spawn;
#[cfg(feature = "hyper")]
mod hyper_executor;
#[cfg(feature = "hyper")]
mod hyper_io;
#[cfg(feature = "hyper")]
mod hyper_timer;

#[cfg(feature = "hyper")]
pub use hyper_executor::HyperExecutor;
#[cfg(feature = "hyper")]
pub use hyper_io::HyperIo;
#[cfg(feature = "hyper")]
pub use hyper_timer::{HyperSleep, HyperTimer};
