//! An entry's stored form in Redis: its JSON, or `Z` followed by the raw DEFLATE of that JSON.
//!
//! Answers are prose and the entry also carries the prompt, so DEFLATE takes a typical 1 KB
//! entry to a little over half (measured in docs/bench.md, "Redis memory"). That is Redis
//! memory, the cost that grows with the cache. The JSON form is kept whenever compressing does
//! not make it smaller, and both forms are read, so entries written by an older filter stay
//! readable; one that would inflate to more than 32 times its stored size is refused (and
//! never written). Only stores compress; a hit inflates about 1.3 KB, some 11 µs natively and
//! 45-55 µs of Envoy's CPU in V8, which is why `compress_entries` can turn it off.

use miniz_oxide::deflate::compress_to_vec;
use miniz_oxide::inflate::decompress_to_vec_with_limit;

use crate::entry::{Encoded, Entry};

/// Marks the compressed form. An entry JSON always starts with `{`.
const DEFLATED: u8 = b'Z';
/// Below this, DEFLATE's framing costs about what it saves.
const MIN_COMPRESS: usize = 128;
/// miniz level 6: within a few percent of level 9's size on 1 KB prose, at half the time.
const LEVEL: u8 = 6;
/// No stored entry inflates beyond this (bodies are capped at 64 MiB each); anything larger is
/// not ours, and is not decoded.
const MAX_INFLATED: usize = 1 << 27;
/// Nor beyond this many times its stored size. DEFLATE can expand about 1000-fold, so without it
/// a value of 130 KB planted in a shared Redis would grow the VM's memory by 128 MiB on every
/// read; prose shrinks 2-3-fold, and an entry that shrinks more than this is stored as JSON.
const MAX_RATIO: usize = 32;

pub fn pack(entry: &Entry) -> Vec<u8> {
    pack_json(&entry.to_json())
}

/// [`pack`] for an entry already serialised.
fn pack_json(json: &str) -> Vec<u8> {
    let json = json.as_bytes();
    if json.len() < MIN_COMPRESS {
        return json.to_vec();
    }
    let deflated = compress_to_vec(json, LEVEL);
    if deflated.len() + 1 >= json.len() || json.len() > inflate_limit(deflated.len() + 1) {
        return json.to_vec();
    }
    let mut out = Vec::with_capacity(deflated.len() + 1);
    out.push(DEFLATED);
    out.extend_from_slice(&deflated);
    out
}

/// The stored form under the `compress_entries` setting: packed, or plain JSON (which costs
/// Redis more memory but spares every hit the inflate).
pub fn encode(entry: &Encoded<'_>, compress: bool) -> Vec<u8> {
    if compress {
        pack_json(entry.json())
    } else {
        entry.json().as_bytes().to_vec()
    }
}

/// The entry in `bytes` (either form); `None` for anything that is not a whole entry.
pub fn unpack(bytes: &[u8]) -> Option<Entry> {
    match bytes.split_first() {
        Some((&DEFLATED, rest)) => {
            Entry::from_json(&decompress_to_vec_with_limit(rest, inflate_limit(bytes.len())).ok()?)
        }
        _ => Entry::from_json(bytes),
    }
}

/// The most a stored value of `stored` bytes may inflate to.
fn inflate_limit(stored: usize) -> usize {
    stored.saturating_mul(MAX_RATIO).min(MAX_INFLATED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(content: &str) -> Entry {
        Entry {
            expires_at: 1_764_480_000_000,
            created_at: 1_764_400_000_000,
            prompt: "how do i reset my password".into(),
            model: "gpt-4o-mini".into(),
            content: content.into(),
            usage: Some(json!({"prompt_tokens": 12, "completion_tokens": 90, "total_tokens": 102})),
        }
    }

    const PROSE: &str = "To reset your password, open the sign-in page and choose the link \
        below the password field. Enter the address you registered with; a message with a \
        one-time link arrives within a few minutes. The link is valid for one hour. Choose a \
        new password of at least twelve characters, and sign in again on every device where \
        you were signed in, because the old password stops working at once.";

    #[test]
    fn prose_is_stored_deflated_and_read_back_unchanged() {
        let e = entry(PROSE);
        let packed = pack(&e);
        assert_eq!(packed[0], DEFLATED);
        assert!(
            packed.len() * 10 < e.to_json().len() * 8,
            "{} of {} bytes",
            packed.len(),
            e.to_json().len()
        );
        assert_eq!(unpack(&packed), Some(e));
    }

    #[test]
    fn short_or_incompressible_entries_stay_json() {
        let short = Entry {
            usage: None,
            ..entry("Paris.")
        };
        assert!(short.to_json().len() < MIN_COMPRESS);
        assert_eq!(pack(&short), short.to_json().into_bytes());
        // Random-looking text DEFLATE cannot shrink.
        let noise: String = (0..400u32)
            .map(|i| char::from(b'!' + (i.wrapping_mul(2_654_435_761) >> 25) as u8 % 90))
            .collect();
        let e = Entry {
            prompt: String::new(),
            usage: None,
            ..entry(&noise)
        };
        let packed = pack(&e);
        assert!(packed.len() <= e.to_json().len());
        assert_eq!(unpack(&packed), Some(e));
    }

    #[test]
    fn entries_that_shrink_too_much_stay_json_and_bombs_are_refused() {
        // Shrinks far more than MAX_RATIO-fold: stored as JSON, read back whole.
        let e = entry(&"all work and no play. ".repeat(20_000));
        let stored = pack(&e);
        assert_eq!(stored, e.to_json().into_bytes());
        assert_eq!(unpack(&stored), Some(e.clone()));
        // The same entry deflated by someone else: it would inflate past the ratio, so it is
        // not decoded at all.
        let mut bomb = vec![DEFLATED];
        bomb.extend(compress_to_vec(e.to_json().as_bytes(), LEVEL));
        assert!(e.to_json().len() > inflate_limit(bomb.len()));
        assert_eq!(unpack(&bomb), None);
    }

    #[test]
    fn compression_can_be_switched_off() {
        let e = entry(PROSE);
        assert_eq!(encode(&Encoded::new(&e), false), e.to_json().into_bytes());
        assert_eq!(encode(&Encoded::new(&e), true), pack(&e));
    }

    #[test]
    fn json_written_by_an_older_filter_is_still_read() {
        let e = entry(PROSE);
        assert_eq!(unpack(e.to_json().as_bytes()), Some(e));
    }

    #[test]
    fn damaged_values_are_no_entry() {
        let packed = pack(&entry(PROSE));
        assert_eq!(unpack(&packed[..packed.len() / 2]), None, "truncated");
        assert_eq!(unpack(b"Z"), None);
        assert_eq!(unpack(b"Znot deflate at all"), None);
        assert_eq!(unpack(b""), None);
        // Valid DEFLATE of something that is not an entry.
        let mut other = vec![DEFLATED];
        other.extend(compress_to_vec(b"{\"hello\":1}", LEVEL));
        assert_eq!(unpack(&other), None);
    }
}
