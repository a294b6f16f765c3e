//! Redis 8 vector-set back end.
//!
//! Layout of one partition `ns` (all keys share the hash tag `{ns}`, so one Redis Cluster slot):
//! - `<prefix>:{ns}:vs`: vector set; element = entry id, FP32 vector (stored Q8), attribute =
//!   the entry (answer, canonical prompt, expiry) in its stored form (`packed`: JSON, or
//!   DEFLATE of it). No `FILTER` reads the attribute, so it need not be JSON. `VSIM ... WITHATTRIBS` returns the
//!   answers with the neighbours, so a lookup is one command and one callout, and
//!   `VGETATTR` makes the exact tier a single hash lookup.
//! - `<prefix>:{ns}:x`: sorted set id -> expiry (unix milliseconds), the expiry index.
//!
//! Expiry: vector sets have no per-element TTL. An entry is never served after its expiry
//! (every read checks the `e` field, in unix milliseconds). Expired ids are listed by the
//! request's last lookup (the expiry scan) and removed
//! (`VREM` + `ZREM`) by the next store in the partition, so the set stays bounded by live
//! entries under traffic; both keys also carry a native TTL of at least the longest entry TTL
//! (`EXPIRE NX` + `EXPIRE GT`), so an idle partition disappears from Redis entirely.

use std::rc::Rc;

use super::{exact_entry, first_error, Candidate, Storage, StoreError, CLEANUP_BATCH};
use crate::breadth::{self, SetSizes};
use crate::embeddings::to_fp32_blob;
use crate::entry::{Encoded, Entry};
use crate::packed;
use crate::resp::{Pipeline, Reply};

/// VSIM scores are computed on Q8-quantised vectors: search slightly wider, then compare the
/// exact threshold here.
const EPSILON_MARGIN: f64 = 0.01;

pub struct VectorSets {
    vs: String,
    x: String,
    /// `VSIM … NOTHREAD` (the `search_nothread` setting).
    nothread: bool,
    /// Entries stored DEFLATE-compressed (the `compress_entries` setting).
    compress: bool,
    /// Adaptive search breadth (`adaptive_search_ef`): sizes seen, `VCARD` with each search.
    sizes: Option<Rc<SetSizes>>,
}

impl VectorSets {
    pub fn new(prefix: &str, namespace: &str) -> Self {
        VectorSets {
            vs: format!("{prefix}:{{{namespace}}}:vs"),
            x: format!("{prefix}:{{{namespace}}}:x"),
            nothread: false,
            compress: true,
            sizes: None,
        }
    }

    /// Searches a set with an `EF` from its last seen size (`breadth`), learning the size
    /// from a `VCARD` sent with each search.
    pub fn adaptive(mut self, sizes: Option<Rc<SetSizes>>) -> Self {
        self.sizes = sizes;
        self
    }

    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Searches on Redis's main thread instead of a thread started for each `VSIM`: about
    /// 0.15 ms and 0.25 ms of Redis CPU less per search of a few thousand entries, but a long
    /// search then blocks every other client of that Redis.
    pub fn nothread(mut self, on: bool) -> Self {
        self.nothread = on;
        self
    }

    pub fn keys(&self) -> (&str, &str) {
        (&self.vs, &self.x)
    }
}

/// VSIM's score is (1 + cos) / 2; the configured threshold is a cosine distance 1 - cos.
pub fn score_to_distance(score: f64) -> f64 {
    (2.0 * (1.0 - score)).max(0.0)
}

fn parse_f64(r: &Reply) -> Option<f64> {
    match r {
        Reply::Bulk(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        Reply::Simple(s) => s.trim().parse().ok(),
        Reply::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

impl Storage for VectorSets {
    fn exact_lookup(&self, id: &str) -> Pipeline {
        let mut p = Pipeline::new();
        p.cmd(&["VGETATTR", &self.vs, id]);
        p
    }

    fn parse_exact(&self, replies: &[Reply], now: u64) -> Result<Option<Entry>, StoreError> {
        exact_entry(replies, now, "VGETATTR reply")
    }

    fn expiry_scan(&self, now: u64) -> Pipeline {
        let mut p = Pipeline::new();
        p.cmd(&[
            "ZRANGE",
            &self.x,
            "-inf",
            &now.to_string(),
            "BYSCORE",
            "LIMIT",
            "0",
            &CLEANUP_BATCH.to_string(),
        ]);
        p
    }

    fn parse_expiry_scan(&self, replies: &[Reply]) -> Result<Vec<String>, StoreError> {
        match replies {
            [Reply::Array(items)] => Ok(items
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()),
            [Reply::Error(e)] => Err(StoreError::Redis(e.clone())),
            _ => Err(StoreError::Shape("ZRANGE reply")),
        }
    }

    fn semantic_lookup(&self, vector: &[f32], k: u32, max_distance: f64, ef: u32) -> Pipeline {
        let ef = match &self.sizes {
            Some(sizes) => breadth::ef_for(sizes.get(&self.vs), ef),
            None => ef,
        };
        let epsilon = (max_distance / 2.0 + EPSILON_MARGIN).min(1.0);
        let blob = to_fp32_blob(vector);
        let (k, epsilon, ef) = (k.to_string(), format!("{epsilon:.6}"), ef.to_string());
        let mut args: Vec<&[u8]> = vec![
            b"VSIM",
            self.vs.as_bytes(),
            b"FP32",
            &blob,
            b"WITHSCORES",
            b"WITHATTRIBS",
            b"COUNT",
            k.as_bytes(),
            b"EPSILON",
            epsilon.as_bytes(),
            b"EF",
            ef.as_bytes(),
        ];
        if self.nothread {
            args.push(b"NOTHREAD");
        }
        let mut p = Pipeline::new();
        p.cmd(&args);
        if self.sizes.is_some() {
            p.cmd(&["VCARD", &self.vs]);
        }
        p
    }

    fn parse_semantic(&self, replies: &[Reply]) -> Result<Vec<Candidate>, StoreError> {
        let reply = match (replies, &self.sizes) {
            ([reply], None) => reply,
            ([reply, card], Some(sizes)) => {
                if let Reply::Integer(n) = card {
                    sizes.observe(&self.vs, u64::try_from(*n).unwrap_or(0));
                }
                reply
            }
            _ => {
                return Err(StoreError::Shape(
                    "semantic lookup: VSIM (and VCARD) replies",
                ))
            }
        };
        let items = match reply {
            Reply::Error(e) if e.contains("key does not exist") => return Ok(Vec::new()),
            Reply::Error(e) => return Err(StoreError::Redis(e.clone())),
            Reply::Nil => return Ok(Vec::new()),
            Reply::Array(items) => items,
            _ => return Err(StoreError::Shape("VSIM reply")),
        };
        if items.len() % 3 != 0 {
            return Err(StoreError::Shape("VSIM WITHSCORES WITHATTRIBS triples"));
        }
        let mut out = Vec::with_capacity(items.len() / 3);
        for t in items.chunks_exact(3) {
            let id = t[0].as_str().ok_or(StoreError::Shape("VSIM element"))?;
            let score = parse_f64(&t[1]).ok_or(StoreError::Shape("VSIM score"))?;
            // An element without an attribute cannot be served; skip it.
            let Some(stored) = t[2].as_bytes() else {
                continue;
            };
            out.push(Candidate {
                id: id.to_string(),
                distance: score_to_distance(score),
                stored: stored.to_vec(),
            });
        }
        out.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        Ok(out)
    }

    fn store(
        &self,
        id: &str,
        vector: &[f32],
        entry: &Encoded<'_>,
        ttl: u64,
        expired: &[String],
    ) -> Pipeline {
        let mut p = Pipeline::new();
        for old in expired.iter().filter(|e| e.as_str() != id) {
            p.cmd(&["VREM", &self.vs, old]);
        }
        if !expired.is_empty() {
            let mut zrem: Vec<&str> = vec!["ZREM", &self.x];
            zrem.extend(expired.iter().map(String::as_str));
            p.cmd(&zrem);
        }
        p.cmd(&[
            b"VADD".as_slice(),
            self.vs.as_bytes(),
            b"FP32",
            &to_fp32_blob(vector),
            id.as_bytes(),
            b"Q8",
            b"SETATTR",
            &packed::encode(entry, self.compress),
        ]);
        let exp = entry.entry.expires_at.to_string();
        p.cmd(&["ZADD", &self.x, &exp, id]);
        let ttl = ttl.to_string();
        for key in [&self.vs, &self.x] {
            p.cmd(&["EXPIRE", key, &ttl, "NX"]);
            p.cmd(&["EXPIRE", key, &ttl, "GT"]);
        }
        p
    }

    fn check_store(&self, replies: &[Reply]) -> Result<(), StoreError> {
        first_error(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::decode_replies;

    fn entry(exp: u64) -> Entry {
        Entry {
            expires_at: exp,
            created_at: 1,
            prompt: "q".into(),
            model: "m".into(),
            content: "a".into(),
            usage: None,
        }
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let v = VectorSets::new("sc", "abc");
        assert_eq!(v.keys(), ("sc:{abc}:vs", "sc:{abc}:x"));
    }

    #[test]
    fn nothread_is_asked_for_only_when_set() {
        let text = |v: &VectorSets| {
            String::from_utf8_lossy(&v.semantic_lookup(&[1.0], 4, 0.2, 64).into_bytes())
                .into_owned()
        };
        let threaded = text(&VectorSets::new("sc", "n"));
        assert!(threaded.contains("VSIM") && !threaded.contains("NOTHREAD"));
        let main = text(&VectorSets::new("sc", "n").nothread(true));
        assert!(main.ends_with("$8\r\nNOTHREAD\r\n"), "{main}");
    }

    #[test]
    fn adaptive_breadth_learns_each_sets_size_from_vcard() {
        let text = |v: &VectorSets| {
            String::from_utf8_lossy(&v.semantic_lookup(&[1.0], 4, 0.2, 64).into_bytes())
                .into_owned()
        };
        let sizes = Rc::new(SetSizes::default());
        let small = VectorSets::new("sc", "small").adaptive(Some(Rc::clone(&sizes)));
        let first = text(&small);
        assert!(
            first.contains("$2\r\nEF\r\n$2\r\n64\r\n"),
            "unknown size: {first}"
        );
        assert!(first.contains("VCARD\r\n$13\r\nsc:{small}:vs"), "{first}");
        let reply = [Reply::Array(vec![]), Reply::Integer(2000)];
        assert_eq!(small.parse_semantic(&reply), Ok(vec![]));
        assert!(text(&small).contains("$2\r\nEF\r\n$2\r\n32\r\n"));
        // Another set keeps its own size; a large one keeps search_ef.
        let large = VectorSets::new("sc", "large").adaptive(Some(Rc::clone(&sizes)));
        assert!(text(&large).contains("$2\r\nEF\r\n$2\r\n64\r\n"));
        large
            .parse_semantic(&[Reply::Nil, Reply::Integer(50_000)])
            .unwrap();
        assert!(text(&large).contains("$2\r\nEF\r\n$2\r\n64\r\n"));
        assert_eq!(sizes.get("sc:{small}:vs"), Some(2000));

        // Off: no VCARD, and a reply with one is the wrong shape.
        let off = VectorSets::new("sc", "small");
        assert!(!text(&off).contains("VCARD"));
        assert!(off.parse_semantic(&reply).is_err());
        assert!(small.parse_semantic(&reply[..1]).is_err());
    }

    #[test]
    fn score_maps_to_cosine_distance() {
        assert_eq!(score_to_distance(1.0), 0.0);
        assert!((score_to_distance(0.95) - 0.1).abs() < 1e-9);
        assert_eq!(score_to_distance(0.5), 1.0);
    }

    #[test]
    fn exact_reply_serves_only_live_entries() {
        let v = VectorSets::new("sc", "n");
        assert_eq!(v.exact_lookup("id").len(), 1, "a hit is one command");
        let live = entry(100).to_json();
        let wire = format!("${}\r\n{}\r\n", live.len(), live);
        let replies = decode_replies(wire.as_bytes(), 1).unwrap();
        assert!(v.parse_exact(&replies, 50).unwrap().is_some());
        assert!(v.parse_exact(&replies, 100).unwrap().is_none());
        let miss = decode_replies(b"$-1\r\n", 1).unwrap();
        assert_eq!(v.parse_exact(&miss, 1).unwrap(), None);
        let err = decode_replies(b"-ERR x\r\n", 1).unwrap();
        assert!(v.parse_exact(&err, 1).is_err());
        assert!(v.parse_exact(&[], 1).is_err());
    }

    #[test]
    fn expiry_scan_lists_ids_whose_time_is_up() {
        let v = VectorSets::new("sc", "n");
        let p = v.expiry_scan(1_500);
        let bytes = p.into_bytes();
        let s = String::from_utf8_lossy(&bytes);
        assert!(
            s.contains("ZRANGE") && s.contains("1500") && s.contains("BYSCORE"),
            "{s}"
        );
        let ids = decode_replies(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", 1).unwrap();
        assert_eq!(v.parse_expiry_scan(&ids).unwrap(), vec!["a", "b"]);
        let err = decode_replies(b"-WRONGTYPE x\r\n", 1).unwrap();
        assert!(v.parse_expiry_scan(&err).is_err());
    }

    #[test]
    fn semantic_reply_sorts_and_leaves_decoding_to_the_reader() {
        let v = VectorSets::new("sc", "n");
        let a = entry(100).to_json();
        let b = entry(10).to_json();
        let wire =
            format!(
            "*6\r\n$1\r\na\r\n$4\r\n0.95\r\n${}\r\n{}\r\n$1\r\nb\r\n$4\r\n0.99\r\n${}\r\n{}\r\n",
            a.len(), a, b.len(), b
        );
        let replies = decode_replies(wire.as_bytes(), 1).unwrap();
        let c = v.parse_semantic(&replies).unwrap();
        // Nearest first: b (score 0.99, distance 0.02), then a (distance 0.1).
        assert_eq!(
            c.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert!((c[1].distance - 0.1).abs() < 1e-9);
        assert_eq!(
            c[0].entry(),
            Some(entry(10)),
            "expired or not, decoded as stored"
        );
        assert_eq!(c[1].stored, a.as_bytes());
        let none = decode_replies(b"*0\r\n", 1).unwrap();
        assert!(v.parse_semantic(&none).unwrap().is_empty());
    }

    #[test]
    fn store_removes_expired_then_adds() {
        let v = VectorSets::new("sc", "n");
        let p = v.store(
            "new",
            &[1.0, 0.0],
            &Encoded::new(&entry(100)),
            60,
            &["old".into()],
        );
        assert_eq!(p.len(), 8);
        let bytes = p.into_bytes();
        let s = String::from_utf8_lossy(&bytes);
        assert!(s.find("VREM").unwrap() < s.find("VADD").unwrap());
        assert!(s.contains("SETATTR"));
    }
}
