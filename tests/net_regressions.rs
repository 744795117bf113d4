//! Networking regressions found in review: each test failed before its fix.

use evloop::Loop;
use evloop::net::*;
use std::cell::{Cell, RefCell};
use std::io::Read;
use std::rc::Rc;
use std::time::Duration;

struct P {
    t: Option<Transport>,
    lost: Rc<Cell<u32>>,
}
impl Protocol for P {
    fn connection_made(&mut self, t: &Transport) {
        self.t = Some(t.clone());
    }
    fn data_received(&mut self, _: &[u8]) {}
    fn connection_lost(&mut self, _: Option<std::io::Error>) {
        self.lost.set(self.lost.get() + 1);
    }
}

#[test]
fn closing_then_closing_the_loop_still_calls_connection_lost_and_closes_the_socket() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let lp = Loop::new().unwrap();
    let lost = Rc::new(Cell::new(0));
    let lost2 = lost.clone();
    let lp2 = lp.clone();
    let t = lp
        .run_until_complete(async move {
            let (t, _p) = lp2
                .create_connection(
                    addr,
                    P {
                        t: None,
                        lost: lost2,
                    },
                )
                .await
                .unwrap()
                .unwrap();
            t
        })
        .unwrap();
    t.close(); // schedules connection_lost via call_soon; the loop is not running
    drop(t);
    lp.close().unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 1];
    let r = s.read(&mut b);
    assert_eq!(lost.get(), 1, "connection_lost never called");
    assert!(matches!(r, Ok(0)), "socket never closed (fd leaked): {r:?}");
}

struct D {
    t: Option<DatagramTransport>,
    lost: Rc<Cell<u32>>,
}
impl DatagramProtocol for D {
    fn connection_made(&mut self, t: &DatagramTransport) {
        self.t = Some(t.clone());
    }
    fn datagram_received(&mut self, _: &[u8], _: std::net::SocketAddr) {}
    fn connection_lost(&mut self, _: Option<std::io::Error>) {
        self.lost.set(self.lost.get() + 1);
    }
}

#[test]
fn a_datagram_endpoint_closed_then_the_loop_closed_gets_connection_lost() {
    let lp = Loop::new().unwrap();
    let lost = Rc::new(Cell::new(0));
    let lost2 = lost.clone();
    let lp2 = lp.clone();
    let t = lp
        .run_until_complete(async move {
            let (t, _p) = lp2
                .create_datagram_endpoint(
                    Some("127.0.0.1:0"),
                    None::<&str>,
                    D {
                        t: None,
                        lost: lost2,
                    },
                )
                .await
                .unwrap()
                .unwrap();
            t
        })
        .unwrap();
    t.close();
    drop(t);
    lp.close().unwrap();
    assert_eq!(lost.get(), 1, "datagram connection_lost never called");
}

#[test]
fn two_tasks_reading_one_stream_are_both_served() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let th = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(b"y").unwrap();
        std::thread::sleep(Duration::from_millis(300));
    });
    let lp = Loop::new().unwrap();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let r = lp
        .run_until_complete(async move {
            let s = Rc::new(TcpStream::connect(addr).await.unwrap());
            let (s1, s2) = (s.clone(), s.clone());
            let (g1, g2) = (g.clone(), g.clone());
            // A: waits for data (registers its waker first)
            let a = evloop::spawn(async move {
                let mut b = [0u8; 8];
                let n = s1.read(&mut b).await.unwrap();
                g1.borrow_mut().push(('A', b[..n].to_vec()));
            });
            evloop::sleep(Duration::from_millis(20)).await;
            // B: also waits; overwrites A's waker
            let b = evloop::spawn(async move {
                let mut b = [0u8; 8];
                let n = s2.read(&mut b).await.unwrap();
                g2.borrow_mut().push(('B', b[..n].to_vec()));
            });
            let both = async {
                let _ = a.await;
                let _ = b.await;
            };
            evloop::timeout(Duration::from_millis(1500), both).await
        })
        .unwrap();
    assert_eq!(got.borrow().len(), 2, "{:?}", got.borrow());
    assert!(r.is_ok(), "one reader never woke although data 'y' arrived");
    th.join().unwrap();
}

struct N(Rc<Cell<u32>>);
impl Protocol for N {
    fn connection_made(&mut self, _: &Transport) {
        self.0.set(self.0.get() + 1);
    }
    fn data_received(&mut self, _: &[u8]) {}
}
#[test]
fn a_panicking_protocol_factory_does_not_strand_the_backlog() {
    let lp = Loop::new().unwrap();
    lp.set_exception_handler(|_, _| {});
    let made = Rc::new(Cell::new(0));
    let m = made.clone();
    let n = Rc::new(Cell::new(0));
    let server = lp
        .run_until_complete(lp.create_server("127.0.0.1:0", move || {
            n.set(n.get() + 1);
            if n.get() == 1 {
                panic!("factory failed once");
            }
            N(m.clone())
        }))
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = server.local_addrs()[0];
    // two connections queue in the backlog before the loop looks
    let _c1 = std::net::TcpStream::connect(addr).unwrap();
    let _c2 = std::net::TcpStream::connect(addr).unwrap();
    for _ in 0..50 {
        lp.run_once(Some(Duration::from_millis(10))).unwrap();
    }

    assert_eq!(made.get(), 1, "second pending connection never accepted");
}

#[test]
fn dropping_a_replaced_unix_listener_leaves_the_new_socket_file() {
    let dir = std::env::temp_dir().join(format!("evloop-reg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("replaced.sock");
    let lp = Loop::new().unwrap();
    let p = path.clone();
    lp.run_until_complete(async move {
        let old = UnixListener::bind(&p).unwrap();
        // A second listener takes the path over (the stale-file removal unlinks the
        // first one's file); dropping the first must not unlink the second's.
        let new = UnixListener::bind(&p).unwrap();
        drop(old);
        assert!(p.exists(), "the new listener's socket file is still there");
        let client = evloop::spawn({
            let p = p.clone();
            async move { UnixStream::connect(&p).await.is_ok() }
        });
        let _conn = new.accept().await.unwrap();
        assert!(client.await.unwrap());
        drop(new);
        assert!(!p.exists(), "the last listener removes its file");
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
