//! Prometheus counters kept in plain atomics: every label set is known at start-up (status
//! codes, the allow-list), so the hot path is a few relaxed increments and no locking.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Status codes the bridge answers `/v1/resp` with; anything else lands in "other".
const STATUSES: [u16; 9] = [200, 400, 401, 403, 413, 429, 502, 503, 504];
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Kinds of Redis failure: error replies (in-band) and transport failures.
#[derive(Debug, Clone, Copy)]
pub enum RedisErrorKind {
    Reply = 0,
    Unavailable = 1,
    Timeout = 2,
    Protocol = 3,
}
const ERROR_KINDS: [&str; 4] = ["reply", "unavailable", "timeout", "protocol"];

pub struct Metrics {
    requests: [AtomicU64; STATUSES.len() + 1],
    command_names: Vec<String>,
    commands: Vec<AtomicU64>,
    redis_errors: [AtomicU64; ERROR_KINDS.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
}

impl Metrics {
    pub fn new(command_names: &[String]) -> Self {
        Self {
            requests: Default::default(),
            command_names: command_names.to_vec(),
            commands: command_names.iter().map(|_| AtomicU64::new(0)).collect(),
            redis_errors: Default::default(),
            buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn request(&self, status: u16, elapsed: Duration) {
        let slot = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len());
        self.requests[slot].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        // Buckets are stored non-cumulatively and summed when rendered.
        if let Some(b) = BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[b].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// `index` is the command's position in the allow-list.
    pub fn command(&self, index: usize) {
        if let Some(c) = self.commands.get(index) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn redis_error(&self, kind: RedisErrorKind, n: u64) {
        self.redis_errors[kind as usize].fetch_add(n, Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, in_flight: usize) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = self.render_into(&mut out, in_flight);
        out
    }

    fn render_into(&self, out: &mut String, in_flight: usize) -> std::fmt::Result {
        let p = "semcache_bridge";
        writeln!(
            out,
            "# HELP {p}_requests_total Command requests (/v1/resp, /, /pipeline) by HTTP status."
        )?;
        writeln!(out, "# TYPE {p}_requests_total counter")?;
        for (i, c) in self.requests.iter().enumerate() {
            let status = STATUSES.get(i).map_or("other".to_owned(), u16::to_string);
            writeln!(
                out,
                "{p}_requests_total{{status=\"{status}\"}} {}",
                c.load(Relaxed)
            )?;
        }
        writeln!(
            out,
            "# HELP {p}_commands_total Commands sent to Redis, by name."
        )?;
        writeln!(out, "# TYPE {p}_commands_total counter")?;
        for (name, c) in self.command_names.iter().zip(&self.commands) {
            writeln!(
                out,
                "{p}_commands_total{{command=\"{name}\"}} {}",
                c.load(Relaxed)
            )?;
        }
        writeln!(
            out,
            "# HELP {p}_redis_errors_total Redis error replies (kind=reply) and transport failures."
        )?;
        writeln!(out, "# TYPE {p}_redis_errors_total counter")?;
        for (kind, c) in ERROR_KINDS.iter().zip(&self.redis_errors) {
            writeln!(
                out,
                "{p}_redis_errors_total{{kind=\"{kind}\"}} {}",
                c.load(Relaxed)
            )?;
        }
        writeln!(
            out,
            "# HELP {p}_request_duration_seconds Command request latency."
        )?;
        writeln!(out, "# TYPE {p}_request_duration_seconds histogram")?;
        let mut cumulative = 0;
        for (le, c) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += c.load(Relaxed);
            writeln!(
                out,
                "{p}_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            )?;
        }
        let count = self.latency_count.load(Relaxed);
        writeln!(
            out,
            "{p}_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        )?;
        let sum = self.latency_sum_nanos.load(Relaxed) as f64 / 1e9;
        writeln!(out, "{p}_request_duration_seconds_sum {sum}")?;
        writeln!(out, "{p}_request_duration_seconds_count {count}")?;
        writeln!(out, "# HELP {p}_in_flight Command requests being served.")?;
        writeln!(out, "# TYPE {p}_in_flight gauge")?;
        writeln!(out, "{p}_in_flight {in_flight}")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new(&["GET".to_owned(), "SET".to_owned()]);
        m.request(200, Duration::from_micros(300));
        m.request(418, Duration::from_secs(10));
        m.command(1);
        m.redis_error(RedisErrorKind::Reply, 2);
        let text = m.render(3);
        for line in [
            "semcache_bridge_requests_total{status=\"200\"} 1",
            "semcache_bridge_requests_total{status=\"other\"} 1",
            "semcache_bridge_commands_total{command=\"SET\"} 1",
            "semcache_bridge_commands_total{command=\"GET\"} 0",
            "semcache_bridge_redis_errors_total{kind=\"reply\"} 2",
            "semcache_bridge_request_duration_seconds_bucket{le=\"0.00025\"} 0",
            "semcache_bridge_request_duration_seconds_bucket{le=\"0.0005\"} 1",
            "semcache_bridge_request_duration_seconds_bucket{le=\"2.5\"} 1",
            "semcache_bridge_request_duration_seconds_bucket{le=\"+Inf\"} 2",
            "semcache_bridge_request_duration_seconds_count 2",
            "semcache_bridge_in_flight 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
