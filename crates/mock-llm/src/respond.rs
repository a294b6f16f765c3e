//! Plumbing shared by the model endpoints: body parsing, latency, holds,
//! JSON responses (whole or deliberately cut) and error accounting.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::control::bump;
use crate::error::ApiError;
use crate::sse;
use crate::switches::Switches;
use crate::AppState;

/// Parses a request body that must be a JSON object.
pub fn json_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "We could not parse the JSON body of your request: {e}"
        ))),
    }
}

/// `model` from the body, else the Azure deployment name.
pub fn model(
    body: &serde_json::Map<String, Value>,
    deployment: Option<&str>,
) -> Result<String, ApiError> {
    match (body.get("model"), deployment) {
        (Some(Value::String(m)), _) if !m.is_empty() => Ok(m.clone()),
        (None | Some(Value::Null), Some(d)) => Ok(d.to_owned()),
        (None | Some(Value::Null), None) => {
            Err(ApiError::bad_request("you must provide a model parameter"))
        }
        _ => Err(ApiError::bad_request("'model' must be a non-empty string")),
    }
}

/// `stream` and `stream_options.include_usage`.
pub fn stream_flags(body: &serde_json::Map<String, Value>) -> Result<(bool, bool), ApiError> {
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("'stream' must be a boolean")),
    };
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((stream, include_usage))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub async fn delay(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Non-stream `x-mock-hold`: wait before the response.
pub async fn hold(st: &AppState, switches: &Switches) {
    if let Some(token) = &switches.hold {
        st.holds.wait(token, &st.stats, st.shutdown.clone()).await;
    }
}

/// Identifiers shared by a response and its headers.
pub struct Ids {
    /// Canonical-request hash (the `[...]` in the answer).
    pub hash: String,
    /// Per-server sequence number, so each served response has a unique id:
    /// a replayed (cached) body shows an id the upstream already used.
    pub seq: u64,
}

impl Ids {
    pub fn new(st: &AppState, hash: String) -> Self {
        Self {
            hash,
            seq: st.seq.fetch_add(1, Relaxed),
        }
    }

    pub fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{}{:08x}", self.hash, self.seq)
    }

    fn decorate(&self, resp: &mut Response) {
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("req_mock_{:08x}", self.seq)) {
            h.insert("x-request-id", v);
        }
        if !self.hash.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.hash) {
                h.insert("x-mock-request-hash", v);
            }
        }
    }
}

/// A JSON 200 response, or (with `x-mock-truncate`) one whose body stops
/// halfway through its declared `content-length` and whose connection then breaks.
pub fn json(st: &AppState, ids: &Ids, switches: &Switches, value: &Value) -> Response {
    let bytes = Bytes::from(value.to_string());
    let mut resp = if switches.truncate.is_some() {
        bump(&st.stats.truncated_responses);
        let full_len = bytes.len();
        let mut r = Response::new(sse::cut_body(bytes.slice(..full_len / 2)));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(full_len));
        r
    } else {
        Response::new(Body::from(bytes))
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    ids.decorate(&mut resp);
    resp
}

pub fn event_stream(st: Arc<AppState>, ids: &Ids, job: sse::StreamJob) -> Response {
    let mut resp = Response::new(sse::spawn(job, st));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    ids.decorate(&mut resp);
    resp
}

/// Turns a handler result into a response, counting failures.
pub fn finish(st: &AppState, result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(r) => r,
        Err(e) => {
            match &e {
                ApiError::BadRequest(msg) => {
                    bump(&st.stats.bad_requests);
                    tracing::debug!(%msg, "bad request");
                }
                ApiError::Injected { .. } => bump(&st.stats.errors_injected),
                ApiError::NotFound(_) => {}
            }
            e.into_response()
        }
    }
}

pub async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::NotFound(format!("Unknown request URL: {}", uri.path())).into_response()
}
