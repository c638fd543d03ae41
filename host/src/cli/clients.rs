//! `host clients` and `host approve`: the operator's side of client
//! identities, as calls to `/node/clients/*`.
//!
//! `host approve --watch` is an operator agent: it follows
//! `/node/clients/requests`, asks at the terminal (or reads answers line by
//! line from a pipe) and answers with `/node/clients/decide`. When another
//! agent answers first, the prompt is withdrawn and says so.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use tokio::sync::mpsc;

use super::{typed, with_client};
use crate::access::{ApprovalEvent as Event, ClientRecord};
use crate::client::{CallOptions, ClientError, ClientKey};

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Every client key the node has seen, with status and scopes.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Let a client key in with these scopes (ahead of time, or to change
    /// its scopes; a waiting request is answered by this too).
    Approve {
        /// The client's key, 64 hex digits.
        key: String,
        /// Scopes, comma-separated, e.g. `echo:read,docker:*`.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
    /// Refuse a waiting client's request.
    Deny {
        /// The client's key, 64 hex digits.
        key: String,
    },
    /// Shut a client key out; its sessions end.
    Revoke {
        /// The client's key, 64 hex digits.
        key: String,
    },
    /// Print this CLI's own client key (made on first use), to paste into
    /// another node's `[clients] operator_keys` or to approve.
    Key,
}

/// Runs a `host clients` command.
pub async fn run(socket: Option<PathBuf>, command: ClientsCommand) -> ExitCode {
    let (path, input) = match command {
        ClientsCommand::List { json } => {
            return super::show(
                socket,
                json,
                "/node/clients/list",
                |list: &Vec<ClientRecord>| print_list(list),
            )
            .await;
        }
        ClientsCommand::Key => {
            let Some(path) = ClientKey::default_path() else {
                eprintln!("error: no home directory for the client key; set HEARTH_CLIENT_KEY");
                return ExitCode::FAILURE;
            };
            return match ClientKey::load_or_create(&path) {
                Ok(key) => {
                    println!("{}", key.public_hex());
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        ClientsCommand::Approve { key, scopes } => (
            "/node/clients/approve",
            serde_json::json!({ "key": key, "scopes": scopes }),
        ),
        ClientsCommand::Deny { key } => (
            "/node/clients/decide",
            serde_json::json!({ "key": key, "approve": false }),
        ),
        ClientsCommand::Revoke { key } => {
            ("/node/clients/revoke", serde_json::json!({ "key": key }))
        }
    };
    with_client(socket, false, async |client| {
        let response = client.call(path, &input).await?;
        let info: ClientRecord = typed(&response.output)?;
        println!(
            "{} ({}): {}{}",
            info.key,
            info.name,
            info.status,
            scopes_text(&info.scopes)
        );
        Ok(())
    })
    .await
}

fn scopes_text(scopes: &[String]) -> String {
    if scopes.is_empty() {
        String::new()
    } else {
        format!(" with scopes {}", scopes.join(","))
    }
}

fn print_list(list: &[ClientRecord]) {
    if list.is_empty() {
        println!("no clients yet");
        return;
    }
    for c in list {
        println!(
            "{}  {:<20} {:<9} {:<8} {}{}",
            c.key,
            c.name,
            c.status,
            c.door,
            if c.scopes.is_empty() {
                "-".to_owned()
            } else {
                c.scopes.join(",")
            },
            c.decided_by
                .as_deref()
                .map(|by| format!("  (by {by})"))
                .unwrap_or_default()
        );
    }
}

/// What an operator typed for one request.
enum Answer {
    Approve(Vec<String>),
    Deny,
}

fn parse_answer(line: &str, default: &[String]) -> Option<Answer> {
    let line = line.trim();
    match line {
        "n" | "no" | "deny" => Some(Answer::Deny),
        "" | "y" | "yes" if !default.is_empty() => Some(Answer::Approve(default.to_vec())),
        "" | "y" | "yes" => None,
        scopes => Some(Answer::Approve(
            scopes
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
    }
}

/// `host approve [--watch]`: answers new clients' requests as they come.
pub async fn approve(socket: Option<PathBuf>, watch: bool, default: Vec<String>) -> ExitCode {
    with_client(socket, false, async |client| {
        // The watch and the answers share the connection.
        let (events_tx, mut events) = mpsc::unbounded_channel::<String>();
        let watching = client.call_with_events(
            "/node/clients/requests",
            "{}",
            CallOptions::default(),
            move |event| {
                let _ = events_tx.send(event);
            },
        );
        tokio::pin!(watching);
        let mut lines = stdin_lines();
        let mut queue: Vec<(String, String, String)> = Vec::new();
        let default_text = if default.is_empty() {
            "scopes, comma-separated".to_owned()
        } else {
            format!("scopes [{}]", default.join(","))
        };
        let mut prompted: Option<String> = None;
        let idle = std::time::Duration::from_millis(if watch { u64::MAX / 4 } else { 1500 });
        loop {
            if prompted.is_none()
                && let Some((key, name, door)) = queue.first().cloned()
            {
                print!(
                    "client `{name}` (key {key}) asks to connect over {door}. Approve with {default_text}, or `n` to refuse: "
                );
                let _ = std::io::stdout().flush();
                prompted = Some(key);
            }
            tokio::select! {
                ended = &mut watching => {
                    ended?;
                    return Ok(());
                }
                event = events.recv() => {
                    let Some(event) = event else { return Ok(()) };
                    match serde_json::from_str::<Event>(&event) {
                        Ok(Event::Request { key, name, door }) => {
                            if !queue.iter().any(|(k, ..)| *k == key) {
                                queue.push((key, name, door));
                            }
                        }
                        Ok(Event::Decided { key, status, scopes, by }) => {
                            let was_prompted = prompted.as_deref() == Some(key.as_str());
                            queue.retain(|(k, ..)| *k != key);
                            if was_prompted {
                                prompted = None;
                                println!();
                                println!(
                                    "{key}: {status}{} by {by}",
                                    scopes_text(&scopes)
                                );
                            }
                        }
                        Ok(Event::Withdrawn { key }) => {
                            queue.retain(|(k, ..)| *k != key);
                            if prompted.as_deref() == Some(key.as_str()) {
                                prompted = None;
                                println!();
                                println!("{key}: the client stopped waiting");
                            }
                        }
                        Err(_) => {}
                    }
                }
                line = lines.recv(), if prompted.is_some() => {
                    let Some(line) = line else {
                        // Nobody to answer: stop watching.
                        return Ok(());
                    };
                    let key = prompted.take().unwrap_or_default();
                    let Some(answer) = parse_answer(&line, &default) else {
                        println!("no default scopes (--scopes): type the scopes, or `n`");
                        prompted = None;
                        continue;
                    };
                    let input = match answer {
                        Answer::Approve(scopes) => serde_json::json!({ "key": key, "approve": true, "scopes": scopes }),
                        Answer::Deny => serde_json::json!({ "key": key, "approve": false }),
                    };
                    queue.retain(|(k, ..)| *k != key);
                    match client.call("/node/clients/decide", &input).await {
                        Ok(response) => {
                            let info: ClientRecord = typed(&response.output)?;
                            println!("{}: {}{}", info.key, info.status, scopes_text(&info.scopes));
                        }
                        Err(ClientError::Call(err)) => println!("{key}: {}", err.message),
                        Err(err) => return Err(err),
                    }
                }
                () = tokio::time::sleep(idle), if prompted.is_none() && queue.is_empty() => {
                    return Ok(());
                }
            }
        }
    })
    .await
}

/// Lines from stdin, read on a thread of their own.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
