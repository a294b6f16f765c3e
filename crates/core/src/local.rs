//! The local tier's value format: one exact entry as kept in Envoy's shared data.
//!
//! `<entry id>\n<fetched at, unix ms>\n<entry JSON>`. The id is checked on read because the
//! table is direct-mapped (another id may own the slot); the fetch time bounds how long a copy
//! is served without Redis being asked again.

use crate::entry::Entry;

/// `json` is the entry's JSON (`Entry::to_json`).
pub fn encode(id: &str, fetched_ms: u64, json: &str) -> Vec<u8> {
    format!("{id}\n{fetched_ms}\n{json}").into_bytes()
}

/// The fetch time and entry, when `value` holds `id`'s entry; `None` for anything else.
pub fn decode(value: &[u8], id: &str) -> Option<(u64, Entry)> {
    let mut parts = value.splitn(3, |b| *b == b'\n');
    let (stored_id, fetched, json) = (parts.next()?, parts.next()?, parts.next()?);
    if stored_id != id.as_bytes() {
        return None;
    }
    let fetched = std::str::from_utf8(fetched).ok()?.parse().ok()?;
    Some((fetched, Entry::from_json(json)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            expires_at: 9_000,
            created_at: 1_000,
            prompt: "q".into(),
            model: "m".into(),
            content: "line one\nline two".into(),
            usage: None,
        }
    }

    #[test]
    fn round_trips_only_for_its_own_id() {
        let v = encode("abc", 1_234, &entry().to_json());
        assert_eq!(decode(&v, "abc"), Some((1_234, entry())));
        assert_eq!(
            decode(&v, "abd"),
            None,
            "a slot owned by another id is a miss"
        );
        assert_eq!(decode(b"abc\n12", "abc"), None);
        assert_eq!(decode(b"abc\nx\n{}", "abc"), None);
        assert_eq!(decode(b"", "abc"), None);
    }
}
