//! Per-request `x-mock-*` switches.

mod common;

use std::io::Write;

use common::{chat_body, content_of, gunzip, sse_json, Chunk, Server};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

fn stream_body(q: &str) -> Value {
    let mut b = chat_body("gpt-4o", &[("user", q)]);
    b["stream"] = json!(true);
    b
}

fn event_json(chunk: &[u8]) -> Value {
    let s = std::str::from_utf8(chunk).unwrap();
    let data = s
        .strip_prefix("data: ")
        .and_then(|d| d.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one SSE event: {s:?}"));
    serde_json::from_str(data).unwrap()
}

#[test]
fn status_switch_returns_openai_errors() {
    let s = Server::start();
    let r = s.post(
        CHAT,
        &chat_body("m", &[("user", "q")]),
        &[("x-mock-status", "500")],
    );
    assert_eq!(r.status, 500);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["error"]["type"], "server_error");
    assert!(v["error"]["message"].is_string());
    assert!(r.header("retry-after").is_none());

    let r = s.post(CHAT, &stream_body("q"), &[("x-mock-status", "429")]);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");

    let r = s.post(
        CHAT,
        &chat_body("m", &[("user", "q")]),
        &[("x-mock-status", "429"), ("x-mock-retry-after", "7")],
    );
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(s.stats()["errors_injected"], 3);
}

#[test]
fn truncated_stream_is_cut_without_finish_or_done() {
    let s = Server::start();
    let r = s.post(CHAT, &stream_body("cut me"), &[("x-mock-truncate", "2")]);
    assert_eq!(r.status, 200);
    assert!(!r.complete, "the chunked body must not end properly");
    let (events, done) = sse_json(&r.text());
    assert!(!done);
    assert_eq!(events.len(), 3, "role chunk + 2 content chunks");
    assert!(events
        .iter()
        .all(|e| e["choices"][0]["finish_reason"].is_null()));
    let st = s.stats();
    assert_eq!(st["streams_aborted"], 1);
    assert_eq!(st["streams_completed"], 0);
}

#[test]
fn truncated_json_body_is_shorter_than_its_content_length() {
    let s = Server::start();
    let r = s.post(
        CHAT,
        &chat_body("m", &[("user", "q")]),
        &[("x-mock-truncate", "1")],
    );
    assert_eq!(r.status, 200);
    assert!(!r.complete);
    let declared: usize = r.header("content-length").unwrap().parse().unwrap();
    assert!(!r.body.is_empty() && r.body.len() < declared);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    assert_eq!(s.stats()["truncated_responses"], 1);
}

#[test]
fn tool_calls_switch() {
    let s = Server::start();
    let mut body = chat_body("m", &[("user", "weather in Paris?")]);
    body["tools"] = json!([{ "type": "function",
        "function": { "name": "get_weather", "parameters": { "type": "object" } } }]);
    let r = s.post(CHAT, &body, &[("x-mock-tool-calls", "1")]);
    let v = r.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap())
        .expect("arguments are JSON");
    assert_eq!(args["query"], "weather in Paris?");

    body["stream"] = json!(true);
    let r = s.post(CHAT, &body, &[("x-mock-tool-calls", "1")]);
    let (events, done) = sse_json(&r.text());
    assert!(done);
    let first = &events[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert_eq!(first["tool_calls"][0]["id"], call["id"]);
    assert_eq!(first["tool_calls"][0]["function"]["name"], "get_weather");
    let streamed_args: String = events[1..]
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert!(events.len() > 3);
    assert_eq!(
        streamed_args,
        call["function"]["arguments"].as_str().unwrap()
    );
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[test]
fn finish_reason_switch() {
    let s = Server::start();
    let h = [("x-mock-finish-reason", "length")];
    let r = s.post(CHAT, &chat_body("m", &[("user", "q")]), &h);
    assert_eq!(r.json()["choices"][0]["finish_reason"], "length");
    let r = s.post(CHAT, &stream_body("q"), &h);
    let (events, _) = sse_json(&r.text());
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    let r = s.post(
        "/v1/completions",
        &json!({ "model": "m", "prompt": "p" }),
        &h,
    );
    assert_eq!(r.json()["choices"][0]["finish_reason"], "length");
}

#[test]
fn gzip_forced_accepted_and_refused() {
    let s = Server::start();
    let body = chat_body("m", &[("user", "zip it")]);
    let plain = s.post(CHAT, &body, &[]);
    assert!(plain.header("content-encoding").is_none());

    let forced = s.post(CHAT, &body, &[("x-mock-gzip", "1")]);
    assert_eq!(forced.header("content-encoding"), Some("gzip"));
    let decoded: Value = serde_json::from_slice(&gunzip(&forced.body)).unwrap();
    assert_eq!(content_of(&decoded), content_of(&plain.json()));
    assert_eq!(
        forced.header("content-length").unwrap(),
        forced.body.len().to_string()
    );

    let accepted = s.post(CHAT, &body, &[("accept-encoding", "gzip, deflate")]);
    assert_eq!(accepted.header("content-encoding"), Some("gzip"));
    let refused = s.post(
        CHAT,
        &body,
        &[("accept-encoding", "gzip"), ("x-mock-gzip", "0")],
    );
    assert!(refused.header("content-encoding").is_none());
    assert_eq!(content_of(&refused.json()), content_of(&plain.json()));

    let err = s.post(
        CHAT,
        &body,
        &[("x-mock-gzip", "1"), ("x-mock-status", "503")],
    );
    assert_eq!(err.status, 503);
    let v: Value = serde_json::from_slice(&gunzip(&err.body)).unwrap();
    assert_eq!(v["error"]["type"], "server_error");
}

#[test]
fn gzip_when_accepted_can_be_turned_off() {
    let s = Server::start_with(&["--latency-ms", "0", "--gzip-when-accepted", "false"], &[]);
    let r = s.post(
        CHAT,
        &chat_body("m", &[("user", "q")]),
        &[("accept-encoding", "gzip")],
    );
    assert!(r.header("content-encoding").is_none());
    let r = s.post(
        CHAT,
        &chat_body("m", &[("user", "q")]),
        &[("x-mock-gzip", "1")],
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}

#[test]
fn gzip_stream_decodes_event_by_event() {
    let s = Server::start();
    let mut conn = s.open(
        "POST",
        CHAT,
        &[("x-mock-gzip", "1")],
        stream_body("stream zipped").to_string().as_bytes(),
    );
    assert_eq!(conn.header("content-encoding"), Some("gzip"));
    assert_eq!(conn.header("content-type"), Some("text/event-stream"));
    let mut dec = flate2::write::GzDecoder::new(Vec::new());
    // Each frame is sync-flushed: it decodes to whole events on its own.
    let Chunk::Data(first) = conn.next_chunk() else {
        panic!("no first frame")
    };
    dec.write_all(&first).unwrap();
    dec.flush().unwrap();
    let head = String::from_utf8(dec.get_ref().clone()).unwrap();
    assert!(
        head.starts_with("data: ") && head.ends_with("\n\n"),
        "{head:?}"
    );
    assert_eq!(
        event_json(head.as_bytes())["choices"][0]["delta"]["role"],
        "assistant"
    );
    let rest = conn.finish();
    assert!(rest.complete);
    dec.write_all(&rest.body).unwrap();
    let all = String::from_utf8(dec.finish().unwrap()).unwrap();
    let (events, done) = sse_json(&all);
    assert!(done);
    assert!(events.len() > 3);
}

#[test]
fn hold_stream_sends_first_chunk_then_waits_for_release() {
    let s = Server::start();
    let mut conn = s.open(
        "POST",
        CHAT,
        &[("x-mock-hold", "t-stream")],
        stream_body("hold on").to_string().as_bytes(),
    );
    let Chunk::Data(role) = conn.next_chunk() else {
        panic!("no role chunk")
    };
    assert_eq!(
        event_json(&role)["choices"][0]["delta"]["role"],
        "assistant"
    );
    let Chunk::Data(first) = conn.next_chunk() else {
        panic!("no first content chunk")
    };
    let first = event_json(&first);
    assert!(first["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap()
        .starts_with("Mock answer"));

    // The upstream is provably mid-stream: the client has the first chunk,
    // the request waits on the token, and the stream has not completed.
    let held = s.get("/control/holds/t-stream?wait_for=1").json();
    assert_eq!(held["waiting"], 1);
    assert_eq!(held["released"], false);
    let st = s.stats();
    assert_eq!(st["holds_waiting"], 1);
    assert_eq!(st["streams_completed"], 0);

    let rel = s.post_raw("/control/release/t-stream", b"", &[]);
    assert_eq!(rel.status, 200);
    assert_eq!(rel.json()["waiting"], 1);

    let rest = conn.finish();
    assert!(rest.complete);
    let (events, done) = sse_json(&rest.text());
    assert!(done);
    assert_eq!(
        events[events.len() - 1]["choices"][0]["finish_reason"],
        "stop"
    );
    let st = s.stats();
    assert_eq!(st["streams_completed"], 1);
    assert_eq!(st["holds_waiting"], 0);
}

#[test]
fn hold_non_stream_waits_before_the_response() {
    let s = Server::start();
    let addr = s.addr.clone();
    let client = std::thread::spawn(move || {
        common::Conn::open(
            &addr,
            "POST",
            CHAT,
            &[("x-mock-hold", "t-plain")],
            chat_body("m", &[("user", "q")]).to_string().as_bytes(),
        )
        .finish()
    });
    let held = s.get("/control/holds/t-plain?wait_for=1").json();
    assert_eq!(held["waiting"], 1);
    assert!(!client.is_finished());
    s.post_raw("/control/release/t-plain", b"", &[]);
    let r = client.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(content_of(&r.json()).starts_with("Mock answer to: q"));
}

#[test]
fn release_before_the_request_lets_it_through() {
    let s = Server::start();
    s.post_raw("/control/release/early", b"", &[]);
    let r = s.post(CHAT, &stream_body("q"), &[("x-mock-hold", "early")]);
    let (_, done) = sse_json(&r.text());
    assert!(done);
}

#[test]
fn latency_header_overrides_the_server_latency() {
    // A server latency far beyond the client's read timeout: the request can
    // only succeed if the per-request override applies.
    let s = Server::start_with(&["--latency-ms", "3600000"], &[]);
    let r = s.post(
        CHAT,
        &chat_body("m", &[("user", "q")]),
        &[("x-mock-latency-ms", "0")],
    );
    assert_eq!(r.status, 200);
    let r = s.post(CHAT, &stream_body("q"), &[("x-mock-latency-ms", "0")]);
    assert!(sse_json(&r.text()).1);
}

#[test]
fn truncate_and_hold_in_legacy_stream() {
    let s = Server::start();
    let body = json!({ "model": "m", "prompt": "p", "stream": true });
    let r = s.post("/v1/completions", &body, &[("x-mock-truncate", "1")]);
    assert!(!r.complete);
    let (events, done) = sse_json(&r.text());
    assert!(!done);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["object"], "text_completion");
}
