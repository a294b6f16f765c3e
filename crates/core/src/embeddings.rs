//! The OpenAI-compatible embeddings callout: request body and response decoding.

use base64::Engine;
use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// `data[0].embedding`, read straight from the body: every other value is skipped without being
/// built, and a base64 vector is borrowed from the body unless it has JSON escapes. Whatever is
/// not there (no `data`, not an array, not an object, no `embedding`) is `None` as `Value::get`
/// has it, and a repeated key counts by its last value as in a `Value` map. Hand-written
/// visitors rather than derived structs: a derived struct also accepts a JSON array.
enum Embedding<'a> {
    Base64(Cow<'a, str>),
    /// `None` when an element is not a number.
    Floats(Option<Vec<f32>>),
    /// Any other JSON value.
    Other,
}

/// Scalars (and `null`) are `$v`: a visitor answers them without an error.
macro_rules! scalars_are {
    ($v:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($v)
        }
    };
}

/// Strings are `$v` too (for the visitors where a string is not what they look for).
macro_rules! strings_are {
    ($v:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($v)
        }
    };
}

/// Arrays and objects are `$v` once skipped.
macro_rules! seq_is {
    ($v:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element_seed(Skip)?.is_some() {}
            Ok($v)
        }
    };
}
macro_rules! map_is {
    ($v:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry_seed(Skip, Skip)?.is_some() {}
            Ok($v)
        }
    };
}

/// A value read and dropped. Through `deserialize_any`, not `deserialize_ignored_any`: that
/// one only checks the syntax, and a number out of range or a string that is not UTF-8 must
/// still make the body "not JSON", as parsing it into a `Value` does.
#[derive(Clone, Copy)]
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = IgnoredAny;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<IgnoredAny, D::Error> {
        d.deserialize_any(IgnoredAny)
    }
}

/// Whether a map key is the one wanted, compared without a copy.
struct KeyIs(&'static str);

impl<'de> DeserializeSeed<'de> for KeyIs {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<bool, E> {
        Ok(k == self.0)
    }
}

/// The value of `key` in an object (its last occurrence), read with `seed`.
fn field<'de, A, S>(mut map: A, key: &'static str, seed: S) -> Result<Option<S::Value>, A::Error>
where
    A: MapAccess<'de>,
    S: DeserializeSeed<'de> + Copy,
{
    let mut found = None;
    while let Some(wanted) = map.next_key_seed(KeyIs(key))? {
        if wanted {
            found = Some(map.next_value_seed(seed)?);
        } else {
            map.next_value_seed(Skip)?;
        }
    }
    Ok(found)
}

/// Each level below is read as whatever JSON comes (`deserialize_any`), by its own visitor.
macro_rules! seed_is_visitor {
    ($($t:ty),*) => {$(
        impl<'de> DeserializeSeed<'de> for $t {
            type Value = <$t as Visitor<'de>>::Value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
    )*};
}

seed_is_visitor!(Body, Data, Datum, Vector);

/// The body: `data[0].embedding`.
#[derive(Clone, Copy)]
struct Body;
/// `data`: its first element's `embedding`.
#[derive(Clone, Copy)]
struct Data;
/// `data[0]`: its `embedding`.
#[derive(Clone, Copy)]
struct Datum;
/// `data[0].embedding`.
#[derive(Clone, Copy)]
struct Vector;

impl<'de> Visitor<'de> for Body {
    type Value = Option<Embedding<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an embeddings response")
    }
    scalars_are!(None);
    strings_are!(None);
    seq_is!(None);
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(field(map, "data", Data)?.flatten())
    }
}

impl<'de> Visitor<'de> for Data {
    type Value = Option<Embedding<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("data")
    }
    scalars_are!(None);
    strings_are!(None);
    map_is!(None);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let first = seq.next_element_seed(Datum)?.flatten();
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(first)
    }
}

impl<'de> Visitor<'de> for Datum {
    type Value = Option<Embedding<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("data[0]")
    }
    scalars_are!(None);
    strings_are!(None);
    seq_is!(None);
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        field(map, "embedding", Vector)
    }
}

impl<'de> Visitor<'de> for Vector {
    type Value = Embedding<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an embedding")
    }
    scalars_are!(Embedding::Other);
    map_is!(Embedding::Other);
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Embedding::Base64(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Embedding::Base64(Cow::Owned(s.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Each element as `Value::as_f64` reads it (a number without a heap allocation).
        let mut out = Some(Vec::new());
        while let Some(x) = seq.next_element::<Value>()? {
            match (x.as_f64(), out.as_mut()) {
                (Some(f), Some(v)) => v.push(f as f32),
                _ => out = None,
            }
        }
        Ok(Embedding::Floats(out))
    }
}

/// Decodes `data[0].embedding`, as base64 little-endian f32 or as a float array; a server that
/// ignores `encoding_format` and answers with floats is accepted either way.
pub fn parse_response(body: &[u8], expected_dims: Option<u32>) -> Result<Vec<f32>, EmbeddingError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let emb = Body
        .deserialize(&mut de)
        .and_then(|e| de.end().map(|()| e))
        .map_err(|_| EmbeddingError::NotJson)?
        .ok_or(EmbeddingError::Missing)?;
    let vector: Vec<f32> = match emb {
        Embedding::Base64(s) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|_| EmbeddingError::Undecodable)?;
            if bytes.len() % 4 != 0 {
                return Err(EmbeddingError::Undecodable);
            }
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        Embedding::Floats(floats) => floats.ok_or(EmbeddingError::Undecodable)?,
        Embedding::Other => return Err(EmbeddingError::Undecodable),
    };
    checked(vector, expected_dims)
}

/// A decoded vector, if it has the expected size and can be compared at all.
fn checked(vector: Vec<f32>, expected_dims: Option<u32>) -> Result<Vec<f32>, EmbeddingError> {
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

    /// The former decoding, through a `serde_json::Value`: the streaming one must agree.
    fn via_value(body: &[u8], dims: Option<u32>) -> Result<Vec<f32>, EmbeddingError> {
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
        checked(vector, dims)
    }

    #[test]
    fn decodes_as_a_value_tree_would() {
        // 0.5, -2.0, 0.75 in base64 has a '/', which some servers escape as "\/".
        let b64 =
            base64::engine::general_purpose::STANDARD.encode(to_fp32_blob(&[0.5, -2.0, 0.75]));
        let escaped = b64.replace('/', "\\/");
        assert_ne!(b64, escaped, "the vector must have a '/' in base64");
        let bodies: Vec<Vec<u8>> = [
            format!(r#"{{"data":[{{"embedding":"{b64}"}}]}}"#),
            format!(r#"{{"data":[{{"embedding":"{escaped}"}}]}}"#),
            format!(r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":"{b64}"}},{{"embedding":7}}],"model":"m","usage":{{"prompt_tokens":1,"total_tokens":1}}}}"#),
            format!(r#"{{"d\u0061ta":[{{"embedding":"{b64}"}}]}}"#),
            format!(r#"[[{{"embedding":"{b64}"}}]]"#),
            format!(r#"{{"data":[["{b64}"]]}}"#),
            format!(r#"{{"data":{{"0":{{"embedding":"{b64}"}}}}}}"#),
            format!(r#"{{"data":[{{"embedding":"AAAA"}}],"data":[{{"embedding":"{b64}"}}]}}"#),
            format!(r#"{{"data":[{{"embedding":"{b64}","embedding":[1,2]}}]}}"#),
            format!(r#"{{"data":[{{"embedding":"{b64}"}}],"usage":1e400}}"#),
            format!(r#"{{"data":[{{"embedding":"{b64}"}}]}} x"#),
            format!(r#"{{"data":[{{"embedding":"{b64}"}}]}}  "#),
            r#"{"data":[{"embedding":[1,-2,3.5]}]}"#.into(),
            r#"{"data":[{"embedding":[1,"2",3]}]}"#.into(),
            r#"{"data":[{"embedding":[1,null,3]}]}"#.into(),
            r#"{"data":[{"embedding":[1,[2],3]}]}"#.into(),
            r#"{"data":[{"embedding":null}]}"#.into(),
            r#"{"data":[{"embedding":{"a":1}}]}"#.into(),
            r#"{"data":[{"embedding":true}]}"#.into(),
            r#"{"data":[{}]}"#.into(),
            r#"{"data":[]}"#.into(),
            r#"{"data":null}"#.into(),
            r#"{"data":"x"}"#.into(),
            "null".into(),
            "3".into(),
            r#""data""#.into(),
            "{".into(),
            "".into(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .chain([
            // Not UTF-8 in a field that is skipped.
            b"{\"model\":\"\xff\",\"data\":[{\"embedding\":[1]}]}".to_vec(),
        ])
        .collect();
        for body in &bodies {
            for dims in [None, Some(3)] {
                assert_eq!(
                    parse_response(body, dims),
                    via_value(body, dims),
                    "{}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        assert_eq!(
            parse_response(&bodies[1], Some(3)),
            Ok(vec![0.5, -2.0, 0.75])
        );
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
