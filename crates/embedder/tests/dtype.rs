//! `--dtype f16|bf16|bf16-amx`: half-size storage of the linear layers' weights, and bf16 on
//! AMX tiles, must leave the embeddings practically unchanged.

mod common;

use std::sync::Arc;

use common::{cosine, fails_to_start, model_dir, post, vectors, Server};
use semcache_embedder::forward::Encoder;
use semcache_embedder::linear::WeightDtype;
use semcache_embedder::tokenize::TextTokenizer;
use semcache_embedder::weights::Weights;
use serde_json::{json, Value};

const SENTENCES: &[&str] = &[
    "How do I reset my password?",
    "What's the baggage allowance for economy class on international flights?",
];

fn embed_in_process(dtype: WeightDtype) -> Vec<Vec<f64>> {
    let dir = model_dir();
    let w = Arc::new(Weights::load_as(&dir, dtype).expect("load model"));
    assert_eq!(w.dtype, dtype);
    let tok = TextTokenizer::from_dir(&dir, w.max_seq_length).expect("tokenizer");
    let mut enc = Encoder::new(w, 1).expect("encoder");
    SENTENCES
        .iter()
        .map(|s| {
            let ids = tok.encode(s).expect("encode");
            let mut out = vec![0.0f32; enc.dim()];
            enc.embed(&[&ids], &mut out).expect("embed");
            out.iter().map(|&v| v as f64).collect()
        })
        .collect()
}

#[test]
fn half_weights_embed_within_cosine_of_f32() {
    let base = embed_in_process(WeightDtype::F32);
    // Measured over the eval set (examples/dtype_probe.rs): f16 ≥ 0.999999, bf16 ≥ 0.99998.
    // bf16-amx (activations rounded too): ≥ 0.99996.
    let mut cases = vec![(WeightDtype::F16, 0.9999), (WeightDtype::Bf16, 0.999)];
    if semcache_embedder::amx::available() {
        cases.push((WeightDtype::Bf16Amx, 0.999));
    }
    for (dtype, min) in cases {
        for ((text, want), got) in SENTENCES.iter().zip(&base).zip(embed_in_process(dtype)) {
            let c = cosine(&got, want);
            assert!(c >= min, "{dtype:?}: cosine {c} to f32 for {text:?}");
            assert!(got != *want, "{dtype:?}: identical to f32, not in effect?");
        }
    }
}

#[tokio::test]
async fn server_with_f16_weights_matches_the_reference() {
    serves_the_reference_as("f16", WeightDtype::F16).await;
}

#[tokio::test]
async fn server_with_amx_matches_the_reference_where_the_cpu_has_it() {
    if !semcache_embedder::amx::available() {
        eprintln!("no AMX-BF16 on this CPU: only the refusal is tested here");
        return;
    }
    serves_the_reference_as("bf16-amx", WeightDtype::Bf16Amx).await;
}

#[test]
fn bf16_amx_without_amx_refuses_to_start_and_says_why() {
    // Forcing another kernel hides AMX, as on a CPU without it.
    let dir = model_dir();
    let args = [
        "--dtype".as_ref(),
        "bf16-amx".as_ref(),
        "--model-dir".as_ref(),
        dir.as_os_str(),
    ];
    let err = fails_to_start(args, &[("SEMCACHE_EMBEDDER_KERNEL", "avx2")]);
    assert!(err.contains("bf16-amx") && err.contains("use f16"), "{err}");
}

/// A server started with `--dtype flag` embeds the reference inputs within the f32 server's
/// bound, and its output is the in-process `dtype` one, not the f32 one.
async fn serves_the_reference_as(flag: &str, dtype: WeightDtype) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/embeddings/reference.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read reference"))
        .expect("parse reference");
    let items = doc["items"].as_array().expect("items");
    let texts: Vec<&str> = items
        .iter()
        .map(|it| it["text"].as_str().expect("text"))
        .collect();
    let server = Server::start(&["--dtype", flag]);
    let (status, resp) = post(
        &format!("{}/v1/embeddings", server.url),
        &json!({"input": texts}),
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    let got = vectors(&resp);
    assert_eq!(got.len(), items.len());
    for (it, got) in items.iter().zip(&got) {
        let want: Vec<f64> = it["embedding"]
            .as_array()
            .expect("embedding")
            .iter()
            .map(|v| v.as_f64().expect("float"))
            .collect();
        let c = cosine(got, &want);
        // The same bound as the f32 server's reference test.
        assert!(c >= 0.9999, "cosine {c} for {:?}", it["text"]);
    }
    // The server really runs `dtype`: its output is the in-process one, not the f32 one.
    let (_, single) = post(
        &format!("{}/v1/embeddings", server.url),
        &json!({"input": SENTENCES}),
    )
    .await;
    let single = vectors(&single);
    let want_same = embed_in_process(dtype);
    let want32 = embed_in_process(WeightDtype::F32);
    for ((s, h), f) in single.iter().zip(&want_same).zip(&want32) {
        let d_same: f64 = s
            .iter()
            .zip(h)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let d32: f64 = s
            .iter()
            .zip(f)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            d_same < 1e-6 && d_same < d32,
            "max |diff| to {flag} {d_same}, to f32 {d32}"
        );
    }
}

#[test]
fn dtype_flag_parses() {
    use clap::{CommandFactory, Parser};
    use semcache_embedder::config::Args;
    let parse = |extra: &[&str]| {
        Args::try_parse_from(["semcache-embedder"].iter().chain(extra)).map(|a| a.weight_dtype())
    };
    // Unless the environment sets it (the tests don't), the default depends on the CPU.
    if std::env::var_os("SEMCACHE_EMBEDDER_DTYPE").is_none() {
        let want = if semcache_embedder::amx::available() {
            WeightDtype::Bf16Amx
        } else {
            WeightDtype::F16
        };
        assert_eq!(parse(&[]).expect("no flag"), want);
    }
    assert_eq!(
        parse(&["--dtype", "bf16-amx"]).expect("bf16-amx"),
        WeightDtype::Bf16Amx
    );
    assert_eq!(parse(&["--dtype", "f32"]).expect("f32"), WeightDtype::F32);
    assert_eq!(parse(&["--dtype", "f16"]).expect("f16"), WeightDtype::F16);
    assert_eq!(
        parse(&["--dtype", "bf16"]).expect("bf16"),
        WeightDtype::Bf16
    );
    assert!(parse(&["--dtype", "f64"]).is_err());
    let cmd = Args::command();
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == "dtype")
        .expect("--dtype");
    assert_eq!(
        arg.get_env().and_then(|e| e.to_str()),
        Some("SEMCACHE_EMBEDDER_DTYPE")
    );
}
