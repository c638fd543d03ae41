//! The mesh: this node's QUIC endpoint, its pinned peers, and calls that
//! cross from one node to another.
//!
//! Owns the endpoint, one [`link::PeerLink`] per `[peers.<name>]` entry
//! (dialing with backoff when the peer has an address), the control-stream
//! handshake with feature negotiation ([`handshake`]), serving calls that
//! arrive on a connection ([`serve`]) and making calls to a peer
//! ([`call`]). Every connection is symmetric once up: either side may open
//! call streams on it.
//!
//! It does not decide who may call what: incoming calls go to the
//! OperationEnv's pipeline with a [`PeerOrigin`](crate::call::PeerOrigin)
//! carrying the peer's `allow` list, where every access check lives. Nor
//! does it hold keys: TLS signs through the vault ([`tls`]). The
//! OperationEnv reaches it only through [`PeerNetwork`], which it
//! implements.

mod call;
mod handshake;
mod link;
mod serve;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};

use hearth_protocol::features::Features;
use hearth_protocol::mesh as wire;
use hearth_registry::{CallError, ErrorCode};

use crate::call::DynOperationEnv;
use crate::config::MeshConfig;
use crate::ops::peers::{MeshVersion, PeerCall, PeerFuture, PeerNetwork, PeerStatus};
use crate::vault::Vault;
use link::PeerLink;

/// Call streams one connection may have open at once, each way.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Why the mesh could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// TLS or QUIC configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The UDP socket could not be bound.
    #[error(
        "cannot listen for peers on {addr}: {source}; choose another `mesh.listen` in stack.toml"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The peer's key is this node's own.
    #[error(
        "peers.{0}.public_key is this node's own key; a node cannot be its own peer (paste the other node's `host id` output)"
    )]
    SelfPeer(String),
}

/// This node's end of the mesh.
pub struct Mesh {
    name: String,
    endpoint: Option<quinn::Endpoint>,
    certificate: Arc<tls::NodeCertificate>,
    closing: std::sync::atomic::AtomicBool,
    features: Features,
    links: BTreeMap<String, Arc<PeerLink>>,
    by_key: HashMap<[u8; 32], Arc<PeerLink>>,
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    node: OnceLock<Weak<dyn DynOperationEnv>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Mesh {
    /// Binds the endpoint (when listening or dialing) and prepares a link
    /// per peer. Nothing is dialed until [`Mesh::start`].
    pub fn bind(
        name: &str,
        config: &MeshConfig,
        vault: Arc<Vault>,
    ) -> Result<Arc<Mesh>, MeshError> {
        let certificate = tls::NodeCertificate::new(vault);
        let transport = Arc::new(tls::transport(
            config.idle_timeout,
            MAX_STREAMS_PER_CONNECTION,
        )?);
        let mut links = BTreeMap::new();
        let mut by_key = HashMap::new();
        let changed = Arc::new(tokio::sync::watch::channel(0).0);
        for peer in &config.peers {
            if peer.key == certificate.public_key() {
                return Err(MeshError::SelfPeer(peer.name.clone()));
            }
            let refusal = tls::RefusalSlot::default();
            let client = tls::client_config(
                certificate.clone(),
                &peer.name,
                peer.key,
                transport.clone(),
                refusal.clone(),
            )?;
            let link = Arc::new(PeerLink::new(
                peer.clone(),
                client,
                refusal,
                config.idle_timeout,
                config.duplicate_connections,
                changed.clone(),
            ));
            by_key.insert(peer.key, link.clone());
            links.insert(peer.name.clone(), link);
        }
        let endpoint = match config.listen {
            Some(addr) => {
                let server = tls::server_config(certificate.clone(), transport)?;
                Some(
                    quinn::Endpoint::server(server, addr)
                        .map_err(|source| MeshError::Bind { addr, source })?,
                )
            }
            None if !links.is_empty() => {
                let addr = SocketAddr::from(([0, 0, 0, 0], 0));
                Some(
                    quinn::Endpoint::client(addr)
                        .map_err(|source| MeshError::Bind { addr, source })?,
                )
            }
            None => None,
        };
        let listen = match (&endpoint, config.listen) {
            (Some(endpoint), Some(_)) => endpoint.local_addr().ok(),
            _ => None,
        };
        Ok(Arc::new(Mesh {
            name: name.to_owned(),
            endpoint,
            certificate,
            closing: std::sync::atomic::AtomicBool::new(false),
            features: config.features.clone(),
            links,
            by_key,
            listen,
            advertise: config.advertise.clone(),
            node: OnceLock::new(),
            changed,
        }))
    }

    /// Starts accepting peers and dialing those with an address; incoming
    /// calls go to `node`.
    pub fn start(self: &Arc<Self>, node: Weak<dyn DynOperationEnv>) {
        if self.node.set(node).is_err() {
            return;
        }
        let Some(endpoint) = &self.endpoint else {
            return;
        };
        if self.listen.is_some() {
            tokio::spawn(handshake::accept_loop(self.clone(), endpoint.clone()));
        }
        for link in self.links.values() {
            if link.config.address.is_some() {
                tokio::spawn(link::dial_loop(
                    self.clone(),
                    link.clone(),
                    endpoint.clone(),
                ));
            }
        }
    }

    /// What another operator should put in `address`: `mesh.advertise`, or
    /// the listen address with this machine's name for an unspecified IP.
    pub fn advertised_address(&self) -> Option<String> {
        if let Some(advertise) = &self.advertise {
            return Some(advertise.clone());
        }
        let listen = self.listen?;
        if listen.ip().is_unspecified() {
            Some(format!("{}:{}", hostname(), listen.port()))
        } else {
            Some(listen.to_string())
        }
    }

    /// The node incoming calls go to, while it runs.
    fn node(&self) -> Option<Arc<dyn DynOperationEnv>> {
        self.node.get().and_then(Weak::upgrade)
    }

    fn link(&self, peer: &str) -> Result<&Arc<PeerLink>, CallError> {
        self.links.get(peer).ok_or_else(|| {
            CallError::new(
                ErrorCode::NotFound,
                format!("`{peer}` is not a peer of this node; add it under [peers] in stack.toml"),
            )
        })
    }

    /// True when this node can sign a handshake (its vault is not locked).
    fn can_sign(&self) -> bool {
        self.certificate.can_sign()
    }

    /// True once [`Mesh::close`] ran.
    fn closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Closes every connection (at shutdown or when the node is dropped),
    /// telling peers why; dialers stop.
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for link in self.links.values() {
            link.wake();
        }
        if let Some(endpoint) = &self.endpoint {
            endpoint.close(wire::close::DONE.into(), b"node shutting down");
        }
    }
}

/// This machine's host name, for the advertised address.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl PeerNetwork for Mesh {
    fn is_peer(&self, name: &str) -> bool {
        self.links.contains_key(name)
    }

    fn peer_names(&self) -> Vec<String> {
        self.links.keys().cloned().collect()
    }

    fn call<'a>(&'a self, peer: &'a str, call: PeerCall) -> PeerFuture<'a> {
        Box::pin(self.call_peer(peer, call))
    }

    fn status(&self) -> Vec<PeerStatus> {
        self.links.values().map(|link| link.status()).collect()
    }

    fn version(&self) -> MeshVersion {
        MeshVersion {
            protocol: wire::MESH_PROTOCOL,
            required: self.features.required.iter().cloned().collect(),
            optional: self.features.optional.iter().cloned().collect(),
            supported: self.features.supported.iter().cloned().collect(),
            listen: self.listen.map(|a| a.to_string()),
        }
    }

    fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    fn advertised_address(&self) -> Option<String> {
        self.advertised_address()
    }

    fn close(&self) {
        self.close();
    }

    fn peer_key(&self, name: &str) -> Option<[u8; 32]> {
        self.links.get(name).map(|link| link.config.key)
    }

    fn peer_by_key(&self, key: &[u8; 32]) -> Option<String> {
        self.by_key.get(key).map(|link| link.config.name.clone())
    }

    fn advertised(&self, name: &str) -> Option<Arc<Features>> {
        self.links.get(name)?.advertised()
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changed.subscribe())
    }
}
