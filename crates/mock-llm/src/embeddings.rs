//! Stub `/v1/embeddings`: a fault-injection aid, not a model. Vectors are
//! derived from a hash of the input (same input, same vector; no semantics),
//! L2-normalised, 384 dimensions unless `dimensions` asks otherwise.

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::answers::tokens;
use crate::error::ApiError;

pub const DEFAULT_DIM: usize = 384;
const MAX_DIM: usize = 4096;
pub const DEFAULT_MODEL: &str = "mock-embedding-384";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

#[derive(Debug)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub inputs: Vec<String>,
    pub dim: usize,
    pub encoding: Encoding,
}

/// Text of one input item; token arrays are hashed through their JSON form.
fn item_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) if a.iter().all(Value::is_u64) => Some(v.to_string()),
        _ => None,
    }
}

pub fn parse(body: &Value, default_model: Option<&str>) -> Result<EmbeddingsRequest, ApiError> {
    let model = match (body.get("model").and_then(Value::as_str), default_model) {
        (Some(m), _) => m.to_owned(),
        (None, Some(d)) => d.to_owned(),
        (None, None) => DEFAULT_MODEL.to_owned(),
    };
    let bad_input = || {
        ApiError::bad_request(
            "'input' must be a string, an array of strings, or an array of token arrays",
        )
    };
    let inputs = match body.get("input") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "you must provide an 'input' parameter",
            ))
        }
        Some(Value::Array(items)) if items.is_empty() => return Err(bad_input()),
        Some(Value::Array(items)) if items.iter().all(Value::is_u64) => {
            vec![Value::Array(items.clone()).to_string()]
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(item_text)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad_input)?,
        Some(v) => vec![item_text(v).ok_or_else(bad_input)?],
    };
    let dim = match body.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIM,
        Some(v) => v
            .as_u64()
            .map(|d| d as usize)
            .filter(|d| (1..=MAX_DIM).contains(d))
            .ok_or_else(|| {
                ApiError::bad_request(format!("'dimensions' must be between 1 and {MAX_DIM}"))
            })?,
    };
    let encoding = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "'encoding_format' must be 'float' or 'base64', not '{other}'"
            )))
        }
    };
    Ok(EmbeddingsRequest {
        model,
        inputs,
        dim,
        encoding,
    })
}

/// splitmix64: a tiny, well-mixed generator seeded from the input hash.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn vector(input: &str, dim: usize) -> Vec<f32> {
    let digest = Sha256::digest(input.as_bytes());
    let mut seed_bytes = [0u8; 8];
    seed_bytes.copy_from_slice(&digest[..8]);
    let mut state = u64::from_le_bytes(seed_bytes);
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            // 24 random bits -> uniform in [-1, 1).
            let x = (splitmix64(&mut state) >> 40) as f32 / (1u32 << 24) as f32;
            x * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

pub fn response(req: &EmbeddingsRequest) -> Value {
    let data: Vec<Value> = req
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let v = vector(input, req.dim);
            let embedding = match req.encoding {
                Encoding::Float => json!(v),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    let prompt_tokens: u64 = req.inputs.iter().map(|s| tokens(s).max(1)).sum();
    json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_and_normalised() {
        let a = vector("hello", DEFAULT_DIM);
        assert_eq!(a, vector("hello", DEFAULT_DIM));
        assert_ne!(a, vector("hello!", DEFAULT_DIM));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn parses_inputs() {
        let r = parse(&json!({"input": ["a", "b"], "dimensions": 8}), None).unwrap();
        assert_eq!(r.inputs, vec!["a", "b"]);
        assert_eq!(r.dim, 8);
        assert_eq!(r.model, DEFAULT_MODEL);
        assert!(parse(&json!({"input": []}), None).is_err());
        assert!(parse(&json!({"input": [1, "a"]}), None).is_err());
        assert!(parse(&json!({"input": "a", "encoding_format": "int8"}), None).is_err());
        assert_eq!(
            parse(&json!({"input": [1, 2]}), None).unwrap().inputs.len(),
            1
        );
    }
}
