//! Call metrics, in Prometheus text format: calls by operation, origin and
//! outcome, and a duration histogram by operation.
//!
//! Labels are bounded: an operation is a path this node routes (or
//! `unrouted`), a peer's operations are `remote:<peer>`, never what a caller
//! typed; origins and outcomes are fixed sets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use hearth_registry::ErrorCode;

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Series {
    /// By outcome (`ok` or an error code).
    outcomes: BTreeMap<&'static str, u64>,
    /// Cumulative counts per bucket, then +Inf.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
}

/// The node's call counters.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, &'static str), Series>>,
}

impl Metrics {
    /// Counts one call of `operation` from `origin`.
    pub fn record(
        &self,
        operation: String,
        origin: &'static str,
        outcome: Result<(), ErrorCode>,
        took: Duration,
    ) {
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(code) => code.as_str(),
        };
        let seconds = took.as_secs_f64();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let entry = series.entry((operation, origin)).or_default();
        *entry.outcomes.entry(outcome).or_default() += 1;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                entry.buckets[i] += 1;
            }
        }
        entry.buckets[BUCKETS.len()] += 1;
        entry.sum += seconds;
    }

    /// The counters as Prometheus text.
    pub fn render(&self, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP hearth_calls_total Calls by operation, origin and outcome.\n# TYPE hearth_calls_total counter"
        );
        for ((operation, origin), s) in series.iter() {
            for (outcome, n) in &s.outcomes {
                let _ = writeln!(
                    out,
                    "hearth_calls_total{{operation=\"{}\",origin=\"{origin}\",outcome=\"{outcome}\"}} {n}",
                    escape(operation)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP hearth_call_duration_seconds How long calls took, by operation and origin.\n# TYPE hearth_call_duration_seconds histogram"
        );
        for ((operation, origin), s) in series.iter() {
            let labels = format!("operation=\"{}\",origin=\"{origin}\"", escape(operation));
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "hearth_call_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    s.buckets[i]
                );
            }
            let count = s.buckets[BUCKETS.len()];
            let _ = writeln!(
                out,
                "hearth_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "hearth_call_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "hearth_call_duration_seconds_count{{{labels}}} {count}"
            );
        }
    }
}

/// Escapes a label value.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_buckets() {
        let metrics = Metrics::default();
        metrics.record(
            "/node/a/b".into(),
            "client",
            Ok(()),
            Duration::from_millis(3),
        );
        metrics.record(
            "/node/a/b".into(),
            "client",
            Err(ErrorCode::Denied),
            Duration::from_secs(20),
        );
        let mut text = String::new();
        metrics.render(&mut text);
        assert!(text.contains(
            r#"hearth_calls_total{operation="/node/a/b",origin="client",outcome="denied"} 1"#
        ));
        assert!(text.contains(
            r#"hearth_call_duration_seconds_bucket{operation="/node/a/b",origin="client",le="0.005"} 1"#
        ));
        assert!(text.contains(
            r#"hearth_call_duration_seconds_bucket{operation="/node/a/b",origin="client",le="+Inf"} 2"#
        ));
    }
}
