//! The `host` command line: `serve`, `call`, `ops`, `plugins`, `peers`,
//! `version`, `id`, `vault`, `msg`, `clients`, `approve`, `mcp`,
//! `gateway`, `bench`, `plugin`.
//!
//! Every command but `serve` and `plugin` (which writes and builds plugin
//! crates) is a client of a running node through
//! [`crate::client`]; `ops` and `plugins` are calls to `/node/host/*`, so
//! the CLI shows exactly what any client would see.

mod bench;
mod clients;
mod msg;
mod msg_bench;
mod output;
mod passphrase;
mod plugin;
mod serve;
mod vault;
mod wasm_target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::{CallOptions, Client, ClientError, ClientKey};

/// Exit code when a call fails with a typed error.
const EXIT_CALL_FAILED: u8 = 1;
/// Exit code when no node could be reached.
const EXIT_UNREACHABLE: u8 = 3;

/// Hearth: a node runtime whose features are WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "host", version, about, long_about = None)]
pub struct Cli {
    /// The node's Unix socket [default: $HEARTH_SOCKET, else <data dir>/run/host.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node in the foreground until interrupted.
    Serve {
        /// The stack file; the bundled default (examples/stack.toml) when absent.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// File holding the vault passphrase (else $HEARTH_PASSPHRASE, else
        /// a prompt on a terminal, else the vault stays locked).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Manage the vault: the seed all keys derive from.
    Vault {
        #[command(subcommand)]
        command: vault::VaultCommand,
    },
    /// Print the `[peers.<name>]` entry another node pastes to pair with this one.
    Id {
        #[command(flatten)]
        format: Format,
    },
    /// Call an operation and print its output JSON.
    Call {
        /// Operation path, e.g. /node/echo/ping.
        path: String,
        /// Input JSON; `-` reads it from stdin. Default: {}.
        input: Option<String>,
        /// Deadline in milliseconds (the node's default otherwise).
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
        /// Metadata passed to the handler, as key=value; repeatable.
        #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
        metadata: Vec<(String, String)>,
        #[command(flatten)]
        format: Format,
    },
    /// Write and build plugins: `new NAME`, `build [DIR]`.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// List the operations the node serves, with kind and schemas.
    Ops {
        #[command(flatten)]
        format: Format,
    },
    /// List loaded plugins with versions and grants.
    Plugins {
        #[command(flatten)]
        format: Format,
    },
    /// List the configured peers: state, round-trip time, negotiated features.
    Peers {
        #[command(flatten)]
        format: Format,
    },
    /// Show this node's versions and mesh features.
    Version {
        #[command(flatten)]
        format: Format,
    },
    /// Client identities: list, approve with scopes, deny, revoke; this
    /// CLI's own key.
    Clients {
        #[command(subcommand)]
        command: clients::ClientsCommand,
    },
    /// Answer new clients asking to connect (an operator agent): each
    /// request is asked at the terminal; the first answer from any agent wins.
    Approve {
        /// Keep watching for new requests (else stop when none is open).
        #[arg(long)]
        watch: bool,
        /// Scopes an empty answer (or `y`) grants, comma-separated.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Serve MCP on stdio for an agent that launches this command: every
    /// operation the client's scopes allow is a tool. Connects to the node
    /// as any client (with HEARTH_CLIENT_KEY, as that client).
    Mcp,
    /// Secrets for plugins: set (value from stdin or a prompt), list, remove.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// The HTTP gateway's operator token.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// Messages: send, post, tail, inbox, outbox, requeue, drop, topics.
    Msg {
        #[command(subcommand)]
        command: msg::MsgCommand,
    },
    /// Load-test an operation: calls/s, latency percentiles, errors.
    Bench {
        /// Operation path, e.g. /node/echo/ping.
        path: String,
        /// Input JSON. Default: {}.
        input: Option<String>,
        /// Concurrent connections, each with one call in flight.
        #[arg(long, short = 'c', default_value_t = 16)]
        connections: usize,
        /// Seconds to measure.
        #[arg(long, short = 'd', default_value_t = 10.0)]
        duration: f64,
        /// Seconds to run before measuring.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Call through the HTTP gateway at this `host:port` instead of the
        /// socket (HTTP/1.1 keep-alive; the token from --token-file).
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
        /// The gateway token file (with --http).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Set secret NAME: its value is read from stdin (or asked for on a
    /// terminal), never from the command line.
    Set {
        /// The secret's name, as `grants.secrets` uses it.
        name: String,
    },
    /// The names of the secrets set.
    List,
    /// Remove secret NAME.
    Remove {
        /// The secret's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Write a new bearer token to <data dir>/run/gateway.token; a running
    /// node notices within a second and honours the old one for 60 s more.
    RotateToken {
        /// The node's stack file (for its data directory).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct Format {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli, started))
}

async fn run(cli: Cli, started: std::time::Instant) -> ExitCode {
    let socket = cli.socket.or_else(crate::config::default_socket);
    match cli.command {
        Command::Serve {
            config,
            passphrase_file,
        } => {
            let socket = socket_override(&socket, &cli_socket_given());
            serve::run(config, socket, passphrase_file, started).await
        }
        Command::Plugin { command } => plugin::run(command),
        Command::Id { format } => {
            show(socket, format.json, "/node/host/id", output::print_identity).await
        }
        Command::Vault { command } => match command {
            vault::VaultCommand::Unlock { passphrase_file } => {
                let passphrase = match passphrase::require(
                    passphrase_file.as_deref(),
                    "vault passphrase: ",
                    false,
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let input = zeroize::Zeroizing::new(
                    serde_json::json!({ "passphrase": passphrase.as_str() }).to_string(),
                );
                let options = CallOptions {
                    timeout: Some(Duration::from_secs(60)),
                    metadata: Vec::new(),
                };
                with_client(socket, false, async |client| {
                    let response = client
                        .call_raw("/node/vault/unlock", &input, options)
                        .await?;
                    output::print_vault_status(&typed(&response.output)?);
                    Ok(())
                })
                .await
            }
            vault::VaultCommand::Lock => {
                with_client(socket, false, async |client| {
                    let response = client
                        .call("/node/vault/lock", &serde_json::json!({}))
                        .await?;
                    output::print_vault_status(&typed(&response.output)?);
                    Ok(())
                })
                .await
            }
            vault::VaultCommand::Status { json } => {
                show(
                    socket,
                    json,
                    "/node/vault/status",
                    output::print_vault_status,
                )
                .await
            }
            offline => vault::run_offline(offline),
        },
        Command::Call {
            path,
            input,
            timeout_ms,
            metadata,
            format,
        } => {
            let input = match read_input(input) {
                Ok(input) => input,
                Err(err) => {
                    eprintln!("error: {err}");
                    return ExitCode::from(2);
                }
            };
            let options = CallOptions {
                timeout: timeout_ms.map(Duration::from_millis),
                metadata,
            };
            with_client(socket, format.json, async |client| {
                // A subscription's events print as JSON lines as they come.
                let response = client
                    .call_with_events(&path, &input, options, |event| output::print_event(&event))
                    .await?;
                output::print_response(&response, format.json);
                Ok(())
            })
            .await
        }
        Command::Ops { format } => {
            show(socket, format.json, "/node/host/ops", |ops: &Vec<_>| {
                output::print_ops(ops)
            })
            .await
        }
        Command::Bench {
            path,
            input,
            connections,
            duration,
            warmup,
            http,
            token_file,
            format,
        } => {
            let target = match (http, token_file) {
                (Some(addr), Some(file)) => match std::fs::read_to_string(&file) {
                    Ok(token) => bench::Target::Http {
                        addr,
                        token: token.trim().to_owned(),
                    },
                    Err(err) => {
                        eprintln!("error: cannot read {}: {err}", file.display());
                        return ExitCode::from(2);
                    }
                },
                (Some(_), None) => {
                    eprintln!("error: --http needs --token-file <data dir>/run/gateway.token");
                    return ExitCode::from(2);
                }
                (None, _) => match socket {
                    Some(socket) => bench::Target::Socket(socket),
                    None => {
                        eprintln!("error: no socket given; pass --socket or set HEARTH_SOCKET");
                        return ExitCode::from(EXIT_UNREACHABLE);
                    }
                },
            };
            let valid = |s: f64| s.is_finite() && s >= 0.0;
            if connections == 0 || !valid(duration) || duration == 0.0 || !valid(warmup) {
                eprintln!(
                    "error: --connections and --duration must be positive, --warmup not negative"
                );
                return ExitCode::from(2);
            }
            let plan = bench::BenchPlan {
                target,
                path,
                input: input.unwrap_or_else(|| "{}".to_owned()),
                connections,
                duration: Duration::from_secs_f64(duration),
                warmup: Duration::from_secs_f64(warmup),
            };
            bench::run(plan, format.json).await
        }
        Command::Msg { command } => msg::run(socket, command).await,
        Command::Clients { command } => clients::run(socket, command).await,
        Command::Secret { command } => {
            let (path, input) = match command {
                SecretCommand::Set { name } => {
                    let value = match read_secret(&name) {
                        Ok(value) => value,
                        Err(err) => {
                            eprintln!("error: {err}");
                            return ExitCode::from(2);
                        }
                    };
                    (
                        "/node/vault/secret-set",
                        zeroize::Zeroizing::new(
                            serde_json::json!({ "name": name, "value": value.as_str() })
                                .to_string(),
                        ),
                    )
                }
                SecretCommand::List => (
                    "/node/vault/secrets",
                    zeroize::Zeroizing::new("{}".to_owned()),
                ),
                SecretCommand::Remove { name } => (
                    "/node/vault/secret-remove",
                    zeroize::Zeroizing::new(serde_json::json!({ "name": name }).to_string()),
                ),
            };
            with_client(socket, false, async |client| {
                let response = client
                    .call_raw(path, &input, CallOptions::default())
                    .await?;
                match response.output {
                    serde_json::Value::Array(names) => {
                        for name in names {
                            println!("{}", name.as_str().unwrap_or_default());
                        }
                    }
                    other => println!("{}: done", other["name"].as_str().unwrap_or_default()),
                }
                Ok(())
            })
            .await
        }
        Command::Mcp => {
            let Some(socket) = socket else {
                eprintln!("error: no socket given; pass --socket or set HEARTH_SOCKET");
                return ExitCode::from(EXIT_UNREACHABLE);
            };
            match connect(&socket).await {
                Ok(client) => {
                    eprintln!(
                        "hearth mcp: serving node `{}` as `{}` on stdio",
                        client.node_name(),
                        client.identity()
                    );
                    crate::mcp::stdio::serve(
                        std::sync::Arc::new(client),
                        tokio::io::stdin(),
                        tokio::io::stdout(),
                    )
                    .await;
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    output::print_error(&err, false);
                    ExitCode::from(EXIT_UNREACHABLE)
                }
            }
        }
        Command::Approve { watch, scopes } => clients::approve(socket, watch, scopes).await,
        Command::Gateway {
            command: GatewayCommand::RotateToken { config },
        } => {
            let config = match crate::config::NodeConfig::load(config.as_deref()) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("error: {err}");
                    return ExitCode::from(2);
                }
            };
            let path = config
                .data_dir
                .join("run")
                .join(crate::config::GATEWAY_TOKEN_FILE);
            match crate::access::Access::rotate_token(&path) {
                Ok(_) => {
                    println!(
                        "new gateway token written to {}; the previous one works for 60 s after the node notices (within a second)",
                        path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Peers { format } => {
            show(socket, format.json, "/node/host/peers", output::print_peers).await
        }
        Command::Version { format } => {
            show(
                socket,
                format.json,
                "/node/host/version",
                output::print_version,
            )
            .await
        }
        Command::Plugins { format } => {
            show(socket, format.json, "/node/host/plugins", |p: &Vec<_>| {
                output::print_plugins(p)
            })
            .await
        }
    }
}

/// `serve` uses `--socket` only when given explicitly; otherwise its
/// stack file decides.
fn cli_socket_given() -> bool {
    std::env::args().any(|a| a == "--socket" || a.starts_with("--socket="))
}

fn socket_override(socket: &Option<PathBuf>, given: &bool) -> Option<PathBuf> {
    if *given { socket.clone() } else { None }
}

/// A secret's value: asked for on a terminal, else all of stdin (one
/// trailing newline dropped).
fn read_secret(name: &str) -> std::io::Result<zeroize::Zeroizing<String>> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("value of secret `{name}`: "))
            .map(zeroize::Zeroizing::new);
    }
    let mut value = zeroize::Zeroizing::new(std::io::read_to_string(std::io::stdin())?);
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

fn read_input(input: Option<String>) -> std::io::Result<String> {
    match input.as_deref() {
        None => Ok("{}".to_owned()),
        Some("-") => std::io::read_to_string(std::io::stdin()),
        Some(text) => Ok(text.to_owned()),
    }
}

/// Calls the native operation `path` (no input) and prints its output:
/// as it came with `--json`, else through `print` from its typed form.
async fn show<T: serde::de::DeserializeOwned>(
    socket: Option<PathBuf>,
    json: bool,
    path: &str,
    print: impl FnOnce(&T),
) -> ExitCode {
    with_client(socket, json, async |client| {
        let response = client.call(path, &serde_json::json!({})).await?;
        if json {
            output::print_json(&response.output);
        } else {
            print(&typed(&response.output)?);
        }
        Ok(())
    })
    .await
}

/// A native operation's output in its public type.
fn typed<T: serde::de::DeserializeOwned>(output: &serde_json::Value) -> Result<T, ClientError> {
    T::deserialize(output)
        .map_err(|e| ClientError::Protocol(format!("unexpected output from the node: {e}")))
}

/// Connects as the operator, or — with `HEARTH_CLIENT_KEY` set, or when
/// the node requires keys on its socket — proves the CLI's client key
/// (waiting, and saying so, while an operator is asked).
async fn connect(socket: &std::path::Path) -> Result<Client, ClientError> {
    let explicit = std::env::var_os("HEARTH_CLIENT_KEY").is_some_and(|v| !v.is_empty());
    if !explicit {
        let client = Client::connect(socket).await?;
        if client.identity() != crate::access::UNAUTHENTICATED {
            return Ok(client);
        }
    }
    let path = ClientKey::default_path().ok_or_else(|| {
        ClientError::Protocol("no home directory for the client key; set HEARTH_CLIENT_KEY".into())
    })?;
    let key = ClientKey::load_or_create(&path)?;
    let name = std::env::var("HEARTH_CLIENT_NAME").unwrap_or_else(|_| "host-cli".to_owned());
    Client::connect_with_key(socket, &key, &name, &mut |message| {
        eprintln!("{message}");
    })
    .await
}

async fn with_client(
    socket: Option<PathBuf>,
    json: bool,
    f: impl AsyncFnOnce(&Client) -> Result<(), ClientError>,
) -> ExitCode {
    let Some(socket) = socket else {
        eprintln!(
            "error: no socket given and no default data directory; pass --socket or set HEARTH_SOCKET"
        );
        return ExitCode::from(EXIT_UNREACHABLE);
    };
    let result = match connect(&socket).await {
        Ok(client) => f(&client).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::print_error(&err, json);
            match err.call_error() {
                Some(_) => ExitCode::from(EXIT_CALL_FAILED),
                None => ExitCode::from(EXIT_UNREACHABLE),
            }
        }
    }
}
