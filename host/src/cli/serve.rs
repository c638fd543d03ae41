//! `host serve`: load the configuration, start the node through
//! [`crate::serve`], unlock the vault, say where it listens, and run until
//! SIGINT or SIGTERM, then drain the calls in flight.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::NodeConfig;
use crate::ops::Node;
use crate::serve::{Listeners, Server};
use crate::vault::VaultState;

/// Runs the node; `socket` overrides the stack file's socket.
pub async fn run(
    config_path: Option<PathBuf>,
    socket: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    started: Instant,
) -> ExitCode {
    init_tracing();
    match serve(config_path, socket, passphrase_file, started).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config_path: Option<PathBuf>,
    socket: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    started: Instant,
) -> anyhow::Result<()> {
    let mut config = NodeConfig::load(config_path.as_deref())?;
    if let Some(socket) = socket {
        config.socket = socket;
    }
    let server = Server::start(&config, Listeners::from_config(&config)).await?;
    let node = server.node().clone();
    unlock_at_start(&node, passphrase_file.as_deref()).await?;
    println!(
        "hearth node `{}` ready in {} ms: {} plugins, {} operations\nidentity: {}\nsocket: {}\ngateway: {}\nmesh: {}\ndata: {}\nconfig: {}",
        node.name(),
        started.elapsed().as_millis(),
        node.plugins().len(),
        node.routes().len(),
        identity_line(&node),
        server.socket_path().display(),
        match (server.gateway_addr(), &config.gateway) {
            (Some(addr), Some(gateway)) => format!(
                "http://{addr} (bearer token in {})",
                gateway.token_file.display()
            ),
            _ => "off ([gateway] enabled = true turns it on; off by default in containers and CI)"
                .to_owned(),
        },
        mesh_line(&node),
        config.data_dir.display(),
        config.origin.as_ref().map_or_else(
            || "embedded default (examples/stack.toml)".to_owned(),
            |p| p.display().to_string()
        ),
    );
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    server
        .run(async {
            tokio::select! {
                _ = sigterm.recv() => tracing::info!("SIGTERM: draining calls in flight, then stopping"),
                _ = sigint.recv() => tracing::info!("SIGINT: draining calls in flight, then stopping"),
            }
        })
        .await;
    Ok(())
}

fn mesh_line(node: &Node) -> String {
    let mesh = node.peers();
    let peers = mesh.peer_names().len();
    match mesh.listen_addr() {
        Some(addr) => format!("QUIC on {addr}, {peers} peer(s) (`host peers`)"),
        None if peers > 0 => {
            format!("dialing {peers} peer(s), not accepting (`mesh.listen` unset)")
        }
        None => "off (no `mesh.listen`, no [peers])".to_owned(),
    }
}

/// Unlocks the vault when one exists and a passphrase is at hand; a wrong
/// passphrase stops the start, no passphrase leaves the vault locked.
async fn unlock_at_start(
    node: &Node,
    passphrase_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if node.vault().status().state != VaultState::Locked {
        return Ok(());
    }
    let Some(passphrase) = super::passphrase::read(passphrase_file, "vault passphrase: ", false)
        .map_err(anyhow::Error::msg)?
    else {
        tracing::warn!(
            "the vault is locked and no passphrase was given; unlock it with `host vault unlock`"
        );
        return Ok(());
    };
    let vault = node.vault().clone();
    tokio::task::spawn_blocking(move || vault.unlock(passphrase.as_bytes()))
        .await?
        .map_err(|e| anyhow::anyhow!("cannot unlock the vault: {e}"))?;
    tracing::info!("vault unlocked");
    Ok(())
}

fn identity_line(node: &Node) -> String {
    let status = node.vault().status();
    let id = status.identity;
    let note = match status.state {
        VaultState::Absent => "ephemeral: no vault, `host vault init` to make one",
        VaultState::Locked => "vault locked: `host vault unlock`",
        VaultState::Unlocked => "vault unlocked",
    };
    format!("{} ({}; {note})", id.public_key, id.fingerprint)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
