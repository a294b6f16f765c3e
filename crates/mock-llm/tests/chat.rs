//! Chat completions, legacy completions and the Azure path.

mod common;

use common::{chat_body, content_of, sse_json, Server};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

#[test]
fn same_request_same_answer_any_change_changes_it() {
    let s = Server::start();
    let conv = [
        ("system", "You are terse."),
        ("user", "What is Redis?"),
        ("assistant", "A key-value store."),
        ("user", "And RediSearch?"),
    ];
    let a = s.post(CHAT, &chat_body("gpt-4o", &conv), &[]);
    let b = s.post(CHAT, &chat_body("gpt-4o", &conv), &[]);
    assert_eq!(a.status, 200);
    assert_eq!(content_of(&a.json()), content_of(&b.json()));
    // Each served response has its own id, so a replayed body is recognisable.
    assert_ne!(a.json()["id"], b.json()["id"]);

    let answer = content_of(&a.json());
    assert!(
        answer.starts_with("Mock answer to: And RediSearch?"),
        "{answer}"
    );
    assert!(
        (300..=1000).contains(&answer.len()),
        "{} bytes",
        answer.len()
    );

    let mut earlier = conv;
    earlier[0].1 = "You are verbose.";
    let c = s.post(CHAT, &chat_body("gpt-4o", &earlier), &[]);
    assert_ne!(content_of(&a.json()), content_of(&c.json()));
    let d = s.post(CHAT, &chat_body("gpt-4o-mini", &conv), &[]);
    assert_ne!(content_of(&a.json()), content_of(&d.json()));
    assert_eq!(
        a.header("x-mock-request-hash"),
        b.header("x-mock-request-hash")
    );
}

#[test]
fn response_is_a_chat_completion_with_usage() {
    let s = Server::start();
    let r = s.post(CHAT, &chat_body("gpt-4o", &[("user", "hello there")]), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["finish_reason"], "stop");

    let u = &v["usage"];
    let (p, c, t) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
        u["total_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0);
    assert_eq!(t, p + c);
    // Deterministic, and growing with the prompt.
    let again = s.post(CHAT, &chat_body("gpt-4o", &[("user", "hello there")]), &[]);
    assert_eq!(again.json()["usage"], v["usage"]);
    let longer = s.post(
        CHAT,
        &chat_body("gpt-4o", &[("user", &"many words here ".repeat(50))]),
        &[],
    );
    assert!(longer.json()["usage"]["prompt_tokens"].as_u64().unwrap() > p);
}

fn stream_body(model: &str, question: &str, include_usage: bool) -> Value {
    let mut b = chat_body(model, &[("user", question)]);
    b["stream"] = json!(true);
    if include_usage {
        b["stream_options"] = json!({ "include_usage": true });
    }
    b
}

#[test]
fn stream_is_sse_and_matches_the_non_stream_answer() {
    let s = Server::start();
    let r = s.post(CHAT, &stream_body("gpt-4o", "Explain caching", true), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.complete);
    // One HTTP chunk per event: each frame is exactly one `data: ...\n\n`.
    for c in &r.chunks {
        let c = std::str::from_utf8(c).unwrap();
        assert!(c.starts_with("data: ") && c.ends_with("\n\n"), "{c:?}");
        assert_eq!(c.matches("\n\n").count(), 1, "{c:?}");
    }

    let (events, done) = sse_json(&r.text());
    assert!(done, "ends with [DONE]");
    let id = events[0]["id"].clone();
    for e in &events {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert_eq!(e["id"], id);
        assert_eq!(e["model"], "gpt-4o");
    }
    let role = &events[0]["choices"][0];
    assert_eq!(role["delta"], json!({ "role": "assistant", "content": "" }));
    assert!(role["finish_reason"].is_null());

    let usage_chunk = events.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let finish = &events[events.len() - 2]["choices"][0];
    assert_eq!(finish["delta"], json!({}));
    assert_eq!(finish["finish_reason"], "stop");

    let content_chunks = &events[1..events.len() - 2];
    assert!(content_chunks.len() >= 3, "{} chunks", content_chunks.len());
    let streamed: String = content_chunks
        .iter()
        .map(|e| e["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();

    let plain = s.post(
        CHAT,
        &chat_body("gpt-4o", &[("user", "Explain caching")]),
        &[],
    );
    assert_eq!(streamed, content_of(&plain.json()));
    assert_eq!(usage_chunk["usage"], plain.json()["usage"]);
    // Other chunks carry `usage: null` when usage was asked for.
    assert!(events[..events.len() - 1]
        .iter()
        .all(|e| e.get("usage") == Some(&Value::Null)));

    let st = s.stats();
    assert_eq!(st["streams_completed"], 1);
    assert_eq!(st["chat_requests"], 2);
}

#[test]
fn stream_without_include_usage_has_no_usage() {
    let s = Server::start();
    let r = s.post(CHAT, &stream_body("m", "q", false), &[]);
    let (events, done) = sse_json(&r.text());
    assert!(done);
    assert!(events.iter().all(|e| e.get("usage").is_none()));
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[test]
fn azure_path_uses_the_deployment_as_model() {
    let s = Server::start();
    let path = "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21";
    let body = json!({ "messages": [{ "role": "user", "content": "hi" }] });
    let r = s.post(path, &body, &[("api-key", "k")]);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["model"], "my-gpt");
    assert_eq!(v["object"], "chat.completion");
    // Same canonical request as on the OpenAI path, same answer.
    let openai = s.post(CHAT, &chat_body("my-gpt", &[("user", "hi")]), &[]);
    assert_eq!(content_of(&v), content_of(&openai.json()));

    let with_model = s.post(path, &chat_body("gpt-4o", &[("user", "hi")]), &[]);
    assert_eq!(with_model.json()["model"], "gpt-4o");

    let no_version = s.post("/openai/deployments/my-gpt/chat/completions", &body, &[]);
    assert_eq!(no_version.status, 400);

    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let streamed = s.post(path, &sb, &[]);
    let (events, done) = sse_json(&streamed.text());
    assert!(done);
    assert_eq!(events[0]["model"], "my-gpt");

    let st = s.stats();
    assert_eq!(st["azure_requests"], 4);
    assert_eq!(st["chat_requests"], 5);
}

#[test]
fn legacy_completions_string_array_and_stream() {
    let s = Server::start();
    let r = s.post(
        "/v1/completions",
        &json!({ "model": "gpt-3.5-turbo-instruct", "prompt": "Say hi" }),
        &[],
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let text = v["choices"][0]["text"].as_str().unwrap().to_owned();
    assert!(text.contains("Say hi"), "{text}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );

    let arr = s.post(
        "/v1/completions",
        &json!({ "model": "gpt-3.5-turbo-instruct", "prompt": ["Say hi", "Say bye"] }),
        &[],
    );
    let choices = arr.json()["choices"].as_array().unwrap().clone();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["text"].as_str().unwrap(), text);
    assert_eq!(choices[1]["index"], 1);
    assert_ne!(choices[1]["text"], choices[0]["text"]);

    let st = s.post(
        "/v1/completions",
        &json!({ "model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "stream": true,
                 "stream_options": { "include_usage": true } }),
        &[],
    );
    let (events, done) = sse_json(&st.text());
    assert!(done);
    assert!(events.iter().all(|e| e["object"] == "text_completion"));
    let streamed: String = events
        .iter()
        .filter(|e| e["choices"][0]["finish_reason"].is_null())
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, text);
    let n = events.len();
    assert_eq!(events[n - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[n - 1]["choices"], json!([]));
    assert_eq!(events[n - 1]["usage"], v["usage"]);

    assert_eq!(s.stats()["completions_requests"], 3);
}

#[test]
fn malformed_requests_get_openai_errors() {
    let s = Server::start();
    let check = |r: common::Resp, status: u16| {
        assert_eq!(r.status, status, "{}", r.text());
        let v = r.json();
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(v["error"]["type"].is_string());
    };
    check(s.post_raw(CHAT, b"{\"model\": ", &[]), 400);
    check(s.post(CHAT, &json!({ "model": "m" }), &[]), 400);
    check(
        s.post(CHAT, &json!({ "model": "m", "messages": [] }), &[]),
        400,
    );
    check(
        s.post(CHAT, &json!({ "model": "m", "messages": "hi" }), &[]),
        400,
    );
    check(
        s.post(
            CHAT,
            &json!({ "messages": [{"role":"user","content":"x"}] }),
            &[],
        ),
        400,
    );
    check(
        s.post(
            CHAT,
            &json!({ "model": "m", "messages": [{"content":"x"}] }),
            &[],
        ),
        400,
    );
    check(
        s.post("/v1/completions", &json!({ "model": "m" }), &[]),
        400,
    );
    check(
        s.post(
            CHAT,
            &chat_body("m", &[("user", "x")]),
            &[("x-mock-status", "nope")],
        ),
        400,
    );
    check(s.get("/v1/unknown"), 404);
    assert_eq!(s.stats()["bad_requests"], 8);
}

#[test]
fn multipart_content_is_quoted() {
    let s = Server::start();
    let body = json!({ "model": "m", "messages": [{ "role": "user", "content": [
        { "type": "text", "text": "part one" }, { "type": "text", "text": "part two" } ] }] });
    let r = s.post(CHAT, &body, &[]);
    assert!(content_of(&r.json()).starts_with("Mock answer to: part one part two"));
}
