//! The local tier's value format: one answer for one request id, as kept in Envoy's shared data.
//!
//! `<request id>\n<fetched at, unix ms>[ <distance>]\n<entry JSON>`. The id is checked on read
//! because the table is direct-mapped (another id may own the slot); the fetch time bounds how
//! long a copy is served without Redis being asked again. The distance is there when the answer
//! was a semantic hit for this request (an entry stored under another prompt), so a repeat is
//! served as what it is; a value written before the distance existed reads as an exact copy,
//! and one with a distance is unreadable (a miss) to a filter that predates it.

use crate::entry::Entry;

/// A decoded local copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    pub fetched_ms: u64,
    /// `Some` for a semantic hit's answer kept under the query's own id.
    pub distance: Option<f64>,
    pub entry: Entry,
}

/// `json` is the entry's JSON (`Entry::to_json`).
pub fn encode(id: &str, fetched_ms: u64, distance: Option<f64>, json: &str) -> Vec<u8> {
    match distance {
        Some(d) => format!("{id}\n{fetched_ms} {d}\n{json}").into_bytes(),
        None => format!("{id}\n{fetched_ms}\n{json}").into_bytes(),
    }
}

/// The copy, when `value` holds `id`'s answer; `None` for anything else.
pub fn decode(value: &[u8], id: &str) -> Option<Copy> {
    let mut parts = value.splitn(3, |b| *b == b'\n');
    let (stored_id, meta, json) = (parts.next()?, parts.next()?, parts.next()?);
    if stored_id != id.as_bytes() {
        return None;
    }
    let meta = std::str::from_utf8(meta).ok()?;
    let (fetched, distance) = match meta.split_once(' ') {
        Some((f, d)) => {
            let d: f64 = d.parse().ok()?;
            // Never serve a copy whose distance is not one a search could have returned.
            if !(0.0..=2.0).contains(&d) {
                return None;
            }
            (f, Some(d))
        }
        None => (meta, None),
    };
    Some(Copy {
        fetched_ms: fetched.parse().ok()?,
        distance,
        entry: Entry::from_json(json)?,
    })
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

    fn copy(distance: Option<f64>) -> Copy {
        Copy {
            fetched_ms: 1_234,
            distance,
            entry: entry(),
        }
    }

    #[test]
    fn round_trips_only_for_its_own_id() {
        let v = encode("abc", 1_234, None, &entry().to_json());
        assert_eq!(decode(&v, "abc"), Some(copy(None)));
        assert_eq!(
            decode(&v, "abd"),
            None,
            "a slot owned by another id is a miss"
        );
        assert_eq!(decode(b"abc\n12", "abc"), None);
        assert_eq!(decode(b"abc\nx\n{}", "abc"), None);
        assert_eq!(decode(b"", "abc"), None);
    }

    #[test]
    fn a_semantic_copy_keeps_its_distance_and_a_bad_one_is_not_read() {
        let v = encode("abc", 1_234, Some(0.0731), &entry().to_json());
        assert_eq!(decode(&v, "abc"), Some(copy(Some(0.0731))));
        assert_eq!(decode(&v, "abd"), None);
        let json = entry().to_json();
        for meta in [
            "1234 ",
            "1234 x",
            "1234 -0.1",
            "1234 NaN",
            "1234 2.5",
            " 0.1",
        ] {
            let v = format!("abc\n{meta}\n{json}");
            assert_eq!(decode(v.as_bytes(), "abc"), None, "{meta:?}");
        }
    }
}
