//! The OperationEnv: the node's routing table, its plugins, its native
//! operations, and the one pipeline every call goes through.
//!
//! Whatever door a call came in by — a local client on the socket, a peer
//! over the mesh, a plugin through `env`, and next the HTTP gateway and the
//! MCP server — it is a [`CallRequest`] handed to [`Node::call`] (through
//! the [`OperationEnv`] trait), which routes it, checks access for its
//! [`Origin`](crate::call::Origin), sets its deadline and depth, dispatches
//! it to a plugin, a native operation or a peer, and returns the response
//! envelope ([`pipeline`]). [`serve`] is the loop every door runs around
//! it to forward a subscription's events before the reply.
//!
//! It imports the runtime and the capabilities below it, and reaches peers
//! only through [`PeerNetwork`]; it knows no socket, frame or QUIC stream.

pub mod events;
pub mod messaging;
pub mod metrics;
pub mod native;
pub mod peers;
mod pipeline;
mod timers;
pub mod tools;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use hearth_registry::{CallError, ErrorCode, LimitsSection, Owner, ResponseEnvelope, RoutingTable};

use crate::access::Access;
use crate::call::{CallRequest, DynOperationEnv, EventSink, OperationEnv};
use crate::capabilities::docker::DockerEngine;
use crate::capabilities::kv::KvStore;
use crate::config::NodeConfig;
use crate::runtime::{LoadedPlugin, Resources, Runtime};
use crate::vault::Vault;

pub use peers::{NoPeers, PeerCall, PeerNetwork};

/// Events of one subscription buffered before the plugin waits.
const EVENT_QUEUE: usize = 64;

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The vault file is unreadable.
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// A directory could not be created.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error(transparent)]
    Kv(#[from] crate::capabilities::kv::KvOpenError),
    /// The engine or a plugin failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// Two operations share a path.
    #[error(transparent)]
    Routing(#[from] hearth_registry::RoutingError),
    /// The outbox, inbox or broker store could not be opened.
    #[error(transparent)]
    Messaging(#[from] crate::messaging::OpenError),
    /// The client store or the gateway token could not be opened.
    #[error(transparent)]
    Access(#[from] crate::access::AccessError),
    /// A plugin's message handler is not one of its operations.
    #[error(
        "plugin `{plugin}` names `{handler}` as its message handler, but exports no such operation; fix [capabilities.messages] handler in its plugin.toml"
    )]
    Handler {
        /// The plugin.
        plugin: String,
        /// The handler it named.
        handler: String,
    },
}

/// A running node.
pub struct Node {
    name: String,
    /// Swapped whole when a dynamic plugin's operations change.
    routes: std::sync::RwLock<Arc<RoutingTable>>,
    /// What plugins may use while listing their operations.
    listing: Arc<Resources>,
    native: native::NativeTable,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    runtime: Runtime,
    resources: Arc<Resources>,
    vault: Arc<Vault>,
    peers: OnceLock<Arc<dyn PeerNetwork>>,
    limits: LimitsSection,
    started: Instant,
    calls: CallsInFlight,
    messaging: Arc<messaging::Messaging>,
    /// This node's key, hex; fixed while it runs (`vault init` is offline).
    public_key: String,
    metrics: metrics::Metrics,
    events: Arc<events::NodeEvents>,
    access: Arc<Access>,
    mcp_expose: Option<Vec<hearth_registry::PathPattern>>,
}

/// Calls from outside the node that are running, for draining at shutdown.
#[derive(Default)]
struct CallsInFlight {
    count: AtomicUsize,
    draining: AtomicBool,
    idle: tokio::sync::Notify,
}

/// Counts one call from outside while it runs.
struct InFlight<'a>(&'a CallsInFlight);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Only a drain waits: skip the notification (a lock) otherwise.
        // SeqCst pairs with `drain`: it sets `draining` before reading the
        // count, so either it sees this call gone or this call sees it.
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.draining.load(Ordering::SeqCst)
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl Node {
    /// Opens the data directory, loads every plugin and builds the table.
    pub async fn start(config: &NodeConfig) -> Result<Arc<Node>, StartError> {
        crate::config::create_private_dir(&config.data_dir).map_err(|source| StartError::Io {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let kv = Arc::new(KvStore::open(&config.data_dir.join("node.db"))?);
        let vault = Arc::new(Vault::open(config.vault_file())?);
        let runtime = Runtime::new(
            config.cache_dir.clone(),
            config.engine_limits(),
            crate::capabilities::add_to_linker,
        )?;
        let secrets = Arc::new(crate::capabilities::config::SecretStore::new(
            kv.clone(),
            vault.clone(),
        ));
        // The processes plugins have the host run, shared by listing and
        // calls so a server started at load keeps serving.
        let processes = Arc::new(crate::capabilities::process::Processes::default());
        // What a dynamic plugin may use while it lists its operations: its
        // secrets (credentials for the service it describes) and its
        // granted processes (a stdio server to ask), nothing that changes
        // the node's state.
        let listing = {
            let mut listing = Resources::default();
            listing.insert(secrets.clone());
            listing.insert(processes.clone());
            Arc::new(listing)
        };
        let mut plugins = BTreeMap::new();
        for source in &config.plugins {
            let plugin = runtime.load(source, &listing).await?;
            tracing::info!(
                plugin = %plugin.name,
                version = %plugin.manifest.version,
                operations = plugin.specs().len(),
                dynamic = plugin.manifest.dynamic,
                cache = ?plugin.cache,
                origin = %plugin.origin,
                "plugin loaded"
            );
            plugins.insert(plugin.name.clone(), Arc::new(plugin));
        }
        let messaging = Arc::new(messaging::Messaging::open(
            config,
            message_handlers(&plugins)?,
        )?);
        let native = native::NativeTable::new();
        let mut routes = RoutingTable::new();
        for (index, spec) in native.specs() {
            routes.insert(spec, Owner::Native(index))?;
        }
        for plugin in plugins.values() {
            for spec in plugin.specs().iter() {
                routes.insert(spec.clone(), Owner::Plugin(plugin.name.clone()))?;
            }
        }
        let (changes, notices) = crate::capabilities::discovery::OperationChanges::channel();
        let public_key = vault.identity().public_key;
        let mut node_key = [0u8; 32];
        // The vault keeps the key as 64 hex digits; a damaged record fails
        // its own checks first, so zeros here are never used for a proof.
        let _ = hex::decode_to_slice(&public_key, &mut node_key);
        let access = Arc::new(Access::open(config, node_key).await?);
        let node_events = Arc::new(events::NodeEvents::default());
        let node = Arc::new_cyclic(|this: &Weak<Node>| {
            let mut resources = Resources::default();
            resources.insert(Arc::new(crate::capabilities::events::NodeEventLog(
                node_events.clone(),
            )));
            let env: Weak<dyn DynOperationEnv> = this.clone();
            resources.insert(crate::capabilities::env::handle(env));
            resources.insert(kv.clone());
            resources.insert(vault.clone());
            resources.insert(secrets);
            resources.insert(Arc::new(changes));
            resources.insert(processes);
            resources.insert(Arc::new(DockerEngine::new(
                config.docker_socket.clone(),
                &config.name,
            )));
            Node {
                name: config.name.clone(),
                routes: std::sync::RwLock::new(Arc::new(routes)),
                listing,
                native,
                plugins,
                runtime,
                resources: Arc::new(resources),
                vault,
                peers: OnceLock::new(),
                limits: config.limits.clone(),
                started: Instant::now(),
                calls: CallsInFlight::default(),
                messaging,
                public_key,
                metrics: metrics::Metrics::default(),
                events: node_events,
                access,
                mcp_expose: config.mcp_expose.clone(),
            }
        });
        for plugin in node.plugins.values() {
            node.events.emit(
                "plugin.loaded",
                serde_json::json!({
                    "plugin": plugin.name,
                    "version": plugin.manifest.version,
                    "operations": plugin.specs().len(),
                }),
            );
        }
        tokio::spawn(rediscover(Arc::downgrade(&node), notices));
        Ok(node)
    }

    /// Connects the node to its peers; calls to other nodes fail with
    /// `not-found` until then. Set once, by `serve`.
    pub fn attach_peers(&self, peers: Arc<dyn PeerNetwork>) {
        let _ = self.peers.set(peers);
    }

    /// The other nodes this node knows.
    pub fn peers(&self) -> &dyn PeerNetwork {
        match self.peers.get() {
            Some(peers) => peers.as_ref(),
            None => &NoPeers,
        }
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The routing table as it is now.
    pub fn routes(&self) -> Arc<RoutingTable> {
        match self.routes.read() {
            Ok(routes) => routes.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Asks dynamic plugin `name` for its operations again and, when they
    /// changed and are valid, swaps them into the routing table and emits
    /// `plugin.operations_changed`. A refused set keeps the previous one
    /// (logged, and emitted as `plugin.operations_refused`).
    pub async fn rediscover(&self, name: &str) -> Result<bool, CallError> {
        let Some(plugin) = self.plugins.get(name) else {
            return Err(CallError::new(
                ErrorCode::NotFound,
                format!("no plugin `{name}`"),
            ));
        };
        if !plugin.manifest.dynamic {
            return Ok(false);
        }
        let refused = |message: String| {
            tracing::warn!(plugin = name, error = %message, "new operations refused; the previous ones stay");
            self.events.emit(
                "plugin.operations_refused",
                serde_json::json!({ "plugin": name, "error": message }),
            );
            CallError::new(ErrorCode::InvalidInput, message)
        };
        let specs = self
            .runtime
            .list_operations(plugin, &self.listing)
            .await
            .map_err(|e| refused(e.to_string()))?;
        let before = plugin.specs();
        if *before == *specs {
            return Ok(false);
        }
        let owner = Owner::Plugin(name.to_owned());
        let mut guard = match self.routes.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut table = RoutingTable::new();
        for route in guard.iter().filter(|r| r.owner != owner) {
            table
                .insert(route.spec.clone(), route.owner.clone())
                .map_err(|e| refused(e.to_string()))?;
        }
        for spec in &specs {
            table
                .insert(spec.clone(), owner.clone())
                .map_err(|e| refused(format!("plugin `{name}`: {e}")))?;
        }
        *guard = Arc::new(table);
        drop(guard);
        let names =
            |specs: &[hearth_registry::OperationSpec]| -> std::collections::BTreeSet<String> {
                specs.iter().map(|s| s.path.name().to_owned()).collect()
            };
        let (old, new) = (names(&before), names(&specs));
        let added: Vec<&String> = new.difference(&old).collect();
        let removed: Vec<&String> = old.difference(&new).collect();
        plugin.set_specs(specs);
        tracing::info!(plugin = name, added = ?added, removed = ?removed, "operations changed");
        self.events.emit(
            "plugin.operations_changed",
            serde_json::json!({
                "plugin": name,
                "added": added,
                "removed": removed,
                "operations": new.len(),
            }),
        );
        Ok(true)
    }

    /// The loaded plugins, by name.
    pub fn plugins(&self) -> &BTreeMap<String, Arc<LoadedPlugin>> {
        &self.plugins
    }

    /// The call counters, as Prometheus text.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        self.metrics.render(&mut text);
        text
    }

    /// This node's public key, hex (what `host id` prints).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The outbox, inbox and broker.
    pub fn messaging(&self) -> &Arc<messaging::Messaging> {
        &self.messaging
    }

    /// Starts the messaging workers, the plugins' timers and the peer
    /// watcher; `serve` calls it once the peers are attached.
    pub fn start_messaging(self: &Arc<Self>) {
        messaging::start(self);
        timers::start(self);
        if let Some(changes) = self.peers().changes() {
            tokio::spawn(watch_peers(Arc::downgrade(self), changes));
        }
    }

    /// Who may call from outside: client keys, sessions, the scope rule.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// `[mcp] expose`: the operations agents may see as tools, when set.
    pub fn mcp_expose(&self) -> Option<&[hearth_registry::PathPattern]> {
        self.mcp_expose.as_deref()
    }

    /// The node's event log.
    pub fn events(&self) -> &events::NodeEvents {
        &self.events
    }

    /// The vault.
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// The plugin runtime (benchmarks call it directly).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// What the capabilities serve plugins from (benchmarks call the
    /// runtime directly with it).
    pub fn resources(&self) -> &Arc<Resources> {
        &self.resources
    }

    /// The configured limits.
    pub fn limits(&self) -> &LimitsSection {
        &self.limits
    }

    /// How long the node has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// True once [`Self::drain`] began: the node is stopping.
    pub fn is_draining(&self) -> bool {
        self.calls.draining.load(Ordering::SeqCst)
    }

    /// Calls from outside (clients, peers) running now.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.count.load(Ordering::SeqCst)
    }

    /// Refuses new calls from outside with `unavailable` and waits until
    /// the calls in flight finish or `deadline` passes; returns how many
    /// were still running.
    pub async fn drain(&self, deadline: Instant) -> usize {
        self.calls.draining.store(true, Ordering::SeqCst);
        loop {
            let idle = self.calls.idle.notified();
            let running = self.calls.count.load(Ordering::SeqCst);
            if running == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline.into(), idle)
                .await
                .is_err()
            {
                return self.calls.count.load(Ordering::SeqCst);
            }
        }
    }

    /// Admits a call from outside unless the node is draining.
    fn admit(&self) -> Result<InFlight<'_>, CallError> {
        self.calls.count.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(&self.calls);
        if self.calls.draining.load(Ordering::SeqCst) {
            return Err(CallError::new(
                ErrorCode::Unavailable,
                format!(
                    "node `{}` is shutting down; retry on another node or after it restarts",
                    self.name
                ),
            ));
        }
        Ok(guard)
    }
}

impl OperationEnv for Node {
    fn node_name(&self) -> &str {
        &self.name
    }

    fn limits(&self) -> &LimitsSection {
        &self.limits
    }

    async fn call(&self, request: CallRequest) -> Result<ResponseEnvelope, CallError> {
        self.run(request).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The mesh's tasks hold its endpoint; without this a dropped node
        // (tests, benches, embedders) would keep its UDP port and dialers.
        self.peers().close();
    }
}

/// What became of a call a front door served.
#[derive(Debug)]
pub enum Served {
    /// The call finished (its events were all delivered first).
    Done(Result<ResponseEnvelope, CallError>),
    /// The caller stopped receiving events; the call was dropped.
    Abandoned,
}

/// Runs `request` through `call` (the pipeline, as the door holds it),
/// delivering a subscription's events to `sink` in order and all before
/// the result. Every front door serves calls through this one function.
pub async fn serve<F, Fut>(call: F, mut request: CallRequest, sink: &mut impl EventSink) -> Served
where
    F: FnOnce(CallRequest) -> Fut,
    Fut: Future<Output = Result<ResponseEnvelope, CallError>>,
{
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel::<String>(EVENT_QUEUE);
    request.events = Some(events_tx);
    let call = call(request);
    tokio::pin!(call);
    let outcome = loop {
        tokio::select! {
            biased;
            Some(payload) = events_rx.recv() => {
                if !sink.emit(payload).await {
                    return Served::Abandoned;
                }
            }
            outcome = &mut call => break outcome,
        }
    };
    while let Ok(payload) = events_rx.try_recv() {
        if !sink.emit(payload).await {
            return Served::Abandoned;
        }
    }
    Served::Done(outcome)
}

/// Emits `peer.up` and `peer.down` as peers connect and go.
async fn watch_peers(node: Weak<Node>, mut changes: tokio::sync::watch::Receiver<u64>) {
    let mut up = std::collections::BTreeSet::new();
    loop {
        {
            let Some(node) = node.upgrade() else { return };
            let now: std::collections::BTreeSet<String> = node
                .peers()
                .status()
                .into_iter()
                .filter(|p| p.state == peers::PeerState::Connected)
                .map(|p| p.name)
                .collect();
            for peer in now.difference(&up) {
                node.events
                    .emit("peer.up", serde_json::json!({ "peer": peer }));
            }
            for peer in up.difference(&now) {
                node.events
                    .emit("peer.down", serde_json::json!({ "peer": peer }));
            }
            up = now;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The plugins that handle messages: granted `messages` and naming a
/// handler among their operations.
fn message_handlers(
    plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
) -> Result<Vec<messaging::Handler>, StartError> {
    let mut handlers = Vec::new();
    for plugin in plugins.values() {
        let Some(grant) = &plugin.grants.messages else {
            continue;
        };
        let Some(request) = &plugin.manifest.capabilities.messages else {
            tracing::warn!(plugin = %plugin.name, "granted messages, but its plugin.toml names no [capabilities.messages] handler; it receives none");
            continue;
        };
        if !plugin
            .specs()
            .iter()
            .any(|s| s.path.name() == request.handler)
        {
            return Err(StartError::Handler {
                plugin: plugin.name.clone(),
                handler: request.handler.clone(),
            });
        }
        handlers.push(messaging::Handler {
            plugin: plugin.name.clone(),
            path: format!("/node/{}/{}", plugin.manifest.namespace(), request.handler),
            grant: grant.clone(),
        });
    }
    Ok(handlers)
}

/// Lists a dynamic plugin's operations again each time it says they
/// changed; notices that arrive while one is being listed fold into it.
async fn rediscover(node: Weak<Node>, mut notices: tokio::sync::mpsc::UnboundedReceiver<Arc<str>>) {
    while let Some(plugin) = notices.recv().await {
        let mut pending = std::collections::BTreeSet::from([plugin]);
        while let Ok(more) = notices.try_recv() {
            pending.insert(more);
        }
        let Some(node) = node.upgrade() else { return };
        for plugin in pending {
            // A refusal is logged and announced inside.
            let _ = node.rediscover(&plugin).await;
        }
    }
}
