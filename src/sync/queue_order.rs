//! The order in which a queue hands out its items: first in first out ([`Queue`]),
//! last in first out ([`LifoQueue`]), or smallest first ([`PriorityQueue`], with
//! Python's `heapq` algorithms, so that equal items come out in the order asyncio's
//! `PriorityQueue` gives them).
//!
//! [`Queue`]: super::Queue
//! [`LifoQueue`]: super::LifoQueue
//! [`PriorityQueue`]: super::PriorityQueue

use std::collections::VecDeque;

/// Where `push` puts an item and where `pop` takes one from.
pub(crate) enum Order<T> {
    /// Push at the back, pop from the front.
    Fifo,
    /// Push at the back, pop from the back.
    Lifo,
    /// A binary min-heap laid out in the deque (never wrapped: only its back is
    /// pushed and popped), ordered by `less` (`T`'s `<`, fixed when the queue was
    /// made, so that only the constructor needs `T: Ord`).
    Heap(fn(&T, &T) -> bool),
}

impl<T> Order<T> {
    /// Adds `item` to `items`.
    ///
    /// If `T`'s `Ord` panics, the item is in `items` all the same (only the heap's
    /// order may be off): the queue's counts stay true.
    #[inline]
    pub(crate) fn push(&self, items: &mut VecDeque<T>, item: T) {
        items.push_back(item);
        if let Order::Heap(less) = *self {
            sift_down(items, less, 0, items.len() - 1);
        }
    }

    /// Takes the next item out of `items`, if any.
    #[inline]
    pub(crate) fn pop(&self, items: &mut VecDeque<T>) -> Option<T> {
        match *self {
            Order::Fifo => items.pop_front(),
            Order::Lifo => items.pop_back(),
            Order::Heap(less) => {
                // heapq.heappop: the last item takes the root's place and sifts.
                let top = items.swap_remove_back(0)?;
                if !items.is_empty() {
                    sift_up(items, less, 0);
                }
                Some(top)
            }
        }
    }
}

/// `heapq._siftdown`: moves the item at `pos` up towards `start` while it is less
/// than its parent.
fn sift_down<T>(heap: &mut VecDeque<T>, less: fn(&T, &T) -> bool, start: usize, mut pos: usize) {
    while pos > start {
        let parent = (pos - 1) >> 1;
        if !less(&heap[pos], &heap[parent]) {
            break;
        }
        heap.swap(pos, parent);
        pos = parent;
    }
}

/// `heapq._siftup`: moves the item at `pos` down to a leaf along the smaller
/// children (the right one unless the left is strictly less), then back up.
fn sift_up<T>(heap: &mut VecDeque<T>, less: fn(&T, &T) -> bool, mut pos: usize) {
    let start = pos;
    let end = heap.len();
    let mut child = 2 * pos + 1;
    while child < end {
        let right = child + 1;
        if right < end && !less(&heap[child], &heap[right]) {
            child = right;
        }
        heap.swap(pos, child);
        pos = child;
        child = 2 * pos + 1;
    }
    sift_down(heap, less, start, pos);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items that compare by their first field only, to see which of equal items
    /// comes out first.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Key(u8, char);

    fn less(a: &Key, b: &Key) -> bool {
        a.0 < b.0
    }

    /// The order was computed with CPython's `heapq` (`heappush` each of these,
    /// then `heappop` until empty, items compared by their first field).
    #[test]
    fn equal_items_come_out_in_heapq_order() {
        let order = Order::Heap(less);
        let mut items = VecDeque::new();
        let input = [
            Key(1, 'a'),
            Key(1, 'b'),
            Key(0, 'c'),
            Key(1, 'd'),
            Key(1, 'e'),
            Key(0, 'f'),
            Key(2, 'g'),
            Key(1, 'h'),
        ];
        for k in input {
            order.push(&mut items, k);
        }
        let out: String = std::iter::from_fn(|| order.pop(&mut items))
            .map(|k| k.1)
            .collect();
        assert_eq!(out, HEAPQ_ORDER);
    }

    const HEAPQ_ORDER: &str = "cfahbdeg";

    #[test]
    fn fifo_and_lifo() {
        let mut items = VecDeque::new();
        for i in 0..3 {
            Order::Fifo.push(&mut items, i);
        }
        assert_eq!(Order::Fifo.pop(&mut items), Some(0));
        assert_eq!(Order::Lifo.pop(&mut items), Some(2));
        assert_eq!(Order::<i32>::Lifo.pop(&mut VecDeque::new()), None);
    }
}
