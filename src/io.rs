//! File-descriptor readers and writers over `mio::Poll`, level-triggered.
//!
//! asyncio's selector loop is level-triggered: a reader that leaves data unread is
//! called again on the next iteration. mio registers everything edge-triggered, so
//! user fds are not registered through `mio::Registry`. They go into the same epoll
//! instance (`Poll::as_raw_fd`) with a direct `epoll_ctl` *without* `EPOLLET`, and
//! their events come back through `Poll::poll` like any other, carrying our token.
//! This costs no syscall per callback (a re-arm after each call would cost one) and
//! keeps the kernel as the single source of readiness.
//!
//! The loop's own sources (the `mio::Waker` of the remote queue and a `timerfd` for
//! sub-millisecond timer deadlines) stay edge-triggered and need no draining.
//!
//! # Tokens and stale events
//! One registration per fd holds its reader and writer. Its token (a [`Token`]) is the slab key
//! plus a generation that changes on every `add_*`, so an event reported for a
//! registration that was replaced or removed in the meantime (even if the fd number
//! was reused) matches nothing and is dropped. Each reader and writer also has a
//! unique id, checked when its queued call runs.
//!
//! # Stale registrations
//! An fd closed while registered leaves its entry in our table (the kernel drops its
//! own entry once the file is closed for good). Its number may then be reused:
//! - by another fd of the user's: `add_*` on the number finds the kernel entry gone
//!   (`EPOLL_CTL_MOD` says `ENOENT`), registers the new fd afresh and evicts the stale
//!   watchers; `remove_*` finds nothing to modify or delete in the kernel;
//! - by a library socket: it registers through `register_source`, which evicts the
//!   stale entry of its number on the spot. Later `add_*` on the number then fails
//!   (`EEXIST`) and `remove_*` finds nothing: neither can reach the socket's
//!   registration (a `MOD` or `DEL` by number would have).
//!
//! If the closed fd's file stays open elsewhere (a `dup`, a child process), the kernel
//! keeps its entry under the old number and keeps reporting it, with the old token;
//! those events match no registration and are dropped, but a level-triggered entry
//! whose file stays ready wakes every poll. Nothing can remove it by number any more:
//! remove a reader before closing its fd.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use slab::Slab;

use crate::Loop;
use crate::ready::{Entry, Ready, key_u32};
use crate::source::{Readiness, SOURCE_BIT, SourceEntry, SourceHandler, SourceId};
use crate::token::Token;

/// A reader or writer callback: called every iteration its fd is ready.
pub(crate) type IoCallback = Box<dyn FnMut(&Loop)>;

/// The token of the remote queue's `mio::Waker`.
pub(crate) const WAKER: mio::Token = mio::Token(usize::MAX);
/// The token of the timerfd.
const TIMER: mio::Token = mio::Token(usize::MAX - 1);

/// A reader or writer callback the loop lets go of (removed, replaced, evicted),
/// with where it was registered: the caller drops it outside its borrow.
pub(crate) type Displaced = (IoCallback, &'static Location<'static>);

/// What `Io::add` did: the registration's key, the new watcher's id, and the
/// callbacks it displaced.
pub(crate) type Added = (u32, u64, [Option<Displaced>; 2]);

struct Watcher {
    id: u64,
    /// `None` while the callback runs (it is taken out so it may touch the loop).
    callback: Option<IoCallback>,
    location: &'static Location<'static>,
}

impl Watcher {
    fn into_displaced(self) -> Option<Displaced> {
        Some((self.callback?, self.location))
    }
}

struct Reg {
    fd: RawFd,
    /// Changes on every `add_*`; part of the epoll token.
    generation: u32,
    reader: Option<Watcher>,
    writer: Option<Watcher>,
}

impl Reg {
    fn slot(&mut self, write: bool) -> &mut Option<Watcher> {
        if write {
            &mut self.writer
        } else {
            &mut self.reader
        }
    }

    fn events(&self) -> u32 {
        let mut ev = 0;
        if self.reader.is_some() {
            ev |= libc::EPOLLIN as u32;
        }
        if self.writer.is_some() {
            ev |= libc::EPOLLOUT as u32;
        }
        ev
    }

    fn token(&self, key: u32) -> u64 {
        let generation = self.generation;
        Token { key, generation }.to_word()
    }
}

/// What one poll brought.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct PollOutcome {
    /// Reader/writer calls queued.
    pub(crate) queued: usize,
    /// The remote queue's waker fired.
    pub(crate) woken: bool,
}

/// The poller and every fd registration.
pub(crate) struct Io {
    poll: Poll,
    events: Events,
    regs: Slab<Reg>,
    by_fd: HashMap<RawFd, u32>,
    /// Library-owned, edge-triggered sources (sockets).
    sources: Slab<SourceEntry>,
    next_id: u64,
    next_generation: u32,
    timerfd: OwnedFd,
    /// The deadline the timerfd is armed for, if any.
    armed: Option<u64>,
    /// The last poll may have left events on the epoll's ready list that nobody
    /// watching the epoll fd from outside has been told about; see
    /// [`Io::ready_unannounced`].
    unannounced: bool,
}

impl Io {
    /// The poller, and the waker other threads use to interrupt it.
    pub(crate) fn new() -> io::Result<(Io, mio::Waker)> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        // SAFETY: timerfd_create has no memory preconditions; its result is checked below.
        let tfd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if tfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `tfd` is a freshly created descriptor that nothing else owns.
        let timerfd = unsafe { OwnedFd::from_raw_fd(tfd) };
        poll.registry().register(
            &mut SourceFd(&timerfd.as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        let io = Io {
            poll,
            events: Events::with_capacity(1024),
            regs: Slab::new(),
            by_fd: HashMap::new(),
            sources: Slab::new(),
            next_id: 1,
            next_generation: 1,
            timerfd,
            armed: None,
            unannounced: false,
        };
        Ok((io, waker))
    }

    /// Whether the epoll set holds anything but the loop's own wake-up and timer fds
    /// (a user reader or writer, a library source). When it does not, a poll that
    /// may not block can report nothing the loop does not check for itself on every
    /// iteration (threadsafe calls, due timers).
    pub(crate) fn watches_fds(&self) -> bool {
        !self.regs.is_empty() || !self.sources.is_empty()
    }

    /// The epoll fd: readable when any registered source is ready.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    /// Registers `callback` as the reader (`write == false`) or writer of `fd`,
    /// replacing any previous one. The callbacks it displaced (the replaced one, and
    /// one of a stale registration) are returned to be dropped by the caller. On
    /// error nothing changes, and `callback` is handed back to be dropped by the
    /// caller too (never here: a closure's `Drop` may use the loop).
    pub(crate) fn add(
        &mut self,
        fd: RawFd,
        write: bool,
        callback: IoCallback,
        location: &'static Location<'static>,
    ) -> Result<Added, (io::Error, IoCallback)> {
        if fd < 0 {
            return Err((io::Error::from_raw_os_error(libc::EBADF), callback));
        }
        let generation = self.next_generation;
        let epfd = self.poll.as_raw_fd();
        let this = if write { libc::EPOLLOUT } else { libc::EPOLLIN } as u32;
        let (key, displaced) = if let Some(&key) = self.by_fd.get(&fd) {
            let reg = &mut self.regs[key as usize];
            let token = Token { key, generation }.to_word();
            // The fd may have been closed (and its number reused by another fd of the
            // user's) since it was registered: the kernel then forgot it, and MOD says
            // ENOENT. The other direction's watcher belonged to the old file: it goes,
            // so that it never hears the new file's events. (A number reused by a
            // library socket never gets here: `register_source` evicted the stale
            // entry, so MOD cannot reach the socket's registration.)
            let mut stale = None;
            match epoll_ctl(epfd, libc::EPOLL_CTL_MOD, fd, reg.events() | this, token) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if let Err(e) = epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, this, token) {
                        return Err((e, callback));
                    }
                    stale = reg.slot(!write).take();
                }
                Err(e) => return Err((e, callback)),
            }
            reg.generation = generation;
            let old = reg.slot(write).take();
            let displaced = [old, stale].map(|w| w.and_then(Watcher::into_displaced));
            (key, displaced)
        } else {
            let key = key_u32(self.regs.vacant_key());
            let token = Token { key, generation }.to_word();
            // EEXIST: the fd is already in the epoll set but not as a user fd: it is
            // one of the loop's own (its wake-up or timer fd, a library socket). The
            // error stands: taking it over would break the loop (asyncio refuses an
            // fd used by a transport the same way).
            if let Err(e) = epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, this, token) {
                let e = match e.raw_os_error() {
                    Some(libc::EEXIST) => io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "fd {fd} is used by the loop itself (one of its sockets, or its \
                             own wake-up or timer fd): use that socket's API, not \
                             add_reader/add_writer"
                        ),
                    ),
                    _ => e,
                };
                return Err((e, callback));
            }
            self.regs.insert(Reg {
                fd,
                generation,
                reader: None,
                writer: None,
            });
            self.by_fd.insert(fd, key);
            (key, [None, None])
        };
        self.next_generation = self.next_generation.wrapping_add(1);
        let id = self.next_id;
        self.next_id += 1;
        *self.regs[key as usize].slot(write) = Some(Watcher {
            id,
            callback: Some(callback),
            location,
        });
        Ok((key, id, displaced))
    }

    /// Forgets the registration of `fd`, if any, without touching the epoll set: the
    /// number now names a file the loop registered by other means (a library socket),
    /// so the entry is stale (its fd was closed while registered), and the kernel
    /// entry under that number is the new owner's. Returns the stale callbacks, for
    /// the caller to drop.
    fn evict(&mut self, fd: RawFd) -> [Option<Displaced>; 2] {
        let Some(key) = self.by_fd.remove(&fd) else {
            return [None, None];
        };
        let reg = self.regs.remove(key as usize);
        [reg.reader, reg.writer].map(|w| w.and_then(Watcher::into_displaced))
    }

    /// Removes the reader or writer of `fd`; returns its callback (`Some(None)` if
    /// it is running right now), or `None` if there was none.
    pub(crate) fn remove(&mut self, fd: RawFd, write: bool) -> Option<Option<Displaced>> {
        let key = *self.by_fd.get(&fd)?;
        self.remove_key(key, write, None)
    }

    /// Removes the reader or writer of registration `key` if its id is `id`.
    pub(crate) fn cancel(&mut self, key: u32, id: u64, write: bool) -> Option<Option<Displaced>> {
        self.remove_key(key, write, Some(id))
    }

    fn remove_key(&mut self, key: u32, write: bool, id: Option<u64>) -> Option<Option<Displaced>> {
        let epfd = self.poll.as_raw_fd();
        let reg = self.regs.get_mut(key as usize)?;
        let slot = reg.slot(write);
        match (slot.as_ref(), id) {
            (None, _) => return None,
            (Some(w), Some(id)) if w.id != id => return None,
            _ => {}
        }
        let old = slot.take().expect("checked above");
        let ev = reg.events();
        if ev == 0 {
            // Errors are ignored: the fd may already be closed, and then the kernel
            // has dropped it from the epoll set by itself.
            let _ = epoll_ctl(epfd, libc::EPOLL_CTL_DEL, reg.fd, 0, 0);
            let fd = reg.fd;
            self.regs.remove(key as usize);
            self.by_fd.remove(&fd);
        } else {
            let token = reg.token(key);
            let _ = epoll_ctl(epfd, libc::EPOLL_CTL_MOD, reg.fd, ev, token);
        }
        Some(old.into_displaced())
    }

    /// Whether the reader/writer `(key, id)` is still registered.
    pub(crate) fn is_current(&self, key: u32, id: u64, write: bool) -> bool {
        let Some(reg) = self.regs.get(key as usize) else {
            return false;
        };
        let w = if write { &reg.writer } else { &reg.reader };
        matches!(w, Some(w) if w.id == id)
    }

    /// Takes the callback of `(key, id)` out to run it.
    pub(crate) fn take(
        &mut self,
        key: u32,
        id: u64,
        write: bool,
    ) -> Option<(IoCallback, &'static Location<'static>)> {
        let reg = self.regs.get_mut(key as usize)?;
        match reg.slot(write) {
            Some(w) if w.id == id => Some((w.callback.take()?, w.location)),
            _ => None,
        }
    }

    /// Puts a callback back after it ran. If it was removed or replaced meanwhile,
    /// hands it back so the caller drops it.
    pub(crate) fn put_back(
        &mut self,
        key: u32,
        id: u64,
        write: bool,
        callback: IoCallback,
    ) -> Option<IoCallback> {
        if let Some(reg) = self.regs.get_mut(key as usize)
            && let Some(w) = reg.slot(write)
            && w.id == id
            && w.callback.is_none()
        {
            w.callback = Some(callback);
            return None;
        }
        Some(callback)
    }

    /// Polls the OS, queueing a call for every ready reader and writer.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        ready: &mut Ready,
    ) -> io::Result<PollOutcome> {
        let mut out = PollOutcome::default();
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(out),
            Err(e) => return Err(e),
        }
        let mut taken = 0;
        let mut level = false;
        for ev in self.events.iter() {
            taken += 1;
            let token = ev.token();
            if token == WAKER {
                out.woken = true;
                continue;
            }
            if token == TIMER {
                self.armed = None; // it fired: a later deadline must arm it again
                continue;
            }
            let Token { key, generation } = Token::from_word(token.0 as u64);
            if key & SOURCE_BIT != 0 {
                let key = key & !SOURCE_BIT;
                if matches!(self.sources.get(key as usize), Some(s) if s.generation == generation) {
                    ready.push(Entry::Source {
                        token: Token { key, generation },
                        readiness: Readiness::from_event(ev).bits(),
                    });
                    out.queued += 1;
                }
                continue;
            }
            let Some(reg) = self.regs.get(key as usize) else {
                continue;
            };
            if reg.generation != generation {
                continue; // a registration that has since been replaced
            }
            // As asyncio's selectors: an error or hang-up wakes both directions.
            let hup_or_err = ev.is_error() || ev.is_read_closed() || ev.is_write_closed();
            if let Some(w) = &reg.reader
                && (ev.is_readable() || ev.is_priority() || hup_or_err)
            {
                ready.push(Entry::Io {
                    key,
                    id: w.id,
                    write: false,
                });
                out.queued += 1;
                level = true;
            }
            if let Some(w) = &reg.writer
                && (ev.is_writable() || hup_or_err)
            {
                ready.push(Entry::Io {
                    key,
                    id: w.id,
                    write: true,
                });
                out.queued += 1;
                level = true;
            }
        }
        // The kernel put every level-triggered entry it reported back on its ready
        // list, and a full buffer left the rest there: an outside watcher of our fd
        // hears of neither.
        self.unannounced = level || taken == self.events.capacity();
        Ok(out)
    }

    /// Whether the epoll still holds ready events that an edge-triggered watcher of
    /// [`Io::raw_fd`] (a host's `AsyncFd`) was never told about, so that the loop must
    /// make a fresh edge before control goes back to the host. Forgets the question
    /// until the next poll asks it again.
    ///
    /// An epoll fd gives its own watchers a new edge only when a new event arrives.
    /// A level-triggered fd the last poll reported (a reader that left data unread, a
    /// writer still writable) is put back on the ready list without one. Only then
    /// does this cost a syscall: one `poll(2)` of the epoll fd, which checks each
    /// entry on that list and is readable only if one of them really is still ready.
    pub(crate) fn ready_unannounced(&mut self) -> bool {
        if !std::mem::take(&mut self.unannounced) {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: self.poll.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd array of length 1 for the whole call, which
        // does not block (timeout 0).
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        // Readable, or the check failed (EINTR, ENOMEM): a spurious wake is harmless,
        // a missed one stalls the host.
        rc != 0
    }

    /// Registers a library-owned source (whose descriptor is `fd`), edge-triggered,
    /// for `interest`.
    ///
    /// A user registration still recorded under `fd` is stale: its fd was closed while
    /// registered, and the number now belongs to this source. It is evicted (its
    /// callbacks are returned, to be dropped by the caller), so that a later
    /// `add_reader` / `remove_reader` on the number can never reach the source's
    /// registration.
    pub(crate) fn register_source(
        &mut self,
        source: &mut impl mio::event::Source,
        fd: RawFd,
        interest: Interest,
        handler: Rc<dyn SourceHandler>,
        location: &'static Location<'static>,
    ) -> io::Result<(SourceId, [Option<Displaced>; 2])> {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let entry = self.sources.vacant_entry();
        let key = key_u32(entry.key());
        assert!(key < SOURCE_BIT, "too many sources");
        let token = Token {
            key: key | SOURCE_BIT,
            generation,
        }
        .to_mio();
        self.poll.registry().register(source, token, interest)?;
        entry.insert(SourceEntry {
            generation,
            handler,
            location,
        });
        Ok((SourceId { key, generation }, self.evict(fd)))
    }

    /// Deregisters a source; hands its handler back to be dropped by the caller.
    pub(crate) fn deregister_source(
        &mut self,
        source: &mut impl mio::event::Source,
        id: SourceId,
    ) -> Option<Rc<dyn SourceHandler>> {
        match self.sources.get(id.key as usize) {
            Some(s) if s.generation == id.generation => {}
            _ => return None,
        }
        // The socket may be broken already; the kernel forgets it when it is closed.
        let _ = self.poll.registry().deregister(source);
        Some(self.sources.remove(id.key as usize).handler)
    }

    /// The handler of source `id`, for an event of its generation.
    pub(crate) fn source_handler(
        &self,
        id: SourceId,
    ) -> Option<(Rc<dyn SourceHandler>, &'static Location<'static>)> {
        match self.sources.get(id.key as usize) {
            Some(s) if s.generation == id.generation => Some((s.handler.clone(), s.location)),
            _ => None,
        }
    }

    /// Arms the timerfd for `deadline` (loop-clock nanoseconds, `now` being the
    /// current reading), or disarms it for `None`. No syscall if already so armed.
    pub(crate) fn arm_timer(&mut self, deadline: Option<u64>, now: u64) -> io::Result<()> {
        if deadline == self.armed {
            return Ok(());
        }
        let value = match deadline {
            // A relative timer fires no earlier than `now` (read before this call)
            // plus the wait, so never before the deadline. A zero value would disarm.
            Some(d) => Duration::from_nanos(d.saturating_sub(now).max(1)),
            None => Duration::ZERO,
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: value.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: value.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec that outlives the call; the old value
        // pointer may be null.
        let rc = unsafe {
            libc::timerfd_settime(self.timerfd.as_raw_fd(), 0, &spec, std::ptr::null_mut())
        };
        if rc < 0 {
            self.armed = None;
            return Err(io::Error::last_os_error());
        }
        self.armed = deadline;
        Ok(())
    }

    /// Arms the timerfd for `deadline` if it is earlier than what it is armed for.
    /// `now` (the current reading) is called only then: a timer scheduled after the
    /// armed deadline, the common case, costs no clock read.
    pub(crate) fn arm_timer_if_earlier(
        &mut self,
        deadline: u64,
        now: impl FnOnce() -> u64,
    ) -> io::Result<()> {
        match self.armed {
            Some(armed) if armed <= deadline => Ok(()),
            _ => self.arm_timer(Some(deadline), now()),
        }
    }

    /// Forgets every registration, handing the callbacks back to be dropped by the
    /// caller. The fds themselves are left open: the loop never closes fds it is given.
    pub(crate) fn clear(&mut self) -> Vec<Displaced> {
        let epfd = self.poll.as_raw_fd();
        let mut out = Vec::new();
        for reg in self.regs.drain() {
            let _ = epoll_ctl(epfd, libc::EPOLL_CTL_DEL, reg.fd, 0, 0);
            for w in [reg.reader, reg.writer].into_iter().flatten() {
                out.extend(w.into_displaced());
            }
        }
        self.by_fd.clear();
        out
    }

    /// Forgets every source (the loop is closing), handing the handlers back to be
    /// dropped by the caller; their sockets close when the handlers drop them.
    pub(crate) fn clear_sources(&mut self) -> Vec<Rc<dyn SourceHandler>> {
        self.sources.drain().map(|s| s.handler).collect()
    }
}

/// `epoll_ctl` with a level-triggered event mask.
fn epoll_ctl(epfd: RawFd, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call (the kernel
    // ignores it for EPOLL_CTL_DEL); bad fds are reported through the return value.
    let rc = unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
