//! How the OperationEnv reaches other nodes: the [`PeerNetwork`] trait the
//! mesh implements, and what `host peers` and `host version` show of it.
//!
//! The pipeline decides *whether* a call may go to a peer; the network only
//! carries it. Defined here, below the mesh, so the OperationEnv never
//! imports the transport that serves it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use hearth_protocol::features::Features;
use hearth_registry::{CallError, OperationPath, ResponseEnvelope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::call::CallRequest;

/// A call the pipeline sends to a peer, with its routing decided.
#[derive(Debug)]
pub struct PeerCall {
    /// The operation as the peer serves it (`/node/echo/ping`).
    pub path: OperationPath,
    /// The call; its input, metadata, events and parent request go along.
    pub request: CallRequest,
    /// Nesting depth of the call on this node.
    pub depth: u32,
    /// When this node stops waiting.
    pub deadline: Instant,
    /// Whether the deadline travels to the peer; when not, the peer applies
    /// its own limit for the operation.
    pub send_deadline: bool,
}

/// A boxed future borrowing the network.
pub type PeerFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ResponseEnvelope, CallError>> + Send + 'a>>;

/// The other nodes this node knows.
pub trait PeerNetwork: Send + Sync {
    /// True when `name` is a configured peer.
    fn is_peer(&self, name: &str) -> bool;
    /// The configured peers' names.
    fn peer_names(&self) -> Vec<String>;
    /// Carries `call` to `peer` and brings back its result.
    fn call<'a>(&'a self, peer: &'a str, call: PeerCall) -> PeerFuture<'a>;
    /// The state of every peer.
    fn status(&self) -> Vec<PeerStatus>;
    /// The mesh protocol and this node's features.
    fn version(&self) -> MeshVersion;
    /// Where this node accepts peers, if it does.
    fn listen_addr(&self) -> Option<SocketAddr>;
    /// What another operator should dial.
    fn advertised_address(&self) -> Option<String>;
    /// Closes every connection and stops dialing (the node is stopping).
    fn close(&self);
    /// The pinned key of peer `name`.
    fn peer_key(&self, name: &str) -> Option<[u8; 32]>;
    /// The peer pinned to `key`.
    fn peer_by_key(&self, key: &[u8; 32]) -> Option<String>;
    /// What peer `name` advertised in its hello, while connected.
    fn advertised(&self, name: &str) -> Option<Arc<Features>>;
    /// Bumped whenever any peer connects, disconnects or changes state.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>>;
}

/// A node with no mesh: no peers, nothing to dial.
pub struct NoPeers;

impl PeerNetwork for NoPeers {
    fn is_peer(&self, _: &str) -> bool {
        false
    }

    fn peer_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn call<'a>(&'a self, peer: &'a str, _: PeerCall) -> PeerFuture<'a> {
        let error = CallError::new(
            hearth_registry::ErrorCode::NotFound,
            format!("`{peer}` is not a peer of this node; add it under [peers] in stack.toml"),
        );
        Box::pin(async move { Err(error) })
    }

    fn status(&self) -> Vec<PeerStatus> {
        Vec::new()
    }

    fn version(&self) -> MeshVersion {
        MeshVersion::default()
    }

    fn listen_addr(&self) -> Option<SocketAddr> {
        None
    }

    fn advertised_address(&self) -> Option<String> {
        None
    }

    fn close(&self) {}

    fn peer_key(&self, _: &str) -> Option<[u8; 32]> {
        None
    }

    fn peer_by_key(&self, _: &[u8; 32]) -> Option<String> {
        None
    }

    fn advertised(&self, _: &str) -> Option<Arc<Features>> {
        None
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// Which side dialed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// This node dialed.
    Outbound,
    /// The peer dialed.
    Inbound,
}

/// Where a peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PeerState {
    /// A negotiated connection is up.
    Connected,
    /// A dial is in progress.
    Connecting,
    /// The last dial got no answer; retrying with backoff.
    Unreachable,
    /// The last dial was refused (wrong key, missing feature).
    Refused,
    /// No address: waiting for the peer to dial this node.
    Waiting,
    /// This node's vault is locked: it cannot prove its identity.
    Locked,
}

impl PeerState {
    /// The state's name, as `host peers` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Connected => "connected",
            PeerState::Connecting => "connecting",
            PeerState::Unreachable => "unreachable",
            PeerState::Refused => "refused",
            PeerState::Waiting => "waiting",
            PeerState::Locked => "locked",
        }
    }
}

/// `host peers`: one peer as this node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PeerStatus {
    /// Its name here.
    pub name: String,
    /// Where this node dials it, if it does.
    pub address: Option<String>,
    /// Its pinned key, hex.
    pub public_key: String,
    /// `sha256:` fingerprint of the key.
    pub fingerprint: String,
    /// Where it stands.
    pub state: PeerState,
    /// Who dialed the connection in use.
    pub direction: Option<Direction>,
    /// Smoothed round-trip time of the connection in use, in ms.
    pub rtt_ms: Option<f64>,
    /// Features negotiated on the connection in use.
    pub features: Vec<String>,
    /// The peer's `host` version.
    pub version: Option<String>,
    /// Seconds since the connection in use came up.
    pub connected_for_s: Option<u64>,
    /// Why the last dial or connection failed.
    pub last_error: Option<String>,
    /// What the peer may call here.
    pub allow: Vec<String>,
    /// Scopes its calls hold here.
    pub scopes: Vec<String>,
}

/// Mesh facts for `host version`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct MeshVersion {
    /// The mesh protocol version.
    pub protocol: u32,
    /// Features a peer must support.
    pub required: Vec<String>,
    /// Features used when a peer supports them.
    pub optional: Vec<String>,
    /// Everything this node can do.
    pub supported: Vec<String>,
    /// Where it accepts peers, if it does.
    pub listen: Option<String>,
}
