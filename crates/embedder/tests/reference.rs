//! The server's embeddings against the independent numpy reference in
//! testdata/embeddings/reference.json (scripts/embed_reference.py), through the real binary.

mod common;

use common::{cosine, post, vectors, Server};
use serde_json::{json, Value};

const MIN_COSINE: f64 = 0.9999;

fn reference() -> Vec<(String, u64, Vec<f64>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/embeddings/reference.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read reference"))
        .expect("parse reference");
    let items: Vec<_> = doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|it| {
            (
                it["text"].as_str().expect("text").to_string(),
                it["tokens"].as_u64().expect("tokens"),
                it["embedding"]
                    .as_array()
                    .expect("embedding")
                    .iter()
                    .map(|v| v.as_f64().expect("float"))
                    .collect(),
            )
        })
        .collect();
    assert!(items.len() >= 20, "reference set is complete");
    assert!(
        items.iter().any(|(_, tokens, _)| *tokens == 256),
        "reference includes a truncated input"
    );
    items
}

#[tokio::test]
async fn float_batch_matches_reference() {
    let items = reference();
    let server = Server::start(&[]);
    let texts: Vec<&str> = items.iter().map(|(t, _, _)| t.as_str()).collect();
    let (status, resp) = post(
        &format!("{}/v1/embeddings", server.url),
        &json!({"input": texts, "model": "all-MiniLM-L6-v2"}),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    let got = vectors(&resp);
    assert_eq!(got.len(), items.len());
    for ((text, _, want), got) in items.iter().zip(&got) {
        assert_eq!(got.len(), 384);
        let c = cosine(got, want);
        assert!(c >= MIN_COSINE, "cosine {c} for {text:?}");
    }
    let tokens: u64 = items.iter().map(|(_, t, _)| t).sum();
    assert_eq!(resp["usage"]["prompt_tokens"], tokens);
    assert_eq!(resp["usage"]["total_tokens"], tokens);
}

#[tokio::test]
async fn base64_single_requests_match_reference() {
    let items = reference();
    let server = Server::start(&[]);
    for (text, tokens, want) in &items {
        let (status, resp) = post(
            &format!("{}/v1/embeddings", server.url),
            &json!({"input": text, "model": "all-MiniLM-L6-v2", "encoding_format": "base64"}),
        )
        .await;
        assert_eq!(status, 200, "{resp}");
        let got = vectors(&resp);
        assert_eq!(got.len(), 1);
        let c = cosine(&got[0], want);
        assert!(c >= MIN_COSINE, "cosine {c} for {text:?}");
        assert_eq!(
            resp["usage"]["prompt_tokens"], *tokens,
            "tokens of {text:?}"
        );
    }
}
