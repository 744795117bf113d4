//! hyper 1.x on evloop through `evloop::compat` (feature `hyper`): HTTP/1 and HTTP/2
//! servers and clients, `header_read_timeout` on the loop's timers, and the
//! `Send + Sync` sleeps of `HyperTimer`.

#[path = "util/net.rs"]
mod net_util;

use futures::FutureExt;
use std::cell::Cell;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use evloop::compat::{HyperExecutor, HyperIo, HyperSleep, HyperTimer};
use evloop::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use evloop::{Clock, Loop};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::rt::Timer;
use hyper::{Request, Response};
use net_util::{PATIENCE, SockPath, block_on, new_loop};

/// Echoes the request: method, path and body.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let head = format!("{} {} ", req.method(), req.uri().path());
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    Ok(Response::new(Full::new(Bytes::from(out))))
}

/// An HTTP/1 server on `listener`, one task per connection, with keep-alive and a
/// header read timeout on the loop's timers.
fn serve_http1(listener: TcpListener, header_timeout: Duration) -> evloop::Task<()> {
    evloop::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            evloop::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(HyperTimer::new())
                    .header_read_timeout(header_timeout)
                    .keep_alive(true)
                    .serve_connection(HyperIo::new(stream), hyper::service::service_fn(echo))
                    .await;
            });
        }
    })
}

async fn body_text(resp: Response<Incoming>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn http1_server_and_client_keep_one_connection_alive_for_several_requests() {
    let lp = new_loop();
    block_on(&lp, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _server = serve_http1(listener, Duration::from_secs(30));

        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
            .await
            .unwrap();
        let conn = evloop::spawn(conn);
        for i in 0..5 {
            let req = Request::post(format!("/n/{i}"))
                .body(Full::new(Bytes::from(vec![b'x'; i * 1000])))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let text = body_text(resp).await;
            assert_eq!(text, format!("POST /n/{i} {}", "x".repeat(i * 1000)));
        }
        // A big body, more than the socket buffers hold: both sides stream it.
        let big = vec![b'y'; 3 << 20];
        let req = Request::put("/big")
            .body(Full::new(Bytes::from(big)))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(body_text(resp).await.len(), "PUT /big ".len() + (3 << 20));
        drop(sender);
        conn.await.unwrap().unwrap(); // the client connection ends cleanly
    });
}

#[test]
fn http1_over_a_unix_socket() {
    let lp = new_loop();
    let path = SockPath::new("hyper");
    block_on(&lp, async {
        let listener = UnixListener::bind(&path).unwrap();
        let _server = evloop::spawn(async move {
            let stream = listener.accept().await.unwrap();
            hyper::server::conn::http1::Builder::new()
                .serve_connection(HyperIo::new(stream), hyper::service::service_fn(echo))
                .await
                .unwrap();
        });
        let stream = UnixStream::connect(&path).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
            .await
            .unwrap();
        evloop::spawn(conn);
        let req = Request::get("/unix").body(Full::new(Bytes::new())).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(body_text(resp).await, "GET /unix ");
    });
}

/// hyper's `header_read_timeout` sleeps on `HyperTimer`: a client that sends half a
/// request head is disconnected after the timeout, not before.
#[test]
fn header_read_timeout_closes_a_connection_that_stalls_in_its_head() {
    let lp = new_loop();
    let timeout = Duration::from_millis(200);
    let addr = block_on(&lp, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(serve_http1(listener, timeout)); // detached: keeps serving
        addr
    });
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let start = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap(); // no blank line
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        (start.elapsed(), r.map(|_| buf))
    });
    net_util::run_until(&lp, "the stalled client to be disconnected", || {
        client.is_finished()
    });
    let (elapsed, r) = client.join().unwrap();
    assert!(r.is_ok(), "the server closed the connection: {r:?}");
    assert!(
        elapsed >= timeout,
        "closed after {elapsed:?}, before the {timeout:?} timeout"
    );
    assert!(elapsed < PATIENCE);
}

/// HTTP/2 needs an executor for its streams: `HyperExecutor` spawns them as tasks.
#[test]
fn http2_server_and_client_run_concurrent_streams_through_hyper_executor() {
    let lp = new_loop();
    block_on(&lp, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _server = evloop::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            hyper::server::conn::http2::Builder::new(HyperExecutor)
                .timer(HyperTimer::new())
                .serve_connection(HyperIo::new(stream), hyper::service::service_fn(echo))
                .await
                .unwrap();
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::Builder::new(HyperExecutor)
            .timer(HyperTimer::new())
            .handshake(HyperIo::new(stream))
            .await
            .unwrap();
        evloop::spawn(conn);
        let requests: Vec<_> = (0..10)
            .map(|i| {
                let mut sender = sender.clone();
                evloop::spawn(async move {
                    let req = Request::post(format!("/h2/{i}"))
                        .body(Full::new(Bytes::from(format!("body{i}"))))
                        .unwrap();
                    let resp = sender.send_request(req).await.unwrap();
                    assert_eq!(resp.version(), hyper::Version::HTTP_2);
                    body_text(resp).await
                })
            })
            .collect();
        for (i, r) in requests.into_iter().enumerate() {
            assert_eq!(r.await.unwrap(), format!("POST /h2/{i} body{i}"));
        }
    });
}

fn assert_send_sync<T: Send + Sync>(_: &T) {}

fn sleep_of(timer: &HyperTimer, d: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
    timer.sleep(d)
}

#[test]
fn hyper_timer_sleeps_on_the_loop_clock_and_are_send_sync() {
    let lp = Loop::builder().clock(Clock::manual()).build().unwrap();
    let out = lp.run_until_complete(async {
        let timer = HyperTimer::new();
        assert_send_sync(&timer);
        let lp = Loop::current().unwrap();
        let start = lp.time();
        assert_eq!(timer.now(), start, "now() reads the loop's (manual) clock");
        let sleep = sleep_of(&timer, Duration::from_secs(3600));
        assert_send_sync(&sleep);
        sleep.await; // virtual time: an hour in no time
        lp.time() - start
    });
    assert_eq!(out.unwrap(), Duration::from_secs(3600));
}

#[test]
fn a_reset_sleep_completes_at_its_new_deadline_only() {
    let lp = Loop::builder().clock(Clock::manual()).build().unwrap();
    lp.run_until_complete(async {
        let lp = Loop::current().unwrap();
        let timer = HyperTimer::new();
        let start = lp.time();
        let mut sleep = timer.sleep(Duration::from_secs(10));
        // Polled once (armed), then pushed out and then pulled in.
        assert!(sleep.as_mut().now_or_never().is_none());
        timer.reset(&mut sleep, start + Duration::from_secs(100));
        assert!(
            sleep.as_mut().downcast_mut_pin::<HyperSleep>().is_some(),
            "reset in place"
        );
        sleep.as_mut().await;
        assert_eq!(
            lp.time() - start,
            Duration::from_secs(100),
            "the old deadline was cancelled"
        );
        timer.reset(&mut sleep, start + Duration::from_secs(150));
        sleep.await;
        assert_eq!(lp.time() - start, Duration::from_secs(150));
    })
    .unwrap();
}

#[test]
fn dropping_an_armed_sleep_cancels_its_timer() {
    let lp = new_loop();
    block_on(&lp, async {
        let timer = HyperTimer::new();
        let mut sleep = timer.sleep(Duration::from_secs(3600));
        assert!(sleep.as_mut().now_or_never().is_none());
        let lp = Loop::current().unwrap();
        let cancelled = lp.stats().timers_cancelled;
        drop(sleep);
        assert_eq!(lp.stats().timers_cancelled, cancelled + 1);
    });
    assert_eq!(lp.next_timeout(), None, "no timer is left to wake the loop");
}

/// A sleep polled and dropped on another thread arms and cancels its timer through
/// the loop's Remote: it completes on time while the loop runs on its own thread.
#[test]
fn a_sleep_polled_off_the_loop_thread_arms_through_the_remote() {
    let lp = new_loop();
    let timer = HyperTimer::for_loop(&lp);
    let remote = lp.remote();
    let t = timer.clone();
    let worker = std::thread::spawn(move || {
        let start = Instant::now();
        futures::executor::block_on(t.sleep(Duration::from_millis(30)));
        let slept = start.elapsed();
        // One more, dropped while armed: cancelled through the Remote.
        let mut pending = t.sleep(Duration::from_secs(3600));
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(pending.as_mut().poll(&mut cx).is_pending());
        std::thread::sleep(Duration::from_millis(20)); // let the arming call land
        drop(pending);
        remote.stop();
        slept
    });
    lp.run_forever().unwrap();
    let slept = worker.join().unwrap();
    assert!(slept >= Duration::from_millis(30), "{slept:?}");
    // Let the cancel sent by the drop run.
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    lp.call_later(Duration::from_millis(20), move |lp| {
        d.set(true);
        lp.stop();
    });
    lp.run_forever().unwrap();
    assert!(done.get());
    assert_eq!(lp.next_timeout(), None, "the hour-long timer was cancelled");
}
