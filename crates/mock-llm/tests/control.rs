//! Control endpoints, the embeddings stub, health, configuration and shutdown.

mod common;

use base64::Engine as _;
use common::{chat_body, sse_json, Chunk, Server};
use serde_json::{json, Value};

const EMB: &str = "/v1/embeddings";

#[test]
fn healthz() {
    let s = Server::start();
    let r = s.get("/healthz");
    assert_eq!(r.status, 200);
}

#[test]
fn stats_count_requests_and_reset_zeroes_them() {
    let s = Server::start();
    let zero = s.stats();
    for k in [
        "chat_requests",
        "completions_requests",
        "embeddings_requests",
        "streams_completed",
        "streams_aborted",
    ] {
        assert_eq!(zero[k], 0, "{k}");
    }
    s.post(
        "/v1/chat/completions",
        &chat_body("m", &[("user", "a")]),
        &[],
    );
    s.post(
        "/v1/chat/completions",
        &chat_body("m", &[("user", "b")]),
        &[],
    );
    s.post(
        "/v1/completions",
        &json!({ "model": "m", "prompt": "p" }),
        &[],
    );
    s.post(EMB, &json!({ "input": "x" }), &[]);
    let st = s.stats();
    assert_eq!(st["chat_requests"], 2);
    assert_eq!(st["completions_requests"], 1);
    assert_eq!(st["embeddings_requests"], 1);
    // Control calls are not upstream traffic.
    assert_eq!(s.stats()["chat_requests"], 2);

    let r = s.post_raw("/control/reset", b"", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(s.stats()["chat_requests"], 0);
}

#[test]
fn embeddings_are_deterministic_normalised_384_floats() {
    let s = Server::start();
    let r = s.post(
        EMB,
        &json!({ "model": "text-embedding-3-small", "input": ["hello", "world"] }),
        &[],
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let vec0: Vec<f64> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(vec0.len(), 384);
    let norm: f64 = vec0.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    assert_eq!(data[1]["index"], 1);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let again = s.post(EMB, &json!({ "input": "hello" }), &[]).json();
    assert_eq!(again["data"][0]["embedding"], data[0]["embedding"]);

    let b64 = s
        .post(
            EMB,
            &json!({ "input": "hello", "encoding_format": "base64" }),
            &[],
        )
        .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(floats.len(), 384);
    for (a, b) in floats.iter().zip(&vec0) {
        assert!((f64::from(*a) - b).abs() < 1e-6);
    }

    let bad = s.post(
        EMB,
        &json!({ "input": "x", "encoding_format": "int8" }),
        &[],
    );
    assert_eq!(bad.status, 400);
    let azure = s.post(
        "/openai/deployments/emb/embeddings?api-version=2024-10-21",
        &json!({ "input": "hello" }),
        &[],
    );
    assert_eq!(azure.json()["model"], "emb");
    assert_eq!(azure.json()["data"][0]["embedding"], data[0]["embedding"]);
}

#[test]
fn runtime_config_makes_the_embedder_fail_and_recover() {
    let s = Server::start();
    let r = s.post(
        "/control/config",
        &json!({ "embeddings_status": 503, "embeddings_delay_ms": 5 }),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["embeddings_status"], 503);
    assert_eq!(s.get("/control/config").json()["embeddings_delay_ms"], 5);

    let failing = s.post(EMB, &json!({ "input": "x" }), &[]);
    assert_eq!(failing.status, 503);
    assert_eq!(failing.json()["error"]["type"], "server_error");
    // Chat is unaffected by the embeddings fault.
    let chat = s.post(
        "/v1/chat/completions",
        &chat_body("m", &[("user", "q")]),
        &[],
    );
    assert_eq!(chat.status, 200);

    let r = s.post(
        "/control/config",
        &json!({ "embeddings_status": null, "embeddings_delay_ms": 0 }),
        &[],
    );
    assert_eq!(r.json()["embeddings_status"], Value::Null);
    assert_eq!(s.post(EMB, &json!({ "input": "x" }), &[]).status, 200);

    assert_eq!(
        s.post("/control/config", &json!({ "embeddings_status": 200 }), &[])
            .status,
        400
    );
    assert_eq!(
        s.post("/control/config", &json!({ "nope": 1 }), &[]).status,
        400
    );
}

#[test]
fn flags_come_from_the_environment_too() {
    let s = Server::start_with(
        &[],
        &[
            ("SEMCACHE_MOCK_LLM_LATENCY_MS", "0"),
            ("SEMCACHE_MOCK_LLM_CHUNK_DELAY_MS", "2"),
            ("SEMCACHE_MOCK_LLM_EMBEDDINGS_DELAY_MS", "3"),
        ],
    );
    let cfg = s.get("/control/config").json();
    assert_eq!(cfg["latency_ms"], 0);
    assert_eq!(cfg["chunk_delay_ms"], 2);
    assert_eq!(cfg["embeddings_delay_ms"], 3);
}

#[test]
fn sigterm_finishes_in_flight_streams_and_exits_zero() {
    let mut s = Server::start();
    let mut body = chat_body("m", &[("user", "q")]);
    body["stream"] = json!(true);
    let mut conn = s.open(
        "POST",
        "/v1/chat/completions",
        &[("x-mock-hold", "never-released")],
        body.to_string().as_bytes(),
    );
    assert!(matches!(conn.next_chunk(), Chunk::Data(_)));
    assert!(matches!(conn.next_chunk(), Chunk::Data(_)));
    assert_eq!(
        s.get("/control/holds/never-released?wait_for=1").json()["waiting"],
        1
    );

    // Shutdown lets held requests go and waits for them to finish.
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    let rest = conn.finish();
    assert!(rest.complete);
    assert!(sse_json(&rest.text()).1);
}
