//! The 429 path, deterministically: the API runs in-process on a queue whose only slot is
//! already taken and that no worker drains, so the next request must be refused.

mod common;

use std::sync::Arc;

use semcache_embedder::api::{router, AppState};
use semcache_embedder::batcher;
use semcache_embedder::tokenize::TextTokenizer;
use serde_json::json;

#[tokio::test]
async fn full_queue_gives_429_and_unhealthy_without_workers() {
    let tokenizer = TextTokenizer::from_dir(&common::model_dir(), 256).expect("tokenizer");
    let (queue, _jobs) = batcher::queue(1);
    let _held = queue.submit(vec![vec![101, 102]]).expect("first job fits");
    let state = Arc::new(AppState {
        tokenizer: Arc::new(tokenizer),
        queue,
        model_name: "all-MiniLM-L6-v2".into(),
        dim: 384,
        max_inputs: 16,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router(state, 1 << 20)).await;
    });

    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/embeddings"))
        .json(&json!({"input": "Hello, world!"}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(body["error"]["code"], "queue_full", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("overloaded")));

    // Validation happens before queueing: a bad request is still a 400, not a 429.
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/embeddings"))
        .json(&json!({"input": []}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);

    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 503, "no worker is running");
    server.abort();
}
