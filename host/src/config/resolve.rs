//! The resolution step: from the file model ([`StackFile`], each plugin's
//! [`PluginManifest`]) to the [`NodeConfig`] the node runs on.
//!
//! Every value is checked here and nowhere else, and every refusal names
//! the file, the key and the fix ([`ConfigError`]). The golden tests in
//! `host/tests/config/` pin each message.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_protocol::features::Features;
use hearth_registry::{
    GrantSet, LOCAL_NODE, MAX_MEMORY_MIB, PluginEntry, PluginManifest, RESERVED_NAMESPACES,
    StackFile, is_valid_segment,
};

use super::error::File;
use super::{
    BUNDLED, BrokerConfig, ClientsConfig, ConfigError, DEFAULT_WARM_INSTANCES, GatewayConfig,
    MeshConfig, MessagingConfig, NodeConfig, PeerConfig, PluginSettings, PluginSource,
    default_data_dir,
};

const NAME_RULE: &str = "use lowercase letters, digits, `-` and `_`";

/// Resolves `stack`, read from `file`.
pub(super) fn resolve(
    stack: StackFile,
    file: &Path,
    origin: Option<PathBuf>,
) -> Result<NodeConfig, ConfigError> {
    let file = File::of(file);
    check_node(&stack, &file)?;
    check_limits(&stack, &file)?;
    let mut mesh = mesh_config(&stack, &file)?;
    let messaging = messaging_config(&stack, &file, &mut mesh)?;
    let data_dir = match stack.node.data_dir {
        Some(dir) => dir,
        None => default_data_dir().ok_or_else(|| {
            file.invalid(
                "node.data_dir",
                "no data directory: it is not set and there is no home directory",
                "set `node.data_dir`, or HEARTH_DATA_DIR in the environment",
            )
        })?,
    };
    let gateway = gateway_config(&stack.gateway, &file, &data_dir)?;
    let clients = clients_config(&stack.clients, &file)?;
    let socket = stack
        .node
        .socket
        .or_else(|| {
            std::env::var_os("HEARTH_SOCKET")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| data_dir.join("run").join("host.sock"));
    let cache_dir = stack
        .node
        .cache_dir
        .or_else(|| {
            std::env::var_os("HEARTH_CACHE_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| data_dir.join("cache"));
    let mut plugins = Vec::with_capacity(stack.plugins.len());
    for (name, entry) in stack.plugins {
        plugins.push(plugin(&file, &name, entry, &stack.limits)?);
    }
    Ok(NodeConfig {
        drain: Duration::from_millis(stack.node.drain_ms),
        name: stack.node.name,
        data_dir,
        socket,
        cache_dir,
        docker_socket: stack.docker.socket,
        limits: stack.limits,
        plugins,
        mesh,
        messaging,
        gateway,
        clients,
        mcp_expose: stack.mcp.expose,
        origin,
    })
}

/// Resolves `[clients]`: operator keys must be ed25519 keys in hex, and the
/// waits must be positive.
fn clients_config(
    section: &hearth_registry::ClientsSection,
    file: &File,
) -> Result<ClientsConfig, ConfigError> {
    let mut operator_keys = Vec::with_capacity(section.operator_keys.len());
    for (i, key) in section.operator_keys.iter().enumerate() {
        let mut bytes = [0u8; 32];
        if key.len() != 64 || hex::decode_to_slice(key, &mut bytes).is_err() {
            return Err(file.invalid(
                format!("clients.operator_keys[{i}]"),
                format!("`{key}` is not a client key"),
                "paste the 64 hex digits `host clients key` prints on the client's machine",
            ));
        }
        operator_keys.push(bytes);
    }
    for (key, value) in [
        ("clients.approval_timeout_s", section.approval_timeout_s),
        ("clients.session_ttl_s", section.session_ttl_s),
        ("clients.max_pending", u64::from(section.max_pending)),
    ] {
        if value == 0 {
            return Err(file.invalid(key, "is 0", "give it a positive value"));
        }
    }
    Ok(ClientsConfig {
        require_keys_on_socket: section.require_keys_on_socket,
        operator_keys,
        approval_timeout: Duration::from_secs(section.approval_timeout_s),
        session_ttl: Duration::from_secs(section.session_ttl_s),
        max_pending: section.max_pending as usize,
    })
}

fn check_node(stack: &StackFile, file: &File) -> Result<(), ConfigError> {
    if !is_valid_segment(&stack.node.name) {
        return Err(file.invalid(
            "node.name",
            format!("`{}` is not a valid node name", stack.node.name),
            NAME_RULE,
        ));
    }
    Ok(())
}

fn check_limits(stack: &StackFile, file: &File) -> Result<(), ConfigError> {
    let limits = &stack.limits;
    let positive: [(&str, u64); 5] = [
        ("call_timeout_ms", limits.call_timeout_ms),
        ("max_call_depth", limits.max_call_depth.into()),
        ("max_output_bytes", limits.max_output_bytes.into()),
        ("max_instances", limits.max_instances.into()),
        ("table_elements", limits.table_elements.into()),
    ];
    if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
        return Err(file.invalid(
            format!("limits.{key}"),
            "must be positive",
            "set a positive value, or remove the key for the default",
        ));
    }
    if limits.max_frame_bytes < 1024 {
        return Err(file.invalid(
            "limits.max_frame_bytes",
            format!("is {}, below the minimum of 1024", limits.max_frame_bytes),
            "set at least 1024, or remove the key for the default (16 MiB)",
        ));
    }
    if !(1..=MAX_MEMORY_MIB).contains(&limits.memory_mib) {
        return Err(file.invalid(
            "limits.memory_mib",
            format!("is {}, out of range", limits.memory_mib),
            format!("set it between 1 and {MAX_MEMORY_MIB}"),
        ));
    }
    if stack.mesh.idle_timeout_ms < 100 {
        return Err(file.invalid(
            "mesh.idle_timeout_ms",
            format!(
                "is {}, below the minimum of 100",
                stack.mesh.idle_timeout_ms
            ),
            "set at least 100, or remove the key for the default (10000)",
        ));
    }
    Ok(())
}

/// Resolves `[mesh]` and `[peers]`: the listen address, feature names
/// this build knows, and each peer's pinned key.
fn mesh_config(stack: &StackFile, file: &File) -> Result<MeshConfig, ConfigError> {
    let section = &stack.mesh;
    let listen = section
        .listen
        .as_deref()
        .map(|text| {
            text.parse::<SocketAddr>().map_err(|_| {
                file.invalid(
                    "mesh.listen",
                    format!("`{text}` is not an IP address and port"),
                    "write it as in `0.0.0.0:7400`",
                )
            })
        })
        .transpose()?;
    let features = Features::configured(
        &section.require_features,
        &section.optional_features,
        &section.disable_features,
    )
    .map_err(|e| {
        use hearth_protocol::features::FeatureConfigError;
        let (name, problem) = match &e {
            FeatureConfigError::Unknown(name) => (name, format!("names an unknown feature: {e}")),
            FeatureConfigError::Disabled(name) => (name, format!("conflicts: {e}")),
        };
        let key = [
            ("require_features", &section.require_features),
            ("optional_features", &section.optional_features),
            ("disable_features", &section.disable_features),
        ]
        .into_iter()
        .find(|(_, list)| list.contains(name))
        .map_or_else(|| "mesh".to_owned(), |(key, _)| format!("mesh.{key}"));
        file.invalid(
            key,
            problem,
            "name only features this build knows, each in one list",
        )
    })?;
    let mut peers = Vec::with_capacity(stack.peers.len());
    let mut keys = BTreeMap::new();
    for (name, entry) in &stack.peers {
        let key = |field: &str| format!("peers.{name}.{field}");
        if !is_valid_segment(name) || name == LOCAL_NODE || *name == stack.node.name {
            return Err(file.invalid(
                format!("peers.{name}"),
                format!("is not a valid peer name (`{name}`)"),
                format!("{NAME_RULE}, other than `{LOCAL_NODE}` and this node's own name"),
            ));
        }
        if entry.public_key.trim().is_empty() {
            return Err(file.invalid(
                key("public_key"),
                "is missing",
                "paste the `public_key` line `host id` prints on that node",
            ));
        }
        let Some(public) = entry.key_bytes() else {
            return Err(file.invalid(
                key("public_key"),
                "must be 64 hex digits",
                "paste it as `host id` prints it on that node",
            ));
        };
        if let Some(other) = keys.insert(public, name) {
            return Err(file.invalid(
                key("public_key"),
                format!("is the same as peers.{other}'s: peers `{other}` and `{name}` have the same public key"),
                "one node cannot have two names: remove one entry",
            ));
        }
        if entry.address.as_deref().is_some_and(|a| !a.contains(':')) {
            return Err(file.invalid(
                key("address"),
                "must be `host:port`",
                "write it as in `10.0.0.2:7400`",
            ));
        }
        peers.push(PeerConfig {
            name: name.clone(),
            key: public,
            address: entry.address.clone(),
            allow: entry.allow.clone(),
            scopes: entry.scopes.clone(),
        });
    }
    Ok(MeshConfig {
        listen,
        advertise: section.advertise.clone(),
        features,
        idle_timeout: Duration::from_millis(section.idle_timeout_ms),
        peers,
        duplicate_connections: stack.broker.duplicate_connections,
    })
}

/// Resolves `[gateway]`: on by default outside containers and CI; only on
/// a loopback address.
fn gateway_config(
    section: &hearth_registry::GatewaySection,
    file: &File,
    data_dir: &Path,
) -> Result<Option<GatewayConfig>, ConfigError> {
    if !section.enabled.unwrap_or_else(|| !super::in_container()) {
        return Ok(None);
    }
    let listen: SocketAddr = section.listen.parse().map_err(|_| {
        file.invalid(
            "gateway.listen",
            format!("`{}` is not an IP address and port", section.listen),
            "write it as in `127.0.0.1:7480`",
        )
    })?;
    if !listen.ip().is_loopback() {
        return Err(file.invalid(
            "gateway.listen",
            format!("`{listen}` is not a loopback address"),
            "the gateway serves this machine only: use 127.0.0.1 or [::1]",
        ));
    }
    if section.max_body_bytes == 0 {
        return Err(file.invalid(
            "gateway.max_body_bytes",
            "is 0",
            "allow at least the largest input an operation takes",
        ));
    }
    Ok(Some(GatewayConfig {
        listen,
        token_file: data_dir.join("run").join(super::GATEWAY_TOKEN_FILE),
        public_health: section.public_health,
        allowed_origins: section.allowed_origins.clone(),
        max_body_bytes: section.max_body_bytes as usize,
    }))
}

/// What a broker's members may call on it, and a member's broker on it.
const BROKER_OPERATIONS: &[&str] = &["/node/broker/publish", "/node/broker/subscriptions"];
const MEMBER_OPERATIONS: &[&str] = &["/node/msg/deliver"];

/// Resolves `[messaging]` and `[broker]`. The broker and its members may
/// call the messaging operations on each other without listing them in
/// `allow`: naming the broker (or enabling one) is the grant.
fn messaging_config(
    stack: &StackFile,
    file: &File,
    mesh: &mut MeshConfig,
) -> Result<MessagingConfig, ConfigError> {
    let section = &stack.messaging;
    let broker_section = &stack.broker;
    let grant = |peer: &mut PeerConfig, paths: &[&str]| {
        for path in paths {
            if let Ok(pattern) = path.parse() {
                peer.allow.push(pattern);
            }
        }
    };
    if let Some(broker) = &section.broker {
        let Some(peer) = mesh.peers.iter_mut().find(|p| &p.name == broker) else {
            return Err(file.invalid(
                "messaging.broker",
                format!("names `{broker}`, which is not a peer of this node"),
                format!("add [peers.{broker}] with its public_key and address, or fix the name"),
            ));
        };
        grant(peer, MEMBER_OPERATIONS);
    }
    if section.max_attempts == 0 {
        return Err(file.invalid("messaging.max_attempts", "is 0", "allow at least 1 attempt"));
    }
    if section.max_age_hours == 0 {
        return Err(file.invalid(
            "messaging.max_age_hours",
            "is 0",
            "keep undelivered messages at least 1 hour",
        ));
    }
    if section.retry_min_ms == 0 || section.retry_max_ms < section.retry_min_ms {
        return Err(file.invalid(
            "messaging.retry_min_ms",
            format!(
                "is {} with retry_max_ms {}",
                section.retry_min_ms, section.retry_max_ms
            ),
            "use a first wait of at least 1 ms and no longer than `retry_max_ms`",
        ));
    }
    let serve_broker = if broker_section.enabled {
        if broker_section.dedupe_window_hours == 0 {
            return Err(file.invalid(
                "broker.dedupe_window_hours",
                "is 0",
                "remember message ids for at least 1 hour (24 is the default)",
            ));
        }
        if let Some(members) = &broker_section.members
            && let Some(stranger) = members
                .iter()
                .find(|m| !mesh.peers.iter().any(|p| &&p.name == m))
        {
            return Err(file.invalid(
                "broker.members",
                format!("names `{stranger}`, which is not a peer of this node"),
                format!("add [peers.{stranger}] or remove it from the list"),
            ));
        }
        for peer in &mut mesh.peers {
            let member = broker_section
                .members
                .as_ref()
                .is_none_or(|m| m.contains(&peer.name));
            if member {
                grant(peer, BROKER_OPERATIONS);
            }
        }
        let window = Duration::from_secs(broker_section.dedupe_window_hours * 3600);
        mesh.features = mesh.features.clone().with_broker(window.as_secs());
        Some(BrokerConfig {
            dedupe_window: window,
            members: broker_section.members.clone(),
        })
    } else {
        None
    };
    Ok(MessagingConfig {
        broker: section.broker.clone(),
        max_attempts: section.max_attempts,
        max_age: Duration::from_secs(section.max_age_hours * 3600),
        retry_min: Duration::from_millis(section.retry_min_ms),
        retry_max: Duration::from_millis(section.retry_max_ms),
        handler_max_bytes: section.handler_max_bytes as usize,
        serve_broker,
    })
}

/// One `[plugins.<name>]` entry: its files, manifest, grants and settings.
fn plugin(
    file: &File,
    name: &str,
    entry: PluginEntry,
    limits: &hearth_registry::LimitsSection,
) -> Result<PluginSource, ConfigError> {
    let key = |field: &str| format!("plugins.{name}.{field}");
    if !is_valid_segment(name) {
        return Err(file.invalid(
            format!("plugins.{name}"),
            format!("is not a valid plugin name (`{name}`)"),
            NAME_RULE,
        ));
    }
    if RESERVED_NAMESPACES.contains(&name) {
        return Err(file.invalid(
            format!("plugins.{name}"),
            format!("is reserved for the node's own operations (/node/{name}/*)"),
            "give the plugin another name",
        ));
    }
    let component_name = entry.component.as_deref().unwrap_or(name);
    if !is_valid_segment(component_name) {
        return Err(file.invalid(
            key("component"),
            format!("`{component_name}` is not a component name"),
            NAME_RULE,
        ));
    }
    let Loaded {
        mut manifest,
        component,
        precompiled,
        mut origin,
    } = match &entry.path {
        Some(dir) => from_dir(file, name, component_name, dir)?,
        None => bundled(file, name, component_name)?,
    };
    if component_name != name {
        // Another instance of the same code: its operations live under
        // this entry's name, and so do its kv keys and grants.
        manifest.name = name.to_owned();
        manifest.namespace = Some(name.to_owned());
        origin = format!("{origin}, component `{component_name}`");
    }
    let memory = entry.memory_mib.unwrap_or(limits.memory_mib);
    if !(1..=MAX_MEMORY_MIB).contains(&memory) {
        return Err(file.invalid(
            key("memory_mib"),
            format!("is {memory}, out of range"),
            format!("set it between 1 and {MAX_MEMORY_MIB}"),
        ));
    }
    if entry.timeout_ms == Some(0) {
        return Err(file.invalid(
            key("timeout_ms"),
            "must be positive",
            "set a positive number of milliseconds, or remove it for `limits.call_timeout_ms`",
        ));
    }
    for (op, ms) in &entry.operation_timeouts {
        if *ms == 0 {
            return Err(file.invalid(
                key(&format!("operation_timeouts.{op}")),
                "must be positive",
                "set a positive number of milliseconds",
            ));
        }
        // Without a list in the manifest, the runtime checks the name
        // against what the component exports, at load.
        if !manifest.operations.is_empty() && !manifest.operations.iter().any(|o| o == op) {
            return Err(file.invalid(
                key(&format!("operation_timeouts.{op}")),
                format!("names no operation of plugin `{name}`"),
                format!(
                    "name one of its operations: {}",
                    manifest.operations.join(", ")
                ),
            ));
        }
    }
    let warm_instances = entry
        .warm_instances
        .unwrap_or(if manifest.runtime.reuse_instances {
            DEFAULT_WARM_INSTANCES
        } else {
            0
        });
    if warm_instances > limits.max_instances / 2 {
        return Err(file.invalid(
            key("warm_instances"),
            format!(
                "is {warm_instances}, more than half of `limits.max_instances` ({})",
                limits.max_instances
            ),
            "keep fewer warm instances, or raise `limits.max_instances`",
        ));
    }
    if let Some(messages) = &entry.grants.messages {
        if manifest.capabilities.messages.is_none() {
            return Err(file.invalid(
                key("grants.messages"),
                format!("is granted, but plugin `{name}` has no message handler"),
                "remove grants.messages, or use a plugin whose plugin.toml has [capabilities.messages]",
            ));
        }
        if let Some(bad) = messages.topics.iter().find(|t| {
            *t != "*"
                && (t.is_empty()
                    || t.len() > 128
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b)))
        }) {
            return Err(file.invalid(
                key("grants.messages.topics"),
                format!("names `{bad}`, which is not a topic"),
                "use 1 to 128 letters, digits and `._-/:`, or `*` for every topic",
            ));
        }
    }
    warn_unrequested(name, &entry.grants, &manifest);
    let timer = match (&manifest.timer, entry.timer_s) {
        (None, Some(_)) => {
            return Err(file.invalid(
                key("timer_s"),
                format!("is set, but plugin `{name}` has no [timer] in its plugin.toml"),
                "remove timer_s",
            ));
        }
        (Some(_), Some(0)) | (None, None) => None,
        (Some(timer), every) => {
            if !manifest.operations.is_empty() && !manifest.operations.contains(&timer.operation) {
                return Err(file.invalid(
                    format!("plugins.{name}"),
                    format!(
                        "its plugin.toml's [timer] names `{}`, which it does not export",
                        timer.operation
                    ),
                    "fix the plugin's manifest",
                ));
            }
            let every = every.unwrap_or(timer.every_s);
            Some((timer.operation.clone(), Duration::from_secs(every)))
        }
    };
    let grants = resolve_grant_paths(file, name, entry.grants)?;
    let settings = PluginSettings {
        memory_bytes: (memory as usize) << 20,
        table_elements: limits.table_elements as usize,
        timeout: Duration::from_millis(entry.timeout_ms.unwrap_or(limits.call_timeout_ms)),
        operation_timeouts: entry
            .operation_timeouts
            .iter()
            .map(|(op, ms)| (op.clone(), Duration::from_millis(*ms)))
            .collect(),
        warm_instances,
        max_output_bytes: limits.max_output_bytes as usize,
        timer,
    };
    let mut config = crate::call::PluginConfig::new();
    let mut secret_refs = crate::call::PluginConfig::new();
    for (key, value) in &entry.config {
        flatten_config(file, name, key, value, &mut config, &mut secret_refs)?;
    }
    if grants
        .process
        .iter()
        .any(|argv| argv.first().is_none_or(|program| program.is_empty()))
    {
        return Err(file.invalid(
            format!("plugins.{name}.grants.process"),
            "has an empty command",
            "write each command as its argument list, program first: [[\"node\", \"server.js\"]]",
        ));
    }
    for (key, secret) in &secret_refs {
        if !grants.secrets.contains(secret) {
            return Err(file.invalid(
                format!("plugins.{name}.config.{key}"),
                format!("refers to secret `{secret}`, which this plugin is not granted"),
                format!("add `grants.secrets = [\"{secret}\"]` to [plugins.{name}]"),
            ));
        }
    }
    Ok(PluginSource {
        name: name.to_owned(),
        manifest,
        component,
        precompiled,
        grants,
        settings,
        origin,
        config,
        secret_refs,
    })
}

/// `grants.files` and `grants.http_roots` made absolute (relative to
/// stack.toml), the roots checked to hold certificates now rather than at
/// the first request.
fn resolve_grant_paths(
    file: &File,
    name: &str,
    mut grants: GrantSet,
) -> Result<GrantSet, ConfigError> {
    let base = Path::new(&file.0).parent().unwrap_or(Path::new("."));
    if let Some(dir) = &grants.files {
        if dir.as_os_str().is_empty() || dir == Path::new("/") {
            return Err(file.invalid(
                format!("plugins.{name}.grants.files"),
                format!("is `{}`", dir.display()),
                "name a directory of the plugin's own, as in \"/var/lib/hearth/proxy\"",
            ));
        }
        // Absolute: the plugin writes it into configuration that another
        // program, started elsewhere, reads.
        let dir = base.join(dir);
        grants.files = Some(std::path::absolute(&dir).unwrap_or(dir));
    }
    for root in &mut grants.http_roots {
        *root = base.join(&*root);
        let count = read_ca_file(root).map_err(|e| {
            file.invalid(
                format!("plugins.{name}.grants.http_roots"),
                format!("cannot use {}: {e}", root.display()),
                "name a readable PEM file of CA certificates",
            )
        })?;
        if count.is_empty() {
            return Err(file.invalid(
                format!("plugins.{name}.grants.http_roots"),
                format!("{} holds no certificate", root.display()),
                "name a PEM file with `-----BEGIN CERTIFICATE-----` blocks",
            ));
        }
    }
    Ok(grants)
}

/// The certificates of the PEM file `path` (`grants.http_roots`): read
/// here to refuse a bad file at start, and by the HTTP capability to trust
/// them.
pub fn read_ca_file(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// Largest file `{ file = "…" }` in a plugin's config may name.
const MAX_CONFIG_FILE_BYTES: u64 = 8 << 20;

/// Flattens one `[plugins.<name>.config]` value into `out`: strings as
/// written, everything else as JSON, nested tables also under dotted keys.
fn flatten_config(
    file: &File,
    name: &str,
    key: &str,
    value: &toml::Value,
    out: &mut crate::call::PluginConfig,
    secrets: &mut crate::call::PluginConfig,
) -> Result<(), ConfigError> {
    if let toml::Value::Table(table) = value {
        // `{ secret = "github" }`: the value is that secret, opened at
        // call time; only its name is kept here.
        if let (1, Some(secret)) = (table.len(), table.get("secret")) {
            let Some(secret) = secret.as_str().filter(|s| is_valid_segment(s)) else {
                return Err(file.invalid(
                    format!("plugins.{name}.config.{key}.secret"),
                    "is not a secret's name",
                    "write `{ secret = \"github\" }` with the name `host secret set` used",
                ));
            };
            secrets.insert(key.to_owned(), secret.to_owned());
            return Ok(());
        }
        // `{ file = "petstore.json" }`: the file's text, read now (relative
        // to the stack file), for documents too long to write inline.
        if let (1, Some(path)) = (table.len(), table.get("file")) {
            let fix = "write `{ file = \"name.json\" }` with a readable UTF-8 file of at most 8 MiB, relative to stack.toml or absolute";
            let Some(path) = path.as_str() else {
                return Err(file.invalid(
                    format!("plugins.{name}.config.{key}.file"),
                    "is not a path",
                    fix,
                ));
            };
            let base = Path::new(&file.0).parent().unwrap_or(Path::new("."));
            let full = base.join(path);
            let text = std::fs::metadata(&full)
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    if m.len() > MAX_CONFIG_FILE_BYTES {
                        Err(format!("it has {} bytes", m.len()))
                    } else {
                        std::fs::read_to_string(&full).map_err(|e| e.to_string())
                    }
                })
                .map_err(|e| {
                    file.invalid(
                        format!("plugins.{name}.config.{key}.file"),
                        format!("cannot be read from {}: {e}", full.display()),
                        fix,
                    )
                })?;
            out.insert(key.to_owned(), text);
            return Ok(());
        }
        for (inner, v) in table {
            flatten_config(file, name, &format!("{key}.{inner}"), v, out, secrets)?;
        }
    }
    let text = match value {
        toml::Value::String(text) => text.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    out.insert(key.to_owned(), text);
    Ok(())
}

/// A grant the plugin's manifest did not ask for works, but the operator
/// should know: the plugin's author did not expect it.
fn warn_unrequested(name: &str, grants: &GrantSet, manifest: &PluginManifest) {
    let asked = &manifest.capabilities;
    let mut extra = Vec::new();
    if grants.kv && !asked.kv {
        extra.push("kv");
    }
    if grants.docker.is_some() && !asked.docker {
        extra.push("docker");
    }
    if !grants.vault.is_empty() && asked.vault.is_empty() {
        extra.push("vault");
    }
    if !grants.http.is_empty() && !asked.http {
        extra.push("http");
    }
    if !grants.process.is_empty() && !asked.process {
        extra.push("process");
    }
    if grants.files.is_some() && !asked.files {
        extra.push("files");
    }
    if !extra.is_empty() {
        tracing::warn!(
            plugin = name,
            grants = %extra.join(", "),
            "granted capabilities its plugin.toml does not ask for"
        );
    }
}

/// A plugin's code and manifest, from the binary or from a directory.
struct Loaded {
    manifest: PluginManifest,
    component: Cow<'static, [u8]>,
    precompiled: Option<&'static [u8]>,
    origin: String,
}

/// The bundled component `component`, for entry `name`.
fn bundled(file: &File, name: &str, component: &str) -> Result<Loaded, ConfigError> {
    let Some(bundled) = BUNDLED.iter().find(|b| b.name == component) else {
        let known: Vec<&str> = BUNDLED.iter().map(|b| b.name).collect();
        let (key, what) = if component == name {
            (format!("plugins.{name}"), "no plugin of that name")
        } else {
            (
                format!("plugins.{name}.component"),
                "no component of that name",
            )
        };
        return Err(file.invalid(
            key,
            format!(
                "is unknown: {what} is bundled with this host (bundled: {})",
                known.join(", ")
            ),
            "set `path` to the directory holding its plugin.toml and .wasm",
        ));
    };
    let manifest_file = File(format!("plugins/{component}/plugin.toml (bundled)"));
    let manifest = manifest(&manifest_file, component, bundled.manifest)?;
    Ok(Loaded {
        manifest,
        component: Cow::Borrowed(bundled.component),
        // Empty when the build did not precompile (a cross build).
        precompiled: (!bundled.precompiled.is_empty()).then_some(bundled.precompiled),
        origin: "bundled".to_owned(),
    })
}

/// Loads `<dir>/plugin.toml` and `<dir>/<component>.wasm` for entry `name`.
fn from_dir(file: &File, name: &str, component: &str, dir: &Path) -> Result<Loaded, ConfigError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| {
            file.invalid(
                format!("plugins.{name}.path"),
                format!("is unusable: cannot read {}: {e}", path.display()),
                "point `path` at the directory holding its plugin.toml and .wasm",
            )
        })
    };
    let manifest_path = dir.join("plugin.toml");
    let text = read(&manifest_path)?;
    let manifest_file = File::of(&manifest_path);
    let text = String::from_utf8(text)
        .map_err(|_| manifest_file.invalid("the file", "is not UTF-8", "save it as UTF-8 text"))?;
    let manifest = manifest(&manifest_file, component, &text)?;
    let bytes = read(&dir.join(format!("{component}.wasm")))?;
    Ok(Loaded {
        manifest,
        component: Cow::Owned(bytes),
        precompiled: None,
        origin: dir.display().to_string(),
    })
}

/// Parses a plugin's manifest and checks it names the plugin.
fn manifest(file: &File, name: &str, text: &str) -> Result<PluginManifest, ConfigError> {
    let manifest = PluginManifest::parse(text).map_err(|e| ConfigError::Manifest {
        file: file.0.clone(),
        message: e.to_string(),
    })?;
    if let Some(request) = &manifest.capabilities.messages
        && !manifest.operations.is_empty()
        && !manifest.operations.contains(&request.handler)
    {
        return Err(file.invalid(
            "capabilities.messages.handler",
            format!("names `{}`, which is not in `operations`", request.handler),
            "name one of the plugin's operations, and list it in `operations`",
        ));
    }
    let namespace = manifest.namespace();
    if RESERVED_NAMESPACES.contains(&namespace) {
        return Err(file.invalid(
            "namespace",
            format!(
                "`{namespace}` is reserved for the node's own operations (/node/{namespace}/*)"
            ),
            "choose another namespace",
        ));
    }
    if manifest.name != name {
        return Err(file.invalid(
            "name",
            format!(
                "is `{}`, but the plugin is loaded as `{name}`",
                manifest.name
            ),
            format!("use that name in [plugins.{}] of stack.toml", manifest.name),
        ));
    }
    Ok(manifest)
}
