//! The other way round: evloop is the host, and a calloop `EventLoop` runs nested
//! inside it. calloop's poller fd (`EventLoop::as_fd()`) is an evloop reader, and the
//! reader dispatches calloop with a zero timeout; calloop's channels (and any other
//! fd-backed source) make that fd readable on their own.
//!
//! calloop's timers are not on its fd: they live in a wheel that `dispatch` consults
//! for its timeout. So whoever adds a calloop timer must also wake evloop at its
//! deadline; [`Nested::insert_timer`] and [`Ctx::insert_timer`] do both, and follow a
//! timer that reschedules itself (`TimeoutAction::ToDuration` / `ToInstant`).
//!
//! Served here: a calloop timer that fires three times, 20 ms apart; a calloop
//! channel fed by another thread, one of whose messages adds a calloop timer from
//! inside calloop; and an evloop timer alongside.
//!
//! ```text
//! cargo run --example host_calloop
//! ```

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

use calloop::channel::{self, Event};
use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, LoopHandle};
use evloop::Loop;

type Calloop = EventLoop<'static, Ctx>;

/// The data calloop's callbacks get while evloop dispatches them.
pub struct Ctx {
    /// The evloop loop that hosts calloop.
    pub lp: Loop,
    /// calloop's handle, to add sources from inside a callback.
    pub handle: LoopHandle<'static, Ctx>,
    /// Deadlines of calloop timers added or rescheduled in this dispatch.
    wakes: Vec<Instant>,
}

impl Ctx {
    /// Adds a calloop timer from inside a calloop callback, and has evloop wake for
    /// it (after this dispatch).
    pub fn insert_timer(
        &mut self,
        timer: Timer,
        callback: impl FnMut(Instant, &mut Ctx) -> TimeoutAction + 'static,
    ) -> calloop::RegistrationToken {
        insert_timer(&self.handle, &mut self.wakes, timer, callback)
    }
}

/// A calloop `EventLoop` nested in an evloop [`Loop`].
pub struct Nested {
    calloop: Rc<RefCell<Calloop>>,
    handle: LoopHandle<'static, Ctx>,
    fd: RawFd,
}

impl Nested {
    /// A new calloop loop, dispatched by `lp` whenever its fd is readable.
    pub fn new(lp: &Loop) -> io::Result<Nested> {
        let calloop: Calloop = EventLoop::try_new().map_err(io::Error::other)?;
        let handle = calloop.handle();
        let fd = calloop.as_fd().as_raw_fd();
        let calloop = Rc::new(RefCell::new(calloop));
        let c = calloop.clone();
        lp.add_reader(fd, move |lp| dispatch(lp, &c))?;
        Ok(Nested {
            calloop,
            handle,
            fd,
        })
    }

    /// calloop's handle, to add fd-backed sources (channels, `Generic`, pings).
    pub fn handle(&self) -> &LoopHandle<'static, Ctx> {
        &self.handle
    }

    /// Adds a calloop timer, and has `lp` wake at its deadline to dispatch it.
    pub fn insert_timer(
        &self,
        lp: &Loop,
        timer: Timer,
        callback: impl FnMut(Instant, &mut Ctx) -> TimeoutAction + 'static,
    ) -> calloop::RegistrationToken {
        let mut wakes = Vec::new();
        let token = insert_timer(&self.handle, &mut wakes, timer, callback);
        wake_at(lp, &self.calloop, wakes);
        token
    }

    /// Stops watching calloop's fd; calloop's loop is dropped once evloop lets go of
    /// the timers that would dispatch it.
    pub fn detach(self, lp: &Loop) {
        lp.remove_reader(self.fd);
    }
}

/// One non-blocking calloop dispatch, then evloop timers for the calloop deadlines
/// it set.
fn dispatch(lp: &Loop, calloop: &Rc<RefCell<Calloop>>) {
    let mut calloop_ref = calloop.borrow_mut();
    let mut ctx = Ctx {
        lp: lp.clone(),
        handle: calloop_ref.handle(),
        wakes: Vec::new(),
    };
    if let Err(e) = calloop_ref.dispatch(Some(Duration::ZERO), &mut ctx) {
        eprintln!("calloop dispatch failed: {e}");
    }
    drop(calloop_ref);
    wake_at(lp, calloop, ctx.wakes);
}

fn wake_at(lp: &Loop, calloop: &Rc<RefCell<Calloop>>, wakes: Vec<Instant>) {
    for deadline in wakes {
        let c = calloop.clone();
        lp.call_at(deadline, move |lp| dispatch(lp, &c));
    }
}

/// Inserts `timer`, noting in `wakes` each deadline it will have: its first, and the
/// one each call reschedules it to (a `ToDuration` becomes the `ToInstant` it means,
/// so that evloop wakes for exactly the deadline calloop checks).
fn insert_timer(
    handle: &LoopHandle<'static, Ctx>,
    wakes: &mut Vec<Instant>,
    timer: Timer,
    mut callback: impl FnMut(Instant, &mut Ctx) -> TimeoutAction + 'static,
) -> calloop::RegistrationToken {
    if let Some(deadline) = timer.current_deadline() {
        wakes.push(deadline);
    }
    handle
        .insert_source(timer, move |deadline, _, ctx| {
            let at = match callback(deadline, ctx) {
                TimeoutAction::Drop => return TimeoutAction::Drop,
                TimeoutAction::ToInstant(at) => at,
                TimeoutAction::ToDuration(d) => match Instant::now().checked_add(d) {
                    Some(at) => at,
                    None => return TimeoutAction::Drop,
                },
            };
            ctx.wakes.push(at);
            TimeoutAction::ToInstant(at)
        })
        .expect("a timer source cannot fail to register")
}

fn main() -> io::Result<()> {
    let lp = Loop::new()?;
    let nested = Nested::new(&lp)?;
    let start = Instant::now();
    // Four things to finish: the repeating timer, the channel, the timer the channel
    // adds, and the evloop timer.
    let left = Rc::new(Cell::new(4));
    let finished = |left: &Rc<Cell<i32>>, lp: &Loop| {
        left.set(left.get() - 1);
        if left.get() == 0 {
            lp.stop();
        }
    };

    // A calloop timer: 30 ms from now, then twice more, 20 ms apart.
    let fired = Cell::new(0);
    let l = left.clone();
    nested.insert_timer(
        &lp,
        Timer::from_duration(Duration::from_millis(30)),
        move |_, ctx| {
            fired.set(fired.get() + 1);
            println!(
                "calloop timer fired ({} of 3) at {} ms",
                fired.get(),
                start.elapsed().as_millis()
            );
            if fired.get() < 3 {
                TimeoutAction::ToDuration(Duration::from_millis(20))
            } else {
                finished(&l, &ctx.lp);
                TimeoutAction::Drop
            }
        },
    );

    // A calloop channel fed by another thread.
    let (tx, rx) = channel::channel::<u32>();
    let l = left.clone();
    nested
        .handle()
        .insert_source(rx, move |event, _, ctx| match event {
            Event::Msg(n) => {
                println!("calloop channel: message {n}");
                if n == 2 {
                    // A timer added from inside calloop.
                    let l = l.clone();
                    ctx.insert_timer(
                        Timer::from_duration(Duration::from_millis(10)),
                        move |_, ctx| {
                            println!("calloop timer added by message 2 fired");
                            finished(&l, &ctx.lp);
                            TimeoutAction::Drop
                        },
                    );
                }
            }
            Event::Closed => {
                println!("calloop channel: closed");
                finished(&l, &ctx.lp);
            }
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
    let sender = thread::spawn(move || {
        for n in 1..=3 {
            thread::sleep(Duration::from_millis(15));
            tx.send(n).expect("calloop channel open");
        }
    });

    // evloop's own timer, alongside.
    let l = left.clone();
    lp.call_later(Duration::from_millis(40), move |lp| {
        println!("evloop timer fired");
        finished(&l, lp);
    });
    // A stall fails the example instead of hanging it.
    lp.call_later(Duration::from_secs(20), |_| {
        eprintln!("FAILED: not everything was served within 20 s");
        std::process::exit(1);
    });

    lp.run_forever().map_err(io::Error::other)?;
    sender.join().expect("sender thread");
    nested.detach(&lp);
    lp.close().map_err(io::Error::other)?;
    println!("all served");
    Ok(())
}
