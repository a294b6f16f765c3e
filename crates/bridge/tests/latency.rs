//! Added latency of the bridge over a direct Redis round trip. Measures and prints only (no
//! timing assertions, machines differ); ignored by default. Run it on a release build:
//! `cargo test --release -p semcache-bridge --test latency -- --ignored --nocapture`

mod common;

use std::time::{Duration, Instant};

use common::*;

const ROUNDS: usize = 3000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

#[tokio::test]
#[ignore = "prints a latency report; run explicitly on a release build"]
async fn added_latency_report() {
    let redis = RedisServer::start(&[]);
    let bridge = Bridge::builder(&redis.url())
        .args(["--log", "warn"])
        .start();
    let client = http();

    // A cache lookup: VSIM over a 384-d FP32 vector plus a GET, as the filter sends it.
    let mut setup = redis.client();
    let v: Vec<f32> = (0..384).map(|i| (i as f32 * 0.37).sin()).collect();
    for j in 0..200 {
        let w: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, x)| x + ((i * j) % 7) as f32 * 0.01)
            .collect();
        let _: i64 = redis::cmd("VADD")
            .arg("sc:{b}:vs")
            .arg("FP32")
            .arg(fp32(&w))
            .arg(format!("e{j}"))
            .query(&mut setup)
            .expect("VADD");
    }
    let blob = fp32(&v);
    let lookup = || {
        let mut p = redis::pipe();
        p.cmd("VSIM")
            .arg("sc:{b}:vs")
            .arg("FP32")
            .arg(&blob)
            .arg("WITHSCORES")
            .arg("COUNT")
            .arg(1)
            .cmd("GET")
            .arg("sc:{b}:p:e0");
        p
    };
    let body = lookup().get_packed_pipeline();

    let direct_client = redis::Client::open(redis.url()).expect("client");
    let mut direct = direct_client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");

    for (name, pipe_body) in [("PING", pipeline(&[cmd!["PING"]])), ("VSIM+GET", body)] {
        let mut d = Vec::with_capacity(ROUNDS);
        let mut b = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS + 200 {
            let t = Instant::now();
            if name == "PING" {
                let _: String = redis::cmd("PING")
                    .query_async(&mut direct)
                    .await
                    .expect("ping");
            } else {
                let _: redis::Value = lookup().query_async(&mut direct).await.expect("lookup");
            }
            let direct_time = t.elapsed();
            let t = Instant::now();
            let answer = post_raw(&client, &bridge, Some(TOKEN), pipe_body.clone()).await;
            let bridge_time = t.elapsed();
            assert_eq!(answer.status, 200);
            if round >= 200 {
                d.push(direct_time);
                b.push(bridge_time);
            }
        }
        let (d50, d99) = (percentile(&mut d, 0.5), percentile(&mut d, 0.99));
        let (b50, b99) = (percentile(&mut b, 0.5), percentile(&mut b, 0.99));
        println!(
            "{name:>9}: direct p50 {d50:?} p99 {d99:?} | via bridge p50 {b50:?} p99 {b99:?} | added p50 {:?}",
            b50.saturating_sub(d50)
        );
    }
}
