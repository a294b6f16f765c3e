//! The real `semcache-bridge` binary in front of a real three-master Redis 8 Cluster.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;

fn setup() -> (Cluster, Bridge, reqwest::Client) {
    let cluster = Cluster::start(3);
    let bridge = Bridge::builder(&cluster.seed_urls())
        .arg("--cluster")
        .args(["--max-commands", "256"])
        .start();
    (cluster, bridge, http())
}

/// Keys spread over every master: returns `count` keys and asserts all masters are hit.
fn keys_on_all_masters(
    cluster: &Cluster,
    count: usize,
    make: impl Fn(usize) -> String,
) -> Vec<String> {
    let keys: Vec<String> = (0..count).map(make).collect();
    let masters: BTreeSet<u16> = keys
        .iter()
        .map(|k| cluster.port_for_key(k.as_bytes()))
        .collect();
    assert_eq!(
        masters.len(),
        cluster.nodes.len(),
        "keys do not cover every master"
    );
    keys
}

#[tokio::test]
async fn cluster_pipeline_across_all_masters_keeps_order() {
    let (cluster, bridge, client) = setup();
    assert_eq!(
        get(&client, &bridge, "/healthz").await,
        (200, "ok\n".into())
    );
    let keys = keys_on_all_masters(&cluster, 30, |i| format!("key:{i}"));

    // Writes then reads of the same keys in one request: per-slot order is kept, so every GET
    // sees its SET. Keyless and multi-slot commands are mixed in.
    let mut cmds = vec![cmd!["PING"]];
    for (i, k) in keys.iter().enumerate() {
        cmds.push(cmd!["SET", k, format!("v{i}\r\n\0")]);
    }
    for k in keys.iter().rev() {
        cmds.push(cmd!["GET", k]);
    }
    cmds.push(cmd!["DEL", &keys[0], &keys[1], &keys[2], "absent"]);
    cmds.push(cmd!["EXISTS", &keys[0], &keys[3]]);
    cmds.push(cmd!["HSET", &keys[4], "f", "v"]);
    cmds.push(cmd!["GET", "absent"]);
    let replies = post(&client, &bridge, &cmds).await.replies();
    assert_eq!(replies.len(), cmds.len());
    assert_eq!(replies[0], status("PONG"));
    for i in 0..30 {
        assert_eq!(replies[1 + i], status("OK"));
        assert_eq!(
            replies[31 + i],
            bulk(format!("v{}\r\n\0", 29 - i)),
            "GET {i}"
        );
    }
    assert_eq!(replies[61], Reply::Int(3));
    assert_eq!(replies[62], Reply::Int(1));
    assert!(
        matches!(&replies[63], Reply::Error(e) if e.starts_with("WRONGTYPE")),
        "{:?}",
        replies[63]
    );
    assert_eq!(replies[64], Reply::Nil);

    // The data really is where the cluster says, not in one node.
    for (i, k) in keys.iter().enumerate().skip(5) {
        let port = cluster.port_for_key(k.as_bytes());
        let node = cluster.nodes.iter().find(|n| n.port == port).expect("node");
        let v: Vec<u8> = redis::cmd("GET")
            .arg(k)
            .query(&mut node.client())
            .expect("direct GET");
        assert_eq!(v, format!("v{i}\r\n\0").into_bytes());
    }
}

#[tokio::test]
async fn cluster_vector_sets_on_many_namespaces() {
    let (cluster, bridge, client) = setup();
    let keys = keys_on_all_masters(&cluster, 24, |i| format!("sc:{{ns{i}}}:vs"));
    let vector = |i: usize, j: usize| -> Vec<f32> {
        (0..16)
            .map(|d| ((i * 31 + j * 7 + d * 3) % 17) as f32 - 8.0)
            .collect()
    };

    // One request stores three vectors, a payload and an expiry entry per namespace.
    let mut cmds = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let ns = format!("ns{i}");
        for j in 0..3 {
            cmds.push(cmd![
                "VADD",
                key,
                "FP32",
                fp32(&vector(i, j)),
                format!("{ns}-e{j}"),
                "SETATTR",
                format!(r#"{{"exp":{j}}}"#)
            ]);
        }
        cmds.push(cmd![
            "SET",
            format!("sc:{{{ns}}}:p:e0"),
            format!("payload {ns}")
        ]);
        cmds.push(cmd![
            "ZADD",
            format!("sc:{{{ns}}}:x"),
            "100",
            format!("{ns}-e0")
        ]);
    }
    let replies = post(&client, &bridge, &cmds).await.replies();
    let expect: Vec<Reply> = (0..24)
        .flat_map(|_| {
            [
                Reply::Int(1),
                Reply::Int(1),
                Reply::Int(1),
                status("OK"),
                Reply::Int(1),
            ]
        })
        .collect();
    assert_eq!(replies, expect);

    // One request queries every namespace: each finds its own e1 first, score 1.
    let cmds: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            cmd![
                "VSIM",
                key,
                "FP32",
                fp32(&vector(i, 1)),
                "WITHSCORES",
                "WITHATTRIBS",
                "COUNT",
                "2"
            ]
        })
        .collect();
    let replies = post(&client, &bridge, &cmds).await.replies();
    for (i, reply) in replies.iter().enumerate() {
        let items = reply.array();
        assert_eq!(items.len(), 6, "{items:?}");
        assert_eq!(items[0], bulk(format!("ns{i}-e1")));
        let score: f64 = std::str::from_utf8(items[1].bulk())
            .expect("utf-8")
            .parse()
            .expect("score");
        // Default Q8 quantisation: the identical vector scores close to, not exactly, 1.
        assert!((score - 1.0).abs() < 1e-2, "{score}");
        assert_eq!(items[2], bulk(r#"{"exp":1}"#));
    }

    // Each vector set lives on the master that owns its hash tag, and all three hold some.
    let mut per_master: BTreeMap<u16, usize> = BTreeMap::new();
    for key in &keys {
        let port = cluster.port_for_key(key.as_bytes());
        let node = cluster.nodes.iter().find(|n| n.port == port).expect("node");
        let card: i64 = redis::cmd("VCARD")
            .arg(key)
            .query(&mut node.client())
            .expect("VCARD on owner");
        assert_eq!(card, 3);
        *per_master.entry(port).or_default() += 1;
    }
    assert_eq!(per_master.len(), 3, "{per_master:?}");
}

#[tokio::test]
async fn cluster_node_down_gives_503_for_its_slots_only_then_recovers() {
    let (mut cluster, bridge, client) = setup();
    let keys = keys_on_all_masters(&cluster, 30, |i| format!("sc:{{n{i}}}:p"));
    let victim = cluster.nodes[2].port;
    let (dead, alive): (Vec<&String>, Vec<&String>) = keys
        .iter()
        .partition(|k| cluster.port_for_key(k.as_bytes()) == victim);
    cluster.nodes[2].kill();

    // Node timeout is 5 s, so the cluster still says ok: requests to the dead master fail as
    // transport errors, requests to the others keep working.
    let answer = post(&client, &bridge, &[cmd!["GET", dead[0]]]).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    let replies = post(
        &client,
        &bridge,
        &[cmd!["GET", alive[0]], cmd!["GET", alive[1]]],
    )
    .await
    .replies();
    assert_eq!(replies, [Reply::Nil, Reply::Nil]);

    // The node comes back on its port with its nodes.conf; the bridge finds it again.
    cluster.nodes[2].restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer = post(
            &client,
            &bridge,
            &[cmd!["SET", dead[0], "back"], cmd!["GET", dead[0]]],
        )
        .await;
        if answer.status == 200 {
            assert_eq!(answer.replies(), [status("OK"), bulk("back")]);
            break;
        }
        assert_eq!(answer.status, 503, "{}\n{}", answer.text(), bridge.logs());
        assert!(
            std::time::Instant::now() < deadline,
            "bridge never recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
