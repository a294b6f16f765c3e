//! Envoy stats for the filter: defined once per VM, then incremented by id.

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};
use semcache_core::metrics::{Counter, Histogram};

pub struct Metrics {
    counters: HashMap<Counter, u32>,
    histograms: HashMap<Histogram, u32>,
}

impl Metrics {
    pub fn define() -> Result<Metrics, Status> {
        let mut counters = HashMap::new();
        for c in Counter::all() {
            counters.insert(c, hostcalls::define_metric(MetricType::Counter, &c.name())?);
        }
        let mut histograms = HashMap::new();
        for h in Histogram::ALL {
            histograms.insert(
                h,
                hostcalls::define_metric(MetricType::Histogram, h.name())?,
            );
        }
        Ok(Metrics {
            counters,
            histograms,
        })
    }

    pub fn count(&self, c: Counter, n: u64) {
        if let Some(id) = self.counters.get(&c) {
            let _ = hostcalls::increment_metric(*id, n as i64);
        }
    }

    pub fn record(&self, h: Histogram, v: u64) {
        if let Some(id) = self.histograms.get(&h) {
            let _ = hostcalls::record_metric(*id, v);
        }
    }
}
