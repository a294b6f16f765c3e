//! Native cost per request of the filter's decision logic (semcache-core's `Machine`), driven
//! with canned callout replies the way the glue in src/lib.rs drives it:
//!
//! - exact hit: request headers, body, exact-tier reply with an entry as the filter stores it
//!   (DEFLATE-compressed); `exact_hit_json` the same entry as plain JSON, so the difference is
//!   the inflate;
//! - semantic hit: request headers, body, embeddings response (base64), VSIM reply with four
//!   candidates and their attributes (the first one served), and an empty exact-tier reply;
//!
//! Each callout the machine dispatches is answered in turn, so the flow is the machine's: with
//! the default config the exact lookup rides on the vector search while exact hits are rare and
//! goes first once they are common (the repeated exact hits here make them common).
//! - semantic veto: the same, but the guards veto all four candidates (a numbers mismatch), so
//!   the request goes upstream;
//! - guards alone: one `guards::check` of the cached prompt against the query;
//! - bypass: `cache-control: no-store` request headers, then the response headers.
//!
//! The configuration defaults to the plugin configuration of envoy/envoy.yaml.

use std::rc::Rc;
use std::time::Instant;

use base64::Engine;
use semcache_core::config::Config;
use semcache_core::entry::Entry;
use semcache_core::machine::{CalloutResult, Effect, Machine, RequestHead, Target};
use semcache_core::settings::Settings;

const ANSWER: &str = "Mock answer to: How long should I boil an egg for a runny yolk? \
[0123456789abcdef]. Tool calls, finish reasons and gzip encoding can be requested per request \
as well. A cache hit should never show up in those counters, which is how tests prove it \
happened. Semantic caches compare the meaning of prompts rather than their exact bytes. This \
reply comes from the semcache mock upstream, which answers every question the same way every \
time.";

fn bulk(b: &[u8]) -> Vec<u8> {
    let mut v = format!("${}\r\n", b.len()).into_bytes();
    v.extend_from_slice(b);
    v.extend_from_slice(b"\r\n");
    v
}

fn plugin_config() -> String {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../envoy/envoy.yaml"
    ))
    .expect("envoy/envoy.yaml");
    // The one line `value: '{...}'` of the plugin configuration.
    let line = yaml
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("value: '{"))
        .expect("plugin configuration in envoy.yaml");
    line["value: '".len()..line.len() - 1].replace("''", "'")
}

fn served(fx: &[Effect]) -> usize {
    fx.iter()
        .filter(|e| matches!(e, Effect::SendResponse { .. }))
        .count()
}

/// Times `f` and checks it answered as `expect` (1: from cache, 0: not), so a harness that
/// drifts from the entry format fails loudly instead of timing misses.
fn time(name: &str, n: usize, expect: usize, mut f: impl FnMut() -> usize) {
    assert_eq!(f(), expect, "{name}: answered from cache?");
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    let mut sent = 0;
    for _ in 0..n {
        sent += f();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let how = if cfg!(target_arch = "wasm32") {
        "wasm"
    } else {
        "native"
    };
    println!("{name:14} {us:8.2} µs per request ({how}; {sent} of {n} answered from cache)");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg_text = match args.first().filter(|a| !a.is_empty()) {
        Some(path) => std::fs::read_to_string(path).expect("config file"),
        None => plugin_config(),
    };
    let cached = args.get(1).map_or(
        "How long should I boil an egg for a runny yolk?",
        String::as_str,
    );
    let query = args.get(2).map_or(
        "What's the boiling time for a soft-boiled egg?",
        String::as_str,
    );

    let (config, _) = Config::parse(&cfg_text).expect("plugin configuration");
    let settings =
        Rc::new(Settings::resolve(config, &|_| Some("token".to_string())).expect("settings"));
    // Entries carry unix milliseconds (expiry and creation).
    let now_ms = 1_800_000_000_000u64;
    let entry = format!(
        r#"{{"e":{},"t":{},"q":{},"m":"gpt-4o","r":{},"u":{{"completion_tokens":101,"completion_tokens_details":{{"reasoning_tokens":0}},"prompt_tokens":24,"prompt_tokens_details":{{"cached_tokens":0}},"total_tokens":125}}}}"#,
        now_ms + 3_600_000,
        now_ms,
        serde_json::to_string(cached).unwrap(),
        serde_json::to_string(ANSWER).unwrap()
    );
    // As the filter stores it (DEFLATE when that is smaller), so a hit pays the inflate too.
    let entry_json = entry.into_bytes();
    let entry = semcache_core::packed::pack(&Entry::from_json(&entry_json).expect("entry JSON"));
    assert!(
        entry.len() < entry_json.len(),
        "the stored entry is deflated"
    );

    let headers: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "localhost"),
        ("content-type", "application/json"),
        ("content-length", "100"),
        ("user-agent", "wrk"),
        ("x-semcache-tenant", "sem"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut bypass_headers = headers.clone();
    bypass_headers.push(("cache-control".into(), "no-store".into()));
    let body = |p: &str| {
        serde_json::json!({"model": "gpt-4o", "messages": [{"role": "user", "content": p}]})
            .to_string()
            .into_bytes()
    };
    let (cached_body, query_body) = (body(cached), body(query));
    let vetoed = format!("{query} (3 of them)");
    assert!(semcache_core::guards::check(&settings.config.guards, cached, &vetoed).is_some());
    let vetoed_body = body(&vetoed);

    let vector: Vec<f32> = (0..384).map(|i| ((i as f32) * 0.37).sin() / 14.0).collect();
    let blob: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
    let embeddings = serde_json::json!({"object": "list", "data": [{"object": "embedding",
        "index": 0, "embedding": base64::engine::general_purpose::STANDARD.encode(&blob)}],
        "model": "all-MiniLM-L6-v2", "usage": {"prompt_tokens": 12, "total_tokens": 12}})
    .to_string()
    .into_bytes();
    // The exact lookup is one command (VGETATTR); the expiry scan (ZRANGE, empty here) rides
    // on the semantic lookup.
    let exact_hit = bulk(&entry);
    let exact_hit_json = bulk(&entry_json);
    let exact_miss = b"$-1\r\n".to_vec();
    let mut vsim = b"*12\r\n".to_vec();
    for (i, score) in ["0.97", "0.93", "0.91", "0.90"].iter().enumerate() {
        vsim.extend(bulk(format!("{:032x}", i + 1).as_bytes()));
        vsim.extend(bulk(score.as_bytes()));
        vsim.extend(bulk(&entry));
    }
    // VCARD (adaptive search breadth), then the expiry scan.
    vsim.extend_from_slice(b":2000\r\n*0\r\n");
    fn ok(target: Target, b: &[u8]) -> CalloutResult<'_> {
        CalloutResult {
            target,
            status: Some(200),
            body: b,
        }
    }
    /// The canned answers: the exact tier's reply, and the search's (with the exact reply at its
    /// head, for a folded lookup).
    struct Replies {
        exact: Vec<u8>,
        folded: Vec<u8>,
    }
    let replies = |exact: &[u8]| Replies {
        exact: exact.to_vec(),
        folded: [exact, &vsim].concat(),
    };
    let (hit, hit_json, miss) = (
        replies(&exact_hit),
        replies(&exact_hit_json),
        replies(&exact_miss),
    );
    let has = |b: &[u8], cmd: &[u8]| b.windows(cmd.len()).any(|w| w == cmd);
    // Answers every callout the machine dispatches, in order; how many responses it served.
    let drive = |m: &mut Machine, fx: &mut Vec<Effect>, r: &Replies| {
        let mut seen = 0;
        let mut pending = std::collections::VecDeque::new();
        loop {
            for e in &fx[seen..] {
                if let Effect::Dispatch(c) = e {
                    let body: &[u8] = match c.target {
                        Target::Embeddings => &embeddings,
                        Target::Bridge if !has(&c.body, b"VSIM") => &r.exact,
                        Target::Bridge if has(&c.body, b"VGETATTR") => &r.folded,
                        Target::Bridge => &vsim,
                    };
                    pending.push_back((c.target, body));
                }
            }
            seen = fx.len();
            let Some((target, body)) = pending.pop_front() else {
                return served(fx);
            };
            m.on_callout(ok(target, body), now_ms, fx);
        }
    };
    // A request's headers and (unless `None`) body, as the glue feeds them.
    let begin = |hdrs: &[(String, String)], body: Option<&[u8]>| {
        let mut m = Machine::new(Rc::clone(&settings));
        let mut fx = Vec::new();
        let head = RequestHead {
            method: "POST",
            path: "/v1/chat/completions",
            headers: hdrs,
            attributes: vec![],
        };
        m.on_request_headers(&head, &mut fx);
        if let Some(body) = body {
            m.on_request_body(body, now_ms, &mut fx);
        }
        (m, fx)
    };
    // The same, and the local tier (on by default) found empty, so Redis answers.
    let start = |body: &[u8]| {
        let (mut m, mut fx) = begin(&headers, Some(body));
        if fx.iter().any(|e| matches!(e, Effect::LocalGet(_))) {
            m.on_local(None, now_ms, &mut fx);
        }
        (m, fx)
    };
    let n = 20_000;

    time("exact_hit", n, 1, || {
        let (mut m, mut fx) = start(&cached_body);
        drive(&mut m, &mut fx, &hit)
    });
    // What the Redis hit put into the local tier answers the next identical request.
    let local_value = {
        let (mut m, mut fx) = start(&cached_body);
        drive(&mut m, &mut fx, &hit);
        fx.into_iter().find_map(|e| match e {
            Effect::LocalPut(_, v) => Some(v),
            _ => None,
        })
    };
    if let Some(value) = local_value {
        time("exact_hit_local", n, 1, || {
            let (mut m, mut fx) = begin(&headers, Some(&cached_body));
            m.on_local(Some(&value), now_ms, &mut fx);
            served(&fx)
        });
    }
    time("exact_hit_json", n, 1, || {
        let (mut m, mut fx) = start(&cached_body);
        drive(&mut m, &mut fx, &hit_json)
    });
    time("semantic_hit", n, 1, || {
        let (mut m, mut fx) = start(&query_body);
        drive(&mut m, &mut fx, &miss)
    });
    time("semantic_veto", n, 0, || {
        let (mut m, mut fx) = start(&vetoed_body);
        drive(&mut m, &mut fx, &miss)
    });
    let guards = settings.config.guards;
    time("guards_check", n, 1, || {
        usize::from(semcache_core::guards::check(&guards, cached, query).is_none())
    });
    time("bypass", n, 0, || {
        let (mut m, mut fx) = begin(&bypass_headers, None);
        m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
        served(&fx)
    });
}
