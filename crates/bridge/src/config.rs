//! Command-line flags (each also read from a `SEMCACHE_BRIDGE_*` variable) and the secrets
//! that deliberately have no flag, so they never show up in `ps`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

pub const TOKEN_ENV: &str = "SEMCACHE_BRIDGE_TOKEN";
pub const REDIS_PASSWORD_ENV: &str = "SEMCACHE_BRIDGE_REDIS_PASSWORD";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Authenticated RESP-over-HTTP sidecar through which the semcache wasm filter reaches Redis.
///
/// Secrets: the bearer token comes from --token-file or SEMCACHE_BRIDGE_TOKEN; the Redis
/// password from --redis-password-file, SEMCACHE_BRIDGE_REDIS_PASSWORD or the Redis URL.
#[derive(Debug, Parser)]
#[command(name = "semcache-bridge", version)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SEMCACHE_BRIDGE_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Redis URL (redis:// or rediss:// for TLS). With --cluster: comma-separated seed nodes.
    #[arg(
        long,
        env = "SEMCACHE_BRIDGE_REDIS_URL",
        default_value = "redis://127.0.0.1:6380",
        hide_env_values = true,
        hide_default_value = false
    )]
    pub redis_url: String,

    /// Talk to a Redis Cluster (slot routing, MOVED/ASK) instead of a single server.
    #[arg(long, env = "SEMCACHE_BRIDGE_CLUSTER")]
    pub cluster: bool,

    /// Redis ACL user name (overrides the one in the URL).
    #[arg(long, env = "SEMCACHE_BRIDGE_REDIS_USERNAME")]
    pub redis_username: Option<String>,

    /// File holding the Redis password (overrides SEMCACHE_BRIDGE_REDIS_PASSWORD and the URL).
    #[arg(long, env = "SEMCACHE_BRIDGE_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,

    /// PEM CA bundle to verify the Redis server with, instead of the system roots (rediss:// only).
    #[arg(long, env = "SEMCACHE_BRIDGE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// PEM client certificate for mutual TLS to Redis (with --redis-client-key-file).
    #[arg(
        long,
        env = "SEMCACHE_BRIDGE_REDIS_CLIENT_CERT_FILE",
        requires = "redis_client_key_file"
    )]
    pub redis_client_cert_file: Option<PathBuf>,

    /// PEM private key of --redis-client-cert-file.
    #[arg(
        long,
        env = "SEMCACHE_BRIDGE_REDIS_CLIENT_KEY_FILE",
        requires = "redis_client_cert_file"
    )]
    pub redis_client_key_file: Option<PathBuf>,

    /// File holding the bearer token clients must send (else SEMCACHE_BRIDGE_TOKEN).
    #[arg(long, env = "SEMCACHE_BRIDGE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Serve without a token. Anyone who can reach the port can then run allowed commands.
    #[arg(long, env = "SEMCACHE_BRIDGE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Commands allowed through, comma-separated; replaces the default list.
    #[arg(long, env = "SEMCACHE_BRIDGE_ALLOW_COMMANDS", value_delimiter = ',')]
    pub allow_commands: Option<Vec<String>>,

    /// Largest request body accepted (413 above).
    #[arg(long, env = "SEMCACHE_BRIDGE_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,

    /// Most commands in one pipeline (413 above).
    #[arg(long, env = "SEMCACHE_BRIDGE_MAX_COMMANDS", default_value_t = 64)]
    pub max_commands: usize,

    /// Most arguments in one command, name included (413 above).
    #[arg(long, env = "SEMCACHE_BRIDGE_MAX_ARGS", default_value_t = 1024)]
    pub max_args: usize,

    /// Longest single argument in bytes (413 above).
    #[arg(long, env = "SEMCACHE_BRIDGE_MAX_ARG_BYTES", default_value_t = 2 << 20)]
    pub max_arg_bytes: usize,

    /// Most /v1/resp requests served at once (429 above).
    #[arg(long, env = "SEMCACHE_BRIDGE_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,

    /// Threads serving requests. With 1 (the default) everything runs on one thread: a lookup
    /// then costs about a third less CPU than with a thread per core, because no request hops
    /// between threads; each request needs only tens of microseconds, so one thread serves
    /// thousands per second. More help a bridge shared by many busy Envoys.
    #[arg(long, env = "SEMCACHE_BRIDGE_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,

    /// Time allowed for Redis to answer one request, in milliseconds (504 after).
    #[arg(long, env = "SEMCACHE_BRIDGE_REDIS_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_timeout_ms: u64,

    /// Log filter (tracing EnvFilter syntax); RUST_LOG is used when this is not given.
    #[arg(long, env = "SEMCACHE_BRIDGE_LOG")]
    pub log: Option<String>,

    /// Log line format on stderr.
    #[arg(
        long,
        env = "SEMCACHE_BRIDGE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

impl Args {
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn redis_urls(&self) -> Vec<String> {
        self.redis_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is empty")]
    Empty(String),
}

/// Reads a secret from `file` if given, else from the environment variable `env`. Trailing
/// newlines (as left by `echo > file`) are dropped.
pub fn read_secret(file: Option<&Path>, env: &str) -> Result<Option<String>, SecretError> {
    let (value, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
                path: path.to_owned(),
                source,
            })?;
            (text, path.display().to_string())
        }
        None => match std::env::var(env) {
            Ok(v) => (v, env.to_owned()),
            Err(_) => return Ok(None),
        },
    };
    let trimmed = value.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        return Err(SecretError::Empty(origin));
    }
    Ok(Some(trimmed.to_owned()))
}

/// The TLS material named by the `--redis-*-file` flags, if any.
pub fn tls_files(args: &Args) -> Result<Option<redis::TlsCertificates>, SecretError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let root_cert = args.redis_ca_file.as_deref().map(read).transpose()?;
    let client_tls = match (&args.redis_client_cert_file, &args.redis_client_key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// The URL(s) with any `user:password@` replaced, for logs.
pub fn redact_urls(urls: &[String]) -> String {
    urls.iter()
        .map(|u| redact_url(u))
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6380"),
            "redis://127.0.0.1:6380"
        );
        assert_eq!(
            redact_url("rediss://user:p@ss@host:6379/0"),
            "rediss://***@host:6379/0"
        );
        assert_eq!(redact_url("redis://:secret@h"), "redis://***@h");
        assert_eq!(
            redact_urls(&["redis://a:b@h1".into(), "redis://h2".into()]),
            "redis://***@h1,redis://h2"
        );
    }

    #[test]
    fn reads_secret_file() {
        let dir = std::env::temp_dir().join(format!("bridge-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("token");
        std::fs::write(&path, "abc\n").expect("write");
        assert_eq!(
            read_secret(Some(&path), "SEMCACHE_BRIDGE_TEST_UNSET")
                .expect("ok")
                .as_deref(),
            Some("abc")
        );
        std::fs::write(&path, "\n").expect("write");
        assert!(read_secret(Some(&path), "X").is_err());
        assert!(read_secret(None, "SEMCACHE_BRIDGE_TEST_UNSET")
            .expect("ok")
            .is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
