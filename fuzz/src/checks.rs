//! The fuzz targets' bodies: each takes raw bytes, decodes a structured input from them and
//! checks invariants of `semcache-core` (a panic is a finding).
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the stable regression test
//! `crates/core/tests/fuzz_regressions.rs`, which includes this file with `#[path]` and replays
//! `testdata/fuzz/<target>/*`. So: std, `semcache_core` and `serde_json` only, no `crate::`.

#![allow(dead_code)]

use std::rc::Rc;
use std::sync::OnceLock;

use semcache_core::completion::{self, Completion};
use semcache_core::config::{Config, GuardsConfig};
use semcache_core::entry::{Encoded, Entry, Render};
use semcache_core::guards;
use semcache_core::machine::{Action, CalloutResult, Effect, Machine, RequestHead, Target};
use semcache_core::packed;
use semcache_core::partition::{self, PartitionInput};
use semcache_core::prompt;
use semcache_core::request::{self, ApiKind, Message};
use semcache_core::resp::{decode_replies, Pipeline, Reply};
use semcache_core::settings::Settings;
use semcache_core::sse::Assembler;
use serde_json::{json, Value};

/// A target's body.
pub type Check = fn(&[u8]);

/// Every target, by the name of its corpus directory (`testdata/fuzz/<name>/`).
pub const TARGETS: &[(&str, Check)] = &[
    ("request_parse", request_parse),
    ("prompt_canonical", prompt_canonical),
    ("sse_assemble", sse_assemble),
    ("resp_decode", resp_decode),
    ("config_parse", config_parse),
    ("guards_check", guards_check),
    ("machine_events", machine_events),
    ("packed_decode", packed_decode),
];

/// A cursor over the fuzzer's bytes; running out yields zeros / empty slices.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// A length-prefixed (u16) slice.
    pub fn slice(&mut self) -> &'a [u8] {
        let n = (self.u16() as usize).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// request parsing and prompt canonicalisation

const PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/openai/deployments/dep-1/chat/completions?api-version=2024-10-21",
    "/openai/deployments/dep-1/completions?api-version=2024-10-21",
];

/// `[selector][body]`: selector bits 0-1 pick the path; bit 2 wraps the body (as text) into a
/// valid chat request as the user's content; bit 3 also classifies the body as a path.
pub fn request_parse(data: &[u8]) {
    let mut b = Bytes::new(data);
    let sel = b.u8();
    let body = b.rest();
    if sel & 8 != 0 {
        let path = text(body);
        for method in ["POST", "post", "GET", ""] {
            let _ = request::classify(method, &path);
        }
    }
    let endpoint = request::classify("POST", PATHS[(sel & 3) as usize]).expect("a cacheable path");
    let wrapped;
    let body = if sel & 4 != 0 {
        wrapped = json!({"model": "m", "prompt": text(body),
                         "messages": [{"role": "user", "content": text(body)}]})
        .to_string()
        .into_bytes();
        &wrapped[..]
    } else {
        body
    };
    let Ok(p) = request::parse(&endpoint, body) else {
        assert!(sel & 4 == 0, "a wrapped body must parse");
        return;
    };
    // The partition parameters are canonical: parsing and re-serialising changes nothing.
    let params: Value = serde_json::from_str(&p.params).expect("params are JSON");
    assert_eq!(
        request::canonical_json(&params),
        p.params,
        "params not canonical"
    );
    // Re-serialising the body (another key order, number spelling...) gives the same request.
    let again = request::parse(&endpoint, &serde_json::to_vec(&p.body).unwrap())
        .expect("a re-serialised request parses");
    assert_eq!(again.model, p.model);
    assert_eq!(again.messages, p.messages);
    assert_eq!(again.params, p.params);
    assert_eq!(
        (again.stream, again.include_usage),
        (p.stream, p.include_usage)
    );
    for ignore_system in [false, true] {
        check_prompt(&p.messages, ignore_system);
        let pr = prompt::canonical(&p.messages, ignore_system);
        let ns = partition::namespace(&PartitionInput {
            kind: p.kind.as_str(),
            model: &p.model,
            params: &p.params,
            system: &pr.system,
            embedding_model: "e",
            vary: &[],
        });
        let id = partition::entry_id(&ns, &pr.exact);
        assert!(
            ns.len() == 24 && id.len() == 16 && id.is_ascii(),
            "{ns} {id}"
        );
    }
}

/// Invariants of one canonical prompt.
pub fn check_prompt(messages: &[Message], ignore_system: bool) {
    let p = prompt::canonical(messages, ignore_system);
    let dialog: Vec<&Message> = messages.iter().filter(|m| m.role != "system").collect();
    assert_eq!(p.dialog_len, dialog.len());
    for m in messages {
        let n = prompt::normalize(&m.content);
        assert_eq!(prompt::normalize(&n), n, "normalize is not idempotent");
        assert_eq!(n.trim(), n);
        assert!(!n.contains("  ") && !n.contains('\n'), "{n:?}");
    }
    // Whitespace never matters: the canonical form of the normalised messages is the same.
    let normalised: Vec<Message> = messages
        .iter()
        .map(|m| Message {
            role: m.role.clone(),
            content: prompt::normalize(&m.content),
        })
        .collect();
    assert_eq!(prompt::canonical(&normalised, ignore_system), p);
    match dialog.last() {
        Some(last) => assert!(p.embed_text.starts_with(&prompt::normalize(&last.content))),
        None => assert!(p.embed_text.is_empty() && p.exact.is_empty()),
    }
    if ignore_system {
        assert!(p.system.is_empty());
    }
}

/// The dialog as the exact tier must tell it apart: role and normalised text of each turn.
fn dialog_key(messages: &[Message]) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|m| m.role != "system")
        .map(|m| (m.role.clone(), prompt::normalize(&m.content)))
        .collect()
}

const ROLES: &[&str] = &["user", "assistant", "system", "tool"];

/// Two message lists (`\0` separates fields, `\u{1}` separates the lists; a field of one
/// character picks a common role, anything longer is taken as the role itself).
fn message_lists(t: &str) -> (Vec<Message>, Vec<Message>) {
    let mut parts = t.splitn(2, '\u{1}');
    let decode = |s: &str| -> Vec<Message> {
        let fields: Vec<&str> = s.split('\0').collect();
        fields
            .chunks(2)
            .map(|c| {
                let role = c[0];
                let role = if role.chars().count() <= 1 {
                    ROLES[role.bytes().next().unwrap_or(0) as usize % ROLES.len()].to_string()
                } else {
                    role.to_string()
                };
                Message {
                    role,
                    content: c.get(1).copied().unwrap_or("").to_string(),
                }
            })
            .collect()
    };
    let a = decode(parts.next().unwrap_or(""));
    let b = decode(parts.next().unwrap_or(""));
    (a, b)
}

/// `[flags][text]`: invariants of `prompt::canonical` on two message lists, and the exact tier's
/// promise: two dialogs with the same exact form are the same dialog (else one would be served
/// the other's answer).
pub fn prompt_canonical(data: &[u8]) {
    let mut b = Bytes::new(data);
    let ignore_system = b.u8() & 1 == 1;
    let t = text(b.rest());
    let (a, bb) = message_lists(&t);
    check_prompt(&a, ignore_system);
    check_prompt(&bb, ignore_system);
    let (pa, pb) = (
        prompt::canonical(&a, ignore_system),
        prompt::canonical(&bb, ignore_system),
    );
    if pa.exact == pb.exact {
        assert_eq!(
            dialog_key(&a),
            dialog_key(&bb),
            "two different dialogs share the exact form {:?}",
            pa.exact
        );
    }
}

// ---------------------------------------------------------------------------------------------
// SSE assembly

fn assemble(
    kind: ApiKind,
    max: usize,
    data: &[u8],
    cuts: &[usize],
) -> Result<Completion, completion::Gate> {
    let mut a = Assembler::new(kind, max);
    let mut at = 0;
    for &c in cuts {
        a.feed(&data[at..c]);
        at = c;
    }
    a.feed(&data[at..]);
    a.finish()
}

/// `[flags][n][n x u16 cut][stream bytes]`: the assembled answer does not depend on where the
/// stream was split; a stored answer rendered as SSE (or JSON) assembles back to itself.
pub fn sse_assemble(data: &[u8]) {
    let mut b = Bytes::new(data);
    let flags = b.u8();
    let kind = if flags & 1 == 0 {
        ApiKind::Chat
    } else {
        ApiKind::Legacy
    };
    let include_usage = flags & 4 != 0;
    let n = (b.u8() % 16) as usize;
    let raw_cuts: Vec<u16> = (0..n).map(|_| b.u16()).collect();
    let stream = b.rest();
    let max = if flags & 2 != 0 {
        64 + stream.len() / 2
    } else {
        1 << 20
    };
    let mut cuts: Vec<usize> = raw_cuts
        .iter()
        .map(|&c| {
            if stream.is_empty() {
                0
            } else {
                c as usize % (stream.len() + 1)
            }
        })
        .collect();
    cuts.sort_unstable();

    let whole = assemble(kind, max, stream, &[]);
    let split = assemble(kind, max, stream, &cuts);
    if stream.len() <= max {
        assert_eq!(
            whole, split,
            "the split changed the assembled answer (cuts {cuts:?})"
        );
    } else {
        assert!(
            whole.is_err() && split.is_err(),
            "a stream over the limit was accepted"
        );
    }
    if let Ok(c) = &whole {
        assert_eq!(c.finish_reason, "stop");
        round_trip(kind, c.clone(), include_usage, &cuts);
    }
    // Arbitrary text (the stream bytes read as text) as a stored answer.
    let c = Completion {
        model: "m".into(),
        content: text(stream),
        finish_reason: "stop".into(),
        usage: Some(json!({"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1})),
    };
    round_trip(kind, c, include_usage, &cuts);
}

fn round_trip(kind: ApiKind, c: Completion, include_usage: bool, cuts: &[usize]) {
    let entry = Entry::new(c.clone(), "q", 100, 60);
    let r = |stream| Render {
        kind,
        stream,
        include_usage,
        request_model: "req",
        id: "0123456789abcdef",
        now: 100,
    };
    let (_, sse) = entry.render(&r(true));
    let cuts: Vec<usize> = cuts.iter().map(|&x| x.min(sse.len())).collect();
    let back = assemble(kind, usize::MAX, &sse, &cuts).expect("a rendered stream assembles");
    assert_eq!(
        back.content, c.content,
        "SSE round trip changed the content"
    );
    if include_usage {
        assert_eq!(back.usage, c.usage.filter(Value::is_object));
    }
    let (_, body) = entry.render(&r(false));
    let back = completion::from_json(kind, &body).expect("a rendered body is a clean completion");
    assert_eq!(
        back.content, c.content,
        "JSON round trip changed the content"
    );
}

// ---------------------------------------------------------------------------------------------
// RESP

fn encode(r: &Reply, out: &mut Vec<u8>) {
    match r {
        Reply::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
        Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
        Reply::Integer(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
        Reply::Bulk(b) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
        Reply::Array(items) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for i in items {
                encode(i, out);
            }
        }
    }
}

/// `[expected][reply bytes]`: decoding never panics; what decodes re-encodes to the same replies;
/// any pipeline of binary commands decodes (as the bridge would see it) to its arguments.
pub fn resp_decode(data: &[u8]) {
    let mut b = Bytes::new(data);
    let expected = (b.u8() % 8) as usize;
    let input = b.rest();
    if let Ok(replies) = decode_replies(input, expected) {
        assert_eq!(replies.len(), expected);
        let mut again = Vec::new();
        for r in &replies {
            encode(r, &mut again);
        }
        // Simple strings and errors are decoded lossily (invalid UTF-8 becomes U+FFFD), so
        // compare what a second decode gives.
        let twice = decode_replies(&again, expected).expect("re-encoded replies decode");
        let mut third = Vec::new();
        for r in &twice {
            encode(r, &mut third);
        }
        assert_eq!(again, third);
    }
    for n in 0..=expected.min(3) {
        let _ = decode_replies(input, n);
    }
    // The same bytes as commands: \0 separates arguments, \x01 commands.
    let mut p = Pipeline::new();
    let commands: Vec<Vec<&[u8]>> = input
        .split(|&c| c == 1)
        .map(|c| c.split(|&x| x == 0).collect())
        .collect();
    for c in &commands {
        p.cmd(c);
    }
    let count = p.len();
    let bytes = p.into_bytes();
    let decoded = decode_replies(&bytes, count).expect("an encoded pipeline decodes");
    for (c, r) in commands.iter().zip(&decoded) {
        let args: Vec<Reply> = c.iter().map(|a| Reply::Bulk(a.to_vec())).collect();
        // Deeper than the reply depth limit cannot happen: commands are flat arrays.
        assert_eq!(r, &Reply::Array(args));
    }
}

// ---------------------------------------------------------------------------------------------
// configuration

fn env(name: &str) -> Option<String> {
    Some(format!("secret-of-{name}"))
}

/// The input as the plugin configuration text (JSON, APIM XML, or the JSON wrapper of an APIM
/// policy); after a `\0`, a per-route overlay. Never panics; an accepted configuration is stable:
/// its JSON value validates to the same config, also re-serialised and under an empty overlay.
pub fn config_parse(data: &[u8]) {
    let Ok(t) = std::str::from_utf8(data) else {
        return; // the glue refuses a configuration that is not UTF-8 before parsing it
    };
    let (base, overlay) = t.split_once('\0').unwrap_or((t, ""));
    let (config, value) = match Config::parse(base) {
        Ok(v) => v,
        Err(e) => {
            assert!(e.to_string().starts_with("semcache config"), "{e}");
            return;
        }
    };
    assert_eq!(Config::from_value(&value).as_ref(), Ok(&config));
    let (again, _) = Config::parse(&value.to_string()).expect("the JSON form of a valid config");
    assert_eq!(again, config);
    assert_eq!(Config::with_overlay(&value, "{}").as_ref(), Ok(&config));
    let _ = Settings::resolve(config.clone(), &env);
    if !overlay.is_empty() {
        if let Ok(o) = Config::with_overlay(&value, overlay) {
            let mut merged = value.clone();
            semcache_core::config::merge(&mut merged, &serde_json::from_str(overlay).unwrap());
            assert_eq!(Config::from_value(&merged).as_ref(), Ok(&o));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// guards

const MIN_CONFIG: &str = r#"{"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"}}"#;
const GUARD_NAMES: &[&str] = &["numbers", "negation", "entities", "quoted", "scope"];

fn guard_configs() -> &'static Vec<GuardsConfig> {
    static CONFIGS: OnceLock<Vec<GuardsConfig>> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        (0..1u32 << GUARD_NAMES.len())
            .map(|mask| {
                let mut v: Value = serde_json::from_str(MIN_CONFIG).unwrap();
                for (i, name) in GUARD_NAMES.iter().enumerate() {
                    v["guards"][*name] = json!(mask & (1 << i) == 0);
                }
                Config::from_value(&v).expect("guard config").guards
            })
            .collect()
    })
}

/// `[guard mask][a \0 b]`: a prompt never vetoes itself, and a veto does not depend on which
/// side is the cached prompt.
pub fn guards_check(data: &[u8]) {
    let mut b = Bytes::new(data);
    let cfg = &guard_configs()[(b.u8() as usize) % (1 << GUARD_NAMES.len())];
    let t = text(b.rest());
    let (x, y) = t.split_once('\0').unwrap_or((&t, ""));
    assert_eq!(guards::check(cfg, x, x), None);
    assert_eq!(
        guards::check(cfg, x, y),
        guards::check(cfg, y, x),
        "the veto depends on the order of {x:?} and {y:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// the per-request state machine driven by arbitrary host events

const MACHINE_CONFIGS: &[&str] = &[
    r#"{"embeddings":{"cluster":"e","dimensions":4},"bridge":{"cluster":"b","token_env":"T"},"vary_by":[{"header":"x-t"},{"body":"/user"}]}"#,
    r#"{"embeddings":{"cluster":"e"},"bridge":{"cluster":"b"},"exact_match":false,"hold_request_headers":true}"#,
    r#"{"embeddings":{"cluster":"e","dimensions":4},"bridge":{"cluster":"b"},"semantic_match":false,"max_request_body_bytes":1024}"#,
    r#"{"embeddings":{"cluster":"e","dimensions":4},"bridge":{"cluster":"b"},"backend":"redisearch","max_response_body_bytes":1024,"max_message_count":2}"#,
    // The local tier (on by default above) off: the Redis exact lookup follows the body at once,
    // here folded into the search.
    r#"{"embeddings":{"cluster":"e","dimensions":4},"bridge":{"cluster":"b"},"local_cache":{"entries":0},"adaptive_search_ef":false,"fold_exact_lookup":true}"#,
    // Neither folded nor speculative: the exact lookup alone, then the embedding.
    r#"{"embeddings":{"cluster":"e","dimensions":4},"bridge":{"cluster":"b"},"local_cache":{"entries":0},"fold_exact_lookup":false,"speculative_embedding":false}"#,
];

const EMBEDDING: &[u8] = br#"{"data":[{"embedding":[0.5,0.25,-0.5,0.125]}]}"#;
const CALLOUT_BODIES: &[&[u8]] = &[
    b"$-1\r\n*0\r\n",
    b"*0\r\n",
    // VSIM, VCARD (adaptive search breadth), expiry scan.
    b"*0\r\n:7\r\n*0\r\n",
    // The same behind a folded exact lookup's miss.
    b"$-1\r\n*0\r\n:7\r\n*0\r\n",
    b"+OK\r\n",
    b":1\r\n:1\r\n",
    b"-ERR no such index\r\n",
    EMBEDDING,
    b"",
];
const CONTENT_TYPES: &[&str] = &["application/json", "text/event-stream", "text/plain", ""];
const STATUSES: &[Option<u16>] = &[Some(200), Some(200), Some(500), Some(429), Some(404), None];
const CACHE_CONTROL: &[&str] = &["", "no-cache", "no-store", "max-age=0, no-cache"];

fn machine_settings(i: usize) -> Rc<Settings> {
    let (c, _) = Config::parse(MACHINE_CONFIGS[i % MACHINE_CONFIGS.len()]).expect("machine config");
    Rc::new(Settings::resolve(c, &env).expect("settings"))
}

/// Answers a local-tier read the machine asked for, as the glue would within the same
/// callback: an empty slot, the last value the machine wrote there, or any bytes.
fn answer_local(
    m: &mut Machine,
    fx: &mut Vec<Effect>,
    b: &mut Bytes,
    kept: &mut Option<Vec<u8>>,
    now: u64,
) {
    for e in fx.iter() {
        if let Effect::LocalPut(_, v) = e {
            *kept = Some(v.clone());
        }
    }
    if fx.iter().any(|e| matches!(e, Effect::LocalGet(_))) {
        let value = match b.u8() % 3 {
            0 => None,
            1 => kept.clone(),
            _ => Some(b.slice().to_vec()),
        };
        m.on_local(value.as_deref(), now, fx);
    }
}

/// `[config][path][cache-control][body][events...]`: any order of host events, with any
/// payloads, never panics, and what the machine asks of the host stays sane.
pub fn machine_events(data: &[u8]) {
    let mut b = Bytes::new(data);
    let settings = machine_settings(b.u8() as usize);
    let max_request = settings.config.max_request_body_bytes;
    let mut m = Machine::new(settings);
    let path = PATHS[(b.u8() % 4) as usize];
    let cc = CACHE_CONTROL[(b.u8() % 4) as usize];
    let headers = vec![
        ("cache-control".to_string(), cc.to_string()),
        ("x-t".to_string(), "tenant".to_string()),
    ];
    let head = RequestHead {
        method: "POST",
        path,
        headers: &headers,
        attributes: m
            .attribute_paths()
            .iter()
            .map(|_| Some("attr".to_string()))
            .collect(),
    };
    let mut fx = Vec::new();
    let mut now = 1_000_000u64;
    m.on_request_headers(&head, &mut fx);
    let body = b.slice();
    if m.reading_body() {
        if body.len() > max_request {
            m.on_request_body_too_large(&mut fx);
        } else {
            m.on_request_body(body, now, &mut fx);
        }
    }
    let mut kept = None;
    answer_local(&mut m, &mut fx, &mut b, &mut kept, now);
    let mut served = 0;
    let mut steps = 0;
    while !b.is_empty() && steps < 64 {
        steps += 1;
        now += b.u8() as u64;
        let ev = b.u8();
        match ev % 6 {
            0 | 1 => {
                let status = STATUSES[(b.u8() as usize) % STATUSES.len()];
                let sel = b.u8() as usize;
                let raw = b.slice();
                let body = if sel.is_multiple_of(2) {
                    raw
                } else {
                    CALLOUT_BODIES[(sel / 2) % CALLOUT_BODIES.len()]
                };
                // Usually the callout the machine waits for; with the selector's top bit, the
                // other kind (a stray or speculative answer).
                let awaited = m.awaiting().unwrap_or(Target::Bridge);
                let target = match (sel & 0x80 != 0, awaited) {
                    (false, t) => t,
                    (true, Target::Bridge) => Target::Embeddings,
                    (true, Target::Embeddings) => Target::Bridge,
                };
                m.on_callout(
                    CalloutResult {
                        target,
                        status,
                        body,
                    },
                    now,
                    &mut fx,
                );
            }
            2 => {
                let status = STATUSES[(b.u8() as usize) % STATUSES.len()];
                let ct = CONTENT_TYPES[(b.u8() as usize) % CONTENT_TYPES.len()];
                let enc = if b.u8().is_multiple_of(4) {
                    Some("gzip")
                } else {
                    None
                };
                m.on_response_headers(status, Some(ct).filter(|c| !c.is_empty()), enc, &mut fx);
            }
            3 | 4 => {
                let eos = b.u8().is_multiple_of(3);
                let chunk = b.slice();
                let _: Action = m.on_response_body(chunk, eos, now, &mut fx);
            }
            _ => {
                let target = m.awaiting().unwrap_or(Target::Embeddings);
                m.on_dispatch_failed(target, now, &mut fx)
            }
        }
        answer_local(&mut m, &mut fx, &mut b, &mut kept, now);
        for e in fx.drain(..) {
            match e {
                Effect::SendResponse {
                    status,
                    headers,
                    body,
                } => {
                    served += 1;
                    assert_eq!(status, 200);
                    assert!(headers
                        .iter()
                        .any(|(k, v)| k == "x-semcache-status" && v == "hit"));
                    assert!(!body.is_empty());
                }
                Effect::Dispatch(c) => {
                    assert!(!c.cluster.is_empty() && c.timeout_ms > 0);
                    assert!(c.headers.iter().any(|(k, _)| k == ":path"));
                }
                _ => {}
            }
        }
        assert!(served <= 1, "answered twice from cache");
        let _ = (
            m.wants_response_body(),
            m.awaiting_callout(),
            m.reading_body(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// the stored form of an entry (read back from Redis: untrusted)

/// `bytes` as raw DEFLATE in stored (uncompressed) blocks, so the fuzzer's JSON reaches the
/// inflating path too.
fn deflate_stored(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 5 * (bytes.len() / 0xffff + 1));
    let mut chunks = bytes.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none())); // BFINAL, BTYPE 00
        let n = c.len() as u16;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// The input as a stored value, and as the JSON inside a `Z` value: decoding never panics (a
/// DEFLATE bomb is refused by `unpack`'s inflate limit); both forms read the same; an entry that
/// decodes is stored again, compressed or not, as a value that decodes to the same entry.
pub fn packed_decode(data: &[u8]) {
    let plain = Entry::from_json(data);
    let direct = packed::unpack(data);
    if data.first() != Some(&b'Z') {
        assert_eq!(direct, plain, "unpack differs from Entry::from_json");
    }
    let mut z = vec![b'Z'];
    z.extend(deflate_stored(data));
    assert_eq!(
        packed::unpack(&z),
        plain,
        "the deflated form reads differently"
    );
    for e in direct.iter().chain(plain.iter()) {
        let json = packed::encode(&Encoded::new(e), false);
        assert_eq!(json, e.to_json().into_bytes());
        let packed = packed::encode(&Encoded::new(e), true);
        assert!(packed.len() <= json.len(), "packing made the entry bigger");
        for (form, bytes) in [("json", &json), ("packed", &packed)] {
            let back = packed::unpack(bytes).expect("a stored entry reads back");
            let mut same = back.clone();
            same.usage = e.usage.clone();
            assert_eq!(&same, e, "the {form} form does not read back");
            assert!(
                match (&back.usage, &e.usage) {
                    (Some(a), Some(b)) => same_json(a, b),
                    (a, b) => a == b,
                },
                "the {form} form changed the usage: {:?} for {:?}",
                back.usage,
                e.usage
            );
        }
    }
}

/// Equal JSON, except that floats may differ in the last bit or two: serde_json (without its
/// `float_roundtrip` feature) parses some 17-digit decimals one ULP off, so a float can drift
/// by an ULP each time an entry is stored and read. Only `usage` (the upstream's token counts,
/// echoed back) holds numbers, and no one reads a float in it.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y
                || (x.is_sign_negative() == y.is_sign_negative()
                    && x.to_bits().abs_diff(y.to_bits()) <= 2)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
