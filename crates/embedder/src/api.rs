//! The HTTP API: OpenAI's `POST /v1/embeddings`, Azure OpenAI's
//! `POST /openai/deployments/{name}/embeddings`, and `GET /healthz`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use crate::batcher::{QueueHandle, SubmitError};
use crate::tokenize::TextTokenizer;

/// Inputs with more text than this are tokenised on the blocking pool, off the async workers.
const INLINE_TOKENIZE_BYTES: usize = 4096;

pub struct AppState {
    pub tokenizer: Arc<TextTokenizer>,
    pub queue: QueueHandle,
    /// Reported as `model` when the request names none.
    pub model_name: String,
    pub dim: usize,
    pub max_inputs: usize,
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/embeddings", post(openai_embeddings))
        .route(
            "/openai/deployments/{name}/embeddings",
            post(azure_embeddings),
        )
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    fn too_large(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: Some("request_too_large"),
        }
    }

    fn server(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

/// A validated request.
struct EmbeddingRequest {
    inputs: Vec<String>,
    model: Option<String>,
    encoding: Encoding,
}

fn parse_request(body: &[u8], dim: usize, max_inputs: usize) -> Result<EmbeddingRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}"), None))?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::invalid(
            "the request body must be a JSON object",
            None,
        ));
    };
    let inputs = match obj.remove("input") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "'input' is a required property",
                Some("input"),
            ))
        }
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(ApiError::invalid(
                    "'input' must not be an empty array",
                    Some("input"),
                ));
            }
            if items.len() > max_inputs {
                return Err(ApiError::too_large(
                    format!(
                        "'input' has {} items; at most {max_inputs} are accepted per request",
                        items.len()
                    ),
                    Some("input"),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    Value::Number(_) | Value::Array(_) => Err(ApiError::invalid(
                        format!(
                            "'input[{i}]' is not a string: token arrays are not supported, \
                             send text"
                        ),
                        Some("input"),
                    )),
                    other => Err(ApiError::invalid(
                        format!("'input[{i}]' must be a string, not {}", type_name(&other)),
                        Some("input"),
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        Some(other) => {
            return Err(ApiError::invalid(
                format!(
                    "'input' must be a string or an array of strings, not {}",
                    type_name(&other)
                ),
                Some("input"),
            ))
        }
    };
    if let Some(i) = inputs.iter().position(|s| s.is_empty()) {
        let name = if inputs.len() == 1 {
            "'input'".to_string()
        } else {
            format!("'input[{i}]'")
        };
        return Err(ApiError::invalid(
            format!("{name} must not be an empty string"),
            Some("input"),
        ));
    }
    let model = match obj.remove("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(ApiError::invalid(
                format!("'model' must be a string, not {}", type_name(&other)),
                Some("model"),
            ))
        }
    };
    let encoding = match obj.remove("encoding_format") {
        None | Some(Value::Null) => Encoding::Float,
        Some(Value::String(s)) if s == "float" => Encoding::Float,
        Some(Value::String(s)) if s == "base64" => Encoding::Base64,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("'encoding_format' must be \"float\" or \"base64\", not {other}"),
                Some("encoding_format"),
            ))
        }
    };
    match obj.remove("dimensions") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64() == Some(dim as u64) => {}
        Some(other) => {
            return Err(ApiError::invalid(
                format!("'dimensions' must be {dim} for this model, not {other}"),
                Some("dimensions"),
            ))
        }
    }
    Ok(EmbeddingRequest {
        inputs,
        model,
        encoding,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Serialize)]
struct EmbeddingResponse {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: EmbeddingData,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingData {
    Float(Vec<f32>),
    Base64(String),
}

/// Token counts: word pieces the model saw, [CLS] and [SEP] included, after truncation.
#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

async fn openai_embeddings(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    embed(st, body).await
}

/// Azure OpenAI's path; the deployment name and `api-version` are accepted and not checked.
async fn azure_embeddings(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    embed(st, body).await
}

async fn embed(
    st: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large("the request body is larger than this server accepts", None)
        } else {
            ApiError::invalid(format!("cannot read the request body: {e}"), None)
        }
    })?;
    let req = parse_request(&body, st.dim, st.max_inputs)?;
    drop(body);

    let text_bytes: usize = req.inputs.iter().map(String::len).sum();
    let tokenizer = st.tokenizer.clone();
    let inputs = req.inputs;
    let tokenize = move || -> Result<Vec<Vec<u32>>, ApiError> {
        inputs
            .iter()
            .map(|s| tokenizer.encode(s))
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::invalid(e.to_string(), Some("input")))
    };
    let seqs = if text_bytes <= INLINE_TOKENIZE_BYTES {
        tokenize()?
    } else {
        tokio::task::spawn_blocking(tokenize)
            .await
            .map_err(|e| ApiError::server(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
    };
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    let count = seqs.len();

    let reply = st.queue.submit(seqs).map_err(|e| match e {
        SubmitError::Overloaded => ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "the embedding server is overloaded (request queue full); retry later".into(),
            kind: "rate_limit_error",
            param: None,
            code: Some("queue_full"),
        },
        SubmitError::Stopped => ApiError::server(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    })?;
    let vectors = reply
        .await
        .map_err(|_| ApiError::server(StatusCode::SERVICE_UNAVAILABLE, "the model worker stopped"))?
        .map_err(|e| ApiError::server(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;

    let data = vectors
        .chunks_exact(st.dim)
        .take(count)
        .enumerate()
        .map(|(index, v)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: match req.encoding {
                Encoding::Float => EmbeddingData::Float(v.to_vec()),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                    EmbeddingData::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            },
        })
        .collect();
    Ok(Json(EmbeddingResponse {
        object: "list",
        data,
        model: req.model.unwrap_or_else(|| st.model_name.clone()),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
    .into_response())
}

async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    if st.queue.healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "model worker not running\n",
        )
            .into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "unknown path; use POST /v1/embeddings or \
                  POST /openai/deployments/{name}/embeddings"
            .into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this path".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("method_not_allowed"),
    }
}
