//! Metric names. The glue defines each once per VM; Envoy shows them in `/stats` as-is.

use crate::completion::Gate;
use crate::guards::Veto;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    HitExact,
    /// Exact hits answered from the local tier (also counted in `HitExact`).
    HitLocal,
    HitSemantic,
    Miss,
    Bypass,
    ErrorEmbeddings,
    ErrorLookup,
    ErrorStore,
    /// The stream ended while its store was in flight, so Envoy cancelled the callout.
    StoreCancelled,
    Stored,
    /// Embeddings started together with the exact lookup (`speculative_embedding`).
    Speculated,
    /// ... of which the exact lookup hit or failed, so the embedding was not needed.
    SpeculationUnused,
    StoreSkipped(Gate),
    Vetoed(Veto),
    TokensSaved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Histogram {
    /// Embeddings callout round trip, milliseconds.
    EmbeddingMs,
    /// Bridge lookup callout round trip (exact or semantic), milliseconds.
    LookupMs,
    /// Cosine distance of semantic hits, in ten-thousandths.
    HitDistance,
}

impl Counter {
    pub fn name(self) -> String {
        match self {
            Counter::HitExact => "semcache.hits.exact".into(),
            Counter::HitLocal => "semcache.hits.local".into(),
            Counter::HitSemantic => "semcache.hits.semantic".into(),
            Counter::Miss => "semcache.misses".into(),
            Counter::Bypass => "semcache.bypasses".into(),
            Counter::ErrorEmbeddings => "semcache.errors.embeddings".into(),
            Counter::ErrorLookup => "semcache.errors.lookup".into(),
            Counter::ErrorStore => "semcache.errors.store".into(),
            Counter::StoreCancelled => "semcache.errors.store_cancelled".into(),
            Counter::Stored => "semcache.stores".into(),
            Counter::Speculated => "semcache.embeddings.speculative".into(),
            Counter::SpeculationUnused => "semcache.embeddings.speculative_unused".into(),
            Counter::StoreSkipped(g) => format!("semcache.store_skipped.{}", g.reason()),
            Counter::Vetoed(v) => format!("semcache.vetoes.{}", v.name()),
            Counter::TokensSaved => "semcache.completion_tokens_saved".into(),
        }
    }

    /// Every counter, so the glue can define them all up front.
    pub fn all() -> Vec<Counter> {
        let mut v = vec![
            Counter::HitExact,
            Counter::HitLocal,
            Counter::HitSemantic,
            Counter::Miss,
            Counter::Bypass,
            Counter::ErrorEmbeddings,
            Counter::ErrorLookup,
            Counter::ErrorStore,
            Counter::StoreCancelled,
            Counter::Stored,
            Counter::Speculated,
            Counter::SpeculationUnused,
            Counter::TokensSaved,
        ];
        v.extend(Gate::ALL.iter().map(|g| Counter::StoreSkipped(*g)));
        v.extend(Veto::ALL.iter().map(|g| Counter::Vetoed(*g)));
        v
    }
}

impl Histogram {
    pub fn name(self) -> &'static str {
        match self {
            Histogram::EmbeddingMs => "semcache.embedding_ms",
            Histogram::LookupMs => "semcache.lookup_ms",
            Histogram::HitDistance => "semcache.hit_distance_e4",
        }
    }
    pub const ALL: [Histogram; 3] = [
        Histogram::EmbeddingMs,
        Histogram::LookupMs,
        Histogram::HitDistance,
    ];
}
