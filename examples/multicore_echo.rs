//! A TCP echo server on every core: a [`LoopGroup`] runs one loop per core, and each
//! loop listens on the same port (`SO_REUSEPORT`), so the kernel spreads connections
//! over the loops. A connection stays on the loop that accepted it.
//!
//! ```text
//! cargo run --release --example multicore_echo -- 127.0.0.1:7000
//! cargo run --release --example multicore_echo -- 127.0.0.1:0 --loops 2 --work-us 50
//! ```
//!
//! - The listen address is the first argument (default `127.0.0.1:0`). With port 0,
//!   loop 0 binds first and the other loops then bind the port it got.
//! - `--loops N`: how many loops (default: one per core).
//! - `--work-us US`: burn about US microseconds of CPU on each message before echoing
//!   it, to stand for a CPU-bound handler (default 0). `benches/loop_group.sh` uses
//!   it to compare 1 loop with 2.
//!
//! The first line on stdout is `listening on ADDR`. The protocol is the one of
//! `echo_protocol` (backpressure through `pause_reading`, close after the echo of a
//! half-closed connection).

use std::hint::black_box;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use evloop::net::{Protocol, Transport};
use evloop::{Loop, LoopGroup, ServerOptions};

struct Echo {
    transport: Option<Transport>,
    /// Iterations of [`burn`] per message.
    work: u64,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        if self.work > 0 {
            burn(self.work);
        }
        if let Some(t) = &self.transport {
            t.write(data);
        }
    }

    fn eof_received(&mut self) -> bool {
        false // close once the echo is flushed
    }

    fn connection_lost(&mut self, _: Option<io::Error>) {
        self.transport = None;
    }

    fn pause_writing(&mut self) {
        if let Some(t) = &self.transport {
            t.pause_reading();
        }
    }

    fn resume_writing(&mut self) {
        if let Some(t) = &self.transport {
            t.resume_reading();
        }
    }
}

/// CPU work that no compiler can skip: `iters` rounds of a 64-bit mixing function.
fn burn(iters: u64) -> u64 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..iters {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 29;
    }
    black_box(x)
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Iterations of [`burn`] that take `us` microseconds of CPU, measured in CPU time
/// (not wall time), so that a busy machine does not skew it.
fn calibrate(us: u64) -> u64 {
    if us == 0 {
        return 0;
    }
    let chunk = 1 << 16;
    let (mut iters, start) = (0u64, thread_cpu());
    while thread_cpu() - start < Duration::from_millis(50) {
        burn(chunk);
        iters += chunk;
    }
    let per_us = iters as f64 / (thread_cpu() - start).as_secs_f64() / 1e6;
    (per_us * us as f64).max(1.0) as u64
}

/// The task of one loop: listen on `addr` (sharing the port), say where, then keep
/// the server until the loop ends.
async fn serve(addr: String, work: u64, bound: mpsc::Sender<io::Result<SocketAddr>>) {
    let lp = Loop::current().expect("a task runs on a loop");
    let options = ServerOptions::default().reuse_port(true);
    let factory = move || Echo {
        transport: None,
        work,
    };
    match lp.create_server_with(addr, factory, options).await {
        Ok(Ok(server)) => {
            let _ = bound.send(Ok(server.local_addrs()[0]));
            server.wait_closed().await;
        }
        Ok(Err(e)) => {
            let _ = bound.send(Err(e));
        }
        Err(e) => {
            let _ = bound.send(Err(io::Error::other(e.to_string())));
        }
    }
}

struct Options {
    addr: String,
    loops: Option<usize>,
    work_us: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        addr: "127.0.0.1:0".to_owned(),
        loops: None,
        work_us: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--loops" => o.loops = Some(value()?.parse().map_err(|e| format!("--loops: {e}"))?),
            "--work-us" => o.work_us = value()?.parse().map_err(|e| format!("--work-us: {e}"))?,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => o.addr = s.to_owned(),
        }
    }
    Ok(o)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse_args()?;
    let work = calibrate(o.work_us);
    let group = match o.loops {
        Some(n) => LoopGroup::new(n)?,
        None => LoopGroup::per_core()?,
    };
    // Loop 0 binds first: with port 0 it picks the port the others then share.
    let (tx, rx) = mpsc::channel();
    let first = o.addr.clone();
    let bound_tx = tx.clone();
    drop(group.spawn_on(0, move || serve(first, work, bound_tx))?);
    let addr = rx.recv()??;
    for i in 1..group.len() {
        let (addr, tx) = (addr.to_string(), tx.clone());
        drop(group.spawn_on(i, move || serve(addr, work, tx))?);
        rx.recv()??;
    }
    println!("listening on {addr}");
    io::stdout().flush()?;
    eprintln!(
        "{} loops; {} µs of work per message",
        group.len(),
        o.work_us
    );
    // Serves until killed (or until every loop stops).
    for (i, r) in group.join().into_iter().enumerate() {
        if let Err(e) = r {
            eprintln!("loop {i}: {e}");
        }
    }
    Ok(())
}
