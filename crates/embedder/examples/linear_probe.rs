//! Micro-benchmark of one 384→1536 linear layer, in process CPU time (steadier than wall time on
//! a busy machine): the packed AVX2 kernel against the `gemm` crate (which re-packs the weights on
//! every call, as a generic GEMM such as candle's CPU backend does), with the weights hot in cache
//! and cold (rotating over 18 matrices, 42 MiB, as big as the model's linear weights).
//! `cargo run --release -p semcache-embedder --example linear_probe`
use semcache_embedder::linear::{linear, Epilogue, PackedWeight};
use semcache_embedder::matmul::{matmul, MatRef};

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_ms;

fn main() {
    let (k, n) = (384, 1536);
    let raw: Vec<Vec<f32>> = (0..18)
        .map(|s| (0..k * n).map(|i| ((i + s) % 7) as f32 * 0.01).collect())
        .collect();
    let packed: Vec<PackedWeight> = raw.iter().map(|w| PackedWeight::pack(w, k, n)).collect();
    for m in [1, 9, 16, 32, 96, 240] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0.0f32; m * n];
        for (label, count) in [("hot", 1), ("cold", raw.len())] {
            let reps = 2000 / m.max(4) * 4;
            let mut line = format!("m={m:4} {label:4}:");
            for imp in ["packed", "gemm-crate"] {
                let t = cpu_ms() / 1e3;
                for r in 0..reps {
                    let i = r % count;
                    if imp == "packed" {
                        linear(m, &a, k, &packed[i], &mut c, n, Epilogue::None, None);
                    } else {
                        let b = MatRef::rows(&raw[i], n);
                        matmul(m, n, k, MatRef::rows(&a, k), b, &mut c, n, true);
                    }
                }
                let s = cpu_ms() / 1e3 - t;
                let gf = (2 * m * k * n * reps) as f64 / s / 1e9;
                line += &format!(
                    "  {imp} {gf:5.1} GFLOP/s ({:6.1} us)",
                    s / reps as f64 * 1e6
                );
            }
            eprintln!("{line}");
        }
    }
}
