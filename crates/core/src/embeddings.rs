//! The OpenAI-compatible embeddings callout: request body and response decoding.

use base64::Engine;
use serde_json::{json, Value};
use thiserror::Error;

use crate::config::{EmbeddingsConfig, EncodingFormat};

#[derive(Debug, Error, PartialEq)]
pub enum EmbeddingError {
    #[error("embeddings response is not JSON")]
    NotJson,
    #[error("embeddings response has no data[0].embedding")]
    Missing,
    #[error("embeddings response has an undecodable vector")]
    Undecodable,
    #[error("embeddings response has {got} dimensions, expected {expected}")]
    Dimensions { expected: u32, got: usize },
    #[error("embeddings response vector is empty, zero or not finite")]
    Degenerate,
}

pub fn request_body(cfg: &EmbeddingsConfig, text: &str) -> Vec<u8> {
    let mut body = json!({ "model": cfg.model, "input": text });
    if cfg.encoding_format == EncodingFormat::Base64 {
        body["encoding_format"] = json!("base64");
    }
    if let Some(d) = cfg.dimensions {
        body["dimensions"] = json!(d);
    }
    body.to_string().into_bytes()
}

/// Decodes `data[0].embedding`, as base64 little-endian f32 or as a float array; a server that
/// ignores `encoding_format` and answers with floats is accepted either way.
pub fn parse_response(body: &[u8], expected_dims: Option<u32>) -> Result<Vec<f32>, EmbeddingError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| EmbeddingError::NotJson)?;
    let emb = v
        .get("data")
        .and_then(|d| d.get(0))
        .and_then(|d| d.get("embedding"))
        .ok_or(EmbeddingError::Missing)?;
    let vector: Vec<f32> = match emb {
        Value::String(s) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| EmbeddingError::Undecodable)?;
            if bytes.len() % 4 != 0 {
                return Err(EmbeddingError::Undecodable);
            }
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        Value::Array(items) => items
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect::<Option<Vec<f32>>>()
            .ok_or(EmbeddingError::Undecodable)?,
        _ => return Err(EmbeddingError::Undecodable),
    };
    if let Some(d) = expected_dims {
        if vector.len() != d as usize {
            return Err(EmbeddingError::Dimensions {
                expected: d,
                got: vector.len(),
            });
        }
    }
    if vector.is_empty()
        || vector.iter().any(|x| !x.is_finite())
        || vector.iter().all(|x| *x == 0.0)
    {
        return Err(EmbeddingError::Degenerate);
    }
    Ok(vector)
}

/// The vector as Redis wants it for `FP32`: little-endian bytes.
pub fn to_fp32_blob(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_and_float_forms_identically() {
        let v = [0.25f32, -1.5, 3.0];
        let b64 = base64::engine::general_purpose::STANDARD.encode(to_fp32_blob(&v));
        let a = parse_response(
            format!(r#"{{"data":[{{"embedding":"{b64}"}}]}}"#).as_bytes(),
            Some(3),
        )
        .unwrap();
        let f = parse_response(br#"{"data":[{"embedding":[0.25,-1.5,3.0]}]}"#, None).unwrap();
        assert_eq!(a, v);
        assert_eq!(f, v);
    }

    #[test]
    fn edge_cases_of_real_servers() {
        use EmbeddingError::*;
        // 0.5, -2.0, 0.75 in base64 has a '/', which some servers escape as "\/".
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(to_fp32_blob(&[0.5, -2.0, 0.75]));
        let escaped = b64.replace('/', "\\/");
        assert_ne!(b64, escaped, "the vector must have a '/' in base64");
        let v = || Ok(vec![0.5, -2.0, 0.75]);
        // (body, without an expected size, expecting 3 dimensions)
        type Parsed = Result<Vec<f32>, EmbeddingError>;
        let cases: Vec<(Vec<u8>, Parsed, Parsed)> = vec![
            (format!(r#"{{"data":[{{"embedding":"{b64}"}}]}}"#).into(), v(), v()),
            (format!(r#"{{"data":[{{"embedding":"{escaped}"}}]}}"#).into(), v(), v()),
            (format!(r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":"{b64}"}},{{"embedding":7}}],"model":"m","usage":{{"prompt_tokens":1,"total_tokens":1}}}}"#).into(), v(), v()),
            (format!(r#"{{"d\u0061ta":[{{"embedding":"{b64}"}}]}}"#).into(), v(), v()),
            (format!(r#"[[{{"embedding":"{b64}"}}]]"#).into(), Err(Missing), Err(Missing)),
            (format!(r#"{{"data":[["{b64}"]]}}"#).into(), Err(Missing), Err(Missing)),
            (format!(r#"{{"data":{{"0":{{"embedding":"{b64}"}}}}}}"#).into(), Err(Missing), Err(Missing)),
            // A repeated key: the last one counts.
            (format!(r#"{{"data":[{{"embedding":"AAAA"}}],"data":[{{"embedding":"{b64}"}}]}}"#).into(), v(), v()),
            (format!(r#"{{"data":[{{"embedding":"{b64}","embedding":[1,2]}}]}}"#).into(), Ok(vec![1.0, 2.0]), Err(Dimensions { expected: 3, got: 2 })),
            (format!(r#"{{"data":[{{"embedding":"{b64}"}}],"usage":1e400}}"#).into(), Err(NotJson), Err(NotJson)),
            (format!(r#"{{"data":[{{"embedding":"{b64}"}}]}} x"#).into(), Err(NotJson), Err(NotJson)),
            (format!(r#"{{"data":[{{"embedding":"{b64}"}}]}}  "#).into(), v(), v()),
            (br#"{"data":[{"embedding":[1,-2,3.5]}]}"#.to_vec(), Ok(vec![1.0, -2.0, 3.5]), Ok(vec![1.0, -2.0, 3.5])),
            (br#"{"data":[{"embedding":[1,"2",3]}]}"#.to_vec(), Err(Undecodable), Err(Undecodable)),
            (br#"{"data":[{"embedding":[1,null,3]}]}"#.to_vec(), Err(Undecodable), Err(Undecodable)),
            (br#"{"data":[{"embedding":[1,[2],3]}]}"#.to_vec(), Err(Undecodable), Err(Undecodable)),
            (br#"{"data":[{"embedding":null}]}"#.to_vec(), Err(Undecodable), Err(Undecodable)),
            (br#"{"data":[{"embedding":{"a":1}}]}"#.to_vec(), Err(Undecodable), Err(Undecodable)),
            (br#"{"data":[{"embedding":true}]}"#.to_vec(), Err(Undecodable), Err(Undecodable)),
            (br#"{"data":[{}]}"#.to_vec(), Err(Missing), Err(Missing)),
            (br#"{"data":[]}"#.to_vec(), Err(Missing), Err(Missing)),
            (br#"{"data":null}"#.to_vec(), Err(Missing), Err(Missing)),
            (br#"{"data":"x"}"#.to_vec(), Err(Missing), Err(Missing)),
            (b"null".to_vec(), Err(Missing), Err(Missing)),
            (b"3".to_vec(), Err(Missing), Err(Missing)),
            (br#""data""#.to_vec(), Err(Missing), Err(Missing)),
            (b"{".to_vec(), Err(NotJson), Err(NotJson)),
            (b"".to_vec(), Err(NotJson), Err(NotJson)),
            // Not UTF-8 in a field that is not even read.
            (b"{\"model\":\"\xff\",\"data\":[{\"embedding\":[1]}]}".to_vec(), Err(NotJson), Err(NotJson)),
        ];
        for (body, unsized_, sized) in &cases {
            let shown = String::from_utf8_lossy(body);
            assert_eq!(&parse_response(body, None), unsized_, "{shown}");
            assert_eq!(&parse_response(body, Some(3)), sized, "{shown}");
        }
    }

    #[test]
    fn refuses_broken_responses() {
        assert_eq!(
            parse_response(b"<html>", None),
            Err(EmbeddingError::NotJson)
        );
        assert_eq!(
            parse_response(br#"{"error":{}}"#, None),
            Err(EmbeddingError::Missing)
        );
        assert_eq!(
            parse_response(br#"{"data":[{"embedding":"!!"}]}"#, None),
            Err(EmbeddingError::Undecodable)
        );
        assert_eq!(
            parse_response(br#"{"data":[{"embedding":"AAA="}]}"#, None),
            Err(EmbeddingError::Undecodable)
        );
        assert_eq!(
            parse_response(br#"{"data":[{"embedding":[1.0,2.0]}]}"#, Some(3)),
            Err(EmbeddingError::Dimensions {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            parse_response(br#"{"data":[{"embedding":[0.0,0.0]}]}"#, None),
            Err(EmbeddingError::Degenerate)
        );
        assert_eq!(
            parse_response(br#"{"data":[{"embedding":[]}]}"#, None),
            Err(EmbeddingError::Degenerate)
        );
    }
}
