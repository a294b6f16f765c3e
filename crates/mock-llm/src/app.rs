//! Routes, the front door every model endpoint shares (OpenAI path and Azure
//! twin), and the embeddings handler.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{middleware, Router};
use serde::Deserialize;
use serde_json::Value;

use crate::chat;
use crate::control::{self, bump, Stats};
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
        .route("/v1/chat/completions", Endpoint::Chat.openai())
        .route("/v1/completions", Endpoint::Completions.openai())
        .route("/v1/embeddings", Endpoint::Embeddings.openai())
        .route(
            "/openai/deployments/{name}/chat/completions",
            Endpoint::Chat.azure(),
        )
        .route(
            "/openai/deployments/{name}/completions",
            Endpoint::Completions.azure(),
        )
        .route(
            "/openai/deployments/{name}/embeddings",
            Endpoint::Embeddings.azure(),
        )
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

/// The model endpoints. Each is served at its OpenAI path and at its Azure
/// `/openai/deployments/{name}/...` twin; the two handlers below do the
/// counting, the `api-version` check and the error accounting for all of
/// them, so the six routes cannot drift apart.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Chat,
    Completions,
    Embeddings,
}

impl Endpoint {
    /// This endpoint's request counter (valid and invalid requests alike).
    fn requests(self, stats: &Stats) -> &AtomicU64 {
        match self {
            Self::Chat => &stats.chat_requests,
            Self::Completions => &stats.completions_requests,
            Self::Embeddings => &stats.embeddings_requests,
        }
    }

    /// Serves one request; `deployment` is the Azure deployment name, which
    /// stands for the model when the body names none.
    async fn serve(
        self,
        st: Arc<AppState>,
        headers: &HeaderMap,
        body: &Bytes,
        deployment: Option<&str>,
    ) -> Result<Response, ApiError> {
        match self {
            Self::Chat => chat::chat(st, headers, body, deployment).await,
            Self::Completions => chat::completions(st, headers, body, deployment).await,
            Self::Embeddings => embed(&st, headers, body, deployment).await,
        }
    }

    /// `POST /v1/...`.
    fn openai(self) -> MethodRouter<Arc<AppState>> {
        post(
            move |State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes| async move {
                bump(self.requests(&st.stats));
                let r = self.serve(st.clone(), &headers, &body, None).await;
                respond::finish(&st, r)
            },
        )
    }

    /// `POST /openai/deployments/{name}/...`: counted as Azure too, and
    /// refused without `api-version`.
    fn azure(self) -> MethodRouter<Arc<AppState>> {
        post(
            move |State(st): State<Arc<AppState>>,
                  Path(name): Path<String>,
                  Query(q): Query<AzureQuery>,
                  headers: HeaderMap,
                  body: Bytes| async move {
                bump(self.requests(&st.stats));
                bump(&st.stats.azure_requests);
                let r = match azure_deployment(name, &q) {
                    Ok(dep) => self.serve(st.clone(), &headers, &body, Some(&dep)).await,
                    Err(e) => Err(e),
                };
                respond::finish(&st, r)
            },
        )
    }
}

#[derive(Debug, Deserialize)]
struct AzureQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

fn azure_deployment(name: String, q: &AzureQuery) -> Result<String, ApiError> {
    match q.api_version.as_deref() {
        Some(v) if !v.is_empty() => Ok(name),
        _ => Err(ApiError::bad_request(
            "Missing required query parameter 'api-version' (Azure OpenAI path)",
        )),
    }
}

async fn embed(
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
