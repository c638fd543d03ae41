//! `/node/host/*`: what the node says about itself.

use std::collections::BTreeMap;

use hearth_registry::CallError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Empty, NativeOp};
use crate::call::CallContext;
use crate::ops::Node;
use crate::ops::peers::{MeshVersion, PeerState, PeerStatus};

/// The WIT package plugins are built against.
pub use crate::runtime::bindings::WIT_PACKAGE;

/// Output of `/node/host/ping`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeStatus {
    /// The node's name.
    pub node: String,
    /// The `host` version.
    pub version: String,
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
}

/// `/node/host/ping`.
pub struct Ping;

impl NativeOp for Ping {
    type Input = Empty;
    type Output = NodeStatus;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "ping";
    const DESCRIPTION: &'static str = "Check the node is up; returns its name, version and uptime.";

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<NodeStatus, CallError> {
        Ok(NodeStatus {
            node: node.name().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_ms: node.uptime().as_millis() as u64,
        })
    }
}

/// Input and output of `/node/host/echo`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EchoMessage {
    /// The message.
    pub msg: String,
}

/// `/node/host/echo`.
pub struct Echo;

impl NativeOp for Echo {
    type Input = EchoMessage;
    type Output = EchoMessage;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "echo";
    const DESCRIPTION: &'static str = "Reply with the message, natively: /node/echo/ping without a plugin, to measure the transport.";

    async fn run(_: &Node, _: &CallContext, input: EchoMessage) -> Result<EchoMessage, CallError> {
        Ok(input)
    }
}

/// Output of `/node/host/version`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VersionInfo {
    /// The node's name.
    pub node: String,
    /// The `host` version.
    pub version: String,
    /// The WIT package plugins are built against.
    pub wit: String,
    /// The Unix-socket protocol.
    pub protocol: u32,
    /// The mesh protocol and this node's features.
    pub mesh: MeshVersion,
    /// Features negotiated with each connected peer.
    pub negotiated: BTreeMap<String, Vec<String>>,
}

/// `/node/host/version`.
pub struct Version;

impl NativeOp for Version {
    type Input = Empty;
    type Output = VersionInfo;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "version";
    const DESCRIPTION: &'static str =
        "Versions of the node, its WIT package and its wire protocol.";

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<VersionInfo, CallError> {
        let peers = node.peers();
        Ok(VersionInfo {
            node: node.name().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            wit: WIT_PACKAGE.to_owned(),
            protocol: hearth_protocol::socket::PROTOCOL_VERSION,
            mesh: peers.version(),
            negotiated: peers
                .status()
                .into_iter()
                .filter(|p| p.state == PeerState::Connected)
                .map(|p| (p.name, p.features))
                .collect(),
        })
    }
}

/// One entry of `/node/host/ops`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct OpEntry {
    /// `/node/<namespace>/<name>`.
    pub path: String,
    /// `query`, `mutation` or `subscription`.
    pub kind: String,
    /// `host` or the plugin serving it.
    pub owner: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its input.
    pub input_schema: serde_json::Value,
    /// JSON Schema of its output.
    pub output_schema: serde_json::Value,
    /// Scopes a caller must hold.
    pub scopes: Vec<String>,
    /// For a subscription: JSON Schema of each event it streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_schema: Option<serde_json::Value>,
}

/// `/node/host/ops`.
pub struct Ops;

impl NativeOp for Ops {
    type Input = Empty;
    type Output = Vec<OpEntry>;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "ops";
    const DESCRIPTION: &'static str =
        "The operations this node serves that the caller may call, with kind, scopes and schemas.";

    async fn run(node: &Node, ctx: &CallContext, _: Empty) -> Result<Vec<OpEntry>, CallError> {
        Ok(callable_ops(node, ctx))
    }
}

/// This node's operations `ctx`'s identity holds every scope of.
fn callable_ops(node: &Node, ctx: &CallContext) -> Vec<OpEntry> {
    node.routes()
        .iter()
        .filter(|route| route.spec.scopes.iter().all(|s| ctx.identity.holds(s)))
        .map(|route| OpEntry {
            path: route.spec.path.to_string(),
            kind: route.spec.kind.as_str().to_owned(),
            owner: route.owner.to_string(),
            description: route.spec.description.clone(),
            input_schema: route.spec.input_schema.clone(),
            output_schema: route.spec.output_schema.clone(),
            scopes: route.spec.scopes.clone(),
            event_schema: route.spec.event_schema.clone(),
        })
        .collect()
}

/// What `/node/host/tools` answers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ToolsOutput {
    /// The tools, in path order.
    pub tools: Vec<crate::ops::tools::Tool>,
    /// Connected peers whose operations could not be listed, and why.
    pub unreachable: Vec<String>,
}

/// `/node/host/tools`.
pub struct Tools;

/// How long a peer may take to list its operations for the catalogue.
const PEER_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl NativeOp for Tools {
    type Input = Empty;
    type Output = ToolsOutput;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "tools";
    const DESCRIPTION: &'static str = "The operations the caller may call, here and on connected peers, as MCP tools (names, schemas, hints), within `[mcp] expose`.";

    async fn run(node: &Node, ctx: &CallContext, _: Empty) -> Result<ToolsOutput, CallError> {
        use crate::ops::tools::{Source, catalogue};
        let mut sources: Vec<Source> = callable_ops(node, ctx)
            .into_iter()
            .map(|op| Source { peer: None, op })
            .collect();
        let peers: Vec<String> = node
            .peers()
            .status()
            .into_iter()
            .filter(|p| p.state == PeerState::Connected)
            .map(|p| p.name)
            .collect();
        // Each peer lists what this caller may call there (its scopes
        // travel with the call), all at once.
        let lists = peers.iter().map(|peer| {
            let mut request = crate::call::CallRequest::from_node(
                "tools",
                format!("/{peer}/host/ops"),
                "{}".to_owned(),
                PEER_LIST_TIMEOUT,
            );
            request.identity = ctx.identity.clone();
            async move { (peer.clone(), node.run(request).await) }
        });
        let mut unreachable = Vec::new();
        for (peer, listed) in futures_util::future::join_all(lists).await {
            match listed.map(|e| serde_json::from_value::<Vec<OpEntry>>(e.output)) {
                Ok(Ok(ops)) => sources.extend(ops.into_iter().map(|op| Source {
                    peer: Some(peer.clone()),
                    op,
                })),
                Ok(Err(err)) => unreachable.push(format!("{peer}: {err}")),
                Err(err) => unreachable.push(format!("{peer}: {err}")),
            }
        }
        Ok(ToolsOutput {
            tools: catalogue(sources, node.mcp_expose()),
            unreachable,
        })
    }
}

/// `/node/host/changes`.
pub struct Changes;

impl NativeOp for Changes {
    type Input = Empty;
    type Output = EventsEnd;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "changes";
    const KIND: hearth_registry::OpKind = hearth_registry::OpKind::Subscription;
    const DESCRIPTION: &'static str = "An event each time the operations reachable from here may have changed (a plugin loaded or its operations changed, a peer came or went); nothing more.";

    async fn run(node: &Node, ctx: &CallContext, _: Empty) -> Result<EventsEnd, CallError> {
        let sink = super::event_sink(ctx, "/node/host/changes")?;
        let (_, live) = node.events().follow(u64::MAX);
        let delivered = super::follow(&sink, std::iter::empty(), live, |(_, text)| {
            let event: serde_json::Value = serde_json::from_str(&text).ok()?;
            let kind = event["kind"].as_str()?;
            matches!(
                kind,
                "plugin.loaded"
                    | "plugin.unloaded"
                    | "plugin.operations_changed"
                    | "peer.up"
                    | "peer.down"
            )
            .then(|| {
                serde_json::json!({ "event": "operations.changed", "cause": kind }).to_string()
            })
        })
        .await;
        Ok(EventsEnd { delivered })
    }
}

/// One entry of `/node/host/plugins`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PluginEntry {
    /// Its name in `stack.toml`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One line about it.
    pub description: String,
    /// Where its operations live.
    pub namespace: String,
    /// `bundled` or the directory it came from.
    pub origin: String,
    /// SHA-256 of the component.
    pub component_sha256: String,
    /// How its code was had at startup: `built-in` (compiled when `host`
    /// was built), `hit` (the precompiled cache) or `miss` (compiled then).
    pub cache: String,
    /// Its operations' paths.
    pub operations: Vec<String>,
    /// What the operator granted it.
    pub grants: GrantsInfo,
    /// What its manifest asks for.
    pub requested: RequestedInfo,
    /// How it runs.
    pub limits: PluginLimits,
}

/// A plugin's grants, as `host plugins` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GrantsInfo {
    /// Its own kv namespace.
    pub kv: bool,
    /// Operations it may call.
    pub env: Vec<String>,
    /// Vault path prefixes it may use.
    pub vault: Vec<String>,
    /// The docker policy, when granted.
    pub docker: Option<serde_json::Value>,
    /// Origins it may send HTTP requests to.
    #[serde(default)]
    pub http: Vec<String>,
    /// Secrets its configuration may refer to (names only).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Commands the host may run for it, by argument list.
    #[serde(default)]
    pub process: Vec<Vec<String>>,
}

/// What a plugin's manifest asks for (asking grants nothing).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RequestedInfo {
    /// A kv namespace.
    pub kv: bool,
    /// Operations to call.
    pub env: Vec<String>,
    /// Vault path prefixes.
    pub vault: Vec<String>,
    /// The Docker engine.
    pub docker: bool,
    /// Outbound HTTP.
    #[serde(default)]
    pub http: bool,
    /// Host-run processes.
    #[serde(default)]
    pub process: bool,
    /// Its operations are discovered at load and may change.
    #[serde(default)]
    pub dynamic: bool,
}

/// A plugin's limits, as `host plugins` shows them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PluginLimits {
    /// Linear memory per instance.
    pub memory_mib: usize,
    /// Deadline of its operations.
    pub timeout_ms: u64,
    /// Per-operation deadlines.
    pub operation_timeouts_ms: BTreeMap<String, u64>,
    /// Warm instances kept; 0 means a fresh instance per call.
    pub warm_instances: u32,
    /// Warm instances idle now.
    pub warm_idle: usize,
}

/// `/node/host/plugins`.
pub struct Plugins;

impl NativeOp for Plugins {
    type Input = Empty;
    type Output = Vec<PluginEntry>;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "plugins";
    const DESCRIPTION: &'static str = "Loaded plugins with versions and grants.";
    const SCOPES: &'static [&'static str] = &["host:read"];

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<Vec<PluginEntry>, CallError> {
        Ok(node
            .plugins()
            .values()
            .map(|p| {
                let requested = &p.manifest.capabilities;
                PluginEntry {
                    name: p.name.clone(),
                    version: p.manifest.version.clone(),
                    description: p.manifest.description.clone(),
                    namespace: p.manifest.namespace().to_owned(),
                    origin: p.origin.clone(),
                    component_sha256: p.component_sha256.clone(),
                    cache: match p.cache {
                        crate::runtime::CacheOutcome::BuiltIn => "built-in",
                        crate::runtime::CacheOutcome::Hit => "hit",
                        crate::runtime::CacheOutcome::Miss => "miss",
                    }
                    .to_owned(),
                    operations: p.specs().iter().map(|s| s.path.to_string()).collect(),
                    grants: GrantsInfo {
                        kv: p.grants.kv,
                        env: p.grants.env.iter().map(ToString::to_string).collect(),
                        vault: p.grants.vault.iter().map(ToString::to_string).collect(),
                        docker: p
                            .grants
                            .docker
                            .as_ref()
                            .and_then(|d| serde_json::to_value(d).ok()),
                        http: p.grants.http.iter().map(ToString::to_string).collect(),
                        secrets: p.grants.secrets.clone(),
                        process: p.grants.process.clone(),
                    },
                    requested: RequestedInfo {
                        kv: requested.kv,
                        env: requested.env.iter().map(ToString::to_string).collect(),
                        vault: requested.vault.iter().map(ToString::to_string).collect(),
                        docker: requested.docker,
                        http: requested.http,
                        process: requested.process,
                        dynamic: p.manifest.dynamic,
                    },
                    limits: PluginLimits {
                        memory_mib: p.settings.memory_bytes >> 20,
                        timeout_ms: p.settings.timeout.as_millis() as u64,
                        operation_timeouts_ms: p
                            .settings
                            .operation_timeouts
                            .iter()
                            .map(|(op, t)| (op.clone(), t.as_millis() as u64))
                            .collect(),
                        warm_instances: p.settings.warm_instances,
                        warm_idle: crate::runtime::Runtime::warm_idle(p),
                    },
                }
            })
            .collect())
    }
}

/// Output of `/node/host/peers`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PeerList {
    /// This node's name.
    pub node: String,
    /// Where this node accepts peers, if it does.
    pub listen: Option<String>,
    /// Every configured peer.
    pub peers: Vec<PeerStatus>,
}

/// `/node/host/peers`.
pub struct Peers;

impl NativeOp for Peers {
    type Input = Empty;
    type Output = PeerList;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "peers";
    const DESCRIPTION: &'static str =
        "Every configured peer: state, round-trip time, negotiated features, last error.";
    const SCOPES: &'static [&'static str] = &["host:read"];

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<PeerList, CallError> {
        let peers = node.peers();
        Ok(PeerList {
            node: node.name().to_owned(),
            listen: peers.listen_addr().map(|a| a.to_string()),
            peers: peers.status(),
        })
    }
}

/// Output of `/node/host/id`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct IdentityInfo {
    /// The ed25519 public key, hex.
    pub public_key: String,
    /// `sha256:` fingerprint of the key.
    pub fingerprint: String,
    /// True when random for this process (no vault).
    pub ephemeral: bool,
    /// The derivation path, when from a vault.
    pub path: Option<String>,
    /// The node's name, as peers should address it.
    pub node: Option<String>,
    /// Where peers should dial it, when it accepts peers.
    pub address: Option<String>,
}

impl IdentityInfo {
    /// The vault's identity, without the node's name and address.
    pub fn of(id: crate::vault::NodeIdentity) -> Self {
        IdentityInfo {
            public_key: id.public_key,
            fingerprint: id.fingerprint,
            ephemeral: id.ephemeral,
            path: id.path,
            node: None,
            address: None,
        }
    }
}

/// `/node/host/id`.
pub struct Id;

impl NativeOp for Id {
    type Input = Empty;
    type Output = IdentityInfo;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "id";
    const DESCRIPTION: &'static str = "The node's public identity key and fingerprint.";

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<IdentityInfo, CallError> {
        let mut id = IdentityInfo::of(node.vault().identity());
        id.node = Some(node.name().to_owned());
        id.address = node.peers().advertised_address();
        Ok(id)
    }
}

/// `/node/host/metrics`.
pub struct Metrics;

impl NativeOp for Metrics {
    type Input = Empty;
    type Output = String;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "metrics";
    const DESCRIPTION: &'static str =
        "Call counters, durations, calls in flight and peers, in Prometheus text format.";
    const SCOPES: &'static [&'static str] = &["host:read"];

    async fn run(node: &Node, _: &CallContext, _: Empty) -> Result<String, CallError> {
        use std::fmt::Write;
        let mut text = node.metrics_text();
        let _ = writeln!(
            text,
            "# HELP hearth_calls_in_flight Calls from clients and peers running now.\n# TYPE hearth_calls_in_flight gauge\nhearth_calls_in_flight {}",
            node.calls_in_flight()
        );
        let mut states: BTreeMap<String, u64> = BTreeMap::new();
        for peer in node.peers().status() {
            let state = serde_json::to_value(peer.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *states.entry(state).or_default() += 1;
        }
        let _ = writeln!(
            text,
            "# HELP hearth_peers Configured peers by state.\n# TYPE hearth_peers gauge"
        );
        for (state, n) in states {
            let _ = writeln!(text, "hearth_peers{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            text,
            "# HELP hearth_plugins Plugins loaded.\n# TYPE hearth_plugins gauge\nhearth_plugins {}",
            node.plugins().len()
        );
        Ok(text)
    }
}

/// Where to resume following node events.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsInput {
    /// Replay kept events after this id first (the last one a follower saw).
    #[serde(default)]
    pub since: Option<u64>,
}

/// How a follow ended.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventsEnd {
    /// Events streamed.
    pub delivered: u64,
}

/// `/node/host/events`.
pub struct Events;

impl NativeOp for Events {
    type Input = EventsInput;
    type Output = EventsEnd;
    const NAMESPACE: &'static str = "host";
    const NAME: &'static str = "events";
    const KIND: hearth_registry::OpKind = hearth_registry::OpKind::Subscription;
    const DESCRIPTION: &'static str = "Follow node events (plugin loaded, peer up or down, a call from outside failed), resuming after `since`.";
    const SCOPES: &'static [&'static str] = &["host:read"];

    async fn run(
        node: &Node,
        ctx: &CallContext,
        input: EventsInput,
    ) -> Result<EventsEnd, CallError> {
        let sink = super::event_sink(ctx, "/node/host/events")?;
        let (kept, live) = node.events().follow(input.since.unwrap_or(0));
        let mut last = kept.last().map_or(input.since.unwrap_or(0), |(id, _)| *id);
        let kept = kept.into_iter().map(|(_, text)| text);
        let delivered = super::follow(&sink, kept, live, |(id, text)| {
            (id > last).then(|| {
                last = id;
                text
            })
        })
        .await;
        Ok(EventsEnd { delivered })
    }
}
