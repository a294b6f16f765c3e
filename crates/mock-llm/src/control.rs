//! Observation and control for tests (loopback aid, not an OpenAI API):
//! request counters, hold/release gates and the runtime configuration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;

use crate::config::ConfigPatch;
use crate::error::ApiError;
use crate::AppState;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Counters of what the upstream served; all relaxed atomics.
        #[derive(Debug, Default)]
        pub struct Stats { $(pub $name: AtomicU64,)* }

        #[derive(Debug, Serialize)]
        pub struct StatsSnapshot { $(pub $name: u64,)* }

        impl Stats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Relaxed),)* }
            }
            /// Zeroes the counters; `holds_waiting` is a gauge and is kept.
            pub fn reset(&self) {
                $(if stringify!($name) != "holds_waiting" { self.$name.store(0, Relaxed); })*
            }
        }
    };
}

counters!(
    // Requests that reached a model endpoint (valid or not).
    chat_requests,
    completions_requests,
    embeddings_requests,
    azure_requests,
    // Outcomes.
    bad_requests,
    errors_injected,
    truncated_responses,
    streams_started,
    streams_completed,
    streams_aborted,
    // Gauge: requests currently waiting on an `x-mock-hold` token.
    holds_waiting,
);

pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct GateState {
    pub released: bool,
    pub waiting: u64,
}

/// Named gates for `x-mock-hold`. A release before the request arrives
/// counts too (the gate stays open), so tests need no ordering between the two.
#[derive(Debug)]
pub struct Holds {
    gates: Mutex<HashMap<String, Arc<watch::Sender<GateState>>>>,
    timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    Released,
    TimedOut,
    ShuttingDown,
}

/// Keeps the `waiting` count right even when the request is dropped mid-wait
/// (client gone).
struct Waiting<'a> {
    gate: Arc<watch::Sender<GateState>>,
    stats: &'a Stats,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.gate
            .send_modify(|s| s.waiting = s.waiting.saturating_sub(1));
        self.stats.holds_waiting.fetch_sub(1, Relaxed);
    }
}

impl Holds {
    pub fn new(timeout: Duration) -> Self {
        Self {
            gates: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    fn gate(&self, token: &str) -> Arc<watch::Sender<GateState>> {
        // A poisoned lock only means another request panicked mid-insert; the map is still usable.
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .entry(token.to_owned())
            .or_insert_with(|| Arc::new(watch::channel(GateState::default()).0))
            .clone()
    }

    /// Waits until `token` is released, the hold timeout passes or the server shuts down.
    pub async fn wait(
        &self,
        token: &str,
        stats: &Stats,
        mut shutdown: watch::Receiver<bool>,
    ) -> HoldOutcome {
        let gate = self.gate(token);
        let mut rx = gate.subscribe();
        gate.send_modify(|s| s.waiting += 1);
        stats.holds_waiting.fetch_add(1, Relaxed);
        let _waiting = Waiting {
            gate: gate.clone(),
            stats,
        };
        tokio::select! {
            _ = async { rx.wait_for(|s| s.released).await.is_ok() } => HoldOutcome::Released,
            _ = async { shutdown.wait_for(|down| *down).await.is_ok() } => HoldOutcome::ShuttingDown,
            _ = tokio::time::sleep(self.timeout) => {
                tracing::warn!(token, "x-mock-hold timed out; going on unreleased");
                HoldOutcome::TimedOut
            }
        }
    }

    pub fn release(&self, token: &str) -> GateState {
        let gate = self.gate(token);
        gate.send_modify(|s| s.released = true);
        let state = *gate.borrow();
        state
    }

    /// State of a gate, after waiting (bounded by the hold timeout) until at
    /// least `min_waiting` requests wait on it.
    pub async fn observe(&self, token: &str, min_waiting: u64) -> GateState {
        let gate = self.gate(token);
        let mut rx = gate.subscribe();
        let _ = tokio::time::timeout(
            self.timeout,
            rx.wait_for(|s| s.waiting >= min_waiting || s.released),
        )
        .await;
        let state = *gate.borrow();
        state
    }

    /// Forgets gates nobody waits on.
    pub fn clear_idle(&self) {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.retain(|_, g| g.borrow().waiting > 0);
    }
}

pub async fn stats(State(st): State<Arc<AppState>>) -> Json<StatsSnapshot> {
    Json(st.stats.snapshot())
}

pub async fn reset(State(st): State<Arc<AppState>>) -> Json<StatsSnapshot> {
    st.stats.reset();
    st.holds.clear_idle();
    Json(st.stats.snapshot())
}

pub async fn release(State(st): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let state = st.holds.release(&token);
    Json(json!({ "token": token, "released": true, "waiting": state.waiting })).into_response()
}

#[derive(Debug, Deserialize)]
pub struct ObserveQuery {
    #[serde(default)]
    wait_for: u64,
}

pub async fn observe_hold(
    State(st): State<Arc<AppState>>,
    Path(token): Path<String>,
    Query(q): Query<ObserveQuery>,
) -> Response {
    let state = st.holds.observe(&token, q.wait_for).await;
    Json(json!({ "token": token, "released": state.released, "waiting": state.waiting }))
        .into_response()
}

pub async fn get_config(State(st): State<Arc<AppState>>) -> Response {
    Json(st.runtime.snapshot()).into_response()
}

pub async fn set_config(
    State(st): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let patch: ConfigPatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid /control/config body: {e}")))?;
    if let Some(Some(code)) = patch.embeddings_status {
        let ok = code == 0
            || StatusCode::from_u16(code).is_ok_and(|s| s.is_client_error() || s.is_server_error());
        if !ok {
            return Err(ApiError::bad_request(
                "embeddings_status must be 0, null or a 4xx/5xx status",
            ));
        }
    }
    st.runtime.apply(&patch);
    Ok(Json(st.runtime.snapshot()).into_response())
}
