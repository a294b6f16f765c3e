//! Errors returned to clients, always in the OpenAI error shape
//! `{"error":{"message":..,"type":..,"param":null,"code":..}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong (bad JSON, missing field, bad switch header).
    #[error("{0}")]
    BadRequest(String),
    /// No such route.
    #[error("{0}")]
    NotFound(String),
    /// A failure the test asked for (`x-mock-status`, `embeddings_status`).
    #[error("mock upstream error {status} (injected)")]
    Injected {
        status: StatusCode,
        retry_after: Option<HeaderValue>,
    },
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Injected { status, .. } => *status,
        }
    }
}

/// OpenAI's `error.type` / `error.code` for a status, so clients (and the
/// filter) see what a real upstream would send.
fn kind_for(status: StatusCode) -> (&'static str, Option<&'static str>) {
    match status.as_u16() {
        400 => ("invalid_request_error", None),
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("not_found")),
        408 | 504 => ("timeout", None),
        429 => ("requests", Some("rate_limit_exceeded")),
        503 => ("server_error", Some("service_unavailable")),
        s if s >= 500 => ("server_error", None),
        _ => ("invalid_request_error", None),
    }
}

/// Body of an OpenAI error object.
pub fn error_body(status: StatusCode, message: &str) -> Vec<u8> {
    let (kind, code) = kind_for(status);
    let v = json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    });
    // Serialising a `Value` cannot fail.
    serde_json::to_vec(&v).unwrap_or_default()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Injected { .. } => format!(
                "The mock upstream failed with status {} because the request asked for it \
                 (x-mock-status or /control/config).",
                status.as_u16()
            ),
            other => other.to_string(),
        };
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            error_body(status, &message),
        )
            .into_response();
        if let Self::Injected {
            retry_after: Some(v),
            ..
        } = self
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
