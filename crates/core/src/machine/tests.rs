//! Scenario tests of the state machine, with callout replies written as the bridge would.

use super::*;
use crate::config::Config;
use base64::Engine;

// These scenarios are about Redis, so the local tier (on by default) is off; its own tests below
// use LOCAL_CFG and the default. They look up exact first (with the speculative embedding beside
// it); the folded exact lookup (`fold_exact_lookup`, off by default, on in envoy.yaml) has its
// own tests below (`fold_cfg`).
const CFG: &str = r#"{"embeddings":{"cluster":"emb","model":"minilm"},"bridge":{"cluster":"br","token":"tok"},
    "vary_by":[{"header":"x-tenant"}],"score_threshold":0.2,"local_cache":{"entries":0},
    "fold_exact_lookup":false}"#;

fn machine_with(cfg: &str) -> Machine {
    let (c, _) = Config::parse(cfg).unwrap();
    Machine::new(Rc::new(Settings::resolve(c, &|_| None).unwrap()))
}

fn machine() -> Machine {
    machine_with(CFG)
}

fn headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

const BODY: &[u8] = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"What is the capital of France?"}]}"#;

fn start(m: &mut Machine, extra: &[(&str, &str)], body: &[u8]) -> (Action, Vec<Effect>) {
    let h = headers(extra);
    let mut fx = Vec::new();
    let a = m.on_request_headers(
        &RequestHead {
            method: "POST",
            path: "/v1/chat/completions",
            headers: &h,
            attributes: vec![],
        },
        &mut fx,
    );
    assert_eq!(a, Action::Continue);
    let a = m.on_request_body(body, 1_000_000, &mut fx);
    (a, fx)
}

fn dispatched(fx: &[Effect]) -> Vec<&Callout> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Dispatch(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The one callout to `target` among the effects (the order of dispatches is the machine's
/// choice; what goes where is the contract).
fn to(fx: &[Effect], target: Target) -> &Callout {
    let mut c = dispatched(fx).into_iter().filter(|c| c.target == target);
    let first = c.next().expect("a callout to that target");
    assert!(c.next().is_none(), "one callout to {target:?}");
    first
}

/// The upstream's response head (200, JSON) as the glue passes it; the effects it produced.
fn upstream_json_head(m: &mut Machine) -> Vec<Effect> {
    let mut fx = Vec::new();
    m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
    fx
}

/// Whether `fx` sets the response header `name` to `value`.
fn sets_header(fx: &[Effect], name: &str, value: &str) -> bool {
    has(fx, &Effect::SetResponseHeader(name.into(), value.into()))
}

fn has(fx: &[Effect], e: &Effect) -> bool {
    fx.iter().any(|x| x == e)
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{}\r\n", s.len(), s)
}

fn embedding_reply(v: &[f32]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(embeddings::to_fp32_blob(v));
    format!(r#"{{"data":[{{"embedding":"{b64}","index":0}}]}}"#).into_bytes()
}

fn entry_json(prompt: &str, content: &str) -> String {
    Entry {
        expires_at: 5_000_000,
        created_at: 900_000,
        prompt: prompt.into(),
        model: "gpt-4o".into(),
        content: content.into(),
        usage: Some(
            serde_json::json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}),
        ),
    }
    .to_json()
}

/// The answer of the callout the machine waits for (the exact lookup when it waits for both).
fn callout(m: &mut Machine, status: Option<u16>, body: &[u8]) -> Vec<Effect> {
    let target = m.awaiting().unwrap_or(Target::Bridge);
    callout_from(m, target, status, body)
}

fn callout_from(m: &mut Machine, target: Target, status: Option<u16>, body: &[u8]) -> Vec<Effect> {
    let mut fx = Vec::new();
    m.on_callout(
        CalloutResult {
            target,
            status,
            body,
        },
        1_000_100,
        &mut fx,
    );
    fx
}

type Headers = Vec<(String, String)>;

fn local_reply(fx: &[Effect]) -> Option<(&Headers, &Vec<u8>)> {
    fx.iter().find_map(|e| match e {
        Effect::SendResponse { headers, body, .. } => Some((headers, body)),
        _ => None,
    })
}

fn hdr<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

const UPSTREAM: &[u8] = br#"{"object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;

/// Drives a request through exact miss, embedding, semantic miss, upstream answer and store.
fn miss_and_store(m: &mut Machine) -> Vec<Effect> {
    let (a, fx) = start(m, &[("x-tenant", "t1")], BODY);
    assert_eq!(a, Action::Pause);
    assert!(has(&fx, &Effect::RemoveRequestHeader("accept-encoding")));
    let c = dispatched(&fx);
    let bridge = to(&fx, Target::Bridge);
    // With no exact hits seen yet, the embedding starts with the exact lookup (speculation).
    let speculative = c.len() == 2;
    if speculative {
        to(&fx, Target::Embeddings);
    } else {
        assert_eq!(c.len(), 1);
    }
    assert!(bridge
        .headers
        .contains(&("authorization".into(), "Bearer tok".into())));
    let exact = String::from_utf8_lossy(&bridge.body).into_owned();
    assert!(
        exact.contains("VGETATTR") && !exact.contains("ZRANGE"),
        "{exact}"
    );
    assert!(bridge
        .headers
        .contains(&("x-semcache-commands".into(), "1".into())));

    let fx = callout(m, Some(200), b"$-1\r\n");
    if speculative {
        assert!(
            dispatched(&fx).is_empty(),
            "the embedding is already on its way"
        );
    } else {
        assert_eq!(dispatched(&fx)[0].target, Target::Embeddings);
    }
    let fx = callout(m, Some(200), &embedding_reply(&[0.6, 0.8]));
    let c = dispatched(&fx);
    // The expiry scan rides on the last lookup of a miss.
    let sem = String::from_utf8_lossy(&c[0].body).into_owned();
    assert!(sem.contains("VSIM") && sem.contains("ZRANGE"), "{sem}");
    let fx = callout(m, Some(200), b"*0\r\n:0\r\n*0\r\n");
    assert!(has(&fx, &Effect::ResumeRequest));
    assert!(has(&fx, &Effect::Count(Counter::Miss, 1)));
    assert!(
        m.needs_response_head(),
        "a capture depends on the status and content type"
    );

    let mut fx = upstream_json_head(m);
    assert!(sets_header(&fx, "x-semcache-status", "miss"));
    // The held end must really be held: no content-length telling the client it has it all.
    assert!(has(&fx, &Effect::RemoveResponseHeader("content-length")));
    assert!(m.wants_response_body());
    let (first, rest) = UPSTREAM.split_at(40);
    assert_eq!(
        m.on_response_body(first, false, 1_000_200, &mut fx),
        Action::Continue
    );
    assert_eq!(
        m.on_response_body(rest, true, 1_000_200, &mut fx),
        Action::Pause
    );
    let store = dispatched(&fx);
    assert_eq!(store.len(), 1);
    // VADD's SETATTR argument is the stored entry (its JSON may be deflated).
    let cmds = crate::resp::decode_replies(&store[0].body, 6).unwrap();
    let vadd: Vec<&[u8]> = match &cmds[0] {
        crate::resp::Reply::Array(args) => args.iter().filter_map(|a| a.as_bytes()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(vadd[0], b"VADD");
    let attr = vadd[vadd.iter().position(|a| *a == b"SETATTR").unwrap() + 1];
    assert_eq!(crate::packed::unpack(attr).unwrap().content, "Paris.");
    let fx = callout(m, Some(200), b":1\r\n:1\r\n:1\r\n:0\r\n:1\r\n:0\r\n");
    assert!(has(&fx, &Effect::Count(Counter::Stored, 1)));
    assert!(has(&fx, &Effect::ResumeResponse));
    fx
}

#[test]
fn miss_goes_upstream_and_the_answer_is_stored_before_the_response_ends() {
    let mut m = machine();
    miss_and_store(&mut m);
    let mut fx = Vec::new();
    m.on_stream_done(&mut fx);
    assert!(fx.is_empty(), "a completed store is not a cancelled one");
}

#[test]
fn a_stream_gone_while_storing_counts_a_cancelled_store() {
    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    callout(&mut m, Some(200), b"$-1\r\n");
    callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
    callout(&mut m, Some(200), b"*0\r\n:0\r\n*0\r\n");
    let mut fx = Vec::new();
    m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
    assert_eq!(
        m.on_response_body(UPSTREAM, true, 1_000_200, &mut fx),
        Action::Pause
    );
    assert!(m.awaiting_callout());
    let mut fx = Vec::new();
    m.on_stream_done(&mut fx);
    assert!(has(&fx, &Effect::Count(Counter::StoreCancelled, 1)));
    assert!(!m.awaiting_callout());
}

#[test]
fn exact_hit_answers_locally_without_embedding() {
    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    let e = entry_json("What is the capital of France?", "Paris.");
    let fx = callout(&mut m, Some(200), bulk(&e).as_bytes());
    assert!(dispatched(&fx).is_empty(), "no embedding on an exact hit");
    let (h, body) = local_reply(&fx).expect("local reply");
    assert_eq!(hdr(h, "x-semcache-status"), Some("hit"));
    assert_eq!(hdr(h, "x-semcache-match"), Some("exact"));
    assert_eq!(hdr(h, "content-type"), Some("application/json"));
    assert_eq!(hdr(h, "age"), Some("100"));
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Paris.");
    assert!(has(&fx, &Effect::Count(Counter::HitExact, 1)));
    assert!(has(&fx, &Effect::Count(Counter::TokensSaved, 7)));
    // Our own local reply passes through the response callbacks: nothing happens.
    let mut fx = Vec::new();
    m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
    assert!(fx.is_empty());
    assert!(!m.wants_response_body());
}

fn semantic(m: &mut Machine, cached_prompt: &str, score: &str) -> Vec<Effect> {
    callout(m, Some(200), b"$-1\r\n");
    callout(m, Some(200), &embedding_reply(&[0.6, 0.8]));
    let e = entry_json(cached_prompt, "Paris.");
    callout(
        m,
        Some(200),
        format!(
            "*3\r\n{}{}{}:1\r\n*0\r\n",
            bulk("abc"),
            bulk(score),
            bulk(&e)
        )
        .as_bytes(),
    )
}

#[test]
fn semantic_hit_within_threshold_reports_distance() {
    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    let fx = semantic(&mut m, "Tell me the capital of France.", "0.96");
    let (h, _) = local_reply(&fx).expect("semantic hit");
    assert_eq!(hdr(h, "x-semcache-match"), Some("semantic"));
    assert_eq!(hdr(h, "x-semcache-distance"), Some("0.0800"));
    assert!(has(&fx, &Effect::Record(Histogram::HitDistance, 800)));
}

#[test]
fn candidate_beyond_threshold_or_vetoed_is_a_miss_with_the_reason() {
    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    let fx = semantic(&mut m, "Tell me the capital of France.", "0.85");
    assert!(local_reply(&fx).is_none());
    assert!(has(&fx, &Effect::ResumeRequest));
    let fx = upstream_json_head(&mut m);
    assert!(sets_header(&fx, "x-semcache-distance", "0.3000"));

    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    let fx = semantic(&mut m, "What is not the capital of France?", "0.99");
    assert!(local_reply(&fx).is_none());
    assert!(has(&fx, &Effect::Count(Counter::Vetoed(Veto::Negation), 1)));
    let fx = upstream_json_head(&mut m);
    assert!(sets_header(&fx, "x-semcache-veto", "negation"));
}

#[test]
fn vary_by_values_and_model_change_the_keys() {
    let keys = |tenant: &str, body: &[u8]| {
        let mut m = machine();
        let (_, fx) = start(&mut m, &[("x-tenant", tenant)], body);
        String::from_utf8_lossy(&to(&fx, Target::Bridge).body).into_owned()
    };
    let a = keys("t1", BODY);
    assert_eq!(a, keys("t1", BODY));
    assert_ne!(a, keys("t2", BODY));
    let other_model = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
    assert_ne!(a, keys("t1", other_model));
    let hot = br#"{"model":"gpt-4o","temperature":0.9,"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
    assert_ne!(a, keys("t1", hot));
}

#[test]
fn every_failure_fails_open_and_is_labelled_error() {
    for (step, status, body) in [
        (0, None, &b""[..]),
        (0, Some(503), &b"down"[..]),
        (0, Some(200), &b"garbage"[..]),
        (1, Some(504), &b""[..]),
        (1, Some(200), &b"{\"data\":[]}"[..]),
        (2, None, &b""[..]),
    ] {
        let mut m = machine();
        start(&mut m, &[], BODY);
        if step >= 1 {
            callout(&mut m, Some(200), b"$-1\r\n");
        }
        if step >= 2 {
            callout(&mut m, Some(200), &embedding_reply(&[1.0, 0.0]));
        }
        let fx = callout(&mut m, status, body);
        assert!(has(&fx, &Effect::ResumeRequest), "step {step} {status:?}");
        assert!(fx.iter().any(|e| matches!(
            e,
            Effect::Count(Counter::ErrorLookup | Counter::ErrorEmbeddings, 1)
        )));
        let fx = upstream_json_head(&mut m);
        assert!(sets_header(&fx, "x-semcache-status", "error"));
        assert!(!m.wants_response_body(), "nothing stored after a failure");
    }
}

#[test]
fn failed_store_still_resumes_the_response() {
    let mut m = machine();
    start(&mut m, &[], BODY);
    callout(&mut m, Some(200), b"$-1\r\n");
    callout(&mut m, Some(200), &embedding_reply(&[1.0, 0.0]));
    callout(&mut m, Some(200), b"*0\r\n:0\r\n*0\r\n");
    let mut fx = Vec::new();
    m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
    assert_eq!(
        m.on_response_body(UPSTREAM, true, 0, &mut fx),
        Action::Pause
    );
    let fx = callout(&mut m, None, b"");
    assert!(has(&fx, &Effect::ResumeResponse));
    assert!(has(&fx, &Effect::Count(Counter::ErrorStore, 1)));
}

#[test]
fn no_store_and_bypass_header_touch_nothing() {
    for extra in [("cache-control", "no-store"), ("x-semcache-bypass", "1")] {
        let mut m = machine();
        let (a, fx) = start(&mut m, &[extra], BODY);
        assert_eq!(a, Action::Continue);
        assert!(dispatched(&fx).is_empty());
        assert!(!m.needs_response_head());
        let mut fx = Vec::new();
        // The glue passes no response head when it is not needed.
        m.on_response_headers(None, None, None, &mut fx);
        assert!(sets_header(&fx, "x-semcache-status", "bypass"));
        assert!(!m.wants_response_body());
    }
}

#[test]
fn no_cache_skips_lookup_but_embeds_and_stores_the_answer() {
    let mut m = machine();
    let (a, fx) = start(&mut m, &[("cache-control", "no-cache")], BODY);
    assert_eq!(a, Action::Continue);
    assert!(dispatched(&fx).is_empty());
    let mut fx = Vec::new();
    m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
    assert!(m.wants_response_body());
    assert_eq!(
        m.on_response_body(UPSTREAM, true, 0, &mut fx),
        Action::Pause
    );
    assert_eq!(dispatched(&fx)[0].target, Target::Embeddings);
    let fx = callout(&mut m, Some(200), &embedding_reply(&[1.0, 0.0]));
    assert!(String::from_utf8_lossy(&dispatched(&fx)[0].body).contains("VADD"));
    let fx = callout(&mut m, Some(200), b":1\r\n");
    assert!(has(&fx, &Effect::ResumeResponse));
}

#[test]
fn gates_refuse_non_200_encoded_and_unfinished_answers() {
    let run = |status: u16, ct: &str, enc: Option<&str>, body: &[u8]| {
        let mut m = machine();
        start(&mut m, &[], BODY);
        callout(&mut m, Some(200), b"$-1\r\n");
        callout(&mut m, Some(200), &embedding_reply(&[1.0, 0.0]));
        callout(&mut m, Some(200), b"*0\r\n:0\r\n*0\r\n");
        let mut fx = Vec::new();
        m.on_response_headers(Some(status), Some(ct), enc, &mut fx);
        let a = m.on_response_body(body, true, 0, &mut fx);
        assert_eq!(a, Action::Continue);
        assert!(dispatched(&fx).is_empty());
        fx
    };
    assert!(has(
        &run(500, "application/json", None, UPSTREAM),
        &Effect::Count(Counter::StoreSkipped(Gate::Status), 1)
    ));
    assert!(has(
        &run(200, "application/json", Some("gzip"), UPSTREAM),
        &Effect::Count(Counter::StoreSkipped(Gate::Encoded), 1)
    ));
    assert!(has(
        &run(200, "text/html", None, UPSTREAM),
        &Effect::Count(Counter::StoreSkipped(Gate::ContentType), 1)
    ));
    let cut = &UPSTREAM[..UPSTREAM.len() - 10];
    assert!(has(
        &run(200, "application/json", None, cut),
        &Effect::Count(Counter::StoreSkipped(Gate::InvalidJson), 1)
    ));
}

#[test]
fn streamed_miss_passes_chunks_and_stores_only_a_complete_stream() {
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
    let sse = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n"
    );
    for complete in [true, false] {
        let mut m = machine();
        start(&mut m, &[], body);
        callout(&mut m, Some(200), b"$-1\r\n");
        callout(&mut m, Some(200), &embedding_reply(&[1.0, 0.0]));
        callout(&mut m, Some(200), b"*0\r\n:0\r\n*0\r\n");
        let mut fx = Vec::new();
        m.on_response_headers(Some(200), Some("text/event-stream"), None, &mut fx);
        let bytes = sse.as_bytes();
        let end = if complete {
            bytes.len()
        } else {
            bytes.len() - 16
        };
        for chunk in bytes[..end].chunks(7) {
            assert_eq!(
                m.on_response_body(chunk, false, 0, &mut fx),
                Action::Continue
            );
        }
        let a = m.on_response_body(b"", true, 0, &mut fx);
        if complete {
            assert_eq!(a, Action::Pause);
            assert!(String::from_utf8_lossy(&dispatched(&fx)[0].body).contains("Hello"));
        } else {
            assert_eq!(a, Action::Continue);
            assert!(has(
                &fx,
                &Effect::Count(Counter::StoreSkipped(Gate::Incomplete), 1)
            ));
        }
    }
}

#[test]
fn stream_hit_replays_sse() {
    let body = br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"What is the capital of France?"}]}"#;
    let mut m = machine();
    start(&mut m, &[], body);
    let e = entry_json(
        "What is the capital of France?",
        "Paris is the capital of France.",
    );
    let fx = callout(&mut m, Some(200), bulk(&e).as_bytes());
    let (h, body) = local_reply(&fx).unwrap();
    assert_eq!(hdr(h, "content-type"), Some("text/event-stream"));
    let mut a = Assembler::new(ApiKind::Chat, 1 << 20);
    a.feed(body);
    let c = a.finish().unwrap();
    assert_eq!(c.content, "Paris is the capital of France.");
    assert_eq!(c.usage.unwrap()["completion_tokens"], 7);
}

#[test]
fn not_ours_is_untouched_and_bad_bodies_bypass() {
    let mut m = machine();
    let h = headers(&[]);
    let mut fx = Vec::new();
    let a = m.on_request_headers(
        &RequestHead {
            method: "POST",
            path: "/v1/embeddings",
            headers: &h,
            attributes: vec![],
        },
        &mut fx,
    );
    assert_eq!(a, Action::Continue);
    assert!(fx.is_empty());
    m.on_response_headers(Some(200), None, None, &mut fx);
    assert!(fx.is_empty());

    for bad in [
        &b"{not json"[..],
        b"\xff\xfe",
        br#"{"model":"m","n":3,"messages":[{"role":"user","content":"x"}]}"#,
    ] {
        let mut m = machine();
        let (a, fx) = start(&mut m, &[], bad);
        assert_eq!(a, Action::Continue);
        assert!(has(&fx, &Effect::Count(Counter::Bypass, 1)));
    }
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let mut m = machine();
        let h = vec![("content-type".to_string(), ct.to_string())];
        let mut fx = Vec::new();
        m.on_request_headers(
            &RequestHead {
                method: "POST",
                path: "/v1/chat/completions",
                headers: &h,
                attributes: vec![],
            },
            &mut fx,
        );
        assert!(has(&fx, &Effect::Count(Counter::Bypass, 1)), "{ct}");
        assert!(!m.reading_body());
    }
    let many: Vec<String> = (0..101)
        .map(|i| format!(r#"{{"role":"user","content":"m{i}"}}"#))
        .collect();
    let huge = format!(r#"{{"model":"m","messages":[{}]}}"#, many.join(","));
    let (_, fx) = start(&mut machine(), &[], huge.as_bytes());
    assert!(
        has(&fx, &Effect::Count(Counter::Bypass, 1)),
        "over the default max_message_count"
    );
    let mut m = machine_with(&CFG.replace(
        "\"score_threshold\":0.2",
        "\"score_threshold\":0.2,\"max_message_count\":1",
    ));
    let two = br#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}"#;
    let (a, _) = start(&mut m, &[], two);
    assert_eq!(a, Action::Continue);
}

#[test]
fn without_a_semantic_tier_the_exact_lookup_carries_the_expiry_scan() {
    let mut m = machine_with(
        r#"{"embeddings":{"cluster":"emb","model":"minilm"},"bridge":{"cluster":"br","token":"tok"},
            "semantic_match":false,"local_cache":{"entries":0}}"#,
    );
    let (_, fx) = start(&mut m, &[], BODY);
    let exact = String::from_utf8_lossy(&dispatched(&fx)[0].body).into_owned();
    assert!(
        exact.contains("VGETATTR") && exact.contains("ZRANGE"),
        "{exact}"
    );
    let fx = callout(
        &mut m,
        Some(200),
        format!("$-1\r\n*1\r\n{}", bulk("oldid")).as_bytes(),
    );
    assert!(has(&fx, &Effect::Count(Counter::Miss, 1)));
    let mut fx = Vec::new();
    m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
    m.on_response_body(UPSTREAM, true, 0, &mut fx);
    // No vector without a semantic tier: the answer is embedded for the store first.
    let fx = callout(&mut m, Some(200), &embedding_reply(&[1.0, 0.0]));
    let body = String::from_utf8_lossy(&dispatched(&fx)[0].body).into_owned();
    assert!(body.contains("VREM") && body.contains("oldid"), "{body}");
}

#[test]
fn expired_ids_from_the_lookup_are_removed_by_the_store() {
    let mut m = machine();
    start(&mut m, &[], BODY);
    callout(&mut m, Some(200), b"$-1\r\n");
    callout(&mut m, Some(200), &embedding_reply(&[1.0, 0.0]));
    // The expiry scan rides on the semantic lookup: VSIM's reply, then ZRANGE's.
    callout(
        &mut m,
        Some(200),
        format!("*0\r\n:0\r\n*1\r\n{}", bulk("oldid")).as_bytes(),
    );
    let mut fx = Vec::new();
    m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
    m.on_response_body(UPSTREAM, true, 0, &mut fx);
    let body = String::from_utf8_lossy(&dispatched(&fx)[0].body).into_owned();
    assert!(body.contains("VREM") && body.contains("oldid") && body.contains("ZREM"));
}

const LOCAL_CFG: &str = r#"{"embeddings":{"cluster":"emb","model":"minilm"},"bridge":{"cluster":"br","token":"tok"},
    "local_cache":{"entries":64,"ttl_seconds":10}}"#;

fn local_get(fx: &[Effect]) -> Option<&String> {
    fx.iter().find_map(|e| match e {
        Effect::LocalGet(k) => Some(k),
        _ => None,
    })
}

fn local_put(fx: &[Effect]) -> Option<(&String, &Vec<u8>)> {
    fx.iter().find_map(|e| match e {
        Effect::LocalPut(k, v) => Some((k, v)),
        _ => None,
    })
}

/// A request the local tier cannot answer (empty slot), answered by Redis: the slot's key and
/// the value the hit puts there.
fn local_fill_from_redis() -> (String, Vec<u8>) {
    let mut m = machine_with(LOCAL_CFG);
    let (a, fx) = start(&mut m, &[], BODY);
    assert_eq!(a, Action::Pause);
    let key = local_get(&fx)
        .expect("the local tier is asked first")
        .clone();
    assert!(
        dispatched(&fx).is_empty(),
        "no callout before the local tier answered"
    );
    let mut fx = Vec::new();
    m.on_local(None, 1_000_050, &mut fx);
    assert!(String::from_utf8_lossy(&to(&fx, Target::Bridge).body).contains("VGETATTR"));
    let e = entry_json("What is the capital of France?", "Paris.");
    let fx = callout(&mut m, Some(200), bulk(&e).as_bytes());
    assert!(local_reply(&fx).is_some());
    let (put_key, value) = local_put(&fx).expect("a Redis hit fills the local tier");
    assert_eq!(put_key, &key);
    (key, value.clone())
}

#[test]
fn local_tier_is_filled_by_a_redis_exact_hit_and_then_answers_alone() {
    // First request: the local tier is empty, Redis has the entry.
    let (key, value) = local_fill_from_redis();

    // Second request, same prompt: answered from the local tier, no callout at all.
    let mut m = machine_with(LOCAL_CFG);
    let (_, fx) = start(&mut m, &[], BODY);
    assert_eq!(local_get(&fx), Some(&key));
    let mut fx = Vec::new();
    m.on_local(Some(&value), 1_000_200, &mut fx);
    assert!(dispatched(&fx).is_empty());
    let (h, body) = local_reply(&fx).expect("served locally");
    assert_eq!(hdr(h, "x-semcache-match"), Some("exact"));
    assert!(String::from_utf8_lossy(body).contains("Paris."));
    assert!(has(&fx, &Effect::Count(Counter::HitLocal, 1)));
    assert!(has(&fx, &Effect::Count(Counter::HitExact, 1)));

    // After local_cache.ttl_seconds the copy is not trusted: Redis is asked again.
    let mut m = machine_with(LOCAL_CFG);
    start(&mut m, &[], BODY);
    let mut fx = Vec::new();
    m.on_local(Some(&value), 1_000_100 + 10_000, &mut fx);
    assert!(local_reply(&fx).is_none());
    assert!(String::from_utf8_lossy(&to(&fx, Target::Bridge).body).contains("VGETATTR"));
}

#[test]
fn local_tier_never_serves_another_id_or_an_expired_entry() {
    let mut m = machine_with(LOCAL_CFG);
    let (_, fx) = start(&mut m, &[], BODY);
    assert!(local_get(&fx).is_some());
    // The slot holds another id's entry (a collision): not served.
    let other = local::encode(
        "0123456789abcdef0123456789abcdef",
        1_000_000,
        None,
        &Entry::from_json(entry_json("Another question", "Other.").as_bytes())
            .unwrap()
            .to_json(),
    );
    let mut fx = Vec::new();
    m.on_local(Some(&other), 1_000_100, &mut fx);
    assert!(local_reply(&fx).is_none());
    to(&fx, Target::Bridge); // on to Redis

    // This id's entry, fetched recently, but past the entry's own expiry: not served.
    let (key, value) = local_fill_from_redis();
    let mut m = machine_with(LOCAL_CFG);
    let (_, fx) = start(&mut m, &[], BODY);
    assert_eq!(local_get(&fx), Some(&key));
    let mut fx = Vec::new();
    m.on_local(Some(&value), 5_000_000, &mut fx);
    assert!(local_reply(&fx).is_none());
}

#[test]
fn local_tier_is_on_by_default_off_at_zero_and_skips_oversized_entries() {
    let mut m = machine_with(
        r#"{"embeddings":{"cluster":"emb","model":"minilm"},"bridge":{"cluster":"br","token":"tok"}}"#,
    );
    let (_, fx) = start(&mut m, &[], BODY);
    assert!(local_get(&fx).is_some(), "on without a local_cache field");

    let mut m = machine();
    let (_, fx) = start(&mut m, &[("x-tenant", "t1")], BODY);
    assert!(local_get(&fx).is_none(), "off with entries 0");
    let fx = callout(&mut m, Some(200), bulk(&entry_json("q", "a")).as_bytes());
    assert!(local_put(&fx).is_none());

    let mut m = machine_with(
        r#"{"embeddings":{"cluster":"emb","model":"minilm"},"bridge":{"cluster":"br","token":"tok"},
            "local_cache":{"entries":64,"max_entry_bytes":256}}"#,
    );
    start(&mut m, &[], BODY);
    let mut fx = Vec::new();
    m.on_local(None, 1_000_050, &mut fx);
    let big = entry_json("What is the capital of France?", &"x".repeat(400));
    let fx = callout(&mut m, Some(200), bulk(&big).as_bytes());
    assert!(local_reply(&fx).is_some());
    assert!(
        local_put(&fx).is_none(),
        "over max_entry_bytes: not kept locally"
    );
}

/// A semantic hit through Redis with the local tier on (`cfg`): the effects of the search's
/// answer and the slot's key.
fn local_semantic_hit(cfg: &str) -> (Vec<Effect>, String) {
    let mut m = machine_with(cfg);
    let (_, fx) = start(&mut m, &[], BODY);
    let key = local_get(&fx)
        .expect("the local tier is asked first")
        .clone();
    m.on_local(None, 1_000_050, &mut Vec::new());
    let fx = semantic(&mut m, "Tell me the capital of France.", "0.96");
    assert_eq!(
        hdr(
            local_reply(&fx).expect("a semantic hit").0,
            "x-semcache-match"
        ),
        Some("semantic")
    );
    (fx, key)
}

#[test]
fn a_repeated_paraphrase_is_answered_by_the_local_tier_as_the_semantic_hit_it_was() {
    let (fx, key) = local_semantic_hit(LOCAL_CFG);
    let (put_key, value) = local_put(&fx).expect("the semantic hit is kept under the query's key");
    assert_eq!(put_key, &key);

    // The same query again: no embedding, no search, the same answer, still called semantic.
    let mut m = machine_with(LOCAL_CFG);
    let (_, fx) = start(&mut m, &[], BODY);
    assert_eq!(local_get(&fx), Some(&key));
    let mut fx = Vec::new();
    m.on_local(Some(value), 1_000_200, &mut fx);
    assert!(dispatched(&fx).is_empty(), "{fx:?}");
    let (h, body) = local_reply(&fx).expect("served locally");
    assert_eq!(hdr(h, "x-semcache-match"), Some("semantic"));
    assert_eq!(hdr(h, "x-semcache-distance"), Some("0.0800"));
    assert!(String::from_utf8_lossy(body).contains("Paris."));
    assert!(has(&fx, &Effect::Count(Counter::HitLocal, 1)));
    assert!(has(&fx, &Effect::Count(Counter::HitSemantic, 1)));
    assert!(!has(&fx, &Effect::Count(Counter::HitExact, 1)));
    assert!(has(&fx, &Effect::Record(Histogram::HitDistance, 800)));

    // Past local_cache.ttl_seconds the search is asked again.
    let mut m = machine_with(LOCAL_CFG);
    start(&mut m, &[], BODY);
    let mut fx = Vec::new();
    m.on_local(Some(value), 1_000_100 + 10_000, &mut fx);
    assert!(local_reply(&fx).is_none());
    to(&fx, Target::Bridge);
}

#[test]
fn semantic_hits_off_keeps_none_and_serves_none_kept_before() {
    let off = r#"{"embeddings":{"cluster":"emb","model":"minilm"},"bridge":{"cluster":"br","token":"tok"},
        "local_cache":{"entries":64,"ttl_seconds":10,"semantic_hits":false}}"#;
    let (fx, _) = local_semantic_hit(off);
    assert!(local_put(&fx).is_none(), "{fx:?}");

    // A copy kept while it was on (another route, an older config) is not served once off.
    let (fx, _) = local_semantic_hit(LOCAL_CFG);
    let (_, value) = local_put(&fx).expect("kept while on");
    let mut m = machine_with(off);
    start(&mut m, &[], BODY);
    let mut fx = Vec::new();
    m.on_local(Some(value), 1_000_200, &mut fx);
    assert!(local_reply(&fx).is_none());
    to(&fx, Target::Bridge);
}

#[test]
fn a_semantic_copy_is_served_only_where_the_search_would_serve_it() {
    let (fx, _) = local_semantic_hit(LOCAL_CFG);
    let (_, value) = local_put(&fx).expect("kept");
    let served = |cfg: &str, value: &[u8]| {
        let mut m = machine_with(cfg);
        start(&mut m, &[], BODY);
        let mut fx = Vec::new();
        m.on_local(Some(value), 1_000_200, &mut fx);
        local_reply(&fx).is_some()
    };
    let with = |extra: &str| {
        format!(
            r#"{{"embeddings":{{"cluster":"emb","model":"minilm"}},"bridge":{{"cluster":"br","token":"tok"}},
            "local_cache":{{"entries":64,"ttl_seconds":10}},{extra}}}"#
        )
    };
    assert!(served(LOCAL_CFG, value), "the control: served as kept");
    // Kept at distance 0.08 under the default threshold; a stricter route searches again.
    assert!(!served(&with(r#""score_threshold":0.05"#), value));
    assert!(served(&with(r#""score_threshold":0.09"#), value));
    // An exact-only route never serves a semantic hit.
    assert!(!served(&with(r#""semantic_match":false"#), value));

    // Kept under a route with the guards off: the negation guard vetoes it here.
    let id = std::str::from_utf8(value).unwrap().lines().next().unwrap();
    let negated =
        Entry::from_json(entry_json("What is not the capital of France?", "Lyon.").as_bytes())
            .unwrap()
            .to_json();
    let vetoed = local::encode(id, 1_000_050, Some(0.01), &negated);
    assert!(!served(LOCAL_CFG, &vetoed));
    assert!(served(&with(r#""guards":{"negation":false}"#), &vetoed));
}

/// A miss: the upstream answer, embedded and stored, is kept locally once Redis confirmed the
/// store (so a `no-cache` refresh also replaces an older local copy), and the copy answers the
/// next identical request. A failed store keeps nothing.
#[test]
fn local_tier_keeps_a_stored_answer_once_redis_has_it() {
    let store = |reply: &[u8]| {
        let mut m = machine_with(LOCAL_CFG);
        let (_, fx) = start(&mut m, &[("cache-control", "no-cache")], BODY);
        assert!(local_get(&fx).is_none(), "no-cache skips every lookup");
        m.on_response_headers(Some(200), Some("application/json"), None, &mut Vec::new());
        let mut fx = Vec::new();
        m.on_response_body(UPSTREAM, true, 1_000_100, &mut fx);
        assert_eq!(dispatched(&fx)[0].target, Target::Embeddings);
        assert!(local_put(&fx).is_none());
        let fx = callout(&mut m, Some(200), &embedding_reply(&[1.0, 0.0]));
        assert!(String::from_utf8_lossy(&dispatched(&fx)[0].body).contains("VADD"));
        assert!(local_put(&fx).is_none(), "not before Redis has the entry");
        let fx = callout(&mut m, Some(200), reply);
        assert!(has(&fx, &Effect::ResumeResponse));
        local_put(&fx).map(|(k, v)| (k.clone(), v.clone()))
    };
    assert_eq!(store(b"-ERR oom\r\n"), None, "a failed store keeps nothing");
    let (key, value) = store(b":1\r\n").expect("a confirmed store is kept locally");

    let mut m = machine_with(LOCAL_CFG);
    let (_, fx) = start(&mut m, &[], BODY);
    assert_eq!(local_get(&fx), Some(&key));
    let mut fx = Vec::new();
    m.on_local(Some(&value), 1_000_500, &mut fx);
    let (_, body) = local_reply(&fx).expect("the stored answer is served locally");
    assert!(String::from_utf8_lossy(body).contains("Paris."));
    assert!(dispatched(&fx).is_empty());
}

/// The local tier's slots of two configurations on different bridges never coincide.
#[test]
fn local_tier_keys_differ_per_bridge_cluster() {
    let key = |cluster: &str| {
        let mut m = machine_with(
            &LOCAL_CFG.replace(r#""cluster":"br""#, &format!(r#""cluster":"{cluster}""#)),
        );
        let (_, fx) = start(&mut m, &[], BODY);
        local_get(&fx).expect("asked").clone()
    };
    assert_ne!(key("redis_a"), key("redis_b"));
}

/// A VSIM reply (plus the expiry scan's) with one candidate at `score`.
fn vsim_reply(cached_prompt: &str, score: &str) -> Vec<u8> {
    let e = entry_json(cached_prompt, "Paris.");
    format!(
        "*3\r\n{}{}{}:1\r\n*0\r\n",
        bulk("abc"),
        bulk(score),
        bulk(&e)
    )
    .into_bytes()
}

#[test]
fn the_embedding_starts_with_the_exact_lookup_and_a_semantic_hit_waits_for_neither_twice() {
    // Embedding back first: the exact miss goes straight on to the vector search.
    let mut m = machine();
    let (_, fx) = start(&mut m, &[("x-tenant", "t1")], BODY);
    let c = dispatched(&fx);
    assert_eq!(
        c.iter().map(|c| c.target).collect::<Vec<_>>(),
        [Target::Embeddings, Target::Bridge],
        "the embedding, the longer wait, leaves first"
    );
    assert!(has(&fx, &Effect::Count(Counter::Speculated, 1)));
    let fx = callout_from(
        &mut m,
        Target::Embeddings,
        Some(200),
        &embedding_reply(&[0.6, 0.8]),
    );
    assert!(
        dispatched(&fx).is_empty(),
        "still waiting for the exact lookup"
    );
    assert!(has(&fx, &Effect::Record(Histogram::EmbeddingMs, 100)));
    let fx = callout_from(&mut m, Target::Bridge, Some(200), b"$-1\r\n");
    let c = dispatched(&fx);
    assert_eq!(c.len(), 1);
    assert!(String::from_utf8_lossy(&c[0].body).contains("VSIM"));
    let fx = callout(
        &mut m,
        Some(200),
        &vsim_reply("Tell me the capital of France.", "0.96"),
    );
    let (h, _) = local_reply(&fx).expect("semantic hit");
    assert_eq!(hdr(h, "x-semcache-match"), Some("semantic"));

    // Exact miss back first: the machine waits for the embedding already on its way.
    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    let fx = callout_from(&mut m, Target::Bridge, Some(200), b"$-1\r\n");
    assert!(dispatched(&fx).is_empty(), "no second embedding");
    assert_eq!(m.awaiting(), Some(Target::Embeddings));
    let fx = callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
    assert!(String::from_utf8_lossy(&dispatched(&fx)[0].body).contains("VSIM"));
}

#[test]
fn an_exact_hit_or_failure_forgets_the_speculative_embedding() {
    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    let e = entry_json("What is the capital of France?", "Paris.");
    let fx = callout_from(&mut m, Target::Bridge, Some(200), bulk(&e).as_bytes());
    assert!(local_reply(&fx).is_some());
    assert!(has(&fx, &Effect::Forget(Target::Embeddings)));
    assert!(has(&fx, &Effect::Count(Counter::SpeculationUnused, 1)));
    // Should its answer still arrive, nothing happens.
    let fx = callout_from(
        &mut m,
        Target::Embeddings,
        Some(200),
        &embedding_reply(&[0.6, 0.8]),
    );
    assert!(fx.is_empty(), "{fx:?}");

    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    let fx = callout_from(&mut m, Target::Bridge, Some(503), b"");
    assert!(has(&fx, &Effect::Forget(Target::Embeddings)));
    assert!(has(&fx, &Effect::Count(Counter::ErrorLookup, 1)));
    assert!(has(&fx, &Effect::Count(Counter::SpeculationUnused, 1)));
    assert!(has(&fx, &Effect::ResumeRequest));
    assert!(dispatched(&fx).is_empty());

    // The embedding failed first, then the exact lookup missed: fail open as an embedding error.
    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    let fx = callout_from(&mut m, Target::Embeddings, None, b"");
    assert!(fx.iter().all(|e| !matches!(e, Effect::ResumeRequest)));
    let fx = callout_from(&mut m, Target::Bridge, Some(200), b"$-1\r\n");
    assert!(has(&fx, &Effect::Count(Counter::ErrorEmbeddings, 1)));
    assert!(has(&fx, &Effect::ResumeRequest));
    assert!(
        !has(&fx, &Effect::Forget(Target::Embeddings)),
        "nothing left to forget"
    );
    assert!(
        !has(&fx, &Effect::Count(Counter::SpeculationUnused, 1)),
        "the embedding was needed (and failed)"
    );
}

#[test]
fn a_run_of_exact_hits_stops_the_speculation_and_misses_bring_it_back() {
    let (c, _) = Config::parse(CFG).unwrap();
    let settings = Rc::new(Settings::resolve(c, &|_| None).unwrap());
    let e = entry_json("What is the capital of France?", "Paris.");
    let targets = |m: &mut Machine| {
        let (_, fx) = start(m, &[("x-tenant", "t1")], BODY);
        dispatched(&fx).iter().map(|c| c.target).collect::<Vec<_>>()
    };
    let mut speculated = 0;
    for _ in 0..10 {
        let mut m = Machine::new(Rc::clone(&settings));
        if targets(&mut m).len() == 2 {
            speculated += 1;
        }
        callout_from(&mut m, Target::Bridge, Some(200), bulk(&e).as_bytes());
    }
    assert_eq!(speculated, 4, "four hits in a row make exact hits common");
    let mut m = Machine::new(Rc::clone(&settings));
    assert_eq!(targets(&mut m), [Target::Bridge]);
    // Without speculation the classic order: embed after the exact miss.
    let fx = callout(&mut m, Some(200), b"$-1\r\n");
    assert_eq!(dispatched(&fx)[0].target, Target::Embeddings);

    // Switched off in the config: never.
    let mut m = machine_with(&CFG.replace(
        "\"score_threshold\"",
        "\"speculative_embedding\":false,\"score_threshold\"",
    ));
    assert_eq!(targets(&mut m), [Target::Bridge]);
}

/// CFG with the default folded exact lookup.
fn fold_cfg() -> String {
    CFG.replace(
        r#""fold_exact_lookup":false"#,
        r#""fold_exact_lookup":true"#,
    )
}

fn fold_machine() -> Machine {
    machine_with(&fold_cfg())
}

fn commands(c: &Callout) -> Vec<String> {
    let n = hdr(&c.headers, "x-semcache-commands")
        .unwrap()
        .parse()
        .unwrap();
    crate::resp::decode_replies(&c.body, n)
        .unwrap()
        .iter()
        .map(|r| match r {
            crate::resp::Reply::Array(a) => {
                String::from_utf8_lossy(a[0].as_bytes().unwrap()).into_owned()
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn folded_the_exact_lookup_rides_on_the_vector_search_after_the_embedding() {
    let mut m = fold_machine();
    let (a, fx) = start(&mut m, &[("x-tenant", "t1")], BODY);
    assert_eq!(a, Action::Pause);
    assert_eq!(dispatched(&fx).len(), 1, "only the embedding: {fx:?}");
    to(&fx, Target::Embeddings);
    assert!(has(&fx, &Effect::Count(Counter::Speculated, 1)));
    let fx = callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
    let lookup = to(&fx, Target::Bridge);
    // The exact lookup first, then the search and its set size, then the expiry scan.
    assert_eq!(commands(lookup), ["VGETATTR", "VSIM", "VCARD", "ZRANGE"]);

    // Nothing under the exact key, one candidate near enough: a semantic hit.
    let mut reply = b"$-1\r\n".to_vec();
    reply.extend(vsim_reply("Tell me the capital of France.", "0.96"));
    let fx = callout(&mut m, Some(200), &reply);
    let (h, _) = local_reply(&fx).expect("semantic hit");
    assert_eq!(hdr(h, "x-semcache-match"), Some("semantic"));
    assert!(has(&fx, &Effect::Count(Counter::HitSemantic, 1)));
    assert!(!has(&fx, &Effect::Count(Counter::SpeculationUnused, 1)));

    // Nothing near either: a miss, stored with the vector it already has (no second embedding).
    let mut m = fold_machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
    let fx = callout(&mut m, Some(200), b"$-1\r\n*0\r\n:0\r\n*0\r\n");
    assert!(has(&fx, &Effect::Count(Counter::Miss, 1)));
    assert!(has(&fx, &Effect::ResumeRequest));
    m.on_response_headers(Some(200), Some("application/json"), None, &mut Vec::new());
    let mut fx = Vec::new();
    assert_eq!(
        m.on_response_body(UPSTREAM, true, 1_000_200, &mut fx),
        Action::Pause
    );
    assert_eq!(commands(to(&fx, Target::Bridge))[0], "VADD");
}

#[test]
fn folded_after_a_local_tier_miss_and_off_by_default() {
    let mut m = machine_with(&LOCAL_CFG.replace("}}", r#"},"fold_exact_lookup":true}"#));
    start(&mut m, &[], BODY);
    let mut fx = Vec::new();
    m.on_local(None, 1_000_050, &mut fx);
    assert_eq!(dispatched(&fx).len(), 1, "the embedding alone: {fx:?}");
    let fx = callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
    assert_eq!(commands(to(&fx, Target::Bridge))[0], "VGETATTR");

    // Without the setting the exact lookup goes beside the embedding, as before.
    let mut m = machine_with(LOCAL_CFG);
    start(&mut m, &[], BODY);
    let mut fx = Vec::new();
    m.on_local(None, 1_000_050, &mut fx);
    assert_eq!(commands(to(&fx, Target::Bridge)), ["VGETATTR"]);
    to(&fx, Target::Embeddings);
}

#[test]
fn folded_an_exact_hit_in_redis_is_served_exact_and_its_embedding_counted_unused() {
    let mut m = fold_machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
    let e = entry_json("What is the capital of France?", "Paris.");
    // The search found a near candidate too; the exact entry wins.
    let mut reply = bulk(&e).into_bytes();
    reply.extend(vsim_reply("Tell me the capital of France.", "0.96"));
    let fx = callout(&mut m, Some(200), &reply);
    let (h, body) = local_reply(&fx).expect("exact hit");
    assert_eq!(hdr(h, "x-semcache-match"), Some("exact"));
    assert!(String::from_utf8_lossy(body).contains("Paris."));
    assert!(has(&fx, &Effect::Count(Counter::HitExact, 1)));
    assert!(has(&fx, &Effect::Count(Counter::SpeculationUnused, 1)));
    assert!(!has(&fx, &Effect::Count(Counter::HitSemantic, 1)));

    // A Redis error in the exact reply fails the lookup open, like any lookup error.
    let mut m = fold_machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
    let mut reply = b"-ERR busy\r\n".to_vec();
    reply.extend(vsim_reply("Tell me the capital of France.", "0.96"));
    let fx = callout(&mut m, Some(200), &reply);
    assert!(local_reply(&fx).is_none());
    assert!(has(&fx, &Effect::Count(Counter::ErrorLookup, 1)));
    assert!(has(&fx, &Effect::ResumeRequest));
}

#[test]
fn folded_with_the_embedder_down_the_exact_lookup_goes_alone() {
    // The exact tier still answers while the embedder fails.
    let mut m = fold_machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    let fx = callout(&mut m, Some(503), b"");
    assert!(has(&fx, &Effect::Count(Counter::ErrorEmbeddings, 1)));
    assert!(
        !has(&fx, &Effect::ResumeRequest),
        "not before the exact lookup"
    );
    assert_eq!(commands(to(&fx, Target::Bridge)), ["VGETATTR"]);
    let e = entry_json("What is the capital of France?", "Paris.");
    let fx = callout(&mut m, Some(200), bulk(&e).as_bytes());
    let (h, _) = local_reply(&fx).expect("exact hit without an embedder");
    assert_eq!(hdr(h, "x-semcache-match"), Some("exact"));

    // Its miss goes upstream labelled error, counted once, and is not stored.
    let mut m = fold_machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    callout(&mut m, None, b"");
    let fx = callout(&mut m, Some(200), b"$-1\r\n");
    assert!(has(&fx, &Effect::ResumeRequest));
    assert!(
        !has(&fx, &Effect::Count(Counter::ErrorEmbeddings, 1)),
        "counted once"
    );
    assert!(
        dispatched(&fx).is_empty(),
        "the embedder is not asked again"
    );
    assert!(!m.needs_response_head(), "not stored");
    let fx = upstream_json_head(&mut m);
    assert!(sets_header(&fx, "x-semcache-status", "error"));
}

#[test]
fn folded_exact_hits_in_redis_make_the_exact_lookup_go_first_again() {
    let (c, _) = Config::parse(&fold_cfg()).unwrap();
    let settings = Rc::new(Settings::resolve(c, &|_| None).unwrap());
    let e = entry_json("What is the capital of France?", "Paris.");
    let mut folded = 0;
    for _ in 0..10 {
        let mut m = Machine::new(Rc::clone(&settings));
        let (_, fx) = start(&mut m, &[("x-tenant", "t1")], BODY);
        if dispatched(&fx)[0].target == Target::Embeddings {
            folded += 1;
            callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
            let mut reply = bulk(&e).into_bytes();
            reply.extend(b"*0\r\n:0\r\n*0\r\n");
            callout(&mut m, Some(200), &reply);
        } else {
            assert_eq!(
                dispatched(&fx).len(),
                1,
                "exact first, no speculation either"
            );
            callout(&mut m, Some(200), bulk(&e).as_bytes());
        }
    }
    assert_eq!(folded, 4, "four exact hits in a row make them common");
}

#[test]
fn candidates_are_decoded_in_order_skipping_unreadable_and_expired_ones() {
    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    callout(&mut m, Some(200), b"$-1\r\n");
    callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
    let expired = Entry {
        expires_at: 1_000_000, // before the callout's now (1_000_100)
        ..Entry::from_json(entry_json("Capital of France?", "Old.").as_bytes()).unwrap()
    };
    let live = crate::packed::pack(
        &Entry::from_json(entry_json("Tell me the capital of France.", "Paris.").as_bytes())
            .unwrap(),
    );
    let mut wire = b"*12\r\n".to_vec();
    for (id, score, stored) in [
        ("old", "0.99", expired.to_json().into_bytes()),
        ("bad", "0.98", b"Znot deflate".to_vec()),
        ("new", "0.96", live),
        ("far", "0.50", b"never decoded".to_vec()),
    ] {
        wire.extend(bulk(id).as_bytes());
        wire.extend(bulk(score).as_bytes());
        wire.extend(format!("${}\r\n", stored.len()).as_bytes());
        wire.extend(&stored);
        wire.extend(b"\r\n");
    }
    wire.extend(b":4\r\n*0\r\n"); // VCARD, then the expiry scan

    let fx = callout(&mut m, Some(200), &wire);
    let (h, body) = local_reply(&fx).expect("the live candidate is served");
    assert_eq!(hdr(h, "x-semcache-distance"), Some("0.0800"));
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Paris.");
    assert!(fx
        .iter()
        .all(|e| !matches!(e, Effect::Count(Counter::Vetoed(_), _))));

    // The expired one is collected for the next store to remove.
    let mut m = machine();
    start(&mut m, &[("x-tenant", "t1")], BODY);
    callout(&mut m, Some(200), b"$-1\r\n");
    callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
    let stored = expired.to_json();
    callout(
        &mut m,
        Some(200),
        format!(
            "*3\r\n{}{}{}:1\r\n*0\r\n",
            bulk("old"),
            bulk("0.99"),
            bulk(&stored)
        )
        .as_bytes(),
    );
    let mut fx = Vec::new();
    m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
    m.on_response_body(UPSTREAM, true, 0, &mut fx);
    let body = String::from_utf8_lossy(&dispatched(&fx)[0].body).into_owned();
    assert!(body.contains("VREM") && body.contains("old"), "{body}");
}

#[test]
fn compress_entries_decides_the_stored_form() {
    let answer = "Paris is the capital of France, and the capital of France is Paris. ".repeat(8);
    let upstream = serde_json::json!({"object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
        "finish_reason": "stop"}]})
    .to_string();
    let stored = |cfg: &str| {
        let mut m = machine_with(cfg);
        start(&mut m, &[("x-tenant", "t1")], BODY);
        callout(&mut m, Some(200), b"$-1\r\n");
        callout(&mut m, Some(200), &embedding_reply(&[0.6, 0.8]));
        callout(&mut m, Some(200), b"*0\r\n:0\r\n*0\r\n");
        let mut fx = Vec::new();
        m.on_response_headers(Some(200), Some("application/json"), None, &mut fx);
        m.on_response_body(upstream.as_bytes(), true, 0, &mut fx);
        let cmds = crate::resp::decode_replies(&dispatched(&fx)[0].body, 6).unwrap();
        let crate::resp::Reply::Array(args) = &cmds[0] else {
            panic!("{cmds:?}")
        };
        let args: Vec<&[u8]> = args.iter().filter_map(|a| a.as_bytes()).collect();
        args[args.iter().position(|a| *a == b"SETATTR").unwrap() + 1].to_vec()
    };
    let deflated = stored(CFG);
    let plain = stored(&CFG.replace(
        "\"score_threshold\"",
        "\"compress_entries\":false,\"score_threshold\"",
    ));
    assert_eq!(deflated[0], b'Z');
    assert_eq!(plain[0], b'{');
    assert!(deflated.len() < plain.len());
    assert_eq!(
        crate::packed::unpack(&deflated),
        crate::packed::unpack(&plain)
    );
}
