//! Helpers for the tests of the futures layer (promises, tasks, executor, time,
//! task groups): hand-written futures that count their polls, expose their waker or
//! wait for a cross-thread gate, and a recorder for the exception handler.
//!
//! Include it as `#[path = "util/futures.rs"] mod futures_util;`.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use evloop::{ErrorContext, Loop};

/// Runs one iteration of `lp` without blocking.
pub fn run_briefly(lp: &Loop) {
    lp.run_once(Some(Duration::ZERO)).expect("run_once");
}

/// Runs `n` non-blocking iterations.
pub fn run_iterations(lp: &Loop, n: usize) {
    for _ in 0..n {
        run_briefly(lp);
    }
}

/// A poll counter shared between a test and its futures (loop thread only).
#[derive(Clone, Default)]
pub struct Polls(Rc<Cell<usize>>);

impl Polls {
    pub fn new() -> Polls {
        Polls::default()
    }

    pub fn get(&self) -> usize {
        self.0.get()
    }

    pub fn inc(&self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Wraps a future and counts how often it is polled.
pub struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: Polls,
}

pub fn count_polls<F: Future>(polls: &Polls, fut: F) -> CountPolls<F> {
    CountPolls {
        inner: Box::pin(fut),
        polls: polls.clone(),
    }
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.inc();
        self.inner.as_mut().poll(cx)
    }
}

/// On its first poll wakes itself `wakes` times (by reference and through clones)
/// and returns `Pending`; every later poll returns `Pending` without waking, so each
/// extra step would show as an extra poll. Counts its polls.
pub struct WakeSelf {
    wakes: usize,
    polls: Polls,
}

pub fn wake_self(wakes: usize, polls: &Polls) -> WakeSelf {
    WakeSelf {
        wakes,
        polls: polls.clone(),
    }
}

impl Future for WakeSelf {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.inc();
        if self.polls.get() == 1 {
            for i in 0..self.wakes {
                if i % 2 == 0 {
                    cx.waker().wake_by_ref();
                } else {
                    // Wake by value, through a clone (another path of the waker).
                    let w = cx.waker().clone();
                    w.wake();
                }
            }
        }
        Poll::Pending
    }
}

/// A waker slot that any thread may read: filled by [`GrabWaker`].
#[derive(Clone, Default)]
pub struct WakerSlot(Arc<Mutex<Option<Waker>>>);

impl WakerSlot {
    pub fn new() -> WakerSlot {
        WakerSlot::default()
    }

    pub fn get(&self) -> Option<Waker> {
        self.0.lock().unwrap().clone()
    }

    pub fn take(&self) -> Option<Waker> {
        self.0.lock().unwrap().take()
    }

    pub fn set(&self, w: &Waker) {
        *self.0.lock().unwrap() = Some(w.clone());
    }
}

/// Stores its task's waker in a [`WakerSlot`] on every poll and never completes.
pub struct GrabWaker(pub WakerSlot);

impl Future for GrabWaker {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.set(cx.waker());
        Poll::Pending
    }
}

/// A one-shot gate that any thread may open; [`Gate::wait`] is a `Send` future that
/// completes once it is open. Lets `Send` futures (`Remote::spawn`) wait for a test.
#[derive(Clone, Default)]
pub struct Gate {
    open: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
    /// How many times a `wait` future was polled.
    polls: Arc<AtomicUsize>,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    pub fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }

    /// Spins (yielding) until a `wait` future was polled at least once, or panics
    /// after `limit`.
    pub fn wait_polled(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.polls() == 0 {
            assert!(Instant::now() < deadline, "the gate was never polled");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn wait(&self) -> GateWait {
        GateWait(self.clone())
    }
}

pub struct GateWait(Gate);

impl Future for GateWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let g = &self.0;
        g.polls.fetch_add(1, Ordering::SeqCst);
        // Store the waker before checking, so that an `open` in between is not lost.
        *g.waker.lock().unwrap() = Some(cx.waker().clone());
        if g.open.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// One report to the exception handler.
#[derive(Clone, Debug)]
pub struct Report {
    pub message: String,
    pub panic_message: Option<String>,
    /// (file, line) where the failing callback or task was scheduled.
    pub location: Option<(String, u32)>,
}

/// Everything the exception handler was handed.
#[derive(Clone, Default)]
pub struct Reports(Rc<RefCell<Vec<Report>>>);

impl Reports {
    /// Installs an exception handler on `lp` that records every report.
    pub fn install(lp: &Loop) -> Reports {
        let r = Reports::default();
        let rec = r.clone();
        lp.set_exception_handler(move |_, ctx: &ErrorContext| {
            rec.0.borrow_mut().push(Report {
                message: ctx.message().to_owned(),
                panic_message: ctx.panic_message().map(str::to_owned),
                location: ctx.location().map(|l| (l.file().to_owned(), l.line())),
            });
        });
        r
    }

    pub fn get(&self) -> Vec<Report> {
        self.0.borrow().clone()
    }

    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}
