//! Micro-benchmark of one linear layer (thread CPU time): hot weights vs a rotation of distinct
//! weights as large as the model's. `cargo run --release -p semcache-embedder --example linear_probe`
use semcache_embedder::linear::{linear, Epilogue, PackedWeight};

fn cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscall wrapper writing into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() {
    let (k, n) = (384, 1536);
    let ws: Vec<PackedWeight> = (0..18)
        .map(|s| {
            PackedWeight::pack(
                &(0..k * n)
                    .map(|i| ((i + s) % 7) as f32 * 0.01)
                    .collect::<Vec<_>>(),
                k,
                n,
            )
        })
        .collect();
    for m in [1, 6, 9, 12, 16, 32, 96, 240] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0.0f32; m * n];
        for (label, count) in [("hot", 1), ("cold", ws.len())] {
            let reps = 2000 / m.max(4) * 4;
            let t = cpu_s();
            for r in 0..reps {
                linear(m, &a, k, &ws[r % count], &mut c, n, Epilogue::None, None);
            }
            let s = cpu_s() - t;
            let gf = (2 * m * k * n * reps) as f64 / s / 1e9;
            eprintln!(
                "m={m:4} {label:4}: {gf:6.1} GFLOP/s  {:.1} us/call",
                s / reps as f64 * 1e6
            );
        }
    }
}
