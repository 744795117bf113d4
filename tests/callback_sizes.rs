//! Callbacks and timer callbacks of every small size and alignment (stored inline or
//! boxed): each runs once with its capture intact and aligned, and each capture is
//! dropped exactly once, whether the callback runs, panics, is cancelled or is
//! dropped by `close()`, including a capture whose `Drop` panics.

#[path = "util/futures.rs"]
mod futures_util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use evloop::Loop;
use futures_util::{Reports, run_iterations};

thread_local! {
    static DROPS: Cell<usize> = const { Cell::new(0) };
    static RUNS: Cell<usize> = const { Cell::new(0) };
}

fn drops() -> usize {
    DROPS.with(Cell::get)
}

fn runs() -> usize {
    RUNS.with(Cell::get)
}

/// A capture of `N` bytes with a fill pattern, aligned as its wrapper says.
#[derive(Clone)]
struct Bytes<const N: usize>([u8; N]);

impl<const N: usize> Bytes<N> {
    fn new(seed: u8) -> Self {
        let mut a = [0u8; N];
        for (i, b) in a.iter_mut().enumerate() {
            *b = seed.wrapping_add(i as u8).wrapping_mul(31);
        }
        Bytes(a)
    }
    fn check(&self, seed: u8) {
        for (i, b) in self.0.iter().enumerate() {
            assert_eq!(
                *b,
                seed.wrapping_add(i as u8).wrapping_mul(31),
                "byte {i} of {N}"
            );
        }
    }
}

macro_rules! aligned {
    ($name:ident, $align:literal) => {
        #[repr(align($align))]
        struct $name<const N: usize> {
            bytes: Bytes<N>,
            seed: u8,
            panic_on_drop: bool,
        }
        impl<const N: usize> $name<N> {
            fn new(seed: u8, panic_on_drop: bool) -> Self {
                $name {
                    bytes: Bytes::new(seed),
                    seed,
                    panic_on_drop,
                }
            }
            fn check(&self) {
                let addr = self as *const Self as usize;
                assert_eq!(addr & ($align - 1), 0, "capture misaligned ({} bytes)", N);
                self.bytes.check(self.seed);
            }
        }
        impl<const N: usize> Drop for $name<N> {
            fn drop(&mut self) {
                DROPS.with(|d| d.set(d.get() + 1));
                if self.panic_on_drop && !std::thread::panicking() {
                    panic!("capture drop");
                }
            }
        }
    };
}

aligned!(A1, 1);
aligned!(A2, 2);
aligned!(A4, 4);
aligned!(A8, 8);
aligned!(A16, 16);

#[derive(Clone, Copy, Debug)]
enum Fate {
    Soon,
    Later,
    LaterCancelled,
    SoonCancelled,
    LaterAtClose,
    SoonAtClose,
    SoonPanics,
    LaterPanics,
}

const FATES: [Fate; 8] = [
    Fate::Soon,
    Fate::Later,
    Fate::LaterCancelled,
    Fate::SoonCancelled,
    Fate::LaterAtClose,
    Fate::SoonAtClose,
    Fate::SoonPanics,
    Fate::LaterPanics,
];

macro_rules! exercise {
    ($lp:expr, $ty:ident, $n:literal, $fate:expr, $panic_drop:expr) => {{
        let lp: &Loop = $lp;
        let cap = $ty::<$n>::new($n as u8 ^ 0x5a, $panic_drop);
        let panics = matches!($fate, Fate::SoonPanics | Fate::LaterPanics);
        let f = move |_: &Loop| {
            cap.check();
            RUNS.with(|r| r.set(r.get() + 1));
            if panics {
                panic!("callback");
            }
        };
        match $fate {
            Fate::Soon | Fate::SoonPanics | Fate::SoonAtClose => {
                lp.call_soon(f);
            }
            Fate::SoonCancelled => {
                lp.call_soon(f).cancel();
            }
            Fate::Later | Fate::LaterPanics | Fate::LaterAtClose => {
                let d = if matches!($fate, Fate::LaterAtClose) {
                    3600
                } else {
                    0
                };
                lp.call_later(Duration::from_secs(d), f);
            }
            Fate::LaterCancelled => {
                lp.call_later(Duration::from_secs(3600), f).cancel();
            }
        }
    }};
}

macro_rules! sizes {
    ($lp:expr, $ty:ident, $fate:expr, $pd:expr, [$($n:literal),*]) => {
        $( exercise!($lp, $ty, $n, $fate, $pd); )*
    };
}

fn all_kinds(lp: &Loop, fate: Fate, panic_drop: bool) -> usize {
    // Each capture struct holds `N` bytes, a seed and a flag, padded to its
    // alignment: 2..=42 bytes, so every inline/boxed boundary of 1 and 3 words.
    sizes!(
        lp,
        A1,
        fate,
        panic_drop,
        [0, 1, 2, 5, 6, 7, 14, 15, 16, 21, 22, 23, 30, 38]
    );
    sizes!(lp, A2, fate, panic_drop, [0, 1, 6, 7, 13, 14, 22, 30]);
    sizes!(lp, A4, fate, panic_drop, [0, 4, 5, 12, 20, 21, 28, 36]);
    sizes!(lp, A8, fate, panic_drop, [0, 6, 7, 14, 22, 23, 30]);
    sizes!(lp, A16, fate, panic_drop, [0, 1, 8, 14, 16, 30]);
    14 + 8 + 8 + 7 + 6
}

#[test]
fn callbacks_of_every_small_size_and_alignment_run_or_drop_exactly_once() {
    for panic_drop in [false, true] {
        for fate in FATES {
            let lp = Loop::new().unwrap();
            let reports = Reports::install(&lp);
            let (d0, r0) = (drops(), runs());
            let n = all_kinds(&lp, fate, panic_drop);
            let cancelled = matches!(fate, Fate::LaterCancelled | Fate::SoonCancelled);
            let at_close = matches!(fate, Fate::LaterAtClose | Fate::SoonAtClose);
            if !at_close {
                run_iterations(&lp, 3);
            }
            lp.close().unwrap();
            drop(lp);
            let ran = if cancelled || at_close { 0 } else { n };
            assert_eq!(runs() - r0, ran, "{fate:?} panic_drop {panic_drop}");
            assert_eq!(drops() - d0, n, "{fate:?} panic_drop {panic_drop}");
            let panics = matches!(fate, Fate::SoonPanics | Fate::LaterPanics);
            let expected = if panics || panic_drop { n } else { 0 };
            assert_eq!(
                reports.len(),
                expected,
                "{fate:?} panic_drop {panic_drop}: {:?}",
                reports.get().first()
            );
        }
    }
}

#[test]
fn a_sixteen_aligned_timer_capture_is_aligned_where_it_runs() {
    #[repr(align(16))]
    #[derive(Clone, Copy)]
    struct Wide(u8);
    let lp = Loop::new().unwrap();
    let seen = Rc::new(Cell::new(0));
    for _ in 0..64 {
        let w = Wide(3);
        let s = seen.clone();
        lp.call_later(Duration::ZERO, move |_| {
            assert_eq!(&w as *const Wide as usize % 16, 0);
            assert_eq!(w.0, 3);
            s.set(s.get() + 1);
        });
        let w = Wide(4);
        lp.call_soon(move |_| assert_eq!(&w as *const Wide as usize % 16, 0));
    }
    // A zero-sized capture aligned to 16: boxed (a dangling, aligned box).
    #[repr(align(16))]
    struct Zst;
    let z = Zst;
    let s = seen.clone();
    lp.call_later(Duration::ZERO, move |_| {
        assert_eq!(&z as *const Zst as usize % 16, 0);
        s.set(s.get() + 1);
    });
    run_iterations(&lp, 3);
    assert_eq!(seen.get(), 65);
}
