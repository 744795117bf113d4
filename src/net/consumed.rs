//! A byte buffer read from the front: bytes before `start` are consumed, and are
//! given back lazily (shared by the transport's write buffer and the streams' read
//! buffer).

use std::cell::Cell;

/// Consumes `n` more bytes from the front of `buf`, whose first `start` bytes were
/// consumed already. Invariant kept: `start <= buf.len()`. An emptied buffer is
/// cleared (its room kept); otherwise the consumed front is moved out only once it is
/// over half the buffer and over 64 KiB, so that consuming costs O(1) amortized and a
/// long-lived buffer does not grow without bound.
pub(crate) fn consume(buf: &mut Vec<u8>, start: &Cell<usize>, n: usize) {
    let at = start.get() + n;
    debug_assert!(at <= buf.len(), "consumed past the end");
    if at == buf.len() {
        buf.clear();
        start.set(0);
    } else if at > buf.len() / 2 && at > 64 * 1024 {
        buf.drain(..at);
        start.set(0);
    } else {
        start.set(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumes_lazily_and_clears_when_empty() {
        let mut buf: Vec<u8> = (0..=255).cycle().take(200_000).collect();
        let start = Cell::new(0);
        consume(&mut buf, &start, 10);
        assert_eq!((start.get(), buf.len()), (10, 200_000), "small fronts stay");
        consume(&mut buf, &start, 100_000);
        assert_eq!(
            (start.get(), buf.len()),
            (0, 99_990),
            "a large front is moved out"
        );
        assert_eq!(
            buf[0],
            (100_010 % 256) as u8,
            "the bytes that remain, in order"
        );
        consume(&mut buf, &start, 99_990);
        assert_eq!((start.get(), buf.len()), (0, 0));
        assert!(buf.capacity() >= 99_990, "an emptied buffer keeps its room");
    }
}
