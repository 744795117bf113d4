//! The wait queue of everything that futures wait on: a FIFO of parked waiters, each
//! with the waker to call when its turn comes. Under `sync/`'s events, conditions,
//! barriers and queue joiners (counted permits, under locks, semaphores and queues,
//! keep their waiters in a cheaper ticket line: `sync/line.rs`), a
//! [`Promise`](crate::Promise)'s awaiters and a `Server`'s `wait_closed` futures.
//!
//! Every operation is O(1), and a waiter that leaves (its future dropped: a timeout
//! expired, a task was cancelled) takes its waker with it, so a long-lived thing that
//! many short-lived futures wait on never accumulates dead wakers.
//!
//! A waiter gets a key when it parks ([`WaitQueue::push`]) and keeps it until it
//! leaves ([`WaitQueue::remove`]). In between, the primitive may *notify* it: the
//! entry leaves the FIFO but stays in the slab, marked notified, until its owner
//! comes to collect (or, dropped, hands on what it was given). Only the owner removes
//! its entry, so a key is never reused while someone still holds it.
//!
//! Wakers are never woken, nor dropped, while the primitive's `RefCell` is borrowed:
//! they are collected in a [`Wakeups`] that runs them once the borrow has ended, so a
//! waker that re-enters the primitive (or drops a task that does) finds it free.

use std::any::Any;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::task::Waker;

use slab::Slab;

use crate::event_loop::drop_payload;

/// No entry (a link's end, or an empty FIFO's head and tail).
const NIL: u32 = u32::MAX;

/// One parked waiter (32 bytes: a waiter is parked per awaited promise, so small
/// entries keep the common one-awaiter case cheap).
struct Entry {
    /// What to wake when the entry is notified. `None` once it has been taken to be
    /// woken (the entry is then notified).
    waker: Option<Waker>,
    /// The entry's neighbours in the FIFO while it is queued (`NIL` at the ends);
    /// meaningless once notified.
    prev: u32,
    next: u32,
    /// Queued (linked between `head` and `tail`) or notified. An entry starts queued,
    /// may become notified, and never goes back.
    queued: bool,
}

/// A FIFO of waiters: push at the tail, notify from the head, remove from anywhere,
/// each in O(1) (an intrusive doubly linked list threaded through a slab).
pub(crate) struct WaitQueue {
    /// Every entry whose owner has not removed it yet: queued and notified ones.
    entries: Slab<Entry>,
    /// The oldest queued entry. `NIL` exactly when no entry is queued.
    head: u32,
    /// The newest queued entry. `NIL` exactly when `head` is.
    tail: u32,
    /// How many entries are queued (linked between `head` and `tail`).
    queued: usize,
}

impl Default for WaitQueue {
    fn default() -> Self {
        WaitQueue {
            entries: Slab::new(),
            head: NIL,
            tail: NIL,
            queued: 0,
        }
    }
}

impl WaitQueue {
    /// Parks a new waiter at the tail; returns its key.
    ///
    /// # Panics
    /// With more than 4 billion waiters parked at once.
    #[inline(always)]
    pub(crate) fn push(&mut self, waker: &Waker) -> usize {
        let key = self.entries.insert(Entry {
            waker: Some(waker.clone()),
            prev: self.tail,
            next: NIL,
            queued: true,
        });
        assert!(
            key < NIL as usize,
            "more than 4 billion waiters parked on one thing"
        );
        let k = key as u32;
        match self.tail {
            NIL => self.head = k,
            tail => self.entry_mut(tail).next = k,
        }
        self.tail = k;
        self.queued += 1;
        key
    }

    /// Whether waiter `key` has been notified (it is no longer queued).
    #[inline(always)]
    pub(crate) fn is_notified(&self, key: usize) -> bool {
        !self.entries[key].queued
    }

    /// Makes sure a queued waiter `key` will wake `waker`. A waker it replaces is
    /// dropped by `wakeups`.
    pub(crate) fn register(&mut self, key: usize, waker: &Waker, wakeups: &mut Wakeups) {
        if let Some(old) = self.replace(key, waker) {
            wakeups.discard(old);
        }
    }

    /// [`register`](WaitQueue::register), handing back the waker replaced, for the
    /// caller to drop once its borrow has ended.
    #[must_use = "drop the replaced waker after the borrow ends"]
    pub(crate) fn replace(&mut self, key: usize, waker: &Waker) -> Option<Waker> {
        let entry = &mut self.entries[key];
        if !entry.queued {
            return None; // notified: nothing will wake it again
        }
        match &entry.waker {
            Some(old) if old.will_wake(waker) => None,
            _ => entry.waker.replace(waker.clone()),
        }
    }

    /// Notifies the oldest queued waiter, if there is one; its waker goes to
    /// `wakeups`. Returns whether a waiter was notified.
    #[inline(always)]
    pub(crate) fn notify_one(&mut self, wakeups: &mut Wakeups) -> bool {
        let key = self.head;
        if key == NIL {
            return false;
        }
        // The head has no predecessor: unlinking it is moving `head` on.
        let entry = self.entry_mut(key);
        debug_assert!(entry.queued && entry.prev == NIL, "wait queue: bad head");
        entry.queued = false;
        let next = entry.next;
        let waker = entry.waker.take();
        self.head = next;
        match next {
            NIL => self.tail = NIL,
            next => self.entry_mut(next).prev = NIL,
        }
        self.queued -= 1;
        if let Some(waker) = waker {
            wakeups.wake(waker);
        }
        true
    }

    /// Notifies every queued waiter, oldest first.
    pub(crate) fn notify_all(&mut self, wakeups: &mut Wakeups) {
        while self.notify_one(wakeups) {}
    }

    /// Removes waiter `key`, queued or notified; returns whether it had been notified.
    #[inline(always)]
    pub(crate) fn remove(&mut self, key: usize, wakeups: &mut Wakeups) -> bool {
        let (notified, waker) = self.take(key);
        if let Some(waker) = waker {
            wakeups.discard(waker);
        }
        notified
    }

    /// [`remove`](WaitQueue::remove), handing back the entry's waker (if it still has
    /// one), for the caller to drop once its borrow has ended.
    #[must_use = "drop the waker after the borrow ends"]
    #[inline(always)]
    pub(crate) fn take(&mut self, key: usize) -> (bool, Option<Waker>) {
        let notified = self.is_notified(key);
        if !notified {
            self.unlink(key as u32); // keys fit: checked by `push`
        }
        (notified, self.entries.remove(key).waker)
    }

    /// How many waiters are queued (not yet notified).
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    #[inline(always)]
    fn entry_mut(&mut self, key: u32) -> &mut Entry {
        &mut self.entries[key as usize]
    }

    /// Takes queued entry `key` out of the FIFO, leaving it notified.
    fn unlink(&mut self, key: u32) {
        let entry = self.entry_mut(key);
        assert!(
            entry.queued,
            "wait queue: unlinking an entry that is not queued"
        );
        entry.queued = false;
        let (prev, next) = (entry.prev, entry.next);
        match prev {
            NIL => self.head = next,
            prev => self.entry_mut(prev).next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.entry_mut(next).prev = prev,
        }
        self.queued -= 1;
    }
}

/// Wakers to wake, and stale wakers to drop, once the primitive is no longer
/// borrowed.
///
/// Declare it *before* the `RefCell` borrow it serves: locals drop in reverse order,
/// so the borrow ends first and then `Wakeups` runs, even when unwinding.
///
/// Nearly every operation wakes at most one waker and drops at most one: those two
/// live inline, and only a second of either kind moves everything past the first
/// into a heap block. An empty `Wakeups` costs three compares to drop, and one
/// waker to wake one more.
#[derive(Default)]
pub(crate) struct Wakeups {
    // `ManuallyDrop` only to spare the drop glue: `Drop` below moves every field out
    // (leaving `None`, which holds nothing), so nothing is ever leaked, and an empty
    // `Wakeups` drops with three compares.
    /// The first waker to wake.
    wake: ManuallyDrop<Option<Waker>>,
    /// The first stale waker to drop.
    discard: ManuallyDrop<Option<Waker>>,
    /// The wakers past the first of each kind, in the order they were queued;
    /// `None` until there is one.
    more: ManuallyDrop<Option<Box<More>>>,
}

/// The wakers of a [`Wakeups`] past the first of each kind.
#[derive(Default)]
struct More {
    wake: Vec<Waker>,
    discard: Vec<Waker>,
}

impl Wakeups {
    /// Queues `waker` to be woken (after those queued before it).
    #[inline]
    pub(crate) fn wake(&mut self, waker: Waker) {
        if self.wake.is_none() {
            *self.wake = Some(waker);
        } else {
            self.more.get_or_insert_default().wake.push(waker);
        }
    }

    /// Queues `waker` to be dropped without waking.
    #[inline]
    pub(crate) fn discard(&mut self, waker: Waker) {
        if self.discard.is_none() {
            *self.discard = Some(waker);
        } else {
            self.more.get_or_insert_default().discard.push(waker);
        }
    }
}

/// The path with more than one waker of a kind: drops the stale ones, then wakes
/// the rest, in order. A waker is foreign code (any executor's): one that
/// panics in `wake` or `drop` neither keeps the others from being woken nor, by a
/// second panic during the unwinding, aborts the process: each runs under
/// `catch_unwind`, and the first panic goes on once every waker has had its turn.
#[cold]
#[inline(never)]
#[allow(clippy::boxed_local)] // taking the box keeps its move and free out of `Drop`
fn run_all(discard: Option<Waker>, wake: Option<Waker>, more: Box<More>) {
    let More {
        wake: more_wake,
        discard: more_discard,
    } = *more;
    let mut panicked: Option<Box<dyn Any + Send>> = None;
    let mut note = |r: std::thread::Result<()>| {
        if let Err(p) = r {
            match panicked {
                None => panicked = Some(p),
                Some(_) => drop_payload(p),
            }
        }
    };
    for w in discard.into_iter().chain(more_discard) {
        note(catch_unwind(AssertUnwindSafe(move || drop(w))));
    }
    for w in wake.into_iter().chain(more_wake) {
        note(catch_unwind(AssertUnwindSafe(move || w.wake())));
    }
    if let Some(p) = panicked {
        resume_unwind(p);
    }
}

impl Drop for Wakeups {
    #[inline]
    fn drop(&mut self) {
        // Everything moves into locals first, so that a waker that panics (in `wake`
        // or `drop`) leaves the others to be dropped by the unwinding. Stale wakers
        // go first: a waker dropped is never one woken after it.
        let discard = self.discard.take();
        let wake = self.wake.take();
        let more = self.more.take();
        match more {
            None => {
                if let Some(stale) = discard {
                    // A stale waker that panics in `drop` still lets `wake` wake.
                    let wake = WakeOnUnwind(wake);
                    drop(stale);
                    wake.wake_now();
                } else if let Some(first) = wake {
                    first.wake();
                }
            }
            Some(more) => run_all(discard, wake, more),
        }
    }
}

/// Wakes its waker when dropped by an unwinding (or by [`WakeOnUnwind::wake_now`]).
///
/// Also a one-waker [`Wakeups`] for a primitive's fast path that wakes at most one
/// waker and drops none: declared (empty) before the `RefCell` borrow, given the
/// waker inside it, and woken with `wake_now` after the borrow ends, or by the
/// unwinding should the primitive panic in between.
#[derive(Default)]
pub(crate) struct WakeOnUnwind(pub(crate) Option<Waker>);

impl WakeOnUnwind {
    #[inline]
    pub(crate) fn wake_now(mut self) {
        if let Some(w) = self.0.take() {
            w.wake();
        }
    }
}

impl Drop for WakeOnUnwind {
    #[inline]
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn an_entry_is_small() {
        assert_eq!(std::mem::size_of::<super::Entry>(), 32);
    }
}

/// Wakers that count their wakes, for the unit tests of the waiter lists.
#[cfg(test)]
pub(crate) mod counting {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    /// A waker's wake count.
    pub(crate) struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waker and the count of its wakes.
    pub(crate) fn counter() -> (Arc<Counter>, Waker) {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    /// How many times `c`'s waker was woken.
    pub(crate) fn wakes(c: &Counter) -> usize {
        c.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::counting::{counter, wakes};
    use super::*;

    #[test]
    fn notifies_in_fifo_order() {
        let mut q = WaitQueue::default();
        let (ca, a) = counter();
        let (cb, b) = counter();
        let ka = q.push(&a);
        let kb = q.push(&b);
        assert_eq!(q.queued(), 2);

        let mut w = Wakeups::default();
        assert!(q.notify_one(&mut w));
        assert!(q.is_notified(ka) && !q.is_notified(kb));
        assert_eq!(wakes(&ca), 0, "woken only when the Wakeups drops");
        drop(w);
        assert_eq!((wakes(&ca), wakes(&cb)), (1, 0));

        let mut w = Wakeups::default();
        assert!(q.notify_one(&mut w));
        assert!(!q.notify_one(&mut w));
        drop(w);
        assert_eq!((wakes(&ca), wakes(&cb)), (1, 1));
        assert_eq!(q.queued(), 0);
    }

    #[test]
    fn remove_from_the_middle_keeps_the_order() {
        let mut q = WaitQueue::default();
        let (c0, w0) = counter();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        let _k0 = q.push(&w0);
        let k1 = q.push(&w1);
        let _k2 = q.push(&w2);
        let mut w = Wakeups::default();
        assert!(!q.remove(k1, &mut w), "k1 was only queued");
        assert_eq!(q.queued(), 2);
        q.notify_all(&mut w);
        drop(w);
        assert_eq!((wakes(&c0), wakes(&c1), wakes(&c2)), (1, 0, 1));
    }

    #[test]
    fn remove_reports_notification_and_frees_the_key() {
        let mut q = WaitQueue::default();
        let (_, a) = counter();
        let k = q.push(&a);
        let mut w = Wakeups::default();
        q.notify_one(&mut w);
        assert!(q.remove(k, &mut w));
        assert_eq!(q.entries.len(), 0);
        // The freed slot is reused, and the new entry starts queued.
        let k2 = q.push(&a);
        assert_eq!(k2, k);
        assert!(!q.is_notified(k2));
        assert_eq!((q.head, q.tail), (k2 as u32, k2 as u32));
    }

    /// A waker that logs `(name, woken)` when woken or dropped.
    struct Logged(
        &'static str,
        Arc<std::sync::Mutex<Vec<(&'static str, bool)>>>,
    );

    impl Wake for Logged {
        fn wake(self: Arc<Self>) {
            self.1.lock().unwrap().push((self.0, true));
        }
    }

    impl Drop for Logged {
        fn drop(&mut self) {
            self.1.lock().unwrap().push((self.0, false));
        }
    }

    /// A waker that panics when woken (`wake_panics`) or dropped unwoken.
    struct Bomb {
        wake_panics: bool,
        woken: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Wake for Bomb {
        fn wake(self: Arc<Self>) {
            self.woken.store(true, std::sync::atomic::Ordering::SeqCst);
            if self.wake_panics {
                panic!("a foreign waker panicked in wake");
            }
        }
    }

    impl Drop for Bomb {
        fn drop(&mut self) {
            if !self.wake_panics && !self.woken.load(std::sync::atomic::Ordering::SeqCst) {
                panic!("a foreign waker panicked in drop");
            }
        }
    }

    /// Foreign wakers that panic, in `wake` or in `drop`, neither keep the other
    /// wakers from being woken nor abort the process; the first panic goes on.
    #[test]
    fn panicking_wakers_leave_the_others_woken() {
        for (stale_bombs, wake_bombs) in [(1, 0), (0, 1), (1, 1), (2, 2)] {
            // (1, 0) has one waker to wake beside the stale one; the others have more.
            let mut wakeups = Wakeups::default();
            let mut counts = vec![];
            for _ in 0..stale_bombs {
                let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
                wakeups.discard(Waker::from(Arc::new(Bomb {
                    wake_panics: false,
                    woken,
                })));
            }
            for i in 0..3 {
                if stale_bombs == 1 && wake_bombs == 0 && i > 0 {
                    break; // one stale waker and one to wake: the inline path
                }
                if i < wake_bombs {
                    let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    wakeups.wake(Waker::from(Arc::new(Bomb {
                        wake_panics: true,
                        woken,
                    })));
                }
                let (c, w) = counter();
                wakeups.wake(w);
                counts.push(c);
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(wakeups)));
            assert!(r.is_err(), "the first panic goes on");
            for c in &counts {
                assert_eq!(wakes(c), 1, "stale {stale_bombs}, bombs {wake_bombs}");
            }
        }
    }

    /// Past the first waker of each kind: stale wakers are dropped first, then the
    /// others are woken in the order they were queued; nothing before the drop.
    #[test]
    fn wakeups_run_every_waker_in_order() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let w = |name| Waker::from(Arc::new(Logged(name, log.clone())));
        let mut wakeups = Wakeups::default();
        wakeups.wake(w("a"));
        wakeups.discard(w("x"));
        wakeups.wake(w("b"));
        wakeups.discard(w("y"));
        wakeups.wake(w("c"));
        assert!(log.lock().unwrap().is_empty());
        drop(wakeups);
        let log = log.lock().unwrap().clone();
        let woken: Vec<_> = log.iter().filter(|e| e.1).map(|e| e.0).collect();
        assert_eq!(woken, ["a", "b", "c"]);
        assert_eq!(log.len(), 8, "every waker dropped once: {log:?}");
        let last_stale = log.iter().rposition(|e| e.0 == "x" || e.0 == "y").unwrap();
        let first_woken = log.iter().position(|e| e.1).unwrap();
        assert!(last_stale < first_woken, "stale wakers go first: {log:?}");
    }

    #[test]
    fn register_replaces_a_different_waker() {
        let mut q = WaitQueue::default();
        let (ca, a) = counter();
        let (cb, b) = counter();
        let k = q.push(&a);
        let mut w = Wakeups::default();
        q.register(k, &b, &mut w);
        q.notify_one(&mut w);
        drop(w);
        assert_eq!((wakes(&ca), wakes(&cb)), (0, 1));
    }
}
