//! Native operations under `/node/host/*`: what the node says about itself.
//! The CLI's `ops` and `plugins` commands are calls to these, so any client
//! sees exactly what the CLI sees.

use hearth_registry::{CallError, ErrorCode, OpKind, OperationSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Node;

/// The WIT package plugins are built against.
pub const WIT_PACKAGE: &str = "hearth:node@0.1.0";

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// Output of `/node/host/ping`.
#[derive(Serialize, JsonSchema)]
struct Ping {
    node: String,
    version: String,
    uptime_ms: u64,
}

/// Output of `/node/host/version`.
#[derive(Serialize, JsonSchema)]
struct Version {
    node: String,
    version: String,
    wit: String,
    /// The Unix-socket protocol.
    protocol: u32,
    /// The mesh protocol and this node's features.
    mesh: crate::mesh::MeshVersion,
    /// Features negotiated with each connected peer.
    negotiated: std::collections::BTreeMap<String, Vec<String>>,
}

/// One entry of `/node/host/ops`.
#[derive(Serialize, JsonSchema)]
struct OpEntry {
    path: String,
    kind: String,
    owner: String,
    description: String,
    input_schema: serde_json::Value,
    output_schema: serde_json::Value,
    scopes: Vec<String>,
}

/// One entry of `/node/host/plugins`.
#[derive(Serialize, JsonSchema)]
struct PluginEntry {
    name: String,
    version: String,
    description: String,
    namespace: String,
    origin: String,
    component_sha256: String,
    /// `hit` when the precompiled cache served it at startup.
    cache: String,
    operations: Vec<String>,
    grants: Grants,
    limits: PluginLimits,
}

#[derive(Serialize, JsonSchema)]
struct PluginLimits {
    memory_mib: usize,
    timeout_ms: u64,
    operation_timeouts_ms: std::collections::BTreeMap<String, u64>,
    /// Warm instances kept; 0 means a fresh instance per call.
    warm_instances: u32,
    warm_idle: usize,
}

/// Input and output of `/node/host/echo`.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EchoMessage {
    msg: String,
}

#[derive(Serialize, JsonSchema)]
struct Grants {
    kv: bool,
    env: Vec<String>,
    vault: Vec<String>,
    /// The docker policy, when granted.
    docker: Option<serde_json::Value>,
}

fn spec<I: JsonSchema, O: JsonSchema>(
    name: &str,
    description: &str,
    scopes: &[&str],
) -> Option<OperationSpec> {
    spec_in::<I, O>("host", name, OpKind::Query, description, scopes)
}

fn spec_in<I: JsonSchema, O: JsonSchema>(
    namespace: &str,
    name: &str,
    kind: OpKind,
    description: &str,
    scopes: &[&str],
) -> Option<OperationSpec> {
    let input = schemars::schema_for!(I).as_value().to_string();
    let output = schemars::schema_for!(O).as_value().to_string();
    let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    OperationSpec::from_parts(namespace, name, kind, description, &input, &output, scopes).ok()
}

/// The specs of every native operation.
pub(super) fn specs() -> Vec<OperationSpec> {
    [
        spec::<Empty, Ping>(
            "ping",
            "Check the node is up; returns its name, version and uptime.",
            &[],
        ),
        spec::<EchoMessage, EchoMessage>(
            "echo",
            "Reply with the message, natively: /node/echo/ping without a plugin, to measure the transport.",
            &[],
        ),
        spec::<Empty, Version>(
            "version",
            "Versions of the node, its WIT package and its wire protocol.",
            &[],
        ),
        spec::<Empty, Vec<OpEntry>>(
            "ops",
            "Every operation this node serves, with kind and schemas.",
            &["host:read"],
        ),
        spec::<Empty, Vec<PluginEntry>>(
            "plugins",
            "Loaded plugins with versions and grants.",
            &["host:read"],
        ),
        spec::<Empty, Peers>(
            "peers",
            "Every configured peer: state, round-trip time, negotiated features, last error.",
            &["host:read"],
        ),
    ]
    .into_iter()
    .chain(vault_specs())
    .flatten()
    .collect()
}

/// Input of `/node/vault/unlock`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Unlock {
    /// The vault passphrase. Never logged or echoed in errors.
    passphrase: String,
}

/// Output of the vault operations.
#[derive(Serialize, JsonSchema)]
struct VaultStatusOutput {
    state: String,
    identity: IdentityOutput,
    file: String,
    memory_locked: Option<bool>,
}

/// Output of `/node/host/peers`.
#[derive(Serialize, JsonSchema)]
struct Peers {
    node: String,
    /// Where this node accepts peers, if it does.
    listen: Option<String>,
    peers: Vec<crate::mesh::PeerStatus>,
}

/// Output of `/node/host/id`.
#[derive(Serialize, JsonSchema)]
struct IdentityOutput {
    public_key: String,
    fingerprint: String,
    ephemeral: bool,
    path: Option<String>,
    /// The node's name, as peers should address it.
    node: Option<String>,
    /// Where peers should dial it, when it accepts peers.
    address: Option<String>,
}

fn identity_output(id: crate::vault::NodeIdentity) -> IdentityOutput {
    IdentityOutput {
        public_key: id.public_key,
        fingerprint: id.fingerprint,
        ephemeral: id.ephemeral,
        path: id.path,
        node: None,
        address: None,
    }
}

fn status_output(status: crate::vault::VaultStatus) -> VaultStatusOutput {
    VaultStatusOutput {
        state: status.state.to_owned(),
        identity: identity_output(status.identity),
        file: status.file,
        memory_locked: status.memory_locked,
    }
}

/// Native operations whose input holds a secret: validation errors about
/// them name the field but never echo the value.
pub(super) fn has_secret_input(path: &hearth_registry::OperationPath) -> bool {
    path.namespace() == "vault" && path.name() == "unlock"
}

/// The specs of the vault's native operations.
fn vault_specs() -> Vec<Option<OperationSpec>> {
    vec![
        spec_in::<Empty, VaultStatusOutput>(
            "vault",
            "status",
            OpKind::Query,
            "Whether the vault is absent, locked or unlocked, and the node identity.",
            &[],
        ),
        spec_in::<Unlock, VaultStatusOutput>(
            "vault",
            "unlock",
            OpKind::Mutation,
            "Unlock the vault with its passphrase.",
            &["vault:admin"],
        ),
        spec_in::<Empty, VaultStatusOutput>(
            "vault",
            "lock",
            OpKind::Mutation,
            "Lock the vault: wipe the seed from memory.",
            &["vault:admin"],
        ),
        spec::<Empty, IdentityOutput>("id", "The node's public identity key and fingerprint.", &[]),
    ]
}

/// Runs the native operation at `path`; input is already validated.
pub(super) async fn handle(
    node: &Node,
    path: &hearth_registry::OperationPath,
    input: &serde_json::Value,
) -> Result<serde_json::Value, CallError> {
    let encode = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| CallError::new(ErrorCode::Failed, format!("cannot encode output: {e}")))
    };
    if path.namespace() == "vault" {
        let vault = node.vault().clone();
        match path.name() {
            "status" => {}
            "lock" => vault.lock().map_err(crate::vault::to_call_error)?,
            "unlock" => {
                let unlock: Unlock = serde_json::from_value(input.clone()).map_err(|_| {
                    CallError::new(ErrorCode::InvalidInput, "`passphrase` must be a string")
                })?;
                let passphrase = zeroize::Zeroizing::new(unlock.passphrase);
                let task = vault.clone();
                // Argon2id takes a good fraction of a second: off the async threads.
                tokio::task::spawn_blocking(move || task.unlock(passphrase.as_bytes()))
                    .await
                    .map_err(|e| CallError::new(ErrorCode::Failed, e.to_string()))?
                    .map_err(crate::vault::to_call_error)?;
                tracing::info!("vault unlocked");
            }
            other => {
                return Err(CallError::new(
                    ErrorCode::NotFound,
                    format!("no vault operation `{other}`"),
                ));
            }
        }
        return encode(serde_json::to_value(status_output(vault.status())));
    }
    if path.name() == "id" {
        let mut id = identity_output(node.vault().identity());
        id.node = Some(node.name().to_owned());
        id.address = node.mesh().advertised_address();
        return encode(serde_json::to_value(id));
    }
    let name = path.name();
    let output = match name {
        // Validated against the schema already: `msg` is a string.
        "echo" => Ok(serde_json::json!({ "msg": input["msg"] })),
        "ping" => serde_json::to_value(Ping {
            node: node.name().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_ms: node.uptime().as_millis() as u64,
        }),
        "version" => serde_json::to_value(Version {
            node: node.name().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            wit: WIT_PACKAGE.to_owned(),
            protocol: crate::transport::PROTOCOL_VERSION,
            mesh: node.mesh().version(),
            negotiated: node
                .mesh()
                .status()
                .into_iter()
                .filter(|p| p.state == "connected")
                .map(|p| (p.name, p.features))
                .collect(),
        }),
        "peers" => serde_json::to_value(Peers {
            node: node.name().to_owned(),
            listen: node.mesh().listen_addr().map(|a| a.to_string()),
            peers: node.mesh().status(),
        }),
        "ops" => serde_json::to_value(
            node.routes()
                .iter()
                .map(|route| OpEntry {
                    path: route.spec.path.to_string(),
                    kind: route.spec.kind.as_str().to_owned(),
                    owner: route.owner.clone(),
                    description: route.spec.description.clone(),
                    input_schema: route.spec.input_schema.clone(),
                    output_schema: route.spec.output_schema.clone(),
                    scopes: route.spec.scopes.clone(),
                })
                .collect::<Vec<_>>(),
        ),
        "plugins" => serde_json::to_value(
            node.plugins()
                .values()
                .map(|p| PluginEntry {
                    name: p.name.clone(),
                    version: p.manifest.version.clone(),
                    description: p.manifest.description.clone(),
                    namespace: p.manifest.namespace().to_owned(),
                    origin: p.origin.clone(),
                    component_sha256: p.component_sha256.clone(),
                    cache: match p.cache {
                        crate::runtime::CacheOutcome::Hit => "hit",
                        crate::runtime::CacheOutcome::Miss => "miss",
                    }
                    .to_owned(),
                    operations: p.specs.iter().map(|s| s.path.to_string()).collect(),
                    grants: Grants {
                        kv: p.grants.kv,
                        env: p.grants.env.iter().map(ToString::to_string).collect(),
                        vault: p.grants.vault.iter().map(ToString::to_string).collect(),
                        docker: p
                            .grants
                            .docker
                            .as_ref()
                            .and_then(|d| serde_json::to_value(d).ok()),
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
                })
                .collect::<Vec<_>>(),
        ),
        other => {
            return Err(CallError::new(
                ErrorCode::NotFound,
                format!("no native operation `{other}`"),
            ));
        }
    };
    output.map_err(|e| CallError::new(ErrorCode::Failed, format!("cannot encode output: {e}")))
}
