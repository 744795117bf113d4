//! The `hyper_server` example (feature `hyper`), run as a process through `cargo
//! run`: `curl` fetches from it twice over one kept-alive connection, and hyper's
//! own client, running on evloop, sends it several requests on one connection.
//!
//! Without `curl` on the machine the curl test is skipped, saying so on stderr
//! (`.ci/run` installs it).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use evloop::compat::HyperIo;
use http_body_util::{BodyExt, Empty};

/// How long the example may take to print its address: it may be compiled first.
const STARTUP: Duration = Duration::from_secs(300);
const PATIENCE: Duration = Duration::from_secs(30);

/// The running example, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Server {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "run",
            "--quiet",
            "--features",
            "hyper",
            "--example",
            "hyper_server",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let mut child = cmd
            .args(["--", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run cargo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            let _ = reader.read_to_end(&mut Vec::new());
        });
        let Ok(first) = rx.recv_timeout(STARTUP) else {
            let _ = child.kill();
            panic!("hyper_server printed nothing within {STARTUP:?}");
        };
        let Some(addr) = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
        else {
            let _ = child.kill();
            panic!("hyper_server: unexpected first line {first:?}");
        };
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn curl_gets_hello_twice_over_one_kept_alive_connection() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed (apt-get install curl; .ci/run does)");
        return;
    }
    let server = Server::start();
    let url = format!("http://{}/", server.addr);
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "30", "-w", "|%{num_connects}\n"])
        .args([&url, &url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // `num_connects` counts new connections per transfer: 1, then 0 (reused).
    assert_eq!(
        text, "Hello, World!|1\nHello, World!|0\n",
        "curl printed {text:?}"
    );
}

#[test]
fn hyper_client_on_evloop_sends_several_requests_on_one_connection() {
    let server = Server::start();
    let addr = server.addr;
    let bodies = evloop::run(evloop::timeout(PATIENCE, async move {
        let stream = evloop::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
            .await
            .unwrap();
        let conn = evloop::spawn(conn);
        let mut bodies = Vec::new();
        for i in 0..3 {
            let req = hyper::Request::get(format!("/{i}"))
                .header("host", addr.to_string())
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            bodies.push(String::from_utf8(body.to_vec()).unwrap());
        }
        drop(sender);
        conn.await.unwrap().unwrap();
        bodies
    }))
    .unwrap()
    .expect("the client finished in time");
    assert_eq!(bodies, ["Hello, World!"; 3]);
}
