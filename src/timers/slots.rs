//! The timer store's slots: a slab kept in fixed-size chunks.
//!
//! Like `slab::Slab`, a slot is named by a key that stays valid until it is removed,
//! and vacant slots are reused last-freed first. Unlike a slab in one `Vec`, growing
//! never moves a slot: a full store gets one more chunk of [`CHUNK`] slots. A burst of
//! timers therefore touches each byte of its slots once. In one `Vec` every doubling
//! copied the slots into fresh memory: for 200,000 timers a third of the store's page
//! faults were those copies (`perf record -e page-faults`), and first-touch faults are
//! most of what scheduling a burst of timers costs on a VM.
//!
//! Keys are `chunk * CHUNK + offset`. Only the first chunk grows by doubling (a loop
//! with a few timers holds a few slots), up to [`CHUNK`]; every later chunk is
//! allocated whole.
//!
//! Invariants: `chunks[..n-1]` each hold exactly [`CHUNK`] entries and the last one
//! at most that many (`end` entries in all, every key below `end` exists); `free`
//! links every vacant entry exactly once; `len` counts the occupied ones. No chunk
//! has room for more than [`CHUNK`] entries.

use std::mem;

/// Slots per chunk: 1,024 timer slots are 48 KiB.
const CHUNK_BITS: u32 = 10;
pub(crate) const CHUNK: usize = 1 << CHUNK_BITS;
const MASK: usize = CHUNK - 1;

/// The end of the free list.
const NONE: usize = usize::MAX;

pub(super) enum Entry<T> {
    /// Vacant; the next vacant key, or [`NONE`].
    Vacant(usize),
    Occupied(T),
}

/// A slab of `T` in chunks. See the module docs.
pub(crate) struct Slots<T> {
    chunks: Vec<Vec<Entry<T>>>,
    /// How many entries exist (occupied or vacant): the next key pushed.
    end: usize,
    /// The last-freed vacant key, or [`NONE`].
    free: usize,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Vec::new(),
            end: 0,
            free: NONE,
            len: 0,
        }
    }
}

impl<T> Slots<T> {
    /// A store with room for `n` slots.
    pub(crate) fn with_capacity(n: usize) -> Slots<T> {
        let mut s = Slots::default();
        let mut left = n;
        while left > 0 {
            let size = if s.chunks.is_empty() {
                left.min(CHUNK)
            } else {
                CHUNK
            };
            s.chunks.push(Vec::with_capacity(size));
            left = left.saturating_sub(CHUNK);
        }
        s
    }

    /// Occupied slots.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots held, occupied or not (the chunks' capacity).
    pub(crate) fn capacity(&self) -> usize {
        match self.chunks.first() {
            None => 0,
            Some(first) => first.capacity() + (self.chunks.len() - 1) * CHUNK,
        }
    }

    /// Stores `value`; returns its key.
    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if self.free != NONE {
            let key = self.free;
            let entry = &mut self.chunks[key >> CHUNK_BITS][key & MASK];
            match mem::replace(entry, Entry::Occupied(value)) {
                Entry::Vacant(next) => self.free = next,
                Entry::Occupied(_) => unreachable!("the free list names an occupied slot"),
            }
            return key;
        }
        let key = self.end;
        let chunk = key >> CHUNK_BITS;
        if chunk == self.chunks.len() {
            // The first chunk grows as it fills; later ones come whole.
            self.chunks.push(if chunk == 0 {
                Vec::new()
            } else {
                Vec::with_capacity(CHUNK)
            });
        }
        let c = &mut self.chunks[chunk];
        if c.len() == c.capacity() {
            // Only the first chunk fills below CHUNK. It doubles, but never past
            // CHUNK: after a shrink its capacity is any number, and plain doubling
            // would give it room it never uses (1,332 slots from 333).
            c.reserve_exact(c.capacity().max(4).min(CHUNK - c.len()));
        }
        c.push(Entry::Occupied(value));
        self.end += 1;
        key
    }

    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.chunks.get(key >> CHUNK_BITS)?.get(key & MASK)? {
            Entry::Occupied(v) => Some(v),
            Entry::Vacant(_) => None,
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self
            .chunks
            .get_mut(key >> CHUNK_BITS)?
            .get_mut(key & MASK)?
        {
            Entry::Occupied(v) => Some(v),
            Entry::Vacant(_) => None,
        }
    }

    /// Takes the value out of slot `key`, which becomes the first to be reused.
    ///
    /// # Panics
    /// If `key` is vacant or was never handed out (the store's callers check first).
    pub(crate) fn remove(&mut self, key: usize) -> T {
        let entry = self
            .chunks
            .get_mut(key >> CHUNK_BITS)
            .and_then(|c| c.get_mut(key & MASK))
            .expect("Slots::remove: a key that was never handed out");
        match mem::replace(entry, Entry::Vacant(self.free)) {
            Entry::Occupied(v) => {
                self.free = key;
                self.len -= 1;
                v
            }
            vacant => {
                *entry = vacant;
                panic!("Slots::remove: a vacant key");
            }
        }
    }

    /// Makes every slot vacant, keeping the chunks: the next values fill them front
    /// to back. For an empty store only (its entries are all vacant: nothing drops).
    pub(crate) fn reset_empty(&mut self) {
        debug_assert!(self.is_empty());
        for c in &mut self.chunks {
            c.clear();
        }
        self.end = 0;
        self.free = NONE;
    }

    /// Frees the chunks past the highest occupied slot (and the first chunk's room
    /// past it), then relinks the vacant slots lowest first, so that the new tail can
    /// empty in turn.
    pub(crate) fn shrink_to_fit(&mut self) {
        let end = self.highest_key().map_or(0, |k| k + 1);
        self.chunks.truncate(end.div_ceil(CHUNK));
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(end - (end - 1) / CHUNK * CHUNK);
        }
        if self.chunks.len() == 1 {
            self.chunks[0].shrink_to_fit();
        }
        self.end = end;
        self.free = NONE;
        for key in (0..end).rev() {
            if let Entry::Vacant(next) = &mut self.chunks[key >> CHUNK_BITS][key & MASK] {
                *next = self.free;
                self.free = key;
            }
        }
    }

    /// The highest occupied key.
    pub(crate) fn highest_key(&self) -> Option<usize> {
        (0..self.end)
            .rev()
            .find(|&k| matches!(self.chunks[k >> CHUNK_BITS][k & MASK], Entry::Occupied(_)))
    }

    /// Takes every value out, lowest key first, leaving the store empty (and
    /// without chunks).
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        for chunk in mem::take(&mut self.chunks) {
            out.extend(chunk.into_iter().filter_map(|e| match e {
                Entry::Occupied(v) => Some(v),
                Entry::Vacant(_) => None,
            }));
        }
        *self = Slots::default();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts and removes against a map: keys stay valid, values are found
    /// under their keys, vacant keys are reused last-freed first, `len` is right.
    #[test]
    fn behaves_as_a_map_with_reused_keys() {
        let mut s = Slots::default();
        let mut model: HashMap<usize, u64> = HashMap::new();
        let mut freed: Vec<usize> = Vec::new();
        let mut next = crate::timers::tests::xorshift(0x9E37_79B9_7F4A_7C15);
        for i in 0..20_000u64 {
            let x = next();
            if x.is_multiple_of(3) && !model.is_empty() {
                let key = *model.keys().nth((x as usize / 3) % model.len()).unwrap();
                assert_eq!(s.remove(key), model.remove(&key).unwrap());
                freed.push(key);
            } else {
                let key = s.insert(i);
                if let Some(expected) = freed.pop() {
                    assert_eq!(key, expected, "the last-freed key is reused first");
                }
                assert!(model.insert(key, i).is_none(), "key {key} handed out twice");
            }
            assert_eq!(s.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(s.get(*k), Some(v));
        }
        for k in &freed {
            assert_eq!(s.get(*k), None);
        }
        assert!(s.capacity() >= s.len());
        let mut all = s.take_all();
        let mut expected: Vec<u64> = model.into_values().collect();
        all.sort_unstable();
        expected.sort_unstable();
        assert_eq!(all, expected);
        assert_eq!((s.len(), s.capacity()), (0, 0));
    }

    /// Growing past a chunk allocates whole chunks and never moves a slot (only
    /// the first chunk grows by doubling, until it is full).
    #[test]
    fn growth_adds_chunks_without_moving_slots() {
        let mut s = Slots::default();
        for i in 0..(CHUNK as u64 + 1) {
            assert_eq!(s.insert(i), i as usize);
        }
        let addrs = [0, CHUNK].map(|k| s.get(k).unwrap() as *const u64);
        for i in (CHUNK as u64 + 1)..(3 * CHUNK as u64 + 5) {
            assert_eq!(s.insert(i), i as usize);
        }
        assert_eq!(
            [0, CHUNK].map(|k| s.get(k).unwrap() as *const u64),
            addrs,
            "a slot moved"
        );
        assert_eq!(s.capacity(), 4 * CHUNK);
        assert_eq!(s.get(2 * CHUNK + 7), Some(&(2 * CHUNK as u64 + 7)));
        assert_eq!(s.get(5 * CHUNK), None);
    }

    /// Shrinking keeps every live key and frees the chunks past the highest one; the
    /// vacant keys below it are handed out again lowest first.
    #[test]
    fn shrink_keeps_live_keys_and_relinks_lowest_first() {
        let mut s = Slots::default();
        for i in 0..(3 * CHUNK) {
            s.insert(i);
        }
        for k in (0..3 * CHUNK).filter(|&k| k != 5 && k != CHUNK + 2) {
            s.remove(k);
        }
        s.shrink_to_fit();
        assert_eq!(s.capacity(), 2 * CHUNK);
        assert_eq!(s.highest_key(), Some(CHUNK + 2));
        assert_eq!((s.get(5), s.get(CHUNK + 2)), (Some(&5), Some(&(CHUNK + 2))));
        assert_eq!([s.insert(0), s.insert(0), s.insert(0)], [0, 1, 2]);
        assert_eq!(s.len(), 5);
        // Keys past the old end come after the relinked ones.
        for _ in 0..(CHUNK + 3 - 5) {
            s.insert(0);
        }
        assert_eq!(s.insert(0), CHUNK + 3);
    }

    /// Every operation against a model that names the key each insert must return:
    /// a stack of vacant keys (last freed on top; after a shrink, the lowest on top)
    /// and the end. Shrinks keep every live value and free every chunk past the
    /// highest one; `take_all` hands the values back lowest key first.
    #[test]
    fn random_use_matches_a_model_of_the_free_list() {
        let mut next = crate::timers::tests::xorshift(0xD1B5_4A32_D192_ED03);
        let mut s: Slots<u64> = Slots::default();
        let mut live: HashMap<usize, u64> = HashMap::new();
        let mut vacant: Vec<usize> = Vec::new();
        let mut end = 0usize;
        let mut value = 0u64;
        for step in 0..crate::timers::tests::random_steps(1_500) {
            match next() % 10 {
                0..=4 => {
                    for _ in 0..next() % 700 {
                        let expected = vacant.pop().unwrap_or_else(|| {
                            end += 1;
                            end - 1
                        });
                        assert_eq!(s.insert(value), expected);
                        live.insert(expected, value);
                        value += 1;
                    }
                }
                5..=7 => {
                    for _ in 0..next() % 800 {
                        if live.is_empty() {
                            break;
                        }
                        let key = (next() as usize) % end;
                        if !live.contains_key(&key) {
                            continue;
                        }
                        assert_eq!(s.remove(key), live.remove(&key).unwrap());
                        vacant.push(key);
                    }
                }
                8 => {
                    s.shrink_to_fit();
                    end = live.keys().max().map_or(0, |k| k + 1);
                    vacant.retain(|&k| k < end);
                    vacant.sort_unstable_by(|a, b| b.cmp(a));
                    assert_eq!(s.highest_key(), end.checked_sub(1));
                    let chunks = end.div_ceil(CHUNK);
                    if chunks <= 1 {
                        assert_eq!(s.capacity(), end, "one chunk: exactly the slots in use");
                    } else {
                        assert_eq!(s.capacity(), chunks * CHUNK);
                    }
                }
                _ => {
                    if next().is_multiple_of(4) {
                        let mut expected: Vec<(usize, u64)> = live.drain().collect();
                        expected.sort_unstable();
                        let expected: Vec<u64> = expected.into_iter().map(|e| e.1).collect();
                        assert_eq!(s.take_all(), expected, "lowest key first");
                        assert_eq!(s.capacity(), 0);
                        vacant.clear();
                        end = 0;
                    } else if live.is_empty() {
                        let capacity = s.capacity();
                        s.reset_empty();
                        assert_eq!(s.capacity(), capacity);
                        vacant.clear();
                        end = 0;
                    }
                }
            }
            assert_eq!(s.len(), live.len());
            assert!(s.capacity() >= end);
            assert!(
                s.chunks.iter().all(|c| c.capacity() <= CHUNK),
                "a chunk past CHUNK"
            );
            if step % 20 == 0 {
                for (&k, v) in &live {
                    assert_eq!(s.get(k), Some(v));
                }
                for &k in &vacant {
                    assert_eq!(s.get(k), None);
                }
            }
            assert_eq!(s.get(end), None);
        }
    }

    /// An emptied store reset refills from key 0, in its old chunks.
    #[test]
    fn reset_empty_refills_front_to_back() {
        let mut s = Slots::default();
        let keys: Vec<usize> = (0..2000).map(|i| s.insert(i)).collect();
        for k in keys.iter().rev() {
            s.remove(*k);
        }
        let capacity = s.capacity();
        s.reset_empty();
        assert_eq!(s.capacity(), capacity, "the chunks are kept");
        assert_eq!([s.insert(7), s.insert(8)], [0, 1]);
        assert_eq!(s.get(1), Some(&8));
    }

    /// Values left in the store drop with it.
    #[test]
    fn values_drop_with_the_store() {
        let counter = std::rc::Rc::new(());
        let mut s = Slots::default();
        for _ in 0..(CHUNK + 10) {
            s.insert(counter.clone());
        }
        s.remove(3);
        assert_eq!(std::rc::Rc::strong_count(&counter), CHUNK + 10);
        drop(s);
        assert_eq!(std::rc::Rc::strong_count(&counter), 1);
    }

    #[test]
    #[should_panic(expected = "a vacant key")]
    fn removing_a_vacant_key_panics() {
        let mut s = Slots::default();
        let k = s.insert(1);
        s.remove(k);
        s.remove(k);
    }
}
