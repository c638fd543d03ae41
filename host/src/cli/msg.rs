//! `host msg`: send and post through the outbox, follow and page the
//! inbox, look after the outbox's dead rows and the topics, and (offline)
//! recover a damaged outbox. Each online command is one call to
//! `/node/msg/*`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::{output, typed, with_client};
use crate::client::CallOptions;
use crate::messaging::inbox::InboxMessage;
use crate::messaging::outbox::OutboxRow;
use crate::ops::native::broker::BrokerView;
use crate::ops::native::msg::{InboxPage, OutboxView, Sent, TopicList};

#[derive(Debug, Subcommand)]
pub enum MsgCommand {
    /// Send a message to a node (a peer's name or a public key).
    Send {
        /// The recipient.
        to: String,
        /// The body: JSON, or else taken as a string.
        body: String,
        /// A stable id: resending with it is a no-op (a ULID otherwise).
        #[arg(long)]
        id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Post a message to a topic.
    Post {
        /// The topic.
        topic: String,
        /// The body: JSON, or else taken as a string.
        body: String,
        /// A stable id: resending with it is a no-op (a ULID otherwise).
        #[arg(long)]
        id: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Follow new inbox messages as they arrive (one line each).
    Tail {
        /// Only this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Only from this sender (a peer's name or a key).
        #[arg(long)]
        from: Option<String>,
        /// Replay stored messages after this seq first.
        #[arg(long)]
        since: Option<i64>,
        /// Print each message as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List inbox messages, oldest first.
    Inbox {
        /// Only messages after this seq (the `next` of a previous page).
        #[arg(long)]
        since: Option<i64>,
        /// Only this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Only from this sender (a peer's name or a key).
        #[arg(long)]
        from: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the outbox: counts, and rows with their last error.
    Outbox {
        /// Only rows in this state: pending, inflight, done or dead.
        #[arg(long)]
        status: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a dead outbox row again (by row id or client_message_id).
    Requeue {
        /// The row.
        id: String,
    },
    /// Delete a dead outbox row for good.
    Drop {
        /// The row.
        id: String,
    },
    /// Show, add or remove this node's topic subscriptions.
    Topics {
        /// Topics to subscribe to.
        #[arg(long)]
        subscribe: Vec<String>,
        /// Topics to unsubscribe from.
        #[arg(long)]
        unsubscribe: Vec<String>,
    },
    /// On a broker: what it stored, deduped, refused and delivered.
    Broker {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load-test messaging: acknowledged sends per second and, with
    /// `--receiver-socket`, delivery to the receiver's inbox end to end.
    Bench {
        /// The recipient (a name the sending node knows, or a key).
        to: String,
        /// The receiving node's socket, to time deliveries end to end.
        #[arg(long, value_name = "PATH")]
        receiver_socket: Option<PathBuf>,
        /// Concurrent senders, each with one send in flight.
        #[arg(long, short = 'c', default_value_t = 64)]
        connections: usize,
        /// Seconds to measure.
        #[arg(long, short = 'd', default_value_t = 10.0)]
        duration: f64,
        /// Seconds to run before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Bytes of padding in each message body.
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// With the node stopped: rebuild a damaged outbox.db or broker.db from
    /// its readable rows, moving the damaged file aside.
    Recover {
        /// The node's data directory.
        #[arg(long, value_name = "DIR", env = "HEARTH_DATA_DIR")]
        data_dir: PathBuf,
    },
}

/// A CLI body argument: JSON when it parses, else a string.
fn body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

pub async fn run(socket: Option<PathBuf>, command: MsgCommand) -> ExitCode {
    match command {
        MsgCommand::Send {
            to,
            body: b,
            id,
            json,
        } => {
            let input = json!({ "to": to, "body": body(&b), "client_message_id": id });
            call(socket, "/node/msg/send", input, json, print_sent).await
        }
        MsgCommand::Post {
            topic,
            body: b,
            id,
            json,
        } => {
            let input = json!({ "topic": topic, "body": body(&b), "client_message_id": id });
            call(socket, "/node/msg/post", input, json, print_sent).await
        }
        MsgCommand::Tail {
            topic,
            from,
            since,
            json,
        } => {
            let input = json!({ "topic": topic, "from": from, "since": since }).to_string();
            with_client(socket, json, async |client| {
                client
                    .call_with_events(
                        "/node/msg/subscribe",
                        &input,
                        CallOptions::default(),
                        |event| match serde_json::from_str::<InboxMessage>(&event) {
                            Ok(message) if !json => print_message(&message),
                            _ => output::print_event(&event),
                        },
                    )
                    .await?;
                Ok(())
            })
            .await
        }
        MsgCommand::Inbox {
            since,
            topic,
            from,
            limit,
            json,
        } => {
            let input = json!({ "since": since, "topic": topic, "from": from, "limit": limit });
            call(
                socket,
                "/node/msg/inbox",
                input,
                json,
                |page: &InboxPage| {
                    for message in &page.messages {
                        print_message(message);
                    }
                    match page.next {
                        Some(next) => println!("more: host msg inbox --since {next}"),
                        None => println!("{} message(s)", page.messages.len()),
                    }
                },
            )
            .await
        }
        MsgCommand::Outbox {
            status,
            limit,
            json,
        } => {
            let input = json!({ "status": status, "limit": limit });
            call(socket, "/node/msg/outbox", input, json, print_outbox).await
        }
        MsgCommand::Requeue { id } => {
            call(
                socket,
                "/node/msg/requeue",
                json!({ "id": id }),
                false,
                |row: &OutboxRow| {
                    println!(
                        "requeued {} ({}): pending again",
                        row.client_message_id, row.id
                    );
                },
            )
            .await
        }
        MsgCommand::Drop { id } => {
            call(
                socket,
                "/node/msg/drop",
                json!({ "id": id }),
                false,
                |row: &OutboxRow| {
                    println!("dropped {} ({})", row.client_message_id, row.id);
                },
            )
            .await
        }
        MsgCommand::Topics {
            subscribe,
            unsubscribe,
        } => {
            let input = json!({ "subscribe": subscribe, "unsubscribe": unsubscribe });
            call(
                socket,
                "/node/msg/topics",
                input,
                false,
                |list: &TopicList| {
                    if list.topics.is_empty() {
                        println!("no topics: subscribe with `host msg topics --subscribe <topic>`");
                    }
                    for topic in &list.topics {
                        println!("{topic}");
                    }
                },
            )
            .await
        }
        MsgCommand::Broker { json } => {
            call(
                socket,
                "/node/broker/stats",
                json!({}),
                json,
                |view: &BrokerView| {
                    let s = &view.stats;
                    println!("dedupe window   {}h", view.dedupe_window_s / 3600);
                    println!("accepted        {}", s.accepted);
                    println!(
                        "duplicates      {} (answered with the stored id)",
                        s.duplicates
                    );
                    println!(
                        "conflicts       {} (same id, other content: refused)",
                        s.conflicts
                    );
                    println!("delivered       {}", s.delivered);
                    println!("pending         {} deliveries", s.pending_deliveries);
                    println!("stored          {} messages", s.stored);
                    println!("subscriptions   {}", s.subscriptions);
                },
            )
            .await
        }
        MsgCommand::Bench {
            to,
            receiver_socket,
            connections,
            duration,
            warmup,
            payload,
            json,
        } => {
            let Some(socket) = socket else {
                eprintln!("error: no socket given; pass --socket or set HEARTH_SOCKET");
                return ExitCode::from(3);
            };
            let valid = |s: f64| s.is_finite() && s >= 0.0;
            if connections == 0 || !valid(duration) || duration == 0.0 || !valid(warmup) {
                eprintln!(
                    "error: --connections and --duration must be positive, --warmup not negative"
                );
                return ExitCode::from(2);
            }
            let plan = super::msg_bench::MsgBenchPlan {
                socket,
                receiver: receiver_socket,
                to,
                connections,
                duration: Duration::from_secs_f64(duration),
                warmup: Duration::from_secs_f64(warmup),
                payload,
            };
            super::msg_bench::run(plan, json).await
        }
        MsgCommand::Recover { data_dir } => match crate::messaging::recover(&data_dir) {
            Ok(done) if done.is_empty() => {
                println!(
                    "{}: outbox.db and broker.db pass the integrity check; nothing to recover",
                    data_dir.display()
                );
                ExitCode::SUCCESS
            }
            Ok(done) => {
                for file in done {
                    let rows: Vec<String> = file
                        .rows
                        .iter()
                        .map(|(table, n)| format!("{n} {table}"))
                        .collect();
                    println!(
                        "{}: rebuilt with {}; the damaged file is {}",
                        file.file.display(),
                        rows.join(", "),
                        file.moved_to.display()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn call<T: serde::de::DeserializeOwned>(
    socket: Option<PathBuf>,
    path: &str,
    input: Value,
    json: bool,
    print: impl FnOnce(&T),
) -> ExitCode {
    let input = input.to_string();
    with_client(socket, json, async |client| {
        let options = CallOptions {
            timeout: Some(Duration::from_secs(30)),
            metadata: Vec::new(),
        };
        let response = client.call_raw(path, &input, options).await?;
        if json {
            output::print_json(&response.output);
        } else {
            print(&typed(&response.output)?);
        }
        Ok(())
    })
    .await
}

fn print_sent(sent: &Sent) {
    let again = if sent.duplicate {
        " (already sent with this id: nothing new stored)"
    } else {
        ""
    };
    println!("{} {:?}{again}", sent.client_message_id, sent.status);
}

fn print_message(message: &InboxMessage) {
    let from = message
        .from
        .name
        .clone()
        .unwrap_or_else(|| message.from.key.chars().take(16).collect::<String>() + "…");
    let topic = message
        .topic
        .as_deref()
        .map(|t| format!(" #{t}"))
        .unwrap_or_default();
    println!(
        "{:>6}  {from}{topic}  {}  [{}]",
        message.seq, message.body, message.client_message_id
    );
}

fn print_outbox(view: &OutboxView) {
    let c = &view.counts;
    let state = match (&view.broker, view.broker_connected) {
        (None, _) => "",
        (Some(_), true) => " (connected)",
        (Some(_), false) => " (not connected: messages wait in the outbox)",
    };
    println!(
        "broker: {}{state}",
        view.broker.as_deref().unwrap_or("none configured")
    );
    println!(
        "pending {}  inflight {}  done {}  dead {}",
        c.pending, c.inflight, c.done, c.dead
    );
    print!(
        "max_age {:.1}h, max_attempts {}",
        view.max_age_hours, view.max_attempts
    );
    match &view.max_age_lowered {
        Some(why) => println!(" ({why})"),
        None => println!(),
    }
    for row in &view.rows {
        let error = row
            .last_error
            .as_deref()
            .map(|e| format!("  last error: {e}"))
            .unwrap_or_default();
        println!(
            "{:<9} {}  -> {}  attempts {}{error}",
            format!("{:?}", row.status).to_lowercase(),
            row.client_message_id,
            row.target,
            row.attempts
        );
    }
    if c.dead > 0 {
        println!(
            "dead rows: `host msg requeue <id>` sends one again, `host msg drop <id>` deletes it"
        );
    }
}
