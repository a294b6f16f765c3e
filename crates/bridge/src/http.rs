//! HTTP surface: `POST /v1/resp`, `GET /healthz`, `GET /metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use redis::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::backend::{Backend, BackendError};
use crate::metrics::{Metrics, RedisErrorKind};
use crate::policy::{printable, AllowList};
use crate::resp::{self, FrameLimits, ParseError};

pub const RESP_CONTENT_TYPE: &str = "application/x-redis-resp";

/// SHA-256 of the bearer token. Comparing digests in constant time hides both the token's
/// bytes and its length.
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn new(token: &[u8]) -> Self {
        Self(Sha256::digest(token).into())
    }

    fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        self.0.ct_eq(&digest).into()
    }
}

pub struct AppState {
    pub backend: Backend,
    pub policy: AllowList,
    pub frame_limits: FrameLimits,
    pub max_body_bytes: usize,
    /// `None` only with `--insecure-no-auth`.
    pub token: Option<TokenDigest>,
    pub in_flight: Semaphore,
    pub max_in_flight: usize,
    pub redis_timeout: Duration,
    pub metrics: Metrics,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/resp", post(resp_handler))
        .route("/", post(crate::upstash::single))
        .route("/pipeline", post(crate::upstash::pipeline))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Why a request did not get a 200. The body of the error response is the `Display` text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Reject {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("too many requests in flight")]
    Busy,
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("could not read request body")]
    BadBody,
    #[error("invalid JSON command: {0}")]
    BadJson(&'static str),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("command not allowed: {0}")]
    Forbidden(String),
    #[error("redis unreachable")]
    Unavailable,
    #[error("redis timed out")]
    Timeout,
    #[error("unexpected reply from redis")]
    Protocol,
}

impl Reject {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Reject::Unauthorized => StatusCode::UNAUTHORIZED,
            Reject::Busy => StatusCode::TOO_MANY_REQUESTS,
            Reject::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::Parse(e) if e.is_limit() => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::BadBody | Reject::BadJson(_) | Reject::Parse(_) => StatusCode::BAD_REQUEST,
            Reject::Forbidden(_) => StatusCode::FORBIDDEN,
            Reject::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reject::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Reject::Protocol => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let mut res = (self.status(), format!("{self}\n")).into_response();
        if matches!(self, Reject::Unauthorized) {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

async fn resp_handler(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(&state, &headers, body, Ok, |result| match result {
        Ok(replies) => {
            let mut out = Vec::with_capacity(256);
            replies.iter().for_each(|v| resp::encode(v, &mut out));
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(RESP_CONTENT_TYPE),
                )],
                out,
            )
                .into_response()
        }
        Err(reject) => reject.into_response(),
    })
    .await
}

/// Every command endpoint (`/v1/resp` and the Upstash ones): `run`, a rejection logged, the
/// outcome rendered in the endpoint's own format, and the request counted in the metrics with its
/// status and latency, so all endpoints are logged and measured alike.
pub(crate) async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    to_resp: impl FnOnce(Bytes) -> Result<Bytes, Reject>,
    render: impl FnOnce(Result<Vec<Value>, Reject>) -> Response,
) -> Response {
    let started = Instant::now();
    let result = run(state, headers, body, to_resp).await;
    if let Err(reject) = &result {
        tracing::debug!(status = reject.status().as_u16(), reason = %reject, "rejected");
    }
    let response = render(result);
    state
        .metrics
        .request(response.status().as_u16(), started.elapsed());
    response
}

/// The request path shared by every command endpoint: token, in-flight slot, bounded body,
/// `to_resp` (identity for /v1/resp, JSON to RESP frames for the Upstash endpoints), bounded
/// parse, allow-list, then Redis under the timeout. Returns one reply per command.
async fn run(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    to_resp: impl FnOnce(Bytes) -> Result<Bytes, Reject>,
) -> Result<Vec<Value>, Reject> {
    // Cheap checks first: no unauthenticated or excess request gets its body read.
    if let Some(token) = &state.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))
            .ok_or(Reject::Unauthorized)?;
        if !token.matches(presented) {
            return Err(Reject::Unauthorized);
        }
    }
    let _permit = state.in_flight.try_acquire().map_err(|_| Reject::Busy)?;

    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(Reject::BodyTooLarge(state.max_body_bytes));
    }
    let body = Limited::new(body, state.max_body_bytes)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Reject::BodyTooLarge(state.max_body_bytes)
            } else {
                Reject::BadBody
            }
        })?
        .to_bytes();

    let pipeline = resp::parse_pipeline(to_resp(body)?, &state.frame_limits)?;
    // All-or-nothing: one forbidden command rejects the request before anything runs.
    let mut indices = Vec::with_capacity(pipeline.len());
    for i in 0..pipeline.len() {
        let name = pipeline.name(i);
        let index = state
            .policy
            .position(name)
            .ok_or_else(|| Reject::Forbidden(printable(name)))?;
        indices.push(index);
    }
    indices.iter().for_each(|&i| state.metrics.command(i));

    let replies =
        match tokio::time::timeout(state.redis_timeout, state.backend.execute(&pipeline)).await {
            Ok(Ok(replies)) => replies,
            Ok(Err(e)) => return Err(backend_reject(state, &e)),
            Err(_elapsed) => return Err(backend_reject(state, &BackendError::Timeout)),
        };

    let errors = replies
        .iter()
        .filter(|v| matches!(v, Value::ServerError(_)))
        .count();
    if errors > 0 {
        state
            .metrics
            .redis_error(RedisErrorKind::Reply, errors as u64);
    }
    Ok(replies)
}

fn backend_reject(state: &AppState, e: &BackendError) -> Reject {
    tracing::warn!(error = %e, "redis request failed");
    let (kind, reject) = match e {
        BackendError::Unavailable(_) => (RedisErrorKind::Unavailable, Reject::Unavailable),
        BackendError::Timeout => (RedisErrorKind::Timeout, Reject::Timeout),
        BackendError::Protocol(_) => (RedisErrorKind::Protocol, Reject::Protocol),
    };
    state.metrics.redis_error(kind, 1);
    reject
}

/// The credentials of `Bearer <token>` (scheme case-insensitive, per RFC 9110).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
        .filter(|t| !t.is_empty())
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let result = tokio::time::timeout(state.redis_timeout, state.backend.health())
        .await
        .unwrap_or_else(|_| Err("redis timed out".into()));
    match result {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let in_flight = state.max_in_flight - state.in_flight.available_permits();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(in_flight),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer"), None);
    }

    #[test]
    fn token_digest_compares() {
        let t = TokenDigest::new(b"s3cret");
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b""));
    }
}
