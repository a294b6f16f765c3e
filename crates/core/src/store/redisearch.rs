//! RediSearch back end (Redis Stack, Redis 8 with the query engine, Azure Managed Redis,
//! valkey-search): one HASH per entry, found by `FT.SEARCH` KNN.
//!
//! Layout, for embedding model `m` (sanitised to `<model>`), partition `ns` and entry `id`:
//! - `<prefix>:e:<model>:{ns}:<id>`: HASH `v` (FP32 vector), `ns` (TAG), `a` (the entry JSON:
//!   answer, canonical prompt, creation, expiry), with a native `EXPIRE` of the entry's TTL.
//!   The hash tag keeps a partition on one cluster slot, as in the vector-set layout.
//! - `<prefix>:idx:<model>:<dim>`: the index over `<prefix>:e:<model>:`, one per embedding model
//!   and dimension, created by every store (`FT.CREATE` answers "Index already exists" once it
//!   is there), so it comes back by itself after a `FLUSHALL` or an `FT.DROPINDEX`. The model
//!   in the key prefix keeps each index to its own entries: a second model's vectors are neither
//!   indexed twice nor counted as indexing failures by an index of another dimension.
//!
//! Expiry is Redis's own: an expired hash leaves the index with its key. Every read still
//! checks the `e` field of the entry, so a clock ahead of Redis's never serves a stale answer,
//! and nothing is left for the store to clean up.

use std::cell::Cell;

use super::{first_error, Candidate, ExactResult, Storage, StoreError};
use crate::embeddings::to_fp32_blob;
use crate::entry::Entry;
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
    /// `(largest distance worth returning, query dimension)`, remembered from
    /// `semantic_lookup` for its parse.
    query: Cell<(f64, usize)>,
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
            query: Cell::new((2.0, 0)),
        }
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
            "FT.CREATE", &index, "ON", "HASH", "PREFIX", "1", &prefix, "SCHEMA", "ns", "TAG", "v", "VECTOR", "HNSW",
            "6", "TYPE", "FLOAT32", "DIM", &dim, "DISTANCE_METRIC", "COSINE",
        ]);
    }

    /// The entry id of a returned key (the key itself if it is not one of ours).
    fn id_of<'a>(&self, key: &'a str) -> &'a str {
        let ours = format!("{}{{{}}}:", self.entries_prefix(), self.ns);
        key.strip_prefix(ours.as_str()).unwrap_or(key)
    }
}

impl Storage for Redisearch {
    fn exact_lookup(&self, id: &str, _now: u64) -> Pipeline {
        let mut p = Pipeline::new();
        p.cmd(&["HGET", &self.key(id), "a"]);
        p
    }

    fn parse_exact(&self, replies: &[Reply], now: u64) -> Result<ExactResult, StoreError> {
        let [reply] = replies else {
            return Err(StoreError::Shape("exact lookup expects 1 reply"));
        };
        let entry = match reply {
            Reply::Error(e) => return Err(StoreError::Redis(e.clone())),
            Reply::Nil => None,
            Reply::Bulk(b) => Entry::from_json(b).filter(|e| e.is_live(now)),
            _ => return Err(StoreError::Shape("HGET reply")),
        };
        // Redis expires the hashes itself: nothing to clean up.
        Ok(ExactResult { entry, expired: Vec::new() })
    }

    fn semantic_lookup(&self, vector: &[f32], k: u32, max_distance: f64, ef: u32) -> Pipeline {
        self.query.set((max_distance + NEAR_MARGIN, vector.len()));
        // KNN, then the threshold in code: VECTOR_RANGE on HNSW missed near duplicates.
        let query = format!("@ns:{{{}}}=>[KNN {k} @v $B EF_RUNTIME {ef} AS d]", escape_tag(&self.ns));
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
            b"SORTBY",
            b"d",
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

    fn parse_semantic(
        &self,
        replies: &[Reply],
        now: u64,
        _expired: &mut Vec<String>,
    ) -> Result<Vec<Candidate>, StoreError> {
        let [reply] = replies else {
            return Err(StoreError::Shape("semantic lookup expects 1 reply"));
        };
        let items = match reply {
            // Nothing stored yet for this model and dimension (or just flushed).
            Reply::Error(e) if is_missing_index(e) => return Ok(Vec::new()),
            Reply::Error(e) if is_dimension_mismatch(e) => {
                let dim = self.query.get().1;
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
        let window = self.query.get().0;
        let mut out = Vec::with_capacity(docs.len() / 2);
        for doc in docs.chunks_exact(2) {
            let key = doc[0].as_str().ok_or(StoreError::Shape("FT.SEARCH key"))?;
            // A document that expired during the query comes back without fields: skip it.
            let Some(fields) = doc[1].as_array() else {
                continue;
            };
            let (mut distance, mut entry) = (None, None);
            for pair in fields.chunks_exact(2) {
                match pair[0].as_str() {
                    Some("d") => distance = parse_f64(&pair[1]),
                    Some("a") => entry = pair[1].as_bytes().and_then(Entry::from_json),
                    _ => {}
                }
            }
            let Some(distance) = distance else {
                return Err(StoreError::Shape("FT.SEARCH distance"));
            };
            // An entry that cannot be read or is past its expiry cannot be served.
            let Some(entry) = entry.filter(|e| e.is_live(now)) else {
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
                entry,
            });
        }
        out.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        Ok(out)
    }

    fn store(&self, id: &str, vector: &[f32], entry: &Entry, ttl: u64, _expired: &[String]) -> Pipeline {
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
            entry.to_json().as_bytes(),
        ]);
        p.cmd(&["EXPIRE", &key, &ttl.to_string()]);
        p
    }

    fn check_store(&self, replies: &[Reply]) -> Result<(), StoreError> {
        let Some((create, rest)) = replies.split_first() else {
            return Err(StoreError::Shape("store expects FT.CREATE first"));
        };
        match create {
            Reply::Error(e) if e.to_ascii_lowercase().contains("already exists") => {}
            Reply::Error(e) => return Err(StoreError::Redis(format!("FT.CREATE: {e}"))),
            _ => {}
        }
        first_error(rest)
    }
}
