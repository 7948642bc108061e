//! The end-of-run report: text for people, JSON for programs, and HdrHistogram's percentile
//! distribution for its plotters.

use crate::audit::ScopeAudit;
use crate::driver::{Outcome, Reason, Status};
use crate::Cli;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(q))
            }
        };
        Latency {
            count: h.len(),
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: if h.is_empty() { 0.0 } else { ms(h.max()) },
        }
    }
}

#[derive(Serialize)]
pub struct Row {
    pub name: String,
    pub requests: u64,
    pub successes: u64,
    pub limited: u64,
    pub errors: u64,
    pub success_rate: f64,
    pub rps: f64,
}

#[derive(Serialize)]
pub struct Report {
    pub mode: String,
    pub duration_s: f64,
    pub total_requests: u64,
    pub rps: f64,
    pub status_codes: BTreeMap<String, u64>,
    pub limited_by: BTreeMap<String, u64>,
    pub transport_errors: u64,
    pub latency_ok: Latency,
    pub latency_429: Latency,
    /// Other HTTP statuses (errors such as 503).
    pub latency_other: Latency,
    pub nodes: Vec<Row>,
    pub keys: Vec<Row>,
    pub audit: Option<Vec<ScopeAudit>>,
}

/// Show a key without revealing it.
pub(crate) fn mask(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("key#...{tail}")
}

impl Report {
    pub fn build(cli: &Cli, outcome: &Outcome, audit: Option<Vec<ScopeAudit>>) -> Report {
        let secs = outcome.elapsed.as_secs_f64().max(1e-9);
        let mut status_codes = BTreeMap::new();
        let mut limited_by: BTreeMap<String, u64> = [
            Reason::Requests,
            Reason::InputTokens,
            Reason::OutputTokens,
            Reason::TooLarge,
        ]
        .iter()
        .map(|r| (r.name().to_string(), 0))
        .collect();
        let mut transport_errors = 0;
        let mut nodes: Vec<[u64; 4]> = vec![[0; 4]; cli.nodes.len()];
        let mut keys: Vec<[u64; 4]> = vec![[0; 4]; cli.keys.len()];
        for sample in &outcome.samples {
            let slot = match sample.status {
                Status::Ok => 1,
                Status::Limited(_) => 2,
                _ => 3,
            };
            for row in [&mut nodes[sample.node], &mut keys[sample.key]] {
                row[0] += 1;
                row[slot] += 1;
            }
            match sample.status {
                Status::Ok => *status_codes.entry("200".to_string()).or_insert(0) += 1,
                Status::Limited(reason) => {
                    *status_codes.entry("429".to_string()).or_insert(0) += 1;
                    *limited_by.entry(reason.name().to_string()).or_insert(0) += 1;
                }
                Status::Http(code) => *status_codes.entry(code.to_string()).or_insert(0) += 1,
                Status::Transport => transport_errors += 1,
            }
        }
        let rows = |counts: Vec<[u64; 4]>, names: Vec<String>| -> Vec<Row> {
            counts
                .into_iter()
                .zip(names)
                .map(|(c, name)| Row {
                    name,
                    requests: c[0],
                    successes: c[1],
                    limited: c[2],
                    errors: c[3],
                    success_rate: if c[0] == 0 {
                        0.0
                    } else {
                        c[1] as f64 / c[0] as f64
                    },
                    rps: c[0] as f64 / secs,
                })
                .collect()
        };
        let mode = match cli.rate {
            Some(rate) => format!(
                "open loop, {rate} requests/s over {} connections",
                cli.concurrency()
            ),
            None => format!("closed loop, {} clients", cli.concurrency()),
        };
        Report {
            mode,
            duration_s: secs,
            total_requests: outcome.samples.len() as u64,
            rps: outcome.samples.len() as f64 / secs,
            status_codes,
            limited_by,
            transport_errors,
            latency_ok: Latency::of(&outcome.latency_ok),
            latency_429: Latency::of(&outcome.latency_limited),
            latency_other: Latency::of(&outcome.latency_other),
            nodes: rows(nodes, cli.nodes.clone()),
            keys: rows(keys, cli.keys.iter().map(|k| mask(k)).collect()),
            audit,
        }
    }

    pub fn violations(&self) -> u64 {
        self.audit
            .iter()
            .flatten()
            .map(|scope| scope.violations)
            .sum()
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "llmrl-loadgen: {}, {:.2} s",
            self.mode, self.duration_s
        );
        let _ = writeln!(
            out,
            "requests {}   throughput {:.1} req/s   transport errors {}",
            self.total_requests, self.rps, self.transport_errors
        );
        let codes: Vec<String> = self
            .status_codes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(out, "status   {}", codes.join("   "));
        let reasons: Vec<String> = self
            .limited_by
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(out, "429 by   {}", reasons.join("   "));
        let _ = writeln!(
            out,
            "\nlatency (ms)   count      mean     p50     p90     p95     p99   p99.9     max"
        );
        for (name, l) in [
            ("200", &self.latency_ok),
            ("429", &self.latency_429),
            ("other", &self.latency_other),
        ] {
            let _ = writeln!(
                out,
                "  {name:<10} {:>7} {:>9.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3}",
                l.count, l.mean_ms, l.p50_ms, l.p90_ms, l.p95_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        for (title, rows) in [("node", &self.nodes), ("key", &self.keys)] {
            let _ = writeln!(
                out,
                "\n{title:<28} requests  success   429  errors  success%      rps"
            );
            for r in rows.iter() {
                let _ = writeln!(
                    out,
                    "  {:<26} {:>8} {:>8} {:>5} {:>7} {:>8.1} {:>8.1}",
                    r.name,
                    r.requests,
                    r.successes,
                    r.limited,
                    r.errors,
                    r.success_rate * 100.0,
                    r.rps
                );
            }
        }
        if let Some(audit) = &self.audit {
            let _ = writeln!(
                out,
                "\naudit by scope (client-side times, see README)\n  {:<12} {:>12} {:>12} {:>14} {:>10} {:>12}",
                "dimension", "limit", "admitted", "max in window", "violations", "utilization"
            );
            for scope in audit {
                let keys: Vec<&str> = scope
                    .keys
                    .iter()
                    .map(|k| self.keys.get(*k).map_or("?", |r| r.name.as_str()))
                    .collect();
                let _ = writeln!(out, "{}   (keys: {})", scope.scope, keys.join(", "));
                for d in &scope.dimensions {
                    let _ = writeln!(
                        out,
                        "  {:<12} {:>12} {:>12} {:>14} {:>10} {:>11.1}%",
                        d.dimension,
                        d.limit,
                        d.admitted,
                        d.max_in_window,
                        d.violations,
                        d.utilization * 100.0
                    );
                }
                if let Some(note) = &scope.note {
                    let _ = writeln!(out, "  ({note})");
                }
            }
            let _ = writeln!(out, "audit violations: {}", self.violations());
        }
        out
    }
}

/// HdrHistogram's percentile distribution (values in ms), as its plotters read it.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let inverse = if q < 1.0 {
                format!("{:>14.2}", 1.0 / (1.0 - q))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10} {inverse}",
                v.value_iterated_to() as f64 / 1000.0,
                q,
                total
            );
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / 1000.0,
            h.stdev() / 1000.0,
            h.max() as f64 / 1000.0,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.3}, Total count    = {:>12}]",
        h.len()
    );
    out
}
