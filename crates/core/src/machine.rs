//! The per-request state machine.
//!
//! The glue feeds it host events (request headers, request body, callout result, response
//! headers, response body) and applies the [`Effect`]s it returns. Every decision lives here:
//! what is cacheable, which callout comes next, when to answer from cache, what to store, and
//! how to fail open. There is one resume point per direction: the machine says when.

use std::rc::Rc;

use crate::completion::{self, Completion, Gate};
use crate::config::{AuthHeader, Backend, VaryBy};
use crate::embeddings;
use crate::entry::{Encoded, Entry, Render};
use crate::guards::Veto;
use crate::local;
use crate::metrics::{Counter, Histogram};
use crate::partition::{self, PartitionInput};
use crate::prompt;
use crate::request::{self, ApiKind, Endpoint};
use crate::resp::{decode_replies, Pipeline};
use crate::settings::Settings;
use crate::sse::Assembler;
use crate::store::{redisearch::Redisearch, vset::VectorSets, Storage, StoreError, CLEANUP_BATCH};
use rule::SemanticRule;

/// What the host should do with the current callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Embeddings,
    Bridge,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Callout {
    pub target: Target,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Warn,
    Debug,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    RemoveRequestHeader(&'static str),
    RemoveResponseHeader(&'static str),
    /// Read a shared-data key (the local tier) and hand the value to [`Machine::on_local`].
    LocalGet(String),
    /// Write a shared-data key (the local tier).
    LocalPut(String, Vec<u8>),
    Dispatch(Callout),
    /// The machine no longer waits for the callouts to `Target` it dispatched (a speculative
    /// embedding after an exact hit): the glue drops their tokens, so the answers are ignored.
    Forget(Target),
    /// Answer from cache; the upstream is not contacted.
    SendResponse {
        status: u32,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    ResumeRequest,
    ResumeResponse,
    SetResponseHeader(String, String),
    Count(Counter, u64),
    Record(Histogram, u64),
    /// `key` lets the glue log each kind of failure once instead of once per request.
    Log(LogLevel, &'static str, String),
}

/// What the glue learned from the request headers.
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Lowercase names, as Envoy presents them.
    pub headers: &'a [(String, String)],
    /// Values of the `vary_by` attributes, in the order of [`Machine::attribute_paths`].
    pub attributes: Vec<Option<String>>,
}

/// A callout's outcome: `status` is `None` when the call failed without a response (reset).
pub struct CalloutResult<'a> {
    /// Which kind of callout answered (two can be in flight at once).
    pub target: Target,
    pub status: Option<u16>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Look up, and store on a miss.
    Normal,
    /// `cache-control: no-cache`: skip the lookup, store the fresh answer.
    NoCache,
}

/// Everything derived from the request that later steps need.
#[derive(Debug)]
struct Ctx {
    kind: ApiKind,
    model: String,
    stream: bool,
    include_usage: bool,
    embed_text: String,
    guard_text: String,
    id: String,
    storage: Rc<dyn StorageDyn>,
    /// Replies the pending lookup callout carries: its own, then the expiry scan's.
    replies: (usize, usize),
    /// The exact lookup in Redis rides on the vector search (`fold_exact_lookup`)...
    fold: bool,
    /// ...and its replies head the pending semantic lookup's.
    folded: usize,
    /// The embedding failed (already counted) and the exact lookup went alone: its miss goes
    /// upstream uncached.
    embedding_failed: bool,
    expired: Vec<String>,
    vector: Option<Vec<f32>>,
    /// Whether the fresh answer may be stored.
    store: bool,
    /// The `x-semcache-status` the upstream response will carry.
    label: &'static str,
    /// Nearest rejected candidate, reported on misses to help tune thresholds.
    near: Option<(f64, Option<Veto>)>,
}

/// `Storage` plus `Debug`, so the state stays printable in tests.
trait StorageDyn: Storage + std::fmt::Debug {}
impl<T: Storage + std::fmt::Debug> StorageDyn for T {}

impl std::fmt::Debug for VectorSets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VectorSets").field(&self.keys().0).finish()
    }
}

#[derive(Debug)]
enum Capture {
    Json(Vec<u8>),
    Sse(Box<Assembler>),
}

#[derive(Debug)]
enum State {
    /// Not a cacheable request: the machine does nothing at all.
    PassThrough,
    /// Cacheable endpoint, but neither looked up nor stored.
    Bypass,
    ReadingBody {
        endpoint: Endpoint,
        mode: Mode,
        vary: Vec<String>,
    },
    /// Waiting for the glue to read the local tier (synchronous, within the same callback).
    LocalLookup(Box<Ctx>),
    ExactLookup(Box<Ctx>, u64),
    /// The exact lookup and a speculative embedding in flight together (`speculation`).
    ExactAndEmbedding(Box<Ctx>, Speculation),
    Embedding(Box<Ctx>, u64),
    SemanticLookup(Box<Ctx>, u64),
    /// The request went upstream; waiting for the response.
    Upstream(Box<Ctx>),
    Capturing(Box<Ctx>, Capture),
    /// Holding the end of the response while the answer is embedded for storing.
    EmbeddingForStore(Box<Ctx>, Completion, u64),
    /// Holding the end of the response while the store callout runs; with the local tier on,
    /// the copy to keep once Redis has the entry.
    Storing(Rc<dyn StorageDyn>, Option<LocalCopy>),
    /// Answered from cache.
    Served,
    Done,
}

/// A local-tier write: slot key and value.
type LocalCopy = (String, Vec<u8>);

/// The two callouts of a speculative exact lookup: when both started, and the embedding once it
/// is back (its status, and the vector if it was one).
#[derive(Debug)]
struct Speculation {
    started: u64,
    embedding: Option<(Option<u16>, Option<Vec<f32>>)>,
}

pub struct Machine {
    settings: Rc<Settings>,
    state: State,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has_directive(value: &str, directive: &str) -> bool {
    value
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case(directive))
}

fn warn(key: &'static str, msg: String) -> Effect {
    Effect::Log(LogLevel::Warn, key, msg)
}

impl Machine {
    pub fn new(settings: Rc<Settings>) -> Machine {
        Machine {
            settings,
            state: State::PassThrough,
        }
    }

    /// The attribute paths the glue must resolve for `vary_by`, in order.
    pub fn attribute_paths(&self) -> Vec<Vec<String>> {
        self.settings
            .config
            .vary_by
            .iter()
            .filter_map(|v| match v {
                VaryBy::Attribute(p) => Some(p.segments()),
                _ => None,
            })
            .collect()
    }

    /// Whether the glue needs to read response body chunks at all.
    pub fn wants_response_body(&self) -> bool {
        matches!(self.state, State::Capturing(..))
    }

    /// Whether `on_response_headers` looks at the status and content headers (only to decide a
    /// capture), so the glue can skip three host reads on every other response.
    pub fn needs_response_head(&self) -> bool {
        matches!(&self.state, State::Upstream(ctx) if ctx.store)
    }

    /// Whether the request body is still being buffered.
    pub fn reading_body(&self) -> bool {
        matches!(self.state, State::ReadingBody { .. })
    }

    pub fn max_request_body_bytes(&self) -> usize {
        self.settings.config.max_request_body_bytes
    }

    pub fn on_request_headers(
        &mut self,
        head: &RequestHead<'_>,
        effects: &mut Vec<Effect>,
    ) -> Action {
        let cfg = &self.settings.config;
        let Some(endpoint) = request::classify(head.method, head.path) else {
            return Action::Continue;
        };
        if !cfg.enabled {
            return Action::Continue;
        }
        let cache_control = header(head.headers, "cache-control").unwrap_or("");
        let bypass_header = header(head.headers, &cfg.bypass_header)
            .is_some_and(|v| !matches!(v.trim(), "" | "0" | "false"));
        if has_directive(cache_control, "no-store") || bypass_header {
            return self.bypass(effects);
        }
        // Completion APIs take JSON; a body declared as anything else is not ours to cache.
        let json = header(head.headers, "content-type").is_none_or(|ct| {
            let ct = ct.trim().to_ascii_lowercase();
            ct.starts_with("application/json")
                || (ct.starts_with("application/") && ct.contains("+json"))
        });
        if !json {
            return self.bypass(effects);
        }
        let too_large = header(head.headers, "content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|n| n > cfg.max_request_body_bytes);
        if too_large {
            return self.bypass(effects);
        }
        let mode = if has_directive(cache_control, "no-cache") {
            Mode::NoCache
        } else {
            Mode::Normal
        };
        // Each value is tagged with its source, so a header value never equals a literal.
        let mut attrs = head.attributes.iter();
        let mut vary = Vec::with_capacity(cfg.vary_by.len());
        for v in &cfg.vary_by {
            match v {
                VaryBy::Header(h) => {
                    vary.push(format!("h:{h}={}", header(head.headers, h).unwrap_or("")))
                }
                VaryBy::Attribute(p) => {
                    let value = attrs.next().cloned().flatten().unwrap_or_default();
                    vary.push(format!("a:{}={value}", p.segments().join(".")));
                }
                VaryBy::Literal(l) => vary.push(format!("l:{l}")),
                // Resolved once the body is here.
                VaryBy::Body(_) => {}
            }
        }
        // The answer must be readable to be stored.
        effects.push(Effect::RemoveRequestHeader("accept-encoding"));
        self.state = State::ReadingBody {
            endpoint,
            mode,
            vary,
        };
        if cfg.hold_request_headers {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn bypass(&mut self, effects: &mut Vec<Effect>) -> Action {
        effects.push(Effect::Count(Counter::Bypass, 1));
        self.state = State::Bypass;
        Action::Continue
    }

    /// The body grew past the limit before its end: let it through uncached.
    pub fn on_request_body_too_large(&mut self, effects: &mut Vec<Effect>) -> Action {
        if self.reading_body() {
            self.bypass(effects);
        }
        Action::Continue
    }

    /// The complete request body (end of stream).
    pub fn on_request_body(
        &mut self,
        body: &[u8],
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Action {
        let state = std::mem::replace(&mut self.state, State::Done);
        let State::ReadingBody {
            endpoint,
            mode,
            mut vary,
        } = state
        else {
            self.state = state;
            return Action::Continue;
        };
        let settings = Rc::clone(&self.settings);
        let cfg = &settings.config;
        if body.len() > cfg.max_request_body_bytes {
            return self.bypass(effects);
        }
        let parsed = match request::parse(&endpoint, body) {
            Ok(p) => p,
            Err(e) => {
                effects.push(Effect::Log(
                    LogLevel::Debug,
                    "not_cacheable",
                    format!("request not cacheable: {}", e.reason()),
                ));
                return self.bypass(effects);
            }
        };
        for v in &cfg.vary_by {
            if let VaryBy::Body(ptr) = v {
                let value = match parsed.body.pointer(ptr) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => request::canonical_json(other),
                };
                vary.push(format!("b:{ptr}={value}"));
            }
        }
        let p = prompt::canonical(&parsed.messages, cfg.ignore_system_messages);
        if cfg
            .max_message_count
            .is_some_and(|max| p.dialog_len > max as usize)
            || p.embed_text.is_empty()
        {
            return self.bypass(effects);
        }
        let ns = partition::namespace(&PartitionInput {
            kind: parsed.kind.as_str(),
            model: &parsed.model,
            params: &parsed.params,
            system: &p.system,
            embedding_model: &cfg.embeddings.model,
            vary: &vary,
        });
        let id = partition::entry_id(&ns, &p.exact);
        let storage: Rc<dyn StorageDyn> = match cfg.backend {
            Backend::VectorSets => Rc::new(
                VectorSets::new(&cfg.key_prefix, &ns)
                    .nothread(cfg.search_nothread)
                    .compress(cfg.compress_entries)
                    .adaptive(
                        cfg.adaptive_search_ef
                            .then(|| Rc::clone(&self.settings.set_sizes)),
                    ),
            ),
            Backend::Redisearch => Rc::new(
                Redisearch::new(&cfg.key_prefix, &ns, &cfg.embeddings.model)
                    .compress(cfg.compress_entries),
            ),
        };
        let ctx = Box::new(Ctx {
            kind: parsed.kind,
            model: parsed.model,
            stream: parsed.stream,
            include_usage: parsed.include_usage,
            embed_text: p.embed_text,
            guard_text: p.guard_text,
            id,
            storage,
            replies: (0, 0),
            fold: false,
            folded: 0,
            embedding_failed: false,
            expired: Vec::new(),
            vector: None,
            store: true,
            label: "miss",
            near: None,
        });
        if mode == Mode::NoCache {
            effects.push(Effect::Count(Counter::Bypass, 1));
            let mut ctx = ctx;
            ctx.label = "bypass";
            self.state = State::Upstream(ctx);
            return Action::Continue;
        }
        if cfg.exact_match {
            if cfg.local_cache.entries > 0 {
                effects.push(Effect::LocalGet(self.local_key(&ctx.id)));
                self.state = State::LocalLookup(ctx);
            } else {
                self.dispatch_exact(ctx, now_ms, effects);
            }
            return Action::Pause;
        }
        if cfg.semantic_match {
            effects.push(Effect::Dispatch(self.embeddings_callout(&ctx.embed_text)));
            self.state = State::Embedding(ctx, now_ms);
            return Action::Pause;
        }
        self.state = State::Upstream(ctx);
        Action::Continue
    }

    fn bridge_callout(&self, pipeline: Pipeline) -> Callout {
        let b = &self.settings.config.bridge;
        let mut headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), b.path.clone()),
            (":authority".to_string(), b.authority.clone()),
            (
                "content-type".to_string(),
                "application/x-redis-resp".to_string(),
            ),
            (
                "x-semcache-commands".to_string(),
                pipeline.len().to_string(),
            ),
        ];
        if let Some(t) = &self.settings.bridge_token {
            headers.push(("authorization".to_string(), format!("Bearer {t}")));
        }
        Callout {
            target: Target::Bridge,
            cluster: b.cluster.clone(),
            headers,
            body: pipeline.into_bytes(),
            timeout_ms: b.timeout_ms,
        }
    }

    fn embeddings_callout(&self, text: &str) -> Callout {
        let e = &self.settings.config.embeddings;
        let mut headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), e.path.clone()),
            (":authority".to_string(), e.authority.clone()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        if let Some(k) = &self.settings.embeddings_key {
            match e.auth_header {
                AuthHeader::Bearer => {
                    headers.push(("authorization".to_string(), format!("Bearer {k}")))
                }
                AuthHeader::ApiKey => headers.push(("api-key".to_string(), k.clone())),
            }
        }
        Callout {
            target: Target::Embeddings,
            cluster: e.cluster.clone(),
            headers,
            body: embeddings::request_body(e, text),
            timeout_ms: e.timeout_ms,
        }
    }

    /// Failing to dispatch is handled like a failed callout.
    pub fn on_dispatch_failed(&mut self, target: Target, now_ms: u64, effects: &mut Vec<Effect>) {
        self.on_callout(
            CalloutResult {
                target,
                status: None,
                body: &[],
            },
            now_ms,
            effects,
        );
    }

    pub fn on_callout(&mut self, res: CalloutResult<'_>, now_ms: u64, effects: &mut Vec<Effect>) {
        // An answer the state does not wait for (a speculative embedding whose request moved on
        // before the glue could forget it) changes nothing.
        if self.awaiting().is_some_and(|t| t != res.target) {
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Done);
        let ok = res.status == Some(200);
        match state {
            State::ExactAndEmbedding(ctx, mut spec) => match res.target {
                Target::Embeddings => {
                    effects.push(Effect::Record(
                        Histogram::EmbeddingMs,
                        now_ms.saturating_sub(spec.started),
                    ));
                    spec.embedding = Some((res.status, self.parse_vector(ok, res.body)));
                    self.state = State::ExactAndEmbedding(ctx, spec);
                }
                Target::Bridge => {
                    self.on_exact(ctx, spec.started, Some(spec), &res, now_ms, effects)
                }
            },
            State::ExactLookup(ctx, started) => {
                self.on_exact(ctx, started, None, &res, now_ms, effects)
            }
            State::Embedding(ctx, started) => {
                effects.push(Effect::Record(
                    Histogram::EmbeddingMs,
                    now_ms.saturating_sub(started),
                ));
                let vector = self.parse_vector(ok, res.body);
                self.on_embedding(ctx, vector, res.status, now_ms, effects);
            }
            State::SemanticLookup(mut ctx, started) => {
                effects.push(Effect::Record(
                    Histogram::LookupMs,
                    now_ms.saturating_sub(started),
                ));
                let replies = match self.lookup_replies(&mut ctx, ok, res.body, effects) {
                    Some(mut exact) if ctx.folded > 0 => {
                        let semantic = exact.split_off(ctx.folded.min(exact.len()));
                        match reply_ok(ctx.storage.parse_exact(&exact, now_ms), effects) {
                            Some(Some(entry)) => {
                                // The embedding was not needed after all.
                                effects.push(Effect::Count(Counter::SpeculationUnused, 1));
                                return self.exact_hit(&ctx, &entry, now_ms, effects);
                            }
                            Some(None) => {
                                self.settings.exact_hits.observe(false);
                                Some(semantic)
                            }
                            None => None,
                        }
                    }
                    other => other,
                };
                let candidates =
                    replies.and_then(|r| reply_ok(ctx.storage.parse_semantic(&r), effects));
                let Some(candidates) = candidates else {
                    return self.fail_open(
                        ctx,
                        Counter::ErrorLookup,
                        "lookup",
                        res.status,
                        effects,
                    );
                };
                let cfg = &self.settings.config;
                let rule = SemanticRule::new(cfg, &ctx.guard_text);
                for c in &candidates {
                    if !rule.near_enough(c.distance) {
                        if ctx.near.is_none() {
                            ctx.near = Some((c.distance, None));
                        }
                        break;
                    }
                    // Decoded only now: the nearest candidate usually decides.
                    let Some(entry) = c.entry() else {
                        continue;
                    };
                    if !entry.is_live(now_ms) {
                        // Never served; the next store removes it.
                        if ctx.expired.len() < CLEANUP_BATCH && !ctx.expired.contains(&c.id) {
                            ctx.expired.push(c.id.clone());
                        }
                        continue;
                    }
                    match rule.veto(&entry) {
                        None => {
                            // A repeat of this very query then skips the embedding and the
                            // search; the local tier is only read where exact_match is on.
                            if cfg.local_cache.semantic_hits && cfg.exact_match {
                                let encoded = Encoded::new(&entry);
                                self.keep_locally(
                                    &ctx.id,
                                    now_ms,
                                    &encoded,
                                    Some(c.distance),
                                    effects,
                                );
                            }
                            return self.serve(&ctx, &entry, Some(c.distance), now_ms, effects);
                        }
                        Some(v) => {
                            effects.push(Effect::Count(Counter::Vetoed(v), 1));
                            if ctx.near.is_none() {
                                ctx.near = Some((c.distance, Some(v)));
                            }
                        }
                    }
                }
                self.miss(ctx, effects);
            }
            State::EmbeddingForStore(mut ctx, completion, started) => {
                effects.push(Effect::Record(
                    Histogram::EmbeddingMs,
                    now_ms.saturating_sub(started),
                ));
                match self.parse_vector(ok, res.body) {
                    Some(v) => {
                        ctx.vector = Some(v);
                        self.dispatch_store(&ctx, completion, now_ms, effects);
                    }
                    None => {
                        effects.push(Effect::Count(Counter::ErrorStore, 1));
                        effects.push(warn("store_embeddings", format!(
                            "semcache: embedding the answer for storing failed (status {:?}); not stored",
                            res.status
                        )));
                        effects.push(Effect::ResumeResponse);
                    }
                }
            }
            State::Storing(storage, copy) => {
                let stored = ok
                    && decode_replies(res.body, count_frames(res.body))
                        .is_ok_and(|r| reply_ok(storage.check_store(&r), effects).is_some());
                if stored {
                    effects.push(Effect::Count(Counter::Stored, 1));
                    // Also replaces a copy of the entry a `no-cache` request just refreshed.
                    if let Some((key, value)) = copy {
                        effects.push(Effect::LocalPut(key, value));
                    }
                } else {
                    effects.push(Effect::Count(Counter::ErrorStore, 1));
                    effects.push(warn(
                        "store",
                        format!(
                            "semcache: store callout failed (status {:?}); answer not cached",
                            res.status
                        ),
                    ));
                }
                effects.push(Effect::ResumeResponse);
            }
            other => self.state = other,
        }
    }

    /// The callout kind the state waits for; `None` when it waits for none or for both.
    pub fn awaiting(&self) -> Option<Target> {
        match self.state {
            State::ExactLookup(..) | State::SemanticLookup(..) | State::Storing(..) => {
                Some(Target::Bridge)
            }
            State::Embedding(..) | State::EmbeddingForStore(..) => Some(Target::Embeddings),
            _ => None,
        }
    }

    fn parse_vector(&self, ok: bool, body: &[u8]) -> Option<Vec<f32>> {
        let dims = self.settings.config.embeddings.dimensions;
        ok.then(|| embeddings::parse_response(body, dims).ok())
            .flatten()
    }

    /// The exact lookup's answer. With a speculative embedding (`spec`) a miss goes on with its
    /// vector, or waits for it; a hit or a failure forgets it.
    fn on_exact(
        &mut self,
        mut ctx: Box<Ctx>,
        started: u64,
        spec: Option<Speculation>,
        res: &CalloutResult<'_>,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) {
        effects.push(Effect::Record(
            Histogram::LookupMs,
            now_ms.saturating_sub(started),
        ));
        let ok = res.status == Some(200);
        let result = self
            .lookup_replies(&mut ctx, ok, res.body, effects)
            .and_then(|r| reply_ok(ctx.storage.parse_exact(&r, now_ms), effects));
        let in_flight = spec.as_ref().is_some_and(|s| s.embedding.is_none());
        // After an exact hit or a failed lookup a speculative embedding is not used: counted,
        // and forgotten if it is still on its way.
        let unused = |effects: &mut Vec<Effect>| {
            if spec.is_some() {
                effects.push(Effect::Count(Counter::SpeculationUnused, 1));
            }
            if in_flight {
                effects.push(Effect::Forget(Target::Embeddings));
            }
        };
        match result {
            Some(None) => self.settings.exact_hits.observe(false),
            Some(Some(entry)) => {
                unused(effects);
                return self.exact_hit(&ctx, &entry, now_ms, effects);
            }
            None => {
                unused(effects);
                return self.fail_open(ctx, Counter::ErrorLookup, "lookup", res.status, effects);
            }
        }
        if ctx.embedding_failed {
            effects.push(Effect::ResumeRequest);
            self.state = State::Upstream(ctx);
            return;
        }
        if !self.settings.config.semantic_match {
            return self.miss(ctx, effects);
        }
        match spec {
            None => {
                effects.push(Effect::Dispatch(self.embeddings_callout(&ctx.embed_text)));
                self.state = State::Embedding(ctx, now_ms);
            }
            Some(Speculation {
                embedding: Some((status, vector)),
                ..
            }) => self.on_embedding(ctx, vector, status, now_ms, effects),
            Some(Speculation {
                started,
                embedding: None,
            }) => self.state = State::Embedding(ctx, started),
        }
    }

    /// An exact hit in Redis: served, kept in the local tier, and noted for the choice between
    /// embedding first and looking up first.
    fn exact_hit(&mut self, ctx: &Ctx, entry: &Entry, now_ms: u64, effects: &mut Vec<Effect>) {
        self.settings.exact_hits.observe(true);
        self.keep_locally(&ctx.id, now_ms, &Encoded::new(entry), None, effects);
        self.serve(ctx, entry, None, now_ms, effects);
    }

    /// The query's embedding (or its failure): on to the vector search.
    fn on_embedding(
        &mut self,
        mut ctx: Box<Ctx>,
        vector: Option<Vec<f32>>,
        status: Option<u16>,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) {
        let Some(vector) = vector else {
            if !ctx.fold {
                return self.fail_open(
                    ctx,
                    Counter::ErrorEmbeddings,
                    "embeddings",
                    status,
                    effects,
                );
            }
            // The exact lookup was to ride on the search: it goes alone, so that the exact
            // tier keeps answering while the embedder is down.
            self.note_failure(
                &mut ctx,
                Counter::ErrorEmbeddings,
                "embeddings",
                status,
                effects,
            );
            ctx.fold = false;
            ctx.embedding_failed = true;
            return self.dispatch_exact_alone(ctx, now_ms, false, effects);
        };
        let cfg = &self.settings.config;
        let mut pipeline = if ctx.fold {
            ctx.storage.exact_lookup(&ctx.id)
        } else {
            Pipeline::new()
        };
        ctx.folded = pipeline.len();
        pipeline.append(ctx.storage.semantic_lookup(
            &vector,
            cfg.top_k,
            cfg.score_threshold,
            cfg.search_ef,
        ));
        let pipeline = self.with_expiry_scan(&mut ctx, pipeline, true, now_ms);
        ctx.vector = Some(vector);
        effects.push(Effect::Dispatch(self.bridge_callout(pipeline)));
        self.state = State::SemanticLookup(ctx, now_ms);
    }

    /// After the local tier (when on): the exact lookup in Redis, and maybe the embedding.
    fn dispatch_exact(&mut self, mut ctx: Box<Ctx>, now_ms: u64, effects: &mut Vec<Effect>) {
        let cfg = &self.settings.config;
        let rare = cfg.semantic_match && self.settings.exact_hits.rare();
        if rare && cfg.fold_exact_lookup {
            // Embed first; the exact lookup goes with the vector search (`on_embedding`): its
            // own callout costs Envoy, the bridge and Redis CPU on every semantic hit and miss,
            // and beside the embedding it slows the embedding (docs/bench.md, finding 4).
            effects.push(Effect::Count(Counter::Speculated, 1));
            effects.push(Effect::Dispatch(self.embeddings_callout(&ctx.embed_text)));
            ctx.fold = true;
            self.state = State::Embedding(ctx, now_ms);
            return;
        }
        let speculate = rare && cfg.speculative_embedding;
        self.dispatch_exact_alone(ctx, now_ms, speculate, effects);
    }

    /// The exact lookup in its own callout, with the embedding beside it when `speculate`.
    fn dispatch_exact_alone(
        &mut self,
        mut ctx: Box<Ctx>,
        now_ms: u64,
        speculate: bool,
        effects: &mut Vec<Effect>,
    ) {
        let pipeline = ctx.storage.exact_lookup(&ctx.id);
        // The expiry scan rides on the request's last lookup: the semantic one when there is
        // one, so an exact hit stays a single command.
        let scan = !self.settings.config.semantic_match;
        let pipeline = self.with_expiry_scan(&mut ctx, pipeline, scan, now_ms);
        if speculate {
            // The embedding, the longer wait, is written first. Both requests leave when the
            // callback returns, so this gains only µs (docs/bench.md, finding 4, hop by hop).
            effects.push(Effect::Count(Counter::Speculated, 1));
            effects.push(Effect::Dispatch(self.embeddings_callout(&ctx.embed_text)));
            effects.push(Effect::Dispatch(self.bridge_callout(pipeline)));
            let spec = Speculation {
                started: now_ms,
                embedding: None,
            };
            self.state = State::ExactAndEmbedding(ctx, spec);
        } else {
            effects.push(Effect::Dispatch(self.bridge_callout(pipeline)));
            self.state = State::ExactLookup(ctx, now_ms);
        }
    }

    /// The local tier's slot for an entry id: a direct-mapped table, so its memory is bounded
    /// (a slot holds one entry; a colliding id simply replaces it). The bridge cluster and the
    /// key prefix keep plugin configurations on different Redis instances (or prefixes) apart
    /// in one Envoy, whose shared data all of them see.
    fn local_key(&self, id: &str) -> String {
        let cfg = &self.settings.config;
        let slot = partition::id_bits(id) % u64::from(cfg.local_cache.entries.max(1));
        format!(
            "semcache.local.{}.{}.{slot}",
            cfg.bridge.cluster, cfg.key_prefix
        )
    }

    /// Keeps the answer Redis just gave request `id` in the local tier, when `local_copy` allows.
    fn keep_locally(
        &self,
        id: &str,
        now_ms: u64,
        entry: &Encoded<'_>,
        distance: Option<f64>,
        effects: &mut Vec<Effect>,
    ) {
        if let Some((key, value)) = self.local_copy(id, now_ms, entry, distance) {
            effects.push(Effect::LocalPut(key, value));
        }
    }

    /// The local tier's key and value for the answer Redis gave request `id` (as of `now_ms`;
    /// `distance` when it was a semantic hit); `None` when the tier is off or the entry is over
    /// `local_cache.max_entry_bytes`.
    fn local_copy(
        &self,
        id: &str,
        now_ms: u64,
        entry: &Encoded<'_>,
        distance: Option<f64>,
    ) -> Option<LocalCopy> {
        let local = &self.settings.config.local_cache;
        if local.entries == 0 {
            return None;
        }
        let value = local::encode(id, now_ms, distance, entry.json());
        (value.len() <= local.max_entry_bytes).then(|| (self.local_key(id), value))
    }

    /// The local tier's value for the request's id: served when it is this id's entry, was
    /// fetched from Redis less than `local_cache.ttl_seconds` ago, and is still live; anything
    /// else goes on to the exact lookup in Redis.
    pub fn on_local(&mut self, value: Option<&[u8]>, now_ms: u64, effects: &mut Vec<Effect>) {
        let state = std::mem::replace(&mut self.state, State::Done);
        let State::LocalLookup(ctx) = state else {
            self.state = state;
            return;
        };
        let max_age = self.settings.config.local_cache.ttl_seconds * 1000;
        let copy = value
            .and_then(|v| local::decode(v, &ctx.id))
            .filter(|c| now_ms < c.fetched_ms.saturating_add(max_age) && c.entry.is_live(now_ms))
            .filter(|c| {
                c.distance
                    .is_none_or(|d| self.would_match(&ctx, d, &c.entry))
            });
        match copy {
            Some(copy) => {
                effects.push(Effect::Count(Counter::HitLocal, 1));
                self.serve(&ctx, &copy.entry, copy.distance, now_ms, effects);
            }
            None => self.dispatch_exact(ctx, now_ms, effects),
        }
    }

    /// Whether this request's configuration would serve `entry` as a semantic hit at `distance`.
    /// A semantic copy in the local tier may have been kept under another route's overlay (a
    /// looser threshold, guards off) or an older config; it is served only where the search
    /// would have served it, else the request goes on to Redis.
    fn would_match(&self, ctx: &Ctx, distance: f64, entry: &Entry) -> bool {
        let cfg = &self.settings.config;
        cfg.local_cache.semantic_hits
            && SemanticRule::new(cfg, &ctx.guard_text).admits(distance, entry)
    }

    /// Appends the back end's expiry scan to a lookup (when `scan`), noting the reply counts.
    fn with_expiry_scan(
        &self,
        ctx: &mut Ctx,
        mut lookup: Pipeline,
        scan: bool,
        now_ms: u64,
    ) -> Pipeline {
        let own = lookup.len();
        if scan {
            lookup.append(ctx.storage.expiry_scan(now_ms));
        }
        ctx.replies = (own, lookup.len() - own);
        lookup
    }

    /// The lookup's own replies; the expiry scan's ids go to `ctx.expired` (a failed scan only
    /// postpones the clean-up, it does not fail the lookup).
    fn lookup_replies(
        &self,
        ctx: &mut Ctx,
        ok: bool,
        body: &[u8],
        effects: &mut Vec<Effect>,
    ) -> Option<Vec<crate::resp::Reply>> {
        if !ok {
            return None;
        }
        let (own, scan) = ctx.replies;
        let mut replies = decode_replies(body, own + scan).ok()?;
        let scanned = replies.split_off(own);
        if scan > 0 {
            if let Some(ids) = reply_ok(ctx.storage.parse_expiry_scan(&scanned), effects) {
                for id in ids {
                    if !ctx.expired.contains(&id) {
                        ctx.expired.push(id);
                    }
                }
            }
        }
        Some(replies)
    }

    fn fail_open(
        &mut self,
        mut ctx: Box<Ctx>,
        counter: Counter,
        what: &'static str,
        status: Option<u16>,
        effects: &mut Vec<Effect>,
    ) {
        self.note_failure(&mut ctx, counter, what, status, effects);
        effects.push(Effect::ResumeRequest);
        self.state = State::Upstream(ctx);
    }

    /// A failed callout: counted, logged, and the request will go upstream uncached.
    fn note_failure(
        &self,
        ctx: &mut Ctx,
        counter: Counter,
        what: &'static str,
        status: Option<u16>,
        effects: &mut Vec<Effect>,
    ) {
        effects.push(Effect::Count(counter, 1));
        effects.push(warn(
            what,
            format!(
                "semcache: {what} callout failed ({}); serving uncached",
                match status {
                    None => "no response".to_string(),
                    Some(s) => format!("status {s}"),
                }
            ),
        ));
        ctx.label = "error";
        // A failing dependency is not asked again for this request.
        ctx.store = false;
    }

    fn miss(&mut self, ctx: Box<Ctx>, effects: &mut Vec<Effect>) {
        effects.push(Effect::Count(Counter::Miss, 1));
        effects.push(Effect::ResumeRequest);
        self.state = State::Upstream(ctx);
    }

    fn serve(
        &mut self,
        ctx: &Ctx,
        entry: &Entry,
        distance: Option<f64>,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) {
        let h = &self.settings.config.headers;
        let (content_type, body) = entry.render(&Render {
            kind: ctx.kind,
            stream: ctx.stream,
            include_usage: ctx.include_usage,
            request_model: &ctx.model,
            id: &ctx.id,
            now: now_ms / 1000,
        });
        let mut headers = vec![
            ("content-type".to_string(), content_type.to_string()),
            (h.status.clone(), "hit".to_string()),
            (
                h.r#match.clone(),
                if distance.is_some() {
                    "semantic"
                } else {
                    "exact"
                }
                .to_string(),
            ),
            (
                h.distance.clone(),
                format!("{:.4}", distance.unwrap_or(0.0)),
            ),
            (
                h.age.clone(),
                (now_ms.saturating_sub(entry.created_at) / 1000).to_string(),
            ),
        ];
        if ctx.stream {
            headers.push(("cache-control".to_string(), "no-cache".to_string()));
        }
        match distance {
            Some(d) => {
                effects.push(Effect::Count(Counter::HitSemantic, 1));
                effects.push(Effect::Record(
                    Histogram::HitDistance,
                    (d * 1e4).round() as u64,
                ));
            }
            None => effects.push(Effect::Count(Counter::HitExact, 1)),
        }
        let tokens = entry.completion_tokens();
        if tokens > 0 {
            effects.push(Effect::Count(Counter::TokensSaved, tokens));
        }
        effects.push(Effect::SendResponse {
            status: 200,
            headers,
            body,
        });
        self.state = State::Served;
    }

    /// Response headers from upstream (or from our own local reply, which is ignored).
    pub fn on_response_headers(
        &mut self,
        status: Option<u16>,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        effects: &mut Vec<Effect>,
    ) -> Action {
        let state = std::mem::replace(&mut self.state, State::Done);
        let h = &self.settings.config.headers;
        match state {
            State::Bypass => {
                effects.push(Effect::SetResponseHeader(h.status.clone(), "bypass".into()));
            }
            State::Upstream(ctx) => {
                effects.push(Effect::SetResponseHeader(
                    h.status.clone(),
                    ctx.label.into(),
                ));
                if let Some((d, veto)) = ctx.near {
                    effects.push(Effect::SetResponseHeader(
                        h.distance.clone(),
                        format!("{d:.4}"),
                    ));
                    if let Some(v) = veto {
                        effects.push(Effect::SetResponseHeader(h.veto.clone(), v.name().into()));
                    }
                }
                if ctx.store {
                    match self.capture_for(&ctx, status, content_type, content_encoding) {
                        Ok(capture) => {
                            // The end of a captured answer is held while it is stored. With a
                            // content-length the client has every byte before that end and may
                            // close at once, which cancels the store: send it chunked instead.
                            effects.push(Effect::RemoveResponseHeader("content-length"));
                            self.state = State::Capturing(ctx, capture);
                        }
                        Err(gate) => effects.push(Effect::Count(Counter::StoreSkipped(gate), 1)),
                    }
                }
            }
            other => self.state = other,
        }
        Action::Continue
    }

    fn capture_for(
        &self,
        ctx: &Ctx,
        status: Option<u16>,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<Capture, Gate> {
        let cfg = &self.settings.config;
        if !status.is_some_and(|s| cfg.cache_statuses.contains(&s)) {
            return Err(Gate::Status);
        }
        if content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            return Err(Gate::Encoded);
        }
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ctx.stream && ct.starts_with("text/event-stream") {
            Ok(Capture::Sse(Box::new(Assembler::new(
                ctx.kind,
                cfg.max_response_body_bytes,
            ))))
        } else if !ctx.stream && ct.starts_with("application/json") {
            Ok(Capture::Json(Vec::new()))
        } else {
            Err(Gate::ContentType)
        }
    }

    /// One response body chunk. It always passes through as it is; only the end may be held
    /// while the answer is stored, because Envoy cancels a stream's callouts once it ends.
    pub fn on_response_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Action {
        let state = std::mem::replace(&mut self.state, State::Done);
        let State::Capturing(ctx, mut capture) = state else {
            self.state = state;
            return Action::Continue;
        };
        let max = self.settings.config.max_response_body_bytes;
        let mut too_large = false;
        match &mut capture {
            Capture::Json(buf) => {
                if buf.len() + chunk.len() > max {
                    too_large = true;
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            Capture::Sse(a) => a.feed(chunk),
        }
        if too_large {
            effects.push(Effect::Count(Counter::StoreSkipped(Gate::TooLarge), 1));
            return Action::Continue;
        }
        if !end_of_stream {
            if let Capture::Sse(a) = &capture {
                if let Some(g) = a.failed() {
                    effects.push(Effect::Count(Counter::StoreSkipped(g), 1));
                    return Action::Continue;
                }
            }
            self.state = State::Capturing(ctx, capture);
            return Action::Continue;
        }
        let completion = match capture {
            Capture::Json(buf) => completion::from_json(ctx.kind, &buf),
            Capture::Sse(a) => a.finish(),
        };
        let completion = match completion {
            Ok(c) => c,
            Err(g) => {
                effects.push(Effect::Count(Counter::StoreSkipped(g), 1));
                return Action::Continue;
            }
        };
        if ctx.vector.is_some() {
            self.dispatch_store(&ctx, completion, now_ms, effects);
        } else {
            effects.push(Effect::Dispatch(self.embeddings_callout(&ctx.embed_text)));
            self.state = State::EmbeddingForStore(ctx, completion, now_ms);
        }
        Action::Pause
    }

    fn dispatch_store(
        &mut self,
        ctx: &Ctx,
        completion: Completion,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) {
        let Some(vector) = ctx.vector.as_deref() else {
            effects.push(Effect::ResumeResponse);
            return;
        };
        let ttl = self.settings.config.ttl_seconds;
        let entry = Entry::new(completion, &ctx.guard_text, now_ms, ttl);
        // Serialised once for Redis and the local tier.
        let entry = Encoded::new(&entry);
        let pipeline = ctx
            .storage
            .store(&ctx.id, vector, &entry, ttl, &ctx.expired);
        effects.push(Effect::Dispatch(self.bridge_callout(pipeline)));
        let copy = self.local_copy(&ctx.id, now_ms, &entry, None);
        self.state = State::Storing(Rc::clone(&ctx.storage), copy);
    }

    /// The stream is gone (the glue's `on_done`). A store still in flight is cancelled by Envoy
    /// with the stream: counted, so a lost store is visible.
    pub fn on_stream_done(&mut self, effects: &mut Vec<Effect>) {
        if matches!(
            self.state,
            State::EmbeddingForStore(..) | State::Storing(..)
        ) {
            effects.push(Effect::Count(Counter::StoreCancelled, 1));
            effects.push(warn(
                "store_cancelled",
                "semcache: the stream ended before the store completed (client gone?); answer not cached".into(),
            ));
        }
        self.state = State::Done;
    }

    /// Whether the machine is waiting for a callout (so a failed dispatch must be reported).
    pub fn awaiting_callout(&self) -> bool {
        self.awaiting().is_some() || matches!(self.state, State::ExactAndEmbedding(..))
    }
}

/// What Redis answered, logged (keyed apart from transport failures, so a schema mismatch is
/// not hidden behind an earlier timeout's log line).
fn reply_ok<T>(r: Result<T, StoreError>, effects: &mut Vec<Effect>) -> Option<T> {
    r.map_err(|e| effects.push(warn("redis_reply", format!("semcache: Redis reply: {e}"))))
        .ok()
}

/// The number of top-level RESP frames in a reply body (store replies vary in count).
fn count_frames(body: &[u8]) -> usize {
    let mut n = 0;
    let mut pos = 0;
    while pos < body.len() {
        match decode_replies(&body[pos..], 1) {
            Ok(_) => return n + 1,
            Err(crate::resp::RespError::Trailing(rest)) => {
                n += 1;
                pos = body.len() - rest;
            }
            Err(_) => return n + 1,
        }
    }
    n
}

mod rule;
#[cfg(test)]
mod tests;
