//! The networking examples, run as processes through `cargo run` and driven by real
//! client processes: `echo_protocol` and `echo_streams` by a `python3` socket client
//! (several at once, megabytes each, sending and receiving concurrently), falling
//! back to `nc` or, without either, a std client thread; `http_hello` by `curl`
//! (two requests on one kept-alive connection, `Connection: close`, `HEAD`) and by a
//! raw socket (pipelining, a request split across writes, a malformed request);
//! `echo_streams --start-server` like the echo servers; `chat` by several python3
//! client processes.
//!
//! `curl` is required: without it the HTTP test fails and says so (`.ci/run`
//! installs it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a client may take.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long the example may take to print its address: it may be compiled first.
const STARTUP: Duration = Duration::from_secs(300);

/// `cargo run --quiet --example NAME -- 127.0.0.1:0 ARGS...`, in this test's profile.
fn cargo_run(name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--example", name]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.args(["--", "127.0.0.1:0"]).args(args);
    cmd
}

/// A running example, killed when dropped.
struct Example {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Example {
    fn start(name: &'static str) -> Example {
        Example::start_with(name, &[])
    }

    fn start_with(name: &'static str, args: &[&str]) -> Example {
        let mut child = cargo_run(name, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run cargo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut first = String::new();
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            // Keep draining so the example never blocks on a full pipe.
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        let first = match rx.recv_timeout(STARTUP) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("{name} printed nothing within {STARTUP:?}");
            }
        };
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("{name}: unexpected first line {first:?}")
            });
        Example { name, child, addr }
    }

    /// Fails if the example has exited (it must serve until killed).
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited early: {status}", self.name);
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `program --version` runs.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Waits for a child process with a deadline, then collects its output.
fn wait_output(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish within {PATIENCE:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The python3 echo client: sends `size` random bytes from a thread while the main
/// thread reads; after its EOF, checks that the echo is byte for byte what it sent
/// and prints `ok SIZE`.
const PY_ECHO_CLIENT: &str = r#"
import os, socket, sys, threading
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(size)
s = socket.create_connection((host, port), timeout=30)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
chunks = []
while True:
    b = s.recv(1 << 16)
    if not b:
        break
    chunks.append(b)
t.join()
got = b"".join(chunks)
if got != data:
    print("mismatch: sent %d bytes, got %d back" % (len(data), len(got)))
    sys.exit(1)
print("ok %d" % len(got))
"#;

/// Echo check of `size` bytes through an external client process if one is
/// installed (python3, else nc), else a std client thread.
enum EchoClient {
    Process(Child, usize),
    Thread(thread::JoinHandle<()>),
}

fn echo_client(addr: SocketAddr, size: usize) -> EchoClient {
    if have("python3") {
        let child = Command::new("python3")
            .args([
                "-c",
                PY_ECHO_CLIENT,
                &addr.ip().to_string(),
                &addr.port().to_string(),
                &size.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        return EchoClient::Process(child, size);
    }
    if Command::new("nc").arg("-h").output().is_ok() {
        // nc -N: shut down the socket after stdin's EOF, so the server sees EOF.
        let mut child = Command::new("nc")
            .args(["-N", &addr.ip().to_string(), &addr.port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nc");
        let mut stdin = child.stdin.take().unwrap();
        thread::spawn(move || {
            stdin.write_all(&pattern(size)).unwrap();
        });
        return EchoClient::Process(child, size);
    }
    eprintln!("neither python3 nor nc: echo checked by a std client thread");
    EchoClient::Thread(thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            (&w).write_all(&pattern(size)).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        (&s).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert!(
            got == pattern(size),
            "echo mismatch ({} bytes back)",
            got.len()
        );
    }))
}

fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 + i / 251) as u8).collect()
}

impl EchoClient {
    fn check(self) {
        match self {
            EchoClient::Process(child, size) => {
                let out = wait_output(child, "the echo client");
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "echo client failed ({}): {stdout}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                let python = stdout.starts_with("ok ") || stdout.starts_with("mismatch");
                if python {
                    assert_eq!(stdout.trim(), format!("ok {size}"));
                } else {
                    assert!(out.stdout == pattern(size), "nc: echo mismatch");
                }
            }
            EchoClient::Thread(t) => t.join().expect("echo client thread"),
        }
    }
}

fn check_echo_example(name: &'static str) {
    check_echo_example_with(name, &[]);
}

fn check_echo_example_with(name: &'static str, args: &[&str]) {
    let mut ex = Example::start_with(name, args);
    // Three clients at once, megabytes each, plus a small one.
    let clients: Vec<EchoClient> = [3 << 20, 1 << 20, 5 << 20, 10]
        .into_iter()
        .map(|size| echo_client(ex.addr, size))
        .collect();
    for c in clients {
        c.check();
    }
    // A client that leaves abruptly (a reset in the middle) does not hurt the server.
    {
        let s = TcpStream::connect(ex.addr).unwrap();
        (&s).write_all(&[1u8; 100_000]).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    echo_client(ex.addr, 4096).check();
    ex.assert_running();
}

#[test]
fn echo_protocol_example_echoes_for_real_clients() {
    check_echo_example("echo_protocol");
}

#[test]
fn echo_streams_example_echoes_for_real_clients() {
    check_echo_example("echo_streams");
}

/// Runs curl with `args`; fails clearly if curl is not installed.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-S", "--http1.1", "--max-time", "30"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run curl ({e}): the HTTP example is tested with curl; install it \
                 (apt-get install curl; .ci/run does)"
            )
        });
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 from curl")
}

/// Sends `request` in pieces (with pauses between them) on a raw socket and reads
/// until the server closes.
fn raw_exchange(addr: SocketAddr, pieces: &[&[u8]]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            thread::sleep(Duration::from_millis(30));
        }
        s.write_all(p).unwrap();
    }
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("the server must close the connection");
    String::from_utf8(got).unwrap()
}

#[test]
fn http_hello_example_serves_curl_and_raw_clients() {
    let mut ex = Example::start("http_hello");
    let url = format!("http://{}/", ex.addr);

    // Two requests on one connection: the second reuses it (num_connects 0).
    let out = curl(&["-w", "\n%{num_connects}\n", &url, &format!("{url}again")]);
    assert_eq!(out, "Hello, World!\n1\nHello, World!\n0\n", "keep-alive");

    // Headers, and Connection: close honoured.
    let out = curl(&["-i", "-H", "Connection: close", &url]);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("\r\nContent-Length: 13\r\n"), "{out}");
    assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nHello, World!"), "{out}");

    // HEAD: the head only.
    let out = curl(&["-I", &url]);
    assert!(out.contains("Content-Length: 13"), "{out}");
    assert!(!out.contains("Hello"), "{out}");

    // Pipelining: three requests in one write, answered in order; the last asks to
    // close, so the server closes after it.
    let get = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let post = "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    let last = "GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let pipelined = format!("{get}{post}{last}");
    let out = raw_exchange(ex.addr, &[pipelined.as_bytes()]);
    assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{out}");
    assert_eq!(out.matches("Hello, World!").count(), 3, "{out}");
    assert!(
        out.ends_with("Connection: close\r\n\r\nHello, World!"),
        "{out}"
    );

    // A request split across writes (and across data_received calls), a body split
    // from its head; then a request after `Connection: close` is ignored.
    let out = raw_exchange(
        ex.addr,
        &[
            b"GET / HT",
            b"TP/1.1\r\nHost: t\r",
            b"\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\na",
            b"bc",
            b"GET / HTTP/1.0\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
        ],
    );
    assert_eq!(out.matches("Hello, World!").count(), 3, "{out}");

    // Malformed: an error response, then the close.
    let out = raw_exchange(ex.addr, &[b"NONSENSE\r\n\r\n"]);
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");

    // Many kept-alive requests on one connection, one at a time.
    let mut s = TcpStream::connect(ex.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for _ in 0..100 {
        s.write_all(get.as_bytes()).unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "connection closed under keep-alive");
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        let mut body = [0u8; 13];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"Hello, World!");
    }
    ex.assert_running();
}

/// One chat client (`examples/chat.rs`): says its name, prints `joined`, waits for a
/// line on stdin, sends COUNT lines, reads until it has every other client's COUNT
/// lines (skipping `* ...` notices), half-closes, reads to EOF and prints what it got,
/// sorted, then `done N`.
const PY_CHAT_CLIENT: &str = r#"
import socket, sys
host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
others, count = int(sys.argv[4]), int(sys.argv[5])
s = socket.create_connection((host, port), timeout=30)
f = s.makefile("rb")
assert f.readline() == b"name?\n"
s.sendall(name.encode() + b"\n")
welcome = f.readline()
assert welcome.startswith(b"welcome " + name.encode() + b", "), welcome
print("joined", flush=True)
sys.stdin.readline()
for k in range(count):
    s.sendall(("hello from %s #%d\n" % (name, k)).encode())
got = []
while len(got) < others * count:
    line = f.readline()
    if not line:
        break
    if not line.startswith(b"* "):
        got.append(line.decode().rstrip("\n"))
s.shutdown(socket.SHUT_WR)
while f.readline():
    pass
for g in sorted(got):
    print(g)
print("done %d" % len(got))
"#;

/// Reads lines from `stdout` on a thread, so a test can wait for one with a deadline.
fn line_reader(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `examples/chat.rs` with several python3 client processes: every line reaches
/// every other client, with its sender's name; a line over the limit is refused
/// and the client goes on; a client that leaves is announced.
#[test]
fn chat_example_broadcasts_between_python_clients() {
    assert!(
        have("python3"),
        "the chat example is tested with python3 clients: install python3"
    );
    let mut ex = Example::start("chat");
    let names = ["ann", "bob", "cy"];
    const COUNT: usize = 20;
    let mut clients: Vec<(Child, mpsc::Receiver<String>)> = names
        .iter()
        .map(|name| {
            let mut child = Command::new("python3")
                .args(["-c", PY_CHAT_CLIENT, &ex.addr.ip().to_string()])
                .arg(ex.addr.port().to_string())
                .args([
                    name.to_string(),
                    (names.len() - 1).to_string(),
                    COUNT.to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("python3");
            let lines = line_reader(child.stdout.take().unwrap());
            (child, lines)
        })
        .collect();
    for (child, lines) in &mut clients {
        let first = lines.recv_timeout(PATIENCE);
        if first.as_deref() != Ok("joined") {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("a chat client did not join: {first:?}; stderr: {err}");
        }
    }
    // Everyone is in: go.
    for (child, _) in &mut clients {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    for ((child, lines), name) in clients.into_iter().zip(names) {
        let status = wait_output(child, "a chat client").status;
        let got: Vec<String> = lines.iter().collect(); // until EOF: the process is gone
        assert!(status.success(), "{name}: {status}: {got:?}");
        let mut want: Vec<String> = names
            .iter()
            .filter(|&&other| other != name)
            .flat_map(|other| (0..COUNT).map(move |k| format!("{other}: hello from {other} #{k}")))
            .collect();
        want.sort();
        want.push(format!("done {}", want.len()));
        assert_eq!(got, want, "what {name} received");
    }

    // A line over the 64 KiB limit is refused; the next one goes through; leaving
    // is announced.
    let connect = |name: &str| {
        let s = TcpStream::connect(ex.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "name?\n");
        (&s).write_all(format!("{name}\n").as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with(&format!("welcome {name}, ")), "{line}");
        (s, r)
    };
    let next_line = |r: &mut BufReader<TcpStream>| {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line
    };
    let (watcher, mut watcher_r) = connect("watcher");
    let (talker, mut talker_r) = connect("talker");
    assert_eq!(next_line(&mut watcher_r), "* talker joined\n");
    let mut long = vec![b'x'; 100_000];
    long.push(b'\n');
    (&talker).write_all(&long).unwrap();
    assert_eq!(next_line(&mut talker_r), "* line too long\n");
    (&talker).write_all(b"after the long one\n").unwrap();
    assert_eq!(next_line(&mut watcher_r), "talker: after the long one\n");
    drop(talker_r);
    talker.shutdown(Shutdown::Both).unwrap();
    drop(talker);
    assert_eq!(next_line(&mut watcher_r), "* talker left\n");
    drop(watcher);
    ex.assert_running();
}

#[test]
fn echo_streams_start_server_example_echoes_for_real_clients() {
    check_echo_example_with("echo_streams", &["--start-server"]);
}
