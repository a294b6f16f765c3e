//! `semcache-bridge`: authenticated RESP-over-HTTP sidecar between the wasm filter and Redis.

mod backend;
mod config;
mod http;
mod metrics;
mod policy;
mod resp;
mod upstash;

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing_subscriber::EnvFilter;

use crate::backend::{Backend, RedisConfig};
use crate::config::{Args, LogFormat, REDIS_PASSWORD_ENV, TOKEN_ENV};
use crate::http::{AppState, TokenDigest};
use crate::policy::AllowList;
use crate::resp::FrameLimits;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(&args)?;
    let runtime = if args.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.worker_threads.into())
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // rediss:// uses rustls; name the crypto provider explicitly so it does not depend on which
    // provider features happen to be enabled in the dependency graph. An error only means a
    // provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let token = config::read_secret(args.token_file.as_deref(), TOKEN_ENV)?;
    let token = match (token, args.insecure_no_auth) {
        (Some(t), _) => Some(TokenDigest::new(t.as_bytes())),
        (None, true) => {
            tracing::warn!("--insecure-no-auth: serving without a bearer token");
            None
        }
        (None, false) => {
            bail!("no bearer token: set {TOKEN_ENV} or --token-file (or pass --insecure-no-auth)")
        }
    };
    let policy = match &args.allow_commands {
        Some(list) => AllowList::new(list).context("--allow-commands")?,
        None => AllowList::default_list(),
    };
    if args.max_in_flight == 0 || args.max_commands == 0 || args.max_args == 0 {
        bail!("--max-in-flight, --max-commands and --max-args must be at least 1");
    }

    let urls = args.redis_urls();
    if urls.is_empty() {
        bail!("--redis-url is empty");
    }
    let tls = config::tls_files(&args)?;
    if tls.is_some() && !urls.iter().all(|u| u.starts_with("rediss://")) {
        bail!("--redis-ca-file / --redis-client-cert-file need rediss:// URLs");
    }
    let redis = RedisConfig {
        urls,
        tls,
        cluster: args.cluster,
        username: args.redis_username.clone(),
        password: config::read_secret(args.redis_password_file.as_deref(), REDIS_PASSWORD_ENV)?,
        timeout: args.redis_timeout(),
    };
    let backend = Backend::new(&redis).context("invalid Redis configuration")?;

    let state = Arc::new(AppState {
        backend,
        metrics: metrics::Metrics::new(policy.names()),
        policy,
        frame_limits: FrameLimits {
            max_commands: args.max_commands,
            max_args: args.max_args,
            max_arg_bytes: args.max_arg_bytes,
        },
        max_body_bytes: args.max_body_bytes,
        token,
        in_flight: Semaphore::new(args.max_in_flight),
        max_in_flight: args.max_in_flight,
        redis_timeout: args.redis_timeout(),
    });

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        redis = %config::redact_urls(&redis.urls),
        cluster = redis.cluster,
        allow = %state.policy.names().join(","),
        "semcache-bridge started"
    );
    // The launcher and the tests wait for exactly this line on stdout.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

fn init_logging(args: &Args) -> anyhow::Result<()> {
    let filter = match &args.log {
        Some(f) => EnvFilter::try_new(f).context("--log")?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; axum then stops accepting and drains in-flight requests.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
