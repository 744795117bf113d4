//! A small TCP service that shuts down cleanly on SIGTERM or Ctrl-C (SIGINT).
//!
//! ```text
//! cargo run --release --example daemon -- 127.0.0.1:7001
//! ```
//!
//! The listen address is the first argument (default `127.0.0.1:0`, any free port);
//! the first line on stdout is `listening on ADDR`. Each line a client sends comes
//! back upper-cased.
//!
//! On the first SIGTERM or SIGINT the service stops accepting (`Server::close`: new
//! connections are refused), lets the open connections finish (it waits for
//! `Server::wait_closed`, up to a grace period of 30 s), removes its signal
//! handlers, closes the loop and exits 0. A second signal while it waits stops it at
//! once. The handlers run on the loop as ordinary callbacks
//! (`Loop::add_signal_handler`), so they may use the server freely.

use std::cell::{Cell, RefCell};
use std::error::Error;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

use evloop::net::{Protocol, Transport};
use evloop::{Loop, timeout};

/// How long open connections may take to finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(30);

/// Upper-cases each line.
#[derive(Default)]
struct Shout {
    transport: Option<Transport>,
    line: Vec<u8>,
}

impl Protocol for Shout {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = Some(transport.clone());
    }

    fn data_received(&mut self, data: &[u8]) {
        for &b in data {
            self.line.push(b.to_ascii_uppercase());
            if b == b'\n'
                && let Some(t) = &self.transport
            {
                t.write(&self.line);
                self.line.clear();
            }
        }
    }

    fn eof_received(&mut self) -> bool {
        false // the client is done: close once the replies are flushed
    }

    fn connection_lost(&mut self, _: Option<io::Error>) {
        self.transport = None;
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let lp = Loop::new()?;
    let server = lp.run_until_complete(lp.create_server(addr, Shout::default))???;
    let server = Rc::new(server);
    let signals = Rc::new(Cell::new(0));
    let graceful: Rc<RefCell<Option<evloop::Task<()>>>> = Rc::default();
    for (signum, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let (server, signals, graceful) = (server.clone(), signals.clone(), graceful.clone());
        lp.add_signal_handler(signum, move |lp| {
            signals.set(signals.get() + 1);
            if signals.get() > 1 {
                println!("{name} again: stopping now");
                lp.stop();
                return;
            }
            server.close();
            println!(
                "{name}: shutting down; no new connections, waiting for {} open",
                server.active_connections()
            );
            let server = server.clone();
            *graceful.borrow_mut() = Some(lp.create_task(async move {
                match timeout(GRACE, server.wait_closed()).await {
                    Ok(()) => println!("every connection finished"),
                    Err(_) => println!("grace period over: dropping the connections left"),
                }
                evloop::Loop::current().expect("on the loop").stop();
            }));
        })?;
    }
    // Only now: a signal sent as soon as this line is seen finds the handlers.
    println!("listening on {}", server.local_addrs()[0]);
    io::stdout().flush()?;

    lp.run_forever()?;
    for signum in [libc::SIGTERM, libc::SIGINT] {
        lp.remove_signal_handler(signum);
    }
    drop(graceful.borrow_mut().take());
    lp.close()?;
    println!("bye");
    Ok(())
}
