//! Whether to ask the embedder while the exact lookup is still in flight.
//!
//! A semantic hit or a miss waits for the exact lookup, then the embedding, then the vector
//! search. Starting the embedding together with the exact lookup takes the exact lookup's round
//! trip off that path. When the exact lookup hits, though, the embedding was for nothing
//! (embedder CPU, or tokens on a paid embeddings API), so it is done only while exact hits are
//! rare: below one in ten of the recent exact lookups of this worker and route.

use std::cell::Cell;

/// Fixed point: `ONE` is every lookup a hit.
const ONE: u32 = 1 << 16;
/// Each lookup moves the share by 1/32 of the way: about 70 misses in a row take it from all
/// hits to under a tenth, 4 hits from none to over it.
const SHIFT: u32 = 5;
const SPECULATE_BELOW: u32 = ONE / 10;

/// An exponentially weighted share of exact lookups that hit. Interior mutability: it lives in
/// the per-worker settings that every request of the worker shares (Envoy runs one request
/// callback at a time per worker, so nothing races).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactHitShare {
    share: Cell<u32>,
}

impl ExactHitShare {
    pub fn observe(&self, hit: bool) {
        let s = self.share.get();
        let next = if hit {
            s + ((ONE - s) >> SHIFT)
        } else {
            s - (s >> SHIFT)
        };
        self.share.set(next);
    }

    /// Whether the next exact lookup should start the embedding too.
    pub fn speculate(&self) -> bool {
        self.share.get() < SPECULATE_BELOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speculates_while_exact_hits_are_rare_and_stops_when_they_are_not() {
        let s = ExactHitShare::default();
        assert!(
            s.speculate(),
            "no history: exact hits are not known to happen"
        );
        for _ in 0..9 {
            s.observe(false);
        }
        s.observe(true);
        assert!(s.speculate(), "one hit in ten recent lookups is still rare");
        for _ in 0..3 {
            s.observe(true);
        }
        assert!(
            !s.speculate(),
            "a run of exact hits stops the wasted embeddings"
        );
        for _ in 0..10_000 {
            s.observe(true);
        }
        assert!(!s.speculate() && s.share.get() <= ONE);
        // From all hits, it takes a long run of misses to speculate again.
        let mut misses = 0;
        while !s.speculate() {
            s.observe(false);
            misses += 1;
            assert!(misses < 1_000, "the share decays");
        }
        assert!((50..=90).contains(&misses), "{misses}");
    }
}
