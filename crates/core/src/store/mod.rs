//! The storage seam: the commands the filter sends through the bridge, and how their replies
//! are read. One implementation per Redis back end; the state machine only sees this trait.

pub mod redisearch;
pub mod vset;

use crate::entry::{Encoded, Entry};
use crate::packed;
use crate::resp::{Pipeline, Reply};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum StoreError {
    #[error("Redis answered an error: {0}")]
    Redis(String),
    #[error("unexpected reply shape: {0}")]
    Shape(&'static str),
    /// An index under our name that cannot serve our entries (created elsewhere with another
    /// DIM or key prefix): every lookup would miss, so it is reported instead.
    #[error(
        "index {index} cannot serve {dim}-d FP32 entries ({detail}): it was created with another \
         schema; drop it (FT.DROPINDEX {index}) or use another key_prefix"
    )]
    IndexMismatch {
        index: String,
        dim: usize,
        detail: String,
    },
}

/// How many expired ids one request collects for the next store to remove, at most.
pub const CLEANUP_BATCH: usize = 32;

/// A semantic candidate: its cosine distance to the query and its entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub distance: f64,
    /// Decoded (inflated, parsed) only when the candidate is considered: the nearest one
    /// usually decides, so the others are never decoded.
    pub stored: Vec<u8>,
}

impl Candidate {
    /// The entry, or `None` when the stored bytes are not one (such a candidate is skipped).
    pub fn entry(&self) -> Option<Entry> {
        packed::unpack(&self.stored)
    }
}

pub trait Storage {
    /// The exact-tier lookup of `id`. Times (`now`) are unix milliseconds throughout.
    fn exact_lookup(&self, id: &str) -> Pipeline;
    /// The entry, if it is there and live.
    fn parse_exact(&self, replies: &[Reply], now: u64) -> Result<Option<Entry>, StoreError>;
    /// Housekeeping reads appended to the last lookup of a request: the ids whose time is up,
    /// for the next store to remove. Only a back end without native per-entry expiry has any.
    fn expiry_scan(&self, _now: u64) -> Pipeline {
        Pipeline::new()
    }
    fn parse_expiry_scan(&self, _replies: &[Reply]) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    /// One callout: the `k` nearest entries within `max_distance`, with their payloads.
    fn semantic_lookup(&self, vector: &[f32], k: u32, max_distance: f64, ef: u32) -> Pipeline;
    /// The candidates, nearest first, undecoded: whether each is live is checked by whoever
    /// decodes it.
    fn parse_semantic(&self, replies: &[Reply]) -> Result<Vec<Candidate>, StoreError>;
    /// One callout: store the entry and remove what is known to be expired.
    fn store(
        &self,
        id: &str,
        vector: &[f32],
        entry: &Encoded<'_>,
        ttl: u64,
        expired: &[String],
    ) -> Pipeline;
    fn check_store(&self, replies: &[Reply]) -> Result<(), StoreError>;
}

/// The one reply of an exact lookup (`what` names its command): the stored entry, served
/// only while it is live.
pub(crate) fn exact_entry(
    replies: &[Reply],
    now: u64,
    what: &'static str,
) -> Result<Option<Entry>, StoreError> {
    match replies {
        [Reply::Error(e)] => Err(StoreError::Redis(e.clone())),
        [Reply::Nil] => Ok(None),
        [Reply::Bulk(b)] => Ok(packed::unpack(b).filter(|e| e.is_live(now))),
        [_] => Err(StoreError::Shape(what)),
        _ => Err(StoreError::Shape("exact lookup expects 1 reply")),
    }
}

/// A Redis error anywhere in a pipeline's replies fails the whole operation.
pub(crate) fn first_error(replies: &[Reply]) -> Result<(), StoreError> {
    for r in replies {
        if let Reply::Error(e) = r {
            return Err(StoreError::Redis(e.clone()));
        }
    }
    Ok(())
}
