//! RediSearch back end (Redis Stack, Redis 8 with the query engine, Azure Managed Redis,
//! valkey-search): one HASH per entry, found by `FT.SEARCH` KNN.
//!
//! Layout, for embedding model `m` (sanitised to `<model>`), partition `ns` and entry `id`:
//! - `<prefix>:e:<model>:{ns}:<id>`: HASH `v` (FP32 vector), `ns` (TAG), `a` (the entry in its
//!   stored form, `packed`: answer, canonical prompt, creation, expiry), with a native `EXPIRE` of the entry's TTL.
//!   The hash tag keeps a partition on one cluster slot, as in the vector-set layout.
//! - `<prefix>:idx:<model>:<dim>`: the index over `<prefix>:e:<model>:`, one per embedding model
//!   and dimension, created by every store (`FT.CREATE` answers "Index already exists" once it
//!   is there), so it comes back by itself after a `FLUSHALL` or an `FT.DROPINDEX`; the same
//!   store reads `FT.INFO` and reports an index of our name that cannot serve our entries
//!   (another DIM or key prefix), which would otherwise miss quietly forever. The model
//!   in the key prefix keeps each index to its own entries: a second model's vectors are neither
//!   indexed twice nor counted as indexing failures by an index of another dimension.
//!
//! Expiry is Redis's own: an expired hash leaves the index with its key. Every read still
//! checks the `e` field of the entry, so a clock ahead of Redis's never serves a stale answer,
//! and nothing is left for the store to clean up.

use std::cell::Cell;

use super::{exact_entry, first_error, Candidate, Storage, StoreError};
use crate::embeddings::to_fp32_blob;
use crate::entry::{Encoded, Entry};
use crate::packed;
use crate::resp::{Pipeline, Reply};

/// Candidates this far past the threshold are dropped, as the vector-set back end's `EPSILON`
/// does (score margin 0.01 = distance 0.02), so both report the same nearest miss.
const NEAR_MARGIN: f64 = 0.02;
/// Longest sanitised model name kept in key and index names.
const MODEL_TAG_MAX: usize = 48;

#[derive(Debug)]
pub struct Redisearch {
    prefix: String,
    model: String,
    ns: String,
    /// `(largest distance worth returning, vector dimension)` of the last `semantic_lookup` or
    /// `store`, for the parse of its replies.
    last: Cell<(f64, usize)>,
    /// Entries stored DEFLATE-compressed (the `compress_entries` setting).
    compress: bool,
}

/// The model as it appears in key and index names: lower-case ASCII letters, digits, `-`, `_`
/// and `.`; anything else (`/`, `:`, spaces, braces) becomes `_`. Two models that sanitise
/// alike share an index, which is harmless: the partition (which hashes the exact model) still
/// separates their entries.
pub fn model_tag(model: &str) -> String {
    let tag: String = model
        .chars()
        .take(MODEL_TAG_MAX)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_' | '.') => c,
            _ => '_',
        })
        .collect();
    if tag.is_empty() {
        "_".into()
    } else {
        tag
    }
}

/// A value inside a TAG query `{...}`: every character but letters, digits and `_` is a
/// query-syntax character there (`-`, `.`, `:`, space, `|`, braces...) and needs a backslash.
pub fn escape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn is_missing_index(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    // RediSearch 2.x: "<idx>: no such index"; newer: "Unknown index name"; valkey-search:
    // "Index with name '<idx>' not found".
    e.contains("no such index")
        || e.contains("unknown index")
        || (e.contains("index with name") && e.contains("not found"))
}

fn is_dimension_mismatch(e: &str) -> bool {
    // "query vector blob size (12) does not match index's expected size (8)".
    let e = e.to_ascii_lowercase();
    e.contains("blob size") || e.contains("expected size") || e.contains("dimension")
}

fn parse_f64(r: &Reply) -> Option<f64> {
    r.as_str()?.trim().parse().ok()
}

impl Redisearch {
    pub fn new(prefix: &str, namespace: &str, embedding_model: &str) -> Self {
        Redisearch {
            prefix: prefix.to_string(),
            model: model_tag(embedding_model),
            ns: namespace.to_string(),
            last: Cell::new((2.0, 0)),
            compress: true,
        }
    }

    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// The key prefix every entry of this model shares (the index's `PREFIX`).
    fn entries_prefix(&self) -> String {
        format!("{}:e:{}:", self.prefix, self.model)
    }

    pub fn key(&self, id: &str) -> String {
        format!("{}{{{}}}:{id}", self.entries_prefix(), self.ns)
    }

    pub fn index(&self, dim: usize) -> String {
        format!("{}:idx:{}:{dim}", self.prefix, self.model)
    }

    fn create_index(&self, p: &mut Pipeline, dim: usize) {
        let (index, prefix, dim) = (self.index(dim), self.entries_prefix(), dim.to_string());
        p.cmd(&[
            "FT.CREATE",
            &index,
            "ON",
            "HASH",
            "PREFIX",
            "1",
            &prefix,
            "SCHEMA",
            "ns",
            "TAG",
            "v",
            "VECTOR",
            "HNSW",
            "6",
            "TYPE",
            "FLOAT32",
            "DIM",
            &dim,
            "DISTANCE_METRIC",
            "COSINE",
        ]);
    }

    /// The entry id of a returned key (the key itself if it is not one of ours).
    fn id_of<'a>(&self, key: &'a str) -> &'a str {
        let ours = format!("{}{{{}}}:", self.entries_prefix(), self.ns);
        key.strip_prefix(ours.as_str()).unwrap_or(key)
    }
}

impl Storage for Redisearch {
    fn exact_lookup(&self, id: &str) -> Pipeline {
        let mut p = Pipeline::new();
        p.cmd(&["HGET", &self.key(id), "a"]);
        p
    }

    fn parse_exact(&self, replies: &[Reply], now: u64) -> Result<Option<Entry>, StoreError> {
        // Redis expires the hashes itself: no expiry scan, nothing to clean up.
        exact_entry(replies, now, "HGET reply")
    }

    fn semantic_lookup(&self, vector: &[f32], k: u32, max_distance: f64, ef: u32) -> Pipeline {
        self.last.set((max_distance + NEAR_MARGIN, vector.len()));
        // KNN, then the threshold in code: VECTOR_RANGE on HNSW missed near duplicates. No
        // SORTBY (valkey-search has none): LIMIT 0 k keeps all k neighbours, sorted below.
        let query = format!(
            "@ns:{{{}}}=>[KNN {k} @v $B EF_RUNTIME {ef} AS d]",
            escape_tag(&self.ns)
        );
        let k = k.to_string();
        let mut p = Pipeline::new();
        p.cmd(&[
            b"FT.SEARCH".as_slice(),
            self.index(vector.len()).as_bytes(),
            query.as_bytes(),
            b"PARAMS",
            b"2",
            b"B",
            &to_fp32_blob(vector),
            b"RETURN",
            b"2",
            b"d",
            b"a",
            b"LIMIT",
            b"0",
            k.as_bytes(),
            b"DIALECT",
            b"2",
        ]);
        p
    }

    fn parse_semantic(&self, replies: &[Reply]) -> Result<Vec<Candidate>, StoreError> {
        let [reply] = replies else {
            return Err(StoreError::Shape("semantic lookup expects 1 reply"));
        };
        let items = match reply {
            // Nothing stored yet for this model and dimension (or just flushed).
            Reply::Error(e) if is_missing_index(e) => return Ok(Vec::new()),
            Reply::Error(e) if is_dimension_mismatch(e) => {
                let dim = self.last.get().1;
                return Err(StoreError::IndexMismatch {
                    index: self.index(dim),
                    dim,
                    detail: e.clone(),
                });
            }
            Reply::Error(e) => return Err(StoreError::Redis(format!("FT.SEARCH: {e}"))),
            Reply::Array(items) => items,
            _ => return Err(StoreError::Shape("FT.SEARCH reply")),
        };
        // [total, key, [field, value, ...], key, [...], ...]
        let Some((Reply::Integer(_), docs)) = items.split_first() else {
            return Err(StoreError::Shape("FT.SEARCH total"));
        };
        if docs.len() % 2 != 0 {
            return Err(StoreError::Shape("FT.SEARCH key/fields pairs"));
        }
        let window = self.last.get().0;
        let mut out = Vec::with_capacity(docs.len() / 2);
        for doc in docs.chunks_exact(2) {
            let key = doc[0].as_str().ok_or(StoreError::Shape("FT.SEARCH key"))?;
            // A document that expired during the query comes back without fields: skip it.
            let Some(fields) = doc[1].as_array() else {
                continue;
            };
            let (mut distance, mut stored) = (None, None);
            for pair in fields.chunks_exact(2) {
                match pair[0].as_str() {
                    Some("d") => distance = parse_f64(&pair[1]),
                    Some("a") => stored = pair[1].as_bytes(),
                    _ => {}
                }
            }
            let Some(distance) = distance else {
                return Err(StoreError::Shape("FT.SEARCH distance"));
            };
            // Without the entry field there is nothing to serve.
            let Some(stored) = stored else {
                continue;
            };
            // FP32 rounding can give an exact duplicate a distance of -1e-7.
            let distance = distance.max(0.0);
            if distance > window {
                continue;
            }
            out.push(Candidate {
                id: self.id_of(key).to_string(),
                distance,
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
        _expired: &[String],
    ) -> Pipeline {
        self.last.set((self.last.get().0, vector.len()));
        let mut p = Pipeline::new();
        self.create_index(&mut p, vector.len());
        let key = self.key(id);
        p.cmd(&[
            b"HSET".as_slice(),
            key.as_bytes(),
            b"v",
            &to_fp32_blob(vector),
            b"ns",
            self.ns.as_bytes(),
            b"a",
            &packed::encode(entry, self.compress),
        ]);
        p.cmd(&["EXPIRE", &key, &ttl.to_string()]);
        // An index of our name made elsewhere with another DIM or prefix never indexes our
        // hashes, and a KNN over an empty partition does not even check the query's size: the
        // cache would miss forever, quietly. FT.INFO shows it at the first store.
        p.cmd(&["FT.INFO", &self.index(vector.len())]);
        p
    }

    fn check_store(&self, replies: &[Reply]) -> Result<(), StoreError> {
        let [create, _hset, _expire, info] = replies else {
            return Err(StoreError::Shape(
                "store expects FT.CREATE, HSET, EXPIRE, FT.INFO",
            ));
        };
        match create {
            Reply::Error(e) if e.to_ascii_lowercase().contains("already exists") => {}
            Reply::Error(e) => return Err(StoreError::Redis(format!("FT.CREATE: {e}"))),
            _ => {}
        }
        first_error(&replies[1..3])?;
        match info {
            Reply::Error(e) => Err(StoreError::Redis(format!("FT.INFO: {e}"))),
            info => self.check_index(info),
        }
    }
}

impl Redisearch {
    /// The index must take our vectors and cover our keys. FT.INFO's layout differs between
    /// RediSearch and valkey-search, so only what is recognisable is checked.
    fn check_index(&self, info: &Reply) -> Result<(), StoreError> {
        let dim = self.last.get().1;
        let mismatch = |detail: String| StoreError::IndexMismatch {
            index: self.index(dim),
            dim,
            detail,
        };
        if let Some(d) = find_value(info, &["dim", "dimensions"]).and_then(parse_i64) {
            if d != dim as i64 {
                return Err(mismatch(format!("the index has DIM {d}")));
            }
        }
        if let Some(Reply::Array(prefixes)) = find_value(info, &["prefixes", "key_prefixes"]) {
            let ours = self.entries_prefix();
            let covered = prefixes
                .iter()
                .filter_map(Reply::as_str)
                .any(|p| ours.starts_with(p));
            if !covered {
                let theirs: Vec<&str> = prefixes.iter().filter_map(Reply::as_str).collect();
                return Err(mismatch(format!(
                    "the index covers key prefixes {theirs:?}, not {ours}"
                )));
            }
        }
        Ok(())
    }
}

fn parse_i64(r: &Reply) -> Option<i64> {
    match r {
        Reply::Integer(i) => Some(*i),
        other => other.as_str()?.trim().parse().ok(),
    }
}

/// The value after the first `key` (any of `keys`, case-insensitive) in a nested
/// `[name, value, ...]` reply, depth first.
fn find_value<'a>(reply: &'a Reply, keys: &[&str]) -> Option<&'a Reply> {
    let items = reply.as_array()?;
    for (i, item) in items.iter().enumerate() {
        let is_key = item
            .as_str()
            .is_some_and(|s| keys.iter().any(|k| s.eq_ignore_ascii_case(k)));
        if is_key {
            if let Some(v) = items.get(i + 1) {
                return Some(v);
            }
        }
        if let Some(v) = find_value(item, keys) {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::decode_replies;

    /// The entry JSON in the captured replies below (`Entry::to_json` of `entry(2000000000)`).
    const ENTRY: &str = r#"{"e":2000000000,"t":1,"q":"q","m":"m","r":"a"}"#;

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

    fn rs() -> Redisearch {
        Redisearch::new("sc", "n", "m")
    }

    fn text(p: Pipeline) -> String {
        String::from_utf8_lossy(&p.into_bytes()).into_owned()
    }

    /// The commands of a pipeline, as lists of arguments; a binary one reads `<N bytes>`.
    fn commands(p: Pipeline) -> Vec<Vec<String>> {
        let n = p.len();
        // A pipeline is RESP arrays of bulk strings: the reply decoder reads it as well.
        decode_replies(&p.into_bytes(), n)
            .unwrap()
            .iter()
            .map(|c| {
                c.as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        let b = a.as_bytes().unwrap();
                        String::from_utf8(b.to_vec())
                            .unwrap_or_else(|_| format!("<{} bytes>", b.len()))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn names_carry_model_dimension_and_partition_tag() {
        let r = Redisearch::new("sc", "0a1b", "sentence-transformers/all-MiniLM-L6-v2");
        assert_eq!(
            r.key("id1"),
            "sc:e:sentence-transformers_all-minilm-l6-v2:{0a1b}:id1"
        );
        assert_eq!(
            r.index(384),
            "sc:idx:sentence-transformers_all-minilm-l6-v2:384"
        );
        assert_eq!(
            model_tag("text-embedding-3-small"),
            "text-embedding-3-small"
        );
        assert_eq!(model_tag("a:b {c}"), "a_b__c_");
        assert_eq!(model_tag(""), "_");
        assert_eq!(model_tag(&"x".repeat(100)).len(), MODEL_TAG_MAX);
        assert_eq!(
            r.id_of("sc:e:sentence-transformers_all-minilm-l6-v2:{0a1b}:id1"),
            "id1"
        );
        assert_eq!(r.id_of("other"), "other");
    }

    #[test]
    fn tag_values_are_escaped() {
        assert_eq!(escape_tag("0a1b_f"), "0a1b_f");
        assert_eq!(escape_tag("a-b.c"), r"a\-b\.c");
        assert_eq!(escape_tag("x y|{z}:@"), r"x\ y\|\{z\}\:\@");
        assert_eq!(escape_tag("é"), r"\é");
    }

    #[test]
    fn exact_lookup_is_one_hget() {
        assert_eq!(
            commands(rs().exact_lookup("id")),
            vec![vec!["HGET", "sc:e:m:{n}:id", "a"]]
        );
    }

    #[test]
    fn exact_reply_serves_only_live_entries() {
        let r = rs();
        // Captured: HGET of a stored entry, then of a missing one.
        let replies = decode_replies(
            b"$46\r\n{\"e\":2000000000,\"t\":1,\"q\":\"q\",\"m\":\"m\",\"r\":\"a\"}\r\n$-1\r\n",
            2,
        )
        .unwrap();
        let hit = r.parse_exact(&replies[..1], 1_999_999_999).unwrap();
        assert_eq!(hit, Some(entry(2_000_000_000)));
        // Redis has not expired the key yet, but its time is up: not served.
        assert_eq!(r.parse_exact(&replies[..1], 2_000_000_000).unwrap(), None);
        assert_eq!(r.parse_exact(&replies[1..], 1).unwrap(), None);
        assert!(
            r.expiry_scan(1).is_empty(),
            "Redis expires the hashes itself"
        );
        let err = decode_replies(b"-WRONGTYPE Operation against a key\r\n", 1).unwrap();
        assert!(matches!(r.parse_exact(&err, 1), Err(StoreError::Redis(_))));
        assert!(r.parse_exact(&replies, 1).is_err());
    }

    #[test]
    fn semantic_lookup_is_a_knn_in_the_partition() {
        let c = commands(rs().semantic_lookup(&[1.0, 0.0], 4, 0.2, 64));
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!(
            c[0..3],
            [
                "FT.SEARCH",
                "sc:idx:m:2",
                "@ns:{n}=>[KNN 4 @v $B EF_RUNTIME 64 AS d]"
            ]
        );
        assert_eq!(c[3..6], ["PARAMS", "2", "B"]);
        assert_eq!(c[6], "<8 bytes>", "two FP32 values");
        assert_eq!(
            c[7..],
            ["RETURN", "2", "d", "a", "LIMIT", "0", "4", "DIALECT", "2"]
        );
    }

    /// Captured from RediSearch 2.10.5 on Redis 8.2: KNN 4 of [1, 0.1] over a = [1, 0] and
    /// b = [0.8, 0.6] in partition n.
    const TWO_HITS: &[u8] = b"*5\r\n:2\r\n$10\r\nsc:e:{n}:a\r\n*4\r\n$1\r\nd\r\n$16\r\n0.00496286153793\r\n$1\r\na\r\n$46\r\n{\"e\":2000000000,\"t\":1,\"q\":\"q\",\"m\":\"m\",\"r\":\"a\"}\r\n$10\r\nsc:e:{n}:b\r\n*4\r\n$1\r\nd\r\n$14\r\n0.144268035889\r\n$1\r\na\r\n$46\r\n{\"e\":2000000000,\"t\":1,\"q\":\"q\",\"m\":\"m\",\"r\":\"a\"}\r\n";

    #[test]
    fn semantic_reply_gives_cosine_distances_nearest_first() {
        let r = Redisearch::new("sc", "n", "m");
        r.semantic_lookup(&[1.0, 0.1], 4, 0.2, 64);
        let replies = decode_replies(TWO_HITS, 1).unwrap();
        let c = r.parse_semantic(&replies).unwrap();
        assert_eq!(c.len(), 2);
        // 1 - cos([1, 0.1], [1, 0]) = 0.00496...; the same unit as score_threshold.
        assert!((c[0].distance - (1.0 - 1.0 / 1.01f64.sqrt())).abs() < 1e-6);
        assert!((c[1].distance - 0.144268).abs() < 1e-6);
        let entry = c[0].entry().unwrap();
        assert_eq!(entry.content, "a");
        // Whoever decodes it checks its expiry (the machine; Redis expires the hash itself).
        assert!(entry.is_live(1) && !entry.is_live(2_000_000_000));
    }

    #[test]
    fn unsorted_replies_come_out_nearest_first() {
        // Without SORTBY the k neighbours come in index order (seen on RediSearch 2.10).
        let doc = |key: &str, d: &str| {
            format!(
                "${}\r\n{key}\r\n*4\r\n$1\r\nd\r\n${}\r\n{d}\r\n$1\r\na\r\n${}\r\n{ENTRY}\r\n",
                key.len(),
                d.len(),
                ENTRY.len()
            )
        };
        let wire = format!(
            "*7\r\n:3\r\n{}{}{}",
            doc("sc:e:m:{n}:r9", "0.00216054916382"),
            doc("sc:e:m:{n}:r17", "0.000328898429871"),
            doc("sc:e:m:{n}:r35", "0.000774145126343")
        );
        let r = rs();
        r.semantic_lookup(&[1.0, 0.1], 3, 0.2, 64);
        let c = r
            .parse_semantic(&decode_replies(wire.as_bytes(), 1).unwrap())
            .unwrap();
        let ids: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["r17", "r35", "r9"]);
    }

    #[test]
    fn candidates_far_past_the_threshold_are_dropped_like_vset_epsilon() {
        let r = rs();
        r.semantic_lookup(&[1.0, 0.1], 4, 0.1, 64);
        let replies = decode_replies(TWO_HITS, 1).unwrap();
        let c = r.parse_semantic(&replies).unwrap();
        // 0.144 > 0.1 + 0.02: not even reported as the nearest miss.
        assert_eq!(c.len(), 1);
        r.semantic_lookup(&[1.0, 0.1], 4, 0.13, 64);
        assert_eq!(r.parse_semantic(&replies).unwrap().len(), 2);
    }

    #[test]
    fn ids_come_back_without_the_key_prefix() {
        let r = rs();
        r.semantic_lookup(&[1.0, 0.0], 1, 0.2, 64);
        let e = ENTRY;
        let wire = format!("*3\r\n:1\r\n$12\r\nsc:e:m:{{n}}:x\r\n*4\r\n$1\r\nd\r\n$12\r\n-1.19209e-07\r\n$1\r\na\r\n${}\r\n{e}\r\n", e.len());
        let c = r
            .parse_semantic(&decode_replies(wire.as_bytes(), 1).unwrap())
            .unwrap();
        assert_eq!(c[0].id, "x");
        assert_eq!(c[0].distance, 0.0);
    }

    #[test]
    fn empty_odd_and_expired_documents() {
        let r = rs();
        r.semantic_lookup(&[1.0, 0.0], 4, 0.2, 64);
        // Captured: no document in the partition.
        let none = decode_replies(b"*1\r\n:0\r\n", 1).unwrap();
        assert!(r.parse_semantic(&none).unwrap().is_empty());
        // A document that expired during the query: key without fields (RediSearch < 8).
        let gone = decode_replies(b"*3\r\n:1\r\n$1\r\nk\r\n*-1\r\n", 1).unwrap();
        assert!(r.parse_semantic(&gone).unwrap().is_empty());
        let unreadable = decode_replies(
            b"*3\r\n:1\r\n$1\r\nk\r\n*4\r\n$1\r\nd\r\n$1\r\n0\r\n$1\r\na\r\n$2\r\nno\r\n",
            1,
        )
        .unwrap();
        // Not an entry: reported as stored, and it decodes to nothing (the machine skips it).
        let c = r.parse_semantic(&unreadable).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].entry(), None);
        let no_distance =
            decode_replies(b"*3\r\n:1\r\n$1\r\nk\r\n*2\r\n$1\r\na\r\n$2\r\n{}\r\n", 1).unwrap();
        assert!(matches!(
            r.parse_semantic(&no_distance),
            Err(StoreError::Shape(_))
        ));
        let odd = decode_replies(b"*2\r\n:1\r\n$1\r\nk\r\n", 1).unwrap();
        assert!(matches!(r.parse_semantic(&odd), Err(StoreError::Shape(_))));
    }

    #[test]
    fn missing_index_is_a_miss() {
        let r = rs();
        r.semantic_lookup(&[1.0, 0.0], 4, 0.2, 64);
        for e in [
            "-sc:idx:m:2: no such index\r\n", // captured, RediSearch 2.10
            "-Unknown index name\r\n",
            "-Index with name 'sc:idx:m:2' not found\r\n",
        ] {
            let replies = decode_replies(e.as_bytes(), 1).unwrap();
            assert_eq!(r.parse_semantic(&replies).unwrap(), vec![], "{e}");
        }
    }

    #[test]
    fn dimension_mismatch_is_an_error_naming_the_index() {
        let r = rs();
        r.semantic_lookup(&[1.0, 0.1, 0.2], 4, 0.2, 64);
        // Captured: a 3-d query against an index of that name created with DIM 2.
        let wire = b"-Error parsing vector similarity query: query vector blob size (12) does not match index's expected size (8).\r\n";
        let replies = decode_replies(wire, 1).unwrap();
        let err = r.parse_semantic(&replies).unwrap_err();
        assert!(
            matches!(&err, StoreError::IndexMismatch { index, dim: 3, .. } if index == "sc:idx:m:3")
        );
        let msg = err.to_string();
        assert!(
            msg.contains("sc:idx:m:3") && msg.contains("3-d") && msg.contains("expected size (8)"),
            "{msg}"
        );
        assert!(msg.contains("FT.DROPINDEX"), "{msg}");
        let other = decode_replies(b"-Syntax error at offset 6 near a\r\n", 1).unwrap();
        assert!(matches!(
            r.parse_semantic(&other),
            Err(StoreError::Redis(_))
        ));
    }

    #[test]
    fn store_creates_the_index_then_sets_the_hash_with_a_ttl() {
        let r = rs();
        let c = commands(r.store(
            "id",
            &[1.0, 0.0, 0.5],
            &Encoded::new(&entry(100)),
            60,
            &["old".into()],
        ));
        assert_eq!(
            c.len(),
            4,
            "expired ids need no removal: Redis expires the hashes"
        );
        assert_eq!(
            c[0],
            [
                "FT.CREATE",
                "sc:idx:m:3",
                "ON",
                "HASH",
                "PREFIX",
                "1",
                "sc:e:m:",
                "SCHEMA",
                "ns",
                "TAG",
                "v",
                "VECTOR",
                "HNSW",
                "6",
                "TYPE",
                "FLOAT32",
                "DIM",
                "3",
                "DISTANCE_METRIC",
                "COSINE"
            ]
        );
        assert_eq!(c[1][0..2], ["HSET", "sc:e:m:{n}:id"]);
        assert_eq!(c[1][2], "v");
        assert_eq!(c[1][3], "<12 bytes>");
        assert_eq!(c[1][4..], ["ns", "n", "a", &entry(100).to_json()]);
        assert_eq!(c[2], ["EXPIRE", "sc:e:m:{n}:id", "60"]);
        assert_eq!(c[3], ["FT.INFO", "sc:idx:m:3"]);
        assert!(
            text(r.store("id", &[1.0], &Encoded::new(&entry(100)), 60, &[]))
                .contains("DIM\r\n$1\r\n1\r\n")
        );
    }

    /// Captured `FT.INFO` replies (RediSearch 2.10.5): an index of DIM 4 over `sc:e:m:` (ours
    /// for 4-d vectors), one of DIM 8 over `sc:e:m:`, one of DIM 2 over `other:`.
    const INFO_DIM4: &[u8] = include_bytes!("testdata/ft_info_dim4.resp");
    const INFO_DIM8: &[u8] = include_bytes!("testdata/ft_info_dim8.resp");
    const INFO_OTHER_PREFIX: &[u8] = include_bytes!("testdata/ft_info_other_prefix.resp");

    /// The replies to a store of a `dim`-d vector: FT.CREATE, HSET, EXPIRE, FT.INFO.
    fn store_replies(r: &Redisearch, dim: usize, create: &str, info: &[u8]) -> Vec<Reply> {
        r.store("id", &vec![0.5; dim], &Encoded::new(&entry(100)), 60, &[]);
        let mut wire = format!("{create}\r\n:3\r\n:1\r\n").into_bytes();
        wire.extend_from_slice(info);
        decode_replies(&wire, 4).unwrap()
    }

    #[test]
    fn an_existing_index_of_our_schema_is_fine_other_errors_are_not() {
        let r = rs();
        let ok = store_replies(&r, 4, "-Index already exists", INFO_DIM4);
        assert_eq!(r.check_store(&ok), Ok(()));
        assert_eq!(
            r.check_store(&store_replies(&r, 4, "+OK", INFO_DIM4)),
            Ok(())
        );
        let no_module = store_replies(&r, 4, "-ERR unknown command 'FT.CREATE'", INFO_DIM4);
        assert!(
            matches!(r.check_store(&no_module), Err(StoreError::Redis(e)) if e.contains("FT.CREATE"))
        );
        let mut oom = ok.clone();
        oom[1] = Reply::Error("OOM command not allowed".into());
        assert!(r.check_store(&oom).is_err());
        let mut no_info = ok.clone();
        no_info[3] = Reply::Error("Unknown index name".into());
        assert!(
            matches!(r.check_store(&no_info), Err(StoreError::Redis(e)) if e.contains("FT.INFO"))
        );
        assert!(r.check_store(&ok[..3]).is_err());
        assert!(r.check_store(&[]).is_err());
    }

    #[test]
    fn an_index_of_our_name_with_another_dim_or_prefix_is_reported_at_store() {
        let r = rs();
        let err = r
            .check_store(&store_replies(&r, 3, "-Index already exists", INFO_DIM8))
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::IndexMismatch { index, dim: 3, .. } if index == "sc:idx:m:3")
        );
        let msg = err.to_string();
        assert!(msg.contains("DIM 8") && msg.contains("3-d"), "{msg}");
        let err = r
            .check_store(&store_replies(
                &r,
                2,
                "-Index already exists",
                INFO_OTHER_PREFIX,
            ))
            .unwrap_err();
        assert!(err.to_string().contains(r#"["other:"]"#), "{err}");
        // Nothing recognisable (another engine's layout): not reported.
        let unknown = store_replies(&r, 4, "-Index already exists", b"*2\r\n+name\r\n+x\r\n");
        assert_eq!(r.check_store(&unknown), Ok(()));
    }

    #[test]
    fn find_value_walks_nested_pairs() {
        let info = decode_replies(INFO_DIM8, 1).unwrap();
        assert_eq!(find_value(&info[0], &["dim"]), Some(&Reply::Integer(8)));
        assert_eq!(find_value(&info[0], &["DIMENSIONS", "nope"]), None);
        assert_eq!(
            find_value(&info[0], &["index_name"]).and_then(Reply::as_str),
            Some("sc:idx:m:3")
        );
    }
}
