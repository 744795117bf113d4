//! Fairness: a connection whose peer never stops sending does not starve another
//! connection on the same loop, neither for the async streams (a task reading a
//! stream that always has data yields after its budget) nor for protocols (a
//! transport reads at most a budget of chunks per event).
//!
//! Each test gives the greedy side a finite amount of work that it could only finish
//! by hogging the loop for seconds, and checks that the polite side finished first:
//! a loop without budgets fails these tests instead of hanging them.

#[path = "util/net.rs"]
mod net_util;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream as StdTcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use evloop::net::{Protocol, TcpListener, Transport};
use net_util::*;

/// A thread that writes to `addr` as fast as it can until `stop`.
fn flood(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut s = StdTcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let chunk = vec![7u8; 256 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let _ = s.write(&chunk); // times out when the reader is slow: check stop
        }
        let _ = s.shutdown(Shutdown::Both);
    })
}

/// A thread doing `n` one-byte ping-pongs with an echo at `addr`.
fn ping_pong(addr: std::net::SocketAddr, n: usize) -> thread::JoinHandle<Duration> {
    thread::spawn(move || {
        let start = Instant::now();
        let mut s = StdTcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        for i in 0..n {
            s.write_all(&[i as u8]).unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            assert_eq!(b[0], i as u8);
        }
        start.elapsed()
    })
}

#[test]
fn a_flooded_stream_does_not_starve_another() {
    const GREEDY_TOTAL: usize = 128 * 1024 * 1024;
    let lp = new_loop();
    let stop = Arc::new(AtomicBool::new(false));
    let greedy_read = Rc::new(Cell::new(0usize));
    let polite_done = Rc::new(Cell::new(false));
    let (listener, addr) = block_on(&lp, async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    });
    let flooder = flood(addr, stop.clone());
    let (greedy_conn, _) = block_on(&lp, listener.accept()).unwrap();

    // Reads 16 bytes at a time: it can never drain the flood, so the stream always
    // has data and every read is ready at once.
    let gr = greedy_read.clone();
    let greedy = lp.create_task(async move {
        let mut buf = [0u8; 16];
        while gr.get() < GREEDY_TOTAL {
            match greedy_conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => gr.set(gr.get() + n),
            }
        }
    });

    let pinger = ping_pong(addr, 30);
    let pd = polite_done.clone();
    let polite = lp.create_task(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 1];
        while s.read(&mut b).await.unwrap() == 1 {
            s.write_all(&b).await.unwrap();
        }
        pd.set(true);
    });

    run_until(&lp, "the ping-pong connection finishes", || {
        pinger.is_finished() || greedy.is_done()
    });
    assert!(
        !greedy.is_done(),
        "the greedy reader finished its {GREEDY_TOTAL} bytes before a 30-round ping-pong \
         on another connection: it starved the loop"
    );
    let took = pinger.join().unwrap();
    assert!(
        greedy_read.get() > 0,
        "the flooded stream made no progress at all"
    );
    run_until(&lp, "the polite task sees EOF", || polite_done.get());
    stop.store(true, Ordering::Relaxed);
    greedy.cancel();
    flooder.join().unwrap();
    run_iterations(&lp, 2);
    assert!(polite.is_done());
    eprintln!(
        "ping-pong took {took:?} while the flooded stream read {} bytes",
        greedy_read.get()
    );
}

/// The protocol side: a flooded transport whose protocol is slow to process each
/// chunk, next to an echo connection.
#[test]
fn a_flooded_transport_does_not_starve_another() {
    const GREEDY_TOTAL: usize = 1024 * 1024 * 1024;
    struct Slow {
        read: Rc<Cell<usize>>,
        t: Option<Transport>,
    }
    impl Protocol for Slow {
        fn connection_made(&mut self, t: &Transport) {
            self.t = Some(t.clone());
        }
        fn data_received(&mut self, data: &[u8]) {
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_micros(100) {
                std::hint::spin_loop();
            }
            self.read.set(self.read.get() + data.len());
            if self.read.get() >= GREEDY_TOTAL {
                self.t.as_ref().unwrap().pause_reading();
            }
        }
    }

    let lp = new_loop();
    let greedy_read = Rc::new(Cell::new(0usize));
    let echo = Probes::echo();
    let first = Rc::new(Cell::new(true));
    let (gr, e2, f2) = (greedy_read.clone(), echo.clone(), first.clone());
    let mut echo_factory = echo.factory();
    // The first connection is the flooded one; the others echo.
    let (server, addr) = tcp_server(&lp, move || -> Box<dyn ProtocolBox> {
        if f2.replace(false) {
            Box::new(Slow {
                read: gr.clone(),
                t: None,
            })
        } else {
            let _ = &e2;
            Box::new(echo_factory())
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(addr, stop.clone());
    run_until(&lp, "the flood starts", || greedy_read.get() > 0);
    let pinger = ping_pong(addr, 30);
    run_until(&lp, "the ping-pong finishes", || {
        pinger.is_finished() || greedy_read.get() >= GREEDY_TOTAL
    });
    assert!(
        greedy_read.get() < GREEDY_TOTAL,
        "the flooded transport read {GREEDY_TOTAL} bytes before a 30-round ping-pong \
         on another connection finished: it starved the loop"
    );
    pinger.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    run_until(&lp, "the echo connection closes", || {
        echo.len() == 1 && echo.get(0).is_lost()
    });
    server.close();
}

/// A boxed protocol, so that one server can hand out two kinds.
trait ProtocolBox: Protocol {}
impl<P: Protocol> ProtocolBox for P {}

impl Protocol for Box<dyn ProtocolBox> {
    fn connection_made(&mut self, t: &Transport) {
        (**self).connection_made(t)
    }
    fn data_received(&mut self, data: &[u8]) {
        (**self).data_received(data)
    }
    fn eof_received(&mut self) -> bool {
        (**self).eof_received()
    }
    fn connection_lost(&mut self, e: Option<std::io::Error>) {
        (**self).connection_lost(e)
    }
    fn pause_writing(&mut self) {
        (**self).pause_writing()
    }
    fn resume_writing(&mut self) {
        (**self).resume_writing()
    }
}
