use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use semcache_embedder::api::{self, AppState};
use semcache_embedder::batcher::{self, WorkerOptions};
use semcache_embedder::config::{find_model_dir, Args};
use semcache_embedder::tokenize::TextTokenizer;
use semcache_embedder::weights::Weights;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_new(&args.log).context("invalid --log filter")?)
        .init();

    let dir = match &args.model_dir {
        Some(d) => d.clone(),
        None => find_model_dir()?,
    };
    let started = std::time::Instant::now();
    let dtype = args.weight_dtype();
    let weights = Arc::new(
        Weights::load_as(&dir, dtype)
            .with_context(|| format!("loading the model from {}", dir.display()))?,
    );
    let tokenizer = TextTokenizer::from_dir(&dir, weights.max_seq_length)?;
    tracing::info!(
        model_dir = %dir.display(),
        max_seq_length = weights.max_seq_length,
        dtype = ?dtype,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    let dim = weights.config.hidden_size;
    let (queue, jobs) = batcher::queue(args.queue as usize);
    let workers = batcher::spawn_workers(
        weights,
        jobs,
        &WorkerOptions {
            workers: args.workers,
            gemm_threads: args.gemm_threads,
            max_batch_tokens: args.max_batch_tokens,
        },
    )?;
    let state = Arc::new(AppState {
        tokenizer: Arc::new(tokenizer),
        queue,
        model_name: args.model_name.clone(),
        dim,
        max_inputs: args.max_inputs,
    });

    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        let shutdown = shutdown_signal().context("installing signal handlers")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
        drop(out);
        tracing::info!(%addr, "serving");
        axum::serve(listener, api::router(state, args.max_body_bytes))
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")
    })?;
    // Dropping the runtime drops any task still holding a queue handle; with the last handle
    // gone the workers finish what is queued and stop.
    drop(rt);
    workers.join();
    tracing::info!("stopped");
    Ok(())
}

/// Installs the SIGINT/SIGTERM handlers now (before the `listening on` line, so a signal sent
/// right after it cannot hit the default handler) and returns a future that completes on either.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}
