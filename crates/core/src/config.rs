//! Filter configuration: the raw serde shape, validation, and per-route overlays.
//!
//! The plugin configuration is JSON (or an APIM XML policy, see [`crate::apim`]). A route may
//! carry a JSON overlay in its metadata; it is deep-merged over the plugin configuration and
//! validated the same way, so an overlay can never produce a config the plugin would refuse.

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("semcache config: field `{field}`: {message}")]
    Field { field: String, message: String },
    #[error("semcache config: {0}")]
    Syntax(String),
    #[error("semcache config: APIM policy: {0}")]
    Apim(String),
}

fn field_err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Where a partition component comes from (APIM's `<vary-by>`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum VaryBy {
    /// A request header's value (empty when absent).
    Header(String),
    /// An Envoy attribute path, e.g. `xds.route_name` or
    /// `metadata.filter_metadata.envoy.filters.http.jwt_authn.payload.sub`... given as a list.
    Attribute(AttributePath),
    /// A JSON pointer into the request body, e.g. `/user`.
    Body(String),
    /// A fixed string.
    Literal(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum AttributePath {
    Dotted(String),
    Segments(Vec<String>),
}

impl AttributePath {
    pub fn segments(&self) -> Vec<String> {
        match self {
            AttributePath::Dotted(s) => s.split('.').map(str::to_string).collect(),
            AttributePath::Segments(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthHeader {
    /// `authorization: Bearer <key>` (OpenAI and most compatible servers).
    Bearer,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodingFormat {
    Base64,
    Float,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Redis 8 vector sets (`VADD`/`VSIM`).
    VectorSets,
    /// RediSearch `FT.SEARCH` KNN (Redis Stack, Azure Managed Redis, valkey-search).
    Redisearch,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbeddings {
    cluster: Option<String>,
    authority: Option<String>,
    path: Option<String>,
    model: Option<String>,
    dimensions: Option<u32>,
    timeout_ms: Option<u64>,
    encoding_format: Option<EncodingFormat>,
    api_key: Option<String>,
    api_key_env: Option<String>,
    auth_header: Option<AuthHeader>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBridge {
    cluster: Option<String>,
    authority: Option<String>,
    path: Option<String>,
    timeout_ms: Option<u64>,
    token: Option<String>,
    token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuards {
    numbers: Option<bool>,
    negation: Option<bool>,
    entities: Option<bool>,
    quoted: Option<bool>,
    scope: Option<bool>,
    substitution: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocalCache {
    entries: Option<u32>,
    ttl_seconds: Option<u64>,
    max_entry_bytes: Option<usize>,
    semantic_hits: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    status: Option<String>,
    r#match: Option<String>,
    distance: Option<String>,
    age: Option<String>,
    veto: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    enabled: Option<bool>,
    backend: Option<Backend>,
    score_threshold: Option<f64>,
    ttl_seconds: Option<u64>,
    key_prefix: Option<String>,
    embeddings: Option<RawEmbeddings>,
    bridge: Option<RawBridge>,
    ignore_system_messages: Option<bool>,
    max_message_count: Option<u32>,
    vary_by: Option<Vec<VaryBy>>,
    cache_statuses: Option<Vec<u16>>,
    max_request_body_bytes: Option<usize>,
    max_response_body_bytes: Option<usize>,
    exact_match: Option<bool>,
    semantic_match: Option<bool>,
    speculative_embedding: Option<bool>,
    fold_exact_lookup: Option<bool>,
    top_k: Option<u32>,
    search_ef: Option<u32>,
    search_nothread: Option<bool>,
    adaptive_search_ef: Option<bool>,
    compress_entries: Option<bool>,
    guards: Option<RawGuards>,
    local_cache: Option<RawLocalCache>,
    headers: Option<RawHeaders>,
    bypass_header: Option<String>,
    hold_request_headers: Option<bool>,
    /// Only meaningful in the JSON wrapper of an APIM policy; removed before parsing.
    #[serde(default, rename = "apim_policy")]
    _apim_policy: Option<String>,
}

/// Secrets may come inline or from an environment variable (Envoy's
/// `vm_config.environment_variables`); the variable is read once at configure time.
#[derive(Debug, Clone, PartialEq)]
pub enum Secret {
    None,
    Inline(String),
    Env(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub model: String,
    pub dimensions: Option<u32>,
    pub timeout_ms: u64,
    pub encoding_format: EncodingFormat,
    pub api_key: Secret,
    pub auth_header: AuthHeader,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub token: Secret,
}

/// Deterministic vetoes applied to semantic candidates (see [`crate::guards`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardsConfig {
    pub numbers: bool,
    pub negation: bool,
    pub entities: bool,
    pub quoted: bool,
    pub scope: bool,
    pub substitution: bool,
}

/// The local tier: exact entries kept in Envoy's shared data (one map per Envoy, shared by its
/// workers), so a repeated request is answered without a callout. Off when `entries` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalCacheConfig {
    /// Slots of the direct-mapped table (memory is at most `entries * max_entry_bytes`).
    pub entries: u32,
    /// How long a copy is served without asking Redis again: the bound on serving an entry
    /// that was deleted from Redis.
    pub ttl_seconds: u64,
    /// Larger entries are not kept locally.
    pub max_entry_bytes: usize,
    /// Also keep a semantic hit's answer under the query's own key, so that a repeat of the
    /// same paraphrase skips the embedding and the search (served as the semantic hit it is).
    pub semantic_hits: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeaderNames {
    pub status: String,
    pub r#match: String,
    pub distance: String,
    pub age: String,
    pub veto: String,
}

/// The validated configuration the filter runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub enabled: bool,
    pub backend: Backend,
    /// Cosine distance (1 - cosine similarity), 0.0..=1.0, smaller is stricter (APIM's meaning).
    pub score_threshold: f64,
    pub ttl_seconds: u64,
    pub key_prefix: String,
    pub embeddings: EmbeddingsConfig,
    pub bridge: BridgeConfig,
    pub ignore_system_messages: bool,
    pub max_message_count: Option<u32>,
    pub vary_by: Vec<VaryBy>,
    pub cache_statuses: Vec<u16>,
    pub max_request_body_bytes: usize,
    pub max_response_body_bytes: usize,
    pub exact_match: bool,
    pub semantic_match: bool,
    /// Start the embedding with the exact lookup while exact hits are rare (`speculation`).
    pub speculative_embedding: bool,
    /// While exact hits are rare, send the exact lookup in Redis with the vector search instead
    /// of before it (`speculation`): one callout less per semantic hit and miss. For an embedder
    /// on the proxy's host; off by default.
    pub fold_exact_lookup: bool,
    pub top_k: u32,
    pub search_ef: u32,
    /// Vector sets: `VSIM … NOTHREAD` (search on Redis's main thread).
    pub search_nothread: bool,
    /// Vector sets: narrower searches of small sets (`breadth`), `search_ef` the widest.
    pub adaptive_search_ef: bool,
    /// Store entries DEFLATE-compressed (`packed`).
    pub compress_entries: bool,
    pub guards: GuardsConfig,
    pub local_cache: LocalCacheConfig,
    pub headers: HeaderNames,
    pub bypass_header: String,
    pub hold_request_headers: bool,
}

/// Dialogs longer than this are not cached unless configured otherwise: a conversation of
/// hundreds of turns is practically never repeated, and its entry would be large.
pub const DEFAULT_MAX_MESSAGE_COUNT: u32 = 100;

/// Shipped default threshold, chosen from `make eval` on the tuning half (see README).
pub const DEFAULT_SCORE_THRESHOLD: f64 = 0.18;

/// The local tier's default size: at most 16 MiB per Envoy at the default `max_entry_bytes`,
/// about 1.5 MiB with typical 1 KB answers. On by default because it is what makes a repeated
/// request cost about what proxying it does (docs/bench.md, row 3); 0 turns it off.
pub const DEFAULT_LOCAL_ENTRIES: u32 = 1024;

fn non_empty(field: &str, v: Option<String>, default: Option<&str>) -> Result<String, ConfigError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(field_err(field, "expected a non-empty string")),
        Some(s) => Ok(s),
        None => default
            .map(str::to_string)
            .ok_or_else(|| field_err(field, "is required")),
    }
}

fn header_name(field: &str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    let name = non_empty(field, v, Some(default))?;
    let valid = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(field_err(
            field,
            format!("expected an HTTP header name (letters, digits, '-', '_'), got {name:?}"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn secret(
    inline_field: &str,
    inline: Option<String>,
    env_field: &str,
    env: Option<String>,
) -> Result<Secret, ConfigError> {
    match (inline, env) {
        (Some(_), Some(_)) => Err(field_err(
            inline_field,
            format!("set either `{inline_field}` or `{env_field}`, not both"),
        )),
        (Some(v), None) => Ok(Secret::Inline(non_empty(inline_field, Some(v), None)?)),
        (None, Some(e)) => Ok(Secret::Env(non_empty(env_field, Some(e), None)?)),
        (None, None) => Ok(Secret::None),
    }
}

fn timeout(field: &str, v: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    let t = v.unwrap_or(default);
    if !(1..=300_000).contains(&t) {
        return Err(field_err(
            field,
            format!("expected milliseconds between 1 and 300000, got {t}"),
        ));
    }
    Ok(t)
}

fn path(field: &str, v: Option<String>, default: &str) -> Result<String, ConfigError> {
    let p = non_empty(field, v, Some(default))?;
    if !p.starts_with('/') {
        return Err(field_err(
            field,
            format!("expected a path starting with '/', got {p:?}"),
        ));
    }
    Ok(p)
}

impl Config {
    /// Parses the plugin configuration: JSON, or an APIM XML policy (first character `<`).
    pub fn parse(text: &str) -> Result<(Config, Value), ConfigError> {
        let value = Self::to_value(text)?;
        let config = Self::from_value(&value)?;
        Ok((config, value))
    }

    /// The configuration as a JSON value, with an APIM policy translated into JSON fields.
    pub fn to_value(text: &str) -> Result<Value, ConfigError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('<') {
            return crate::apim::translate(trimmed);
        }
        if trimmed.is_empty() {
            return Err(ConfigError::Syntax(
                "the plugin configuration is empty; expected a JSON object or an APIM policy"
                    .into(),
            ));
        }
        let mut value: Value = serde_json::from_str(trimmed)
            .map_err(|e| ConfigError::Syntax(format!("invalid JSON: {e}")))?;
        let Some(obj) = value.as_object_mut() else {
            return Err(ConfigError::Syntax("expected a JSON object".into()));
        };
        // The JSON wrapper form: APIM XML plus JSON fields, where the JSON fields win.
        if let Some(policy) = obj.remove("apim_policy") {
            let Some(xml) = policy.as_str() else {
                return Err(field_err(
                    "apim_policy",
                    "expected a string holding APIM XML",
                ));
            };
            let mut base = crate::apim::translate(xml)?;
            merge(&mut base, &value);
            return Ok(base);
        }
        Ok(value)
    }

    /// Validates a JSON value into a [`Config`].
    pub fn from_value(value: &Value) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                ConfigError::Syntax(inner)
            } else {
                field_err(&path, inner)
            }
        })?;
        Self::validate(raw)
    }

    /// Applies a per-route JSON overlay (deep merge) and validates the result.
    pub fn with_overlay(base: &Value, overlay: &str) -> Result<Config, ConfigError> {
        let patch: Value = serde_json::from_str(overlay)
            .map_err(|e| ConfigError::Syntax(format!("route overlay: invalid JSON: {e}")))?;
        if !patch.is_object() {
            return Err(ConfigError::Syntax(
                "route overlay: expected a JSON object".into(),
            ));
        }
        let mut merged = base.clone();
        merge(&mut merged, &patch);
        Self::from_value(&merged)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let score_threshold = raw.score_threshold.unwrap_or(DEFAULT_SCORE_THRESHOLD);
        if !(0.0..=1.0).contains(&score_threshold) || score_threshold.is_nan() {
            return Err(field_err(
                "score_threshold",
                format!(
                    "expected a cosine distance between 0.0 and 1.0 (smaller is stricter), got {score_threshold}"
                ),
            ));
        }
        let ttl_seconds = raw.ttl_seconds.unwrap_or(3600);
        if !(1..=31_536_000).contains(&ttl_seconds) {
            return Err(field_err(
                "ttl_seconds",
                format!("expected seconds between 1 and 31536000 (one year), got {ttl_seconds}"),
            ));
        }
        let key_prefix = non_empty("key_prefix", raw.key_prefix, Some("sc"))?;
        if key_prefix.contains(['{', '}', ' ']) {
            return Err(field_err(
                "key_prefix",
                "expected a key prefix without braces or spaces",
            ));
        }

        let e = raw.embeddings.unwrap_or_default();
        let embeddings = EmbeddingsConfig {
            cluster: non_empty("embeddings.cluster", e.cluster, None)?,
            authority: non_empty("embeddings.authority", e.authority, Some("embeddings"))?,
            path: path("embeddings.path", e.path, "/v1/embeddings")?,
            model: non_empty("embeddings.model", e.model, Some("text-embedding-3-small"))?,
            dimensions: match e.dimensions {
                Some(0) => return Err(field_err("embeddings.dimensions", "expected at least 1")),
                Some(d) if d > 16_384 => {
                    return Err(field_err("embeddings.dimensions", "expected at most 16384"))
                }
                d => d,
            },
            timeout_ms: timeout("embeddings.timeout_ms", e.timeout_ms, 2000)?,
            encoding_format: e.encoding_format.unwrap_or(EncodingFormat::Base64),
            api_key: secret(
                "embeddings.api_key",
                e.api_key,
                "embeddings.api_key_env",
                e.api_key_env,
            )?,
            auth_header: e.auth_header.unwrap_or(AuthHeader::Bearer),
        };

        let b = raw.bridge.unwrap_or_default();
        let bridge = BridgeConfig {
            cluster: non_empty("bridge.cluster", b.cluster, None)?,
            authority: non_empty("bridge.authority", b.authority, Some("semcache-bridge"))?,
            path: path("bridge.path", b.path, "/v1/resp")?,
            timeout_ms: timeout("bridge.timeout_ms", b.timeout_ms, 1000)?,
            token: secret("bridge.token", b.token, "bridge.token_env", b.token_env)?,
        };

        let max_message_count = raw.max_message_count.unwrap_or(DEFAULT_MAX_MESSAGE_COUNT);
        if !(1..=100_000).contains(&max_message_count) {
            return Err(field_err(
                "max_message_count",
                format!("expected 1 to 100000 dialog messages, got {max_message_count}"),
            ));
        }
        let vary_by = raw.vary_by.unwrap_or_default();
        for (i, v) in vary_by.iter().enumerate() {
            let ok = match v {
                VaryBy::Header(h) => !h.trim().is_empty(),
                VaryBy::Attribute(p) => {
                    let segs = p.segments();
                    !segs.is_empty() && segs.iter().all(|s| !s.is_empty())
                }
                VaryBy::Body(p) => p.is_empty() || p.starts_with('/'),
                VaryBy::Literal(_) => true,
            };
            if !ok {
                return Err(field_err(
                    &format!("vary_by[{i}]"),
                    "expected a non-empty header name, a dotted attribute path, a JSON pointer starting with '/', or a literal",
                ));
            }
        }
        let cache_statuses = raw.cache_statuses.unwrap_or_else(|| vec![200]);
        if cache_statuses.is_empty() || cache_statuses.iter().any(|s| !(200..=299).contains(s)) {
            return Err(field_err(
                "cache_statuses",
                "expected a non-empty list of 2xx status codes",
            ));
        }
        let max_request_body_bytes = raw.max_request_body_bytes.unwrap_or(1 << 20);
        let max_response_body_bytes = raw.max_response_body_bytes.unwrap_or(1 << 20);
        for (field, v) in [
            ("max_request_body_bytes", max_request_body_bytes),
            ("max_response_body_bytes", max_response_body_bytes),
        ] {
            if !(1024..=64 << 20).contains(&v) {
                return Err(field_err(
                    field,
                    format!("expected bytes between 1024 and 67108864, got {v}"),
                ));
            }
        }
        let top_k = raw.top_k.unwrap_or(4);
        if !(1..=32).contains(&top_k) {
            return Err(field_err(
                "top_k",
                format!("expected 1 to 32 candidates, got {top_k}"),
            ));
        }
        let search_ef = raw.search_ef.unwrap_or(64);
        if !(1..=4096).contains(&search_ef) {
            return Err(field_err(
                "search_ef",
                format!("expected 1 to 4096, got {search_ef}"),
            ));
        }
        let g = raw.guards.unwrap_or_default();
        let guards = GuardsConfig {
            numbers: g.numbers.unwrap_or(true),
            negation: g.negation.unwrap_or(true),
            entities: g.entities.unwrap_or(true),
            quoted: g.quoted.unwrap_or(true),
            scope: g.scope.unwrap_or(true),
            substitution: g.substitution.unwrap_or(true),
        };
        let l = raw.local_cache.unwrap_or_default();
        let local_cache = LocalCacheConfig {
            entries: l.entries.unwrap_or(DEFAULT_LOCAL_ENTRIES),
            ttl_seconds: l.ttl_seconds.unwrap_or(10),
            max_entry_bytes: l.max_entry_bytes.unwrap_or(16 << 10),
            semantic_hits: l.semantic_hits.unwrap_or(true),
        };
        if local_cache.entries > 1 << 20 {
            return Err(field_err(
                "local_cache.entries",
                format!(
                    "expected 0 (off) to 1048576 slots, got {}",
                    local_cache.entries
                ),
            ));
        }
        if !(1..=86_400).contains(&local_cache.ttl_seconds) {
            return Err(field_err(
                "local_cache.ttl_seconds",
                format!(
                    "expected seconds between 1 and 86400, got {}",
                    local_cache.ttl_seconds
                ),
            ));
        }
        if !(256..=1 << 20).contains(&local_cache.max_entry_bytes) {
            return Err(field_err(
                "local_cache.max_entry_bytes",
                format!(
                    "expected bytes between 256 and 1048576, got {}",
                    local_cache.max_entry_bytes
                ),
            ));
        }
        let h = raw.headers.unwrap_or_default();
        let headers = HeaderNames {
            status: header_name("headers.status", h.status, "x-semcache-status")?,
            r#match: header_name("headers.match", h.r#match, "x-semcache-match")?,
            distance: header_name("headers.distance", h.distance, "x-semcache-distance")?,
            age: header_name("headers.age", h.age, "age")?,
            veto: header_name("headers.veto", h.veto, "x-semcache-veto")?,
        };
        let exact_match = raw.exact_match.unwrap_or(true);
        let semantic_match = raw.semantic_match.unwrap_or(true);
        Ok(Config {
            enabled: raw.enabled.unwrap_or(true),
            backend: raw.backend.unwrap_or(Backend::VectorSets),
            score_threshold,
            ttl_seconds,
            key_prefix,
            embeddings,
            bridge,
            ignore_system_messages: raw.ignore_system_messages.unwrap_or(false),
            max_message_count: Some(max_message_count),
            vary_by,
            cache_statuses,
            max_request_body_bytes,
            max_response_body_bytes,
            exact_match,
            semantic_match,
            speculative_embedding: raw.speculative_embedding.unwrap_or(true),
            // Off: beside a hosted embeddings API the exact lookup costs nothing on the path,
            // and folded, a Redis exact hit would wait a whole embedding (README).
            fold_exact_lookup: raw.fold_exact_lookup.unwrap_or(false),
            top_k,
            search_ef,
            // The cache's Redis is its own (a sidecar), and partitions are small: the main
            // thread is faster and cheaper than a thread per search (README, search_nothread).
            search_nothread: raw.search_nothread.unwrap_or(true),
            adaptive_search_ef: raw.adaptive_search_ef.unwrap_or(true),
            compress_entries: raw.compress_entries.unwrap_or(true),
            guards,
            local_cache,
            headers,
            bypass_header: header_name("bypass_header", raw.bypass_header, "x-semcache-bypass")?,
            hold_request_headers: raw.hold_request_headers.unwrap_or(false),
        })
    }
}

/// Deep-merges `patch` into `base`: objects merge key by key, anything else replaces.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"{"embeddings":{"cluster":"emb"},"bridge":{"cluster":"br"}}"#;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let (c, _) = Config::parse(MIN).unwrap();
        assert_eq!(c.score_threshold, DEFAULT_SCORE_THRESHOLD);
        assert_eq!(c.ttl_seconds, 3600);
        assert_eq!(c.embeddings.path, "/v1/embeddings");
        assert_eq!(c.embeddings.encoding_format, EncodingFormat::Base64);
        assert_eq!(c.bridge.path, "/v1/resp");
        assert_eq!(c.cache_statuses, vec![200]);
        assert!(!c.ignore_system_messages);
        assert_eq!(c.headers.status, "x-semcache-status");
        assert_eq!(c.backend, Backend::VectorSets);
        assert_eq!(c.local_cache.entries, DEFAULT_LOCAL_ENTRIES);
        assert!(c.adaptive_search_ef && c.search_nothread && !c.fold_exact_lookup);
        assert_eq!(c.local_cache.ttl_seconds, 10);
        assert!(c.local_cache.semantic_hits);
    }

    #[test]
    fn errors_name_the_field_and_what_was_expected() {
        let e =
            err(r#"{"score_threshold":1.5,"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"}}"#);
        assert!(
            e.contains("`score_threshold`") && e.contains("between 0.0 and 1.0"),
            "{e}"
        );
        let e =
            err(r#"{"embeddings":{"cluster":"e","timeout_ms":"fast"},"bridge":{"cluster":"b"}}"#);
        assert!(e.contains("`embeddings.timeout_ms`"), "{e}");
        let e = err(r#"{"embeddings":{},"bridge":{"cluster":"b"}}"#);
        assert!(e.contains("`embeddings.cluster`: is required"), "{e}");
        let e =
            err(r#"{"score_treshold":0.1,"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"}}"#);
        assert!(e.contains("unknown field `score_treshold`"), "{e}");
        let e = err(
            r#"{"vary_by":[{"colour":"x"}],"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"}}"#,
        );
        assert!(e.contains("vary_by[0]"), "{e}");
        let e = err(
            r#"{"cache_statuses":[500],"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"}}"#,
        );
        assert!(e.contains("`cache_statuses`"), "{e}");
        let e = err(
            r#"{"bridge":{"cluster":"b","token":"x","token_env":"Y"},"embeddings":{"cluster":"e"}}"#,
        );
        assert!(e.contains("not both"), "{e}");
        assert!(err("[1]").contains("expected a JSON object"));
        assert!(err("").contains("empty"));
        let e = err(
            r#"{"local_cache":{"entries":4096,"ttl_seconds":0},"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"}}"#,
        );
        assert!(
            e.contains("`local_cache.ttl_seconds`") && e.contains("between 1 and 86400"),
            "{e}"
        );
        let e = err(
            r#"{"local_cache":{"semantic_hits":"yes"},"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"}}"#,
        );
        assert!(
            e.contains("`local_cache.semantic_hits`") && e.contains("boolean"),
            "{e}"
        );
        let e = err(
            r#"{"local_cache":{"slots":1},"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"}}"#,
        );
        assert!(
            e.contains("local_cache") && e.contains("unknown field `slots`"),
            "{e}"
        );
    }

    #[test]
    fn overlay_merges_deeply_and_is_validated() {
        let (_, base) = Config::parse(MIN).unwrap();
        let c = Config::with_overlay(
            &base,
            r#"{"score_threshold":0.05,"embeddings":{"timeout_ms":50}}"#,
        )
        .unwrap();
        assert_eq!(c.score_threshold, 0.05);
        assert_eq!(c.embeddings.timeout_ms, 50);
        assert_eq!(c.embeddings.cluster, "emb");
        let e = Config::with_overlay(&base, r#"{"ttl_seconds":0}"#).unwrap_err();
        assert!(e.to_string().contains("`ttl_seconds`"));
    }

    #[test]
    fn vary_by_accepts_every_source_kind() {
        let (c, _) = Config::parse(
            r#"{"vary_by":[{"header":"x-tenant"},{"attribute":"xds.route_name"},{"attribute":["metadata","filter_metadata","jwt","sub"]},{"body":"/user"},{"literal":"v1"}],"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"}}"#,
        )
        .unwrap();
        assert_eq!(c.vary_by.len(), 5);
        assert_eq!(
            c.vary_by[1],
            VaryBy::Attribute(AttributePath::Dotted("xds.route_name".into()))
        );
    }
}
