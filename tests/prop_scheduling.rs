//! Property test of the core's scheduling against a reference model.
//!
//! Random programs of `call_soon` / `call_later` / `call_at` / `cancel` /
//! `Clock::advance` / `run_once`, made both at top level (between iterations) and from
//! inside the callbacks themselves, run on a loop with a manual clock (auto-advance
//! off) and on a small model written here: a FIFO of ready callbacks and a list of
//! timers sorted by (deadline, scheduling order), with asyncio's rules as DESIGN.md
//! "One iteration" states them:
//! - an iteration queues the timers due at its start, after the callbacks already
//!   ready, and runs exactly what was queued then: callbacks scheduled while it runs
//!   wait for the next iteration;
//! - timers with equal deadlines fire in scheduling order; none fires before its
//!   deadline (a deadline equal to the clock's reading is due);
//! - a callback cancelled before it starts never runs, even when it was already
//!   queued for this iteration, and its closure is dropped at once.
//!
//! After every step the exact sequence of what ran (callback id and the clock at the
//! time it ran) must match the model's; every closure must be alive exactly while the
//! model holds it pending; `next_timeout()` must be what the model says (zero with
//! work queued or a live timer due; a cancelled timer never counts).
//!
//! `PROPTEST_CASES` raises the number of programs for the long form (default 1,024).

mod util;

#[path = "util/prop.rs"]
mod prop_util;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use evloop::{Clock, Handle, Loop, TimerHandle};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

/// The most callbacks one program creates: bounded growth (every callback may schedule
/// more), and below the burst size after which a loop schedules memory trims.
const MAX_CALLBACKS: usize = 300;

/// Something a program or a callback does. Times are in milliseconds.
#[derive(Clone, Debug)]
enum Act {
    Soon,
    Later(u8),
    /// `call_at(time() + off)`; negative: a deadline in the past.
    At(i8),
    /// Cancel the `n % created`th callback created so far.
    Cancel(u16),
    Advance(u8),
}

#[derive(Clone, Debug)]
enum Step {
    Act(Act),
    RunOnce,
}

#[derive(Clone, Debug)]
struct Program {
    /// Callback number `i` runs `scripts[i % len]`.
    scripts: Vec<Vec<Act>>,
    steps: Vec<Step>,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        3 => Just(Act::Soon),
        3 => (0u8..20).prop_map(Act::Later),
        2 => (-5i8..20).prop_map(Act::At),
        3 => any::<u16>().prop_map(Act::Cancel),
        2 => (0u8..15).prop_map(Act::Advance),
    ]
}

fn program() -> impl Strategy<Value = Program> {
    let step = prop_oneof![3 => act().prop_map(Step::Act), 2 => Just(Step::RunOnce)];
    (
        prop::collection::vec(prop::collection::vec(act(), 0..4), 1..8),
        prop::collection::vec(step, 1..60),
    )
        .prop_map(|(scripts, steps)| Program { scripts, steps })
}

fn ms(n: i64) -> i64 {
    n * 1_000_000
}

// ------------------------------------------------------------------ the model

#[derive(Default)]
struct Model {
    scripts: Vec<Vec<Act>>,
    /// Nanoseconds since the start.
    now: i64,
    ready: VecDeque<usize>,
    /// (deadline, scheduling order) -> callback id.
    timers: BTreeMap<(i64, usize), usize>,
    /// Cancelled before it ran.
    cancelled: Vec<bool>,
    /// `cancel()` was called on its handle (before or after it ran).
    cancel_asked: Vec<bool>,
    done: Vec<bool>,
    deadline: Vec<Option<i64>>,
    /// (callback id, clock when it ran).
    ran: Vec<(usize, i64)>,
}

impl Model {
    fn created(&self) -> usize {
        self.done.len()
    }

    fn new_id(&mut self, deadline: Option<i64>) -> Option<usize> {
        if self.created() >= MAX_CALLBACKS {
            return None;
        }
        self.cancelled.push(false);
        self.cancel_asked.push(false);
        self.done.push(false);
        self.deadline.push(deadline);
        Some(self.created() - 1)
    }

    fn act(&mut self, a: &Act) {
        match *a {
            Act::Soon => {
                if let Some(id) = self.new_id(None) {
                    self.ready.push_back(id);
                }
            }
            Act::Later(d) => self.timer(self.now + ms(d.into())),
            Act::At(off) => self.timer(self.now + ms(off.into())),
            Act::Cancel(n) => {
                if self.created() > 0 {
                    let id = n as usize % self.created();
                    self.cancel_asked[id] = true;
                    if !self.done[id] {
                        self.cancelled[id] = true;
                    }
                }
            }
            Act::Advance(d) => self.now += ms(d.into()),
        }
    }

    fn timer(&mut self, when: i64) {
        if let Some(id) = self.new_id(Some(when)) {
            self.timers.insert((when, id), id);
        }
    }

    fn run_once(&mut self) {
        let mut queued: Vec<usize> = self.ready.drain(..).collect();
        while let Some((&(when, seq), _)) = self.timers.first_key_value() {
            if when > self.now {
                break;
            }
            queued.push(self.timers.remove(&(when, seq)).unwrap());
        }
        for id in queued {
            if self.cancelled[id] {
                continue;
            }
            self.done[id] = true;
            self.ran.push((id, self.now));
            let script = self.scripts[id % self.scripts.len()].clone();
            for a in &script {
                self.act(a);
            }
        }
    }

    fn pending(&self, id: usize) -> bool {
        !self.done[id] && !self.cancelled[id]
    }

    /// How long until the earliest live timer is due (zero if it is).
    fn next_deadline(&self) -> Option<Duration> {
        self.timers
            .iter()
            .find(|&(_, &id)| self.pending(id))
            .map(|(&(when, _), _)| Duration::from_nanos((when - self.now).max(0) as u64))
    }

    /// What `next_timeout()` must say: zero with anything in the ready queue or a
    /// live timer due; else `None`, since with a manual clock that does not
    /// auto-advance only `Clock::advance` moves time (and it wakes the loop).
    ///
    /// A cancelled `call_soon` keeps its place in the queue until its turn, as in
    /// asyncio (whose `_run_once` does not block while `_ready` is non-empty); a
    /// cancelled timer never counts.
    fn next_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() {
            return Some(Duration::ZERO);
        }
        self.next_deadline().filter(|d| d.is_zero())
    }

    fn has_pending(&self) -> bool {
        (0..self.created()).any(|id| self.pending(id))
    }
}

// ------------------------------------------------------------------ the real loop

enum Scheduled {
    Soon(Handle),
    Timer(TimerHandle),
}

impl Scheduled {
    fn cancel(&self) {
        match self {
            Scheduled::Soon(h) => h.cancel(),
            Scheduled::Timer(h) => h.cancel(),
        }
    }

    fn is_cancelled(&self) -> bool {
        match self {
            Scheduled::Soon(h) => h.is_cancelled(),
            Scheduled::Timer(h) => h.is_cancelled(),
        }
    }
}

/// Sets its flag when the closure that holds it is dropped.
struct Token(Rc<Cell<bool>>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

struct World {
    clock: Clock,
    start: Instant,
    scripts: Vec<Vec<Act>>,
    handles: RefCell<Vec<Rc<Scheduled>>>,
    dropped: RefCell<Vec<Rc<Cell<bool>>>>,
    /// Deadlines (ns since start) of the timers, for the "never early" check.
    deadline: RefCell<Vec<Option<i64>>>,
    cancel_called: RefCell<Vec<bool>>,
    ran: RefCell<Vec<(usize, i64)>>,
    /// What went wrong inside a callback (a panic there would only reach the
    /// exception handler).
    faults: RefCell<Vec<String>>,
}

impl World {
    fn since_start(&self, t: Instant) -> i64 {
        if t >= self.start {
            (t - self.start).as_nanos() as i64
        } else {
            -((self.start - t).as_nanos() as i64)
        }
    }

    fn created(&self) -> usize {
        self.dropped.borrow().len()
    }

    fn act(w: &Rc<World>, lp: &Loop, a: &Act) {
        match *a {
            Act::Soon => {
                if let Some((id, token)) = w.new_id(None) {
                    let w2 = w.clone();
                    let h = lp.call_soon(move |lp| World::run(&w2, lp, id, token));
                    w.handles.borrow_mut().push(Rc::new(Scheduled::Soon(h)));
                }
            }
            Act::Later(d) => {
                let before = lp.time();
                let when_ns = w.since_start(before) + ms(d.into());
                if let Some((id, token)) = w.new_id(Some(when_ns)) {
                    let w2 = w.clone();
                    let h = lp.call_later(Duration::from_millis(d.into()), move |lp| {
                        World::run(&w2, lp, id, token)
                    });
                    w.check_when(&h, when_ns);
                    w.handles.borrow_mut().push(Rc::new(Scheduled::Timer(h)));
                }
            }
            Act::At(off) => {
                let now = lp.time();
                let when = if off >= 0 {
                    now + Duration::from_millis(off as u64)
                } else {
                    now - Duration::from_millis(off.unsigned_abs().into())
                };
                let when_ns = w.since_start(when);
                if let Some((id, token)) = w.new_id(Some(when_ns)) {
                    let w2 = w.clone();
                    let h = lp.call_at(when, move |lp| World::run(&w2, lp, id, token));
                    w.check_when(&h, when_ns);
                    w.handles.borrow_mut().push(Rc::new(Scheduled::Timer(h)));
                }
            }
            Act::Cancel(n) => {
                let created = w.created();
                if created > 0 {
                    let id = n as usize % created;
                    let h = w.handles.borrow()[id].clone();
                    let ran = w.ran.borrow().iter().any(|&(r, _)| r == id);
                    h.cancel();
                    if !ran {
                        w.cancel_called.borrow_mut()[id] = true;
                        if !w.dropped.borrow()[id].get() {
                            w.fault(format!(
                                "callback {id} cancelled before it ran, but its closure \
                                 was not dropped at once"
                            ));
                        }
                        if !h.is_cancelled() {
                            w.fault(format!(
                                "callback {id}: is_cancelled() false after cancel()"
                            ));
                        }
                    }
                }
            }
            Act::Advance(d) => w.clock.advance(Duration::from_millis(d.into())),
        }
    }

    fn new_id(&self, deadline: Option<i64>) -> Option<(usize, Token)> {
        let id = self.created();
        if id >= MAX_CALLBACKS {
            return None;
        }
        let flag = Rc::new(Cell::new(false));
        self.dropped.borrow_mut().push(flag.clone());
        self.deadline.borrow_mut().push(deadline);
        self.cancel_called.borrow_mut().push(false);
        Some((id, Token(flag)))
    }

    fn check_when(&self, h: &TimerHandle, when_ns: i64) {
        let got = self.since_start(h.when());
        if got != when_ns {
            self.fault(format!(
                "TimerHandle::when() is {got} ns after the start, want {when_ns}"
            ));
        }
    }

    fn fault(&self, msg: String) {
        self.faults.borrow_mut().push(msg);
    }

    fn run(w: &Rc<World>, lp: &Loop, id: usize, token: Token) {
        let now = w.since_start(lp.time());
        if w.cancel_called.borrow()[id] {
            w.fault(format!("callback {id} ran after it was cancelled"));
        }
        if let Some(when) = w.deadline.borrow()[id]
            && now < when
        {
            w.fault(format!(
                "timer {id} ran {} ns early (deadline {when}, clock {now})",
                when - now
            ));
        }
        w.ran.borrow_mut().push((id, now));
        let script = w.scripts[id % w.scripts.len()].clone();
        for a in &script {
            World::act(w, lp, a);
        }
        drop(token);
    }
}

/// Checks the loop against the model after a step.
fn compare(lp: &Loop, w: &World, m: &Model, step: usize) -> Result<(), TestCaseError> {
    let faults = w.faults.borrow();
    prop_assert!(faults.is_empty(), "after step {}: {:?}", step, *faults);
    prop_assert_eq!(
        &*w.ran.borrow(),
        &m.ran,
        "after step {}: what ran (id, ns since start) differs from the model",
        step
    );
    prop_assert_eq!(w.created(), m.created(), "after step {}", step);
    for id in 0..m.created() {
        prop_assert_eq!(
            !w.dropped.borrow()[id].get(),
            m.pending(id),
            "after step {}: callback {} alive must mean pending (done {}, cancelled {})",
            step,
            id,
            m.done[id],
            m.cancelled[id]
        );
        // As asyncio's `Handle.cancelled()`: true once `cancel()` was called, even
        // after the callback ran (which the cancel then does not affect).
        let h = w.handles.borrow()[id].clone();
        prop_assert_eq!(
            h.is_cancelled(),
            m.cancel_asked[id],
            "after step {}: is_cancelled() of {}",
            step,
            id
        );
    }
    prop_assert_eq!(
        lp.next_timeout(),
        m.next_timeout(),
        "after step {}: next_timeout",
        step
    );
    Ok(())
}

fn check_program(p: &Program) -> Result<(), TestCaseError> {
    let clock = Clock::manual();
    clock.set_auto_advance(false);
    let lp = Loop::builder().clock(clock.clone()).build().unwrap();
    let panics = Rc::new(RefCell::new(Vec::<String>::new()));
    let p2 = panics.clone();
    lp.set_exception_handler(move |_, ctx| p2.borrow_mut().push(ctx.to_string()));
    let w = Rc::new(World {
        clock: clock.clone(),
        start: lp.time(),
        scripts: p.scripts.clone(),
        handles: RefCell::new(Vec::new()),
        dropped: RefCell::new(Vec::new()),
        deadline: RefCell::new(Vec::new()),
        cancel_called: RefCell::new(Vec::new()),
        ran: RefCell::new(Vec::new()),
        faults: RefCell::new(Vec::new()),
    });
    let mut m = Model {
        scripts: p.scripts.clone(),
        ..Model::default()
    };
    for (i, step) in p.steps.iter().enumerate() {
        match step {
            Step::Act(a) => {
                World::act(&w, &lp, a);
                m.act(a);
            }
            Step::RunOnce => {
                lp.run_once(Some(Duration::ZERO)).unwrap();
                m.run_once();
            }
        }
        compare(&lp, &w, &m, i)?;
    }
    // Run what is left: advance to each next deadline, as a loop with auto-advance
    // would, until nothing is pending (bounded: each round runs or retires a
    // callback, and a program creates at most MAX_CALLBACKS).
    let mut rounds = 0;
    while m.has_pending() || !m.ready.is_empty() {
        rounds += 1;
        prop_assert!(rounds < 4 * MAX_CALLBACKS, "the model does not drain");
        if let Some(d) = m.next_deadline()
            && !d.is_zero()
        {
            clock.advance(d);
            m.now += d.as_nanos() as i64;
        }
        lp.run_once(Some(Duration::ZERO)).unwrap();
        m.run_once();
        compare(&lp, &w, &m, p.steps.len() + rounds)?;
    }
    prop_assert_eq!(lp.next_timeout(), None, "nothing left, nothing to wait for");
    prop_assert!(panics.borrow().is_empty(), "{:?}", panics.borrow());
    lp.close().unwrap();
    // Everything created has been run or dropped, once.
    prop_assert!(w.dropped.borrow().iter().all(|d| d.get()));
    Ok(())
}

#[test]
fn the_loop_runs_what_the_reference_model_runs() {
    let config = prop_util::config(1024);
    let mut runner = TestRunner::new(config);
    runner
        .run(&program(), |p| check_program(&p))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Scripts for the hand-written programs: only callback 1 does something (schedules
/// a callback, cancels callback 2).
fn known_scripts() -> Vec<Vec<Act>> {
    let mut scripts = vec![Vec::new(); 6];
    scripts[1] = vec![Act::Soon, Act::Cancel(2)];
    scripts
}

/// A hand-written program through the same harness: equal deadlines in scheduling
/// order, callbacks scheduled while running wait for the next iteration, a cancel
/// from inside a callback of a callback queued for the same iteration.
#[test]
fn the_harness_on_a_known_program() {
    use Act::*;
    let p = Program {
        scripts: known_scripts(),
        steps: vec![
            Step::Act(Later(5)), // 0
            Step::Act(Soon),     // 1: makes 4, cancels 2
            Step::Act(Soon),     // 2
            Step::Act(At(5)),    // 3: the same deadline as 0, scheduled later
            Step::Act(At(-3)),   // 4: in the past
            Step::RunOnce,
            Step::Act(Advance(5)),
            Step::RunOnce,
            Step::RunOnce,
        ],
    };
    check_program(&p).unwrap();
}

/// The model itself on that program, so that the harness is not vacuous.
#[test]
fn the_model_follows_asyncio_rules() {
    use Act::*;
    let mut m = Model {
        scripts: known_scripts(),
        ..Model::default()
    };
    m.act(&Later(5)); // 0
    m.act(&Soon); // 1: makes 5, cancels 2
    m.act(&Soon); // 2
    m.act(&At(5)); // 3: the same deadline as 0, scheduled later
    m.act(&At(-3)); // 4: in the past, due in the first iteration
    m.run_once();
    assert_eq!(
        m.ran,
        vec![(1, 0), (4, 0)],
        "ready callbacks before due timers; 2 was cancelled by 1 before its turn"
    );
    assert_eq!(m.created(), 6, "1 made a callback (5)");
    assert_eq!(m.next_timeout(), Some(Duration::ZERO), "5 is ready");
    m.run_once();
    assert_eq!(m.ran[2..], [(5, 0)]);
    assert_eq!(
        m.next_timeout(),
        None,
        "only advance() moves a manual clock"
    );
    assert_eq!(m.next_deadline(), Some(Duration::from_millis(5)));
    m.act(&Advance(5));
    m.run_once();
    assert_eq!(
        m.ran[3..],
        [(0, ms(5)), (3, ms(5))],
        "equal deadlines in scheduling order"
    );
    assert_eq!(m.next_timeout(), None);
}
