//! `Callback`, `TimerCallback` and `SendCallback`: a one-shot `FnOnce(&Loop)` stored
//! in place when it fits.
//!
//! Most callbacks capture a word or less (an `Rc`, a `Box`, an integer, a reference).
//! A `Box<dyn FnOnce>` would allocate for each of them; a [`Thunk`] keeps such a
//! closure inline, in the words a box pointer would take, and boxes only larger ones.
//! Either way it is its data words and a vtable of two functions. The ready queue's
//! `Callback` has one data word (its entries stay four words); a timer's
//! `TimerCallback` has three, so that a timer closure capturing an `Instant` and a
//! word (a deadline and what to do at it) costs no allocation either: the timer slot
//! grows by two words, and a `call_at` that boxed its closure saves a `malloc` and a
//! `free` (about 300 instructions of the ~520 `call_at` cost with 200,000 live timers).
//!
//! `unsafe` for speed, justified by a benchmark: `callbacks_batch` with a capturing
//! closure went from 63 ns to the cost of a capture-less one, and threadsafe calls
//! stopped allocating. The invariants are stated where they hold.

use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit, align_of, size_of};

use crate::Loop;

/// `W` words of closure storage.
type Words<const W: usize> = MaybeUninit<[usize; W]>;

/// How to call or drop the closure in a [`Thunk`]'s data words.
struct VTable<const W: usize> {
    /// Calls the closure, consuming it.
    call: unsafe fn(Words<W>, &Loop),
    /// Drops the closure without calling it.
    drop: unsafe fn(Words<W>),
}

/// A one-shot callback of the loop's thread. `!Send`: the closure need not be.
pub(crate) type Callback = Thunk<Local, 1>;

/// A timer's one-shot callback: as [`Callback`], with room for three words inline.
pub(crate) type TimerCallback = Thunk<Local, 3>;

/// A one-shot callback made from a `Send` closure (a threadsafe call): `Send`.
pub(crate) type SendCallback = Thunk<Sendable, 1>;

/// Marks a [`Thunk`] holding a closure that may not be `Send` (the raw pointer makes
/// the thunk `!Send` and `!Sync`).
pub(crate) struct Local {
    _not_send: PhantomData<*const ()>,
}

/// Marks a [`Thunk`] built by [`Thunk::new_send`] from a `Send` closure. (`Sync` is
/// harmless: nothing reaches the closure through `&Thunk`.)
pub(crate) struct Sendable;

/// A one-shot callback: `W` words holding the closure or its box, and a vtable.
pub(crate) struct Thunk<M, const W: usize> {
    /// Invariant: holds exactly one live closure of the type `vtable` was made for:
    /// the closure itself when it fits in `W` words (`Inline`), else, in the first
    /// word, a pointer from `Box::into_raw` (`Boxed`). It is consumed exactly once: by
    /// `call` (which skips `Drop`) or by `Drop`.
    data: Words<W>,
    vtable: &'static VTable<W>,
    _marker: PhantomData<M>,
}

/// Whether `F` can live in `W` data words.
const fn fits<F, const W: usize>() -> bool {
    size_of::<F>() <= size_of::<[usize; W]>() && align_of::<F>() <= align_of::<usize>()
}

struct Inline<F, const W: usize>(PhantomData<F>);

impl<F: FnOnce(&Loop), const W: usize> Inline<F, W> {
    const VTABLE: VTable<W> = VTable {
        call: Self::call,
        drop: Self::drop,
    };

    /// # Safety
    /// `data` holds a live `F` (written by `Thunk::make`), not used again after.
    unsafe fn call(data: Words<W>, lp: &Loop) {
        // SAFETY: per the contract, `data` holds an `F` that fits (checked by `fits`)
        // and nobody else reads it: we take it by value (a bitwise move).
        let f = unsafe { data.as_ptr().cast::<F>().read() };
        f(lp)
    }

    /// # Safety
    /// As for `call`.
    unsafe fn drop(data: Words<W>) {
        // SAFETY: as in `call`: the one live `F`, moved out and dropped here.
        drop(unsafe { data.as_ptr().cast::<F>().read() });
    }
}

struct Boxed<F, const W: usize>(PhantomData<F>);

impl<F: FnOnce(&Loop), const W: usize> Boxed<F, W> {
    const VTABLE: VTable<W> = VTable {
        call: Self::call,
        drop: Self::drop,
    };

    /// # Safety
    /// The first word of `data` holds a pointer from `Box::<F>::into_raw`, not used
    /// again after.
    unsafe fn call(data: Words<W>, lp: &Loop) {
        // SAFETY: per the contract, the first word was written by `Thunk::make` with a
        // pointer from `Box::into_raw`, turned back into its box exactly once.
        let f = unsafe { Box::from_raw(data.as_ptr().cast::<*mut F>().read()) };
        f(lp)
    }

    /// # Safety
    /// As for `call`.
    unsafe fn drop(data: Words<W>) {
        // SAFETY: as in `call`.
        drop(unsafe { Box::from_raw(data.as_ptr().cast::<*mut F>().read()) });
    }
}

impl<const W: usize> Thunk<Local, W> {
    /// Stores `f`, inline if it fits in `W` words.
    #[inline]
    pub(crate) fn new<F: FnOnce(&Loop) + 'static>(f: F) -> Thunk<Local, W> {
        Thunk::make(f)
    }
}

impl Thunk<Sendable, 1> {
    /// Stores a `Send` closure, inline if it fits in a word.
    #[inline]
    pub(crate) fn new_send<F: FnOnce(&Loop) + Send + 'static>(f: F) -> SendCallback {
        Thunk::make(f)
    }
}

impl<M, const W: usize> Thunk<M, W> {
    #[inline]
    fn make<F: FnOnce(&Loop) + 'static>(f: F) -> Thunk<M, W> {
        let f = ManuallyDrop::new(f);
        let mut data = Words::<W>::uninit();
        let vtable = if fits::<F, W>() {
            // SAFETY: `F` fits in the words (size and alignment checked by `fits`); the
            // closure is moved in (`f` is never dropped: ManuallyDrop).
            unsafe {
                data.as_mut_ptr()
                    .cast::<F>()
                    .write(ManuallyDrop::into_inner(f))
            };
            &Inline::<F, W>::VTABLE
        } else {
            const { assert!(W >= 1, "a Thunk needs a word for a box pointer") };
            let boxed = Box::into_raw(Box::new(ManuallyDrop::into_inner(f)));
            // SAFETY: a pointer fits in the first word (`W >= 1`, asserted above),
            // which is aligned for it (the words are `usize`s).
            unsafe { data.as_mut_ptr().cast::<*mut F>().write(boxed) };
            &Boxed::<F, W>::VTABLE
        };
        Thunk {
            data,
            vtable,
            _marker: PhantomData,
        }
    }

    /// Calls the closure, consuming it.
    #[inline]
    pub(crate) fn call(self, lp: &Loop) {
        let this = ManuallyDrop::new(self);
        // SAFETY: the data holds the live closure `vtable` was made for (type
        // invariant), and `this` is never used or dropped again, so it is consumed
        // exactly once.
        unsafe { (this.vtable.call)(this.data, lp) }
    }
}

impl<M, const W: usize> Drop for Thunk<M, W> {
    fn drop(&mut self) {
        // SAFETY: the closure was not called (`call` skips this), so it is live and
        // dropped here exactly once.
        unsafe { (self.vtable.drop)(self.data) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::rc::Rc;

    /// Counts its drops.
    struct Token(Rc<Cell<u32>>);
    impl Drop for Token {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn lp() -> Loop {
        Loop::new().unwrap()
    }

    #[test]
    fn what_fits_in_a_word() {
        assert!(fits::<(), 1>());
        assert!(fits::<Rc<u8>, 1>());
        assert!(fits::<Box<[u8]>, 1>() == (size_of::<Box<[u8]>>() <= 8));
        assert!(fits::<u64, 1>());
        assert!(!fits::<(u64, u64), 1>());
        assert!(
            fits::<(std::time::Instant, u64), 3>(),
            "a deadline and a word fit a timer"
        );
        assert!(!fits::<[u64; 4], 3>());
        assert!(!fits::<u128, 1>(), "too large");
        assert_eq!(size_of::<Callback>(), 2 * size_of::<usize>());
        assert_eq!(size_of::<TimerCallback>(), 4 * size_of::<usize>());
    }

    /// A capture aligned past a word never lives in the (word-aligned) data words,
    /// whatever its size: moving it in or out there would be a misaligned access.
    #[test]
    fn an_over_aligned_capture_is_boxed_even_when_it_is_small() {
        #[repr(align(16))]
        struct Wide(#[allow(dead_code)] u8);
        #[repr(align(16))]
        struct WideZst;
        assert_eq!(size_of::<Wide>(), 16);
        assert!(
            !fits::<Wide, 3>(),
            "16 bytes fit three words, the alignment does not"
        );
        assert!(!fits::<WideZst, 1>() && !fits::<WideZst, 3>());
        assert!(fits::<[u8; 24], 3>() && fits::<u32, 1>());
        // Boxed, it runs and drops as any other.
        let lp = lp();
        let drops = Rc::new(Cell::new(0));
        let t = Token(drops.clone());
        let w = Wide(9);
        TimerCallback::new(move |_| {
            let _t = &t;
            assert_eq!(&w as *const Wide as usize % 16, 0);
            assert_eq!(w.0, 9);
        })
        .call(&lp);
        let z = WideZst;
        drop(TimerCallback::new(move |_| {
            let _z = &z;
        }));
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn call_runs_once_and_drops_the_capture_once() {
        let lp = lp();
        for boxed in [false, true] {
            let drops = Rc::new(Cell::new(0));
            let calls = Rc::new(Cell::new(0));
            let t = Token(drops.clone());
            let c2 = calls.clone();
            let pad = [0u64; 4];
            let cb = if boxed {
                Callback::new(move |_| {
                    let _t = &t;
                    let _ = pad;
                    c2.set(c2.get() + 1);
                })
            } else {
                // An `Rc` token and a call counter would not fit together: count in
                // the token's own cell instead.
                let t = t;
                drop(c2);
                calls.set(1);
                Callback::new(move |_| {
                    let _t = t;
                })
            };
            cb.call(&lp);
            assert_eq!(calls.get(), 1);
            assert_eq!(drops.get(), 1, "boxed: {boxed}");
        }
    }

    #[test]
    fn dropping_uncalled_drops_the_capture_once() {
        for boxed in [false, true] {
            let drops = Rc::new(Cell::new(0));
            let t = Token(drops.clone());
            let cb = if boxed {
                let pad = [1u64; 3];
                Callback::new(move |_| {
                    let _ = (&t, pad);
                })
            } else {
                Callback::new(move |_| drop(t))
            };
            assert_eq!(drops.get(), 0);
            drop(cb);
            assert_eq!(drops.get(), 1, "boxed: {boxed}");
        }
    }

    #[test]
    fn a_panicking_callback_drops_its_capture_once() {
        let lp = lp();
        for boxed in [false, true] {
            let drops = Rc::new(Cell::new(0));
            let t = Token(drops.clone());
            let cb = if boxed {
                let pad = [2u64; 3];
                Callback::new(move |_| {
                    let _t = t;
                    let _ = pad;
                    panic!("boom");
                })
            } else {
                Callback::new(move |_| {
                    let _t = t;
                    panic!("boom");
                })
            };
            let r = catch_unwind(AssertUnwindSafe(|| cb.call(&lp)));
            assert!(r.is_err());
            assert_eq!(drops.get(), 1, "boxed: {boxed}");
        }
    }

    #[test]
    fn a_send_callback_crosses_threads_and_runs_once() {
        let lp = lp();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let h = hits.clone();
        let small = SendCallback::new_send(move |_| {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let h = hits.clone();
        let pad = [3u64; 4];
        let large = SendCallback::new_send(move |_| {
            let _ = pad;
            h.fetch_add(10, std::sync::atomic::Ordering::SeqCst);
        });
        let (small, large) = std::thread::spawn(move || (small, large)).join().unwrap();
        small.call(&lp);
        large.call(&lp);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 11);
        assert_eq!(std::sync::Arc::strong_count(&hits), 1, "captures dropped");
    }

    #[test]
    fn a_timer_callback_runs_or_drops_its_capture_once_inline_or_boxed() {
        let lp = lp();
        assert!(fits::<(Rc<u8>, std::time::Instant), 3>());
        assert!(!fits::<(Rc<u8>, [u64; 3]), 3>());
        for (boxed, call) in [(false, true), (false, false), (true, true), (true, false)] {
            let drops = Rc::new(Cell::new(0));
            let ran = Rc::new(Cell::new(0u64));
            let (t, r) = (Token(drops.clone()), ran.clone());
            let cb = if boxed {
                let pay = [1u64, 2, 3];
                TimerCallback::new(move |_| {
                    let _t = &t;
                    r.set(pay.iter().sum());
                })
            } else {
                // Two words: inline.
                TimerCallback::new(move |_| {
                    let _t = &t;
                    r.set(1);
                })
            };
            if call {
                cb.call(&lp);
                assert_eq!(ran.get(), if boxed { 6 } else { 1 });
            } else {
                drop(cb);
                assert_eq!(ran.get(), 0);
            }
            assert_eq!(drops.get(), 1, "boxed {boxed}, called {call}");
        }
        // Inline for real: a closure of exactly three words.
        let drops = Rc::new(Cell::new(0));
        let t = Token(drops.clone());
        let (a, b) = (std::time::Instant::now(), 7u32);
        let f = move |_: &Loop| {
            let _t = &t;
            assert_eq!(b, 7);
            let _ = a;
        };
        fn fits_val<F, const W: usize>(_: &F) -> bool {
            fits::<F, W>()
        }
        assert!(fits_val::<_, 3>(&f) && !fits_val::<_, 1>(&f));
        TimerCallback::new(f).call(&lp);
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn zero_sized_and_word_sized_values_round_trip() {
        let lp = lp();
        let seen = Rc::new(Cell::new(0u64));
        let s = seen.clone();
        Callback::new(move |_| s.set(7)).call(&lp);
        assert_eq!(seen.get(), 7);
        let out = Rc::new(Cell::new(0u64));
        let o = out.clone();
        let n = 0xdead_beef_u64;
        // Two words: boxed.
        Callback::new(move |_| o.set(n)).call(&lp);
        assert_eq!(out.get(), n);
        Callback::new(|_| {}).call(&lp);
    }
}
