//! The node: routes every call, local or nested, to a plugin or a native
//! operation — the OperationEnv.
//!
//! Owns the routing table, the loaded plugins and the kv store. A call from
//! outside is checked against the operation's scopes; a call a plugin makes
//! through `env` is trusted, but only to paths its grants allow, carries its
//! parent's request id, inherits the parent's deadline, and fails with
//! `resource-exhausted` past `limits.max_call_depth`.
//!
//! A path whose node segment names a peer goes to [`crate::mesh`]; a call
//! that arrives from a peer carries the peer's `allow` list, is refused for
//! anything outside it, and is never forwarded to a third node.
//!
//! It does not know about sockets or frames (see `transport`) or how wasm
//! runs (see `runtime`).

mod native;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hearth_registry::{
    CallError, ErrorCode, GrantSet, LOCAL_NODE, LimitsSection, OperationPath, PathPattern,
    ResponseEnvelope, Route, RoutingTable, Source,
};

use crate::config::{NodeConfig, PluginSource};
use crate::kv::KvStore;
use crate::mesh::Mesh;
use crate::mesh::call::RemoteCall;
use crate::runtime::{
    BoxFuture, CallContext, Caller, HostServices, Identity, LoadedPlugin, Runtime,
};
use crate::vault::Vault;

/// The owner name native operations are registered under.
const HOST_OWNER: &str = "host";
/// How long a subscription may stream before the node ends it.
const SUBSCRIPTION_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest deadline a caller may ask for.
const MAX_DEADLINE: Duration = Duration::from_secs(600);

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
    Kv(#[from] crate::kv::KvOpenError),
    /// The engine or a plugin failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// Two operations share a path.
    #[error(transparent)]
    Routing(#[from] hearth_registry::RoutingError),
    /// The mesh endpoint could not start.
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
}

/// The peer a call came from, and what it may do here.
#[derive(Debug, Clone)]
pub struct PeerCaller {
    /// The peer's name in this node's `[peers]`.
    pub name: String,
    /// Operations it may call here (`[peers.<name>].allow`).
    pub allow: Arc<[PathPattern]>,
    /// The request on the peer that made this call, if nested there.
    pub parent_request_id: Option<String>,
    /// How deeply nested the call already is on the peer.
    pub depth: u32,
}

/// Where a path leads.
enum Target {
    /// An operation of this node, addressed through [`LOCAL_NODE`].
    Local(OperationPath),
    /// An operation of a peer: its name, and the path as it serves it.
    Remote { peer: String, path: OperationPath },
}

/// A call from outside the node.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// Operation path, as the caller wrote it.
    pub path: String,
    /// Input JSON text.
    pub input: String,
    /// Who is calling.
    pub identity: Identity,
    /// Caller metadata.
    pub metadata: Vec<(String, String)>,
    /// The caller's deadline; `limits.call_timeout_ms` when absent.
    pub timeout: Option<Duration>,
    /// Where a subscription's events go, when the caller can take them.
    pub events: Option<tokio::sync::mpsc::Sender<String>>,
    /// Set when the call came from a peer over the mesh.
    pub peer: Option<PeerCaller>,
}

/// A running node.
pub struct Node {
    name: String,
    routes: RoutingTable,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    runtime: Runtime,
    kv: KvStore,
    vault: Arc<Vault>,
    docker: Arc<crate::docker::DockerEngine>,
    mesh: Arc<Mesh>,
    limits: LimitsSection,
    started: Instant,
    this: Weak<Node>,
}

impl Node {
    /// Opens the data directory, loads every plugin and builds the table.
    pub async fn start(config: &NodeConfig) -> Result<Arc<Node>, StartError> {
        crate::config::create_private_dir(&config.data_dir).map_err(|source| StartError::Io {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let kv = KvStore::open(&config.data_dir.join("node.db"))?;
        let vault = Arc::new(Vault::open(config.vault_file())?);
        let runtime = Runtime::new(config.cache_dir.clone(), config.engine_limits())?;
        let mut plugins = BTreeMap::new();
        for source in &config.plugins {
            let plugin = load_plugin(&runtime, source).await?;
            tracing::info!(
                plugin = %plugin.name,
                version = %plugin.manifest.version,
                operations = plugin.specs.len(),
                cache = ?plugin.cache,
                origin = %plugin.origin,
                "plugin loaded"
            );
            plugins.insert(plugin.name.clone(), Arc::new(plugin));
        }
        let mut routes = RoutingTable::new();
        for spec in native::specs() {
            routes.insert(spec, HOST_OWNER)?;
        }
        for plugin in plugins.values() {
            for spec in &plugin.specs {
                routes.insert(spec.clone(), &plugin.name)?;
            }
        }
        let mesh = Mesh::bind(&config.name, &config.mesh, vault.clone())?;
        let node = Arc::new_cyclic(|this| Node {
            name: config.name.clone(),
            routes,
            plugins,
            runtime,
            kv,
            vault,
            docker: Arc::new(crate::docker::DockerEngine::new(
                config.docker_socket.clone(),
                &config.name,
            )),
            mesh: mesh.clone(),
            limits: config.limits.clone(),
            started: Instant::now(),
            this: this.clone(),
        });
        Ok(node)
    }

    /// Starts accepting and dialing peers. `host serve` calls it once the
    /// vault is unlocked, so the first dials can already prove the identity.
    pub fn start_mesh(self: &Arc<Self>) {
        self.mesh.start(Arc::downgrade(self));
    }

    /// The mesh: peers and calls to them.
    pub fn mesh(&self) -> &Arc<Mesh> {
        &self.mesh
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The routing table.
    pub fn routes(&self) -> &RoutingTable {
        &self.routes
    }

    /// The loaded plugins, by name.
    pub fn plugins(&self) -> &BTreeMap<String, Arc<LoadedPlugin>> {
        &self.plugins
    }

    /// The vault.
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// The plugin runtime (benchmarks call it directly).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The configured limits.
    pub fn limits(&self) -> &LimitsSection {
        &self.limits
    }

    /// Serves a call from outside the node.
    pub async fn call(&self, request: CallRequest) -> Result<ResponseEnvelope, CallError> {
        // A peer learns nothing it was not granted: no "did you mean"
        // paths, no list of this node's other peers, and the same answer
        // for every other node, known or not.
        let quiet = |err: CallError| match &request.peer {
            Some(caller) if err.code == ErrorCode::NotFound => CallError::new(
                ErrorCode::NotFound,
                format!(
                    "`{}` has no operation at `{}` for peer `{}`",
                    self.name, request.path, caller.name
                ),
            ),
            _ => err,
        };
        let to_other_node = |caller: &PeerCaller| {
            CallError::new(
                ErrorCode::Denied,
                format!(
                    "peer `{}` may call only operations of `{}`: calls from peers never reach another node",
                    caller.name, self.name
                ),
            )
        };
        let path = match (self.resolve(&request.path), &request.peer) {
            (Ok(Target::Local(path)), _) => path,
            (Ok(Target::Remote { .. }), Some(caller)) => return Err(to_other_node(caller)),
            (Ok(Target::Remote { peer, path }), None) => {
                return self.call_remote(request, peer, path).await;
            }
            // Parsing again only on this cold path: an unknown node.
            (Err(_), Some(caller))
                if request
                    .path
                    .parse::<OperationPath>()
                    .is_ok_and(|p| !p.is_local(&self.name)) =>
            {
                return Err(to_other_node(caller));
            }
            (Err(err), _) => return Err(quiet(err)),
        };
        let (depth, parent_request_id) = match &request.peer {
            Some(caller) => {
                self.check_peer_call(caller, &path)?;
                (caller.depth, caller.parent_request_id.clone())
            }
            None => (0, None),
        };
        let route = self.routes.lookup(&path).map_err(|e| quiet(e.into()))?;
        if let Some(missing) = route
            .spec
            .scopes
            .iter()
            .find(|s| !request.identity.holds(s))
        {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "identity `{}` lacks scope `{missing}`, which {path} requires; ask the operator to grant it",
                    request.identity.id
                ),
            ));
        }
        // The operation's limit caps the deadline; a caller may only shorten it.
        let limit = self.operation_timeout(&route);
        let timeout = if route.spec.kind == hearth_registry::OpKind::Subscription {
            // A subscription runs until the caller goes away.
            request
                .timeout
                .unwrap_or(SUBSCRIPTION_DEADLINE)
                .min(SUBSCRIPTION_DEADLINE)
        } else {
            request.timeout.map_or(limit, |asked| asked.min(limit))
        };
        let ctx = CallContext {
            request_id: ulid::Ulid::new().to_string(),
            parent_request_id,
            identity: request.identity,
            metadata: request.metadata,
            deadline: Instant::now() + timeout,
            trusted: false,
            depth,
            chain: vec![path],
            events: request.events,
            from_peer: request.peer.map(|p| p.name),
        };
        self.execute(route, ctx, &request.input).await
    }

    /// A call from outside to a peer's operation.
    async fn call_remote(
        &self,
        request: CallRequest,
        peer: String,
        path: OperationPath,
    ) -> Result<ResponseEnvelope, CallError> {
        // Without a deadline of its own the call gets the peer's limit for
        // the operation (or runs as long as a subscription may), so only
        // an explicit one travels.
        let budget = request.timeout.unwrap_or(SUBSCRIPTION_DEADLINE);
        self.mesh
            .call(
                &peer,
                RemoteCall {
                    path,
                    input: request.input,
                    metadata: request.metadata,
                    deadline: Instant::now() + budget.min(SUBSCRIPTION_DEADLINE),
                    send_deadline: request.timeout.is_some(),
                    parent_request_id: None,
                    depth: 0,
                    events: request.events,
                },
            )
            .await
    }

    /// A peer may call only what its `allow` list covers, no deeper than
    /// the depth bound.
    fn check_peer_call(&self, caller: &PeerCaller, path: &OperationPath) -> Result<(), CallError> {
        if !caller.allow.iter().any(|pattern| pattern.matches(path)) {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "peer `{}` may not call {path} on `{}`; add \"{path}\" (or a pattern such as \"/node/{}/*\") to `allow` of [peers.{}] in that node's stack.toml",
                    caller.name,
                    self.name,
                    path.namespace(),
                    caller.name
                ),
            ));
        }
        if caller.depth > self.limits.max_call_depth {
            return Err(CallError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "call depth limit {} reached at {path} on `{}` (called from `{}`); nodes are calling each other in a cycle, or raise `limits.max_call_depth`",
                    self.limits.max_call_depth, self.name, caller.name
                ),
            ));
        }
        Ok(())
    }

    /// A nested call made by a plugin through `env`.
    async fn call_nested(
        &self,
        caller: Caller,
        path: String,
        input: String,
    ) -> Result<ResponseEnvelope, CallError> {
        let target = self.resolve(&path)?;
        // Grants name peers by name: `/worker-1/echo/*`.
        let path = match &target {
            Target::Local(path) => path.clone(),
            Target::Remote { peer, path } => {
                OperationPath::new(peer, path.namespace(), path.name())
                    .map_err(|e| CallError::new(ErrorCode::NotFound, e.to_string()))?
            }
        };
        let granted = match &target {
            Target::Local(_) => caller.grants.allows_env(&path),
            // `*` never stands for a node: a peer must be named.
            Target::Remote { .. } => caller.grants.allows_env_on_peer(&path),
        };
        if !granted {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` is not granted calls to {path}; {}",
                    caller.plugin,
                    GrantSet::env_grant_hint(&caller.plugin, &path)
                ),
            ));
        }
        let parent = caller.ctx;
        if let (Target::Remote { peer, .. }, Some(origin)) = (&target, &parent.from_peer) {
            return Err(CallError::new(
                ErrorCode::Denied,
                format!(
                    "plugin `{}` is serving a call from peer `{origin}` and may not pass it on to `{peer}`: calls from peers never reach a third node",
                    caller.plugin
                ),
            ));
        }
        let depth = parent.depth + 1;
        if depth > self.limits.max_call_depth {
            // The last few hops show the cycle without flooding the message.
            let skip = parent.chain.len().saturating_sub(4);
            let mut chain: Vec<String> = parent
                .chain
                .iter()
                .skip(skip)
                .map(ToString::to_string)
                .collect();
            if skip > 0 {
                chain.insert(0, "…".to_owned());
            }
            return Err(CallError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "call depth limit {} reached at {path} (chain: {} -> {path}); plugins are calling each other in a cycle, or raise `limits.max_call_depth`",
                    self.limits.max_call_depth,
                    chain.join(" -> ")
                ),
            ));
        }
        let path = match target {
            Target::Local(path) => path,
            Target::Remote { peer, path } => {
                return self
                    .mesh
                    .call(
                        &peer,
                        RemoteCall {
                            path,
                            input,
                            metadata: parent.metadata,
                            deadline: parent.deadline,
                            send_deadline: true,
                            parent_request_id: Some(parent.request_id),
                            depth,
                            events: None,
                        },
                    )
                    .await;
            }
        };
        let route = self.routes.lookup(&path)?;
        let mut chain = parent.chain;
        chain.push(path);
        let ctx = CallContext {
            request_id: ulid::Ulid::new().to_string(),
            parent_request_id: Some(parent.request_id),
            identity: parent.identity,
            metadata: parent.metadata,
            // Inherited, and shortened to this operation's own limit.
            deadline: parent
                .deadline
                .min(Instant::now() + self.operation_timeout(&route)),
            trusted: true,
            depth,
            chain,
            events: None,
            from_peer: parent.from_peer,
        };
        self.execute(route, ctx, &input).await
    }

    /// Parses a path: this node's (through any alias), a peer's, or an
    /// error naming the nodes it could have meant.
    fn resolve(&self, asked: &str) -> Result<Target, CallError> {
        let path: OperationPath = asked.parse().map_err(|e: hearth_registry::PathError| {
            let not_found = self.routes.not_found(asked);
            CallError::new(ErrorCode::NotFound, format!("{e}; {not_found}"))
        })?;
        if path.is_local(&self.name) {
            return Ok(Target::Local(path.to_local()));
        }
        if self.mesh.is_peer(path.node()) {
            return Ok(Target::Remote {
                peer: path.node().to_owned(),
                path: path.to_local(),
            });
        }
        let peers: Vec<&str> = self.mesh.peer_names().collect();
        let peers = if peers.is_empty() {
            "has no peers".to_owned()
        } else {
            format!("knows the peers {}", peers.join(", "))
        };
        Err(CallError::new(
            ErrorCode::NotFound,
            format!(
                "unknown node `{}` in {path}: this node is `{}` (or `{LOCAL_NODE}`) and {peers}; add a peer under [peers] in stack.toml",
                path.node(),
                self.name
            ),
        ))
    }

    /// Validates input and runs the route with `ctx`.
    async fn execute(
        &self,
        route: Arc<Route>,
        ctx: CallContext,
        input: &str,
    ) -> Result<ResponseEnvelope, CallError> {
        let started = Instant::now();
        let input_value: serde_json::Value = serde_json::from_str(input).map_err(|e| {
            CallError::new(
                ErrorCode::InvalidInput,
                format!("input to {} is not JSON: {e}", route.spec.path),
            )
        })?;
        if let Err(err) = route.validate_input(&input_value) {
            if native::has_secret_input(&route.spec.path) {
                return Err(CallError::new(
                    ErrorCode::InvalidInput,
                    format!(
                        "input to `{}` is not valid at `{}` (details withheld: this input holds a secret)",
                        err.path, err.field
                    ),
                ));
            }
            return Err(err.into());
        }
        let request_id = ctx.request_id.clone();
        let parent_request_id = ctx.parent_request_id.clone();
        let depth = ctx.depth;
        let result = if route.owner == HOST_OWNER {
            native::handle(self, &route.spec.path, &input_value)
                .await
                .map(|output| (output, Source::Host))
        } else {
            self.run_plugin(&route, ctx, input).await
        };
        tracing::debug!(
            path = %route.spec.path,
            %request_id,
            parent_request_id = parent_request_id.as_deref().unwrap_or(""),
            depth,
            micros = started.elapsed().as_micros() as u64,
            outcome = result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.code.as_str()),
            "call"
        );
        let (output, source) = result?;
        Ok(ResponseEnvelope {
            output,
            source,
            request_id,
            parent_request_id,
        })
    }

    async fn run_plugin(
        &self,
        route: &Route,
        ctx: CallContext,
        input: &str,
    ) -> Result<(serde_json::Value, Source), CallError> {
        let plugin = self.plugins.get(&route.owner).ok_or_else(|| {
            CallError::new(
                ErrorCode::Unavailable,
                format!("plugin `{}` is not loaded", route.owner),
            )
        })?;
        let services: Arc<dyn HostServices> = self
            .this
            .upgrade()
            .ok_or_else(|| CallError::new(ErrorCode::Unavailable, "the node is shutting down"))?;
        let output = self
            .runtime
            .call(plugin, services, route.spec.path.name(), input, ctx)
            .await?;
        let output = serde_json::from_str(&output).map_err(|e| {
            CallError::new(
                ErrorCode::Failed,
                format!(
                    "plugin `{}` returned output that is not JSON: {e}",
                    plugin.name
                ),
            )
        })?;
        Ok((output, Source::Plugin(plugin.name.clone())))
    }

    /// The longest `route` may run: its plugin's setting for it, or
    /// `limits.call_timeout_ms` for native operations.
    fn operation_timeout(&self, route: &Route) -> Duration {
        let limit = match self.plugins.get(&route.owner) {
            Some(plugin) => plugin.settings.timeout_for(route.spec.path.name()),
            None => Duration::from_millis(self.limits.call_timeout_ms),
        };
        limit.min(MAX_DEADLINE)
    }

    fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The mesh's tasks hold the endpoint; without this a dropped node
        // (tests, benches, embedders) would keep its UDP port and dialers.
        self.mesh.close();
    }
}

async fn load_plugin(runtime: &Runtime, source: &PluginSource) -> Result<LoadedPlugin, StartError> {
    Ok(runtime
        .load(
            &source.name,
            source.manifest.clone(),
            source.grants.clone(),
            source.settings.clone(),
            &source.component,
            source.origin.clone(),
        )
        .await?)
}

impl HostServices for Node {
    fn call(
        &self,
        caller: Caller,
        path: String,
        input: String,
    ) -> BoxFuture<Result<ResponseEnvelope, CallError>> {
        let Some(node) = self.this.upgrade() else {
            return Box::pin(async {
                Err(CallError::new(
                    ErrorCode::Unavailable,
                    "the node is shutting down",
                ))
            });
        };
        Box::pin(async move { node.call_nested(caller, path, input).await })
    }

    fn vault(&self) -> Arc<crate::vault::Vault> {
        self.vault.clone()
    }

    fn docker(&self) -> Arc<crate::docker::DockerEngine> {
        self.docker.clone()
    }

    fn kv_get(
        &self,
        plugin: Arc<str>,
        key: String,
    ) -> BoxFuture<Result<Option<Vec<u8>>, CallError>> {
        let kv = self.kv.clone();
        Box::pin(async move { kv.get(&plugin, key).await })
    }

    fn kv_set(
        &self,
        plugin: Arc<str>,
        key: String,
        value: Vec<u8>,
    ) -> BoxFuture<Result<(), CallError>> {
        let kv = self.kv.clone();
        Box::pin(async move { kv.set(&plugin, key, value).await })
    }

    fn kv_delete(&self, plugin: Arc<str>, key: String) -> BoxFuture<Result<bool, CallError>> {
        let kv = self.kv.clone();
        Box::pin(async move { kv.delete(&plugin, key).await })
    }

    fn kv_list(
        &self,
        plugin: Arc<str>,
        prefix: String,
        limit: u32,
    ) -> BoxFuture<Result<Vec<String>, CallError>> {
        let kv = self.kv.clone();
        Box::pin(async move { kv.list(&plugin, prefix, limit).await })
    }
}
