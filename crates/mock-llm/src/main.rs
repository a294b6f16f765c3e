//! `semcache-mock-llm`: an OpenAI-compatible chat-completions upstream for
//! semcache demos, tests and benchmarks. See the crate README.

mod answers;
mod app;
mod chat;
mod config;
mod control;
mod embeddings;
mod encoding;
mod error;
mod respond;
mod sse;
mod switches;

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, RuntimeConfig, StaticConfig};
use crate::control::{Holds, Stats};

/// Everything the handlers share.
pub struct AppState {
    pub cfg: StaticConfig,
    pub runtime: RuntimeConfig,
    pub stats: Stats,
    pub holds: Holds,
    pub seq: AtomicU64,
    /// Flips to `true` on SIGINT/SIGTERM so held requests let go.
    pub shutdown: watch::Receiver<bool>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = match &cli.log {
        Some(f) => EnvFilter::try_new(f).context("invalid --log filter")?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let st = Arc::new(AppState {
        cfg: StaticConfig {
            words_per_chunk: usize::from(cli.words_per_chunk),
            gzip_when_accepted: cli.gzip_when_accepted,
        },
        runtime: RuntimeConfig::new(&cli),
        stats: Stats::default(),
        holds: Holds::new(Duration::from_millis(cli.hold_timeout_ms)),
        seq: AtomicU64::new(0),
        shutdown: shutdown_rx,
    });
    let app = app::router(st);

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, latency_ms = cli.latency_ms, chunk_delay_ms = cli.chunk_delay_ms, "mock LLM ready");

    // No Nagle: SSE events are small and must leave as soon as they are written.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = shutdown_tx.send(true);
        })
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
