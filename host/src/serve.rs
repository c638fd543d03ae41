//! `serve(config, listeners, shutdown)`: wires a node together and runs it
//! until told to stop, then drains.
//!
//! The one place that knows every layer: it starts the OperationEnv
//! ([`Node`]), binds the mesh and attaches it as the node's
//! [`PeerNetwork`](crate::ops::PeerNetwork), binds the Unix socket, and
//! serves. On shutdown it stops accepting, refuses new calls with
//! `unavailable`, lets calls in flight finish up to the drain deadline
//! (`node.drain_ms`, 10 s by default), then closes the mesh. The `host serve` command and the
//! in-process tests both run nodes through it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::call::DynOperationEnv;
use crate::config::NodeConfig;
use crate::gateway::Gateway;
use crate::mesh::Mesh;
use crate::ops::Node;
use crate::transport::server::SocketServer;

/// Why a node could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The node could not start.
    #[error(transparent)]
    Start(#[from] crate::ops::StartError),
    /// The mesh endpoint could not start.
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
    /// The socket could not be bound.
    #[error(transparent)]
    Bind(#[from] crate::transport::server::BindError),
    /// The HTTP gateway could not start.
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
}

/// Where a node takes calls. The mesh's UDP endpoint comes from
/// `[mesh] listen` in the configuration.
#[derive(Debug, Clone)]
pub struct Listeners {
    /// The Unix socket local clients connect to.
    pub socket: PathBuf,
}

impl Listeners {
    /// The listeners the configuration names.
    pub fn from_config(config: &NodeConfig) -> Self {
        Listeners {
            socket: config.socket.clone(),
        }
    }
}

/// A started node with its listeners bound, not yet serving.
pub struct Server {
    node: Arc<Node>,
    mesh: Arc<Mesh>,
    socket: SocketServer,
    gateway: Option<Gateway>,
    drain: Duration,
}

impl Server {
    /// Starts the node, binds the mesh and the socket. Nothing is served
    /// and no peer is dialed until [`Server::run`], so the caller can
    /// unlock the vault first.
    pub async fn start(config: &NodeConfig, listeners: Listeners) -> Result<Server, ServeError> {
        let node = Node::start(config).await?;
        let mesh = Mesh::bind(&config.name, &config.mesh, node.vault().clone())?;
        node.attach_peers(mesh.clone());
        let socket = SocketServer::bind(&listeners.socket).await?;
        let gateway = match &config.gateway {
            Some(gateway) => Some(Gateway::bind(gateway).await?),
            None => None,
        };
        Ok(Server {
            node,
            mesh,
            socket,
            gateway,
            drain: config.drain,
        })
    }

    /// How long calls in flight may finish after shutdown is asked for.
    pub fn drain(mut self, deadline: Duration) -> Self {
        self.drain = deadline;
        self
    }

    /// The running node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Where the HTTP gateway listens, when it is on.
    pub fn gateway_addr(&self) -> Option<std::net::SocketAddr> {
        self.gateway.as_ref().and_then(Gateway::local_addr)
    }

    /// The bound socket.
    pub fn socket_path(&self) -> &Path {
        self.socket.path()
    }

    /// Serves until `shutdown` completes, then drains: new connections and
    /// calls are refused, calls in flight get up to the drain deadline.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let env: Arc<dyn DynOperationEnv> = self.node.clone();
        self.mesh.start(Arc::downgrade(&env));
        self.node.start_messaging();
        let gateway = async {
            match self.gateway {
                Some(gateway) => {
                    gateway
                        .serve(self.node.clone(), self.node.access().clone())
                        .await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.socket.serve(self.node.clone(), self.node.access().clone()) => {}
            () = gateway => {}
            () = shutdown => {}
        }
        // No new connections: the socket file goes now.
        drop(self.socket);
        let deadline = Instant::now() + self.drain;
        let left = self.node.drain(deadline).await;
        if left > 0 {
            tracing::warn!(
                calls = left,
                drain_ms = self.drain.as_millis() as u64,
                "calls still running at the drain deadline; stopping anyway"
            );
        } else {
            tracing::info!("every call in flight finished; stopping");
        }
        self.mesh.close();
    }
}

/// Starts a node on `config`, serves it on `listeners` until `shutdown`
/// completes, and drains.
pub async fn serve(
    config: &NodeConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    Server::start(config, listeners).await?.run(shutdown).await;
    Ok(())
}
