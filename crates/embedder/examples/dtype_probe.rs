//! How much f16 / bf16 weight storage changes the embeddings:
//! `cargo run --release -p semcache-embedder --example dtype_probe`
//!
//! Embeds every question of testdata/eval (each pair's cached and new user message) and the
//! reference inputs with f32, f16 and bf16 weights, and prints per type: cosine to the f32
//! embedding (min / mean), and how far the cosine distance of each eval pair moves (max / mean
//! absolute change, and how many pairs cross the cache's 0.18 threshold). Also the wall time of a
//! single-input forward pass (no HTTP) back-to-back, after evicting the caches, and after idling.

use std::sync::Arc;
use std::time::Instant;

use semcache_embedder::config::find_model_dir;
use semcache_embedder::forward::Encoder;
use semcache_embedder::linear::WeightDtype;
use semcache_embedder::tokenize::TextTokenizer;
use semcache_embedder::weights::Weights;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_ms;

const THRESHOLD: f64 = 0.18;

fn last_user(v: &serde_json::Value) -> Option<String> {
    v["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] == "user")?["content"]
        .as_str()
        .map(str::to_owned)
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Rounds of the timing loop (`DTYPE_PROBE_ROUNDS`, default 60).
fn rounds() -> usize {
    std::env::var("DTYPE_PROBE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn main() -> anyhow::Result<()> {
    let dir = find_model_dir()?;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata");
    let mut pairs: Vec<(String, String)> = Vec::new();
    for file in ["eval/single.jsonl", "eval/conversations.jsonl"] {
        for line in std::fs::read_to_string(format!("{root}/{file}"))?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if let (Some(a), Some(b)) = (last_user(&v["cached"]), last_user(&v["query"])) {
                pairs.push((a, b));
            }
        }
    }
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!(
        "{root}/embeddings/reference.json"
    ))?)?;
    let mut texts: Vec<String> = pairs
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    texts.extend(
        reference["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["text"].as_str().map(str::to_owned)),
    );
    texts.sort();
    texts.dedup();
    let tok = TextTokenizer::from_dir(&dir, 256)?;
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tok.encode(t))
        .collect::<Result<_, _>>()?;
    let index = |t: &str| texts.binary_search_by(|x| x.as_str().cmp(t)).unwrap_or(0);
    eprintln!("{} pairs, {} distinct texts", pairs.len(), texts.len());

    let mut all = Vec::new();
    let mut encoders = Vec::new();
    let mut dtypes = vec![WeightDtype::F32, WeightDtype::F16, WeightDtype::Bf16];
    if semcache_embedder::amx::available() {
        dtypes.push(WeightDtype::Bf16Amx);
    }
    for dtype in dtypes {
        let w = Arc::new(Weights::load_as(&dir, dtype)?);
        let mut enc = Encoder::new(w.clone(), 1)?;
        let dim = enc.dim();
        let mut out = vec![0.0f32; ids.len() * dim];
        for (s, o) in ids.iter().zip(out.chunks_exact_mut(dim)) {
            enc.embed(&[s], o)?;
        }
        all.push((dtype, out, dim));
        encoders.push((dtype, Encoder::new(w, 2)?));
    }

    // Single-input forward passes of a 9-token sentence on a 2-thread pool (as the server runs
    // them), dtypes and four conditions interleaved: right after the previous pass, after
    // streaming 256 MiB through the caches (weights and TLB entries evicted), and after
    // sleeping 3 or 10 ms (threads parked, as between requests). Wall and process CPU time.
    let s = tok.encode("How do I reset my password?")?;
    let mut o = vec![0.0f32; 384];
    let mut junk = vec![1u8; 256 << 20];
    let conditions = [
        "back-to-back",
        "after eviction",
        "after 3 ms idle",
        "after 10 ms idle",
    ];
    let mut times = vec![vec![(Vec::new(), Vec::new()); conditions.len()]; encoders.len()];
    for i in 0..rounds() {
        for (e, (_, enc)) in encoders.iter_mut().enumerate() {
            for (c, (wall, cpu)) in times[e].iter_mut().enumerate() {
                enc.embed(&[&s], &mut o)?;
                match c {
                    1 => {
                        for j in (0..junk.len()).step_by(64) {
                            junk[j] = junk[j].wrapping_add(1);
                        }
                    }
                    2 => std::thread::sleep(std::time::Duration::from_millis(3)),
                    3 => std::thread::sleep(std::time::Duration::from_millis(10)),
                    _ => {}
                }
                let (t0, c0) = (Instant::now(), cpu_ms());
                enc.embed(&[&s], &mut o)?;
                if i >= 3 {
                    wall.push(t0.elapsed().as_secs_f64() * 1e3);
                    cpu.push(cpu_ms() - c0);
                }
            }
        }
    }
    std::hint::black_box(&junk);
    let p50 = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\nOne 9-token input, no HTTP, 2 threads: p50 wall ms (p50 process CPU ms)\n");
    println!("| weights | {} |", conditions.join(" | "));
    println!("|---|{}", "---|".repeat(conditions.len()));
    for ((dtype, _), t) in encoders.iter().zip(&times) {
        let cells: Vec<String> = t
            .iter()
            .map(|(w, c)| format!("{:.2} ({:.2})", p50(w), p50(c)))
            .collect();
        println!("| {dtype:?} | {} |", cells.join(" | "));
    }
    println!();

    let (_, base, dim) = &all[0];
    let emb = |v: &[f32], i: usize| v[i * dim..(i + 1) * dim].to_vec();
    println!("| weights | cosine to f32: min | mean | pair distance change: max | mean | pairs crossing 0.18 |");
    println!("|---|---|---|---|---|---|");
    for (dtype, out, _) in &all[1..] {
        let cos: Vec<f64> = (0..texts.len())
            .map(|i| dot(&emb(out, i), &emb(base, i)))
            .collect();
        let (mut max_d, mut sum_d, mut crossing) = (0.0f64, 0.0, 0);
        for (a, b) in &pairs {
            let (i, j) = (index(a), index(b));
            let d0 = 1.0 - dot(&emb(base, i), &emb(base, j));
            let d1 = 1.0 - dot(&emb(out, i), &emb(out, j));
            max_d = max_d.max((d1 - d0).abs());
            sum_d += (d1 - d0).abs();
            if (d0 <= THRESHOLD) != (d1 <= THRESHOLD) {
                crossing += 1;
            }
        }
        println!(
            "| {dtype:?} | {:.6} | {:.7} | {:.5} | {:.6} | {crossing} of {} |",
            cos.iter().copied().fold(1.0, f64::min),
            cos.iter().sum::<f64>() / cos.len() as f64,
            max_d,
            sum_d / pairs.len() as f64,
            pairs.len()
        );
    }
    Ok(())
}
