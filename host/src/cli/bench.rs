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
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{CallOptions, Client, ClientError};

/// Where the calls go.
pub enum Target {
    /// The node's Unix socket.
    Socket(PathBuf),
    /// The HTTP gateway, over HTTP/1.1 keep-alive, with the bearer token.
    Http {
        /// `host:port`.
        addr: String,
        /// The operator's token.
        token: String,
    },
}

/// What to run.
pub struct BenchPlan {
    pub target: Target,
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

/// One connection making calls.
enum Caller {
    Socket(Client),
    Http(HttpCaller),
}

impl Caller {
    async fn connect(target: &Target) -> Result<Caller, ClientError> {
        Ok(match target {
            Target::Socket(socket) => Caller::Socket(Client::connect(socket).await?),
            Target::Http { addr, token } => Caller::Http(HttpCaller::connect(addr, token).await?),
        })
    }

    /// One call; `Err(code)`, with `fatal` when the connection is gone.
    async fn call(&mut self, path: &str, input: &str) -> Result<(), (String, bool)> {
        match self {
            Caller::Socket(client) => {
                match client.call_raw(path, input, CallOptions::default()).await {
                    Ok(_) => Ok(()),
                    Err(err) => Err(match err.call_error() {
                        Some(e) => (e.code.as_str().to_owned(), false),
                        None => ("transport".to_owned(), true),
                    }),
                }
            }
            Caller::Http(http) => match http.call(path, input).await {
                Ok(200) => Ok(()),
                Ok(status) => Err((format!("http-{status}"), false)),
                Err(_) => Err(("transport".to_owned(), true)),
            },
        }
    }
}

/// A minimal HTTP/1.1 keep-alive client: a request, then a response read by
/// its Content-Length (what the gateway always sends for a call).
struct HttpCaller {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    host: String,
    auth: String,
}

impl HttpCaller {
    async fn connect(addr: &str, token: &str) -> Result<HttpCaller, ClientError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Protocol(format!("cannot connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(HttpCaller {
            stream: tokio::io::BufReader::new(stream),
            host: addr.to_owned(),
            auth: format!("Bearer {token}"),
        })
    }

    async fn call(&mut self, path: &str, input: &str) -> std::io::Result<u16> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let request = format!(
            "POST /v1/call{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{input}",
            self.host,
            self.auth,
            input.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

async fn measure(plan: &BenchPlan) -> Result<BenchReport, ClientError> {
    let mut callers = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        callers.push(Caller::connect(&plan.target).await?);
    }
    // One call first, so a wrong path or input fails loudly, not as a
    // million errors.
    if let Some(caller) = callers.first_mut()
        && let Err((code, _)) = caller.call(&plan.path, &plan.input).await
    {
        return Err(ClientError::Protocol(format!(
            "the first call to {} failed: {code}",
            plan.path
        )));
    }
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let mut tasks = Vec::with_capacity(plan.connections);
    for mut caller in callers {
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
                let result = caller.call(&path, &input).await;
                if sent < measure_from {
                    continue;
                }
                match result {
                    Ok(()) => {
                        let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        sample.latencies_us.push(us);
                    }
                    Err((code, fatal)) => {
                        *sample.errors.entry(code).or_default() += 1;
                        if fatal {
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
