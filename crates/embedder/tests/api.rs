//! The HTTP API through the real binary: both encodings, arrays, the Azure path, every error
//! path, truncation, /healthz and graceful shutdown. The 429 path is in overload.rs.

mod common;

use common::{cosine, fails_to_start, post, post_raw, vectors, Server};
use serde_json::{json, Value};

fn assert_error(status: u16, resp: &Value, want_status: u16, param: Option<&str>, needle: &str) {
    assert_eq!(status, want_status, "{resp}");
    let err = &resp["error"];
    assert!(err.is_object(), "OpenAI error shape: {resp}");
    let message = err["message"].as_str().expect("message");
    assert!(
        message.contains(needle),
        "message {message:?} should mention {needle:?}"
    );
    assert!(err["type"].is_string(), "{resp}");
    assert!(
        err.get("code").is_some(),
        "code present (maybe null): {resp}"
    );
    match param {
        Some(p) => assert_eq!(err["param"], p, "{resp}"),
        None => assert!(err["param"].is_null(), "{resp}"),
    }
}

#[tokio::test]
async fn single_string_array_and_both_encodings() {
    let server = Server::start(&[]);
    let url = format!("{}/v1/embeddings", server.url);

    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);

    let (status, single) = post(&url, &json!({"input": "Hello, world!"})).await;
    assert_eq!(status, 200, "{single}");
    assert_eq!(single["object"], "list");
    assert_eq!(
        single["model"], "all-MiniLM-L6-v2",
        "default name when none asked"
    );
    // [CLS] hello , world ! [SEP]
    assert_eq!(single["usage"]["prompt_tokens"], 6);
    assert_eq!(single["usage"]["total_tokens"], 6);
    let one = vectors(&single);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].len(), 384);
    let norm: f64 = one[0].iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");

    let (status, batch) = post(
        &url,
        &json!({"input": ["a", "Hello, world!", "a"], "model": "text-embedding-3-small"}),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(
        batch["model"], "text-embedding-3-small",
        "requested model echoed"
    );
    assert_eq!(batch["usage"]["prompt_tokens"], 3 + 6 + 3);
    let many = vectors(&batch);
    assert_eq!(many.len(), 3);
    assert!(cosine(&many[1], &one[0]) > 0.99999, "batched == single");
    assert!(
        cosine(&many[0], &many[2]) > 0.99999,
        "same text, same vector"
    );
    assert!(cosine(&many[0], &many[1]) < 0.99, "different texts differ");

    let (status, b64) = post(
        &url,
        &json!({"input": ["a", "Hello, world!", "a"], "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, 200, "{b64}");
    assert!(b64["data"][0]["embedding"].is_string());
    for (f, b) in many.iter().zip(vectors(&b64)) {
        assert_eq!(b.len(), 384);
        assert!(
            cosine(f, &b) > 0.99999,
            "base64 decodes to the float vector"
        );
    }

    let (status, explicit) = post(
        &url,
        &json!({"input": "Hello, world!", "encoding_format": "float", "dimensions": 384, "user": "u1"}),
    )
    .await;
    assert_eq!(status, 200, "{explicit}");
    assert!(cosine(&vectors(&explicit)[0], &one[0]) > 0.99999);
}

#[tokio::test]
async fn azure_path_works() {
    let server = Server::start(&["--model-name", "minilm"]);
    let (status, azure) = post(
        &format!(
            "{}/openai/deployments/my-embedder/embeddings?api-version=2024-02-01",
            server.url
        ),
        &json!({"input": ["Hello, world!"]}),
    )
    .await;
    assert_eq!(status, 200, "{azure}");
    assert_eq!(azure["model"], "minilm", "--model-name reported");
    let (status, openai) = post(
        &format!("{}/v1/embeddings", server.url),
        &json!({"input": "Hello, world!"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(cosine(&vectors(&azure)[0], &vectors(&openai)[0]) > 0.99999);

    let (status, b64) = post(
        &format!(
            "{}/openai/deployments/x/embeddings?api-version=2024-02-01",
            server.url
        ),
        &json!({"input": "Hello, world!", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(status, 200, "{b64}");
    assert!(cosine(&vectors(&b64)[0], &vectors(&openai)[0]) > 0.99999);
}

#[tokio::test]
async fn long_input_is_truncated_to_256_word_pieces() {
    let server = Server::start(&[]);
    let url = format!("{}/v1/embeddings", server.url);
    let long = "caching embeddings ".repeat(200);
    let longer = format!("{long} and then something else entirely at the very end");
    let (status, resp) = post(&url, &json!({"input": [long, longer]})).await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["usage"]["prompt_tokens"], 2 * 256);
    let v = vectors(&resp);
    assert!(
        cosine(&v[0], &v[1]) > 0.99999,
        "text past the limit does not change the embedding"
    );
}

#[tokio::test]
async fn invalid_requests_get_400_in_openai_shape() {
    let server = Server::start(&[]);
    let url = format!("{}/v1/embeddings", server.url);
    let cases: Vec<(Value, Option<&str>, &str)> = vec![
        (json!({}), Some("input"), "required"),
        (json!({"input": null}), Some("input"), "required"),
        (json!({"input": ""}), Some("input"), "empty string"),
        (json!({"input": []}), Some("input"), "empty array"),
        (
            json!({"input": ["ok", ""]}),
            Some("input"),
            "'input[1]' must not be an empty string",
        ),
        (
            json!({"input": 42}),
            Some("input"),
            "string or an array of strings",
        ),
        (
            json!({"input": {"text": "x"}}),
            Some("input"),
            "string or an array of strings",
        ),
        (
            json!({"input": true}),
            Some("input"),
            "string or an array of strings",
        ),
        (
            json!({"input": [1, 2, 3]}),
            Some("input"),
            "token arrays are not supported",
        ),
        (
            json!({"input": [[1, 2]]}),
            Some("input"),
            "token arrays are not supported",
        ),
        (
            json!({"input": ["ok", null]}),
            Some("input"),
            "'input[1]' must be a string",
        ),
        (
            json!({"input": "x", "model": 3}),
            Some("model"),
            "'model' must be a string",
        ),
        (
            json!({"input": "x", "encoding_format": "int8"}),
            Some("encoding_format"),
            "\"float\" or \"base64\"",
        ),
        (
            json!({"input": "x", "dimensions": 128}),
            Some("dimensions"),
            "must be 384",
        ),
        (json!(["input", "x"]), None, "JSON object"),
    ];
    for (body, param, needle) in cases {
        let (status, resp) = post(&url, &body).await;
        assert_error(status, &resp, 400, param, needle);
        assert_eq!(resp["error"]["type"], "invalid_request_error", "{body}");
    }
    let (status, resp) = post_raw(&url, "{\"input\": \"unterminated".into()).await;
    assert_error(status, &resp, 400, None, "not valid JSON");
    // The same validation on the Azure path.
    let (status, resp) = post(
        &format!(
            "{}/openai/deployments/d/embeddings?api-version=1",
            server.url
        ),
        &json!({"input": []}),
    )
    .await;
    assert_error(status, &resp, 400, Some("input"), "empty array");
}

#[tokio::test]
async fn too_many_inputs_or_too_large_a_body_gets_413() {
    let server = Server::start(&["--max-inputs", "3", "--max-body-bytes", "2000"]);
    let url = format!("{}/v1/embeddings", server.url);
    let (status, resp) = post(&url, &json!({"input": ["a", "b", "c"]})).await;
    assert_eq!(status, 200, "at the limit is fine: {resp}");
    let (status, resp) = post(&url, &json!({"input": ["a", "b", "c", "d"]})).await;
    assert_error(status, &resp, 413, Some("input"), "at most 3");
    let (status, resp) = post(&url, &json!({"input": "x".repeat(3000)})).await;
    assert_error(status, &resp, 413, None, "larger than");
}

#[tokio::test]
async fn unknown_paths_and_methods_get_openai_errors() {
    let server = Server::start(&[]);
    let (status, resp) = post(
        &format!("{}/v1/embedding", server.url),
        &json!({"input": "x"}),
    )
    .await;
    assert_error(status, &resp, 404, None, "unknown path");
    let resp = reqwest::get(format!("{}/v1/embeddings", server.url))
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 405);
    let body: Value = resp.json().await.expect("json");
    assert_error(405, &body, 405, None, "method not allowed");
}

#[test]
fn sigterm_and_sigint_stop_the_server_cleanly() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut server = Server::start(&[]);
        let status = server.signal_and_wait(signal);
        assert!(status.success(), "exit after signal {signal}: {status:?}");
    }
}

#[test]
fn missing_model_dir_fails_with_a_clear_message() {
    let err = fails_to_start(["--model-dir", "/nonexistent/model"], &[]);
    assert!(err.contains("/nonexistent/model"), "{err}");
}

#[tokio::test]
async fn batches_split_over_several_forward_passes_give_the_same_vectors() {
    // A 16-token budget forces one pass per input or two (each input here is 6–13 tokens).
    let server = Server::start(&["--max-batch-tokens", "16"]);
    let url = format!("{}/v1/embeddings", server.url);
    let texts = [
        "Hello, world!",
        "What is the capital of France?",
        "Paris is the capital and most populous city of France.",
        "a",
        "How do I reset my password?",
    ];
    let (status, batch) = post(&url, &json!({"input": texts})).await;
    assert_eq!(status, 200, "{batch}");
    let batched = vectors(&batch);
    assert_eq!(batched.len(), texts.len());
    for (text, got) in texts.iter().zip(&batched) {
        let (status, single) = post(&url, &json!({"input": text})).await;
        assert_eq!(status, 200);
        assert!(
            cosine(got, &vectors(&single)[0]) > 0.99999,
            "{text:?} differs between batch and single"
        );
    }
}
