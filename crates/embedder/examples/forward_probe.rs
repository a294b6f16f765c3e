//! In-process timing of the forward pass (no HTTP), used to choose the implementation:
//! `cargo run --release -p semcache-embedder --example forward_probe -- [threads] [dtype]`
//! Also checks the output against testdata/embeddings/reference.json.

use std::sync::Arc;
use std::time::Instant;

use clap::ValueEnum;
use semcache_embedder::config::find_model_dir;
use semcache_embedder::forward::Encoder;
use semcache_embedder::linear::WeightDtype;
use semcache_embedder::tokenize::TextTokenizer;
use semcache_embedder::weights::Weights;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_ms;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let dtype = match args.get(2) {
        Some(s) => WeightDtype::from_str(s, true).map_err(anyhow::Error::msg)?,
        None => WeightDtype::F32,
    };
    let dir = find_model_dir()?;
    let t0 = Instant::now();
    let w = Arc::new(Weights::load_as(&dir, dtype)?);
    let tok = TextTokenizer::from_dir(&dir, w.max_seq_length)?;
    eprintln!("load {:?}", t0.elapsed());
    let mut enc = Encoder::new(w, threads)?;
    let dim = enc.dim();

    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/embeddings/reference.json"
    ))?)?;
    let mut worst: f64 = 1.0;
    for item in reference["items"].as_array().into_iter().flatten() {
        let ids = tok.encode(item["text"].as_str().unwrap_or_default())?;
        assert_eq!(ids.len() as u64, item["tokens"].as_u64().unwrap_or(0));
        let mut out = vec![0.0; dim];
        enc.embed(&[&ids], &mut out)?;
        let r: Vec<f64> = item["embedding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_f64())
            .collect();
        let dot: f64 = out.iter().zip(&r).map(|(a, b)| *a as f64 * b).sum();
        let nr: f64 = r.iter().map(|v| v * v).sum::<f64>().sqrt();
        worst = worst.min(dot / nr);
    }
    eprintln!("worst cosine vs reference: {worst:.8}");

    let sentences = [
        "How do I reset my password?",
        "What is the capital of France and what is its population?",
        "Explain the difference between a process and a thread in operating systems.",
    ];
    for s in sentences {
        let ids = tok.encode(s)?;
        let mut out = vec![0.0; dim];
        for _ in 0..20 {
            enc.embed(&[&ids], &mut out)?;
        }
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let c = cpu_ms();
            enc.embed(&[&ids], &mut out)?;
            cpu.push(cpu_ms() - c);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        eprintln!(
            "{} tokens: wall p50 {:.2} ms  p90 {:.2} ms; process cpu p50 {:.2} ms",
            ids.len(),
            times[100],
            times[180],
            cpu[100]
        );
    }
    let long = "Sentence about caching, embeddings, latency and throughput of proxies. ".repeat(25);
    for (batch, text) in [(16, None), (64, None), (16, Some(long.as_str()))] {
        let ids: Vec<Vec<u32>> = (0..batch)
            .map(|i| tok.encode(text.unwrap_or(sentences[i % 3])))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let mut out = vec![0.0; dim * batch];
        enc.embed(&refs, &mut out)?;
        let t = Instant::now();
        let c = cpu_ms();
        let reps = 4;
        for _ in 0..reps {
            enc.embed(&refs, &mut out)?;
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu = (cpu_ms() - c) / 1e3;
        let tokens: usize = ids.iter().map(Vec::len).sum::<usize>() * reps;
        eprintln!(
            "batch {batch} x {} tokens: wall {:.1} ms/batch, {:.0} embeddings/s; process cpu {:.1} ms/batch, {:.1} GFLOP/s",
            ids[0].len(),
            secs * 1e3 / reps as f64,
            (batch * reps) as f64 / secs,
            cpu * 1e3 / reps as f64,
            tokens as f64 * 21.2e6 / cpu / 1e9
        );
    }
    Ok(())
}
