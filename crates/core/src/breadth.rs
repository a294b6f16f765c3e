//! Adaptive search breadth: a vector set's size decides the `EF` of its searches.
//!
//! HNSW finds the nearest entry of a small set with a narrow search. On real embeddings
//! (docs/bench.md, "Search breadth") `EF 32` found it for every query on 2000 entries and took
//! 0.22 instead of 0.36 ms of Redis's main thread; 20 000 entries need `EF 64` and more. So a set
//! is searched with `EF` = entries / 64, at least 32 and at most `search_ef`. The size is the one
//! the set's previous search saw (`VCARD` rides along with `VSIM`); a set not searched yet by
//! this worker gets `search_ef`.

use std::cell::RefCell;
use std::collections::HashMap;

/// The narrowest search, whatever the size (100 % of nearest entries found on 2000 entries).
pub const MIN_EF: u32 = 32;
/// Entries per unit of `EF`: 2048 entries and fewer get `MIN_EF`, 4096 and more `EF 64`.
const ENTRIES_PER_EF: u64 = 64;
/// Sets tracked per worker and route; past this the table starts over (sizes are re-learnt
/// from the next search of each set, which uses `search_ef` meanwhile).
const MAX_TRACKED: usize = 4096;

/// The `EF` for a set of `size` entries (unknown: `max`), never above `max` (`search_ef`).
pub fn ef_for(size: Option<u64>, max: u32) -> u32 {
    match size {
        None => max,
        Some(n) => {
            let wanted = u32::try_from(n.div_ceil(ENTRIES_PER_EF)).unwrap_or(u32::MAX);
            max.min(wanted.max(MIN_EF))
        }
    }
}

/// The last size seen of each vector set, by key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SetSizes(RefCell<HashMap<String, u64>>);

impl SetSizes {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.0.borrow().get(key).copied()
    }

    pub fn observe(&self, key: &str, size: u64) {
        let mut map = self.0.borrow_mut();
        // Every search reports its set's size: a known set is updated without a new key.
        if let Some(known) = map.get_mut(key) {
            *known = size;
            return;
        }
        if map.len() >= MAX_TRACKED {
            map.clear();
        }
        map.insert(key.to_string(), size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ef_grows_with_the_set_between_the_floor_and_search_ef() {
        assert_eq!(ef_for(None, 64), 64, "unknown size: the configured breadth");
        assert_eq!(ef_for(Some(0), 64), MIN_EF);
        assert_eq!(ef_for(Some(2000), 64), 32);
        assert_eq!(ef_for(Some(3000), 64), 47);
        assert_eq!(ef_for(Some(4096), 64), 64);
        assert_eq!(ef_for(Some(1_000_000), 64), 64, "never above search_ef");
        assert_eq!(ef_for(Some(1_000_000), 200), 200);
        assert_eq!(ef_for(Some(10), 16), 16, "a search_ef under the floor wins");
        assert_eq!(ef_for(Some(u64::MAX), 4096), 4096);
    }

    #[test]
    fn sizes_are_remembered_per_set_and_bounded() {
        let s = SetSizes::default();
        assert_eq!(s.get("a"), None);
        s.observe("a", 10);
        s.observe("a", 12);
        assert_eq!(s.get("a"), Some(12));
        for i in 0..MAX_TRACKED {
            s.observe(&format!("k{i}"), 1);
        }
        assert!(s.0.borrow().len() <= MAX_TRACKED);
        s.observe("a", 7);
        assert_eq!(s.get("a"), Some(7));
    }
}
