//! `Token`: a slot key plus the generation of what occupies the slot, the name the
//! loop gives an fd registration or a library source, so that a stale event or id
//! (its registration replaced, its slot reused) can never reach the newer occupant.
//!
//! The kernel carries a token back with each event as one 64-bit word (epoll's
//! `data`, mio's `Token`); [`Token::to_word`] and [`Token::from_word`] are the one
//! place that packs and unpacks it. (A task waker's word, which also carries a
//! loop id, is packed by `RunnableId::pack` in `ready.rs`.)

/// A slot key and the generation of its occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    /// The slot in the loop's table (a slab key).
    pub(crate) key: u32,
    /// Changes whenever the slot gets a new occupant (or a registration is
    /// replaced): a token whose generation no longer matches names nothing.
    pub(crate) generation: u32,
}

impl Token {
    /// The token as one word: the generation in the high half, the key in the low.
    #[inline]
    pub(crate) fn to_word(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.key)
    }

    /// The token a word made by [`to_word`](Token::to_word) stands for.
    #[inline]
    pub(crate) fn from_word(word: u64) -> Token {
        Token {
            key: word as u32,
            generation: (word >> 32) as u32,
        }
    }

    /// The token as mio's.
    pub(crate) fn to_mio(self) -> mio::Token {
        mio::Token(self.to_word() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn a_word_round_trips() {
        for t in [
            Token {
                key: 0,
                generation: 0,
            },
            Token {
                key: 7,
                generation: 3,
            },
            Token {
                key: u32::MAX,
                generation: u32::MAX,
            },
            Token {
                key: 1 << 31,
                generation: 1,
            },
        ] {
            assert_eq!(Token::from_word(t.to_word()), t);
        }
        let t = Token {
            key: 5,
            generation: 9,
        };
        assert_eq!(t.to_word(), (9 << 32) | 5, "generation high, key low");
        assert_eq!(t.to_mio().0 as u64, t.to_word());
    }
}
