//! Load client for `make bench`: single-input latency (sequential requests) and throughput
//! (concurrent requests) of `POST /v1/embeddings` over HTTP.
//!
//!   cargo build --release -p semcache-embedder --bins --examples
//!   target/release/examples/bench_embedder [--url http://127.0.0.1:8082]
//!
//! Without --url it starts target/release/semcache-embedder (next to this example's directory,
//! or --server PATH) on a free port and stops it afterwards. Prints one JSON line on stdout:
//! {"embedder_p50_ms":..,"embedder_p99_ms":..,"embedder_eps":..}; details go to stderr.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;

/// Short prompts of the kind a semantic cache sees, 8 to 32 word pieces each (with [CLS]/[SEP]).
const PROMPTS: &[&str] = &[
    "How do I reset my password?",
    "What is the capital of France?",
    "Explain the difference between a process and a thread.",
    "Write a haiku about autumn leaves.",
    "What are the health benefits of green tea?",
    "Translate 'good morning' into Spanish, French and German.",
    "How many days are there in a leap year?",
    "Give me three ideas for a birthday party for a ten year old.",
    "What is the time complexity of quicksort in the worst case?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "Why is the sky blue?",
    "How do I convert a string to an integer in Python?",
    "What's a good recipe for vegetarian lasagna with spinach and ricotta?",
    "Can you recommend a science fiction novel similar to Dune?",
    "What is the difference between TCP and UDP, and when should I use each?",
    "Explain how a semantic cache for large language model APIs decides that two prompts mean the same thing.",
];

#[derive(Parser)]
struct Args {
    /// Base URL of a running server; without it, one is started.
    #[arg(long)]
    url: Option<String>,
    /// Server binary to start when --url is absent.
    #[arg(long)]
    server: Option<PathBuf>,
    /// Sequential requests timed for latency (after --warmup untimed ones).
    #[arg(long, default_value_t = 300)]
    requests: usize,
    #[arg(long, default_value_t = 30)]
    warmup: usize,
    /// Concurrent clients for the throughput phase.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Length of the throughput phase in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Pid of the server given by --url, to report its CPU time (known when spawned).
    #[arg(long)]
    server_pid: Option<u32>,
}

/// User + system CPU seconds of a process, from /proc (Linux); `None` elsewhere.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// A server this client started; killed on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(path: Option<PathBuf>) -> anyhow::Result<(Spawned, String)> {
    let path = match path {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .context("cannot locate the target directory")?
            .join("semcache-embedder"),
    };
    let mut child = Command::new(&path)
        .args(["--listen", "127.0.0.1:0", "--log", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", path.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let guard = Spawned(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(url) = line.trim().strip_prefix("listening on ") else {
        bail!("server did not start: {line:?}");
    };
    Ok((guard, url.to_string()))
}

async fn embed_one(client: &reqwest::Client, url: &str, text: &str) -> anyhow::Result<u16> {
    let resp = client
        .post(url)
        .json(&json!({"input": text, "model": "all-MiniLM-L6-v2"}))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await?;
    if status == 200 && body.len() < 1000 {
        bail!("short response body");
    }
    Ok(status)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (server, base) = match args.url {
        Some(u) => (None, u.trim_end_matches('/').to_string()),
        None => {
            let (s, u) = spawn_server(args.server)?;
            (Some(s), u)
        }
    };
    let pid = args
        .server_pid
        .or_else(|| server.as_ref().map(|s| s.0.id()));
    let url = format!("{base}/v1/embeddings");
    let client = reqwest::Client::new();

    // Latency: one request at a time, one input each.
    for i in 0..args.warmup {
        embed_one(&client, &url, PROMPTS[i % PROMPTS.len()]).await?;
    }
    let mut lat = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        let t = Instant::now();
        let status = embed_one(&client, &url, PROMPTS[i % PROMPTS.len()]).await?;
        if status != 200 {
            bail!("latency request failed with {status}");
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));

    // Throughput: `concurrency` clients, each sending single-input requests back to back.
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let cpu0 = pid.and_then(cpu_seconds);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for c in 0..args.concurrency {
        let (client, url, ok, refused) = (client.clone(), url.clone(), ok.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                match embed_one(&client, &url, PROMPTS[i % PROMPTS.len()]).await? {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    429 => refused.fetch_add(1, Ordering::Relaxed),
                    s => bail!("throughput request failed with {s}"),
                };
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let eps = ok.load(Ordering::Relaxed) as f64 / secs;
    let cpu = cpu0.zip(pid.and_then(cpu_seconds)).map(|(a, b)| b - a);

    eprintln!(
        "latency: {} sequential requests, p50 {p50:.2} ms, p90 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        lat.len(),
        percentile(&lat, 0.9),
        lat[lat.len() - 1]
    );
    eprintln!(
        "throughput: {} clients for {secs:.1} s, {} ok, {} refused (429), {eps:.0} embeddings/s",
        args.concurrency,
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    if let Some(cpu) = cpu {
        // On a shared machine the server gets only part of the cores; its own CPU time per
        // embedding says what the cores would give it alone.
        let per = cpu / ok.load(Ordering::Relaxed).max(1) as f64;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        eprintln!(
            "server CPU: {cpu:.1} s over {secs:.1} s ({:.2} cores), {:.2} ms per embedding; \
             CPU-bound capacity on {cores} idle cores ≈ {:.0} embeddings/s",
            cpu / secs,
            per * 1e3,
            cores as f64 / per
        );
    }
    println!(
        "{}",
        json!({
            "embedder_p50_ms": (p50 * 100.0).round() / 100.0,
            "embedder_p99_ms": (p99 * 100.0).round() / 100.0,
            "embedder_eps": eps.round(),
        })
    );
    Ok(())
}
