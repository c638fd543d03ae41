//! The JetStream side of `bench/messaging.sh`: N clients each publish a
//! message to a file-backed stream with one replica (the server runs with
//! `sync_interval: always`, so an ack means fsynced), each carrying a
//! `Nats-Msg-Id` (JetStream's dedupe key, as Hearth's client_message_id),
//! wait for the ack, and publish the next. With `--e2e`, an ordered pull
//! consumer times each message from the start of its publish to its
//! arrival. Prints the same JSON as `host msg bench --json`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn latency(mut us: Vec<u64>) -> serde_json::Value {
    us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * us.len() as f64).ceil() as usize;
        us[rank.clamp(1, us.len()) - 1] as f64 / 1000.0
    };
    serde_json::json!({
        "p50_ms": pct(50.0),
        "p99_ms": pct(99.0),
        "max_ms": us.last().map_or(0.0, |v| *v as f64 / 1000.0),
    })
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let args: Vec<String> = std::env::args().collect();
    let url: String = arg(&args, "--url", "127.0.0.1:4222".to_owned());
    let connections: usize = arg(&args, "--connections", 64);
    let duration = Duration::from_secs_f64(arg(&args, "--duration", 10.0));
    let warmup = Duration::from_secs_f64(arg(&args, "--warmup", 1.0));
    let payload: usize = arg(&args, "--payload", 64);
    let e2e = args.iter().any(|a| a == "--e2e");

    let admin = async_nats::connect(&url).await?;
    let js = jetstream::new(admin);
    let name = format!("BENCH{}", now_us());
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            storage: stream::StorageType::File,
            num_replicas: 1,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    let subject = format!("{name}.msgs");

    let start = Instant::now();
    let measure_from_us = now_us() + warmup.as_micros() as u64;
    let end_us = measure_from_us + duration.as_micros() as u64;
    let end = start + warmup + duration;

    let receiver = if e2e {
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::New,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        Some(tokio::spawn(async move {
            let mut e2e = Vec::new();
            while let Some(Ok(message)) = messages.next().await {
                let arrived = now_us();
                let Ok(body) = serde_json::from_slice::<serde_json::Value>(&message.payload) else {
                    continue;
                };
                let Some(sent) = body["t_us"].as_u64() else {
                    continue;
                };
                if sent >= end_us {
                    break;
                }
                if sent >= measure_from_us {
                    e2e.push(arrived.saturating_sub(sent));
                }
            }
            e2e
        }))
    } else {
        None
    };

    let pad = "x".repeat(payload);
    let mut senders = Vec::new();
    for c in 0..connections {
        let client = async_nats::connect(&url).await?;
        let js = jetstream::new(client);
        let subject = subject.clone();
        let pad = pad.clone();
        senders.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut errors = 0u64;
            let mut n = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let t_us = now_us();
                n += 1;
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("c{c}-{n}").as_str());
                let body = serde_json::json!({ "t_us": t_us, "pad": pad }).to_string();
                let acked = match js
                    .publish_with_headers(subject.clone(), headers, body.into())
                    .await
                {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if !acked {
                    errors += 1;
                } else if (measure_from_us..end_us).contains(&t_us) {
                    acks.push(sent.elapsed().as_micros() as u64);
                }
            }
            (acks, errors)
        }));
    }
    let mut acks = Vec::new();
    let mut errors = 0;
    for sender in senders {
        let (a, e) = sender.await?;
        acks.extend(a);
        errors += e;
    }
    let closer = serde_json::json!({ "t_us": end_us + 1 }).to_string();
    js.publish(subject.clone(), closer.into()).await?.await?;
    let seconds = duration.as_secs_f64();
    let (delivered, delivered_per_s, end_to_end) = match receiver {
        Some(task) => {
            let e2e = tokio::time::timeout(Duration::from_secs(120), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let n = e2e.len() as u64;
            (
                serde_json::json!(n),
                serde_json::json!(n as f64 / seconds),
                latency(e2e),
            )
        }
        None => (
            serde_json::Value::Null,
            serde_json::Value::Null,
            serde_json::Value::Null,
        ),
    };
    let _ = js.delete_stream(&name).await;
    let acked = acks.len() as u64;
    let report = serde_json::json!({
        "connections": connections,
        "duration_s": seconds,
        "acked": acked,
        "acked_per_s": acked as f64 / seconds,
        "ack": latency(acks),
        "delivered": delivered,
        "delivered_per_s": delivered_per_s,
        "end_to_end": end_to_end,
        "errors": errors,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
