//! [`Line`]: the FIFO of waiters under [`Permits`](super::permits::Permits), where
//! a waiter's place is a ticket number.
//!
//! Tickets are handed out in increasing order, and the line is served from its front,
//! so "has waiter `t` been served?" is one comparison with the first ticket not yet
//! served: a served waiter that comes to collect its permit touches no entry at all,
//! and serving one is popping the front of a deque. (The general
//! [`WaitQueue`](crate::waiters::WaitQueue) keeps served entries in a slab until
//! their owners remove them; permits need no more than the count.)
//!
//! A waiter that leaves while still queued (its future dropped) leaves a dead entry
//! behind when it stood between two live ones; dead entries at either end are
//! dropped at once, and the line is compacted once they outnumber the live ones, so
//! its length stays within twice the number of waiters however many come and go.

use std::collections::VecDeque;
use std::task::Waker;

use crate::waiters::Wakeups;

/// One place in the line.
struct Entry {
    ticket: u64,
    /// What to wake when served; `None` once woken without being served (see
    /// [`Line::wake_queued`]) until the waiter polls again.
    waker: Option<Waker>,
    /// `false`: the waiter left; the entry only waits to be dropped.
    live: bool,
}

/// A FIFO of waiters, each known by its ticket.
#[derive(Default)]
pub(crate) struct Line {
    /// Queued waiters (and dead entries) in ticket order.
    ///
    /// Invariants: tickets increase from front to back, and every one is at least
    /// `served`; the front and back entries are live (or the line is empty).
    entries: VecDeque<Entry>,
    /// Every ticket below this one has left the line: served, or dropped while
    /// queued. A waiter still holding such a ticket has been served.
    served: u64,
    /// The next ticket to hand out.
    next: u64,
    /// Live entries.
    queued: usize,
    /// Dead entries. Invariant: `dead <= queued` (after each removal), so that the
    /// line holds at most twice as many entries as waiters.
    dead: usize,
}

impl Line {
    /// Queues a waiter at the back; returns its ticket.
    #[inline(always)]
    pub(crate) fn push(&mut self, waker: &Waker) -> u64 {
        let ticket = self.next;
        self.next += 1;
        self.entries.push_back(Entry {
            ticket,
            waker: Some(waker.clone()),
            live: true,
        });
        self.queued += 1;
        ticket
    }

    /// Whether waiter `ticket` has been served (it is no longer queued).
    #[inline(always)]
    pub(crate) fn is_served(&self, ticket: u64) -> bool {
        ticket < self.served
    }

    /// Serves the oldest queued waiter, if there is one; its waker goes to
    /// `wakeups`. Returns whether a waiter was served.
    #[inline(always)]
    pub(crate) fn serve_one(&mut self, wakeups: &mut Wakeups) -> bool {
        match self.serve_one_taking() {
            None => false,
            Some(waker) => {
                if let Some(waker) = waker {
                    wakeups.wake(waker);
                }
                true
            }
        }
    }

    /// [`serve_one`](Line::serve_one), handing back the waker of the waiter served
    /// (`None`: no one was queued; `Some(None)`: it had no waker), for the caller to
    /// wake once its borrow has ended.
    #[inline(always)]
    pub(crate) fn serve_one_taking(&mut self) -> Option<Option<Waker>> {
        // The front is live (invariant): no dead entry to skip.
        let entry = self.entries.pop_front()?;
        debug_assert!(entry.live, "line: a dead entry at the front");
        self.served = entry.ticket + 1;
        self.queued -= 1;
        if self.dead > 0 {
            self.drop_dead_front();
        }
        Some(entry.waker)
    }

    /// Takes queued waiter `ticket` out of the line (its future was dropped). Its
    /// waker goes to `wakeups` to be dropped.
    pub(crate) fn leave(&mut self, ticket: u64, wakeups: &mut Wakeups) {
        let i = self.index(ticket);
        self.queued -= 1;
        let waker = if i == 0 {
            let entry = self.entries.pop_front().expect("found");
            self.served = entry.ticket + 1;
            self.drop_dead_front();
            entry.waker
        } else if i + 1 == self.entries.len() {
            let entry = self.entries.pop_back().expect("found");
            self.drop_dead_back();
            entry.waker
        } else {
            let entry = &mut self.entries[i];
            entry.live = false;
            self.dead += 1;
            let waker = entry.waker.take();
            if self.dead > self.queued {
                self.entries.retain(|e| e.live);
                self.dead = 0;
            }
            waker
        };
        if let Some(waker) = waker {
            wakeups.discard(waker);
        }
    }

    /// Makes sure queued waiter `ticket` will wake `waker`. A waker it replaces goes
    /// to `wakeups` to be dropped.
    pub(crate) fn register(&mut self, ticket: u64, waker: &Waker, wakeups: &mut Wakeups) {
        let i = self.index(ticket);
        let slot = &mut self.entries[i].waker;
        match slot {
            Some(old) if old.will_wake(waker) => {}
            _ => {
                if let Some(old) = slot.replace(waker.clone()) {
                    wakeups.discard(old);
                }
            }
        }
    }

    /// Wakes every queued waiter without serving it: each stays queued, and is woken
    /// once (polled again, it registers a new waker).
    pub(crate) fn wake_queued(&mut self, wakeups: &mut Wakeups) {
        for entry in &mut self.entries {
            if let Some(waker) = entry.waker.take() {
                wakeups.wake(waker);
            }
        }
    }

    /// How many waiters are queued.
    #[inline(always)]
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Where queued ticket `ticket` is.
    ///
    /// # Panics
    /// If it is not queued (a ticket served, or left already): a caller's bug.
    fn index(&self, ticket: u64) -> usize {
        // Without dead entries removed from the middle, the ticket is at its offset
        // from the front; otherwise, search (the tickets are sorted).
        let front = self.entries.front().map_or(u64::MAX, |e| e.ticket);
        let guess = ticket.wrapping_sub(front) as usize;
        match self.entries.get(guess) {
            Some(e) if e.ticket == ticket => guess,
            _ => self
                .entries
                .binary_search_by_key(&ticket, |e| e.ticket)
                .ok()
                .filter(|&i| self.entries[i].live)
                .expect("line: a ticket that is not queued"),
        }
    }

    #[cold]
    fn drop_dead_front(&mut self) {
        while let Some(e) = self.entries.front()
            && !e.live
        {
            self.served = e.ticket + 1;
            self.entries.pop_front();
            self.dead -= 1;
        }
    }

    fn drop_dead_back(&mut self) {
        while let Some(e) = self.entries.back()
            && !e.live
        {
            self.entries.pop_back();
            self.dead -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waiters::counting::{counter, wakes};

    #[test]
    fn serves_in_fifo_order_skipping_those_that_left() {
        let mut line = Line::default();
        let (c, w): (Vec<_>, Vec<_>) = (0..4).map(|_| counter()).unzip();
        let t: Vec<u64> = w.iter().map(|w| line.push(w)).collect();
        let mut wakeups = Wakeups::default();
        line.leave(t[1], &mut wakeups); // from the middle: a dead entry
        assert_eq!(line.queued(), 3);
        assert!(line.serve_one(&mut wakeups));
        assert!(line.serve_one(&mut wakeups));
        drop(wakeups);
        assert!(line.is_served(t[0]) && line.is_served(t[2]) && !line.is_served(t[3]));
        let woken: Vec<_> = c.iter().map(|c| wakes(c)).collect();
        assert_eq!(woken, [1, 0, 1, 0]);
        let mut wakeups = Wakeups::default();
        assert!(line.serve_one(&mut wakeups));
        assert!(!line.serve_one(&mut wakeups));
        assert_eq!((line.queued(), line.entries.len()), (0, 0));
    }

    /// Waiters that come and go between two that stay never make the line grow
    /// past twice its waiters.
    #[test]
    fn churn_between_two_waiters_stays_bounded() {
        let mut line = Line::default();
        let (_, w) = counter();
        let first = line.push(&w);
        let mut a = line.push(&w);
        let mut b = line.push(&w);
        for _ in 0..10_000 {
            // a leaves from the middle; a newcomer queues behind b; then b leaves
            // from the middle too.
            line.leave(a, &mut Wakeups::default());
            a = line.push(&w);
            std::mem::swap(&mut a, &mut b);
            assert!(
                line.entries.len() <= 2 * line.queued(),
                "{}",
                line.entries.len()
            );
        }
        assert_eq!(line.queued(), 3);
        // Everyone still queued is served, in ticket order.
        let mut order = vec![first, a.min(b), a.max(b)];
        order.sort();
        for t in order {
            assert!(!line.is_served(t));
            assert!(line.serve_one(&mut Wakeups::default()));
            assert!(line.is_served(t));
        }
        assert_eq!(line.entries.len(), 0);
    }

    #[test]
    fn leaving_from_either_end_drops_the_dead_entries_next_to_it() {
        let mut line = Line::default();
        let (_, w) = counter();
        let t: Vec<u64> = (0..5).map(|_| line.push(&w)).collect();
        let mut wakeups = Wakeups::default();
        line.leave(t[1], &mut wakeups);
        line.leave(t[3], &mut wakeups);
        line.leave(t[0], &mut wakeups); // front: t[1]'s dead entry goes too
        assert_eq!(line.entries.len(), 3);
        line.leave(t[4], &mut wakeups); // back: t[3]'s goes too
        assert_eq!(line.entries.len(), 1);
        assert_eq!(line.queued(), 1);
        assert!(line.serve_one(&mut wakeups));
        assert!(line.is_served(t[2]));
    }

    #[test]
    fn register_replaces_the_waker_and_wake_queued_keeps_the_place() {
        let mut line = Line::default();
        let (ca, a) = counter();
        let (cb, b) = counter();
        let ta = line.push(&a);
        let tb = line.push(&a);
        let mut wakeups = Wakeups::default();
        line.register(tb, &b, &mut wakeups);
        line.wake_queued(&mut wakeups);
        drop(wakeups);
        assert_eq!((wakes(&ca), wakes(&cb)), (1, 1));
        assert!(!line.is_served(ta) && !line.is_served(tb));
        let mut wakeups = Wakeups::default();
        line.register(ta, &a, &mut wakeups);
        assert!(line.serve_one(&mut wakeups));
        drop(wakeups);
        assert_eq!(wakes(&ca), 2);
    }
}
