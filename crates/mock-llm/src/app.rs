//! Routes, and the embeddings handler.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use serde_json::Value;

use crate::chat::{self, AzureQuery};
use crate::control::{self, bump};
use crate::embeddings;
use crate::encoding::gzip_layer;
use crate::error::ApiError;
use crate::respond::{self, Ids};
use crate::switches::Switches;
use crate::AppState;

/// Long conversations are the point of a cache benchmark; allow big bodies.
const MAX_BODY: usize = 32 * 1024 * 1024;

pub fn router(st: Arc<AppState>) -> Router {
    let model_routes = Router::new()
        .route("/v1/chat/completions", post(chat::chat))
        .route("/v1/completions", post(chat::completions))
        .route("/v1/embeddings", post(embed))
        .route(
            "/openai/deployments/{name}/chat/completions",
            post(chat::azure_chat),
        )
        .route(
            "/openai/deployments/{name}/completions",
            post(chat::azure_completions),
        )
        .route("/openai/deployments/{name}/embeddings", post(azure_embed))
        .route_layer(middleware::from_fn_with_state(st.clone(), gzip_layer));
    let control_routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/control/stats", get(control::stats))
        .route("/control/reset", post(control::reset))
        .route("/control/release/{token}", post(control::release))
        .route("/control/holds/{token}", get(control::observe_hold))
        .route(
            "/control/config",
            get(control::get_config).post(control::set_config),
        );
    model_routes
        .merge(control_routes)
        .fallback(respond::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(st)
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn embed(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    bump(&st.stats.embeddings_requests);
    let r = embed_inner(&st, &headers, &body, None).await;
    respond::finish(&st, r)
}

async fn azure_embed(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<AzureQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bump(&st.stats.embeddings_requests);
    bump(&st.stats.azure_requests);
    let r = match chat::azure_deployment(name, &q) {
        Ok(dep) => embed_inner(&st, &headers, &body, Some(&dep)).await,
        Err(e) => Err(e),
    };
    respond::finish(&st, r)
}

async fn embed_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    deployment: Option<&str>,
) -> Result<Response, ApiError> {
    let switches = Switches::from_headers(headers)?;
    let req = Value::Object(respond::json_object(body)?);
    let parsed = embeddings::parse(&req, deployment)?;
    respond::delay(
        switches
            .latency
            .unwrap_or_else(|| st.runtime.embeddings_delay()),
    )
    .await;
    // A per-request switch wins over the server-wide fault.
    let injected = switches.injected_error().or_else(|| {
        st.runtime
            .embeddings_status()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .map(|status| ApiError::Injected {
                status,
                retry_after: None,
            })
    });
    if let Some(e) = injected {
        return Err(e);
    }
    respond::hold(st, &switches).await;
    let ids = Ids::new(st, String::new());
    Ok(respond::json(
        st,
        &ids,
        &switches,
        &embeddings::response(&parsed),
    ))
}
