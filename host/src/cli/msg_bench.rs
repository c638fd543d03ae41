//! `host msg bench`: the messaging load generator.
//!
//! N connections to the sending node each send a message (`/node/msg/send`),
//! wait for the durable acknowledgement, and send the next. With
//! `--receiver-socket`, a subscription on the receiving node
//! (`/node/msg/subscribe`) times each message from the moment its send
//! started (the body carries it) to its arrival in the receiver's inbox.
//! Prints acknowledged sends per second with their latency, and delivered
//! messages per second with their end-to-end latency.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::client::{CallOptions, Client, ClientError};

/// What to run.
pub struct MsgBenchPlan {
    /// The sending node's socket.
    pub socket: PathBuf,
    /// The receiving node's socket, to time deliveries.
    pub receiver: Option<PathBuf>,
    /// The recipient as the sender names it.
    pub to: String,
    /// Concurrent senders.
    pub connections: usize,
    /// Seconds measured.
    pub duration: Duration,
    /// Seconds before measuring.
    pub warmup: Duration,
    /// Bytes of padding in each body.
    pub payload: usize,
}

/// Latency figures, in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct MsgBenchReport {
    /// Concurrent senders.
    pub connections: usize,
    /// Seconds measured.
    pub duration_s: f64,
    /// Sends acknowledged (durable in the outbox) in the window.
    pub acked: u64,
    /// Per second.
    pub acked_per_s: f64,
    /// Send to acknowledgement.
    pub ack: Latency,
    /// Messages sent in the window that reached the receiver's inbox.
    pub delivered: Option<u64>,
    /// Per second of the window.
    pub delivered_per_s: Option<f64>,
    /// Send start to arrival in the receiver's subscription.
    pub end_to_end: Option<Latency>,
    /// Failed sends.
    pub errors: u64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn latency(mut us: Vec<u64>) -> Latency {
    us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * us.len() as f64).ceil() as usize;
        us[rank.clamp(1, us.len()) - 1] as f64 / 1000.0
    };
    Latency {
        p50_ms: pct(50.0),
        p99_ms: pct(99.0),
        max_ms: us.last().map_or(0.0, |v| *v as f64 / 1000.0),
    }
}

/// Runs the plan and prints the report.
pub async fn run(plan: MsgBenchPlan, json: bool) -> ExitCode {
    match measure(&plan).await {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
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

async fn measure(plan: &MsgBenchPlan) -> Result<MsgBenchReport, ClientError> {
    let start = Instant::now();
    let wall_start = now_us();
    let measure_from_us = wall_start + plan.warmup.as_micros() as u64;
    let end_us = measure_from_us + plan.duration.as_micros() as u64;
    let end = start + plan.warmup + plan.duration;
    // The receiver first, so no message of the window goes by unseen.
    let receiver = match &plan.receiver {
        Some(socket) => {
            let client = Client::connect(socket).await?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(async move {
                let mut e2e = Vec::new();
                let mut done = Some(tx);
                let _ = client
                    .call_with_events(
                        "/node/msg/subscribe",
                        "{}",
                        CallOptions::default(),
                        |event| {
                            let arrived = now_us();
                            let Ok(message) = serde_json::from_str::<serde_json::Value>(&event)
                            else {
                                return;
                            };
                            let Some(sent) = message["body"]["t_us"].as_u64() else {
                                return;
                            };
                            if (measure_from_us..end_us).contains(&sent) {
                                e2e.push(arrived.saturating_sub(sent));
                            }
                            if sent >= end_us
                                && let Some(done) = done.take()
                            {
                                let _ = done.send(std::mem::take(&mut e2e));
                            }
                        },
                    )
                    .await;
            });
            Some((task, rx))
        }
        None => None,
    };
    let pad = "x".repeat(plan.payload);
    let mut senders = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let client = Arc::new(Client::connect(&plan.socket).await?);
        let to = plan.to.clone();
        let pad = pad.clone();
        senders.push(tokio::spawn(async move {
            let mut acks = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let t_us = now_us();
                let input = serde_json::json!({ "to": to, "body": { "t_us": t_us, "pad": pad } })
                    .to_string();
                let result = client
                    .call_raw("/node/msg/send", &input, CallOptions::default())
                    .await;
                let measured = (measure_from_us..end_us).contains(&t_us);
                match result {
                    Ok(_) if measured => acks.push(sent.elapsed().as_micros() as u64),
                    Ok(_) => {}
                    Err(err) => {
                        errors += 1;
                        if err.call_error().is_none() {
                            break;
                        }
                    }
                }
            }
            (acks, errors)
        }));
    }
    let mut acks = Vec::new();
    let mut errors = 0;
    for sender in senders {
        let (a, e) = sender
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        acks.extend(a);
        errors += e;
    }
    // One more message after the window tells the receiver it is over.
    let closer = Client::connect(&plan.socket).await?;
    let input = serde_json::json!({ "to": plan.to, "body": { "t_us": end_us + 1 } }).to_string();
    closer
        .call_raw("/node/msg/send", &input, CallOptions::default())
        .await?;
    let seconds = plan.duration.as_secs_f64();
    let (delivered, delivered_per_s, end_to_end) = match receiver {
        Some((task, rx)) => {
            let e2e = tokio::time::timeout(Duration::from_secs(120), rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            task.abort();
            let n = e2e.len() as u64;
            (Some(n), Some(n as f64 / seconds), Some(latency(e2e)))
        }
        None => (None, None, None),
    };
    let acked = acks.len() as u64;
    Ok(MsgBenchReport {
        connections: plan.connections,
        duration_s: seconds,
        acked,
        acked_per_s: acked as f64 / seconds,
        ack: latency(acks),
        delivered,
        delivered_per_s,
        end_to_end,
        errors,
    })
}

fn print_report(r: &MsgBenchReport) {
    println!(
        "/node/msg/send: {} senders, {:.1} s measured",
        r.connections, r.duration_s
    );
    println!(
        "  acked      {:.0}/s ({} sends)  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        r.acked_per_s, r.acked, r.ack.p50_ms, r.ack.p99_ms, r.ack.max_ms
    );
    if let (Some(n), Some(rate), Some(e2e)) = (r.delivered, r.delivered_per_s, &r.end_to_end) {
        println!(
            "  delivered  {rate:.0}/s ({n} messages)  end to end p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            e2e.p50_ms, e2e.p99_ms, e2e.max_ms
        );
    }
    println!("  errors     {}", r.errors);
}
