//! `host bench`: a closed-loop load generator for operators.
//!
//! Opens N connections to a running node; each sends one call, waits for
//! the reply, and sends the next, for the given duration after a warm-up.
//! Prints throughput, latency percentiles and errors by code. It runs in
//! its own process, so on a small machine it competes with the node for
//! CPU: the figures are for this client and this node together.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{CallOptions, Client, ClientError};

/// What to run.
pub struct BenchPlan {
    pub socket: PathBuf,
    pub path: String,
    pub input: String,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub path: String,
    pub connections: usize,
    pub duration_s: f64,
    pub calls: u64,
    pub calls_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: BTreeMap<String, u64>,
}

struct Sample {
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
}

/// Runs the plan and prints the report.
pub async fn run(plan: BenchPlan, json: bool) -> ExitCode {
    match measure(&plan).await {
        Ok(report) => {
            if json {
                let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                println!("{text}");
            } else {
                print_report(&report);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(3)
        }
    }
}

async fn measure(plan: &BenchPlan) -> Result<BenchReport, ClientError> {
    let mut clients = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        clients.push(Arc::new(Client::connect(&plan.socket).await?));
    }
    // One call first, so a wrong path or input fails loudly, not as a
    // million errors.
    if let Some(client) = clients.first() {
        client
            .call_raw(&plan.path, &plan.input, CallOptions::default())
            .await?;
    }
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let mut tasks = Vec::with_capacity(plan.connections);
    for client in clients {
        let path = plan.path.clone();
        let input = plan.input.clone();
        tasks.push(tokio::spawn(async move {
            let mut sample = Sample {
                latencies_us: Vec::with_capacity(1 << 16),
                errors: BTreeMap::new(),
            };
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let result = client.call_raw(&path, &input, CallOptions::default()).await;
                if sent < measure_from {
                    continue;
                }
                match result {
                    Ok(_) => {
                        let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        sample.latencies_us.push(us);
                    }
                    Err(err) => {
                        let code = err.call_error().map_or("transport", |e| e.code.as_str());
                        *sample.errors.entry(code.to_owned()).or_default() += 1;
                        if err.call_error().is_none() {
                            break;
                        }
                    }
                }
            }
            sample
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = BTreeMap::new();
    for task in tasks {
        let sample = task
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        latencies.extend(sample.latencies_us);
        for (code, n) in sample.errors {
            *errors.entry(code).or_default() += n;
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        f64::from(latencies[rank.clamp(1, latencies.len()) - 1]) / 1000.0
    };
    let seconds = plan.duration.as_secs_f64();
    let calls = latencies.len() as u64;
    Ok(BenchReport {
        path: plan.path.clone(),
        connections: plan.connections,
        duration_s: seconds,
        calls,
        calls_per_s: calls as f64 / seconds,
        p50_ms: pct(50.0),
        p90_ms: pct(90.0),
        p99_ms: pct(99.0),
        max_ms: latencies.last().map_or(0.0, |us| f64::from(*us) / 1000.0),
        errors,
    })
}

fn print_report(r: &BenchReport) {
    println!(
        "{}: {} connections, {:.1} s measured",
        r.path, r.connections, r.duration_s
    );
    println!("  calls/s  {:.0}  ({} calls)", r.calls_per_s, r.calls);
    println!(
        "  latency  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms
    );
    if r.errors.is_empty() {
        println!("  errors   0");
    } else {
        let list: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("  errors   {}", list.join(", "));
    }
}
