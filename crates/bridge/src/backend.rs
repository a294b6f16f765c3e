//! The Redis side: one shared multiplexed connection (standalone, via `ConnectionManager`) or
//! one cluster connection, through which every parsed command is re-issued.

use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{ErrorKind, IntoConnectionInfo, RedisError, RetryMethod, TlsCertificates, Value};

use crate::resp::Pipeline;

/// How to reach Redis. Secrets live here only; nothing in this struct is ever logged.
#[derive(Clone)]
pub struct RedisConfig {
    /// One URL (standalone) or the cluster seed nodes.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Custom CA and/or client certificate for rediss://; `None` uses the system roots.
    pub tls: Option<TlsCertificates>,
    /// Bounds connecting and each reply; the HTTP layer applies the same bound overall.
    pub timeout: Duration,
}

/// Failures that are not a Redis reply: they become HTTP status codes, not `-ERR` lines.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("redis unreachable: {0}")]
    Unavailable(String),
    #[error("redis timed out")]
    Timeout,
    #[error("unexpected redis failure: {0}")]
    Protocol(String),
}

impl BackendError {
    pub fn from_redis(e: &RedisError) -> Self {
        if e.is_timeout() {
            return Self::Timeout;
        }
        match e.kind() {
            ErrorKind::Io
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::AuthenticationFailed
            | ErrorKind::InvalidClientConfig => Self::Unavailable(e.to_string()),
            // CLUSTERDOWN, TRYAGAIN, MASTERDOWN, LOADING, MOVED/ASK left over after the
            // client's own retries: the data is not reachable right now.
            ErrorKind::Server(_) if is_transient(e) => Self::Unavailable(e.to_string()),
            _ => Self::Protocol(e.to_string()),
        }
    }
}

fn is_transient(e: &RedisError) -> bool {
    !matches!(e.retry_method(), RetryMethod::NoRetry)
}

/// A command's own failure reported by Redis (WRONGTYPE, syntax, NOPERM...) stays in-band as
/// an error reply; everything else is a transport failure.
fn in_band_or_transport(e: RedisError) -> Result<Value, BackendError> {
    if matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) && !is_transient(&e) {
        let transport = BackendError::from_redis(&e);
        if let Some(errors) = e.into_server_errors() {
            if let Some((_, first)) = errors.first() {
                return Ok(Value::ServerError(first.clone()));
            }
        }
        return Err(transport);
    }
    Err(BackendError::from_redis(&e))
}

#[derive(Clone)]
pub enum Backend {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Backend {
    /// Creates the client without touching the network, so the bridge starts (and reports
    /// 503 on /healthz) while Redis is still down.
    pub fn new(cfg: &RedisConfig) -> Result<Self, RedisError> {
        if cfg.cluster {
            let mut builder = ClusterClientBuilder::new(cfg.urls.iter().map(String::as_str))
                .connection_timeout(cfg.timeout)
                .response_timeout(cfg.timeout)
                // Few quick retries: MOVED/ASK and failovers are retried, a dead cluster
                // answers 503 within the request timeout instead of hanging.
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100);
            if let Some(user) = &cfg.username {
                builder = builder.username(user);
            }
            if let Some(password) = &cfg.password {
                builder = builder.password(password);
            }
            if let Some(tls) = &cfg.tls {
                builder = builder.certs(tls.clone());
            }
            let client = builder.build()?;
            let conn = client.get_pending_async_connection_with_config(
                ClusterConfig::new()
                    .set_connection_timeout(cfg.timeout)
                    .set_response_timeout(cfg.timeout),
            );
            return Ok(Self::Cluster(conn));
        }
        let url = cfg.urls.first().map(String::as_str).unwrap_or_default();
        let info = url.into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &cfg.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &cfg.password {
            settings = settings.set_password(password);
        }
        let info = info.set_redis_settings(settings);
        let client = match &cfg.tls {
            Some(tls) => redis::Client::build_with_tls(info, tls.clone())?,
            None => redis::Client::open(info)?,
        };
        let config = ConnectionManagerConfig::new()
            // One attempt per reconnect: while Redis is down every request fails fast with
            // 503 (connection refused) and the next request starts a fresh attempt.
            .set_number_of_retries(0)
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout));
        Ok(Self::Standalone(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }

    /// Runs every command of `pipeline` and returns one reply per command, in request order.
    pub async fn execute(&self, pipeline: &Pipeline) -> Result<Vec<Value>, BackendError> {
        match self {
            Self::Standalone(conn) => {
                let mut pipe = redis::Pipeline::with_capacity(pipeline.len());
                for i in 0..pipeline.len() {
                    pipe.add_command(pipeline.to_cmd(i));
                }
                let replies = conn
                    .clone()
                    .req_packed_commands(&pipe, 0, pipeline.len())
                    .await
                    .map_err(|e| BackendError::from_redis(&e))?;
                check_count(replies, pipeline.len())
            }
            Self::Cluster(conn) => execute_cluster(conn, pipeline).await,
        }
    }

    /// Ready means Redis answers PING and has one of the cache's back ends: vector sets (VADD)
    /// or the query engine (FT.SEARCH: Redis Stack, Azure Managed Redis, valkey-search).
    pub async fn health(&self) -> Result<(), String> {
        let mut pipe = redis::Pipeline::with_capacity(2);
        pipe.add_command(redis::cmd("PING"));
        pipe.add_command(
            redis::cmd("COMMAND")
                .arg("INFO")
                .arg("VADD")
                .arg("FT.SEARCH")
                .clone(),
        );
        let replies = match self {
            Self::Standalone(conn) => conn.clone().req_packed_commands(&pipe, 0, 2).await,
            Self::Cluster(conn) => {
                // COMMAND INFO has no key: ask a node at random, like redis-rs would.
                conn.clone()
                    .route_pipeline(pipe, 0, 2, SingleNodeRoutingInfo::Random)
                    .await
            }
        }
        .map_err(|e| BackendError::from_redis(&e).to_string())?;
        health_from(&replies)
    }
}

/// The health verdict from the replies to `PING` and `COMMAND INFO VADD FT.SEARCH` (one entry
/// per name, nil for an unknown command).
fn health_from(replies: &[Value]) -> Result<(), String> {
    match replies {
        [Value::ServerError(e), _] => Err(format!("PING failed: {e}")),
        [_, Value::Array(info)] if info.iter().any(|v| *v != Value::Nil) => Ok(()),
        [_, _] => {
            Err("neither vector sets (VADD) nor the query engine (FT.SEARCH) is available".into())
        }
        _ => Err("unexpected reply to health check".into()),
    }
}

fn check_count(replies: Vec<Value>, expected: usize) -> Result<Vec<Value>, BackendError> {
    if replies.len() == expected {
        Ok(replies)
    } else {
        Err(BackendError::Protocol(format!(
            "expected {expected} replies, got {}",
            replies.len()
        )))
    }
}

/// Commands whose only key is their first argument (the cache's own commands). Anything else,
/// e.g. a multi-key DEL or a keyless command, is routed by redis-rs on its own. Not the
/// allow-list (`policy::DEFAULT_ALLOWED`), though much alike: this says how a command is routed,
/// that says whether it may run, and each has names the other must not.
const FIRST_KEY_COMMANDS: &[&str] = &[
    "VADD",
    "VSIM",
    "VREM",
    "VGETATTR",
    "VSETATTR",
    "VCARD",
    "VDIM",
    "VINFO",
    "VEMB",
    "VRANDMEMBER",
    "ZADD",
    "ZRANGE",
    "ZREM",
    "ZCARD",
    "ZSCORE",
    "EXPIRE",
    "PEXPIRE",
    "TTL",
    "PTTL",
    "GET",
    "SET",
    "HSET",
    "HGET",
    "HGETALL",
    "INCR",
];
const KEYS_ONLY_COMMANDS: &[&str] = &["DEL", "EXISTS", "UNLINK", "TOUCH"];

fn slot_route(pipeline: &Pipeline, i: usize) -> Option<Route> {
    let mut args = pipeline.command(i);
    let argc = args.len();
    let name = args.next()?;
    let is = |list: &[&str]| list.iter().any(|c| c.as_bytes().eq_ignore_ascii_case(name));
    if argc >= 2 && is(FIRST_KEY_COMMANDS) || argc == 2 && is(KEYS_ONLY_COMMANDS) {
        return args
            .next()
            .map(|key| Route::with_key(key, SlotAddr::Master));
    }
    None
}

enum Group {
    /// Commands of one slot, sent as one pipeline so their order is kept.
    Slot(Route, redis::Pipeline, Vec<usize>),
    Single(redis::Cmd, usize),
}

/// Cluster pipelines must not span slots, so the request runs in stages. Commands routed by
/// their single key are gathered into one sub-pipeline per slot (order kept within a slot), and
/// a stage's sub-pipelines go out concurrently. Any other command (keyless, multi-key) is a
/// barrier: it runs alone, after everything before it and before everything after it.
/// Commands on different slots within a stage have no relative order, as with any Redis
/// Cluster client. Replies are put back in request order.
async fn execute_cluster(
    conn: &ClusterConnection,
    pipeline: &Pipeline,
) -> Result<Vec<Value>, BackendError> {
    let mut replies = vec![Value::Nil; pipeline.len()];
    let mut stage: Vec<Group> = Vec::new();
    for i in 0..pipeline.len() {
        let Some(route) = slot_route(pipeline, i) else {
            run_stage(conn, std::mem::take(&mut stage), &mut replies).await?;
            let single = vec![Group::Single(pipeline.to_cmd(i), i)];
            run_stage(conn, single, &mut replies).await?;
            continue;
        };
        let existing = stage.iter_mut().find_map(|g| match g {
            Group::Slot(r, pipe, idx) if *r == route => Some((pipe, idx)),
            _ => None,
        });
        match existing {
            Some((pipe, idx)) => {
                pipe.add_command(pipeline.to_cmd(i));
                idx.push(i);
            }
            None => {
                let mut pipe = redis::Pipeline::new();
                pipe.add_command(pipeline.to_cmd(i));
                stage.push(Group::Slot(route, pipe, vec![i]));
            }
        }
    }
    run_stage(conn, stage, &mut replies).await?;
    Ok(replies)
}

async fn run_stage(
    conn: &ClusterConnection,
    stage: Vec<Group>,
    replies: &mut [Value],
) -> Result<(), BackendError> {
    let results = join_all(stage.into_iter().map(|g| run_group(conn.clone(), g))).await;
    for result in results {
        for (i, value) in result? {
            replies[i] = value;
        }
    }
    Ok(())
}

async fn run_group(
    mut conn: ClusterConnection,
    group: Group,
) -> Result<Vec<(usize, Value)>, BackendError> {
    match group {
        Group::Single(cmd, i) => {
            let value = match conn.req_packed_command(&cmd).await {
                Ok(v) => v,
                Err(e) => in_band_or_transport(e)?,
            };
            Ok(vec![(i, value)])
        }
        Group::Slot(route, pipe, idx) => {
            let n = idx.len();
            let replies = conn
                .route_pipeline(pipe, 0, n, SingleNodeRoutingInfo::SpecificNode(route))
                .await
                .map_err(|e| BackendError::from_redis(&e))?;
            Ok(idx.into_iter().zip(check_count(replies, n)?).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(known: [bool; 2]) -> Vec<Value> {
        let entry = |k: bool| if k { Value::Array(vec![]) } else { Value::Nil };
        vec![Value::Okay, Value::Array(known.map(entry).to_vec())]
    }

    #[test]
    fn healthy_with_either_back_end() {
        assert_eq!(health_from(&info([true, false])), Ok(()));
        assert_eq!(health_from(&info([false, true])), Ok(()));
        assert!(health_from(&info([false, false]))
            .unwrap_err()
            .contains("FT.SEARCH"));
        assert!(health_from(&[Value::Okay]).is_err());
    }
}
