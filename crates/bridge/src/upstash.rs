//! Upstash-compatible JSON endpoints (`POST /`, `POST /pipeline`), for curl, tools and the
//! `@upstash/redis` client. Not the filter's hot path: the JSON is turned into RESP frames and
//! goes through exactly the same checks as `/v1/resp`. JSON strings cannot carry arbitrary
//! bytes, so FP32 vectors need `/v1/resp` (or `VALUES`) on the way in; on the way out,
//! `Upstash-Encoding: base64` makes binary replies safe.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use bytes::Bytes;
use redis::Value;
use serde_json::{json, Value as JsonValue};

use crate::http::{serve, AppState, Reject};

pub async fn single(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve_json(&state, &headers, body, false, |replies, b64| {
        match replies.first() {
            // Upstash answers a failed command with 400 and the error.
            Some(Value::ServerError(e)) => (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": e.to_string_resp() })),
            )
                .into_response(),
            Some(v) => Json(json!({ "result": to_json(v, b64) })).into_response(),
            None => error_response(&Reject::BadJson("no command")),
        }
    })
    .await
}

pub async fn pipeline(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve_json(&state, &headers, body, true, |replies, b64| {
        let items: Vec<JsonValue> = replies
            .iter()
            .map(|v| match v {
                Value::ServerError(e) => json!({ "error": e.to_string_resp() }),
                v => json!({ "result": to_json(v, b64) }),
            })
            .collect();
        Json(items).into_response()
    })
    .await
}

/// What both Upstash endpoints share: a JSON command (or, with `pipeline`, an array of them)
/// in, rejections as `{"error": ...}` out, and `Upstash-Encoding`. `render` turns the replies
/// into the endpoint's answer; `b64` is whether binary replies go out base64-encoded.
async fn serve_json(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    pipeline: bool,
    render: impl FnOnce(&[Value], bool) -> Response,
) -> Response {
    let b64 = wants_base64(headers);
    let frames = |b: Bytes| to_resp(&b, pipeline);
    serve(state, headers, body, frames, |result| match result {
        Ok(replies) => render(&replies, b64),
        Err(reject) => error_response(&reject),
    })
    .await
}

fn error_response(reject: &Reject) -> Response {
    (
        reject.status(),
        Json(json!({ "error": reject.to_string() })),
    )
        .into_response()
}

fn wants_base64(headers: &HeaderMap) -> bool {
    headers
        .get("upstash-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"base64"))
}

/// `["SET","k","v"]` (or, for a pipeline, `[["SET","k","v"],["GET","k"]]`) to RESP frames.
/// Arguments may be strings or numbers, as in Upstash's API.
fn to_resp(body: &[u8], pipeline: bool) -> Result<Bytes, Reject> {
    let parsed: JsonValue =
        serde_json::from_slice(body).map_err(|_| Reject::BadJson("not JSON"))?;
    let JsonValue::Array(items) = parsed else {
        return Err(Reject::BadJson("expected an array"));
    };
    let mut out = Vec::with_capacity(body.len() + 64);
    if pipeline {
        if items.is_empty() {
            return Err(Reject::BadJson("empty pipeline"));
        }
        for cmd in &items {
            let JsonValue::Array(args) = cmd else {
                return Err(Reject::BadJson("a pipeline is an array of arrays"));
            };
            frame(args, &mut out)?;
        }
    } else {
        frame(&items, &mut out)?;
    }
    Ok(out.into())
}

fn frame(args: &[JsonValue], out: &mut Vec<u8>) -> Result<(), Reject> {
    if args.is_empty() {
        return Err(Reject::BadJson("empty command"));
    }
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        let text = match arg {
            JsonValue::String(s) => s.clone(),
            JsonValue::Number(n) => n.to_string(),
            _ => return Err(Reject::BadJson("arguments must be strings or numbers")),
        };
        out.extend_from_slice(format!("${}\r\n", text.len()).as_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

trait RespText {
    fn to_string_resp(&self) -> String;
}

impl RespText for redis::ServerError {
    /// `ERR message`, as Redis wrote it.
    fn to_string_resp(&self) -> String {
        match self.details() {
            Some(d) => format!("{} {d}", self.code()),
            None => self.code().to_owned(),
        }
    }
}

/// A reply as Upstash renders it: nil `null`, integers numbers, strings strings (base64 when
/// asked, except `OK`; otherwise invalid UTF-8 becomes U+FFFD), arrays arrays.
fn to_json(v: &Value, b64: bool) -> JsonValue {
    let text = |bytes: &[u8]| -> JsonValue {
        if b64 {
            JsonValue::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            JsonValue::String(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    match v {
        Value::Nil => JsonValue::Null,
        Value::Int(i) => json!(i),
        Value::BulkString(b) => text(b),
        Value::SimpleString(s) if s == "OK" => json!("OK"),
        Value::SimpleString(s) => text(s.as_bytes()),
        Value::Okay => json!("OK"),
        Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
            JsonValue::Array(items.iter().map(|i| to_json(i, b64)).collect())
        }
        Value::Map(pairs) => JsonValue::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [to_json(k, b64), to_json(v, b64)])
                .collect(),
        ),
        Value::Attribute { data, .. } => to_json(data, b64),
        Value::Double(d) => serde_json::Number::from_f64(*d)
            .map(JsonValue::Number)
            .unwrap_or_else(|| JsonValue::String(d.to_string())),
        Value::Boolean(b) => json!(i64::from(*b)),
        Value::VerbatimString { text: t, .. } => text(t.as_bytes()),
        Value::BigNumber(digits) => JsonValue::String(String::from_utf8_lossy(digits).into_owned()),
        Value::ServerError(e) => JsonValue::String(e.to_string_resp()),
        _ => JsonValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_commands_become_resp() {
        let single = to_resp(br#"["SET","k","v","EX",100]"#, false).expect("valid");
        assert_eq!(
            &single[..],
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$3\r\n100\r\n"
        );
        let pipe = to_resp(br#"[["PING"],["GET","\u00e9"]]"#, true).expect("valid");
        assert_eq!(
            &pipe[..],
            "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$2\r\né\r\n".as_bytes()
        );
        for (bad, p) in [
            (&br#"{"a":1}"#[..], false),
            (b"[]", false),
            (b"[]", true),
            (br#"["SET",null]"#, false),
            (br#"["PING"]"#, true),
            (b"nope", false),
        ] {
            assert!(to_resp(bad, p).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn replies_render_like_upstash() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::Int(3),
            Value::BulkString(vec![0xff, b'a']),
            Value::Okay,
        ]);
        assert_eq!(to_json(&v, false), json!([null, 3, "\u{fffd}a", "OK"]));
        assert_eq!(to_json(&v, true), json!([null, 3, "/2E=", "OK"]));
    }
}
