//! Whether to ask the embedder before the exact lookup in Redis has answered.
//!
//! A semantic hit or a miss waits for the exact lookup, then the embedding, then the vector
//! search. Two ways take the exact lookup's own step off that path: send it with the vector
//! search, after the embedding (`fold_exact_lookup`), or start the embedding together with it
//! (`speculative_embedding`). Either way an exact hit in Redis made that embedding unnecessary
//! (embedder CPU, or tokens on a paid embeddings API), and a folded one also waited for it, so
//! both are done only while exact hits are rare: below one in ten of the recent exact lookups in
//! Redis of this worker and route (the local tier's hits are not lookups in Redis).

use std::cell::Cell;

/// Fixed point: `ONE` is every lookup a hit.
const ONE: u32 = 1 << 16;
/// Each lookup moves the share by 1/32 of the way: about 70 misses in a row take it from all
/// hits to under a tenth, 4 hits from none to over it.
const SHIFT: u32 = 5;
const RARE_BELOW: u32 = ONE / 10;

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

    /// Whether exact hits in Redis are rare enough to embed before knowing the next one's result.
    pub fn rare(&self) -> bool {
        self.share.get() < RARE_BELOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_while_exact_hits_are_rare_and_not_after_a_run_of_them() {
        let s = ExactHitShare::default();
        assert!(s.rare(), "no history: exact hits are not known to happen");
        for _ in 0..9 {
            s.observe(false);
        }
        s.observe(true);
        assert!(s.rare(), "one hit in ten recent lookups is still rare");
        for _ in 0..3 {
            s.observe(true);
        }
        assert!(!s.rare(), "a run of exact hits stops the wasted embeddings");
        for _ in 0..10_000 {
            s.observe(true);
        }
        assert!(!s.rare() && s.share.get() <= ONE);
        // From all hits, it takes a long run of misses to speculate again.
        let mut misses = 0;
        while !s.rare() {
            s.observe(false);
            misses += 1;
            assert!(misses < 1_000, "the share decays");
        }
        assert!((50..=90).contains(&misses), "{misses}");
    }
}
