//! The real `semcache-bridge` binary in front of a real standalone Redis 8.

mod common;

use common::*;

fn setup() -> (RedisServer, Bridge, reqwest::Client) {
    let redis = RedisServer::start(&[]);
    let bridge = Bridge::builder(&redis.url()).start();
    (redis, bridge, http())
}

#[tokio::test]
async fn all_byte_values_round_trip_in_order() {
    let _redis = RedisServer::start(&[]);
    let bridge = Bridge::builder(&_redis.url())
        .args(["--max-commands", "300"])
        .start();
    let client = http();
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let mut cmds = Vec::new();
    for b in 0..=255u8 {
        // Keys and values that are a single byte each, CR, LF and NUL included.
        cmds.push(cmd!["SET", [b'k', b], [b]]);
    }
    cmds.push(cmd!["SET", b"all\r\n\0", every_byte]);
    assert_eq!(post(&client, &bridge, &cmds).await.replies().len(), 257);

    let mut cmds = vec![cmd!["GET", b"all\r\n\0"]];
    for b in (0..=255u8).rev() {
        cmds.push(cmd!["GET", [b'k', b]]);
    }
    cmds.push(cmd!["GET", "missing"]);
    let replies = post(&client, &bridge, &cmds).await.replies();
    assert_eq!(replies[0], bulk(&every_byte));
    for (i, b) in (0..=255u8).rev().enumerate() {
        assert_eq!(replies[i + 1], bulk([b]), "reply {} out of order", i + 1);
    }
    assert_eq!(replies[257], Reply::Nil);
}

#[tokio::test]
async fn vector_set_fp32_vadd_vemb_vsim() {
    let (_redis, bridge, client) = setup();
    // Bytes 0x0d 0x0a inside the blob: the vector must not be taken for text.
    let tricky = f32::from_le_bytes([0x0d, 0x0a, 0x0d, 0x3f]);
    let a = [1.0f32, -0.5, tricky, 0.0, 0.25, -2.0, 3.5, 0.125];
    let b = [0.5f32, 1.0, -0.25, 2.0, 0.0, 0.75, -1.0, 1.5];
    let key = "sc:{t}:vs:0";
    let replies = post(
        &client,
        &bridge,
        &[
            cmd![
                "VADD",
                key,
                "FP32",
                fp32(&a),
                "a",
                "NOQUANT",
                "SETATTR",
                r#"{"exp":1}"#
            ],
            cmd!["VADD", key, "FP32", fp32(&b), "b", "NOQUANT"],
            cmd!["VCARD", key],
            cmd!["VDIM", key],
            cmd!["VGETATTR", key, "a"],
            cmd!["VEMB", key, "a", "RAW"],
            cmd!["VEMB", key, "a"],
            cmd!["VSIM", key, "FP32", fp32(&a), "WITHSCORES", "COUNT", "2"],
            cmd![
                "VSIM",
                key,
                "ELE",
                "a",
                "WITHSCORES",
                "WITHATTRIBS",
                "COUNT",
                "1"
            ],
        ],
    )
    .await
    .replies();
    assert_eq!(
        replies[..4],
        [Reply::Int(1), Reply::Int(1), Reply::Int(2), Reply::Int(8)]
    );
    assert_eq!(replies[4], bulk(r#"{"exp":1}"#));

    // RAW: [quantisation, FP32 blob of the unit vector, L2 norm]; the blob is arbitrary bytes.
    let raw = replies[5].array();
    assert_eq!(raw[0], status("f32"));
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let unit: Vec<f32> = raw[1]
        .bulk()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(unit.len(), 8);
    for (u, x) in unit.iter().zip(a) {
        assert!((u * norm - x).abs() < 1e-5, "{unit:?} vs {a:?}");
    }
    let emb: Vec<f32> = replies[6]
        .array()
        .iter()
        .map(|v| {
            std::str::from_utf8(v.bulk())
                .expect("utf-8")
                .parse()
                .expect("float")
        })
        .collect();
    for (e, x) in emb.iter().zip(a) {
        assert!((e - x).abs() < 1e-5, "{emb:?} vs {a:?}");
    }

    // RESP2 WITHSCORES: a flat array, scores as bulk strings; the query vector itself first.
    let sim = replies[7].array();
    assert_eq!(sim.len(), 4, "{sim:?}");
    assert_eq!(sim[0], bulk("a"));
    assert_eq!(sim[2], bulk("b"));
    let score = |r: &Reply| -> f64 {
        std::str::from_utf8(r.bulk())
            .expect("utf-8")
            .parse()
            .expect("score")
    };
    assert!((score(&sim[1]) - 1.0).abs() < 1e-6, "{sim:?}");
    assert!(score(&sim[3]) < score(&sim[1]));
    let with_attr = replies[8].array();
    assert_eq!(with_attr[0], bulk("a"));
    assert_eq!(with_attr[2], bulk(r#"{"exp":1}"#));
}

#[tokio::test]
async fn redis_errors_stay_in_band() {
    let (_redis, bridge, client) = setup();
    let replies = post(
        &client,
        &bridge,
        &[
            cmd!["SET", "s", "v"],
            cmd!["HSET", "s", "f", "v"],
            cmd!["VSIM", "nope"],
            cmd!["ZADD", "z", "1", "m"],
            cmd!["ZRANGE", "z", "0", "-1"],
            cmd!["PING"],
        ],
    )
    .await
    .replies();
    assert_eq!(replies[0], status("OK"));
    assert!(
        matches!(&replies[1], Reply::Error(e) if e.starts_with("WRONGTYPE ")),
        "{:?}",
        replies[1]
    );
    assert!(
        matches!(&replies[2], Reply::Error(e) if e.starts_with("ERR ")),
        "{:?}",
        replies[2]
    );
    assert_eq!(replies[3], Reply::Int(1));
    assert_eq!(replies[4], Reply::Array(vec![bulk("m")]));
    assert_eq!(replies[5], status("PONG"));
    let (_, metrics) = get(&client, &bridge, "/metrics").await;
    assert!(metrics.contains("semcache_bridge_redis_errors_total{kind=\"reply\"} 2\n"));
}

#[tokio::test]
async fn malformed_frames_get_400() {
    let (_redis, bridge, client) = setup();
    for body in [
        &b""[..],
        b"PING\r\n",
        b"*1\r\n+PING\r\n",
        b"*1\r\n:1\r\n",
        b"*0\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$4\r\nPING",
        b"*2\r\n$3\r\nGET\r\n",
        b"*1\r\n$4\r\nPINGPONG\r\n",
        b"*1\r\n$4\r\nPING\r\ngarbage",
        b"{\"json\": true}",
    ] {
        let answer = post_raw(&client, &bridge, Some(TOKEN), body.to_vec()).await;
        assert_eq!(answer.status, 400, "{body:?}: {}", answer.text());
        assert!(
            answer.text().starts_with("malformed RESP frame"),
            "{}",
            answer.text()
        );
    }
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401() {
    let (_redis, bridge, client) = setup();
    let ping = frame(&[b"PING"]);
    for token in [
        None,
        Some(""),
        Some("wrong"),
        Some("test-token-6f1d2"),
        Some("test-token-6f1d2cc"),
    ] {
        let answer = post_raw(&client, &bridge, token, ping.clone()).await;
        assert_eq!(answer.status, 401, "{token:?}");
    }
    let basic = client
        .post(bridge.url("/v1/resp"))
        .header("authorization", format!("Basic {TOKEN}"))
        .body(ping.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(basic.status().as_u16(), 401);
    assert_eq!(
        basic
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    let lower = client
        .post(bridge.url("/v1/resp"))
        .header("authorization", format!("bearer {TOKEN}"))
        .body(ping.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(lower.status().as_u16(), 200);
    assert_eq!(
        post_raw(&client, &bridge, Some(TOKEN), ping)
            .await
            .replies(),
        [status("PONG")]
    );
}

#[tokio::test]
async fn forbidden_commands_get_403_and_nothing_runs() {
    let (redis, bridge, client) = setup();
    for forbidden in [
        cmd!["FLUSHALL"],
        cmd!["flushdb"],
        cmd!["CONFIG", "SET", "maxmemory", "1"],
        cmd!["KEYS", "*"],
        cmd!["EVAL", "return 1", "0"],
        cmd!["MULTI"],
        cmd!["DEBUG", "SLEEP", "0"],
        cmd!["CLIENT", "LIST"],
    ] {
        let name = String::from_utf8(forbidden[0].clone())
            .expect("ascii")
            .to_uppercase();
        // A harmless SET first: with the 403 it must not have run either.
        let answer = post(&client, &bridge, &[cmd!["SET", "x", "1"], forbidden]).await;
        assert_eq!(answer.status, 403, "{}", answer.text());
        assert_eq!(answer.text().trim(), format!("command not allowed: {name}"));
    }
    let exists: i64 = redis::cmd("EXISTS")
        .arg("x")
        .query(&mut redis.client())
        .expect("EXISTS");
    assert_eq!(exists, 0, "a rejected pipeline ran partially");
}

#[tokio::test]
async fn allow_commands_replaces_the_default_list() {
    let redis = RedisServer::start(&[]);
    let bridge = Bridge::builder(&redis.url())
        .args(["--allow-commands", "ping,FLUSHALL,config,KEYS,Eval,SET"])
        .start();
    let client = http();
    let replies = post(
        &client,
        &bridge,
        &[
            cmd!["SET", "k", "v"],
            cmd!["KEYS", "*"],
            cmd!["EVAL", "return 7", "0"],
            cmd!["CONFIG", "GET", "maxmemory"],
            cmd!["FLUSHALL"],
            cmd!["PING"],
        ],
    )
    .await
    .replies();
    assert_eq!(replies[1], Reply::Array(vec![bulk("k")]));
    assert_eq!(replies[2], Reply::Int(7));
    assert_eq!(replies[3].array()[0], bulk("maxmemory"));
    assert_eq!(replies[4], status("OK"));
    // GET is in the default list but not in this one.
    let answer = post(&client, &bridge, &[cmd!["GET", "k"]]).await;
    assert_eq!(answer.status, 403);
}

#[tokio::test]
async fn each_limit_gets_413() {
    let redis = RedisServer::start(&[]);
    let bridge = Bridge::builder(&redis.url())
        .args(["--max-body-bytes", "1000", "--max-commands", "3"])
        .args(["--max-args", "4", "--max-arg-bytes", "100"])
        .start();
    let client = http();
    let ok = |a: Answer| assert_eq!(a.status, 200, "{}", a.text());
    let too_large = |a: Answer, what: &str| {
        assert_eq!(a.status, 413, "{what}: {}", a.text());
        assert!(a.text().contains(what), "{what}: {}", a.text());
    };

    // Body: exactly 1000 bytes pass (three HSETs within the other limits)...
    let hset = |k: u8, n: usize| frame(&[b"HSET", &[k; 100], &[b'f'; 100], &vec![b'v'; n]]);
    let body = (0..=100)
        .rev()
        .map(|n| [hset(b'a', 100), hset(b'b', 100), hset(b'c', n)].concat())
        .find(|b| b.len() == 1000)
        .expect("a 1000-byte body");
    ok(post_raw(&client, &bridge, Some(TOKEN), body).await);
    // ...1001 do not, whether announced by Content-Length or streamed without one.
    too_large(
        post_raw(&client, &bridge, Some(TOKEN), vec![b'*'; 1001]).await,
        "larger than 1000 bytes",
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b'*'; 600]), Ok(vec![b'*'; 401])];
    let streamed = client
        .post(bridge.url("/v1/resp"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("send");
    assert_eq!(streamed.status().as_u16(), 413);

    too_large(
        post(&client, &bridge, &vec![cmd!["PING"]; 4]).await,
        "too many commands",
    );
    ok(post(&client, &bridge, &vec![cmd!["PING"]; 3]).await);
    too_large(
        post(&client, &bridge, &[cmd!["SET", "k", "v", "NX", "GET"]]).await,
        "too many arguments",
    );
    ok(post(&client, &bridge, &[cmd!["SET", "k", "v", "NX"]]).await);
    too_large(
        post(&client, &bridge, &[cmd!["SET", "k", vec![b'v'; 101]]]).await,
        "argument too long",
    );
    ok(post(&client, &bridge, &[cmd!["SET", "k", vec![b'v'; 100]]]).await);
}

#[tokio::test]
async fn too_many_in_flight_gets_429() {
    let redis = RedisServer::start(&[]);
    let bridge = Bridge::builder(&redis.url())
        .args(["--max-in-flight", "1", "--redis-timeout-ms", "60000"])
        .args(["--allow-commands", "BLPOP,PING"])
        .start();
    let client = http();
    // The first request holds the only slot: BLPOP blocks in Redis until we push.
    let holder = {
        let client = client.clone();
        let body = pipeline(&[cmd!["BLPOP", "q", "0"]]);
        let url = bridge.url("/v1/resp");
        tokio::spawn(async move {
            client
                .post(url)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(body)
                .send()
                .await
                .expect("send")
                .bytes()
                .await
                .expect("body")
        })
    };
    wait_blocked_clients(&redis, 1).await;

    let answer = post(&client, &bridge, &[cmd!["PING"]]).await;
    assert_eq!(answer.status, 429, "{}", answer.text());
    let (_, metrics) = get(&client, &bridge, "/metrics").await;
    assert!(
        metrics.contains("semcache_bridge_in_flight 1\n"),
        "{metrics}"
    );

    let _: i64 = redis::cmd("RPUSH")
        .arg("q")
        .arg("item")
        .query(&mut redis.client())
        .expect("RPUSH");
    let body = holder.await.expect("holder");
    assert_eq!(
        decode_all(&body),
        [Reply::Array(vec![bulk("q"), bulk("item")])]
    );
    assert_eq!(
        post(&client, &bridge, &[cmd!["PING"]]).await.replies(),
        [status("PONG")]
    );
    let (_, metrics) = get(&client, &bridge, "/metrics").await;
    assert!(metrics.contains("semcache_bridge_requests_total{status=\"429\"} 1\n"));
    assert!(
        metrics.contains("semcache_bridge_in_flight 0\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn redis_timeout_gets_504_and_the_connection_recovers() {
    let redis = RedisServer::start(&[]);
    let bridge = Bridge::builder(&redis.url())
        .args([
            "--redis-timeout-ms",
            "200",
            "--allow-commands",
            "BLPOP,PING",
        ])
        .start();
    let client = http();
    // Redis blocks for up to 60 s, the bridge gives up after 200 ms.
    let answer = post(&client, &bridge, &[cmd!["PING"], cmd!["BLPOP", "q", "60"]]).await;
    assert_eq!(answer.status, 504, "{}", answer.text());
    assert_eq!(answer.text(), "redis timed out\n");

    // The BLPOP still occupies the shared connection in Redis; unblock it and the bridge's
    // connection must carry on (the late reply is discarded, not handed to someone else).
    wait_blocked_clients(&redis, 1).await;
    let _: i64 = redis::cmd("RPUSH")
        .arg("q")
        .arg("late")
        .query(&mut redis.client())
        .expect("RPUSH");
    assert_eq!(
        post(&client, &bridge, &[cmd!["PING"]]).await.replies(),
        [status("PONG")]
    );
    let (_, metrics) = get(&client, &bridge, "/metrics").await;
    assert!(metrics.contains("semcache_bridge_requests_total{status=\"504\"} 1\n"));
    assert!(metrics.contains("semcache_bridge_redis_errors_total{kind=\"timeout\"} 1\n"));
}

#[tokio::test]
async fn redis_down_gets_503_then_recovers_on_its_own() {
    let mut redis = RedisServer::start(&[]);
    let bridge = Bridge::builder(&redis.url()).start();
    let client = http();
    assert_eq!(
        get(&client, &bridge, "/healthz").await,
        (200, "ok\n".into())
    );

    // A stream of requests while Redis is killed: each answers 200 or 503, none hangs.
    let stream = {
        let client = client.clone();
        let url = bridge.url("/v1/resp");
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            // Until Redis's death has been seen 20 times (bounded): a fixed count of requests
            // could all finish before the kill below lands on a fast bridge.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            for i in 0..100_000u32 {
                if std::time::Instant::now() > deadline {
                    break;
                }
                let body = pipeline(&[cmd!["SET", format!("k{i}"), "v"], cmd!["GET", "k0"]]);
                let res = client
                    .post(&url)
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(body)
                    .send()
                    .await
                    .expect("bridge answered");
                statuses.push(res.status().as_u16());
                if statuses.iter().filter(|&&s| s == 503).count() >= 20 {
                    break;
                }
            }
            statuses
        })
    };
    // Let the stream get going before the crash, observed through the bridge's own counter.
    wait_metric(
        &client,
        &bridge,
        "semcache_bridge_requests_total{status=\"200\"}",
        5,
    )
    .await;
    redis.kill();
    let statuses = stream.await.expect("stream");
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&503), "{statuses:?}");

    let answer = post(&client, &bridge, &[cmd!["PING"]]).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.text(), "redis unreachable\n");
    let (code, reason) = get(&client, &bridge, "/healthz").await;
    assert_eq!(code, 503, "{reason}");

    // Same port, no bridge restart: the next requests reconnect by themselves.
    redis.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer = post(&client, &bridge, &[cmd!["PING"]]).await;
        if answer.status == 200 {
            assert_eq!(answer.replies(), [status("PONG")]);
            break;
        }
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert!(
            std::time::Instant::now() < deadline,
            "bridge never recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(&client, &bridge, "/healthz").await,
        (200, "ok\n".into())
    );
}

#[tokio::test]
async fn starts_before_redis_and_reports_unready() {
    let mut redis = RedisServer::start(&[]);
    redis.kill();
    let bridge = Bridge::builder(&redis.url()).start();
    let client = http();
    let (code, reason) = get(&client, &bridge, "/healthz").await;
    assert_eq!(code, 503);
    assert!(reason.contains("unreachable"), "{reason}");
    assert_eq!(post(&client, &bridge, &[cmd!["PING"]]).await.status, 503);
    redis.restart();
    let mut ready = false;
    for _ in 0..1500 {
        if get(&client, &bridge, "/healthz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ready, "never became ready");
}

/// Waits (without blocking the test's runtime) until Redis has `n` blocked clients.
async fn wait_blocked_clients(redis: &RedisServer, n: usize) {
    let url = redis.url();
    tokio::task::spawn_blocking(move || common::wait_blocked_clients(&url, n))
        .await
        .expect("wait for blocked clients");
}

async fn wait_metric(client: &reqwest::Client, bridge: &Bridge, name: &str, at_least: u64) {
    for _ in 0..1500 {
        let (_, text) = get(client, bridge, "/metrics").await;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if value >= at_least {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{name} never reached {at_least}");
}

#[tokio::test]
async fn healthz_and_metrics() {
    let (_redis, bridge, client) = setup();
    assert_eq!(
        get(&client, &bridge, "/healthz").await,
        (200, "ok\n".into())
    );
    post(
        &client,
        &bridge,
        &[cmd!["PING"], cmd!["vcard", "x"], cmd!["VCARD", "y"]],
    )
    .await
    .replies();
    assert_eq!(
        post(&client, &bridge, &[cmd!["KEYS", "*"]]).await.status,
        403
    );
    let res = client
        .get(bridge.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(
        res.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/plain; version=0.0.4"[..])
    );
    let text = res.text().await.expect("text");
    for line in [
        "semcache_bridge_requests_total{status=\"200\"} 1",
        "semcache_bridge_requests_total{status=\"403\"} 1",
        "semcache_bridge_commands_total{command=\"PING\"} 1",
        "semcache_bridge_commands_total{command=\"VCARD\"} 2",
        "semcache_bridge_commands_total{command=\"VADD\"} 0",
        "semcache_bridge_request_duration_seconds_count 2",
        "semcache_bridge_in_flight 0",
        "# TYPE semcache_bridge_request_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn refuses_to_start_without_token_or_with_unsafe_allow_list() {
    let redis = RedisServer::start(&[]);
    let (exit, stderr) = Bridge::builder(&redis.url()).without_token().fail();
    assert!(!exit.success());
    assert!(stderr.contains("no bearer token"), "{stderr}");

    let (exit, stderr) = Bridge::builder(&redis.url())
        .args(["--allow-commands", "GET,MULTI,EXEC"])
        .fail();
    assert!(!exit.success());
    assert!(
        stderr.contains("MULTI changes connection state"),
        "{stderr}"
    );

    let (exit, stderr) = Bridge::builder(&redis.url())
        .args(["--redis-ca-file", "/dev/null"])
        .fail();
    assert!(!exit.success());
    assert!(stderr.contains("need rediss:// URLs"), "{stderr}");
    let (exit, stderr) = Bridge::builder("rediss://127.0.0.1:1")
        .args(["--redis-ca-file", "/nonexistent/ca.pem"])
        .fail();
    assert!(!exit.success());
    assert!(
        stderr.contains("cannot read /nonexistent/ca.pem"),
        "{stderr}"
    );

    // Explicitly insecure: no token needed.
    let bridge = Bridge::builder(&redis.url())
        .without_token()
        .arg("--insecure-no-auth")
        .start();
    let client = http();
    let answer = post_raw(&client, &bridge, None, frame(&[b"PING"])).await;
    assert_eq!(answer.replies(), [status("PONG")]);
}

#[tokio::test]
async fn token_file_and_redis_password() {
    let redis = RedisServer::start(&["--requirepass", "redis-pw-93ac"]);
    let mut con = redis::Client::open(format!("redis://:redis-pw-93ac@127.0.0.1:{}", redis.port))
        .and_then(|c| c.get_connection())
        .expect("connect with password");
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "cache", "on", ">user-pw-51b7", "~sc:*", "+@all"][..])
        .query(&mut con)
        .expect("ACL SETUSER");
    let dir = std::env::temp_dir().join(format!("bridge-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "file-token-77e0\n").expect("token");
    let pw_file = dir.join("pw");
    std::fs::write(&pw_file, "user-pw-51b7\n").expect("pw");
    let client = http();

    // ACL user + password file + token file.
    let bridge = Bridge::builder(&redis.url())
        .without_token()
        .args(["--redis-username", "cache"])
        .arg("--redis-password-file")
        .arg(pw_file.to_string_lossy())
        .arg("--token-file")
        .arg(token_file.to_string_lossy())
        .start();
    let set = pipeline(&[cmd!["SET", "sc:{a}:p:1", "v"], cmd!["SET", "other", "v"]]);
    let answer = post_raw(&client, &bridge, Some("file-token-77e0"), set.clone()).await;
    let replies = answer.replies();
    assert_eq!(replies[0], status("OK"));
    assert!(
        matches!(&replies[1], Reply::Error(e) if e.starts_with("NOPERM")),
        "{replies:?}"
    );
    assert_eq!(
        post_raw(&client, &bridge, Some(TOKEN), set).await.status,
        401
    );
    drop(bridge);

    // Password from the environment; a wrong one leaves Redis unusable: 503.
    let bridge = Bridge::builder(&redis.url())
        .env("SEMCACHE_BRIDGE_REDIS_PASSWORD", "redis-pw-93ac")
        .start();
    assert_eq!(
        post(&client, &bridge, &[cmd!["PING"]]).await.replies(),
        [status("PONG")]
    );
    let bridge = Bridge::builder(&redis.url())
        .env("SEMCACHE_BRIDGE_REDIS_PASSWORD", "wrong")
        .start();
    assert_eq!(post(&client, &bridge, &[cmd!["PING"]]).await.status, 503);
    assert_eq!(get(&client, &bridge, "/healthz").await.0, 503);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let redis = RedisServer::start(&["--requirepass", "url-secret-4d2f"]);
    let url = format!("redis://:url-secret-4d2f@127.0.0.1:{}", redis.port);
    let bridge = Bridge::builder(&url)
        .args(["--log-format", "json", "--redis-timeout-ms", "200"])
        .args(["--allow-commands", "PING,BLPOP"])
        .start();
    let client = http();
    assert_eq!(
        post(&client, &bridge, &[cmd!["PING"]]).await.replies(),
        [status("PONG")]
    );
    assert_eq!(
        post_raw(&client, &bridge, Some("guess"), frame(&[b"PING"]))
            .await
            .status,
        401
    );
    assert_eq!(
        post(&client, &bridge, &[cmd!["BLPOP", "q", "1"]])
            .await
            .status,
        504
    );
    let logs = bridge.logs();
    assert!(logs.contains("redis://***@127.0.0.1"), "{logs}");
    assert!(
        logs.contains("\"level\":\"INFO\""),
        "json logs expected: {logs}"
    );
    for secret in ["url-secret-4d2f", TOKEN, "guess"] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }

    // --help shows which variables exist, not their values.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_semcache-bridge"))
        .arg("--help")
        .env("SEMCACHE_BRIDGE_REDIS_URL", &url)
        .output()
        .expect("--help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("SEMCACHE_BRIDGE_REDIS_URL"), "{help}");
    assert!(!help.contains("url-secret-4d2f"), "{help}");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let redis = RedisServer::start(&[]);
    let mut bridge = Bridge::builder(&redis.url())
        .args(["--allow-commands", "BLPOP", "--redis-timeout-ms", "60000"])
        .start();
    let client = http();
    let pending = {
        let client = client.clone();
        let url = bridge.url("/v1/resp");
        tokio::spawn(async move {
            let res = client
                .post(url)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(pipeline(&[cmd!["BLPOP", "q", "0"]]))
                .send()
                .await
                .expect("in-flight request answered");
            (
                res.status().as_u16(),
                res.bytes().await.expect("body").to_vec(),
            )
        })
    };
    wait_blocked_clients(&redis, 1).await;
    let exit = tokio::task::spawn_blocking(move || bridge.terminate());
    // The bridge stops accepting but waits for the BLPOP; complete it.
    let r = redis.url();
    tokio::task::spawn_blocking(move || {
        let mut con = redis::Client::open(r)
            .and_then(|c| c.get_connection())
            .expect("connect");
        let _: i64 = redis::cmd("RPUSH")
            .arg("q")
            .arg("x")
            .query(&mut con)
            .expect("RPUSH");
    })
    .await
    .expect("push");
    let (code, body) = pending.await.expect("pending");
    assert_eq!(code, 200);
    assert_eq!(
        decode_all(&body),
        [Reply::Array(vec![bulk("q"), bulk("x")])]
    );
    let status = exit.await.expect("exit");
    assert!(status.success(), "{status:?}");
}

/// The venv's redis-server has no TLS support, so this checks the client side only: with a
/// `rediss://` URL the bridge opens the connection with a TLS ClientHello (the rustls provider
/// is installed), and a peer that is not a TLS server gives a 503, not a crash.
#[tokio::test]
async fn rediss_url_speaks_tls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let first_bytes = std::thread::spawn(move || {
        use std::io::Read;
        let (mut sock, _) = listener.accept().expect("bridge connects");
        let mut head = [0u8; 3];
        sock.read_exact(&mut head).expect("read hello");
        head
    });
    let bridge = Bridge::builder(&format!("rediss://127.0.0.1:{port}")).start();
    let client = http();
    let answer = post(&client, &bridge, &[cmd!["PING"]]).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    let head = first_bytes.join().expect("listener thread");
    // TLS record header: handshake (0x16), version 3.x.
    assert_eq!(head[..2], [0x16, 0x03], "not a TLS ClientHello: {head:?}");
}

async fn post_json(
    client: &reqwest::Client,
    bridge: &Bridge,
    path: &str,
    body: &str,
    base64: bool,
) -> (u16, serde_json::Value) {
    let mut req = client
        .post(bridge.url(path))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if base64 {
        req = req.header("upstash-encoding", "base64");
    }
    let res = req.send().await.expect("send");
    let status = res.status().as_u16();
    let body = res.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

#[tokio::test]
async fn upstash_compatible_json_endpoints() {
    let (_redis, bridge, client) = setup();
    use serde_json::json;
    assert_eq!(
        post_json(
            &client,
            &bridge,
            "/",
            r#"["SET","k","v\u00e9","EX",100]"#,
            false
        )
        .await,
        (200, json!({"result": "OK"}))
    );
    assert_eq!(
        post_json(&client, &bridge, "/", r#"["GET","k"]"#, false).await,
        (200, json!({"result": "vé"}))
    );
    assert_eq!(
        post_json(&client, &bridge, "/", r#"["TTL","k"]"#, false).await,
        (200, json!({"result": 100}))
    );
    let (code, body) = post_json(&client, &bridge, "/", r#"["HSET","k","f","v"]"#, false).await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("WRONGTYPE")),
        "{body}"
    );

    let (code, body) = post_json(
        &client,
        &bridge,
        "/pipeline",
        r#"[["SET","b","x"],["HSET","b","f","v"],["GET","nope"],["ZADD","z",1,"m"],["ZRANGE","z",0,-1]]"#,
        false,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(body[0], json!({"result": "OK"}));
    assert!(
        body[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("WRONGTYPE")),
        "{body}"
    );
    assert_eq!(body[2], json!({"result": null}));
    assert_eq!(body[3], json!({"result": 1}));
    assert_eq!(body[4], json!({"result": ["m"]}));

    // Binary values: base64 on request of the client, "OK" left alone.
    post(&client, &bridge, &[cmd!["SET", "bin", [0u8, 0xff, b'\r']]])
        .await
        .replies();
    assert_eq!(
        post_json(
            &client,
            &bridge,
            "/pipeline",
            r#"[["GET","bin"],["SET","x","y"]]"#,
            true
        )
        .await,
        (200, json!([{"result": "AP8N"}, {"result": "OK"}]))
    );

    // Same checks as /v1/resp, answered in JSON.
    let (code, body) = post_json(&client, &bridge, "/", r#"["FLUSHALL"]"#, false).await;
    assert_eq!(
        (code, body),
        (403, json!({"error": "command not allowed: FLUSHALL"}))
    );
    let (code, _) = post_json(&client, &bridge, "/", r#"{"not":"a command"}"#, false).await;
    assert_eq!(code, 400);
    let res = client
        .post(bridge.url("/"))
        .body(r#"["PING"]"#)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 401);
}

#[tokio::test]
async fn worker_threads_setting() {
    let redis = RedisServer::start(&[]);
    let (exit, stderr) = Bridge::builder(&redis.url())
        .args(["--worker-threads", "0"])
        .fail();
    assert!(!exit.success());
    assert!(stderr.contains("--worker-threads"), "{stderr}");

    // Every other test runs the default single thread; this one the multi-threaded runtime,
    // with concurrent requests that must each get their own replies.
    let bridge = Bridge::builder(&redis.url())
        .args(["--worker-threads", "3"])
        .start();
    let client = http();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (client, bridge) = (client.clone(), &bridge);
            let cmds = [
                cmd!["SET", format!("w{i}"), format!("v{i}")],
                cmd!["GET", format!("w{i}")],
            ];
            async move { post(&client, bridge, &cmds).await.replies() }
        })
        .collect();
    for (i, replies) in futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(replies, [status("OK"), bulk(format!("v{i}"))]);
    }
}
