//! Command-line flags (each also settable from `SEMCACHE_MOCK_LLM_*`) and the
//! part of the configuration tests may change at run time (`/control/config`).

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use clap::{ArgAction, Parser};
use serde::Deserialize;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "semcache-mock-llm",
    version,
    about = "OpenAI-compatible mock LLM upstream for semcache demos, tests and benchmarks"
)]
pub struct Cli {
    /// Address to listen on (port 0 picks a free port; the bound address is
    /// printed as `listening on http://IP:PORT`).
    #[arg(
        long,
        env = "SEMCACHE_MOCK_LLM_LISTEN",
        default_value = "127.0.0.1:8083"
    )]
    pub listen: String,

    /// Time before a response (non-stream) or before the first chunk (stream).
    #[arg(long, env = "SEMCACHE_MOCK_LLM_LATENCY_MS", default_value_t = 800)]
    pub latency_ms: u64,

    /// Delay between two stream chunks.
    #[arg(long, env = "SEMCACHE_MOCK_LLM_CHUNK_DELAY_MS", default_value_t = 20)]
    pub chunk_delay_ms: u64,

    /// Words of the answer per stream content chunk.
    #[arg(long, env = "SEMCACHE_MOCK_LLM_WORDS_PER_CHUNK", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub words_per_chunk: u16,

    /// Delay of the stub `/v1/embeddings` endpoint.
    #[arg(
        long,
        env = "SEMCACHE_MOCK_LLM_EMBEDDINGS_DELAY_MS",
        default_value_t = 0
    )]
    pub embeddings_delay_ms: u64,

    /// Gzip responses when the request says `accept-encoding: gzip`
    /// (`x-mock-gzip` overrides per request).
    #[arg(long, env = "SEMCACHE_MOCK_LLM_GZIP_WHEN_ACCEPTED", default_value_t = true,
          action = ArgAction::Set, value_name = "BOOL")]
    pub gzip_when_accepted: bool,

    /// Longest a request waits on an `x-mock-hold` token before going on anyway,
    /// so a test that forgets to release cannot wedge the server.
    #[arg(
        long,
        env = "SEMCACHE_MOCK_LLM_HOLD_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub hold_timeout_ms: u64,

    /// Log filter (tracing `EnvFilter` syntax); falls back to `RUST_LOG`, then `info`.
    #[arg(long, env = "SEMCACHE_MOCK_LLM_LOG")]
    pub log: Option<String>,
}

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct StaticConfig {
    pub words_per_chunk: usize,
    pub gzip_when_accepted: bool,
}

/// Settings `/control/config` may change while the server runs; atomics so
/// the hot path never takes a lock.
#[derive(Debug)]
pub struct RuntimeConfig {
    latency_ms: AtomicU64,
    chunk_delay_ms: AtomicU64,
    embeddings_delay_ms: AtomicU64,
    /// 0 = healthy, otherwise every embeddings request fails with this status.
    embeddings_status: AtomicU16,
}

/// Wire form of [`RuntimeConfig`]; in a `POST /control/config` body every field
/// is optional and only the ones present change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    pub latency_ms: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    pub embeddings_delay_ms: Option<u64>,
    /// `0` or `null` means healthy.
    #[serde(default, deserialize_with = "nullable_status")]
    pub embeddings_status: Option<Option<u16>>,
}

/// Distinguishes "absent" (outer `None`) from an explicit `null` (healthy).
fn nullable_status<'de, D>(d: D) -> Result<Option<Option<u16>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<u16>::deserialize(d).map(Some)
}

impl RuntimeConfig {
    pub fn new(cli: &Cli) -> Self {
        Self {
            latency_ms: AtomicU64::new(cli.latency_ms),
            chunk_delay_ms: AtomicU64::new(cli.chunk_delay_ms),
            embeddings_delay_ms: AtomicU64::new(cli.embeddings_delay_ms),
            embeddings_status: AtomicU16::new(0),
        }
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Relaxed))
    }

    pub fn chunk_delay(&self) -> Duration {
        Duration::from_millis(self.chunk_delay_ms.load(Relaxed))
    }

    pub fn embeddings_delay(&self) -> Duration {
        Duration::from_millis(self.embeddings_delay_ms.load(Relaxed))
    }

    pub fn embeddings_status(&self) -> Option<u16> {
        match self.embeddings_status.load(Relaxed) {
            0 => None,
            s => Some(s),
        }
    }

    /// Applies a patch; the caller has validated the status code.
    pub fn apply(&self, patch: &ConfigPatch) {
        if let Some(v) = patch.latency_ms {
            self.latency_ms.store(v, Relaxed);
        }
        if let Some(v) = patch.chunk_delay_ms {
            self.chunk_delay_ms.store(v, Relaxed);
        }
        if let Some(v) = patch.embeddings_delay_ms {
            self.embeddings_delay_ms.store(v, Relaxed);
        }
        if let Some(v) = patch.embeddings_status {
            self.embeddings_status.store(v.unwrap_or(0), Relaxed);
        }
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "latency_ms": self.latency_ms.load(Relaxed),
            "chunk_delay_ms": self.chunk_delay_ms.load(Relaxed),
            "embeddings_delay_ms": self.embeddings_delay_ms.load(Relaxed),
            "embeddings_status": self.embeddings_status(),
        })
    }
}
