//! Prometheus metrics served at /metrics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Responses by route, status and reason (ok, rpm, itpm, otpm, too_large, auth, ...).
    pub requests: IntCounterVec,
    /// Time spent in LLMRL.CHECK, seen from the gateway.
    pub limiter_seconds: Histogram,
    pub redis_errors: IntCounterVec,
    /// Tokens reserved at admission (tokens_reserved_total{dimension="input"|"output"}).
    pub reserved_input: IntCounter,
    pub reserved_output: IntCounter,
    /// Corrections sent with LLMRL.SETTLE, by dimension and direction (refund, charge).
    pub tokens_settled: IntCounterVec,
    /// |actual - estimated| input tokens, where the upstream reported usage.
    pub input_estimate_error: Histogram,
    pub shadow_denied: IntCounter,
    pub fail_open: IntCounter,
    pub in_flight: IntGauge,
    pub open_connections: IntGauge,
    /// Every connection accepted (a client that reconnects a lot shows here, not in the gauge).
    pub connections: IntCounter,
    /// Answers of the last minutes, second by second (the dashboard's traffic chart).
    pub recent: Recent,
}

/// The wall clock, ms since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How many seconds of traffic [`Recent`] keeps.
pub const RECENT_SECONDS: usize = 300;

/// One second of traffic on this node.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Second {
    /// Its start, ms since the Unix epoch.
    pub at_ms: u64,
    /// Limited requests answered 2xx in it...
    pub admitted: u64,
    /// ...and refused with a 429.
    pub limited: u64,
    /// Requests in flight at its end.
    pub in_flight: i64,
}

/// Counts answers as they go and keeps the last [`RECENT_SECONDS`] seconds of them.
#[derive(Default)]
pub struct Recent {
    admitted: AtomicU64,
    limited: AtomicU64,
    seconds: Mutex<VecDeque<Second>>,
}

impl Recent {
    /// One answer of a limited route.
    pub fn record(&self, status: u16) {
        match status {
            200..=299 => self.admitted.fetch_add(1, Ordering::Relaxed),
            429 => self.limited.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Close the second that just ended (called once a second).
    pub fn tick(&self, in_flight: i64) {
        let second = Second {
            at_ms: unix_ms(),
            admitted: self.admitted.swap(0, Ordering::Relaxed),
            limited: self.limited.swap(0, Ordering::Relaxed),
            in_flight,
        };
        let mut seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        if seconds.len() == RECENT_SECONDS {
            seconds.pop_front();
        }
        seconds.push_back(second);
    }

    pub fn seconds(&self) -> Vec<Second> {
        let seconds = self.seconds.lock().unwrap_or_else(|p| p.into_inner());
        seconds.iter().copied().collect()
    }
}

impl Metrics {
    pub fn new(node: &str) -> Metrics {
        let registry = Registry::new_custom(
            Some("llmrl_gateway".into()),
            Some([("node".to_string(), node.to_string())].into()),
        )
        .unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Responses by route, status code and reason",
            ),
            &["route", "status", "reason"],
        )
        .expect("valid metric");
        let limiter_seconds = Histogram::with_opts(
            HistogramOpts::new("limiter_seconds", "LLMRL.CHECK round trip, seconds")
                .buckets(exponential_buckets(0.000_05, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid metric");
        let redis_errors = IntCounterVec::new(
            Opts::new("redis_errors_total", "Failed or timed-out Redis calls"),
            &["op"],
        )
        .expect("valid metric");
        let tokens_reserved = IntCounterVec::new(
            Opts::new("tokens_reserved_total", "Tokens reserved at admission"),
            &["dimension"],
        )
        .expect("valid metric");
        let tokens_settled = IntCounterVec::new(
            Opts::new(
                "tokens_settled_total",
                "Token corrections sent with LLMRL.SETTLE",
            ),
            &["dimension", "direction"],
        )
        .expect("valid metric");
        let input_estimate_error = Histogram::with_opts(
            HistogramOpts::new(
                "input_estimate_error_tokens",
                "Absolute difference between counted and reported input tokens",
            )
            .buckets(vec![0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0]),
        )
        .expect("valid metric");
        let shadow_denied = IntCounter::new(
            "shadow_denied_total",
            "Requests a shadow key would have had denied",
        )
        .expect("valid metric");
        let fail_open = IntCounter::new(
            "fail_open_total",
            "Requests served unchecked because the limiter was unavailable",
        )
        .expect("valid metric");
        let in_flight =
            IntGauge::new("in_flight_requests", "Requests being served").expect("valid metric");
        let open_connections = IntGauge::new(
            "open_connections",
            "Client connections open (those over --max-connections excluded)",
        )
        .expect("valid metric");
        let connections = IntCounter::new(
            "connections_total",
            "Client connections accepted (those over --max-connections included)",
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(limiter_seconds.clone()),
            Box::new(redis_errors.clone()),
            Box::new(tokens_reserved.clone()),
            Box::new(tokens_settled.clone()),
            Box::new(input_estimate_error.clone()),
            Box::new(shadow_denied.clone()),
            Box::new(fail_open.clone()),
            Box::new(in_flight.clone()),
            Box::new(open_connections.clone()),
            Box::new(connections.clone()),
        ] {
            let _ = registry.register(collector);
        }
        Metrics {
            registry,
            requests,
            limiter_seconds,
            redis_errors,
            reserved_input: tokens_reserved.with_label_values(&["input"]),
            reserved_output: tokens_reserved.with_label_values(&["output"]),
            tokens_settled,
            input_estimate_error,
            shadow_denied,
            fail_open,
            in_flight,
            open_connections,
            connections,
            recent: Recent::default(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn count(&self, route: &str, status: u16, reason: &str) {
        self.requests
            .with_label_values(&[route, &status.to_string(), reason])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the Grafana dashboard in `contrib/` queries is one the gateway exports.
    #[test]
    fn the_grafana_dashboard_queries_metrics_that_exist() {
        let metrics = Metrics::new("gw-test");
        metrics.count("chat", 429, "rpm");
        metrics.redis_errors.with_label_values(&["check"]).inc();
        metrics
            .tokens_settled
            .with_label_values(&["input", "refund"])
            .inc();
        metrics.limiter_seconds.observe(0.001);
        metrics.input_estimate_error.observe(1.0);
        let exported = metrics.render();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../contrib/grafana/llmrl-gateway.json"
        );
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut queried = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for (start, _) in expr.match_indices("llmrl_gateway_") {
                    let name: String = expr[start..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        exported.contains(&format!("\n{name}{{")),
                        "{name} (panel {}) is not exported",
                        panel["title"]
                    );
                    queried += 1;
                }
            }
        }
        assert!(queried >= 10, "{queried}");
    }
}
