//! Turns a `stack.toml` (or the embedded default) into a [`NodeConfig`]:
//! resolved directories, socket path, limits, and each plugin's manifest,
//! component bytes and grants.
//!
//! Precedence for the data directory, socket and cache: the stack file,
//! then `$HEARTH_DATA_DIR` / `$HEARTH_SOCKET` / `$HEARTH_CACHE_DIR`, then
//! `$XDG_DATA_HOME/hearth`, then `~/.local/share/hearth` (the socket in its
//! `run/`, the cache in its `cache/`).

mod error;
mod resolve;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_protocol::features::Features;
use hearth_registry::{GrantSet, LimitsSection, PathPattern, PluginManifest, StackFile};

pub use hearth_registry::DuplicateConnections;

pub use error::ConfigError;
pub use resolve::read_ca_file;

/// The configuration used when `host serve` gets no `--config`.
pub const DEFAULT_STACK: &str = include_str!("../../../examples/stack.toml");

/// A plugin compiled into the `host` binary from `plugins/`.
pub struct BundledPlugin {
    /// Directory name under `plugins/`.
    pub name: &'static str,
    /// Its `plugin.toml`.
    pub manifest: &'static str,
    /// The component, built for wasm32-wasip2.
    pub component: &'static [u8],
    /// The component compiled at build time, for the default largest
    /// plugin memory and the build machine's CPU; empty when the build did
    /// not make one (a cross build, `HEARTH_PRECOMPILE=0`).
    pub precompiled: &'static [u8],
}

/// Every plugin bundled at build time.
pub static BUNDLED: &[BundledPlugin] = include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));

/// Which wasmtime build compiled [`BundledPlugin::precompiled`]
/// (`runtime::engine_config::wasmtime_build` in the build script).
pub const PRECOMPILED_BY: &str = include!(concat!(env!("OUT_DIR"), "/precompiled_by.rs"));

/// Where this build compiled the plugins workspace (`.wasm` files of every
/// member, including test-only plugins that are not bundled). For tests and
/// development tools; a deployed node does not need it.
pub const BUILT_PLUGINS_DIR: &str = env!("HEARTH_BUILT_PLUGINS_DIR");

/// One plugin to load.
pub struct PluginSource {
    /// Name from `stack.toml`.
    pub name: String,
    /// Its parsed `plugin.toml`.
    pub manifest: PluginManifest,
    /// The component bytes.
    pub component: Cow<'static, [u8]>,
    /// The same component compiled when `host` was built (bundled plugins
    /// only); used when the engine accepts it, which saves compiling at
    /// start.
    pub precompiled: Option<&'static [u8]>,
    /// What the operator granted.
    pub grants: GrantSet,
    /// How it runs: memory, deadlines, warm instances.
    pub settings: PluginSettings,
    /// `bundled` or the directory it came from.
    pub origin: String,
    /// Its own configuration (`[plugins.<name>.config]`), flattened.
    pub config: crate::call::PluginConfig,
    /// Keys of it that name a secret, with the secret's name.
    pub secret_refs: crate::call::PluginConfig,
}

/// Warm instances kept for a plugin whose manifest asks for reuse and
/// whose `stack.toml` entry does not say how many.
pub const DEFAULT_WARM_INSTANCES: u32 = 8;

/// How the operator configured one plugin's execution.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Linear memory per instance.
    pub memory_bytes: usize,
    /// Elements per table.
    pub table_elements: usize,
    /// Deadline of its operations.
    pub timeout: Duration,
    /// Per-operation deadlines.
    pub operation_timeouts: BTreeMap<String, Duration>,
    /// Warm instances to keep; 0 for a fresh instance per call.
    pub warm_instances: u32,
    /// Largest output an operation may return.
    pub max_output_bytes: usize,
    /// The operation the node runs by itself, at start and then every so
    /// often (the manifest's `[timer]`, the period `timer_s` may change).
    pub timer: Option<(String, Duration)>,
}

impl PluginSettings {
    /// The deadline of operation `op`.
    pub fn timeout_for(&self, op: &str) -> Duration {
        self.operation_timeouts
            .get(op)
            .copied()
            .unwrap_or(self.timeout)
    }
}

/// Sizes of the instance pool, from `[limits]` and the largest plugin
/// memory limit.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    /// Instances that may be alive at once across all plugins.
    pub max_instances: u32,
    /// The largest linear memory any plugin may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Table elements one table may have.
    pub max_table_elements: usize,
}

/// One `[peers.<name>]` entry, resolved.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The name paths address it by (`/worker-1/...`).
    pub name: String,
    /// Its pinned ed25519 key.
    pub key: [u8; 32],
    /// `host:port` to dial, if this node dials it.
    pub address: Option<String>,
    /// What it may call here.
    pub allow: Vec<PathPattern>,
    /// Scopes its calls hold here.
    pub scopes: Vec<String>,
}

/// `[mesh]` and `[peers]`, resolved.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Where to accept peers; no listener when `None`.
    pub listen: Option<SocketAddr>,
    /// What `host id` tells other operators to dial.
    pub advertise: Option<String>,
    /// This node's feature sets.
    pub features: Features,
    /// Silence after which a connection is dead.
    pub idle_timeout: Duration,
    /// Known peers.
    pub peers: Vec<PeerConfig>,
    /// What happens when a second connection claims a peer's key
    /// (`[broker] duplicate_connections`).
    pub duplicate_connections: DuplicateConnections,
}

/// The operator's gateway token, in `<data dir>/run/`.
pub const GATEWAY_TOKEN_FILE: &str = "gateway.token";

/// `[gateway]`, resolved (present only when the gateway is on).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The loopback address to listen on.
    pub listen: SocketAddr,
    /// The operator's token file.
    pub token_file: PathBuf,
    /// Health without a token.
    pub public_health: bool,
    /// Origins allowed to call.
    pub allowed_origins: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
}

/// True inside a container or on CI, where the gateway is off by default:
/// a container may share the host's loopback, and CI machines are shared.
pub fn in_container() -> bool {
    let env = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    env("KUBERNETES_SERVICE_HOST")
        || env("CI")
        || env("GITHUB_ACTIONS")
        || Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::fs::read_to_string("/proc/1/cgroup").is_ok_and(|c| {
            ["docker", "kubepods", "containerd", "lxc", "podman"]
                .iter()
                .any(|k| c.contains(k))
        })
}

/// `[messaging]` and `[broker]`, resolved.
#[derive(Debug, Clone)]
pub struct MessagingConfig {
    /// The peer that brokers this node's messages; `None` when this node is
    /// its own broker or has none.
    pub broker: Option<String>,
    /// Refusals after which a message is dead.
    pub max_attempts: u32,
    /// Age after which an undelivered message is dead (before the broker's
    /// window lowers it).
    pub max_age: Duration,
    /// First retry wait.
    pub retry_min: Duration,
    /// Longest retry wait.
    pub retry_max: Duration,
    /// Largest body a plugin handler receives whole.
    pub handler_max_bytes: usize,
    /// This node's broker service, when `[broker] enabled = true`.
    pub serve_broker: Option<BrokerConfig>,
}

/// `[broker]` of a node that is one.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// For how long `(sender, client_message_id)` is remembered.
    pub dedupe_window: Duration,
    /// Peers that may use it; every peer when `None`.
    pub members: Option<Vec<String>>,
}

/// Everything `host serve` needs, resolved.
pub struct NodeConfig {
    /// The node's name.
    pub name: String,
    /// Data directory (database, cache, socket).
    pub data_dir: PathBuf,
    /// Unix socket path.
    pub socket: PathBuf,
    /// Precompiled-component cache.
    pub cache_dir: PathBuf,
    /// The Docker engine's socket (`/var/run/docker.sock` when `None`).
    pub docker_socket: Option<PathBuf>,
    /// Limits on calls and frames.
    pub limits: LimitsSection,
    /// Plugins to load, in name order.
    pub plugins: Vec<PluginSource>,
    /// The QUIC endpoint and the peers.
    pub mesh: MeshConfig,
    /// The stack file, or `None` for the embedded default.
    pub origin: Option<PathBuf>,
    /// How long calls in flight may finish at shutdown (`node.drain_ms`).
    pub drain: Duration,
    /// The outbox, inbox and broker.
    pub messaging: MessagingConfig,
    /// The HTTP gateway, when on.
    pub gateway: Option<GatewayConfig>,
    /// Client identities.
    pub clients: ClientsConfig,
    /// `[mcp] expose`: the operations agents may see as tools, when set.
    pub mcp_expose: Option<Vec<hearth_registry::PathPattern>>,
}

/// `[clients]`, resolved.
#[derive(Debug, Clone)]
pub struct ClientsConfig {
    /// A socket client must prove a key (no operator by uid alone).
    pub require_keys_on_socket: bool,
    /// Client keys that are operators without asking.
    pub operator_keys: Vec<[u8; 32]>,
    /// How long a new client waits for an answer.
    pub approval_timeout: Duration,
    /// How long an HTTP session token lasts.
    pub session_ttl: Duration,
    /// Requests waiting for an answer at once.
    pub max_pending: usize,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        ClientsConfig {
            require_keys_on_socket: false,
            operator_keys: Vec::new(),
            approval_timeout: Duration::from_secs(300),
            session_ttl: Duration::from_secs(3600),
            max_pending: 64,
        }
    }
}

impl NodeConfig {
    /// Loads `path`, or the embedded default when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        const EMBEDDED: &str = "<embedded default stack.toml>";
        let stack = match path {
            Some(path) => StackFile::load(path)?,
            None => StackFile::parse(DEFAULT_STACK, Path::new(EMBEDDED))?,
        };
        let file = path.unwrap_or(Path::new(EMBEDDED));
        resolve::resolve(stack, file, path.map(Path::to_owned))
    }

    /// Resolves a parsed stack file (`origin` is where it came from;
    /// `None` for the embedded default or one built in memory).
    pub fn from_stack(stack: StackFile, origin: Option<PathBuf>) -> Result<Self, ConfigError> {
        let file = origin
            .clone()
            .unwrap_or_else(|| PathBuf::from("stack.toml"));
        resolve::resolve(stack, &file, origin)
    }
}

impl NodeConfig {
    /// The vault file: `<data_dir>/vault.json`.
    pub fn vault_file(&self) -> PathBuf {
        self.data_dir.join("vault.json")
    }

    /// The client registry: `<data_dir>/clients.db`.
    pub fn clients_db(&self) -> PathBuf {
        self.data_dir.join("clients.db")
    }

    /// The engine's pool sizes: `limits.max_instances`, and room for the
    /// largest plugin memory.
    pub fn engine_limits(&self) -> EngineLimits {
        let largest = self.plugins.iter().map(|p| p.settings.memory_bytes).max();
        EngineLimits {
            max_instances: self.limits.max_instances,
            max_memory_bytes: largest.unwrap_or((self.limits.memory_mib as usize) << 20),
            max_table_elements: self.limits.table_elements as usize,
        }
    }
}

/// `$HEARTH_DATA_DIR`, else `$XDG_DATA_HOME/hearth`, else
/// `~/.local/share/hearth`.
pub fn default_data_dir() -> Option<PathBuf> {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from_env("HEARTH_DATA_DIR")
        .or_else(|| from_env("XDG_DATA_HOME").map(|d| d.join("hearth")))
        .or_else(|| from_env("HOME").map(|h| h.join(".local/share/hearth")))
}

/// The socket a client uses when given none: `$HEARTH_SOCKET`, else the
/// default data directory's `run/host.sock`.
pub fn default_socket() -> Option<PathBuf> {
    std::env::var_os("HEARTH_SOCKET")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| default_data_dir().map(|d| d.join("run").join("host.sock")))
}

/// Creates `dir` (and parents) and makes it private to this user (0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    /// Golden files: each broken `stack.toml` (and each broken plugin's
    /// `plugin.toml`) under `tests/config-errors/` with the exact error it
    /// must produce, in the `.err` file beside it. `HEARTH_BLESS=1` writes
    /// the `.err` files from what the code says now (review the diff).
    #[test]
    fn every_broken_config_gets_its_exact_error() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config-errors");
        let bless = std::env::var_os("HEARTH_BLESS").is_some();
        let mut cases = Vec::new();
        for entry in std::fs::read_dir(root.join("stack")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                cases.push(path);
            }
        }
        cases.sort();
        assert!(cases.len() >= 10, "the golden folder went missing");
        let mut wrong = Vec::new();
        for case in &cases {
            // Errors name the file as the operator passed it: relative here.
            let shown = case
                .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
                .unwrap();
            let text = std::fs::read_to_string(case).unwrap();
            let got = match StackFile::parse(&text, shown) {
                Err(e) => e.to_string(),
                Ok(stack) => match resolve::resolve(stack, shown, Some(shown.to_owned())) {
                    Err(e) => e.to_string(),
                    Ok(_) => "(no error)".to_owned(),
                },
            };
            let expected_file = case.with_extension("err");
            if bless {
                std::fs::write(&expected_file, format!("{got}\n")).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
            if expected.trim_end() != got {
                wrong.push(format!(
                    "{}:\n  expected: {}\n  got:      {got}",
                    shown.display(),
                    expected.trim_end()
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    use super::*;

    /// Every stack file in `examples/` is one the node accepts: the
    /// operator guide points at them.
    #[test]
    fn every_example_stack_resolves() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(&examples).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let stack = StackFile::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
            if let Err(e) = resolve::resolve(stack, &path, Some(path.clone())) {
                panic!("{}: {e}", path.display());
            }
            checked += 1;
        }
        assert!(checked >= 4, "the examples went missing");
    }

    #[test]
    fn the_default_stack_loads_the_bundled_plugins() {
        let stack = StackFile::parse(DEFAULT_STACK, Path::new("default")).unwrap();
        let config = NodeConfig::from_stack(stack, None).unwrap();
        let names: Vec<&str> = config.plugins.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["docker", "echo", "relay", "signer"]);
        assert!(config.plugins[0].grants.docker.is_some());
        assert!(config.plugins[1].grants.kv);
        assert!(!config.plugins[2].grants.kv);
    }

    #[test]
    fn mesh_settings_are_resolved_and_bad_ones_named() {
        let key = "ab".repeat(32);
        let load = |text: String| {
            NodeConfig::from_stack(StackFile::parse(&text, Path::new("s")).unwrap(), None)
        };
        let config = load(format!(
            "[mesh]\nlisten = \"127.0.0.1:7400\"\nidle_timeout_ms = 3000\n[peers.w]\npublic_key = \"{key}\"\nallow = [\"/node/echo/*\"]"
        ))
        .unwrap();
        assert_eq!(config.mesh.listen, Some("127.0.0.1:7400".parse().unwrap()));
        assert_eq!(config.mesh.peers[0].key, [0xab; 32]);
        assert_eq!(config.mesh.idle_timeout, Duration::from_secs(3));
        assert!(config.mesh.features.supported.contains("events"));

        for (text, fragment) in [
            (
                "[mesh]\nlisten = \"localhost:7400\"",
                "not an IP address and port",
            ),
            (
                "[mesh]\nrequire_features = [\"teleport\"]",
                "unknown feature `teleport`",
            ),
            (
                "[mesh]\nrequire_features = [\"events\"]\ndisable_features = [\"events\"]",
                "both disabled and required",
            ),
        ] {
            let err = load(text.to_owned()).err().unwrap().to_string();
            assert!(err.contains(fragment), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_bundled_plugins_are_named() {
        let stack = StackFile::parse("[plugins.nope]", Path::new("s")).unwrap();
        let err = NodeConfig::from_stack(stack, None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("bundled: docker, echo, mcp, openapi, proxy, relay, signer, wallet"),
            "{err}"
        );
    }
}
