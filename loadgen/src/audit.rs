//! The audit: in any interval of one window, did any key get more than its limits allow?
//!
//! Admission happens at the Redis server at some moment between a request's send time and its
//! completion time, both measured here at the client. A window is flagged only when the
//! requests in it were certainly admitted within one window: every one sent at or after the
//! interval's start and completed before its end. So the audit never accuses a correct limiter,
//! and it can miss an excess only within the round-trip time at the window's edges.

use crate::driver::{Outcome, Status};
use crate::Cli;
use llmrl_keys::{KeysFile, DEFAULT_WINDOW_MS};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub rpm: u64,
    pub itpm: u64,
    pub otpm: u64,
    pub window_ms: u64,
}

/// The limits of every `--key`, from `--keys-file` or `--limits`.
pub fn limits_for(cli: &Cli) -> Result<Vec<Limits>, String> {
    if let Some(path) = &cli.keys_file {
        let file = KeysFile::read(path).map_err(|e| e.to_string())?;
        return cli
            .keys
            .iter()
            .map(|key| {
                let entry = file
                    .find(key)
                    .ok_or_else(|| format!("a --key is not in {}", path.display()))?;
                let limits = entry.limits_for(&cli.model);
                Ok(Limits {
                    rpm: limits.rpm,
                    itpm: limits.itpm,
                    otpm: limits.otpm,
                    window_ms: entry.window_ms,
                })
            })
            .collect();
    }
    let Some(spec) = &cli.limits else {
        return Err("--audit needs --keys-file or --limits RPM,ITPM,OTPM[,WINDOW_MS]".into());
    };
    let numbers: Vec<u64> = spec
        .split(',')
        .map(|n| {
            n.trim()
                .parse::<u64>()
                .map_err(|_| format!("bad --limits {spec:?}"))
        })
        .collect::<Result<_, _>>()?;
    let limits = match numbers.as_slice() {
        &[rpm, itpm, otpm, ref window @ ..] if window.len() <= 1 => Limits {
            rpm,
            itpm,
            otpm,
            window_ms: window.first().copied().unwrap_or(DEFAULT_WINDOW_MS),
        },
        _ => return Err(format!("bad --limits {spec:?}: RPM,ITPM,OTPM[,WINDOW_MS]")),
    };
    Ok(vec![limits; cli.keys.len()])
}

/// One dimension of one key.
#[derive(Clone, Debug, Serialize)]
pub struct DimensionAudit {
    pub dimension: &'static str,
    pub limit: u64,
    pub admitted: u64,
    /// The most seen in one window.
    pub max_in_window: u64,
    /// Window starts at which the admitted amount exceeded the limit (expected: 0).
    pub violations: u64,
    /// Admitted over the most the limit allows in the run's duration.
    pub utilization: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KeyAudit {
    pub key: usize,
    pub limits: Limits,
    pub admitted_requests: u64,
    pub dimensions: Vec<DimensionAudit>,
}

pub fn audit(outcome: &Outcome, limits: &[Limits]) -> Vec<KeyAudit> {
    let duration_ms = outcome.elapsed.as_secs_f64() * 1000.0;
    limits
        .iter()
        .enumerate()
        .map(|(key, limits)| {
            let mut events: Vec<(f64, f64, [u64; 3])> = outcome
                .samples
                .iter()
                .filter(|s| s.key == key && s.status == Status::Ok)
                .map(|s| {
                    (
                        s.sent_ms,
                        s.done_ms,
                        [1, s.prompt_tokens, s.completion_tokens],
                    )
                })
                .collect();
            events.sort_by(|a, b| a.0.total_cmp(&b.0));
            let window = limits.window_ms as f64;
            let windows_in_run = (duration_ms / window).ceil().max(1.0);
            let dimensions = [
                ("requests", limits.rpm),
                ("input_tokens", limits.itpm),
                ("output_tokens", limits.otpm),
            ]
            .into_iter()
            .enumerate()
            .filter(|(_, (_, limit))| *limit > 0)
            .map(|(d, (dimension, limit))| {
                let admitted: u64 = events.iter().map(|e| e.2[d]).sum();
                let (max_in_window, violations) = scan(&events, d, window, limit);
                DimensionAudit {
                    dimension,
                    limit,
                    admitted,
                    max_in_window,
                    violations,
                    utilization: admitted as f64 / (limit as f64 * windows_in_run),
                }
            })
            .collect();
            KeyAudit {
                key,
                limits: *limits,
                admitted_requests: events.len() as u64,
                dimensions,
            }
        })
        .collect()
}

/// For each interval starting at a send time, the amount certainly admitted inside it.
fn scan(events: &[(f64, f64, [u64; 3])], d: usize, window: f64, limit: u64) -> (u64, u64) {
    let mut max_in_window = 0;
    let mut violations = 0;
    for (i, (start, _, _)) in events.iter().enumerate() {
        let end = start + window;
        let mut sum = 0u64;
        for (sent, done, amounts) in &events[i..] {
            if *sent >= end {
                break;
            }
            if *done < end {
                sum = sum.saturating_add(amounts[d]);
                // Past the limit is enough to count this window; stop early on huge excesses.
                if sum > limit.saturating_mul(2) {
                    break;
                }
            }
        }
        max_in_window = max_in_window.max(sum);
        if sum > limit {
            violations += 1;
        }
    }
    (max_in_window, violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_only_certain_excesses() {
        // Three requests within 100 ms, limit 2 per 1000 ms: a violation.
        let events = vec![
            (0.0, 10.0, [1, 0, 0]),
            (50.0, 60.0, [1, 0, 0]),
            (90.0, 95.0, [1, 0, 0]),
        ];
        assert_eq!(scan(&events, 0, 1000.0, 2), (3, 1));
        // Spread over more than a window: fine.
        let events = vec![
            (0.0, 10.0, [1, 0, 0]),
            (500.0, 510.0, [1, 0, 0]),
            (1001.0, 1002.0, [1, 0, 0]),
        ];
        assert_eq!(scan(&events, 0, 1000.0, 2), (2, 0));
        // The third completed after the window ended: it may have been admitted later.
        let events = vec![
            (0.0, 10.0, [1, 0, 0]),
            (500.0, 510.0, [1, 0, 0]),
            (990.0, 1005.0, [1, 0, 0]),
        ];
        assert_eq!(scan(&events, 0, 1000.0, 2), (2, 0));
    }
}
