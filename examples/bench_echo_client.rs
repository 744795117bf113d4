//! The load generator of `benches/net_echo.sh`: a closed-loop echo client on one
//! thread, driving every connection through mio directly (not evloop, so that a run
//! measures evloop once, on the server side only).
//!
//! ```text
//! cargo run --release --example bench_echo_client -- ADDR [options]
//!   --conns N       connections (default 50)
//!   --size S        bytes per message (default 64)
//!   --warmup SECS   seconds before measuring (default 1)
//!   --duration SECS seconds measured (default 3)
//!   --server-pid P  also measure the CPU time process P spends in the window
//! ```
//!
//! Each connection sends a message of S bytes, waits for all S bytes to come back,
//! then sends the next: at most one message per connection is in flight. Round trips
//! completed in the measured window are counted. The first echo of every connection
//! is compared byte for byte with what was sent.
//!
//! The server's CPU time is that of the whole process (all its threads), read at the
//! start and the end of the window through `clock_getcpuclockid` (nanoseconds), or,
//! where that is refused, from `/proc/PID/stat` (`utime + stime`, clock ticks).
//!
//! Prints one line of `key=value` fields on stdout:
//! - `requests`, `secs`, `rps`, `mbps` (echoed payload, one direction, 10^6 bytes/s);
//! - `server_cpu_ns_per_req`, and `server_user_ns_per_req`, the part of it spent in
//!   user space (split by the `utime`/`stime` ticks of `/proc/PID/stat`, so a rough
//!   figure): what the server's own code costs, as opposed to the kernel's TCP;
//! - `server_cpu_pct`, `client_cpu_pct`: share of one core each; a client near
//!   100 % means the client, not the server, set the pace;
//! - `noise_pct`: CPU time other processes (or the hypervisor, as steal) took on the
//!   whole machine during the window, from `/proc/stat` (clock ticks), in % of one
//!   core. Near 0 on a quiet machine; with noise, the rates mean little.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

struct Options {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    warmup: f64,
    duration: f64,
    server_pid: Option<i32>,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .ok_or("usage: bench_echo_client ADDR [--conns N] [--size S] [--warmup SECS] [--duration SECS] [--server-pid PID]")?;
    let mut o = Options {
        addr: addr.parse().map_err(|e| format!("{addr}: {e}"))?,
        conns: 50,
        size: 64,
        warmup: 1.0,
        duration: 3.0,
        server_pid: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--conns" => o.conns = value.parse().map_err(|e| bad(&e))?,
            "--size" => o.size = value.parse().map_err(|e| bad(&e))?,
            "--warmup" => o.warmup = value.parse().map_err(|e| bad(&e))?,
            "--duration" => o.duration = value.parse().map_err(|e| bad(&e))?,
            "--server-pid" => o.server_pid = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.conns == 0 || o.size == 0 || o.duration <= 0.0 {
        return Err("--conns, --size and --duration must be positive".into());
    }
    Ok(o)
}

/// One connection's progress through its current message.
struct Conn {
    sock: TcpStream,
    sent: usize,
    received: usize,
    /// The first echo is checked byte for byte; later ones by length only.
    checked: bool,
    check_buf: Vec<u8>,
}

impl Conn {
    /// Writes what the socket takes and reads what has arrived; returns the round trips
    /// completed. Edge-triggered: it stops only at `WouldBlock`, at a short read
    /// (on Linux, data arriving later raises a new event) or after finishing a round
    /// trip and sending the next message (whose echo raises a new event).
    fn drive(&mut self, msg: &[u8], rbuf: &mut [u8]) -> io::Result<u64> {
        let mut done = 0;
        loop {
            while self.sent < msg.len() {
                match self.sock.write(&msg[self.sent..]) {
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let n = match self.sock.read(rbuf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if !self.checked {
                self.check_buf.extend_from_slice(&rbuf[..n]);
            }
            self.received += n;
            if self.received > self.sent {
                return Err(io::Error::other("the server sent more than it was sent"));
            }
            if self.received == msg.len() {
                if !self.checked {
                    if self.check_buf != msg {
                        return Err(io::Error::other("the echo differs from the message"));
                    }
                    self.checked = true;
                    self.check_buf = Vec::new();
                }
                done += 1;
                self.sent = 0;
                self.received = 0;
                // Send the next message; its echo will raise a new event.
                while self.sent < msg.len() {
                    match self.sock.write(&msg[self.sent..]) {
                        Ok(n) => self.sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                return Ok(done);
            }
            if n < rbuf.len() {
                return Ok(done); // drained for now
            }
        }
    }
}

/// CPU time of a process (all threads), in nanoseconds.
enum CpuClock {
    Posix(libc::clockid_t),
    ProcStat(i32),
}

impl CpuClock {
    fn for_pid(pid: i32) -> CpuClock {
        let mut id: libc::clockid_t = 0;
        // SAFETY: `id` is a valid out-pointer.
        if unsafe { libc::clock_getcpuclockid(pid, &mut id) } == 0 {
            let c = CpuClock::Posix(id);
            if c.read().is_ok() {
                return c;
            }
        }
        CpuClock::ProcStat(pid)
    }

    fn name(&self) -> &'static str {
        match self {
            CpuClock::Posix(_) => "clock_getcpuclockid",
            CpuClock::ProcStat(_) => "proc_stat",
        }
    }

    fn read(&self) -> io::Result<u64> {
        match *self {
            CpuClock::Posix(id) => {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `ts` is a valid out-pointer.
                if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
            }
            CpuClock::ProcStat(pid) => {
                let (user, system) = proc_stat_ticks(pid)?;
                Ok((user + system) * 1_000_000_000 / clock_ticks_per_sec())
            }
        }
    }
}

/// (utime, stime) of process `pid`, in clock ticks: fields 14 and 15 of
/// `/proc/PID/stat`.
fn proc_stat_ticks(pid: i32) -> io::Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').ok_or(io::ErrorKind::InvalidData)? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        f.get(n - 3)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::ErrorKind::InvalidData.into())
    };
    Ok((field(14)?, field(15)?))
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

/// CPU time all cores spent running tasks (user, nice, system, steal; not idle, not
/// interrupts), from `/proc/stat`, in nanoseconds. Minus the server's and the client's
/// own, it is the noise: other processes (or the hypervisor) taking the cores.
fn machine_busy_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let ticks = f.first()? + f.get(1)? + f.get(2)? + f.get(7).copied().unwrap_or(0);
    Some(ticks * 1_000_000_000 / clock_ticks_per_sec())
}

fn own_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Snapshot {
    at: Instant,
    requests: u64,
    server_cpu: Option<u64>,
    /// (utime, stime) ticks, for the share of the server's time spent in user space.
    server_ticks: Option<(u64, u64)>,
    client_cpu: u64,
    machine_busy: Option<u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse_args()?;
    let msg: Vec<u8> = (0..o.size).map(|i| (i * 131 + 7) as u8).collect();
    let mut rbuf = vec![0u8; 64 * 1024];
    let server_clock = o.server_pid.map(CpuClock::for_pid);

    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        let s = StdTcpStream::connect(o.addr)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut sock = TcpStream::from_std(s);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn {
            sock,
            sent: 0,
            received: 0,
            checked: false,
            check_buf: Vec::new(),
        });
    }

    let mut events = Events::with_capacity(1024);
    let mut requests: u64 = 0;
    let start = Instant::now();
    let measure_at = start + Duration::from_secs_f64(o.warmup);
    let end_at = measure_at + Duration::from_secs_f64(o.duration);
    let mut first: Option<Snapshot> = None;
    let snapshot = |requests: u64| -> io::Result<Snapshot> {
        Ok(Snapshot {
            at: Instant::now(),
            requests,
            server_cpu: server_clock.as_ref().map(|c| c.read()).transpose()?,
            server_ticks: o.server_pid.and_then(|p| proc_stat_ticks(p).ok()),
            client_cpu: own_cpu_ns(),
            machine_busy: machine_busy_ns(),
        })
    };
    let last = loop {
        let now = Instant::now();
        if first.is_none() && now >= measure_at {
            first = Some(snapshot(requests)?);
        }
        if now >= end_at {
            break snapshot(requests)?;
        }
        let wake = if first.is_none() { measure_at } else { end_at };
        poll.poll(&mut events, Some(wake - now))?;
        for ev in events.iter() {
            let i = ev.token().0;
            requests += conns[i]
                .drive(&msg, &mut rbuf)
                .map_err(|e| format!("connection {i}: {e}"))?;
        }
    };
    let first = first.expect("taken before the end");
    drop(conns);

    let secs = last.at.duration_since(first.at).as_secs_f64();
    let n = last.requests - first.requests;
    if n == 0 {
        return Err("no round trip completed in the measured window".into());
    }
    let rps = n as f64 / secs;
    let mbps = rps * o.size as f64 / 1e6;
    let client_pct = (last.client_cpu - first.client_cpu) as f64 / 1e9 / secs * 100.0;
    let mut line = format!(
        "conns={} size={} secs={secs:.3} requests={n} rps={rps:.0} mbps={mbps:.1} client_cpu_pct={client_pct:.0}",
        o.conns, o.size
    );
    if let (Some(a), Some(b), Some(clock)) = (first.server_cpu, last.server_cpu, &server_clock) {
        let cpu = b.saturating_sub(a);
        line += &format!(
            " server_cpu_ns_per_req={:.0} server_cpu_pct={:.0} cpu_clock={}",
            cpu as f64 / n as f64,
            cpu as f64 / 1e9 / secs * 100.0,
            clock.name()
        );
        if let (Some((u0, s0)), Some((u1, s1))) = (first.server_ticks, last.server_ticks) {
            let (user, system) = (u1.saturating_sub(u0), s1.saturating_sub(s0));
            if user + system > 0 {
                let share = user as f64 / (user + system) as f64;
                line += &format!(
                    " server_user_ns_per_req={:.0}",
                    cpu as f64 * share / n as f64
                );
            }
        }
        if let (Some(m0), Some(m1)) = (first.machine_busy, last.machine_busy) {
            let ours = cpu + (last.client_cpu - first.client_cpu);
            let other = (m1.saturating_sub(m0)).saturating_sub(ours);
            line += &format!(" noise_pct={:.0}", other as f64 / 1e9 / secs * 100.0);
        }
    }
    println!("{line}");
    Ok(())
}
